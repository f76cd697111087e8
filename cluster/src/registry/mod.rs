//! The cluster-wide session registry, in JetStream KV, and the takeover of
//! a session across nodes.
//!
//! ```text
//!  CONNECT ─► locate ─► KV read <prefix>_sessions[key(client id)]
//!               │  nobody / this node ───────────────────────────────┐
//!               │  another node: request <prefix>.ctl.<node>.takeover│
//!               │     owner: close its connection (0x8E), detach,   │
//!               │            reply with the session (or discard)    │
//!               │     here:  install it (durable rows written)      │
//!               │  no answer: subscriptions from the entry          │
//!               └─► KV compare-and-set (create / update revision) ◄─┘ ─► local open
//!  SUBSCRIBE / UNSUBSCRIBE / session end ─► session_changed ─► update queue ─► task: KV CAS
//! ```
//!
//! * [`key`]: a client id as a KV key, reversibly, bounded.
//! * [`entry`]: the value: owner node, its run, epoch, identity, expiry,
//!   persistent subscriptions (JSON, versioned).
//! * [`handover`]: the takeover request and reply between nodes.
//!
//! **One owner.** Every write is a compare-and-set on the revision read
//! (create for a new key, update otherwise): of two CONNECTs on two nodes
//! at once, one write wins; the other re-reads, finds the winner and asks
//! it for the session (up to [`CAS_ATTEMPTS`] rounds, then "server
//! unavailable"). The winner's own CONNECT may still be between its claim
//! and its local open when the request comes: it waits for it (up to
//! [`CLAIM_WAIT`]) so that the session it hands over is the one its client
//! just opened, whose connection then gets 0x8E: one live connection.
//!
//! **Cost.** A CONNECT costs one KV read and one compare-and-set (plus one
//! request/reply when another node owns the session). Clean sessions
//! (clean start, expiry 0) get an entry too — it is what makes a second
//! CONNECT elsewhere close the first connection — without subscriptions,
//! and it is deleted when the connection closes. Subscription changes of
//! persistent sessions and session ends are written afterwards by a task,
//! off the client's path (bounded queue, coalesced per client id; what
//! fails or does not fit is counted).
//!
//! **Fail closed.** When the bucket cannot be read or written within
//! `[cluster] request_timeout` (NATS down, this node on the minority side
//! of a partition), the CONNECT is refused with "server unavailable".
//!
//! **A dead owner.** When the owner does not answer within
//! `request_timeout` (or no one listens on its subject), the
//! subscriptions are restored from the entry; the messages queued for the
//! session on that node are lost. A node that was only stopped (SIGSTOP)
//! that long keeps its old connection until it next hears from the client
//! or the keepalive ends it: during that time two nodes hold a copy.

pub mod entry;
pub mod handover;
pub mod key;
pub mod metrics;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv::{self, CreateErrorKind, Operation, UpdateErrorKind};
use futures::StreamExt;
use parking_lot::Mutex;
use portcullis_core::broker::{Broker, HandOver};
use portcullis_core::codec::DecodeLimits;
use portcullis_core::durable::RecoveredSession;
use portcullis_core::logsafe::{LogLimiter, Peer};
use portcullis_core::owner::{OwnerMismatch, SessionOwner};
use portcullis_core::remote::{LocateError, LocateRequest};
use tokio::sync::{mpsc, Semaphore};
use tracing::{info, warn};

use crate::subject::{self, Prefix};
use entry::{Entry, Owner, Sub};
use handover::{Outcome, Reply, Request};
use metrics::{Counters, Event};

/// Compare-and-set rounds a CONNECT makes before it is refused.
pub const CAS_ATTEMPTS: usize = 5;
/// CONNECTs waiting on the registry (a read, a write, perhaps a takeover)
/// at once on this node; past it a CONNECT is refused as "server
/// unavailable" (the client retries), so a reconnect storm holds at most
/// this many registry operations in flight.
pub const MAX_PENDING: usize = 4096;
/// Entry updates waiting (one per client id at most).
pub const UPDATE_QUEUE: usize = 8192;
/// How long a takeover request waits for a CONNECT here that has claimed
/// the session but not opened it yet.
pub const CLAIM_WAIT: Duration = Duration::from_millis(500);
/// How long a claim counts as recent (see [`CLAIM_WAIT`]).
const CLAIM_RECENT: Duration = Duration::from_secs(2);
/// Recent claims remembered at most.
const MAX_CLAIMS: usize = 65_536;

