//! The connection's side of MQTT 5 enhanced authentication (see
//! [`crate::enhanced`]):
//!
//! * [`at_connect`] — the AUTH exchange between CONNECT and CONNACK:
//!   CONNECT (method, data) → AUTH 0x18 → AUTH 0x18 → … → the outcome,
//!   every read and every round under the handshake's deadline (the
//!   connect timeout) and the pre-auth memory budget, at most
//!   [`MAX_ROUNDS`] rounds of at most [`MAX_DATA_LEN`] bytes each;
//! * [`Conn::on_auth`] — re-authentication on an established connection
//!   (AUTH 0x19, then 0x18 rounds): success answers AUTH 0x00 and goes
//!   through [`Conn::apply_reauth`], the one place the connection's
//!   identity-derived state is replaced; a refusal closes with 0x87.
//!
//! One re-authentication at a time: a second AUTH 0x19 during one is a
//! protocol error, and so is AUTH 0x18 outside one.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::{debug, info};

use super::handshake::{read_packet, HandshakeIo};
use super::{Close, Conn, DisconnectReason, ListenerContext, Refusal, Violation};
use crate::broker::Broker;
use crate::codec::reason::v5;
use crate::codec::{self, Auth, Connect, Packet, Properties, ProtocolVersion};
use crate::enhanced::{Done, Exchange, Purpose, Step, MAX_DATA_LEN, MAX_ROUNDS};
use crate::gate::{AuthOutcome, ClientContext, ConnectInfo, DenyReason, Gate};
use crate::logsafe::Peer;

/// The method and the server's last data, for the CONNACK.
pub(super) struct Reply {
    pub method: String,
    pub data: Option<Bytes>,
}

/// Why an exchange at CONNECT ended without an outcome.
pub(super) enum Failed {
    /// Answer with this CONNACK.
    Refuse(Refusal),
    /// Close without an answer (timeout, EOF, the client's DISCONNECT, a
    /// malformed packet already answered).
    Closed,
}

/// An AUTH packet of `method`.
fn auth_packet(reason: u8, method: &str, data: Option<Bytes>) -> Packet {
    let properties =
        Properties { authentication_method: Some(method.to_string()), authentication_data: data, ..Default::default() };
    Packet::Auth(Auth { reason, properties })
}

/// Whether the mechanism's identity and the CONNECT's User Name (if any)
/// agree.
fn same_user(connect_username: Option<&str>, done: &Done) -> bool {
    match (connect_username, done.username.as_deref()) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

/// Runs the exchange a CONNECT with an Authentication Method asks for.
pub(super) async fn at_connect<R, W>(
    broker: &Broker,
    gate: &dyn Gate,
    listener: &ListenerContext,
    connect: &Connect,
    method: &str,
    info: &ConnectInfo,
    io: &mut HandshakeIo<'_, '_, R, W>,
) -> Result<Done, Failed>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(mut exchange) = gate.enhanced_auth(method, info, Purpose::Connect) else {
        return Err(Failed::Refuse(Refusal::AuthMethod));
    };
    let mut data = connect.properties.authentication_data.clone();
    for _ in 0..MAX_ROUNDS {
        if data.as_ref().is_some_and(|d| d.len() > MAX_DATA_LEN) {
            return Err(Failed::Refuse(Refusal::AuthExchange));
        }
        let step = match tokio::time::timeout_at(io.deadline, exchange.step(data.take())).await {
            Ok(s) => s,
            Err(_) => {
                debug!("enhanced authentication not complete within the connect timeout; closing");
                broker.metrics.connects_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(Failed::Closed);
            }
        };
        let challenge = match step {
            Step::Done(done) if !same_user(info.username.as_deref(), &done) => {
                return Err(Failed::Refuse(Refusal::Denied(DenyReason::BadCredentials)));
            }
            Step::Done(done) => return Ok(done),
            Step::Continue(c) => c,
        };
        send_in_handshake(broker, io, &auth_packet(v5::CONTINUE_AUTHENTICATION, method, Some(challenge))).await?;
        match read_packet(broker, listener, io, Some(ProtocolVersion::V5)).await {
            None => return Err(Failed::Closed),
            Some(Packet::Auth(a))
                if a.reason == v5::CONTINUE_AUTHENTICATION
                    && a.properties.authentication_method.as_deref() == Some(method) =>
            {
                data = a.properties.authentication_data;
            }
            Some(Packet::Disconnect(_)) => return Err(Failed::Closed),
            Some(_) => return Err(Failed::Refuse(Refusal::AuthExchange)),
        }
    }
    Err(Failed::Refuse(Refusal::AuthExchange))
}

/// Writes one packet during the handshake (the socket stays open), under
/// the handshake's deadline.
async fn send_in_handshake<R, W: AsyncWrite + Unpin>(
    broker: &Broker,
    io: &mut HandshakeIo<'_, '_, R, W>,
    p: &Packet,
) -> Result<(), Failed> {
    let mut buf = bytes::BytesMut::new();
    if codec::encode(p, ProtocolVersion::V5, &mut buf).is_err() {
        return Err(Failed::Refuse(Refusal::AuthExchange));
    }
    broker.metrics.packet_sent(15, buf.len());
    let write = async {
        io.writer.write_all(&buf).await?;
        io.writer.flush().await
    };
    match tokio::time::timeout_at(io.deadline, write).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(Failed::Closed),
    }
}

