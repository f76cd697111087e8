//! The typed metrics registry: families declared once, values read at
//! scrape time, two renderings of one [`Scrape`].
//!
//! A [`Family`] is a `static`: its name, help text, [`Kind`], label names
//! and where its samples go in `$SYS`. The values are not kept here: each
//! counter stays the plain atomic its owner bumps ([`super::Metrics`], a
//! provider's [`ProviderMetrics`](crate::provider::ProviderMetrics), a
//! listener's counters, a cache's), and a [`MetricSource`] reads them into
//! a [`Scrape`] when one is asked for — every `sys.interval` for `$SYS`,
//! on every request for Prometheus. [`Scrape::sys_values`] renders the
//! `$SYS` topics; the server renders the same [`Scrape`] as Prometheus
//! text. A value is read once per scrape, so the two cannot disagree.
//!
//! **Labels are bounded.** A family's label names are fixed where it is
//! declared, and their values come from the config (chain, provider and
//! listener names) or from closed sets (QoS, packet type, drop reason,
//! decision): never a client id, a username, an address or a topic. A
//! sample whose label values do not match its family's label names is
//! refused (and is a bug: debug builds panic).
//!
//! **`$SYS` topics.** [`Family::sys`] is a topic under
//! `$SYS/brokers/<node>/` in which `{label}` stands for the sample's value
//! of that label (`auth/{chain}/{provider}/calls`); a histogram's topic
//! gets `_sum`, `_le_<bound>` (per bucket, not cumulative) and `_le_inf`
//! appended. [`Family::sys_total`] publishes the sum of a family's samples
//! (`metrics/packets/received`). A family with neither is Prometheus-only.

use std::fmt::Write as _;

/// What a family's samples are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only ever grows (Prometheus adds `_total` to the name).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Counts of observations per bucket, and their sum.
    Histogram(Buckets),
}

/// A histogram's bucket bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    /// Upper bounds, ascending, in the unit observations are recorded in
    /// (microseconds for latencies); a last bucket holds everything above.
    pub bounds: &'static [u64],
    /// Recorded units per Prometheus base unit (1,000,000: recorded in
    /// microseconds, exposed in seconds).
    pub per_base_unit: u64,
}

/// A metric family: one name, one meaning, a fixed set of label names.
#[derive(Debug, PartialEq, Eq)]
pub struct Family {
    /// Prometheus name after the `portcullis_` prefix, without the
    /// `_total` a counter gets: lower case, digits and `_`.
    pub name: &'static str,
    /// One line for Prometheus' `# HELP`.
    pub help: &'static str,
    pub kind: Kind,
    /// Label names; every sample has one value per name, in this order.
    pub labels: &'static [&'static str],
    /// `$SYS` topic of each sample (relative to `$SYS/brokers/<node>/`,
    /// `{label}` replaced by the label's value); `None`: not in `$SYS`.
    pub sys: Option<&'static str>,
    /// `$SYS` topic of the sum of the family's samples.
    pub sys_total: Option<&'static str>,
}

/// Label names that would make a family's series unbounded (one per
/// client, user, address or topic): [`Family::validate`] refuses them.
pub const UNBOUNDED_LABELS: [&str; 10] =
    ["client_id", "clientid", "client", "username", "user", "topic", "filter", "peer", "ip", "address"];

