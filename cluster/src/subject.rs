//! MQTT topics and filters as NATS subjects, and back.
//!
//! # The encoding
//!
//! A topic `l1/l2/…/ln` becomes `<prefix>.<root>.<t1>.<t2>.….<tn>`, one NATS
//! token per MQTT level:
//!
//! - bytes `A-Z a-z 0-9 _ -` stay as they are;
//! - every other byte of a level (including `=`, `.`, `*`, `>`, space, `$`
//!   and each byte of a non-ASCII UTF-8 character) becomes `=` and two
//!   UPPERCASE hex digits (`a.b` → `a=2Eb`, `é` → `=C3=A9`);
//! - an empty level becomes `=` alone (a non-empty level never encodes to a
//!   lone `=`, so this cannot be confused).
//!
//! The encoding is canonical: decoding accepts only what encoding produces
//! (uppercase hex, no escaped byte that could have stayed as it was), so a
//! topic has exactly one subject and a subject at most one topic. Every
//! token is non-empty and drawn from `[A-Za-z0-9_=-]`, so it is a valid NATS
//! token (nats-server `server/sublist.go` `isValidSubject`: tokens are
//! non-empty, `.`-separated, free of whitespace; `*` and `>` alone are
//! wildcards) and never a wildcard.
//!
//! # The roots
//!
//! Topics whose first level starts with `$` go under [`DOLLAR_ROOT`] (`s`),
//! all others under [`NORMAL_ROOT`] (`m`). A filter whose first level is a
//! wildcard maps under `m` only, so it can never match a `$` topic
//! (MQTT-4.7.2-1), just as `TopicFilter::matches` says; a filter whose first
//! level is a literal `$…` maps under `s`. The prefix (one or more tokens,
//! `portcullis` by default) lets several clusters share one NATS.
//!
//! # Filters
//!
//! `+` → `*`; a trailing `#` after at least one level becomes two subjects,
//! the parent and the parent followed by `>` (MQTT's `x/#` matches `x`
//! itself; NATS' `x.>` needs at least one more token). A bare `#` is
//! `<prefix>.m.>` alone: every topic has at least one level, so `>` (one or
//! more tokens) covers them all.
//!
//! # Shared subscriptions
//!
//! `$share/g/f` (and emqttd's `$queue/f`, group `$queue`) subscribe to the
//! subjects of `f` in a NATS queue group named by [`queue_group`]: a readable
//! head (the group, encoded as a level, cut to 32 bytes) and a 128-bit
//! SHA-256 digest of the group and the filter. NATS groups queue members per
//! subscription subject, but a server forwarding a message to a route names
//! the queue groups it chose by *name* only (nats-server `server/client.go`
//! `processMsgResults`, the `qf` queue filter), so one group name on two
//! overlapping subjects (`$share/g/a/b` and `$share/g/a/+`) could deliver
//! twice. The digest gives every (group, filter) pair its own name, and the
//! bounded length keeps routed message lines (which list queue names) short.

use std::fmt;

use portcullis_core::topic::{SubscriptionFilter, TopicError, TopicFilter, TopicName};
use sha2::{Digest, Sha256};

/// Root token of topics that do not start with `$`.
pub const NORMAL_ROOT: &str = "m";
/// Root token of topics whose first level starts with `$` (`$SYS/…`).
pub const DOLLAR_ROOT: &str = "s";
/// Prefix used when `[cluster] subject_prefix` is not set.
pub const DEFAULT_PREFIX: &str = "portcullis";
/// Length of the readable head of a queue group name.
const QUEUE_HEAD_MAX: usize = 32;

/// Whether `b` is kept as it is in a subject token.
fn is_kept(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The subject prefix: one or more `.`-separated tokens of
/// `[A-Za-z0-9_-]`, validated once.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Prefix(String);

/// Why a subject prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must not be empty")]
    Empty,
    #[error("token {0} is empty (no leading, trailing or doubled '.')")]
    EmptyToken(usize),
    #[error("{0:?} is not allowed: tokens are made of A-Z a-z 0-9 _ -")]
    BadChar(char),
    #[error("is {0} bytes; at most 64")]
    TooLong(usize),
}

impl Prefix {
    /// Longest prefix accepted: it is repeated in every subject, so it eats
    /// into the control-line budget of every PUBLISH.
    pub const MAX_LEN: usize = 64;

