//! `[auth.ldap.<name>]` and `[acl.ldap.<name>]` as written, and their
//! validation (pure, errors name the key).

use std::time::Duration;

use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::default_timeout;
use crate::common::pool::PoolConfig;
use crate::common::secret::Secret;
use crate::common::template::{Template, Var};
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// How the auth provider checks a password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Bind as the user, whose DN is `user_dn` with the username DN-escaped.
    Bind,
    /// The service account searches `base_dn` with `filter` (values
    /// filter-escaped), then the provider binds as the DN it found.
    Search,
    /// Read `password_attribute` (found by `user_dn` or by `base_dn` +
    /// `filter`) and verify it here: `{SSHA}`, `{SHA}`, `{SSHA256}`,
    /// `{SSHA512}`, `{MD5}`, `{CRYPT}`… or plain text.
    Compare,
}

/// Search scope below `base_dn`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScopeName {
    /// `base_dn` only.
    Base,
    /// The entries directly below `base_dn`.
    One,
    /// The whole subtree.
    #[default]
    Sub,
}

/// `superuser = { ... }`: which users bypass the ACL. Any one test that
/// holds makes the user a superuser; with none set, nobody is.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuperuserConfig {
    /// An attribute of the user's entry (`mqttSuperuser`, say)…
    #[serde(default)]
    pub attribute: Option<String>,
    /// …that holds this value (compared without regard to case).
    #[serde(default = "default_superuser_value")]
    pub value: String,
    /// Group DNs: a user whose `member_of_attribute` lists one of them is a
    /// superuser (needs the memberof overlay, or Active Directory).
    #[serde(default)]
    pub member_of: Vec<String>,
    /// The attribute that lists a user's groups.
    #[serde(default = "default_member_of_attribute")]
    pub member_of_attribute: String,
    /// `groupOfNames` / `groupOfUniqueNames` DNs searched (with the service
    /// account) for the user's DN in `group_member_attributes`.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Group attributes that hold member DNs.
    #[serde(default = "default_group_member_attributes")]
    pub group_member_attributes: Vec<String>,
}

pub fn default_superuser_value() -> String {
    "TRUE".to_string()
}
pub fn default_member_of_attribute() -> String {
    "memberOf".to_string()
}
pub fn default_group_member_attributes() -> Vec<String> {
    vec!["member".to_string(), "uniqueMember".to_string()]
}

/// `[auth.ldap.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// LDAP URLs, tried in order (failover): `ldap://host:389`,
    /// `ldaps://host:636`.
    pub servers: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS (needs `tls`).
    #[serde(default)]
    pub starttls: bool,
    /// TLS for `ldaps://` and StartTLS: `tls = { enable = true, ca_file = "…" }`.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The service account that looks users up; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// The service account's password (inline, `{ env = … }` or `{ file = … }`).
    #[serde(default)]
    pub bind_password: Option<Secret>,
    /// Service connections (size, connect and query timeouts, lifetimes).
    #[serde(default)]
    pub pool: PoolConfig,
    /// How the password is checked: `bind`, `search` or `compare`.
    pub mode: Mode,
    /// The user's DN as a template: `uid=${username},ou=people,dc=example,dc=org`
    /// (values are DN-escaped). `bind` mode; `compare` mode without `filter`.
    #[serde(default)]
    pub user_dn: Option<String>,
    /// Where `filter` searches (`search` and `compare` modes).
    #[serde(default)]
    pub base_dn: Option<String>,
    /// Finds the user: `(&(objectClass=inetOrgPerson)(uid=${username}))`
    /// (values are filter-escaped). Must match one entry.
    #[serde(default)]
    pub filter: Option<String>,
    /// How deep `filter` searches below `base_dn`.
    #[serde(default)]
    pub scope: ScopeName,
    /// The attribute that holds the username (`uid`; `sAMAccountName` on
    /// Active Directory). When the lookup uses `${username}`, the entry found
    /// must hold the client's username there exactly, byte for byte:
    /// directory matching ignores case and spaces, and `ALICE` must not
    /// become a second name for `alice`. Otherwise the entry is not this
    /// client's (Ignore).
    #[serde(default = "default_username_attribute")]
    pub username_attribute: String,
    /// The attribute `compare` mode reads the stored password from.
    #[serde(default = "default_password_attribute")]
    pub password_attribute: String,
    /// Who is a superuser.
    #[serde(default)]
    pub superuser: SuperuserConfig,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the directory fails (`deny` or `ignore`).
    #[serde(default)]
    pub on_error: OnError,
}

