//! The web dashboard (issue 15, first slice) through the real binary: its
//! assets, the login that turns an API key into an `HttpOnly;
//! SameSite=Strict` session cookie, CSRF on writes made with the cookie,
//! viewers who cannot write, the lockout, logout, the base path, and the
//! pages in headless Chromium (driven over the DevTools protocol) against
//! real MQTT clients, behind a reverse proxy under a sub-path, and a
//! deleted key ending its sessions.

use std::time::Duration;

use portcullis_core::codec::{Packet, Properties};
use portcullis_tests::dashboard::*;
use portcullis_tests::kit::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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
    assert_eq!(call(addr, Method::GET, "/", None, None, None).await.0, StatusCode::NOT_FOUND);
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

#[tokio::test]
async fn the_dashboard_in_headless_chromium_logs_in_shows_live_data_kicks_and_logs_out() {
    let (b, addr, _d) = setup("");
    let (mut client, _) = open_v5(b.addr, "dash-browser-sees-me", true, Properties::default()).await;
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.cmd("Page.enable", json!({})).await;
    page.cmd("Page.navigate", json!({"url": format!("http://{addr}/")})).await;
    page.wait_for("location.pathname === '/dashboard/' && !document.getElementById('login').hidden").await;
    page.screenshot("login").await;

    // A wrong secret is refused on the page.
    let fill = |user: &str, pw: &str| {
        format!(
            "document.getElementById('login-user').value = {user:?}; \
             document.getElementById('login-pass').value = {pw:?}; \
             document.getElementById('login-submit').click(); true"
        )
    };
    page.eval(&fill("admin", "wrong-secret-0123456789")).await;
    page.wait_for("document.getElementById('login-error').textContent.includes('Wrong')").await;
    assert_eq!(page.eval("document.getElementById('nav').hidden").await, Value::Bool(true));
    page.screenshot("login-refused").await;

    // The right one: the overview, with the API's connection count.
    page.eval(&fill("admin", SECRET)).await;
    page.wait_for("!document.getElementById('nav').hidden && document.getElementById('ov-connections')").await;
    // The session cookie is out of the page's reach.
    assert_eq!(page.eval("document.cookie.includes('portcullis_session')").await, Value::Bool(false));
    let want = api_get(addr, "/api/v5/stats?aggregate=true").await["connections.count"].clone();
    assert_eq!(want, json!(1));
    page.wait_for(&format!("document.getElementById('ov-connections').dataset.value === '{want}'")).await;
    // The rates appear from the second sample on.
    page.wait_for("document.getElementById('ov-received').dataset.value !== undefined").await;
    // The vendored uPlot draws each series (no request left this server:
    // the page's CSP allows nothing else).
    page.wait_for("typeof uPlot === 'function' && document.querySelectorAll('.card .uplot canvas').length === 4").await;
    page.screenshot("overview").await;

    // Clients: the real client is listed; a filter that does not match hides it.
    page.eval("location.hash = '#/clients'; true").await;
    page.wait_for("document.querySelector('tr[data-clientid=\"dash-browser-sees-me\"]')").await;
    page.screenshot("clients").await;
    page.viewport(390, 844, true).await;
    page.screenshot("clients-phone").await;
    page.viewport(1280, 800, false).await;
    page.eval(
        "document.getElementById('clients-filter').value = 'nobody-like-this'; \
         document.querySelector('form.filters button').click(); true",
    )
    .await;
    page.wait_for("!document.querySelector('tr[data-clientid=\"dash-browser-sees-me\"]')").await;
    page.eval(
        "document.getElementById('clients-filter').value = 'sees-me'; \
         document.querySelector('form.filters button').click(); true",
    )
    .await;
    page.wait_for("document.querySelector('tr[data-clientid=\"dash-browser-sees-me\"]')").await;

    // Kick: the first press arms the button, the second kicks.
    let kick = "document.querySelector('button.kick[data-clientid=\"dash-browser-sees-me\"]')";
    page.eval(&format!("{kick}.click(); true")).await;
    page.wait_for(&format!("{kick}.dataset.armed === 'yes'")).await;
    page.eval(&format!("{kick}.click(); true")).await;
    match client.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98, "Administrative action"),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    page.wait_for("!document.querySelector('tr[data-clientid=\"dash-browser-sees-me\"]')").await;
    page.wait_for("document.getElementById('clients-status').textContent.includes('Kicked')").await;
    page.screenshot("clients-after-kick").await;
    let list = api_get(addr, "/api/v5/clients").await;
    assert!(!list.to_string().contains("dash-browser-sees-me"), "{list}");

    // Logout: back to the form, and the session is gone server-side.
    page.eval("document.getElementById('logout').click(); true").await;
    page.wait_for("!document.getElementById('login').hidden").await;
    assert_eq!(page.eval("fetch('session').then((r) => r.status)").await, json!(401));
    // With the dashboard's header, a 401 carries no Basic challenge (which
    // would open the browser's own login dialog).
    assert_eq!(
        page.eval(
            "fetch('../api/v5/stats', {headers: {'X-Portcullis-Csrf': ''}}) \
             .then((r) => r.status + ' ' + r.headers.has('www-authenticate'))"
        )
        .await,
        json!("401 false")
    );
    page.screenshot("logged-out").await;
}

