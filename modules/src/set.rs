//! `[modules]` and the set of running modules.
//!
//! [`ModuleSet::apply`] is called at start and on every reload: it builds
//! each enabled module whose settings changed (or that was off), keeps
//! those whose settings did not (their state — queued webhooks, delayed
//! messages — carries on), drops the disabled ones, and installs the hooks
//! of all of them, in a fixed order, with one swap. Connections are not
//! touched. The delayed-publish module is kept even when its settings
//! changed (it takes the new bounds in place), so the messages it holds
//! keep their deadlines.

use std::sync::{Arc, Weak};

use portcullis_core::broker::Broker;
use portcullis_core::hooks::{HookSetBuilder, Module};
use serde::Deserialize;

use crate::auto_subscribe::{AutoSubscribe, AutoSubscribeConfig, AutoSubscribeStats};
use crate::delayed::sys::DelayedSys;
use crate::delayed::{Delayed, DelayedConfig};
use crate::presence::{Presence, PresenceConfig};
use crate::rewrite::{Rewrite, RewriteConfig, RewriteStats};
use crate::webhook::{Webhook, WebhookConfig};

/// `[modules]`: one table per module.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesConfig {
    /// `[modules.presence]`
    #[serde(default)]
    pub presence: PresenceConfig,
    /// `[modules.delayed]`
    #[serde(default)]
    pub delayed: DelayedConfig,
    /// `[modules.auto_subscribe]`
    #[serde(default)]
    pub auto_subscribe: AutoSubscribeConfig,
    /// `[modules.rewrite]`
    #[serde(default)]
    pub rewrite: RewriteConfig,
    /// `[modules.webhook]`
    #[serde(default)]
    pub webhook: WebhookConfig,
}

impl ModulesConfig {
    /// Checks what a type cannot say: `(key under modules., problem)` for
    /// each problem, empty when the settings are fine. Pure: files and
    /// networks are looked at when the modules are built.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.presence.qos > 1 {
            out.push(("presence.qos".to_string(), format!("must be 0 or 1, got {}", self.presence.qos)));
        }
        out.extend(self.delayed.validate());
        out.extend(self.auto_subscribe.validate());
        out.extend(self.rewrite.validate());
        out.extend(self.webhook.validate().into_iter().map(|(k, m)| (format!("webhook.{k}"), m)));
        out
    }
}

