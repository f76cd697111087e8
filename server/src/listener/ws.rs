//! MQTT over WebSocket: the HTTP upgrade (path, MQTT subprotocol, origin
//! allow-list, the client address from trusted proxies) and [`WsIo`], which
//! turns the message stream into the byte stream the connection state
//! machine reads.
//!
//! MQTT packets may be split across WebSocket messages or packed several
//! to one: the state machine's decoder sees only bytes. Binary messages
//! only; a text message closes the connection with 1003. Frames and
//! messages are capped at the listener's maximum packet size (larger ones
//! close with 1009). Pings are answered by tungstenite.
//!
//! Before the broker has answered the CONNECT, a client may send at most
//! [`WsOptions::pre_auth_bytes`] (the upgrade request included): tungstenite
//! buffers a message whole, so without this cap an unauthenticated socket
//! could make the broker hold a whole `max_packet_size` message
//! ([`PreAuthCap`]).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{ready, Context, Poll};

use futures_util::{Sink, Stream};
use ipnet::IpNet;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{header, HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use super::forwarded;

/// Subprotocols a client may ask for, as MQTT and its clients name them.
const SUBPROTOCOLS: [&str; 3] = ["mqtt", "mqttv3.1", "mqttv3.1.1"];

/// A WebSocket listener's settings.
#[derive(Debug, Clone)]
pub struct WsOptions {
    /// Path of the upgrade request.
    pub path: String,
    /// `Origin` values admitted; empty admits any.
    pub allowed_origins: Vec<String>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest frame and message (the listener's maximum packet size).
    pub max_size: usize,
    /// Bytes a client may send before the broker's first MQTT packet to it
    /// (`limits.max_connect_size` and room for the upgrade request).
    pub pre_auth_bytes: usize,
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Refused with an HTTP error status (the reason was sent as the body).
    #[error("upgrade refused ({status}): {reason}")]
    Refused { status: u16, reason: String },
    /// Not a WebSocket upgrade, or the connection broke.
    #[error("WebSocket handshake failed: {0}")]
    Handshake(WsError),
}

/// Answers the upgrade request on `stream` from `peer`; on success returns
/// the byte stream and the client's address (from trusted proxy headers,
/// else `peer`).
// The callback's error type is tungstenite's HTTP response.
#[allow(clippy::result_large_err)]
pub async fn accept<S>(stream: S, peer: SocketAddr, opts: &WsOptions) -> Result<(WsIo<S>, SocketAddr), UpgradeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut client = peer;
    let mut refusal = None;
    let callback = |req: &Request, resp: Response| match check(req, resp, peer, opts) {
        Ok((resp, addr)) => {
            client = addr;
            Ok(resp)
        }
        Err((status, reason)) => {
            refusal = Some((status, reason.clone()));
            Err(error_response(status, reason))
        }
    };
    let config = WebSocketConfig {
        max_frame_size: Some(opts.max_size),
        max_message_size: Some(opts.max_size),
        // Frames go out when the connection flushes, which it does after
        // each burst of writes; no need to gather 128 KiB first.
        write_buffer_size: 0,
        ..WebSocketConfig::default()
    };
    let stream = PreAuthCap { inner: stream, left: AtomicUsize::new(opts.pre_auth_bytes) };
    let result = tokio_tungstenite::accept_hdr_async_with_config(stream, callback, Some(config)).await;
    match result {
        Ok(ws) => Ok((WsIo::new(ws), client)),
        Err(e) => Err(match refusal {
            Some((status, reason)) => UpgradeError::Refused { status: status.as_u16(), reason },
            None => UpgradeError::Handshake(e),
        }),
    }
}

type Refusal = (StatusCode, String);

/// Path, subprotocol, origin and forwarded address of an upgrade request.
fn check(
    req: &Request,
    mut resp: Response,
    peer: SocketAddr,
    opts: &WsOptions,
) -> Result<(Response, SocketAddr), Refusal> {
    if req.uri().path() != opts.path {
        return Err((StatusCode::NOT_FOUND, format!("no MQTT endpoint at {}", req.uri().path())));
    }
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|p| p.trim().to_string()))
        .collect();
    let Some(protocol) = offered.iter().find(|p| SUBPROTOCOLS.contains(&p.as_str())) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Protocol must offer one of mqtt, mqttv3.1, mqttv3.1.1".to_string(),
        ));
    };
    if !opts.allowed_origins.is_empty() {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if !opts.allowed_origins.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
                return Err((StatusCode::FORBIDDEN, "origin not allowed".to_string()));
            }
        }
    }
    let ip = forwarded::client_address(req.headers(), peer.ip(), &opts.trusted_proxies)
        .map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
    // The port of a forwarded client is not known.
    let client = if ip == peer.ip() { peer } else { SocketAddr::new(ip, 0) };
    let value = HeaderValue::from_str(protocol).map_err(|_| (StatusCode::BAD_REQUEST, "bad subprotocol".into()))?;
    resp.headers_mut().insert(header::SEC_WEBSOCKET_PROTOCOL, value);
    Ok((resp, client))
}