#[tokio::test]
async fn behind_a_proxy_under_a_sub_path_a_viewer_sees_live_data_and_cannot_kick() {
    let (b, addr, _d) = setup("dashboard_base_path = \"/portcullis/\"");
    let (mut client, _) = open_v5(b.addr, "dash-proxied-client", true, Properties::default()).await;
    let proxy = proxy(addr).await;
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.cmd("Page.navigate", json!({"url": format!("http://{}/portcullis/", proxy.addr)})).await;
    page.wait_for("location.pathname === '/portcullis/dashboard/' && !document.getElementById('login').hidden").await;
    page.eval(&format!(
        "document.getElementById('login-user').value = 'view'; \
         document.getElementById('login-pass').value = {SECRET:?}; \
         document.getElementById('login-submit').click(); true"
    ))
    .await;
    page.wait_for("!document.getElementById('nav').hidden").await;
    assert_eq!(page.eval("document.getElementById('who-role').textContent").await, json!("viewer"));
    let want = api_get(addr, "/api/v5/stats?aggregate=true").await["connections.count"].clone();
    page.wait_for(&format!("document.getElementById('ov-connections').dataset.value === '{want}'")).await;
    page.screenshot("proxy-viewer-overview").await;

    // Keyboard: Tab from the top reaches the Clients link; Enter opens it.
    page.eval("document.activeElement.blur(); true").await;
    let mut reached = false;
    for _ in 0..8 {
        for kind in ["keyDown", "keyUp"] {
            page.cmd(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
            )
            .await;
        }
        if page.eval("document.activeElement && document.activeElement.id").await == json!("nav-clients") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the Clients link");
    for kind in ["keyDown", "keyUp"] {
        page.cmd(
            "Input.dispatchKeyEvent",
            json!({"type": kind, "key": "Enter", "code": "Enter", "windowsVirtualKeyCode": 13, "text": "\r"}),
        )
        .await;
    }
    page.wait_for("location.hash === '#/clients'").await;
    let kick = "document.querySelector('button.kick[data-clientid=\"dash-proxied-client\"]')";
    page.wait_for(kick).await;
    assert_eq!(page.eval(&format!("{kick}.disabled")).await, Value::Bool(true));
    page.screenshot("proxy-viewer-clients").await;
    // The viewer's session cannot kick through the API either.
    let status = page
        .eval(
            "fetch('session').then((r) => r.json()).then((s) => fetch('../api/v5/clients/dash-proxied-client', \
             {method: 'DELETE', headers: {'X-Portcullis-Csrf': s.csrf}})).then((r) => r.status)",
        )
        .await;
    assert_eq!(status, json!(403));
    assert!(client.recv_timeout(Duration::from_millis(300)).await.is_err(), "the viewer's kick reached the client");
    let (st, _, _) = call(addr, Method::GET, "/api/v5/clients/dash-proxied-client", None, None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "the API still wants a key without a session");
    assert_eq!(api_get(addr, "/api/v5/clients/dash-proxied-client").await["connected"], json!(true));
    page.eval("document.getElementById('logout').click(); true").await;
    page.wait_for("!document.getElementById('login').hidden").await;
    assert_eq!(page.eval("fetch('session').then((r) => r.status)").await, json!(401));
}

#[tokio::test]
async fn deleting_a_key_ends_its_sessions_at_once() {
    let (_b, addr, _d) = setup("");
    let created = http()
        .post(format!("http://{addr}/api/v5/api_key"))
        .basic_auth("admin", Some(SECRET))
        .json(&json!({"name": "temp", "role": "administrator"}))
        .send()
        .await
        .expect("create key");
    assert!(created.status().is_success());
    let created: Value = created.json().await.expect("json");
    let (id, secret) = (created["api_key"].as_str().expect("id"), created["api_secret"].as_str().expect("secret"));
    let (st, _, cookie, _) = login(addr, id, secret).await;
    assert_eq!(st, StatusCode::OK);
    let cookie = cookie.expect("cookie");
    assert_eq!(call(addr, Method::GET, "/api/v5/stats", Some(&cookie), None, None).await.0, StatusCode::OK);
    let deleted = http()
        .delete(format!("http://{addr}/api/v5/api_key/temp"))
        .basic_auth("admin", Some(SECRET))
        .send()
        .await
        .expect("delete key");
    assert!(deleted.status().is_success());
    assert_eq!(call(addr, Method::GET, "/api/v5/stats", Some(&cookie), None, None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        call(addr, Method::GET, "/dashboard/session", Some(&cookie), None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
}
