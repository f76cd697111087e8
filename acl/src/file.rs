//! An ACL file in TOML, and the loading pieces every rule source shares.
//!
//! ```toml
//! [[rule]]
//! permission = "allow"          # allow | deny
//! username = "alice"            # optional; also client_id, ip = "10.0.0.0/8"; none = everyone
//! action = "publish"            # publish | subscribe | all
//! topics = ["sensors/${clientid}/#", "eq #"]
//! qos = [0, 1]                  # optional
//! retain = false                # optional, constrains publishes only
//! ```
//!
//! Rules are tried in file order; the first that applies decides (its
//! origin, `path:line` of its `[[rule]]` header, is reported with the
//! decision); when none applies the provider answers Ignore. Every key is
//! checked (`deny_unknown_fields`); a [`LoadError`] names the file, the line,
//! the rule index and the key at fault.
//!
//! `parse_rules` is also what [`crate::policy_dir`] uses for per-device
//! files, with the subject keys forbidden.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::RwLock;
use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;
use serde::de::IgnoredAny;
use serde::Deserialize;
use toml::Spanned;

use crate::provider::{AclAnswer, AclProvider};
use crate::rule::{decide, may_deny_within, Action, Permission, Rule, Subject, TopicPattern};

/// A rule source could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Something in the file is wrong; `line` is 1-based.
    #[error("{}:{line}: {}{message}", path.display(), where_(*rule, key.as_deref()))]
    Invalid {
        path: PathBuf,
        line: usize,
        /// 1-based index of the rule (`[[rule]]` table or rule line), when known.
        rule: Option<usize>,
        /// The key (or Mosquitto keyword) at fault, when known.
        key: Option<String>,
        message: String,
    },
    /// The background reloader needs a tokio runtime.
    #[error("{}: no tokio runtime to run the reloader on", path.display())]
    NoRuntime { path: PathBuf },
    /// Several errors (a directory with several bad files).
    #[error("{}", join(.0))]
    Many(Vec<LoadError>),
}

fn where_(rule: Option<usize>, key: Option<&str>) -> String {
    match (rule, key) {
        (Some(r), Some(k)) => format!("rule {r}, `{k}`: "),
        (Some(r), None) => format!("rule {r}: "),
        (None, Some(k)) => format!("`{k}`: "),
        (None, None) => String::new(),
    }
}

fn join(errors: &[LoadError]) -> String {
    errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
}

