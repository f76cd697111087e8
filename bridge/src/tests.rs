//! Unit tests: rule parsing and topic mapping, config validation.

use portcullis_core::codec::QoS;
use portcullis_core::topic::TopicName;

use crate::config::{validate_all, BridgeConfig};
use crate::rule::{Direction, TopicRule};

fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn rule(s: &str) -> TopicRule {
    TopicRule::parse(s).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn rules_parse_like_mosquitto() {
    let r = rule("sensors/#");
    assert_eq!(
        (r.direction, r.qos, r.local_prefix.as_str(), r.remote_prefix.as_str()),
        (Direction::Out, QoS::AtMostOnce, "", "")
    );
    let r = rule("# both 2 local/ remote/");
    assert_eq!((r.direction, r.qos), (Direction::Both, QoS::ExactlyOnce));
    assert_eq!((r.local_filter(), r.remote_filter()), ("local/#", "remote/#"));
    let r = rule("\"\" out 1 here/topic there/topic");
    assert_eq!(r.to_remote(&t("here/topic")).as_deref(), Some("there/topic"));
    for bad in ["", "a in 3", "a sideways", "a/# out 1 x/+ y/", "\"\" out 1", "a out 1 b c d"] {
        assert!(TopicRule::parse(bad).is_err(), "{bad:?} should not parse");
    }
}

#[test]
fn topics_map_through_prefixes() {
    let r = rule("sensors/# both 1 site/ cloud/site1/");
    assert_eq!(r.to_remote(&t("site/sensors/t1")).as_deref(), Some("cloud/site1/sensors/t1"));
    assert_eq!(r.to_local(&t("cloud/site1/sensors/t1")).as_deref(), Some("site/sensors/t1"));
    assert_eq!(r.to_remote(&t("sensors/t1")), None);
    let out = rule("a/# out");
    assert_eq!(out.to_local(&t("a/b")), None);
    let inn = rule("a/# in");
    assert_eq!(inn.to_remote(&t("a/b")), None);
    assert_eq!(inn.to_local(&t("a/b")).as_deref(), Some("a/b"));
}

fn parse(text: &str) -> Vec<BridgeConfig> {
    #[derive(serde::Deserialize)]
    struct F {
        bridges: Vec<BridgeConfig>,
    }
    toml::from_str::<F>(text).unwrap_or_else(|e| panic!("{e}")).bridges
}

#[test]
fn config_defaults_and_problems() {
    let b = parse("[[bridges]]\nname = \"up\"\naddresses = [\"127.0.0.1:1883\"]\ntopics = [\"# both 1\"]\n");
    assert_eq!(validate_all(&b), vec![]);
    assert_eq!(b[0].remote_client_id(), "portcullis-up");
    assert_eq!(b[0].state_topic(), "$SYS/broker/connection/portcullis-up/state");
    let b = parse(
        "[[bridges]]\nname = \"a b\"\naddresses = [\"nohost\"]\ntopics = [\"x in 7\"]\nkeepalive = \"0s\"\nmax_inflight = 0\nmax_queued = 0\n\
         password_env = \"P\"\n[[bridges]]\nname = \"a b\"\naddresses = []\ntopics = []\n",
    );
    let keys: Vec<String> = validate_all(&b).into_iter().map(|(k, _)| k).collect();
    for want in [
        "bridges[0].name",
        "bridges[0].addresses[0]",
        "bridges[0].topics[0]",
        "bridges[0].keepalive",
        "bridges[0].username",
        "bridges[0].max_inflight",
        "bridges[0].max_queued",
        "bridges[1].addresses",
        "bridges[1].topics",
        "bridges[1].name",
    ] {
        assert!(keys.iter().any(|k| k == want), "{want} missing from {keys:?}");
    }
}

#[test]
fn unknown_keys_are_refused() {
    let text = "[[bridges]]\nname = \"up\"\naddresses = [\"h:1\"]\ntopics = [\"#\"]\npassword = \"inline\"\n";
    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct F {
        bridges: Vec<BridgeConfig>,
    }
    assert!(toml::from_str::<F>(text).is_err());
}

#[test]
fn jitter_stays_between_half_and_all() {
    let d = std::time::Duration::from_millis(1000);
    for _ in 0..1000 {
        let j = crate::run::jitter(d);
        assert!(j >= d / 2 && j <= d, "{j:?}");
    }
}

#[test]
fn the_switch_reports_changes_and_the_status_its_state() {
    let cfg: BridgeConfig =
        toml::from_str("name = \"b\"\naddresses = [\"127.0.0.1:1\"]\nprotocol = \"5\"\ntopics = [\"#\"]\n")
            .unwrap_or_else(|e| panic!("{e}"));
    let c = crate::control::Control::new(&cfg, std::sync::Arc::default());
    let watch = c.watch();
    let s = c.status();
    assert_eq!((s.name.as_str(), s.protocol, s.running, s.connected, s.address), ("b", "5", true, false, None));
    assert!(!c.set_running(true), "already running");
    assert!(c.set_running(false));
    assert!(!c.set_running(false), "already stopped");
    assert!(watch.has_changed().unwrap_or(false) && !*watch.borrow());
    c.set_address("127.0.0.1:1");
    let s = c.status();
    assert_eq!((s.running, s.address.as_deref()), (false, Some("127.0.0.1:1")));
}
