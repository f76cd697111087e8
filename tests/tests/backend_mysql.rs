//! The mysql backend end to end: the real broker against the real
//! MySQL / MariaDB server that `scripts/services.sh mariadb` starts (with the
//! fixtures of `tests/fixtures/sql`). The scenarios are shared with the
//! other SQL backend (`sql_common/scenarios.rs`); a test fails, never
//! silently skips, when the server's variables are missing.
//!
//! ```sh
//! scripts/services.sh mariadb -- cargo test -p portcullis-tests --test backend_mysql
//! ```

mod sql_common;

use sql_common::{scenarios, Db};

fn db() -> Option<Db> {
    Db::mysql()
}

#[tokio::test]
async fn auth_with_emqx_tables() {
    let Some(db) = db() else { return };
    scenarios::auth_emqx(&db).await;
}

#[tokio::test]
async fn auth_with_emqttd_tables_and_pasted_emqttd_queries() {
    let Some(db) = db() else { return };
    scenarios::auth_emqttd(&db).await;
}

#[tokio::test]
async fn every_password_hash_type() {
    let Some(db) = db() else { return };
    scenarios::every_hash_type(&db).await;
}

#[tokio::test]
async fn acl_with_emqx_rows() {
    let Some(db) = db() else { return };
    scenarios::acl_emqx(&db).await;
}

#[tokio::test]
async fn acl_with_emqttd_rows() {
    let Some(db) = db() else { return };
    scenarios::acl_emqttd(&db).await;
}

#[tokio::test]
async fn tls_to_the_database() {
    let Some(db) = db() else { return };
    scenarios::tls_to_backend(&db).await;
}

#[tokio::test]
async fn killed_sessions_are_not_bad_credentials() {
    let Some(db) = db() else { return };
    scenarios::killed_connections(&db).await;
}

#[tokio::test]
async fn sessions_closed_when_idle_are_not_bad_credentials() {
    let Some(db) = db() else { return };
    scenarios::idle_sessions_closed_by_server(&db).await;
}

#[tokio::test]
async fn database_down_at_start_and_restarted_mid_test() {
    let Some(db) = db() else { return };
    scenarios::outage_and_recovery(&db).await;
}

#[tokio::test]
async fn config_errors_name_the_key() {
    let Some(db) = db() else { return };
    scenarios::config_errors_name_the_key(&db).await;
}

#[tokio::test]
async fn unknown_users_cost_a_hash_like_wrong_passwords() {
    let Some(db) = db() else { return };
    scenarios::unknown_users_cost_a_hash(&db).await;
}
