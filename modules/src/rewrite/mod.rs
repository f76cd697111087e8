//! Topic rewrite: ordered rules that change a PUBLISH topic, a SUBSCRIBE
//! filter and an UNSUBSCRIBE filter, as EMQX's rewrite module does (its
//! names: `action`, `source_topic`, `re`, `dest_topic`; [`rule`] says how
//! a rule is chosen and applied).
//!
//! The hooks run before the ACL, so the ACL judges the rewritten topic, and
//! the session holds the rewritten filter (an UNSUBSCRIBE of the old filter
//! is rewritten the same way, so it removes it). A shared subscription
//! keeps its `$share/<group>/` (or `$queue/`) and has its inner filter
//! rewritten. Wills are rewritten as PUBLISHes are.
//!
//! A rewrite that gives no valid result — an empty level where a name needs
//! one, a `#` not last, more than `limits.max_topic_levels` levels, more
//! than 65,535 bytes, or a `${username}` for a client without one (or a
//! client id / username that would leave its level) — refuses: the
//! PUBLISH is dropped (v5 PUBACK/PUBREC 0x90 Topic Name invalid; 3.x
//! acknowledged as usual), the filter refused (v5 0x8F Topic Filter
//! invalid; 3.1.1 SUBACK 0x80). Logged (paced) and counted under
//! `$SYS/brokers/<node>/modules/rewrite/`: `publish`, `subscribe`,
//! `unsubscribe` (topics rewritten) and `invalid`.

mod config;
pub mod rule;
#[cfg(test)]
mod tests;

pub use config::{RewriteAction, RewriteConfig, RewriteRule};

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use portcullis_core::broker::Broker;
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{
    Flow, HookSetBuilder, Module, OnMessagePublish, OnSubscribe, OnUnsubscribe, PublishFlow, PublishedMessage,
    Publisher, Subscription,
};
use portcullis_core::logsafe::{LogLimiter, Peer};
use portcullis_core::metrics::{self as m, Family, MetricSource, Scrape};
use portcullis_core::topic::{more_levels_than, SubscriptionFilter, TopicName};
use tracing::warn;

use crate::set::ModuleError;
use rule::{Kind, Rewritten, Rules};

/// Refusal log lines per second at most.
const LOG_LINES_PER_SEC: u32 = 10;

/// The module's counters, kept across rebuilds (one set per broker).
#[derive(Debug, Default)]
pub struct RewriteStats {
    publish: AtomicU64,
    subscribe: AtomicU64,
    unsubscribe: AtomicU64,
    invalid: AtomicU64,
}

impl RewriteStats {
    /// `(name, value)` of every counter.
    pub fn values(&self) -> [(&'static str, u64); 4] {
        [
            ("publish", self.publish.load(Relaxed)),
            ("subscribe", self.subscribe.load(Relaxed)),
            ("unsubscribe", self.unsubscribe.load(Relaxed)),
            ("invalid", self.invalid.load(Relaxed)),
        ]
    }
}

/// `portcullis_rewrite_total{event}`; `$SYS` `modules/rewrite/<event>`.
pub static REWRITE: Family = Family {
    name: "rewrite",
    help: "Topic rewrites by kind (publish, subscribe, unsubscribe) and rewrites refused as invalid.",
    kind: m::Kind::Counter,
    labels: &["event"],
    sys: Some("modules/rewrite/{event}"),
    sys_total: None,
};

impl MetricSource for RewriteStats {
    fn collect(&self, out: &mut Scrape) {
        for (name, v) in self.values() {
            out.add(&REWRITE, &[name], v);
        }
    }
}

/// The topic rewrite module.
#[derive(Debug)]
pub struct Rewrite {
    rules: Rules,
    /// `limits.max_topic_levels` (fixed until a restart).
    max_levels: usize,
    stats: Arc<RewriteStats>,
    log: LogLimiter,
}

impl Rewrite {
    /// Compiles the rules (each regex once).
    pub fn new(broker: &Broker, cfg: &RewriteConfig, stats: Arc<RewriteStats>) -> Result<Rewrite, ModuleError> {
        let rules = Rules::build(&cfg.rules).map_err(|(i, field, message)| ModuleError::Config {
            module: "rewrite",
            key: format!("rules[{i}].{field}"),
            message,
        })?;
        Ok(Rewrite {
            rules,
            max_levels: broker.settings.limits.max_topic_levels,
            stats,
            log: LogLimiter::new(LOG_LINES_PER_SEC),
        })
    }

