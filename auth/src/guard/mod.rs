//! The brute-force guard: it counts failed authentications per source and
//! bans a source that fails too often; the gateway then refuses its
//! CONNECTs with `Deny(Banned)` without asking any provider.
//!
//! * **Subjects** — the peer address, and the pair (address, username).
//!   A client id is never counted: anyone may send any client id, so
//!   counting it would let a stranger lock a device out by failing with
//!   its id. An operator may still ban one ([`Subject::ClientId`], through
//!   [`BruteForceGuard::ban`] only): then every CONNECT with that id is
//!   refused, from any address outside `exempt`. IPv4-mapped IPv6 addresses count as their IPv4 address; other
//!   IPv6 addresses count per /64 (one subscriber's usual allocation, so an
//!   attacker cannot walk its own prefix). Loopback is not exempt unless
//!   listed in `exempt`: a local attacker is an attacker.
//! * **Thresholds** — a pair is banned after `max_failures` failures within
//!   `window`; an address after `max_failures_per_ip`, which is higher:
//!   many users may share one address (a NAT, a test rig) and a few users'
//!   typos must not lock out everyone behind it, while a spray of guesses
//!   over many user names from one address is still bounded.
//! * **Attempts in flight** — an attempt takes a slot on each of its
//!   subjects *before* any provider is asked ([`BruteForceGuard::admit`]):
//!   failures plus attempts in flight must stay below the subject's
//!   threshold. A CONNECT that finds no free slot is refused like a banned
//!   one. So 40 concurrent guesses cannot all be checked against a limit
//!   of 10: at most 10 reach the providers. The slot is given back when
//!   the attempt ends ([`Attempt::finish`]); a success counts nothing, a
//!   failure is counted, an attempt dropped unfinished (the client went
//!   away) counts nothing. Answers from the auth cache, and callers that
//!   join an identical call in flight (its single flight), ask no provider
//!   and take no slot; their results are recorded
//!   ([`BruteForceGuard::record_result`]).
//! * **Failures** — `Deny(BadCredentials)` and `Deny(NotAuthorized)` only.
//!   `Unavailable` never counts (an outage must not ban users) and neither
//!   does `Deny(Banned)` (already refused).
//! * **Success** resets the pair's count but not the address's: one
//!   address may be a NAT shared by an attacker and a legitimate user.
//! * **Exempt networks** (`exempt`) are never counted, throttled or banned.
//! * **Window** — fixed, starting at a subject's first failure.
//! * **Memory** — failure counts and bans: at most [`MAX_TRACKED`] subjects
//!   each, expiring at their deadlines ([`ttl`]); when full, the entry
//!   closest to expiry goes first. A username is kept as a keyed 64-bit
//!   hash (a ban also keeps its first [`LABEL_MAX`] bytes to show), so a
//!   long username costs nothing. Attempts in flight: one entry per subject
//!   with an attempt running, removed when the last one ends. Time is
//!   tokio's clock, so tests drive it with the paused clock.
//! * **Introspection** — [`BruteForceGuard::bans`], [`BruteForceGuard::ban`]
//!   and [`BruteForceGuard::unban`] list, add and lift bans by [`Subject`].
//! * **Metrics** — [`BruteForceGuard::collect`]: `portcullis_guard_*` in
//!   Prometheus, `auth/guard/*` in `$SYS`.
//! * **Logs** — a ban is logged once when it starts, with its subject,
//!   never a password.
//! * **Durability** — with the broker's durable store
//!   ([`BruteForceGuard::attach_store`]), a ban is written when it starts
//!   and deleted when it is lifted (not awaited: a crash within the group
//!   commit's few milliseconds can lose it), and the bans still running
//!   are back after a restart, with their ends in wall-clock time. The
//!   row names the subject itself (the username's hash is keyed per
//!   process), so a ban on a username longer than [`LABEL_MAX`] bytes is
//!   not stored (the address's own ban, if any, is).

mod ttl;

#[cfg(test)]
mod tests;

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use parking_lot::Mutex;
use portcullis_core::durable::{Change, RecoveredBan, SessionStore};
use portcullis_core::gate::{ConnectInfo, DenyReason};
use portcullis_core::metrics::{Family, Kind, Scrape};
use tokio::time::Instant;

