//! Retained-store micro-benchmarks: what a SUBSCRIBE costs when the store
//! holds 100,000 retained topics.
//!
//! The topics model a fleet: 100 sites × 100 devices × 10 metrics,
//! `site/<s>/dev/<d>/m<k>`, one small retained message each. Each bench is
//! one [`RetainStore::matching`] call, the lookup a SUBSCRIBE makes before
//! queueing the retained messages it found:
//!
//! | bench | filter | matches |
//! |---|---|---|
//! | `exact` | `site/42/dev/7/m3` | 1 |
//! | `one_site` | `site/42/#` | 1,000 |
//! | `one_metric_of_a_site` | `site/42/dev/+/m3` | 100 |
//! | `one_device_everywhere` | `+/+/dev/7/m3` | 100 |
//! | `nothing` | `other/#` | 0 |
//! | `everything` | `#` | 100,000 |
//!
//! and `retain/set_100k/replace`: one [`RetainStore::set`] replacing the
//! message of an existing topic (the retained publish path), cycling
//! through 4,096 topics.
//!
//! Run quickly with `cargo bench -p portcullis-core --bench retain -- --quick`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_core::codec::QoS;
use portcullis_core::message::Message;
use portcullis_core::retain::RetainStore;
use portcullis_core::settings::RetainSettings;
use portcullis_core::topic::{TopicFilter, TopicName};

fn message(site: u32, dev: u32, m: u32) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(&format!("site/{site}/dev/{dev}/m{m}")).expect("topic"),
        payload: Bytes::from_static(b"21.5"),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: None,
        publisher: None,
        expires_at: None,
    })
}

fn store() -> RetainStore {
    let s = RetainStore::new(RetainSettings::default());
    for site in 0..100 {
        for dev in 0..100 {
            for m in 0..10 {
                s.set(&message(site, dev, m));
            }
        }
    }
    s
}

fn bench(c: &mut Criterion) {
    let s = store();
    assert_eq!(s.len(), 100_000);
    let mut g = c.benchmark_group("retain/matching_100k");
    for (name, filter, want) in [
        ("exact", "site/42/dev/7/m3", 1),
        ("one_site", "site/42/#", 1_000),
        ("one_metric_of_a_site", "site/42/dev/+/m3", 100),
        ("one_device_everywhere", "+/+/dev/7/m3", 100),
        ("nothing", "other/#", 0),
        ("everything", "#", 100_000),
    ] {
        let f = TopicFilter::new(filter).expect("filter");
        let now = Instant::now();
        assert_eq!(s.matching(&f, now).len(), want, "{filter}");
        g.bench_function(name, |b| b.iter(|| black_box(s.matching(black_box(&f), now))));
    }
    g.finish();
    let again: Vec<Arc<Message>> = (0..4096).map(|i| message(i % 100, (i / 100) % 100, i % 10)).collect();
    let mut i = 0;
    c.bench_function("retain/set_100k/replace", |b| {
        b.iter(|| {
            i = (i + 1) % again.len();
            black_box(s.set(&again[i]))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
