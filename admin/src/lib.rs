//! The Portcullis management plane: the admin HTTP API — the only crate
//! that knows HTTP. It runs beside the broker ([`portcullis::Node`]) on the
//! same runtime and does nothing per MQTT message: every view is taken
//! when a request asks for it.
//!
//! * [`start`] — builds it from `[admin]` and serves it ([`server`]:
//!   axum, bounded connections, body size and time).
//! * `api` — the routes, one table, in EMQX 5's shapes under `/api/v5`:
//!   status, nodes, stats, metrics, Prometheus, listeners, clients (kick,
//!   subscribe), subscriptions, topics, retained messages, bans, bridges, auth and
//!   ACL providers (counters, health, caches, explain), the built-in user
//!   store's users and rules, HTTP publish, reload, modules, API keys; and
//!   emqttd's `POST /mqtt/publish`.
//! * [`access`] — API keys (HTTP Basic), roles, lockout; the same API on
//!   a Unix socket (mode 0600) acts as administrator without a key.
//! * [`dashboard`] — the web dashboard at `/dashboard/` (embedded assets,
//!   login sessions over API keys).
//! * [`ctl`] — `portcullis ctl`, the API's command-line client.
//! * [`error`] — `{"code", "message"}` errors everywhere.
//! * `openapi` — the OpenAPI document at `/api-docs/openapi.json`,
//!   generated from the code and tested against the route table.

pub mod access;
mod api;
pub mod ctl;
pub mod dashboard;
pub mod error;
mod openapi;
mod page;
pub mod server;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::Router;
use portcullis::config::admin::AdminConfig;
use portcullis::gateway::Gateway;
use portcullis::{Config, Node, Rejected};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::{info, warn};

use crate::access::keys::KeyStore;
use crate::access::lockout::Lockout;
pub use crate::server::AdminServer;

/// What every request handler shares.
pub(crate) struct Ctx {
    pub node: Arc<Node>,
    pub keys: KeyStore,
    pub lockout: Lockout,
    /// The dashboard's login sessions.
    pub sessions: dashboard::Sessions,
    /// emqttd's publish form: the listener it checks credentials with,
    /// and that listener's gateway; `None` when off.
    pub shim: Option<(String, Gateway)>,
    /// Built-in user stores opened for the users and rules endpoints, by
    /// file (one handle per file).
    pub user_stores:
        parking_lot::Mutex<std::collections::HashMap<std::path::PathBuf, Arc<portcullis_backends::builtin::UserStore>>>,
}

impl std::fmt::Debug for Ctx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctx").field("keys", &self.keys).field("shim", &self.shim.as_ref().map(|s| &s.0)).finish()
    }
}

/// What `--check-config` verifies of `[admin]`: the key store and the
/// bootstrap file load.
pub fn check(cfg: &Config) -> Result<(), Rejected> {
    let a = &cfg.admin;
    if !a.enabled {
        return Ok(());
    }
    KeyStore::load(&a.data_dir, a.bootstrap_file.as_deref()).map(drop).map_err(|e| Rejected(format!("admin: {e}")))
}

/// The environment variable whose value, when set, is the dashboard's
/// initial password (it wins over `[admin] dashboard_initial_password`).
pub const INITIAL_PASSWORD_ENV: &str = "PORTCULLIS_DASHBOARD_PASSWORD";

/// Creates the administrator key `admin`, flagged "must change", from the
/// initial password (environment first, then config) when one is given and
/// no administrator key exists. The password is never logged.
async fn initial_admin(cfg: &AdminConfig, keys: &KeyStore) -> anyhow::Result<()> {
    let (password, key) = match std::env::var(INITIAL_PASSWORD_ENV) {
        Ok(v) if !v.is_empty() => (v, INITIAL_PASSWORD_ENV),
        _ => match &cfg.dashboard_initial_password {
            None => return Ok(()),
            Some(s) => (
                s.resolve("admin.dashboard_initial_password").map_err(|e| Rejected(format!("admin: {e}")))?,
                "admin.dashboard_initial_password",
            ),
        },
    };
    if keys.has_administrator() {
        info!("admin API: an administrator key exists; the dashboard's initial password is not used");
        return Ok(());
    }
    match keys.create_first_admin("admin", password.as_bytes(), true).await {
        Ok(_) => {
            warn!("admin API: administrator key `admin` created from the initial password; it must be changed at the first dashboard login");
            Ok(())
        }
        Err(access::keys::KeyError::Invalid(m)) => Err(Rejected(format!("{key}: {m}")).into()),
        Err(e) => Err(Rejected(format!("{key}: key `admin` not created: {e}")).into()),
    }
}

