//! Portcullis bridges out: the broker as a client of remote MQTT brokers
//! (Mosquitto, EMQX, another Portcullis…), with Mosquitto's topic rules.
//!
//! * [`config`] — `[[bridges]]` as written, and its pure validation.
//! * [`rule`] — a `topic` rule and the topic mapping between the brokers.
//! * [`link`] — MQTT packets over a stream, client side, on the core's codec.
//! * [`local`] — the bridge's own session on the local broker (an MQTT 5
//!   client over an in-process pipe), through which messages go out.
//! * [`remote`] — TCP/TLS, CONNECT (with the state `0` as will) and the
//!   incoming rules' SUBSCRIBE on the remote.
//! * `run` — each bridge's task: reconnects with jittered backoff, the
//!   bounded outgoing queue, QoS flows, the state topic.
//! * [`metrics`] — per-bridge counters, in `$SYS/brokers/<node>/bridges/<name>/`.
//! * [`control`] — each bridge's status and its stop/start switch, for
//!   the management plane (`/api/v5/bridges`, `portcullis ctl bridges`).
//!
//! The MQTT client is the project's own codec rather than a client crate:
//! rumqttc speaks 3.1.1 and 5 only (no 3.1) and cannot set the bridge bit
//! in the protocol level, which Mosquitto and RSMB need to treat the
//! connection as a bridge (No Local on 3.x, so `both` does not loop).

pub mod config;
pub mod control;
pub mod link;
pub mod local;
pub mod metrics;
pub mod remote;
pub mod rule;
mod run;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use tokio::task::JoinHandle;

pub use config::{validate_all, BridgeConfig};
pub use control::{BridgeStatus, Control};
pub use metrics::BridgeMetrics;

/// Why the bridges could not be built (a secret or a certificate file);
/// the key is under `bridges[<index>]`.
#[derive(Debug, thiserror::Error)]
#[error("bridges[{index}].{key}: {message}")]
pub struct BridgeError {
    pub index: usize,
    pub key: &'static str,
    pub message: String,
}

/// The running bridges.
#[derive(Debug, Default)]
pub struct Bridges {
    pub metrics: Vec<(String, Arc<BridgeMetrics>)>,
    /// Each bridge's status and switch, in config order.
    pub controls: Vec<Arc<Control>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Bridges {
    /// Every bridge's status, in config order.
    pub fn status(&self) -> Vec<BridgeStatus> {
        self.controls.iter().map(|c| c.status()).collect()
    }

    /// The bridge named `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Control>> {
        self.controls.iter().find(|c| c.name == name)
    }

    /// Waits (bounded by the caller) until every bridge task has ended:
    /// after [`Broker::shutdown`] they send their state `0` and DISCONNECT.
    pub async fn wait(&mut self) {
        for t in self.tasks.drain(..) {
            let _ = t.await;
        }
    }
}

fn password(cfg: &BridgeConfig, index: usize) -> Result<Option<Bytes>, BridgeError> {
    if let Some(var) = &cfg.password_env {
        let v = std::env::var(var).map_err(|_| BridgeError {
            index,
            key: "password_env",
            message: format!("environment variable {var} is not set"),
        })?;
        return Ok(Some(Bytes::from(v)));
    }
    if let Some(file) = &cfg.password_file {
        let v = std::fs::read_to_string(file).map_err(|e| BridgeError {
            index,
            key: "password_file",
            message: format!("cannot read {}: {e}", file.display()),
        })?;
        return Ok(Some(Bytes::from(v.trim_end_matches(['\n', '\r']).to_string())));
    }
    Ok(None)
}

/// What a bridge needs besides its config: its password and TLS client
/// settings, read from the environment and files.
pub struct Prepared {
    cfg: BridgeConfig,
    password: Option<Bytes>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prepared").field("name", &self.cfg.name).field("tls", &self.tls.is_some()).finish()
    }
}

/// Reads every bridge's secrets and certificates (no network): what
/// `--check-config` runs, and the first half of [`start`].
pub fn prepare(configs: &[BridgeConfig]) -> Result<Vec<Prepared>, BridgeError> {
    let mut built = Vec::new();
    for (index, cfg) in configs.iter().enumerate() {
        let password = password(cfg, index)?;
        let tls = match &cfg.tls {
            None => None,
            Some(t) => Some(remote::tls_connector(t).map_err(|message| BridgeError { index, key: "tls", message })?),
        };
        built.push(Prepared { cfg: cfg.clone(), password, tls });
    }
    Ok(built)
}

/// Reads every bridge's secrets and certificates, then starts them (each
/// a task). Nothing starts unless all of them can.
pub fn start(broker: &Arc<Broker>, configs: &[BridgeConfig]) -> Result<Bridges, BridgeError> {
    let built = prepare(configs)?;
    let mut bridges = Bridges::default();
    for Prepared { cfg, password, tls } in built {
        let metrics = Arc::new(BridgeMetrics::default());
        bridges.metrics.push((cfg.name.clone(), Arc::clone(&metrics)));
        let control = Arc::new(Control::new(&cfg, Arc::clone(&metrics)));
        bridges.controls.push(Arc::clone(&control));
        let bridge = run::Bridge::new(cfg, Arc::clone(broker), metrics, control, password, tls);
        bridges.tasks.push(tokio::spawn(bridge.run()));
    }
    if !bridges.metrics.is_empty() {
        broker.add_metric_source(Arc::new(metrics::BridgeSys { bridges: bridges.metrics.clone() }));
    }
    Ok(bridges)
}
