//! `password_file`: users and password hashes from a Mosquitto-format file.
//!
//! ```text
//! # user:hash, one per line; blank lines and # comments are fine
//! alice:$7$101$XiZ7Tr7N6b0y85R5$c7ntsDujVPS92…
//! bob:$argon2id$v=19$m=19456,t=2,p=1$…
//! ```
//!
//! Any format [`StoredHash::parse`] recognises is accepted; lines that do
//! not describe their scheme are read per `default_hash` (none: the line is
//! an error), as `user:digest` or, salted, `user:digest:salt`. Hashes are parsed at load, so a bad line fails the load with
//! its line number instead of failing logins later. The table is swapped
//! whole on [`PasswordFile::reload`]; a failed reload keeps the old one.
//!
//! Unknown users are ignored (another provider may know them), after a
//! decoy verification against the first user's hash when they sent a
//! password, so that they take as long as a wrong password
//! ([`crate::hash::decoy`]); a known user with a wrong or missing password
//! is refused as bad credentials; the rule is always `path:line` of the
//! user's entry.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use super::LoadError;
use crate::hash::{Decoy, HashConfig, StoredHash};
use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

struct User {
    line: usize,
    hash: Arc<StoredHash>,
}

/// One loaded file; replaced whole on reload.
struct Table {
    users: HashMap<String, User>,
    /// The first user's hash, verified (and the result thrown away) for
    /// unknown users so that they cost what a known user costs.
    decoy: Option<Arc<StoredHash>>,
}

pub struct PasswordFile {
    name: String,
    path: PathBuf,
    default_hash: Option<HashConfig>,
    /// Readers clone the `Arc` under a brief read lock and verify without
    /// it; reload builds a new table off-lock and swaps the pointer.
    table: RwLock<Arc<Table>>,
}

impl fmt::Debug for PasswordFile {
    /// Names the file and counts users; never shows hashes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordFile")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("default_hash", &self.default_hash)
            .field("users", &self.len())
            .finish()
    }
}

impl PasswordFile {
    pub fn load(name: String, path: &Path, default_hash: Option<HashConfig>) -> Result<PasswordFile, LoadError> {
        let table = read_table(path, default_hash.as_ref())?;
        Ok(PasswordFile { name, path: path.to_path_buf(), default_hash, table: RwLock::new(Arc::new(table)) })
    }

    /// Re-reads the file and swaps the table in one step. On error the old
    /// table stays in service. Reads the file synchronously: call it from a
    /// blocking context (or accept a short stall) on a signal or admin call.
    pub fn reload(&self) -> Result<(), LoadError> {
        let table = read_table(&self.path, self.default_hash.as_ref())?;
        *self.table.write() = Arc::new(table);
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of users in the current table.
    pub fn len(&self) -> usize {
        self.table.read().users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rule(&self, line: usize) -> Option<String> {
        Some(format!("{}:{line}", self.path.display()))
    }
}

impl AuthProvider for PasswordFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "password_file"
    }

    fn inputs(&self) -> Inputs {
        Inputs::USERNAME.union(Inputs::PASSWORD)
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(async move {
            let Some(username) = info.username.as_deref() else {
                return Ok(AuthAnswer::ignore());
            };
            let found = {
                let table = self.table.read();
                table.users.get(username).map(|u| (u.line, u.hash.clone())).ok_or_else(|| table.decoy.clone())
            };
            let (line, hash) = match found {
                Ok(user) => user,
                Err(model) => {
                    Decoy::new(model).verify(info.password.as_ref()).await;
                    return Ok(AuthAnswer::ignore());
                }
            };
            let Some(password) = info.password.clone() else {
                return Ok(AuthAnswer::new(AuthDecision::Deny(DenyReason::BadCredentials), self.rule(line)));
            };
            let decision = if hash.verify_off_thread(password).await? {
                AuthDecision::allow()
            } else {
                AuthDecision::Deny(DenyReason::BadCredentials)
            };
            Ok(AuthAnswer::new(decision, self.rule(line)))
        })
    }
}

fn read_table(path: &Path, default_hash: Option<&HashConfig>) -> Result<Table, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    parse_table(path, &bytes, default_hash)
}

