//! The auth and ACL chains as the operator sees them: each provider of
//! each chain with its counters and health, the caches (stats, purge),
//! and the explain endpoints — the same decisions as `portcullis auth
//! check` and `portcullis acl explain` ([`portcullis::explain`]).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portcullis::explain::{self, AclExplanation, AuthExplanation, ExplainError, StepView, Who};
use portcullis_core::provider::{OnError, ProviderMetrics, LATENCY_BUCKETS_US};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::Ctx;

/// A provider's counters in one chain (or summed over its chains).
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ProviderCounters {
    /// Calls made.
    pub calls: u64,
    pub allow: u64,
    pub deny: u64,
    /// Answers "not mine": the chain asked the next provider.
    pub ignore: u64,
    /// Failures other than timeouts.
    pub error: u64,
    pub timeout: u64,
    /// Total time spent, microseconds.
    pub latency_us_sum: u64,
    /// Calls per latency bucket: `le_<µs>` (and `le_inf`).
    pub latency_us: BTreeMap<String, u64>,
}

impl ProviderCounters {
    fn of(m: &ProviderMetrics) -> ProviderCounters {
        let mut latency_us = BTreeMap::new();
        for (i, b) in LATENCY_BUCKETS_US.iter().enumerate() {
            latency_us.insert(format!("le_{b}"), m.latency[i].load(Relaxed));
        }
        latency_us.insert("le_inf".to_string(), m.latency[LATENCY_BUCKETS_US.len()].load(Relaxed));
        ProviderCounters {
            calls: m.calls.load(Relaxed),
            allow: m.allow.load(Relaxed),
            deny: m.deny.load(Relaxed),
            ignore: m.ignore.load(Relaxed),
            error: m.error.load(Relaxed),
            timeout: m.timeout.load(Relaxed),
            latency_us_sum: m.latency_sum_us.load(Relaxed),
            latency_us,
        }
    }

    fn add(&mut self, o: &ProviderCounters) {
        self.calls += o.calls;
        self.allow += o.allow;
        self.deny += o.deny;
        self.ignore += o.ignore;
        self.error += o.error;
        self.timeout += o.timeout;
        self.latency_us_sum += o.latency_us_sum;
        for (k, v) in &o.latency_us {
            *self.latency_us.entry(k.clone()).or_default() += v;
        }
    }
}

/// A provider's place in one chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Source {
    /// The provider's name (its config key).
    pub id: String,
    /// The provider kind (`password_file`, `postgres`, `http`, …).
    pub backend: String,
    pub enable: bool,
    /// The chain it is in, and its place there (from 1).
    pub chain: String,
    pub position: u32,
    /// `deny` or `ignore`.
    pub on_error: String,
    pub timeout_ms: u64,
    /// `connected` / `disconnected` for providers with a backend
    /// connection, `no_connection` for the others.
    pub status: String,
    pub metrics: ProviderCounters,
}

fn status_of(health: Option<bool>) -> &'static str {
    match health {
        Some(true) => "connected",
        Some(false) => "disconnected",
        None => "no_connection",
    }
}

fn on_error(o: OnError) -> &'static str {
    match o {
        OnError::Deny => "deny",
        OnError::Ignore => "ignore",
    }
}

fn auth_sources(ctx: &Ctx) -> Vec<Source> {
    let mut chains: Vec<_> = ctx.node.security.auth_chains.values().collect();
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for c in chains {
        for (i, e) in c.entries.iter().enumerate() {
            out.push(Source {
                id: e.provider.name().to_string(),
                backend: e.provider.kind().to_string(),
                enable: true,
                chain: c.name.clone(),
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                on_error: on_error(e.on_error).to_string(),
                timeout_ms: u64::try_from(e.timeout.as_millis()).unwrap_or(u64::MAX),
                status: status_of(e.provider.health()).to_string(),
                metrics: ProviderCounters::of(&e.metrics),
            });
        }
    }
    out
}

fn acl_sources(ctx: &Ctx) -> Vec<Source> {
    let mut chains: Vec<_> = ctx.node.security.acl_chains.values().collect();
    chains.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out = Vec::new();
    for c in chains {
        for (i, e) in c.entries.iter().enumerate() {
            out.push(Source {
                id: e.provider.name().to_string(),
                backend: e.provider.kind().to_string(),
                enable: true,
                chain: c.name.clone(),
                position: u32::try_from(i + 1).unwrap_or(u32::MAX),
                on_error: on_error(e.on_error).to_string(),
                timeout_ms: u64::try_from(e.timeout.as_millis()).unwrap_or(u64::MAX),
                status: status_of(e.provider.health()).to_string(),
                metrics: ProviderCounters::of(&e.metrics),
            });
        }
    }
    out
}

/// One provider over all its chains.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SourceStatus {
    pub id: String,
    /// As in [`Source`]; `disconnected` if it is in any chain.
    pub status: String,
    /// Summed over its chains.
    pub metrics: ProviderCounters,
    /// Per chain.
    pub chains: Vec<Source>,
}

