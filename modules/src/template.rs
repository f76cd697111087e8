//! Topic templates: text with `${clientid}` / `${username}` placeholders
//! and, in a rewrite destination, `$1`..`$9` capture groups; parsed once
//! when a module is built, rendered per client (auto-subscribe) or per
//! topic (rewrite).
//!
//! A placeholder may stand anywhere: as a whole level (`clients/${clientid}`)
//! or within one (`dev-${clientid}/cmd`). What it is replaced with must
//! stay inside that level and not widen a filter, so a client id or
//! username that is empty or contains `/`, `+`, `#` or U+0000, or one that
//! starts with `$` where the template starts with the placeholder, renders
//! nothing for that client ([`Unrendered::UnsafeValue`]); a client without
//! a username renders nothing from a template that names it
//! ([`Unrendered::NoUsername`]). Capture groups are copied as the regex
//! found them (they come from the topic itself); the caller validates the
//! result as a topic name or filter.
//!
//! A rendering never grows past [`MAX_LEN`] bytes (MQTT's topic length):
//! it stops there ([`Unrendered::TooLong`]), whatever the captures hold.

use std::fmt;

/// MQTT's longest topic name or filter, in bytes.
pub const MAX_LEN: usize = 65_535;

/// The placeholder for the client id.
pub const CLIENTID: &str = "${clientid}";
/// The placeholder for the username.
pub const USERNAME: &str = "${username}";

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    ClientId,
    Username,
    /// `$1`..`$9`.
    Group(usize),
}

/// A parsed template.
#[derive(Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl fmt::Debug for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Template").field(&self.parts).finish()
    }
}

/// Why a template string was refused at load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("must not be empty")]
    Empty,
    #[error("unknown placeholder `${{{0}}}` (known: `${{clientid}}`, `${{username}}`)")]
    UnknownPlaceholder(String),
    #[error("`${{` without its closing `}}`")]
    Unclosed,
}

/// Why a template rendered nothing for this client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unrendered {
    /// It names `${username}` and the client has none.
    NoUsername,
    /// A client id or username that would leave its level or widen a
    /// filter (see the module docs).
    UnsafeValue,
    /// The result would pass [`MAX_LEN`] bytes.
    TooLong,
}

impl Unrendered {
    pub fn as_str(self) -> &'static str {
        match self {
            Unrendered::NoUsername => "the client has no username",
            Unrendered::UnsafeValue => {
                "the client id or username is empty or holds `/`, `+`, `#`, U+0000 or a leading `$`"
            }
            Unrendered::TooLong => "the result would pass 65535 bytes",
        }
    }
}

/// Whether a client's value may be put into a topic (see the module docs).
fn safe_value(v: &str) -> bool {
    !v.is_empty() && !v.contains(['/', '+', '#', '\0'])
}

impl Template {
    /// Parses `s`; `$1`..`$9` are capture groups when `groups` is set and
    /// plain text otherwise (as is any other `$`).
    pub fn parse(s: &str, groups: bool) -> Result<Template, TemplateError> {
        if s.is_empty() {
            return Err(TemplateError::Empty);
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('$') {
            text.push_str(&rest[..i]);
            let after = &rest[i + 1..];
            if let Some(inner) = after.strip_prefix('{') {
                let end = inner.find('}').ok_or(TemplateError::Unclosed)?;
                let part = match &inner[..end] {
                    "clientid" => Part::ClientId,
                    "username" => Part::Username,
                    other => return Err(TemplateError::UnknownPlaceholder(other.to_string())),
                };
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(part);
                rest = &inner[end + 1..];
            } else if let Some(d @ b'1'..=b'9') = after.bytes().next().filter(|_| groups) {
                if !text.is_empty() {
                    parts.push(Part::Text(std::mem::take(&mut text)));
                }
                parts.push(Part::Group(usize::from(d - b'0')));
                rest = &after[1..];
            } else {
                text.push('$');
                rest = after;
            }
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        Ok(Template { parts })
    }

    /// The highest capture group named (0 when none).
    pub fn max_group(&self) -> usize {
        self.parts.iter().filter_map(|p| if let Part::Group(n) = p { Some(*n) } else { None }).max().unwrap_or(0)
    }

    /// Whether it names `${username}`.
    pub fn uses_username(&self) -> bool {
        self.parts.contains(&Part::Username)
    }

    /// Whether it has no placeholder and no capture group.
    pub fn is_literal(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Text(_)))
    }

