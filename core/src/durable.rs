//! The session-store seam: what the broker must be able to rebuild after a
//! crash, as typed changes, and the port a durable store implements.
//!
//! The core emits [`Change`]s from the intent methods that change durable
//! state (a persistent session opened or ended, a subscription added or
//! removed, a QoS 1/2 message queued, sent, acknowledged, a QoS 2 packet id
//! awaiting PUBREL, a retained message set or cleared, a delayed publish
//! held or ended, a guard ban started or lifted, a persistent session's
//! will set or gone) and hands them to
//! the [`SessionStore`] in batches. Only persistent sessions (expiry above
//! zero) and QoS 1/2 messages reach it: clean sessions and QoS 0 never
//! touch the disk.
//!
//! A message is stored once ([`Change::MessagePut`]) and referenced by
//! every queue and in-flight entry that holds it ([`MessageId`]); the store
//! counts the references and drops the message with the last one.
//!
//! [`SessionStore::commit`] returns a [`Commit`] that completes when the
//! batch is durable (in `strict` mode: after the fsync of the group commit
//! that carried it). The broker acknowledges a PUBLISH to a persistent
//! session only once its commit completed; `relaxed` mode completes at
//! once and writes within a bounded window.
//!
//! At start the store hands back everything it holds ([`Recovered`]); the
//! core rebuilds sessions, queues, in-flight windows and the retained
//! store from it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};

use crate::codec::SubscriptionOptions;
use crate::message::Message;
use crate::owner::SessionOwner;

/// A stored message's id: unique for the life of the store (the store
/// hands out the next one at recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub u64);

/// Where a QoS 1/2 delivery to a client stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflightState {
    /// PUBLISH sent, PUBACK / PUBREC awaited.
    Published,
    /// PUBREL sent, PUBCOMP awaited.
    Released,
}

/// One change to durable state.
#[derive(Debug, Clone)]
pub enum Change {
    /// A persistent session was created, or its terms changed (expiry;
    /// `detached_at_ms`: Unix time its client left, `None` while one is
    /// attached — so expiry counts downtime across a restart).
    SessionPut {
        client_id: Arc<str>,
        owner: SessionOwner,
        expiry_secs: Option<u32>,
        detached_at_ms: Option<u64>,
    },
    /// A session ended: everything it held goes.
    SessionDelete {
        client_id: Arc<str>,
    },
    SubscriptionPut {
        client_id: Arc<str>,
        filter: Arc<str>,
        options: SubscriptionOptions,
        subscription_id: Option<u32>,
    },
    SubscriptionDelete {
        client_id: Arc<str>,
        filter: Arc<str>,
    },
    /// A message stored once, before the first entry that references it.
    MessagePut {
        id: MessageId,
        msg: Arc<Message>,
    },
    /// A delivery queued for a session, in order (`seq` grows per session).
    QueuePush {
        client_id: Arc<str>,
        seq: u64,
        id: MessageId,
        qos: u8,
        retain: bool,
        subscription_ids: Vec<u32>,
    },
    /// The queue's head left the queue (sent, expired or dropped).
    QueuePop {
        client_id: Arc<str>,
        seq: u64,
    },
    /// A delivery in flight under a packet id (moved from the queue, or
    /// moved on to PUBREL).
    InflightPut {
        client_id: Arc<str>,
        packet_id: u16,
        id: MessageId,
        qos: u8,
        retain: bool,
        state: InflightState,
    },
    /// Acknowledged (PUBACK, PUBCOMP) or given up.
    InflightDelete {
        client_id: Arc<str>,
        packet_id: u16,
    },
    /// An incoming QoS 2 packet id awaiting PUBREL (exactly-once across a
    /// restart), and its release.
    AwaitRelPut {
        client_id: Arc<str>,
        packet_id: u16,
    },
    AwaitRelDelete {
        client_id: Arc<str>,
        packet_id: u16,
    },
    /// A retained message set (its own copy) or cleared.
    RetainPut {
        msg: Arc<Message>,
    },
    RetainDelete {
        topic: Arc<str>,
    },
    /// A message held by the delayed-publish module until `due_ms` (Unix
    /// time), under an id unique for the life of the store (taken from
    /// the message ids), and its end (published, expired or dropped).
    DelayedPut {
        due_ms: u64,
        id: u64,
        msg: Arc<Message>,
    },
    DelayedDelete {
        due_ms: u64,
        id: u64,
    },
    /// A brute-force guard ban (its subject in the guard's own encoding)
    /// until `until_ms` (Unix time), and its lifting.
    BanPut {
        key: Arc<[u8]>,
        until_ms: u64,
    },
    BanDelete {
        key: Arc<[u8]>,
    },
    /// The will of a persistent session's client, as its CONNECT set it
    /// (and the ACL allowed it then), with its will delay: published after
    /// a restart if the broker never saw the client leave, or its delay
    /// had not run out. Replaces the session's earlier will.
    WillPut {
        client_id: Arc<str>,
        msg: Arc<Message>,
        delay_secs: u32,
    },
    /// The will is gone: published, cancelled by a normal DISCONNECT or a
    /// graceful stop, or replaced by a CONNECT without one.
    WillDelete {
        client_id: Arc<str>,
    },
}

