use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use portcullis_core::codec::{ProtocolVersion, QoS, RetainHandling};
use portcullis_core::gate::{Access, AclOutcome, AuthOutcome, ClientInfo, ConnectInfo, Gate, GateFuture};
use portcullis_core::hooks::{ClientConnected, OnClientConnected};
use portcullis_core::message::Message;
use portcullis_core::owner::SessionOwner;
use portcullis_core::session::Session;
use portcullis_core::settings::BrokerSettings;
use portcullis_core::topic::TopicName;

use super::subscribe::{subscribe, Outcome};
use super::{AutoSubscribe, AutoSubscribeConfig, AutoSubscribeStats, TopicTemplate};

fn tpl(topic: &str) -> TopicTemplate {
    TopicTemplate { topic: topic.to_string(), qos: 0, no_local: false, retain_as_published: false, retain_handling: 0 }
}

fn cfg(topics: Vec<TopicTemplate>) -> AutoSubscribeConfig {
    AutoSubscribeConfig { enabled: true, topics, ..AutoSubscribeConfig::default() }
}

fn keys(c: &AutoSubscribeConfig) -> Vec<String> {
    c.validate().into_iter().map(|(k, _)| k).collect()
}

#[test]
fn parses_with_defaults_and_refuses_unknown_keys() {
    let c: AutoSubscribeConfig = toml::from_str(
        "enabled = true\ntopics = [{ topic = \"c/${clientid}\" }, { topic = \"u/${username}/#\", qos = 2, no_local = true, retain_as_published = true, retain_handling = 1 }]\n",
    )
    .unwrap();
    assert_eq!(c.topics[0], tpl("c/${clientid}"));
    let o = c.topics[1].options().unwrap();
    assert_eq!(o.qos, QoS::ExactlyOnce);
    assert!(o.no_local && o.retain_as_published);
    assert_eq!(o.retain_handling, RetainHandling::OnNewSubscribe);
    assert_eq!(c.max_pending, 10_000);
    assert!(c.validate().is_empty());
    let e = toml::from_str::<AutoSubscribeConfig>("topics = [{ topic = \"a\", nl = 1 }]\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `nl`"), "{e}");
    assert!(!AutoSubscribeConfig::default().enabled);
}

#[test]
fn validation_names_each_bad_template() {
    let mut bad_qos = tpl("q");
    bad_qos.qos = 3;
    let mut bad_rh = tpl("r");
    bad_rh.retain_handling = 3;
    let c = cfg(vec![
        tpl("ok/${clientid}/x"),
        tpl("a/${host}"),
        tpl("a/#/b"),
        tpl("dev-${clientid}+"),
        tpl(""),
        bad_qos,
        bad_rh,
        tpl("ok/${clientid}/x"),
        tpl("$share/g/${username}/in"),
        tpl("a/${clientid"),
    ]);
    assert_eq!(
        keys(&c),
        [
            "auto_subscribe.topics[1].topic",
            "auto_subscribe.topics[2].topic",
            "auto_subscribe.topics[3].topic",
            "auto_subscribe.topics[4].topic",
            "auto_subscribe.topics[5].qos",
            "auto_subscribe.topics[6].retain_handling",
            "auto_subscribe.topics[7].topic",
            "auto_subscribe.topics[9].topic",
        ]
    );
    let msgs: Vec<String> = c.validate().into_iter().map(|(_, m)| m).collect();
    assert!(msgs[0].contains("unknown placeholder `${host}`"), "{msgs:?}");
    assert!(msgs[2].contains("not a valid topic filter"), "{msgs:?}");
    assert!(msgs[6].contains("listed twice"), "{msgs:?}");
    let zero = AutoSubscribeConfig { max_pending: 0, ..AutoSubscribeConfig::default() };
    assert_eq!(keys(&zero), ["auto_subscribe.max_pending"]);
}

/// Allows everything but filters under `deny/`.
#[derive(Debug)]
struct DenyUnder;

impl Gate for DenyUnder {
    fn authenticate<'a>(&'a self, _info: &'a ConnectInfo) -> GateFuture<'a, AuthOutcome> {
        Box::pin(async { AuthOutcome::allow(false) })
    }
    fn authorize<'a>(&'a self, _client: &'a ClientInfo, access: Access<'a>) -> GateFuture<'a, AclOutcome> {
        let deny = matches!(access, Access::Subscribe { filter, .. } if filter.filter.as_str().starts_with("deny/"));
        Box::pin(async move {
            match deny {
                true => AclOutcome::DenyDisconnect,
                false => AclOutcome::Allow,
            }
        })
    }
    fn needs_delivery_check(&self, _c: &ClientInfo, f: &portcullis_core::topic::SubscriptionFilter) -> bool {
        f.filter.as_str() == "#"
    }
}

