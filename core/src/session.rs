//! Sessions: subscriptions, the bounded outgoing queue, inflight windows and
//! QoS 2 state, for a client that may or may not be connected right now.
//!
//! A session outlives its connections. Publishers push [`Delivery`]s into
//! its queue under the session's own mutex (never a global lock) and wake
//! the connection that owns it; the connection moves queued deliveries into
//! the inflight window as the client's Receive Maximum allows. While no
//! connection owns the session, the queue simply holds what arrives, up to
//! its bounds.

use std::collections::{HashMap, VecDeque};
use std::num::NonZeroU64;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, MutexGuard};
use tokio::sync::{oneshot, Notify};
use tracing::warn;

use crate::codec::{QoS, SubscriptionOptions};
use crate::durable::{Change, Commit, InflightState, MessageId, SessionStore, Settle, SettleGroup};
use crate::gate::ClientInfo;
use crate::logsafe::Peer;
use crate::message::{Delivery, Message};
use crate::metrics::{DropReason, Metrics};
use crate::owner::SessionOwner;
use crate::settings::{OnStuck, SessionSettings};
use crate::topic::SubscriptionFilter;

/// Why the connection owning a session is told to go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Another connection with the same client id arrived.
    TakenOver { clean_start: bool },
    /// The broker is shutting down.
    Shutdown,
    /// An operator closed the connection (management plane).
    Administrative,
    /// The client stopped reading past `session.stall_timeout`
    /// (`session.on_stuck = "disconnect"`).
    SlowConsumer,
}

/// One subscription as the session remembers it.
#[derive(Debug, Clone)]
pub struct SubRecord {
    pub filter: SubscriptionFilter,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
    /// Deliveries through this subscription are checked against the ACL
    /// ([`crate::gate::Gate::needs_delivery_check`]).
    pub check: bool,
}

/// Where an outgoing QoS 1/2 message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutState {
    /// PUBLISH sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Published,
    /// PUBREL sent; waiting for PUBCOMP.
    Released,
}

#[derive(Debug)]
pub struct Inflight {
    pub packet_id: u16,
    pub delivery: Delivery,
    pub state: OutState,
    /// The stored message it refers to, when the session is persistent
    /// and the delivery is in the store.
    pub stored: Option<MessageId>,
    /// Completes its publisher's commit when the subscriber acknowledges
    /// it (see [`crate::durable::Settle`]).
    pub settle: Option<Settle>,
}

/// A queued delivery of a durable session that is in the store.
#[derive(Debug)]
struct QueuedStored {
    seq: u64,
    id: MessageId,
    settle: Option<Settle>,
}

/// What the connection must send next.
#[derive(Debug)]
pub struct Outgoing {
    pub delivery: Delivery,
    /// `Some` for QoS 1/2 (already recorded as inflight).
    pub packet_id: Option<u16>,
}

/// A session whose queue keeps overflowing logs a line at most this often.
const DROP_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// What a subscription to `filter` may cost the broker, for the
/// per-session budget (`limits.max_subscription_bytes`): the filter's bytes
/// (kept by the session and by the trie), the session's record, and a trie
/// node for each level in the worst case that no other subscription shares
/// them (a node with its map entry is about 400 bytes, measured: one
/// 256 KB SUBSCRIBE of deep filters added 51.6 MB before this budget).
pub fn subscription_cost(filter: &str) -> usize {
    const PER_LEVEL: usize = 400;
    const PER_SUBSCRIPTION: usize = 200;
    let levels = filter.bytes().filter(|&b| b == b'/').count() + 1;
    2 * filter.len() + levels * PER_LEVEL + PER_SUBSCRIPTION
}

/// What a session holds once it subscribes or carries QoS 1/2 traffic:
/// empty for most idle clients, so it is allocated on first use and an
/// idle session carries one pointer instead of two maps and two queues
/// (see docs/performance.md, "The memory of an idle connection").
#[derive(Debug, Default)]
struct Activity {
    subscriptions: HashMap<Arc<str>, SubRecord>,
    /// [`subscription_cost`] of every subscription, summed.
    subscription_bytes: usize,
    /// Shared subscriptions among them.
    shared_subscriptions: usize,
    queue: VecDeque<Delivery>,
    /// Beside `queue`, entry for entry while the session is durable (empty
    /// otherwise): the store's (seq, message id) of a queued delivery that
    /// is in the store.
    queue_stored: VecDeque<Option<QueuedStored>>,
    /// The next queue seq for the store.
    next_seq: u64,
    queue_bytes: usize,
    inflight: VecDeque<Inflight>,
    /// Incoming QoS 2 packet ids awaiting PUBREL, with arrival time.
    awaiting_rel: HashMap<u16, Instant>,
    /// Messages this session's full queue dropped, ever.
    dropped: u64,
    /// When the last "queue full" line was logged, and `dropped` then.
    drop_logged_at: Option<Instant>,
    dropped_logged: u64,
    /// Since when the queue of this connected session has been above
    /// `session.queue_high_water` (publishers feeding it wait, up to
    /// `session.stall_timeout`); cleared when it drains to half of it.
    congested_since: Option<Instant>,
    /// Set when the queue drained out of congestion, until the connection
    /// wakes the publishers that wait for it.
    drained: bool,
    /// Where congestion ends: half the high-water mark in force when it
    /// began.
    drain_mark: usize,
    /// Where this session's changes go: set while it is persistent and the
    /// broker has a durable store ([`crate::durable`]). Here, not in the
    /// session, so that a session without a store pays nothing.
    durable: Option<Box<Durable>>,
}

