//! The built-in user store's users through the API, in EMQX 5's shape
//! (`/api/v5/authentication/{id}/users`): `{id}` is an
//! `[auth.builtin.<id>]` provider. The store file is opened here as
//! `portcullis users …` opens it — a handle of its own, next to the
//! provider's, on the first request for it — so writes are serialised by
//! SQLite and the broker's watcher sees the change (its auth and ACL
//! caches are purged on the store's next revision).
//!
//! Passwords are hashed by the store (argon2id) and never answered.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_backends::builtin::{BuiltinConfig, OpenMode, PageRequest, StoreError, User, UserFilter, UserStore};
use portcullis_core::gate::Password;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{Meta, PageParams};
use crate::Ctx;

/// A user, as EMQX shows one (no password).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub is_superuser: bool,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the last change of password or superuser flag.
    pub updated_at: String,
}

fn rfc3339(unix: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

impl From<User> for UserView {
    fn from(u: User) -> UserView {
        UserView {
            user_id: u.username,
            is_superuser: u.superuser,
            created_at: rfc3339(u.created_at),
            updated_at: rfc3339(u.updated_at),
        }
    }
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UsersPage {
    pub data: Vec<UserView>,
    pub meta: Meta,
}

/// Filters of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserFilters {
    /// User ids containing this.
    pub like_user_id: Option<String>,
    /// Superusers only (`true`) or none (`false`).
    pub is_superuser: Option<bool>,
}

/// A user to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    #[schema(min_length = 1)]
    pub user_id: String,
    #[schema(min_length = 1)]
    pub password: String,
    #[serde(default)]
    pub is_superuser: bool,
}

/// Changes to a user: a new password, the superuser flag, or both.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdate {
    #[schema(min_length = 1)]
    pub password: Option<String>,
    pub is_superuser: Option<bool>,
}

pub(crate) fn store_error(e: StoreError) -> ApiError {
    match e {
        StoreError::Invalid { .. } => ApiError::bad_request(e.to_string()),
        StoreError::UserExists(_) => ApiError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", e.to_string()),
        StoreError::NoSuchUser(_) | StoreError::NoSuchRule(_) => ApiError::not_found("NOT_FOUND", e.to_string()),
        other => {
            tracing::warn!(error = %other, "admin API: user store");
            ApiError::unavailable(format!("user store: {other}"))
        }
    }
}

/// The store behind auth provider `id`, opened once.
async fn store(ctx: &Ctx, id: &str) -> Result<Arc<UserStore>, ApiError> {
    let cfg: &BuiltinConfig = ctx
        .node
        .config
        .auth
        .builtin
        .get(id)
        .ok_or_else(|| ApiError::not_found("NOT_FOUND", format!("no built-in user store provider {id:?}")))?;
    open_store(ctx, cfg).await
}

/// The store file of `cfg`, opened on first use and kept (one handle per
/// file, shared by the users and the rules endpoints).
pub(crate) async fn open_store(ctx: &Ctx, cfg: &BuiltinConfig) -> Result<Arc<UserStore>, ApiError> {
    let cached = ctx.user_stores.lock().get(&cfg.path).cloned();
    if let Some(s) = cached {
        return Ok(s);
    }
    // `UserStore::open`'s future is not provably `Send` (sqlx's
    // higher-ranked executor bounds), so a handler cannot await it: it
    // runs on a blocking thread, driven by a handle on this runtime (the
    // pool's tasks live here).
    let (owned, rt) = (cfg.clone(), tokio::runtime::Handle::current());
    let opened = tokio::task::spawn_blocking(move || rt.block_on(UserStore::open(&owned, OpenMode::Existing)))
        .await
        .map_err(|_| ApiError::internal("opening the user store failed"))?
        .map_err(store_error)?;
    Ok(Arc::clone(ctx.user_stores.lock().entry(cfg.path.clone()).or_insert(opened)))
}

fn password(p: &str) -> Password {
    Password::new(p.as_bytes().to_vec().into())
}

