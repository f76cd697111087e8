//! Failure tests of the cluster (issue 19): three Portcullis nodes on three
//! clustered NATS servers (tests/src/nats.rs), each under a steady QoS 1
//! load, while one part fails. Each test measures what is lost and how
//! long delivery takes to come back, prints it on lines that start with
//! `cluster-failure:` (docs/cluster.md quotes them), and asserts only what
//! must hold whatever the machine's speed:
//!
//! * no QoS 1 subscriber gets a message twice;
//! * what does not depend on the failed part loses nothing (a node's own
//!   subscribers; two nodes whose NATS servers stay up and connected);
//! * what is lost was sent inside the failure's window (not before);
//! * after recovery messages flow again, within a generous bound.
//!
//! Timings are printed, not asserted (a shared, noisy machine).
//!
//! * [`sigkill_of_a_broker_node_under_load`]: node A is killed (SIGKILL)
//!   and restarted on the same data directory.
//! * [`sigkill_of_the_nats_server_a_node_uses`]: the node reconnects to
//!   another server of its `nats` list; the server is restarted.
//! * [`sigstop_of_the_nats_server_a_node_uses`] and
//!   [`long_sigstop_of_the_nats_server_a_node_uses`]: the server is frozen
//!   for 5 s / 15 s (shorter / longer than nats-server's 10 s write
//!   deadline), then resumed.
//! * [`partition_of_one_nats_server`] and
//!   [`short_partition_of_one_nats_server`]: network namespaces, the
//!   isolated server's route link down for 15 s / 4 s, then up (root only;
//!   skipped elsewhere unless `CI=true`).
//!
//! Run through `bash scripts/services.sh nats -- cargo test -p
//! portcullis-tests --test cluster_failures -- --test-threads=1 --nocapture`
//! (about 2.5 minutes; with `PORTCULLIS_TEST_LOG=info,async_nats=debug`
//! the NATS client's slow-consumer drops are counted in the output).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use portcullis_core::codec::{self, Packet, Properties, PubResp, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::nats::Nats;
use portcullis_tests::{Broker, Raw};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;
use tokio::task::{block_in_place, JoinHandle};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
/// One publisher's pace: 100 messages a second.
const INTERVAL: Duration = Duration::from_millis(10);
/// Every publisher stops after this many messages, whatever happens.
const MAX_MESSAGES: u64 = 20_000;
/// How long a route may take to be in place across NATS.
const ROUTE_TIMEOUT: Duration = Duration::from_secs(10);
/// A generous bound for delivery to come back after a failure ends.
const RECOVERY_BOUND: Duration = Duration::from_secs(60);

/// The config of node `i` (named `n<i>`) on these NATS servers, with its
/// store in `data`.
fn node_config(i: usize, nats: &[String], data: &Path) -> String {
    let urls: Vec<String> = nats.iter().map(|u| format!("{u:?}")).collect();
    format!(
        "[node]\nname = \"n{i}\"\n[limits]\nmax_packet_size = \"1MiB\"\n[sys]\ninterval = \"1s\"\n\
         [persistence]\ndir = {:?}\n[cluster]\nenabled = true\nnats = [{}]\n",
        data.display().to_string(),
        urls.join(", ")
    )
}

/// Starts node `i` and waits until it is connected to NATS.
fn start_node(i: usize, nats: &[String], data: &Path) -> Broker {
    let b = block_in_place(|| Broker::start(&node_config(i, nats, data)));
    let up = block_in_place(|| b.wait_log("cluster: connected to NATS", Duration::from_secs(15)));
    assert!(up, "node {i}: {}", b.log());
    // A CONNECT is refused until the session registry is open.
    let registry = block_in_place(|| b.wait_log("session registry open", Duration::from_secs(20)));
    assert!(registry, "node {i}: {}", b.log());
    b
}

async fn v5(addr: SocketAddr, id: &str) -> Raw {
    open_v5(addr, id, true, Properties::default()).await.0
}

/// Writes a packet; false when the connection is gone.
async fn write(raw: &mut Raw, p: &Packet) -> bool {
    let mut b = BytesMut::new();
    codec::encode(p, raw.version, &mut b).expect("encode");
    raw.stream.write_all(&b).await.is_ok()
}

/// A subscriber to `load/#` at QoS 1.
async fn load_subscriber(addr: SocketAddr, id: &str) -> Raw {
    let mut s = v5(addr, id).await;
    subscribe(&mut s, 1, &[("load/#", Q1)]).await;
    s
}

