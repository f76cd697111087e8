//! The SQL ACL provider.
//!
//! For each access the query returns the client's rules, in order; each row
//! becomes an ordinary [`Rule`] ([`EmqxRow`] when the result has a
//! `permission` column, [`EmqttdRow`] when it has `allow`) and the first
//! rule that applies decides, exactly as in an ACL file
//! ([`portcullis_acl::rule::decide`]). No applicable rule: Ignore.
//!
//! Without a configured query the provider looks at `mqtt_acl`'s columns on
//! first use (not at start: the database may be down then) and uses the
//! default query for the schema it finds:
//!
//! * EMQX 5 (`permission`, `action`, `topic`): the user's rows,
//!   `WHERE username = ${username}`, with `qos` and `retain` when the table
//!   has them;
//! * emqttd 1.x (`allow`, `access`, `topic`): rows for the client's address,
//!   username, `$all`, or client id, as emqttd selected them; each row then
//!   applies only to the clients its `ipaddr`/`username`/`clientid` name.
//!
//! Rows are ordered by `id` when the table has one. A row that cannot be
//! read (an unknown permission, a bad topic) fails the check as a backend
//! error: skipping it could turn a deny into an allow.

use std::sync::Arc;

use portcullis_acl::provider::{AclAnswer, AclProvider};
use portcullis_acl::rule::{decide, Rule};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};
use tokio::sync::OnceCell;

use super::client::{Client, Driver};
use super::config::AclConfig;
use super::query::Query;
use super::row::SqlRow;
use crate::common::rows::{EmqttdRow, EmqxRow, RowError};
use crate::common::template::{Values, Var};
use crate::common::BuildError;

/// The table the default queries read.
pub const ACL_TABLE: &str = "mqtt_acl";

/// Every column either row shape uses, and `id` to name the row.
const ACL_COLUMNS: [&str; 12] = [
    "permission",
    "action",
    "topic",
    "qos",
    "retain",
    "clientid",
    "ipaddress",
    "allow",
    "access",
    "username",
    "ipaddr",
    "id",
];

/// The schemas a default query exists for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    Emqx,
    Emqttd,
}

/// The default query for `mqtt_acl` with these columns (lower case).
/// An error is the backend's (its table is not one we know) and fails the
/// check like any other.
pub fn default_acl_query(columns: &[String]) -> Result<(Schema, String), ProviderError> {
    let has = |c: &str| columns.iter().any(|x| x == c);
    let (id, order) = if has("id") { ("id, ", " ORDER BY id") } else { ("", "") };
    if has("permission") && has("action") && has("topic") {
        let mut select = format!("{id}permission, action, topic");
        for extra in ["qos", "retain"] {
            if has(extra) {
                select.push_str(", ");
                select.push_str(extra);
            }
        }
        Ok((Schema::Emqx, format!("SELECT {select} FROM {ACL_TABLE} WHERE username = ${{username}}{order}")))
    } else if has("allow") && has("access") && has("topic") {
        Ok((
            Schema::Emqttd,
            format!(
                "SELECT {id}allow, ipaddr, username, clientid, access, topic FROM {ACL_TABLE} WHERE ipaddr = ${{peerhost}} \
                 OR username = ${{username}} OR username = '$all' OR clientid = ${{clientid}}{order}"
            ),
        ))
    } else if columns.is_empty() {
        Err(bad(format!("table {ACL_TABLE} not found; create it or set `query`")))
    } else {
        Err(bad(format!(
            "table {ACL_TABLE} has neither EMQX's columns (permission, action, topic) nor emqttd's (allow, access, \
             topic); set `query`"
        )))
    }
}

/// Where the query comes from.
enum Source {
    Configured(Query),
    /// Decided on first successful use.
    Detected(OnceCell<Query>),
}

pub struct SqlAcl<D: Driver> {
    name: String,
    client: Arc<Client<D>>,
    source: Source,
}

impl<D: Driver> std::fmt::Debug for SqlAcl<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let query = match &self.source {
            Source::Configured(q) => Some(q.source()),
            Source::Detected(cell) => cell.get().map(Query::source),
        };
        f.debug_struct("SqlAcl").field("kind", &D::KIND).field("name", &self.name).field("query", &query).finish()
    }
}

