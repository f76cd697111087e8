//! Placeholders in queries, commands, DN templates, filters and request
//! bodies: `${username}`, `${clientid}`, `${peerhost}`, `${cert_common_name}`,
//! `${cert_subject}`, and for HTTP and ACL requests `${password}`,
//! `${protocol}`, `${action}`, `${topic}`, `${qos}`, `${retain}`.
//!
//! emqttd 1.x's one-letter forms are accepted too, so existing queries can be
//! pasted unchanged: `%u` username, `%c` client id, `%a` peer address,
//! `%C` certificate CN, `%d` certificate subject, `%P` password, `%A` action,
//! `%t` topic. `%%` is a literal `%`.
//!
//! A template is parsed once, at start, into literal and placeholder parts.
//! Each backend then decides how a value enters its request: bound as a
//! query parameter (SQL), passed as its own argument (Redis), escaped (LDAP
//! DN and filter), placed as a BSON value (MongoDB), URL- or JSON-encoded
//! (HTTP). A value is never spliced into text that the backend parses.

use std::borrow::Cow;
use std::fmt;

use portcullis_core::codec::ProtocolVersion;
use portcullis_core::gate::{Access, ClientInfo, ClientProtocol, ConnectInfo, StompVersion};

use super::BuildError;

/// A placeholder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Var {
    Username,
    ClientId,
    Peerhost,
    CertCommonName,
    CertSubject,
    Password,
    Protocol,
    Action,
    Topic,
    Qos,
    Retain,
}

impl Var {
    pub const ALL: [Var; 11] = [
        Var::Username,
        Var::ClientId,
        Var::Peerhost,
        Var::CertCommonName,
        Var::CertSubject,
        Var::Password,
        Var::Protocol,
        Var::Action,
        Var::Topic,
        Var::Qos,
        Var::Retain,
    ];
    /// What a CONNECT has (auth queries).
    pub const CONNECT: [Var; 6] =
        [Var::Username, Var::ClientId, Var::Peerhost, Var::CertCommonName, Var::CertSubject, Var::Protocol];
    /// What an ACL query may use (not the password: it is not kept).
    pub const ACL: [Var; 10] = [
        Var::Username,
        Var::ClientId,
        Var::Peerhost,
        Var::CertCommonName,
        Var::CertSubject,
        Var::Protocol,
        Var::Action,
        Var::Topic,
        Var::Qos,
        Var::Retain,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Var::Username => "username",
            Var::ClientId => "clientid",
            Var::Peerhost => "peerhost",
            Var::CertCommonName => "cert_common_name",
            Var::CertSubject => "cert_subject",
            Var::Password => "password",
            Var::Protocol => "protocol",
            Var::Action => "action",
            Var::Topic => "topic",
            Var::Qos => "qos",
            Var::Retain => "retain",
        }
    }

    fn from_name(s: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == s)
    }

    fn from_emqttd(c: char) -> Option<Var> {
        Some(match c {
            'u' => Var::Username,
            'c' => Var::ClientId,
            'a' => Var::Peerhost,
            'C' => Var::CertCommonName,
            'd' => Var::CertSubject,
            'P' => Var::Password,
            'A' => Var::Action,
            't' => Var::Topic,
            _ => return None,
        })
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${{{}}}", self.name())
    }
}

/// A piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Lit(String),
    Var(Var),
}

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Template({:?})", self.source)
    }
}

/// Where a value is missing (a client without a username, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Missing(pub Var);

