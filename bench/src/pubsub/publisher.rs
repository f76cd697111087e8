//! One publisher: sends stamped PUBLISHes at full speed or at a rate,
//! keeping at most `window` QoS 1/2 messages unacknowledged.
//!
//! The connection's reading half runs in its own task and forwards
//! acknowledgements over a channel; the writing half stays here, so the
//! PUBREL answering a PUBREC is written by the same task that writes the
//! PUBLISHes, and no write is ever cancelled half-way. The loop stops when
//! `count` messages are sent or the duration is over, then waits (at most
//! the client timeout) for the last acknowledgements.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, PubResp, Publish, QoS};
use tokio::sync::mpsc;

use super::payload::{self, Stamp};
use crate::client::{ClientError, ClientOpts, PacketReader, PacketWriter, Session};

/// Encoded bytes that trigger a write without waiting for more.
const FLUSH_AT: usize = 64 * 1024;

/// What every publisher does.
#[derive(Debug, Clone)]
pub struct PubPlan {
    pub topic: String,
    pub qos: QoS,
    pub size: usize,
    /// Messages per publisher (already capped by rate × duration).
    pub count: u64,
    /// Messages per second per publisher; `None` is as fast as possible.
    pub rate: Option<f64>,
    pub duration: Duration,
    /// Unacknowledged QoS 1/2 messages allowed (further capped by a v5
    /// broker's Receive Maximum).
    pub window: usize,
}

/// How one publisher did.
#[derive(Debug, Default)]
pub struct PubReport {
    pub sent: u64,
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) received with a success code.
    pub acked: u64,
    /// Acknowledged with a v5 failure reason code (>= 0x80).
    pub rejected: u64,
    /// Still unacknowledged when the publisher gave up.
    pub unacked: u64,
    /// Acknowledgements for packet ids that were not in flight.
    pub stray_acks: u64,
    pub error: Option<String>,
}

/// An acknowledgement (or the end of the connection), from the reader task.
#[derive(Debug)]
enum Event {
    PubAck(PubResp),
    PubRec(PubResp),
    PubComp(PubResp),
    Closed(Option<ClientError>),
}

/// Runs one publisher; `start` is the shared start of publishing, `epoch`
/// the run's time origin for stamps, `sent` the run's live counter.
pub async fn run(
    idx: u32,
    session: Session,
    plan: Arc<PubPlan>,
    opts: ClientOpts,
    epoch: Instant,
    start: Instant,
    sent: Arc<AtomicU64>,
) -> PubReport {
    let receive_max = session.connack.properties.receive_maximum.map_or(usize::MAX, usize::from);
    let window = plan.window.min(receive_max).max(1);
    // Each message in flight causes at most two events (PUBREC, PUBCOMP),
    // and the loop drains them before sending more: this never fills.
    let (tx, rx) = mpsc::channel(2 * window + 16);
    let reader = tokio::spawn(forward(session.reader, tx));
    let mut p = Publisher {
        idx,
        plan,
        window,
        epoch,
        start,
        sent,
        writer: session.writer,
        inflight: HashSet::with_capacity(window),
        next_id: 0,
        report: PubReport::default(),
    };
    if let Err(e) = p.send_all(rx, &opts).await {
        p.report.error = Some(e.to_string());
    }
    p.report.unacked = p.inflight.len() as u64;
    p.writer.close(opts.timeout).await;
    reader.abort();
    p.report
}

async fn forward(mut reader: PacketReader, tx: mpsc::Sender<Event>) {
    loop {
        let ev = match reader.next().await {
            Ok(Some(Packet::PubAck(r))) => Event::PubAck(r),
            Ok(Some(Packet::PubRec(r))) => Event::PubRec(r),
            Ok(Some(Packet::PubComp(r))) => Event::PubComp(r),
            Ok(Some(Packet::Disconnect(_))) | Ok(None) => Event::Closed(None),
            Ok(Some(_)) => continue, // PINGRESP, and nothing else matters here
            Err(e) => Event::Closed(Some(e)),
        };
        let closed = matches!(ev, Event::Closed(_));
        if tx.send(ev).await.is_err() || closed {
            return;
        }
    }
}

