//! Changes → row writes: one group (every batch one fsync carries) becomes
//! one atomic engine write.
//!
//! Reads go through an overlay of the rows this group already wrote, so a
//! batch sees the batches before it. Message reference counts are summed
//! per group and settled at the end ([`Txn::finish`]): a message handed
//! from the queue to the in-flight window in one batch (`QueuePop` +
//! `InflightPut`) is never deleted in between and its count row is not
//! even rewritten. A message whose count reaches zero is deleted with its
//! count; one put and released within the same group is never written.
//!
//! Elision: a row put in this group under a key the engine does not hold
//! and deleted again in the same group (a delivery queued, sent and
//! acknowledged before the writer got to it: `QueuePush` → `QueuePop`,
//! `InflightPut` → `InflightDelete`) leaves nothing to write, not even a
//! delete. With a subscriber that keeps up, most deliveries end this way,
//! and a group whose net write is empty ([`Txn::is_empty`]) needs neither
//! an engine write nor an fsync: the state on disk already is the state
//! after it.
//!
//! Changes that name rows that are not there (a pop of an entry whose
//! push failed with a full disk, say) change nothing: a failed commit must
//! not make the ones after it fail too.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use portcullis_core::durable::Change;
use portcullis_core::message::Message;

use crate::codec::{self, InflightRow, QueueRow};
use crate::engine::{Engine, EngineError, Op, Table};

/// A row this group wrote.
#[derive(Debug)]
struct Slot {
    /// The value (not sealed yet: rows are sealed once, in
    /// [`Txn::finish`], so that one deleted again costs no checksum), or
    /// `None`: deleted.
    value: Option<Vec<u8>>,
    /// The engine did not hold the key before this group (known because
    /// it was read): deleting it again leaves nothing to write.
    fresh: bool,
}

/// One group being turned into row writes.
pub struct Txn<'e> {
    engine: &'e dyn Engine,
    /// This group's rows, one map per table (indexed by `Table as usize`).
    /// Hashed, not ordered: a group holds tens of thousands of rows that
    /// mostly cancel out, and only the few left are sorted, at the end.
    overlay: Vec<HashMap<Vec<u8>, Slot>>,
    ref_delta: HashMap<u64, i64>,
    /// Messages whose count changed by other than zero (a group that has
    /// none, and no rows, writes nothing).
    ref_changed: usize,
    /// Messages put in this group, encoded only if they are still held at
    /// the end.
    new_messages: HashMap<u64, Arc<Message>>,
    now: Instant,
    now_ms: u64,
    /// Next in-flight order stamp (kept by the writer across groups).
    pub next_order: u64,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: usize = self.overlay.iter().map(HashMap::len).sum();
        f.debug_struct("Txn").field("rows", &rows).finish()
    }
}

pub fn msg_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

