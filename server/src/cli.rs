//! Subcommands that run without MQTT: `passwd`, `auth check`,
//! `acl explain`. They load the same config and build the same chains as
//! the broker, so what they print is what a client would get. `users …`
//! and `acl add|del|list` manage the built-in user store offline
//! ([`crate::users_cli`]).

use std::io::{BufRead, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_acl::chain::{DecidedBy as AclDecidedBy, StepResult as AclStep};
use portcullis_auth::chain::{AuthResult, DecidedBy, StepResult};
use portcullis_auth::hash::NewHash;
use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::{Access, AuthOutcome, ClientInfo, ConnectInfo, Password};
use portcullis_core::topic::{SubscriptionFilter, TopicName};

use crate::config::Config;
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
}

#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Run the auth chain for these credentials (password from stdin;
    /// empty input = no password) and print the decision.
    Check(Identity),
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

fn read_password() -> anyhow::Result<Option<Vec<u8>>> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    Ok((!pw.is_empty()).then(|| pw.as_bytes().to_vec()))
}

fn chains_for(cfg: &Config, listener: Option<&str>) -> anyhow::Result<(String, String)> {
    let l = match listener {
        Some(name) => cfg.listeners.iter().find(|l| l.name == name).with_context(|| format!("no listener `{name}`"))?,
        None => cfg.listeners.first().context("no listener configured")?,
    };
    Ok((l.auth_chain.clone(), l.acl_chain.clone()))
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn failed(error: &portcullis_core::provider::ProviderError, skipped: bool) -> String {
    format!("error ({error}){}", if skipped { ", skipped (on_error = ignore)" } else { "" })
}

/// One provider's line in `auth check` / `acl explain` output.
fn step_line(
    out: &mut impl Write,
    provider: &str,
    kind: &str,
    result: &str,
    rule: Option<&str>,
    took: Duration,
) -> std::io::Result<()> {
    writeln!(out, "  {provider} [{kind}]: {result}  rule: {}  took {}", rule.unwrap_or("-"), ms(took))
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
        Command::Auth(AuthCommand::Check(who)) => {
            let password = read_password()?;
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let security = Security::build(cfg).await?;
                let (auth_chain, _) = chains_for(cfg, who.listener.as_deref())?;
                let gw = security.gateway(&auth_chain, "default")?;
                let info = ConnectInfo {
                    client_id: Arc::from(who.client_id.as_str()),
                    username: who.username.as_deref().map(Arc::from),
                    password: password.map(|p| Password::new(p.into())),
                    peer: SocketAddr::new(who.peer, 0),
                    listener: Arc::from(who.listener.as_deref().unwrap_or("cli")),
                    protocol: ProtocolVersion::V5,
                    cert: None,
                };
                let (verdict, outcome) = crate::gateway::authenticate(&gw.auth, &gw.shared, &info).await;
                let mut out = std::io::stdout().lock();
                writeln!(out, "chain: {auth_chain}")?;
                for s in &verdict.steps {
                    let r = match &s.result {
                        StepResult::Decided(d) => format!("{d:?}"),
                        StepResult::Failed { error, skipped } => failed(error, *skipped),
                    };
                    step_line(&mut out, &s.provider, s.kind, &r, s.rule.as_deref(), s.elapsed)?;
                }
                let by = match &verdict.decided_by {
                    DecidedBy::Provider { name, rule } => format!("{name} ({})", rule.as_deref().unwrap_or("-")),
                    other => format!("{other:?}"),
                };
                let text = match &verdict.result {
                    AuthResult::Allow { superuser, .. } => {
                        format!("ALLOW{}", if *superuser { " (superuser)" } else { "" })
                    }
                    AuthResult::Deny(r) => format!("DENY ({r:?})"),
                    AuthResult::Unavailable => {
                        "UNAVAILABLE (a provider failed; CONNACK server unavailable)".to_string()
                    }
                };
                writeln!(out, "decision: {text}  by: {by}")?;
                Ok(if matches!(outcome, AuthOutcome::Allow { .. }) { 0 } else { 1 })
            })
        }
        Command::Acl(AclCommand::Explain(a)) => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let security = Security::build(cfg).await?;
                let (_, acl_chain) = chains_for(cfg, a.who.listener.as_deref())?;
                let gw = security.gateway("default", &acl_chain)?;
                let client = ClientInfo {
                    client_id: Arc::from(a.who.client_id.as_str()),
                    username: a.who.username.as_deref().map(Arc::from),
                    peer: SocketAddr::new(a.who.peer, 0),
                    listener: Arc::from(a.who.listener.as_deref().unwrap_or("cli")),
                    protocol: ProtocolVersion::V5,
                    superuser: a.superuser,
                    context: None,
                    conn_id: 0,
                    cert: None,
                    connected_at: 0,
                    keep_alive: 0,
                };
                let qos = QoS::from_u8(a.qos).context("--qos must be 0, 1 or 2")?;
                let topic;
                let filter;
                let access = match (&a.publish, &a.subscribe) {
                    (Some(t), None) => {
                        topic = TopicName::new(t).map_err(|e| anyhow::anyhow!("--publish {t:?}: {e}"))?;
                        Access::Publish { topic: &topic, qos, retain: a.retain }
                    }
                    (None, Some(f)) => {
                        filter = SubscriptionFilter::parse(f).map_err(|e| anyhow::anyhow!("--subscribe {f:?}: {e}"))?;
                        Access::Subscribe { filter: &filter, qos }
                    }
                    _ => bail!("give exactly one of --publish TOPIC or --subscribe FILTER"),
                };
                let verdict = gw.acl.authorize(&client, access).await;
                let mut out = std::io::stdout().lock();
                writeln!(out, "chain: {acl_chain}")?;
                for s in &verdict.steps {
                    let r = match &s.result {
                        AclStep::Decided(d) => format!("{d:?}"),
                        AclStep::Failed { error, skipped } => failed(error, *skipped),
                    };
                    step_line(&mut out, &s.provider, s.kind, &r, s.rule.as_deref(), s.elapsed)?;
                }
                let by = match &verdict.decided_by {
                    AclDecidedBy::Provider { name, rule } => format!("{name} ({})", rule.as_deref().unwrap_or("-")),
                    other => format!("{other:?}"),
                };
                writeln!(out, "decision: {}  by: {by}", if verdict.allowed { "ALLOW" } else { "DENY" })?;
                Ok(if verdict.allowed { 0 } else { 1 })
            })
        }
    }
}
