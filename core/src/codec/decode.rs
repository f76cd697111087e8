//! Bytes → [`Packet`], with the validation of MQTT 3.1, 3.1.1 and 5.0.
//!
//! [`decode`] works in three steps. The first byte is checked at once (packet
//! type, fixed-header flags, "first packet must be CONNECT"). As soon as the
//! remaining length is readable the declared size is compared with the
//! limit, before any body byte is waited for. Only when the whole packet is
//! buffered is it split off and parsed by one function per packet type; each
//! must consume the body exactly.

use bytes::BytesMut;

use super::error::DecodeError;
use super::properties::{self, PropCtx};
use super::types::*;
use super::wire::{Reader, UserPropBudget};
use crate::topic::{self, SubscriptionFilter};

pub(crate) mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
    pub const AUTH: u8 = 15;
}

/// Reason codes each v5 packet type may carry (spec section 2.4).
mod allowed {
    pub const PUBACK: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
    pub const PUBREL: &[u8] = &[0x00, 0x92];
    pub const CONNACK: &[u8] = &[
        0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C, 0x90, 0x95, 0x97, 0x99, 0x9A,
        0x9B, 0x9C, 0x9D, 0x9F,
    ];
    pub const SUBACK: &[u8] = &[0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2];
    pub const SUBACK_V3: &[u8] = &[0x00, 0x01, 0x02, 0x80];
    pub const UNSUBACK: &[u8] = &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91];
    pub const DISCONNECT: &[u8] = &[
        0x00, 0x04, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90, 0x93, 0x94, 0x95, 0x96, 0x97,
        0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E, 0x9F, 0xA0, 0xA1, 0xA2,
    ];
    pub const AUTH: &[u8] = &[0x00, 0x18, 0x19];
}

/// What one decoded packet may cost at most. `From<u32>` gives the packet
/// size limit alone (no cap on user properties), which is what a client
/// decoding a server's packets wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    /// The whole packet, fixed header included.
    pub max_packet_size: u32,
    /// MQTT 5 user properties per packet (every property block of it).
    pub max_user_properties: u32,
    /// Key and value bytes of those user properties together. Each pair
    /// decoded costs about 48 bytes more than its 5 bytes on the wire, so
    /// the count cap is what bounds the amplification.
    pub max_user_property_bytes: u32,
}

impl From<u32> for DecodeLimits {
    fn from(max_packet_size: u32) -> DecodeLimits {
        DecodeLimits { max_packet_size, max_user_properties: u32::MAX, max_user_property_bytes: u32::MAX }
    }
}

