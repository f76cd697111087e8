//! The brute-force guard: after `max_failures` failed authentications
//! within `window`, the client's IP address — or its client id — is banned
//! for `ban`, and the gateway refuses its CONNECTs with `Deny(Banned)`
//! without asking any provider.
//!
//! * **Subjects** — the peer IP and the client id are counted separately.
//!   IPv4-mapped IPv6 addresses count as their IPv4 address; other IPv6
//!   addresses count per /64 (one subscriber's usual allocation, so an
//!   attacker cannot walk its own prefix). An empty client id is not
//!   counted. Loopback addresses are *not* exempt: a local attacker is an
//!   attacker, and a deployment that wants an exemption can disable the guard
//!   on an internal listener. Banning by client id means anyone can get a
//!   client id banned by failing with it; the ban is short for that reason.
//! * **Failures** — `Deny(BadCredentials)` and `Deny(NotAuthorized)` only.
//!   `Unavailable` never counts (an outage must not ban users) and neither
//!   does `Deny(Banned)` (already refused). See [`BruteForceGuard::record_result`].
//! * **Success** resets the client id's counter (a user who finally typed the
//!   right password starts over) but not the IP's: one address may be a NAT
//!   shared by an attacker and a legitimate user.
//! * **Window** — fixed, starting at a subject's first failure.
//! * **Memory** — two maps (failure counts, bans) of at most
//!   [`MAX_TRACKED`] subjects each, expiring in insertion order (every entry
//!   of a map has the same lifetime, so a queue finds expired entries in
//!   O(1)). When a map is full the oldest entry goes first. Time is tokio's
//!   clock, so tests drive it with the paused clock.
//! * **Logs** — a ban is logged once when it starts, with the subject (IP or
//!   client id), never a password.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::gate::{ConnectInfo, DenyReason};
use tokio::time::Instant;

use crate::chain::AuthResult;

/// Subjects tracked per map (failure counts, bans) at most.
pub const MAX_TRACKED: usize = 100_000;

/// Brute-force guard settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Off: nothing is counted and nobody is banned.
    pub enabled: bool,
    /// Failures within `window` that start a ban (0 counts as 1).
    pub max_failures: u32,
    /// How long failures are counted, from a subject's first failure.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
}

impl Default for GuardConfig {
    /// On: 10 failures within a minute ban for 5 minutes.
    fn default() -> Self {
        GuardConfig { enabled: true, max_failures: 10, window: Duration::from_secs(60), ban: Duration::from_secs(300) }
    }
}

/// Who is counted and banned.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    /// An IPv4 address, or an IPv6 /64 (the address with its low 64 bits
    /// zeroed), or IPv6 loopback.
    Ip(IpAddr),
    Client(Arc<str>),
}

impl Subject {
    fn ip(ip: IpAddr) -> Subject {
        Subject::Ip(match ip {
            IpAddr::V4(_) => ip,
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None if v6.is_loopback() => ip,
                None => {
                    let s = v6.segments();
                    IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
                }
            },
        })
    }

    /// The IP subject and, for a non-empty client id, the client subject.
    fn of(info: &ConnectInfo) -> impl Iterator<Item = Subject> {
        let client = (!info.client_id.is_empty()).then(|| Subject::Client(Arc::clone(&info.client_id)));
        std::iter::once(Subject::ip(info.peer.ip())).chain(client)
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Ip(IpAddr::V6(ip)) if !ip.is_loopback() => write!(f, "ip {ip}/64"),
            Subject::Ip(ip) => write!(f, "ip {ip}"),
            Subject::Client(id) => write!(f, "client id {id:?}"),
        }
    }
}

/// A bounded map whose entries all live `ttl` from insertion.
#[derive(Debug)]
struct TtlMap<V> {
    ttl: Duration,
    cap: usize,
    map: HashMap<Subject, (Instant, V)>,
    /// `(expiry, subject)` in insertion order, hence in expiry order. An
    /// entry whose expiry differs from the map's is left over from an
    /// earlier insertion and is skipped.
    queue: VecDeque<(Instant, Subject)>,
}

