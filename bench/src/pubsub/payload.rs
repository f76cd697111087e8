//! The bench payload: who sent it, which one it is, and when.
//!
//! ```text
//! bytes 0..8    send time, ns since the run's epoch (u64, big-endian)
//! bytes 8..12   publisher index (u32, big-endian)
//! bytes 12..20  sequence number within that publisher (u64, big-endian)
//! bytes 20..    zero padding up to --size
//! ```
//!
//! Publishers and subscribers run in one process and share one epoch
//! (`Instant`), so latency needs no clock synchronisation.

use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};

/// Smallest payload that holds the header.
pub const HEADER: usize = 20;

/// What a received payload says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub publisher: u32,
    pub seq: u64,
}

/// Nanoseconds since `epoch`, saturating.
pub fn now_ns(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A payload of `size` bytes (at least [`HEADER`]) carrying `stamp`.
pub fn encode(stamp: Stamp, size: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(size.max(HEADER));
    b.put_u64(stamp.sent_ns);
    b.put_u32(stamp.publisher);
    b.put_u64(stamp.seq);
    b.resize(size.max(HEADER), 0);
    b.freeze()
}

/// The stamp of a bench payload; `None` for anything shorter.
pub fn decode(payload: &[u8]) -> Option<Stamp> {
    let sent_ns = u64::from_be_bytes(payload.get(0..8)?.try_into().ok()?);
    let publisher = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?);
    let seq = u64::from_be_bytes(payload.get(12..20)?.try_into().ok()?);
    Some(Stamp { sent_ns, publisher, seq })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        let s = Stamp { sent_ns: 123_456_789, publisher: 7, seq: u64::MAX - 1 };
        let p = encode(s, 64);
        assert_eq!(p.len(), 64);
        assert_eq!(decode(&p), Some(s));
        assert_eq!(encode(s, 3).len(), HEADER);
        assert_eq!(decode(&p[..19]), None);
        assert_eq!(decode(b""), None);
    }
}
