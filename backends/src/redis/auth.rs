//! `[auth.redis.<name>]`: users in Redis hashes.
//!
//! The command (default EMQX 5's `HMGET mqtt_user:${username} password_hash
//! salt is_superuser`) is `HMGET` or `HGET` with the fields to read, or
//! `HGETALL` of the user's hash. Fields are recognised by name:
//! `password_hash` (or emqttd's `password`), `salt`, `is_superuser`; others
//! are ignored. A missing key or an empty password field is an unknown user
//! (Ignore, after a decoy verification so it takes as long as a wrong
//! password); a wrong password is a deny; anything Redis fails at is an
//! error for the chain's `on_error`, never a deny.
//!
//! When the first reply does not make the client a superuser and a
//! `superuser_command` is configured (emqttd's `super_cmd`), it is run after
//! the password checked out; a true reply (`1`, `true`, a non-zero number)
//! makes the client a superuser.

use std::sync::Arc;

use portcullis_auth::hash::{Decoy, HashConfig};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};
use portcullis_core::gate::{ConnectInfo, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};
use redis::Value;

use super::client::RedisClient;
use super::command::{self, Command};
use super::config::AuthConfig;
use crate::common::health::Health;
use crate::common::password::{check_password, unknown_user};
use crate::common::rows::RowError;
use crate::common::template::Var;
use crate::common::BuildError;

/// A field of the user's hash, by what it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Password,
    Salt,
    Superuser,
    Other,
}

impl Field {
    fn of(name: &str) -> Field {
        match name {
            "password_hash" | "password" => Field::Password,
            "salt" => Field::Salt,
            "is_superuser" => Field::Superuser,
            _ => Field::Other,
        }
    }
}

/// How the reply of the auth command is read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shape {
    /// `HMGET` / `HGET`: values in the order of these fields.
    Fields(Vec<Field>),
    /// `HGETALL`: fields looked up by name.
    All,
}

/// What Redis holds about one user.
#[derive(Debug, Default, PartialEq, Eq)]
struct Record {
    password: Option<String>,
    salt: Option<String>,
    superuser: bool,
}

/// The commands a `superuser_command` may use: reads whose reply is a
/// yes or no.
const SUPERUSER_COMMANDS: [&str; 6] = ["HGET", "HMGET", "GET", "SISMEMBER", "HEXISTS", "EXISTS"];

pub struct RedisAuth {
    name: String,
    client: RedisClient,
    command: Command,
    shape: Shape,
    superuser: Option<Command>,
    hash: HashConfig,
    /// Verified for unknown users (see `check_password`).
    decoy: Decoy,
    health: Health,
}

impl std::fmt::Debug for RedisAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAuth")
            .field("name", &self.name)
            .field("redis", &self.client.target())
            .field("command", &self.command)
            .finish_non_exhaustive()
    }
}

impl RedisAuth {
    /// Validates the config and builds the provider (no connection yet).
    pub fn new(name: &str, cfg: &AuthConfig) -> Result<RedisAuth, BuildError> {
        let conn = cfg.connection()?;
        let (command, shape) = parse_auth_command(&cfg.command).map_err(|e| e.under("command"))?;
        let superuser = cfg
            .superuser_command
            .as_deref()
            .map(parse_superuser_command)
            .transpose()
            .map_err(|e| e.under("superuser_command"))?;
        let hash = cfg.password_hash.to_hash_config()?;
        let client = RedisClient::build(&conn)?;
        Ok(RedisAuth {
            name: name.to_string(),
            client,
            command,
            shape,
            superuser,
            decoy: Decoy::for_config(&hash),
            hash,
            health: Health::new("redis", name),
        })
    }

    /// Connects once and logs whether Redis is usable (health follows).
    pub async fn probe(&self) {
        let r = self.client.query(&redis::cmd("PING")).await;
        if r.is_ok() {
            tracing::info!(provider = %self.name, redis = %self.client.target(), "Redis is reachable");
        }
        let _ = self.health.track(r);
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        let Some(rendered) = self.command.render_connect(info) else {
            return Ok(AuthAnswer::ignore());
        };
        let reply = self.health.track(self.client.query(&rendered.cmd).await)?;
        let record = read_record(&self.shape, &reply).map_err(|e| bad_reply(&rendered.key, &e))?;
        let Some(stored) = record.password.as_deref().filter(|p| !p.is_empty()) else {
            unknown_user(info, &self.decoy).await;
            return Ok(AuthAnswer::ignore());
        };
        let rule = Some(rule_name(&rendered.key));
        if let Some(deny) = check_password(info, stored, record.salt.as_deref(), &self.hash, &self.decoy).await? {
            return Ok(AuthAnswer::new(AuthDecision::Deny(deny), rule));
        }
        let mut superuser = record.superuser;
        if !superuser {
            if let Some(rendered) = self.superuser.as_ref().and_then(|c| c.render_connect(info)) {
                let reply = self.health.track(self.client.query(&rendered.cmd).await)?;
                superuser = command::truthy(&reply);
            }
        }
        Ok(AuthAnswer::new(AuthDecision::Allow { superuser, inline_acl: None, expires_at: None }, rule))
    }
}

