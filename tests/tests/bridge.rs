//! Bridges against Debian's `mosquitto` (a child process on a free
//! loopback port, see `portcullis_tests::mosquitto`).
//!
//! * Accepting: Mosquitto bridges into Portcullis with `try_private`
//!   (protocol level 0x84): both directions, no loop, retained stays
//!   retained; with `accept_bridges = false` the bit is refused with
//!   return code 1 and Mosquitto falls back to a plain connection.
//! * Bridging out (`[[bridges]]`): Portcullis bridges into Mosquitto.
//!
//! Every wait is bounded; every process is stopped by its PID.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, ProtocolVersion, Publish, QoS};
use portcullis_tests::kit::{self, collect, open, open_v3, pub_simple, subscribe, text};
use portcullis_tests::mosquitto::Mosquitto;
use portcullis_tests::{Broker, Raw};

const WAIT: Duration = Duration::from_secs(15);

/// The PUBLISHes among `packets`.
fn publishes(packets: Vec<Packet>) -> Vec<Publish> {
    packets
        .into_iter()
        .filter_map(|p| match p {
            Packet::Publish(p) => Some(p),
            _ => None,
        })
        .collect()
}

/// A 3.1.1 subscriber to `filter` at QoS 1.
async fn subscriber(addr: SocketAddr, id: &str, filter: &str) -> Raw {
    let (mut raw, _) = open_v3(addr, id, true).await;
    subscribe(&mut raw, 1, &[(filter, QoS::AtLeastOnce)]).await;
    raw
}

/// Publishes `topic` on `from` again and again (QoS 0) until `sub` gets
/// it: the bridge between them is up. Bounded by [`WAIT`].
async fn until_bridged(from: SocketAddr, sub: &mut Raw, topic: &str) {
    let (mut publisher, _) = open_v3(from, "probe", true).await;
    let end = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < end, "no bridge for {topic} within {WAIT:?}");
        pub_simple(&mut publisher, topic, QoS::AtMostOnce, 0, b"probe", false).await;
        let got = publishes(collect(sub, Duration::from_millis(300)).await);
        if got.iter().any(|p| p.topic == topic) {
            break;
        }
    }
    kit::disconnect(publisher).await;
    // Late copies of the probes.
    collect(sub, Duration::from_millis(300)).await;
}

/// Mosquitto config lines for a bridge named `pc` into Portcullis at `to`.
fn mosquitto_bridge(to: SocketAddr, version: &str, topic: &str) -> String {
    format!(
        "connection pc\naddress {to}\nbridge_protocol_version {version}\ntry_private true\n\
         cleansession true\nrestart_timeout 1\nnotifications false\n{topic}\n"
    )
}

