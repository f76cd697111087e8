//! The byte layout of every key and value the store writes.
//!
//! Values are a small hand-written binary encoding (fixed-width integers
//! little-endian, strings and byte strings length-prefixed with a u32),
//! each followed by a CRC-32 of the key and the value, so that a flipped
//! byte anywhere in a record is found when it is read and reported as
//! corruption instead of decoding into another session or another message.
//! Keys that hold a client id start with its length (u16, big-endian) so
//! that one session's rows are one prefix and no client id is a prefix of
//! another's rows; integers in keys are big-endian so that they sort.
//!
//! Message expiry: [`Message::expires_at`] is a monotonic `Instant`, which
//! means nothing in another process; it is written as Unix milliseconds
//! ([`instant_to_unix_ms`]) and turned back at recovery
//! ([`unix_ms_to_instant`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use portcullis_core::codec::{Properties, QoS, RetainHandling, SubscriptionOptions};
use portcullis_core::durable::InflightState;
use portcullis_core::message::Message;
use portcullis_core::owner::SessionOwner;
use portcullis_core::topic::TopicName;

/// A record that does not decode: corruption (or a bug), never a panic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(pub &'static str);

// ---------------------------------------------------------------- CRC-32

/// CRC-32 (IEEE, reflected), table built at compile time.
const CRC_TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

fn crc32(parts: &[&[u8]]) -> u32 {
    let mut c = !0u32;
    for p in parts {
        for &b in *p {
            c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
    }
    !c
}

/// `value` with the CRC of `key` and `value` appended.
pub fn seal(key: &[u8], mut value: Vec<u8>) -> Vec<u8> {
    let c = crc32(&[key, &value]);
    value.extend_from_slice(&c.to_le_bytes());
    value
}

/// The value of a sealed record, once its CRC matched.
pub fn unseal<'a>(key: &[u8], sealed: &'a [u8]) -> Result<&'a [u8], DecodeError> {
    let n = sealed.len().checked_sub(4).ok_or(DecodeError("record shorter than its checksum"))?;
    let (value, sum) = sealed.split_at(n);
    let want = u32::from_le_bytes(sum.try_into().map_err(|_| DecodeError("checksum"))?);
    if crc32(&[key, value]) != want {
        return Err(DecodeError("checksum mismatch"));
    }
    Ok(value)
}

// ---------------------------------------------------------------- writer / reader

/// Appends fields to a value.
#[derive(Debug, Default)]
pub struct W(pub Vec<u8>);

impl W {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bool(&mut self, v: bool) -> &mut Self {
        self.u8(u8::from(v))
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        // Lengths above u32 cannot occur: MQTT packets are at most 256 MiB.
        self.u32(u32::try_from(v.len()).unwrap_or(u32::MAX));
        self.0.extend_from_slice(v);
        self
    }
    pub fn opt_u32(&mut self, v: Option<u32>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u32(v),
            None => self.u8(0),
        }
    }
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).u64(v),
            None => self.u8(0),
        }
    }
    pub fn opt_bytes(&mut self, v: Option<&[u8]>) -> &mut Self {
        match v {
            Some(v) => self.u8(1).bytes(v),
            None => self.u8(0),
        }
    }
}

/// Reads fields from a value; every read is bounds-checked and a length
/// is never trusted past the bytes that are there.
#[derive(Debug)]
pub struct R<'a>(pub &'a [u8]);

impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError("record truncated"));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| DecodeError("u32"))?))
    }
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| DecodeError("u64"))?))
    }
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError("bad boolean")),
        }
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError("bad UTF-8"))
    }
    fn opt(&mut self) -> Result<bool, DecodeError> {
        self.bool()
    }
    pub fn opt_u32(&mut self) -> Result<Option<u32>, DecodeError> {
        Ok(if self.opt()? { Some(self.u32()?) } else { None })
    }
    pub fn opt_u64(&mut self) -> Result<Option<u64>, DecodeError> {
        Ok(if self.opt()? { Some(self.u64()?) } else { None })
    }
    pub fn opt_bytes(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        Ok(if self.opt()? { Some(self.bytes()?) } else { None })
    }
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, DecodeError> {
        Ok(if self.opt()? { Some(self.str()?) } else { None })
    }
    /// Every byte was read (a longer record is corrupt).
    pub fn end(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError("trailing bytes"))
        }
    }
}

// ---------------------------------------------------------------- keys

