//! HTTP publish, EMQX's `POST /publish` and `/publish/bulk`: a message
//! goes through the publish hooks, the retained store and the router
//! ([`portcullis_core::inject`]); no ACL (the key's role decides who may
//! publish). Status codes: 200 with the message id when it reached a
//! subscriber (or a hook took it to publish later); 202 with reason code
//! 16 when no subscriber matched; 400 with the reason code for a message
//! that cannot be published (nothing of a bulk is published then); 503
//! while the broker shuts down, and with reason code 151 (0x97) when the
//! durable store could not take a message a module stores (a delayed
//! publish): the answer waits for that commit.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use portcullis_core::broker::Routed;
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::codec::{Properties, ProtocolVersion, QoS};
use portcullis_core::gate::ClientInfo;
use portcullis_core::inject::{OutsideMessage, Prepared, Published};
use portcullis_core::topic::TopicName;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Json;
use crate::server::PeerAddr;
use crate::Ctx;

/// Messages in one bulk publish at most.
pub const MAX_BULK: usize = 1000;

/// `plain` or `base64`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PayloadEncoding {
    #[default]
    Plain,
    Base64,
}

/// MQTT 5 properties forwarded with the message.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishProperties {
    /// 0 unspecified bytes, 1 UTF-8 text.
    #[schema(minimum = 0, maximum = 1)]
    pub payload_format_indicator: Option<u8>,
    /// Seconds; the message is dropped undelivered after it.
    #[schema(value_type = Option<u64>, minimum = 0, maximum = 4294967295_u64)]
    pub message_expiry_interval: Option<u32>,
    /// A topic name.
    #[schema(min_length = 1, pattern = "^[^+#]+$")]
    pub response_topic: Option<String>,
    pub correlation_data: Option<String>,
    pub user_properties: Option<BTreeMap<String, String>>,
    pub content_type: Option<String>,
}

/// A message to publish.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishMessage {
    /// A topic name (no wildcards; not under `$SYS`).
    #[schema(example = "api/example/topic", min_length = 1, pattern = "^[^+#]+$")]
    pub topic: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub qos: u8,
    /// Deprecated by EMQX; the publisher's client id (for No Local and
    /// the publish hooks). Default `http_api`.
    pub clientid: Option<String>,
    pub payload: String,
    #[serde(default)]
    pub payload_encoding: PayloadEncoding,
    pub properties: Option<PublishProperties>,
    #[serde(default)]
    pub retain: bool,
}

/// Published: the message id.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishOk {
    /// A unique id for correlation (logged at debug level with the topic).
    pub id: String,
}

/// Not (or not fully) published: the MQTT reason code and its name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishError {
    /// 16 no matching subscribers; 131 implementation specific error.
    #[schema(example = 16)]
    pub reason_code: u8,
    #[schema(example = "no_matching_subscribers")]
    pub message: String,
}

/// A message that cannot be published: 400.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PublishBadRequest {
    /// The reason in UPPER_SNAKE (`TOPIC_NAME_INVALID`, …).
    pub code: String,
    pub message: String,
    /// The MQTT reason code (144 topic name invalid, 151 quota exceeded,
    /// 153 payload format invalid, 154 retain not supported, 155 QoS not
    /// supported); absent when the body is not a message at all (bad JSON,
    /// unknown field).
    #[schema(required = false)]
    pub reason_code: u8,
}

/// One result of a bulk publish.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(untagged)]
pub enum PublishResult {
    Ok(PublishOk),
    Error(PublishError),
}

/// `TopicNameInvalid` → `TOPIC_NAME_INVALID`.
pub fn reason_name(code: ReasonCode) -> String {
    let mut out = String::new();
    for (i, c) in format!("{code:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn bad(code: ReasonCode, message: impl Into<String>) -> PublishBadRequest {
    PublishBadRequest { code: reason_name(code), message: message.into(), reason_code: code.code() }
}

impl IntoResponse for PublishBadRequest {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, axum::Json(self)).into_response()
    }
}