pub fn default_password_attribute() -> String {
    "userPassword".to_string()
}
pub fn default_username_attribute() -> String {
    "uid".to_string()
}

/// `[acl.ldap.<name>]`: topics from multi-valued attributes of the user's
/// entry (found by `user_dn` or by `base_dn` + `filter`). A topic listed
/// allows; anything else is not this provider's business (Ignore), as is
/// a client the directory does not know.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    /// LDAP URLs, tried in order (failover).
    pub servers: Vec<String>,
    /// Upgrade `ldap://` connections with StartTLS (needs `tls`).
    #[serde(default)]
    pub starttls: bool,
    /// TLS for `ldaps://` and StartTLS.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The service account that reads the entries; anonymous when absent.
    #[serde(default)]
    pub bind_dn: Option<String>,
    /// The service account's password.
    #[serde(default)]
    pub bind_password: Option<Secret>,
    /// Service connections.
    #[serde(default)]
    pub pool: PoolConfig,
    /// The user's DN as a template (values DN-escaped).
    #[serde(default)]
    pub user_dn: Option<String>,
    /// Where `filter` searches.
    #[serde(default)]
    pub base_dn: Option<String>,
    /// Finds the user's entry (values filter-escaped).
    #[serde(default)]
    pub filter: Option<String>,
    /// How deep `filter` searches below `base_dn`.
    #[serde(default)]
    pub scope: ScopeName,
    /// The attribute that holds the username (`uid`; `sAMAccountName` on
    /// Active Directory). When the lookup uses `${username}`, the entry found
    /// must hold the client's username there exactly, byte for byte:
    /// directory matching ignores case and spaces, and `ALICE` must not
    /// become a second name for `alice`. Otherwise the entry is not this
    /// client's (Ignore).
    #[serde(default = "default_username_attribute")]
    pub username_attribute: String,
    /// Topic filters the user may publish to.
    #[serde(default = "default_publish_attribute")]
    pub publish_attribute: String,
    /// Topic filters the user may subscribe to.
    #[serde(default = "default_subscribe_attribute")]
    pub subscribe_attribute: String,
    /// Topic filters for both.
    #[serde(default = "default_pubsub_attribute")]
    pub pubsub_attribute: String,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the directory fails.
    #[serde(default)]
    pub on_error: OnError,
}

pub fn default_publish_attribute() -> String {
    "mqttPublishTopic".to_string()
}
pub fn default_subscribe_attribute() -> String {
    "mqttSubscriptionTopic".to_string()
}
pub fn default_pubsub_attribute() -> String {
    "mqttPubSubTopic".to_string()
}

crate::call_policy!(AuthConfig, AclConfig);

/// What both providers need to reach the directory.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub servers: Vec<String>,
    pub starttls: bool,
    pub tls: TlsConfig,
    pub bind_dn: Option<String>,
    pub bind_password: Option<Secret>,
    pub pool: PoolConfig,
}

/// How a provider finds the user's entry.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// Read the entry at this DN (values DN-escaped).
    Dn(Template),
    /// Search under `base` (values filter-escaped).
    Search { base: String, filter: Template, scope: ScopeName },
}

