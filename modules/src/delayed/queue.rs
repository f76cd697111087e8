//! The one timer structure: every held message and every reservation, in
//! deadline order, in one map that one task drives.
//!
//! A delayed publish is admitted in two steps, because the publish hook
//! runs before the ACL check and [`OnMessagePublish::take`] only after it
//! (and not at all when the ACL refuses):
//!
//! 1. the hook [`Queue::reserve`]s room (count and bytes) for the message,
//!    so that a refusal for capacity can still be answered (v5 0x97);
//! 2. `take` [`Queue::commit`]s it: the reservation becomes a held message
//!    due at the deadline the hook computed.
//!
//! A reservation is keyed by its connection: the publisher's client id
//! `Arc`, which the connection shares with every message it builds (and
//! the reservation holds, so the address is not reused while it waits).
//! A connection handles its publishes one at a time, so it has at most
//! one reservation. One that is not committed is released:
//!
//! * when the ACL refuses the real topic (the module's dropped hook sees
//!   the publish-side `Denied` drop of that very payload);
//! * when the same connection publishes to `$delayed/…` again (its
//!   previous publish is over, so that reservation is stale);
//! * at the latest when its lease ([`LEASE`]) runs out (a connection task
//!   that ended in the middle of its ACL check).
//!
//! [`OnMessagePublish::take`]: portcullis_core::hooks::OnMessagePublish::take

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::message::Message;
use tokio::time::Instant;

/// How long a reservation waits for its message. Far longer than any ACL
/// check (each provider call has its own timeout, seconds by default): a
/// message that comes after it is dropped, as no deadline is known for it.
pub const LEASE: Duration = Duration::from_secs(600);

/// The bounds (from `[modules.delayed]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_messages: usize,
    pub max_bytes: usize,
    pub max_delay: Duration,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Longer than `max_delay`.
    TooLong,
    /// `max_messages` or `max_bytes` reached.
    Full,
}

/// What became of a message handed to [`Queue::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Held; `earliest` when it is now the first deadline (the timer task
    /// must be woken to sleep less); `stored`: its row, when it was given
    /// an id to store it under.
    Held { earliest: bool, stored: Option<StoredKey> },
    /// No reservation for it (its lease ran out): dropped.
    NoReservation,
    /// It weighs more than reserved and there is no room left: dropped.
    Full,
}

/// Deadline, then a sequence number (ties keep their arrival order).
type Key = (Instant, u64);

/// A held message's row in the durable store: its deadline (Unix ms) and
/// id ([`portcullis_core::durable::Change::DelayedPut`]).
pub type StoredKey = (u64, u64);

#[derive(Debug)]
enum Timer {
    /// A message to publish (and its row, when the broker has a store).
    Publish { msg: Arc<Message>, weight: usize, stored: Option<StoredKey> },
    /// A reservation's lease ends (the reservation's key).
    Lease(usize),
}

#[derive(Debug)]
struct Reservation {
    /// Keeps the address the reservation is keyed by.
    _publisher: Arc<str>,
    /// The payload's address and length: which publish it is for.
    payload: (usize, usize),
    weight: usize,
    deadline: Instant,
    lease: Key,
}

/// Held messages and reservations (see the module docs).
#[derive(Debug)]
pub struct Queue {
    limits: Limits,
    timers: BTreeMap<Key, Timer>,
    seq: u64,
    held: usize,
    held_bytes: usize,
    reservations: HashMap<usize, Reservation>,
    reserved_bytes: usize,
}

fn publisher_key(p: &Arc<str>) -> usize {
    Arc::as_ptr(p).cast::<u8>() as usize
}

fn payload_id(b: &Bytes) -> (usize, usize) {
    (b.as_ptr() as usize, b.len())
}

impl Queue {
    pub fn new(limits: Limits) -> Queue {
        Queue {
            limits,
            timers: BTreeMap::new(),
            seq: 0,
            held: 0,
            held_bytes: 0,
            reservations: HashMap::new(),
            reserved_bytes: 0,
        }
    }

    /// New bounds; what is held stays (new publishes are refused until it
    /// is under them).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Messages held.
    pub fn held(&self) -> usize {
        self.held
    }

    /// Bytes held.
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// Reservations waiting for their message.
    pub fn reserved(&self) -> usize {
        self.reservations.len()
    }

    fn key(&mut self, at: Instant) -> Key {
        self.seq += 1;
        (at, self.seq)
    }

    /// Reserves room for a message of `weight` bytes from `publisher`,
    /// due `delay` after `now`. `Ok(true)` when its lease is now the first
    /// deadline.
    pub fn reserve(
        &mut self,
        publisher: &Arc<str>,
        payload: &Bytes,
        weight: usize,
        delay: Duration,
        now: Instant,
    ) -> Result<bool, Refused> {
        if delay > self.limits.max_delay {
            return Err(Refused::TooLong);
        }
        let k = publisher_key(publisher);
        // This connection's previous publish is over: a reservation it left
        // was never taken.
        self.release(k);
        let count = self.held + self.reservations.len();
        let bytes = self.held_bytes.saturating_add(self.reserved_bytes).saturating_add(weight);
        if count >= self.limits.max_messages || bytes > self.limits.max_bytes {
            return Err(Refused::Full);
        }
        let lease = self.key(now + LEASE);
        let earliest = self.next_due().is_none_or(|first| lease.0 < first);
        self.timers.insert(lease, Timer::Lease(k));
        self.reserved_bytes += weight;
        let r = Reservation {
            _publisher: Arc::clone(publisher),
            payload: payload_id(payload),
            weight,
            deadline: now + delay,
            lease,
        };
        self.reservations.insert(k, r);
        Ok(earliest)
    }

