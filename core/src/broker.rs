//! Shared broker state: the session registry, the router, the retained
//! store, metrics, and the timers that end sessions and publish wills.
//!
//! Lock order, to stay deadlock free: registry → session → router. The
//! publish path takes the router's read lock, releases it, then locks each
//! target session on its own; it never holds two of them at once.
//!
//! With a cluster, the remote routing seam ([`crate::remote`]) joins in:
//! a message published here is forwarded after local routing, one from
//! another node enters through `deliver_remote*` / `retain_remote` (never
//! forwarded again), and a CONNECT asks it where the session is first
//! ([`Broker::open_session_located`]). Without one, each of those is a
//! single `OnceLock` read.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info};

use crate::codec::QoS;
use crate::connection::PreAuth;
use crate::deadlines::Due;
use crate::durable::{Change, Commit, Recovered, SessionStore};
use crate::hooks::{Hooks, SessionEndReason, SessionEvent};
use crate::logsafe::{LogLimiter, Peer};
use crate::message::{Delivery, Message};
use crate::metrics::{DropReason, MetricSource, Metrics, Scrape};
use crate::owner::{OwnerMismatch, SessionOwner};
use crate::registry::Registry;
use crate::remote::{Locate, LocateError, LocateRequest, RemoteRouting};
use crate::retain::{RetainResult, RetainStore};
use crate::router::{for_each_delivery, remove_no_local, Clients, Route, Router, Subscriber};
use crate::session::{Inflight, Kick, OutState, Session, StoreSlot, SubRecord};
use crate::settings::BrokerSettings;
use crate::topic::SubscriptionFilter;

/// Refused-CONNECT log lines per second at most; the rest are counted in
/// the next line's `suppressed` field.
const REFUSAL_LINES_PER_SEC: u32 = 20;

/// The version string published in `$SYS/brokers/<node>/version`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What [`Broker::open_session`] is asked.
#[derive(Debug, Clone, Copy)]
pub struct OpenRequest<'a> {
    pub client_id: &'a Arc<str>,
    /// The identity of the connecting client.
    pub owner: &'a SessionOwner,
    pub clean_start: bool,
    /// Session expiry after disconnect; `None` = never.
    pub expiry: Option<Duration>,
    pub conn_id: u64,
}

/// Why [`Broker::open_session`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The client id belongs to a session of another identity
    /// (`session.owner_mismatch = "refuse"`).
    #[error("client identifier in use by another identity")]
    OwnerMismatch,
    /// `session.max_sessions` reached.
    #[error("too many sessions on this broker")]
    TooManySessions,
    /// `session.max_sessions_per_identity` reached for this identity.
    #[error("too many sessions for this identity")]
    TooManyForIdentity,
    /// The cluster's session registry could not be reached
    /// ([`LocateError::Unavailable`]).
    #[error("the session registry is unavailable")]
    RegistryUnavailable,
    /// The client id does not fit the cluster's session registry
    /// ([`LocateError::ClientIdTooLong`]).
    #[error("client identifier too long for the session registry")]
    ClientIdTooLong,
}

impl From<LocateError> for OpenError {
    fn from(e: LocateError) -> OpenError {
        match e {
            LocateError::Unavailable => OpenError::RegistryUnavailable,
            LocateError::OwnerMismatch => OpenError::OwnerMismatch,
            LocateError::ClientIdTooLong => OpenError::ClientIdTooLong,
        }
    }
}

/// Where a published message went: what [`Broker::publish`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Routed {
    /// Local sessions it matched (after no-local), including any whose
    /// full queue dropped it.
    pub local: usize,
    /// Nothing local matched, but the remote routing seam has somewhere to
    /// deliver it ([`RemoteRouting::has_interest`]); always false in
    /// single-node mode.
    pub remote: bool,
    /// The remote routing seam's outbound queue is above its high-water
    /// mark ([`RemoteRouting::congested`]): the publisher should wait
    /// ([`Broker::wait_remote_drained`]) before it reads on. Always false in
    /// single-node mode.
    pub remote_congested: bool,
}

impl Routed {
    /// Some subscriber, here or on another node, matched: false is MQTT 5's
    /// "no matching subscribers" (0x10).
    pub fn matched(self) -> bool {
        self.local > 0 || self.remote
    }
}

/// What [`Broker::hand_over`] did with the session another node asked for.
#[derive(Debug)]
pub enum HandOver {
    /// No session for the client id here.
    NotHere,
    /// It belongs to another identity and `session.owner_mismatch =
    /// "refuse"`: untouched.
    OwnerMismatch,
    /// Ended here (a clean start, a session that ends with its connection,
    /// or another identity under `"discard"`): nothing to install.
    Discarded,
    /// Taken out of this node: install it there
    /// ([`Broker::install_handed_over`]).
    Moved(crate::durable::RecoveredSession),
}

/// The high bits of a connection id that hold the node slot.
const NODE_SLOT_SHIFT: u32 = 48;

/// Where this process's connection ids start: the start time in seconds
/// times 65,536, within the 48 bits below the node slot (see
/// [`crate::remote`]: a restarted node does not reuse its previous run's
/// ids). Never 0.
fn conn_id_seed() -> u64 {
    let secs = SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (((secs & 0xFFFF_FFFF) << 16) | 1) & ((1 << NODE_SLOT_SHIFT) - 1)
}

/// Result of [`Broker::open_session`].
#[derive(Debug)]
pub struct Opened {
    pub session: Arc<Session>,
    pub session_present: bool,
    /// Kick signal for this connection (takeover).
    pub kicked: oneshot::Receiver<Kick>,
    /// The session's generation for this connection (its connection id,
    /// unique cluster-wide); another one means the client came back (which
    /// cancels a delayed will).
    pub generation: u64,
}

#[derive(Debug)]
pub struct Broker {
    pub settings: BrokerSettings,
    pub router: Router<Arc<Session>>,
    sessions: Mutex<Registry>,
    pub retained: RetainStore,
    pub metrics: Metrics,
    pub started: Instant,
    pub started_at: SystemTime,
    next_conn_id: AtomicU64,
    /// Connections still in their CONNECT: per-address count and buffer
    /// budget.
    pub preauth: PreAuth,
    /// Paces the log lines of refused CONNECTs.
    pub refusal_log: LogLimiter,
    /// Paces the log lines of PUBLISHes the durable store refused (disk
    /// full: one a second, with the count of those not logged).
    pub store_failure_log: LogLimiter,
    shutdown: watch::Sender<bool>,
    /// The hooks modules registered (see [`crate::hooks`]).
    pub hooks: Hooks,
    /// Woken when a congested session drains or detaches: the publishers
    /// waiting for one check again ([`Broker::wait_drained`]).
    pub drained: tokio::sync::Notify,
    /// Metrics from outside the core (chains, caches, guard, listeners),
    /// read at each scrape.
    metric_sources: Mutex<Vec<Arc<dyn MetricSource>>>,
    /// The metric topics `$SYS` published last time ([`crate::sys`] clears
    /// those that went).
    pub(crate) sys_topics: Mutex<std::collections::HashSet<String>>,
    /// The durable store, when `[persistence]` has one
    /// ([`Broker::restore_from_store`] sets it, once, at start).
    store: OnceLock<Arc<dyn SessionStore>>,
    /// The next stored message id.
    next_message_id: AtomicU64,
    /// Delayed publishes the store returned at start, until the delayed
    /// module takes them ([`Broker::take_recovered_delayed`]).
    recovered_delayed: Mutex<Vec<crate::durable::RecoveredDelayed>>,
    /// Guard bans the store returned at start, until the guard takes them
    /// ([`Broker::take_recovered_bans`]).
    recovered_bans: Mutex<Vec<crate::durable::RecoveredBan>>,
    /// Session expiries and delayed wills: one timer for all.
    deadlines: Arc<crate::deadlines::Deadlines>,
    /// The other nodes of a cluster, when there are some
    /// ([`Broker::set_remote`], once, at start). Read once per publish.
    remote: OnceLock<Arc<dyn RemoteRouting>>,
}