use self::ttl::TtlMap;
use crate::chain::AuthResult;

/// Subjects tracked per map (failure counts, bans) at most.
pub const MAX_TRACKED: usize = 100_000;

/// Bytes of a banned username kept to show in [`BruteForceGuard::bans`].
pub const LABEL_MAX: usize = 256;

/// Brute-force guard settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    /// Off: nothing is counted and nobody is banned.
    pub enabled: bool,
    /// Failures of one username from one address within `window` that ban
    /// that pair (0 counts as 1).
    pub max_failures: u32,
    /// Failures from one address, over all usernames, within `window` that
    /// ban the address (0 counts as 1).
    pub max_failures_per_ip: u32,
    /// How long failures are counted, from a subject's first failure.
    pub window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Networks never counted nor banned.
    pub exempt: Vec<IpNet>,
}

impl Default for GuardConfig {
    /// On: 10 failures of one username from one address, or 100 from one
    /// address, within a minute ban for 5 minutes; nothing exempt.
    fn default() -> Self {
        GuardConfig {
            enabled: true,
            max_failures: 10,
            max_failures_per_ip: 100,
            window: Duration::from_secs(60),
            ban: Duration::from_secs(300),
            exempt: Vec::new(),
        }
    }
}

/// Who is counted and banned, as the guard shows it and as an operator
/// names it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// An address: IPv4, IPv6 loopback, or an IPv6 /64 (named by any
    /// address in it; shown as its network address).
    Ip(IpAddr),
    /// One username tried from one address (grouped as for `Ip`).
    User { ip: IpAddr, username: String },
    /// A client id, from any address: banned by an operator only, never
    /// counted (see the module docs).
    ClientId(String),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ip = |f: &mut fmt::Formatter<'_>, ip: &IpAddr| match ip {
            IpAddr::V6(v6) if !v6.is_loopback() => write!(f, "ip {v6}/64"),
            other => write!(f, "ip {other}"),
        };
        match self {
            Subject::Ip(a) => ip(f, a),
            Subject::User { ip: a, username } => {
                ip(f, a)?;
                // Escaped and cut like every peer string in a log line.
                write!(f, " username {}", portcullis_core::logsafe::Peer(username))
            }
            Subject::ClientId(id) => write!(f, "client id {}", portcullis_core::logsafe::Peer(id)),
        }
    }
}

/// One active ban.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BanInfo {
    pub subject: Subject,
    /// The username (or client id) was longer than [`LABEL_MAX`] bytes
    /// and is cut short in `subject` (so `unban` with it would not find
    /// the ban).
    pub truncated: bool,
    /// Time left.
    pub remaining: Duration,
}

/// What [`BruteForceGuard::admit`] decided.
#[derive(Debug)]
pub enum Admission<'a> {
    /// Ask the providers, then [`Attempt::finish`].
    Go(Attempt<'a>),
    /// A subject is banned.
    Banned,
    /// A subject has no free slot: its failures and attempts in flight
    /// already reach its threshold.
    Busy,
}

/// A subject in the maps: usernames and client ids are hashed (see the
/// module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    Ip(IpAddr),
    User(IpAddr, u64),
    /// Only ever in `bans`: client ids are never counted.
    Client(u64),
}

/// What a ban keeps to show its subject: the username's (or client id's)
/// first bytes and whether it was longer.
#[derive(Debug)]
struct Label {
    name: Option<Box<str>>,
    truncated: bool,
}

impl Label {
    fn of(key: Key, name: Option<&str>) -> Label {
        match (key, name) {
            (Key::User(..) | Key::Client(_), Some(u)) => {
                let mut end = u.len().min(LABEL_MAX);
                while !u.is_char_boundary(end) {
                    end -= 1;
                }
                Label { name: Some(u[..end].into()), truncated: end < u.len() }
            }
            _ => Label { name: None, truncated: false },
        }
    }

