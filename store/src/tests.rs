//! The store end to end on a real file: commit, reopen, recover; shared
//! messages and their counts; corruption and format versions.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::codec::{QoS, SubscriptionOptions};
use portcullis_core::durable::{Change, InflightState, MessageId, SessionStore};
use portcullis_core::message::Message;
use portcullis_core::owner::SessionOwner;
use portcullis_core::topic::TopicName;

use crate::engine::{Engine, EngineError, Op, Table};
use crate::format::{Format, Migration};
use crate::store::EngineKind;
use crate::{OpenError, Store, StoreConfig, SyncMode};

fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
    Arc::new(Message {
        topic: TopicName::new(topic).unwrap(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: None,
        publisher: Some(Arc::from("pub")),
        expires_at: None,
    })
}

fn session(cid: &Arc<str>) -> Change {
    Change::SessionPut {
        client_id: cid.clone(),
        owner: SessionOwner::User(Arc::from("alice")),
        expiry_secs: Some(3600),
        detached_at_ms: None,
    }
}

fn push(cid: &Arc<str>, seq: u64, id: u64) -> Change {
    Change::QueuePush {
        client_id: cid.clone(),
        seq,
        id: MessageId(id),
        qos: 1,
        retain: false,
        subscription_ids: vec![],
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
}

#[test]
fn a_strict_commit_is_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let m = msg("t/1", b"one");
        let batch = vec![
            session(&a),
            session(&b),
            Change::SubscriptionPut {
                client_id: a.clone(),
                filter: Arc::from("t/+"),
                options: SubscriptionOptions { qos: QoS::AtLeastOnce, ..Default::default() },
                subscription_id: Some(9),
            },
            Change::MessagePut { id: MessageId(1), msg: m.clone() },
            push(&a, 1, 1),
            push(&b, 1, 1),
            Change::RetainPut { msg: m },
            Change::AwaitRelPut { client_id: a.clone(), packet_id: 77 },
        ];
        block_on(store.commit(batch)).unwrap();
        // b sends it: queue → in flight.
        let send = vec![
            Change::QueuePop { client_id: b.clone(), seq: 1 },
            Change::InflightPut {
                client_id: b.clone(),
                packet_id: 5,
                id: MessageId(1),
                qos: 1,
                retain: false,
                state: InflightState::Published,
            },
        ];
        block_on(store.commit(send)).unwrap();
        assert!(store.stats().groups >= 2);
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    assert_eq!(r.next_message_id, 2);
    assert_eq!(r.retained.len(), 1);
    let a_s = r.sessions.iter().find(|s| &*s.client_id == "a").unwrap();
    let b_s = r.sessions.iter().find(|s| &*s.client_id == "b").unwrap();
    assert_eq!(a_s.subscriptions.len(), 1);
    assert_eq!(a_s.subscriptions[0].2, Some(9));
    assert_eq!(a_s.queue.len(), 1);
    assert_eq!(&a_s.queue[0].msg.payload[..], b"one");
    assert_eq!(a_s.awaiting_rel, vec![77]);
    assert!(b_s.queue.is_empty());
    assert_eq!(b_s.inflight.len(), 1);
    assert_eq!(b_s.inflight[0].packet_id, 5);
    assert_eq!(b_s.inflight[0].id, MessageId(1));
    assert_eq!(b_s.owner, SessionOwner::User(Arc::from("alice")));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(store.path()).unwrap().permissions().mode() & 0o777, 0o600);
    }
}

#[test]
fn a_message_goes_with_its_last_reference() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store.recover().unwrap();
    let batch =
        vec![session(&a), session(&b), Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)];
    block_on(store.commit(batch)).unwrap();
    block_on(store.commit(vec![push(&b, 1, 1)])).unwrap();
    block_on(store.commit(vec![Change::QueuePop { client_id: a.clone(), seq: 1 }])).unwrap();
    block_on(store.commit(vec![Change::SessionDelete { client_id: b.clone() }])).unwrap();
    drop(store);
    let engine = crate::engine::redb::Redb::open(&dir.path().join(crate::store::FILE_NAME), true).unwrap();
    for t in [Table::Messages, Table::Refs, Table::Queue] {
        let mut n = 0;
        engine
            .scan(t, &[], &mut |_, _| {
                n += 1;
                Ok(())
            })
            .unwrap();
        assert_eq!(n, 0, "table {} is empty once nobody holds the message", t.name());
    }
}

