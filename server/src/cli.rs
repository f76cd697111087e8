//! Subcommands that run without MQTT: `passwd`, `auth check`,
//! `acl explain`. They load the same config and build the same chains as
//! the broker, so what they print is what a client would get; the
//! decisions are computed by [`crate::explain`], as the admin API's
//! explain endpoints compute them. `users …` and `acl add|del|list`
//! manage the built-in user store offline ([`crate::users_cli`]).

use std::io::BufRead;
use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_auth::hash::NewHash;

use crate::config::Config;
use crate::explain;
use crate::security::Security;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Add or update a user in a password file (Mosquitto format). The
    /// password is read from standard input (one line).
    Passwd(PasswdArgs),
    /// The built-in user store, offline: add, passwd, del, list.
    #[command(subcommand)]
    Users(crate::users_cli::UsersCommand),
    /// Authentication commands.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// ACL commands.
    #[command(subcommand)]
    Acl(AclCommand),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HashChoice {
    /// argon2id PHC string (default).
    Argon2id,
    /// Mosquitto's `$7$` PBKDF2-SHA512 (readable by mosquitto too).
    Pbkdf2,
    /// bcrypt `$2b$`.
    Bcrypt,
}

#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// The password file (created if missing, mode 0600).
    pub file: PathBuf,
    pub username: String,
    /// Remove the user instead.
    #[arg(long)]
    pub delete: bool,
    #[arg(long, value_enum, default_value = "argon2id")]
    pub hash: HashChoice,
}

#[derive(Debug, Args)]
pub struct Identity {
    #[arg(long)]
    pub username: Option<String>,
    #[arg(long = "client-id")]
    pub client_id: String,
    /// The client's IP address.
    #[arg(long, default_value = "127.0.0.1")]
    pub peer: IpAddr,
    /// Listener whose chains to use.
    #[arg(long)]
    pub listener: Option<String>,
    /// Print the explanation as JSON (the admin API's explain body).
    #[arg(long)]
    pub json: bool,
}

impl From<Identity> for explain::Who {
    fn from(i: Identity) -> explain::Who {
        explain::Who { client_id: i.client_id, username: i.username, peer: i.peer, listener: i.listener }
    }
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Run the auth chain for these credentials (password from stdin;
    /// empty input = no password) and print the decision.
    Check(CheckArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub who: Identity,
    /// Standard input holds a token (JWT or opaque), sent as the password
    /// (`--token`, `--token=password`) or as the username
    /// (`--token=username`, for `from = "username"`). Its unverified
    /// header and claims are shown beside the decision.
    #[arg(long, value_enum, num_args = 0..=1, default_missing_value = "password", require_equals = true)]
    pub token: Option<TokenField>,
}

/// Where `auth check --token` puts the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenField {
    Password,
    Username,
}

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Run the ACL chain for one action and print the decision.
    Explain(ExplainArgs),
    /// Add a rule to the built-in user store (offline); prints its id.
    Add(crate::users_cli::RuleArgs),
    /// Remove a rule from the built-in user store by id (offline).
    Del {
        #[command(flatten)]
        db: crate::users_cli::DbArg,
        id: i64,
    },
    /// List the built-in user store's rules (offline): one username's or
    /// client id's in the order they are tried, or all of them.
    List {
        #[command(flatten)]
        db: crate::users_cli::DbArg,
        #[command(flatten)]
        subject: crate::users_cli::SubjectArgs,
        #[command(flatten)]
        page: crate::users_cli::PageArgs,
    },
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub who: Identity,
    #[arg(long, conflicts_with = "subscribe")]
    pub publish: Option<String>,
    #[arg(long)]
    pub subscribe: Option<String>,
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    #[arg(long)]
    pub retain: bool,
    /// Treat the client as a superuser.
    #[arg(long)]
    pub superuser: bool,
}

/// The token's unverified header and claims (builds without the `jwt`
/// backend show nothing).
fn describe_token(token: &str) -> Option<serde_json::Value> {
    #[cfg(feature = "jwt")]
    return Some(portcullis_backends::jwt::describe_unverified(token));
    #[cfg(not(feature = "jwt"))]
    {
        let _ = token;
        None
    }
}

fn read_password() -> anyhow::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    Ok((!pw.is_empty()).then(|| pw.as_bytes().to_vec()))
}

/// Runs a subcommand; returns the process exit code.
pub fn run(cmd: Command, cfg: &Config) -> anyhow::Result<u8> {
    match cmd {
        Command::Passwd(a) => {
            if a.delete {
                portcullis_auth::passwd::delete_user(&a.file, &a.username)?;
                println!("removed {} from {}", a.username, a.file.display());
                return Ok(0);
            }
            let Some(pw) = read_password()? else { bail!("empty password") };
            let algo = match a.hash {
                HashChoice::Argon2id => NewHash::Argon2id,
                HashChoice::Pbkdf2 => NewHash::Pbkdf2Sha512,
                HashChoice::Bcrypt => NewHash::Bcrypt,
            };
            portcullis_auth::passwd::set_password(&a.file, &a.username, &pw, algo)?;
            println!("set password of {} in {}", a.username, a.file.display());
            Ok(0)
        }
        Command::Users(c) => crate::users_cli::run_users(c, cfg),
        Command::Acl(AclCommand::Add(a)) => crate::users_cli::run_acl_add(a, cfg),
        Command::Acl(AclCommand::Del { db, id }) => crate::users_cli::run_acl_del(db, id, cfg),
        Command::Acl(AclCommand::List { db, subject, page }) => crate::users_cli::run_acl_list(db, subject, page, cfg),
        Command::Auth(AuthCommand::Check(CheckArgs { mut who, token })) => {
            let mut password = read_password()?;
            let shown = match token {
                None => None,
                Some(field) => {
                    let Some(t) = password.take() else { bail!("--token: no token on standard input") };
                    let t = String::from_utf8(t).context("--token: the token is not UTF-8")?.trim().to_string();
                    let shown = describe_token(&t);
                    match field {
                        TokenField::Password => password = Some(t.into_bytes()),
                        TokenField::Username => who.username = Some(t),
                    }
                    shown
                }
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let security = Security::build(cfg).await?;
                let json = who.json;
                let mut e = explain::auth_check(&security, cfg, &who.into(), password).await?;
                e.token = shown;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&e)?),
                    false => e.write_text(&mut std::io::stdout().lock())?,
                }
                Ok(if e.allowed() { 0 } else { 1 })
            })
        }
        Command::Acl(AclCommand::Explain(a)) => {
            let action = match (a.publish, a.subscribe) {
                (Some(topic), None) => explain::Action::Publish { topic, qos: a.qos, retain: a.retain },
                (None, Some(filter)) => explain::Action::Subscribe { filter, qos: a.qos },
                _ => bail!("give exactly one of --publish TOPIC or --subscribe FILTER"),
            };
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let security = Security::build(cfg).await?;
                let json = a.who.json;
                let e = explain::acl_explain(&security, cfg, &a.who.into(), a.superuser, &action).await?;
                match json {
                    true => println!("{}", serde_json::to_string_pretty(&e)?),
                    false => e.write_text(&mut std::io::stdout().lock())?,
                }
                Ok(if e.allowed() { 0 } else { 1 })
            })
        }
    }
}
