//! Commands from the config, parsed once at start, and the replies they get.
//!
//! A command such as `HMGET mqtt_user:${username} password_hash salt` is
//! split on whitespace into a name and arguments; each argument is a
//! [`Template`]. At query time each argument is rendered on its own
//! (values verbatim) and sent as its own Redis argument, so a username
//! with spaces, quotes, `*` or CR/LF is one opaque argument and never
//! becomes command text.

use portcullis_core::gate::{Access, ClientInfo, ConnectInfo};
use redis::Value;

use crate::common::rows::RowError;
use crate::common::template::{verbatim, Template, Values, Var};
use crate::common::BuildError;

/// A parsed command.
#[derive(Debug, Clone)]
pub struct Command {
    /// The command name, upper case (`HMGET`).
    name: String,
    /// The arguments; the first is the key.
    args: Vec<Template>,
}

/// A command ready to send, and the key it reads (for rule names).
#[derive(Debug)]
pub struct Rendered {
    pub cmd: redis::Cmd,
    pub key: String,
}

impl Command {
    /// The argument templates (what the command reads).
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.args.iter()
    }

    /// Splits `text` on whitespace; `allowed` are the placeholders the
    /// arguments may use.
    /// Errors carry no key: the caller puts them under its own.
    pub fn parse(text: &str, allowed: &[Var]) -> Result<Command, BuildError> {
        let mut words = text.split_whitespace();
        let name = words.next().ok_or_else(|| BuildError::missing("", "is empty"))?.to_ascii_uppercase();
        let args = words.map(|w| Template::parse(w, allowed)).collect::<Result<Vec<_>, _>>()?;
        if args.is_empty() {
            return Err(BuildError::invalid("", format!("{name} needs a key")));
        }
        Ok(Command { name, args })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The arguments after the key, which must be literal (field names).
    pub fn literal_fields(&self) -> Result<Vec<String>, BuildError> {
        self.args[1..]
            .iter()
            .map(|t| {
                if t.has_vars() {
                    Err(BuildError::invalid(
                        "",
                        format!("{}: field names cannot hold placeholders ({:?})", self.name, t.source()),
                    ))
                } else {
                    Ok(t.source().replace("%%", "%"))
                }
            })
            .collect()
    }

    pub fn arg_count(&self) -> usize {
        self.args.len()
    }

    /// The command with its placeholders filled, or `None` when the client
    /// lacks a value one of them needs (no username, say).
    pub fn render(&self, values: &Values<'_>) -> Option<Rendered> {
        let mut cmd = redis::cmd(&self.name);
        let mut key = String::new();
        for (i, t) in self.args.iter().enumerate() {
            let v = t.render(values, verbatim).ok()?;
            cmd.arg(v.as_bytes());
            if i == 0 {
                key = v;
            }
        }
        Some(Rendered { cmd, key })
    }

    pub fn render_connect(&self, info: &ConnectInfo) -> Option<Rendered> {
        self.render(&Values::from_connect(info))
    }

    pub fn render_access(&self, client: &ClientInfo, access: &Access<'_>) -> Option<Rendered> {
        self.render(&Values::from_access(client, access))
    }
}

/// A reply as text: nil is `None`; strings must be UTF-8; numbers are
/// written out.
pub fn text(v: &Value) -> Result<Option<String>, RowError> {
    match v {
        Value::Nil => Ok(None),
        Value::BulkString(b) => {
            String::from_utf8(b.clone()).map(Some).map_err(|_| RowError::new("", "a value is not UTF-8 text"))
        }
        Value::SimpleString(s) => Ok(Some(s.clone())),
        Value::VerbatimString { text, .. } => Ok(Some(text.clone())),
        Value::Int(i) => Ok(Some(i.to_string())),
        Value::Boolean(b) => Ok(Some(b.to_string())),
        other => Err(RowError::new("", format!("expected a string, got {}", kind(other)))),
    }
}

