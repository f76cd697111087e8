//! The one writer: a thread that owns the engine, takes batches from a
//! channel and writes them in groups.
//!
//! Group commit: the writer takes a batch, then every batch already
//! waiting in the channel (up to [`StoreConfig::max_group_changes`]
//! changes), applies them all in one atomic engine write and one fsync,
//! then completes each batch's commit. While that fsync runs, new batches
//! queue up and form the next group, so the number of fsyncs per second
//! stays bounded by the disk while the batches per fsync grow with the
//! number of committers.
//!
//! Strict mode, elision: the writer applies each batch as it takes it.
//! A delivery queued, sent and acknowledged within one group leaves no
//! row (see `apply.rs`), and a group that nets out to nothing is done
//! without a write or an fsync: its commits complete at once. So when
//! the channel is empty and the group still has rows to write, the writer
//! waits up to [`StoreConfig::max_linger`] for more batches and stops as
//! soon as the group nets out (a subscriber that keeps up acknowledges
//! what the group queued within a fraction of a millisecond). The wait
//! adapts: a group that waited in vain halves the next one's (down to a
//! sixteenth), one that emptied resets it, so a workload whose writes
//! never cancel (an offline subscriber) pays little.
//!
//! Relaxed mode: commits have completed already; the writer waits up to
//! `sync_interval` after a group's first batch to gather more, then writes
//! them with one fsync (none if they net out to nothing).
//!
//! A failed group (disk full) fails every batch in it and applies none of
//! them; the next group is tried afresh.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::durable::{Change, Recovered, StoreError};
use tokio::sync::oneshot;

use crate::apply::{DiskKeys, Txn};
use crate::config::{StoreConfig, SyncMode};
use crate::engine::{Engine, EngineError, Op};
use crate::error::store_error;

/// What the writer is asked to do, in order.
pub enum Job {
    /// Write a batch; `done` completes after its group's fsync (`None`:
    /// relaxed mode, already completed).
    Commit { changes: Vec<Change>, done: Option<oneshot::Sender<Result<(), StoreError>>> },
    /// Read everything back (and tidy it).
    Recover { reply: Sender<Result<Recovered, StoreError>> },
    /// Answer once every batch sent before is durable.
    Flush { reply: Sender<Result<(), StoreError>> },
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Job::Commit { .. } => "Commit",
            Job::Recover { .. } => "Recover",
            Job::Flush { .. } => "Flush",
        })
    }
}

/// Completes a strict-mode commit.
type Done = oneshot::Sender<Result<(), StoreError>>;

/// A batch in a group, with the commit to complete after its fsync.
type Pending = (Vec<Change>, Option<Done>);

/// Whether a strict group waited for more batches, and how it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lingered {
    No,
    /// It netted out to nothing while waiting: no write, no fsync.
    Emptied,
    /// It waited and still had rows to write.
    InVain,
}

/// A group taken from the channel: its batches and the rows they come to.
struct Gathered {
    group: Vec<Pending>,
    rows: Result<(Vec<Op>, u64), EngineError>,
    /// A job that is not a commit, answered after this group.
    carry: Option<Job>,
    /// The channel closed: the writer stops after this group.
    closed: bool,
    lingered: Lingered,
}

/// Counters the writer keeps (read by [`crate::Store::stats`]).
#[derive(Debug, Default)]
pub struct Shared {
    pub batches: AtomicU64,
    pub changes: AtomicU64,
    /// Groups written (one atomic write and one fsync each).
    pub groups: AtomicU64,
    /// Groups that netted out to nothing: no write, no fsync.
    pub empty_groups: AtomicU64,
    pub failed_groups: AtomicU64,
    pub expired_at_recovery: AtomicU64,
    /// Relaxed mode: batches accepted and not written yet.
    pub pending: AtomicUsize,
    /// Relaxed mode: the last write failed (commits are refused until a
    /// write succeeds again).
    pub failure: Mutex<Option<StoreError>>,
}

impl Shared {
    pub fn failure(&self) -> Option<StoreError> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    fn set_failure(&self, e: Option<StoreError>) {
        if let Ok(mut f) = self.failure.lock() {
            *f = e;
        }
    }
}

pub struct Writer {
    pub engine: Box<dyn Engine>,
    pub rx: Receiver<Job>,
    pub config: StoreConfig,
    pub shared: Arc<Shared>,
    pub next_order: u64,
    /// The queue and in-flight keys the engine holds, known from the
    /// recovery on (`None` before it, or if they were lost track of: then
    /// each is read from the engine).
    pub disk: Option<DiskKeys>,
}

impl Writer {
    pub fn run(mut self) {
        let mut carry: Option<Job> = None;
        let mut linger = self.config.max_linger;
        loop {
            let first = match carry.take() {
                Some(j) => j,
                None => match self.rx.recv() {
                    Ok(j) => j,
                    Err(_) => return,
                },
            };
            let (changes, done) = match first {
                Job::Commit { changes, done } => (changes, done),
                Job::Recover { reply } => {
                    let _ = reply.send(self.recover());
                    continue;
                }
                Job::Flush { reply } => {
                    let _ = reply.send(Ok(()));
                    continue;
                }
            };
            let g = self.gather(changes, done, linger);
            linger = self.next_linger(linger, g.lingered);
            carry = g.carry;
            self.write_group(g.group, g.rows);
            if g.closed {
                return;
            }
        }
    }