#[derive(Debug)]
struct Publisher {
    idx: u32,
    plan: Arc<PubPlan>,
    window: usize,
    epoch: Instant,
    start: Instant,
    sent: Arc<AtomicU64>,
    writer: PacketWriter,
    /// Packet ids awaiting PUBACK / PUBCOMP.
    inflight: HashSet<u16>,
    next_id: u16,
    report: PubReport,
}

impl Publisher {
    async fn send_all(&mut self, mut rx: mpsc::Receiver<Event>, opts: &ClientOpts) -> Result<(), ClientError> {
        let deadline = self.start + self.plan.duration;
        let give_up = deadline + opts.timeout;
        let ping_every = opts.ping_every();
        let mut last_write = Instant::now();
        loop {
            while let Ok(ev) = rx.try_recv() {
                self.apply(ev)?;
            }
            let now = Instant::now();
            let more = self.report.sent < self.plan.count && now < deadline;
            if !more && self.inflight.is_empty() {
                break;
            }
            if now >= give_up {
                break;
            }
            let window_open = self.plan.qos == QoS::AtMostOnce || self.inflight.len() < self.window;
            let due = self.plan.rate.map(|r| self.start + Duration::from_secs_f64(self.report.sent as f64 / r));
            if more && window_open && due.is_none_or(|t| t <= now) {
                self.publish()?;
                if self.writer.pending() >= FLUSH_AT {
                    self.flush(opts).await?;
                    last_write = Instant::now();
                }
                continue;
            }
            if self.writer.pending() > 0 {
                self.flush(opts).await?;
                last_write = Instant::now();
            }
            let wake = match (more, window_open) {
                (false, _) => give_up,
                (true, false) => deadline,
                (true, true) => due.unwrap_or(now).min(deadline),
            };
            let wake = wake.min(last_write + ping_every);
            tokio::select! {
                ev = rx.recv() => match ev {
                    Some(ev) => self.apply(ev)?,
                    None => return Err(ClientError::Closed),
                },
                _ = tokio::time::sleep_until(wake.into()) => {
                    if Instant::now() >= last_write + ping_every {
                        self.writer.push(&Packet::PingReq)?;
                        self.flush(opts).await?;
                        last_write = Instant::now();
                    }
                }
            }
        }
        self.flush(opts).await
    }

    fn publish(&mut self) -> Result<(), ClientError> {
        let packet_id = match self.plan.qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce | QoS::ExactlyOnce => Some(self.take_id()),
        };
        let stamp = Stamp { sent_ns: payload::now_ns(self.epoch), publisher: self.idx, seq: self.report.sent };
        self.writer.push(&Packet::Publish(Publish {
            dup: false,
            qos: self.plan.qos,
            retain: false,
            topic: self.plan.topic.clone(),
            packet_id,
            payload: payload::encode(stamp, self.plan.size),
            properties: Properties::default(),
        }))?;
        self.report.sent += 1;
        self.sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The next free non-zero packet id, marked in flight. Called only with
    /// fewer than `window` (<= 65,535) ids in flight, so one is free.
    fn take_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if self.inflight.insert(self.next_id) {
                return self.next_id;
            }
        }
    }

    fn apply(&mut self, ev: Event) -> Result<(), ClientError> {
        match ev {
            Event::PubAck(r) | Event::PubComp(r) => self.complete(r),
            Event::PubRec(r) if r.reason >= 0x80 => self.complete(r),
            Event::PubRec(r) => {
                if self.inflight.contains(&r.packet_id) {
                    self.writer.push(&Packet::PubRel(PubResp::ok(r.packet_id)))?;
                } else {
                    self.report.stray_acks += 1;
                }
            }
            Event::Closed(Some(e)) => return Err(e),
            Event::Closed(None) => return Err(ClientError::Closed),
        }
        Ok(())
    }

    fn complete(&mut self, r: PubResp) {
        if !self.inflight.remove(&r.packet_id) {
            self.report.stray_acks += 1;
        } else if r.reason >= 0x80 {
            self.report.rejected += 1;
        } else {
            self.report.acked += 1;
        }
    }

    async fn flush(&mut self, opts: &ClientOpts) -> Result<(), ClientError> {
        match tokio::time::timeout(opts.timeout, self.writer.flush()).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout),
        }
    }
}
