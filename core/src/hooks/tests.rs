//! The runners' rules, and every hook point fired by a real connection
//! (the state machine over an in-memory stream).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;
use crate::broker::Broker;
use crate::codec::reason::ReasonCode;
use crate::codec::{self, Connect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS, Subscribe};
use crate::connection::{serve, DisconnectReason, ListenerContext};
use crate::gate::{ClientInfo, LoopbackOnly};
use crate::message::Message;
use crate::metrics::DropReason;
use crate::topic::TopicName;

/// Records every event it sees, as text, in order.
#[derive(Default)]
struct Recorder {
    tag: &'static str,
    log: Arc<Mutex<Vec<String>>>,
    subscribe: Option<Flow>,
    rewrite_filter: Option<&'static str>,
    publish: Option<PublishFlow>,
    rewrite_topic: Option<&'static str>,
    taken: Mutex<Vec<Arc<Message>>>,
}

impl Recorder {
    fn new(tag: &'static str, log: &Arc<Mutex<Vec<String>>>) -> Recorder {
        Recorder { tag, log: Arc::clone(log), ..Recorder::default() }
    }
    fn note(&self, s: String) {
        self.log.lock().push(format!("{}:{s}", self.tag));
    }
}

impl Module for Recorder {
    fn name(&self) -> &str {
        self.tag
    }
    fn register(self: Arc<Self>, h: &mut HookSetBuilder) {
        h.on_client_connected(self.clone())
            .on_client_disconnected(self.clone())
            .on_session_created(self.clone())
            .on_session_resumed(self.clone())
            .on_session_ended(self.clone())
            .on_subscribe(self.clone())
            .on_unsubscribe(self.clone())
            .on_message_publish(self.clone())
            .on_message_delivered(self.clone())
            .on_message_acked(self.clone())
            .on_message_dropped(self);
    }
}