/// The key prefix of one session's rows: its client id, length first.
pub fn session_prefix(client_id: &str) -> Vec<u8> {
    let b = client_id.as_bytes();
    let mut k = Vec::with_capacity(2 + b.len() + 8);
    // MQTT strings are at most 65,535 bytes.
    k.extend_from_slice(&u16::try_from(b.len()).unwrap_or(u16::MAX).to_be_bytes());
    k.extend_from_slice(b);
    k
}

/// A delayed publish's key: its deadline (Unix ms), then its id, both
/// big-endian, so that a scan returns them in deadline order.
pub fn delayed_key(due_ms: u64, id: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&due_ms.to_be_bytes());
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// The deadline and id of a delayed publish's key.
pub fn parse_delayed_key(k: &[u8]) -> Result<(u64, u64), DecodeError> {
    if k.len() != 16 {
        return Err(DecodeError("bad delayed key"));
    }
    Ok((be_u64(&k[..8])?, be_u64(&k[8..])?))
}

pub fn key_with_u64(client_id: &str, n: u64) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub fn key_with_u16(client_id: &str, n: u16) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(&n.to_be_bytes());
    k
}

pub fn key_with_str(client_id: &str, s: &str) -> Vec<u8> {
    let mut k = session_prefix(client_id);
    k.extend_from_slice(s.as_bytes());
    k
}

/// Splits a session-row key into the client id and the rest.
pub fn split_key(key: &[u8]) -> Result<(&str, &[u8]), DecodeError> {
    let mut r = R(key);
    let n = u16::from_be_bytes(r.take(2)?.try_into().map_err(|_| DecodeError("key"))?) as usize;
    let cid = std::str::from_utf8(r.take(n)?).map_err(|_| DecodeError("client id is not UTF-8"))?;
    Ok((cid, r.0))
}

pub fn be_u64(b: &[u8]) -> Result<u64, DecodeError> {
    Ok(u64::from_be_bytes(b.try_into().map_err(|_| DecodeError("bad u64 key"))?))
}

pub fn be_u16(b: &[u8]) -> Result<u16, DecodeError> {
    Ok(u16::from_be_bytes(b.try_into().map_err(|_| DecodeError("bad u16 key"))?))
}

// ---------------------------------------------------------------- clocks

pub fn unix_now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A monotonic deadline as Unix milliseconds (`now` read once per batch).
pub fn instant_to_unix_ms(at: Instant, now: Instant, now_ms: u64) -> u64 {
    match at.checked_duration_since(now) {
        Some(ahead) => now_ms.saturating_add(u64::try_from(ahead.as_millis()).unwrap_or(u64::MAX)),
        None => now_ms.saturating_sub(u64::try_from(now.duration_since(at).as_millis()).unwrap_or(u64::MAX)),
    }
}

/// Unix milliseconds as a monotonic deadline; `None` when already past.
pub fn unix_ms_to_instant(ms: u64, now: Instant, now_ms: u64) -> Option<Instant> {
    if ms <= now_ms {
        return None;
    }
    now.checked_add(Duration::from_millis(ms - now_ms))
}

// ---------------------------------------------------------------- values

/// A message body: what [`Message`] holds, expiry as Unix ms.
pub fn encode_message(m: &Message, now: Instant, now_ms: u64) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(48 + m.payload.len() + m.topic.as_str().len()));
    w.bytes(m.topic.as_str().as_bytes()).bytes(&m.payload).u8(m.qos as u8).bool(m.retain);
    w.opt_bytes(m.publisher.as_deref().map(str::as_bytes));
    w.opt_u64(m.expires_at.map(|d| instant_to_unix_ms(d, now, now_ms)));
    match m.properties.as_deref() {
        None => {
            w.u8(0);
        }
        Some(p) => {
            w.u8(1);
            match p.payload_format_indicator {
                Some(v) => w.u8(1).u8(v),
                None => w.u8(0),
            };
            w.opt_bytes(p.content_type.as_deref().map(str::as_bytes));
            w.opt_bytes(p.response_topic.as_deref().map(str::as_bytes));
            w.opt_bytes(p.correlation_data.as_deref());
            w.u32(u32::try_from(p.user_properties.len()).unwrap_or(u32::MAX));
            for (k, v) in &p.user_properties {
                w.bytes(k.as_bytes()).bytes(v.as_bytes());
            }
        }
    }
    w.0
}

