//! Message delivered, acknowledged, dropped.

use crate::codec::QoS;
use crate::gate::ClientInfo;
use crate::message::Message;
use crate::metrics::DropReason;

/// Runs when a PUBLISH to a client is written to its connection.
pub trait OnMessageDelivered: Send + Sync + 'static {
    fn delivered(&self, client: &ClientInfo, msg: &Message, qos: QoS);
}

/// Runs when a client acknowledges a QoS 1 (PUBACK) or QoS 2 (PUBCOMP)
/// delivery.
pub trait OnMessageAcked: Send + Sync + 'static {
    fn acked(&self, client: &ClientInfo, msg: &Message);
}

/// Runs when a message is dropped: `client_id` is the session it was
/// bound for, when it was one.
pub trait OnMessageDropped: Send + Sync + 'static {
    fn dropped(&self, msg: &Message, reason: DropReason, client_id: Option<&str>);
}
