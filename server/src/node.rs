//! A running broker: [`Node::start`] builds it from a [`Config`] (chains,
//! broker, snapshot, listeners, `$SYS`, modules), [`Node::reload`] is what
//! SIGHUP and the management plane's "reload" both do, and
//! [`Node::shutdown`] stops it gracefully. The binary waits for signals
//! in between ([`Signals`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use parking_lot::Mutex;
use portcullis_core::broker::Broker;
use portcullis_core::gate::Gate;
use portcullis_modules::{ModuleSet, ModulesConfig};
use tracing::{info, warn};

use crate::config::Config;
use crate::listener::Listeners;
use crate::security::Security;

/// How often the brute-force guard drops ended bans (and their stored
/// rows) even while nobody connects.
const GUARD_SWEEP: Duration = Duration::from_secs(10);

/// The config is valid TOML with valid values, but what it points to is
/// not usable (a missing password file, a bad ACL line, a certificate that
/// does not load, a backend setting its provider refuses): exit status 2,
/// as for any other rejected config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

impl Rejected {
    /// One line per problem on stderr, each starting with the config file.
    pub fn print(&self, config: Option<&Path>) {
        let origin = config.map_or("<embedded defaults>".to_string(), |p| p.display().to_string());
        for line in self.0.lines() {
            eprintln!("{origin}: {line}");
        }
    }
}

/// `--check-config`: loads what the broker would load at start (bridge
/// passwords and certificates included), short of
/// binding sockets and connecting to backends. Providers are built on a
/// runtime of their own that is dropped as soon as they are: connection
/// pools are lazy, and the reachability probes they spawn never run.
pub fn check(cfg: &Config) -> Result<(), Rejected> {
    let mut problems = Vec::new();
    if let Err(e) = crate::listener::check(&cfg.listeners) {
        problems.push(e);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Rejected(format!("cannot start the runtime: {e}")))?;
    // Built and dropped inside the runtime: some clients clean up on drop.
    if let Err(e) = rt.block_on(async { Security::check(cfg).await.map(drop) }) {
        problems.push(format!("{e:#}"));
    }
    if let Err(e) = portcullis_bridge::prepare(&cfg.bridges) {
        problems.push(e.to_string());
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Rejected(problems.join("\n"))),
    }
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// Password, client id and ACL files and policy directories re-read.
    pub files_reloaded: usize,
    /// Those that failed to load and kept their previous contents.
    pub files_failed: usize,
    /// The config file could not be read or `[modules]` not applied (the
    /// running modules are unchanged).
    pub config_error: Option<String>,
    /// The file changed outside `[modules]`: that takes a restart.
    pub restart_needed: bool,
    /// The modules running after the reload.
    pub modules: Vec<String>,
}

/// The modules running and the `[modules]` they run with: the file's (at
/// start or the last reload) with the run-time switches applied.
struct Running {
    set: ModuleSet,
    cfg: ModulesConfig,
    /// Built-in modules switched at run time since the last reload.
    switched: Vec<&'static str>,
}

/// A built-in module's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleState {
    /// Its `[modules.<name>]` table name.
    pub name: &'static str,
    pub enabled: bool,
    /// Switched at run time since the config file was last read.
    pub switched: bool,
}

/// Why [`Node::switch_module`] did not switch a module (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SwitchError {
    /// Not a built-in module.
    #[error("no built-in module {0:?} (built-in modules: presence, delayed, auto_subscribe, rewrite, webhook)")]
    Unknown(String),
    /// Its settings do not let it run: the key (`modules.webhook.url`) and why.
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// It could not be built for another reason (the broker is stopping).
    #[error("{0}")]
    Failed(String),
}

/// A running broker and everything it was built from.
pub struct Node {
    /// The config it started with (`[modules]` may have changed since).
    pub config: Config,
    /// The file it came from; `None` for the embedded defaults.
    pub path: Option<PathBuf>,
    pub broker: Arc<Broker>,
    pub security: Arc<Security>,
    pub listeners: Listeners,
    modules: Mutex<Running>,
    /// The `[[bridges]]` running; taken at shutdown to wait for them.
    bridges: Mutex<portcullis_bridge::Bridges>,
    /// The durable store (`[persistence] mode = "strict" | "relaxed"`).
    store: Option<Arc<portcullis_store::Store>>,
    /// The cluster (`[cluster] enabled`): the node list for the admin API.
    pub cluster: Option<Arc<portcullis_cluster::Cluster>>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("path", &self.path).field("modules", &self.modules.lock().set.enabled()).finish()
    }
}

