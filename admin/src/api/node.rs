//! The node: `status` (public), `nodes`, `stats`, `metrics`, `listeners`.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use portcullis_core::broker::{Broker, VERSION};

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::Ctx;

/// `format` of `/status`.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusFormat {
    Text,
    Json,
}

/// `format` of `/status`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatusParams {
    /// `text` (default) or `json`.
    pub format: Option<StatusFormat>,
}

/// `/status` in JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    pub node_name: String,
    pub rel_vsn: String,
    /// `started`, or `stopping` during a shutdown.
    pub broker_status: String,
    /// `running`, or `not_running` during a shutdown.
    pub app_status: String,
}

/// Whether the broker runs. Public (no key), for health checks: 200 while
/// it runs, 503 once it is shutting down.
#[utoipa::path(get, path = "/api/v5/status", tag = "Status", params(StatusParams), security(()),
    responses(
        (status = 200, description = "Running: `Node <name> is started` (text), or JSON with `format=json`",
            content((String = "text/plain"), (Status = "application/json"))),
        (status = 400, description = "Unknown format", body = ErrorBody),
        (status = 503, description = "Shutting down", body = ErrorBody),
    ))]
pub async fn status(State(ctx): State<Arc<Ctx>>, Query(p): Query<StatusParams>) -> Result<Response, ApiError> {
    let broker = &ctx.node.broker;
    let node = broker.settings.node_name.clone();
    if broker.is_shutting_down() {
        return Err(ApiError::unavailable(format!("node {node} is stopping")));
    }
    match p.format.unwrap_or(StatusFormat::Text) {
        StatusFormat::Text => Ok((
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("Node {node} is started\nportcullis is running"),
        )
            .into_response()),
        StatusFormat::Json => Ok(Json(Status {
            node_name: node,
            rel_vsn: VERSION.to_string(),
            broker_status: "started".to_string(),
            app_status: "running".to_string(),
        })
        .into_response()),
    }
}

/// A node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeInfo {
    pub node: String,
    /// `running`, `stopping` (this node, shutting down) or `stopped` (a
    /// cluster node that stopped, or sent no heartbeat for `[cluster]
    /// node_timeout`).
    pub node_status: String,
    pub version: String,
    /// Milliseconds since start.
    pub uptime: u64,
    /// Connected clients.
    pub connections: u64,
    pub live_connections: u64,
    /// When it started, RFC 3339.
    pub started_at: String,
    /// Cluster mode: the node's slot (the high 16 bits of its connection
    /// ids).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<u16>,
    /// Cluster mode: its MQTT listeners (`<type>:<name> <address>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listeners: Option<Vec<String>>,
    /// Cluster mode: its last heartbeat, RFC 3339 (the node's clock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<String>,
    /// Cluster mode: milliseconds since its entry last changed, as seen
    /// by the node answering.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub silent_ms: Option<u64>,
    /// Cluster mode: how it sends QoS 1/2 messages to the other nodes,
    /// `at_most_once` or `durable` (`[cluster] cross_node`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cross_node: Option<String>,
}

fn rfc3339_ms(ms: u64) -> String {
    humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)).to_string()
}

/// The nodes: this one alone, or every node of the cluster's node list
/// (this one with its live figures).
fn node_infos(ctx: &Ctx) -> Vec<NodeInfo> {
    let broker = &ctx.node.broker;
    let Some(cluster) = &ctx.node.cluster else { return vec![node_info(broker)] };
    cluster
        .members()
        .nodes()
        .into_iter()
        .map(|v| {
            let e = v.entry;
            let mut info = if v.local {
                node_info(broker)
            } else {
                NodeInfo {
                    node: e.name.clone(),
                    node_status: v.status.as_str().to_string(),
                    version: e.version.clone(),
                    uptime: e.uptime_ms,
                    connections: e.connections,
                    live_connections: e.connections,
                    started_at: rfc3339_ms(e.started_ms),
                    slot: None,
                    listeners: None,
                    last_heartbeat: None,
                    silent_ms: None,
                    cross_node: None,
                }
            };
            info.slot = Some(e.slot);
            info.listeners = Some(e.listeners);
            info.last_heartbeat = Some(rfc3339_ms(e.heartbeat_ms));
            info.silent_ms = Some(u64::try_from(v.silent_for.as_millis()).unwrap_or(u64::MAX));
            info.cross_node = Some(e.cross_node);
            info
        })
        .collect()
}

