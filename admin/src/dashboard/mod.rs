//! The web dashboard (issue 15): static HTML, CSS and ES modules from
//! `admin/dashboard/`, embedded in the binary ([`ASSETS`]), served at
//! `/dashboard/`, and a login that turns an API key into a session.
//!
//! The dashboard uses only the `/api/v5` API, with relative URLs, so it
//! works unchanged behind a reverse proxy under a sub-path; `[admin]
//! dashboard_base_path` only scopes the session cookie.
//!
//! Login: `POST /dashboard/login` with `{"username", "password"}` — an API
//! key and its secret (role `administrator` or `viewer`; `publisher` keys
//! are refused). There is no default account: with no key configured
//! nobody can log in. Failed logins count in the API's lockout, per
//! address. A session is a random 256-bit token in an `HttpOnly;
//! SameSite=Strict` cookie, kept server-side only as its SHA-256 hash,
//! ended by `POST /dashboard/logout` or `dashboard_session_timeout` of
//! inactivity, and whenever its key is deleted, disabled or expires.
//! The first administrator ([`first`]): while no administrator key
//! exists, the login page reached directly over loopback (no proxy
//! header) can create one; `dashboard_initial_password` makes one that
//! must change its secret before doing anything else.
//! Requests that change something (not `GET`/`HEAD`) made with the
//! cookie must also carry the session's CSRF token in [`CSRF_HEADER`]
//! (see [`sessions`]).

pub mod first;
pub mod sessions;

use std::sync::Arc;

use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::access::{canonical, locked_out, Role};
use crate::error::ApiError;
use crate::server::PeerAddr;
use crate::Ctx;

pub use sessions::{Sessions, COOKIE, CSRF_HEADER};

/// The embedded assets: path under `/dashboard/`, content type, bytes.
/// A file added to `admin/dashboard/` must be listed here (a test holds
/// the table against the directory).
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", "text/html; charset=utf-8", include_bytes!("../../dashboard/index.html")),
    ("app.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/app.js")),
    ("api.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/api.js")),
    ("pages.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/pages.js")),
    ("ui.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/ui.js")),
    ("page-overview.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-overview.js")),
    ("page-clients.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-clients.js")),
    ("page-sessions.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-sessions.js")),
    (
        "page-subscriptions.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../dashboard/page-subscriptions.js"),
    ),
    ("page-topics.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-topics.js")),
    ("page-retained.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-retained.js")),
    ("page-auth.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-auth.js")),
    ("page-explain.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-explain.js")),
    ("page-users.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-users.js")),
    ("page-banned.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-banned.js")),
    ("page-listeners.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-listeners.js")),
    ("page-modules.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-modules.js")),
    ("page-websocket.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/page-websocket.js")),
    ("style.css", "text/css; charset=utf-8", include_bytes!("../../dashboard/style.css")),
    // Vendored: uPlot 1.6.32 (MIT), the npm package's dist files as
    // published, and its licence.
    ("uPlot.iife.min.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/uPlot.iife.min.js")),
    ("uPlot.min.css", "text/css; charset=utf-8", include_bytes!("../../dashboard/uPlot.min.css")),
    ("uPlot.LICENSE", "text/plain; charset=utf-8", include_bytes!("../../dashboard/uPlot.LICENSE")),
    ("listing.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/listing.js")),
    // Vendored: MQTT.js 5.16.0 (MIT), `dist/mqtt.esm.js` of the npm
    // package `mqtt` as published (the browser build as an ES module,
    // loaded by page-websocket.js only), and its licence (LICENSE.md).
    ("mqtt.esm.js", "text/javascript; charset=utf-8", include_bytes!("../../dashboard/mqtt.esm.js")),
    ("mqtt.LICENSE", "text/plain; charset=utf-8", include_bytes!("../../dashboard/mqtt.LICENSE")),
];

/// The vendored files (not ours to hold to our own rules of style).
pub const VENDORED: &[&str] = &["uPlot.iife.min.js", "uPlot.min.css", "uPlot.LICENSE", "mqtt.esm.js", "mqtt.LICENSE"];

/// The most the embedded assets may weigh together (the binary grows by
/// about this much at most): 640 KiB. Measured when MQTT.js came in:
/// 437,669 bytes in all, of which MQTT.js's browser build 342,316 bytes
/// (334 KiB; the package ships no smaller one: `mqtt.min.js` is the same
/// size, `mqtt.js` 775 KiB) and its licence, uPlot 54,016 bytes, our own
/// files 40,066 bytes with three of the thirteen pages built. The other
/// ten, at the size of those, bring our own to about 120 KiB, so about
/// 510 KiB in all; the rest is headroom. Was 200 KiB before MQTT.js.
pub const ASSET_BUDGET: usize = 640 * 1024;

/// Nothing but this server: no inline script, no CDN, no framing.
///
/// `connect-src` also admits `ws:` and `wss:`, for the WebSocket test
/// client (page-websocket.js), which connects to the broker's WebSocket
/// listener: another port than this server's (so `'self'` does not
/// cover it), and behind a proxy possibly another host, which this
/// server cannot know when it answers. Safe because `script-src 'self'`
/// still admits only our own files (no inline script, no other origin),
/// and `connect-src` does not widen what may run, only where our own
/// script may open a WebSocket — to the URL the operator types. `fetch`
/// and XHR over http(s) stay limited to this server.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self' ws: wss:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

