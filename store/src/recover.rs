//! Reading the whole store back at start, and tidying what a crash or a
//! failed commit can leave behind.
//!
//! Every row is checked (checksum, layout): a damaged one fails the
//! recovery with an error naming the file and the table, and the broker
//! does not start. What is consistent but stale is repaired in one atomic
//! write before the broker runs:
//! * a queued delivery whose message expired (wall clock) is dropped — an
//!   in-flight one is kept, since its onward delivery had started;
//! * a will whose message expired is dropped;
//! * rows of a session that is not there, and queue / in-flight rows whose
//!   message is not there, are deleted;
//! * message reference counts are recounted from the rows that hold them;
//!   a message nobody holds is deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use portcullis_core::durable::{
    MessageId, Recovered, RecoveredBan, RecoveredDelayed, RecoveredInflight, RecoveredQueued, RecoveredSession,
    RecoveredWill,
};
use portcullis_core::message::Message;

use crate::apply::msg_key;
use crate::codec::{self, DecodeError};
use crate::engine::{Engine, EngineError, Op, Table};

/// What a recovery read, and what it repaired.
#[derive(Debug)]
pub struct Recovery {
    pub recovered: Recovered,
    /// The writes that tidy the store (written before the broker runs).
    pub repairs: Vec<Op>,
    /// The next in-flight order stamp.
    pub next_order: u64,
    /// Queued deliveries dropped because their message expired.
    pub expired: usize,
}

/// Decodes one row (key, value).
type DecodeFn<'a> = dyn FnMut(&[u8], &[u8]) -> Result<(), DecodeError> + 'a;

struct Ctx<'e> {
    engine: &'e dyn Engine,
}

impl Ctx<'_> {
    fn corrupt(&self, t: Table, key: &[u8], e: DecodeError) -> EngineError {
        let shown: String = String::from_utf8_lossy(&key[..key.len().min(64)]).escape_debug().collect();
        EngineError::Corrupt {
            file: self.engine.path().to_path_buf(),
            detail: format!("table {}, key \"{shown}\": {e}", t.name()),
        }
    }

    /// Every row of `t`, checksum verified, decoded by `f`.
    fn each(&self, t: Table, f: &mut DecodeFn<'_>) -> Result<(), EngineError> {
        self.engine.scan(t, &[], &mut |k, sealed| {
            let v = codec::unseal(k, sealed).map_err(|e| self.corrupt(t, k, e))?;
            f(k, v).map_err(|e| self.corrupt(t, k, e))
        })
    }
}

/// A stored message, decoded (even when expired: an in-flight delivery
/// keeps it).
struct Stored {
    msg: Arc<Message>,
    expired: bool,
    refs_stored: u32,
    refs_found: u32,
}

