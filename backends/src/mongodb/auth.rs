//! The MongoDB auth provider: one document per user (EMQX 5's `mqtt_user`:
//! `password_hash`, `salt`, `is_superuser`), found by the filter.
//! No document: Ignore (after a decoy verification, so an unknown user
//! takes as long as a wrong password). A document without a usable hash:
//! an error.

use std::fmt;

use mongodb::bson::{doc, Bson, Document};
use portcullis_auth::hash::{Decoy, HashConfig};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};
use portcullis_core::gate::{ConnectInfo, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::client::Mongo;
use super::config::AuthConfig;
use super::filter::Filter;
use crate::common::password::{check_password, unknown_user};
use crate::common::template::Values;
use crate::common::BuildError;

pub struct MongoAuth {
    name: String,
    db: Mongo,
    filter: Filter,
    hash: HashConfig,
    /// Verified for unknown users (see `check_password`).
    decoy: Decoy,
    password_hash_field: String,
    salt_field: String,
    is_superuser_field: String,
}

impl fmt::Debug for MongoAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoAuth").field("name", &self.name).field("filter", &self.filter).finish_non_exhaustive()
    }
}

impl MongoAuth {
    pub async fn new(name: &str, cfg: &AuthConfig) -> Result<MongoAuth, BuildError> {
        cfg.validate()?;
        Ok(MongoAuth {
            name: name.to_string(),
            db: Mongo::new(name, &cfg.server_settings(), &cfg.collection).await?,
            filter: cfg.compiled_filter()?,
            hash: cfg.password_hash.to_hash_config()?,
            decoy: Decoy::for_config(&cfg.password_hash.to_hash_config()?),
            password_hash_field: cfg.password_hash_field.clone(),
            salt_field: cfg.salt_field.clone(),
            is_superuser_field: cfg.is_superuser_field.clone(),
        })
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        let values = Values::from_connect(info);
        let Some(filter) = self.filter.render(&values) else { return Ok(AuthAnswer::ignore()) };
        let projection = doc! {
            self.password_hash_field.as_str(): 1,
            self.salt_field.as_str(): 1,
            self.is_superuser_field.as_str(): 1,
        };
        let Some(user) = self.db.find_one(filter, projection).await? else {
            unknown_user(info, &self.decoy).await;
            return Ok(AuthAnswer::ignore());
        };
        let rule = Some(format!("mongodb {}", id(&user)));
        let stored = match user.get(&self.password_hash_field) {
            Some(Bson::String(s)) => s.as_str(),
            _ => {
                return Err(ProviderError::new(
                    ErrorKind::BadResponse,
                    format!("{}: no string field {}", id(&user), self.password_hash_field),
                ))
            }
        };
        let salt = match user.get(&self.salt_field) {
            Some(Bson::String(s)) if !s.is_empty() => Some(s.as_str()),
            _ => None,
        };
        if let Some(reason) = check_password(info, stored, salt, &self.hash, &self.decoy).await? {
            return Ok(AuthAnswer::new(AuthDecision::Deny(reason), rule));
        }
        let superuser = truthy(user.get(&self.is_superuser_field));
        Ok(AuthAnswer::new(AuthDecision::Allow { superuser, inline_acl: None, expires_at: None }, rule))
    }
}

/// The document's `_id`, for logs and `auth check` (never its contents).
pub fn id(d: &Document) -> String {
    match d.get("_id") {
        Some(Bson::ObjectId(o)) => o.to_hex(),
        Some(other) => other.to_string(),
        None => "(no _id)".to_string(),
    }
}

/// `true`, a non-zero number, or `"true"` / `"1"`.
pub fn truthy(v: Option<&Bson>) -> bool {
    match v {
        Some(Bson::Boolean(b)) => *b,
        Some(Bson::Int32(i)) => *i != 0,
        Some(Bson::Int64(i)) => *i != 0,
        Some(Bson::Double(f)) => *f != 0.0,
        Some(Bson::String(s)) => matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1"),
        _ => false,
    }
}

impl AuthProvider for MongoAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        crate::common::template::auth_inputs(self.filter.templates())
    }

    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn health(&self) -> Option<bool> {
        Some(self.db.health.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}