/// Publishes probes from each publisher until every subscriber got one
/// from it (NATS' interest has reached every publisher's server), then
/// drains what is still on its way. Bounded by [`ROUTE_TIMEOUT`] each.
async fn await_routes(pubs: &mut [Raw], subs: &mut [Raw]) {
    for p in pubs.iter_mut() {
        for s in subs.iter_mut() {
            let end = Instant::now() + ROUTE_TIMEOUT;
            loop {
                assert!(Instant::now() < end, "no route within {ROUTE_TIMEOUT:?}");
                pub_simple(p, "load/probe", Q0, 0, b"probe", false).await;
                if let Ok(Some(Packet::Publish(_))) = s.recv_timeout(Duration::from_millis(100)).await {
                    break;
                }
            }
        }
    }
    for s in subs.iter_mut() {
        drain_publishes(s, Duration::from_millis(300), Duration::from_secs(5)).await;
    }
}

/// What a publisher did: the messages the broker acknowledged, with the
/// time each was sent, and when the connection went away (if it did).
#[derive(Debug)]
struct PubReport {
    name: String,
    acked: Vec<(u64, Instant)>,
    closed_at: Option<Instant>,
}

/// What a subscriber got: (publisher, sequence, time received).
#[derive(Debug)]
struct SubReport {
    name: String,
    /// When it was subscribed (it cannot have what was sent before).
    started: Instant,
    got: Vec<(String, u64, Instant)>,
    closed_at: Option<Instant>,
}

/// Publishes `<name>:<seq>` on `load/<name>` at QoS 1 every [`INTERVAL`]
/// (waiting for each PUBACK, 5 s at most) until `stop` turns true, the
/// connection goes, or [`MAX_MESSAGES`].
async fn publisher(mut raw: Raw, name: String, mut stop: watch::Receiver<bool>) -> PubReport {
    let topic = format!("load/{name}");
    let mut report = PubReport { name: name.clone(), acked: Vec::new(), closed_at: None };
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for seq in 1..=MAX_MESSAGES {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        let id = (seq % 65_535) as u16 + 1;
        let at = Instant::now();
        let p = publish(&topic, Q1, Some(id), format!("{name}:{seq}").as_bytes(), false);
        if !write(&mut raw, &Packet::Publish(p)).await {
            report.closed_at = Some(Instant::now());
            break;
        }
        match raw.recv_timeout(Duration::from_secs(5)).await {
            Ok(Some(Packet::PubAck(a))) if a.packet_id == id && a.reason < 0x80 => report.acked.push((seq, at)),
            Ok(Some(_)) | Err(()) => {}
            Ok(None) => {
                report.closed_at = Some(Instant::now());
                break;
            }
        }
    }
    report
}