/// A stored message with its expiry back on the monotonic clock, and
/// whether it has expired (its deadline is then `now`).
pub fn decode_message(b: &[u8], now: Instant, now_ms: u64) -> Result<(Arc<Message>, bool), DecodeError> {
    let mut r = R(b);
    let topic = TopicName::new(r.str()?).map_err(|_| DecodeError("bad topic name"))?;
    let payload = Bytes::copy_from_slice(r.bytes()?);
    let qos = QoS::from_u8(r.u8()?).ok_or(DecodeError("bad QoS"))?;
    let retain = r.bool()?;
    let publisher = r.opt_str()?.map(Arc::from);
    let expires_ms = r.opt_u64()?;
    let properties = if r.bool()? {
        let payload_format_indicator = if r.bool()? { Some(r.u8()?) } else { None };
        let content_type = r.opt_str()?.map(str::to_string);
        let response_topic = r.opt_str()?.map(str::to_string);
        let correlation_data = r.opt_bytes()?.map(Bytes::copy_from_slice);
        let n = r.u32()? as usize;
        // Never trust a count past the bytes there: each pair takes ≥ 8.
        if n > r.0.len() / 8 {
            return Err(DecodeError("bad user property count"));
        }
        let mut user_properties = Vec::with_capacity(n);
        for _ in 0..n {
            user_properties.push((r.str()?.to_string(), r.str()?.to_string()));
        }
        Message::boxed_properties(Properties {
            payload_format_indicator,
            content_type,
            response_topic,
            correlation_data,
            user_properties,
            ..Properties::default()
        })
    } else {
        None
    };
    r.end()?;
    let (expires_at, expired) = match expires_ms.map(|ms| unix_ms_to_instant(ms, now, now_ms)) {
        None => (None, false),
        Some(Some(at)) => (Some(at), false),
        Some(None) => (Some(now), true),
    };
    Ok((Arc::new(Message { topic, payload, qos, retain, properties, publisher, expires_at }), expired))
}

/// A will row (format 2): the will delay in seconds, then the message.
pub fn encode_will(delay_secs: u32, m: &Message, now: Instant, now_ms: u64) -> Vec<u8> {
    let mut w = W::default();
    w.u32(delay_secs);
    w.0.extend_from_slice(&encode_message(m, now, now_ms));
    w.0
}

/// A will row: its delay, and its message as [`decode_message`] returns it.
pub fn decode_will(b: &[u8], now: Instant, now_ms: u64) -> Result<(u32, Arc<Message>, bool), DecodeError> {
    let mut r = R(b);
    let delay = r.u32()?;
    let (msg, expired) = decode_message(r.0, now, now_ms)?;
    Ok((delay, msg, expired))
}

/// A session row: owner, expiry, when its client left.
pub fn encode_session(owner: &SessionOwner, expiry_secs: Option<u32>, detached_at_ms: Option<u64>) -> Vec<u8> {
    let mut w = W::default();
    match owner {
        SessionOwner::User(u) => w.u8(1).bytes(u.as_bytes()),
        SessionOwner::Cert(c) => w.u8(2).bytes(c.as_bytes()),
        SessionOwner::Anonymous(l) => w.u8(3).bytes(l.as_bytes()),
        SessionOwner::Unknown => w.u8(0),
    };
    w.opt_u32(expiry_secs).opt_u64(detached_at_ms);
    w.0
}

pub fn decode_session(b: &[u8]) -> Result<(SessionOwner, Option<u32>, Option<u64>), DecodeError> {
    let mut r = R(b);
    let owner = match r.u8()? {
        0 => SessionOwner::Unknown,
        1 => SessionOwner::User(Arc::from(r.str()?)),
        2 => SessionOwner::Cert(Arc::from(r.str()?)),
        3 => SessionOwner::Anonymous(Arc::from(r.str()?)),
        _ => return Err(DecodeError("bad session owner kind")),
    };
    let out = (owner, r.opt_u32()?, r.opt_u64()?);
    r.end()?;
    Ok(out)
}

pub fn encode_subscription(o: &SubscriptionOptions, subscription_id: Option<u32>) -> Vec<u8> {
    let mut w = W::default();
    w.u8(o.qos as u8).bool(o.no_local).bool(o.retain_as_published).u8(o.retain_handling as u8);
    w.opt_u32(subscription_id);
    w.0
}