/// What [`SessionState`]'s read accessors see while nothing is allocated.
static NO_ACTIVITY: LazyLock<Activity> = LazyLock::new(Activity::default);

#[derive(Debug)]
pub struct SessionState {
    /// `None` until the session first subscribes, queues or holds QoS 1/2
    /// state; dropped again when the session ends.
    activity: Option<Box<Activity>>,
    next_packet_id: u16,
    /// Set once the session is discarded; late deliveries are refused.
    pub ended: bool,
    /// Session expiry after disconnect; `None` = never.
    pub expiry: Option<Duration>,
    /// Id of the connection attached to the session, if connected
    /// (connection ids start at 1: the niche keeps this 8 bytes).
    pub owner: Option<NonZeroU64>,
    kick: Option<oneshot::Sender<Kick>>,
    /// The client attached now (for the management plane's listings).
    client: Option<Arc<ClientInfo>>,
    /// The id of the connection that attached last (0 before any): timers
    /// compare it to know whether a client came back in the meantime.
    /// Connection ids are unique cluster-wide and never reused, so
    /// generations are too (see [`crate::remote`]).
    pub generation: u64,
    /// Set when the session was handed over to another node of a cluster
    /// ([`crate::broker::Broker::hand_over`]): its client came back there,
    /// so a delayed will of the connection it had here is not published
    /// (as for a local resume).
    pub moved_away: bool,
}

impl std::fmt::Debug for StoreSlot<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSlot").field("id", &self.id).finish()
    }
}

/// A persistent session's link to the store.
#[derive(Debug)]
struct Durable {
    store: Arc<dyn SessionStore>,
    client_id: Arc<str>,
}

/// Allocates the ids of stored messages while one message is routed: the
/// first persistent session that queues it stores it
/// ([`Change::MessagePut`]), the others refer to it. Commits that the
/// publisher must wait for are collected in `commits`.
pub struct StoreSlot<'a> {
    ids: &'a std::sync::atomic::AtomicU64,
    id: Option<MessageId>,
    commits: Option<&'a mut Vec<Commit>>,
    /// The deliveries' settle group (strict mode, someone waits), and
    /// where the deliveries' commits begin in `commits` (after a retained
    /// message's).
    settle: Option<(Arc<SettleGroup>, usize)>,
}

impl<'a> StoreSlot<'a> {
    pub fn new(ids: &'a std::sync::atomic::AtomicU64, commits: Option<&'a mut Vec<Commit>>) -> StoreSlot<'a> {
        StoreSlot { ids, id: None, commits, settle: None }
    }

    /// Queues a delivery's commit; returns its place in the settle group
    /// when the store settles (see [`Settle`]).
    fn push(&mut self, store: &dyn SessionStore, changes: Vec<Change>) -> Option<Settle> {
        let Some(commits) = self.commits.as_deref_mut() else {
            store.record(changes);
            return None;
        };
        let settles = store.settles();
        if settles && self.settle.is_none() {
            self.settle = Some((SettleGroup::new(), commits.len()));
        }
        commits.push(store.commit(changes));
        match &self.settle {
            Some((group, _)) if settles => Some(group.join()),
            _ => None,
        }
    }

    /// Every delivery was offered: the deliveries' commits become one,
    /// complete when they are or when every delivery was acknowledged.
    pub fn finish(self) {
        let (Some(commits), Some((group, first))) = (self.commits, self.settle) else { return };
        group.seal();
        let committed = if commits.len() == first + 1 {
            commits.pop()
        } else {
            crate::durable::all(commits.split_off(first.min(commits.len())))
        };
        if let Some(c) = committed {
            commits.push(crate::durable::settled_or_committed(c, group));
        }
    }
}