/// Checks a message and builds what the broker publishes.
pub fn outside_message(ctx: &Ctx, m: &PublishMessage) -> Result<OutsideMessage, PublishBadRequest> {
    let broker = &ctx.node.broker;
    let topic = TopicName::new(&m.topic).map_err(|e| bad(ReasonCode::TopicNameInvalid, format!("topic: {e}")))?;
    if topic.as_str() == "$SYS" || topic.as_str().starts_with("$SYS/") {
        return Err(bad(ReasonCode::TopicNameInvalid, "topic: only the broker publishes under $SYS"));
    }
    if topic.has_more_levels_than(broker.settings.limits.max_topic_levels) {
        return Err(bad(ReasonCode::TopicNameInvalid, "topic: more levels than limits.max_topic_levels"));
    }
    let qos = QoS::from_u8(m.qos).ok_or_else(|| bad(ReasonCode::QosNotSupported, "qos: 0, 1 or 2"))?;
    if m.retain && !broker.retained.enabled() {
        return Err(bad(ReasonCode::RetainNotSupported, "retain: the retained store is off (retained.enabled)"));
    }
    let payload = match m.payload_encoding {
        PayloadEncoding::Plain => Bytes::from(m.payload.clone().into_bytes()),
        PayloadEncoding::Base64 => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(m.payload.as_bytes())
                .map_err(|e| bad(ReasonCode::PayloadFormatInvalid, format!("payload: not base64: {e}")))?,
        ),
    };
    let p = m.properties.clone().unwrap_or_default();
    if let Some(i) = p.payload_format_indicator {
        if i > 1 {
            return Err(bad(ReasonCode::PayloadFormatInvalid, "payload_format_indicator: 0 or 1"));
        }
        if i == 1 && std::str::from_utf8(&payload).is_err() {
            return Err(bad(
                ReasonCode::PayloadFormatInvalid,
                "payload_format_indicator is 1 but the payload is not UTF-8",
            ));
        }
    }
    if let Some(t) = &p.response_topic {
        TopicName::new(t).map_err(|e| bad(ReasonCode::TopicNameInvalid, format!("response_topic: {e}")))?;
    }
    let user_properties: Vec<(String, String)> = p.user_properties.unwrap_or_default().into_iter().collect();
    if user_properties.len() > broker.settings.limits.max_user_properties as usize {
        return Err(bad(ReasonCode::QuotaExceeded, "user_properties: more than limits.max_user_properties"));
    }
    let size = topic.as_str().len()
        + payload.len()
        + p.response_topic.as_ref().map_or(0, String::len)
        + p.correlation_data.as_ref().map_or(0, String::len)
        + p.content_type.as_ref().map_or(0, String::len)
        + user_properties.iter().map(|(k, v)| k.len() + v.len() + 4).sum::<usize>();
    if size > broker.settings.limits.max_packet_size as usize {
        return Err(bad(ReasonCode::QuotaExceeded, "packet_too_large: larger than limits.max_packet_size"));
    }
    let properties = Properties {
        payload_format_indicator: p.payload_format_indicator,
        content_type: p.content_type,
        response_topic: p.response_topic,
        correlation_data: p.correlation_data.map(|c| Bytes::from(c.into_bytes())),
        user_properties,
        ..Properties::default()
    };
    Ok(OutsideMessage {
        topic,
        payload,
        qos,
        retain: m.retain,
        properties,
        expiry: p.message_expiry_interval.map(|s| Duration::from_secs(u64::from(s))),
    })
}

/// The identity an API publish is made under.
fn api_client(ctx: &Ctx, client_id: Option<&str>, peer: SocketAddr) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(client_id.unwrap_or("http_api")),
        username: None,
        peer,
        listener: Arc::from("admin"),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: ctx.node.broker.next_conn_id(),
        cert: None,
        connected_at: ClientInfo::now_millis(),
        keep_alive: 0,
    }
}

pub fn message_id() -> String {
    let mut b = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02X}")).collect()
}

