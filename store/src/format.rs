//! The on-disk format's version and the migrations between versions.
//!
//! The `meta` table holds `format_version` (u32). A new store is written
//! at [`CURRENT`]. A store of an older version is migrated forward at
//! open, one step per version, each step one atomic write (a crash in the
//! middle of a migration leaves the store at the step before, and the
//! next open resumes). A store of a newer version than this build reads
//! is refused (the broker does not start) rather than misread.

use crate::codec;
use crate::engine::{Engine, EngineError, Op, Table};

/// The format this build writes.
///
/// * 1 — sessions, subscriptions, messages, queue, in-flight, QoS 2
///   state, retained, delayed publishes, guard bans.
/// * 2 — adds the `wills` table (a persistent session's will). No row of
///   version 1 changes: the step writes nothing but the version (the
///   engine creates a missing table at open). The version moves anyway so
///   that a build of version 1 refuses the store instead of ignoring its
///   wills: it would neither publish them nor delete them when a client
///   disconnects normally, and a later upgrade would then publish a will
///   that had been cancelled.
pub const CURRENT: u32 = 2;

pub const VERSION_KEY: &[u8] = b"format_version";

/// A migration from version `n` to `n + 1`: the rows to write.
pub type Migration = fn(&dyn Engine) -> Result<Vec<Op>, EngineError>;

/// A format: its version and the migrations that lead to it
/// (`migrations[i]` takes version `i + 1` to `i + 2`).
#[derive(Debug, Clone, Copy)]
pub struct Format {
    pub version: u32,
    pub migrations: &'static [Migration],
}

/// The migrations of this build, `MIGRATIONS[i]` from `i + 1` to `i + 2`.
pub static MIGRATIONS: [Migration; 1] = [v1_to_v2];

/// The format of this build.
pub const FORMAT: Format = Format { version: CURRENT, migrations: &MIGRATIONS };

/// 1 → 2: the `wills` table is new and starts empty (the engine created
/// it at open); no existing row changes.
pub fn v1_to_v2(_: &dyn Engine) -> Result<Vec<Op>, EngineError> {
    Ok(Vec::new())
}

/// Why the format check failed.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{file}: written in store format {found}, which this build does not read (it reads 1 to {supported}): use the Portcullis that wrote it, or move the data directory away")]
    Unsupported { file: std::path::PathBuf, found: u32, supported: u32 },
    #[error("{file}: holds data but no format_version: not a Portcullis store, or damaged")]
    Unversioned { file: std::path::PathBuf },
    #[error(transparent)]
    Engine(#[from] EngineError),
}

pub fn version_row(v: u32) -> Op {
    (Table::Meta, VERSION_KEY.to_vec(), Some(codec::seal(VERSION_KEY, v.to_le_bytes().to_vec())))
}

/// The stored version (`None` for a store never written to).
pub fn read_version(e: &dyn Engine) -> Result<Option<u32>, EngineError> {
    let Some(sealed) = e.get(Table::Meta, VERSION_KEY)? else { return Ok(None) };
    let bad = |d: codec::DecodeError| EngineError::Corrupt {
        file: e.path().to_path_buf(),
        detail: format!("table meta: format_version: {d}"),
    };
    let v = codec::unseal(VERSION_KEY, &sealed).map_err(bad)?;
    let mut r = codec::R(v);
    let n = r.u32().map_err(bad)?;
    r.end().map_err(bad)?;
    Ok(Some(n))
}

/// Stamps a new store, or migrates an older one to `format`.
/// Returns the version found (before any migration).
pub fn check_and_migrate(e: &mut dyn Engine, format: &Format) -> Result<u32, FormatError> {
    let file = e.path().to_path_buf();
    let Some(found) = read_version(e)? else {
        for t in Table::ALL {
            let mut any = false;
            e.scan(t, &[], &mut |_, _| {
                any = true;
                Ok(())
            })?;
            if any {
                return Err(FormatError::Unversioned { file });
            }
        }
        e.write(&[version_row(format.version)], true)?;
        return Ok(format.version);
    };
    let unsupported = || FormatError::Unsupported { file: file.clone(), found, supported: format.version };
    if found > format.version || found == 0 {
        return Err(unsupported());
    }
    for v in found..format.version {
        let step = format.migrations.get((v - 1) as usize).ok_or_else(unsupported)?;
        let mut ops = step(e)?;
        ops.push(version_row(v + 1));
        e.write(&ops, true)?;
    }
    Ok(found)
}
