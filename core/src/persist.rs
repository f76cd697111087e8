//! Session and retained-message snapshots, so a graceful restart keeps
//! persistent sessions (subscriptions, queued and unacknowledged messages,
//! QoS 2 state) and retained messages.
//!
//! The broker writes the snapshot after its connections have closed on
//! SIGINT/SIGTERM and reads it back at start. The file is written to a
//! temporary name and renamed, so a crash mid-write leaves the previous
//! snapshot intact. Sessions that end with their connection (expiry 0) are
//! not in it. Session expiry restarts when the snapshot is loaded.
//!
//! Format: a magic with the version, then bincode of [`Snapshot`], then
//! (version 2) bincode of the sessions' owners, one per session in order.
//! A version 1 file (no owners) still loads; its sessions get
//! [`SessionOwner::Unknown`], which nobody can resume. The file is created
//! readable by its owner only (0600).

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::broker::Broker;
use crate::codec::{Properties, QoS, RetainHandling, SubscriptionOptions};
use crate::message::{Delivery, Message};
use crate::owner::SessionOwner;
use crate::session::{Inflight, OutState, Session, SubRecord};
use crate::topic::{SubscriptionFilter, TopicName};

const MAGIC: &[u8; 8] = b"PCSNAP02";
/// The version 1 magic: sessions without owners.
const MAGIC_V1: &[u8; 8] = b"PCSNAP01";

#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: not a portcullis snapshot (bad magic or version)")]
    BadMagic { path: String },
    #[error("{path}: corrupt snapshot: {source}")]
    Corrupt { path: String, source: bincode::Error },
}

#[derive(Debug, Serialize, Deserialize)]
struct MsgSnap {
    topic: String,
    payload: Vec<u8>,
    qos: u8,
    retain: bool,
    payload_format_indicator: Option<u8>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
    publisher: Option<String>,
    /// Remaining lifetime in milliseconds when saved.
    expires_in_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct DeliverySnap {
    msg: MsgSnap,
    qos: u8,
    retain: bool,
    subscription_ids: Vec<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct SubSnap {
    filter: String,
    qos: u8,
    no_local: bool,
    retain_as_published: bool,
    retain_handling: u8,
    subscription_id: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize)]
struct InflightSnap {
    packet_id: u16,
    delivery: DeliverySnap,
    released: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct SessionSnap {
    client_id: String,
    /// `None` = never expires.
    expiry_secs: Option<u64>,
    subscriptions: Vec<SubSnap>,
    queue: Vec<DeliverySnap>,
    inflight: Vec<InflightSnap>,
    awaiting_rel: Vec<u16>,
}

/// A session's owner as written (see [`SessionOwner`]).
#[derive(Debug, Serialize, Deserialize)]
enum OwnerSnap {
    User(String),
    Cert(String),
    Anonymous(String),
    Unknown,
}

impl OwnerSnap {
    fn of(o: &SessionOwner) -> OwnerSnap {
        match o {
            SessionOwner::User(u) => OwnerSnap::User(u.to_string()),
            SessionOwner::Cert(c) => OwnerSnap::Cert(c.to_string()),
            SessionOwner::Anonymous(l) => OwnerSnap::Anonymous(l.to_string()),
            SessionOwner::Unknown => OwnerSnap::Unknown,
        }
    }