    fn subject(&self, key: Key) -> Subject {
        let name = || self.name.as_deref().unwrap_or("").to_string();
        match key {
            Key::Ip(ip) => Subject::Ip(ip),
            Key::User(ip, _) => Subject::User { ip, username: name() },
            Key::Client(_) => Subject::ClientId(name()),
        }
    }
}

#[derive(Debug)]
struct State {
    failures: TtlMap<Key, u32>,
    bans: TtlMap<Key, Label>,
    /// Attempts admitted and not yet ended, per subject.
    in_flight: HashMap<Key, u32>,
}

/// The brute-force guard; see the module docs.
pub struct BruteForceGuard {
    cfg: GuardConfig,
    /// Keys the username hashes (random per process).
    hasher: RandomState,
    /// One short critical section per CONNECT (no await inside); CONNECTs
    /// are far rarer than publishes.
    state: Mutex<State>,
    /// CONNECTs refused because of a ban.
    refused: AtomicU64,
    /// CONNECTs refused for want of a free slot.
    throttled: AtomicU64,
    bans_started: AtomicU64,
    /// The broker's durable store, once attached.
    store: OnceLock<Arc<dyn SessionStore>>,
}

impl fmt::Debug for BruteForceGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BruteForceGuard")
            .field("cfg", &self.cfg)
            .field("refused", &self.refused.load(Relaxed))
            .field("throttled", &self.throttled.load(Relaxed))
            .field("bans_started", &self.bans_started.load(Relaxed))
            .finish_non_exhaustive()
    }
}

/// The address as counted: IPv4-mapped as IPv4, IPv6 loopback as is,
/// other IPv6 as its /64.
fn group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.is_loopback() => ip,
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// `Some(true)`: a failure; `Some(false)`: a success; `None`: neither.
fn failed(result: &AuthResult) -> Option<bool> {
    match result {
        AuthResult::Deny(DenyReason::BadCredentials | DenyReason::NotAuthorized) => Some(true),
        AuthResult::Allow { .. } => Some(false),
        AuthResult::Deny(DenyReason::Banned) | AuthResult::Unavailable => None,
    }
}

/// Unix time in milliseconds.
fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A ban's row key in the durable store: `i` or `u`, the address (4 or 16
/// bytes after its length), and for `u` the username; or `c` and the
/// client id; `None` for a name the ban does not keep whole.
fn stored_key(key: Key, label: &Label) -> Option<Arc<[u8]>> {
    let ip = |out: &mut Vec<u8>, ip: IpAddr| match ip {
        IpAddr::V4(v4) => {
            out.push(4);
            out.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            out.push(16);
            out.extend_from_slice(&v6.octets());
        }
    };
    let mut out = Vec::with_capacity(24);
    match key {
        Key::Ip(a) => {
            out.push(b'i');
            ip(&mut out, a);
        }
        Key::User(a, _) => {
            let username = label.name.as_deref().filter(|_| !label.truncated)?;
            out.push(b'u');
            ip(&mut out, a);
            out.extend_from_slice(username.as_bytes());
        }
        Key::Client(_) => {
            let id = label.name.as_deref().filter(|_| !label.truncated)?;
            out.push(b'c');
            out.extend_from_slice(id.as_bytes());
        }
    }
    Some(out.into())
}

/// The subject a [`stored_key`] names.
fn parse_stored_key(b: &[u8]) -> Option<Subject> {
    let (&kind, rest) = b.split_first()?;
    if kind == b'c' {
        return match rest.len() {
            1..=LABEL_MAX => Some(Subject::ClientId(std::str::from_utf8(rest).ok()?.to_string())),
            _ => None,
        };
    }
    let (&len, rest) = rest.split_first()?;
    let (addr, rest) = rest.split_at_checked(usize::from(len))?;
    let ip = match len {
        4 => IpAddr::from(<[u8; 4]>::try_from(addr).ok()?),
        16 => IpAddr::from(<[u8; 16]>::try_from(addr).ok()?),
        _ => return None,
    };
    match (kind, rest.is_empty()) {
        (b'i', true) => Some(Subject::Ip(ip)),
        (b'u', false) if rest.len() <= LABEL_MAX => {
            Some(Subject::User { ip, username: std::str::from_utf8(rest).ok()?.to_string() })
        }
        _ => None,
    }
}

