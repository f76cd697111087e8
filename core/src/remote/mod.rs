//! The remote-routing seam: how other nodes of a cluster join this node's
//! routing, without core knowing how they are reached (the `cluster/`
//! crate implements [`RemoteRouting`] on NATS; core has no NATS in it).
//!
//! One implementation is installed once, at start, with
//! [`crate::broker::Broker::set_remote`] (as the durable store is). With
//! none installed — single-node mode, the default — every step below is one
//! `OnceLock` read that finds nothing: no allocation, no lock, no call.
//!
//! # Outbound: a message published here
//!
//! Every message that *originates* on this node goes through
//! [`Broker::publish_from`](crate::broker::Broker::publish_from) (MQTT
//! PUBLISH, the HTTP publish API, STOMP SEND, wills, delayed publishes
//! when due, messages a bridge brings in). After local routing it calls
//! [`RemoteRouting::forward`] once, whatever matched locally; the
//! implementation sends it to the nodes that want it. A bridge's inbound
//! messages are local publishes of the node it runs on: the same
//! `[[bridges]]` on every node would bring each message in once per node.
//!
//! **Origin** is the entry point, not a field of the message: a message
//! from another node enters through
//! [`Broker::deliver_remote`](crate::broker::Broker::deliver_remote),
//! [`Broker::deliver_remote_shared`](crate::broker::Broker::deliver_remote_shared)
//! or [`Broker::retain_remote`](crate::broker::Broker::retain_remote),
//! none of which forwards: no echo, no loop. (A field would have grown every
//! [`Message`] and every place that builds one — the durable store's codec
//! among them — for what the call already says.)
//!
//! **`$SYS`** stays per node: `$SYS/brokers/<node>/…` is published with
//! [`Broker::publish_sys`](crate::broker::Broker::publish_sys) and
//! `publish_sys_event`, which route locally and never forward. Each node
//! publishes its own; a cluster-wide view (membership, `ctl cluster
//! status`) is the cluster's to build. A client cannot publish under
//! `$SYS` (refused before routing), so nothing `$SYS` is forwarded.
//!
//! **"No matching subscribers"** (v5 reason code 0x10, the admin API's 202)
//! is answered only when nothing local matched *and*
//! [`RemoteRouting::has_interest`] says the transport has nowhere to
//! deliver the topic (no other node subscribes to it, and no shared group
//! here or elsewhere does: shared delivery goes through the transport, see
//! below) ([`Routed::matched`](crate::broker::Routed::matched)); the
//! `no_subscribers` drop (metric and hook) is counted on the same terms,
//! so a message that went to another node is not counted dropped.
//!
//! # Inbound: a message from another node
//!
//! * [`Broker::deliver_remote`](crate::broker::Broker::deliver_remote)
//!   routes it to the local **non-shared** subscribers only. Local shared
//!   groups are skipped (and spend no round-robin turn): if every node gave
//!   a copy to its own member, a group spread over three nodes would get
//!   three copies.
//! * Shared subscriptions across nodes are decided by the transport: each
//!   node that has at least one local member of group `g` on filter `f`
//!   holds one queue-group subscription for (`g`, `f`) (NATS queue groups),
//!   so the transport hands a message to exactly one node per group. That
//!   node calls
//!   [`Broker::deliver_remote_shared`](crate::broker::Broker::deliver_remote_shared)
//!   `(msg, ($share/g/f))`, which gives it to one local member picked by
//!   the local strategy. It returns false when the group has no member
//!   here any more (the last one left while the message was on its way):
//!   the implementation may send it on to another node or drop it.
//! * So that a group gets each message once cluster-wide, a node with a
//!   remote installed routes **no** local publish to its shared groups
//!   either: local routing then gives copies to non-shared subscribers
//!   only, and the transport's queue group picks the node — possibly this
//!   one, whose queue-group subscription hands the message back through
//!   `deliver_remote_shared`. (Picking a local member as well would give
//!   the group a second copy whenever the queue group picked another node;
//!   NATS cannot leave one queue group out of one message.) Two costs,
//!   stated: a shared message to a group that only has members here makes
//!   a round trip through the transport; and the queue group spreads
//!   messages over nodes, not over members (a node with ten members gets
//!   as many as a node with one). In strict persistence, a publisher's
//!   acknowledgement does not wait for the store commit of a shared copy
//!   delivered that way.
//! * The implementation calls `deliver_remote` once per message per node,
//!   even when several of its subscriptions (`a/+` and `a/#`) received it:
//!   core then gives each local client one copy, as for a local publish.
//! * Nothing is counted as dropped for an inbound message no one here
//!   wants any more: the origin node decided it had somewhere to go.
//!
//! # Back-pressure
//!
//! After [`RemoteRouting::forward`], the publish step asks
//! [`RemoteRouting::congested`] (in the same `OnceLock` read: nothing in
//! single-node mode) and reports it in
//! [`Routed::remote_congested`](crate::broker::Routed::remote_congested).
//! A client's MQTT PUBLISH and a STOMP SEND then wait, after their
//! acknowledgement is queued, with
//! [`Broker::wait_remote_drained`](crate::broker::Broker::wait_remote_drained)
//! for [`RemoteRouting::drained`], at most `session.stall_timeout`, and
//! read nothing from their connection meanwhile — as they do for a
//! congested local subscriber. So a fast publisher is slowed to what the
//! transport carries instead of overflowing its queue. Past the bound the
//! connection reads on; whatever then does not fit the queue is dropped
//! and counted as before (a dead transport never freezes publishers for
//! longer). Other local publishes (the HTTP API, wills, delayed publishes,
//! bridges) do not wait. `congested` must be cheap (an atomic read): it is
//! asked for every message.
//!
//! # Retained messages
//!
//! Forwarding carries the retain flag; the origin node has already stored
//! it in its own retained index. A retained message from another node is
//! stored here with
//! [`Broker::retain_remote`](crate::broker::Broker::retain_remote) (the
//! local index, and the local durable store as for a local one, so every
//! node's copy is alike), separately from its live delivery: the cluster
//! decides when (a live message, or a key-value watch replaying the
//! retained set on start).
//!
//! # Distinct local filters
//!
//! The implementation keeps one transport subscription per distinct local
//! filter, reference counted by core: [`RemoteRouting::filter_added`] is
//! called when a key gets its first local subscriber and
//! [`RemoteRouting::filter_removed`] when it loses its last one — whatever
//! made it go (UNSUBSCRIBE, session end, expiry, a takeover with clean
//! start, an operator's discard). The key is (no group, filter) for
//! non-shared subscriptions and (group, filter) for each shared group, so
//! `a/b`, `$share/g1/a/b` and `$share/g2/a/b` are three keys. Both calls
//! are made under the router's write lock of that filter, so the add and
//! remove of one key reach the implementation in the order they happened;
//! they must not block or call back into the broker (queue the change).
//! `set_remote` replays `filter_added` for the filters that exist when it
//! is called (sessions restored from the store).
//!
//! # Connection ids and session generations
//!
//! Both are cluster-unique: a connection id is
//! `node slot (16 bits) << 48 | counter (48 bits)`, the slot being
//! [`RemoteRouting::node_slot`] (0 in single-node mode; the implementation
//! must give every live node a distinct one), the counter starting at
//! the process start time in seconds × 65,536 so that a restarted node does
//! not reuse the ids of its previous run (unless that run averaged more than
//! 65,536 connections a second). A session's generation is the id of the
//! connection that attached it last, so it is unique too. Neither is
//! persisted: the store keeps no connection id or generation.
//!
//! # Sessions on other nodes
//!
//! [`Broker::open_session_located`](crate::broker::Broker::open_session_located)
//! (what admission calls for MQTT CONNECT and STOMP CONNECT) first asks
//! [`RemoteRouting::locate`]: another node that holds the client's session
//! closes its connection and hands the session over (installed here before
//! the answer comes back), or discards it for a clean start. Only then does
//! the local open (resume, takeover, or a fresh session) proceed. An answer
//! the implementation knows at once is [`Locate::Done`], with no
//! allocation; one that needs I/O (the cluster's registry read and
//! compare-and-set, a request/reply to another node) is
//! [`Locate::Pending`]. When the session
//! registry cannot be reached, [`LocateError::Unavailable`] refuses the
//! CONNECT with "server unavailable".
//!
//! The hand-over itself is two core calls: on the node that holds the
//! session, [`Broker::hand_over`](crate::broker::Broker::hand_over) closes
//! its connection as a local takeover does (v5 DISCONNECT 0x8E), fences it
//! out and takes the session out of this node whole
//! ([`crate::durable::RecoveredSession`]: subscriptions, queue, in-flight
//! window, QoS 2 packet ids awaiting PUBREL); on the node the client came
//! to, [`Broker::install_handed_over`](crate::broker::Broker::install_handed_over)
//! rebuilds it as a detached local session with the rebuild
//! `Broker::restore_from_store` uses, and with a durable store writes its
//! rows before the CONNACK.
//!
//! The old connection's will follows its close as on a local takeover: a
//! will without delay is published then; a delayed one is not (the client
//! came back, on the other node: the session is marked moved away).
//!
//! [`RemoteRouting::session_changed`] tells the implementation that a
//! session's registry entry is out of date (a persistent session's
//! subscription came or went, or a session ended — not when it moved to
//! another node): called after the change, never under a lock the
//! implementation could wait on; it must queue the work.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::durable::Commit;
use crate::message::Message;
use crate::owner::SessionOwner;
use crate::topic::{SubscriptionFilter, TopicName};

