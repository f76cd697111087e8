//! Built-in auth providers that need no external backend.
//!
//! * [`anonymous`] — CONNECTs without credentials, from allowed networks.
//! * [`client_id`] — a list of client ids, optionally bound to a network.
//! * [`password_file`] — a Mosquitto-format `user:hash` file, reloadable.
//! * [`ip`] — allow and deny networks (deny wins).
//! * [`certificate`] — a verified TLS client certificate.
//!
//! Each answers Allow or Deny only for clients it recognises and Ignore for
//! the rest, and names the rule that decided (`allow 10.0.0.0/8`,
//! `/etc/portcullis/passwd:3`). Peers are compared as IPv4 when they arrive
//! as IPv4-mapped IPv6 (`::ffff:10.0.0.1`), and so are configured networks
//! written that way.

pub mod anonymous;
pub mod certificate;
pub mod client_id;
pub mod ip;
pub mod password_file;

use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv4Net};

/// A provider's file could not be loaded. Names the file, and the line for
/// a malformed one; never quotes a password hash.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}: {problem}", path.display())]
    Line { path: PathBuf, line: usize, problem: String },
}

/// The address as IPv4 when it is IPv4-mapped IPv6.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// `::ffff:a.b.c.d/(96+n)` as `a.b.c.d/n`; other networks unchanged.
pub(crate) fn canonical_net(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
            Some(v4) => Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        _ => net,
    }
}

/// A network from config or a file: `10.0.0.0/8`, or a bare address
/// (`10.1.2.3` = `/32`, `::1` = `/128`).
pub(crate) fn parse_net(s: &str) -> Option<IpNet> {
    let net = s.parse::<IpNet>().ok().or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))?;
    Some(canonical_net(net))
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use bytes::Bytes;
    use portcullis_core::codec::ProtocolVersion;
    use portcullis_core::gate::{ConnectInfo, Password};

    /// A CONNECT from `peer` (`ip:port`).
    pub fn connect(client_id: &str, username: Option<&str>, password: Option<&[u8]>, peer: &str) -> ConnectInfo {
        ConnectInfo {
            client_id: Arc::from(client_id),
            username: username.map(Arc::from),
            password: password.map(|p| Password::new(Bytes::copy_from_slice(p))),
            peer: peer.parse().expect("test peer address"),
            listener: Arc::from("tcp"),
            protocol: ProtocolVersion::V311.into(),
            cert: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_and_networks_become_ipv4() {
        assert_eq!(canonical_ip("::ffff:10.1.2.3".parse().unwrap()), "10.1.2.3".parse::<IpAddr>().unwrap());
        assert_eq!(canonical_ip("::1".parse().unwrap()), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(canonical_net("::ffff:10.0.0.0/104".parse().unwrap()), "10.0.0.0/8".parse::<IpNet>().unwrap());
        assert_eq!(canonical_net("::/0".parse().unwrap()), "::/0".parse::<IpNet>().unwrap());
        assert_eq!(parse_net("10.1.2.3"), Some("10.1.2.3/32".parse().unwrap()));
        assert_eq!(parse_net("::1"), Some("::1/128".parse().unwrap()));
        assert_eq!(parse_net("10.0.0.0/33"), None);
        assert_eq!(parse_net("nope"), None);
    }
}
