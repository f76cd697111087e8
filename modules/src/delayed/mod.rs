//! Delayed publish: `$delayed/<seconds>/<topic>` (EMQX, rmqtt).
//!
//! A publish hook recognises the prefix ([`topic::parse`]), rewrites the
//! topic to the real one and takes the message
//! ([`PublishFlow::Take`]); the core then checks the ACL against the real
//! topic and, if it is allowed, hands the message to
//! [`OnMessagePublish::take`], which holds it until its deadline. One task
//! per module instance sleeps until the first deadline of the one
//! [`queue::Queue`] and publishes what is due through the broker (which
//! retains it if its retain flag is set, and routes it).
//!
//! * Refusals, decided in the hook so that a v5 publisher hears them: a
//!   malformed `$delayed/…` topic (no or bad seconds, no topic, a `$SYS` or
//!   another `$delayed` topic) gets 0x90 topic name invalid; a delay over
//!   `max_delay`, or no room under `max_messages` / `max_bytes`, gets 0x97
//!   quota exceeded (3.x: acknowledged and dropped). Room is reserved in
//!   the hook and committed by `take` (see [`queue`] for how a
//!   reservation the ACL refused is released).
//! * `$delayed/0/<topic>` is published at once (the topic rewritten, the
//!   ACL checking the real one), as in EMQX.
//! * Message expiry: `Message::expires_at` is an absolute instant set when
//!   the PUBLISH arrived, so the interval keeps counting while the message
//!   waits; a subscriber gets what is left. A message that expires before
//!   its deadline is dropped then (counted), not published.
//! * The delay counts from the publish hook (when the PUBLISH was read),
//!   not from the end of the ACL check.
//! * Run time: settings changed by SIGHUP apply to the same instance (what
//!   it holds stays, with its deadlines; new bounds apply to new
//!   publishes). Switched off, the instance is dropped: its task ends and
//!   the messages it held are dropped (counted, logged, and deleted from
//!   the durable store) — an operator who switches the module off wants no
//!   more delayed messages.
//! * Durability: with a durable store (`[persistence] mode = "strict"` or
//!   `"relaxed"`), a held message is written to it
//!   ([`Change::DelayedPut`], keyed by its deadline in Unix time), and a
//!   client's PUBLISH to `$delayed/…` is acknowledged once that commit
//!   completed (strict mode; a failed commit is refused, v5 0x97); the
//!   row goes when the message is published, expires or is dropped. At
//!   start the module takes the held messages back with their deadlines
//!   (wall clock: downtime counts; one overdue is published at once). A
//!   will or an HTTP publish to `$delayed/…` is written with the next
//!   group commit, not awaited. While the module is off, stored messages
//!   stay in the store (a warning at start says how many).
//! * Metrics: [`sys`].

pub mod config;
pub mod queue;
pub mod sys;
#[cfg(test)]
mod tests;
pub mod topic;

pub use config::DelayedConfig;

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::broker::Broker;
use portcullis_core::codec::properties::{encoded_len, PropCtx};
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::codec::Properties;
use portcullis_core::durable::{Change, Commit};
use portcullis_core::hooks::{
    HookSetBuilder, Module, OnMessageDropped, OnMessagePublish, PublishFlow, PublishedMessage, Publisher,
};
use portcullis_core::logsafe::Peer;
use portcullis_core::message::Message;
use portcullis_core::metrics::DropReason;
use portcullis_core::topic::TopicName;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tracing::{debug, info};

use crate::set::ModuleError;
use queue::{Committed, Limits, Queue, Refused, StoredKey};
use sys::Stats;
use topic::Parsed;

/// Most messages published per turn of the timer task before it yields
/// (and takes the queue's lock again): a burst due at the same second
/// does not hold the lock, or a worker thread, for long.
const BATCH: usize = 256;

/// The delayed-publish module (see the module docs).
#[derive(Debug)]
pub struct Delayed {
    shared: Arc<Shared>,
    /// The timer task, ended when the instance is dropped.
    task: AbortHandle,
}

/// What the hooks and the timer task share.
#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the timer task when the first deadline moves earlier.
    wake: Notify,
    broker: Weak<Broker>,
    stats: Arc<Stats>,
}

fn limits(cfg: &DelayedConfig) -> Limits {
    Limits {
        max_messages: cfg.max_messages,
        max_bytes: usize::try_from(cfg.max_bytes).unwrap_or(usize::MAX),
        max_delay: cfg.max_delay,
    }
}

