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
    /// The value; errors say where it should have come from.
    pub fn resolve(&self) -> Result<String, String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            Secret::Env { env } => std::env::var(env).map_err(|_| format!("environment variable {env} is not set")),
            Secret::File { file } => std::fs::read_to_string(file)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read {}: {e}", file.display())),
        }
    }
}
