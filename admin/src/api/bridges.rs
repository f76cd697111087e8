//! Bridges out (`[[bridges]]`): their state and counters, and stopping and
//! starting one at run time, in EMQX 5's shapes (`GET /bridges`,
//! `GET /bridges/{id}`, `POST /bridges/{id}/{stop|start}`), where the id
//! is the bridge's `name`. Stop and start last until the broker restarts
//! (see `portcullis_bridge::control` for what they do to the connection
//! and the queue).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_bridge::BridgeStatus;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::Ctx;

/// A bridge's state and counters.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Bridge {
    /// Its `name` in the config.
    pub name: String,
    /// `mqtt` (EMQX's bridge type; the only one).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `connected`, `connecting` (running, not connected: between
    /// attempts or during one) or `stopped` (by an operator).
    pub status: &'static str,
    /// `false` after a stop, until a start.
    pub running: bool,
    /// Connected to the remote now.
    pub connected: bool,
    /// The remote address connected to now, or last tried.
    pub address: Option<String>,
    /// Every configured address, tried in turn.
    pub addresses: Vec<String>,
    /// MQTT version towards the remote: `3.1`, `3.1.1` or `5`.
    pub protocol: &'static str,
    /// Messages received from the remote and published locally.
    pub messages_in: u64,
    /// Messages sent to the remote (QoS 1/2 once acknowledged).
    pub messages_out: u64,
    /// Outgoing messages waiting (queued and in flight).
    pub messages_queued: u64,
    /// Outgoing messages dropped: queue full, or QoS 0 while the remote
    /// was away or the bridge stopped.
    pub messages_dropped: u64,
    /// Connections made to the remote.
    pub connects: u64,
}

fn view(b: BridgeStatus) -> Bridge {
    let status = match (b.running, b.connected) {
        (false, _) => "stopped",
        (true, true) => "connected",
        (true, false) => "connecting",
    };
    Bridge {
        name: b.name,
        kind: "mqtt",
        status,
        running: b.running,
        connected: b.connected,
        address: b.address,
        addresses: b.addresses,
        protocol: b.protocol,
        messages_in: b.messages_in,
        messages_out: b.messages_out,
        messages_queued: b.queued,
        messages_dropped: b.dropped,
        connects: b.connects,
    }
}

fn not_found(name: &str) -> ApiError {
    ApiError::not_found("NOT_FOUND", format!("no bridge named {name:?}"))
}

/// Every bridge, in config order.
#[utoipa::path(get, path = "/api/v5/bridges", tag = "Bridges", responses((status = 200, body = [Bridge])))]
pub async fn list(State(ctx): State<Arc<Ctx>>) -> Json<Vec<Bridge>> {
    Json(ctx.node.bridges().into_iter().map(view).collect())
}

/// One bridge.
#[utoipa::path(get, path = "/api/v5/bridges/{name}", tag = "Bridges",
    params(("name" = String, Path, description = "The bridge's `name`")),
    responses((status = 200, body = Bridge), (status = 404, body = ErrorBody)))]
pub async fn get(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Result<Json<Bridge>, ApiError> {
    ctx.node.bridges().into_iter().find(|b| b.name == name).map(|b| Json(view(b))).ok_or_else(|| not_found(&name))
}

fn switch(ctx: &Ctx, name: &str, on: bool) -> Result<StatusCode, ApiError> {
    match ctx.node.set_bridge_running(name, on) {
        None => Err(not_found(name)),
        Some(changed) => {
            tracing::info!(bridge = %name, changed, "admin API: bridge {}", if on { "started" } else { "stopped" });
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

/// Stops a bridge: state `0` on the remote and locally, DISCONNECT; it
/// keeps queueing QoS 1/2 messages for the remote (bounded by
/// `max_queued`) until started. Stopping a stopped bridge does nothing.
#[utoipa::path(post, path = "/api/v5/bridges/{name}/stop", tag = "Bridges",
    params(("name" = String, Path, description = "The bridge's `name`")),
    responses((status = 204, description = "Stopped (or already stopped)"), (status = 404, body = ErrorBody)))]
pub async fn stop(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    switch(&ctx, &name, false)
}

/// Starts a stopped bridge: it connects at once, then reconnects with its
/// backoff. Starting a running bridge does nothing.
#[utoipa::path(post, path = "/api/v5/bridges/{name}/start", tag = "Bridges",
    params(("name" = String, Path, description = "The bridge's `name`")),
    responses((status = 204, description = "Started (or already running)"), (status = 404, body = ErrorBody)))]
pub async fn start(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Result<StatusCode, ApiError> {
    switch(&ctx, &name, true)
}
