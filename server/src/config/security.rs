//! `[auth]` and `[acl]`: providers, chains, caches and the brute-force
//! guard, as written in the file.
//!
//! Providers are tables keyed by type and then by instance name, so several
//! instances of one type coexist and each table has its own exact set of
//! keys: `[auth.password_file.devices]`, `[auth.ip.office]`,
//! `[acl.file.main]`, `[acl.policy_dir.devices]`. A chain is a list of
//! instance names in the order they are asked: `auth.chain` is the
//! `default` chain; `[auth.chains]` holds more, for listeners that want a
//! different one (`[[listeners]] auth_chain = "name"`).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use portcullis_backends as backends;
use serde::Deserialize;

use super::units;
use crate::providers as build;

/// The provider kinds of a section, listed once (the `[auth]` and `[acl]`
/// invocations below). A kind is one line: its key, its config type and
/// the function that builds it ([`crate::providers`]); a backend kind
/// names the backend crate's builder and its cargo feature instead. From
/// that line come the struct's field, [`AuthSection::provider_names`], the
/// error for a backend this build lacks ([`AuthSection::not_built`]) and
/// the build step ([`AuthSection::build_providers`]): a new kind is one
/// line here and one builder.
macro_rules! provider_section {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $fty:ty, )*
        }
        section $section:literal, provider $prov:ty;
        kinds {
            $( $(#[$kmeta:meta])* $kind:ident : $kty:ty => $kbuild:path; )*
        }
        backends {
            $( $bkind:ident : $bty:ty => $bbuild:path, if $feat:literal; )*
        }
    ) => {
        $(#[$meta])*
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $fty, )*
            $(
                $(#[$kmeta])*
                #[serde(default)]
                pub $kind: BTreeMap<String, $kty>,
            )*
            $(
                #[cfg(feature = $feat)]
                #[serde(default)]
                pub $bkind: BTreeMap<String, $bty>,
                /// Set when the file has this table and the build lacks the backend.
                #[cfg(not(feature = $feat))]
                #[serde(default)]
                pub $bkind: NotBuilt,
            )*
        }

        impl $name {
            /// Every provider name with its type, in file order per type.
            pub fn provider_names(&self) -> Vec<(&str, &'static str)> {
                let mut v: Vec<(&str, &'static str)> = Vec::new();
                $( v.extend(self.$kind.keys().map(|k| (k.as_str(), stringify!($kind)))); )*
                $(
                    #[cfg(feature = $feat)]
                    v.extend(self.$bkind.keys().map(|k| (k.as_str(), stringify!($bkind))));
                )*
                v
            }

            /// Backend tables in the file that this build cannot serve:
            /// `(kind, cargo feature)`.
            pub fn not_built(&self) -> Vec<(&'static str, &'static str)> {
                #[allow(unused_mut)]
                let mut v = Vec::new();
                $(
                    #[cfg(not(feature = $feat))]
                    if self.$bkind.0 {
                        v.push((stringify!($bkind), $feat));
                    }
                )*
                v
            }

            /// Builds every provider of the section, by name (I/O happens
            /// here); an error names the provider's key.
            pub async fn build_providers(
                &self,
                cx: &mut crate::providers::Context,
            ) -> anyhow::Result<HashMap<String, crate::providers::Built<$prov>>> {
                let mut t = HashMap::new();
                $(
                    for (name, c) in &self.$kind {
                        let built = $kbuild(name, c, cx)
                            .await
                            .map_err(|e| anyhow::anyhow!("{}.{}.{name}: {e}", $section, stringify!($kind)))?;
                        t.insert(name.clone(), built);
                    }
                )*
                $(
                    #[cfg(feature = $feat)]
                    for (name, c) in &self.$bkind {
                        let p = $bbuild(name, c)
                            .await
                            .map_err(|e| anyhow::anyhow!("{}.{}.{name}: {e}", $section, stringify!($bkind)))?;
                        t.insert(name.clone(), crate::providers::backend(p, c));
                    }
                )*
                Ok(t)
            }
        }
    };
}

/// A backend table in a build without that backend: deserialized as "it
/// was there", so validation can say which cargo feature is missing
/// rather than "unknown field".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NotBuilt(pub bool);

impl<'de> Deserialize<'de> for NotBuilt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<NotBuilt, D::Error> {
        serde::de::IgnoredAny::deserialize(d)?;
        Ok(NotBuilt(true))
    }
}