/// One MQTT session. Outside core it is read through views
/// ([`Session::subscription`], [`Session::queued_snapshot`], …) and never
/// locked: its state changes only through core's intent methods, which
/// also feed the durable store.
///
/// ```compile_fail
/// fn outside(s: &portcullis_core::session::Session) {
///     let _state = s.lock(); // core's only
/// }
/// ```
#[derive(Debug)]
pub struct Session {
    pub client_id: Arc<str>,
    /// The identity that created the session; only it may resume or take
    /// it over.
    pub owner: SessionOwner,
    state: Mutex<SessionState>,
    /// Wakes the owning connection when something was queued.
    pub wake: Notify,
}

impl Session {
    pub fn new(client_id: Arc<str>, owner: SessionOwner, expiry: Option<Duration>) -> Session {
        Session {
            client_id,
            owner,
            state: Mutex::new(SessionState {
                activity: None,
                next_packet_id: 0,
                ended: false,
                expiry,
                owner: None,
                kick: None,
                client: None,
                generation: 0,
                moved_away: false,
            }),
            wake: Notify::new(),
        }
    }

    /// The session's state, for core only: outside it a session changes
    /// through the broker's intent methods (which also emit the durable
    /// store's changes) and is read through the views below.
    pub(crate) fn lock(&self) -> MutexGuard<'_, SessionState> {
        self.state.lock()
    }

    /// Whether the connection `conn_id` holds the session now.
    pub fn is_attached_to(&self, conn_id: u64) -> bool {
        self.lock().attached_to(conn_id)
    }

    /// Gives the session to the connection `conn_id` (what a CONNECT
    /// does); returns the kick of the connection that held it.
    pub fn attach(&self, conn_id: u64, kick: oneshot::Sender<Kick>) -> Option<oneshot::Sender<Kick>> {
        self.lock().attach(conn_id, kick)
    }

    /// Lets go of the connection `conn_id` (if it still holds the
    /// session); true when it did.
    pub fn detach(&self, conn_id: u64) -> bool {
        self.lock().detach(conn_id)
    }

    /// The subscription under `filter` (as the client wrote it), if any.
    pub fn subscription(&self, filter: &str) -> Option<SubRecord> {
        self.lock().subscriptions().get(filter).cloned()
    }

    /// The filters the session subscribes to, sorted.
    pub fn subscription_filters(&self) -> Vec<Arc<str>> {
        let mut v: Vec<Arc<str>> = self.lock().subscriptions().keys().cloned().collect();
        v.sort();
        v
    }

    /// A copy of the queued deliveries, in order.
    pub fn queued_snapshot(&self) -> Vec<Delivery> {
        self.lock().queued().cloned().collect()
    }

    /// Queues a delivery, or drops and counts it when a bound is hit.
    /// Returns whether it was queued.
    pub fn enqueue(&self, d: Delivery, settings: &SessionSettings, metrics: &Metrics) -> bool {
        self.offer(d, settings, metrics).is_ok()
    }

    /// Which subscription limit (`limits.*`) a new subscription to
    /// `filter` would pass, if any; replacing one the session holds costs
    /// nothing new. The one check every SUBSCRIBE takes, whoever makes it
    /// (a client, a module acting for it).
    pub fn subscription_limit(
        &self,
        raw: &str,
        filter: &SubscriptionFilter,
        limits: &crate::settings::Limits,
    ) -> Option<&'static str> {
        if raw.len() > limits.max_topic_filter_len {
            return Some("limits.max_topic_filter_len");
        }
        if crate::topic::more_levels_than(filter.filter.as_str(), limits.max_topic_levels) {
            return Some("limits.max_topic_levels");
        }
        let st = self.state.lock();
        if st.subscriptions().contains_key(raw) {
            return None;
        }
        let over = |n: usize, max: usize| max != 0 && n >= max;
        if over(st.subscriptions().len(), limits.max_subscriptions) {
            Some("limits.max_subscriptions")
        } else if filter.is_shared() && over(st.shared_subscriptions(), limits.max_shared_subscriptions) {
            Some("limits.max_shared_subscriptions")
        } else if limits.max_subscription_bytes != 0
            && st.subscription_bytes() + subscription_cost(raw) > limits.max_subscription_bytes
        {
            Some("limits.max_subscription_bytes")
        } else {
            None
        }
    }

    /// Whether publishers feeding this session should still wait for it
    /// (connected, above the high-water mark, within the stall bound).
    pub fn is_congested(&self, settings: &SessionSettings) -> bool {
        let st = self.state.lock();
        st.owner.is_some()
            && st
                .activity
                .as_ref()
                .and_then(|a| a.congested_since)
                .is_some_and(|t| t.elapsed() < settings.stall_timeout)
    }

    /// [`Session::enqueue`], saying why a delivery was not queued:
    /// `Err(None)` when the session has ended (nothing counted), else the
    /// counted drop reason. `Ok(true)`: queued, and the session is
    /// congested (see [`SessionState::congested`]): its publisher should
    /// stop reading until it drains.
    pub fn offer(
        &self,
        d: Delivery,
        settings: &SessionSettings,
        metrics: &Metrics,
    ) -> Result<bool, Option<DropReason>> {
        self.offer_stored(d, settings, metrics, None)
    }

    /// [`Session::offer`]; a QoS 1/2 delivery to a persistent session
    /// is also written to the store, its message once per `slot`.
    pub fn offer_stored(
        &self,
        mut d: Delivery,
        settings: &SessionSettings,
        metrics: &Metrics,
        slot: Option<&mut StoreSlot<'_>>,
    ) -> Result<bool, Option<DropReason>> {
        // Weighed before the lock: the message is hot in this thread's cache.
        let w = d.weight();
        d.queued_weight = u32::try_from(w).unwrap_or(u32::MAX);
        let mut st = self.state.lock();
        if st.ended {
            return Err(None);
        }
        if st.owner.is_none() && d.qos == QoS::AtMostOnce && !settings.queue_qos0 {
            metrics.dropped(DropReason::Qos0Offline);
            return Err(Some(DropReason::Qos0Offline));
        }
        let a = st.activity_mut();
        if a.queue.len() >= settings.max_queue_len || a.queue_bytes + w > settings.max_queue_bytes {
            a.dropped += 1;
            metrics.dropped(DropReason::QueueFull);
            let now = Instant::now();
            if a.drop_logged_at.is_none_or(|t| now.duration_since(t) >= DROP_LOG_INTERVAL) {
                warn!(
                    client_id = %Peer(&self.client_id),
                    dropped = a.dropped,
                    since_last_line = a.dropped - a.dropped_logged,
                    queue_len = a.queue.len(),
                    queue_bytes = a.queue_bytes,
                    max_queue_len = settings.max_queue_len,
                    max_queue_bytes = settings.max_queue_bytes,
                    "session queue full; dropping new messages (logged at most once a minute per session; counted in $SYS metrics/messages/dropped)"
                );
                a.drop_logged_at = Some(now);
                a.dropped_logged = a.dropped;
            }
            return Err(Some(DropReason::QueueFull));
        }
        a.queue_bytes += w;
        let state: &mut SessionState = &mut st;
        let a: &mut Activity = state.activity.get_or_insert_with(Box::default);
        let stored = match (slot, &a.durable) {
            (Some(slot), Some(durable)) if d.qos != QoS::AtMostOnce => {
                let mut changes = Vec::with_capacity(2);
                let id = *slot.id.get_or_insert_with(|| {
                    let id = MessageId(slot.ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
                    changes.push(Change::MessagePut { id, msg: Arc::clone(&d.msg) });
                    id
                });
                let seq = a.next_seq;
                a.next_seq += 1;
                changes.push(Change::QueuePush {
                    client_id: durable.client_id.clone(),
                    seq,
                    id,
                    qos: d.qos as u8,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                });
                let settle = slot.push(&*durable.store, changes);
                Some(QueuedStored { seq, id, settle })
            }
            _ => None,
        };
        let a = st.activity_mut();
        a.queue.push_back(d);
        if a.durable.is_some() {
            a.queue_stored.push_back(stored);
        }
        let high = settings.queue_high_water;
        let mut congested = false;
        if high != 0 && a.queue.len() > high && st.owner.is_some() {
            let now = Instant::now();
            let a = st.activity_mut();
            if a.congested_since.is_none() {
                a.drain_mark = high / 2;
            }
            let since = *a.congested_since.get_or_insert(now);
            congested = now.duration_since(since) < settings.stall_timeout;
            if !congested && settings.on_stuck == OnStuck::Disconnect {
                // Stuck past the stall bound: its connection goes (v5
                // DISCONNECT 0x97); the session queues, then drops, offline.
                if let Some(k) = st.take_kick() {
                    warn!(client_id = %Peer(&self.client_id), "subscriber stuck past session.stall_timeout; disconnected (session.on_stuck = disconnect)");
                    let _ = k.send(Kick::SlowConsumer);
                }
            }
        }
        drop(st);
        self.wake.notify_one();
        Ok(congested)
    }
}

