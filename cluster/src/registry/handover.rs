//! The takeover exchange between two nodes, on
//! `<prefix>.ctl.<node>.takeover` (request/reply), JSON and versioned.
//!
//! * **Request** ([`Request`]): the client id, the identity connecting, and
//!   whether it asks for a clean start. At most [`MAX_REQUEST_BYTES`]; a
//!   larger one is not read.
//! * **Reply** ([`Reply`]): what the owner did ([`Outcome`]) and, when the
//!   session moved, its state: subscriptions, queued and in-flight
//!   deliveries (each message as the MQTT 5 PUBLISH the routing sends
//!   between nodes, [`crate::routing::wire`], base64 in the JSON), QoS 2
//!   packet ids awaiting PUBREL, the expiry. The owner fits it in NATS'
//!   `max_payload`: in-flight deliveries first, then the queue oldest
//!   first; what does not fit is left out and counted (`dropped`).
//!   The receiving node decodes every message with the strict decoder and
//!   its own packet-size and user-property limits.

use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use portcullis_core::codec::DecodeLimits;
use portcullis_core::durable::{InflightState, MessageId, RecoveredInflight, RecoveredQueued, RecoveredSession};
use portcullis_core::message::Message;
use portcullis_core::topic::TopicName;
use serde::{Deserialize, Serialize};

use super::entry::{Owner, Sub};
use crate::routing::wire;

/// Format of both messages.
pub const VERSION: u8 = 1;
/// Largest takeover request read (a client id of 65,535 bytes, an identity
/// and some JSON fit).
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;
/// Room left in `max_payload` for the reply's other fields and NATS headers.
const REPLY_HEADROOM: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub v: u8,
    pub client_id: String,
    pub owner: Owner,
    pub clean_start: bool,
    /// The asking node (for logs).
    pub from: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The owner holds no session for the client id.
    NotHere,
    /// Another identity's session, `owner_mismatch = "refuse"` there.
    OwnerMismatch,
    /// Ended there; nothing to install.
    Discarded,
    /// Taken out of the owner: `session` holds it.
    Moved,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    pub v: u8,
    pub outcome: Outcome,
    #[serde(default)]
    pub session: Option<State>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    pub expiry: Option<u32>,
    pub subs: Vec<Sub>,
    pub inflight: Vec<Held>,
    pub queue: Vec<Held>,
    pub awaiting_rel: Vec<u16>,
    /// Deliveries left out to fit `max_payload`.
    pub dropped: u64,
}

/// A queued or in-flight delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Held {
    pub topic: String,
    /// The message as an MQTT 5 PUBLISH ([`wire::body`]), base64.
    pub body: String,
    pub qos: u8,
    pub retain: bool,
    #[serde(default)]
    pub sids: Vec<u32>,
    /// In flight: its packet id and whether PUBREL was sent.
    #[serde(default)]
    pub packet_id: Option<u16>,
    #[serde(default)]
    pub released: bool,
}

/// Why a takeover message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HandoverError {
    #[error("takeover message over {0} bytes")]
    TooLarge(usize),
    #[error("takeover message is not JSON this node reads: {0}")]
    Json(#[from] serde_json::Error),
    #[error("takeover message format {0} (this node reads {VERSION})")]
    Version(u8),
    #[error("takeover message has an invalid {0}")]
    Field(&'static str),
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

impl Request {
    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).map(bytes::Bytes::from).unwrap_or_default()
    }

    pub fn decode(b: &[u8]) -> Result<Request, HandoverError> {
        if b.len() > MAX_REQUEST_BYTES {
            return Err(HandoverError::TooLarge(MAX_REQUEST_BYTES));
        }
        let r: Request = serde_json::from_slice(b)?;
        if r.v != VERSION {
            return Err(HandoverError::Version(r.v));
        }
        Ok(r)
    }
}

impl Reply {
    pub fn outcome(outcome: Outcome) -> Reply {
        Reply { v: VERSION, outcome, session: None }
    }

