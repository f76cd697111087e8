//! Access control for Portcullis.
//!
//! * [`rule`] — an ACL rule as plain data (permission, subject, action,
//!   topic patterns, QoS/retain limits) and its pure matching function.
//! * [`provider`] — the [`provider::AclProvider`] contract: Allow, Deny or
//!   Ignore, with the rule that decided; an `Err` is a failure, never a deny.
//! * [`chain`] — [`chain::AclChain`]: providers in order, first Allow/Deny
//!   wins, per-call timeout, `on_error`, `no_match`, superuser bypass,
//!   `deny_action`, and a record of who decided.
//!
//! Rule sources (ACL TOML files, Mosquitto `acl_file`, per-device policy
//! directories) build on [`rule`] and implement [`provider::AclProvider`].

pub mod chain;
pub mod provider;
pub mod rule;
