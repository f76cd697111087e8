//! A connected STOMP client: frames in (SEND, SUBSCRIBE, UNSUBSCRIBE, ACK,
//! NACK, BEGIN, COMMIT, ABORT, DISCONNECT), MESSAGE frames out from the
//! session's [`Drain`], heart-beats both ways, receipts.
//!
//! Destinations are MQTT topics (SEND) and filters (SUBSCRIBE: wildcards
//! and `$share/<group>/…` included), behind the listener's mountpoint.
//! Every SEND and SUBSCRIBE passes the listener's ACL chain; a refusal is
//! an ERROR, then close, as is every protocol error.
//!
//! Ack modes: `auto` acknowledges a QoS 1/2 delivery as it is written;
//! `client` (cumulative: an ACK covers the subscription's earlier messages
//! too) and `client-individual` keep it in the session's window until the
//! ACK; a NACK takes it out of the window without delivering it again.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use portcullis_core::broker::Broker;
use portcullis_core::codec::reason::ReasonCode;
use portcullis_core::codec::{RetainHandling, SubscriptionOptions};
use portcullis_core::connection::DisconnectReason;
use portcullis_core::drain::Drain;
use portcullis_core::gate::{Access, AclOutcome, ClientInfo, Gate};
use portcullis_core::inject::{OutsideMessage, Prepared, Published};
use portcullis_core::logsafe::Peer;
use portcullis_core::message::Delivery;
use portcullis_core::session::{Kick, Outgoing};
use portcullis_core::subscription::{self, Refused};
use portcullis_core::topic::TopicName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tracing::debug;

use crate::config::StompConfig;
use crate::connect::error_frame;
use crate::frame::{Decoded, Decoder, Frame, Version};
use crate::headers;

/// Above this many unsent bytes no more deliveries are pulled.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// A write that takes longer closes the connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Missed heart-beats: silence for this many negotiated intervals.
const HEARTBEAT_TOLERANCE: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AckMode {
    Auto,
    Client,
    ClientIndividual,
}

#[derive(Debug)]
struct Sub {
    /// The STOMP `id`.
    id: String,
    /// The MQTT filter the destination names (after the mountpoint).
    asked: String,
    /// The filter the session holds (after the subscribe hooks), its key.
    raw: String,
    ack: AckMode,
}

/// A delivery waiting for the client's ACK or NACK.
#[derive(Debug)]
struct Unacked {
    message_id: u64,
    sub: u32,
    packet_id: u16,
}

#[derive(Debug)]
struct Transaction {
    began: Instant,
    frames: Vec<Frame>,
    bytes: usize,
}

/// How the connection ends.
#[derive(Debug)]
pub(crate) struct End {
    pub reason: DisconnectReason,
    /// An ERROR frame to send first.
    pub error: Option<Frame>,
}

impl End {
    fn error(reason: DisconnectReason, frame: &Frame, message: &str) -> End {
        let mut e = error_frame(message);
        if let Some(r) = frame.header("receipt") {
            e.headers.push(("receipt-id".to_string(), r.to_string()));
        }
        End { reason, error: Some(e) }
    }
    fn protocol(frame: &Frame, message: &str) -> End {
        End::error(DisconnectReason::Malformed(ReasonCode::ProtocolError), frame, message)
    }
}

