//! `portcullis ctl` against a live broker: every command, with and without
//! `--json`, over the admin API's Unix socket (no key: mode 0600), and over
//! HTTP with an API key (`--url`, `PORTCULLIS_API_KEY`, `--key-file`);
//! `ctl status` exits non-zero when the broker is down. Also the offline
//! `auth check` / `acl explain` in their human and `--json` forms.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{binary, Broker};
use serde_json::Value;

const SECRET: &str = "s3cret-0123456789abcdef";

/// Runs `portcullis --config <broker's config> ARGS` with `env`, stdin
/// empty, killed after 20 s.
fn run(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    // A broker that opens the default store (./data) before it fails does
    // so in its own directory.
    let cwd = tempfile::tempdir().expect("tempdir");
    let mut cmd = Command::new(binary());
    cmd.current_dir(cwd.path()).arg("--config").arg(config).args(args).env_remove("PORTCULLIS_API_KEY");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let end = Instant::now() + Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("portcullis {args:?} did not exit within 20 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// `ctl ARGS` through the broker's socket: exit code, stdout.
fn ctl(b: &Broker, args: &[&str]) -> (i32, String) {
    let mut all = vec!["ctl"];
    all.extend_from_slice(args);
    let out = run(&b.config_path, &all, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 {
        eprintln!("ctl {args:?}: exit {code}\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    }
    (code, stdout)
}

/// `ctl ARGS` that must succeed: its stdout.
fn ok(b: &Broker, args: &[&str]) -> String {
    let (code, out) = ctl(b, args);
    assert_eq!(code, 0, "ctl {args:?}");
    out
}

/// `ctl --json ARGS` that must succeed: its JSON.
fn ok_json(b: &Broker, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = ok(b, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ctl {all:?}: not JSON ({e}): {out}"))
}

/// The socket path the harness configured for `b`.
fn socket_of(b: &Broker) -> std::path::PathBuf {
    b.config_path.parent().expect("dir").join("admin.sock")
}

#[tokio::test]
async fn status_over_the_socket_and_when_the_broker_is_down() {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let mut b = Broker::start("");
    assert!(b.wait_log("admin API started", Duration::from_secs(10)));
    let sock = socket_of(&b);
    let meta = std::fs::metadata(&sock).expect("socket exists");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "only the owner may connect");
    let out = ok(&b, &["status"]);
    assert!(out.contains("is started") && out.contains("is running"), "{out}");
    let v = ok_json(&b, &["status"]);
    assert_eq!(v["running"], true, "{v}");
    assert_eq!(v["status"]["broker_status"], "started", "{v}");

    b.terminate();
    assert!(!sock.exists(), "the broker removes its socket when it stops");
    let (code, out) = ctl(&b, &["status"]);
    assert_eq!(code, 1, "down: {out}");
    assert!(out.contains("not running"), "{out}");
    let (code, out) = ctl(&b, &["--json", "status"]);
    assert_eq!(code, 1);
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["running"], false, "{v}");
    // Any other command cannot reach the API: exit 2.
    let (code, _) = ctl(&b, &["clients", "list"]);
    assert_eq!(code, 2);
}

/// A second broker on the same socket path leaves the running one's
/// socket alone and refuses to start (the path was set, not defaulted).
#[test]
fn a_socket_in_use_is_not_taken_over() {
    let b = Broker::start("");
    assert!(b.wait_log("admin API started", Duration::from_secs(10)));
    let sock = socket_of(&b);
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"{}\"\n",
        sock.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("second.toml");
    std::fs::write(&path, cfg).expect("write");
    let out = run(&path, &[], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("admin.socket"));
    assert!(ok(&b, &["status"]).contains("is started"), "the first broker still answers on it");
}

#[tokio::test]
async fn every_command_with_and_without_json() {
    let b = Broker::start("");
    assert!(b.wait_log("admin API started", Duration::from_secs(10)));
    // A v5 client with a subscription, and a retained message.
    let (mut c, _) = open_v5(b.addr, "ctl-dev", false, Properties::default()).await;
    subscribe(&mut c, 1, &[("ctl/in/#", QoS::AtLeastOnce)]).await;
    let (mut p, _) = open_v5(b.addr, "ctl-pub", true, Properties::default()).await;
    // 0x10: no matching subscribers, retained all the same.
    assert_eq!(pub_simple(&mut p, "ctl/kept/a b", QoS::AtLeastOnce, 1, b"hello", true).await, 0x10);

    // broker stats | metrics
    assert!(ok(&b, &["broker", "stats"]).contains("connections.count"));
    assert_eq!(ok_json(&b, &["broker", "stats"])["connections.count"], 2);
    let out = ok(&b, &["broker", "metrics"]);
    assert!(out.lines().count() > 5, "{out}");
    assert!(ok_json(&b, &["broker", "metrics"]).as_object().is_some_and(|m| !m.is_empty()));

    // clients list | show
    let out = ok(&b, &["clients", "list"]);
    assert!(out.starts_with("CLIENTID") && out.contains("ctl-dev") && out.contains("2 of 2 (page 1)"), "{out}");
    let v = ok_json(&b, &["clients", "list", "--like-clientid", "dev"]);
    assert_eq!(v["meta"]["count"], 1, "{v}");
    assert_eq!(v["data"][0]["clientid"], "ctl-dev");
    let out = ok(&b, &["clients", "list", "--limit", "1"]);
    assert!(out.contains("1 of 2 (page 1); next: --page 2"), "{out}");
    let out = ok(&b, &["clients", "show", "ctl-dev"]);
    assert!(out.contains("clientid") && out.contains("ctl-dev") && out.contains("proto_ver"), "{out}");
    assert_eq!(ok_json(&b, &["clients", "show", "ctl-dev"])["subscriptions_cnt"], 1);
    let (code, _) = ctl(&b, &["clients", "show", "nobody"]);
    assert_eq!(code, 1, "404 is a failure");
    let (code, out) = ctl(&b, &["--json", "clients", "show", "nobody"]);
    assert_eq!(code, 1);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["code"], "CLIENTID_NOT_FOUND");

    // sessions
    let out = ok(&b, &["sessions"]);
    assert!(out.starts_with("CLIENTID") && out.contains("EXPIRY") && out.contains("ctl-dev"), "{out}");
    assert_eq!(ok_json(&b, &["sessions"])["meta"]["count"], 2);

    // subscriptions list | add | del
    let out = ok(&b, &["subscriptions", "list"]);
    assert!(out.contains("ctl/in/#"), "{out}");
    assert_eq!(
        ok(&b, &["subscriptions", "add", "ctl-dev", "ctl/added", "--qos", "1"]).trim(),
        "subscribed ctl-dev to ctl/added"
    );
    assert_eq!(ok_json(&b, &["subscriptions", "add", "ctl-dev", "ctl/added2"])["topic"], "ctl/added2");
    let v = ok_json(&b, &["subscriptions", "list", "--clientid", "ctl-dev"]);
    let topics: Vec<&str> = v["data"].as_array().expect("data").iter().filter_map(|s| s["topic"].as_str()).collect();
    assert!(topics.contains(&"ctl/added") && topics.contains(&"ctl/added2"), "{v}");
    assert!(ok(&b, &["subscriptions", "del", "ctl-dev", "ctl/added"]).contains("unsubscribed"));
    assert_eq!(ok_json(&b, &["subscriptions", "del", "ctl-dev", "ctl/added2"])["ok"], true);
    assert_eq!(ok_json(&b, &["subscriptions", "list", "--clientid", "ctl-dev"])["meta"]["count"], 1);

    // topics
    assert!(ok(&b, &["topics"]).contains("ctl/in/#"));
    assert!(ok_json(&b, &["topics"])["data"].as_array().is_some_and(|t| t.iter().any(|t| t["topic"] == "ctl/in/#")));

    // retained list | show | delete
    let out = ok(&b, &["retained", "list"]);
    assert!(out.contains("ctl/kept/a b") && out.contains("ctl-pub"), "{out}");
    assert_eq!(ok_json(&b, &["retained", "list", "--topic", "ctl/kept/#"])["meta"]["count"], 1);
    assert!(ok(&b, &["retained", "show", "ctl/kept/a b"]).contains("payload"));
    assert_eq!(ok_json(&b, &["retained", "show", "ctl/kept/a b"])["payload"], "aGVsbG8=");
    assert!(ok(&b, &["retained", "delete", "ctl/kept/a b"]).contains("deleted"));
    assert_eq!(ctl(&b, &["retained", "show", "ctl/kept/a b"]).0, 1, "gone");
    assert_eq!(pub_simple(&mut p, "ctl/kept/b", QoS::AtLeastOnce, 2, b"x", true).await, 0x10);
    assert_eq!(ok_json(&b, &["retained", "delete", "ctl/kept/b"])["ok"], true);

    // listeners
    let out = ok(&b, &["listeners"]);
    assert!(out.starts_with("NAME") && out.contains("tcp") && out.contains(&b.addr.to_string()), "{out}");
    assert_eq!(ok_json(&b, &["listeners"])[0]["name"], "tcp");

    // banned list | add | del
    assert!(ok(&b, &["banned", "add", "peerhost", "127.0.0.9", "--reason", "test"]).contains("127.0.0.9"));
    assert_eq!(ok_json(&b, &["banned", "add", "peerhost-username", "eve@127.0.0.8"])["who"], "eve@127.0.0.8");
    let out = ok(&b, &["banned", "list"]);
    assert!(out.contains("127.0.0.9") && out.contains("eve@127.0.0.8"), "{out}");
    assert_eq!(ok_json(&b, &["banned", "list"])["meta"]["count"], 2);
    assert!(ok(&b, &["banned", "del", "peerhost", "127.0.0.9"]).contains("lifted"));
    assert_eq!(ok_json(&b, &["banned", "del", "peerhost-username", "eve@127.0.0.8"])["ok"], true);
    assert_eq!(ctl(&b, &["banned", "del", "peerhost", "127.0.0.9"]).0, 1, "no such ban");

    // auth sources | cache-clean, acl sources | cache-clean
    let out = ok(&b, &["auth", "sources"]);
    assert!(out.starts_with("ID") && out.contains("anonymous"), "{out}");
    assert!(ok_json(&b, &["auth", "sources"]).as_array().is_some_and(|s| !s.is_empty()));
    let out = ok(&b, &["acl", "sources"]);
    assert!(out.starts_with("ID") && out.lines().count() >= 2, "{out}");
    assert!(ok_json(&b, &["acl", "sources"])["sources"].as_array().is_some_and(|s| !s.is_empty()));
    assert_eq!(ok(&b, &["auth", "cache-clean"]).trim(), "auth cache purged");
    assert_eq!(ok_json(&b, &["auth", "cache-clean"])["ok"], true);
    assert_eq!(ok(&b, &["acl", "cache-clean"]).trim(), "ACL cache purged");
    assert_eq!(ok_json(&b, &["acl", "cache-clean"])["ok"], true);

    // reload
    assert!(ok(&b, &["reload"]).contains("restart_needed"));
    assert_eq!(ok_json(&b, &["reload"])["files_failed"], 0);

    // modules list | enable | disable (presence is on by default)
    let out = ok(&b, &["modules", "list"]);
    assert!(out.starts_with("NAME") && out.contains("presence") && out.contains("webhook"), "{out}");
    assert!(ok_json(&b, &["modules", "list"])["modules"].is_array());
    assert_eq!(ok(&b, &["modules", "disable", "presence"]).trim(), "module presence disabled (until the next reload)");
    let v = ok_json(&b, &["modules", "list"]);
    let presence = v["builtin"].as_array().and_then(|a| a.iter().find(|m| m["name"] == "presence")).cloned();
    assert_eq!(presence, Some(serde_json::json!({"name": "presence", "enable": false, "source": "api"})), "{v}");
    let v = ok_json(&b, &["modules", "enable", "presence"]);
    assert_eq!((v["name"].as_str(), v["enable"].as_bool()), (Some("presence"), Some(true)), "{v}");
    assert_eq!(ok(&b, &["modules", "enable", "delayed"]).trim(), "module delayed enabled (until the next reload)");
    assert!(ok_json(&b, &["modules", "disable", "delayed"])["modules"].is_array());
    assert_eq!(ctl(&b, &["modules", "enable", "nope"]).0, 1, "no such module");
    let (code, out) = ctl(&b, &["--json", "modules", "enable", "webhook"]);
    assert_eq!(code, 1, "no url");
    assert!(out.contains("modules.webhook.url"), "{out}");

    // clients kick: the client sees DISCONNECT 0x98.
    assert_eq!(ok(&b, &["clients", "kick", "ctl-pub"]).trim(), "kicked ctl-pub");
    match p.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98, "Administrative action"),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    assert_eq!(ok_json(&b, &["clients", "kick", "ctl-dev"])["ok"], true);
    match c.recv_timeout(Duration::from_secs(5)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
}

/// With the socket off, ctl speaks HTTP with an API key: from the
/// environment or a file; the key's role still applies; `status` needs
/// none.
#[test]
fn http_with_an_api_key_when_there_is_no_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    let b = Broker::start(&format!(
        "[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = \"{}\"\nbootstrap_file = \"{}\"\n",
        dir.path().join("data").display(),
        boot.display()
    ));
    let url = format!("http://{}", b.admin_addr().expect("admin address"));
    let admin_key = format!("admin:{SECRET}");
    let view_key = format!("view:{SECRET}");
    let http = |args: &[&str], key: Option<&str>| {
        let mut all = vec!["ctl", "--url", url.as_str()];
        all.extend_from_slice(args);
        let env: Vec<(&str, &str)> = key.map(|k| ("PORTCULLIS_API_KEY", k)).into_iter().collect();
        let out = run(&b.config_path, &all, &env);
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // status: public.
    let (code, out, _) = http(&["status"], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("is started"));
    // No key: 401.
    let (code, _, err) = http(&["clients", "list"], None);
    assert_eq!(code, 1);
    assert!(err.contains("401 UNAUTHORIZED"), "{err}");
    // The administrator's key from the environment.
    let (code, out, _) = http(&["clients", "list"], Some(&admin_key));
    assert_eq!(code, 0);
    assert!(out.starts_with("CLIENTID"), "{out}");
    let (code, out, _) = http(&["--json", "listeners"], Some(&admin_key));
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")[0]["name"], "tcp");
    // A viewer reads but does not write.
    let (code, _, _) = http(&["banned", "list"], Some(&view_key));
    assert_eq!(code, 0);
    let (code, _, err) = http(&["acl", "cache-clean"], Some(&view_key));
    assert_eq!(code, 1);
    assert!(err.contains("403 FORBIDDEN"), "{err}");
    // A wrong secret: 401.
    let (code, _, err) = http(&["topics"], Some("admin:wrong-secret-0123456789"));
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    // The key from a file.
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, format!("{admin_key}\n")).expect("key file");
    let (code, out, _) = http(&["--key-file", key_file.to_str().expect("utf-8"), "broker", "stats"], None);
    assert_eq!(code, 0);
    assert!(out.contains("sessions.count"), "{out}");
    // Without --url, a socket or a key: told how to reach the API.
    let out = run(&b.config_path, &["ctl", "topics"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("API key"));
}

/// `auth check` and `acl explain` print a human explanation or, with
/// `--json`, the same JSON as the admin API's explain endpoints.
#[test]
fn auth_check_and_acl_explain_human_and_json() {
    let b = Broker::start("");
    let c = &b.config_path;
    let out = run(c, &["auth", "check", "--client-id", "x"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("decision: ALLOW") && !text.contains("Allow {"), "{text}");
    let out = run(c, &["auth", "check", "--client-id", "x", "--json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["decision"], "allow", "{v}");
    assert!(v["steps"].as_array().is_some_and(|s| !s.is_empty()), "{v}");
    let out = run(c, &["auth", "check", "--client-id", "x", "--peer", "10.0.0.1", "--json"], &[]);
    assert_eq!(out.status.code(), Some(1), "denied from off loopback");
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["decision"], "deny", "{v}");

    let out = run(c, &["acl", "explain", "--client-id", "x", "--publish", "a/b"], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("chain:") && text.contains("decision: "), "{text}");
    let out = run(c, &["acl", "explain", "--client-id", "x", "--subscribe", "a/#", "--json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(v["decision"] == "allow" || v["decision"] == "deny", "{v}");
    assert!(v["decided_by"].is_string(), "{v}");
}
