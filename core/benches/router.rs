//! Router micro-benchmarks: the topic trie with 100,000 filters.
//!
//! The filters model a fleet: 100 sites × 1,000 devices × 10 metrics, topic
//! names `site/<s>/dev/<d>/m<k>`. Of the 100,000 filters (one client each,
//! picked by a fixed-seed generator):
//!
//! | share | filter |
//! |---|---|
//! | 80 % | exact `site/<s>/dev/<d>/m<k>` |
//! | 5 % | `site/<s>/dev/<d>/+` (one device, every metric) |
//! | 5 % | `site/<s>/dev/+/m<k>` (one metric of a whole site) |
//! | 5 % | `site/<s>/dev/<d>/#` |
//! | 5 % | a third each of `site/<s>/#` (a site's dashboard), `+/dev/<d>/m<k>` (first level wild: the trie every publish visits) and `site/+/dev/<d>/#` |
//!
//! * `router/match/fleet_topic` — one [`Router::matches`] for a random fleet
//!   topic (cycling through 4,096 of them); the routes found are printed
//!   once so the work per lookup is known.
//! * `router/match/unrelated_topic` — a topic whose first level nobody
//!   subscribed to (only the wildcard trie is walked).
//! * `router/subscribe_unsubscribe/{exact,plus,hash}` — one new client
//!   subscribes to a new filter and unsubscribes again, in the full router.
//! * `router/build_100k` — 100,000 subscribes into an empty router.
//!
//! Run quickly with `cargo bench -p portcullis-core --bench router -- --quick`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use portcullis_core::codec::SubscriptionOptions;
use portcullis_core::router::{collapse, Clients, Route, Router, Subscriber};
use portcullis_core::topic::{SubscriptionFilter, TopicName};

const FILTERS: usize = 100_000;
const SITES: u64 = 100;
const DEVICES: u64 = 1_000;
const METRICS: u64 = 10;

/// A small deterministic generator (xorshift64*): the same filters and
/// topics on every run, without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn fleet_filters() -> Vec<SubscriptionFilter> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    (0..FILTERS)
        .map(|i| {
            let (s, d, m) = (rng.below(SITES), rng.below(DEVICES), rng.below(METRICS));
            let f = match i % 20 {
                0..=15 => format!("site/{s}/dev/{d}/m{m}"),
                16 => format!("site/{s}/dev/{d}/+"),
                17 => format!("site/{s}/dev/+/m{m}"),
                18 => format!("site/{s}/dev/{d}/#"),
                _ => match (i / 20) % 3 {
                    0 => format!("site/{s}/#"),
                    1 => format!("+/dev/{d}/m{m}"),
                    _ => format!("site/+/dev/{d}/#"),
                },
            };
            SubscriptionFilter::parse(&f).expect("valid filter")
        })
        .collect()
}

fn fleet_topics(n: usize) -> Vec<TopicName> {
    let mut rng = Rng(0xD1B5_4A32_D192_ED03);
    (0..n)
        .map(|_| {
            let (s, d, m) = (rng.below(SITES), rng.below(DEVICES), rng.below(METRICS));
            TopicName::new(&format!("site/{s}/dev/{d}/m{m}")).expect("valid topic")
        })
        .collect()
}

fn subscriber(i: usize) -> Subscriber<u32> {
    Subscriber {
        client_id: Arc::from(format!("client-{i}")),
        options: SubscriptionOptions::default(),
        subscription_id: None,
        check: false,
        handle: i as u32,
    }
}

fn full_router(filters: &[SubscriptionFilter]) -> Router<u32> {
    let router = Router::default();
    for (i, f) in filters.iter().enumerate() {
        router.subscribe(f, subscriber(i));
    }
    router
}

fn bench_match(c: &mut Criterion) {
    let filters = fleet_filters();
    let router = full_router(&filters);
    let topics = fleet_topics(4096);
    let mut routes: Vec<Route<u32>> = Vec::new();
    let found: usize = topics
        .iter()
        .map(|t| {
            routes.clear();
            let _ = router.matches(t, &mut routes);
            routes.len()
        })
        .sum();
    eprintln!(
        "router: {} filters ({} distinct), {:.2} routes per fleet topic on average",
        router.subscription_count(),
        router.topic_count(),
        found as f64 / topics.len() as f64
    );

    let mut g = c.benchmark_group("router/match");
    g.throughput(Throughput::Elements(1));
    let mut next = 0usize;
    g.bench_function("fleet_topic", |b| {
        b.iter(|| {
            routes.clear();
            let _ = router.matches(black_box(&topics[next % topics.len()]), &mut routes);
            next = next.wrapping_add(1);
            black_box(routes.len())
        })
    });
    let unrelated = TopicName::new("factory/7/line/3/state").expect("valid topic");
    g.bench_function("unrelated_topic", |b| {
        b.iter(|| {
            routes.clear();
            let _ = router.matches(black_box(&unrelated), &mut routes);
            black_box(routes.len())
        })
    });
    g.finish();

    let mut g = c.benchmark_group("router/subscribe_unsubscribe");
    for (name, f) in [("exact", "site/5/dev/77/m99"), ("plus", "site/5/dev/+/m99"), ("hash", "site/5/dev/1234/#")] {
        let filter = SubscriptionFilter::parse(f).expect("valid filter");
        let sub = subscriber(FILTERS + 1);
        g.bench_function(name, |b| {
            b.iter(|| {
                assert!(router.subscribe(&filter, sub.clone()));
                assert!(router.unsubscribe(&filter, &sub.client_id));
            })
        });
    }
    g.finish();
}

fn bench_build(c: &mut Criterion) {
    let filters = fleet_filters();
    let mut g = c.benchmark_group("router");
    g.sample_size(10);
    g.throughput(Throughput::Elements(FILTERS as u64));
    g.bench_function("build_100k", |b| {
        b.iter_batched(
            || (0..FILTERS).map(subscriber).collect::<Vec<_>>(),
            |subs| {
                let router = Router::default();
                for (f, s) in filters.iter().zip(subs) {
                    router.subscribe(f, s);
                }
                router
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// One publish to 100 subscribers of one filter: match and collapse, as
/// the broker does per message of a 1→100 fan-out.
fn bench_fan_out(c: &mut Criterion) {
    let router = Router::default();
    let filter = SubscriptionFilter::parse("fan/out").expect("valid filter");
    for i in 0..100 {
        router.subscribe(&filter, subscriber(i));
    }
    let topic = TopicName::new("fan/out").expect("valid topic");
    let mut g = c.benchmark_group("router/fan_out_100");
    g.throughput(Throughput::Elements(100));
    for (name, clients) in [("distinct", None), ("merging", Some(Clients::MayRepeat))] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let mut routes = Vec::with_capacity(100);
                let found = router.matches(black_box(&topic), &mut routes);
                black_box(collapse(routes, clients.unwrap_or(found)).len())
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_match, bench_fan_out, bench_build
}
criterion_main!(benches);
