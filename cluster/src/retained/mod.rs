//! Retained messages across the cluster: a JetStream key-value bucket,
//! mirrored on every node by a watch.
//!
//! ```text
//!  retained PUBLISH here ──► local retained store (as in single-node mode)
//!                       └──► forward ──► write queue (bounded: count and bytes) ──► writer task ──► KV put / delete
//!  KV watch (initial replay of the current values, then every change) ──► Broker::retain_remote (store only)
//! ```
//!
//! * **Bucket** `<prefix>_retained` (the subject prefix's `.` as `_`),
//!   `history = 1`, file storage, `[cluster] kv_replicas` replicas, values
//!   at most `max_payload`. Created by the first node that finds it
//!   missing.
//! * **Key**: the topic's subject without the prefix (`m.a.b` for `a/b`,
//!   [`crate::subject`]): its tokens are `[A-Za-z0-9_=-]`, a valid KV key,
//!   and decode back to exactly one topic.
//! * **Value**: the message as it crosses between nodes ([`wire::body`]):
//!   an MQTT 5 PUBLISH with the retain flag, payload and properties byte for
//!   byte, the message expiry as the seconds left when it was written. An
//!   empty payload (a retained message cleared) deletes the key (a delete
//!   marker).
//! * **Writes** are off the publish path: [`Retained::queue`] only
//!   enqueues (at most [`WRITE_QUEUE`] writes and [`WRITE_QUEUE_BYTES`]
//!   bytes; past that a write is dropped and counted), and one task writes
//!   them in order. The local retained store is written by core as in
//!   single-node mode, before any of this.
//! * **The mirror**: each node watches the whole bucket, which first
//!   replays the current value of every key (the node's start waits for
//!   that, up to [`REPLAY_TIMEOUT`]) and then sends each change. A value is
//!   stored locally with `Broker::retain_remote` (local index and local
//!   durable store, no delivery: live delivery crossed as a message); a
//!   delete clears the local copy. A node applies its own writes too (a
//!   copy equal to the local one is skipped): so that when two nodes write
//!   one topic at once, every node ends with the value the KV kept last —
//!   the KV's last write wins, on every node. The cost: a node that writes
//!   one topic twice in quick succession may show its first value again
//!   for a moment, until the watch brings the second.
//! * **Expiry**: the value holds the seconds left when it was written; the
//!   mirror subtracts the time since the KV stored it (the entry's
//!   timestamp, set by the NATS server: the nodes' and servers' clocks are
//!   assumed to agree). An expired value is not stored (and clears the
//!   local copy). The bucket itself keeps an expired value until its topic
//!   is written again.
//! * **Bounds**: a value over `max_payload` or that is not a retained MQTT
//!   5 PUBLISH on its key's topic is counted (`malformed`) and skipped; the
//!   local retained limits (`retained.max_count`, `max_bytes`,
//!   `max_payload_size`) apply to what the mirror stores as to a local
//!   publish. `$SYS` keys are refused (no node writes them).
//! * A watch that ends (NATS lost) is opened again after [`RETRY`]; it
//!   replays the bucket again, which converges the mirror on the values
//!   written meanwhile.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use bytes::Bytes;
use futures::StreamExt;
use portcullis_core::broker::Broker;
use portcullis_core::codec::{DecodeLimits, QoS};
use portcullis_core::logsafe::{LogLimiter, Peer};
use portcullis_core::message::Message;
use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};
use portcullis_core::topic::TopicName;
use tokio::sync::{mpsc, oneshot, Notify};
use tracing::{info, warn};

use crate::config::ClusterConfig;
use crate::routing::wire;
use crate::subject::{self, Prefix};

/// Writes waiting for the KV, at most.
pub const WRITE_QUEUE: usize = 4096;
/// Bytes (topic and body) of the writes waiting for the KV, at most.
pub const WRITE_QUEUE_BYTES: usize = 16 * 1024 * 1024;
/// How long a node's start waits for the watch's initial replay.
pub const REPLAY_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause before binding the bucket or opening the watch again.
pub const RETRY: Duration = Duration::from_secs(2);