#[tokio::test]
async fn mosquitto_bridges_in_both_ways_without_loop_and_keeps_retained() {
    let pc = Broker::start("");
    for version in ["mqttv311", "mqttv31", "mqttv50"] {
        let mosq = Mosquitto::start(&mosquitto_bridge(pc.addr, version, "topic br/# both 1"));
        let mut on_pc = subscriber(pc.addr, "sub-pc", "br/#").await;
        let mut on_mosq = subscriber(mosq.addr, "sub-mosq", "br/#").await;
        until_bridged(mosq.addr, &mut on_pc, "br/probe").await;
        collect(&mut on_mosq, Duration::from_millis(300)).await;
        assert!(
            pc.wait_log("client connected", WAIT) && pc.log().contains("bridge=true"),
            "{version}: the bridge did not connect with the bridge bit; log:\n{}",
            pc.log()
        );

        // Mosquitto → Portcullis, and Portcullis → Mosquitto: one copy each,
        // and nothing comes back (no loop: the bridge's subscriptions on
        // each side are No Local).
        let (mut p_mosq, _) = open_v3(mosq.addr, "pub-mosq", true).await;
        let (mut p_pc, _) = open_v3(pc.addr, "pub-pc", true).await;
        pub_simple(&mut p_mosq, "br/from-mosq", QoS::AtLeastOnce, 1, b"m", false).await;
        pub_simple(&mut p_pc, "br/from-pc", QoS::AtLeastOnce, 1, b"p", false).await;
        let got_pc = publishes(collect(&mut on_pc, Duration::from_secs(2)).await);
        let got_mosq = publishes(collect(&mut on_mosq, Duration::from_secs(2)).await);
        let count = |v: &[Publish], t: &str| v.iter().filter(|p| p.topic == t).count();
        assert_eq!(count(&got_pc, "br/from-mosq"), 1, "{version}: on Portcullis: {got_pc:?}");
        assert_eq!(count(&got_pc, "br/from-pc"), 1, "{version}: on Portcullis: {got_pc:?}");
        assert_eq!(count(&got_mosq, "br/from-pc"), 1, "{version}: on Mosquitto: {got_mosq:?}");
        assert_eq!(count(&got_mosq, "br/from-mosq"), 1, "{version}: on Mosquitto: {got_mosq:?}");

        // Retained stays retained across the bridge (Retain As Published on
        // Portcullis' side): a late subscriber on the other broker gets it.
        pub_simple(&mut p_pc, "br/retained-pc", QoS::AtLeastOnce, 2, b"rp", true).await;
        pub_simple(&mut p_mosq, "br/retained-mosq", QoS::AtLeastOnce, 2, b"rm", true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let late = |addr: SocketAddr, topic: &'static str| async move {
            let mut raw = subscriber(addr, "late", topic).await;
            let got = publishes(collect(&mut raw, Duration::from_millis(700)).await);
            got.iter().any(|p| p.topic == topic && p.retain)
        };
        assert!(late(mosq.addr, "br/retained-pc").await, "{version}: not retained on Mosquitto");
        assert!(late(pc.addr, "br/retained-mosq").await, "{version}: not retained on Portcullis");
        // Clear them for the next round.
        pub_simple(&mut p_pc, "br/retained-pc", QoS::AtLeastOnce, 3, b"", true).await;
        pub_simple(&mut p_mosq, "br/retained-mosq", QoS::AtLeastOnce, 3, b"", true).await;
        drop(mosq);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn bridge_bit_refused_with_return_code_1_when_bridges_are_off() {
    let pc = Broker::start("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\naccept_bridges = false\n");
    // A raw CONNECT with protocol level 0x84 gets return code 1 ...
    let mut connect = kit::connect_packet(ProtocolVersion::V311, "raw-bridge", true);
    connect.bridge = true;
    let (_raw, ack) = open(pc.addr, connect).await;
    assert_eq!(ack.code, 1, "CONNACK for 0x84: {ack:?}");
    // ... and the same without the bit is accepted.
    let (_plain, _) = open_v3(pc.addr, "plain", true).await;

    // Mosquitto with try_private then connects without the bit, and
    // messages still flow (one way, `in`: without the bit nothing stops a
    // two-way bridge from looping).
    let mosq = Mosquitto::start(&mosquitto_bridge(pc.addr, "mqttv311", "topic br/# in 1"));
    let mut on_mosq = subscriber(mosq.addr, "sub-mosq", "br/#").await;
    until_bridged(pc.addr, &mut on_mosq, "br/probe").await;
    let log = pc.log();
    assert!(log.contains("bridge connections are not accepted"), "no refusal logged:\n{log}");
    let (mut p_pc, _) = open_v3(pc.addr, "pub-pc", true).await;
    pub_simple(&mut p_pc, "br/x", QoS::AtLeastOnce, 1, b"x", false).await;
    let got = publishes(collect(&mut on_mosq, Duration::from_secs(2)).await);
    assert_eq!(got.iter().filter(|p| p.topic == "br/x").map(|p| text(&p.payload)).collect::<Vec<_>>(), ["x"]);
}

/// A Portcullis with one `[[bridges]]` entry named `m` into `to`.
fn portcullis_bridging(to: SocketAddr, protocol: &str, topics: &[&str]) -> Broker {
    let topics: Vec<String> = topics.iter().map(|t| format!("{t:?}")).collect();
    Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n\n[[bridges]]\nname = \"m\"\naddresses = [\"{to}\"]\nprotocol = \"{protocol}\"\n\
         topics = [{}]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\nkeepalive = \"5s\"\n",
        topics.join(", ")
    ))
}

