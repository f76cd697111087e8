//! A real HTTP(S) auth webhook for the HTTP backend tests, served by hyper
//! on 127.0.0.1 inside the test process, and controlled by the test: it
//! can answer slowly, answer a fixed status, be stopped and started again
//! on the same port; it counts and records the requests it gets.
//!
//! It knows three users — `alice`/`alice-pw`, `bob`/`bob-pw`,
//! `root`/`root-pw` (superuser) — and `ignore-me` (any password), and
//! reads its fields from a JSON body, a form body or the query string.
//!
//! | path | answers |
//! |---|---|
//! | `/mqtt/auth` | EMQX 5: unknown user 404; `{"result": "allow", "is_superuser": …}` (with `Cache-Control: max-age` when set), `deny`, or `ignore` for `ignore-me` |
//! | `/emqttd/auth` | emqttd: 200 allow, 401 wrong password, 200 `ignore` for unknown users |
//! | `/emqttd/superuser` | 200 for root, 403 for others |
//! | `/mqtt/acl` | EMQX 5 `result`: allow `<username>/…`, deny `secret/…`, `pub-only/…` allow publish only, `lowqos/…` deny QoS 2, else ignore |
//! | `/emqttd/acl` | the same rules as 200 (allow) or 403 (anything else) |
//! | `/unrelated` | 200 with an HTML page, whatever is asked (a wrong URL: a health page, a catch-all route) |
//! | `/events` | 200 `{}`: the event webhook module's endpoint ([`Webhook::events`] reads what it got) |
//!
//! Every wait is bounded by the caller's timeouts; the server stops (all
//! its tasks aborted) when dropped.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// One request as received.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    /// The raw query string.
    pub query: String,
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
    /// The fields read from body or query.
    pub fields: HashMap<String, String>,
}

/// What the test controls.
#[derive(Debug, Default)]
struct Control {
    delay: Duration,
    fail: Option<u16>,
    max_age: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    control: Mutex<Control>,
    count: AtomicU64,
    seen: Mutex<Vec<Seen>>,
}

/// TLS for the webhook: the server pair, optionally requiring a client
/// certificate signed by `ca`.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    pub client_ca: Option<std::path::PathBuf>,
}

/// The running webhook.
#[derive(Debug)]
pub struct Webhook {
    pub addr: SocketAddr,
    state: Arc<State>,
    tls: Option<Tls>,
    tasks: Option<JoinSet<()>>,
}

impl Webhook {
    /// Starts on 127.0.0.1 with a port from the OS.
    pub async fn start(tls: Option<Tls>) -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind webhook");
        let addr = listener.local_addr().expect("addr");
        let mut w = Webhook { addr, state: Arc::new(State::default()), tls, tasks: None };
        w.serve(listener);
        w
    }

    /// `http://127.0.0.1:PORT` or `https://…`.
    pub fn base(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops accepting and closes every connection (keep-alive included).
    pub async fn stop(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
            while t.join_next().await.is_some() {}
        }
    }

    /// Starts again on the same port (bounded retries while it frees up).
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) => {
                    tries += 1;
                    assert!(tries < 50, "cannot bind {} again: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        };
        self.serve(listener);
    }

    /// Answer every request after `d`.
    pub fn set_delay(&self, d: Duration) {
        self.state.control.lock().expect("control").delay = d;
    }

    /// Answer every request with this status (`None`: normal answers).
    pub fn set_fail(&self, status: Option<u16>) {
        self.state.control.lock().expect("control").fail = status;
    }

    /// `Cache-Control: max-age=N` on EMQX auth allows.
    pub fn set_max_age(&self, secs: Option<u64>) {
        self.state.control.lock().expect("control").max_age = secs;
    }

    /// Requests received so far (counted on arrival, before any delay).
    pub fn count(&self) -> u64 {
        self.state.count.load(Ordering::SeqCst)
    }

    /// The requests received so far (the last 1000).
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("seen").clone()
    }

    /// The events POSTed to `/events` so far (of the last 1000
    /// requests), in order: a JSON array body gives each of its elements.
    pub fn events(&self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for s in self.seen().iter().filter(|s| s.path == "/events") {
            match serde_json::from_slice(&s.body) {
                Ok(serde_json::Value::Array(a)) => out.extend(a),
                Ok(v) => out.push(v),
                Err(_) => {}
            }
        }
        out
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = Arc::clone(&self.state);
        let acceptor = self.tls.as_ref().map(tls_acceptor);
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut conns = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let state = Arc::clone(&state);
                        let acceptor = acceptor.clone();
                        conns.spawn(async move {
                            let service = service_fn(move |req| handle(Arc::clone(&state), req));
                            let http = hyper::server::conn::http1::Builder::new();
                            match acceptor {
                                Some(a) => {
                                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(5), a.accept(stream)).await {
                                        let _ = http.serve_connection(TokioIo::new(tls), service).await;
                                    }
                                }
                                None => {
                                    let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                }
                            }
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        self.tasks = Some(tasks);
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        if let Some(mut t) = self.tasks.take() {
            t.abort_all();
        }
    }
}

