//! The broker's own metric families, read from [`Metrics`], the router,
//! the retained store and the pre-auth budget ([`collect`]).
//!
//! Their `$SYS` topics are emqttd's (`stats/clients/count`,
//! `metrics/packets/connect/received`, …); their Prometheus names are
//! `portcullis_<name>` (counters with `_total`).

use std::sync::atomic::Ordering::Relaxed;

use super::registry::{Family, Kind, Scrape};
use super::{DropReason, Metrics, PACKET_NAMES};
use crate::broker::{Broker, VERSION};

const fn gauge(name: &'static str, help: &'static str, sys: &'static str) -> Family {
    Family { name, help, kind: Kind::Gauge, labels: &[], sys: Some(sys), sys_total: None }
}

const fn counter(name: &'static str, help: &'static str, sys: &'static str) -> Family {
    Family { name, help, kind: Kind::Counter, labels: &[], sys: Some(sys), sys_total: None }
}

pub static CONNECTIONS: Family = gauge(
    "connections",
    "Connections the MQTT layer serves now, from their CONNECT to their close.",
    "stats/clients/count",
);
pub static CONNECTIONS_MAX: Family =
    gauge("connections_max", "Most connections served at once since start.", "stats/clients/max");
pub static SESSIONS: Family = gauge("sessions", "Sessions, with or without a connection.", "stats/sessions/count");
pub static SESSIONS_MAX: Family = gauge("sessions_max", "Most sessions at once since start.", "stats/sessions/max");
pub static SUBSCRIPTIONS: Family =
    gauge("subscriptions", "Subscriptions: (client, filter) pairs.", "stats/subscriptions/count");
pub static SUBSCRIPTIONS_MAX: Family =
    gauge("subscriptions_max", "Most subscriptions at once since start.", "stats/subscriptions/max");
pub static TOPICS: Family =
    gauge("topics", "Distinct topic filters with at least one subscriber.", "stats/topics/count");
pub static TOPICS_MAX: Family =
    gauge("topics_max", "Most distinct topic filters at once since start.", "stats/topics/max");
pub static RETAINED: Family = gauge("retained", "Retained messages stored now.", "stats/retained/count");
pub static RETAINED_MAX: Family =
    gauge("retained_max", "Most retained messages at once since start.", "stats/retained/max");

pub static BYTES_RECEIVED: Family =
    counter("bytes_received", "Bytes of MQTT packets received from clients.", "metrics/bytes/received");
pub static BYTES_SENT: Family = counter("bytes_sent", "Bytes of MQTT packets sent to clients.", "metrics/bytes/sent");
pub static PACKETS_RECEIVED: Family = Family {
    name: "packets_received",
    help: "MQTT packets received, by packet type.",
    kind: Kind::Counter,
    labels: &["type"],
    sys: Some("metrics/packets/{type}/received"),
    sys_total: Some("metrics/packets/received"),
};
pub static PACKETS_SENT: Family = Family {
    name: "packets_sent",
    help: "MQTT packets sent, by packet type.",
    kind: Kind::Counter,
    labels: &["type"],
    sys: Some("metrics/packets/{type}/sent"),
    sys_total: Some("metrics/packets/sent"),
};
pub static PACKETS_MALFORMED: Family = counter(
    "packets_malformed",
    "Connections closed for a malformed packet or a protocol error.",
    "metrics/packets/malformed",
);
pub static MESSAGES_RECEIVED: Family = Family {
    name: "messages_received",
    help: "Application messages received from clients, by QoS.",
    kind: Kind::Counter,
    labels: &["qos"],
    sys: Some("metrics/messages/qos{qos}/received"),
    sys_total: Some("metrics/messages/received"),
};
pub static MESSAGES_SENT: Family = Family {
    name: "messages_sent",
    help: "Application messages sent to clients, by QoS.",
    kind: Kind::Counter,
    labels: &["qos"],
    sys: Some("metrics/messages/qos{qos}/sent"),
    sys_total: Some("metrics/messages/sent"),
};
pub static MESSAGES_DROPPED: Family = Family {
    name: "messages_dropped",
    help: "Messages dropped, by reason.",
    kind: Kind::Counter,
    labels: &["reason"],
    sys: Some("metrics/messages/dropped/{reason}"),
    sys_total: Some("metrics/messages/dropped"),
};
pub static MESSAGES_RETAINED: Family =
    counter("messages_retained", "Retained messages stored (new or replacing).", "metrics/messages/retained");
pub static CONNECTS_REFUSED: Family =
    counter("connects_refused", "CONNECTs refused, for any reason.", "metrics/connects/refused");
