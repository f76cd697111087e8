//! CONNECT → CONNACK, in four steps:
//!
//! 1. [`read_connect`] — the CONNECT, under the connect timeout, the
//!    CONNECT size limit and the pre-auth memory budget ([`super::preauth`]);
//! 2. [`identify`] — client id and username (from the CONNECT or the
//!    client certificate) and the checks that need no provider: lengths,
//!    the listener's client id pattern;
//! 3. admission ([`crate::admission`], shared with every protocol): the
//!    gate's authentication (or the MQTT 5 AUTH exchange's outcome), then
//!    the session, opened for the client's identity, and its client info;
//! 4. [`establish`] — the connection's state and the CONNACK.
//!
//! Every refusal is a [`Refusal`]: one CONNACK code per protocol version,
//! a v5 Reason String, one (rate-limited) log line.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{poll_read_chunk, BridgeAdmission, Conn, ListenerContext, Refusal, Ticket, Will};
use crate::admission::{self, log_refusal, Admission, Authenticated, Terms};
use crate::broker::Broker;
use crate::codec::{self, ConnAck, Connect, Packet, Properties, ProtocolVersion};
use crate::gate::{CertField, CertIdentity, ConnectInfo, Gate, Password};
use crate::logsafe::Peer;
use crate::message::Message;
use crate::session::Kick;
use crate::topic::TopicName;

async fn write_packet<W: AsyncWrite + Unpin>(broker: &Broker, writer: &mut W, p: &Packet, version: ProtocolVersion) {
    let mut buf = BytesMut::new();
    if codec::encode(p, version, &mut buf).is_ok() {
        let ty = buf.first().map_or(0, |b| b >> 4);
        broker.metrics.packet_sent(ty, buf.len());
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = writer.write_all(&buf).await;
            let _ = writer.shutdown().await;
        })
        .await;
    }
}

/// Sends a refusing CONNACK with a raw code and counts it.
async fn refuse_code<W: AsyncWrite + Unpin>(
    broker: &Broker,
    writer: &mut W,
    version: ProtocolVersion,
    code: u8,
    reason: Option<&str>,
) {
    broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
    let mut properties = Properties::default();
    if version.is_v5() {
        properties.reason_string = reason.map(str::to_string);
    }
    let ack = Packet::ConnAck(ConnAck { session_present: false, code, properties });
    write_packet(broker, writer, &ack, version).await;
}

/// The client's CONNECT, as far as a refusal needs it.
#[derive(Clone, Copy)]
struct Asker {
    version: ProtocolVersion,
    /// v5 Request Problem Information: 0 = no Reason String.
    problem_info: bool,
}

impl Asker {
    fn of(c: &Connect) -> Asker {
        Asker { version: c.protocol, problem_info: c.properties.request_problem_information != Some(0) }
    }

    async fn refuse<W: AsyncWrite + Unpin>(self, broker: &Broker, writer: &mut W, r: Refusal) {
        let reason = self.problem_info.then(|| r.reason());
        refuse_code(broker, writer, self.version, r.code(self.version.is_v5()), reason).await;
    }
}

fn assigned_id() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("auto-{n:032x}")
}

/// Reads the CONNECT. `None`: the socket is to be closed (timeout, EOF, a
/// bad or oversized CONNECT — answered where MQTT says so — or the
/// pre-auth budget spent).
async fn read_connect<R, W>(
    broker: &Broker,
    listener: &ListenerContext,
    io: &mut HandshakeIo<'_, '_, R, W>,
) -> Option<Box<Connect>>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    match read_packet(broker, listener, io, None).await? {
        Packet::Connect(c) => Some(c),
        _ => None,
    }
}

/// What the handshake reads and writes through, and its deadline (the
/// connect timeout, which covers an enhanced-authentication exchange too).
pub(super) struct HandshakeIo<'a, 't, R, W> {
    pub reader: &'a mut R,
    pub writer: &'a mut W,
    pub rbuf: &'a mut BytesMut,
    pub ticket: &'a mut Ticket<'t>,
    pub deadline: Instant,
}

