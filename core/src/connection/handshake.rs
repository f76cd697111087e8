//! CONNECT → CONNACK: read under the connect timeout, validate, authenticate,
//! open or resume the session.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::{Conn, ListenerContext, Will};
use crate::broker::Broker;
use crate::codec::reason::{v3, v5};
use crate::codec::{self, ConnAck, Connect, Packet, Properties, ProtocolVersion};
use crate::gate::{AuthOutcome, CertField, CertIdentity, ClientInfo, ConnectInfo, DenyReason, Gate, Password};
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

/// Sends a refusing CONNACK (v3 return code or v5 reason) and counts it.
async fn refuse<W: AsyncWrite + Unpin>(
    broker: &Broker,
    writer: &mut W,
    version: ProtocolVersion,
    v3code: u8,
    v5code: u8,
) {
    broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
    let code = if version.is_v5() { v5code } else { v3code };
    let ack = Packet::ConnAck(ConnAck { session_present: false, code, properties: Properties::default() });
    write_packet(broker, writer, &ack, version).await;
}

fn assigned_id() -> String {
    use rand::Rng;
    let n: u128 = rand::thread_rng().gen();
    format!("auto-{n:032x}")
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn handshake<R, W>(
    broker: &Arc<Broker>,
    gate: Arc<dyn Gate>,
    listener: &Arc<ListenerContext>,
    reader: &mut R,
    mut writer: W,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    cert: Option<Arc<CertIdentity>>,
    over_limit: bool,
) -> Option<(Box<Conn<W>>, oneshot::Receiver<Kick>)>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send,
{
    let limits = &broker.settings.limits;
    let max_packet_size = listener.max_packet_size(limits);
    let deadline = Instant::now() + limits.connect_timeout;
    let connect: Box<Connect> = loop {
        let before = rbuf.len();
        match codec::decode(rbuf, None, max_packet_size) {
            Ok(Some(Packet::Connect(c))) => {
                broker.metrics.packet_received(1, before - rbuf.len());
                break c;
            }
            Ok(Some(_)) => return None,
            Ok(None) => match tokio::time::timeout_at(deadline, reader.read_buf(rbuf)).await {
                Err(_) => {
                    debug!("no CONNECT within the connect timeout; closing");
                    broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
                    return None;
                }
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => continue,
            },
            Err(e) => {
                broker.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "invalid CONNECT");
                // The decoder leaves the buffer untouched on error, so the client's
                // protocol level can still be read to answer in its version.
                match codec::peek_connect_version(rbuf) {
                    Some(ProtocolVersion::V5) => {
                        refuse(broker, &mut writer, ProtocolVersion::V5, 0, e.v5_reason()).await;
                    }
                    Some(v) => {
                        if let Some(code) = e.v3_connack() {
                            refuse(broker, &mut writer, v, code, 0).await;
                        }
                    }
                    None => {
                        if let Some(code) = e.v3_connack() {
                            refuse(broker, &mut writer, ProtocolVersion::V311, code, 0).await;
                        }
                    }
                }
                return None;
            }
        }
    };
    let version = connect.protocol;

    // Identity taken from the client certificate, when the listener says so.
    let from_cert = |field: Option<CertField>, what: &str| -> Result<Option<String>, ()> {
        let Some(field) = field else { return Ok(None) };
        match cert.as_deref().and_then(|c| c.field(field)) {
            Some(v) => Ok(Some(v.to_string())),
            None => {
                info!(?field, "connection refused: no {what} in the client certificate");
                Err(())
            }
        }
    };
    let (Ok(cert_client_id), Ok(cert_username)) = (
        from_cert(listener.options.cert_as_client_id, "client id"),
        from_cert(listener.options.cert_as_username, "username"),
    ) else {
        refuse(broker, &mut writer, version, v3::NOT_AUTHORIZED, v5::NOT_AUTHORIZED).await;
        return None;
    };

    // Client identifier.
    let mut client_id = connect.client_id.clone();
    let mut assigned = None;
    if let Some(id) = cert_client_id {
        // A v5 client learns the id it got; a 3.x client cannot be told.
        if id != client_id {
            assigned = Some(id.clone());
        }
        client_id = id;
    } else if client_id.is_empty() {
        let allowed = match version {
            ProtocolVersion::V31 => false,
            ProtocolVersion::V311 => connect.clean_start,
            ProtocolVersion::V5 => true,
        };
        if !allowed {
            refuse(broker, &mut writer, version, v3::IDENTIFIER_REJECTED, v5::CLIENT_IDENTIFIER_NOT_VALID).await;
            return None;
        }
        client_id = assigned_id();
        assigned = Some(client_id.clone());
    }
    if client_id.len() > limits.max_client_id_len {
        debug!(len = client_id.len(), max = limits.max_client_id_len, "client id too long");
        refuse(broker, &mut writer, version, v3::IDENTIFIER_REJECTED, v5::CLIENT_IDENTIFIER_NOT_VALID).await;
        return None;
    }
    if connect.properties.authentication_method.is_some() {
        refuse(broker, &mut writer, version, v3::NOT_AUTHORIZED, v5::BAD_AUTHENTICATION_METHOD).await;
        return None;
    }
    if over_limit {
        warn!(listener = %listener.name, max = listener.max_connections, "connection limit reached; refusing");
        refuse(broker, &mut writer, version, v3::SERVER_UNAVAILABLE, v5::QUOTA_EXCEEDED).await;
        return None;
    }
    if broker.is_shutting_down() {
        refuse(broker, &mut writer, version, v3::SERVER_UNAVAILABLE, v5::SERVER_SHUTTING_DOWN).await;
        return None;
    }
    if let Some(w) = &connect.will {
        if w.retain && !broker.retained.enabled() {
            refuse(broker, &mut writer, version, v3::NOT_AUTHORIZED, v5::RETAIN_NOT_SUPPORTED).await;
            return None;
        }
    }

    let client_id: Arc<str> = Arc::from(client_id);
    let username: Option<Arc<str>> = match cert_username {
        Some(u) => Some(Arc::from(u)),
        None => connect.username.as_deref().map(Arc::from),
    };
    let info = ConnectInfo {
        client_id: client_id.clone(),
        username: username.clone(),
        password: connect.password.clone().map(Password::new),
        peer,
        listener: listener.name.clone(),
        protocol: version,
        cert,
    };
    let (superuser, context) = match gate.authenticate(&info).await {
        AuthOutcome::Allow { superuser, context } => (superuser, context),
        AuthOutcome::Deny(r) => {
            info!(client_id = %client_id, username = ?username.as_deref(), reason = ?r, "connection refused");
            let (c3, c5) = match r {
                DenyReason::BadCredentials => (v3::BAD_USER_NAME_OR_PASSWORD, v5::BAD_USER_NAME_OR_PASSWORD),
                DenyReason::NotAuthorized => (v3::NOT_AUTHORIZED, v5::NOT_AUTHORIZED),
                DenyReason::Banned => (v3::NOT_AUTHORIZED, v5::BANNED),
            };
            refuse(broker, &mut writer, version, c3, c5).await;
            return None;
        }
        AuthOutcome::Unavailable => {
            warn!(client_id = %client_id, "authentication backend unavailable; connection refused");
            refuse(broker, &mut writer, version, v3::SERVER_UNAVAILABLE, v5::SERVER_UNAVAILABLE).await;
            return None;
        }
    };

    // Session expiry.
    let session_settings = &broker.settings.session;
    let connect_expiry = connect.properties.session_expiry_interval.unwrap_or(0);
    let expiry = match version {
        ProtocolVersion::V5 => {
            Some(Duration::from_secs(u64::from(connect_expiry)).min(session_settings.max_session_expiry))
        }
        _ if connect.clean_start => Some(Duration::ZERO),
        _ => session_settings.v3_session_expiry,
    };

    // Keep-alive, capped for v5 clients (who are told the value).
    let max_ka = limits.max_keep_alive;
    let mut server_keep_alive = None;
    let mut keep_alive = connect.keep_alive;
    if version.is_v5() && max_ka > 0 && (keep_alive == 0 || keep_alive > max_ka) {
        keep_alive = max_ka;
        server_keep_alive = Some(max_ka);
    }

    let conn_id = broker.next_conn_id();
    let opened = broker.open_session(&client_id, connect.clean_start, expiry, conn_id);

    let mut props = Properties::default();
    if version.is_v5() {
        props.assigned_client_identifier = assigned;
        props.server_keep_alive = server_keep_alive;
        props.receive_maximum = Some(session_settings.max_awaiting_rel);
        props.maximum_packet_size = Some(max_packet_size);
        props.topic_alias_maximum = Some(limits.max_topic_alias);
        if !broker.retained.enabled() {
            props.retain_available = Some(0);
        }
        if Some(Duration::from_secs(u64::from(connect_expiry))) != expiry && connect_expiry != 0 {
            // The cap applied: tell the client what it got.
            props.session_expiry_interval = expiry.map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
    }

    let will = match &connect.will {
        Some(w) => match TopicName::new(&w.topic) {
            Ok(topic) => {
                let expires_at = w
                    .properties
                    .message_expiry_interval
                    .map(|s| std::time::Instant::now() + Duration::from_secs(u64::from(s)));
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
                }))
            }
            Err(_) => None,
        },
        None => None,
    };

    let client = ClientInfo {
        client_id: client_id.clone(),
        username,
        peer,
        listener: listener.name.clone(),
        protocol: version,
        superuser,
        context,
        conn_id,
        cert: info.cert.clone(),
    };
    let receive_max = usize::from(connect.properties.receive_maximum.unwrap_or(u16::MAX));
    let mut conn = Conn {
        broker: Arc::clone(broker),
        gate,
        client,
        session: opened.session,
        conn_id,
        generation: opened.generation,
        version,
        writer,
        wbuf: BytesMut::new(),
        keep_alive_secs: keep_alive,
        client_max_packet: connect.properties.maximum_packet_size.unwrap_or(u32::MAX),
        window: usize::from(session_settings.max_inflight).min(receive_max).max(1),
        client_alias_max: if version.is_v5() { connect.properties.topic_alias_maximum.unwrap_or(0) } else { 0 },
        out_aliases: Default::default(),
        in_aliases: Default::default(),
        will,
        bridge: connect.bridge,
        connect_expiry,
        max_packet_size,
        publish_memo: None,
    };
    let session_present = opened.session_present;
    conn.send(&Packet::ConnAck(ConnAck { session_present, code: 0, properties: props }));
    info!(
        client_id = %client_id,
        protocol = ?version,
        clean_start = connect.clean_start,
        session_present,
        keep_alive,
        "client connected"
    );
    crate::sys::presence_connected(broker, &conn.client, keep_alive, connect.clean_start);
    Some((Box::new(conn), opened.kicked))
}