fn client(id: &str, username: Option<&str>, conn_id: u64) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: username.map(Arc::from),
        peer: "127.0.0.1:1".parse().unwrap(),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

fn session(c: &ClientInfo) -> Arc<Session> {
    let owner = SessionOwner::of(c.username.as_ref(), None, &c.listener);
    let s = Arc::new(Session::new(c.client_id.clone(), owner, None));
    let (tx, _rx) = tokio::sync::oneshot::channel();
    s.attach(c.conn_id, tx);
    s
}

fn retained(broker: &Broker, topic: &str, qos: QoS) {
    let msg = Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from_static(b"r"),
        qos,
        retain: true,
        properties: None,
        publisher: None,
        expires_at: None,
    });
    broker.retain(&msg);
}

fn opts(qos: QoS, rh: RetainHandling) -> portcullis_core::codec::SubscriptionOptions {
    portcullis_core::codec::SubscriptionOptions { qos, no_local: true, retain_as_published: true, retain_handling: rh }
}

#[tokio::test]
async fn one_template_like_a_client_subscribe() {
    let broker = Broker::new(BrokerSettings::default());
    retained(&broker, "in/c1", QoS::ExactlyOnce);
    let c = client("c1", None, 1);
    let s = session(&c);
    let gate = DenyUnder;

    // Allowed: subscribed with its options; the retained message queued at
    // the granted QoS.
    let o = opts(QoS::AtLeastOnce, RetainHandling::OnSubscribe);
    let out = subscribe(&broker, &gate, &c, &s, "in/c1".into(), o).await;
    assert_eq!(out, Outcome::Subscribed { filter: "in/c1".into(), retained: 1 });
    {
        let rec = s.subscription("in/c1").expect("subscribed");
        assert_eq!(rec.options, o);
        assert!(!rec.check);
        let q: Vec<_> =
            s.queued_snapshot().iter().map(|d| (d.msg.topic.as_str().to_string(), d.qos, d.retain)).collect();
        assert_eq!(q, [("in/c1".to_string(), QoS::AtLeastOnce, true)]);
    }
    // Retain handling 1: not again for a subscription the session holds.
    let o1 = opts(QoS::AtLeastOnce, RetainHandling::OnNewSubscribe);
    let out = subscribe(&broker, &gate, &c, &s, "in/c1".into(), o1).await;
    assert_eq!(out, Outcome::Subscribed { filter: "in/c1".into(), retained: 0 });
    // 2: never.
    let o2 = opts(QoS::AtLeastOnce, RetainHandling::Never);
    let out = subscribe(&broker, &gate, &c, &s, "in/+".into(), o2).await;
    assert_eq!(out, Outcome::Subscribed { filter: "in/+".into(), retained: 0 });

    // Denied (even with deny_action = disconnect): not subscribed.
    let out = subscribe(&broker, &gate, &c, &s, "deny/c1".into(), o).await;
    assert_eq!(out, Outcome::Denied { filter: "deny/c1".into() });
    assert!(s.subscription("deny/c1").is_none());

    // The gate's delivery-check mark is kept.
    let out = subscribe(&broker, &gate, &c, &s, "#".into(), o2).await;
    assert!(matches!(out, Outcome::Subscribed { .. }));
    assert!(s.subscription("#").expect("subscribed").check);
    // A shared subscription gets no retained messages.
    let out = subscribe(&broker, &gate, &c, &s, "$share/g/in/c1".into(), o).await;
    assert_eq!(out, Outcome::Subscribed { filter: "$share/g/in/c1".into(), retained: 0 });
}

#[tokio::test]
async fn limits_apply_as_to_a_client_subscribe() {
    let mut settings = BrokerSettings::default();
    settings.limits.max_subscriptions = 1;
    settings.limits.max_topic_levels = 3;
    let broker = Broker::new(settings);
    let c = client("c1", None, 1);
    let s = session(&c);
    let o = opts(QoS::AtMostOnce, RetainHandling::Never);
    let out = subscribe(&broker, &DenyUnder, &c, &s, "a/b/c/d".into(), o).await;
    assert_eq!(out, Outcome::Refused { filter: "a/b/c/d".into(), why: "limits.max_topic_levels" });
    assert!(matches!(subscribe(&broker, &DenyUnder, &c, &s, "a".into(), o).await, Outcome::Subscribed { .. }));
    let out = subscribe(&broker, &DenyUnder, &c, &s, "b".into(), o).await;
    assert_eq!(out, Outcome::Refused { filter: "b".into(), why: "limits.max_subscriptions" });
    // Replacing the one it holds is no new subscription.
    assert!(matches!(subscribe(&broker, &DenyUnder, &c, &s, "a".into(), o).await, Outcome::Subscribed { .. }));
}