    pub fn new(s: &str) -> Result<Prefix, PrefixError> {
        if s.is_empty() {
            return Err(PrefixError::Empty);
        }
        if s.len() > Self::MAX_LEN {
            return Err(PrefixError::TooLong(s.len()));
        }
        for (i, token) in s.split('.').enumerate() {
            if token.is_empty() {
                return Err(PrefixError::EmptyToken(i + 1));
            }
            if let Some(c) = token.chars().find(|&c| !c.is_ascii() || !is_kept(c as u8)) {
                return Err(PrefixError::BadChar(c));
            }
        }
        Ok(Prefix(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The prefix of the durable mode's subjects, `<prefix>.d`: a QoS 1/2
    /// message in that mode is published on `<prefix>.d.<root>.<levels>`,
    /// which the `<prefix>_messages` stream captures and the plain
    /// subscriptions (`<prefix>.m…`) do not see.
    pub fn durable(&self) -> Prefix {
        Prefix(format!("{}.{DURABLE_TOKEN}", self.0))
    }
}

/// The token after the prefix of the durable mode's subjects
/// ([`Prefix::durable`]).
pub const DURABLE_TOKEN: &str = "d";

impl Default for Prefix {
    fn default() -> Prefix {
        Prefix(DEFAULT_PREFIX.to_string())
    }
}

impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}
impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Appends the token of one MQTT level.
pub fn encode_level(level: &str, out: &mut String) {
    if level.is_empty() {
        out.push('=');
        return;
    }
    for &b in level.as_bytes() {
        if is_kept(b) {
            out.push(b as char);
        } else {
            out.push('=');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xF)] as char);
        }
    }
}

/// Bytes the token of `level` takes, without building it.
fn level_len(level: &str) -> usize {
    if level.is_empty() {
        return 1;
    }
    level.bytes().map(|b| if is_kept(b) { 1 } else { 3 }).sum()
}

fn root_of(first_level: &str) -> &'static str {
    if first_level.starts_with('$') {
        DOLLAR_ROOT
    } else {
        NORMAL_ROOT
    }
}

/// The subject a PUBLISH to `topic` is sent on.
pub fn topic_subject(prefix: &Prefix, topic: &TopicName) -> String {
    let mut out = String::with_capacity(topic_subject_len(prefix, topic));
    out.push_str(prefix.as_str());
    out.push('.');
    out.push_str(root_of(topic.levels().next().unwrap_or("")));
    for level in topic.levels() {
        out.push('.');
        encode_level(level, &mut out);
    }
    out
}

/// Length in bytes of [`topic_subject`], computed without allocating (so an
/// oversized topic can be refused before its subject is built).
pub fn topic_subject_len(prefix: &Prefix, topic: &TopicName) -> usize {
    // prefix + '.' + one-byte root, then '.' + token per level.
    prefix.as_str().len() + 2 + topic.levels().map(|l| 1 + level_len(l)).sum::<usize>()
}

