//! Retained messages: list (optionally by topic filter), get one by its
//! topic, delete by topic or filter, delete all. Topics in the path are
//! percent-encoded (`/` as `%2F`, `#` as `%23`, `+` as `%2B`, `$` may be
//! left as it is).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use base64::Engine;
use portcullis_core::message::Message;
use portcullis_core::topic::{TopicFilter, TopicName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{paginate, Meta, PageParams};
use crate::Ctx;

/// Payload bytes a listed message shows (`payload_preview`).
pub const PREVIEW_BYTES: usize = 64;

/// A retained message without its payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetainedSummary {
    pub topic: String,
    pub qos: u8,
    /// The client that published it; null for the broker (`$SYS`).
    pub from_clientid: Option<String>,
    /// Payload bytes.
    pub payload_size: u64,
    /// Seconds until it expires; null: never.
    pub expiry_interval: Option<u32>,
}

/// A listed retained message: the summary and the payload's first bytes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetainedListed {
    #[serde(flatten)]
    pub summary: RetainedSummary,
    /// The payload's first 64 bytes, base64 (all of it when shorter; a
    /// multi-byte character may be cut at the end).
    pub payload_preview: String,
}

/// A retained message with its payload (base64).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RetainedMessage {
    #[serde(flatten)]
    pub summary: RetainedSummary,
    /// The payload, base64.
    pub payload: String,
}

/// A `$SYS` topic: the broker's own.
fn is_sys(t: &TopicName) -> bool {
    t.as_str() == "$SYS" || t.as_str().starts_with("$SYS/")
}

fn summary(m: &Message, now: Instant) -> RetainedSummary {
    RetainedSummary {
        topic: m.topic.as_str().to_string(),
        qos: m.qos as u8,
        from_clientid: m.publisher.as_deref().map(str::to_string),
        payload_size: m.payload.len() as u64,
        expiry_interval: m.remaining_expiry(now),
    }
}

/// `topic` of the list.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RetainedFilters {
    /// A topic filter the topics must match (`a/+/c`, `a/#`).
    pub topic: Option<String>,
}

/// A page of retained messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetainedPage {
    pub data: Vec<RetainedListed>,
    pub meta: Meta,
}

/// The retained messages, by topic (expired ones left out; the broker's
/// `$SYS` values only when the filter asks for them).
#[utoipa::path(get, path = "/api/v5/mqtt/retainer/messages", tag = "Retainer", params(PageParams, RetainedFilters),
    responses((status = 200, body = RetainedPage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Query(page): Query<PageParams>,
    Query(f): Query<RetainedFilters>,
) -> Result<Json<RetainedPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let filter = crate::page::given(f.topic)
        .as_deref()
        .map(|t| TopicFilter::new(t).map_err(|e| ApiError::bad_request(format!("topic {t:?}: {e}"))))
        .transpose()?;
    let out = tokio::task::spawn_blocking(move || {
        let now = Instant::now();
        let store = &ctx.node.broker.retained;
        let msgs = match &filter {
            Some(f) => store.matching(f, now),
            // The broker's own `$SYS` values are left out, as from
            // `retained.count`; a `$SYS/…` filter lists them.
            None => store.all().into_iter().filter(|m| !m.expired(now) && !is_sys(&m.topic)).collect(),
        };
        let mut rows: Vec<RetainedListed> = msgs
            .iter()
            .map(|m| RetainedListed {
                summary: summary(m, now),
                payload_preview: base64::engine::general_purpose::STANDARD
                    .encode(&m.payload[..m.payload.len().min(PREVIEW_BYTES)]),
            })
            .collect();
        rows.sort_by(|a, b| a.summary.topic.cmp(&b.summary.topic));
        let p = paginate(rows, page, limit);
        RetainedPage { data: p.data, meta: p.meta }
    })
    .await?;
    Ok(Json(out))
}

fn not_found() -> ApiError {
    ApiError::not_found("NOT_FOUND", "no retained message on this topic")
}

/// The retained message of one topic.
#[utoipa::path(get, path = "/api/v5/mqtt/retainer/message/{topic}", tag = "Retainer",
    params(("topic" = String, Path, description = "Topic name, percent-encoded", pattern = "^[^+#]+$")),
    responses((status = 200, body = RetainedMessage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(State(ctx): State<Arc<Ctx>>, Path(topic): Path<String>) -> Result<Json<RetainedMessage>, ApiError> {
    TopicName::new(&topic).map_err(|e| {
        ApiError::bad_request(format!("{e}: a topic name (to list by filter: /mqtt/retainer/messages?topic=)"))
    })?;
    let now = Instant::now();
    let m = ctx.node.broker.retained.get(&topic).filter(|m| !m.expired(now)).ok_or_else(not_found)?;
    Ok(Json(RetainedMessage {
        summary: summary(&m, now),
        payload: base64::engine::general_purpose::STANDARD.encode(&m.payload),
    }))
}

/// Deletes the retained message of a topic, or of every topic a filter
/// (`+`, `#`) matches.
#[utoipa::path(delete, path = "/api/v5/mqtt/retainer/message/{topic}", tag = "Retainer",
    params(("topic" = String, Path, description = "Topic name or filter, percent-encoded")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(State(ctx): State<Arc<Ctx>>, Path(topic): Path<String>) -> Result<StatusCode, ApiError> {
    let broker = &ctx.node.broker;
    let removed = match TopicName::new(&topic) {
        Ok(_) => usize::from(broker.retained.remove(&topic)),
        Err(_) => {
            let filter = TopicFilter::new(&topic).map_err(|e| ApiError::bad_request(format!("topic: {e}")))?;
            let store = &broker.retained;
            let matching = store.matching(&filter, Instant::now());
            matching.iter().filter(|m| store.remove(m.topic.as_str())).count()
        }
    };
    broker.metrics.retained.set(broker.retained.len() as u64);
    if removed == 0 {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes every retained message of clients (not the broker's `$SYS`
/// values).
#[utoipa::path(delete, path = "/api/v5/mqtt/retainer/messages", tag = "Retainer",
    responses((status = 204, description = "Deleted")))]
pub async fn delete_all(State(ctx): State<Arc<Ctx>>) -> Result<StatusCode, ApiError> {
    tokio::task::spawn_blocking(move || {
        let broker = &ctx.node.broker;
        for m in broker.retained.all().iter().filter(|m| !is_sys(&m.topic)) {
            broker.retained.remove(m.topic.as_str());
        }
        broker.metrics.retained.set(broker.retained.len() as u64);
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
