//! `portcullis-bench`: a load tool for MQTT brokers on loopback.
//!
//! * `target` — the broker address, refused unless it is in 127.0.0.0/8,
//!   and the spread of source addresses.
//! * `client` — a minimal MQTT client over `portcullis_core::codec`.
//! * `conn` — the `conn` subcommand: connection storm and hold.
//! * `pubsub` — the `pubsub` subcommand: publishers, subscribers, latency,
//!   loss and duplicates.
//! * `stats` — latency histogram and sequence-number sets.
//! * `progress` — the per-second progress line on stderr.
//!
//! Every run prints one JSON summary line on stdout and exits 0 when every
//! client did what it was asked (1 otherwise, 2 on bad arguments).

mod client;
mod conn;
mod progress;
mod pubsub;
mod stats;
mod target;

use std::io::BufRead;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use portcullis_core::codec::{ProtocolVersion, QoS};

use crate::client::ClientOpts;
use crate::progress::Progress;
use crate::target::Target;

/// Hard caps that keep every run bounded whatever the arguments say.
const MAX_CLIENTS: usize = 1_000_000;
const MAX_DURATION: Duration = Duration::from_secs(3600);
const MAX_PAYLOAD: usize = 16 * 1024 * 1024;
const MAX_COUNT: u64 = 1_000_000_000;
/// Memory allowed for duplicate detection (bits: subscribers × publishers × count).
const MAX_SEEN_BITS: u128 = 8 * 1024 * 1024 * 1024;

/// Load tool for MQTT brokers on loopback (127.0.0.0/8 only).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Open N connections (at most C handshakes at once), report connects/s
    /// and CONNACK latency, hold them, close them with DISCONNECT.
    Conn(ConnArgs),
    /// Run S subscribers and P publishers on one topic; report end-to-end
    /// latency, loss, duplicates and throughput.
    Pubsub(PubSubArgs),
}

#[derive(Debug, Args)]
struct Common {
    /// Broker address: an IPv4 address in 127.0.0.0/8, or `localhost`.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Username sent in CONNECT.
    #[arg(long)]
    username: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long, requires = "username")]
    password_stdin: bool,
    /// Spread clients over N users: client i sends the username
    /// `<username><i mod N>` (`--username bench --users 1000`: bench0 …
    /// bench999), all with the same password.
    #[arg(long, requires = "username", value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    users: Option<u32>,
    /// Client ids start with this [default: pcb-<pid>-]: conn clients are
    /// `<prefix>c<i>`, pubsub clients `<prefix>s<i>` / `<prefix>p<i>`. A
    /// fixed prefix makes a second run reconnect with the same client ids
    /// (and the same source addresses), e.g. to meet a warm auth cache.
    #[arg(long)]
    client_id_prefix: Option<String>,
    /// MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u8).range(3..=5))]
    protocol: u8,
    /// Keep-alive sent in CONNECT, seconds; idle clients ping at half of it.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u16).range(2..))]
    keep_alive: u16,
    /// Bound on each handshake, SUBACK, write and final acknowledgement wait.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Spread client source addresses over 127.0.0.1..=127.0.0.N (0: let the
    /// OS choose), so the ephemeral port range does not limit connections.
    #[arg(long, default_value_t = target::MAX_SOURCES)]
    sources: u8,
    /// No progress lines on stderr.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct ConnArgs {
    #[command(flatten)]
    common: Common,
    /// Connections to open.
    #[arg(short, long, default_value_t = 1000)]
    n: usize,
    /// Handshakes (TCP connect + CONNECT + CONNACK) in flight at most.
    #[arg(short, long, default_value_t = 100)]
    concurrency: usize,
    /// How long to keep the accepted connections open.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    hold: Duration,
}

