//! [`Store`]: opening the data directory, and the [`SessionStore`] port
//! over the writer thread.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use portcullis_core::durable::{Change, Commit, Recovered, SessionStore, StoreError};
use tokio::sync::oneshot;

use crate::config::{StoreConfig, SyncMode};
use crate::engine::{self, Engine};
use crate::error::OpenError;
use crate::format::{self, Format};
use crate::writer::{Job, Shared, Writer};

/// Batches waiting for the writer past which the broker no longer settles
/// commits on acknowledgement (see [`SessionStore::settles`]): a few
/// milliseconds of the writer's work (it takes a few hundred thousand
/// batches a second), about a megabyte of changes.
pub const MAX_SETTLE_BACKLOG: usize = 4096;

/// The file the store keeps in its directory.
pub const FILE_NAME: &str = "store.redb";

/// Which engine to open (the store ships with redb; fjall is there for
/// the benchmark only).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    Redb,
    #[cfg(feature = "bench-fjall")]
    Fjall,
}

/// What the writer has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreStats {
    /// Batches written (one per [`SessionStore::commit`]).
    pub batches: u64,
    /// Changes written.
    pub changes: u64,
    /// Group commits written: one atomic write and one fsync each.
    pub groups: u64,
    /// Group commits that netted out to nothing (every delivery they
    /// queued was acknowledged within them): no write, no fsync.
    pub empty_groups: u64,
    /// Strict mode: commits completed before their group's write, their
    /// deliveries acknowledged within the group (nothing to write for them).
    pub settled_early: u64,
    /// Group commits that failed (every batch in them failed).
    pub failed_groups: u64,
    /// Queued deliveries dropped at recovery because they had expired.
    pub expired_at_recovery: u64,
    /// Strict mode: batches sent and not yet taken by the writer (see
    /// [`MAX_SETTLE_BACKLOG`]).
    pub backlog: u64,
}

/// The embedded durable store: a [`SessionStore`] on one redb file.
#[derive(Debug)]
pub struct Store {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    mode: SyncMode,
    max_pending: usize,
    path: PathBuf,
    /// The format version found at open (before any migration).
    found_version: u32,
}

fn stopped() -> StoreError {
    StoreError::Failed("the store's writer has stopped".into())
}

/// Creates `dir` (0700) if it is missing.
fn make_dir(dir: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::Dir { path: dir.to_path_buf(), source };
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir).map_err(err)
}

/// Creates the store file 0600 before the engine opens it, and takes
/// group and other permissions away from one that has them.
fn make_file(path: &Path) -> Result<(), OpenError> {
    let err = |source| OpenError::Dir { path: path.to_path_buf(), source };
    let mut o = fs::OpenOptions::new();
    o.read(true).write(true).create(true).truncate(false);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    let f = o.open(path).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = f.metadata().map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            f.set_permissions(fs::Permissions::from_mode(mode & 0o700)).map_err(err)?;
        }
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store in `config.dir`, migrating an older
    /// format; starts the writer thread. Call [`SessionStore::recover`]
    /// next, once, before the first commit.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        Store::open_with(config, EngineKind::Redb, &format::FORMAT)
    }

    #[doc(hidden)]
    pub fn open_with(config: StoreConfig, kind: EngineKind, format: &Format) -> Result<Store, OpenError> {
        make_dir(&config.dir)?;
        let (mut engine, path): (Box<dyn Engine>, PathBuf) = match kind {
            EngineKind::Redb => {
                let path = config.dir.join(FILE_NAME);
                make_file(&path)?;
                (Box::new(engine::redb::Redb::open(&path, config.verify_on_open)?), path)
            }
            #[cfg(feature = "bench-fjall")]
            EngineKind::Fjall => {
                let path = config.dir.join("fjall");
                (Box::new(engine::fjall::Fjall::open(&path)?), path)
            }
        };
        let found_version = format::check_and_migrate(&mut *engine, format)?;
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel();
        let writer = Writer { engine, rx, config: config.clone(), shared: shared.clone(), next_order: 0, disk: None };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run())
            .map_err(|source| OpenError::Dir { path: path.clone(), source })?;
        Ok(Store {
            tx: Some(tx),
            thread: Some(thread),
            shared,
            mode: config.mode,
            max_pending: config.max_pending,
            path,
            found_version,
        })
    }

    /// The store's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The format version the file had when opened (before migration).
    pub fn found_version(&self) -> u32 {
        self.found_version
    }

    /// Counters: batches, changes, group commits (= fsyncs), failures.
    pub fn stats(&self) -> StoreStats {
        let s = &self.shared;
        StoreStats {
            batches: s.batches.load(Ordering::Relaxed),
            changes: s.changes.load(Ordering::Relaxed),
            groups: s.groups.load(Ordering::Relaxed),
            empty_groups: s.empty_groups.load(Ordering::Relaxed),
            settled_early: s.settled_early.load(Ordering::Relaxed),
            failed_groups: s.failed_groups.load(Ordering::Relaxed),
            expired_at_recovery: s.expired_at_recovery.load(Ordering::Relaxed),
            backlog: s.backlog.load(Ordering::Relaxed) as u64,
        }
    }

    fn send(&self, job: Job) -> Result<(), StoreError> {
        let strict_commit = self.mode == SyncMode::Strict && matches!(job, Job::Commit { .. });
        if strict_commit {
            self.shared.backlog.fetch_add(1, Ordering::Relaxed);
        }
        let sent = self.tx.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped());
        if sent.is_err() && strict_commit {
            self.shared.backlog.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// Blocks until every batch committed before is durable (relaxed
    /// mode: call at shutdown). Not on an async thread.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, rx) = mpsc::channel();
        self.send(Job::Flush { reply })?;
        rx.recv().map_err(|_| stopped())?
    }

    /// Writes what is pending and stops the writer (also done on drop).
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop();
    }
}

