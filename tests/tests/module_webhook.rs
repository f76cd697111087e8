//! The event webhook module through the real binary, against a real HTTP
//! server in this process (`portcullis_tests::webhook`): EMQX 4.3 event
//! shapes for 3.1.1 and 5.0 clients, batches, payload options, retries
//! (503 retried, 400 not), a slow endpoint that does not slow publishers,
//! a dead one whose queue stays bounded (events dropped and counted,
//! memory flat) and which gets the queued events once it is back, HTTPS
//! with a header read from a file, SIGHUP on and off with a client kept,
//! and bad settings named by key.

use std::path::Path;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS, Unsubscribe};
use portcullis_tests::kit::*;
use portcullis_tests::webhook::{Tls, Webhook};
use portcullis_tests::{rss_kib, Broker};
use serde_json::Value;

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;

fn sighup(b: &Broker) {
    let st = std::process::Command::new("kill").arg("-HUP").arg(b.pid().to_string()).status().expect("kill");
    assert!(st.success());
}

/// A listener, `[sys]` every second, and `[modules.webhook]` sending to
/// `w`'s `/events` with `extra` settings.
fn config(w: &Webhook, enabled: bool, extra: &str) -> String {
    format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n[sys]\ninterval = \"1s\"\n\
         [modules.webhook]\nenabled = {enabled}\nurl = \"{}/events\"\n{extra}\n",
        w.base()
    )
}

/// Waits (at most `within`) until the events received satisfy `done`;
/// returns them.
async fn events_until(
    w: &Webhook,
    b: &Broker,
    within: Duration,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let end = Instant::now() + within;
    loop {
        let evs = w.events();
        if done(&evs) {
            return evs;
        }
        assert!(Instant::now() < end, "{what}: not within {within:?}; got {evs:#?}\nlog:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The first event with this action (and client id, when given).
fn find<'a>(evs: &'a [Value], action: &str, clientid: Option<&str>) -> Option<&'a Value> {
    evs.iter().find(|e| e["action"] == action && clientid.is_none_or(|c| e["clientid"] == c))
}

/// Waits until the event is there and returns it.
async fn event(w: &Webhook, b: &Broker, action: &str, clientid: Option<&str>) -> Value {
    let evs = events_until(w, b, Duration::from_secs(10), action, |e| find(e, action, clientid).is_some()).await;
    find(&evs, action, clientid).cloned().unwrap_or_default()
}

/// `$SYS/brokers/<node>/modules/webhook/<name>`, published after now.
async fn stat(b: &Broker, name: &str) -> u64 {
    let v = sys_fresh(b.addr, &format!("modules/webhook/{name}"), Duration::from_secs(5)).await;
    v.parse().unwrap_or_else(|_| panic!("{name}: {v:?}"))
}

/// `(queued, sent, failed, dropped)` from one `$SYS` publication (they
/// are published together, in this order).
async fn stats(b: &Broker) -> (u64, u64, u64, u64) {
    let (mut raw, _) = open_v3(b.addr, "stats-reader", true).await;
    subscribe(&mut raw, 1, &[("$SYS/brokers/+/modules/webhook/+", Q0)]).await;
    let mut got: Vec<(String, u64)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(5);
    while got.len() < 4 {
        let left = end.saturating_duration_since(Instant::now());
        match raw.recv_timeout(left).await {
            Ok(Some(Packet::Publish(p))) if !p.retain => {
                let name = p.topic.rsplit('/').next().unwrap_or("").to_string();
                // Start with the first value of a publication.
                if got.is_empty() && name != "queued" {
                    continue;
                }
                got.push((name, text(&p.payload).parse().expect("a number")));
            }
            Ok(Some(_)) => {}
            other => panic!("no webhook $SYS values: {other:?} {got:?}"),
        }
    }
    let v = |n: &str| got.iter().find(|(k, _)| k == n).map(|(_, v)| *v).expect(n);
    (v("queued"), v("sent"), v("failed"), v("dropped"))
}

/// Waits until the `$SYS` value `name` is `want`.
async fn stat_becomes(b: &Broker, name: &str, want: u64) {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        let v = stat(b, name).await;
        if v == want {
            return;
        }
        assert!(Instant::now() < end, "modules/webhook/{name} is {v}, not {want}");
    }
}