#[tokio::test]
async fn portcullis_bridges_out_in_and_both_with_prefixes() {
    for protocol in ["3.1.1", "5", "3.1"] {
        let mosq = Mosquitto::start("");
        let pc = portcullis_bridging(
            mosq.addr,
            protocol,
            &["out/# out 1", "in/# in 1", "both/# both 1", "x/# out 1 loc/ rem/", "y/# in 1 loc/ rem/", "two/# both 2"],
        );
        let (mut on_pc, _) = open_v3(pc.addr, "sub-pc", true).await;
        subscribe(
            &mut on_pc,
            1,
            &[
                ("out/#", QoS::AtLeastOnce),
                ("in/#", QoS::AtLeastOnce),
                ("both/#", QoS::AtLeastOnce),
                ("loc/#", QoS::AtLeastOnce),
                ("two/#", QoS::ExactlyOnce),
            ],
        )
        .await;
        let (mut on_mosq, _) = open_v3(mosq.addr, "sub-mosq", true).await;
        subscribe(
            &mut on_mosq,
            1,
            &[
                ("out/#", QoS::AtLeastOnce),
                ("in/#", QoS::AtLeastOnce),
                ("both/#", QoS::AtLeastOnce),
                ("rem/#", QoS::AtLeastOnce),
                ("two/#", QoS::ExactlyOnce),
            ],
        )
        .await;
        until_bridged(pc.addr, &mut on_mosq, "out/probe").await;
        collect(&mut on_pc, Duration::from_millis(300)).await;

        let (mut p_pc, _) = open_v3(pc.addr, "pub-pc", true).await;
        let (mut p_mosq, _) = open_v3(mosq.addr, "pub-mosq", true).await;
        for (i, topic) in ["out/1", "both/p", "loc/x/1", "in/not-out"].iter().enumerate() {
            pub_simple(&mut p_pc, topic, QoS::AtLeastOnce, i as u16 + 1, b"pc", false).await;
        }
        for (i, topic) in ["in/1", "both/m", "rem/y/1", "out/not-in"].iter().enumerate() {
            pub_simple(&mut p_mosq, topic, QoS::AtLeastOnce, i as u16 + 1, b"mosq", false).await;
        }
        // QoS 2 both ways (PUBREC / PUBREL / PUBCOMP on each link).
        pub_simple(&mut p_pc, "two/p", QoS::ExactlyOnce, 20, b"pc", false).await;
        pub_simple(&mut p_mosq, "two/m", QoS::ExactlyOnce, 20, b"mosq", false).await;
        let mut got_pc: Vec<String> =
            publishes(collect(&mut on_pc, Duration::from_secs(2)).await).into_iter().map(|p| p.topic).collect();
        let mut got_mosq: Vec<String> =
            publishes(collect(&mut on_mosq, Duration::from_secs(2)).await).into_iter().map(|p| p.topic).collect();
        got_pc.sort();
        got_mosq.sort();
        // Each exactly once: nothing looped back over `both`.
        assert_eq!(
            got_pc,
            ["both/m", "both/p", "in/1", "in/not-out", "loc/x/1", "loc/y/1", "out/1", "two/m", "two/p"],
            "{protocol}: on Portcullis"
        );
        assert_eq!(
            got_mosq,
            ["both/m", "both/p", "in/1", "out/1", "out/not-in", "rem/x/1", "rem/y/1", "two/m", "two/p"],
            "{protocol}: on Mosquitto"
        );

        // Retained stays retained: a late subscriber on Mosquitto gets it.
        pub_simple(&mut p_pc, "out/kept", QoS::AtLeastOnce, 9, b"r", true).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut late = subscriber(mosq.addr, "late", "out/kept").await;
        let got = publishes(collect(&mut late, Duration::from_millis(700)).await);
        assert!(
            got.iter().any(|p| p.topic == "out/kept" && p.retain),
            "{protocol}: not retained on Mosquitto: {got:?}"
        );
    }
}