/// Reads (and acknowledges) every PUBLISH until `stop` turns true and
/// then 1.5 s pass without one (30 s at most after `stop`), or the
/// connection goes.
async fn subscriber(mut raw: Raw, name: String, mut stop: watch::Receiver<bool>) -> SubReport {
    let mut report = SubReport { name, started: Instant::now(), got: Vec::new(), closed_at: None };
    let mut stopping: Option<Instant> = None;
    let mut last = Instant::now();
    loop {
        if stopping.is_none() && *stop.borrow_and_update() {
            stopping = Some(Instant::now());
        }
        if let Some(s) = stopping {
            if last.elapsed() > Duration::from_millis(1500) || s.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        match raw.recv_timeout(Duration::from_millis(100)).await {
            Ok(Some(Packet::Publish(p))) => {
                let at = Instant::now();
                last = at;
                if let (Q1, Some(id)) = (p.qos, p.packet_id) {
                    if !write(&mut raw, &Packet::PubAck(PubResp::ok(id))).await {
                        report.closed_at = Some(at);
                        break;
                    }
                }
                let text = text(&p.payload);
                if let Some((who, seq)) = text.split_once(':') {
                    if let Ok(seq) = seq.parse() {
                        report.got.push((who.to_string(), seq, at));
                    }
                }
            }
            Ok(Some(_)) | Err(()) => {}
            Ok(None) => {
                report.closed_at = Some(Instant::now());
                break;
            }
        }
    }
    report
}

/// Publishers and subscribers running in tasks until [`Load::finish`].
struct Load {
    stop: watch::Sender<bool>,
    drain: watch::Sender<bool>,
    pubs: Vec<JoinHandle<PubReport>>,
    subs: Vec<JoinHandle<SubReport>>,
}

impl Load {
    fn new() -> Load {
        Load { stop: watch::channel(false).0, drain: watch::channel(false).0, pubs: Vec::new(), subs: Vec::new() }
    }
    fn publisher(&mut self, raw: Raw, name: &str) {
        self.pubs.push(tokio::spawn(publisher(raw, name.to_string(), self.stop.subscribe())));
    }
    fn subscriber(&mut self, raw: Raw, name: &str) {
        self.subs.push(tokio::spawn(subscriber(raw, name.to_string(), self.drain.subscribe())));
    }
    /// Stops the publishers, lets the subscribers drain, returns the reports.
    async fn finish(self) -> (Vec<PubReport>, Vec<SubReport>) {
        let _ = self.stop.send(true);
        let mut pubs = Vec::new();
        for p in self.pubs {
            pubs.push(p.await.expect("publisher task"));
        }
        let _ = self.drain.send(true);
        let mut subs = Vec::new();
        for s in self.subs {
            subs.push(s.await.expect("subscriber task"));
        }
        (pubs, subs)
    }
}

/// Lets the load run for `d` (the test's task sleeps; the load's go on).
async fn run_for(d: Duration) {
    tokio::time::sleep(d).await;
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Signed milliseconds of `t` relative to `event`.
fn rel(t: Instant, event: Instant) -> i128 {
    if t >= event {
        (t - event).as_millis() as i128
    } else {
        -((event - t).as_millis() as i128)
    }
}

/// One publisher's messages as one subscriber saw them.
#[derive(Debug)]
struct Pair {
    sent: usize,
    received: usize,
    duplicates: usize,
    /// (seq, sent at) of every acknowledged message never received.
    lost: Vec<(u64, Instant)>,
    /// Longest time without a message from this publisher, and when it ended.
    max_gap: Duration,
    gap_end: Option<Instant>,
    max_latency: Duration,
    /// (sent at, received at) of every message received.
    deliveries: Vec<(Instant, Instant)>,
}

fn pair(p: &PubReport, s: &SubReport) -> Pair {
    let mut seen: HashMap<u64, (usize, Instant)> = HashMap::new();
    let mut arrivals = Vec::new();
    for (who, seq, at) in &s.got {
        if *who == p.name {
            let e = seen.entry(*seq).or_insert((0, *at));
            e.0 += 1;
            arrivals.push(*at);
        }
    }
    let duplicates = seen.values().map(|(n, _)| n - 1).sum();
    let (mut lost, mut deliveries, mut max_latency) = (Vec::new(), Vec::new(), Duration::ZERO);
    for &(seq, sent) in p.acked.iter().filter(|(_, sent)| *sent >= s.started) {
        match seen.get(&seq) {
            Some(&(_, at)) => {
                deliveries.push((sent, at));
                max_latency = max_latency.max(at.saturating_duration_since(sent));
            }
            None => lost.push((seq, sent)),
        }
    }
    arrivals.sort();
    let (mut max_gap, mut gap_end) = (Duration::ZERO, None);
    for w in arrivals.windows(2) {
        if w[1] - w[0] > max_gap {
            max_gap = w[1] - w[0];
            gap_end = Some(w[1]);
        }
    }
    let sent = p.acked.iter().filter(|(_, at)| *at >= s.started).count();
    Pair { sent, received: deliveries.len(), duplicates, lost, max_gap, gap_end, max_latency, deliveries }
}

/// Prints one pair's figures relative to `event` (the failure's start).
fn print_pair(case: &str, p: &PubReport, s: &SubReport, r: &Pair, event: Instant) {
    let window = match (r.lost.first(), r.lost.last()) {
        (Some(a), Some(b)) => format!("{}..{} ms", rel(a.1, event), rel(b.1, event)),
        _ => "none".to_string(),
    };
    let gap_end = r.gap_end.map_or("-".to_string(), |g| format!("{} ms", rel(g, event)));
    println!(
        "cluster-failure: {case}: {}->{}: sent {}, received {}, lost {}, duplicates {}, loss window {window}, \
         max gap {} ms (ended at {gap_end}), max latency {} ms",
        p.name,
        s.name,
        r.sent,
        r.received,
        r.lost.len(),
        r.duplicates,
        ms(r.max_gap),
        ms(r.max_latency)
    );
}

fn find<'a, T>(items: &'a [T], name: impl Fn(&T) -> bool, what: &str) -> &'a T {
    items.iter().find(|x| name(x)).unwrap_or_else(|| panic!("no {what}"))
}

/// Every pair's figures, printed; asserts no duplicates anywhere.
fn analyse(case: &str, pubs: &[PubReport], subs: &[SubReport], event: Instant) -> HashMap<(String, String), Pair> {
    let mut out = HashMap::new();
    for p in pubs {
        for s in subs {
            if p.acked.last().is_none_or(|(_, at)| *at < s.started) {
                continue; // the publisher had gone before the subscriber came
            }
            let r = pair(p, s);
            print_pair(case, p, s, &r, event);
            assert_eq!(r.duplicates, 0, "{case}: {}->{}: a QoS 1 subscriber got a message twice", p.name, s.name);
            out.insert((p.name.clone(), s.name.clone()), r);
        }
    }
    out
}

