//! The delayed module's metrics: `portcullis_delayed_messages`,
//! `portcullis_delayed_bytes`, `portcullis_delayed_published_total`,
//! `portcullis_delayed_dropped_total`; in `$SYS`
//! `modules/delayed/{count,bytes,published,dropped}`.
//!
//! One [`DelayedSys`] per broker, registered once (the broker keeps its
//! sources for good) and pointed at the running instance by a `Weak`: it
//! does not keep a disabled module alive, and reports nothing for it (the
//! `$SYS` publisher then clears the topics once, as it does for any
//! metric that goes away).
//!
//! The counters live here, not in the instance: they carry on across a
//! module switched off and on again.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};

use super::Delayed;

const fn family(name: &'static str, help: &'static str, kind: Kind, sys: &'static str) -> Family {
    Family { name, help, kind, labels: &[], sys: Some(sys), sys_total: None }
}

/// The module's families, in the order they are reported.
pub static FAMILIES: [Family; 4] = [
    family("delayed_messages", "Delayed publishes held now.", Kind::Gauge, "modules/delayed/count"),
    family("delayed_bytes", "Bytes of the delayed publishes held now.", Kind::Gauge, "modules/delayed/bytes"),
    family(
        "delayed_published",
        "Delayed messages handed to the broker at their deadline.",
        Kind::Counter,
        "modules/delayed/published",
    ),
    family(
        "delayed_dropped",
        "Delayed publishes refused or dropped (malformed, over a bound, expired, pending when switched off).",
        Kind::Counter,
        "modules/delayed/dropped",
    ),
];

/// Counters (monotonic for the life of the process).
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages handed to the broker at their deadline.
    pub published: AtomicU64,
    /// Delayed publishes refused (malformed, over a bound), and held
    /// messages dropped (expired before their deadline, or pending when
    /// the module was switched off).
    pub dropped: AtomicU64,
}

impl Stats {
    pub fn dropped(&self, n: u64) {
        self.dropped.fetch_add(n, Relaxed);
    }
}

/// The metric source (see the module docs).
#[derive(Debug, Default)]
pub struct DelayedSys {
    current: Mutex<Weak<Delayed>>,
    stats: Arc<Stats>,
}

impl DelayedSys {
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// Reports `module` from now on.
    pub fn point_at(&self, module: &Arc<Delayed>) {
        *self.current.lock() = Arc::downgrade(module);
    }
}

impl MetricSource for DelayedSys {
    fn collect(&self, out: &mut Scrape) {
        let module = self.current.lock().upgrade();
        let Some(module) = module else { return };
        let (count, bytes) = module.held();
        let values = [count as u64, bytes as u64, self.stats.published.load(Relaxed), self.stats.dropped.load(Relaxed)];
        for (f, v) in FAMILIES.iter().zip(values) {
            out.add(f, &[], v);
        }
    }
}