/// What a connection keeps of its enhanced authentication.
pub(crate) struct EnhancedAuth {
    /// The Authentication Method of the CONNECT; a re-authentication must
    /// name the same.
    method: Box<str>,
    /// A re-authentication in progress.
    reauth: Option<Reauth>,
}

impl EnhancedAuth {
    pub fn new(method: String) -> EnhancedAuth {
        EnhancedAuth { method: method.into_boxed_str(), reauth: None }
    }
}

/// A re-authentication in progress.
struct Reauth {
    exchange: Box<dyn Exchange>,
    rounds: u8,
    /// The connect timeout after the AUTH 0x19: a re-authentication takes
    /// no longer than a CONNECT may.
    deadline: Instant,
}

/// What a successful re-authentication decided; [`Conn::apply_reauth`]
/// puts it in force.
pub(crate) struct Reauthenticated {
    pub superuser: bool,
    pub context: Option<ClientContext>,
    /// When the new credentials expire (a renewed JWT's `exp`): replaces
    /// the connection's auth deadline.
    pub expires_at: Option<std::time::SystemTime>,
}

impl<W: AsyncWrite + Unpin + Send> Conn<W> {
    /// An AUTH from the client: starts or continues a re-authentication.
    pub(super) async fn on_auth(&mut self, a: Auth) -> Result<(), Close> {
        let Some(state) = self.enhanced.as_mut() else {
            return Err(Close::protocol(Violation::AuthWithoutMethod));
        };
        if a.properties.authentication_method.as_deref() != Some(&*state.method) {
            return Err(Close::protocol(Violation::ReauthMethodChanged));
        }
        let data = a.properties.authentication_data;
        if data.as_ref().is_some_and(|d| d.len() > MAX_DATA_LEN) {
            return Err(Close::protocol(Violation::AuthOutOfSequence));
        }
        match (a.reason, state.reauth.is_some()) {
            (v5::REAUTHENTICATE, false) => {
                let info = ConnectInfo {
                    client_id: self.client.client_id.clone(),
                    username: self.client.username.clone(),
                    password: None,
                    peer: self.client.peer,
                    listener: self.client.listener.clone(),
                    protocol: self.version.into(),
                    cert: self.client.cert.clone(),
                };
                let Some(exchange) = self.gate.enhanced_auth(&state.method, &info, Purpose::Reauthenticate) else {
                    // The method is no longer served (a reload removed it).
                    return Err(Close::new(DisconnectReason::ReauthDenied));
                };
                let deadline = Instant::now() + self.broker.settings.limits.connect_timeout;
                state.reauth = Some(Reauth { exchange, rounds: 0, deadline });
            }
            (v5::CONTINUE_AUTHENTICATION, true) => {}
            _ => return Err(Close::protocol(Violation::AuthOutOfSequence)),
        }
        let Some(reauth) = state.reauth.as_mut() else {
            return Err(Close::protocol(Violation::AuthOutOfSequence));
        };
        reauth.rounds += 1;
        if reauth.rounds > MAX_ROUNDS {
            return Err(Close::protocol(Violation::AuthOutOfSequence));
        }
        let step = match tokio::time::timeout_at(reauth.deadline, reauth.exchange.step(data)).await {
            Ok(s) => s,
            Err(_) => return Err(Close::new(DisconnectReason::ReauthDenied)),
        };
        let method = state.method.to_string();
        let done = match step {
            Step::Continue(challenge) => {
                self.send(&auth_packet(v5::CONTINUE_AUTHENTICATION, &method, Some(challenge)));
                return Ok(());
            }
            Step::Done(done) => done,
        };
        state.reauth = None;
        let client_id = Peer(&self.client.client_id).to_string();
        let same = match (&self.client.username, &done.username) {
            (Some(a), Some(b)) => a == b,
            // An identity the connection did not have: not a renewal.
            (None, Some(_)) => false,
            (_, None) => true,
        };
        match done.outcome {
            AuthOutcome::Allow { superuser, context, expires_at } if same => {
                info!(client_id = %client_id, superuser, "client re-authenticated");
                self.apply_reauth(Reauthenticated { superuser, context, expires_at });
                self.send(&auth_packet(v5::SUCCESS, &method, done.data));
                Ok(())
            }
            AuthOutcome::Allow { .. } | AuthOutcome::Deny(_) => {
                info!(client_id = %client_id, "re-authentication refused");
                Err(Close::new(DisconnectReason::ReauthDenied))
            }
            AuthOutcome::Unavailable => {
                info!(client_id = %client_id, "re-authentication backend unavailable");
                Err(Close::new(DisconnectReason::ReauthUnavailable))
            }
        }
    }

    /// Puts a successful re-authentication in force: the one place the
    /// connection's identity-derived state (superuser flag, inline ACL
    /// rules, decisions cached for the old identity, the auth deadline)
    /// is replaced.
    pub(crate) fn apply_reauth(&mut self, r: Reauthenticated) {
        self.set_auth_deadline(r.expires_at);
        let mut client = (*self.client).clone();
        client.superuser = r.superuser;
        client.context = r.context;
        let client = Arc::new(client);
        self.session.lock().set_client(self.conn_id, Arc::clone(&client));
        self.client = client;
        // Decisions made for the old identity are not reused.
        self.publish_memo = None;
        self.gate.reauthenticated(&self.client);
    }
}