impl SessionStore for Store {
    fn record(&self, changes: Vec<Change>) {
        // Strict: no completion to send, so no channel to allocate (a
        // send and an acknowledgement of every delivery come this way).
        if self.mode == SyncMode::Strict && !changes.is_empty() {
            let _ = self.send(Job::Commit { changes, done: None });
        } else {
            drop(self.commit(changes));
        }
    }

    fn commit(&self, changes: Vec<Change>) -> Commit {
        if changes.is_empty() {
            return Box::pin(std::future::ready(Ok(())));
        }
        // (wait for the write, counted as accepted-and-unwritten)
        let (wait, counted) = match self.mode {
            SyncMode::Strict => (true, false),
            // Relaxed, after a failed write: nothing is accepted from
            // memory any more; each commit waits for its own write (and
            // fails if that fails too), so that the first one that gets
            // written — the disk has room again — clears the failure.
            SyncMode::Relaxed if self.shared.failure().is_some() => (true, false),
            SyncMode::Relaxed => (self.shared.pending.fetch_add(1, Ordering::Relaxed) >= self.max_pending, true),
        };
        if !wait {
            if let Err(e) = self.send(Job::Commit { changes, done: None }) {
                self.shared.pending.fetch_sub(1, Ordering::Relaxed);
                return Box::pin(std::future::ready(Err(e)));
            }
            return Box::pin(std::future::ready(Ok(())));
        }
        let (done, rx) = oneshot::channel();
        if counted {
            // This one waits: it is not counted as accepted.
            self.shared.pending.fetch_sub(1, Ordering::Relaxed);
        }
        if let Err(e) = self.send(Job::Commit { changes, done: Some(done) }) {
            return Box::pin(std::future::ready(Err(e)));
        }
        Box::pin(async move { rx.await.unwrap_or_else(|_| Err(stopped())) })
    }

    /// Strict mode, while the writer keeps up: a settled commit no longer
    /// waits for the writer, so publishers are no longer paced by it;
    /// past [`MAX_SETTLE_BACKLOG`] batches waiting for it, commits wait
    /// for it again, and so do their publishers (the writer's channel
    /// stays bounded).
    fn settles(&self) -> bool {
        self.mode == SyncMode::Strict && self.shared.backlog.load(Ordering::Relaxed) < MAX_SETTLE_BACKLOG
    }

    fn recover(&self) -> Result<Recovered, StoreError> {
        let (reply, rx) = mpsc::channel();
        self.send(Job::Recover { reply })?;
        rx.recv().map_err(|_| stopped())?
    }
}