impl<V> TtlMap<V> {
    fn new(ttl: Duration, cap: usize) -> TtlMap<V> {
        TtlMap { ttl, cap: cap.max(1), map: HashMap::new(), queue: VecDeque::new() }
    }

    /// Drops every entry expired at `now`.
    fn purge(&mut self, now: Instant) {
        while let Some((at, _)) = self.queue.front() {
            if *at > now {
                break;
            }
            if let Some((at, k)) = self.queue.pop_front() {
                if self.map.get(&k).is_some_and(|(until, _)| *until == at) {
                    self.map.remove(&k);
                }
            }
        }
    }

    /// A live entry (call [`TtlMap::purge`] first).
    fn get_mut(&mut self, k: &Subject) -> Option<&mut V> {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    fn contains(&self, k: &Subject, now: Instant) -> bool {
        self.map.get(k).is_some_and(|(until, _)| now < *until)
    }

    /// Inserts or replaces `k`, living `ttl` from `now`; evicts the oldest
    /// entry when full.
    fn insert(&mut self, k: Subject, v: V, now: Instant) {
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.cap && self.evict_oldest() {}
        }
        let until = now + self.ttl;
        self.map.insert(k.clone(), (until, v));
        self.queue.push_back((until, k));
        if self.queue.len() > 2 * self.cap {
            let map = &self.map;
            self.queue.retain(|(at, k)| map.get(k).is_some_and(|(until, _)| until == at));
        }
    }

