//! MQTT 5 properties (spec section 2.2.2): identifiers, which packet may
//! carry which property, and their decoding and encoding.
//!
//! [`PropCtx`] names the place a property block sits in (a packet type, or
//! the will properties of a CONNECT) and holds its allow-list. Decoding
//! checks every identifier against it, rejects duplicates of single-valued
//! properties and validates values. Encoding walks the same list through
//! [`for_each`], so [`encoded_len`] and [`encode`] cannot disagree, and it
//! writes only the properties allowed in the context.

use bytes::{BufMut, BytesMut};

use super::error::{DecodeError, EncodeError};
use super::types::Properties;
use super::wire::{self, Reader};
use crate::topic;

/// Property identifiers.
pub mod id {
    pub const PAYLOAD_FORMAT_INDICATOR: u8 = 0x01;
    pub const MESSAGE_EXPIRY_INTERVAL: u8 = 0x02;
    pub const CONTENT_TYPE: u8 = 0x03;
    pub const RESPONSE_TOPIC: u8 = 0x08;
    pub const CORRELATION_DATA: u8 = 0x09;
    pub const SUBSCRIPTION_IDENTIFIER: u8 = 0x0B;
    pub const SESSION_EXPIRY_INTERVAL: u8 = 0x11;
    pub const ASSIGNED_CLIENT_IDENTIFIER: u8 = 0x12;
    pub const SERVER_KEEP_ALIVE: u8 = 0x13;
    pub const AUTHENTICATION_METHOD: u8 = 0x15;
    pub const AUTHENTICATION_DATA: u8 = 0x16;
    pub const REQUEST_PROBLEM_INFORMATION: u8 = 0x17;
    pub const WILL_DELAY_INTERVAL: u8 = 0x18;
    pub const REQUEST_RESPONSE_INFORMATION: u8 = 0x19;
    pub const RESPONSE_INFORMATION: u8 = 0x1A;
    pub const SERVER_REFERENCE: u8 = 0x1C;
    pub const REASON_STRING: u8 = 0x1F;
    pub const RECEIVE_MAXIMUM: u8 = 0x21;
    pub const TOPIC_ALIAS_MAXIMUM: u8 = 0x22;
    pub const TOPIC_ALIAS: u8 = 0x23;
    pub const MAXIMUM_QOS: u8 = 0x24;
    pub const RETAIN_AVAILABLE: u8 = 0x25;
    pub const USER_PROPERTY: u8 = 0x26;
    pub const MAXIMUM_PACKET_SIZE: u8 = 0x27;
    pub const WILDCARD_SUBSCRIPTION_AVAILABLE: u8 = 0x28;
    pub const SUBSCRIPTION_IDENTIFIER_AVAILABLE: u8 = 0x29;
    pub const SHARED_SUBSCRIPTION_AVAILABLE: u8 = 0x2A;
}

use id::*;

const fn bits(ids: &[u8]) -> u64 {
    let mut m = 0u64;
    let mut i = 0;
    while i < ids.len() {
        m |= 1 << ids[i];
        i += 1;
    }
    m
}

const KNOWN: u64 = bits(&[
    PAYLOAD_FORMAT_INDICATOR,
    MESSAGE_EXPIRY_INTERVAL,
    CONTENT_TYPE,
    RESPONSE_TOPIC,
    CORRELATION_DATA,
    SUBSCRIPTION_IDENTIFIER,
    SESSION_EXPIRY_INTERVAL,
    ASSIGNED_CLIENT_IDENTIFIER,
    SERVER_KEEP_ALIVE,
    AUTHENTICATION_METHOD,
    AUTHENTICATION_DATA,
    REQUEST_PROBLEM_INFORMATION,
    WILL_DELAY_INTERVAL,
    REQUEST_RESPONSE_INFORMATION,
    RESPONSE_INFORMATION,
    SERVER_REFERENCE,
    REASON_STRING,
    RECEIVE_MAXIMUM,
    TOPIC_ALIAS_MAXIMUM,
    TOPIC_ALIAS,
    MAXIMUM_QOS,
    RETAIN_AVAILABLE,
    USER_PROPERTY,
    MAXIMUM_PACKET_SIZE,
    WILDCARD_SUBSCRIPTION_AVAILABLE,
    SUBSCRIPTION_IDENTIFIER_AVAILABLE,
    SHARED_SUBSCRIPTION_AVAILABLE,
]);

/// Where a property block sits; decides which identifiers are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PropCtx {
    Connect,
    /// The will properties inside a CONNECT payload.
    Will,
    ConnAck,
    Publish,
    /// PUBACK, PUBREC, PUBREL, PUBCOMP.
    PubResp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

