//! The durable mode (`[cluster] cross_node = "durable"`): QoS 1 and 2
//! messages cross between nodes through a JetStream stream instead of core
//! NATS.
//!
//! ```text
//!  PUBLISH (QoS ≥ 1) ─► outbound queue ─► JetStream publish <prefix>.d.<root>.<levels>
//!                                           │ stream <prefix>_messages (kv_replicas copies)
//!        PUBACK/PUBREC ◄─ commit ◄─ ack ◄───┘ (the stream stored it)
//!  stream ─► this node's durable consumer ─► Broker::deliver_remote_committed
//!                 ▲                                  │ (persistent sessions: on disk)
//!                 └──────── ack (all up to here) ◄───┘
//! ```
//!
//! * **Publishing.** A QoS 1/2 message is published on its topic's subject
//!   under `<prefix>.d` ([`Prefix::durable`]), which only the stream
//!   captures (plain subscriptions are under `<prefix>.m`/`.s`). The
//!   publisher's PUBACK/PUBREC waits for the stream's acknowledgement (a
//!   [`Commit`] in core's ordered acknowledgement queue); a message the
//!   stream did not confirm (no stream, no quorum, no answer within
//!   `request_timeout`, or dropped before it was sent) fails that commit:
//!   v5 0x97, 3.x connection closed, as when the local store fails. At most
//!   [`ACKS_IN_FLIGHT`] acknowledgements are awaited at once; past that the
//!   outbound queue fills and the back-pressure of [`super`] applies.
//! * **Reading.** Each node reads the whole stream through its own durable
//!   pull consumer (named from a digest of its node name, so a restarted
//!   node resumes where it stopped), filters locally (routing drops what
//!   no local subscription matches) and skips its own messages (local
//!   routing delivered them). It acknowledges (`AckAll`) the last message
//!   of each batch (at most [`ACK_EVERY`] messages or [`ACK_DELAY`] after
//!   its first) once the store commits of the persistent sessions the
//!   batch reached have completed: a message leaves this node's part of
//!   the stream only once it is on this node's disk (or in memory without
//!   a store). The stream keeps a message until every consumer has
//!   acknowledged it (interest retention), at most `durable_max_age` and
//!   `durable_max_bytes`; a gap in the sequence this node reads is what
//!   those limits removed before it came, counted `stream_expired`.
//! * **Duplicates.** A message redelivered within one run (an
//!   acknowledgement lost with a NATS server) has a stream sequence this
//!   node passed already and is skipped; after a restart what was not
//!   acknowledged comes again (at least once).
//! * **Shared subscriptions** keep their NATS queue groups, on both the
//!   plain and the durable subjects: a shared message crosses at most once.
//! * **Bounds.** The consumer asks for [`BATCH`] messages at a time and
//!   lets at most [`MAX_ACK_PENDING`] be unacknowledged; a batch is
//!   acknowledged once its local commits complete, so a slow disk here slows
//!   this node's reading and nothing piles up in memory.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::consumer::pull;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::PublishAckFuture;
use async_nats::jetstream::stream::{DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, Context};
use futures::{FutureExt, StreamExt};
use portcullis_core::durable::{Commit, StoreError};
use portcullis_core::logsafe::LogLimiter;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};
use tracing::{info, warn};

use super::metrics::{Counters, Loss};
use super::{wire, Inner};
use crate::config::ClusterConfig;
use crate::subject::Prefix;

/// Stream acknowledgements awaited at once (publishing side).
pub const ACKS_IN_FLIGHT: usize = 4096;
/// Acknowledgements handed to the task that awaits them, not yet taken.
const ACK_HANDOFF: usize = 64;
/// Messages the consumer asks for at a time.
pub const BATCH: usize = 512;
/// Messages delivered to this node and not yet acknowledged, at most.
pub const MAX_ACK_PENDING: i64 = 16384;
/// A delivered message not acknowledged for this long is delivered again.
pub const ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages delivered before the batch's commits are awaited and the last
/// one acknowledged, at most.
const ACK_EVERY: usize = 256;
/// How long a batch waits for more messages before it is settled: one
/// acknowledgement (which JetStream replicates) covers the messages of
/// this long instead of each message of a slow trickle.
const ACK_DELAY: Duration = Duration::from_millis(20);