/// Why the store could not take a batch: the broker refuses new
/// persistent work with v5 0x97 / server unavailable, never half-applies.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The disk is full (or a quota is reached).
    #[error("store full: {0}")]
    Full(String),
    /// Anything else the store reports (I/O, corruption found at run time).
    #[error("store failed: {0}")]
    Failed(String),
}

/// Completes when a batch is durable (or failed).
pub type Commit = Pin<Box<dyn Future<Output = Result<(), StoreError>> + Send>>;

/// The deliveries of one PUBLISH to persistent sessions, counted down as
/// their subscribers acknowledge them (see [`Settle`]).
#[derive(Debug)]
pub struct SettleGroup {
    /// Deliveries not acknowledged yet, plus one held by the router until
    /// it has offered the message to every session.
    remaining: AtomicUsize,
    /// A delivery left without an acknowledgement: the group never
    /// completes, its waiter counts on the store's commits.
    broken: AtomicBool,
    /// The waiter, woken when `remaining` reaches zero or `broken` is set.
    waker: parking_lot::Mutex<Option<Waker>>,
}

impl SettleGroup {
    /// A group held by the router (see [`SettleGroup::seal`]).
    pub fn new() -> Arc<SettleGroup> {
        Arc::new(SettleGroup {
            remaining: AtomicUsize::new(1),
            broken: AtomicBool::new(false),
            waker: parking_lot::Mutex::new(None),
        })
    }

    /// One more delivery to wait for.
    pub fn join(self: &Arc<Self>) -> Settle {
        self.remaining.fetch_add(1, Ordering::Relaxed);
        Settle { group: Arc::clone(self), fired: false }
    }

    /// The router's count: every delivery has joined.
    pub fn seal(&self) {
        self.count_down();
    }

    fn count_down(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.wake();
        }
    }

    fn wake(&self) {
        let waker = self.waker.lock().take();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ready(true) when every delivery was acknowledged, Ready(false)
    /// when one never will be; else registers `cx`'s waker.
    fn poll_settled(&self, cx: &mut std::task::Context<'_>) -> Poll<bool> {
        let state = || {
            if self.broken.load(Ordering::Acquire) {
                Poll::Ready(false)
            } else if self.remaining.load(Ordering::Acquire) == 0 {
                Poll::Ready(true)
            } else {
                Poll::Pending
            }
        };
        if let Poll::Ready(r) = state() {
            return Poll::Ready(r);
        }
        *self.waker.lock() = Some(cx.waker().clone());
        // Checked again: a count-down between the first check and the
        // registration found no waker to wake.
        state()
    }
}

/// A delivery's place in its PUBLISH's [`SettleGroup`]: fired when its
/// subscriber acknowledged it (the session removed it the way its store
/// change says). When every delivery of the PUBLISH is acknowledged, the
/// message has reached every persistent session it was queued for and the
/// disk need not hold it for the publisher's acknowledgement: the commits
/// of its deliveries complete at once, without waiting for the store's
/// writer (which writes or elides their batches as ever). Dropped unfired
/// (the delivery was dropped, the session ended or moved), it leaves the
/// commits to the store.
#[derive(Debug)]
pub struct Settle {
    group: Arc<SettleGroup>,
    fired: bool,
}

