//! Where the load goes: a broker on loopback, and nowhere else.
//!
//! [`Target`] is validated once from the command line: the host must be an
//! IPv4 address in 127.0.0.0/8 (or `localhost`), so the tool cannot be
//! pointed at someone else's broker. [`Target::socket`] opens each client's
//! TCP connection from a source address spread over 127.0.0.1..=127.0.0.N:
//! one source address has only the ephemeral port range (about 28,000
//! ports) to connect from, 250 of them have 250 times as many.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Largest `--sources`: 127.0.0.1..=127.0.0.250.
pub const MAX_SOURCES: u8 = 250;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TargetError {
    #[error("host {0:?} is not an IPv4 address (only 127.0.0.0/8 or `localhost` are accepted)")]
    NotAnAddress(String),
    #[error("refusing to load {0}: this tool only targets brokers on loopback (127.0.0.0/8)")]
    NotLoopback(IpAddr),
    #[error("--sources {0} is out of range 0..={MAX_SOURCES}")]
    Sources(u8),
}

/// A validated loopback broker address and the source addresses to use.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub addr: SocketAddr,
    /// Number of 127.0.0.x source addresses to spread over; 0 lets the OS
    /// choose.
    sources: u8,
}

impl Target {
    pub fn new(host: &str, port: u16, sources: u8) -> Result<Target, TargetError> {
        let ip: IpAddr = match host {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.parse().map_err(|_| TargetError::NotAnAddress(h.to_string()))?,
        };
        match ip {
            IpAddr::V4(v4) if v4.is_loopback() => {}
            other => return Err(TargetError::NotLoopback(other)),
        }
        if sources > MAX_SOURCES {
            return Err(TargetError::Sources(sources));
        }
        Ok(Target { addr: SocketAddr::new(ip, port), sources })
    }

    /// Source address for client number `idx`, if spreading.
    pub fn source(&self, idx: usize) -> Option<SocketAddr> {
        if self.sources == 0 {
            return None;
        }
        let x = 1 + (idx % usize::from(self.sources)) as u8;
        Some(SocketAddr::from(([127, 0, 0, x], 0)))
    }

    /// Connects client number `idx`.
    pub async fn connect(&self, idx: usize) -> io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        if let Some(src) = self.source(idx) {
            socket.bind(src)?;
        }
        let stream = socket.connect(self.addr).await?;
        stream.set_nodelay(true)?;
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_is_accepted() {
        assert!(Target::new("127.0.0.1", 1883, 250).is_ok());
        assert!(Target::new("127.3.4.5", 1883, 0).is_ok());
        assert_eq!(Target::new("localhost", 1, 1).map(|t| t.addr.ip()), Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        assert!(matches!(Target::new("10.0.0.1", 1883, 1), Err(TargetError::NotLoopback(_))));
        assert!(matches!(Target::new("::1", 1883, 1), Err(TargetError::NotLoopback(_))));
        assert!(matches!(Target::new("8.8.8.8", 1883, 1), Err(TargetError::NotLoopback(_))));
        assert!(matches!(Target::new("example.com", 1883, 1), Err(TargetError::NotAnAddress(_))));
        assert_eq!(Target::new("127.0.0.1", 1, 251).err(), Some(TargetError::Sources(251)));
    }

    #[test]
    fn sources_are_spread() {
        let t = Target::new("127.0.0.1", 1883, 250).expect("valid");
        assert_eq!(t.source(0), Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(t.source(249), Some(SocketAddr::from(([127, 0, 0, 250], 0))));
        assert_eq!(t.source(250), Some(SocketAddr::from(([127, 0, 0, 1], 0))));
        assert_eq!(Target::new("127.0.0.1", 1883, 0).expect("valid").source(7), None);
    }
}