impl<'e> Txn<'e> {
    pub fn new(engine: &'e dyn Engine, next_order: u64) -> Txn<'e> {
        Txn {
            engine,
            overlay: Table::ALL.iter().map(|_| HashMap::new()).collect(),
            ref_delta: HashMap::new(),
            ref_changed: 0,
            new_messages: HashMap::new(),
            now: Instant::now(),
            now_ms: codec::unix_now_ms(),
            next_order,
        }
    }

    fn corrupt(&self, t: Table, e: codec::DecodeError) -> EngineError {
        EngineError::Corrupt { file: self.engine.path().to_path_buf(), detail: format!("table {}: {e}", t.name()) }
    }

    /// Calls `f` with the row's value (checksum verified), this group's
    /// writes first; the second value says whether the row came from this
    /// group's overlay (`Some(fresh)`) or from the engine (`None`).
    fn read<R>(
        &self,
        t: Table,
        key: &[u8],
        f: impl FnOnce(&[u8]) -> Result<R, codec::DecodeError>,
    ) -> Result<(Option<R>, Option<bool>), EngineError> {
        match self.overlay[t as usize].get(key) {
            Some(slot) => {
                let row = slot.value.as_deref().map(f).transpose().map_err(|e| self.corrupt(t, e))?;
                Ok((row, Some(slot.fresh)))
            }
            None => {
                let Some(sealed) = self.engine.get(t, key)? else { return Ok((None, None)) };
                let v = codec::unseal(key, &sealed).map_err(|e| self.corrupt(t, e))?;
                Ok((Some(f(v).map_err(|e| self.corrupt(t, e))?), None))
            }
        }
    }

    /// Puts a row; `fresh`: the engine is known not to hold `key` (a
    /// row already in the overlay keeps what was known of it).
    fn put(&mut self, t: Table, key: Vec<u8>, value: Vec<u8>, fresh: bool) {
        let value = Some(value);
        match self.overlay[t as usize].get_mut(&key) {
            Some(slot) => slot.value = value,
            None => {
                self.overlay[t as usize].insert(key, Slot { value, fresh });
            }
        }
    }

    /// Deletes a row; one this group put under a key the engine does not
    /// hold leaves nothing to write.
    fn del(&mut self, t: Table, key: Vec<u8>) {
        let map = &mut self.overlay[t as usize];
        match map.get_mut(&key) {
            Some(slot) if slot.fresh => {
                map.remove(&key);
            }
            Some(slot) => slot.value = None,
            None => {
                map.insert(key, Slot { value: None, fresh: false });
            }
        }
    }

    /// Whether the group, as applied so far, writes nothing at all.
    pub fn is_empty(&self) -> bool {
        // A message put and released again in the group is never written
        // (its delta is zero); any other count change is a write.
        self.ref_changed == 0 && self.overlay.iter().all(HashMap::is_empty)
    }

    /// Keys under `prefix` as this group sees them.
    fn keys(&self, t: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
        let mut keys = std::collections::BTreeSet::new();
        self.engine.scan(t, prefix, &mut |k, _| {
            keys.insert(k.to_vec());
            Ok(())
        })?;
        // A scan of the table's whole overlay: only a session's end asks.
        for (k, slot) in &self.overlay[t as usize] {
            if !k.starts_with(prefix) {
                continue;
            }
            if slot.value.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn count(&mut self, id: u64, by: i64) {
        let d = self.ref_delta.entry(id).or_default();
        let was_zero = *d == 0;
        *d += by;
        match (was_zero, *d == 0) {
            (true, false) => self.ref_changed += 1,
            (false, true) => self.ref_changed -= 1,
            _ => {}
        }
    }

    fn release(&mut self, id: u64) {
        self.count(id, -1);
    }

    fn hold(&mut self, id: u64) {
        self.count(id, 1);
    }

    /// The queue row's message id, and whether the engine is known not to
    /// hold the key (absent from both, or fresh in the overlay).
    fn queue_row(&self, key: &[u8]) -> Result<(Option<u64>, bool), EngineError> {
        let (row, from) = self.read(Table::Queue, key, |v| codec::decode_queue(v).map(|r| r.id))?;
        Ok((row, from.unwrap_or(row.is_none())))
    }

    fn inflight_row(&self, key: &[u8]) -> Result<(Option<(u64, u64)>, bool), EngineError> {
        let (row, from) = self.read(Table::Inflight, key, |v| codec::decode_inflight(v).map(|r| (r.id, r.order)))?;
        Ok((row, from.unwrap_or(row.is_none())))
    }

    /// Applies one change.
    pub fn apply(&mut self, c: &Change) -> Result<(), EngineError> {
        match c {
            Change::SessionPut { client_id, owner, expiry_secs, detached_at_ms } => {
                let v = codec::encode_session(owner, *expiry_secs, *detached_at_ms);
                self.put(Table::Sessions, client_id.as_bytes().to_vec(), v, false);
            }
            Change::SessionDelete { client_id } => {
                self.del(Table::Sessions, client_id.as_bytes().to_vec());
                self.del(Table::Wills, client_id.as_bytes().to_vec());
                let prefix = codec::session_prefix(client_id);
                for t in [Table::Subscriptions, Table::AwaitRel] {
                    for k in self.keys(t, &prefix)? {
                        self.del(t, k);
                    }
                }
                for k in self.keys(Table::Queue, &prefix)? {
                    if let (Some(id), _) = self.queue_row(&k)? {
                        self.release(id);
                    }
                    self.del(Table::Queue, k);
                }
                for k in self.keys(Table::Inflight, &prefix)? {
                    if let (Some((id, _)), _) = self.inflight_row(&k)? {
                        self.release(id);
                    }
                    self.del(Table::Inflight, k);
                }
            }
            Change::SubscriptionPut { client_id, filter, options, subscription_id } => {
                let v = codec::encode_subscription(options, *subscription_id);
                self.put(Table::Subscriptions, codec::key_with_str(client_id, filter), v, false);
            }
            Change::SubscriptionDelete { client_id, filter } => {
                self.del(Table::Subscriptions, codec::key_with_str(client_id, filter));
            }
            Change::MessagePut { id, msg } => {
                self.new_messages.insert(id.0, Arc::clone(msg));
                self.ref_delta.entry(id.0).or_default();
            }
            Change::QueuePush { client_id, seq, id, qos, retain, subscription_ids } => {
                let key = codec::key_with_u64(client_id, *seq);
                let (old, fresh) = self.queue_row(&key)?;
                if let Some(old) = old {
                    self.release(old);
                }
                let row = QueueRow { id: id.0, qos: *qos, retain: *retain, subscription_ids: subscription_ids.clone() };
                self.put(Table::Queue, key, codec::encode_queue(&row), fresh);
                self.hold(id.0);
            }
            Change::QueuePop { client_id, seq } => {
                let key = codec::key_with_u64(client_id, *seq);
                if let (Some(old), _) = self.queue_row(&key)? {
                    self.release(old);
                    self.del(Table::Queue, key);
                }
            }
            Change::InflightPut { client_id, packet_id, id, qos, retain, state } => {
                let key = codec::key_with_u16(client_id, *packet_id);
                let (old, fresh) = self.inflight_row(&key)?;
                let order = match old {
                    Some((old_id, order)) => {
                        self.release(old_id);
                        order
                    }
                    None => {
                        self.next_order += 1;
                        self.next_order - 1
                    }
                };
                let row = InflightRow { id: id.0, qos: *qos, retain: *retain, state: *state, order };
                self.put(Table::Inflight, key, codec::encode_inflight(&row), fresh);
                self.hold(id.0);
            }
            Change::InflightDelete { client_id, packet_id } => {
                let key = codec::key_with_u16(client_id, *packet_id);
                if let (Some((old, _)), _) = self.inflight_row(&key)? {
                    self.release(old);
                    self.del(Table::Inflight, key);
                }
            }
            Change::AwaitRelPut { client_id, packet_id } => {
                self.put(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id), Vec::new(), false);
            }
            Change::AwaitRelDelete { client_id, packet_id } => {
                self.del(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id));
            }
            Change::RetainPut { msg } => {
                let v = codec::encode_message(msg, self.now, self.now_ms);
                self.put(Table::Retained, msg.topic.as_str().as_bytes().to_vec(), v, false);
            }
            Change::RetainDelete { topic } => {
                self.del(Table::Retained, topic.as_bytes().to_vec());
            }
            Change::DelayedPut { due_ms, id, msg } => {
                let v = codec::encode_message(msg, self.now, self.now_ms);
                self.put(Table::Delayed, codec::delayed_key(*due_ms, *id), v, false);
            }
            Change::DelayedDelete { due_ms, id } => {
                self.del(Table::Delayed, codec::delayed_key(*due_ms, *id));
            }
            Change::BanPut { key, until_ms } => {
                self.put(Table::Bans, key.to_vec(), until_ms.to_le_bytes().to_vec(), false);
            }
            Change::BanDelete { key } => {
                self.del(Table::Bans, key.to_vec());
            }
            Change::WillPut { client_id, msg, delay_secs } => {
                let v = codec::encode_will(*delay_secs, msg, self.now, self.now_ms);
                self.put(Table::Wills, client_id.as_bytes().to_vec(), v, false);
            }
            Change::WillDelete { client_id } => {
                self.del(Table::Wills, client_id.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    /// Settles reference counts and returns the rows to write (none when
    /// [`Txn::is_empty`]).
    pub fn finish(mut self) -> Result<(Vec<Op>, u64), EngineError> {
        let deltas: Vec<(u64, i64)> = self.ref_delta.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, delta) in deltas {
            let body = self.new_messages.remove(&id);
            if delta == 0 {
                // Unchanged, or put and released again in this group.
                continue;
            }
            let key = msg_key(id);
            // A message put in this group is new: message ids are never
            // used twice, so it has no count row yet.
            let current = match body {
                Some(_) => 0,
                None => match self.read(Table::Refs, &key, |v| codec::R(v).u32())?.0 {
                    Some(n) => i64::from(n),
                    None => 0,
                },
            };
            let n = current + delta;
            if n <= 0 {
                if current > 0 {
                    self.del(Table::Refs, key.clone());
                    self.del(Table::Messages, key);
                }
            } else {
                let fresh = body.is_some();
                if n != current {
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
                    self.put(Table::Refs, key.clone(), n.to_le_bytes().to_vec(), fresh);
                }
                if let Some(msg) = body {
                    let body = codec::encode_message(&msg, self.now, self.now_ms);
                    self.put(Table::Messages, key, body, true);
                }
            }
        }
        let mut ops = Vec::new();
        for (t, map) in Table::ALL.into_iter().zip(self.overlay) {
            let start = ops.len();
            ops.extend(map.into_iter().map(|(k, slot)| {
                let v = slot.value.map(|v| codec::seal(&k, v));
                (t, k, v)
            }));
            // In key order, as the engine likes them (and the same bytes
            // for the same changes, run after run).
            ops[start..].sort_unstable_by(|a, b| a.1.cmp(&b.1));
        }
        Ok((ops, self.next_order))
    }
}
