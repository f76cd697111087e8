//! [`BuildError`]: why a provider could not be built from its table. It
//! carries the key it is about (relative to the provider's table:
//! `tls.ca_file`, `superuser.url`, `body.u`), what kind of failure it is,
//! and the reason, each set where the failure is found. It renders as
//! `<key>: <reason>`; the server prefixes the provider's own key
//! (`auth.http.main: url: an https URL needs tls.enable`).

use std::fmt;

/// What kind of build failure it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildErrorKind {
    /// A value is wrong: unparsable, out of range, not allowed here, or at
    /// odds with another key.
    Invalid,
    /// A key that is required (here, or with another key's value) is absent.
    Missing,
    /// A file the key names cannot be read or holds nothing usable (a CA
    /// bundle without a certificate, say).
    File,
    /// A secret written as `{ env = … }` or `{ file = … }` cannot be read.
    Secret,
    /// A client library refused the settings (TLS setup, HTTP client).
    Client,
    /// The built-in user store could not be opened.
    Store,
}

/// A provider failed to build: the key (relative to the provider's table;
/// empty for the table as a whole), the kind, and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct BuildError {
    pub key: String,
    pub kind: BuildErrorKind,
    pub reason: String,
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.key, self.reason)
        }
    }
}

impl BuildError {
    pub fn new(kind: BuildErrorKind, key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError { key: key.into(), kind, reason: reason.into() }
    }
    pub fn invalid(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::Invalid, key, reason)
    }
    pub fn missing(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::Missing, key, reason)
    }
    pub fn file(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::File, key, reason)
    }
    pub fn secret(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::Secret, key, reason)
    }
    pub fn client(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::Client, key, reason)
    }
    pub fn store(key: impl Into<String>, reason: impl Into<String>) -> BuildError {
        BuildError::new(BuildErrorKind::Store, key, reason)
    }

    /// The same error one table further out: `url` under `superuser` is
    /// `superuser.url`; an error without a key gets `prefix` as its key.
    pub fn under(mut self, prefix: &str) -> BuildError {
        self.key = match (prefix.is_empty(), self.key.is_empty()) {
            (true, _) => self.key,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{}", self.key),
        };
        self
    }

    /// Whether this is `kind` at `key` (for tests and callers that branch).
    pub fn is(&self, key: &str, kind: BuildErrorKind) -> bool {
        self.key == key && self.kind == kind
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_key_then_reason_and_nests_keys() {
        let e = BuildError::invalid("url", "an https URL needs tls.enable").under("superuser");
        assert!(e.is("superuser.url", BuildErrorKind::Invalid));
        assert_eq!(e.to_string(), "superuser.url: an https URL needs tls.enable");
        let bare = BuildError::invalid("", "unknown placeholder").under("body.u");
        assert_eq!(bare.key, "body.u");
        assert_eq!(BuildError::invalid("", "why").to_string(), "why");
        assert_eq!(BuildError::file("x", "y").under("").key, "x");
    }
}
