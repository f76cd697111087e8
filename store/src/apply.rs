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
//!
//! Cost per change: the writer applies every change of every batch (at
//! 10 → 10 persistent QoS 1, ~600,000 a second), most of which cancel. So
//! queue and in-flight rows, the bulk of them, are kept typed, per session
//! and keyed by sequence number or packet id (no key bytes built, no value
//! encoded): only those left at the end of the group are encoded and
//! sealed ([`Txn::finish`]).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use portcullis_core::durable::{Change, Recovered};
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

/// A multiply-rotate hasher for the writer's integer keys (message ids,
/// queue sequence numbers, packet ids: the broker's own numbers, never a
/// peer's), hashed several times per change; SipHash's flood resistance
/// buys nothing for them. Client ids (a peer's choice) keep the std hasher.
#[derive(Debug, Default, Clone, Copy)]
pub struct IntHasher(u64);

impl IntHasher {
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl Hasher for IntHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..chunk.len()].copy_from_slice(chunk);
            self.add(u64::from_le_bytes(b));
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
}

type IntMap<K, V> = HashMap<K, V, BuildHasherDefault<IntHasher>>;

/// A queue or in-flight row this group wrote, typed (encoded only if it
/// is still there at the end).
#[derive(Debug)]
struct Typed<R> {
    /// `None`: deleted.
    row: Option<R>,
    /// The engine did not hold the key before this group.
    fresh: bool,
    /// The batch answerable for a fresh row (see [`Owed`]).
    owner: u32,
}

/// What a batch of this group still owes before its commit may complete
/// without the group's fsync ("settled").
///
/// A delivery's batches (the router's `MessagePut` + `QueuePush`, the
/// connection's `QueuePop` + `InflightPut`, its `InflightDelete`) create
/// rows that the later ones delete again. The batch that queued a delivery
/// answers for its queue row, then for the in-flight row the delivery
/// moved to (handed over by the `QueuePop` that took the row), and the
/// batch that put a message for the message while anything in the group
/// holds it. Once none of these is left, the batch changed nothing the
/// disk must hold: the delivery was acknowledged, so its commit completes
/// at once, without waiting for the fsync of the rest of the group.
/// A batch with any other effect (a row the engine holds, a session, a
/// subscription, a retained message, a count of a message on disk ...)
/// is `pinned`: it completes after the group's fsync, as every batch did
/// before.
#[derive(Debug, Default, Clone, Copy)]
pub struct Owed {
    /// Fresh rows and live new messages this batch answers for.
    pub outstanding: u32,
    pub pinned: bool,
}

impl Owed {
    pub fn settled(&self) -> bool {
        self.outstanding == 0 && !self.pinned
    }
}

/// One session's queue and in-flight rows in this group.
#[derive(Debug, Default)]
struct SessionRows {
    queue: IntMap<u64, Typed<QueueRow>>,
    inflight: IntMap<u16, Typed<InflightRow>>,
}

/// How a typed put landed (see [`put_typed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Put {
    /// A new fresh row: `owner` answers for it.
    Fresh,
    /// A fresh row this group put before, replaced (its owner stays).
    Replaced,
    /// A row the engine holds (or a delete of one, undone): a disk write.
    Disk,
}

/// Puts a typed row (see [`Txn::put`]); returns the change in the number
/// of rows held and how it landed.
fn put_typed<K: Hash + Eq, R>(map: &mut IntMap<K, Typed<R>>, k: K, row: R, fresh: bool, owner: u32) -> (isize, Put) {
    match map.entry(k) {
        Entry::Occupied(mut o) => {
            let t = o.get_mut();
            let put = if t.fresh && t.row.is_some() { Put::Replaced } else { Put::Disk };
            t.row = Some(row);
            (0, put)
        }
        Entry::Vacant(v) => {
            v.insert(Typed { row: Some(row), fresh, owner });
            (1, if fresh { Put::Fresh } else { Put::Disk })
        }
    }
}

