//! Who may call the API: API keys sent as HTTP Basic credentials
//! ([`keys`]), a role per key, and a lockout of addresses that fail too
//! often ([`lockout`]).
//!
//! [`require_key`] runs in front of every `/api/v5` route but
//! `/api/v5/status` (public, for health checks): a request without
//! credentials is answered 401; with wrong ones, 401 and the failure is
//! counted; from a locked-out address, 429 before the credentials are
//! looked at; with a role that does not cover the request, 403. With no
//! key configured every such request is therefore refused: there is no
//! default key or password. The roles:
//!
//! * `administrator` — everything;
//! * `viewer` — `GET` only;
//! * `publisher` — `POST /api/v5/publish` and `/api/v5/publish/bulk` only.
//!
//! Without an `Authorization` header, the dashboard's session cookie
//! stands for the key it was opened with (see [`crate::dashboard`]);
//! a request that changes something must then carry the session's CSRF
//! header, or it is answered 403.
//!
//! A key made from `[admin] dashboard_initial_password` and still
//! flagged "must change" is answered 403 `PASSWORD_CHANGE_REQUIRED` on
//! every route (Basic or session) until its secret is changed through
//! the dashboard.
//!
//! `[admin] prometheus_public = true` lets `GET` of the Prometheus paths
//! through without a key (for scrapers); off by default.

pub mod keys;
pub mod lockout;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::server::PeerAddr;
use crate::Ctx;

/// What a key may do (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Administrator,
    Viewer,
    Publisher,
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "administrator" => Some(Role::Administrator),
            "viewer" => Some(Role::Viewer),
            "publisher" => Some(Role::Publisher),
            _ => None,
        }
    }

    /// Whether this role may make a `method` request to `path`.
    pub fn permits(self, method: &Method, path: &str) -> bool {
        match self {
            Role::Administrator => true,
            Role::Viewer => method == Method::GET || method == Method::HEAD,
            Role::Publisher => method == Method::POST && crate::api::PUBLISH_PATHS.contains(&path),
        }
    }
}

/// The key a request was made with (a request extension).
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: Role,
}

/// `Basic base64(id:secret)`: the id and the secret.
pub fn basic_credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let text = value.to_str().ok()?;
    let (scheme, encoded) = text.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let colon = raw.iter().position(|b| *b == b':')?;
    let id = String::from_utf8(raw[..colon].to_vec()).ok()?;
    Some((id, raw[colon + 1..].to_vec()))
}

fn unauthorized(message: &str) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"portcullis\""));
    res
}

/// The key check in front of the API (see the module docs).
pub(crate) async fn require_key(State(ctx): State<Arc<Ctx>>, mut req: Request, next: Next) -> Response {
    // Requests come only through the server, which knows the peer: fail
    // closed otherwise.
    let Some(ConnectInfo(PeerAddr(peer))) = req.extensions().get::<ConnectInfo<PeerAddr>>().copied() else {
        return ApiError::internal("no peer address").into_response();
    };
    if ctx.node.config.admin.prometheus_public
        && req.method() == Method::GET
        && crate::api::prometheus::PATHS.contains(&req.uri().path())
    {
        return next.run(req).await;
    }
    let ip = canonical(peer);
    if let Err(left) = ctx.lockout.check(ip) {
        return locked_out(left);
    }
    let Some(value) = req.headers().get(header::AUTHORIZATION) else {
        // The dashboard's session cookie stands for the key it was opened
        // with; a request that changes something must carry its CSRF token.
        if ctx.node.config.admin.dashboard {
            if let Some(s) = ctx.sessions.lookup(req.headers(), &ctx.keys) {
                let safe = req.method() == Method::GET || req.method() == Method::HEAD;
                if !safe && !crate::dashboard::sessions::csrf_ok(req.headers(), &s.csrf) {
                    return crate::dashboard::sessions::csrf_refused();
                }
                if s.must_change {
                    return password_change_required();
                }
                if !s.role.permits(req.method(), req.uri().path()) {
                    return forbidden(s.role);
                }
                req.extensions_mut().insert(Principal { name: s.key_name, role: s.role });
                return next.run(req).await;
            }
        }
        // No Basic challenge for the dashboard (a stale cookie, or its
        // header): a browser would pop up its own login dialog.
        if crate::dashboard::sessions::cookie_token(req.headers()).is_some()
            || req.headers().contains_key(crate::dashboard::CSRF_HEADER)
        {
            return ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "not logged in (or the session ended)")
                .into_response();
        }
        return unauthorized("an API key is required (HTTP Basic: key:secret)");
    };
    let Some((id, secret)) = basic_credentials(value) else {
        ctx.lockout.failed(ip, "");
        return unauthorized("malformed Basic credentials");
    };
    let Some((name, role)) = ctx.keys.authenticate(&id, &secret) else {
        ctx.lockout.failed(ip, &id);
        return unauthorized("unknown, disabled or expired API key, or wrong secret");
    };
    if ctx.keys.get(&name).is_some_and(|k| k.must_change) {
        return password_change_required();
    }
    if !role.permits(req.method(), req.uri().path()) {
        return forbidden(role);
    }
    req.extensions_mut().insert(Principal { name, role });
    next.run(req).await
}

/// 429 for an address locked out after failed logins (API and dashboard
/// login alike), with when to try again.
pub fn locked_out(left: std::time::Duration) -> Response {
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "TOO_MANY_FAILED_LOGINS",
        "too many failed logins from this address; try again later",
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&(left.as_secs() + 1).to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

/// 403 for a key made from `dashboard_initial_password` whose secret
/// has not been changed yet: it may do nothing else.
pub fn password_change_required() -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "PASSWORD_CHANGE_REQUIRED",
        "this key's initial secret must be changed first (the dashboard asks for it at login)",
    )
    .into_response()
}

fn forbidden(role: Role) -> Response {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "FORBIDDEN",
        format!("the {role:?} role does not allow this request").to_lowercase(),
    )
    .into_response()
}

/// In front of the API on the Unix socket instead of [`require_key`]: its
/// mode (0600) already limits it to the broker's user and root, so a
/// request through it acts as an administrator without a key.
pub(crate) async fn local_administrator(mut req: Request, next: Next) -> Response {
    req.extensions_mut().insert(Principal { name: "(unix socket)".to_string(), role: Role::Administrator });
    next.run(req).await
}

/// IPv4-mapped IPv6 addresses as IPv4.
pub fn canonical(peer: SocketAddr) -> std::net::IpAddr {
    match peer.ip() {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    }
}