/// A future a [`RemoteRouting`] implementation returns (object safe).
pub type RemoteFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// This node's number in the cluster, in the high 16 bits of every
/// connection id it gives out (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct NodeSlot(pub u16);

/// What [`RemoteRouting::locate`] is asked about a CONNECT.
#[derive(Debug, Clone, Copy)]
pub struct LocateRequest<'a> {
    pub client_id: &'a Arc<str>,
    /// The identity connecting; a session of another identity elsewhere is
    /// not handed over ([`LocateError::OwnerMismatch`]).
    pub owner: &'a SessionOwner,
    /// A clean start: another node's session is discarded, not handed over.
    pub clean_start: bool,
    /// This node holds a session for the client id now (attached or not).
    pub held_here: bool,
    /// The session expiry the CONNECT asks for; `None` = never.
    pub expiry: Option<std::time::Duration>,
}

/// Why [`RemoteRouting::locate`] refused a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LocateError {
    /// The session registry cannot be read or written (say, this node is
    /// on the minority side of a partition): refused as "server
    /// unavailable", and the client tries again.
    #[error("the session registry is unavailable")]
    Unavailable,
    /// Another node holds the session for another identity and
    /// `session.owner_mismatch = "refuse"`.
    #[error("client identifier in use by another identity on another node")]
    OwnerMismatch,
    /// The client id does not fit the registry's key (refused as "client
    /// identifier not valid").
    #[error("client identifier too long for the cluster's session registry")]
    ClientIdTooLong,
}

