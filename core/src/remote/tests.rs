//! The seam's own tests: a recording [`RemoteRouting`] shows what core
//! calls, and when (not a stand-in for a cluster: nothing is delivered
//! anywhere).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::*;
use crate::broker::{Broker, OpenError, OpenRequest, Routed};
use crate::codec::{QoS, SubscriptionOptions};
use crate::metrics::DropReason;
use crate::session::{Session, SubRecord};
use crate::settings::BrokerSettings;

/// Records every call; answers `has_interest` for the topics in
/// `interest`, and `locate` with `answer` (through a future when
/// `pending`).
#[derive(Debug, Default)]
struct Recorder {
    slot: u16,
    interest: Mutex<Vec<String>>,
    forwarded: Mutex<Vec<String>>,
    asked_interest: Mutex<Vec<String>>,
    edges: Mutex<Vec<String>>,
    located: Mutex<Vec<(String, bool, bool)>>,
    answer: Mutex<Option<LocateError>>,
    pending: bool,
}

impl Recorder {
    fn edges(&self) -> Vec<String> {
        std::mem::take(&mut *self.edges.lock())
    }
    fn forwarded(&self) -> Vec<String> {
        std::mem::take(&mut *self.forwarded.lock())
    }
}

fn key(f: &SubscriptionFilter) -> String {
    match &f.share_group {
        Some(g) => format!("{g}|{}", f.filter.as_str()),
        None => f.filter.as_str().to_owned(),
    }
}

impl RemoteRouting for Recorder {
    fn node_slot(&self) -> NodeSlot {
        NodeSlot(self.slot)
    }
    fn forward(&self, msg: &Arc<Message>, _commits: Option<&mut Vec<crate::durable::Commit>>) {
        self.forwarded.lock().push(msg.topic.as_str().to_owned());
    }
    fn has_interest(&self, topic: &TopicName) -> bool {
        self.asked_interest.lock().push(topic.as_str().to_owned());
        self.interest.lock().iter().any(|t| t == topic.as_str())
    }
    fn filter_added(&self, filter: &SubscriptionFilter) {
        self.edges.lock().push(format!("+{}", key(filter)));
    }
    fn filter_removed(&self, filter: &SubscriptionFilter) {
        self.edges.lock().push(format!("-{}", key(filter)));
    }
    fn locate<'a>(&'a self, req: LocateRequest<'a>) -> Locate<'a> {
        self.located.lock().push((req.client_id.to_string(), req.clean_start, req.held_here));
        let answer = match *self.answer.lock() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        if self.pending {
            Locate::Pending(Box::pin(async move {
                tokio::task::yield_now().await;
                answer
            }))
        } else {
            Locate::Done(answer)
        }
    }
}

fn broker_with(rec: &Arc<Recorder>) -> Arc<Broker> {
    let b = Broker::new(BrokerSettings::default());
    b.set_remote(Arc::clone(rec) as Arc<dyn RemoteRouting>).unwrap();
    b
}

fn owner() -> SessionOwner {
    SessionOwner::User(Arc::from("u"))
}

fn open(b: &Arc<Broker>, id: &str, clean_start: bool, expiry: Option<Duration>) -> Arc<Session> {
    let id: Arc<str> = Arc::from(id);
    let owner = owner();
    let req = OpenRequest { client_id: &id, owner: &owner, clean_start, expiry, conn_id: b.next_conn_id() };
    b.open_session(req).unwrap().session
}

fn sub(b: &Broker, s: &Arc<Session>, raw: &str) {
    let f = SubscriptionFilter::parse(raw).unwrap();
    let rec = SubRecord {
        filter: f.clone(),
        options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
        subscription_id: None,
        check: false,
    };
    b.subscribe(s, f, rec);
}

fn queued(s: &Session) -> usize {
    s.lock().queue_len()
}