/// Per-call policy every provider table carries.
pub fn default_provider_timeout() -> Duration {
    Duration::from_secs(5)
}

/// `on_error` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnErrorName {
    /// Fail closed (auth: CONNACK server unavailable; ACL: deny).
    #[default]
    Deny,
    /// Skip the failing provider as if it had ignored the request.
    Ignore,
}

/// `no_match` / permission as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowDeny {
    Allow,
    #[default]
    Deny,
}

/// `acl.deny_action` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DenyActionName {
    /// Refuse the action (SUBACK 0x80/0x87, PUBACK 0x87 or drop) and carry on.
    #[default]
    Ignore,
    /// Refuse and close the connection.
    Disconnect,
}

/// `[auth.anonymous.<name>]`: admits CONNECTs without a username.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonymousConfig {
    /// Source networks admitted; an empty list admits every address.
    #[serde(default = "default_loopback_nets")]
    pub allow_from: Vec<IpNet>,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// 127.0.0.0/8 and ::1.
pub fn default_loopback_nets() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"].iter().filter_map(|s| s.parse().ok()).collect()
}

/// One entry of `[auth.client_id.<name>] clients`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdEntryConfig {
    pub client_id: String,
    /// Admit this client id only from this network.
    #[serde(default)]
    pub from: Option<IpNet>,
}

/// `[auth.client_id.<name>]`: a list of admitted client ids (emqttd's
/// clients.config), either inline (`clients`) or from a file of
/// `client_id [cidr]` lines (`path`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientIdConfig {
    #[serde(default)]
    pub clients: Vec<ClientIdEntryConfig>,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// `[auth.password_file.<name>]`: Mosquitto `user:hash` file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordFileConfig {
    pub path: PathBuf,
    /// For lines without a self-describing hash (`$7$`, bcrypt and argon2
    /// lines always are): `user:digest` or, salted, `user:digest:salt`,
    /// read with the same `{ algo, salt_position, encoding, … }` settings
    /// as the backends' `password_hash`.
    #[serde(default)]
    pub hash: Option<backends::common::password::PasswordHashConfig>,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// `[auth.ip.<name>]`: admit or refuse by source network.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpAuthConfig {
    #[serde(default)]
    pub allow: Vec<IpNet>,
    /// Checked first: a peer in `deny` is refused even if also in `allow`.
    #[serde(default)]
    pub deny: Vec<IpNet>,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// `[auth.cache]`
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthCacheSection {
    /// Cached results at most (0 disables the cache).
    #[serde(default = "default_auth_cache_entries")]
    pub max_entries: u64,
    #[serde(default = "default_ttl_allow", deserialize_with = "units::duration")]
    pub ttl_allow: Duration,
    #[serde(default = "default_ttl_deny", deserialize_with = "units::duration")]
    pub ttl_deny: Duration,
    /// Fraction of a TTL randomly taken off each entry (0.0 to 0.5), so
    /// entries made together do not expire together.
    #[serde(default = "default_jitter")]
    pub jitter: f64,
    /// Serve an expired allow for up to this long when the chain fails.
    #[serde(default, deserialize_with = "units::duration_or_off")]
    pub stale_on_error: Option<Duration>,
}

pub fn default_auth_cache_entries() -> u64 {
    100_000
}
pub fn default_ttl_allow() -> Duration {
    Duration::from_secs(300)
}
pub fn default_ttl_deny() -> Duration {
    Duration::from_secs(30)
}
pub fn default_jitter() -> f64 {
    0.1
}

impl Default for AuthCacheSection {
    fn default() -> Self {
        AuthCacheSection {
            max_entries: default_auth_cache_entries(),
            ttl_allow: default_ttl_allow(),
            ttl_deny: default_ttl_deny(),
            jitter: default_jitter(),
            stale_on_error: None,
        }
    }
}

