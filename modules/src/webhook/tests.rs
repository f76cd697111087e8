//! Event shapes, queue bounds, batching, the retry schedule (tokio's
//! paused clock), config checks, and the sender ending with its module.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use portcullis_core::codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use portcullis_core::connection::DisconnectReason;
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{
    ClientDisconnected, OnClientDisconnected, OnMessageAcked, OnMessageDelivered, OnMessageDropped, OnMessagePublish,
    OnSessionEnded, OnSubscribe, OnUnsubscribe, PublishFlow, PublishedMessage, Publisher, SessionEndReason,
    SessionEvent, Subscription,
};
use portcullis_core::message::Message;
use portcullis_core::metrics::DropReason;
use portcullis_core::owner::SessionOwner;
use portcullis_core::topic::TopicName;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::event::{self, EventKind, MessageFields, PayloadFormat, Who};
use super::queue::{Queue, Take};
use super::sender::{with_retries, Attempt, RetryPolicy};
use super::{PayloadEncoding, Webhook, WebhookConfig};

fn client(id: &str, username: Option<&str>, protocol: ProtocolVersion) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: username.map(Arc::from),
        peer: "127.0.0.1:50000".parse().expect("addr"),
        listener: Arc::from("tcp"),
        protocol: protocol.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

fn message(topic: &str, payload: &[u8], qos: QoS, publisher: Option<&str>) -> Message {
    Message {
        topic: TopicName::new(topic).expect("topic"),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain: false,
        properties: None,
        publisher: publisher.map(Arc::from),
        expires_at: None,
    }
}

/// A config whose sender never takes anything (a batch of 10 000 that
/// waits an hour), so the events stay in the queue for the test to read.
fn holding(events: &[&str]) -> WebhookConfig {
    WebhookConfig {
        enabled: true,
        url: Some("http://127.0.0.1:9/events".into()),
        events: events.iter().map(|e| e.to_string()).collect(),
        batch_size: 10_000,
        batch_linger: Duration::from_secs(3600),
        ..WebhookConfig::default()
    }
}

/// The JSON of every event waiting in `w`'s queue.
fn queued(w: &Webhook) -> Vec<Value> {
    match w.queue().take(usize::MAX, Duration::ZERO, Instant::now()) {
        Take::Batch(b, _) => b.iter().map(|e| serde_json::from_str(e).expect("JSON")).collect(),
        _ => Vec::new(),
    }
}

#[tokio::test]
async fn client_connected_has_emqx_fields() {
    let c = client("dev-1", Some("alice"), ProtocolVersion::V5);
    let ev = event::Connected {
        who: Who { action: EventKind::ClientConnected.action(), node: "n@h", clientid: &c.client_id, username: None },
        ipaddress: event::ipaddress(c.peer.ip()),
        keepalive: 60,
        proto_ver: event::ProtoVer::of(c.protocol),
        connected_at: 1_700_000_000_123,
        clean_start: true,
    };
    let v: Value = serde_json::from_str(&event::to_json(&ev).expect("json")).expect("parse");
    assert_eq!(
        v,
        json!({"action": "client_connected", "node": "n@h", "clientid": "dev-1", "username": null,
               "ipaddress": "127.0.0.1", "keepalive": 60, "proto_ver": 5,
               "connected_at": 1_700_000_000_123u64, "clean_start": true})
    );
}