/// Deletes a typed row (see [`Txn::del`]); returns the change in the
/// number of rows held, and the owner of a fresh row that left nothing
/// behind (`None`: the delete is a disk write).
fn del_typed<K: Hash + Eq, R>(map: &mut IntMap<K, Typed<R>>, k: K) -> (isize, Option<u32>) {
    match map.entry(k) {
        Entry::Occupied(mut o) => {
            if o.get().fresh {
                (-1, Some(o.remove().owner))
            } else {
                o.get_mut().row = None;
                (0, None)
            }
        }
        Entry::Vacant(v) => {
            v.insert(Typed { row: None, fresh: false, owner: 0 });
            (1, None)
        }
    }
}

/// The queue and in-flight keys the engine holds, per client id, kept by
/// the writer (from the recovery, then from every write), so that a push
/// or a send — almost always to a key the engine does not hold — costs no
/// engine read. A few dozen bytes per queue row on disk.
#[derive(Debug, Default)]
pub struct DiskKeys {
    sessions: HashMap<Box<str>, DiskSession>,
}

#[derive(Debug, Default)]
struct DiskSession {
    queue: IntMap<u64, ()>,
    inflight: IntMap<u16, ()>,
}

impl DiskKeys {
    /// The keys of what a recovery returned (after its repairs: exactly
    /// the queue and in-flight rows left on disk).
    pub fn from_recovered(r: &Recovered) -> DiskKeys {
        let mut keys = DiskKeys::default();
        for s in &r.sessions {
            if s.queue.is_empty() && s.inflight.is_empty() {
                continue;
            }
            let d = keys.sessions.entry(Box::from(&*s.client_id)).or_default();
            d.queue.extend(s.queue.iter().map(|q| (q.seq, ())));
            d.inflight.extend(s.inflight.iter().map(|i| (i.packet_id, ())));
        }
        keys
    }

    /// Follows a successful write; false if a key did not parse (the
    /// writer then stops trusting these keys and reads the engine).
    pub fn apply(&mut self, ops: &[Op]) -> bool {
        for (t, k, v) in ops {
            if !matches!(t, Table::Queue | Table::Inflight) {
                continue;
            }
            let Ok((cid, rest)) = codec::split_key(k) else { return false };
            let present = v.is_some();
            if present && !self.sessions.contains_key(cid) {
                self.sessions.insert(Box::from(cid), DiskSession::default());
            }
            let Some(d) = self.sessions.get_mut(cid) else { continue };
            match t {
                Table::Queue => {
                    let Ok(seq) = codec::be_u64(rest) else { return false };
                    if present {
                        d.queue.insert(seq, ());
                    } else {
                        d.queue.remove(&seq);
                    }
                }
                _ => {
                    let Ok(packet_id) = codec::be_u16(rest) else { return false };
                    if present {
                        d.inflight.insert(packet_id, ());
                    } else {
                        d.inflight.remove(&packet_id);
                    }
                }
            }
            if d.queue.is_empty() && d.inflight.is_empty() {
                self.sessions.remove(cid);
            }
        }
        true
    }

    fn has_queue(&self, client_id: &str, seq: u64) -> bool {
        self.sessions.get(client_id).is_some_and(|d| d.queue.contains_key(&seq))
    }

    fn has_inflight(&self, client_id: &str, packet_id: u16) -> bool {
        self.sessions.get(client_id).is_some_and(|d| d.inflight.contains_key(&packet_id))
    }
}