impl ModulesConfig {
    /// The built-in modules, by their `[modules.<name>]` table names.
    pub const BUILTIN: [&'static str; 5] = ["presence", "delayed", "auto_subscribe", "rewrite", "webhook"];

    /// Whether the built-in module `name` is switched on; `None` for a
    /// name that is not one.
    pub fn is_enabled(&self, name: &str) -> Option<bool> {
        match name {
            "presence" => Some(self.presence.enabled),
            "delayed" => Some(self.delayed.enabled),
            "auto_subscribe" => Some(self.auto_subscribe.enabled),
            "rewrite" => Some(self.rewrite.enabled),
            "webhook" => Some(self.webhook.enabled),
            _ => None,
        }
    }

    /// The `enabled` flag of the built-in module `name`; `None` for a name
    /// that is not one.
    pub fn enabled_mut(&mut self, name: &str) -> Option<&mut bool> {
        match name {
            "presence" => Some(&mut self.presence.enabled),
            "delayed" => Some(&mut self.delayed.enabled),
            "auto_subscribe" => Some(&mut self.auto_subscribe.enabled),
            "rewrite" => Some(&mut self.rewrite.enabled),
            "webhook" => Some(&mut self.webhook.enabled),
            _ => None,
        }
    }
}

/// Why a module could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum ModuleError {
    /// A setting is wrong: the key under `modules.<name>` and why.
    #[error("modules.{module}.{key}: {message}")]
    Config { module: &'static str, key: String, message: String },
    /// The broker is gone (shutting down).
    #[error("the broker is shutting down")]
    NoBroker,
    /// Built outside a tokio runtime (a module with a task needs one).
    #[error("modules must be built inside the tokio runtime")]
    NoRuntime,
}

/// A module with the settings it was built from.
#[derive(Debug)]
struct Slot<C, M> {
    cfg: C,
    module: Arc<M>,
}

impl<C: Clone, M> Clone for Slot<C, M> {
    fn clone(&self) -> Self {
        Slot { cfg: self.cfg.clone(), module: Arc::clone(&self.module) }
    }
}

/// The running instance when its settings are `cfg`, a new one otherwise;
/// none when disabled. `old` is left as it is, so a later error changes
/// nothing.
fn keep_or_build<C: PartialEq + Clone, M>(
    old: &Option<Slot<C, M>>,
    cfg: &C,
    enabled: bool,
    build: impl FnOnce(&C) -> Result<M, ModuleError>,
) -> Result<Option<Slot<C, M>>, ModuleError> {
    if !enabled {
        return Ok(None);
    }
    match old {
        Some(s) if s.cfg == *cfg => Ok(Some(s.clone())),
        _ => Ok(Some(Slot { cfg: cfg.clone(), module: Arc::new(build(cfg)?) })),
    }
}

/// The modules running now (see the module docs).
pub struct ModuleSet {
    broker: Weak<Broker>,
    presence: Option<Slot<PresenceConfig, Presence>>,
    delayed: Option<Slot<DelayedConfig, Delayed>>,
    /// The delayed module's `$SYS` source: registered with the broker the
    /// first time the module is on, then pointed at each new instance.
    delayed_sys: Option<Arc<DelayedSys>>,
    rewrite: Option<Slot<RewriteConfig, Rewrite>>,
    auto_subscribe: Option<Slot<AutoSubscribeConfig, AutoSubscribe>>,
    /// Counters that outlive a rebuild (published under `$SYS`).
    rewrite_stats: Arc<RewriteStats>,
    auto_subscribe_stats: Arc<AutoSubscribeStats>,
    webhook: Option<Slot<WebhookConfig, Webhook>>,
    /// Compiled-in third-party modules: always on, after the built-in ones.
    plugins: Vec<Arc<dyn Module>>,
}

impl std::fmt::Debug for ModuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleSet").field("enabled", &self.enabled()).finish()
    }
}

impl ModuleSet {
    /// No module running yet; `plugins` are the compiled-in extra ones.
    pub fn new(broker: &Arc<Broker>, plugins: Vec<Arc<dyn Module>>) -> ModuleSet {
        let rewrite_stats = Arc::new(RewriteStats::default());
        let auto_subscribe_stats = Arc::new(AutoSubscribeStats::default());
        broker.add_metric_source(rewrite_stats.clone());
        broker.add_metric_source(auto_subscribe_stats.clone());
        ModuleSet {
            broker: Arc::downgrade(broker),
            presence: None,
            delayed: None,
            delayed_sys: None,
            rewrite: None,
            auto_subscribe: None,
            rewrite_stats,
            auto_subscribe_stats,
            webhook: None,
            plugins,
        }
    }

    /// Names of the modules running, in hook order.
    pub fn enabled(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.presence.is_some() {
            out.push("presence".to_string());
        }
        if self.rewrite.is_some() {
            out.push("rewrite".to_string());
        }
        if self.delayed.is_some() {
            out.push("delayed".to_string());
        }
        if self.auto_subscribe.is_some() {
            out.push("auto_subscribe".to_string());
        }
        if self.webhook.is_some() {
            out.push("webhook".to_string());
        }
        out.extend(self.plugins.iter().map(|p| p.name().to_string()));
        out
    }

