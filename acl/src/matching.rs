//! Pure topic algorithms behind [`crate::rule::Rule::matches`].
//!
//! * [`topic_matches`] — does a rule pattern match a PUBLISH topic name
//!   (MQTT filter semantics, `$` topics never matched by a leading wildcard).
//! * [`covers`] — is every topic a requested subscription filter could match
//!   also matched by the pattern? This is what an *allow* rule must show
//!   before a subscription is granted, and what a deny rule refuses:
//!   `a/#` covers `a/+/b`, `a/+` does not cover `a/#`, `#` covers
//!   everything except `$` filters.
//! * [`overlaps`] — is there at least one topic both match? Rules use
//!   [`covers`] for both allow and deny, as emqttd did; a granted
//!   subscription that overlaps a deny rule has its deliveries checked
//!   ([`crate::rule::Rule::may_deny_within`]).
//! * [`resolve`] — replaces the `${username}` / `${clientid}` placeholder
//!   levels with the client's values, refusing values that would widen the
//!   pattern.
//! * [`validate_pattern`] — load-time check of a pattern string.
//!
//! The algorithms work on slices of `/`-separated levels; the `&str`
//! entry points split their arguments first.

use portcullis_core::gate::ClientInfo;
use portcullis_core::topic::{validate_filter, TopicError};

/// Placeholder replaced by the client's username (a whole level).
pub const USERNAME: &str = "${username}";
/// Placeholder replaced by the client's id (a whole level).
pub const CLIENTID: &str = "${clientid}";

/// Why a pattern string was rejected at load time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid topic filter {pattern:?}: {error}")]
    Filter { pattern: String, error: TopicError },
    #[error("placeholder in {pattern:?} must be a whole level (`${{username}}` or `${{clientid}}`)")]
    PlaceholderNotWholeLevel { pattern: String },
    #[error(
        "{pattern:?} is a shared subscription; rules match the inner filter, write it without `$share/<group>/` or `$queue/`"
    )]
    Shared { pattern: String },
    #[error("`eq` needs a topic after it")]
    EmptyEq,
}

fn is_wild(level: &str) -> bool {
    level == "+" || level == "#"
}

/// `$` rule (MQTT 4.7.2): a leading wildcard never matches a topic whose
/// first level starts with `$`. True when `wild` starts with a wildcard and
/// `other` starts with a literal `$…` level, i.e. the first levels can never
/// meet.
fn dollar_blocked(wild: &[&str], other: &[&str]) -> bool {
    match (wild.first(), other.first()) {
        (Some(w), Some(o)) => is_wild(w) && !is_wild(o) && o.starts_with('$'),
        _ => false,
    }
}

/// Does the filter (given as levels) match the topic name (given as levels)?
pub(crate) fn topic_matches_levels(pattern: &[&str], topic: &[&str]) -> bool {
    if dollar_blocked(pattern, topic) {
        return false;
    }
    let mut i = 0;
    loop {
        match (pattern.get(i), topic.get(i)) {
            (Some(&"#"), _) => return true,
            (None, None) => return true,
            (Some(&"+"), Some(_)) => {}
            (Some(p), Some(t)) if p == t => {}
            _ => return false,
        }
        i += 1;
    }
}

/// Does every topic matched by `filter` also match `pattern`?
pub(crate) fn covers_levels(pattern: &[&str], filter: &[&str]) -> bool {
    if dollar_blocked(pattern, filter) {
        return false;
    }
    let mut i = 0;
    loop {
        match (pattern.get(i), filter.get(i)) {
            // `#` in the pattern takes the rest, including the parent level.
            (Some(&"#"), _) => return true,
            (None, None) => return true,
            // One side ends: the other matches topics this side cannot.
            (Some(_), None) | (None, Some(_)) => return false,
            // A filter `#` in the first level matches every (non-`$`) topic,
            // which is exactly what `+/#` matches.
            (Some(&"+"), Some(&"#")) if i == 0 => return pattern[1..] == ["#"],
            // Deeper, a filter `#` also matches the parent topic (`a/#`
            // matches `a`); only a pattern `#` (above) covers that.
            (Some(_), Some(&"#")) => return false,
            (Some(&"+"), Some(_)) => {}
            // A literal pattern level cannot cover a `+`.
            (Some(_), Some(&"+")) => return false,
            (Some(p), Some(f)) => {
                if p != f {
                    return false;
                }
            }
        }
        i += 1;
    }
}

