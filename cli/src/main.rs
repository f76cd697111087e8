//! The `portcullis` binary: parses the command line, loads the config,
//! and either runs a subcommand, checks the config, or runs the broker
//! (`portcullis-server`) and its admin API (`portcullis-admin`) until
//! SIGINT/SIGTERM, reloading on SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use portcullis::{cli, Config, Node, Rejected, Signal, Signals};

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
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Talk to the running broker through its admin API (Unix socket of
    /// `[admin] socket`, else HTTP with an API key).
    Ctl(portcullis_admin::ctl::CtlArgs),
    #[command(flatten)]
    Offline(cli::Command),
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
        let checked = portcullis::check(&cfg).and_then(|()| portcullis_admin::check(&cfg));
        return match checked {
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
    if let Some(Command::Ctl(args)) = cli.command {
        return std::process::ExitCode::from(portcullis_admin::ctl::run(args, &cfg));
    }
    if let Some(Command::Offline(cmd)) = cli.command {
        return match cli::run(cmd, &cfg) {
            Ok(code) => std::process::ExitCode::from(code),
            Err(e) => {
                eprintln!("error: {e:#}");
                std::process::ExitCode::from(2)
            }
        };
    }
    portcullis::logging::init(&cfg);
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

async fn run(cfg: Config, path: Option<PathBuf>) -> anyhow::Result<()> {
    // Signal handlers go in before any listener accepts, so a SIGTERM right
    // after startup is a graceful shutdown, not the default action.
    let mut signals = Signals::install()?;
    let node = Node::start(cfg, path).await?;
    let admin = portcullis_admin::start(Arc::clone(&node)).await?;
    while let Signal::Hangup = signals.wait().await {
        let _ = node.reload();
    }
    if let Some(admin) = admin {
        admin.stop().await;
    }
    node.shutdown().await;
    Ok(())
}
