//! Deserializing the file model from a [`toml::Table`] while keeping track of
//! key paths, so that every problem is reported, each at its own key.
//!
//! serde stops at the first error. [`deserialize`] therefore runs in rounds:
//! when a round fails, the error is recorded with the path where it arose,
//! that key is hidden from the next round (its field then takes its
//! default), and the model is deserialized again, until a round succeeds.
//! A config file is small, so the repeated rounds cost nothing measurable.
//! The model keeps serde's own `deny_unknown_fields` and field types; this
//! module only adds the paths and the recovery.

use std::collections::HashSet;
use std::fmt;

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, Expected, IntoDeserializer, MapAccess, SeqAccess,
    Unexpected, Visitor,
};
use toml::Value;

use super::path::KeyPath;
use super::{Problem, ProblemKind};

/// At most this many problems are collected from one file.
const MAX_ROUNDS: usize = 64;

/// What deserialization found: the model (when any round got through) and
/// the problems, plus the paths that were hidden because of them.
#[derive(Debug)]
pub(super) struct Outcome<T> {
    pub(super) value: Option<T>,
    pub(super) problems: Vec<Problem>,
    pub(super) hidden: Vec<String>,
}

/// Deserializes `T` from `table`, collecting every problem (see module docs).
pub(super) fn deserialize<T: DeserializeOwned>(table: &toml::Table) -> Outcome<T> {
    let mut hidden = HashSet::new();
    let mut problems = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let root = ValueDe::Table { table, path: KeyPath::default(), hidden: &hidden };
        match T::deserialize(root) {
            Ok(value) => {
                return Outcome {
                    value: Some(value),
                    problems,
                    hidden: hidden.iter().map(ToString::to_string).collect(),
                };
            }
            Err(err) => {
                let at = err.at.clone().unwrap_or_default();
                problems.push(err.into_problem());
                // A bad array element hides its whole array: hiding one
                // element would renumber the ones after it.
                let hide = at.to_key();
                if hide.is_root() || !hidden.insert(hide) {
                    break;
                }
            }
        }
    }
    if problems.len() >= MAX_ROUNDS {
        problems.push(Problem {
            path: String::new(),
            line: None,
            kind: ProblemKind::Invalid(format!("too many problems, stopped after {MAX_ROUNDS}")),
        });
    }
    Outcome { value: None, problems, hidden: hidden.iter().map(ToString::to_string).collect() }
}

/// A deserialization error and the path where it arose.
#[derive(Debug)]
pub(super) struct DeError {
    kind: DeErrorKind,
    at: Option<KeyPath>,
}

#[derive(Debug)]
enum DeErrorKind {
    Message(String),
    UnknownKey { key: String, expected: &'static [&'static str] },
}

impl DeError {
    /// Places the error at `path` unless a deeper level already placed it.
    fn at(mut self, path: &KeyPath) -> DeError {
        if self.at.is_none() {
            self.at = Some(path.clone());
        }
        self
    }

    fn into_problem(self) -> Problem {
        let path = self.at.unwrap_or_default().to_string();
        let kind = match self.kind {
            DeErrorKind::Message(message) => ProblemKind::Invalid(message),
            DeErrorKind::UnknownKey { key, expected } => {
                ProblemKind::UnknownKey { suggestion: suggest(&key, expected).map(str::to_owned) }
            }
        };
        Problem { path, line: None, kind }
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            DeErrorKind::Message(message) => f.write_str(message),
            DeErrorKind::UnknownKey { key, .. } => write!(f, "unknown key `{key}`"),
        }
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError { kind: DeErrorKind::Message(msg.to_string()), at: None }
    }

    fn invalid_type(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::custom(format_args!("expected {}, got {}", describe_expected(exp), describe_unexpected(&unexp)))
    }

    fn invalid_value(unexp: Unexpected<'_>, exp: &dyn Expected) -> Self {
        Self::invalid_type(unexp, exp)
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(format_args!("unknown value \"{variant}\", expected {}", one_of(expected)))
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DeError { kind: DeErrorKind::UnknownKey { key: field.to_owned(), expected }, at: None }
    }

    fn missing_field(field: &'static str) -> Self {
        Self::custom(format_args!("missing required key `{field}`"))
    }
}

/// serde's description of what was expected, in config-file words.
fn describe_expected(exp: &dyn Expected) -> String {
    let text = exp.to_string();
    match text.as_str() {
        "u8" => "an integer from 0 to 255".to_owned(),
        "u16" => "an integer from 0 to 65535".to_owned(),
        "u32" => "an integer from 0 to 4294967295".to_owned(),
        "u64" | "usize" => "a non-negative integer".to_owned(),
        "a boolean" => "true or false".to_owned(),
        _ if text.starts_with("struct ") => "a table".to_owned(),
        _ if text.starts_with("a sequence") => "an array".to_owned(),
        _ => text,
    }
}

