//! Authentication for Portcullis.
//!
//! * [`provider`] — the [`provider::AuthProvider`] contract: Allow (with
//!   superuser flag, optional inline ACL rules and expiry), Deny with a
//!   reason, or Ignore; an `Err` is a backend failure, never a deny.
//! * [`chain`] — [`chain::AuthChain`]: providers in order, first Allow/Deny
//!   wins, per-call timeout, `on_error`, `no_match`, and a record of who
//!   decided.
//!
//! This crate depends on `portcullis-acl` only for the rule type that an
//! auth provider may return with a user (`inline_acl`).

pub mod chain;
pub mod provider;
