//! Portcullis as a cluster of nodes on NATS (issue 19): the groundwork.
//!
//! ```text
//! cluster/ ──► portcullis-core (topics, filters)   arrows point down only:
//!          ──► portcullis-backends::common        core never depends on cluster
//!              (Secret, TlsConfig, BuildError)
//!          ──► async-nats (the official NATS client)
//! ```
//!
//! - [`subject`]: MQTT topics and filters as NATS subjects, reversibly, one
//!   token per level (`[A-Za-z0-9_-]` kept, other bytes `=HH`, an empty
//!   level `=`), under `<prefix>.m` for plain topics and `<prefix>.s` for
//!   `$` topics so that a wildcard-first filter never sees a `$` topic;
//!   `+` → `*`, `x/#` → `x` and `x.>`; `$share/g/f` → a queue group per
//!   (group, filter).
pub mod config;
pub mod connect;
pub mod limits;
pub mod subject;