fn msg(topic: &str, retain: bool) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtLeastOnce,
        retain,
        properties: None,
        publisher: None,
        expires_at: None,
    })
}

#[test]
fn local_publishes_are_forwarded_once_and_remote_ones_never() {
    let rec = Arc::new(Recorder::default());
    let b = broker_with(&rec);
    let s = open(&b, "s", false, None);
    sub(&b, &s, "a/+");
    // A local publish: routed here, forwarded once, matched or not.
    assert_eq!(b.publish(msg("a/1", false)), Routed { local: 1, remote: false, remote_congested: false });
    b.publish(msg("nobody/here", false));
    assert_eq!(rec.forwarded(), ["a/1", "nobody/here"]);
    // From another node: delivered here, never forwarded (no echo).
    assert_eq!(b.deliver_remote(&msg("a/2", false)), 1);
    assert_eq!(b.deliver_remote(&msg("nobody/here", false)), 0);
    b.retain_remote(&msg("r/1", true));
    assert!(rec.forwarded().is_empty());
    assert_eq!(queued(&s), 2);
    // $SYS stays on its node.
    sub(&b, &s, "$SYS/#");
    b.publish_sys("$SYS/brokers/n1/uptime", "1", false);
    b.publish_sys_event("$SYS/brokers/n1/clients/x/connected", QoS::AtMostOnce, || "{}".into());
    assert_eq!(queued(&s), 4);
    assert!(rec.forwarded().is_empty());
}

#[test]
fn no_matching_subscribers_only_when_no_node_has_one() {
    let rec = Arc::new(Recorder::default());
    rec.interest.lock().push("far/away".into());
    let b = broker_with(&rec);
    let s = open(&b, "s", false, None);
    sub(&b, &s, "near/+");
    // Local match: remote interest is not even asked.
    let r = b.publish(msg("near/1", false));
    assert!(r.matched() && r.local == 1 && !r.remote);
    assert!(rec.asked_interest.lock().is_empty());
    // Only another node: matched, and not counted dropped.
    let r = b.publish(msg("far/away", false));
    assert_eq!(r, Routed { local: 0, remote: true, remote_congested: false });
    assert!(r.matched());
    assert_eq!(b.metrics.dropped_count(DropReason::NoSubscribers), 0);
    // Nobody anywhere: 0x10, and counted.
    let r = b.publish(msg("nowhere", false));
    assert!(!r.matched());
    assert_eq!(b.metrics.dropped_count(DropReason::NoSubscribers), 1);
    // Without a remote: as before.
    let single = Broker::new(BrokerSettings::default());
    assert!(!single.publish(msg("far/away", false)).matched());
    assert_eq!(single.metrics.dropped_count(DropReason::NoSubscribers), 1);
}

#[test]
fn filter_edges_are_reference_counted_per_key() {
    let rec = Arc::new(Recorder::default());
    let b = broker_with(&rec);
    let (s1, s2) = (open(&b, "s1", false, None), open(&b, "s2", false, None));
    // Two sessions on one filter: one add, one remove at the end.
    sub(&b, &s1, "a/b");
    sub(&b, &s2, "a/b");
    sub(&b, &s1, "a/b"); // a resubscription is no edge
    assert_eq!(rec.edges(), ["+a/b"]);
    assert!(b.unsubscribe(&s1, "a/b"));
    assert!(rec.edges().is_empty());
    assert!(b.unsubscribe(&s2, "a/b"));
    assert_eq!(rec.edges(), ["-a/b"]);
    // Shared groups are keys of their own, per group; $queue is a group.
    sub(&b, &s1, "$share/g1/a/b");
    sub(&b, &s2, "$share/g1/a/b");
    sub(&b, &s1, "$share/g2/a/b");
    sub(&b, &s2, "a/b");
    sub(&b, &s1, "$queue/a/b");
    assert_eq!(rec.edges(), ["+g1|a/b", "+g2|a/b", "+a/b", "+$queue|a/b"]);
    b.unsubscribe(&s1, "$share/g1/a/b");
    assert!(rec.edges().is_empty(), "s2 is still in g1");
    b.unsubscribe(&s2, "$share/g1/a/b");
    assert_eq!(rec.edges(), ["-g1|a/b"]);
    // Wildcards are keys as written.
    sub(&b, &s1, "a/#");
    sub(&b, &s2, "+/b");
    assert_eq!(rec.edges(), ["+a/#", "++/b"]);
}

