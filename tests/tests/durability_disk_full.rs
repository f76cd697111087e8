//! A full disk through the real binary: the store's directory on a small
//! tmpfs (mounted here, unmounted on drop even when the test fails; the
//! test needs root to mount: it is skipped without, and fails under
//! `CI=true`). A persistent session's queue fills it until commits fail:
//! an MQTT 5 publisher hears PUBACK 0x97, a 3.1.1 publisher's connection
//! closes without a PUBACK, the broker keeps serving clean sessions and
//! QoS 0, logs the failure at a bounded rate, and takes persistent work
//! again once space is freed; after a restart exactly the acknowledged
//! messages are there (nothing of a refused batch).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, QoS};
use portcullis_tests::kit::{
    disconnect, drain_publishes, open_v3, open_v5, opts, pub_simple, publish, subscribe, subscribe_with,
};
use portcullis_tests::Broker;

/// A tmpfs mounted on a fresh directory; unmounted (lazily if busy) and
/// removed on drop.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// `None` (the test is skipped) when mounting is not possible here,
    /// unless `CI=true`: then the test fails.
    fn mount(size: &str) -> Option<Tmpfs> {
        let path = tempfile::tempdir().expect("tempdir").keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(&path)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { path }),
            other => {
                let _ = std::fs::remove_dir(&path);
                let why = format!("cannot mount a tmpfs (needs root): {other:?}");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.path).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
        let _ = std::fs::remove_dir(&self.path);
    }
}

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(3600), ..Default::default() }
}

/// 4 KiB whose first 8 bytes are the message's number.
fn payload(n: u32) -> Vec<u8> {
    let mut p = format!("{n:08}").into_bytes();
    p.resize(4096, b'.');
    p
}

fn number(p: &[u8]) -> u32 {
    std::str::from_utf8(&p[..8]).ok().and_then(|s| s.parse().ok()).expect("numbered payload")
}

/// Writes `bytes` of zeros to `path` (fails if the tmpfs has no room).
fn ballast(path: &Path, bytes: usize) {
    std::fs::write(path, vec![0u8; bytes]).expect("write the ballast");
}

/// Fills what is left of the file system with `path` (writes until it is
/// refused; at most 64 MiB).
fn fill_up(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler");
    let chunk = vec![0u8; 64 << 10];
    for _ in 0..1024 {
        if f.write_all(&chunk).is_err() {
            return;
        }
    }
    panic!("the file system never filled up");
}

