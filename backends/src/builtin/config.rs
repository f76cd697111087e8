//! `[auth.builtin.<name>]` and `[acl.builtin.<name>]`: where the built-in
//! user store lives and how it is read. Both tables take the same keys.
//!
//! ```toml
//! [auth.builtin.users]
//! path = "data/portcullis.db"      # the default
//! readers = 4
//! busy_timeout = "3s"
//! poll = "1s"
//! timeout = "5s"
//! on_error = "deny"
//! iteration_count = 4096           # SCRAM credentials derived on password set
//! ```
//!
//! A relative `path` is relative to the broker's working directory, like
//! every other path in the config. The default, `data/portcullis.db`,
//! keeps the store in a `data/` directory beside whatever else the broker
//! keeps on disk (snapshots, later the durable session store).

use std::path::PathBuf;
use std::time::Duration;

use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::default_timeout;
use crate::common::BuildError;

/// The store file when `path` is not set.
pub fn default_path() -> PathBuf {
    PathBuf::from("data/portcullis.db")
}

/// Read connections a provider keeps at most.
pub fn default_readers() -> u32 {
    4
}

/// How long a statement waits for a lock another connection (a writer in
/// another process: `portcullis users`, the admin API) holds. Shorter than
/// the chain's default `timeout`, so the store's own error wins.
pub fn default_busy_timeout() -> Duration {
    Duration::from_secs(3)
}

/// How often the store is checked for changes made by another process.
pub fn default_poll() -> Duration {
    Duration::from_secs(1)
}

/// The shortest `poll` accepted.
pub const MIN_POLL: Duration = Duration::from_millis(100);

/// `[auth.builtin.<name>]` / `[acl.builtin.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinConfig {
    /// The SQLite file. Created (mode 0600, its missing directories 0700)
    /// when the broker starts and it does not exist; `--check-config`
    /// creates nothing.
    #[serde(default = "default_path")]
    pub path: PathBuf,
    /// Read connections at most (reads never wait for a writer: WAL mode).
    #[serde(default = "default_readers")]
    pub readers: u32,
    /// How long a statement waits for another connection's lock.
    #[serde(default = "default_busy_timeout", deserialize_with = "units::duration")]
    pub busy_timeout: Duration,
    /// How often the store's revision is read: a change made by another
    /// process (`portcullis users`, `portcullis acl add`, the admin API)
    /// purges the auth and ACL caches within this long.
    #[serde(default = "default_poll", deserialize_with = "units::duration")]
    pub poll: Duration,
    /// The chain's limit for one call.
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    /// What the chain does when the store fails: `deny` (fail closed) or `ignore`.
    #[serde(default)]
    pub on_error: OnError,
    /// PBKDF2 iterations of the SCRAM credentials derived when a password
    /// is set (`portcullis users`, the admin API; EMQX's
    /// `iteration_count`). At least 4096 (RFC 7677).
    #[serde(default = "portcullis_auth::scram::default_iteration_count")]
    pub iteration_count: u32,
}

/// `[auth.builtin.<name>]`
pub type AuthConfig = BuiltinConfig;
/// `[acl.builtin.<name>]`
pub type AclConfig = BuiltinConfig;

crate::call_policy!(BuiltinConfig);

impl Default for BuiltinConfig {
    fn default() -> Self {
        BuiltinConfig {
            path: default_path(),
            readers: default_readers(),
            busy_timeout: default_busy_timeout(),
            poll: default_poll(),
            timeout: default_timeout(),
            on_error: OnError::default(),
            iteration_count: portcullis_auth::scram::default_iteration_count(),
        }
    }
}

impl BuiltinConfig {
    /// Checks what can be checked without touching the file; errors name
    /// the key.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.path.as_os_str().is_empty() {
            return Err(BuildError::invalid("path", "must not be empty"));
        }
        if self.readers == 0 {
            return Err(BuildError::invalid("readers", "must be at least 1"));
        }
        let (min, max) = (portcullis_auth::scram::MIN_ITERATIONS, portcullis_auth::scram::MAX_ITERATIONS);
        if !(min..=max).contains(&self.iteration_count) {
            return Err(BuildError::invalid("iteration_count", format!("must be {min} to {max}")));
        }
        if self.poll < MIN_POLL {
            return Err(BuildError::invalid("poll", format!("must be at least {}", humanize(MIN_POLL))));
        }
        Ok(())
    }
}

fn humanize(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::common::BuildErrorKind;

    #[test]
    fn defaults_and_unknown_keys() {
        let c: BuiltinConfig = serde_json::from_value(json!({})).unwrap();
        assert_eq!(c, BuiltinConfig::default());
        assert_eq!(c.path, PathBuf::from("data/portcullis.db"));
        assert_eq!(c.on_error, OnError::Deny);
        let e = serde_json::from_value::<BuiltinConfig>(json!({ "pth": "x" })).unwrap_err();
        assert!(e.to_string().contains("pth"), "{e}");
    }

    #[test]
    fn errors_name_the_key() {
        let c = |v| serde_json::from_value::<BuiltinConfig>(v).unwrap().validate();
        let e = c(json!({ "path": "" })).unwrap_err();
        assert!(e.is("path", BuildErrorKind::Invalid), "{e}");
        assert_eq!(e.to_string(), "path: must not be empty");
        assert!(c(json!({ "readers": 0 })).unwrap_err().is("readers", BuildErrorKind::Invalid));
        assert_eq!(c(json!({ "poll": "10ms" })).unwrap_err().to_string(), "poll: must be at least 100ms");
        assert!(c(json!({ "poll": "100ms" })).is_ok());
    }
}