#[tokio::test(start_paused = true)]
async fn session_end_expiry_and_clean_takeover_remove_their_filters() {
    let rec = Arc::new(Recorder::default());
    let b = broker_with(&rec);
    // A takeover with clean start ends the old session: its filters go.
    let s = open(&b, "t", false, None);
    sub(&b, &s, "x/1");
    sub(&b, &s, "$share/g/x/2");
    assert_eq!(rec.edges(), ["+x/1", "+g|x/2"]);
    let s2 = open(&b, "t", true, None);
    let mut gone = rec.edges();
    gone.sort();
    assert_eq!(gone, ["-g|x/2", "-x/1"]);
    // A resuming takeover keeps them: no edge.
    sub(&b, &s2, "x/3");
    assert_eq!(rec.edges(), ["+x/3"]);
    let s3 = open(&b, "t", false, None);
    assert!(Arc::ptr_eq(&s2, &s3));
    assert!(rec.edges().is_empty());
    // Expiry: the session ends after its expiry, and its filters with it.
    let conn = b.next_conn_id();
    let id: Arc<str> = Arc::from("e");
    let o = owner();
    let e = b
        .open_session(OpenRequest {
            client_id: &id,
            owner: &o,
            clean_start: true,
            expiry: Some(Duration::from_secs(5)),
            conn_id: conn,
        })
        .unwrap();
    sub(&b, &e.session, "y");
    assert_eq!(rec.edges(), ["+y"]);
    b.close_session(&e.session, conn);
    tokio::time::sleep(Duration::from_secs(6)).await;
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(rec.edges(), ["-y"]);
    assert!(b.find_session("e").is_none());
}

#[test]
fn set_remote_announces_the_filters_that_exist() {
    let b = Broker::new(BrokerSettings::default());
    let (s1, s2) = (open(&b, "s1", false, None), open(&b, "s2", false, None));
    sub(&b, &s1, "a");
    sub(&b, &s2, "a");
    sub(&b, &s2, "$share/g/a");
    let rec = Arc::new(Recorder::default());
    b.set_remote(Arc::clone(&rec) as Arc<dyn RemoteRouting>).unwrap();
    let mut edges = rec.edges();
    edges.sort();
    assert_eq!(edges, ["+a", "+g|a"]);
    // Once only.
    assert!(b.set_remote(Arc::new(Recorder::default())).is_err());
}

#[test]
fn inbound_messages_skip_local_groups_unless_addressed_to_one() {
    let rec = Arc::new(Recorder::default());
    let b = broker_with(&rec);
    let (m1, m2, plain) = (open(&b, "m1", false, None), open(&b, "m2", false, None), open(&b, "p", false, None));
    sub(&b, &m1, "$share/g/a/+");
    sub(&b, &m2, "$share/g/a/+");
    sub(&b, &plain, "a/#");
    // A normal inbound message: the plain subscriber only.
    assert_eq!(b.deliver_remote(&msg("a/1", false)), 1);
    assert_eq!((queued(&m1), queued(&m2), queued(&plain)), (0, 0, 1));
    // For group g of a/+: one local member each time, round robin.
    let f = SubscriptionFilter::parse("$share/g/a/+").unwrap();
    assert!(b.deliver_remote_shared(&msg("a/2", false), &f));
    assert!(b.deliver_remote_shared(&msg("a/3", false), &f));
    assert_eq!((queued(&m1), queued(&m2), queued(&plain)), (1, 1, 1));
    // A group with no member here, or a filter that is not shared.
    assert!(!b.deliver_remote_shared(&msg("a/4", false), &SubscriptionFilter::parse("$share/h/a/+").unwrap()));
    assert!(!b.deliver_remote_shared(&msg("a/4", false), &SubscriptionFilter::parse("a/+").unwrap()));
    // A local publish with a remote: shared groups are left to the
    // transport (it comes back through deliver_remote_shared).
    let r = b.publish(msg("a/5", false));
    assert_eq!(r.local, 1);
    assert_eq!((queued(&m1), queued(&m2), queued(&plain)), (1, 1, 2));
    assert_eq!(rec.forwarded(), ["a/5"]);
}

