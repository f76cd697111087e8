//! Prometheus: the broker's metrics in the Prometheus text format
//! (version 0.0.4), for the management plane to serve at
//! `/api/v5/prometheus/stats` and `/metrics`.
//!
//! [`render`] is the one entry point. It takes one
//! [`Broker::scrape`](portcullis_core::broker::Broker::scrape) — the same
//! registry `$SYS` publishes — and encodes it with `prometheus-client`
//! (the Prometheus project's Rust client) as a collector: the values are
//! the broker's own atomics, read when the scrape is taken, so nothing is
//! counted twice and the publish path pays nothing for Prometheus.
//!
//! Every name starts with `portcullis_`; counters end in `_total`; the
//! provider latency histograms are in seconds. Labels are bounded (see
//! [`portcullis_core::metrics::registry`]): chain, provider and listener
//! names from the config, and closed sets (`type`, `qos`, `reason`,
//! `outcome`, `version`). README, "Operations", lists every family.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use portcullis_core::metrics::{Kind, Scrape, Value};

use crate::node::Node;

/// The `Content-Type` of what [`render`] returns
/// (`text/plain; version=0.0.4; charset=utf-8`).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Every metric of the running node, in the Prometheus text format
/// ([`CONTENT_TYPE`]): the broker's, its listeners', its auth and ACL
/// chains', caches' and guard's, and its modules'. Cheap enough to call on
/// every scrape; it takes no lock a client's path waits on for long.
pub fn render(node: &Node) -> String {
    render_scrape(node.broker.scrape())
}

/// [`render`] of a scrape already taken (tests compare the two outputs of
/// one scrape).
pub fn render_scrape(scrape: Scrape) -> String {
    let mut registry = Registry::with_prefix("portcullis");
    registry.register_collector(Box::new(Snapshot(scrape)));
    let mut out = String::new();
    // Writing to a String does not fail; a family whose samples do not
    // fit its kind is skipped at the sample (see `Snapshot::encode`).
    if prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).is_err() {
        tracing::error!("prometheus: encoding failed");
    }
    out
}

/// One scrape, encoded when the registry is.
#[derive(Debug)]
struct Snapshot(Scrape);

fn metric_type(kind: Kind) -> MetricType {
    match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
        Kind::Histogram(_) => MetricType::Histogram,
    }
}

impl Collector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in self.0.families() {
            let fam = f.family;
            let mut metric = encoder.encode_descriptor(fam.name, fam.help, None, metric_type(fam.kind))?;
            for s in &f.samples {
                let labels: Vec<(&str, &str)> =
                    fam.labels.iter().copied().zip(s.labels.iter().map(String::as_str)).collect();
                let mut m = metric.encode_family(&labels)?;
                match (fam.kind, &s.value) {
                    (Kind::Counter, Value::Number(n)) => m.encode_counter::<NoLabelSet, _, u64>(n, None)?,
                    (Kind::Gauge, Value::Number(n)) => m.encode_gauge(n)?,
                    (Kind::Histogram(b), Value::Histogram(h)) => {
                        let per = b.per_base_unit as f64;
                        let buckets: Vec<(f64, u64)> =
                            b.bounds.iter().zip(&h.counts).map(|(bound, n)| (*bound as f64 / per, *n)).collect();
                        m.encode_histogram::<NoLabelSet>(h.sum as f64 / per, h.count(), &buckets, None)?;
                    }
                    // The registry refuses such samples; nothing to write.
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use portcullis_core::metrics::{Buckets, Family, Kind, Scrape};

    use super::render_scrape;

    static CALLS: Family = Family {
        name: "test_calls",
        help: "Calls.\nSecond line \\ here.",
        kind: Kind::Counter,
        labels: &["chain", "provider"],
        sys: None,
        sys_total: None,
    };
    static UP: Family =
        Family { name: "test_up", help: "Up.", kind: Kind::Gauge, labels: &[], sys: None, sys_total: None };
    static LATENCY: Family = Family {
        name: "test_latency_seconds",
        help: "Latency.",
        kind: Kind::Histogram(Buckets { bounds: &[100, 1_000_000], per_base_unit: 1_000_000 }),
        labels: &["provider"],
        sys: None,
        sys_total: None,
    };

    #[test]
    fn text_format_with_escaping_totals_and_seconds() {
        let mut s = Scrape::new();
        s.add(&CALLS, &["default", "pw"], 3);
        s.add(&CALLS, &["odd\"name", "back\\slash\nnl"], 1);
        s.add(&UP, &[], 1);
        s.add_histogram(&LATENCY, &["pw"], vec![2, 1, 1], 2_500_150);
        let text = render_scrape(s);
        let want = "\
# HELP portcullis_test_calls_total Calls.\\nSecond line \\\\ here.
# TYPE portcullis_test_calls_total counter
portcullis_test_calls_total{chain=\"default\",provider=\"pw\"} 3
portcullis_test_calls_total{chain=\"odd\\\"name\",provider=\"back\\\\slash\\nnl\"} 1
# HELP portcullis_test_up Up.
# TYPE portcullis_test_up gauge
portcullis_test_up 1
# HELP portcullis_test_latency_seconds Latency.
# TYPE portcullis_test_latency_seconds histogram
portcullis_test_latency_seconds_bucket{provider=\"pw\",le=\"0.0001\"} 2
portcullis_test_latency_seconds_bucket{provider=\"pw\",le=\"1\"} 3
portcullis_test_latency_seconds_bucket{provider=\"pw\",le=\"+Inf\"} 4
portcullis_test_latency_seconds_sum{provider=\"pw\"} 2.50015
portcullis_test_latency_seconds_count{provider=\"pw\"} 4
";
        assert_eq!(text, want);
    }

    #[test]
    fn an_empty_scrape_is_an_empty_document() {
        assert_eq!(render_scrape(Scrape::new()), "");
    }
}
