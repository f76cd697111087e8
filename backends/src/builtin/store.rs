//! [`UserStore`]: one SQLite file of users and ACL rules, and the async API
//! the providers, `portcullis users` / `portcullis acl` and the admin API
//! use.
//!
//! Connections:
//!
//! * reads go through a pool of read-only connections (`readers`); in WAL
//!   mode a reader never waits for a writer and sees the last commit;
//! * writes go through one connection, behind an async mutex, each in a
//!   `BEGIN IMMEDIATE` transaction: writers in this process queue on the
//!   mutex, writers in other processes on SQLite's lock (up to
//!   `busy_timeout`), and no transaction ever has to be retried because a
//!   read lock could not be upgraded.
//!
//! Durability: `synchronous = FULL`, so a change the API reported done
//! survives a power cut.
//!
//! Opening ([`UserStore::open`]) creates the file (mode 0600; SQLite gives
//! its `-wal` and `-shm` files the same mode) and its missing directories
//! (0700), migrates the schema ([`super::schema`]) and runs SQLite's
//! `quick_check`, so a file that is not a store, is corrupt, or was written
//! by a newer release stops the broker at start with the file named,
//! instead of failing logins later.
//!
//! Changes: every write bumps the `revision` row (triggers, in the same
//! transaction); [`UserStore::changes`] publishes it, at once for writes
//! through this store and within `poll` for writes by other processes
//! ([`UserStore::watch`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use portcullis_auth::hash::HashError;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};
use tokio::sync::{watch, MappedMutexGuard, Mutex, MutexGuard};

use super::config::BuiltinConfig;
use super::schema::{self, SchemaError};

/// What the store failed at. A `Database` error is the store's failure
/// (disk, lock, corruption); the others describe the request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A value the store refuses; `field` names it (`username`, `topic`…).
    #[error("{field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("user {0:?} already exists")]
    UserExists(String),
    #[error("no user {0:?}")]
    NoSuchUser(String),
    #[error("no rule {0}")]
    NoSuchRule(i64),
    /// The file cannot be used as a store (missing, not SQLite, corrupt,
    /// foreign, too new); the message says which.
    #[error("{}: {message}", path.display())]
    Open { path: PathBuf, message: String },
    /// A row that cannot be read (written by another tool).
    #[error("stored data: {0}")]
    Corrupt(String),
    #[error("password hashing: {0}")]
    Hash(#[from] HashError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// How [`UserStore::open`] treats the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Create it when missing, migrate it (the broker at start, `users add`).
    Create,
    /// It must exist; migrate it (`users list`, `passwd`, `del`, …).
    Existing,
    /// Write nothing: when the file exists check that it is a store this
    /// release can use; when it does not, accept (`--check-config`).
    CheckOnly,
}

/// A user's stored credentials, for the auth provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub password_hash: String,
    pub superuser: bool,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("superuser", &self.superuser).finish_non_exhaustive()
    }
}

/// Narrows [`UserStore::list_users`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserFilter {
    /// Usernames containing this (case-sensitive) substring.
    pub username_contains: Option<String>,
    pub superuser: Option<bool>,
}

/// One store file (see the module documentation).
pub struct UserStore {
    path: PathBuf,
    readers: SqlitePool,
    writer_options: SqliteConnectOptions,
    /// Connected on the first write (or at open, for the migration).
    writer: Mutex<Option<SqliteConnection>>,
    revision: watch::Sender<u64>,
    /// Held from reading the revision to publishing it, so a poll that
    /// read the file before a write committed cannot publish its older
    /// value after the write published its own.
    publishing: Mutex<()>,
    /// PBKDF2 iterations of the SCRAM credentials derived when a password
    /// is set (`iteration_count`).
    pub(super) scram_iterations: u32,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("path", &self.path)
            .field("readers", &self.readers.size())
            .field("revision", &*self.revision.borrow())
            .finish_non_exhaustive()
    }
}