/// The bucket of the registry: `<prefix>_sessions` (`.` in the prefix
/// becomes `_`: bucket names allow `[A-Za-z0-9_-]`).
pub fn bucket_name(prefix: &Prefix) -> String {
    format!("{}_sessions", prefix.as_str().replace('.', "_"))
}

/// The subject on which `node` answers takeover requests.
pub fn takeover_subject(prefix: &Prefix, node: &str) -> String {
    let mut s = format!("{}.ctl.", prefix.as_str());
    subject::encode_level(node, &mut s);
    s.push_str(".takeover");
    s
}

/// This node's side of the registry.
pub struct Registry {
    node: Arc<str>,
    run: u64,
    prefix: Prefix,
    bucket: String,
    replicas: usize,
    kv: OnceLock<kv::Store>,
    client: async_nats::Client,
    timeout: Duration,
    max_payload: usize,
    decode: DecodeLimits,
    broker: Weak<Broker>,
    pending: Semaphore,
    claims: Mutex<HashMap<Arc<str>, Instant>>,
    updates: mpsc::Sender<Arc<str>>,
    queued: Mutex<HashSet<Arc<str>>>,
    counters: Arc<Counters>,
    log: LogLimiter,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("bucket", &self.bucket).field("open", &self.kv.get().is_some()).finish()
    }
}

/// Settings [`Registry::start`] takes from `[cluster]`.
#[derive(Debug, Clone)]
pub struct RegistrySettings {
    pub replicas: usize,
    pub timeout: Duration,
    pub max_payload: usize,
    pub decode: DecodeLimits,
}

/// What the owner node answered.
enum Asked {
    Reply(Reply),
    /// No one listens on its subject, or it did not answer in time.
    NoAnswer,
    /// NATS failed otherwise, or the reply was unreadable.
    Failed,
}

impl Registry {
    /// Opens (or creates) the bucket — retried in the background until it
    /// works, CONNECTs being refused until then — starts the takeover
    /// responder and the update task, and registers the counters.
    pub async fn start(
        client: async_nats::Client,
        broker: &Arc<Broker>,
        node: Arc<str>,
        run: u64,
        prefix: Prefix,
        settings: RegistrySettings,
    ) -> Arc<Registry> {
        let (tx, rx) = mpsc::channel(UPDATE_QUEUE);
        let reg = Arc::new(Registry {
            bucket: bucket_name(&prefix),
            node,
            run,
            prefix,
            replicas: settings.replicas,
            kv: OnceLock::new(),
            client,
            timeout: settings.timeout,
            max_payload: settings.max_payload,
            decode: settings.decode,
            broker: Arc::downgrade(broker),
            pending: Semaphore::new(MAX_PENDING),
            claims: Mutex::new(HashMap::new()),
            updates: tx,
            queued: Mutex::new(HashSet::new()),
            counters: Arc::default(),
            log: LogLimiter::new(1),
        });
        broker.add_metric_source(Arc::clone(&reg.counters) as Arc<dyn portcullis_core::metrics::MetricSource>);
        match reg.client.subscribe(takeover_subject(&reg.prefix, &reg.node)).await {
            Ok(sub) => {
                tokio::spawn(serve_task(Arc::downgrade(&reg), sub));
            }
            Err(e) => {
                warn!(error = %e, "cluster: cannot subscribe to takeover requests; other nodes will not get sessions from this one")
            }
        }
        tokio::spawn(update_task(Arc::downgrade(&reg), rx));
        if !reg.open().await {
            tokio::spawn(open_task(Arc::downgrade(&reg)));
        }
        reg
    }

    /// The counters (for tests and introspection).
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Whether the bucket is open.
    pub fn is_open(&self) -> bool {
        self.kv.get().is_some()
    }

