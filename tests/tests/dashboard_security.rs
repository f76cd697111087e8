//! The dashboard's security side through the real binary and headless
//! Chromium: the first password (the first administrator created on the
//! login page over loopback only, never through a proxy, one winner of
//! concurrent attempts; the initial password from config or environment
//! that must be changed before anything else), the lockout on those
//! paths; the explain form against `portcullis auth check` / `acl
//! explain`; the built-in users and rules pages with their effect over
//! MQTT; the auth and ACL page against the API.

use std::path::Path;

use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_tests::backend::{sub_code, try_login, V3, V5};
use portcullis_tests::dashboard::*;
use portcullis_tests::Broker;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// A broker with anonymous loopback clients and the admin API without any
/// key; `extra` goes into `[admin]`.
fn no_keys(dir: &Path, extra: &str) -> String {
    format!(
        "[auth]\nchain = [\"anon\"]\n[auth.anonymous.anon]\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\n{extra}\n",
        tp(&dir.join("data")),
    )
}

fn admin_of(b: &Broker) -> std::net::SocketAddr {
    b.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", b.log()))
}

async fn with_basic(addr: std::net::SocketAddr, user: &str, pw: &str, path: &str) -> (StatusCode, Value) {
    let res = http().get(format!("http://{addr}{path}")).basic_auth(user, Some(pw)).send().await.expect("request");
    let st = res.status();
    (st, res.json().await.unwrap_or(Value::Null))
}

async fn first_admin(addr: std::net::SocketAddr, name: &str, secret: &str, proxied: bool) -> (StatusCode, Value) {
    let mut req =
        http().post(format!("http://{addr}/dashboard/first-admin")).json(&json!({"name": name, "secret": secret}));
    if proxied {
        req = req.header("x-forwarded-for", "203.0.113.9");
    }
    let res = req.send().await.expect("request");
    let st = res.status();
    (st, res.json().await.unwrap_or(Value::Null))
}

const FIRST_SECRET: &str = "first-admin-secret-0123";

#[tokio::test]
async fn first_admin_is_created_over_loopback_only_and_logs_in() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&no_keys(dir.path(), ""));
    let addr = admin_of(&b);
    // Nobody can log in, and the login page offers the first administrator.
    let (st, _, _, _) = login(addr, "admin", "admin").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!((st, v["open"].as_bool(), v["why"].as_str()), (StatusCode::OK, Some(true), Some("open")), "{v}");

    // Through a proxy (a forwarded header): refused, API and page.
    for h in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        let res = http()
            .get(format!("http://{addr}/dashboard/first-admin"))
            .header(h, "for=203.0.113.9")
            .send()
            .await
            .expect("request");
        let v: Value = res.json().await.expect("json");
        assert_eq!((v["open"].as_bool(), v["why"].as_str()), (Some(false), Some("proxied")), "{h}: {v}");
    }
    let (st, v) = first_admin(addr, "mallory", FIRST_SECRET, true).await;
    assert_eq!((st, v["code"].as_str()), (StatusCode::FORBIDDEN, Some("FIRST_ADMIN_LOOPBACK_ONLY")), "{v}");
    let px = proxy(addr).await;
    {
        let mut c = Chromium::start().await;
        c.cmd("Network.enable", json!({})).await;
        c.cmd("Network.setExtraHTTPHeaders", json!({"headers": {"X-Forwarded-For": "203.0.113.9"}})).await;
        c.cmd("Page.navigate", json!({"url": format!("http://{}/portcullis/dashboard/", px.addr)})).await;
        c.wait_for("!document.getElementById('first-admin-refused').hidden").await;
        assert_eq!(c.eval("document.getElementById('first-admin-refused').dataset.why").await, "proxied");
        assert_eq!(c.eval("document.getElementById('first-admin').hidden").await, true);
        let text = c.eval("document.getElementById('first-admin-refused').textContent").await;
        assert!(text.as_str().is_some_and(|t| t.contains("loopback") && t.contains("bootstrap_file")), "{text}");
        c.screenshot("first-admin-refused-proxied").await;
    }
    // Still no administrator.
    let (_, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!(v["open"], true);

    // Straight from loopback: the form creates the key and logs in.
    let mut c = Chromium::start().await;
    c.cmd("Page.navigate", json!({"url": format!("http://{addr}/dashboard/")})).await;
    c.wait_for("!document.getElementById('first-admin').hidden").await;
    assert_eq!(c.eval("document.getElementById('first-admin-refused').hidden").await, true);
    c.screenshot("first-admin").await;
    // A mismatched confirmation is caught before anything is sent.
    c.eval(&format!(
        "document.getElementById('first-name').value = 'root'; \
         document.getElementById('first-secret').value = {FIRST_SECRET:?}; \
         document.getElementById('first-confirm').value = 'something-else-0123456'; \
         document.getElementById('first-submit').click(); true"
    ))
    .await;
    c.wait_for("document.getElementById('first-error').textContent.includes('differ')").await;
    let (_, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!(v["open"], true, "nothing created");
    c.eval(&format!(
        "document.getElementById('first-secret').value = {FIRST_SECRET:?}; \
         document.getElementById('first-confirm').value = {FIRST_SECRET:?}; \
         document.getElementById('first-submit').click(); true"
    ))
    .await;
    c.wait_for("!document.getElementById('nav').hidden").await;
    assert_eq!(c.eval("document.getElementById('who-name').textContent").await, "root");
    assert_eq!(c.eval("document.getElementById('who-role').textContent").await, "administrator");
    assert_eq!(
        c.eval(
            "['first-secret', 'first-confirm', 'login-pass'].map((id) => document.getElementById(id).value).join('')"
        )
        .await,
        "",
        "no secret left in the page"
    );
    // The key works for the API, and the offer is gone.
    let (st, v) = with_basic(addr, "root", FIRST_SECRET, "/api/v5/api_key").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v[0]["role"], "administrator");
    let (_, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!((v["open"].as_bool(), v["why"].as_str()), (Some(false), Some("admin_exists")));
    let (st, v) = first_admin(addr, "second", FIRST_SECRET, false).await;
    assert_eq!((st, v["code"].as_str()), (StatusCode::CONFLICT, Some("ALREADY_EXISTS")));
    assert!(!b.log().contains(FIRST_SECRET), "the secret is never logged");
}

#[tokio::test]
async fn first_admin_refuses_a_short_secret_or_a_bad_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&no_keys(dir.path(), ""));
    let addr = admin_of(&b);
    let (st, v) = first_admin(addr, "root", "short-secret", false).await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    let (st, _) = first_admin(addr, "9bad name", FIRST_SECRET, false).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (_, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!(v["open"], true);
}