#[test]
fn a_retained_message_from_another_node_is_kept_here_without_routing() {
    let rec = Arc::new(Recorder::default());
    let b = broker_with(&rec);
    let s = open(&b, "s", false, None);
    sub(&b, &s, "r/#");
    b.retain_remote(&msg("r/1", true));
    assert!(b.retained.get("r/1").is_some(), "new local subscribers will see it");
    assert_eq!(queued(&s), 0, "its live delivery is deliver_remote's");
    assert!(rec.forwarded().is_empty());
    // A local retained publish is forwarded with its flag.
    b.publish(msg("r/2", true));
    assert_eq!(rec.forwarded(), ["r/2"]);
}

#[test]
fn connection_ids_carry_the_node_slot_and_generations_are_connection_ids() {
    let single = Broker::new(BrokerSettings::default());
    let a = single.next_conn_id();
    assert_eq!(a >> 48, 0, "slot 0 without a cluster");
    assert_eq!(single.next_conn_id(), a + 1);
    let rec = Arc::new(Recorder { slot: 7, ..Recorder::default() });
    let b = broker_with(&rec);
    let id = b.next_conn_id();
    assert_eq!(id >> 48, 7);
    assert!(id & ((1 << 48) - 1) > 1 << 16, "the counter starts at the start time");
    let s = open(&b, "g", false, None);
    let g1 = s.lock().generation;
    assert_eq!(g1 >> 48, 7, "a generation is the attaching connection's id");
    let s2 = open(&b, "g", false, None);
    assert!(Arc::ptr_eq(&s, &s2));
    let g2 = s.lock().generation;
    assert!(g2 != g1 && g2 >> 48 == 7);
}

#[tokio::test]
async fn open_asks_the_locator_first_and_refuses_when_it_cannot_answer() {
    for pending in [false, true] {
        let rec = Arc::new(Recorder { pending, ..Recorder::default() });
        let b = broker_with(&rec);
        let id: Arc<str> = Arc::from("c");
        let o = owner();
        let req = |clean_start| OpenRequest {
            client_id: &id,
            owner: &o,
            clean_start,
            expiry: None,
            conn_id: b.next_conn_id(),
        };
        let first = b.open_session_located(req(false)).await.unwrap();
        assert!(!first.session_present);
        let again = b.open_session_located(req(true)).await.unwrap();
        assert!(!again.session_present);
        assert_eq!(*rec.located.lock(), [("c".to_owned(), false, false), ("c".to_owned(), true, true)]);
        // The registry is out of reach: refused, nothing opened here.
        *rec.answer.lock() = Some(LocateError::Unavailable);
        let id2: Arc<str> = Arc::from("d");
        let r = b
            .open_session_located(OpenRequest {
                client_id: &id2,
                owner: &o,
                clean_start: true,
                expiry: None,
                conn_id: 9,
            })
            .await;
        assert_eq!(r.unwrap_err(), OpenError::RegistryUnavailable);
        assert!(b.find_session("d").is_none());
        *rec.answer.lock() = Some(LocateError::OwnerMismatch);
        let r = b.open_session_located(req(false)).await;
        assert_eq!(r.unwrap_err(), OpenError::OwnerMismatch);
    }
    // Single-node: no locator, opens as open_session does.
    let b = Broker::new(BrokerSettings::default());
    let id: Arc<str> = Arc::from("c");
    let o = owner();
    let req = OpenRequest { client_id: &id, owner: &o, clean_start: false, expiry: None, conn_id: 1 };
    assert!(b.open_session_located(req).await.is_ok());
}

