//! The driver's client, built from the provider's settings without
//! connecting (a server that is down at start does not stop the broker),
//! and the one place driver errors become provider errors.
//!
//! The driver keeps its own pool (`pool.size`, `pool.min_idle`,
//! `pool.idle_timeout`), finds the primary of a replica set, and retries a
//! read once on a connection the server closed. Every query runs under
//! `pool.query_timeout` (also sent as `maxTimeMS`); server selection and
//! connecting are bounded by `pool.connect_timeout`.

use std::time::Duration;

use mongodb::bson::Document;
use mongodb::options::{ClientOptions, Credential, Tls, TlsOptions};
use mongodb::{Client, Collection};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::config::ServerSettings;
use crate::common::health::Health;
use crate::common::BuildError;

#[derive(Debug)]
pub struct Mongo {
    pub collection: Collection<Document>,
    pub query_timeout: Duration,
    pub health: Health,
}

impl Mongo {
    pub async fn new(name: &str, s: &ServerSettings, collection: &str) -> Result<Mongo, BuildError> {
        s.validate()?;
        // The error text of a bad URI never repeats the URI (it may hold a
        // password).
        let mut opts =
            ClientOptions::parse(&s.uri).await.map_err(|e| BuildError::invalid("uri", e.kind.to_string()))?;
        if let Some(user) = &s.username {
            let password = s.password.as_ref().map(|p| p.resolve("password")).transpose()?;
            opts.credential = Some(
                Credential::builder()
                    .username(user.clone())
                    .password(password)
                    .source(s.auth_source.clone().or_else(|| Some(s.database.clone())))
                    .build(),
            );
        }
        if s.tls.enable {
            opts.tls = Some(Tls::Enabled(
                TlsOptions::builder()
                    .ca_file_path(s.tls.ca_file.clone())
                    .cert_key_file_path(s.tls.cert_file.clone())
                    .build(),
            ));
        }
        opts.app_name = Some("portcullis".to_string());
        opts.max_pool_size = Some(s.pool.size);
        opts.min_pool_size = Some(s.pool.min_idle);
        opts.max_idle_time = s.pool.idle_timeout;
        opts.connect_timeout = Some(s.pool.connect_timeout);
        opts.server_selection_timeout = Some(s.pool.connect_timeout);
        let client = Client::with_options(opts).map_err(|e| BuildError::client("uri", e.kind.to_string()))?;
        Ok(Mongo {
            collection: client.database(&s.database).collection(collection),
            query_timeout: s.pool.query_timeout,
            health: Health::new("mongodb", name),
        })
    }

    /// One document, under the query timeout.
    pub async fn find_one(&self, filter: Document, projection: Document) -> Result<Option<Document>, ProviderError> {
        let q = self.collection.find_one(filter).projection(projection).max_time(self.query_timeout);
        self.health.track(match tokio::time::timeout(self.query_timeout, q).await {
            Err(_) => Err(ProviderError::timeout(self.query_timeout)),
            Ok(r) => r.map_err(error),
        })
    }

    /// Up to `limit` documents in `sort` order, under the query timeout;
    /// more than `limit` is an error (never a partial list).
    pub async fn find_all(&self, filter: Document, sort: Document, limit: u32) -> Result<Vec<Document>, ProviderError> {
        let fetch = async {
            let cursor = self
                .collection
                .find(filter)
                .sort(sort)
                .limit(i64::from(limit) + 1)
                .max_time(self.query_timeout)
                .await
                .map_err(error)?;
            let docs: Vec<Document> = futures::TryStreamExt::try_collect(cursor).await.map_err(error)?;
            Ok(docs)
        };
        let docs = self.health.track(match tokio::time::timeout(self.query_timeout, fetch).await {
            Err(_) => Err(ProviderError::timeout(self.query_timeout)),
            Ok(r) => r,
        })?;
        if docs.len() > limit as usize {
            return Err(ProviderError::new(ErrorKind::BadResponse, format!("more than max_rules = {limit} rules")));
        }
        Ok(docs)
    }
}

/// A driver error: the server is unreachable, refused our login, or failed
/// the query. Always an error for the chain, never a deny.
fn error(e: mongodb::error::Error) -> ProviderError {
    use mongodb::error::ErrorKind as K;
    let what = match *e.kind {
        K::Authentication { .. } => "login refused",
        K::ServerSelection { .. } => "no server available",
        K::Io(_) | K::ConnectionPoolCleared { .. } => "connection failed",
        K::Command(_) => "query failed",
        _ => "error",
    };
    ProviderError::new(ErrorKind::Unavailable, format!("mongodb {what}: {}", e.kind))
}
