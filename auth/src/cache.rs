//! The auth cache: chain verdicts keyed by a keyed hash of the credentials,
//! so a reconnect storm does not become a query storm.
//!
//! * **Key** — `blake3::keyed_hash` (a random 32-byte key per process) over
//!   the chain name and the CONNECT fields the chain's providers say they
//!   depend on ([`Inputs`]: client id, username, password, peer IP,
//!   listener, client certificate, protocol), each length-prefixed so no two
//!   field splits collide. A chain that looks only at username and password
//!   shares one entry among every client of a user. The password is never
//!   stored, and a key is useless outside this process.
//! * **What is cached** — Allow for `ttl_allow` (capped at the decision's
//!   `expires_at`), Deny for `ttl_deny`, each shortened by up to `jitter` of
//!   itself so a burst of entries does not expire in one burst. `Unavailable`
//!   is never cached: an outage is never remembered as a deny.
//! * **Single flight** — identical concurrent misses share one chain call
//!   (moka's `try_get_with`); callers that joined get the leader's verdict.
//! * **Stale on error** — with `stale_on_error = Some(grace)`, every cached
//!   Allow is also kept in a second cache until `grace` after it expires; when
//!   the chain answers `Unavailable`, such an allow is served (and logged)
//!   unless its own `expires_at` has passed. A later Deny for the same
//!   credentials drops it.
//! * **Clocks** — moka expires entries on its own clock (`std::time::Instant`,
//!   per-entry through [`Expiry`]), which bounds memory. Each entry also
//!   carries its deadline on tokio's clock, checked on every read; in
//!   production the two agree, and under tokio's paused test clock the
//!   deadline makes TTL behaviour testable without real sleeps.
//! * **Reload** — [`AuthCache::invalidate_all`] bumps a generation; entries of
//!   an older generation (including those a chain call in flight during the
//!   reload inserts afterwards) are never served.
//!
//! Served-from-cache verdicts carry `DecidedBy::Cache(original)` and no
//! steps (no provider was asked this time).

use std::fmt;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use moka::future::Cache;
use moka::Expiry;
use portcullis_core::gate::{ConnectInfo, Password};
use portcullis_core::metrics::{Family, Kind, Scrape};
use rand::{Rng, RngCore};
use tokio::time::Instant;

use crate::chain::{AuthChain, AuthResult, AuthVerdict, DecidedBy};
use crate::provider::Inputs;

/// Auth cache settings.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthCacheConfig {
    /// Cached verdicts at most; 0 disables the cache (every CONNECT asks the
    /// chain, without single flight).
    pub max_entries: u64,
    /// How long an Allow is reused (capped at the decision's `expires_at`).
    pub ttl_allow: Duration,
    /// How long a Deny is reused; shorter, so a fixed password works soon.
    pub ttl_deny: Duration,
    /// Fraction (0.0 to 0.5, clamped) of each TTL randomly taken off.
    pub jitter: f64,
    /// Serve an expired Allow up to this long after its expiry when the
    /// chain answers `Unavailable`; `None` (the default) never does.
    pub stale_on_error: Option<Duration>,
}

impl Default for AuthCacheConfig {
    fn default() -> Self {
        AuthCacheConfig {
            max_entries: 100_000,
            ttl_allow: Duration::from_secs(300),
            ttl_deny: Duration::from_secs(30),
            jitter: 0.1,
            stale_on_error: None,
        }
    }
}

/// A keyed hash of the credentials; see the module docs.
type Key = [u8; 32];

/// A remembered verdict.
#[derive(Debug)]
struct Cached {
    result: AuthResult,
    decided_by: DecidedBy,
    /// Lifetime given to moka (from insertion).
    ttl: Duration,
    /// Served only before this instant (tokio clock).
    until: Instant,
    /// [`AuthCache::invalidate_all`] generation it was computed in.
    generation: u64,
}

impl Cached {
    fn served(&self) -> AuthVerdict {
        AuthVerdict {
            result: self.result.clone(),
            decided_by: DecidedBy::Cache(Box::new(self.decided_by.clone())),
            steps: Vec::new(),
        }
    }
}

/// Per-entry expiry: each value carries its own TTL.
struct EntryTtl;

impl Expiry<Key, Arc<Cached>> for EntryTtl {
    fn expire_after_create(&self, _: &Key, v: &Arc<Cached>, _: std::time::Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &Key,
        v: &Arc<Cached>,
        _: std::time::Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

/// Why a chain verdict was not put in the cache; shared with the callers
/// that joined the flight.
#[derive(Debug)]
struct NotCached(AuthVerdict);

/// The auth cache; see the module docs.
pub struct AuthCache {
    cfg: AuthCacheConfig,
    /// Random per process: keys are meaningless elsewhere.
    secret: [u8; 32],
    fresh: Cache<Key, Arc<Cached>>,
    /// Copies of allows, kept `stale_on_error` past their expiry.
    stale: Option<Cache<Key, Arc<Cached>>>,
    generation: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    /// Chains not worth caching, answered without a lookup.
    bypassed: AtomicU64,
    stale_served: AtomicU64,
}

impl fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCache")
            .field("cfg", &self.cfg)
            .field("entries", &self.fresh.entry_count())
            .field("hits", &self.hits.load(Relaxed))
            .field("misses", &self.misses.load(Relaxed))
            .finish_non_exhaustive()
    }
}

