//! Human output: tables of rows (JSON objects, the API's own shapes) and
//! key/value lists. `--json` bypasses all of it and prints the API's body.

use std::fmt::Write as _;

use serde_json::Value;

/// A column: its header and the field it shows.
pub type Column = (&'static str, &'static str);

/// A cell: strings as they are, `null`/absent as `-`, the rest as JSON.
pub fn cell(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "-".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => {
            a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(",")
        }
        Some(other) => other.to_string(),
    }
}

/// `rows` under `cols`, columns padded to their widest cell.
pub fn table(rows: &[Value], cols: &[Column]) -> String {
    let cells: Vec<Vec<String>> = rows.iter().map(|r| cols.iter().map(|(_, k)| cell(r.get(*k))).collect()).collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, (h, _))| cells.iter().map(|r| r[i].chars().count()).chain([h.len()]).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, vals: &mut dyn Iterator<Item = String>| {
        let parts: Vec<String> = vals.zip(&widths).map(|(v, w)| format!("{v:<w$}")).collect();
        let _ = writeln!(out, "{}", parts.join("  ").trim_end());
    };
    line(&mut out, &mut cols.iter().map(|(h, _)| h.to_string()));
    for r in cells {
        line(&mut out, &mut r.into_iter());
    }
    out
}

/// An object's fields, one `key: value` a line, keys aligned; nested
/// objects flattened with dots.
pub fn fields(v: &Value) -> String {
    let mut pairs = Vec::new();
    flatten("", v, &mut pairs);
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    pairs.iter().map(|(k, v)| format!("{k:<w$}  {v}\n")).collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, v) in m {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => out.push((prefix.to_string(), cell(Some(other)))),
    }
}

/// The footer of a page: how many rows of how many, and the next page.
pub fn footer(meta: Option<&Value>, shown: usize) -> Option<String> {
    let meta = meta?;
    let count = meta.get("count").and_then(Value::as_u64).unwrap_or(shown as u64);
    let page = meta.get("page").and_then(Value::as_u64).unwrap_or(1);
    let mut s = format!("{shown} of {count} (page {page})");
    if meta.get("hasnext").and_then(Value::as_bool) == Some(true) {
        let _ = write!(s, "; next: --page {}", page + 1);
    }
    Some(s)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_pad_and_show_nulls() {
        let rows = [json!({"a": "x", "b": 1}), json!({"a": "longer", "b": null})];
        assert_eq!(table(&rows, &[("A", "a"), ("B", "b")]), "A       B\nx       1\nlonger  -\n");
        assert_eq!(fields(&json!({"k": 1, "n": {"x": "y"}})), "k    1\nn.x  y\n");
        let meta = json!({"page": 1, "limit": 2, "count": 3, "hasnext": true});
        assert_eq!(footer(Some(&meta), 2).as_deref(), Some("2 of 3 (page 1); next: --page 2"));
    }
}