#[tokio::test]
async fn concurrent_first_admins_make_one_winner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&no_keys(dir.path(), ""));
    let addr = admin_of(&b);
    let tasks: Vec<_> = (0..8)
        .map(|i| tokio::spawn(async move { first_admin(addr, &format!("root{i}"), FIRST_SECRET, false).await.0 }))
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("task"));
    }
    let won = codes.iter().filter(|c| **c == StatusCode::OK).count();
    let lost = codes.iter().filter(|c| **c == StatusCode::CONFLICT).count();
    assert_eq!((won, lost), (1, 7), "{codes:?}");
    let keys = std::fs::read_to_string(dir.path().join("data/api_keys.json")).expect("key store");
    let v: Value = serde_json::from_str(&keys).expect("json");
    assert_eq!(v["keys"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["keys"][0]["role"], "administrator");
}

const INITIAL: &str = "initial-pass-0123456789";
const CHANGED: &str = "changed-pass-0123456789";

#[tokio::test]
async fn initial_password_must_be_changed_before_anything_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = no_keys(dir.path(), &format!("dashboard_initial_password = {INITIAL:?}"));
    let b = Broker::start(&cfg);
    let addr = admin_of(&b);
    let store = dir.path().join("data/api_keys.json");
    let text = std::fs::read_to_string(&store).expect("key store");
    assert!(text.contains("\"must_change\": true") && !text.contains(INITIAL), "{text}");
    // No first-admin offer: an administrator exists.
    let (_, _, v) = call(addr, Method::GET, "/dashboard/first-admin", None, None, None).await;
    assert_eq!(v["why"], "admin_exists");

    // Logged in with it, every API call is refused until the change.
    let (st, _, cookie, v) = login(addr, "admin", INITIAL).await;
    assert_eq!((st, v["must_change"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    let cookie = cookie.expect("cookie");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    for (m, path) in [
        (Method::GET, "/api/v5/stats"),
        (Method::GET, "/api/v5/api_key"),
        (Method::DELETE, "/api/v5/authentication/cache"),
        (Method::POST, "/api/v5/api_key"),
    ] {
        let (st, _, e) = call(addr, m.clone(), path, Some(&cookie), Some(&csrf), Some(json!({"name": "x"}))).await;
        assert_eq!((st, e["code"].as_str()), (StatusCode::FORBIDDEN, Some("PASSWORD_CHANGE_REQUIRED")), "{m} {path}");
    }
    let (st, e) = with_basic(addr, "admin", INITIAL, "/api/v5/stats").await;
    assert_eq!((st, e["code"].as_str()), (StatusCode::FORBIDDEN, Some("PASSWORD_CHANGE_REQUIRED")));
    // The change needs the CSRF token.
    let body = json!({"current": INITIAL, "new": CHANGED});
    let (st, _, _) = call(addr, Method::POST, "/dashboard/password", Some(&cookie), None, Some(body)).await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // The page shows the change form first, and nothing else.
    let mut c = Chromium::start().await;
    c.cmd("Page.navigate", json!({"url": format!("http://{addr}/dashboard/")})).await;
    c.wait_for("!document.getElementById('login').hidden").await;
    c.eval(&format!(
        "document.getElementById('login-user').value = 'admin'; \
         document.getElementById('login-pass').value = {INITIAL:?}; \
         document.getElementById('login-submit').click(); true"
    ))
    .await;
    c.wait_for("!document.getElementById('pw-change').hidden").await;
    assert_eq!(c.eval("document.getElementById('nav').hidden").await, true);
    assert_eq!(c.eval("document.getElementById('page').children.length").await, 0);
    c.screenshot("forced-password-change").await;
    // A wrong current secret is refused.
    c.eval(&format!(
        "document.getElementById('pw-current').value = 'wrong-current-0123456789'; \
         document.getElementById('pw-new').value = {CHANGED:?}; \
         document.getElementById('pw-confirm').value = {CHANGED:?}; \
         document.getElementById('pw-submit').click(); true"
    ))
    .await;
    c.wait_for("document.getElementById('pw-error').textContent.includes('Wrong current')").await;
    // Reloaded, the page still asks for the change first.
    c.cmd("Page.reload", json!({})).await;
    c.wait_for("!document.getElementById('pw-change').hidden").await;
    c.eval(&format!(
        "document.getElementById('pw-current').value = {INITIAL:?}; \
         document.getElementById('pw-new').value = {CHANGED:?}; \
         document.getElementById('pw-confirm').value = {CHANGED:?}; \
         document.getElementById('pw-submit').click(); true"
    ))
    .await;
    c.wait_for("!document.getElementById('nav').hidden && document.querySelector('#page h2')").await;
    assert_eq!(
        c.eval("['pw-current', 'pw-new', 'pw-confirm', 'login-pass'].map((id) => document.getElementById(id).value).join('')")
            .await,
        ""
    );
    // The page's session now reads the API.
    assert_eq!(c.eval("fetch('../api/v5/stats').then((r) => r.status)").await, 200);

    // The flag is gone (in the store too), the initial password is dead.
    let (st, v) = with_basic(addr, "admin", CHANGED, "/api/v5/api_key").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = std::fs::read_to_string(&store).expect("key store");
    assert!(!text.contains("must_change"), "{text}");
    let (st, _, _, _) = login(addr, "admin", INITIAL).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    assert!(!b.log().contains(INITIAL) && !b.log().contains(CHANGED), "secrets never logged");
    drop(c);
    drop(b);
    // Restarted with the same config: the initial password is not applied
    // again (an administrator exists).
    let b = Broker::start(&cfg);
    let addr = admin_of(&b);
    let (st, _, _, _) = login(addr, "admin", INITIAL).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _, v) = login(addr, "admin", CHANGED).await;
    assert_eq!((st, v["must_change"].as_bool()), (StatusCode::OK, Some(false)));
}

#[tokio::test]
async fn the_environment_wins_over_the_config_and_short_ones_refuse_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = "from-the-environment-0123";
    let cfg = no_keys(dir.path(), &format!("dashboard_initial_password = {INITIAL:?}"));
    let b = Broker::start_with_env(&cfg, &[("PORTCULLIS_DASHBOARD_PASSWORD", env)]);
    let addr = admin_of(&b);
    let (st, _, _, _) = login(addr, "admin", INITIAL).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _, v) = login(addr, "admin", env).await;
    assert_eq!((st, v["must_change"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    assert!(!b.log().contains(env), "never logged");

    // Too short in the config: the key is named.
    let out = std::process::Command::new(portcullis_tests::binary())
        .arg("--config")
        .arg({
            let p = dir.path().join("short.toml");
            std::fs::write(&p, no_keys(&dir.path().join("x"), "dashboard_initial_password = \"short\"")).expect("cfg");
            p
        })
        .arg("--check-config")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("admin.dashboard_initial_password"), "{err}");
}

#[tokio::test]
async fn lockout_covers_first_admin_attempts_and_password_changes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&no_keys(dir.path(), "login_failures = 3\nlogin_lockout = \"1h\""));
    let addr = admin_of(&b);
    for _ in 0..3 {
        let (st, _) = first_admin(addr, "root", FIRST_SECRET, true).await;
        assert_eq!(st, StatusCode::FORBIDDEN);
    }
    // Locked out: even a good attempt straight from loopback.
    let (st, _) = first_admin(addr, "root", FIRST_SECRET, false).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);

    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&no_keys(
        dir.path(),
        &format!("login_failures = 3\nlogin_lockout = \"1h\"\ndashboard_initial_password = {INITIAL:?}"),
    ));
    let addr = admin_of(&b);
    let (_, _, cookie, v) = login(addr, "admin", INITIAL).await;
    let cookie = cookie.expect("cookie");
    let csrf = v["csrf"].as_str().expect("csrf").to_string();
    let change = |current: &str| json!({"current": current, "new": CHANGED});
    for _ in 0..3 {
        let (st, _, e) = call(
            addr,
            Method::POST,
            "/dashboard/password",
            Some(&cookie),
            Some(&csrf),
            Some(change("wrong-0123456789abc")),
        )
        .await;
        assert_eq!((st, e["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("BAD_USERNAME_OR_PWD")));
    }
    let (st, _, _) =
        call(addr, Method::POST, "/dashboard/password", Some(&cookie), Some(&csrf), Some(change(INITIAL))).await;
    assert_eq!(st, StatusCode::TOO_MANY_REQUESTS);
}

// ---------------------------------------------------------------------
// Explain: the page answers like the CLI.

fn passwd(file: &Path, user: &str, password: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(portcullis_tests::binary())
        .args(["passwd", file.to_str().expect("utf-8"), user, "--hash", "pbkdf2"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("portcullis passwd");
    child.stdin.take().expect("stdin").write_all(format!("{password}\n").as_bytes()).expect("write");
    assert!(child.wait().expect("wait").success(), "passwd {user}");
}

/// A broker with a password file (alice, bob) after an anonymous provider,
/// an ACL file, and the kit's keys.
fn explain_broker(dir: &Path) -> Broker {
    let boot = dir.join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    let pw = dir.join("passwd");
    passwd(&pw, "alice", "alice-pw-explained");
    passwd(&pw, "bob", "bob-pw-explained");
    let acl = dir.join("acl.toml");
    std::fs::write(
        &acl,
        "[[rule]]\npermission = \"deny\"\naction = \"publish\"\ntopics = [\"denied/#\"]\n\n\
         [[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n",
    )
    .expect("acl");
    Broker::start(&format!(
        "[auth]\nchain = [\"anon\", \"pw\"]\n[auth.anonymous.anon]\n[auth.password_file.pw]\npath = {}\n\
         [acl]\nchain = [\"rules\"]\n[acl.file.rules]\npath = {}\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\n",
        tp(&pw),
        tp(&acl),
        tp(&dir.join("data")),
        tp(&boot),
    ))
}

/// The CLI's JSON answer (`--json`), the password on stdin.
fn cli(config: &Path, args: &[&str], stdin: &str) -> Value {
    use std::io::Write;
    let mut child = std::process::Command::new(portcullis_tests::binary())
        .arg("--config")
        .arg(config)
        .args(args)
        .arg("--json")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("portcullis");
    child.stdin.take().expect("stdin").write_all(format!("{stdin}\n").as_bytes()).expect("write");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > end {
            let _ = child.kill();
            panic!("{args:?}: the CLI did not exit within 20 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// Decision, deciding provider/rule, and each step (provider, result,
/// rule), as the page shows them in its data-* attributes.
async fn page_answer(c: &mut Chromium, prefix: &str) -> Value {
    c.eval(&format!(
        "(() => {{ const b = document.getElementById('{prefix}-result'); \
           return {{ decision: b.dataset.decision, decided_by: b.dataset.decidedBy, chain: b.dataset.chain, \
             steps: [...b.querySelectorAll('tbody tr')].map((r) => [r.dataset.provider, r.dataset.result, r.dataset.rule]) }}; }})()"
    ))
    .await
}

fn cli_answer(v: &Value) -> Value {
    let steps: Vec<Value> = v["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| json!([s["provider"], s["result"], s["rule"].as_str().unwrap_or("")]))
        .collect();
    json!({"decision": v["decision"], "decided_by": v["decided_by"], "chain": v["chain"], "steps": steps})
}

async fn explain_auth_on_page(c: &mut Chromium, client: &str, user: &str, password: &str) -> Value {
    c.eval(&format!(
        "delete document.getElementById('xa-result').dataset.decision; \
         document.getElementById('xa-client').value = {client:?}; \
         document.getElementById('xa-user').value = {user:?}; \
         document.getElementById('xa-pass').value = {password:?}; \
         document.getElementById('xa-peer').value = '127.0.0.1'; \
         document.getElementById('xa-submit').click(); true"
    ))
    .await;
    c.wait_for("document.getElementById('xa-result').dataset.decision").await;
    assert_eq!(c.eval("document.getElementById('xa-pass').value").await, "", "the password is not kept");
    let html = c.eval("document.documentElement.outerHTML").await;
    assert!(!html.as_str().expect("html").contains(password), "the password is nowhere in the page");
    page_answer(c, "xa").await
}

async fn explain_acl_on_page(c: &mut Chromium, client: &str, user: &str, action: &str, topic: &str) -> Value {
    c.eval(&format!(
        "delete document.getElementById('xc-result').dataset.decision; \
         document.getElementById('xc-client').value = {client:?}; \
         document.getElementById('xc-user').value = {user:?}; \
         document.getElementById('xc-topic').value = {topic:?}; \
         document.getElementById('xc-action').value = {action:?}; \
         document.getElementById('xc-qos').value = '1'; \
         document.getElementById('xc-submit').click(); true"
    ))
    .await;
    c.wait_for("document.getElementById('xc-result').dataset.decision").await;
    page_answer(c, "xc").await
}

#[tokio::test]
async fn explain_page_answers_like_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = explain_broker(dir.path());
    let addr = admin_of(&b);
    let cfg = b.config_path.clone();
    let mut c = Chromium::start().await;
    c.log_in(&format!("http://{addr}/dashboard/"), "admin", SECRET).await;
    c.open_page("explain").await;

    // Authentication: allowed by the password file, denied (bad password).
    let page = explain_auth_on_page(&mut c, "dev1", "alice", "alice-pw-explained").await;
    let cli_v = cli(&cfg, &["auth", "check", "--client-id", "dev1", "--username", "alice"], "alice-pw-explained");
    assert_eq!(page, cli_answer(&cli_v), "auth allow: page vs CLI");
    assert_eq!(page["decision"], "allow");
    assert!(page["decided_by"].as_str().is_some_and(|d| d.starts_with("provider pw")), "{page}");
    let allow_auth = page;

    // ACL: allowed by the catch-all rule.
    let page = explain_acl_on_page(&mut c, "dev1", "alice", "subscribe", "a/#").await;
    let cli_v = cli(
        &cfg,
        &["acl", "explain", "--client-id", "dev1", "--username", "alice", "--subscribe", "a/#", "--qos", "1"],
        "",
    );
    assert_eq!(page, cli_answer(&cli_v), "acl allow: page vs CLI");
    assert_eq!(page["decision"], "allow");
    c.eval("document.getElementById('xc-result').scrollIntoView({block: 'end'}); true").await;
    c.screenshot("explain-allow").await;

    let page = explain_auth_on_page(&mut c, "dev2", "bob", "not-bobs-password").await;
    let cli_v = cli(&cfg, &["auth", "check", "--client-id", "dev2", "--username", "bob"], "not-bobs-password");
    assert_eq!(page, cli_answer(&cli_v), "auth deny: page vs CLI");
    assert_eq!(page["decision"], "deny");
    assert_ne!(page, allow_auth);
    let page = explain_acl_on_page(&mut c, "dev2", "bob", "publish", "denied/x").await;
    let cli_v = cli(
        &cfg,
        &["acl", "explain", "--client-id", "dev2", "--username", "bob", "--publish", "denied/x", "--qos", "1"],
        "",
    );
    assert_eq!(page, cli_answer(&cli_v), "acl deny: page vs CLI");
    assert_eq!(page["decision"], "deny");
    assert!(page["steps"][0][2].as_str().is_some_and(|r| !r.is_empty()), "the deciding rule is named: {page}");
    c.eval("document.getElementById('xc-result').scrollIntoView({block: 'end'}); true").await;
    c.screenshot("explain-deny").await;
    for pw in ["alice-pw-explained", "not-bobs-password"] {
        assert!(!b.log().contains(pw), "never logged");
    }

    // A viewer sees the form but cannot run it (a POST).
    let mut v = Chromium::start().await;
    v.log_in(&format!("http://{addr}/dashboard/"), "view", SECRET).await;
    v.open_page("explain").await;
    assert_eq!(
        v.eval("document.getElementById('xa-submit').disabled && document.getElementById('xc-submit').disabled").await,
        true
    );
    let (_, _, cookie, s) = login(addr, "view", SECRET).await;
    let (st, _, _) = call(
        addr,
        Method::POST,
        "/api/v5/authorization/explain",
        cookie.as_deref(),
        s["csrf"].as_str(),
        Some(json!({"clientid": "x", "action": "publish", "topic": "a"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------------
// Users and rules of the built-in store, and their effect over MQTT.

fn users_broker(dir: &Path) -> Broker {
    let boot = dir.join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    Broker::start(&format!(
        "[auth]\nchain = [\"users\"]\n[auth.builtin.users]\npath = {db}\npoll = \"100ms\"\n\
         [acl]\nchain = [\"rules\"]\nno_match = \"deny\"\n[acl.builtin.rules]\npath = {db}\npoll = \"100ms\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\n",
        tp(&dir.join("data")),
        tp(&boot),
        db = tp(&dir.join("users.db")),
    ))
}

/// The CONNACK code of `user`/`password` once it equals `want` (the broker
/// sees a store change at its next poll), or the last one after 5 s.
async fn connack_becomes(b: &Broker, version: ProtocolVersion, user: &str, password: &str, want: u8) -> u8 {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (_, c) = try_login(b.addr, version, &format!("c-{user}"), Some(user), Some(password)).await;
        let c = c.expect("a CONNACK");
        if c == want || std::time::Instant::now() > end {
            return c;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The SUBACK code for `filter` once it equals `want`, or the last one.
async fn suback_becomes(b: &Broker, user: &str, password: &str, filter: &str, want: u8) -> u8 {
    let end = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let mut id = 1;
    loop {
        let (mut raw, c) = try_login(b.addr, V5, &format!("s-{user}"), Some(user), Some(password)).await;
        assert_eq!(c, Some(0));
        let code = sub_code(&mut raw, id, filter, QoS::AtLeastOnce).await;
        if code == want || std::time::Instant::now() > end {
            return code;
        }
        id += 1;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The user ids the page shows, and the API's.
async fn users_match(c: &mut Chromium, addr: std::net::SocketAddr) -> Vec<String> {
    let api = api_get(addr, "/api/v5/authentication/users/users?limit=1000").await;
    let mut want: Vec<String> =
        api["data"].as_array().expect("data").iter().map(|u| u["user_id"].as_str().expect("id").to_string()).collect();
    want.sort();
    let js = format!(
        "(() => {{ const ids = [...document.querySelectorAll('#users-rows tr')].map((r) => r.dataset.userId).sort(); \
           return JSON.stringify(ids) === {:?} && document.getElementById('users-rows').dataset.count === '{}'; }})()",
        serde_json::to_string(&want).expect("json"),
        api["meta"]["count"]
    );
    c.wait_for(&js).await;
    want
}

#[tokio::test]
async fn users_page_adds_changes_and_deletes_users_and_rules_with_effect_over_mqtt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = users_broker(dir.path());
    let addr = admin_of(&b);
    let mut c = Chromium::start().await;
    c.log_in(&format!("http://{addr}/dashboard/"), "admin", SECRET).await;
    c.open_page("users").await;
    c.wait_for("document.getElementById('users-rows') && document.getElementById('users-rows').dataset.count === '0'")
        .await;
    assert_eq!(c.eval("document.getElementById('users-store').value").await, "users");
    assert_eq!(c.eval("document.getElementById('rules-source').value").await, "rules");

    // Add: alice logs in with that password.
    c.eval(
        "document.getElementById('user-add-id').value = 'alice'; \
         document.getElementById('user-add-pass').value = 'alice-pw-one'; \
         document.getElementById('user-add-submit').click(); true",
    )
    .await;
    c.wait_for("document.querySelector('#users-rows tr[data-user-id=\"alice\"]')").await;
    assert_eq!(c.eval("document.getElementById('user-add-pass').value").await, "");
    assert_eq!(users_match(&mut c, addr).await, vec!["alice".to_string()]);
    assert_eq!(connack_becomes(&b, V5, "alice", "alice-pw-one", 0).await, 0, "added from the page: logs in");

    // A rule: denied (no_match = deny) until the page adds one.
    assert_eq!(suback_becomes(&b, "alice", "alice-pw-one", "a/b", 0x87).await, 0x87);
    c.eval(
        "document.getElementById('rule-kind').value = 'username'; \
         document.getElementById('rule-who').value = 'alice'; \
         document.getElementById('rule-permission').value = 'allow'; \
         document.getElementById('rule-action').value = 'subscribe'; \
         document.getElementById('rule-topic').value = 'a/#'; \
         document.getElementById('rule-add-submit').click(); true",
    )
    .await;
    c.wait_for("document.getElementById('rules-rows').dataset.count === '1'").await;
    let rules = api_get(addr, "/api/v5/authorization/sources/rules/rules").await;
    let rule_id = rules["data"][0]["id"].as_i64().expect("id");
    assert_eq!(
        (rules["data"][0]["topic"].as_str(), rules["data"][0]["username"].as_str()),
        (Some("a/#"), Some("alice"))
    );
    assert_eq!(
        c.eval(&format!("document.querySelector('#rules-rows tr[data-rule-id=\"{rule_id}\"]').dataset.topic")).await,
        "a/#"
    );
    assert_eq!(suback_becomes(&b, "alice", "alice-pw-one", "a/b", 1).await, 1, "the rule grants the subscription");
    c.screenshot("users").await;
    c.eval("document.getElementById('rules-section').scrollIntoView(); true").await;
    c.screenshot("users-rules").await;
    c.viewport(390, 844, true).await;
    c.screenshot("users-phone").await;
    c.viewport(1280, 800, false).await;

    // Delete the rule from the page: refused again.
    c.eval(&format!(
        "{{ const b = document.querySelector('#rules-rows tr[data-rule-id=\"{rule_id}\"] button.del'); b.click(); b.click(); }} true"
    ))
    .await;
    c.wait_for("document.getElementById('rules-rows').dataset.count === '0'").await;
    assert_eq!(suback_becomes(&b, "alice", "alice-pw-one", "a/b", 0x87).await, 0x87);

    // Change the password: the old one is refused (0x86 in 5.0, 0x04 in
    // 3.1.1), the new one works.
    c.eval(
        "{ const r = document.querySelector('#users-rows tr[data-user-id=\"alice\"]'); \
         r.querySelector('input.newpw').value = 'alice-pw-two'; r.querySelector('button.pw-save').click(); } true",
    )
    .await;
    c.wait_for("document.getElementById('users-status').textContent.includes('changed')").await;
    assert_eq!(c.eval("[...document.querySelectorAll('input.newpw')].map((i) => i.value).join('')").await, "");
    assert_eq!(connack_becomes(&b, V5, "alice", "alice-pw-one", 0x86).await, 0x86);
    assert_eq!(connack_becomes(&b, V3, "alice", "alice-pw-one", 0x04).await, 0x04);
    assert_eq!(connack_becomes(&b, V5, "alice", "alice-pw-two", 0).await, 0);

    // Delete: refused.
    c.eval("{ const b = document.querySelector('#users-rows tr[data-user-id=\"alice\"] button.del'); b.click(); b.click(); } true")
        .await;
    c.wait_for("document.getElementById('users-rows').dataset.count === '0'").await;
    assert!(users_match(&mut c, addr).await.is_empty());
    assert_ne!(connack_becomes(&b, V5, "alice", "alice-pw-two", 0x86).await, 0, "deleted: refused");
    for pw in ["alice-pw-one", "alice-pw-two"] {
        assert!(!b.log().contains(pw), "never logged");
    }

    // A viewer: every write control disabled, and the API refuses.
    let (st, _) = http()
        .post(format!("http://{addr}/api/v5/authentication/users/users"))
        .basic_auth("admin", Some(SECRET))
        .json(&json!({"user_id": "bob", "password": "bob-pw"}))
        .send()
        .await
        .map(|r| (r.status(), ()))
        .expect("request");
    assert_eq!(st, StatusCode::CREATED);
    let mut v = Chromium::start().await;
    v.log_in(&format!("http://{addr}/dashboard/"), "view", SECRET).await;
    v.open_page("users").await;
    v.wait_for("document.querySelector('#users-rows tr[data-user-id=\"bob\"]')").await;
    assert_eq!(
        v.eval(
            "['user-add-submit', 'rule-add-submit'].every((id) => document.getElementById(id).disabled) \
             && [...document.querySelectorAll('#users-rows button, #users-rows input')].every((b) => b.disabled)"
        )
        .await,
        true
    );
    let (_, _, cookie, s) = login(addr, "view", SECRET).await;
    for (m, path, body) in [
        (Method::POST, "/api/v5/authentication/users/users", Some(json!({"user_id": "eve", "password": "x"}))),
        (Method::DELETE, "/api/v5/authentication/users/users/bob", None),
        (
            Method::POST,
            "/api/v5/authorization/sources/rules/rules",
            Some(json!({"username": "bob", "permission": "allow", "action": "all", "topic": "#"})),
        ),
    ] {
        let (st, _, _) = call(addr, m.clone(), path, cookie.as_deref(), s["csrf"].as_str(), body).await;
        assert_eq!(st, StatusCode::FORBIDDEN, "{m} {path}");
    }
}

// ---------------------------------------------------------------------
// Auth & ACL: providers, counters, health, caches, as the API says.

/// Waits until every row of the page's table `id` (auth or acl) carries
/// the API's counters and health for its (provider, chain).
async fn sources_match(c: &mut Chromium, id: &str, sources: &Value) {
    let want: Vec<Value> = sources
        .as_array()
        .expect("sources")
        .iter()
        .map(|s| {
            let m = &s["metrics"];
            json!([
                s["id"],
                s["chain"],
                s["status"],
                m["calls"],
                m["allow"],
                m["deny"],
                m["ignore"],
                m["error"],
                m["timeout"]
            ])
        })
        .collect();
    let want = serde_json::to_string(&want).expect("json");
    c.wait_for(&format!(
        "JSON.stringify([...document.querySelectorAll('#{id}-rows tr')].map((r) => [r.dataset.id, r.dataset.chain, \
           r.dataset.status, ...['calls', 'allow', 'deny', 'ignore', 'error', 'timeout'].map((k) => Number(r.dataset[k]))])) === {want:?}"
    ))
    .await;
}

#[tokio::test]
async fn auth_page_shows_every_provider_and_source_with_the_apis_counters_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = explain_broker(dir.path());
    let addr = admin_of(&b);
    // Traffic: an allow by the password file, a deny, an ACL allow and deny.
    let (mut raw, code) = try_login(b.addr, V5, "t1", Some("alice"), Some("alice-pw-explained")).await;
    assert_eq!(code, Some(0));
    assert_eq!(sub_code(&mut raw, 1, "a/b", QoS::AtLeastOnce).await, 1);
    let (_, code) = try_login(b.addr, V5, "t2", Some("bob"), Some("wrong")).await;
    assert_eq!(code, Some(0x86));

    let mut c = Chromium::start().await;
    c.log_in(&format!("http://{addr}/dashboard/"), "admin", SECRET).await;
    c.open_page("auth").await;
    let auth = api_get(addr, "/api/v5/authentication").await;
    assert_eq!(auth.as_array().map(Vec::len), Some(2), "{auth}");
    sources_match(&mut c, "auth", &auth).await;
    let acl = api_get(addr, "/api/v5/authorization/sources").await;
    sources_match(&mut c, "acl", &acl["sources"]).await;
    assert_eq!(c.eval("document.querySelector('#auth-rows tr[data-id=\"pw\"]').dataset.deny").await, "1");

    // Live: another deny shows without a reload.
    let (_, code) = try_login(b.addr, V5, "t3", Some("bob"), Some("wrong-again")).await;
    assert_eq!(code, Some(0x86));
    let auth = api_get(addr, "/api/v5/authentication").await;
    sources_match(&mut c, "auth", &auth).await;
    assert_eq!(c.eval("document.querySelector('#auth-rows tr[data-id=\"pw\"]').dataset.deny").await, "2");

    // A provider's totals (its /status).
    c.eval("document.querySelector('#auth-rows tr[data-id=\"pw\"] button').click(); true").await;
    let st = api_get(addr, "/api/v5/authentication/pw/status").await;
    c.wait_for(&format!(
        "(() => {{ const d = document.getElementById('provider-detail'); return !d.hidden && d.dataset.id === 'pw' \
           && d.dataset.status === {:?} && d.dataset.calls === '{}' && d.dataset.deny === '{}'; }})()",
        st["status"].as_str().expect("status"),
        st["metrics"]["calls"],
        st["metrics"]["deny"]
    ))
    .await;

    // Caches: the API's numbers, and purge.
    let ac = api_get(addr, "/api/v5/authentication/cache").await;
    let cc = api_get(addr, "/api/v5/authorization/cache").await;
    assert!(cc["entries"].as_u64().is_some(), "the ACL cache reports its size: {cc}");
    c.wait_for(&format!(
        "document.getElementById('cache-auth').dataset.misses === '{}' && document.getElementById('cache-auth').dataset.entries === '{}' \
         && document.getElementById('cache-acl').dataset.hits === '{}' && document.getElementById('cache-acl').dataset.misses === '{}'",
        ac["misses"], ac["entries"], cc["hits"], cc["misses"]
    ))
    .await;
    c.screenshot("auth").await;
    c.eval("{ const b = document.getElementById('purge-acl'); b.click(); b.click(); } true").await;
    c.wait_for("document.getElementById('auth-status').textContent.includes('ACL cache purged')").await;
    // A purged ACL cache asks the chain again: one more miss.
    let before = api_get(addr, "/api/v5/authorization/cache").await["misses"].as_u64().expect("misses");
    assert_eq!(sub_code(&mut raw, 2, "a/b", QoS::AtLeastOnce).await, 1);
    let after = api_get(addr, "/api/v5/authorization/cache").await["misses"].as_u64().expect("misses");
    assert_eq!(after, before + 1, "purged from the page: the same subscribe missed");

    // A viewer cannot purge.
    let mut v = Chromium::start().await;
    v.log_in(&format!("http://{addr}/dashboard/"), "view", SECRET).await;
    v.open_page("auth").await;
    v.wait_for("document.querySelector('#auth-rows tr')").await;
    assert_eq!(
        v.eval("document.getElementById('purge-auth').disabled && document.getElementById('purge-acl').disabled").await,
        true
    );
}