impl OnClientConnected for Recorder {
    fn client_connected(&self, ev: &ClientConnected<'_>) {
        self.note(format!("connected {} present={}", ev.client.client_id, ev.session_present));
    }
}
impl OnClientDisconnected for Recorder {
    fn client_disconnected(&self, ev: &ClientDisconnected<'_>) {
        self.note(format!("disconnected {} {:?}", ev.client.client_id, ev.reason));
    }
}
impl OnSessionCreated for Recorder {
    fn session_created(&self, ev: &SessionEvent<'_>) {
        self.note(format!("session created {}", ev.client_id));
    }
}
impl OnSessionResumed for Recorder {
    fn session_resumed(&self, ev: &SessionEvent<'_>) {
        self.note(format!("session resumed {}", ev.client_id));
    }
}
impl OnSessionEnded for Recorder {
    fn session_ended(&self, ev: &SessionEvent<'_>, reason: SessionEndReason) {
        self.note(format!("session ended {} {reason:?}", ev.client_id));
    }
}
impl OnSubscribe for Recorder {
    fn subscribe(&self, _c: &ClientInfo, sub: &mut Subscription) -> Flow {
        self.note(format!("subscribe {}", sub.filter()));
        if let Some(f) = self.rewrite_filter {
            sub.set_filter(f.to_string());
        }
        self.subscribe.unwrap_or(Flow::Continue)
    }
}
impl OnUnsubscribe for Recorder {
    fn unsubscribe(&self, _c: &ClientInfo, sub: &mut Subscription) -> Flow {
        self.note(format!("unsubscribe {}", sub.filter()));
        Flow::Continue
    }
}
impl OnMessagePublish for Recorder {
    fn publish(&self, _from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow {
        self.note(format!("publish {}", msg.topic()));
        if let Some(t) = self.rewrite_topic {
            msg.set_topic(TopicName::new(t).expect("topic"));
        }
        self.publish.unwrap_or(PublishFlow::Continue)
    }
    fn take(&self, msg: Arc<Message>) -> Option<crate::durable::Commit> {
        self.note(format!("take {}", msg.topic));
        self.taken.lock().push(msg);
        None
    }
}
impl OnMessageDelivered for Recorder {
    fn delivered(&self, c: &ClientInfo, msg: &Message, qos: QoS) {
        self.note(format!("delivered {} to {} qos{}", msg.topic, c.client_id, qos as u8));
    }
}
impl OnMessageAcked for Recorder {
    fn acked(&self, c: &ClientInfo, msg: &Message) {
        self.note(format!("acked {} by {}", msg.topic, c.client_id));
    }
}
impl OnMessageDropped for Recorder {
    fn dropped(&self, msg: &Message, reason: DropReason, to: Option<&str>) {
        self.note(format!("dropped {} {} {:?}", msg.topic, reason.name(), to));
    }
}

fn client() -> ClientInfo {
    ClientInfo {
        client_id: Arc::from("c"),
        username: None,
        peer: "127.0.0.1:1".parse().expect("addr"),
        listener: Arc::from("l"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

fn hooks_of(mods: Vec<Arc<dyn Module>>) -> Hooks {
    let hooks = Hooks::default();
    let mut b = HookSetBuilder::new();
    for m in mods {
        b.module(m);
    }
    hooks.install(b.build());
    hooks
}

#[test]
fn nothing_registered_means_nothing_wanted() {
    let hooks = Hooks::default();
    assert!(!hooks.wants(HookPoint::MessagePublish));
    let mut sub = Subscription::new("a/b".into(), Default::default());
    assert_eq!(hooks.subscribe(&client(), &mut sub), SubscribeOutcome::Go);
    let log = Arc::new(Mutex::new(Vec::new()));
    let hooks = hooks_of(vec![Arc::new(Recorder::new("a", &log))]);
    assert!(hooks.wants(HookPoint::MessagePublish) && hooks.wants(HookPoint::MessageDropped));
    assert_eq!(hooks.modules(), vec!["a".to_string()]);
    hooks.install(HookSet::default());
    assert!(!hooks.wants(HookPoint::ClientConnected), "an empty set clears every bit");
}

#[test]
fn hooks_run_in_registration_order_and_stop_or_refuse_ends_the_walk() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let a = Recorder { rewrite_filter: Some("x/#"), ..Recorder::new("a", &log) };
    let b = Recorder { subscribe: Some(Flow::Refuse(ReasonCode::QuotaExceeded)), ..Recorder::new("b", &log) };
    let c = Recorder::new("c", &log);
    let hooks = hooks_of(vec![Arc::new(a), Arc::new(b), Arc::new(c)]);
    let mut sub = Subscription::new("a/#".into(), Default::default());
    assert_eq!(hooks.subscribe(&client(), &mut sub), SubscribeOutcome::Refused(ReasonCode::QuotaExceeded));
    assert_eq!(*log.lock(), vec!["a:subscribe a/#", "b:subscribe x/#"], "b sees a's rewrite; c is not asked");
    assert!(sub.rewritten());

    log.lock().clear();
    let a = Recorder { subscribe: Some(Flow::Stop), ..Recorder::new("a", &log) };
    let hooks = hooks_of(vec![Arc::new(a), Arc::new(Recorder::new("b", &log))]);
    let mut sub = Subscription::new("f".into(), Default::default());
    assert_eq!(hooks.subscribe(&client(), &mut sub), SubscribeOutcome::Go);
    assert_eq!(*log.lock(), vec!["a:subscribe f"], "Stop accepts as is");
    assert!(!sub.rewritten());
}

#[test]
fn publish_flows() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let c = client();
    let msg = || {
        PublishedMessage::new(
            TopicName::new("t").expect("t"),
            Bytes::new(),
            QoS::AtMostOnce,
            false,
            Properties::default(),
        )
    };
    // Rewrite then continue: routed with the new topic.
    let a = Recorder { rewrite_topic: Some("u"), ..Recorder::new("a", &log) };
    let hooks = hooks_of(vec![Arc::new(a), Arc::new(Recorder::new("b", &log))]);
    let mut m = msg();
    assert!(matches!(hooks.publish(Publisher::Client(&c), &mut m), PublishOutcome::Route));
    assert_eq!((m.topic().as_str(), m.topic_rewritten()), ("u", true));
    assert_eq!(*log.lock(), vec!["a:publish t", "b:publish u"]);
    // Drop ends the walk with its code.
    log.lock().clear();
    let a = Recorder {
        publish: Some(PublishFlow::Drop(ReasonCode::ImplementationSpecificError)),
        ..Recorder::new("a", &log)
    };
    let hooks = hooks_of(vec![Arc::new(a), Arc::new(Recorder::new("b", &log))]);
    let out = hooks.publish(Publisher::Client(&c), &mut msg());
    assert!(matches!(out, PublishOutcome::Dropped(ReasonCode::ImplementationSpecificError)));
    assert_eq!(*log.lock(), vec!["a:publish t"]);
    // Take hands over to the taker.
    log.lock().clear();
    let a = Arc::new(Recorder { publish: Some(PublishFlow::Take), ..Recorder::new("a", &log) });
    let hooks = hooks_of(vec![a.clone(), Arc::new(Recorder::new("b", &log))]);
    match hooks.publish(Publisher::Client(&c), &mut msg()) {
        PublishOutcome::Taken(h) => {
            let commit = h.take(Arc::new(Message {
                topic: TopicName::new("t").expect("t"),
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: false,
                properties: None,
                publisher: None,
                expires_at: None,
            }));
            assert!(commit.is_none(), "the recorder stores nothing");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(*log.lock(), vec!["a:publish t", "a:take t"]);
    assert_eq!(a.taken.lock().len(), 1);
}

// ---------------------------------------------------------------------------
// Every hook point through a connection.

struct Client {
    io: DuplexStream,
    buf: BytesMut,
    v: ProtocolVersion,
}

impl Client {
    async fn send(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        codec::encode(&p, self.v, &mut out).expect("encode");
        self.io.write_all(&out).await.expect("write");
    }
    async fn recv(&mut self) -> Option<Packet> {
        loop {
            if let Some(p) = codec::decode(&mut self.buf, Some(self.v), 1 << 20).expect("decode") {
                return Some(p);
            }
            let n = tokio::time::timeout(Duration::from_secs(5), self.io.read_buf(&mut self.buf))
                .await
                .expect("timeout")
                .expect("read");
            if n == 0 {
                return None;
            }
        }
    }
}

async fn connect(broker: &Arc<Broker>, id: &str, clean: bool) -> (Client, tokio::task::JoinHandle<()>) {
    let (a, b) = tokio::io::duplex(1 << 16);
    let l = ListenerContext::new("l", 10).admit().expect("slot");
    let task = tokio::spawn(serve(
        Arc::clone(broker),
        Arc::new(LoopbackOnly),
        l,
        a,
        "127.0.0.1:9".parse().expect("addr"),
        None,
    ));
    let v = ProtocolVersion::V5;
    let mut c = Client { io: b, buf: BytesMut::new(), v };
    let mut props = Properties::default();
    if !clean {
        props.session_expiry_interval = Some(60);
    }
    c.send(Packet::Connect(Box::new(Connect {
        protocol: v,
        bridge: false,
        clean_start: clean,
        keep_alive: 0,
        client_id: id.into(),
        will: None,
        username: None,
        password: None,
        properties: props,
    })))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::ConnAck(a)) if a.code == 0));
    (c, task)
}

fn publish(topic: &str, qos: QoS, id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id: id,
        payload: Bytes::from_static(b"p"),
        properties: Properties::default(),
    })
}

