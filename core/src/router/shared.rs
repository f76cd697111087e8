//! One shared group on one filter (`$share/<group>/<filter>`, or
//! `$queue/<filter>` as the group `$queue`), and how it picks the one member
//! that receives a message.
//!
//! Members keep the order they joined in, so round robin walks them in that
//! order. Picking runs under the trie's read lock and so only touches an
//! atomic `cursor`: the round-robin counter, or the sticky member's position.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use super::Subscriber;
use crate::settings::SharedStrategy;

/// `cursor` value of a sticky group that has not picked yet.
const UNPICKED: usize = usize::MAX;

pub(super) struct SharedGroup<T> {
    name: Arc<str>,
    members: Vec<Subscriber<T>>,
    /// Position of the last member picked (round robin: modulo the member
    /// count, as it only ever counts up), or `UNPICKED`. Random: unused.
    cursor: AtomicUsize,
}

impl<T> SharedGroup<T> {
    pub(super) fn new(name: Arc<str>) -> Self {
        SharedGroup { name, members: Vec::new(), cursor: AtomicUsize::new(UNPICKED) }
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Adds a member, or replaces the same client's subscription in place
    /// (keeping its turn and its stickiness). Returns `true` if new.
    pub(super) fn insert(&mut self, sub: Subscriber<T>) -> bool {
        if let Some(m) = self.members.iter_mut().find(|m| m.client_id == sub.client_id) {
            *m = sub;
            return false;
        }
        // Pin the round-robin counter to a position first, so the member
        // count changing does not move whose turn it is.
        let cursor = self.cursor.get_mut();
        if *cursor != UNPICKED && !self.members.is_empty() {
            *cursor %= self.members.len();
        }
        self.members.push(sub);
        true
    }

    /// Removes a member. Round robin continues with the member after the
    /// last one served; a sticky group whose chosen member leaves picks
    /// again on the next message.
    pub(super) fn remove(&mut self, client_id: &str, strategy: SharedStrategy) -> bool {
        let Some(i) = self.members.iter().position(|m| &*m.client_id == client_id) else {
            return false;
        };
        let old_len = self.members.len();
        self.members.remove(i);
        let cursor = self.cursor.get_mut();
        if *cursor == UNPICKED {
            return true;
        }
        let last = match strategy {
            SharedStrategy::RoundRobin => *cursor % old_len,
            SharedStrategy::Sticky => *cursor,
            SharedStrategy::Random => return true,
        };
        *cursor = if last > i {
            last - 1
        } else if last < i {
            last
        } else if strategy == SharedStrategy::RoundRobin && i > 0 {
            // The member after the removed one is now at `i`.
            i - 1
        } else {
            UNPICKED
        };
        true
    }

    /// The member that receives the next message.
    pub(super) fn pick(&self, strategy: SharedStrategy) -> Option<&Subscriber<T>> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let i = match strategy {
            SharedStrategy::RoundRobin => {
                // UNPICKED + 1 wraps to 0: the first pick is the first member.
                self.cursor.fetch_add(1, Ordering::Relaxed).wrapping_add(1) % n
            }
            SharedStrategy::Random => rand::thread_rng().gen_range(0..n),
            SharedStrategy::Sticky => {
                let current = self.cursor.load(Ordering::Relaxed);
                if current < n {
                    current
                } else {
                    let chosen = rand::thread_rng().gen_range(0..n);
                    // Concurrent first picks agree on whichever stored first.
                    match self.cursor.compare_exchange(current, chosen, Ordering::Relaxed, Ordering::Relaxed) {
                        Ok(_) => chosen,
                        Err(other) if other < n => other,
                        Err(_) => chosen,
                    }
                }
            }
        };
        self.members.get(i)
    }
}
