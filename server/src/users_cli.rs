//! `portcullis users add|passwd|del|list` and `portcullis acl add|del|list`:
//! the built-in user store managed offline, for bootstrapping without the
//! admin API (an init script, a first admin). They open the store file
//! directly (`--db PATH`, or the one file the config's
//! `[auth.builtin.*]` / `[acl.builtin.*]` tables name); a running broker
//! sees the change within its `poll` and purges its caches.
//!
//! Passwords are read from standard input (one line), never from the
//! command line, where `ps` and shell histories would show them.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use portcullis_acl::rule::{Action, Permission};
use portcullis_backends::builtin::model::{action_name, permission_name};
use portcullis_backends::builtin::{
    BuiltinConfig, NewRule, OpenMode, PageRequest, RuleSubject, StoredRule, UserFilter, UserStore,
};
use portcullis_core::gate::Password;

use crate::config::Config;

/// Which store file.
#[derive(Debug, Args)]
pub struct DbArg {
    /// The store file. Default: the `path` of the config's
    /// `[auth.builtin.*]` / `[acl.builtin.*]` tables, when they name one.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u32,
    /// Entries per page (at most 10000).
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Add a user (password from stdin, one line), hashed with argon2id.
    /// Creates the store (mode 0600) when it does not exist.
    Add {
        #[command(flatten)]
        db: DbArg,
        username: String,
        /// The user bypasses every ACL.
        #[arg(long)]
        superuser: bool,
    },
    /// Set a user's password (from stdin, one line).
    Passwd {
        #[command(flatten)]
        db: DbArg,
        username: String,
    },
    /// Remove a user. Rules for that username stay (`acl del` removes them).
    Del {
        #[command(flatten)]
        db: DbArg,
        username: String,
    },
    /// List users, by username.
    List {
        #[command(flatten)]
        db: DbArg,
        #[command(flatten)]
        page: PageArgs,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PermissionArg {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ActionArg {
    Publish,
    Subscribe,
    All,
}

/// Whose rules: a username or a client id.
#[derive(Debug, Args)]
#[group(required = false, multiple = false)]
pub struct SubjectArgs {
    /// Rules for every client that logs in with this username.
    #[arg(long)]
    pub username: Option<String>,
    /// Rules for the client with this client id.
    #[arg(long = "client-id")]
    pub client_id: Option<String>,
}

impl SubjectArgs {
    fn subject(&self) -> Option<RuleSubject> {
        match (&self.username, &self.client_id) {
            (Some(u), _) => Some(RuleSubject::Username(u.clone())),
            (_, Some(c)) => Some(RuleSubject::ClientId(c.clone())),
            _ => None,
        }
    }
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    #[command(flatten)]
    pub db: DbArg,
    #[command(flatten)]
    pub subject: SubjectArgs,
    #[arg(long, value_enum)]
    pub permission: PermissionArg,
    #[arg(long, value_enum)]
    pub action: ActionArg,
    /// A topic filter; `${username}` and `${clientid}` may stand as whole
    /// levels; `eq <topic>` matches that literal string only.
    #[arg(long)]
    pub topic: String,
    /// QoS levels the rule applies to (`0,1`); default: all.
    #[arg(long, value_delimiter = ',')]
    pub qos: Vec<u8>,
    /// Only publishes with this retain flag; default: both.
    #[arg(long)]
    pub retain: Option<bool>,
    /// Lower is tried first; at equal priority a client id's rules come
    /// before a username's, then the order they were added.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
}

/// Runs a `users` subcommand; returns the exit code.
pub fn run_users(cmd: UsersCommand, cfg: &Config) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        match cmd {
            UsersCommand::Add { db, username, superuser } => {
                let password = read_password()?;
                let store = open(&db, cfg, OpenMode::Create).await?;
                store.add_user(&username, &password, superuser).await?;
                store.close().await;
                println!("added {username}{} to {}", if superuser { " (superuser)" } else { "" }, show(&store));
            }
            UsersCommand::Passwd { db, username } => {
                let password = read_password()?;
                let store = open(&db, cfg, OpenMode::Existing).await?;
                store.set_password(&username, &password).await?;
                store.close().await;
                println!("set the password of {username} in {}", show(&store));
            }
            UsersCommand::Del { db, username } => {
                let store = open(&db, cfg, OpenMode::Existing).await?;
                store.delete_user(&username).await?;
                store.close().await;
                println!("removed {username} from {}", show(&store));
            }
            UsersCommand::List { db, page } => {
                let store = open(&db, cfg, OpenMode::Existing).await?;
                let p = store.list_users(&UserFilter::default(), PageRequest::new(page.page, page.limit)).await?;
                store.close().await;
                let width = p.items.iter().map(|u| u.username.chars().count()).max().unwrap_or(0).max(8);
                println!("{:<width$}  SUPERUSER  CREATED               UPDATED", "USERNAME");
                for u in &p.items {
                    let su = if u.superuser { "yes" } else { "no" };
                    println!("{:<width$}  {su:<9}  {}  {}", u.username, time(u.created_at), time(u.updated_at));
                }
                println!("{}", footer(p.page, p.limit, p.total, p.has_next()));
            }
        }
        Ok(0)
    })
}

