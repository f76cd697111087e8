//! The store's schema and its migrations.
//!
//! A one-row table `schema_version` holds the version the file is at;
//! [`migrate`] brings a file from any older version to [`CURRENT_VERSION`]
//! in one `BEGIN IMMEDIATE` transaction (all steps or none), and refuses a
//! file written by a newer Portcullis, or a database that has tables but no
//! `schema_version` (not a user store: we do not write into it).
//!
//! | version | what it adds |
//! |---|---|
//! | 1 | `users` (unique, case-sensitive username; argon2id hash; superuser flag; created/updated times) and `acl_rules` (per username or client id: permission, action, topic, QoS list, retain, priority) |
//! | 2 | `revision`: a counter every change to either table bumps (triggers), so a broker notices writes from other processes |
//! | 3 | SCRAM credentials on `users` (salt, iterations, StoredKey and ServerKey for SHA-256 and SHA-512), derived whenever a password is set; NULL for users whose password was set before |
//!
//! A migration is appended, never edited: a file at version N has run
//! exactly the first N steps.

use sqlx::{Connection, SqliteConnection};

/// The version this build writes.
pub const CURRENT_VERSION: i64 = MIGRATIONS.len() as i64;

/// One step: the SQL that takes a file from `version - 1` to `version`.
#[derive(Debug)]
pub struct Migration {
    pub version: i64,
    pub what: &'static str,
    pub sql: &'static str,
}

/// Every step, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        what: "users and ACL rules",
        sql: r#"
CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    -- BINARY collation: `Alice` and `alice ` are other users.
    username      TEXT    NOT NULL UNIQUE CHECK (length(username) > 0),
    password_hash TEXT    NOT NULL CHECK (length(password_hash) > 0),
    is_superuser  INTEGER NOT NULL DEFAULT 0 CHECK (is_superuser IN (0, 1)),
    created_at    INTEGER NOT NULL,   -- Unix seconds, UTC
    updated_at    INTEGER NOT NULL
);
CREATE TABLE acl_rules (
    id           INTEGER PRIMARY KEY,
    subject_kind TEXT    NOT NULL CHECK (subject_kind IN ('username', 'clientid')),
    subject      TEXT    NOT NULL CHECK (length(subject) > 0),
    priority     INTEGER NOT NULL DEFAULT 0,
    permission   TEXT    NOT NULL CHECK (permission IN ('allow', 'deny')),
    action       TEXT    NOT NULL CHECK (action IN ('publish', 'subscribe', 'all')),
    topic        TEXT    NOT NULL CHECK (length(topic) > 0),
    qos          TEXT,               -- '0,1' …; NULL: any QoS
    retain       INTEGER CHECK (retain IN (0, 1)),   -- NULL: either
    created_at   INTEGER NOT NULL
);
CREATE INDEX acl_rules_by_subject ON acl_rules (subject_kind, subject, priority, id);
"#,
    },
    Migration {
        version: 2,
        what: "a revision counter bumped by every change",
        sql: r#"
CREATE TABLE revision (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO revision (id, value) VALUES (1, 1);
CREATE TRIGGER users_insert AFTER INSERT ON users BEGIN UPDATE revision SET value = value + 1; END;
CREATE TRIGGER users_update AFTER UPDATE ON users BEGIN UPDATE revision SET value = value + 1; END;
CREATE TRIGGER users_delete AFTER DELETE ON users BEGIN UPDATE revision SET value = value + 1; END;
CREATE TRIGGER acl_rules_insert AFTER INSERT ON acl_rules BEGIN UPDATE revision SET value = value + 1; END;
CREATE TRIGGER acl_rules_update AFTER UPDATE ON acl_rules BEGIN UPDATE revision SET value = value + 1; END;
CREATE TRIGGER acl_rules_delete AFTER DELETE ON acl_rules BEGIN UPDATE revision SET value = value + 1; END;
"#,
    },
    Migration {
        version: 3,
        what: "SCRAM credentials (MQTT 5 enhanced authentication)",
        sql: r#"
ALTER TABLE users ADD COLUMN scram_salt BLOB;
ALTER TABLE users ADD COLUMN scram_iterations INTEGER CHECK (scram_iterations > 0);
ALTER TABLE users ADD COLUMN scram_sha256_stored_key BLOB;
ALTER TABLE users ADD COLUMN scram_sha256_server_key BLOB;
ALTER TABLE users ADD COLUMN scram_sha512_stored_key BLOB;
ALTER TABLE users ADD COLUMN scram_sha512_server_key BLOB;
"#,
    },
];

/// Why a file cannot be used as a store (besides SQLite errors).
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema version {found} is newer than this Portcullis supports ({supported}); use a newer release")]
    TooNew { found: i64, supported: i64 },
    #[error("the database has tables but no schema_version: not a Portcullis user store")]
    Foreign,
    #[error("schema_version holds {0} rows, expected one")]
    BadVersionTable(i64),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

/// The version of the file, or `None` for an empty database (no table).
pub async fn version(conn: &mut SqliteConnection) -> Result<Option<i64>, SchemaError> {
    let has: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
            .fetch_one(&mut *conn)
            .await?;
    if has == 0 {
        let tables: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'",
        )
        .fetch_one(&mut *conn)
        .await?;
        return if tables == 0 { Ok(None) } else { Err(SchemaError::Foreign) };
    }
    let rows: Vec<i64> = sqlx::query_scalar("SELECT version FROM schema_version").fetch_all(&mut *conn).await?;
    match rows.as_slice() {
        [v] => Ok(Some(*v)),
        other => Err(SchemaError::BadVersionTable(other.len() as i64)),
    }
}

/// Brings the file to `target` (at most [`CURRENT_VERSION`]); returns the
/// version it was at (0 for a new file). Tests use a lower `target` to
/// make old files.
pub async fn migrate_to(conn: &mut SqliteConnection, target: i64) -> Result<i64, SchemaError> {
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let found = match version(&mut tx).await? {
        Some(v) => v,
        None => {
            sqlx::raw_sql(
                "CREATE TABLE schema_version (version INTEGER NOT NULL); INSERT INTO schema_version VALUES (0);",
            )
            .execute(&mut *tx)
            .await?;
            0
        }
    };
    if found > CURRENT_VERSION {
        return Err(SchemaError::TooNew { found, supported: CURRENT_VERSION });
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > found && m.version <= target) {
        sqlx::raw_sql(m.sql).execute(&mut *tx).await?;
        sqlx::query("UPDATE schema_version SET version = ?").bind(m.version).execute(&mut *tx).await?;
        tracing::info!(version = m.version, what = m.what, "user store migrated");
    }
    tx.commit().await?;
    Ok(found)
}

/// Brings the file to [`CURRENT_VERSION`].
pub async fn migrate(conn: &mut SqliteConnection) -> Result<i64, SchemaError> {
    migrate_to(conn, CURRENT_VERSION).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.what);
        }
        assert_eq!(CURRENT_VERSION, 3);
    }
}
