//! The storage-engine measurements behind the store's choice of engine
//! (README.md, "Choosing the engine"). Prints figures; asserts nothing.
//!
//! ```text
//! cargo bench -p portcullis-store --features bench-fjall --bench engines -- [engines] [group] [recovery] [startup]
//! ```
//! (no section named: `engines group recovery`). Runs in a temporary
//! directory under `STORE_BENCH_DIR` (default: the system temp dir),
//! which must be on the disk to measure: tmpfs makes every fsync free.
//!
//! * `engines` — the persistent QoS 1 workload on each engine, written
//!   directly: 256 B messages to 1 and to 100 sessions, each message one
//!   change set `MessagePut + QueuePush × sessions`, then per session
//!   `QueuePop + InflightPut`, then `InflightDelete` (the PUBACK); change
//!   sets committed in groups of exactly 1, 10 and 100 per atomic write +
//!   fsync. Commits/s, fsyncs/s (one per commit: checked with strace, see
//!   the README), bytes written per message (`/proc/self/io`
//!   write_bytes), p99 commit latency.
//! * `group` — the same lifecycle through [`Store`] (writer thread, group
//!   commit) with 1, 10, 100 concurrent committers, one session each.
//! * `writer` — the writer's cost per delivery when it is the bottleneck
//!   (the broker's 10 → 10 persistent QoS 1 workload, issue 14): 10
//!   sessions, windows of 64 messages, each message one commit per session
//!   (`MessagePut` with the first `QueuePush`), then per delivery a
//!   dropped commit `QueuePop + InflightPut` and one `InflightDelete`, as
//!   the broker sends them; only the pushes are awaited, at the end of each
//!   window (so groups net out: no fsync). Deliveries/s and the writer
//!   thread's CPU per delivery (`/proc/self/task/*/stat`).
//! * `recovery` — reopening each engine with 100,000 queued messages in
//!   1,000 sessions.
//! * `startup` — the store (redb) with 100,000 sessions and 1,000,000
//!   queued messages (about 400 MB): time to open and recover.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use portcullis_core::codec::QoS;
use portcullis_core::durable::{Change, InflightState, MessageId, SessionStore};
use portcullis_core::message::Message;
use portcullis_core::owner::SessionOwner;
use portcullis_core::topic::TopicName;
use portcullis_store::bench_support::EngineBench;
use portcullis_store::store::EngineKind;
use portcullis_store::{Store, StoreConfig};

/// Each measured run stops after this long (rates are over what ran).
const RUN_FOR: Duration = Duration::from_secs(4);

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn message() -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new("bench/persistent/qos1").expect("topic"),
        payload: Bytes::from(vec![0x5a; 256]),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
        publisher: Some(Arc::from("publisher")),
        expires_at: None,
    })
}

fn session_put(cid: &Arc<str>) -> Change {
    Change::SessionPut {
        client_id: cid.clone(),
        owner: SessionOwner::User(Arc::from("bench")),
        expiry_secs: Some(3600),
        detached_at_ms: None,
    }
}

fn clients(n: usize) -> Vec<Arc<str>> {
    (0..n).map(|i| Arc::from(format!("client-{i:06}").as_str())).collect()
}

/// The change sets of message `i` to `sessions`, in order.
fn lifecycle(i: u64, msg: &Arc<Message>, sessions: &[Arc<str>]) -> Vec<Vec<Change>> {
    let id = MessageId(i);
    let mut sets = Vec::with_capacity(1 + 2 * sessions.len());
    let mut first = vec![Change::MessagePut { id, msg: msg.clone() }];
    for c in sessions {
        first.push(Change::QueuePush {
            client_id: c.clone(),
            seq: i,
            id,
            qos: 1,
            retain: false,
            subscription_ids: Vec::new(),
        });
    }
    sets.push(first);
    let packet_id = (i % 65_535) as u16 + 1;
    for c in sessions {
        sets.push(vec![
            Change::QueuePop { client_id: c.clone(), seq: i },
            Change::InflightPut {
                client_id: c.clone(),
                packet_id,
                id,
                qos: 1,
                retain: false,
                state: InflightState::Published,
            },
        ]);
    }
    for c in sessions {
        sets.push(vec![Change::InflightDelete { client_id: c.clone(), packet_id }]);
    }
    sets
}

