//! Key paths such as `limits.rate_limit.burst` or `listeners[1].bind`, the
//! way every problem names the place it is about.

use std::fmt;

/// One step into the document: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A path from the document root. The empty path is the root itself.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(super) struct KeyPath(Vec<Seg>);

impl KeyPath {
    /// This path extended by a table key.
    pub(super) fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }

    /// This path extended by an array index.
    pub(super) fn index(&self, index: usize) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Index(index));
        KeyPath(segs)
    }

    pub(super) fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The nearest enclosing path that ends in a key: `listeners[2]` becomes
    /// `listeners`, `listeners[2].bind` stays as it is.
    pub(super) fn to_key(&self) -> KeyPath {
        let mut segs = self.0.clone();
        while matches!(segs.last(), Some(Seg::Index(_))) {
            segs.pop();
        }
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Index(index) => write!(f, "[{index}]")?,
                Seg::Key(key) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    if is_bare_key(key) {
                        f.write_str(key)?;
                    } else {
                        write!(f, "{key:?}")?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether TOML would accept `key` unquoted.
fn is_bare_key(key: &str) -> bool {
    !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Whether the path written `inner` lies at or below the one written `outer`.
pub(super) fn is_within(inner: &str, outer: &str) -> bool {
    match inner.strip_prefix(outer) {
        Some(rest) => rest.is_empty() || rest.starts_with('.') || rest.starts_with('['),
        None => false,
    }
}
