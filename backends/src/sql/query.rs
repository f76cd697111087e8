//! A configured query: placeholders turned into positional parameters
//! once, at start, and the client's values bound on each call.
//!
//! Every placeholder becomes `$n` (PostgreSQL) or `?` (MySQL) and its value
//! travels as a bound text parameter: nothing a client sends is ever part
//! of the SQL text. emqttd's quoted forms (`username = '%u'`) lose their
//! quotes and are bound too, so its queries can be pasted unchanged.
//!
//! A value is bound as SQL `NULL`, which equals nothing, when the client
//! has none (no username) or when it cannot exist in a database: it holds
//! a NUL byte (PostgreSQL refuses those outright, which would look like an
//! outage) or is longer than [`MAX_VALUE_LEN`]. Such a client is simply
//! not found, while rows that do not depend on the value (emqttd's `$all`
//! rules) still apply.

use crate::common::template::{Template, Values, Var};
use crate::common::BuildError;

/// Longest value bound as itself (the longest MQTT string); anything
/// longer cannot be a stored username or client id.
pub const MAX_VALUE_LEN: usize = 65_535;

/// A parsed query.
#[derive(Debug, Clone)]
pub struct Query {
    template: Template,
    sql: String,
    binds: Vec<Var>,
}

impl Query {
    /// Parses `text`, accepting the placeholders in `allowed`; `dollar`
    /// selects `$1, $2…` (PostgreSQL) over `?` (MySQL).
    /// Errors carry no key: the caller puts them under its own.
    pub fn parse(text: &str, allowed: &[Var], dollar: bool) -> Result<Query, BuildError> {
        let template = Template::parse(text, allowed)?;
        if template.source().trim().is_empty() {
            return Err(BuildError::invalid("", "must not be empty"));
        }
        let (sql, binds) = template.to_positional(dollar);
        Ok(Query { template, sql, binds })
    }

    /// The SQL as sent, with positional parameters.
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// Whether the query binds this placeholder.
    pub fn binds(&self, var: Var) -> bool {
        self.binds.contains(&var)
    }

    /// The query as configured.
    /// The parsed template (what it reads, for the auth cache's inputs).
    pub fn template(&self) -> &Template {
        &self.template
    }

    pub fn source(&self) -> &str {
        self.template.source()
    }

    /// The parameters, in order: `None` (SQL `NULL`) for a value the client
    /// lacks or one that cannot exist in the database.
    pub fn values(&self, values: &Values<'_>) -> Vec<Option<String>> {
        self.binds
            .iter()
            .map(|v| {
                let value = values.get(*v)?;
                if value.len() > MAX_VALUE_LEN || value.contains('\0') {
                    tracing::debug!(placeholder = %v, len = value.len(), "value cannot be stored; bound as NULL");
                    return None;
                }
                Some(value.into_owned())
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_in_order_and_strips_emqttd_quotes() {
        let q = Query::parse(
            "select allow, topic from mqtt_acl where ipaddr = '%a' or username = '%u' or username = '$all' \
             or clientid = '%c'",
            &Var::ACL,
            true,
        )
        .unwrap();
        assert_eq!(
            q.sql(),
            "select allow, topic from mqtt_acl where ipaddr = $1 or username = $2 or username = '$all' or clientid = $3"
        );
        let v = Values {
            username: Some("alice"),
            client_id: Some("c1"),
            peerhost: Some("10.0.0.1".into()),
            ..Values::default()
        };
        assert_eq!(q.values(&v), vec![Some("10.0.0.1".into()), Some("alice".into()), Some("c1".into())]);
        let q =
            Query::parse("SELECT * FROM u WHERE name = ${username} AND c = ${clientid}", &Var::CONNECT, false).unwrap();
        assert_eq!(q.sql(), "SELECT * FROM u WHERE name = ? AND c = ?");
    }

    #[test]
    fn hostile_values_are_bound_never_spliced() {
        let q = Query::parse("SELECT * FROM mqtt_user WHERE username = ${username}", &Var::CONNECT, true).unwrap();
        for evil in ["' OR 1=1 --", "%", "*", "\\'; DROP TABLE mqtt_user; --"] {
            let v = Values { username: Some(evil), ..Values::default() };
            assert_eq!(q.sql(), "SELECT * FROM mqtt_user WHERE username = $1");
            assert_eq!(q.values(&v), vec![Some(evil.to_string())]);
        }
    }

    #[test]
    fn impossible_or_missing_values_are_null() {
        let q = Query::parse("SELECT * FROM mqtt_user WHERE username = ${username}", &Var::CONNECT, true).unwrap();
        let nul = "a\0b";
        assert_eq!(q.values(&Values { username: Some(nul), ..Values::default() }), vec![None]);
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert_eq!(q.values(&Values { username: Some(&long), ..Values::default() }), vec![None]);
        let max = "x".repeat(MAX_VALUE_LEN);
        assert_eq!(q.values(&Values { username: Some(&max), ..Values::default() }), vec![Some(max.clone())]);
        assert_eq!(q.values(&Values::default()), vec![None]);
    }

    #[test]
    fn password_is_not_a_sql_placeholder() {
        let e = Query::parse("SELECT * FROM u WHERE p = ${password}", &Var::CONNECT, true).unwrap_err();
        assert!(e.reason.contains("cannot be used here"), "{e}");
        assert_eq!(e.under("query").key, "query");
        assert_eq!(Query::parse("  ", &Var::CONNECT, true).unwrap_err().to_string(), "must not be empty");
    }
}
