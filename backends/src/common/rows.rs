//! ACL rows from a backend, in the two shapes deployments have:
//!
//! - EMQX 5: `permission` (`allow`/`deny`), `action` (`publish`,
//!   `subscribe`, `all`), `topic`, optionally `qos` (a number or a list
//!   such as `1,2`), `retain` (`true`/`false`/`1`/`0`), `clientid`,
//!   `ipaddress` (a CIDR or an address).
//! - emqttd 1.x: `allow` (1 allow, 0 deny), `access` (1 subscribe,
//!   2 publish, 3 both), `topic`, `username`, `clientid`, `ipaddr`, where
//!   `$all` or an empty value in a subject column means everyone.
//!
//! A row becomes an ordinary [`Rule`], so backend rules match exactly like
//! file rules: topics may be `eq <topic>` or filters with `${username}` and
//! `${clientid}` levels (emqttd's `%u` and `%c` are read as those). Rows are
//! tried in the order the backend returned them; the first that matches
//! decides.

use std::fmt;

use ipnet::IpNet;
use portcullis_acl::rule::{Action, Permission, Rule, Subject, TopicPattern};
use portcullis_core::provider::{ErrorKind, ProviderError};

/// A row, document or entry a backend returned that is not a usable rule
/// or record: which one (empty until known), the field, and why. At run
/// time it is a [`ProviderError`] of kind [`ErrorKind::BadResponse`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RowError {
    /// The row as decisions name it (`postgres:acl row 2`), once known.
    pub row: String,
    /// The column, field or entry (`permission`, `is_superuser`).
    pub field: String,
    pub reason: String,
}

impl RowError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> RowError {
        RowError { row: String::new(), field: field.into(), reason: reason.into() }
    }

    /// The same error, naming the field (when the error had none).
    pub fn at(mut self, field: &str) -> RowError {
        if self.field.is_empty() {
            self.field = field.to_string();
        }
        self
    }

    /// The same error, naming the row it came from.
    pub fn in_row(mut self, row: &str) -> RowError {
        if self.row.is_empty() {
            self.row = row.to_string();
        }
        self
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.row.is_empty() {
            write!(f, "{}: ", self.row)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.reason)
    }
}

impl From<RowError> for ProviderError {
    fn from(e: RowError) -> ProviderError {
        ProviderError::new(ErrorKind::BadResponse, e.to_string())
    }
}

/// One EMQX-style row, as strings (each backend reads its own types).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmqxRow {
    pub permission: String,
    pub action: String,
    pub topic: String,
    pub qos: Option<String>,
    pub retain: Option<String>,
    pub clientid: Option<String>,
    pub ipaddress: Option<String>,
}

/// One emqttd-1.x-style row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EmqttdRow {
    pub allow: i64,
    pub access: i64,
    pub topic: String,
    pub username: Option<String>,
    pub clientid: Option<String>,
    pub ipaddr: Option<String>,
}

pub fn permission(s: &str) -> Result<Permission, RowError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "allow" | "1" | "true" => Ok(Permission::Allow),
        "deny" | "0" | "false" => Ok(Permission::Deny),
        other => Err(RowError::new("permission", format!("{other:?}: expected allow or deny"))),
    }
}

pub fn action(s: &str) -> Result<Action, RowError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "publish" | "pub" => Ok(Action::Publish),
        "subscribe" | "sub" => Ok(Action::Subscribe),
        "all" | "pubsub" | "readwrite" => Ok(Action::All),
        other => Err(RowError::new("action", format!("{other:?}: expected publish, subscribe or all"))),
    }
}

/// emqttd's `%u`/`%c` topic placeholders, as ours.
pub fn topic_pattern(topic: &str) -> Result<TopicPattern, RowError> {
    let t = topic.trim();
    let t =
        if t.starts_with("eq ") { t.to_string() } else { t.replace("%u", "${username}").replace("%c", "${clientid}") };
    TopicPattern::parse(&t).map_err(|e| RowError::new("topic", format!("{topic:?}: {e}")))
}

fn qos_list(s: &str) -> Result<Option<Vec<u8>>, RowError> {
    let s = s.trim().trim_start_matches('[').trim_end_matches(']');
    if s.is_empty() {
        return Ok(None);
    }
    let mut v = Vec::new();
    for part in s.split(',') {
        match part.trim() {
            "0" => v.push(0),
            "1" => v.push(1),
            "2" => v.push(2),
            other => return Err(RowError::new("qos", format!("{other:?}: expected 0, 1 or 2"))),
        }
    }
    Ok(Some(v))
}

fn retain_flag(s: &str) -> Result<Option<bool>, RowError> {
    match s.trim().to_ascii_lowercase().as_str() {
        "" | "all" => Ok(None),
        "true" | "1" => Ok(Some(true)),
        "false" | "0" => Ok(Some(false)),
        other => Err(RowError::new("retain", format!("{other:?}: expected true or false"))),
    }
}

fn subject_value(v: Option<&str>) -> Option<String> {
    match v.map(str::trim) {
        None | Some("") | Some("$all") => None,
        Some(s) => Some(s.to_string()),
    }
}