fn tls_acceptor(t: &Tls) -> tokio_rustls::TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&t.cert);
    let key = rustls_pemfile::private_key(&mut std::fs::read(&t.key).expect("read key").as_slice())
        .expect("parse key")
        .expect("a key");
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocols");
    let builder = match &t.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in read_certs(ca) {
                roots.add(c).expect("add CA");
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder.with_single_cert(certs, key).expect("server cert");
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

fn read_certs(p: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    let data = std::fs::read(p).expect("read certs");
    rustls_pemfile::certs(&mut data.as_slice()).collect::<Result<Vec<_>, _>>().expect("parse certs")
}

const USERS: [(&str, &str, bool); 3] =
    [("alice", "alice-pw", false), ("bob", "bob-pw", false), ("root", "root-pw", true)];

fn reply(status: u16, body: impl Into<Bytes>, max_age: Option<u64>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    if let Some(n) = max_age {
        if let Ok(v) = hyper::header::HeaderValue::from_str(&format!("max-age={n}")) {
            r.headers_mut().insert("cache-control", v);
        }
    }
    r
}

fn result(r: &str) -> String {
    format!("{{\"result\": \"{r}\"}}")
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    state.count.fetch_add(1, Ordering::SeqCst);
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let json = headers.iter().any(|(k, v)| k == "content-type" && v.starts_with("application/json"));
    let body = match Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => return Ok(reply(413, "", None)),
    };
    let mut fields: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    if json {
        if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(&body) {
            for (k, v) in m {
                fields.insert(k, v.as_str().map_or_else(|| v.to_string(), str::to_string));
            }
        }
    } else {
        fields.extend(form_urlencoded::parse(&body).into_owned());
    }
    {
        let mut seen = state.seen.lock().expect("seen");
        if seen.len() >= 1000 {
            seen.remove(0);
        }
        seen.push(Seen { method, path: path.clone(), query, headers, body, fields: fields.clone() });
    }
    let (delay, fail, max_age) = {
        let c = state.control.lock().expect("control");
        (c.delay, c.fail, c.max_age)
    };
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(status) = fail {
        return Ok(reply(status, "", None));
    }
    let f = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
    let user = USERS.iter().find(|(u, _, _)| *u == f("username"));
    let password_ok = user.is_some_and(|(_, p, _)| *p == f("password"));
    let superuser = user.is_some_and(|(_, _, su)| *su);
    Ok(match path.as_str() {
        "/mqtt/auth" => match (user, password_ok) {
            _ if f("username") == "ignore-me" => reply(200, result("ignore"), None),
            (None, _) => reply(404, "", None),
            (Some(_), false) => reply(200, result("deny"), None),
            (Some(_), true) => reply(200, format!("{{\"result\": \"allow\", \"is_superuser\": {superuser}}}"), max_age),
        },
        "/emqttd/auth" => match (user, password_ok) {
            (None, _) => reply(200, "ignore", None),
            (Some(_), false) => reply(401, "", None),
            (Some(_), true) => reply(200, "", None),
        },
        "/emqttd/superuser" => reply(if superuser { 200 } else { 403 }, "", None),
        "/unrelated" => reply(200, "<html><body><h1>It works!</h1></body></html>", None),
        "/events" => reply(200, "{}", None),
        "/mqtt/acl" => reply(200, result(acl(f("username"), f("action"), f("topic"), f("qos"))), None),
        "/emqttd/acl" => {
            reply(if acl(f("username"), f("action"), f("topic"), f("qos")) == "allow" { 200 } else { 403 }, "", None)
        }
        _ => reply(404, "", None),
    })
}

/// The webhook's ACL rules.
fn acl(username: &str, action: &str, topic: &str, qos: &str) -> &'static str {
    if topic.starts_with("secret/") {
        "deny"
    } else if !username.is_empty() && topic.starts_with(&format!("{username}/")) {
        "allow"
    } else if topic.starts_with("pub-only/") {
        if action == "publish" {
            "allow"
        } else {
            "deny"
        }
    } else if topic.starts_with("lowqos/") {
        if qos == "2" {
            "deny"
        } else {
            "allow"
        }
    } else {
        "ignore"
    }
}
