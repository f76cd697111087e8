//! Claims of a token whose signature held: the registered ones (`exp`,
//! `nbf`, `iat` with leeway, `iss`, `aud`), the configured
//! `verify_claims`, the superuser claim and the ACL claim. Pure functions
//! over the decoded claims and the time: no I/O, no key.
//!
//! The ACL claim has EMQX's two forms:
//! - `{"pub": [..], "sub": [..], "all": [..]}`: topics the client may use
//!   (`${username}` / `${clientid}` levels allowed); everything else is
//!   denied (a rule denying `#` closes the list).
//! - `[{"permission": "allow", "action": "publish", "topic": ".."}, ..]`
//!   (EMQX 5): rules as written, first match decides; no match passes to
//!   the rest of the ACL chain.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_acl::rule::{Action, Permission, Rule, Subject, TopicPattern};
use portcullis_core::gate::ConnectInfo;
use serde_json::Value;

use crate::common::rows::EmqxRow;
use crate::common::template::{verbatim, Template, Values, Var};
use crate::common::BuildError;

/// Most ACL entries a token may carry; more refuses the token.
pub const MAX_ACL_RULES: usize = 256;

/// The claim checks of one provider, parsed at start.
#[derive(Debug)]
pub struct ClaimRules {
    pub leeway: Duration,
    pub issuer: Vec<String>,
    pub audience: Vec<String>,
    pub verify: Vec<(String, Template)>,
    /// Empty: not read.
    pub acl_claim: String,
    /// Empty: not read.
    pub superuser_claim: String,
}

/// Why a token's claims refuse it: the claim, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub claim: String,
    pub why: String,
}

impl Refused {
    fn new(claim: &str, why: impl Into<String>) -> Refused {
        Refused { claim: claim.to_string(), why: why.into() }
    }
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "claim {}: {}", self.claim, self.why)
    }
}

/// What the claims grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub superuser: bool,
    pub acl: Option<Arc<Vec<Rule>>>,
    /// `exp` (plus leeway), when the token has one.
    pub expires_at: Option<SystemTime>,
}

impl ClaimRules {
    pub fn new(
        leeway: Duration,
        issuer: Vec<String>,
        audience: Vec<String>,
        verify_claims: &BTreeMap<String, String>,
        acl_claim: String,
        superuser_claim: String,
    ) -> Result<ClaimRules, BuildError> {
        let mut verify = Vec::new();
        for (claim, value) in verify_claims {
            let t = Template::parse(value, &[Var::Username, Var::ClientId])
                .map_err(|e| BuildError::invalid(format!("verify_claims.{claim}"), e.reason))?;
            verify.push((claim.clone(), t));
        }
        Ok(ClaimRules { leeway, issuer, audience, verify, acl_claim, superuser_claim })
    }

    /// Whether a check reads the client's username or client id.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.verify.iter().flat_map(|(_, t)| t.vars())
    }

    /// Checks `claims` at `now` for `info`'s client.
    pub fn check(&self, claims: &Value, now: SystemTime, info: &ConnectInfo) -> Result<Granted, Refused> {
        let Value::Object(map) = claims else {
            return Err(Refused::new("(payload)", "not a JSON object"));
        };
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64();
        let leeway = self.leeway.as_secs_f64();
        let exp = time_claim(map, "exp")?;
        if let Some(exp) = exp {
            if now > exp + leeway {
                return Err(Refused::new("exp", format!("expired {:.0} s ago", now - exp)));
            }
        }
        if let Some(nbf) = time_claim(map, "nbf")? {
            if now + leeway < nbf {
                return Err(Refused::new("nbf", format!("not valid for another {:.0} s", nbf - now)));
            }
        }
        if let Some(iat) = time_claim(map, "iat")? {
            if now + leeway < iat {
                return Err(Refused::new("iat", format!("issued {:.0} s in the future", iat - now)));
            }
        }
        if !self.issuer.is_empty() {
            match map.get("iss") {
                Some(Value::String(iss)) if self.issuer.iter().any(|i| i == iss) => {}
                Some(_) => return Err(Refused::new("iss", "not an accepted issuer")),
                None => return Err(Refused::new("iss", "missing")),
            }
        }
        if !self.audience.is_empty() {
            let ok = match map.get("aud") {
                Some(Value::String(a)) => self.audience.contains(a),
                Some(Value::Array(list)) => {
                    list.iter().any(|v| v.as_str().is_some_and(|a| self.audience.iter().any(|x| x == a)))
                }
                Some(_) => false,
                None => return Err(Refused::new("aud", "missing")),
            };
            if !ok {
                return Err(Refused::new("aud", "no accepted audience"));
            }
        }
        let values = Values::from_connect(info);
        for (claim, template) in &self.verify {
            let Ok(want) = template.render(&values, verbatim) else {
                return Err(Refused::new(claim, "the client did not send the value it is checked against"));
            };
            let ok = match map.get(claim) {
                Some(Value::String(s)) => *s == want,
                // By its JSON text (`42`, `true`): serde_json's own
                // `Value == String` is false for every non-string.
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    let text = v.to_string();
                    text == want
                }
                _ => false,
            };
            if !ok {
                return Err(Refused::new(claim, format!("does not equal {:?}", template.source())));
            }
        }
        let superuser =
            !self.superuser_claim.is_empty() && matches!(map.get(&self.superuser_claim), Some(Value::Bool(true)));
        let acl = match (self.acl_claim.is_empty(), map.get(&self.acl_claim)) {
            (false, Some(v)) => Some(Arc::new(acl_rules(&self.acl_claim, v)?)),
            _ => None,
        };
        let expires_at = exp.map(|e| UNIX_EPOCH + Duration::from_secs_f64((e + leeway).clamp(0.0, 1e11)));
        Ok(Granted { superuser, acl, expires_at })
    }
}

