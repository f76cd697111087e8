//! The users half of [`UserStore`]'s API: add, set password, set the
//! superuser flag, delete, get, list (paginated, filtered), and the
//! credentials the auth provider checks. Passwords become argon2id hashes
//! (`portcullis_auth::hash`) before they reach the file.

use std::sync::Arc;

use portcullis_auth::hash::{hash_password, HashError, NewHash};
use portcullis_auth::scram::{self, Algorithm, ScramCredential};
use portcullis_core::gate::Password;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::model::{validate_name, validate_password, Page, PageRequest, User};
use super::store::{corrupt, now, Credentials, StoreError, UserFilter, UserStore};

const USER_COLUMNS: &str = "username, is_superuser, created_at, updated_at";

impl UserStore {
    /// Adds a user with an argon2id hash of `password` and its SCRAM
    /// credentials (both computed off the async threads; the password
    /// itself is never stored).
    pub async fn add_user(&self, username: &str, password: &Password, superuser: bool) -> Result<User, StoreError> {
        validate_name("username", username)?;
        let (hash, scram) = hash(password, self.scram_iterations).await?;
        let now = now();
        let name = username.to_string();
        self.write(move |c| {
            Box::pin(async move {
                let r = sqlx::query(
                    "INSERT INTO users (username, password_hash, is_superuser, created_at, updated_at, \
                     scram_salt, scram_iterations, scram_sha256_stored_key, scram_sha256_server_key, \
                     scram_sha512_stored_key, scram_sha512_server_key) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(&name)
                .bind(&hash)
                .bind(superuser)
                .bind(now)
                .bind(now)
                .bind(&scram.salt)
                .bind(scram.iterations)
                .bind(&scram.sha256.stored_key)
                .bind(&scram.sha256.server_key)
                .bind(&scram.sha512.stored_key)
                .bind(&scram.sha512.server_key)
                .execute(&mut *c)
                .await;
                match r {
                    Ok(_) => Ok(User { username: name, superuser, created_at: now, updated_at: now }),
                    Err(sqlx::Error::Database(d)) if d.is_unique_violation() => Err(StoreError::UserExists(name)),
                    Err(e) => Err(e.into()),
                }
            })
        })
        .await
    }

    /// Replaces a user's password (and its SCRAM credentials).
    pub async fn set_password(&self, username: &str, password: &Password) -> Result<User, StoreError> {
        let (hash, scram) = hash(password, self.scram_iterations).await?;
        let name = username.to_string();
        let now = now();
        self.write(move |c| {
            Box::pin(async move {
                let sql = format!(
                    "UPDATE users SET password_hash = ?, scram_salt = ?, scram_iterations = ?, \
                     scram_sha256_stored_key = ?, scram_sha256_server_key = ?, \
                     scram_sha512_stored_key = ?, scram_sha512_server_key = ?, updated_at = ? \
                     WHERE username = ? RETURNING {USER_COLUMNS}"
                );
                let row = sqlx::query(&sql)
                    .bind(hash)
                    .bind(&scram.salt)
                    .bind(scram.iterations)
                    .bind(&scram.sha256.stored_key)
                    .bind(&scram.sha256.server_key)
                    .bind(&scram.sha512.stored_key)
                    .bind(&scram.sha512.server_key)
                    .bind(now)
                    .bind(&name)
                    .fetch_optional(&mut *c)
                    .await?;
                row.map(|r| user(&r)).transpose()?.ok_or(StoreError::NoSuchUser(name))
            })
        })
        .await
    }

    /// Makes a user a superuser or not.
    pub async fn set_superuser(&self, username: &str, superuser: bool) -> Result<User, StoreError> {
        self.update_user(username, "is_superuser = ?", Bind::Bool(superuser)).await
    }

    async fn update_user(&self, username: &str, set: &'static str, value: Bind) -> Result<User, StoreError> {
        let name = username.to_string();
        let now = now();
        self.write(move |c| {
            Box::pin(async move {
                let sql = format!("UPDATE users SET {set}, updated_at = ? WHERE username = ? RETURNING {USER_COLUMNS}");
                let q = match value {
                    Bind::Bool(b) => sqlx::query(&sql).bind(b),
                };
                let row = q.bind(now).bind(&name).fetch_optional(&mut *c).await?;
                row.map(|r| user(&r)).transpose()?.ok_or(StoreError::NoSuchUser(name))
            })
        })
        .await
    }

    /// Removes a user. Rules for that username stay (they may serve a user
    /// another provider authenticates): [`Self::delete_rules`] removes them.
    pub async fn delete_user(&self, username: &str) -> Result<(), StoreError> {
        let name = username.to_string();
        self.write(move |c| {
            Box::pin(async move {
                let n = sqlx::query("DELETE FROM users WHERE username = ?").bind(&name).execute(&mut *c).await?;
                if n.rows_affected() == 0 {
                    return Err(StoreError::NoSuchUser(name));
                }
                Ok(())
            })
        })
        .await
    }

    /// One user, if it exists.
    pub async fn get_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE username = ?"))
            .bind(username)
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| user(&r)).transpose()
    }

    /// Users in username order (bytewise), a page at a time.
    pub async fn list_users(&self, filter: &UserFilter, page: PageRequest) -> Result<Page<User>, StoreError> {
        let (limit, offset) = page.bounds()?;
        let cond = "(?1 IS NULL OR instr(username, ?1) > 0) AND (?2 IS NULL OR is_superuser = ?2)";
        let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM users WHERE {cond}"))
            .bind(filter.username_contains.as_deref())
            .bind(filter.superuser)
            .fetch_one(self.readers())
            .await?;
        let rows =
            sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE {cond} ORDER BY username LIMIT ?3 OFFSET ?4"))
                .bind(filter.username_contains.as_deref())
                .bind(filter.superuser)
                .bind(limit)
                .bind(offset)
                .fetch_all(self.readers())
                .await?;
        let items = rows.iter().map(user).collect::<Result<_, _>>()?;
        Ok(Page { items, page: page.page, limit: page.limit, total: total as u64 })
    }

    /// A user's hash and superuser flag (for the auth provider).
    pub async fn credentials(&self, username: &str) -> Result<Option<Credentials>, StoreError> {
        let row = sqlx::query("SELECT password_hash, is_superuser FROM users WHERE username = ?")
            .bind(username)
            .fetch_optional(self.readers())
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(Credentials { password_hash: row.try_get(0)?, superuser: flag(&row, 1)? }))
    }

    /// A user's SCRAM credential for `alg` and superuser flag: `None` for
    /// an unknown user, or one whose password was set before the store
    /// kept SCRAM credentials.
    pub async fn scram_credential(
        &self,
        username: &str,
        alg: Algorithm,
    ) -> Result<Option<ScramCredential>, StoreError> {
        let sql = match alg {
            Algorithm::Sha256 => {
                "SELECT scram_salt, scram_iterations, scram_sha256_stored_key, scram_sha256_server_key, is_superuser \
                 FROM users WHERE username = ?"
            }
            Algorithm::Sha512 => {
                "SELECT scram_salt, scram_iterations, scram_sha512_stored_key, scram_sha512_server_key, is_superuser \
                 FROM users WHERE username = ?"
            }
        };
        let row = sqlx::query(sql).bind(username).fetch_optional(self.readers()).await?;
        let Some(row) = row else { return Ok(None) };
        let salt: Option<Vec<u8>> = row.try_get(0)?;
        let iterations: Option<i64> = row.try_get(1)?;
        let stored_key: Option<Vec<u8>> = row.try_get(2)?;
        let server_key: Option<Vec<u8>> = row.try_get(3)?;
        let (Some(salt), Some(iterations), Some(stored_key), Some(server_key)) =
            (salt, iterations, stored_key, server_key)
        else {
            return Ok(None);
        };
        let iterations = u32::try_from(iterations).map_err(|_| corrupt(format!("scram_iterations {iterations}")))?;
        Ok(Some(ScramCredential {
            salt,
            iterations,
            stored_key,
            server_key,
            superuser: flag(&row, 4)?,
            inline_acl: None,
        }))
    }
}