/// Why a subject is not the encoding of a topic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("subject is not under the prefix")]
    NotUnderPrefix,
    #[error("unknown root token (expected m or s)")]
    UnknownRoot,
    #[error("subject has no topic level")]
    NoLevel,
    #[error("empty token")]
    EmptyToken,
    #[error("byte {0:#04x} cannot appear in an encoded level")]
    BadByte(u8),
    #[error("'=' is not followed by two uppercase hex digits")]
    BadEscape,
    #[error("escaped byte {0:#04x} should have been written as itself")]
    NotCanonical(u8),
    #[error("decoded topic is not UTF-8")]
    NotUtf8,
    #[error("a '$' topic under the m root, or a plain topic under the s root")]
    WrongRoot,
    #[error("decoded topic is not a valid topic name: {0}")]
    Topic(#[from] TopicError),
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Appends the bytes of one level decoded from `token`.
fn decode_token(token: &str, out: &mut Vec<u8>) -> Result<(), DecodeError> {
    match token.as_bytes() {
        [] => return Err(DecodeError::EmptyToken),
        [b'='] => return Ok(()),
        _ => {}
    }
    let mut bytes = token.bytes();
    while let Some(b) = bytes.next() {
        if is_kept(b) {
            out.push(b);
        } else if b == b'=' {
            let hi = bytes.next().and_then(hex_value).ok_or(DecodeError::BadEscape)?;
            let lo = bytes.next().and_then(hex_value).ok_or(DecodeError::BadEscape)?;
            let v = hi << 4 | lo;
            if is_kept(v) {
                return Err(DecodeError::NotCanonical(v));
            }
            out.push(v);
        } else {
            return Err(DecodeError::BadByte(b));
        }
    }
    Ok(())
}

/// The topic that `subject` encodes; any subject that [`topic_subject`]
/// could not have produced under `prefix` is refused (never a panic).
pub fn decode_subject(prefix: &Prefix, subject: &str) -> Result<TopicName, DecodeError> {
    let rest =
        subject.strip_prefix(prefix.as_str()).and_then(|r| r.strip_prefix('.')).ok_or(DecodeError::NotUnderPrefix)?;
    let (root, levels) = rest.split_once('.').ok_or(DecodeError::NoLevel)?;
    let dollar = match root {
        NORMAL_ROOT => false,
        DOLLAR_ROOT => true,
        _ => return Err(DecodeError::UnknownRoot),
    };
    let mut topic = Vec::with_capacity(levels.len());
    for (i, token) in levels.split('.').enumerate() {
        if i > 0 {
            topic.push(b'/');
        }
        decode_token(token, &mut topic)?;
    }
    if (topic.first() == Some(&b'$')) != dollar {
        return Err(DecodeError::WrongRoot);
    }
    let topic = String::from_utf8(topic).map_err(|_| DecodeError::NotUtf8)?;
    Ok(TopicName::new(&topic)?)
}

/// The subjects a filter subscribes to: one, or two for `x/#` (the parent
/// and everything below it).
pub fn filter_subjects(prefix: &Prefix, filter: &TopicFilter) -> Vec<String> {
    let mut levels = filter.levels().peekable();
    let first = levels.peek().copied().unwrap_or("");
    let mut base = String::with_capacity(filter.as_str().len() * 3 + prefix.as_str().len() + 2);
    base.push_str(prefix.as_str());
    base.push('.');
    // `+` and `#` do not start with `$`: a wildcard-first filter is under m.
    base.push_str(root_of(first));
    let mut has_level = false;
    for level in levels {
        match level {
            "#" if !has_level => return vec![base + ".>"],
            "#" => {
                let below = format!("{base}.>");
                return vec![base, below];
            }
            "+" => base.push_str(".*"),
            literal => {
                base.push('.');
                encode_level(literal, &mut base);
            }
        }
        has_level = true;
    }
    vec![base]
}

/// What a node subscribes to NATS for one (possibly shared) MQTT
/// subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsSubscription {
    /// One subject, or two for a filter ending in `#` below a level.
    pub subjects: Vec<String>,
    /// The queue group of a `$share/…` or `$queue/…` subscription.
    pub queue: Option<String>,
}

/// Subjects (and queue group, when shared) of a SUBSCRIBE filter.
pub fn subscription(prefix: &Prefix, sub: &SubscriptionFilter) -> NatsSubscription {
    NatsSubscription {
        subjects: filter_subjects(prefix, &sub.filter),
        queue: sub.share_group.as_deref().map(|g| queue_group(g, &sub.filter)),
    }
}

/// The NATS queue group of shared group `group` on `filter`:
/// `<group encoded as a level, cut to 32 bytes>.<32 hex digits>`, the hex
/// being the first 128 bits of SHA-256 over the group's length (8 bytes,
/// big-endian), the group and the filter. Every node computes the same name;
/// different (group, filter) pairs get different names. At most 65 bytes,
/// made of `[A-Za-z0-9_=.-]` (no whitespace, as the protocol requires).
pub fn queue_group(group: &str, filter: &TopicFilter) -> String {
    let mut head = String::new();
    encode_level(group, &mut head);
    head.truncate(QUEUE_HEAD_MAX); // ASCII only: any cut is a char boundary
    let mut h = Sha256::new();
    h.update((group.len() as u64).to_be_bytes());
    h.update(group.as_bytes());
    h.update(filter.as_str().as_bytes());
    let digest = h.finalize();
    let mut out = head;
    out.push('.');
    for b in &digest[..16] {
        out.push(HEX[usize::from(b >> 4)] as char);
        out.push(HEX[usize::from(b & 0xF)] as char);
    }
    out
}

#[cfg(test)]
mod tests;
