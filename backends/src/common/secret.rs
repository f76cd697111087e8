//! Secrets in the config (backend passwords, bind passwords, tokens):
//! written inline, or taken from the environment or a file, so the config
//! file itself can be shared. Never printed: `Debug` shows `<redacted>`.
//!
//! ```toml
//! password = "s3cret"
//! password = { env = "PG_PASSWORD" }
//! password = { file = "/run/secrets/pg_password" }   # trailing newline dropped
//! ```

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::BuildError;

#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    Inline(String),
    Env { env: String },
    File { file: PathBuf },
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Secret(<redacted>)"),
            Secret::Env { env } => write!(f, "Secret(env {env})"),
            Secret::File { file } => write!(f, "Secret(file {})", file.display()),
        }
    }
}

impl Secret {
    /// The value; an error is a [`BuildErrorKind::Secret`] at `key` (the
    /// key the secret is written under) that says where the value should
    /// have come from.
    ///
    /// [`BuildErrorKind::Secret`]: super::BuildErrorKind::Secret
    pub fn resolve(&self, key: &str) -> Result<String, BuildError> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::Env { env } => std::env::var(env)
                .map_err(|_| BuildError::secret(key, format!("environment variable {env} is not set"))),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| BuildError::secret(key, format!("cannot read {}: {e}", file.display()))),
        }
    }
}
