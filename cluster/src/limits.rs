//! What fits through NATS, checked before a message or subscription is sent,
//! each refusal a [`LimitError`] with the reason (the later wiring turns it
//! into a DISCONNECT, SUBACK or PUBACK reason code).
//!
//! NATS' limits (nats-server `server/const.go` and `server/parser.go`):
//!
//! - **Control line**: a client's protocol line (the arguments after `PUB ` /
//!   `HPUB ` / `SUB `, up to the `\r\n`) may be at most `max_control_line`
//!   bytes, 4096 by default (`MAX_CONTROL_LINE_SIZE`); a longer one closes
//!   the connection (`overMaxControlLineLimit`). Routes between servers get
//!   16 times that, which subjects that fit a client line always fit.
//! - **Payload**: `max_payload`, 1 MiB by default (`MAX_PAYLOAD_SIZE`), counts
//!   the headers and the body of an `HPUB` together; the client refuses
//!   larger messages before sending.
//!
//! The budget for a subject, computed as the server counts:
//!
//! ```text
//! HPUB <subject> <reply> <header bytes> <total bytes>\r\n
//!      └──────────── counted against max_control_line ─┘
//! subject + 1 + REPLY_ALLOWANCE + 1 + digits(max_payload) + 1 + digits(max_payload)
//! ```
//!
//! A reply subject is reserved even for a plain publish, so that any topic
//! accepted here can also travel as a request (session takeover, durable
//! mode). With the defaults a subject may be 4,015 bytes.
//! Subscriptions: `SUB <subject> <queue> <sid>` with a queue name of at most
//! 65 bytes ([`crate::subject::queue_group`]) and a sid of up to 20 digits.

use std::fmt;

use crate::subject::{topic_subject_len, NatsSubscription, Prefix};
use portcullis_core::topic::TopicName;

/// nats-server's default `max_control_line`.
pub const DEFAULT_MAX_CONTROL_LINE: usize = 4096;
/// nats-server's default `max_payload` (1 MiB).
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;
/// Bytes reserved for a reply subject: async-nats' request inboxes are
/// `_INBOX.` + a 22-character NUID + `.` + a token of up to 22 characters
/// (52 bytes); 64 leaves room for a custom inbox prefix.
pub const REPLY_ALLOWANCE: usize = 64;
/// Longest queue group name [`crate::subject::queue_group`] makes.
pub const QUEUE_MAX: usize = 65;
/// Digits of the largest subscription id (`u64::MAX`).
const SID_DIGITS: usize = 20;

/// Which NATS limit a message or subscription exceeds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// The topic's subject does not fit in a PUB line.
    #[error(
        "topic is too long for the cluster: its NATS subject would be {subject_len} bytes, at most {max} fit \
         NATS' control line (max_control_line {max_control_line})"
    )]
    TopicTooLong { subject_len: usize, max: usize, max_control_line: usize },
    /// A subject of the filter does not fit in a SUB line.
    #[error(
        "topic filter is too long for the cluster: its SUB line would be {line_len} bytes, NATS allows \
         {max_control_line} (max_control_line)"
    )]
    FilterTooLong { line_len: usize, max_control_line: usize },
    /// Headers and payload together exceed `max_payload`.
    #[error("message is too large for the cluster: {size} bytes with headers, NATS max_payload is {max_payload}")]
    PayloadTooLarge { size: usize, max_payload: usize },
    /// The broker's maximum packet size lets through messages NATS would
    /// refuse.
    #[error(
        "MQTT maximum packet size {max_packet_size} is larger than NATS max_payload {max_payload}: lower it to at \
         most {max_payload}, or raise max_payload on every NATS server and in [cluster]"
    )]
    PacketSizeAboveMaxPayload { max_packet_size: u64, max_payload: usize },
}

/// The two NATS limits, as the servers are configured.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_control_line: usize,
    pub max_payload: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { max_control_line: DEFAULT_MAX_CONTROL_LINE, max_payload: DEFAULT_MAX_PAYLOAD }
    }
}

impl fmt::Debug for Limits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limits(max_control_line {}, max_payload {})", self.max_control_line, self.max_payload)
    }
}

fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |d| d as usize + 1)
}

impl Limits {
    /// Longest subject a message may have (see the module doc).
    pub fn max_subject_len(&self) -> usize {
        let size = digits(self.max_payload);
        self.max_control_line.saturating_sub(1 + REPLY_ALLOWANCE + 1 + size + 1 + size)
    }

    /// Whether a PUBLISH to `topic` can cross the cluster; counted without
    /// building the subject.
    pub fn check_topic(&self, prefix: &Prefix, topic: &TopicName) -> Result<(), LimitError> {
        self.check_subject_len(topic_subject_len(prefix, topic))
    }

    /// Whether a subject of `subject_len` bytes fits a PUB line.
    pub fn check_subject_len(&self, subject_len: usize) -> Result<(), LimitError> {
        let max = self.max_subject_len();
        if subject_len > max {
            return Err(LimitError::TopicTooLong { subject_len, max, max_control_line: self.max_control_line });
        }
        Ok(())
    }

