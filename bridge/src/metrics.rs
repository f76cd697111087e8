//! Per-bridge counters: plain atomics behind one small struct, read by the
//! periodic `$SYS` publication (`$SYS/brokers/<node>/bridges/<name>/…`)
//! through [`BridgeSys`], and adaptable to a typed registry later.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use portcullis_core::broker::SysSource;

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

impl SysSource for BridgeSys {
    fn sys_values(&self, out: &mut Vec<(String, String)>) {
        for (name, m) in &self.bridges {
            let mut put =
                |what: &str, v: &AtomicU64| out.push((format!("bridges/{name}/{what}"), v.load(Relaxed).to_string()));
            put("connected", &m.connected);
            put("messages/in", &m.messages_in);
            put("messages/out", &m.messages_out);
            put("messages/queued", &m.queued);
            put("messages/dropped", &m.dropped);
            put("connects", &m.connects);
        }
    }
}
