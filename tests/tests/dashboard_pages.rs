//! The dashboard's list pages (issue 15) in headless Chromium against the
//! real binary and real MQTT clients: sessions, subscriptions, topics,
//! retained, banned, listeners and modules. Every value a page shows is
//! compared with the API's answer (the cells carry it in `data-value`),
//! and every write is followed to its effect on an MQTT client: a deleted
//! retained message is not sent to a new subscriber, a ban refuses the
//! CONNECT and lifting it lets the client in, a module switched off stops
//! its messages, a kicked session's client gets DISCONNECT 0x98. A viewer
//! sees every page and can change nothing.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::backend::try_login;
use portcullis_tests::dashboard::*;
use portcullis_tests::kit::*;
use serde_json::{json, Value};

type Row = BTreeMap<String, String>;

/// Topics with the characters a URL path treats specially.
const ODD_TOPIC: &str = "x/$y/z";
const QUERY_TOPIC: &str = "r/50% off?&a=b;c";

async fn browser(addr: SocketAddr, user: &str) -> Chromium {
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.log_in(&format!("http://{addr}/dashboard/"), user, SECRET).await;
    page
}

/// The rows of table `<id>-rows` as the page shows them: each cell's
/// `data-field` → `data-value`.
async fn page_rows(page: &mut Chromium, id: &str) -> Vec<Row> {
    let v = page
        .eval(&format!(
            "[...document.querySelectorAll('#{id}-rows > tr')].map((tr) => Object.fromEntries(\
             [...tr.children].filter((td) => td.dataset.field !== undefined)\
             .map((td) => [td.dataset.field, td.dataset.value])))"
        ))
        .await;
    serde_json::from_value(v).expect("rows")
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The API's rows, as strings, for the fields the page shows.
fn api_rows(rows: &Value, fields: &[&str]) -> Vec<Row> {
    rows.as_array()
        .expect("an array")
        .iter()
        .map(|r| fields.iter().map(|f| ((*f).to_string(), text(&r[*f]))).collect())
        .collect()
}

/// Waits (10 s) until the page's table `id` shows what `GET path` answers
/// (`data` of a page, `builtin` of the modules, or the array itself) —
/// the page refreshes itself —
/// and returns the rows. Panics with both when they never agree.
async fn rows_match(page: &mut Chromium, addr: SocketAddr, id: &str, path: &str, fields: &[&str]) -> Vec<Row> {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let answer = api_get(addr, path).await;
        let want = api_rows(answer.get("data").or(answer.get("builtin")).unwrap_or(&answer), fields);
        let have: Vec<Row> = page_rows(page, id)
            .await
            .into_iter()
            .map(|r| r.into_iter().filter(|(k, _)| fields.contains(&k.as_str())).collect())
            .collect();
        if have == want {
            return have;
        }
        if tokio::time::Instant::now() >= end {
            panic!("page table {id} never showed {path}:\npage: {have:?}\napi:  {want:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A JS expression for the first `selector` element whose `data-<attr>`
/// is `value` (compared as a string, so any characters work).
fn find(selector: &str, attr: &str, value: &str) -> String {
    format!("[...document.querySelectorAll('{selector}')].find((e) => e.dataset.{attr} === {})", json!(value))
}

/// Presses a write button twice: the first press arms it, the second acts.
async fn arm_and_press(page: &mut Chromium, button: &str) {
    page.wait_for(&format!("{button} && !{button}.disabled")).await;
    page.eval(&format!("{button}.click(); true")).await;
    page.wait_for(&format!("{button} && {button}.dataset.armed === 'yes'")).await;
    page.eval(&format!("{button}.click(); true")).await;
}

/// A screenshot, `target/dashboard-screenshots/<name>.png`, as the kit's
/// `Chromium::screenshot` writes it, but with this file's
/// `CARGO_MANIFEST_DIR`: a kit built in another checkout (a shared target
/// directory) would write into that checkout.
async fn shot(page: &mut Chromium, name: &str) {
    use base64::Engine;
    let r = page.cmd("Page.captureScreenshot", json!({"format": "png"})).await;
    let png = base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().expect("data")).expect("base64");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

/// Fills an input (or select) of the page.
async fn fill(page: &mut Chromium, id: &str, value: &str) {
    page.eval(&format!("document.getElementById({}).value = {}; true", json!(id), json!(value))).await;
}

async fn apply(page: &mut Chromium, form: &str) {
    page.eval(&format!("document.querySelector('#{form}-filters button[type=submit]').click(); true")).await;
}

fn persistent() -> Properties {
    Properties { session_expiry_interval: Some(600), ..Properties::default() }
}

/// A new subscriber to `filter` gets no retained message within 700 ms.
async fn no_retained(addr: SocketAddr, id: &str, filter: &str) {
    let (mut c, _) = open_v5(addr, id, true, Properties::default()).await;
    subscribe(&mut c, 1, &[(filter, QoS::AtMostOnce)]).await;
    expect_silence(&mut c, Duration::from_millis(700), &format!("retained on {filter}")).await;
}

/// A new subscriber to `topic` gets its retained message.
async fn retained_payload(addr: SocketAddr, id: &str, topic: &str) -> Vec<u8> {
    let (mut c, _) = open_v5(addr, id, true, Properties::default()).await;
    subscribe(&mut c, 1, &[(topic, QoS::AtMostOnce)]).await;
    let p = next_publish(&mut c).await;
    assert!(p.retain, "{p:?}");
    p.payload.to_vec()
}

#[tokio::test]
async fn retained_page_lists_views_and_deletes_with_odd_topics() {
    let (b, addr, _d) = setup("");
    let (mut publisher, _) = open_v5(b.addr, "retainer", true, Properties::default()).await;
    let markup = "<img src=x onerror=\"document.title='owned'\"> & text";
    for (t, payload) in [(ODD_TOPIC, markup), (QUERY_TOPIC, "percent"), ("r/plain", "plain")] {
        pub_simple(&mut publisher, t, QoS::AtLeastOnce, 1, payload.as_bytes(), true).await;
    }
    let mut page = browser(addr, "admin").await;
    page.open_page("retained").await;
    let fields = ["topic", "qos", "payload_size", "payload_preview", "from_clientid", "expiry_interval"];
    let rows = rows_match(&mut page, addr, "retained", "/api/v5/mqtt/retainer/messages", &fields).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Live: a message retained after the page opened shows up by itself.
    pub_simple(&mut publisher, "x/$y/keep", QoS::AtMostOnce, 0, b"kept", true).await;
    let rows = rows_match(&mut page, addr, "retained", "/api/v5/mqtt/retainer/messages", &fields).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    // The preview is text: the markup's first 40 characters.
    let cell = format!(
        "{}.querySelector('[data-field=payload_preview]').textContent",
        find("#retained-rows > tr", "topic", ODD_TOPIC)
    );
    page.wait_for(&cell).await;
    let want: String = markup.chars().take(40).chain(std::iter::once('…')).collect();
    assert_eq!(page.eval(&cell).await, json!(want));
    assert_eq!(page.eval("document.querySelectorAll('#retained-rows img').length").await, json!(0));

    // Viewing the odd topics goes through the encoded path; the payload is
    // text, never markup.
    for (t, payload) in [(ODD_TOPIC, markup), (QUERY_TOPIC, "percent")] {
        let show = find("button.show", "topic", t);
        page.eval(&format!("{show}.click(); true")).await;
        page.wait_for(&format!("document.getElementById('retained-view').dataset.topic === {}", json!(t))).await;
        page.wait_for("document.getElementById('retained-payload')").await;
        let shown = page.eval("document.getElementById('retained-payload').textContent").await;
        assert_eq!(shown, json!(payload));
        let size = page.eval("document.querySelector('#retained-view [data-size]').dataset.size").await;
        assert_eq!(size, json!(payload.len().to_string()));
    }
    assert_eq!(page.eval("document.querySelectorAll('#retained-view img').length").await, json!(0));
    assert_ne!(page.eval("document.title").await, json!("owned"));

    // A filter with `$` and `+` lists what the API lists for it.
    fill(&mut page, "retained-filter", "x/$y/+").await;
    apply(&mut page, "retained").await;
    let path = format!("/api/v5/mqtt/retainer/messages?topic={}", urlencode("x/$y/+"));
    let rows = rows_match(&mut page, addr, "retained", &path, &fields).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    shot(&mut page, "retained").await;
    fill(&mut page, "retained-filter", "").await;
    apply(&mut page, "retained").await;
    rows_match(&mut page, addr, "retained", "/api/v5/mqtt/retainer/messages", &fields).await;

    // Delete one: a new subscriber gets nothing on it; the others stay.
    for t in [ODD_TOPIC, QUERY_TOPIC] {
        arm_and_press(&mut page, &find("button.kick", "topic", t)).await;
        page.wait_for(&format!("document.getElementById('retained-status').dataset.done === {}", json!(t))).await;
        let (st, _, _) = call_admin(addr, &format!("/api/v5/mqtt/retainer/message/{}", urlencode(t))).await;
        assert_eq!(st, 404, "{t} still retained");
    }
    no_retained(b.addr, "after-delete", ODD_TOPIC).await;
    no_retained(b.addr, "after-delete-2", QUERY_TOPIC).await;
    assert_eq!(retained_payload(b.addr, "still-there", "x/$y/keep").await, b"kept");
    let rows = rows_match(&mut page, addr, "retained", "/api/v5/mqtt/retainer/messages", &fields).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    shot(&mut page, "retained-after-delete").await;

    // Delete all.
    arm_and_press(&mut page, "document.getElementById('retained-delete-all')").await;
    page.wait_for("document.getElementById('retained-status').dataset.done === 'all'").await;
    page.wait_for("document.querySelectorAll('#retained-rows > tr').length === 0").await;
    assert_eq!(api_get(addr, "/api/v5/mqtt/retainer/messages").await["meta"]["count"], json!(0));
    no_retained(b.addr, "after-delete-all", "#").await;
}

/// `GET path` with the admin key: the status, the body.
async fn call_admin(addr: SocketAddr, path: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let res =
        http().get(format!("http://{addr}{path}")).basic_auth("admin", Some(SECRET)).send().await.expect("request");
    let st = res.status().as_u16();
    let h = res.headers().clone();
    (st, h, res.json().await.unwrap_or(Value::Null))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// [`setup`], with clients from loopback admitted with any username (an
/// `ip` provider after the anonymous one).
fn setup_loopback_users() -> (portcullis_tests::Broker, SocketAddr, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\n")).expect("bootstrap");
    let cfg = format!(
        "[auth]\nchain = [\"anon\", \"lo\"]\n[auth.anonymous.anon]\n[auth.ip.lo]\nallow = [\"127.0.0.0/8\"]\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\n",
        tp(&dir.path().join("data")),
        tp(&boot),
    );
    let broker = portcullis_tests::Broker::start(&cfg);
    let addr = broker.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", broker.log()));
    (broker, addr, dir)
}

/// The CONNACK code of a CONNECT with this username.
async fn connack(addr: SocketAddr, version: ProtocolVersion, id: &str, user: &str) -> u8 {
    try_login(addr, version, id, Some(user), None).await.1.expect("a CONNACK")
}

#[tokio::test]
async fn banned_page_bans_a_client_id_and_a_username_and_lifting_lets_them_in() {
    let (b, addr, _d) = setup_loopback_users();
    let device = "dev/$+#%? 7";
    let v5 = ProtocolVersion::V5;
    assert_eq!(connack(b.addr, v5, device, "any").await, 0, "allowed before the ban");
    assert_eq!(connack(b.addr, v5, "banme-client", "banme").await, 0, "allowed before the ban");
    let mut page = browser(addr, "admin").await;
    page.open_page("banned").await;

    // A client id, from any address and with any username.
    fill(&mut page, "ban-as", "clientid").await;
    fill(&mut page, "ban-who", device).await;
    fill(&mut page, "ban-reason", "test ban").await;
    page.eval("document.getElementById('ban-add').click(); true").await;
    page.wait_for(&format!("document.getElementById('banned-status').dataset.done === {}", json!(device))).await;
    // Refused: 0x8A Banned (5.0), 5 Not authorized (3.1.1); other ids get in.
    assert_eq!(connack(b.addr, v5, device, "any").await, 0x8A);
    assert_eq!(connack(b.addr, v5, device, "someone-else").await, 0x8A);
    assert_eq!(connack(b.addr, ProtocolVersion::V311, device, "any").await, 5);
    assert_eq!(connack(b.addr, v5, "dev/$+#%? 8", "any").await, 0);

    // A username from an address; another username from it still gets in.
    fill(&mut page, "ban-as", "peerhost_username").await;
    fill(&mut page, "ban-who", "banme@127.0.0.1").await;
    page.eval("document.getElementById('ban-add').click(); true").await;
    page.wait_for("document.getElementById('banned-status').dataset.done === 'banme@127.0.0.1'").await;
    assert_eq!(connack(b.addr, v5, "banme-client", "banme").await, 0x8A);
    assert_eq!(connack(b.addr, ProtocolVersion::V311, "banme-client", "banme").await, 5);
    assert_eq!(connack(b.addr, v5, "other-client", "someone-else").await, 0);

    // An address, until a time of the form.
    fill(&mut page, "ban-as", "peerhost").await;
    fill(&mut page, "ban-who", "192.0.2.7").await;
    page.eval(
        "document.getElementById('ban-until').value = \
         new Date(Date.now() + 86400e3 - new Date().getTimezoneOffset() * 60e3).toISOString().slice(0, 16); \
         document.getElementById('ban-add').click(); true",
    )
    .await;
    page.wait_for("document.getElementById('banned-status').dataset.done === '192.0.2.7'").await;
    let rows = rows_match(&mut page, addr, "banned", "/api/v5/banned", &["as", "who", "until"]).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    shot(&mut page, "banned").await;

    // Lifted from the page (the client id through an encoded path): both
    // clients get in again.
    arm_and_press(&mut page, &find("button.kick", "who", device)).await;
    page.wait_for(&format!(
        "document.getElementById('banned-status').textContent === {}",
        json!(format!("Lifted the ban on {device}."))
    ))
    .await;
    assert_eq!(connack(b.addr, v5, device, "any").await, 0, "let in after the lift");
    arm_and_press(&mut page, &find("button.kick", "who", "banme@127.0.0.1")).await;
    page.wait_for("document.getElementById('banned-status').textContent.includes('banme@127.0.0.1')").await;
    let rows = rows_match(&mut page, addr, "banned", "/api/v5/banned", &["as", "who", "until"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(connack(b.addr, v5, "banme-client", "banme").await, 0, "let in after the lift");
}

#[tokio::test]
async fn modules_page_switches_presence_off_and_on() {
    let (b, addr, _d) = setup("");
    let (mut watch, _) = open_v3(b.addr, "presence-watch", true).await;
    subscribe(&mut watch, 1, &[("$SYS/brokers/+/clients/+/connected", QoS::AtMostOnce)]).await;
    let (_c1, _) = open_v3(b.addr, "before-off", true).await;
    let p = next_publish(&mut watch).await;
    assert!(p.topic.ends_with("/clients/before-off/connected"), "{p:?}");

    let mut page = browser(addr, "admin").await;
    page.open_page("modules").await;
    let fields = ["name", "enable", "source"];
    let rows = rows_match(&mut page, addr, "modules", "/api/v5/modules", &fields).await;
    assert!(rows.iter().any(|r| r["name"] == "presence" && r["enable"] == "true"), "{rows:?}");
    let positions = page_rows(&mut page, "modules").await;
    let running = api_get(addr, "/api/v5/modules").await["modules"].clone();
    for r in &positions {
        let want = running
            .as_array()
            .expect("modules")
            .iter()
            .find(|m| m["name"] == r["name"].as_str())
            .map_or(String::new(), |m| text(&m["position"]));
        assert_eq!(r["position"], want, "{}", r["name"]);
    }
    shot(&mut page, "modules").await;

    // Off from the page: the API says so, and no presence message comes.
    let switch = find("button.switch", "name", "presence");
    page.eval(&format!("{switch}.click(); true")).await;
    page.wait_for("document.getElementById('modules-status').dataset.done === 'presence'").await;
    let m = api_get(addr, "/api/v5/modules").await;
    let presence = m["builtin"].as_array().expect("builtin").iter().find(|m| m["name"] == "presence").cloned();
    assert_eq!(presence, Some(json!({"name": "presence", "enable": false, "source": "api"})));
    rows_match(&mut page, addr, "modules", "/api/v5/modules", &fields).await;
    page.wait_for(&format!("{switch}.textContent === 'Enable'")).await;
    shot(&mut page, "modules-presence-off").await;
    let (_c2, _) = open_v3(b.addr, "while-off", true).await;
    expect_silence(&mut watch, Duration::from_millis(700), "presence is off").await;

    // On again.
    page.eval(&format!("{switch}.click(); true")).await;
    page.wait_for(&format!("{switch}.textContent === 'Disable'")).await;
    let (_c3, _) = open_v3(b.addr, "after-on", true).await;
    let p = next_publish(&mut watch).await;
    assert!(p.topic.ends_with("/clients/after-on/connected"), "{p:?}");
}

#[tokio::test]
async fn sessions_page_shows_sessions_and_their_subscriptions_and_kicks_and_discards() {
    let (b, addr, _d) = setup("");
    // A connected persistent session with odd filters.
    let (mut live, _) = open_v5(b.addr, "sess-live", false, persistent()).await;
    subscribe(
        &mut live,
        1,
        &[("a/+/b/#", QoS::AtLeastOnce), (ODD_TOPIC, QoS::ExactlyOnce), ("x/$y/+", QoS::AtMostOnce)],
    )
    .await;
    // A disconnected persistent one with a queued message.
    let (mut away, _) = open_v5(b.addr, "sess-away", false, persistent()).await;
    subscribe(&mut away, 1, &[("q/1", QoS::AtLeastOnce)]).await;
    disconnect(away).await;
    let (mut publisher, _) = open_v5(b.addr, "sess-pub", true, Properties::default()).await;
    pub_simple(&mut publisher, "q/1", QoS::AtLeastOnce, 1, b"queued", false).await;

    let mut page = browser(addr, "admin").await;
    page.open_page("sessions").await;
    let fields =
        ["clientid", "username", "connected", "expiry_interval", "subscriptions_cnt", "mqueue_len", "inflight_cnt"];
    let rows = rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100", &fields).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    // Live: a client that connects now shows up by itself.
    let (late, _) = open_v5(b.addr, "sess-late", true, Properties::default()).await;
    let rows = rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100", &fields).await;
    assert!(rows.iter().any(|r| r["clientid"] == "sess-late"), "{rows:?}");
    disconnect(late).await;
    let rows = rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100", &fields).await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let away_row = rows.iter().find(|r| r["clientid"] == "sess-away").expect("sess-away");
    assert_eq!((away_row["connected"].as_str(), away_row["mqueue_len"].as_str()), ("false", "1"));

    // Filters: disconnected ones only.
    fill(&mut page, "sessions-state", "disconnected").await;
    apply(&mut page, "sessions").await;
    let rows =
        rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100&conn_state=disconnected", &fields).await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    fill(&mut page, "sessions-state", "").await;
    apply(&mut page, "sessions").await;
    rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100", &fields).await;

    // One session's subscriptions.
    page.eval(&format!("{}.click(); true", find("button.show", "clientid", "sess-live"))).await;
    page.wait_for("document.getElementById('sessions-detail').dataset.clientid === 'sess-live'").await;
    let subs = rows_match(
        &mut page,
        addr,
        "sessions-subs",
        "/api/v5/clients/sess-live/subscriptions",
        &["topic", "qos", "nl", "rap", "rh"],
    )
    .await;
    assert_eq!(subs.len(), 3, "{subs:?}");
    shot(&mut page, "sessions").await;

    // Kick the connected persistent session: DISCONNECT 0x98, session gone.
    arm_and_press(&mut page, &find("button.kick", "clientid", "sess-live")).await;
    match live.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98, "Administrative action"),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    page.wait_for("document.getElementById('sessions-status').dataset.done === 'sess-live'").await;
    assert_eq!(call_admin(addr, "/api/v5/clients/sess-live").await.0, 404);
    // Discard the disconnected one: its queued message is gone with it.
    arm_and_press(&mut page, &find("button.kick", "clientid", "sess-away")).await;
    page.wait_for("document.getElementById('sessions-status').dataset.done === 'sess-away'").await;
    assert_eq!(call_admin(addr, "/api/v5/clients/sess-away").await.0, 404);
    let (_, ack) = open_v5(b.addr, "sess-away", false, persistent()).await;
    assert!(!ack.session_present, "the discarded session came back");
    rows_match(&mut page, addr, "sessions", "/api/v5/clients?limit=100", &fields).await;
}

#[tokio::test]
async fn subscriptions_topics_and_listeners_pages_show_what_the_api_answers() {
    let (b, addr, _d) = setup("");
    let (mut c1, _) = open_v5(b.addr, "subs-one", true, Properties::default()).await;
    subscribe(
        &mut c1,
        1,
        &[("a/+/b/#", QoS::AtLeastOnce), (ODD_TOPIC, QoS::ExactlyOnce), ("$share/g1/s/+", QoS::AtMostOnce)],
    )
    .await;
    let (mut c2, _) = open_v5(b.addr, "subs-two", true, Properties::default()).await;
    subscribe(
        &mut c2,
        1,
        &[("a/+/b/#", QoS::ExactlyOnce), ("x/$y/+", QoS::AtMostOnce), ("$share/g2/s/+", QoS::AtLeastOnce)],
    )
    .await;

    let mut page = browser(addr, "admin").await;
    page.open_page("subscriptions").await;
    let fields = ["clientid", "topic", "qos", "nl", "rap", "rh"];
    let rows = rows_match(&mut page, addr, "subs", "/api/v5/subscriptions?limit=100", &fields).await;
    assert_eq!(rows.len(), 6, "{rows:?}");
    shot(&mut page, "subscriptions").await;
    page.viewport(390, 844, true).await;
    shot(&mut page, "subscriptions-phone").await;
    page.viewport(1280, 800, false).await;

    // Each filter the API has, one at a time.
    for (input, value, query) in [
        ("subs-qos", "2", "qos=2"),
        ("subs-clientid", "subs-two", "clientid=subs-two"),
        ("subs-topic", "a/+/b/#", "topic=a%2F%2B%2Fb%2F%23"),
        ("subs-group", "g1", "share_group=g1"),
        ("subs-match", "x/$y/z", "match_topic=x%2F%24y%2Fz"),
    ] {
        fill(&mut page, input, value).await;
        apply(&mut page, "subs").await;
        let path = format!("/api/v5/subscriptions?limit=100&{query}");
        let rows = rows_match(&mut page, addr, "subs", &path, &fields).await;
        assert!(!rows.is_empty() && rows.len() < 6, "{query}: {rows:?}");
        fill(&mut page, input, "").await;
    }

    // Topics: all of them, then one by its (encoded) filter.
    page.open_page("topics").await;
    let fields = ["topic", "subscriptions", "node"];
    let rows = rows_match(&mut page, addr, "topics", "/api/v5/topics?limit=100", &fields).await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    shot(&mut page, "topics").await;
    for t in ["a/+/b/#", ODD_TOPIC, "x/$y/+"] {
        fill(&mut page, "topics-filter", t).await;
        apply(&mut page, "topics").await;
        let path = format!("/api/v5/topics/{}", urlencode(t));
        let rows = rows_match(&mut page, addr, "topics", &path, &fields).await;
        assert_eq!(rows.len(), 1, "{t}: {rows:?}");
        assert_eq!(rows[0]["topic"], t);
    }
    fill(&mut page, "topics-filter", "no/such/+").await;
    apply(&mut page, "topics").await;
    page.wait_for("document.getElementById('topics-status').dataset.count === '0'").await;

    // Listeners.
    page.open_page("listeners").await;
    let fields = [
        "id",
        "type",
        "bind",
        "running",
        "current_connections",
        "refused",
        "handshake_failures",
        "auth_chain",
        "acl_chain",
    ];
    let rows = rows_match(&mut page, addr, "listeners", "/api/v5/listeners", &fields).await;
    assert!(!rows.is_empty());
    assert_eq!(rows[0]["current_connections"], "2", "{rows:?}");
    shot(&mut page, "listeners").await;
}

#[tokio::test]
async fn a_viewer_sees_every_page_and_changes_nothing() {
    let (b, addr, _d) = setup("");
    let (mut live, _) = open_v5(b.addr, "viewer-sees", false, persistent()).await;
    subscribe(&mut live, 1, &[(ODD_TOPIC, QoS::AtLeastOnce)]).await;
    let (mut publisher, _) = open_v5(b.addr, "viewer-pub", true, Properties::default()).await;
    pub_simple(&mut publisher, ODD_TOPIC, QoS::AtLeastOnce, 2, b"retained", true).await;
    let ban = http()
        .post(format!("http://{addr}/api/v5/banned"))
        .basic_auth("admin", Some(SECRET))
        .json(&json!({"as": "peerhost", "who": "192.0.2.9"}))
        .send()
        .await
        .expect("ban");
    assert!(ban.status().is_success());

    let mut page = browser(addr, "view").await;
    let pages: [(&str, &str, &str, &[&str]); 7] = [
        ("sessions", "sessions", "/api/v5/clients?limit=100", &["clientid", "connected", "subscriptions_cnt"]),
        ("subscriptions", "subs", "/api/v5/subscriptions?limit=100", &["clientid", "topic", "qos"]),
        ("topics", "topics", "/api/v5/topics?limit=100", &["topic", "subscriptions"]),
        ("retained", "retained", "/api/v5/mqtt/retainer/messages", &["topic", "qos", "payload_size"]),
        ("banned", "banned", "/api/v5/banned", &["as", "who", "until"]),
        ("listeners", "listeners", "/api/v5/listeners", &["id", "bind", "current_connections"]),
        ("modules", "modules", "/api/v5/modules", &["name", "enable", "source"]),
    ];
    for (name, table, path, fields) in pages {
        page.open_page(name).await;
        let rows = rows_match(&mut page, addr, table, path, fields).await;
        assert!(!rows.is_empty(), "{name} shows nothing");
        // Every write control is there and disabled.
        let (total, enabled) = (
            page.eval("document.querySelectorAll('#page button.kick, #page button.switch, #ban-add').length").await,
            page.eval(
                "[...document.querySelectorAll('#page button.kick, #page button.switch, #page form#ban-form input, \
                 #ban-add')].filter((b) => !b.disabled).length",
            )
            .await,
        );
        if ["sessions", "retained", "banned", "modules"].contains(&name) {
            assert_ne!(total, json!(0), "{name}: no write buttons to check");
        }
        assert_eq!(enabled, json!(0), "{name}: a viewer's write control is enabled");
        shot(&mut page, &format!("viewer-{name}")).await;
    }

    // The API refuses the viewer's session every write the pages make.
    let enc = urlencode(ODD_TOPIC);
    for (method, path, body) in [
        ("DELETE", format!("../api/v5/mqtt/retainer/message/{enc}"), "null"),
        ("DELETE", "../api/v5/mqtt/retainer/messages".to_string(), "null"),
        ("DELETE", "../api/v5/clients/viewer-sees".to_string(), "null"),
        ("DELETE", "../api/v5/banned/peerhost/192.0.2.9".to_string(), "null"),
        ("POST", "../api/v5/banned".to_string(), r#"{"as":"peerhost","who":"192.0.2.10"}"#),
        ("PUT", "../api/v5/modules/presence".to_string(), r#"{"enable":false}"#),
    ] {
        let status = page
            .eval(&format!(
                "fetch('session').then((r) => r.json()).then((s) => fetch({}, {{method: {}, \
                 headers: {{'X-Portcullis-Csrf': s.csrf, 'Content-Type': 'application/json'}}, \
                 body: {body} === null ? undefined : JSON.stringify({body})}})).then((r) => r.status)",
                json!(path),
                json!(method),
            ))
            .await;
        assert_eq!(status, json!(403), "{method} {path}");
    }
    // Nothing changed.
    assert_eq!(retained_payload(b.addr, "viewer-check", ODD_TOPIC).await, b"retained");
    assert_eq!(api_get(addr, "/api/v5/banned").await["meta"]["count"], json!(1));
    assert_eq!(api_get(addr, "/api/v5/clients/viewer-sees").await["connected"], json!(true));
    let m = api_get(addr, "/api/v5/modules").await;
    assert!(m["builtin"].as_array().expect("builtin").iter().any(|m| m["name"] == "presence" && m["enable"] == true));
}

#[tokio::test]
async fn behind_a_proxy_under_a_sub_path_odd_topics_and_client_ids_work() {
    let (b, addr, _d) = setup("dashboard_base_path = \"/portcullis/\"");
    let odd_client = "c/$+#%?&=x y";
    let (mut client, _) = open_v5(b.addr, odd_client, false, persistent()).await;
    // Filters no publish of this test matches: the next packet is the kick.
    subscribe(&mut client, 1, &[("a/+/b/#", QoS::AtLeastOnce), ("x/$y/+/w", QoS::AtMostOnce)]).await;
    let (mut publisher, _) = open_v5(b.addr, "proxied-pub", true, Properties::default()).await;
    for t in [ODD_TOPIC, QUERY_TOPIC] {
        pub_simple(&mut publisher, t, QoS::AtLeastOnce, 1, t.as_bytes(), true).await;
    }
    let proxy = proxy(addr).await;
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.log_in(&format!("http://{}/portcullis/dashboard/", proxy.addr), "admin", SECRET).await;

    // Topics: one filter through the encoded path, behind the proxy.
    page.open_page("topics").await;
    fill(&mut page, "topics-filter", "a/+/b/#").await;
    apply(&mut page, "topics").await;
    let rows =
        rows_match(&mut page, addr, "topics", "/api/v5/topics/a%2F%2B%2Fb%2F%23", &["topic", "subscriptions"]).await;
    assert_eq!(rows.len(), 1, "{rows:?}");

    // Retained: view and delete the odd topics.
    page.open_page("retained").await;
    for t in [ODD_TOPIC, QUERY_TOPIC] {
        page.wait_for(&find("button.show", "topic", t)).await;
        page.eval(&format!("{}.click(); true", find("button.show", "topic", t))).await;
        page.wait_for(&format!(
            "document.getElementById('retained-payload') && \
             document.getElementById('retained-payload').textContent === {}",
            json!(t)
        ))
        .await;
        arm_and_press(&mut page, &find("button.kick", "topic", t)).await;
        page.wait_for(&format!("document.getElementById('retained-status').dataset.done === {}", json!(t))).await;
    }
    assert_eq!(api_get(addr, "/api/v5/mqtt/retainer/messages").await["meta"]["count"], json!(0));
    no_retained(b.addr, "proxied-after-delete", ODD_TOPIC).await;

    // Sessions: the odd client id's subscriptions, then kick it.
    page.open_page("sessions").await;
    page.wait_for(&find("button.show", "clientid", odd_client)).await;
    page.eval(&format!("{}.click(); true", find("button.show", "clientid", odd_client))).await;
    page.wait_for(&format!("document.getElementById('sessions-detail').dataset.clientid === {}", json!(odd_client)))
        .await;
    let path = format!("/api/v5/clients/{}/subscriptions", urlencode(odd_client));
    let subs = rows_match(&mut page, addr, "sessions-subs", &path, &["topic", "qos"]).await;
    assert_eq!(subs.len(), 2, "{subs:?}");
    shot(&mut page, "proxy-sessions-odd-client").await;
    arm_and_press(&mut page, &find("button.kick", "clientid", odd_client)).await;
    match client.recv_timeout(Duration::from_secs(10)).await {
        Ok(Some(Packet::Disconnect(d))) => assert_eq!(d.reason, 0x98, "Administrative action"),
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    assert_eq!(call_admin(addr, &format!("/api/v5/clients/{}", urlencode(odd_client))).await.0, 404);
}
