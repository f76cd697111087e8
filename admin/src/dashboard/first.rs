//! The first administrator and the forced change of an initial secret.
//!
//! * `GET /dashboard/first-admin` — whether this request may create the
//!   first administrator: `open` only while no administrator key exists
//!   and the request comes straight from loopback (its TCP peer is a
//!   loopback address and it carries none of [`PROXY_HEADERS`]: a reverse
//!   proxy on the same host would otherwise make every network client
//!   "loopback"). Otherwise `why` says what stands in the way.
//! * `POST /dashboard/first-admin` `{"name", "secret"}` — creates that key
//!   (role administrator, its name also its id, a secret of at least 16
//!   characters) and logs in. The check that no administrator exists and
//!   the creation are one step in the key store: of two concurrent calls
//!   one wins, the other is answered 409.
//! * `POST /dashboard/password` `{"current", "new"}` — with the session's
//!   cookie and CSRF header: changes the session key's secret, which
//!   clears its "must change" flag (set on the key made from `[admin]
//!   dashboard_initial_password`, which may do nothing else until then).
//!
//! Every refusal of a creation or a change (wrong current secret, not
//! from loopback, an administrator exists) counts in the login lockout,
//! and a locked-out address is answered 429 first. Secrets are never
//! logged.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::{admit, off, open_session, sessions, SessionInfo};
use crate::access::keys::KeyError;
use crate::access::{canonical, Role};
use crate::api::api_keys::key_error;
use crate::error::ApiError;
use crate::server::PeerAddr;
use crate::Ctx;

/// Headers a reverse proxy adds; a request carrying any is not "from
/// loopback" whatever its TCP peer.
pub const PROXY_HEADERS: [&str; 3] = ["forwarded", "x-forwarded-for", "x-real-ip"];

/// Why the first administrator cannot be created from here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// It can: no administrator, straight from loopback.
    Open,
    AdminExists,
    /// The TCP peer is not a loopback address.
    NotLoopback,
    /// A proxy header is present.
    Proxied,
}

/// `GET /dashboard/first-admin`'s answer.
#[derive(Debug, Serialize)]
pub struct FirstAdminState {
    pub open: bool,
    pub why: Why,
}

fn why(ctx: &Ctx, ip: IpAddr, headers: &HeaderMap) -> Why {
    if ctx.keys.has_administrator() {
        Why::AdminExists
    } else if !ip.is_loopback() {
        Why::NotLoopback
    } else if PROXY_HEADERS.iter().any(|h| headers.contains_key(*h)) {
        Why::Proxied
    } else {
        Why::Open
    }
}

pub(crate) async fn state(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
) -> Response {
    if !ctx.node.config.admin.dashboard {
        return off();
    }
    let w = why(&ctx, canonical(peer), &headers);
    Json(FirstAdminState { open: w == Why::Open, why: w }).into_response()
}

/// `POST /dashboard/first-admin`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstAdminBody {
    /// The key's name and id.
    pub name: String,
    pub secret: String,
}

pub(crate) async fn create(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Json(body): Json<FirstAdminBody>,
) -> Response {
    let ip = match admit(&ctx, peer) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    match why(&ctx, ip, &headers) {
        Why::Open => {}
        Why::AdminExists => {
            ctx.lockout.failed(ip, &body.name);
            return already();
        }
        Why::NotLoopback | Why::Proxied => {
            ctx.lockout.failed(ip, &body.name);
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "FIRST_ADMIN_LOOPBACK_ONLY",
                "the first administrator can be created only from loopback, not through a proxy",
            )
            .into_response();
        }
    }
    match ctx.keys.create_first_admin(&body.name, body.secret.as_bytes(), false).await {
        Ok(rec) => {
            tracing::warn!(key = %rec.name, "dashboard: first administrator key created over loopback");
            open_session(&ctx, rec.name, rec.api_key, Role::Administrator, false)
        }
        Err(KeyError::AdminExists) => {
            // Lost the race to another request.
            ctx.lockout.failed(ip, &body.name);
            already()
        }
        Err(e) => key_error(e).into_response(),
    }
}

fn already() -> Response {
    ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", "an administrator key exists: log in with it").into_response()
}

/// `POST /dashboard/password`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordBody {
    pub current: String,
    pub new: String,
}

pub(crate) async fn change_password(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Json(body): Json<PasswordBody>,
) -> Response {
    let ip = match admit(&ctx, peer) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    let Some(s) = ctx.sessions.lookup(&headers, &ctx.keys) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "not logged in").into_response();
    };
    if !sessions::csrf_ok(&headers, &s.csrf) {
        return sessions::csrf_refused();
    }
    match ctx.keys.change_secret(&s.key_name, body.current.as_bytes(), body.new.as_bytes()).await {
        Ok(rec) => {
            tracing::info!(key = %rec.name, "dashboard: key secret changed");
            Json(SessionInfo { username: s.api_key, role: s.role, csrf: s.csrf, must_change: rec.must_change })
                .into_response()
        }
        Err(KeyError::WrongSecret) => {
            ctx.lockout.failed(ip, &s.api_key);
            ApiError::new(StatusCode::UNAUTHORIZED, "BAD_USERNAME_OR_PWD", "wrong current secret").into_response()
        }
        Err(e) => key_error(e).into_response(),
    }
}
