//! STOMP clients are shown as STOMP (issue 17): the admin API lists a
//! stomp.py client with `protocol: "stomp"` and its version, an MQTT
//! client as before.

use std::time::Duration;

use portcullis_tests::kit::*;
use portcullis_tests::stomp::{start, Py};
use serde_json::Value;

const SECRET: &str = "s3cret-0123456789abcdef";

async fn clients(admin: std::net::SocketAddr, query: &str) -> Value {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    let res = http
        .get(format!("http://{admin}/api/v5/clients?{query}"))
        .basic_auth("admin", Some(SECRET))
        .send()
        .await
        .expect("request");
    assert!(res.status().is_success(), "{}", res.status());
    res.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_api_lists_a_stomp_client_as_stomp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\n")).expect("bootstrap");
    let extra = format!(
        "[admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = \"{}\"\nbootstrap_file = \"{}\"\n",
        dir.path().join("data").display(),
        boot.display()
    );
    let (b, addr) = start(&extra, "");
    let admin = b.admin_addr().expect("admin API");
    let (mqtt, _) = open_v3(b.addr, "mqtt-one", true).await;
    for v in ["1.0", "1.2"] {
        let id = format!("stomp-{}", v.replace('.', ""));
        let mut py = Py::start("idle", v, addr, &[&id, "5"]);
        assert_eq!(py.line()["ready"], true);
        let list = clients(admin, &format!("clientid={id}")).await;
        let c = &list["data"][0];
        assert_eq!(c["connected"], true, "{list}");
        assert_eq!(c["protocol"], "stomp", "{list}");
        assert_eq!(c["protocol_version"], v, "{list}");
        assert_eq!(c["proto_name"], "STOMP", "{list}");
        assert_eq!(c["proto_ver"], Value::Null, "{list}");
        // An MQTT level filter does not list it.
        let list = clients(admin, &format!("clientid={id}&proto_ver=4")).await;
        assert_eq!(list["meta"]["count"], 0, "{list}");
    }
    let list = clients(admin, "clientid=mqtt-one").await;
    let c = &list["data"][0];
    assert_eq!(
        (&c["protocol"], &c["protocol_version"], &c["proto_name"], &c["proto_ver"]),
        (&Value::from("mqtt"), &Value::from("3.1.1"), &Value::from("MQTT"), &Value::from(4)),
        "{list}"
    );
    disconnect(mqtt).await;
}