/// The bucket's name: `<prefix>_retained`, the prefix's `.` as `_`.
pub fn bucket_name(prefix: &Prefix) -> String {
    format!("{}_retained", prefix.as_str().replace('.', "_"))
}

/// The KV key of `topic`: its subject without `<prefix>.`.
pub fn key(prefix: &Prefix, topic: &TopicName) -> String {
    let s = subject::topic_subject(prefix, topic);
    s[prefix.as_str().len() + 1..].to_string()
}

/// The topic of a KV key (`None` if it is not one [`key`] makes).
pub fn topic_of(prefix: &Prefix, key: &str) -> Option<TopicName> {
    subject::decode_subject(prefix, &format!("{}.{key}", prefix.as_str())).ok()
}

/// One write for the KV.
struct Write {
    key: String,
    /// `None`: delete the key.
    body: Option<Bytes>,
    weight: usize,
}

/// What the retained mirror did, and what it dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainedLoss {
    /// The write queue was full (count or bytes).
    QueueFull,
    /// The KV refused the write or did not answer.
    WriteFailed,
    /// The message does not fit a KV value (`max_payload`).
    TooLarge,
    /// A KV value that is not what a node writes.
    Malformed,
}

impl RetainedLoss {
    const ALL: [RetainedLoss; 4] =
        [RetainedLoss::QueueFull, RetainedLoss::WriteFailed, RetainedLoss::TooLarge, RetainedLoss::Malformed];

    pub fn as_str(self) -> &'static str {
        match self {
            RetainedLoss::QueueFull => "queue_full",
            RetainedLoss::WriteFailed => "write_failed",
            RetainedLoss::TooLarge => "too_large",
            RetainedLoss::Malformed => "malformed",
        }
    }
}

pub static CLUSTER_RETAINED_WRITTEN: Family = Family {
    name: "cluster_retained_written",
    help: "Retained messages (and clears) this node wrote to the cluster's key-value bucket.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("cluster/retained/written"),
    sys_total: None,
};

pub static CLUSTER_RETAINED_APPLIED: Family = Family {
    name: "cluster_retained_applied",
    help: "Retained messages (and clears) from the key-value bucket stored in this node's retained store.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("cluster/retained/applied"),
    sys_total: None,
};

pub static CLUSTER_RETAINED_DROPPED: Family = Family {
    name: "cluster_retained_dropped",
    help: "Retained writes not made, or key-value values not applied, by reason.",
    kind: Kind::Counter,
    labels: &["reason"],
    sys: Some("cluster/retained/dropped/{reason}"),
    sys_total: Some("cluster/retained/dropped"),
};

/// The mirror's counters.
#[derive(Debug, Default)]
pub struct RetainedCounters {
    pub written: AtomicU64,
    pub applied: AtomicU64,
    dropped: [AtomicU64; 4],
}

impl RetainedCounters {
    pub fn dropped(&self, why: RetainedLoss) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn dropped_count(&self, why: RetainedLoss) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }
}

impl MetricSource for RetainedCounters {
    fn collect(&self, out: &mut Scrape) {
        out.add(&CLUSTER_RETAINED_WRITTEN, &[], self.written.load(Ordering::Relaxed));
        out.add(&CLUSTER_RETAINED_APPLIED, &[], self.applied.load(Ordering::Relaxed));
        for why in RetainedLoss::ALL {
            out.add(&CLUSTER_RETAINED_DROPPED, &[why.as_str()], self.dropped_count(why));
        }
    }
}

/// This node's side of the retained bucket.
pub struct Retained {
    prefix: Prefix,
    max_payload: usize,
    tx: mpsc::Sender<Write>,
    /// Bytes queued, not yet taken by the writer.
    bytes: AtomicUsize,
    /// Writes queued or being written (for [`Retained::flush`]).
    pending: AtomicUsize,
    idle: Notify,
    counters: Arc<RetainedCounters>,
    log: LogLimiter,
}