    /// Strict mode: how long the next group may linger. A group that
    /// emptied while it lingered resets it to the most; one that lingered
    /// in vain halves it (down to a sixteenth), so that a workload whose
    /// writes never cancel (an offline subscriber) pays little.
    fn next_linger(&self, linger: Duration, lingered: Lingered) -> Duration {
        let max = self.config.max_linger;
        match lingered {
            Lingered::No => linger,
            Lingered::Emptied => max,
            Lingered::InVain => (linger / 2).max(max / 16),
        }
    }

    /// Takes `first`, then every batch already waiting (strict) or
    /// arriving within `sync_interval` (relaxed), applying each as it
    /// comes. Strict mode: when the channel is empty and the group still
    /// has rows to write, waits up to `linger` for more, and stops as soon
    /// as the group nets out to nothing (its deliveries acknowledged):
    /// such a group needs no write and no fsync.
    fn gather(&self, changes: Vec<Change>, done: Option<Done>, linger: Duration) -> Gathered {
        let mut txn = Txn::new(&*self.engine, self.disk.as_ref(), self.next_order);
        let mut failed: Option<EngineError> = None;
        let mut size = 0;
        let mut group = Vec::new();
        let mut take = |changes: Vec<Change>, done, txn: &mut Txn<'_>, failed: &mut Option<EngineError>| {
            size += changes.len();
            if failed.is_none() {
                for c in &changes {
                    if let Err(e) = txn.apply(c) {
                        *failed = Some(e);
                        break;
                    }
                }
            }
            group.push((changes, done));
            size
        };
        let mut size_now = take(changes, done, &mut txn, &mut failed);
        let start = Instant::now();
        let relaxed_deadline = start + self.config.sync_interval;
        let linger_until = start + linger;
        let (mut carry, mut closed, mut lingered) = (None, false, Lingered::No);
        while size_now < self.config.max_group_changes && failed.is_none() {
            let next = match self.config.mode {
                SyncMode::Relaxed => self
                    .rx
                    .recv_timeout(relaxed_deadline.saturating_duration_since(Instant::now()))
                    .map_err(|e| e == RecvTimeoutError::Disconnected),
                SyncMode::Strict => match self.rx.try_recv() {
                    Ok(j) => Ok(j),
                    Err(TryRecvError::Disconnected) => Err(true),
                    Err(TryRecvError::Empty) => {
                        if txn.is_empty() {
                            if lingered != Lingered::No {
                                lingered = Lingered::Emptied;
                            }
                            break;
                        }
                        let now = Instant::now();
                        if now >= linger_until {
                            if lingered != Lingered::No {
                                lingered = Lingered::InVain;
                            }
                            break;
                        }
                        lingered = Lingered::InVain;
                        self.rx.recv_timeout(linger_until - now).map_err(|e| e == RecvTimeoutError::Disconnected)
                    }
                },
            };
            match next {
                Ok(Job::Commit { changes, done }) => size_now = take(changes, done, &mut txn, &mut failed),
                Ok(other) => {
                    // Written first, then answered.
                    carry = Some(other);
                    break;
                }
                Err(disconnected) => {
                    closed = disconnected;
                    break;
                }
            }
        }
        let rows = match failed {
            Some(e) => Err(e),
            None => txn.finish(),
        };
        Gathered { group, rows, carry, closed, lingered }
    }

    fn write_group(&mut self, group: Vec<Pending>, rows: Result<(Vec<Op>, u64), EngineError>) {
        let batches = group.len();
        let changes: usize = group.iter().map(|(c, _)| c.len()).sum();
        let result = self.write(rows);
        let s = &self.shared;
        match &result {
            Ok(wrote) => {
                if *wrote {
                    s.groups.fetch_add(1, Ordering::Relaxed);
                } else {
                    s.empty_groups.fetch_add(1, Ordering::Relaxed);
                }
                s.batches.fetch_add(batches as u64, Ordering::Relaxed);
                s.changes.fetch_add(changes as u64, Ordering::Relaxed);
                s.set_failure(None);
            }
            Err(e) => {
                s.failed_groups.fetch_add(1, Ordering::Relaxed);
                s.set_failure(Some(e.clone()));
            }
        }
        let result = result.map(|_| ());
        let mut accepted = 0;
        for (_, done) in group {
            match done {
                Some(done) => {
                    let _ = done.send(result.clone());
                }
                None => accepted += 1,
            }
        }
        if accepted > 0 {
            s.pending.fetch_sub(accepted, Ordering::Relaxed);
        }
    }

    /// Writes a group's rows with one fsync; a group with none is done
    /// without touching the engine (returns false).
    fn write(&mut self, rows: Result<(Vec<Op>, u64), EngineError>) -> Result<bool, StoreError> {
        let (ops, next_order) = rows.map_err(store_error)?;
        self.next_order = next_order;
        if ops.is_empty() {
            return Ok(false);
        }
        self.engine.write(&ops, true).map_err(store_error)?;
        if self.disk.as_mut().is_some_and(|d| !d.apply(&ops)) {
            self.disk = None;
        }
        Ok(true)
    }

    fn recover(&mut self) -> Result<Recovered, StoreError> {
        let r = crate::recover::recover(&*self.engine).map_err(store_error)?;
        if !r.repairs.is_empty() {
            self.engine.write(&r.repairs, true).map_err(store_error)?;
        }
        self.next_order = self.next_order.max(r.next_order);
        self.disk = Some(DiskKeys::from_recovered(&r.recovered));
        self.shared.expired_at_recovery.store(r.expired as u64, Ordering::Relaxed);
        Ok(r.recovered)
    }
}
