//! [`Packet`] → bytes for a given protocol version.
//!
//! Every packet type has a `*_len` function (size of the body) and a writer
//! next to it; [`encoded_len`] adds the fixed header to the first, [`encode`]
//! writes both. Fields a version does not have are skipped: properties and
//! reason codes on 3.x, the session-present flag on 3.1. The v5 short forms
//! (PUBACK and friends without reason or properties, an empty DISCONNECT
//! or AUTH) are used whenever they say the same thing.

use bytes::{BufMut, BytesMut};

use super::error::EncodeError;
use super::properties::{self, PropCtx};
use super::types::*;
use super::wire::{self, binary_len, put_binary, put_str, MAX_VARINT};

/// Appends the encoding of `packet` for `version` to `buf`.
///
/// A CONNECT is encoded for its own `protocol` field, whatever `version`
/// says. On error nothing is appended.
pub fn encode(packet: &Packet, version: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if matches!(packet, Packet::Auth(_)) && !version.is_v5() {
        return Err(EncodeError::NotInVersion("AUTH"));
    }
    let body = body_len(packet, version);
    if body > MAX_VARINT as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    let start = buf.len();
    buf.reserve(1 + wire::varint_len(body) + body);
    let res = write(packet, version, body, buf);
    if res.is_err() {
        buf.truncate(start);
    }
    res
}

/// Exact size of the encoding of `packet` (fixed header included), for
/// honouring a peer's Maximum Packet Size before encoding.
pub fn encoded_len(packet: &Packet, version: ProtocolVersion) -> usize {
    let body = body_len(packet, version);
    1 + wire::varint_len(body) + body
}

fn write(packet: &Packet, v: ProtocolVersion, body: usize, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u8(first_byte(packet, v));
    wire::put_varint(buf, body)?;
    match packet {
        Packet::Connect(c) => write_connect(c, buf),
        Packet::ConnAck(c) => write_connack(c, v, buf),
        Packet::Publish(p) => PublishRef::of(p).write_body(v, buf),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => write_pub_resp(r, v, buf),
        Packet::Subscribe(s) => write_subscribe(s, v, buf),
        Packet::SubAck(s) => write_suback(s, v, buf),
        Packet::Unsubscribe(u) => write_unsubscribe(u, v, buf),
        Packet::UnsubAck(u) => write_unsuback(u, v, buf),
        Packet::PingReq | Packet::PingResp => Ok(()),
        Packet::Disconnect(d) => write_reason_and_props(d.reason, &d.properties, PropCtx::Disconnect, v, buf),
        Packet::Auth(a) => write_reason_and_props(a.reason, &a.properties, PropCtx::Auth, v, buf),
    }
}

fn first_byte(packet: &Packet, v: ProtocolVersion) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => PublishRef::of(p).first_byte(v),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

fn body_len(packet: &Packet, v: ProtocolVersion) -> usize {
    match packet {
        Packet::Connect(c) => connect_len(c),
        Packet::ConnAck(c) => 2 + props_len(&c.properties, PropCtx::ConnAck, v),
        Packet::Publish(p) => PublishRef::of(p).body_len(v),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => pub_resp_len(r, v),
        Packet::Subscribe(s) => {
            2 + props_len(&s.properties, PropCtx::Subscribe, v)
                + s.filters.iter().map(|(f, _)| binary_len(f.as_bytes()) + 1).sum::<usize>()
        }
        Packet::SubAck(s) => 2 + props_len(&s.properties, PropCtx::SubAck, v) + s.return_codes.len(),
        Packet::Unsubscribe(u) => {
            2 + props_len(&u.properties, PropCtx::Unsubscribe, v)
                + u.filters.iter().map(|f| binary_len(f.as_bytes())).sum::<usize>()
        }
        Packet::UnsubAck(u) if v.is_v5() => 2 + props_len(&u.properties, PropCtx::UnsubAck, v) + u.reason_codes.len(),
        Packet::UnsubAck(_) => 2,
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(d) => reason_and_props_len(d.reason, &d.properties, PropCtx::Disconnect, v),
        Packet::Auth(a) => reason_and_props_len(a.reason, &a.properties, PropCtx::Auth, v),
    }
}