impl PropCtx {
    fn allowed(self) -> u64 {
        match self {
            PropCtx::Connect => bits(&[
                SESSION_EXPIRY_INTERVAL,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                REQUEST_PROBLEM_INFORMATION,
                REQUEST_RESPONSE_INFORMATION,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
            ]),
            PropCtx::Will => bits(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                WILL_DELAY_INTERVAL,
                USER_PROPERTY,
            ]),
            PropCtx::ConnAck => bits(&[
                SESSION_EXPIRY_INTERVAL,
                ASSIGNED_CLIENT_IDENTIFIER,
                SERVER_KEEP_ALIVE,
                AUTHENTICATION_METHOD,
                AUTHENTICATION_DATA,
                RESPONSE_INFORMATION,
                SERVER_REFERENCE,
                REASON_STRING,
                RECEIVE_MAXIMUM,
                TOPIC_ALIAS_MAXIMUM,
                MAXIMUM_QOS,
                RETAIN_AVAILABLE,
                USER_PROPERTY,
                MAXIMUM_PACKET_SIZE,
                WILDCARD_SUBSCRIPTION_AVAILABLE,
                SUBSCRIPTION_IDENTIFIER_AVAILABLE,
                SHARED_SUBSCRIPTION_AVAILABLE,
            ]),
            PropCtx::Publish => bits(&[
                PAYLOAD_FORMAT_INDICATOR,
                MESSAGE_EXPIRY_INTERVAL,
                CONTENT_TYPE,
                RESPONSE_TOPIC,
                CORRELATION_DATA,
                SUBSCRIPTION_IDENTIFIER,
                TOPIC_ALIAS,
                USER_PROPERTY,
            ]),
            PropCtx::PubResp | PropCtx::SubAck | PropCtx::UnsubAck => bits(&[REASON_STRING, USER_PROPERTY]),
            PropCtx::Subscribe => bits(&[SUBSCRIPTION_IDENTIFIER, USER_PROPERTY]),
            PropCtx::Unsubscribe => bits(&[USER_PROPERTY]),
            PropCtx::Disconnect => bits(&[SESSION_EXPIRY_INTERVAL, SERVER_REFERENCE, REASON_STRING, USER_PROPERTY]),
            PropCtx::Auth => bits(&[AUTHENTICATION_METHOD, AUTHENTICATION_DATA, REASON_STRING, USER_PROPERTY]),
        }
    }

    /// May property `id` appear in this context?
    pub fn allows(self, id: u8) -> bool {
        id < 64 && self.allowed() & (1 << id) != 0
    }

    /// May property `id` appear more than once in this context?
    fn repeatable(self, id: u8) -> bool {
        id == USER_PROPERTY || (id == SUBSCRIPTION_IDENTIFIER && self == PropCtx::Publish)
    }
}

/// Reads a property block: its length, then exactly that many bytes of
/// properties.
pub(crate) fn decode(outer: &mut Reader, ctx: PropCtx) -> Result<Properties, DecodeError> {
    let len = outer.varint()? as usize;
    let mut r = Reader::new(outer.take(len)?);
    r.user_props = outer.user_props;
    let p = decode_block(&mut r, ctx)?;
    outer.user_props = r.user_props;
    Ok(p)
}

fn decode_block(r: &mut Reader, ctx: PropCtx) -> Result<Properties, DecodeError> {
    let mut p = Properties::default();
    let mut seen = 0u64;
    while !r.is_empty() {
        let raw = r.varint()?;
        let id = u8::try_from(raw).unwrap_or(u8::MAX);
        if id >= 64 || KNOWN & (1 << id) == 0 {
            return Err(DecodeError::UnknownProperty(id));
        }
        if !ctx.allows(id) {
            return Err(DecodeError::PropertyNotAllowed(id));
        }
        if !ctx.repeatable(id) {
            if seen & (1 << id) != 0 {
                return Err(DecodeError::DuplicateProperty(id));
            }
            seen |= 1 << id;
        }
        read_one(r, id, &mut p)?;
    }
    Ok(p)
}

fn flag(r: &mut Reader, id: u8) -> Result<u8, DecodeError> {
    match r.u8()? {
        v @ (0 | 1) => Ok(v),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

fn non_zero_u16(r: &mut Reader, id: u8) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::InvalidPropertyValue(id)),
        v => Ok(v),
    }
}