/// A NumericDate claim (seconds since the epoch, possibly fractional).
fn time_claim(map: &serde_json::Map<String, Value>, name: &str) -> Result<Option<f64>, Refused> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or_else(|| Refused::new(name, "not a number of seconds"))
        }
        Some(_) => Err(Refused::new(name, "not a number of seconds")),
    }
}

/// The ACL claim as rules (see the module doc).
pub fn acl_rules(claim: &str, v: &Value) -> Result<Vec<Rule>, Refused> {
    let bad = |why: String| Refused::new(claim, why);
    let mut rules = Vec::new();
    match v {
        Value::Object(map) => {
            for (key, list) in map {
                let action = match key.as_str() {
                    "pub" => Action::Publish,
                    "sub" => Action::Subscribe,
                    "all" => Action::All,
                    // EMQX 5 lets the object carry other keys; not ours.
                    _ => continue,
                };
                let Value::Array(topics) = list else { return Err(bad(format!("{key}: not a list of topics"))) };
                for (i, t) in topics.iter().enumerate() {
                    let Some(topic) = t.as_str() else { return Err(bad(format!("{key}[{i}]: not a string"))) };
                    let pattern = TopicPattern::parse(topic).map_err(|e| bad(format!("{key}[{i}]: {topic:?}: {e}")))?;
                    rules.push(Rule {
                        permission: Permission::Allow,
                        subject: Subject::default(),
                        action,
                        topics: vec![pattern],
                        qos: None,
                        retain: None,
                        origin: format!("jwt claim {claim}.{key}[{i}]"),
                    });
                    if rules.len() > MAX_ACL_RULES {
                        return Err(bad(format!("more than {MAX_ACL_RULES} entries")));
                    }
                }
            }
            rules.push(Rule {
                permission: Permission::Deny,
                subject: Subject::default(),
                action: Action::All,
                topics: vec![TopicPattern::Filter("#".to_string())],
                qos: None,
                retain: None,
                origin: format!("jwt claim {claim} (topics not listed)"),
            });
        }
        Value::Array(list) => {
            if list.len() > MAX_ACL_RULES {
                return Err(bad(format!("more than {MAX_ACL_RULES} entries")));
            }
            for (i, r) in list.iter().enumerate() {
                let field = |name: &str| -> Option<String> {
                    match r.get(name)? {
                        Value::String(s) => Some(s.clone()),
                        Value::Null => None,
                        other => Some(other.to_string()),
                    }
                };
                let row = EmqxRow {
                    permission: field("permission").unwrap_or_default(),
                    action: field("action").unwrap_or_default(),
                    topic: field("topic").unwrap_or_default(),
                    qos: r.get("qos").map(|q| match q {
                        Value::Array(a) => a.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(","),
                        other => other.as_str().map_or_else(|| other.to_string(), str::to_string),
                    }),
                    retain: field("retain"),
                    clientid: None,
                    ipaddress: None,
                };
                let rule = row.to_rule(format!("jwt claim {claim}[{i}]")).map_err(|e| bad(e.to_string()))?;
                rules.push(rule);
            }
        }
        _ => return Err(bad("neither an object of pub/sub/all lists nor a list of rules".to_string())),
    }
    Ok(rules)
}