impl Family {
    /// Checks what the type cannot: the name and label names are
    /// Prometheus names (`[a-z_][a-z0-9_]*`, a counter's without the
    /// `_total` Prometheus adds), no label is one of
    /// [`UNBOUNDED_LABELS`], label names are distinct, and every `{label}`
    /// in the `$SYS` topic is one of them. A module's test should call it
    /// on each of its families.
    pub fn validate(&self) -> Result<(), String> {
        let ident = |s: &str| {
            !s.is_empty()
                && !s.starts_with(|c: char| c.is_ascii_digit())
                && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        };
        if !ident(self.name) {
            return Err(format!("{}: not a metric name", self.name));
        }
        if self.kind == Kind::Counter && self.name.ends_with("_total") {
            return Err(format!("{}: a counter's `_total` is added when rendered", self.name));
        }
        for (i, l) in self.labels.iter().enumerate() {
            if !ident(l) || l.starts_with("__") || *l == "le" {
                return Err(format!("{}: `{l}` is not a label name", self.name));
            }
            if UNBOUNDED_LABELS.contains(l) {
                return Err(format!("{}: label `{l}` is unbounded", self.name));
            }
            if self.labels[..i].contains(l) {
                return Err(format!("{}: label `{l}` twice", self.name));
            }
        }
        if let Kind::Histogram(b) = self.kind {
            if b.bounds.is_empty() || !b.bounds.windows(2).all(|w| w[0] < w[1]) || b.per_base_unit == 0 {
                return Err(format!("{}: bounds must ascend and the unit be non-zero", self.name));
            }
        }
        if let Some(t) = self.sys {
            let mut rest = t;
            while let Some(open) = rest.find('{') {
                let after = &rest[open + 1..];
                let close = after.find('}').ok_or_else(|| format!("{}: unclosed `{{` in {t}", self.name))?;
                if !self.labels.contains(&&after[..close]) {
                    return Err(format!("{}: `{{{}}}` in {t} is not a label", self.name, &after[..close]));
                }
                rest = &after[close + 1..];
            }
        }
        Ok(())
    }
}

/// A histogram's value at scrape time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative): one per bound, then one
    /// for everything above the last bound.
    pub counts: Vec<u64>,
    /// Sum of the observations, in the recorded unit.
    pub sum: u64,
}

impl Histogram {
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// One sample's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A counter's or a gauge's value.
    Number(u64),
    Histogram(Histogram),
}

impl Value {
    /// The number (a histogram's: its count of observations).
    pub fn number(&self) -> u64 {
        match self {
            Value::Number(n) => *n,
            Value::Histogram(h) => h.count(),
        }
    }
}

/// One series of a family: its label values and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// One value per [`Family::labels`] name, in that order.
    pub labels: Vec<String>,
    pub value: Value,
}

/// A family and its samples in one scrape.
#[derive(Debug, Clone)]
pub struct FamilySamples {
    pub family: &'static Family,
    pub samples: Vec<Sample>,
}

/// Every metric's value at one moment, grouped by family in the order the
/// families were first added.
#[derive(Debug, Default, Clone)]
pub struct Scrape {
    families: Vec<FamilySamples>,
}

/// Something with metrics to report: the broker's own counters, the auth
/// and ACL chains, caches and guard, the listeners, a module.
///
/// [`MetricSource::collect`] reads the current values into the scrape
/// (cheaply: it runs every `sys.interval` and on every Prometheus scrape,
/// never on a client's path). A module registers its source with
/// [`HookSetBuilder::metrics`](crate::hooks::HookSetBuilder::metrics) in
/// its [`Module::register`](crate::hooks::Module::register), so that its
/// metrics come and go with it; other parts of the broker with
/// [`Broker::add_metric_source`](crate::broker::Broker::add_metric_source).
///
/// ```
/// use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
/// use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};
///
/// /// `portcullis_delayed_messages` in Prometheus, `delayed/messages` in `$SYS`.
/// static DELAYED: Family = Family {
///     name: "delayed_messages",
///     help: "Messages waiting for their delay to pass.",
///     kind: Kind::Gauge,
///     labels: &[],
///     sys: Some("delayed/messages"),
///     sys_total: None,
/// };
///
/// #[derive(Debug, Default)]
/// struct Delayed { waiting: AtomicU64 }
///
/// impl MetricSource for Delayed {
///     fn collect(&self, out: &mut Scrape) {
///         out.add(&DELAYED, &[], self.waiting.load(Relaxed));
///     }
/// }
///
/// let d = Delayed::default();
/// d.waiting.store(3, Relaxed);
/// let mut s = Scrape::new();
/// d.collect(&mut s);
/// assert_eq!(s.sys_values(), vec![("delayed/messages".to_string(), "3".to_string())]);
/// ```
pub trait MetricSource: Send + Sync + 'static {
    /// Adds this source's samples to `out`.
    fn collect(&self, out: &mut Scrape);
}

impl std::fmt::Debug for dyn MetricSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MetricSource")
    }
}

