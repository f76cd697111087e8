//! Clients (sessions, connected or not): list with EMQX's filters, get,
//! kick (`DELETE`, v5 DISCONNECT 0x98), bulk kick; a client's
//! subscriptions, subscribe and unsubscribe on its behalf.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_core::codec::{QoS, RetainHandling, SubscriptionOptions};
use portcullis_core::introspect::{Removed, SessionView, SubscriptionView};
use portcullis_core::owner::SessionOwner;
use portcullis_core::topic::SubscriptionFilter;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{paginate, Meta, PageParams};
use crate::Ctx;

/// A client: its session, and its connection when it has one.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Client {
    pub clientid: String,
    /// The username of the connection, or of the session's identity.
    pub username: Option<String>,
    /// Who the session belongs to (`user alice`, `cert CN=…`,
    /// `anonymous on tcp`).
    pub owner: String,
    pub connected: bool,
    /// Of the connection, or of the last one when disconnected.
    pub ip_address: Option<String>,
    pub port: Option<u16>,
    pub listener: Option<String>,
    /// `MQTT` (`MQIsdp` for 3.1), `STOMP`.
    pub proto_name: Option<String>,
    /// 3 (3.1), 4 (3.1.1) or 5; null for a STOMP client (see
    /// `protocol_version`).
    pub proto_ver: Option<u8>,
    /// `mqtt` or `stomp` (a client of the STOMP gateway).
    pub protocol: Option<String>,
    /// `3.1`, `3.1.1`, `5.0`; `1.0`, `1.1`, `1.2` for STOMP.
    pub protocol_version: Option<String>,
    pub keepalive: Option<u16>,
    pub is_superuser: Option<bool>,
    /// RFC 3339, milliseconds.
    pub connected_at: Option<String>,
    /// Session expiry after disconnect, seconds; null: never.
    pub expiry_interval: Option<u64>,
    pub subscriptions_cnt: u64,
    /// `limits.max_subscriptions`; null: unlimited.
    pub subscriptions_max: Option<u64>,
    pub inflight_cnt: u64,
    pub inflight_max: u64,
    pub mqueue_len: u64,
    pub mqueue_max: u64,
    /// Messages the full queue dropped.
    pub mqueue_dropped: u64,
    pub awaiting_rel_cnt: u64,
    pub awaiting_rel_max: u64,
    pub node: String,
}

fn client(ctx: &Ctx, v: &SessionView) -> Client {
    let s = &ctx.node.broker.settings;
    let c = v.client.as_deref();
    let owner_user = match &v.owner {
        SessionOwner::User(u) => Some(u.to_string()),
        _ => None,
    };
    Client {
        clientid: v.client_id.to_string(),
        username: c.and_then(|c| c.username.as_deref().map(str::to_string)).or(owner_user),
        owner: v.owner.to_string(),
        connected: v.connected,
        ip_address: c.map(|c| crate::access::canonical(c.peer).to_string()),
        port: c.map(|c| c.peer.port()),
        listener: c.map(|c| c.listener.to_string()),
        proto_name: c.map(|c| c.protocol.name().to_string()),
        proto_ver: c.and_then(|c| c.protocol.mqtt_level()),
        protocol: c.map(|c| c.protocol.family().to_string()),
        protocol_version: c.map(|c| c.protocol.version().to_string()),
        keepalive: c.map(|c| c.keep_alive),
        is_superuser: c.map(|c| c.superuser),
        connected_at: c
            .map(|c| humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(c.connected_at)).to_string()),
        expiry_interval: v.expiry.map(|d| d.as_secs()),
        subscriptions_cnt: v.subscriptions as u64,
        subscriptions_max: (s.limits.max_subscriptions != 0).then_some(s.limits.max_subscriptions as u64),
        inflight_cnt: v.inflight as u64,
        inflight_max: u64::from(s.session.max_inflight),
        mqueue_len: v.queued as u64,
        mqueue_max: s.session.max_queue_len as u64,
        mqueue_dropped: v.dropped,
        awaiting_rel_cnt: v.awaiting_rel as u64,
        awaiting_rel_max: u64::from(s.session.max_awaiting_rel),
        node: s.node_name.clone(),
    }
}

