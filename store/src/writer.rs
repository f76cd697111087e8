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
//! Relaxed mode: commits have completed already; the writer waits up to
//! `sync_interval` after a group's first batch to gather more, then writes
//! them with one fsync.
//!
//! A failed group (disk full) fails every batch in it and applies none of
//! them; the next group is tried afresh.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use portcullis_core::durable::{Change, Recovered, StoreError};
use tokio::sync::oneshot;

use crate::apply::Txn;
use crate::config::{StoreConfig, SyncMode};
use crate::engine::Engine;
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

/// A batch in a group, with the commit to complete after its fsync.
type Pending = (Vec<Change>, Option<oneshot::Sender<Result<(), StoreError>>>);

/// Counters the writer keeps (read by [`crate::Store::stats`]).
#[derive(Debug, Default)]
pub struct Shared {
    pub batches: AtomicU64,
    pub changes: AtomicU64,
    pub groups: AtomicU64,
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
}

impl Writer {
    pub fn run(mut self) {
        let mut carry: Option<Job> = None;
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
            let mut size = changes.len();
            let mut group = vec![(changes, done)];
            let deadline = match self.config.mode {
                SyncMode::Strict => None,
                SyncMode::Relaxed => Some(Instant::now() + self.config.sync_interval),
            };
            let mut closed = false;
            while size < self.config.max_group_changes {
                let next = match deadline {
                    None => self.rx.try_recv().map_err(|e| e == TryRecvError::Disconnected),
                    Some(d) => self
                        .rx
                        .recv_timeout(d.saturating_duration_since(Instant::now()))
                        .map_err(|e| e == RecvTimeoutError::Disconnected),
                };
                match next {
                    Ok(Job::Commit { changes, done }) => {
                        size += changes.len();
                        group.push((changes, done));
                    }
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
            self.write_group(group);
            if closed {
                return;
            }
        }
    }

    fn write_group(&mut self, group: Vec<Pending>) {
        let batches = group.len();
        let changes: usize = group.iter().map(|(c, _)| c.len()).sum();
        let result = self.write(&group);
        let s = &self.shared;
        match &result {
            Ok(()) => {
                s.groups.fetch_add(1, Ordering::Relaxed);
                s.batches.fetch_add(batches as u64, Ordering::Relaxed);
                s.changes.fetch_add(changes as u64, Ordering::Relaxed);
                s.set_failure(None);
            }
            Err(e) => {
                s.failed_groups.fetch_add(1, Ordering::Relaxed);
                s.set_failure(Some(e.clone()));
            }
        }
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

    fn write(&mut self, group: &[Pending]) -> Result<(), StoreError> {
        let mut txn = Txn::new(&*self.engine, self.next_order);
        for (changes, _) in group {
            for c in changes {
                txn.apply(c).map_err(store_error)?;
            }
        }
        let (ops, next_order) = txn.finish().map_err(store_error)?;
        self.engine.write(&ops, true).map_err(store_error)?;
        self.next_order = next_order;
        Ok(())
    }

    fn recover(&mut self) -> Result<Recovered, StoreError> {
        let r = crate::recover::recover(&*self.engine).map_err(store_error)?;
        if !r.repairs.is_empty() {
            self.engine.write(&r.repairs, true).map_err(store_error)?;
        }
        self.next_order = self.next_order.max(r.next_order);
        self.shared.expired_at_recovery.store(r.expired as u64, Ordering::Relaxed);
        Ok(r.recovered)
    }
}