#[test]
fn relaxed_commits_complete_at_once_and_are_written_by_flush() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let mut cfg = StoreConfig::new(dir.path());
        cfg.mode = SyncMode::Relaxed;
        cfg.sync_interval = std::time::Duration::from_secs(3600);
        let store = Store::open(cfg).unwrap();
        store.recover().unwrap();
        block_on(store.commit(vec![session(&a)])).unwrap();
        store.flush().unwrap();
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.recover().unwrap().sessions.len(), 1);
}

#[test]
fn a_damaged_file_is_refused_with_its_name_and_no_panic() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let mut batch = vec![session(&a)];
        for i in 1..200u64 {
            batch.push(Change::MessagePut { id: MessageId(i), msg: msg("t/x", b"payload payload payload") });
            batch.push(push(&a, i, i));
        }
        block_on(store.commit(batch)).unwrap();
    }
    let path = dir.path().join(crate::store::FILE_NAME);
    let good = std::fs::read(&path).unwrap();
    // Flipped bytes in every 4 KiB page past the header, then a truncation.
    let mut flipped = good.clone();
    for i in (4096..flipped.len()).step_by(4096) {
        for b in &mut flipped[i + 100..(i + 140).min(good.len())] {
            *b ^= 0xa5;
        }
    }
    for damaged in [flipped, good[..good.len() / 2].to_vec(), good[..100].to_vec()] {
        std::fs::write(&path, &damaged).unwrap();
        let shown = match Store::open(StoreConfig::new(dir.path())) {
            Err(e) => e.to_string(),
            Ok(store) => match store.recover() {
                Err(e) => e.to_string(),
                Ok(r) => panic!("a damaged file recovered {} sessions", r.sessions.len()),
            },
        };
        assert!(shown.contains("store.redb"), "the error names the file: {shown}");
    }
}

#[test]
fn a_newer_format_is_refused_and_an_older_one_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        block_on(store.commit(vec![session(&a)])).unwrap();
        assert_eq!(store.found_version(), crate::format::CURRENT);
    }
    // A test version 3 after this build's 2: its migration stamps every
    // session row's client id into the meta table (any row rewrite would
    // do).
    fn to_v3(e: &dyn Engine) -> Result<Vec<Op>, EngineError> {
        let mut ops = Vec::new();
        e.scan(Table::Sessions, &[], &mut |k, _| {
            let key = [b"migrated:".as_slice(), k].concat();
            ops.push((Table::Meta, key.clone(), Some(crate::codec::seal(&key, Vec::new()))));
            Ok(())
        })?;
        Ok(ops)
    }
    static V3: [Migration; 2] = [crate::format::v1_to_v2, to_v3];
    let v3 = Format { version: 3, migrations: &V3 };
    {
        let store = Store::open_with(StoreConfig::new(dir.path()), EngineKind::Redb, &v3).unwrap();
        assert_eq!(store.found_version(), 2);
        assert_eq!(store.recover().unwrap().sessions.len(), 1, "the data survives the migration");
    }
    let store = Store::open_with(StoreConfig::new(dir.path()), EngineKind::Redb, &v3).unwrap();
    assert_eq!(store.found_version(), 3);
    drop(store);
    // This build (version 2) refuses the version 3 file.
    match Store::open(StoreConfig::new(dir.path())) {
        Err(OpenError::Format(e)) => assert!(e.to_string().contains("store format 3"), "{e}"),
        other => panic!("expected a format error, got {other:?}"),
    }
}

