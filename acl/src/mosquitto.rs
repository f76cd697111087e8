//! Mosquitto's `acl_file` format, converted to [`Rule`]s.
//!
//! ```text
//! # lines before any `user` line apply to anonymous clients
//! topic read public/#
//!
//! user alice
//! topic readwrite alice/#
//! topic deny alice/secret/#
//!
//! # patterns apply to every client, wherever they appear
//! pattern write devices/%c/status
//! pattern read users/%u/#
//! ```
//!
//! Lines: `user <name>` starts a user's section (the rest of the line,
//! trimmed, is the name); `topic [read|write|readwrite|deny] <topic>` adds
//! to the current section (anonymous before any `user` line); `pattern
//! [read|write|readwrite|deny] <topic>` adds to the patterns, where `%c` and
//! `%u` stand for the client id and username as whole levels. Without an
//! access word the access is `readwrite`; with one, the topic is the rest of
//! the line (it may contain spaces). Lines starting with `#` are comments.
//! Mistakes are load errors naming `file:line` (unlike Mosquitto, `topic
//! read` alone is an error, not a grant on a topic called `read`).
//!
//! Conversion: `write` → an allow rule for publish, `readwrite` → for both,
//! `deny` → a deny rule for both. `read` → an allow rule for subscribe.
//! Mosquitto grants every SUBSCRIBE and checks `read` on each message it
//! delivers; Portcullis checks a SUBSCRIBE as EMQX does, so a `read a/#`
//! grant admits subscriptions the pattern covers (`a/+`, `a/b/#`) and
//! refuses wider ones (`#`). A `deny` line refuses the subscriptions it
//! covers, and any granted subscription it overlaps (`topic deny secret/#`
//! with `topic readwrite #`: the subscription `#`) has each delivered
//! message checked, as Mosquitto would: `secret/x` never arrives through
//! it ([`crate::rule::Rule::may_deny_within`]). Within a section Mosquitto
//! tries the deny lines first, then the grants in file order; the
//! converted lists keep that order, so first match gives the same answer.
//!
//! Evaluation, following Mosquitto's `acl_file` check:
//!
//! 1. The client's section: its `user` section, or the anonymous section
//!    for a client without a username. A matching rule decides.
//! 2. If there are patterns: a client id or username containing `+` or `#`
//!    is denied outright (as Mosquitto does); otherwise a matching pattern
//!    decides. `%u` patterns never match a client without a username; a
//!    value containing `/` or starting with `$` never matches either (see
//!    [`crate::matching`]), which is stricter than Mosquitto.
//! 3. Otherwise **Deny**: the file grants only what it lists.
//!
//! Which clients this provider answers for: Mosquitto denies everything to
//! everyone once an `acl_file` is set. Here a client the file does not know
//! at all — no section for its username (or no anonymous section for an
//! anonymous client) and no `pattern` lines in the file — gets **Ignore**,
//! so that another provider (a policy directory, a database) can speak for
//! it and the chain's `no_match` decides last. As soon as the file has a
//! pattern, every client is known and denied what is not granted. A `user`
//! line with no topic lines still makes that user known (denied everything
//! but patterns). For Mosquitto's exact behaviour, put this provider last
//! with `no_match = "deny"`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;

use portcullis_core::gate::{Access, ClientInfo, GateFuture};
use portcullis_core::provider::ProviderError;
use portcullis_core::topic::validate_filter;

use crate::file::{read, LoadError};
use crate::matching::{validate_pattern, CLIENTID, USERNAME};
use crate::provider::{AclAnswer, AclDecision, AclProvider};
use crate::rule::{first_match, may_deny_within, Action, Permission, Rule, Subject, TopicPattern};

/// A Mosquitto `acl_file`, converted; [`MosquittoAcl::reload`] swaps in a
/// new conversion of the file, or keeps the current one if it fails.
#[derive(Debug)]
pub struct MosquittoAcl {
    name: String,
    path: PathBuf,
    /// Held only to read or swap the pointer.
    table: RwLock<Arc<MosquittoTable>>,
}