    fn owner(self) -> SessionOwner {
        match self {
            OwnerSnap::User(u) => SessionOwner::User(Arc::from(u)),
            OwnerSnap::Cert(c) => SessionOwner::Cert(Arc::from(c)),
            OwnerSnap::Anonymous(l) => SessionOwner::Anonymous(Arc::from(l)),
            OwnerSnap::Unknown => SessionOwner::Unknown,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    saved_at_unix: u64,
    sessions: Vec<SessionSnap>,
    retained: Vec<MsgSnap>,
}

/// What a load restored.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    pub sessions: usize,
    pub messages: usize,
    pub retained: usize,
}

fn msg_snap(m: &Message, now: Instant) -> MsgSnap {
    MsgSnap {
        topic: m.topic.as_str().to_string(),
        payload: m.payload.to_vec(),
        qos: m.qos as u8,
        retain: m.retain,
        payload_format_indicator: m.properties().payload_format_indicator,
        content_type: m.properties().content_type.clone(),
        response_topic: m.properties().response_topic.clone(),
        correlation_data: m.properties().correlation_data.as_ref().map(|b| b.to_vec()),
        user_properties: m.properties().user_properties.clone(),
        publisher: m.publisher.as_deref().map(str::to_string),
        expires_in_ms: m.expires_at.map(|d| d.saturating_duration_since(now).as_millis() as u64),
    }
}

fn msg_from(s: MsgSnap, now: Instant) -> Option<Arc<Message>> {
    Some(Arc::new(Message {
        topic: TopicName::new(&s.topic).ok()?,
        payload: Bytes::from(s.payload),
        qos: QoS::from_u8(s.qos)?,
        retain: s.retain,
        properties: Message::boxed_properties(Properties {
            payload_format_indicator: s.payload_format_indicator,
            content_type: s.content_type,
            response_topic: s.response_topic,
            correlation_data: s.correlation_data.map(Bytes::from),
            user_properties: s.user_properties,
            ..Properties::default()
        }),
        publisher: s.publisher.map(Arc::from),
        expires_at: s.expires_in_ms.map(|ms| now + Duration::from_millis(ms)),
    }))
}

fn delivery_snap(d: &Delivery, now: Instant) -> DeliverySnap {
    DeliverySnap {
        msg: msg_snap(&d.msg, now),
        qos: d.qos as u8,
        retain: d.retain,
        subscription_ids: d.subscription_ids.clone(),
    }
}

fn delivery_from(s: DeliverySnap, now: Instant) -> Option<Delivery> {
    Some(Delivery {
        msg: msg_from(s.msg, now)?,
        qos: QoS::from_u8(s.qos)?,
        retain: s.retain,
        subscription_ids: s.subscription_ids,
        // Checked again: the marks of the subscriptions it came through
        // are not in the snapshot.
        check: true,
        queued_weight: 0,
    })
}

/// Writes every persistent session and the retained store to `path`.
/// Returns the number of sessions written.
pub fn save(broker: &Broker, path: &Path) -> Result<usize, PersistError> {
    let now = Instant::now();
    let mut sessions = Vec::new();
    let mut owners = Vec::new();
    for session in broker.sessions_snapshot() {
        let st = session.lock();
        if st.ended || st.expiry.is_some_and(|d| d.is_zero()) {
            continue;
        }
        sessions.push(SessionSnap {
            client_id: session.client_id.to_string(),
            expiry_secs: st.expiry.map(|d| d.as_secs()),
            subscriptions: st
                .subscriptions()
                .values()
                .map(|r| SubSnap {
                    filter: r.filter.raw.to_string(),
                    qos: r.options.qos as u8,
                    no_local: r.options.no_local,
                    retain_as_published: r.options.retain_as_published,
                    retain_handling: r.options.retain_handling as u8,
                    subscription_id: r.subscription_id,
                })
                .collect(),
            queue: st.queued().map(|d| delivery_snap(d, now)).collect(),
            inflight: st
                .inflight()
                .iter()
                .map(|i| InflightSnap {
                    packet_id: i.packet_id,
                    delivery: delivery_snap(&i.delivery, now),
                    released: i.state == OutState::Released,
                })
                .collect(),
            awaiting_rel: st.awaiting_rel().keys().copied().collect(),
        });
        owners.push(OwnerSnap::of(&session.owner));
    }
    // `$SYS` values are republished by the new process; old ones would be stale.
    let retained = broker
        .retained
        .all()
        .iter()
        .filter(|m| !m.topic.as_str().starts_with("$SYS/"))
        .map(|m| msg_snap(m, now))
        .collect();
    let snap = Snapshot {
        saved_at_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        sessions,
        retained,
    };
    let n = snap.sessions.len();
    let io = |source| PersistError::Io { path: path.display().to_string(), source };
    let tmp = path.with_extension("tmp");
    {
        let mut open = std::fs::OpenOptions::new();
        open.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut open, 0o600);
        let mut f = std::io::BufWriter::new(open.open(&tmp).map_err(io)?);
        f.write_all(MAGIC).map_err(io)?;
        let corrupt = |source| PersistError::Corrupt { path: tmp.display().to_string(), source };
        bincode::serialize_into(&mut f, &snap).map_err(corrupt)?;
        bincode::serialize_into(&mut f, &owners).map_err(corrupt)?;
        let f = f.into_inner().map_err(|e| io(e.into_error()))?;
        f.sync_all().map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(n)
}

/// Loads a snapshot written by [`save`] into a fresh broker. A missing file
/// restores nothing.
pub fn load(broker: &Arc<Broker>, path: &Path) -> Result<Restored, PersistError> {
    let p = || path.display().to_string();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Restored::default()),
        Err(source) => return Err(PersistError::Io { path: p(), source }),
    };
    let mut r = std::io::BufReader::new(file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic).map_err(|_| PersistError::BadMagic { path: p() })?;
    if &magic != MAGIC && &magic != MAGIC_V1 {
        return Err(PersistError::BadMagic { path: p() });
    }
    let corrupt = |source| PersistError::Corrupt { path: p(), source };
    let snap: Snapshot = bincode::deserialize_from(&mut r).map_err(corrupt)?;
    let owners: Vec<OwnerSnap> =
        if &magic == MAGIC { bincode::deserialize_from(&mut r).map_err(corrupt)? } else { Vec::new() };
    let mut owners = owners.into_iter();
    let now = Instant::now();
    let mut out = Restored::default();
    for m in snap.retained {
        if let Some(m) = msg_from(m, now) {
            broker.retained.set(&m);
            out.retained += 1;
        }
    }
    broker.metrics.retained.set(broker.retained.len() as u64);
    for s in snap.sessions {
        let expiry = s.expiry_secs.map(Duration::from_secs);
        let owner = owners.next().map_or(SessionOwner::Unknown, OwnerSnap::owner);
        let session = Arc::new(Session::new(Arc::from(s.client_id.as_str()), owner, expiry));
        for sub in s.subscriptions {
            let Ok(filter) = SubscriptionFilter::parse(&sub.filter) else { continue };
            let options = SubscriptionOptions {
                qos: QoS::from_u8(sub.qos).unwrap_or_default(),
                no_local: sub.no_local,
                retain_as_published: sub.retain_as_published,
                retain_handling: match sub.retain_handling {
                    1 => RetainHandling::OnNewSubscribe,
                    2 => RetainHandling::Never,
                    _ => RetainHandling::OnSubscribe,
                },
            };
            // The ACL mark is not in the snapshot, and no client is there to
            // ask about: a restored subscription with a wildcard has its
            // deliveries checked (a literal one names a single topic, which
            // its SUBSCRIBE was granted).
            let check = filter.filter.has_wildcards();
            let rec = SubRecord { filter: filter.clone(), options, subscription_id: sub.subscription_id, check };
            broker.subscribe(&session, filter, rec);
        }
        {
            let mut st = session.lock();
            for i in s.inflight {
                if let Some(d) = delivery_from(i.delivery, now) {
                    let state = if i.released { OutState::Released } else { OutState::Published };
                    st.push_inflight(Inflight {
                        packet_id: i.packet_id,
                        delivery: d,
                        state,
                        stored: None,
                        settle: None,
                    });
                    out.messages += 1;
                }
            }
            for id in s.awaiting_rel {
                st.await_rel(id, std::time::Instant::now());
            }
        }
        for d in s.queue {
            if let Some(d) = delivery_from(d, now) {
                // Bypasses queue_qos0: these were queued under the old rules.
                session.restore_queued(d);
                out.messages += 1;
            }
        }
        broker.adopt_session(session);
        out.sessions += 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::{OpenError, OpenRequest};
    use crate::settings::BrokerSettings;

    #[tokio::test]
    async fn snapshot_round_trip() {
        let b = Broker::new(BrokerSettings::default());
        let alice = SessionOwner::User(Arc::from("alice"));
        let dev1: Arc<str> = Arc::from("dev1");
        let req = |conn_id, owner| OpenRequest {
            client_id: &dev1,
            owner,
            clean_start: false,
            expiry: Some(Duration::from_secs(60)),
            conn_id,
        };
        let opened = b.open_session(req(1, &alice)).unwrap();
        let f = SubscriptionFilter::parse("a/+").unwrap();
        let opts = SubscriptionOptions { qos: QoS::ExactlyOnce, ..Default::default() };
        b.subscribe(
            &opened.session,
            f.clone(),
            SubRecord { filter: f, options: opts, subscription_id: Some(7), check: false },
        );
        b.close_session(&opened.session, 1);
        let msg = Arc::new(Message {
            topic: TopicName::new("a/b").unwrap(),
            payload: Bytes::from_static(b"hello"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: Message::boxed_properties(Properties {
                user_properties: vec![("k".into(), "v".into())],
                ..Default::default()
            }),
            publisher: Some(Arc::from("p")),
            expires_at: None,
        });
        assert_eq!(b.publish(msg).local, 1);

        let dir = tempfile_dir();
        let path = dir.join("snap.bin");
        assert_eq!(save(&b, &path).unwrap(), 1);

        let b2 = Broker::new(BrokerSettings::default());
        let r = load(&b2, &path).unwrap();
        assert_eq!(r, Restored { sessions: 1, messages: 1, retained: 1 });
        let bob = SessionOwner::User(Arc::from("bob"));
        assert_eq!(b2.open_session(req(2, &bob)).unwrap_err(), OpenError::OwnerMismatch, "the owner came back");
        let opened = b2.open_session(req(3, &alice)).unwrap();
        assert!(opened.session_present);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let mut st = opened.session.lock();
        assert_eq!(st.subscriptions().len(), 1);
        assert_eq!(st.subscriptions()["a/+"].subscription_id, Some(7));
        let out = st.next_outgoing(10, Instant::now(), &b2.metrics, None).unwrap();
        assert_eq!(&out.delivery.msg.payload[..], b"hello");
        assert_eq!(out.delivery.msg.properties().user_properties, vec![("k".to_string(), "v".to_string())]);
        drop(st);
        assert_eq!(b2.retained.len(), 1);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn garbage_is_rejected() {
        let dir = tempfile_dir();
        let path = dir.join("bad.bin");
        std::fs::write(&path, b"not a snapshot at all").unwrap();
        let b = Broker::new(crate::settings::BrokerSettings::default());
        assert!(matches!(load(&b, &path), Err(PersistError::BadMagic { .. })));
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[0xff; 7]);
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(load(&b, &path), Err(PersistError::Corrupt { .. })));
        assert_eq!(load(&b, &dir.join("missing")).unwrap(), Restored::default());
        let _ = std::fs::remove_dir_all(dir);
    }

    fn tempfile_dir() -> std::path::PathBuf {
        use rand::Rng;
        let d = std::env::temp_dir().join(format!("pc-persist-{:x}", rand::thread_rng().gen::<u64>()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