/// A file as a version 1 build left it (no `wills` table at all),
/// written with redb directly: this build migrates it to 2 and reads it,
/// and a version 1 build then refuses it (it would ignore the wills).
#[test]
fn a_version_1_store_without_a_wills_table_is_migrated_to_2() {
    use redb::{Database, TableDefinition};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(crate::store::FILE_NAME);
    {
        let db = Database::create(&file).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx.open_table(TableDefinition::<&[u8], &[u8]>::new("meta")).unwrap();
            let (k, v) = (crate::format::VERSION_KEY, 1u32.to_le_bytes().to_vec());
            meta.insert(k, crate::codec::seal(k, v).as_slice()).unwrap();
            let mut sessions = tx.open_table(TableDefinition::<&[u8], &[u8]>::new("sessions")).unwrap();
            let v = crate::codec::encode_session(&SessionOwner::User(Arc::from("alice")), Some(3600), Some(1));
            sessions.insert(b"a".as_slice(), crate::codec::seal(b"a", v).as_slice()).unwrap();
        }
        tx.commit().unwrap();
    }
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        assert_eq!(store.found_version(), 1);
        let r = store.recover().unwrap();
        assert_eq!(r.sessions.len(), 1, "the version 1 rows are read");
        assert!(r.sessions[0].will.is_none());
        block_on(store.commit(vec![Change::WillPut { client_id: a.clone(), msg: msg("w/a", b"gone"), delay_secs: 5 }]))
            .unwrap();
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    assert_eq!(store.found_version(), 2);
    let will = store.recover().unwrap().sessions[0].will.clone().expect("the will written after the migration");
    assert_eq!((will.delay_secs, &will.msg.payload[..]), (5, &b"gone"[..]));
    drop(store);
    let v1 = Format { version: 1, migrations: &[] };
    match Store::open_with(StoreConfig::new(dir.path()), EngineKind::Redb, &v1) {
        Err(OpenError::Format(e)) => assert!(e.to_string().contains("store format 2"), "{e}"),
        other => panic!("a version 1 build must refuse it, got {other:?}"),
    }
}

/// A will is stored with its session, replaced by the next, deleted by
/// `WillDelete` and with its session; one whose message expired, or
/// whose session is gone, is tidied at recovery.
#[test]
fn wills_are_stored_replaced_and_go_with_their_session() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c, d): (Arc<str>, Arc<str>, Arc<str>, Arc<str>) =
        (Arc::from("a"), Arc::from("b"), Arc::from("c"), Arc::from("d"));
    let put =
        |cid: &Arc<str>, m: Arc<Message>, delay_secs| Change::WillPut { client_id: cid.clone(), msg: m, delay_secs };
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let mut expired = Arc::into_inner(msg("w/c", b"old")).unwrap();
        expired.expires_at = Some(std::time::Instant::now());
        let batch = vec![
            session(&a),
            session(&b),
            session(&c),
            session(&d),
            put(&a, msg("w/a", b"first"), 1),
            put(&b, msg("w/b", b"b"), 2),
            put(&c, Arc::new(expired), 3),
            put(&d, msg("w/d", b"d"), 4),
        ];
        block_on(store.commit(batch)).unwrap();
        let batch = vec![
            put(&a, msg("w/a", b"second"), 9),
            Change::WillDelete { client_id: b.clone() },
            Change::SessionDelete { client_id: d.clone() },
        ];
        block_on(store.commit(batch)).unwrap();
    }
    assert_eq!(rows(dir.path(), Table::Wills), 2, "a's and c's");
    std::thread::sleep(std::time::Duration::from_millis(5));
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    let wills: Vec<(&str, u32, &[u8])> = r
        .sessions
        .iter()
        .filter_map(|s| s.will.as_ref().map(|w| (&*s.client_id, w.delay_secs, &w.msg.payload[..])))
        .collect();
    assert_eq!(wills, vec![("a", 9, &b"second"[..])]);
    drop(store);
    assert_eq!(rows(dir.path(), Table::Wills), 1, "the expired will was deleted at recovery");
}

