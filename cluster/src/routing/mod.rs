//! The cluster at run time: this node's [`RemoteRouting`] on NATS.
//!
//! ```text
//!  publish here ──► forward ──► outbound queue (bounded: count and bytes) ──► publisher task ──► NATS (no echo)
//!  filter_added/removed ──► wanted map (latest state per key) ──► subscription task ──► NATS SUB / UNSUB
//!  NATS MSG ──► reader task per subscription ──► duplicate window ──► Broker::deliver_remote(_shared)
//! ```
//!
//! * **Two connections.** The publishing connection is `no_echo` and holds
//!   the plain subscriptions: a node never gets its own messages back
//!   (local routing delivered them). Shared groups are queue subscriptions
//!   on a second connection that echoes, because core routes no local
//!   publish to local groups when a cluster is installed (the queue group
//!   picks the node, this one included), and NATS leaves a no-echo
//!   connection out of the pick for its own messages.
//! * **Subscriptions.** Core reference-counts local subscriptions per key
//!   (group, filter) and calls `filter_added` / `filter_removed` under a
//!   router lock: they only record the wanted state in a map (one entry per
//!   key, the latest wins, so it never holds more than the node's distinct
//!   filters) and wake the subscription task, which subscribes or drops the
//!   key's NATS subscriptions (one subject, two for `x/#`).
//! * **One copy per node.** Overlapping filters (`a/+` and `a/b`) make
//!   NATS send one message per matching subscription; a window of recently
//!   seen (origin, run, sequence) ([`dedup`]) lets the first through.
//!   Queue-group copies are not put through it: each group's copy is its
//!   own.
//! * **"No matching subscribers".** [`RemoteRouting::has_interest`] answers
//!   true while connected to NATS: this node does not know the other
//!   nodes' filters (NATS' interest graph does, and does not tell), so in
//!   cluster mode v5 publishers never hear 0x10 and nothing is counted
//!   dropped as `no_subscribers` while the cluster is up.
//! * **Bounds.** The outbound queue holds at most [`OUTBOUND_MESSAGES`]
//!   messages and [`OUTBOUND_BYTES`] bytes, async-nats' own queue
//!   [`CLIENT_CAPACITY`] publishes; past either, or while NATS is
//!   unreachable, a message stays local and is counted dropped (logged at
//!   most once a second). A stalled NATS server costs the node at most
//!   64 MiB + 128 × `max_payload` (`cluster_pubsub.rs` measures it).
//!   **Back-pressure**: above half of either bound ([`HIGH_WATER_MESSAGES`],
//!   [`HIGH_WATER_BYTES`]) [`RemoteRouting::congested`] says so, and the
//!   publishing MQTT and STOMP connections stop reading until the queue is
//!   below a quarter ([`RemoteRouting::drained`]), at most
//!   `session.stall_timeout`; queued for longer than that (NATS stuck), it no
//!   longer says congested and the queue drops what does not fit. Inbound, each NATS subscription buffers at most
//!   [`SUBSCRIPTION_CAPACITY`] messages (the client drops past that: a slow
//!   consumer), every message at most `max_payload` bytes, decoded under the
//!   broker's user-property limits; the duplicate window is bounded
//!   ([`dedup`]); the wanted map holds one entry per distinct local filter.
//!   Inbound `$SYS` topics are refused (no node forwards them), as is
//!   anything that is not what a node sends (counted `malformed`).
//! * **Node slot**: from the node list ([`crate::members`]), claimed
//!   before the cluster is installed into the broker.
//! * **Sessions** are located by [`crate::registry`] (`locate`,
//!   `session_changed` hand over to it).
//! * **Retained messages** cross twice: live, as any message, and into the
//!   KV bucket that every node mirrors ([`crate::retained`]): `forward`
//!   queues the write.
//! * **Graceful stop**: [`Cluster::flush`] waits (bounded) until the
//!   outbound queue and the retained writes have reached NATS.

pub mod dedup;
pub mod durable;
pub mod metrics;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Instant;