/// Decodes one packet from the front of `buf`.
///
/// * `version` is `None` until CONNECT has been decoded on the connection;
///   then only CONNECT is accepted, anything else is
///   [`DecodeError::FirstPacketNotConnect`]. A CONNECT is always decoded by
///   its own protocol level.
/// * `limits` ([`DecodeLimits`], or just a `u32` maximum packet size):
///   `max_packet_size` bounds the whole packet (fixed header included). It
///   is checked as soon as the fixed header is readable, before the body is
///   waited for.
///
/// `Ok(None)`: more bytes are needed; `buf` is untouched. `Ok(Some(p))`:
/// `buf` has been advanced past exactly that packet, and binary fields of
/// `p` are slices of its bytes. `Err(_)`: the connection must be closed;
/// `buf` is left as it was (so [`peek_connect_version`] still works).
///
/// A PUBLISH carrying a Subscription Identifier is rejected: this decodes
/// what a server receives, and a client must not send one.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    limits: impl Into<DecodeLimits>,
) -> Result<Option<Packet>, DecodeError> {
    let limits = limits.into();
    let max_packet_size = limits.max_packet_size;
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let (ty, flags) = (first >> 4, first & 0x0F);
    if version.is_none() && ty != kind::CONNECT {
        return Err(DecodeError::FirstPacketNotConnect);
    }
    check_fixed_header(ty, flags, version)?;
    let Some((len_bytes, remaining)) = remaining_length(&buf[1..])? else {
        return Ok(None);
    };
    let total = 1 + len_bytes + remaining;
    if total as u64 > u64::from(max_packet_size) {
        return Err(DecodeError::PacketTooLarge);
    }
    if buf.len() < total {
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let mut body = Reader::new(frame.slice(1 + len_bytes..));
    body.user_props = UserPropBudget { count: limits.max_user_properties, bytes: limits.max_user_property_bytes };
    match decode_body(ty, flags, body, version) {
        Ok(p) => Ok(Some(p)),
        Err(e) => {
            // Put the bytes back so the caller can still inspect them.
            let mut restored = BytesMut::with_capacity(frame.len() + buf.len());
            restored.extend_from_slice(&frame);
            restored.extend_from_slice(buf);
            *buf = restored;
            Err(e)
        }
    }
}

/// The protocol version of the CONNECT at the front of `buf`, read from the
/// protocol name and level only; the rest need not be valid or even present.
/// `None` if `buf` does not start with a CONNECT naming a supported
/// name/level pair. Use it to answer a CONNECT that failed to decode with a
/// v5 CONNACK (reason from [`DecodeError::v5_reason`]) or a v3 one (code
/// from [`DecodeError::v3_connack`]).
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    if buf.first()? >> 4 != kind::CONNECT {
        return None;
    }
    let (len_bytes, _) = remaining_length(buf.get(1..)?).ok()??;
    let body = buf.get(1 + len_bytes..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let name = body.get(2..2 + name_len)?;
    let level = *body.get(2 + name_len)?;
    protocol_of(name, level).ok()
}

/// Packet type and fixed-header flags, from the first byte alone.
fn check_fixed_header(ty: u8, flags: u8, version: Option<ProtocolVersion>) -> Result<(), DecodeError> {
    let v31 = version == Some(ProtocolVersion::V31);
    match ty {
        0 => Err(DecodeError::InvalidPacketType(0)),
        kind::AUTH if !version.is_some_and(ProtocolVersion::is_v5) => Err(DecodeError::InvalidPacketType(ty)),
        kind::PUBLISH => {
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(DecodeError::InvalidQoS);
            }
            // MQTT 3.1 did not forbid DUP on QoS 0.
            if qos == 0 && flags & 0b1000 != 0 && !v31 {
                return Err(DecodeError::Malformed("DUP flag set on a QoS 0 PUBLISH"));
            }
            Ok(())
        }
        // MQTT 3.1 could set DUP on retried PUBREL / SUBSCRIBE / UNSUBSCRIBE.
        kind::PUBREL | kind::SUBSCRIBE | kind::UNSUBSCRIBE => {
            if flags == 0b0010 || (v31 && flags == 0b1010) {
                Ok(())
            } else {
                Err(DecodeError::InvalidReservedFlags)
            }
        }
        _ if flags == 0 => Ok(()),
        _ => Err(DecodeError::InvalidReservedFlags),
    }
}

/// `Ok(None)` if the remaining length is not complete yet, else
/// `(bytes it takes, value)`.
fn remaining_length(b: &[u8]) -> Result<Option<(usize, usize)>, DecodeError> {
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((i + 1, value)));
        }
    }
    Err(DecodeError::MalformedRemainingLength)
}

fn decode_body(ty: u8, flags: u8, mut r: Reader, version: Option<ProtocolVersion>) -> Result<Packet, DecodeError> {
    if ty == kind::CONNECT {
        return connect(r).map(|c| Packet::Connect(Box::new(c)));
    }
    let Some(v) = version else {
        return Err(DecodeError::FirstPacketNotConnect);
    };
    let packet = match ty {
        kind::CONNACK => Packet::ConnAck(connack(&mut r, v)?),
        kind::PUBLISH => Packet::Publish(publish(&mut r, flags, v)?),
        kind::PUBACK => Packet::PubAck(pub_resp(&mut r, v, allowed::PUBACK)?),
        kind::PUBREC => Packet::PubRec(pub_resp(&mut r, v, allowed::PUBACK)?),
        kind::PUBREL => Packet::PubRel(pub_resp(&mut r, v, allowed::PUBREL)?),
        kind::PUBCOMP => Packet::PubComp(pub_resp(&mut r, v, allowed::PUBREL)?),
        kind::SUBSCRIBE => Packet::Subscribe(subscribe(&mut r, v)?),
        kind::SUBACK => Packet::SubAck(suback(&mut r, v)?),
        kind::UNSUBSCRIBE => Packet::Unsubscribe(unsubscribe(&mut r, v)?),
        kind::UNSUBACK => Packet::UnsubAck(unsuback(&mut r, v)?),
        kind::PINGREQ => Packet::PingReq,
        kind::PINGRESP => Packet::PingResp,
        kind::DISCONNECT => Packet::Disconnect(disconnect(&mut r, v)?),
        kind::AUTH => Packet::Auth(auth(&mut r)?),
        _ => return Err(DecodeError::InvalidPacketType(ty)),
    };
    r.finish()?;
    Ok(packet)
}