impl std::fmt::Debug for Retained {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retained").field("pending", &self.pending.load(Ordering::Relaxed)).finish()
    }
}

impl Retained {
    /// Binds (or creates) the bucket, starts the writer and the watch, and
    /// waits for the watch's initial replay (at most [`REPLAY_TIMEOUT`]; a
    /// bucket that cannot be reached does not hold the start up: the node
    /// goes on trying in the background, and says so).
    pub async fn start(config: &ClusterConfig, client: async_nats::Client, broker: &Arc<Broker>) -> Arc<Retained> {
        let prefix = config.prefix().unwrap_or_else(|_| Prefix::new(subject::DEFAULT_PREFIX).expect("valid"));
        let max_payload = usize::try_from(config.max_payload).unwrap_or(usize::MAX);
        let l = &broker.settings.limits;
        let decode = DecodeLimits {
            max_packet_size: u32::try_from(config.max_payload).unwrap_or(u32::MAX),
            max_user_properties: l.max_user_properties,
            max_user_property_bytes: l.max_user_property_bytes,
        };
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let counters = Arc::<RetainedCounters>::default();
        broker.add_metric_source(Arc::clone(&counters) as Arc<dyn MetricSource>);
        let this = Arc::new(Retained {
            prefix: prefix.clone(),
            max_payload,
            tx,
            bytes: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            idle: Notify::new(),
            counters,
            log: LogLimiter::new(1),
        });
        let bucket = kv::Config {
            bucket: bucket_name(&prefix),
            description: "Portcullis retained messages (issue 19)".into(),
            history: 1,
            max_value_size: i32::try_from(max_payload).unwrap_or(i32::MAX),
            num_replicas: config.kv_replicas,
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        let mirror =
            Mirror { prefix, decode, max_payload, broker: Arc::downgrade(broker), retained: Arc::downgrade(&this) };
        tokio::spawn(run(jetstream::new(client), bucket, mirror, rx, ready_tx));
        match tokio::time::timeout(REPLAY_TIMEOUT, ready_rx).await {
            Ok(Ok(n)) => info!(values = n, "cluster: retained messages replayed from the key-value bucket"),
            Ok(Err(_)) => {}
            Err(_) => warn!(
                timeout = ?REPLAY_TIMEOUT,
                "cluster: the retained bucket's replay is not finished; it goes on in the background"
            ),
        }
        this
    }

    /// Queues the KV write of a retained message published on this node
    /// (never waits; a full queue drops it, counted).
    pub fn queue(&self, msg: &Message) {
        let key = key(&self.prefix, &msg.topic);
        let body = if msg.payload.is_empty() {
            None
        } else {
            match wire::body(msg, Instant::now()) {
                Ok(b) if b.len() <= self.max_payload => Some(b),
                _ => return self.lose(RetainedLoss::TooLarge, &msg.topic),
            }
        };
        let weight = key.len() + body.as_ref().map_or(0, Bytes::len);
        if self.bytes.fetch_add(weight, Ordering::Relaxed) + weight > WRITE_QUEUE_BYTES {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            return self.lose(RetainedLoss::QueueFull, &msg.topic);
        }
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.tx.try_send(Write { key, body, weight }).is_err() {
            self.bytes.fetch_sub(weight, Ordering::Relaxed);
            self.done();
            self.lose(RetainedLoss::QueueFull, &msg.topic);
        }
    }

    /// Waits until every queued write is made (or failed), at most until
    /// `deadline`; true when none is left.
    pub async fn flush(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            if self.pending.load(Ordering::Acquire) == 0 {
                return true;
            }
            if tokio::time::timeout_at(deadline, idle).await.is_err() {
                return self.pending.load(Ordering::Acquire) == 0;
            }
        }
    }

    /// Writes queued or in progress.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// The mirror's counters.
    pub fn counters(&self) -> &RetainedCounters {
        &self.counters
    }