fn ip(field: &str, v: Option<&str>) -> Result<Option<IpNet>, RowError> {
    let Some(s) = subject_value(v) else { return Ok(None) };
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(Some(n));
    }
    s.parse::<std::net::IpAddr>()
        .map(|a| Some(IpNet::from(a)))
        .map_err(|_| RowError::new(field, format!("{s:?}: not an address or CIDR")))
}

impl EmqxRow {
    /// The row as a rule; errors name the row (`origin`).
    pub fn to_rule(&self, origin: String) -> Result<Rule, RowError> {
        self.rule(origin.clone()).map_err(|e| e.in_row(&origin))
    }

    fn rule(&self, origin: String) -> Result<Rule, RowError> {
        Ok(Rule {
            permission: permission(&self.permission)?,
            subject: Subject {
                username: None,
                client_id: subject_value(self.clientid.as_deref()),
                ip: ip("ipaddress", self.ipaddress.as_deref())?,
            },
            action: action(&self.action)?,
            topics: vec![topic_pattern(&self.topic)?],
            qos: match &self.qos {
                Some(q) => qos_list(q)?,
                None => None,
            },
            retain: match &self.retain {
                Some(r) => retain_flag(r)?,
                None => None,
            },
            origin,
        })
    }
}

impl EmqttdRow {
    /// The row as a rule; errors name the row (`origin`).
    pub fn to_rule(&self, origin: String) -> Result<Rule, RowError> {
        self.rule(origin.clone()).map_err(|e| e.in_row(&origin))
    }

    fn rule(&self, origin: String) -> Result<Rule, RowError> {
        let permission = match self.allow {
            1 => Permission::Allow,
            0 => Permission::Deny,
            n => return Err(RowError::new("allow", format!("{n}: expected 0 or 1"))),
        };
        let action = match self.access {
            1 => Action::Subscribe,
            2 => Action::Publish,
            3 => Action::All,
            n => return Err(RowError::new("access", format!("{n}: expected 1 (subscribe), 2 (publish) or 3 (both)"))),
        };
        Ok(Rule {
            permission,
            subject: Subject {
                username: subject_value(self.username.as_deref()),
                client_id: subject_value(self.clientid.as_deref()),
                ip: ip("ipaddr", self.ipaddr.as_deref())?,
            },
            action,
            topics: vec![topic_pattern(&self.topic)?],
            qos: None,
            retain: None,
            origin,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emqx_row() {
        let r = EmqxRow {
            permission: "allow".into(),
            action: "publish".into(),
            topic: "t/${username}/#".into(),
            qos: Some("1,2".into()),
            retain: Some("false".into()),
            ..Default::default()
        }
        .to_rule("pg:1".into())
        .unwrap();
        assert_eq!(r.permission, Permission::Allow);
        assert_eq!(r.qos, Some(vec![1, 2]));
        assert_eq!(r.retain, Some(false));
        assert!(r.subject.is_everyone());
    }

    #[test]
    fn emqttd_row_with_all_and_percent_u() {
        let r = EmqttdRow {
            allow: 0,
            access: 3,
            topic: "dev/%u/#".into(),
            username: Some("$all".into()),
            ..Default::default()
        }
        .to_rule("x".into())
        .unwrap();
        assert_eq!(r.permission, Permission::Deny);
        assert_eq!(r.action, Action::All);
        assert_eq!(r.topics, vec![TopicPattern::Filter("dev/${username}/#".into())]);
        assert!(r.subject.is_everyone());
        let r = EmqttdRow {
            allow: 1,
            access: 1,
            topic: "eq #".into(),
            ipaddr: Some("10.0.0.1".into()),
            ..Default::default()
        }
        .to_rule("x".into())
        .unwrap();
        assert_eq!(r.topics, vec![TopicPattern::Eq("#".into())]);
        assert!(r.subject.ip.is_some());
    }

    #[test]
    fn bad_rows_say_why() {
        let e = EmqxRow { permission: "maybe".into(), action: "all".into(), topic: "a".into(), ..Default::default() }
            .to_rule("x".into())
            .unwrap_err();
        assert_eq!((e.row.as_str(), e.field.as_str()), ("x", "permission"));
        assert!(e.to_string().starts_with("x: permission: \"maybe\""), "{e}");
        let e =
            EmqttdRow { allow: 1, access: 9, topic: "a".into(), ..Default::default() }.to_rule("y".into()).unwrap_err();
        assert_eq!((e.row.as_str(), e.field.as_str()), ("y", "access"));
        let e = EmqxRow {
            permission: "allow".into(),
            action: "all".into(),
            topic: "a/#/b".into(),
            ipaddress: Some("10.0.0.0/8".into()),
            ..Default::default()
        }
        .to_rule("x".into())
        .unwrap_err();
        assert_eq!(e.field, "topic");
        let e = EmqttdRow { allow: 1, access: 1, topic: "a".into(), ipaddr: Some("nope".into()), ..Default::default() }
            .to_rule("x".into())
            .unwrap_err();
        assert_eq!(e.field, "ipaddr");
        let p: ProviderError = e.into();
        assert_eq!(p.kind, ErrorKind::BadResponse);
    }
}
