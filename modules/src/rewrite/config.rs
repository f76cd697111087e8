//! `[modules.rewrite]` and its checks.

use serde::Deserialize;

use super::rule::Rule;

/// `[modules.rewrite]`: topic rewrite rules (EMQX's names).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteConfig {
    /// Rewrite topics and filters.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The rules, in order: the first whose `action` and `source_topic`
    /// match decides.
    #[serde(default = "default_rules")]
    pub rules: Vec<RewriteRule>,
}

/// One entry of `rules`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRule {
    /// What it rewrites: PUBLISH topics (and wills), SUBSCRIBE and
    /// UNSUBSCRIBE filters, or all of them.
    pub action: RewriteAction,
    /// An MQTT filter the topic (or filter, its wildcards read as plain
    /// levels) must match for the rule to apply.
    pub source_topic: String,
    /// A regular expression (Rust `regex` syntax) the whole topic is
    /// matched against; its groups are `$1`..`$9` in `dest_topic`.
    pub re: String,
    /// The new topic: text with `$1`..`$9`, `${clientid}`, `${username}`.
    pub dest_topic: String,
}

/// `action` of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RewriteAction {
    Publish,
    Subscribe,
    All,
}

impl RewriteAction {
    /// Whether a rule with this action rewrites PUBLISH topics.
    pub fn publish(self) -> bool {
        matches!(self, RewriteAction::Publish | RewriteAction::All)
    }

    /// Whether it rewrites SUBSCRIBE and UNSUBSCRIBE filters.
    pub fn subscribe(self) -> bool {
        matches!(self, RewriteAction::Subscribe | RewriteAction::All)
    }
}

pub fn default_enabled() -> bool {
    false
}

pub fn default_rules() -> Vec<RewriteRule> {
    Vec::new()
}

impl Default for RewriteConfig {
    fn default() -> Self {
        RewriteConfig { enabled: default_enabled(), rules: default_rules() }
    }
}

impl RewriteConfig {
    /// `(key under modules., problem)` for each problem: every rule must
    /// build ([`Rule::build`]).
    pub fn validate(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .enumerate()
            .filter_map(|(i, r)| Rule::build(r).err().map(|(field, msg)| (format!("rewrite.rules[{i}].{field}"), msg)))
            .collect()
    }
}
