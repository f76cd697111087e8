//! Latency histogram with log-linear buckets.
//!
//! Values below 128 are counted exactly; above, every power of two is cut
//! into 64 buckets, so a reported percentile is within 1/64 (1.6 %) of the
//! true value. The table has a fixed size (3,776 counters, 30 KiB) whatever
//! the number or range of samples, and two histograms merge by adding
//! counters: each client task keeps its own and the run merges them at the
//! end, with no lock on the hot path.

use std::time::Duration;

/// log2 of the number of buckets per power of two.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
/// Values `< EXACT` have a bucket each.
const EXACT: u64 = 2 * SUB;
/// 128 exact buckets, then 64 for each of the shifts 1..=57.
const BUCKETS: usize = (EXACT + (63 - SUB_BITS as u64) * SUB) as usize;

/// Counts of recorded values (nanoseconds, microseconds: the caller picks).
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Vec<u64>,
    total: u64,
    max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram { counts: vec![0; BUCKETS], total: 0, max: 0 }
    }
}

fn index(v: u64) -> usize {
    if v < EXACT {
        return v as usize;
    }
    let shift = 63 - v.leading_zeros() - SUB_BITS;
    let mantissa = v >> shift; // in [SUB, 2 * SUB)
    (EXACT + u64::from(shift - 1) * SUB + (mantissa - SUB)) as usize
}

/// Highest value that falls into bucket `i`.
fn upper_bound(i: usize) -> u64 {
    let i = i as u64;
    if i < EXACT {
        return i;
    }
    let shift = (i - EXACT) / SUB + 1;
    let mantissa = (i - EXACT) % SUB + SUB;
    let next = u128::from(mantissa + 1) << shift; // the next bucket's start
    u64::try_from(next - 1).unwrap_or(u64::MAX)
}

impl Histogram {
    pub fn record(&mut self, v: u64) {
        self.counts[index(v)] += 1;
        self.total += 1;
        self.max = self.max.max(v);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        self.total += other.total;
        self.max = self.max.max(other.max);
    }

    /// Exact maximum; 0 when empty.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at or below which `p` percent of the samples lie (within
    /// the bucket precision, never above the maximum); 0 when empty.
    pub fn percentile(&self, p: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((p.clamp(0.0, 100.0) / 100.0) * self.total as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return upper_bound(i).min(self.max);
            }
        }
        self.max
    }
}

/// Which sequence numbers have been seen, to tell duplicates from firsts.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Marks `seq`; true if it was not marked before. The caller bounds
    /// `seq` (the set grows to hold it).
    pub fn insert(&mut self, seq: u64) -> bool {
        let (w, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        if w >= self.words.len() {
            self.words.resize(w + 1, 0);
        }
        let new = self.words[w] & bit == 0;
        self.words[w] |= bit;
        new
    }
}

/// Whole microseconds, saturating.
pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Rounded to three decimals, for the JSON summary.
pub fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::default();
        for v in 1..=100 {
            h.record(v);
        }
        assert_eq!(h.percentile(50.0), 50);
        assert_eq!(h.percentile(99.0), 99);
        assert_eq!(h.percentile(100.0), 100);
        assert_eq!(h.max(), 100);
        assert_eq!(h.total, 100);
    }

    #[test]
    fn buckets_cover_every_value_within_precision() {
        for v in [128u64, 129, 1_000, 65_535, 1 << 40, u64::MAX / 3, u64::MAX] {
            let i = index(v);
            assert!(i < BUCKETS, "{v} -> {i}");
            let hi = upper_bound(i);
            assert!(hi >= v, "{v}: upper {hi}");
            assert!((hi - v) as f64 <= v as f64 / SUB as f64, "{v}: upper {hi}");
            if i > 0 {
                assert!(upper_bound(i - 1) < v, "{v}: previous bucket reaches it");
            }
        }
        assert_eq!(index(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_wide_range() {
        let mut h = Histogram::default();
        for v in 1..=100_000u64 {
            h.record(v * 1_000);
        }
        for (p, want) in [(50.0, 50_000_000f64), (90.0, 90_000_000.0), (99.0, 99_000_000.0)] {
            let got = h.percentile(p) as f64;
            assert!((got - want).abs() / want < 0.02, "p{p}: {got} vs {want}");
        }
        assert_eq!(h.percentile(100.0), 100_000_000);
    }

    #[test]
    fn merge_adds() {
        let (mut a, mut b) = (Histogram::default(), Histogram::default());
        a.record(10);
        b.record(1_000_000);
        b.record(20);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.max(), 1_000_000);
        assert_eq!(a.percentile(50.0), 20);
        assert_eq!(Histogram::default().percentile(99.0), 0);
    }

    #[test]
    fn seq_set_finds_duplicates() {
        let mut s = SeqSet::default();
        assert!(s.insert(0));
        assert!(s.insert(1_000));
        assert!(!s.insert(1_000));
        assert!(s.insert(63));
        assert!(!s.insert(0));
    }
}
