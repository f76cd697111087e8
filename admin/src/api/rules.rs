//! The built-in user store's ACL rules through the API:
//! `/api/v5/authorization/sources/{id}/rules`, `{id}` an
//! `[acl.builtin.<id>]` provider. The store is opened as for the users
//! endpoints ([`super::users`]); the broker sees a change at its next poll
//! and drops its cached decisions.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_acl::rule::{Action, Permission};
use portcullis_backends::builtin::{BuiltinConfig, NewRule, PageRequest, RuleSubject, StoredRule, UserStore};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::users::{open_store, store_error};
use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{Meta, PageParams};
use crate::Ctx;

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RulePermission {
    Allow,
    Deny,
}

/// `publish`, `subscribe` or `all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleAction {
    Publish,
    Subscribe,
    All,
}

/// A stored rule.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RuleView {
    pub id: i64,
    /// Set for a username's rule.
    pub username: Option<String>,
    /// Set for a client id's rule.
    pub clientid: Option<String>,
    pub permission: RulePermission,
    pub action: RuleAction,
    pub topic: String,
    /// The QoS levels it applies to; null: every level.
    pub qos: Option<Vec<u8>>,
    /// The retain flag it applies to; null: both.
    pub retain: Option<bool>,
    pub priority: i64,
}

impl From<StoredRule> for RuleView {
    fn from(r: StoredRule) -> RuleView {
        let (username, clientid) = match r.subject {
            RuleSubject::Username(u) => (Some(u), None),
            RuleSubject::ClientId(c) => (None, Some(c)),
        };
        RuleView {
            id: r.id,
            username,
            clientid,
            permission: match r.permission {
                Permission::Allow => RulePermission::Allow,
                Permission::Deny => RulePermission::Deny,
            },
            action: match r.action {
                Action::Publish => RuleAction::Publish,
                Action::Subscribe => RuleAction::Subscribe,
                Action::All => RuleAction::All,
            },
            topic: r.topic,
            qos: r.qos,
            retain: r.retain,
            priority: r.priority,
        }
    }
}

/// A page of rules.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesPage {
    pub data: Vec<RuleView>,
    pub meta: Meta,
}

/// Whose rules to list (at most one; neither: every rule by id).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleFilters {
    pub username: Option<String>,
    pub clientid: Option<String>,
}

/// A rule to add: for a `username` or a `clientid` (exactly one).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRuleBody {
    pub username: Option<String>,
    pub clientid: Option<String>,
    pub permission: RulePermission,
    pub action: RuleAction,
    /// An MQTT filter (`${username}` and `${clientid}` may stand as whole
    /// levels), or `eq <topic>` for that literal string.
    #[schema(min_length = 1)]
    pub topic: String,
    pub qos: Option<Vec<u8>>,
    pub retain: Option<bool>,
    /// Lower first (default 0).
    #[serde(default)]
    pub priority: i64,
}

fn subject(username: Option<String>, clientid: Option<String>) -> Result<Option<RuleSubject>, ApiError> {
    match (crate::page::given(username), crate::page::given(clientid)) {
        (Some(u), None) => Ok(Some(RuleSubject::Username(u))),
        (None, Some(c)) => Ok(Some(RuleSubject::ClientId(c))),
        (None, None) => Ok(None),
        (Some(_), Some(_)) => Err(ApiError::bad_request("give username or clientid, not both")),
    }
}

async fn store(ctx: &Ctx, id: &str) -> Result<Arc<UserStore>, ApiError> {
    let cfg: &BuiltinConfig = ctx
        .node
        .config
        .acl
        .builtin
        .get(id)
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no built-in ACL provider {id:?}")))?;
    open_store(ctx, cfg).await
}

/// Rules of a built-in store.
#[utoipa::path(get, path = "/api/v5/authorization/sources/{id}/rules", tag = "Authorization",
    params(("id" = String, Path, description = "An `[acl.builtin.<id>]` provider"), PageParams, RuleFilters),
    responses((status = 200, body = RulesPage), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
    Query(f): Query<RuleFilters>,
) -> Result<Json<RulesPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let who = subject(f.username, f.clientid)?;
    let store = store(&ctx, &id).await?;
    let req = PageRequest::new(u32::try_from(page).unwrap_or(u32::MAX), u32::try_from(limit).unwrap_or(u32::MAX));
    let p = store.list_rules(who.as_ref(), req).await.map_err(store_error)?;
    let hasnext = p.has_next();
    Ok(Json(RulesPage {
        meta: Meta { page, limit, count: p.total, hasnext },
        data: p.items.into_iter().map(RuleView::from).collect(),
    }))
}

/// Adds a rule (201).
#[utoipa::path(post, path = "/api/v5/authorization/sources/{id}/rules", tag = "Authorization",
    request_body = NewRuleBody,
    params(("id" = String, Path, description = "An `[acl.builtin.<id>]` provider")),
    responses((status = 201, body = RuleView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(b): Json<NewRuleBody>,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let who = subject(b.username, b.clientid)?.ok_or_else(|| ApiError::bad_request("give username or clientid"))?;
    let store = store(&ctx, &id).await?;
    let permission = match b.permission {
        RulePermission::Allow => Permission::Allow,
        RulePermission::Deny => Permission::Deny,
    };
    let action = match b.action {
        RuleAction::Publish => Action::Publish,
        RuleAction::Subscribe => Action::Subscribe,
        RuleAction::All => Action::All,
    };
    let mut rule = NewRule::new(who, permission, action, b.topic);
    rule.qos = b.qos;
    rule.retain = b.retain;
    rule.priority = b.priority;
    let stored = store.add_rule(&rule).await.map_err(store_error)?;
    tracing::info!(provider = %id, rule = stored.id, "admin API: ACL rule added");
    Ok((StatusCode::CREATED, Json(stored.into())))
}

/// One rule.
#[utoipa::path(get, path = "/api/v5/authorization/sources/{id}/rules/{rule_id}", tag = "Authorization",
    params(("id" = String, Path, description = "An `[acl.builtin.<id>]` provider"), ("rule_id" = i64, Path)),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    Path((id, rule_id)): Path<(String, i64)>,
) -> Result<Json<RuleView>, ApiError> {
    let store = store(&ctx, &id).await?;
    match store.get_rule(rule_id).await.map_err(store_error)? {
        Some(r) => Ok(Json(r.into())),
        None => Err(ApiError::not_found("NOT_FOUND", format!("no rule {rule_id}"))),
    }
}

/// Deletes a rule.
#[utoipa::path(delete, path = "/api/v5/authorization/sources/{id}/rules/{rule_id}", tag = "Authorization",
    params(("id" = String, Path, description = "An `[acl.builtin.<id>]` provider"), ("rule_id" = i64, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Path((id, rule_id)): Path<(String, i64)>,
) -> Result<StatusCode, ApiError> {
    let store = store(&ctx, &id).await?;
    store.delete_rule(rule_id).await.map_err(store_error)?;
    tracing::info!(provider = %id, rule = rule_id, "admin API: ACL rule deleted");
    Ok(StatusCode::NO_CONTENT)
}