/// One group being turned into row writes.
pub struct Txn<'e> {
    engine: &'e dyn Engine,
    /// The queue and in-flight keys the engine holds, when the writer
    /// knows them (else each is read).
    disk: Option<&'e DiskKeys>,
    /// This group's rows, one map per table (indexed by `Table as usize`).
    /// Hashed, not ordered: a group holds tens of thousands of rows that
    /// mostly cancel out, and only the few left are sorted, at the end.
    /// Queue and in-flight rows are in `sessions` until [`Txn::finish`].
    overlay: Vec<HashMap<Vec<u8>, Slot>>,
    /// Queue and in-flight rows per client id, typed.
    sessions: HashMap<Arc<str>, SessionRows>,
    /// How many typed rows `sessions` holds.
    typed_rows: usize,
    ref_delta: IntMap<u64, i64>,
    /// Messages whose count changed by other than zero (a group that has
    /// none, and no rows, writes nothing).
    ref_changed: usize,
    /// Messages put in this group (and the batch that put them), encoded
    /// only if they are still held at the end.
    new_messages: IntMap<u64, (Arc<Message>, u32)>,
    /// What each batch of the group still owes, by batch index.
    owed: Vec<Owed>,
    /// Batches whose outstanding count fell to zero in the current batch
    /// (settled if it is still zero once the batch is applied).
    touched: Vec<u32>,
    /// The queue row the current batch's `QueuePop` took: its message id
    /// and owner, which the `InflightPut` that follows inherits.
    handoff: Option<(u64, u32)>,
    /// Bytes of the messages put in this group that nothing holds any more
    /// (delivered and acknowledged): kept until the group ends, in case
    /// another session's push still comes for them, so the writer ends a
    /// group that keeps too many ([`Txn::dormant_bytes`]).
    dormant_bytes: usize,
    /// Next in-flight order stamp (kept by the writer across groups).
    pub next_order: u64,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: usize = self.overlay.iter().map(HashMap::len).sum::<usize>() + self.typed_rows;
        f.debug_struct("Txn").field("rows", &rows).finish()
    }
}

/// What a message held in a group costs, roughly.
fn message_bytes(msg: &Message) -> usize {
    msg.payload.len() + msg.topic.as_str().len()
}

pub fn msg_key(id: u64) -> Vec<u8> {
    id.to_be_bytes().to_vec()
}

fn corrupt(engine: &dyn Engine, t: Table, e: codec::DecodeError) -> EngineError {
    EngineError::Corrupt { file: engine.path().to_path_buf(), detail: format!("table {}: {e}", t.name()) }
}

/// A committed row of `t`, checksum verified and decoded by `f`.
fn engine_row<R>(
    engine: &dyn Engine,
    t: Table,
    key: &[u8],
    f: impl FnOnce(&[u8]) -> Result<R, codec::DecodeError>,
) -> Result<Option<R>, EngineError> {
    let Some(sealed) = engine.get(t, key)? else { return Ok(None) };
    let v = codec::unseal(key, &sealed).map_err(|e| corrupt(engine, t, e))?;
    f(v).map(Some).map_err(|e| corrupt(engine, t, e))
}