fn p99(mut v: Vec<Duration>) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v.sort();
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

fn kinds() -> Vec<(&'static str, EngineKind)> {
    #[allow(unused_mut)]
    let mut k = vec![("redb", EngineKind::Redb)];
    #[cfg(feature = "bench-fjall")]
    k.push(("fjall", EngineKind::Fjall));
    k
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn engines(base: &Path) {
    println!("== engines: persistent QoS 1, 256 B, sets per atomic write + fsync (each run ≤ {RUN_FOR:?})");
    println!(
        "{:<6} {:>8} {:>5} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "engine", "sessions", "group", "commits/s", "sets/s", "msgs/s", "bytes/msg", "p99 ms"
    );
    let msg = message();
    for (name, kind) in kinds() {
        for fanout in [1usize, 100] {
            for group in [1usize, 10, 100] {
                let dir = fresh(base, &format!("{name}-{fanout}-{group}"));
                let mut e = EngineBench::open(kind, &dir).expect("open");
                let sessions = clients(fanout);
                e.commit(&[sessions.iter().map(session_put).collect()]).expect("sessions");
                let (start, bytes0) = (Instant::now(), write_bytes());
                let (mut sets_done, mut commits, mut lat) = (0usize, 0usize, Vec::new());
                let mut pending: Vec<Vec<Change>> = Vec::new();
                let mut i = 0u64;
                'run: while start.elapsed() < RUN_FOR {
                    pending.extend(lifecycle(i, &msg, &sessions));
                    i += 1;
                    while pending.len() >= group {
                        let chunk: Vec<_> = pending.drain(..group).collect();
                        let t = Instant::now();
                        e.commit(&chunk).expect("commit");
                        lat.push(t.elapsed());
                        commits += 1;
                        sets_done += chunk.len();
                        if start.elapsed() >= RUN_FOR {
                            break 'run;
                        }
                    }
                }
                let secs = start.elapsed().as_secs_f64();
                let bytes = write_bytes() - bytes0;
                let sets_per_msg = (1 + 2 * fanout) as f64;
                let msgs = sets_done as f64 / sets_per_msg;
                println!(
                    "{:<6} {:>8} {:>5} {:>10.0} {:>10.0} {:>10.1} {:>12.0} {:>10.2}",
                    name,
                    fanout,
                    group,
                    commits as f64 / secs,
                    sets_done as f64 / secs,
                    msgs / secs,
                    bytes as f64 / msgs.max(1e-9),
                    p99(lat).as_secs_f64() * 1e3
                );
                drop(e);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
    }
}

fn group(base: &Path) {
    println!("== group commit through Store (writer thread), one session per committer, each run ≤ {RUN_FOR:?}");
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>12} {:>12} {:>10}",
        "engine", "committers", "commits/s", "fsyncs/s", "batches/sync", "bytes/msg", "p99 ms"
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let msg = message();
    for (name, kind) in kinds() {
        for committers in [1usize, 10, 100] {
            let dir = fresh(base, &format!("group-{name}-{committers}"));
            let store = Arc::new(
                Store::open_with(StoreConfig::new(&dir), kind, &portcullis_store::format::FORMAT).expect("open"),
            );
            store.recover().expect("recover");
            let sessions = clients(committers);
            rt.block_on(store.commit(sessions.iter().map(session_put).collect())).expect("sessions");
            let (s0, bytes0, start) = (store.stats(), write_bytes(), Instant::now());
            let lat = rt.block_on(async {
                let mut tasks = Vec::new();
                for (n, c) in sessions.iter().enumerate() {
                    let (store, c, msg) = (store.clone(), c.clone(), msg.clone());
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::new();
                        let mut i = 0u64;
                        while start.elapsed() < RUN_FOR {
                            let id = (n as u64) << 40 | i;
                            for set in lifecycle(id, &msg, std::slice::from_ref(&c)) {
                                let t = Instant::now();
                                store.commit(set).await.expect("commit");
                                lat.push(t.elapsed());
                            }
                            i += 1;
                        }
                        lat
                    }));
                }
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.expect("task"));
                }
                all
            });
            let secs = start.elapsed().as_secs_f64();
            let s = store.stats();
            let (batches, groups) = (s.batches - s0.batches, s.groups - s0.groups);
            let msgs = batches as f64 / 3.0;
            println!(
                "{:<6} {:>10} {:>10.0} {:>10.0} {:>12.1} {:>12.0} {:>10.2}",
                name,
                committers,
                batches as f64 / secs,
                groups as f64 / secs,
                batches as f64 / groups.max(1) as f64,
                (write_bytes() - bytes0) as f64 / msgs.max(1e-9),
                p99(lat).as_secs_f64() * 1e3
            );
            drop(store);
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// CPU seconds (user + system) of this process's thread named `name`.
fn thread_cpu_s(name: &str) -> f64 {
    let mut total = 0.0;
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return 0.0 };
    for t in dir.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the command (which is in parentheses): utime and
        // stime are the 12th and 13th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        total += ticks / 100.0;
    }
    total
}