#[tokio::test]
async fn hooks_queue_emqx_shapes() {
    let broker = Broker::new(Default::default());
    let w = Webhook::new(
        &broker,
        &WebhookConfig {
            payload_encoding: PayloadEncoding::Base64,
            ..holding(&[
                "client.disconnected",
                "client.subscribe",
                "client.unsubscribe",
                "session.terminated",
                "message.publish",
                "message.delivered",
                "message.acked",
                "message.dropped",
            ])
        },
        None,
    )
    .expect("build");
    let node = broker.settings.node_name.clone();
    let alice = client("pub-1", Some("alice"), ProtocolVersion::V311);
    let bob = client("sub-1", None, ProtocolVersion::V5);

    w.client_disconnected(&ClientDisconnected { client: &alice, reason: DisconnectReason::KeepAliveTimeout });
    let opts = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        no_local: true,
        retain_as_published: false,
        retain_handling: RetainHandling::Never,
    };
    let mut sub = Subscription::new("a/+".into(), opts);
    assert_eq!(w.subscribe(&bob, &mut sub), portcullis_core::hooks::Flow::Continue);
    assert_eq!(w.unsubscribe(&bob, &mut sub), portcullis_core::hooks::Flow::Continue);
    let owner = SessionOwner::User(Arc::from("bob"));
    w.session_ended(&SessionEvent { client_id: "sub-1", owner: &owner }, SessionEndReason::Expired);
    let mut pm = PublishedMessage::new(
        TopicName::new("a/b").expect("t"),
        Bytes::from_static(b"hello"),
        QoS::AtLeastOnce,
        true,
        Default::default(),
    );
    assert_eq!(w.publish(Publisher::Client(&alice), &mut pm), PublishFlow::Continue);
    let m = message("a/b", b"hello", QoS::ExactlyOnce, Some("pub-1"));
    w.delivered(&bob, &m, QoS::AtLeastOnce);
    w.acked(&bob, &m);
    w.dropped(&m, DropReason::QueueFull, Some("sub-1"));
    w.dropped(&m, DropReason::NoSubscribers, None);
    // $SYS messages are never sent.
    w.dropped(&message("$SYS/brokers/x/uptime", b"1", QoS::AtMostOnce, None), DropReason::NoSubscribers, None);

    let evs = queued(&w);
    assert_eq!(evs.len(), 9, "{evs:#?}");
    let ts = |v: &Value, k: &str| v[k].as_u64().is_some_and(|t| t > 1_600_000_000_000);
    assert_eq!(evs[0]["action"], "client_disconnected");
    assert_eq!(evs[0]["node"], node.as_str());
    assert_eq!(evs[0]["clientid"], "pub-1");
    assert_eq!(evs[0]["username"], "alice");
    assert_eq!(evs[0]["reason"], "keepalive_timeout");
    assert!(ts(&evs[0], "disconnected_at"));
    assert_eq!(
        evs[1],
        json!({"action": "client_subscribe", "node": node, "clientid": "sub-1", "username": null,
               "topic": "a/+", "opts": {"qos": 1, "nl": 1, "rap": 0, "rh": 2}})
    );
    assert_eq!(
        evs[2],
        json!({"action": "client_unsubscribe", "node": node, "clientid": "sub-1", "username": null, "topic": "a/+"})
    );
    assert_eq!(
        evs[3],
        json!({"action": "session_terminated", "node": node, "clientid": "sub-1", "username": "bob",
               "reason": "expired"})
    );
    let p = &evs[4];
    assert_eq!(p["action"], "message_publish");
    assert_eq!(p["from_client_id"], "pub-1");
    assert_eq!(p["from_username"], "alice");
    assert_eq!((p["topic"].as_str(), p["qos"].as_u64(), p["retain"].as_bool()), (Some("a/b"), Some(1), Some(true)));
    assert_eq!(p["payload"], "aGVsbG8=", "base64");
    assert!(ts(p, "ts"));
    assert!(p.get("payload_truncated").is_none());
    for (v, action) in [(&evs[5], "message_delivered"), (&evs[6], "message_acked")] {
        assert_eq!(v["action"], action);
        assert_eq!(v["clientid"], "sub-1");
        assert_eq!(v["from_client_id"], "pub-1");
        assert_eq!(v["from_username"], Value::Null);
        assert_eq!(v["topic"], "a/b");
        assert!(ts(v, "ts"));
    }
    assert_eq!(evs[5]["qos"], 1, "the delivered QoS");
    assert_eq!(evs[6]["qos"], 2, "the message's QoS");
    assert_eq!(evs[7]["action"], "message_dropped");
    assert_eq!(evs[7]["reason"], "queue_full");
    assert_eq!(evs[7]["clientid"], "sub-1");
    assert_eq!(evs[8]["reason"], "no_subscribers");
    assert_eq!(evs[8]["clientid"], Value::Null);
}