fn node_info(broker: &Broker) -> NodeInfo {
    let connections = broker.metrics.connections.get();
    NodeInfo {
        node: broker.settings.node_name.clone(),
        node_status: if broker.is_shutting_down() { "stopping" } else { "running" }.to_string(),
        version: VERSION.to_string(),
        uptime: u64::try_from(broker.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        connections,
        live_connections: connections,
        started_at: humantime::format_rfc3339_seconds(broker.started_at).to_string(),
        slot: None,
        listeners: None,
        last_heartbeat: None,
        silent_ms: None,
        cross_node: None,
    }
}

/// The nodes: this one in single-node mode; in a cluster, every node of
/// the node list, running or stopped, sorted by name.
#[utoipa::path(get, path = "/api/v5/nodes", tag = "Nodes",
    responses((status = 200, body = [NodeInfo]), (status = 401, body = ErrorBody)))]
pub async fn nodes(State(ctx): State<Arc<Ctx>>) -> Json<Vec<NodeInfo>> {
    Json(node_infos(&ctx))
}

/// One node by name.
#[utoipa::path(get, path = "/api/v5/nodes/{node}", tag = "Nodes",
    params(("node" = String, Path, description = "Node name")),
    responses((status = 200, body = NodeInfo), (status = 404, body = ErrorBody)))]
pub async fn node(State(ctx): State<Arc<Ctx>>, Path(node): Path<String>) -> Result<Json<NodeInfo>, ApiError> {
    node_infos(&ctx)
        .into_iter()
        .find(|i| i.node == node)
        .map(Json)
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no node {node:?}")))
}

/// `aggregate` of `/stats` and `/metrics`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AggregateParams {
    /// `true`: one object for the cluster; `false` (default): one per node.
    pub aggregate: Option<bool>,
}

/// Gauges (EMQX's names): now and highest since start.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Stats {
    #[serde(rename = "connections.count")]
    pub connections_count: u64,
    #[serde(rename = "connections.max")]
    pub connections_max: u64,
    #[serde(rename = "live_connections.count")]
    pub live_connections_count: u64,
    #[serde(rename = "live_connections.max")]
    pub live_connections_max: u64,
    #[serde(rename = "sessions.count")]
    pub sessions_count: u64,
    #[serde(rename = "sessions.max")]
    pub sessions_max: u64,
    #[serde(rename = "subscriptions.count")]
    pub subscriptions_count: u64,
    #[serde(rename = "subscriptions.max")]
    pub subscriptions_max: u64,
    #[serde(rename = "topics.count")]
    pub topics_count: u64,
    #[serde(rename = "topics.max")]
    pub topics_max: u64,
    #[serde(rename = "retained.count")]
    pub retained_count: u64,
    #[serde(rename = "retained.max")]
    pub retained_max: u64,
}

/// [`Stats`] of one node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStats {
    pub node: String,
    #[serde(flatten)]
    pub stats: Stats,
}

/// Stats as asked: aggregated, or per node.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatsResponse {
    Aggregate(Stats),
    PerNode(Vec<NodeStats>),
}

fn stats_of(broker: &Broker) -> Stats {
    let m = &broker.metrics;
    m.sessions.set(broker.session_count() as u64);
    m.retained.set(broker.retained.len() as u64);
    Stats {
        connections_count: m.connections.get(),
        connections_max: m.connections.max(),
        live_connections_count: m.connections.get(),
        live_connections_max: m.connections.max(),
        sessions_count: m.sessions.get(),
        sessions_max: m.sessions.max(),
        subscriptions_count: m.subscriptions.get(),
        subscriptions_max: m.subscriptions.max(),
        topics_count: m.topics.get(),
        topics_max: m.topics.max(),
        retained_count: m.retained.get(),
        retained_max: m.retained.max(),
    }
}

/// Connections, sessions, subscriptions, topics and retained messages:
/// now and highest since start.
#[utoipa::path(get, path = "/api/v5/stats", tag = "Metrics", params(AggregateParams),
    responses((status = 200, body = StatsResponse), (status = 400, body = ErrorBody)))]
pub async fn stats(State(ctx): State<Arc<Ctx>>, Query(p): Query<AggregateParams>) -> Json<StatsResponse> {
    let broker = &ctx.node.broker;
    let stats = stats_of(broker);
    Json(match p.aggregate {
        Some(true) => StatsResponse::Aggregate(stats),
        _ => StatsResponse::PerNode(vec![NodeStats { node: broker.settings.node_name.clone(), stats }]),
    })
}