fn parse_table(path: &Path, bytes: &[u8], default_hash: Option<&HashConfig>) -> Result<Table, LoadError> {
    let mut users: HashMap<String, User> = HashMap::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let bad = |problem: String| LoadError::Line { path: path.to_path_buf(), line, problem };
        let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".to_string()))?.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let Some((user, stored)) = text.split_once(':') else {
            return Err(bad("expected `username:hash`".to_string()));
        };
        let (user, stored) = (user.trim(), stored.trim());
        if user.is_empty() {
            return Err(bad("empty username".to_string()));
        }
        if stored.is_empty() {
            return Err(bad(format!("no password hash for user {user:?}")));
        }
        // With a configured digest, `user:digest:salt` carries a salt (hex
        // and base64 digests never contain ':').
        let (stored, salt) = match (default_hash, stored.split_once(':')) {
            (Some(_), Some((digest, salt))) => (digest.trim(), Some(salt.trim())),
            _ => (stored, None),
        };
        let hash = StoredHash::parse(stored, salt, default_hash).map_err(|e| bad(format!("user {user:?}: {e}")))?;
        if let Some(first) = users.get(user) {
            return Err(bad(format!("duplicate user {user:?} (first on line {})", first.line)));
        }
        users.insert(user.to_string(), User { line, hash: Arc::new(hash) });
    }
    let decoy = users.values().min_by_key(|u| u.line).map(|u| Arc::clone(&u.hash));
    Ok(Table { users, decoy })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::HashAlgo;
    use crate::providers::test_support::connect;

    /// From Debian's `mosquitto_passwd` 2.0.11 (see `hash::tests`), plus a
    /// bcrypt line from python bcrypt.
    const FILE: &str = "\
# Mosquitto password file
alice:$7$101$XiZ7Tr7N6b0y85R5$c7ntsDujVPS92/a31yWYRdqN6r7K4q8xduHu8BPEokFbPZIiQ2vKjivjzHv5fptcDljaP+FRjPpU1ka5oNnpRA==

carol:$6$x2xPeM4yp7Y14zL6$taOsyhDeZba/yFQvdh9r4Wn6tDAL3gn/w89M7NzuCop3BzK+7QjIOveFk1i2LWxEWuLsBkqdAAOCd1PaBXgpBw==\r
  # indented comment
