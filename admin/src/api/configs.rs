//! Config reload and modules.
//!
//! The config file's `[modules]` is what runs at start and after each
//! reload. `PUT /api/v5/modules/{name}` with `{"enable": true|false}`
//! (EMQX 5's `enable` field) switches a built-in module on or off at run
//! time, as EMQX's runtime toggles do: it is not written to the file (that
//! would rewrite the operator's comments), so the next reload — SIGHUP,
//! `POST /api/v5/configs/reload` — applies the file's setting again. The
//! listing shows which modules were switched since.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use portcullis::SwitchError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Principal;
use crate::error::{ApiError, ErrorBody, Json, Path};
use crate::Ctx;

/// What a reload did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reloaded {
    /// Password, client id and ACL files and policy directories re-read.
    pub files_reloaded: u64,
    /// Those that failed to load and kept their previous contents (the
    /// log names the file and line).
    pub files_failed: u64,
    /// The config file could not be read or `[modules]` not applied; the
    /// running modules are unchanged.
    pub config_error: Option<String>,
    /// The file changed outside `[modules]`: that takes a restart.
    pub restart_needed: bool,
    /// The modules running now, in hook order.
    pub modules: Vec<String>,
}

/// Does what SIGHUP does: re-reads password, client id and ACL files,
/// policy directories, TLS certificates and the config file's `[modules]`
/// (the other sections need a restart), and drops the auth and ACL
/// caches.
#[utoipa::path(post, path = "/api/v5/configs/reload", tag = "Configs",
    responses((status = 200, body = Reloaded), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reload(State(ctx): State<Arc<Ctx>>) -> Result<Json<Reloaded>, ApiError> {
    tracing::info!("admin API: reload");
    let node = Arc::clone(&ctx.node);
    let r = tokio::task::spawn_blocking(move || node.reload()).await?;
    Ok(Json(Reloaded {
        files_reloaded: r.files_reloaded as u64,
        files_failed: r.files_failed as u64,
        config_error: r.config_error,
        restart_needed: r.restart_needed,
        modules: r.modules,
    }))
}

/// A running module.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleInfo {
    pub name: String,
    /// Its place in hook order, from 1.
    pub position: u32,
}

/// A built-in module, on or off.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuiltinModule {
    /// Its `[modules.<name>]` table name.
    pub name: String,
    pub enable: bool,
    /// Where `enable` comes from: `config` (the file, at start or the last
    /// reload) or `api` (switched at run time since; the next reload
    /// applies the file's setting again).
    pub source: String,
}

/// The modules running, every built-in one, and how to change them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Modules {
    /// The modules running, in hook order (built-in and compiled-in).
    pub modules: Vec<ModuleInfo>,
    /// Every built-in module, on or off.
    pub builtin: Vec<BuiltinModule>,
    /// Where the running set comes from.
    pub config_file: Option<String>,
    /// How to change them (see the module docs).
    pub how_to_change: String,
}

fn builtin(ctx: &Ctx) -> Vec<BuiltinModule> {
    ctx.node
        .builtin_modules()
        .into_iter()
        .map(|m| BuiltinModule {
            name: m.name.to_string(),
            enable: m.enabled,
            source: if m.switched { "api" } else { "config" }.to_string(),
        })
        .collect()
}

fn running(ctx: &Ctx) -> Vec<ModuleInfo> {
    ctx.node
        .modules()
        .into_iter()
        .enumerate()
        .map(|(i, name)| ModuleInfo { name, position: u32::try_from(i + 1).unwrap_or(u32::MAX) })
        .collect()
}

/// The modules running, in hook order, and every built-in module with
/// whether it is on and whether that was switched through the API.
#[utoipa::path(get, path = "/api/v5/modules", tag = "Configs",
    responses((status = 200, body = Modules), (status = 401, body = ErrorBody)))]
pub async fn modules(State(ctx): State<Arc<Ctx>>) -> Json<Modules> {
    Json(Modules {
        modules: running(&ctx),
        builtin: builtin(&ctx),
        config_file: ctx.node.path.as_ref().map(|p| p.display().to_string()),
        how_to_change: "PUT /api/v5/modules/{name} {\"enable\": true|false} until the next reload; \
                        for good, edit [modules] in the config file, then POST /api/v5/configs/reload (or send SIGHUP)"
            .to_string(),
    })
}

/// `{"enable": …}`: switch the module on or off.
#[derive(Debug, serde::Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleSwitch {
    pub enable: bool,
}

/// A module after a switch.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModuleSwitched {
    pub name: String,
    pub enable: bool,
    /// `api` until the next reload (see [`BuiltinModule::source`]).
    pub source: String,
    /// The modules running now, in hook order.
    pub modules: Vec<ModuleInfo>,
}

/// Switches a built-in module on or off at run time, without touching a
/// connection. Not written to the config file: the next reload applies
/// the file's setting again. A module without a `[modules.<name>]` table
/// runs with its defaults; when those do not let it run (the webhook's
/// `url`), 400 names the key. Switching to the state it is in changes
/// nothing.
#[utoipa::path(put, path = "/api/v5/modules/{name}", tag = "Configs",
    params(("name" = String, Path, description = "presence, delayed, auto_subscribe, rewrite or webhook")),
    request_body = ModuleSwitch,
    responses((status = 200, body = ModuleSwitched), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn switch(
    State(ctx): State<Arc<Ctx>>,
    Extension(by): Extension<Principal>,
    Path(name): Path<String>,
    Json(body): Json<ModuleSwitch>,
) -> Result<Json<ModuleSwitched>, ApiError> {
    let node = Arc::clone(&ctx.node);
    let who = by.name.clone();
    // Building a module may read files (webhook secrets): off the async threads.
    let state = tokio::task::spawn_blocking(move || node.switch_module(&name, body.enable, &who)).await?.map_err(
        |e| match e {
            SwitchError::Unknown(_) => ApiError::not_found("NOT_FOUND", e.to_string()),
            SwitchError::Invalid { .. } => ApiError::bad_request(e.to_string()),
            SwitchError::Failed(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE", m),
        },
    )?;
    Ok(Json(ModuleSwitched {
        name: state.name.to_string(),
        enable: state.enabled,
        source: if state.switched { "api" } else { "config" }.to_string(),
        modules: running(&ctx),
    }))
}
