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
    /// Write a batch; `done` completes after its group's fsync, or before
    /// it when the batch settled early (`None`: relaxed mode, already
    /// completed; strict mode, nobody waits).
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

/// A group whose delivered messages (nothing holds them, but a group
/// keeps them to the end) come to this many bytes ends: a group whose
/// commits settle as they come could otherwise hold every message of
/// `max_group_changes` changes.
const MAX_DORMANT_BYTES: usize = 8 << 20;

/// How often a lingering strict group looks for more batches.
const LINGER_POLL: Duration = Duration::from_micros(100);

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

/// A group being gathered.
struct Building<'e> {
    txn: Txn<'e>,
    failed: Option<EngineError>,
    /// Changes taken.
    size: usize,
    batches: Vec<Pending>,
    /// Strict mode: when each batch arrived.
    arrived: Vec<Instant>,
    /// No batch before this one still waits for its commit.
    first_open: usize,
    /// Commits completed before the group's write.
    early: u64,
    /// Settled commits not told yet: told together when the channel runs
    /// dry (one wake of a publisher's task for many of its commits,
    /// rather than one per commit).
    ready: Vec<Done>,
    /// Batches counted off the backlog.
    counted: usize,
}

impl Building<'_> {
    /// Applies a batch; in strict mode, completes every commit that owes
    /// nothing any more.
    fn take(&mut self, changes: Vec<Change>, done: Option<Done>, strict: bool) {
        self.size += changes.len();
        self.txn.begin_batch();
        if self.failed.is_none() {
            for c in &changes {
                if let Err(e) = self.txn.apply(c) {
                    self.failed = Some(e);
                    break;
                }
            }
        }
        self.batches.push((changes, done));
        if !strict {
            return;
        }
        self.arrived.push(Instant::now());
        if self.failed.is_some() {
            return;
        }
        let (batches, ready) = (&mut self.batches, &mut self.ready);
        self.txn.end_batch(|b| {
            if let Some(done) = batches.get_mut(b as usize).and_then(|(_, d)| d.take()) {
                ready.push(done);
            }
        });
    }

    /// Completes the settled commits, and counts the batches taken off
    /// the backlog.
    fn tell_ready(&mut self, shared: &Shared) {
        let taken = self.batches.len() - self.counted;
        if taken > 0 {
            shared.backlog.fetch_sub(taken, Ordering::Relaxed);
            self.counted = self.batches.len();
        }
        self.early += self.ready.len() as u64;
        for done in self.ready.drain(..) {
            let _ = done.send(Ok(()));
        }
    }

    /// When the oldest batch whose commit still waits arrived.
    fn oldest_open(&mut self) -> Option<Instant> {
        while self.batches.get(self.first_open).is_some_and(|(_, d)| d.is_none()) {
            self.first_open += 1;
        }
        self.arrived.get(self.first_open).copied()
    }
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
    /// Strict mode: commits completed before their group's write, their
    /// deliveries acknowledged within the group (nothing left to write).
    pub settled_early: AtomicU64,
    pub failed_groups: AtomicU64,
    pub expired_at_recovery: AtomicU64,
    /// Relaxed mode: batches accepted and not written yet.
    pub pending: AtomicUsize,
    /// Strict mode: batches sent and not taken by the writer yet (counted
    /// back when the channel runs dry, so up to a linger poll late).
    pub backlog: AtomicUsize,
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
    /// comes.
    ///
    /// Strict mode: a batch that owes nothing any more once applied (its
    /// deliveries acknowledged within the group: see [`crate::apply::Owed`])
    /// completes at once. When the channel is empty and the group still
    /// has rows to write, the writer waits for more batches until the
    /// oldest commit still waiting is `linger` old, and stops as soon as
    /// the group nets out to nothing (no write, no fsync).
    fn gather(&self, changes: Vec<Change>, done: Option<Done>, linger: Duration) -> Gathered {
        let strict = self.config.mode == SyncMode::Strict;
        let mut g = Building {
            txn: Txn::new(&*self.engine, self.disk.as_ref(), self.next_order),
            failed: None,
            size: 0,
            batches: Vec::new(),
            arrived: Vec::new(),
            first_open: 0,
            early: 0,
            ready: Vec::new(),
            counted: 0,
        };
        g.take(changes, done, strict);
        let start = Instant::now();
        let relaxed_deadline = start + self.config.sync_interval;
        let (mut carry, mut closed, mut lingered) = (None, false, Lingered::No);
        while g.size < self.config.max_group_changes && g.txn.dormant_bytes() < MAX_DORMANT_BYTES && g.failed.is_none()
        {
            let next = match self.config.mode {
                SyncMode::Relaxed => self
                    .rx
                    .recv_timeout(relaxed_deadline.saturating_duration_since(Instant::now()))
                    .map_err(|e| e == RecvTimeoutError::Disconnected),
                SyncMode::Strict => match self.rx.try_recv() {
                    Ok(j) => Ok(j),
                    Err(TryRecvError::Disconnected) => Err(true),
                    Err(TryRecvError::Empty) => {
                        g.tell_ready(&self.shared);
                        if g.txn.is_empty() {
                            if lingered != Lingered::No {
                                lingered = Lingered::Emptied;
                            }
                            break;
                        }
                        let now = Instant::now();
                        let until = g.oldest_open().unwrap_or(now) + linger;
                        if now >= until {
                            if lingered != Lingered::No {
                                lingered = Lingered::InVain;
                            }
                            break;
                        }
                        lingered = Lingered::InVain;
                        // Polled, not woken by each batch: while a group
                        // lingers, batches come at hundreds of thousands a
                        // second, and a wake for each (a futex and two
                        // context switches) cost more CPU than the writer's
                        // work on them.
                        std::thread::sleep((until - now).min(LINGER_POLL));
                        continue;
                    }
                },
            };
            match next {
                Ok(Job::Commit { changes, done }) => g.take(changes, done, strict),
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
        g.tell_ready(&self.shared);
        // Waiting paid off if commits completed early: the next group may
        // wait as long.
        if g.early > 0 && lingered == Lingered::InVain {
            lingered = Lingered::Emptied;
        }
        self.shared.settled_early.fetch_add(g.early, Ordering::Relaxed);
        let rows = match g.failed {
            Some(e) => Err(e),
            None => g.txn.finish(),
        };
        Gathered { group: g.batches, rows, carry, closed, lingered }
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
        let relaxed = self.config.mode == SyncMode::Relaxed;
        for (_, done) in group {
            match done {
                Some(done) => {
                    let _ = done.send(result.clone());
                }
                // Strict: completed early.
                None if relaxed => accepted += 1,
                None => {}
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