/// Waits (bounded) for a PUBLISH on `topic` with `payload`.
async fn expect_value(raw: &mut Raw, topic: &str, payload: &str) {
    let end = Instant::now() + WAIT;
    let mut seen = Vec::new();
    while Instant::now() < end {
        for p in publishes(collect(raw, Duration::from_millis(200)).await) {
            if p.topic == topic && text(&p.payload) == payload {
                return;
            }
            seen.push((p.topic, text(&p.payload)));
        }
    }
    panic!("no {topic} = {payload:?} within {WAIT:?}; saw {seen:?}");
}

#[tokio::test]
async fn queued_qos1_messages_cross_an_outage_and_the_state_topic_flips() {
    let mut mosq = Mosquitto::start("persistence true\npersistence_location {dir}/\nautosave_interval 0\n");
    let state = "$SYS/broker/connection/portcullis-m/state";
    // A persistent subscriber on Mosquitto keeps the messages that arrive
    // while it is away.
    let (mut keeper, _) = open_v3(mosq.addr, "keeper", false).await;
    subscribe(&mut keeper, 1, &[("out/#", QoS::AtLeastOnce), (state, QoS::AtLeastOnce)]).await;

    let mut pc = portcullis_bridging(mosq.addr, "3.1.1", &["out/# out 1"]);
    let mut state_pc = subscriber(pc.addr, "state-pc", state).await;
    expect_value(&mut state_pc, state, "1").await;
    expect_value(&mut keeper, state, "1").await;
    until_bridged(pc.addr, &mut keeper, "out/probe").await;
    kit::disconnect(keeper).await;

    // The remote goes: the state turns 0; QoS 1 messages wait in the queue.
    mosq.stop();
    expect_value(&mut state_pc, state, "0").await;
    let (mut p_pc, _) = open_v3(pc.addr, "pub-pc", true).await;
    for i in 1..=5u16 {
        pub_simple(&mut p_pc, &format!("out/q{i}"), QoS::AtLeastOnce, i, b"q", false).await;
    }
    // QoS 0 is not queued while the remote is away: dropped and counted.
    pub_simple(&mut p_pc, "out/q0", QoS::AtMostOnce, 0, b"q", false).await;
    assert_eq!(kit::sys_fresh(pc.addr, "bridges/m/messages/queued", WAIT).await, "5");
    assert_eq!(kit::sys_fresh(pc.addr, "bridges/m/messages/dropped", WAIT).await, "1");
    assert_eq!(kit::sys_fresh(pc.addr, "bridges/m/connected", WAIT).await, "0");

    // It comes back: the bridge reconnects and sends them, in order.
    mosq.restart();
    expect_value(&mut state_pc, state, "1").await;
    let (mut keeper, present) = open_v3(mosq.addr, "keeper", false).await;
    assert!(present, "mosquitto lost the keeper's session; log:\n{}", mosq.log());
    let mut got = Vec::new();
    let end = Instant::now() + WAIT;
    while got.len() < 5 && Instant::now() < end {
        for p in kit::drain_publishes(&mut keeper, Duration::from_millis(300), Duration::from_secs(2)).await {
            if p.topic.starts_with("out/q") && !got.contains(&p.topic) {
                got.push(p.topic);
            }
        }
    }
    assert_eq!(got, ["out/q1", "out/q2", "out/q3", "out/q4", "out/q5"], "log:\n{}", pc.log());
    assert_eq!(kit::sys_fresh(pc.addr, "bridges/m/messages/queued", WAIT).await, "0");
    let out: u64 = kit::sys_fresh(pc.addr, "bridges/m/messages/out", WAIT).await.parse().expect("a number");
    assert!(out >= 5, "messages/out = {out}");

    // Portcullis dies without a word: Mosquitto publishes the bridge's
    // will, state 0.
    drop(p_pc);
    let _ = pc.signal_and_wait("KILL", Duration::from_secs(10));
    expect_value(&mut keeper, state, "0").await;
}