/// Told whether the stream stored a message.
pub type Done = oneshot::Sender<Result<(), String>>;

/// The stream's name: `<prefix>_messages` (`.` in the prefix as `_`).
pub fn stream_name(prefix: &Prefix) -> String {
    format!("{}_messages", prefix.as_str().replace('.', "_"))
}

/// This node's durable consumer: `n-` and 32 hex digits of SHA-256 over the
/// node name (a consumer name may hold no `.`, `*`, `>` or whitespace; a
/// node name may).
pub fn consumer_name(node: &str) -> String {
    let digest = Sha256::digest(node.as_bytes());
    let mut name = String::with_capacity(34);
    name.push_str("n-");
    for b in &digest[..16] {
        name.push_str(&format!("{b:02x}"));
    }
    name
}

/// A commit for core that completes when `rx` says the stream stored the
/// message; a dropped sender (the message never reached the stream) fails.
pub fn commit(rx: oneshot::Receiver<Result<(), String>>) -> Commit {
    Box::pin(async move {
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(StoreError::Failed(format!("the cluster's durable stream did not store it: {e}"))),
            Err(_) => Err(StoreError::Failed("the message did not reach the cluster's durable stream".into())),
        }
    })
}

/// The durable mode's publishing side.
pub struct Publisher {
    js: Context,
    pub prefix: Prefix,
    acks: mpsc::Sender<(PublishAckFuture, Option<Done>)>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher").field("prefix", &self.prefix).finish()
    }
}

impl Publisher {
    /// Starts the task that awaits the stream's acknowledgements.
    pub fn start(client: async_nats::Client, prefix: &Prefix, timeout: Duration, counters: Arc<Counters>) -> Publisher {
        let mut js = jetstream::new(client);
        js.set_timeout(timeout);
        let (acks, rx) = mpsc::channel(ACK_HANDOFF);
        tokio::spawn(await_acks(rx, counters));
        Publisher { js, prefix: prefix.durable(), acks }
    }

    /// Publishes one message to the stream; `done` hears whether it was
    /// stored. Waits while [`ACKS_IN_FLIGHT`] acknowledgements are awaited.
    pub async fn publish(
        &self,
        subject: String,
        headers: async_nats::HeaderMap,
        body: bytes::Bytes,
        done: Option<Done>,
    ) -> Result<(), String> {
        let ack = self.js.publish_with_headers(subject, headers, body).await.map_err(|e| e.to_string())?;
        // Dropped only with the cluster: the sender then fails the commit.
        let _ = self.acks.send((ack, done)).await;
        Ok(())
    }
}

/// Awaits the stream's acknowledgements, all at once (each one's
/// `request_timeout` runs from when it is taken here, not from when the one
/// before it was answered: a stuck NATS fails them all within one timeout),
/// and tells each publisher in publish order; a refusal is counted and
/// logged (paced).
async fn await_acks(mut rx: mpsc::Receiver<(PublishAckFuture, Option<Done>)>, counters: Arc<Counters>) {
    let log = LogLimiter::new(1);
    let mut waiting = futures::stream::FuturesOrdered::new();
    let mut open = true;
    while open || !waiting.is_empty() {
        tokio::select! {
            next = rx.recv(), if open && waiting.len() < ACKS_IN_FLIGHT => match next {
                Some((ack, done)) => waiting.push_back(async move {
                    (std::future::IntoFuture::into_future(ack).await.map(|_| ()).map_err(|e| e.to_string()), done)
                }),
                None => open = false,
            },
            Some((r, done)) = waiting.next(), if !waiting.is_empty() => {
                if let Err(e) = &r {
                    counters.dropped(Loss::StreamFailed);
                    if let Some(suppressed) = log.allow() {
                        warn!(error = %e, suppressed, "cluster: the durable stream did not store a message (its publisher is told)");
                    }
                }
                if let Some(done) = done {
                    let _ = done.send(r);
                }
            }
        }
    }
}