/// Every row of `t` in the store file in `dir` (the store closed).
fn rows(dir: &std::path::Path, t: Table) -> usize {
    let engine = crate::engine::redb::Redb::open(&dir.join(crate::store::FILE_NAME), true).unwrap();
    let mut n = 0;
    engine
        .scan(t, &[], &mut |_, _| {
            n += 1;
            Ok(())
        })
        .unwrap();
    n
}

/// The lifecycle of one delivery: queued, sent under packet id 7, acknowledged.
fn delivered(cid: &Arc<str>, seq: u64, id: u64) -> Vec<Change> {
    vec![
        Change::QueuePop { client_id: cid.clone(), seq },
        Change::InflightPut {
            client_id: cid.clone(),
            packet_id: 7,
            id: MessageId(id),
            qos: 1,
            retain: false,
            state: InflightState::Published,
        },
        Change::InflightDelete { client_id: cid.clone(), packet_id: 7 },
    ]
}

#[test]
fn a_delivery_queued_sent_and_acknowledged_in_one_group_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        block_on(store.commit(vec![session(&a)])).unwrap();
        let before = store.stats();
        let mut group = vec![Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)];
        group.extend(delivered(&a, 1, 1));
        block_on(store.commit(group)).unwrap();
        // The commit settled before its group was counted: the flush is
        // answered after it.
        store.flush().unwrap();
        let after = store.stats();
        assert_eq!(after.groups, before.groups, "no write and no fsync");
        assert_eq!(after.empty_groups, before.empty_groups + 1);
        assert_eq!(after.batches, before.batches + 1);
    }
    for t in [Table::Messages, Table::Refs, Table::Queue, Table::Inflight] {
        assert_eq!(rows(dir.path(), t), 0, "table {}", t.name());
    }
}

#[test]
fn a_delivery_not_acknowledged_within_its_group_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        block_on(store.commit(vec![session(&a)])).unwrap();
        // Queued and sent, not acknowledged: the in-flight row stays.
        let mut group = vec![Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)];
        group.extend(delivered(&a, 1, 1));
        group.pop();
        let before = store.stats().groups;
        block_on(store.commit(group)).unwrap();
        assert_eq!(store.stats().groups, before + 1);
        // Queued only.
        let push2 = vec![Change::MessagePut { id: MessageId(2), msg: msg("t", b"y") }, push(&a, 2, 2)];
        block_on(store.commit(push2)).unwrap();
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    let s = &r.sessions[0];
    assert_eq!(s.inflight.len(), 1);
    assert_eq!((s.inflight[0].packet_id, &s.inflight[0].msg.payload[..]), (7, &b"x"[..]));
    assert_eq!(s.queue.len(), 1);
    assert_eq!((s.queue[0].seq, &s.queue[0].msg.payload[..]), (2, &b"y"[..]));
}

#[test]
fn an_acknowledgement_of_a_delivery_written_earlier_deletes_it() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let first = vec![session(&a), Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)];
        block_on(store.commit(first)).unwrap();
        let before = store.stats().groups;
        block_on(store.commit(delivered(&a, 1, 1))).unwrap();
        assert_eq!(store.stats().groups, before + 1, "the rows written before are deleted: a write");
    }
    for t in [Table::Messages, Table::Refs, Table::Queue, Table::Inflight] {
        assert_eq!(rows(dir.path(), t), 0, "table {}", t.name());
    }
    assert_eq!(rows(dir.path(), Table::Sessions), 1);
}

