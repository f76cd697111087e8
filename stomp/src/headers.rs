//! STOMP headers ⇄ MQTT 5 message properties.
//!
//! SEND → message: `content-type` becomes the Content Type, `reply-to` the
//! Response Topic (a destination, so behind the mountpoint, and a valid
//! topic name), `correlation-id` the Correlation Data (its UTF-8 bytes);
//! every other header that is not one STOMP defines for SEND becomes a
//! User Property, in frame order. A repeated header: the first wins, as
//! STOMP reads it, so only the first of each name travels. The listener's
//! `max_user_properties` and `max_user_property_bytes` bound what is
//! carried, as for an MQTT 5 PUBLISH; more is refused.
//!
//! Message → MESSAGE: the headers the broker sets come first
//! (`destination`, `message-id`, `subscription`, `ack`), then
//! `content-type`, `reply-to` and `correlation-id` from the properties,
//! then the User Properties in order (repeats kept; a STOMP client reads
//! the first). A User Property never overrides a header already set, and
//! `content-length` is always the broker's. STOMP 1.0 cannot escape: a
//! property whose name holds `:` or an end of line is left out there.

use portcullis_core::codec::Properties;
use portcullis_core::topic::TopicName;

use crate::frame::{Frame, Version};

/// Headers STOMP defines on SEND (or the broker sets on MESSAGE): never
/// user properties.
const STOMP_HEADERS: [&str; 11] = [
    "destination",
    "content-length",
    "content-type",
    "receipt",
    "transaction",
    "reply-to",
    "correlation-id",
    "message-id",
    "subscription",
    "ack",
    "receipt-id",
];

/// Why a SEND's headers cannot travel as MQTT 5 properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    TooMany,
    TooLarge,
    Nul,
    BadReplyTo,
}

impl Refused {
    pub(crate) fn message(self) -> &'static str {
        match self {
            Refused::TooMany => "too many headers to carry as MQTT user properties (max_user_properties)",
            Refused::TooLarge => "headers too large to carry as MQTT user properties (max_user_property_bytes)",
            Refused::Nul => "a header holds a NUL character, which MQTT strings cannot carry",
            Refused::BadReplyTo => "reply-to is not a valid MQTT topic name",
        }
    }
}

/// The message properties of a SEND (see the module docs).
pub(crate) fn to_properties(
    f: &Frame,
    mountpoint: &str,
    max_count: u32,
    max_bytes: u32,
) -> Result<Properties, Refused> {
    let mut p = Properties { content_type: f.header("content-type").map(str::to_string), ..Properties::default() };
    if let Some(dest) = f.header("reply-to") {
        let topic = format!("{mountpoint}{dest}");
        TopicName::new(&topic).map_err(|_| Refused::BadReplyTo)?;
        p.response_topic = Some(topic);
    }
    if let Some(c) = f.header("correlation-id") {
        p.correlation_data = Some(bytes::Bytes::copy_from_slice(c.as_bytes()));
    }
    let (mut count, mut size) = (0u64, 0u64);
    for (i, (name, value)) in f.headers.iter().enumerate() {
        if STOMP_HEADERS.contains(&name.as_str()) || f.headers[..i].iter().any(|(n, _)| n == name) {
            continue;
        }
        count += 1;
        size += (name.len() + value.len()) as u64;
        if count > u64::from(max_count) {
            return Err(Refused::TooMany);
        }
        if size > u64::from(max_bytes) {
            return Err(Refused::TooLarge);
        }
        p.user_properties.push((name.clone(), value.clone()));
    }
    let strings = p.user_properties.iter().flat_map(|(n, v)| [n, v]).chain(p.content_type.iter());
    if strings.chain(p.response_topic.iter()).any(|s| s.contains('\0')) {
        return Err(Refused::Nul);
    }
    Ok(p)
}

/// Adds a message's properties to a MESSAGE frame that already holds the
/// broker's headers (see the module docs); `content-length` comes after.
pub(crate) fn add_properties(frame: &mut Frame, p: &Properties, mountpoint: &str, version: Version) {
    if let Some(ct) = &p.content_type {
        frame.headers.push(("content-type".to_string(), ct.clone()));
    }
    if let Some(t) = &p.response_topic {
        let dest = t.strip_prefix(mountpoint).unwrap_or(t);
        frame.headers.push(("reply-to".to_string(), dest.to_string()));
    }
    if let Some(c) = p.correlation_data.as_ref().and_then(|c| std::str::from_utf8(c).ok()) {
        frame.headers.push(("correlation-id".to_string(), c.to_string()));
    }
    let ours = frame.headers.len();
    for (name, value) in &p.user_properties {
        let taken = frame.headers[..ours].iter().any(|(n, _)| n == name) || name == "content-length";
        let unsayable = version == Version::V10 && (name.contains([':', '\n', '\r']) || value.contains(['\n', '\r']));
        if taken || unsayable || name.is_empty() {
            continue;
        }
        frame.headers.push((name.clone(), value.clone()));
    }
}
