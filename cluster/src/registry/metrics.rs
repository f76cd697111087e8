//! The session registry's counters (`$SYS/brokers/<node>/cluster/registry/…`
//! and Prometheus `cluster_registry_events{event}`).

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};

/// What the registry counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A CONNECT claimed its session (compare-and-set written).
    Claimed,
    /// A compare-and-set lost to another node's write (re-read, retried).
    Conflict,
    /// A CONNECT refused: the registry could not be read or written, or
    /// too many takeovers were pending, or the retries ran out.
    Unavailable,
    /// A CONNECT refused: the session is another identity's elsewhere.
    OwnerMismatch,
    /// A session moved here from another node with its state.
    MovedIn,
    /// Another node asked for a session here and got it.
    MovedOut,
    /// The owner node did not answer: the subscriptions were restored
    /// from the registry (its queued messages are lost).
    RestoredFromEntry,
    /// Queued or in-flight messages left out of a hand-over (they did not
    /// fit NATS' `max_payload`) or unreadable on arrival.
    HandoverMessagesLost,
    /// A takeover request that is not what a node sends.
    MalformedRequest,
    /// An entry update (subscriptions, session end) that failed.
    UpdateFailed,
    /// An entry update not queued (the queue was full).
    UpdateDropped,
    /// A session dropped here after this node was cut off from the
    /// registry: it now names another node, which took the session over
    /// while its request could not reach this one.
    StaleDropped,
}

impl Event {
    const ALL: [Event; 12] = [
        Event::Claimed,
        Event::Conflict,
        Event::Unavailable,
        Event::OwnerMismatch,
        Event::MovedIn,
        Event::MovedOut,
        Event::RestoredFromEntry,
        Event::HandoverMessagesLost,
        Event::MalformedRequest,
        Event::UpdateFailed,
        Event::UpdateDropped,
        Event::StaleDropped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Event::Claimed => "claimed",
            Event::Conflict => "conflict",
            Event::Unavailable => "unavailable",
            Event::OwnerMismatch => "owner_mismatch",
            Event::MovedIn => "moved_in",
            Event::MovedOut => "moved_out",
            Event::RestoredFromEntry => "restored_from_entry",
            Event::HandoverMessagesLost => "handover_messages_lost",
            Event::MalformedRequest => "malformed_request",
            Event::UpdateFailed => "update_failed",
            Event::UpdateDropped => "update_dropped",
            Event::StaleDropped => "stale_dropped",
        }
    }
}

pub static CLUSTER_REGISTRY_EVENTS: Family = Family {
    name: "cluster_registry_events",
    help: "Session registry events on this node (claims, conflicts, refusals, hand-overs, update failures), by event.",
    kind: Kind::Counter,
    labels: &["event"],
    sys: Some("cluster/registry/{event}"),
    sys_total: None,
};

/// The counters.
#[derive(Debug, Default)]
pub struct Counters {
    events: [AtomicU64; 12],
}

impl Counters {
    pub fn add(&self, e: Event, n: u64) {
        self.events[e as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, e: Event) -> u64 {
        self.events[e as usize].load(Ordering::Relaxed)
    }
}

impl MetricSource for Counters {
    fn collect(&self, out: &mut Scrape) {
        for e in Event::ALL {
            out.add(&CLUSTER_REGISTRY_EVENTS, &[e.as_str()], self.get(e));
        }
    }
}