impl Lookup {
    /// Whether the lookup finds the user by `${username}`.
    pub fn uses_username(&self) -> bool {
        let t = match self {
            Lookup::Dn(t) => t,
            Lookup::Search { filter, .. } => filter,
        };
        t.vars().any(|v| v == Var::Username)
    }
}

impl AuthConfig {
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            servers: self.servers.clone(),
            starttls: self.starttls,
            tls: self.tls.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password: self.bind_password.clone(),
            pool: self.pool.clone(),
        }
    }

    /// The lookup the mode needs; errors name the key.
    pub fn lookup(&self) -> Result<Lookup, BuildError> {
        let lookup = lookup(&self.user_dn, &self.base_dn, &self.filter, self.scope)?;
        match (self.mode, &lookup) {
            (Mode::Bind, Lookup::Search { .. }) => Err(BuildError::missing(
                "user_dn",
                "required when mode = \"bind\" (use mode = \"search\" to search for the user)",
            )),
            (Mode::Search, Lookup::Dn(_)) => {
                Err(BuildError::missing("base_dn", "required, with filter, when mode = \"search\""))
            }
            _ => Ok(lookup),
        }
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        self.server_settings().validate()?;
        self.lookup()?;
        if self.password_attribute.trim().is_empty() {
            return Err(BuildError::invalid("password_attribute", "must not be empty"));
        }
        if self.username_attribute.trim().is_empty() {
            return Err(BuildError::invalid("username_attribute", "must not be empty"));
        }
        let su = &self.superuser;
        if su.attribute.as_deref().is_some_and(|a| a.trim().is_empty()) {
            return Err(BuildError::invalid("superuser.attribute", "must not be empty"));
        }
        if !su.groups.is_empty() && su.group_member_attributes.is_empty() {
            return Err(BuildError::invalid("superuser.group_member_attributes", "must name at least one attribute"));
        }
        Ok(())
    }
}

impl AclConfig {
    pub fn server_settings(&self) -> ServerSettings {
        ServerSettings {
            servers: self.servers.clone(),
            starttls: self.starttls,
            tls: self.tls.clone(),
            bind_dn: self.bind_dn.clone(),
            bind_password: self.bind_password.clone(),
            pool: self.pool.clone(),
        }
    }

    pub fn lookup(&self) -> Result<Lookup, BuildError> {
        lookup(&self.user_dn, &self.base_dn, &self.filter, self.scope)
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        self.server_settings().validate()?;
        self.lookup()?;
        for (key, v) in [
            ("publish_attribute", &self.publish_attribute),
            ("subscribe_attribute", &self.subscribe_attribute),
            ("pubsub_attribute", &self.pubsub_attribute),
            ("username_attribute", &self.username_attribute),
        ] {
            if v.trim().is_empty() {
                return Err(BuildError::invalid(key, "must not be empty"));
            }
        }
        Ok(())
    }
}

/// Placeholders a lookup may use: what the CONNECT (or the client) has,
/// never the password.
const LOOKUP_VARS: [Var; 5] = [Var::Username, Var::ClientId, Var::Peerhost, Var::CertCommonName, Var::CertSubject];