    async fn open(&self) -> bool {
        let mut js = async_nats::jetstream::new(self.client.clone());
        js.set_timeout(self.timeout);
        let config = kv::Config {
            bucket: self.bucket.clone(),
            description: "Portcullis session registry: client id -> owner node, identity, subscriptions".into(),
            history: 1,
            num_replicas: self.replicas,
            storage: async_nats::jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let store = match tokio::time::timeout(self.timeout, js.create_key_value(config)).await {
            Ok(Ok(s)) => Ok(s),
            Ok(Err(create)) => match tokio::time::timeout(self.timeout, js.get_key_value(self.bucket.clone())).await {
                Ok(Ok(s)) => Ok(s),
                _ => Err(create.to_string()),
            },
            Err(_) => Err("timed out".to_string()),
        };
        match store {
            Ok(s) => {
                let _ = self.kv.set(s);
                info!(bucket = %self.bucket, replicas = self.replicas, "cluster: session registry open");
                true
            }
            Err(e) => {
                if let Some(suppressed) = self.log.allow() {
                    warn!(bucket = %self.bucket, kv_replicas = self.replicas, error = %e, suppressed, "cluster: session registry not open yet (JetStream on, and [cluster] kv_replicas at most the NATS servers?); CONNECTs are refused as server unavailable");
                }
                false
            }
        }
    }

    fn unavailable(&self, why: &dyn std::fmt::Display) -> LocateError {
        self.counters.add(Event::Unavailable, 1);
        if let Some(suppressed) = self.log.allow() {
            warn!(error = %why, suppressed, "cluster: session registry unavailable; CONNECT refused");
        }
        LocateError::Unavailable
    }

    /// [`portcullis_core::remote::RemoteRouting::locate`]: see the module
    /// documentation.
    pub async fn locate(&self, req: LocateRequest<'_>) -> Result<(), LocateError> {
        let key = key::encode(req.client_id).map_err(|e| {
            if let Some(suppressed) = self.log.allow() {
                warn!(client_id = %Peer(req.client_id), error = %e, suppressed, "cluster: CONNECT refused");
            }
            LocateError::ClientIdTooLong
        })?;
        let Some(kv) = self.kv.get() else { return Err(self.unavailable(&"the bucket is not open")) };
        let Ok(_permit) = self.pending.try_acquire() else {
            return Err(self.unavailable(&"too many CONNECTs waiting on the registry"));
        };
        let Some(broker) = self.broker.upgrade() else { return Err(LocateError::Unavailable) };
        let refuse = broker.settings.session.owner_mismatch == OwnerMismatch::Refuse;
        let expiry = req.expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        let keeps_state = !req.clean_start && expiry != Some(0);
        // Subscriptions of a session installed here by an earlier round.
        let mut installed: Option<Vec<Sub>> = None;
        for _ in 0..CAS_ATTEMPTS {
            let got = match retry_transient(self.timeout, || leader_entry(kv, &key)).await {
                Ok(e) => e,
                Err(e) => return Err(self.fail(&broker, &req, installed.is_some(), &format!("read: {e}"))),
            };
            let (revision, current) = match got {
                None => (None, None),
                Some(e) if !e.put => (Some(e.revision), None),
                Some(e) => match Entry::decode(&e.value) {
                    Ok(x) if x.client_id == **req.client_id => (Some(e.revision), Some(x)),
                    Ok(_) => (Some(e.revision), None),
                    Err(err) => {
                        if let Some(suppressed) = self.log.allow() {
                            warn!(client_id = %Peer(req.client_id), error = %err, suppressed, "cluster: unreadable registry entry replaced");
                        }
                        (Some(e.revision), None)
                    }
                },
            };
            let mut subs = installed.clone().unwrap_or_default();
            let mut epoch = 1;
            if let Some(cur) = &current {
                epoch = cur.epoch.saturating_add(1);
                let admits = cur.owner.session_owner().admits(req.owner);
                if !admits && refuse {
                    self.counters.add(Event::OwnerMismatch, 1);
                    return Err(LocateError::OwnerMismatch);
                }
                let restore = keeps_state && admits;
                if cur.node != *self.node {
                    match self.ask(&cur.node, &req).await {
                        Asked::Reply(r) => match (r.outcome, r.session) {
                            (Outcome::Moved, Some(state)) => {
                                subs = state.subs.clone();
                                let lost = state.dropped;
                                match state.into_session(
                                    req.client_id.clone(),
                                    req.owner.clone(),
                                    self.decode,
                                    Instant::now(),
                                ) {
                                    Ok(s) => {
                                        self.counters.add(Event::HandoverMessagesLost, lost);
                                        self.install(&broker, s).await;
                                        self.counters.add(Event::MovedIn, 1);
                                    }
                                    Err(e) => {
                                        warn!(client_id = %Peer(req.client_id), node = %Peer(&cur.node), error = %e, "cluster: handed-over session unreadable; its subscriptions are restored from the registry");
                                        subs = cur.subs.clone();
                                        self.restore(&broker, &req, cur);
                                    }
                                }
                                installed = Some(subs.clone());
                            }
                            (Outcome::OwnerMismatch, _) => {
                                self.counters.add(Event::OwnerMismatch, 1);
                                return Err(LocateError::OwnerMismatch);
                            }
                            _ => {}
                        },
                        Asked::NoAnswer if restore && installed.is_none() => {
                            info!(client_id = %Peer(req.client_id), node = %Peer(&cur.node), "cluster: the owner node did not answer; subscriptions restored from the registry, its queued messages are lost");
                            self.restore(&broker, &req, cur);
                            subs = cur.subs.clone();
                            installed = Some(subs.clone());
                        }
                        Asked::NoAnswer => {}
                        Asked::Failed => {
                            return Err(self.fail(&broker, &req, installed.is_some(), &"takeover request failed"))
                        }
                    }
                } else if restore && installed.is_none() {
                    if req.held_here {
                        subs = cur.subs.clone();
                    } else if !cur.subs.is_empty() {
                        // This node's entry, but the session is not here
                        // (a restart without it): as for a dead owner.
                        self.restore(&broker, &req, cur);
                        subs = cur.subs.clone();
                        installed = Some(subs.clone());
                    }
                }
            }
            if !keeps_state {
                subs.clear();
            }
            let entry = Entry {
                v: entry::VERSION,
                client_id: req.client_id.to_string(),
                node: self.node.to_string(),
                run: self.run,
                epoch,
                owner: Owner::of(req.owner),
                expiry,
                subs,
            };
            let value = entry.encode();
            // A compare-and-set conflict ends the retries at once (another
            // round re-reads); anything else is retried within the timeout.
            let write = || {
                let value = value.clone();
                let key = &key;
                async move {
                    match revision {
                        None => kv.create(key, value).await.map(|_| ()).map_err(|e| {
                            if e.kind() == CreateErrorKind::AlreadyExists {
                                Transient::Final(Conflict)
                            } else {
                                Transient::Retry(e.to_string())
                            }
                        }),
                        Some(rev) => kv.update(key, value, rev).await.map(|_| ()).map_err(|e| {
                            if e.kind() == UpdateErrorKind::WrongLastRevision {
                                Transient::Final(Conflict)
                            } else {
                                Transient::Retry(e.to_string())
                            }
                        }),
                    }
                }
            };
            match retry_classified(self.timeout, write).await {
                Ok(()) => {
                    self.claimed(req.client_id);
                    self.counters.add(Event::Claimed, 1);
                    return Ok(());
                }
                Err(Failed::Final(Conflict)) => self.counters.add(Event::Conflict, 1),
                Err(Failed::Gave(e)) => {
                    return Err(self.fail(&broker, &req, installed.is_some(), &format!("write: {e}")))
                }
            }
        }
        Err(self.fail(&broker, &req, installed.is_some(), &"compare-and-set retries ran out"))
    }

    /// A refusal; a session installed here during this locate goes again
    /// (the registry does not name this node).
    fn fail(
        &self,
        broker: &Arc<Broker>,
        req: &LocateRequest<'_>,
        installed: bool,
        why: &dyn std::fmt::Display,
    ) -> LocateError {
        if installed {
            broker.hand_over(req.client_id, req.owner, true);
        }
        self.unavailable(why)
    }

    /// Installs a handed-over session; with a durable store, waits (up to
    /// the request timeout) for its rows.
    async fn install(&self, broker: &Arc<Broker>, s: RecoveredSession) {
        let client_id = s.client_id.clone();
        if let Some(commit) = broker.install_handed_over(s) {
            match tokio::time::timeout(self.timeout, commit).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    warn!(client_id = %Peer(&client_id), error = %e, "cluster: handed-over session not written to the store")
                }
                Err(_) => {
                    warn!(client_id = %Peer(&client_id), "cluster: handed-over session not durable within the request timeout")
                }
            }
        }
    }

    /// The session as the registry knows it (subscriptions, expiry): the
    /// owner node is gone, and with it the messages it held.
    fn restore(&self, broker: &Arc<Broker>, req: &LocateRequest<'_>, cur: &Entry) {
        self.counters.add(Event::RestoredFromEntry, 1);
        let s = RecoveredSession {
            client_id: req.client_id.clone(),
            owner: req.owner.clone(),
            expiry_secs: cur.expiry,
            detached_at_ms: None,
            subscriptions: cur.subscriptions(),
            queue: Vec::new(),
            inflight: Vec::new(),
            awaiting_rel: Vec::new(),
            will: None,
        };
        // No messages: nothing to wait for beyond the store's own order.
        drop(broker.install_handed_over(s));
    }

    /// Asks `node` for the session of the CONNECT `req`.
    async fn ask(&self, node: &str, req: &LocateRequest<'_>) -> Asked {
        let body = Request {
            v: handover::VERSION,
            client_id: req.client_id.to_string(),
            owner: Owner::of(req.owner),
            clean_start: req.clean_start || req.expiry.is_some_and(|d| d.is_zero()),
            from: self.node.to_string(),
        }
        .encode();
        let subject = takeover_subject(&self.prefix, node);
        match tokio::time::timeout(self.timeout, self.client.request(subject, body)).await {
            Err(_) => Asked::NoAnswer,
            Ok(Err(e)) => match e.kind() {
                async_nats::RequestErrorKind::NoResponders | async_nats::RequestErrorKind::TimedOut => Asked::NoAnswer,
                _ => Asked::Failed,
            },
            Ok(Ok(m)) => match Reply::decode(&m.payload) {
                Ok(r) => Asked::Reply(r),
                Err(e) => {
                    warn!(node = %Peer(node), error = %e, "cluster: unreadable takeover reply");
                    Asked::Failed
                }
            },
        }
    }

    fn claimed(&self, client_id: &Arc<str>) {
        let now = Instant::now();
        let mut c = self.claims.lock();
        if c.len() >= MAX_CLAIMS {
            c.retain(|_, at| now.duration_since(*at) < CLAIM_RECENT);
            if c.len() >= MAX_CLAIMS {
                c.clear();
            }
        }
        c.insert(Arc::clone(client_id), now);
    }

    fn recently_claimed(&self, client_id: &str) -> bool {
        self.claims.lock().get(client_id).is_some_and(|at| at.elapsed() < CLAIM_RECENT)
    }

    /// Answers one takeover request; `None` for one that is not what a node
    /// sends (not answered).
    async fn serve(&self, payload: &[u8]) -> Option<Reply> {
        let req = match Request::decode(payload) {
            Ok(r) => r,
            Err(e) => {
                self.counters.add(Event::MalformedRequest, 1);
                if let Some(suppressed) = self.log.allow() {
                    warn!(error = %e, suppressed, "cluster: takeover request refused");
                }
                return None;
            }
        };
        let broker = self.broker.upgrade()?;
        let owner: SessionOwner = req.owner.session_owner();
        let deadline = Instant::now() + CLAIM_WAIT;
        loop {
            match broker.hand_over(&req.client_id, &owner, req.clean_start) {
                HandOver::NotHere if Instant::now() < deadline && self.recently_claimed(&req.client_id) => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                HandOver::NotHere => return Some(Reply::outcome(Outcome::NotHere)),
                HandOver::OwnerMismatch => return Some(Reply::outcome(Outcome::OwnerMismatch)),
                HandOver::Discarded => {
                    self.claims.lock().remove(req.client_id.as_str());
                    return Some(Reply::outcome(Outcome::Discarded));
                }
                HandOver::Moved(s) => {
                    self.claims.lock().remove(req.client_id.as_str());
                    self.counters.add(Event::MovedOut, 1);
                    info!(client_id = %Peer(&req.client_id), to = %Peer(&req.from), "cluster: session handed over to another node");
                    let reply = Reply::moved(&s, self.max_payload, Instant::now());
                    if let Some(st) = &reply.session {
                        self.counters.add(Event::HandoverMessagesLost, st.dropped);
                    }
                    return Some(reply);
                }
            }
        }
    }

    /// [`portcullis_core::remote::RemoteRouting::session_changed`]: queue
    /// an entry update for `client_id` (coalesced; never waits).
    pub fn changed(&self, client_id: &Arc<str>) {
        {
            let mut q = self.queued.lock();
            if q.contains(client_id) {
                return;
            }
            if q.len() >= UPDATE_QUEUE {
                drop(q);
                return self.counters.add(Event::UpdateDropped, 1);
            }
            q.insert(Arc::clone(client_id));
        }
        if self.updates.try_send(Arc::clone(client_id)).is_err() {
            self.queued.lock().remove(client_id);
            self.counters.add(Event::UpdateDropped, 1);
        }
    }

    /// Writes the entry of `client_id` as the session here stands (its
    /// subscriptions), or deletes it when the session is gone — only while
    /// the entry names this node, by compare-and-set.
    async fn refresh(&self, client_id: &Arc<str>) -> bool {
        let Ok(key) = key::encode(client_id) else { return true };
        let (Some(kv), Some(broker)) = (self.kv.get(), self.broker.upgrade()) else { return false };
        for _ in 0..CAS_ATTEMPTS {
            let e = match tokio::time::timeout(self.timeout, kv.entry(key.clone())).await {
                Ok(Ok(Some(e))) if e.operation == Operation::Put => e,
                Ok(Ok(_)) => return true,
                _ => return false,
            };
            let Ok(cur) = Entry::decode(&e.value) else { return true };
            if cur.node != *self.node {
                return true;
            }
            let write = match broker.find_session(client_id) {
                None => {
                    let r = kv.delete_expect_revision(&key, Some(e.revision));
                    match tokio::time::timeout(self.timeout, r).await {
                        Ok(Ok(())) => return true,
                        Ok(Err(err)) => err.kind() == UpdateErrorKind::WrongLastRevision,
                        Err(_) => false,
                    }
                }
                Some(s) => {
                    let mut subs: Vec<Sub> = s
                        .subscription_filters()
                        .iter()
                        .filter_map(|f| s.subscription(f).map(|r| Sub::of(f, r.options, r.subscription_id)))
                        .collect();
                    if cur.expiry == Some(0) {
                        subs.clear();
                    }
                    if subs == cur.subs {
                        return true;
                    }
                    let value = Entry { subs, ..cur }.encode();
                    match tokio::time::timeout(self.timeout, kv.update(&key, value, e.revision)).await {
                        Ok(Ok(_)) => return true,
                        Ok(Err(err)) => err.kind() == UpdateErrorKind::WrongLastRevision,
                        Err(_) => false,
                    }
                }
            };
            // A conflict: read again; anything else failed.
            if !write {
                return false;
            }
        }
        false
    }
}