#[tokio::test]
async fn a_connection_fires_every_hook_point() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let broker = Broker::new(Default::default());
    let rec = Arc::new(Recorder::new("r", &log));
    let mut b = HookSetBuilder::new();
    b.module(rec);
    broker.hooks.install(b.build());

    let (mut c, task) = connect(&broker, "dev", false).await;
    c.send(Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(
            "t/#".into(),
            crate::codec::SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
        )],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::SubAck(_))));
    c.send(publish("t/1", QoS::AtLeastOnce, Some(2))).await;
    let mut acked = false;
    let mut delivered = None;
    while !acked || delivered.is_none() {
        match c.recv().await {
            Some(Packet::PubAck(r)) if r.packet_id == 2 => acked = true,
            Some(Packet::Publish(p)) => delivered = p.packet_id,
            other => panic!("{other:?}"),
        }
    }
    c.send(Packet::PubAck(PubResp::ok(delivered.expect("id")))).await;
    c.send(publish("nobody/here", QoS::AtMostOnce, None)).await;
    c.send(Packet::Unsubscribe(crate::codec::Unsubscribe {
        packet_id: 3,
        filters: vec!["t/#".into()],
        properties: Properties::default(),
    }))
    .await;
    assert!(matches!(c.recv().await, Some(Packet::UnsubAck(_))));
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    // A clean reconnect replaces the session.
    let (c, task) = connect(&broker, "dev", true).await;
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;

    let got = log.lock().clone();
    let want = [
        "r:session created dev",
        "r:connected dev present=false",
        "r:subscribe t/#",
        "r:publish t/1",
        "r:delivered t/1 to dev qos1",
        "r:acked t/1 by dev",
        "r:publish nobody/here",
        "r:dropped nobody/here no_subscribers None",
        "r:unsubscribe t/#",
        &format!("r:disconnected dev {:?}", DisconnectReason::PeerClosed),
        "r:session ended dev Replaced",
        "r:session created dev",
        "r:connected dev present=false",
        // A clean session ends as its connection detaches, before the
        // connection's own end is reported.
        "r:session ended dev ConnectionClosed",
        &format!("r:disconnected dev {:?}", DisconnectReason::PeerClosed),
    ];
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_taken_message_is_handed_over_after_the_acl_and_not_routed() {
    let log = Arc::new(Mutex::new(Vec::new()));
    let broker = Broker::new(Default::default());
    let taker = Arc::new(Recorder {
        publish: Some(PublishFlow::Take),
        rewrite_topic: Some("real/topic"),
        ..Recorder::new("d", &log)
    });
    let mut b = HookSetBuilder::new();
    b.module(taker.clone());
    broker.hooks.install(b.build());
    let (mut c, task) = connect(&broker, "pub", true).await;
    c.send(publish("$delayed/1/real/topic", QoS::AtLeastOnce, Some(1))).await;
    assert!(matches!(c.recv().await, Some(Packet::PubAck(r)) if r.reason == 0), "accepted, not 0x10");
    drop(c);
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let taken = taker.taken.lock();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].topic.as_str(), "real/topic");
    assert!(!log.lock().iter().any(|l| l.contains("no_subscribers")), "not routed: {:?}", log.lock());
}
