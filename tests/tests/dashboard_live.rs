//! The dashboard's live parts through the real binary in headless
//! Chromium (issue 15): the WebSocket test client (the vendored MQTT.js in
//! the page) exchanging messages both ways with a native client; the
//! overview's charts, whose plotted rates are held against the counters
//! the API reports over the same interval (messages, and one auth
//! provider's allow / deny decisions); and every page of the navigation
//! behind a reverse proxy under a sub-path, with no script error and no
//! failed request.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_core::codec::{Packet, Properties, ProtocolVersion, QoS};
use portcullis_tests::dashboard::*;
use portcullis_tests::kit::*;
use portcullis_tests::{connect_v5, net, Broker, Raw};
use serde_json::json;

/// A broker with a TCP listener `tcp` and a WebSocket listener `ws`, the
/// given `[auth]` tables (and anything else in `extra`), and the admin
/// API with the keys of [`setup`] (`admin`, `view`, `pub`; [`SECRET`]).
struct Dash {
    broker: Broker,
    addrs: HashMap<String, SocketAddr>,
    admin: SocketAddr,
    _dir: tempfile::TempDir,
}

fn start(extra: &str, admin_extra: &str) -> Dash {
    let dir = tempfile::tempdir().expect("tempdir");
    let boot = dir.path().join("bootstrap");
    std::fs::write(&boot, format!("admin:{SECRET}:administrator\nview:{SECRET}:viewer\npub:{SECRET}:publisher\n"))
        .expect("bootstrap");
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n\n\
         {extra}\n\
         [admin]\nbind = \"127.0.0.1:0\"\nsocket = \"\"\ndata_dir = {}\nbootstrap_file = {}\n{admin_extra}\n",
        tp(&dir.path().join("data")),
        tp(&boot),
    );
    let (broker, addrs) = net::start(&cfg);
    let admin = broker.admin_addr().unwrap_or_else(|| panic!("no admin API:\n{}", broker.log()));
    Dash { broker, addrs, admin, _dir: dir }
}

const ANON: &str = "[auth]\nchain = [\"anon\"]\n[auth.anonymous.anon]\n";

/// Installed before any page script: records script errors, failed
/// loads, CSP violations, `console.error`, and API requests that failed
/// or answered >= 400, in `window.__problems`.
const WATCH: &str = r#"
(() => {
  const problems = [];
  window.__problems = problems;
  const note = (m) => { if (problems.length < 200) problems.push(String(m)); };
  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) note('load failed: ' + (t.src || t.href));
    else note('error: ' + e.message + ' at ' + e.filename + ':' + e.lineno);
  }, true);
  window.addEventListener('unhandledrejection', (e) => note('unhandled rejection: ' + (e.reason && e.reason.stack || e.reason)));
  document.addEventListener('securitypolicyviolation', (e) => note('CSP: ' + e.violatedDirective + ' ' + e.blockedURI + ' from ' + e.sourceFile + ':' + e.lineNumber + ':' + e.columnNumber));
  const error = console.error.bind(console);
  console.error = (...a) => { note('console.error: ' + a.join(' ')); error(...a); };
  const fetch = window.fetch.bind(window);
  window.__inflight = 0;
  window.__requests = [];
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input.url;
    window.__inflight += 1;
    if (window.__requests.length < 1000) window.__requests.push(new URL(url, location.href).pathname);
    try {
      const r = await fetch(input, init);
      if (r.status >= 400) note('HTTP ' + r.status + ' ' + ((init && init.method) || 'GET') + ' ' + url);
      return r;
    } catch (e) { note('request failed: ' + url + ': ' + e); throw e; }
    finally { window.__inflight -= 1; }
  };
})();
"#;

async fn browser() -> Chromium {
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.cmd("Page.enable", json!({})).await;
    page.cmd("Page.addScriptToEvaluateOnNewDocument", json!({"source": WATCH})).await;
    page
}

