use std::net::SocketAddr;
use std::time::Duration;

use portcullis_core::gate::{ConnectInfo, DenyReason};
use tokio::time::advance;

use super::{Admission, BruteForceGuard, GuardConfig, Subject, LABEL_MAX};
use crate::chain::AuthResult;
use crate::chain_tests::connect;

/// The guard's `$SYS` values, through the metrics registry.
fn sys_values(g: &BruteForceGuard) -> Vec<(String, String)> {
    let mut s = portcullis_core::metrics::Scrape::new();
    g.collect(&mut s);
    s.sys_values()
}

fn cfg() -> GuardConfig {
    GuardConfig {
        enabled: true,
        max_failures: 3,
        max_failures_per_ip: 5,
        window: Duration::from_secs(60),
        ban: Duration::from_secs(300),
        exempt: Vec::new(),
    }
}

fn from(client: &str, user: Option<&str>, peer: &str) -> ConnectInfo {
    let mut info = connect(client, user, Some(b"guess"));
    info.peer = peer.parse::<SocketAddr>().expect("literal address");
    info
}

fn user(name: &str, peer: &str) -> ConnectInfo {
    from("c", Some(name), peer)
}

fn fail(g: &BruteForceGuard, info: &ConnectInfo, times: usize) {
    for _ in 0..times {
        g.record(info, true);
    }
}

const DENY: AuthResult = AuthResult::Deny(DenyReason::BadCredentials);

fn allow() -> AuthResult {
    AuthResult::Allow { superuser: false, inline_acl: None, expires_at: None }
}