impl Settle {
    /// The subscriber acknowledged the delivery.
    pub fn acknowledged(mut self) {
        self.fired = true;
        self.group.count_down();
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.fired {
            self.group.broken.store(true, Ordering::Release);
            self.group.wake();
        }
    }
}

/// One future for several commits: Ok, or a failure if any failed (`None` for
/// none).
pub(crate) fn all(mut commits: Vec<Commit>) -> Option<Commit> {
    match commits.len() {
        0 => None,
        1 => commits.pop(),
        _ => Some(Box::pin(async move {
            let mut r = Ok(());
            for c in commits {
                if let Err(e) = c.await {
                    r = Err(e);
                }
            }
            r
        })),
    }
}

/// The store's commit(s) of a PUBLISH's deliveries (see [`all`]),
/// complete when they are, or as soon as every delivery was acknowledged.
pub(crate) fn settled_or_committed(committed: Commit, group: Arc<SettleGroup>) -> Commit {
    Box::pin(SettledOrCommitted { committed, group: Some(group) })
}

struct SettledOrCommitted {
    committed: Commit,
    /// `None` once the group can no longer complete.
    group: Option<Arc<SettleGroup>>,
}

impl Future for SettledOrCommitted {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if let Some(g) = &this.group {
            match g.poll_settled(cx) {
                Poll::Ready(true) => return Poll::Ready(Ok(())),
                Poll::Ready(false) => this.group = None,
                Poll::Pending => {}
            }
        }
        this.committed.as_mut().poll(cx)
    }
}

/// A persistent session as the store returns it at start.
#[derive(Debug, Clone)]
pub struct RecoveredSession {
    pub client_id: Arc<str>,
    pub owner: SessionOwner,
    pub expiry_secs: Option<u32>,
    pub detached_at_ms: Option<u64>,
    pub subscriptions: Vec<(Arc<str>, SubscriptionOptions, Option<u32>)>,
    /// Queued deliveries in order.
    pub queue: Vec<RecoveredQueued>,
    /// In-flight deliveries in the order they were sent.
    pub inflight: Vec<RecoveredInflight>,
    pub awaiting_rel: Vec<u16>,
    /// The will stored with the session ([`Change::WillPut`]), if any.
    pub will: Option<RecoveredWill>,
}

/// A stored will as the store returns it.
#[derive(Debug, Clone)]
pub struct RecoveredWill {
    pub msg: Arc<Message>,
    pub delay_secs: u32,
}

/// A queued delivery as the store returns it.
#[derive(Debug, Clone)]
pub struct RecoveredQueued {
    pub seq: u64,
    pub id: MessageId,
    pub msg: Arc<Message>,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

/// An in-flight delivery as the store returns it.
#[derive(Debug, Clone)]
pub struct RecoveredInflight {
    pub packet_id: u16,
    pub id: MessageId,
    pub msg: Arc<Message>,
    pub qos: u8,
    pub retain: bool,
    pub state: InflightState,
}

/// A delayed publish as the store returns it (see [`Change::DelayedPut`]).
#[derive(Debug, Clone)]
pub struct RecoveredDelayed {
    pub due_ms: u64,
    pub id: u64,
    pub msg: Arc<Message>,
}

/// A guard ban as the store returns it (see [`Change::BanPut`]).
#[derive(Debug, Clone)]
pub struct RecoveredBan {
    pub key: Vec<u8>,
    pub until_ms: u64,
}

/// Everything a store holds, at start.
#[derive(Debug, Default)]
pub struct Recovered {
    pub sessions: Vec<RecoveredSession>,
    pub retained: Vec<Arc<Message>>,
    /// Delayed publishes, in deadline order (expired ones are not
    /// returned).
    pub delayed: Vec<RecoveredDelayed>,
    /// Guard bans still running (ended ones are not returned).
    pub bans: Vec<RecoveredBan>,
    /// The first message id not used yet.
    pub next_message_id: u64,
}

/// The port a durable store implements (the `store/` crate).
pub trait SessionStore: Send + Sync + 'static {
    /// Takes a batch of changes, in order. The returned commit completes
    /// when they are durable (strict mode) or accepted (relaxed mode).
    fn commit(&self, changes: Vec<Change>) -> Commit;
    /// [`SessionStore::commit`] for a batch nobody waits for (a delivery
    /// sent or acknowledged: a crash before it is written sends the
    /// message again, as QoS 1/2 allow). In the same order as commits; a
    /// store may skip what a commit costs only for a waiter.
    fn record(&self, changes: Vec<Change>) {
        drop(self.commit(changes));
    }
    /// Whether the commits of deliveries queued now may complete when
    /// they are acknowledged (strict mode, asked per delivery): the broker
    /// then completes the commits of a PUBLISH's deliveries as soon as
    /// every persistent session it was queued for acknowledged it (see
    /// [`Settle`]). A store whose commits complete at once says false; so
    /// may one whose writer falls behind, to pace the publishers by it.
    fn settles(&self) -> bool {
        false
    }
    /// Everything the store holds (called once, at start).
    fn recover(&self) -> Result<Recovered, StoreError>;
}