/// Answers takeover requests, one at a time, until the registry goes.
async fn serve_task(weak: Weak<Registry>, mut sub: async_nats::Subscriber) {
    while let Some(m) = sub.next().await {
        let Some(reg) = weak.upgrade() else { return };
        let Some(reply_to) = m.reply.clone() else { continue };
        if let Some(reply) = reg.serve(&m.payload).await {
            if let Err(e) = reg.client.publish(reply_to, reply.encode()).await {
                warn!(error = %e, "cluster: takeover reply not sent");
            }
        }
    }
}

/// Writes queued entry updates.
async fn update_task(weak: Weak<Registry>, mut rx: mpsc::Receiver<Arc<str>>) {
    while let Some(client_id) = rx.recv().await {
        let Some(reg) = weak.upgrade() else { return };
        reg.queued.lock().remove(&client_id);
        if !reg.refresh(&client_id).await {
            reg.counters.add(Event::UpdateFailed, 1);
        }
    }
}

/// Opens the bucket, once a second, until it works.
async fn open_task(weak: Weak<Registry>) {
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let Some(reg) = weak.upgrade() else { return };
        if reg.is_open() || reg.open().await {
            return;
        }
    }
}

impl Registry {
    /// Once this node is back in the KV's majority after being cut off
    /// (`rejoined` is told when a heartbeat succeeds after a failed one),
    /// checks every session held here against the registry: one that now
    /// names another node was taken over while the takeover request could
    /// not reach this node, and its connection here is closed (0x8E) and
    /// the session dropped, so that one client id does not stay connected
    /// on two nodes after a partition heals (found by
    /// tests/cluster_partition_registry.rs). Reads are paced (a pause every
    /// [`SWEEP_BATCH`] sessions); a read that fails ends this sweep, and
    /// the next rejoin sweeps again.
    pub async fn sweep_on_rejoin(self: Arc<Self>, rejoined: Arc<tokio::sync::Notify>) {
        loop {
            rejoined.notified().await;
            let (Some(kv), Some(broker)) = (self.kv.get(), self.broker.upgrade()) else { continue };
            let sessions = broker.sessions_snapshot();
            let (mut checked, mut dropped) = (0usize, 0u64);
            for s in sessions {
                let Ok(key) = key::encode(&s.client_id) else { continue };
                let entry = match retry_transient(self.timeout, || leader_entry(kv, &key)).await {
                    Ok(e) => e,
                    Err(e) => {
                        warn!(error = %e, checked, "cluster: sweep after rejoining the registry stopped");
                        break;
                    }
                };
                checked += 1;
                if checked % SWEEP_BATCH == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let elsewhere = entry
                    .filter(|e| e.put)
                    .and_then(|e| Entry::decode(&e.value).ok())
                    .is_some_and(|e| e.client_id == *s.client_id && e.node != *self.node);
                if elsewhere {
                    // Recently claimed here: a CONNECT of this node is
                    // between its write and its open; leave it.
                    if self.recently_claimed(&s.client_id) {
                        continue;
                    }
                    let _ = broker.hand_over(&s.client_id, &s.owner, true);
                    dropped += 1;
                }
            }
            self.counters.add(Event::StaleDropped, dropped);
            info!(checked, dropped, "cluster: sessions checked against the registry after rejoining it");
        }
    }
}