/// Is there a topic that both filters match?
pub(crate) fn overlaps_levels(a: &[&str], b: &[&str]) -> bool {
    if dollar_blocked(a, b) || dollar_blocked(b, a) {
        return false;
    }
    let mut i = 0;
    loop {
        match (a.get(i), b.get(i)) {
            (Some(&"#"), _) | (_, Some(&"#")) => return true,
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            (Some(&"+"), Some(_)) | (Some(_), Some(&"+")) => {}
            (Some(x), Some(y)) => {
                if x != y {
                    return false;
                }
            }
        }
        i += 1;
    }
}

fn levels(s: &str) -> Vec<&str> {
    s.split('/').collect()
}

/// Does the filter `pattern` match the topic name `topic`?
pub fn topic_matches(pattern: &str, topic: &str) -> bool {
    topic_matches_levels(&levels(pattern), &levels(topic))
}

/// Does `pattern` match every topic that `filter` could match? Both are
/// plain MQTT filters (no share prefix).
pub fn covers(pattern: &str, filter: &str) -> bool {
    covers_levels(&levels(pattern), &levels(filter))
}

/// Do the filters `a` and `b` match at least one common topic?
pub fn overlaps(a: &str, b: &str) -> bool {
    overlaps_levels(&levels(a), &levels(b))
}

/// A placeholder value must not widen the pattern: it must be present and
/// non-empty, must not contain `+`, `#` or `/` (a wildcard or extra levels),
/// and in the first level must not start with `$` (which would reach
/// `$SYS`-style topics that wildcards never match).
fn safe_value(value: Option<&str>, first_level: bool) -> Option<&str> {
    let v = value?;
    if v.is_empty() || v.contains(['+', '#', '/']) || (first_level && v.starts_with('$')) {
        return None;
    }
    Some(v)
}

/// The pattern's levels with placeholders replaced by the client's values,
/// or `None` when a placeholder's value is absent or unsafe (the pattern
/// then matches nothing).
pub fn resolve<'a>(pattern: &'a str, client: &'a ClientInfo) -> Option<Vec<&'a str>> {
    pattern
        .split('/')
        .enumerate()
        .map(|(i, level)| match level {
            USERNAME => safe_value(client.username.as_deref(), i == 0),
            CLIENTID => safe_value(Some(&client.client_id), i == 0),
            other => Some(other),
        })
        .collect()
}

/// Load-time check of a filter pattern: a valid MQTT filter, placeholders
/// only as whole levels, no shared-subscription prefix.
pub fn validate_pattern(pattern: &str) -> Result<(), PatternError> {
    validate_filter(pattern).map_err(|error| PatternError::Filter { pattern: pattern.to_string(), error })?;
    if pattern.starts_with("$share/") || pattern.starts_with("$queue/") {
        return Err(PatternError::Shared { pattern: pattern.to_string() });
    }
    for level in pattern.split('/') {
        if level.contains("${") && level != USERNAME && level != CLIENTID {
            return Err(PatternError::PlaceholderNotWholeLevel { pattern: pattern.to_string() });
        }
    }
    Ok(())
}