#[tokio::test]
async fn topic_filters_select_message_events_only() {
    let broker = Broker::new(Default::default());
    let cfg = WebhookConfig { topics: vec!["keep/#".into()], ..holding(&["message.dropped", "client.disconnected"]) };
    let w = Webhook::new(&broker, &cfg, None).expect("build");
    for t in ["keep/a", "skip/a", "keep"] {
        w.dropped(&message(t, b"", QoS::AtMostOnce, None), DropReason::NoSubscribers, None);
    }
    w.client_disconnected(&ClientDisconnected {
        client: &client("c", None, ProtocolVersion::V311),
        reason: DisconnectReason::PeerClosed,
    });
    let topics: Vec<Value> = queued(&w).iter().map(|v| v["topic"].clone()).collect();
    assert_eq!(topics, [json!("keep/a"), json!("keep"), Value::Null], "client events are not filtered");
}

#[test]
fn payloads_are_cut_at_max_payload() {
    let plain = PayloadFormat { encoding: PayloadEncoding::Plain, max: 4 };
    let f = MessageFields::new("t", QoS::AtMostOnce, false, b"abcdefgh", plain, 1);
    let v = serde_json::to_value(&f).expect("json");
    assert_eq!(
        (v["payload"].as_str(), v["payload_truncated"].as_bool(), v["payload_size"].as_u64()),
        (Some("abcd"), Some(true), Some(8))
    );
    // Within the bound: no extra fields; bytes that are not UTF-8 are
    // replaced in plain, kept in base64.
    let f = MessageFields::new("t", QoS::AtMostOnce, false, b"a\xffb", PayloadFormat { max: 3, ..plain }, 1);
    let v = serde_json::to_value(&f).expect("json");
    assert_eq!(v["payload"], "a\u{fffd}b");
    assert!(v.get("payload_truncated").is_none() && v.get("payload_size").is_none());
    let b64 = PayloadFormat { encoding: PayloadEncoding::Base64, max: 3 };
    let v = serde_json::to_value(MessageFields::new("t", QoS::AtMostOnce, false, b"a\xffbc", b64, 1)).expect("json");
    assert_eq!(v["payload"], "Yf9i", "the first 3 bytes, base64");
    // 0: never a payload.
    let none = PayloadFormat { encoding: PayloadEncoding::Plain, max: 0 };
    let v = serde_json::to_value(MessageFields::new("t", QoS::AtMostOnce, false, b"x", none, 1)).expect("json");
    assert_eq!((v["payload"].as_str(), v["payload_size"].as_u64()), (Some(""), Some(1)));
}

#[test]
fn disconnect_reasons_use_emqx_words() {
    use portcullis_core::codec::reason::ReasonCode;
    assert_eq!(event::disconnect_reason(DisconnectReason::ClientDisconnect { with_will: false }), "normal");
    assert_eq!(event::disconnect_reason(DisconnectReason::PeerClosed), "tcp_closed");
    assert_eq!(event::disconnect_reason(DisconnectReason::TakenOver), "takenover");
    assert_eq!(event::disconnect_reason(DisconnectReason::AdministrativeAction), "kicked");
    assert_eq!(event::disconnect_reason(DisconnectReason::Malformed(ReasonCode::MalformedPacket)), "frame_error");
    assert_eq!(event::session_end_reason(SessionEndReason::Replaced), "discarded");
}

