//! A webhook request parsed once from the config and filled per call.
//!
//! Every client value is encoded for the place it goes, never spliced
//! into text the webhook parses: URL-encoded in the query string (the URL
//! path takes no placeholders, so `../` cannot climb it), a JSON string
//! through serde_json, form-encoded in a form body or a GET query. A
//! header value with a CR, LF or other control character is refused, not
//! sent. A value the client does not have (no username) is the empty
//! string.

use std::borrow::Cow;

use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Url;

use super::config::{BodyFormat, Method, RequestConfig};
use crate::common::template::{Part, Template, Values, Var};
use crate::common::BuildError;

/// A request template.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    url: Template,
    method: Method,
    format: BodyFormat,
    headers: Vec<(HeaderName, Template)>,
    body: Vec<(String, Template)>,
}

/// A client value that cannot be sent where the config puts it (a header
/// with CR/LF); the provider refuses the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsendable(pub String);

impl RequestSpec {
    /// Every template of the request: URL, headers and body.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        std::iter::once(&self.url).chain(self.headers.iter().map(|(_, t)| t)).chain(self.body.iter().map(|(_, t)| t))
    }

    /// The webhook's host, and whether it is reached over (verified) HTTPS:
    /// an `https` URL needs `tls` with a CA, which is always checked.
    pub fn endpoint(&self) -> crate::common::transport::Endpoint {
        let sample = fill(&self.url, &Values::default(), |v| Cow::Borrowed(v));
        let parsed = Url::parse(&sample).ok();
        let host = parsed.as_ref().and_then(|u| u.host_str()).unwrap_or("").to_string();
        let https = parsed.as_ref().is_some_and(|u| u.scheme() == "https");
        crate::common::transport::Endpoint::new(host, https)
    }

    /// Errors are keyed as in the table `cfg` came from, `url` or
    /// `body.u`; the caller puts them under the table's own key
    /// (`superuser`). `tls` says whether TLS is on.
    pub fn parse(cfg: &RequestConfig, allowed: &[Var], tls: bool) -> Result<RequestSpec, BuildError> {
        let url = Template::parse(&cfg.url, allowed).map_err(|e| e.under("url"))?;
        check_url(&url, tls).map_err(|e| e.under("url"))?;
        let mut headers = Vec::new();
        for (name, value) in &cfg.headers {
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| BuildError::invalid("headers", format!("{name:?} is not a header name")))?;
            let key = format!("headers.{name}");
            let t = Template::parse(value, allowed).map_err(|e| e.under(&key))?;
            HeaderValue::from_str(&fill(&t, &Values::default(), |v| Cow::Borrowed(v)))
                .map_err(|_| BuildError::invalid(&key, "not a valid header value"))?;
            headers.push((n, t));
        }
        let body = cfg
            .body
            .iter()
            .map(|(k, v)| {
                Template::parse(v, allowed).map(|t| (k.clone(), t)).map_err(|e| e.under(&format!("body.{k}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RequestSpec { url, method: cfg.method, format: cfg.body_format, headers, body })
    }

    /// The request for these values.
    pub fn build(&self, client: &reqwest::Client, values: &Values<'_>) -> Result<reqwest::Request, Unsendable> {
        let url = fill(&self.url, values, urlencoding::encode);
        let mut url = Url::parse(&url).map_err(|e| Unsendable(format!("url: {e}")))?;
        let fields: Vec<(&str, String)> =
            self.body.iter().map(|(k, t)| (k.as_str(), fill(t, values, |v| Cow::Borrowed(v)))).collect();
        let mut req = match self.method {
            Method::Get => {
                if !fields.is_empty() {
                    url.query_pairs_mut().extend_pairs(fields.iter().map(|(k, v)| (*k, v.as_str())));
                }
                client.get(url)
            }
            Method::Post => {
                let r = client.post(url);
                match self.format {
                    BodyFormat::Json => {
                        let map: serde_json::Map<String, serde_json::Value> =
                            fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::String(v.clone()))).collect();
                        r.json(&map)
                    }
                    BodyFormat::Form => r.form(&fields),
                }
            }
        };
        for (name, t) in &self.headers {
            let v = fill(t, values, |v| Cow::Borrowed(v));
            let v = HeaderValue::from_str(&v)
                .map_err(|_| Unsendable(format!("header {name}: the value has characters a header cannot carry")))?;
            req = req.header(name, v);
        }
        req.build().map_err(|e| Unsendable(format!("request: {e}")))
    }
}

/// The template with each value passed through `encode`; missing values
/// are empty.
fn fill<'v>(t: &Template, values: &'v Values<'_>, encode: impl Fn(&str) -> Cow<'_, str>) -> String {
    let mut out = String::new();
    for p in t.parts() {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Var(v) => {
                let value: Option<Cow<'v, str>> = values.get(*v);
                out.push_str(&encode(value.as_deref().unwrap_or("")));
            }
        }
    }
    out
}