/// `acl add`: the new rule's id on standard output.
pub fn run_acl_add(a: RuleArgs, cfg: &Config) -> anyhow::Result<u8> {
    let Some(subject) = a.subject.subject() else { bail!("give --username or --client-id") };
    let rule = NewRule {
        subject,
        permission: match a.permission {
            PermissionArg::Allow => Permission::Allow,
            PermissionArg::Deny => Permission::Deny,
        },
        action: match a.action {
            ActionArg::Publish => Action::Publish,
            ActionArg::Subscribe => Action::Subscribe,
            ActionArg::All => Action::All,
        },
        topic: a.topic,
        qos: (!a.qos.is_empty()).then_some(a.qos),
        retain: a.retain,
        priority: a.priority,
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = open(&a.db, cfg, OpenMode::Create).await?;
        let r = store.add_rule(&rule).await?;
        store.close().await;
        println!("{}", r.id);
        Ok(0)
    })
}

/// `acl del ID`.
pub fn run_acl_del(db: DbArg, id: i64, cfg: &Config) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = open(&db, cfg, OpenMode::Existing).await?;
        store.delete_rule(id).await?;
        store.close().await;
        println!("removed rule {id} from {}", show(&store));
        Ok(0)
    })
}

/// `acl list`: one subject's rules in decision order, or every rule.
pub fn run_acl_list(db: DbArg, subject: SubjectArgs, page: PageArgs, cfg: &Config) -> anyhow::Result<u8> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let store = open(&db, cfg, OpenMode::Existing).await?;
        let p = store.list_rules(subject.subject().as_ref(), PageRequest::new(page.page, page.limit)).await?;
        store.close().await;
        println!("ID  PRIORITY  SUBJECT  PERMISSION  ACTION  TOPIC  QOS  RETAIN");
        for r in &p.items {
            println!("{}", rule_line(r));
        }
        println!("{}", footer(p.page, p.limit, p.total, p.has_next()));
        Ok(0)
    })
}

fn rule_line(r: &StoredRule) -> String {
    let qos = r.qos.as_ref().map_or("any".to_string(), |q| q.iter().map(u8::to_string).collect::<Vec<_>>().join(","));
    let retain = r.retain.map_or("any".to_string(), |b| b.to_string());
    format!(
        "{}  {}  {}  {}  {}  {}  {qos}  {retain}",
        r.id,
        r.priority,
        r.subject,
        permission_name(r.permission),
        action_name(r.action),
        r.topic
    )
}

fn footer(page: u32, limit: u32, total: u64, has_next: bool) -> String {
    format!("page {page} (limit {limit}), {total} in all{}", if has_next { ", more on the next page" } else { "" })
}

fn show(store: &UserStore) -> String {
    store.path().display().to_string()
}

fn time(unix: i64) -> String {
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(unix.max(0) as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// One line from standard input; an empty one is refused.
fn read_password() -> anyhow::Result<Password> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).context("reading the password from stdin")?;
    let pw = line.trim_end_matches(['\n', '\r']);
    if pw.is_empty() {
        bail!("empty password (give it on standard input)");
    }
    Ok(Password::new(pw.as_bytes().to_vec().into()))
}

/// `--db`, or the single store file the config names.
fn store_path(db: &DbArg, cfg: &Config) -> anyhow::Result<PathBuf> {
    if let Some(p) = &db.db {
        return Ok(p.clone());
    }
    let mut paths: Vec<&PathBuf> = cfg.auth.builtin.values().chain(cfg.acl.builtin.values()).map(|c| &c.path).collect();
    paths.sort();
    paths.dedup();
    match paths.as_slice() {
        [one] => Ok((*one).clone()),
        [] => bail!("give --db PATH (the config has no [auth.builtin.*] or [acl.builtin.*] table)"),
        many => bail!(
            "give --db PATH: the config names several stores ({})",
            many.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    }
}

async fn open(db: &DbArg, cfg: &Config, mode: OpenMode) -> anyhow::Result<std::sync::Arc<UserStore>> {
    let path = store_path(db, cfg)?;
    // The config's settings for that file when it has them (busy_timeout).
    let settings = cfg.auth.builtin.values().chain(cfg.acl.builtin.values()).find(|c| c.path == path);
    let store_cfg = BuiltinConfig { path, ..settings.cloned().unwrap_or_default() };
    Ok(UserStore::open(&store_cfg, mode).await?)
}
