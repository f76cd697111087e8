//! ACL deny rules and broad filters, end to end (3.1.1 and 5.0).
//!
//! A SUBSCRIBE is decided with EMQX's semantics: `deny secret/#` does not
//! cover `#`, so `allow #` grants it. Such a granted subscription overlaps
//! the deny rule and is marked; each message delivered through it is
//! checked again, so `secret/x` never arrives through `#` (nor through
//! `+/x`, a shared `#`, or as a retained message), while `public/x` does.
//! A client no deny rule concerns gets everything, and its deliveries cost
//! no ACL lookup (counted with the provider's `$SYS` calls counter).
//!
//! The same holds for a policy directory and for a Mosquitto `acl_file`.

use std::path::Path;
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS, SubscriptionOptions};
use portcullis_tests::backend::connect_bytes_raw as connect_bytes;
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const Q0: QoS = QoS::AtMostOnce;
const Q1: QoS = QoS::AtLeastOnce;
const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const VERSIONS: [ProtocolVersion; 2] = [V3, V5];

/// How long a subscriber listens for stragglers.
const QUIET: Duration = Duration::from_millis(400);

fn tp(p: &Path) -> String {
    format!("{:?}", p.to_str().expect("utf-8 path"))
}

/// A client admitted with this client id and username (no password).
async fn login(addr: std::net::SocketAddr, version: ProtocolVersion, client_id: &str, username: Option<&str>) -> Raw {
    let mut raw = Raw::connect(addr).await;
    raw.version = version;
    raw.send(&connect_bytes(version, client_id, username, None)).await;
    match raw.recv().await {
        Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0, "{client_id} ({version:?}) refused"),
        other => panic!("{client_id} ({version:?}): expected CONNACK, got {other:?}"),
    }
    raw
}

async fn suback(raw: &mut Raw, id: u16, filters: &[(&str, QoS)]) -> Vec<u8> {
    let f: Vec<(&str, SubscriptionOptions)> = filters.iter().map(|(t, q)| (*t, opts(*q))).collect();
    subscribe_with(raw, id, &f, Properties::default()).await.return_codes
}

/// Topics of every PUBLISH arriving within [`QUIET`] (acknowledged).
async fn received(raw: &mut Raw) -> Vec<String> {
    let mut t: Vec<String> = drain_publishes(raw, QUIET, QUIET * 10).await.into_iter().map(|p| p.topic).collect();
    t.sort();
    t
}

fn sorted(v: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
    v.sort();
    v
}

/// Publishes each topic at QoS 1 (acknowledged before the next).
async fn publish_all(p: &mut Raw, topics: &[&str], retain: bool) {
    for (i, t) in topics.iter().enumerate() {
        assert_eq!(pub_simple(p, t, Q1, i as u16 + 1, b"m", retain).await, 0, "publish {t}");
    }
}

/// `deny secret/#` then `allow #` for everyone, and `$SYS` for loopback
/// (the test's `$SYS` reader).
const DENY_SECRET: &str = r##"
[[rule]]
permission = "deny"
action = "all"
topics = ["secret/#"]

[[rule]]
permission = "allow"
action = "all"
topics = ["#"]

[[rule]]
permission = "allow"
ip = "127.0.0.0/8"
action = "subscribe"
topics = ["$SYS/#"]
"##;

#[tokio::test]
async fn acl_file_deny_is_kept_out_of_broad_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    // The publisher may publish secret topics; everyone else is denied them.
    let text = format!(
        "[[rule]]\npermission = \"allow\"\nclient_id = \"publisher\"\naction = \"publish\"\ntopics = [\"#\"]\n{DENY_SECRET}"
    );
    std::fs::write(&acl, text).expect("write acl");
    let b = Broker::start(&format!("[acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {}\n", tp(&acl)));
    let mut p = login(b.addr, V3, "publisher", None).await;
    // Retained before anyone subscribes: delivered on SUBSCRIBE, checked too.
    publish_all(&mut p, &["secret/r", "public/r"], true).await;
    for v in VERSIONS {
        let mut s = login(b.addr, v, &format!("sub-{v:?}"), None).await;
        let deny = if v == V5 { 0x87 } else { 0x80 };
        assert_eq!(suback(&mut s, 1, &[("#", Q1), ("secret/x", Q0)]).await, vec![1, deny], "{v:?}");
        assert_eq!(received(&mut s).await, sorted(&["public/r"]), "{v:?}: retained secret/r came through #");
        publish_all(&mut p, &["secret/x", "public/x", "secret/deep/y", "public/deep/y"], false).await;
        assert_eq!(received(&mut s).await, sorted(&["public/x", "public/deep/y"]), "{v:?}");

        // `+/x` and a shared `#` are marked the same way.
        let mut s2 = login(b.addr, v, &format!("plus-{v:?}"), None).await;
        assert_eq!(suback(&mut s2, 1, &[("+/x", Q1), ("$share/g/#", Q1)]).await, vec![1, 1], "{v:?}");
        assert_eq!(received(&mut s2).await, Vec::<String>::new(), "{v:?}: a shared subscription gets no retained");
        publish_all(&mut p, &["secret/x", "public/x", "secret/z"], false).await;
        // public/x through both subscriptions (the shared one is its own copy).
        assert_eq!(received(&mut s2).await, sorted(&["public/x", "public/x"]), "{v:?}");
        disconnect(s2).await;
        assert_eq!(received(&mut s).await, sorted(&["public/x"]), "{v:?}");
        disconnect(s).await;
    }
}

