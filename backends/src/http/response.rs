//! Reading a webhook's answer.
//!
//! `ignore_status` and `deny_status` are checked first; then, per
//! `response` mode:
//!
//! * **emqx** (EMQX 5): 200 with a JSON body `{"result": "allow" | "deny" |
//!   "ignore", "is_superuser": bool}`; 204 is allow. By default `4xx` is
//!   ignore.
//! * **emqttd** (1.x, EMQX 4): the status decides, by default `4xx` is
//!   deny; a 200 must also say what it means: a body equal to
//!   `allow_body` (when set) is allow, and an explicit `allow`, `deny` or
//!   `ignore` (plain text or `{"result": …}`) is that. Any other 200 is a
//!   bad answer: a wrong URL (a health page, a catch-all route) that
//!   answers 200 must not admit everyone.
//!
//! Any other status is a failure (`on_error`): 5xx as an outage, the rest
//! as a bad answer. `Cache-Control: max-age=N` (or `no-store`, `no-cache`:
//! 0) on an allow bounds how long the auth cache keeps it.

use std::time::Duration;

use portcullis_core::provider::{ErrorKind, ProviderError};
use serde::Deserialize;

use super::config::{ResponseMode, StatusPattern};
use crate::common::BuildError;

/// What the webhook said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Allow { superuser: bool, max_age: Option<Duration> },
    Deny,
    Ignore,
}

/// A status code or a class of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    Code(u16),
    /// `4xx`: the hundreds digit.
    Class(u16),
}

impl StatusMatch {
    /// Errors carry no key (the caller's is the list's).
    fn parse(p: &StatusPattern) -> Result<StatusMatch, BuildError> {
        match p {
            StatusPattern::Code(c) if (100..=599).contains(c) => Ok(StatusMatch::Code(*c)),
            StatusPattern::Code(c) => Err(BuildError::invalid("", format!("{c}: not an HTTP status code"))),
            StatusPattern::Class(s) => {
                let b = s.as_bytes();
                if b.len() == 3 && (b'1'..=b'5').contains(&b[0]) && b[1..].eq_ignore_ascii_case(b"xx") {
                    Ok(StatusMatch::Class(u16::from(b[0] - b'0')))
                } else {
                    Err(BuildError::invalid("", format!("{s:?}: expected a status code (404) or a class (\"4xx\")")))
                }
            }
        }
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(h) => status / 100 == h,
        }
    }
}

/// How one provider reads answers.
#[derive(Debug, Clone)]
pub struct Reader {
    mode: ResponseMode,
    ignore: Vec<StatusMatch>,
    deny: Vec<StatusMatch>,
    /// emqttd mode: the (trimmed) body of a 200 that means allow.
    allow_body: Option<String>,
}

impl Reader {
    pub fn new(
        mode: ResponseMode,
        ignore: Option<&[StatusPattern]>,
        deny: Option<&[StatusPattern]>,
        allow_body: Option<&str>,
    ) -> Result<Reader, BuildError> {
        if allow_body.is_some() && mode != ResponseMode::Emqttd {
            return Err(BuildError::invalid(
                "allow_body",
                "only for response = \"emqttd\" (emqx answers carry their result)",
            ));
        }
        let parse = |key: &str, v: &[StatusPattern]| {
            v.iter().map(StatusMatch::parse).collect::<Result<Vec<_>, _>>().map_err(|e| e.under(key))
        };
        let four = [StatusMatch::Class(4)];
        let (ignore_default, deny_default): (&[StatusMatch], &[StatusMatch]) = match mode {
            ResponseMode::Emqx => (&four, &[]),
            ResponseMode::Emqttd => (&[], &four),
        };
        let ignore = match ignore {
            Some(v) => parse("ignore_status", v)?,
            None => ignore_default.to_vec(),
        };
        let deny = match deny {
            Some(v) => parse("deny_status", v)?,
            None => deny_default.to_vec(),
        };
        for s in [200, 204] {
            for (key, list) in [("ignore_status", &ignore), ("deny_status", &deny)] {
                if list.iter().any(|m| m.matches(s)) {
                    return Err(BuildError::invalid(key, format!("{s} is an answer, not a status to map")));
                }
            }
        }
        Ok(Reader { mode, ignore, deny, allow_body: allow_body.map(|b| b.trim().to_string()) })
    }