impl Session {
    /// Puts a delivery back into the queue when restoring a snapshot,
    /// without the offline-QoS 0 rule (it was queued under the old run's).
    pub fn restore_queued(&self, d: Delivery) {
        self.restore_queued_stored(d, None);
    }

    /// [`Session::restore_queued`] for a delivery the store holds under
    /// `stored` = (seq, message id).
    pub fn restore_queued_stored(&self, mut d: Delivery, stored: Option<(u64, MessageId)>) {
        d.queued_weight = u32::try_from(d.weight()).unwrap_or(u32::MAX);
        let mut st = self.state.lock();
        let a = st.activity_mut();
        a.queue_bytes += d.queued_weight as usize;
        a.queue.push_back(d);
        // Restored from the store, every entry is (the session is made
        // durable next); from a snapshot, none is.
        if stored.is_some() || a.durable.is_some() {
            a.queue_stored.push_back(stored.map(|(seq, id)| QueuedStored { seq, id, settle: None }));
        }
        if let Some((seq, _)) = stored {
            a.next_seq = a.next_seq.max(seq + 1);
        }
    }
}

impl SessionState {
    /// Sends `changes` to the store when the session is persistent,
    /// without waiting for them (a wait goes through
    /// [`crate::broker::Broker::durable_barrier`]).
    fn emit(&self, changes: Vec<Change>) {
        if let Some(d) = self.activity.as_ref().and_then(|a| a.durable.as_ref()) {
            d.store.record(changes);
        }
    }