/// Whether a reply means yes: a non-zero number, `1`, `true`, `yes`, `on`
/// (any case), or an array whose first element does.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Int(n) => *n != 0,
        Value::Boolean(b) => *b,
        Value::Array(items) | Value::Set(items) => items.first().is_some_and(truthy),
        other => match text(other) {
            Ok(Some(s)) => truthy_text(&s),
            _ => false,
        },
    }
}

pub fn truthy_text(s: &str) -> bool {
    matches!(s.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
}

/// The field/value pairs of an `HGETALL` reply (a flat array under RESP2,
/// a map under RESP3); nil or empty for a missing key.
pub fn pairs(v: &Value) -> Result<Vec<(String, String)>, RowError> {
    let field = |v: &Value| text(v)?.ok_or_else(|| RowError::new("", "a hash field is nil"));
    match v {
        Value::Nil => Ok(Vec::new()),
        Value::Array(items) => {
            if items.len() % 2 != 0 {
                return Err(RowError::new("", "HGETALL reply has an odd number of elements"));
            }
            items.chunks_exact(2).map(|p| Ok((field(&p[0])?, field(&p[1])?))).collect()
        }
        Value::Map(m) => m.iter().map(|(k, v)| Ok((field(k)?, field(v)?))).collect(),
        other => Err(RowError::new("", format!("expected a hash, got {}", kind(other)))),
    }
}

/// The elements of an `HMGET` reply (one value for `HGET`).
pub fn list(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::Array(_) => "an array",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Okay => "OK",
        Value::Double(_) => "a double",
        _ => "an unexpected reply",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(r: &Rendered) -> Vec<Vec<u8>> {
        r.cmd
            .args_iter()
            .map(|a| match a {
                redis::Arg::Simple(b) => b.to_vec(),
                _ => b"<other>".to_vec(),
            })
            .collect()
    }

    #[test]
    fn each_argument_is_one_value() {
        let c = Command::parse("HMGET  mqtt_user:${username}\tpassword_hash salt", &Var::CONNECT).unwrap();
        let v = Values { username: Some("a b\r\nFLUSHALL *"), ..Values::default() };
        let r = c.render(&v).unwrap();
        assert_eq!(r.key, "mqtt_user:a b\r\nFLUSHALL *");
        assert_eq!(
            args(&r),
            vec![
                b"HMGET".to_vec(),
                b"mqtt_user:a b\r\nFLUSHALL *".to_vec(),
                b"password_hash".to_vec(),
                b"salt".to_vec()
            ]
        );
        // A placeholder inside a value is not expanded again.
        let v = Values { username: Some("%u${clientid}"), client_id: Some("c"), ..Values::default() };
        assert_eq!(c.render(&v).unwrap().key, "mqtt_user:%u${clientid}");
    }

    #[test]
    fn missing_values_render_nothing() {
        let c = Command::parse("HGETALL mqtt_acl:%u", &Var::ACL).unwrap();
        assert!(c.render(&Values::default()).is_none());
    }

    #[test]
    fn replies() {
        assert_eq!(text(&Value::Nil), Ok(None));
        assert_eq!(text(&Value::Int(3)), Ok(Some("3".into())));
        assert!(text(&Value::Array(vec![])).is_err());
        assert!(truthy(&Value::Int(1)) && !truthy(&Value::Int(0)) && !truthy(&Value::Nil));
        assert!(truthy(&Value::BulkString(b"TRUE".to_vec())) && !truthy(&Value::BulkString(b"0".to_vec())));
        assert!(truthy(&Value::Array(vec![Value::BulkString(b"1".to_vec())])));
        let m = Value::Map(vec![(Value::BulkString(b"t".to_vec()), Value::BulkString(b"publish".to_vec()))]);
        assert_eq!(pairs(&m).unwrap(), vec![("t".to_string(), "publish".to_string())]);
        assert!(pairs(&Value::Array(vec![Value::Nil])).is_err());
        assert_eq!(pairs(&Value::Nil).unwrap(), vec![]);
    }
}
