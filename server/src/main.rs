//! The `portcullis` binary: loads the config, starts the listeners and the
//! `$SYS` publisher, and shuts down gracefully on SIGINT/SIGTERM.
//!
//! * `config` — the TOML file, its validation and the embedded defaults.
//! * `listener` — accept loops, one per configured listener: TCP, TLS,
//!   WebSocket, secure WebSocket, PROXY protocol.
//! * `security` — builds the auth/ACL chains, caches and guard from the
//!   config; `gateway` — the core's `Gate` over them.
//! * `cli` — `passwd`, `auth check`, `acl explain`; `users_cli` — the
//!   built-in user store offline (`users …`, `acl add|del|list`).
//! * `plugins` — compiled-in third-party modules (the built-in ones are
//!   `portcullis-modules`, applied from `[modules]` at start and on SIGHUP).

mod cli;
mod config;
mod gateway;
mod listener;
mod plugins;
mod security;
mod users_cli;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use portcullis_core::broker::Broker;
use portcullis_core::gate::Gate;
use portcullis_modules::ModuleSet;
use tracing::{info, warn};

use crate::config::{Config, LogFormat};

/// Portcullis MQTT broker.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Config file (TOML). Without it the broker runs on safe embedded
    /// defaults: one TCP listener on 0.0.0.0:1883 admitting anonymous
    /// clients from loopback only.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config file and load what it points to (password,
    /// ACL and client id files, policy directories, TLS certificates and
    /// keys, built-in user stores, backend settings; no network connection
    /// is made and no file is created), print the problems found, and
    /// exit: 0 when the broker would start on it, 2 when not.
    #[arg(long)]
    check_config: bool,
    #[command(subcommand)]
    command: Option<cli::Command>,
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PORTCULLIS_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cfg.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let cfg = match &cli.config {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return std::process::ExitCode::from(2);
            }
        },
        None => Config::embedded(),
    };
    if cli.check_config {
        return match check(&cfg) {
            Ok(()) => {
                println!("config OK");
                std::process::ExitCode::SUCCESS
            }
            Err(rejected) => {
                rejected.print(cli.config.as_deref());
                std::process::ExitCode::from(2)
            }
        };
    }
    if let Some(cmd) = cli.command {
        return match cli::run(cmd, &cfg) {
            Ok(code) => std::process::ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    init_logging(&cfg);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let config_path = cli.config.clone();
    match rt.block_on(run(cfg, cli.config)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => match e.downcast_ref::<Rejected>() {
            Some(rejected) => {
                rejected.print(config_path.as_deref());
                std::process::ExitCode::from(2)
            }
            None => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

/// SIGHUP: the config file is read again and `[modules]` applied (modules
/// switched on or off, or rebuilt with new settings; connections are not
/// touched). Other sections need a restart; a change to them is logged.
fn reload_modules(modules: &mut ModuleSet, running: &Config, path: Option<&std::path::Path>) {
    let Some(path) = path else { return };
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "SIGHUP: config file not reloaded; modules unchanged");
            return;
        }
    };
    match modules.apply(&new.modules) {
        Ok(()) => info!(modules = ?modules.enabled(), "SIGHUP: modules reloaded"),
        Err(e) => tracing::error!(error = %e, "SIGHUP: modules not reloaded; the running ones are unchanged"),
    }
    let mut others = new;
    others.modules = running.modules.clone();
    if others != *running {
        warn!("SIGHUP: the config file changed outside [modules]; those changes take effect at the next start");
    }
}

/// The config is valid TOML with valid values, but what it points to is
/// not usable (a missing password file, a bad ACL line, a certificate that
/// does not load, a backend setting its provider refuses): exit status 2,
/// as for any other rejected config.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Rejected(String);

impl Rejected {
    /// One line per problem on stderr, each starting with the config file.
    fn print(&self, config: Option<&std::path::Path>) {
        let origin = config.map_or("<embedded defaults>".to_string(), |p| p.display().to_string());
        for line in self.0.lines() {
            eprintln!("{origin}: {line}");
        }
    }
}

/// `--check-config`: loads what the broker would load at start, short of
/// binding sockets and connecting to backends. Providers are built on a
/// runtime of their own that is dropped as soon as they are: connection
/// pools are lazy, and the reachability probes they spawn never run.
fn check(cfg: &Config) -> Result<(), Rejected> {
    let mut problems = Vec::new();
    if let Err(e) = listener::check(&cfg.listeners) {
        problems.push(e);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Rejected(format!("cannot start the runtime: {e}")))?;
    // Built and dropped inside the runtime: some clients clean up on drop.
    if let Err(e) = rt.block_on(async { security::Security::check(cfg).await.map(drop) }) {
        problems.push(format!("{e:#}"));
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Rejected(problems.join("\n"))),
    }
}

async fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    let settings = cfg.broker_settings();
    info!(
        version = portcullis_core::broker::VERSION,
        node = %settings.node_name,
        config = %path.as_ref().map_or("<embedded defaults>".to_string(), |p| p.display().to_string()),
        "starting portcullis"
    );
    listener::check(&cfg.listeners).map_err(Rejected)?;
    let security = Arc::new(security::Security::build(&cfg).await.map_err(|e| Rejected(format!("{e:#}")))?);
    if security.builtin_auth && cfg.listeners.iter().any(|l| l.auth_chain == "default") {
        warn!("no auth provider configured: anonymous clients are admitted from loopback only; others get CONNACK not authorized (3.1.1: 0x05, v5: 0x87)");
    }
    let broker = Broker::new(settings);
    broker.add_sys_source(Arc::clone(&security) as Arc<dyn portcullis_core::broker::SysSource>);
    if let Some(file) = &cfg.persistence.snapshot_file {
        let r = portcullis_core::persist::load(&broker, file).with_context(|| "loading the session snapshot")?;
        info!(file = %file.display(), sessions = r.sessions, messages = r.messages, retained = r.retained, "snapshot restored");
        // A snapshot is used once: after a crash, restoring it again would
        // replay state (and QoS 2 messages) that has moved on since.
        if r != portcullis_core::persist::Restored::default() {
            let used = file.with_extension("restored");
            std::fs::rename(file, &used).with_context(|| format!("renaming {} after restoring it", file.display()))?;
        }
    }

    // Signal handlers go in before any listener accepts, so a SIGTERM right
    // after startup is a graceful shutdown, not the default action.
    let mut signals = Signals::install()?;
    let listeners = listener::Listeners::start(&cfg.listeners, &broker, |l| {
        let gate: Arc<dyn Gate> = Arc::new(security.gateway(&l.auth_chain, &l.acl_chain)?);
        info!(listener = %l.name, auth_chain = %l.auth_chain, acl_chain = %l.acl_chain, "listener chains");
        Ok(gate)
    })
    .await?;
    portcullis_core::sys::spawn(Arc::clone(&broker));
    let mut modules = ModuleSet::new(&broker, plugins::compiled_in());
    modules.apply(&cfg.modules).map_err(|e| Rejected(e.to_string()))?;
    info!(modules = ?modules.enabled(), "modules");

    while let Signal::Hangup = signals.wait().await {
        security.reload();
        listeners.reload_certificates();
        reload_modules(&mut modules, &cfg, path.as_deref());
    }
    info!("shutting down: closing listeners and connections");
    broker.shutdown();
    listeners.stop();
    // Give connections a moment to send DISCONNECT 0x8B and flush.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while broker.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if let Some(file) = &cfg.persistence.snapshot_file {
        match portcullis_core::persist::save(&broker, file) {
            Ok(n) => info!(file = %file.display(), sessions = n, "snapshot written"),
            Err(e) => tracing::error!(error = %e, "could not write the session snapshot"),
        }
    }
    info!(remaining = broker.metrics.connections.get(), "stopped");
    Ok(())
}

/// SIGTERM and SIGINT (stop) and SIGHUP (reload), registered once at startup.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

enum Signal {
    Stop,
    Hangup,
}

impl Signals {
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn wait(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { info!("SIGTERM received"); Signal::Stop }
            _ = self.int.recv() => { info!("SIGINT received"); Signal::Stop }
            _ = self.hup.recv() => { info!("SIGHUP received: reloading password, client id and ACL files, policy directories and TLS certificates"); Signal::Hangup }
        }
    }
}
