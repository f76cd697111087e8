//! A minimal MQTT client over the broker's own codec.
//!
//! * [`ClientOpts`] — protocol version, credentials, keep-alive, timeout.
//! * [`open`] — TCP connect, CONNECT, CONNACK, all under one timeout; a
//!   refused CONNACK is an [`OpenError::Refused`] carrying its code.
//! * [`PacketReader`] / [`PacketWriter`] — the two halves of a connection:
//!   bytes to packets (cancel-safe, so it can sit in a `select!`) and
//!   packets to a buffer flushed with one write.

use std::io;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use portcullis_core::codec::{self, ConnAck, Connect, DecodeError, Packet, Properties, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::target::Target;

/// Largest packet accepted from the broker (MQTT's own maximum).
const MAX_PACKET: u32 = 268_435_460;

/// How every client of a run connects.
#[derive(Clone)]
pub struct ClientOpts {
    pub version: ProtocolVersion,
    pub username: Option<String>,
    /// Client i uses `username` + `i % users`.
    pub users: Option<u32>,
    pub password: Option<Bytes>,
    pub keep_alive: u16,
    /// Start of every client id: conn clients are `<prefix>c<i>`, pubsub
    /// subscribers `<prefix>s<i>` and publishers `<prefix>p<i>`.
    pub client_prefix: String,
    /// Bound on each network step: the whole handshake, a SUBACK, a flush.
    pub timeout: Duration,
    /// `Some(seconds)`: connect with a persistent session (clean start 0,
    /// v5 session expiry interval); `None`: clean start.
    pub session_expiry: Option<u32>,
}

impl std::fmt::Debug for ClientOpts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOpts")
            .field("version", &self.version)
            .field("username", &self.username)
            .field("users", &self.users)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("keep_alive", &self.keep_alive)
            .field("client_prefix", &self.client_prefix)
            .field("timeout", &self.timeout)
            .field("session_expiry", &self.session_expiry)
            .finish()
    }
}

impl ClientOpts {
    /// The username client `idx` sends.
    pub fn username_for(&self, idx: usize) -> Option<String> {
        let u = self.username.as_ref()?;
        Some(match self.users {
            Some(n) => format!("{u}{}", idx % n as usize),
            None => u.clone(),
        })
    }

    /// How often an otherwise idle client sends PINGREQ.
    pub fn ping_every(&self) -> Duration {
        Duration::from_secs(u64::from(self.keep_alive.max(2) / 2))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("i/o: {0}")]
    Io(#[from] io::Error),
    #[error("timed out")]
    Timeout,
    #[error("connection closed by the broker")]
    Closed,
    #[error("undecodable packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode {0}: {1}")]
    Encode(&'static str, codec::EncodeError),
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
}

impl ClientError {
    /// Short label for counting failures by kind.
    pub fn label(&self) -> &'static str {
        match self {
            ClientError::Io(e) => match e.kind() {
                io::ErrorKind::ConnectionRefused => "tcp_refused",
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe => "reset",
                io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable => "no_source_port",
                _ if e.raw_os_error() == Some(24) => "too_many_open_files",
                _ => "io",
            },
            ClientError::Timeout => "timeout",
            ClientError::Closed => "closed",
            ClientError::Decode(_) | ClientError::Encode(..) | ClientError::Unexpected(_) => "protocol",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("CONNACK refused with code 0x{code:02x}")]
    Refused { code: u8, latency: Duration },
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// An accepted connection.
#[derive(Debug)]
pub struct Session {
    pub reader: PacketReader,
    pub writer: PacketWriter,
    pub connack: ConnAck,
    /// From CONNECT written to CONNACK read.
    pub connack_latency: Duration,
}

/// Connects client `idx` as `client_id` and waits for its CONNACK.
pub async fn open(target: &Target, idx: usize, client_id: String, opts: &ClientOpts) -> Result<Session, OpenError> {
    match tokio::time::timeout(opts.timeout, handshake(target, idx, client_id, opts)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout.into()),
    }
}

async fn handshake(target: &Target, idx: usize, client_id: String, opts: &ClientOpts) -> Result<Session, OpenError> {
    let stream = target.connect(idx).await.map_err(ClientError::Io)?;
    let (r, w) = stream.into_split();
    let mut reader = PacketReader { half: r, buf: BytesMut::with_capacity(4096), version: opts.version };
    let mut writer = PacketWriter { half: w, out: BytesMut::with_capacity(4096), version: opts.version };
    let connect = Connect {
        protocol: opts.version,
        bridge: false,
        clean_start: opts.session_expiry.is_none(),
        keep_alive: opts.keep_alive,
        client_id,
        will: None,
        username: opts.username_for(idx),
        password: opts.password.clone(),
        properties: Properties { session_expiry_interval: opts.session_expiry, ..Properties::default() },
    };
    writer.push(&Packet::Connect(Box::new(connect)))?;
    let sent = Instant::now();
    writer.flush().await?;
    match reader.next().await? {
        Some(Packet::ConnAck(ack)) => {
            let latency = sent.elapsed();
            if ack.code != 0 {
                return Err(OpenError::Refused { code: ack.code, latency });
            }
            Ok(Session { reader, writer, connack: ack, connack_latency: latency })
        }
        Some(other) => Err(ClientError::Unexpected(other.name()).into()),
        None => Err(ClientError::Closed.into()),
    }
}

/// Reading half: bytes in, packets out.
#[derive(Debug)]
pub struct PacketReader {
    half: OwnedReadHalf,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl PacketReader {
    /// A packet already buffered, without reading.
    pub fn try_next(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(codec::decode(&mut self.buf, Some(self.version), MAX_PACKET)?)
    }

    /// The next packet, or `None` when the broker closed the connection.
    /// Cancel-safe: the bytes read so far stay buffered.
    pub async fn next(&mut self) -> Result<Option<Packet>, ClientError> {
        loop {
            if let Some(p) = self.try_next()? {
                return Ok(Some(p));
            }
            if self.half.read_buf(&mut self.buf).await? == 0 {
                return Ok(None);
            }
        }
    }

    /// [`next`](Self::next) under a timeout; a close is an error.
    pub async fn expect(&mut self, timeout: Duration) -> Result<Packet, ClientError> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(Ok(Some(p))) => Ok(p),
            Ok(Ok(None)) => Err(ClientError::Closed),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ClientError::Timeout),
        }
    }
}

/// Writing half: packets are encoded into a buffer, written by `flush`.
#[derive(Debug)]
pub struct PacketWriter {
    half: OwnedWriteHalf,
    out: BytesMut,
    version: ProtocolVersion,
}

impl PacketWriter {
    pub fn push(&mut self, p: &Packet) -> Result<(), ClientError> {
        codec::encode(p, self.version, &mut self.out).map_err(|e| ClientError::Encode(p.name(), e))
    }

    /// Bytes encoded and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    pub async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.out.is_empty() {
            self.half.write_all(&self.out).await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes the write side, bounded by `timeout`;
    /// errors are ignored (the broker may already be gone).
    pub async fn close(mut self, timeout: Duration) {
        let disconnect = Packet::Disconnect(codec::Disconnect { reason: 0, properties: Properties::default() });
        if self.push(&disconnect).is_ok() {
            let _ = tokio::time::timeout(timeout, async {
                let _ = self.flush().await;
                let _ = self.half.shutdown().await;
            })
            .await;
        }
    }
}
