//! A bounded map whose entries expire at their own deadline.
//!
//! Deadlines sit in a min-heap beside the map, so expired entries are found
//! in O(log n) without scanning. A heap entry whose deadline differs from
//! the map's is left over from an earlier insertion of that key and is
//! skipped; the heap is rebuilt from the map when leftovers pile up, so it
//! never holds more than twice the map's capacity. When the map is full,
//! the entry that would expire soonest makes room.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::Hash;

use tokio::time::Instant;

#[derive(Debug)]
pub(super) struct TtlMap<K, V> {
    cap: usize,
    map: HashMap<K, (Instant, V)>,
    queue: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Copy + Ord + Hash, V> TtlMap<K, V> {
    pub(super) fn new(cap: usize) -> TtlMap<K, V> {
        TtlMap { cap: cap.max(1), map: HashMap::new(), queue: BinaryHeap::new() }
    }

    /// Drops every entry whose deadline is at or before `now`.
    pub(super) fn purge(&mut self, now: Instant) {
        self.purge_with(now, |_, _| {});
    }

    /// [`TtlMap::purge`], handing each entry dropped to `gone`.
    pub(super) fn purge_with(&mut self, now: Instant, mut gone: impl FnMut(K, V)) {
        while let Some(Reverse((at, _))) = self.queue.peek() {
            if *at > now {
                break;
            }
            if let Some(Reverse((at, k))) = self.queue.pop() {
                if self.map.get(&k).is_some_and(|(until, _)| *until == at) {
                    if let Some((_, v)) = self.map.remove(&k) {
                        gone(k, v);
                    }
                }
            }
        }
    }

    /// A live entry (call [`TtlMap::purge`] first).
    pub(super) fn get(&self, k: &K) -> Option<&(Instant, V)> {
        self.map.get(k)
    }

    /// A live entry's value (call [`TtlMap::purge`] first).
    pub(super) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k).map(|(_, v)| v)
    }

    pub(super) fn contains(&self, k: &K, now: Instant) -> bool {
        self.map.get(k).is_some_and(|(until, _)| now < *until)
    }

    /// Inserts or replaces `k` until `until`; when full, the entry that
    /// expires soonest makes room.
    pub(super) fn insert(&mut self, k: K, v: V, until: Instant) {
        self.insert_with(k, v, until, |_, _| {});
    }

    /// [`TtlMap::insert`], handing the entry evicted to make room (if
    /// any) to `gone`.
    pub(super) fn insert_with(&mut self, k: K, v: V, until: Instant, mut gone: impl FnMut(K, V)) {
        if !self.map.contains_key(&k) {
            while self.map.len() >= self.cap && self.evict_soonest(&mut gone) {}
        }
        self.map.insert(k, (until, v));
        self.queue.push(Reverse((until, k)));
        if self.queue.len() > 2 * self.cap {
            self.queue = self.map.iter().map(|(k, (until, _))| Reverse((*until, *k))).collect();
        }
    }

    pub(super) fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k).map(|(_, v)| v)
    }

    fn evict_soonest(&mut self, gone: &mut impl FnMut(K, V)) -> bool {
        while let Some(Reverse((at, k))) = self.queue.pop() {
            if self.map.get(&k).is_some_and(|(until, _)| *until == at) {
                if let Some((_, v)) = self.map.remove(&k) {
                    gone(k, v);
                }
                return true;
            }
        }
        false
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &(Instant, V))> {
        self.map.iter()
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    pub(super) fn queue_len(&self) -> usize {
        self.queue.len()
    }
}
