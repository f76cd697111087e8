//! The HTTP side of a SockJS listener: one hyper HTTP/1.1 connection per
//! socket (headers capped in bytes and count and timed, keep-alive), and
//! the routes:
//!
//! | route | methods | what |
//! |---|---|---|
//! | `<path>` , `<path>/` | GET | the greeting |
//! | `<path>/info` | GET, OPTIONS | `{"websocket":…,"origins":["*:*"],"cookie_needed":false,"entropy":…}` |
//! | `<path>/websocket` | GET (upgrade) | raw STOMP over WebSocket |
//! | `<path>/<server>/<session>/websocket` | GET (upgrade) | SockJS-framed WebSocket |
//! | `<path>/<server>/<session>/xhr` | POST, OPTIONS | polling: one frame per request |
//! | `<path>/<server>/<session>/xhr_streaming` | POST, OPTIONS | streaming: a 2 KiB prelude, then frames |
//! | `<path>/<server>/<session>/xhr_send` | POST, OPTIONS | the client's messages: 204 |
//! | `/demo`, `/demo/…` | GET, HEAD | the demo page (`demo = true` only) |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::debug;

use super::framing;
use super::session::{Next, Session};
use super::ws;
use super::SockJs;
use crate::demo;

type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Request head bytes hyper buffers (its minimum is 8 KiB).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Request header lines.
const MAX_HEADERS: usize = 64;
/// Longest `server` and `session` path segments.
const MAX_SEGMENT: usize = 128;
/// Time an `xhr_send` body has to arrive.
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// The xhr-streaming prelude: 2048 `h` and a newline, so browsers start
/// handing the response to the page.
const PRELUDE_LEN: usize = 2048;
const NO_CACHE: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";
/// The demo page's Content-Security-Policy (the demo contract's).
const DEMO_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                        connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

pub(super) async fn serve<S>(sockjs: Arc<SockJs>, io: S, peer: SocketAddr)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let timeout = sockjs.header_timeout;
    let svc = hyper::service::service_fn(move |req| {
        let sockjs = Arc::clone(&sockjs);
        async move { Ok::<_, Infallible>(route(&sockjs, req, peer).await) }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .keep_alive(true);
    if let Err(e) = builder.serve_connection(TokioIo::new(io), svc).with_upgrades().await {
        debug!(%peer, error = %e, "SockJS HTTP connection ended");
    }
}

async fn route(sockjs: &Arc<SockJs>, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    let peer = match &sockjs.client_address {
        None => peer,
        Some(find) => match find(req.headers(), peer) {
            Ok(client) => client,
            Err(e) => {
                debug!(%peer, error = %e, "SockJS request with a bad forwarding header");
                return text(StatusCode::BAD_REQUEST, "Bad Forwarded / X-Forwarded-For header.");
            }
        },
    };
    let path = req.uri().path().to_owned();
    if sockjs.cfg.demo && (path == "/demo" || path.starts_with("/demo/")) {
        return demo_route(sockjs, req.method(), &path);
    }
    let Some(rest) = path.strip_prefix(sockjs.cfg.path.as_str()) else { return not_found() };
    let segments: Vec<&str> = rest.split('/').skip(1).collect();
    let method = req.method().clone();
    match (rest, segments.as_slice()) {
        ("" | "/", _) => match method {
            Method::GET | Method::HEAD => text(StatusCode::OK, "Welcome to SockJS!\n"),
            _ => method_not_allowed("GET"),
        },
        ("/info", _) => match method {
            Method::GET => info(sockjs, req.headers()),
            Method::OPTIONS => preflight(req.headers(), "OPTIONS, GET"),
            _ => method_not_allowed("OPTIONS, GET"),
        },
        ("/websocket", _) => websocket(sockjs, req, peer, ws::Kind::Raw),
        (_, [server, session, transport]) if valid_segment(server) && valid_segment(session) => {
            let session = (*session).to_owned();
            match (*transport, method) {
                ("websocket", _) => websocket(sockjs, req, peer, ws::Kind::Framed),
                ("xhr" | "xhr_streaming" | "xhr_send", Method::OPTIONS) => preflight(req.headers(), "OPTIONS, POST"),
                ("xhr", Method::POST) => receive(sockjs, req.headers(), session, peer, false),
                ("xhr_streaming", Method::POST) => receive(sockjs, req.headers(), session, peer, true),
                ("xhr_send", Method::POST) => xhr_send(sockjs, req, session).await,
                ("xhr" | "xhr_streaming" | "xhr_send", _) => method_not_allowed("OPTIONS, POST"),
                _ => not_found(),
            }
        }
        _ => not_found(),
    }
}

/// A `server` or `session` segment: not empty, no dots, bounded.
fn valid_segment(s: &str) -> bool {
    !s.is_empty() && s.len() <= MAX_SEGMENT && !s.contains('.')
}

fn info(sockjs: &SockJs, headers: &HeaderMap) -> Response<Body> {
    let body = format!(
        "{{\"websocket\":{},\"origins\":[\"*:*\"],\"cookie_needed\":false,\"entropy\":{}}}",
        sockjs.cfg.websocket,
        rand::random::<u32>()
    );
    let mut r = full(StatusCode::OK, "application/json; charset=UTF-8", body);
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    cors(headers, r.headers_mut());
    r
}

/// The CORS preflight of `info` and the xhr endpoints.
fn preflight(headers: &HeaderMap, methods: &'static str) -> Response<Body> {
    let mut r = empty(StatusCode::NO_CONTENT);
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("31536000"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(methods));
    if let Some(v) = headers.get(header::ACCESS_CONTROL_REQUEST_HEADERS) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v.clone());
    }
    cors(headers, h);
    r
}