    /// Brings the running modules in line with `cfg` and installs their
    /// hooks (see the module docs). On error nothing changes.
    pub fn apply(&mut self, cfg: &ModulesConfig) -> Result<(), ModuleError> {
        let broker = self.broker.upgrade().ok_or(ModuleError::NoBroker)?;
        // Every module is built (or kept) before anything is replaced.
        let presence =
            keep_or_build(&self.presence, &cfg.presence, cfg.presence.enabled, |c| Ok(Presence::new(&broker, c)))?;
        let rewrite = keep_or_build(&self.rewrite, &cfg.rewrite, cfg.rewrite.enabled, |c| {
            Rewrite::new(&broker, c, Arc::clone(&self.rewrite_stats))
        })?;
        let auto_subscribe =
            keep_or_build(&self.auto_subscribe, &cfg.auto_subscribe, cfg.auto_subscribe.enabled, |c| {
                AutoSubscribe::new(&broker, c, Arc::clone(&self.auto_subscribe_stats))
            })?;
        // Delayed publish: a running instance is kept even when its
        // settings changed (it takes the new bounds, below), so the
        // messages it holds keep their deadlines; a new one only when it
        // was off.
        let new_delayed = match (&self.delayed, cfg.delayed.enabled) {
            (_, false) | (Some(_), true) => None,
            (None, true) => {
                let sys = self.delayed_sys.get_or_insert_with(|| {
                    let s = Arc::new(DelayedSys::default());
                    broker.add_metric_source(Arc::clone(&s) as Arc<dyn portcullis_core::metrics::MetricSource>);
                    s
                });
                Some(Arc::new(Delayed::new(&broker, &cfg.delayed, sys.stats())?))
            }
        };

        // A rebuilt webhook takes over its predecessor's queue.
        let previous = self.webhook.as_ref().map(|s| &*s.module);
        let webhook =
            keep_or_build(&self.webhook, &cfg.webhook, cfg.webhook.enabled, |c| Webhook::new(&broker, c, previous))?;

        // Everything is built: from here on nothing fails.
        self.presence = presence;
        self.rewrite = rewrite;
        self.auto_subscribe = auto_subscribe;
        self.webhook = webhook;
        self.delayed = match (self.delayed.take(), new_delayed) {
            (_, Some(module)) => Some(Slot { cfg: cfg.delayed.clone(), module }),
            (Some(s), None) if cfg.delayed.enabled => {
                if s.cfg != cfg.delayed {
                    s.module.reconfigure(&cfg.delayed);
                }
                Some(Slot { cfg: cfg.delayed.clone(), module: s.module })
            }
            // Switched off: what it holds goes (from the store too); the
            // instance is dropped with the hook set it was in.
            (Some(s), None) => {
                s.module.switched_off();
                None
            }
            (None, None) => None,
        };
        if let (Some(s), Some(sys)) = (&self.delayed, &self.delayed_sys) {
            sys.point_at(&s.module);
        }

        let mut hooks = HookSetBuilder::new();
        if let Some(s) = &self.presence {
            hooks.module(s.module.clone());
        }
        // Rewrite before the modules that read topics (auto-subscribe's
        // filters pass the subscribe hooks, so rewrite rules apply to
        // them; a `$delayed/…` topic is seen by rewrite rules as published,
        // and the delayed module takes the message, ending the walk).
        if let Some(s) = &self.rewrite {
            hooks.module(s.module.clone());
        }
        if let Some(s) = &self.delayed {
            hooks.module(s.module.clone());
        }
        if let Some(s) = &self.auto_subscribe {
            hooks.module(s.module.clone());
        }
        // Last of the built-in modules: it sees what the others rewrote.
        if let Some(s) = &self.webhook {
            hooks.module(s.module.clone());
        }
        for p in &self.plugins {
            hooks.module(Arc::clone(p));
        }
        broker.hooks.install(hooks.build());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ModulesConfig;

    /// Every built-in name has a flag that reads back what was written;
    /// other names (and the compiled-in ones) have none.
    #[test]
    fn every_builtin_module_has_an_enabled_flag() {
        let mut cfg = ModulesConfig::default();
        for name in ModulesConfig::BUILTIN {
            for value in [true, false] {
                *cfg.enabled_mut(name).expect(name) = value;
                assert_eq!(cfg.is_enabled(name), Some(value), "{name}");
            }
        }
        assert_eq!(cfg.is_enabled("nope"), None);
        assert!(cfg.enabled_mut("Presence").is_none(), "names are exact");
    }
}
