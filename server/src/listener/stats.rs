//! Per-listener metrics, labelled with the listener's name (from the
//! config): `portcullis_listener_*` in Prometheus,
//! `$SYS/brokers/<node>/listeners/<name>/…` in `$SYS`.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};

use super::Listener;

static CONNECTIONS: Family = Family {
    name: "listener_connections",
    help: "Sockets open on a listener now, from accept to close (handshakes included).",
    kind: Kind::Gauge,
    labels: &["listener"],
    sys: Some("listeners/{listener}/connections"),
    sys_total: None,
};
static HANDSHAKE_FAILURES: Family = Family {
    name: "listener_handshake_failures",
    help: "Connections whose PROXY header, TLS handshake or WebSocket upgrade failed or timed out.",
    kind: Kind::Counter,
    labels: &["listener"],
    sys: Some("listeners/{listener}/handshake_failures"),
    sys_total: None,
};
static REFUSED: Family = Family {
    name: "listener_refused",
    help: "Sockets closed at accept because the listener's max_connections were open.",
    kind: Kind::Counter,
    labels: &["listener"],
    sys: Some("listeners/{listener}/refused"),
    sys_total: None,
};
static HANDSHAKING: Family = Family {
    name: "listener_handshaking",
    help: "Sockets accepted and still in their PROXY, TLS or WebSocket handshake.",
    kind: Kind::Gauge,
    labels: &["listener"],
    sys: None,
    sys_total: None,
};

/// Every listener's counters, registered with the broker at start.
#[derive(Debug)]
pub(super) struct ListenerStats(pub(super) Vec<Arc<Listener>>);

impl MetricSource for ListenerStats {
    fn collect(&self, out: &mut Scrape) {
        for l in &self.0 {
            out.add(&CONNECTIONS, &[&l.cfg.name], l.ctx.active.load(Relaxed) as u64);
        }
        for l in &self.0 {
            out.add(&HANDSHAKE_FAILURES, &[&l.cfg.name], l.failures.load(Relaxed));
        }
        for l in &self.0 {
            out.add(&REFUSED, &[&l.cfg.name], l.ctx.refused.load(Relaxed));
        }
        for l in &self.0 {
            out.add(&HANDSHAKING, &[&l.cfg.name], l.handshaking.load(Relaxed) as u64);
        }
    }
}