impl UserStore {
    /// Opens the store `cfg.path` (see [`OpenMode`]). Read connections are
    /// opened when first needed.
    pub async fn open(cfg: &BuiltinConfig, mode: OpenMode) -> Result<Arc<UserStore>, StoreError> {
        let path = cfg.path.clone();
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(false)
            .busy_timeout(cfg.busy_timeout)
            .disable_statement_logging();
        let readers = SqlitePoolOptions::new()
            .max_connections(cfg.readers)
            .min_connections(0)
            // Waiting for a free reader is not waiting for a lock.
            .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(1)))
            .connect_lazy_with(base.clone().read_only(true));
        // WAL is set once, at open, after the file proved to be a store
        // (it is then the file's own setting).
        let writer_options = base.clone().synchronous(SqliteSynchronous::Full).foreign_keys(true);
        let store = UserStore {
            path,
            readers,
            writer_options,
            writer: Mutex::new(None),
            revision: watch::Sender::new(0),
            publishing: Mutex::new(()),
            scram_iterations: cfg.iteration_count,
        };
        match mode {
            OpenMode::CheckOnly => store.check_existing(base).await?,
            OpenMode::Create | OpenMode::Existing => store.prepare(mode).await?,
        }
        Ok(Arc::new(store))
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_error(&self, message: impl std::fmt::Display) -> StoreError {
        StoreError::Open { path: self.path.clone(), message: message.to_string() }
    }

    /// SQLite's `quick_check`: `ok`, or an [`StoreError::Open`] that says
    /// what is wrong.
    async fn quick_check(&self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        let rows: Vec<String> = sqlx::query_scalar("PRAGMA quick_check")
            .fetch_all(conn)
            .await
            .map_err(|e| self.open_error(unusable(&e)))?;
        match rows.as_slice() {
            [ok] if ok == "ok" => Ok(()),
            problems => Err(self.open_error(format!("corrupt (quick_check: {})", problems.join("; ")))),
        }
    }

    /// Creates the file if asked, migrates it, checks it.
    async fn prepare(&self, mode: OpenMode) -> Result<(), StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => return Err(self.open_error("is a directory")),
            Ok(m) => warn_if_loose(&self.path, &m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && mode == OpenMode::Create => {
                create_file(&self.path).map_err(|e| self.open_error(format!("cannot create the user store: {e}")))?;
                tracing::info!(path = %self.path.display(), "user store created");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(self.open_error("no user store here (`portcullis users add` creates one)"));
            }
            Err(e) => return Err(self.open_error(e)),
        }
        // Never open the file with a descriptor of our own here: closing it
        // would drop every POSIX lock this process holds on it, including
        // those of another store's SQLite connections to the same file
        // (another process could then delete the WAL under them).
        let mut guard = self.writer.lock().await;
        let mut conn = self.writer_options.connect().await.map_err(|e| self.open_error(unusable(&e)))?;
        // Refuse another application's database or a newer store before
        // writing anything, even the journal mode.
        match schema::version(&mut conn).await.map_err(|e| self.open_error(not_a_store(e)))? {
            Some(v) if v > schema::CURRENT_VERSION => {
                return Err(self.open_error(SchemaError::TooNew { found: v, supported: schema::CURRENT_VERSION }));
            }
            _ => {}
        }
        let journal: String = sqlx::query_scalar("PRAGMA journal_mode = WAL")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| self.open_error(unusable(&e)))?;
        if !journal.eq_ignore_ascii_case("wal") {
            return Err(self.open_error(format!("cannot switch to WAL mode (journal_mode is {journal})")));
        }
        let from = schema::migrate(&mut conn).await.map_err(|e| self.open_error(not_a_store(e)))?;
        self.quick_check(&mut conn).await?;
        let revision = read_revision(&mut conn).await.map_err(|e| self.open_error(e))?;
        self.revision.send_replace(revision);
        if from != schema::CURRENT_VERSION {
            tracing::info!(path = %self.path.display(), from, to = schema::CURRENT_VERSION, "user store schema upgraded");
        }
        *guard = Some(conn);
        Ok(())
    }

    /// [`OpenMode::CheckOnly`]: reads the file if it exists, writes nothing.
    /// One plain connection (not a read-only one, which could not remove
    /// the `-wal` and `-shm` files it makes), closed at once: a store the
    /// broker does not hold open is left as it was found.
    async fn check_existing(&self, options: SqliteConnectOptions) -> Result<(), StoreError> {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.is_dir() => return Err(self.open_error("is a directory")),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.open_error(e)),
        }
        let mut conn = options.connect().await.map_err(|e| self.open_error(unusable(&e)))?;
        let checked = match schema::version(&mut conn).await.map_err(|e| self.open_error(not_a_store(e))) {
            Ok(Some(v)) if v > schema::CURRENT_VERSION => {
                Err(self.open_error(SchemaError::TooNew { found: v, supported: schema::CURRENT_VERSION }))
            }
            Ok(_) => self.quick_check(&mut conn).await,
            Err(e) => Err(e),
        };
        if let Err(error) = conn.close().await {
            tracing::debug!(path = %self.path.display(), %error, "closing the checked user store");
        }
        checked
    }

    /// The write connection, connected if it is not.
    async fn writer(&self) -> Result<MappedMutexGuard<'_, SqliteConnection>, StoreError> {
        let mut guard = self.writer.lock().await;
        if guard.is_none() {
            *guard = Some(self.writer_options.connect().await?);
        }
        MutexGuard::try_map(guard, Option::as_mut).map_err(|_| StoreError::Corrupt("writer connection lost".into()))
    }

    /// Runs one write in a `BEGIN IMMEDIATE` transaction and publishes the
    /// revision it committed.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> futures::future::BoxFuture<'c, Result<T, StoreError>>,
    {
        let mut conn = self.writer().await?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
        let out = f(&mut tx).await?;
        let revision = read_revision(&mut tx).await?;
        tx.commit().await?;
        drop(conn);
        let _publishing = self.publishing.lock().await;
        self.revision.send_if_modified(|r| std::mem::replace(r, revision) != revision);
        Ok(out)
    }

    /// Closes every connection now (the last one to the file folds the
    /// WAL back into it). For a short-lived process (`portcullis users`)
    /// before it exits; reads through this store fail afterwards.
    pub async fn close(&self) {
        if let Some(conn) = self.writer.lock().await.take() {
            if let Err(error) = conn.close().await {
                tracing::debug!(path = %self.path.display(), %error, "closing the user store's writer");
            }
        }
        self.readers.close().await;
    }

    // ----- changes -------------------------------------------------------

    /// The revision as last seen: bumped by every change to users or rules.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.revision.subscribe()
    }

    /// Reads the revision from the file now (and publishes it).
    pub async fn revision(&self) -> Result<u64, StoreError> {
        let _publishing = self.publishing.lock().await;
        let mut conn = self.readers.acquire().await?;
        let revision = read_revision(&mut conn).await?;
        self.revision.send_if_modified(|r| std::mem::replace(r, revision) != revision);
        Ok(revision)
    }

    /// Reads the revision every `every` on a background task (which holds
    /// only a `Weak` and ends with the store), so [`Self::changes`] also
    /// shows writes made by other processes. Needs a tokio runtime; does
    /// nothing without one.
    pub fn watch(self: &Arc<Self>, every: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let weak: Weak<UserStore> = Arc::downgrade(self);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut failing = false;
            loop {
                tick.tick().await;
                let Some(store) = weak.upgrade() else { return };
                match store.revision().await {
                    Ok(_) if failing => {
                        failing = false;
                        tracing::info!(path = %store.path.display(), "user store readable again");
                    }
                    Ok(_) => {}
                    Err(error) if !failing => {
                        failing = true;
                        tracing::warn!(path = %store.path.display(), %error, "user store: cannot read its revision");
                    }
                    Err(_) => {}
                }
            }
        });
    }

    /// The read pool (for the API halves in `users` and `rules`).
    pub(super) fn readers(&self) -> &SqlitePool {
        &self.readers
    }
}

