//! A filter document written as a TOML table, with placeholders allowed
//! only as string *values*:
//!
//! ```toml
//! filter = { username = "${username}" }
//! filter = { "$or" = [{ username = "${username}" }, { email = "${username}" }], enabled = true }
//! ```
//!
//! It is compiled once at start; for each request the placeholders are
//! filled in as BSON strings. A client's value is never parsed: a username
//! such as `{"$ne": null}` is the string `{"$ne": null}`, which matches only
//! a user of that name. Keys (field names, operators) come from the config
//! only, and no placeholder may sit under an operator that would read its
//! value as something else than a value (`$regex`, `$where`, `$expr`,
//! `$function`, `$accumulator`, `$text`, `$jsonSchema`).

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Value};

use crate::common::template::{Template, Values, Var};
use crate::common::BuildError;

/// One compiled node.
#[derive(Debug, Clone)]
enum Node {
    Doc(Vec<(String, Node)>),
    Array(Vec<Node>),
    Lit(Bson),
    /// A string with placeholders, filled in per request.
    Text(Template),
}

/// A compiled filter.
#[derive(Debug, Clone)]
pub struct Filter {
    root: Vec<(String, Node)>,
}

impl Filter {
    /// Compiles `table`; `key` names it in errors (`filter`). Needs at least
    /// one placeholder (a filter without one would match the same
    /// document for every client).
    pub fn compile(key: &str, table: &Map<String, Value>, allowed: &[Var]) -> Result<Filter, BuildError> {
        let root = doc(key, table, allowed, None)?;
        let f = Filter { root };
        if !f.has_vars() {
            return Err(BuildError::invalid(key, "needs a placeholder such as \"${username}\" in a value"));
        }
        Ok(f)
    }

    /// Every template in the filter (for the auth cache's inputs).
    pub fn templates(&self) -> Vec<&Template> {
        fn walk<'a>(n: &'a Node, out: &mut Vec<&'a Template>) {
            match n {
                Node::Doc(kv) => kv.iter().for_each(|(_, v)| walk(v, out)),
                Node::Array(v) => v.iter().for_each(|x| walk(x, out)),
                Node::Lit(_) => {}
                Node::Text(t) => out.push(t),
            }
        }
        let mut out = Vec::new();
        self.root.iter().for_each(|(_, v)| walk(v, &mut out));
        out
    }

    fn has_vars(&self) -> bool {
        fn any(n: &Node) -> bool {
            match n {
                Node::Doc(kv) => kv.iter().any(|(_, v)| any(v)),
                Node::Array(v) => v.iter().any(any),
                Node::Lit(_) => false,
                Node::Text(t) => t.has_vars(),
            }
        }
        self.root.iter().any(|(_, v)| any(v))
    }

    /// The filter for one request; `None` when the client has no value for
    /// a placeholder (a CONNECT without a username, say).
    pub fn render(&self, values: &Values<'_>) -> Option<Document> {
        fn node(n: &Node, values: &Values<'_>) -> Option<Bson> {
            Some(match n {
                Node::Doc(kv) => Bson::Document(pairs(kv, values)?),
                Node::Array(v) => Bson::Array(v.iter().map(|x| node(x, values)).collect::<Option<Vec<_>>>()?),
                Node::Lit(b) => b.clone(),
                Node::Text(t) => Bson::String(t.render(values, crate::common::template::verbatim).ok()?),
            })
        }
        fn pairs(kv: &[(String, Node)], values: &Values<'_>) -> Option<Document> {
            let mut d = Document::new();
            for (k, v) in kv {
                d.insert(k.clone(), node(v, values)?);
            }
            Some(d)
        }
        pairs(&self.root, values)
    }
}

/// Operators under which a client's value would not be a plain value: a
/// pattern (`$regex`: `.*` matches every user), code (`$where`,
/// `$function`, `$accumulator`), an expression whose `$`-strings are field
/// paths (`$expr`: a username `$password_hash` compares two fields), a
/// text search (`$text`: case- and stem-insensitive) or a schema
/// (`$jsonSchema`: `pattern`). Placeholders below them are refused.
const NO_PLACEHOLDERS_UNDER: [&str; 7] =
    ["$regex", "$where", "$expr", "$function", "$accumulator", "$text", "$jsonSchema"];

/// `under`: the refused operator this table is inside of, if any.
fn doc(
    path: &str,
    table: &Map<String, Value>,
    allowed: &[Var],
    under: Option<&str>,
) -> Result<Vec<(String, Node)>, BuildError> {
    let mut out = Vec::with_capacity(table.len());
    for (k, v) in table {
        let p = format!("{path}.{k}");
        if k.contains("${") || k.is_empty() {
            return Err(BuildError::invalid(p, "field names are fixed; placeholders go in values"));
        }
        let under = under.or_else(|| NO_PLACEHOLDERS_UNDER.iter().copied().find(|op| *op == k));
        out.push((k.clone(), value(&p, v, allowed, under)?));
    }
    Ok(out)
}

fn value(path: &str, v: &Value, allowed: &[Var], under: Option<&str>) -> Result<Node, BuildError> {
    Ok(match v {
        Value::Null => Node::Lit(Bson::Null),
        Value::Bool(b) => Node::Lit(Bson::Boolean(*b)),
        Value::Number(n) => match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Node::Lit(Bson::Int64(i)),
            (None, Some(f)) => Node::Lit(Bson::Double(f)),
            _ => return Err(BuildError::invalid(path, "number out of range")),
        },
        Value::String(s) => {
            // Only `${name}` placeholders: emqttd's `%u` forms would turn a
            // literal `%` in a value into a placeholder.
            if s.contains("${") {
                if let Some(op) = under {
                    return Err(BuildError::invalid(
                        path,
                        format!(
                            "no placeholders under {op}: a client's value would be read as a pattern, code or field \
                             path, not as a value"
                        ),
                    ));
                }
                let t = Template::parse(s, allowed).map_err(|e| e.under(path))?;
                Node::Text(t)
            } else {
                Node::Lit(Bson::String(s.clone()))
            }
        }
        Value::Array(items) => Node::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, x)| value(&format!("{path}[{i}]"), x, allowed, under))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Node::Doc(doc(path, m, allowed, under)?),
    })
}