    /// The session's client id as the store knows it (persistent only).
    fn stored_id(&self) -> Option<Arc<str>> {
        self.activity.as_ref()?.durable.as_ref().map(|d| d.client_id.clone())
    }

    /// Whether the session's changes go to a store.
    pub fn is_durable(&self) -> bool {
        self.activity.as_ref().is_some_and(|a| a.durable.is_some())
    }

    /// From now on the session's changes go to `store` (the broker calls
    /// this for a persistent session, after writing its `SessionPut`).
    pub fn set_durable(&mut self, client_id: Arc<str>, store: Arc<dyn SessionStore>) {
        self.activity_mut().durable = Some(Box::new(Durable { store, client_id }));
    }

    /// The session's store link (client id, store), if it is durable.
    pub fn durable_link(&self) -> Option<(Arc<str>, Arc<dyn SessionStore>)> {
        let d = self.activity.as_ref()?.durable.as_ref()?;
        Some((d.client_id.clone(), Arc::clone(&d.store)))
    }

    /// Stops writing the session's changes; returns the store it used.
    pub fn take_durable(&mut self) -> Option<(Arc<str>, Arc<dyn SessionStore>)> {
        let a = self.activity.as_mut()?;
        a.queue_stored = VecDeque::new();
        a.durable.take().map(|d| (d.client_id, d.store))
    }

    fn activity(&self) -> &Activity {
        self.activity.as_deref().unwrap_or(&NO_ACTIVITY)
    }

    fn activity_mut(&mut self) -> &mut Activity {
        self.activity.get_or_insert_with(Box::default)
    }

    /// Subscriptions by the filter string the client used.
    pub fn subscriptions(&self) -> &HashMap<Arc<str>, SubRecord> {
        &self.activity().subscriptions
    }

    /// Adds or replaces a subscription; returns whether it existed.
    pub fn insert_subscription(&mut self, raw: Arc<str>, rec: SubRecord) -> bool {
        if let Some(client_id) = self.stored_id() {
            self.emit(vec![Change::SubscriptionPut {
                client_id,
                filter: raw.clone(),
                options: rec.options,
                subscription_id: rec.subscription_id,
            }]);
        }
        let a = self.activity_mut();
        let shared = rec.filter.is_shared();
        let cost = subscription_cost(&raw);
        match a.subscriptions.insert(raw, rec) {
            Some(_) => true,
            None => {
                a.subscription_bytes += cost;
                a.shared_subscriptions += usize::from(shared);
                false
            }
        }
    }

    pub fn remove_subscription(&mut self, raw: &str) -> Option<SubRecord> {
        let a = self.activity.as_mut()?;
        let rec = a.subscriptions.remove(raw)?;
        if let Some(client_id) = self.stored_id() {
            self.emit(vec![Change::SubscriptionDelete { client_id, filter: Arc::from(raw) }]);
        }
        let a = self.activity.as_mut()?;
        a.subscription_bytes -= subscription_cost(raw);
        a.shared_subscriptions -= usize::from(rec.filter.is_shared());
        Some(rec)
    }

    /// What the session's subscriptions cost, as [`subscription_cost`]
    /// weighs them.
    pub fn subscription_bytes(&self) -> usize {
        self.activity().subscription_bytes
    }

    /// How many of the session's subscriptions are shared (`$share/…`).
    pub fn shared_subscriptions(&self) -> usize {
        self.activity().shared_subscriptions
    }