impl AuthCache {
    pub fn new(mut cfg: AuthCacheConfig) -> AuthCache {
        cfg.jitter = if cfg.jitter.is_finite() { cfg.jitter.clamp(0.0, 0.5) } else { 0.0 };
        let mut secret = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let build =
            |name: &str| Cache::builder().name(name).max_capacity(cfg.max_entries).expire_after(EntryTtl).build();
        let fresh = build("auth");
        let stale = cfg.stale_on_error.filter(|_| cfg.max_entries > 0).map(|_| build("auth-stale"));
        AuthCache {
            cfg,
            secret,
            fresh,
            stale,
            generation: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            bypassed: AtomicU64::new(0),
            stale_served: AtomicU64::new(0),
        }
    }

    /// The chain's verdict for `info`, from the cache when possible; see the
    /// module docs for what is cached and for how long.
    pub async fn authenticate(&self, chain: &AuthChain, info: &ConnectInfo) -> AuthVerdict {
        self.authenticate_admitted(chain, info, || Ok(())).await.0
    }

    /// [`AuthCache::authenticate`], asking `admit` right before the chain
    /// is called — only then: a cache hit, or a caller that joins another's
    /// call in flight, asks no provider and is not asked about. `admit`
    /// returns a ticket (the brute-force guard's slot), handed back with
    /// the verdict for the caller to settle, or the verdict to answer
    /// instead (never cached; callers that joined this flight get it too).
    pub async fn authenticate_admitted<T>(
        &self,
        chain: &AuthChain,
        info: &ConnectInfo,
        admit: impl FnOnce() -> Result<T, AuthVerdict>,
    ) -> (AuthVerdict, Option<T>) {
        if self.cfg.max_entries == 0 || !chain.worth_caching() {
            if self.cfg.max_entries == 0 {
                self.misses.fetch_add(1, Relaxed);
            } else {
                // Answered from memory faster than a lookup; no entry per client.
                self.bypassed.fetch_add(1, Relaxed);
            }
            return match admit() {
                Ok(ticket) => (chain.authenticate(info).await, Some(ticket)),
                Err(refused) => (refused, None),
            };
        }
        let key = self.key(chain, info);
        if let Some(hit) = self.fresh.get(&key).await {
            if self.usable(&hit) {
                self.hits.fetch_add(1, Relaxed);
                return (hit.served(), None);
            }
            // Past its deadline on tokio's clock (or from before a reload)
            // but not yet gone from moka: make room for a fresh call.
            self.fresh.invalidate(&key).await;
        }

        // Set only in the caller whose call ran (the flight's leader).
        let mut led: Option<(AuthVerdict, Option<Duration>, u64)> = None;
        let mut ticket: Option<T> = None;
        let (led_slot, ticket_slot) = (&mut led, &mut ticket);
        let looked_up = self
            .fresh
            .try_get_with(key, async move {
                let t = admit().map_err(NotCached)?;
                *ticket_slot = Some(t);
                self.misses.fetch_add(1, Relaxed);
                let generation = self.generation.load(Relaxed);
                let verdict = chain.authenticate(info).await;
                let entry = self.entry_for(&verdict, generation);
                let ttl = entry.as_ref().map(|e| e.ttl);
                let shared = match entry {
                    Some(entry) => Ok(Arc::new(entry)),
                    None => Err(NotCached(verdict.clone())),
                };
                *led_slot = Some((verdict, ttl, generation));
                shared
            })
            .await;

        let verdict = match (led, looked_up) {
            (Some((verdict, ttl, generation)), _) => {
                self.remember_stale(key, &verdict, ttl.unwrap_or(Duration::ZERO), generation).await;
                verdict
            }
            (None, Ok(entry)) => {
                self.hits.fetch_add(1, Relaxed);
                entry.served()
            }
            (None, Err(not_cached)) => not_cached.0.clone(),
        };
        if verdict.result == AuthResult::Unavailable {
            if let Some(stale) = self.stale_allow(&key).await {
                self.stale_served.fetch_add(1, Relaxed);
                tracing::warn!(
                    chain = %chain.name,
                    client_id = %portcullis_core::logsafe::Peer(&info.client_id),
                    decided_by = ?stale.decided_by,
                    "auth chain unavailable; serving a stale cached allow"
                );
                return (stale.served(), ticket);
            }
        }
        (verdict, ticket)
    }

    /// Forgets every cached verdict (after a provider reload).
    pub fn invalidate_all(&self) {
        self.generation.fetch_add(1, Relaxed);
        self.fresh.invalidate_all();
        if let Some(stale) = &self.stale {
            stale.invalidate_all();
        }
    }

    /// `(hits, misses)`: verdicts served without / with a chain call (a
    /// caller that joined another's call in flight counts as a hit).
    pub fn stats(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }

    /// Reads the cache's counters into `out` (`portcullis_auth_cache_*`,
    /// `$SYS/brokers/<node>/auth/cache/…`): hits, misses, entries
    /// (approximate), bypassed, stale_served.
    pub fn collect(&self, out: &mut Scrape) {
        let (hits, misses) = self.stats();
        out.add(&HITS, &[], hits);
        out.add(&MISSES, &[], misses);
        out.add(&ENTRIES, &[], self.fresh.entry_count());
        out.add(&BYPASSED, &[], self.bypassed.load(Relaxed));
        out.add(&STALE_SERVED, &[], self.stale_served.load(Relaxed));
    }

    fn key(&self, chain: &AuthChain, info: &ConnectInfo) -> Key {
        let inputs = chain.inputs();
        let mut h = blake3::Hasher::new_keyed(&self.secret);
        field(&mut h, chain.name.as_bytes());
        let has = |i: Inputs| inputs.contains(i);
        optional(&mut h, has(Inputs::CLIENT_ID).then(|| info.client_id.as_bytes()));
        optional(&mut h, if has(Inputs::USERNAME) { info.username.as_deref().map(str::as_bytes) } else { None });
        // Whether a username/password was sent at all matters even when
        // their values do not (anonymous decides on their absence).
        field(&mut h, &[u8::from(info.username.is_some()), u8::from(info.password.is_some())]);
        optional(&mut h, if has(Inputs::PASSWORD) { info.password.as_ref().map(Password::expose) } else { None });
        if has(Inputs::PEER) {
            match info.peer.ip() {
                IpAddr::V4(ip) => field(&mut h, &ip.octets()),
                IpAddr::V6(ip) => field(&mut h, &ip.octets()),
            }
        }
        optional(&mut h, has(Inputs::LISTENER).then(|| info.listener.as_bytes()));
        if has(Inputs::CERT) {
            match &info.cert {
                Some(c) => {
                    field(&mut h, b"cert");
                    field(&mut h, c.subject.as_bytes());
                    optional(&mut h, c.common_name.as_deref().map(str::as_bytes));
                    for san in c.san_dns.iter().chain(&c.san_uri) {
                        field(&mut h, san.as_bytes());
                    }
                }
                None => field(&mut h, b"no cert"),
            }
        }
        if has(Inputs::PROTOCOL) {
            field(&mut h, &[info.protocol.code()]);
        }
        *h.finalize().as_bytes()
    }

    fn usable(&self, c: &Cached) -> bool {
        c.generation == self.generation.load(Relaxed) && Instant::now() < c.until
    }

    /// The cache entry for a fresh verdict, or `None` when it must not be
    /// cached (unavailable, or an allow already past its `expires_at`).
    fn entry_for(&self, v: &AuthVerdict, generation: u64) -> Option<Cached> {
        let ttl = match &v.result {
            AuthResult::Allow { expires_at, .. } => {
                let ttl = self.jittered(self.cfg.ttl_allow);
                match expires_at {
                    Some(e) => ttl.min(e.at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO)),
                    None => ttl,
                }
            }
            AuthResult::Deny(_) => self.jittered(self.cfg.ttl_deny),
            AuthResult::Unavailable => return None,
        };
        if ttl.is_zero() {
            return None;
        }
        Some(Cached {
            result: v.result.clone(),
            decided_by: v.decided_by.clone(),
            ttl,
            until: Instant::now() + ttl,
            generation,
        })
    }

    fn jittered(&self, ttl: Duration) -> Duration {
        if self.cfg.jitter <= 0.0 {
            return ttl;
        }
        let cut = rand::thread_rng().gen_range(0.0..=self.cfg.jitter);
        ttl.mul_f64(1.0 - cut)
    }

    /// Keeps (or drops) the stale-on-error copy after a chain call; `fresh`
    /// is the TTL the fresh entry got.
    async fn remember_stale(&self, key: Key, v: &AuthVerdict, fresh: Duration, generation: u64) {
        let (Some(stale), Some(grace)) = (&self.stale, self.cfg.stale_on_error) else {
            return;
        };
        match &v.result {
            AuthResult::Allow { expires_at, .. } => {
                if expires_at.is_some_and(|e| e.at <= SystemTime::now()) {
                    return;
                }
                let ttl = fresh + grace;
                let copy = Cached {
                    result: v.result.clone(),
                    decided_by: v.decided_by.clone(),
                    ttl,
                    until: Instant::now() + ttl,
                    generation,
                };
                stale.insert(key, Arc::new(copy)).await;
            }
            // The credentials are now refused: never resurrect them.
            AuthResult::Deny(_) => stale.invalidate(&key).await,
            AuthResult::Unavailable => {}
        }
    }

    /// A stale allow for `key` that may still be served.
    async fn stale_allow(&self, key: &Key) -> Option<Arc<Cached>> {
        let c = self.stale.as_ref()?.get(key).await?;
        let not_expired = match &c.result {
            AuthResult::Allow { expires_at, .. } => expires_at.is_none_or(|e| SystemTime::now() < e.at),
            _ => false,
        };
        (not_expired && self.usable(&c)).then_some(c)
    }

    #[cfg(test)]
    async fn settle(&self) {
        self.fresh.run_pending_tasks().await;
        if let Some(s) = &self.stale {
            s.run_pending_tasks().await;
        }
    }
}

