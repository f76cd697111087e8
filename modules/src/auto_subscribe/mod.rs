//! Auto-subscribe: subscriptions a client gets on connect, from templates
//! (`clients/${clientid}/inbox`), as in emqttd's `emqttd_mod_subscription`
//! and EMQX's auto-subscribe.
//!
//! On [`ClientConnected`] the module renders each template for the client
//! ([`crate::template`]: a client without a username gets nothing from a
//! template that names `${username}`; a client id or username that would
//! leave its level or widen the filter gets nothing either) and, in a task
//! of its own so the connection never waits, takes each resulting filter
//! as the client's own SUBSCRIBE would ([`subscribe`]): subscribe hooks,
//! limits, then the ACL of the client's listener through the event's gate.
//! A denied template is logged (paced) and counted, and the others go on;
//! the connection is not touched. Templates are tried in order and stop
//! once the connection has gone.
//!
//! Bounded: at most `max_pending` connects are being worked on at once (a
//! connect beyond gets no auto-subscriptions, counted as `overloaded`);
//! each holds the client's info and a few `Arc`s. Counters under
//! `$SYS/brokers/<node>/modules/auto_subscribe/`: `subscribed`, `denied`,
//! `refused` (a hook, the filter or a limit), `skipped` (nothing rendered
//! for the client), `overloaded`, `abandoned` (the client left first).

mod config;
mod subscribe;
#[cfg(test)]
mod tests;

pub use config::{AutoSubscribeConfig, TopicTemplate};

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Weak};

use portcullis_core::broker::Broker;
use portcullis_core::codec::SubscriptionOptions;
use portcullis_core::gate::{ClientInfo, Gate};
use portcullis_core::hooks::{ClientConnected, HookSetBuilder, Module, OnClientConnected};
use portcullis_core::logsafe::{LogLimiter, Peer};
use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};
use portcullis_core::session::Session;
use tracing::{debug, warn};

use crate::set::ModuleError;
use crate::template::Template;
use subscribe::Outcome;

/// Refusal log lines per second at most (the rest are counted in the next
/// line's `suppressed`).
const LOG_LINES_PER_SEC: u32 = 10;

/// The module's counters, kept across rebuilds (one set per broker).
#[derive(Debug, Default)]
pub struct AutoSubscribeStats {
    subscribed: AtomicU64,
    denied: AtomicU64,
    refused: AtomicU64,
    skipped: AtomicU64,
    overloaded: AtomicU64,
    abandoned: AtomicU64,
}

impl AutoSubscribeStats {
    /// `(name, value)` of every counter.
    pub fn values(&self) -> [(&'static str, u64); 6] {
        [
            ("subscribed", self.subscribed.load(Relaxed)),
            ("denied", self.denied.load(Relaxed)),
            ("refused", self.refused.load(Relaxed)),
            ("skipped", self.skipped.load(Relaxed)),
            ("overloaded", self.overloaded.load(Relaxed)),
            ("abandoned", self.abandoned.load(Relaxed)),
        ]
    }
}

/// `portcullis_auto_subscribe_total{outcome}`; `$SYS`
/// `modules/auto_subscribe/<outcome>`.
pub static AUTO_SUBSCRIBE: Family = Family {
    name: "auto_subscribe",
    help: "Auto-subscriptions by outcome (subscribed, denied, refused, skipped, overloaded, abandoned).",
    kind: Kind::Counter,
    labels: &["outcome"],
    sys: Some("modules/auto_subscribe/{outcome}"),
    sys_total: None,
};

impl MetricSource for AutoSubscribeStats {
    fn collect(&self, out: &mut Scrape) {
        for (name, v) in self.values() {
            out.add(&AUTO_SUBSCRIBE, &[name], v);
        }
    }
}

/// A template with the options it subscribes with.
#[derive(Debug)]
struct Entry {
    template: Template,
    options: SubscriptionOptions,
}

/// The auto-subscribe module.
#[derive(Debug)]
pub struct AutoSubscribe {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    broker: Weak<Broker>,
    entries: Vec<Entry>,
    max_pending: usize,
    /// Connects being worked on now.
    pending: AtomicUsize,
    stats: Arc<AutoSubscribeStats>,
    log: LogLimiter,
}

impl AutoSubscribe {
    /// Builds the module from validated settings.
    pub fn new(
        broker: &Arc<Broker>,
        cfg: &AutoSubscribeConfig,
        stats: Arc<AutoSubscribeStats>,
    ) -> Result<AutoSubscribe, ModuleError> {
        let mut entries = Vec::with_capacity(cfg.topics.len());
        for (i, t) in cfg.topics.iter().enumerate() {
            let bad = |key: &str, message: String| ModuleError::Config {
                module: "auto_subscribe",
                key: format!("topics[{i}].{key}"),
                message,
            };
            let template = Template::parse(&t.topic, false).map_err(|e| bad("topic", e.to_string()))?;
            let options = t.options().ok_or_else(|| bad("qos", "qos and retain_handling must be 0, 1 or 2".into()))?;
            entries.push(Entry { template, options });
        }
        Ok(AutoSubscribe {
            inner: Arc::new(Inner {
                broker: Arc::downgrade(broker),
                entries,
                max_pending: cfg.max_pending.max(1),
                pending: AtomicUsize::new(0),
                stats,
                log: LogLimiter::new(LOG_LINES_PER_SEC),
            }),
        })
    }
}

impl Module for AutoSubscribe {
    fn name(&self) -> &str {
        "auto_subscribe"
    }

    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        // No templates, no hook: a connect costs nothing.
        if !self.inner.entries.is_empty() {
            hooks.on_client_connected(self);
        }
    }
}

