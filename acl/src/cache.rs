//! Per-client ACL decision cache, in front of the ACL chain.
//!
//! Keyed by client id, connection id (`ClientInfo::conn_id`, unique per
//! connection, so a reconnecting client never sees its previous
//! connection's decisions), and the access itself (publish topic, QoS and
//! retain flag, or subscription filter as sent and QoS). Bounded in entries
//! and in bytes ([`entry_weight`]: a client choosing long topics fills the
//! byte bound, not the memory), each entry lives at most `ttl`. Concurrent identical misses share one
//! chain evaluation (single-flight): a reconnect storm does not become a
//! query storm.
//!
//! Cached decisions are dropped:
//!
//! * for a closed connection: never read again (the key holds the
//!   connection id), evicted by `ttl` or capacity; [`AclCache::invalidate_client`]
//!   drops them at once where that is wanted;
//! * when any policy source reloads ([`AclCache::invalidate_all`]; see
//!   [`crate::policy_dir::PolicyDir::changes`]);
//! * after `ttl`, or when the cache is full (least recently used first).
//!
//! A verdict decided by a provider failure (`DecidedBy::Failure`) is
//! returned to every caller waiting on it but never stored: an outage is
//! not remembered as a deny.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use portcullis_core::codec::QoS;
use portcullis_core::gate::{Access, ClientInfo};
use portcullis_core::metrics::{Family, Kind, Scrape};
use portcullis_core::topic::{SubscriptionFilter, TopicName};

use crate::chain::{AclVerdict, DecidedBy};

/// The access part of a cache key (owned; topic types are `Arc`-backed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CachedAccess {
    Publish { topic: TopicName, qos: QoS, retain: bool },
    Subscribe { filter: SubscriptionFilter, qos: QoS },
}

impl From<&Access<'_>> for CachedAccess {
    fn from(a: &Access<'_>) -> CachedAccess {
        match a {
            Access::Publish { topic, qos, retain } => {
                CachedAccess::Publish { topic: (*topic).clone(), qos: *qos, retain: *retain }
            }
            Access::Subscribe { filter, qos } => CachedAccess::Subscribe { filter: (*filter).clone(), qos: *qos },
        }
    }
}

/// What a cached decision is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    pub client_id: Arc<str>,
    /// `ClientInfo::conn_id`.
    pub conn_id: u64,
    pub access: CachedAccess,
}

impl CacheKey {
    pub fn new(client: &ClientInfo, access: &Access<'_>) -> CacheKey {
        CacheKey { client_id: client.client_id.clone(), conn_id: client.conn_id, access: CachedAccess::from(access) }
    }
}

/// An [`AclVerdict`] without its steps: what is worth remembering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclVerdictLite {
    pub allowed: bool,
    pub decided_by: DecidedBy,
}

impl AclVerdictLite {
    /// Decisions made by a failing provider are not cached.
    pub fn cacheable(&self) -> bool {
        !matches!(self.decided_by, DecidedBy::Failure { .. })
    }
}

/// What the cache itself keeps per entry beyond the key and value structs
/// (moka's entry, its access-order and timer links, the hash table slot):
/// an estimate, so that tiny keys are not counted as nearly free.
pub const ENTRY_OVERHEAD: u64 = 160;

/// The bytes one cached decision holds, as counted against the cache's
/// byte bound: the key's strings (client id, topic or filter as sent and
/// its inner filter), the strings of the decision (provider name, rule),
/// both structs, and [`ENTRY_OVERHEAD`].
pub fn entry_weight(key: &CacheKey, value: &AclVerdictLite) -> u64 {
    let access = match &key.access {
        CachedAccess::Publish { topic, .. } => topic.as_str().len(),
        CachedAccess::Subscribe { filter, .. } => {
            filter.raw.len() + filter.filter.as_str().len() + filter.share_group.as_deref().map_or(0, str::len)
        }
    };
    let decided_by = match &value.decided_by {
        DecidedBy::Provider { name, rule } => name.len() + rule.as_deref().map_or(0, str::len),
        DecidedBy::Failure { name } => name.len(),
        DecidedBy::Superuser | DecidedBy::NoMatch => 0,
    };
    let structs = std::mem::size_of::<CacheKey>() + std::mem::size_of::<AclVerdictLite>();
    (key.client_id.len() + access + decided_by + structs) as u64 + ENTRY_OVERHEAD
}

