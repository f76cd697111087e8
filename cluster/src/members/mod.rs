//! Node identity and membership: the node list in a JetStream KV bucket,
//! `<prefix>_nodes` (the prefix's `.` read as `_`), `[cluster]
//! kv_replicas` copies.
//!
//! ```text
//!  nodes.<name>  → JSON NodeEntry: name, run, slot, version, started, uptime,
//!                  connections, listeners, heartbeat, status
//!  slots.<n>     → the node name that holds slot n (1..=65535)
//! ```
//!
//! * **Joining** ([`Members::join`]), before the cluster is installed into
//!   the broker (connection ids carry the slot): the node creates
//!   `nodes.<name>` (KV create: of two nodes starting with one name at
//!   once, one wins). When the entry exists and its heartbeat is fresh,
//!   the node watches it for up to `node_timeout`: a beat from another run
//!   means a live node has this name, and this one refuses to start
//!   ([`JoinError::Duplicate`], naming `[node] name`); no beat means the
//!   previous run is gone, and the entry is taken over by compare-and-set
//!   on its revision. A cleanly stopped entry is taken over at once.
//! * **Slots** (the high 16 bits of connection ids): a name keeps the slot
//!   it held (`slots.<n>` names it); a new name claims the lowest slot no
//!   name holds, with a KV create (two nodes racing for one slot: one
//!   wins, the other tries the next). Slots are distinct across names by
//!   construction, never a hash. A slot stays with its name after the node
//!   stops, so a restarted node gets its slot back; 65,535 names can be
//!   used in one bucket.
//! * **Heartbeat**: every `heartbeat_interval` the node rewrites its entry
//!   (uptime, connections, listeners, heartbeat time) by compare-and-set;
//!   on a clean stop it writes `status: stopped`.
//! * **The view**: a KV watch on `nodes.>` keeps every entry and the local
//!   instant it last changed. A node is `running` while its entry says so
//!   and changed within `node_timeout`, `stopped` otherwise (a SIGKILLed
//!   node is `stopped` at most `node_timeout` + one `heartbeat_interval`
//!   after its last beat). Liveness is measured on this node's clock from
//!   when an update arrives, so clocks of different machines need not
//!   agree (except for entries read at start, aged by their wall-clock
//!   heartbeat time).
//! * **`$SYS/brokers`**: on every change of the running set, this node
//!   publishes the running node names, comma-separated and sorted,
//!   retained, locally (`$SYS` never crosses).
//! * **Metric**: `cluster_nodes{status}`, the nodes this node sees per
//!   status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::{self, kv};
use futures::StreamExt;
use parking_lot::Mutex;
use portcullis_core::broker::{Broker, VERSION};
use portcullis_core::metrics::{Family, Kind, MetricSource, Scrape};
use portcullis_core::remote::NodeSlot;
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use crate::config::{ClusterConfig, CrossNode};

/// `[cluster] heartbeat_interval`'s default.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);
/// `[cluster] node_timeout`'s default: three missed beats.
pub const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(6);
/// How long joining may try to reach JetStream (bucket, entries) before
/// the node refuses to start.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(20);
/// Listener addresses kept in an entry, at most.
const MAX_LISTENERS: usize = 64;
/// Node entries kept in the view, at most (each at most
/// [`MAX_ENTRY_BYTES`]); more are ignored and logged.
pub const MAX_NODES: usize = 1024;
/// A node entry larger than this is ignored.
pub const MAX_ENTRY_BYTES: usize = 16 * 1024;

/// `running` or `stopped`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Running,
    Stopped,
}

impl NodeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Running => "running",
            NodeStatus::Stopped => "stopped",
        }
    }
}

/// A node's entry in `<prefix>_nodes`, as the node last wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeEntry {
    /// `[node] name`.
    pub name: String,
    /// New at every start of the node.
    pub run: u64,
    /// The high 16 bits of its connection ids.
    pub slot: u16,
    pub version: String,
    /// Start time, Unix milliseconds.
    pub started_ms: u64,
    /// Milliseconds since start, at the last heartbeat.
    pub uptime_ms: u64,
    /// Connected clients at the last heartbeat.
    pub connections: u64,
    /// The MQTT listeners' addresses (`tcp:default 127.0.0.1:1883`).
    pub listeners: Vec<String>,
    /// Last heartbeat, Unix milliseconds (the node's clock).
    pub heartbeat_ms: u64,
    /// What the node says: `stopped` once it stopped cleanly.
    pub status: NodeStatus,
    /// Its `[cluster] cross_node` (`at_most_once` for an entry written
    /// before the setting existed).
    #[serde(default = "default_cross_node")]
    pub cross_node: String,
}