pub static BACKPRESSURE_WAITS: Family = counter(
    "backpressure_waits",
    "Times a publisher's connection stopped reading to wait for a congested subscriber.",
    "metrics/messages/backpressure_waits",
);
pub static WILLS_STORE_FAILED: Family = counter(
    "wills_store_failed",
    "Delayed wills the durable store failed to take (held in memory only: a restart loses them).",
    "metrics/messages/wills_store_failed",
);
pub static CONNECTS_REFUSED_PER_IP: Family = counter(
    "connects_refused_per_ip",
    "Connections closed before their CONNECT: too many handshakes from one address.",
    "metrics/connects/refused_per_ip",
);
pub static CONNECTS_REFUSED_HANDSHAKE_MEMORY: Family = counter(
    "connects_refused_handshake_memory",
    "Connections closed before their CONNECT: the handshake memory budget was spent.",
    "metrics/connects/refused_handshake_memory",
);
pub static HANDSHAKE_BYTES: Family =
    gauge("handshake_bytes", "Bytes held by connections still in their CONNECT.", "stats/handshakes/bytes");

pub static UPTIME: Family = Family {
    name: "uptime_seconds",
    help: "Seconds since the broker started.",
    kind: Kind::Gauge,
    labels: &[],
    sys: None,
    sys_total: None,
};
pub static BUILD_INFO: Family = Family {
    name: "build_info",
    help: "Always 1; the version is a label.",
    kind: Kind::Gauge,
    labels: &["version"],
    sys: None,
    sys_total: None,
};

const QOS: [&str; 3] = ["0", "1", "2"];

/// Reads the broker's counters and gauges into `out`. Refreshes the
/// session and retained gauges first (they are counted, not tracked).
pub fn collect(broker: &Broker, out: &mut Scrape) {
    let m: &Metrics = &broker.metrics;
    m.retained.set(broker.retained.len() as u64);
    m.sessions.set(broker.session_count() as u64);
    for (now, max, g) in [
        (&CONNECTIONS, &CONNECTIONS_MAX, &m.connections),
        (&SESSIONS, &SESSIONS_MAX, &m.sessions),
        (&SUBSCRIPTIONS, &SUBSCRIPTIONS_MAX, &m.subscriptions),
        (&TOPICS, &TOPICS_MAX, &m.topics),
        (&RETAINED, &RETAINED_MAX, &m.retained),
    ] {
        out.add(now, &[], g.get());
        out.add(max, &[], g.max());
    }
    out.add(&BYTES_RECEIVED, &[], m.bytes_received.load(Relaxed));
    out.add(&BYTES_SENT, &[], m.bytes_sent.load(Relaxed));
    // Type 0 is reserved: a packet of that type is never counted.
    for (i, name) in PACKET_NAMES.iter().enumerate().skip(1) {
        out.add(&PACKETS_RECEIVED, &[name], m.packets_received[i].load(Relaxed));
    }
    for (i, name) in PACKET_NAMES.iter().enumerate().skip(1) {
        out.add(&PACKETS_SENT, &[name], m.packets_sent[i].load(Relaxed));
    }
    for (q, label) in QOS.iter().enumerate() {
        out.add(&MESSAGES_RECEIVED, &[label], m.messages_received[q].load(Relaxed));
    }
    for (q, label) in QOS.iter().enumerate() {
        out.add(&MESSAGES_SENT, &[label], m.messages_sent[q].load(Relaxed));
    }
    for r in DropReason::ALL {
        out.add(&MESSAGES_DROPPED, &[r.name()], m.dropped_count(r));
    }
    out.add(&MESSAGES_RETAINED, &[], m.messages_retained_stored.load(Relaxed));
    out.add(&CONNECTS_REFUSED, &[], m.connects_refused.load(Relaxed));
    out.add(&BACKPRESSURE_WAITS, &[], m.backpressure_waits.load(Relaxed));
    out.add(&WILLS_STORE_FAILED, &[], m.wills_store_failed.load(Relaxed));
    let pre = &broker.preauth;
    out.add(&CONNECTS_REFUSED_PER_IP, &[], pre.refused_per_ip());
    out.add(&CONNECTS_REFUSED_HANDSHAKE_MEMORY, &[], pre.refused_memory());
    out.add(&HANDSHAKE_BYTES, &[], pre.held_bytes() as u64);
    out.add(&PACKETS_MALFORMED, &[], m.protocol_errors.load(Relaxed));
    out.add(&UPTIME, &[], broker.started.elapsed().as_secs());
    out.add(&BUILD_INFO, &[VERSION], 1);
}