#[tokio::test(start_paused = true)]
async fn queue_bounds_count_and_bytes_and_counts_drops() {
    use std::sync::atomic::Ordering::Relaxed;
    let q = Queue::new(3, 1024);
    for i in 0..3 {
        assert!(q.offer(format!("{{\"n\":{i}}}")));
    }
    assert!(!q.has_room());
    assert!(!q.offer("{}".into()), "a fourth event is dropped");
    assert_eq!(q.stats.dropped.load(Relaxed), 2, "has_room and offer each counted one");
    // Taken events still count until done.
    let Take::Batch(b, bytes) = q.take(2, Duration::ZERO, Instant::now()) else { panic!("a batch") };
    assert_eq!(b.len(), 2);
    assert_eq!(q.queued(), 3);
    assert!(!q.offer("{}".into()));
    q.done(2, bytes);
    assert_eq!(q.queued(), 1);
    assert!(q.offer("{}".into()));

    // Bytes: one event of 1000 fits, a second does not; small ones do.
    let q = Queue::new(100, 1024);
    assert!(q.offer("x".repeat(1000)));
    assert!(!q.offer("y".repeat(100)));
    assert!(q.offer("z".repeat(24)));
    assert_eq!(q.bytes(), 1024);
    assert!(!q.has_room());
    // An event larger than the whole bound never fits.
    let q = Queue::new(100, 1024);
    assert!(!q.offer("x".repeat(1025)));
    assert_eq!(q.queued(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_batch_waits_for_its_linger_or_its_size() {
    let q = Queue::new(100, 1 << 20);
    let linger = Duration::from_millis(50);
    assert_eq!(q.take(3, linger, Instant::now()), Take::Empty);
    q.offer("1".into());
    let t0 = Instant::now();
    q.offer("2".into());
    assert_eq!(q.take(3, linger, t0), Take::Until(t0 + linger));
    tokio::time::advance(Duration::from_millis(50)).await;
    let Take::Batch(b, _) = q.take(3, linger, Instant::now()) else { panic!("linger passed") };
    assert_eq!(b.len(), 2);
    for i in 0..4 {
        q.offer(i.to_string());
    }
    let Take::Batch(b, _) = q.take(3, linger, Instant::now()) else { panic!("a full batch goes at once") };
    assert_eq!(b.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn retries_back_off_exponentially_up_to_the_cap() {
    let policy = RetryPolicy { max_attempts: 6, backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(5) };
    let start = Instant::now();
    let mut at = Vec::new();
    let r = with_retries(policy, |_| {
        at.push(start.elapsed());
        async { Attempt::Retry("503".into()) }
    })
    .await;
    assert_eq!(r, Err((6, "503".to_string())));
    let secs: Vec<u64> = at.iter().map(Duration::as_secs).collect();
    assert_eq!(secs, [0, 1, 3, 7, 12, 17], "waits 1, 2, 4, then 5 (the cap)");

    // Success on the third try; a refusal ends at once.
    let r = with_retries(policy, |n| async move {
        if n == 3 {
            Attempt::Sent
        } else {
            Attempt::Retry("x".into())
        }
    });
    assert_eq!(r.await, Ok(3));
    let t = Instant::now();
    let r = with_retries(policy, |_| async { Attempt::Refused("400".into()) }).await;
    assert_eq!(r, Err((1, "400".to_string())));
    assert_eq!(t.elapsed(), Duration::ZERO);
    assert_eq!(policy.delay(40), Duration::from_secs(5), "no overflow");
}

#[tokio::test]
async fn batches_are_an_object_or_an_array() {
    let one = super::sender::Sender::build(&WebhookConfig { batch_size: 1, ..holding(&["client.connected"]) })
        .expect("sender");
    assert_eq!(&one.body(vec!["{\"a\":1}".into()])[..], b"{\"a\":1}");
    let many = super::sender::Sender::build(&holding(&["client.connected"])).expect("sender");
    assert_eq!(&many.body(vec!["{\"a\":1}".into()])[..], b"[{\"a\":1}]");
    assert_eq!(&many.body(vec!["{}".into(), "{}".into()])[..], b"[{},{}]");
}

#[tokio::test]
async fn the_sender_ends_with_its_module_and_a_successor_keeps_the_queue() {
    let broker = Broker::new(Default::default());
    let cfg = holding(&["message.dropped"]);
    let w = Webhook::new(&broker, &cfg, None).expect("build");
    w.dropped(&message("a", b"", QoS::AtMostOnce, None), DropReason::NoSubscribers, None);
    // A rebuild shares the queue (and what waits in it).
    let w2 = Webhook::new(&broker, &WebhookConfig { max_queue_len: 5, ..cfg.clone() }, Some(&w)).expect("rebuild");
    assert!(Arc::ptr_eq(w.queue(), w2.queue()));
    drop(w);
    assert_eq!(w2.queue().queued(), 1);
    let weak = Arc::downgrade(w2.queue());
    drop(w2);
    // The sender held the last reference: it is gone once the task ended.
    let end = std::time::Instant::now() + Duration::from_secs(5);
    while weak.upgrade().is_some() {
        assert!(std::time::Instant::now() < end, "the sender task did not end");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[test]
fn config_errors_name_their_key() {
    let keys = |c: WebhookConfig| c.validate().into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(keys(WebhookConfig::default()), Vec::<String>::new(), "the defaults are valid");
    assert_eq!(keys(WebhookConfig { enabled: true, ..WebhookConfig::default() }), ["url"]);
    let bad = WebhookConfig {
        url: Some("https://example.com/x".into()),
        events: vec!["client.connected".into(), "session.subscribed".into(), "nope".into()],
        topics: vec!["a/#/b".into()],
        batch_size: 0,
        max_in_flight: 0,
        max_queue_len: 0,
        max_queue_bytes: 10,
        max_attempts: 0,
        max_retry_backoff: Duration::from_millis(1),
        ..WebhookConfig::default()
    };
    let errs = bad.validate();
    let ks: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        ks,
        [
            "url",
            "events",
            "events",
            "topics",
            "batch_size",
            "max_in_flight",
            "max_queue_len",
            "max_queue_bytes",
            "max_attempts",
            "max_retry_backoff"
        ]
    );
    assert!(errs[0].1.contains("tls.enable"), "{errs:?}");
    assert!(errs[1].1.contains("client.subscribe"), "session.subscribed points to client.subscribe: {errs:?}");
    assert!(errs[2].1.contains("unknown event"), "{errs:?}");
    let creds = WebhookConfig { url: Some("http://u:p@127.0.0.1/".into()), ..WebhookConfig::default() };
    assert!(creds.validate()[0].1.contains("credentials"));
}

#[test]
fn config_parses_sizes_durations_and_secret_headers() {
    let cfg: WebhookConfig = toml::from_str(
        r#"
        enabled = true
        url = "http://127.0.0.1:8080/events"
        events = ["message.publish"]
        payload_encoding = "base64"
        max_payload = "1KiB"
        max_queue_bytes = "2MiB"
        batch_linger = "10ms"
        headers = { authorization = "Bearer x", "x-token" = { env = "WEBHOOK_TEST_TOKEN" } }
        "#,
    )
    .expect("parse");
    assert_eq!(cfg.max_payload, 1024);
    assert_eq!(cfg.max_queue_bytes, 2 << 20);
    assert_eq!(cfg.batch_linger, Duration::from_millis(10));
    assert_eq!(cfg.payload_encoding, PayloadEncoding::Base64);
    assert!(cfg.validate().is_empty());
    assert!(!format!("{cfg:?}").contains("Bearer"), "header values are redacted");
    // The env variable is read when the module is built: missing, the
    // error names the header.
    let e = super::sender::Sender::build(&cfg).expect_err("unset env");
    assert_eq!(e.0, "headers.x-token");
    assert!(toml::from_str::<WebhookConfig>("bogus = 1").is_err(), "unknown keys are refused");
}
