//! Topic names and topic filters, validated once at the edge.
//!
//! A [`TopicName`] is what a PUBLISH carries: non-empty, at most 65,535
//! bytes, no `+`/`#`, no U+0000. A [`TopicFilter`] is what a SUBSCRIBE
//! carries: wildcards only as whole levels, `#` only last. A
//! [`SubscriptionFilter`] adds the shared-subscription forms
//! `$share/<group>/<filter>` and emqttd's `$queue/<filter>`.
//!
//! Both newtypes wrap an `Arc<str>` so cloning them onto every matching
//! subscriber costs a reference count, not a copy.

use std::fmt;
use std::sync::Arc;

/// Why a topic name or filter was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is longer than 65535 bytes")]
    TooLong,
    #[error("topic contains U+0000")]
    NullChar,
    #[error("topic name contains a wildcard")]
    WildcardInName,
    #[error("wildcard does not occupy a whole level")]
    WildcardNotWholeLevel,
    #[error("'#' is not the last level")]
    HashNotLast,
    #[error("malformed shared subscription")]
    BadShare,
}

const MAX_TOPIC_LEN: usize = 65_535;

/// Whether `s` has more than `max` levels (`/`-separated parts). Levels
/// number the slashes plus one, so a string of fewer than `max` bytes is
/// answered without a scan.
pub fn more_levels_than(s: &str, max: usize) -> bool {
    s.len() >= max && s.bytes().filter(|&b| b == b'/').count() >= max
}

/// Checks a PUBLISH topic name.
pub fn validate_name(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    for b in s.bytes() {
        match b {
            0 => return Err(TopicError::NullChar),
            b'+' | b'#' => return Err(TopicError::WildcardInName),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a plain topic filter (without any `$share/` prefix).
pub fn validate_filter(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    if s.as_bytes().contains(&0) {
        return Err(TopicError::NullChar);
    }
    let mut levels = s.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" {
                return Err(TopicError::WildcardNotWholeLevel);
            }
            if levels.peek().is_some() {
                return Err(TopicError::HashNotLast);
            }
        }
        if level.contains('+') && level != "+" {
            return Err(TopicError::WildcardNotWholeLevel);
        }
    }
    Ok(())
}

/// Checks a SUBSCRIBE/UNSUBSCRIBE filter including the shared forms.
pub fn validate_subscription(s: &str) -> Result<(), TopicError> {
    SubscriptionFilter::parse(s).map(|_| ())
}

/// A validated topic name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(Arc<str>);

impl TopicName {
    pub fn new(s: &str) -> Result<TopicName, TopicError> {
        validate_name(s)?;
        Ok(TopicName(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// Topics starting with `$` are never matched by a leading wildcard.
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }

    /// Whether the topic has more than `max` levels (O(1) for topics
    /// shorter than `max` bytes, which cannot have more).
    pub fn has_more_levels_than(&self, max: usize) -> bool {
        more_levels_than(&self.0, max)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated topic filter (no share prefix).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter(Arc<str>);

impl TopicFilter {
    pub fn new(s: &str) -> Result<TopicFilter, TopicError> {
        validate_filter(s)?;
        Ok(TopicFilter(Arc::from(s)))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
    pub fn has_wildcards(&self) -> bool {
        self.0.contains(['+', '#'])
    }
    /// Does this filter match `topic`? `a/#` matches `a`; a leading
    /// wildcard never matches a `$` topic.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_dollar() && (self.0.starts_with('+') || self.0.starts_with('#')) {
            return false;
        }
        let mut f = self.levels();
        let mut t = topic.levels();
        loop {
            match (f.next(), t.next()) {
                (Some("#"), _) => return true,
                (Some("+"), Some(_)) => {}
                (Some(fl), Some(tl)) if fl == tl => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}
impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A subscription as requested: a filter, optionally in a shared group.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SubscriptionFilter {
    /// `Some(group)` for `$share/<group>/…`; `Some("$queue")` for emqttd's
    /// `$queue/…`, which behaves as one broker-wide group.
    pub share_group: Option<Arc<str>>,
    pub filter: TopicFilter,
    /// The string exactly as the client sent it (the key of the
    /// subscription in its session).
    pub raw: Arc<str>,
}

/// Group name used for emqttd's `$queue/<filter>` form.
pub const QUEUE_GROUP: &str = "$queue";

impl SubscriptionFilter {
    pub fn parse(s: &str) -> Result<SubscriptionFilter, TopicError> {
        if let Some(rest) = s.strip_prefix("$share/") {
            let (group, filter) = rest.split_once('/').ok_or(TopicError::BadShare)?;
            if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                return Err(TopicError::BadShare);
            }
            return Ok(SubscriptionFilter {
                share_group: Some(Arc::from(group)),
                filter: TopicFilter::new(filter)?,
                raw: Arc::from(s),
            });
        }
        if let Some(filter) = s.strip_prefix("$queue/") {
            return Ok(SubscriptionFilter {
                share_group: Some(Arc::from(QUEUE_GROUP)),
                filter: TopicFilter::new(filter)?,
                raw: Arc::from(s),
            });
        }
        Ok(SubscriptionFilter { share_group: None, filter: TopicFilter::new(s)?, raw: Arc::from(s) })
    }
    pub fn is_shared(&self) -> bool {
        self.share_group.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(f: &str, t: &str) -> bool {
        TopicFilter::new(f).unwrap().matches(&TopicName::new(t).unwrap())
    }

    #[test]
    fn level_counts() {
        assert!(!more_levels_than("a/b", 2));
        assert!(more_levels_than("a/b/c", 2));
        assert!(!more_levels_than("a/b/c", 3));
        assert!(more_levels_than("//", 2), "empty levels count");
        assert!(!more_levels_than("", 1));
        let deep = "a/".repeat(200);
        assert!(more_levels_than(&deep, 128) && !more_levels_than(&deep, 201));
    }

    #[test]
    fn names() {
        assert!(TopicName::new("a/b").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0b"), Err(TopicError::NullChar));
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/#", "$SYS/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(TopicFilter::new("a/#/b"), Err(TopicError::HashNotLast));
        assert_eq!(TopicFilter::new("a#"), Err(TopicError::WildcardNotWholeLevel));
        assert_eq!(TopicFilter::new("a/b+"), Err(TopicError::WildcardNotWholeLevel));
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    }

    #[test]
    fn matching() {
        assert!(m("sport/#", "sport"));
        assert!(m("sport/#", "sport/tennis/player1"));
        assert!(m("sport/+", "sport/"));
        assert!(!m("sport/+", "sport"));
        assert!(m("+/+", "/finance"));
        assert!(m("/+", "/finance"));
        assert!(!m("+", "/finance"));
        assert!(m("#", "a/b/c"));
        assert!(!m("#", "$SYS/x"));
        assert!(!m("+/x", "$SYS/x"));
        assert!(m("$SYS/#", "$SYS/x"));
        assert!(m("a/b", "a/b"));
        assert!(!m("a/b", "a/b/c"));
    }

    #[test]
    fn shared() {
        let s = SubscriptionFilter::parse("$share/g/a/+").unwrap();
        assert_eq!(s.share_group.as_deref(), Some("g"));
        assert_eq!(s.filter.as_str(), "a/+");
        let q = SubscriptionFilter::parse("$queue/a").unwrap();
        assert_eq!(q.share_group.as_deref(), Some(QUEUE_GROUP));
        assert!(SubscriptionFilter::parse("$share/g").is_err());
        assert!(SubscriptionFilter::parse("$share//a").is_err());
        assert!(SubscriptionFilter::parse("$share/g+/a").is_err());
    }
}
