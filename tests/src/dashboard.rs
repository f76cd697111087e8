//! The dashboard's test kit (issue 15): a broker with the admin API and
//! three keys, HTTP calls with the session cookie and CSRF header,
//! headless Chromium driven over the DevTools protocol, and a reverse
//! proxy that serves the admin API under a sub-path. Screenshots go to
//! `target/dashboard-screenshots/`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::Broker;

pub const SECRET: &str = "dash-secret-0123456789";

pub fn tp(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// A broker with anonymous loopback clients and the admin API with the
/// keys `admin`, `view` and `pub` (secret [`SECRET`]); `extra` goes into
/// `[admin]`.
pub fn setup(extra: &str) -> (Broker, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\npub:{SECRET}:publisher\n"))
        .expect("bootstrap");
    let cfg = format!(
        "[auth]\nchain = [\"anon\"]\n[auth.anonymous.anon]\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\n{extra}\n",
        tp(&dir.path().join("data")),
        tp(&boot),
    );
    let broker = Broker::start(&cfg);
    let addr = broker.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", broker.log()));
    (broker, addr, dir)
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A request with an optional session cookie and CSRF header.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    cookie: Option<&str>,
    csrf: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut req = http().request(method, format!("http://{addr}{path}"));
    if let Some(c) = cookie {
        req = req.header("cookie", c);
    }
    if let Some(t) = csrf {
        req = req.header("x-portcullis-csrf", t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let status = res.status();
    let headers = res.headers().clone();
    let text = res.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, headers, v)
}

/// Logs in; returns the `Set-Cookie` header, the `name=value` to send
/// back, and the session's JSON.
pub async fn login(
    addr: SocketAddr,
    user: &str,
    password: &str,
) -> (StatusCode, Option<String>, Option<String>, Value) {
    let (st, h, v) =
        call(addr, Method::POST, "/dashboard/login", None, None, Some(json!({"username": user, "password": password})))
            .await;
    let set = h.get("set-cookie").map(|v| v.to_str().expect("ascii").to_string());
    let pair = set.as_deref().and_then(|s| s.split(';').next()).map(str::to_string);
    (st, set, pair, v)
}

/// Headless Chromium in its own process group (stopped on drop), driven
/// over the DevTools protocol: one page, its WebSocket.
#[allow(missing_debug_implementations)]
pub struct Chromium {
    child: std::process::Child,
    _profile: tempfile::TempDir,
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    next_id: u64,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = std::process::Command::new("kill").args(["-TERM", "--", &group]).status();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// `PORTCULLIS_TEST_CHROMIUM`, else `chromium` from Debian (scripts/test.sh
/// installs it).
pub fn chromium_path() -> String {
    if let Ok(p) = std::env::var("PORTCULLIS_TEST_CHROMIUM") {
        return p;
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return p.to_string();
        }
    }
    panic!("no chromium: install Debian's `chromium` (scripts/test.sh does) or set PORTCULLIS_TEST_CHROMIUM");
}

impl Chromium {
    pub async fn start() -> Chromium {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("profile dir");
        let data = profile.path().join("profile");
        let child = std::process::Command::new(chromium_path())
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--window-size=1280,800",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", data.display()))
            .arg("about:blank")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromium");
        // Chromium writes the port it chose to DevToolsActivePort.
        let end = tokio::time::Instant::now() + Duration::from_secs(30);
        let port = loop {
            let text = std::fs::read_to_string(data.join("DevToolsActivePort")).unwrap_or_default();
            if let Some(p) = text.lines().next().and_then(|l| l.trim().parse::<u16>().ok()) {
                break p;
            }
            assert!(tokio::time::Instant::now() < end, "chromium wrote no DevToolsActivePort within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let targets: Value = http()
            .get(format!("http://127.0.0.1:{port}/json/list"))
            .send()
            .await
            .expect("json/list")
            .json()
            .await
            .expect("targets");
        let url = targets
            .as_array()
            .and_then(|a| a.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .expect("a page target")
            .to_string();
        let (ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("DevTools WebSocket");
        Chromium { child, _profile: profile, ws, next_id: 0 }
    }

    /// Sends a command and waits (10 s) for its answer, skipping events.
    pub async fn cmd(&mut self, method: &str, params: Value) -> Value {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next_id += 1;
        let id = self.next_id;
        let msg = json!({"id": id, "method": method, "params": params}).to_string();
        self.ws.send(Message::text(msg)).await.expect("send to chromium");
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            let m = tokio::time::timeout(left, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("no answer to {method} within 10 s"))
                .expect("DevTools closed")
                .expect("DevTools read");
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(t.as_str()).expect("DevTools JSON");
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression (promises awaited).
    pub async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .cmd("Runtime.evaluate", json!({"expression": expr, "returnByValue": true, "awaitPromise": true}))
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Waits (10 s) until `expr` is true.
    pub async fn wait_for(&mut self, expr: &str) {
        let end = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            // A page still loading may throw: not yet.
            let probe = format!("(() => {{ try {{ return !!({expr}); }} catch (_) {{ return false; }} }})()");
            if self.eval(&probe).await == Value::Bool(true) {
                return;
            }
            if tokio::time::Instant::now() >= end {
                let body = self.eval("document.body ? document.body.innerText : ''").await;
                panic!("not true within 10 s: {expr}\npage text:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn screenshot(&mut self, name: &str) {
        use base64::Engine;
        let r = self.cmd("Page.captureScreenshot", json!({"format": "png"})).await;
        let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().expect("data")).expect("base64");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Opens the dashboard at `url` (e.g. `http://ADDR/dashboard/`), logs
    /// in through the form and waits for the navigation to show.
    pub async fn log_in(&mut self, url: &str, user: &str, password: &str) {
        self.cmd("Page.navigate", json!({"url": url})).await;
        self.wait_for("!document.getElementById('login').hidden").await;
        self.eval(&format!(
            "document.getElementById('login-user').value = {user:?}; \
             document.getElementById('login-pass').value = {password:?}; \
             document.getElementById('login-submit').click(); true"
        ))
        .await;
        self.wait_for("!document.getElementById('nav').hidden").await;
    }

    /// Shows page `name` (`#/name`) and waits for its heading.
    pub async fn open_page(&mut self, name: &str) {
        self.eval(&format!("location.hash = '#/{name}'; true")).await;
        self.wait_for(&format!(
            "document.getElementById('nav-{name}').getAttribute('aria-current') === 'page' \
             && document.querySelector('#page h2')"
        ))
        .await;
    }

    pub async fn viewport(&mut self, width: u32, height: u32, mobile: bool) {
        self.cmd(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}),
        )
        .await;
    }
}

/// The API's answer with the `admin` key.
pub async fn api_get(addr: SocketAddr, path: &str) -> Value {
    http()
        .get(format!("http://{addr}{path}"))
        .basic_auth("admin", Some(SECRET))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json")
}

/// A reverse proxy that serves the admin API at `addr` under
/// `/portcullis/` (stripping the prefix), as nginx's
/// `location /portcullis/ { proxy_pass http://addr/; }` does; at most 500
/// connections, stopped on drop.
#[derive(Debug)]
pub struct Proxy {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn proxy_one(
    upstream: SocketAddr,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let reply = |status: u16, body: bytes::Bytes| {
        let mut r = hyper::Response::new(http_body_util::Full::new(body));
        *r.status_mut() = StatusCode::from_u16(status).expect("status");
        r
    };
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    let Some(rest) = path.strip_prefix("/portcullis/") else {
        return Ok(reply(404, bytes::Bytes::from_static(b"outside the proxied prefix")));
    };
    let method = req.method().clone();
    let mut headers = req.headers().clone();
    headers.remove("host");
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let res = http().request(method, format!("http://{upstream}/{rest}")).headers(headers).body(body).send().await;
    let Ok(res) = res else { return Ok(reply(502, bytes::Bytes::from_static(b"upstream"))) };
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res.bytes().await.unwrap_or_default();
    let mut out = reply(status, body);
    for (k, v) in &headers {
        if !["transfer-encoding", "connection", "content-length"].contains(&k.as_str()) {
            out.headers_mut().append(k, v.clone());
        }
    }
    Ok(out)
}

pub async fn proxy(upstream: SocketAddr) -> Proxy {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        for _ in 0..500 {
            let Ok((stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| proxy_one(upstream, req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Proxy { addr, task }
}