/// One conversion of the file.
#[derive(Debug)]
pub struct MosquittoTable {
    path: PathBuf,
    /// Rules for clients without a username; `None` if the file has no
    /// `topic` line before its first `user` line.
    anonymous: Option<Vec<Rule>>,
    /// Rules per username (deny rules first, then grants, in file order).
    users: HashMap<String, Vec<Rule>>,
    /// `pattern` lines (deny rules first, then grants).
    patterns: Vec<Rule>,
}

/// Access words of `topic` and `pattern` lines.
fn access_word(w: &str) -> Option<(Permission, Action)> {
    match w {
        "read" => Some((Permission::Allow, Action::Subscribe)),
        "write" => Some((Permission::Allow, Action::Publish)),
        "readwrite" => Some((Permission::Allow, Action::All)),
        "deny" => Some((Permission::Deny, Action::All)),
        _ => None,
    }
}

/// Splits at the first run of whitespace.
fn first_word(s: &str) -> (&str, &str) {
    match s.split_once(char::is_whitespace) {
        Some((w, rest)) => (w, rest.trim()),
        None => (s, ""),
    }
}

/// A `topic` line's topic: a literal filter. `${username}`/`${clientid}`
/// levels would be read as placeholders, so they are refused.
fn topic_line(topic: &str) -> Result<TopicPattern, String> {
    validate_filter(topic).map_err(|e| format!("invalid topic {topic:?}: {e}"))?;
    if topic.split('/').any(|l| l == USERNAME || l == CLIENTID) {
        return Err(format!(
            "{topic:?}: `${{username}}`/`${{clientid}}` are placeholders; use a `pattern` line with %u/%c"
        ));
    }
    if topic.starts_with("$share/") || topic.starts_with("$queue/") {
        return Err(format!("{topic:?}: rules match the inner filter of shared subscriptions"));
    }
    Ok(TopicPattern::Filter(topic.to_string()))
}

/// A `pattern` line's topic: `%c`/`%u` whole levels become placeholders.
fn pattern_line(topic: &str) -> Result<TopicPattern, String> {
    let mut levels = Vec::new();
    for level in topic.split('/') {
        levels.push(match level {
            "%c" => CLIENTID,
            "%u" => USERNAME,
            l if l.contains("%c") || l.contains("%u") => {
                return Err(format!("{topic:?}: %c and %u must be a whole level"));
            }
            l if l.contains("${") => return Err(format!("{topic:?}: `${{` is reserved for placeholders")),
            l => l,
        });
    }
    let converted = levels.join("/");
    validate_pattern(&converted).map_err(|e| format!("invalid topic {topic:?}: {e}"))?;
    Ok(TopicPattern::Filter(converted))
}

/// Deny rules first, then grants, each in file order.
fn deny_first(rules: &mut [Rule]) {
    rules.sort_by_key(|r| r.permission != Permission::Deny);
}

impl MosquittoAcl {
    /// Reads and converts the file.
    pub fn load(name: String, path: &Path) -> Result<MosquittoAcl, LoadError> {
        let text = read(path)?;
        MosquittoAcl::parse(name, path, &text)
    }

    /// Converts the text of an `acl_file` (`path` is used for origins and
    /// errors).
    pub fn parse(name: String, path: &Path, text: &str) -> Result<MosquittoAcl, LoadError> {
        let table = MosquittoTable::parse(path, text)?;
        Ok(MosquittoAcl { name, path: path.to_path_buf(), table: RwLock::new(Arc::new(table)) })
    }

    /// Reads and converts the file again and swaps the result in; on error
    /// the current rules stay in service. Returns the number of rules.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let table = MosquittoTable::parse(&self.path, &read(&self.path)?)?;
        let rules = table.len();
        *self.table.write() = Arc::new(table);
        Ok(rules)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The conversion in service.
    pub fn table(&self) -> Arc<MosquittoTable> {
        Arc::clone(&self.table.read())
    }