    /// A `Moved` reply carrying `s`, within `max_payload` bytes.
    pub fn moved(s: &RecoveredSession, max_payload: usize, now: Instant) -> Reply {
        let mut budget = max_payload.saturating_sub(REPLY_HEADROOM);
        let subs: Vec<Sub> = s.subscriptions.iter().map(|(f, o, id)| Sub::of(f, *o, *id)).collect();
        budget = budget.saturating_sub(serde_json::to_vec(&subs).map_or(0, |v| v.len()) + 8 * s.awaiting_rel.len());
        let mut dropped = 0u64;
        let mut held = |msg: &Message, qos: u8, retain: bool, sids: &[u32], inflight: Option<(u16, bool)>| {
            let body = wire::body(msg, now).ok()?;
            let body = b64().encode(&body);
            let cost = body.len() + msg.topic.as_str().len() * 2 + 96 + 12 * sids.len();
            if cost > budget {
                dropped += 1;
                return None;
            }
            budget -= cost;
            Some(Held {
                topic: msg.topic.as_str().to_string(),
                body,
                qos,
                retain,
                sids: sids.to_vec(),
                packet_id: inflight.map(|i| i.0),
                released: inflight.is_some_and(|i| i.1),
            })
        };
        let inflight = s
            .inflight
            .iter()
            .filter_map(|i| {
                let released = i.state == InflightState::Released;
                held(&i.msg, i.qos, i.retain, &[], Some((i.packet_id, released)))
            })
            .collect();
        let queue = s.queue.iter().filter_map(|q| held(&q.msg, q.qos, q.retain, &q.subscription_ids, None)).collect();
        Reply {
            v: VERSION,
            outcome: Outcome::Moved,
            session: Some(State {
                expiry: s.expiry_secs,
                subs,
                inflight,
                queue,
                awaiting_rel: s.awaiting_rel.clone(),
                dropped,
            }),
        }
    }

    pub fn encode(&self) -> bytes::Bytes {
        serde_json::to_vec(self).map(bytes::Bytes::from).unwrap_or_default()
    }

    /// Reads a reply (bounded by NATS' `max_payload`, which the caller's
    /// connection enforces).
    pub fn decode(b: &[u8]) -> Result<Reply, HandoverError> {
        let r: Reply = serde_json::from_slice(b)?;
        if r.v != VERSION {
            return Err(HandoverError::Version(r.v));
        }
        if (r.outcome == Outcome::Moved) != r.session.is_some() {
            return Err(HandoverError::Field("session"));
        }
        Ok(r)
    }
}

impl State {
    /// The session to install, for `client_id` owned by `owner`; each
    /// message read with `limits`.
    pub fn into_session(
        self,
        client_id: Arc<str>,
        owner: portcullis_core::owner::SessionOwner,
        limits: DecodeLimits,
        now: Instant,
    ) -> Result<RecoveredSession, HandoverError> {
        let msg = |h: &Held| -> Result<Arc<Message>, HandoverError> {
            let topic = TopicName::new(&h.topic).map_err(|_| HandoverError::Field("topic"))?;
            let body = b64().decode(&h.body).map_err(|_| HandoverError::Field("body"))?;
            wire::message(&bytes::Bytes::from(body), &topic, limits, now).map_err(|_| HandoverError::Field("body"))
        };
        let qos = |q: u8| if q <= 2 { Ok(q) } else { Err(HandoverError::Field("qos")) };
        let mut subscriptions = Vec::with_capacity(self.subs.len());
        for s in &self.subs {
            let o = s.options().map_err(|_| HandoverError::Field("subs"))?;
            subscriptions.push((Arc::from(s.filter.as_str()), o, s.id));
        }
        let mut inflight = Vec::with_capacity(self.inflight.len());
        for h in &self.inflight {
            let packet_id = h.packet_id.filter(|&p| p != 0).ok_or(HandoverError::Field("packet_id"))?;
            inflight.push(RecoveredInflight {
                packet_id,
                id: MessageId(0),
                msg: msg(h)?,
                qos: qos(h.qos)?,
                retain: h.retain,
                state: if h.released { InflightState::Released } else { InflightState::Published },
            });
        }
        let mut queue = Vec::with_capacity(self.queue.len());
        for (h, seq) in self.queue.iter().zip(1u64..) {
            queue.push(RecoveredQueued {
                seq,
                id: MessageId(0),
                msg: msg(h)?,
                qos: qos(h.qos)?,
                retain: h.retain,
                subscription_ids: h.sids.clone(),
            });
        }
        Ok(RecoveredSession {
            client_id,
            owner,
            expiry_secs: self.expiry,
            detached_at_ms: None,
            subscriptions,
            queue,
            inflight,
            awaiting_rel: self.awaiting_rel,
            will: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use portcullis_core::codec::{QoS, SubscriptionOptions};
    use portcullis_core::owner::SessionOwner;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtLeastOnce,
            retain: false,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        })
    }

