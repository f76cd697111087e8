//! STOMP over SockJS (the SockJS 0.3 protocol that sockjs-client 1.x
//! speaks), for browsers: each SockJS session carries one STOMP
//! connection, served by [`crate::serve`] over an in-memory duplex pipe,
//! so the STOMP code knows nothing of SockJS.
//!
//! * [`config`] — the listener's `sockjs = { … }` table.
//! * `framing` — `o`/`h`/`a[…]`/`c[…]` frames, JSON escaping, client
//!   payloads, the STOMP byte stream cut into whole-frame messages.
//! * `http` — the HTTP/1.1 server (hyper) and the routes: `/info`, CORS
//!   preflight, the transports, the demo page.
//! * `ws` — the WebSocket transports: raw STOMP at `<path>/websocket`,
//!   SockJS-framed at `<path>/<server>/<session>/websocket`.
//! * `session` — the sessions of the xhr transports (`xhr`,
//!   `xhr_streaming`, `xhr_send`), which outlive the HTTP requests that
//!   carry them: the queue for the client, the one receiving request,
//!   the disconnect delay.
//!
//! Bounds: a STOMP connection (WebSocket or xhr session) takes a place in
//! the listener's `max_connections` before anything is set up, and passes
//! the STOMP gateway's pre-auth rules (connect timeout, CONNECT size, the
//! guard); HTTP sockets are capped apart (see [`SockJs::socket_limit`]);
//! sessions kept for their close frame are capped at the same number; a
//! request's headers are capped in bytes and count and must arrive within
//! the listener's `handshake_timeout` (also the keep-alive idle time);
//! `xhr_send` bodies and WebSocket messages at `max_message_bytes` (the
//! declared length is checked before reading); what waits for a client at
//! `max_queued_bytes` (beyond it the session is closed).

pub mod config;
mod framing;
mod http;
mod session;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::broker::Broker;
use portcullis_core::connection::{Admitted, ListenerContext};
use portcullis_core::gate::Gate;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};

pub use config::SockJsConfig;

/// The client's address behind trusted HTTP proxies (`Forwarded`,
/// `X-Forwarded-For`), given a request's headers and the socket's peer;
/// `Err` is the reason a request is refused (400). The server supplies it
/// when the listener has `trusted_proxies`.
pub type ClientAddress =
    Arc<dyn Fn(&hyper::HeaderMap, SocketAddr) -> Result<SocketAddr, String> + Send + Sync + 'static>;

use crate::StompConfig;

/// One `sockjs` listener's shared state.
pub struct SockJs {
    cfg: SockJsConfig,
    stomp: Arc<StompConfig>,
    broker: Arc<Broker>,
    gate: Arc<dyn Gate>,
    listener: Arc<ListenerContext>,
    /// Time a request's headers have to arrive (the listener's
    /// `handshake_timeout`); also how long an idle keep-alive connection
    /// is kept.
    header_timeout: Duration,
    /// How to read the client's address from proxy headers; `None`: the
    /// peer's address is the client's.
    client_address: Option<ClientAddress>,
    /// The xhr sessions by id.
    sessions: Mutex<HashMap<String, Arc<session::Session>>>,
}

impl std::fmt::Debug for SockJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SockJs").field("cfg", &self.cfg).field("listener", &self.listener.name).finish()
    }
}

impl SockJs {
    /// The listener's SockJS server; starts the task that closes sessions
    /// left without a receiving request (it ends with the last `Arc`).
    pub fn start(
        cfg: SockJsConfig,
        stomp: Arc<StompConfig>,
        broker: Arc<Broker>,
        gate: Arc<dyn Gate>,
        listener: Arc<ListenerContext>,
        header_timeout: Duration,
        client_address: Option<ClientAddress>,
    ) -> Arc<SockJs> {
        let me = Arc::new(SockJs {
            cfg,
            stomp,
            broker,
            gate,
            listener,
            header_timeout,
            client_address,
            sessions: Mutex::new(HashMap::new()),
        });
        tokio::spawn(session::reap(Arc::downgrade(&me)));
        me
    }

    /// HTTP sockets open at once: twice `max_connections`, as an xhr
    /// session uses two (its receiving request and an `xhr_send`).
    pub fn socket_limit(max_connections: usize) -> usize {
        max_connections.saturating_mul(2)
    }

    /// Serves one HTTP connection from `peer` (the TCP peer, or the PROXY
    /// header's) to completion.
    pub async fn serve_connection<S>(self: Arc<Self>, io: S, peer: SocketAddr)
    where
        S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    {
        http::serve(self, io, peer).await
    }

    /// A place in the listener's connection limit, if one is free.
    fn admit(&self) -> Option<Admitted> {
        self.listener.admit()
    }

    /// Starts a STOMP connection for `peer` on `slot`; returns our end of
    /// the pipe.
    fn open_stomp(&self, slot: Admitted, peer: SocketAddr) -> DuplexStream {
        // Room for a whole client message, so writing one never waits on
        // the STOMP side's replies.
        let size = usize::try_from(self.cfg.max_message_bytes).unwrap_or(usize::MAX).saturating_add(64 * 1024);
        let (ours, theirs) = tokio::io::duplex(size);
        tokio::spawn(crate::serve(
            Arc::clone(&self.broker),
            Arc::clone(&self.gate),
            slot,
            Arc::clone(&self.stomp),
            theirs,
            peer,
            None,
        ));
        ours
    }
}