pub(crate) struct Session {
    pub broker: Arc<Broker>,
    pub gate: Arc<dyn Gate>,
    pub cfg: Arc<StompConfig>,
    pub version: Version,
    pub client: Arc<ClientInfo>,
    pub drain: Drain,
    pub decoder: Decoder,
    pub wbuf: BytesMut,
    pub send_every: Option<Duration>,
    pub receive_every: Option<Duration>,
    subs: HashMap<u32, Sub>,
    next_sub: u32,
    next_message: u64,
    unacked: VecDeque<Unacked>,
    txs: HashMap<String, Transaction>,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        broker: Arc<Broker>,
        gate: Arc<dyn Gate>,
        cfg: Arc<StompConfig>,
        version: Version,
        client: Arc<ClientInfo>,
        drain: Drain,
        decoder: Decoder,
        send_every: Option<Duration>,
        receive_every: Option<Duration>,
    ) -> Session {
        Session {
            broker,
            gate,
            cfg,
            version,
            client,
            drain,
            decoder,
            wbuf: BytesMut::new(),
            send_every,
            receive_every,
            subs: HashMap::new(),
            next_sub: 1,
            next_message: 1,
            unacked: VecDeque::new(),
            txs: HashMap::new(),
        }
    }

    fn send(&mut self, f: &Frame) {
        f.encode(self.version, &mut self.wbuf);
    }

    /// The event loop, until the connection ends.
    pub async fn run<R, W>(
        &mut self,
        reader: &mut R,
        writer: &mut W,
        rbuf: &mut BytesMut,
        mut kicked: tokio::sync::oneshot::Receiver<Kick>,
    ) -> End
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut shutdown = self.broker.shutdown_signal();
        let mut last_read = Instant::now();
        let mut last_write = Instant::now();
        let far = Duration::from_secs(86400 * 365);
        // Frames that arrived with the CONNECT.
        if let Err(e) = self.process(rbuf).await {
            return e;
        }
        self.pump().await;
        loop {
            if !self.wbuf.is_empty() {
                match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(&self.wbuf)).await {
                    Ok(Ok(())) => {
                        self.wbuf.clear();
                        last_write = Instant::now();
                        let _ = writer.flush().await;
                        // Room again: pull what waits.
                        self.pump().await;
                        if !self.wbuf.is_empty() {
                            continue;
                        }
                    }
                    _ => return End { reason: DisconnectReason::WriteFailed, error: None },
                }
            }
            let beat_at = self.send_every.map_or(last_write + far, |d| last_write + d);
            let silent_at = self.receive_every.map_or(last_read + far, |d| last_read + d * HEARTBEAT_TOLERANCE);
            let tx_at =
                self.txs.values().map(|t| t.began + self.cfg.transaction_timeout).min().unwrap_or(last_read + far);
            let mut chunk = [0u8; 8192];
            tokio::select! {
                r = reader.read(&mut chunk) => match r {
                    Ok(0) => return End { reason: DisconnectReason::PeerClosed, error: None },
                    Err(_) => return End { reason: DisconnectReason::ReadError, error: None },
                    Ok(n) => {
                        last_read = Instant::now();
                        rbuf.extend_from_slice(&chunk[..n]);
                        if let Err(e) = self.process(rbuf).await {
                            return e;
                        }
                    }
                },
                k = &mut kicked => {
                    let reason = match k {
                        Ok(Kick::TakenOver { .. }) => DisconnectReason::TakenOver,
                        Ok(Kick::Shutdown) => DisconnectReason::ServerShutdown,
                        Ok(Kick::SlowConsumer) => DisconnectReason::SlowConsumer,
                        Ok(Kick::Administrative) | Err(_) => DisconnectReason::AdministrativeAction,
                    };
                    return End { reason, error: Some(error_frame("connection closed by the broker")) };
                }
                _ = shutdown.changed() => {
                    return End { reason: DisconnectReason::ServerShutdown, error: Some(error_frame("server shutting down")) };
                }
                () = self.drain.wait() => self.pump().await,
                () = tokio::time::sleep_until(beat_at) => {
                    self.wbuf.extend_from_slice(b"\n");
                }
                () = tokio::time::sleep_until(silent_at) => {
                    debug!(client_id = %Peer(&self.client.client_id), "no heart-beat from the client; closing");
                    return End { reason: DisconnectReason::KeepAliveTimeout, error: None };
                }
                () = tokio::time::sleep_until(tx_at) => {
                    let f = Frame::new("BEGIN");
                    return End::protocol(&f, "transaction timed out and was aborted");
                }
            }
        }
    }

    /// Handles every whole frame in `rbuf`.
    async fn process(&mut self, rbuf: &mut BytesMut) -> Result<(), End> {
        loop {
            match self.decoder.decode(rbuf) {
                Ok(None) => return Ok(()),
                Ok(Some(Decoded::Heartbeat)) => {}
                // Not counted as MQTT packets (`packets_received` is per
                // MQTT packet type).
                Ok(Some(Decoded::Frame(f))) => self.handle(f).await?,
                Err(e) => {
                    self.broker.metrics.protocol_errors.fetch_add(1, Ordering::Relaxed);
                    let reason = DisconnectReason::Malformed(ReasonCode::MalformedPacket);
                    return Err(End::error(reason, &Frame::new("X"), &e.to_string()));
                }
            }
        }
    }

    async fn handle(&mut self, f: Frame) -> Result<(), End> {
        match f.command.as_str() {
            "SEND" => self.on_send(&f, true).await?,
            "SUBSCRIBE" => self.on_subscribe(&f).await?,
            "UNSUBSCRIBE" => self.on_unsubscribe(&f)?,
            // STOMP 1.0 has no NACK.
            "NACK" if self.version == Version::V10 => return Err(End::protocol(&f, "unknown command")),
            "ACK" | "NACK" => self.on_ack(&f, true)?,
            "BEGIN" => self.on_begin(&f)?,
            "COMMIT" => self.on_commit(&f).await?,
            "ABORT" => {
                let id = f.header("transaction").ok_or_else(|| End::protocol(&f, "missing transaction header"))?;
                if self.txs.remove(id).is_none() {
                    return Err(End::protocol(&f, "no such transaction"));
                }
            }
            "DISCONNECT" => {
                self.receipt(&f);
                return Err(End { reason: DisconnectReason::ClientDisconnect { with_will: false }, error: None });
            }
            "CONNECT" | "STOMP" => return Err(End::protocol(&f, "already connected")),
            _ => return Err(End::protocol(&f, "unknown command")),
        }
        self.receipt(&f);
        Ok(())
    }

    fn receipt(&mut self, f: &Frame) {
        if let Some(r) = f.header("receipt") {
            let r = Frame::new("RECEIPT").with("receipt-id", r);
            self.send(&r);
        }
    }

    /// A SEND, ACK or NACK inside a transaction: held until COMMIT.
    fn hold(&mut self, f: &Frame) -> Result<bool, End> {
        let Some(id) = f.header("transaction") else { return Ok(false) };
        let (max_frames, max_bytes) =
            (self.cfg.max_transaction_frames as usize, self.cfg.max_transaction_bytes as usize);
        let Some(tx) = self.txs.get_mut(id) else { return Err(End::protocol(f, "no such transaction")) };
        if tx.frames.len() >= max_frames || tx.bytes + f.body.len() > max_bytes {
            return Err(End::protocol(f, "transaction too large"));
        }
        tx.bytes += f.body.len();
        tx.frames.push(f.clone());
        Ok(true)
    }

    fn on_begin(&mut self, f: &Frame) -> Result<(), End> {
        let id = f.header("transaction").ok_or_else(|| End::protocol(f, "missing transaction header"))?;
        if self.txs.contains_key(id) {
            return Err(End::protocol(f, "transaction already begun"));
        }
        if self.txs.len() >= self.cfg.max_transactions as usize {
            return Err(End::protocol(f, "too many transactions open"));
        }
        self.txs.insert(id.to_string(), Transaction { began: Instant::now(), frames: Vec::new(), bytes: 0 });
        Ok(())
    }

    async fn on_commit(&mut self, f: &Frame) -> Result<(), End> {
        let id = f.header("transaction").ok_or_else(|| End::protocol(f, "missing transaction header"))?;
        let tx = self.txs.remove(id).ok_or_else(|| End::protocol(f, "no such transaction"))?;
        for held in tx.frames {
            match held.command.as_str() {
                "SEND" => self.on_send(&held, false).await?,
                _ => self.on_ack(&held, false)?,
            }
        }
        Ok(())
    }

    /// The MQTT topic of a destination (the mountpoint before it).
    fn topic_of(&self, f: &Frame) -> Result<TopicName, End> {
        let dest = f.header("destination").ok_or_else(|| End::protocol(f, "missing destination header"))?;
        let topic = format!("{}{dest}", self.cfg.mountpoint);
        TopicName::new(&topic).map_err(|_| End::protocol(f, "destination is not a valid MQTT topic name"))
    }

    async fn on_send(&mut self, f: &Frame, may_hold: bool) -> Result<(), End> {
        let topic = self.topic_of(f)?;
        let limits = &self.broker.settings.limits;
        let properties =
            headers::to_properties(f, &self.cfg.mountpoint, limits.max_user_properties, limits.max_user_property_bytes)
                .map_err(|r| End::protocol(f, r.message()))?;
        if may_hold && self.hold(f)? {
            return Ok(());
        }
        if topic.has_more_levels_than(self.broker.settings.limits.max_topic_levels) {
            return Err(End::protocol(f, "destination has too many levels"));
        }
        let qos = self.cfg.send_qos();
        let m = OutsideMessage { topic, payload: f.body.clone(), qos, retain: false, properties, expiry: None };
        let ready = match self.broker.prepare_client_publish(&self.client, m) {
            Prepared::Ready(r) => r,
            Prepared::Dropped(_) => return Ok(()),
        };
        let t = &ready.message().topic;
        let allowed = if t.as_str().starts_with("$SYS/") || t.as_str() == "$SYS" {
            AclOutcome::Deny
        } else {
            self.gate.authorize(&self.client, Access::Publish { topic: t, qos, retain: false }).await
        };
        if allowed != AclOutcome::Allow {
            self.broker.refuse_publish(ready);
            debug!(client_id = %Peer(&self.client.client_id), "SEND denied");
            return Err(End::error(DisconnectReason::NotAuthorized, f, "not authorized to send to this destination"));
        }
        if let Published::Routed(r) = self.broker.complete_publish(ready) {
            if r.remote_congested {
                // Back-pressure from the other nodes (see
                // `portcullis_core::remote`): read nothing until the
                // cluster's outbound queue drains, at most stall_timeout.
                self.broker.wait_remote_drained().await;
            }
        }
        Ok(())
    }

    /// `$share/<group>/<filter>` keeps the group in front of the mountpoint.
    fn filter_of(&self, dest: &str) -> String {
        let mount = &self.cfg.mountpoint;
        if let Some(rest) = dest.strip_prefix("$share/") {
            if let Some((group, filter)) = rest.split_once('/') {
                return format!("$share/{group}/{mount}{filter}");
            }
        }
        if let Some(filter) = dest.strip_prefix("$queue/") {
            return format!("$queue/{mount}{filter}");
        }
        format!("{mount}{dest}")
    }

    async fn on_subscribe(&mut self, f: &Frame) -> Result<(), End> {
        let dest = f.header("destination").ok_or_else(|| End::protocol(f, "missing destination header"))?;
        let id = match (f.header("id"), self.version) {
            (Some(id), _) => id.to_string(),
            (None, Version::V10) => dest.to_string(),
            (None, _) => return Err(End::protocol(f, "missing id header")),
        };
        let ack = match f.header("ack").unwrap_or("auto") {
            "auto" => AckMode::Auto,
            "client" => AckMode::Client,
            "client-individual" if self.version != Version::V10 => AckMode::ClientIndividual,
            _ => return Err(End::protocol(f, "invalid ack header")),
        };
        if self.subs.values().any(|s| s.id == id) {
            return Err(End::protocol(f, "subscription id already in use"));
        }
        let asked = self.filter_of(dest);
        let session = Arc::clone(self.drain.session());
        let options = SubscriptionOptions {
            qos: self.cfg.subscribe_qos(),
            no_local: false,
            retain_as_published: false,
            retain_handling: RetainHandling::OnSubscribe,
        };
        // The same step as an MQTT SUBSCRIBE's filter: hooks (which may
        // rewrite it), limits, ACL.
        let checked = subscription::check(&self.broker, &*self.gate, &session, &self.client, asked.clone(), options);
        let c = match checked.await {
            Ok(c) => c,
            Err(Refused::Hook(code)) => {
                debug!(client_id = %Peer(&self.client.client_id), filter = %Peer(&asked), ?code, "SUBSCRIBE refused by a hook");
                return Err(End::protocol(f, "subscription refused"));
            }
            Err(Refused::InvalidFilter) => {
                return Err(End::protocol(f, "destination is not a valid MQTT topic filter"))
            }
            Err(Refused::Limit(why)) => return Err(End::protocol(f, why)),
            Err(Refused::Denied | Refused::DenyDisconnect) => {
                debug!(client_id = %Peer(&self.client.client_id), filter = %Peer(&asked), "SUBSCRIBE denied");
                return Err(End::error(
                    DisconnectReason::NotAuthorized,
                    f,
                    "not authorized to subscribe to this destination",
                ));
            }
        };
        // One STOMP subscription per MQTT filter: a second would take the
        // first one's place in the session.
        if session.subscription(&c.raw).is_some() {
            return Err(End::protocol(f, "already subscribed to this destination"));
        }
        let n = self.next_sub;
        self.next_sub = self.next_sub.wrapping_add(1).max(1);
        c.commit(&self.broker, &session, Some(n));
        let (filter, qos, check) = (c.filter, c.options.qos, c.check);
        self.subs.insert(n, Sub { id, asked, raw: c.raw, ack });
        if !filter.is_shared() {
            let now = std::time::Instant::now();
            for msg in self.broker.retained.matching(&filter.filter, now) {
                let d = Delivery::new(Arc::clone(&msg), msg.qos.min(qos), true, vec![n], check);
                session.enqueue(d, &self.broker.settings.session, &self.broker.metrics);
            }
        }
        Ok(())
    }

    fn on_unsubscribe(&mut self, f: &Frame) -> Result<(), End> {
        let id = match (f.header("id"), f.header("destination"), self.version) {
            (Some(id), _, _) => id.to_string(),
            (None, Some(d), Version::V10) => d.to_string(),
            _ => return Err(End::protocol(f, "missing id header")),
        };
        let Some(n) = self.subs.iter().find(|(_, s)| s.id == id).map(|(n, _)| *n) else {
            return Err(End::protocol(f, "no such subscription"));
        };
        let Some(sub) = self.subs.remove(&n) else { return Ok(()) };
        // The same step as an MQTT UNSUBSCRIBE, on the destination as asked
        // (the hooks rewrite it as they did at SUBSCRIBE).
        let session = self.drain.session();
        match subscription::unsubscribe(&self.broker, session, &self.client, sub.asked) {
            Err(_) => return Err(End::protocol(f, "unsubscribe refused")),
            // Hooks that changed since: the held filter goes too.
            Ok((raw, _)) if raw != sub.raw => {
                self.broker.unsubscribe(session, &sub.raw);
            }
            Ok(_) => {}
        }
        // Its unacknowledged messages leave the window.
        let (gone, keep): (VecDeque<_>, VecDeque<_>) = self.unacked.drain(..).partition(|u| u.sub == n);
        self.unacked = keep;
        for u in gone {
            self.drain.nack(u.packet_id);
        }
        Ok(())
    }

    fn on_ack(&mut self, f: &Frame, may_hold: bool) -> Result<(), End> {
        let key = if self.version == Version::V12 { "id" } else { "message-id" };
        let id = f.header(key).ok_or_else(|| End::protocol(f, "missing id header"))?;
        if may_hold && self.hold(f)? {
            return Ok(());
        }
        let nack = f.command == "NACK";
        let Ok(message_id) = id.parse::<u64>() else { return Ok(()) };
        let Some(pos) = self.unacked.iter().position(|u| u.message_id == message_id) else {
            // Unknown or already acknowledged (or a QoS 0 delivery): nothing to do.
            return Ok(());
        };
        let sub = self.unacked[pos].sub;
        let cumulative = self.subs.get(&sub).is_some_and(|s| s.ack == AckMode::Client);
        let done: Vec<Unacked> = if cumulative {
            let (gone, keep): (VecDeque<_>, VecDeque<_>) =
                self.unacked.drain(..).partition(|u| u.sub == sub && u.message_id <= message_id);
            self.unacked = keep;
            gone.into()
        } else {
            self.unacked.remove(pos).into_iter().collect()
        };
        for u in done {
            if nack {
                self.drain.nack(u.packet_id);
            } else {
                self.drain.ack(u.packet_id);
            }
        }
        Ok(())
    }

    /// Moves deliveries into MESSAGE frames while the write buffer has room.
    pub async fn pump(&mut self) {
        while self.wbuf.len() < WRITE_HIGH_WATER {
            let Some(out) = self.drain.next().await else { return };
            self.message(out);
        }
    }

    fn message(&mut self, out: Outgoing) {
        let d = &out.delivery;
        let Some((n, sub)) = d.subscription_ids.iter().find_map(|n| self.subs.get(n).map(|s| (*n, s))) else {
            // Its subscription went meanwhile.
            if let Some(id) = out.packet_id {
                self.drain.nack(id);
            }
            return;
        };
        let topic = d.msg.topic.as_str();
        let dest = topic.strip_prefix(self.cfg.mountpoint.as_str()).unwrap_or(topic);
        let message_id = self.next_message;
        self.next_message += 1;
        let mut frame = Frame::new("MESSAGE")
            .with("destination", dest)
            .with("message-id", message_id.to_string())
            .with("subscription", sub.id.clone());
        if self.version == Version::V12 && sub.ack != AckMode::Auto {
            frame = frame.with("ack", message_id.to_string());
        }
        headers::add_properties(&mut frame, d.msg.properties(), &self.cfg.mountpoint, self.version);
        frame = frame.with("content-length", d.msg.payload.len().to_string());
        frame.body = d.msg.payload.clone();
        let ack = sub.ack;
        self.send(&frame);
        if let Some(packet_id) = out.packet_id {
            match ack {
                AckMode::Auto => {
                    self.drain.ack(packet_id);
                }
                AckMode::Client | AckMode::ClientIndividual => {
                    self.unacked.push_back(Unacked { message_id, sub: n, packet_id })
                }
            }
        }
    }
}
