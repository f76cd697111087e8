//! `[acl.redis.<name>]`: ACL rules in a Redis hash per client.
//!
//! The command (default `HGETALL mqtt_acl:${username}`) returns a hash
//! whose fields are topics and whose values say what is allowed there:
//!
//! * `publish`, `subscribe`, `all` (EMQX 5);
//! * `1` subscribe, `2` publish, `3` both (emqttd 1.x, unchanged);
//! * EMQX's JSON, `{"action": "publish", "qos": [0, 1], "retain": false}`,
//!   with `"permission": "deny"` as a Portcullis extension.
//!
//! Topics are filters with `${username}` / `${clientid}` (or emqttd's
//! `%u` / `%c`) levels, or `eq <topic>`. Each entry becomes an ordinary
//! [`Rule`], matched exactly like file rules. A hash has no order, so deny
//! rules are tried before allow rules. No hash, or no matching rule, is
//! Ignore: the next provider (or `acl.no_match`) decides — in EMQX's
//! terms, Redis rules are an allow list.

use std::sync::Arc;

use portcullis_acl::provider::{AclAnswer, AclProvider};
use portcullis_acl::rule::{decide, Permission, Rule};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};
use serde::Deserialize;

use super::auth::rule_name;
use super::client::RedisClient;
use super::command::{self, Command};
use super::config::AclConfig;
use crate::common::health::Health;
use crate::common::rows::{EmqxRow, RowError};
use crate::common::template::Var;
use crate::common::BuildError;

pub struct RedisAcl {
    name: String,
    client: RedisClient,
    command: Command,
    health: Health,
}

impl std::fmt::Debug for RedisAcl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAcl")
            .field("name", &self.name)
            .field("redis", &self.client.target())
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl RedisAcl {
    /// Validates the config and builds the provider (no connection yet).
    pub fn new(name: &str, cfg: &AclConfig) -> Result<RedisAcl, BuildError> {
        let conn = cfg.connection()?;
        let command = parse_acl_command(&cfg.command).map_err(|e| e.under("command"))?;
        let client = RedisClient::build(&conn)?;
        Ok(RedisAcl { name: name.to_string(), client, command, health: Health::new("redis", name) })
    }

    /// Connects once and logs whether Redis is usable (health follows).
    pub async fn probe(&self) {
        let r = self.client.query(&redis::cmd("PING")).await;
        if r.is_ok() {
            tracing::info!(provider = %self.name, redis = %self.client.target(), "Redis is reachable");
        }
        let _ = self.health.track(r);
    }

    async fn check(&self, client: &ClientInfo, access: Access<'_>) -> Result<AclAnswer, ProviderError> {
        let Some(rendered) = self.command.render_access(client, &access) else {
            return Ok(AclAnswer::ignore());
        };
        let reply = self.health.track(self.client.query(&rendered.cmd).await)?;
        let bad = |e: RowError| {
            ProviderError::new(ErrorKind::BadResponse, format!("Redis reply for {}: {e}", rule_name(&rendered.key)))
        };
        let entries = command::pairs(&reply).map_err(bad)?;
        if entries.is_empty() {
            return Ok(AclAnswer::ignore());
        }
        let rules = rules(&rendered.key, entries).map_err(bad)?;
        Ok(decide(&rules, client, &access))
    }
}

impl AclProvider for RedisAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(self.check(client, access))
    }
}

/// Builds the provider and, in the background, probes Redis once.
pub fn provider(name: &str, cfg: &AclConfig) -> Result<Arc<RedisAcl>, BuildError> {
    let p = Arc::new(RedisAcl::new(name, cfg)?);
    let probe = Arc::clone(&p);
    tokio::spawn(async move { probe.probe().await });
    Ok(p)
}

fn parse_acl_command(text: &str) -> Result<Command, BuildError> {
    let c = Command::parse(text, &Var::ACL)?;
    if c.name() != "HGETALL" {
        return Err(BuildError::invalid("", format!("{}: expected HGETALL (a hash of topic => action)", c.name())));
    }
    if c.arg_count() != 1 {
        return Err(BuildError::invalid("", "HGETALL takes only the key"));
    }
    Ok(c)
}

/// EMQX's JSON form of a value.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonEntry {
    action: String,
    #[serde(default)]
    qos: Option<JsonQos>,
    #[serde(default)]
    retain: Option<bool>,
    #[serde(default)]
    permission: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonQos {
    One(u8),
    Many(Vec<u8>),
}

