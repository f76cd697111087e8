//! The brute-force guard end to end (issue 11, point 4): concurrent guesses
//! are bounded before they reach a provider, a client id is never a ban
//! subject, failures are counted per (address, username) and, with a higher
//! threshold, per address, exempt networks are never counted, and logins
//! that ask no provider (cache hits, joiners of an identical call in
//! flight) take no slot.
//!
//! Clients play several addresses by binding their socket to 127.0.0.x;
//! provider calls are counted by a real HTTP webhook in this process
//! (`portcullis_tests::webhook`), which answers slowly so that concurrent
//! attempts really overlap.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use portcullis_core::codec::{Packet, ProtocolVersion};
use portcullis_tests::backend::connect_bytes;
use portcullis_tests::kit::sys_fresh;
use portcullis_tests::webhook::Webhook;
use portcullis_tests::{Broker, Raw};

const V3: ProtocolVersion = ProtocolVersion::V311;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// v5 CONNACK codes.
const OK: u8 = 0;
const BAD_CREDENTIALS: u8 = 0x86;
const BANNED: u8 = 0x8A;

fn ip(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// The CONNACK code of one CONNECT from `source`.
async fn connack_from(
    addr: SocketAddr,
    source: IpAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: &str,
    password: &str,
) -> u8 {
    let mut raw = Raw::connect_from(addr, source).await;
    raw.version = version;
    raw.send(&connect_bytes(version, client_id, Some(user), Some(password))).await;
    match raw.recv_timeout(Duration::from_secs(15)).await {
        Ok(Some(Packet::ConnAck(a))) => a.code,
        other => panic!("{client_id} from {source}: expected CONNACK, got {other:?}"),
    }
}

/// A password file with `users` in plain text (cheap to check).
fn password_file(dir: &Path, users: &[(&str, &str)]) -> String {
    let path = dir.join("passwd");
    let text: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    std::fs::write(&path, text).expect("write passwd");
    format!("[auth.password_file.pw]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n", path.display().to_string())
}

/// 40 concurrent wrong passwords for one user from one address: at most
/// `max_failures` (10, the default) reach the provider; the others are
/// refused as banned without asking it. Before, the ban was checked
/// before and the failure recorded after the chain, so all 40 were
/// checked against the webhook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_guesses_are_bounded_by_max_failures() {
    let w = Webhook::start(None).await;
    w.set_delay(Duration::from_millis(500));
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"hook\"]\n[auth.cache]\nmax_entries = 0\n\
         [auth.http.hook]\nurl = \"{}/mqtt/auth\"\nrequest_timeout = \"5s\"\ntimeout = \"10s\"\n",
        w.base()
    ));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let addr = b.addr;
            tokio::spawn(async move {
                connack_from(addr, ip(1), V5, &format!("g{i}"), "alice", &format!("guess-{i}")).await
            })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.expect("task"));
    }
    let checked = codes.iter().filter(|c| **c == BAD_CREDENTIALS).count();
    let refused = codes.iter().filter(|c| **c == BANNED).count();
    assert_eq!(checked + refused, 40, "{codes:?}");
    let calls = w.count();
    assert!(calls <= 10, "{calls} guesses reached the webhook, max_failures is 10 ({codes:?})");
    assert_eq!(calls as usize, checked, "every checked guess was one webhook call");
    // The pair is banned now, even with the right password; another user
    // behind the same address is not (10 failures < max_failures_per_ip).
    assert_eq!(connack_from(b.addr, ip(1), V5, "a1", "alice", "alice-pw").await, BANNED);
    assert_eq!(connack_from(b.addr, ip(1), V5, "b1", "bob", "bob-pw").await, OK);
    assert_eq!(connack_from(b.addr, ip(2), V5, "a2", "alice", "alice-pw").await, OK, "alice from elsewhere");
    assert!(w.count() <= 12, "the banned pair asked no provider");
}

/// A stranger failing with a device's client id never locks the device
/// out: neither when it logs in from elsewhere (the stranger also used its
/// username) nor from the stranger's own address with its own username
/// (the stranger used another one). Before, the client id itself was
/// banned, from everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strangers_failures_never_lock_out_a_device() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"pw\"]\n{}",
        password_file(dir.path(), &[("device-7", "dev-pw"), ("admin", "admin-pw")])
    ));
    for (i, (source, user)) in [(ip(2), "device-7"), (ip(4), "admin")].into_iter().enumerate() {
        for n in 0..12 {
            let got = connack_from(b.addr, source, V5, "device-7", user, &format!("guess-{i}-{n}")).await;
            let want = if n < 10 { BAD_CREDENTIALS } else { BANNED };
            assert_eq!(got, want, "stranger at {source} as {user}, attempt {n}");
        }
    }
    for v in [V3, V5] {
        assert_eq!(
            connack_from(b.addr, ip(3), v, "device-7", "device-7", "dev-pw").await,
            0,
            "{v:?}: the device from its own address"
        );
        assert_eq!(
            connack_from(b.addr, ip(4), v, "device-7", "device-7", "dev-pw").await,
            0,
            "{v:?}: the device with its own username, even from the stranger's address"
        );
    }
    assert!(b.wait_log("ban started", Duration::from_secs(2)), "{}", b.log());
    let log = b.log();
    assert!(!log.contains("client id \"device-7\""), "the client id was a ban subject:\n{log}");
}

