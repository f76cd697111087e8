//! STOMP headers ⇄ MQTT 5 properties (issue 17): a stomp.py SEND's own
//! headers reach an MQTT 5 subscriber as user properties (content-type,
//! reply-to and correlation-id as their MQTT 5 fields), an MQTT 5
//! PUBLISH's properties reach stomp.py as MESSAGE headers without touching
//! the headers the broker sets; more headers than `max_user_properties`
//! is an ERROR.

use std::time::Duration;

use bytes::Bytes;
use portcullis_core::codec::{Properties, QoS};
use portcullis_tests::kit::*;
use portcullis_tests::stomp::{start, Py};

fn prop<'a>(p: &'a Properties, name: &str) -> Vec<&'a str> {
    p.user_properties.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_headers_become_user_properties_and_back() {
    let (b, addr) = start("", "");
    for v in ["1.0", "1.1", "1.2"] {
        let (mut mqtt, _) = open_v5(b.addr, &format!("m5-{v}"), true, Properties::default()).await;
        subscribe(&mut mqtt, 1, &[("h/in", QoS::AtLeastOnce)]).await;
        let mut py = Py::start("headers", v, addr, &[]);
        assert_eq!(py.line()["ready"], true, "{v}");

        let p = tokio::time::timeout(Duration::from_secs(10), next_publish(&mut mqtt)).await.expect("the SEND");
        ack_incoming(&mut mqtt, &p).await;
        assert_eq!(&p.payload[..], b"with-headers", "{v}");
        let props = &p.properties;
        assert_eq!(prop(props, "x-custom"), ["1"], "{v}: {props:?}");
        assert_eq!(prop(props, "x-other"), ["two words"], "{v}: {props:?}");
        for stomp_header in ["destination", "content-length", "content-type", "receipt", "reply-to", "correlation-id"] {
            assert!(prop(props, stomp_header).is_empty(), "{v}: {stomp_header} in {props:?}");
        }
        assert_eq!(props.content_type.as_deref(), Some("text/plain"), "{v}");
        assert_eq!(props.response_topic.as_deref(), Some("h/reply"), "{v}");
        assert_eq!(props.correlation_data.as_deref(), Some(&b"c-42"[..]), "{v}");

        let mut out = publish("h/out", QoS::AtLeastOnce, Some(7), b"from-mqtt", false);
        out.properties = Properties {
            content_type: Some("application/json".into()),
            response_topic: Some("h/back".into()),
            correlation_data: Some(Bytes::from_static(b"corr")),
            user_properties: vec![
                ("x-from-mqtt".into(), "a:b\\c".into()),
                ("destination".into(), "evil".into()),
                ("content-length".into(), "999".into()),
                ("subscription".into(), "evil".into()),
                ("content-type".into(), "evil".into()),
                ("x-rep".into(), "first".into()),
                ("x-rep".into(), "second".into()),
            ],
            ..Properties::default()
        };
        assert_eq!(publish_complete(&mut mqtt, out).await, 0, "{v}");
        let r = py.line();
        assert_eq!(r["errors"].as_array().map(Vec::len), Some(0), "{v}: {r}");
        let h = &r["messages"][0]["headers"];
        assert_eq!(h["destination"], "h/out", "{v}: {r}");
        assert_eq!(h["subscription"], "s", "{v}: {r}");
        assert_eq!(h["content-length"], "9", "{v}: {r}");
        assert_eq!(h["content-type"], "application/json", "{v}: {r}");
        assert_eq!(h["reply-to"], "h/back", "{v}: {r}");
        assert_eq!(h["correlation-id"], "corr", "{v}: {r}");
        if v == "1.0" {
            // 1.0 has no escapes: the value goes as it is (and stomp.py
            // reads `\c` in it as 1.1 would).
            assert!(h["x-from-mqtt"].as_str().is_some_and(|x| x.starts_with("a:b")), "{v}: {r}");
        } else {
            assert_eq!(h["x-from-mqtt"], "a:b\\c", "{v}: {r}");
        }
        assert_eq!(h["x-rep"], "first", "{v}: {r}");
        disconnect(mqtt).await;
    }
}

#[test]
fn more_headers_than_max_user_properties_is_an_error() {
    let (_b, addr) = start("[limits]\nmax_user_properties = 3\n", "");
    let r = Py::run("many_headers", "1.2", addr, &["3"]);
    assert_eq!(r["receipts"], serde_json::json!(["r"]), "{r}");
    let r = Py::run("many_headers", "1.2", addr, &["4"]);
    let msg = r["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("max_user_properties"), "{r}");
    assert_eq!(r["errors"][0]["receipt-id"], "r", "{r}");
    assert_eq!(r["disconnected"], true, "{r}");
}
