//! The values the store's API takes and returns, and their validation.
//!
//! * [`User`] — a user as listed (never its hash).
//! * [`RuleSubject`], [`NewRule`], [`StoredRule`] — ACL rules per username
//!   or per client id, and [`StoredRule::to_rule`], the step to the ACL
//!   rule model ([`portcullis_acl::rule::Rule`]) the provider matches with.
//! * [`PageRequest`], [`Page`] — pagination (1-based pages).
//!
//! Validation happens before a value reaches the database, so what the
//! store holds can always be read back; a row written by another tool that
//! cannot be read fails the check that reads it (fail closed), never
//! skipped.

use portcullis_acl::rule::{Action, Permission, Rule, Subject, TopicPattern};

use super::StoreError;
use crate::common::rows::RowError;

/// Longest username, client id or topic accepted (the longest MQTT string).
pub const MAX_TEXT_LEN: usize = 65_535;
/// Longest password accepted (the longest MQTT binary field).
pub const MAX_PASSWORD_LEN: usize = 65_535;
/// Most items one page holds.
pub const MAX_PAGE_LIMIT: u32 = 10_000;

/// A user, as the API shows it: never its password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub username: String,
    pub superuser: bool,
    /// Unix seconds (UTC).
    pub created_at: i64,
    /// Unix seconds (UTC): the last change of password or superuser flag.
    pub updated_at: i64,
}

/// Whom a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RuleSubject {
    /// Every client that logged in with this username.
    Username(String),
    /// The client with this client id.
    ClientId(String),
}

impl RuleSubject {
    /// `username` / `clientid`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            RuleSubject::Username(_) => "username",
            RuleSubject::ClientId(_) => "clientid",
        }
    }

    /// The username or client id.
    pub fn value(&self) -> &str {
        match self {
            RuleSubject::Username(v) | RuleSubject::ClientId(v) => v,
        }
    }

    pub(super) fn from_row(kind: &str, value: String) -> Result<RuleSubject, RowError> {
        match kind {
            "username" => Ok(RuleSubject::Username(value)),
            "clientid" => Ok(RuleSubject::ClientId(value)),
            other => Err(RowError::new("subject_kind", format!("{other:?}: expected username or clientid"))),
        }
    }

    fn validate(&self) -> Result<(), StoreError> {
        let field = match self {
            RuleSubject::Username(_) => "username",
            RuleSubject::ClientId(_) => "client_id",
        };
        validate_name(field, self.value())
    }
}

impl std::fmt::Display for RuleSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?}", self.kind(), self.value())
    }
}

/// A rule to add. Rules are tried by ascending `priority`; at equal
/// priority a client id's rules before a username's, then in the order they
/// were added. The first rule that applies decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRule {
    pub subject: RuleSubject,
    pub permission: Permission,
    pub action: Action,
    /// An MQTT filter in which `${username}` and `${clientid}` may stand as
    /// whole levels, or `eq <topic>` for that literal string.
    pub topic: String,
    /// The QoS levels the rule applies to; `None`: every level.
    pub qos: Option<Vec<u8>>,
    /// The retain flag of the publishes the rule applies to; `None`: both.
    pub retain: Option<bool>,
    /// Lower first (default 0).
    pub priority: i64,
}

impl NewRule {
    /// A rule for every QoS and retain flag, at priority 0.
    pub fn new(subject: RuleSubject, permission: Permission, action: Action, topic: impl Into<String>) -> NewRule {
        NewRule { subject, permission, action, topic: topic.into(), qos: None, retain: None, priority: 0 }
    }

    /// Checks every field (the topic as the ACL will parse it); returns the
    /// QoS list as stored.
    pub(super) fn validate(&self) -> Result<Option<String>, StoreError> {
        self.subject.validate()?;
        if self.topic.len() > MAX_TEXT_LEN {
            return Err(invalid("topic", format!("longer than {MAX_TEXT_LEN} bytes")));
        }
        TopicPattern::parse(&self.topic).map_err(|e| invalid("topic", format!("{:?}: {e}", self.topic)))?;
        let Some(qos) = &self.qos else { return Ok(None) };
        if qos.is_empty() {
            return Err(invalid("qos", "an empty list matches nothing; leave it out for every QoS"));
        }
        if let Some(q) = qos.iter().find(|q| **q > 2) {
            return Err(invalid("qos", format!("{q}: expected 0, 1 or 2")));
        }
        let mut sorted = qos.clone();
        sorted.sort_unstable();
        sorted.dedup();
        Ok(Some(sorted.iter().map(u8::to_string).collect::<Vec<_>>().join(",")))
    }
}

