//! `$SYS/brokers/<node>/modules/delayed/{count,bytes,published,dropped}`.
//!
//! One [`DelayedSys`] per broker, registered once (the broker keeps its
//! sources for good) and pointed at the running instance by a `Weak`: it
//! does not keep a disabled module alive, and reports nothing for it. The
//! first time it finds none after reporting, it publishes the four topics
//! empty, which clears their retained values (MQTT's way to say "gone"),
//! so a subscriber does not read a disabled module's last figures.
//!
//! The counters live here, not in the instance: they carry on across a
//! module switched off and on again.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use portcullis_core::broker::SysSource;

use super::Delayed;

/// The topics, relative to `$SYS/brokers/<node>/`.
pub const TOPICS: [&str; 4] =
    ["modules/delayed/count", "modules/delayed/bytes", "modules/delayed/published", "modules/delayed/dropped"];

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

/// The `$SYS` source (see the module docs).
#[derive(Debug, Default)]
pub struct DelayedSys {
    current: Mutex<Weak<Delayed>>,
    stats: Arc<Stats>,
    /// Values were published for an instance since the last clearing.
    reported: AtomicBool,
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

impl SysSource for DelayedSys {
    fn sys_values(&self, out: &mut Vec<(String, String)>) {
        let module = self.current.lock().upgrade();
        let Some(module) = module else {
            if self.reported.swap(false, Relaxed) {
                out.extend(TOPICS.iter().map(|t| (t.to_string(), String::new())));
            }
            return;
        };
        let (count, bytes) = module.held();
        let values = [count as u64, bytes as u64, self.stats.published.load(Relaxed), self.stats.dropped.load(Relaxed)];
        out.extend(TOPICS.iter().zip(values).map(|(t, v)| (t.to_string(), v.to_string())));
        self.reported.store(true, Relaxed);
    }
}
