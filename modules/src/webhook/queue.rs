//! The bounded queue between the hooks and the sender, and its counters.
//!
//! A hook [`offer`](Queue::offer)s an event's JSON: taken when the events
//! waiting *and* being sent stay within `max_queue_len` and their bytes
//! within `max_queue_bytes`, dropped (and counted) otherwise. That is one
//! short lock and never a wait, so a slow or dead endpoint costs a client
//! nothing and the module never holds more than the bounds. An event's
//! bytes stay counted until its request is done (sent, failed or
//! abandoned), so requests in flight are inside the bound too.
//!
//! The queue outlives a rebuild of the module (new settings on SIGHUP):
//! the new sender carries on with what is queued, and the counters keep
//! counting. It goes when the module is disabled.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Weak;
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Counters, in events.
#[derive(Debug, Default)]
pub struct Stats {
    /// Delivered: their request got a 2xx.
    pub sent: AtomicU64,
    /// Given up after `max_attempts`, or refused by the endpoint (an
    /// answer that is not retried).
    pub failed: AtomicU64,
    /// Not queued (the queue was full), or queued and then abandoned when
    /// the module was disabled or rebuilt mid-request.
    pub dropped: AtomicU64,
}

#[derive(Debug)]
struct State {
    /// Waiting events: when each was queued, and its JSON.
    waiting: VecDeque<(Instant, Box<str>)>,
    /// Events being sent (taken by a sender, not yet done).
    in_flight: usize,
    /// Bytes of the waiting and in-flight events.
    bytes: u64,
    max_len: usize,
    max_bytes: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct Queue {
    state: Mutex<State>,
    /// Wakes the sender when an event is queued.
    pub(super) notify: Notify,
    pub stats: Stats,
    /// When the last "queue full" warning was logged (ms since the
    /// queue's creation), to log at most one every 10 s.
    warned_at: AtomicU64,
    created: Instant,
}

/// What [`Queue::take`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Take {
    /// A batch to send, and its bytes.
    Batch(Vec<Box<str>>, u64),
    /// Fewer than a batch wait; the oldest fills its linger at this time.
    Until(Instant),
    /// Nothing waits.
    Empty,
}

impl Queue {
    pub fn new(max_len: usize, max_bytes: u64) -> Queue {
        Queue {
            state: Mutex::new(State { waiting: VecDeque::new(), in_flight: 0, bytes: 0, max_len, max_bytes }),
            notify: Notify::new(),
            stats: Stats::default(),
            warned_at: AtomicU64::new(0),
            created: Instant::now(),
        }
    }

    /// New bounds (a rebuild); events already queued stay, new ones wait
    /// until the queue is back under them.
    pub fn set_limits(&self, max_len: usize, max_bytes: u64) {
        let mut st = self.state.lock();
        st.max_len = max_len;
        st.max_bytes = max_bytes;
    }

    /// Whether one more event could be queued now (so a hook need not
    /// build an event that would be dropped); counts a drop when not.
    pub fn has_room(&self) -> bool {
        let room = {
            let st = self.state.lock();
            st.waiting.len() + st.in_flight < st.max_len && st.bytes < st.max_bytes
        };
        if !room {
            self.dropped(1);
        }
        room
    }

    /// Queues `json`, or drops it (counted) when the queue is full.
    pub fn offer(&self, json: String) -> bool {
        let n = json.len() as u64;
        {
            let mut st = self.state.lock();
            if st.waiting.len() + st.in_flight >= st.max_len || st.bytes + n > st.max_bytes {
                drop(st);
                self.dropped(1);
                return false;
            }
            st.waiting.push_back((Instant::now(), json.into_boxed_str()));
            st.bytes += n;
        }
        self.notify.notify_one();
        true
    }

    fn dropped(&self, n: u64) {
        let total = self.stats.dropped.fetch_add(n, Relaxed) + n;
        let now = self.created.elapsed().as_millis() as u64;
        let last = self.warned_at.load(Relaxed);
        if (last == 0 || now.saturating_sub(last) >= 10_000)
            && self.warned_at.compare_exchange(last, now.max(1), Relaxed, Relaxed).is_ok()
        {
            tracing::warn!(
                dropped_total = total,
                "webhook queue full (max_queue_len / max_queue_bytes): events dropped"
            );
        }
    }

    /// Up to `max` waiting events when `max` wait or the oldest has waited
    /// `linger`; they count as in flight until [`done`](Self::done).
    pub fn take(&self, max: usize, linger: Duration, now: Instant) -> Take {
        let mut st = self.state.lock();
        let Some((oldest, _)) = st.waiting.front() else { return Take::Empty };
        let ready_at = *oldest + linger;
        if st.waiting.len() < max && ready_at > now {
            return Take::Until(ready_at);
        }
        let n = max.min(st.waiting.len());
        let batch: Vec<Box<str>> = st.waiting.drain(..n).map(|(_, e)| e).collect();
        st.in_flight += n;
        let bytes = batch.iter().map(|e| e.len() as u64).sum();
        Take::Batch(batch, bytes)
    }

    /// `events` taken by [`take`](Self::take), `bytes` long, are done.
    pub fn done(&self, events: usize, bytes: u64) {
        let mut st = self.state.lock();
        st.in_flight = st.in_flight.saturating_sub(events);
        st.bytes = st.bytes.saturating_sub(bytes);
    }

    /// Events waiting or being sent.
    pub fn queued(&self) -> usize {
        let st = self.state.lock();
        st.waiting.len() + st.in_flight
    }

    /// Bytes of the events waiting or being sent.
    pub fn bytes(&self) -> u64 {
        self.state.lock().bytes
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let n = self.state.get_mut().waiting.len();
        if n > 0 {
            tracing::info!(events = n, "webhook disabled: queued events discarded");
        }
    }
}

/// The `$SYS` values of a queue, while it lives: registered once per queue
/// with a [`Weak`], so a disabled module is not kept alive by `$SYS`.
#[derive(Debug)]
pub struct SysLink(pub Weak<Queue>);

/// `portcullis_webhook_queued`; `$SYS` `modules/webhook/queued`.
pub static WEBHOOK_QUEUED: Family = Family {
    name: "webhook_queued",
    help: "Webhook events waiting to be sent.",
    kind: Kind::Gauge,
    labels: &[],
    sys: Some("modules/webhook/queued"),
    sys_total: None,
};
/// `portcullis_webhook_events_total{outcome}`; `$SYS`
/// `modules/webhook/<outcome>`.
pub static WEBHOOK_EVENTS: Family = Family {
    name: "webhook_events",
    help: "Webhook events by outcome (sent, failed, dropped).",
    kind: Kind::Counter,
    labels: &["outcome"],
    sys: Some("modules/webhook/{outcome}"),
    sys_total: None,
};

impl MetricSource for SysLink {
    fn collect(&self, out: &mut Scrape) {
        let Some(q) = self.0.upgrade() else { return };
        let s = &q.stats;
        out.add(&WEBHOOK_QUEUED, &[], q.queued() as u64);
        out.add(&WEBHOOK_EVENTS, &["sent"], s.sent.load(Relaxed));
        out.add(&WEBHOOK_EVENTS, &["failed"], s.failed.load(Relaxed));
        out.add(&WEBHOOK_EVENTS, &["dropped"], s.dropped.load(Relaxed));
    }
}
