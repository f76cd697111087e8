//! Dashboard sessions: a random token in a cookie, its SHA-256 hash kept
//! here with the key it was opened with and a CSRF token.
//!
//! At most [`MAX_SESSIONS`] are kept (when full, expired ones go first,
//! then the least recently used). A session is checked against its key at
//! every use: a key deleted, disabled, expired or given another role
//! takes effect at once.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::time::Instant;

use crate::access::keys::KeyStore;
use crate::access::Role;
use crate::error::ApiError;

/// The session cookie's name.
pub const COOKIE: &str = "portcullis_session";
/// The header that carries the CSRF token on requests that change
/// something.
pub const CSRF_HEADER: &str = "x-portcullis-csrf";
/// Sessions kept at most.
pub const MAX_SESSIONS: usize = 1024;

#[derive(Debug, Clone)]
struct Entry {
    /// The key's name (what the key store finds it by).
    key_name: String,
    /// The key's id (what was typed as the username).
    api_key: String,
    csrf: String,
    last_used: Instant,
}

/// A live session, as a request sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub key_name: String,
    pub api_key: String,
    pub role: Role,
    pub csrf: String,
    /// The key's secret must be changed before anything else (see
    /// [`crate::dashboard`]).
    pub must_change: bool,
}

/// The sessions (see the module docs).
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Entry>>,
    idle: Duration,
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The session cookie's value in `headers`, if any.
pub fn cookie_token(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

impl Sessions {
    pub fn new(idle: Duration) -> Sessions {
        Sessions { map: Mutex::new(HashMap::new()), idle }
    }

    /// Opens a session for the key `key_name` (id `api_key`); returns the
    /// cookie's token and the CSRF token.
    pub fn create(&self, key_name: String, api_key: String) -> (String, String) {
        let token = random_token();
        let csrf = random_token();
        let now = Instant::now();
        let mut map = self.map.lock();
        if map.len() >= MAX_SESSIONS {
            let idle = self.idle;
            map.retain(|_, e| e.last_used + idle > now);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.last_used).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(digest(&token), Entry { key_name, api_key, csrf: csrf.clone(), last_used: now });
        (token, csrf)
    }

    /// The live session the request's cookie names, its key still valid
    /// (and marks it used); `None` otherwise (an ended one is removed).
    pub fn lookup(&self, headers: &HeaderMap, keys: &KeyStore) -> Option<Session> {
        let id = digest(cookie_token(headers)?);
        let now = Instant::now();
        let mut map = self.map.lock();
        let entry = map.get_mut(&id)?;
        let key = keys.get(&entry.key_name).filter(|k| k.enable && !k.expired() && k.api_key == entry.api_key);
        let live = entry.last_used + self.idle > now;
        match key {
            Some(k) if live && k.role != Role::Publisher => {
                entry.last_used = now;
                Some(Session {
                    key_name: entry.key_name.clone(),
                    api_key: entry.api_key.clone(),
                    role: k.role,
                    csrf: entry.csrf.clone(),
                    must_change: k.must_change,
                })
            }
            _ => {
                map.remove(&id);
                None
            }
        }
    }

    /// Ends the session the request's cookie names.
    pub fn remove(&self, headers: &HeaderMap) {
        if let Some(t) = cookie_token(headers) {
            self.map.lock().remove(&digest(t));
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether `headers` carry `csrf` in [`CSRF_HEADER`] (constant time).
pub fn csrf_ok(headers: &HeaderMap, csrf: &str) -> bool {
    headers.get(CSRF_HEADER).is_some_and(|v| bool::from(v.as_bytes().ct_eq(csrf.as_bytes())))
}

pub fn csrf_refused() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "CSRF_TOKEN_MISSING",
        format!("a request made with the dashboard's session must carry its {CSRF_HEADER} header"),
    )
    .into_response()
}

fn path(base: &str) -> String {
    match base.ends_with('/') {
        true => base.to_string(),
        false => format!("{base}/"),
    }
}

/// The `Set-Cookie` value that opens a session (a session cookie: gone
/// when the browser closes). Not `Secure`: the API is plain HTTP (put
/// TLS in front with a proxy that adds it).
pub fn set_cookie(token: &str, base: &str) -> String {
    format!("{COOKIE}={token}; Path={}; HttpOnly; SameSite=Strict", path(base))
}

/// The `Set-Cookie` value that removes it.
pub fn clear_cookie(base: &str) -> String {
    format!("{COOKIE}=; Path={}; HttpOnly; SameSite=Strict; Max-Age=0", path(base))
}