    fn take_reservation(&mut self, k: usize) -> Option<Reservation> {
        let r = self.reservations.remove(&k)?;
        self.timers.remove(&r.lease);
        self.reserved_bytes -= r.weight;
        Some(r)
    }

    /// Turns the publisher's reservation into a held message, due at the
    /// reserved deadline or when the message expires, whichever is first
    /// (`now`, `std_now` and `now_ms`, Unix ms, are the same moment on
    /// three clocks: the message's expiry is a std `Instant`). With a
    /// `stored_id`, the message gets a row key (its deadline in Unix ms).
    pub fn commit(
        &mut self,
        msg: Arc<Message>,
        now: Instant,
        std_now: std::time::Instant,
        now_ms: u64,
        stored_id: Option<u64>,
    ) -> Committed {
        let Some(r) = msg.publisher.as_ref().and_then(|p| self.take_reservation(publisher_key(p))) else {
            return Committed::NoReservation;
        };
        let weight = msg.weight();
        if weight > r.weight && self.held_bytes + self.reserved_bytes + weight > self.limits.max_bytes {
            return Committed::Full;
        }
        let due = match msg.expires_at {
            Some(at) => r.deadline.min(now + at.saturating_duration_since(std_now)),
            None => r.deadline,
        };
        let stored = stored_id.map(|id| {
            let ms = u64::try_from(due.saturating_duration_since(now).as_millis()).unwrap_or(u64::MAX);
            (now_ms.saturating_add(ms), id)
        });
        let earliest = self.hold(msg, weight, due, stored);
        Committed::Held { earliest, stored }
    }

    fn hold(&mut self, msg: Arc<Message>, weight: usize, due: Instant, stored: Option<StoredKey>) -> bool {
        let earliest = self.next_due().is_none_or(|first| due < first);
        let key = self.key(due);
        self.timers.insert(key, Timer::Publish { msg, weight, stored });
        self.held += 1;
        self.held_bytes += weight;
        earliest
    }

    /// Holds a message the store returned at start, due at `due`, outside
    /// the bounds (it was admitted under them before the restart).
    pub fn restore(&mut self, msg: Arc<Message>, due: Instant, stored: StoredKey) {
        let weight = msg.weight();
        self.hold(msg, weight, due, Some(stored));
    }

    /// Releases the reservation of the connection whose client id
    /// allocation has this address; whether there was one.
    pub fn release(&mut self, k: usize) -> bool {
        self.take_reservation(k).is_some()
    }

    /// Releases the reservation for this very message (same publisher,
    /// same payload), refused by the ACL; whether there was one.
    pub fn release_refused(&mut self, msg: &Message) -> bool {
        let Some(p) = &msg.publisher else { return false };
        let k = publisher_key(p);
        match self.reservations.get(&k) {
            Some(r) if r.payload == payload_id(&msg.payload) => self.release(k),
            _ => false,
        }
    }

    /// The first deadline (a message's or a lease's).
    pub fn next_due(&self) -> Option<Instant> {
        self.timers.first_key_value().map(|(k, _)| k.0)
    }

    /// Moves the messages due at `now` into `out`, in deadline order (ties
    /// in arrival order), releasing lapsed reservations on the way; at
    /// most `max` entries. Returns whether more are due.
    pub fn pop_due(&mut self, now: Instant, max: usize, out: &mut Vec<(Arc<Message>, Option<StoredKey>)>) -> bool {
        let mut n = 0;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                return false;
            }
            if n == max {
                return true;
            }
            n += 1;
            let key = *entry.key();
            match entry.remove() {
                Timer::Publish { msg, weight, stored } => {
                    self.held -= 1;
                    self.held_bytes -= weight;
                    out.push((msg, stored));
                }
                Timer::Lease(k) => {
                    if let Some(r) = self.reservations.remove(&k) {
                        debug_assert_eq!(r.lease, key, "a reservation's lease timer goes with it");
                        self.reserved_bytes -= r.weight;
                    }
                }
            }
        }
        false
    }

    /// Drops everything; returns how many messages were held, and the
    /// rows of those that were stored.
    pub fn clear(&mut self) -> (usize, Vec<StoredKey>) {
        let n = self.held;
        let stored = self
            .timers
            .values()
            .filter_map(|t| match t {
                Timer::Publish { stored, .. } => *stored,
                Timer::Lease(_) => None,
            })
            .collect();
        self.timers.clear();
        self.reservations.clear();
        (self.held, self.held_bytes, self.reserved_bytes) = (0, 0, 0);
        (n, stored)
    }
}
