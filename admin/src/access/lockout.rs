//! Lockout after failed logins, per source address.
//!
//! Failures (a wrong, unknown, disabled or expired key) are counted per
//! address — IPv4, or an IPv6 /64, IPv4-mapped addresses as IPv4 — from
//! the first one, for `window`; the `max`-th locks the address out for
//! `window`, during which its requests are answered 429 without their
//! credentials being looked at. Loopback is not exempt. At most
//! [`MAX_TRACKED`] addresses are tracked: when full, expired entries go
//! first, then the oldest. Time is tokio's clock.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use parking_lot::Mutex;
use portcullis_core::logsafe::{LogLimiter, Peer};
use tokio::time::Instant;

/// Addresses tracked at most.
pub const MAX_TRACKED: usize = 10_000;

/// An address as counted: IPv4, or the /64 of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Subject(IpAddr);

impl Subject {
    fn of(ip: IpAddr) -> Subject {
        match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Subject(IpAddr::V4(v4)),
                None if v6.is_loopback() => Subject(ip),
                None => {
                    let s = v6.segments();
                    Subject(IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)))
                }
            },
            v4 => Subject(v4),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    /// First failure of the window.
    since: Instant,
    locked_until: Option<Instant>,
}

impl Entry {
    fn expired(&self, now: Instant, window: Duration) -> bool {
        match self.locked_until {
            Some(t) => t <= now,
            None => self.since + window <= now,
        }
    }
}

/// Failed logins per address (see the module docs).
#[derive(Debug)]
pub struct Lockout {
    max: u32,
    window: Duration,
    map: Mutex<HashMap<Subject, Entry>>,
    log: LogLimiter,
}

impl Lockout {
    pub fn new(max: u32, window: Duration) -> Lockout {
        Lockout { max: max.max(1), window, map: Mutex::new(HashMap::new()), log: LogLimiter::new(5) }
    }

    /// `Err(time left)` while `ip` is locked out.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let now = Instant::now();
        let map = self.map.lock();
        match map.get(&Subject::of(ip)).and_then(|e| e.locked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Counts a failed login from `ip` with the key id it sent (for the
    /// log; never the secret).
    pub fn failed(&self, ip: IpAddr, key: &str) {
        let now = Instant::now();
        let subject = Subject::of(ip);
        let (failures, locked) = {
            let mut map = self.map.lock();
            if !map.contains_key(&subject) && map.len() >= MAX_TRACKED {
                map.retain(|_, e| !e.expired(now, self.window));
                if map.len() >= MAX_TRACKED {
                    if let Some(oldest) = map.iter().min_by_key(|(_, e)| e.since).map(|(k, _)| *k) {
                        map.remove(&oldest);
                    }
                }
            }
            let e = map.entry(subject).or_insert(Entry { failures: 0, since: now, locked_until: None });
            if e.expired(now, self.window) {
                *e = Entry { failures: 0, since: now, locked_until: None };
            }
            e.failures += 1;
            let locked = e.failures >= self.max && e.locked_until.is_none();
            if locked {
                e.locked_until = Some(now + self.window);
            }
            (e.failures, locked)
        };
        if let Some(suppressed) = self.log.allow() {
            if locked {
                tracing::warn!(peer = %subject.0, key = %Peer(key), failures, lockout = ?self.window, suppressed, "admin API: too many failed logins; address locked out");
            } else {
                tracing::info!(peer = %subject.0, key = %Peer(key), failures, suppressed, "admin API: failed login");
            }
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.map.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn locks_after_max_failures_for_the_window() {
        let l = Lockout::new(3, Duration::from_secs(60));
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        for _ in 0..2 {
            l.failed(ip, "k");
            assert!(l.check(ip).is_ok());
        }
        l.failed(ip, "k");
        assert!(l.check(ip).is_err(), "third failure locks");
        assert!(l.check("10.0.0.2".parse().unwrap()).is_ok(), "per address");
        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(l.check(ip).is_ok(), "lifted after the window");
        l.failed(ip, "k");
        assert!(l.check(ip).is_ok(), "counting starts again");
    }

    #[tokio::test(start_paused = true)]
    async fn ipv6_counts_per_64_and_memory_is_bounded() {
        let l = Lockout::new(2, Duration::from_secs(60));
        l.failed("2001:db8::1".parse().unwrap(), "k");
        l.failed("2001:db8::2".parse().unwrap(), "k");
        assert!(l.check("2001:db8::3".parse().unwrap()).is_err());
        l.failed("::ffff:10.0.0.9".parse().unwrap(), "k");
        l.failed("10.0.0.9".parse().unwrap(), "k");
        assert!(l.check("10.0.0.9".parse().unwrap()).is_err(), "mapped IPv4 is IPv4");
        for i in 0..(MAX_TRACKED as u32 + 50) {
            l.failed(IpAddr::from(i.to_be_bytes()), "k");
        }
        assert!(l.tracked() <= MAX_TRACKED);
    }
}
