//! API keys: who may call the API, and with which role.
//!
//! A key is an id (`api_key`) and a secret (`api_secret`), sent as HTTP
//! Basic credentials. Keys created through the API get 32 random bytes of
//! secret, shown once; keys from the bootstrap file (`key:secret:role`
//! lines, EMQX's format) are held in memory only and cannot be changed
//! through the API.
//!
//! Secrets are stored as HMAC-SHA256 under a random 16-byte salt per key,
//! compared in constant time. A slow password hash (argon2) buys nothing
//! for a secret of 256 random bits — no dictionary reaches it — and would
//! cost every API request tens of milliseconds of CPU next to the MQTT
//! traffic; the salt keeps equal secrets apart. Bootstrap secrets are
//! chosen by people, so they must be at least [`MIN_BOOTSTRAP_SECRET`]
//! characters, and the lockout bounds guessing over the network.
//!
//! Created keys live in `<data_dir>/api_keys.json`, written whole
//! (a temporary file, mode 0600, renamed into place) under a lock, so
//! concurrent changes are applied one after the other; the directory is
//! created 0700 when missing.

use std::collections::HashSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::RwLock;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::Role;

/// Name of the key store in the data directory.
pub const FILE_NAME: &str = "api_keys.json";
/// Keys at most (created and bootstrap together).
pub const MAX_KEYS: usize = 1000;
/// Shortest secret accepted from the bootstrap file.
pub const MIN_BOOTSTRAP_SECRET: usize = 16;

/// Where a key comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Created through the API; kept in the key store.
    Api,
    /// Read from `[admin] bootstrap_file` at start.
    BootstrapFile,
}

/// One key as stored (never its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    pub name: String,
    pub api_key: String,
    /// Hex.
    salt: String,
    /// Hex HMAC-SHA256(salt, secret).
    hash: String,
    pub role: Role,
    pub enable: bool,
    pub desc: String,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds; `None`: never.
    pub expired_at: Option<u64>,
    #[serde(skip, default = "api_source")]
    pub source: Source,
    /// Set on the key made from `[admin] dashboard_initial_password`:
    /// until its secret is changed, it may do nothing but change it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub must_change: bool,
}

fn api_source() -> Source {
    Source::Api
}

impl Record {
    fn new(name: String, api_key: String, secret: &[u8], role: Role, source: Source) -> Record {
        let mut salt = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut salt);
        Record {
            name,
            api_key,
            salt: hex(&salt),
            hash: hex(&mac(&salt, secret)),
            role,
            enable: true,
            desc: String::new(),
            created_at: now_secs(),
            expired_at: None,
            source,
            must_change: false,
        }
    }

    fn matches(&self, secret: &[u8]) -> bool {
        let (Some(salt), Some(want)) = (unhex(&self.salt), unhex(&self.hash)) else { return false };
        bool::from(mac(&salt, secret).as_slice().ct_eq(&want))
    }

    /// Past its expiry.
    pub fn expired(&self) -> bool {
        self.expired_at.is_some_and(|t| t <= now_secs())
    }
}

fn mac(salt: &[u8], secret: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(salt).unwrap_or_else(|_| unreachable!());
    m.update(secret);
    m.finalize().into_bytes().into()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// What the key store file holds.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoreFile {
    version: u32,
    keys: Vec<Record>,
}

/// Why a change to the keys was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("no API key named `{0}`")]
    NotFound(String),
    #[error("an API key named `{0}` exists")]
    Exists(String),
    #[error("`{0}` comes from the bootstrap file; change it there (read at start)")]
    Bootstrap(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{MAX_KEYS} API keys exist; delete one first")]
    TooMany,
    #[error("an administrator key exists")]
    AdminExists,
    #[error("wrong secret")]
    WrongSecret,
    #[error("cannot write the key store {}: {error}", .path.display())]
    Write { path: PathBuf, error: std::io::Error },
}

/// Why the keys could not be loaded at start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LoadError(pub String);

/// A change to a key (absent fields are left as they are).
#[derive(Debug, Default, Clone)]
pub struct Patch {
    pub enable: Option<bool>,
    pub desc: Option<String>,
    pub role: Option<Role>,
    /// `Some(None)`: never expires.
    pub expired_at: Option<Option<u64>>,
}

/// Every key (see the module docs).
#[derive(Debug)]
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Vec<Record>>,
    /// Serialises changes: each is written to disk before it is seen.
    writing: tokio::sync::Mutex<()>,
}

/// Checks a key name: EMQX's rule, letters first.
pub fn check_name(name: &str) -> Result<(), KeyError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match ok {
        true => Ok(()),
        false => {
            Err(KeyError::Invalid("name: 1 to 64 letters, digits, `_` and `-`, starting with a letter".to_string()))
        }
    }
}

