//! `pubsub`: S subscribers and P publishers on one topic, in one process.
//!
//! * `payload` — the stamp (send time, publisher, sequence number) every
//!   message carries.
//! * `publisher` — sends, with an inflight window for QoS 1/2.
//! * `subscriber` — receives, acknowledges, measures latency, finds
//!   duplicates.
//! * `stomp` — STOMP 1.2 publishers / subscribers in their place
//!   (`--stomp-pub-port`, `--stomp-sub-port`: the STOMP gateway measured).
//!
//! The run: connect and subscribe every subscriber, connect every
//! publisher, start publishing on one shared instant, wait for the
//! publishers to finish, then drain: wait until every subscriber has every
//! message (published × subscribers) or nothing has arrived for `drain`.
//! Lost = expected − distinct messages received.

mod payload;
mod publisher;
mod stomp;
mod subscriber;

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use portcullis_core::codec::QoS;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use payload::HEADER as MIN_SIZE;
pub use publisher::PubPlan;

use crate::client::{self, ClientOpts, Session};
use crate::progress::Progress;
use crate::stats::{round3, Histogram};
use crate::target::Target;
use subscriber::{SubReport, Tally};

#[derive(Debug, Clone)]
pub struct PubSubPlan {
    pub subscribers: usize,
    pub publishers: usize,
    pub sub_qos: QoS,
    /// Handshakes in flight while connecting the clients.
    pub concurrency: usize,
    /// How long to wait for stragglers once nothing arrives any more.
    pub drain: Duration,
    /// Where the subscribers connect, when not to the publishers' broker:
    /// subscriber i to the (i mod n)-th.
    pub sub_targets: Vec<Target>,
    /// Pause between the last SUBACK and the first PUBLISH.
    pub settle: Duration,
    /// What the subscribers subscribe to, when not the published topic.
    pub sub_topic: Option<String>,
    /// Subscribers with persistent sessions.
    pub persistent: bool,
    /// Publishers speak STOMP to this listener instead of MQTT.
    pub stomp_pub: Option<Target>,
    /// Subscribers speak STOMP to this listener instead of MQTT.
    pub stomp_sub: Option<Target>,
    pub publish: PubPlan,
}

/// A connected client of either protocol.
enum Client {
    Mqtt(Box<Session>),
    Stomp(stomp::StompConn),
}