/// Sessions checked between two short pauses of a rejoin sweep.
const SWEEP_BATCH: usize = 256;

/// A registry entry as the stream's leader has it.
struct LeaderEntry {
    revision: u64,
    /// A value (not a delete or purge marker).
    put: bool,
    value: bytes::Bytes,
}

/// Reads `key` from the bucket's stream leader (JetStream's message-get
/// API), not with a direct get, which any replica may answer: during a
/// partition a cut-off replica answered direct gets with an entry the
/// majority had since replaced, so a CONNECT on the majority side
/// compare-and-set against a stale revision and was refused until the
/// heal (found by tests/cluster_partition_registry.rs). On the minority
/// side there is no leader: the read fails and the CONNECT is refused.
async fn leader_entry(kv: &kv::Store, key: &str) -> Result<Option<LeaderEntry>, String> {
    use async_nats::jetstream::stream::LastRawMessageErrorKind;
    let subject = format!("{}{}", kv.prefix, key);
    match kv.stream.get_last_raw_message_by_subject(&subject).await {
        Ok(m) => {
            let put = !matches!(m.headers.get("KV-Operation").map(|v| v.as_str()), Some("DEL") | Some("PURGE"));
            Ok(Some(LeaderEntry { revision: m.sequence, put, value: m.payload }))
        }
        Err(e) if e.kind() == LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The first retry of a failed registry operation waits this long, then
/// twice as long each time, up to [`RETRY_PAUSE_MAX`].
const RETRY_PAUSE: Duration = Duration::from_millis(20);
const RETRY_PAUSE_MAX: Duration = Duration::from_millis(250);

/// A compare-and-set lost to another writer.
#[derive(Debug)]
struct Conflict;

/// An operation's error: retried, or final (not retried).
enum Transient<F> {
    Retry(String),
    Final(F),
}

/// Why [`retry_classified`] gave up.
enum Failed<F> {
    Final(F),
    /// The timeout ran out; the last error.
    Gave(String),
}

/// Runs `op` until it succeeds or `timeout` has passed, pausing between
/// tries: an error right after a bucket was created or while JetStream
/// elects a new stream leader is over in moments, and a CONNECT should not
/// be refused for it. An unreachable registry (the minority side of a
/// partition) still refuses once the timeout is spent.
async fn retry_classified<T, F, Fut>(timeout: Duration, mut op: impl FnMut() -> Fut) -> Result<T, Failed<F>>
where
    Fut: std::future::Future<Output = Result<T, Transient<F>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = RETRY_PAUSE;
    loop {
        let err = match tokio::time::timeout_at(deadline, op()).await {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(Transient::Final(f))) => return Err(Failed::Final(f)),
            Ok(Err(Transient::Retry(e))) => e,
            Err(_) => return Err(Failed::Gave("timed out".to_string())),
        };
        if tokio::time::Instant::now() + pause >= deadline {
            return Err(Failed::Gave(err));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_PAUSE_MAX);
    }
}

