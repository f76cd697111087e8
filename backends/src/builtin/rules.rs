//! The ACL rules half of [`UserStore`]'s API: add, get, delete (one, or a
//! subject's), list, and a client's rules in decision order for the ACL
//! provider.

use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::model::{
    action_name, parse_action, parse_permission, parse_qos, permission_name, NewRule, Page, PageRequest, RuleSubject,
    StoredRule,
};
use super::store::{corrupt, now, StoreError, UserStore};
use crate::common::rows::RowError;

const RULE_COLUMNS: &str = "id, subject_kind, subject, priority, permission, action, topic, qos, retain, created_at";
/// Decision order: priority, then a client id's rules before a username's,
/// then the order they were added.
const RULE_ORDER: &str = "priority, CASE subject_kind WHEN 'clientid' THEN 0 ELSE 1 END, id";

impl UserStore {
    /// Adds a rule (validated first: subject, topic pattern, QoS list).
    pub async fn add_rule(&self, rule: &NewRule) -> Result<StoredRule, StoreError> {
        let qos = rule.validate()?;
        let rule = rule.clone();
        let now = now();
        self.write(move |c| {
            Box::pin(async move {
                let row = sqlx::query(&format!(
                    "INSERT INTO acl_rules (subject_kind, subject, priority, permission, action, topic, qos, retain, \
                     created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {RULE_COLUMNS}"
                ))
                .bind(rule.subject.kind())
                .bind(rule.subject.value())
                .bind(rule.priority)
                .bind(permission_name(rule.permission))
                .bind(action_name(rule.action))
                .bind(&rule.topic)
                .bind(qos)
                .bind(rule.retain)
                .bind(now)
                .fetch_one(&mut *c)
                .await?;
                stored_rule(&row)
            })
        })
        .await
    }

    /// One rule, if it exists.
    pub async fn get_rule(&self, id: i64) -> Result<Option<StoredRule>, StoreError> {
        let row = sqlx::query(&format!("SELECT {RULE_COLUMNS} FROM acl_rules WHERE id = ?"))
            .bind(id)
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| stored_rule(&r)).transpose()
    }

    /// Removes one rule.
    pub async fn delete_rule(&self, id: i64) -> Result<(), StoreError> {
        self.write(move |c| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM acl_rules WHERE id = ?").bind(id).execute(&mut *c).await?;
                if n.rows_affected() == 0 {
                    return Err(StoreError::NoSuchRule(id));
                }
                Ok(())
            })
        })
        .await
    }

    /// Removes every rule of a username or client id; returns how many.
    pub async fn delete_rules(&self, subject: &RuleSubject) -> Result<u64, StoreError> {
        let subject = subject.clone();
        self.write(move |c| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM acl_rules WHERE subject_kind = ? AND subject = ?")
                    .bind(subject.kind())
                    .bind(subject.value())
                    .execute(&mut *c)
                    .await?;
                Ok(n.rows_affected())
            })
        })
        .await
    }

    /// Rules, a page at a time: one subject's in decision order, or every
    /// rule by id.
    pub async fn list_rules(
        &self,
        subject: Option<&RuleSubject>,
        page: PageRequest,
    ) -> Result<Page<StoredRule>, StoreError> {
        let (limit, offset) = page.bounds()?;
        let (kind, value) = subject.map_or((None, None), |s| (Some(s.kind()), Some(s.value())));
        let cond = "(?1 IS NULL OR (subject_kind = ?1 AND subject = ?2))";
        let order = if subject.is_some() { RULE_ORDER } else { "id" };
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM acl_rules WHERE {cond}"))
            .bind(kind)
            .bind(value)
            .fetch_one(self.readers())
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM acl_rules WHERE {cond} ORDER BY {order} LIMIT ?3 OFFSET ?4"
        ))
        .bind(kind)
        .bind(value)
        .bind(limit)
        .bind(offset)
        .fetch_all(self.readers())
        .await?;
        let items = rows.iter().map(stored_rule).collect::<Result<_, _>>()?;
        Ok(Page { items, page: page.page, limit: page.limit, total: total as u64 })
    }

    /// The rules that concern a client (its client id's and its
    /// username's), in decision order.
    pub async fn rules_for_client(
        &self,
        username: Option<&str>,
        client_id: &str,
    ) -> Result<Vec<StoredRule>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {RULE_COLUMNS} FROM acl_rules WHERE (subject_kind = 'clientid' AND subject = ?1) \
             OR (subject_kind = 'username' AND subject = ?2) ORDER BY {RULE_ORDER}"
        ))
        .bind(client_id)
        .bind(username)
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(stored_rule).collect()
    }
}

fn stored_rule(row: &SqliteRow) -> Result<StoredRule, StoreError> {
    let id: i64 = row.try_get(0)?;
    let at = |e: RowError| corrupt(e.in_row(&format!("rule {id}")));
    let kind: String = row.try_get(1)?;
    let qos: Option<String> = row.try_get(7)?;
    let retain = match row.try_get::<Option<i64>, _>(8)? {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(n) => return Err(at(RowError::new("retain", format!("{n}: expected 0 or 1")))),
    };
    Ok(StoredRule {
        id,
        subject: RuleSubject::from_row(&kind, row.try_get(2)?).map_err(at)?,
        priority: row.try_get(3)?,
        permission: parse_permission(&row.try_get::<String, _>(4)?).map_err(at)?,
        action: parse_action(&row.try_get::<String, _>(5)?).map_err(at)?,
        topic: row.try_get(6)?,
        qos: qos.as_deref().map(parse_qos).transpose().map_err(at)?,
        retain,
        created_at: row.try_get(9)?,
    })
}
