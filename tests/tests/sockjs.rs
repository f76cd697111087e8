//! STOMP over SockJS (issue 17, point 3) against the real binary: every
//! transport spoken by hand (reqwest, tokio-tungstenite, raw sockets),
//! STOMP both ways with MQTT clients of the kit, auth refusal, heartbeats,
//! the disconnect delay, the 2010 rule, and the bounds (connection limit,
//! xhr_send size, a stalled session's queue, request heads, idle sockets).
//! sockjs-client itself runs in tests/tests/sockjs_node.rs.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use portcullis_core::codec::QoS;
use portcullis_tests::kit::*;
use portcullis_tests::Broker;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const T: Duration = Duration::from_secs(5);

/// A broker with an MQTT listener (`b.addr`) and a SockJS listener named
/// `sj` with `listener` keys and `sockjs` in its SockJS table; `extra`
/// is appended.
fn start(listener: &str, sockjs: &str, extra: &str) -> (Broker, SocketAddr) {
    let cfg = format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"sj\"\ntype = \"sockjs\"\n\
         bind = \"127.0.0.1:0\"\n{listener}\nsockjs = {{ {sockjs} }}\n\n{extra}"
    );
    let b = Broker::start(&cfg);
    let addr = sockjs_addr(&b);
    (b, addr)
}

fn sockjs_addr(b: &Broker) -> SocketAddr {
    portcullis_tests::stomp::listener_addr(b, "sj")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("client")
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("json")
}

/// `["<frame>"]`: a STOMP frame as an xhr_send body / SockJS ws message.
fn payload(frame: &str) -> String {
    format!("[{}]", json_str(frame))
}

const CONNECT: &str = "CONNECT\naccept-version:1.2\nhost:x\nheart-beat:0,0\n\n\0";

/// The messages of an `a[…]` frame.
fn messages(frame: &str) -> Vec<String> {
    let body = frame.strip_prefix('a').unwrap_or_else(|| panic!("not an a-frame: {frame:?}"));
    serde_json::from_str(body).expect("a JSON array of strings")
}

/// The STOMP frames in SockJS messages (a message may hold several).
fn stomp_frames(msgs: &[String]) -> Vec<String> {
    let all = msgs.concat();
    all.split_inclusive('\0').map(|f| f.trim_start_matches('\n').to_owned()).filter(|f| !f.is_empty()).collect()
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}/stomp{path}")
}

/// One xhr-polling request's body.
async fn poll(c: &reqwest::Client, addr: SocketAddr, session: &str) -> String {
    let r = c.post(url(addr, &format!("/000/{session}/xhr"))).send().await.expect("xhr");
    assert_eq!(r.status(), 200);
    r.text().await.expect("body")
}

async fn xhr_send(c: &reqwest::Client, addr: SocketAddr, session: &str, body: &str) -> (u16, String) {
    let r = c.post(url(addr, &format!("/000/{session}/xhr_send"))).body(body.to_owned()).send().await.expect("send");
    (r.status().as_u16(), r.text().await.expect("body"))
}

/// Polls until a frame that is not `h` arrives (bounded).
async fn poll_frame(c: &reqwest::Client, addr: SocketAddr, session: &str) -> String {
    for _ in 0..20 {
        let f = poll(c, addr, session).await;
        if f != "h\n" {
            return f.trim_end().to_owned();
        }
    }
    panic!("only heartbeats on {session}");
}

/// An xhr session opened and CONNECTed; returns the CONNECTED frame.
async fn xhr_connected(c: &reqwest::Client, addr: SocketAddr, session: &str, connect: &str) -> String {
    assert_eq!(poll(c, addr, session).await, "o\n");
    assert_eq!(xhr_send(c, addr, session, &payload(connect)).await.0, 204);
    let f = poll_frame(c, addr, session).await;
    messages(&f).concat()
}