/// Publishes one checked message: (status, body). A message a hook took
/// and wrote to the durable store (`$delayed/…`) is answered once the
/// store has it: 503 with reason code 0x97 if the commit failed.
async fn publish_one(ctx: &Ctx, from: &ClientInfo, m: OutsideMessage) -> (u16, PublishResult) {
    let broker = &ctx.node.broker;
    if broker.is_shutting_down() {
        let code = ReasonCode::ServerShuttingDown;
        return (
            503,
            PublishResult::Error(PublishError { reason_code: code.code(), message: reason_name(code).to_lowercase() }),
        );
    }
    let id = message_id();
    let topic = m.topic.clone();
    let outcome = match broker.prepare_publish(from, m) {
        Prepared::Ready(ready) => {
            let (outcome, commit) = broker.complete_publish_stored(ready);
            if let Some(commit) = commit {
                if let Err(e) = commit.await {
                    tracing::warn!(id = %id, topic = %portcullis_core::logsafe::Peer(topic.as_str()), error = %e, "admin API: publish refused: the durable store failed");
                    let code = ReasonCode::QuotaExceeded;
                    let message =
                        format!("store_failed: the durable store could not take the message (not stored; held in memory only): {e}");
                    return (503, PublishResult::Error(PublishError { reason_code: code.code(), message }));
                }
            }
            outcome
        }
        Prepared::Dropped(ReasonCode::Success) => Published::Taken,
        Prepared::Dropped(code) if !code.is_error() => Published::Routed(Routed::default()),
        Prepared::Dropped(code) => {
            return (
                400,
                PublishResult::Error(PublishError {
                    reason_code: code.code(),
                    message: reason_name(code).to_lowercase(),
                }),
            );
        }
    };
    tracing::debug!(id = %id, topic = %portcullis_core::logsafe::Peer(topic.as_str()), outcome = ?outcome, "admin API: published");
    match outcome {
        Published::Routed(r) if !r.matched() => {
            let code = ReasonCode::NoMatchingSubscribers;
            (
                202,
                PublishResult::Error(PublishError {
                    reason_code: code.code(),
                    message: reason_name(code).to_lowercase(),
                }),
            )
        }
        Published::Routed(_) | Published::Taken => (200, PublishResult::Ok(PublishOk { id })),
    }
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Publishes a message.
#[utoipa::path(post, path = "/api/v5/publish", tag = "Publish", request_body = PublishMessage,
    responses(
        (status = 200, description = "Delivered to at least one subscriber", body = PublishOk),
        (status = 202, description = "No subscriber matched", body = PublishError),
        (status = 400, description = "Cannot be published", body = PublishBadRequest),
        (status = 503, description = "The broker is shutting down, or the durable store could not take a message a module stores (`$delayed/…`): reason code 151", body = PublishError),
    ))]
pub async fn publish(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Json(m): Json<PublishMessage>,
) -> Response {
    let msg = match outside_message(&ctx, &m) {
        Ok(msg) => msg,
        Err(e) => return e.into_response(),
    };
    let from = api_client(&ctx, m.clientid.as_deref(), peer);
    let (code, body) = publish_one(&ctx, &from, msg).await;
    (status(code), axum::Json(body)).into_response()
}

/// Publishes several messages, in order. All are checked first: one that
/// cannot be published fails the request (400) and none is published.
/// 200 when each reached a subscriber, 503 if the broker shut down, else
/// 202; the body has one result per message.
#[utoipa::path(post, path = "/api/v5/publish/bulk", tag = "Publish", request_body = Vec<PublishMessage>,
    responses(
        (status = 200, description = "Each delivered", body = [PublishResult]),
        (status = 202, description = "Some matched no subscriber", body = [PublishResult]),
        (status = 400, description = "A message cannot be published", body = PublishBadRequest),
        (status = 503, description = "The broker is shutting down", body = [PublishResult]),
    ))]
pub async fn publish_bulk(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    Json(ms): Json<Vec<PublishMessage>>,
) -> Response {
    if ms.is_empty() || ms.len() > MAX_BULK {
        return bad(ReasonCode::QuotaExceeded, format!("1 to {MAX_BULK} messages")).into_response();
    }
    let mut checked = Vec::with_capacity(ms.len());
    for (i, m) in ms.iter().enumerate() {
        match outside_message(&ctx, m) {
            Ok(msg) => checked.push((m.clientid.clone(), msg)),
            Err(mut e) => {
                e.message = format!("message {i}: {}", e.message);
                return e.into_response();
            }
        }
    }
    let mut codes = Vec::new();
    let mut bodies = Vec::new();
    for (client_id, msg) in checked {
        let from = api_client(&ctx, client_id.as_deref(), peer);
        let (code, body) = publish_one(&ctx, &from, msg).await;
        codes.push(code);
        bodies.push(body);
    }
    let code = if codes.iter().all(|c| *c == 200) {
        200
    } else if codes.contains(&503) {
        503
    } else {
        202
    };
    (status(code), axum::Json(bodies)).into_response()
}