/// `Access-Control-Allow-Origin` (the request's origin, or `*`) and
/// `-Allow-Credentials`.
fn cors(req: &HeaderMap, h: &mut HeaderMap) {
    let origin = match req.get(header::ORIGIN) {
        Some(o) if o.as_bytes() != b"null" => o.clone(),
        _ => HeaderValue::from_static("*"),
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
}

/// A WebSocket upgrade (either kind): checked, a place in the connection
/// limit taken, 101, then the transport runs on the upgraded connection.
fn websocket(sockjs: &Arc<SockJs>, mut req: Request<Incoming>, peer: SocketAddr, kind: ws::Kind) -> Response<Body> {
    if !sockjs.cfg.websocket {
        return not_found();
    }
    if req.method() != Method::GET {
        return method_not_allowed("GET");
    }
    let h = req.headers();
    let upgrade = h.get(header::UPGRADE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return text(StatusCode::BAD_REQUEST, "Can \"Upgrade\" only to \"WebSocket\".");
    }
    let connection = h.get(header::CONNECTION).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !connection.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")) {
        return text(StatusCode::BAD_REQUEST, "\"Connection\" must be \"Upgrade\".");
    }
    if h.get(header::SEC_WEBSOCKET_VERSION).map(HeaderValue::as_bytes) != Some(b"13") {
        return text(StatusCode::BAD_REQUEST, "Unsupported WebSocket version (13 expected).");
    }
    let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key missing.");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // STOMP subprotocols on the raw endpoint, the newest the client offers.
    let protocol = match kind {
        ws::Kind::Raw => h
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter_map(|p| ["v12.stomp", "v11.stomp", "v10.stomp"].iter().position(|s| *s == p))
            .min()
            .map(|i| ["v12.stomp", "v11.stomp", "v10.stomp"][i]),
        ws::Kind::Framed => None,
    };
    let Some(slot) = sockjs.admit() else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Too many connections.");
    };
    let pipe = sockjs.open_stomp(slot, peer);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let heartbeat = sockjs.cfg.heartbeat;
    let max = usize::try_from(sockjs.cfg.max_message_bytes).unwrap_or(usize::MAX);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => ws::run(upgraded, pipe, kind, heartbeat, max).await,
            Err(e) => debug!(%peer, error = %e, "SockJS WebSocket upgrade failed"),
        }
    });
    let mut r = empty(StatusCode::SWITCHING_PROTOCOLS);
    let rh = r.headers_mut();
    rh.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    rh.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        rh.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(p) = protocol {
        rh.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
    }
    r
}