/// Counters by name (`messages.received`, `bytes.sent`,
/// `messages.dropped.no_subscribers`, `auth.default.<provider>.calls`, …).
#[derive(Debug, Serialize, ToSchema)]
#[serde(transparent)]
pub struct Counters(pub BTreeMap<String, u64>);

/// [`Counters`] of one node.
#[derive(Debug, Serialize, ToSchema)]
pub struct NodeMetrics {
    pub node: String,
    /// The counters.
    pub metrics: Counters,
}

/// Metrics as asked: aggregated, or per node.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum MetricsResponse {
    Aggregate(Counters),
    PerNode(Vec<NodeMetrics>),
}

/// Every value of the broker's metrics registry — the one `$SYS`
/// publishes and Prometheus renders ([`Broker::scrape`]) — under EMQX's
/// dotted names: the `$SYS` topic without its `metrics/` prefix, `/` read
/// as `.` (`packets.connect.received`, `auth.<chain>.<provider>.calls`).
pub fn counters(broker: &Broker) -> BTreeMap<String, u64> {
    broker
        .scrape()
        .sys_values()
        .into_iter()
        .filter_map(|(topic, value)| {
            let name = topic.strip_prefix("metrics/").unwrap_or(&topic).replace('/', ".");
            Some((name, value.parse().ok()?))
        })
        .collect()
}

/// Counters: bytes, packets, messages (received, sent, dropped by
/// reason), refused connects, per listener, per auth and ACL provider,
/// caches, the brute-force guard.
#[utoipa::path(get, path = "/api/v5/metrics", tag = "Metrics", params(AggregateParams),
    responses((status = 200, body = MetricsResponse), (status = 400, body = ErrorBody)))]
pub async fn metrics(State(ctx): State<Arc<Ctx>>, Query(p): Query<AggregateParams>) -> Json<MetricsResponse> {
    let broker = &ctx.node.broker;
    let c = Counters(counters(broker));
    Json(match p.aggregate {
        Some(true) => MetricsResponse::Aggregate(c),
        _ => MetricsResponse::PerNode(vec![NodeMetrics { node: broker.settings.node_name.clone(), metrics: c }]),
    })
}

/// A listener.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListenerInfo {
    /// `<type>:<name>`, EMQX's listener id.
    pub id: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// The address bound.
    pub bind: String,
    pub running: bool,
    pub enable: bool,
    pub max_connections: u64,
    pub current_connections: u64,
    /// Sockets closed at accept: `max_connections` were open.
    pub refused: u64,
    pub handshake_failures: u64,
    pub auth_chain: String,
    pub acl_chain: String,
    /// The HTTP path of the WebSocket upgrade (`ws` and `wss` listeners;
    /// absent for the others): what a browser client connects to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub websocket_path: Option<String>,
}

fn listener_infos(ctx: &Ctx) -> Vec<ListenerInfo> {
    ctx.node
        .listeners
        .views()
        .into_iter()
        .map(|v| ListenerInfo {
            id: format!("{}:{}", v.kind.name(), v.name),
            kind: v.kind.name().to_string(),
            name: v.name,
            bind: v.local_addr.unwrap_or(v.bind).to_string(),
            running: v.running,
            enable: true,
            max_connections: v.max_connections as u64,
            current_connections: v.connections as u64,
            refused: v.refused,
            handshake_failures: v.handshake_failures,
            auth_chain: v.auth_chain,
            acl_chain: v.acl_chain,
            websocket_path: v.websocket_path,
        })
        .collect()
}

/// The MQTT listeners, in config order.
#[utoipa::path(get, path = "/api/v5/listeners", tag = "Listeners",
    responses((status = 200, body = [ListenerInfo]), (status = 401, body = ErrorBody)))]
pub async fn listeners(State(ctx): State<Arc<Ctx>>) -> Json<Vec<ListenerInfo>> {
    Json(listener_infos(&ctx))
}

/// One listener by id (`tcp:default`).
#[utoipa::path(get, path = "/api/v5/listeners/{id}", tag = "Listeners",
    params(("id" = String, Path, description = "`<type>:<name>`")),
    responses((status = 200, body = ListenerInfo), (status = 404, body = ErrorBody)))]
pub async fn listener(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Result<Json<ListenerInfo>, ApiError> {
    listener_infos(&ctx)
        .into_iter()
        .find(|l| l.id == id)
        .map(Json)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", format!("no listener {id:?}")))
}
