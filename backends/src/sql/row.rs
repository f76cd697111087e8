//! Result rows read by column name, whatever the column types.
//!
//! Deployments store the same facts in different types: `is_superuser` is a
//! `boolean` in PostgreSQL, a `tinyint(1)` in MySQL, sometimes a string;
//! emqttd's `allow` is an `int`, EMQX's `permission` a `varchar` or an
//! `ENUM`. Each driver reads only the columns a provider asks for (other
//! columns, a `created datetime` say, are never decoded) into a [`Cell`],
//! and the providers interpret cells leniently.

use std::borrow::Cow;

use crate::common::rows::RowError;

/// One column value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    Text(String),
    Bytes(Vec<u8>),
}

impl Cell {
    /// The value as text (`NULL` is `None`); bytes must be UTF-8. Errors
    /// name no column: [`SqlRow`] adds it.
    pub fn text(&self) -> Result<Option<Cow<'_, str>>, RowError> {
        Ok(Some(match self {
            Cell::Null => return Ok(None),
            Cell::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Cell::Int(i) => Cow::Owned(i.to_string()),
            Cell::Text(s) => Cow::Borrowed(s.as_str()),
            Cell::Bytes(b) => {
                Cow::Borrowed(std::str::from_utf8(b).map_err(|_| RowError::new("", "is not UTF-8 text"))?)
            }
        }))
    }

    /// The value as a number (`NULL` is `None`; `true` is 1).
    pub fn int(&self) -> Result<Option<i64>, RowError> {
        match self {
            Cell::Null => Ok(None),
            Cell::Bool(b) => Ok(Some(i64::from(*b))),
            Cell::Int(i) => Ok(Some(*i)),
            other => {
                let t = other.text()?.unwrap_or_default();
                t.trim().parse().map(Some).map_err(|_| RowError::new("", format!("{t:?} is not a number")))
            }
        }
    }

    /// The value as a flag: true, a non-zero number, or `true`/`t`/`yes`/
    /// `y`/`on`/`1` in any case. `NULL` and the empty string are false;
    /// other text is an error (a typo must not make a superuser).
    pub fn truthy(&self) -> Result<bool, RowError> {
        match self {
            Cell::Null => Ok(false),
            Cell::Bool(b) => Ok(*b),
            Cell::Int(i) => Ok(*i != 0),
            other => {
                let t = other.text()?.unwrap_or_default();
                match t.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "t" | "yes" | "y" | "on" => Ok(true),
                    "" | "0" | "false" | "f" | "no" | "n" | "off" => Ok(false),
                    _ => Err(RowError::new("", format!("{t:?} is not a boolean"))),
                }
            }
        }
    }
}

/// The asked-for columns of one row that the result had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SqlRow(pub Vec<(&'static str, Cell)>);

impl SqlRow {
    /// The column's value; `None` when the result has no such column.
    pub fn get(&self, name: &str) -> Option<&Cell> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }

    /// Whether the result has this column.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The column as text: `None` when absent or `NULL`.
    pub fn text(&self, name: &str) -> Result<Option<String>, RowError> {
        match self.get(name) {
            None => Ok(None),
            Some(c) => c.text().map(|t| t.map(Cow::into_owned)).map_err(|e| e.at(name)),
        }
    }

    /// The column as a number; absent or `NULL` is an error.
    pub fn int(&self, name: &str) -> Result<i64, RowError> {
        match self.get(name) {
            Some(c) => c.int().map_err(|e| e.at(name))?.ok_or_else(|| RowError::new(name, "is NULL")),
            None => Err(RowError::new(name, "is missing")),
        }
    }

    /// The column as a flag (see [`Cell::truthy`]); false when absent.
    pub fn flag(&self, name: &str) -> Result<bool, RowError> {
        self.get(name).map_or(Ok(false), |c| c.truthy().map_err(|e| e.at(name)))
    }
}

/// Picks the `wanted` columns (matched without regard to case) out of
/// driver rows, decoding each with `cell`. Columns not asked for are never
/// decoded.
pub fn convert<R: sqlx::Row>(
    rows: &[R],
    wanted: &[&'static str],
    cell: impl Fn(&R, usize) -> Result<Cell, RowError>,
) -> Result<Vec<SqlRow>, RowError> {
    use sqlx::Column;
    let Some(first) = rows.first() else { return Ok(Vec::new()) };
    let columns = first.columns();
    let picked: Vec<(&'static str, usize)> = wanted
        .iter()
        .filter_map(|w| columns.iter().position(|c| c.name().eq_ignore_ascii_case(w)).map(|i| (*w, i)))
        .collect();
    rows.iter()
        .map(|row| {
            picked
                .iter()
                .map(|(name, i)| cell(row, *i).map(|c| (*name, c)).map_err(|e| e.at(name)))
                .collect::<Result<Vec<_>, RowError>>()
                .map(SqlRow)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_in_every_type() {
        for t in [Cell::Bool(true), Cell::Int(1), Cell::Int(-3), Cell::Text("TRUE".into()), Cell::Bytes(b"y".to_vec())]
        {
            assert!(t.truthy().unwrap(), "{t:?}");
        }
        for f in [Cell::Null, Cell::Bool(false), Cell::Int(0), Cell::Text("0".into()), Cell::Text(String::new())] {
            assert!(!f.truthy().unwrap(), "{f:?}");
        }
        assert!(Cell::Text("superuser".into()).truthy().is_err());
        let row = SqlRow(vec![("is_superuser", Cell::Text("maybe".into()))]);
        assert_eq!(row.flag("is_superuser").unwrap_err().field, "is_superuser");
        assert!(!SqlRow::default().flag("is_superuser").unwrap());
    }

    #[test]
    fn numbers_and_text() {
        assert_eq!(Cell::Text(" 3 ".into()).int().unwrap(), Some(3));
        assert_eq!(Cell::Bool(true).int().unwrap(), Some(1));
        assert!(Cell::Text("x".into()).int().is_err());
        assert_eq!(Cell::Int(2).text().unwrap().as_deref(), Some("2"));
        assert!(Cell::Bytes(vec![0xff]).text().is_err());
        let row = SqlRow(vec![("salt", Cell::Null), ("password", Cell::Text("x".into()))]);
        assert!(row.has("salt"));
        assert_eq!(row.text("salt").unwrap(), None);
        assert_eq!(row.text("password").unwrap().as_deref(), Some("x"));
        assert!(!row.has("password_hash"));
        let row = SqlRow(vec![("allow", Cell::Null), ("topic", Cell::Bytes(vec![0xff]))]);
        let e = row.text("topic").unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("topic", "is not UTF-8 text"));
        assert_eq!(row.int("allow").unwrap_err().field, "allow");
        assert_eq!(row.int("access").unwrap_err().reason, "is missing");
    }
}