/// A receiving request (`xhr` or `xhr_streaming`): finds or makes the
/// session and answers with what it has for the client.
fn receive(sockjs: &Arc<SockJs>, headers: &HeaderMap, id: String, peer: SocketAddr, streaming: bool) -> Response<Body> {
    let session = {
        let mut map = sockjs.sessions.lock();
        match map.get(&id) {
            Some(s) => Some(Arc::clone(s)),
            // Closed sessions wait in the map for their delay, so the map
            // is capped like the sockets.
            None if map.len() >= SockJs::socket_limit(sockjs.listener.max_connections) => None,
            None => match sockjs.admit() {
                None => None,
                Some(slot) => {
                    let max = usize::try_from(sockjs.cfg.max_queued_bytes).unwrap_or(usize::MAX);
                    let s = Session::start(sockjs.open_stomp(slot, peer), max);
                    map.insert(id, Arc::clone(&s));
                    Some(s)
                }
            },
        }
    };
    let Some(session) = session else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "Too many connections.");
    };
    let mut r = match (session.attach(), streaming) {
        (Err(close), false) => js(format!("{close}\n")),
        (Err(close), true) => js(format!("{}\n{close}\n", prelude())),
        (Ok((_, true)), false) => js(format!("{}\n", framing::OPEN)),
        (Ok((rx, false)), false) => {
            let hb = sockjs.cfg.heartbeat;
            let body = futures_util::stream::once(async move {
                let chunk = match rx.next(hb).await {
                    Next::Messages(m) | Next::Close(m) => m,
                    Next::Heartbeat => framing::HEARTBEAT.to_owned(),
                };
                Ok::<_, Infallible>(Frame::data(Bytes::from(chunk + "\n")))
            });
            stream(StreamBody::new(body).boxed_unsync())
        }
        (Ok((rx, open)), true) => {
            let mut first = prelude() + "\n";
            if open {
                first.push_str(framing::OPEN);
                first.push('\n');
            }
            let hb = sockjs.cfg.heartbeat;
            let limit = usize::try_from(sockjs.cfg.streaming_bytes).unwrap_or(usize::MAX);
            let start = futures_util::stream::once(async move { Ok(Frame::data(Bytes::from(first))) });
            // State: the hold on the session, bytes sent; `None` when done.
            let frames = futures_util::stream::unfold(Some((rx, 0usize)), move |state| async move {
                let (rx, sent) = state?;
                let (chunk, done) = match rx.next(hb).await {
                    Next::Messages(m) => (m, false),
                    Next::Close(m) => (m, true),
                    Next::Heartbeat => (framing::HEARTBEAT.to_owned(), false),
                };
                let sent = sent + chunk.len() + 1;
                let next = (!done && sent < limit).then_some((rx, sent));
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(chunk + "\n"))), next))
            });
            stream(StreamBody::new(futures_util::StreamExt::chain(start, frames)).boxed_unsync())
        }
    };
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_CACHE));
    cors(headers, r.headers_mut());
    r
}

fn prelude() -> String {
    "h".repeat(PRELUDE_LEN)
}

/// `xhr_send`: the body (bounded before it is read) is the client's
/// messages, written to the session's STOMP connection.
async fn xhr_send(sockjs: &Arc<SockJs>, req: Request<Incoming>, id: String) -> Response<Body> {
    let headers = req.headers().clone();
    let answer = |mut r: Response<Body>| {
        cors(&headers, r.headers_mut());
        r
    };
    let session = sockjs.sessions.lock().get(&id).cloned();
    let Some(session) = session.filter(|s| !s.is_closed()) else { return answer(not_found()) };
    let max = sockjs.cfg.max_message_bytes;
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max) {
        return answer(text(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large."));
    }
    let limited = Limited::new(req.into_body(), usize::try_from(max).unwrap_or(usize::MAX));
    let body = match tokio::time::timeout(BODY_TIMEOUT, limited.collect()).await {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(_)) | Err(_) => return answer(text(StatusCode::PAYLOAD_TOO_LARGE, "Payload too large.")),
    };
    let msgs = match framing::parse_payload(&body) {
        Ok(m) => m,
        Err(e) => return answer(text(StatusCode::INTERNAL_SERVER_ERROR, e.text())),
    };
    if !session.send(&msgs).await {
        return answer(not_found());
    }
    let mut r = empty(StatusCode::NO_CONTENT);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=UTF-8"));
    answer(r)
}

/// `/demo` and `/demo/…` (see the demo contract in the module docs).
fn demo_route(sockjs: &SockJs, method: &Method, path: &str) -> Response<Body> {
    if method != Method::GET && method != Method::HEAD {
        return method_not_allowed("GET, HEAD");
    }
    if path == "/demo" {
        let mut r = empty(StatusCode::MOVED_PERMANENTLY);
        r.headers_mut().insert(header::LOCATION, HeaderValue::from_static("demo/"));
        return r;
    }
    let file = &path["/demo/".len()..];
    let (body, content_type): (Bytes, &'static str) = if file == "config.json" {
        let mut body = String::from("{\"sockjs_path\":");
        framing::quote(&sockjs.cfg.path, &mut body);
        body.push('}');
        (Bytes::from(body), "application/json")
    } else {
        match demo::asset(file) {
            Some(a) => (Bytes::from_static(a.body), a.content_type),
            None => return not_found(),
        }
    };
    let mut r = full(StatusCode::OK, content_type, body);
    let h = r.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(DEMO_CSP));
    r
}

fn full(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed_unsync());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn js(body: String) -> Response<Body> {
    full(StatusCode::OK, "application/javascript; charset=UTF-8", body)
}

fn stream(body: Body) -> Response<Body> {
    let mut r = Response::new(body);
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/javascript; charset=UTF-8"));
    r
}

fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    full(status, "text/plain; charset=UTF-8", body)
}

fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed_unsync());
    *r.status_mut() = status;
    r
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "Not found.")
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut r = empty(StatusCode::METHOD_NOT_ALLOWED);
    r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(allow));
    r
}
