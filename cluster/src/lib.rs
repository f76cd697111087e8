//! Portcullis as one broker on several nodes, on NATS (issue 19). The
//! server starts a [`Cluster`] when `[cluster] enabled = true`; single-node
//! mode needs none of it.
//!
//! ```text
//!   server/ (starts the cluster from [cluster] and [node] name)
//!      │
//!   cluster/ ──► portcullis-core      topics and filters as validated types
//!            ──► portcullis-backends  (common only: Secret, TlsConfig, BuildError)
//!            ──► async-nats           the official NATS client
//! ```
//!
//! Arrows point down only: core never depends on cluster; the remote
//! routing seam in core is a trait that this crate implements ([`routing`]).
//!
//! # Parts
//!
//! - [`subject`]: MQTT topics and filters as NATS subjects, reversibly.
//!   One token per level: `[A-Za-z0-9_-]` kept, every other byte `=HH`
//!   (uppercase hex), an empty level a lone `=`. Plain topics live under
//!   `<prefix>.m`, `$` topics under `<prefix>.s`, so that a wildcard-first
//!   filter (mapped under `m` only) never matches a `$` topic
//!   (MQTT-4.7.2-1). `+` → `*`, `x/#` → `x` and `x.>`, `#` → `<prefix>.m.>`;
//!   `$share/g/f` → the subjects of `f` in a queue group per (g, f).
//!   `tests/subject_props.rs` proves on 100,000 random cases that MQTT
//!   matching and NATS matching of the encoded subjects agree.
//! - [`limits`]: what fits through NATS: a topic's subject within the
//!   control line (4,015 bytes with NATS' defaults), SUB lines, headers and
//!   payload within `max_payload`, the MQTT maximum packet size no larger
//!   than `max_payload`; each refusal a typed reason.
//! - [`config`]: `[cluster]` (`enabled`, `nats`, `subject_prefix`,
//!   credentials, `tls`, timeouts, the servers' `max_payload` and
//!   `max_control_line`), validated with errors naming the key.
//! - [`connect`]: async-nats options from `[cluster]`: credentials, TLS
//!   (CA, client certificate, expected server name), timeouts, the node's
//!   name, no echo.
//!
//! # Subjects in use
//!
//! Everything the cluster sends is under `<prefix>.`: `m` and `s` carry
//! messages; other roots are free for what is to come.
//!
//! - [`routing`]: the [`Cluster`], core's `RemoteRouting` on NATS: a
//!   PUBLISH forwarded once, after local routing, with no echo; one NATS
//!   subscription per distinct local filter; inbound messages delivered
//!   locally, one copy per node (a bounded duplicate window); metrics;
//!   the outbound queue flushed at a graceful stop (`Cluster::flush`).
//! - [`registry`]: the session registry in JetStream KV
//!   (`<prefix>_sessions`: client id → owner node, run, epoch, identity,
//!   expiry, persistent subscriptions), written by compare-and-set at
//!   every CONNECT; a session another node holds is taken over by
//!   request/reply on `<prefix>.ctl.<node>.takeover` (or rebuilt from the
//!   entry when that node does not answer).
//! - [`retained`]: retained messages in the KV bucket `<prefix>_retained`,
//!   written off the publish path, mirrored on every node by a watch
//!   (initial replay at start); the KV's last write wins on every node.
//! - [`members`]: the node list in KV (`<prefix>_nodes`): node slots
//!   handed out by compare-and-set, heartbeats, who runs and who stopped,
//!   `$SYS/brokers`, `cluster_nodes{status}`.
//!
//! # Not built
//!
//! - A durable cross-node mode (a JetStream stream instead of core
//!   subjects): between nodes a message is sent at most once.

pub mod config;
pub mod connect;
pub mod limits;
pub mod members;
pub mod registry;
pub mod retained;
pub mod routing;
pub mod subject;

pub use config::ClusterConfig;
pub use connect::{ConnectError, ConnectPlan};
pub use limits::{LimitError, Limits};
pub use members::Members;
pub use routing::Cluster;
pub use subject::{NatsSubscription, Prefix};