/// The answer of [`RemoteRouting::locate`].
pub enum Locate<'a> {
    /// Known at once: `Ok` = open locally now.
    Done(Result<(), LocateError>),
    /// Asking another node (request/reply, hand-over); `Ok` once whatever
    /// it held is installed here or discarded.
    Pending(RemoteFuture<'a, Result<(), LocateError>>),
}

impl std::fmt::Debug for Locate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Locate::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Locate::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// The other nodes, as this node's routing sees them. Installed once with
/// [`crate::broker::Broker::set_remote`]; see the module documentation for
/// when each method is called. The sync methods run on the publish or
/// subscribe path: they must be cheap and never block (queue the work).
pub trait RemoteRouting: Send + Sync + std::fmt::Debug {
    /// This node's slot, distinct among the live nodes (read once, by
    /// `set_remote`).
    fn node_slot(&self) -> NodeSlot;

    /// A message that originated on this node, after local routing: send
    /// it to the nodes that want it. Called once per message; never for a
    /// message that came from another node, nor for `$SYS`.
    ///
    /// `commits` is `Some` when a publisher waits for its acknowledgement
    /// (a client's QoS 1/2 PUBLISH): a transport that stores messages
    /// between nodes (the cluster's durable mode) pushes a [`Commit`] that
    /// completes once the message is stored, so that the PUBACK/PUBREC
    /// follows it, and fails (v5 0x97, 3.x connection closed) when it
    /// could not be stored. An at-most-once transport pushes nothing.
    fn forward(&self, msg: &Arc<Message>, commits: Option<&mut Vec<Commit>>);

    /// Whether the transport would deliver a message on `topic` somewhere:
    /// another node has a subscriber whose filter matches it, or a shared
    /// group on a matching filter has a member anywhere — this node's
    /// groups included, as their delivery goes through the transport too.
    /// Asked only when nothing local matched, to decide "no matching
    /// subscribers".
    fn has_interest(&self, topic: &TopicName) -> bool;

    /// The first local subscription of its key, (group, filter), appeared.
    fn filter_added(&self, filter: &SubscriptionFilter);

    /// The last local subscription of its key, (group, filter), went.
    fn filter_removed(&self, filter: &SubscriptionFilter);

    /// Before a CONNECT opens its session here: find out whether another
    /// node holds it, and have it handed over (or discarded) first.
    fn locate<'a>(&'a self, req: LocateRequest<'a>) -> Locate<'a>;

    /// The session of `client_id` on this node changed in a way the
    /// cluster's registry records (a subscription added or removed, the
    /// session ended, `ended`). Queue the work; never block.
    fn session_changed(&self, _client_id: &Arc<str>, _ended: bool) {}

    /// The outbound queue is above its high-water mark: the publisher of the
    /// message just forwarded should wait for [`RemoteRouting::drained`].
    /// Asked after every `forward`; must be an atomic read or as cheap.
    /// An implementation whose transport is stuck should answer false once
    /// it has been stuck for `session.stall_timeout`.
    fn congested(&self) -> bool {
        false
    }

    /// Completes once the outbound queue is below its low-water mark (at
    /// once when it is not congested). The caller bounds the wait with
    /// `session.stall_timeout`.
    fn drained(&self) -> RemoteFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[cfg(test)]
mod tests;