brenda:$2b$04$mn3miQeKpB2EJNumPKRvQuJ6jfEHTfBAujHEJ6R5p/NCe/EXIaU8a
";

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    async fn auth(p: &PasswordFile, user: Option<&str>, password: Option<&str>) -> AuthAnswer {
        p.authenticate(&connect("c", user, password.map(str::as_bytes), "127.0.0.1:1")).await.unwrap()
    }

    #[tokio::test]
    async fn correct_password_is_allowed_with_its_line() {
        let f = write(FILE);
        let p = PasswordFile::load("pw".into(), f.path(), None).unwrap();
        let path = f.path().display();
        assert_eq!(p.len(), 3);
        let a = auth(&p, Some("alice"), Some("correct horse")).await;
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some(format!("{path}:2"))));
        assert_eq!(auth(&p, Some("carol"), Some("hunter2")).await.rule, Some(format!("{path}:4")));
        let a = auth(&p, Some("brenda"), Some("correct horse")).await;
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some(format!("{path}:6"))));
    }

    #[tokio::test]
    async fn wrong_or_missing_password_is_bad_credentials() {
        let f = write(FILE);
        let p = PasswordFile::load("pw".into(), f.path(), None).unwrap();
        let deny = |line| {
            AuthAnswer::new(
                AuthDecision::Deny(DenyReason::BadCredentials),
                Some(format!("{}:{line}", f.path().display())),
            )
        };
        assert_eq!(auth(&p, Some("alice"), Some("correct horse ")).await, deny(2));
        assert_eq!(auth(&p, Some("alice"), Some("")).await, deny(2));
        assert_eq!(auth(&p, Some("alice"), None).await, deny(2));
        assert_eq!(auth(&p, Some("brenda"), Some("wrong")).await, deny(6));
    }

    #[tokio::test]
    async fn unknown_or_absent_users_are_ignored() {
        let f = write(FILE);
        let p = PasswordFile::load("pw".into(), f.path(), None).unwrap();
        assert_eq!(auth(&p, Some("mallory"), Some("x")).await, AuthAnswer::ignore());
        assert_eq!(auth(&p, Some("Alice"), Some("correct horse")).await, AuthAnswer::ignore());
        assert_eq!(auth(&p, None, Some("correct horse")).await, AuthAnswer::ignore());
        assert_eq!(auth(&p, None, None).await, AuthAnswer::ignore());
    }

    #[tokio::test]
    async fn default_hash_reads_salted_digests() {
        use crate::hash::{Encoding, HashAlgo, SaltPosition};
        // Digests of salt+password and password+salt (salt "NaCl").
        let cfg = HashConfig { algo: HashAlgo::Sha256, salt_position: SaltPosition::Prefix, encoding: Encoding::Hex };
        let text = format!("ann:{}:NaCl\n", hex_sha256(b"NaClpw"));
        let t = parse_table(Path::new("p"), text.as_bytes(), Some(&cfg)).unwrap();
        assert!(t.users["ann"].hash.verify(b"pw").unwrap());
        assert!(!t.users["ann"].hash.verify(b"px").unwrap());
        let cfg = HashConfig { salt_position: SaltPosition::Suffix, ..cfg };
        let text = format!("bo:{}:NaCl\n", hex_sha256(b"pwNaCl"));
        let t = parse_table(Path::new("p"), text.as_bytes(), Some(&cfg)).unwrap();
        assert!(t.users["bo"].hash.verify(b"pw").unwrap());
    }

    fn hex_sha256(b: &[u8]) -> String {
        use sha2::Digest;
        sha2::Sha256::digest(b).iter().map(|x| format!("{x:02x}")).collect()
    }

    #[tokio::test]
    async fn default_hash_reads_bare_digests() {
        // python: hashlib.sha256(b'correct horse').hexdigest()
        let f = write("dave:4104d36f8da2c254349f85836793ebe029e0c957063a34c91c2e9203187b5631\n");
        assert!(PasswordFile::load("pw".into(), f.path(), None).is_err());
        let p = PasswordFile::load("pw".into(), f.path(), Some(HashConfig::new(HashAlgo::Sha256))).unwrap();
        assert_eq!(auth(&p, Some("dave"), Some("correct horse")).await.decision, AuthDecision::allow());
        let a = auth(&p, Some("dave"), Some("nope")).await;
        assert_eq!(a.decision, AuthDecision::Deny(DenyReason::BadCredentials));
    }

    #[test]
    fn malformed_lines_are_named() {
        let p = Path::new("etc/passwd");
        let alice = FILE.lines().nth(1).unwrap();
        let cases: Vec<(String, usize, &str)> = vec![
            ("# c\nno colon here\n".into(), 2, "expected `username:hash`"),
            (":$7$101$abc$def\n".into(), 1, "empty username"),
            ("\n\nbob:  \n".into(), 3, "no password hash for user \"bob\""),
            ("bob:hunter2\n".into(), 1, "user \"bob\": stored password has an unrecognised format"),
            ("bob:$7$101$short\n".into(), 1, "user \"bob\": malformed mosquitto-pbkdf2-sha512 hash"),
            (format!("{alice}\n#\n{alice}\n"), 3, "duplicate user \"alice\" (first on line 1)"),
        ];
        for (text, line, problem) in cases {
            let e = parse_table(p, text.as_bytes(), None).err().unwrap();
            let shown = e.to_string();
            assert!(shown.starts_with(&format!("etc/passwd:{line}: {problem}")), "{shown}");
            assert!(!shown.contains("hunter2"), "{shown}");
        }
        let e = parse_table(p, b"ok:\xff\n", None).err().unwrap();
        assert_eq!(e.to_string(), "etc/passwd:1: not UTF-8");
    }

    #[test]
    fn missing_file_is_named() {
        let e = PasswordFile::load("pw".into(), Path::new("/nonexistent/passwd"), None).unwrap_err();
        assert!(e.to_string().starts_with("cannot read /nonexistent/passwd: "), "{e}");
    }

    #[tokio::test]
    async fn reload_swaps_the_table_and_keeps_it_on_error() {
        let f = write(FILE);
        let p = PasswordFile::load("pw".into(), f.path(), None).unwrap();
        let carol = FILE.lines().nth(3).unwrap().trim_end_matches('\r');

        std::fs::write(f.path(), format!("# only carol now\n{carol}\n")).unwrap();
        p.reload().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(auth(&p, Some("alice"), Some("correct horse")).await, AuthAnswer::ignore());
        let a = auth(&p, Some("carol"), Some("hunter2")).await;
        assert_eq!(a.rule, Some(format!("{}:2", f.path().display())));

        std::fs::write(f.path(), format!("{carol}\nbroken line\n")).unwrap();
        let e = p.reload().unwrap_err();
        assert!(e.to_string().ends_with(":2: expected `username:hash`"), "{e}");
        assert_eq!(p.len(), 1, "old table kept");
        assert_eq!(auth(&p, Some("carol"), Some("hunter2")).await.decision, AuthDecision::allow());

        let path = f.path().to_path_buf();
        drop(f);
        assert!(matches!(p.reload(), Err(LoadError::Io { .. })));
        assert_eq!(auth(&p, Some("carol"), Some("hunter2")).await.rule, Some(format!("{}:2", path.display())));
    }

    #[test]
    fn debug_shows_no_hashes() {
        let f = write(FILE);
        let p = PasswordFile::load("pw".into(), f.path(), None).unwrap();
        let d = format!("{p:?}");
        assert!(d.contains("users: 3") && !d.contains("$7$") && !d.contains("XiZ7"), "{d}");
    }
}
