//! Test helpers: clients and accesses in one line.

use std::sync::Arc;

use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::{Access, ClientContext, ClientInfo};
use portcullis_core::topic::{SubscriptionFilter, TopicName};

/// A client from `peer` (`"10.0.0.1:5000"`).
pub fn client(id: &str, user: Option<&str>, peer: &str) -> ClientInfo {
    ClientInfo {
        client_id: Arc::from(id),
        username: user.map(Arc::from),
        peer: peer.parse().unwrap(),
        listener: Arc::from("tcp"),
        protocol: ProtocolVersion::V311.into(),
        superuser: false,
        context: None,
        conn_id: 1,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

/// A remote client with a username.
pub fn user(id: &str, user: &str) -> ClientInfo {
    client(id, Some(user), "192.0.2.7:40000")
}

pub fn with_context(mut c: ClientInfo, ctx: ClientContext) -> ClientInfo {
    c.context = Some(ctx);
    c
}

pub fn qos(q: u8) -> QoS {
    QoS::from_u8(q).unwrap()
}

/// Owned request data, borrowed as an [`Access`] with [`Req::access`].
#[derive(Debug, Clone)]
pub enum Req {
    Pub(TopicName, QoS, bool),
    Sub(SubscriptionFilter, QoS),
}

impl Req {
    pub fn access(&self) -> Access<'_> {
        match self {
            Req::Pub(t, q, r) => Access::Publish { topic: t, qos: *q, retain: *r },
            Req::Sub(f, q) => Access::Subscribe { filter: f, qos: *q },
        }
    }
}

/// PUBLISH QoS 0, not retained.
pub fn publish(topic: &str) -> Req {
    Req::Pub(TopicName::new(topic).unwrap(), QoS::AtMostOnce, false)
}

pub fn publish_with(topic: &str, q: u8, retain: bool) -> Req {
    Req::Pub(TopicName::new(topic).unwrap(), qos(q), retain)
}

/// SUBSCRIBE QoS 0.
pub fn subscribe(filter: &str) -> Req {
    Req::Sub(SubscriptionFilter::parse(filter).unwrap(), QoS::AtMostOnce)
}

pub fn subscribe_with(filter: &str, q: u8) -> Req {
    Req::Sub(SubscriptionFilter::parse(filter).unwrap(), qos(q))
}

/// A tracing subscriber that keeps every event as `LEVEL field=value …`.
#[derive(Debug, Clone, Default)]
pub struct Captured(pub Arc<parking_lot::Mutex<Vec<String>>>);

impl Captured {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().clone()
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields(String);
        impl tracing::field::Visit for Fields {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                use std::fmt::Write;
                let _ = write!(self.0, " {}={:?}", field.name(), value);
            }
        }
        let mut f = Fields(event.metadata().level().to_string());
        event.record(&mut f);
        self.0.lock().push(f.0);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}
