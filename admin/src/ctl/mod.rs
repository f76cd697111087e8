//! `portcullis ctl`: the admin API's command-line client, so that every
//! operation exists once (in the API) and ctl only asks and prints.
//!
//! * [`client`] — the transport: the Unix socket of `[admin] socket` (read
//!   from the same config as the broker's, so both agree on its path; no
//!   key), else HTTP on `--url` or `[admin] bind` with an API key from
//!   `PORTCULLIS_API_KEY` or `--key-file` (`key:secret`).
//! * [`table`] — human output; `--json` prints the API's body instead.
//!
//! Exit codes: 0 done; 1 the API refused or failed (or, for `status`, the
//! broker is not running; for `cluster status`, a node is not running);
//! 2 bad usage or no way to reach the API.

pub mod client;
pub mod table;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use hyper::{Method, StatusCode};
use portcullis::Config;
use serde_json::{json, Value};

use self::client::{segment, Answer, ClientError, Target};
use self::table::{fields, footer, table, Column};

/// `portcullis ctl`: talk to the running broker through its admin API.
#[derive(Debug, Args)]
pub struct CtlArgs {
    /// Print the API's JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Use HTTP at this address (`http://IP:PORT`) with an API key instead
    /// of the Unix socket.
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// File holding the API key as `key:secret` (else the
    /// `PORTCULLIS_API_KEY` environment variable); for HTTP only.
    #[arg(long, global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Give up on an answer after this many seconds.
    #[arg(long, global = true, default_value_t = 10)]
    pub timeout: u64,
    #[command(subcommand)]
    pub command: CtlCommand,
}

#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Whether the broker runs (exit 1 when it does not answer).
    Status,
    /// The broker's gauges or counters.
    #[command(subcommand)]
    Broker(BrokerCmd),
    /// Connected clients (and detached sessions).
    #[command(subcommand)]
    Clients(ClientsCmd),
    /// Sessions: every client id with a session, connected or not.
    Sessions(PageArgs),
    /// Subscriptions; add or remove one on a client's behalf.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCmd),
    /// Topics with subscribers.
    Topics(PageArgs),
    /// Retained messages.
    #[command(subcommand)]
    Retained(RetainedCmd),
    /// Listeners and their counters.
    Listeners,
    /// The brute-force guard's bans.
    #[command(subcommand)]
    Banned(BannedCmd),
    /// The auth chain's providers.
    #[command(subcommand)]
    Auth(SecurityCmd),
    /// The ACL chain's providers; the built-in user store's ACL rules.
    #[command(subcommand)]
    Acl(AclCmd),
    /// Re-read the config file (as SIGHUP does).
    Reload,
    /// Modules: list them; switch one on or off until the next reload.
    #[command(subcommand)]
    Modules(ModulesCmd),
    /// Users of the built-in user store (`[auth.builtin.<name>]`).
    #[command(subcommand)]
    Users(UsersCmd),
    /// Bridges out (`[[bridges]]`): state and counters; stop and start.
    #[command(subcommand)]
    Bridges(BridgesCmd),
    /// The cluster's nodes.
    #[command(subcommand)]
    Cluster(ClusterCmd),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCmd {
    /// Every node with its status (exit 1 when one is not running).
    Status,
}

#[derive(Debug, Subcommand)]
pub enum BridgesCmd {
    /// Every bridge with its state and counters.
    List,
    /// One bridge in full.
    Show { name: String },
    /// Stop a bridge until started (state 0, DISCONNECT; QoS 1/2 messages
    /// for the remote keep being queued).
    Stop { name: String },
    /// Start a stopped bridge (it connects at once).
    Start { name: String },
}