    /// Whether each SUB line of a subscription fits: `subject queue sid`.
    pub fn check_subscription(&self, sub: &NatsSubscription) -> Result<(), LimitError> {
        let queue = sub.queue.as_ref().map_or(0, |q| 1 + q.len());
        for s in &sub.subjects {
            let line_len = s.len() + queue + 1 + SID_DIGITS;
            if line_len > self.max_control_line {
                return Err(LimitError::FilterTooLong { line_len, max_control_line: self.max_control_line });
            }
        }
        Ok(())
    }

    /// Whether a message of `header_len` header bytes and `payload_len`
    /// body bytes fits `max_payload` (NATS counts both).
    pub fn check_payload(&self, header_len: usize, payload_len: usize) -> Result<(), LimitError> {
        let size = header_len.saturating_add(payload_len);
        if size > self.max_payload {
            return Err(LimitError::PayloadTooLarge { size, max_payload: self.max_payload });
        }
        Ok(())
    }

    /// Whether the broker's MQTT maximum packet size keeps every PUBLISH
    /// within `max_payload` (issue 19: "no larger than NATS max_payload").
    /// A packet's payload is smaller than the packet, so this is sufficient
    /// for the body; headers are checked per message by [`Self::check_payload`].
    pub fn check_max_packet_size(&self, max_packet_size: u64) -> Result<(), LimitError> {
        if max_packet_size > self.max_payload as u64 {
            return Err(LimitError::PacketSizeAboveMaxPayload { max_packet_size, max_payload: self.max_payload });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::{subscription, topic_subject};
    use portcullis_core::topic::SubscriptionFilter;

    #[test]
    fn the_default_budget_is_counted_as_the_server_counts() {
        // 4096 - (1 + 64 + 1 + 7 + 1 + 7): 1048576 has 7 digits.
        assert_eq!(Limits::default().max_subject_len(), 4015);
        let l = Limits { max_control_line: 1024, max_payload: 64 * 1024 * 1024 };
        assert_eq!(l.max_subject_len(), 1024 - (1 + 64 + 1 + 8 + 1 + 8));
        assert_eq!(Limits { max_control_line: 10, max_payload: 1 }.max_subject_len(), 0);
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
    }

    #[test]
    fn topics_at_the_limit_pass_and_one_byte_more_does_not() {
        let p = Prefix::default(); // "portcullis.m." = 13 bytes, then the level
        let l = Limits::default();
        let fits = TopicName::new(&"a".repeat(4015 - 13)).unwrap();
        assert_eq!(topic_subject(&p, &fits).len(), 4015);
        assert_eq!(l.check_topic(&p, &fits), Ok(()));
        let over = TopicName::new(&"a".repeat(4015 - 12)).unwrap();
        let e = l.check_topic(&p, &over).unwrap_err();
        assert_eq!(e, LimitError::TopicTooLong { subject_len: 4016, max: 4015, max_control_line: 4096 });
        assert!(e.to_string().contains("at most 4015 fit NATS' control line"), "{e}");
        // Escaped bytes count three times: 1,400 'é' (2 bytes each) are 8,400.
        let wide = TopicName::new(&"\u{e9}".repeat(1400)).unwrap();
        assert!(matches!(l.check_topic(&p, &wide), Err(LimitError::TopicTooLong { subject_len: 8413, .. })));
    }

    #[test]
    fn subscriptions_count_the_queue_and_sid() {
        let p = Prefix::default();
        let l = Limits::default();
        let sub = |s: &str| subscription(&p, &SubscriptionFilter::parse(s).unwrap());
        assert_eq!(l.check_subscription(&sub("a/#")), Ok(()));
        // "portcullis.m." + level + " " + sid(20) = 4096 exactly.
        let level = "a".repeat(4096 - 13 - 21);
        assert_eq!(l.check_subscription(&sub(&level)), Ok(()));
        let e = l.check_subscription(&sub(&format!("{level}a"))).unwrap_err();
        assert_eq!(e, LimitError::FilterTooLong { line_len: 4097, max_control_line: 4096 });
        // The shared form also carries " <queue>" ("g." + 32 hex digits).
        let e = l.check_subscription(&sub(&format!("$share/g/{level}"))).unwrap_err();
        assert_eq!(e, LimitError::FilterTooLong { line_len: 4096 + 35, max_control_line: 4096 });
    }

    #[test]
    fn payload_counts_headers_and_body() {
        let l = Limits::default();
        assert_eq!(l.check_payload(0, 1024 * 1024), Ok(()));
        assert_eq!(l.check_payload(100, 1024 * 1024 - 100), Ok(()));
        let e = l.check_payload(100, 1024 * 1024 - 99).unwrap_err();
        assert_eq!(e, LimitError::PayloadTooLarge { size: 1024 * 1024 + 1, max_payload: 1024 * 1024 });
        assert!(l.check_payload(usize::MAX, 1).is_err(), "no overflow");
        assert_eq!(l.check_max_packet_size(1024 * 1024), Ok(()));
        let e = l.check_max_packet_size(268_435_455).unwrap_err();
        assert!(e.to_string().starts_with("MQTT maximum packet size 268435455 is larger than NATS max_payload"), "{e}");
    }
}