impl KeyStore {
    /// Loads the key store of `data_dir` (if it exists) and the bootstrap
    /// file (if configured). A problem in either refuses the start.
    pub fn load(data_dir: &Path, bootstrap: Option<&Path>) -> Result<KeyStore, LoadError> {
        let path = data_dir.join(FILE_NAME);
        let mut keys = match std::fs::read_to_string(&path) {
            Ok(text) => {
                warn_if_readable(&path);
                let file: StoreFile = serde_json::from_str(&text)
                    .map_err(|e| LoadError(format!("{}: not a key store: {e}", path.display())))?;
                file.keys
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(LoadError(format!("{}: {e}", path.display()))),
        };
        if let Some(b) = bootstrap {
            keys.extend(read_bootstrap(b)?);
        }
        let (mut names, mut ids) = (HashSet::new(), HashSet::new());
        for k in &keys {
            if !names.insert(k.name.clone()) || !ids.insert(k.api_key.clone()) {
                return Err(LoadError(format!(
                    "API key `{}` is defined twice (key store {} and bootstrap file)",
                    k.name,
                    path.display()
                )));
            }
        }
        Ok(KeyStore { path, keys: RwLock::new(keys), writing: tokio::sync::Mutex::new(()) })
    }

    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_empty(&self) -> bool {
        self.keys.read().is_empty()
    }

    /// The role of the key `api_key` when `secret` is its secret and it is
    /// enabled and not expired. Takes as long for an unknown key.
    pub fn authenticate(&self, api_key: &str, secret: &[u8]) -> Option<(String, Role)> {
        let keys = self.keys.read();
        match keys.iter().find(|k| k.api_key == api_key) {
            Some(k) => (k.matches(secret) && k.enable && !k.expired()).then(|| (k.name.clone(), k.role)),
            None => {
                // The same work as for a known key.
                let _ = mac(&[0u8; 16], secret).as_slice().ct_eq(&[0u8; 32]);
                None
            }
        }
    }

    pub fn list(&self) -> Vec<Record> {
        self.keys.read().clone()
    }

    pub fn get(&self, name: &str) -> Option<Record> {
        self.keys.read().iter().find(|k| k.name == name).cloned()
    }

    /// Creates a key; returns it and its secret (shown once).
    pub async fn create(
        &self,
        name: String,
        role: Role,
        desc: String,
        enable: bool,
        expired_at: Option<u64>,
    ) -> Result<(Record, String), KeyError> {
        check_name(&name)?;
        let _w = self.writing.lock().await;
        let mut keys = self.keys.read().clone();
        if keys.iter().any(|k| k.name == name) {
            return Err(KeyError::Exists(name));
        }
        if keys.len() >= MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        let mut id = [0u8; 8];
        while {
            rand::thread_rng().fill_bytes(&mut id);
            keys.iter().any(|k| k.api_key == hex(&id))
        } {}
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let mut rec = Record::new(name, hex(&id), secret.as_bytes(), role, Source::Api);
        rec.desc = desc;
        rec.enable = enable;
        rec.expired_at = expired_at;
        keys.push(rec.clone());
        self.commit(keys).await?;
        Ok((rec, secret))
    }

    /// Changes a created key.
    pub async fn update(&self, name: &str, patch: Patch) -> Result<Record, KeyError> {
        let _w = self.writing.lock().await;
        let mut keys = self.keys.read().clone();
        let k = keys.iter_mut().find(|k| k.name == name).ok_or_else(|| KeyError::NotFound(name.to_string()))?;
        if k.source == Source::BootstrapFile {
            return Err(KeyError::Bootstrap(name.to_string()));
        }
        if let Some(e) = patch.enable {
            k.enable = e;
        }
        if let Some(d) = patch.desc {
            k.desc = d;
        }
        if let Some(r) = patch.role {
            k.role = r;
        }
        if let Some(x) = patch.expired_at {
            k.expired_at = x;
        }
        let out = k.clone();
        self.commit(keys).await?;
        Ok(out)
    }

    /// Deletes a created key.
    pub async fn delete(&self, name: &str) -> Result<(), KeyError> {
        let _w = self.writing.lock().await;
        let mut keys = self.keys.read().clone();
        let i = keys.iter().position(|k| k.name == name).ok_or_else(|| KeyError::NotFound(name.to_string()))?;
        if keys[i].source == Source::BootstrapFile {
            return Err(KeyError::Bootstrap(name.to_string()));
        }
        keys.remove(i);
        self.commit(keys).await
    }

    /// Whether a key of role administrator exists (enabled or not).
    pub fn has_administrator(&self) -> bool {
        self.keys.read().iter().any(|k| k.role == Role::Administrator)
    }

    /// Creates the first administrator key, `name` (also its id), with
    /// this secret (at least [`MIN_BOOTSTRAP_SECRET`] characters) — only
    /// while no administrator key exists: the check and the creation are
    /// one step under the store's write lock, so of two concurrent calls
    /// one wins and the other gets [`KeyError::AdminExists`].
    /// `must_change`: the key may do nothing but change its secret.
    pub async fn create_first_admin(&self, name: &str, secret: &[u8], must_change: bool) -> Result<Record, KeyError> {
        check_name(name)?;
        check_secret(secret)?;
        let _w = self.writing.lock().await;
        let mut keys = self.keys.read().clone();
        if keys.iter().any(|k| k.role == Role::Administrator) {
            return Err(KeyError::AdminExists);
        }
        if keys.iter().any(|k| k.name == name || k.api_key == name) {
            return Err(KeyError::Exists(name.to_string()));
        }
        if keys.len() >= MAX_KEYS {
            return Err(KeyError::TooMany);
        }
        let mut rec = Record::new(name.to_string(), name.to_string(), secret, Role::Administrator, Source::Api);
        rec.must_change = must_change;
        keys.push(rec.clone());
        self.commit(keys).await?;
        Ok(rec)
    }

    /// Changes the secret of the created key `name` from `current` to
    /// `new` (at least [`MIN_BOOTSTRAP_SECRET`] characters, not `current`),
    /// and clears its "must change" flag.
    pub async fn change_secret(&self, name: &str, current: &[u8], new: &[u8]) -> Result<Record, KeyError> {
        check_secret(new)?;
        if bool::from(current.ct_eq(new)) {
            return Err(KeyError::Invalid("the new secret must differ from the current one".to_string()));
        }
        let _w = self.writing.lock().await;
        let mut keys = self.keys.read().clone();
        let k = keys.iter_mut().find(|k| k.name == name).ok_or_else(|| KeyError::NotFound(name.to_string()))?;
        if !k.matches(current) {
            return Err(KeyError::WrongSecret);
        }
        if k.source == Source::BootstrapFile {
            return Err(KeyError::Bootstrap(name.to_string()));
        }
        let fresh = Record::new(k.name.clone(), k.api_key.clone(), new, k.role, k.source);
        k.salt = fresh.salt;
        k.hash = fresh.hash;
        k.must_change = false;
        let out = k.clone();
        self.commit(keys).await?;
        Ok(out)
    }

    /// Writes the created keys, then makes `keys` the ones in force.
    async fn commit(&self, keys: Vec<Record>) -> Result<(), KeyError> {
        let file = StoreFile { version: 1, keys: keys.iter().filter(|k| k.source == Source::Api).cloned().collect() };
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || write_store(&path, &file))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())));
        written.map_err(|error| KeyError::Write { path: self.path.clone(), error })?;
        *self.keys.write() = keys;
        Ok(())
    }
}