impl BruteForceGuard {
    pub fn new(cfg: GuardConfig) -> Self {
        BruteForceGuard::with_capacity(cfg, MAX_TRACKED)
    }

    fn with_capacity(cfg: GuardConfig, cap: usize) -> Self {
        let state = State { failures: TtlMap::new(cap), bans: TtlMap::new(cap), in_flight: HashMap::new() };
        BruteForceGuard {
            cfg,
            hasher: RandomState::new(),
            state: Mutex::new(state),
            refused: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            bans_started: AtomicU64::new(0),
            store: OnceLock::new(),
        }
    }

    pub fn config(&self) -> &GuardConfig {
        &self.cfg
    }

    /// Whether an address is in `exempt` (IPv4-mapped addresses as IPv4).
    pub fn is_exempt(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.cfg.exempt.iter().any(|n| n.contains(&ip))
    }

    fn user_key(&self, ip: IpAddr, username: &str) -> Key {
        Key::User(ip, self.hasher.hash_one(username.as_bytes()))
    }

    /// The subjects of a CONNECT: none when the guard is off or the peer
    /// exempt; the address, and the pair when a username was sent.
    fn keys(&self, info: &ConnectInfo) -> [Option<Key>; 2] {
        if !self.cfg.enabled || self.is_exempt(info.peer.ip()) {
            return [None, None];
        }
        let ip = group(info.peer.ip());
        [Some(Key::Ip(ip)), info.username.as_deref().map(|u| self.user_key(ip, u))]
    }

    /// The CONNECT's client id as a ban key (never counted): none when
    /// the guard is off or the peer exempt.
    fn client_key(&self, info: &ConnectInfo) -> Option<Key> {
        if !self.cfg.enabled || self.is_exempt(info.peer.ip()) {
            return None;
        }
        Some(Key::Client(self.hasher.hash_one(info.client_id.as_bytes())))
    }

    fn key_of(&self, s: &Subject) -> Key {
        match s {
            Subject::Ip(ip) => Key::Ip(group(*ip)),
            Subject::User { ip, username } => self.user_key(group(*ip), username),
            Subject::ClientId(id) => Key::Client(self.hasher.hash_one(id.as_bytes())),
        }
    }

    fn limit(&self, k: Key) -> u32 {
        match k {
            Key::Ip(_) => self.cfg.max_failures_per_ip.max(1),
            Key::User(..) => self.cfg.max_failures.max(1),
            // Never in `keys`, so never counted; no count reaches this.
            Key::Client(_) => u32::MAX,
        }
    }

    /// True if a subject of the CONNECT is banned; the gateway then
    /// answers `Deny(Banned)` without asking providers. Each `true` counts
    /// in [`BruteForceGuard::banned_count`].
    pub fn is_banned(&self, info: &ConnectInfo) -> bool {
        let keys = self.keys(info);
        if keys.iter().all(Option::is_none) {
            return false;
        }
        let client = self.client_key(info);
        let now = Instant::now();
        let banned = {
            let mut st = self.state.lock();
            self.purge_bans(&mut st, now);
            keys.iter().chain(std::iter::once(&client)).flatten().any(|k| st.bans.contains(k, now))
        };
        if banned {
            self.refused.fetch_add(1, Relaxed);
        }
        banned
    }