    /// The outgoing QoS 1/2 window, oldest first.
    pub fn inflight(&self) -> &VecDeque<Inflight> {
        &self.activity().inflight
    }

    /// Appends to the inflight window (restoring a snapshot).
    pub fn push_inflight(&mut self, i: Inflight) {
        self.activity_mut().inflight.push_back(i);
    }

    /// Incoming QoS 2 packet ids awaiting PUBREL, with arrival time.
    pub fn awaiting_rel(&self) -> &HashMap<u16, Instant> {
        &self.activity().awaiting_rel
    }

    /// Records an incoming QoS 2 packet id (PUBREC sent, PUBREL awaited).
    pub fn await_rel(&mut self, packet_id: u16, at: Instant) {
        if self.activity_mut().awaiting_rel.insert(packet_id, at).is_none() {
            if let Some(client_id) = self.stored_id() {
                self.emit(vec![Change::AwaitRelPut { client_id, packet_id }]);
            }
        }
    }

    /// PUBREL arrived (or the exchange ended): forgets the id. Returns
    /// whether it was awaited.
    pub fn release(&mut self, packet_id: u16) -> bool {
        let found = self.activity.as_mut().is_some_and(|a| a.awaiting_rel.remove(&packet_id).is_some());
        if found {
            if let Some(client_id) = self.stored_id() {
                self.emit(vec![Change::AwaitRelDelete { client_id, packet_id }]);
            }
        }
        found
    }

    /// The queued deliveries, oldest first.
    pub fn queued(&self) -> impl Iterator<Item = &Delivery> {
        self.activity().queue.iter()
    }

    /// Attaches a connection; returns the previous owner's kick handle.
    pub fn attach(&mut self, conn_id: u64, kick: oneshot::Sender<Kick>) -> Option<oneshot::Sender<Kick>> {
        self.owner = NonZeroU64::new(conn_id);
        self.client = None;
        self.generation = conn_id;
        self.kick.replace(kick)
    }

    /// Records the attached connection's client (when `conn_id` is still
    /// the one attached).
    pub fn set_client(&mut self, conn_id: u64, client: Arc<ClientInfo>) {
        if self.attached_to(conn_id) {
            self.client = Some(client);
        }
    }

    /// The client attached now, once its connection is established.
    pub fn client(&self) -> Option<&Arc<ClientInfo>> {
        self.client.as_ref()
    }

    /// Whether the queue drained out of congestion since the last call
    /// (the connection then wakes the publishers waiting for it).
    pub fn take_drained(&mut self) -> bool {
        self.activity.as_mut().is_some_and(|a| std::mem::take(&mut a.drained))
    }

    /// Outgoing QoS 1/2 messages awaiting acknowledgement.
    pub fn inflight_len(&self) -> usize {
        self.activity().inflight.len()
    }

    /// Whether connection `conn_id` is the one attached.
    pub fn attached_to(&self, conn_id: u64) -> bool {
        self.owner.is_some_and(|c| c.get() == conn_id)
    }

    /// Takes the current owner's kick handle (for a takeover).
    pub fn take_kick(&mut self) -> Option<oneshot::Sender<Kick>> {
        self.kick.take()
    }

    /// Detaches `conn_id` if it still owns the session. Returns false when
    /// another connection took over in the meantime.
    pub fn detach(&mut self, conn_id: u64) -> bool {
        if !self.attached_to(conn_id) {
            return false;
        }
        self.owner = None;
        self.kick = None;
        true
    }

    pub fn queue_len(&self) -> usize {
        self.activity().queue.len()
    }

    /// Messages dropped from this session's queue so far.
    pub fn dropped(&self) -> u64 {
        self.activity().dropped
    }

    fn alloc_packet_id(&mut self) -> u16 {
        loop {
            self.next_packet_id = self.next_packet_id.wrapping_add(1);
            if self.next_packet_id == 0 {
                self.next_packet_id = 1;
            }
            let id = self.next_packet_id;
            if !self.inflight().iter().any(|i| i.packet_id == id) {
                return id;
            }
        }
    }

    /// Takes the next delivery to send, if the window allows. QoS 0 is
    /// never limited by the window; QoS 1/2 are recorded as inflight.
    /// Expired messages are dropped and counted on the way.
    /// `expired`, when given, receives the expired messages (for the
    /// dropped hook, to run once the session lock is released).
    pub fn next_outgoing(
        &mut self,
        window: usize,
        now: Instant,
        metrics: &Metrics,
        expired: Option<&mut Vec<Arc<Message>>>,
    ) -> Option<Outgoing> {
        let mut changes = Vec::new();
        let out = self.next_outgoing_inner(window, now, metrics, expired, &mut changes);
        if !changes.is_empty() {
            // Not waited for: a crash before it is written sends the
            // message again, as QoS 1/2 allow.
            self.emit(changes);
        }
        out
    }