/// Waits (bounded) until no connect is being worked on.
async fn settle(m: &AutoSubscribe) {
    for _ in 0..500 {
        if m.inner.pending.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    panic!("auto-subscribe did not finish");
}

fn connected<'a>(c: &'a ClientInfo, gate: &'a Arc<dyn Gate>, s: &'a Arc<Session>) -> ClientConnected<'a> {
    ClientConnected { client: c, gate, session: s, keep_alive: 30, clean_start: true, session_present: false }
}

#[tokio::test]
async fn templates_per_client_in_order_counted() {
    let broker = Broker::new(BrokerSettings::default());
    let stats = Arc::new(AutoSubscribeStats::default());
    let c =
        cfg(vec![tpl("c/${clientid}/in"), tpl("deny/${clientid}"), tpl("u/${username}/in"), tpl("dev-${clientid}/x")]);
    let m = AutoSubscribe::new(&broker, &c, Arc::clone(&stats)).unwrap();
    let gate: Arc<dyn Gate> = Arc::new(DenyUnder);

    let alice = client("a1", Some("alice"), 1);
    let sa = session(&alice);
    m.client_connected(&connected(&alice, &gate, &sa));
    settle(&m).await;
    let subs: Vec<String> = sa.subscription_filters().iter().map(|k| k.to_string()).collect();
    assert_eq!(subs, ["c/a1/in", "dev-a1/x", "u/alice/in"]);

    // No username: nothing from the template that names it. A client id
    // that would add a level: nothing from the templates that use it.
    let anon = client("n1", None, 2);
    let sn = session(&anon);
    m.client_connected(&connected(&anon, &gate, &sn));
    let odd = client("x/+", Some("bob"), 3);
    let so = session(&odd);
    m.client_connected(&connected(&odd, &gate, &so));
    settle(&m).await;
    let subs: Vec<String> = sn.subscription_filters().iter().map(|k| k.to_string()).collect();
    assert_eq!(subs, ["c/n1/in", "dev-n1/x"]);
    let subs: Vec<String> = so.subscription_filters().iter().map(|k| k.to_string()).collect();
    assert_eq!(subs, ["u/bob/in"]);

    // A client that is gone gets nothing.
    let gone = client("g1", None, 4);
    let sg = session(&gone);
    sg.detach(4);
    m.client_connected(&connected(&gone, &gate, &sg));
    settle(&m).await;
    assert!(sg.subscription_filters().is_empty());

    let v: std::collections::HashMap<_, _> = stats.values().into_iter().collect();
    assert_eq!(v["subscribed"], 3 + 2 + 1);
    assert_eq!(v["denied"], 2, "one deny/ per client that rendered it");
    assert_eq!(v["skipped"], 1 + 3);
    assert_eq!(v["abandoned"], 4);
    assert_eq!(v["overloaded"], 0);
}

#[tokio::test]
async fn connects_beyond_max_pending_get_nothing() {
    let broker = Broker::new(BrokerSettings::default());
    let stats = Arc::new(AutoSubscribeStats::default());
    let c = AutoSubscribeConfig { max_pending: 1, ..cfg(vec![tpl("c/${clientid}")]) };
    let m = AutoSubscribe::new(&broker, &c, Arc::clone(&stats)).unwrap();
    let gate: Arc<dyn Gate> = Arc::new(DenyUnder);
    let (a, b) = (client("a", None, 1), client("b", None, 2));
    let (sa, sb) = (session(&a), session(&b));
    // Both hooks run before either task does (current-thread runtime).
    m.client_connected(&connected(&a, &gate, &sa));
    m.client_connected(&connected(&b, &gate, &sb));
    settle(&m).await;
    assert_eq!(sa.subscription_filters().len(), 1);
    assert!(sb.subscription_filters().is_empty());
    let v: std::collections::HashMap<_, _> = stats.values().into_iter().collect();
    assert_eq!(v["overloaded"], 1);
}