impl<'e> Txn<'e> {
    pub fn new(engine: &'e dyn Engine, disk: Option<&'e DiskKeys>, next_order: u64) -> Txn<'e> {
        Txn {
            engine,
            disk,
            overlay: Table::ALL.iter().map(|_| HashMap::new()).collect(),
            sessions: HashMap::new(),
            typed_rows: 0,
            ref_delta: IntMap::default(),
            ref_changed: 0,
            new_messages: IntMap::default(),
            owed: Vec::new(),
            touched: Vec::new(),
            handoff: None,
            dormant_bytes: 0,
            next_order,
        }
    }

    fn corrupt(&self, t: Table, e: codec::DecodeError) -> EngineError {
        corrupt(self.engine, t, e)
    }

    /// The typed rows of `client_id` in this group.
    fn rows(&mut self, client_id: &Arc<str>) -> &mut SessionRows {
        // One hash of the client id (several per change add up: the
        // writer applies hundreds of thousands a second); keyed by the
        // string, so two `Arc`s of one id are one session.
        self.sessions.entry(Arc::clone(client_id)).or_default()
    }

    fn count_typed(&mut self, delta: isize) {
        self.typed_rows = self.typed_rows.saturating_add_signed(delta);
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
        self.ref_changed == 0 && self.typed_rows == 0 && self.overlay.iter().all(HashMap::is_empty)
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
        let edge = match (was_zero, *d == 0) {
            (true, false) => {
                self.ref_changed += 1;
                1
            }
            (false, true) => {
                self.ref_changed -= 1;
                -1
            }
            _ => 0,
        };
        // A new message's batch answers for it while it is held; a count
        // of a message the engine holds is a disk write.
        match self.new_messages.get(&id) {
            Some((msg, owner)) => {
                let (owner, bytes) = (*owner, message_bytes(msg));
                match edge {
                    1 => self.dormant_bytes = self.dormant_bytes.saturating_sub(bytes),
                    -1 => self.dormant_bytes += bytes,
                    _ => {}
                }
                self.owe(owner, edge);
            }
            None => self.pin(),
        }
    }

    /// Bytes of this group's new messages that nothing holds (see the
    /// field).
    pub fn dormant_bytes(&self) -> usize {
        self.dormant_bytes
    }

    /// Starts the next batch of the group; returns its index.
    pub fn begin_batch(&mut self) -> u32 {
        self.handoff = None;
        self.owed.push(Owed::default());
        u32::try_from(self.owed.len() - 1).unwrap_or(u32::MAX)
    }

    /// The batch being applied.
    fn current(&self) -> u32 {
        u32::try_from(self.owed.len().saturating_sub(1)).unwrap_or(u32::MAX)
    }

    /// The current batch changed what the disk holds.
    fn pin(&mut self) {
        if let Some(o) = self.owed.last_mut() {
            o.pinned = true;
        }
    }

    /// Batch `batch` changed what the disk holds.
    fn pin_batch(&mut self, batch: u32) {
        if let Some(o) = self.owed.get_mut(batch as usize) {
            o.pinned = true;
        }
    }

    fn owe(&mut self, batch: u32, by: i32) {
        let Some(o) = self.owed.get_mut(batch as usize) else { return };
        o.outstanding = o.outstanding.saturating_add_signed(by);
        if by < 0 && o.outstanding == 0 {
            self.touched.push(batch);
        }
    }

    /// What batch `i` still owes.
    pub fn owed(&self, i: u32) -> Owed {
        self.owed.get(i as usize).copied().unwrap_or_default()
    }

    /// Ends the current batch: calls `settled` with every batch of the
    /// group that owes nothing any more since the last call (the current
    /// one included), each once at most per fall to zero.
    pub fn end_batch(&mut self, mut settled: impl FnMut(u32)) {
        let cur = self.current();
        let mut touched = std::mem::take(&mut self.touched);
        for &b in &touched {
            if b != cur && self.owed(b).settled() {
                settled(b);
            }
        }
        touched.clear();
        self.touched = touched;
        if !self.owed.is_empty() && self.owed(cur).settled() {
            settled(cur);
        }
    }

    fn release(&mut self, id: u64) {
        self.count(id, -1);
    }

    fn hold(&mut self, id: u64) {
        self.count(id, 1);
    }

    /// The queue row's message id, and whether the engine is known not to
    /// hold the key (absent from both, or fresh in this group).
    fn queue_row(&mut self, client_id: &Arc<str>, seq: u64) -> Result<(Option<u64>, bool), EngineError> {
        let engine = self.engine;
        if let Some(s) = self.rows(client_id).queue.get(&seq) {
            return Ok((s.row.as_ref().map(|r| r.id), s.fresh));
        }
        if self.disk.is_some_and(|d| !d.has_queue(client_id, seq)) {
            return Ok((None, true));
        }
        let key = codec::key_with_u64(client_id, seq);
        let row = engine_row(engine, Table::Queue, &key, |v| codec::decode_queue(v).map(|r| r.id))?;
        Ok((row, row.is_none()))
    }

    /// The in-flight row's message id and order stamp, and whether the
    /// engine is known not to hold the key.
    fn inflight_row(
        &mut self,
        client_id: &Arc<str>,
        packet_id: u16,
    ) -> Result<(Option<(u64, u64)>, bool), EngineError> {
        let engine = self.engine;
        if let Some(s) = self.rows(client_id).inflight.get(&packet_id) {
            return Ok((s.row.as_ref().map(|r| (r.id, r.order)), s.fresh));
        }
        if self.disk.is_some_and(|d| !d.has_inflight(client_id, packet_id)) {
            return Ok((None, true));
        }
        let key = codec::key_with_u16(client_id, packet_id);
        let row = engine_row(engine, Table::Inflight, &key, |v| codec::decode_inflight(v).map(|r| (r.id, r.order)))?;
        Ok((row, row.is_none()))
    }

    /// A session ended: every queue and in-flight row it has (in the
    /// engine or in this group) goes, releasing its message.
    fn delete_typed(&mut self, client_id: &Arc<str>, prefix: &[u8]) -> Result<(), EngineError> {
        let engine = self.engine;
        let mut queued = Vec::new();
        engine.scan(Table::Queue, prefix, &mut |k, sealed| {
            let v = codec::unseal(k, sealed).map_err(|e| corrupt(engine, Table::Queue, e))?;
            let seq = codec::split_key(k).and_then(|(_, rest)| codec::be_u64(rest));
            let id = codec::decode_queue(v).map(|r| r.id);
            queued.push((
                seq.map_err(|e| corrupt(engine, Table::Queue, e))?,
                id.map_err(|e| corrupt(engine, Table::Queue, e))?,
            ));
            Ok(())
        })?;
        let mut sent = Vec::new();
        engine.scan(Table::Inflight, prefix, &mut |k, sealed| {
            let v = codec::unseal(k, sealed).map_err(|e| corrupt(engine, Table::Inflight, e))?;
            let packet_id = codec::split_key(k).and_then(|(_, rest)| codec::be_u16(rest));
            let id = codec::decode_inflight(v).map(|r| r.id);
            sent.push((
                packet_id.map_err(|e| corrupt(engine, Table::Inflight, e))?,
                id.map_err(|e| corrupt(engine, Table::Inflight, e))?,
            ));
            Ok(())
        })?;
        let mut released = Vec::new();
        let mut added = 0;
        let rows = self.rows(client_id);
        // Rows only the engine has: deleted, their message released.
        for (seq, id) in queued {
            if let Entry::Vacant(v) = rows.queue.entry(seq) {
                v.insert(Typed { row: None, fresh: false, owner: 0 });
                released.push(id);
                added += 1;
            }
        }
        for (packet_id, id) in sent {
            if let Entry::Vacant(v) = rows.inflight.entry(packet_id) {
                v.insert(Typed { row: None, fresh: false, owner: 0 });
                released.push(id);
                added += 1;
            }
        }
        // Rows this group has: a fresh one disappears, another becomes a
        // delete.
        let before = rows.queue.len() + rows.inflight.len();
        rows.queue.retain(|_, s| {
            if let Some(r) = s.row.take() {
                released.push(r.id);
            }
            !s.fresh
        });
        rows.inflight.retain(|_, s| {
            if let Some(r) = s.row.take() {
                released.push(r.id);
            }
            !s.fresh
        });
        let removed = before - (rows.queue.len() + rows.inflight.len());
        self.typed_rows = self.typed_rows + added - removed;
        for id in released {
            self.release(id);
        }
        Ok(())
    }

    /// What a typed put means for the batch answerable for it.
    fn owe_put(&mut self, put: Put, owner: u32) {
        match put {
            Put::Fresh => self.owe(owner, 1),
            Put::Replaced => {}
            Put::Disk => self.pin(),
        }
    }

    /// Applies one change (of the batch begun last, see
    /// [`Txn::begin_batch`]).
    pub fn apply(&mut self, c: &Change) -> Result<(), EngineError> {
        if !matches!(
            c,
            Change::MessagePut { .. }
                | Change::QueuePush { .. }
                | Change::QueuePop { .. }
                | Change::InflightPut { .. }
                | Change::InflightDelete { .. }
        ) {
            self.pin();
        }
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
                self.delete_typed(client_id, &prefix)?;
            }
            Change::SubscriptionPut { client_id, filter, options, subscription_id } => {
                let v = codec::encode_subscription(options, *subscription_id);
                self.put(Table::Subscriptions, codec::key_with_str(client_id, filter), v, false);
            }
            Change::SubscriptionDelete { client_id, filter } => {
                self.del(Table::Subscriptions, codec::key_with_str(client_id, filter));
            }
            Change::MessagePut { id, msg } => {
                let cur = self.current();
                if self.new_messages.insert(id.0, (Arc::clone(msg), cur)).is_none() {
                    self.dormant_bytes += message_bytes(msg);
                }
                self.ref_delta.entry(id.0).or_default();
            }
            Change::QueuePush { client_id, seq, id, qos, retain, subscription_ids } => {
                let (old, fresh) = self.queue_row(client_id, *seq)?;
                if let Some(old) = old {
                    self.release(old);
                }
                let row = QueueRow { id: id.0, qos: *qos, retain: *retain, subscription_ids: subscription_ids.clone() };
                let cur = self.current();
                let (d, put) = put_typed(&mut self.rows(client_id).queue, *seq, row, fresh, cur);
                self.count_typed(d);
                self.owe_put(put, cur);
                self.hold(id.0);
            }
            Change::QueuePop { client_id, seq } => {
                if let (Some(old), _) = self.queue_row(client_id, *seq)? {
                    self.release(old);
                    let (d, owner) = del_typed(&mut self.rows(client_id).queue, *seq);
                    self.count_typed(d);
                    match owner {
                        Some(owner) => {
                            self.owe(owner, -1);
                            self.handoff = Some((old, owner));
                        }
                        None => self.pin(),
                    }
                }
            }
            Change::InflightPut { client_id, packet_id, id, qos, retain, state } => {
                let (old, fresh) = self.inflight_row(client_id, *packet_id)?;
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
                // The delivery the queue row held moves here: whoever
                // answered for that row answers for this one.
                let owner = match self.handoff.take() {
                    Some((msg, owner)) if msg == id.0 => owner,
                    _ => self.current(),
                };
                let (d, put) = put_typed(&mut self.rows(client_id).inflight, *packet_id, row, fresh, owner);
                self.count_typed(d);
                self.owe_put(put, owner);
                if put == Put::Disk {
                    // Over a row the engine holds: the delivery must be
                    // written, and whoever queued it waits for that too.
                    self.pin_batch(owner);
                }
                self.hold(id.0);
            }
            Change::InflightDelete { client_id, packet_id } => {
                if let (Some((old, _)), _) = self.inflight_row(client_id, *packet_id)? {
                    self.release(old);
                    let (d, owner) = del_typed(&mut self.rows(client_id).inflight, *packet_id);
                    self.count_typed(d);
                    match owner {
                        Some(owner) => self.owe(owner, -1),
                        None => self.pin(),
                    }
                }
            }
            Change::AwaitRelPut { client_id, packet_id } => {
                self.put(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id), Vec::new(), false);
            }
            Change::AwaitRelDelete { client_id, packet_id } => {
                self.del(Table::AwaitRel, codec::key_with_u16(client_id, *packet_id));
            }
            Change::RetainPut { msg } => {
                let v = codec::encode_message(msg, Instant::now(), codec::unix_now_ms());
                self.put(Table::Retained, msg.topic.as_str().as_bytes().to_vec(), v, false);
            }
            Change::RetainDelete { topic } => {
                self.del(Table::Retained, topic.as_bytes().to_vec());
            }
            Change::DelayedPut { due_ms, id, msg } => {
                let v = codec::encode_message(msg, Instant::now(), codec::unix_now_ms());
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
                let v = codec::encode_will(*delay_secs, msg, Instant::now(), codec::unix_now_ms());
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
        // Messages are encoded with their expiry as of now (a group can
        // last a while when its batches settle as they come).
        let (now, now_ms) = (Instant::now(), codec::unix_now_ms());
        let deltas: Vec<(u64, i64)> = self.ref_delta.iter().map(|(k, v)| (*k, *v)).collect();
        for (id, delta) in deltas {
            let body = self.new_messages.remove(&id).map(|(msg, _)| msg);
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
                    let body = codec::encode_message(&msg, now, now_ms);
                    self.put(Table::Messages, key, body, true);
                }
            }
        }
        // The typed rows left join the others, encoded.
        for (client_id, rows) in std::mem::take(&mut self.sessions) {
            for (seq, s) in rows.queue {
                let value = s.row.map(|r| codec::encode_queue(&r));
                self.overlay[Table::Queue as usize]
                    .insert(codec::key_with_u64(&client_id, seq), Slot { value, fresh: s.fresh });
            }
            for (packet_id, s) in rows.inflight {
                let value = s.row.map(|r| codec::encode_inflight(&r));
                self.overlay[Table::Inflight as usize]
                    .insert(codec::key_with_u16(&client_id, packet_id), Slot { value, fresh: s.fresh });
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
