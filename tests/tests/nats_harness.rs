//! The NATS cluster harness (tests/src/nats.rs) proven with the official
//! client (async-nats) against three real nats-server processes: core
//! publish/subscribe across servers, queue groups, JetStream KV with three
//! replicas (put, get, compare-and-set, watch), a server killed and
//! restarted, a server frozen, and a partition made with network
//! namespaces. Latencies and recovery times are printed for the docs, not
//! asserted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv};
use async_nats::{Client, ConnectOptions};
use bytes::Bytes;
use futures::StreamExt;
use portcullis_tests::nats::Nats;

/// A client of exactly this server: it does not follow the other servers
/// the cluster announces, so a test knows which server it talks to.
async fn connect(url: &str) -> Client {
    ConnectOptions::new()
        .ignore_discovered_servers()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"))
}

/// A JetStream context whose requests give up after `timeout`.
fn js(client: &Client, timeout: Duration) -> jetstream::Context {
    let mut js = jetstream::new(client.clone());
    js.set_timeout(timeout);
    js
}

/// A KV bucket with three replicas on durable storage, made through `client`.
async fn bucket(client: &Client, name: &str) -> kv::Store {
    js(client, Duration::from_secs(5))
        .create_key_value(kv::Config {
            bucket: name.to_string(),
            history: 1,
            num_replicas: 3,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("create bucket {name}: {e}"))
}

/// The same bucket through another client: retried for up to 10 s, since
/// a bucket just made through another server may not be known to this
/// one's JetStream yet (each failure is printed).
async fn open(client: &Client, name: &str, timeout: Duration) -> kv::Store {
    let js = js(client, timeout);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        match js.get_key_value(name).await {
            Ok(kv) => return kv,
            Err(e) if Instant::now() < end => eprintln!("open bucket {name}: {e} (retrying)"),
            Err(e) => panic!("open bucket {name}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn summary(mut v: Vec<Duration>) -> String {
    v.sort();
    format!("n={} p50={:?} p99={:?} max={:?}", v.len(), percentile(&v, 0.5), percentile(&v, 0.99), v[v.len() - 1])
}

/// Puts `key` through `kv` until one succeeds (each attempt bounded by the
/// store's request timeout), for at most `limit`: the time to the first
/// success, or `None`.
async fn put_until_ok(kv: &kv::Store, key: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut attempt = 0u32;
    while start.elapsed() < limit {
        attempt += 1;
        if kv.put(key, Bytes::from(format!("try-{attempt}"))).await.is_ok() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Waits until every running server in `servers` stores as many entries
/// of `stream` as server `reference` (bounded).
fn wait_caught_up(nats: &Nats, reference: usize, servers: &[usize], stream: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let want = nats.stream_last_seq(reference, stream);
        let seen: Vec<Option<u64>> = servers.iter().map(|&i| nats.stream_last_seq(i, stream)).collect();
        if want.is_some() && seen.iter().all(|s| *s == want) {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{stream}: servers {servers:?} at {seen:?}, server {reference} at {want:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_on_one_server_reaches_subscribers_on_another() {
    let Some(nats) = Nats::start(3) else { return };
    let (c1, c2, c3) = (connect(&nats.url(1)).await, connect(&nats.url(2)).await, connect(&nats.url(3)).await);

    // Subscriber on server 1, publisher on server 3: wait until the
    // subscription's interest reached server 3 (a probe gets through).
    let mut sub = c1.subscribe("lat.>").await.expect("subscribe");
    c1.flush().await.expect("flush");
    let probe_end = Instant::now() + Duration::from_secs(10);
    loop {
        c3.publish("lat.probe", Bytes::from_static(b"p")).await.expect("publish");
        if let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(100), sub.next()).await {
            break;
        }
        assert!(Instant::now() < probe_end, "server 3 never routed to server 1's subscriber");
    }

    // Ping-pong: one message at a time, publish to receive.
    let mut times = Vec::new();
    for k in 0..2000u32 {
        let payload = Bytes::from(k.to_string());
        let t = Instant::now();
        c3.publish("lat.m", payload.clone()).await.expect("publish");
        loop {
            let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
                .await
                .unwrap_or_else(|_| panic!("message {k} not received within 5 s"))
                .expect("subscription open");
            if m.subject.as_str() == "lat.m" {
                assert_eq!(m.payload, payload, "messages arrive in order");
                break;
            }
        }
        times.push(t.elapsed());
    }
    eprintln!("FIGURE cross-server publish->receive (server 3 -> server 1): {}", summary(times));

    // A queue group with one member on each server: every message to
    // exactly one member, cluster-wide.
    let mut members = Vec::new();
    for (i, c) in [(1, &c1), (2, &c2), (3, &c3)] {
        let mut s = c.queue_subscribe("jobs", "workers".to_string()).await.expect("queue subscribe");
        c.flush().await.expect("flush");
        members.push(tokio::spawn(async move {
            let mut got = Vec::new();
            // The first message within 10 s, then until 2 s of silence;
            // at most 20 s in all.
            let end = Instant::now() + Duration::from_secs(20);
            while Instant::now() < end {
                let wait = if got.is_empty() { 10 } else { 2 };
                match tokio::time::timeout(Duration::from_secs(wait), s.next()).await {
                    Ok(Some(m)) => got.push(String::from_utf8(m.payload.to_vec()).expect("utf8")),
                    _ => break,
                }
            }
            (i, got)
        }));
    }
    // Let the remote members' interest reach server 2 (a local member
    // exists there anyway, so nothing can be lost meanwhile).
    tokio::time::sleep(Duration::from_millis(300)).await;
    const JOBS: usize = 300;
    for k in 0..JOBS {
        c2.publish("jobs", Bytes::from(format!("job-{k}"))).await.expect("publish");
    }
    c2.flush().await.expect("flush");
    let mut seen: HashMap<String, Vec<usize>> = HashMap::new();
    let mut per_member = Vec::new();
    for m in members {
        let (i, got) = m.await.expect("member task");
        per_member.push((i, got.len()));
        for j in got {
            seen.entry(j).or_default().push(i);
        }
    }
    let dup: Vec<_> = seen.iter().filter(|(_, who)| who.len() > 1).collect();
    assert!(dup.is_empty(), "delivered to more than one member: {dup:?}");
    assert_eq!(seen.len(), JOBS, "every job delivered once (per member: {per_member:?})");
    eprintln!("FIGURE queue group, {JOBS} messages published on server 2, per member: {per_member:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_with_three_replicas_across_servers() {
    let Some(nats) = Nats::start(3) else { return };
    let (c1, c2, c3) = (connect(&nats.url(1)).await, connect(&nats.url(2)).await, connect(&nats.url(3)).await);
    let kv1 = bucket(&c1, "reg").await;
    let kv2 = open(&c2, "reg", Duration::from_secs(5)).await;
    let kv3 = open(&c3, "reg", Duration::from_secs(5)).await;
    assert!(nats.stream_leader(1, "KV_reg").is_some(), "the bucket's stream has a leader");

    // Put through server 2, read through server 3.
    let rev = kv2.put("client.a", Bytes::from_static(b"node-1")).await.expect("put");
    let end = Instant::now() + Duration::from_secs(5);
    while kv3.get("client.a").await.expect("get").as_deref() != Some(&b"node-1"[..]) {
        assert!(Instant::now() < end, "server 3 never served the put");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Compare-and-set: the right revision wins, a stale one fails, and
    // create refuses an existing key.
    let rev2 =
        kv1.update("client.a", Bytes::from_static(b"node-2"), rev).await.expect("update at the current revision");
    assert!(rev2 > rev);
    assert!(kv3.update("client.a", Bytes::from_static(b"node-3"), rev).await.is_err(), "a stale revision must fail");
    assert!(
        kv2.create("client.a", Bytes::from_static(b"node-3")).await.is_err(),
        "create of an existing key must fail"
    );
    let e = kv3.entry("client.a").await.expect("entry").expect("present");
    assert_eq!((e.value.as_ref(), e.revision), (&b"node-2"[..], rev2));

    // A watch through server 3 sees a put made through server 1.
    let mut watch = kv3.watch("w.>").await.expect("watch");
    kv1.put("w.x", Bytes::from_static(b"hello")).await.expect("put");
    let e = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .expect("the watch saw the put within 5 s")
        .expect("watch open")
        .expect("entry");
    assert_eq!((e.key.as_str(), e.value.as_ref()), ("w.x", &b"hello"[..]));

    // Compare-and-set time through server 2 (its own read-modify-write chain).
    let mut rev = kv2.put("cas", Bytes::from_static(b"0")).await.expect("put");
    let mut times = Vec::new();
    for k in 1..=200u32 {
        let t = Instant::now();
        rev = kv2.update("cas", Bytes::from(k.to_string()), rev).await.expect("update");
        times.push(t.elapsed());
    }
    eprintln!("FIGURE KV compare-and-set (update at revision, R3, sync always, via server 2): {}", summary(times));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_survives_sigkill_and_the_restarted_server_catches_up() {
    let Some(mut nats) = Nats::start(3) else { return };
    let c1 = connect(&nats.url(1)).await;
    bucket(&c1, "surv").await;
    let kv1 = open(&c1, "surv", Duration::from_secs(1)).await;
    kv1.put("k", Bytes::from_static(b"before")).await.expect("put");
    let leader = nats.stream_leader(1, "KV_surv").expect("leader");
    // Kill a server other than the one the client is on (the leader if it is one).
    let victim = nats.index_of(&leader).filter(|&i| i != 1).unwrap_or(3);
    nats.kill(victim);
    let took = put_until_ok(&kv1, "k", Duration::from_secs(60)).await.expect("writes resume with 2 of 3");
    eprintln!(
        "FIGURE after SIGKILL of {} (stream leader was {leader}): first KV write via n1 succeeded after {took:?}",
        nats.name(victim)
    );
    for k in 0..50u32 {
        kv1.put(format!("after.{k}"), Bytes::from(k.to_string())).await.expect("put with 2 of 3");
    }
    kv1.put("k", Bytes::from_static(b"latest")).await.expect("put");

    nats.restart(victim);
    let others: Vec<usize> = (1..=3).filter(|&i| i != victim).collect();
    let caught = wait_caught_up(&nats, others[0], &[victim], "KV_surv", Duration::from_secs(30));
    eprintln!("FIGURE {} restarted: its replica caught up {caught:?} after it was ready", nats.name(victim));
    let cv = connect(&nats.url(victim)).await;
    let kvv = open(&cv, "surv", Duration::from_secs(5)).await;
    assert_eq!(kvv.get("k").await.expect("get").as_deref(), Some(&b"latest"[..]));
    assert_eq!(kvv.get("after.49").await.expect("get").as_deref(), Some(&b"49"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_writes_resume_after_sigstop_of_the_leader() {
    let Some(nats) = Nats::start(3) else { return };
    let c1 = connect(&nats.url(1)).await;
    bucket(&c1, "frozen").await;
    let leader = nats.stream_leader(1, "KV_frozen").expect("leader");
    let frozen = nats.index_of(&leader).expect("leader index");
    let other = if frozen == 1 { 2 } else { 1 };
    let c = connect(&nats.url(other)).await;
    let kv = open(&c, "frozen", Duration::from_secs(1)).await;
    // Just after the bucket was made on server 1, `other` can still answer
    // "stream not found" (failed once in a fresh-clone CI run): the write
    // before the freeze may take a few tries.
    put_until_ok(&kv, "k", Duration::from_secs(10)).await.expect("a write before the freeze");

    nats.stop(frozen);
    let took = put_until_ok(&kv, "k", Duration::from_secs(60)).await;
    // Wake it before asserting, so a failure leaves no frozen process.
    nats.cont(frozen);
    let took = took.expect("writes resume via the other two servers");
    eprintln!(
        "FIGURE SIGSTOP of the stream leader {leader}: first KV write via {} succeeded after {took:?} \
         (1 s request timeout per attempt)",
        nats.name(other)
    );
    assert_ne!(nats.stream_leader(other, "KV_frozen").as_deref(), Some(leader.as_str()), "a new leader took over");
    kv.put("k", Bytes::from_static(b"after")).await.expect("put");
    let caught = wait_caught_up(&nats, other, &[frozen], "KV_frozen", Duration::from_secs(30));
    eprintln!("FIGURE {leader} resumed (SIGCONT): caught up after {caught:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_minority_cannot_write_and_heals() {
    let Some(nats) = Nats::start_netns(3) else { return };
    let c1 = connect(&nats.url(1)).await;
    bucket(&c1, "part").await;
    // Isolate the stream's leader: the minority is the side that led.
    let leader = nats.stream_leader(1, "KV_part").expect("leader");
    let cut = nats.index_of(&leader).expect("leader index");
    let major = if cut == 1 { 2 } else { 1 };
    let (cm, cx) = (connect(&nats.url(major)).await, connect(&nats.url(cut)).await);
    let kv_major = open(&cm, "part", Duration::from_secs(1)).await;
    let kv_minor = open(&cx, "part", Duration::from_secs(1)).await;
    let rev0 = kv_minor.put("k", Bytes::from_static(b"before")).await.expect("put before the partition");

    nats.isolate(cut);
    // The isolated server keeps its client but cannot reach a quorum:
    // compare-and-set (the registry's write) and a plain put both fail.
    for attempt in 0..3 {
        assert!(
            kv_minor.update("k", Bytes::from(format!("minority-cas-{attempt}")), rev0).await.is_err(),
            "a compare-and-set on the minority side (isolated {leader}) must fail"
        );
    }
    let took = put_until_ok(&kv_major, "k", Duration::from_secs(60)).await;
    let minority_fails_after = kv_minor.update("k", Bytes::from_static(b"minority-late"), rev0).await.is_err();
    let majority = kv_major.put("k", Bytes::from_static(b"majority")).await;
    // A plain put once the majority has moved on (the isolated server has
    // stepped down by then, or is about to).
    let plain_failed = kv_minor.put("plain", Bytes::from_static(b"minority")).await.is_err();
    nats.heal(cut);
    let took = took.expect("the majority side writes again");
    majority.expect("put on the majority side");
    assert!(minority_fails_after, "the minority still cannot write once the majority has a new leader");
    assert!(plain_failed, "a put on the minority side must fail");
    eprintln!(
        "FIGURE partition (route link of the stream leader {leader} down): minority writes fail; first write on \
         the majority side (via {}) after {took:?}",
        nats.name(major)
    );

    // Routes are TCP connections that outlive a short link-down (no
    // reset is sent), so "routed" says nothing here: a write through the
    // healed server is the measure.
    let healed =
        put_until_ok(&kv_minor, "healed", Duration::from_secs(60)).await.expect("the healed side writes again");
    let caught = wait_caught_up(&nats, major, &[cut], "KV_part", Duration::from_secs(30));
    eprintln!("FIGURE partition healed: a write via {leader} succeeded after {healed:?}, caught up {caught:?} later");
    let got = kv_minor.entry("k").await.expect("entry").expect("present");
    assert_eq!(
        got.value.as_ref(),
        b"majority",
        "a compare-and-set refused on the minority never lands later (its revision is stale)"
    );
    // A plain put that timed out is not necessarily lost: the isolated
    // server may have queued it on a route and delivered it after the heal.
    let plain = kv_major.get("plain").await.expect("get");
    eprintln!(
        "FIGURE partition: the minority's timed-out plain put was {} after the heal",
        if plain.is_some() { "APPLIED" } else { "not applied" }
    );
}

/// The docker compose `cluster` profile's config (etc/cluster/nats.conf)
/// passes the pinned nats-server's own check with the variables compose
/// gives each server, and is refused without them.
#[test]
fn compose_nats_config_passes_the_servers_check() {
    let Some(bin) = portcullis_tests::nats::server_binary() else { return };
    let conf = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/cluster/nats.conf");
    let check = |vars: &[(&str, &str)]| {
        let mut c = std::process::Command::new(&bin);
        c.env_clear().args(["-t", "-c"]).arg(&conf);
        for (k, v) in vars {
            c.env(k, v);
        }
        let out = c.output().expect("run nats-server -t");
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    let (ok, text) = check(&[("NATS_NAME", "nats-1"), ("NATS_PASSWORD", "x")]);
    assert!(ok, "{text}");
    let (ok, text) = check(&[("NATS_NAME", "nats-1")]);
    assert!(!ok && text.contains("NATS_PASSWORD"), "accepted without NATS_PASSWORD: {text}");
}

/// One server: JetStream without a cluster, a bucket with one replica,
/// and a restart that keeps the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_server_keeps_its_store_across_a_restart() {
    let Some(mut nats) = Nats::start(1) else { return };
    assert_eq!(nats.urls().len(), 1);
    let c = connect(&nats.url(1)).await;
    let kv = js(&c, Duration::from_secs(5))
        .create_key_value(kv::Config { bucket: "one".to_string(), num_replicas: 1, ..Default::default() })
        .await
        .expect("create bucket");
    kv.put("k", Bytes::from_static(b"kept")).await.expect("put");
    drop(c);
    nats.restart(1);
    let c = connect(&nats.url(1)).await;
    let kv = open(&c, "one", Duration::from_secs(5)).await;
    assert_eq!(kv.get("k").await.expect("get").as_deref(), Some(&b"kept"[..]), "the store survived the restart");
}