/// EMQX's filters of `/clients`; all given must match.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ClientFilters {
    /// This client id exactly.
    pub clientid: Option<String>,
    /// This username exactly.
    pub username: Option<String>,
    /// Connected from this address.
    pub ip_address: Option<String>,
    /// `connected` or `disconnected`.
    pub conn_state: Option<ConnState>,
    /// 3 (3.1), 4 (3.1.1) or 5.
    #[param(minimum = 3, maximum = 5)]
    pub proto_ver: Option<u8>,
    /// Client ids containing this.
    pub like_clientid: Option<String>,
    /// Usernames containing this.
    pub like_username: Option<String>,
    /// This node only.
    pub node: Option<String>,
}

/// A client's connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConnState {
    Connected,
    Disconnected,
}

impl ClientFilters {
    /// Checks the values and drops the empty ones (`?clientid=`).
    fn check(mut self) -> Result<ClientFilters, ApiError> {
        use crate::page::given;
        self.clientid = given(self.clientid);
        self.username = given(self.username);
        self.ip_address = given(self.ip_address);
        self.like_clientid = given(self.like_clientid);
        self.like_username = given(self.like_username);
        self.node = given(self.node);
        if let Some(v) = self.proto_ver {
            if !(3..=5).contains(&v) {
                return Err(ApiError::bad_request(format!("proto_ver: 3, 4 or 5, not {v}")));
            }
        }
        if let Some(ip) = &self.ip_address {
            ip.parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::bad_request(format!("ip_address: not an IP address: {ip:?}")))?;
        }
        Ok(self)
    }

    fn matches(&self, c: &Client) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        let like = |want: &Option<String>, have: Option<&str>| {
            want.as_deref().is_none_or(|w| have.is_some_and(|h| h.contains(w)))
        };
        let ip_eq = self.ip_address.as_deref().is_none_or(|w| {
            let want = w.parse::<std::net::IpAddr>().ok();
            c.ip_address.as_deref().and_then(|h| h.parse().ok()).is_some_and(|h: std::net::IpAddr| Some(h) == want)
        });
        eq(&self.clientid, Some(&c.clientid))
            && eq(&self.username, c.username.as_deref())
            && ip_eq
            && self.conn_state.is_none_or(|s| (s == ConnState::Connected) == c.connected)
            && self.proto_ver.is_none_or(|v| c.proto_ver == Some(v))
            && like(&self.like_clientid, Some(&c.clientid))
            && like(&self.like_username, c.username.as_deref())
            && eq(&self.node, Some(&c.node))
    }
}

/// A page of clients.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientsPage {
    pub data: Vec<Client>,
    pub meta: Meta,
}

/// Every session, connected or not, by client id, with EMQX's filters.
#[utoipa::path(get, path = "/api/v5/clients", tag = "Clients", params(PageParams, ClientFilters),
    responses((status = 200, body = ClientsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Query(page): Query<PageParams>,
    Query(f): Query<ClientFilters>,
) -> Result<Json<ClientsPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let f = f.check()?;
    let out = tokio::task::spawn_blocking(move || {
        let mut rows: Vec<Client> =
            ctx.node.broker.session_views().iter().map(|v| client(&ctx, v)).filter(|c| f.matches(c)).collect();
        rows.sort_by(|a, b| a.clientid.cmp(&b.clientid));
        let p = paginate(rows, page, limit);
        ClientsPage { data: p.data, meta: p.meta }
    })
    .await?;
    Ok(Json(out))
}

fn client_not_found(id: &str) -> ApiError {
    ApiError::not_found("CLIENTID_NOT_FOUND", format!("no client {:?}", portcullis_core::logsafe::Peer(id).to_string()))
}

/// One client.
#[utoipa::path(get, path = "/api/v5/clients/{clientid}", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")),
    responses((status = 200, body = Client), (status = 404, body = ErrorBody)))]
