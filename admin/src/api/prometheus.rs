//! Prometheus: the node's metrics in the text format, at EMQX's path
//! (`/api/v5/prometheus/stats`) and the usual `/metrics`. Both render one
//! scrape of the registry `$SYS` publishes ([`portcullis::metrics`]), so
//! the JSON `metrics`, `$SYS` and Prometheus never disagree about what a
//! counter is.
//!
//! Access: like any other `GET` (an administrator's or viewer's key, or
//! the Unix socket), unless `[admin] prometheus_public = true` lets
//! scrapers in without a key ([`crate::access::require_key`]).

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody};
use crate::Ctx;

/// The paths served here (GET), for the access check.
pub const PATHS: [&str; 2] = ["/api/v5/prometheus/stats", "/metrics"];

async fn render(ctx: Arc<Ctx>) -> Response {
    let node = Arc::clone(&ctx.node);
    // Walks every family and label set: off the threads that run MQTT.
    match tokio::task::spawn_blocking(move || portcullis::metrics::render(&node)).await {
        Ok(text) => ([(header::CONTENT_TYPE, portcullis::metrics::CONTENT_TYPE)], text).into_response(),
        Err(_) => ApiError::internal("rendering the metrics failed").into_response(),
    }
}

/// Every metric in the Prometheus text format (0.0.4), EMQX's path.
#[utoipa::path(get, path = "/api/v5/prometheus/stats", tag = "Metrics",
    description = "No key needed when `[admin] prometheus_public = true`.",
    responses((status = 200, description = "The Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, body = ErrorBody)))]
pub async fn stats(State(ctx): State<Arc<Ctx>>) -> Response {
    render(ctx).await
}

/// The same as `/api/v5/prometheus/stats`, where scrapers look by default.
#[utoipa::path(get, path = "/metrics", tag = "Metrics",
    description = "No key needed when `[admin] prometheus_public = true`.",
    responses((status = 200, description = "The Prometheus text format", body = String,
        content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, body = ErrorBody)))]
pub async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    render(ctx).await
}