pub async fn run(
    target: Target,
    opts: ClientOpts,
    plan: PubSubPlan,
    progress: Progress,
) -> anyhow::Result<serde_json::Value> {
    let epoch = Instant::now();
    let topic = plan.publish.topic.clone();

    let sub_targets = if plan.sub_targets.is_empty() { vec![target] } else { plan.sub_targets.clone() };
    let sub_topic = plan.sub_topic.clone().unwrap_or_else(|| topic.clone());
    let mut subs = connect_all(plan.subscribers, plan.concurrency, |i| {
        let (mut opts, topic, sub_qos) = (opts.clone(), sub_topic.clone(), plan.sub_qos);
        if plan.persistent {
            opts.session_expiry = Some(60);
        }
        let stomp_sub = plan.stomp_sub;
        let sub_target = sub_targets[i % sub_targets.len()];
        async move {
            let id = format!("{}s{i}", opts.client_prefix);
            if let Some(t) = stomp_sub {
                let mut c = stomp::open(&t, i, id, &opts).await?;
                stomp::subscribe(&mut c, &topic, opts.timeout).await?;
                return Ok(Client::Stomp(c));
            }
            let mut s = client::open(&sub_target, i, id, &opts).await?;
            subscriber::subscribe(&mut s, &topic, sub_qos, opts.timeout).await?;
            Ok(Client::Mqtt(Box::new(s)))
        }
    })
    .await
    .context("connecting the subscribers")?;
    let pubs = connect_all(plan.publishers, plan.concurrency, |i| {
        let (opts, stomp_pub) = (opts.clone(), plan.stomp_pub);
        let idx = plan.subscribers + i; // spread over other source addresses
        async move {
            let id = format!("{}p{i}", opts.client_prefix);
            Ok(match stomp_pub {
                Some(t) => Client::Stomp(stomp::open(&t, idx, id, &opts).await?),
                None => Client::Mqtt(Box::new(client::open(&target, idx, id, &opts).await?)),
            })
        }
    })
    .await
    .context("connecting the publishers")?;
    if !plan.settle.is_zero() {
        tokio::time::sleep(plan.settle).await;
    }
    progress.say(&format!(
        "{} subscribers and {} publishers connected; publishing on {topic} (QoS {} → subscriptions QoS {})",
        plan.subscribers, plan.publishers, plan.publish.qos as u8, plan.sub_qos as u8
    ));

    let tally = Arc::new(Tally::default());
    let sent = Arc::new(AtomicU64::new(0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sub_tasks = JoinSet::new();
    for s in subs.drain(..) {
        let publishers = u32::try_from(plan.publishers).context("too many publishers")?;
        let (opts, tally, stop) = (opts.clone(), Arc::clone(&tally), stop_rx.clone());
        let count = plan.publish.count;
        match s {
            Client::Mqtt(s) => sub_tasks.spawn(subscriber::run(*s, publishers, count, opts, epoch, tally, stop)),
            Client::Stomp(c) => sub_tasks.spawn(stomp::run_subscriber(c, publishers, count, epoch, tally, stop)),
        };
    }
    let ticker = progress.start({
        let (tally, sent) = (Arc::clone(&tally), Arc::clone(&sent));
        let last = AtomicU64::new(0);
        move || {
            let rx = tally.received.load(Ordering::Relaxed);
            let per_s = rx.saturating_sub(last.swap(rx, Ordering::Relaxed));
            format!("sent={} received={rx} ({per_s}/s)", sent.load(Ordering::Relaxed))
        }
    });

    let start = Instant::now();
    let publish = Arc::new(plan.publish.clone());
    let mut pub_tasks = JoinSet::new();
    for (i, s) in pubs.into_iter().enumerate() {
        let idx = u32::try_from(i).context("too many publishers")?;
        let (publish, opts, sent) = (Arc::clone(&publish), opts.clone(), Arc::clone(&sent));
        match s {
            Client::Mqtt(s) => pub_tasks.spawn(publisher::run(idx, *s, publish, opts, epoch, start, sent)),
            Client::Stomp(c) => pub_tasks.spawn(stomp::run_publisher(idx, c, publish, opts, epoch, start, sent)),
        };
    }
    let mut pub_reports = Vec::with_capacity(plan.publishers);
    while let Some(r) = pub_tasks.join_next().await {
        pub_reports.push(r.context("publisher task")?);
    }
    let publish_phase = start.elapsed();
    let published: u64 = pub_reports.iter().map(|r| r.sent).sum();
    let expected = published * plan.subscribers as u64;
    progress.say(&format!("published {published} in {:.2}s; draining", publish_phase.as_secs_f64()));

    drain(&tally, expected, plan.drain).await;
    let _ = stop_tx.send(true);
    let mut sub_reports: Vec<SubReport> = Vec::with_capacity(plan.subscribers);
    while let Some(r) = sub_tasks.join_next().await {
        sub_reports.push(r.context("subscriber task")?);
    }
    ticker.stop();
    Ok(summary(&plan, published, expected, start, publish_phase, &pub_reports, &sub_reports))
}

/// Opens `n` clients with at most `concurrency` handshakes at once; the
/// first failure fails the run (a load test with missing clients would
/// measure something else).
async fn connect_all<F, Fut>(n: usize, concurrency: usize, open: F) -> anyhow::Result<Vec<Client>>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<Client>> + Send + 'static,
{
    let sem = Arc::new(Semaphore::new(concurrency));
    let mut set = JoinSet::new();
    for i in 0..n {
        let sem = Arc::clone(&sem);
        let fut = open(i);
        set.spawn(async move {
            let _permit = sem.acquire_owned().await?;
            anyhow::Ok((i, fut.await.with_context(|| format!("client {i}"))?))
        });
    }
    let mut out: Vec<Option<Client>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        let (i, s) = r??;
        out[i] = Some(s);
    }
    Ok(out.into_iter().flatten().collect())
}

/// Waits until `expected` distinct messages have arrived, or none has for
/// `quiet` (bounded: messages are finite, and the whole wait is capped).
async fn drain(tally: &Tally, expected: u64, quiet: Duration) {
    let cap = Instant::now() + quiet.max(Duration::from_secs(1)) * 10;
    let mut last = tally.unique.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last < expected && last_change.elapsed() < quiet && Instant::now() < cap {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = tally.unique.load(Ordering::Relaxed);
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
}

fn summary(
    plan: &PubSubPlan,
    published: u64,
    expected: u64,
    start: Instant,
    publish_phase: Duration,
    pubs: &[publisher::PubReport],
    subs: &[SubReport],
) -> serde_json::Value {
    let mut latency = Histogram::default();
    for s in subs {
        latency.merge(&s.latency);
    }
    let received: u64 = subs.iter().map(|s| s.received).sum();
    let unique: u64 = subs.iter().map(|s| s.unique).sum();
    let duplicates: u64 = subs.iter().map(|s| s.duplicates).sum();
    let foreign: u64 = subs.iter().map(|s| s.foreign).sum();
    let receive_phase = subs.iter().filter_map(|s| s.last_receive).max().map_or(Duration::ZERO, |t| t - start);
    let errors: Vec<String> = pubs
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some(format!("publisher {i}: {}", r.error.as_ref()?)))
        .chain(subs.iter().enumerate().filter_map(|(i, r)| Some(format!("subscriber {i}: {}", r.error.as_ref()?))))
        .collect();
    let rate = |n: u64, d: Duration| if d.is_zero() { 0.0 } else { round3(n as f64 / d.as_secs_f64()) };
    let us = |ns: u64| ns / 1_000;
    json!({
        "mode": "pubsub",
        "publishers_speak": if plan.stomp_pub.is_some() { "stomp" } else { "mqtt" },
        "subscribers_speak": if plan.stomp_sub.is_some() { "stomp" } else { "mqtt" },
        "subscribers": plan.subscribers,
        "publishers": plan.publishers,
        "qos": plan.publish.qos as u8,
        "sub_qos": plan.sub_qos as u8,
        "size": plan.publish.size,
        "published": published,
        "acked": pubs.iter().map(|r| r.acked).sum::<u64>(),
        "rejected": pubs.iter().map(|r| r.rejected).sum::<u64>(),
        "unacked": pubs.iter().map(|r| r.unacked).sum::<u64>(),
        "stray_acks": pubs.iter().map(|r| r.stray_acks).sum::<u64>(),
        "expected": expected,
        "received": received,
        "lost": expected.saturating_sub(unique),
        "duplicates": duplicates,
        "foreign": foreign,
        "publish_s": round3(publish_phase.as_secs_f64()),
        "sent_per_s": rate(published, publish_phase),
        "msgs_per_s": rate(received, receive_phase),
        "p50_us": us(latency.percentile(50.0)),
        "p90_us": us(latency.percentile(90.0)),
        "p99_us": us(latency.percentile(99.0)),
        "max_us": us(latency.max()),
        "errors": errors,
    })
}
