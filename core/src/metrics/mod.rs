//! Metrics: the broker's counters, and the one typed registry that `$SYS`
//! and Prometheus both read.
//!
//! * this file — the broker's own counters and gauges ([`Metrics`]),
//!   plain relaxed atomics bumped on the hot paths. Counters only ever
//!   grow; gauges keep their high-water mark so `$SYS` can publish `count`
//!   and `max` the way emqttd did.
//! * [`registry`] — the typed registry: metric families declared once
//!   ([`Family`]: name, help, kind, bounded label names, `$SYS` topic),
//!   read into a [`Scrape`] by [`MetricSource`]s when asked. `$SYS`
//!   ([`Scrape::sys_values`]) and Prometheus (the server's
//!   `portcullis::metrics::render`) are both rendered from one [`Scrape`],
//!   so they cannot disagree.
//! * [`broker`] — the broker's families (connections, sessions, messages,
//!   bytes, packets, drops, refusals, pre-auth) and how they are read.
//!
//! Nothing here runs on the publish path: a counter is still one relaxed
//! `fetch_add`, and the registry reads the atomics at scrape time.

pub mod broker;
pub mod registry;
#[cfg(test)]
mod tests;

pub use registry::{Buckets, Family, FamilySamples, Histogram, Kind, MetricSource, Sample, Scrape, Value};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::codec::QoS;

/// A gauge with its maximum.
#[derive(Debug, Default)]
pub struct Gauge {
    now: AtomicU64,
    max: AtomicU64,
}

impl Gauge {
    pub fn inc(&self) {
        let v = self.now.fetch_add(1, Relaxed) + 1;
        self.max.fetch_max(v, Relaxed);
    }
    pub fn dec(&self) {
        // Never wraps below zero even if a caller double-decrements.
        let _ = self.now.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(1)));
    }
    pub fn set(&self, v: u64) {
        self.now.store(v, Relaxed);
        self.max.fetch_max(v, Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.now.load(Relaxed)
    }
    pub fn max(&self) -> u64 {
        self.max.load(Relaxed)
    }
}

/// Packet type names in fixed-header order (index = packet type).
pub const PACKET_NAMES: [&str; 16] = [
    "reserved",
    "connect",
    "connack",
    "publish",
    "puback",
    "pubrec",
    "pubrel",
    "pubcomp",
    "subscribe",
    "suback",
    "unsubscribe",
    "unsuback",
    "pingreq",
    "pingresp",
    "disconnect",
    "auth",
];

/// Why a message was dropped, for `metrics/messages/dropped/<reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The session queue hit `max_queue_len` or `max_queue_bytes`.
    QueueFull,
    /// QoS 0 for an offline session with `queue_qos0 = false`.
    Qos0Offline,
    /// Message expiry interval passed before delivery.
    Expired,
    /// Larger than the client's Maximum Packet Size.
    TooLarge,
    /// No subscriber matched.
    NoSubscribers,
    /// Refused by ACL.
    Denied,
    /// A 3.x client exceeded `max_awaiting_rel`.
    AwaitRelFull,
    /// Retained store full or payload too large.
    RetainedRefused,
    /// A module's publish hook dropped it.
    Module,
}

impl DropReason {
    pub const ALL: [DropReason; 9] = [
        DropReason::QueueFull,
        DropReason::Qos0Offline,
        DropReason::Expired,
        DropReason::TooLarge,
        DropReason::NoSubscribers,
        DropReason::Denied,
        DropReason::AwaitRelFull,
        DropReason::RetainedRefused,
        DropReason::Module,
    ];
    pub fn name(self) -> &'static str {
        match self {
            DropReason::QueueFull => "queue_full",
            DropReason::Qos0Offline => "qos0_offline",
            DropReason::Expired => "expired",
            DropReason::TooLarge => "too_large",
            DropReason::NoSubscribers => "no_subscribers",
            DropReason::Denied => "denied",
            DropReason::AwaitRelFull => "await_rel_full",
            DropReason::RetainedRefused => "retained_refused",
            DropReason::Module => "module",
        }
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub bytes_received: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub packets_received: [AtomicU64; 16],
    pub packets_sent: [AtomicU64; 16],
    /// Application messages received from clients, per QoS.
    pub messages_received: [AtomicU64; 3],
    /// Application messages sent to clients, per QoS.
    pub messages_sent: [AtomicU64; 3],
    pub messages_dropped: [AtomicU64; 9],
    pub messages_retained_stored: AtomicU64,
    pub connections: Gauge,
    pub sessions: Gauge,
    pub subscriptions: Gauge,
    pub topics: Gauge,
    pub retained: Gauge,
    /// CONNECTs refused (any reason) and connections closed for protocol errors.
    pub connects_refused: AtomicU64,
    /// Times a publisher's connection stopped reading to wait for a
    /// congested subscriber (back-pressure).
    pub backpressure_waits: AtomicU64,
    pub protocol_errors: AtomicU64,
    /// Wills taken by a module that stores them (a delayed will) whose
    /// store commit failed: held in memory only.
    pub wills_store_failed: AtomicU64,
}

impl Metrics {
    pub fn packet_received(&self, ty: u8, bytes: usize) {
        self.packets_received[usize::from(ty & 15)].fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }
    pub fn packet_sent(&self, ty: u8, bytes: usize) {
        self.packets_sent[usize::from(ty & 15)].fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }
    pub fn message_received(&self, qos: QoS) {
        self.messages_received[qos as usize].fetch_add(1, Relaxed);
    }
    pub fn message_sent(&self, qos: QoS) {
        self.messages_sent[qos as usize].fetch_add(1, Relaxed);
    }
    pub fn dropped(&self, why: DropReason) {
        self.dropped_n(why, 1);
    }
    pub fn dropped_n(&self, why: DropReason, n: u64) {
        let i = DropReason::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.messages_dropped[i].fetch_add(n, Relaxed);
    }
    pub fn dropped_count(&self, why: DropReason) -> u64 {
        let i = DropReason::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.messages_dropped[i].load(Relaxed)
    }
    pub fn dropped_total(&self) -> u64 {
        self.messages_dropped.iter().map(|c| c.load(Relaxed)).sum()
    }
}