fn default_cross_node() -> String {
    CrossNode::AtMostOnce.as_str().to_string()
}

/// A node as this node sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub entry: NodeEntry,
    /// `running`: says so and beat within `node_timeout`.
    pub status: NodeStatus,
    /// Since its entry last changed, on this node's clock.
    pub silent_for: Duration,
    /// This node.
    pub local: bool,
}

/// Why a node could not join.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("[node] name {name:?} is in use by a running node (run {run}, slot {slot}, last heartbeat {age_ms} ms ago): give this node another [node] name, or stop the other one")]
    Duplicate { name: String, run: u64, slot: u16, age_ms: u64 },
    #[error("node list (KV bucket {bucket}): {what}")]
    Kv { bucket: String, what: String },
    #[error("every node slot (1..=65535) of KV bucket {0} is held by a node name")]
    NoSlot(String),
    #[error("[cluster] cross_node is {ours:?} here but {theirs:?} on running node {node:?}: every node of a cluster must use the same (stop them all to change it)")]
    CrossNode { ours: String, theirs: String, node: String },
}

fn kv_err(bucket: &str, what: impl std::fmt::Display) -> JoinError {
    JoinError::Kv { bucket: bucket.to_string(), what: what.to_string() }
}

/// The bucket's name for `prefix`: `<prefix>_nodes`, `.` read as `_`.
pub fn bucket_name(prefix: &str) -> String {
    format!("{}_nodes", prefix.replace('.', "_"))
}

/// `nodes.<name>`, the name one KV token (`[A-Za-z0-9_-]` kept, every
/// other byte `=HH`, as subjects are encoded).
pub fn node_key(name: &str) -> String {
    let mut k = String::from("nodes.");
    crate::subject::encode_level(name, &mut k);
    k
}

