//! `[modules]` and the set of running modules.
//!
//! [`ModuleSet::apply`] is called at start and on every reload: it builds
//! each enabled module whose settings changed (or that was off), keeps
//! those whose settings did not (their state — queued webhooks, delayed
//! messages — carries on), drops the disabled ones, and installs the hooks
//! of all of them, in a fixed order, with one swap. Connections are not
//! touched.

use std::sync::{Arc, Weak};

use portcullis_core::broker::Broker;
use portcullis_core::hooks::{HookSetBuilder, Module};
use serde::Deserialize;

use crate::presence::{Presence, PresenceConfig};
use crate::webhook::{Webhook, WebhookConfig};

/// `[modules]`: one table per module.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModulesConfig {
    /// `[modules.presence]`
    #[serde(default)]
    pub presence: PresenceConfig,
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
        out.extend(self.webhook.validate().into_iter().map(|(k, m)| (format!("webhook.{k}"), m)));
        out
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
        ModuleSet { broker: Arc::downgrade(broker), presence: None, webhook: None, plugins }
    }

    /// Names of the modules running, in hook order.
    pub fn enabled(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.presence.is_some() {
            out.push("presence".to_string());
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
        // A rebuilt webhook takes over its predecessor's queue.
        let previous = self.webhook.as_ref().map(|s| &*s.module);
        let webhook =
            keep_or_build(&self.webhook, &cfg.webhook, cfg.webhook.enabled, |c| Webhook::new(&broker, c, previous))?;
        self.presence = presence;
        self.webhook = webhook;

        let mut hooks = HookSetBuilder::new();
        if let Some(s) = &self.presence {
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