    /// The verdict of an answer.
    pub fn verdict(&self, status: u16, body: &[u8], cache_control: Option<&str>) -> Result<Verdict, ProviderError> {
        if self.ignore.iter().any(|m| m.matches(status)) {
            return Ok(Verdict::Ignore);
        }
        if self.deny.iter().any(|m| m.matches(status)) {
            return Ok(Verdict::Deny);
        }
        let max_age = cache_control.and_then(max_age);
        match (self.mode, status) {
            (_, 204) => Ok(Verdict::Allow { superuser: false, max_age }),
            (ResponseMode::Emqx, 200) => {
                let b: Body = serde_json::from_slice(body).map_err(|e| {
                    ProviderError::new(ErrorKind::BadResponse, format!("webhook answer is not the expected JSON: {e}"))
                })?;
                match b.result.as_str() {
                    "allow" => Ok(Verdict::Allow { superuser: b.is_superuser, max_age }),
                    "deny" => Ok(Verdict::Deny),
                    "ignore" => Ok(Verdict::Ignore),
                    other => Err(ProviderError::new(
                        ErrorKind::BadResponse,
                        format!("webhook result {:?}: expected allow, deny or ignore", shorten(other)),
                    )),
                }
            }
            (ResponseMode::Emqttd, 200) => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                if self.allow_body.as_deref() == Some(text) {
                    return Ok(Verdict::Allow { superuser: false, max_age });
                }
                match explicit(text) {
                    Some(Explicit::Allow { superuser }) => Ok(Verdict::Allow { superuser, max_age }),
                    Some(Explicit::Deny) => Ok(Verdict::Deny),
                    Some(Explicit::Ignore) => Ok(Verdict::Ignore),
                    None => Err(ProviderError::new(
                        ErrorKind::BadResponse,
                        format!(
                            "webhook answered 200 without a result (body {:?}); expected allow, deny, ignore or \
                             {{\"result\": …}}, or set allow_body to the body it answers allow with",
                            shorten(text)
                        ),
                    )),
                }
            }
            (_, s) => Err(unexpected(s)),
        }
    }

    /// The answer to a superuser request: allow (or `is_superuser: true`)
    /// is yes; deny, ignore and the mapped statuses are no.
    pub fn superuser(&self, status: u16, body: &[u8]) -> Result<bool, ProviderError> {
        if self.mode == ResponseMode::Emqx && status == 200 {
            if let Ok(b) = serde_json::from_slice::<Body>(body) {
                return Ok(b.is_superuser || b.result == "allow");
            }
        }
        Ok(matches!(self.verdict(status, body, None)?, Verdict::Allow { .. }))
    }
}

/// A result a 200 states in emqttd mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Explicit {
    Allow { superuser: bool },
    Deny,
    Ignore,
}

/// `allow` / `deny` / `ignore` as the whole body (any case), or a JSON
/// object whose `result` is one of them.
fn explicit(text: &str) -> Option<Explicit> {
    let word = |w: &str| match w.to_ascii_lowercase().as_str() {
        "allow" => Some(Explicit::Allow { superuser: false }),
        "deny" => Some(Explicit::Deny),
        "ignore" => Some(Explicit::Ignore),
        _ => None,
    };
    if text.starts_with('{') {
        let b: Body = serde_json::from_str(text).ok()?;
        return match word(&b.result)? {
            Explicit::Allow { .. } => Some(Explicit::Allow { superuser: b.is_superuser }),
            other => Some(other),
        };
    }
    word(text)
}

/// EMQX 5's answer body.
#[derive(Debug, Deserialize)]
struct Body {
    #[serde(default)]
    result: String,
    #[serde(default)]
    is_superuser: bool,
}

fn unexpected(status: u16) -> ProviderError {
    let kind = if status >= 500 { ErrorKind::Unavailable } else { ErrorKind::BadResponse };
    ProviderError::new(kind, format!("webhook answered HTTP {status}"))
}