fn status_for(id: &str, sources: Vec<Source>) -> Result<SourceStatus, ApiError> {
    let chains: Vec<Source> = sources.into_iter().filter(|s| s.id == id).collect();
    if chains.is_empty() {
        return Err(ApiError::not_found("NOT_FOUND", format!("no provider {id:?} in any chain")));
    }
    let mut metrics = ProviderCounters::default();
    for c in &chains {
        metrics.add(&c.metrics);
    }
    let status =
        chains.iter().map(|c| c.status.as_str()).max_by_key(|s| *s == "disconnected").unwrap_or("no_connection");
    Ok(SourceStatus { id: id.to_string(), status: status.to_string(), metrics, chains })
}

/// Every auth provider of every chain (chains by name, providers in
/// order), with its counters and health.
#[utoipa::path(get, path = "/api/v5/authentication", tag = "Authentication",
    responses((status = 200, body = [Source]), (status = 401, body = ErrorBody)))]
pub async fn authentication(State(ctx): State<Arc<Ctx>>) -> Json<Vec<Source>> {
    Json(auth_sources(&ctx))
}

/// One auth provider: health and counters, summed and per chain.
#[utoipa::path(get, path = "/api/v5/authentication/{id}/status", tag = "Authentication",
    params(("id" = String, Path, description = "Provider name")),
    responses((status = 200, body = SourceStatus), (status = 404, body = ErrorBody)))]
pub async fn authentication_status(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<SourceStatus>, ApiError> {
    Ok(Json(status_for(&id, auth_sources(&ctx))?))
}

/// EMQX's shape of `/authorization/sources`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Sources {
    pub sources: Vec<Source>,
}

/// Every ACL provider of every chain, with its counters and health.
#[utoipa::path(get, path = "/api/v5/authorization/sources", tag = "Authorization",
    responses((status = 200, body = Sources), (status = 401, body = ErrorBody)))]
pub async fn authorization(State(ctx): State<Arc<Ctx>>) -> Json<Sources> {
    Json(Sources { sources: acl_sources(&ctx) })
}

/// One ACL provider: health and counters, summed and per chain.
#[utoipa::path(get, path = "/api/v5/authorization/sources/{id}/status", tag = "Authorization",
    params(("id" = String, Path, description = "Provider name")),
    responses((status = 200, body = SourceStatus), (status = 404, body = ErrorBody)))]
pub async fn authorization_status(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<Json<SourceStatus>, ApiError> {
    Ok(Json(status_for(&id, acl_sources(&ctx))?))
}

/// A cache's counters.
#[derive(Debug, Serialize, ToSchema)]
pub struct CacheStats {
    /// Counters by name (`hits`, `misses`, …).
    #[serde(flatten)]
    pub counters: BTreeMap<String, u64>,
}

/// The auth cache: hits, misses, entries, bypassed, stale served.
#[utoipa::path(get, path = "/api/v5/authentication/cache", tag = "Authentication",
    responses((status = 200, body = CacheStats)))]
pub async fn auth_cache(State(ctx): State<Arc<Ctx>>) -> Json<CacheStats> {
    let mut scrape = portcullis_core::metrics::Scrape::new();
    ctx.node.security.shared.auth_cache.collect(&mut scrape);
    let counters = scrape
        .sys_values()
        .into_iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("auth/cache/").unwrap_or(&k).to_string(), v.parse().ok()?)))
        .collect();
    Json(CacheStats { counters })
}

/// Empties the auth cache: the next CONNECT of everyone asks the chain.
#[utoipa::path(delete, path = "/api/v5/authentication/cache", tag = "Authentication",
    responses((status = 204, description = "Purged")))]
pub async fn purge_auth_cache(State(ctx): State<Arc<Ctx>>) -> StatusCode {
    ctx.node.security.shared.auth_cache.invalidate_all();
    tracing::info!("admin API: auth cache purged");
    StatusCode::NO_CONTENT
}

/// The ACL cache: hits, misses and entries (decisions stored now,
/// approximate).
#[utoipa::path(get, path = "/api/v5/authorization/cache", tag = "Authorization",
    responses((status = 200, body = CacheStats)))]
pub async fn acl_cache(State(ctx): State<Arc<Ctx>>) -> Json<CacheStats> {
    let cache = &ctx.node.security.shared.acl_cache;
    let s = cache.stats();
    Json(CacheStats {
        counters: BTreeMap::from([
            ("hits".to_string(), s.hits),
            ("misses".to_string(), s.misses),
            ("entries".to_string(), cache.entry_count()),
        ]),
    })
}

/// Empties the ACL cache (of every client): the next action of everyone
/// asks the chain.
#[utoipa::path(delete, path = "/api/v5/authorization/cache", tag = "Authorization",
    responses((status = 204, description = "Purged")))]
pub async fn purge_acl_cache(State(ctx): State<Arc<Ctx>>) -> StatusCode {
    ctx.node.security.shared.acl_cache.invalidate_all();
    tracing::info!("admin API: ACL cache purged");
    StatusCode::NO_CONTENT
}