/// The dashboard's routes (on the TCP server only).
pub(crate) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/", get(to_dashboard))
        .route("/dashboard", get(to_dashboard_slash))
        .route("/dashboard/", get(index))
        .route("/dashboard/login", post(login))
        .route("/dashboard/logout", post(logout))
        .route("/dashboard/session", get(session))
        .route("/dashboard/first-admin", get(first::state).post(first::create))
        .route("/dashboard/password", post(first::change_password))
        .route("/dashboard/{file}", get(asset))
}

fn redirect(to: &'static str) -> Response {
    // Relative, so that it holds under any prefix a proxy adds.
    (StatusCode::FOUND, [(header::LOCATION, HeaderValue::from_static(to))]).into_response()
}

async fn to_dashboard(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.node.config.admin.dashboard {
        true => redirect("dashboard/"),
        false => off(),
    }
}

async fn to_dashboard_slash(State(ctx): State<Arc<Ctx>>) -> Response {
    match ctx.node.config.admin.dashboard {
        true => redirect("dashboard/"),
        false => off(),
    }
}

fn serve(name: &str) -> Response {
    let Some((_, ctype, body)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        return ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such dashboard file").into_response();
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(ctype)),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
        ],
        *body,
    )
        .into_response()
}

async fn index(State(ctx): State<Arc<Ctx>>) -> Response {
    if !ctx.node.config.admin.dashboard {
        return off();
    }
    serve("index.html")
}

async fn asset(State(ctx): State<Arc<Ctx>>, Path(file): Path<String>) -> Response {
    if !ctx.node.config.admin.dashboard {
        return off();
    }
    serve(&file)
}

/// The start of every dashboard request that checks a secret (login,
/// first administrator, password change): the dashboard is on and the
/// peer's address is not locked out. The address as the lockout counts it.
/// (The refusal boxed: a `Response` is large.)
pub(crate) fn admit(ctx: &Ctx, peer: std::net::SocketAddr) -> Result<std::net::IpAddr, Box<Response>> {
    if !ctx.node.config.admin.dashboard {
        return Err(Box::new(off()));
    }
    let ip = canonical(peer);
    ctx.lockout.check(ip).map_err(|left| Box::new(locked_out(left)))?;
    Ok(ip)
}

fn off() -> Response {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "the dashboard is off ([admin] dashboard = false)")
        .into_response()
}

/// `POST /dashboard/login`'s body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    /// An API key (its id).
    pub username: String,
    /// Its secret.
    pub password: String,
}

/// Who is logged in, and the token to send in [`CSRF_HEADER`].
#[derive(Debug, Serialize)]
pub struct SessionInfo {
    pub username: String,
    pub role: Role,
    pub csrf: String,
    /// The key's initial secret must be changed before anything else.
    pub must_change: bool,
}

async fn login(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Json(body): Json<LoginBody>,
) -> Response {
    let ip = match admit(&ctx, peer) {
        Ok(ip) => ip,
        Err(refused) => return *refused,
    };
    let Some((name, role)) = ctx.keys.authenticate(&body.username, body.password.as_bytes()) else {
        ctx.lockout.failed(ip, &body.username);
        return ApiError::new(StatusCode::UNAUTHORIZED, "BAD_USERNAME_OR_PWD", "wrong username or password")
            .into_response();
    };
    if role == Role::Publisher {
        return ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "a publisher key cannot log in to the dashboard")
            .into_response();
    }
    let must_change = ctx.keys.get(&name).is_some_and(|k| k.must_change);
    tracing::info!(key = %name, must_change, "dashboard login");
    open_session(&ctx, name, body.username, role, must_change)
}

/// Opens a session for a key just authenticated: its info and cookie.
pub(crate) fn open_session(ctx: &Ctx, name: String, api_key: String, role: Role, must_change: bool) -> Response {
    let (token, csrf) = ctx.sessions.create(name, api_key.clone());
    let mut res = Json(SessionInfo { username: api_key, role, csrf, must_change }).into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions::set_cookie(&token, &ctx.node.config.admin.dashboard_base_path)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

async fn session(State(ctx): State<Arc<Ctx>>, headers: HeaderMap) -> Response {
    match ctx.sessions.lookup(&headers, &ctx.keys) {
        Some(s) => Json(SessionInfo { username: s.api_key, role: s.role, csrf: s.csrf, must_change: s.must_change })
            .into_response(),
        None => ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "not logged in").into_response(),
    }
}

async fn logout(State(ctx): State<Arc<Ctx>>, req: Request) -> Response {
    let cfg = &ctx.node.config.admin;
    let Some(s) = ctx.sessions.lookup(req.headers(), &ctx.keys) else {
        return ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "not logged in").into_response();
    };
    if !sessions::csrf_ok(req.headers(), &s.csrf) {
        return sessions::csrf_refused();
    }
    ctx.sessions.remove(req.headers());
    let mut res = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&sessions::clear_cookie(&cfg.dashboard_base_path)) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

#[cfg(test)]
mod tests;