    /// The decision for one access (see the module documentation).
    pub fn decide(&self, client: &ClientInfo, access: &Access<'_>) -> AclAnswer {
        self.table.read().decide(client, access)
    }
}

impl MosquittoTable {
    fn parse(path: &Path, text: &str) -> Result<MosquittoTable, LoadError> {
        let mut anonymous: Option<Vec<Rule>> = None;
        let mut users: HashMap<String, Vec<Rule>> = HashMap::new();
        let mut patterns = Vec::new();
        let mut current: Option<String> = None;
        let mut count = 0;
        for (n, raw) in text.lines().enumerate() {
            let line = n + 1;
            let l = raw.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let (keyword, rest) = first_word(l);
            let err = |key: &str, message: String, rule: Option<usize>| LoadError::Invalid {
                path: path.to_path_buf(),
                line,
                rule,
                key: Some(key.to_string()),
                message,
            };
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err(err("user", "missing username".to_string(), None));
                    }
                    users.entry(rest.to_string()).or_default();
                    current = Some(rest.to_string());
                }
                "topic" | "pattern" => {
                    count += 1;
                    let (w, after) = first_word(rest);
                    let ((permission, action), topic) = match (access_word(w), after.is_empty()) {
                        _ if w.is_empty() => return Err(err(keyword, "missing topic".to_string(), Some(count))),
                        (Some(_), true) => {
                            return Err(err(keyword, format!("missing topic after `{w}`"), Some(count)));
                        }
                        (Some(a), false) => (a, after),
                        (None, true) => ((Permission::Allow, Action::All), w),
                        (None, false) => {
                            return Err(err(
                                keyword,
                                format!("invalid access {w:?}: expected read, write, readwrite or deny"),
                                Some(count),
                            ));
                        }
                    };
                    let pattern = if keyword == "topic" { topic_line(topic) } else { pattern_line(topic) }
                        .map_err(|m| err(keyword, m, Some(count)))?;
                    let subject = match (&current, keyword) {
                        (Some(u), "topic") => Subject { username: Some(u.clone()), ..Subject::default() },
                        _ => Subject::default(),
                    };
                    let rule = Rule {
                        permission,
                        subject,
                        action,
                        topics: vec![pattern],
                        qos: None,
                        retain: None,
                        origin: format!("{}:{line}", path.display()),
                    };
                    match (keyword, &current) {
                        ("pattern", _) => patterns.push(rule),
                        (_, Some(u)) => users.entry(u.clone()).or_default().push(rule),
                        (_, None) => anonymous.get_or_insert_with(Vec::new).push(rule),
                    }
                }
                other => {
                    return Err(err(
                        other,
                        format!("unknown keyword {other:?}: expected user, topic or pattern"),
                        None,
                    ));
                }
            }
        }
        if let Some(a) = anonymous.as_mut() {
            deny_first(a);
        }
        for rules in users.values_mut() {
            deny_first(rules);
        }
        deny_first(&mut patterns);
        Ok(MosquittoTable { path: path.to_path_buf(), anonymous, users, patterns })
    }

    /// Rules in all sections and patterns.
    pub fn len(&self) -> usize {
        self.anonymous.as_ref().map_or(0, Vec::len)
            + self.users.values().map(Vec::len).sum::<usize>()
            + self.patterns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The converted section for a username (`None`: anonymous), if the
    /// file has one.
    pub fn section(&self, username: Option<&str>) -> Option<&[Rule]> {
        match username {
            Some(u) => self.users.get(u).map(Vec::as_slice),
            None => self.anonymous.as_deref(),
        }
    }

    /// The converted `pattern` lines.
    pub fn patterns(&self) -> &[Rule] {
        &self.patterns
    }

    /// The decision for one access (see the module documentation).
    pub fn decide(&self, client: &ClientInfo, access: &Access<'_>) -> AclAnswer {
        let section = self.section(client.username.as_deref());
        if section.is_none() && self.patterns.is_empty() {
            return AclAnswer::ignore();
        }
        if let Some(rule) = section.and_then(|rules| first_match(rules, client, access)) {
            return rule.answer();
        }
        if !self.patterns.is_empty() {
            let dangerous = |s: &str| s.contains(['+', '#']);
            if dangerous(&client.client_id) || client.username.as_deref().is_some_and(dangerous) {
                return self.deny("client id or username contains + or #");
            }
            if let Some(rule) = first_match(&self.patterns, client, access) {
                return rule.answer();
            }
        }
        self.deny("not granted")
    }

    /// Could a `deny` line deny this client a topic `filter` matches? Its
    /// section's and the patterns' deny lines are asked. The file's other
    /// denials ("not granted", a `+`/`#` in the id) need no such check: a
    /// subscription this file granted is covered by one of its grants,
    /// which then grants every topic in it.
    pub fn may_deny_within(&self, client: &ClientInfo, filter: &[&str]) -> bool {
        self.section(client.username.as_deref()).is_some_and(|rules| may_deny_within(rules, client, filter))
            || may_deny_within(&self.patterns, client, filter)
    }

    fn deny(&self, why: &str) -> AclAnswer {
        AclAnswer { decision: AclDecision::Deny, rule: Some(format!("{} ({why})", self.path.display())) }
    }
}

