//! The STOMP demo page (issue 17) in headless Chromium against the real
//! binary: a `sockjs` listener with `demo = true` serves the page at
//! `/demo/`; the page (the vendored sockjs-client and stomp.js) connects
//! over each of the `websocket`, `xhr-streaming` and `xhr-polling`
//! transports, exchanges messages both ways with a native MQTT 5 client
//! (rumqttc) on the same broker — non-ASCII and markup-looking text, shown
//! as text, byte-exact to MQTT — and shows a refused passcode; the page
//! runs with no script error, CSP violation or failed request.
//! Screenshots: `target/dashboard-screenshots/stomp-demo-*.png`.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use portcullis_tests::dashboard::*;
use portcullis_tests::kit::*;
use portcullis_tests::{mqtt5_options, net, Broker};
use rumqttc::v5::mqttbytes::v5::{Packet, PublishProperties};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::{json, Value};

const USER: &str = "alice";
const PASS: &str = "s3cret";

/// A broker with an MQTT listener `tcp` (first, so `Broker::addr`) and a
/// SockJS listener `sockjs` serving the demo page; users from a password
/// file (`alice` / `s3cret`) for both.
struct Demo {
    broker: Broker,
    addrs: HashMap<String, SocketAddr>,
    _dir: tempfile::TempDir,
}

impl Demo {
    fn start() -> Demo {
        let dir = tempfile::tempdir().expect("tempdir");
        let passwd = dir.path().join("passwd");
        std::fs::write(&passwd, format!("{USER}:{PASS}\n")).expect("write passwd");
        let cfg = format!(
            "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
             [[listeners]]\nname = \"sockjs\"\ntype = \"sockjs\"\nbind = \"127.0.0.1:0\"\n\
             [listeners.sockjs]\ndemo = true\n\n\
             [auth]\nchain = [\"pw\"]\n[auth.password_file.pw]\npath = {}\nhash = {{ algo = \"plain\" }}\n",
            tp(&passwd)
        );
        let (broker, addrs) = net::start(&cfg);
        Demo { broker, addrs, _dir: dir }
    }

    fn url(&self) -> String {
        format!("http://{}/demo/", self.addrs["sockjs"])
    }

    async fn mqtt(&self, id: &str) -> Mqtt5 {
        let mut o = mqtt5_options(&self.broker, id);
        o.set_credentials(USER, PASS);
        let (c, ack) = Mqtt5::connect(o, 16).await;
        assert_eq!(ack.code, rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success);
        c
    }
}

/// Installed before any page script: records script errors, failed
/// loads, CSP violations, `console.error`, and requests (fetch, XHR,
/// WebSocket) that failed or answered >= 400, in `window.__problems`;
/// the path of every request in `window.__requests`.
const WATCH: &str = r#"
(() => {
  const problems = [];
  const requests = [];
  window.__problems = problems;
  window.__requests = requests;
  const note = (m) => { if (problems.length < 200) problems.push(String(m)); };
  const seen = (kind, url) => { if (requests.length < 5000) requests.push(kind + ' ' + new URL(url, location.href).pathname); };
  window.addEventListener('error', (e) => {
    const t = e.target;
    if (t && t !== window && (t.src || t.href)) note('load failed: ' + (t.src || t.href));
    else note('error: ' + e.message + ' at ' + e.filename + ':' + e.lineno);
  }, true);
  window.addEventListener('unhandledrejection', (e) => note('unhandled rejection: ' + (e.reason && e.reason.stack || e.reason)));
  document.addEventListener('securitypolicyviolation', (e) => note('CSP: ' + e.violatedDirective + ' ' + e.blockedURI + ' from ' + e.sourceFile + ':' + e.lineNumber));
  const error = console.error.bind(console);
  console.error = (...a) => { note('console.error: ' + a.join(' ')); error(...a); };
  const fetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === 'string' ? input : input.url;
    seen('fetch', url);
    try {
      const r = await fetch(input, init);
      if (r.status >= 400) note('HTTP ' + r.status + ' fetch ' + url);
      return r;
    } catch (e) { note('request failed: ' + url + ': ' + e); throw e; }
  };
  const open = XMLHttpRequest.prototype.open;
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.open = function (method, url, ...rest) {
    this.__what = method + ' ' + url;
    seen('xhr', url);
    return open.call(this, method, url, ...rest);
  };
  XMLHttpRequest.prototype.send = function (...a) {
    this.addEventListener('load', () => { if (this.status >= 400) note('HTTP ' + this.status + ' xhr ' + this.__what); });
    this.addEventListener('error', () => note('request failed: xhr ' + this.__what));
    return send.apply(this, a);
  };
  const WS = window.WebSocket;
  window.WebSocket = class extends WS {
    constructor(url, ...rest) {
      super(url, ...rest);
      seen('ws', url);
      this.addEventListener('error', () => note('websocket error: ' + url));
    }
  };
  const loaded = () => {
    for (const e of performance.getEntriesByType('resource')) {
      if (e.responseStatus >= 400) note('HTTP ' + e.responseStatus + ' ' + e.name);
    }
  };
  window.__loaded = loaded;
})();
"#;