fn shorten(s: &str) -> &str {
    let mut end = s.len().min(40);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `max-age=N` → N seconds; `no-store` / `no-cache` → 0.
pub fn max_age(cache_control: &str) -> Option<Duration> {
    let mut out = None;
    for d in cache_control.split(',').map(str::trim) {
        let lower = d.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(n) = lower.strip_prefix("max-age=") {
            out = n.trim_matches('"').parse::<u64>().ok().map(Duration::from_secs);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::BuildErrorKind;

    fn emqx() -> Reader {
        Reader::new(ResponseMode::Emqx, None, None, None).unwrap()
    }

    fn emqttd() -> Reader {
        Reader::new(ResponseMode::Emqttd, None, None, None).unwrap()
    }

    #[test]
    fn emqx_answers() {
        let r = emqx();
        let allow = |su| Verdict::Allow { superuser: su, max_age: None };
        assert_eq!(r.verdict(200, br#"{"result":"allow","is_superuser":true}"#, None).unwrap(), allow(true));
        assert_eq!(r.verdict(200, br#"{"result":"allow"}"#, None).unwrap(), allow(false));
        assert_eq!(r.verdict(200, br#"{"result":"deny"}"#, None).unwrap(), Verdict::Deny);
        assert_eq!(r.verdict(200, br#"{"result":"ignore"}"#, None).unwrap(), Verdict::Ignore);
        assert_eq!(r.verdict(204, b"", None).unwrap(), allow(false));
        assert_eq!(r.verdict(404, b"", None).unwrap(), Verdict::Ignore);
        assert_eq!(r.verdict(403, b"", None).unwrap(), Verdict::Ignore);
        assert_eq!(r.verdict(503, b"", None).unwrap_err().kind, ErrorKind::Unavailable);
        assert_eq!(r.verdict(302, b"", None).unwrap_err().kind, ErrorKind::BadResponse);
        assert_eq!(r.verdict(200, b"allow", None).unwrap_err().kind, ErrorKind::BadResponse);
        assert_eq!(r.verdict(200, br#"{"result":"maybe"}"#, None).unwrap_err().kind, ErrorKind::BadResponse);
        assert_eq!(
            r.verdict(200, br#"{"result":"allow"}"#, Some("private, max-age=7")).unwrap(),
            Verdict::Allow { superuser: false, max_age: Some(Duration::from_secs(7)) }
        );
    }

    #[test]
    fn emqttd_answers() {
        let r = emqttd();
        assert!(matches!(r.verdict(200, b"allow", None).unwrap(), Verdict::Allow { superuser: false, .. }));
        assert!(matches!(
            r.verdict(200, br#"{"result": "allow", "is_superuser": true}"#, None).unwrap(),
            Verdict::Allow { superuser: true, .. }
        ));
        assert_eq!(r.verdict(200, b" ignore\n", None).unwrap(), Verdict::Ignore);
        assert_eq!(r.verdict(200, b"DENY", None).unwrap(), Verdict::Deny);
        assert_eq!(r.verdict(200, br#"{"result":"deny"}"#, None).unwrap(), Verdict::Deny);
        assert_eq!(r.verdict(401, b"", None).unwrap(), Verdict::Deny);
        assert!(r.verdict(500, b"", None).is_err());
        assert!(r.superuser(200, b"allow").unwrap());
        assert!(!r.superuser(403, b"").unwrap());
        // A 200 that says nothing is never an allow: a wrong URL answers so.
        for body in [&b""[..], b"<html><body>It works!</body></html>", b"OK", br#"{"status": "up"}"#, b"allowed"] {
            let e = r.verdict(200, body, None).unwrap_err();
            assert_eq!(e.kind, ErrorKind::BadResponse, "{body:?}");
            assert!(r.superuser(200, body).is_err(), "{body:?}");
        }
        // allow_body names the webhook's own convention.
        let r = Reader::new(ResponseMode::Emqttd, None, None, Some("")).unwrap();
        assert!(matches!(r.verdict(200, b"  \n", None).unwrap(), Verdict::Allow { .. }));
        assert_eq!(r.verdict(200, b"ignore", None).unwrap(), Verdict::Ignore);
        assert!(r.verdict(200, b"<html></html>", None).is_err());
        let r = Reader::new(ResponseMode::Emqttd, None, None, Some("ok")).unwrap();
        assert!(matches!(r.verdict(200, b"ok\n", None).unwrap(), Verdict::Allow { .. }));
        assert!(r.verdict(200, b"", None).is_err());
        assert!(Reader::new(ResponseMode::Emqx, None, None, Some(""))
            .unwrap_err()
            .is("allow_body", BuildErrorKind::Invalid));
        assert!(emqx().superuser(200, br#"{"is_superuser": true}"#).unwrap());
        assert!(!emqx().superuser(200, br#"{"result": "deny"}"#).unwrap());
    }

    #[test]
    fn configured_statuses() {
        let r = Reader::new(
            ResponseMode::Emqx,
            Some(&[StatusPattern::Code(404)]),
            Some(&[StatusPattern::Class("4xx".into()), StatusPattern::Code(503)]),
            None,
        )
        .unwrap();
        assert_eq!(r.verdict(404, b"", None).unwrap(), Verdict::Ignore);
        assert_eq!(r.verdict(401, b"", None).unwrap(), Verdict::Deny);
        assert_eq!(r.verdict(503, b"", None).unwrap(), Verdict::Deny);
        let e = Reader::new(ResponseMode::Emqx, Some(&[StatusPattern::Class("2xx".into())]), None, None).unwrap_err();
        assert!(e.is("ignore_status", BuildErrorKind::Invalid), "{e}");
        let e = Reader::new(ResponseMode::Emqttd, None, Some(&[StatusPattern::Code(204)]), None).unwrap_err();
        assert!(e.is("deny_status", BuildErrorKind::Invalid), "{e}");
        let e = Reader::new(ResponseMode::Emqx, Some(&[StatusPattern::Code(99)]), None, None).unwrap_err();
        assert_eq!(e.to_string(), "ignore_status: 99: not an HTTP status code");
        assert!(Reader::new(ResponseMode::Emqx, Some(&[StatusPattern::Class("4x".into())]), None, None).is_err());
    }

    #[test]
    fn cache_control() {
        assert_eq!(max_age("max-age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("public, MAX-AGE=5"), Some(Duration::from_secs(5)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("private"), None);
        assert_eq!(max_age("max-age=x"), None);
    }
}