fn describe_unexpected(unexp: &Unexpected<'_>) -> String {
    match unexp {
        Unexpected::Bool(b) => format!("{b}"),
        Unexpected::Signed(i) => format!("integer {i}"),
        Unexpected::Unsigned(u) => format!("integer {u}"),
        Unexpected::Float(x) => format!("float {x}"),
        Unexpected::Str(s) => format!("string {s:?}"),
        Unexpected::Map => "a table".to_owned(),
        Unexpected::Seq => "an array".to_owned(),
        other => other.to_string(),
    }
}

/// "`a`", "`a` or `b`", "one of `a`, `b`, `c`".
fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    match quoted.as_slice() {
        [] => "nothing".to_owned(),
        [one] => one.clone(),
        [a, b] => format!("{a} or {b}"),
        _ => format!("one of {}", quoted.join(", ")),
    }
}

/// The known key closest to a misspelt one, if any is close enough.
fn suggest<'a>(key: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|candidate| (edit_distance(key, candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// Edit distance over chars where a swap of two neighbours counts as one
/// edit (optimal string alignment): `brust` is one edit from `burst`.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between the first i chars of a and first j of b.
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1).min(d[i][j - 1] + 1).min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

/// A serde deserializer over one TOML value at a known path.
enum ValueDe<'a> {
    Table { table: &'a toml::Table, path: KeyPath, hidden: &'a HashSet<KeyPath> },
    Value { value: &'a Value, path: KeyPath, hidden: &'a HashSet<KeyPath> },
}

impl<'a> ValueDe<'a> {
    fn new(value: &'a Value, path: KeyPath, hidden: &'a HashSet<KeyPath>) -> Self {
        match value {
            Value::Table(table) => ValueDe::Table { table, path, hidden },
            _ => ValueDe::Value { value, path, hidden },
        }
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::String(s) => Unexpected::Str(s),
        Value::Integer(i) => Unexpected::Signed(*i),
        Value::Float(x) => Unexpected::Float(*x),
        Value::Boolean(b) => Unexpected::Bool(*b),
        Value::Datetime(_) => Unexpected::Other("a datetime"),
        Value::Array(_) => Unexpected::Seq,
        Value::Table(_) => Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for ValueDe<'de> {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            ValueDe::Table { table, path, hidden } => {
                visitor.visit_map(TableAccess { entries: table.iter(), pending: None, path, hidden })
            }
            ValueDe::Value { value, path, hidden } => match value {
                Value::String(s) => visitor.visit_borrowed_str(s),
                Value::Integer(i) => visitor.visit_i64(*i),
                Value::Float(x) => visitor.visit_f64(*x),
                Value::Boolean(b) => visitor.visit_bool(*b),
                Value::Array(items) => visitor.visit_seq(ArrayAccess { items: items.iter().enumerate(), path, hidden }),
                Value::Datetime(_) | Value::Table(_) => Err(de::Error::invalid_type(unexpected(value), &visitor)),
            },
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        // A key that is present is never "none": absence is the only none.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, _name: &'static str, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        // Only unit variants written as strings: `format = "json"`.
        match self {
            ValueDe::Value { value: Value::String(s), .. } => visitor.visit_enum(s.as_str().into_deserializer()),
            ValueDe::Value { value, .. } => Err(de::Error::invalid_type(unexpected(value), &visitor)),
            ValueDe::Table { .. } => Err(de::Error::invalid_type(Unexpected::Map, &visitor)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple tuple_struct map struct
        identifier ignored_any
    }
}

/// The entries of a table, minus hidden keys.
struct TableAccess<'a> {
    entries: toml::map::Iter<'a>,
    pending: Option<(&'a str, &'a Value)>,
    path: KeyPath,
    hidden: &'a HashSet<KeyPath>,
}

impl<'de> MapAccess<'de> for TableAccess<'de> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
        for (key, value) in self.entries.by_ref() {
            let path = self.path.key(key);
            if self.hidden.contains(&path) {
                continue;
            }
            self.pending = Some((key, value));
            return seed
                .deserialize(BorrowedStrDeserializer::<DeError>::new(key))
                .map(Some)
                .map_err(|err| err.at(&path));
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let Some((key, value)) = self.pending.take() else {
            return Err(de::Error::custom("a value was asked for before its key"));
        };
        let path = self.path.key(key);
        seed.deserialize(ValueDe::new(value, path.clone(), self.hidden)).map_err(|err| err.at(&path))
    }
}

/// The elements of an array, each at its index.
struct ArrayAccess<'a> {
    items: std::iter::Enumerate<std::slice::Iter<'a, Value>>,
    path: KeyPath,
    hidden: &'a HashSet<KeyPath>,
}

impl<'de> SeqAccess<'de> for ArrayAccess<'de> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
        let Some((index, value)) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(index);
        seed.deserialize(ValueDe::new(value, path.clone(), self.hidden)).map(Some).map_err(|err| err.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}