/// A rule as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRule {
    /// Assigned by the store; names the rule in decisions (`builtin:<provider> rule <id>`).
    pub id: i64,
    pub subject: RuleSubject,
    pub permission: Permission,
    pub action: Action,
    pub topic: String,
    pub qos: Option<Vec<u8>>,
    pub retain: Option<bool>,
    pub priority: i64,
    /// Unix seconds (UTC).
    pub created_at: i64,
}

impl StoredRule {
    /// The rule as the ACL matches it; `provider` names its origin. The
    /// subject is set too, so the rule applies only to its own username or
    /// client id whatever selected it.
    pub fn to_rule(&self, provider: &str) -> Result<Rule, RowError> {
        let origin = format!("builtin:{provider} rule {}", self.id);
        let topic = TopicPattern::parse(&self.topic)
            .map_err(|e| RowError::new("topic", format!("{:?}: {e}", self.topic)).in_row(&origin))?;
        let subject = match &self.subject {
            RuleSubject::Username(u) => Subject { username: Some(u.clone()), ..Subject::default() },
            RuleSubject::ClientId(c) => Subject { client_id: Some(c.clone()), ..Subject::default() },
        };
        Ok(Rule {
            permission: self.permission,
            subject,
            action: self.action,
            topics: vec![topic],
            qos: self.qos.clone(),
            retain: self.retain,
            origin,
        })
    }
}

/// `allow` / `deny`.
pub fn permission_name(p: Permission) -> &'static str {
    match p {
        Permission::Allow => "allow",
        Permission::Deny => "deny",
    }
}

/// `publish` / `subscribe` / `all`.
pub fn action_name(a: Action) -> &'static str {
    match a {
        Action::Publish => "publish",
        Action::Subscribe => "subscribe",
        Action::All => "all",
    }
}

/// The stored `permission` column.
pub fn parse_permission(s: &str) -> Result<Permission, RowError> {
    match s {
        "allow" => Ok(Permission::Allow),
        "deny" => Ok(Permission::Deny),
        other => Err(RowError::new("permission", format!("{other:?}: expected allow or deny"))),
    }
}

/// The stored `action` column.
pub fn parse_action(s: &str) -> Result<Action, RowError> {
    match s {
        "publish" => Ok(Action::Publish),
        "subscribe" => Ok(Action::Subscribe),
        "all" => Ok(Action::All),
        other => Err(RowError::new("action", format!("{other:?}: expected publish, subscribe or all"))),
    }
}

/// The stored `qos` column (`0,2`).
pub fn parse_qos(s: &str) -> Result<Vec<u8>, RowError> {
    s.split(',')
        .map(|p| match p.trim() {
            "0" => Ok(0),
            "1" => Ok(1),
            "2" => Ok(2),
            other => Err(RowError::new("qos", format!("{other:?}: expected 0, 1 or 2"))),
        })
        .collect()
}

/// One page of a listing (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub page: u32,
    pub limit: u32,
}

impl Default for PageRequest {
    /// The first 100.
    fn default() -> Self {
        PageRequest { page: 1, limit: 100 }
    }
}

impl PageRequest {
    pub fn new(page: u32, limit: u32) -> PageRequest {
        PageRequest { page, limit }
    }

    /// (LIMIT, OFFSET) after checking the request.
    pub(super) fn bounds(&self) -> Result<(i64, i64), StoreError> {
        if self.page == 0 {
            return Err(invalid("page", "pages start at 1"));
        }
        if self.limit == 0 || self.limit > MAX_PAGE_LIMIT {
            return Err(invalid("limit", format!("must be 1 to {MAX_PAGE_LIMIT}")));
        }
        Ok((i64::from(self.limit), i64::from(self.page - 1) * i64::from(self.limit)))
    }
}

/// A page of results and how many there are in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub limit: u32,
    /// Matching items over every page.
    pub total: u64,
}

impl<T> Page<T> {
    /// Whether a later page holds more.
    pub fn has_next(&self) -> bool {
        u64::from(self.page) * u64::from(self.limit) < self.total
    }
}

/// Usernames and client ids: 1 to 65,535 bytes without control characters
/// (MQTT forbids U+0000; the others would garble listings and logs).
pub fn validate_name(field: &'static str, value: &str) -> Result<(), StoreError> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > MAX_TEXT_LEN {
        return Err(invalid(field, format!("longer than {MAX_TEXT_LEN} bytes")));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// A password to hash: 1 to 65,535 bytes.
pub fn validate_password(password: &[u8]) -> Result<(), StoreError> {
    if password.is_empty() {
        return Err(invalid("password", "must not be empty"));
    }
    if password.len() > MAX_PASSWORD_LEN {
        return Err(invalid("password", format!("longer than {MAX_PASSWORD_LEN} bytes")));
    }
    Ok(())
}

pub(super) fn invalid(field: &'static str, message: impl Into<String>) -> StoreError {
    StoreError::Invalid { field, message: message.into() }
}
