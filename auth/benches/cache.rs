//! Auth cache micro-benchmarks.
//!
//! * `auth_cache/hit` — a warm entry: key hash (keyed BLAKE3 over chain,
//!   client id, username, password, peer IP, listener), moka lookup, the
//!   generation and deadline checks, the verdict clone.
//! * `auth_cache/miss` — new credentials every time, a trivial provider
//!   that allows at once: key hash, moka miss, single-flight bookkeeping,
//!   one chain call, the insert.
//! * `auth_cache/no_cache` — the same chain without a cache
//!   (`max_entries = 0`), for comparison: what a hit saves over a trivial
//!   provider.
//! * `auth_cache/single_flight_64` — 64 tasks on a two-thread runtime ask
//!   for the same new credentials at once; the provider yields once so
//!   the flight stays open while the others join. The time is per burst
//!   of 64; the provider must have been called once per burst (checked).
//!
//! Run quickly with `cargo bench -p portcullis-auth --bench cache -- --quick`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use portcullis_auth::cache::{AuthCache, AuthCacheConfig};
use portcullis_auth::chain::{AuthChain, AuthEntry, AuthResult, NoMatch};
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider};
use portcullis_core::codec::ProtocolVersion;
use portcullis_core::gate::{ConnectInfo, GateFuture, Password};
use portcullis_core::provider::{OnError, ProviderError};
use tokio::runtime::Runtime;

/// Allows everyone at once (after one yield when `yields`), counting calls.
#[derive(Debug, Default)]
struct Trivial {
    yields: bool,
    calls: AtomicU64,
}

impl AuthProvider for Trivial {
    fn name(&self) -> &str {
        "trivial"
    }

    fn kind(&self) -> &'static str {
        "bench"
    }

    fn authenticate<'a>(&'a self, _info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        self.calls.fetch_add(1, Relaxed);
        Box::pin(async move {
            if self.yields {
                tokio::task::yield_now().await;
            }
            Ok(AuthAnswer::new(AuthDecision::allow(), Some("trivial".to_string())))
        })
    }
}

fn chain(provider: &Arc<Trivial>) -> AuthChain {
    let entry = AuthEntry::new(Arc::clone(provider) as _, Duration::from_secs(5), OnError::Deny);
    AuthChain::new("default", vec![entry], NoMatch::Deny)
}

fn info(client_id: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: Arc::from(client_id),
        username: Some(Arc::from("device-0042")),
        password: Some(Password::new(Bytes::from_static(b"correct horse battery staple"))),
        peer: SocketAddr::from(([127, 0, 0, 1], 50_000)),
        listener: Arc::from("default"),
        protocol: ProtocolVersion::V311.into(),
        cert: None,
    }
}

fn cache() -> Arc<AuthCache> {
    // The broker's defaults (auth.cache): 100,000 entries, 5 min allow.
    Arc::new(AuthCache::new(AuthCacheConfig::default()))
}

fn runtime(threads: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime")
}

fn bench_single_thread_paths(c: &mut Criterion) {
    let rt = runtime(1);
    let mut g = c.benchmark_group("auth_cache");
    g.throughput(Throughput::Elements(1));

    let provider = Arc::new(Trivial::default());
    let (chain, cache, warm) = (chain(&provider), cache(), info("warm"));
    rt.block_on(cache.authenticate(&chain, &warm));
    g.bench_function("hit", |b| {
        b.to_async(&rt).iter(|| async {
            let v = cache.authenticate(&chain, black_box(&warm)).await;
            debug_assert!(matches!(v.result, AuthResult::Allow { .. }));
            v
        })
    });
    assert_eq!(provider.calls.load(Relaxed), 1, "every hit was served from the cache");

    let next = AtomicU64::new(0);
    let fresh = || info(&format!("client-{}", next.fetch_add(1, Relaxed)));
    let (cached, chain) = (&*cache, &chain);
    g.bench_function("miss", |b| {
        b.to_async(&rt).iter_batched(
            fresh,
            |i| async move { cached.authenticate(chain, &i).await },
            BatchSize::SmallInput,
        )
    });

    let uncached = &AuthCache::new(AuthCacheConfig { max_entries: 0, ..AuthCacheConfig::default() });
    g.bench_function("no_cache", |b| {
        b.to_async(&rt).iter_batched(
            fresh,
            |i| async move { uncached.authenticate(chain, &i).await },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

const BURST: usize = 64;

fn bench_single_flight(c: &mut Criterion) {
    let rt = runtime(2);
    let provider = Arc::new(Trivial { yields: true, calls: AtomicU64::new(0) });
    let chain = Arc::new(chain(&provider));
    let cache = cache();
    let mut bursts = 0u64;
    let mut g = c.benchmark_group("auth_cache");
    g.throughput(Throughput::Elements(BURST as u64));
    g.bench_function("single_flight_64", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                bursts += 1;
                let credentials = Arc::new(info(&format!("storm-{bursts}")));
                let start = Instant::now();
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for _ in 0..BURST {
                        let (cache, chain, credentials) =
                            (Arc::clone(&cache), Arc::clone(&chain), Arc::clone(&credentials));
                        tasks.spawn(async move { cache.authenticate(&chain, &credentials).await });
                    }
                    while let Some(v) = tasks.join_next().await {
                        assert!(matches!(v.expect("task").result, AuthResult::Allow { .. }));
                    }
                });
                spent += start.elapsed();
            }
            spent
        })
    });
    g.finish();
    let calls = provider.calls.load(Relaxed);
    eprintln!("auth_cache/single_flight_64: {bursts} bursts of {BURST} identical misses, {calls} provider calls");
    assert_eq!(calls, bursts, "one provider call per burst");
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_single_thread_paths, bench_single_flight
}
criterion_main!(benches);
