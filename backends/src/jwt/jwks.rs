//! A JWKS endpoint's key set, kept fresh.
//!
//! - A background task fetches the set every `refresh_interval` (the first
//!   time at once); it holds the set weakly and ends with the provider.
//! - A token whose `kid` the set lacks asks for an early fetch, at most
//!   once per `min_refetch_interval` however many such tokens arrive (one
//!   fetch at a time; the others wait for it and use its result).
//! - A failed fetch (unreachable, not 200, not a key set, no usable key)
//!   keeps the last good set. Only while no set was ever fetched do
//!   tokens fail as an outage (the chain's `on_error`), never as a deny.

use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::provider::{ErrorKind, ProviderError};
use tokio::time::Instant;

use super::keys::{self, KeySet};
use crate::common::health::Health;
use crate::http::client::HttpClient;

#[derive(Debug)]
pub struct Jwks {
    client: HttpClient,
    url: String,
    refresh: Duration,
    min_refetch: Duration,
    state: Mutex<State>,
    /// One fetch at a time; waiters re-check the state after it.
    fetching: tokio::sync::Mutex<()>,
    health: Health,
}

#[derive(Debug, Default)]
struct State {
    /// The last good set.
    keys: Option<Arc<KeySet>>,
    /// When a fetch last started (rate limit of early fetches).
    last_attempt: Option<Instant>,
}

impl Jwks {
    pub fn new(name: &str, client: HttpClient, url: String, refresh: Duration, min_refetch: Duration) -> Arc<Jwks> {
        Arc::new(Jwks {
            client,
            url,
            refresh,
            min_refetch,
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            health: Health::new("jwt", name),
        })
    }

    /// Starts the periodic refresh (needs a tokio runtime).
    pub fn start(self: &Arc<Jwks>) {
        let weak: Weak<Jwks> = Arc::downgrade(self);
        let refresh = self.refresh;
        tokio::spawn(async move {
            loop {
                let Some(j) = weak.upgrade() else { return };
                j.fetch_now().await;
                drop(j);
                tokio::time::sleep(refresh).await;
            }
        });
    }

    pub fn health(&self) -> bool {
        self.health.is_up()
    }

    /// The last good set, if any.
    pub fn current(&self) -> Option<Arc<KeySet>> {
        self.state.lock().keys.clone()
    }

    /// A set for a token that found none or an unknown `kid`: fetches
    /// first when the rate limit allows, then returns the (possibly new)
    /// set; an error only while there has never been one.
    pub async fn refetch(&self, seen: Option<&Arc<KeySet>>) -> Result<Arc<KeySet>, ProviderError> {
        let _one = self.fetching.lock().await;
        let (current, due) = {
            let s = self.state.lock();
            let due = s.last_attempt.is_none_or(|t| t.elapsed() >= self.min_refetch);
            (s.keys.clone(), due)
        };
        // Someone else's fetch completed while this call waited.
        let changed = match (&current, seen) {
            (Some(c), Some(s)) => !Arc::ptr_eq(c, s),
            (Some(_), None) => true,
            _ => false,
        };
        if due && !changed {
            self.fetch_locked().await;
        }
        self.current().ok_or_else(|| {
            ProviderError::new(ErrorKind::Unavailable, "no JWKS key set fetched yet (the endpoint has not answered)")
        })
    }

    async fn fetch_now(&self) {
        let _one = self.fetching.lock().await;
        self.fetch_locked().await;
    }

    /// Fetches with the lock held; keeps the last good set on failure.
    async fn fetch_locked(&self) {
        self.state.lock().last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(set) => {
                let n = set.keys.len();
                self.health.ok();
                self.state.lock().keys = Some(Arc::new(set));
                tracing::debug!(url = %self.url, keys = n, "JWKS key set fetched");
            }
            Err(e) => {
                self.health.failed(&e);
                let kept = self.state.lock().keys.is_some();
                tracing::warn!(url = %self.url, error = %e, kept_last_good = kept, "JWKS fetch failed");
            }
        }
    }

    async fn fetch(&self) -> Result<KeySet, ProviderError> {
        let req = self
            .client
            .reqwest()
            .get(&self.url)
            .header(reqwest::header::ACCEPT, "application/json")
            .build()
            .map_err(|e| ProviderError::new(ErrorKind::Internal, format!("JWKS request: {e}")))?;
        let answer = self.client.send(req).await?;
        if answer.status != 200 {
            return Err(ProviderError::new(
                ErrorKind::Unavailable,
                format!("JWKS endpoint answered {}", answer.status),
            ));
        }
        keys::from_jwks(&answer.body).map_err(|e| ProviderError::new(ErrorKind::BadResponse, e))
    }
}
