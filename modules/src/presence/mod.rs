//! Presence: emqttd's client presence events, as `$SYS` messages.
//!
//! `$SYS/brokers/<node>/clients/<client id>/connected`:
//! `{"clientid", "username", "ipaddress", "clean_sess", "protocol",
//! "connack", "ts"}` (emqttd's fields; `ts` in seconds) and
//! `"proto_ver", "keepalive", "clean_start", "listener", "connected_at"`
//! (milliseconds). `…/disconnected`: `{"clientid", "username", "reason",
//! "ts", "disconnected_at"}`. A client id is one level of the topic
//! (`/ + # %` percent-encoded). Not retained; nothing is built while no
//! subscription starts with `$` (a counter in the router), and the JSON
//! only when someone subscribes to the topic itself.

mod config;
#[cfg(test)]
mod tests;

pub use config::PresenceConfig;

use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_core::broker::Broker;
use portcullis_core::codec::QoS;
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{
    ClientConnected, ClientDisconnected, HookSetBuilder, Module, OnClientConnected, OnClientDisconnected,
};
use portcullis_core::sys::topic_level;

/// The presence module.
#[derive(Debug)]
pub struct Presence {
    broker: Weak<Broker>,
    qos: QoS,
}

impl Presence {
    pub fn new(broker: &Arc<Broker>, cfg: &PresenceConfig) -> Presence {
        let qos = if cfg.qos >= 1 { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        Presence { broker: Arc::downgrade(broker), qos }
    }

    fn topic(broker: &Broker, c: &ClientInfo, event: &str) -> String {
        format!("$SYS/brokers/{}/clients/{}/{event}", broker.settings.node_name, topic_level(&c.client_id))
    }
}

fn now() -> std::time::Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

impl Module for Presence {
    fn name(&self) -> &str {
        "presence"
    }

    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        hooks.on_client_connected(self.clone()).on_client_disconnected(self);
    }
}

impl OnClientConnected for Presence {
    fn client_connected(&self, ev: &ClientConnected<'_>) {
        let Some(broker) = self.broker.upgrade() else { return };
        if !broker.sys_events_wanted() {
            return;
        }
        let c = ev.client;
        let topic = Presence::topic(&broker, c, "connected");
        broker.publish_sys_event(&topic, self.qos, || {
            let t = now();
            // emqttd's number (3, 4, 5); a STOMP client's version as a string.
            let proto = match c.protocol.mqtt_level() {
                Some(l) => serde_json::json!(l),
                None => serde_json::json!(c.protocol.version()),
            };
            serde_json::json!({
                "clientid": &*c.client_id,
                "username": c.username.as_deref(),
                "ipaddress": c.peer.ip().to_string(),
                "clean_sess": ev.clean_start,
                "protocol": proto,
                "connack": 0,
                "ts": t.as_secs(),
                "proto_ver": proto,
                "keepalive": ev.keep_alive,
                "clean_start": ev.clean_start,
                "listener": &*c.listener,
                "connected_at": t.as_millis(),
            })
            .to_string()
        });
    }
}

impl OnClientDisconnected for Presence {
    fn client_disconnected(&self, ev: &ClientDisconnected<'_>) {
        let Some(broker) = self.broker.upgrade() else { return };
        if !broker.sys_events_wanted() {
            return;
        }
        let c = ev.client;
        let topic = Presence::topic(&broker, c, "disconnected");
        broker.publish_sys_event(&topic, self.qos, || {
            let t = now();
            serde_json::json!({
                "clientid": &*c.client_id,
                "username": c.username.as_deref(),
                "reason": ev.reason.as_str(),
                "ts": t.as_secs(),
                "disconnected_at": t.as_millis(),
            })
            .to_string()
        });
    }
}
