//! STOMP 1.2 publishers and subscribers for `pubsub` (`--stomp-pub-port`,
//! `--stomp-sub-port`): hand-written frames over TCP, so that the rate is
//! the broker's, not a client library's.
//!
//! * A publisher sends `SEND` frames with `content-length` (the same
//!   stamped payload as MQTT publishers); with `--qos` 1 or 2 each carries
//!   a `receipt` and at most `--window` receipts are outstanding (the
//!   STOMP way to know the broker took it); with QoS 0 none is asked. The
//!   QoS of the MQTT message is the listener's `send_qos`.
//! * A subscriber sends `SUBSCRIBE` with `ack:auto` (and waits for its
//!   receipt), then reads `MESSAGE` frames; the QoS of the subscription is
//!   the listener's `subscribe_qos`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::{Buf, Bytes, BytesMut};
use portcullis_core::codec::QoS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::payload::{self, Stamp};
use super::publisher::{PubPlan, PubReport};
use super::subscriber::{SubReport, Subscriber, Tally};
use crate::client::ClientOpts;
use crate::target::Target;

/// Largest frame accepted from the broker.
const MAX_FRAME: usize = 16 * 1024 * 1024 + 64 * 1024;
/// Encoded bytes that trigger a write.
const FLUSH_AT: usize = 64 * 1024;

/// A STOMP connection after CONNECTED.
#[derive(Debug)]
pub struct StompConn {
    stream: TcpStream,
    rbuf: BytesMut,
}

/// A frame from the broker.
#[derive(Debug)]
struct Frame {
    command: String,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl Frame {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Connects client `idx` and waits for CONNECTED.
pub async fn open(target: &Target, idx: usize, client_id: String, opts: &ClientOpts) -> anyhow::Result<StompConn> {
    let fut = async {
        let stream = target.connect(idx).await?;
        stream.set_nodelay(true)?;
        let mut c = StompConn { stream, rbuf: BytesMut::with_capacity(64 * 1024) };
        let mut f = format!("CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\nclient-id:{client_id}\n");
        if let Some(u) = opts.username_for(idx) {
            f.push_str(&format!("login:{u}\n"));
        }
        if let Some(p) = &opts.password {
            f.push_str(&format!("passcode:{}\n", String::from_utf8_lossy(p)));
        }
        f.push_str("\n\0");
        c.stream.write_all(f.as_bytes()).await?;
        let r = c.read_frame().await?;
        if r.command != "CONNECTED" {
            bail!("{}: {}", r.command, r.header("message").unwrap_or(""));
        }
        anyhow::Ok(c)
    };
    tokio::time::timeout(opts.timeout, fut).await.context("STOMP CONNECT timed out")?
}

impl StompConn {
    /// The next frame (heart-beat EOLs skipped).
    async fn read_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(f) = self.parse()? {
                return Ok(f);
            }
            if self.rbuf.capacity() - self.rbuf.len() < 8192 {
                self.rbuf.reserve(64 * 1024);
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                bail!("connection closed");
            }
        }
    }

    fn parse(&mut self) -> anyhow::Result<Option<Frame>> {
        parse_frame(&mut self.rbuf)
    }
}

/// SUBSCRIBE (ack:auto) and wait for its receipt.
pub async fn subscribe(c: &mut StompConn, destination: &str, timeout: Duration) -> anyhow::Result<()> {
    let f = format!("SUBSCRIBE\nid:0\ndestination:{destination}\nack:auto\nreceipt:sub\n\n\0");
    let fut = async {
        c.stream.write_all(f.as_bytes()).await?;
        loop {
            let r = c.read_frame().await?;
            match r.command.as_str() {
                "RECEIPT" => return anyhow::Ok(()),
                "ERROR" => bail!("SUBSCRIBE refused: {}", r.header("message").unwrap_or("")),
                _ => {}
            }
        }
    };
    tokio::time::timeout(timeout, fut).await.context("STOMP SUBSCRIBE timed out")?
}

/// A STOMP subscriber until `stop` turns true (see the module docs).
pub async fn run_subscriber(
    mut c: StompConn,
    publishers: u32,
    max_seq: u64,
    epoch: Instant,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> SubReport {
    let mut sub = Subscriber::new(publishers, max_seq, epoch, tally);
    let result: anyhow::Result<()> = async {
        loop {
            tokio::select! {
                biased;
                _ = async { stop.wait_for(|v| *v).await.is_ok() } => return Ok(()),
                f = c.read_frame() => {
                    let f = f?;
                    match f.command.as_str() {
                        "MESSAGE" => sub.record(&f.body),
                        "ERROR" => bail!("ERROR: {}", f.header("message").unwrap_or("")),
                        _ => {}
                    }
                    while let Some(f) = c.parse()? {
                        if f.command == "MESSAGE" {
                            sub.record(&f.body);
                        }
                    }
                }
            }
        }
    }
    .await;
    let mut report = sub.into_report();
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), c.stream.write_all(b"DISCONNECT\n\n\0")).await;
    report
}

