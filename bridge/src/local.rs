//! The bridge's side of the local broker: an MQTT 5 client over an
//! in-process pipe, served by the core's own connection state machine.
//!
//! Taking messages out through a real session (rather than a publish hook)
//! gives the bridge what every subscriber has: messages only after the
//! ACL allowed them, No Local (a message the bridge brought in is not sent
//! back), Retain As Published, the session's bounded queue and
//! back-pressure while the bridge is slow. Messages from the remote are published straight into
//! the router with the bridge's client id as publisher (so No Local
//! applies to them).
//!
//! The bridge is configured by the operator: its local client is admitted
//! by [`TrustedGate`] (superuser, every action allowed), on a listener of
//! its own named `bridge:<name>`.

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_core::broker::Broker;
use portcullis_core::codec::{Connect, Packet, Properties, ProtocolVersion, Subscribe, SubscriptionOptions};
use portcullis_core::connection::{serve, ListenerContext, ListenerOptions};
use portcullis_core::gate::{Access, AclOutcome, AuthOutcome, ClientInfo, ConnectInfo, Gate, GateFuture};

use crate::link::{Link, LinkError};
use crate::rule::TopicRule;

/// Admits the bridge's own local client: the operator configured it.
#[derive(Debug, Clone, Copy)]
pub struct TrustedGate;

impl Gate for TrustedGate {
    fn authenticate<'a>(&'a self, _info: &'a ConnectInfo) -> GateFuture<'a, AuthOutcome> {
        Box::pin(async { AuthOutcome::allow(true) })
    }
    fn authorize<'a>(&'a self, _client: &'a ClientInfo, _access: Access<'a>) -> GateFuture<'a, AclOutcome> {
        Box::pin(async { AclOutcome::Allow })
    }
}

/// Bytes the pipe between the bridge and its local session buffers.
const PIPE_BYTES: usize = 256 * 1024;

/// Messages the local broker may have in flight towards the bridge.
const LOCAL_RECEIVE_MAXIMUM: u16 = 1000;

/// Connects the bridge's local client `client_id` and subscribes it to
/// the local side of every outgoing rule. Returns the link once the SUBSCRIBEs are sent.
pub async fn connect(
    broker: &Arc<Broker>,
    name: &str,
    client_id: &str,
    rules: &[TopicRule],
) -> Result<Link, LinkError> {
    let listener = ListenerContext::with_options(&format!("bridge:{name}"), 1, ListenerOptions::default());
    let Some(admitted) = listener.admit() else {
        return Err(LinkError::Closed);
    };
    let (ours, theirs) = tokio::io::duplex(PIPE_BYTES);
    let peer = SocketAddr::from(([127, 0, 0, 1], 0));
    tokio::spawn(serve(Arc::clone(broker), Arc::new(TrustedGate), admitted, theirs, peer, None));
    let max_packet = broker.settings.limits.max_packet_size;
    let mut link = Link::new(Box::new(ours), ProtocolVersion::V5, max_packet);
    let properties = Properties {
        receive_maximum: Some(LOCAL_RECEIVE_MAXIMUM),
        maximum_packet_size: Some(max_packet),
        ..Properties::default()
    };
    let connect = Connect {
        protocol: ProtocolVersion::V5,
        bridge: false,
        clean_start: true,
        // Pinged by the bridge's tick; the pipe never half-dies.
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties,
    };
    link.send(&Packet::Connect(Box::new(connect))).await?;
    match link.recv().await? {
        Packet::ConnAck(a) if a.code == 0 => {}
        _ => return Err(LinkError::Closed),
    }
    let outgoing: Vec<(usize, &TopicRule)> = rules.iter().enumerate().filter(|(_, r)| r.direction.outgoing()).collect();
    for (i, rule) in outgoing {
        let options = SubscriptionOptions {
            qos: rule.qos,
            no_local: true,
            retain_as_published: true,
            ..SubscriptionOptions::default()
        };
        let id = u16::try_from(i + 1).unwrap_or(u16::MAX);
        // No subscription identifier: the core's decoder (server side)
        // refuses them in a PUBLISH; the bridge finds the rule by topic.
        let properties = Properties::default();
        let sub = Subscribe { packet_id: id, filters: vec![(rule.local_filter().to_string(), options)], properties };
        // The SUBACK (and retained messages, possibly before it) are read
        // by the bridge's loop.
        link.send(&Packet::Subscribe(sub)).await?;
    }
    Ok(link)
}