/// The deny rule is bob's only: alice's `#` is not marked and carries
/// secret topics with no ACL lookup per message; bob's is marked, checked
/// per message, and never carries them.
#[tokio::test]
async fn only_subscriptions_a_deny_rule_overlaps_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, DENY_SECRET.replacen("action = \"all\"", "username = \"bob\"\naction = \"all\"", 1))
        .expect("write acl");
    // alice and bob come with usernames, admitted by client id; the
    // publisher and the `$SYS` reader are anonymous.
    let ids: Vec<String> =
        ["alice", "bob"].iter().flat_map(|n| VERSIONS.map(|v| format!("{{ client_id = \"{n}-{v:?}\" }}"))).collect();
    let b = Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n\
         [auth]\nchain = [\"ids\", \"anon\"]\n[auth.client_id.ids]\nclients = [{}]\n[auth.anonymous.anon]\n\
         [acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {}\n",
        ids.join(", "),
        tp(&acl)
    ));
    let calls = || sys_fresh(b.addr, "acl/default/main/calls", Duration::from_secs(5));
    let mut p = login(b.addr, V3, "publisher", None).await;
    for v in VERSIONS {
        let mut alice = login(b.addr, v, &format!("alice-{v:?}"), Some("alice")).await;
        assert_eq!(suback(&mut alice, 1, &[("#", Q1)]).await, vec![1]);
        // Distinct topics, so that every check would miss the cache and
        // reach the provider.
        let topics: Vec<String> =
            (0..10).flat_map(|i| [format!("secret/a{i}/{v:?}"), format!("public/a{i}/{v:?}")]).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let before: u64 = calls().await.parse().expect("calls");
        publish_all(&mut p, &topics, false).await;
        assert_eq!(received(&mut alice).await, sorted(&topics), "{v:?}: alice gets everything");
        let after: u64 = calls().await.parse().expect("calls");
        // 20 publishes and the second reader's SUBSCRIBE; no delivery check.
        assert_eq!(after - before, topics.len() as u64 + 1, "{v:?}: alice's deliveries were checked");

        let mut bob = login(b.addr, v, &format!("bob-{v:?}"), Some("bob")).await;
        assert_eq!(suback(&mut bob, 1, &[("#", Q1)]).await, vec![1]);
        let topics: Vec<String> =
            (0..10).flat_map(|i| [format!("secret/b{i}/{v:?}"), format!("public/b{i}/{v:?}")]).collect();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        let before: u64 = calls().await.parse().expect("calls");
        publish_all(&mut p, &topics, false).await;
        let public: Vec<&str> = topics.iter().copied().filter(|t| t.starts_with("public/")).collect();
        assert_eq!(received(&mut bob).await, sorted(&public), "{v:?}: bob gets no secret");
        assert_eq!(received(&mut alice).await, sorted(&topics), "{v:?}: alice still gets everything");
        let after: u64 = calls().await.parse().expect("calls");
        // 20 publishes, the reader's SUBSCRIBE, and bob's 20 checks.
        assert_eq!(after - before, 2 * topics.len() as u64 + 1, "{v:?}");
        disconnect(alice).await;
        disconnect(bob).await;
    }
}

