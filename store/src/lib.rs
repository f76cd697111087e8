//! Portcullis's embedded durable store: persistent sessions, their
//! subscriptions, queued and in-flight QoS 1/2 messages, QoS 2 state and
//! retained messages, in one redb file, behind core's
//! [`portcullis_core::durable::SessionStore`] port.
//!
//! * [`store`] — [`Store`]: open the data directory, commit, recover.
//! * [`config`] — [`StoreConfig`] and [`SyncMode`] (strict / relaxed).
//! * `writer` — the one writer thread and its group commit.
//! * `apply` — typed changes → rows; message reference counts.
//! * `recover` — everything back at start; expired and stale rows tidied.
//! * `format` — the format version and its migrations.
//! * `codec` — the bytes of every key and value, with checksums.
//! * [`engine`] — the key-value engine under it all (redb; fjall for the
//!   benchmark only).
//! * [`error`] — [`OpenError`], which names the file.
//!
//! The README beside this crate has the engine measurements, the file
//! layout, what each mode can lose, and the API the broker calls.

mod apply;
#[doc(hidden)]
pub mod bench_support;
mod codec;
pub mod config;
#[doc(hidden)]
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod format;
mod recover;
pub mod store;
mod writer;

#[cfg(test)]
mod tests;

pub use config::{StoreConfig, SyncMode};
pub use error::OpenError;
pub use store::{Store, StoreStats};