impl Node {
    /// Builds and starts the broker. Call it inside the runtime, after
    /// [`Signals::install`] (so that a SIGTERM right after start is a
    /// graceful stop).
    pub async fn start(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<Arc<Node>> {
        let settings = cfg.broker_settings();
        info!(
            version = portcullis_core::broker::VERSION,
            node = %settings.node_name,
            config = %path.as_ref().map_or("<embedded defaults>".to_string(), |p| p.display().to_string()),
            "starting portcullis"
        );
        crate::listener::check(&cfg.listeners).map_err(Rejected)?;
        let security = Arc::new(Security::build(&cfg).await.map_err(|e| Rejected(format!("{e:#}")))?);
        if security.builtin_auth && cfg.listeners.iter().any(|l| l.auth_chain == "default") {
            warn!("no auth provider configured: anonymous clients are admitted from loopback only; others get CONNACK not authorized (3.1.1: 0x05, v5: 0x87)");
        }
        let broker = Broker::new(settings);
        broker.add_metric_source(Arc::clone(&security) as Arc<dyn portcullis_core::metrics::MetricSource>);
        let store = open_store(&cfg, &broker)?;
        if let Some(s) = broker.store() {
            let bans = security.shared.guard.attach_store(Arc::clone(s), broker.take_recovered_bans());
            if bans > 0 {
                info!(bans, "brute-force guard: bans restored from the store");
            }
            // Rows of bans that ended go as the guard finds them ended (at
            // a CONNECT or a scrape); this sweep also deletes them while
            // nobody connects. Ends with the guard.
            let shared = Arc::downgrade(&security.shared);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(GUARD_SWEEP);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(shared) = shared.upgrade() else { return };
                    shared.guard.sweep();
                }
            });
        }
        if let Some(file) = &cfg.persistence.snapshot_file {
            let r = portcullis_core::persist::load(&broker, file).with_context(|| "loading the session snapshot")?;
            info!(file = %file.display(), sessions = r.sessions, messages = r.messages, retained = r.retained, "snapshot restored");
            // A snapshot is used once: after a crash, restoring it again would
            // replay state (and QoS 2 messages) that has moved on since.
            if r != portcullis_core::persist::Restored::default() {
                let used = file.with_extension("restored");
                std::fs::rename(file, &used)
                    .with_context(|| format!("renaming {} after restoring it", file.display()))?;
            }
        }
        // The cluster joins before modules, bridges and listeners: every
        // subscription made from here on is announced to it, the sessions
        // restored above are announced by `set_remote`, and no client
        // publishes before messages can cross to the other nodes.
        let cluster = if cfg.cluster.enabled {
            Some(
                portcullis_cluster::Cluster::start(&cfg.cluster, &broker)
                    .await
                    .map_err(|e| Rejected(format!("cluster: {e}")))?,
            )
        } else {
            None
        };
        // Modules go in before any listener accepts: a client admitted
        // before them would miss their hooks (no auto-subscriptions, topics
        // not rewritten, no presence event).
        let mut modules = ModuleSet::new(&broker, crate::plugins::compiled_in());
        modules.apply(&cfg.modules).map_err(|e| Rejected(e.to_string()))?;
        info!(modules = ?modules.enabled(), "modules");
        let waiting = broker.recovered_delayed_waiting();
        if waiting > 0 {
            warn!(
                messages = waiting,
                "the store holds delayed publishes but [modules.delayed] is off: they stay in the store until it is switched on"
            );
        }
        // Bridges subscribe locally before clients can publish.
        let bridges = portcullis_bridge::start(&broker, &cfg.bridges).map_err(|e| Rejected(e.to_string()))?;
        if !cfg.bridges.is_empty() {
            info!(bridges = ?cfg.bridges.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), "bridges");
        }
        let listeners = Listeners::start(&cfg.listeners, &broker, |l| {
            let gate: Arc<dyn Gate> = Arc::new(security.gateway(&l.auth_chain, &l.acl_chain)?);
            info!(listener = %l.name, auth_chain = %l.auth_chain, acl_chain = %l.acl_chain, "listener chains");
            Ok(gate)
        })
        .await?;
        if let Some(c) = &cluster {
            let addrs = listeners
                .views()
                .into_iter()
                .map(|v| format!("{}:{} {}", v.kind.name(), v.name, v.local_addr.unwrap_or(v.bind)))
                .collect();
            c.members().set_listeners(addrs);
        }
        portcullis_core::sys::spawn(Arc::clone(&broker));
        Ok(Arc::new(Node {
            modules: Mutex::new(Running { set: modules, cfg: cfg.modules.clone(), switched: Vec::new() }),
            config: cfg,
            path,
            broker,
            security,
            listeners,
            bridges: Mutex::new(bridges),
            store,
            cluster,
        }))
    }

    /// What SIGHUP does: password, client id and ACL files, policy
    /// directories and TLS certificates are read again; the config file is
    /// read again and `[modules]` applied (modules switched on or off, or
    /// rebuilt with new settings; connections are not touched). Other
    /// sections need a restart; a change to them is logged.
    pub fn reload(&self) -> ReloadReport {
        let (files_reloaded, files_failed) = self.security.reload();
        self.listeners.reload_certificates();
        let (config_error, restart_needed) = self.reload_modules();
        ReloadReport { files_reloaded, files_failed, config_error, restart_needed, modules: self.modules() }
    }

    /// Applies `[modules]` from the file: the problem if it could not be,
    /// and whether other sections changed (they need a restart).
    fn reload_modules(&self) -> (Option<String>, bool) {
        let Some(path) = &self.path else { return (None, false) };
        let new = match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "reload: config file not reloaded; modules unchanged");
                return (Some(e.to_string()), false);
            }
        };
        let mut modules = self.modules.lock();
        let error = match modules.set.apply(&new.modules) {
            Ok(()) => {
                // The file wins: switches made through the API end here.
                if !modules.switched.is_empty() {
                    info!(undone = ?modules.switched, "reload: modules switched at run time take the config file's setting again");
                }
                modules.cfg = new.modules.clone();
                modules.switched.clear();
                info!(modules = ?modules.set.enabled(), "reload: modules reloaded");
                None
            }
            Err(e) => {
                tracing::error!(error = %e, "reload: modules not reloaded; the running ones are unchanged");
                Some(e.to_string())
            }
        };
        drop(modules);
        let mut others = new;
        others.modules = self.config.modules.clone();
        let restart_needed = others != self.config;
        if restart_needed {
            warn!("reload: the config file changed outside [modules]; those changes take effect at the next start");
        }
        (error, restart_needed)
    }

    /// The modules running now, in hook order.
    pub fn modules(&self) -> Vec<String> {
        self.modules.lock().set.enabled()
    }

    /// Every built-in module: whether it is on, and whether that was
    /// switched at run time ([`Node::switch_module`]) rather than read
    /// from the config file.
    pub fn builtin_modules(&self) -> Vec<ModuleState> {
        let m = self.modules.lock();
        ModulesConfig::BUILTIN
            .iter()
            .map(|name| ModuleState {
                name,
                enabled: m.cfg.is_enabled(name).unwrap_or(false),
                switched: m.switched.contains(name),
            })
            .collect()
    }

    /// Switches the built-in module `name` on or off at run time: the
    /// current `[modules]` with that module's `enabled` flipped goes
    /// through [`ModuleSet::apply`] (the other modules are kept as they
    /// run; connections are not touched). Not written to the file: the
    /// next reload (SIGHUP, `configs/reload`) applies the file's setting
    /// again. A module switched on without a `[modules.<name>]` table
    /// runs with its defaults when those are valid. `by` (the API key, or
    /// the Unix socket) goes to the log.
    pub fn switch_module(&self, name: &str, enable: bool, by: &str) -> Result<ModuleState, SwitchError> {
        let Some(&name) = ModulesConfig::BUILTIN.iter().find(|n| **n == name) else {
            return Err(SwitchError::Unknown(name.to_string()));
        };
        let mut m = self.modules.lock();
        let mut cfg = m.cfg.clone();
        let flag = cfg.enabled_mut(name).ok_or_else(|| SwitchError::Unknown(name.to_string()))?;
        let was = *flag;
        *flag = enable;
        if was != enable {
            if let Some((key, message)) = cfg.validate().into_iter().next() {
                warn!(module = name, enable, by, key = %format!("modules.{key}"), problem = %message, "module not switched: its settings are invalid");
                return Err(SwitchError::Invalid { key: format!("modules.{key}"), message });
            }
            if let Err(e) = m.set.apply(&cfg) {
                warn!(module = name, enable, by, error = %e, "module not switched; the running ones are unchanged");
                return Err(match e {
                    portcullis_modules::set::ModuleError::Config { module, key, message } => {
                        SwitchError::Invalid { key: format!("modules.{module}.{key}"), message }
                    }
                    other => SwitchError::Failed(other.to_string()),
                });
            }
            m.cfg = cfg;
            // Switching it back to the file's value is still a run-time
            // switch: the listing says so until the next reload.
            if !m.switched.contains(&name) {
                m.switched.push(name);
            }
        }
        info!(module = name, enable, changed = was != enable, by, running = ?m.set.enabled(), "module switched at run time (until the next reload)");
        Ok(ModuleState { name, enabled: enable, switched: m.switched.contains(&name) })
    }

    /// Every `[[bridges]]` entry's status and counters, in config order
    /// (none once the node is shutting down).
    pub fn bridges(&self) -> Vec<portcullis_bridge::BridgeStatus> {
        self.bridges.lock().status()
    }

    /// Stops (`false`) or starts (`true`) the bridge `name` (see
    /// [`portcullis_bridge::control`]): `None` when there is no such bridge,
    /// else whether that changed anything.
    pub fn set_bridge_running(&self, name: &str, on: bool) -> Option<bool> {
        self.bridges.lock().get(name).map(|c| c.set_running(on))
    }

    /// Closes listeners and connections (v5 clients get DISCONNECT 0x8B),
    /// waits up to 5 s for them, and writes the snapshot if configured.
    pub async fn shutdown(&self) {
        info!("shutting down: closing listeners and connections");
        self.broker.shutdown();
        self.listeners.stop();
        // The node list shows this node stopped now, not after node_timeout.
        if let Some(c) = &self.cluster {
            c.members().leave().await;
        }
        // Bridges tell their remotes they stop (state 0, DISCONNECT).
        let mut bridges = std::mem::take(&mut *self.bridges.lock());
        let _ = tokio::time::timeout(Duration::from_secs(3), bridges.wait()).await;
        // Give connections a moment to send DISCONNECT 0x8B and flush.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.broker.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // What the connections published is on its way to the other nodes
        // (and the retained bucket): let it reach NATS before the process
        // ends.
        if let Some(cluster) = &self.cluster {
            cluster.flush(portcullis_cluster::routing::FLUSH_TIMEOUT).await;
        }
        if let Some(file) = &self.config.persistence.snapshot_file {
            match portcullis_core::persist::save(&self.broker, file) {
                Ok(n) => info!(file = %file.display(), sessions = n, "snapshot written"),
                Err(e) => tracing::error!(error = %e, "could not write the session snapshot"),
            }
        }
        if let Some(store) = &self.store {
            // Relaxed mode: what was acknowledged goes to disk now.
            let store = Arc::clone(store);
            match tokio::task::spawn_blocking(move || store.flush()).await {
                Ok(Ok(())) => {
                    if let Some(store) = &self.store {
                        let st = store.stats();
                        info!(
                            file = %store.path().display(),
                            group_commits = st.groups,
                            empty_group_commits = st.empty_groups,
                            settled_early = st.settled_early,
                            batches = st.batches,
                            changes = st.changes,
                            failed_group_commits = st.failed_groups,
                            "store flushed (one fsync per group commit)"
                        );
                    }
                }
                Ok(Err(e)) => tracing::error!(error = %e, "could not flush the store"),
                Err(e) => tracing::error!(error = %e, "could not flush the store"),
            }
        }
        info!(remaining = self.broker.metrics.connections.get(), "stopped");
    }
}