fn lookup(
    user_dn: &Option<String>,
    base_dn: &Option<String>,
    filter: &Option<String>,
    scope: ScopeName,
) -> Result<Lookup, BuildError> {
    match (user_dn, base_dn, filter) {
        (Some(dn), None, None) => {
            let t = Template::parse(dn, &LOOKUP_VARS).map_err(|e| e.under("user_dn"))?;
            if !t.has_vars() {
                return Err(BuildError::invalid("user_dn", "needs a placeholder such as ${username}"));
            }
            Ok(Lookup::Dn(t))
        }
        (None, Some(base), Some(filter)) => {
            let t = Template::parse(filter, &LOOKUP_VARS).map_err(|e| e.under("filter"))?;
            if !t.has_vars() {
                return Err(BuildError::invalid("filter", "needs a placeholder such as ${username}"));
            }
            // The filter must parse with any value in the placeholders.
            let probe = t
                .render(&probe_values(), |v, out| out.push_str(&ldap3::ldap_escape(v)))
                .map_err(|_| BuildError::invalid("filter", "cannot be rendered"))?;
            ldap3::parse_filter(&probe)
                .map_err(|()| BuildError::invalid("filter", format!("{filter:?} is not a valid LDAP filter")))?;
            Ok(Lookup::Search { base: base.clone(), filter: t, scope })
        }
        (Some(_), _, _) => Err(BuildError::invalid("user_dn", "give either user_dn or base_dn with filter, not both")),
        (None, Some(_), None) => Err(BuildError::missing("filter", "required with base_dn")),
        (None, None, Some(_)) => Err(BuildError::missing("base_dn", "required with filter")),
        (None, None, None) => Err(BuildError::missing("user_dn", "required (or base_dn with filter) to find users")),
    }
}

fn probe_values() -> crate::common::template::Values<'static> {
    crate::common::template::Values {
        username: Some("u*)("),
        client_id: Some("c"),
        peerhost: Some("127.0.0.1".into()),
        cert_common_name: Some("cn"),
        cert_subject: Some("CN=cn"),
        ..Default::default()
    }
}

impl ServerSettings {
    /// Each server: verified when `ldaps://` or StartTLS (validation makes
    /// both require `tls` with a CA).
    pub fn endpoints(&self) -> Vec<crate::common::transport::Endpoint> {
        self.servers
            .iter()
            .map(|s| {
                let (scheme, rest) = s.split_once("://").unwrap_or(("ldap", s));
                let authority = rest.split('/').next().unwrap_or("");
                let host = crate::common::transport::host_of(authority);
                crate::common::transport::Endpoint::new(host, scheme == "ldaps" || self.starttls)
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), BuildError> {
        if self.servers.is_empty() {
            return Err(BuildError::missing("servers", "at least one URL (ldap://host:389 or ldaps://host:636)"));
        }
        let mut any_tls = self.starttls;
        for (i, s) in self.servers.iter().enumerate() {
            let key = || format!("servers[{i}]");
            let (scheme, rest) = s
                .split_once("://")
                .ok_or_else(|| BuildError::invalid(key(), format!("{s:?} is not an ldap:// or ldaps:// URL")))?;
            match scheme {
                "ldap" => {}
                "ldaps" => any_tls = true,
                _ => return Err(BuildError::invalid(key(), format!("{s:?}: the scheme must be ldap or ldaps"))),
            }
            let host = rest.split('/').next().unwrap_or("");
            if host.is_empty() {
                return Err(BuildError::invalid(key(), format!("{s:?} has no host")));
            }
        }
        if any_tls {
            if !self.tls.enable {
                return Err(BuildError::invalid(
                    "tls.enable",
                    "ldaps:// servers and starttls need tls = { enable = true, ca_file = \"…\" }",
                ));
            }
            if self.tls.server_name.is_some() {
                return Err(BuildError::invalid(
                    "tls.server_name",
                    "not supported by the ldap backend (the host in each URL is verified)",
                ));
            }
        } else if self.tls.enable {
            return Err(BuildError::invalid("tls.enable", "no server uses TLS (use ldaps:// URLs or starttls = true)"));
        }
        self.tls.validate()?;
        match (&self.bind_dn, &self.bind_password) {
            (Some(_), None) => return Err(BuildError::missing("bind_password", "required with bind_dn")),
            (None, Some(_)) => return Err(BuildError::missing("bind_dn", "required with bind_password")),
            _ => {}
        }
        if let Some(p) = &self.bind_password {
            let v = p.resolve("bind_password")?;
            if v.is_empty() {
                return Err(BuildError::invalid(
                    "bind_password",
                    "must not be empty (an empty simple bind is anonymous)",
                ));
            }
        }
        self.pool.validate()
    }
}