impl fmt::Debug for dyn SessionStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionStore")
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use bytes::Bytes;
    use parking_lot::Mutex;

    use super::*;
    use crate::broker::{Broker, OpenRequest};
    use crate::codec::QoS;
    use crate::session::SubRecord;
    use crate::settings::BrokerSettings;
    use crate::topic::{SubscriptionFilter, TopicName};

    /// A store that records what it is given.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Change>>);

    impl SessionStore for Recorder {
        fn commit(&self, changes: Vec<Change>) -> Commit {
            self.0.lock().extend(changes);
            Box::pin(std::future::ready(Ok(())))
        }
        fn recover(&self) -> Result<Recovered, StoreError> {
            Ok(Recovered::default())
        }
    }

    fn names(r: &Recorder) -> Vec<&'static str> {
        r.0.lock()
            .drain(..)
            .map(|c| match c {
                Change::SessionPut { .. } => "SessionPut",
                Change::SessionDelete { .. } => "SessionDelete",
                Change::SubscriptionPut { .. } => "SubscriptionPut",
                Change::SubscriptionDelete { .. } => "SubscriptionDelete",
                Change::MessagePut { .. } => "MessagePut",
                Change::QueuePush { .. } => "QueuePush",
                Change::QueuePop { .. } => "QueuePop",
                Change::InflightPut { .. } => "InflightPut",
                Change::InflightDelete { .. } => "InflightDelete",
                Change::AwaitRelPut { .. } => "AwaitRelPut",
                Change::AwaitRelDelete { .. } => "AwaitRelDelete",
                Change::RetainPut { .. } => "RetainPut",
                Change::RetainDelete { .. } => "RetainDelete",
                Change::DelayedPut { .. } => "DelayedPut",
                Change::DelayedDelete { .. } => "DelayedDelete",
                Change::BanPut { .. } => "BanPut",
                Change::BanDelete { .. } => "BanDelete",
                Change::WillPut { .. } => "WillPut",
                Change::WillDelete { .. } => "WillDelete",
            })
            .collect()
    }

    fn msg(qos: QoS) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new("t/1").unwrap(),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: None,
            publisher: None,
            expires_at: None,
        })
    }

    /// A strict store that never writes: a delivery's commit completes
    /// only when the broker settles it.
    struct NeverWritten;

    impl SessionStore for NeverWritten {
        fn commit(&self, _changes: Vec<Change>) -> Commit {
            Box::pin(std::future::pending())
        }
        fn settles(&self) -> bool {
            true
        }
        fn recover(&self) -> Result<Recovered, StoreError> {
            Ok(Recovered::default())
        }
    }

    fn poll_now(c: &mut Commit) -> std::task::Poll<Result<(), StoreError>> {
        c.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    /// The sessions settle a PUBLISH's delivery commits where the store's
    /// changes leave the deliveries (acknowledged, or dropped as expired
    /// when dequeued): once every persistent session it was queued for
    /// did, not when it is sent, never when a session ends with it, and
    /// never for the retained message's commit.
    #[tokio::test]
    async fn deliveries_settle_their_commit_when_all_are_acknowledged_or_expired() {
        use std::task::Poll;
        let b = Broker::new(BrokerSettings::default());
        b.restore_from_store(Arc::new(NeverWritten), Recovered::default());
        let owner = SessionOwner::User(Arc::from("u"));
        let (kept, other): (Arc<str>, Arc<str>) = (Arc::from("kept"), Arc::from("other"));
        let open = |id, clean_start, conn_id| {
            let o = OpenRequest {
                client_id: id,
                owner: &owner,
                clean_start,
                expiry: Some(Duration::from_secs(60)),
                conn_id,
            };
            let s = b.open_session(o).unwrap().session;
            let f = SubscriptionFilter::parse("t/+").unwrap();
            let rec = SubRecord {
                filter: f.clone(),
                options: crate::codec::SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                subscription_id: None,
                check: false,
            };
            b.subscribe(&s, f, rec);
            s
        };
        let (k, o) = (open(&kept, false, 1), open(&other, false, 2));
        let publish = |m: Arc<Message>, n| {
            let mut commits = Vec::new();
            b.publish_from(m, None, Some(&mut commits));
            assert_eq!(commits.len(), n, "the deliveries' commits are one");
            commits
        };
        let send = |s: &crate::session::Session| s.lock().next_outgoing(10, Instant::now(), &b.metrics, None).unwrap();
        let ack =
            |s: &crate::session::Session, out: crate::session::Outgoing| s.lock().complete(out.packet_id.unwrap());

        let mut acked = publish(msg(QoS::AtLeastOnce), 1).remove(0);
        assert!(poll_now(&mut acked).is_pending(), "queued");
        let (to_k, to_o) = (send(&k), send(&o));
        assert!(poll_now(&mut acked).is_pending(), "sent, not acknowledged");
        ack(&k, to_k);
        assert!(poll_now(&mut acked).is_pending(), "one of two acknowledged");
        ack(&o, to_o);
        assert!(matches!(poll_now(&mut acked), Poll::Ready(Ok(()))), "both acknowledged");

        let with = |retain, expires_at| {
            Arc::new(Message {
                topic: TopicName::new("t/1").unwrap(),
                payload: Bytes::from_static(b"x"),
                qos: QoS::AtLeastOnce,
                retain,
                properties: None,
                publisher: None,
                expires_at,
            })
        };
        let mut commits = publish(with(true, None), 2);
        let (to_k, to_o) = (send(&k), send(&o));
        ack(&k, to_k);
        ack(&o, to_o);
        assert!(poll_now(&mut commits[0]).is_pending(), "the retained message's commit waits for the write");
        assert!(matches!(poll_now(&mut commits[1]), Poll::Ready(Ok(()))), "the deliveries' settled");

        let mut expired = publish(with(false, Some(Instant::now() + Duration::from_secs(5))), 1).remove(0);
        let later = Instant::now() + Duration::from_secs(10);
        for s in [&k, &o] {
            assert!(s.lock().next_outgoing(10, later, &b.metrics, None).is_none());
        }
        assert!(matches!(poll_now(&mut expired), Poll::Ready(Ok(()))), "dropped as expired");

        let mut in_flight = publish(msg(QoS::AtLeastOnce), 1).remove(0);
        let mut queued = publish(msg(QoS::AtLeastOnce), 1).remove(0);
        let (to_k, to_o) = (send(&k), send(&o));
        ack(&o, to_o);
        drop(to_k);
        b.close_session(&k, 1);
        drop(open(&kept, true, 3));
        let to_o = send(&o);
        ack(&o, to_o);
        assert!(poll_now(&mut in_flight).is_pending(), "ended with a session in flight: waits for the write");
        assert!(poll_now(&mut queued).is_pending(), "ended with a session queued: waits for the write");
    }

    #[tokio::test]
    async fn only_persistent_sessions_and_qos_1_2_reach_the_store() {
        let b = Broker::new(BrokerSettings::default());
        let rec = Arc::new(Recorder::default());
        b.restore_from_store(rec.clone(), Recovered::default());
        let owner = SessionOwner::User(Arc::from("u"));
        let (clean, kept): (Arc<str>, Arc<str>) = (Arc::from("clean"), Arc::from("kept"));
        let open = |id: &Arc<str>, expiry, conn_id| {
            b.open_session(OpenRequest { client_id: id, owner: &owner, clean_start: true, expiry, conn_id }).unwrap()
        };
        let f = SubscriptionFilter::parse("t/+").unwrap();
        let sub = |s| {
            let rec = SubRecord {
                filter: f.clone(),
                options: crate::codec::SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                subscription_id: None,
                check: false,
            };
            b.subscribe(s, f.clone(), rec);
        };

        let c = open(&clean, Some(Duration::ZERO), 1);
        sub(&c.session);
        b.publish(msg(QoS::AtLeastOnce));
        assert_eq!(names(&rec), Vec::<&str>::new(), "a clean session never reaches the store");
        b.close_session(&c.session, 1);
        assert_eq!(names(&rec), Vec::<&str>::new());

        let k = open(&kept, Some(Duration::from_secs(60)), 2);
        assert_eq!(names(&rec), ["SessionPut"]);
        sub(&k.session);
        assert_eq!(names(&rec), ["SubscriptionPut"]);
        b.publish(msg(QoS::AtMostOnce));
        assert_eq!(names(&rec), Vec::<&str>::new(), "QoS 0 never reaches the store");
        b.publish(msg(QoS::AtLeastOnce));
        assert_eq!(names(&rec), ["MessagePut", "QueuePush"]);
        let mut st = k.session.lock();
        let _qos0 = st.next_outgoing(10, Instant::now(), &b.metrics, None).unwrap();
        let out = st.next_outgoing(10, Instant::now(), &b.metrics, None).unwrap();
        assert_eq!(names(&rec), ["QueuePop", "InflightPut"]);
        st.complete(out.packet_id.unwrap());
        st.await_rel(9, Instant::now());
        st.release(9);
        drop(st);
        assert_eq!(names(&rec), ["InflightDelete", "AwaitRelPut", "AwaitRelDelete"]);
        b.unsubscribe(&k.session, "t/+");
        b.close_session(&k.session, 2);
        assert_eq!(names(&rec), ["SubscriptionDelete", "SessionPut"]);
        let again = b
            .open_session(OpenRequest {
                client_id: &kept,
                owner: &owner,
                clean_start: true,
                expiry: Some(Duration::from_secs(60)),
                conn_id: 3,
            })
            .unwrap();
        assert!(!again.session_present);
        assert_eq!(names(&rec), ["SessionDelete", "SessionPut"], "a clean start ends the stored session first");
    }

    #[tokio::test]
    async fn a_queue_filled_offline_pops_its_own_rows_after_a_resume() {
        let b = Broker::new(BrokerSettings::default());
        let rec = Arc::new(Recorder::default());
        b.restore_from_store(rec.clone(), Recovered::default());
        let owner = SessionOwner::User(Arc::from("u"));
        let id: Arc<str> = Arc::from("dev");
        let open = |clean_start, conn_id| {
            b.open_session(OpenRequest {
                client_id: &id,
                owner: &owner,
                clean_start,
                expiry: Some(Duration::from_secs(60)),
                conn_id,
            })
            .unwrap()
        };
        let s = open(true, 1);
        let f = SubscriptionFilter::parse("t/+").unwrap();
        let opts = crate::codec::SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() };
        b.subscribe(&s.session, f.clone(), SubRecord { filter: f, options: opts, subscription_id: None, check: false });
        b.close_session(&s.session, 1);
        b.publish(msg(QoS::AtLeastOnce));
        b.publish(msg(QoS::AtLeastOnce));
        let _ = names(&rec);
        let again = open(false, 2);
        assert!(again.session_present);
        b.publish(msg(QoS::AtLeastOnce));
        let _ = names(&rec);
        let mut st = again.session.lock();
        let mut seqs = Vec::new();
        for _ in 0..3 {
            st.next_outgoing(10, Instant::now(), &b.metrics, None).unwrap();
            for c in rec.0.lock().drain(..) {
                if let Change::QueuePop { seq, .. } = c {
                    seqs.push(seq);
                }
            }
        }
        assert_eq!(seqs, [0, 1, 2], "each delivery pops its own row, in order");
    }
}
