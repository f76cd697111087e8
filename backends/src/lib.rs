//! External identity backends, one folder and cargo feature each:
//! `postgres`, `mysql`, `redis`, `ldap`, `mongodb`, `http`, `jwt` (auth
//! only: signed tokens, JWKS, introspection), and `builtin`,
//! the embedded user store (an SQLite file the broker owns). Each offers an
//! auth provider and an ACL provider built from its config table
//! (`auth_provider`, `acl_provider`), following the provider contract in
//! `portcullis-auth` and `portcullis-acl`: a backend failure is an error,
//! never a deny; an unknown user is `Ignore`; client values are bound,
//! never spliced into a query.
//!
//! What they share (placeholders, hash settings, ACL rows, health, TLS,
//! secrets, pool settings) is in [`common`]; what PostgreSQL and MySQL
//! share beyond that (config, queries, pool, providers) is in `sql`.

pub mod common;

#[cfg(feature = "builtin")]
pub mod builtin;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(feature = "ldap")]
pub mod ldap;
#[cfg(feature = "mongodb")]
pub mod mongodb;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(any(feature = "postgres", feature = "mysql"))]
pub mod sql;