    fn done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_waiters();
        }
    }

    fn lose(&self, why: RetainedLoss, topic: &TopicName) {
        self.counters.dropped(why);
        if let Some(suppressed) = self.log.allow() {
            warn!(reason = why.as_str(), topic = %Peer(topic.as_str()), suppressed, "cluster: retained message not written to the key-value bucket");
        }
    }
}

/// What the watch needs to apply a value.
struct Mirror {
    prefix: Prefix,
    decode: DecodeLimits,
    max_payload: usize,
    broker: Weak<Broker>,
    retained: Weak<Retained>,
}

/// Binds the bucket (retrying), then runs the writer and the watch.
async fn run(
    js: jetstream::Context,
    bucket: kv::Config,
    mirror: Mirror,
    rx: mpsc::Receiver<Write>,
    ready: oneshot::Sender<u64>,
) {
    let mut ready = Some(ready);
    let mut warned = false;
    let store = loop {
        match bind(&js, &bucket).await {
            Ok(s) => break s,
            Err(e) => {
                if !warned {
                    warn!(bucket = %bucket.bucket, error = %e, "cluster: retained messages' key-value bucket unavailable; retrying (retained messages do not cross meanwhile)");
                    warned = true;
                }
                // Do not hold the node's start up.
                drop(ready.take());
                if mirror.retained.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    };
    if warned {
        info!(bucket = %bucket.bucket, "cluster: retained messages' key-value bucket bound");
    }
    tokio::spawn(writer(store.clone(), rx, mirror.retained.clone()));
    loop {
        if mirror.retained.strong_count() == 0 {
            return;
        }
        match watch(&store, &mirror, &mut ready).await {
            Ok(()) => warn!("cluster: the retained bucket's watch ended; opening it again"),
            Err(e) => warn!(error = %e, "cluster: the retained bucket's watch failed; opening it again"),
        }
        drop(ready.take());
        tokio::time::sleep(RETRY).await;
    }
}

async fn bind(js: &jetstream::Context, bucket: &kv::Config) -> Result<kv::Store, async_nats::Error> {
    if let Ok(s) = js.get_key_value(&bucket.bucket).await {
        return Ok(s);
    }
    match js.create_key_value(bucket.clone()).await {
        Ok(s) => Ok(s),
        // Another node created it meanwhile.
        Err(e) => js.get_key_value(&bucket.bucket).await.map_err(|_| e.into()),
    }
}

/// Makes the queued writes, in order.
async fn writer(store: kv::Store, mut rx: mpsc::Receiver<Write>, retained: Weak<Retained>) {
    while let Some(w) = rx.recv().await {
        let Some(r) = retained.upgrade() else { return };
        r.bytes.fetch_sub(w.weight, Ordering::Relaxed);
        let result = match w.body {
            Some(body) => store.put(&w.key, body).await.map(|_| ()).map_err(|e| e.to_string()),
            None => store.delete(&w.key).await.map_err(|e| e.to_string()),
        };
        match result {
            Ok(()) => {
                r.counters.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                r.counters.dropped(RetainedLoss::WriteFailed);
                if let Some(suppressed) = r.log.allow() {
                    warn!(key = %Peer(&w.key), error = %e, suppressed, "cluster: retained write to the key-value bucket failed");
                }
            }
        }
        r.done();
    }
}

/// Runs one watch of the whole bucket; signals `ready` (with the number of
/// values replayed) once the initial replay is done.
async fn watch(store: &kv::Store, mirror: &Mirror, ready: &mut Option<oneshot::Sender<u64>>) -> Result<(), String> {
    let values = store.status().await.map_err(|e| e.to_string())?.values();
    // The last value of every key first (a delete marker included), then
    // each change.
    let mut entries = store.watch_with_history(">").await.map_err(|e| e.to_string())?;
    let mut replayed = 0u64;
    if values == 0 {
        if let Some(r) = ready.take() {
            let _ = r.send(0);
        }
    }
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| e.to_string())?;
        if mirror.broker.strong_count() == 0 {
            return Ok(());
        }
        mirror.apply(&entry);
        replayed += 1;
        if entry.delta == 0 {
            if let Some(r) = ready.take() {
                let _ = r.send(replayed);
            }
        }
    }
    Ok(())
}