/// Users of a built-in store.
#[utoipa::path(get, path = "/api/v5/authentication/{id}/users", tag = "Authentication",
    params(("id" = String, Path, description = "An `[auth.builtin.<id>]` provider"), PageParams, UserFilters),
    responses((status = 200, body = UsersPage), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn list(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Query(page): Query<PageParams>,
    Query(f): Query<UserFilters>,
) -> Result<Json<UsersPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let store = store(&ctx, &id).await?;
    let req = PageRequest::new(u32::try_from(page).unwrap_or(u32::MAX), u32::try_from(limit).unwrap_or(u32::MAX));
    let filter = UserFilter { username_contains: crate::page::given(f.like_user_id), superuser: f.is_superuser };
    let p = store.list_users(&filter, req).await.map_err(store_error)?;
    let hasnext = p.has_next();
    Ok(Json(UsersPage {
        meta: Meta { page, limit, count: p.total, hasnext },
        data: p.items.into_iter().map(UserView::from).collect(),
    }))
}

/// Creates a user (201).
#[utoipa::path(post, path = "/api/v5/authentication/{id}/users", tag = "Authentication", request_body = NewUser,
    params(("id" = String, Path, description = "An `[auth.builtin.<id>]` provider")),
    responses((status = 201, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub async fn create(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Json(u): Json<NewUser>,
) -> Result<(StatusCode, Json<UserView>), ApiError> {
    let store = store(&ctx, &id).await?;
    if u.password.is_empty() {
        return Err(ApiError::bad_request("password: must not be empty"));
    }
    let user = store.add_user(&u.user_id, &password(&u.password), u.is_superuser).await.map_err(store_error)?;
    tracing::info!(provider = %id, user = %u.user_id, "admin API: user added");
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// One user.
#[utoipa::path(get, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "Authentication",
    params(("id" = String, Path, description = "An `[auth.builtin.<id>]` provider"), ("user_id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn get(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<Json<UserView>, ApiError> {
    let store = store(&ctx, &id).await?;
    match store.get_user(&user_id).await.map_err(store_error)? {
        Some(u) => Ok(Json(u.into())),
        None => Err(ApiError::not_found("NOT_FOUND", format!("no user {user_id:?}"))),
    }
}

/// Changes a user's password and/or superuser flag.
#[utoipa::path(put, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "Authentication",
    request_body = UserUpdate,
    params(("id" = String, Path, description = "An `[auth.builtin.<id>]` provider"), ("user_id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn update(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
    Json(u): Json<UserUpdate>,
) -> Result<Json<UserView>, ApiError> {
    let store = store(&ctx, &id).await?;
    if u.password.is_none() && u.is_superuser.is_none() {
        return Err(ApiError::bad_request("give password, is_superuser or both"));
    }
    let mut user = None;
    if let Some(p) = &u.password {
        if p.is_empty() {
            return Err(ApiError::bad_request("password: must not be empty"));
        }
        user = Some(store.set_password(&user_id, &password(p)).await.map_err(store_error)?);
    }
    if let Some(s) = u.is_superuser {
        user = Some(store.set_superuser(&user_id, s).await.map_err(store_error)?);
    }
    tracing::info!(provider = %id, user = %user_id, "admin API: user changed");
    user.map(|u| Json(u.into())).ok_or_else(|| ApiError::internal("no change made"))
}

/// Deletes a user (and nothing else: its ACL rules stay).
#[utoipa::path(delete, path = "/api/v5/authentication/{id}/users/{user_id}", tag = "Authentication",
    params(("id" = String, Path, description = "An `[auth.builtin.<id>]` provider"), ("user_id" = String, Path)),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Path((id, user_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let store = store(&ctx, &id).await?;
    store.delete_user(&user_id).await.map_err(store_error)?;
    tracing::info!(provider = %id, user = %user_id, "admin API: user deleted");
    Ok(StatusCode::NO_CONTENT)
}