#[tokio::test(start_paused = true)]
async fn failures_ban_the_pair_then_the_address() {
    let g = BruteForceGuard::new(cfg());
    let alice = user("alice", "192.0.2.1:1000");
    fail(&g, &alice, 2);
    assert!(!g.is_banned(&alice), "two failures are not enough");
    fail(&g, &alice, 1);
    assert!(g.is_banned(&alice), "three failures of alice ban (address, alice)");
    assert!(g.is_banned(&user("alice", "192.0.2.1:2000")), "same pair, other port");
    assert!(!g.is_banned(&user("bob", "192.0.2.1:2000")), "bob behind the same address is not locked out");
    assert!(!g.is_banned(&user("alice", "198.51.100.7:1")), "alice from elsewhere is not locked out");
    // Two more failures under other names reach the address's threshold (5).
    fail(&g, &user("carol", "192.0.2.1:1"), 1);
    assert!(!g.is_banned(&user("bob", "192.0.2.1:2000")));
    fail(&g, &user("dave", "192.0.2.1:1"), 1);
    assert!(g.is_banned(&user("bob", "192.0.2.1:2000")), "the spray is bounded per address");
    assert!(g.is_banned(&from("c", None, "192.0.2.1:3")), "anonymous from the banned address");
    let sys = sys_values(&g);
    for (k, v) in [("bans_started", "2"), ("active_bans", "2"), ("throttled", "0")] {
        assert!(sys.contains(&(format!("auth/guard/{k}"), v.to_string())), "{k}: {sys:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_client_id_is_never_counted() {
    let g = BruteForceGuard::new(cfg());
    // A stranger fails with the device's client id (and its username).
    fail(&g, &from("device-7", Some("device-7"), "203.0.113.9:1"), 10);
    fail(&g, &from("device-7", None, "203.0.113.10:1"), 10);
    assert!(!g.is_banned(&from("device-7", Some("device-7"), "192.0.2.50:1")), "the device from its own address");
    assert!(g.is_banned(&from("anything", Some("device-7"), "203.0.113.9:1")), "the stranger's pair is banned");
}

#[tokio::test(start_paused = true)]
async fn concurrent_attempts_are_bounded_by_free_slots() {
    let g = BruteForceGuard::new(cfg());
    let alice = user("alice", "192.0.2.1:1000");
    let mut admitted = Vec::new();
    let mut busy = 0;
    for _ in 0..40 {
        match g.admit(&alice) {
            Admission::Go(a) => admitted.push(a),
            Admission::Busy => busy += 1,
            Admission::Banned => panic!("nothing failed yet"),
        }
    }
    assert_eq!((admitted.len(), busy), (3, 37), "max_failures slots, no more");
    assert_eq!(g.throttled_count(), 37);
    for a in admitted {
        a.finish(&DENY);
    }
    assert!(g.is_banned(&alice));
    assert!(matches!(g.admit(&alice), Admission::Banned));
    let sys = sys_values(&g);
    assert!(sys.contains(&("auth/guard/in_flight".to_string(), "0".to_string())), "{sys:?}");
}

#[tokio::test(start_paused = true)]
async fn slots_come_back_on_success_and_on_drop() {
    let g = BruteForceGuard::new(cfg());
    let alice = user("alice", "192.0.2.1:1000");
    for _ in 0..10 {
        let (Admission::Go(a), Admission::Go(b), Admission::Go(c)) =
            (g.admit(&alice), g.admit(&alice), g.admit(&alice))
        else {
            panic!("three slots free");
        };
        assert!(matches!(g.admit(&alice), Admission::Busy));
        a.finish(&allow());
        b.finish(&AuthResult::Unavailable);
        drop(c);
    }
    assert!(!g.is_banned(&alice));
    assert_eq!(g.state.lock().in_flight.len(), 0);
    // Failures in flight and counted add up: 2 counted + 1 running.
    fail(&g, &alice, 2);
    let Admission::Go(a) = g.admit(&alice) else { panic!("one slot left") };
    assert!(matches!(g.admit(&alice), Admission::Busy));
    a.finish(&DENY);
    assert!(g.is_banned(&alice));
}

#[tokio::test(start_paused = true)]
async fn the_address_slots_bound_a_concurrent_spray() {
    let g = BruteForceGuard::new(cfg());
    let names: Vec<String> = (0..20).map(|i| format!("u{i}")).collect();
    let infos: Vec<ConnectInfo> = names.iter().map(|n| user(n, "192.0.2.1:1")).collect();
    let admitted: Vec<_> = infos.iter().filter_map(|i| matches!(g.admit(i), Admission::Go(_)).then_some(())).collect();
    // Each `Go` was dropped at once, so slots came back: all admitted.
    assert_eq!(admitted.len(), 20);
    let held: Vec<_> = infos
        .iter()
        .filter_map(|i| match g.admit(i) {
            Admission::Go(a) => Some(a),
            _ => None,
        })
        .collect();
    assert_eq!(held.len(), 5, "max_failures_per_ip attempts in flight from one address");
}

#[tokio::test(start_paused = true)]
async fn a_ban_expires_and_counting_starts_over() {
    let g = BruteForceGuard::new(cfg());
    let alice = user("alice", "192.0.2.1:1000");
    fail(&g, &alice, 3);
    advance(Duration::from_secs(299)).await;
    assert!(g.is_banned(&alice));
    advance(Duration::from_secs(2)).await;
    assert!(!g.is_banned(&alice));
    fail(&g, &alice, 2);
    assert!(!g.is_banned(&alice), "the count started over with the ban");
    fail(&g, &alice, 1);
    assert!(g.is_banned(&alice));
}

#[tokio::test(start_paused = true)]
async fn failures_outside_the_window_do_not_add_up() {
    let g = BruteForceGuard::new(cfg());
    let info = user("alice", "192.0.2.1:1000");
    fail(&g, &info, 2);
    advance(Duration::from_secs(61)).await;
    fail(&g, &info, 2);
    assert!(!g.is_banned(&info));
    fail(&g, &info, 1);
    assert!(g.is_banned(&info));
}

#[tokio::test(start_paused = true)]
async fn outages_and_banned_answers_never_count() {
    let g = BruteForceGuard::new(cfg());
    let info = user("alice", "192.0.2.1:1000");
    for _ in 0..100 {
        g.record_result(&info, &AuthResult::Unavailable);
        g.record_result(&info, &AuthResult::Deny(DenyReason::Banned));
    }
    assert!(!g.is_banned(&info));
    for r in [DenyReason::BadCredentials, DenyReason::NotAuthorized, DenyReason::BadCredentials] {
        g.record_result(&info, &AuthResult::Deny(r));
    }
    assert!(g.is_banned(&info));
}

#[tokio::test(start_paused = true)]
async fn success_resets_the_pair_but_not_the_address() {
    let g = BruteForceGuard::new(cfg());
    let alice = user("alice", "192.0.2.1:1000");
    fail(&g, &alice, 2);
    g.record_result(&alice, &allow());
    fail(&g, &alice, 2);
    assert!(!g.is_banned(&alice), "the pair's count restarted");
    fail(&g, &user("bob", "192.0.2.1:1"), 1);
    assert!(g.is_banned(&user("carol", "192.0.2.1:2")), "the address kept counting: 2 + 2 + 1");
}

#[tokio::test(start_paused = true)]
async fn exempt_networks_are_never_counted() {
    let g = BruteForceGuard::new(GuardConfig { exempt: vec!["10.0.0.0/8".parse().unwrap()], ..cfg() });
    let inside = user("alice", "10.1.2.3:1");
    fail(&g, &inside, 100);
    assert!(!g.is_banned(&inside));
    let held: Vec<_> = (0..50).map(|_| g.admit(&inside)).collect();
    assert!(held.iter().all(|a| matches!(a, Admission::Go(_))));
    assert!(g.is_exempt("::ffff:10.9.9.9".parse().unwrap()), "IPv4-mapped counts as IPv4");
    assert_eq!(g.state.lock().failures.len(), 0);
    fail(&g, &user("alice", "192.0.2.1:1"), 3);
    assert!(g.is_banned(&user("alice", "192.0.2.1:1")), "outside the exempt network");
}

#[tokio::test(start_paused = true)]
async fn disabled_guard_never_bans() {
    let g = BruteForceGuard::new(GuardConfig { enabled: false, ..cfg() });
    let info = user("alice", "192.0.2.1:1000");
    fail(&g, &info, 100);
    assert!(!g.is_banned(&info));
    assert!(matches!(g.admit(&info), Admission::Go(_)));
    assert_eq!(g.banned_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn loopback_is_not_exempt_and_addresses_are_grouped() {
    let g = BruteForceGuard::new(GuardConfig { max_failures_per_ip: 1, ..cfg() });
    g.record(&from("", None, "127.0.0.1:1"), true);
    assert!(g.is_banned(&from("", None, "127.0.0.1:2")));
    assert!(g.is_banned(&from("", None, "[::ffff:127.0.0.1]:2")), "IPv4-mapped counts as IPv4");
    assert!(!g.is_banned(&from("", None, "[::1]:2")));
    g.record(&from("", None, "[2001:db8:1:2:aaaa::1]:1"), true);
    assert!(g.is_banned(&from("", None, "[2001:db8:1:2:bbbb::9]:1")), "same /64");
    assert!(!g.is_banned(&from("", None, "[2001:db8:1:3::1]:1")), "other /64");
}

#[tokio::test(start_paused = true)]
async fn bans_can_be_listed_added_and_lifted() {
    let g = BruteForceGuard::new(cfg());
    fail(&g, &user("alice", "192.0.2.1:1"), 3);
    let long = "x".repeat(LABEL_MAX + 10);
    fail(&g, &user(&long, "[2001:db8::7]:1"), 3);
    g.ban(&Subject::Ip("198.51.100.1".parse().unwrap()), Some(Duration::from_secs(10)));
    let bans = g.bans();
    assert_eq!(bans.len(), 3, "{bans:?}");
    let alice = Subject::User { ip: "192.0.2.1".parse().unwrap(), username: "alice".into() };
    assert!(bans.iter().any(|b| b.subject == alice && !b.truncated && b.remaining == Duration::from_secs(300)));
    let cut = bans.iter().find(|b| b.truncated).expect("the long name");
    // Kept to LABEL_MAX bytes; a log line shows at most 128 of them.
    assert!(matches!(&cut.subject, Subject::User { username, .. } if username.len() == LABEL_MAX));
    assert!(cut.subject.to_string().starts_with("ip 2001:db8::/64 username xxx"));
    assert!(g.is_banned(&from("c", None, "198.51.100.1:5")));
    advance(Duration::from_secs(11)).await;
    assert!(!g.is_banned(&from("c", None, "198.51.100.1:5")), "an added ban keeps its own duration");
    assert!(g.unban(&alice));
    assert!(!g.unban(&alice));
    assert!(!g.is_banned(&user("alice", "192.0.2.1:9")));
    g.ban(&Subject::User { ip: "192.0.2.1".parse().unwrap(), username: "bob".into() }, None);
    assert!(g.is_banned(&user("bob", "192.0.2.1:9")));
    assert!(!g.is_banned(&user("bobby", "192.0.2.1:9")));
}

#[tokio::test(start_paused = true)]
async fn memory_is_bounded() {
    let g = BruteForceGuard::with_capacity(GuardConfig { max_failures_per_ip: 1, ..cfg() }, 4);
    for i in 0..50u8 {
        g.record(&from("", None, &format!("10.0.0.{i}:1")), true);
        advance(Duration::from_millis(10)).await;
    }
    {
        let st = g.state.lock();
        assert!(st.bans.len() <= 4 && st.failures.len() <= 4);
        assert!(st.bans.queue_len() <= 8 && st.failures.queue_len() <= 8);
    }
    assert!(g.is_banned(&from("", None, "10.0.0.49:1")), "the newest ban is kept");
    assert!(!g.is_banned(&from("", None, "10.0.0.0:1")), "the oldest made room");
    advance(Duration::from_secs(301)).await;
    let sys = sys_values(&g);
    assert!(sys.contains(&("auth/guard/active_bans".to_string(), "0".to_string())), "{sys:?}");
    assert_eq!(g.state.lock().bans.queue_len(), 0);
}

#[tokio::test(start_paused = true)]
async fn churn_does_not_grow_the_queue() {
    let g =
        BruteForceGuard::with_capacity(GuardConfig { max_failures: 100_000, max_failures_per_ip: 100_000, ..cfg() }, 4);
    let info = user("alice", "192.0.2.1:1");
    for _ in 0..10_000 {
        g.record(&info, true);
        g.record(&info, false);
    }
    let st = g.state.lock();
    assert_eq!(st.failures.len(), 1, "the address; a success forgets the pair");
    assert!(st.failures.queue_len() <= 8);
}

#[test]
fn stored_keys_name_their_subject_and_long_usernames_are_not_stored() {
    use super::{parse_stored_key, stored_key, Key, Label};
    use std::net::IpAddr;
    let v4 = IpAddr::from([10, 1, 2, 3]);
    let v6: IpAddr = "2001:db8::".parse().unwrap();
    let k = stored_key(Key::Ip(v4), &Label::of(Key::Ip(v4), None)).unwrap();
    assert_eq!(parse_stored_key(&k), Some(Subject::Ip(v4)));
    let user = Key::User(v6, 7);
    let k = stored_key(user, &Label::of(user, Some("ålice"))).unwrap();
    assert_eq!(parse_stored_key(&k), Some(Subject::User { ip: v6, username: "ålice".into() }));
    let long = "x".repeat(LABEL_MAX + 1);
    assert!(stored_key(user, &Label::of(user, Some(&long))).is_none(), "a cut-short username is not stored");
    let client = Key::Client(9);
    let k = stored_key(client, &Label::of(client, Some("dev/7"))).unwrap();
    assert_eq!(parse_stored_key(&k), Some(Subject::ClientId("dev/7".into())));
    for bad in [
        &b""[..],
        b"i",
        b"c",
        b"i\x05abcde",
        b"u\x04\x01\x02\x03\x04",
        b"z\x04\x01\x02\x03\x04",
        b"i\x04\x01\x02\x03\x04x",
    ] {
        assert_eq!(parse_stored_key(bad), None, "{bad:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn an_operator_bans_a_client_id_from_every_address_and_lifts_it() {
    let g = BruteForceGuard::new(GuardConfig { exempt: vec!["10.0.0.0/8".parse().unwrap()], ..cfg() });
    let dev = Subject::ClientId("device-7".into());
    g.ban(&dev, Some(Duration::from_secs(60)));
    assert!(g.is_banned(&from("device-7", None, "192.0.2.1:1")));
    assert!(g.is_banned(&from("device-7", Some("anyone"), "[2001:db8::1]:1")), "any address, any username");
    assert!(matches!(g.admit(&from("device-7", None, "192.0.2.2:1")), Admission::Banned));
    assert!(!g.is_banned(&from("device-8", None, "192.0.2.1:1")), "another id");
    assert!(!g.is_banned(&from("device-7", None, "10.1.2.3:1")), "exempt networks are never banned");
    let bans = g.bans();
    assert_eq!(bans.len(), 1, "{bans:?}");
    assert_eq!((&bans[0].subject, bans[0].truncated), (&dev, false));
    assert_eq!(dev.to_string(), "client id device-7");
    // Failures with the id never ban it (nor count for it).
    let other = Subject::ClientId("device-9".into());
    fail(&g, &from("device-9", None, "203.0.113.9:1"), 20);
    assert!(!g.is_banned(&from("device-9", None, "192.0.2.50:1")));
    assert!(!g.unban(&other));
    // Lifted; and a ban that runs out ends.
    assert!(g.unban(&dev));
    assert!(!g.is_banned(&from("device-7", None, "192.0.2.1:1")));
    g.ban(&dev, Some(Duration::from_secs(5)));
    assert!(g.is_banned(&from("device-7", None, "192.0.2.1:1")));
    advance(Duration::from_secs(6)).await;
    assert!(!g.is_banned(&from("device-7", None, "192.0.2.1:1")));
    // A long id is kept cut short to show.
    let long = "d".repeat(LABEL_MAX + 5);
    g.ban(&Subject::ClientId(long.clone()), None);
    assert!(g.is_banned(&from(&long, None, "192.0.2.1:1")));
    let cut = g.bans().into_iter().next().expect("ban");
    assert!(cut.truncated && matches!(&cut.subject, Subject::ClientId(id) if id.len() == LABEL_MAX));
}

/// A store that keeps the ban rows it is given, as the store would.
#[derive(Default)]
struct BanRows(parking_lot::Mutex<std::collections::BTreeMap<Vec<u8>, u64>>);

impl portcullis_core::durable::SessionStore for BanRows {
    fn commit(&self, changes: Vec<portcullis_core::durable::Change>) -> portcullis_core::durable::Commit {
        use portcullis_core::durable::Change;
        let mut rows = self.0.lock();
        for c in changes {
            match c {
                Change::BanPut { key, until_ms } => {
                    rows.insert(key.to_vec(), until_ms);
                }
                Change::BanDelete { key } => {
                    rows.remove(&key[..]);
                }
                _ => {}
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
    fn recover(&self) -> Result<portcullis_core::durable::Recovered, portcullis_core::durable::StoreError> {
        Ok(Default::default())
    }
}

/// Rows of bans that end at run time go when the guard finds them ended
/// (a CONNECT, a scrape, a sweep), not at the next start; so do those of
/// bans evicted to make room.
#[tokio::test(start_paused = true)]
async fn rows_of_bans_that_end_at_run_time_are_deleted() {
    let rows = std::sync::Arc::new(BanRows::default());
    let g = BruteForceGuard::with_capacity(GuardConfig { max_failures_per_ip: 100, ..cfg() }, 2);
    g.attach_store(rows.clone(), Vec::new());
    let count = |r: &BanRows| r.0.lock().len();
    fail(&g, &user("alice", "192.0.2.1:1"), 3);
    g.ban(&Subject::Ip("192.0.2.9".parse().unwrap()), Some(Duration::from_secs(10)));
    assert_eq!(count(&rows), 2);
    advance(Duration::from_secs(11)).await;
    g.sweep();
    assert_eq!(count(&rows), 1, "the 10 s ban's row went when it ended");
    advance(Duration::from_secs(290)).await;
    assert!(!g.is_banned(&user("alice", "192.0.2.1:1")));
    assert_eq!(count(&rows), 0, "found ended by a CONNECT: its row went");
    // Capacity 2: a third ban evicts the one closest to its end, row and all.
    for (i, secs) in [(1u8, 30u64), (2, 60), (3, 90)] {
        g.ban(&Subject::Ip(format!("198.51.100.{i}").parse().unwrap()), Some(Duration::from_secs(secs)));
    }
    let left: Vec<Vec<u8>> = rows.0.lock().keys().cloned().collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(!left.iter().any(|k| k.ends_with(&[198, 51, 100, 1])), "the evicted ban's row went");
}