/// Reads the next packet of the handshake: the CONNECT (`version` None) or
/// an AUTH of an enhanced-authentication exchange (`version` the
/// CONNECT's). `None`: the socket is to be closed (see [`read_connect`]).
pub(super) async fn read_packet<R, W>(
    broker: &Broker,
    listener: &ListenerContext,
    io: &mut HandshakeIo<'_, '_, R, W>,
    version: Option<ProtocolVersion>,
) -> Option<Packet>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let limits = &broker.settings.limits;
    let max = listener.max_packet_size(limits).min(limits.max_connect_size);
    let decode_limits = limits.decode_limits(max);
    let HandshakeIo { reader, writer, rbuf, ticket, deadline } = io;
    loop {
        let before = rbuf.len();
        let ty = rbuf.first().map_or(0, |b| b >> 4);
        match codec::decode(rbuf, version, decode_limits) {
            Ok(Some(p)) => {
                broker.metrics.packet_received(ty, before - rbuf.len());
                return Some(p);
            }
            Ok(None) => {}
            Err(e) => {
                broker.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, packet_type = ty, "invalid packet before CONNACK");
                // The decoder leaves the buffer untouched on error, so the client's
                // protocol level can still be read to answer in its version.
                let reason = e.to_string();
                match version.or_else(|| codec::peek_connect_version(rbuf)) {
                    Some(ProtocolVersion::V5) => {
                        refuse_code(broker, writer, ProtocolVersion::V5, e.v5_reason(), Some(&reason)).await;
                    }
                    v => {
                        if let Some(code) = e.v3_connack() {
                            refuse_code(broker, writer, v.unwrap_or(ProtocolVersion::V311), code, None).await;
                        }
                    }
                }
                return None;
            }
        }
        // One read through the stack buffer, appended only if the budget
        // covers the buffer it grows into.
        let mut over_budget = false;
        let read = std::future::poll_fn(|cx| {
            poll_read_chunk(cx, reader, |got| {
                // What the buffer will hold: its capacity, which grows as a
                // Vec's does (at least doubling) when it must grow.
                let needed = rbuf.len() + got.len();
                let capacity = if needed > rbuf.capacity() { needed.max(2 * rbuf.capacity()) } else { rbuf.capacity() };
                if ticket.hold(capacity) {
                    rbuf.reserve(got.len());
                    rbuf.extend_from_slice(got);
                } else {
                    over_budget = true;
                }
            })
        });
        match tokio::time::timeout_at(*deadline, read).await {
            Err(_) => {
                debug!("handshake not complete within the connect timeout; closing");
                broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(_)) if over_budget => {
                debug!(buffered = rbuf.len(), "pre-auth memory budget spent; closing");
                broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Who the CONNECT says it is, after the listener's certificate rules.
struct Identity {
    client_id: Arc<str>,
    /// The id the broker chose or took from the certificate, to tell a v5
    /// client.
    assigned: Option<String>,
    username: Option<Arc<str>>,
}

/// Client id and username, and every check that needs no provider.
fn identify(
    connect: &Connect,
    listener: &ListenerContext,
    broker: &Broker,
    cert: Option<&CertIdentity>,
) -> Result<Identity, Refusal> {
    let limits = &broker.settings.limits;
    let from_cert = |field: Option<CertField>, what: &str| -> Result<Option<String>, Refusal> {
        let Some(field) = field else { return Ok(None) };
        match cert.and_then(|c| c.field(field)) {
            Some(v) => Ok(Some(v.to_string())),
            None => {
                debug!(?field, "no {what} in the client certificate");
                Err(Refusal::CertFieldMissing)
            }
        }
    };
    let cert_client_id = from_cert(listener.options.cert_as_client_id, "client id")?;
    let cert_username = from_cert(listener.options.cert_as_username, "username")?;

    let username: Option<Arc<str>> = match cert_username {
        Some(u) => Some(Arc::from(u)),
        None => connect.username.as_deref().map(Arc::from),
    };
    if username.as_ref().is_some_and(|u| u.len() > limits.max_username_len) {
        return Err(Refusal::UsernameTooLong);
    }

    let mut client_id = connect.client_id.clone();
    let mut assigned = None;
    let mut chosen_by_broker = false;
    if let Some(id) = cert_client_id {
        // A v5 client learns the id it got; a 3.x client cannot be told.
        if id != client_id {
            assigned = Some(id.clone());
        }
        client_id = id;
    } else if client_id.is_empty() {
        let allowed = match connect.protocol {
            ProtocolVersion::V31 => false,
            ProtocolVersion::V311 => connect.clean_start,
            ProtocolVersion::V5 => true,
        };
        if !allowed {
            return Err(Refusal::EmptyClientId);
        }
        client_id = assigned_id();
        assigned = Some(client_id.clone());
        chosen_by_broker = true;
    }
    if client_id.len() > limits.max_client_id_len {
        return Err(Refusal::ClientIdTooLong);
    }
    if let (Some(p), false) = (&listener.options.client_id_pattern, chosen_by_broker) {
        let cn = cert.and_then(|c| c.common_name.as_deref());
        if !p.matches(&client_id, username.as_deref(), cn) {
            return Err(Refusal::ClientIdPattern);
        }
    }
    Ok(Identity { client_id: Arc::from(client_id), assigned, username })
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn handshake<R, W>(
    broker: &Arc<Broker>,
    gate: Arc<dyn Gate>,
    listener: &ListenerContext,
    reader: &mut R,
    mut writer: W,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    cert: Option<Arc<CertIdentity>>,
) -> Option<(Box<Conn<W>>, oneshot::Receiver<Kick>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    // The ticket (a place among the handshakes in progress from this
    // address, and the buffer budget) is held until CONNACK.
    let Some(mut ticket) = broker.preauth.enter(peer.ip()) else {
        debug!("too many CONNECTs in progress from this address; closing");
        broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let deadline = Instant::now() + broker.settings.limits.connect_timeout;
    let mut io =
        HandshakeIo { reader: &mut *reader, writer: &mut writer, rbuf: &mut *rbuf, ticket: &mut ticket, deadline };
    let connect = read_connect(broker, listener, &mut io).await?;
    let asker = Asker::of(&connect);

    if connect.bridge && listener.options.bridges == BridgeAdmission::Refuse {
        let r = Refusal::BridgeRefused;
        log_refusal(broker, r, &connect.client_id, connect.username.as_deref());
        asker.refuse(broker, &mut writer, r).await;
        return None;
    }
    let id = match identify(&connect, listener, broker, cert.as_deref()) {
        Ok(id) => id,
        Err(r) => {
            log_refusal(broker, r, &connect.client_id, connect.username.as_deref());
            asker.refuse(broker, &mut writer, r).await;
            return None;
        }
    };
    let pre_auth = if broker.is_shutting_down() {
        Some(Refusal::ShuttingDown)
    } else if connect.will.as_ref().is_some_and(|w| w.retain) && !broker.retained.enabled() {
        Some(Refusal::RetainUnavailable)
    } else {
        None
    };
    if let Some(r) = pre_auth {
        log_refusal(broker, r, &id.client_id, id.username.as_deref());
        asker.refuse(broker, &mut writer, r).await;
        return None;
    }

    let mut id = id;
    let mut info = ConnectInfo {
        client_id: id.client_id.clone(),
        username: id.username.clone(),
        password: connect.password.clone().map(Password::new),
        peer,
        listener: listener.name.clone(),
        protocol: connect.protocol.into(),
        cert,
    };
    // MQTT 5 enhanced authentication (an Authentication Method in the
    // CONNECT) runs its AUTH exchange in place of the password check.
    let (auth, auth_reply) = match connect.properties.authentication_method.as_deref() {
        None => (admission::authenticate(broker, &*gate, &info).await, None),
        Some(method) => {
            let mut io = HandshakeIo {
                reader: &mut *reader,
                writer: &mut writer,
                rbuf: &mut *rbuf,
                ticket: &mut ticket,
                deadline,
            };
            match super::enhanced::at_connect(broker, &*gate, listener, &connect, method, &info, &mut io).await {
                Ok(done) => {
                    if id.username.is_none() {
                        id.username = done.username.clone();
                        info.username = done.username.clone();
                    }
                    let reply = super::enhanced::Reply { method: method.to_string(), data: done.data };
                    (Authenticated::from_outcome(broker, &info, done.outcome), Some(reply))
                }
                Err(super::enhanced::Failed::Refuse(r)) => {
                    log_refusal(broker, r, &id.client_id, id.username.as_deref());
                    asker.refuse(broker, &mut writer, r).await;
                    return None;
                }
                Err(super::enhanced::Failed::Closed) => return None,
            }
        }
    };
    let auth = match auth {
        Ok(a) => a,
        Err(r) => {
            asker.refuse(broker, &mut writer, r).await;
            return None;
        }
    };

    // Session expiry.
    let session_settings = &broker.settings.session;
    let connect_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
    let expiry = match connect.protocol {
        ProtocolVersion::V5 => {
            Some(Duration::from_secs(u64::from(connect_expiry)).min(session_settings.max_session_expiry))
        }
        _ if connect.clean_start => Some(Duration::ZERO),
        _ => session_settings.v3_session_expiry,
    };
    let (keep_alive, server_keep_alive) = negotiate_keep_alive(broker, &connect);
    let terms = Terms { clean_start: connect.clean_start, expiry, keep_alive };
    let admission = match admission::open(broker, info, auth, terms).await {
        Ok(a) => a,
        Err(r) => {
            asker.refuse(broker, &mut writer, r).await;
            return None;
        }
    };
    drop(ticket);
    let admitted = Admitted { assigned: id.assigned, server_keep_alive, expiry, connect_expiry, auth_reply };
    let present = admission.session_present;
    let (mut conn, kicked) = establish(broker, gate, listener, writer, &connect, admitted, admission);
    // Before the CONNACK (queued, not written yet) reaches the client: a
    // SUBACK it gets later then finds the will row durable too.
    conn.store_will(present).await;
    Some((conn, kicked))
}

/// The keep-alive in force and, when the cap changed it, the value a v5
/// client is told (Server Keep Alive).
fn negotiate_keep_alive(broker: &Broker, connect: &Connect) -> (u16, Option<u16>) {
    let max_ka = broker.settings.limits.max_keep_alive;
    let keep_alive = connect.keep_alive;
    if connect.protocol.is_v5() && max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
        return (max_ka, Some(max_ka));
    }
    (keep_alive, None)
}

/// What the CONNACK tells a client the admission step let in.
struct Admitted {
    /// The client id the broker chose or took from the certificate.
    assigned: Option<String>,
    /// The capped keep-alive, to tell a v5 client.
    server_keep_alive: Option<u16>,
    expiry: Option<Duration>,
    connect_expiry: u32,
    /// The enhanced-authentication method and the server's last data, for
    /// the CONNACK (and the method, for re-authentication).
    auth_reply: Option<super::enhanced::Reply>,
}

/// Builds the connection and queues its CONNACK.
fn establish<W: AsyncWrite + Unpin + Send>(
    broker: &Arc<Broker>,
    gate: Arc<dyn Gate>,
    listener: &ListenerContext,
    writer: W,
    connect: &Connect,
    a: Admitted,
    admission: Admission,
) -> (Box<Conn<W>>, oneshot::Receiver<Kick>) {
    let limits = &broker.settings.limits;
    let session_settings = &broker.settings.session;
    let version = connect.protocol;
    let max_packet_size = listener.max_packet_size(limits);

    let client = Arc::clone(&admission.client);
    let keep_alive = client.keep_alive;
    let mut props = Properties::default();
    if version.is_v5() {
        props.assigned_client_identifier = a.assigned;
        props.server_keep_alive = a.server_keep_alive;
        props.receive_maximum = Some(session_settings.max_awaiting_rel);
        props.maximum_packet_size = Some(max_packet_size);
        props.topic_alias_maximum = Some(limits.max_topic_alias);
        if !broker.retained.enabled() {
            props.retain_available = Some(0);
        }
        if let Some(r) = &a.auth_reply {
            props.authentication_method = Some(r.method.clone());
            props.authentication_data = r.data.clone();
        }
        if Some(Duration::from_secs(u64::from(a.connect_expiry))) != a.expiry && a.connect_expiry != 0 {
            // The cap applied: tell the client what it got.
            props.session_expiry_interval = a.expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
    }

    let client_id = client.client_id.clone();
    let will = connect.will.as_ref().and_then(|w| {
        let topic = TopicName::new(&w.topic).ok()?;
        let expires_at =
            w.properties.message_expiry_interval.map(|s| std::time::Instant::now() + Duration::from_secs(u64::from(s)));
        Some(Box::new(Will {
            msg: Arc::new(Message {
                topic,
                payload: w.payload.clone(),
                qos: w.qos,
                retain: w.retain,
                properties: Message::forwarded_properties(&w.properties),
                publisher: Some(client_id.clone()),
                expires_at,
            }),
            delay: Duration::from_secs(u64::from(w.properties.will_delay_interval.unwrap_or(0))),
            stored: false,
        }))
    });

    let receive_max = usize::from(connect.properties.receive_maximum.unwrap_or(u16::MAX));
    let mut conn = Conn {
        broker: Arc::clone(broker),
        gate,
        conn_id: client.conn_id,
        client,
        session: Arc::clone(&admission.session),
        generation: admission.generation,
        version,
        writer,
        wbuf: BytesMut::new(),
        keep_alive_secs: keep_alive,
        client_max_packet: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        window: usize::from(session_settings.max_inflight).min(receive_max).max(1),
        client_alias_max: if version.is_v5() { connect.properties.topic_alias_maximum.unwrap_or(0) } else { 0 },
        out_aliases: Default::default(),
        in_aliases: Default::default(),
        pending_acks: None,
        will,
        bridge: connect.bridge,
        connect_expiry: a.connect_expiry,
        max_packet_size,
        publish_memo: None,
        auth_deadline: None,
        enhanced: a.auth_reply.map(|r| Box::new(super::enhanced::EnhancedAuth::new(r.method))),
    };
    conn.set_auth_deadline(admission.auth_expires);
    let session_present = admission.session_present;
    conn.send(&Packet::ConnAck(ConnAck { session_present, code: 0, properties: props }));
    info!(
        client_id = %Peer(&client_id),
        protocol = ?version,
        clean_start = connect.clean_start,
        session_present,
        keep_alive,
        bridge = connect.bridge,
        "client connected"
    );
    admission.announce(broker, &conn.gate, connect.clean_start);
    (Box::new(conn), admission.kicked)
}
