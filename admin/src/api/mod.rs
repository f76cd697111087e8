//! The routes, one table: every route is registered through [`Routes`],
//! which remembers it, so a test can hold the table against the OpenAPI
//! document ([`crate::openapi`]).
//!
//! * [`node`] — status (public), nodes, stats, metrics, listeners;
//! * [`prometheus`] — the metrics in the Prometheus text format;
//! * [`clients`] — clients, kick, a client's subscriptions;
//! * [`subscriptions`] — every subscription, topics;
//! * [`retainer`] — retained messages;
//! * [`banned`] — the brute-force guard's bans;
//! * [`bridges`] — bridges out: state, counters, stop and start;
//! * [`security`] — auth and ACL providers, caches, explain;
//! * [`publish`] — HTTP publish; [`shim`] — emqttd's `/mqtt/publish`;
//! * [`users`], [`rules`] — the built-in user store's users and ACL rules;
//! * [`configs`] — reload, modules; [`api_keys`] — API keys.

pub mod api_keys;
pub mod banned;
pub mod bridges;
pub mod clients;
pub mod configs;
pub mod node;
pub mod prometheus;
pub mod publish;
pub mod retainer;
pub mod rules;
pub mod security;
pub mod shim;
pub mod subscriptions;
pub mod users;

use std::sync::Arc;

use axum::handler::Handler;
use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

use crate::Ctx;

/// The routes a `publisher` key may call (with POST).
pub const PUBLISH_PATHS: [&str; 2] = ["/api/v5/publish", "/api/v5/publish/bulk"];

/// A router and the table of what it routes.
pub struct Routes {
    pub router: Router<Arc<Ctx>>,
    pub table: Vec<(Method, &'static str)>,
}

impl Routes {
    fn new() -> Routes {
        Routes { router: Router::new(), table: Vec::new() }
    }

    fn add(mut self, method: Method, path: &'static str, route: MethodRouter<Arc<Ctx>>) -> Routes {
        self.table.push((method, path));
        self.router = self.router.route(path, route);
        self
    }

    fn get<H: Handler<T, Arc<Ctx>>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::GET, path, get(h))
    }
    fn post<H: Handler<T, Arc<Ctx>>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::POST, path, post(h))
    }
    fn put<H: Handler<T, Arc<Ctx>>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::PUT, path, put(h))
    }
    fn delete<H: Handler<T, Arc<Ctx>>, T: 'static>(self, path: &'static str, h: H) -> Routes {
        self.add(Method::DELETE, path, delete(h))
    }
}

/// Routes anyone may call: the status (health checks), the OpenAPI
/// document, and emqttd's publish form (its own credentials).
pub fn public() -> Routes {
    Routes::new()
        .get("/api/v5/status", node::status)
        .get("/api-docs/openapi.json", crate::openapi::document)
        .post("/mqtt/publish", shim::mqtt_publish)
}

/// Routes behind an API key.
pub fn protected() -> Routes {
    Routes::new()
        .get("/api/v5/nodes", node::nodes)
        .get("/api/v5/nodes/{node}", node::node)
        .get("/api/v5/stats", node::stats)
        .get("/api/v5/metrics", node::metrics)
        .get("/api/v5/prometheus/stats", prometheus::stats)
        .get("/metrics", prometheus::metrics)
        .get("/api/v5/listeners", node::listeners)
        .get("/api/v5/listeners/{id}", node::listener)
        .get("/api/v5/clients", clients::list)
        .get("/api/v5/clients/{clientid}", clients::get)
        .delete("/api/v5/clients/{clientid}", clients::kick)
        .post("/api/v5/clients/kickout/bulk", clients::kick_bulk)
        .get("/api/v5/clients/{clientid}/subscriptions", clients::subscriptions)
        .post("/api/v5/clients/{clientid}/subscribe", clients::subscribe)
        .post("/api/v5/clients/{clientid}/subscribe/bulk", clients::subscribe_bulk)
        .post("/api/v5/clients/{clientid}/unsubscribe", clients::unsubscribe)
        .post("/api/v5/clients/{clientid}/unsubscribe/bulk", clients::unsubscribe_bulk)
        .get("/api/v5/subscriptions", subscriptions::list)
        .get("/api/v5/topics", subscriptions::list_topics)
        .get("/api/v5/topics/{topic}", subscriptions::get_topic)
        .get("/api/v5/mqtt/retainer/messages", retainer::list)
        .delete("/api/v5/mqtt/retainer/messages", retainer::delete_all)
        .get("/api/v5/mqtt/retainer/message/{topic}", retainer::get)
        .delete("/api/v5/mqtt/retainer/message/{topic}", retainer::delete)
        .get("/api/v5/banned", banned::list)
        .post("/api/v5/banned", banned::add)
        .delete("/api/v5/banned/{as}/{who}", banned::delete)
        .get("/api/v5/bridges", bridges::list)
        .get("/api/v5/bridges/{name}", bridges::get)
        .post("/api/v5/bridges/{name}/stop", bridges::stop)
        .post("/api/v5/bridges/{name}/start", bridges::start)
        .get("/api/v5/authentication", security::authentication)
        .get("/api/v5/authentication/{id}/status", security::authentication_status)
        .get("/api/v5/authentication/{id}/users", users::list)
        .post("/api/v5/authentication/{id}/users", users::create)
        .get("/api/v5/authentication/{id}/users/{user_id}", users::get)
        .put("/api/v5/authentication/{id}/users/{user_id}", users::update)
        .delete("/api/v5/authentication/{id}/users/{user_id}", users::delete)
        .get("/api/v5/authentication/cache", security::auth_cache)
        .delete("/api/v5/authentication/cache", security::purge_auth_cache)
        .post("/api/v5/authentication/explain", security::explain_auth)
        .get("/api/v5/authorization/sources", security::authorization)
        .get("/api/v5/authorization/sources/{id}/status", security::authorization_status)
        .get("/api/v5/authorization/sources/{id}/rules", rules::list)
        .post("/api/v5/authorization/sources/{id}/rules", rules::create)
        .get("/api/v5/authorization/sources/{id}/rules/{rule_id}", rules::get)
        .delete("/api/v5/authorization/sources/{id}/rules/{rule_id}", rules::delete)
        .get("/api/v5/authorization/cache", security::acl_cache)
        .delete("/api/v5/authorization/cache", security::purge_acl_cache)
        .post("/api/v5/authorization/explain", security::explain_acl)
        .post("/api/v5/publish", publish::publish)
        .post("/api/v5/publish/bulk", publish::publish_bulk)
        .post("/api/v5/configs/reload", configs::reload)
        .get("/api/v5/modules", configs::modules)
        .put("/api/v5/modules/{name}", configs::switch)
        .get("/api/v5/api_key", api_keys::list)
        .post("/api/v5/api_key", api_keys::create)
        .get("/api/v5/api_key/{name}", api_keys::get)
        .put("/api/v5/api_key/{name}", api_keys::update)
        .delete("/api/v5/api_key/{name}", api_keys::delete)
}