    fn next_outgoing_inner(
        &mut self,
        window: usize,
        now: Instant,
        metrics: &Metrics,
        mut expired: Option<&mut Vec<Arc<Message>>>,
        changes: &mut Vec<Change>,
    ) -> Option<Outgoing> {
        let client_id = self.stored_id();
        // Congestion ends at half the high-water mark (see `offer`); the
        // mark itself is not known here, only that it was passed.
        let drain_mark = self.activity.as_ref().map_or(0, |a| a.drain_mark);
        loop {
            let a = self.activity.as_mut()?;
            let front = a.queue.front()?;
            if front.qos != QoS::AtMostOnce && a.inflight.len() >= window {
                return None;
            }
            let d = a.queue.pop_front()?;
            let mut stored = if client_id.is_some() { a.queue_stored.pop_front().flatten() } else { None };
            if let (Some(q), Some(client_id)) = (&stored, &client_id) {
                changes.push(Change::QueuePop { client_id: client_id.clone(), seq: q.seq });
            }
            a.queue_bytes = a.queue_bytes.saturating_sub(d.queued_weight as usize);
            if a.congested_since.is_some() && a.queue.len() <= drain_mark {
                a.congested_since = None;
                a.drained = true;
            }
            if d.msg.expired(now) {
                // Gone from the store with its QueuePop: settled as an
                // acknowledgement would (the store elides it the same way).
                if let Some(s) = stored.as_mut().and_then(|q| q.settle.take()) {
                    s.acknowledged();
                }
                metrics.dropped(DropReason::Expired);
                if let Some(out) = expired.as_deref_mut() {
                    out.push(d.msg);
                }
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                return Some(Outgoing { delivery: d, packet_id: None });
            }
            let id = self.alloc_packet_id();
            let (stored, settle) = match stored {
                Some(q) => (Some(q.id), q.settle),
                None => (None, None),
            };
            if let (Some(m), Some(client_id)) = (stored, &client_id) {
                changes.push(Change::InflightPut {
                    client_id: client_id.clone(),
                    packet_id: id,
                    id: m,
                    qos: d.qos as u8,
                    retain: d.retain,
                    state: InflightState::Published,
                });
            }
            self.activity_mut().inflight.push_back(Inflight {
                packet_id: id,
                delivery: d.clone(),
                state: OutState::Published,
                stored,
                settle,
            });
            return Some(Outgoing { delivery: d, packet_id: Some(id) });
        }
    }

    /// Removes an inflight entry (PUBACK, PUBCOMP, a failed PUBREC, or a
    /// message that could not be sent). Returns it if it existed.
    pub fn complete(&mut self, packet_id: u16) -> Option<Inflight> {
        let inflight = &mut self.activity.as_mut()?.inflight;
        let pos = inflight.iter().position(|i| i.packet_id == packet_id)?;
        let mut done = inflight.remove(pos)?;
        if let (Some(_), Some(client_id)) = (done.stored, self.stored_id()) {
            self.emit(vec![Change::InflightDelete { client_id, packet_id }]);
        }
        if let Some(s) = done.settle.take() {
            s.acknowledged();
        }
        Some(done)
    }

    /// PUBREC arrived: the QoS 2 message moves to the PUBREL stage.
    /// Returns false if no such QoS 2 message was in flight.
    pub fn received(&mut self, packet_id: u16) -> bool {
        let Some(a) = self.activity.as_mut() else { return false };
        match a.inflight.iter_mut().find(|i| i.packet_id == packet_id) {
            Some(i) if i.delivery.qos == QoS::ExactlyOnce => {
                i.state = OutState::Released;
                let change = i.stored.map(|id| (id, i.delivery.retain));
                if let (Some((id, retain)), Some(client_id)) = (change, self.stored_id()) {
                    self.emit(vec![Change::InflightPut {
                        client_id,
                        packet_id,
                        id,
                        qos: 2,
                        retain,
                        state: InflightState::Released,
                    }]);
                }
                true
            }
            _ => false,
        }
    }

    /// Forgets incoming QoS 2 ids whose PUBREL never came.
    pub fn expire_awaiting_rel(&mut self, now: Instant, timeout: Duration) -> usize {
        let Some(a) = self.activity.as_mut() else { return 0 };
        let before = a.awaiting_rel.len();
        let mut gone = Vec::new();
        a.awaiting_rel.retain(|id, t| {
            let keep = now.duration_since(*t) < timeout;
            if !keep {
                gone.push(*id);
            }
            keep
        });
        let n = before - a.awaiting_rel.len();
        if let Some(client_id) = self.stored_id() {
            if !gone.is_empty() {
                let changes = gone
                    .into_iter()
                    .map(|packet_id| Change::AwaitRelDelete { client_id: client_id.clone(), packet_id });
                self.emit(changes.collect());
            }
        }
        n
    }

