//! One copy per message per node: a node subscribed to overlapping filters
//! (`a/+` and `a/b`) gets one NATS message per matching subscription, and
//! core must see it once ([`portcullis_core::remote`]). Every forwarded
//! message carries its origin node, the origin's run id (new at every
//! start) and a per-run sequence; this window remembers, per origin, the
//! highest sequence seen and which of the [`WINDOW`] sequences below it
//! were seen.
//!
//! Bounded: at most [`MAX_ORIGINS`] origins (the least recently seen is
//! forgotten when a new one comes), each [`WINDOW`] bits (2 KiB). A
//! sequence older than the window is answered [`Seen::Stale`] and dropped
//! (messages between nodes are at most once; a copy that old has lost its
//! race with [`WINDOW`] newer ones).

use std::collections::HashMap;

/// Sequences remembered below the highest per origin.
pub const WINDOW: u64 = 16 * 1024;
/// Origins remembered at once.
pub const MAX_ORIGINS: usize = 256;

const WORDS: usize = (WINDOW / 64) as usize;

/// What the window says about a (origin, run, sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// First time: deliver it.
    New,
    /// Delivered already (another subscription of this node matched).
    Duplicate,
    /// Older than the window: dropped.
    Stale,
}

#[derive(Debug)]
struct Window {
    run: u64,
    /// Highest sequence seen; bit `s % WINDOW` of `bits` says whether `s`
    /// (for `high - WINDOW < s <= high`) was.
    high: u64,
    bits: Box<[u64; WORDS]>,
    /// Order of last use, for eviction.
    used: u64,
}

impl Window {
    fn new(run: u64, used: u64) -> Window {
        Window { run, high: 0, bits: Box::new([0; WORDS]), used }
    }

    fn bit(&mut self, seq: u64) -> (usize, u64) {
        let i = (seq % WINDOW) as usize;
        (i / 64, 1u64 << (i % 64))
    }

    fn check(&mut self, seq: u64) -> Seen {
        if seq > self.high {
            // Clear the slots of the sequences skipped (at most a window).
            let clear = (seq - self.high).min(WINDOW);
            for s in (seq + 1 - clear)..=seq {
                let (w, m) = self.bit(s);
                self.bits[w] &= !m;
            }
            self.high = seq;
            let (w, m) = self.bit(seq);
            self.bits[w] |= m;
            return Seen::New;
        }
        if self.high - seq >= WINDOW {
            return Seen::Stale;
        }
        let (w, m) = self.bit(seq);
        if self.bits[w] & m != 0 {
            return Seen::Duplicate;
        }
        self.bits[w] |= m;
        Seen::New
    }
}

/// The windows of every origin, bounded.
#[derive(Debug, Default)]
pub struct Dedup {
    origins: HashMap<Box<str>, Window>,
    clock: u64,
}

impl Dedup {
    /// Records (origin, run, seq) and says whether it is new. Sequences
    /// start at 1.
    pub fn check(&mut self, origin: &str, run: u64, seq: u64) -> Seen {
        self.clock += 1;
        let clock = self.clock;
        if let Some(w) = self.origins.get_mut(origin) {
            w.used = clock;
            if w.run != run {
                // The origin restarted: its sequences start again.
                *w = Window::new(run, clock);
            }
            return w.check(seq);
        }
        if self.origins.len() >= MAX_ORIGINS {
            if let Some(oldest) = self.origins.iter().min_by_key(|(_, w)| w.used).map(|(k, _)| k.clone()) {
                self.origins.remove(&oldest);
            }
        }
        let mut w = Window::new(run, clock);
        let seen = w.check(seq);
        self.origins.insert(origin.into(), w);
        seen
    }

    /// Origins remembered now.
    pub fn origins(&self) -> usize {
        self.origins.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_copy_is_a_duplicate_and_other_origins_do_not_interfere() {
        let mut d = Dedup::default();
        assert_eq!(d.check("a", 1, 1), Seen::New);
        assert_eq!(d.check("a", 1, 1), Seen::Duplicate);
        assert_eq!(d.check("b", 1, 1), Seen::New);
        assert_eq!(d.check("a", 1, 3), Seen::New);
        assert_eq!(d.check("a", 1, 2), Seen::New, "out of order within the window");
        assert_eq!(d.check("a", 1, 2), Seen::Duplicate);
        assert_eq!(d.check("a", 1, 3), Seen::Duplicate);
    }

    #[test]
    fn a_restarted_origin_starts_again() {
        let mut d = Dedup::default();
        assert_eq!(d.check("a", 1, 500), Seen::New);
        assert_eq!(d.check("a", 2, 1), Seen::New);
        assert_eq!(d.check("a", 2, 1), Seen::Duplicate);
    }

    #[test]
    fn the_window_slides_and_old_sequences_are_stale() {
        let mut d = Dedup::default();
        assert_eq!(d.check("a", 1, 1), Seen::New);
        assert_eq!(d.check("a", 1, WINDOW + 1), Seen::New);
        assert_eq!(d.check("a", 1, 1), Seen::Stale);
        // The slot of 1 was reused for WINDOW + 1; 2 is still in the window.
        assert_eq!(d.check("a", 1, 2), Seen::New);
        // A jump of many windows clears everything below.
        assert_eq!(d.check("a", 1, 10 * WINDOW), Seen::New);
        assert_eq!(d.check("a", 1, 10 * WINDOW - 1), Seen::New);
        assert_eq!(d.check("a", 1, 10 * WINDOW - 1), Seen::Duplicate);
        assert_eq!(d.check("a", 1, 9 * WINDOW), Seen::Stale);
    }

    #[test]
    fn origins_are_bounded() {
        let mut d = Dedup::default();
        for i in 0..(MAX_ORIGINS * 4) {
            d.check(&format!("n{i}"), 1, 1);
            assert!(d.origins() <= MAX_ORIGINS);
        }
        // The most recent are kept.
        assert_eq!(d.check(&format!("n{}", MAX_ORIGINS * 4 - 1), 1, 1), Seen::Duplicate);
    }
}