/// Ten failed logins over several usernames from one address (two per
/// name) do not lock out another user behind it: the address's threshold
/// (`max_failures_per_ip`, 100 by default) is far above one user's. Before,
/// the default guard banned 127.0.0.1 after these ten failures, for five
/// minutes. A spray over many names is still bounded per address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_over_several_usernames_do_not_lock_out_the_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let users =
        [("alice", "alice-pw"), ("bob", "bob-pw"), ("u0", "x"), ("u1", "x"), ("u2", "x"), ("u3", "x"), ("u4", "x")];
    let b = Broker::start(&format!("[auth]\nchain = [\"pw\"]\n{}", password_file(dir.path(), &users)));
    for i in 0..10 {
        let user = format!("u{}", i % 5);
        assert_eq!(connack_from(b.addr, ip(1), V5, &format!("c{i}"), &user, "wrong").await, BAD_CREDENTIALS);
    }
    for v in [V3, V5] {
        assert_eq!(connack_from(b.addr, ip(1), v, "bob", "bob", "bob-pw").await, 0, "{v:?}: bob is not locked out");
        assert_eq!(connack_from(b.addr, ip(1), v, "u0", "u0", "x").await, 0, "{v:?}: u0 failed twice only");
    }
    drop(b);

    // With max_failures_per_ip = 20: a spray of one guess per name is banned
    // at the 20th failure, for every name from that address only.
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"pw\"]\n[auth.guard]\nmax_failures_per_ip = 20\n{}",
        password_file(dir.path(), &users)
    ));
    for i in 0..20 {
        let user = format!("spray-{i}");
        assert_eq!(connack_from(b.addr, ip(5), V5, &user, &user, "guess").await, BAD_CREDENTIALS, "{user}");
    }
    assert_eq!(connack_from(b.addr, ip(5), V5, "bob", "bob", "bob-pw").await, BANNED, "the address is banned");
    assert_eq!(connack_from(b.addr, ip(6), V5, "bob", "bob", "bob-pw").await, 0, "other addresses are not");
}

/// Exempt networks are never counted nor banned. Before, `exempt` was an
/// unknown key (the broker refused the config).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exempt_networks_are_never_banned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = Broker::start(&format!(
        "[auth]\nchain = [\"pw\"]\n[auth.guard]\nmax_failures = 3\nmax_failures_per_ip = 5\nexempt = [\"127.0.0.8/29\"]\n{}",
        password_file(dir.path(), &[("alice", "alice-pw")])
    ));
    for n in 0..20 {
        assert_eq!(connack_from(b.addr, ip(9), V5, "e", "alice", &format!("g{n}")).await, BAD_CREDENTIALS, "{n}");
    }
    assert_eq!(connack_from(b.addr, ip(9), V5, "e", "alice", "alice-pw").await, 0);
    for n in 0..3 {
        assert_eq!(connack_from(b.addr, ip(16), V5, "o", "alice", &format!("g{n}")).await, BAD_CREDENTIALS);
    }
    assert_eq!(connack_from(b.addr, ip(16), V5, "o", "alice", "alice-pw").await, BANNED, "outside the network");
}