fn slot_key(slot: u16) -> String {
    format!("slots.{slot}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

struct Seen {
    entry: NodeEntry,
    at: Instant,
}

/// This node's membership: its slot, its entry, and the view of all.
pub struct Members {
    kv: kv::Store,
    bucket: String,
    key: String,
    node: String,
    run: u64,
    slot: NodeSlot,
    interval: Duration,
    timeout: Duration,
    broker: Weak<Broker>,
    /// This node's entry's last revision (compare-and-set).
    revision: AtomicU64,
    listeners: Mutex<Vec<String>>,
    view: Mutex<BTreeMap<String, Seen>>,
    /// The running names last published to `$SYS/brokers`.
    published: Mutex<Option<Vec<String>>>,
    /// Beat now (the listeners are known).
    wake: tokio::sync::Notify,
    /// The last heartbeat failed (this node cannot write the KV: cut off).
    failing: std::sync::atomic::AtomicBool,
    /// Told when a heartbeat succeeds after one failed: the node is back
    /// in the KV's majority (the session registry sweeps on it).
    rejoined: Arc<tokio::sync::Notify>,
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members").field("node", &self.node).field("slot", &self.slot.0).finish()
    }
}

impl Members {
    /// Opens (or creates) the node list, claims this node's name and a
    /// slot, writes its entry and starts the heartbeat and the watch.
    pub async fn join(
        client: async_nats::Client,
        config: &ClusterConfig,
        broker: &Arc<Broker>,
        run: u64,
    ) -> Result<Arc<Members>, JoinError> {
        let bucket = bucket_name(&config.subject_prefix);
        let mut js = jetstream::new(client);
        js.set_timeout(config.request_timeout);
        let kv = open_bucket(&js, &bucket, config.kv_replicas).await?;
        let node = broker.settings.node_name.clone();
        let key = node_key(&node);
        let started_ms = broker.started_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut entry = NodeEntry {
            name: node.clone(),
            run,
            slot: 0,
            version: VERSION.to_string(),
            started_ms,
            uptime_ms: 0,
            connections: 0,
            listeners: Vec::new(),
            heartbeat_ms: now_ms(),
            status: NodeStatus::Running,
            cross_node: config.cross_node.as_str().to_string(),
        };
        check_cross_node(&kv, &bucket, &node, config).await?;
        let (previous, revision) = claim_name(&kv, &bucket, &key, &entry, config).await?;
        entry.slot = claim_slot(&kv, &bucket, &node, previous.map(|p| p.slot)).await?;
        entry.heartbeat_ms = now_ms();
        let revision = kv
            .update(&key, encode(&entry), revision)
            .await
            .map_err(|e| kv_err(&bucket, format!("writing {key}: {e}")))?;
        let members = Arc::new(Members {
            kv,
            bucket,
            key,
            node,
            run,
            slot: NodeSlot(entry.slot),
            interval: config.heartbeat_interval,
            timeout: config.node_timeout,
            broker: Arc::downgrade(broker),
            revision: AtomicU64::new(revision),
            listeners: Mutex::new(Vec::new()),
            view: Mutex::new(BTreeMap::new()),
            published: Mutex::new(None),
            wake: tokio::sync::Notify::new(),
            failing: std::sync::atomic::AtomicBool::new(false),
            rejoined: Arc::new(tokio::sync::Notify::new()),
        });
        members.view.lock().insert(members.node.clone(), Seen { entry, at: Instant::now() });
        members.publish_brokers();
        tokio::spawn(heartbeat_task(Arc::downgrade(&members), broker.shutdown_signal()));
        tokio::spawn(watch_task(Arc::downgrade(&members)));
        broker.add_metric_source(Arc::new(Gauge(Arc::downgrade(&members))) as Arc<dyn MetricSource>);
        info!(node = %members.node, slot = members.slot.0, bucket = %members.bucket, "cluster: joined the node list");
        Ok(members)
    }

    /// This node's slot.
    pub fn slot(&self) -> NodeSlot {
        self.slot
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The listeners' addresses, written at once.
    pub fn set_listeners(&self, mut listeners: Vec<String>) {
        listeners.truncate(MAX_LISTENERS);
        *self.listeners.lock() = listeners;
        self.wake.notify_one();
    }

    /// Writes this node's entry as `stopped` (a clean stop: the others
    /// show it at once instead of after `node_timeout`). The server calls
    /// it last in its shutdown.
    pub async fn leave(&self) {
        self.beat(NodeStatus::Stopped).await;
    }

    /// Every node this node knows, sorted by name, with its status now.
    pub fn nodes(&self) -> Vec<NodeView> {
        let now = Instant::now();
        self.view
            .lock()
            .values()
            .map(|s| {
                let local = s.entry.name == self.node && s.entry.run == self.run;
                let silent_for = now.saturating_duration_since(s.at);
                let running = s.entry.status == NodeStatus::Running && (local || silent_for <= self.timeout);
                NodeView {
                    entry: s.entry.clone(),
                    status: if running { NodeStatus::Running } else { NodeStatus::Stopped },
                    silent_for,
                    local,
                }
            })
            .collect()
    }

    /// The running nodes' names, sorted.
    pub fn running(&self) -> Vec<String> {
        self.nodes().into_iter().filter(|n| n.status == NodeStatus::Running).map(|n| n.entry.name).collect()
    }

    /// Publishes `$SYS/brokers` when the running set changed since the
    /// last time (and logs the change).
    fn publish_brokers(&self) {
        let Some(broker) = self.broker.upgrade() else { return };
        let running = self.running();
        let mut last = self.published.lock();
        if last.as_ref() == Some(&running) {
            return;
        }
        if let Some(before) = last.as_ref() {
            let gone: Vec<&String> = before.iter().filter(|n| !running.contains(n)).collect();
            let came: Vec<&String> = running.iter().filter(|n| !before.contains(n)).collect();
            info!(running = ?running, joined = ?came, left = ?gone, "cluster: membership changed");
        }
        broker.publish_sys("$SYS/brokers", running.join(","), true);
        *last = Some(running);
    }

    /// This node's entry as of now.
    fn own_entry(&self, status: NodeStatus) -> Option<NodeEntry> {
        let broker = self.broker.upgrade()?;
        let view = self.view.lock();
        let mut e = view.get(&self.node)?.entry.clone();
        drop(view);
        e.uptime_ms = u64::try_from(broker.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        e.connections = broker.metrics.connections.get();
        e.listeners = self.listeners.lock().clone();
        e.heartbeat_ms = now_ms();
        e.status = status;
        e.run = self.run;
        Some(e)
    }

    /// Writes this node's entry (compare-and-set on its last revision).
    async fn beat(&self, status: NodeStatus) {
        let Some(entry) = self.own_entry(status) else { return };
        let rev = self.revision.load(Ordering::Relaxed);
        match self.kv.update(&self.key, encode(&entry), rev).await {
            Ok(r) => {
                self.revision.store(r, Ordering::Relaxed);
                self.seen(entry, Instant::now());
                if self.failing.swap(false, Ordering::Relaxed) {
                    info!("cluster: heartbeat written again after a failure");
                    self.rejoined.notify_one();
                }
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                // Someone else wrote our key: another node with this name
                // took it over after we were silent past node_timeout.
                match self.kv.entry(&self.key).await {
                    Ok(Some(now)) => match decode(&now.value) {
                        Some(other) if other.run != self.run => {
                            error!(node = %self.node, other_run = other.run, "cluster: another node took over this [node] name (this node was silent past node_timeout); two nodes now share a name — stop one");
                        }
                        _ => {
                            // Our own write raced this one (a beat and
                            // `leave`): write again over the latest.
                            let r = self.kv.update(&self.key, encode(&entry), now.revision).await;
                            self.revision.store(r.unwrap_or(now.revision), Ordering::Relaxed);
                        }
                    },
                    Ok(None) => {
                        // Deleted (by an operator): write it again.
                        if let Ok(r) = self.kv.create(&self.key, encode(&entry)).await {
                            self.revision.store(r, Ordering::Relaxed);
                        }
                    }
                    Err(e) => warn!(error = %e, "cluster: reading this node's entry failed"),
                }
            }
            Err(e) => {
                self.failing.store(true, Ordering::Relaxed);
                warn!(error = %e, "cluster: heartbeat not written")
            }
        }
    }

    /// Told when a heartbeat succeeds after a failed one.
    pub fn rejoined(&self) -> Arc<tokio::sync::Notify> {
        Arc::clone(&self.rejoined)
    }

    /// An entry from the watch (or our own write).
    fn seen(&self, entry: NodeEntry, at: Instant) {
        let mut view = self.view.lock();
        if entry.name == self.node && entry.run != self.run {
            // Ours is what this node writes; another run's entry under
            // our name is reported by `beat`.
            return;
        }
        if view.len() >= MAX_NODES && !view.contains_key(&entry.name) {
            warn!(limit = MAX_NODES, "cluster: node list full; a node is not shown");
            return;
        }
        view.insert(entry.name.clone(), Seen { entry, at });
    }
}

/// Refuses to join when a running node (another name, a heartbeat within
/// `node_timeout` by this node's clock) uses another `cross_node`: an
/// at-most-once node does not read the durable stream, so it would never
/// get the durable nodes' QoS 1/2 messages, and they would miss its.
async fn check_cross_node(kv: &kv::Store, bucket: &str, node: &str, config: &ClusterConfig) -> Result<(), JoinError> {
    let ours = config.cross_node.as_str();
    let mut keys = kv.keys().await.map_err(|e| kv_err(bucket, format!("listing nodes: {e}")))?;
    let timeout_ms = config.node_timeout.as_millis() as u64;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| kv_err(bucket, format!("listing nodes: {e}")))?;
        if !key.starts_with("nodes.") {
            continue;
        }
        let Ok(Some(value)) = kv.get(&key).await else { continue };
        let Some(e) = decode(&value) else { continue };
        let running = e.status == NodeStatus::Running && now_ms().saturating_sub(e.heartbeat_ms) <= timeout_ms;
        if running && e.name != node && e.cross_node != ours {
            return Err(JoinError::CrossNode { ours: ours.to_string(), theirs: e.cross_node, node: e.name });
        }
    }
    Ok(())
}

fn encode(e: &NodeEntry) -> bytes::Bytes {
    serde_json::to_vec(e).map(bytes::Bytes::from).unwrap_or_default()
}

fn decode(b: &[u8]) -> Option<NodeEntry> {
    if b.len() > MAX_ENTRY_BYTES {
        return None;
    }
    serde_json::from_slice(b).ok()
}

/// Gets the bucket, or creates it; retried until [`JOIN_TIMEOUT`] (a NATS
/// cluster that just started may have no JetStream leader yet).
async fn open_bucket(js: &jetstream::Context, bucket: &str, replicas: usize) -> Result<kv::Store, JoinError> {
    let end = Instant::now() + JOIN_TIMEOUT;
    loop {
        let err = match js.get_key_value(bucket).await {
            Ok(kv) => return Ok(kv),
            Err(_) => match js
                .create_key_value(kv::Config {
                    bucket: bucket.to_string(),
                    description: "Portcullis cluster: node list and slots".to_string(),
                    history: 1,
                    num_replicas: replicas,
                    storage: jetstream::stream::StorageType::File,
                    max_value_size: MAX_ENTRY_BYTES as i32,
                    ..Default::default()
                })
                .await
            {
                Ok(kv) => return Ok(kv),
                Err(e) => e.to_string(),
            },
        };
        if Instant::now() >= end {
            return Err(kv_err(bucket, format!("cannot open or create it (kv_replicas = {replicas}): {err}")));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Claims `nodes.<name>`: returns the previous entry (if any) and the
/// revision to write over.
async fn claim_name(
    kv: &kv::Store,
    bucket: &str,
    key: &str,
    entry: &NodeEntry,
    config: &ClusterConfig,
) -> Result<(Option<NodeEntry>, u64), JoinError> {
    let end = Instant::now() + JOIN_TIMEOUT;
    loop {
        match kv.create(key, encode(entry)).await {
            Ok(rev) => return Ok((None, rev)),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
            Err(e) => {
                if Instant::now() >= end {
                    return Err(kv_err(bucket, format!("creating {key}: {e}")));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        }
        let Some(current) = kv.entry(key).await.map_err(|e| kv_err(bucket, format!("reading {key}: {e}")))? else {
            continue; // deleted meanwhile: create again
        };
        let Some(prev) = decode(&current.value) else {
            warn!(key, "cluster: unreadable node entry replaced");
            return Ok((None, current.revision));
        };
        let age = Duration::from_millis(now_ms().saturating_sub(prev.heartbeat_ms));
        if prev.status == NodeStatus::Running && age < config.node_timeout {
            // Fresh: a live node, or one that died less than node_timeout
            // ago. Watch for a beat.
            info!(
                key,
                run = prev.run,
                age_ms = age.as_millis() as u64,
                "cluster: this node's name has a fresh entry: waiting to see whether it beats"
            );
            let deadline = Instant::now() + config.node_timeout;
            while Instant::now() < deadline {
                tokio::time::sleep((config.heartbeat_interval / 4).max(Duration::from_millis(50))).await;
                let now = kv.entry(key).await.map_err(|e| kv_err(bucket, format!("reading {key}: {e}")))?;
                match now {
                    Some(n) if n.revision != current.revision => {
                        let other = decode(&n.value);
                        if let Some(o) = other.filter(|o| o.status == NodeStatus::Running) {
                            return Err(JoinError::Duplicate {
                                name: o.name,
                                run: o.run,
                                slot: o.slot,
                                age_ms: now_ms().saturating_sub(o.heartbeat_ms),
                            });
                        }
                        break; // it stopped: look again
                    }
                    Some(_) => {}
                    None => break,
                }
            }
        }
        // Stale, stopped, or silent for node_timeout: take it over (CAS).
        match kv.update(key, encode(entry), current.revision).await {
            Ok(rev) => return Ok((Some(prev), rev)),
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
            Err(e) => return Err(kv_err(bucket, format!("taking over {key}: {e}"))),
        }
    }
}

/// The slot for `node`: its previous one when `slots.<n>` still names it,
/// else the lowest slot no name holds.
async fn claim_slot(kv: &kv::Store, bucket: &str, node: &str, previous: Option<u16>) -> Result<u16, JoinError> {
    if let Some(s) = previous.filter(|s| *s != 0) {
        match kv.get(slot_key(s)).await {
            Ok(Some(v)) if v == node.as_bytes() => return Ok(s),
            Ok(None) => {
                if kv.create(slot_key(s), bytes::Bytes::from(node.to_string())).await.is_ok() {
                    return Ok(s);
                }
            }
            Ok(Some(_)) => {}
            Err(e) => return Err(kv_err(bucket, format!("reading {}: {e}", slot_key(s)))),
        }
    }
    // Slots held, and whether one of them is already this name's (a node
    // that died between claiming a slot and writing its entry).
    let mut held = std::collections::HashSet::new();
    let mut keys = kv.keys().await.map_err(|e| kv_err(bucket, format!("listing keys: {e}")))?;
    while let Some(k) = keys.next().await {
        let k = k.map_err(|e| kv_err(bucket, format!("listing keys: {e}")))?;
        if let Some(n) = k.strip_prefix("slots.").and_then(|n| n.parse::<u16>().ok()) {
            held.insert(n);
        }
    }
    for s in 1..=u16::MAX {
        if held.contains(&s) {
            continue;
        }
        match kv.create(slot_key(s), bytes::Bytes::from(node.to_string())).await {
            Ok(_) => return Ok(s),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => continue,
            Err(e) => return Err(kv_err(bucket, format!("creating {}: {e}", slot_key(s)))),
        }
    }
    Err(JoinError::NoSlot(bucket.to_string()))
}

/// Beats every `heartbeat_interval`; re-evaluates the view (timeouts) at
/// the same pace; writes `stopped` at shutdown.
async fn heartbeat_task(weak: Weak<Members>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let interval = match weak.upgrade() {
        Some(m) => m.interval,
        None => return,
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(m) = weak.upgrade() else { return };
        let woken = async move { m.wake.notified().await };
        tokio::select! {
            _ = tick.tick() => {}
            _ = woken => {}
            _ = shutdown.changed() => {
                if let Some(m) = weak.upgrade() {
                    m.beat(NodeStatus::Stopped).await;
                }
                return;
            }
        }
        let Some(m) = weak.upgrade() else { return };
        m.beat(NodeStatus::Running).await;
        m.publish_brokers();
    }
}

/// Keeps the view from a KV watch on `nodes.>`, re-opened when it ends.
async fn watch_task(weak: Weak<Members>) {
    loop {
        let Some(m) = weak.upgrade() else { return };
        let watch = m.kv.watch_with_history("nodes.>").await;
        drop(m);
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                warn!(error = %e, "cluster: node list watch failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(item) = watch.next().await {
            let Some(m) = weak.upgrade() else { return };
            let e = match item {
                Ok(e) => e,
                Err(e) => {
                    warn!(error = %e, "cluster: node list watch error");
                    break;
                }
            };
            if e.operation != kv::Operation::Put {
                // Deleted by an operator: forget it.
                let name = m.view.lock().iter().find(|(n, _)| node_key(n) == e.key).map(|(n, _)| n.clone());
                if let Some(n) = name.filter(|n| *n != m.node) {
                    m.view.lock().remove(&n);
                }
                m.publish_brokers();
                continue;
            }
            let Some(entry) = decode(&e.value) else {
                warn!(key = %e.key, "cluster: unreadable node entry ignored");
                continue;
            };
            if node_key(&entry.name) != e.key {
                warn!(key = %e.key, "cluster: node entry under another name's key ignored");
                continue;
            }
            // Aged by its own heartbeat time when it is old (read at
            // start); a live update counts from now.
            let age = Duration::from_millis(now_ms().saturating_sub(entry.heartbeat_ms));
            let at = if age > m.timeout {
                Instant::now().checked_sub(age).unwrap_or_else(Instant::now)
            } else {
                Instant::now()
            };
            m.seen(entry, at);
            m.publish_brokers();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub static CLUSTER_NODES: Family = Family {
    name: "cluster_nodes",
    help: "Nodes of the cluster this node sees, by status (running, stopped).",
    kind: Kind::Gauge,
    labels: &["status"],
    sys: Some("cluster/nodes/{status}"),
    sys_total: None,
};

struct Gauge(Weak<Members>);

impl MetricSource for Gauge {
    fn collect(&self, out: &mut Scrape) {
        let Some(m) = self.0.upgrade() else { return };
        let nodes = m.nodes();
        for status in [NodeStatus::Running, NodeStatus::Stopped] {
            let n = nodes.iter().filter(|v| v.status == status).count();
            out.add(&CLUSTER_NODES, &[status.as_str()], n as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_keys() {
        assert_eq!(bucket_name("portcullis"), "portcullis_nodes");
        assert_eq!(bucket_name("a.b"), "a_b_nodes");
        assert_eq!(node_key("n1"), "nodes.n1");
        assert_eq!(node_key("emqx@10.0.0.1"), "nodes.emqx=4010=2E0=2E0=2E1");
        assert_eq!(slot_key(7), "slots.7");
    }

    #[test]
    fn entries_round_trip_and_big_ones_are_refused() {
        let e = NodeEntry {
            name: "n1".into(),
            run: 9,
            slot: 3,
            version: "1".into(),
            started_ms: 1,
            uptime_ms: 2,
            connections: 4,
            listeners: vec!["tcp:default 127.0.0.1:1883".into()],
            heartbeat_ms: 5,
            status: NodeStatus::Running,
            cross_node: "durable".into(),
        };
        assert_eq!(decode(&encode(&e)), Some(e.clone()));
        // An entry written before cross_node existed reads as at most once.
        let mut old = serde_json::to_value(&e).unwrap();
        old.as_object_mut().unwrap().remove("cross_node");
        assert_eq!(decode(&serde_json::to_vec(&old).unwrap()).unwrap().cross_node, "at_most_once");
        assert_eq!(decode(&vec![b' '; MAX_ENTRY_BYTES + 1]), None);
    }
}
