//! The cluster's counters, read by the broker's metric registry (`$SYS`
//! under `$SYS/brokers/<node>/cluster/…` and Prometheus alike).

use std::sync::atomic::{AtomicU64, Ordering};

use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};

/// Why a message did not cross (or was not delivered after crossing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Not connected to NATS when it was published here.
    Disconnected,
    /// The outbound queue was full (count or bytes).
    QueueFull,
    /// Its topic does not fit a NATS subject line (`max_control_line`).
    TopicTooLong,
    /// Headers and body over NATS `max_payload`.
    TooLarge,
    /// NATS refused the publish.
    PublishFailed,
    /// An inbound message that is not what a node sends.
    Malformed,
    /// An inbound copy older than the duplicate window.
    Stale,
    /// An inbound shared message for a group with no member here any more.
    NoMember,
    /// An inbound message the NATS client dropped because this node's
    /// subscription buffer was full (async-nats' "slow consumer"): after a
    /// long stall a server can deliver its backlog faster than the readers
    /// take it. Counted from the client's events, which it sends through a
    /// bounded channel and drops when that is full: a lower bound in a burst.
    SlowConsumer,
    /// Durable mode: the stream did not confirm that it stored the message
    /// (no stream, no quorum, a timeout); its publisher was told (v5 0x97,
    /// 3.x connection closed) when it waited for an acknowledgement.
    StreamFailed,
    /// Durable mode: messages the stream dropped (`durable_max_age`,
    /// `durable_max_bytes`) before this node took them, counted from the
    /// gaps in the stream's sequence when this node reads on.
    StreamExpired,
}

impl Loss {
    const ALL: [Loss; 11] = [
        Loss::Disconnected,
        Loss::QueueFull,
        Loss::TopicTooLong,
        Loss::TooLarge,
        Loss::PublishFailed,
        Loss::Malformed,
        Loss::Stale,
        Loss::NoMember,
        Loss::SlowConsumer,
        Loss::StreamFailed,
        Loss::StreamExpired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Loss::Disconnected => "disconnected",
            Loss::QueueFull => "queue_full",
            Loss::TopicTooLong => "topic_too_long",
            Loss::TooLarge => "too_large",
            Loss::PublishFailed => "publish_failed",
            Loss::Malformed => "malformed",
            Loss::Stale => "stale",
            Loss::NoMember => "no_member",
            Loss::SlowConsumer => "slow_consumer",
            Loss::StreamFailed => "stream_failed",
            Loss::StreamExpired => "stream_expired",
        }
    }
}

pub static CLUSTER_FORWARDED: Family = Family {
    name: "cluster_forwarded",
    help: "Messages published here and sent to the other nodes through NATS.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("cluster/forwarded"),
    sys_total: None,
};

pub static CLUSTER_RECEIVED: Family = Family {
    name: "cluster_received",
    help: "Messages from other nodes delivered here (after duplicates are removed).",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("cluster/received"),
    sys_total: None,
};

pub static CLUSTER_DUPLICATES: Family = Family {
    name: "cluster_duplicates",
    help: "Extra copies of a message from another node (overlapping filters here), not delivered again.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("cluster/duplicates"),
    sys_total: None,
};

pub static CLUSTER_DROPPED: Family = Family {
    name: "cluster_dropped",
    help: "Messages that did not cross between nodes, by reason.",
    kind: Kind::Counter,
    labels: &["reason"],
    sys: Some("cluster/dropped/{reason}"),
    sys_total: Some("cluster/dropped"),
};

/// The counters.
#[derive(Debug, Default)]
pub struct Counters {
    pub forwarded: AtomicU64,
    pub received: AtomicU64,
    pub duplicates: AtomicU64,
    dropped: [AtomicU64; 11],
}

impl Counters {
    pub fn dropped(&self, why: Loss) {
        self.dropped_n(why, 1);
    }

    pub fn dropped_n(&self, why: Loss, n: u64) {
        self.dropped[why as usize].fetch_add(n, Ordering::Relaxed);
    }

    pub fn dropped_count(&self, why: Loss) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }
}

impl MetricSource for Counters {
    fn collect(&self, out: &mut Scrape) {
        out.add(&CLUSTER_FORWARDED, &[], self.forwarded.load(Ordering::Relaxed));
        out.add(&CLUSTER_RECEIVED, &[], self.received.load(Ordering::Relaxed));
        out.add(&CLUSTER_DUPLICATES, &[], self.duplicates.load(Ordering::Relaxed));
        for why in Loss::ALL {
            out.add(&CLUSTER_DROPPED, &[why.as_str()], self.dropped_count(why));
        }
    }
}