/// Opens the durable store (`[persistence] mode` strict or relaxed) and
/// restores what it holds into `broker`. Errors name the file and stop
/// the start (exit status 2): a damaged store is never half-read.
fn open_store(cfg: &Config, broker: &Arc<Broker>) -> anyhow::Result<Option<Arc<portcullis_store::Store>>> {
    use crate::config::PersistenceMode;
    use portcullis_core::durable::SessionStore;
    let p = &cfg.persistence;
    let mode = match p.mode {
        PersistenceMode::Off => return Ok(None),
        PersistenceMode::Strict => portcullis_store::SyncMode::Strict,
        PersistenceMode::Relaxed => portcullis_store::SyncMode::Relaxed,
    };
    let mut sc = portcullis_store::StoreConfig::new(&p.dir);
    sc.mode = mode;
    sc.sync_interval = p.relaxed_window;
    let started = std::time::Instant::now();
    let store = portcullis_store::Store::open(sc).map_err(|e| Rejected(format!("persistence: {e}")))?;
    let recovered = store.recover().map_err(|e| Rejected(format!("persistence: {}: {e}", store.path().display())))?;
    let store = Arc::new(store);
    let (sessions, messages, retained) =
        broker.restore_from_store(Arc::clone(&store) as Arc<dyn SessionStore>, recovered);
    info!(
        file = %store.path().display(),
        mode = ?p.mode,
        sessions,
        messages,
        retained,
        expired = store.stats().expired_at_recovery,
        ms = started.elapsed().as_millis() as u64,
        "store opened and restored"
    );
    Ok(Some(store))
}

/// SIGTERM and SIGINT (stop) and SIGHUP (reload), registered once at startup.
#[derive(Debug)]
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Stop,
    Hangup,
}

impl Signals {
    pub fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    pub async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { info!("SIGTERM received"); Signal::Stop }
            _ = self.int.recv() => { info!("SIGINT received"); Signal::Stop }
            _ = self.hup.recv() => { info!("SIGHUP received: reloading password, client id and ACL files, policy directories, TLS certificates and [modules]"); Signal::Hangup }
        }
    }
}
