//! A session belongs to the identity that created it (issue 11, point 1):
//! another identity with the same client id neither resumes it (its
//! queued messages and its subscriptions) nor takes it over (kicks its
//! connection); `session.owner_mismatch = "discard"` ends the old session
//! instead; the same identity keeps takeover and resume; a listener's
//! `client_id_pattern` binds client ids to usernames. 3.1.1 and 5.0.

use std::time::Duration;

use portcullis_core::codec::{Connect, Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::{Broker, Raw};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;
const Q1: QoS = QoS::AtLeastOnce;

/// alice and bob with plain passwords; alice owns `alice/#`, bob may not
/// touch it; `pub` may publish anywhere.
fn config(extra: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("passwd");
    std::fs::write(&pw, "alice:alice-pw\nbob:bob-pw\npub:pub-pw\n").expect("passwd");
    let acl = dir.path().join("acl.toml");
    std::fs::write(
        &acl,
        r##"
[[rule]]
permission = "allow"
action = "all"
username = "alice"
topics = ["alice/#"]

[[rule]]
permission = "allow"
action = "publish"
username = "pub"
topics = ["#"]

[[rule]]
permission = "deny"
action = "all"
topics = ["#"]
"##,
    )
    .expect("acl");
    let cfg = format!(
        r#"
[auth]
chain = ["users"]
[auth.password_file.users]
path = {pw:?}
hash = {{ algo = "plain" }}

[acl]
chain = ["main"]
[acl.file.main]
path = {acl:?}

{extra}
"#
    );
    (dir, cfg)
}

fn connect(version: ProtocolVersion, client_id: &str, user: &str, clean: bool) -> Connect {
    let mut c = connect_packet(version, client_id, clean);
    c.username = Some(user.to_string());
    c.password = Some(bytes::Bytes::from(format!("{user}-pw")));
    if version == V5 {
        // A persistent v5 session needs an expiry.
        c.properties.session_expiry_interval = Some(300);
    }
    c
}

async fn login(b: &Broker, version: ProtocolVersion, client_id: &str, user: &str, clean: bool) -> (Raw, bool) {
    let (raw, ack) = open(b.addr, connect(version, client_id, user, clean)).await;
    assert_eq!(ack.code, 0, "{user} as {client_id} ({version:?}) refused: {ack:?}");
    (raw, ack.session_present)
}

/// alice leaves a persistent session with a subscription to `alice/#` and
/// one queued QoS 1 message.
async fn alice_with_queued_message(b: &Broker, version: ProtocolVersion, id: &str) {
    let (mut alice, _) = login(b, version, id, "alice", false).await;
    subscribe(&mut alice, 1, &[("alice/#", Q1)]).await;
    disconnect(alice).await;
    let (mut p, _) = login(b, version, &format!("{id}-pub"), "pub", true).await;
    assert_eq!(pub_simple(&mut p, "alice/secret", Q1, 1, b"for alice only", false).await, 0);
    disconnect(p).await;
}

#[tokio::test]
async fn another_identity_neither_resumes_nor_takes_over() {
    let (_d, cfg) = config("");
    let b = Broker::start(&cfg);
    for version in [V3, V5] {
        let id = format!("alice-dev-{}", version.level());
        alice_with_queued_message(&b, version, &id).await;

        // bob, refused alice/# by the ACL, asks for alice's session.
        let (mut bob, ack) = open(b.addr, connect(version, &id, "bob", false)).await;
        let want = if version == V5 { 0x85 } else { 0x05 };
        assert_eq!(ack.code, want, "{version:?}: bob must be refused");
        assert!(!ack.session_present);
        if version == V5 {
            let reason = ack.properties.reason_string.as_deref().unwrap_or_default();
            assert!(reason.contains("another identity"), "reason string: {reason:?}");
        }
        assert!(bob.expect_closed(Duration::from_secs(5)).await.is_empty(), "nothing of alice's reaches bob");

        // alice's session is intact: her message is still queued for her.
        let (mut alice, present) = login(&b, version, &id, "alice", false).await;
        assert!(present, "{version:?}: alice's session survived");
        let p = next_publish(&mut alice).await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), ("alice/secret", &b"for alice only"[..]));
        ack_incoming(&mut alice, &p).await;

        // Live: bob cannot kick alice off either.
        let (_, ack) = open(b.addr, connect(version, &id, "bob", true)).await;
        assert_eq!(ack.code, want, "{version:?}: takeover by bob refused");
        sync(&mut alice).await;
        disconnect(alice).await;
    }
    assert!(b.log().contains("client identifier in use by another identity"), "refusal logged");
}