/// `n` QoS 1 publishes of `size` bytes to `topic`, one after the other
/// (each waits for its PUBACK); how long they took.
async fn publish_n(raw: &mut portcullis_tests::Raw, topic: &str, n: u16, size: usize) -> Duration {
    let payload = vec![b'x'; size];
    let start = Instant::now();
    for i in 1..=n {
        assert_eq!(pub_simple(raw, topic, Q1, i, &payload, false).await, 0);
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_emqx_fields_for_3_1_1_and_5_0() {
    let w = Webhook::start(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "alice:alice-pw\n").expect("passwd");
    let all = "events = [\"client.connected\", \"client.disconnected\", \"client.subscribe\", \
               \"client.unsubscribe\", \"session.created\", \"session.terminated\", \"message.publish\", \
               \"message.delivered\", \"message.acked\", \"message.dropped\"]";
    let b = Broker::start_with_config(&format!(
        "{}[auth]\nchain = [\"pw\", \"lo\"]\n[auth.password_file.pw]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n\
         [auth.ip.lo]\nallow = [\"127.0.0.0/8\"]\n",
        config(&w, true, all),
        passwd.display().to_string()
    ));

    // A $SYS message delivered (the retained version) is not an event.
    let (mut sys, _) = open_v3(b.addr, "sys-watch", true).await;
    subscribe(&mut sys, 1, &[("$SYS/brokers/+/version", Q0)]).await;
    assert!(next_publish(&mut sys).await.topic.ends_with("/version"));

    // A 3.1.1 subscriber without a username, a 5.0 publisher with one.
    let (mut sub, _) = open_v3(b.addr, "sub-3", true).await;
    subscribe(&mut sub, 1, &[("t/#", Q1)]).await;
    let mut c = connect_packet(ProtocolVersion::V5, "pub-5", true);
    c.username = Some("alice".into());
    c.password = Some(bytes::Bytes::from_static(b"alice-pw"));
    c.keep_alive = 42;
    let (mut publ, ack) = open(b.addr, c).await;
    assert_eq!(ack.code, 0);
    assert_eq!(pub_simple(&mut publ, "t/x", Q1, 1, b"hello", false).await, 0);
    let p = next_publish(&mut sub).await;
    ack_incoming(&mut sub, &p).await;
    sync(&mut sub).await;
    assert_eq!(pub_simple(&mut publ, "nobody/x", Q0, 0, b"lost", false).await, 0);
    sub.send_packet(&Packet::Unsubscribe(Unsubscribe {
        packet_id: 2,
        filters: vec!["t/#".into()],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(sub.recv().await, Some(Packet::UnsubAck(_))));
    disconnect(publ).await;
    drop(sub);

    let node = event(&w, &b, "client_connected", Some("sub-3")).await["node"].clone();
    assert!(node.as_str().is_some_and(|n| !n.is_empty()), "node: {node}");
    let v3 = event(&w, &b, "client_connected", Some("sub-3")).await;
    assert_eq!(v3["proto_ver"], 4);
    assert_eq!(v3["username"], Value::Null);
    assert_eq!(v3["ipaddress"], "127.0.0.1");
    assert_eq!(v3["clean_start"], true);
    assert!(v3["connected_at"].as_u64().is_some_and(|t| t > 1_600_000_000_000), "milliseconds: {v3}");
    let v5 = event(&w, &b, "client_connected", Some("pub-5")).await;
    assert_eq!(
        (v5["proto_ver"].as_u64(), v5["username"].as_str(), v5["keepalive"].as_u64()),
        (Some(5), Some("alice"), Some(42))
    );
    let created = event(&w, &b, "session_created", Some("pub-5")).await;
    assert_eq!(created["username"], "alice");

    let s = event(&w, &b, "client_subscribe", Some("sub-3")).await;
    assert_eq!(s["topic"], "t/#");
    assert_eq!(s["opts"]["qos"], 1);
    assert_eq!(event(&w, &b, "client_unsubscribe", Some("sub-3")).await["topic"], "t/#");

    let p = event(&w, &b, "message_publish", None).await;
    assert_eq!(p["from_client_id"], "pub-5");
    assert_eq!(p["from_username"], "alice");
    assert_eq!((p["topic"].as_str(), p["qos"].as_u64(), p["retain"].as_bool()), (Some("t/x"), Some(1), Some(false)));
    assert_eq!(p["payload"], "hello");
    assert!(p["ts"].as_u64().is_some_and(|t| t > 1_600_000_000_000));
    for action in ["message_delivered", "message_acked"] {
        let d = event(&w, &b, action, Some("sub-3")).await;
        assert_eq!((d["from_client_id"].as_str(), d["topic"].as_str()), (Some("pub-5"), Some("t/x")), "{action}: {d}");
        assert_eq!(d["username"], Value::Null);
        assert_eq!(d["payload"], "hello");
    }
    let evs = events_until(&w, &b, Duration::from_secs(10), "dropped", |e| {
        e.iter().any(|v| v["action"] == "message_dropped" && v["topic"] == "nobody/x")
    })
    .await;
    let d =
        evs.iter().find(|v| v["action"] == "message_dropped" && v["topic"] == "nobody/x").cloned().unwrap_or_default();
    assert_eq!(
        (d["reason"].as_str(), d["from_client_id"].as_str(), d["payload"].as_str()),
        (Some("no_subscribers"), Some("pub-5"), Some("lost"))
    );

    assert_eq!(event(&w, &b, "client_disconnected", Some("pub-5")).await["reason"], "normal");
    let gone = event(&w, &b, "client_disconnected", Some("sub-3")).await;
    assert_eq!(gone["reason"], "tcp_closed");
    assert!(gone["disconnected_at"].as_u64().is_some());
    assert_eq!(event(&w, &b, "session_terminated", Some("sub-3")).await["reason"], "normal");
    assert!(find(&w.events(), "message_delivered", Some("sys-watch")).is_none(), "$SYS messages are never sent");
    // One object per request (batch_size = 1), as EMQX 4 sends them.
    assert!(w.seen().iter().all(|s| s.body.first() == Some(&b'{')));
    assert!(w
        .seen()
        .iter()
        .all(|s| s.method == "POST" && s.headers.iter().any(|(k, v)| k == "content-type" && v == "application/json")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_payload_encoding_max_payload_and_topic_filters() {
    let w = Webhook::start(None).await;
    let b = Broker::start_with_config(&config(
        &w,
        true,
        "events = [\"client.connected\", \"message.publish\"]\nbatch_size = 10\nbatch_linger = \"2s\"\n\
         topics = [\"keep/#\"]\npayload_encoding = \"base64\"\nmax_payload = 4\n",
    ));
    let mut held = Vec::new();
    for i in 0..5 {
        held.push(open_v5(b.addr, &format!("batch-{i}"), true, Properties::default()).await.0);
    }
    let mut raw = held.pop().expect("a client");
    // (v5: 0x10, no matching subscribers)
    assert_eq!(pub_simple(&mut raw, "keep/a", Q1, 1, b"hello world", false).await, 0x10);
    assert_eq!(pub_simple(&mut raw, "skip/a", Q1, 2, b"not sent", false).await, 0x10);
    let evs = events_until(&w, &b, Duration::from_secs(10), "six events", |e| e.len() >= 6).await;
    // Five connects and one publish within the linger: one or two
    // requests, each a JSON array.
    let requests = w.seen();
    assert!(requests.len() <= 2, "{} requests for 6 events", requests.len());
    assert!(requests.iter().all(|s| s.body.first() == Some(&b'[')), "arrays");
    let p = find(&evs, "message_publish", None).cloned().unwrap_or_default();
    assert_eq!(p["topic"], "keep/a");
    assert_eq!(p["payload"], "aGVsbA==", "the first 4 bytes, base64");
    assert_eq!((p["payload_truncated"].as_bool(), p["payload_size"].as_u64()), (Some(true), Some(11)));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.events().iter().filter(|e| e["action"] == "message_publish").count(), 1, "skip/a is filtered out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let w = Webhook::start(None).await;
    w.set_fail(Some(503));
    // message.publish: the $SYS readers of `stat` connect and subscribe,
    // they do not publish.
    let b = Broker::start_with_config(&config(
        &w,
        true,
        "events = [\"message.publish\"]\nmax_attempts = 3\nretry_backoff = \"100ms\"\n",
    ));
    let (mut raw, _) = open_v3(b.addr, "pub", true).await;
    assert_eq!(pub_simple(&mut raw, "t/1", Q1, 1, b"1", false).await, 0);
    let end = Instant::now() + Duration::from_secs(10);
    while w.count() < 3 {
        assert!(Instant::now() < end, "3 tries expected, got {}", w.count());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stat_becomes(&b, "failed", 1).await;
    assert_eq!(w.count(), 3, "max_attempts = 3");

    w.set_fail(Some(400));
    assert_eq!(pub_simple(&mut raw, "t/2", Q1, 2, b"2", false).await, 0);
    stat_becomes(&b, "failed", 2).await;
    assert_eq!(w.count(), 4, "a 400 is final");

    w.set_fail(None);
    assert_eq!(pub_simple(&mut raw, "t/3", Q1, 3, b"3", false).await, 0);
    stat_becomes(&b, "sent", 1).await;
    assert_eq!(w.count(), 5);
    assert_eq!(stat(&b, "dropped").await, 0);
    assert_eq!(stat(&b, "queued").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_does_not_slow_a_qos1_publisher() {
    const N: u16 = 300;
    // Without the module.
    let plain = Broker::start("");
    let (mut raw, _) = open_v3(plain.addr, "pub", true).await;
    let without = publish_n(&mut raw, "load/x", N, 256).await;

    // With every publish sent to an endpoint that takes 2 s to answer,
    // and room for 100 events: the queue fills and the rest are dropped,
    // the publisher never waits.
    let w = Webhook::start(None).await;
    w.set_delay(Duration::from_secs(2));
    let b = Broker::start_with_config(&config(&w, true, "events = [\"message.publish\"]\nmax_queue_len = 100\n"));
    let (mut raw, _) = open_v3(b.addr, "pub", true).await;
    let with = tokio::time::timeout(Duration::from_secs(60), publish_n(&mut raw, "load/x", N, 256))
        .await
        .expect("the publisher was held up by the webhook");
    // Blocking on the endpoint would cost 2 s per request; the loose
    // bound is under one request's time.
    let bound = without.max(Duration::from_millis(200)) * 5;
    assert!(with < bound, "{N} QoS 1 publishes: {with:?} with a slow webhook, {without:?} without");
    assert!(w.count() >= 1, "the endpoint was being called");
    let (queued, sent, failed, dropped) = stats(&b).await;
    assert_eq!(queued + sent + failed + dropped, u64::from(N), "every event accounted for");
    assert!(queued <= 100 && dropped >= 100, "queued {queued}, dropped {dropped}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_endpoint_bounds_the_queue_counts_drops_and_gets_the_queue_when_back() {
    let mut w = Webhook::start(None).await;
    w.stop().await;
    let b = Broker::start_with_config(&config(
        &w,
        true,
        "events = [\"message.publish\"]\nmax_queue_len = 100\nmax_queue_bytes = \"4MiB\"\nmax_in_flight = 2\n\
         max_attempts = 100\nretry_backoff = \"100ms\"\nmax_retry_backoff = \"1s\"\n",
    ));
    let (mut raw, _) = open_v3(b.addr, "flood", true).await;
    publish_n(&mut raw, "load/warm", 50, 16 * 1024).await;
    let before = rss_kib(b.pid()).expect("rss");
    // 4000 events of 16 KiB: 62 MiB of JSON if nothing bounded them.
    let took = publish_n(&mut raw, "load/x", 4000, 16 * 1024).await;
    let after = rss_kib(b.pid()).expect("rss");
    println!("4000 x 16 KiB publishes to a dead webhook: {took:?}, RSS {before} -> {after} KiB");
    assert!(after.saturating_sub(before) < 24 * 1024, "RSS grew from {before} to {after} KiB");
    let (queued, sent, failed, dropped) = stats(&b).await;
    assert_eq!(queued, 100, "max_queue_len, requests in flight included");
    assert_eq!(dropped, 4050 - 100);
    assert_eq!((sent, failed), (0, 0), "still retrying");

    // Back: the 100 queued (2 of them in flight and retried all along)
    // arrive.
    w.restart().await;
    let evs = events_until(&w, &b, Duration::from_secs(20), "the queued events", |e| e.len() >= 100).await;
    assert!(evs.iter().all(|e| e["action"] == "message_publish"));
    stat_becomes(&b, "sent", 100).await;
    assert_eq!(stats(&b).await, (0, 100, 0, 3950));
    assert_eq!(w.count(), 100, "each event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_switches_the_webhook_on_and_off_with_a_client_kept() {
    let mut w = Webhook::start(None).await;
    let b = Broker::start_with_config(&config(&w, false, "events = [\"client.connected\", \"message.publish\"]\n"));
    let (mut kept, _) = open_v5(b.addr, "kept", true, Properties::default()).await;
    subscribe(&mut kept, 1, &[("echo", Q1)]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.count(), 0, "off at start");

    // On.
    // Retried every 200 ms while the endpoint is down (below).
    let on = "events = [\"client.connected\", \"message.publish\"]\nmax_attempts = 100\n\
              retry_backoff = \"200ms\"\nmax_retry_backoff = \"200ms\"\n";
    std::fs::write(&b.config_path, config(&w, true, on)).expect("write");
    sighup(&b);
    assert!(b.wait_log("reload: modules reloaded", Duration::from_secs(5)), "{}", b.log());
    assert_eq!(pub_simple(&mut kept, "echo", Q1, 2, b"on", false).await, 0);
    assert_eq!(next_publish(&mut kept).await.payload.as_ref(), b"on");
    let p = event(&w, &b, "message_publish", None).await;
    assert_eq!((p["from_client_id"].as_str(), p["payload"].as_str()), (Some("kept"), Some("on")));
    let (_other, _) = open_v3(b.addr, "after-on", true).await;
    event(&w, &b, "client_connected", Some("after-on")).await;

    // The endpoint goes away and events queue up; then off: the queue is
    // discarded and the sender ends, so nothing arrives once it is back.
    w.stop().await;
    for i in 0..5 {
        open_v3(b.addr, &format!("queued-{i}"), true).await;
    }
    std::fs::write(&b.config_path, config(&w, false, "")).expect("write");
    sighup(&b);
    let end = Instant::now() + Duration::from_secs(5);
    while b.log().matches("reload: modules reloaded").count() < 2 {
        assert!(Instant::now() < end, "second reload not logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let count = w.count();
    w.restart().await;
    let (_late, _) = open_v3(b.addr, "while-off", true).await;
    assert_eq!(pub_simple(&mut kept, "echo", Q1, 3, b"off", false).await, 0);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(w.count(), count, "no request after the module was switched off (a retry would come within 200 ms)");
    assert!(b.wait_log("webhook disabled: queued events discarded", Duration::from_secs(5)), "{}", b.log());
    // The client kept its connection and subscription throughout.
    assert_eq!(next_publish(&mut kept).await.payload.as_ref(), b"off");
    sync(&mut kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_ca_file_and_a_header_from_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = portcullis_tests::net::Ca::new("webhook test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (cert, key) = ca.server("127.0.0.1").write(dir.path(), "server");
    let w = Webhook::start(Some(Tls { cert, key, client_ca: None })).await;
    let token = dir.path().join("token");
    std::fs::write(&token, "Bearer s3cret\n").expect("token");
    let tls = |ca: &Path| {
        format!(
            "events = [\"client.connected\"]\nheaders = {{ authorization = {{ file = {:?} }} }}\n\
             tls = {{ enable = true, ca_file = {:?} }}\n",
            token.display().to_string(),
            ca.display().to_string()
        )
    };
    let b = Broker::start_with_config(&config(&w, true, &tls(&ca_file)));
    let (_c, _) = open_v3(b.addr, "over-tls", true).await;
    if tokio::time::timeout(Duration::from_secs(12), event(&w, &b, "client_connected", Some("over-tls"))).await.is_err()
    {
        panic!("no event over TLS; log:\n{}", b.log());
    }
    let seen = w.seen();
    assert!(seen[0].headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer s3cret"), "{:?}", seen[0].headers);
    assert!(!b.log().contains("s3cret"), "the header value is never logged");

    // A CA that did not sign the endpoint's certificate: nothing gets
    // through, the events fail.
    let other = portcullis_tests::net::Ca::new("another CA").write(dir.path(), "other.pem");
    let b2 = Broker::start_with_config(&(config(&w, true, &tls(&other)) + "max_attempts = 1\n"));
    let before = w.count();
    let (_c, _) = open_v3(b2.addr, "untrusted", true).await;
    let end = Instant::now() + Duration::from_secs(15);
    // (The $SYS reader's own connect is an event too.)
    while stat(&b2, "failed").await == 0 {
        assert!(Instant::now() < end, "the event did not fail");
    }
    assert_eq!(w.count(), before, "no request without TLS trust");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_settings_name_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |name: &str, text: &str, check: bool| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        let mut args = vec!["--config".to_string(), p.display().to_string()];
        if check {
            args.insert(0, "--check-config".into());
        }
        let out = portcullis_tests::run_bounded(&args, Duration::from_secs(20)).expect("refused, not started");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let listener = "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n";
    let (code, err) = run(
        "events.toml",
        &format!("{listener}[modules.webhook]\nurl = \"http://127.0.0.1:1/\"\nevents = [\"session.subscribed\"]\n"),
        true,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("modules.webhook.events") && err.contains("client.subscribe"), "{err}");
    let (code, err) = run("url.toml", &format!("{listener}[modules.webhook]\nenabled = true\n"), true);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("modules.webhook.url"), "{err}");
    // A header secret is read at start: a missing variable refuses the
    // start and names the header.
    let (code, err) = run(
        "env.toml",
        &format!(
            "{listener}[modules.webhook]\nenabled = true\nurl = \"http://127.0.0.1:1/\"\n\
             headers = {{ x-token = {{ env = \"PORTCULLIS_TEST_UNSET_TOKEN\" }} }}\n"
        ),
        false,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("modules.webhook.headers.x-token"), "{err}");
}

#[tokio::test]
async fn the_readme_config_block_is_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let section = &readme[readme.find("\n### Event webhooks\n").expect("README has the section")..];
    let start = section.find("```toml\n").expect("a toml block") + "```toml\n".len();
    let block = &section[start..start + section[start..].find("```").expect("end of block")];
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("readme.toml");
    std::fs::write(&p, format!("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n{block}")).expect("write");
    let out = portcullis_tests::run_bounded(
        &["--check-config".to_string(), "--config".into(), p.display().to_string()],
        Duration::from_secs(20),
    )
    .expect("check-config exits");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}