impl LoadError {
    /// The line the error points at, when it points at one.
    pub fn line(&self) -> Option<usize> {
        match self {
            LoadError::Invalid { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Reads a rule file as UTF-8.
pub(crate) fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawPermission {
    Allow,
    Deny,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawAction {
    Publish,
    Subscribe,
    All,
}

/// One `[[rule]]` table as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    permission: RawPermission,
    username: Option<Spanned<String>>,
    client_id: Option<Spanned<String>>,
    ip: Option<Spanned<String>>,
    action: RawAction,
    topics: Spanned<Vec<Spanned<String>>>,
    qos: Option<Spanned<Vec<u8>>>,
    retain: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<Spanned<RawRule>>,
}

/// The shape of the file with every value skipped: where each rule and
/// each of its keys sit, to name the rule and key of a serde error.
#[derive(Debug, Deserialize)]
struct Shape {
    #[serde(default)]
    rule: Vec<Spanned<BTreeMap<Spanned<String>, Spanned<IgnoredAny>>>>,
}

/// Which subject keys a rule file may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectKeys {
    /// `username`, `client_id`, `ip` allowed (an ACL file).
    Allowed,
    /// Forbidden: the subject is implied (a per-device policy file).
    Implied,
}

/// Parses `[[rule]]` tables. `implied` is the subject given to every rule
/// when `keys` is [`SubjectKeys::Implied`].
pub(crate) fn parse_rules(
    path: &Path,
    text: &str,
    keys: SubjectKeys,
    implied: &Subject,
) -> Result<Vec<Rule>, LoadError> {
    let raw: RawFile = toml::from_str(text).map_err(|e| serde_error(path, text, &e))?;
    let mut rules = Vec::with_capacity(raw.rule.len());
    for (i, r) in raw.rule.into_iter().enumerate() {
        let header_line = line_of(text, r.span().start);
        let index = i + 1;
        let r = r.into_inner();
        let invalid = |span: Range<usize>, key: &str, message: String| LoadError::Invalid {
            path: path.to_path_buf(),
            line: line_of(text, span.start),
            rule: Some(index),
            key: Some(key.to_string()),
            message,
        };
        let subject = match keys {
            SubjectKeys::Implied => {
                for (key, v) in [("username", &r.username), ("client_id", &r.client_id), ("ip", &r.ip)] {
                    if let Some(v) = v {
                        return Err(invalid(
                            v.span(),
                            key,
                            "subject keys are not allowed here: the file name names the client".to_string(),
                        ));
                    }
                }
                implied.clone()
            }
            SubjectKeys::Allowed => {
                let mut s = Subject::default();
                for (key, v, slot) in
                    [("username", &r.username, &mut s.username), ("client_id", &r.client_id, &mut s.client_id)]
                {
                    if let Some(v) = v {
                        if v.get_ref().is_empty() {
                            return Err(invalid(v.span(), key, "must not be empty".to_string()));
                        }
                        *slot = Some(v.get_ref().clone());
                    }
                }
                if let Some(ip) = &r.ip {
                    s.ip = Some(parse_net(ip.get_ref()).map_err(|m| invalid(ip.span(), "ip", m))?);
                }
                s
            }
        };
        if r.topics.get_ref().is_empty() {
            return Err(invalid(r.topics.span(), "topics", "needs at least one topic".to_string()));
        }
        let mut topics = Vec::with_capacity(r.topics.get_ref().len());
        for t in r.topics.get_ref() {
            topics.push(TopicPattern::parse(t.get_ref()).map_err(|e| invalid(t.span(), "topics", e.to_string()))?);
        }
        let qos = match &r.qos {
            None => None,
            Some(q) => {
                if q.get_ref().is_empty() || q.get_ref().iter().any(|v| *v > 2) {
                    return Err(invalid(q.span(), "qos", "must be a non-empty list of 0, 1, 2".to_string()));
                }
                Some(q.get_ref().clone())
            }
        };
        rules.push(Rule {
            permission: match r.permission {
                RawPermission::Allow => Permission::Allow,
                RawPermission::Deny => Permission::Deny,
            },
            subject,
            action: match r.action {
                RawAction::Publish => Action::Publish,
                RawAction::Subscribe => Action::Subscribe,
                RawAction::All => Action::All,
            },
            topics,
            qos,
            retain: r.retain,
            origin: format!("{}:{header_line}", path.display()),
        });
    }
    Ok(rules)
}

/// `10.0.0.0/8`, `::1/128`, or a bare address (a single host).
pub(crate) fn parse_net(s: &str) -> Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<std::net::IpAddr>().map(IpNet::from).map_err(|_| format!("{s:?} is not an IP address or CIDR network"))
}

/// Turns a TOML/serde error into a [`LoadError`] naming the line, and,
/// when the file's shape can be read, the rule and the key.
fn serde_error(path: &Path, text: &str, e: &toml::de::Error) -> LoadError {
    let span = e.span();
    let line = span.as_ref().map_or(1, |s| line_of(text, s.start));
    let (mut rule, mut key) = (None, None);
    if let (Some(span), Ok(shape)) = (&span, toml::from_str::<Shape>(text)) {
        for (i, table) in shape.rule.iter().enumerate() {
            let mut hit = contains(&table.span(), span);
            for (k, v) in table.get_ref() {
                if contains(&v.span(), span) || k.span() == *span {
                    hit = true;
                    key = Some(k.get_ref().clone());
                }
            }
            if hit {
                rule = Some(i + 1);
                break;
            }
        }
    }
    LoadError::Invalid { path: path.to_path_buf(), line, rule, key, message: e.message().to_string() }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end
}

/// An ACL file. [`AclFile::reload`] reads it again and swaps the new rules
/// in whole; a file that fails to load keeps the current rules in service.
#[derive(Debug)]
pub struct AclFile {
    name: String,
    path: PathBuf,
    /// Held only to read or swap the pointer.
    rules: RwLock<Arc<Vec<Rule>>>,
}

impl AclFile {
    /// Reads and validates the file.
    pub fn load(name: String, path: &Path) -> Result<AclFile, LoadError> {
        let rules = load_rules(path)?;
        Ok(AclFile { name, path: path.to_path_buf(), rules: RwLock::new(Arc::new(rules)) })
    }

    /// Reads and validates the file again and swaps its rules in. Returns
    /// the number of rules.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let rules = load_rules(&self.path)?;
        let n = rules.len();
        *self.rules.write() = Arc::new(rules);
        Ok(n)
    }

    /// The rules in service, in file order.
    pub fn rules(&self) -> Arc<Vec<Rule>> {
        Arc::clone(&self.rules.read())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl AclProvider for AclFile {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "file"
    }

    fn authorize<'a>(
        &'a self,
        client: &'a ClientInfo,
        access: Access<'a>,
    ) -> GateFuture<'a, Result<AclAnswer, ProviderError>> {
        let answer = decide(&self.rules.read(), client, &access);
        Box::pin(std::future::ready(Ok(answer)))
    }

    fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        may_deny_within(&self.rules.read(), client, filter)
    }
}