impl AuthProvider for RedisAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        crate::common::template::auth_inputs(
            self.command.templates().chain(self.superuser.iter().flat_map(Command::templates)),
        )
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn health(&self) -> Option<bool> {
        Some(self.health.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}

/// Builds the provider and, in the background, probes Redis once.
pub fn provider(name: &str, cfg: &AuthConfig) -> Result<Arc<RedisAuth>, BuildError> {
    let p = Arc::new(RedisAuth::new(name, cfg)?);
    let probe = Arc::clone(&p);
    tokio::spawn(async move { probe.probe().await });
    Ok(p)
}

fn parse_auth_command(text: &str) -> Result<(Command, Shape), BuildError> {
    let c = Command::parse(text, &Var::CONNECT)?;
    let shape = match c.name() {
        "HGETALL" => {
            if c.arg_count() != 1 {
                return Err(BuildError::invalid("", "HGETALL takes only the key"));
            }
            Shape::All
        }
        "HMGET" | "HGET" => {
            let fields: Vec<Field> = c.literal_fields()?.iter().map(|f| Field::of(f)).collect();
            if c.name() == "HGET" && fields.len() != 1 {
                return Err(BuildError::invalid("", "HGET takes the key and one field"));
            }
            if !fields.contains(&Field::Password) {
                return Err(BuildError::invalid(
                    "",
                    format!("{} must read a password field (password_hash or password)", c.name()),
                ));
            }
            Shape::Fields(fields)
        }
        other => return Err(BuildError::invalid("", format!("{other}: expected HMGET, HGET or HGETALL"))),
    };
    Ok((c, shape))
}

fn parse_superuser_command(text: &str) -> Result<Command, BuildError> {
    let c = Command::parse(text, &Var::CONNECT)?;
    if !SUPERUSER_COMMANDS.contains(&c.name()) {
        return Err(BuildError::invalid(
            "",
            format!("{}: expected one of {}", c.name(), SUPERUSER_COMMANDS.join(", ")),
        ));
    }
    Ok(c)
}

fn read_record(shape: &Shape, reply: &Value) -> Result<Record, RowError> {
    let mut r = Record::default();
    let mut put = |field: Field, value: Option<String>| match field {
        Field::Password => r.password = value,
        Field::Salt => r.salt = value,
        Field::Superuser => r.superuser = value.as_deref().is_some_and(command::truthy_text),
        Field::Other => {}
    };
    match shape {
        Shape::Fields(fields) => {
            let values = command::list(reply);
            if values.len() != fields.len() {
                return Err(RowError::new("", format!("expected {} values, got {}", fields.len(), values.len())));
            }
            for (f, v) in fields.iter().zip(values) {
                put(*f, command::text(v)?);
            }
        }
        Shape::All => {
            for (k, v) in command::pairs(reply)? {
                put(Field::of(&k), Some(v));
            }
        }
    }
    Ok(r)
}

fn bad_reply(key: &str, e: &RowError) -> ProviderError {
    ProviderError::new(ErrorKind::BadResponse, format!("Redis reply for {}: {e}", rule_name(key)))
}

/// `redis <key>`, shortened: keys hold client values, which may be long.
pub(super) fn rule_name(key: &str) -> String {
    const MAX: usize = 120;
    if key.len() <= MAX {
        return format!("redis {key}");
    }
    let mut end = MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("redis {}…", &key[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::BuildErrorKind;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn default_and_emqttd_commands_parse() {
        let (c, shape) = parse_auth_command(&super::super::config::default_auth_command()).unwrap();
        assert_eq!(c.name(), "HMGET");
        assert_eq!(shape, Shape::Fields(vec![Field::Password, Field::Salt, Field::Superuser]));
        let (_, shape) = parse_auth_command("hmget mqtt_user:%u password").unwrap();
        assert_eq!(shape, Shape::Fields(vec![Field::Password]));
        let (_, shape) = parse_auth_command("HGETALL mqtt_user:${username}").unwrap();
        assert_eq!(shape, Shape::All);
    }

    #[test]
    fn bad_commands_say_why() {
        let reason = |text: &str| parse_auth_command(text).unwrap_err().reason;
        assert_eq!(parse_auth_command("").unwrap_err().kind, BuildErrorKind::Missing);
        assert!(reason("GET mqtt_user:${username}").contains("expected HMGET"));
        assert!(reason("HMGET mqtt_user:${username} salt").contains("password field"));
        assert!(reason("HMGET mqtt_user:${username} ${clientid}").contains("field names"));
        assert!(reason("HGET k password_hash salt").contains("one field"));
        assert!(reason("HMGET mqtt_user:${password} password").contains("cannot be used"));
        assert!(parse_superuser_command("DEL mqtt_user:%u").unwrap_err().reason.contains("expected one of"));
    }

    #[test]
    fn records_from_replies() {
        let shape = Shape::Fields(vec![Field::Password, Field::Salt, Field::Superuser]);
        let r = read_record(&shape, &Value::Array(vec![bulk("h"), bulk("s"), bulk("1")])).unwrap();
        assert_eq!(r, Record { password: Some("h".into()), salt: Some("s".into()), superuser: true });
        let r = read_record(&shape, &Value::Array(vec![Value::Nil, Value::Nil, Value::Nil])).unwrap();
        assert_eq!(r, Record::default());
        let all =
            Value::Array(vec![bulk("password"), bulk("p"), bulk("is_superuser"), bulk("true"), bulk("x"), bulk("y")]);
        let r = read_record(&Shape::All, &all).unwrap();
        assert_eq!(r, Record { password: Some("p".into()), salt: None, superuser: true });
        assert_eq!(read_record(&Shape::All, &Value::Array(vec![])).unwrap(), Record::default());
        assert!(read_record(&shape, &Value::Array(vec![bulk("h")])).is_err());
        let not_utf8 = Value::Array(vec![Value::BulkString(vec![0xff]), Value::Nil, Value::Nil]);
        assert!(read_record(&shape, &not_utf8).is_err());
    }

    #[test]
    fn long_keys_are_shortened_on_a_char_boundary() {
        let key = format!("mqtt_user:{}", "é".repeat(200));
        let r = rule_name(&key);
        assert!(r.len() < 140 && r.ends_with('…'));
    }
}
