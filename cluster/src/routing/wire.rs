//! A message as it travels between nodes.
//!
//! * **Subject**: the topic's subject ([`crate::subject::topic_subject`]).
//! * **Headers**: who sent it, for the duplicate window
//!   ([`super::dedup`]): `Pc-Origin` (the origin's node name), `Pc-Run`
//!   (a number new at every start of that node) and `Pc-Seq` (1, 2, … per
//!   run), and `Pc-Format: mqtt5` for what follows.
//! * **Body**: the message as an MQTT 5 PUBLISH packet, written by core's
//!   codec: QoS, retain flag, topic, payload and every property a broker
//!   forwards (payload format, content type, response topic, correlation
//!   data, user properties in order) byte for byte, and the message expiry
//!   as the seconds left when it was sent. The receiving node reads it with
//!   the same strict decoder as a client's PUBLISH (bounded by its packet
//!   size and user-property limits), so a peer on NATS cannot hand core
//!   anything a client could not. The packet id is a placeholder (1) for
//!   QoS 1 and 2: QoS applies per hop, and the hop between nodes is at most
//!   once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::{Bytes, BytesMut};
use portcullis_core::codec::{self, DecodeLimits, Packet, ProtocolVersion, Publish, QoS};
use portcullis_core::message::Message;
use portcullis_core::topic::TopicName;

pub const ORIGIN: &str = "Pc-Origin";
pub const RUN: &str = "Pc-Run";
pub const SEQ: &str = "Pc-Seq";
pub const FORMAT: &str = "Pc-Format";
pub const FORMAT_MQTT5: &str = "mqtt5";

/// Longest origin name accepted (a node name is at most 255 bytes).
const MAX_ORIGIN_LEN: usize = 255;

/// Who sent an inbound message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub node: String,
    pub run: u64,
    pub seq: u64,
}

/// The headers of a message this node sends.
pub fn headers(node: &str, run: u64, seq: u64) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(ORIGIN, node);
    h.insert(RUN, run.to_string().as_str());
    h.insert(SEQ, seq.to_string().as_str());
    h.insert(FORMAT, FORMAT_MQTT5);
    h
}

/// Bytes the headers take on the wire (`NATS/1.0\r\n`, `Name: value\r\n`
/// each, a closing `\r\n`), for the `max_payload` check.
pub fn headers_len(h: &HeaderMap) -> usize {
    let mut n = "NATS/1.0\r\n".len() + 2;
    for (name, values) in h.iter() {
        for v in values {
            n += AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2;
        }
    }
    n
}

/// The body: `msg` as an MQTT 5 PUBLISH, its expiry counted from `now`.
pub fn body(msg: &Message, now: Instant) -> Result<Bytes, codec::EncodeError> {
    let mut properties = msg.properties().clone();
    properties.message_expiry_interval = msg.remaining_expiry(now);
    let packet = Packet::Publish(Publish {
        dup: false,
        qos: msg.qos,
        retain: msg.retain,
        topic: msg.topic.as_str().to_string(),
        packet_id: (msg.qos != QoS::AtMostOnce).then_some(1),
        payload: msg.payload.clone(),
        properties,
    });
    let mut buf = BytesMut::with_capacity(codec::encoded_len(&packet, ProtocolVersion::V5));
    codec::encode(&packet, ProtocolVersion::V5, &mut buf)?;
    Ok(buf.freeze())
}

/// Why an inbound message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    #[error("header {0} missing or invalid")]
    Header(&'static str),
    #[error("body is not one MQTT 5 PUBLISH: {0}")]
    Body(String),
    #[error("the PUBLISH's topic is not the subject's")]
    TopicMismatch,
}

/// Reads the origin headers.
pub fn origin(headers: Option<&HeaderMap>) -> Result<Origin, Malformed> {
    let h = headers.ok_or(Malformed::Header(ORIGIN))?;
    if h.get(FORMAT).map(|v| v.as_str()) != Some(FORMAT_MQTT5) {
        return Err(Malformed::Header(FORMAT));
    }
    let node = h.get(ORIGIN).map(|v| v.as_str()).filter(|n| !n.is_empty() && n.len() <= MAX_ORIGIN_LEN);
    let node = node.ok_or(Malformed::Header(ORIGIN))?.to_string();
    let num = |key: &'static str| h.get(key).and_then(|v| v.as_str().parse::<u64>().ok()).ok_or(Malformed::Header(key));
    Ok(Origin { node, run: num(RUN)?, seq: num(SEQ)? })
}

/// The message of an inbound body sent on the subject of `topic`.
pub fn message(
    payload: &Bytes,
    topic: &TopicName,
    limits: DecodeLimits,
    now: Instant,
) -> Result<Arc<Message>, Malformed> {
    let mut buf = BytesMut::from(&payload[..]);
    let packet =
        codec::decode(&mut buf, Some(ProtocolVersion::V5), limits).map_err(|e| Malformed::Body(e.to_string()))?;
    let Some(Packet::Publish(p)) = packet else {
        return Err(Malformed::Body("not a PUBLISH".into()));
    };
    if !buf.is_empty() {
        return Err(Malformed::Body("bytes after the packet".into()));
    }
    if p.topic != topic.as_str() {
        return Err(Malformed::TopicMismatch);
    }
    let expires_at = p.properties.message_expiry_interval.map(|s| now + Duration::from_secs(u64::from(s)));
    Ok(Arc::new(Message {
        topic: topic.clone(),
        payload: p.payload,
        qos: p.qos,
        retain: p.retain,
        properties: Message::forwarded_properties(&p.properties),
        publisher: None,
        expires_at,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::codec::Properties;

    #[test]
    fn a_message_crosses_unchanged() {
        let now = Instant::now();
        let props = Properties {
            payload_format_indicator: Some(1),
            content_type: Some("text/plain".into()),
            response_topic: Some("r/1".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("k".into(), "v".into()), ("k".into(), "w\r\n:".into())],
            ..Properties::default()
        };
        let msg = Message {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"\x00hello\xff"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: Message::forwarded_properties(&props),
            publisher: Some("c".into()),
            expires_at: Some(now + Duration::from_millis(2500)),
        };
        let b = body(&msg, now).unwrap();
        let back = message(&b, &msg.topic, DecodeLimits::from(1024 * 1024), now).unwrap();
        assert_eq!(back.payload, msg.payload);
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.properties(), msg.properties());
        assert_eq!(back.remaining_expiry(now), Some(3));
        assert_eq!(back.publisher, None);
        let other = TopicName::new("a/c").unwrap();
        assert_eq!(message(&b, &other, DecodeLimits::from(1024 * 1024), now).unwrap_err(), Malformed::TopicMismatch);
        assert!(message(&b, &msg.topic, DecodeLimits::from(16), now).is_err(), "bounded by the packet size");
        assert!(message(&Bytes::from_static(b"\x30"), &msg.topic, DecodeLimits::from(1024), now).is_err());
    }

    #[test]
    fn origin_headers_round_trip_and_garbage_is_refused() {
        let h = headers("n1", 7, 42);
        assert_eq!(origin(Some(&h)).unwrap(), Origin { node: "n1".into(), run: 7, seq: 42 });
        assert!(headers_len(&h) > 40);
        assert!(origin(None).is_err());
        let mut bad = headers("n1", 7, 42);
        bad.insert(SEQ, "x");
        assert_eq!(origin(Some(&bad)).unwrap_err(), Malformed::Header(SEQ));
        let mut bad = headers("n1", 7, 42);
        bad.insert(FORMAT, "v9");
        assert_eq!(origin(Some(&bad)).unwrap_err(), Malformed::Header(FORMAT));
    }
}
