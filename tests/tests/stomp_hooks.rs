//! STOMP SUBSCRIBE / UNSUBSCRIBE run the subscribe hooks an MQTT client's
//! do (issue 17), through core's subscription step: the topic rewrite
//! module rewrites a stomp.py subscription (old/x holds new/x), its
//! UNSUBSCRIBE removes the rewritten filter, and the ACL judges what the
//! rewrite left (s/x → denied/x: ERROR).

use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::stomp::{start, Py};
use serde_json::json;

const ACL: &str = "[[rule]]\npermission = \"deny\"\naction = \"subscribe\"\ntopics = [\"denied/#\"]\n\n\
                   [[rule]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"#\"]\n";

const REWRITE: &str = r#"
[modules.rewrite]
enabled = true
rules = [
  { action = "subscribe", source_topic = "old/#", re = "^old/(.+)$", dest_topic = "new/$1" },
  { action = "subscribe", source_topic = "s/#", re = "^s/(.+)$", dest_topic = "denied/$1" },
]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_rewrite_applies_to_stomp_subscriptions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let acl = dir.path().join("acl.toml");
    std::fs::write(&acl, ACL).expect("acl");
    let extra =
        format!("[acl]\nchain = [\"main\"]\n[acl.file.main]\npath = {:?}\n{REWRITE}", acl.to_str().expect("utf-8"));
    let (b, addr) = start(&extra, "");
    for v in ["1.0", "1.1", "1.2"] {
        let (mut p, _) = open_v3(b.addr, &format!("pub-{v}"), true).await;
        let mut py = Py::start("rewrite", v, addr, &[]);
        assert_eq!(py.line()["ready"], true, "{v}");
        for (topic, body) in [("old/x", "1"), ("new/x", "2"), ("ctl", "c1")] {
            pub_simple(&mut p, topic, QoS::AtLeastOnce, 1, body.as_bytes(), false).await;
        }
        assert_eq!(py.line()["ready"], true, "{v}");
        for (topic, body) in [("new/x", "3"), ("ctl", "c2")] {
            pub_simple(&mut p, topic, QoS::AtLeastOnce, 1, body.as_bytes(), false).await;
        }
        let r = py.line();
        // old/x held new/x; its UNSUBSCRIBE removed new/x.
        assert_eq!(r["messages"], json!([["new/x", "2"], ["ctl", "c1"], ["ctl", "c2"]]), "{v}: {r}");
        // s/x became denied/x, which the ACL refuses.
        assert_eq!(r["errors"][0]["message"], "not authorized to subscribe to this destination", "{v}: {r}");
        assert_eq!(r["disconnected"], true, "{v}: {r}");
        disconnect(p).await;
    }
}