/// Unix time in milliseconds.
fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Broker {
    pub fn new(settings: BrokerSettings) -> Arc<Broker> {
        let (shutdown, _) = watch::channel(false);
        let preauth = PreAuth::new(&settings.limits);
        Arc::new(Broker {
            sessions: Mutex::new(Registry::new(settings.session.max_sessions_per_identity != 0)),
            router: Router::new(settings.shared_strategy),
            retained: RetainStore::new(settings.retained.clone()),
            settings,
            metrics: Metrics::default(),
            started: Instant::now(),
            started_at: SystemTime::now(),
            next_conn_id: AtomicU64::new(conn_id_seed()),
            preauth,
            refusal_log: LogLimiter::new(REFUSAL_LINES_PER_SEC),
            store_failure_log: LogLimiter::new(1),
            shutdown,
            hooks: Hooks::default(),
            drained: tokio::sync::Notify::new(),
            metric_sources: Mutex::new(Vec::new()),
            sys_topics: Mutex::new(std::collections::HashSet::new()),
            store: OnceLock::new(),
            next_message_id: AtomicU64::new(1),
            recovered_delayed: Mutex::new(Vec::new()),
            recovered_bans: Mutex::new(Vec::new()),
            deadlines: Arc::default(),
            remote: OnceLock::new(),
        })
    }

    /// Installs the remote routing seam (a cluster's, see
    /// [`crate::remote`]): once, at start, before the listeners accept
    /// clients. Connection ids given out from now on carry its node slot;
    /// the distinct filters that already exist (sessions restored from the
    /// store) are announced to it with `filter_added`. Returns the
    /// argument back when one was installed already.
    pub fn set_remote(&self, remote: Arc<dyn RemoteRouting>) -> Result<(), Arc<dyn RemoteRouting>> {
        let slot = remote.node_slot().0;
        self.remote.set(remote)?;
        self.next_conn_id.fetch_or(u64::from(slot) << NODE_SLOT_SHIFT, Ordering::Relaxed);
        let Some(remote) = self.remote.get() else { return Ok(()) };
        let mut seen = std::collections::HashSet::new();
        for session in self.sessions_snapshot() {
            let st = session.lock();
            for rec in st.subscriptions().values() {
                let f = &rec.filter;
                if seen.insert((f.share_group.clone(), f.filter.clone())) {
                    remote.filter_added(f);
                }
            }
        }
        Ok(())
    }

    /// The remote routing seam, if one is installed.
    pub fn remote(&self) -> Option<&Arc<dyn RemoteRouting>> {
        self.remote.get()
    }

    /// Registers metrics kept outside the core (the auth and ACL chains,
    /// caches and guard, the listeners): read at every scrape, for `$SYS`
    /// and Prometheus alike. A module registers its own through its hooks
    /// ([`crate::hooks::HookSetBuilder::metrics`]) instead, so that they
    /// go when it does.
    pub fn add_metric_source(&self, source: Arc<dyn MetricSource>) {
        self.metric_sources.lock().push(source);
    }

    /// Every metric's value now: the broker's own, then each registered
    /// source's, then the running modules'. `$SYS` publishes this, and
    /// Prometheus renders it; no client's path waits on it.
    pub fn scrape(&self) -> Scrape {
        let mut out = Scrape::new();
        crate::metrics::broker::collect(self, &mut out);
        let sources = self.metric_sources.lock().clone();
        for s in sources {
            s.collect(&mut out);
        }
        self.hooks.collect_metrics(&mut out);
        out
    }

    /// A connection id, unique in the cluster: the node slot in the high
    /// 16 bits, a counter below (see [`crate::remote`]).
    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Tells every connection to close (v5 clients get DISCONNECT 0x8B):
    /// each attached session's connection gets [`Kick::Shutdown`].
    ///
    /// Through each session's kick handle rather than a watch channel that
    /// every connection listens to (a receiver and its `changed()` future
    /// in every idle connection's task). A connection that attaches
    /// concurrently either is kicked here (its attach came first, under
    /// the registry lock) or, the flag being set before that lock is
    /// taken, sees the flag when its event loop starts.
    pub fn shutdown(&self) {
        self.shutdown.send_replace(true);
        let map = self.sessions.lock();
        for session in map.values() {
            if let Some(k) = session.lock().take_kick() {
                let _ = k.send(Kick::Shutdown);
            }
        }
    }

    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    pub fn session_count(&self) -> usize {
        self.sessions.lock().len()
    }

    /// [`Broker::open_session`] after asking the remote routing seam, when
    /// there is one, whether another node holds the session (it is handed
    /// over or discarded first: [`RemoteRouting::locate`]). What admission
    /// calls; in single-node mode it is `open_session` behind one `None`
    /// check.
    pub async fn open_session_located(self: &Arc<Self>, req: OpenRequest<'_>) -> Result<Opened, OpenError> {
        if let Some(remote) = self.remote.get() {
            let held_here = self.sessions.lock().contains(req.client_id);
            let ask = LocateRequest {
                client_id: req.client_id,
                owner: req.owner,
                clean_start: req.clean_start,
                held_here,
                expiry: req.expiry,
            };
            match remote.locate(ask) {
                Locate::Done(r) => r?,
                Locate::Pending(f) => f.await?,
            }
        }
        self.open_session(req)
    }

    /// Attaches connection `req.conn_id` to the session for its client id:
    /// resumes it or takes it over when it belongs to the same identity,
    /// and starts a fresh one otherwise. A session of another identity is
    /// never resumed nor taken over: the CONNECT is refused, or (with
    /// `session.owner_mismatch = "discard"`) the old session ends first.
    pub fn open_session(self: &Arc<Self>, req: OpenRequest<'_>) -> Result<Opened, OpenError> {
        let OpenRequest { client_id, owner, clean_start, expiry, conn_id } = req;
        let limits = &self.settings.session;
        let mut map = self.sessions.lock();
        let mut replaces = false;
        if let Some(existing) = map.get(client_id).cloned() {
            if !existing.owner.admits(owner) {
                if limits.owner_mismatch == OwnerMismatch::Refuse {
                    return Err(OpenError::OwnerMismatch);
                }
                info!(
                    client_id = %Peer(client_id),
                    owner = %existing.owner,
                    newcomer = %owner,
                    "session of another identity discarded (session.owner_mismatch = discard)"
                );
                if let Some(k) = existing.lock().take_kick() {
                    let _ = k.send(Kick::TakenOver { clean_start: true });
                }
                map.remove_if(&existing);
                self.discard(&existing, Some(SessionEndReason::Discarded));
                replaces = true;
            } else {
                let mut st = existing.lock();
                if let Some(k) = st.take_kick() {
                    debug!(client_id = %Peer(client_id), "session taken over by a new connection");
                    let _ = k.send(Kick::TakenOver { clean_start });
                }
                // A session that ends with its connection (clean session,
                // expiry 0) is never resumed, even by a takeover.
                let ends_with_connection = st.expiry.is_some_and(|d| d.is_zero());
                if !clean_start && !st.ended && !ends_with_connection {
                    let (kick_tx, kick_rx) = oneshot::channel();
                    st.attach(conn_id, kick_tx);
                    st.expiry = expiry;
                    self.store_session_terms(&existing, &mut st, None);
                    let generation = st.generation;
                    drop(st);
                    return Ok(Opened { session: existing, session_present: true, kicked: kick_rx, generation });
                }
                drop(st);
                map.remove_if(&existing);
                self.discard(&existing, Some(SessionEndReason::Replaced));
                replaces = true;
            }
        }
        // Limits count sessions other than the one being replaced.
        if !replaces {
            if limits.max_sessions != 0 && map.len() >= limits.max_sessions {
                return Err(OpenError::TooManySessions);
            }
            if limits.max_sessions_per_identity != 0 && map.owned_by(owner) >= limits.max_sessions_per_identity {
                return Err(OpenError::TooManyForIdentity);
            }
        }
        let session = Arc::new(Session::new(client_id.clone(), owner.clone(), expiry));
        let (kick_tx, kick_rx) = oneshot::channel();
        let generation = {
            let mut st = session.lock();
            st.attach(conn_id, kick_tx);
            if let Some(store) = self.store.get() {
                if !expiry.is_some_and(|d| d.is_zero()) {
                    st.set_durable(client_id.clone(), Arc::clone(store));
                    self.store_session_terms(&session, &mut st, None);
                }
            }
            st.generation
        };
        map.insert(session.clone());
        self.metrics.sessions.set(map.len() as u64);
        Ok(Opened { session, session_present: false, kicked: kick_rx, generation })
    }

    /// Writes a persistent session's terms (owner, expiry, since when it
    /// is detached) to the store; a session whose expiry became zero
    /// leaves the store.
    fn store_session_terms(
        &self,
        session: &Session,
        st: &mut crate::session::SessionState,
        detached_at: Option<SystemTime>,
    ) {
        if !st.is_durable() {
            return;
        }
        if st.expiry.is_some_and(|d| d.is_zero()) {
            if let Some((client_id, store)) = st.take_durable() {
                drop(store.commit(vec![Change::SessionDelete { client_id }]));
            }
            return;
        }
        if let Some(c) = Self::session_terms_commit(session, st, detached_at) {
            drop(c);
        }
    }

    /// Writes the session's terms again and returns the commit; when it
    /// completes, every change of the session sent before it is durable
    /// too (the store writes in order): a SUBACK waits for it in strict
    /// mode.
    fn session_terms_commit(
        session: &Session,
        st: &crate::session::SessionState,
        detached_at: Option<SystemTime>,
    ) -> Option<Commit> {
        let (client_id, store) = st.durable_link()?;
        Some(store.commit(vec![Change::SessionPut {
            client_id,
            owner: session.owner.clone(),
            expiry_secs: st.expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
            detached_at_ms: detached_at.map(unix_ms),
        }]))
    }

    /// For a durable session: a commit that completes once everything the
    /// session changed so far is durable (strict mode; at once in relaxed).
    pub fn durable_barrier(&self, session: &Session) -> Option<Commit> {
        let st = session.lock();
        Self::session_terms_commit(session, &st, None)
    }

    /// Ends a session: its subscriptions leave the router, its queue goes.
    fn discard(&self, session: &Arc<Session>, reason: Option<SessionEndReason>) {
        self.discard_as(session, reason, true);
    }

    /// [`Broker::discard`]; `tell_remote`: the remote routing seam hears
    /// that the session ended (not when it moved to another node).
    fn discard_as(&self, session: &Arc<Session>, reason: Option<SessionEndReason>, tell_remote: bool) {
        let mut st = session.lock();
        if st.ended {
            return;
        }
        st.ended = true;
        if let Some((client_id, store)) = st.take_durable() {
            drop(store.commit(vec![Change::SessionDelete { client_id }]));
        }
        for rec in st.subscriptions().values() {
            self.router_unsubscribe(&rec.filter, &session.client_id);
        }
        st.clear();
        drop(st);
        self.refresh_router_gauges();
        if let Some(reason) = reason {
            let ev = SessionEvent { client_id: &session.client_id, owner: &session.owner };
            self.hooks.session_ended(&ev, reason);
            if tell_remote {
                if let Some(r) = self.remote.get() {
                    r.session_changed(&session.client_id, true);
                }
            }
        }
    }

    fn end_session_if(&self, session: &Arc<Session>, generation: u64, reason: SessionEndReason) {
        let mut map = self.sessions.lock();
        {
            let st = session.lock();
            if st.owner.is_some() || st.generation != generation || st.ended {
                return;
            }
        }
        map.remove_if(session);
        self.metrics.sessions.set(map.len() as u64);
        drop(map);
        self.discard(session, Some(reason));
        debug!(client_id = %Peer(&session.client_id), reason = reason.as_str(), "session ended");
    }

    /// Called when connection `conn_id` ends. Applies the session expiry
    /// unless another connection has taken the session over.
    pub fn close_session(self: &Arc<Self>, session: &Arc<Session>, conn_id: u64) {
        let (expiry, generation) = {
            let mut st = session.lock();
            if !st.detach(conn_id) {
                return;
            }
            self.store_session_terms(session, &mut st, Some(SystemTime::now()));
            (st.expiry, st.generation)
        };
        // An offline session holds no publisher back.
        self.drained.notify_waiters();
        self.start_expiry(session, expiry, generation);
    }

    /// Ends a detached session after `expiry` unless it is resumed first.
    fn start_expiry(self: &Arc<Self>, session: &Arc<Session>, expiry: Option<Duration>, generation: u64) {
        match expiry {
            Some(d) if d.is_zero() => self.end_session_if(session, generation, SessionEndReason::ConnectionClosed),
            Some(d) => {
                let due = Due::Expire { session: Arc::clone(session), generation };
                self.deadlines.add(self, tokio::time::Instant::now() + d, due);
            }
            None => {}
        }
    }

    /// The next delivery of `session` for connection `conn_id` (the MQTT
    /// writer's and the socketless drain's), within `window`, while that
    /// connection still owns the session. Expired messages are counted on
    /// the way and given to the dropped hook once the lock is released;
    /// publishers held back by this session's congestion read on when it
    /// drained.
    pub(crate) fn next_delivery(
        &self,
        session: &Session,
        conn_id: u64,
        client_id: &str,
        window: usize,
        now: Instant,
    ) -> Option<crate::session::Outgoing> {
        let want_expired = self.hooks.wants(crate::hooks::HookPoint::MessageDropped);
        let mut expired = Vec::new();
        let (out, drained) = {
            let mut st = session.lock();
            if !st.attached_to(conn_id) {
                return None;
            }
            let out = st.next_outgoing(window, now, &self.metrics, want_expired.then_some(&mut expired));
            (out, st.take_drained())
        };
        if drained {
            self.drained.notify_waiters();
        }
        for msg in expired {
            self.hooks.message_dropped(&msg, DropReason::Expired, Some(client_id));
        }
        out
    }

    /// Something the deadline queue holds fell due.
    pub(crate) fn fire(&self, due: Due) {
        match due {
            Due::Expire { session, generation } => {
                self.end_session_if(&session, generation, SessionEndReason::Expired);
            }
            Due::Will { session, will, generation } => {
                let resumed = {
                    let st = session.lock();
                    st.generation != generation && (!st.ended || st.moved_away)
                };
                if !resumed {
                    self.publish(will);
                    // Its stored row goes (a crash before this line
                    // publishes it again after the restart: at least once).
                    self.store_will(&session, generation, None);
                }
            }
        }
    }

    /// Session expiries and delayed wills waiting (fired or not: one
    /// whose session was resumed leaves when its time comes).
    pub fn deadlines_waiting(&self) -> usize {
        self.deadlines.len()
    }

    /// Every session in the registry (for snapshots).
    pub fn sessions_snapshot(&self) -> Vec<Arc<Session>> {
        self.sessions.lock().values().cloned().collect()
    }

    /// The session of `client_id`, if there is one.
    pub fn find_session(&self, client_id: &str) -> Option<Arc<Session>> {
        self.sessions.lock().get(client_id).cloned()
    }

    /// Ends the session of `client_id` if no connection is attached to it
    /// (an operator's discard); false when there is none, or when a
    /// connection holds it (kick that one instead).
    pub(crate) fn remove_detached(&self, client_id: &str) -> bool {
        let mut map = self.sessions.lock();
        let Some(session) = map.get(client_id).cloned() else { return false };
        if session.lock().owner.is_some() {
            return false;
        }
        map.remove_if(&session);
        self.metrics.sessions.set(map.len() as u64);
        drop(map);
        self.discard(&session, Some(SessionEndReason::Discarded));
        true
    }

    /// Registers a detached session restored from a snapshot and starts its
    /// expiry. Replaces nothing: an existing session with that id wins.
    pub fn adopt_session(self: &Arc<Self>, session: Arc<Session>) {
        let expiry = session.lock().expiry;
        self.adopt_session_for(session, expiry);
    }

    /// [`Broker::adopt_session`], ending the session after `first_expiry`
    /// (what is left of its expiry) unless it is resumed first.
    fn adopt_session_for(self: &Arc<Self>, session: Arc<Session>, first_expiry: Option<Duration>) {
        let generation = session.lock().generation;
        let expiry = first_expiry;
        {
            let mut map = self.sessions.lock();
            if map.contains(&session.client_id) {
                drop(map);
                self.discard(&session, None);
                return;
            }
            map.insert(Arc::clone(&session));
            self.metrics.sessions.set(map.len() as u64);
        }
        self.start_expiry(&session, expiry, generation);
    }

    /// The durable store, if the broker has one.
    pub fn store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.store.get()
    }

    /// A new id from the store's message ids (unique for the life of the
    /// store), for rows other than messages (delayed publishes).
    pub fn next_stored_id(&self) -> u64 {
        self.next_message_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The delayed publishes the store held at start (once: later calls
    /// get none). The delayed module schedules them again; while it is
    /// off they stay in the store.
    pub fn take_recovered_delayed(&self) -> Vec<crate::durable::RecoveredDelayed> {
        std::mem::take(&mut *self.recovered_delayed.lock())
    }

    /// The guard bans the store held at start (once).
    pub fn take_recovered_bans(&self) -> Vec<crate::durable::RecoveredBan> {
        std::mem::take(&mut *self.recovered_bans.lock())
    }

    /// How many recovered delayed publishes wait for the delayed module.
    pub fn recovered_delayed_waiting(&self) -> usize {
        self.recovered_delayed.lock().len()
    }

    /// Takes `store` as the broker's durable store and rebuilds what it
    /// held: retained messages, and every persistent session detached,
    /// with its subscriptions, queue, in-flight window (same packet ids)
    /// and QoS 2 state. A session's expiry counts the time it was
    /// detached, downtime included. Call once, at start, before any
    /// client connects. Returns (sessions, messages, retained) restored.
    pub fn restore_from_store(self: &Arc<Self>, store: Arc<dyn SessionStore>, r: Recovered) -> (usize, usize, usize) {
        if self.store.set(Arc::clone(&store)).is_err() {
            return (0, 0, 0);
        }
        self.next_message_id.store(r.next_message_id.max(1), Ordering::Relaxed);
        *self.recovered_delayed.lock() = r.delayed;
        *self.recovered_bans.lock() = r.bans;
        let retained = r.retained.len();
        for m in &r.retained {
            self.retained.set(m);
        }
        self.metrics.retained.set(self.retained.len() as u64);
        let now_ms = unix_ms(SystemTime::now());
        let (mut sessions, mut messages) = (0, 0);
        let mut pending_wills = Vec::new();
        for mut s in r.sessions {
            let expiry = s.expiry_secs.map(|e| Duration::from_secs(u64::from(e)));
            let (session, held) = self.rebuild_session(&mut s);
            messages += held;
            session.lock().set_durable(s.client_id.clone(), Arc::clone(&store));
            // Expiry counts from when the client left (or from now, for a
            // session whose client was attached when the broker stopped).
            let first = expiry.map(|e| {
                let gone = s.detached_at_ms.map_or(0, |at| now_ms.saturating_sub(at));
                e.saturating_sub(Duration::from_millis(gone))
            });
            if first.is_some_and(|d| d.is_zero()) {
                // Expired while the broker was down: it ends now, before
                // any client can resume it — and its will with it (see
                // below).
                self.adopt_session_for(session, Some(Duration::ZERO));
                continue;
            }
            // Its will, if it was pending: the client was connected when
            // the broker stopped (it never saw the client leave), or left
            // and the will's delay had not run out. Published when its
            // delay (capped by the session expiry, as at run time) has run
            // from when the client left — for a client that was connected,
            // from now: when the broker crashed is not known, and now is
            // the first moment it knows the client is gone, so the client
            // gets its whole delay to reconnect, as after a network
            // failure — or at once if that time has passed. Through the
            // deadline queue, so that a reconnect before then cancels it.
            let will = s.will.map(|w| {
                let delay = Duration::from_secs(u64::from(w.delay_secs));
                let delay = expiry.map_or(delay, |e| delay.min(e));
                let from = s.detached_at_ms.unwrap_or(now_ms);
                let due = from.saturating_add(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX));
                (w.msg, Duration::from_millis(due.saturating_sub(now_ms)))
            });
            let generation = session.lock().generation;
            self.adopt_session_for(Arc::clone(&session), first);
            if let Some((msg, wait)) = will {
                pending_wills.push((wait, Due::Will { session, will: msg, generation }));
            }
            sessions += 1;
        }
        // Scheduled only once every session is back with its
        // subscriptions: a will due at once must reach the sessions
        // restored after its own (the deadline task runs beside this).
        let wills = pending_wills.len();
        let start = tokio::time::Instant::now();
        for (wait, due) in pending_wills {
            self.deadlines.add(self, start + wait, due);
        }
        if wills > 0 {
            info!(wills, "pending wills restored from the store");
        }
        (sessions, messages, retained)
    }

    /// A session rebuilt from what a store (or another node, see
    /// [`Broker::install_handed_over`]) held: its subscriptions (in the
    /// router), in-flight window (same packet ids), QoS 2 packet ids
    /// awaiting PUBREL and queue, taken out of `s`. Not registered and not
    /// durable yet. Returns it and how many messages it holds.
    fn rebuild_session(&self, s: &mut crate::durable::RecoveredSession) -> (Arc<Session>, usize) {
        use crate::durable::InflightState;
        let expiry = s.expiry_secs.map(|e| Duration::from_secs(u64::from(e)));
        let session = Arc::new(Session::new(s.client_id.clone(), s.owner.clone(), expiry));
        let mut messages = 0;
        for (raw, options, subscription_id) in std::mem::take(&mut s.subscriptions) {
            let Ok(filter) = SubscriptionFilter::parse(&raw) else { continue };
            // As for a snapshot: the ACL mark is not stored; a restored
            // wildcard subscription has its deliveries checked.
            let check = filter.filter.has_wildcards();
            let rec = SubRecord { filter: filter.clone(), options, subscription_id, check };
            self.subscribe(&session, filter, rec);
        }
        let delivery = |msg: Arc<Message>, qos: u8, retain: bool, subscription_ids: Vec<u32>| Delivery {
            msg,
            qos: QoS::from_u8(qos).unwrap_or(QoS::AtLeastOnce),
            retain,
            subscription_ids,
            check: true,
            queued_weight: 0,
        };
        {
            let mut st = session.lock();
            for i in std::mem::take(&mut s.inflight) {
                let state = match i.state {
                    InflightState::Published => OutState::Published,
                    InflightState::Released => OutState::Released,
                };
                let d = delivery(i.msg, i.qos, i.retain, Vec::new());
                st.push_inflight(Inflight {
                    packet_id: i.packet_id,
                    delivery: d,
                    state,
                    stored: Some(i.id),
                    settle: None,
                });
                messages += 1;
            }
            for id in std::mem::take(&mut s.awaiting_rel) {
                st.await_rel(id, Instant::now());
            }
        }
        for q in std::mem::take(&mut s.queue) {
            session.restore_queued_stored(delivery(q.msg, q.qos, q.retain, q.subscription_ids), Some((q.seq, q.id)));
            messages += 1;
        }
        (session, messages)
    }

    /// Another node asks for the session of `client_id` (a CONNECT there,
    /// see [`crate::remote`]): its connection here, if any, is closed as a
    /// local takeover closes it (v5 DISCONNECT 0x8E, will per the
    /// connection's close) and fenced out (nothing more is sent to it, its
    /// close changes nothing), and the session leaves this node — its
    /// state returned for the other node to install
    /// ([`HandOver::Moved`]), or discarded for a clean start, a session
    /// that ends with its connection, or another identity under
    /// `session.owner_mismatch = "discard"`. With a durable store its rows
    /// leave this node's store.
    pub fn hand_over(self: &Arc<Self>, client_id: &str, owner: &SessionOwner, clean_start: bool) -> HandOver {
        use crate::durable::{InflightState, RecoveredInflight, RecoveredQueued, RecoveredSession};
        let mut map = self.sessions.lock();
        let Some(existing) = map.get(client_id).cloned() else { return HandOver::NotHere };
        let admits = existing.owner.admits(owner);
        if !admits && self.settings.session.owner_mismatch == OwnerMismatch::Refuse {
            return HandOver::OwnerMismatch;
        }
        let mut st = existing.lock();
        if let Some(k) = st.take_kick() {
            let _ = k.send(Kick::TakenOver { clean_start: clean_start || !admits });
        }
        // Fenced: the old connection no longer holds the session (its
        // writer stops, its close finds another generation).
        st.owner = None;
        st.generation = self.next_conn_id();
        let ends_with_connection = st.expiry.is_some_and(|d| d.is_zero());
        let moved = (admits && !clean_start && !st.ended && !ends_with_connection).then(|| {
            let mut subscriptions: Vec<_> =
                st.subscriptions().values().map(|r| (r.filter.raw.clone(), r.options, r.subscription_id)).collect();
            subscriptions.sort_by(|a, b| a.0.cmp(&b.0));
            let inflight = st
                .inflight()
                .iter()
                .map(|i| RecoveredInflight {
                    packet_id: i.packet_id,
                    id: crate::durable::MessageId(0),
                    msg: Arc::clone(&i.delivery.msg),
                    qos: i.delivery.qos as u8,
                    retain: i.delivery.retain,
                    state: match i.state {
                        OutState::Published => InflightState::Published,
                        OutState::Released => InflightState::Released,
                    },
                })
                .collect();
            let queue = st
                .queued()
                .zip(1u64..)
                .map(|(d, seq)| RecoveredQueued {
                    seq,
                    id: crate::durable::MessageId(0),
                    msg: Arc::clone(&d.msg),
                    qos: d.qos as u8,
                    retain: d.retain,
                    subscription_ids: d.subscription_ids.clone(),
                })
                .collect();
            let mut awaiting_rel: Vec<u16> = st.awaiting_rel().keys().copied().collect();
            awaiting_rel.sort_unstable();
            RecoveredSession {
                client_id: existing.client_id.clone(),
                owner: existing.owner.clone(),
                expiry_secs: st.expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX)),
                detached_at_ms: None,
                subscriptions,
                queue,
                inflight,
                awaiting_rel,
                will: None,
            }
        });
        st.moved_away = moved.is_some();
        drop(st);
        map.remove_if(&existing);
        self.metrics.sessions.set(map.len() as u64);
        drop(map);
        self.drained.notify_waiters();
        match moved {
            Some(state) => {
                // Moved, not ended: no session-ended hook here (the other
                // node resumes it).
                self.discard_as(&existing, None, false);
                HandOver::Moved(state)
            }
            None => {
                let reason = if admits { SessionEndReason::Replaced } else { SessionEndReason::Discarded };
                self.discard_as(&existing, Some(reason), false);
                HandOver::Discarded
            }
        }
    }

    /// Installs a session another node handed over ([`Broker::hand_over`]
    /// there, or the subscriptions the cluster's registry kept for a node
    /// that did not answer) as a detached local session, replacing any
    /// session this node still held for the client id (an older copy).
    /// The CONNECT that asked for it opens it next. With a durable store
    /// (and an expiry above zero) its rows are written; the returned commit
    /// completes when they are durable (strict mode).
    pub fn install_handed_over(self: &Arc<Self>, mut s: crate::durable::RecoveredSession) -> Option<Commit> {
        if let Some(old) = self.sessions.lock().get(&s.client_id).cloned() {
            if let Some(k) = old.lock().take_kick() {
                let _ = k.send(Kick::TakenOver { clean_start: true });
            }
            let mut map = self.sessions.lock();
            map.remove_if(&old);
            self.metrics.sessions.set(map.len() as u64);
            drop(map);
            self.discard_as(&old, None, false);
        }
        let persistent = s.expiry_secs != Some(0);
        let store = self.store.get().filter(|_| persistent).cloned();
        if store.is_some() {
            for (q, seq) in s.queue.iter_mut().zip(1u64..) {
                q.seq = seq;
                q.id = crate::durable::MessageId(self.next_stored_id());
            }
            for i in &mut s.inflight {
                i.id = crate::durable::MessageId(self.next_stored_id());
            }
        }
        let mut changes = Vec::new();
        if store.is_some() {
            let client_id = s.client_id.clone();
            changes.push(Change::SessionPut {
                client_id: client_id.clone(),
                owner: s.owner.clone(),
                expiry_secs: s.expiry_secs,
                detached_at_ms: Some(unix_ms(SystemTime::now())),
            });
            for (filter, options, subscription_id) in &s.subscriptions {
                changes.push(Change::SubscriptionPut {
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    options: *options,
                    subscription_id: *subscription_id,
                });
            }
            for q in &s.queue {
                changes.push(Change::MessagePut { id: q.id, msg: Arc::clone(&q.msg) });
                changes.push(Change::QueuePush {
                    client_id: client_id.clone(),
                    seq: q.seq,
                    id: q.id,
                    qos: q.qos,
                    retain: q.retain,
                    subscription_ids: q.subscription_ids.clone(),
                });
            }
            for i in &s.inflight {
                changes.push(Change::MessagePut { id: i.id, msg: Arc::clone(&i.msg) });
                changes.push(Change::InflightPut {
                    client_id: client_id.clone(),
                    packet_id: i.packet_id,
                    id: i.id,
                    qos: i.qos,
                    retain: i.retain,
                    state: i.state,
                });
            }
            for &packet_id in &s.awaiting_rel {
                changes.push(Change::AwaitRelPut { client_id: client_id.clone(), packet_id });
            }
        }
        let expiry = s.expiry_secs.map(|e| Duration::from_secs(u64::from(e)));
        let (session, _) = self.rebuild_session(&mut s);
        let commit = store.map(|store| {
            session.lock().set_durable(s.client_id.clone(), Arc::clone(&store));
            store.commit(changes)
        });
        self.adopt_session_for(session, expiry);
        commit
    }

    /// Writes the will of connection `generation` to the store with its
    /// persistent session (`Some`), or deletes the stored one (`None`):
    /// only while that connection still holds the session (a connection
    /// taken over leaves the newcomer's will alone) and the session is
    /// durable. Not awaited: written with the next group commit. Returns
    /// whether a will was written.
    pub(crate) fn store_will(
        &self,
        session: &Session,
        generation: u64,
        will: Option<(&Arc<Message>, Duration)>,
    ) -> bool {
        let st = session.lock();
        if st.generation != generation || st.ended {
            return false;
        }
        let Some((client_id, store)) = st.durable_link() else { return false };
        let change = match will {
            Some((msg, delay)) => Change::WillPut {
                client_id,
                msg: Arc::clone(msg),
                delay_secs: u32::try_from(delay.as_secs()).unwrap_or(u32::MAX),
            },
            None => Change::WillDelete { client_id },
        };
        drop(store.commit(vec![change]));
        will.is_some()
    }

    /// Publishes `will` after `delay` unless the session was resumed by a
    /// new connection in the meantime (its generation moved past
    /// `generation`, the one of the connection that left the will).
    pub fn schedule_will(
        self: &Arc<Self>,
        session: &Arc<Session>,
        will: Arc<Message>,
        delay: Duration,
        generation: u64,
    ) {
        if delay.is_zero() {
            self.publish(will);
            return;
        }
        let due = Due::Will { session: Arc::clone(session), will, generation };
        self.deadlines.add(self, tokio::time::Instant::now() + delay, due);
    }

    /// Adds or replaces a subscription. Returns true if it is new.
    pub fn subscribe(&self, session: &Arc<Session>, filter: SubscriptionFilter, rec: SubRecord) -> bool {
        let mut st = session.lock();
        if st.ended {
            return false;
        }
        let sub = Subscriber {
            client_id: session.client_id.clone(),
            options: rec.options,
            subscription_id: rec.subscription_id,
            check: rec.check,
            handle: Arc::clone(session),
        };
        let existed = st.insert_subscription(filter.raw.clone(), rec);
        let remote = self.remote.get();
        self.router.subscribe_notify(&filter, sub, || {
            if let Some(r) = remote {
                r.filter_added(&filter);
            }
        });
        let persistent = !st.expiry.is_some_and(|d| d.is_zero());
        drop(st);
        self.refresh_router_gauges();
        if let Some(r) = remote.filter(|_| persistent && !existed) {
            r.session_changed(&session.client_id, false);
        }
        !existed
    }

    /// Removes a subscription by the filter string the client used.
    pub fn unsubscribe(&self, session: &Arc<Session>, raw: &str) -> bool {
        let mut st = session.lock();
        let Some(rec) = st.remove_subscription(raw) else {
            return false;
        };
        self.router_unsubscribe(&rec.filter, &session.client_id);
        let persistent = !st.expiry.is_some_and(|d| d.is_zero());
        drop(st);
        self.refresh_router_gauges();
        if let Some(r) = self.remote.get().filter(|_| persistent) {
            r.session_changed(&session.client_id, false);
        }
        true
    }

    /// Takes a subscription out of the router, telling the remote routing
    /// seam when it was the last of its (group, filter) here.
    fn router_unsubscribe(&self, filter: &SubscriptionFilter, client_id: &str) {
        let remote = self.remote.get();
        self.router.unsubscribe_notify(filter, client_id, || {
            if let Some(r) = remote {
                r.filter_removed(filter);
            }
        });
    }

    fn refresh_router_gauges(&self) {
        self.metrics.subscriptions.set(self.router.subscription_count() as u64);
        self.metrics.topics.set(self.router.topic_count() as u64);
    }

    /// Stores / clears the retained copy of `msg` (when it is retained).
    pub fn retain(&self, msg: &Arc<Message>) -> RetainResult {
        self.retain_stored(msg, None)
    }

    /// [`Broker::retain`], writing the change to the store (when there is
    /// one); the commit goes to `commits` for a publisher to wait for.
    pub fn retain_stored(&self, msg: &Arc<Message>, commits: Option<&mut Vec<Commit>>) -> RetainResult {
        let r = self.retained.set(msg);
        if let Some(store) = self.store.get() {
            let change = match r {
                RetainResult::Stored | RetainResult::Replaced if !msg.topic.as_str().starts_with('$') => {
                    Some(Change::RetainPut { msg: Arc::clone(msg) })
                }
                RetainResult::Cleared | RetainResult::OverMaxBytes => {
                    Some(Change::RetainDelete { topic: Arc::from(msg.topic.as_str()) })
                }
                _ => None,
            };
            if let Some(change) = change {
                let commit = store.commit(vec![change]);
                if let Some(c) = commits {
                    c.push(commit);
                }
            }
        }
        match r {
            RetainResult::Stored | RetainResult::Replaced => {
                self.metrics.messages_retained_stored.fetch_add(1, Ordering::Relaxed);
            }
            RetainResult::Full | RetainResult::OverMaxBytes | RetainResult::TooLarge => {
                self.metrics.dropped(DropReason::RetainedRefused);
                self.hooks.message_dropped(msg, DropReason::RetainedRefused, None);
                // Any client can cause this line: paced like refusals.
                if let Some(suppressed) = self.refusal_log.allow() {
                    info!(topic = %Peer(msg.topic.as_str()), result = ?r, suppressed, "retained message refused");
                }
            }
            _ => {}
        }
        self.metrics.retained.set(self.retained.len() as u64);
        r
    }

    /// Routes a message that originated on this node to every matching
    /// session (retaining it first if its retain flag is set), then hands
    /// it to the remote routing seam, if there is one, for the other nodes
    /// ([`crate::remote`]).
    pub fn publish(&self, msg: Arc<Message>) -> Routed {
        self.publish_from(msg, None, None)
    }

    /// [`Broker::publish`] for a client's PUBLISH: the connected sessions
    /// it reached that are congested (other than the publisher's own) are
    /// put in `congested`, for the publisher to wait for
    /// ([`Broker::wait_drained`]) before it reads on.
    ///
    /// `commits` receives the store commits of the persistent sessions
    /// (and the retained store) it reached: in strict mode the publisher
    /// acknowledges once they complete.
    pub fn publish_from(
        &self,
        msg: Arc<Message>,
        congested: Option<&mut Vec<Arc<Session>>>,
        mut commits: Option<&mut Vec<Commit>>,
    ) -> Routed {
        if msg.retain {
            self.retain_stored(&msg, commits.as_deref_mut());
        }
        self.route_local_origin(&msg, congested, commits)
    }

    /// Routes a message that originated here without touching the retained
    /// store (and forwards it, as [`Broker::publish`] does).
    pub fn route(&self, msg: &Arc<Message>, congested: Option<&mut Vec<Arc<Session>>>) -> Routed {
        self.route_local_origin(msg, congested, None)
    }

    /// Local routing, then the remote step: forward, and ask for remote
    /// interest when nothing local matched. A message nobody anywhere
    /// wants is counted dropped (`no_subscribers`).
    fn route_local_origin(
        &self,
        msg: &Arc<Message>,
        congested: Option<&mut Vec<Arc<Session>>>,
        mut commits: Option<&mut Vec<Commit>>,
    ) -> Routed {
        // The one read of the seam per publish; `None` in single-node mode.
        let remote = self.remote.get();
        // With a remote, shared groups are served through it (see
        // `crate::remote`): local routing leaves them out.
        let groups = remote.is_none();
        let matched = self.route_stored(msg, groups, congested, commits.as_deref_mut());
        let local = matched.unwrap_or(0);
        let (remote, remote_congested) = match remote {
            Some(r) => {
                r.forward(msg, commits);
                (local == 0 && r.has_interest(&msg.topic), r.congested())
            }
            None => (false, false),
        };
        if matched.is_none() && !remote {
            self.metrics.dropped(DropReason::NoSubscribers);
            self.hooks.message_dropped(msg, DropReason::NoSubscribers, None);
        }
        Routed { local, remote, remote_congested }
    }

    /// Routes a message that came from another node to this node's
    /// non-shared subscribers (never its shared groups, never forwarded,
    /// never retained here: see [`crate::remote`]). Returns the sessions it
    /// matched. Nothing is counted dropped when none did.
    pub fn deliver_remote(&self, msg: &Arc<Message>) -> usize {
        self.route_stored(msg, false, None, None).unwrap_or(0)
    }

    /// [`Broker::deliver_remote`], pushing into `commits` the store commits
    /// of the persistent sessions it reached: a transport that stores
    /// messages between nodes acknowledges its copy once they complete, so
    /// that a message is on this node's disk before it leaves the stream.
    pub fn deliver_remote_committed(&self, msg: &Arc<Message>, commits: &mut Vec<Commit>) -> usize {
        self.route_stored(msg, false, None, Some(commits)).unwrap_or(0)
    }

    /// Gives a message from another node to the one member of the shared
    /// group `filter.share_group` on `filter.filter` that the local
    /// strategy picks (the transport picked this node for the group: see
    /// [`crate::remote`]). False when the group has no member here (or
    /// `filter` is not shared).
    pub fn deliver_remote_shared(&self, msg: &Arc<Message>, filter: &SubscriptionFilter) -> bool {
        let Some(sub) = self.router.pick_shared(filter) else { return false };
        let mut routes = vec![Route { subscriber: sub, shared: true }];
        self.deliver_routes(msg, &mut routes, Clients::Distinct, None, None);
        true
    }

    /// Stores (or clears) a retained message that came from another node
    /// in the local retained index (and the local durable store, as a
    /// local one): new local subscribers see it. Neither routed nor
    /// forwarded: its live delivery is [`Broker::deliver_remote`]'s.
    pub fn retain_remote(&self, msg: &Arc<Message>) -> RetainResult {
        self.retain_stored(msg, None)
    }

    /// Routes to local sessions; `None` when no subscription matched at
    /// all (before no-local), otherwise the sessions it reached.
    fn route_stored(
        &self,
        msg: &Arc<Message>,
        groups: bool,
        congested: Option<&mut Vec<Arc<Session>>>,
        commits: Option<&mut Vec<Commit>>,
    ) -> Option<usize> {
        // One route list per worker thread, reused: a publish allocates
        // neither it nor the list of copies. Nothing below routes again
        // (enqueueing only queues and wakes), so the borrow cannot nest.
        thread_local! {
            static ROUTES: std::cell::RefCell<Vec<Route<Arc<Session>>>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        ROUTES.with(|cell| {
            let Ok(mut routes) = cell.try_borrow_mut() else {
                return self.route_into(msg, groups, &mut Vec::new(), congested, commits);
            };
            let n = self.route_into(msg, groups, &mut routes, congested, commits);
            // A huge fan-out does not pin its list to the thread.
            if routes.capacity() > 1024 {
                *routes = Vec::new();
            }
            n
        })
    }

    fn route_into(
        &self,
        msg: &Arc<Message>,
        groups: bool,
        routes: &mut Vec<Route<Arc<Session>>>,
        congested: Option<&mut Vec<Arc<Session>>>,
        commits: Option<&mut Vec<Commit>>,
    ) -> Option<usize> {
        routes.clear();
        let clients = if groups {
            self.router.matches(&msg.topic, routes)
        } else {
            self.router.matches_plain(&msg.topic, routes)
        };
        if routes.is_empty() {
            return None;
        }
        remove_no_local(routes, msg.publisher.as_deref());
        Some(self.deliver_routes(msg, routes, clients, congested, commits))
    }

    /// Offers `msg` to the sessions of `routes` (one copy per client).
    fn deliver_routes(
        &self,
        msg: &Arc<Message>,
        routes: &mut Vec<Route<Arc<Session>>>,
        clients: Clients,
        mut congested: Option<&mut Vec<Arc<Session>>>,
        commits: Option<&mut Vec<Commit>>,
    ) -> usize {
        let mut slot = StoreSlot::new(&self.next_message_id, commits);
        let stored = self.store.get().is_some() && msg.qos != QoS::AtMostOnce;
        let mut n = 0;
        for_each_delivery(routes, clients, |d| {
            let delivery = Delivery {
                msg: Arc::clone(msg),
                qos: msg.qos.min(d.qos),
                retain: d.retain_as_published && msg.retain,
                subscription_ids: d.subscription_ids,
                check: d.check,
                queued_weight: 0,
            };
            // Counted whether or not the queue took it: a subscriber whose
            // queue was full still matched (its drop is counted there), and
            // a v5 publisher must not hear "no matching subscribers".
            let slot = if stored { Some(&mut slot) } else { None };
            match d.handle.offer_stored(delivery, &self.settings.session, &self.metrics, slot) {
                Ok(true) => {
                    if let Some(list) = congested.as_deref_mut() {
                        if msg.publisher.as_deref() != Some(&*d.handle.client_id) {
                            list.push(Arc::clone(&d.handle));
                        }
                    }
                }
                Ok(false) | Err(None) => {}
                Err(Some(reason)) => self.hooks.message_dropped(msg, reason, Some(&d.handle.client_id)),
            }
            n += 1;
        });
        slot.finish();
        n
    }

    /// Waits, at most `session.stall_timeout`, until none of `congested`
    /// is congested any more (drained to half the high-water mark,
    /// disconnected, or stuck past the bound): the publisher's connection
    /// reads nothing meanwhile, which is the back-pressure.
    pub async fn wait_drained(&self, mut congested: Vec<Arc<Session>>) {
        let settings = &self.settings.session;
        let deadline = tokio::time::Instant::now() + settings.stall_timeout;
        loop {
            // Registered before the check, so a drain in between is not missed.
            let drained = self.drained.notified();
            congested.retain(|s| s.is_congested(settings));
            if congested.is_empty() {
                return;
            }
            self.metrics.backpressure_waits.fetch_add(1, Ordering::Relaxed);
            if tokio::time::timeout_at(deadline, drained).await.is_err() {
                return;
            }
        }
    }

    /// Waits, at most `session.stall_timeout`, until the remote routing
    /// seam's outbound queue has drained below its low-water mark
    /// ([`RemoteRouting::drained`]); call it when
    /// [`Routed::remote_congested`] says so. The publisher's connection
    /// reads nothing meanwhile (back-pressure, counted in
    /// `backpressure_waits`); past the bound it reads on, and what does not
    /// fit the queue is dropped and counted by the implementation.
    pub async fn wait_remote_drained(&self) {
        let Some(r) = self.remote.get() else { return };
        self.metrics.backpressure_waits.fetch_add(1, Ordering::Relaxed);
        let _ = tokio::time::timeout(self.settings.session.stall_timeout, r.drained()).await;
    }

    /// Publishes a broker-originated message (for `$SYS`).
    pub fn publish_sys(&self, topic: &str, payload: impl Into<bytes::Bytes>, retain: bool) {
        let Ok(topic) = crate::topic::TopicName::new(topic) else {
            return;
        };
        let msg = Arc::new(Message {
            topic,
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        });
        if retain {
            let _ = self.retained.set(&msg);
        }
        let mut routes = Vec::new();
        let clients = self.router.matches(&msg.topic, &mut routes);
        self.deliver_sys(&msg, routes, clients);
    }

    /// A `$SYS` event that is not retained (presence): the payload is made
    /// only when someone subscribes to the topic, so a connect storm with
    /// no `$SYS` subscriber does not build and drop a JSON document per
    /// connect and disconnect (that was 44 % of the CPU of a connect, by
    /// callgrind). Delivered at `qos` at most (each subscriber's granted
    /// QoS caps it).
    pub fn publish_sys_event(&self, topic: &str, qos: QoS, payload: impl FnOnce() -> String) {
        if !self.sys_events_wanted() {
            return;
        }
        let Ok(topic) = crate::topic::TopicName::new(topic) else {
            return;
        };
        let mut routes = Vec::new();
        let clients = self.router.matches(&topic, &mut routes);
        if routes.is_empty() {
            return;
        }
        let msg = Arc::new(Message {
            topic,
            payload: payload().into(),
            qos,
            retain: false,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        });
        self.deliver_sys(&msg, routes, clients);
    }

    /// Whether a `$SYS` event could reach anyone now (some subscription's
    /// filter starts with `$`): callers skip building the topic otherwise.
    pub fn sys_events_wanted(&self) -> bool {
        self.router.has_dollar_subscriptions()
    }

    fn deliver_sys(&self, msg: &Arc<Message>, mut routes: Vec<Route<Arc<Session>>>, clients: Clients) {
        for_each_delivery(&mut routes, clients, |d| {
            let delivery = Delivery {
                msg: Arc::clone(msg),
                qos: msg.qos.min(d.qos),
                retain: false,
                subscription_ids: d.subscription_ids,
                check: d.check,
                queued_weight: 0,
            };
            d.handle.enqueue(delivery, &self.settings.session, &self.metrics);
        });
    }
}