/// Asserts that every message `pub` sent at or after `from` reached `sub`:
/// delivery has come back by then.
fn assert_flows_from(case: &str, pairs: &HashMap<(String, String), Pair>, publ: &str, sub: &str, from: Instant) {
    let r = &pairs[&(publ.to_string(), sub.to_string())];
    let late: Vec<u64> = r.lost.iter().filter(|(_, at)| *at >= from).map(|(s, _)| *s).collect();
    assert!(late.is_empty(), "{case}: {publ}->{sub}: messages sent after recovery were lost: {late:?}");
    assert!(
        r.deliveries.iter().any(|(sent, _)| *sent >= from),
        "{case}: {publ}->{sub}: nothing sent after recovery arrived"
    );
}

/// Asserts that `pub` → `sub` lost nothing.
fn assert_lossless(case: &str, pairs: &HashMap<(String, String), Pair>, publ: &str, sub: &str) {
    let r = &pairs[&(publ.to_string(), sub.to_string())];
    assert!(r.sent > 0, "{case}: {publ} sent nothing");
    let first: Vec<u64> = r.lost.iter().take(10).map(|l| l.0).collect();
    assert!(r.lost.is_empty(), "{case}: {publ}->{sub} lost {} messages (first: {first:?})", r.lost.len());
}

/// Asserts that every message `pub` → `sub` lost was sent within
/// [`from`, `to`].
fn assert_loss_within(
    case: &str,
    pairs: &HashMap<(String, String), Pair>,
    publ: &str,
    sub: &str,
    from: Instant,
    to: Instant,
) {
    let r = &pairs[&(publ.to_string(), sub.to_string())];
    let outside: Vec<(u64, i128)> =
        r.lost.iter().filter(|(_, at)| *at < from || *at > to).map(|(s, at)| (*s, rel(*at, from))).collect();
    assert!(
        outside.is_empty(),
        "{case}: {publ}->{sub}: {} lost outside the failure's window (first, as (seq, ms from its start)): {:?}",
        outside.len(),
        &outside[..outside.len().min(10)]
    );
}

/// A silence longer than this is an outage (the machine's own noise stays
/// well below: 150 ms at most seen with nothing failing).
const OUTAGE: Duration = Duration::from_millis(500);

/// The time from `event` until `pair`'s messages arrived again after the
/// longest silence that ended after it (0 when there was no outage).
fn recovery(r: &Pair, event: Instant) -> Duration {
    match r.gap_end {
        Some(end) if r.max_gap > OUTAGE && end > event => end - event,
        _ => Duration::ZERO,
    }
}

/// The NATS server (index) holding node `node`'s publishing connection:
/// the connection named after the node that has plain subscriptions.
fn server_of(nats: &Nats, node: &str) -> Option<usize> {
    (1..=nats.len()).find(|&i| {
        portcullis_tests::nats::http_json(nats.monitor(i), "/connz?subs=1").is_some_and(|v| {
            v["connections"].as_array().is_some_and(|cs| {
                cs.iter().any(|c| c["name"].as_str() == Some(node) && c["subscriptions"].as_u64().unwrap_or(0) > 0)
            })
        })
    })
}

/// A `$SYS` counter of a node, or "?" when it does not answer.
async fn counter(addr: SocketAddr, suffix: &str) -> String {
    tokio::time::timeout(Duration::from_secs(6), sys_fresh(addr, suffix, Duration::from_secs(5)))
        .await
        .unwrap_or_else(|_| "?".into())
}

/// Waits (bounded by [`RECOVERY_BOUND`]) until a message published on
/// the node at `from` reaches a subscriber on the node at `to` (fresh
/// clients on a topic outside the load): how long that took.
async fn await_cross(from: SocketAddr, to: SocketAddr, tag: &str) -> Duration {
    let start = Instant::now();
    let topic = format!("probe/{tag}");
    let mut s = v5_admitted(to, &format!("probe-s-{tag}"), start, tag).await;
    subscribe(&mut s, 1, &[(topic.as_str(), Q0)]).await;
    let mut p = v5_admitted(from, &format!("probe-p-{tag}"), start, tag).await;
    loop {
        assert!(start.elapsed() < RECOVERY_BOUND, "no message crossed {tag} within {RECOVERY_BOUND:?}");
        pub_simple(&mut p, &topic, Q0, 0, b"probe", false).await;
        if let Ok(Some(Packet::Publish(_))) = s.recv_timeout(Duration::from_millis(50)).await {
            return start.elapsed();
        }
    }
}

