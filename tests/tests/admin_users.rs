//! The built-in user store's users and ACL rules through the admin API
//! (`/api/v5/authentication/{id}/users`,
//! `/api/v5/authorization/sources/{id}/rules`) and `portcullis ctl users …`
//! / `ctl acl add|del|list`, against the real binary: a user added through
//! the API logs in over MQTT, a password changed or a user deleted stops
//! doing so, a rule added decides a publish; 400, 401, 403 (a viewer
//! writing), 404, 409; ctl with and without `--json`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::ProtocolVersion;
use portcullis_tests::backend::try_login;
use portcullis_tests::{binary, Broker};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SECRET: &str = "s3cret-0123456789abcdef";
const V5: ProtocolVersion = ProtocolVersion::V5;

fn broker(dir: &Path) -> Broker {
    let boot = dir.join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    Broker::start(&format!(
        "[auth]\nchain = [\"users\"]\n[auth.builtin.users]\npath = \"{db}\"\npoll = \"100ms\"\n\
         [acl]\nchain = [\"rules\"]\nno_match = \"deny\"\n[acl.builtin.rules]\npath = \"{db}\"\npoll = \"100ms\"\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"{}\"\ndata_dir = \"{}\"\nbootstrap_file = \"{}\"\n",
        dir.join("admin.sock").display(),
        dir.join("data").display(),
        boot.display(),
        db = dir.join("users.db").display(),
    ))
}

async fn call(b: &Broker, key: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let addr = b.admin_addr().expect("admin");
    let mut req = reqwest::Client::new().request(method, format!("http://{addr}{path}")).basic_auth(key, Some(SECRET));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let res = req.send().await.expect("request");
    let st = res.status();
    (st, res.json().await.unwrap_or(Value::Null))
}

