//! Why a store did not open. Every message names the file or directory;
//! the broker prints it and exits with status 2.

use portcullis_core::durable::StoreError;

use crate::engine::EngineError;
use crate::format::FormatError;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory or the file could not be created or opened.
    #[error("store directory {path}: {source}")]
    Dir { path: std::path::PathBuf, source: std::io::Error },
    /// The engine refused the file (corrupt, locked by another process, I/O).
    #[error("store {0}")]
    Engine(#[from] EngineError),
    /// The file is of a format this build does not read.
    #[error("store {0}")]
    Format(#[from] FormatError),
}

/// An engine error as a commit or a recovery reports it.
pub fn store_error(e: EngineError) -> StoreError {
    match e {
        EngineError::Full { .. } => StoreError::Full(e.to_string()),
        other => StoreError::Failed(other.to_string()),
    }
}