#[tokio::test]
async fn discard_mode_ends_the_old_session_and_delivers_nothing_of_it() {
    let (_d, cfg) = config("[session]\nowner_mismatch = \"discard\"\n");
    let b = Broker::start(&cfg);
    for version in [V3, V5] {
        let id = format!("shared-id-{}", version.level());
        alice_with_queued_message(&b, version, &id).await;
        // alice is connected again when bob arrives.
        let (mut alice, present) = login(&b, version, &id, "alice", false).await;
        assert!(present);
        let p = next_publish(&mut alice).await;
        ack_incoming(&mut alice, &p).await;
        // A second queued message, then bob takes the id.
        let (mut p, _) = login(&b, version, &format!("{id}-pub2"), "pub", true).await;
        disconnect(alice).await;
        assert_eq!(pub_simple(&mut p, "alice/secret", Q1, 2, b"second", false).await, 0);

        let (mut bob, present) = login(&b, version, &id, "bob", false).await;
        assert!(!present, "{version:?}: bob starts afresh");
        expect_silence(&mut bob, Duration::from_millis(700), "alice's queued message").await;
        // bob's own session has none of alice's subscriptions.
        assert_eq!(
            pub_simple(&mut p, "alice/secret", Q1, 3, b"third", false).await,
            if version == V5 { 0x10 } else { 0 }
        );
        expect_silence(&mut bob, Duration::from_millis(500), "alice's subscription").await;

        // And alice, live, is taken over by bob's discard (v5: 0x8E).
        let (mut alice, present) = login(&b, version, &id, "alice", false).await;
        assert!(!present, "bob's session was discarded for alice in turn");
        let _ = bob.expect_closed(Duration::from_secs(5)).await;
        let (_bob2, _) = login(&b, version, &id, "bob", true).await;
        let closed = alice.expect_closed(Duration::from_secs(5)).await;
        if version == V5 {
            assert!(
                closed.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x8E)),
                "alice gets DISCONNECT 0x8E: {closed:?}"
            );
        }
        disconnect(p).await;
    }
}

#[tokio::test]
async fn the_same_identity_keeps_takeover_and_resume() {
    let (_d, cfg) = config("");
    let b = Broker::start(&cfg);
    for version in [V3, V5] {
        let id = format!("phone-{}", version.level());
        alice_with_queued_message(&b, version, &id).await;
        let (mut first, present) = login(&b, version, &id, "alice", false).await;
        assert!(present);
        let p = next_publish(&mut first).await;
        ack_incoming(&mut first, &p).await;
        // A second connection of alice's takes over.
        let (_second, present) = login(&b, version, &id, "alice", false).await;
        assert!(present, "{version:?}: same identity resumes");
        let closed = first.expect_closed(Duration::from_secs(5)).await;
        if version == V5 {
            assert!(closed.iter().any(|p| matches!(p, Packet::Disconnect(d) if d.reason == 0x8E)), "{closed:?}");
        }
    }
}

#[tokio::test]
async fn anonymous_clients_of_one_listener_do_not_own_sessions_on_another() {
    // Two anonymous listeners (the embedded loopback-only chain): a client
    // id used anonymously on one cannot be resumed anonymously on the other.
    let b = Broker::start_with_config(
        "[[listeners]]\nname = \"a\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"b\"\nbind = \"127.0.0.1:0\"\n",
    );
    let addrs = portcullis_tests::backend::listener_addrs(&b, 2);
    let (raw, _) = open_v3(addrs[0], "anon-dev", false).await;
    disconnect(raw).await;
    let (_, ack) = open(addrs[1], connect_packet(V3, "anon-dev", false)).await;
    assert_eq!(ack.code, 0x05, "the other listener's anonymous clients are another identity");
    let (_, present) = open_v3(addrs[0], "anon-dev", false).await;
    assert!(present, "the same listener resumes");
}

#[tokio::test]
async fn client_id_pattern_binds_ids_to_usernames() {
    let (_d, cfg) = config("");
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\nclient_id_pattern = \"^${{username}}(-.*)?$\"\n{cfg}"
    );
    let b = Broker::start_with_config(&cfg);
    for version in [V3, V5] {
        login(&b, version, "alice", "alice", true).await;
        login(&b, version, "alice-phone", "alice", true).await;
        for (id, user) in [("alice-phone", "bob"), ("alicex", "alice"), ("bob", "alice")] {
            let (_, ack) = open(b.addr, connect(version, id, user, true)).await;
            let want = if version == V5 { 0x85 } else { 0x02 };
            assert_eq!(ack.code, want, "{version:?}: {user} as {id}");
        }
    }
    // A v5 client without a client id gets one assigned: not checked.
    let mut c = connect(V5, "", "bob", true);
    c.properties = Properties::default();
    let (_, ack) = open(b.addr, c).await;
    assert_eq!(ack.code, 0, "assigned ids are not bound: {ack:?}");
}

#[tokio::test]
async fn a_bad_client_id_pattern_is_a_config_error() {
    let out = std::process::Command::new(portcullis_tests::binary())
        .args(["--check-config", "--config"])
        .arg({
            let dir = tempfile::tempdir().expect("tempdir").keep();
            let p = dir.join("p.toml");
            std::fs::write(&p, "[[listeners]]\nbind = \"127.0.0.1:0\"\nclient_id_pattern = \"^(${username}$\"\n")
                .expect("write");
            p
        })
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("client_id_pattern") && err.contains("regular expression"), "{err}");
}