/// What the message will weigh once built ([`Message::weight`]): topic,
/// payload, and the encoded size of its properties when it has any.
fn weight(topic: &TopicName, msg: &PublishedMessage) -> usize {
    let props = match msg.properties == Properties::default() {
        true => 0,
        false => encoded_len(&msg.properties, PropCtx::Publish),
    };
    topic.as_str().len() + msg.payload.len() + props
}

impl Delayed {
    /// A running instance: its timer task is spawned on the current tokio
    /// runtime. `stats` are the counters its `$SYS` source reports.
    pub fn new(broker: &Arc<Broker>, cfg: &DelayedConfig, stats: Arc<Stats>) -> Result<Delayed, ModuleError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| ModuleError::NoRuntime)?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(limits(cfg))),
            wake: Notify::new(),
            broker: Arc::downgrade(broker),
            stats,
        });
        let restored = shared.restore(broker);
        if restored > 0 {
            info!(messages = restored, "delayed publish: held messages restored from the store");
        }
        let task = rt.spawn(run(Arc::clone(&shared))).abort_handle();
        Ok(Delayed { shared, task })
    }

    /// Switched off (not a broker stop): what it holds is dropped, and
    /// deleted from the store.
    pub fn switched_off(&self) {
        let (n, stored) = self.shared.queue.lock().clear();
        if let (Some(b), false) = (self.shared.broker.upgrade(), stored.is_empty()) {
            self.shared.forget(&b, stored);
        }
        self.count_dropped(n);
    }

    fn count_dropped(&self, n: usize) {
        if n > 0 {
            self.shared.stats.dropped(n as u64);
            if let Some(b) = self.shared.broker.upgrade() {
                b.metrics.dropped_n(DropReason::Module, n as u64);
            }
            info!(dropped = n, "delayed publish switched off: the messages it held are dropped");
        }
    }

    /// Applies new settings (a SIGHUP that kept the module on).
    pub fn reconfigure(&self, cfg: &DelayedConfig) {
        self.shared.queue.lock().set_limits(limits(cfg));
    }

    /// Messages and bytes held.
    pub fn held(&self) -> (usize, usize) {
        let q = self.shared.queue.lock();
        (q.held(), q.held_bytes())
    }

    /// A refused delayed publish.
    fn refuse(&self, topic: &str, why: &str, code: ReasonCode) -> PublishFlow {
        self.shared.stats.dropped(1);
        debug!(topic = %Peer(topic), why, "delayed publish refused");
        PublishFlow::Drop(code)
    }
}

impl Drop for Delayed {
    fn drop(&mut self) {
        // A broker that stops keeps the stored rows for the next start
        // ([`Delayed::switched_off`] deletes them).
        self.task.abort();
        let (n, _) = self.shared.queue.lock().clear();
        self.count_dropped(n);
    }
}

impl Module for Delayed {
    fn name(&self) -> &str {
        "delayed"
    }

    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        hooks.on_message_publish(self.clone()).on_message_dropped(self);
    }
}

impl OnMessagePublish for Delayed {
    fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow {
        let (seconds, real) = match topic::parse(msg.topic().as_str()) {
            Parsed::Ordinary => return PublishFlow::Continue,
            Parsed::Malformed(why) => {
                return self.refuse(msg.topic().as_str(), why.as_str(), ReasonCode::TopicNameInvalid);
            }
            Parsed::Delayed { seconds, topic } => (seconds, topic),
        };
        // A part of a valid topic name that is not empty is one too.
        let Ok(real) = TopicName::new(real) else {
            return self.refuse(msg.topic().as_str(), "invalid topic", ReasonCode::TopicNameInvalid);
        };
        if seconds == 0 {
            msg.set_topic(real);
            return PublishFlow::Continue;
        }
        let w = weight(&real, msg);
        let reserved = self.shared.queue.lock().reserve(
            &from.client().client_id,
            &msg.payload,
            w,
            Duration::from_secs(seconds),
            Instant::now(),
        );
        match reserved {
            Ok(earliest) => {
                if earliest {
                    self.shared.wake.notify_one();
                }
                msg.set_topic(real);
                PublishFlow::Take
            }
            Err(Refused::TooLong) => {
                self.refuse(msg.topic().as_str(), "delay over max_delay", ReasonCode::QuotaExceeded)
            }
            Err(Refused::Full) => {
                self.refuse(msg.topic().as_str(), "max_messages or max_bytes reached", ReasonCode::QuotaExceeded)
            }
        }
    }