impl Template {
    /// Parses `text`, accepting only the placeholders in `allowed`. An
    /// error is [`BuildErrorKind::Invalid`] without a key: the caller puts
    /// it [`under`](BuildError::under) the key the text was written at.
    ///
    /// [`BuildErrorKind::Invalid`]: super::BuildErrorKind::Invalid
    pub fn parse(text: &str, allowed: &[Var]) -> Result<Template, BuildError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(i) = rest.find(['$', '%']) {
            lit.push_str(&rest[..i]);
            let tail = &rest[i..];
            if let Some(inner) = tail.strip_prefix("${") {
                let Some(end) = inner.find('}') else {
                    return Err(BuildError::invalid("", format!("unterminated placeholder in {text:?}")));
                };
                let name = &inner[..end];
                let var = Var::from_name(name).ok_or_else(|| {
                    BuildError::invalid(
                        "",
                        format!("unknown placeholder ${{{name}}} in {text:?}; known: {}", names(allowed)),
                    )
                })?;
                check_allowed(var, allowed, text)?;
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(Part::Var(var));
                rest = &inner[end + 1..];
            } else if let Some(after) = tail.strip_prefix('%') {
                let mut chars = after.chars();
                match chars.next() {
                    Some('%') => {
                        lit.push('%');
                        rest = &after[1..];
                    }
                    Some(c) if Var::from_emqttd(c).is_some() => {
                        let var = Var::from_emqttd(c).unwrap_or(Var::Username);
                        check_allowed(var, allowed, text)?;
                        if !lit.is_empty() {
                            parts.push(Part::Lit(std::mem::take(&mut lit)));
                        }
                        parts.push(Part::Var(var));
                        rest = &after[c.len_utf8()..];
                    }
                    _ => {
                        // A `%` that is not a placeholder (SQL `LIKE 'a%'`).
                        lit.push('%');
                        rest = after;
                    }
                }
            } else {
                lit.push('$');
                rest = &tail[1..];
            }
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { source: text.to_string(), parts })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The placeholders in order of appearance.
    pub fn vars(&self) -> impl Iterator<Item = Var> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(*v),
            Part::Lit(_) => None,
        })
    }

    pub fn has_vars(&self) -> bool {
        self.vars().next().is_some()
    }

    /// Fills the placeholders, passing each value through `escape` (which
    /// appends the escaped value to the output).
    pub fn render(&self, values: &Values<'_>, escape: impl Fn(&str, &mut String)) -> Result<String, Missing> {
        let mut out = String::with_capacity(self.source.len() + 32);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(v) => escape(&values.get(*v).ok_or(Missing(*v))?, &mut out),
            }
        }
        Ok(out)
    }

    /// SQL text with each placeholder replaced by a positional parameter
    /// (`$1`, `$2`… when `dollar`, else `?`), and the placeholders in bind
    /// order. A placeholder written inside single quotes (`'%u'`, as in
    /// emqttd's default queries) loses its quotes: it is bound, not spliced.
    pub fn to_positional(&self, dollar: bool) -> (String, Vec<Var>) {
        let mut sql = String::with_capacity(self.source.len());
        let mut binds = Vec::new();
        let n = self.parts.len();
        let mut skip_quote = false;
        for (i, p) in self.parts.iter().enumerate() {
            match p {
                Part::Lit(s) => {
                    let mut s = s.as_str();
                    if skip_quote {
                        s = &s[1..];
                        skip_quote = false;
                    }
                    let next_quoted = i + 2 <= n
                        && matches!(self.parts.get(i + 1), Some(Part::Var(_)))
                        && matches!(self.parts.get(i + 2), Some(Part::Lit(l)) if l.starts_with('\''));
                    if next_quoted && s.ends_with('\'') {
                        s = &s[..s.len() - 1];
                    }
                    sql.push_str(s);
                }
                Part::Var(v) => {
                    binds.push(*v);
                    if dollar {
                        sql.push('$');
                        sql.push_str(&binds.len().to_string());
                    } else {
                        sql.push('?');
                    }
                    let prev_quote = i > 0 && matches!(&self.parts[i - 1], Part::Lit(l) if l.ends_with('\''));
                    let next_quote = matches!(self.parts.get(i + 1), Some(Part::Lit(l)) if l.starts_with('\''));
                    skip_quote = prev_quote && next_quote;
                }
            }
        }
        (sql, binds)
    }
}

fn check_allowed(var: Var, allowed: &[Var], text: &str) -> Result<(), BuildError> {
    if allowed.contains(&var) {
        Ok(())
    } else {
        Err(BuildError::invalid(
            "",
            format!("placeholder {var} cannot be used here (in {text:?}); available: {}", names(allowed)),
        ))
    }
}