/// Callers that ask no provider take no slot: a cold storm of one user's
/// identical logins from one address, far above `max_failures` at once,
/// is one webhook call (the auth cache's single flight: the others join
/// it), and a warm one is answered from the cache; nobody is throttled.
/// (Distinct guesses are each a call, and bounded: see above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_and_cached_logins_take_no_slot() {
    let w = Webhook::start(None).await;
    let b = Broker::start(&format!(
        "[sys]\ninterval = \"1s\"\n\
         [auth]\nchain = [\"hook\", \"anon\"]\n[auth.anonymous.anon]\n[auth.guard]\nmax_failures = 2\n\
         [auth.http.hook]\nurl = \"{}/mqtt/auth\"\nbody = {{ username = \"${{username}}\", password = \"${{password}}\" }}\n\
         request_timeout = \"5s\"\ntimeout = \"10s\"\n",
        w.base()
    ));
    let storm = |n: usize| {
        let addr = b.addr;
        (0..n)
            .map(|i| {
                tokio::spawn(async move { connack_from(addr, ip(1), V5, &format!("s{i}"), "bob", "bob-pw").await })
            })
            .collect::<Vec<_>>()
    };
    // Cold: the webhook answers after 500 ms, so the logins overlap.
    w.set_delay(Duration::from_millis(500));
    for wave in ["cold", "warm"] {
        let mut codes = Vec::new();
        for t in storm(30) {
            codes.push(t.await.expect("task"));
        }
        assert!(codes.iter().all(|c| *c == OK), "{wave}: {codes:?}");
        assert_eq!(w.count(), 1, "{wave}: one webhook call in all");
    }
    assert_eq!(sys_fresh(b.addr, "auth/guard/throttled", Duration::from_secs(5)).await, "0");
}

/// With the durable store, a ban outlives `kill -9`: after the restart the
/// banned pair is still refused (0x8A) while the same user from another
/// address, and another user from the same address, get in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ban_survives_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = format!(
        "[auth]\nchain = [\"pw\"]\n{}\n[auth.guard]\nmax_failures = 3\nban = \"1h\"\n\
         [persistence]\nmode = \"strict\"\ndir = {:?}\n",
        password_file(dir.path(), &[("alice", "right-one"), ("bob", "right-two")]),
        dir.path().join("data").display().to_string()
    );
    let b = Broker::start(&cfg);
    for i in 0..3 {
        assert_eq!(connack_from(b.addr, ip(7), V5, &format!("a{i}"), "alice", "wrong").await, BAD_CREDENTIALS);
    }
    assert_eq!(connack_from(b.addr, ip(7), V5, "a3", "alice", "right-one").await, BANNED, "banned before the kill");
    // The ban's row goes with the next group commit (not awaited).
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b); // SIGKILL

    let b = Broker::start(&cfg);
    assert!(b.log().contains("bans restored from the store"), "{}", b.log());
    assert_eq!(connack_from(b.addr, ip(7), V5, "a4", "alice", "right-one").await, BANNED, "banned after the restart");
    assert_eq!(connack_from(b.addr, ip(8), V5, "a5", "alice", "right-one").await, OK, "alice from elsewhere");
    assert_eq!(connack_from(b.addr, ip(7), V3, "b1", "bob", "right-two").await, 0, "bob from the same address");
}

/// The `bans` rows in the store file of `data` (the broker killed).
fn ban_rows(data: &Path) -> usize {
    use portcullis_store::engine::{redb::Redb, Engine, Table};
    let engine = Redb::open(&data.join("store.redb"), true).expect("open the store file");
    let mut n = 0;
    engine
        .scan(Table::Bans, &[], &mut |_, _| {
            n += 1;
            Ok(())
        })
        .expect("scan bans");
    n
}

/// A ban that ends while the broker runs loses its row then, not at the
/// next start: the row is there after a `kill -9` during the ban, the ban
/// comes back at the restart, ends, is found ended by the next CONNECT,
/// and after another `kill -9` (no start in between to tidy) its row is
/// gone. Before, ended bans' rows stayed until a start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_row_of_a_ban_that_ends_at_run_time_is_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let cfg = format!(
        "[auth]\nchain = [\"pw\"]\n{}\n[auth.guard]\nmax_failures = 3\nban = \"4s\"\n\
         [persistence]\nmode = \"strict\"\ndir = {:?}\n",
        password_file(dir.path(), &[("alice", "right-one")]),
        data.display().to_string()
    );
    let b = Broker::start(&cfg);
    let banned_at = std::time::Instant::now();
    for i in 0..3 {
        assert_eq!(connack_from(b.addr, ip(7), V5, &format!("a{i}"), "alice", "wrong").await, BAD_CREDENTIALS);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b); // SIGKILL during the ban
    assert_eq!(ban_rows(&data), 1, "the ban's row");

    let b = Broker::start(&cfg);
    assert!(b.log().contains("bans restored from the store"), "{}", b.log());
    assert_eq!(connack_from(b.addr, ip(7), V5, "a3", "alice", "right-one").await, BANNED, "still banned");
    tokio::time::sleep(Duration::from_secs(4).saturating_sub(banned_at.elapsed()) + Duration::from_millis(300)).await;
    assert_eq!(connack_from(b.addr, ip(7), V5, "a4", "alice", "right-one").await, OK, "the ban ended");
    // The delete goes with the next group commit.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(b); // SIGKILL: no start in between deletes anything
    assert_eq!(ban_rows(&data), 0, "the ended ban's row was deleted at run time");
}