/// Creates the stream if it is not there (an existing one keeps its own
/// settings).
async fn open_stream(js: &Context, name: &str, prefix: &Prefix, config: &ClusterConfig) -> Result<(), String> {
    let stream = jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![format!("{}.>", prefix.durable())],
        retention: RetentionPolicy::Interest,
        storage: StorageType::File,
        num_replicas: config.kv_replicas,
        max_age: config.durable_max_age,
        max_bytes: i64::try_from(config.durable_max_bytes).unwrap_or(i64::MAX),
        discard: DiscardPolicy::Old,
        ..Default::default()
    };
    js.get_or_create_stream(stream).await.map(|_| ()).map_err(|e| e.to_string())
}

/// The reading side: opens the stream and this node's consumer (retrying
/// until they open), then delivers what it reads until the cluster goes.
pub(super) async fn consume(client: async_nats::Client, config: ClusterConfig, inner: Weak<Inner>) {
    let Some(prefix) = inner.upgrade().map(|i| i.prefix.clone()) else { return };
    let durable = prefix.durable();
    let node = match inner.upgrade() {
        Some(i) => i.node.clone(),
        None => return,
    };
    let mut js = jetstream::new(client);
    js.set_timeout(config.request_timeout);
    let name = stream_name(&prefix);
    let consumer_name = consumer_name(&node);
    let mut reader = Reader { last_seen: 0, acked: 0 };
    let mut announced = false;
    let mut failures = 0u32;
    loop {
        if inner.strong_count() == 0 {
            return;
        }
        let messages = async {
            open_stream(&js, &name, &prefix, &config).await?;
            let stream = js.get_stream(&name).await.map_err(|e| e.to_string())?;
            let consumer = stream
                .get_or_create_consumer(
                    &consumer_name,
                    pull::Config {
                        durable_name: Some(consumer_name.clone()),
                        description: Some(format!("Portcullis node {node}")),
                        deliver_policy: DeliverPolicy::New,
                        ack_policy: AckPolicy::All,
                        ack_wait: ACK_WAIT,
                        max_ack_pending: MAX_ACK_PENDING,
                        inactive_threshold: config.durable_max_age,
                        ..Default::default()
                    },
                )
                .await
                .map_err(|e| e.to_string())?;
            consumer.stream().max_messages_per_batch(BATCH).messages().await.map_err(|e| e.to_string())
        }
        .await;
        let messages = match messages {
            Ok(m) => m,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(30) {
                    warn!(stream = %name, error = %e, kv_replicas = config.kv_replicas, "cluster: durable stream not open yet (JetStream on, and kv_replicas at most the NATS servers?); QoS 1/2 PUBLISHes are refused until it is");
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        failures = 0;
        if !announced {
            info!(stream = %name, consumer = %consumer_name, "cluster: durable stream open");
            announced = true;
        }
        reader.read(messages, &inner, &durable).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Where this node is in the stream (kept across consumer reopenings).
struct Reader {
    /// Highest stream sequence delivered here in this run.
    last_seen: u64,
    /// Highest stream sequence acknowledged.
    acked: u64,
}

/// Messages delivered and not yet acknowledged.
#[derive(Default)]
struct Batch {
    last: Option<jetstream::Message>,
    /// When its first message was delivered.
    since: Option<tokio::time::Instant>,
    commits: Vec<Commit>,
    count: usize,
}

impl Reader {
    /// Reads until the message stream ends or fails (then the caller opens
    /// it again).
    async fn read(&mut self, mut messages: pull::Stream, inner: &Weak<Inner>, prefix: &Prefix) {
        let mut batch = Batch::default();
        loop {
            let next = match messages.next().now_or_never() {
                Some(next) => next,
                None => match batch.since {
                    // Nothing more at once: the batch waits for more at most
                    // ACK_DELAY after its first message, then is settled.
                    Some(since) => match tokio::time::timeout_at(since + ACK_DELAY, messages.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            self.settle(&mut batch).await;
                            continue;
                        }
                    },
                    None => messages.next().await,
                },
            };
            let m = match next {
                Some(Ok(m)) => m,
                Some(Err(e)) => {
                    self.settle(&mut batch).await;
                    if let Some(i) = inner.upgrade() {
                        if let Some(suppressed) = i.inbound_log.allow() {
                            warn!(error = %e, suppressed, "cluster: reading the durable stream failed; reopening it");
                        }
                    }
                    return;
                }
                None => {
                    self.settle(&mut batch).await;
                    return;
                }
            };
            let Some(inner) = inner.upgrade() else { return };
            let seq = match m.info() {
                Ok(i) => i.stream_sequence,
                Err(_) => {
                    inner.malformed(&"a durable stream message without its acknowledgement subject");
                    continue;
                }
            };
            if seq <= self.last_seen {
                // Delivered again (an acknowledgement that did not arrive).
                batch.last = Some(m);
                batch.since.get_or_insert_with(tokio::time::Instant::now);
                continue;
            }
            if self.last_seen != 0 && seq > self.last_seen + 1 {
                inner.counters.dropped_n(Loss::StreamExpired, seq - self.last_seen - 1);
                if let Some(suppressed) = inner.drop_log.allow() {
                    warn!(missed = seq - self.last_seen - 1, suppressed, "cluster: the durable stream dropped messages before this node took them (durable_max_age / durable_max_bytes)");
                }
            }
            self.last_seen = seq;
            inner.deliver_durable(&m, prefix, &mut batch.commits);
            batch.last = Some(m);
            batch.count += 1;
            batch.since.get_or_insert_with(tokio::time::Instant::now);
            if batch.count >= ACK_EVERY {
                self.settle(&mut batch).await;
            }
        }
    }

    /// Waits for the batch's local commits and acknowledges its last
    /// message (and so every one before it). A failed commit leaves the
    /// batch unacknowledged: the stream delivers it again after
    /// [`ACK_WAIT`].
    async fn settle(&mut self, batch: &mut Batch) {
        batch.since = None;
        let Some(last) = batch.last.take() else { return };
        batch.count = 0;
        let mut ok = true;
        for c in batch.commits.drain(..) {
            ok &= c.await.is_ok();
        }
        let seq = last.info().map(|i| i.stream_sequence).unwrap_or(0);
        if !ok {
            warn!("cluster: a durable message could not be stored here; the stream will deliver it again");
            self.last_seen = self.acked;
            return;
        }
        if last.ack().await.is_ok() {
            self.acked = self.acked.max(seq);
        }
    }
}

impl Inner {
    /// One message read from the stream: delivered to the local
    /// subscribers unless this node sent it.
    fn deliver_durable(&self, m: &jetstream::Message, prefix: &Prefix, commits: &mut Vec<Commit>) {
        let Some(broker) = self.broker.upgrade() else { return };
        let origin = match wire::origin(m.headers.as_ref()) {
            Ok(o) => o,
            Err(e) => return self.malformed(&e),
        };
        if origin.node == *self.node {
            // Local routing delivered it when it was published here (in
            // this run or, unacknowledged, in one before a restart).
            return;
        }
        let Some(msg) = self.decode_inbound(prefix, m.subject.as_str(), &m.payload) else { return };
        broker.deliver_remote_committed(&msg, commits);
        self.counters.received.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_valid_jetstream_names() {
        assert_eq!(stream_name(&Prefix::new("a.b").unwrap()), "a_b_messages");
        let c = consumer_name("node 1.*>");
        assert_eq!(c.len(), 34);
        assert!(c.starts_with("n-") && c[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(consumer_name("a"), consumer_name("b"));
        assert_eq!(Prefix::new("p").unwrap().durable().as_str(), "p.d");
    }

    #[tokio::test]
    async fn a_commit_fails_unless_the_stream_said_stored() {
        let (tx, rx) = oneshot::channel();
        tx.send(Ok(())).unwrap();
        assert!(commit(rx).await.is_ok());
        let (tx, rx) = oneshot::channel();
        tx.send(Err("no quorum".into())).unwrap();
        assert!(commit(rx).await.is_err());
        let (tx, rx) = oneshot::channel::<Result<(), String>>();
        drop(tx);
        assert!(commit(rx).await.is_err(), "dropped before it was sent: not stored");
    }
}