fn count(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_persistent_work_serves_the_rest_and_recovers() {
    // Declared first: dropped (unmounted) after the broker is killed.
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.path.join("data");
    let spare = fs.path.join("spare");
    // 1.5 MiB the operator can free later.
    ballast(&spare, 3 << 19);
    let cfg = format!(
        "[persistence]\nmode = \"strict\"\ndir = {:?}\n\n[session]\nmax_queue_len = 1000000\nmax_queue_bytes = \"1GiB\"\n",
        data.display().to_string()
    );
    let broker = Broker::start(&cfg);

    // The persistent session whose queue fills the disk, offline.
    let (mut sink, _) = open_v5(broker.addr, "sink", false, persistent()).await;
    subscribe(&mut sink, 1, &[("full/#", QoS::AtLeastOnce)]).await;
    disconnect(sink).await;

    // Persistent sessions that will subscribe while the disk is full.
    let (mut late5, _) = open_v5(broker.addr, "late5", false, persistent()).await;
    let (mut late3, _) = open_v3(broker.addr, "late3", false).await;

    // Fill until the first refusal.
    let (mut p5, _) = open_v5(broker.addr, "p5", true, Properties::default()).await;
    let mut acked = Vec::new();
    let mut n: u32 = 0;
    let started = Instant::now();
    let end = started + Duration::from_secs(120);
    let first_refusal = loop {
        assert!(n < 20_000 && Instant::now() < end, "8 MiB never filled after {n} messages");
        n += 1;
        match pub_simple(&mut p5, "full/q", QoS::AtLeastOnce, (n % 60_000) as u16 + 1, &payload(n), false).await {
            0 => acked.push(n),
            code => break code,
        }
    };
    assert_eq!(first_refusal, 0x97, "PUBACK 0x97 Quota exceeded after {} acknowledged", acked.len());
    assert!(acked.len() > 100, "the disk took only {} messages", acked.len());

    // While full: every further persistent PUBLISH is refused, quickly,
    // and logged at a bounded rate, not once per message.
    let full_since = Instant::now();
    let mut refused = 1;
    for _ in 0..200 {
        n += 1;
        match pub_simple(&mut p5, "full/q", QoS::AtLeastOnce, (n % 60_000) as u16 + 1, &payload(n), false).await {
            0 => acked.push(n),
            0x97 => refused += 1,
            other => panic!("PUBACK {other:#x}"),
        }
    }
    assert!(refused > 150, "still full: {refused} of 201 refused");
    // QoS 2: PUBREC 0x97, and the exchange is over (no PUBREL expected):
    // the packet id is free again, the message not taken.
    for _ in 0..2 {
        n += 1;
        let code = pub_simple(&mut p5, "full/q", QoS::ExactlyOnce, 60_001, &payload(n), false).await;
        assert_eq!(code, 0x97, "QoS 2 while full");
    }
    // A persistent session's SUBSCRIBE cannot be written: refused (v5
    // 0x97, 3.1.1 0x80), not in the router, so nothing reaches it.
    let ack = subscribe_with(&mut late5, 1, &[("late/#", opts(QoS::AtLeastOnce))], Properties::default()).await;
    assert_eq!(ack.return_codes, vec![0x97], "v5 SUBSCRIBE while full");
    let ack = subscribe_with(&mut late3, 1, &[("late/#", opts(QoS::AtLeastOnce))], Properties::default()).await;
    assert_eq!(ack.return_codes, vec![0x80], "3.1.1 SUBSCRIBE while full");
    assert_eq!(pub_simple(&mut p5, "late/x", QoS::AtMostOnce, 0, b"not for you", false).await, 0);
    for c in [&mut late5, &mut late3] {
        let got = drain_publishes(c, Duration::from_millis(300), Duration::from_secs(2)).await;
        assert!(got.is_empty(), "a refused subscription delivered {got:?}");
    }
    eprintln!(
        "{} acknowledged before the disk filled ({:?}); 201 refused in {:?}",
        acked.len(),
        full_since.duration_since(started),
        full_since.elapsed()
    );
    let secs = full_since.elapsed().as_secs() as usize + 2;
    assert!(broker.wait_log("store full", Duration::from_secs(5)), "the log names the cause:\n{}", broker.log());
    let lines = count(&broker.log(), "durable store failed");
    assert!(
        lines >= 1 && lines <= 20 * secs && lines < refused,
        "{lines} log lines for {refused} refusals in {secs} s"
    );

    // A 3.1.1 publisher cannot hear 0x97: closed without a PUBACK.
    let (mut p3, _) = open_v3(broker.addr, "p3", true).await;
    n += 1;
    p3.send_packet(&Packet::Publish(publish("full/q", QoS::AtLeastOnce, Some(1), &payload(n), false))).await;
    match p3.recv_timeout(Duration::from_secs(10)).await {
        Ok(None) => {}
        other => panic!("3.1.1: expected the connection closed without PUBACK, got {other:?}"),
    }

    // Clean sessions and QoS 0 still work.
    let (mut clean_sub, _) = open_v3(broker.addr, "clean-sub", true).await;
    subscribe(&mut clean_sub, 1, &[("clean/#", QoS::AtLeastOnce)]).await;
    assert_eq!(pub_simple(&mut p5, "clean/a", QoS::AtMostOnce, 0, b"q0", false).await, 0);
    assert_eq!(pub_simple(&mut p5, "clean/b", QoS::AtLeastOnce, 7, b"q1", false).await, 0, "no persistent receiver");
    let got = drain_publishes(&mut clean_sub, Duration::from_millis(300), Duration::from_secs(5)).await;
    let got: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(got, vec![b"q0".as_slice(), b"q1"], "the clean session got both");
    let (newcomer, _) = open_v3(broker.addr, "newcomer", true).await;
    drop(newcomer);

    // The operator frees space: persistent work is taken again.
    std::fs::remove_file(&spare).expect("free the spare space");
    let end = Instant::now() + Duration::from_secs(10);
    let mut after = 0;
    while after < 5 {
        assert!(Instant::now() < end, "still refused after space was freed; log:\n{}", broker.log());
        n += 1;
        if pub_simple(&mut p5, "full/q", QoS::AtLeastOnce, (n % 60_000) as u16 + 1, &payload(n), false).await == 0 {
            acked.push(n);
            after += 1;
        }
    }
    subscribe(&mut late5, 2, &[("late/#", QoS::AtLeastOnce)]).await;
    let (mut p3, _) = open_v3(broker.addr, "p3", true).await;
    n += 1;
    assert_eq!(pub_simple(&mut p3, "full/q", QoS::AtLeastOnce, 2, &payload(n), false).await, 0, "3.1.1 too");
    acked.push(n);
    let mut broker = broker;
    assert!(broker.alive(), "the broker is running");
    assert!(!broker.log().contains("panicked"), "{}", broker.log());
    drop(broker); // SIGKILL

    // After a restart: exactly the acknowledged messages, in order.
    let broker = Broker::start(&cfg);
    let (mut sink, ack) = open_v5(broker.addr, "sink", false, persistent()).await;
    assert!(ack.session_present, "log:\n{}", broker.log());
    let got = drain_publishes(&mut sink, Duration::from_secs(1), Duration::from_secs(120)).await;
    let got: Vec<u32> = got.iter().map(|p| number(&p.payload)).collect();
    assert_eq!(got.len(), acked.len(), "delivered after the restart vs acknowledged");
    assert_eq!(got, acked, "every acknowledged message once, in order, and no refused one");
}

/// Relaxed mode acknowledges from memory; once a write fails it refuses
/// (0x97) — and once space is freed it takes work again, without a
/// restart. After a restart nothing is delivered twice or out of order,
/// and what was acknowledged after the recovery (and a window later) is
/// there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_mode_refuses_on_a_full_disk_and_recovers() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.path.join("data");
    let spare = fs.path.join("spare");
    ballast(&spare, 3 << 19);
    let cfg = format!(
        "[persistence]\nmode = \"relaxed\"\nrelaxed_window = \"20ms\"\ndir = {:?}\n\n\
         [session]\nmax_queue_len = 1000000\nmax_queue_bytes = \"1GiB\"\n",
        data.display().to_string()
    );
    let broker = Broker::start(&cfg);
    let (mut sink, _) = open_v5(broker.addr, "sink", false, persistent()).await;
    subscribe(&mut sink, 1, &[("full/#", QoS::AtLeastOnce)]).await;
    disconnect(sink).await;
    // The session is on disk (past the window); then nothing is left but
    // the store file's own free pages. (With room left, a relaxed group
    // that fails frees its space and the next, smaller write fits: the
    // publisher could go on for a long time without meeting the refusal.)
    tokio::time::sleep(Duration::from_millis(300)).await;
    let filler = fs.path.join("filler");
    fill_up(&filler);

    let (mut p5, _) = open_v5(broker.addr, "p5", true, Properties::default()).await;
    let mut n: u32 = 0;
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(n < 20_000 && Instant::now() < end, "8 MiB never filled after {n} messages");
        n += 1;
        let code = pub_simple(&mut p5, "full/q", QoS::AtLeastOnce, (n % 60_000) as u16 + 1, &payload(n), false).await;
        if code != 0 {
            assert_eq!(code, 0x97, "refused with Quota exceeded");
            break;
        }
    }

    std::fs::remove_file(&spare).expect("free the spare space");
    std::fs::remove_file(&filler).expect("free the filler");
    let end = Instant::now() + Duration::from_secs(10);
    let mut after = Vec::new();
    while after.len() < 5 {
        assert!(Instant::now() < end, "still refused after space was freed; log:\n{}", broker.log());
        n += 1;
        if pub_simple(&mut p5, "full/q", QoS::AtLeastOnce, (n % 60_000) as u16 + 1, &payload(n), false).await == 0 {
            after.push(n);
        }
    }
    // Past the window: on disk.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut broker = broker;
    assert!(broker.alive() && !broker.log().contains("panicked"), "{}", broker.log());
    drop(broker); // SIGKILL

    let broker = Broker::start(&cfg);
    let (mut sink, ack) = open_v5(broker.addr, "sink", false, persistent()).await;
    assert!(ack.session_present, "log:\n{}", broker.log());
    let got = drain_publishes(&mut sink, Duration::from_secs(1), Duration::from_secs(120)).await;
    let got: Vec<u32> = got.iter().map(|p| number(&p.payload)).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order, none twice");
    for a in &after {
        assert!(got.contains(a), "{a}, acknowledged after the recovery, is lost");
    }
}