impl<D: Driver> SqlAcl<D> {
    /// Builds the provider (the pool connects lazily). Errors name the key.
    pub fn new(name: &str, cfg: &AclConfig) -> Result<SqlAcl<D>, BuildError> {
        let source = match &cfg.query {
            Some(q) => Source::Configured(Query::parse(q, &Var::ACL, D::DOLLAR).map_err(|e| e.under("query"))?),
            None => Source::Detected(OnceCell::new()),
        };
        let client = Client::<D>::new(name, &cfg.connection())?;
        Ok(SqlAcl { name: name.to_string(), client, source })
    }

    /// Where the provider connects.
    pub fn endpoint(&self) -> &crate::common::transport::Endpoint {
        self.client.endpoint()
    }

    /// Starts the background connection probe (see [`Client::probe`]).
    pub fn probe(&self) {
        self.client.probe();
    }

    async fn query(&self) -> Result<&Query, ProviderError> {
        match &self.source {
            Source::Configured(q) => Ok(q),
            Source::Detected(cell) => cell.get_or_try_init(|| self.detect()).await,
        }
    }

    async fn detect(&self) -> Result<Query, ProviderError> {
        let rows = self.client.fetch(D::COLUMNS_QUERY, &[Some(ACL_TABLE.to_string())], &["column_name"]).await?;
        let columns = rows
            .iter()
            .map(|r| r.text("column_name").map(|c| c.unwrap_or_default().to_ascii_lowercase()))
            .collect::<Result<Vec<_>, _>>()?;
        let (schema, text) = default_acl_query(&columns)?;
        let query = Query::parse(&text, &Var::ACL, D::DOLLAR).map_err(|e| bad(format!("default query: {e}")))?;
        tracing::info!(provider = %self.name, kind = D::KIND, ?schema, query = %query.source(),
            "no ACL query configured; using the default for this mqtt_acl");
        Ok(query)
    }

    async fn check(&self, client: &ClientInfo, access: &Access<'_>) -> Result<AclAnswer, ProviderError> {
        let query = self.query().await?;
        let values = Values::from_access(client, access);
        let rows = self.client.fetch(query.sql(), &query.values(&values), &ACL_COLUMNS).await?;
        let rules = rows
            .iter()
            .enumerate()
            .map(|(i, row)| to_rule(row, self.origin(row, i)))
            .collect::<Result<Vec<Rule>, RowError>>()?;
        Ok(decide(&rules, client, access))
    }
}

impl<D: Driver> SqlAcl<D> {
    /// How decisions name a row: by its `id` when the result has one
    /// (`postgres:acl id 4`), else by its position (`postgres:acl row 2`).
    fn origin(&self, row: &SqlRow, index: usize) -> String {
        match row.text("id") {
            Ok(Some(id)) => format!("{}:{} id {id}", D::KIND, self.name),
            _ => format!("{}:{} row {}", D::KIND, self.name, index + 1),
        }
    }
}

fn bad(message: impl Into<String>) -> ProviderError {
    ProviderError::new(ErrorKind::BadResponse, message)
}

/// One result row as a rule; `origin` names it in decisions.
pub fn to_rule(row: &SqlRow, origin: String) -> Result<Rule, RowError> {
    let required = |name: &str| row.text(name)?.ok_or_else(|| RowError::new(name, "is NULL or missing"));
    let number = |name: &str| row.int(name);
    let rule = if row.has("permission") {
        EmqxRow {
            permission: required("permission")?,
            action: required("action")?,
            topic: required("topic")?,
            qos: row.text("qos")?,
            retain: row.text("retain")?,
            clientid: row.text("clientid")?,
            ipaddress: row.text("ipaddress")?,
        }
        .to_rule(origin.clone())
    } else if row.has("allow") {
        EmqttdRow {
            allow: number("allow")?,
            access: number("access")?,
            topic: required("topic")?,
            username: row.text("username")?,
            clientid: row.text("clientid")?,
            ipaddr: row.text("ipaddr")?,
        }
        .to_rule(origin.clone())
    } else {
        return Err(RowError::new(
            "",
            "ACL rows need permission, action and topic columns (EMQX) or allow, access and topic (emqttd)",
        ));
    };
    rule.map_err(|e| e.in_row(&origin))
}

