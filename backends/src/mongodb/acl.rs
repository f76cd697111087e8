//! The MongoDB ACL provider: the documents the filter finds (EMQX 5's
//! `mqtt_acl`: `permission`, `action`, `topics`, optional `qos`, `retain`)
//! become ordinary [`Rule`]s, one per topic, in `sort` order (default
//! `_id`, never the server's natural order); the first that applies
//! decides, none: Ignore. A document we cannot read is
//! an error (the chain's `on_error`), never a silently dropped rule.

use std::fmt;

use mongodb::bson::{Bson, Document};
use portcullis_acl::provider::{AclAnswer, AclProvider};
use portcullis_acl::rule::{decide, Rule};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;

use super::auth::id;
use super::client::Mongo;
use super::config::AclConfig;
use super::filter::Filter;
use crate::common::rows::{EmqxRow, RowError};
use crate::common::template::Values;
use crate::common::BuildError;

pub struct MongoAcl {
    name: String,
    db: Mongo,
    filter: Filter,
    /// `sort` as a document.
    sort: Document,
    cfg: AclConfig,
}

impl fmt::Debug for MongoAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoAcl").field("name", &self.name).field("filter", &self.filter).finish_non_exhaustive()
    }
}

impl MongoAcl {
    pub async fn new(name: &str, cfg: &AclConfig) -> Result<MongoAcl, BuildError> {
        cfg.validate()?;
        Ok(MongoAcl {
            name: name.to_string(),
            db: Mongo::new(name, &cfg.server_settings(), &cfg.collection).await?,
            filter: cfg.compiled_filter()?,
            sort: cfg.sort_document()?,
            cfg: cfg.clone(),
        })
    }

    async fn check(&self, client: &ClientInfo, access: &Access<'_>) -> Result<AclAnswer, ProviderError> {
        let values = Values::from_access(client, access);
        let Some(filter) = self.filter.render(&values) else { return Ok(AclAnswer::ignore()) };
        let docs = self.db.find_all(filter, self.sort.clone(), self.cfg.max_rules).await?;
        let mut rules = Vec::new();
        for d in &docs {
            rules.extend(self.rules(d)?);
        }
        Ok(decide(&rules, client, access))
    }

    /// The rules of one document (one per topic).
    pub fn rules(&self, d: &Document) -> Result<Vec<Rule>, RowError> {
        let c = &self.cfg;
        let origin = format!("mongodb {}", id(d));
        let text = |field: &str| -> Result<String, RowError> {
            match d.get(field) {
                Some(Bson::String(s)) => Ok(s.clone()),
                Some(Bson::Boolean(b)) => Ok(b.to_string()),
                Some(Bson::Int32(i)) => Ok(i.to_string()),
                Some(Bson::Int64(i)) => Ok(i.to_string()),
                _ => Err(RowError::new(field, "is missing or not text").in_row(&origin)),
            }
        };
        let permission = text(&c.permission_field)?;
        let action = text(&c.action_field)?;
        let topics: Vec<String> = match d.get(&c.topics_field) {
            Some(Bson::String(s)) => vec![s.clone()],
            Some(Bson::Array(a)) => a
                .iter()
                .map(|t| match t {
                    Bson::String(s) => Ok(s.clone()),
                    _ => Err(RowError::new(&c.topics_field, "holds a value that is not a string").in_row(&origin)),
                })
                .collect::<Result<_, _>>()?,
            _ => return Err(RowError::new(&c.topics_field, "is missing (a list of topics)").in_row(&origin)),
        };
        let qos = match d.get(&c.qos_field) {
            None | Some(Bson::Null) => None,
            Some(Bson::Array(a)) => Some(a.iter().map(scalar).collect::<Vec<_>>().join(",")),
            Some(other) => Some(scalar(other)),
        };
        let retain = match d.get(&c.retain_field) {
            None | Some(Bson::Null) => None,
            Some(other) => Some(scalar(other)),
        };
        topics
            .into_iter()
            .map(|topic| {
                EmqxRow {
                    permission: permission.clone(),
                    action: action.clone(),
                    topic,
                    qos: qos.clone(),
                    retain: retain.clone(),
                    clientid: None,
                    ipaddress: None,
                }
                .to_rule(origin.clone())
            })
            .collect()
    }
}

fn scalar(b: &Bson) -> String {
    match b {
        Bson::String(s) => s.clone(),
        Bson::Int32(i) => i.to_string(),
        Bson::Int64(i) => i.to_string(),
        Bson::Double(f) => f.to_string(),
        Bson::Boolean(v) => v.to_string(),
        other => other.to_string(),
    }
}

impl AclProvider for MongoAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mongodb"
    }

    fn health(&self) -> Option<bool> {
        Some(self.db.health.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(async move { self.check(client, &access).await })
    }
}
