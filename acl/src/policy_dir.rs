//! Per-device policy files: a directory holding one TOML file per client
//! id (or per username), `<id>.toml`, each a list of `[[rule]]` tables as in
//! [`crate::file`] but without subject keys — the file name is the subject.
//!
//! * Loading: [`PolicyDir::start`] reads every file and refuses to start if
//!   any is invalid (like any other config error), then polls the files'
//!   modification times and sizes every `poll` on a background task that
//!   holds only a `Weak` (it ends when the provider is dropped). Directory
//!   reads and parsing run on tokio's blocking pool.
//! * Hot reload: a changed file replaces that device's policy; a file that
//!   no longer parses keeps the last good policy and logs `file:line` and
//!   the error (once per change); a deleted file removes the policy. Every
//!   change bumps the generation published by [`PolicyDir::changes`], so
//!   the gateway can drop cached decisions.
//! * Lookup: the client id (or username) is used as a key into the loaded
//!   map, never as a path; ids that could not name a file in the directory
//!   (empty, starting with `.`, containing `/`, `\` or NUL) are never looked
//!   up at all. A client without a policy, or whose policy has no rule that
//!   applies, gets Ignore.
//! * Files considered: regular files (symlinks followed) named
//!   `<safe id>.toml` directly in the directory; anything else, including
//!   hidden files and editor backups, is skipped.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::file::{parse_rules, LoadError, SubjectKeys};
use crate::provider::{AclAnswer, AclProvider};
use crate::rule::{decide, may_deny_within, Rule, Subject};

/// Which client value names its policy file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyKey {
    ClientId,
    Username,
}

/// A file modified this recently may be modified again within the same
/// timestamp tick (coarse file system clocks): re-read it (its content hash
/// tells whether it really changed) instead of trusting the timestamp.
const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Can `id` name a file in the directory? (No traversal, no hidden files.)
pub fn is_safe_name(id: &str) -> bool {
    !id.is_empty() && !id.starts_with('.') && !id.contains(['/', '\\', '\0'])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
}

impl Stamp {
    fn racy(&self, now: SystemTime) -> bool {
        match self.mtime {
            Some(m) => now.duration_since(m).map_or(true, |age| age < RACY_WINDOW),
            None => true,
        }
    }
}

/// What the scanner remembers about one file (last read attempt).
#[derive(Debug, Clone, Copy)]
struct FileState {
    stamp: Stamp,
    hash: u64,
}

/// The outcome of one scan of the directory.
#[derive(Debug, Default)]
pub struct ReloadReport {
    /// Devices with a policy after the scan.
    pub policies: usize,
    /// Policies added, replaced or removed.
    pub changed: usize,
    /// Files that could not be read or parsed (their last good policy, if
    /// any, is kept).
    pub rejected: Vec<LoadError>,
}

/// A per-device policy directory.
#[derive(Debug)]
pub struct PolicyDir {
    name: String,
    dir: PathBuf,
    key: PolicyKey,
    /// The policies checks read: id → rules. Written only by a scan, in a
    /// few short critical sections.
    policies: RwLock<HashMap<String, Arc<Vec<Rule>>>>,
    /// Scanner bookkeeping; the mutex also keeps two scans from
    /// interleaving (the poller and `reload_now`).
    files: Mutex<HashMap<String, FileState>>,
    generation: watch::Sender<u64>,
    poller: Mutex<Option<JoinHandle<()>>>,
}