impl From<AclVerdict> for AclVerdictLite {
    fn from(v: AclVerdict) -> AclVerdictLite {
        AclVerdictLite { allowed: v.allowed, decided_by: v.decided_by }
    }
}

impl From<&AclVerdict> for AclVerdictLite {
    fn from(v: &AclVerdict) -> AclVerdictLite {
        AclVerdictLite { allowed: v.allowed, decided_by: v.decided_by.clone() }
    }
}

static HITS: Family = Family {
    name: "acl_cache_hits",
    help: "ACL checks answered from the cache (or by joining a check in flight).",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("acl/cache/hits"),
    sys_total: None,
};
static MISSES: Family = Family {
    name: "acl_cache_misses",
    help: "ACL checks that ran the chain.",
    kind: Kind::Counter,
    labels: &[],
    sys: Some("acl/cache/misses"),
    sys_total: None,
};
static ENTRIES: Family = Family {
    name: "acl_cache_entries",
    help: "Decisions cached now (approximate).",
    kind: Kind::Gauge,
    labels: &[],
    sys: None,
    sys_total: None,
};
static BYTES: Family = Family {
    name: "acl_cache_bytes",
    help: "What the cached decisions weigh together, in bytes (approximate).",
    kind: Kind::Gauge,
    labels: &[],
    sys: None,
    sys_total: None,
};

/// Lookup counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
}

/// The decision cache. Cheap to share behind an `Arc`.
pub struct AclCache {
    cache: Cache<CacheKey, AclVerdictLite>,
    /// Lookups answered without running the chain: from the cache, or by
    /// joining an identical evaluation in flight.
    hits: AtomicU64,
    /// Evaluations actually run (one per single-flight group).
    misses: AtomicU64,
    /// Moves on every invalidation (see [`AclCache::epoch`]).
    epoch: AtomicU64,
    /// See [`AclCache::allow_reuse`].
    reuse: Option<Duration>,
}

/// Longest a connection reuses an allowed publish on its own (see
/// [`AclCache::allow_reuse`]): what that reuse can add to a decision's
/// age beyond the cache's `ttl`.
pub const MAX_ALLOW_REUSE: Duration = Duration::from_secs(1);

impl std::fmt::Debug for AclCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AclCache").field("entries", &self.cache.entry_count()).field("stats", &self.stats()).finish()
    }
}

impl AclCache {
    /// At most `max_entries` decisions holding at most `max_bytes` (by
    /// [`entry_weight`]) together, each kept at most `ttl` (non-zero).
    /// Either bound at 0 turns the cache off.
    ///
    /// Both bounds with one weigher: every entry is counted as at least
    /// `max_bytes / max_entries` bytes, so a cache full by count is also
    /// full by weight, and the weights of real entries never add up to
    /// more than `max_bytes`.
    pub fn new(max_entries: u64, max_bytes: u64, ttl: Duration) -> AclCache {
        let on = max_entries > 0 && max_bytes > 0;
        let floor = if on { max_bytes.div_ceil(max_entries) } else { 0 };
        let cache = Cache::builder()
            .max_capacity(if on { max_bytes } else { 0 })
            .weigher(move |k: &CacheKey, v: &AclVerdictLite| {
                u32::try_from(entry_weight(k, v).max(floor)).unwrap_or(u32::MAX)
            })
            .time_to_live(ttl)
            .support_invalidation_closures()
            .build();
        let reuse = on.then(|| ttl.min(MAX_ALLOW_REUSE));
        AclCache { cache, hits: AtomicU64::new(0), misses: AtomicU64::new(0), epoch: AtomicU64::new(0), reuse }
    }

    /// How long a connection may reuse an allowed publish decision for the
    /// same topic, QoS and retain flag without a lookup here:
    /// `min(ttl, 1 s)`, or `None` when the cache is off (`max_entries = 0`:
    /// every action goes to the chain). A stream of messages to one topic
    /// then costs one lookup a second, not one per message.
    pub fn allow_reuse(&self) -> Option<Duration> {
        self.reuse
    }

