//! Access control for Portcullis.
//!
//! * [`rule`] — an ACL rule as plain data (permission, subject, action,
//!   topic patterns, QoS/retain limits) and its pure matching function;
//!   [`matching`] — the topic algorithms under it (filter match, `covers`,
//!   `overlaps`, placeholder substitution, pattern validation).
//! * [`provider`] — the [`provider::AclProvider`] contract: Allow, Deny or
//!   Ignore, with the rule that decided; an `Err` is a failure, never a deny;
//!   and whether a deny could hide inside a granted filter (then the
//!   subscription's deliveries are checked).
//! * [`chain`] — [`chain::AclChain`]: providers in order, first Allow/Deny
//!   wins, per-call timeout, `on_error`, `no_match`, superuser bypass,
//!   `deny_action`, and a record of who decided;
//!   [`chain::AclChain::delivery_check`] marks granted subscriptions a deny
//!   rule overlaps.
//! * [`cache`] — [`cache::AclCache`]: per-client decision cache in front of
//!   the chain, single-flight, dropped on disconnect and on policy reload.
//!
//! Rule sources build on [`rule`] and implement [`provider::AclProvider`]:
//!
//! * [`file`](mod@file) — an ACL file in TOML (`[[rule]]` tables); also the
//!   [`file::LoadError`] every loader reports with `file:line`.
//! * [`mosquitto`] — Mosquitto's `acl_file` format, converted to rules.
//! * [`policy_dir`] — one policy file per device (client id or username),
//!   validated, polled and hot reloaded.
//! * [`inline`] — rules an auth backend returned with the user, carried in
//!   the client's context.
//! * [`defaults`] — emqttd's shipped default rules as data, and
//!   [`defaults::StaticRules`], a provider over an in-memory rule list.

pub mod cache;
pub mod chain;
#[cfg(test)]
mod chain_tests;
pub mod defaults;
pub mod file;
pub mod inline;
pub mod matching;
pub mod mosquitto;
pub mod policy_dir;
pub mod provider;
pub mod rule;

#[cfg(test)]
mod testutil;