impl AclProvider for MosquittoAcl {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "mosquitto_acl"
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
        self.table.read().may_deny_within(client, filter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::*;

    const SAMPLE: &str = "\
# anonymous clients may read public topics
topic read public/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic write shared/in

user bob has spaces
topic bob/#

# patterns apply to everyone, wherever they are written
pattern write devices/%c/status
pattern read users/%u/#
pattern deny devices/%c/status/locked
";

    fn load(text: &str) -> (MosquittoAcl, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("acl_file");
        std::fs::write(&p, text).unwrap();
        let acl = MosquittoAcl::load("mosq".into(), &p).unwrap();
        (acl, p, dir)
    }

    fn err(text: &str) -> (usize, String) {
        match MosquittoAcl::parse("m".into(), Path::new("acl_file"), text) {
            Err(e @ LoadError::Invalid { .. }) => (e.line().unwrap_or(0), e.to_string()),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    fn decision(acl: &MosquittoAcl, c: &ClientInfo, req: Req) -> AclDecision {
        acl.decide(c, &req.access()).decision
    }

    #[test]
    fn conversion() {
        let (acl, p, _d) = load(SAMPLE);
        let at = |line: usize| format!("{}:{line}", p.display());
        let table = acl.table();
        let anon = table.section(None).unwrap();
        assert_eq!(anon.len(), 1);
        assert_eq!((anon[0].permission, anon[0].action), (Permission::Allow, Action::Subscribe));
        assert_eq!(anon[0].origin, at(2));
        let alice = table.section(Some("alice")).unwrap();
        // deny first, then grants in file order
        let got: Vec<_> = alice.iter().map(|r| (r.permission, r.action, r.topics[0].to_string())).collect();
        assert_eq!(
            got,
            vec![
                (Permission::Deny, Action::All, "alice/secret/#".to_string()),
                (Permission::Allow, Action::All, "alice/#".to_string()),
                (Permission::Allow, Action::Publish, "shared/in".to_string()),
            ]
        );
        assert_eq!(alice[0].origin, at(6));
        assert_eq!(alice[0].subject.username.as_deref(), Some("alice"));
        assert!(acl.table().section(Some("bob has spaces")).is_some());
        assert!(acl.table().section(Some("carol")).is_none());
        let pats: Vec<_> =
            acl.table().patterns().iter().map(|r| (r.permission, r.action, r.topics[0].to_string())).collect();
        assert_eq!(
            pats,
            vec![
                (Permission::Deny, Action::All, "devices/${clientid}/status/locked".to_string()),
                (Permission::Allow, Action::Publish, "devices/${clientid}/status".to_string()),
                (Permission::Allow, Action::Subscribe, "users/${username}/#".to_string()),
            ]
        );
    }

    #[tokio::test]
    async fn decisions() {
        let (acl, p, _d) = load(SAMPLE);
        assert_eq!((acl.name(), acl.kind()), ("mosq", "mosquitto_acl"));
        let alice = user("a1", "alice");
        let a = acl.authorize(&alice, publish("alice/x").access()).await.unwrap();
        assert_eq!(a, AclAnswer { decision: AclDecision::Allow, rule: Some(format!("{}:5", p.display())) });
        assert_eq!(decision(&acl, &alice, subscribe("alice/x/+")), AclDecision::Allow);
        // `alice/+` could receive `alice/secret`, which `alice/secret/#`
        // denies: granted (the deny does not cover it), its deliveries checked
        let levels = |f: &'static str| f.split('/').collect::<Vec<_>>();
        assert_eq!(decision(&acl, &alice, subscribe("alice/+")), AclDecision::Allow);
        assert!(acl.may_deny_within(&alice, &levels("alice/+")));
        assert_eq!(decision(&acl, &alice, subscribe("alice/secret")), AclDecision::Deny);
        assert_eq!(decision(&acl, &alice, subscribe("alice/secret/+")), AclDecision::Deny);
        assert_eq!(decision(&acl, &alice, publish("alice/secret/k")), AclDecision::Deny);
        // `alice/#` overlaps the denied `alice/secret/#` the same way
        assert_eq!(decision(&acl, &alice, subscribe("alice/#")), AclDecision::Allow);
        assert!(acl.may_deny_within(&alice, &levels("alice/#")));
        assert!(!acl.may_deny_within(&alice, &levels("alice/public/#")));
        // the pattern deny, with alice's client id
        assert!(acl.may_deny_within(&alice, &levels("devices/a1/#")));
        assert!(!acl.may_deny_within(&alice, &levels("devices/a2/#")));
        // bob's section has no deny line; the pattern one is not his device's
        assert!(!acl.may_deny_within(&user("b1", "bob has spaces"), &levels("bob/#")));
        assert_eq!(decision(&acl, &alice, publish("shared/in")), AclDecision::Allow);
        assert_eq!(decision(&acl, &alice, subscribe("shared/in")), AclDecision::Deny);
        // patterns apply to alice too
        assert_eq!(decision(&acl, &alice, publish("devices/a1/status")), AclDecision::Allow);
        assert_eq!(decision(&acl, &alice, subscribe("users/alice/#")), AclDecision::Allow);
        assert_eq!(decision(&acl, &alice, publish("users/alice/x")), AclDecision::Deny);
        assert_eq!(decision(&acl, &alice, publish("devices/a1/status/locked")), AclDecision::Deny);
        // not granted: denied, with the file named
        let d = acl.decide(&alice, &publish("elsewhere").access());
        assert_eq!(d.decision, AclDecision::Deny);
        assert!(d.rule.unwrap().contains("not granted"));

        // anonymous: its section, then patterns without %u
        let anon = client("d7", None, "192.0.2.1:1");
        assert_eq!(decision(&acl, &anon, subscribe("public/news")), AclDecision::Allow);
        assert_eq!(decision(&acl, &anon, subscribe("public/#")), AclDecision::Allow);
        assert_eq!(decision(&acl, &anon, subscribe("#")), AclDecision::Deny);
        assert_eq!(decision(&acl, &anon, publish("public/news")), AclDecision::Deny);
        assert_eq!(decision(&acl, &anon, publish("devices/d7/status")), AclDecision::Allow);
        assert_eq!(decision(&acl, &anon, subscribe("users/+/x")), AclDecision::Deny);

        // a user without a section still gets the patterns, and a deny otherwise
        let carol = user("c3", "carol");
        assert_eq!(decision(&acl, &carol, publish("devices/c3/status")), AclDecision::Allow);
        assert_eq!(decision(&acl, &carol, publish("devices/a1/status")), AclDecision::Deny);
        assert_eq!(decision(&acl, &carol, publish("alice/x")), AclDecision::Deny);

        let bob = user("b", "bob has spaces");
        assert_eq!(decision(&acl, &bob, publish("bob/x")), AclDecision::Allow);
    }

    #[test]
    fn dangerous_ids_are_denied_when_patterns_exist() {
        let (acl, _p, _d) = load(SAMPLE);
        for c in [user("dev+", "carol"), user("dev", "ca#rol"), user("#", "carol")] {
            let a = acl.decide(&c, &publish("devices/dev/status").access());
            assert_eq!(a.decision, AclDecision::Deny, "{c:?}");
            assert!(a.rule.unwrap().contains("+ or #"));
        }
        // the user's own section still applies first (as in Mosquitto)
        assert_eq!(decision(&acl, &user("a+", "alice"), publish("alice/x")), AclDecision::Allow);
        // a `/` in the client id cannot reach another device's topics
        assert_eq!(decision(&acl, &user("a1/status", "carol"), publish("devices/a1/status/status")), AclDecision::Deny);
    }

    #[test]
    fn unknown_clients_are_ignored_without_patterns() {
        let (acl, _p, _d) = load("user alice\ntopic alice/#\n\nuser empty\n");
        assert_eq!(decision(&acl, &user("c", "alice"), publish("alice/x")), AclDecision::Allow);
        assert_eq!(decision(&acl, &user("c", "alice"), publish("bob/x")), AclDecision::Deny);
        // a section without topic lines: known, nothing granted
        assert_eq!(decision(&acl, &user("c", "empty"), publish("a")), AclDecision::Deny);
        // not in the file at all, and no patterns: someone else's business
        assert_eq!(decision(&acl, &user("c", "carol"), publish("alice/x")), AclDecision::Ignore);
        assert_eq!(decision(&acl, &client("c", None, "192.0.2.1:1"), publish("a")), AclDecision::Ignore);
    }

    #[test]
    fn access_words_and_whitespace() {
        let (acl, _p, _d) = load("  topic   read   a b/c  \n\ttopic write\tx/y\ntopic readwrite z\n");
        let table = acl.table();
        let anon = table.section(None).unwrap();
        let got: Vec<_> = anon.iter().map(|r| (r.action, r.topics[0].to_string())).collect();
        assert_eq!(
            got,
            vec![
                (Action::Subscribe, "a b/c".to_string()),
                (Action::Publish, "x/y".to_string()),
                (Action::All, "z".to_string())
            ]
        );
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            ("topic read a\nfrobnicate x\n", 2, "unknown keyword"),
            ("\nuser\n", 2, "missing username"),
            ("# c\n\ntopic\n", 3, "missing topic"),
            ("topic read\n", 1, "missing topic after `read`"),
            ("topic reed a/b\n", 1, "invalid access"),
            ("topic a/#/b\n", 1, "invalid topic"),
            ("topic read a/${username}\n", 1, "placeholders"),
            ("topic $share/g/a\n", 1, "shared"),
            ("pattern write dev-%c/x\n", 1, "whole level"),
            ("pattern write a/${clientid}\n", 1, "reserved"),
            ("pattern write %c/#/x\n", 1, "invalid topic"),
        ];
        for (text, line, needle) in cases {
            let (l, msg) = err(text);
            assert_eq!(l, line, "{text:?}: {msg}");
            assert!(msg.starts_with(&format!("acl_file:{line}: ")), "{msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
        let e = MosquittoAcl::load("m".into(), Path::new("/nonexistent/acl_file")).unwrap_err();
        assert!(matches!(e, LoadError::Io { .. }), "{e}");
    }
}
