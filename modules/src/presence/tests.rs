use std::sync::Arc;

use portcullis_core::broker::Broker;

use super::{Presence, PresenceConfig};

#[test]
fn qos_from_config() {
    let broker = Broker::new(Default::default());
    assert_eq!(Presence::new(&broker, &PresenceConfig::default()).qos, portcullis_core::codec::QoS::AtMostOnce);
    let p = Presence::new(&broker, &PresenceConfig { qos: 1, ..PresenceConfig::default() });
    assert_eq!(p.qos, portcullis_core::codec::QoS::AtLeastOnce);
    drop(broker);
    // A module outliving its broker does nothing.
    assert!(p.broker.upgrade().is_none());
    let _ = Arc::new(p);
}
