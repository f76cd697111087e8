//! Run-time control of one bridge, for the management plane: its status
//! (state and counters) and a switch to stop and start it.
//!
//! * Stop is graceful: the state topic's `0` on the remote (retained; the
//!   will is not sent on a clean DISCONNECT) and locally, then DISCONNECT.
//!   The bridge's local session stays: messages for the remote keep being
//!   queued, bounded by `max_queued` (QoS 0 dropped and counted), as
//!   during an outage, and go out after the next start. Nothing is lost
//!   by a stop that the queue can hold.
//! * Start connects at once, then reconnects with the usual jittered
//!   backoff (from `reconnect_min`).
//!
//! The switch lives as long as the broker runs: a restart starts every
//! configured bridge again.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use crate::config::{BridgeConfig, ProtocolName};
use crate::metrics::BridgeMetrics;

/// One bridge's handle: shared by its task and the management plane.
#[derive(Debug)]
pub struct Control {
    pub name: String,
    addresses: Vec<String>,
    protocol: ProtocolName,
    pub metrics: Arc<BridgeMetrics>,
    /// The address of the current connection, or of the last attempt.
    address: Mutex<Option<String>>,
    /// `true` while the bridge should be connected (not stopped).
    running: watch::Sender<bool>,
}

/// What [`Control::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeStatus {
    pub name: String,
    /// The address of the current connection, or of the last attempt
    /// (`None` before the first).
    pub address: Option<String>,
    /// Every configured address, tried in turn.
    pub addresses: Vec<String>,
    /// `3.1`, `3.1.1` or `5`.
    pub protocol: &'static str,
    /// `false` after a stop, until a start.
    pub running: bool,
    pub connected: bool,
    pub messages_in: u64,
    pub messages_out: u64,
    pub queued: u64,
    pub dropped: u64,
    pub connects: u64,
}

impl Control {
    pub(crate) fn new(cfg: &BridgeConfig, metrics: Arc<BridgeMetrics>) -> Control {
        Control {
            name: cfg.name.clone(),
            addresses: cfg.addresses.clone(),
            protocol: cfg.protocol,
            metrics,
            address: Mutex::new(None),
            running: watch::Sender::new(true),
        }
    }

    /// Its state and counters now.
    pub fn status(&self) -> BridgeStatus {
        let m = &self.metrics;
        BridgeStatus {
            name: self.name.clone(),
            address: self.address.lock().unwrap_or_else(PoisonError::into_inner).clone(),
            addresses: self.addresses.clone(),
            protocol: match self.protocol {
                ProtocolName::V31 => "3.1",
                ProtocolName::V311 => "3.1.1",
                ProtocolName::V5 => "5",
            },
            running: *self.running.borrow(),
            connected: m.connected.load(Relaxed) == 1,
            messages_in: m.messages_in.load(Relaxed),
            messages_out: m.messages_out.load(Relaxed),
            queued: m.queued.load(Relaxed),
            dropped: m.dropped.load(Relaxed),
            connects: m.connects.load(Relaxed),
        }
    }

    /// Stops (`false`) or starts (`true`) the bridge; returns whether that
    /// changed anything. The bridge's task acts on it (see the module docs).
    pub fn set_running(&self, on: bool) -> bool {
        self.running.send_if_modified(|r| std::mem::replace(r, on) != on)
    }

    /// What the bridge's task watches.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.running.subscribe()
    }

    pub(crate) fn set_address(&self, a: &str) {
        *self.address.lock().unwrap_or_else(PoisonError::into_inner) = Some(a.to_string());
    }
}
