//! How a store is opened: where, and how durable a commit is.
//!
//! Plain data filled in by the server from its own config section; the
//! defaults are the named functions below.

use std::path::PathBuf;
use std::time::Duration;

/// When a commit completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// After the fsync of the group commit that carried the batch: a
    /// completed commit survives `kill -9` and power loss.
    #[default]
    Strict,
    /// At once; the writer makes the batch durable within
    /// [`StoreConfig::sync_interval`] (plus one fsync's time). A crash of
    /// the process or the machine loses what was accepted in that window.
    Relaxed,
}

/// Where the store lives and how it commits.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The data directory; created 0700 if missing. The store is one file
    /// in it, `store.redb` (0600).
    pub dir: PathBuf,
    /// Strict or relaxed (see [`SyncMode`]).
    pub mode: SyncMode,
    /// Relaxed mode: the longest time between a commit and the fsync that
    /// makes it durable. Default [`default_sync_interval`].
    pub sync_interval: Duration,
    /// Relaxed mode: batches accepted but not yet written past which a
    /// commit waits for its write (back-pressure instead of unbounded
    /// memory). Default [`default_max_pending`].
    pub max_pending: usize,
    /// The most changes one group commit (one fsync) carries; more wait
    /// for the next. Default [`default_max_group_changes`].
    pub max_group_changes: usize,
    /// Strict mode: how long at most a group waits for more batches when
    /// it still has rows to write, in case the deliveries it queued are
    /// acknowledged meanwhile and it nets out to nothing (no write, no
    /// fsync: see `apply.rs`). Adaptive: a group that waited in vain halves
    /// the next one's wait (down to a sixteenth). Zero: never wait.
    /// Default [`default_max_linger`].
    pub max_linger: Duration,
    /// Verify every page checksum of the file when opening (reads the
    /// whole file once). Without it a damaged page is found when it is
    /// read. Default [`default_verify_on_open`].
    pub verify_on_open: bool,
}

pub fn default_sync_interval() -> Duration {
    Duration::from_millis(100)
}

pub fn default_max_pending() -> usize {
    100_000
}

pub fn default_max_group_changes() -> usize {
    50_000
}

pub fn default_max_linger() -> Duration {
    Duration::from_millis(2)
}

pub fn default_verify_on_open() -> bool {
    true
}

impl StoreConfig {
    /// Strict mode in `dir`, every other setting at its default.
    pub fn new(dir: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            dir: dir.into(),
            mode: SyncMode::Strict,
            sync_interval: default_sync_interval(),
            max_pending: default_max_pending(),
            max_group_changes: default_max_group_changes(),
            max_linger: default_max_linger(),
            verify_on_open: default_verify_on_open(),
        }
    }
}