fn read_one(r: &mut Reader, id: u8, p: &mut Properties) -> Result<(), DecodeError> {
    match id {
        PAYLOAD_FORMAT_INDICATOR => p.payload_format_indicator = Some(flag(r, id)?),
        MESSAGE_EXPIRY_INTERVAL => p.message_expiry_interval = Some(r.u32()?),
        CONTENT_TYPE => p.content_type = Some(r.string()?),
        RESPONSE_TOPIC => {
            let t = r.string()?;
            topic::validate_name(&t).map_err(|_| DecodeError::InvalidPropertyValue(id))?;
            p.response_topic = Some(t);
        }
        CORRELATION_DATA => p.correlation_data = Some(r.binary()?),
        SUBSCRIPTION_IDENTIFIER => match r.varint()? {
            0 => return Err(DecodeError::InvalidPropertyValue(id)),
            v => p.subscription_identifiers.push(v),
        },
        SESSION_EXPIRY_INTERVAL => p.session_expiry_interval = Some(r.u32()?),
        ASSIGNED_CLIENT_IDENTIFIER => p.assigned_client_identifier = Some(r.string()?),
        SERVER_KEEP_ALIVE => p.server_keep_alive = Some(r.u16()?),
        AUTHENTICATION_METHOD => p.authentication_method = Some(r.string()?),
        AUTHENTICATION_DATA => p.authentication_data = Some(r.binary()?),
        REQUEST_PROBLEM_INFORMATION => p.request_problem_information = Some(flag(r, id)?),
        WILL_DELAY_INTERVAL => p.will_delay_interval = Some(r.u32()?),
        REQUEST_RESPONSE_INFORMATION => p.request_response_information = Some(flag(r, id)?),
        RESPONSE_INFORMATION => p.response_information = Some(r.string()?),
        SERVER_REFERENCE => p.server_reference = Some(r.string()?),
        REASON_STRING => p.reason_string = Some(r.string()?),
        RECEIVE_MAXIMUM => p.receive_maximum = Some(non_zero_u16(r, id)?),
        TOPIC_ALIAS_MAXIMUM => p.topic_alias_maximum = Some(r.u16()?),
        TOPIC_ALIAS => p.topic_alias = Some(non_zero_u16(r, id)?),
        MAXIMUM_QOS => p.maximum_qos = Some(flag(r, id)?),
        RETAIN_AVAILABLE => p.retain_available = Some(flag(r, id)?),
        USER_PROPERTY => {
            let k = r.string()?;
            let v = r.string()?;
            if !r.user_props.spend(k.len() + v.len()) {
                return Err(DecodeError::TooManyUserProperties);
            }
            p.user_properties.push((k, v));
        }
        MAXIMUM_PACKET_SIZE => match r.u32()? {
            0 => return Err(DecodeError::InvalidPropertyValue(id)),
            v => p.maximum_packet_size = Some(v),
        },
        WILDCARD_SUBSCRIPTION_AVAILABLE => p.wildcard_subscription_available = Some(flag(r, id)?),
        SUBSCRIPTION_IDENTIFIER_AVAILABLE => p.subscription_identifier_available = Some(flag(r, id)?),
        SHARED_SUBSCRIPTION_AVAILABLE => p.shared_subscription_available = Some(flag(r, id)?),
        _ => return Err(DecodeError::UnknownProperty(id)),
    }
    Ok(())
}

/// One property value as it goes on the wire.
#[derive(Debug, Clone, Copy)]
enum Value<'a> {
    Byte(u8),
    U16(u16),
    U32(u32),
    Varint(u32),
    Str(&'a str),
    Bin(&'a [u8]),
    Pair(&'a str, &'a str),
}

impl Value<'_> {
    fn len(self) -> usize {
        match self {
            Value::Byte(_) => 1,
            Value::U16(_) => 2,
            Value::U32(_) => 4,
            Value::Varint(v) => wire::varint_len(v as usize),
            Value::Str(s) => wire::binary_len(s.as_bytes()),
            Value::Bin(b) => wire::binary_len(b),
            Value::Pair(k, v) => wire::binary_len(k.as_bytes()) + wire::binary_len(v.as_bytes()),
        }
    }

    fn put(self, buf: &mut BytesMut) -> Result<(), EncodeError> {
        match self {
            Value::Byte(v) => buf.put_u8(v),
            Value::U16(v) => buf.put_u16(v),
            Value::U32(v) => buf.put_u32(v),
            Value::Varint(v) => {
                if v == 0 || v > wire::MAX_VARINT {
                    return Err(EncodeError::InvalidValue("subscription identifier out of range"));
                }
                wire::put_varint(buf, v as usize)?;
            }
            Value::Str(s) => wire::put_str(buf, s)?,
            Value::Bin(b) => wire::put_binary(buf, b)?,
            Value::Pair(k, v) => {
                wire::put_str(buf, k)?;
                wire::put_str(buf, v)?;
            }
        }
        Ok(())
    }
}