impl Mirror {
    fn apply(&self, entry: &kv::Entry) {
        let (Some(broker), Some(retained)) = (self.broker.upgrade(), self.retained.upgrade()) else { return };
        let Some(topic) = topic_of(&self.prefix, &entry.key) else {
            return retained.counters.dropped(RetainedLoss::Malformed);
        };
        if topic.as_str().starts_with("$SYS/") {
            return retained.counters.dropped(RetainedLoss::Malformed);
        }
        let clear = |topic: TopicName| {
            if broker.retained.get(topic.as_str()).is_none() {
                return;
            }
            let msg = Arc::new(Message {
                topic,
                payload: Bytes::new(),
                qos: QoS::AtMostOnce,
                retain: true,
                properties: None,
                publisher: None,
                expires_at: None,
            });
            broker.retain_remote(&msg);
            retained.counters.applied.fetch_add(1, Ordering::Relaxed);
        };
        if entry.operation != kv::Operation::Put || entry.value.is_empty() {
            return clear(topic);
        }
        if entry.value.len() > self.max_payload {
            return retained.counters.dropped(RetainedLoss::Malformed);
        }
        // The value holds the seconds left when it was written: count the
        // expiry from then (the server's timestamp of the entry).
        let now = Instant::now();
        let age = age_of(entry.created.unix_timestamp_nanos());
        let written = now.checked_sub(age).unwrap_or(now);
        let msg = match wire::message(&entry.value, &topic, self.decode, written) {
            Ok(m) if m.retain => m,
            Ok(_) => return retained.counters.dropped(RetainedLoss::Malformed),
            Err(e) => {
                retained.counters.dropped(RetainedLoss::Malformed);
                if let Some(suppressed) = retained.log.allow() {
                    warn!(key = %Peer(&entry.key), error = %e, suppressed, "cluster: retained value refused");
                }
                return;
            }
        };
        if msg.expired(now) {
            return clear(topic);
        }
        if let Some(local) = broker.retained.get(topic.as_str()) {
            if same(&local, &msg, now) {
                return;
            }
        }
        broker.retain_remote(&msg);
        retained.counters.applied.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long ago `created` (Unix nanoseconds) was; 0 when in the future.
fn age_of(created_nanos: i128) -> Duration {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
    let age = now.saturating_sub(created_nanos).max(0);
    Duration::from_nanos(u64::try_from(age).unwrap_or(u64::MAX))
}

/// The local copy is this value already (its expiry within 2 s: the value
/// carries whole seconds).
fn same(local: &Message, msg: &Message, now: Instant) -> bool {
    let expiry_close = match (local.remaining_expiry(now), msg.remaining_expiry(now)) {
        (None, None) => true,
        (Some(a), Some(b)) => a.abs_diff(b) <= 2,
        _ => false,
    };
    local.payload == msg.payload && local.qos == msg.qos && local.properties() == msg.properties() && expiry_close
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_kv_keys_and_decode_back() {
        let prefix = Prefix::new("pc.test").unwrap();
        assert_eq!(bucket_name(&prefix), "pc_test_retained");
        for t in ["a/b", "a.b/café", "/", "x//y", "$aws/things", "sp ace/*/>"] {
            let topic = TopicName::new(t).unwrap();
            let k = key(&prefix, &topic);
            assert!(!k.starts_with('.') && !k.ends_with('.'), "{k}");
            assert!(k.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_=./".contains(&b)), "{k}");
            assert_eq!(topic_of(&prefix, &k).unwrap(), topic);
        }
        assert_eq!(key(&prefix, &TopicName::new("a/b").unwrap()), "m.a.b");
        assert!(topic_of(&prefix, "x.a").is_none());
        assert!(topic_of(&prefix, "m.a=zz").is_none());
    }

    #[test]
    fn age_is_never_negative() {
        assert_eq!(age_of(i128::MAX), Duration::ZERO);
        assert!(age_of(0) > Duration::from_secs(1_000_000));
    }
}
