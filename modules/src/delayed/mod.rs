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
//!   the messages it held are dropped (counted, logged) — an operator who
//!   switches the module off wants no more delayed messages. Held messages
//!   are not written to the snapshot: a restart loses them.
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
use queue::{Committed, Limits, Queue, Refused};
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
        let task = rt.spawn(run(Arc::clone(&shared))).abort_handle();
        Ok(Delayed { shared, task })
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
        self.task.abort();
        let n = self.shared.queue.lock().clear();
        if n > 0 {
            self.shared.stats.dropped(n as u64);
            if let Some(b) = self.shared.broker.upgrade() {
                b.metrics.dropped_n(DropReason::Module, n as u64);
            }
            info!(dropped = n, "delayed publish switched off: the messages it held are dropped");
        }
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

    fn take(&self, msg: Arc<Message>) {
        let topic = msg.topic.clone();
        let done = self.shared.queue.lock().commit(msg, Instant::now(), std::time::Instant::now());
        match done {
            Committed::Held { earliest: true } => self.shared.wake.notify_one(),
            Committed::Held { earliest: false } => {}
            Committed::NoReservation | Committed::Full => {
                self.shared.stats.dropped(1);
                if let Some(b) = self.shared.broker.upgrade() {
                    b.metrics.dropped(DropReason::Module);
                }
                debug!(topic = %Peer(topic.as_str()), result = ?done, "delayed message dropped: its reservation is gone");
            }
        }
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
                for msg in due.drain(..) {
                    shared.publish(&broker, msg, now);
                }
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

impl Shared {
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
