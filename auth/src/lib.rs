//! Authentication for Portcullis.
//!
//! * [`provider`] — the [`provider::AuthProvider`] contract: Allow (with
//!   superuser flag, optional inline ACL rules and expiry), Deny with a
//!   reason, or Ignore; an `Err` is a backend failure, never a deny.
//! * [`chain`] — [`chain::AuthChain`]: providers in order, first Allow/Deny
//!   wins, per-call timeout, `on_error`, `no_match`, and a record of who
//!   decided.
//! * [`hash`] — password hash formats: constant-time verify, new hashes.
//! * [`providers`] — built-in: anonymous, client id, password file, IP.
//! * [`passwd`] — editing Mosquitto-format password files atomically.
//! * [`cache`] — [`cache::AuthCache`]: chain verdicts keyed by a keyed hash
//!   of the credentials, per-entry TTL (allow, deny, `expires_at`), single
//!   flight, optional stale-on-error; outages are never cached.
//! * [`guard`] — [`guard::BruteForceGuard`]: bans an address, or one
//!   username from an address, after repeated failed logins, and bounds
//!   the attempts in flight; outages never count.
//! * [`scram`] — SCRAM-SHA-256/512 (RFC 5802/7677) as MQTT 5 enhanced
//!   authentication: credentials, their derivation, the server exchange.
//!
//! This crate depends on `portcullis-acl` only for the rule type that an
//! auth provider may return with a user (`inline_acl`).

pub mod cache;
pub mod chain;
#[cfg(test)]
mod chain_tests;
pub mod guard;
pub mod hash;
pub mod passwd;
pub mod provider;
pub mod providers;
pub mod scram;
