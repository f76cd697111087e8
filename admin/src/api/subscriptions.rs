//! Every subscription (EMQX's filters) and the topics subscribed to.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use portcullis_core::topic::{SubscriptionFilter, TopicName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::clients::{subscription, Subscription};
use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{paginate, Meta, PageParams};
use crate::Ctx;

/// EMQX's filters of `/subscriptions`; all given must match.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionFilters {
    /// Of this client.
    pub clientid: Option<String>,
    /// This filter exactly (as subscribed; for a shared subscription, the
    /// filter after `$share/<group>/`).
    pub topic: Option<String>,
    /// At this QoS.
    #[param(minimum = 0, maximum = 2)]
    pub qos: Option<u8>,
    /// Shared, in this group.
    pub share_group: Option<String>,
    /// Whose filter matches this topic name (no wildcards).
    #[param(pattern = "^[^+#]*$")]
    pub match_topic: Option<String>,
    /// This node only.
    pub node: Option<String>,
}

/// A page of subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionsPage {
    pub data: Vec<Subscription>,
    pub meta: Meta,
}

/// Every subscription, by client id and topic, with EMQX's filters.
#[utoipa::path(get, path = "/api/v5/subscriptions", tag = "Subscriptions", params(PageParams, SubscriptionFilters),
    responses((status = 200, body = SubscriptionsPage), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Query(page): Query<PageParams>,
    Query(f): Query<SubscriptionFilters>,
) -> Result<Json<SubscriptionsPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let mut f = f;
    f.clientid = crate::page::given(f.clientid);
    f.topic = crate::page::given(f.topic);
    f.share_group = crate::page::given(f.share_group);
    f.match_topic = crate::page::given(f.match_topic);
    f.node = crate::page::given(f.node);
    if f.qos.is_some_and(|q| q > 2) {
        return Err(ApiError::bad_request("qos: 0, 1 or 2"));
    }
    let matching = f
        .match_topic
        .as_deref()
        .map(|t| TopicName::new(t).map_err(|e| ApiError::bad_request(format!("match_topic {t:?}: {e}"))))
        .transpose()?;
    let out = tokio::task::spawn_blocking(move || {
        let broker = &ctx.node.broker;
        let node = &broker.settings.node_name;
        if f.node.as_ref().is_some_and(|n| n != node) {
            return SubscriptionsPage { data: Vec::new(), meta: paginate(Vec::<()>::new(), page, limit).meta };
        }
        let mut rows: Vec<Subscription> = broker
            .subscription_views(f.clientid.as_deref())
            .iter()
            .filter(|v| {
                let Ok(parsed) = SubscriptionFilter::parse(&v.filter) else { return false };
                f.topic.as_deref().is_none_or(|t| parsed.filter.as_str() == t || &*v.filter == t)
                    && f.qos.is_none_or(|q| v.options.qos as u8 == q)
                    && f.share_group.as_deref().is_none_or(|g| parsed.share_group.as_deref() == Some(g))
                    && matching.as_ref().is_none_or(|t| parsed.filter.matches(t))
            })
            .map(|v| subscription(node, v))
            .collect();
        rows.sort_by(|a, b| (&a.clientid, &a.topic).cmp(&(&b.clientid, &b.topic)));
        let p = paginate(rows, page, limit);
        SubscriptionsPage { data: p.data, meta: p.meta }
    })
    .await?;
    Ok(Json(out))
}

/// A topic filter subscribed to (a route).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Topic {
    /// The filter (for shared subscriptions, without `$share/<group>/`).
    pub topic: String,
    pub node: String,
    /// Subscriptions with this filter.
    pub subscriptions: u64,
}

/// `topic` of `/topics`.
#[derive(Debug, Clone, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TopicFilters {
    /// This filter exactly.
    pub topic: Option<String>,
    /// This node only.
    pub node: Option<String>,
}

/// A page of topics.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopicsPage {
    pub data: Vec<Topic>,
    pub meta: Meta,
}

fn topics(ctx: &Ctx) -> Vec<Topic> {
    let broker = &ctx.node.broker;
    let mut by_filter: BTreeMap<String, u64> = BTreeMap::new();
    for v in broker.subscription_views(None) {
        if let Ok(f) = SubscriptionFilter::parse(&v.filter) {
            *by_filter.entry(f.filter.as_str().to_string()).or_default() += 1;
        }
    }
    let node = &broker.settings.node_name;
    by_filter.into_iter().map(|(topic, n)| Topic { topic, node: node.clone(), subscriptions: n }).collect()
}

/// The topic filters subscribed to, in order.
#[utoipa::path(get, path = "/api/v5/topics", tag = "Subscriptions", params(PageParams, TopicFilters),
    responses((status = 200, body = TopicsPage), (status = 400, body = ErrorBody)))]
pub async fn list_topics(
    State(ctx): State<Arc<Ctx>>,
    Query(page): Query<PageParams>,
    Query(f): Query<TopicFilters>,
) -> Result<Json<TopicsPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let mut f = f;
    f.topic = crate::page::given(f.topic);
    f.node = crate::page::given(f.node);
    let out = tokio::task::spawn_blocking(move || {
        let rows: Vec<Topic> = topics(&ctx)
            .into_iter()
            .filter(|t| {
                f.topic.as_deref().is_none_or(|w| t.topic == w) && f.node.as_deref().is_none_or(|n| t.node == n)
            })
            .collect();
        let p = paginate(rows, page, limit);
        TopicsPage { data: p.data, meta: p.meta }
    })
    .await?;
    Ok(Json(out))
}

/// One topic filter (percent-encoded: `/` as `%2F`, `#` as `%23`, `+` as
/// `%2B`).
#[utoipa::path(get, path = "/api/v5/topics/{topic}", tag = "Subscriptions",
    params(("topic" = String, Path, description = "Topic filter, percent-encoded")),
    responses((status = 200, body = [Topic]), (status = 404, body = ErrorBody)))]
pub async fn get_topic(State(ctx): State<Arc<Ctx>>, Path(topic): Path<String>) -> Result<Json<Vec<Topic>>, ApiError> {
    let found: Vec<Topic> =
        tokio::task::spawn_blocking(move || topics(&ctx).into_iter().filter(|t| t.topic == topic).collect()).await?;
    if found.is_empty() {
        return Err(ApiError::not_found("TOPIC_NOT_FOUND", "no subscription to this topic filter"));
    }
    Ok(Json(found))
}