    /// Renders for a client; `group(n)` is capture group `n` (`""` when it
    /// did not take part in the match).
    pub fn render<'g>(
        &self,
        client_id: &str,
        username: Option<&str>,
        group: impl Fn(usize) -> &'g str,
    ) -> Result<String, Unrendered> {
        let mut out = String::new();
        for (i, p) in self.parts.iter().enumerate() {
            let piece = match p {
                Part::Text(t) => t.as_str(),
                Part::ClientId | Part::Username => {
                    let v = match p {
                        Part::ClientId => client_id,
                        _ => username.ok_or(Unrendered::NoUsername)?,
                    };
                    if !safe_value(v) || (i == 0 && v.starts_with('$')) {
                        return Err(Unrendered::UnsafeValue);
                    }
                    v
                }
                Part::Group(n) => group(*n),
            };
            if out.len() + piece.len() > MAX_LEN {
                return Err(Unrendered::TooLong);
            }
            out.push_str(piece);
        }
        Ok(out)
    }

    /// Renders with sample values (client `c`, username `u`, every group
    /// `a`): what config validation checks the shape of.
    pub fn sample(&self) -> String {
        self.render("c", Some("u"), |_| "a").unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none(_: usize) -> &'static str {
        ""
    }

    #[test]
    fn placeholders_whole_level_or_within_one() {
        let t = Template::parse("clients/${clientid}/u-${username}-x", false).unwrap();
        assert!(t.uses_username());
        assert_eq!(t.render("c1", Some("bob"), none).unwrap(), "clients/c1/u-bob-x");
        assert_eq!(t.render("c1", None, none), Err(Unrendered::NoUsername));
        assert!(Template::parse("plain/topic", false).unwrap().is_literal());
    }

    #[test]
    fn unsafe_values_render_nothing() {
        let t = Template::parse("a/${clientid}/b", false).unwrap();
        for bad in ["", "x/y", "+", "#", "a+b", "nul\0"] {
            assert_eq!(t.render(bad, None, none), Err(Unrendered::UnsafeValue), "{bad:?}");
        }
        // `$` is fine inside a level, not as the start of the topic.
        assert_eq!(t.render("$x", None, none).unwrap(), "a/$x/b");
        let lead = Template::parse("${clientid}/b", false).unwrap();
        assert_eq!(lead.render("$SYS", None, none), Err(Unrendered::UnsafeValue));
        assert_eq!(lead.render("x", None, none).unwrap(), "x/b");
    }

    #[test]
    fn groups_only_where_asked() {
        let t = Template::parse("z/$1/$2/$0/$x/$", true).unwrap();
        assert_eq!(t.max_group(), 2);
        let g = |n: usize| ["", "one", "two"][n];
        assert_eq!(t.render("c", None, g).unwrap(), "z/one/two/$0/$x/$");
        let lit = Template::parse("z/$1", false).unwrap();
        assert_eq!(lit.max_group(), 0);
        assert_eq!(lit.render("c", None, g).unwrap(), "z/$1");
        // `$10` is group 1 then `0`.
        assert_eq!(Template::parse("$10", true).unwrap().render("c", None, g).unwrap(), "one0");
    }

    #[test]
    fn refused_at_parse() {
        assert_eq!(Template::parse("", false), Err(TemplateError::Empty));
        assert_eq!(Template::parse("a/${host}", false), Err(TemplateError::UnknownPlaceholder("host".into())));
        assert_eq!(Template::parse("a/${clientid", false), Err(TemplateError::Unclosed));
    }

    #[test]
    fn rendering_is_bounded() {
        let t = Template::parse("$1/$1/$1", true).unwrap();
        let big = "x".repeat(30_000);
        assert_eq!(t.render("c", None, |_| big.as_str()), Err(Unrendered::TooLong));
        let t = Template::parse("$1", true).unwrap();
        assert_eq!(t.render("c", None, |_| big.as_str()).unwrap().len(), 30_000);
    }
}
