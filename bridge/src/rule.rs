//! Topic rules: Mosquitto's `topic` line, and the mapping of topics
//! between the local broker and the remote one.
//!
//! `<pattern> [in|out|both] [qos] [local_prefix] [remote_prefix]`: the
//! local topic is `local_prefix + pattern`, the remote topic
//! `remote_prefix + pattern`. `out` subscribes locally to
//! `local_prefix + pattern` and publishes each message on the remote with
//! `local_prefix` replaced by `remote_prefix`; `in` the other way round;
//! `both` does both. The QoS (default 0) caps the messages' QoS, as the
//! subscription's QoS does. `""` writes an empty prefix or pattern; with
//! an empty pattern the prefix is a whole topic name (a rename).

use portcullis_core::codec::QoS;
use portcullis_core::topic::{TopicFilter, TopicName};

/// Which way messages go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Local → remote.
    Out,
    /// Remote → local.
    In,
    /// Both ways.
    Both,
}

impl Direction {
    pub fn outgoing(self) -> bool {
        matches!(self, Direction::Out | Direction::Both)
    }
    pub fn incoming(self) -> bool {
        matches!(self, Direction::In | Direction::Both)
    }
}

/// One parsed topic rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRule {
    pub pattern: String,
    pub direction: Direction,
    pub qos: QoS,
    pub local_prefix: String,
    pub remote_prefix: String,
    /// `local_prefix + pattern`, validated.
    local: TopicFilter,
    /// `remote_prefix + pattern`, validated.
    remote: TopicFilter,
}

fn token(t: &str) -> &str {
    if t == "\"\"" {
        ""
    } else {
        t
    }
}

impl TopicRule {
    /// Parses a rule; the error says what is wrong.
    pub fn parse(line: &str) -> Result<TopicRule, String> {
        let words: Vec<&str> = line.split_whitespace().map(token).collect();
        if words.is_empty() || words.len() > 5 {
            return Err(format!("{line:?}: expected \"<pattern> [in|out|both] [qos] [local_prefix] [remote_prefix]\""));
        }
        let pattern = words[0].to_string();
        let direction = match words.get(1).copied() {
            None | Some("out") => Direction::Out,
            Some("in") => Direction::In,
            Some("both") => Direction::Both,
            Some(d) => return Err(format!("{line:?}: direction {d:?} is not in, out or both")),
        };
        let qos = match words.get(2).copied() {
            None => QoS::AtMostOnce,
            Some(q) => q
                .parse::<u8>()
                .ok()
                .and_then(QoS::from_u8)
                .ok_or_else(|| format!("{line:?}: QoS {q:?} is not 0, 1 or 2"))?,
        };
        let local_prefix = words.get(3).copied().unwrap_or("").to_string();
        let remote_prefix = words.get(4).copied().unwrap_or("").to_string();
        for (what, p) in [("local prefix", &local_prefix), ("remote prefix", &remote_prefix)] {
            if p.contains(['+', '#']) {
                return Err(format!("{line:?}: the {what} {p:?} holds a wildcard"));
            }
        }
        if pattern.is_empty() {
            for (what, p) in [("local prefix", &local_prefix), ("remote prefix", &remote_prefix)] {
                if TopicName::new(p).is_err() {
                    return Err(format!("{line:?}: with an empty pattern the {what} must be a topic name"));
                }
            }
        }
        let filter = |prefix: &str| {
            let s = format!("{prefix}{pattern}");
            TopicFilter::new(&s).map_err(|e| format!("{line:?}: {s:?} is not a topic filter: {e}"))
        };
        let local = filter(&local_prefix)?;
        let remote = filter(&remote_prefix)?;
        Ok(TopicRule { pattern, direction, qos, local_prefix, remote_prefix, local, remote })
    }

    /// The filter subscribed to on the local broker (`out`).
    pub fn local_filter(&self) -> &str {
        self.local.as_str()
    }

    /// The filter subscribed to on the remote (`in`).
    pub fn remote_filter(&self) -> &str {
        self.remote.as_str()
    }

    /// The remote topic for a local one, if this rule carries it out.
    pub fn to_remote(&self, local: &TopicName) -> Option<String> {
        if !self.direction.outgoing() || !self.local.matches(local) {
            return None;
        }
        let rest = local.as_str().strip_prefix(&self.local_prefix)?;
        Some(format!("{}{rest}", self.remote_prefix))
    }

    /// The local topic for a remote one, if this rule carries it in.
    pub fn to_local(&self, remote: &TopicName) -> Option<String> {
        if !self.direction.incoming() || !self.remote.matches(remote) {
            return None;
        }
        let rest = remote.as_str().strip_prefix(&self.remote_prefix)?;
        Some(format!("{}{rest}", self.local_prefix))
    }
}