fn protocol_of(name: &[u8], level: u8) -> Result<ProtocolVersion, DecodeError> {
    match (name, level & 0x7F) {
        (b"MQIsdp", 3) => Ok(ProtocolVersion::V31),
        (b"MQTT", 4) => Ok(ProtocolVersion::V311),
        (b"MQTT", 5) => Ok(ProtocolVersion::V5),
        (b"MQIsdp" | b"MQTT", _) => Err(DecodeError::UnsupportedProtocolLevel(level)),
        _ => Err(DecodeError::InvalidProtocolName),
    }
}

fn props(r: &mut Reader, v: ProtocolVersion, ctx: PropCtx) -> Result<Properties, DecodeError> {
    if v.is_v5() {
        properties::decode(r, ctx)
    } else {
        Ok(Properties::default())
    }
}

fn reason(code: u8, allowed: &[u8]) -> Result<u8, DecodeError> {
    if allowed.contains(&code) {
        Ok(code)
    } else {
        Err(DecodeError::InvalidReasonCode(code))
    }
}

fn connect(mut r: Reader) -> Result<Connect, DecodeError> {
    let name = r.binary()?;
    let level = r.u8()?;
    let protocol = protocol_of(&name, level)?;
    let flags = r.u8()?;
    let keep_alive = r.u16()?;

    let will_flag = flags & 0x04 != 0;
    let will_qos = (flags >> 3) & 0b11;
    let will_retain = flags & 0x20 != 0;
    let password_flag = flags & 0x40 != 0;
    let username_flag = flags & 0x80 != 0;
    if flags & 0x01 != 0
        || (!will_flag && (will_qos != 0 || will_retain))
        || (password_flag && !username_flag && !protocol.is_v5())
    {
        return Err(DecodeError::ConnectFlagsInvalid);
    }
    let will_qos = QoS::from_u8(will_qos).ok_or(DecodeError::ConnectFlagsInvalid)?;

    let properties = props(&mut r, protocol, PropCtx::Connect)?;
    if properties.authentication_data.is_some() && properties.authentication_method.is_none() {
        return Err(DecodeError::ProtocolError("authentication data without a method"));
    }
    let client_id = r.string()?;
    let will = if will_flag {
        let properties = props(&mut r, protocol, PropCtx::Will)?;
        let topic = r.string()?;
        topic::validate_name(&topic).map_err(DecodeError::InvalidTopic)?;
        let payload = r.binary()?;
        Some(LastWill { topic, payload, qos: will_qos, retain: will_retain, properties })
    } else {
        None
    };
    let username = if username_flag { Some(r.string()?) } else { None };
    let password = if password_flag { Some(r.binary()?) } else { None };
    r.finish()?;
    Ok(Connect {
        protocol,
        bridge: level & 0x80 != 0,
        clean_start: flags & 0x02 != 0,
        keep_alive,
        client_id,
        will,
        username,
        password,
        properties,
    })
}

fn connack(r: &mut Reader, v: ProtocolVersion) -> Result<ConnAck, DecodeError> {
    let flags = r.u8()?;
    let code = r.u8()?;
    // In 3.1 the first byte is unused; later versions reserve bits 1-7.
    if v != ProtocolVersion::V31 && flags & 0xFE != 0 {
        return Err(DecodeError::InvalidReservedFlags);
    }
    let session_present = v != ProtocolVersion::V31 && flags & 0x01 != 0;
    let code = if v.is_v5() { reason(code, allowed::CONNACK)? } else { reason(code, &[0, 1, 2, 3, 4, 5])? };
    let properties = props(r, v, PropCtx::ConnAck)?;
    Ok(ConnAck { session_present, code, properties })
}

