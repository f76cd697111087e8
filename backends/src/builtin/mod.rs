//! The built-in user store: users and ACL rules in an SQLite file the
//! broker owns, for teams without LDAP or an SQL server
//! (`[auth.builtin.<name>]`, `[acl.builtin.<name>]`).
//!
//! * [`config`] — the two provider tables (one shape).
//! * [`schema`] — tables and versioned migrations (`schema_version`).
//! * [`model`] — the API's values ([`User`], [`NewRule`], [`StoredRule`],
//!   [`Page`]) and their validation.
//! * [`store`] — [`UserStore`]: opening (file 0600, migrations, integrity
//!   check), pooled reads, serialised writes, the change revision; its
//!   management API is in `users` (add, set password, set superuser,
//!   delete, get, list) and `rules` (add, get, delete, list, per username
//!   or client id).
//! * [`auth`] / [`acl`] — the providers, following the SQL backend's
//!   contract: an unknown user is Ignore after a decoy hash of equal cost,
//!   a store failure is an error (never a deny), health is tracked.
//! * [`scram`] — the store as a SCRAM credential source (credentials
//!   derived whenever a password is set, `iteration_count` PBKDF2 rounds).
//!
//! SQLite is compiled in (sqlx's `sqlite` feature bundles it), so the
//! broker needs no system library for it.
//!
//! ```no_run
//! # async fn demo() -> Result<(), portcullis_backends::builtin::StoreError> {
//! use portcullis_backends::builtin::{BuiltinConfig, NewRule, OpenMode, PageRequest, RuleSubject, UserStore};
//! use portcullis_acl::rule::{Action, Permission};
//! use portcullis_core::gate::Password;
//!
//! let cfg = BuiltinConfig { path: "data/portcullis.db".into(), ..BuiltinConfig::default() };
//! let store = UserStore::open(&cfg, OpenMode::Create).await?;
//! store.add_user("alice", &Password::new("s3cret".into()), false).await?;
//! let rule = NewRule::new(RuleSubject::Username("alice".into()), Permission::Allow, Action::All, "home/${username}/#");
//! store.add_rule(&rule).await?;
//! let page = store.list_users(&Default::default(), PageRequest::new(1, 50)).await?;
//! assert!(!page.has_next());
//! # Ok(()) }
//! ```

pub mod acl;
pub mod auth;
pub mod config;
pub mod model;
mod rules;
pub mod schema;
pub mod scram;
pub mod store;
mod users;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;
use portcullis_core::provider::{ErrorKind, ProviderError};

pub use config::{AclConfig, AuthConfig, BuiltinConfig};
pub use model::{NewRule, Page, PageRequest, RuleSubject, StoredRule, User};
pub use store::{OpenMode, StoreError, UserFilter, UserStore};

use crate::common::BuildError;

/// The provider kind.
pub const KIND: &str = "builtin";

/// Builds an auth provider on the store `cfg.path` (opened, created and
/// migrated in [`OpenMode::Create`]; only checked in
/// [`OpenMode::CheckOnly`]). The store is returned too, so the caller can
/// follow its changes ([`UserStore::changes`]).
pub async fn auth_provider(
    name: &str,
    cfg: &AuthConfig,
    mode: OpenMode,
) -> Result<(DynAuthProvider, Arc<UserStore>), BuildError> {
    let store = open(cfg, mode).await?;
    Ok((Arc::new(auth::BuiltinAuth::new(name, Arc::clone(&store))), store))
}

/// Builds an ACL provider on the store `cfg.path` (see [`auth_provider`]).
pub async fn acl_provider(
    name: &str,
    cfg: &AclConfig,
    mode: OpenMode,
) -> Result<(DynAclProvider, Arc<UserStore>), BuildError> {
    let store = open(cfg, mode).await?;
    Ok((Arc::new(acl::BuiltinAcl::new(name, Arc::clone(&store))), store))
}

/// Opens the store `cfg.path` as a SCRAM credential source (see
/// [`auth_provider`] for `mode`).
pub async fn scram_source(cfg: &BuiltinConfig, mode: OpenMode) -> Result<Arc<scram::BuiltinScram>, BuildError> {
    Ok(Arc::new(scram::BuiltinScram::new(open(cfg, mode).await?)))
}

async fn open(cfg: &BuiltinConfig, mode: OpenMode) -> Result<Arc<UserStore>, BuildError> {
    cfg.validate()?;
    let store = UserStore::open(cfg, mode).await.map_err(|e| BuildError::store("path", e.to_string()))?;
    if mode != OpenMode::CheckOnly {
        store.watch(cfg.poll);
    }
    Ok(store)
}

/// A store failure as the chain sees it: a lock held too long is a
/// timeout; an unreadable file, full disk or corruption makes the store
/// unavailable (health down); a row that cannot be read is a bad answer.
pub fn provider_error(e: &StoreError) -> ProviderError {
    let kind = match e {
        StoreError::Database(e) => sql_error_kind(e),
        StoreError::Corrupt(_) => ErrorKind::BadResponse,
        StoreError::Open { .. } => ErrorKind::Unavailable,
        StoreError::Hash(h) => return ProviderError::from(h.clone()),
        StoreError::Invalid { .. }
        | StoreError::UserExists(_)
        | StoreError::NoSuchUser(_)
        | StoreError::NoSuchRule(_) => ErrorKind::Internal,
    };
    ProviderError::new(kind, format!("user store: {e}"))
}

fn sql_error_kind(e: &sqlx::Error) -> ErrorKind {
    match e {
        sqlx::Error::Database(d) => {
            // The primary result code is the low byte of the extended one.
            let primary = d.code().and_then(|c| c.parse::<i32>().ok()).map(|c| c & 0xff);
            match primary {
                // SQLITE_BUSY, SQLITE_LOCKED: busy_timeout ran out.
                Some(5 | 6) => ErrorKind::Timeout,
                // IOERR, CORRUPT, CANTOPEN, FULL, NOTADB, READONLY.
                Some(10 | 11 | 13 | 14 | 26 | 8) => ErrorKind::Unavailable,
                _ => ErrorKind::BadResponse,
            }
        }
        sqlx::Error::PoolTimedOut => ErrorKind::Timeout,
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::PoolClosed => ErrorKind::Unavailable,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) | sqlx::Error::Decode(_) => {
            ErrorKind::BadResponse
        }
        _ => ErrorKind::Internal,
    }
}
