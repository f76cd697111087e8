//! One subscriber: subscribes, then reads, acknowledges and checks every
//! message until told to stop.
//!
//! Each message's stamp gives its latency (receive time minus send time,
//! both on the run's epoch) and its (publisher, sequence number), which a
//! per-publisher [`SeqSet`] turns into "first" or "duplicate". Messages
//! without a valid stamp for this run are counted as foreign and otherwise
//! ignored.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::codec::{Packet, Properties, PubResp, Publish, QoS, Subscribe, SubscriptionOptions};
use tokio::sync::watch;

use super::payload;
use crate::client::{ClientError, ClientOpts, PacketWriter, Session};
use crate::stats::{Histogram, SeqSet};

/// Live counters shared by all subscribers, for progress and for knowing
/// when everything has arrived.
#[derive(Debug, Default)]
pub struct Tally {
    pub received: AtomicU64,
    pub unique: AtomicU64,
}

/// How one subscriber did.
#[derive(Debug, Default)]
pub struct SubReport {
    pub received: u64,
    pub unique: u64,
    pub duplicates: u64,
    /// Messages whose payload was not stamped by this run.
    pub foreign: u64,
    /// End-to-end latency in nanoseconds, one sample per stamped message.
    pub latency: Histogram,
    pub last_receive: Option<Instant>,
    pub error: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("SUBACK refused the subscription with code 0x{0:02x}")]
    Refused(u8),
}

/// Subscribes `session` to `filter` and waits for the SUBACK.
pub async fn subscribe(session: &mut Session, filter: &str, qos: QoS, timeout: Duration) -> Result<(), SubscribeError> {
    let options = SubscriptionOptions { qos, ..SubscriptionOptions::default() };
    session.writer.push(&Packet::Subscribe(Subscribe {
        packet_id: 1,
        filters: vec![(filter.to_string(), options)],
        properties: Properties::default(),
    }))?;
    tokio::time::timeout(timeout, session.writer.flush()).await.map_err(|_| ClientError::Timeout)??;
    loop {
        match session.reader.expect(timeout).await? {
            Packet::SubAck(ack) if ack.packet_id == 1 => {
                return match ack.return_codes.first() {
                    Some(&code) if code < 0x80 => Ok(()),
                    Some(&code) => Err(SubscribeError::Refused(code)),
                    None => Err(ClientError::Unexpected("empty SUBACK").into()),
                };
            }
            // A retained message may arrive before the SUBACK.
            Packet::Publish(_) | Packet::PingResp => {}
            other => return Err(ClientError::Unexpected(other.name()).into()),
        }
    }
}

/// Runs one subscribed session until `stop` turns true. `publishers` and
/// `max_seq` bound the stamps this run can have produced.
pub async fn run(
    session: Session,
    publishers: u32,
    max_seq: u64,
    opts: ClientOpts,
    epoch: Instant,
    tally: Arc<Tally>,
    mut stop: watch::Receiver<bool>,
) -> SubReport {
    let Session { mut reader, writer, .. } = session;
    let mut sub = MqttSubscriber { writer, sub: Subscriber::new(publishers, max_seq, epoch, tally) };
    let ping_every = opts.ping_every();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let result: Result<(), ClientError> = async {
        loop {
            tokio::select! {
                biased;
                _ = async { stop.wait_for(|v| *v).await.is_ok() } => return Ok(()),
                _ = ping.tick() => sub.writer.push(&Packet::PingReq)?,
                p = reader.next() => {
                    match p? {
                        Some(p) => sub.handle(p)?,
                        None => return Err(ClientError::Closed),
                    }
                    while let Some(p) = reader.try_next()? {
                        sub.handle(p)?;
                    }
                }
            }
            if sub.writer.pending() > 0 {
                tokio::time::timeout(opts.timeout, sub.writer.flush()).await.map_err(|_| ClientError::Timeout)??;
            }
        }
    }
    .await;
    sub.writer.close(opts.timeout).await;
    let mut report = sub.sub.into_report();
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report
}

/// Counts what one subscriber (MQTT or STOMP) receives.
#[derive(Debug)]
pub struct Subscriber {
    epoch: Instant,
    max_seq: u64,
    /// Per publisher: sequence numbers received.
    seen: Vec<SeqSet>,
    tally: Arc<Tally>,
    report: SubReport,
}

#[derive(Debug)]
struct MqttSubscriber {
    writer: PacketWriter,
    sub: Subscriber,
}

impl MqttSubscriber {
    fn handle(&mut self, p: Packet) -> Result<(), ClientError> {
        match p {
            Packet::Publish(publish) => {
                self.acknowledge(&publish)?;
                self.sub.record(&publish.payload);
            }
            Packet::PubRel(r) => self.writer.push(&Packet::PubComp(PubResp::ok(r.packet_id)))?,
            Packet::PingResp => {}
            Packet::Disconnect(_) => return Err(ClientError::Closed),
            other => return Err(ClientError::Unexpected(other.name())),
        }
        Ok(())
    }

    fn acknowledge(&mut self, publish: &Publish) -> Result<(), ClientError> {
        let ack = match (publish.qos, publish.packet_id) {
            (QoS::AtMostOnce, _) => return Ok(()),
            (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(PubResp::ok(id)),
            (QoS::ExactlyOnce, Some(id)) => Packet::PubRec(PubResp::ok(id)),
            (_, None) => return Err(ClientError::Unexpected("PUBLISH without packet id")),
        };
        self.writer.push(&ack)
    }
}

impl Subscriber {
    pub fn new(publishers: u32, max_seq: u64, epoch: Instant, tally: Arc<Tally>) -> Subscriber {
        let seen = vec![SeqSet::default(); publishers as usize];
        Subscriber { epoch, max_seq, seen, tally, report: SubReport::default() }
    }

    pub fn into_report(self) -> SubReport {
        self.report
    }

    /// One received payload: latency, first or duplicate, or foreign.
    pub fn record(&mut self, payload: &[u8]) {
        let now = payload::now_ns(self.epoch);
        let stamp = payload::decode(payload).filter(|s| s.seq < self.max_seq);
        let Some((stamp, seen)) = stamp.and_then(|s| Some((s, self.seen.get_mut(s.publisher as usize)?))) else {
            self.report.foreign += 1;
            return;
        };
        self.report.received += 1;
        self.report.last_receive = Some(Instant::now());
        self.tally.received.fetch_add(1, Ordering::Relaxed);
        self.report.latency.record(now.saturating_sub(stamp.sent_ns));
        if seen.insert(stamp.seq) {
            self.report.unique += 1;
            self.tally.unique.fetch_add(1, Ordering::Relaxed);
        } else {
            self.report.duplicates += 1;
        }
    }
}