fn publish(r: &mut Reader, flags: u8, v: ProtocolVersion) -> Result<Publish, DecodeError> {
    let qos = QoS::from_u8((flags >> 1) & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let topic = r.string()?;
    // v5 allows an empty topic name when a topic alias stands in for it.
    if !(topic.is_empty() && v.is_v5()) {
        topic::validate_name(&topic).map_err(DecodeError::InvalidTopic)?;
    }
    let packet_id = if qos == QoS::AtMostOnce { None } else { Some(r.packet_id()?) };
    let properties = props(r, v, PropCtx::Publish)?;
    if !properties.subscription_identifiers.is_empty() {
        return Err(DecodeError::ProtocolError("subscription identifier in a PUBLISH from a client"));
    }
    if topic.is_empty() && properties.topic_alias.is_none() {
        return Err(DecodeError::ProtocolError("empty topic name without a topic alias"));
    }
    Ok(Publish {
        dup: flags & 0b1000 != 0,
        qos,
        retain: flags & 0b0001 != 0,
        topic,
        packet_id,
        payload: r.rest(),
        properties,
    })
}

/// PUBACK, PUBREC, PUBREL, PUBCOMP. On v5 the reason code and the
/// properties may be left out (remaining length 2 or 3).
fn pub_resp(r: &mut Reader, v: ProtocolVersion, codes: &[u8]) -> Result<PubResp, DecodeError> {
    let packet_id = r.packet_id()?;
    if !v.is_v5() || r.is_empty() {
        return Ok(PubResp::ok(packet_id));
    }
    let reason = reason(r.u8()?, codes)?;
    let properties = if r.is_empty() { Properties::default() } else { properties::decode(r, PropCtx::PubResp)? };
    Ok(PubResp { packet_id, reason, properties })
}

fn subscription_options(b: u8, v: ProtocolVersion) -> Result<SubscriptionOptions, DecodeError> {
    let reserved = if v.is_v5() { 0xC0 } else { 0xFC };
    if b & reserved != 0 {
        return Err(DecodeError::InvalidReservedFlags);
    }
    let qos = QoS::from_u8(b & 0b11).ok_or(DecodeError::InvalidQoS)?;
    let retain_handling = match (b >> 4) & 0b11 {
        0 => RetainHandling::OnSubscribe,
        1 => RetainHandling::OnNewSubscribe,
        2 => RetainHandling::Never,
        _ => return Err(DecodeError::ProtocolError("retain handling 3")),
    };
    Ok(SubscriptionOptions { qos, no_local: b & 0x04 != 0, retain_as_published: b & 0x08 != 0, retain_handling })
}

fn subscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Subscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props(r, v, PropCtx::Subscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        let options = subscription_options(r.u8()?, v)?;
        let parsed = SubscriptionFilter::parse(&filter).map_err(DecodeError::InvalidTopicFilter)?;
        if options.no_local && parsed.is_shared() {
            return Err(DecodeError::ProtocolError("no local on a shared subscription"));
        }
        filters.push((filter, options));
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError("SUBSCRIBE without a topic filter"));
    }
    Ok(Subscribe { packet_id, filters, properties })
}

fn unsubscribe(r: &mut Reader, v: ProtocolVersion) -> Result<Unsubscribe, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props(r, v, PropCtx::Unsubscribe)?;
    let mut filters = Vec::new();
    while !r.is_empty() {
        let filter = r.string()?;
        topic::validate_subscription(&filter).map_err(DecodeError::InvalidTopicFilter)?;
        filters.push(filter);
    }
    if filters.is_empty() {
        return Err(DecodeError::ProtocolError("UNSUBSCRIBE without a topic filter"));
    }
    Ok(Unsubscribe { packet_id, filters, properties })
}

fn suback(r: &mut Reader, v: ProtocolVersion) -> Result<SubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props(r, v, PropCtx::SubAck)?;
    let codes = if v.is_v5() { allowed::SUBACK } else { allowed::SUBACK_V3 };
    let mut return_codes = Vec::new();
    while !r.is_empty() {
        return_codes.push(reason(r.u8()?, codes)?);
    }
    if return_codes.is_empty() {
        return Err(DecodeError::Malformed("SUBACK without return codes"));
    }
    Ok(SubAck { packet_id, return_codes, properties })
}

fn unsuback(r: &mut Reader, v: ProtocolVersion) -> Result<UnsubAck, DecodeError> {
    let packet_id = r.packet_id()?;
    let properties = props(r, v, PropCtx::UnsubAck)?;
    let mut reason_codes = Vec::new();
    if v.is_v5() {
        while !r.is_empty() {
            reason_codes.push(reason(r.u8()?, allowed::UNSUBACK)?);
        }
        if reason_codes.is_empty() {
            return Err(DecodeError::Malformed("UNSUBACK without reason codes"));
        }
    }
    Ok(UnsubAck { packet_id, reason_codes, properties })
}

/// Reason code and properties of DISCONNECT / AUTH, each omittable.
fn reason_and_props(r: &mut Reader, codes: &[u8], ctx: PropCtx) -> Result<(u8, Properties), DecodeError> {
    if r.is_empty() {
        return Ok((0, Properties::default()));
    }
    let code = reason(r.u8()?, codes)?;
    let properties = if r.is_empty() { Properties::default() } else { properties::decode(r, ctx)? };
    Ok((code, properties))
}

fn disconnect(r: &mut Reader, v: ProtocolVersion) -> Result<Disconnect, DecodeError> {
    if !v.is_v5() {
        return Ok(Disconnect { reason: 0, properties: Properties::default() });
    }
    let (reason, properties) = reason_and_props(r, allowed::DISCONNECT, PropCtx::Disconnect)?;
    Ok(Disconnect { reason, properties })
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let (reason, properties) = reason_and_props(r, allowed::AUTH, PropCtx::Auth)?;
    Ok(Auth { reason, properties })
}