impl OnClientConnected for AutoSubscribe {
    fn client_connected(&self, ev: &ClientConnected<'_>) {
        let inner = &self.inner;
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        if inner.pending.fetch_add(1, Relaxed) >= inner.max_pending {
            inner.pending.fetch_sub(1, Relaxed);
            inner.stats.overloaded.fetch_add(1, Relaxed);
            if let Some(suppressed) = inner.log.allow() {
                warn!(
                    client_id = %Peer(&ev.client.client_id),
                    max_pending = inner.max_pending,
                    suppressed,
                    "auto-subscribe: too many connects being worked on; this one gets no subscriptions (modules.auto_subscribe.max_pending)"
                );
            }
            return;
        }
        let job = Job {
            inner: Arc::clone(inner),
            client: ev.client.clone(),
            gate: Arc::clone(ev.gate),
            session: Arc::clone(ev.session),
        };
        rt.spawn(job.run());
    }
}

/// One connect's auto-subscriptions; its slot in `pending` is given back
/// when it is dropped (finished or not).
struct Job {
    inner: Arc<Inner>,
    client: ClientInfo,
    gate: Arc<dyn Gate>,
    session: Arc<Session>,
}

impl Drop for Job {
    fn drop(&mut self) {
        self.inner.pending.fetch_sub(1, Relaxed);
    }
}

impl Job {
    async fn run(self) {
        let (inner, client) = (&*self.inner, &self.client);
        for (i, e) in inner.entries.iter().enumerate() {
            let Some(broker) = inner.broker.upgrade() else { return };
            if !self.session.is_attached_to(client.conn_id) {
                inner.stats.abandoned.fetch_add((inner.entries.len() - i) as u64, Relaxed);
                return;
            }
            let raw = match e.template.render(&client.client_id, client.username.as_deref(), |_| "") {
                Ok(raw) => raw,
                Err(why) => {
                    inner.stats.skipped.fetch_add(1, Relaxed);
                    debug!(client_id = %Peer(&client.client_id), template = i, why = why.as_str(), "auto-subscribe: template skipped");
                    continue;
                }
            };
            let mut options = e.options;
            // MQTT 3.x: a message forwarded on an established subscription
            // carries retain 0 (3.1.1 §3.3.1.3); the other options are the
            // broker's own choices and apply to every version.
            options.retain_as_published &= client.protocol.is_v5();
            match subscribe::subscribe(&broker, &*self.gate, client, &self.session, raw, options).await {
                Outcome::Subscribed { filter, retained } => {
                    inner.stats.subscribed.fetch_add(1, Relaxed);
                    debug!(client_id = %Peer(&client.client_id), filter = %Peer(&filter), retained, "auto-subscribed");
                }
                Outcome::Denied { filter } => {
                    inner.stats.denied.fetch_add(1, Relaxed);
                    if let Some(suppressed) = inner.log.allow() {
                        warn!(
                            client_id = %Peer(&client.client_id),
                            filter = %Peer(&filter),
                            template = i,
                            suppressed,
                            "auto-subscribe: denied by the ACL; not subscribed"
                        );
                    }
                }
                Outcome::Refused { filter, why } => {
                    inner.stats.refused.fetch_add(1, Relaxed);
                    if let Some(suppressed) = inner.log.allow() {
                        warn!(
                            client_id = %Peer(&client.client_id),
                            filter = %Peer(&filter),
                            template = i,
                            why,
                            suppressed,
                            "auto-subscribe: refused; not subscribed"
                        );
                    }
                }
            }
        }
    }
}
