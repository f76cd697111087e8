//! API keys, EMQX's `/api_key`: list, create (the secret is shown once),
//! get, change, delete. Keys from the bootstrap file are listed but can
//! be changed only there.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::keys::{parse_expiry, show_expiry, KeyError, Patch, Record, Source};
use crate::access::{Principal, Role};
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::Ctx;

/// A key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKey {
    pub name: String,
    /// The id sent as the Basic username.
    pub api_key: String,
    pub role: Role,
    pub enable: bool,
    pub desc: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, or `infinity`.
    pub expired_at: String,
    pub expired: bool,
    /// `api` or `bootstrap_file`.
    pub source: String,
}

fn view(r: &Record) -> ApiKey {
    ApiKey {
        name: r.name.clone(),
        api_key: r.api_key.clone(),
        role: r.role,
        enable: r.enable,
        desc: r.desc.clone(),
        created_at: humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(r.created_at)).to_string(),
        expired_at: show_expiry(r.expired_at),
        expired: r.expired(),
        source: match r.source {
            Source::Api => "api",
            Source::BootstrapFile => "bootstrap_file",
        }
        .to_string(),
    }
}

/// A created key: its secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    #[serde(flatten)]
    pub key: ApiKey,
    /// The secret, sent as the Basic password. Not shown again.
    pub api_secret: String,
}

/// A key to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    /// 1 to 64 letters, digits, `_` and `-`, starting with a letter.
    #[schema(example = "ops")]
    pub name: String,
    /// Default `administrator`.
    pub role: Option<Role>,
    /// Default true.
    pub enable: Option<bool>,
    #[serde(default)]
    pub desc: String,
    /// RFC 3339, or `infinity` (the default).
    pub expired_at: Option<String>,
}

/// A change to a key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyChange {
    pub role: Option<Role>,
    pub enable: Option<bool>,
    pub desc: Option<String>,
    /// RFC 3339, or `infinity`.
    pub expired_at: Option<String>,
}

/// Longest description.
const MAX_DESC: usize = 1000;

pub(crate) fn key_error(e: KeyError) -> ApiError {
    match e {
        KeyError::NotFound(_) => ApiError::not_found("NOT_FOUND", e.to_string()),
        KeyError::Exists(_) => ApiError::new(StatusCode::BAD_REQUEST, "ALREADY_EXISTS", e.to_string()),
        KeyError::Write { .. } => {
            tracing::error!(error = %e, "admin API: API key store not written");
            ApiError::internal(e.to_string())
        }
        KeyError::AdminExists => ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", e.to_string()),
        KeyError::WrongSecret => ApiError::new(StatusCode::UNAUTHORIZED, "BAD_USERNAME_OR_PWD", e.to_string()),
        KeyError::Bootstrap(_) | KeyError::Invalid(_) | KeyError::TooMany => ApiError::bad_request(e.to_string()),
    }
}

/// Every key.
#[utoipa::path(get, path = "/api/v5/api_key", tag = "API keys",
    responses((status = 200, body = [ApiKey]), (status = 401, body = ErrorBody)))]
pub async fn list(State(ctx): State<Arc<Ctx>>) -> Json<Vec<ApiKey>> {
    Json(ctx.keys.list().iter().map(view).collect())
}

/// Creates a key; the answer holds its secret, shown this once.
#[utoipa::path(post, path = "/api/v5/api_key", tag = "API keys", request_body = NewApiKey,
    responses((status = 200, body = ApiKeyCreated), (status = 400, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Extension(by): Extension<Principal>,
    Json(k): Json<NewApiKey>,
) -> Result<Json<ApiKeyCreated>, ApiError> {
    if k.desc.len() > MAX_DESC {
        return Err(ApiError::bad_request(format!("desc: at most {MAX_DESC} bytes")));
    }
    let expired_at = match k.expired_at.as_deref() {
        None => None,
        Some(s) => parse_expiry(s).map_err(key_error)?,
    };
    let role = k.role.unwrap_or(Role::Administrator);
    let (rec, secret) =
        ctx.keys.create(k.name, role, k.desc, k.enable.unwrap_or(true), expired_at).await.map_err(key_error)?;
    tracing::info!(key = %rec.name, role = ?rec.role, by = %by.name, "admin API: API key created");
    Ok(Json(ApiKeyCreated { key: view(&rec), api_secret: secret }))
}

/// One key.
#[utoipa::path(get, path = "/api/v5/api_key/{name}", tag = "API keys",
    params(("name" = String, Path, description = "Key name")),
    responses((status = 200, body = ApiKey), (status = 404, body = ErrorBody)))]
pub async fn get(State(ctx): State<Arc<Ctx>>, Path(name): Path<String>) -> Result<Json<ApiKey>, ApiError> {
    ctx.keys.get(&name).map(|r| Json(view(&r))).ok_or_else(|| key_error(KeyError::NotFound(name)))
}

/// Changes a key (role, enable, description, expiry).
#[utoipa::path(put, path = "/api/v5/api_key/{name}", tag = "API keys",
    params(("name" = String, Path, description = "Key name")), request_body = ApiKeyChange,
    responses((status = 200, body = ApiKey), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn update(
    State(ctx): State<Arc<Ctx>>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    Json(c): Json<ApiKeyChange>,
) -> Result<Json<ApiKey>, ApiError> {
    if c.desc.as_ref().is_some_and(|d| d.len() > MAX_DESC) {
        return Err(ApiError::bad_request(format!("desc: at most {MAX_DESC} bytes")));
    }
    let expired_at = match c.expired_at.as_deref() {
        None => None,
        Some(s) => Some(parse_expiry(s).map_err(key_error)?),
    };
    let patch = Patch { enable: c.enable, desc: c.desc, role: c.role, expired_at };
    let rec = ctx.keys.update(&name, patch).await.map_err(key_error)?;
    tracing::info!(key = %rec.name, by = %by.name, "admin API: API key changed");
    Ok(Json(view(&rec)))
}

/// Deletes a key.
#[utoipa::path(delete, path = "/api/v5/api_key/{name}", tag = "API keys",
    params(("name" = String, Path, description = "Key name")),
    responses((status = 204, description = "Deleted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    ctx.keys.delete(&name).await.map_err(key_error)?;
    tracing::info!(key = %name, by = %by.name, "admin API: API key deleted");
    Ok(StatusCode::NO_CONTENT)
}
