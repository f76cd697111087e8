//! MQTT packets over a byte stream, for the client side of a bridge: the
//! core's codec, a read buffer, and every read and write bounded by the
//! caller's timeouts. Used twice per bridge: towards the remote broker
//! (TCP or TLS) and towards the local one (an in-process pipe).

use bytes::BytesMut;
use portcullis_core::codec::{self, DecodeError, EncodeError, Packet, ProtocolVersion};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A stream a link runs over.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// Why a link ended.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("connection closed by the peer")]
    Closed,
    #[error("bad packet from the peer: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
}

/// One MQTT connection, client side.
pub struct Link {
    stream: Box<dyn Stream>,
    rbuf: BytesMut,
    wbuf: BytesMut,
    pub version: ProtocolVersion,
    /// Largest packet accepted from the peer.
    max_packet: u32,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("version", &self.version).field("buffered", &self.rbuf.len()).finish()
    }
}

impl Link {
    pub fn new(stream: Box<dyn Stream>, version: ProtocolVersion, max_packet: u32) -> Link {
        Link { stream, rbuf: BytesMut::with_capacity(4096), wbuf: BytesMut::new(), version, max_packet }
    }

    /// Sends one packet.
    pub async fn send(&mut self, p: &Packet) -> Result<(), LinkError> {
        self.wbuf.clear();
        codec::encode(p, self.version, &mut self.wbuf)?;
        self.stream.write_all(&self.wbuf).await?;
        Ok(())
    }

    /// The next packet. Cancel-safe: what was read stays in the buffer.
    pub async fn recv(&mut self) -> Result<Packet, LinkError> {
        loop {
            if let Some(p) = codec::decode(&mut self.rbuf, Some(self.version), self.max_packet)? {
                return Ok(p);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(LinkError::Closed);
            }
        }
    }

    /// Flushes and closes the write side.
    pub async fn shutdown(&mut self) {
        let _ = self.stream.shutdown().await;
    }
}