/// Which `[auth.builtin.<name>]` provider: needed when the config has
/// several.
#[derive(Debug, Clone, Args)]
pub struct SourceArg {
    /// The `[auth.builtin.<NAME>]` / `[acl.builtin.<NAME>]` provider
    /// (default: the only one).
    #[arg(long, value_name = "NAME")]
    pub source: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum UsersCmd {
    /// List users.
    List {
        #[command(flatten)]
        source: SourceArg,
        #[command(flatten)]
        page: PageArgs,
        /// Usernames containing this.
        #[arg(long)]
        like: Option<String>,
    },
    /// Add a user; the password is read from standard input.
    Add {
        username: String,
        #[arg(long)]
        superuser: bool,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Set a user's password, read from standard input.
    Passwd {
        username: String,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Delete a user (its ACL rules stay).
    Del {
        username: String,
        #[command(flatten)]
        source: SourceArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum BrokerCmd {
    /// Connections, sessions, subscriptions, topics, retained: now and max.
    Stats,
    /// Every counter.
    Metrics,
}

#[derive(Debug, Clone, Args)]
pub struct PageArgs {
    /// Page number, from 1.
    #[arg(long, default_value_t = 1)]
    pub page: u64,
    /// Rows per page.
    #[arg(long, default_value_t = 100)]
    pub limit: u64,
}

#[derive(Debug, Subcommand)]
pub enum ClientsCmd {
    /// List clients.
    List {
        #[command(flatten)]
        page: PageArgs,
        /// Client ids containing this.
        #[arg(long)]
        like_clientid: Option<String>,
        /// This username.
        #[arg(long)]
        username: Option<String>,
    },
    /// One client in full.
    Show { clientid: String },
    /// Disconnect a client (v5: DISCONNECT 0x98 Administrative action).
    Kick { clientid: String },
}

#[derive(Debug, Subcommand)]
pub enum SubscriptionsCmd {
    /// List subscriptions.
    List {
        #[command(flatten)]
        page: PageArgs,
        /// Of this client.
        #[arg(long)]
        clientid: Option<String>,
        /// With this filter.
        #[arg(long)]
        topic: Option<String>,
    },
    /// Subscribe a client to a filter.
    Add {
        clientid: String,
        topic: String,
        #[arg(long, default_value_t = 0)]
        qos: u8,
    },
    /// Unsubscribe a client from a filter.
    Del { clientid: String, topic: String },
}

#[derive(Debug, Subcommand)]
pub enum RetainedCmd {
    /// List retained messages (without payloads).
    List {
        #[command(flatten)]
        page: PageArgs,
        /// Whose topic matches this filter.
        #[arg(long)]
        topic: Option<String>,
    },
    /// One retained message with its payload.
    Show { topic: String },
    /// Remove a topic's retained message.
    Delete { topic: String },
}

/// What a ban is on.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BanAs {
    /// An IP address.
    Peerhost,
    /// A username from an address (`username@ip`).
    PeerhostUsername,
    /// A client id, from any address.
    Clientid,
}

impl BanAs {
    fn name(self) -> &'static str {
        match self {
            BanAs::Peerhost => "peerhost",
            BanAs::PeerhostUsername => "peerhost_username",
            BanAs::Clientid => "clientid",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum BannedCmd {
    /// List bans.
    List(PageArgs),
    /// Ban an address (or `username@ip`, or a client id).
    Add {
        #[arg(value_enum)]
        kind: BanAs,
        who: String,
        /// When it ends (RFC 3339); default: the guard's ban time.
        #[arg(long)]
        until: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a ban.
    Del {
        #[arg(value_enum)]
        kind: BanAs,
        who: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecurityCmd {
    /// Providers with their counters and health.
    Sources,
    /// Empty the decision cache.
    CacheClean,
}

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Providers with their counters and health.
    Sources,
    /// Empty the decision cache.
    CacheClean,
    /// Rules of the built-in user store (`[acl.builtin.<name>]`).
    List {
        #[command(flatten)]
        source: SourceArg,
        #[command(flatten)]
        page: PageArgs,
        /// This username's rules, in decision order.
        #[arg(long, conflicts_with = "clientid")]
        username: Option<String>,
        /// This client id's rules, in decision order.
        #[arg(long)]
        clientid: Option<String>,
    },
    /// Add a rule for a username or a client id.
    Add {
        /// For every client that logs in with this username.
        #[arg(long, required_unless_present = "clientid", conflicts_with = "clientid")]
        username: Option<String>,
        /// For the client with this client id.
        #[arg(long)]
        clientid: Option<String>,
        #[arg(value_enum)]
        permission: RulePermissionArg,
        #[arg(value_enum)]
        action: RuleActionArg,
        /// An MQTT filter (`${username}`, `${clientid}` as whole levels) or
        /// `eq <topic>`.
        topic: String,
        /// QoS levels it applies to (default: all), e.g. `--qos 0 --qos 1`.
        #[arg(long)]
        qos: Vec<u8>,
        /// Only publishes with this retain flag.
        #[arg(long)]
        retain: Option<bool>,
        /// Lower first.
        #[arg(long, default_value_t = 0)]
        priority: i64,
        #[command(flatten)]
        source: SourceArg,
    },
    /// Delete a rule by id.
    Del {
        id: i64,
        #[command(flatten)]
        source: SourceArg,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RulePermissionArg {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RuleActionArg {
    Publish,
    Subscribe,
    All,
}

#[derive(Debug, Subcommand)]
pub enum ModulesCmd {
    /// Every built-in module: on or off, and whether switched at run time.
    List,
    /// Switch a built-in module on (not written to the config file: the
    /// next reload applies the file's setting again).
    Enable { name: String },
    /// Switch a built-in module off (until the next reload, likewise).
    Disable { name: String },
}

/// One API call and how to show its answer.
struct Call {
    method: Method,
    path: String,
    body: Option<Value>,
    show: Show,
}

/// How a successful answer is printed for humans.
enum Show {
    /// A page (`data` + `meta`) or a bare array, as a table.
    Table(&'static [Column]),
    /// A field of the body that is an array, as a table.
    TableAt(&'static str, &'static [Column]),
    /// An object's fields.
    Fields,
    /// A fixed line (for answers without a body).
    Done(String),
}

const CLIENTS: &[Column] = &[
    ("CLIENTID", "clientid"),
    ("USERNAME", "username"),
    ("CONNECTED", "connected"),
    ("IP", "ip_address"),
    ("PORT", "port"),
    ("LISTENER", "listener"),
    ("PROTO", "proto_ver"),
    ("KEEPALIVE", "keepalive"),
    ("SUBS", "subscriptions_cnt"),
    ("INFLIGHT", "inflight_cnt"),
    ("QUEUE", "mqueue_len"),
    ("CONNECTED_AT", "connected_at"),
];
const SESSIONS: &[Column] = &[
    ("CLIENTID", "clientid"),
    ("CONNECTED", "connected"),
    ("EXPIRY", "expiry_interval"),
    ("SUBS", "subscriptions_cnt"),
    ("INFLIGHT", "inflight_cnt"),
    ("QUEUE", "mqueue_len"),
    ("DROPPED", "mqueue_dropped"),
    ("AWAITING_REL", "awaiting_rel_cnt"),
];
const SUBSCRIPTIONS: &[Column] =
    &[("CLIENTID", "clientid"), ("TOPIC", "topic"), ("QOS", "qos"), ("NL", "nl"), ("RAP", "rap"), ("RH", "rh")];
const TOPICS: &[Column] = &[("TOPIC", "topic"), ("SUBSCRIPTIONS", "subscriptions")];
const RETAINED: &[Column] = &[
    ("TOPIC", "topic"),
    ("QOS", "qos"),
    ("FROM", "from_clientid"),
    ("BYTES", "payload_size"),
    ("EXPIRY", "expiry_interval"),
];
const LISTENERS: &[Column] = &[
    ("NAME", "name"),
    ("TYPE", "type"),
    ("BIND", "bind"),
    ("RUNNING", "running"),
    ("CONNECTIONS", "current_connections"),
    ("MAX", "max_connections"),
    ("REFUSED", "refused"),
    ("AUTH", "auth_chain"),
    ("ACL", "acl_chain"),
];
const BANS: &[Column] = &[("AS", "as"), ("WHO", "who"), ("UNTIL", "until")];
const SOURCES: &[Column] = &[
    ("ID", "id"),
    ("BACKEND", "backend"),
    ("CHAIN", "chain"),
    ("POS", "position"),
    ("STATUS", "status"),
    ("ON_ERROR", "on_error"),
    ("TIMEOUT_MS", "timeout_ms"),
];
const NODES: &[Column] = &[
    ("NODE", "node"),
    ("STATUS", "node_status"),
    ("SLOT", "slot"),
    ("VERSION", "version"),
    ("UPTIME_MS", "uptime"),
    ("CONNECTIONS", "connections"),
    ("LISTENERS", "listeners"),
];

const BRIDGES: &[Column] = &[
    ("NAME", "name"),
    ("STATUS", "status"),
    ("ADDRESS", "address"),
    ("PROTO", "protocol"),
    ("IN", "messages_in"),
    ("OUT", "messages_out"),
    ("QUEUED", "messages_queued"),
    ("DROPPED", "messages_dropped"),
    ("CONNECTS", "connects"),
];
const MODULES: &[Column] = &[("NAME", "name"), ("ENABLE", "enable"), ("SOURCE", "source")];
const USERS: &[Column] =
    &[("USERNAME", "user_id"), ("SUPERUSER", "is_superuser"), ("CREATED", "created_at"), ("UPDATED", "updated_at")];

/// The `[auth.builtin.<name>]` provider meant: `--source`, or the only one.
fn source(s: &SourceArg, cfg: &Config) -> Result<String, String> {
    pick_source(s, cfg.auth.builtin.keys(), "auth")
}

/// `--source`, or the only name there is.
fn pick_source<'a>(s: &SourceArg, names: impl Iterator<Item = &'a String>, section: &str) -> Result<String, String> {
    if let Some(name) = &s.source {
        return Ok(name.clone());
    }
    let names: Vec<&String> = names.collect();
    match names.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(format!("the config has no [{section}.builtin.<name>] provider; give --source NAME")),
        many => Err(format!(
            "give --source: the config has several [{section}.builtin.*] providers ({})",
            many.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// A password from the first line of standard input.
fn read_password() -> Result<String, String> {
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::stdin().lock(), &mut line)
        .map_err(|e| format!("reading the password from standard input: {e}"))?;
    let pw = line.trim_end_matches(['\n', '\r']).to_string();
    match pw.is_empty() {
        true => Err("empty password (give it on standard input)".into()),
        false => Ok(pw),
    }
}

const RULES: &[Column] = &[
    ("ID", "id"),
    ("USERNAME", "username"),
    ("CLIENTID", "clientid"),
    ("PERMISSION", "permission"),
    ("ACTION", "action"),
    ("TOPIC", "topic"),
    ("QOS", "qos"),
    ("RETAIN", "retain"),
    ("PRIORITY", "priority"),
];

/// The commands of `ctl acl` (the rules ones need the config).
fn rules_call(cmd: AclCmd, cfg: &Config) -> Result<Call, String> {
    let base = |s: &SourceArg| {
        pick_source(s, cfg.acl.builtin.keys(), "acl")
            .map(|id| format!("/api/v5/authorization/sources/{}/rules", segment(&id)))
    };
    Ok(match cmd {
        AclCmd::Sources => Call {
            method: Method::GET,
            path: "/api/v5/authorization/sources".into(),
            body: None,
            show: Show::TableAt("sources", SOURCES),
        },
        AclCmd::CacheClean => Call {
            method: Method::DELETE,
            path: "/api/v5/authorization/cache".into(),
            body: None,
            show: Show::Done("ACL cache purged".into()),
        },
        AclCmd::List { source, page, username, clientid } => Call {
            method: Method::GET,
            path: format!(
                "{}?{}",
                base(&source)?,
                page_query(&page, &[("username", &username), ("clientid", &clientid)])
            ),
            body: None,
            show: Show::Table(RULES),
        },
        AclCmd::Add { username, clientid, permission, action, topic, qos, retain, priority, source } => {
            let mut body = json!({
                "permission": match permission { RulePermissionArg::Allow => "allow", RulePermissionArg::Deny => "deny" },
                "action": match action {
                    RuleActionArg::Publish => "publish",
                    RuleActionArg::Subscribe => "subscribe",
                    RuleActionArg::All => "all",
                },
                "topic": topic,
                "priority": priority,
            });
            if let Some(u) = username {
                body["username"] = Value::String(u);
            }
            if let Some(c) = clientid {
                body["clientid"] = Value::String(c);
            }
            if !qos.is_empty() {
                body["qos"] = json!(qos);
            }
            if let Some(r) = retain {
                body["retain"] = Value::Bool(r);
            }
            Call { method: Method::POST, path: base(&source)?, body: Some(body), show: Show::Fields }
        }
        AclCmd::Del { id, source } => Call {
            method: Method::DELETE,
            path: format!("{}/{id}", base(&source)?),
            body: None,
            show: Show::Done(format!("deleted rule {id}")),
        },
    })
}

fn users_call(cmd: UsersCmd, cfg: &Config) -> Result<Call, String> {
    let base = |s: &SourceArg| source(s, cfg).map(|id| format!("/api/v5/authentication/{}/users", segment(&id)));
    Ok(match cmd {
        UsersCmd::List { source, page, like } => Call {
            method: Method::GET,
            path: format!("{}?{}", base(&source)?, page_query(&page, &[("like_user_id", &like)])),
            body: None,
            show: Show::Table(USERS),
        },
        UsersCmd::Add { username, superuser, source } => {
            let path = base(&source)?;
            let pw = read_password()?;
            Call {
                method: Method::POST,
                path,
                body: Some(json!({"user_id": username, "password": pw, "is_superuser": superuser})),
                show: Show::Done(format!("added {username}")),
            }
        }
        UsersCmd::Passwd { username, source } => {
            let path = format!("{}/{}", base(&source)?, segment(&username));
            let pw = read_password()?;
            Call {
                method: Method::PUT,
                path,
                body: Some(json!({"password": pw})),
                show: Show::Done(format!("set the password of {username}")),
            }
        }
        UsersCmd::Del { username, source } => Call {
            method: Method::DELETE,
            path: format!("{}/{}", base(&source)?, segment(&username)),
            body: None,
            show: Show::Done(format!("deleted {username}")),
        },
    })
}

fn page_query(p: &PageArgs, filters: &[(&str, &Option<String>)]) -> String {
    let mut q = format!("page={}&limit={}", p.page, p.limit);
    for (k, v) in filters {
        if let Some(v) = v {
            q.push_str(&format!("&{k}={}", segment(v)));
        }
    }
    q
}

/// The API call of a command.
fn call(cmd: CtlCommand, cfg: &Config) -> Result<Call, String> {
    let get = |path: String, show: Show| Call { method: Method::GET, path, body: None, show };
    Ok(match cmd {
        CtlCommand::Status => get("/api/v5/status?format=json".into(), Show::Fields),
        CtlCommand::Broker(BrokerCmd::Stats) => get("/api/v5/stats?aggregate=true".into(), Show::Fields),
        CtlCommand::Broker(BrokerCmd::Metrics) => get("/api/v5/metrics?aggregate=true".into(), Show::Fields),
        CtlCommand::Clients(ClientsCmd::List { page, like_clientid, username }) => get(
            format!(
                "/api/v5/clients?{}",
                page_query(&page, &[("like_clientid", &like_clientid), ("username", &username)])
            ),
            Show::Table(CLIENTS),
        ),
        CtlCommand::Clients(ClientsCmd::Show { clientid }) => {
            get(format!("/api/v5/clients/{}", segment(&clientid)), Show::Fields)
        }
        CtlCommand::Clients(ClientsCmd::Kick { clientid }) => Call {
            method: Method::DELETE,
            path: format!("/api/v5/clients/{}", segment(&clientid)),
            body: None,
            show: Show::Done(format!("kicked {clientid}")),
        },
        CtlCommand::Sessions(page) => get(format!("/api/v5/clients?{}", page_query(&page, &[])), Show::Table(SESSIONS)),
        CtlCommand::Subscriptions(SubscriptionsCmd::List { page, clientid, topic }) => get(
            format!("/api/v5/subscriptions?{}", page_query(&page, &[("clientid", &clientid), ("topic", &topic)])),
            Show::Table(SUBSCRIPTIONS),
        ),
        CtlCommand::Subscriptions(SubscriptionsCmd::Add { clientid, topic, qos }) => Call {
            method: Method::POST,
            path: format!("/api/v5/clients/{}/subscribe", segment(&clientid)),
            body: Some(json!({"topic": topic, "qos": qos})),
            show: Show::Done(format!("subscribed {clientid} to {topic}")),
        },
        CtlCommand::Subscriptions(SubscriptionsCmd::Del { clientid, topic }) => Call {
            method: Method::POST,
            path: format!("/api/v5/clients/{}/unsubscribe", segment(&clientid)),
            body: Some(json!({"topic": topic})),
            show: Show::Done(format!("unsubscribed {clientid} from {topic}")),
        },
        CtlCommand::Topics(page) => get(format!("/api/v5/topics?{}", page_query(&page, &[])), Show::Table(TOPICS)),
        CtlCommand::Retained(RetainedCmd::List { page, topic }) => get(
            format!("/api/v5/mqtt/retainer/messages?{}", page_query(&page, &[("topic", &topic)])),
            Show::Table(RETAINED),
        ),
        CtlCommand::Retained(RetainedCmd::Show { topic }) => {
            get(format!("/api/v5/mqtt/retainer/message/{}", segment(&topic)), Show::Fields)
        }
        CtlCommand::Retained(RetainedCmd::Delete { topic }) => Call {
            method: Method::DELETE,
            path: format!("/api/v5/mqtt/retainer/message/{}", segment(&topic)),
            body: None,
            show: Show::Done(format!("deleted the retained message of {topic}")),
        },
        CtlCommand::Listeners => get("/api/v5/listeners".into(), Show::Table(LISTENERS)),
        CtlCommand::Banned(BannedCmd::List(page)) => {
            get(format!("/api/v5/banned?{}", page_query(&page, &[])), Show::Table(BANS))
        }
        CtlCommand::Banned(BannedCmd::Add { kind, who, until, reason }) => {
            let mut body = json!({"as": kind.name(), "who": who, "by": "ctl"});
            if let Some(u) = until {
                body["until"] = Value::String(u);
            }
            if let Some(r) = reason {
                body["reason"] = Value::String(r);
            }
            Call { method: Method::POST, path: "/api/v5/banned".into(), body: Some(body), show: Show::Fields }
        }
        CtlCommand::Banned(BannedCmd::Del { kind, who }) => Call {
            method: Method::DELETE,
            path: format!("/api/v5/banned/{}/{}", kind.name(), segment(&who)),
            body: None,
            show: Show::Done(format!("lifted the ban on {who}")),
        },
        CtlCommand::Auth(SecurityCmd::Sources) => get("/api/v5/authentication".into(), Show::Table(SOURCES)),
        CtlCommand::Auth(SecurityCmd::CacheClean) => Call {
            method: Method::DELETE,
            path: "/api/v5/authentication/cache".into(),
            body: None,
            show: Show::Done("auth cache purged".into()),
        },
        CtlCommand::Reload => {
            Call { method: Method::POST, path: "/api/v5/configs/reload".into(), body: None, show: Show::Fields }
        }
        CtlCommand::Modules(ModulesCmd::List) => get("/api/v5/modules".into(), Show::TableAt("builtin", MODULES)),
        CtlCommand::Modules(ModulesCmd::Enable { name }) => Call {
            method: Method::PUT,
            path: format!("/api/v5/modules/{}", segment(&name)),
            body: Some(json!({"enable": true})),
            show: Show::Done(format!("module {name} enabled (until the next reload)")),
        },
        CtlCommand::Modules(ModulesCmd::Disable { name }) => Call {
            method: Method::PUT,
            path: format!("/api/v5/modules/{}", segment(&name)),
            body: Some(json!({"enable": false})),
            show: Show::Done(format!("module {name} disabled (until the next reload)")),
        },
        CtlCommand::Bridges(BridgesCmd::List) => get("/api/v5/bridges".into(), Show::Table(BRIDGES)),
        CtlCommand::Bridges(BridgesCmd::Show { name }) => {
            get(format!("/api/v5/bridges/{}", segment(&name)), Show::Fields)
        }
        CtlCommand::Bridges(BridgesCmd::Stop { name }) => Call {
            method: Method::POST,
            path: format!("/api/v5/bridges/{}/stop", segment(&name)),
            body: None,
            show: Show::Done(format!("stopped bridge {name}")),
        },
        CtlCommand::Bridges(BridgesCmd::Start { name }) => Call {
            method: Method::POST,
            path: format!("/api/v5/bridges/{}/start", segment(&name)),
            body: None,
            show: Show::Done(format!("started bridge {name}")),
        },
        CtlCommand::Cluster(ClusterCmd::Status) => get("/api/v5/nodes".into(), Show::Table(NODES)),
        CtlCommand::Users(cmd) => return users_call(cmd, cfg),
        CtlCommand::Acl(cmd) => return rules_call(cmd, cfg),
    })
}

/// Where to send requests: `--url`, else the socket when it answers, else
/// `[admin] bind` over HTTP when a key is at hand.
fn target(args: &CtlArgs, cfg: &Config) -> Result<Target, String> {
    let key = match (&args.key_file, std::env::var("PORTCULLIS_API_KEY")) {
        (Some(f), _) => Some(
            std::fs::read_to_string(f)
                .map_err(|e| format!("--key-file {}: {e}", f.display()))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        ),
        (None, Ok(k)) if !k.is_empty() => Some(k),
        _ => None,
    };
    if let Some(url) = &args.url {
        return Ok(Target::Http { addr: client::parse_url(url)?, key });
    }
    let socket = &cfg.admin.socket;
    let tried = match socket.as_os_str().is_empty() {
        true => "no socket ([admin] socket = \"\")".to_string(),
        false => match client::socket_answers(socket) {
            Ok(()) => return Ok(Target::Socket(socket.clone())),
            Err(e) => format!("{}: {e}", socket.display()),
        },
    };
    let mut addr = cfg.admin.bind;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    match key {
        Some(key) => Ok(Target::Http { addr, key: Some(key) }),
        // The status needs no key.
        None if matches!(args.command, CtlCommand::Status) => Ok(Target::Http { addr, key: None }),
        None => Err(format!(
            "cannot use the admin socket ({tried}); for HTTP give an API key \
             (PORTCULLIS_API_KEY=key:secret or --key-file) and, unless it is {addr}, --url"
        )),
    }
}

/// Runs `ctl`; returns the exit code.
pub fn run(args: CtlArgs, cfg: &Config) -> u8 {
    let is_status = matches!(args.command, CtlCommand::Status);
    let is_cluster = matches!(args.command, CtlCommand::Cluster(_));
    let target = match target(&args, cfg) {
        Ok(t) => t,
        // No socket and no key: for `status`, a broker that is not there.
        Err(e) if is_status => {
            report_down(args.json, &e);
            return 1;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 2;
        }
    };
    let json_out = args.json;
    let timeout = Duration::from_secs(args.timeout.max(1));
    let c = match call(args.command, cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let answer = rt.block_on(target.request(c.method.clone(), &c.path, c.body.as_ref(), timeout));
    match answer {
        Err(e) if is_status => {
            report_down(json_out, &e.to_string());
            1
        }
        Err(e @ ClientError::Connect { .. }) | Err(e @ ClientError::Timeout { .. }) => {
            eprintln!("error: {e}");
            2
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
        Ok(a) if is_cluster && a.status.is_success() => {
            let down: Vec<String> = a
                .body
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .filter(|n| n.get("node_status").and_then(Value::as_str) != Some("running"))
                .map(|n| table::cell(n.get("node")))
                .collect();
            print_answer(&c, a, json_out, false);
            if down.is_empty() {
                return 0;
            }
            eprintln!("not running: {}", down.join(", "));
            1
        }
        Ok(a) => print_answer(&c, a, json_out, is_status),
    }
}

fn report_down(json_out: bool, why: &str) {
    if json_out {
        println!("{}", json!({"running": false, "error": why}));
    } else {
        println!("portcullis is not running ({why})");
    }
}

fn print_answer(c: &Call, a: Answer, json_out: bool, is_status: bool) -> u8 {
    if !a.status.is_success() {
        if json_out {
            println!("{}", pretty(&a.body));
        } else {
            let code = a.body.get("code").and_then(Value::as_str).unwrap_or("ERROR");
            let message =
                a.body.get("message").and_then(Value::as_str).map_or_else(|| a.body.to_string(), str::to_string);
            eprintln!("error: {} {code}: {message}", a.status.as_u16());
        }
        return 1;
    }
    if json_out {
        let body = match (a.status, &a.body) {
            (StatusCode::NO_CONTENT, _) | (_, Value::Null) => json!({"ok": true}),
            (_, b) if is_status => json!({"running": true, "status": b}),
            (_, b) => b.clone(),
        };
        println!("{}", pretty(&body));
        return 0;
    }
    if is_status {
        let node = a.body.get("node_name").and_then(Value::as_str).unwrap_or("?");
        let version = a.body.get("rel_vsn").and_then(Value::as_str).unwrap_or("?");
        println!("Node {node} is started\nportcullis {version} is running");
        return 0;
    }
    match &c.show {
        Show::Done(line) => println!("{line}"),
        Show::Fields => print!("{}", fields(&a.body)),
        Show::Table(cols) => print_rows(&a.body, a.body.get("data").unwrap_or(&a.body), cols),
        Show::TableAt(at, cols) => print_rows(&a.body, a.body.get(*at).unwrap_or(&Value::Null), cols),
    }
    0
}

fn print_rows(body: &Value, rows: &Value, cols: &[Column]) {
    let rows = rows.as_array().map(Vec::as_slice).unwrap_or(&[]);
    print!("{}", table(rows, cols));
    if let Some(f) = footer(body.get("meta"), rows.len()) {
        println!("{f}");
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use portcullis::Config;

    /// `portcullis ctl` with no `--config` and the broker on the shipped
    /// file look for the same socket.
    #[test]
    fn the_shipped_file_and_the_embedded_defaults_agree_on_the_socket() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/portcullis.toml");
        let shipped = Config::load(&shipped).expect("the shipped config loads");
        let embedded = Config::embedded();
        assert_eq!(shipped.admin.socket, embedded.admin.socket);
        assert_eq!(shipped.admin.bind, embedded.admin.bind);
        assert_eq!(embedded.admin.socket, portcullis::config::admin::default_socket());
    }
}