/// A v5 client on `addr`, CONNECTing again (bounded by [`RECOVERY_BOUND`]
/// from `start`) while the node answers "server unavailable": a node whose
/// NATS server is cut off or just back cannot write the session registry
/// for a while, and refuses CONNECTs until it can.
async fn v5_admitted(addr: SocketAddr, id: &str, start: Instant, tag: &str) -> Raw {
    loop {
        // A CONNACK may take more than the kit's 5 s read timeout here: the
        // registry retries each read and write for up to request_timeout.
        let mut raw = Raw::connect(addr).await;
        raw.version = portcullis_core::codec::ProtocolVersion::V5;
        let connect = connect_packet(portcullis_core::codec::ProtocolVersion::V5, id, true);
        raw.send_packet(&Packet::Connect(Box::new(connect))).await;
        let ack = match raw.recv_timeout(Duration::from_secs(30)).await {
            Ok(Some(Packet::ConnAck(a))) => a,
            other => panic!("{tag}: expected a CONNACK for {id} within 30 s, got {other:?}"),
        };
        if ack.code == 0 {
            return raw;
        }
        assert_eq!(ack.code, 0x88, "{tag}: CONNACK {id}: {ack:?}");
        assert!(start.elapsed() < RECOVERY_BOUND, "{tag}: {id} refused as unavailable for {RECOVERY_BOUND:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A node's non-zero drop counters (`$SYS/.../metrics/messages/dropped/+`
/// and `$SYS/.../cluster/dropped/+`), read for 2.5 s (the `$SYS` interval
/// is 1 s): "reason=count" pairs.
async fn drops(addr: SocketAddr, id: &str) -> Vec<String> {
    let mut raw = v5(addr, &format!("drops-{id}")).await;
    subscribe(
        &mut raw,
        1,
        &[("$SYS/brokers/+/metrics/messages/dropped/+", Q0), ("$SYS/brokers/+/cluster/dropped/+", Q0)],
    )
    .await;
    let mut seen: HashMap<String, String> = HashMap::new();
    for p in collect(&mut raw, Duration::from_millis(2500)).await {
        if let Packet::Publish(p) = p {
            let what = p.topic.splitn(4, '/').nth(3).unwrap_or_default().to_string();
            seen.insert(what, text(&p.payload));
        }
    }
    let mut out = vec![format!("{} counters read", seen.len())];
    out.extend(seen.into_iter().filter(|(_, v)| v != "0").map(|(k, v)| format!("{k}={v}")));
    out[1..].sort();
    out
}

/// Prints what server `i` logged about its routes and clients since
/// line `from` (at most 12 lines): why a connection closed and when.
fn print_nats_log(case: &str, nats: &Nats, i: usize, from: usize) {
    let keys = ["Stale", "Slow", "losed", "Error", "deadline", "Reconnect", "route connection"];
    for line in nats.log(i).lines().skip(from).filter(|l| keys.iter().any(|k| l.contains(k))).take(12) {
        println!("cluster-failure: {case}: NATS {} log: {line}", nats.name(i));
    }
}

/// Lines in each server's log so far.
fn log_lines(nats: &Nats) -> Vec<usize> {
    (1..=nats.len()).map(|i| nats.log(i).lines().count()).collect()
}

// ---------------------------------------------------------------------------

/// Node A is SIGKILLed while A and B publish (QoS 1) to subscribers on B
/// and C. B → C goes on without a loss; A's publisher sees its connection
/// drop; what A lost was in flight at the kill. A restarted on its data
/// directory rejoins: its messages reach C, B's reach a new subscriber on
/// A, and nothing they send after that is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_a_broker_node_under_load() {
    let case = "broker SIGKILL";
    let Some(nats) = block_in_place(|| Nats::start(3)) else { return };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let mut a = start_node(1, &[nats.url(1)], dirs[0].path());
    let b = start_node(2, &[nats.url(2)], dirs[1].path());
    let c = start_node(3, &[nats.url(3)], dirs[2].path());

    let mut subs = vec![load_subscriber(b.addr, "sb").await, load_subscriber(c.addr, "sc").await];
    let mut pubs = vec![v5(a.addr, "pa").await, v5(b.addr, "pb").await];
    await_routes(&mut pubs, &mut subs).await;
    let mut load = Load::new();
    let (pb, pa) = (pubs.pop().expect("pb"), pubs.pop().expect("pa"));
    load.publisher(pa, "a");
    load.publisher(pb, "b");
    let sc = subs.pop().expect("sc");
    load.subscriber(subs.pop().expect("sb"), "b");
    load.subscriber(sc, "c");
    run_for(Duration::from_secs(3)).await;

    let killed = Instant::now();
    let status = block_in_place(|| a.signal_and_wait("KILL", Duration::from_secs(10)));
    assert!(status.is_some(), "node A did not die of SIGKILL");
    run_for(Duration::from_secs(3)).await;

    // Restart on the same data directory; a publisher and a subscriber on it.
    let restarting = Instant::now();
    let a2 = start_node(1, &[nats.url(1)], dirs[0].path());
    let ready = Instant::now();
    load.subscriber(load_subscriber(a2.addr, "sa2").await, "a2");
    load.publisher(v5(a2.addr, "pa2").await, "a2");
    run_for(Duration::from_secs(5)).await;

    let (pubs, subs) = load.finish().await;
    let pairs = analyse(case, &pubs, &subs, killed);

    let pa = find(&pubs, |p| p.name == "a", "publisher a");
    let dropped = pa.closed_at.map(|t| t.saturating_duration_since(killed));
    assert!(
        dropped.is_some_and(|d| d < Duration::from_secs(5)),
        "{case}: A's client did not see its connection drop: {dropped:?}"
    );
    // B's messages do not depend on A.
    assert_lossless(case, &pairs, "b", "c");
    assert_lossless(case, &pairs, "b", "b");
    // A lost only what was in flight when it died (QoS 1 acknowledged by A
    // means A's own subscribers have it; at most once between nodes).
    for s in ["b", "c"] {
        assert_loss_within(case, &pairs, "a", s, killed - Duration::from_secs(1), killed + Duration::from_secs(1));
    }
    // A's restart: time to the first cross-node message each way.
    let first = |publ: &str, sub: &str| {
        let r = &pairs[&(publ.to_string(), sub.to_string())];
        r.deliveries.iter().map(|(_, at)| *at).min().map(|t| t.saturating_duration_since(ready))
    };
    let (a_to_c, b_to_a) = (first("a2", "c"), first("b", "a2"));
    println!(
        "cluster-failure: {case}: A's client saw the drop after {} ms; A restarted in {} ms (process start to \
         connected to NATS); then first message A→C after {:?} ms, B→A after {:?} ms",
        ms(dropped.unwrap_or_default()),
        ms(ready - restarting),
        a_to_c.map(ms),
        b_to_a.map(ms)
    );
    assert!(a_to_c.is_some_and(|d| d < RECOVERY_BOUND), "{case}: restarted A's messages never reached C");
    assert!(b_to_a.is_some_and(|d| d < RECOVERY_BOUND), "{case}: B's messages never reached restarted A");
    // Once delivery is back, nothing is lost either way.
    let from = ready + a_to_c.unwrap_or_default().max(b_to_a.unwrap_or_default()) + Duration::from_secs(1);
    assert_flows_from(case, &pairs, "a2", "c", from);
    assert_flows_from(case, &pairs, "b", "a2", from);
    drop((a2, b, c));
    drop(nats);
}

/// Publishers on nodes 1 and 2, subscribers on 1, 2 and 3, every node
/// with all three NATS servers in its list; the server holding node 1's
/// publishing connection is SIGKILLed, and restarted 8 s later.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_of_the_nats_server_a_node_uses() {
    nats_server_fault("NATS SIGKILL", Fault::Kill).await;
}

/// As the SIGKILL case, with the server frozen (SIGSTOP) for 5 s, then
/// resumed (SIGCONT): a stalled, not dead, server; shorter than
/// nats-server's write deadline (10 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigstop_of_the_nats_server_a_node_uses() {
    nats_server_fault("NATS SIGSTOP 5s", Fault::Stop(Duration::from_secs(5))).await;
}