#[tokio::test]
async fn info_greeting_and_cors_preflight() {
    let (_b, addr) = start("", "", "");
    let c = http();
    let r = c.get(url(addr, "/info")).header("origin", "http://app.example").send().await.expect("info");
    assert_eq!(r.status(), 200);
    let h = r.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("application/json"));
    assert!(h["cache-control"].to_str().unwrap().contains("no-cache"));
    assert_eq!(h["access-control-allow-origin"], "http://app.example");
    assert_eq!(h["access-control-allow-credentials"], "true");
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["websocket"], true);
    assert_eq!(v["origins"], serde_json::json!(["*:*"]));
    assert_eq!(v["cookie_needed"], false);
    assert!(v["entropy"].is_u64());
    for path in ["/info", "/000/abc/xhr", "/000/abc/xhr_send", "/000/abc/xhr_streaming"] {
        let r = c
            .request(reqwest::Method::OPTIONS, url(addr, path))
            .header("origin", "http://app.example")
            .header("access-control-request-headers", "content-type, x-a")
            .send()
            .await
            .expect("preflight");
        assert_eq!(r.status(), 204, "{path}");
        let h = r.headers();
        assert_eq!(h["access-control-allow-origin"], "http://app.example", "{path}");
        assert_eq!(h["access-control-allow-credentials"], "true");
        assert_eq!(h["access-control-allow-headers"], "content-type, x-a");
        assert!(h["access-control-allow-methods"].to_str().unwrap().contains("OPTIONS"));
        assert!(h.contains_key("access-control-max-age"));
    }
    assert_eq!(c.get(url(addr, "")).send().await.unwrap().text().await.unwrap(), "Welcome to SockJS!\n");
    // Bad segments, unknown transports, other paths.
    for path in ["/000/a.b/xhr", "/0.0/ab/xhr", "//ab/xhr", "/000/ab/eventsource", "/000/ab/xhr/x"] {
        assert_eq!(c.post(url(addr, path)).send().await.unwrap().status(), 404, "{path}");
    }
    assert_eq!(c.get(format!("http://{addr}/other")).send().await.unwrap().status(), 404);
    // The demo is off by default.
    assert_eq!(c.get(format!("http://{addr}/demo/config.json")).send().await.unwrap().status(), 404);
    // xhr_send to a session nobody opened.
    assert_eq!(xhr_send(&c, addr, "nobody", &payload(CONNECT)).await.0, 404);
}

