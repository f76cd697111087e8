//! The OpenAPI 3 document, generated from the handlers' annotations
//! (utoipa) and served at `/api-docs/openapi.json`. A test holds it
//! against the route table ([`crate::api`]) both ways: every route is
//! documented, every documented operation is routed.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{api_keys, banned, clients, configs, node, publish, retainer, security, shim, subscriptions};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "The management plane of the Portcullis MQTT broker, in EMQX 5's shapes under /api/v5. \
                       API keys go as HTTP Basic credentials (key:secret).",
        license(name = "Apache-2.0"),
    ),
    paths(
        node::status, node::nodes, node::node, node::stats, node::metrics, node::listeners, node::listener,
        clients::list, clients::get, clients::kick, clients::kick_bulk, clients::subscriptions, clients::subscribe,
        clients::subscribe_bulk, clients::unsubscribe, clients::unsubscribe_bulk,
        subscriptions::list, subscriptions::list_topics, subscriptions::get_topic,
        retainer::list, retainer::delete_all, retainer::get, retainer::delete,
        banned::list, banned::add, banned::delete,
        security::authentication, security::authentication_status, security::auth_cache, security::purge_auth_cache,
        security::explain_auth, security::authorization, security::authorization_status, security::acl_cache,
        security::purge_acl_cache, security::explain_acl,
        publish::publish, publish::publish_bulk, shim::mqtt_publish,
        configs::reload, configs::modules,
        api_keys::list, api_keys::create, api_keys::get, api_keys::update, api_keys::delete,
        document,
    ),
    modifiers(&Security),
    security(("api_key" = [])),
)]
pub struct ApiDoc;

/// API keys as HTTP Basic; emqttd's form takes MQTT credentials the same way.
struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
        components.add_security_scheme(
            "mqtt_basic",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Basic).build()),
        );
    }
}

/// This document.
#[utoipa::path(get, path = "/api-docs/openapi.json", tag = "Status", security(()),
    responses((status = 200, description = "The OpenAPI 3 document", content_type = "application/json")))]
pub async fn document() -> Response {
    axum::Json(ApiDoc::openapi()).into_response()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    fn documented() -> BTreeSet<(String, String)> {
        let doc = ApiDoc::openapi();
        let mut out = BTreeSet::new();
        let json = serde_json::to_value(&doc).unwrap();
        for (path, item) in json["paths"].as_object().unwrap() {
            for method in ["get", "put", "post", "delete", "patch", "head", "options", "trace"] {
                if item.get(method).is_some() {
                    out.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        out
    }

    fn routed() -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (m, p) in crate::api::public().table.into_iter().chain(crate::api::protected().table) {
            assert!(out.insert((m.to_string(), p.to_string())), "{m} {p} routed twice");
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_every_documented_operation_routed() {
        let (doc, routes) = (documented(), routed());
        let undocumented: Vec<_> = routes.difference(&doc).collect();
        let unrouted: Vec<_> = doc.difference(&routes).collect();
        assert!(undocumented.is_empty(), "routed but not documented: {undocumented:?}");
        assert!(unrouted.is_empty(), "documented but not routed: {unrouted:?}");
        assert!(routes.len() > 40, "{}", routes.len());
    }

    #[test]
    fn every_operation_documents_its_errors_and_the_protected_ones_a_key() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let public = op.get("security").is_some_and(|s| {
                    s.as_array().is_some_and(|a| a.iter().all(|x| x != &serde_json::json!({"api_key": []})))
                });
                let is_public = crate::api::public()
                    .table
                    .iter()
                    .any(|(m, p)| *p == path && m.as_str().eq_ignore_ascii_case(method));
                assert_eq!(public, is_public, "{method} {path}: security as routed");
            }
        }
    }
}