impl Scrape {
    pub fn new() -> Scrape {
        Scrape::default()
    }

    /// Adds a counter's or a gauge's sample: `labels` are the values of
    /// the family's label names, in order.
    pub fn add(&mut self, family: &'static Family, labels: &[&str], value: u64) {
        debug_assert!(!matches!(family.kind, Kind::Histogram(_)), "{}: a histogram needs add_histogram", family.name);
        self.push(family, labels, Value::Number(value));
    }

    /// Adds a histogram's sample: `counts` per bucket (not cumulative, one
    /// more than the family's bounds), `sum` in the recorded unit.
    pub fn add_histogram(&mut self, family: &'static Family, labels: &[&str], counts: Vec<u64>, sum: u64) {
        let Kind::Histogram(b) = family.kind else {
            debug_assert!(false, "{} is not a histogram", family.name);
            return;
        };
        if counts.len() != b.bounds.len() + 1 {
            debug_assert!(false, "{}: {} bucket counts for {} bounds", family.name, counts.len(), b.bounds.len());
            return;
        }
        self.push(family, labels, Value::Histogram(Histogram { counts, sum }));
    }

    fn push(&mut self, family: &'static Family, labels: &[&str], value: Value) {
        if labels.len() != family.labels.len() {
            debug_assert!(false, "{}: labels {:?} for names {:?}", family.name, labels, family.labels);
            return;
        }
        let sample = Sample { labels: labels.iter().map(|l| l.to_string()).collect(), value };
        match self.families.iter_mut().find(|f| f.family.name == family.name) {
            Some(f) => {
                debug_assert!(std::ptr::eq(f.family, family), "two families named {}", family.name);
                f.samples.push(sample);
            }
            None => {
                debug_assert_eq!(family.validate(), Ok(()));
                self.families.push(FamilySamples { family, samples: vec![sample] });
            }
        }
    }

    /// Every family with at least one sample, in the order first added.
    pub fn families(&self) -> &[FamilySamples] {
        &self.families
    }

    /// The family named `name` (without the `portcullis_` prefix).
    pub fn family(&self, name: &str) -> Option<&FamilySamples> {
        self.families.iter().find(|f| f.family.name == name)
    }

    /// The value of the sample of family `name` with these label values.
    pub fn value(&self, name: &str, labels: &[&str]) -> Option<&Value> {
        self.family(name)?
            .samples
            .iter()
            .find(|s| s.labels.iter().map(String::as_str).eq(labels.iter().copied()))
            .map(|s| &s.value)
    }

    /// Every `$SYS` value: `(topic relative to $SYS/brokers/<node>/, value)`.
    pub fn sys_values(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for f in &self.families {
            let fam = f.family;
            if let Some(topic) = fam.sys_total {
                let total: u64 = f.samples.iter().map(|s| s.value.number()).fold(0, u64::wrapping_add);
                out.push((topic.to_string(), total.to_string()));
            }
            let Some(template) = fam.sys else { continue };
            for s in &f.samples {
                let topic = expand(template, fam.labels, &s.labels);
                match (&s.value, fam.kind) {
                    (Value::Number(n), _) => out.push((topic, n.to_string())),
                    (Value::Histogram(h), Kind::Histogram(b)) => {
                        out.push((format!("{topic}_sum"), h.sum.to_string()));
                        for (bound, n) in b.bounds.iter().zip(&h.counts) {
                            out.push((format!("{topic}_le_{bound}"), n.to_string()));
                        }
                        let above = h.counts.get(b.bounds.len()).copied().unwrap_or(0);
                        out.push((format!("{topic}_le_inf"), above.to_string()));
                    }
                    (Value::Histogram(_), _) => {}
                }
            }
        }
        out
    }
}

/// `template` with each `{name}` replaced by that label's value.
pub(super) fn expand(template: &str, names: &[&str], values: &[String]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            out.push_str(&rest[open..]);
            return out;
        };
        let name = &after[..close];
        match names.iter().position(|n| *n == name) {
            Some(i) => out.push_str(values.get(i).map_or("", String::as_str)),
            None => {
                let _ = write!(out, "{{{name}}}");
            }
        }
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    out
}
