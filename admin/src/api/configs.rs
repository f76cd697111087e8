//! Config reload and modules.
//!
//! Modules are read-only here: the config file's `[modules]` is what
//! runs. To switch one on or off, edit the file and reload (`POST
//! /api/v5/configs/reload`, or SIGHUP). An enable/disable through the API
//! that did not write the file would be undone by the next reload — for a
//! certificate rotation, say — and one that wrote the file would rewrite
//! the operator's comments and formatting: neither is honest, so the API
//! does neither.

use std::sync::Arc;

use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json};
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

/// The modules running, and how to change them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Modules {
    pub modules: Vec<ModuleInfo>,
    /// Where the running set comes from.
    pub config_file: Option<String>,
    /// How to change them: the API does not (see the module docs).
    pub how_to_change: String,
}

/// The modules running, in hook order. Read-only: edit `[modules]` in the
/// config file, then `POST /api/v5/configs/reload` (or SIGHUP).
#[utoipa::path(get, path = "/api/v5/modules", tag = "Configs",
    responses((status = 200, body = Modules), (status = 401, body = ErrorBody)))]
pub async fn modules(State(ctx): State<Arc<Ctx>>) -> Json<Modules> {
    let modules = ctx
        .node
        .modules()
        .into_iter()
        .enumerate()
        .map(|(i, name)| ModuleInfo { name, position: u32::try_from(i + 1).unwrap_or(u32::MAX) })
        .collect();
    Json(Modules {
        modules,
        config_file: ctx.node.path.as_ref().map(|p| p.display().to_string()),
        how_to_change: "edit [modules] in the config file, then POST /api/v5/configs/reload (or send SIGHUP)"
            .to_string(),
    })
}