use async_nats::connection::State;
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use portcullis_core::broker::Broker;
use portcullis_core::codec::{DecodeLimits, QoS};
use portcullis_core::durable::Commit;
use portcullis_core::logsafe::LogLimiter;
use portcullis_core::message::Message;
use portcullis_core::remote::{Locate, LocateRequest, NodeSlot, RemoteRouting};
use portcullis_core::topic::{SubscriptionFilter, TopicName};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{ClusterConfig, CrossNode};
use crate::connect::{ConnectError, ConnectPlan};
use crate::limits::Limits;
use crate::subject::{self, Prefix};
use dedup::{Dedup, Seen};
use metrics::{Counters, Loss};

/// How long a graceful stop waits for the outbound queue to reach NATS
/// ([`Cluster::flush`]).
pub const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Messages waiting to be published to NATS, at most.
pub const OUTBOUND_MESSAGES: usize = 8192;
/// Bytes (topic, payload, properties) waiting to be published, at most.
pub const OUTBOUND_BYTES: usize = 64 * 1024 * 1024;
/// Above this many queued messages (or [`HIGH_WATER_BYTES`]) the outbound
/// queue is congested: publishing clients wait (back-pressure, see
/// `portcullis_core::remote`) until it is below [`LOW_WATER_MESSAGES`] and
/// [`LOW_WATER_BYTES`], at most `session.stall_timeout`.
pub const HIGH_WATER_MESSAGES: usize = OUTBOUND_MESSAGES / 2;
/// See [`HIGH_WATER_MESSAGES`].
pub const HIGH_WATER_BYTES: usize = OUTBOUND_BYTES / 2;
/// See [`HIGH_WATER_MESSAGES`].
pub const LOW_WATER_MESSAGES: usize = OUTBOUND_MESSAGES / 4;
/// See [`HIGH_WATER_MESSAGES`].
pub const LOW_WATER_BYTES: usize = OUTBOUND_BYTES / 4;
/// Commands (publishes) async-nats' own queue holds before a publish waits;
/// with [`OUTBOUND_BYTES`] this bounds what a stalled NATS server makes
/// the node hold: 64 MiB + 128 × `max_payload` (+ async-nats' 64 KiB write
/// buffer).
pub const CLIENT_CAPACITY: usize = 128;
/// Messages one NATS subscription buffers before the client drops (slow
/// consumer). Raised from 1,024: back-pressure stops at NATS (core NATS has
/// no flow control to the receiving node), so this buffer absorbs what a
/// sending node publishes faster than this node's reader delivers; at 1,024
/// (and 8,192, 16,384) a 100,000-message QoS 1 burst lost 1-23 % here in
/// debug builds, at 65,536 none (`tests/cluster_backpressure.rs`). The
/// memory it implies, per subscription that falls behind: 65,536 messages
/// of at most `max_payload` bytes each — about 25 MiB for 256-byte
/// messages, 64 GiB in the theoretical worst case of 1 MiB messages (the
/// buffer fills only while this node's readers are that far behind; a
/// reader never waits: delivery is an enqueue).
pub const SUBSCRIPTION_CAPACITY: usize = 65536;

/// This node in the cluster: installed into the broker with
/// [`Broker::set_remote`] by [`Cluster::start`].
pub struct Cluster {
    inner: Arc<Inner>,
    members: Arc<crate::members::Members>,
    /// The session registry ([`crate::registry`]).
    registry: Arc<crate::registry::Registry>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("node", &self.inner.node).field("run", &self.inner.run).finish()
    }
}