/// Starts the admin API of `node` as `[admin]` says; `None` when it is
/// off. Call it after [`Node::start`]; stop it before
/// [`Node::shutdown`].
pub async fn start(node: Arc<Node>) -> anyhow::Result<Option<AdminServer>> {
    let cfg = node.config.admin.clone();
    if !cfg.enabled {
        info!("admin API off ([admin] enabled = false)");
        return Ok(None);
    }
    let keys =
        KeyStore::load(&cfg.data_dir, cfg.bootstrap_file.as_deref()).map_err(|e| Rejected(format!("admin: {e}")))?;
    initial_admin(&cfg, &keys).await?;
    if keys.is_empty() {
        warn!(
            "admin API: no API key exists; every HTTP request but /api/v5/status is refused (401; the Unix socket, if on, acts as administrator). \
             Add one with [admin] bootstrap_file or dashboard_initial_password, or create the first administrator on the dashboard's login page opened over loopback"
        );
    }
    let shim = match &cfg.mqtt_publish_listener {
        None => None,
        Some(name) => {
            // Validation made sure the listener exists.
            let l = node
                .config
                .listeners
                .iter()
                .find(|l| &l.name == name)
                .ok_or_else(|| Rejected(format!("admin.mqtt_publish_listener: no listener named `{name}`")))?;
            Some((name.clone(), node.security.gateway(&l.auth_chain, &l.acl_chain)?))
        }
    };
    let ctx = Arc::new(Ctx {
        node,
        keys,
        lockout: Lockout::new(cfg.login_failures, cfg.login_lockout),
        sessions: dashboard::Sessions::new(cfg.dashboard_session_timeout),
        shim,
        user_stores: Default::default(),
    });
    let local = match cfg.socket.as_os_str().is_empty() {
        true => None,
        false => match server::LocalSocket::bind(&cfg.socket) {
            Ok(s) => Some(s),
            // Without the right to create /run/portcullis (a broker run by
            // a user on the defaults), HTTP alone still serves.
            Err(e) if cfg.socket == portcullis::config::admin::default_socket() => {
                warn!(socket = %cfg.socket.display(), error = %e, "admin API: no Unix socket (ctl needs --url and a key)");
                None
            }
            Err(e) => return Err(Rejected(format!("admin.socket {}: {e}", cfg.socket.display())).into()),
        },
    };
    let app_tcp = app(Arc::clone(&ctx), &cfg, Access::Key);
    let app_local = local.map(|l| (l, app(ctx, &cfg, Access::Socket)));
    let server = AdminServer::serve(cfg.bind, cfg.max_connections, app_tcp, app_local)
        .await
        .map_err(|e| anyhow::anyhow!("admin API on {}: {e}", cfg.bind))?;
    Ok(Some(server))
}

/// Who a server's requests come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone who reaches the TCP address: API keys.
    Key,
    /// The broker's user, through the Unix socket: administrator.
    Socket,
}

/// The whole application: routes, key check, limits, JSON errors.
fn app(ctx: Arc<Ctx>, cfg: &AdminConfig, access: Access) -> Router {
    let body_limit = usize::try_from(cfg.max_body_size).unwrap_or(usize::MAX);
    let protected = match access {
        Access::Key => api::protected()
            .router
            .route_layer(axum::middleware::from_fn_with_state(Arc::clone(&ctx), access::require_key)),
        Access::Socket => api::protected().router.route_layer(axum::middleware::from_fn(access::local_administrator)),
    };
    let public = match access {
        Access::Key => api::public().router.merge(dashboard::routes()),
        Access::Socket => api::public().router,
    };
    public
        .merge(protected)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(ctx)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, cfg.request_timeout))
        .layer(axum::middleware::from_fn(error::json_errors))
}
