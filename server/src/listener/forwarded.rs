//! The client address behind HTTP proxies: `Forwarded` (RFC 7239) or, when
//! there is none, `X-Forwarded-For`, believed only as far as the hops that
//! wrote them are trusted.
//!
//! Each proxy appends the address it received the request from, so the
//! list reads client-first, nearest-proxy-last. Walking it from the end,
//! starting at the socket's peer: while the current hop is a trusted proxy,
//! the entry before it is what that proxy saw, and becomes the current hop.
//! The first untrusted hop is the client. Entries a client wrote itself sit
//! to the left of the first trusted proxy's entry and are never reached.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio_tungstenite::tungstenite::http::HeaderMap;

/// An entry that had to be read was not an address (`unknown`, an
/// obfuscated node name, garbage).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{header} entry \"{entry}\" is not an IP address")]
pub struct BadEntry {
    pub header: &'static str,
    pub entry: String,
}

/// True if `ip` is in one of `nets` (IPv4-mapped IPv6 counts as IPv4).
pub fn is_trusted(ip: IpAddr, nets: &[IpNet]) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The client's address for a request that came from `hop`.
pub fn client_address(headers: &HeaderMap, hop: IpAddr, trusted: &[IpNet]) -> Result<IpAddr, BadEntry> {
    if !is_trusted(hop, trusted) {
        return Ok(hop);
    }
    let (header, entries) = match forwarded_for(headers) {
        Some(list) => ("Forwarded", list),
        None => ("X-Forwarded-For", x_forwarded_for(headers)),
    };
    let mut client = hop;
    for entry in entries.iter().rev() {
        if !is_trusted(client, trusted) {
            break;
        }
        client = parse_node(entry).ok_or_else(|| BadEntry { header, entry: entry.chars().take(64).collect() })?;
    }
    Ok(client)
}

/// Every `X-Forwarded-For` entry, headers in order.
fn x_forwarded_for(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .flat_map(|v| {
            String::from_utf8_lossy(v.as_bytes()).split(',').map(|s| s.trim().to_string()).collect::<Vec<_>>()
        })
        .filter(|s| !s.is_empty())
        .collect()
}

/// The `for=` value of every `Forwarded` element, headers in order; `None`
/// when there is no `Forwarded` header. An element without `for=` counts
/// as an unreadable entry.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<String>> {
    let mut values = headers.get_all("forwarded").iter().peekable();
    values.peek()?;
    let mut out = Vec::new();
    for value in values {
        let text = String::from_utf8_lossy(value.as_bytes());
        for element in split_quoted(&text, ',') {
            let node = split_quoted(element, ';').into_iter().find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then(|| unquote(v.trim()))
            });
            out.push(node.unwrap_or_default());
        }
    }
    Some(out)
}

/// Splits on `sep` outside double quotes.
fn split_quoted(s: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            c if c == sep && !quoted => {
                parts.push(s[start..i].trim());
                start = i + c.len_utf8();
            }
            _ => {}
        }
    }
    parts.push(s[start..].trim());
    parts.into_iter().filter(|p| !p.is_empty()).collect()
}

fn unquote(v: &str) -> String {
    match v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) {
        Some(inner) => {
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                out.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
            }
            out
        }
        None => v.to_string(),
    }
}

/// `192.0.2.7`, `192.0.2.7:4711`, `[2001:db8::7]`, `[2001:db8::7]:4711`,
/// and (as some proxies write in `X-Forwarded-For`) a bare IPv6 address.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    let inner = node.strip_prefix('[')?.split(']').next()?;
    inner.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use tokio_tungstenite::tungstenite::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn untrusted_hop_is_the_client_whatever_it_says() {
        let h = headers(&[("x-forwarded-for", "203.0.113.7")]);
        assert_eq!(client_address(&h, ip("198.51.100.1"), &nets(&["10.0.0.0/8"])), Ok(ip("198.51.100.1")));
    }

    #[test]
    fn trusted_hops_are_walked_from_the_right() {
        let trusted = nets(&["10.0.0.0/8", "127.0.0.0/8"]);
        // The client forged the first entry; the balancer appended the real one.
        let h = headers(&[("x-forwarded-for", "127.0.0.1, 203.0.113.7"), ("x-forwarded-for", "10.1.1.1")]);
        assert_eq!(client_address(&h, ip("127.0.0.1"), &trusted), Ok(ip("203.0.113.7")));
        // Every hop trusted: the leftmost entry.
        let h = headers(&[("x-forwarded-for", "10.9.9.9, 10.1.1.1")]);
        assert_eq!(client_address(&h, ip("127.0.0.1"), &trusted), Ok(ip("10.9.9.9")));
        // No header from a trusted proxy: the proxy itself.
        assert_eq!(client_address(&HeaderMap::new(), ip("127.0.0.1"), &trusted), Ok(ip("127.0.0.1")));
        // Mapped addresses count as IPv4.
        assert!(is_trusted(ip("::ffff:10.1.2.3"), &trusted));
    }

    #[test]
    fn forwarded_wins_and_is_parsed_per_rfc_7239() {
        let trusted = nets(&["127.0.0.0/8"]);
        let h = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43, For=\"[2001:db8:cafe::17]:4711\""),
        ]);
        assert_eq!(client_address(&h, ip("127.0.0.1"), &trusted), Ok(ip("2001:db8:cafe::17")));
        let h = headers(&[("forwarded", "for=\"198.51.100.17:8080\";proto=https")]);
        assert_eq!(client_address(&h, ip("127.0.0.1"), &trusted), Ok(ip("198.51.100.17")));
    }

    #[test]
    fn unreadable_entries_are_errors_only_when_reached() {
        let trusted = nets(&["127.0.0.0/8"]);
        let h = headers(&[("forwarded", "for=unknown")]);
        assert!(client_address(&h, ip("127.0.0.1"), &trusted).is_err());
        let h = headers(&[("x-forwarded-for", "garbage, 203.0.113.7")]);
        assert_eq!(client_address(&h, ip("127.0.0.1"), &trusted), Ok(ip("203.0.113.7")));
        let h = headers(&[("x-forwarded-for", "203.0.113.7, not-an-ip")]);
        let e = client_address(&h, ip("127.0.0.1"), &trusted).unwrap_err();
        assert_eq!(e.entry, "not-an-ip");
        assert_eq!(parse_node("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(parse_node("[2001:db8::1]:80"), Some(ip("2001:db8::1")));
    }
}
