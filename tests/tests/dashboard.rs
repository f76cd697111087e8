//! The web dashboard (issue 15, first slice) through the real binary: its
//! assets, the login that turns an API key into an `HttpOnly;
//! SameSite=Strict` session cookie, CSRF on writes made with the cookie,
//! viewers who cannot write, the lockout, logout, the base path, and the
//! pages in headless Chromium (driven over the DevTools protocol) against
//! real MQTT clients.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties};
use portcullis_tests::kit::*;
use portcullis_tests::Broker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SECRET: &str = "dash-secret-0123456789";

fn tp(p: &Path) -> String {
    format!("\"{}\"", p.display())
}

/// A broker with anonymous loopback clients and the admin API with the
/// keys `admin`, `view` and `pub` (secret [`SECRET`]); `extra` goes into
/// `[admin]`.
fn setup(extra: &str) -> (Broker, SocketAddr, tempfile::TempDir) {
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

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

/// A request with an optional session cookie and CSRF header.
async fn call(
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
async fn login(addr: SocketAddr, user: &str, password: &str) -> (StatusCode, Option<String>, Option<String>, Value) {
    let (st, h, v) =
        call(addr, Method::POST, "/dashboard/login", None, None, Some(json!({"username": user, "password": password})))
            .await;
    let set = h.get("set-cookie").map(|v| v.to_str().expect("ascii").to_string());
    let pair = set.as_deref().and_then(|s| s.split(';').next()).map(str::to_string);
    (st, set, pair, v)
}

#[tokio::test]
async fn assets_are_served_with_a_strict_policy_and_relative_redirects() {
    let (_b, addr, _d) = setup("");
    let (st, h, _) = call(addr, Method::GET, "/", None, None, None).await;
    assert_eq!(st, StatusCode::FOUND);
    assert_eq!(h["location"], "dashboard/");
    let (st, h, _) = call(addr, Method::GET, "/dashboard", None, None, None).await;
    assert_eq!((st, h["location"].to_str().expect("ascii")), (StatusCode::FOUND, "dashboard/"));
    let (st, h, body) = call(addr, Method::GET, "/dashboard/", None, None, None).await;
    assert_eq!(st, StatusCode::OK);
    assert!(h["content-type"].to_str().expect("ascii").starts_with("text/html"));
    let csp = h["content-security-policy"].to_str().expect("ascii");
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'"), "{csp}");
    assert!(body.as_str().expect("html").contains("app.js"));
    for (file, ctype) in [("app.js", "text/javascript"), ("pages.js", "text/javascript"), ("style.css", "text/css")] {
        let (st, h, _) = call(addr, Method::GET, &format!("/dashboard/{file}"), None, None, None).await;
        assert_eq!(st, StatusCode::OK, "{file}");
        assert!(h["content-type"].to_str().expect("ascii").starts_with(ctype), "{file}");
    }
    let (st, _, _) = call(addr, Method::GET, "/dashboard/nope.js", None, None, None).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    // No session yet.
    let (st, _, _) = call(addr, Method::GET, "/dashboard/session", None, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn login_session_csrf_roles_and_logout() {
    let (_b, addr, _d) = setup("");
    // No password works out of the box, nor a wrong one, nor a publisher key.
    for (user, pw) in [("admin", "admin"), ("admin", "public"), ("admin", "wrong-secret-0123456789"), ("root", SECRET)]
    {
        let (st, set, _, _) = login(addr, user, pw).await;
        assert_eq!((st, set), (StatusCode::UNAUTHORIZED, None), "{user}:{pw}");
    }
    let (st, _, _, _) = login(addr, "pub", SECRET).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    let (st, set, cookie, v) = login(addr, "admin", SECRET).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let set = set.expect("set-cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/;"), "{set}");
    let cookie = cookie.expect("cookie");
    assert_eq!(v["role"], "administrator");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    assert!(csrf.len() >= 40);
    let (st, _, s) = call(addr, Method::GET, "/dashboard/session", Some(&cookie), None, None).await;
    assert_eq!((st, s["csrf"].as_str()), (StatusCode::OK, Some(csrf.as_str())));

    // The cookie reads the API ...
    let (st, _, stats) = call(addr, Method::GET, "/api/v5/stats?aggregate=true", Some(&cookie), None, None).await;
    assert_eq!(st, StatusCode::OK, "{stats}");
    // ... and writes only with the CSRF token.
    let (st, _, e) = call(addr, Method::DELETE, "/api/v5/clients/nobody", Some(&cookie), None, None).await;
    assert_eq!((st, e["code"].as_str()), (StatusCode::FORBIDDEN, Some("CSRF_TOKEN_MISSING")));
    let (st, _, _) = call(addr, Method::DELETE, "/api/v5/clients/nobody", Some(&cookie), Some("guess"), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, _) = call(addr, Method::DELETE, "/api/v5/clients/nobody", Some(&cookie), Some(&csrf), None).await;
    assert_eq!(st, StatusCode::NOT_FOUND, "passed the checks, found no client");
    // A made-up cookie is nobody.
    let (st, _, _) = call(addr, Method::GET, "/api/v5/stats", Some("portcullis_session=forged"), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // A viewer reads and cannot write, CSRF token or not.
    let (st, _, vc, v) = login(addr, "view", SECRET).await;
    assert_eq!((st, v["role"].as_str()), (StatusCode::OK, Some("viewer")));
    let vc = vc.expect("cookie");
    let vcsrf = v["csrf"].as_str().expect("csrf");
    assert_eq!(call(addr, Method::GET, "/api/v5/clients", Some(&vc), None, None).await.0, StatusCode::OK);
    let (st, _, e) = call(addr, Method::DELETE, "/api/v5/clients/nobody", Some(&vc), Some(vcsrf), None).await;
    assert_eq!((st, e["code"].as_str()), (StatusCode::FORBIDDEN, Some("FORBIDDEN")));

    // Logout needs the token too, then the cookie is worthless.
    let (st, _, _) = call(addr, Method::POST, "/dashboard/logout", Some(&cookie), None, None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, h, _) = call(addr, Method::POST, "/dashboard/logout", Some(&cookie), Some(&csrf), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    assert!(h["set-cookie"].to_str().expect("ascii").contains("Max-Age=0"));
    let (st, _, _) = call(addr, Method::GET, "/api/v5/stats", Some(&cookie), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = call(addr, Method::GET, "/dashboard/session", Some(&cookie), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn failed_logins_lock_the_address_out_and_the_base_path_scopes_the_cookie() {
    let (_b, addr, _d) = setup("login_failures = 3\nlogin_lockout = \"1m\"\ndashboard_base_path = \"/portcullis\"");
    for _ in 0..3 {
        assert_eq!(login(addr, "admin", "wrong-secret-0123456789").await.0, StatusCode::UNAUTHORIZED);
    }
    let (st, set, _, v) = login(addr, "admin", SECRET).await;
    assert_eq!((st, set), (StatusCode::TOO_MANY_REQUESTS, None), "{v}");

    let (_b2, addr2, _d2) = setup("dashboard_base_path = \"/portcullis\"");
    let (st, set, _, _) = login(addr2, "admin", SECRET).await;
    assert_eq!(st, StatusCode::OK);
    assert!(set.expect("set-cookie").contains("Path=/portcullis/;"));
}

#[tokio::test]
async fn the_dashboard_can_be_turned_off() {
    let (_b, addr, _d) = setup("dashboard = false");
    assert_eq!(call(addr, Method::GET, "/dashboard/", None, None, None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(login(addr, "admin", SECRET).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_kick_with_the_session_reaches_the_client_as_0x98() {
    let (b, addr, _d) = setup("");
    let (mut c, _) = open_v5(b.addr, "dash-kick", true, Properties::default()).await;
    let (_, _, cookie, v) = login(addr, "admin", SECRET).await;
    let cookie = cookie.expect("cookie");
    let csrf = v["csrf"].as_str().expect("csrf");
    let (st, _, _) = call(addr, Method::DELETE, "/api/v5/clients/dash-kick", Some(&cookie), Some(csrf), None).await;
    assert_eq!(st, StatusCode::NO_CONTENT);
    match c.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
}