    /// A counter that moves on every invalidation: decisions reused by
    /// connections ([`AclCache::allow_reuse`]) end with it.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn bump_epoch(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    /// The cached decision for `key`, or the result of `init` (run once
    /// for all concurrent callers with the same key, and stored unless it
    /// was decided by a provider failure).
    pub async fn get_or_insert_with(
        &self,
        key: CacheKey,
        init: impl Future<Output = AclVerdictLite>,
    ) -> AclVerdictLite {
        let misses = &self.misses;
        let mut ran = false;
        let ran_here = &mut ran;
        let r = self
            .cache
            .try_get_with(key, async move {
                *ran_here = true;
                misses.fetch_add(1, Relaxed);
                let v = init.await;
                if v.cacheable() {
                    Ok(v)
                } else {
                    Err(v)
                }
            })
            .await;
        // Counted when answered, so that hits never go back (hits as
        // lookups minus misses did, while a miss was in flight).
        if !ran {
            self.hits.fetch_add(1, Relaxed);
        }
        match r {
            Ok(v) => v,
            Err(uncached) => (*uncached).clone(),
        }
    }

    /// Drops every decision cached for `client_id` (on disconnect).
    pub fn invalidate_client(&self, client_id: &str) {
        self.bump_epoch();
        let id: Arc<str> = Arc::from(client_id);
        if let Err(e) = self.cache.invalidate_entries_if(move |k, _| *k.client_id == *id) {
            // Only possible if invalidation closures were not enabled at build.
            tracing::warn!(error = %e, "ACL cache: per-client invalidation failed, dropping everything");
            self.cache.invalidate_all();
        }
    }

    /// Drops every cached decision (on policy reload).
    pub fn invalidate_all(&self) {
        // Before dropping: a connection that reads the old epoch after
        // this point may still reuse, but only until its next check.
        self.bump_epoch();
        self.cache.invalidate_all();
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats { hits: self.hits.load(Relaxed), misses: self.misses.load(Relaxed) }
    }

    /// Reads the cache's counters into `out` (`portcullis_acl_cache_*`;
    /// hits and misses also in `$SYS/brokers/<node>/acl/cache/…`).
    pub fn collect(&self, out: &mut Scrape) {
        let st = self.stats();
        out.add(&HITS, &[], st.hits);
        out.add(&MISSES, &[], st.misses);
        out.add(&ENTRIES, &[], self.entry_count());
        out.add(&BYTES, &[], self.weighted_size());
    }

    /// Number of stored decisions (approximate until pending maintenance runs).
    pub fn entry_count(&self) -> u64 {
        self.cache.entry_count()
    }

    /// What the stored decisions weigh together, in bytes (see
    /// [`AclCache::new`]; approximate until pending maintenance runs).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// Runs the cache's pending maintenance (evictions), for tests and
    /// figures that read the counts.
    pub async fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn allow_reuse_and_epoch() {
        let c = AclCache::new(10, 1 << 20, Duration::from_secs(60));
        assert_eq!(c.allow_reuse(), Some(MAX_ALLOW_REUSE), "capped at 1 s");
        assert_eq!(
            AclCache::new(10, 1 << 20, Duration::from_millis(300)).allow_reuse(),
            Some(Duration::from_millis(300))
        );
        assert_eq!(AclCache::new(0, 1 << 20, Duration::from_secs(60)).allow_reuse(), None, "cache off: never reused");
        let e = c.epoch();
        c.invalidate_all();
        assert_eq!(c.epoch(), e + 1, "a reload ends reuse");
        c.invalidate_client("x");
        assert_eq!(c.epoch(), e + 2);
    }

    fn key(id: &str, conn_id: u64, req: &Req) -> CacheKey {
        let mut c = user(id, "u");
        c.conn_id = conn_id;
        CacheKey::new(&c, &req.access())
    }

    fn verdict(allowed: bool) -> AclVerdictLite {
        AclVerdictLite { allowed, decided_by: DecidedBy::Provider { name: "p".into(), rule: Some("f:1".into()) } }
    }

