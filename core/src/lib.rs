//! Portcullis core: everything an MQTT broker needs that is not a socket
//! listener or an identity backend.
//!
//! * [`codec`] — sans-IO MQTT 3.1 / 3.1.1 / 5.0 packets ⇄ bytes.
//! * [`topic`] — validated [`topic::TopicName`] / [`topic::TopicFilter`].
//! * [`router`] — the subscription trie, shared subscriptions.
//! * [`message`] — a message shared by every subscriber, and one delivery.
//! * [`session`] — subscriptions, bounded queue, inflight, QoS 2 state;
//!   [`owner`] — the identity a session belongs to.
//! * [`retain`] — the retained message store.
//! * [`broker`] — shared state: session registry, routing, wills, expiry.
//! * [`gate`] — the port through which every auth and ACL decision is asked;
//!   [`provider`] — the error, failure policy and metrics every provider shares;
//!   [`enhanced`] — the MQTT 5 enhanced-authentication (AUTH) exchange seam.
//! * [`admission`] — identity → authentication → session → client info,
//!   shared by every protocol; [`connection`] — the MQTT per-connection
//!   state machine over any stream; [`drain`] — a session's deliveries
//!   for a writer in another protocol.
//! * [`persist`] — session and retained snapshots across a graceful restart;
//!   [`durable`] — the session-store seam: typed changes and the port a
//!   durable store implements.
//! * [`remote`] — the remote-routing seam a cluster plugs into: forward
//!   after local routing, inbound delivery without echo, remote interest,
//!   distinct-filter edges, the session locator.
//! * [`hooks`] — typed broker events and the runner modules register on;
//!   [`introspect`] — what the management plane sees and does;
//!   [`inject`] — publishes that come from outside MQTT (HTTP publish).
//! * [`sys`] — `$SYS` topics; [`metrics`] — the counters behind them.
//! * [`settings`] — runtime settings and their defaults.
//! * [`logsafe`] — peer-supplied strings escaped and truncated for logs.
pub mod admission;
pub mod binding;
pub mod broker;
pub mod codec;
pub mod connection;
mod deadlines;
pub mod drain;
pub mod durable;
pub mod enhanced;
pub mod gate;
pub mod hooks;
pub mod inject;
pub mod introspect;
pub mod logsafe;
pub mod message;
pub mod metrics;
pub mod owner;
pub mod persist;
pub mod provider;
mod registry;
pub mod remote;
pub mod retain;
pub mod router;
pub mod session;
pub mod settings;
pub mod subscription;
pub mod sys;
pub mod topic;
pub mod units;
