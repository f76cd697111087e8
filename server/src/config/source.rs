//! The text of a config file: TOML syntax, and where each key sits.
//!
//! The file is read twice by the `toml` crate: once into a [`toml::Table`]
//! (the values that [`super::de`] walks), and once into a tree of spanned
//! keys, from which every key path gets the line it was written on. The
//! second pass is only for messages: if it fails (the one known case is a
//! TOML datetime, which `toml` cannot give key spans for), problems are
//! reported without line numbers.

use std::collections::HashMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use toml::Spanned;

use super::path::KeyPath;
use super::{Problem, ProblemKind};

/// A syntactically valid file: its values and the line of each key.
#[derive(Debug)]
pub(super) struct Source {
    pub(super) table: toml::Table,
    lines: HashMap<String, usize>,
}

impl Source {
    /// Parses TOML text. A syntax error is the only problem reported then:
    /// nothing after it can be trusted.
    pub(super) fn parse(text: &str) -> Result<Source, Problem> {
        let table: toml::Table = toml::from_str(text).map_err(|err| {
            let line = err.span().map(|span| line_at(text, span.start));
            let message = err.message().lines().collect::<Vec<_>>().join("; ");
            Problem { path: String::new(), line, kind: ProblemKind::Syntax(message) }
        })?;
        let mut lines = HashMap::new();
        if let Ok(tree) = toml::from_str::<KeyTree>(text) {
            tree.record(text, &KeyPath::default(), &mut lines);
        }
        Ok(Source { table, lines })
    }

    /// The line (1-based) where `path` is written, or failing that where
    /// its nearest enclosing key is; `None` when neither is in the file.
    pub(super) fn line_of(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.lines.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

/// The 1-based line holding byte `offset` of `text`.
fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Keys with their spans; values are only followed into tables and arrays.
#[derive(Debug)]
enum KeyTree {
    Table(Vec<(Spanned<String>, KeyTree)>),
    Array(Vec<KeyTree>),
    Leaf,
}

impl KeyTree {
    fn record(&self, text: &str, at: &KeyPath, lines: &mut HashMap<String, usize>) {
        match self {
            KeyTree::Leaf => {}
            KeyTree::Table(entries) => {
                for (key, value) in entries {
                    let path = at.key(key.get_ref());
                    lines.insert(path.to_string(), line_at(text, key.span().start));
                    value.record(text, &path, lines);
                }
            }
            KeyTree::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    let path = at.index(index);
                    // An element is placed at the line of its first key.
                    if let KeyTree::Table(entries) = item {
                        if let Some((key, _)) = entries.first() {
                            lines.insert(path.to_string(), line_at(text, key.span().start));
                        }
                    }
                    item.record(text, &path, lines);
                }
            }
        }
    }
}

impl<'de> Deserialize<'de> for KeyTree {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KeyTreeVisitor)
    }
}

struct KeyTreeVisitor;

impl<'de> Visitor<'de> for KeyTreeVisitor {
    type Value = KeyTree;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<KeyTree, E> {
        Ok(KeyTree::Leaf)
    }

    fn visit_i64<E>(self, _: i64) -> Result<KeyTree, E> {
        Ok(KeyTree::Leaf)
    }

    fn visit_u64<E>(self, _: u64) -> Result<KeyTree, E> {
        Ok(KeyTree::Leaf)
    }

    fn visit_f64<E>(self, _: f64) -> Result<KeyTree, E> {
        Ok(KeyTree::Leaf)
    }

    fn visit_str<E>(self, _: &str) -> Result<KeyTree, E> {
        Ok(KeyTree::Leaf)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<KeyTree, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(KeyTree::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyTree, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            entries.push((key, map.next_value()?));
        }
        Ok(KeyTree::Table(entries))
    }
}
