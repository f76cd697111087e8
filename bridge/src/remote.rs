//! Connecting to the remote broker: TCP (or TLS) to one of the addresses,
//! CONNECT with the state topic's `0` as will, CONNACK, and SUBSCRIBE to
//! the remote side of every incoming rule. All under `connect_timeout`.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::codec::{
    Connect, LastWill, Packet, Properties, ProtocolVersion, QoS, Subscribe, SubscriptionOptions,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::{split_host_port, BridgeConfig, BridgeTlsConfig};
use crate::link::{Link, LinkError};
use crate::rule::TopicRule;

/// Largest packet accepted from the remote.
const MAX_REMOTE_PACKET: u32 = 16 * 1024 * 1024;

/// Why a connection attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("timed out")]
    Timeout,
    #[error("{0}")]
    Link(#[from] LinkError),
    #[error("tls: {0}")]
    Tls(String),
    /// CONNACK with a non-zero code.
    #[error("refused with CONNACK code {0}")]
    Refused(u8),
    #[error("expected CONNACK, got {0}")]
    Unexpected(&'static str),
}

/// What the remote said in its CONNACK.
#[derive(Debug)]
pub struct Connected {
    pub link: Link,
    /// The remote's Receive Maximum (v5), if it gave one.
    pub receive_maximum: Option<u16>,
    pub session_present: bool,
}

/// The TLS client settings of a bridge, read from its files.
pub fn tls_connector(tls: &BridgeTlsConfig) -> Result<TlsConnector, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&tls.ca_file)? {
        roots.add(cert).map_err(|e| format!("{}: {e}", tls.ca_file.display()))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert)?;
            let mut r = BufReader::new(File::open(key).map_err(|e| format!("{}: {e}", key.display()))?);
            let key_der = rustls_pemfile::private_key(&mut r)
                .map_err(|e| format!("{}: {e}", key.display()))?
                .ok_or_else(|| format!("{}: no private key", key.display()))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| e.to_string())?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(TlsConnector::from(Arc::new(config)))
}

fn read_certs(path: &Path) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let mut r = BufReader::new(File::open(path).map_err(|e| format!("{}: {e}", path.display()))?);
    let certs: Vec<_> =
        rustls_pemfile::certs(&mut r).collect::<Result<_, _>>().map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate", path.display()));
    }
    Ok(certs)
}

/// One connection attempt to `address` (bounded by the caller).
pub async fn connect(
    cfg: &BridgeConfig,
    address: &str,
    tls: Option<&TlsConnector>,
    password: Option<&Bytes>,
    bridge_bit: bool,
    rules: &[TopicRule],
) -> Result<Connected, ConnectError> {
    let version: ProtocolVersion = cfg.protocol.into();
    let Some((host, port)) = split_host_port(address) else {
        return Err(ConnectError::Link(LinkError::Closed));
    };
    let tcp = TcpStream::connect((host, port)).await.map_err(LinkError::Io)?;
    let _ = tcp.set_nodelay(true);
    let mut link = match tls {
        None => Link::new(Box::new(tcp), version, MAX_REMOTE_PACKET),
        Some(connector) => {
            let name = cfg.tls.as_ref().and_then(|t| t.server_name.clone()).unwrap_or_else(|| host.to_string());
            let name = rustls::pki_types::ServerName::try_from(name).map_err(|e| ConnectError::Tls(e.to_string()))?;
            let stream = connector.connect(name, tcp).await.map_err(|e| ConnectError::Tls(e.to_string()))?;
            Link::new(Box::new(stream), version, MAX_REMOTE_PACKET)
        }
    };
    let will = cfg.notifications.then(|| LastWill {
        topic: cfg.state_topic(),
        payload: Bytes::from_static(b"0"),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Properties::default(),
    });
    let mut properties = Properties::default();
    if version.is_v5() && !cfg.clean_start {
        // Keep the session on the remote across reconnects, as 3.x does.
        properties.session_expiry_interval = Some(u32::MAX);
    }
    let connect = Connect {
        protocol: version,
        bridge: bridge_bit,
        clean_start: cfg.clean_start,
        keep_alive: u16::try_from(cfg.keepalive.as_secs()).unwrap_or(u16::MAX),
        client_id: cfg.remote_client_id(),
        will,
        username: cfg.username.clone(),
        password: password.cloned(),
        properties,
    };
    link.send(&Packet::Connect(Box::new(connect))).await?;
    let ack = match link.recv().await? {
        Packet::ConnAck(a) => a,
        other => return Err(ConnectError::Unexpected(other.name())),
    };
    if ack.code != 0 {
        return Err(ConnectError::Refused(ack.code));
    }
    let incoming: Vec<&TopicRule> = rules.iter().filter(|r| r.direction.incoming()).collect();
    // Also on a resumed session: the rules may have changed since.
    if !incoming.is_empty() {
        let filters = incoming
            .iter()
            .map(|r| {
                let options = SubscriptionOptions {
                    qos: r.qos,
                    no_local: true,
                    retain_as_published: true,
                    ..SubscriptionOptions::default()
                };
                (r.remote_filter().to_string(), options)
            })
            .collect();
        // The SUBACK is read by the bridge's loop.
        link.send(&Packet::Subscribe(Subscribe { packet_id: 1, filters, properties: Properties::default() })).await?;
    }
    Ok(Connected { link, receive_maximum: ack.properties.receive_maximum, session_present: ack.session_present })
}