    fn session(queued: usize) -> RecoveredSession {
        RecoveredSession {
            client_id: "c".into(),
            owner: SessionOwner::User("u".into()),
            expiry_secs: Some(60),
            detached_at_ms: None,
            subscriptions: vec![("a/+".into(), SubscriptionOptions::default(), Some(3))],
            queue: (0..queued)
                .map(|i| RecoveredQueued {
                    seq: i as u64,
                    id: MessageId(0),
                    msg: msg("a/q", b"0123456789"),
                    qos: 1,
                    retain: false,
                    subscription_ids: vec![3],
                })
                .collect(),
            inflight: vec![RecoveredInflight {
                packet_id: 9,
                id: MessageId(0),
                msg: msg("a/i", b"inflight"),
                qos: 2,
                retain: true,
                state: InflightState::Released,
            }],
            awaiting_rel: vec![4, 5],
            will: None,
        }
    }

    #[test]
    fn a_session_crosses_whole() {
        let now = Instant::now();
        let r = Reply::moved(&session(3), 1024 * 1024, now);
        let back = Reply::decode(&r.encode()).unwrap();
        assert_eq!(back, r);
        let s = back.session.unwrap();
        assert_eq!(s.dropped, 0);
        let s =
            s.into_session("c".into(), SessionOwner::User("u".into()), DecodeLimits::from(1024 * 1024), now).unwrap();
        assert_eq!(s.queue.len(), 3);
        assert_eq!(&s.queue[0].msg.payload[..], b"0123456789");
        assert_eq!(s.queue[0].subscription_ids, [3]);
        assert_eq!(s.inflight[0].packet_id, 9);
        assert_eq!(s.inflight[0].state, InflightState::Released);
        assert!(s.inflight[0].retain);
        assert_eq!(s.awaiting_rel, [4, 5]);
        assert_eq!(s.subscriptions[0].2, Some(3));
        assert_eq!(s.expiry_secs, Some(60));
    }

    #[test]
    fn the_reply_fits_max_payload_and_counts_what_it_leaves_out() {
        let r = Reply::moved(&session(10_000), 64 * 1024, Instant::now());
        assert!(r.encode().len() <= 64 * 1024, "{}", r.encode().len());
        let s = r.session.unwrap();
        assert_eq!(s.inflight.len(), 1, "in flight first");
        assert!(s.dropped > 0 && s.queue.len() + s.dropped as usize == 10_000);
    }

    #[test]
    fn requests_are_bounded_and_checked() {
        let req = Request {
            v: VERSION,
            client_id: "c".into(),
            owner: Owner::of(&SessionOwner::User("u".into())),
            clean_start: false,
            from: "n2".into(),
        };
        assert_eq!(Request::decode(&req.encode()).unwrap(), req);
        assert!(matches!(Request::decode(&vec![b' '; MAX_REQUEST_BYTES + 1]), Err(HandoverError::TooLarge(_))));
        let mut bad = req.clone();
        bad.v = 9;
        assert!(matches!(Request::decode(&bad.encode()), Err(HandoverError::Version(9))));
        let moved_without_session = Reply::outcome(Outcome::Moved);
        assert!(Reply::decode(&moved_without_session.encode()).is_err());
        let mut r = Reply::moved(&session(1), 1024 * 1024, Instant::now());
        r.session.as_mut().unwrap().queue[0].body = "!!".into();
        let s = Reply::decode(&r.encode()).unwrap().session.unwrap();
        assert!(s.into_session("c".into(), SessionOwner::Unknown, DecodeLimits::from(1024), Instant::now()).is_err());
    }
}