#[derive(Debug, Args)]
struct PubSubArgs {
    #[command(flatten)]
    common: Common,
    /// Topic every publisher publishes to and every subscriber subscribes
    /// to [default: bench/<pid>].
    #[arg(short, long)]
    topic: Option<String>,
    /// Subscribers connect to this port (same host) instead of --port: the
    /// path between two brokers, such as a bridge or two cluster nodes, is
    /// measured. A comma-separated list spreads them: subscriber i connects
    /// to the (i mod n)-th port.
    #[arg(long, value_delimiter = ',')]
    sub_port: Vec<u16>,
    /// Wait this long after every subscriber has its SUBACK before
    /// publishing (a cluster's route to another node has to reach the
    /// publisher's node first).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    settle: Duration,
    /// Subscribers subscribe to this topic instead of --topic (a bridge
    /// that renames topics with prefixes).
    #[arg(long)]
    sub_topic: Option<String>,
    /// Subscribers.
    #[arg(short, long, default_value_t = 1)]
    subscribers: usize,
    /// Publishers.
    #[arg(short, long, default_value_t = 1)]
    publishers: usize,
    /// QoS of the PUBLISHes.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// QoS of the subscriptions [default: --qos].
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=2))]
    sub_qos: Option<u8>,
    /// Payload bytes (at least 20: the stamp).
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Messages per publisher.
    #[arg(long, required_unless_present = "rate")]
    count: Option<u64>,
    /// Messages per second per publisher, e.g. `500` or `500/s`.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<f64>,
    /// Longest time publishers publish.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Unacknowledged QoS 1/2 messages per publisher.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    window: u16,
    /// After publishing, wait at most this long without a new message.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    drain: Duration,
    /// Handshakes in flight while connecting the clients.
    #[arg(short, long, default_value_t = 100)]
    concurrency: usize,
    /// Subscribers connect with persistent sessions (clean start 0, v5
    /// session expiry 60 s): the broker's durable store, if it has one,
    /// holds what they are sent.
    #[arg(long)]
    persistent: bool,
    /// Publishers are STOMP 1.2 clients of the STOMP listener on this port
    /// (same host): SEND frames with content-length; with --qos 1/2 each
    /// asks a receipt, at most --window outstanding. The MQTT QoS of the
    /// message is the listener's send_qos.
    #[arg(long)]
    stomp_pub_port: Option<u16>,
    /// Subscribers are STOMP 1.2 clients of the STOMP listener on this port
    /// (SUBSCRIBE ack:auto; the QoS is the listener's subscribe_qos).
    #[arg(long)]
    stomp_sub_port: Option<u16>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let n = s.strip_suffix("/s").unwrap_or(s);
    match n.parse::<f64>() {
        Ok(r) if r.is_finite() && r >= 0.1 => Ok(r),
        _ => Err(format!("{s:?} is not a rate of at least 0.1 messages per second")),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(summary) => {
            let ok = summary.get("ok").and_then(serde_json::Value::as_bool).unwrap_or(false);
            println!("{summary}");
            if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match cli.command {
        Command::Conn(a) => {
            let (target, opts, progress) = setup(&a.common)?;
            check((1..=MAX_CLIENTS).contains(&a.n), "-n must be 1..=1000000")?;
            check((1..=100_000).contains(&a.concurrency), "--concurrency must be 1..=100000")?;
            check(a.hold <= MAX_DURATION, "--hold is at most 1h")?;
            let plan = conn::ConnPlan { n: a.n, concurrency: a.concurrency, hold: a.hold };
            let mut summary = rt.block_on(conn::run(target, opts, plan, progress));
            let ok = summary["failed"].as_u64() == Some(0) && summary["dropped"].as_u64() == Some(0);
            summary["ok"] = ok.into();
            Ok(summary)
        }
        Command::Pubsub(a) => {
            let (target, opts, progress) = setup(&a.common)?;
            let mut plan = pubsub_plan(&a)?;
            check(a.sub_port.len() <= 64, "--sub-port takes at most 64 ports")?;
            for port in &a.sub_port {
                plan.sub_targets.push(Target::new(&a.common.host, *port, a.common.sources)?);
            }
            if let Some(port) = a.stomp_pub_port {
                plan.stomp_pub = Some(Target::new(&a.common.host, port, a.common.sources)?);
            }
            if let Some(port) = a.stomp_sub_port {
                plan.stomp_sub = Some(Target::new(&a.common.host, port, a.common.sources)?);
            }
            let mut summary = rt.block_on(pubsub::run(target, opts, plan, progress))?;
            let ok = summary["errors"].as_array().is_some_and(Vec::is_empty)
                && summary["lost"].as_u64() == Some(0)
                && summary["duplicates"].as_u64() == Some(0);
            summary["ok"] = ok.into();
            Ok(summary)
        }
    }
}

fn check(cond: bool, msg: &str) -> anyhow::Result<()> {
    if !cond {
        bail!("{msg}");
    }
    Ok(())
}

fn setup(c: &Common) -> anyhow::Result<(Target, ClientOpts, Progress)> {
    let target = Target::new(&c.host, c.port, c.sources)?;
    check(c.timeout > Duration::ZERO && c.timeout <= MAX_DURATION, "--timeout must be more than 0 and at most 1h")?;
    let password = if c.password_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("reading the password from stdin")?;
        Some(Bytes::from(line.trim_end_matches(['\r', '\n']).to_string()))
    } else {
        None
    };
    let client_prefix = c.client_id_prefix.clone().unwrap_or_else(|| format!("pcb-{}-", std::process::id()));
    check(
        client_prefix.len() <= 64 && !client_prefix.contains('\0'),
        "--client-id-prefix must be at most 64 bytes, without NUL",
    )?;
    let version = match c.protocol {
        3 => ProtocolVersion::V31,
        4 => ProtocolVersion::V311,
        _ => ProtocolVersion::V5,
    };
    let opts = ClientOpts {
        version,
        username: c.username.clone(),
        users: c.users,
        password,
        keep_alive: c.keep_alive,
        client_prefix,
        timeout: c.timeout,
        session_expiry: None,
    };
    Ok((target, opts, Progress::new(c.quiet)))
}

