//! Binding client ids to identities: a listener's `client_id_pattern`.
//!
//! Sessions already belong to their identity ([`crate::owner`]), so another
//! identity can neither resume nor take over a session. A pattern goes
//! further: it says which client ids an identity may use at all, e.g.
//! `^${username}(-.*)?$` lets `alice` connect as `alice` or `alice-phone`
//! and nobody else as either. Per-device ACL policies keyed on the client id
//! need it: without it, any account may pick a device's client id (while
//! that device is offline and owns no session) and get that device's
//! policy.
//!
//! The pattern is a regular expression (Rust `regex` syntax, matched
//! against the whole client id only where the pattern anchors itself);
//! `${username}` and `${cert_common_name}` are replaced by the client's
//! values, regex-escaped, before matching. A client without the value a
//! pattern names does not match. Broker-assigned client ids (a v5 client
//! that sent none) are random and unique, and are not checked.

use std::fmt;

use regex::{Regex, RegexBuilder};

const USERNAME: &str = "${username}";
const CERT_CN: &str = "${cert_common_name}";

/// Compiled-regex size bound: a pattern with a long username stays cheap.
const SIZE_LIMIT: usize = 1 << 20;

/// A listener's `client_id_pattern`.
#[derive(Clone)]
pub struct ClientIdPattern {
    template: String,
    /// Compiled once when the template has no placeholder.
    fixed: Option<Regex>,
}

impl fmt::Debug for ClientIdPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientIdPattern").field(&self.template).finish()
    }
}

impl PartialEq for ClientIdPattern {
    fn eq(&self, other: &Self) -> bool {
        self.template == other.template
    }
}

impl Eq for ClientIdPattern {}

fn compile(pattern: &str) -> Result<Regex, regex::Error> {
    RegexBuilder::new(pattern).size_limit(SIZE_LIMIT).build()
}

impl ClientIdPattern {
    /// Checks the template (with sample values in its placeholders).
    pub fn new(template: &str) -> Result<ClientIdPattern, String> {
        let sample = template.replace(USERNAME, "u").replace(CERT_CN, "c");
        if sample.contains("${") {
            return Err(format!("unknown placeholder in `{template}`: only {USERNAME} and {CERT_CN} are replaced"));
        }
        let checked = compile(&sample).map_err(|e| format!("invalid regular expression: {e}"))?;
        let fixed = (sample == template).then_some(checked);
        Ok(ClientIdPattern { template: template.to_string(), fixed })
    }

    /// The template as configured.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Whether `client_id` is allowed for a client with this username and
    /// certificate common name.
    pub fn matches(&self, client_id: &str, username: Option<&str>, cert_cn: Option<&str>) -> bool {
        if let Some(re) = &self.fixed {
            return re.is_match(client_id);
        }
        let mut pattern = self.template.clone();
        for (placeholder, value) in [(USERNAME, username), (CERT_CN, cert_cn)] {
            if pattern.contains(placeholder) {
                let Some(value) = value.filter(|v| !v.is_empty()) else { return false };
                pattern = pattern.replace(placeholder, &regex::escape(value));
            }
        }
        compile(&pattern).is_ok_and(|re| re.is_match(client_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_binding() {
        let p = ClientIdPattern::new("^${username}(-.*)?$").unwrap();
        assert!(p.matches("alice", Some("alice"), None));
        assert!(p.matches("alice-phone", Some("alice"), None));
        assert!(!p.matches("alice", Some("bob"), None));
        assert!(!p.matches("alicex", Some("alice"), None));
        assert!(!p.matches("alice", None, None), "no username, no match");
        // Regex characters in a username are literal.
        assert!(p.matches("a.b", Some("a.b"), None));
        assert!(!p.matches("axb", Some("a.b"), None));
        assert!(!p.matches("anything", Some(".*"), None));
    }

    #[test]
    fn cert_binding_and_fixed_patterns() {
        let p = ClientIdPattern::new("^dev-${cert_common_name}$").unwrap();
        assert!(p.matches("dev-42", None, Some("42")));
        assert!(!p.matches("dev-42", Some("42"), None));
        let fixed = ClientIdPattern::new("^sensor-[0-9]+$").unwrap();
        assert!(fixed.matches("sensor-7", None, None));
        assert!(!fixed.matches("sensor-x", Some("x"), None));
    }

    #[test]
    fn bad_templates_are_refused() {
        assert!(ClientIdPattern::new("^${user}$").unwrap_err().contains("placeholder"));
        assert!(ClientIdPattern::new("^(${username}$").unwrap_err().contains("regular expression"));
    }
}
