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
//! Changes that name rows that are not there (a pop of an entry whose
//! push failed with a full disk, say) change nothing: a failed commit must
//! not make the ones after it fail too.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use portcullis_core::durable::Change;

use crate::codec::{self, InflightRow, QueueRow};
use crate::engine::{Engine, EngineError, Op, Table};

/// One group being turned into row writes.
pub struct Txn<'e> {
    engine: &'e dyn Engine,
    overlay: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>>,
    ref_delta: HashMap<u64, i64>,
    new_messages: HashMap<u64, Vec<u8>>,
    now: Instant,
    now_ms: u64,
    /// Next in-flight order stamp (kept by the writer across groups).
    pub next_order: u64,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn").field("rows", &self.overlay.len()).finish()
    }
}

pub fn msg_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

impl<'e> Txn<'e> {
    pub fn new(engine: &'e dyn Engine, next_order: u64) -> Txn<'e> {
        Txn {
            engine,
            overlay: BTreeMap::new(),
            ref_delta: HashMap::new(),
            new_messages: HashMap::new(),
            now: Instant::now(),
            now_ms: codec::unix_now_ms(),
            next_order,
        }
    }

    fn corrupt(&self, t: Table, e: codec::DecodeError) -> EngineError {
        EngineError::Corrupt { file: self.engine.path().to_path_buf(), detail: format!("table {}: {e}", t.name()) }
    }

    /// The row's value (checksum verified), this group's writes first.
    fn get(&self, t: Table, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        let sealed = match self.overlay.get(&(t, key.to_vec())) {
            Some(v) => v.clone(),
            None => self.engine.get(t, key)?,
        };
        match sealed {
            None => Ok(None),
            Some(s) => Ok(Some(codec::unseal(key, &s).map_err(|e| self.corrupt(t, e))?.to_vec())),
        }
    }

    fn put(&mut self, t: Table, key: Vec<u8>, value: Vec<u8>) {
        let sealed = codec::seal(&key, value);
        self.overlay.insert((t, key), Some(sealed));
    }

    fn del(&mut self, t: Table, key: Vec<u8>) {
        self.overlay.insert((t, key), None);
    }

    /// Keys under `prefix` as this group sees them.
    fn keys(&self, t: Table, prefix: &[u8]) -> Result<Vec<Vec<u8>>, EngineError> {
        let mut keys = std::collections::BTreeSet::new();
        self.engine.scan(t, prefix, &mut |k, _| {
            keys.insert(k.to_vec());
            Ok(())
        })?;
        for ((tt, k), v) in self.overlay.range((t, prefix.to_vec())..) {
            if *tt != t || !k.starts_with(prefix) {
                break;
            }
            if v.is_some() {
                keys.insert(k.clone());
            } else {
                keys.remove(k);
            }
        }
        Ok(keys.into_iter().collect())
    }

    fn release(&mut self, id: u64) {
        *self.ref_delta.entry(id).or_default() -= 1;
    }

    fn hold(&mut self, id: u64) {
        *self.ref_delta.entry(id).or_default() += 1;
    }

    fn queue_row(&self, key: &[u8]) -> Result<Option<QueueRow>, EngineError> {
        self.get(Table::Queue, key)?
            .map(|v| codec::decode_queue(&v).map_err(|e| self.corrupt(Table::Queue, e)))
            .transpose()
    }

    fn inflight_row(&self, key: &[u8]) -> Result<Option<InflightRow>, EngineError> {
        self.get(Table::Inflight, key)?
            .map(|v| codec::decode_inflight(&v).map_err(|e| self.corrupt(Table::Inflight, e)))
            .transpose()
    }

    /// Applies one change.
    pub fn apply(&mut self, c: &Change) -> Result<(), EngineError> {
        match c {
            Change::SessionPut { client_id, owner, expiry_secs, detached_at_ms } => {
                let v = codec::encode_session(owner, *expiry_secs, *detached_at_ms);
                self.put(Table::Sessions, client_id.as_bytes().to_vec(), v);
            }
            Change::SessionDelete { client_id } => {
                self.del(Table::Sessions, client_id.as_bytes().to_vec());
                let prefix = codec::session_prefix(client_id);
                for t in [Table::Subscriptions, Table::AwaitRel] {
                    for k in self.keys(t, &prefix)? {
                        self.del(t, k);
                    }
                }
                for k in self.keys(Table::Queue, &prefix)? {
                    if let Some(row) = self.queue_row(&k)? {
                        self.release(row.id);
                    }
                    self.del(Table::Queue, k);
                }
                for k in self.keys(Table::Inflight, &prefix)? {
                    if let Some(row) = self.inflight_row(&k)? {
                        self.release(row.id);
                    }
                    self.del(Table::Inflight, k);
                }
            }
            Change::SubscriptionPut { client_id, filter, options, subscription_id } => {
                let v = codec::encode_subscription(options, *subscription_id);
                self.put(Table::Subscriptions, codec::key_with_str(client_id, filter), v);
            }
            Change::SubscriptionDelete { client_id, filter } => {
                self.del(Table::Subscriptions, codec::key_with_str(client_id, filter));
            }
            Change::MessagePut { id, msg } => {
                self.new_messages.insert(id.0, codec::encode_message(msg, self.now, self.now_ms));
                self.ref_delta.entry(id.0).or_default();
            }
            Change::QueuePush { client_id, seq, id, qos, retain, subscription_ids } => {
                let key = codec::key_with_u64(client_id, *seq);
                if let Some(old) = self.queue_row(&key)? {
                    self.release(old.id);
                }
                let row = QueueRow { id: id.0, qos: *qos, retain: *retain, subscription_ids: subscription_ids.clone() };
                self.put(Table::Queue, key, codec::encode_queue(&row));
                self.hold(id.0);
            }
            Change::QueuePop { client_id, seq } => {
                let key = codec::key_with_u64(client_id, *seq);
                if let Some(old) = self.queue_row(&key)? {
                    self.release(old.id);
                    self.del(Table::Queue, key);
                }
            }
            Change::InflightPut { client_id, packet_id, id, qos, retain, state } => {
                let key = codec::key_with_u16(client_id, *packet_id);
                let order = match self.inflight_row(&key)? {
                    Some(old) => {
                        self.release(old.id);
                        old.order
                    }
                    None => {
                        self.next_order += 1;
                        self.next_order - 1
                    }
                };
                let row = InflightRow { id: id.0, qos: *qos, retain: *retain, state: *state, order };
                self.put(Table::Inflight, key, codec::encode_inflight(&row));
                self.hold(id.0);
            }
            Change::InflightDelete { client_id, packet_id } => {
                let key = codec::key_with_u16(client_id, *packet_id);
                if let Some(old) = self.inflight_row(&key)? {
                    self.release(old.id);
                    self.del(Table::Inflight, key);
                }
            }
            Change::AwaitRelPut { client_id, packet_id } => {
                self.put(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id), Vec::new());
            }
            Change::AwaitRelDelete { client_id, packet_id } => {
                self.del(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id));
            }
            Change::RetainPut { msg } => {
                let v = codec::encode_message(msg, self.now, self.now_ms);
                self.put(Table::Retained, msg.topic.as_str().as_bytes().to_vec(), v);
            }
            Change::RetainDelete { topic } => {
                self.del(Table::Retained, topic.as_bytes().to_vec());
            }
        }
        Ok(())
    }

    /// Settles reference counts and returns the rows to write.
    pub fn finish(mut self) -> Result<(Vec<Op>, u64), EngineError> {
        let deltas: Vec<(u64, i64)> = self.ref_delta.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, delta) in deltas {
            let body = self.new_messages.remove(&id);
            if delta == 0 && body.is_none() {
                continue;
            }
            let key = msg_key(id);
            let current = match self.get(Table::Refs, &key)? {
                Some(v) => i64::from(codec::R(&v).u32().map_err(|e| self.corrupt(Table::Refs, e))?),
                None => 0,
            };
            let n = current + delta;
            if n <= 0 {
                if current > 0 {
                    self.del(Table::Refs, key.clone());
                    self.del(Table::Messages, key);
                }
            } else {
                if n != current {
                    let n = u32::try_from(n).unwrap_or(u32::MAX);
                    self.put(Table::Refs, key.clone(), n.to_le_bytes().to_vec());
                }
                if let Some(body) = body {
                    self.put(Table::Messages, key, body);
                }
            }
        }
        let ops = self.overlay.into_iter().map(|((t, k), v)| (t, k, v)).collect();
        Ok((ops, self.next_order))
    }
}