/// `[auth.guard]`: brute-force protection (see `portcullis_auth::guard`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardSection {
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Failed authentications of one username from one address within
    /// `window` that ban that username from that address. Also the most
    /// attempts of one username from one address checked at once.
    #[serde(default = "default_guard_failures")]
    pub max_failures: u32,
    /// Failed authentications from one address, over every username, within
    /// `window` that ban the address; also the most attempts from one
    /// address checked at once. Higher than `max_failures` so that a few
    /// users' typos behind one address (a NAT, a test rig) do not lock out
    /// everyone behind it, while a spray of guesses over many usernames
    /// from one address stays bounded.
    #[serde(default = "default_guard_failures_per_ip")]
    pub max_failures_per_ip: u32,
    #[serde(default = "default_guard_window", deserialize_with = "units::duration")]
    pub window: Duration,
    #[serde(default = "default_guard_ban", deserialize_with = "units::duration")]
    pub ban: Duration,
    /// Networks never counted, throttled nor banned (trusted NATs, test
    /// rigs, health checkers). Empty by default: loopback is counted too.
    #[serde(default)]
    pub exempt: Vec<IpNet>,
}

pub fn default_true() -> bool {
    true
}
pub fn default_guard_failures() -> u32 {
    10
}
/// Ten users' worth of `max_failures`: a NAT whose devices mostly log in
/// keeps working while a few retry with a stale password, and one address
/// still gets at most 100 guesses per window and ban.
pub fn default_guard_failures_per_ip() -> u32 {
    100
}
pub fn default_guard_window() -> Duration {
    Duration::from_secs(60)
}
pub fn default_guard_ban() -> Duration {
    Duration::from_secs(300)
}

impl Default for GuardSection {
    fn default() -> Self {
        GuardSection {
            enabled: true,
            max_failures: default_guard_failures(),
            max_failures_per_ip: default_guard_failures_per_ip(),
            window: default_guard_window(),
            ban: default_guard_ban(),
            exempt: Vec::new(),
        }
    }
}

provider_section! {
    /// `[auth]`
    #[derive(Debug, Clone, PartialEq, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct AuthSection {
        /// The `default` chain: provider names in the order they are asked.
        /// Empty (the default): anonymous clients from loopback only.
        #[serde(default)]
        pub chain: Vec<String>,
        /// More chains by name, for listeners (`auth_chain = "<name>"`).
        #[serde(default)]
        pub chains: BTreeMap<String, Vec<String>>,
        /// When every provider ignores a CONNECT.
        #[serde(default)]
        pub no_match: AllowDeny,
        #[serde(default)]
        pub cache: AuthCacheSection,
        #[serde(default)]
        pub guard: GuardSection,
        /// MQTT 5 enhanced authentication: SCRAM methods (`[auth.scram.<name>]`).
        #[serde(default)]
        pub scram: BTreeMap<String, super::enhanced::ScramConfig>,
        /// Single-step token methods (`[auth.enhanced_token.<name>]`).
        #[serde(default)]
        pub enhanced_token: BTreeMap<String, super::enhanced::TokenMethodConfig>,
    }
    section "auth", provider portcullis_auth::provider::DynAuthProvider;
    kinds {
        anonymous: AnonymousConfig => build::anonymous;
        client_id: ClientIdConfig => build::client_id;
        password_file: PasswordFileConfig => build::password_file;
        ip: IpAuthConfig => build::ip;
        certificate: CertificateAuthConfig => build::certificate;
        /// The built-in user store (`[auth.builtin.<name>]`).
        builtin: backends::builtin::AuthConfig => build::builtin_auth;
    }
    backends {
        postgres: backends::postgres::AuthConfig => backends::postgres::auth_provider, if "postgres";
        mysql: backends::mysql::AuthConfig => backends::mysql::auth_provider, if "mysql";
        redis: backends::redis::AuthConfig => backends::redis::auth_provider, if "redis";
        ldap: backends::ldap::AuthConfig => backends::ldap::auth_provider, if "ldap";
        mongodb: backends::mongodb::AuthConfig => backends::mongodb::auth_provider, if "mongodb";
        http: backends::http::AuthConfig => backends::http::auth_provider, if "http";
        jwt: backends::jwt::AuthConfig => backends::jwt::auth_provider, if "jwt";
    }
}

/// `[auth.certificate.<name>]`: admit on a verified TLS client certificate.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertificateAuthConfig {
    /// A username in the CONNECT, if sent, must equal the certificate's CN.
    #[serde(default = "default_true")]
    pub match_username: bool,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// `acl.v5_deny_reason` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum V5DenyReason {
    /// 0x87 Not authorized.
    #[default]
    NotAuthorized,
    /// 0x80 Unspecified error: tells the client less.
    UnspecifiedError,
}