pub fn decode_subscription(b: &[u8]) -> Result<(SubscriptionOptions, Option<u32>), DecodeError> {
    let mut r = R(b);
    let qos = QoS::from_u8(r.u8()?).ok_or(DecodeError("bad QoS"))?;
    let no_local = r.bool()?;
    let retain_as_published = r.bool()?;
    let retain_handling = match r.u8()? {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError("bad retain handling")),
    };
    let id = r.opt_u32()?;
    r.end()?;
    Ok((SubscriptionOptions { qos, no_local, retain_as_published, retain_handling }, id))
}

/// A queue entry: which message, at which QoS, with which ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRow {
    pub id: u64,
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
}

pub fn encode_queue(q: &QueueRow) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(16 + 4 * q.subscription_ids.len()));
    w.u64(q.id).u8(q.qos).bool(q.retain).u32(u32::try_from(q.subscription_ids.len()).unwrap_or(u32::MAX));
    for id in &q.subscription_ids {
        w.u32(*id);
    }
    w.0
}

pub fn decode_queue(b: &[u8]) -> Result<QueueRow, DecodeError> {
    let mut r = R(b);
    let (id, qos, retain) = (r.u64()?, r.u8()?, r.bool()?);
    let n = r.u32()? as usize;
    if n > r.0.len() / 4 {
        return Err(DecodeError("bad subscription id count"));
    }
    let subscription_ids = (0..n).map(|_| r.u32()).collect::<Result<_, _>>()?;
    r.end()?;
    Ok(QueueRow { id, qos, retain, subscription_ids })
}

/// An in-flight entry; `order` keeps the order they were sent in (a
/// packet id says nothing about it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InflightRow {
    pub id: u64,
    pub qos: u8,
    pub retain: bool,
    pub state: InflightState,
    pub order: u64,
}

pub fn encode_inflight(i: &InflightRow) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(20));
    w.u64(i.id).u8(i.qos).bool(i.retain).u8(match i.state {
        InflightState::Published => 0,
        InflightState::Released => 1,
    });
    w.u64(i.order);
    w.0
}

pub fn decode_inflight(b: &[u8]) -> Result<InflightRow, DecodeError> {
    let mut r = R(b);
    let (id, qos, retain) = (r.u64()?, r.u8()?, r.bool()?);
    let state = match r.u8()? {
        0 => InflightState::Published,
        1 => InflightState::Released,
        _ => return Err(DecodeError("bad in-flight state")),
    };
    let order = r.u64()?;
    r.end()?;
    Ok(InflightRow { id, qos, retain, state, order })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_matches_the_standard_check_value() {
        assert_eq!(crc32(&[b"123456789"]), 0xCBF4_3926);
        assert_eq!(crc32(&[b"1234", b"56789"]), 0xCBF4_3926);
    }

    #[test]
    fn seal_finds_every_single_flipped_bit() {
        let key = b"k";
        let sealed = seal(key, b"hello world".to_vec());
        assert_eq!(unseal(key, &sealed).unwrap(), b"hello world");
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert!(unseal(key, &bad).is_err(), "bit {i}");
        }
        assert!(unseal(b"other key", &sealed).is_err(), "a record moved to another key");
        assert!(unseal(key, &sealed[..3]).is_err());
    }

    #[test]
    fn expiry_crosses_clocks() {
        let now = Instant::now();
        let now_ms = 1_000_000;
        let at = now + Duration::from_millis(1500);
        let ms = instant_to_unix_ms(at, now, now_ms);
        assert_eq!(ms, 1_001_500);
        let back = unix_ms_to_instant(ms, now, now_ms).unwrap();
        assert_eq!(back.duration_since(now), Duration::from_millis(1500));
        assert_eq!(unix_ms_to_instant(ms, now, 1_001_500), None, "due means expired");
        assert_eq!(instant_to_unix_ms(now.checked_sub(Duration::from_millis(10)).unwrap(), now, now_ms), 999_990);
    }

    #[test]
    fn truncated_and_garbage_values_are_errors() {
        let m = Message {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"xyz"),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Message::boxed_properties(Properties {
                user_properties: vec![("k".into(), "v".into())],
                ..Properties::default()
            }),
            publisher: None,
            expires_at: None,
        };
        let now = Instant::now();
        let b = encode_message(&m, now, 5);
        for n in 0..b.len() {
            assert!(decode_message(&b[..n], now, 5).is_err(), "prefix of {n} bytes");
        }
        assert!(!decode_message(&b, now, 5).unwrap().1);
        let mut huge = W::default();
        huge.u32(u32::MAX);
        assert!(R(&huge.0).bytes().is_err(), "a length past the end is refused, not allocated");
    }
}