/// Whether `user`/`password` logs in, waiting up to 5 s for it to become
/// `want` (the broker sees a store change at its next poll).
async fn logs_in_eventually(b: &Broker, user: &str, password: &str, want: bool) -> bool {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, code) = try_login(b.addr, V5, &format!("c-{user}"), Some(user), Some(password)).await;
        let ok = code == Some(0);
        if ok == want || Instant::now() > end {
            return ok;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn users_through_the_api() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let users = "/api/v5/authentication/users/users";
    let (st, v) = call(&b, "admin", Method::POST, users, Some(json!({"user_id": "alice", "password": "pw-1"}))).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert_eq!((v["user_id"].as_str(), v["is_superuser"].as_bool()), (Some("alice"), Some(false)));
    assert!(v.get("password").is_none() && v.get("password_hash").is_none(), "{v}");
    assert!(logs_in_eventually(&b, "alice", "pw-1", true).await, "added through the API: logs in");

    let (st, v) = call(&b, "admin", Method::POST, users, Some(json!({"user_id": "alice", "password": "x"}))).await;
    assert_eq!((st, v["code"].as_str()), (StatusCode::CONFLICT, Some("ALREADY_EXISTS")));
    let (st, _) = call(&b, "admin", Method::POST, users, Some(json!({"user_id": "bob", "password": ""}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(&b, "admin", Method::POST, users, Some(json!({"user_id": "bob"}))).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
    let (st, _) = call(
        &b,
        "admin",
        Method::POST,
        "/api/v5/authentication/nope/users",
        Some(json!({"user_id": "b", "password": "p"})),
    )
    .await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    let (st, _) = call(&b, "view", Method::POST, users, Some(json!({"user_id": "bob", "password": "p"}))).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "a viewer does not write");
    let (st, _) = call(&b, "nobody", Method::GET, users, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    let (st, v) = call(&b, "view", Method::GET, &format!("{users}?like_user_id=lic"), None).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!((v["meta"]["count"].as_u64(), v["data"][0]["user_id"].as_str()), (Some(1), Some("alice")), "{v}");
    let (st, v) = call(&b, "view", Method::GET, &format!("{users}/alice"), None).await;
    assert_eq!((st, v["user_id"].as_str()), (StatusCode::OK, Some("alice")));
    assert_eq!(call(&b, "view", Method::GET, &format!("{users}/zed"), None).await.0, StatusCode::NOT_FOUND);

    let (st, v) = call(
        &b,
        "admin",
        Method::PUT,
        &format!("{users}/alice"),
        Some(json!({"password": "pw-2", "is_superuser": true})),
    )
    .await;
    assert_eq!((st, v["is_superuser"].as_bool()), (StatusCode::OK, Some(true)), "{v}");
    assert!(!logs_in_eventually(&b, "alice", "pw-1", false).await, "the old password stops working");
    assert!(logs_in_eventually(&b, "alice", "pw-2", true).await);
    assert_eq!(
        call(&b, "admin", Method::PUT, &format!("{users}/alice"), Some(json!({}))).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&b, "admin", Method::PUT, &format!("{users}/zed"), Some(json!({"password": "p"}))).await.0,
        StatusCode::NOT_FOUND
    );

    assert_eq!(call(&b, "admin", Method::DELETE, &format!("{users}/alice"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&b, "admin", Method::DELETE, &format!("{users}/alice"), None).await.0, StatusCode::NOT_FOUND);
    assert!(!logs_in_eventually(&b, "alice", "pw-2", false).await, "deleted: refused");
}

/// `ctl users …` over the socket; `stdin` is the password.
fn ctl(b: &Broker, args: &[&str], stdin: &str) -> (i32, String) {
    use std::io::Write;
    let mut child = Command::new(binary())
        .arg("--config")
        .arg(&b.config_path)
        .arg("ctl")
        .args(args)
        .env_remove("PORTCULLIS_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    child.stdin.take().expect("stdin").write_all(stdin.as_bytes()).expect("write");
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ctl {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = child.wait_with_output().expect("output");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn ctl_users_with_and_without_json() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    assert_eq!(ctl(&b, &["users", "add", "carol"], "pw-c\n"), (0, "added carol\n".to_string()));
    let (code, out) = ctl(&b, &["--json", "users", "add", "dave", "--superuser"], "pw-d\n");
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!((v["user_id"].as_str(), v["is_superuser"].as_bool()), (Some("dave"), Some(true)));
    assert_eq!(ctl(&b, &["users", "add", "carol"], "x\n").0, 1, "exists");
    assert_eq!(ctl(&b, &["users", "add", "erin"], "").0, 2, "no password");
    assert!(logs_in_eventually(&b, "carol", "pw-c", true).await);

    let (code, out) = ctl(&b, &["users", "list"], "");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("USERNAME") && out.contains("carol") && out.contains("dave") && out.contains("2 of 2"),
        "{out}"
    );
    let (_, out) = ctl(&b, &["--json", "users", "list", "--like", "car"], "");
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["meta"]["count"], 1, "{v}");

    assert_eq!(ctl(&b, &["users", "passwd", "carol"], "pw-c2\n"), (0, "set the password of carol\n".to_string()));
    assert!(logs_in_eventually(&b, "carol", "pw-c2", true).await);
    let (code, out) = ctl(&b, &["--json", "users", "passwd", "dave", "--source", "users"], "pw-d2\n");
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["user_id"], "dave");

    assert_eq!(ctl(&b, &["users", "del", "carol"], ""), (0, "deleted carol\n".to_string()));
    let (code, out) = ctl(&b, &["--json", "users", "del", "dave"], "");
    assert_eq!((code, serde_json::from_str::<Value>(&out).expect("json")["ok"].as_bool()), (0, Some(true)));
    assert_eq!(ctl(&b, &["users", "del", "dave"], "").0, 1, "gone");
    assert_eq!(ctl(&b, &["users", "list", "--source", "nope"], "").0, 1, "no such provider: 404");
    assert!(!logs_in_eventually(&b, "carol", "pw-c2", false).await);
}

/// The PUBACK code of one QoS 1 publish by `user`, waiting up to 5 s for
/// it to become `want` (the broker sees a store change at its next poll).
async fn puback_eventually(b: &Broker, user: &str, password: &str, topic: &str, want: u8) -> u8 {
    use portcullis_core::codec::QoS;
    let end = Instant::now() + Duration::from_secs(5);
    let mut id = 0;
    loop {
        id += 1;
        let (mut c, code) = try_login(b.addr, V5, &format!("p-{user}"), Some(user), Some(password)).await;
        assert_eq!(code, Some(0), "{user} logs in");
        let got = portcullis_tests::kit::pub_simple(&mut c, topic, QoS::AtLeastOnce, id, b"x", false).await;
        if got == want || Instant::now() > end {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn acl_rules_through_the_api_and_ctl() {
    use reqwest::Method;
    let dir = tempfile::tempdir().expect("tempdir");
    let b = broker(dir.path());
    let users = "/api/v5/authentication/users/users";
    let rules = "/api/v5/authorization/sources/rules/rules";
    let (st, _) = call(&b, "admin", Method::POST, users, Some(json!({"user_id": "gil", "password": "pw-g"}))).await;
    assert_eq!(st, StatusCode::CREATED);
    // No rule: no_match denies (0x87 not authorized; 0x10 would be "no subscribers").
    assert_eq!(puback_eventually(&b, "gil", "pw-g", "home/gil/t", 0x87).await, 0x87);

    let body = json!({"username": "gil", "permission": "allow", "action": "publish", "topic": "home/${username}/#"});
    let (st, v) = call(&b, "admin", Method::POST, rules, Some(body)).await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().expect("id");
    assert_eq!((v["username"].as_str(), v["clientid"].as_str()), (Some("gil"), None));
    assert_eq!(puback_eventually(&b, "gil", "pw-g", "home/gil/t", 0x10).await, 0x10, "allowed now");

    for bad in [
        json!({"permission": "allow", "action": "publish", "topic": "a"}),
        json!({"username": "gil", "clientid": "c", "permission": "allow", "action": "publish", "topic": "a"}),
        json!({"username": "gil", "permission": "maybe", "action": "publish", "topic": "a"}),
        json!({"username": "gil", "permission": "allow", "action": "publish", "topic": "a/#/b"}),
    ] {
        assert_eq!(call(&b, "admin", Method::POST, rules, Some(bad.clone())).await.0, StatusCode::BAD_REQUEST, "{bad}");
    }
    let (st, _) = call(
        &b,
        "view",
        Method::POST,
        rules,
        Some(json!({"username": "x", "permission": "allow", "action": "all", "topic": "#"})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert_eq!(
        call(&b, "admin", Method::GET, "/api/v5/authorization/sources/nope/rules", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (st, v) = call(&b, "view", Method::GET, &format!("{rules}?username=gil"), None).await;
    assert_eq!((st, v["meta"]["count"].as_u64()), (StatusCode::OK, Some(1)), "{v}");
    let (st, v) = call(&b, "view", Method::GET, &format!("{rules}/{id}"), None).await;
    assert_eq!((st, v["topic"].as_str()), (StatusCode::OK, Some("home/${username}/#")));
    assert_eq!(call(&b, "admin", Method::DELETE, &format!("{rules}/{id}"), None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(call(&b, "admin", Method::DELETE, &format!("{rules}/{id}"), None).await.0, StatusCode::NOT_FOUND);
    assert_eq!(puback_eventually(&b, "gil", "pw-g", "home/gil/t", 0x87).await, 0x87, "denied again");

    // ctl acl add | list | del
    let (code, out) =
        ctl(&b, &["acl", "add", "--username", "gil", "allow", "publish", "home/${username}/#", "--qos", "1"], "");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("permission") && out.contains("allow"), "{out}");
    assert_eq!(puback_eventually(&b, "gil", "pw-g", "home/gil/t", 0x10).await, 0x10);
    let (code, out) = ctl(&b, &["--json", "acl", "add", "--clientid", "dev-1", "deny", "all", "#"], "");
    assert_eq!(code, 0);
    let second = serde_json::from_str::<Value>(&out).expect("json")["id"].as_i64().expect("id");
    let (code, out) = ctl(&b, &["acl", "list"], "");
    assert_eq!(code, 0);
    assert!(
        out.starts_with("ID") && out.contains("home/${username}/#") && out.contains("dev-1") && out.contains("2 of 2"),
        "{out}"
    );
    let (_, out) = ctl(&b, &["--json", "acl", "list", "--clientid", "dev-1"], "");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["meta"]["count"], 1);
    assert_eq!(ctl(&b, &["acl", "del", &second.to_string()], ""), (0, format!("deleted rule {second}\n")));
    let (_, out) = ctl(&b, &["--json", "acl", "list"], "");
    let first = serde_json::from_str::<Value>(&out).expect("json")["data"][0]["id"].as_i64().expect("id");
    let (code, out) = ctl(&b, &["--json", "acl", "del", &first.to_string()], "");
    assert_eq!((code, serde_json::from_str::<Value>(&out).expect("json")["ok"].as_bool()), (0, Some(true)));
    assert_eq!(ctl(&b, &["acl", "del", &first.to_string()], "").0, 1, "gone");
    assert_eq!(puback_eventually(&b, "gil", "pw-g", "home/gil/t", 0x87).await, 0x87);
}