pub fn recover(engine: &dyn Engine) -> Result<Recovery, EngineError> {
    let cx = Ctx { engine };
    let now = Instant::now();
    let now_ms = codec::unix_now_ms();
    let mut repairs: Vec<Op> = Vec::new();

    // Messages and their counts.
    let mut messages: HashMap<u64, Stored> = HashMap::new();
    let mut next_message_id = 0u64;
    cx.each(Table::Messages, &mut |k, v| {
        let id = codec::be_u64(k)?;
        next_message_id = next_message_id.max(id + 1);
        let (msg, expired) = codec::decode_message(v, now, now_ms)?;
        messages.insert(id, Stored { msg, expired, refs_stored: 0, refs_found: 0 });
        Ok(())
    })?;
    let mut orphan_refs = Vec::new();
    cx.each(Table::Refs, &mut |k, v| {
        let id = codec::be_u64(k)?;
        let mut r = codec::R(v);
        let n = r.u32()?;
        r.end()?;
        match messages.get_mut(&id) {
            Some(m) => m.refs_stored = n,
            None => orphan_refs.push(k.to_vec()),
        }
        Ok(())
    })?;
    repairs.extend(orphan_refs.into_iter().map(|k| (Table::Refs, k, None)));

    // Sessions.
    let mut sessions: Vec<RecoveredSession> = Vec::new();
    let mut index: HashMap<Arc<str>, usize> = HashMap::new();
    cx.each(Table::Sessions, &mut |k, v| {
        let client_id: Arc<str> = Arc::from(std::str::from_utf8(k).map_err(|_| DecodeError("client id is not UTF-8"))?);
        let (owner, expiry_secs, detached_at_ms) = codec::decode_session(v)?;
        index.insert(client_id.clone(), sessions.len());
        sessions.push(RecoveredSession {
            client_id,
            owner,
            expiry_secs,
            detached_at_ms,
            subscriptions: Vec::new(),
            queue: Vec::new(),
            inflight: Vec::new(),
            awaiting_rel: Vec::new(),
            will: None,
        });
        Ok(())
    })?;

    let mut stale: Vec<(Table, Vec<u8>)> = Vec::new();
    cx.each(Table::Subscriptions, &mut |k, v| {
        let (cid, filter) = codec::split_key(k)?;
        let filter = std::str::from_utf8(filter).map_err(|_| DecodeError("filter is not UTF-8"))?;
        let (options, id) = codec::decode_subscription(v)?;
        match index.get(cid) {
            Some(&i) => sessions[i].subscriptions.push((Arc::from(filter), options, id)),
            None => stale.push((Table::Subscriptions, k.to_vec())),
        }
        Ok(())
    })?;
    cx.each(Table::AwaitRel, &mut |k, v| {
        let (cid, rest) = codec::split_key(k)?;
        let packet_id = codec::be_u16(rest)?;
        codec::R(v).end()?;
        match index.get(cid) {
            Some(&i) => sessions[i].awaiting_rel.push(packet_id),
            None => stale.push((Table::AwaitRel, k.to_vec())),
        }
        Ok(())
    })?;

    // Wills (format 2): one per session; one whose message expired would
    // never be delivered, and goes.
    cx.each(Table::Wills, &mut |k, v| {
        let cid = std::str::from_utf8(k).map_err(|_| DecodeError("client id is not UTF-8"))?;
        let (delay_secs, msg, expired) = codec::decode_will(v, now, now_ms)?;
        match index.get(cid) {
            Some(&i) if !expired => sessions[i].will = Some(RecoveredWill { msg, delay_secs }),
            _ => stale.push((Table::Wills, k.to_vec())),
        }
        Ok(())
    })?;

    let mut expired = 0usize;
    cx.each(Table::Queue, &mut |k, v| {
        let (cid, rest) = codec::split_key(k)?;
        let seq = codec::be_u64(rest)?;
        let row = codec::decode_queue(v)?;
        let session = index.get(cid).copied();
        match (session, messages.get_mut(&row.id)) {
            (Some(i), Some(m)) if !m.expired => {
                m.refs_found += 1;
                sessions[i].queue.push(RecoveredQueued {
                    seq,
                    id: MessageId(row.id),
                    msg: m.msg.clone(),
                    qos: row.qos,
                    retain: row.retain,
                    subscription_ids: row.subscription_ids,
                });
            }
            (Some(_), Some(_)) => {
                expired += 1;
                stale.push((Table::Queue, k.to_vec()));
            }
            _ => stale.push((Table::Queue, k.to_vec())),
        }
        Ok(())
    })?;

    let mut next_order = 0u64;
    let mut orders: Vec<Vec<u64>> = vec![Vec::new(); sessions.len()];
    cx.each(Table::Inflight, &mut |k, v| {
        let (cid, rest) = codec::split_key(k)?;
        let packet_id = codec::be_u16(rest)?;
        let row = codec::decode_inflight(v)?;
        next_order = next_order.max(row.order + 1);
        match (index.get(cid).copied(), messages.get_mut(&row.id)) {
            (Some(i), Some(m)) => {
                m.refs_found += 1;
                sessions[i].inflight.push(RecoveredInflight {
                    packet_id,
                    id: MessageId(row.id),
                    msg: m.msg.clone(),
                    qos: row.qos,
                    retain: row.retain,
                    state: row.state,
                });
                orders[i].push(row.order);
            }
            _ => stale.push((Table::Inflight, k.to_vec())),
        }
        Ok(())
    })?;
    // In the order they were sent (rows are in packet id order).
    for (s, o) in sessions.iter_mut().zip(orders) {
        if s.inflight.len() > 1 {
            let mut pairs: Vec<_> = o.into_iter().zip(std::mem::take(&mut s.inflight)).collect();
            pairs.sort_by_key(|(order, _)| *order);
            s.inflight = pairs.into_iter().map(|(_, i)| i).collect();
        }
    }
    repairs.extend(stale.into_iter().map(|(t, k)| (t, k, None)));

    // Counts as found.
    for (id, m) in &messages {
        let key = msg_key(*id);
        if m.refs_found == 0 {
            repairs.push((Table::Messages, key.clone(), None));
            repairs.push((Table::Refs, key, None));
        } else if m.refs_found != m.refs_stored {
            let v = codec::seal(&key, m.refs_found.to_le_bytes().to_vec());
            repairs.push((Table::Refs, key, Some(v)));
        }
    }

    let mut retained = Vec::new();
    let mut expired_retained = Vec::new();
    cx.each(Table::Retained, &mut |k, v| {
        match codec::decode_message(v, now, now_ms)? {
            (m, false) => retained.push(m),
            (_, true) => expired_retained.push(k.to_vec()),
        }
        Ok(())
    })?;
    repairs.extend(expired_retained.into_iter().map(|k| (Table::Retained, k, None)));

    // Delayed publishes (in key order: deadline, then id); their ids come
    // from the message ids, so the next one is past them too.
    let mut delayed = Vec::new();
    let mut expired_delayed = Vec::new();
    cx.each(Table::Delayed, &mut |k, v| {
        let (due_ms, id) = codec::parse_delayed_key(k)?;
        next_message_id = next_message_id.max(id + 1);
        match codec::decode_message(v, now, now_ms)? {
            (msg, false) => delayed.push(RecoveredDelayed { due_ms, id, msg }),
            (_, true) => expired_delayed.push(k.to_vec()),
        }
        Ok(())
    })?;
    repairs.extend(expired_delayed.into_iter().map(|k| (Table::Delayed, k, None)));

    // Guard bans that still run.
    let mut bans = Vec::new();
    let mut ended_bans = Vec::new();
    cx.each(Table::Bans, &mut |k, v| {
        let mut r = codec::R(v);
        let until_ms = r.u64()?;
        r.end()?;
        match until_ms > now_ms {
            true => bans.push(RecoveredBan { key: k.to_vec(), until_ms }),
            false => ended_bans.push(k.to_vec()),
        }
        Ok(())
    })?;
    repairs.extend(ended_bans.into_iter().map(|k| (Table::Bans, k, None)));

    Ok(Recovery {
        recovered: Recovered { sessions, retained, delayed, bans, next_message_id },
        repairs,
        next_order,
        expired,
    })
}