    /// Takes a slot on each subject of the CONNECT before providers are
    /// asked; refuses when a subject is banned or has no free slot. The
    /// slot is given back by [`Attempt::finish`] (or when the attempt is
    /// dropped).
    pub fn admit<'a>(&'a self, info: &'a ConnectInfo) -> Admission<'a> {
        let keys = self.keys(info);
        if keys.iter().all(Option::is_none) {
            return Admission::Go(Attempt { guard: self, info, keys, open: false });
        }
        let client = self.client_key(info);
        let now = Instant::now();
        {
            let mut st = self.state.lock();
            self.purge_bans(&mut st, now);
            st.failures.purge(now);
            if keys.iter().chain(std::iter::once(&client)).flatten().any(|k| st.bans.contains(k, now)) {
                drop(st);
                self.refused.fetch_add(1, Relaxed);
                return Admission::Banned;
            }
            for k in keys.iter().flatten() {
                let failures = st.failures.get(k).map_or(0, |(_, n)| *n);
                let running = st.in_flight.get(k).copied().unwrap_or(0);
                if failures.saturating_add(running) >= self.limit(*k) {
                    drop(st);
                    self.throttled.fetch_add(1, Relaxed);
                    return Admission::Busy;
                }
            }
            for k in keys.iter().flatten() {
                *st.in_flight.entry(*k).or_insert(0) += 1;
            }
        }
        Admission::Go(Attempt { guard: self, info, keys, open: true })
    }

    /// Records an outcome that took no slot (an answer from the auth
    /// cache): `failed` counts a failure against each subject (and may
    /// start a ban); a success resets the pair's count only. Callers
    /// holding a chain result should use [`BruteForceGuard::record_result`],
    /// which knows what counts.
    pub fn record(&self, info: &ConnectInfo, failed: bool) {
        self.settle(info, self.keys(info), Some(failed), false);
    }

    /// [`BruteForceGuard::record`] for a chain result:
    /// `Deny(BadCredentials | NotAuthorized)` is a failure, `Allow` a
    /// success; `Unavailable` and `Deny(Banned)` are not recorded at all.
    pub fn record_result(&self, info: &ConnectInfo, result: &AuthResult) {
        if let Some(f) = failed(result) {
            self.record(info, f);
        }
    }

    /// Gives back the slots of `keys` (when `release`) and records the
    /// outcome, in one critical section.
    fn settle(&self, info: &ConnectInfo, keys: [Option<Key>; 2], outcome: Option<bool>, release: bool) {
        if keys.iter().all(Option::is_none) {
            return;
        }
        let now = Instant::now();
        let mut started = Vec::new();
        {
            let mut st = self.state.lock();
            if release {
                for k in keys.iter().flatten() {
                    if let Entry::Occupied(mut e) = st.in_flight.entry(*k) {
                        if *e.get() <= 1 {
                            e.remove();
                        } else {
                            *e.get_mut() -= 1;
                        }
                    }
                }
            }
            st.failures.purge(now);
            self.purge_bans(&mut st, now);
            match outcome {
                None => {}
                Some(false) => {
                    if let Some(k) = keys[1] {
                        st.failures.remove(&k);
                    }
                }
                Some(true) => {
                    for k in keys.into_iter().flatten() {
                        if st.bans.contains(&k, now) {
                            continue;
                        }
                        let n = match st.failures.get_mut(&k) {
                            Some(n) => {
                                *n = n.saturating_add(1);
                                *n
                            }
                            None => {
                                st.failures.insert(k, 1, now + self.cfg.window);
                                1
                            }
                        };
                        if n >= self.limit(k) {
                            st.failures.remove(&k);
                            let label = Label::of(k, info.username.as_deref());
                            started.push((label.subject(k), self.limit(k), stored_key(k, &label)));
                            self.insert_ban(&mut st, k, label, now + self.cfg.ban);
                        }
                    }
                }
            }
        }
        for (subject, failures, row) in started {
            self.bans_started.fetch_add(1, Relaxed);
            self.persist(row, self.cfg.ban);
            tracing::warn!(
                subject = %subject,
                failures,
                window = ?self.cfg.window,
                ban = ?self.cfg.ban,
                "brute-force guard: ban started"
            );
        }
    }

    /// How many CONNECTs were refused because of a ban.
    pub fn banned_count(&self) -> u64 {
        self.refused.load(Relaxed)
    }

    /// How many CONNECTs were refused for want of a free slot.
    pub fn throttled_count(&self) -> u64 {
        self.throttled.load(Relaxed)
    }