async fn browser() -> Chromium {
    let mut page = Chromium::start().await;
    page.viewport(1280, 800, false).await;
    page.cmd("Page.enable", json!({})).await;
    page.cmd("Page.addScriptToEvaluateOnNewDocument", json!({"source": WATCH})).await;
    page
}

/// What the watcher saw since the last call (and forgets it), with the
/// page's resources that answered >= 400.
async fn problems(page: &mut Chromium) -> Vec<String> {
    page.eval("window.__loaded(); true").await;
    let v = page.eval("(window.__problems || []).splice(0)").await;
    serde_json::from_value(v).expect("strings")
}

async fn set_value(page: &mut Chromium, id: &str, value: &str) {
    let v = serde_json::to_string(value).expect("json");
    page.eval(&format!("document.getElementById('{id}').value = {v}; true")).await;
}

async fn click(page: &mut Chromium, id: &str) {
    page.eval(&format!("document.getElementById('{id}').click(); true")).await;
}

/// `data-<name>` of the page's `#demo` element.
async fn data(page: &mut Chromium, name: &str) -> Value {
    page.eval(&format!("document.getElementById('demo').dataset.{name}")).await
}

/// Opens the page and waits for it to have read `config.json`.
async fn open(page: &mut Chromium, demo: &Demo) {
    page.cmd("Page.navigate", json!({"url": demo.url()})).await;
    page.wait_for("document.getElementById('demo').dataset.config === 'loaded'").await;
    page.wait_for("!document.getElementById('connect').disabled").await;
}

async fn connect(page: &mut Chromium, transport: &str, pass: &str) {
    set_value(page, "login", USER).await;
    set_value(page, "passcode", pass).await;
    set_value(page, "transport", transport).await;
    click(page, "connect").await;
}

/// Text from an MQTT client: non-ASCII (2-, 3- and 4-byte UTF-8), markup
/// that would run script if rendered as HTML, an entity, two lines.
const TO_PAGE: &str = "<img src=x onerror=\"document.title='owned'\"> &amp; Grüße ✓ 日本 🦀\n<b>line 2</b>";
/// Text the page sends.
const FROM_PAGE: &str = "<script>document.title='owned'</script> naïve → ✓ 🦀\nzwei";