pub async fn get(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Result<Json<Client>, ApiError> {
    let v = ctx.node.broker.session_view(&id).ok_or_else(|| client_not_found(&id))?;
    Ok(Json(client(&ctx, &v)))
}

/// Ends a client's session: a connected client is disconnected (v5:
/// DISCONNECT 0x98 Administrative action) and its session ends with it.
async fn remove(ctx: &Ctx, id: &str) -> Removed {
    // A connection being established holds the session for a moment.
    for _ in 0..50 {
        match ctx.node.broker.remove_session(id) {
            Removed::Busy => tokio::time::sleep(Duration::from_millis(20)).await,
            done => return done,
        }
    }
    Removed::Busy
}

/// Kicks a client (v5: DISCONNECT 0x98) and ends its session; a session
/// without a connection just ends.
#[utoipa::path(delete, path = "/api/v5/clients/{clientid}", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")),
    responses((status = 204, description = "Kicked"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn kick(State(ctx): State<Arc<Ctx>>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    match remove(&ctx, &id).await {
        Removed::Kicked | Removed::Discarded => {
            tracing::info!(client_id = %portcullis_core::logsafe::Peer(&id), "admin API: client kicked");
            Ok(StatusCode::NO_CONTENT)
        }
        Removed::NotFound => Err(client_not_found(&id)),
        Removed::Busy => Err(ApiError::unavailable("the client is connecting; try again")),
    }
}

/// Kicks several clients (unknown ids are skipped).
#[utoipa::path(post, path = "/api/v5/clients/kickout/bulk", tag = "Clients", request_body = Vec<String>,
    responses((status = 204, description = "Kicked"), (status = 400, body = ErrorBody)))]
pub async fn kick_bulk(State(ctx): State<Arc<Ctx>>, Json(ids): Json<Vec<String>>) -> StatusCode {
    for id in &ids {
        let _ = remove(&ctx, id).await;
    }
    tracing::info!(clients = ids.len(), "admin API: clients kicked");
    StatusCode::NO_CONTENT
}

/// One subscription.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Subscription {
    pub clientid: String,
    /// The filter as subscribed (`$share/<group>/…` included).
    pub topic: String,
    pub qos: u8,
    /// No Local, 0 or 1.
    pub nl: u8,
    /// Retain As Published, 0 or 1.
    pub rap: u8,
    /// Retain Handling, 0 to 2.
    pub rh: u8,
    pub node: String,
}

pub fn subscription(node: &str, v: &SubscriptionView) -> Subscription {
    Subscription {
        clientid: v.client_id.to_string(),
        topic: v.filter.to_string(),
        qos: v.options.qos as u8,
        nl: u8::from(v.options.no_local),
        rap: u8::from(v.options.retain_as_published),
        rh: v.options.retain_handling as u8,
        node: node.to_string(),
    }
}

/// A client's subscriptions, by topic.
#[utoipa::path(get, path = "/api/v5/clients/{clientid}/subscriptions", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")),
    responses((status = 200, body = [Subscription]), (status = 404, body = ErrorBody)))]
pub async fn subscriptions(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    let broker = &ctx.node.broker;
    if broker.find_session(&id).is_none() {
        return Err(client_not_found(&id));
    }
    let node = &broker.settings.node_name;
    let mut out: Vec<Subscription> =
        broker.subscription_views(Some(&id)).iter().map(|v| subscription(node, v)).collect();
    out.sort_by(|a, b| a.topic.cmp(&b.topic));
    Ok(Json(out))
}

/// A subscription to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscribeBody {
    /// A topic filter (`$share/<group>/…` for a shared one).
    #[schema(example = "sensors/#", min_length = 1)]
    pub topic: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub qos: u8,
    /// No Local, 0 or 1.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub nl: u8,
    /// Retain As Published, 0 or 1.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 1)]
    pub rap: u8,
    /// Retain Handling: 0 send retained messages, 1 only for a new
    /// subscription, 2 never.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub rh: u8,
}

