//! A browser client: a page served by this test loads MQTT.js (npm
//! package `mqtt`, browser bundle) and connects over WebSocket in headless
//! Chromium, subscribes, receives a message published from Rust and
//! publishes an answer back. The page reports each step to the test's
//! HTTP server (`/report?event=…&data=…`).
//!
//! Chromium and the bundle come from `scripts/services.sh` (the `browser`
//! service installs them): `PORTCULLIS_TEST_CHROMIUM`,
//! `PORTCULLIS_TEST_MQTTJS`. The browser runs in its own process group,
//! which the test stops when it ends (panics included).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use portcullis_core::codec::QoS;
use portcullis_tests::{kit, net, services};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>Portcullis browser test</title>
<script src="/mqtt.min.js"></script></head>
<body><p>MQTT.js over WebSocket</p>
<script>
function report(event, data) {
  fetch('/report?event=' + encodeURIComponent(event) + '&data=' + encodeURIComponent(data || ''));
}
try {
  var client = mqtt.connect('ws://127.0.0.1:WS_PORT/mqtt', {
    clientId: 'browser-1', protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10000
  });
  client.on('connect', function () {
    report('connected');
    client.subscribe('browser/in', { qos: 1 }, function (err, granted) {
      if (err) { report('error', String(err)); return; }
      report('subscribed', JSON.stringify(granted));
    });
  });
  client.on('message', function (topic, payload) {
    report('message', topic + ' ' + payload.toString());
    client.publish('browser/out', 'echo: ' + payload.toString(), { qos: 1 });
  });
  client.on('error', function (e) { report('error', String(e)); });
  client.on('close', function () { report('closed'); });
} catch (e) { report('error', String(e)); }
</script></body></html>
"#;

/// Headless Chromium in its own process group, stopped on drop.
struct Browser {
    child: Child,
    log: std::path::PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn start(chromium: &str, url: &str) -> Browser {
        use std::os::unix::process::CommandExt;
        let profile = tempfile::tempdir().expect("profile dir");
        let log = profile.path().join("chromium.log");
        let child = Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-quic",
                "--no-first-run",
            ])
            .arg(format!("--user-data-dir={}", profile.path().join("profile").display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("chromium log"))
            .process_group(0)
            .spawn()
            .expect("start chromium");
        Browser { child, log, _profile: profile }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The whole group this test started: Chromium and its helpers.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let end = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}

/// Serves the page, the bundle and `/report` until the test ends; every
/// report goes to `tx` as `(event, data)`.
async fn serve_http(listener: TcpListener, page: String, bundle: Vec<u8>, tx: mpsc::UnboundedSender<(String, String)>) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else { return };
        let (page, bundle, tx) = (page.clone(), bundle.clone(), tx.clone());
        tokio::spawn(async move {
            let mut head = Vec::new();
            let mut buf = [0u8; 2048];
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return false,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                true
            })
            .await;
            if read != Ok(true) {
                return;
            }
            let head = String::from_utf8_lossy(&head).into_owned();
            let target = head.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (path, query) = target.split_once('?').unwrap_or((&target, ""));
            let (status, ctype, body) = match path {
                "/" => ("200 OK", "text/html; charset=utf-8", page.into_bytes()),
                "/mqtt.min.js" => ("200 OK", "application/javascript", bundle),
                "/report" => {
                    let get =
                        |k: &str| query.split('&').find_map(|kv| kv.strip_prefix(&format!("{k}="))).map(percent_decode);
                    let _ = tx.send((get("event").unwrap_or_default(), get("data").unwrap_or_default()));
                    ("204 No Content", "text/plain", Vec::new())
                }
                _ => ("404 Not Found", "text/plain", b"not found".to_vec()),
            };
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(header.as_bytes()).await;
            let _ = s.write_all(&body).await;
            let _ = s.shutdown().await;
        });
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => out.push(b),
                    None => out.extend_from_slice(&bytes[i..i + 3]),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Waits for the page's `event`; an `error` report or a timeout fails.
async fn expect_event(
    rx: &mut mpsc::UnboundedReceiver<(String, String)>,
    event: &str,
    t: Duration,
    browser: &Browser,
) -> String {
    let end = tokio::time::Instant::now() + t;
    loop {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some((e, data))) if e == event => return data,
            Ok(Some((e, data))) if e == "error" || e == "closed" => {
                panic!("the page reported {e}: {data}\nchromium:\n{}", browser.log_tail())
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no `{event}` from the page within {t:?}\nchromium:\n{}", browser.log_tail()),
        }
    }
}

#[tokio::test]
async fn mqtt_js_in_headless_chromium_over_websocket() {
    let (Some(chromium), Some(bundle)) =
        (services::get("PORTCULLIS_TEST_CHROMIUM"), services::get("PORTCULLIS_TEST_MQTTJS"))
    else {
        return;
    };
    let bundle = std::fs::read(&bundle).unwrap_or_else(|e| panic!("{bundle}: {e}"));
    let http = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
    let http_port = http.local_addr().expect("addr").port();
    // Only the test's page may connect from a browser.
    let (_b, addrs) = net::start(&format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n\
         [[listeners]]\nname = \"ws\"\ntype = \"ws\"\nbind = \"127.0.0.1:0\"\n\
         websocket = {{ allowed_origins = [\"http://127.0.0.1:{http_port}\"] }}\n"
    ));
    let page = PAGE.replace("WS_PORT", &addrs["ws"].port().to_string());
    let (tx, mut rx) = mpsc::unbounded_channel();
    let server = tokio::spawn(serve_http(http, page, bundle, tx));

    let (mut watch, _) = kit::open_v3(addrs["tcp"], "rust-side", true).await;
    kit::subscribe(
        &mut watch,
        1,
        &[("browser/out", QoS::AtLeastOnce), ("$SYS/brokers/+/clients/browser-1/connected", QoS::AtMostOnce)],
    )
    .await;

    let browser = Browser::start(&chromium, &format!("http://127.0.0.1:{http_port}/"));
    // A cold Chromium start on a busy 2-core machine takes a while.
    expect_event(&mut rx, "connected", Duration::from_secs(60), &browser).await;
    let granted = expect_event(&mut rx, "subscribed", Duration::from_secs(10), &browser).await;
    assert!(granted.contains("\"qos\":1"), "{granted}");
    let presence = kit::next_publish(&mut watch).await;
    let v: serde_json::Value = serde_json::from_slice(&presence.payload).expect("presence JSON");
    assert_eq!(v["listener"], "ws", "{v}");

    kit::pub_simple(&mut watch, "browser/in", QoS::AtLeastOnce, 7, b"hello from rust", false).await;
    let got = expect_event(&mut rx, "message", Duration::from_secs(10), &browser).await;
    assert_eq!(got, "browser/in hello from rust");
    let echo = kit::next_publish(&mut watch).await;
    kit::ack_incoming(&mut watch, &echo).await;
    assert_eq!((echo.topic.as_str(), &echo.payload[..]), ("browser/out", &b"echo: hello from rust"[..]));
    drop(browser);
    server.abort();
}