fn load_rules(path: &Path) -> Result<Vec<Rule>, LoadError> {
    parse_rules(path, &read(path)?, SubjectKeys::Allowed, &Subject::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::AclDecision;
    use crate::testutil::*;

    fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Loads `text` and returns the error (and the file's path).
    fn load_err(text: &str) -> (LoadError, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "acl.toml", text);
        let e = AclFile::load("f".into(), &p).expect_err("should fail");
        (e, p)
    }

    fn invalid(e: &LoadError) -> (usize, Option<usize>, Option<&str>, &str) {
        match e {
            LoadError::Invalid { line, rule, key, message, .. } => (*line, *rule, key.as_deref(), message.as_str()),
            other => panic!("not Invalid: {other:?}"),
        }
    }

    const SAMPLE: &str = r#"
# comment
[[rule]]
permission = "deny"
action = "all"
topics = ["sensors/+/secret"]

[[rule]]
permission = "allow"
username = "alice"
client_id = "c1"
ip = "10.0.0.0/8"
action = "publish"
topics = ["sensors/${clientid}/#", "eq exact/#"]
qos = [0, 1]
retain = false

[[rule]]
permission = "allow"
ip = "192.0.2.7"
action = "subscribe"
topics = ["sensors/#"]
"#;

    #[tokio::test]
    async fn loads_rules_with_origins_and_answers() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "acl.toml", SAMPLE);
        let f = AclFile::load("main".into(), &p).unwrap();
        assert_eq!((f.name(), f.kind(), f.path()), ("main", "file", p.as_path()));
        let rules = f.rules();
        assert_eq!(rules.len(), 3);
        let at = |line: usize| format!("{}:{line}", p.display());
        assert_eq!(rules[0].origin, at(3));
        assert_eq!(rules[1].origin, at(8));
        assert_eq!(rules[2].origin, at(18));
        let r = &rules[1];
        assert_eq!(r.permission, Permission::Allow);
        assert_eq!(r.subject.username.as_deref(), Some("alice"));
        assert_eq!(r.subject.client_id.as_deref(), Some("c1"));
        assert_eq!(r.subject.ip, Some("10.0.0.0/8".parse().unwrap()));
        assert_eq!(r.action, Action::Publish);
        assert_eq!(
            r.topics,
            vec![TopicPattern::Filter("sensors/${clientid}/#".into()), TopicPattern::Eq("exact/#".into())]
        );
        assert_eq!((r.qos.clone(), r.retain), (Some(vec![0, 1]), Some(false)));
        assert_eq!(rules[2].subject.ip, Some("192.0.2.7/32".parse().unwrap()));

        let alice = client("c1", Some("alice"), "10.1.1.1:1");
        let ask = |c: &ClientInfo, req: Req| {
            let c = c.clone();
            let f = &f;
            async move { f.authorize(&c, req.access()).await.unwrap() }
        };
        let a = ask(&alice, publish("sensors/c1/t")).await;
        assert_eq!(a, AclAnswer { decision: AclDecision::Allow, rule: Some(at(8)) });
        assert_eq!(ask(&alice, publish("sensors/c1/secret")).await.rule, Some(at(3)));
        assert_eq!(ask(&alice, publish("sensors/c1/secret")).await.decision, AclDecision::Deny);
        assert_eq!(ask(&alice, publish_with("sensors/c1/t", 2, false)).await, AclAnswer::ignore());
        assert_eq!(ask(&alice, publish_with("sensors/c1/t", 0, true)).await, AclAnswer::ignore());
        assert_eq!(ask(&alice, publish("sensors/c2/t")).await, AclAnswer::ignore());
        let remote = user("c9", "bob");
        assert_eq!(ask(&remote, subscribe("sensors/+/t")).await.decision, AclDecision::Allow);
        assert_eq!(ask(&remote, subscribe("other/#")).await, AclAnswer::ignore());
        // Deny rules apply to filters they cover: `#` is broader than the
        // denied `sensors/+/secret`, so it falls through (and no rule allows it).
        assert_eq!(ask(&remote, subscribe("sensors/+/secret")).await.decision, AclDecision::Deny);
        assert_eq!(ask(&remote, subscribe("#")).await, AclAnswer::ignore());
    }

    #[test]
    fn empty_file_has_no_rules() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(&dir, "acl.toml", "# nothing yet\n");
        assert!(AclFile::load("f".into(), &p).unwrap().rules().is_empty());
    }

    #[test]
    fn shipped_example_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../etc/acl.toml");
        let f = AclFile::load("main".into(), &p).unwrap();
        assert!(!f.rules().is_empty());
    }

    #[test]
    fn unknown_key_names_rule_line_and_key() {
        let (e, p) = load_err("[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a\"]\n\n[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopic = [\"a\"]\n");
        let (line, rule, key, msg) = invalid(&e);
        assert_eq!((line, rule, key), (9, Some(2), Some("topic")));
        assert!(msg.contains("unknown field `topic`"), "{msg}");
        let shown = e.to_string();
        assert!(shown.starts_with(&format!("{}:9: rule 2, `topic`: ", p.display())), "{shown}");
    }

    #[test]
    fn bad_enum_value_names_its_key() {
        let (e, _) = load_err("[[rule]]\npermission = \"alow\"\naction = \"all\"\ntopics = [\"a\"]\n");
        let (line, rule, key, msg) = invalid(&e);
        assert_eq!((line, rule, key), (2, Some(1), Some("permission")));
        assert!(msg.contains("alow"), "{msg}");
        let (e, _) = load_err("[[rule]]\npermission = \"allow\"\naction = \"pub\"\ntopics = [\"a\"]\n");
        assert_eq!(invalid(&e).0, 3);
        assert_eq!(invalid(&e).2, Some("action"));
    }

    #[test]
    fn bad_topic_points_at_its_own_line() {
        let (e, _) =
            load_err("[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\n  \"a/b\",\n  \"a/#/b\",\n]\n");
        let (line, rule, key, msg) = invalid(&e);
        assert_eq!((line, rule, key), (6, Some(1), Some("topics")));
        assert!(msg.contains("a/#/b"), "{msg}");
        for (bad, needle) in
            [("dev-${clientid}/x", "whole level"), ("$share/g/a", "shared"), ("eq ", "eq"), ("", "empty")]
        {
            let text = format!("[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [{bad:?}]\n");
            let (e, _) = load_err(&text);
            let (line, _, key, msg) = invalid(&e);
            assert_eq!((line, key), (4, Some("topics")), "{bad}");
            assert!(msg.contains(needle), "{bad}: {msg}");
        }
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let base = "[[rule]]\npermission = \"allow\"\naction = \"all\"\n";
        let (e, _) = load_err(&format!("{base}topics = []\n"));
        assert_eq!(invalid(&e).0, 4);
        assert_eq!(invalid(&e).2, Some("topics"));
        for (extra, key) in [
            ("topics = [\"a\"]\nip = \"10.0.0.0/33\"\n", "ip"),
            ("topics = [\"a\"]\nip = \"nowhere\"\n", "ip"),
            ("topics = [\"a\"]\nqos = [3]\n", "qos"),
            ("topics = [\"a\"]\nqos = []\n", "qos"),
            ("topics = [\"a\"]\nusername = \"\"\n", "username"),
            ("topics = [\"a\"]\nclient_id = \"\"\n", "client_id"),
            ("topics = [\"a\"]\nqos = [300]\n", "qos"),
            ("topics = [\"a\"]\nretain = \"no\"\n", "retain"),
        ] {
            let (e, _) = load_err(&format!("{base}{extra}"));
            let (line, rule, k, _) = invalid(&e);
            assert_eq!((line, rule, k), (5, Some(1), Some(key)), "{extra}: {e}");
        }
    }

    #[test]
    fn missing_key_and_syntax_errors() {
        let (e, _) = load_err("\n[[rule]]\npermission = \"allow\"\naction = \"all\"\n");
        let (line, rule, _, msg) = invalid(&e);
        assert_eq!((line, rule), (2, Some(1)));
        assert!(msg.contains("topics"), "{msg}");
        let (e, _) = load_err("[[rule]]\npermission = \"allow\" x\n");
        assert_eq!(invalid(&e).0, 2);
        let (e, _) = load_err("rules = []\n");
        let (line, rule, _, msg) = invalid(&e);
        assert_eq!((line, rule), (1, None));
        assert!(msg.contains("rules"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_io_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nope.toml");
        let e = AclFile::load("f".into(), &p).unwrap_err();
        assert!(matches!(e, LoadError::Io { .. }));
        assert!(e.to_string().contains("nope.toml"), "{e}");
        assert_eq!(e.line(), None);
    }

    #[test]
    fn reload_swaps_rules_and_keeps_them_when_the_file_breaks() {
        let dir = tempfile::tempdir().unwrap();
        let rule =
            |topic: &str| format!("[[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"{topic}\"]\n");
        let p = write(&dir, "acl.toml", &rule("a/#"));
        let f = AclFile::load("main".into(), &p).unwrap();
        write(&dir, "acl.toml", &format!("{}{}", rule("b/#"), rule("c/#")));
        assert_eq!(f.reload().unwrap(), 2);
        assert_eq!(f.rules()[0].topics[0].to_string(), "b/#");
        write(&dir, "acl.toml", &rule("d/#/e"));
        let e = f.reload().unwrap_err();
        assert_eq!(e.line(), Some(4), "{e}");
        assert_eq!(f.rules().len(), 2, "a broken file replaced the rules in service");
    }
}
