//! Authentication providers and the auth chain.
//!
//! This crate will hold `AuthProvider`, `AuthChain`, the auth cache, password
//! hash formats and the built-in providers (anonymous, client id list, password
//! file, IP/CIDR). Until the auth pipeline lands, the broker's default gate in
//! `server/` admits anonymous clients from loopback only.