#[tokio::test]
async fn demo_routes_and_websocket_off() {
    let (_b, addr) = start("", "demo = true, path = \"/s\", websocket = false", "");
    let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = c.get(format!("http://{addr}/demo")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(r.headers()["location"], "demo/");
    let r = c.get(format!("http://{addr}/demo/config.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["sockjs_path"], "/s");
    assert_eq!(c.post(format!("http://{addr}/demo/x")).send().await.unwrap().status(), 405);
    assert_eq!(c.get(format!("http://{addr}/demo/no-such-file")).send().await.unwrap().status(), 404);
    // websocket = false: /info says so, and the WebSocket endpoints are 404.
    let v: Value = c.get(format!("http://{addr}/s/info")).send().await.unwrap().json().await.unwrap();
    assert_eq!(v["websocket"], false);
    for path in ["/s/websocket", "/s/000/a/websocket"] {
        assert_eq!(c.get(format!("http://{addr}{path}")).send().await.unwrap().status(), 404, "{path}");
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws_connect(addr: SocketAddr, path: &str, protocol: Option<&str>) -> (Ws, Option<String>) {
    let mut req = format!("ws://{addr}/stomp{path}").into_client_request().expect("request");
    if let Some(p) = protocol {
        req.headers_mut().insert("sec-websocket-protocol", p.parse().expect("header value"));
    }
    let (ws, resp) =
        tokio::time::timeout(T, tokio_tungstenite::connect_async(req)).await.expect("in time").expect("ws");
    let proto = resp.headers().get("sec-websocket-protocol").map(|v| v.to_str().expect("ascii").to_owned());
    (ws, proto)
}

/// The next text message (None: closed).
async fn ws_text<S>(ws: &mut tokio_tungstenite::WebSocketStream<S>) -> Option<String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        match tokio::time::timeout(T, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return Some(t),
            Some(Ok(Message::Binary(b))) => return Some(String::from_utf8(b).expect("utf-8")),
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// The next SockJS frame that is not a heartbeat.
async fn ws_frame(ws: &mut Ws) -> String {
    for _ in 0..50 {
        let f = ws_text(ws).await.expect("open");
        if f != "h" {
            return f;
        }
    }
    panic!("only heartbeats");
}

#[tokio::test]
async fn raw_websocket_carries_stomp_both_ways() {
    let (b, addr) = start("", "", "");
    let (mut mqtt, _) = open_v3(b.addr, "m-raw", true).await;
    subscribe(&mut mqtt, 1, &[("raw/in", QoS::AtMostOnce)]).await;
    let (mut ws, proto) = ws_connect(addr, "/websocket", Some("v10.stomp,v12.stomp,v11.stomp")).await;
    assert_eq!(proto.as_deref(), Some("v12.stomp"), "the newest offered");
    ws.send(Message::text(CONNECT)).await.unwrap();
    assert!(ws_text(&mut ws).await.unwrap().starts_with("CONNECTED\n"));
    // Binary messages carry STOMP bytes too.
    ws.send(Message::binary(b"SUBSCRIBE\nid:1\ndestination:raw/out\nreceipt:r\n\n\0".to_vec())).await.unwrap();
    assert!(ws_text(&mut ws).await.unwrap().starts_with("RECEIPT\n"));
    ws.send(Message::text("SEND\ndestination:raw/in\n\nfrom raw ws\0")).await.unwrap();
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], b"from raw ws");
    pub_simple(&mut mqtt, "raw/out", QoS::AtMostOnce, 0, b"to raw ws", false).await;
    let m = ws_text(&mut ws).await.unwrap();
    assert!(m.starts_with("MESSAGE\n") && m.ends_with("\n\nto raw ws\0"), "{m:?}");
    // Without a subprotocol offered, none is chosen.
    let (_ws, proto) = ws_connect(addr, "/websocket", None).await;
    assert_eq!(proto, None);
}

#[tokio::test]
async fn sockjs_websocket_frames_heartbeats_and_stomp_both_ways() {
    let (b, addr) = start("", "heartbeat = \"200ms\"", "");
    let (mut mqtt, _) = open_v3(b.addr, "m-ws", true).await;
    subscribe(&mut mqtt, 1, &[("ws/in", QoS::AtMostOnce)]).await;
    let (mut ws, _) = ws_connect(addr, "/000/abc/websocket", None).await;
    assert_eq!(ws_text(&mut ws).await.unwrap(), "o");
    // A single JSON string is accepted as one message too.
    ws.send(Message::text(json_str(CONNECT))).await.unwrap();
    assert!(messages(&ws_frame(&mut ws).await)[0].starts_with("CONNECTED\n"));
    ws.send(Message::text(payload("SUBSCRIBE\nid:1\ndestination:ws/out\nreceipt:r\n\n\0"))).await.unwrap();
    assert!(messages(&ws_frame(&mut ws).await)[0].starts_with("RECEIPT\n"));
    // Heartbeats while idle (200 ms): at least two within a few seconds.
    let mut beats = 0;
    for _ in 0..50 {
        if ws_text(&mut ws).await.unwrap() == "h" {
            beats += 1;
            if beats == 2 {
                break;
            }
        }
    }
    assert_eq!(beats, 2);
    ws.send(Message::text(payload("SEND\ndestination:ws/in\n\nfrom sockjs ws \u{e9}\0"))).await.unwrap();
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], "from sockjs ws \u{e9}".as_bytes());
    pub_simple(&mut mqtt, "ws/out", QoS::AtMostOnce, 0, "to sockjs \u{2028}\"".as_bytes(), false).await;
    let raw = ws_frame(&mut ws).await;
    assert!(raw.contains("\\u2028"), "escaped on the wire: {raw}");
    let m = messages(&raw).concat();
    assert!(m.starts_with("MESSAGE\n") && m.ends_with("\n\nto sockjs \u{2028}\"\0"), "{m:?}");
    // DISCONNECT ends the STOMP connection: close frame, then close.
    ws.send(Message::text(payload("DISCONNECT\nreceipt:bye\n\n\0"))).await.unwrap();
    assert!(messages(&ws_frame(&mut ws).await)[0].starts_with("RECEIPT\n"));
    assert_eq!(ws_frame(&mut ws).await, "c[3000,\"Go away!\"]");
    assert_eq!(ws_text(&mut ws).await, None);
}

#[tokio::test]
async fn xhr_polling_and_send_carry_stomp_both_ways() {
    let (b, addr) = start("", "", "");
    let c = http();
    let (mut mqtt, _) = open_v3(b.addr, "m-xhr", true).await;
    subscribe(&mut mqtt, 1, &[("xhr/in", QoS::AtMostOnce)]).await;
    assert!(xhr_connected(&c, addr, "s1", CONNECT).await.starts_with("CONNECTED\n"));
    // The protocol's answers to bad bodies.
    assert_eq!(xhr_send(&c, addr, "s1", "").await, (500, "Payload expected.".to_string()));
    assert_eq!(xhr_send(&c, addr, "s1", "[\"x").await, (500, "Broken JSON encoding.".to_string()));
    let sub = payload("SUBSCRIBE\nid:1\ndestination:xhr/out\nreceipt:r\n\n\0");
    assert_eq!(xhr_send(&c, addr, "s1", &sub).await.0, 204);
    assert!(messages(&poll_frame(&c, addr, "s1").await)[0].starts_with("RECEIPT\n"));
    assert_eq!(xhr_send(&c, addr, "s1", &payload("SEND\ndestination:xhr/in\n\nfrom xhr\0")).await.0, 204);
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], b"from xhr");
    // A second receiving request while one waits: 2010, and the first
    // still gets the message.
    let first = {
        let c = c.clone();
        tokio::spawn(async move { poll_frame(&c, addr, "s1").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(poll(&c, addr, "s1").await, "c[2010,\"Another connection still open\"]\n");
    pub_simple(&mut mqtt, "xhr/out", QoS::AtMostOnce, 0, b"to xhr", false).await;
    let m = messages(&first.await.unwrap()).concat();
    assert!(m.starts_with("MESSAGE\n") && m.ends_with("\n\nto xhr\0"), "{m:?}");
}

/// A session id travels in the URL and is chosen by the client: another
/// address that learns it can neither read the session's messages nor
/// write frames into its (authenticated) STOMP connection.
#[tokio::test]
async fn another_address_cannot_use_a_session() {
    let (b, addr) = start("", "", "");
    let c = http();
    let other = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .local_address(std::net::IpAddr::from([127, 0, 0, 2]))
        .build()
        .expect("client");
    let (mut mqtt, _) = open_v3(b.addr, "m-own", true).await;
    subscribe(&mut mqtt, 1, &[("own/in", QoS::AtMostOnce)]).await;
    assert!(xhr_connected(&c, addr, "mine", CONNECT).await.starts_with("CONNECTED\n"));
    let sub = payload("SUBSCRIBE\nid:1\ndestination:own/out\nreceipt:r\n\n\0");
    assert_eq!(xhr_send(&c, addr, "mine", &sub).await.0, 204);
    assert!(messages(&poll_frame(&c, addr, "mine").await)[0].starts_with("RECEIPT\n"));
    // From 127.0.0.2: sending and receiving on that id are refused.
    let forged = payload("SEND\ndestination:own/in\n\nforged\0");
    assert_eq!(xhr_send(&other, addr, "mine", &forged).await.0, 404);
    for transport in ["xhr", "xhr_streaming"] {
        let r = other.post(url(addr, &format!("/000/mine/{transport}"))).send().await.expect("receive");
        assert_eq!(r.status(), 404, "{transport}");
    }
    // The owner still has its session and its messages; nothing forged
    // reached MQTT.
    pub_simple(&mut mqtt, "own/out", QoS::AtMostOnce, 0, b"for the owner", false).await;
    let m = messages(&poll_frame(&c, addr, "mine").await).concat();
    assert!(m.starts_with("MESSAGE\n") && m.ends_with("\n\nfor the owner\0"), "{m:?}");
    assert_eq!(xhr_send(&c, addr, "mine", &payload("SEND\ndestination:own/in\n\nreal\0")).await.0, 204);
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], b"real");
}

#[tokio::test]
async fn xhr_streaming_prelude_frames_and_byte_budget() {
    let (b, addr) = start("", "streaming_bytes = \"4KiB\"", "");
    let c = http();
    let mut r = c.post(url(addr, "/000/st/xhr_streaming")).send().await.expect("streaming");
    assert_eq!(r.status(), 200);
    let mut got = String::new();
    let want = format!("{}\no\n", "h".repeat(2048));
    while got.len() < want.len() {
        let chunk = tokio::time::timeout(T, r.chunk()).await.expect("in time").expect("chunk").expect("open");
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert_eq!(got, want, "prelude, then the open frame");
    assert_eq!(xhr_send(&c, addr, "st", &payload(CONNECT)).await.0, 204);
    let sub = payload("SUBSCRIBE\nid:1\ndestination:st/out\nreceipt:r\n\n\0");
    assert_eq!(xhr_send(&c, addr, "st", &sub).await.0, 204);
    let (mut mqtt, _) = open_v3(b.addr, "m-st", true).await;
    let mut msgs: Vec<String> = Vec::new();
    let mut buf = String::new();
    let mut ended = false;
    // CONNECTED and RECEIPT, then 3 KiB messages until the 4 KiB budget
    // ends the response (bounded: 20 chunks).
    for _ in 0..20 {
        match tokio::time::timeout(T, r.chunk()).await.expect("in time").expect("chunk") {
            None => {
                ended = true;
                break;
            }
            Some(chunk) => buf.push_str(std::str::from_utf8(&chunk).unwrap()),
        }
        while let Some(n) = buf.find('\n') {
            if buf.starts_with('a') {
                msgs.extend(stomp_frames(&messages(&buf[..n])));
            }
            buf.drain(..=n);
        }
        if msgs.iter().any(|m| m.starts_with("RECEIPT\n")) {
            pub_simple(&mut mqtt, "st/out", QoS::AtMostOnce, 0, &[b'x'; 3000], false).await;
        }
    }
    assert!(ended, "the response ended after its byte budget");
    assert!(msgs[0].starts_with("CONNECTED\n"), "{msgs:?}");
    assert!(msgs[1].starts_with("RECEIPT\n"));
    assert!(msgs[2..].iter().any(|m| m.starts_with("MESSAGE\n")));
    // The session lives on: the next streaming request continues it
    // (prelude, no second open frame, then what was published meanwhile).
    pub_simple(&mut mqtt, "st/out", QoS::AtMostOnce, 0, b"next", false).await;
    let mut r = c.post(url(addr, "/000/st/xhr_streaming")).send().await.expect("again");
    let mut got = String::new();
    for _ in 0..20 {
        if got.contains("\\n\\nnext\\u0000") {
            break;
        }
        let chunk = tokio::time::timeout(T, r.chunk()).await.expect("in time").expect("chunk").expect("open");
        got.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(got.starts_with(&format!("{}\na[", "h".repeat(2048))), "{got}");
    assert!(got.contains("\\n\\nnext\\u0000"), "{got}");
}

#[tokio::test]
async fn auth_refusal_is_an_error_frame_then_close() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("passwd");
    std::fs::write(&p, "alice:s3cret\n").unwrap();
    let extra = format!(
        "[auth]\nchain = [\"pw\"]\n[auth.password_file.pw]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n",
        p.to_str().unwrap()
    );
    let (_b, addr) = start("", "", &extra);
    let bad = "CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:wrong\n\n\0";
    // WebSocket.
    let (mut ws, _) = ws_connect(addr, "/000/bad/websocket", None).await;
    assert_eq!(ws_text(&mut ws).await.unwrap(), "o");
    ws.send(Message::text(payload(bad))).await.unwrap();
    let e = messages(&ws_frame(&mut ws).await).concat();
    assert!(e.starts_with("ERROR\n") && e.contains("bad user name or password"), "{e:?}");
    assert_eq!(ws_frame(&mut ws).await, "c[3000,\"Go away!\"]");
    // xhr: the ERROR, the close frame, and the close frame again after.
    let c = http();
    assert_eq!(poll(&c, addr, "bad").await, "o\n");
    assert_eq!(xhr_send(&c, addr, "bad", &payload(bad)).await.0, 204);
    let e = messages(&poll_frame(&c, addr, "bad").await).concat();
    assert!(e.starts_with("ERROR\n") && e.contains("bad user name or password"), "{e:?}");
    assert_eq!(poll(&c, addr, "bad").await, "c[3000,\"Go away!\"]\n");
    assert_eq!(poll(&c, addr, "bad").await, "c[3000,\"Go away!\"]\n");
    // The right password works.
    let good = "CONNECT\naccept-version:1.2\nhost:x\nlogin:alice\npasscode:s3cret\n\n\0";
    assert!(xhr_connected(&c, addr, "good", good).await.starts_with("CONNECTED\n"));
}

/// Counts "STOMP client disconnected" lines in the log.
fn disconnects(b: &Broker) -> usize {
    b.log().matches("STOMP client disconnected").count()
}

#[tokio::test]
async fn disconnect_delay_closes_the_session_and_its_stomp_connection() {
    let (b, addr) = start("", "disconnect_delay = \"400ms\", heartbeat = \"200ms\"", "");
    let c = http();
    let connect = "CONNECT\naccept-version:1.2\nhost:x\nclient-id:sj-delay\n\n\0";
    assert!(xhr_connected(&c, addr, "d1", connect).await.starts_with("CONNECTED\n"));
    // Polling keeps it: heartbeats come every 200 ms, well within the delay.
    for _ in 0..4 {
        assert_eq!(poll(&c, addr, "d1").await, "h\n");
    }
    assert_eq!(disconnects(&b), 0);
    // No receiving request: closed after the delay, STOMP connection too.
    let end = Instant::now() + Duration::from_secs(10);
    while disconnects(&b) == 0 {
        assert!(Instant::now() < end, "session not closed:\n{}", b.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Forgotten: xhr_send is refused, and the same id opens a new session.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(xhr_send(&c, addr, "d1", &payload(CONNECT)).await.0, 404);
    assert_eq!(poll(&c, addr, "d1").await, "o\n");
}

/// The client address auth and the guard see: the TCP peer, or what a
/// trusted proxy's `X-Forwarded-For` says (`trusted_proxies`), as on `ws`
/// listeners; an untrusted peer's header is ignored. (Without an auth
/// provider anonymous clients are admitted from loopback only: the
/// forwarded 10.9.8.7 is refused.)
#[tokio::test]
async fn forwarded_addresses_only_from_trusted_proxies() {
    for trusted in [false, true] {
        let listener = if trusted { "trusted_proxies = [\"127.0.0.0/8\"]" } else { "" };
        let (b, addr) = start(listener, "", "");
        // A proxy adds the header to every request of the session (an xhr
        // session belongs to the address that opened it).
        let mut fwd = reqwest::header::HeaderMap::new();
        fwd.insert("x-forwarded-for", reqwest::header::HeaderValue::from_static("10.9.8.7"));
        let c =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).default_headers(fwd).build().expect("client");
        let r = c.post(url(addr, "/000/f/xhr")).send().await.expect("xhr");
        assert_eq!(r.text().await.expect("body"), "o\n");
        let connect = "CONNECT\naccept-version:1.2\nhost:x\nclient-id:fwd\n\n\0";
        assert_eq!(xhr_send(&c, addr, "f", &payload(connect)).await.0, 204);
        let frame = messages(&poll_frame(&c, addr, "f").await).concat();
        if !trusted {
            assert!(frame.starts_with("CONNECTED\n"), "{frame:?}");
            // Logged after the CONNECTED frame went out, and read from the
            // broker's output by another thread: waited for.
            assert!(b.wait_log("STOMP client connected", Duration::from_secs(10)), "connected line");
            let log = b.log();
            let line = log.lines().find(|l| l.contains("STOMP client connected")).expect("connected line");
            assert!(line.contains("peer=127.0.0.1:"), "{line}");
        } else {
            assert!(frame.starts_with("ERROR\n") && frame.contains("not authorized"), "{frame:?}");
            let r = c.post(url(addr, "/000/g/xhr")).header("x-forwarded-for", "not-an-ip").send().await.expect("xhr");
            assert_eq!(r.status(), 400);
        }
    }
}

/// Sends raw bytes on a fresh socket and reads what comes back until the
/// broker closes or 5 s pass.
async fn raw_http(addr: SocketAddr, request: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn bounds_on_bodies_queues_heads_and_connections() {
    let (b, addr) = start(
        "max_connections = 2\nhandshake_timeout = \"1s\"",
        "max_message_bytes = \"2KiB\", max_queued_bytes = \"4KiB\"",
        "",
    );
    let c = http();
    assert!(xhr_connected(&c, addr, "q", CONNECT).await.starts_with("CONNECTED\n"));
    // A declared body over max_message_bytes: 413 before any body byte is
    // read (the broker answers although the 10 MB never come).
    let r = tokio::time::timeout(
        T,
        raw_http(
            addr,
            b"POST /stomp/000/q/xhr_send HTTP/1.1\r\nhost: x\r\ncontent-length: 10000000\r\nconnection: close\r\n\r\n[\"",
        ),
    )
    .await
    .expect("answered without the body");
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    // A chunked body over the limit: read up to it, then refused.
    let big = payload(&"x".repeat(4096));
    assert_eq!(xhr_send(&c, addr, "q", &big).await.0, 413);
    // Request heads: too many header lines.
    let mut req = String::from("GET /stomp/info HTTP/1.1\r\nhost: x\r\n");
    for i in 0..200 {
        req.push_str(&format!("x-h{i}: v\r\n"));
    }
    req.push_str("\r\n");
    let r = raw_http(addr, req.as_bytes()).await;
    assert!(!r.starts_with("HTTP/1.1 200"), "{r}");
    // A socket that sends nothing is closed after handshake_timeout (1 s),
    // and so is an idle keep-alive one.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    let n = tokio::time::timeout(T, s.read(&mut buf)).await.expect("closed in time");
    assert!(n.is_ok(), "closed");
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /stomp/info HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let closed = tokio::time::timeout(T, async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "idle keep-alive socket closed");
    assert!(seen.starts_with(b"HTTP/1.1 200"));
    // A stalled session: subscribed, nobody polling, 5 KiB published.
    let sub = payload("SUBSCRIBE\nid:1\ndestination:q/out\n\n\0");
    assert_eq!(xhr_send(&c, addr, "q", &sub).await.0, 204);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (mut mqtt, _) = open_v3(b.addr, "m-q", true).await;
    for _ in 0..5 {
        pub_simple(&mut mqtt, "q/out", QoS::AtMostOnce, 0, &[b'y'; 1024], false).await;
    }
    let end = Instant::now() + Duration::from_secs(5);
    let closed = loop {
        let f = poll(&c, addr, "q").await;
        if f.starts_with('c') || Instant::now() > end {
            break f;
        }
    };
    assert_eq!(closed, "c[3001,\"Too much unread\"]\n");
    // max_connections = 2 STOMP connections: two sessions, a third is
    // refused. (The closed session "q" gave its place back.)
    let end = Instant::now() + Duration::from_secs(5);
    while !b.log().contains("STOMP client disconnected") {
        assert!(Instant::now() < end);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_w1, _) = ws_connect(addr, "/000/w1/websocket", None).await;
    assert_eq!(poll(&c, addr, "x2").await, "o\n");
    let r = c.post(url(addr, "/000/x3/xhr")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let r = raw_http(
        addr,
        b"GET /stomp/websocket HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
          sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
}

/// `sockjs_tls`: the same server over TLS — `/info` over HTTPS and STOMP
/// over WSS both ways with MQTT; a plain-HTTP request on the TLS port gets
/// no answer.
#[tokio::test]
async fn sockjs_tls_serves_https_and_wss() {
    use portcullis_tests::net;
    let dir = tempfile::tempdir().expect("dir");
    let ca = net::Ca::new("sockjs test CA");
    let (cert_file, key_file) = ca.server("127.0.0.1").write(dir.path(), "server");
    let b = Broker::start(&format!(
        "[[listeners]]\nname = \"tcp\"\nbind = \"127.0.0.1:0\"\n\n[[listeners]]\nname = \"sj\"\ntype = \"sockjs_tls\"\n\
         bind = \"127.0.0.1:0\"\ntls = {{ cert_file = {cert_file:?}, key_file = {key_file:?} }}\n"
    ));
    let addr = sockjs_addr(&b);
    let config = net::tls_config(&ca.pem(), None, &[]);
    // /info over HTTPS.
    let mut s = net::tls_connect(addr, config.clone()).await.expect("TLS handshake");
    s.write_all(b"GET /stomp/info HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(T, s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("\"websocket\":true"), "{text}");
    // STOMP over WSS, both ways.
    let (mut mqtt, _) = open_v3(b.addr, "m-tls", true).await;
    subscribe(&mut mqtt, 1, &[("tls/in", QoS::AtMostOnce)]).await;
    let tls = net::tls_connect(addr, config).await.expect("TLS handshake");
    let (mut ws, _) = tokio::time::timeout(
        T,
        tokio_tungstenite::client_async(format!("wss://{addr}/stomp/websocket").into_client_request().unwrap(), tls),
    )
    .await
    .expect("in time")
    .expect("wss");
    ws.send(Message::text(CONNECT)).await.unwrap();
    assert!(ws_text(&mut ws).await.unwrap().starts_with("CONNECTED\n"));
    ws.send(Message::text("SUBSCRIBE\nid:1\ndestination:tls/out\nreceipt:r\n\n\0")).await.unwrap();
    assert!(ws_text(&mut ws).await.unwrap().starts_with("RECEIPT\n"));
    ws.send(Message::text("SEND\ndestination:tls/in\n\nover wss\0")).await.unwrap();
    assert_eq!(&next_publish(&mut mqtt).await.payload[..], b"over wss");
    pub_simple(&mut mqtt, "tls/out", QoS::AtMostOnce, 0, b"to wss", false).await;
    let m = ws_text(&mut ws).await.unwrap();
    assert!(m.starts_with("MESSAGE\n") && m.ends_with("\n\nto wss\0"), "{m:?}");
    // Plain HTTP on the TLS port: no HTTP answer.
    let plain = raw_http(addr, b"GET /stomp/info HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(!plain.contains("websocket"), "{plain}");
}