/// `http(s)://host…`, no fragment, placeholders only after the `?`.
/// Errors carry no key (the caller's is `url`).
fn check_url(url: &Template, tls: bool) -> Result<(), BuildError> {
    let bad = |reason: String| Err(BuildError::invalid("", reason));
    let mut in_query = false;
    for p in url.parts() {
        match p {
            Part::Lit(s) => {
                if s.contains('#') {
                    return bad("a fragment (#) is not sent; remove it".into());
                }
                in_query |= s.contains('?');
            }
            Part::Var(v) if !in_query => {
                return bad(format!("placeholders go in the query string (after ?), not in the path ({v})"));
            }
            Part::Var(_) => {}
        }
    }
    let sample = fill(url, &Values::default(), |v| Cow::Borrowed(v));
    let parsed = match Url::parse(&sample) {
        Ok(u) => u,
        Err(e) => return bad(format!("{sample:?}: {e}")),
    };
    if parsed.host_str().is_none_or(str::is_empty) {
        return bad(format!("{sample:?}: no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("credentials in the URL would be logged; use headers (Authorization) instead".into());
    }
    match (parsed.scheme(), tls) {
        ("http", false) | ("https", true) => Ok(()),
        ("https", false) => {
            bad("an https URL needs tls.enable = true and tls.ca_file (no implicit trust store)".into())
        }
        ("http", true) => bad("tls.enable = true needs an https URL".into()),
        (other, _) => bad(format!("scheme {other:?}: expected http or https")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::common::BuildErrorKind;

    fn cfg(url: &str, method: Method, format: BodyFormat) -> RequestConfig {
        RequestConfig {
            url: url.into(),
            method,
            body_format: format,
            headers: BTreeMap::from([("X-User".to_string(), "u=${username}".to_string())]),
            body: BTreeMap::from([
                ("username".to_string(), "${username}".to_string()),
                ("password".to_string(), "${password}".to_string()),
            ]),
        }
    }

    fn all() -> Vec<Var> {
        Var::ALL.to_vec()
    }

    fn values(u: &str) -> Values<'_> {
        Values { username: Some(u), password: Some(Cow::Borrowed("p&w=\"1\"")), ..Values::default() }
    }

    #[test]
    fn urls_are_checked() {
        let ok = |u: &str, tls| RequestSpec::parse(&cfg(u, Method::Get, BodyFormat::Json), &all(), tls);
        let err = |u: &str, tls| {
            let e = ok(u, tls).unwrap_err();
            assert!(e.is("url", BuildErrorKind::Invalid), "{e}");
            e.reason
        };
        assert!(ok("http://127.0.0.1:8080/auth?u=${username}", false).is_ok());
        assert!(err("http://127.0.0.1/users/${username}", false).contains("query string"));
        assert!(err("https://127.0.0.1/auth", false).starts_with("an https URL needs tls.enable"));
        assert!(err("http://127.0.0.1/auth", true).contains("https"));
        assert!(err("ftp://127.0.0.1/auth", false).starts_with("scheme \"ftp\""));
        assert!(err("http://u:p@127.0.0.1/auth", false).contains("credentials"));
        assert!(ok("http://", false).is_err());
        assert!(ok("http://127.0.0.1/a#b", false).is_err());
    }

    #[test]
    fn values_are_encoded_for_their_place() {
        let client = reqwest::Client::new();
        let u = "../x&admin=1\"}";
        let spec = RequestSpec::parse(
            &cfg("http://127.0.0.1/auth?who=${username}", Method::Get, BodyFormat::Json),
            &all(),
            false,
        )
        .unwrap();
        let r = spec.build(&client, &values(u)).unwrap();
        let q: Vec<(String, String)> = r.url().query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(r.url().path(), "/auth");
        assert_eq!(
            q,
            vec![("who".into(), u.into()), ("password".into(), "p&w=\"1\"".into()), ("username".into(), u.into())]
        );
        assert_eq!(r.headers()["x-user"], format!("u={u}").as_str());

        let spec =
            RequestSpec::parse(&cfg("http://127.0.0.1/auth", Method::Post, BodyFormat::Json), &all(), false).unwrap();
        let r = spec.build(&client, &values(u)).unwrap();
        let body: serde_json::Value = serde_json::from_slice(r.body().unwrap().as_bytes().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"username": u, "password": "p&w=\"1\""}));

        let spec =
            RequestSpec::parse(&cfg("http://127.0.0.1/auth", Method::Post, BodyFormat::Form), &all(), false).unwrap();
        let r = spec.build(&client, &values(u)).unwrap();
        let body = r.body().unwrap().as_bytes().unwrap();
        let as_query = Url::parse(&format!("http://x/?{}", String::from_utf8_lossy(body))).unwrap();
        let pairs: Vec<(String, String)> = as_query.query_pairs().map(|(k, v)| (k.into(), v.into())).collect();
        assert_eq!(pairs, vec![("password".into(), "p&w=\"1\"".into()), ("username".into(), u.into())]);
    }

    #[test]
    fn header_injection_is_refused() {
        let client = reqwest::Client::new();
        let spec =
            RequestSpec::parse(&cfg("http://127.0.0.1/auth", Method::Post, BodyFormat::Json), &all(), false).unwrap();
        assert!(spec.build(&client, &values("a\r\nX-Admin: 1")).is_err());
        // Missing values are empty.
        let r = spec.build(&client, &Values::default()).unwrap();
        assert_eq!(r.headers()["x-user"], "u=");
    }
}
