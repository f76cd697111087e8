//! The key-value engine under the store, behind one small trait so that
//! the store's logic (changes → rows, reference counts, recovery) is
//! written once and the benchmark can run it on either engine.
//!
//! * [`redb`] — the engine the store ships with (see the README for the
//!   measurements that chose it).
//! * [`fjall`] — the other candidate, built only with the `bench-fjall`
//!   feature, for `cargo bench -p portcullis-store --features bench-fjall`.
//!
//! An engine applies a batch of row writes atomically (all or none), with
//! or without an fsync, and reads committed rows. It knows nothing of MQTT.

#[cfg(feature = "bench-fjall")]
pub mod fjall;
pub mod redb;

use std::path::PathBuf;

/// The tables (redb) / keyspaces (fjall) of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `format_version` and other facts about the store itself.
    Meta,
    /// client id → owner, expiry, detached-at.
    Sessions,
    /// (client id, filter) → options, subscription id.
    Subscriptions,
    /// message id → message body (written once, deleted with its last reference).
    Messages,
    /// message id → how many queue and in-flight rows reference it.
    Refs,
    /// (client id, seq) → queued delivery.
    Queue,
    /// (client id, packet id) → in-flight delivery.
    Inflight,
    /// (client id, packet id) → () : incoming QoS 2 awaiting PUBREL.
    AwaitRel,
    /// topic → retained message (its own copy).
    Retained,
    /// guard's subject key → the ban's end (Unix ms).
    Bans,
    /// (deadline Unix ms, id) → a message held by the delayed-publish module.
    Delayed,
    /// client id → the will of a persistent session's client, with its
    /// delay (format 2).
    Wills,
}

impl Table {
    pub const ALL: [Table; 12] = [
        Table::Meta,
        Table::Sessions,
        Table::Subscriptions,
        Table::Messages,
        Table::Refs,
        Table::Queue,
        Table::Inflight,
        Table::AwaitRel,
        Table::Retained,
        Table::Bans,
        Table::Delayed,
        Table::Wills,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Sessions => "sessions",
            Table::Subscriptions => "subscriptions",
            Table::Messages => "messages",
            Table::Refs => "refs",
            Table::Queue => "queue",
            Table::Inflight => "inflight",
            Table::AwaitRel => "await_rel",
            Table::Retained => "retained",
            Table::Bans => "bans",
            Table::Delayed => "delayed",
            Table::Wills => "wills",
        }
    }
}

/// What [`Engine::scan`] calls for every row (key, value).
pub type RowFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), EngineError> + 'a;

/// One row write: `Some(value)` puts, `None` deletes.
pub type Op = (Table, Vec<u8>, Option<Vec<u8>>);

/// What went wrong in the engine, classified once here.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// No space left on the device (or a quota reached).
    #[error("{file}: no space left: {detail}")]
    Full { file: PathBuf, detail: String },
    /// The engine found its files damaged.
    #[error("{file}: corrupt: {detail}")]
    Corrupt { file: PathBuf, detail: String },
    /// Another process holds the store.
    #[error("{file}: in use by another process")]
    Locked { file: PathBuf },
    /// Anything else (I/O).
    #[error("{file}: {detail}")]
    Failed { file: PathBuf, detail: String },
}

impl EngineError {
    /// Classifies an I/O error: ENOSPC and EDQUOT are "full".
    pub fn from_io(file: &std::path::Path, e: &std::io::Error) -> EngineError {
        let full = e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(28 | 122));
        let (file, detail) = (file.to_path_buf(), e.to_string());
        if full {
            EngineError::Full { file, detail }
        } else {
            EngineError::Failed { file, detail }
        }
    }
}

/// A key-value engine the store can run on.
pub trait Engine: Send + 'static {
    /// The row under `key`, if any (committed state).
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError>;
    /// Every row whose key starts with `prefix`, in key order.
    fn scan(&self, t: Table, prefix: &[u8], f: &mut RowFn<'_>) -> Result<(), EngineError>;
    /// Applies `ops` atomically; durable on return when `sync`.
    fn write(&mut self, ops: &[Op], sync: bool) -> Result<(), EngineError>;
    /// The file (or directory) to name in errors.
    fn path(&self) -> &std::path::Path;
}