    /// Counts calls; answers `allowed` after a short pause.
    async fn eval(calls: &AtomicUsize, allowed: bool) -> AclVerdictLite {
        calls.fetch_add(1, Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
        verdict(allowed)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_misses_make_one_call() {
        let cache = Arc::new(AclCache::new(1000, 1 << 20, Duration::from_secs(60)));
        let calls = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..200 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.spawn(async move {
                let req = publish("a/b");
                cache.get_or_insert_with(key("c1", 1, &req), eval(&calls, true)).await
            });
        }
        let all = tokio::time::timeout(Duration::from_secs(10), tasks.join_all()).await.unwrap();
        assert_eq!(all.len(), 200);
        assert!(all.iter().all(|v| *v == verdict(true)));
        assert_eq!(calls.load(Relaxed), 1);
        assert_eq!(cache.stats(), CacheStats { hits: 199, misses: 1 });
    }

    /// Hits are a counter (Prometheus, `$SYS`): a scrape while misses are
    /// in flight must never see them go back. (As lookups minus misses
    /// they did: a lookup was a hit until its miss was counted.)
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hits_never_go_back_while_misses_are_in_flight() {
        let cache = Arc::new(AclCache::new(100_000, 1 << 30, Duration::from_secs(60)));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let (cache, done) = (cache.clone(), done.clone());
            std::thread::spawn(move || {
                let (mut last, mut back) = (0, 0);
                let end = std::time::Instant::now() + Duration::from_secs(30);
                while !done.load(Relaxed) && std::time::Instant::now() < end {
                    let h = cache.stats().hits;
                    back += usize::from(h < last);
                    last = h;
                }
                back
            })
        };
        let req = publish("a/b");
        for i in 0..20_000u64 {
            // Every key new: each lookup is a miss, none a hit.
            cache.get_or_insert_with(key("c1", i, &req), async { verdict(true) }).await;
        }
        done.store(true, Relaxed);
        assert_eq!(sampler.join().expect("sampler"), 0, "hits went back");
        assert_eq!(cache.stats(), CacheStats { hits: 0, misses: 20_000 });
    }