/// As the SIGSTOP case for 15 s: longer than nats-server's write deadline
/// (10 s), so the other servers give up on the frozen one's routes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn long_sigstop_of_the_nats_server_a_node_uses() {
    nats_server_fault("NATS SIGSTOP 15s", Fault::Stop(Duration::from_secs(15))).await;
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill,
    Stop(Duration),
}

async fn nats_server_fault(case: &str, fault: Fault) {
    let Some(mut nats) = block_in_place(|| Nats::start(3)) else { return };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let urls = nats.urls();
    let nodes: Vec<Broker> = (1..=3).map(|i| start_node(i, &urls, dirs[i - 1].path())).collect();
    let mut subs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        subs.push(load_subscriber(n.addr, &format!("s{}", i + 1)).await);
    }
    let mut pubs = vec![v5(nodes[0].addr, "p1").await, v5(nodes[1].addr, "p2").await];
    await_routes(&mut pubs, &mut subs).await;
    let victim = block_in_place(|| server_of(&nats, "n1")).expect("node 1's NATS connection");
    let others: Vec<String> = (1..=3)
        .filter_map(|n| block_in_place(|| server_of(&nats, &format!("n{n}"))).map(|s| format!("n{n}@{}", nats.name(s))))
        .collect();
    println!("cluster-failure: {case}: victim NATS server {} (nodes on: {others:?})", nats.name(victim));

    let mut load = Load::new();
    for (k, p) in pubs.into_iter().enumerate() {
        load.publisher(p, &format!("n{}", k + 1));
    }
    for (k, s) in subs.into_iter().enumerate() {
        load.subscriber(s, &format!("n{}", k + 1));
    }
    run_for(Duration::from_secs(3)).await;

    let marks = log_lines(&nats);
    let event = Instant::now();
    let outage = match fault {
        Fault::Kill => {
            block_in_place(|| nats.kill(victim));
            Duration::from_secs(8)
        }
        Fault::Stop(d) => {
            block_in_place(|| nats.stop(victim));
            d
        }
    };
    run_for(outage).await;
    let back = Instant::now();
    match fault {
        Fault::Kill => block_in_place(|| nats.restart(victim)),
        Fault::Stop(_) => block_in_place(|| nats.cont(victim)),
    }
    let back_ready = Instant::now();
    // Delivery back (bounded) from and to node 1, then a tail of normal traffic.
    await_cross(nodes[0].addr, nodes[2].addr, "n1-n3").await;
    await_cross(nodes[1].addr, nodes[0].addr, "n2-n1").await;
    let flowing = Instant::now();
    let end = flowing + Duration::from_secs(6);
    run_for(end - Instant::now()).await;

    let dropped = counter(nodes[0].addr, "cluster/dropped").await;
    let mut slow_counted = 0u64;
    for (i, n) in nodes.iter().enumerate() {
        // async-nats logs a subscription buffer overflow at debug level
        // only (PORTCULLIS_TEST_LOG=info,async_nats=debug shows them).
        let slow = n.log().matches("slow consumer").count();
        let counters = drops(n.addr, &format!("n{i}")).await;
        slow_counted += counters
            .iter()
            .filter_map(|c| c.strip_prefix("cluster/dropped/slow_consumer="))
            .filter_map(|v| v.parse::<u64>().ok())
            .sum::<u64>();
        println!(
            "cluster-failure: {case}: node n{} drop counters: {counters:?}, async-nats slow-consumer lines: {slow}",
            i + 1
        );
    }
    let where_now = block_in_place(|| server_of(&nats, "n1")).map(|s| nats.name(s).to_string());
    let (pubs, subs) = load.finish().await;
    let pairs = analyse(case, &pubs, &subs, event);
    let mut worst = Duration::ZERO;
    let mut lost_total = 0;
    for ((p, s), r) in &pairs {
        if p != s {
            worst = worst.max(recovery(r, event));
            lost_total += r.lost.len();
        }
    }
    println!(
        "cluster-failure: {case}: server {} {} for {} ms (back and ready after {} ms); cross-node lost {lost_total}, \
         recovery {} ms after the fault (longest pair); node 1 counted {dropped} dropped, is now on {where_now:?}",
        nats.name(victim),
        if fault == Fault::Kill { "killed" } else { "stopped" },
        ms(back - event),
        ms(back_ready - event),
        ms(worst)
    );
    for (i, from) in marks.iter().enumerate() {
        print_nats_log(case, &nats, i + 1, *from);
    }
    // A node's own subscribers never depend on NATS.
    assert_lossless(case, &pairs, "n1", "n1");
    assert_lossless(case, &pairs, "n2", "n2");
    // A stall's cross-node loss is the NATS client dropping the backlog
    // burst past its subscription buffers: it must show in the metrics
    // (`cluster_dropped{reason="slow_consumer"}`, a lower bound), not only
    // in async-nats' debug log.
    if matches!(fault, Fault::Stop(_)) && lost_total > 0 {
        assert!(slow_counted > 0, "{case}: {lost_total} messages lost across nodes, none counted as slow_consumer");
    }
    // Cross-node: losses only inside the failure; after it, flowing again.
    let window_end = flowing + Duration::from_secs(1);
    let flow_from = window_end;
    for (p, s) in [("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n2", "n3")] {
        assert_loss_within(case, &pairs, p, s, event - Duration::from_millis(500), window_end);
        assert_flows_from(case, &pairs, p, s, flow_from);
    }
    if fault == Fault::Kill {
        // Node 1 moved to another server of its list while the victim was
        // down: its messages reached node 3 before the restart.
        let r = &pairs[&("n1".to_string(), "n3".to_string())];
        let during = r.deliveries.iter().filter(|(sent, at)| *sent > event && *at < back).count();
        println!("cluster-failure: {case}: n1->n3 delivered {during} messages sent after the kill before the restart");
        assert!(
            during > 0,
            "{case}: node 1 did not reconnect to another NATS server while {} was down",
            nats.name(victim)
        );
    }
    drop(nodes);
    drop(nats);
}

