//! Strict durability is the default: a broker started with no
//! `[persistence]` table keeps its persistent sessions and what it
//! acknowledged to them across `kill -9`, in `./data` of its working
//! directory (created 0700, the store file 0600); clean sessions leave
//! nothing on disk; and config checks and CLI commands do not create the
//! directory.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use portcullis_core::codec::QoS;
use portcullis_tests::kit::{disconnect, drain_publishes, open_v3, pub_simple, subscribe};
use portcullis_tests::Broker;

const LISTENER: &str = "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_persistence_table_a_session_survives_kill_9_in_dot_data() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start_in(cwd.path(), LISTENER);
    let (mut sub, present) = open_v3(broker.addr, "keeper", false).await;
    assert!(!present);
    subscribe(&mut sub, 1, &[("dev/keeper", QoS::AtLeastOnce)]).await;
    disconnect(sub).await;
    let (mut publisher, _) = open_v3(broker.addr, "pub", true).await;
    for (i, m) in [b"one".as_slice(), b"two"].into_iter().enumerate() {
        assert_eq!(pub_simple(&mut publisher, "dev/keeper", QoS::AtLeastOnce, i as u16 + 1, m, false).await, 0);
    }
    // Both PUBACKs came after the fsync: kill -9 at once.
    drop(publisher);
    drop(broker);

    let data = cwd.path().join("data");
    assert_eq!(mode(&data), 0o700, "the data directory");
    assert_eq!(mode(&data.join("store.redb")), 0o600, "the store file");

    let broker = Broker::start_in(cwd.path(), LISTENER);
    let (mut sub, present) = open_v3(broker.addr, "keeper", false).await;
    assert!(present, "the session came back; log:\n{}", broker.log());
    let got = drain_publishes(&mut sub, Duration::from_millis(500), Duration::from_secs(10)).await;
    let payloads: Vec<&[u8]> = got.iter().map(|p| &p.payload[..]).collect();
    assert_eq!(payloads, vec![b"one".as_slice(), b"two"], "both acknowledged messages, in order");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_checks_and_cli_commands_create_no_data_directory() {
    let cwd = tempfile::tempdir().expect("tempdir");
    let cfg = cwd.path().join("p.toml");
    std::fs::write(&cfg, LISTENER).expect("write config");
    let bin = portcullis_tests::binary();
    for args in [vec!["--check-config"], vec!["acl", "explain", "--client-id", "c", "--publish", "t"]] {
        let out = std::process::Command::new(&bin)
            .current_dir(cwd.path())
            .arg("--config")
            .arg(&cfg)
            .args(&args)
            .output()
            .expect("run");
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(!cwd.path().join("data").exists(), "{args:?} created ./data");
    }
}