fn error_response(status: StatusCode, reason: String) -> ErrorResponse {
    let mut resp = ErrorResponse::new(Some(reason));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    resp
}

/// A WebSocket connection as a byte stream: reads return the payloads of
/// binary messages in order; each write is sent as one binary message.
#[derive(Debug)]
pub struct WsIo<S> {
    ws: WebSocketStream<PreAuthCap<S>>,
    /// The message being read and how far.
    message: Vec<u8>,
    pos: usize,
    /// A close frame to send when the connection is shut down, set when
    /// the peer broke the rules (text message, oversized frame).
    close: Option<CloseFrame<'static>>,
}

impl<S> WsIo<S> {
    fn new(ws: WebSocketStream<PreAuthCap<S>>) -> WsIo<S> {
        WsIo { ws, message: Vec::new(), pos: 0, close: None }
    }
}

fn io_error(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        other => io::Error::other(other),
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.pos < this.message.len() {
                let n = buf.remaining().min(this.message.len() - this.pos);
                buf.put_slice(&this.message[this.pos..this.pos + n]);
                this.pos += n;
                if this.pos == this.message.len() {
                    this.message = Vec::new();
                    this.pos = 0;
                }
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                None => return Poll::Ready(Ok(())),
                Some(Ok(Message::Binary(data))) => {
                    this.message = data;
                    this.pos = 0;
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                // The peer's close frame; tungstenite answers it, the next read ends the stream.
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(Message::Text(_))) => {
                    this.close = Some(close_frame(CloseCode::Unsupported, "MQTT needs binary frames"));
                    return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, "text frame")));
                }
                Some(Err(e)) => {
                    this.close = match &e {
                        WsError::Capacity(_) => Some(close_frame(CloseCode::Size, "frame or message too large")),
                        WsError::Protocol(_) => Some(close_frame(CloseCode::Protocol, "protocol error")),
                        _ => None,
                    };
                    return Poll::Ready(Err(io_error(e)));
                }
            }
        }
    }
}

/// The stream under tungstenite: lets through at most `left` bytes until
/// [`PreAuthCap::lift`] (then everything); one more byte before that is an
/// error, which closes the connection.
#[derive(Debug)]
pub struct PreAuthCap<S> {
    inner: S,
    /// Bytes the peer may still send; `usize::MAX` once lifted.
    left: AtomicUsize,
}

impl<S> PreAuthCap<S> {
    fn lift(&self) {
        self.left.store(usize::MAX, Ordering::Relaxed);
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for PreAuthCap<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let left = this.left.load(Ordering::Relaxed);
        if left == usize::MAX {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        if left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "more than limits.max_connect_size sent before CONNACK",
            )));
        }
        // Read no more than is left, through a small buffer (only before
        // the CONNECT is answered).
        let mut chunk = [0u8; 4096];
        let n = chunk.len().min(left).min(buf.remaining());
        let mut sub = ReadBuf::new(&mut chunk[..n]);
        ready!(Pin::new(&mut this.inner).poll_read(cx, &mut sub))?;
        let got = sub.filled();
        buf.put_slice(got);
        this.left.store(left - got.len(), Ordering::Relaxed);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreAuthCap<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

fn close_frame(code: CloseCode, reason: &'static str) -> CloseFrame<'static> {
    CloseFrame { code, reason: reason.into() }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // The broker's first packet (CONNACK) answers the CONNECT: the
        // client is known from here on.
        this.ws.get_ref().lift();
        let mut ws = Pin::new(&mut this.ws);
        ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
        ws.start_send(Message::Binary(buf.to_vec())).map_err(io_error)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().ws).poll_flush(cx).map_err(io_error)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let mut ws = Pin::new(&mut this.ws);
        if this.close.is_some() {
            ready!(ws.as_mut().poll_ready(cx)).map_err(io_error)?;
            let frame = this.close.take();
            // Queues the close frame; poll_close below sends it.
            if let Err(e) = ws.as_mut().start_send(Message::Close(frame)) {
                return Poll::Ready(Err(io_error(e)));
            }
        }
        ws.poll_close(cx).map_err(io_error)
    }
}