/// What the watcher saw since the last call (and forgets it).
async fn problems(page: &mut Chromium) -> Vec<String> {
    let v = page.eval("(window.__problems || []).splice(0)").await;
    serde_json::from_value(v).expect("strings")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `document.querySelector` of a log entry.
fn log_entry(dir: &str, topic: &str) -> String {
    format!("document.querySelector('#ws-log li[data-dir=\"{dir}\"][data-topic=\"{topic}\"]')")
}

async fn set_value(page: &mut Chromium, id: &str, value: &str) {
    let v = serde_json::to_string(value).expect("json");
    page.eval(&format!("document.getElementById('{id}').value = {v}; true")).await;
}

async fn click(page: &mut Chromium, id: &str) {
    page.eval(&format!("document.getElementById('{id}').click(); true")).await;
}

/// The page's client exchanges QoS 0 and 1 messages, with non-ASCII and
/// invalid UTF-8 payloads, both ways with a native MQTT 5 client on the
/// same broker; its log is bounded; MQTT 3.1.1 works too; leaving the
/// page disconnects.
#[tokio::test]
async fn the_websocket_client_exchanges_messages_with_a_native_client() {
    let d = start(ANON, "");
    let ws_port = d.addrs["ws"].port();
    let (mut native, _) = open_v5(d.addrs["tcp"], "native-peer", true, Properties::default()).await;
    subscribe(&mut native, 1, &[("ws/out/#", QoS::AtLeastOnce)]).await;

    let mut page = browser().await;
    page.log_in(&format!("http://{}/dashboard/", d.admin), "admin", SECRET).await;
    assert_eq!(problems(&mut page).await, ["HTTP 401 GET session"], "before the login, and nothing else");
    page.open_page("websocket").await;
    // The default URL: this page's host, the ws listener's port and path.
    let want_url = format!("ws://127.0.0.1:{ws_port}/mqtt");
    page.wait_for(&format!("document.getElementById('ws-url').value === {want_url:?}")).await;
    let listeners = api_get(d.admin, "/api/v5/listeners").await;
    let ws = listeners.as_array().expect("list").iter().find(|l| l["type"] == "ws").expect("ws listener").clone();
    assert_eq!(ws["websocket_path"], "/mqtt", "{listeners}");
    assert!(listeners
        .as_array()
        .expect("list")
        .iter()
        .any(|l| l["type"] == "tcp" && l.get("websocket_path").is_none()));

    set_value(&mut page, "ws-clientid", "dash-ws-5").await;
    click(&mut page, "ws-connect").await;
    page.wait_for("document.getElementById('ws-state').dataset.state === 'connected'").await;
    let c = api_get(d.admin, "/api/v5/clients/dash-ws-5").await;
    assert_eq!((c["connected"].clone(), c["proto_ver"].clone()), (json!(true), json!(5)), "{c}");

    set_value(&mut page, "ws-sub-filter", "ws/in/#").await;
    set_value(&mut page, "ws-sub-qos", "1").await;
    click(&mut page, "ws-subscribe").await;
    page.wait_for("document.querySelector('#ws-subs li[data-filter=\"ws/in/#\"][data-granted=\"1\"]')").await;

    // Native → page: QoS 0 and 1, UTF-8 beyond ASCII, bytes that are not
    // UTF-8, and markup that must stay text.
    let utf8 = "Grüße, 日本語, ✓ — ünïcødé".as_bytes();
    let not_utf8: &[u8] = &[0x66, 0x6f, 0xff, 0xfe, 0x80, 0x6f];
    let markup = b"<img src=x id=injected onerror=\"window.__pwned=1\">";
    pub_simple(&mut native, "ws/in/zero", QoS::AtMostOnce, 0, utf8, false).await;
    pub_simple(&mut native, "ws/in/one", QoS::AtLeastOnce, 11, utf8, false).await;
    pub_simple(&mut native, "ws/in/bytes", QoS::AtLeastOnce, 12, not_utf8, false).await;
    pub_simple(&mut native, "ws/in/markup", QoS::AtMostOnce, 0, markup, false).await;
    for (topic, qos, bytes) in
        [("ws/in/zero", 0, utf8), ("ws/in/one", 1, utf8), ("ws/in/bytes", 1, not_utf8), ("ws/in/markup", 0, markup)]
    {
        let e = log_entry("in", topic);
        page.wait_for(&e).await;
        let got = page.eval(&format!("[{e}.dataset.qos, {e}.dataset.hex, {e}.dataset.payload]")).await;
        assert_eq!(got[0], json!(qos.to_string()), "{topic}");
        assert_eq!(got[1], json!(hex(bytes)), "{topic}: the bytes received");
        assert_eq!(got[2], json!(String::from_utf8_lossy(bytes)), "{topic}: shown as text");
    }
    let shown = page.eval(&format!("{}.querySelector('.ws-payload').textContent", log_entry("in", "ws/in/one"))).await;
    assert_eq!(shown, json!("Grüße, 日本語, ✓ — ünïcødé"));
    assert_eq!(
        page.eval("[!!document.getElementById('injected'), !!window.__pwned]").await,
        json!([false, false]),
        "markup in a payload stays text"
    );

    // Page → native: QoS 0 and 1, non-ASCII.
    for (topic, qos, text) in [("ws/out/zero", "0", "vom Browser: größer ✓"), ("ws/out/one", "1", "ブラウザ ← QoS 1")]
    {
        set_value(&mut page, "ws-pub-topic", topic).await;
        set_value(&mut page, "ws-pub-payload", text).await;
        set_value(&mut page, "ws-pub-qos", qos).await;
        click(&mut page, "ws-publish").await;
        let p = next_publish(&mut native).await;
        ack_incoming(&mut native, &p).await;
        assert_eq!((p.topic.as_str(), &p.payload[..]), (topic, text.as_bytes()));
        assert_eq!(p.qos, if qos == "0" { QoS::AtMostOnce } else { QoS::AtLeastOnce }, "{topic}");
        page.wait_for(&log_entry("out", topic)).await;
    }
    page.screenshot("websocket").await;
    page.eval("document.getElementById('ws-h-log').scrollIntoView(); true").await;
    page.screenshot("websocket-log").await;
    page.eval("window.scrollTo(0, 0); true").await;
    page.viewport(390, 844, true).await;
    page.screenshot("websocket-phone").await;
    page.viewport(1280, 800, false).await;

    // The log keeps the newest 500.
    for i in 0..520u32 {
        pub_simple(&mut native, &format!("ws/in/flood/{i}"), QoS::AtMostOnce, 0, b"x", false).await;
    }
    sync(&mut native).await;
    page.wait_for(&log_entry("in", "ws/in/flood/519")).await;
    assert_eq!(page.eval("document.querySelectorAll('#ws-log li').length").await, json!(500));
    assert_eq!(page.eval("document.getElementById('ws-log-count').dataset.count").await, json!("500"));
    assert_eq!(
        page.eval("document.querySelector('#ws-log li').dataset.topic").await,
        json!("ws/in/flood/519"),
        "newest first"
    );

    // Disconnect; then MQTT 3.1.1, and leaving the page disconnects.
    click(&mut page, "ws-disconnect").await;
    page.wait_for("document.getElementById('ws-state').dataset.state === 'disconnected'").await;
    wait_gone(d.admin, "dash-ws-5").await;
    set_value(&mut page, "ws-clientid", "dash-ws-3").await;
    set_value(&mut page, "ws-version", "4").await;
    click(&mut page, "ws-connect").await;
    page.wait_for("document.getElementById('ws-state').dataset.state === 'connected'").await;
    assert_eq!(api_get(d.admin, "/api/v5/clients/dash-ws-3").await["proto_ver"], json!(4));
    set_value(&mut page, "ws-pub-topic", "ws/out/v3").await;
    set_value(&mut page, "ws-pub-payload", "drei ✓").await;
    set_value(&mut page, "ws-pub-qos", "1").await;
    click(&mut page, "ws-publish").await;
    let p = next_publish(&mut native).await;
    ack_incoming(&mut native, &p).await;
    assert_eq!((p.topic.as_str(), &p.payload[..]), ("ws/out/v3", "drei ✓".as_bytes()));
    page.open_page("overview").await;
    wait_gone(d.admin, "dash-ws-3").await;
    assert_eq!(problems(&mut page).await, Vec::<String>::new());
    drop(d.broker);
}

/// Waits (10 s) until the API no longer lists `id` as connected.
async fn wait_gone(admin: SocketAddr, id: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = api_get(admin, &format!("/api/v5/clients/{id}")).await;
        if c["connected"] != json!(true) {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "{id} still connected: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A series of the overview as the page exposes it: the last two samples
/// of its counter, their times, the plotted rate, and the page's sample
/// number then.
#[derive(Debug)]
struct Series {
    counter: f64,
    prev_counter: f64,
    t: f64,
    prev_t: f64,
    rate: f64,
    sample: u64,
}

async fn series(page: &mut Chromium, selector: &str) -> Series {
    let sel = serde_json::to_string(selector).expect("json");
    let v = page
        .eval(&format!(
            "(() => {{ const e = document.querySelector({sel}).dataset; \
             return [e.counter, e.prevCounter, e.t, e.prevT, e.rate, \
             document.getElementById('ov-auth').dataset.samples]; }})()"
        ))
        .await;
    let f = |i: usize| -> f64 {
        v[i].as_str().unwrap_or_else(|| panic!("{selector}: {v}")).parse().unwrap_or_else(|_| panic!("{v}"))
    };
    Series { counter: f(0), prev_counter: f(1), t: f(2), prev_t: f(3), rate: f(4), sample: f(5) as u64 }
}

async fn samples(page: &mut Chromium) -> u64 {
    let v = page.eval("Number(document.getElementById('ov-auth').dataset.samples || 0)").await;
    v.as_u64().expect("a number")
}

/// Waits until the overview has taken sample `n` (or a later one).
async fn wait_sample(page: &mut Chromium, n: u64) {
    page.wait_for(&format!("Number(document.getElementById('ov-auth').dataset.samples || 0) >= {n}")).await;
}

/// The plotted rate over the interval between the series' two samples
/// gives back the counter's delta.
fn assert_rate_is_the_delta(s: &Series, what: &str) {
    let delta = s.counter - s.prev_counter;
    let dt = s.t - s.prev_t;
    assert!(dt > 0.0, "{what}: {s:?}");
    assert!((s.rate * dt - delta).abs() <= 1e-9 * delta.abs().max(1.0), "{what}: rate × Δt ≠ Δcounter: {s:?}");
}

/// Runs `act` between two overview samples and returns the series of each
/// selector at the second one, with the API's counters (read by `api`)
/// before the first sample and after the second. Retries (3 times) when
/// a sample fell in the middle of `act`.
async fn between_samples<A, F, Fut>(
    page: &mut Chromium,
    selectors: &[&str],
    api: A,
    mut act: F,
) -> (Vec<Series>, Vec<u64>, Vec<u64>)
where
    A: Fn() -> Fut + Copy,
    Fut: std::future::Future<Output = Vec<u64>>,
    F: AsyncFnMut(),
{
    for attempt in 0..3 {
        let before = api().await;
        // The sample after next was requested after `before` was read.
        let s0 = samples(page).await;
        wait_sample(page, s0 + 2).await;
        let s1 = samples(page).await;
        act().await;
        if samples(page).await != s1 {
            eprintln!("attempt {attempt}: a sample fell during the action; again");
            continue;
        }
        wait_sample(page, s1 + 1).await;
        let after = api().await;
        let mut got = Vec::new();
        for sel in selectors {
            got.push(series(page, sel).await);
        }
        if got.iter().any(|s| s.sample != s1 + 1) {
            eprintln!("attempt {attempt}: another sample came before the read; again");
            continue;
        }
        return (got, before, after);
    }
    panic!("no two samples bracketed the action in 3 attempts");
}

/// The overview's charts plot the API's counter deltas: messages in and
/// out (QoS 0 and 1 from a real client to a real subscriber) and one auth
/// provider's allow and deny decisions (real CONNECTs), each checked as
/// rate × (t − prev t) = counter − prev counter, and that delta equal to
/// what the API reports between two reads bracketing the interval, and
/// to what the test did (nothing else runs on this broker).
#[tokio::test]
async fn the_overview_charts_plot_the_counter_deltas() {
    let d = start(
        "[auth]\nchain = [\"net\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [auth.ip.net]\nallow = [\"127.0.0.1/32\"]\ndeny = [\"127.0.0.2/32\"]\n\
         [sys]\ninterval = \"off\"\n",
        "",
    );
    let tcp = d.addrs["tcp"];
    let admin = d.admin;
    let (mut sub, _) = open_v5(tcp, "chart-sub", true, Properties::default()).await;
    subscribe(&mut sub, 1, &[("chart/#", QoS::AtLeastOnce)]).await;
    let (mut publisher, _) = open_v5(tcp, "chart-pub", true, Properties::default()).await;

    let mut page = browser().await;
    page.log_in(&format!("http://{admin}/dashboard/"), "admin", SECRET).await;
    page.open_page("overview").await;
    wait_sample(&mut page, 2).await;
    page.wait_for("document.querySelector('[data-series=\"auth:net:allow\"]').dataset.rate !== undefined").await;

    // Messages: 7 at QoS 0 and 5 at QoS 1, all delivered to `sub`.
    const QOS0: u64 = 7;
    const QOS1: u64 = 5;
    let metrics = move || async move {
        let m = api_get(admin, "/api/v5/metrics?aggregate=true").await;
        vec![m["messages.received"].as_u64().expect("received"), m["messages.sent"].as_u64().expect("sent")]
    };
    let (got, before, after) = between_samples(&mut page, &["#ov-received", "#ov-sent"], metrics, async || {
        for i in 0..QOS0 {
            pub_simple(&mut publisher, &format!("chart/zero/{i}"), QoS::AtMostOnce, 0, b"0", false).await;
        }
        for i in 0..QOS1 {
            let id = u16::try_from(i + 1).expect("small");
            pub_simple(&mut publisher, &format!("chart/one/{i}"), QoS::AtLeastOnce, id, b"1", false).await;
        }
        sync(&mut publisher).await;
    })
    .await;
    for (i, (s, what)) in got.iter().zip(["messages.received", "messages.sent"]).enumerate() {
        assert_rate_is_the_delta(s, what);
        let delta = s.counter - s.prev_counter;
        assert_eq!(delta, (after[i] - before[i]) as f64, "{what}: the chart's delta is the API's: {s:?}");
        assert_eq!(delta, (QOS0 + QOS1) as f64, "{what}: what was sent");
        assert!(s.prev_counter >= before[i] as f64 && s.counter <= after[i] as f64, "{what}: {s:?}");
    }
    let shown = page.eval("document.getElementById('ov-received').textContent").await;
    assert_eq!(shown, json!(format!("{:.1}", got[0].rate)));
    let delivered = drain_publishes(&mut sub, Duration::from_millis(300), Duration::from_secs(5)).await;
    assert_eq!(delivered.len() as u64, QOS0 + QOS1);

    // Auth: 3 CONNECTs the provider allows, 2 it denies.
    const ALLOWED: usize = 3;
    const DENIED: usize = 2;
    let status = move || async move {
        let s = api_get(admin, "/api/v5/authentication/net/status").await;
        vec![s["metrics"]["allow"].as_u64().expect("allow"), s["metrics"]["deny"].as_u64().expect("deny")]
    };
    let (got, before, after) = between_samples(
        &mut page,
        &["[data-series=\"auth:net:allow\"]", "[data-series=\"auth:net:deny\"]"],
        status,
        async || {
            for i in 0..ALLOWED {
                let (c, ack) = open_v5(tcp, &format!("allowed-{i}"), true, Properties::default()).await;
                assert_eq!(ack.code, 0);
                disconnect(c).await;
            }
            for i in 0..DENIED {
                let mut raw = Raw::connect_from(tcp, "127.0.0.2".parse().expect("ip")).await;
                raw.version = ProtocolVersion::V5;
                raw.send(&connect_v5(&format!("denied-{i}"), true, 30)).await;
                match raw.recv().await {
                    Some(Packet::ConnAck(a)) => assert_eq!(a.code, 0x87, "not authorized"),
                    other => panic!("expected CONNACK, got {other:?}"),
                }
            }
        },
    )
    .await;
    for (i, (s, what, want)) in [(&got[0], "allow", ALLOWED), (&got[1], "deny", DENIED)].into_iter().enumerate() {
        assert_rate_is_the_delta(s, what);
        let delta = s.counter - s.prev_counter;
        assert_eq!(delta, (after[i] - before[i]) as f64, "{what}: the chart's delta is the API's: {s:?}");
        assert_eq!(delta, want as f64, "{what}: the CONNECTs made");
    }
    let api = api_get(admin, "/api/v5/authentication/net/status").await;
    let card = "document.querySelector('.auth-card[data-provider=\"net\"]')";
    assert_eq!(page.eval(&format!("{card}.querySelector('.health').dataset.status")).await, api["status"]);
    page.wait_for(&format!("Number({card}.querySelector('.latency').dataset.value) >= 0")).await;
    page.wait_for(&format!("{card}.querySelector('.uplot canvas')")).await;
    page.screenshot("overview-auth").await;
    assert_eq!(problems(&mut page).await, ["HTTP 401 GET session"], "only the check before the login");
}

/// The navigation's pages, in its order (index.html).
const PAGES: [&str; 13] = [
    "overview",
    "clients",
    "sessions",
    "subscriptions",
    "topics",
    "retained",
    "auth",
    "explain",
    "users",
    "banned",
    "listeners",
    "modules",
    "websocket",
];

/// A topic and filters with the characters a URL treats specially.
const ODD_TOPIC: &str = "dash/$price/50%/a?b=c&d/ü x";
const ODD_FILTERS: [&str; 2] = ["dash/+/50%/#", "dash/$price/#"];

/// Every page of the navigation behind a reverse proxy under
/// `/portcullis/`: each renders its heading with no script error, CSP
/// violation or failed request, while the broker holds a retained message
/// and subscriptions whose topic and filters have `/ + # $ % ? &` and
/// non-ASCII in them; every request the pages make goes through the
/// proxy's prefix; and the WebSocket client's module loads through it.
#[tokio::test]
async fn every_page_works_behind_a_proxy_under_a_sub_path() {
    let d = start(ANON, "dashboard_base_path = \"/portcullis/\"");
    let tcp = d.addrs["tcp"];
    let (mut holder, _) = open_v5(tcp, "odd/client $ # + ?", false, Properties::default()).await;
    subscribe(&mut holder, 1, &[(ODD_FILTERS[0], QoS::AtLeastOnce), (ODD_FILTERS[1], QoS::AtMostOnce)]).await;
    let (mut publisher, _) = open_v5(tcp, "odd-publisher", true, Properties::default()).await;
    pub_simple(&mut publisher, ODD_TOPIC, QoS::AtLeastOnce, 1, "retained ✓".as_bytes(), true).await;
    let p = next_publish(&mut holder).await;
    ack_incoming(&mut holder, &p).await;
    assert_eq!(p.topic.as_str(), ODD_TOPIC);
    let retained = api_get(d.admin, "/api/v5/mqtt/retainer/messages").await;
    assert!(retained.to_string().contains("dash/$price/50%/a?b=c&d/ü x"), "{retained}");

    let proxy = proxy(d.admin).await;
    let mut page = browser().await;
    page.log_in(&format!("http://{}/portcullis/dashboard/", proxy.addr), "admin", SECRET).await;
    assert_eq!(problems(&mut page).await, ["HTTP 401 GET session"], "before the login, and nothing else");
    let nav = page.eval("[...document.querySelectorAll('#nav a')].map((a) => a.id.replace(/^nav-/, ''))").await;
    assert_eq!(nav, json!(PAGES), "the navigation lists every page");
    for name in PAGES {
        page.open_page(name).await;
        // Its first requests answered (a second look after a pause: a
        // page may start one after another).
        for _ in 0..2 {
            page.wait_for("window.__inflight === 0").await;
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        page.wait_for("window.__inflight === 0").await;
        let heading = page.eval("document.querySelector('#page h2').textContent").await;
        assert!(!heading.as_str().unwrap_or_default().is_empty(), "{name}: no heading");
        assert_eq!(
            page.eval(&format!("document.getElementById('nav-{name}').getAttribute('aria-current')")).await,
            json!("page")
        );
        page.screenshot(&format!("proxy-{name}")).await;
        assert_eq!(problems(&mut page).await, Vec::<String>::new(), "{name}");
    }
    // Every API request went through the proxy's prefix.
    let paths: Vec<String> = serde_json::from_value(page.eval("window.__requests").await).expect("paths");
    assert!(paths.iter().any(|p| p.starts_with("/portcullis/api/v5/")), "{paths:?}");
    for p in &paths {
        assert!(p.starts_with("/portcullis/"), "a request outside the prefix: {p}");
    }

    // The WebSocket client: its module comes through the proxy, the
    // MQTT connection goes to the listener, and it receives the retained
    // message with the odd topic.
    page.open_page("websocket").await;
    page.wait_for(&format!(
        "document.getElementById('ws-url').value === 'ws://127.0.0.1:{}/mqtt'",
        d.addrs["ws"].port()
    ))
    .await;
    set_value(&mut page, "ws-clientid", "proxied-ws").await;
    click(&mut page, "ws-connect").await;
    page.wait_for("document.getElementById('ws-state').dataset.state === 'connected'").await;
    let loaded = page
        .eval("performance.getEntriesByType('resource').map((e) => new URL(e.name).pathname).filter((p) => p.endsWith('mqtt.esm.js'))")
        .await;
    assert_eq!(loaded, json!(["/portcullis/dashboard/mqtt.esm.js"]));
    set_value(&mut page, "ws-sub-filter", ODD_FILTERS[0]).await;
    click(&mut page, "ws-subscribe").await;
    let topic = serde_json::to_string(ODD_TOPIC).expect("json");
    page.wait_for(&format!(
        "[...document.querySelectorAll('#ws-log li')].some((li) => li.dataset.topic === {topic} \
         && li.dataset.retain === 'true' && li.dataset.payload === 'retained ✓')"
    ))
    .await;
    page.screenshot("proxy-websocket-connected").await;
    assert_eq!(problems(&mut page).await, Vec::<String>::new());
}
