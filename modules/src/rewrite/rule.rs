//! Rewrite rules as data, and the pure matching that applies them.
//!
//! The first rule whose action fits and whose `source_topic` matches the
//! topic decides, as in EMQX: if its regex then matches, the topic becomes
//! `dest_topic` with the regex's groups and the client's placeholders put
//! in; if the regex does not match, the topic stays as it is and no later
//! rule is tried. A subscription filter is matched against `source_topic`
//! level by level with its wildcards read as plain levels (`x/+` matches
//! the source `x/#`, `#` does not match `x/#`), and a leading wildcard in
//! `source_topic` never matches a topic starting with `$`.

use portcullis_core::topic::{validate_filter, validate_name, TopicFilter};
use regex::Regex;

use super::config::{RewriteAction, RewriteRule};
use crate::template::Template;

/// What is being rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A PUBLISH topic (or a will's).
    Publish,
    /// A SUBSCRIBE or UNSUBSCRIBE filter (without its `$share/<group>/`).
    Subscribe,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    action: RewriteAction,
    source: TopicFilter,
    re: Regex,
    dest: Template,
}

/// The result of the rules on one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rewritten {
    /// No rule applies, or the deciding rule's regex did not match.
    Unchanged,
    /// The new topic or filter: not yet checked as one (the caller does,
    /// with the broker's limits).
    To(String),
    /// The deciding rule could not give a topic for this client (why).
    Failed(&'static str),
}

impl Rule {
    /// Compiles a rule: `Err((field, problem))` when a field is wrong.
    /// `dest_topic` may only name the groups `re` has, and must give a
    /// valid topic name (publish) and/or filter (subscribe) once its
    /// groups and placeholders hold sample values.
    pub fn build(cfg: &RewriteRule) -> Result<Rule, (&'static str, String)> {
        let source = TopicFilter::new(&cfg.source_topic)
            .map_err(|e| ("source_topic", format!("{:?} is not a valid topic filter ({e})", cfg.source_topic)))?;
        if cfg.source_topic.starts_with("$share/") || cfg.source_topic.starts_with("$queue/") {
            return Err((
                "source_topic",
                format!(
                    "{:?}: write the filter without `$share/<group>/` (rules see the inner filter)",
                    cfg.source_topic
                ),
            ));
        }
        let re = Regex::new(&cfg.re).map_err(|e| ("re", format!("{:?} is not a valid regex: {e}", cfg.re)))?;
        let dest =
            Template::parse(&cfg.dest_topic, true).map_err(|e| ("dest_topic", format!("{:?}: {e}", cfg.dest_topic)))?;
        let groups = re.captures_len() - 1;
        if dest.max_group() > groups {
            return Err((
                "dest_topic",
                format!("{:?} names ${} but `re` has {groups} capture group(s)", cfg.dest_topic, dest.max_group()),
            ));
        }
        let sample = dest.sample();
        if cfg.action.publish() {
            if let Err(e) = validate_name(&sample) {
                return Err(("dest_topic", format!("{:?} is not a valid topic name ({e})", cfg.dest_topic)));
            }
        }
        if cfg.action.subscribe() {
            if let Err(e) = validate_filter(&sample) {
                return Err(("dest_topic", format!("{:?} is not a valid topic filter ({e})", cfg.dest_topic)));
            }
        }
        Ok(Rule { action: cfg.action, source, re, dest })
    }

    fn applies_to(&self, kind: Kind) -> bool {
        match kind {
            Kind::Publish => self.action.publish(),
            Kind::Subscribe => self.action.subscribe(),
        }
    }
}

/// Does `source` match `topic`, read level by level (see the module docs)?
pub fn source_matches(source: &TopicFilter, topic: &str) -> bool {
    let source = source.as_str();
    if topic.starts_with('$') && source.starts_with(['+', '#']) {
        return false;
    }
    let mut f = source.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) | (None, None) => return true,
            (Some("+"), Some(_)) => {}
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

/// The rules, in order.
#[derive(Debug, Default)]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// Compiles every rule: `Err((index, field, problem))` for the first
    /// that does not build.
    pub fn build(cfg: &[RewriteRule]) -> Result<Rules, (usize, &'static str, String)> {
        let rules = cfg
            .iter()
            .enumerate()
            .map(|(i, r)| Rule::build(r).map_err(|(field, msg)| (i, field, msg)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Rules { rules })
    }

    /// Whether any rule rewrites `kind`.
    pub fn any(&self, kind: Kind) -> bool {
        self.rules.iter().any(|r| r.applies_to(kind))
    }

    /// Applies the rules to `topic` for a client (see the module docs).
    /// Allocates only when a rule rewrites.
    pub fn rewrite(&self, kind: Kind, topic: &str, client_id: &str, username: Option<&str>) -> Rewritten {
        let Some(rule) = self.rules.iter().find(|r| r.applies_to(kind) && source_matches(&r.source, topic)) else {
            return Rewritten::Unchanged;
        };
        let Some(caps) = rule.re.captures(topic) else {
            return Rewritten::Unchanged;
        };
        match rule.dest.render(client_id, username, |n| caps.get(n).map_or("", |m| m.as_str())) {
            Ok(s) => Rewritten::To(s),
            Err(why) => Rewritten::Failed(why.as_str()),
        }
    }
}