struct Inner {
    node: Arc<str>,
    /// New at every start: the origin's sequences restart with it.
    run: u64,
    slot: NodeSlot,
    prefix: Prefix,
    limits: Limits,
    decode: DecodeLimits,
    seq: AtomicU64,
    broker: Weak<Broker>,
    publisher: async_nats::Client,
    queues: async_nats::Client,
    out: mpsc::Sender<(Arc<Message>, Option<durable::Done>)>,
    /// The durable mode's publishing side (`None`: at most once).
    durable: Option<durable::Publisher>,
    out_bytes: AtomicUsize,
    /// Wanted state per key, not yet applied by the subscription task.
    wanted: Mutex<HashMap<SubscriptionFilter, bool>>,
    wake: Arc<Notify>,
    dedup: Mutex<Dedup>,
    counters: Arc<Counters>,
    drop_log: LogLimiter,
    inbound_log: LogLimiter,
    /// Retained messages in the KV (`None` when `[retained] enabled = false`).
    retained: Option<Arc<crate::retained::Retained>>,
    /// Messages queued or being published (for [`Cluster::flush`]).
    pending: AtomicUsize,
    idle: Notify,
    /// The outbound queue went above its high-water mark and has not been
    /// below its low-water mark since (back-pressure).
    above: AtomicBool,
    /// When `above` was set, in nanoseconds since `epoch`.
    above_since: AtomicU64,
    epoch: Instant,
    /// `session.stall_timeout`: congested for longer counts as stuck.
    stall: std::time::Duration,
    /// Woken when the queue falls below its low-water mark.
    low: Notify,
}

impl Cluster {
    /// Connects to NATS (both connections), starts the tasks, installs the
    /// cluster into `broker` (which announces the filters it already has)
    /// and registers its metrics. Call it before the listeners accept.
    pub async fn start(config: &ClusterConfig, broker: &Arc<Broker>) -> Result<Arc<Cluster>, ConnectError> {
        let node = broker.settings.node_name.clone();
        let plan = ConnectPlan::new(config, &node)?;
        let counters: Arc<Counters> = Arc::default();
        let publisher = plan
            .options()?
            .event_callback(count_slow_consumers(&counters))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .client_capacity(CLIENT_CAPACITY)
            .connect(plan.servers().to_vec())
            .await?;
        let queues = plan
            .options_echo(true)?
            .event_callback(count_slow_consumers(&counters))
            .subscription_capacity(SUBSCRIPTION_CAPACITY)
            .connect(plan.servers().to_vec())
            .await?;
        // The node list hands out the slot (before set_remote reads it).
        let run = run_id();
        let members = crate::members::Members::join(publisher.clone(), config, broker, run)
            .await
            .map_err(|e| ConnectError::Join(e.to_string()))?;
        let (out, rx) = mpsc::channel(OUTBOUND_MESSAGES);
        let retained = if broker.retained.enabled() {
            Some(crate::retained::Retained::start(config, queues.clone(), broker).await)
        } else {
            None
        };
        let l = &broker.settings.limits;
        let decode = DecodeLimits {
            max_packet_size: u32::try_from(config.max_payload).unwrap_or(u32::MAX),
            max_user_properties: l.max_user_properties,
            max_user_property_bytes: l.max_user_property_bytes,
        };
        let prefix = config.prefix()?;
        let durable = (config.cross_node == CrossNode::Durable).then(|| {
            durable::Publisher::start(publisher.clone(), &prefix, config.request_timeout, Arc::clone(&counters))
        });
        let inner = Arc::new(Inner {
            durable,
            slot: members.slot(),
            node: node.into(),
            run,
            prefix,
            limits: config.limits(),
            decode,
            seq: AtomicU64::new(0),
            broker: Arc::downgrade(broker),
            publisher,
            queues,
            out,
            out_bytes: AtomicUsize::new(0),
            wanted: Mutex::new(HashMap::new()),
            wake: Arc::new(Notify::new()),
            dedup: Mutex::new(Dedup::default()),
            counters,
            drop_log: LogLimiter::new(1),
            inbound_log: LogLimiter::new(1),
            retained,
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            above: AtomicBool::new(false),
            above_since: AtomicU64::new(0),
            epoch: Instant::now(),
            stall: broker.settings.session.stall_timeout,
            low: Notify::new(),
        });
        tokio::spawn(publish_task(Arc::downgrade(&inner), rx));
        tokio::spawn(subscription_task(Arc::downgrade(&inner), Arc::clone(&inner.wake)));
        if inner.durable.is_some() {
            tokio::spawn(durable::consume(inner.queues.clone(), config.clone(), Arc::downgrade(&inner)));
        }
        broker.add_metric_source(Arc::clone(&inner.counters) as Arc<dyn portcullis_core::metrics::MetricSource>);
        let registry = crate::registry::Registry::start(
            inner.publisher.clone(),
            broker,
            Arc::clone(&inner.node),
            inner.run,
            inner.prefix.clone(),
            crate::registry::RegistrySettings {
                replicas: config.kv_replicas,
                timeout: config.request_timeout,
                max_payload: inner.limits.max_payload,
                decode,
            },
        )
        .await;
        tokio::spawn(Arc::clone(&registry).sweep_on_rejoin(members.rejoined()));
        let cluster = Arc::new(Cluster { inner, members, registry });
        if broker.set_remote(Arc::clone(&cluster) as Arc<dyn RemoteRouting>).is_err() {
            warn!("a remote routing seam was installed already: the cluster is not used");
        }
        info!(node = %cluster.inner.node, slot = cluster.inner.slot.0, servers = ?config.nats, "cluster: connected to NATS");
        Ok(cluster)
    }