/// One hash entry as a rule.
fn rule(key: &str, topic: &str, value: &str) -> Result<Rule, RowError> {
    let origin = format!("{} {topic}", rule_name(key));
    let value = value.trim();
    let row = if value.starts_with('{') {
        let j: JsonEntry = serde_json::from_str(value).map_err(|e| RowError::new("", e.to_string()).in_row(&origin))?;
        EmqxRow {
            permission: j.permission.unwrap_or_else(|| "allow".into()),
            action: j.action,
            topic: topic.to_string(),
            qos: j.qos.map(|q| match q {
                JsonQos::One(n) => n.to_string(),
                JsonQos::Many(v) => v.iter().map(u8::to_string).collect::<Vec<_>>().join(","),
            }),
            retain: j.retain.map(|r| r.to_string()),
            ..EmqxRow::default()
        }
    } else {
        let action = match value {
            "1" => "subscribe",
            "2" => "publish",
            "3" => "all",
            other => other,
        };
        EmqxRow { permission: "allow".into(), action: action.into(), topic: topic.to_string(), ..EmqxRow::default() }
    };
    row.to_rule(origin)
}

/// The hash as rules: deny rules first, then by topic (a hash has no
/// order of its own).
fn rules(key: &str, entries: Vec<(String, String)>) -> Result<Vec<Rule>, RowError> {
    let mut rules = entries.iter().map(|(t, v)| rule(key, t, v)).collect::<Result<Vec<_>, _>>()?;
    rules.sort_by(|a, b| {
        let rank = |r: &Rule| u8::from(r.permission == Permission::Allow);
        rank(a).cmp(&rank(b)).then_with(|| a.origin.cmp(&b.origin))
    });
    Ok(rules)
}

#[cfg(test)]
mod tests {
    use portcullis_acl::rule::{Action, TopicPattern};

    use super::*;
    use crate::common::BuildErrorKind;

    #[test]
    fn every_value_form() {
        let r = rule("k", "a/${username}", "publish").unwrap();
        assert_eq!((r.permission, r.action), (Permission::Allow, Action::Publish));
        assert_eq!(r.topics, vec![TopicPattern::Filter("a/${username}".into())]);
        assert_eq!(rule("k", "t", "1").unwrap().action, Action::Subscribe);
        assert_eq!(rule("k", "t", "2").unwrap().action, Action::Publish);
        assert_eq!(rule("k", "t", "3").unwrap().action, Action::All);
        assert_eq!(rule("k", "dev/%u/#", "3").unwrap().topics, vec![TopicPattern::Filter("dev/${username}/#".into())]);
        let r = rule("k", "t", r#"{"action": "publish", "qos": [0, 1], "retain": false}"#).unwrap();
        assert_eq!((r.qos, r.retain), (Some(vec![0, 1]), Some(false)));
        let r = rule("k", "t", r#"{"action": "all", "qos": 2, "permission": "deny"}"#).unwrap();
        assert_eq!((r.permission, r.qos), (Permission::Deny, Some(vec![2])));
        assert_eq!(r.origin, "redis k t");
    }

    #[test]
    fn bad_values_fail() {
        assert!(rule("k", "t", "4").is_err());
        assert!(rule("k", "t", "read").is_err());
        assert!(rule("k", "t", r#"{"action": "publish", "permision": "deny"}"#).is_err());
        assert!(rule("k", "a/#/b", "publish").is_err());
        assert!(rule("k", "t", r#"{"action": "publish", "qos": [3]}"#).is_err());
    }

    #[test]
    fn deny_rules_come_first() {
        let rs = rules(
            "k",
            vec![
                ("a/#".into(), "all".into()),
                ("a/secret".into(), r#"{"action": "all", "permission": "deny"}"#.into()),
            ],
        )
        .unwrap();
        assert_eq!(rs[0].permission, Permission::Deny);
    }

    #[test]
    fn acl_command_must_be_hgetall() {
        assert!(parse_acl_command("HGETALL mqtt_acl:%u").is_ok());
        let e = parse_acl_command("SMEMBERS mqtt_acl:%u").unwrap_err().under("command");
        assert!(e.is("command", BuildErrorKind::Invalid), "{e}");
        assert_eq!(e.to_string(), "command: SMEMBERS: expected HGETALL (a hash of topic => action)");
        assert!(parse_acl_command("HGETALL a b").is_err());
        assert!(parse_acl_command("HGETALL mqtt_acl:${password}").is_err());
    }
}