    fn evict_oldest(&mut self) -> bool {
        while let Some((at, k)) = self.queue.pop_front() {
            if self.map.get(&k).is_some_and(|(until, _)| *until == at) {
                self.map.remove(&k);
                return true;
            }
        }
        false
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

#[derive(Debug)]
struct State {
    failures: TtlMap<u32>,
    bans: TtlMap<()>,
}

/// The brute-force guard; see the module docs.
pub struct BruteForceGuard {
    cfg: GuardConfig,
    /// One short critical section per CONNECT (no await inside); CONNECTs
    /// are far rarer than publishes.
    state: Mutex<State>,
    /// CONNECTs refused because of a ban.
    refused: AtomicU64,
    bans_started: AtomicU64,
}

impl fmt::Debug for BruteForceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BruteForceGuard")
            .field("cfg", &self.cfg)
            .field("refused", &self.refused.load(Relaxed))
            .field("bans_started", &self.bans_started.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl BruteForceGuard {
    pub fn new(cfg: GuardConfig) -> Self {
        BruteForceGuard::with_capacity(cfg, MAX_TRACKED)
    }

    fn with_capacity(cfg: GuardConfig, cap: usize) -> Self {
        let state = State { failures: TtlMap::new(cfg.window, cap), bans: TtlMap::new(cfg.ban, cap) };
        BruteForceGuard { cfg, state: Mutex::new(state), refused: AtomicU64::new(0), bans_started: AtomicU64::new(0) }
    }

    /// True if the client's IP or client id is banned; the gateway then
    /// answers `Deny(Banned)` without asking providers. Each `true` counts
    /// in [`BruteForceGuard::banned_count`].
    pub fn is_banned(&self, info: &ConnectInfo) -> bool {
        if !self.cfg.enabled {
            return false;
        }
        let now = Instant::now();
        let banned = {
            let mut st = self.state.lock();
            st.bans.purge(now);
            Subject::of(info).any(|s| st.bans.contains(&s, now))
        };
        if banned {
            self.refused.fetch_add(1, Relaxed);
        }
        banned
    }

    /// Records an authentication outcome: `failed` counts a failure against
    /// the IP and the client id (and may start a ban); a success resets the
    /// client id's counter only. Callers holding a chain result should use
    /// [`BruteForceGuard::record_result`], which knows what counts.
    pub fn record(&self, info: &ConnectInfo, failed: bool) {
        if !self.cfg.enabled {
            return;
        }
        let now = Instant::now();
        let max = self.cfg.max_failures.max(1);
        let mut started = Vec::new();
        {
            let mut st = self.state.lock();
            st.failures.purge(now);
            st.bans.purge(now);
            for s in Subject::of(info) {
                if !failed {
                    if let (Subject::Client(_), Some(n)) = (&s, st.failures.get_mut(&s)) {
                        *n = 0;
                    }
                    continue;
                }
                if st.bans.contains(&s, now) {
                    continue;
                }
                let n = match st.failures.get_mut(&s) {
                    Some(n) => {
                        *n = n.saturating_add(1);
                        *n
                    }
                    None => {
                        st.failures.insert(s.clone(), 1, now);
                        1
                    }
                };
                if n >= max {
                    if let Some(n) = st.failures.get_mut(&s) {
                        *n = 0;
                    }
                    st.bans.insert(s.clone(), (), now);
                    started.push(s);
                }
            }
        }
        for s in started {
            self.bans_started.fetch_add(1, Relaxed);
            tracing::warn!(
                subject = %s,
                failures = max,
                window = ?self.cfg.window,
                ban = ?self.cfg.ban,
                "brute-force guard: ban started"
            );
        }
    }

    /// Records a chain result: `Deny(BadCredentials | NotAuthorized)` is a
    /// failure, `Allow` a success; `Unavailable` and `Deny(Banned)` are not
    /// recorded at all.
    pub fn record_result(&self, info: &ConnectInfo, result: &AuthResult) {
        match result {
            AuthResult::Deny(DenyReason::BadCredentials | DenyReason::NotAuthorized) => self.record(info, true),
            AuthResult::Allow { .. } => self.record(info, false),
            AuthResult::Deny(DenyReason::Banned) | AuthResult::Unavailable => {}
        }
    }

    /// How many CONNECTs were refused by the guard.
    pub fn banned_count(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// `(topic, value)` pairs under `prefix` (e.g. `auth/guard`): `refused`,
    /// `bans_started`, `active_bans`, `tracked` (subjects with failures).
    pub fn sys_values(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        let (active, tracked) = {
            let now = Instant::now();
            let mut st = self.state.lock();
            st.failures.purge(now);
            st.bans.purge(now);
            (st.bans.len() as u64, st.failures.len() as u64)
        };
        let prefix = prefix.trim_end_matches('/');
        for (k, v) in [
            ("refused", self.banned_count()),
            ("bans_started", self.bans_started.load(Relaxed)),
            ("active_bans", active),
            ("tracked", tracked),
        ] {
            let topic = if prefix.is_empty() { k.to_string() } else { format!("{prefix}/{k}") };
            out.push((topic, v.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Duration;

    use portcullis_core::gate::{ConnectInfo, DenyReason};
    use tokio::time::advance;

    use super::{BruteForceGuard, GuardConfig};
    use crate::chain::AuthResult;
    use crate::chain_tests::connect;

    fn cfg() -> GuardConfig {
        GuardConfig { enabled: true, max_failures: 3, window: Duration::from_secs(60), ban: Duration::from_secs(300) }
    }

    fn from(client: &str, peer: &str) -> ConnectInfo {
        let mut info = connect(client, Some("u"), Some(b"guess"));
        info.peer = peer.parse::<SocketAddr>().expect("literal address");
        info
    }

    fn fail(g: &BruteForceGuard, info: &ConnectInfo, times: usize) {
        for _ in 0..times {
            g.record(info, true);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failures_ban_the_ip_and_the_client_id() {
        let g = BruteForceGuard::new(cfg());
        let attacker = from("c1", "192.0.2.1:1000");
        fail(&g, &attacker, 2);
        assert!(!g.is_banned(&attacker), "two failures are not enough");
        fail(&g, &attacker, 1);
        assert!(g.is_banned(&attacker));
        assert!(g.is_banned(&from("other", "192.0.2.1:2000")), "same IP, other client id");
        assert!(g.is_banned(&from("c1", "198.51.100.7:1")), "same client id, other IP");
        assert!(!g.is_banned(&from("other", "198.51.100.7:1")));
        assert_eq!(g.banned_count(), 3);
        let mut sys = Vec::new();
        g.sys_values("auth/guard", &mut sys);
        for (k, v) in [("refused", "3"), ("bans_started", "2"), ("active_bans", "2"), ("tracked", "2")] {
            assert!(sys.contains(&(format!("auth/guard/{k}"), v.to_string())), "{k}: {sys:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_ban_expires() {
        let g = BruteForceGuard::new(cfg());
        let attacker = from("c1", "192.0.2.1:1000");
        fail(&g, &attacker, 3);
        advance(Duration::from_secs(299)).await;
        assert!(g.is_banned(&attacker));
        advance(Duration::from_secs(2)).await;
        assert!(!g.is_banned(&attacker));
        fail(&g, &attacker, 2);
        assert!(!g.is_banned(&attacker), "the count started over with the ban");
        fail(&g, &attacker, 1);
        assert!(g.is_banned(&attacker));
    }

    #[tokio::test(start_paused = true)]
    async fn failures_outside_the_window_do_not_add_up() {
        let g = BruteForceGuard::new(cfg());
        let info = from("c1", "192.0.2.1:1000");
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
        let info = from("c1", "192.0.2.1:1000");
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
    async fn success_resets_the_client_id_but_not_the_ip() {
        let g = BruteForceGuard::new(cfg());
        let user = from("c1", "192.0.2.1:1000");
        fail(&g, &user, 2);
        g.record_result(&user, &AuthResult::Allow { superuser: false, inline_acl: None, expires_at: None });
        fail(&g, &from("c1", "198.51.100.7:1"), 2);
        assert!(!g.is_banned(&from("c1", "198.51.100.7:1")), "client id count restarted");
        fail(&g, &from("c2", "192.0.2.1:1001"), 1);
        assert!(g.is_banned(&from("c3", "192.0.2.1:1002")), "the IP kept counting: 2 + 1");
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_guard_never_bans() {
        let g = BruteForceGuard::new(GuardConfig { enabled: false, ..cfg() });
        let info = from("c1", "192.0.2.1:1000");
        fail(&g, &info, 100);
        assert!(!g.is_banned(&info));
        assert_eq!(g.banned_count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn loopback_is_not_exempt_and_addresses_are_grouped() {
        let g = BruteForceGuard::new(GuardConfig { max_failures: 1, ..cfg() });
        g.record(&from("", "127.0.0.1:1"), true);
        assert!(g.is_banned(&from("", "127.0.0.1:2")));
        assert!(g.is_banned(&from("", "[::ffff:127.0.0.1]:2")), "IPv4-mapped counts as IPv4");
        assert!(!g.is_banned(&from("", "[::1]:2")));
        g.record(&from("", "[2001:db8:1:2:aaaa::1]:1"), true);
        assert!(g.is_banned(&from("", "[2001:db8:1:2:bbbb::9]:1")), "same /64");
        assert!(!g.is_banned(&from("", "[2001:db8:1:3::1]:1")), "other /64");
        assert!(!g.is_banned(&from("", "192.0.2.1:1")), "an empty client id is not a subject");
    }

    #[tokio::test(start_paused = true)]
    async fn memory_is_bounded() {
        let g = BruteForceGuard::with_capacity(GuardConfig { max_failures: 1, ..cfg() }, 4);
        for i in 0..50u8 {
            g.record(&from("", &format!("10.0.0.{i}:1")), true);
            advance(Duration::from_millis(10)).await;
        }
        {
            let st = g.state.lock();
            assert!(st.bans.len() <= 4 && st.failures.len() <= 4);
            assert!(st.bans.queue.len() <= 8 && st.failures.queue.len() <= 8);
        }
        assert!(g.is_banned(&from("", "10.0.0.49:1")), "the newest ban is kept");
        assert!(!g.is_banned(&from("", "10.0.0.0:1")), "the oldest made room");
        advance(Duration::from_secs(301)).await;
        let mut sys = Vec::new();
        g.sys_values("", &mut sys);
        assert!(sys.contains(&("active_bans".to_string(), "0".to_string())), "{sys:?}");
        assert!(g.state.lock().bans.queue.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn churn_does_not_grow_the_queue() {
        let g = BruteForceGuard::with_capacity(GuardConfig { max_failures: 1_000, ..cfg() }, 4);
        let info = from("c1", "192.0.2.1:1");
        for _ in 0..10_000 {
            g.record(&info, true);
            g.record(&info, false);
        }
        let st = g.state.lock();
        assert_eq!(st.failures.len(), 2);
        assert!(st.failures.queue.len() <= 8);
    }
}