#[tokio::test]
async fn bridge_over_tls_with_client_certificate_and_password() {
    use portcullis_tests::net::Ca;
    let dir = tempfile::tempdir().expect("tempdir");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let ca = Ca::new("bridge test CA");
    let ca_file = ca.write(dir.path(), "ca.pem");
    let (server_cert, server_key) = ca.server("mosquitto").write(dir.path(), "server");
    let (client_cert, client_key) = ca.client("portcullis-bridge", &[], &[]).write(dir.path(), "client");
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "bridge:s3cret\nreader:r\n").expect("passwd");
    let ok = std::process::Command::new("mosquitto_passwd").arg("-U").arg(&passwd).status().expect("mosquitto_passwd");
    assert!(ok.success());
    for f in [&server_key, &client_key, &passwd] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
    let tls_port = portcullis_tests::backend::free_port();
    let mosq = Mosquitto::start(&format!(
        "allow_anonymous false\npassword_file {}\nlistener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n\
         require_certificate true\n",
        passwd.display(),
        ca_file.display(),
        server_cert.display(),
        server_key.display()
    ));
    let secret = dir.path().join("bridge-password");
    std::fs::write(&secret, "s3cret\n").expect("secret");
    let pc = Broker::start(&format!(
        "[[bridges]]\nname = \"tls\"\naddresses = [\"127.0.0.1:{tls_port}\"]\nusername = \"bridge\"\n\
         password_file = \"{}\"\ntopics = [\"t/# out 1\"]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n\
         [bridges.tls]\nca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_name = \"localhost\"\n",
        secret.display(),
        ca_file.display(),
        client_cert.display(),
        client_key.display()
    ));
    let mut c = kit::connect_packet(ProtocolVersion::V311, "reader", true);
    c.username = Some("reader".into());
    c.password = Some(bytes::Bytes::from_static(b"r"));
    let (mut on_mosq, ack) = open(mosq.addr, c).await;
    assert_eq!(ack.code, 0, "reader refused by mosquitto");
    subscribe(&mut on_mosq, 1, &[("t/#", QoS::AtLeastOnce)]).await;
    until_bridged(pc.addr, &mut on_mosq, "t/probe").await;
    assert!(mosq.log().contains("as portcullis-tls"), "mosquitto log:\n{}", mosq.log());
    assert!(!pc.log().contains("s3cret"), "the password reached the log");
}

#[test]
fn a_missing_password_variable_stops_the_start_naming_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[bridges]]\nname = \"b\"\naddresses = [\"127.0.0.1:1\"]\n\
         username = \"u\"\npassword_env = \"PORTCULLIS_TEST_SURELY_UNSET_VARIABLE\"\ntopics = [\"#\"]\n",
    )
    .expect("write");
    let out =
        portcullis_tests::run_bounded(&[std::ffi::OsStr::new("--config"), cfg.as_os_str()], Duration::from_secs(10))
            .expect("the broker started without the password");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bridges[0].password_env"), "{err}");
    // --check-config finds it too.
    let out = portcullis_tests::run_bounded(
        &[std::ffi::OsStr::new("--check-config"), std::ffi::OsStr::new("--config"), cfg.as_os_str()],
        Duration::from_secs(10),
    )
    .expect("--check-config did not exit");
    let err = String::from_utf8_lossy(&out.stderr) + String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bridges[0].password_env"), "{err}");
}

/// Publishes `topic` once on each broker and counts, for a while, the
/// copies each subscriber to `#` gets: exactly one each, no loop.
async fn one_copy_each_way(a: SocketAddr, b: SocketAddr, what: &str) {
    let mut on_a = subscriber(a, "all-a", "#").await;
    let mut on_b = subscriber(b, "all-b", "#").await;
    until_bridged(a, &mut on_b, "loop/probe").await;
    collect(&mut on_a, Duration::from_millis(300)).await;
    let (mut p_a, _) = open_v3(a, "pub-a", true).await;
    let (mut p_b, _) = open_v3(b, "pub-b", true).await;
    pub_simple(&mut p_a, "loop/from-a", QoS::AtLeastOnce, 1, b"a", false).await;
    pub_simple(&mut p_b, "loop/from-b", QoS::AtLeastOnce, 1, b"b", false).await;
    for (raw, side) in [(&mut on_a, "a"), (&mut on_b, "b")] {
        let mut got: Vec<String> =
            publishes(collect(raw, Duration::from_secs(2)).await).into_iter().map(|p| p.topic).collect();
        got.sort();
        assert_eq!(got, ["loop/from-a", "loop/from-b"], "{what}: on {side}");
    }
}