/// The writer knows which queue and in-flight keys the engine holds (from
/// the recovery, then from each write) instead of reading each one: rows
/// recovered after a restart, rows written by an earlier group and rows of
/// this group all go when they should, and a key used again is rewritten.
#[test]
fn rows_from_a_recovery_and_from_earlier_groups_are_deleted_and_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let mut first = vec![session(&a), session(&b)];
        for id in 1..=3 {
            first.push(Change::MessagePut { id: MessageId(id), msg: msg("t", b"x") });
            first.push(push(&a, id, id));
            first.push(push(&b, id, id));
        }
        block_on(store.commit(first)).unwrap();
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    assert_eq!(r.sessions.iter().map(|s| s.queue.len()).sum::<usize>(), 6);
    // a: seq 1 delivered (a recovered row), seq 2 sent and left in flight
    // under packet id 7 after an earlier one there was acknowledged.
    block_on(store.commit(delivered(&a, 1, 1))).unwrap();
    let mut sent = delivered(&a, 2, 2);
    sent.pop();
    block_on(store.commit(sent)).unwrap();
    // b ends with rows on disk and one queued in this same group.
    let end = vec![
        Change::MessagePut { id: MessageId(4), msg: msg("t", b"y") },
        push(&b, 4, 4),
        Change::SessionDelete { client_id: b.clone() },
    ];
    block_on(store.commit(end)).unwrap();
    // a's seq 1 pushed again (the key was deleted from disk above).
    block_on(store.commit(vec![Change::MessagePut { id: MessageId(5), msg: msg("t", b"z") }, push(&a, 1, 5)])).unwrap();
    drop(store);
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    assert_eq!(r.sessions.len(), 1);
    let s = &r.sessions[0];
    let queued: Vec<(u64, &[u8])> = s.queue.iter().map(|q| (q.seq, &q.msg.payload[..])).collect();
    assert_eq!(queued, vec![(1, &b"z"[..]), (3, &b"x"[..])]);
    assert_eq!(s.inflight.iter().map(|i| (i.packet_id, i.id)).collect::<Vec<_>>(), vec![(7, MessageId(2))]);
    drop(store);
    // Messages 1 and 4 went with their last reference; 2, 3, 5 are held.
    assert_eq!(rows(dir.path(), Table::Messages), 3);
    assert_eq!(rows(dir.path(), Table::Refs), 3);
}

#[test]
fn delayed_publishes_come_back_in_deadline_order_and_expired_ones_are_tidied() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let mut expired = Arc::into_inner(msg("d/x", b"gone")).unwrap();
        expired.expires_at = Some(std::time::Instant::now());
        let batch = vec![
            Change::DelayedPut { due_ms: 2_000, id: 40, msg: msg("d/b", b"second") },
            Change::DelayedPut { due_ms: 1_000, id: 41, msg: msg("d/a", b"first") },
            Change::DelayedPut { due_ms: 3_000, id: 42, msg: Arc::new(expired) },
            Change::DelayedPut { due_ms: 4_000, id: 43, msg: msg("d/c", b"deleted") },
        ];
        block_on(store.commit(batch)).unwrap();
        block_on(store.commit(vec![Change::DelayedDelete { due_ms: 4_000, id: 43 }])).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(5));
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    let got: Vec<(u64, u64, &[u8])> = r.delayed.iter().map(|d| (d.due_ms, d.id, &d.msg.payload[..])).collect();
    assert_eq!(got, vec![(1_000, 41, &b"first"[..]), (2_000, 40, &b"second"[..])]);
    assert_eq!(r.next_message_id, 43, "past every id a row holds");
    drop(store);
    assert_eq!(rows(dir.path(), Table::Delayed), 2, "the expired row was deleted at recovery");
}

#[test]
fn guard_bans_that_still_run_come_back_and_ended_ones_are_tidied() {
    let dir = tempfile::tempdir().unwrap();
    let now_ms = crate::codec::unix_now_ms();
    {
        let store = Store::open(StoreConfig::new(dir.path())).unwrap();
        store.recover().unwrap();
        let key = |s: &str| -> Arc<[u8]> { Arc::from(s.as_bytes()) };
        let batch = vec![
            Change::BanPut { key: key("running"), until_ms: now_ms + 60_000 },
            Change::BanPut { key: key("ended"), until_ms: now_ms.saturating_sub(1) },
            Change::BanPut { key: key("lifted"), until_ms: now_ms + 60_000 },
        ];
        block_on(store.commit(batch)).unwrap();
        block_on(store.commit(vec![Change::BanDelete { key: key("lifted") }])).unwrap();
    }
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    let r = store.recover().unwrap();
    let got: Vec<(&[u8], u64)> = r.bans.iter().map(|b| (&b.key[..], b.until_ms)).collect();
    assert_eq!(got, vec![(&b"running"[..], now_ms + 60_000)]);
    drop(store);
    assert_eq!(rows(dir.path(), Table::Bans), 1, "the ended ban was deleted at recovery");
}