/// `[acl.file.<name>]`: an ACL file in TOML.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclFileConfig {
    pub path: PathBuf,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// Which identity names a per-device policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKeyName {
    #[default]
    ClientId,
    Username,
}

/// `[acl.policy_dir.<name>]`: one policy file per device.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDirConfig {
    pub dir: PathBuf,
    #[serde(default)]
    pub key: PolicyKeyName,
    /// How often the directory is checked for changes.
    #[serde(default = "default_poll", deserialize_with = "units::duration")]
    pub poll: Duration,
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

pub fn default_poll() -> Duration {
    Duration::from_secs(2)
}

/// `[acl.inline.<name>]` and `[acl.defaults.<name>]`: no settings but the
/// call policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlainAclConfig {
    #[serde(default = "default_provider_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnErrorName,
}

/// `[acl.cache]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclCacheSection {
    /// Cached decisions at most (0 disables the cache).
    #[serde(default = "default_acl_cache_entries")]
    pub max_entries: u64,
    /// Bytes the cached decisions hold together at most, each counted by
    /// its key and value strings plus a fixed overhead
    /// (`portcullis_acl::cache::entry_weight`); 0 disables the cache.
    #[serde(default = "default_acl_cache_bytes", deserialize_with = "units::size")]
    pub max_bytes: u64,
    #[serde(default = "default_acl_ttl", deserialize_with = "units::duration")]
    pub ttl: Duration,
}

pub fn default_acl_cache_entries() -> u64 {
    1_000_000
}
pub fn default_acl_cache_bytes() -> u64 {
    64 * 1024 * 1024
}
pub fn default_acl_ttl() -> Duration {
    Duration::from_secs(60)
}

impl Default for AclCacheSection {
    fn default() -> Self {
        AclCacheSection {
            max_entries: default_acl_cache_entries(),
            max_bytes: default_acl_cache_bytes(),
            ttl: default_acl_ttl(),
        }
    }
}

provider_section! {
    /// `[acl]`
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
    #[serde(deny_unknown_fields)]
    pub struct AclSection {
        /// The `default` chain. Empty (the default): emqttd's shipped rules —
        /// loopback clients may do anything; everyone else may not subscribe
        /// to `$SYS/#` or `#`, and may do everything else.
        #[serde(default)]
        pub chain: Vec<String>,
        #[serde(default)]
        pub chains: BTreeMap<String, Vec<String>>,
        /// When every provider ignores.
        #[serde(default)]
        pub no_match: AllowDeny,
        #[serde(default)]
        pub deny_action: DenyActionName,
        /// Reason code MQTT 5 clients get for a denied SUBSCRIBE filter or
        /// PUBLISH (3.x clients always get SUBACK 0x80).
        #[serde(default)]
        pub v5_deny_reason: V5DenyReason,
        /// Check every message again at delivery, as a subscription to its
        /// topic: a subscription granted before a rule changed, or a broad one
        /// no deny rule covered, then cannot carry a refused topic.
        #[serde(default)]
        pub check_on_delivery: bool,
        #[serde(default)]
        pub cache: AclCacheSection,
    }
    section "acl", provider portcullis_acl::provider::DynAclProvider;
    kinds {
        file: AclFileConfig => build::acl_file;
        mosquitto: AclFileConfig => build::mosquitto;
        policy_dir: PolicyDirConfig => build::policy_dir;
        inline: PlainAclConfig => build::inline;
        defaults: PlainAclConfig => build::defaults;
        /// The built-in user store's rules (`[acl.builtin.<name>]`).
        builtin: backends::builtin::AclConfig => build::builtin_acl;
    }
    backends {
        postgres: backends::postgres::AclConfig => backends::postgres::acl_provider, if "postgres";
        mysql: backends::mysql::AclConfig => backends::mysql::acl_provider, if "mysql";
        redis: backends::redis::AclConfig => backends::redis::acl_provider, if "redis";
        ldap: backends::ldap::AclConfig => backends::ldap::acl_provider, if "ldap";
        mongodb: backends::mongodb::AclConfig => backends::mongodb::acl_provider, if "mongodb";
        http: backends::http::AclConfig => backends::http::acl_provider, if "http";
    }
}
