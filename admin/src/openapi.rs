//! The OpenAPI 3 document, generated from the handlers' annotations
//! (utoipa) and served at `/api-docs/openapi.json`. A test holds it
//! against the route table ([`crate::api`]) both ways: every route is
//! documented, every documented operation is routed.

use axum::response::{IntoResponse, Response};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api::{
    api_keys, banned, bridges, clients, configs, node, prometheus, publish, retainer, rules, security, shim,
    subscriptions, users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Portcullis admin API",
        description = "The management plane of the Portcullis MQTT broker, in EMQX 5's shapes under /api/v5. \
                       API keys go as HTTP Basic credentials (key:secret).",
        license(name = "Apache-2.0"),
    ),
    paths(
        node::status, node::nodes, node::node, node::stats, node::metrics, prometheus::stats, prometheus::metrics, node::listeners, node::listener,
        clients::list, clients::get, clients::kick, clients::kick_bulk, clients::subscriptions, clients::subscribe,
        clients::subscribe_bulk, clients::unsubscribe, clients::unsubscribe_bulk,
        subscriptions::list, subscriptions::list_topics, subscriptions::get_topic,
        retainer::list, retainer::delete_all, retainer::get, retainer::delete,
        banned::list, banned::add, banned::delete,
        bridges::list, bridges::get, bridges::stop, bridges::start,
        security::authentication, security::authentication_status, security::auth_cache, security::purge_auth_cache,
        security::explain_auth, security::authorization, security::authorization_status, security::acl_cache,
        security::purge_acl_cache, security::explain_acl,
        publish::publish, publish::publish_bulk, shim::mqtt_publish,
        configs::reload, configs::modules, configs::switch,
        users::list, users::create, users::get, users::update, users::delete,
        rules::list, rules::create, rules::get, rules::delete,
        api_keys::list, api_keys::create, api_keys::get, api_keys::update, api_keys::delete,
        document,
    ),
    components(schemas(node::StatusFormat, clients::ConnState, banned::BanKind, security::AclAction)),
    modifiers(&Security, &CommonErrors),
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

/// The errors any operation may answer, added to each where its own
/// annotation does not name them: 400 (parameters, body), 408 (timeout),
/// 413 and 415 (with a body), and for those behind a key 401, 403, 429.
struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |what: &str| {
            ResponseBuilder::new()
                .description(what)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for item in doc.paths.paths.values_mut() {
            for op in [&mut item.get, &mut item.put, &mut item.post, &mut item.delete].into_iter().flatten() {
                let protected = op.security.is_none();
                let with_body = op.request_body.is_some();
                let mut add = |code: &str, what: &str| {
                    op.responses.responses.entry(code.to_string()).or_insert_with(|| error(what).into());
                };
                add("400", "Bad parameters or body");
                add("408", "Not answered within request_timeout");
                if with_body {
                    add("413", "Body larger than max_body_size");
                    add("415", "Body of the wrong content type");
                }
                if protected {
                    add("401", "No API key, or a wrong one");
                    add("403", "The key's role does not allow this");
                    add("429", "Too many failed logins from this address");
                }
            }
        }
        // A bulk publish takes 1 to MAX_BULK messages.
        let bulk = doc.paths.paths.get_mut("/api/v5/publish/bulk").and_then(|i| i.post.as_mut());
        let body = bulk.and_then(|op| op.request_body.as_mut()).and_then(|b| b.content.get_mut("application/json"));
        if let Some(utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::Array(a))) =
            body.and_then(|c| c.schema.as_mut())
        {
            a.min_items = Some(1);
            a.max_items = Some(crate::api::publish::MAX_BULK);
        }
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