fn inflight_put(cid: &Arc<str>, packet_id: u16, id: u64, state: InflightState) -> Change {
    Change::InflightPut { client_id: cid.clone(), packet_id, id: MessageId(id), qos: 2, retain: false, state }
}

/// A delivery's commits complete as soon as it is acknowledged, without
/// waiting for the group's write that another batch (a session) needs.
#[test]
fn an_acknowledged_delivery_completes_before_its_groups_write() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let mut cfg = StoreConfig::new(dir.path());
    cfg.max_linger = std::time::Duration::from_secs(3);
    let store = Store::open(cfg).unwrap();
    store.recover().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let started = std::time::Instant::now();
        let mut pinned = store.commit(vec![session(&b)]);
        let queued = store.commit(vec![Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)]);
        let delivery = delivered(&a, 1, 1);
        let sent = store.commit(delivery[..2].to_vec());
        let acked = store.commit(delivery[2..].to_vec());
        let waited = tokio::time::timeout(std::time::Duration::from_secs(2), async {
            queued.await.unwrap();
            sent.await.unwrap();
            acked.await.unwrap();
        })
        .await;
        assert!(waited.is_ok(), "the acknowledged delivery's commits completed before the group's write");
        let cx = &mut std::task::Context::from_waker(std::task::Waker::noop());
        assert!(pinned.as_mut().poll(cx).is_pending(), "the session's commit waits for the write");
        pinned.await.unwrap();
        assert!(started.elapsed() >= std::time::Duration::from_secs(2), "the session waited for the linger");
    });
    assert!(store.stats().settled_early >= 3, "{:?}", store.stats());
    drop(store);
    for t in [Table::Messages, Table::Refs, Table::Queue, Table::Inflight] {
        assert_eq!(rows(dir.path(), t), 0, "table {}", t.name());
    }
    assert_eq!(rows(dir.path(), Table::Sessions), 1);
}