/// Calls `f` for every property of `p` allowed in `ctx`, in identifier
/// order. The one place that lists the properties for encoding.
fn for_each<'a>(p: &'a Properties, ctx: PropCtx, mut f: impl FnMut(u8, Value<'a>)) {
    let mut one = |id: u8, v: Option<Value<'a>>| {
        if let Some(v) = v {
            if ctx.allows(id) {
                f(id, v);
            }
        }
    };
    one(PAYLOAD_FORMAT_INDICATOR, p.payload_format_indicator.map(Value::Byte));
    one(MESSAGE_EXPIRY_INTERVAL, p.message_expiry_interval.map(Value::U32));
    one(CONTENT_TYPE, p.content_type.as_deref().map(Value::Str));
    one(RESPONSE_TOPIC, p.response_topic.as_deref().map(Value::Str));
    one(CORRELATION_DATA, p.correlation_data.as_deref().map(Value::Bin));
    for &v in &p.subscription_identifiers {
        one(SUBSCRIPTION_IDENTIFIER, Some(Value::Varint(v)));
    }
    one(SESSION_EXPIRY_INTERVAL, p.session_expiry_interval.map(Value::U32));
    one(ASSIGNED_CLIENT_IDENTIFIER, p.assigned_client_identifier.as_deref().map(Value::Str));
    one(SERVER_KEEP_ALIVE, p.server_keep_alive.map(Value::U16));
    one(AUTHENTICATION_METHOD, p.authentication_method.as_deref().map(Value::Str));
    one(AUTHENTICATION_DATA, p.authentication_data.as_deref().map(Value::Bin));
    one(REQUEST_PROBLEM_INFORMATION, p.request_problem_information.map(Value::Byte));
    one(WILL_DELAY_INTERVAL, p.will_delay_interval.map(Value::U32));
    one(REQUEST_RESPONSE_INFORMATION, p.request_response_information.map(Value::Byte));
    one(RESPONSE_INFORMATION, p.response_information.as_deref().map(Value::Str));
    one(SERVER_REFERENCE, p.server_reference.as_deref().map(Value::Str));
    one(REASON_STRING, p.reason_string.as_deref().map(Value::Str));
    one(RECEIVE_MAXIMUM, p.receive_maximum.map(Value::U16));
    one(TOPIC_ALIAS_MAXIMUM, p.topic_alias_maximum.map(Value::U16));
    one(TOPIC_ALIAS, p.topic_alias.map(Value::U16));
    one(MAXIMUM_QOS, p.maximum_qos.map(Value::Byte));
    one(RETAIN_AVAILABLE, p.retain_available.map(Value::Byte));
    for (k, v) in &p.user_properties {
        one(USER_PROPERTY, Some(Value::Pair(k, v)));
    }
    one(MAXIMUM_PACKET_SIZE, p.maximum_packet_size.map(Value::U32));
    one(WILDCARD_SUBSCRIPTION_AVAILABLE, p.wildcard_subscription_available.map(Value::Byte));
    one(SUBSCRIPTION_IDENTIFIER_AVAILABLE, p.subscription_identifier_available.map(Value::Byte));
    one(SHARED_SUBSCRIPTION_AVAILABLE, p.shared_subscription_available.map(Value::Byte));
}

/// Size of the properties themselves, without the length prefix.
fn content_len(p: &Properties, ctx: PropCtx) -> usize {
    let mut n = 0;
    // Every identifier is below 128: one byte as a variable byte integer.
    for_each(p, ctx, |_, v| n += 1 + v.len());
    n
}

/// Size of the whole property block, length prefix included.
pub fn encoded_len(p: &Properties, ctx: PropCtx) -> usize {
    let n = content_len(p, ctx);
    wire::varint_len(n) + n
}

/// True if `p` holds nothing that would be written in `ctx`.
pub(crate) fn is_empty(p: &Properties, ctx: PropCtx) -> bool {
    content_len(p, ctx) == 0
}

/// Writes the property block, length prefix included.
pub(crate) fn encode(p: &Properties, ctx: PropCtx, buf: &mut BytesMut) -> Result<(), EncodeError> {
    wire::put_varint(buf, content_len(p, ctx))?;
    let mut res = Ok(());
    for_each(p, ctx, |id, v| {
        if res.is_ok() {
            buf.put_u8(id);
            res = v.put(buf);
        }
    });
    res
}