    /// At a graceful stop: waits until the messages (and retained writes)
    /// queued for NATS are sent and NATS has them (a flush round trip), at
    /// most `timeout` ([`FLUSH_TIMEOUT`] by default). False if some were
    /// left.
    pub async fn flush(&self, timeout: std::time::Duration) -> bool {
        let inner = &self.inner;
        let deadline = tokio::time::Instant::now() + timeout;
        let queued = inner.pending.load(Ordering::Acquire) + inner.retained.as_ref().map_or(0, |r| r.pending());
        if queued > 0 {
            info!(queued, ?timeout, "cluster: flushing outbound messages to NATS");
        }
        let sent = loop {
            let idle = inner.idle.notified();
            if inner.pending.load(Ordering::Acquire) == 0 {
                break true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                break inner.pending.load(Ordering::Acquire) == 0;
            }
        };
        let retained = match &inner.retained {
            Some(r) => r.flush(deadline).await,
            None => true,
        };
        let flushed = matches!(tokio::time::timeout_at(deadline, inner.publisher.flush()).await, Ok(Ok(())));
        let left = inner.pending.load(Ordering::Acquire) + inner.retained.as_ref().map_or(0, |r| r.pending());
        if sent && retained && flushed {
            info!("cluster: outbound messages flushed to NATS");
        } else {
            warn!(left, ?timeout, "cluster: outbound messages not all flushed to NATS at shutdown");
        }
        sent && retained && flushed
    }

    /// The cluster's counters (for tests and introspection).
    pub fn counters(&self) -> &Counters {
        &self.inner.counters
    }

    /// The node list: this node's slot and entry, every node's status.
    pub fn members(&self) -> &Arc<crate::members::Members> {
        &self.members
    }

    /// The session registry.
    pub fn registry(&self) -> &Arc<crate::registry::Registry> {
        &self.registry
    }
}

/// The NATS client's event callback: a message it dropped because a
/// subscription's buffer was full is counted as lost (`slow_consumer`), so
/// that a backlog burst after a long stall shows in the metrics (found by
/// `tests/cluster_failures.rs`: every counter stayed at 0 while messages
/// were lost). Other events are the client's own business (it logs them).
fn count_slow_consumers(
    counters: &Arc<Counters>,
) -> impl Fn(async_nats::Event) -> std::future::Ready<()> + Send + Sync + 'static {
    let counters = Arc::clone(counters);
    move |event| {
        if let async_nats::Event::SlowConsumer(_) = event {
            counters.dropped(Loss::SlowConsumer);
        }
        std::future::ready(())
    }
}

/// Whether `subject` is under `prefix` (the prefix's tokens, then more).
fn is_under(subject: &str, prefix: &Prefix) -> bool {
    subject.strip_prefix(prefix.as_str()).is_some_and(|rest| rest.starts_with('.'))
}

/// A run id: the start time in nanoseconds mixed with the process id.
fn run_id() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 40)
}