    /// Drops everything queued, inflight and subscribed (session end).
    pub fn clear(&mut self) {
        self.activity = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Message;
    use crate::topic::TopicName;
    use bytes::Bytes;

    fn delivery(qos: QoS, payload: &'static [u8]) -> Delivery {
        Delivery {
            msg: Arc::new(Message {
                topic: TopicName::new("t").unwrap(),
                payload: Bytes::from_static(payload),
                qos,
                retain: false,
                properties: Default::default(),
                publisher: None,
                expires_at: None,
            }),
            qos,
            retain: false,
            subscription_ids: vec![],
            check: false,
            queued_weight: 0,
        }
    }

    fn settings(len: usize, bytes: usize, qos0: bool) -> SessionSettings {
        SessionSettings { max_queue_len: len, max_queue_bytes: bytes, queue_qos0: qos0, ..Default::default() }
    }

    #[test]
    fn queue_bounds_drop_newest_and_count() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        let st = settings(3, 1 << 20, true);
        for _ in 0..5 {
            s.enqueue(delivery(QoS::AtLeastOnce, b"x"), &st, &m);
        }
        assert_eq!(s.lock().queue_len(), 3);
        assert_eq!(s.lock().dropped(), 2);
        assert_eq!(m.dropped_count(DropReason::QueueFull), 2);
    }

    #[test]
    fn byte_bound() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        let st = settings(100, 10, true);
        // weight = payload + topic length ("t") = 5
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, b"abcd"), &st, &m));
        assert!(s.enqueue(delivery(QoS::AtLeastOnce, b"abcd"), &st, &m));
        assert!(!s.enqueue(delivery(QoS::AtLeastOnce, b"abcd"), &st, &m));
    }

    #[test]
    fn offline_qos0_follows_queue_qos0() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        assert!(!s.enqueue(delivery(QoS::AtMostOnce, b"x"), &settings(10, 1000, false), &m));
        assert_eq!(m.dropped_count(DropReason::Qos0Offline), 1);
        assert!(s.enqueue(delivery(QoS::AtMostOnce, b"x"), &settings(10, 1000, true), &m));
    }

    #[test]
    fn window_limits_qos1_but_not_qos0() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        let st = settings(100, 1 << 20, true);
        for q in [QoS::AtLeastOnce, QoS::AtLeastOnce, QoS::AtLeastOnce] {
            s.enqueue(delivery(q, b"x"), &st, &m);
        }
        let now = Instant::now();
        let mut g = s.lock();
        let a = g.next_outgoing(2, now, &m, None).unwrap();
        let b = g.next_outgoing(2, now, &m, None).unwrap();
        assert!(g.next_outgoing(2, now, &m, None).is_none(), "window of 2 is full");
        assert_ne!(a.packet_id, b.packet_id);
        assert!(g.complete(a.packet_id.unwrap()).is_some());
        assert!(g.next_outgoing(2, now, &m, None).is_some());
    }

    #[test]
    fn packet_ids_skip_zero_and_inflight() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        let st = settings(100_000, 1 << 30, true);
        let now = Instant::now();
        let mut ids = std::collections::HashSet::new();
        for _ in 0..70_000 {
            s.enqueue(delivery(QoS::AtLeastOnce, b""), &st, &m);
            let mut g = s.lock();
            let o = g.next_outgoing(10, now, &m, None).unwrap();
            let id = o.packet_id.unwrap();
            assert_ne!(id, 0);
            if g.inflight().len() > 5 {
                let first = g.inflight().front().unwrap().packet_id;
                g.complete(first);
            }
            ids.insert(id);
        }
        assert_eq!(ids.len(), 65_535);
    }

    #[test]
    fn expired_messages_are_dropped_at_dequeue() {
        let m = Metrics::default();
        let s = Session::new(Arc::from("c"), SessionOwner::Unknown, None);
        let mut d = delivery(QoS::AtLeastOnce, b"x");
        Arc::get_mut(&mut d.msg).unwrap().expires_at = Some(Instant::now());
        s.enqueue(d, &settings(10, 1000, true), &m);
        assert!(s.lock().next_outgoing(10, Instant::now() + std::time::Duration::from_millis(1), &m, None).is_none());
        assert_eq!(m.dropped_count(DropReason::Expired), 1);
    }
}