impl PolicyDir {
    /// Loads every policy file (all must be valid) and, when `poll` is not
    /// zero, starts the background poller on the current tokio runtime.
    pub fn start(name: String, dir: PathBuf, key: PolicyKey, poll: Duration) -> Result<Arc<PolicyDir>, LoadError> {
        let runtime = if poll.is_zero() {
            None
        } else {
            Some(tokio::runtime::Handle::try_current().map_err(|_| LoadError::NoRuntime { path: dir.clone() })?)
        };
        let this = Arc::new(PolicyDir {
            name,
            dir,
            key,
            policies: RwLock::new(HashMap::new()),
            files: Mutex::new(HashMap::new()),
            generation: watch::Sender::new(0),
            poller: Mutex::new(None),
        });
        let mut report = this.scan(true)?;
        match report.rejected.len() {
            0 => {}
            1 => return Err(report.rejected.remove(0)),
            _ => return Err(LoadError::Many(report.rejected)),
        }
        if let Some(rt) = runtime {
            let handle = rt.spawn(poll_loop(Arc::downgrade(&this), poll));
            *this.poller.lock() = Some(handle);
        }
        Ok(this)
    }

    /// Re-reads every file now, whatever its timestamp. Bad files are
    /// logged and reported; only an unreadable directory is an `Err`.
    pub fn reload_now(&self) -> Result<ReloadReport, LoadError> {
        self.scan(true)
    }

    /// A receiver whose value changes whenever a policy is added, replaced
    /// or removed (drop cached decisions then).
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The policy of a device, if it has one and `id` is a safe name.
    pub fn policy(&self, id: &str) -> Option<Arc<Vec<Rule>>> {
        if !is_safe_name(id) {
            return None;
        }
        self.policies.read().get(id).cloned()
    }

    /// The decision for one access.
    pub fn decide(&self, client: &ClientInfo, access: &Access<'_>) -> AclAnswer {
        let id = match self.key {
            PolicyKey::ClientId => Some(&*client.client_id),
            PolicyKey::Username => client.username.as_deref(),
        };
        match id.and_then(|id| self.policy(id)) {
            Some(rules) => decide(&rules, client, access),
            None => AclAnswer::ignore(),
        }
    }

    /// Could the client's policy deny it a topic `filter` matches (a deny
    /// rule overlapping the filter)? Read from the policy loaded now; a
    /// later reload does not revisit existing subscriptions (see
    /// `acl.check_on_delivery`).
    pub fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        let id = match self.key {
            PolicyKey::ClientId => Some(&*client.client_id),
            PolicyKey::Username => client.username.as_deref(),
        };
        id.and_then(|id| self.policy(id)).is_some_and(|rules| may_deny_within(&rules, client, filter))
    }

    fn subject(&self, id: &str) -> Subject {
        match self.key {
            PolicyKey::ClientId => Subject { client_id: Some(id.to_string()), ..Subject::default() },
            PolicyKey::Username => Subject { username: Some(id.to_string()), ..Subject::default() },
        }
    }

    /// The policy files in the directory: id → (path, stamp).
    fn list(&self) -> Result<HashMap<String, (PathBuf, Stamp)>, LoadError> {
        let io = |source| LoadError::Io { path: self.dir.clone(), source };
        let mut out = HashMap::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let file_name = entry.file_name();
            let Some(id) = file_name.to_str().and_then(|n| n.strip_suffix(".toml")) else {
                continue;
            };
            if !is_safe_name(id) {
                continue;
            }
            let path = entry.path();
            // Follows symlinks; a dangling link or a directory is skipped.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            out.insert(id.to_string(), (path, Stamp { mtime: meta.modified().ok(), len: meta.len() }));
        }
        Ok(out)
    }

    /// One pass over the directory. `force` re-reads every file; otherwise
    /// only files whose stamp changed (or is too recent to trust).
    fn scan(&self, force: bool) -> Result<ReloadReport, LoadError> {
        let mut files = self.files.lock();
        let listed = self.list()?;
        let now = SystemTime::now();
        let mut report = ReloadReport::default();
        let mut replaced: Vec<(String, Arc<Vec<Rule>>)> = Vec::new();
        for (id, (path, stamp)) in &listed {
            let known = files.get(id).copied();
            if !force && known.is_some_and(|k| k.stamp == *stamp && !stamp.racy(now)) {
                continue;
            }
            let text = match std::fs::read_to_string(path) {
                Ok(t) => t,
                Err(source) => {
                    // Remember the stamp so a file that stays unreadable is
                    // reported once, not on every poll.
                    files.insert(id.clone(), FileState { stamp: *stamp, hash: UNREADABLE });
                    let e = LoadError::Io { path: path.clone(), source };
                    tracing::warn!(
                        provider = %self.name, file = %path.display(), error = %e,
                        "policy file unreadable, keeping the last good policy"
                    );
                    report.rejected.push(e);
                    continue;
                }
            };
            let hash = content_hash(&text);
            files.insert(id.clone(), FileState { stamp: *stamp, hash });
            if !force && known.is_some_and(|k| k.hash == hash) {
                continue;
            }
            match parse_rules(path, &text, SubjectKeys::Implied, &self.subject(id)) {
                Ok(rules) => replaced.push((id.clone(), Arc::new(rules))),
                Err(e) => {
                    tracing::warn!(
                        provider = %self.name, file = %path.display(), line = e.line().unwrap_or(0), error = %e,
                        "policy file rejected, keeping the last good policy"
                    );
                    report.rejected.push(e);
                }
            }
        }
        let gone: Vec<String> = files.keys().filter(|id| !listed.contains_key(*id)).cloned().collect();
        {
            let mut policies = self.policies.write();
            for (id, rules) in replaced {
                let same = policies.get(&id).is_some_and(|old| **old == *rules);
                if !same {
                    policies.insert(id, rules);
                    report.changed += 1;
                }
            }
            for id in &gone {
                files.remove(id);
                if policies.remove(id).is_some() {
                    report.changed += 1;
                    tracing::info!(provider = %self.name, device = %id, "policy file removed, policy dropped");
                }
            }
            report.policies = policies.len();
        }
        if report.changed > 0 {
            self.generation.send_modify(|g| *g += 1);
            tracing::info!(
                provider = %self.name, changed = report.changed, policies = report.policies,
                "policy directory reloaded"
            );
        }
        Ok(report)
    }
}