impl<D: Driver> AclProvider for SqlAcl<D> {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        D::KIND
    }

    fn health(&self) -> Option<bool> {
        Some(self.client.is_up())
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        Box::pin(async move { self.check(client, &access).await })
    }
}

#[cfg(test)]
mod tests {
    use portcullis_acl::rule::{Action, Permission, TopicPattern};

    use super::*;
    use crate::sql::row::Cell;

    fn cols(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn default_query_per_schema() {
        let (s, q) =
            default_acl_query(&cols(&["id", "username", "permission", "action", "topic", "qos", "retain"])).unwrap();
        assert_eq!(s, Schema::Emqx);
        assert_eq!(
            q,
            "SELECT id, permission, action, topic, qos, retain FROM mqtt_acl WHERE username = ${username} ORDER BY id"
        );
        let (s, q) = default_acl_query(&cols(&["username", "permission", "action", "topic"])).unwrap();
        assert_eq!(s, Schema::Emqx);
        assert!(q.ends_with("WHERE username = ${username}"), "{q}");
        let (s, q) =
            default_acl_query(&cols(&["id", "allow", "ipaddr", "username", "clientid", "access", "topic"])).unwrap();
        assert_eq!(s, Schema::Emqttd);
        assert!(q.contains("username = '$all'"), "{q}");
        // `'$all'` stays a literal; the placeholders are bound.
        let query = Query::parse(&q, &Var::ACL, true).unwrap();
        assert_eq!(
            query.sql(),
            "SELECT id, allow, ipaddr, username, clientid, access, topic FROM mqtt_acl WHERE ipaddr = $1 OR username = $2 \
             OR username = '$all' OR clientid = $3 ORDER BY id"
        );
        assert!(default_acl_query(&[]).unwrap_err().message.contains("not found"));
        assert!(default_acl_query(&cols(&["a", "b"])).unwrap_err().message.contains("set `query`"));
    }

    #[test]
    fn rows_become_rules() {
        let emqx = SqlRow(vec![
            ("permission", Cell::Text("deny".into())),
            ("action", Cell::Text("subscribe".into())),
            ("topic", Cell::Text("t/${username}/#".into())),
            ("qos", Cell::Int(1)),
            ("retain", Cell::Null),
        ]);
        let r = to_rule(&emqx, "pg:x row 1".into()).unwrap();
        assert_eq!((r.permission, r.action, r.qos.clone()), (Permission::Deny, Action::Subscribe, Some(vec![1])));
        assert_eq!(r.topics, vec![TopicPattern::Filter("t/${username}/#".into())]);
        let emqttd = SqlRow(vec![
            ("topic", Cell::Text("dev/%c/#".into())),
            ("allow", Cell::Int(1)),
            ("access", Cell::Text("3".into())),
            ("username", Cell::Text("$all".into())),
            ("clientid", Cell::Null),
            ("ipaddr", Cell::Null),
        ]);
        let r = to_rule(&emqttd, "o".into()).unwrap();
        assert_eq!((r.permission, r.action), (Permission::Allow, Action::All));
        assert!(r.subject.is_everyone());
        assert_eq!(r.topics, vec![TopicPattern::Filter("dev/${clientid}/#".into())]);
    }

    #[test]
    fn unreadable_rows_fail_closed() {
        let row = SqlRow(vec![
            ("permission", Cell::Text("maybe".into())),
            ("action", Cell::Text("all".into())),
            ("topic", Cell::Text("a".into())),
        ]);
        let e = to_rule(&row, "pg:x row 2".into()).unwrap_err();
        assert_eq!((e.row.as_str(), e.field.as_str()), ("pg:x row 2", "permission"));
        assert!(e.to_string().starts_with("pg:x row 2: permission"), "{e}");
        let row = SqlRow(vec![("allow", Cell::Null), ("access", Cell::Int(1)), ("topic", Cell::Text("a".into()))]);
        let e = to_rule(&row, "o".into()).unwrap_err();
        assert_eq!((e.field.as_str(), e.reason.as_str()), ("allow", "is NULL"));
        assert!(to_rule(&SqlRow(vec![("topic", Cell::Text("a".into()))]), "o".into()).is_err());
    }
}