    /// Every active ban, in subject order.
    pub fn bans(&self) -> Vec<BanInfo> {
        let now = Instant::now();
        let mut out: Vec<BanInfo> = {
            let mut st = self.state.lock();
            self.purge_bans(&mut st, now);
            st.bans
                .iter()
                .map(|(k, (until, label))| BanInfo {
                    subject: label.subject(*k),
                    truncated: label.truncated,
                    remaining: until.saturating_duration_since(now),
                })
                .collect()
        };
        out.sort_by_key(|b| b.subject.to_string());
        out
    }

    /// Bans `subject` for `duration` (default: the configured `ban`),
    /// replacing a ban it may have. Takes effect only while the guard is
    /// enabled and for addresses outside `exempt`.
    pub fn ban(&self, subject: &Subject, duration: Option<Duration>) {
        let key = self.key_of(subject);
        let name = match subject {
            Subject::User { username: name, .. } | Subject::ClientId(name) => Some(name.as_str()),
            Subject::Ip(_) => None,
        };
        let label = Label::of(key, name);
        let shown = label.subject(key);
        let ban = duration.unwrap_or(self.cfg.ban);
        let row = stored_key(key, &label);
        {
            let mut st = self.state.lock();
            st.failures.remove(&key);
            self.insert_ban(&mut st, key, label, Instant::now() + ban);
        }
        self.persist(row, ban);
        self.bans_started.fetch_add(1, Relaxed);
        tracing::warn!(subject = %shown, ban = ?ban, "brute-force guard: ban added");
    }

    /// Lifts the ban on `subject` and forgets its failures; false when it
    /// was not banned.
    pub fn unban(&self, subject: &Subject) -> bool {
        let key = self.key_of(subject);
        let now = Instant::now();
        let lifted = {
            let mut st = self.state.lock();
            self.purge_bans(&mut st, now);
            st.failures.remove(&key);
            st.bans.remove(&key)
        };
        let Some(label) = lifted else { return false };
        if let (Some(store), Some(row)) = (self.store.get(), stored_key(key, &label)) {
            drop(store.commit(vec![Change::BanDelete { key: row }]));
        }
        true
    }

    /// Writes bans to `store` from now on, and takes back the bans it held
    /// at start (`bans`, from the store's recovery); returns how many.
    /// Once: a second call changes nothing.
    pub fn attach_store(&self, store: Arc<dyn SessionStore>, bans: Vec<RecoveredBan>) -> usize {
        if self.store.set(store).is_err() {
            return 0;
        }
        let (now, now_ms) = (Instant::now(), unix_now_ms());
        let mut st = self.state.lock();
        let mut n = 0;
        for b in bans {
            let Some(subject) = parse_stored_key(&b.key) else { continue };
            let key = self.key_of(&subject);
            let name = match &subject {
                Subject::User { username: name, .. } | Subject::ClientId(name) => Some(name.as_str()),
                Subject::Ip(_) => None,
            };
            let until = now + Duration::from_millis(b.until_ms.saturating_sub(now_ms));
            self.insert_ban(&mut st, key, Label::of(key, name), until);
            n += 1;
        }
        n
    }

    /// Drops the bans that ended by `now` and deletes their rows from the
    /// store, in one batch with the next group commit (not awaited: a
    /// crash before it leaves rows that the next start deletes, as ended).
    /// Every look at the bans purges first, so rows go as the bans are
    /// found ended — at the next CONNECT, scrape or [`BruteForceGuard::sweep`].
    fn purge_bans(&self, st: &mut State, now: Instant) {
        let store = self.store.get();
        let mut rows = Vec::new();
        st.bans.purge_with(now, |k, label| {
            if let (Some(_), Some(key)) = (store, stored_key(k, &label)) {
                rows.push(Change::BanDelete { key });
            }
        });
        if let (Some(store), false) = (store, rows.is_empty()) {
            drop(store.commit(rows));
        }
    }

    /// Starts (or replaces) a ban; one evicted to make room (the map is
    /// full: the one closest to its end) loses its row too.
    fn insert_ban(&self, st: &mut State, k: Key, label: Label, until: Instant) {
        let store = self.store.get();
        let mut rows = Vec::new();
        st.bans.insert_with(k, label, until, |k, label| {
            if let (Some(_), Some(key)) = (store, stored_key(k, &label)) {
                rows.push(Change::BanDelete { key });
            }
        });
        if let (Some(store), false) = (store, rows.is_empty()) {
            drop(store.commit(rows));
        }
    }