fn parse_subscribe(b: &SubscribeBody) -> Result<(SubscriptionFilter, SubscriptionOptions), ApiError> {
    let filter =
        SubscriptionFilter::parse(&b.topic).map_err(|e| ApiError::bad_request(format!("topic {:?}: {e}", b.topic)))?;
    let qos = QoS::from_u8(b.qos).ok_or_else(|| ApiError::bad_request("qos: 0, 1 or 2"))?;
    let retain_handling = match b.rh {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(ApiError::bad_request("rh: 0, 1 or 2")),
    };
    if b.nl > 1 || b.rap > 1 {
        return Err(ApiError::bad_request("nl and rap: 0 or 1"));
    }
    if b.nl == 1 && filter.is_shared() {
        return Err(ApiError::bad_request("nl: a shared subscription cannot be No Local"));
    }
    Ok((filter, SubscriptionOptions { qos, no_local: b.nl == 1, retain_as_published: b.rap == 1, retain_handling }))
}

fn do_subscribe(ctx: &Ctx, id: &str, bodies: &[SubscribeBody]) -> Result<Vec<Subscription>, ApiError> {
    let parsed = bodies.iter().map(parse_subscribe).collect::<Result<Vec<_>, _>>()?;
    let broker = &ctx.node.broker;
    let mut out = Vec::new();
    for ((filter, options), b) in parsed.into_iter().zip(bodies) {
        broker.subscribe_for(id, filter, options).ok_or_else(|| client_not_found(id))?;
        out.push(Subscription {
            clientid: id.to_string(),
            topic: b.topic.clone(),
            qos: b.qos,
            nl: b.nl,
            rap: b.rap,
            rh: b.rh,
            node: broker.settings.node_name.clone(),
        });
    }
    Ok(out)
}

/// Subscribes a client (no ACL check: the operator decides). Retained
/// messages are sent as `rh` says.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")), request_body = SubscribeBody,
    responses((status = 200, body = Subscription), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn subscribe(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(body): Json<SubscribeBody>,
) -> Result<Json<Subscription>, ApiError> {
    let mut out = do_subscribe(&ctx, &id, std::slice::from_ref(&body))?;
    out.pop().map(Json).ok_or_else(|| ApiError::internal("no subscription made"))
}

/// Subscribes a client to several filters (all checked before any is
/// added).
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/subscribe/bulk", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")), request_body = Vec<SubscribeBody>,
    responses((status = 200, body = [Subscription]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn subscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(bodies): Json<Vec<SubscribeBody>>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    Ok(Json(do_subscribe(&ctx, &id, &bodies)?))
}

/// A subscription to remove.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsubscribeBody {
    /// The filter exactly as subscribed.
    #[schema(min_length = 1)]
    pub topic: String,
}

fn do_unsubscribe(ctx: &Ctx, id: &str, topics: &[UnsubscribeBody]) -> Result<StatusCode, ApiError> {
    for t in topics {
        ctx.node.broker.unsubscribe_for(id, &t.topic).ok_or_else(|| client_not_found(id))?;
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Removes a client's subscription (none to remove is not an error).
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")), request_body = UnsubscribeBody,
    responses((status = 204, description = "Unsubscribed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(body): Json<UnsubscribeBody>,
) -> Result<StatusCode, ApiError> {
    do_unsubscribe(&ctx, &id, std::slice::from_ref(&body))
}

/// Removes several subscriptions of a client.
#[utoipa::path(post, path = "/api/v5/clients/{clientid}/unsubscribe/bulk", tag = "Clients",
    params(("clientid" = String, Path, description = "Client id, percent-encoded")), request_body = Vec<UnsubscribeBody>,
    responses((status = 204, description = "Unsubscribed"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unsubscribe_bulk(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(bodies): Json<Vec<UnsubscribeBody>>,
) -> Result<StatusCode, ApiError> {
    do_unsubscribe(&ctx, &id, &bodies)
}
