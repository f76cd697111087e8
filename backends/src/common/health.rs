//! Per-provider backend health: up until a call fails for a reason other
//! than the answer itself, down until one succeeds. Transitions are logged
//! once each (warn going down, info coming back) and shown in `$SYS` as
//! `.../health` (1 up, 0 down).

use std::sync::atomic::{AtomicBool, Ordering};

use portcullis_core::provider::{ErrorKind, ProviderError};

#[derive(Debug)]
pub struct Health {
    kind: &'static str,
    name: String,
    up: AtomicBool,
}

impl Health {
    pub fn new(kind: &'static str, name: &str) -> Health {
        Health { kind, name: name.to_string(), up: AtomicBool::new(true) }
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The backend answered (whatever it said).
    pub fn ok(&self) {
        if !self.up.swap(true, Ordering::Relaxed) {
            tracing::info!(provider = %self.name, kind = self.kind, "backend is reachable again");
        }
    }

    /// The backend failed. Bad data in one answer (`BadResponse`) does not
    /// mark it down.
    pub fn failed(&self, e: &ProviderError) {
        if e.kind == ErrorKind::BadResponse {
            return;
        }
        if self.up.swap(false, Ordering::Relaxed) {
            tracing::warn!(provider = %self.name, kind = self.kind, error = %e, "backend is unreachable");
        }
    }

    /// Records the outcome of a call and passes it on.
    pub fn track<T>(&self, r: Result<T, ProviderError>) -> Result<T, ProviderError> {
        match &r {
            Ok(_) => self.ok(),
            Err(e) => self.failed(e),
        }
        r
    }
}
