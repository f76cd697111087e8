//! PROXY protocol v1 (text) and v2 (binary) headers, as load balancers
//! (HAProxy, AWS NLB, nginx `proxy_protocol`) put them in front of a
//! connection to tell who the client is.
//!
//! The header is read with exact-length reads, never past its end, so the
//! bytes after it (a TLS ClientHello, an HTTP upgrade, an MQTT CONNECT)
//! stay in the socket for whoever comes next and no buffer has to be
//! carried along. Parsing is `ppp`'s.

use std::net::SocketAddr;

use ppp::v1::Addresses as V1Addresses;
use ppp::v2::{Addresses as V2Addresses, Command};
use ppp::HeaderResult;
use tokio::io::{AsyncRead, AsyncReadExt};

/// The v2 signature, the first 12 bytes of a binary header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
/// A v1 header is at most 107 bytes, CRLF included.
const V1_MAX: usize = 107;
/// Largest v2 header accepted (16-byte fixed part, addresses, TLVs).
/// Balancers send well under 1 KiB.
const V2_MAX: usize = 4096;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY protocol header")]
    Missing,
    #[error("malformed PROXY protocol header: {0}")]
    Malformed(String),
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
    #[error("reading the PROXY protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one PROXY header from the start of `stream`. `Some(address)` is
/// the client the balancer speaks for; `None` when the header says the
/// connection is the balancer's own (v2 `LOCAL`, v1 `UNKNOWN`, a v2 header
/// without IP addresses): the socket's peer address stands.
pub async fn read_header<S: AsyncRead + Unpin>(stream: &mut S) -> Result<Option<SocketAddr>, ProxyError> {
    // 12 bytes: enough to tell v2 from v1, and less than any v1 header.
    let mut buf = vec![0u8; 12];
    stream.read_exact(&mut buf).await?;
    if buf == V2_SIGNATURE {
        buf.resize(16, 0);
        stream.read_exact(&mut buf[12..]).await?;
        let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
        if 16 + len > V2_MAX {
            return Err(ProxyError::TooLong(V2_MAX));
        }
        buf.resize(16 + len, 0);
        stream.read_exact(&mut buf[16..]).await?;
    } else if buf.starts_with(b"PROXY ") {
        while !buf.ends_with(b"\r\n") {
            if buf.len() >= V1_MAX {
                return Err(ProxyError::TooLong(V1_MAX));
            }
            buf.push(stream.read_u8().await?);
        }
    } else {
        return Err(ProxyError::Missing);
    }
    parse(&buf)
}

/// The client address in a complete header (exactly the header's bytes).
fn parse(header: &[u8]) -> Result<Option<SocketAddr>, ProxyError> {
    match HeaderResult::parse(header) {
        HeaderResult::V1(Ok(h)) => Ok(match h.addresses {
            V1Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            V1Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
            V1Addresses::Unknown => None,
        }),
        HeaderResult::V2(Ok(h)) => Ok(match (h.command, h.addresses) {
            (Command::Local, _) => None,
            (Command::Proxy, V2Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (Command::Proxy, V2Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
            (Command::Proxy, V2Addresses::Unspecified | V2Addresses::Unix(_)) => None,
        }),
        HeaderResult::V1(Err(e)) => Err(ProxyError::Malformed(e.to_string())),
        HeaderResult::V2(Err(e)) => Err(ProxyError::Malformed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, Vec<u8>) {
        let mut input = bytes;
        let r = read_header(&mut input).await;
        (r, input.to_vec())
    }

    fn v2(command: u8, family: u8, addresses: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&(addresses.len() as u16).to_be_bytes());
        h.extend_from_slice(addresses);
        h
    }

    #[tokio::test]
    async fn v1_tcp4_and_tcp6_leave_the_rest_unread() {
        let (r, rest) = read(b"PROXY TCP4 203.0.113.7 10.0.0.1 51000 1883\r\n\x10\x0c").await;
        assert_eq!(r.unwrap(), Some("203.0.113.7:51000".parse().unwrap()));
        assert_eq!(rest, b"\x10\x0c");
        let (r, rest) = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 1883\r\nXY").await;
        assert_eq!(r.unwrap(), Some("[2001:db8::7]:4000".parse().unwrap()));
        assert_eq!(rest, b"XY");
        let (r, rest) = read(b"PROXY UNKNOWN\r\nabc").await;
        assert_eq!(r.unwrap(), None);
        assert_eq!(rest, b"abc");
    }

    #[tokio::test]
    async fn v2_proxy_local_and_tlvs() {
        let mut addr = vec![203, 0, 113, 9, 10, 0, 0, 1];
        addr.extend_from_slice(&4242u16.to_be_bytes());
        addr.extend_from_slice(&1883u16.to_be_bytes());
        let mut with_tlv = addr.clone();
        with_tlv.extend_from_slice(&[0x04, 0x00, 0x00]); // PP2_TYPE_NOOP, empty
        let mut bytes = v2(1, 0x11, &with_tlv);
        bytes.extend_from_slice(b"rest");
        let (r, rest) = read(&bytes).await;
        assert_eq!(r.unwrap(), Some("203.0.113.9:4242".parse().unwrap()));
        assert_eq!(rest, b"rest");
        let (r, _) = read(&v2(0, 0x00, &[])).await;
        assert_eq!(r.unwrap(), None, "LOCAL");
    }

    #[tokio::test]
    async fn refusals() {
        assert!(matches!(read(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c").await.0, Err(ProxyError::Missing)));
        assert!(matches!(read(b"PROXY TCP4 nonsense here\r\n").await.0, Err(ProxyError::Malformed(_))));
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert!(matches!(read(long.as_bytes()).await.0, Err(ProxyError::TooLong(_))));
        let mut huge = V2_SIGNATURE.to_vec();
        huge.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(read(&huge).await.0, Err(ProxyError::TooLong(_))));
        assert!(matches!(read(b"PROXY TC").await.0, Err(ProxyError::Io(_))), "cut short");
        // A v2 header whose address block is shorter than its family needs.
        assert!(matches!(read(&v2(1, 0x11, &[1, 2, 3])).await.0, Err(ProxyError::Malformed(_))));
    }
}