fn names(vars: &[Var]) -> String {
    vars.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(", ")
}

/// The values placeholders stand for, borrowed from a CONNECT or an access.
#[derive(Debug, Clone, Default)]
pub struct Values<'a> {
    pub username: Option<&'a str>,
    pub client_id: Option<&'a str>,
    pub peerhost: Option<String>,
    pub cert_common_name: Option<&'a str>,
    pub cert_subject: Option<&'a str>,
    /// Only for HTTP auth requests. Lossy UTF-8.
    pub password: Option<Cow<'a, str>>,
    pub protocol: Option<&'static str>,
    pub action: Option<&'static str>,
    pub topic: Option<&'a str>,
    pub qos: Option<u8>,
    pub retain: Option<bool>,
}

/// `${protocol}`: `MQIsdp` (3.1), `MQTT 3.1.1`, `MQTT 5.0`; `STOMP 1.0`,
/// `STOMP 1.1`, `STOMP 1.2`.
fn protocol_name(p: ClientProtocol) -> &'static str {
    match p {
        ClientProtocol::Mqtt(ProtocolVersion::V31) => "MQIsdp",
        ClientProtocol::Mqtt(ProtocolVersion::V311) => "MQTT 3.1.1",
        ClientProtocol::Mqtt(ProtocolVersion::V5) => "MQTT 5.0",
        ClientProtocol::Stomp(StompVersion::V10) => "STOMP 1.0",
        ClientProtocol::Stomp(StompVersion::V11) => "STOMP 1.1",
        ClientProtocol::Stomp(StompVersion::V12) => "STOMP 1.2",
    }
}

impl<'a> Values<'a> {
    pub fn from_connect(info: &'a ConnectInfo) -> Values<'a> {
        Values {
            username: info.username.as_deref(),
            client_id: Some(&info.client_id),
            peerhost: Some(canonical_ip(info.peer.ip()).to_string()),
            cert_common_name: info.cert.as_ref().and_then(|c| c.common_name.as_deref()),
            cert_subject: info.cert.as_ref().map(|c| c.subject.as_str()),
            password: info.password.as_ref().map(|p| String::from_utf8_lossy(p.expose())),
            protocol: Some(protocol_name(info.protocol)),
            ..Values::default()
        }
    }

    pub fn from_access(client: &'a ClientInfo, access: &'a Access<'a>) -> Values<'a> {
        let (action, topic, qos, retain) = match access {
            Access::Publish { topic, qos, retain } => ("publish", topic.as_str(), *qos as u8, Some(*retain)),
            Access::Subscribe { filter, qos } => ("subscribe", filter.filter.as_str(), *qos as u8, None),
        };
        Values {
            username: client.username.as_deref(),
            client_id: Some(&client.client_id),
            peerhost: Some(canonical_ip(client.peer.ip()).to_string()),
            cert_common_name: client.cert.as_ref().and_then(|c| c.common_name.as_deref()),
            cert_subject: client.cert.as_ref().map(|c| c.subject.as_str()),
            password: None,
            protocol: Some(protocol_name(client.protocol)),
            action: Some(action),
            topic: Some(topic),
            qos: Some(qos),
            retain,
        }
    }

    /// The value of a placeholder, if the client has one.
    pub fn get(&self, v: Var) -> Option<Cow<'_, str>> {
        match v {
            Var::Username => self.username.map(Cow::Borrowed),
            Var::ClientId => self.client_id.map(Cow::Borrowed),
            Var::Peerhost => self.peerhost.as_deref().map(Cow::Borrowed),
            Var::CertCommonName => self.cert_common_name.map(Cow::Borrowed),
            Var::CertSubject => self.cert_subject.map(Cow::Borrowed),
            Var::Password => self.password.as_deref().map(Cow::Borrowed),
            Var::Protocol => self.protocol.map(Cow::Borrowed),
            Var::Action => self.action.map(Cow::Borrowed),
            Var::Topic => self.topic.map(Cow::Borrowed),
            Var::Qos => self.qos.map(|q| Cow::Owned(q.to_string())),
            Var::Retain => self.retain.map(|r| Cow::Borrowed(if r { "true" } else { "false" })),
        }
    }
}

/// `::ffff:10.0.0.1` is `10.0.0.1`.
pub fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, std::net::IpAddr::V4),
        v4 => v4,
    }
}

