//! Portcullis STOMP gateway: STOMP 1.0, 1.1 and 1.2 clients on the same
//! routing core, auth chain and ACL chain as MQTT clients.
//!
//! * [`frame`] — frames ⇄ bytes, sans IO: bounded, incremental, escapes
//!   per version.
//! * `connect` — CONNECT → CONNECTED: version and heart-beat negotiation,
//!   then the core's admission step ([`portcullis_core::admission`]).
//! * `session` — the connected client: commands, subscriptions, ack
//!   modes, transactions, heart-beats; deliveries come from the session's
//!   [`portcullis_core::drain::Drain`], as MQTT's come to its writer.
//! * `headers` — SEND headers → MQTT 5 properties (user properties,
//!   content type, response topic, correlation data) and back to MESSAGE
//!   headers.
//! * [`config`] — the listener's `stomp = { … }` table.
//! * [`sockjs`] — STOMP over SockJS (and raw STOMP over WebSocket) for
//!   browsers: each SockJS session is one STOMP connection, served by
//!   [`serve`] over an in-memory pipe.
//! * [`demo`] — the embedded demo page a `sockjs` listener can serve.
//!
//! The server's listeners call [`serve`] for each accepted socket of a
//! `stomp` / `stomp_tls` listener, and [`sockjs::SockJs`] for each
//! `sockjs` listener.

pub mod config;
mod connect;
pub mod demo;
pub mod frame;
mod headers;
mod session;
pub mod sockjs;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use portcullis_core::broker::Broker;
use portcullis_core::connection::Admitted;
use portcullis_core::drain::Drain;
use portcullis_core::gate::{CertIdentity, Gate};
use portcullis_core::hooks::ClientDisconnected;
use portcullis_core::logsafe::Peer;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tracing::{info, Instrument};

pub use config::StompConfig;

/// How long a closing connection tries to send its last frames.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves one STOMP connection to completion (see the module docs).
pub async fn serve<S>(
    broker: Arc<Broker>,
    gate: Arc<dyn Gate>,
    listener: Admitted,
    cfg: Arc<StompConfig>,
    stream: S,
    peer: SocketAddr,
    cert: Option<Arc<CertIdentity>>,
) where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let span = tracing::info_span!("stomp", %peer, listener = %listener.name);
    async move {
        broker.metrics.connections.inc();
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut rbuf = BytesMut::new();
        let connected = connect::handshake(&broker, &gate, &listener, &cfg, &mut reader, &mut rbuf, peer, cert).await;
        match connected {
            Err(connect::Failed::Error(f)) => {
                let mut out = BytesMut::new();
                f.encode(frame::Version::V10, &mut out);
                let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
                    let _ = writer.write_all(&out).await;
                    let _ = writer.shutdown().await;
                })
                .await;
            }
            Err(connect::Failed::Close) => {}
            Ok(c) => {
                let limits = &broker.settings.limits;
                let limits = frame::Limits {
                    max_header_bytes: cfg.max_header_bytes as usize,
                    max_headers: cfg.max_headers as usize,
                    max_body: listener.max_packet_size(limits) as usize,
                };
                let decoder = frame::Decoder::for_version(limits, c.version);
                let window = usize::from(broker.settings.session.max_inflight);
                let drain = Drain::new(&broker, &gate, &c.admission, window);
                let client = Arc::clone(&c.admission.client);
                info!(client_id = %Peer(&client.client_id), version = c.version.as_str(), "STOMP client connected");
                let mut s = session::Session::new(
                    Arc::clone(&broker),
                    Arc::clone(&gate),
                    Arc::clone(&cfg),
                    c.version,
                    Arc::clone(&client),
                    drain,
                    decoder,
                    c.send_every,
                    c.receive_every,
                );
                c.connected.encode(c.version, &mut s.wbuf);
                c.admission.announce(&broker, &gate, true);
                let end = s.run(&mut reader, &mut writer, &mut rbuf, c.admission.kicked).await;
                if let Some(e) = &end.error {
                    e.encode(c.version, &mut s.wbuf);
                }
                let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, async {
                    let _ = writer.write_all(&s.wbuf).await;
                    let _ = writer.shutdown().await;
                })
                .await;
                s.drain.close();
                info!(client_id = %Peer(&client.client_id), reason = %end.reason, "STOMP client disconnected");
                broker.hooks.client_disconnected(&ClientDisconnected { client: &client, reason: end.reason });
            }
        }
        broker.metrics.connections.dec();
        drop(listener);
    }
    .instrument(span)
    .await
}