/// A STOMP publisher (see the module docs).
pub async fn run_publisher(
    idx: u32,
    c: StompConn,
    plan: Arc<PubPlan>,
    opts: ClientOpts,
    epoch: Instant,
    start: Instant,
    sent: Arc<AtomicU64>,
) -> PubReport {
    let mut report = PubReport::default();
    let receipts = plan.qos != QoS::AtMostOnce;
    let window = plan.window.max(1);
    let StompConn { stream, mut rbuf } = c;
    let (mut rd, mut wr) = stream.into_split();
    // Receipts come back on the reading half: ids over a channel.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<anyhow::Result<u64>>(2 * window + 16);
    let reader = tokio::spawn(async move {
        let mut conn_rbuf = std::mem::take(&mut rbuf);
        loop {
            let mut parsed = Vec::new();
            let r: anyhow::Result<()> = (|| {
                while let Some(f) = parse_frame(&mut conn_rbuf)? {
                    parsed.push(f);
                }
                Ok(())
            })();
            if let Err(e) = r {
                let _ = tx.send(Err(e)).await;
                return;
            }
            for f in parsed {
                let ev = match f.command.as_str() {
                    "RECEIPT" => f.header("receipt-id").and_then(|r| r.parse().ok()).map(Ok),
                    "ERROR" => Some(Err(anyhow::anyhow!("ERROR: {}", f.header("message").unwrap_or("")))),
                    _ => None,
                };
                if let Some(ev) = ev {
                    if tx.send(ev).await.is_err() {
                        return;
                    }
                }
            }
            conn_rbuf.reserve(64 * 1024);
            match rd.read_buf(&mut conn_rbuf).await {
                Ok(0) | Err(_) => {
                    let _ = tx.send(Err(anyhow::anyhow!("connection closed"))).await;
                    return;
                }
                Ok(_) => {}
            }
        }
    });
    let mut inflight: HashSet<u64> = HashSet::with_capacity(window);
    let mut wbuf: Vec<u8> = Vec::with_capacity(FLUSH_AT * 2);
    let deadline = start + plan.duration;
    let give_up = deadline + opts.timeout;
    let result: anyhow::Result<()> = async {
        loop {
            while let Ok(ev) = rx.try_recv() {
                let id = ev?;
                if inflight.remove(&id) {
                    report.acked += 1;
                } else {
                    report.stray_acks += 1;
                }
            }
            let now = Instant::now();
            let more = report.sent < plan.count && now < deadline;
            if (!more && inflight.is_empty()) || now >= give_up {
                break;
            }
            let window_open = !receipts || inflight.len() < window;
            let due = plan.rate.map(|r| start + Duration::from_secs_f64(report.sent as f64 / r));
            if more && window_open && due.is_none_or(|t| t <= now) {
                let seq = report.sent;
                let stamp = Stamp { sent_ns: payload::now_ns(epoch), publisher: idx, seq };
                let body = payload::encode(stamp, plan.size);
                wbuf.extend_from_slice(b"SEND\ndestination:");
                wbuf.extend_from_slice(plan.topic.as_bytes());
                wbuf.extend_from_slice(format!("\ncontent-length:{}\n", body.len()).as_bytes());
                if receipts {
                    wbuf.extend_from_slice(format!("receipt:{seq}\n").as_bytes());
                    inflight.insert(seq);
                }
                wbuf.extend_from_slice(b"\n");
                wbuf.extend_from_slice(&body);
                wbuf.push(0);
                report.sent += 1;
                sent.fetch_add(1, Ordering::Relaxed);
                if wbuf.len() >= FLUSH_AT {
                    tokio::time::timeout(opts.timeout, wr.write_all(&wbuf)).await.context("write timed out")??;
                    wbuf.clear();
                }
                continue;
            }
            if !wbuf.is_empty() {
                tokio::time::timeout(opts.timeout, wr.write_all(&wbuf)).await.context("write timed out")??;
                wbuf.clear();
            }
            let wake = match (more, window_open) {
                (false, _) => give_up,
                (true, false) => deadline,
                (true, true) => due.unwrap_or(now).min(deadline),
            };
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => {
                        let id = ev?;
                        if inflight.remove(&id) { report.acked += 1 } else { report.stray_acks += 1 }
                    }
                    None => bail!("connection closed"),
                },
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        if !wbuf.is_empty() {
            tokio::time::timeout(opts.timeout, wr.write_all(&wbuf)).await.context("write timed out")??;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report.unacked = inflight.len() as u64;
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(b"DISCONNECT\n\n\0")).await;
    reader.abort();
    report
}

/// Takes one frame (heart-beat EOLs skipped) off the front of `rbuf`.
fn parse_frame(rbuf: &mut BytesMut) -> anyhow::Result<Option<Frame>> {
    while matches!(rbuf.first(), Some(b'\n' | b'\r')) {
        rbuf.advance(1);
    }
    let Some(end) = rbuf.windows(2).position(|w| w == b"\n\n") else {
        if rbuf.len() > MAX_FRAME {
            bail!("frame headers too large");
        }
        return Ok(None);
    };
    let text = std::str::from_utf8(&rbuf[..end]).context("headers not UTF-8")?;
    let mut lines = text.split('\n');
    let command = lines.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':')).map(|(n, v)| (n.to_string(), v.to_string())).collect();
    let start = end + 2;
    let len = headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse::<usize>().ok());
    let body_end = match len {
        Some(n) if n > MAX_FRAME => bail!("body too large"),
        Some(n) if rbuf.len() > start + n => start + n,
        Some(_) => return Ok(None),
        None => match rbuf[start..].iter().position(|&b| b == 0) {
            Some(i) => start + i,
            None => return Ok(None),
        },
    };
    if rbuf[body_end] != 0 {
        bail!("no NUL after the body");
    }
    let mut whole = rbuf.split_to(body_end + 1);
    whole.advance(start);
    whole.truncate(body_end - start);
    Ok(Some(Frame { command, headers, body: whole.freeze() }))
}