/// Size of a property block on v5, nothing on 3.x.
fn props_len(p: &Properties, ctx: PropCtx, v: ProtocolVersion) -> usize {
    if v.is_v5() {
        properties::encoded_len(p, ctx)
    } else {
        0
    }
}

fn write_props(p: &Properties, ctx: PropCtx, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    if v.is_v5() {
        properties::encode(p, ctx, buf)?;
    }
    Ok(())
}

fn protocol_name(v: ProtocolVersion) -> &'static str {
    match v {
        ProtocolVersion::V31 => "MQIsdp",
        ProtocolVersion::V311 | ProtocolVersion::V5 => "MQTT",
    }
}

fn connect_len(c: &Connect) -> usize {
    let v = c.protocol;
    let mut n = binary_len(protocol_name(v).as_bytes()) + 1 + 1 + 2;
    n += props_len(&c.properties, PropCtx::Connect, v);
    n += binary_len(c.client_id.as_bytes());
    if let Some(w) = &c.will {
        n += props_len(&w.properties, PropCtx::Will, v);
        n += binary_len(w.topic.as_bytes()) + binary_len(&w.payload);
    }
    n += c.username.as_ref().map_or(0, |u| binary_len(u.as_bytes()));
    n += c.password.as_ref().map_or(0, |p| binary_len(p));
    n
}

fn write_connect(c: &Connect, buf: &mut BytesMut) -> Result<(), EncodeError> {
    let v = c.protocol;
    put_str(buf, protocol_name(v))?;
    buf.put_u8(v.level() | if c.bridge { 0x80 } else { 0 });
    let mut flags = 0u8;
    if c.clean_start {
        flags |= 0x02;
    }
    if let Some(w) = &c.will {
        flags |= 0x04 | ((w.qos as u8) << 3);
        if w.retain {
            flags |= 0x20;
        }
    }
    if c.password.is_some() {
        flags |= 0x40;
    }
    if c.username.is_some() {
        flags |= 0x80;
    }
    buf.put_u8(flags);
    buf.put_u16(c.keep_alive);
    write_props(&c.properties, PropCtx::Connect, v, buf)?;
    put_str(buf, &c.client_id)?;
    if let Some(w) = &c.will {
        write_props(&w.properties, PropCtx::Will, v, buf)?;
        put_str(buf, &w.topic)?;
        put_binary(buf, &w.payload)?;
    }
    if let Some(u) = &c.username {
        put_str(buf, u)?;
    }
    if let Some(p) = &c.password {
        put_binary(buf, p)?;
    }
    Ok(())
}

fn write_connack(c: &ConnAck, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    // 3.1 has no session-present flag.
    buf.put_u8(u8::from(c.session_present && v != ProtocolVersion::V31));
    buf.put_u8(c.code);
    write_props(&c.properties, PropCtx::ConnAck, v, buf)
}

/// A PUBLISH made of borrowed parts, so that a broker can encode one copy
/// of a shared message per subscriber without building an owned
/// [`Publish`] (topic `String`, `Properties`) for each.
#[derive(Clone, Copy, Debug)]
pub struct PublishRef<'a> {
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// May be empty on v5 when a topic alias is set.
    pub topic: &'a str,
    /// Required for QoS 1 and 2.
    pub packet_id: Option<u16>,
    /// Written on v5 only.
    pub properties: &'a Properties,
    pub payload: &'a [u8],
}

