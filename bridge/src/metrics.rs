//! Per-bridge counters: plain atomics behind one small struct, read into
//! the metrics registry at each scrape through [`BridgeSys`]: Prometheus
//! `portcullis_bridge_*{bridge="<name>"}` and `$SYS`
//! `$SYS/brokers/<node>/bridges/<name>/…`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};

/// One bridge's counters and gauges.
#[derive(Debug, Default)]
pub struct BridgeMetrics {
    /// 1 while connected to the remote, else 0.
    pub connected: AtomicU64,
    /// Messages received from the remote and published locally.
    pub messages_in: AtomicU64,
    /// Messages sent to the remote (QoS 1/2 counted when acknowledged).
    pub messages_out: AtomicU64,
    /// Outgoing messages waiting (queued and in flight).
    pub queued: AtomicU64,
    /// Outgoing messages dropped: queue full, or QoS 0 while the remote
    /// was away.
    pub dropped: AtomicU64,
    /// Connections made to the remote.
    pub connects: AtomicU64,
}

impl BridgeMetrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}

/// The `$SYS` values of every bridge.
#[derive(Debug)]
pub struct BridgeSys {
    pub bridges: Vec<(String, Arc<BridgeMetrics>)>,
}

const fn family(name: &'static str, help: &'static str, kind: Kind, sys: &'static str) -> Family {
    Family { name, help, kind, labels: &["bridge"], sys: Some(sys), sys_total: None }
}

/// The bridges' families, labelled with the bridge's name (from the config).
pub static FAMILIES: [Family; 6] = [
    family(
        "bridge_connected",
        "1 while the bridge is connected to its remote.",
        Kind::Gauge,
        "bridges/{bridge}/connected",
    ),
    family(
        "bridge_messages_in",
        "Messages received from the remote and published locally.",
        Kind::Counter,
        "bridges/{bridge}/messages/in",
    ),
    family(
        "bridge_messages_out",
        "Messages sent to the remote (QoS 1/2 once acknowledged).",
        Kind::Counter,
        "bridges/{bridge}/messages/out",
    ),
    family(
        "bridge_messages_queued",
        "Outgoing messages waiting (queued and in flight).",
        Kind::Gauge,
        "bridges/{bridge}/messages/queued",
    ),
    family(
        "bridge_messages_dropped",
        "Outgoing messages dropped: queue full, or QoS 0 while the remote was away.",
        Kind::Counter,
        "bridges/{bridge}/messages/dropped",
    ),
    family("bridge_connects", "Connections made to the remote.", Kind::Counter, "bridges/{bridge}/connects"),
];

impl MetricSource for BridgeSys {
    fn collect(&self, out: &mut Scrape) {
        for (name, m) in &self.bridges {
            let values = [&m.connected, &m.messages_in, &m.messages_out, &m.queued, &m.dropped, &m.connects];
            for (f, v) in FAMILIES.iter().zip(values) {
                out.add(f, &[name], v.load(Relaxed));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn families_are_valid() {
        for f in &super::FAMILIES {
            assert_eq!(f.validate(), Ok(()), "{}", f.name);
        }
    }
}