/// Content hash recorded for a file that could not be read.
const UNREADABLE: u64 = 0;

fn content_hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}

async fn poll_loop(this: Weak<PolicyDir>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(dir) = this.upgrade() else {
            return;
        };
        let name = dir.name.clone();
        match tokio::task::spawn_blocking(move || dir.scan(false)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(provider = %name, error = %e, "policy directory unreadable, keeping current policies")
            }
            Err(e) => tracing::warn!(provider = %name, error = %e, "policy directory scan failed"),
        }
    }
}

impl Drop for PolicyDir {
    fn drop(&mut self) {
        if let Some(h) = self.poller.get_mut().take() {
            h.abort();
        }
    }
}

impl AclProvider for PolicyDir {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "policy_dir"
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        let answer = self.decide(client, &access);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        PolicyDir::may_deny_within(self, client, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::AclDecision;
    use crate::testutil::*;
    use std::path::Path;

    const ALLOW_A: &str = "[[rule]]\npermission = \"allow\"\naction = \"publish\"\ntopics = [\"a/#\"]\n";
    const DENY_A: &str = "# now denied\n[[rule]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"a/#\"]\n";
    const BROKEN: &str = "[[rule]]\npermission = \"allow\"\naction = \"publish\"\ntopics = [\"a/#/b\"]\n";

    fn put(dir: &Path, file: &str, text: &str) {
        std::fs::write(dir.join(file), text).unwrap();
    }

    fn ask(p: &PolicyDir, id: &str, req: Req) -> AclAnswer {
        p.decide(&user(id, "someone"), &req.access())
    }

    #[test]
    fn safe_names() {
        for ok in ["dev1", "a.b", "x-y_z", "dev..1", "ünïcode"] {
            assert!(is_safe_name(ok), "{ok}");
        }
        for no in ["", ".", "..", "../x", ".hidden", "a/b", "/abs", "a\\b", "nul\0"] {
            assert!(!is_safe_name(no), "{no:?}");
        }
    }

    #[test]
    fn reload_now_tracks_write_change_break_and_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let p = PolicyDir::start("devices".into(), d.to_path_buf(), PolicyKey::ClientId, Duration::ZERO).unwrap();
        let mut changes = p.changes();
        assert_eq!(ask(&p, "dev1", publish("a/x")), AclAnswer::ignore());

        // write → allow, with the file and line as origin
        put(d, "dev1.toml", ALLOW_A);
        let r = p.reload_now().unwrap();
        assert_eq!((r.policies, r.changed, r.rejected.len()), (1, 1, 0));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        let file = d.join("dev1.toml");
        let a = ask(&p, "dev1", publish("a/x"));
        assert_eq!(a, AclAnswer { decision: AclDecision::Allow, rule: Some(format!("{}:1", file.display())) });
        assert_eq!(ask(&p, "dev2", publish("a/x")), AclAnswer::ignore());
        assert_eq!(ask(&p, "dev1", publish("b")), AclAnswer::ignore());
        // the file name is the subject
        assert_eq!(p.policy("dev1").unwrap()[0].subject.client_id.as_deref(), Some("dev1"));

        // unchanged reload: nothing changes
        assert_eq!(p.reload_now().unwrap().changed, 0);
        assert!(!changes.has_changed().unwrap());

        // change → new decision
        put(d, "dev1.toml", DENY_A);
        assert_eq!(p.reload_now().unwrap().changed, 1);
        let a = ask(&p, "dev1", publish("a/x"));
        assert_eq!(a, AclAnswer { decision: AclDecision::Deny, rule: Some(format!("{}:2", file.display())) });

        // broken → old decision kept, warning with file:line
        put(d, "dev1.toml", BROKEN);
        let logs = Captured::default();
        let r = tracing::subscriber::with_default(logs.clone(), || p.reload_now()).unwrap();
        assert_eq!((r.changed, r.rejected.len()), (0, 1));
        assert_eq!(r.rejected[0].line(), Some(4));
        assert!(r.rejected[0].to_string().starts_with(&format!("{}:4: ", file.display())), "{}", r.rejected[0]);
        assert_eq!(ask(&p, "dev1", publish("a/x")).decision, AclDecision::Deny);
        let lines = logs.lines();
        let warn = lines.iter().find(|l| l.starts_with("WARN")).expect("a warning");
        assert!(warn.contains(&format!("{}:4", file.display())), "{warn}");
        assert!(warn.contains("a/#/b"), "{warn}");

        // delete → ignore
        std::fs::remove_file(&file).unwrap();
        let r = p.reload_now().unwrap();
        assert_eq!((r.policies, r.changed), (0, 1));
        assert_eq!(ask(&p, "dev1", publish("a/x")), AclAnswer::ignore());
    }

