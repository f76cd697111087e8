//! CONNECT (or STOMP) → CONNECTED: the frame read under the connect
//! timeout, the CONNECT size limit and the pre-auth memory budget; version
//! and heart-beat negotiation; then the core's admission step (the
//! listener's auth chain, the session, the client info). Every refusal is
//! an ERROR frame, then close.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use portcullis_core::admission::{self, log_refusal, Admission, Terms};
use portcullis_core::broker::Broker;
use portcullis_core::connection::{ListenerContext, Refusal};
use portcullis_core::gate::{CertField, CertIdentity, ClientProtocol, ConnectInfo, Gate, Password};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;
use tracing::debug;

use crate::config::StompConfig;
use crate::frame::{Decoded, Decoder, Frame, Limits, Version};

/// Why the handshake ended without a connection.
#[derive(Debug)]
pub(crate) enum Failed {
    /// Answer with this ERROR frame, then close.
    Error(Frame),
    /// Close without a word (timeout, EOF, budget spent).
    Close,
}

/// What a successful handshake hands the session loop.
pub(crate) struct Connected {
    pub version: Version,
    pub admission: Admission,
    /// The broker sends a heart-beat at least this often.
    pub send_every: Option<Duration>,
    /// The client must send something at least this often.
    pub receive_every: Option<Duration>,
    pub connected: Frame,
}

/// An ERROR frame with `message` (and the versions served, for a
/// negotiation failure).
pub(crate) fn error_frame(message: &str) -> Frame {
    let mut f = Frame::new("ERROR").with("message", message).with("content-type", "text/plain");
    f.body = bytes::Bytes::from(format!("{message}\n"));
    f
}