    #[tokio::test]
    async fn keys_separate_clients_connections_and_accesses() {
        let cache = AclCache::new(1000, 1 << 20, Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let reqs = [
            publish("a"),
            publish_with("a", 1, false),
            publish_with("a", 0, true),
            subscribe("a"),
            subscribe("$share/g/a"),
        ];
        for r in &reqs {
            for (id, conn) in [("c1", 1), ("c1", 2), ("c2", 1)] {
                cache.get_or_insert_with(key(id, conn, r), eval(&calls, true)).await;
                cache.get_or_insert_with(key(id, conn, r), eval(&calls, true)).await;
            }
        }
        assert_eq!(calls.load(Relaxed), reqs.len() * 3);
    }

    #[tokio::test]
    async fn invalidation() {
        let cache = AclCache::new(1000, 1 << 20, Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let (a, b) = (publish("a"), subscribe("b/#"));
        for id in ["c1", "c2"] {
            cache.get_or_insert_with(key(id, 1, &a), eval(&calls, true)).await;
            cache.get_or_insert_with(key(id, 1, &b), eval(&calls, false)).await;
        }
        assert_eq!(calls.load(Relaxed), 4);

        // disconnect of c1 drops only c1's decisions
        cache.invalidate_client("c1");
        assert_eq!(cache.get_or_insert_with(key("c1", 1, &a), eval(&calls, false)).await, verdict(false));
        assert_eq!(calls.load(Relaxed), 5);
        assert_eq!(cache.get_or_insert_with(key("c2", 1, &a), eval(&calls, false)).await, verdict(true));
        assert_eq!(calls.load(Relaxed), 5);

        // a reload drops everything
        cache.invalidate_all();
        cache.get_or_insert_with(key("c2", 1, &a), eval(&calls, true)).await;
        cache.get_or_insert_with(key("c2", 1, &b), eval(&calls, true)).await;
        assert_eq!(calls.load(Relaxed), 7);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = AclCache::new(1000, 1 << 20, Duration::from_secs(60));
        let calls = AtomicUsize::new(0);
        let failed = AclVerdictLite { allowed: false, decided_by: DecidedBy::Failure { name: "ldap".into() } };
        assert!(!failed.cacheable());
        let req = publish("a");
        for _ in 0..2 {
            let got = cache
                .get_or_insert_with(key("c", 1, &req), async {
                    calls.fetch_add(1, Relaxed);
                    failed.clone()
                })
                .await;
            assert_eq!(got, failed);
        }
        assert_eq!(calls.load(Relaxed), 2);
        // the next good answer is cached
        cache.get_or_insert_with(key("c", 1, &req), eval(&calls, true)).await;
        cache.get_or_insert_with(key("c", 1, &req), eval(&calls, false)).await;
        assert_eq!(calls.load(Relaxed), 3);
    }

    #[tokio::test]
    async fn entries_expire_after_ttl() {
        let cache = AclCache::new(1000, 1 << 20, Duration::from_millis(50));
        let calls = AtomicUsize::new(0);
        let req = publish("a");
        cache.get_or_insert_with(key("c", 1, &req), eval(&calls, true)).await;
        cache.get_or_insert_with(key("c", 1, &req), eval(&calls, true)).await;
        assert_eq!(calls.load(Relaxed), 1);
        std::thread::sleep(Duration::from_millis(120));
        cache.get_or_insert_with(key("c", 1, &req), eval(&calls, true)).await;
        assert_eq!(calls.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn long_keys_fill_the_byte_bound_not_the_memory() {
        // 64 KiB of key bytes at most, 1,000 entries at most.
        let cache = AclCache::new(1000, 64 * 1024, Duration::from_secs(60));
        let long = "t/".repeat(2000);
        for i in 0..100 {
            let req = publish(&format!("{long}{i}"));
            cache.get_or_insert_with(key("c1", 1, &req), async { verdict(true) }).await;
        }
        cache.run_pending_tasks().await;
        let one = entry_weight(&key("c1", 1, &publish(&format!("{long}0"))), &verdict(true));
        assert!(one > 4000, "a 4 KB topic weighs its bytes: {one}");
        assert!(cache.weighted_size() <= 64 * 1024, "{}", cache.weighted_size());
        assert!(cache.entry_count() <= 64 * 1024 / one, "{} entries of {one} bytes", cache.entry_count());

        // Short keys: the entry bound holds, each counted as 64 KiB / 1,000.
        let cache = AclCache::new(10, 1 << 30, Duration::from_secs(60));
        for i in 0..100 {
            let req = publish(&format!("a/{i}"));
            cache.get_or_insert_with(key("c1", 1, &req), async { verdict(true) }).await;
        }
        cache.run_pending_tasks().await;
        assert!(cache.entry_count() <= 10, "{}", cache.entry_count());

        // Either bound at 0: off.
        let off = AclCache::new(1000, 0, Duration::from_secs(60));
        assert_eq!(off.allow_reuse(), None);
        let calls = AtomicUsize::new(0);
        for _ in 0..2 {
            off.get_or_insert_with(key("c1", 1, &publish("a")), eval(&calls, true)).await;
        }
        off.run_pending_tasks().await;
        assert_eq!(off.entry_count(), 0);
    }

    #[test]
    fn weight_counts_the_strings() {
        let short = entry_weight(&key("c", 1, &publish("a")), &verdict(true));
        let long = entry_weight(&key("c", 1, &publish(&"a".repeat(1001))), &verdict(true));
        assert_eq!(long - short, 1000);
        let sub = entry_weight(&key("c", 1, &subscribe("$share/grp/a/+")), &verdict(true));
        let plain = entry_weight(&key("c", 1, &subscribe("a/+")), &verdict(true));
        assert_eq!(sub - plain, ("$share/grp/".len() + "grp".len()) as u64);
        assert!(short >= ENTRY_OVERHEAD);
    }

    #[test]
    fn lite_from_verdict() {
        let v = AclVerdict { allowed: true, decided_by: DecidedBy::NoMatch, steps: Vec::new() };
        assert_eq!(AclVerdictLite::from(&v), AclVerdictLite { allowed: true, decided_by: DecidedBy::NoMatch });
        assert!(AclVerdictLite::from(v).cacheable());
    }
}