impl Inner {
    /// One queued message is published (or lost).
    fn sent(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn lose(&self, why: Loss, topic: &TopicName) {
        self.counters.dropped(why);
        if let Some(suppressed) = self.drop_log.allow() {
            warn!(reason = why.as_str(), topic = %portcullis_core::logsafe::Peer(topic.as_str()), suppressed, "cluster: message not sent to the other nodes");
        }
    }

    /// After a message was queued: the queue crossed its high-water mark.
    fn check_high(&self) {
        if !self.above.load(Ordering::Relaxed)
            && (self.pending.load(Ordering::Relaxed) > HIGH_WATER_MESSAGES
                || self.out_bytes.load(Ordering::Relaxed) > HIGH_WATER_BYTES)
        {
            self.above_since.store(self.epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
            self.above.store(true, Ordering::Release);
        }
    }

    /// After a message left the queue: below the low-water mark, the
    /// waiting publishers read on.
    fn check_low(&self) {
        if self.above.load(Ordering::Acquire)
            && self.pending.load(Ordering::Relaxed) < LOW_WATER_MESSAGES
            && self.out_bytes.load(Ordering::Relaxed) < LOW_WATER_BYTES
        {
            self.above.store(false, Ordering::Release);
            self.low.notify_waiters();
        }
    }

    /// Above the high-water mark, connected, and not stuck there for
    /// `session.stall_timeout` (a stuck NATS then costs each publisher one
    /// bounded wait, not one per message: the queue drops what does not
    /// fit, as without back-pressure).
    fn congested(&self) -> bool {
        if !self.above.load(Ordering::Acquire) {
            return false;
        }
        let since = std::time::Duration::from_nanos(self.above_since.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(since) < self.stall && self.connected()
    }

    fn connected(&self) -> bool {
        self.publisher.connection_state() == State::Connected
    }

    fn inbound(&self, m: &async_nats::Message, shared: Option<&SubscriptionFilter>) {
        let Some(broker) = self.broker.upgrade() else { return };
        let origin = match wire::origin(m.headers.as_ref()) {
            Ok(o) => o,
            Err(e) => return self.malformed(&e),
        };
        // A shared group's queue subscriptions also take the durable
        // mode's subjects (`<prefix>.d…`).
        let prefix = match &self.durable {
            Some(d) if is_under(m.subject.as_str(), &d.prefix) => &d.prefix,
            _ => &self.prefix,
        };
        let Some(msg) = self.decode_inbound(prefix, m.subject.as_str(), &m.payload) else { return };
        match shared {
            None => {
                // The check and the delivery under one lock: the first copy
                // of each message is delivered in the order the copies were
                // checked, so one publisher's messages keep their order
                // even when two subscriptions' readers race.
                let mut dedup = self.dedup.lock();
                match dedup.check(&origin.node, origin.run, origin.seq) {
                    Seen::New => {}
                    Seen::Duplicate => {
                        self.counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    Seen::Stale => return self.counters.dropped(Loss::Stale),
                }
                broker.deliver_remote(&msg);
            }
            Some(f) => {
                if !broker.deliver_remote_shared(&msg, f) {
                    return self.counters.dropped(Loss::NoMember);
                }
            }
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
    }

    /// The message an inbound NATS message carries on `subject` (under
    /// `prefix`); `None`, counted and logged, when it is not what a node
    /// sends.
    fn decode_inbound(&self, prefix: &Prefix, subject: &str, payload: &Bytes) -> Option<Arc<Message>> {
        let topic = match subject::decode_subject(prefix, subject) {
            Ok(t) => t,
            Err(e) => {
                self.malformed(&e);
                return None;
            }
        };
        if topic.as_str().starts_with("$SYS/") {
            // No node forwards $SYS (it stays per node): whoever sent this
            // is not a node, and local $SYS readers must not believe it.
            self.malformed(&"a $SYS topic from NATS");
            return None;
        }
        match wire::message(payload, &topic, self.decode, Instant::now()) {
            Ok(msg) => Some(msg),
            Err(e) => {
                self.malformed(&e);
                None
            }
        }
    }

    fn malformed(&self, e: &dyn std::fmt::Display) {
        self.counters.dropped(Loss::Malformed);
        if let Some(suppressed) = self.inbound_log.allow() {
            warn!(error = %e, suppressed, "cluster: inbound message refused");
        }
    }
}

impl RemoteRouting for Cluster {
    fn node_slot(&self) -> NodeSlot {
        self.inner.slot
    }

    fn forward(&self, msg: &Arc<Message>, commits: Option<&mut Vec<Commit>>) {
        let inner = &self.inner;
        // Durable mode: a publisher that waits hears whether the stream
        // stored it (a sender dropped on any path below fails its commit).
        let done = match (&inner.durable, commits) {
            (Some(_), Some(commits)) if msg.qos != QoS::AtMostOnce => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                commits.push(durable::commit(rx));
                Some(tx)
            }
            _ => None,
        };
        if msg.retain {
            if let Some(r) = &inner.retained {
                r.queue(msg);
            }
        }
        let prefix = match &inner.durable {
            Some(d) if msg.qos != QoS::AtMostOnce => &d.prefix,
            _ => &inner.prefix,
        };
        if inner.limits.check_topic(prefix, &msg.topic).is_err() {
            return inner.lose(Loss::TopicTooLong, &msg.topic);
        }
        if !inner.connected() {
            return inner.lose(Loss::Disconnected, &msg.topic);
        }
        let weight = msg.weight();
        if inner.out_bytes.fetch_add(weight, Ordering::Relaxed) + weight > OUTBOUND_BYTES {
            inner.out_bytes.fetch_sub(weight, Ordering::Relaxed);
            return inner.lose(Loss::QueueFull, &msg.topic);
        }
        inner.pending.fetch_add(1, Ordering::AcqRel);
        if inner.out.try_send((Arc::clone(msg), done)).is_err() {
            inner.out_bytes.fetch_sub(weight, Ordering::Relaxed);
            inner.sent();
            inner.lose(Loss::QueueFull, &msg.topic);
        }
        inner.check_high();
    }

    fn congested(&self) -> bool {
        self.inner.congested()
    }

    fn drained(&self) -> portcullis_core::remote::RemoteFuture<'_, ()> {
        Box::pin(async move {
            loop {
                // Registered before the check: a drain in between wakes it.
                let low = self.inner.low.notified();
                if !self.inner.congested() {
                    return;
                }
                low.await;
            }
        })
    }

    fn has_interest(&self, _topic: &TopicName) -> bool {
        self.inner.connected()
    }

    fn filter_added(&self, filter: &SubscriptionFilter) {
        self.inner.wanted.lock().insert(filter.clone(), true);
        self.inner.wake.notify_one();
    }

    fn filter_removed(&self, filter: &SubscriptionFilter) {
        self.inner.wanted.lock().insert(filter.clone(), false);
        self.inner.wake.notify_one();
    }

    fn locate<'a>(&'a self, req: LocateRequest<'a>) -> Locate<'a> {
        Locate::Pending(Box::pin(self.registry.locate(req)))
    }

    fn session_changed(&self, client_id: &Arc<str>, _ended: bool) {
        self.registry.changed(client_id);
    }
}

/// Publishes what `forward` queued, in order. Ends when the cluster goes.
async fn publish_task(inner: Weak<Inner>, mut rx: mpsc::Receiver<(Arc<Message>, Option<durable::Done>)>) {
    while let Some((msg, done)) = rx.recv().await {
        let Some(inner) = inner.upgrade() else { return };
        publish_one(&inner, &msg, done).await;
        inner.sent();
        inner.check_low();
    }
}

/// Publishes one queued message: on core NATS, or in durable mode (QoS 1
/// and 2) to the stream, `done` hearing whether it stored it.
async fn publish_one(inner: &Inner, msg: &Message, done: Option<durable::Done>) {
    inner.out_bytes.fetch_sub(msg.weight(), Ordering::Relaxed);
    let seq = inner.seq.fetch_add(1, Ordering::Relaxed) + 1;
    let headers = wire::headers(&inner.node, inner.run, seq);
    let body: Bytes = match wire::body(msg, Instant::now()) {
        Ok(b) => b,
        Err(_) => {
            inner.lose(Loss::TooLarge, &msg.topic);
            return;
        }
    };
    if inner.limits.check_payload(wire::headers_len(&headers), body.len()).is_err() {
        inner.lose(Loss::TooLarge, &msg.topic);
        return;
    }
    if let Some(d) = inner.durable.as_ref().filter(|_| msg.qos != QoS::AtMostOnce) {
        let subject = subject::topic_subject(&d.prefix, &msg.topic);
        match d.publish(subject, headers, body, done).await {
            Ok(()) => {
                inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => inner.lose(Loss::StreamFailed, &msg.topic),
        }
        return;
    }
    let subject = subject::topic_subject(&inner.prefix, &msg.topic);
    match inner.publisher.publish_with_headers(subject, headers, body).await {
        Ok(()) => {
            inner.counters.forwarded.fetch_add(1, Ordering::Relaxed);
        }
        Err(_) => inner.lose(Loss::PublishFailed, &msg.topic),
    }
}

/// Applies the wanted state of each key: subscribes a key that is wanted
/// and not subscribed, drops the subscriptions of one that is not wanted.
async fn subscription_task(weak: Weak<Inner>, wake: Arc<Notify>) {
    let mut live: HashMap<SubscriptionFilter, Vec<JoinHandle<()>>> = HashMap::new();
    loop {
        let Some(inner) = weak.upgrade() else { break };
        let notified = wake.notified();
        let changes: Vec<(SubscriptionFilter, bool)> = inner.wanted.lock().drain().collect();
        for (filter, wanted) in changes {
            match (wanted, live.contains_key(&filter)) {
                (true, false) => {
                    if let Some(readers) = subscribe(&inner, &weak, &filter).await {
                        live.insert(filter, readers);
                    }
                }
                (false, true) => {
                    for r in live.remove(&filter).into_iter().flatten() {
                        // Dropping the subscriber (with the task) unsubscribes.
                        r.abort();
                    }
                }
                _ => {}
            }
        }
        drop(inner);
        notified.await;
    }
    for r in live.into_values().flatten() {
        r.abort();
    }
}

/// The NATS subscriptions of one key, each read by its own task.
async fn subscribe(inner: &Inner, weak: &Weak<Inner>, filter: &SubscriptionFilter) -> Option<Vec<JoinHandle<()>>> {
    let mut sub = subject::subscription(&inner.prefix, filter);
    if let (Some(d), Some(_)) = (&inner.durable, &sub.queue) {
        // Shared groups take durable-mode messages from their queue group
        // too (at most once): the stream's consumers are per node.
        sub.subjects.extend(subject::filter_subjects(&d.prefix, &filter.filter));
    }
    if let Err(e) = inner.limits.check_subscription(&sub) {
        warn!(filter = %portcullis_core::logsafe::Peer(filter.filter.as_str()), error = %e, "cluster: filter not subscribed on NATS; other nodes' messages will not reach it");
        return None;
    }
    let mut readers = Vec::with_capacity(sub.subjects.len());
    for s in sub.subjects {
        let subscriber = match &sub.queue {
            None => inner.publisher.subscribe(s).await,
            Some(q) => inner.queues.queue_subscribe(s, q.clone()).await,
        };
        let mut subscriber = match subscriber {
            Ok(x) => x,
            Err(e) => {
                warn!(filter = %portcullis_core::logsafe::Peer(filter.filter.as_str()), error = %e, "cluster: NATS subscribe failed");
                for r in readers {
                    JoinHandle::abort(&r);
                }
                return None;
            }
        };
        let weak = weak.clone();
        let shared = filter.share_group.is_some().then(|| filter.clone());
        readers.push(tokio::spawn(async move {
            while let Some(m) = subscriber.next().await {
                let Some(inner) = weak.upgrade() else { return };
                inner.inbound(&m, shared.as_ref());
            }
        }));
    }
    Some(readers)
}
