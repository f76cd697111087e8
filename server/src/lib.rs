//! The Portcullis server as a library: everything the `portcullis` binary
//! runs, for it and for the management plane (`portcullis-admin`) to use.
//!
//! * [`config`] — the TOML file, its validation and the embedded defaults.
//! * [`listener`] — accept loops, one per configured listener: TCP, TLS,
//!   WebSocket, secure WebSocket, PROXY protocol.
//! * [`security`] — builds the auth/ACL chains, caches and guard from the
//!   config; [`gateway`] — the core's `Gate` over them.
//! * [`node`] — a running broker: start, reload (SIGHUP), shutdown, and
//!   `--check-config`.
//! * [`metrics`] — the node's metrics in the Prometheus text format
//!   ([`metrics::render`]), from the registry `$SYS` publishes too.
//! * [`cli`] — `passwd`, `auth check`, `acl explain`; [`explain`] — the
//!   decisions those two and the admin API's explain endpoints show;
//!   [`users_cli`] — the built-in user store offline (`users …`,
//!   `acl add|del|list`).
//! * [`plugins`] — compiled-in third-party modules (the built-in ones are
//!   `portcullis-modules`, applied from `[modules]` at start and on reload).
//! * [`logging`] — the `tracing` subscriber from `[log]`.

pub mod cli;
pub mod config;
pub mod enhanced;
pub mod explain;
pub mod gateway;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod node;
pub mod plugins;
pub mod providers;
pub mod security;
pub mod users_cli;

pub use config::Config;
pub use node::{check, ModuleState, Node, Rejected, ReloadReport, Signal, Signals, SwitchError};