/// A `$delayed/…` message the store cannot take: the HTTP publish API
/// answers 503 with reason code 151 (0x97) instead of 200, and a delayed
/// will whose commit fails is logged and counted
/// (`metrics/messages/wills_store_failed`). Before, both were
/// fire-and-forget: the API said 200 and the will's failure went unseen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_publish_the_store_cannot_take_is_refused_over_http_and_a_failed_will_counted() {
    let Some(fs) = Tmpfs::mount("8m") else { return };
    let data = fs.path.join("data");
    let admin = tempfile::tempdir().expect("tempdir");
    let boot = admin.path().join("bootstrap");
    std::fs::write(&boot, "admin:s3cret-s3cret-s3cret:administrator\n").expect("bootstrap");
    let cfg = format!(
        "[persistence]\nmode = \"strict\"\ndir = {:?}\n\n[modules.delayed]\nenabled = true\n\n[sys]\ninterval = \"1s\"\n\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {:?}\nbootstrap_file = {:?}\n",
        data.display().to_string(),
        admin.path().join("admin").display().to_string(),
        boot.display().to_string()
    );
    let broker = Broker::start(&cfg);
    let api = broker.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", broker.log()));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
    let post = |topic: String, payload: String| {
        let req = http
            .post(format!("http://{api}/api/v5/publish"))
            .basic_auth("admin", Some("s3cret-s3cret-s3cret"))
            .json(&serde_json::json!({"topic": topic, "payload": payload}));
        async move {
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            (status, res.json::<serde_json::Value>().await.expect("JSON body"))
        }
    };
    let (st, body) = post("$delayed/600/a/small".into(), "x".into()).await;
    assert_eq!(st, 200, "taken while the disk has room: {body}");

    fill_up(&fs.path.join("filler"));
    let big = ".".repeat(300_000);
    let mut refused = None;
    for i in 0..10 {
        let (st, body) = post(format!("$delayed/600/a/big{i}"), big.clone()).await;
        if st != 200 {
            refused = Some((st, body));
            break;
        }
    }
    let (st, body) = refused.expect("a 300 kB delayed message on a full disk was never refused");
    assert_eq!(st, 503, "{body}");
    assert_eq!(body["reason_code"], 151, "{body}");
    assert!(body["message"].as_str().is_some_and(|m| m.starts_with("store_failed")), "{body}");

    // A delayed will the store cannot take either.
    let mut c = portcullis_tests::kit::connect_packet(portcullis_core::codec::ProtocolVersion::V5, "dying", true);
    // (a will's payload has a 2-byte length)
    let mut w = portcullis_tests::kit::will("$delayed/600/a/will", &big[..60_000], QoS::AtLeastOnce, false);
    w.properties = Properties::default();
    c.will = Some(w);
    let (raw, ack) = portcullis_tests::kit::open(broker.addr, c).await;
    assert_eq!(ack.code, 0);
    drop(raw);
    assert!(broker.wait_log("delayed will not stored", Duration::from_secs(10)), "{}", broker.log());
    let n =
        portcullis_tests::kit::sys_fresh(broker.addr, "metrics/messages/wills_store_failed", Duration::from_secs(5))
            .await;
    assert_eq!(n, "1");
}