fn write_store(path: &Path, file: &StoreFile) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        }
    }
    let text = serde_json::to_vec_pretty(file).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
    f.write_all(&text)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path)
}

fn warn_if_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "the API key store is readable by others than its owner (chmod 600)");
        }
    }
}

/// A secret people choose: at least [`MIN_BOOTSTRAP_SECRET`] characters.
pub fn check_secret(secret: &[u8]) -> Result<(), KeyError> {
    match String::from_utf8_lossy(secret).chars().count() >= MIN_BOOTSTRAP_SECRET {
        true => Ok(()),
        false => Err(KeyError::Invalid(format!("the secret must be at least {MIN_BOOTSTRAP_SECRET} characters"))),
    }
}

/// `key:secret[:role]` per line; `#` comments and blank lines skipped.
fn read_bootstrap(path: &Path) -> Result<Vec<Record>, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|e| LoadError(format!("{}: {e}", path.display())))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = |m: String| LoadError(format!("{}:{}: {m}", path.display(), i + 1));
        let mut parts = line.splitn(3, ':');
        let (Some(key), Some(secret)) = (parts.next(), parts.next()) else {
            return Err(at("expected key:secret[:role]".to_string()));
        };
        let role = match parts.next() {
            None => Role::Administrator,
            Some(r) => {
                Role::parse(r).ok_or_else(|| at(format!("unknown role `{r}` (administrator, viewer, publisher)")))?
            }
        };
        check_name(key).map_err(|e| at(format!("key {e}")))?;
        if secret.chars().count() < MIN_BOOTSTRAP_SECRET {
            return Err(at(format!("the secret must be at least {MIN_BOOTSTRAP_SECRET} characters")));
        }
        out.push(Record::new(key.to_string(), key.to_string(), secret.as_bytes(), role, Source::BootstrapFile));
    }
    if out.len() > MAX_KEYS {
        return Err(LoadError(format!("{}: more than {MAX_KEYS} keys", path.display())));
    }
    Ok(out)
}