    #[test]
    fn a_new_broken_file_gives_no_policy() {
        let tmp = tempfile::tempdir().unwrap();
        let p = PolicyDir::start("d".into(), tmp.path().to_path_buf(), PolicyKey::ClientId, Duration::ZERO).unwrap();
        put(tmp.path(), "dev1.toml", BROKEN);
        let r = p.reload_now().unwrap();
        assert_eq!((r.policies, r.rejected.len()), (0, 1));
        assert_eq!(ask(&p, "dev1", publish("a/x")), AclAnswer::ignore());
    }

    #[test]
    fn start_validates_every_file() {
        let tmp = tempfile::tempdir().unwrap();
        put(tmp.path(), "good.toml", ALLOW_A);
        put(tmp.path(), "bad.toml", BROKEN);
        let e =
            PolicyDir::start("d".into(), tmp.path().to_path_buf(), PolicyKey::ClientId, Duration::ZERO).unwrap_err();
        assert_eq!(e.line(), Some(4));
        assert!(e.to_string().contains("bad.toml:4"), "{e}");
        put(
            tmp.path(),
            "worse.toml",
            "[[rule]]\nusername = \"x\"\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a\"]\n",
        );
        let e =
            PolicyDir::start("d".into(), tmp.path().to_path_buf(), PolicyKey::ClientId, Duration::ZERO).unwrap_err();
        let shown = e.to_string();
        assert!(matches!(e, LoadError::Many(ref v) if v.len() == 2), "{shown}");
        assert!(shown.contains("worse.toml:2: rule 1, `username`: subject keys are not allowed"), "{shown}");
        let e =
            PolicyDir::start("d".into(), tmp.path().join("missing"), PolicyKey::ClientId, Duration::ZERO).unwrap_err();
        assert!(matches!(e, LoadError::Io { .. }), "{e}");
    }