/// `escape` for values that need none (bound parameters, separate arguments).
pub fn verbatim(v: &str, out: &mut String) {
    out.push_str(v);
}

/// What an auth provider's answer depends on, given the templates it
/// renders: the username and password always (it checks a password), plus
/// whatever the templates read. For [`AuthProvider::inputs`].
///
/// [`AuthProvider::inputs`]: portcullis_auth::provider::AuthProvider::inputs
pub fn auth_inputs<'a>(templates: impl IntoIterator<Item = &'a Template>) -> portcullis_auth::provider::Inputs {
    use portcullis_auth::provider::Inputs;
    let mut inputs = Inputs::USERNAME | Inputs::PASSWORD;
    for t in templates {
        for v in t.vars() {
            inputs = inputs
                | match v {
                    Var::Username => Inputs::USERNAME,
                    Var::Password => Inputs::PASSWORD,
                    Var::ClientId => Inputs::CLIENT_ID,
                    Var::Peerhost => Inputs::PEER,
                    Var::CertCommonName | Var::CertSubject => Inputs::CERT,
                    Var::Protocol => Inputs::PROTOCOL,
                    Var::Action | Var::Topic | Var::Qos | Var::Retain => Inputs::NONE,
                };
        }
    }
    inputs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_syntaxes() {
        let t = Template::parse("mqtt_user:${username}", &Var::CONNECT).unwrap();
        assert_eq!(t.parts(), &[Part::Lit("mqtt_user:".into()), Part::Var(Var::Username)]);
        let t = Template::parse("a %u b %c %% %a", &Var::CONNECT).unwrap();
        assert_eq!(t.vars().collect::<Vec<_>>(), vec![Var::Username, Var::ClientId, Var::Peerhost]);
        assert!(t.source().contains("%%"));
    }

    #[test]
    fn rejects_unknown_and_disallowed() {
        let e = Template::parse("${usernme}", &Var::CONNECT).unwrap_err();
        assert!(e.reason.contains("unknown placeholder ${usernme}"), "{e}");
        let e = Template::parse("${password}", &Var::ACL).unwrap_err();
        assert!(e.reason.contains("cannot be used here"), "{e}");
        assert!(Template::parse("${username", &Var::CONNECT).is_err());
    }

    #[test]
    fn like_percent_is_literal() {
        let t = Template::parse("x LIKE 'a%' AND u = ${username}", &Var::CONNECT).unwrap();
        let (sql, binds) = t.to_positional(true);
        assert_eq!(sql, "x LIKE 'a%' AND u = $1");
        assert_eq!(binds, vec![Var::Username]);
    }

    #[test]
    fn positional_strips_emqttd_quotes() {
        let t = Template::parse(
            "select password from mqtt_user where username = '%u' and c = ${clientid} limit 1",
            &Var::CONNECT,
        )
        .unwrap();
        assert_eq!(t.to_positional(true).0, "select password from mqtt_user where username = $1 and c = $2 limit 1");
        assert_eq!(t.to_positional(false).0, "select password from mqtt_user where username = ? and c = ? limit 1");
        let t = Template::parse("where u='${username}'", &Var::CONNECT).unwrap();
        assert_eq!(t.to_positional(false).0, "where u=?");
    }

    #[test]
    fn render_escapes_and_reports_missing() {
        let t = Template::parse("uid=${username},ou=x", &Var::CONNECT).unwrap();
        let v = Values { username: Some("a,b"), ..Values::default() };
        let s = t.render(&v, |x, out| out.push_str(&x.replace(',', "\\,"))).unwrap();
        assert_eq!(s, "uid=a\\,b,ou=x");
        let none = Values::default();
        assert_eq!(t.render(&none, verbatim), Err(Missing(Var::Username)));
    }
}