/// Expiry as the API shows it: RFC 3339, or `infinity`.
pub fn show_expiry(t: Option<u64>) -> String {
    match t {
        Some(s) => humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string(),
        None => "infinity".to_string(),
    }
}

/// Expiry as the API takes it: RFC 3339 or `infinity`.
pub fn parse_expiry(s: &str) -> Result<Option<u64>, KeyError> {
    if s == "infinity" {
        return Ok(None);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| KeyError::Invalid(format!("expired_at: {e} (RFC 3339, or \"infinity\")")))?;
    Ok(Some(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn created_keys_are_stored_hashed_0600_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = KeyStore::load(&data, None).unwrap();
        assert!(store.is_empty());
        let (rec, secret) = store.create("ops".into(), Role::Viewer, "d".into(), true, None).await.unwrap();
        assert_eq!(secret.len(), 43, "32 bytes, base64url");
        assert_eq!(store.authenticate(&rec.api_key, secret.as_bytes()), Some(("ops".into(), Role::Viewer)));
        assert_eq!(store.authenticate(&rec.api_key, b"wrong"), None);
        assert_eq!(store.authenticate("nope", secret.as_bytes()), None);
        let text = std::fs::read_to_string(data.join(FILE_NAME)).unwrap();
        assert!(!text.contains(&secret), "the secret is not stored");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(data.join(FILE_NAME)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&data).unwrap().permissions().mode() & 0o777, 0o700);
        let again = KeyStore::load(&data, None).unwrap();
        assert_eq!(again.authenticate(&rec.api_key, secret.as_bytes()), Some(("ops".into(), Role::Viewer)));
        again.update("ops", Patch { enable: Some(false), ..Patch::default() }).await.unwrap();
        assert_eq!(again.authenticate(&rec.api_key, secret.as_bytes()), None, "disabled");
        again.delete("ops").await.unwrap();
        assert!(KeyStore::load(&data, None).unwrap().is_empty());
    }

    #[tokio::test]
    async fn first_admin_once_and_the_must_change_flag_kept_until_the_change() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let store = KeyStore::load(&data, None).unwrap();
        assert!(!store.has_administrator());
        assert!(matches!(store.create_first_admin("admin", b"short", true).await, Err(KeyError::Invalid(_))));
        let rec = store.create_first_admin("admin", b"initial-0123456789", true).await.unwrap();
        assert!(rec.must_change && store.has_administrator());
        assert!(matches!(
            store.create_first_admin("other", b"initial-0123456789", false).await,
            Err(KeyError::AdminExists)
        ));
        let again = KeyStore::load(&data, None).unwrap();
        assert!(again.get("admin").unwrap().must_change, "the flag is kept in the store");
        assert!(matches!(
            again.change_secret("admin", b"wrong-0123456789ab", b"changed-0123456789").await,
            Err(KeyError::WrongSecret)
        ));
        assert!(matches!(
            again.change_secret("admin", b"initial-0123456789", b"initial-0123456789").await,
            Err(KeyError::Invalid(_))
        ));
        let rec = again.change_secret("admin", b"initial-0123456789", b"changed-0123456789").await.unwrap();
        assert!(!rec.must_change);
        let third = KeyStore::load(&data, None).unwrap();
        assert!(!third.get("admin").unwrap().must_change);
        assert_eq!(third.authenticate("admin", b"initial-0123456789"), None);
        assert_eq!(third.authenticate("admin", b"changed-0123456789"), Some(("admin".into(), Role::Administrator)));
    }

    #[test]
    fn bootstrap_lines_and_their_errors() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("boot");
        std::fs::write(&f, "# keys\nadmin:0123456789abcdef\nview:0123456789abcdef:viewer\n").unwrap();
        let s = KeyStore::load(dir.path(), Some(&f)).unwrap();
        assert_eq!(s.authenticate("admin", b"0123456789abcdef"), Some(("admin".into(), Role::Administrator)));
        assert_eq!(s.authenticate("view", b"0123456789abcdef"), Some(("view".into(), Role::Viewer)));
        for (text, want) in [
            ("a:short\n", "at least 16"),
            ("a:0123456789abcdef:root\n", "unknown role"),
            ("nocolon\n", "expected key:secret"),
            ("a:0123456789abcdef\na:0123456789abcdef\n", "defined twice"),
        ] {
            std::fs::write(&f, text).unwrap();
            let e = KeyStore::load(dir.path(), Some(&f)).unwrap_err().0;
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }
}