/// Unix seconds now.
pub(super) fn now() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

pub(super) fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

async fn read_revision(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let v: i64 = sqlx::query_scalar("SELECT value FROM revision WHERE id = 1").fetch_one(conn).await?;
    Ok(v as u64)
}

/// Why SQLite could not use the file, as an operator reads it.
fn unusable(e: &sqlx::Error) -> String {
    let sqlx::Error::Database(d) = e else { return format!("cannot open: {e}") };
    let code = d.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0);
    let what = format!("{} (SQLite code {code})", d.message());
    match code & 0xff {
        // SQLITE_CORRUPT, SQLITE_NOTADB
        11 | 26 => format!("not a usable user store: {what}"),
        // SQLITE_PERM, SQLITE_READONLY, SQLITE_CANTOPEN: SQLite does not say why.
        3 | 8 | 14 => {
            format!("cannot open: {what}; the file and its directory must be readable and writable by this user")
        }
        _ => format!("cannot open: {what}"),
    }
}

/// What a migration error means to an operator.
fn not_a_store(e: SchemaError) -> String {
    match e {
        SchemaError::Sql(e) => unusable(&e),
        other => other.to_string(),
    }
}

/// Creates the file (0600) and its missing directories (0700).
fn create_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map(drop)
}

/// Warns when the file is readable or writable by group or others.
fn warn_if_loose(path: &Path, meta: &std::fs::Metadata) {
    use std::os::unix::fs::PermissionsExt;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"),
            "user store is accessible to group or others; chmod 600 it");
    }
}