#[tokio::test]
async fn admission_refuses_with_server_unavailable_when_the_registry_is_out_of_reach() {
    use crate::admission::{admit, Terms};
    use crate::codec::ProtocolVersion;
    use crate::connection::Refusal;
    use crate::gate::{ConnectInfo, LoopbackOnly};
    let rec =
        Arc::new(Recorder { pending: true, answer: Mutex::new(Some(LocateError::Unavailable)), ..Recorder::default() });
    let b = broker_with(&rec);
    let info = ConnectInfo {
        client_id: Arc::from("c"),
        username: None,
        password: None,
        peer: "127.0.0.1:1".parse().unwrap(),
        listener: Arc::from("l"),
        protocol: ProtocolVersion::V5.into(),
        cert: None,
    };
    let terms = Terms { clean_start: true, expiry: None, keep_alive: 0 };
    let r = admit(&b, &LoopbackOnly, info, terms).await.unwrap_err();
    assert_eq!(r, Refusal::SessionRegistryUnavailable);
    assert_eq!((r.v3_code(), r.v5_code()), (3, 0x88), "server unavailable");
    assert_eq!(b.session_count(), 0);
}

#[tokio::test]
async fn a_session_is_handed_over_whole_and_installed_detached() {
    use crate::broker::HandOver;
    use crate::session::Kick;
    let (ra, rb) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (a, b) = (broker_with(&ra), broker_with(&rb));
    let id: Arc<str> = Arc::from("mover");
    let owner = owner();
    let expiry = Some(Duration::from_secs(60));
    let req = |b: &Arc<Broker>, clean_start| OpenRequest {
        client_id: &id,
        owner: &owner,
        clean_start,
        expiry,
        conn_id: b.next_conn_id(),
    };
    let opened = a.open_session(req(&a, false)).unwrap();
    let mut kicked = opened.kicked;
    sub(&a, &opened.session, "t/+");
    a.publish(msg("t/1", false));
    a.publish(msg("t/2", false));
    opened.session.lock().await_rel(7, std::time::Instant::now());
    ra.edges();

    let stranger = SessionOwner::User(Arc::from("x"));
    assert!(matches!(a.hand_over("mover", &stranger, false), HandOver::OwnerMismatch));
    assert!(kicked.try_recv().is_err(), "another identity does not disturb the owner");
    let HandOver::Moved(state) = a.hand_over("mover", &owner, false) else { panic!("not moved") };
    assert_eq!(kicked.try_recv(), Ok(Kick::TakenOver { clean_start: false }), "its connection is closed (0x8E)");
    assert!(a.find_session("mover").is_none(), "gone from the old node");
    assert_eq!(ra.edges(), ["-t/+"]);
    assert_eq!(state.subscriptions.len(), 1);
    assert_eq!(state.queue.len(), 2);
    assert_eq!(state.awaiting_rel, [7]);
    assert_eq!(state.expiry_secs, Some(60));

    assert!(b.install_handed_over(state).is_none(), "no store: nothing to wait for");
    assert_eq!(rb.edges(), ["+t/+"]);
    let o = b.open_session(req(&b, false)).unwrap();
    assert!(o.session_present, "resumed on the new node");
    assert_eq!(queued(&o.session), 2);
    assert!(o.session.lock().awaiting_rel().contains_key(&7));

    assert!(matches!(b.hand_over("mover", &owner, true), HandOver::Discarded), "a clean start discards");
    assert!(matches!(b.hand_over("mover", &owner, false), HandOver::NotHere));
}