/// Whose credentials to check.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthExplainBody {
    pub clientid: String,
    pub username: Option<String>,
    /// Never logged nor shown.
    pub password: Option<String>,
    /// The client's address; default 127.0.0.1.
    pub peerhost: Option<String>,
    /// Listener whose chain to use; default: the first.
    pub listener: Option<String>,
}

/// An auth decision explained.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AuthExplained {
    pub chain: String,
    pub steps: Vec<Step>,
    /// `allow`, `deny` or `unavailable`.
    pub decision: String,
    pub superuser: bool,
    /// For a deny: `bad_credentials`, `not_authorized`, `banned`.
    pub reason: Option<String>,
    pub decided_by: String,
    /// The brute-force guard bans this client now.
    pub banned: bool,
}

/// One provider's part.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Step {
    pub provider: String,
    pub kind: String,
    /// `allow`, `deny`, `ignore`, `error` or `skipped`.
    pub result: String,
    pub detail: Option<String>,
    pub rule: Option<String>,
    pub elapsed_ms: f64,
}

fn steps(s: Vec<StepView>) -> Vec<Step> {
    s.into_iter()
        .map(|s| Step {
            provider: s.provider,
            kind: s.kind,
            result: s.result,
            detail: s.detail,
            rule: s.rule,
            elapsed_ms: s.elapsed_ms,
        })
        .collect()
}

fn peer(p: Option<&str>) -> Result<IpAddr, ApiError> {
    match p {
        None => Ok(IpAddr::from([127, 0, 0, 1])),
        Some(s) => s.parse().map_err(|_| ApiError::bad_request(format!("peerhost: not an IP address: {s:?}"))),
    }
}

fn explain_error(e: ExplainError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

/// Runs a listener's auth chain on these credentials and shows each
/// provider's answer (no cache, no guard: the check counts towards no
/// ban; the providers' counters count it).
#[utoipa::path(post, path = "/api/v5/authentication/explain", tag = "Authentication", request_body = AuthExplainBody,
    responses((status = 200, body = AuthExplained), (status = 400, body = ErrorBody)))]
pub async fn explain_auth(
    State(ctx): State<Arc<Ctx>>,
    Json(b): Json<AuthExplainBody>,
) -> Result<Json<AuthExplained>, ApiError> {
    let who =
        Who { client_id: b.clientid, username: b.username, peer: peer(b.peerhost.as_deref())?, listener: b.listener };
    let node = &ctx.node;
    let e: AuthExplanation =
        explain::auth_check(&node.security, &node.config, &who, b.password.map(String::into_bytes))
            .await
            .map_err(explain_error)?;
    Ok(Json(AuthExplained {
        chain: e.chain,
        steps: steps(e.steps),
        decision: e.decision,
        superuser: e.superuser,
        reason: e.reason,
        decided_by: e.decided_by,
        banned: e.banned,
    }))
}

/// The action to explain.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AclExplainBody {
    pub clientid: String,
    pub username: Option<String>,
    /// The client's address; default 127.0.0.1.
    pub peerhost: Option<String>,
    /// Listener whose chain to use; default: the first.
    pub listener: Option<String>,
    /// Treat the client as a superuser.
    #[serde(default)]
    pub superuser: bool,
    pub action: AclAction,
    /// A topic name (publish) or filter (subscribe).
    pub topic: String,
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2)]
    pub qos: u8,
    #[serde(default)]
    pub retain: bool,
}

/// The action an ACL explanation is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AclAction {
    Publish,
    Subscribe,
}

/// An ACL decision explained.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AclExplained {
    pub chain: String,
    pub steps: Vec<Step>,
    /// `allow` or `deny`.
    pub decision: String,
    pub decided_by: String,
}

/// Runs a listener's ACL chain on one action and shows each provider's
/// answer (no cache).
#[utoipa::path(post, path = "/api/v5/authorization/explain", tag = "Authorization", request_body = AclExplainBody,
    responses((status = 200, body = AclExplained), (status = 400, body = ErrorBody)))]
pub async fn explain_acl(
    State(ctx): State<Arc<Ctx>>,
    Json(b): Json<AclExplainBody>,
) -> Result<Json<AclExplained>, ApiError> {
    let action = match b.action {
        AclAction::Publish => explain::Action::Publish { topic: b.topic, qos: b.qos, retain: b.retain },
        AclAction::Subscribe => explain::Action::Subscribe { filter: b.topic, qos: b.qos },
    };
    let who =
        Who { client_id: b.clientid, username: b.username, peer: peer(b.peerhost.as_deref())?, listener: b.listener };
    let node = &ctx.node;
    let e: AclExplanation =
        explain::acl_explain(&node.security, &node.config, &who, b.superuser, &action).await.map_err(explain_error)?;
    Ok(Json(AclExplained { chain: e.chain, steps: steps(e.steps), decision: e.decision, decided_by: e.decided_by }))
}