    fn take(&self, msg: Arc<Message>) -> Option<Commit> {
        let topic = msg.topic.clone();
        let broker = self.shared.broker.upgrade();
        let store = broker.as_ref().and_then(|b| b.store().cloned());
        let id = broker.as_ref().filter(|_| store.is_some()).map(|b| b.next_stored_id());
        // The row is written before the timer task can see the message, so
        // that its delete cannot overtake it.
        let mut q = self.shared.queue.lock();
        let done = q.commit(Arc::clone(&msg), Instant::now(), std::time::Instant::now(), unix_now_ms(), id);
        let commit = match (&done, store) {
            (Committed::Held { stored: Some((due_ms, id)), .. }, Some(store)) => {
                Some(store.commit(vec![Change::DelayedPut { due_ms: *due_ms, id: *id, msg }]))
            }
            _ => None,
        };
        drop(q);
        match done {
            Committed::Held { earliest: true, .. } => self.shared.wake.notify_one(),
            Committed::Held { earliest: false, .. } => {}
            Committed::NoReservation | Committed::Full => {
                self.shared.stats.dropped(1);
                if let Some(b) = &broker {
                    b.metrics.dropped(DropReason::Module);
                }
                debug!(topic = %Peer(topic.as_str()), result = ?done, "delayed message dropped: its reservation is gone");
            }
        }
        commit
    }
}

impl OnMessageDropped for Delayed {
    fn dropped(&self, msg: &Message, reason: DropReason, client_id: Option<&str>) {
        // The ACL refused a publish (publish side: no target session): if
        // it was one of ours, its reservation goes.
        if reason == DropReason::Denied && client_id.is_none() && msg.publisher.is_some() {
            self.shared.queue.lock().release_refused(msg);
        }
    }
}

/// The timer task: publishes what is due, then sleeps until the first
/// deadline or until woken by an earlier one. Ends when aborted (the
/// instance dropped) or when the broker is gone.
async fn run(shared: Arc<Shared>) {
    let mut due = Vec::with_capacity(BATCH);
    loop {
        loop {
            let more = shared.queue.lock().pop_due(Instant::now(), BATCH, &mut due);
            if !due.is_empty() {
                let Some(broker) = shared.broker.upgrade() else { return };
                let now = std::time::Instant::now();
                let mut done = Vec::new();
                for (msg, stored) in due.drain(..) {
                    shared.publish(&broker, msg, now);
                    done.extend(stored);
                }
                // After the publishes: their own rows (queued for
                // persistent sessions) go to the writer first.
                shared.forget(&broker, done);
            }
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
        let next = shared.queue.lock().next_due();
        // Created after reading `next`: a wake-up sent in between is kept
        // as a permit, so an earlier deadline is never slept through.
        let woken = shared.wake.notified();
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

/// Unix time in milliseconds.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Shared {
    /// Takes back what the store held at start; how many.
    fn restore(&self, broker: &Broker) -> usize {
        let rows = broker.take_recovered_delayed();
        if rows.is_empty() {
            return 0;
        }
        let (now, now_ms) = (Instant::now(), unix_now_ms());
        let mut q = self.queue.lock();
        for r in &rows {
            let due = now + Duration::from_millis(r.due_ms.saturating_sub(now_ms));
            q.restore(Arc::clone(&r.msg), due, (r.due_ms, r.id));
        }
        rows.len()
    }

    /// Deletes these rows from the store (not awaited: a crash before the
    /// write publishes them again at the next start — at least once).
    fn forget(&self, broker: &Broker, rows: Vec<StoredKey>) {
        if rows.is_empty() {
            return;
        }
        if let Some(store) = broker.store() {
            let changes = rows.into_iter().map(|(due_ms, id)| Change::DelayedDelete { due_ms, id }).collect();
            drop(store.commit(changes));
        }
    }

    fn publish(&self, broker: &Broker, msg: Arc<Message>, now: std::time::Instant) {
        if msg.expired(now) {
            self.stats.dropped(1);
            broker.metrics.dropped(DropReason::Expired);
            broker.hooks.message_dropped(&msg, DropReason::Expired, None);
            return;
        }
        self.stats.published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        broker.publish(msg);
    }
}