/// What each batch owes, change by change: a message sent to two
/// sessions settles its batch only when both deliveries are
/// acknowledged; a QoS 2 delivery only at PUBCOMP; a row the engine holds
/// pins the batch that touches it.
#[test]
fn what_a_batch_owes() {
    use crate::apply::Txn;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = crate::engine::redb::Redb::open(&dir.path().join("s.redb"), true).unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let mut txn = Txn::new(&engine, None, 0);
    let mut settled = Vec::new();
    let batch = |txn: &mut Txn<'_>, changes: Vec<Change>, settled: &mut Vec<u32>| {
        let i = txn.begin_batch();
        for c in &changes {
            txn.apply(c).unwrap();
        }
        txn.end_batch(|b| settled.push(b));
        i
    };
    // One PUBLISH to a and b: the first batch puts the message.
    let to_a = batch(
        &mut txn,
        vec![Change::MessagePut { id: MessageId(1), msg: msg("t", b"x") }, push(&a, 1, 1)],
        &mut settled,
    );
    let to_b = batch(&mut txn, vec![push(&b, 1, 1)], &mut settled);
    assert!(settled.is_empty());
    // a's delivery sent (the pop hands the row over) and acknowledged.
    let d = delivered(&a, 1, 1);
    let sent_a = batch(&mut txn, d[..2].to_vec(), &mut settled);
    assert_eq!(settled, vec![sent_a], "the send owes nothing: the queued batch answers for the in-flight row");
    let acked_a = batch(&mut txn, d[2..].to_vec(), &mut settled);
    assert_eq!(settled, vec![sent_a, acked_a], "a's queued batch still answers for the message b holds");
    assert_eq!(txn.owed(to_a).outstanding, 1);
    // b's as QoS 2: PUBLISH, PUBREC (released), PUBCOMP.
    let sent_b = batch(
        &mut txn,
        vec![Change::QueuePop { client_id: b.clone(), seq: 1 }, inflight_put(&b, 9, 1, InflightState::Published)],
        &mut settled,
    );
    let released = batch(&mut txn, vec![inflight_put(&b, 9, 1, InflightState::Released)], &mut settled);
    assert_eq!(settled, vec![sent_a, acked_a, sent_b, released]);
    assert!(!txn.owed(to_b).settled());
    let done = batch(&mut txn, vec![Change::InflightDelete { client_id: b.clone(), packet_id: 9 }], &mut settled);
    settled.sort_unstable();
    let mut want = vec![to_a, to_b, sent_a, acked_a, sent_b, released, done];
    want.sort_unstable();
    assert_eq!(settled, want, "every batch settled once b acknowledged");
    assert!(txn.is_empty());
    // Anything else is pinned: a session, and a delete of a row the engine holds.
    let s = batch(&mut txn, vec![session(&a)], &mut settled);
    assert!(txn.owed(s).pinned);
    let (ops, _) = txn.finish().unwrap();
    engine.write(&ops, true).unwrap();
    let mut txn = Txn::new(&engine, None, 0);
    let mut settled = Vec::new();
    let mut batch = |txn: &mut Txn<'_>, changes: Vec<Change>| {
        let i = txn.begin_batch();
        for c in &changes {
            txn.apply(c).unwrap();
        }
        txn.end_batch(|b| settled.push(b));
        i
    };
    let queued = batch(&mut txn, vec![Change::MessagePut { id: MessageId(2), msg: msg("t", b"y") }, push(&a, 2, 2)]);
    let (ops, _) = txn.finish().unwrap();
    engine.write(&ops, true).unwrap();
    let _ = queued;
    let mut txn = Txn::new(&engine, None, 0);
    let i = txn.begin_batch();
    txn.apply(&Change::QueuePop { client_id: a.clone(), seq: 2 }).unwrap();
    assert!(txn.owed(i).pinned, "the pop of a row on disk is a write");
}

/// A delivery sent under a packet id whose row the engine still holds
/// (an earlier run's) is written over it: the batch that queued it is
/// pinned to the write, even though it did not put the message.
#[test]
fn a_send_over_a_stored_row_pins_the_batch_that_queued_it() {
    use crate::apply::Txn;
    let dir = tempfile::tempdir().unwrap();
    let mut engine = crate::engine::redb::Redb::open(&dir.path().join("s.redb"), true).unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    // On disk: b's in-flight row under packet id 9.
    let mut txn = Txn::new(&engine, None, 0);
    txn.begin_batch();
    txn.apply(&Change::MessagePut { id: MessageId(1), msg: msg("t", b"old") }).unwrap();
    txn.apply(&inflight_put(&b, 9, 1, InflightState::Published)).unwrap();
    let (ops, _) = txn.finish().unwrap();
    engine.write(&ops, true).unwrap();
    // One PUBLISH to a and b: the message is put by a's batch.
    let mut txn = Txn::new(&engine, None, 0);
    let to_a = txn.begin_batch();
    txn.apply(&Change::MessagePut { id: MessageId(2), msg: msg("t", b"new") }).unwrap();
    txn.apply(&push(&a, 1, 2)).unwrap();
    let to_b = txn.begin_batch();
    txn.apply(&push(&b, 1, 2)).unwrap();
    txn.end_batch(|_| {});
    // b's delivery is sent under packet id 9.
    let sent = txn.begin_batch();
    txn.apply(&Change::QueuePop { client_id: b.clone(), seq: 1 }).unwrap();
    txn.apply(&inflight_put(&b, 9, 2, InflightState::Published)).unwrap();
    let mut settled = Vec::new();
    txn.end_batch(|i| settled.push(i));
    assert!(txn.owed(to_b).pinned, "b's queued batch waits for the write of the row it became");
    assert!(txn.owed(sent).pinned);
    assert!(!settled.contains(&to_b));
    assert!(!txn.owed(to_a).settled());
}