    /// Drops ended bans and failure counts now (their rows too): the
    /// server calls it periodically, so that rows of bans that ended go
    /// even while nobody connects.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut st = self.state.lock();
        st.failures.purge(now);
        self.purge_bans(&mut st, now);
    }

    /// Writes a ban that runs `ban` from now (not awaited).
    fn persist(&self, row: Option<Arc<[u8]>>, ban: Duration) {
        let (Some(store), Some(key)) = (self.store.get(), row) else { return };
        let until_ms = unix_now_ms().saturating_add(u64::try_from(ban.as_millis()).unwrap_or(u64::MAX));
        drop(store.commit(vec![Change::BanPut { key, until_ms }]));
    }

    /// Reads the guard's counters into `out` (`portcullis_guard_*`,
    /// `$SYS/brokers/<node>/auth/guard/…`): refused (banned), throttled
    /// (no free slot), bans_started, active_bans, tracked (subjects with
    /// failures), in_flight (subjects with an attempt running).
    pub fn collect(&self, out: &mut Scrape) {
        let (active, tracked, in_flight) = {
            let now = Instant::now();
            let mut st = self.state.lock();
            st.failures.purge(now);
            self.purge_bans(&mut st, now);
            (st.bans.len() as u64, st.failures.len() as u64, st.in_flight.len() as u64)
        };
        out.add(&REFUSED, &[], self.banned_count());
        out.add(&THROTTLED, &[], self.throttled_count());
        out.add(&BANS_STARTED, &[], self.bans_started.load(Relaxed));
        out.add(&ACTIVE_BANS, &[], active);
        out.add(&TRACKED, &[], tracked);
        out.add(&IN_FLIGHT, &[], in_flight);
    }
}

const fn family(name: &'static str, help: &'static str, kind: Kind, sys: &'static str) -> Family {
    Family { name, help, kind, labels: &[], sys: Some(sys), sys_total: None }
}

static REFUSED: Family =
    family("guard_refused", "CONNECTs refused because their subject is banned.", Kind::Counter, "auth/guard/refused");
static THROTTLED: Family = family(
    "guard_throttled",
    "CONNECTs refused because their subject had no free attempt slot.",
    Kind::Counter,
    "auth/guard/throttled",
);
static BANS_STARTED: Family = family(
    "guard_bans_started",
    "Bans started (by failures or by an operator).",
    Kind::Counter,
    "auth/guard/bans_started",
);
static ACTIVE_BANS: Family = family("guard_active_bans", "Bans in force now.", Kind::Gauge, "auth/guard/active_bans");
static TRACKED: Family =
    family("guard_tracked", "Subjects with failures counted now.", Kind::Gauge, "auth/guard/tracked");
static IN_FLIGHT: Family = family(
    "guard_in_flight",
    "Subjects with an authentication attempt running now.",
    Kind::Gauge,
    "auth/guard/in_flight",
);

/// One admitted attempt: holds a slot on each of its subjects until it is
/// finished or dropped.
pub struct Attempt<'a> {
    guard: &'a BruteForceGuard,
    info: &'a ConnectInfo,
    keys: [Option<Key>; 2],
    /// Slots still held.
    open: bool,
}

impl fmt::Debug for Attempt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attempt").field("open", &self.open).finish_non_exhaustive()
    }
}

impl Attempt<'_> {
    /// Gives the slots back and records the chain's result (see
    /// [`BruteForceGuard::record_result`] for what counts).
    pub fn finish(mut self, result: &AuthResult) {
        let release = std::mem::replace(&mut self.open, false);
        self.guard.settle(self.info, self.keys, failed(result), release);
    }
}

impl Drop for Attempt<'_> {
    /// An attempt abandoned before its result (the client went away, the
    /// future was dropped) gives its slots back and counts nothing.
    fn drop(&mut self) {
        if self.open {
            self.guard.settle(self.info, self.keys, None, true);
        }
    }
}