const fn family(name: &'static str, help: &'static str, kind: Kind, sys: &'static str) -> Family {
    Family { name, help, kind, labels: &[], sys: Some(sys), sys_total: None }
}

static HITS: Family = family(
    "auth_cache_hits",
    "CONNECTs answered without a chain call (cached, or joined a call in flight).",
    Kind::Counter,
    "auth/cache/hits",
);
static MISSES: Family =
    family("auth_cache_misses", "CONNECTs that called the chain.", Kind::Counter, "auth/cache/misses");
static ENTRIES: Family =
    family("auth_cache_entries", "Verdicts cached now (approximate).", Kind::Gauge, "auth/cache/entries");
static BYPASSED: Family = family(
    "auth_cache_bypassed",
    "CONNECTs not looked up because their chain's answers are not worth caching.",
    Kind::Counter,
    "auth/cache/bypassed",
);
static STALE_SERVED: Family = family(
    "auth_cache_stale_served",
    "Expired allows served while the chain was unavailable (stale_on_error).",
    Kind::Counter,
    "auth/cache/stale_served",
);

fn field(h: &mut blake3::Hasher, bytes: &[u8]) {
    h.update(&(bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

fn optional(h: &mut blake3::Hasher, bytes: Option<&[u8]>) {
    match bytes {
        None => {
            h.update(&[0]);
        }
        Some(b) => {
            h.update(&[1]);
            field(h, b);
        }
    }
}

#[cfg(test)]
mod tests {
    //! Cache tests run on tokio's paused clock: the deadline each entry
    //! carries is on tokio's clock, so `advance` drives expiry. Moka's own
    //! clock (`std::time::Instant`) is not paused; one test checks with real
    //! time that moka reclaims expired entries.

    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use portcullis_core::gate::{ConnectInfo, DenyReason};
    use portcullis_core::provider::OnError;
    use tokio::time::advance;

    use super::{AuthCache, AuthCacheConfig};
    use crate::chain::{AuthChain, AuthResult, AuthVerdict, DecidedBy, NoMatch};

    /// The cache's `$SYS` values, through the metrics registry.
    fn sys_values(cache: &AuthCache) -> Vec<(String, String)> {
        let mut s = portcullis_core::metrics::Scrape::new();
        cache.collect(&mut s);
        s.sys_values()
    }
    use crate::chain_tests::{chain_of, connect, named_chain, Act, Scripted};

    fn cfg() -> AuthCacheConfig {
        AuthCacheConfig {
            max_entries: 1000,
            ttl_allow: Duration::from_secs(300),
            ttl_deny: Duration::from_secs(30),
            jitter: 0.0,
            stale_on_error: None,
        }
    }

    fn one(p: &Arc<Scripted>) -> AuthChain {
        chain_of(&[(Arc::clone(p), OnError::Deny)], NoMatch::Deny)
    }

    fn scripted(act: Act) -> Arc<Scripted> {
        Arc::new(Scripted::new("p", act))
    }

    fn alice() -> ConnectInfo {
        connect("c1", Some("alice"), Some(b"secret"))
    }

    fn from_cache(d: &DecidedBy) -> bool {
        matches!(d, DecidedBy::Cache(_))
    }

    #[tokio::test(start_paused = true)]
    async fn chains_answered_from_memory_bypass_the_cache() {
        use crate::provider::DynAuthProvider;
        use crate::providers::anonymous::Anonymous;
        let p: DynAuthProvider = Arc::new(Anonymous::new("anon".into(), Vec::new()));
        let chain = AuthChain::new(
            "c",
            vec![crate::chain::AuthEntry::new(p, Duration::from_secs(1), OnError::Deny)],
            NoMatch::Deny,
        );
        let cache = AuthCache::new(cfg());
        for i in 0..10 {
            let v = cache.authenticate(&chain, &connect(&format!("c{i}"), None, None)).await;
            assert!(matches!(v.result, AuthResult::Allow { .. }));
            assert!(!from_cache(&v.decided_by));
        }
        cache.settle().await;
        let sys = sys_values(&cache);
        let get = |k: &str| sys.iter().find(|(n, _)| *n == format!("auth/cache/{k}")).map(|(_, v)| v.clone());
        assert_eq!(get("entries").as_deref(), Some("0"), "no entry per client");
        assert_eq!(get("bypassed").as_deref(), Some("10"));
    }

    #[tokio::test(start_paused = true)]
    async fn clients_of_one_user_share_an_entry_when_the_chain_reads_only_credentials() {
        use crate::provider::Inputs;
        let p = Arc::new(Scripted::new("p", Act::Allow).with_inputs(Inputs::USERNAME | Inputs::PASSWORD));
        let chain = one(&p);
        let cache = AuthCache::new(cfg());
        for i in 0..50 {
            let mut info = connect(&format!("client-{i}"), Some("alice"), Some(b"secret"));
            info.peer = format!("10.0.0.{i}:1000").parse().unwrap();
            assert!(matches!(cache.authenticate(&chain, &info).await.result, AuthResult::Allow { .. }));
        }
        assert_eq!(p.calls(), 1, "one backend call for one user");
        // Another password is another entry.
        let other = connect("client-1", Some("alice"), Some(b"guess"));
        cache.authenticate(&chain, &other).await;
        assert_eq!(p.calls(), 2);
        // Missing credentials are never served a credentialed verdict.
        let anon = connect("client-1", None, None);
        cache.authenticate(&chain, &anon).await;
        assert_eq!(p.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn every_declared_input_separates_entries() {
        use portcullis_core::gate::CertIdentity;
        let p = Arc::new(Scripted::new("p", Act::Allow)); // Inputs::ALL
        let chain = one(&p);
        let cache = AuthCache::new(cfg());
        cache.authenticate(&chain, &connect("a", Some("alice"), Some(b"secret"))).await;
        cache.authenticate(&chain, &connect("b", Some("alice"), Some(b"secret"))).await;
        assert_eq!(p.calls(), 2, "client id is an input");
        let mut with_cert = connect("a", Some("alice"), Some(b"secret"));
        with_cert.cert = Some(Arc::new(CertIdentity { subject: "CN=alice".into(), ..Default::default() }));
        cache.authenticate(&chain, &with_cert).await;
        assert_eq!(p.calls(), 3, "a certificate is an input");
        cache.authenticate(&chain, &with_cert).await;
        assert_eq!(p.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn second_call_is_a_hit() {
        let p = scripted(Act::Allow);
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        let first = cache.authenticate(&chain, &alice()).await;
        assert_eq!(first.decided_by, DecidedBy::Provider { name: "p".into(), rule: Some("p:allow".into()) });
        assert_eq!(first.steps.len(), 1);
        let second = cache.authenticate(&chain, &alice()).await;
        assert_eq!(second.result, first.result);
        assert_eq!(second.decided_by, DecidedBy::Cache(Box::new(first.decided_by.clone())));
        assert!(second.steps.is_empty(), "no provider was asked");
        assert_eq!(p.calls(), 1);
        assert_eq!(cache.stats(), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn admit_is_asked_only_before_a_chain_call() {
        use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
        let p = Arc::new(Scripted::new("p", Act::Allow).delayed(Duration::from_millis(100)));
        let (cache, chain) = (Arc::new(AuthCache::new(cfg())), Arc::new(one(&p)));
        let asked = Arc::new(AtomicUsize::new(0));
        let calls: Vec<_> = (0..20)
            .map(|_| {
                let (cache, chain, asked) = (Arc::clone(&cache), Arc::clone(&chain), Arc::clone(&asked));
                tokio::spawn(async move {
                    let (v, t) = cache
                        .authenticate_admitted(&chain, &alice(), || {
                            asked.fetch_add(1, SeqCst);
                            Ok("ticket")
                        })
                        .await;
                    (matches!(v.result, AuthResult::Allow { .. }), t)
                })
            })
            .collect();
        let mut tickets = 0;
        for c in calls {
            let (allowed, t) = c.await.unwrap();
            assert!(allowed);
            tickets += usize::from(t.is_some());
        }
        assert_eq!((asked.load(SeqCst), tickets, p.calls()), (1, 1, 1), "the flight's leader only");
        let (_, t) = cache.authenticate_admitted(&chain, &alice(), || -> Result<(), _> { panic!("a hit") }).await;
        assert!(t.is_none());
        // A refusal is answered, never cached, and asks no provider.
        let bob = connect("c2", Some("bob"), Some(b"pw"));
        let refusal =
            AuthVerdict { result: AuthResult::Deny(DenyReason::Banned), decided_by: DecidedBy::Guard, steps: vec![] };
        let (v, t) = cache.authenticate_admitted(&chain, &bob, || Err::<(), _>(refusal.clone())).await;
        assert_eq!((v, t), (refusal, None));
        assert_eq!(p.calls(), 1);
        let (v, t) = cache.authenticate_admitted(&chain, &bob, || Ok(())).await;
        assert!(matches!(v.result, AuthResult::Allow { .. }) && t.is_some(), "the refusal was not cached");
        // Cache off: asked for every call.
        let off = AuthCache::new(AuthCacheConfig { max_entries: 0, ..cfg() });
        let (_, t) = off.authenticate_admitted(&chain, &alice(), || Ok(1)).await;
        assert_eq!(t, Some(1));
    }

    #[tokio::test(start_paused = true)]
    async fn no_match_verdicts_are_cached_too() {
        let p = scripted(Act::Ignore);
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        cache.authenticate(&chain, &alice()).await;
        let v = cache.authenticate(&chain, &alice()).await;
        assert_eq!(v.decided_by, DecidedBy::Cache(Box::new(DecidedBy::NoMatch)));
        assert_eq!(v.result, AuthResult::Deny(DenyReason::BadCredentials));
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn unavailable_is_never_cached() {
        for outage in [Act::Fail, Act::Hang] {
            let p = Arc::new(Scripted::script("p", vec![outage.clone(), outage], Act::Allow));
            let (cache, chain) = (AuthCache::new(cfg()), one(&p));
            for _ in 0..2 {
                let v = cache.authenticate(&chain, &alice()).await;
                assert_eq!(v.result, AuthResult::Unavailable);
                assert_eq!(v.decided_by, DecidedBy::Failure { name: "p".into() });
            }
            let v = cache.authenticate(&chain, &alice()).await;
            assert!(matches!(v.result, AuthResult::Allow { .. }), "the backend is back: {v:?}");
            assert!(!from_cache(&v.decided_by));
            assert_eq!(p.calls(), 3);
            assert_eq!(cache.stats(), (0, 3));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deny_expires_before_allow() {
        let (good, bad) = (scripted(Act::Allow), scripted(Act::Deny(DenyReason::BadCredentials)));
        let allow_chain = named_chain("allowing", &[(Arc::clone(&good), OnError::Deny)], NoMatch::Deny);
        let deny_chain = named_chain("denying", &[(Arc::clone(&bad), OnError::Deny)], NoMatch::Deny);
        let cache = AuthCache::new(cfg());
        let both = |expect_hits: [bool; 2]| {
            let (cache, allow_chain, deny_chain) = (&cache, &allow_chain, &deny_chain);
            async move {
                let a = cache.authenticate(allow_chain, &alice()).await;
                let d = cache.authenticate(deny_chain, &alice()).await;
                assert!(matches!(a.result, AuthResult::Allow { .. }));
                assert_eq!(d.result, AuthResult::Deny(DenyReason::BadCredentials));
                assert_eq!([from_cache(&a.decided_by), from_cache(&d.decided_by)], expect_hits);
            }
        };
        both([false, false]).await;
        advance(Duration::from_secs(29)).await;
        both([true, true]).await;
        advance(Duration::from_secs(2)).await; // 31 s: the deny is gone
        both([true, false]).await;
        advance(Duration::from_secs(268)).await; // 299 s: the deny of 31 s is gone too
        both([true, false]).await;
        advance(Duration::from_secs(2)).await; // 301 s: the allow is gone
        both([false, true]).await;
        assert_eq!((good.calls(), bad.calls()), (2, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn expires_at_caps_the_allow_ttl() {
        let at = SystemTime::now() + Duration::from_secs(20);
        let p = scripted(Act::AllowUntil(at));
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        cache.authenticate(&chain, &alice()).await;
        advance(Duration::from_secs(19)).await;
        assert!(from_cache(&cache.authenticate(&chain, &alice()).await.decided_by));
        advance(Duration::from_secs(2)).await;
        assert!(!from_cache(&cache.authenticate(&chain, &alice()).await.decided_by));
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_allow_already_expired_is_not_cached() {
        let p = scripted(Act::AllowUntil(SystemTime::now() - Duration::from_secs(1)));
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        for _ in 0..3 {
            let v = cache.authenticate(&chain, &alice()).await;
            assert!(matches!(v.result, AuthResult::Allow { .. }), "the chain's verdict is passed on");
        }
        assert_eq!(p.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_shortens_ttls_within_bounds() {
        let cache = AuthCache::new(AuthCacheConfig { ttl_allow: Duration::from_secs(100), jitter: 0.5, ..cfg() });
        let p = scripted(Act::Allow);
        let v = one(&p).authenticate(&alice()).await;
        let ttls: Vec<Duration> = (0..200).filter_map(|_| cache.entry_for(&v, 0)).map(|e| e.ttl).collect();
        assert_eq!(ttls.len(), 200);
        assert!(ttls.iter().all(|t| (Duration::from_secs(50)..=Duration::from_secs(100)).contains(t)), "{ttls:?}");
        assert!(ttls.iter().any(|t| *t != ttls[0]), "jitter varies");
        let wild = AuthCache::new(AuthCacheConfig { jitter: 7.0, ..cfg() });
        assert_eq!(wild.cfg.jitter, 0.5, "clamped");
        let nan = AuthCache::new(AuthCacheConfig { jitter: f64::NAN, ..cfg() });
        assert_eq!(nan.cfg.jitter, 0.0);
    }

    #[tokio::test(start_paused = true)]
    async fn single_flight_then_hits() {
        let p = Arc::new(Scripted::new("p", Act::Allow).delayed(Duration::from_millis(100)));
        let cache = Arc::new(AuthCache::new(cfg()));
        let chain = Arc::new(one(&p));
        for wave in 0..2 {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..200 {
                let (cache, chain) = (Arc::clone(&cache), Arc::clone(&chain));
                tasks.spawn(async move { cache.authenticate(&chain, &alice()).await });
            }
            let mut from_chain = 0;
            while let Some(v) = tasks.join_next().await {
                let v = v.expect("task");
                assert!(matches!(v.result, AuthResult::Allow { .. }));
                from_chain += usize::from(!from_cache(&v.decided_by));
            }
            assert_eq!(p.calls(), 1, "wave {wave}: one provider call in all");
            assert_eq!(from_chain, if wave == 0 { 1 } else { 0 });
        }
        assert_eq!(cache.stats(), (399, 1));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn single_flight_across_threads() {
        let p = Arc::new(Scripted::new("p", Act::Allow).delayed(Duration::from_millis(50)));
        let cache = Arc::new(AuthCache::new(cfg()));
        let chain = Arc::new(one(&p));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (cache, chain) = (Arc::clone(&cache), Arc::clone(&chain));
            tasks.spawn(async move { cache.authenticate(&chain, &alice()).await });
        }
        while let Some(v) = tasks.join_next().await {
            assert!(matches!(v.expect("task").result, AuthResult::Allow { .. }));
        }
        assert_eq!(p.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_flight_is_shared_but_not_cached() {
        let p = Arc::new(Scripted::script("p", vec![Act::Fail], Act::Allow).delayed(Duration::from_millis(100)));
        let cache = Arc::new(AuthCache::new(cfg()));
        let chain = Arc::new(one(&p));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (cache, chain) = (Arc::clone(&cache), Arc::clone(&chain));
            tasks.spawn(async move { cache.authenticate(&chain, &alice()).await });
        }
        while let Some(v) = tasks.join_next().await {
            assert_eq!(v.expect("task").result, AuthResult::Unavailable);
        }
        assert_eq!(p.calls(), 1);
        let v = cache.authenticate(&chain, &alice()).await;
        assert!(matches!(v.result, AuthResult::Allow { .. }));
        assert_eq!(p.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn every_credential_field_is_part_of_the_key() {
        let p = scripted(Act::Allow);
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        let base = alice();
        let mut other_ip = alice();
        other_ip.peer = "192.0.2.2:50000".parse().expect("address");
        let mut other_port = alice();
        other_port.peer = "192.0.2.1:50001".parse().expect("address");
        let mut other_listener = alice();
        other_listener.listener = Arc::from("ws");
        let variants = [
            base.clone(),
            connect("c1", Some("alice"), Some(b"secret2")),
            connect("c1", Some("alice"), Some(b"")),
            connect("c1", Some("alice"), None),
            connect("c1", None, Some(b"secret")),
            connect("c1", Some(""), Some(b"secret")),
            connect("c2", Some("alice"), Some(b"secret")),
            // Field boundaries cannot shift: "c1a" + "lice" is not "c1" + "alice".
            connect("c1a", Some("lice"), Some(b"secret")),
            connect("c1", Some("alicesecret"), Some(b"")),
            other_ip,
            other_listener,
        ];
        for v in &variants {
            cache.authenticate(&chain, v).await;
        }
        assert_eq!(p.calls(), variants.len(), "each variant is its own entry");
        for v in &variants {
            assert!(from_cache(&cache.authenticate(&chain, v).await.decided_by));
        }
        assert!(from_cache(&cache.authenticate(&chain, &other_port).await.decided_by), "the port is not part of it");
        let other_chain = named_chain("other", &[(Arc::clone(&p), OnError::Deny)], NoMatch::Deny);
        assert!(!from_cache(&cache.authenticate(&other_chain, &base).await.decided_by), "nor is one chain another");
        let again = AuthCache::new(cfg());
        assert_ne!(cache.key(&chain, &base), again.key(&chain, &base), "keys differ per process");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_allow_is_served_during_an_outage() {
        let p = Arc::new(Scripted::script("p", vec![Act::Allow], Act::Fail));
        let cache = AuthCache::new(AuthCacheConfig {
            ttl_allow: Duration::from_secs(10),
            stale_on_error: Some(Duration::from_secs(60)),
            ..cfg()
        });
        let chain = one(&p);
        let first = cache.authenticate(&chain, &alice()).await;
        advance(Duration::from_secs(11)).await;
        let v = cache.authenticate(&chain, &alice()).await;
        assert_eq!(v.result, first.result, "stale allow served");
        assert_eq!(v.decided_by, DecidedBy::Cache(Box::new(first.decided_by.clone())));
        assert_eq!(p.calls(), 2, "the chain was asked first");
        advance(Duration::from_secs(58)).await; // 69 s: within 10 + 60
        assert!(matches!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Allow { .. }));
        advance(Duration::from_secs(2)).await; // 71 s
        assert_eq!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Unavailable);
        let sys = sys_values(&cache);
        assert!(sys.contains(&("auth/cache/stale_served".to_string(), "2".to_string())), "{sys:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stale_is_off_by_default_and_never_for_other_credentials() {
        let p = Arc::new(Scripted::script("p", vec![Act::Allow], Act::Fail));
        let chain = one(&p);
        let cache = AuthCache::new(AuthCacheConfig { ttl_allow: Duration::from_secs(10), ..cfg() });
        cache.authenticate(&chain, &alice()).await;
        advance(Duration::from_secs(11)).await;
        assert_eq!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Unavailable);

        let p = Arc::new(Scripted::script("p", vec![Act::Allow], Act::Fail));
        let chain = one(&p);
        let cache = AuthCache::new(AuthCacheConfig { stale_on_error: Some(Duration::from_secs(60)), ..cfg() });
        cache.authenticate(&chain, &alice()).await;
        let wrong = connect("c1", Some("alice"), Some(b"guess"));
        assert_eq!(cache.authenticate(&chain, &wrong).await.result, AuthResult::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn a_deny_drops_the_stale_allow() {
        let bad = Act::Deny(DenyReason::BadCredentials);
        let p = Arc::new(Scripted::script("p", vec![Act::Allow, bad], Act::Fail));
        let cache = AuthCache::new(AuthCacheConfig {
            ttl_allow: Duration::from_secs(10),
            ttl_deny: Duration::from_secs(5),
            stale_on_error: Some(Duration::from_secs(60)),
            ..cfg()
        });
        let chain = one(&p);
        cache.authenticate(&chain, &alice()).await;
        advance(Duration::from_secs(11)).await;
        assert_eq!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Deny(DenyReason::BadCredentials));
        advance(Duration::from_secs(6)).await;
        assert_eq!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Unavailable);
        assert_eq!(p.calls(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn stale_never_outlives_expires_at() {
        // `expires_at` is wall-clock time, which the paused clock does not
        // stop: a short real sleep makes it pass.
        let at = SystemTime::now() + Duration::from_millis(200);
        let p = Arc::new(Scripted::script("p", vec![Act::AllowUntil(at)], Act::Fail));
        let cache = AuthCache::new(AuthCacheConfig { stale_on_error: Some(Duration::from_secs(60)), ..cfg() });
        let chain = one(&p);
        cache.authenticate(&chain, &alice()).await;
        std::thread::sleep(Duration::from_millis(300));
        advance(Duration::from_secs(1)).await;
        assert_eq!(cache.authenticate(&chain, &alice()).await.result, AuthResult::Unavailable);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_all_forgets_even_calls_in_flight() {
        let p = Arc::new(Scripted::new("p", Act::Allow).delayed(Duration::from_secs(1)));
        let cache =
            Arc::new(AuthCache::new(AuthCacheConfig { stale_on_error: Some(Duration::from_secs(60)), ..cfg() }));
        let chain = Arc::new(one(&p));
        cache.authenticate(&chain, &alice()).await;
        cache.invalidate_all();
        assert!(!from_cache(&cache.authenticate(&chain, &alice()).await.decided_by));
        assert_eq!(p.calls(), 2);

        let flight = {
            let (cache, chain) = (Arc::clone(&cache), Arc::clone(&chain));
            cache.invalidate_all();
            tokio::spawn(async move { cache.authenticate(&chain, &alice()).await })
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        cache.invalidate_all(); // a reload while the call is in flight
        flight.await.expect("task");
        assert_eq!(p.calls(), 3);
        assert!(!from_cache(&cache.authenticate(&chain, &alice()).await.decided_by), "computed before the reload");
        assert_eq!(p.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_entries_disables_the_cache() {
        let p = scripted(Act::Allow);
        let (cache, chain) = (AuthCache::new(AuthCacheConfig { max_entries: 0, ..cfg() }), one(&p));
        for _ in 0..3 {
            assert!(!from_cache(&cache.authenticate(&chain, &alice()).await.decided_by));
        }
        assert_eq!(p.calls(), 3);
        assert_eq!(cache.stats(), (0, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn metrics_and_debug() {
        let p = scripted(Act::Allow);
        let (cache, chain) = (AuthCache::new(cfg()), one(&p));
        cache.authenticate(&chain, &alice()).await;
        cache.authenticate(&chain, &alice()).await;
        cache.settle().await;
        let sys = sys_values(&cache);
        for (k, v) in [("hits", "1"), ("misses", "1"), ("entries", "1"), ("stale_served", "0")] {
            assert!(sys.contains(&(format!("auth/cache/{k}"), v.to_string())), "{k}: {sys:?}");
        }
        let dbg = format!("{cache:?}");
        assert!(!dbg.contains("secret"), "{dbg}");
    }

    /// Real time: moka expires entries on `std::time::Instant`, per entry.
    /// Reads see the expiry at once; the memory is reclaimed by moka's timer
    /// wheel, whose finest buckets are about a second wide.
    #[tokio::test]
    async fn moka_reclaims_expired_entries() {
        let p = scripted(Act::Deny(DenyReason::BadCredentials));
        let cache = AuthCache::new(AuthCacheConfig { ttl_deny: Duration::from_millis(100), ..cfg() });
        let chain = one(&p);
        let others = connect("c2", None, None);
        cache.authenticate(&chain, &alice()).await;
        cache.authenticate(&chain, &others).await;
        cache.settle().await;
        assert_eq!(cache.fresh.entry_count(), 2);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!cache.fresh.contains_key(&cache.key(&chain, &alice())), "expired for moka");
        assert!(!cache.fresh.contains_key(&cache.key(&chain, &others)), "expired for moka");
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while cache.fresh.entry_count() > 0 && std::time::Instant::now() < give_up {
            tokio::time::sleep(Duration::from_millis(100)).await;
            cache.settle().await;
        }
        assert_eq!(cache.fresh.entry_count(), 0, "reclaimed by moka's own expiry");
        assert!(!from_cache(&cache.authenticate(&chain, &alice()).await.decided_by));
        assert_eq!(p.calls(), 3);
    }
}