fn writer(base: &Path) {
    const SESSIONS: usize = 10;
    const WINDOW: u64 = 64;
    println!("== writer: {SESSIONS} sessions, windows of {WINDOW} messages, each run {RUN_FOR:?}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let dir = fresh(base, "writer");
    let store = Arc::new(Store::open(StoreConfig::new(&dir)).expect("open"));
    store.recover().expect("recover");
    let sessions = clients(SESSIONS);
    rt.block_on(store.commit(sessions.iter().map(session_put).collect())).expect("sessions");
    let msg = message();
    let (s0, cpu0, start) = (store.stats(), thread_cpu_s("store-writer"), Instant::now());
    let mut deliveries = 0u64;
    let mut next_id = 0u64;
    rt.block_on(async {
        while start.elapsed() < RUN_FOR {
            let mut waits = Vec::new();
            let first = next_id;
            for i in first..first + WINDOW {
                let id = MessageId(i);
                for (n, c) in sessions.iter().enumerate() {
                    let mut set = Vec::with_capacity(2);
                    if n == 0 {
                        set.push(Change::MessagePut { id, msg: msg.clone() });
                    }
                    set.push(Change::QueuePush {
                        client_id: c.clone(),
                        seq: i,
                        id,
                        qos: 1,
                        retain: false,
                        subscription_ids: Vec::new(),
                    });
                    waits.push(store.commit(set));
                }
            }
            for i in first..first + WINDOW {
                let packet_id = (i % 65_535) as u16 + 1;
                for c in &sessions {
                    drop(store.commit(vec![
                        Change::QueuePop { client_id: c.clone(), seq: i },
                        Change::InflightPut {
                            client_id: c.clone(),
                            packet_id,
                            id: MessageId(i),
                            qos: 1,
                            retain: false,
                            state: InflightState::Published,
                        },
                    ]));
                    drop(store.commit(vec![Change::InflightDelete { client_id: c.clone(), packet_id }]));
                }
            }
            for w in waits {
                w.await.expect("commit");
            }
            next_id += WINDOW;
            deliveries += WINDOW * SESSIONS as u64;
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let (s, cpu) = (store.stats(), thread_cpu_s("store-writer") - cpu0);
    println!(
        "deliveries/s {:>10.0}  changes/s {:>10.0}  writer CPU µs/delivery {:>6.2}  writer CPU {:>4.0} %  groups {} (fsyncs {}, empty {})",
        deliveries as f64 / secs,
        (s.changes - s0.changes) as f64 / secs,
        cpu * 1e6 / deliveries.max(1) as f64,
        cpu * 100.0 / secs,
        (s.groups - s0.groups) + (s.empty_groups - s0.empty_groups),
        s.groups - s0.groups,
        s.empty_groups - s0.empty_groups,
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fills a store with `sessions` sessions and `messages` queued messages
/// (round robin), in atomic writes of `chunk` messages.
fn fill(e: &mut EngineBench, sessions: usize, messages: u64, chunk: u64) {
    let msg = message();
    let ids = clients(sessions);
    for part in ids.chunks(10_000) {
        e.commit(&[part.iter().map(session_put).collect()]).expect("sessions");
    }
    let mut i = 0u64;
    while i < messages {
        let mut set = Vec::with_capacity(2 * chunk as usize);
        for j in i..(i + chunk).min(messages) {
            let c = &ids[(j % sessions as u64) as usize];
            set.push(Change::MessagePut { id: MessageId(j), msg: msg.clone() });
            set.push(Change::QueuePush {
                client_id: c.clone(),
                seq: j,
                id: MessageId(j),
                qos: 1,
                retain: false,
                subscription_ids: Vec::new(),
            });
        }
        e.commit(&[set]).expect("fill");
        i += chunk;
    }
}

fn dir_size(p: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(p) else { return std::fs::metadata(p).map_or(0, |m| m.len()) };
    rd.flatten().map(|e| dir_size(&e.path())).sum()
}

fn recovery(base: &Path) {
    println!("== recovery: 1,000 sessions, 100,000 queued messages of 256 B");
    for (name, kind) in kinds() {
        let dir = fresh(base, &format!("recovery-{name}"));
        let mut e = EngineBench::open(kind, &dir).expect("open");
        let t = Instant::now();
        fill(&mut e, 1_000, 100_000, 1_000);
        let fill_time = t.elapsed();
        drop(e);
        let t = Instant::now();
        let e = EngineBench::open(kind, &dir).expect("reopen");
        let opened = t.elapsed();
        let r = e.recover().expect("recover");
        let total = t.elapsed();
        let queued: usize = r.sessions.iter().map(|s| s.queue.len()).sum();
        println!(
            "{name:<6} fill {:.2} s; open {:.0} ms, open + recover {:.0} ms ({} sessions, {queued} queued); {} MB on disk",
            fill_time.as_secs_f64(),
            opened.as_secs_f64() * 1e3,
            total.as_secs_f64() * 1e3,
            r.sessions.len(),
            dir_size(&dir) / 1_000_000
        );
        drop(e);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn startup(base: &Path) {
    println!("== startup: the store (redb) with 100,000 sessions and 1,000,000 queued messages of 256 B");
    let dir = fresh(base, "startup");
    {
        let mut e = EngineBench::open(EngineKind::Redb, &dir).expect("open");
        let t = Instant::now();
        fill(&mut e, 100_000, 1_000_000, 10_000);
        println!("fill {:.1} s, {} MB on disk", t.elapsed().as_secs_f64(), dir_size(&dir) / 1_000_000);
    }
    for verify in [false, true] {
        let t = Instant::now();
        let mut cfg = StoreConfig::new(&dir);
        cfg.verify_on_open = verify;
        let store = Store::open(cfg).expect("open");
        let opened = t.elapsed();
        let r = store.recover().expect("recover");
        let total = t.elapsed();
        let queued: usize = r.sessions.iter().map(|s| s.queue.len()).sum();
        println!(
            "verify_on_open={verify}: open {:.2} s, open + recover {:.2} s ({} sessions, {queued} queued)",
            opened.as_secs_f64(),
            total.as_secs_f64(),
            r.sessions.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let want = |s: &str| if args.is_empty() { s != "startup" && s != "writer" } else { args.iter().any(|a| a == s) };
    let base = std::env::var_os("STORE_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let base = base.join(format!("portcullis-store-bench-{}", std::process::id()));
    std::fs::create_dir_all(&base).expect("bench dir");
    if want("engines") {
        engines(&base);
    }
    if want("group") {
        group(&base);
    }
    if want("writer") {
        writer(&base);
    }
    if want("recovery") {
        recovery(&base);
    }
    if want("startup") {
        startup(&base);
    }
    let _ = std::fs::remove_dir_all(&base);
}