    #[test]
    fn start_needs_a_runtime_to_poll() {
        let tmp = tempfile::tempdir().unwrap();
        let e = PolicyDir::start("d".into(), tmp.path().to_path_buf(), PolicyKey::ClientId, Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, LoadError::NoRuntime { .. }), "{e}");
    }

    #[test]
    fn client_ids_never_escape_the_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("policies");
        std::fs::create_dir(&d).unwrap();
        std::fs::create_dir(d.join("a")).unwrap();
        put(tmp.path(), "x.toml", ALLOW_A);
        put(&d, ".hidden.toml", ALLOW_A);
        put(&d, "a/b.toml", ALLOW_A);
        put(&d, "dev1.toml.bak", ALLOW_A);
        put(&d, "plain", ALLOW_A);
        let p = PolicyDir::start("d".into(), d.clone(), PolicyKey::ClientId, Duration::ZERO).unwrap();
        assert_eq!(p.reload_now().unwrap().policies, 0);
        for id in ["../x", ".hidden", "a/b", "", "..", "/etc/passwd", "dev1.toml", "plain", "a"] {
            assert_eq!(ask(&p, id, publish("a/x")), AclAnswer::ignore(), "{id:?}");
        }
    }

    #[test]
    fn username_key() {
        let tmp = tempfile::tempdir().unwrap();
        put(tmp.path(), "alice.toml", ALLOW_A);
        let p = PolicyDir::start("u".into(), tmp.path().to_path_buf(), PolicyKey::Username, Duration::ZERO).unwrap();
        let alice = client("any-id", Some("alice"), "192.0.2.1:1");
        assert_eq!(p.decide(&alice, &publish("a/x").access()).decision, AclDecision::Allow);
        assert_eq!(p.policy("alice").unwrap()[0].subject.username.as_deref(), Some("alice"));
        let anon = client("alice", None, "192.0.2.1:1");
        assert_eq!(p.decide(&anon, &publish("a/x").access()), AclAnswer::ignore());
    }

    async fn eventually(p: &PolicyDir, want: AclDecision) {
        let wait = async {
            while ask(p, "dev1", publish("a/x")).decision != want {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), wait).await.unwrap_or_else(|_| panic!("never became {want:?}"));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_poll_reloads_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().to_path_buf();
        let p = PolicyDir::start("d".into(), d.clone(), PolicyKey::ClientId, Duration::from_millis(20)).unwrap();
        assert_eq!((p.name(), p.kind()), ("d", "policy_dir"));
        let mut changes = p.changes();
        put(&d, "dev1.toml", ALLOW_A);
        eventually(&p, AclDecision::Allow).await;
        tokio::time::timeout(Duration::from_secs(10), changes.changed()).await.unwrap().unwrap();
        put(&d, "dev1.toml", DENY_A);
        eventually(&p, AclDecision::Deny).await;
        put(&d, "dev1.toml", BROKEN);
        // give the poller a few rounds: the last good policy stays
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(ask(&p, "dev1", publish("a/x")).decision, AclDecision::Deny);
        std::fs::remove_file(d.join("dev1.toml")).unwrap();
        eventually(&p, AclDecision::Ignore).await;
        let answer = p.authorize(&user("dev1", "x"), publish("a/x").access()).await.unwrap();
        assert_eq!(answer, AclAnswer::ignore());
    }
}