fn refusal_frame(r: Refusal) -> Frame {
    error_frame(r.reason())
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn handshake<R: AsyncRead + Unpin>(
    broker: &Arc<Broker>,
    gate: &Arc<dyn Gate>,
    listener: &ListenerContext,
    cfg: &StompConfig,
    reader: &mut R,
    rbuf: &mut BytesMut,
    peer: SocketAddr,
    cert: Option<Arc<CertIdentity>>,
) -> Result<Connected, Failed> {
    let limits = &broker.settings.limits;
    let Some(mut ticket) = broker.preauth.enter(peer.ip()) else {
        debug!("too many CONNECTs in progress from this address; closing");
        broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
        return Err(Failed::Close);
    };
    let connect_size = limits.max_connect_size as usize;
    let mut decoder = Decoder::new(Limits {
        max_header_bytes: (cfg.max_header_bytes as usize).min(connect_size),
        max_headers: cfg.max_headers as usize,
        max_body: connect_size,
    });
    let deadline = Instant::now() + limits.connect_timeout;
    let frame = loop {
        match decoder.decode(rbuf) {
            Ok(Some(Decoded::Frame(f))) => break f,
            Ok(Some(Decoded::Heartbeat)) => continue,
            Ok(None) => {}
            Err(e) => {
                broker.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                return Err(Failed::Error(error_frame(&e.to_string())));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = match tokio::time::timeout_at(deadline, reader.read(&mut chunk)).await {
            Err(_) => {
                debug!("no CONNECT frame within the connect timeout; closing");
                broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
                return Err(Failed::Close);
            }
            Ok(Ok(0)) | Ok(Err(_)) => return Err(Failed::Close),
            Ok(Ok(n)) => n,
        };
        let needed = rbuf.len() + n;
        let capacity = if needed > rbuf.capacity() { needed.max(2 * rbuf.capacity()) } else { rbuf.capacity() };
        if !ticket.hold(capacity) {
            debug!("pre-auth memory budget spent; closing");
            broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Failed::Close);
        }
        rbuf.extend_from_slice(&chunk[..n]);
    };
    if frame.command != "CONNECT" && frame.command != "STOMP" {
        broker.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
        return Err(Failed::Error(error_frame("expected a CONNECT frame")));
    }
    let version = negotiate(&frame)?;
    // `host` (a virtual host, required by 1.1 and 1.2) is read and not
    // checked: one broker, no virtual hosts, and clients such as stomp.py
    // leave it out unless told.
    let (cx, cy) = match (version, frame.header("heart-beat")) {
        (Version::V10, _) | (_, None) => (0, 0),
        (_, Some(hb)) => parse_heartbeat(hb).ok_or_else(|| Failed::Error(error_frame("invalid heart-beat header")))?,
    };
    let ms = |d: Option<Duration>| d.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let (sx, sy) = (ms(cfg.heartbeat_send), ms(cfg.heartbeat_receive));
    let send_every = (sx > 0 && cy > 0).then(|| Duration::from_millis(sx.max(cy)));
    let receive_every = (sy > 0 && cx > 0).then(|| Duration::from_millis(sy.max(cx)));

    let info = identify(broker, listener, &frame, version, peer, cert).map_err(|r| {
        log_refusal(broker, r, frame.header("client-id").unwrap_or(""), frame.header("login"));
        broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
        Failed::Error(refusal_frame(r))
    })?;
    let keep_alive = receive_every.map_or(0, |d| u16::try_from(d.as_secs().max(1)).unwrap_or(u16::MAX));
    let terms = Terms { clean_start: true, expiry: Some(Duration::ZERO), keep_alive };
    let admission = admission::admit(broker, &**gate, info, terms).await.map_err(|r| {
        broker.metrics.connects_refused.fetch_add(1, Ordering::Relaxed);
        Failed::Error(refusal_frame(r))
    })?;
    drop(ticket);
    let connected = Frame::new("CONNECTED")
        .with("version", version.as_str())
        .with("heart-beat", format!("{},{}", ms(send_every), ms(receive_every)))
        .with("server", format!("Portcullis/{}", portcullis_core::broker::VERSION))
        .with("session", admission.client.client_id.to_string());
    Ok(Connected { version, admission, send_every, receive_every, connected })
}

/// The highest version both sides speak; none: an ERROR naming ours.
fn negotiate(frame: &Frame) -> Result<Version, Failed> {
    let Some(accept) = frame.header("accept-version") else { return Ok(Version::V10) };
    let best = accept.split(',').filter_map(Version::parse).max();
    best.ok_or_else(|| {
        let supported = Version::ALL.map(Version::as_str).join(",");
        let mut f =
            error_frame(&format!("supported protocol versions are {}", Version::ALL.map(Version::as_str).join(" ")));
        f.headers.insert(0, ("version".to_string(), supported));
        Failed::Error(f)
    })
}

/// `cx,cy` in milliseconds.
fn parse_heartbeat(h: &str) -> Option<(u64, u64)> {
    let (a, b) = h.split_once(',')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// Client id and username (from the frame or the client certificate) and
/// the checks that need no provider, as for an MQTT CONNECT.
fn identify(
    broker: &Broker,
    listener: &ListenerContext,
    frame: &Frame,
    version: Version,
    peer: SocketAddr,
    cert: Option<Arc<CertIdentity>>,
) -> Result<ConnectInfo, Refusal> {
    let limits = &broker.settings.limits;
    let from_cert = |field: Option<CertField>| -> Result<Option<String>, Refusal> {
        let Some(field) = field else { return Ok(None) };
        match cert.as_deref().and_then(|c| c.field(field)) {
            Some(v) => Ok(Some(v.to_string())),
            None => Err(Refusal::CertFieldMissing),
        }
    };
    let username = match from_cert(listener.options.cert_as_username)? {
        Some(u) => Some(u),
        None => frame.header("login").filter(|l| !l.is_empty()).map(str::to_string),
    };
    if username.as_ref().is_some_and(|u| u.len() > limits.max_username_len) {
        return Err(Refusal::UsernameTooLong);
    }
    let mut chosen_by_broker = false;
    let client_id = match (from_cert(listener.options.cert_as_client_id)?, frame.header("client-id")) {
        (Some(id), _) => id,
        (None, Some(id)) if !id.is_empty() => id.to_string(),
        _ => {
            chosen_by_broker = true;
            use rand::Rng;
            let n: u128 = rand::thread_rng().gen();
            format!("stomp-{n:032x}")
        }
    };
    if client_id.len() > limits.max_client_id_len {
        return Err(Refusal::ClientIdTooLong);
    }
    if let (Some(p), false) = (&listener.options.client_id_pattern, chosen_by_broker) {
        let cn = cert.as_deref().and_then(|c| c.common_name.as_deref());
        if !p.matches(&client_id, username.as_deref(), cn) {
            return Err(Refusal::ClientIdPattern);
        }
    }
    Ok(ConnectInfo {
        client_id: Arc::from(client_id),
        username: username.map(Arc::from),
        password: frame.header("passcode").map(|p| Password::new(bytes::Bytes::copy_from_slice(p.as_bytes()))),
        peer,
        listener: listener.name.clone(),
        protocol: ClientProtocol::Stomp(version.into()),
        cert,
    })
}