    /// Counts and logs (paced) a rewrite with no valid result.
    fn invalid(&self, what: &'static str, client: &ClientInfo, from: &str, to: Option<&str>, why: &str) {
        self.stats.invalid.fetch_add(1, Relaxed);
        if let Some(suppressed) = self.log.allow() {
            warn!(
                client_id = %Peer(&client.client_id),
                from = %Peer(from),
                to = %Peer(to.unwrap_or("-")),
                why,
                suppressed,
                "rewrite: no valid {what}; refused"
            );
        }
    }

    /// Rewrites a SUBSCRIBE or UNSUBSCRIBE filter; `Err(())` when refused
    /// (counted and logged).
    fn filter(&self, client: &ClientInfo, sub: &mut Subscription) -> Result<bool, ()> {
        let raw = sub.filter();
        let (prefix, inner) = split_share(raw);
        let to = match self.rules.rewrite(Kind::Subscribe, inner, &client.client_id, client.username.as_deref()) {
            Rewritten::Unchanged => return Ok(false),
            Rewritten::Failed(why) => {
                self.invalid("filter", client, raw, None, why);
                return Err(());
            }
            Rewritten::To(to) => to,
        };
        let full = if prefix.is_empty() { to } else { format!("{prefix}{to}") };
        let why = match SubscriptionFilter::parse(&full) {
            Err(e) => Some(e.to_string()),
            Ok(f) if more_levels_than(f.filter.as_str(), self.max_levels) => {
                Some("more levels than limits.max_topic_levels".to_string())
            }
            Ok(_) => None,
        };
        if let Some(why) = why {
            self.invalid("filter", client, raw, Some(&full), &why);
            return Err(());
        }
        let changed = full != raw;
        sub.set_filter(full);
        Ok(changed)
    }
}

/// `("$share/<group>/", inner)`, `("$queue/", inner)` or `("", filter)`.
fn split_share(filter: &str) -> (&str, &str) {
    if let Some(rest) = filter.strip_prefix("$share/") {
        if let Some((group, _)) = rest.split_once('/') {
            return filter.split_at("$share/".len() + group.len() + 1);
        }
    } else if filter.starts_with("$queue/") {
        return filter.split_at("$queue/".len());
    }
    ("", filter)
}

impl Module for Rewrite {
    fn name(&self) -> &str {
        "rewrite"
    }

    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        if self.rules.any(Kind::Publish) {
            hooks.on_message_publish(self.clone());
        }
        if self.rules.any(Kind::Subscribe) {
            hooks.on_subscribe(self.clone()).on_unsubscribe(self);
        }
    }
}

impl OnMessagePublish for Rewrite {
    fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow {
        let client = from.client();
        let topic = msg.topic().as_str();
        let to = match self.rules.rewrite(Kind::Publish, topic, &client.client_id, client.username.as_deref()) {
            Rewritten::Unchanged => return PublishFlow::Continue,
            Rewritten::Failed(why) => {
                self.invalid("topic", client, topic, None, why);
                return PublishFlow::Drop(ReasonCode::TopicNameInvalid);
            }
            Rewritten::To(to) => to,
        };
        match TopicName::new(&to) {
            Ok(t) if !t.has_more_levels_than(self.max_levels) => {
                if t != *msg.topic() {
                    self.stats.publish.fetch_add(1, Relaxed);
                    msg.set_topic(t);
                }
                PublishFlow::Continue
            }
            res => {
                let why =
                    res.err().map_or_else(|| "more levels than limits.max_topic_levels".to_string(), |e| e.to_string());
                self.invalid("topic", client, topic, Some(&to), &why);
                PublishFlow::Drop(ReasonCode::TopicNameInvalid)
            }
        }
    }
}

impl OnSubscribe for Rewrite {
    fn subscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow {
        match self.filter(client, sub) {
            Ok(changed) => {
                if changed {
                    self.stats.subscribe.fetch_add(1, Relaxed);
                }
                Flow::Continue
            }
            Err(()) => Flow::Refuse(ReasonCode::TopicFilterInvalid),
        }
    }
}

impl OnUnsubscribe for Rewrite {
    fn unsubscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow {
        match self.filter(client, sub) {
            Ok(changed) => {
                if changed {
                    self.stats.unsubscribe.fetch_add(1, Relaxed);
                }
                Flow::Continue
            }
            Err(()) => Flow::Refuse(ReasonCode::TopicFilterInvalid),
        }
    }
}