/// Load-time check of an `eq` literal: a valid filter string (every topic
/// name is one), not a shared subscription.
pub fn validate_eq(literal: &str) -> Result<(), PatternError> {
    if literal.is_empty() {
        return Err(PatternError::EmptyEq);
    }
    validate_filter(literal).map_err(|error| PatternError::Filter { pattern: literal.to_string(), error })?;
    if literal.starts_with("$share/") || literal.starts_with("$queue/") {
        return Err(PatternError::Shared { pattern: literal.to_string() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::topic::{TopicFilter, TopicName};

    #[test]
    fn covers_table() {
        let yes = [
            ("#", "#"),
            ("#", "a"),
            ("#", "+"),
            ("#", "+/#"),
            ("#", "a/b/c"),
            ("#", "/"),
            ("a/#", "a"),
            ("a/#", "a/#"),
            ("a/#", "a/b"),
            ("a/#", "a/+"),
            ("a/#", "a/+/b"),
            ("a/#", "a/+/#"),
            ("a/+", "a/b"),
            ("a/+", "a/+"),
            ("a/+", "a/"),
            ("+/+", "a/+"),
            ("+/#", "a"),
            ("+/#", "+"),
            ("a/b", "a/b"),
            ("$SYS/#", "$SYS/#"),
            ("$SYS/#", "$SYS/brokers/+"),
            ("$SYS/+", "$SYS/x"),
            ("+/x", "a/x"),
            // `+/#` matches every non-`$` topic, exactly like `#`.
            ("+/#", "#"),
        ];
        for (p, f) in yes {
            assert!(covers(p, f), "{p} should cover {f}");
        }
        let no = [
            ("a/+", "a/#"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("a/b", "a/+"),
            ("a/b", "a/#"),
            ("a/b", "a"),
            ("a/b", "a/b/c"),
            ("a", "a/#"),
            ("a", "#"),
            ("+", "#"),
            ("+", "a/b"),
            ("+/+", "+/#"),
            ("#", "$SYS/#"),
            ("#", "$SYS"),
            ("+/#", "$SYS/#"),
            ("+/+", "$SYS/x"),
            ("$SYS/#", "#"),
            ("$SYS/#", "+/#"),
            ("a/#", "b/#"),
            ("a/#", "#"),
        ];
        for (p, f) in no {
            assert!(!covers(p, f), "{p} should not cover {f}");
        }
    }

    #[test]
    fn overlaps_table() {
        let yes = [
            ("#", "a"),
            ("a/#", "#"),
            ("secret/#", "#"),
            ("secret/#", "+/x"),
            ("a/+", "+/b"),
            ("a/#", "a"),
            ("a", "a/#"),
            ("$SYS/#", "$SYS/+"),
            ("$SYS/#", "$SYS"),
            ("+", "+"),
            ("a/b", "a/b"),
        ];
        for (a, b) in yes {
            assert!(overlaps(a, b), "{a} should overlap {b}");
            assert!(overlaps(b, a), "{b} should overlap {a} (symmetric)");
        }
        let no = [
            ("$SYS/#", "#"),
            ("$SYS/#", "+/#"),
            ("$SYS/x", "+/x"),
            ("a/+", "a"),
            ("a/+", "a/b/c"),
            ("a/b", "a/c"),
            ("a/+/c", "a/b/d"),
            ("a", "b/#"),
        ];
        for (a, b) in no {
            assert!(!overlaps(a, b), "{a} should not overlap {b}");
            assert!(!overlaps(b, a), "{b} should not overlap {a} (symmetric)");
        }
    }

    /// Brute force: `covers` and `overlaps` agree exactly with the core's
    /// filter matching over every filter of up to three levels and every
    /// topic of up to four levels on a small alphabet (`c` stands for "any
    /// other word", `$x` for a `$` topic, `` for an empty level).
    #[test]
    fn agrees_with_core_matching_exhaustively() {
        let mut filters: Vec<String> = Vec::new();
        let words = ["a", "$x", "+", "#"];
        let mut frontier: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        for _ in 0..3 {
            let mut next = Vec::new();
            for f in &frontier {
                if TopicFilter::new(f).is_ok() {
                    filters.push(f.clone());
                }
                if !f.ends_with('#') {
                    for w in words {
                        next.push(format!("{f}/{w}"));
                    }
                }
            }
            frontier = next;
        }
        let mut topics: Vec<TopicName> = Vec::new();
        let twords = ["a", "c", "$x", ""];
        let mut frontier: Vec<String> = twords.iter().map(|w| w.to_string()).collect();
        for _ in 0..4 {
            let mut next = Vec::new();
            for t in &frontier {
                if let Ok(n) = TopicName::new(t) {
                    topics.push(n);
                }
                for w in twords {
                    next.push(format!("{t}/{w}"));
                }
            }
            frontier = next;
        }
        let filters: Vec<TopicFilter> = filters.iter().map(|f| TopicFilter::new(f).unwrap()).collect();
        for p in &filters {
            for t in &topics {
                assert_eq!(topic_matches(p.as_str(), t.as_str()), p.matches(t), "{p} vs {t}");
            }
            for f in &filters {
                let mut all = true;
                let mut any = false;
                for t in &topics {
                    if f.matches(t) {
                        let m = p.matches(t);
                        all &= m;
                        any |= m;
                    }
                }
                assert_eq!(covers(p.as_str(), f.as_str()), all, "covers({p}, {f})");
                assert_eq!(overlaps(p.as_str(), f.as_str()), any, "overlaps({p}, {f})");
            }
        }
    }

    #[test]
    fn patterns_validate() {
        for ok in ["a/${username}/#", "${clientid}", "#", "a/+/b", "$SYS/#"] {
            assert_eq!(validate_pattern(ok), Ok(()), "{ok}");
        }
        assert!(matches!(validate_pattern("a/#/b"), Err(PatternError::Filter { .. })));
        assert!(matches!(validate_pattern("a/${u}/b"), Err(PatternError::PlaceholderNotWholeLevel { .. })));
        assert!(matches!(validate_pattern("dev-${clientid}/x"), Err(PatternError::PlaceholderNotWholeLevel { .. })));
        assert!(matches!(validate_pattern("$share/g/a"), Err(PatternError::Shared { .. })));
        assert!(matches!(validate_pattern("$queue/a"), Err(PatternError::Shared { .. })));
        assert_eq!(validate_eq(""), Err(PatternError::EmptyEq));
        assert_eq!(validate_eq("#"), Ok(()));
        assert_eq!(validate_eq("a/b"), Ok(()));
    }
}
