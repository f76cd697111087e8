//! The WebSocket transports: once upgraded, one task moves client
//! messages into the STOMP connection and the STOMP connection's output
//! (cut into whole frames) out to the client, both at once, so neither
//! direction waits on the other.
//!
//! * raw (`<path>/websocket`): text and binary messages carry STOMP bytes
//!   as they are; the broker sends text messages, one or more whole
//!   frames each (bytes that are not UTF-8 become U+FFFD).
//! * framed (`<path>/<server>/<session>/websocket`): the broker sends `o`,
//!   then `a[…]` and `h` every `heartbeat`, and `c[3000,"Go away!"]` when
//!   the STOMP connection ends; the client sends JSON arrays of strings
//!   (or one JSON string). Broken JSON closes the connection.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::framing::{self, Cutter};
use super::session::GO_AWAY;

/// Which of the two WebSocket transports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Raw,
    Framed,
}

/// Runs an upgraded connection to its end.
pub async fn run(upgraded: Upgraded, pipe: DuplexStream, kind: Kind, heartbeat: Duration, max_message: usize) {
    let config = WebSocketConfig {
        max_message_size: Some(max_message),
        max_frame_size: Some(max_message),
        ..WebSocketConfig::default()
    };
    let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let (mut sink, mut stream) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(pipe);

    let inbound = async {
        while let Some(Ok(msg)) = stream.next().await {
            let ok = match (kind, msg) {
                (_, Message::Close(_)) => break,
                (Kind::Raw, Message::Text(t)) => wr.write_all(t.as_bytes()).await.is_ok(),
                (Kind::Raw, Message::Binary(b)) => wr.write_all(&b).await.is_ok(),
                (Kind::Framed, Message::Text(t)) => match framing::parse_payload(t.as_bytes()) {
                    Ok(msgs) => {
                        let mut ok = true;
                        for m in msgs {
                            ok = ok && wr.write_all(m.as_bytes()).await.is_ok();
                        }
                        ok
                    }
                    Err(framing::PayloadError::Empty) => true,
                    Err(framing::PayloadError::Broken) => false,
                },
                (Kind::Framed, Message::Binary(_)) => false,
                _ => true,
            };
            if !ok {
                break;
            }
        }
        // Whatever ended it, the STOMP connection reads EOF and ends.
        let _ = wr.shutdown().await;
    };

    let outbound = async {
        if kind == Kind::Framed && sink.send(Message::text(framing::OPEN)).await.is_err() {
            return;
        }
        let mut cutter = Cutter::default();
        let mut buf = vec![0u8; 16 * 1024];
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let n = tokio::select! {
                r = rd.read(&mut buf) => match r {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                },
                _ = tick.tick(), if kind == Kind::Framed => {
                    if sink.send(Message::text(framing::HEARTBEAT)).await.is_err() {
                        return;
                    }
                    continue;
                }
            };
            let Some(text) = cutter.push(&buf[..n]) else { continue };
            let msg = match kind {
                Kind::Raw => Message::text(text),
                Kind::Framed => Message::text(framing::messages([text.as_str()])),
            };
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        if kind == Kind::Framed {
            let _ = sink.send(Message::text(framing::close(GO_AWAY.0, GO_AWAY.1))).await;
        }
        let close = CloseFrame { code: CloseCode::Normal, reason: "".into() };
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.send(Message::Close(Some(close)))).await;
    };

    tokio::select! {
        _ = inbound => {}
        _ = outbound => {}
    }
}
