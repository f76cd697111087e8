//! How a backend provider reaches its servers, and one warning at start for
//! a provider that reaches a server off this host without verified TLS.
//!
//! An auth query in clear (LDAP, Redis, MongoDB, HTTP without TLS), or over
//! TLS whose certificate nobody checks (SQL's default `sslmode=prefer`),
//! can be read and *answered* by anyone on the path: a forged "allow" or a
//! superuser flag. Loopback and Unix sockets are not on a path. Each
//! backend describes its servers as [`Endpoint`]s when its provider is
//! built; [`warn_if_exposed`] logs the exposed ones once.

use std::net::IpAddr;

/// One server a provider talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name, address (IPv6 with or without brackets) or socket path.
    pub host: String,
    /// Traffic is TLS and the server's certificate is verified.
    pub verified: bool,
}

impl Endpoint {
    pub fn new(host: impl Into<String>, verified: bool) -> Endpoint {
        Endpoint { host: host.into(), verified }
    }
}

/// Whether `host` is this machine: a loopback address, `localhost` (or a
/// name under `.localhost`, RFC 6761), or a Unix socket path. Other names
/// are not resolved: a name that points here today may not tomorrow.
pub fn is_local(host: &str) -> bool {
    let h = host.trim();
    if h.starts_with('/') || h.starts_with('@') {
        return true;
    }
    let h = h.strip_prefix('[').and_then(|x| x.strip_suffix(']')).unwrap_or(h);
    if let Ok(ip) = h.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback(),
            IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        };
    }
    let h = h.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost" || h.ends_with(".localhost")
}

/// The host of `host:port`, `[v6]:port` or a bare host.
pub fn host_of(addr: &str) -> &str {
    let addr = addr.trim();
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        // One colon: host:port. More: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => addr,
    }
}

/// Logs one warning (provider key, the exposed hosts, `fix`) when any of
/// `endpoints` is off this host and not verified TLS; returns whether it
/// did.
pub fn warn_if_exposed(key: &str, endpoints: &[Endpoint], fix: &str) -> bool {
    let exposed: Vec<&str> =
        endpoints.iter().filter(|e| !e.verified && !is_local(&e.host)).map(|e| e.host.as_str()).collect();
    if exposed.is_empty() {
        return false;
    }
    tracing::warn!(
        provider = %key,
        servers = ?exposed,
        fix,
        "backend reached without verified TLS: anyone on the network path can read its auth traffic and answer for it"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_hosts() {
        for h in [
            "127.0.0.1",
            "127.3.4.5",
            "::1",
            "[::1]",
            "::ffff:127.0.0.1",
            "localhost",
            "LocalHost.",
            "db.localhost",
            "/var/run/postgresql",
            "@abstract",
        ] {
            assert!(is_local(h), "{h}");
        }
        for h in ["10.0.0.5", "db.internal", "localhost.example.com", "[2001:db8::1]", "0.0.0.0", ""] {
            assert!(!is_local(h), "{h}");
        }
    }

    #[test]
    fn hosts_of_addresses() {
        for (a, h) in [
            ("db:5432", "db"),
            ("127.0.0.1:6379", "127.0.0.1"),
            ("[::1]:27017", "::1"),
            ("::1", "::1"),
            ("db.internal", "db.internal"),
        ] {
            assert_eq!(host_of(a), h, "{a}");
        }
    }

    #[test]
    fn warns_only_for_exposed_endpoints() {
        let fix = "use tls";
        assert!(!warn_if_exposed("auth.x.a", &[Endpoint::new("127.0.0.1", false)], fix));
        assert!(!warn_if_exposed("auth.x.a", &[Endpoint::new("db.internal", true)], fix));
        assert!(warn_if_exposed("auth.x.a", &[Endpoint::new("::1", false), Endpoint::new("db.internal", false)], fix));
    }
}