/// The whole round trip over one transport.
async fn exchange(transport: &str) {
    let demo = Demo::start();
    let mut mqtt = demo.mqtt(&format!("demo-peer-{transport}")).await;
    mqtt.client.subscribe("demo/to-mqtt/#", QoS::AtLeastOnce).await.expect("subscribe");
    loop {
        match mqtt.next(Duration::from_secs(5)).await {
            Some(Packet::SubAck(_)) => break,
            Some(_) => {}
            None => panic!("no SUBACK"),
        }
    }

    let mut page = browser().await;
    open(&mut page, &demo).await;
    assert_eq!(problems(&mut page).await, Vec::<String>::new(), "loading the page");
    connect(&mut page, transport, PASS).await;
    page.wait_for("document.getElementById('demo').dataset.state === 'connected'").await;
    assert_eq!(data(&mut page, "transport").await, transport, "sockjs-client's transport");
    assert_eq!(data(&mut page, "version").await, "1.2", "stomp.js asks for 1.2 first");
    let title = page.eval("document.title").await;

    // Subscribe to a filter; the receipt marks it active.
    set_value(&mut page, "sub-destination", "demo/to-page/+").await;
    click(&mut page, "subscribe").await;
    page.wait_for(
        "document.querySelector('#subscriptions li[data-destination=\"demo/to-page/+\"][data-active=\"true\"]')",
    )
    .await;

    // MQTT → page, with a content type.
    let props = PublishProperties { content_type: Some("text/plain; charset=utf-8".into()), ..Default::default() };
    mqtt.client
        .publish_with_properties("demo/to-page/one", QoS::AtLeastOnce, false, TO_PAGE.as_bytes().to_vec(), props)
        .await
        .expect("publish");
    page.wait_for("document.getElementById('demo').dataset.received === '1'").await;
    assert_eq!(data(&mut page, "lastBody").await, TO_PAGE);
    assert_eq!(data(&mut page, "lastDestination").await, "demo/to-page/one");
    let entry = "document.querySelector('#log li[data-dir=\"in\"]')";
    assert_eq!(page.eval(&format!("{entry}.dataset.destination")).await, "demo/to-page/one");
    assert_eq!(page.eval(&format!("{entry}.querySelector('.body').textContent")).await, TO_PAGE, "shown as text");
    assert_eq!(page.eval(&format!("{entry}.querySelector('.ctype').textContent")).await, "text/plain; charset=utf-8");
    assert_eq!(page.eval("document.querySelectorAll('#log img, #log b, #log script').length").await, 0, "no markup");
    assert_eq!(page.eval("document.title").await, title, "nothing ran");

    // Page → MQTT, byte-exact, with its content type.
    set_value(&mut page, "send-destination", "demo/to-mqtt/two").await;
    set_value(&mut page, "send-body", FROM_PAGE).await;
    set_value(&mut page, "send-content-type", "text/x-demo").await;
    click(&mut page, "send").await;
    let p = mqtt.next_publish(Duration::from_secs(10)).await.expect("the page's message at the MQTT client");
    assert_eq!(&p.topic[..], b"demo/to-mqtt/two");
    assert_eq!(&p.payload[..], FROM_PAGE.as_bytes(), "byte-exact");
    assert_eq!(p.properties.and_then(|pr| pr.content_type).as_deref(), Some("text/x-demo"));
    assert_eq!(page.eval("document.querySelectorAll('#log li[data-dir=\"out\"]').length").await, 1);
    assert_eq!(page.eval("document.title").await, title, "nothing ran");
    page.screenshot(&format!("stomp-demo-{transport}")).await;

    // The transport the requests went over is the one chosen.
    let requests: Vec<String> = serde_json::from_value(page.eval("window.__requests.slice()").await).expect("strings");
    let (kind, suffix) = match transport {
        "websocket" => ("ws /stomp/", "/websocket"),
        "xhr-streaming" => ("xhr /stomp/", "/xhr_streaming"),
        _ => ("xhr /stomp/", "/xhr"),
    };
    assert!(requests.iter().any(|r| r.starts_with(kind) && r.ends_with(suffix)), "{transport}: {requests:?}");
    for other in ["/websocket", "/xhr_streaming", "/xhr", "/eventsource", "/htmlfile", "/jsonp"] {
        if other != suffix {
            assert!(!requests.iter().any(|r| r.ends_with(other)), "{transport} used {other}: {requests:?}");
        }
    }

    // Unsubscribe: the next message from MQTT does not reach the page.
    page.eval("document.querySelector('#subscriptions li[data-destination=\"demo/to-page/+\"] button').click(); true")
        .await;
    page.wait_for("document.querySelectorAll('#subscriptions li').length === 0").await;
    // The page's own SEND after the UNSUBSCRIBE, through the MQTT client,
    // orders the check: once the MQTT client has it, the broker handled
    // the UNSUBSCRIBE.
    set_value(&mut page, "send-destination", "demo/to-mqtt/three").await;
    set_value(&mut page, "send-content-type", "").await;
    click(&mut page, "send").await;
    let p = mqtt.next_publish(Duration::from_secs(10)).await.expect("the page's second message");
    assert_eq!(&p.topic[..], b"demo/to-mqtt/three");
    mqtt.client.publish("demo/to-page/late", QoS::AtLeastOnce, false, b"late".to_vec()).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(data(&mut page, "received").await, "1", "nothing after UNSUBSCRIBE");

    click(&mut page, "disconnect").await;
    page.wait_for("document.getElementById('demo').dataset.state === 'disconnected'").await;
    assert_eq!(data(&mut page, "errors").await, "0");
    assert_eq!(problems(&mut page).await, Vec::<String>::new(), "{transport}");
    mqtt.disconnect().await;
}

#[tokio::test]
async fn websocket_exchanges_text_with_mqtt() {
    exchange("websocket").await;
}

#[tokio::test]
async fn xhr_streaming_exchanges_text_with_mqtt() {
    exchange("xhr-streaming").await;
}

#[tokio::test]
async fn xhr_polling_exchanges_text_with_mqtt() {
    exchange("xhr-polling").await;
}

/// A wrong passcode: the broker's ERROR frame is shown and the page is
/// back to disconnected; the right one then works.
#[tokio::test]
async fn a_wrong_passcode_shows_the_refusal() {
    let demo = Demo::start();
    let mut page = browser().await;
    open(&mut page, &demo).await;
    connect(&mut page, "websocket", "wrong").await;
    page.wait_for("document.getElementById('demo').dataset.errors === '1'").await;
    page.wait_for("document.getElementById('demo').dataset.state === 'disconnected'").await;
    let error = data(&mut page, "lastError").await;
    assert!(error.as_str().is_some_and(|e| e.starts_with("bad user name or password")), "{error}");
    assert_eq!(
        page.eval("document.querySelector('#errors li').textContent.includes('bad user name or password')").await,
        true
    );
    page.screenshot("stomp-demo-refused").await;
    page.viewport(390, 844, true).await;
    page.screenshot("stomp-demo-phone").await;
    page.viewport(1280, 800, false).await;
    assert_eq!(problems(&mut page).await, Vec::<String>::new());

    connect(&mut page, "websocket", PASS).await;
    page.wait_for("document.getElementById('demo').dataset.state === 'connected'").await;
    click(&mut page, "disconnect").await;
    page.wait_for("document.getElementById('demo').dataset.state === 'disconnected'").await;
    assert_eq!(problems(&mut page).await, Vec::<String>::new());
}