/// A delivered message a group keeps (another session's push may still
/// come for it) counts as dormant until the group ends; the writer ends a
/// group past a bound of them, so a flood of large messages that are
/// acknowledged at once is not kept for a whole group.
#[test]
fn delivered_messages_are_counted_until_the_group_ends() {
    use crate::apply::Txn;
    let dir = tempfile::tempdir().unwrap();
    let engine = crate::engine::redb::Redb::open(&dir.path().join("s.redb"), true).unwrap();
    let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
    let body: &'static [u8] = &[7u8; 1000];
    let mut txn = Txn::new(&engine, None, 0);
    txn.begin_batch();
    txn.apply(&Change::MessagePut { id: MessageId(1), msg: msg("t", body) }).unwrap();
    txn.apply(&push(&a, 1, 1)).unwrap();
    assert_eq!(txn.dormant_bytes(), 0, "held by a's queue");
    for c in delivered(&a, 1, 1) {
        txn.begin_batch();
        txn.apply(&c).unwrap();
    }
    assert_eq!(txn.dormant_bytes(), 1001, "acknowledged: payload and topic");
    txn.begin_batch();
    txn.apply(&push(&b, 1, 1)).unwrap();
    assert_eq!(txn.dormant_bytes(), 0, "held again by b's queue");
}

#[test]
fn a_group_of_acknowledged_large_messages_ends_at_the_dormant_bound() {
    let dir = tempfile::tempdir().unwrap();
    let a: Arc<str> = Arc::from("a");
    let mut cfg = StoreConfig::new(dir.path());
    cfg.max_linger = std::time::Duration::from_secs(30);
    let store = Store::open(cfg).unwrap();
    store.recover().unwrap();
    let big: &'static [u8] = Box::leak(vec![1u8; 1 << 20].into_boxed_slice());
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        // A session record opens the group and waits for its write.
        let pinned = store.commit(vec![session(&a)]);
        for i in 1..=12u64 {
            let mut batch = vec![Change::MessagePut { id: MessageId(i), msg: msg("t", big) }, push(&a, i, i)];
            batch.extend(delivered(&a, i, i));
            store.record(batch);
        }
        let waited = tokio::time::timeout(std::time::Duration::from_secs(10), pinned).await;
        assert!(matches!(waited, Ok(Ok(()))), "the group ended at the bound, not after its 30 s linger");
    });
}

/// Strict mode lets the broker settle a PUBLISH's commits when its
/// deliveries are acknowledged (core's tests: `durable::tests`); relaxed
/// mode does not need to: its commits complete at once.
#[test]
fn only_a_strict_store_settles() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = StoreConfig::new(dir.path());
    config.mode = SyncMode::Relaxed;
    let store = Store::open(config).unwrap();
    assert!(!store.settles());
    assert!(Store::open(StoreConfig::new(tempfile::tempdir().unwrap().path())).unwrap().settles());
}

/// The writer counts every batch it takes off the backlog that bounds
/// settling (a count that leaked would turn settling off for good).
#[test]
fn the_settle_backlog_returns_to_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path())).unwrap();
    store.recover().unwrap();
    let a: Arc<str> = Arc::from("a");
    let m = msg("t/1", b"one");
    for i in 1..=10_000u64 {
        store.record(vec![Change::MessagePut { id: MessageId(i), msg: m.clone() }, push(&a, i, i)]);
        store.record(vec![Change::QueuePop { client_id: a.clone(), seq: i }]);
    }
    block_on(store.commit(vec![session(&a)])).unwrap();
    store.flush().unwrap();
    assert_eq!(store.stats().backlog, 0);
    assert!(store.settles());
}
