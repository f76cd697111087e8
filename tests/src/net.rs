//! Harness for the transport tests: brokers with several named listeners,
//! a throwaway PKI made with rcgen, TLS clients (tokio-rustls), PROXY
//! protocol headers, a WebSocket client that speaks raw frames, and a raw
//! MQTT client over any byte stream. Every read is bounded in time.
//!
//! * [`start`] — a broker and the address of each of its listeners, read
//!   from its `listening … listener=NAME … addr=ADDR` log lines.
//! * [`Ca`] / [`Leaf`] — CAs and the server and client certificates they sign.
//! * [`tls_config`] / [`tls_connect`] — TLS client connections.
//! * [`proxy_v1`] / [`proxy_v2`] — PROXY headers a balancer would send.
//! * [`ws_upgrade`] / [`WsClient`] — WebSocket upgrade and frames.
//! * [`Client`] — MQTT packets over any `AsyncRead + AsyncWrite`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use portcullis_core::codec::{self, Packet, ProtocolVersion};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::{Broker, READ_TIMEOUT};

/// A broker started with `cfg` (which declares its `[[listeners]]`, each
/// with a name), and the bound address of each listener by name.
pub fn start(cfg: &str) -> (Broker, HashMap<String, SocketAddr>) {
    let want = cfg.matches("[[listeners]]").count();
    let broker = Broker::start_with_config(cfg);
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let addrs = listening(&broker.log());
        if addrs.len() >= want {
            return (broker, addrs);
        }
        assert!(Instant::now() < end, "{want} listeners did not start; log:\n{}", broker.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `listener=NAME` → `addr=ADDR` of every `listening` line in `log`.
pub fn listening(log: &str) -> HashMap<String, SocketAddr> {
    log.lines()
        .filter(|l| l.contains(" listening"))
        .filter_map(|l| {
            let field = |key: &str| l.split_whitespace().find_map(|w| w.strip_prefix(key)).map(str::to_string);
            Some((field("listener=")?, field("addr=")?.parse().ok()?))
        })
        .collect()
}

/// A certificate authority for tests.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ca")
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Ca { issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate") }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for 127.0.0.1 and localhost, with `cn`.
    pub fn server(&self, cn: &str) -> Leaf {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).expect("server params");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with subject `CN=cn,O=Portcullis Tests` and
    /// the given DNS and URI subject alternative names.
    pub fn client(&self, cn: &str, dns: &[&str], uris: &[&str]) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::OrganizationName, "Portcullis Tests");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        for d in dns {
            params.subject_alt_names.push(SanType::DnsName((*d).try_into().expect("dns name")));
        }
        for u in uris {
            params.subject_alt_names.push(SanType::URI((*u).try_into().expect("uri")));
        }
        self.sign(params)
    }

    fn sign(&self, params: CertificateParams) -> Leaf {
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes the CA certificate to `dir/name` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.pem()).expect("write CA");
        p
    }
}

impl Leaf {
    /// Writes `dir/name.pem` and `dir/name.key`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
        std::fs::write(&c, &self.cert_pem).expect("write cert");
        std::fs::write(&k, &self.key_pem).expect("write key");
        (c, k)
    }
}

/// A rustls client configuration (ring) trusting `ca_pem`, presenting
/// `identity` when given, offering `alpn`.
pub fn tls_config(ca_pem: &str, identity: Option<&Leaf>, alpn: &[&str]) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c.expect("CA pem")).expect("add CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(leaf) => {
            let chain: Vec<_> =
                rustls_pemfile::certs(&mut leaf.cert_pem.as_bytes()).map(|c| c.expect("cert")).collect();
            let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes()).expect("key pem").expect("a key");
            builder.with_client_auth_cert(chain, key).expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
    Arc::new(config)
}

pub type TlsStream<S> = tokio_rustls::client::TlsStream<S>;

/// A TLS connection to `addr` (server name 127.0.0.1).
pub async fn tls_connect(addr: SocketAddr, config: Arc<rustls::ClientConfig>) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_connect(addr).await;
    tls_over(tcp, config).await
}

/// TLS over an established stream (for PROXY header + TLS), bounded in time.
pub async fn tls_over<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<TlsStream<S>> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("server name");
    match tokio::time::timeout(READ_TIMEOUT, tokio_rustls::TlsConnector::from(config).connect(name, stream)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake timed out")),
    }
}

pub async fn tcp_connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(READ_TIMEOUT, TcpStream::connect(addr)).await.expect("connect timeout").expect("connect")
}

/// A PROXY protocol v1 header.
pub fn proxy_v1(src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
    let family = if src.is_ipv4() { "TCP4" } else { "TCP6" };
    format!("PROXY {family} {} {} {} {}\r\n", src.ip(), dst.ip(), src.port(), dst.port()).into_bytes()
}