fn qos(v: u8) -> QoS {
    QoS::from_u8(v).unwrap_or(QoS::AtMostOnce) // clap has checked 0..=2
}

fn pubsub_plan(a: &PubSubArgs) -> anyhow::Result<pubsub::PubSubPlan> {
    check((1..=100_000).contains(&a.subscribers), "--subscribers must be 1..=100000")?;
    check((1..=100_000).contains(&a.publishers), "--publishers must be 1..=100000")?;
    check((1..=100_000).contains(&a.concurrency), "--concurrency must be 1..=100000")?;
    check(a.duration > Duration::ZERO && a.duration <= MAX_DURATION, "--duration must be more than 0 and at most 1h")?;
    check(a.drain <= Duration::from_secs(600), "--drain is at most 10m")?;
    check(a.settle <= Duration::from_secs(60), "--settle is at most 1m")?;
    check(
        (pubsub::MIN_SIZE..=MAX_PAYLOAD).contains(&a.size),
        &format!("--size must be {}..={MAX_PAYLOAD} bytes", pubsub::MIN_SIZE),
    )?;
    let by_rate = a.rate.map(|r| (r * a.duration.as_secs_f64()).ceil() as u64);
    let count = match (a.count, by_rate) {
        (Some(c), Some(r)) => c.min(r),
        (Some(c), None) => c,
        (None, Some(r)) => r,
        (None, None) => bail!("give --count or --rate"),
    };
    check((1..=MAX_COUNT).contains(&count), "messages per publisher must be 1..=1000000000")?;
    let bits = a.subscribers as u128 * a.publishers as u128 * u128::from(count);
    check(bits <= MAX_SEEN_BITS, "subscribers × publishers × messages is too large to track duplicates (1 GiB)")?;
    let topic = a.topic.clone().unwrap_or_else(|| format!("bench/{}", std::process::id()));
    check(!topic.is_empty() && !topic.contains(['+', '#', '\0']), "--topic must be a topic name without wildcards")?;
    Ok(pubsub::PubSubPlan {
        subscribers: a.subscribers,
        publishers: a.publishers,
        sub_qos: qos(a.sub_qos.unwrap_or(a.qos)),
        concurrency: a.concurrency,
        drain: a.drain,
        sub_targets: Vec::new(),
        settle: a.settle,
        sub_topic: a.sub_topic.clone(),
        persistent: a.persistent,
        stomp_pub: None,
        stomp_sub: None,
        publish: pubsub::PubPlan {
            topic,
            qos: qos(a.qos),
            size: a.size,
            count,
            rate: a.rate,
            duration: a.duration,
            window: usize::from(a.window),
        },
    })
}
