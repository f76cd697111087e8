//! What a socket may make the broker hold before its client is known.
//!
//! Between accept and CONNACK a peer is nobody: it may be one of thousands
//! of sockets trickling partial CONNECTs. Three bounds apply, besides the
//! listener's `max_connections` (checked at accept) and the connect
//! timeout:
//!
//! * **size** — a CONNECT larger than `limits.max_connect_size` is refused
//!   from its fixed header, before its body is buffered;
//! * **per address** — at most `limits.max_handshakes_per_ip` CONNECTs in
//!   progress from one address (IPv6: one /64); further sockets are closed
//!   at once;
//! * **memory** — every connection may buffer [`PREAUTH_FREE_BYTES`] of its
//!   CONNECT on its own account (a normal CONNECT is well under it, so a
//!   legitimate client is never refused for want of budget); beyond that it
//!   draws from the broker-wide `limits.handshake_memory`, and a socket that
//!   would overdraw it is closed.
//!
//! So the bytes held for unauthenticated sockets stay below
//! `handshake_memory + sockets × PREAUTH_FREE_BYTES`, and the sockets are
//! bounded by `max_connections`.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::settings::Limits;

/// Bytes of its CONNECT a connection may buffer without drawing on the
/// broker-wide handshake budget.
pub const PREAUTH_FREE_BYTES: usize = 2048;

/// The broker-wide accounting of connections still in their CONNECT.
#[derive(Debug)]
pub struct PreAuth {
    max_per_ip: u32,
    budget: usize,
    /// Handshakes in progress per address; an address leaves the map when
    /// its last one ends.
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    /// Bytes drawn from the budget now.
    held: AtomicUsize,
    refused_per_ip: AtomicU64,
    refused_memory: AtomicU64,
}

/// One connection's place among the handshakes in progress; leaving it
/// (drop) gives back what it held.
#[derive(Debug)]
pub struct Ticket<'a> {
    pre: &'a PreAuth,
    ip: IpAddr,
    held: usize,
}

/// The address a per-address limit counts: IPv4 as is (IPv4-mapped IPv6
/// too), other IPv6 addresses by /64.
pub fn address_group(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None if v6.is_loopback() => ip,
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

impl PreAuth {
    pub fn new(limits: &Limits) -> PreAuth {
        PreAuth {
            max_per_ip: limits.max_handshakes_per_ip,
            budget: limits.handshake_memory,
            per_ip: Mutex::new(HashMap::new()),
            held: AtomicUsize::new(0),
            refused_per_ip: AtomicU64::new(0),
            refused_memory: AtomicU64::new(0),
        }
    }

    /// A place for a new handshake from `ip`, or `None` when that address
    /// already has `max_handshakes_per_ip` in progress.
    pub fn enter(&self, ip: IpAddr) -> Option<Ticket<'_>> {
        let ip = address_group(ip);
        let mut map = self.per_ip.lock();
        let n = map.entry(ip).or_insert(0);
        if self.max_per_ip != 0 && *n >= self.max_per_ip {
            drop(map);
            self.refused_per_ip.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        *n += 1;
        Some(Ticket { pre: self, ip, held: 0 })
    }

    /// Bytes drawn from the handshake budget now.
    pub fn held_bytes(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }

    /// Sockets closed because their address had too many handshakes in
    /// progress.
    pub fn refused_per_ip(&self) -> u64 {
        self.refused_per_ip.load(Ordering::Relaxed)
    }

    /// Sockets closed because the handshake budget was spent.
    pub fn refused_memory(&self) -> u64 {
        self.refused_memory.load(Ordering::Relaxed)
    }

    /// Addresses with a handshake in progress.
    pub fn addresses(&self) -> usize {
        self.per_ip.lock().len()
    }
}

impl Ticket<'_> {
    /// The connection's CONNECT buffer now holds `bytes`: draws what passes
    /// [`PREAUTH_FREE_BYTES`] from the budget (or gives back what it no
    /// longer needs). False, and nothing drawn, when the budget cannot
    /// cover it: the caller closes the socket.
    pub fn hold(&mut self, bytes: usize) -> bool {
        let want = bytes.saturating_sub(PREAUTH_FREE_BYTES);
        if want <= self.held {
            self.pre.held.fetch_sub(self.held - want, Ordering::Relaxed);
            self.held = want;
            return true;
        }
        let extra = want - self.held;
        let budget = self.pre.budget;
        let drawn = self.pre.held.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |cur| {
            cur.checked_add(extra).filter(|&total| total <= budget)
        });
        if drawn.is_err() {
            self.pre.refused_memory.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        self.held = want;
        true
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        self.pre.held.fetch_sub(self.held, Ordering::Relaxed);
        let mut map = self.pre.per_ip.lock();
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pre(per_ip: u32, budget: usize) -> PreAuth {
        PreAuth::new(&Limits { max_handshakes_per_ip: per_ip, handshake_memory: budget, ..Limits::default() })
    }

    #[test]
    fn per_address_limit_and_release() {
        let p = pre(2, 1 << 20);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let a = p.enter(ip).unwrap();
        let _b = p.enter(ip).unwrap();
        assert!(p.enter(ip).is_none());
        assert!(p.enter("::ffff:192.0.2.1".parse().unwrap()).is_none(), "IPv4-mapped counts as IPv4");
        assert!(p.enter("192.0.2.2".parse().unwrap()).is_some());
        drop(a);
        assert!(p.enter(ip).is_some());
        assert_eq!(p.refused_per_ip(), 2);
    }

    #[test]
    fn ipv6_counts_per_64() {
        let p = pre(1, 1 << 20);
        let _a = p.enter("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert!(p.enter("2001:db8:1:2:ffff::9".parse().unwrap()).is_none());
        assert!(p.enter("2001:db8:1:3::1".parse().unwrap()).is_some());
    }

    #[test]
    fn the_map_forgets_idle_addresses() {
        let p = pre(0, 1 << 20);
        for i in 0..100u8 {
            drop(p.enter(IpAddr::from([10, 0, 0, i])).unwrap());
        }
        assert_eq!(p.addresses(), 0);
    }

    #[test]
    fn budget_beyond_the_free_allowance() {
        let p = pre(0, 10_000);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let mut a = p.enter(ip).unwrap();
        let mut b = p.enter(ip).unwrap();
        assert!(a.hold(PREAUTH_FREE_BYTES), "the allowance is free");
        assert_eq!(p.held_bytes(), 0);
        assert!(a.hold(PREAUTH_FREE_BYTES + 6_000));
        assert!(!b.hold(PREAUTH_FREE_BYTES + 6_000), "6,000 + 6,000 > 10,000");
        assert!(b.hold(PREAUTH_FREE_BYTES + 4_000));
        assert_eq!(p.held_bytes(), 10_000);
        // A small CONNECT still fits while the budget is spent.
        let mut c = p.enter(ip).unwrap();
        assert!(c.hold(300));
        assert!(a.hold(100), "shrinking gives back");
        assert_eq!(p.held_bytes(), 4_000);
        drop(b);
        assert_eq!(p.held_bytes(), 0);
        assert_eq!(p.refused_memory(), 1);
    }
}