/// [`retry_classified`] for an operation whose every error is retried.
async fn retry_transient<T, E: std::fmt::Display, Fut>(
    timeout: Duration,
    mut op: impl FnMut() -> Fut,
) -> Result<T, String>
where
    Fut: std::future::Future<Output = Result<T, E>>,
{
    let op = || {
        let fut = op();
        async move { fut.await.map_err(|e| Transient::<std::convert::Infallible>::Retry(e.to_string())) }
    };
    match retry_classified(timeout, op).await {
        Ok(v) => Ok(v),
        Err(Failed::Gave(e)) => Err(e),
        Err(Failed::Final(never)) => match never {},
    }
}

#[cfg(test)]
mod retry_tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_passing_error_is_retried_until_it_clears() {
        let tries = AtomicUsize::new(0);
        let got = retry_transient(Duration::from_secs(5), || {
            let n = tries.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Err("stream leader not elected")
                } else {
                    Ok(n)
                }
            }
        })
        .await;
        assert_eq!(got, Ok(2));
    }

    #[tokio::test]
    async fn a_lasting_error_is_given_up_at_the_timeout_with_the_last_error() {
        let tries = AtomicUsize::new(0);
        let got: Result<(), String> = retry_transient(Duration::from_millis(150), || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err("no responders") }
        })
        .await;
        assert_eq!(got, Err("no responders".to_string()));
        assert!(tries.load(Ordering::SeqCst) >= 2, "retried before giving up");
    }

    #[tokio::test]
    async fn a_conflict_is_not_retried() {
        let tries = AtomicUsize::new(0);
        let got: Result<(), Failed<Conflict>> = retry_classified(Duration::from_secs(5), || {
            tries.fetch_add(1, Ordering::SeqCst);
            async { Err(Transient::Final(Conflict)) }
        })
        .await;
        assert!(matches!(got, Err(Failed::Final(Conflict))));
        assert_eq!(tries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_hanging_operation_ends_at_the_timeout() {
        let got: Result<(), String> =
            retry_transient(Duration::from_millis(100), std::future::pending::<Result<(), &str>>).await;
        assert_eq!(got, Err("timed out".to_string()));
    }
}