enum Bind {
    Bool(bool),
}

/// A password's SCRAM credentials, one salt for both algorithms.
struct ScramColumns {
    salt: Vec<u8>,
    iterations: u32,
    sha256: ScramCredential,
    sha512: ScramCredential,
}

/// An argon2id hash of `password` and its SCRAM credentials
/// (`iterations` of PBKDF2 per algorithm), computed on the blocking pool,
/// at most one per CPU at a time (each holds Argon2's 19 MiB): a burst of
/// API writes queues instead of spawning a thread each.
async fn hash(password: &Password, iterations: u32) -> Result<(String, ScramColumns), StoreError> {
    static PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    validate_password(password.expose())?;
    let permits = PERMITS.get_or_init(|| {
        let n = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(n))
    });
    let permit =
        Arc::clone(permits).acquire_owned().await.map_err(|_| HashError::Internal("hash worker pool closed"))?;
    let password = password.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let hash = hash_password(password.expose(), NewHash::Argon2id)?;
        let salt = scram::new_salt();
        let sha256 = scram::derive(Algorithm::Sha256, password.expose(), &salt, iterations);
        let sha512 = scram::derive(Algorithm::Sha512, password.expose(), &salt, iterations);
        Ok::<_, HashError>((hash, ScramColumns { salt, iterations, sha256, sha512 }))
    })
    .await
    .map_err(|_| HashError::Internal("hash worker panicked or was cancelled"))?
    .map_err(StoreError::from)
}

fn flag(row: &SqliteRow, i: usize) -> Result<bool, StoreError> {
    match row.try_get::<i64, _>(i)? {
        0 => Ok(false),
        1 => Ok(true),
        n => Err(corrupt(format!("is_superuser {n}: expected 0 or 1"))),
    }
}

fn user(row: &SqliteRow) -> Result<User, StoreError> {
    Ok(User {
        username: row.try_get(0)?,
        superuser: flag(row, 1)?,
        created_at: row.try_get(2)?,
        updated_at: row.try_get(3)?,
    })
}