/// Three NATS servers in network namespaces; node i on server i only.
/// Server 3's route link goes down for a while (a partition: its clients stay
/// connected to it), then comes back. Nodes 1 and 2 keep exchanging
/// messages without a loss; node 3's subscribers miss (or get late) what
/// nodes 1 and 2 publish meanwhile, and node 3's publishes do not reach
/// them; after the heal cross-node delivery comes back.
///
/// 15 s is longer than nats-server's route write deadline (10 s): the
/// majority servers close their routes to the isolated one as slow
/// consumers, and what they held for it is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn partition_of_one_nats_server() {
    partition("partition 15s", Duration::from_secs(15)).await;
}

/// As [`partition_of_one_nats_server`] with a 4 s cut, shorter than the
/// routes' write deadline: the routes survive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn short_partition_of_one_nats_server() {
    partition("partition 4s", Duration::from_secs(4)).await;
}

async fn partition(case: &str, length: Duration) {
    let Some(nats) = block_in_place(|| Nats::start_netns(3)) else { return };
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().expect("tempdir")).collect();
    let nodes: Vec<Broker> = (1..=3).map(|i| start_node(i, &[nats.url(i)], dirs[i - 1].path())).collect();
    let mut subs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        subs.push(load_subscriber(n.addr, &format!("s{}", i + 1)).await);
    }
    let mut pubs = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        pubs.push(v5(n.addr, &format!("p{}", i + 1)).await);
    }
    await_routes(&mut pubs, &mut subs).await;
    let mut load = Load::new();
    for (k, p) in pubs.into_iter().enumerate() {
        load.publisher(p, &format!("n{}", k + 1));
    }
    for (k, s) in subs.into_iter().enumerate() {
        load.subscriber(s, &format!("n{}", k + 1));
    }
    run_for(Duration::from_secs(3)).await;

    let marks = log_lines(&nats);
    let cut = Instant::now();
    block_in_place(|| nats.isolate(3));
    run_for(length).await;
    let healed = Instant::now();
    block_in_place(|| nats.heal(3));
    // Delivery back both ways (bounded), then a tail of normal traffic.
    let there = await_cross(nodes[0].addr, nodes[2].addr, "n1-n3").await;
    let back = await_cross(nodes[2].addr, nodes[0].addr, "n3-n1").await;
    let flowing = Instant::now();
    println!(
        "cluster-failure: {case}: fresh probes crossed n1->n3 {} ms after the heal, then n3->n1 in {} ms",
        ms(there),
        ms(back)
    );
    run_for(Duration::from_secs(6)).await;

    let (pubs, subs) = load.finish().await;
    let pairs = analyse(case, &pubs, &subs, cut);
    // Majority side and local delivery: no loss.
    for (p, s) in [("n1", "n2"), ("n2", "n1"), ("n1", "n1"), ("n2", "n2"), ("n3", "n3")] {
        assert_lossless(case, &pairs, p, s);
    }
    // Across the cut: losses only inside the partition (and the time the
    // routes take to come back), and delivery back within the bound.
    let mut report = Vec::new();
    for (p, s) in [("n1", "n3"), ("n2", "n3"), ("n3", "n1"), ("n3", "n2")] {
        let r = &pairs[&(p.to_string(), s.to_string())];
        assert_loss_within(case, &pairs, p, s, cut - Duration::from_millis(500), healed + RECOVERY_BOUND);
        // The first message sent after the heal that arrives, and when.
        let resumed = r.deliveries.iter().filter(|(sent, _)| *sent >= healed).map(|(_, at)| *at).min();
        let resumed_after = resumed.map(|t| t.saturating_duration_since(healed));
        assert!(resumed_after.is_some_and(|d| d < RECOVERY_BOUND), "{case}: {p}->{s} did not come back after the heal");
        let lost_during = r.lost.len();
        report.push(format!(
            "{p}->{s} lost {lost_during}, resumed {} ms after heal, recovery {} ms after the cut",
            ms(resumed_after.unwrap_or_default()),
            ms(recovery(r, cut))
        ));
        // Tail: everything sent once it came back (and 1 s more) arrived.
        assert_flows_from(case, &pairs, p, s, flowing + Duration::from_secs(1));
    }
    println!("cluster-failure: {case}: cut {} ms; {}", ms(healed - cut), report.join("; "));
    for (i, from) in marks.iter().enumerate() {
        print_nats_log(case, &nats, i + 1, *from);
    }
    drop(nodes);
    drop(nats);
}
