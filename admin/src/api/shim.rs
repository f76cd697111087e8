//! emqttd 1.x's `POST /mqtt/publish`: a form (`client`, `qos`, `retain`,
//! `topic`, `message`) with the publisher's MQTT username and password as
//! HTTP Basic credentials. As emqttd did, the credentials go through the
//! MQTT auth chain — here the one of `[admin] mqtt_publish_listener`, with
//! its cache and brute-force guard, exactly as a CONNECT from the same
//! address — and the topic through that listener's ACL chain. Then the
//! message is published as an MQTT client's would be (publish hooks,
//! retained store, router). No API key is involved.
//!
//! Answers: 200 `ok`; 400 for a bad form; 401 for missing or refused
//! credentials; 403 when the ACL denies the topic; 404 when the form is
//! off; 503 when the auth chain's backend failed or the broker is
//! shutting down.

use std::sync::Arc;

use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use portcullis_core::codec::{Properties, ProtocolVersion, QoS};
use portcullis_core::gate::{Access, AclOutcome, AuthOutcome, ClientInfo, ConnectInfo as MqttConnect, Gate, Password};
use portcullis_core::inject::{OutsideMessage, Prepared};
use portcullis_core::logsafe::{Peer, PeerOpt};
use portcullis_core::topic::TopicName;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::access::basic_credentials;
use crate::error::{ApiError, ErrorBody, Form};
use crate::server::PeerAddr;
use crate::Ctx;

/// emqttd's form fields.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct PublishForm {
    /// The publisher's client id; default `http`.
    pub client: Option<String>,
    /// 0, 1 or 2; default 0.
    pub qos: Option<String>,
    /// `0`/`1` (or `false`/`true`); default 0.
    pub retain: Option<String>,
    /// A topic name.
    pub topic: String,
    /// The payload, as text.
    pub message: String,
}

fn unauthorized(message: &str) -> Response {
    let mut res = ApiError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"mqtt\""));
    res
}

/// Publishes emqttd's form (see the module docs).
#[utoipa::path(post, path = "/mqtt/publish", tag = "Publish",
    request_body(content = PublishForm, content_type = "application/x-www-form-urlencoded"),
    security(("mqtt_basic" = [])),
    responses(
        (status = 200, description = "`ok`", body = String, content_type = "text/plain"),
        (status = 400, description = "Bad form", body = ErrorBody),
        (status = 401, description = "Missing or refused credentials", body = ErrorBody),
        (status = 403, description = "The ACL denies the topic", body = ErrorBody),
        (status = 404, description = "The form is off (`admin.mqtt_publish_listener` unset)", body = ErrorBody),
        (status = 503, description = "The auth backend failed, or the broker is shutting down", body = ErrorBody),
    ))]
pub async fn mqtt_publish(
    State(ctx): State<Arc<Ctx>>,
    ConnectInfo(PeerAddr(peer)): ConnectInfo<PeerAddr>,
    headers: HeaderMap,
    Form(form): Form<PublishForm>,
) -> Response {
    let Some((listener, gw)) = &ctx.shim else {
        return ApiError::not_found("NOT_FOUND", "the emqttd publish form is off ([admin] mqtt_publish_listener)")
            .into_response();
    };
    let Some((username, password)) = headers.get(header::AUTHORIZATION).and_then(basic_credentials) else {
        return unauthorized("MQTT credentials are required (HTTP Basic: username:password)");
    };
    let client_id: Arc<str> = Arc::from(form.client.as_deref().filter(|c| !c.is_empty()).unwrap_or("http"));
    let info = MqttConnect {
        client_id: Arc::clone(&client_id),
        username: (!username.is_empty()).then(|| Arc::from(username.as_str())),
        password: (!password.is_empty()).then(|| Password::new(Bytes::from(password))),
        peer,
        listener: Arc::from(listener.as_str()),
        protocol: ProtocolVersion::V311.into(),
        cert: None,
    };
    let (superuser, context) = match portcullis::gateway::authenticate(&gw.auth, &gw.shared, &info).await.1 {
        AuthOutcome::Allow { superuser, context, .. } => (superuser, context),
        AuthOutcome::Deny(reason) => {
            if let Some(suppressed) = gw.shared.refusal_log.allow() {
                tracing::info!(client_id = %Peer(&client_id), username = %PeerOpt(info.username.as_deref()), %peer, ?reason, suppressed, "emqttd publish form: authentication refused");
            }
            return unauthorized("authentication refused");
        }
        AuthOutcome::Unavailable => return ApiError::unavailable("authentication unavailable").into_response(),
    };
    let qos = match form.qos.as_deref().unwrap_or("0") {
        "0" => QoS::AtMostOnce,
        "1" => QoS::AtLeastOnce,
        "2" => QoS::ExactlyOnce,
        other => return ApiError::bad_request(format!("qos: 0, 1 or 2, not {other:?}")).into_response(),
    };
    let retain = match form.retain.as_deref().unwrap_or("0") {
        "0" | "false" => false,
        "1" | "true" => true,
        other => return ApiError::bad_request(format!("retain: 0 or 1, not {other:?}")).into_response(),
    };
    let topic = match TopicName::new(&form.topic) {
        Ok(t) => t,
        Err(e) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "TOPIC_NAME_INVALID", format!("topic: {e}")).into_response()
        }
    };
    let broker = &ctx.node.broker;
    if retain && !broker.retained.enabled() {
        return ApiError::bad_request("retain: the retained store is off").into_response();
    }
    if form.message.len() + form.topic.len() > broker.settings.limits.max_packet_size as usize {
        return ApiError::bad_request("message: larger than limits.max_packet_size").into_response();
    }
    if broker.is_shutting_down() {
        return ApiError::unavailable("the broker is shutting down").into_response();
    }
    let client = ClientInfo {
        client_id,
        username: info.username.clone(),
        peer,
        listener: Arc::from(listener.as_str()),
        protocol: ProtocolVersion::V311.into(),
        superuser,
        context,
        conn_id: broker.next_conn_id(),
        cert: None,
        connected_at: ClientInfo::now_millis(),
        keep_alive: 0,
    };
    let msg = OutsideMessage {
        topic,
        payload: Bytes::from(form.message.into_bytes()),
        qos,
        retain,
        properties: Properties::default(),
        expiry: None,
    };
    let ready = match broker.prepare_publish(&client, msg) {
        Prepared::Ready(r) => r,
        Prepared::Dropped(code) if code.is_error() => {
            return ApiError::bad_request(format!("dropped by a module (reason code {})", code.code())).into_response()
        }
        Prepared::Dropped(_) => return ok(),
    };
    let m = ready.message();
    // As for an MQTT client: only the broker publishes under $SYS.
    let allowed = if m.topic.as_str() == "$SYS" || m.topic.as_str().starts_with("$SYS/") {
        AclOutcome::Deny
    } else {
        gw.authorize(&client, Access::Publish { topic: &m.topic, qos: m.qos, retain: m.retain }).await
    };
    if allowed != AclOutcome::Allow {
        broker.refuse_publish(ready);
        return ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "the ACL denies publishing to this topic")
            .into_response();
    }
    broker.complete_publish(ready);
    ok()
}

fn ok() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}