impl<'a> PublishRef<'a> {
    pub fn of(p: &'a Publish) -> PublishRef<'a> {
        PublishRef {
            dup: p.dup,
            qos: p.qos,
            retain: p.retain,
            topic: &p.topic,
            packet_id: p.packet_id,
            properties: &p.properties,
            payload: &p.payload,
        }
    }

    /// Exact size of the encoding (fixed header included).
    pub fn encoded_len(&self, v: ProtocolVersion) -> usize {
        let body = self.body_len(v);
        1 + wire::varint_len(body) + body
    }

    /// Appends the encoding to `buf`; on error nothing is appended.
    pub fn encode(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let body = self.body_len(v);
        if body > MAX_VARINT as usize {
            return Err(EncodeError::PacketTooLarge);
        }
        let start = buf.len();
        buf.reserve(1 + wire::varint_len(body) + body);
        buf.put_u8(self.first_byte(v));
        let res = wire::put_varint(buf, body).and_then(|()| self.write_body(v, buf));
        if res.is_err() {
            buf.truncate(start);
        }
        res
    }

    fn first_byte(&self, v: ProtocolVersion) -> u8 {
        // DUP is meaningless on QoS 0 and forbidden there since 3.1.1.
        let dup = self.dup && (self.qos != QoS::AtMostOnce || v == ProtocolVersion::V31);
        0x30 | (u8::from(dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }

    fn body_len(&self, v: ProtocolVersion) -> usize {
        let id = if self.qos == QoS::AtMostOnce { 0 } else { 2 };
        binary_len(self.topic.as_bytes()) + id + props_len(self.properties, PropCtx::Publish, v) + self.payload.len()
    }

    fn write_body(&self, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
        put_str(buf, self.topic)?;
        if self.qos != QoS::AtMostOnce {
            buf.put_u16(self.packet_id.ok_or(EncodeError::MissingPacketId)?);
        }
        write_props(self.properties, PropCtx::Publish, v, buf)?;
        buf.put_slice(self.payload);
        Ok(())
    }
}

/// Which v5 short form a PUBACK-like packet takes: 2, 3 or more bytes.
fn pub_resp_len(r: &PubResp, v: ProtocolVersion) -> usize {
    if !v.is_v5() {
        2
    } else if properties::is_empty(&r.properties, PropCtx::PubResp) {
        if r.reason == 0 {
            2
        } else {
            3
        }
    } else {
        3 + properties::encoded_len(&r.properties, PropCtx::PubResp)
    }
}

fn write_pub_resp(r: &PubResp, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u16(r.packet_id);
    match pub_resp_len(r, v) {
        2 => Ok(()),
        3 => {
            buf.put_u8(r.reason);
            Ok(())
        }
        _ => {
            buf.put_u8(r.reason);
            properties::encode(&r.properties, PropCtx::PubResp, buf)
        }
    }
}

fn subscription_options(o: &SubscriptionOptions, v: ProtocolVersion) -> u8 {
    let mut b = o.qos as u8;
    if v.is_v5() {
        b |= u8::from(o.no_local) << 2;
        b |= u8::from(o.retain_as_published) << 3;
        b |= (o.retain_handling as u8) << 4;
    }
    b
}

fn write_subscribe(s: &Subscribe, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u16(s.packet_id);
    write_props(&s.properties, PropCtx::Subscribe, v, buf)?;
    for (filter, options) in &s.filters {
        put_str(buf, filter)?;
        buf.put_u8(subscription_options(options, v));
    }
    Ok(())
}

fn write_suback(s: &SubAck, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u16(s.packet_id);
    write_props(&s.properties, PropCtx::SubAck, v, buf)?;
    for &code in &s.return_codes {
        // 3.x knows only granted QoS 0-2 and the one failure code 0x80.
        let code = if !v.is_v5() && code > 2 { 0x80 } else { code };
        buf.put_u8(code);
    }
    Ok(())
}

fn write_unsubscribe(u: &Unsubscribe, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u16(u.packet_id);
    write_props(&u.properties, PropCtx::Unsubscribe, v, buf)?;
    for filter in &u.filters {
        put_str(buf, filter)?;
    }
    Ok(())
}

fn write_unsuback(u: &UnsubAck, v: ProtocolVersion, buf: &mut BytesMut) -> Result<(), EncodeError> {
    buf.put_u16(u.packet_id);
    if v.is_v5() {
        properties::encode(&u.properties, PropCtx::UnsubAck, buf)?;
        buf.put_slice(&u.reason_codes);
    }
    Ok(())
}

/// DISCONNECT and AUTH: empty when the reason is 0 and there are no
/// properties (always on 3.x), else the reason code and the properties.
fn reason_and_props_len(reason: u8, p: &Properties, ctx: PropCtx, v: ProtocolVersion) -> usize {
    if !v.is_v5() || (reason == 0 && properties::is_empty(p, ctx)) {
        0
    } else {
        1 + properties::encoded_len(p, ctx)
    }
}

fn write_reason_and_props(
    reason: u8,
    p: &Properties,
    ctx: PropCtx,
    v: ProtocolVersion,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if reason_and_props_len(reason, p, ctx, v) == 0 {
        return Ok(());
    }
    buf.put_u8(reason);
    properties::encode(p, ctx, buf)
}