#[tokio::test]
async fn policy_dir_deny_is_kept_out_of_broad_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let devices = dir.path().join("devices");
    std::fs::create_dir(&devices).expect("mkdir");
    let policy =
        "[[rule]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"secret/#\", \"devices/${clientid}/keys\"]\n\n\
                  [[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n";
    for v in ["dev-V311", "dev-V5"] {
        std::fs::write(devices.join(format!("{v}.toml")), policy).expect("write policy");
    }
    // Clients without a policy (the publisher) fall to no_match = allow.
    let b = Broker::start(&format!(
        "[acl]\nchain = [\"devices\"]\nno_match = \"allow\"\n[acl.policy_dir.devices]\ndir = {}\n",
        tp(&devices)
    ));
    let mut p = login(b.addr, V3, "publisher", None).await;
    for v in VERSIONS {
        let id = format!("dev-{v:?}");
        let mut s = login(b.addr, v, &id, None).await;
        assert_eq!(suback(&mut s, 1, &[("#", Q1)]).await, vec![1], "{v:?}");
        let own_keys = format!("devices/{id}/keys");
        publish_all(&mut p, &["secret/x", "public/x", &own_keys, "devices/other/keys"], false).await;
        assert_eq!(received(&mut s).await, sorted(&["public/x", "devices/other/keys"]), "{v:?}");
        disconnect(s).await;
    }
}

#[tokio::test]
async fn mosquitto_deny_is_kept_out_of_broad_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("mosquitto.acl");
    std::fs::write(&acl, "user watcher\ntopic deny secret/#\ntopic readwrite #\n").expect("write");
    // `watcher` is admitted by client id (its username picks its section);
    // the anonymous publisher is unknown to the file, and no_match allows.
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"ids\", \"anon\"]\n\
         [auth.client_id.ids]\nclients = [{{ client_id = \"watcher-V311\" }}, {{ client_id = \"watcher-V5\" }}]\n\
         [auth.anonymous.anon]\nallow_from = [\"127.0.0.0/8\"]\n\
         [acl]\nchain = [\"legacy\"]\nno_match = \"allow\"\n[acl.mosquitto.legacy]\npath = {}\n",
        tp(&acl)
    ));
    let mut p = login(b.addr, V3, "publisher", None).await;
    for v in VERSIONS {
        let mut s = login(b.addr, v, &format!("watcher-{v:?}"), Some("watcher")).await;
        let deny = if v == V5 { 0x87 } else { 0x80 };
        assert_eq!(suback(&mut s, 1, &[("#", Q1), ("secret/+", Q1)]).await, vec![1, deny], "{v:?}");
        publish_all(&mut p, &["secret/x", "public/x"], false).await;
        assert_eq!(received(&mut s).await, sorted(&["public/x"]), "{v:?}");
        disconnect(s).await;
    }
}

/// A provider asked per action (HTTP here; SQL, Redis and MongoDB alike)
/// cannot list its deny rules in advance: while it is in the chain, every
/// granted subscription with a wildcard has its deliveries checked, and a
/// literal one (a single topic, decided at SUBSCRIBE) does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_action_backend_denies_inside_broad_subscriptions() {
    use portcullis_tests::backend::login as login_pw;
    use portcullis_tests::webhook::Webhook;

    // The webhook's ACL denies `secret/…`, allows `<username>/…`, ignores
    // the rest; the file after it allows everything. `root` is a
    // superuser (no ACL) and publishes.
    let w = Webhook::start(None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, "[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n").expect("write");
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"hook\"]\n[auth.guard]\nenabled = false\n[auth.http.hook]\nurl = \"{base}/mqtt/auth\"\n\
         [acl]\nchain = [\"hook_acl\", \"rest\"]\n[acl.http.hook_acl]\nurl = \"{base}/mqtt/acl\"\n\
         [acl.file.rest]\npath = {}\n",
        tp(&acl),
        base = w.base()
    ));
    let mut root = login_pw(b.addr, V3, "root-pub", "root", "root-pw").await;
    for v in VERSIONS {
        let mut alice = login_pw(b.addr, v, &format!("alice-{v:?}"), "alice", "alice-pw").await;
        let literal = format!("public/{v:?}");
        assert_eq!(suback(&mut alice, 1, &[("#", Q1), (literal.as_str(), Q1)]).await, vec![1, 1], "{v:?}");
        let secret = format!("secret/{v:?}");
        publish_all(&mut root, &[secret.as_str(), "alice/x"], false).await;
        // QoS 0, so that a check would not find the SUBSCRIBE's (QoS 1)
        // decision in the cache.
        assert_eq!(pub_simple(&mut root, &literal, Q0, 0, b"m", false).await, 0);
        assert_eq!(received(&mut alice).await, sorted(&["alice/x", &literal]), "{v:?}");
        let asked = |topic: &str| {
            w.seen()
                .iter()
                .filter(|s| s.path == "/mqtt/acl" && s.fields.get("topic").map(String::as_str) == Some(topic))
                .count()
        };
        assert_eq!(asked(&secret), 1, "{v:?}: the delivery through # was checked");
        // Through `#` (marked) and the literal filter (not): one copy, not
        // checked; the webhook saw only the SUBSCRIBE.
        assert_eq!(asked(&literal), 1, "{v:?}: a copy an unmarked subscription carries was checked");
        disconnect(alice).await;
    }
}
