//! An ACL rule as plain data. Loading (files, directories, backends) lives
//! elsewhere; matching is a pure function of the rule, the client and the
//! access.

use ipnet::IpNet;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

/// Which kind of access a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Publish,
    Subscribe,
    /// Publish and subscribe.
    All,
}

/// Who a rule applies to. Every field that is set must match; a subject
/// with no field set applies to everyone.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub username: Option<String>,
    pub client_id: Option<String>,
    pub ip: Option<IpNet>,
}

/// A topic pattern in a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicPattern {
    /// An MQTT filter; `${username}` and `${clientid}` may stand as whole
    /// levels and are replaced by the client's values before matching (a
    /// client without a username never matches a `${username}` pattern).
    Filter(String),
    /// `eq <topic>`: matches only this exact string (a subscription to the
    /// literal filter `#`, say), no wildcard expansion, no placeholders.
    Eq(String),
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub permission: Permission,
    pub subject: Subject,
    pub action: Action,
    /// The rule applies if any pattern matches.
    pub topics: Vec<TopicPattern>,
    /// If set, the rule applies only to these QoS levels (0..=2).
    pub qos: Option<Vec<u8>>,
    /// If set, the rule applies only to publishes with this retain flag.
    pub retain: Option<bool>,
    /// Where the rule came from, for explain output and logs
    /// (`etc/acl.toml:12`, `policies/dev42.toml:3`, `ldap:mqttPublishTopic`).
    pub origin: String,
}