#[tokio::test]
async fn no_loop_on_both_hash_either_way() {
    // Portcullis bridging out into Mosquitto, `# both 1`, 3.1.1 and 5.
    for protocol in ["3.1.1", "5"] {
        let mosq = Mosquitto::start("");
        let pc = portcullis_bridging(mosq.addr, protocol, &["# both 1"]);
        one_copy_each_way(pc.addr, mosq.addr, &format!("Portcullis -> Mosquitto {protocol}")).await;
    }
    // Mosquitto bridging into Portcullis, `topic # both 1`.
    let pc = Broker::start("");
    let mosq = Mosquitto::start(&mosquitto_bridge(pc.addr, "mqttv311", "topic # both 1"));
    one_copy_each_way(mosq.addr, pc.addr, "Mosquitto -> Portcullis").await;
}

#[tokio::test]
async fn the_bridge_reopens_its_local_session_when_it_is_taken_over() {
    // With owner_mismatch = "discard" a local client may take the bridge's
    // client id; the bridge opens its session again (taking it back) and
    // goes on bridging.
    let mosq = Mosquitto::start("");
    let pc = Broker::start(&format!(
        "[session]\nowner_mismatch = \"discard\"\n\n[[bridges]]\nname = \"m\"\naddresses = [\"{}\"]\n\
         topics = [\"out/# out 1\"]\nreconnect_min = \"200ms\"\nreconnect_max = \"1s\"\n",
        mosq.addr
    ));
    let mut on_mosq = subscriber(mosq.addr, "sub-mosq", "out/#").await;
    until_bridged(pc.addr, &mut on_mosq, "out/probe").await;
    let (intruder, _) = open_v3(pc.addr, "$bridge/m", true).await;
    // Its connection is closed now; the bridge's comes back.
    tokio::time::sleep(Duration::from_millis(300)).await;
    until_bridged(pc.addr, &mut on_mosq, "out/probe").await;
    drop(intruder);
}

#[tokio::test]
async fn portcullis_into_portcullis_falls_back_without_the_bridge_bit() {
    // The remote refuses the bridge bit (return code 1): the bridge asks
    // again at once without it, as Mosquitto does.
    let remote = Broker::start("[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\naccept_bridges = false\n");
    let pc = portcullis_bridging(remote.addr, "3.1.1", &["out/# out 1"]);
    let mut on_remote = subscriber(remote.addr, "sub-remote", "out/#").await;
    until_bridged(pc.addr, &mut on_remote, "out/probe").await;
    assert!(pc.log().contains("refused the bridge bit"), "log:\n{}", pc.log());
    assert!(remote.log().contains("bridge connections are not accepted"), "log:\n{}", remote.log());
}

#[tokio::test]
async fn a_graceful_stop_sets_the_state_to_0_on_the_remote() {
    let mosq = Mosquitto::start("");
    let state = "$SYS/broker/connection/portcullis-m/state";
    let mut on_mosq = subscriber(mosq.addr, "state-mosq", state).await;
    let mut pc = portcullis_bridging(mosq.addr, "5", &["out/# out 1"]);
    expect_value(&mut on_mosq, state, "1").await;
    let status = pc.terminate().expect("exit status");
    assert!(status.success(), "{status:?}");
    expect_value(&mut on_mosq, state, "0").await;
    assert!(mosq.log().contains("Received DISCONNECT from portcullis-m"), "not a clean DISCONNECT:\n{}", mosq.log());
}