/// A PROXY protocol v2 header: PROXY with `src` (IPv4 only here), or
/// LOCAL when `src` is `None`; `tlv` bytes are appended to the addresses.
pub fn proxy_v2(src: Option<std::net::SocketAddrV4>, dst: std::net::SocketAddrV4, tlv: &[u8]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    let mut body = Vec::new();
    match src {
        Some(src) => {
            h.extend_from_slice(&[0x21, 0x11]);
            body.extend_from_slice(&src.ip().octets());
            body.extend_from_slice(&dst.ip().octets());
            body.extend_from_slice(&src.port().to_be_bytes());
            body.extend_from_slice(&dst.port().to_be_bytes());
        }
        None => h.extend_from_slice(&[0x20, 0x00]),
    }
    body.extend_from_slice(tlv);
    h.extend_from_slice(&(body.len() as u16).to_be_bytes());
    h.extend_from_slice(&body);
    h
}

/// MQTT packets over any byte stream.
#[derive(Debug)]
pub struct Client<S> {
    pub io: S,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    pub fn new(io: S) -> Client<S> {
        Client { io, buf: BytesMut::new(), version: ProtocolVersion::V311 }
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    pub async fn send_packet(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        codec::encode(p, self.version, &mut b).expect("encode");
        self.send(&b).await
    }

    /// `Err(())` on timeout, `Ok(None)` on close or a read error.
    #[allow(clippy::result_unit_err)]
    pub async fn recv_timeout(&mut self, t: Duration) -> Result<Option<Packet>, ()> {
        let end = tokio::time::Instant::now() + t;
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.buf, Some(self.version), u32::MAX >> 4) {
                return Ok(Some(p));
            }
            match tokio::time::timeout_at(end, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Next packet; panics on timeout.
    pub async fn recv(&mut self) -> Option<Packet> {
        self.recv_timeout(READ_TIMEOUT).await.expect("timed out waiting for a packet")
    }

    /// Sends CONNECT and returns the CONNACK code, or `None` if the
    /// connection closed (or broke) first.
    pub async fn connect(&mut self, connect: codec::Connect) -> Option<u8> {
        self.version = connect.protocol;
        self.send_packet(&Packet::Connect(Box::new(connect))).await.ok()?;
        match self.recv_timeout(READ_TIMEOUT).await {
            Ok(Some(Packet::ConnAck(a))) => Some(a.code),
            Ok(Some(other)) => panic!("expected CONNACK, got {other:?}"),
            Ok(None) => None,
            Err(()) => panic!("no CONNACK and no close within {READ_TIMEOUT:?}"),
        }
    }

    /// SUBSCRIBE to one filter; returns the SUBACK's code for it.
    pub async fn subscribe(&mut self, filter: &str, qos: codec::QoS) -> u8 {
        let filters = vec![(filter.to_string(), crate::kit::opts(qos))];
        let sub = codec::Subscribe { packet_id: 1, filters, properties: codec::Properties::default() };
        self.send_packet(&Packet::Subscribe(sub)).await.expect("send SUBSCRIBE");
        match self.recv().await {
            Some(Packet::SubAck(a)) => a.return_codes[0],
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// PINGREQ → PINGRESP.
    pub async fn ping(&mut self) {
        self.send_packet(&Packet::PingReq).await.expect("send PINGREQ");
        match self.recv().await {
            Some(Packet::PingResp) => {}
            other => panic!("expected PINGRESP, got {other:?}"),
        }
    }
}

/// The server's answer to a WebSocket upgrade request.
#[derive(Debug, Clone)]
pub struct UpgradeResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// What followed the headers until the server closed (error responses).
    pub body: String,
}

impl UpgradeResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// Sends an upgrade request for `path` offering `protocol` (none when
/// `None`) with `extra` headers, and reads the answer. On 101 the stream is
/// returned as a [`WsClient`].
pub async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    mut io: S,
    path: &str,
    protocol: Option<&str>,
    extra: &[(&str, &str)],
) -> (UpgradeResponse, Option<WsClient<S>>) {
    let mut req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    );
    if let Some(p) = protocol {
        req.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    for (k, v) in extra {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    io.write_all(req.as_bytes()).await.expect("send upgrade request");
    let mut buf = BytesMut::new();
    let end = tokio::time::Instant::now() + READ_TIMEOUT;
    let head_len = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "upgrade response head too long");
        match tokio::time::timeout_at(end, io.read_buf(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => {}
            other => panic!("no upgrade response: {other:?}; got {:?}", String::from_utf8_lossy(&buf)),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_len]).into_owned();
    buf.advance(head_len);
    let mut lines = head.lines();
    let status = lines.next().and_then(|l| l.split_whitespace().nth(1)).and_then(|s| s.parse().ok()).unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut resp = UpgradeResponse { status, headers, body: String::new() };
    if status == 101 {
        return (resp, Some(WsClient { io, buf, mqtt: BytesMut::new(), version: ProtocolVersion::V311 }));
    }
    let _ = tokio::time::timeout(READ_TIMEOUT, async {
        while let Ok(n) = io.read_buf(&mut buf).await {
            if n == 0 || buf.len() > 64 * 1024 {
                break;
            }
        }
    })
    .await;
    resp.body = String::from_utf8_lossy(&buf).into_owned();
    (resp, None)
}

/// WebSocket opcodes.
pub mod op {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// A WebSocket client speaking frames by hand (client frames are masked),
/// and MQTT over them.
#[derive(Debug)]
pub struct WsClient<S> {
    pub io: S,
    buf: BytesMut,
    /// MQTT bytes from binary frames not yet decoded.
    mqtt: BytesMut,
    pub version: ProtocolVersion,
}

/// One frame's header for `len` payload bytes, masked with `mask`.
pub fn frame_header(fin: bool, opcode: u8, len: u64, mask: [u8; 4]) -> Vec<u8> {
    let mut h = vec![if fin { 0x80 } else { 0 } | opcode];
    match len {
        0..=125 => h.push(0x80 | len as u8),
        126..=65535 => {
            h.push(0x80 | 126);
            h.extend_from_slice(&(len as u16).to_be_bytes());
        }
        _ => {
            h.push(0x80 | 127);
            h.extend_from_slice(&len.to_be_bytes());
        }
    }
    h.extend_from_slice(&mask);
    h
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsClient<S> {
    /// Sends one masked frame.
    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut f = frame_header(fin, opcode, payload.len() as u64, mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.io.write_all(&f).await?;
        self.io.flush().await
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// The next frame from the server: `(opcode, payload)`, `Ok(None)` on
    /// close of the stream, `Err(())` on timeout.
    #[allow(clippy::result_unit_err)]
    pub async fn recv_frame(&mut self, t: Duration) -> Result<Option<(u8, Vec<u8>)>, ()> {
        let end = tokio::time::Instant::now() + t;
        loop {
            if let Some(f) = self.parse_frame() {
                return Ok(Some(f));
            }
            match tokio::time::timeout_at(end, self.io.read_buf(&mut self.buf)).await {
                Err(_) => return Err(()),
                Ok(Ok(0)) | Ok(Err(_)) => return Ok(None),
                Ok(Ok(_)) => {}
            }
        }
    }

    fn parse_frame(&mut self) -> Option<(u8, Vec<u8>)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut at) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (u64::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (u64::from_be_bytes(b[2..10].try_into().ok()?), 10),
            126 | 127 => return None,
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            let m: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
            at += 4;
            Some(m)
        } else {
            None
        };
        let len = usize::try_from(len).ok()?;
        if b.len() < at + len {
            return None;
        }
        let mut payload = b[at..at + len].to_vec();
        if let Some(m) = mask {
            payload.iter_mut().enumerate().for_each(|(i, x)| *x ^= m[i % 4]);
        }
        self.buf.advance(at + len);
        Some((opcode, payload))
    }

    /// Sends an MQTT packet as one binary frame.
    pub async fn send_packet(&mut self, p: &Packet) -> std::io::Result<()> {
        let mut b = BytesMut::new();
        codec::encode(p, self.version, &mut b).expect("encode");
        self.send_frame(true, op::BINARY, &b).await
    }

    /// The next MQTT packet from binary frames (other frames are skipped);
    /// `Ok(None)` when the server closed (close frame or end of stream).
    #[allow(clippy::result_unit_err)]
    pub async fn recv_packet(&mut self, t: Duration) -> Result<Option<Packet>, ()> {
        let end = tokio::time::Instant::now() + t;
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.mqtt, Some(self.version), u32::MAX >> 4) {
                return Ok(Some(p));
            }
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            match self.recv_frame(left).await? {
                Some((op::BINARY | op::CONTINUATION, data)) => self.mqtt.extend_from_slice(&data),
                Some((op::CLOSE, _)) | None => return Ok(None),
                Some(_) => {}
            }
        }
    }

    /// Waits for the server's close frame and returns its status code
    /// (`None` if the stream ended without one). Panics on timeout.
    pub async fn expect_close(&mut self) -> Option<u16> {
        loop {
            match self.recv_frame(READ_TIMEOUT).await {
                Ok(Some((op::CLOSE, data))) => return data.get(..2).map(|c| u16::from_be_bytes([c[0], c[1]])),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(()) => panic!("no close frame within {READ_TIMEOUT:?}"),
            }
        }
    }
}
