//! One bridge's task: the local link stays up for the life of the broker;
//! the remote one comes and goes. Messages for the remote wait in a
//! bounded queue while it is away; QoS 1/2 messages in flight when it
//! goes are sent again after the reconnect (at least once). The operator
//! may stop and start it ([`crate::control`]): stopped, it is an outage
//! that does not reconnect until started.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use portcullis_core::broker::Broker;
use portcullis_core::codec::{Disconnect, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS};
use portcullis_core::message::Message;
use portcullis_core::topic::TopicName;
use rand::Rng;
use tokio::time::{sleep_until, Instant};
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::config::BridgeConfig;
use crate::control::Control;
use crate::link::{Link, LinkError};
use crate::metrics::BridgeMetrics;
use crate::remote::{self, ConnectError};
use crate::rule::TopicRule;

/// A message on its way to the remote.
#[derive(Debug, Clone)]
struct Outgoing {
    topic: String,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    properties: Properties,
}

/// Where an outgoing QoS 1/2 message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Sent; waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREL sent; waiting for PUBCOMP.
    Released,
}

/// The remote connection while it is up.
#[derive(Debug)]
struct Remote {
    link: Link,
    /// In-flight window: ours, lowered by a v5 remote's Receive Maximum.
    window: usize,
    /// When the remote last sent anything.
    heard: Instant,
}

/// Everything one bridge holds.
pub(crate) struct Bridge {
    pub cfg: BridgeConfig,
    pub rules: Vec<TopicRule>,
    pub broker: Arc<Broker>,
    pub metrics: Arc<BridgeMetrics>,
    /// The management plane's switch (and where the address in use shows).
    pub control: Arc<Control>,
    pub password: Option<Bytes>,
    pub tls: Option<TlsConnector>,
    /// The local client's id (the publisher of what comes in).
    pub local_id: Arc<str>,
    queue: VecDeque<Outgoing>,
    inflight: VecDeque<(u16, Outgoing, Stage)>,
    /// QoS 2 packet ids from the remote awaiting PUBREL (duplicates are
    /// not published twice).
    awaiting_rel: Vec<u16>,
    next_id: u16,
    /// The remote refused the bridge bit: connect without it from now on.
    private_refused: bool,
    attempt: usize,
    backoff: Duration,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge").field("name", &self.cfg.name).field("queued", &self.queue.len()).finish()
    }
}

/// Why the loop of one connection ended.
enum End {
    /// The remote went away (or misbehaved): reconnect.
    Remote(String),
    /// The local session was closed under the bridge (a takeover with
    /// `session.owner_mismatch = "discard"`, a kick): open it again.
    Local(String),
    /// The broker is stopping: stop the bridge.
    Stop,
    /// The operator stopped the bridge: disconnect and wait for a start.
    Stopped,
}

/// A wait between `d / 2` and `d`.
pub(crate) fn jitter(d: Duration) -> Duration {
    let half = d / 2;
    half + half.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
}

impl Bridge {
    pub fn new(
        cfg: BridgeConfig,
        broker: Arc<Broker>,
        metrics: Arc<BridgeMetrics>,
        control: Arc<Control>,
        password: Option<Bytes>,
        tls: Option<TlsConnector>,
    ) -> Bridge {
        let rules = cfg.rules();
        let local_id: Arc<str> = Arc::from(format!("$bridge/{}", cfg.name));
        let backoff = cfg.reconnect_min;
        Bridge {
            cfg,
            rules,
            broker,
            metrics,
            control,
            password,
            tls,
            local_id,
            queue: VecDeque::new(),
            inflight: VecDeque::new(),
            awaiting_rel: Vec::new(),
            next_id: 1,
            private_refused: false,
            attempt: 0,
            backoff,
        }
    }

    fn set_state(&self, up: bool) {
        self.metrics.connected.store(u64::from(up), Relaxed);
        if self.cfg.notifications {
            self.broker.publish_sys(&self.cfg.state_topic(), if up { "1" } else { "0" }, true);
        }
    }

    fn update_queued(&self) {
        self.metrics.queued.store((self.queue.len() + self.inflight.len()) as u64, Relaxed);
    }

    /// Runs until the broker stops.
    pub async fn run(mut self) {
        let name = self.cfg.name.clone();
        let mut local = match crate::local::connect(&self.broker, &name, &self.local_id, &self.rules).await {
            Ok(l) => l,
            Err(e) => {
                warn!(bridge = %name, error = %e, "bridge: local connection failed; bridge not started");
                return;
            }
        };
        let mut shutdown = self.broker.shutdown_signal();
        // `self.control` holds the sender: this never sees it closed.
        let mut running = self.control.watch();
        self.set_state(false);
        let mut next_attempt = Instant::now();
        loop {
            // Waiting for the next attempt (or, stopped, for a start), the
            // local side is served.
            loop {
                let on = *running.borrow_and_update();
                if on && Instant::now() >= next_attempt {
                    break;
                }
                tokio::select! {
                    _ = sleep_until(next_attempt), if on => {}
                    r = running.changed() => {
                        if r.is_ok() && *running.borrow() {
                            info!(bridge = %name, "bridge started by the operator");
                            self.backoff = self.cfg.reconnect_min;
                            next_attempt = Instant::now();
                        }
                    }
                    _ = shutdown.changed() => return self.stop(&mut local, None).await,
                    p = local.recv() => {
                        let lost = match p {
                            Ok(p) => self.on_local(&mut local, p, false).await.err(),
                            Err(e) => Some(e),
                        };
                        if let Some(e) = lost {
                            warn!(bridge = %name, error = %e, "bridge: local session lost; opening it again");
                            match self.reopen_local(&mut shutdown).await {
                                Some(l) => local = l,
                                None => return self.stop(&mut local, None).await,
                            }
                        }
                    }
                }
            }
            if *shutdown.borrow() {
                return self.stop(&mut local, None).await;
            }
            let remote = match self.connect_once().await {
                Ok(r) => r,
                Err(e) => {
                    let wait = jitter(self.backoff);
                    self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
                    info!(bridge = %name, error = %e, retry_in = ?wait, "bridge: connection failed");
                    next_attempt = Instant::now() + wait;
                    continue;
                }
            };
            let mut remote = remote;
            if !*running.borrow() {
                // Stopped while connecting.
                self.close_remote(remote).await;
                continue;
            }
            let connected_at = Instant::now();
            info!(bridge = %name, protocol = ?remote.link.version, queued = self.queue.len(), "bridge connected");
            BridgeMetrics::inc(&self.metrics.connects);
            self.set_state(true);
            if self.cfg.notifications {
                self.queue.push_front(Outgoing {
                    topic: self.cfg.state_topic(),
                    payload: Bytes::from_static(b"1"),
                    qos: QoS::AtLeastOnce,
                    retain: true,
                    properties: Properties::default(),
                });
            }
            let mut end = self.connected(&mut local, &mut remote, &mut shutdown, &mut running).await;
            while let End::Local(why) = &end {
                warn!(bridge = %name, error = %why, "bridge: local session lost; opening it again");
                end = match self.reopen_local(&mut shutdown).await {
                    Some(l) => {
                        local = l;
                        self.connected(&mut local, &mut remote, &mut shutdown, &mut running).await
                    }
                    None => End::Stop,
                };
            }
            self.set_state(false);
            // Unacknowledged messages go first at the next connection.
            while let Some((_, msg, _)) = self.inflight.pop_back() {
                self.queue.push_front(msg);
            }
            self.awaiting_rel.clear();
            self.update_queued();
            match end {
                End::Stop | End::Local(_) => return self.stop(&mut local, Some(remote)).await,
                End::Stopped => {
                    self.close_remote(remote).await;
                    info!(bridge = %name, queued = self.queue.len(), "bridge stopped by the operator");
                }
                End::Remote(why) => {
                    // A connection that held for reconnect_max starts the
                    // backoff again; one the remote drops at once (a bad
                    // rule, a kick loop) keeps doubling it.
                    if connected_at.elapsed() >= self.cfg.reconnect_max {
                        self.backoff = self.cfg.reconnect_min;
                    }
                    let wait = jitter(self.backoff);
                    self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
                    warn!(bridge = %name, reason = %why, retry_in = ?wait, "bridge disconnected");
                    next_attempt = Instant::now() + wait;
                }
            }
        }
    }

    /// Opens the local session again, once a second, until it opens or the
    /// broker stops (`None`).
    async fn reopen_local(&self, shutdown: &mut tokio::sync::watch::Receiver<bool>) -> Option<Link> {
        loop {
            if *shutdown.borrow() {
                return None;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => return None,
            }
            match crate::local::connect(&self.broker, &self.cfg.name, &self.local_id, &self.rules).await {
                Ok(l) => return Some(l),
                Err(e) => warn!(bridge = %self.cfg.name, error = %e, "bridge: local session not opened"),
            }
        }
    }

    /// One attempt at the next address, bounded by `connect_timeout`.
    async fn connect_once(&mut self) -> Result<Remote, ConnectError> {
        let address = self.cfg.addresses[self.attempt % self.cfg.addresses.len()].clone();
        self.control.set_address(&address);
        self.attempt = self.attempt.wrapping_add(1);
        let version: ProtocolVersion = self.cfg.protocol.into();
        let bit = self.cfg.try_private && !self.private_refused && !version.is_v5();
        let attempt = remote::connect(&self.cfg, &address, self.tls.as_ref(), self.password.as_ref(), bit, &self.rules);
        let r = match tokio::time::timeout(self.cfg.connect_timeout, attempt).await {
            Err(_) => Err(ConnectError::Timeout),
            Ok(r) => r,
        };
        let c = match r {
            Err(ConnectError::Refused(1)) if bit => {
                // Mosquitto's rule: the remote does not take bridges; ask
                // again at once as a plain client.
                info!(bridge = %self.cfg.name, "bridge: the remote refused the bridge bit; connecting without it");
                self.private_refused = true;
                self.attempt = self.attempt.wrapping_sub(1);
                return Box::pin(self.connect_once()).await;
            }
            other => other?,
        };
        if c.session_present {
            debug!(bridge = %self.cfg.name, "bridge: remote session resumed");
        }
        let window = usize::from(self.cfg.max_inflight).min(usize::from(c.receive_maximum.unwrap_or(u16::MAX))).max(1);
        Ok(Remote { link: c.link, window, heard: Instant::now() })
    }

    /// Serves both links until the remote goes or the broker stops.
    async fn connected(
        &mut self,
        local: &mut Link,
        remote: &mut Remote,
        shutdown: &mut tokio::sync::watch::Receiver<bool>,
        running: &mut tokio::sync::watch::Receiver<bool>,
    ) -> End {
        let keepalive = self.cfg.keepalive;
        let mut tick = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        loop {
            if let Err(e) = self.pump(remote).await {
                return End::Remote(e.to_string());
            }
            tokio::select! {
                _ = shutdown.changed() => return End::Stop,
                r = running.changed() => if r.is_ok() && !*running.borrow() {
                    return End::Stopped;
                },
                p = local.recv() => match p {
                    Ok(p) => if let Err(e) = self.on_local(local, p, true).await {
                        return End::Local(e.to_string());
                    },
                    Err(e) => return End::Local(e.to_string()),
                },
                p = remote.link.recv() => match p {
                    Ok(p) => {
                        remote.heard = Instant::now();
                        if let Err(e) = self.on_remote(remote, p).await {
                            return End::Remote(e);
                        }
                    }
                    Err(e) => return End::Remote(e.to_string()),
                },
                _ = tick.tick() => {
                    if remote.heard.elapsed() > keepalive + keepalive / 2 {
                        return End::Remote("keep-alive timeout".into());
                    }
                    if let Err(e) = remote.link.send(&Packet::PingReq).await {
                        return End::Remote(e.to_string());
                    }
                }
            }
        }
    }

    fn alloc_id(&mut self) -> u16 {
        loop {
            // 1 is the remote SUBSCRIBE's.
            self.next_id = if self.next_id == u16::MAX { 2 } else { self.next_id.max(1) + 1 };
            let id = self.next_id;
            if !self.inflight.iter().any(|(i, _, _)| *i == id) {
                return id;
            }
        }
    }

    /// Sends queued messages while the window has room.
    async fn pump(&mut self, remote: &mut Remote) -> Result<(), LinkError> {
        while self.inflight.len() < remote.window {
            let Some(msg) = self.queue.pop_front() else { break };
            let packet_id = (msg.qos != QoS::AtMostOnce).then(|| self.alloc_id());
            let properties = if remote.link.version.is_v5() { msg.properties.clone() } else { Properties::default() };
            let p = Publish {
                dup: false,
                qos: msg.qos,
                retain: msg.retain,
                topic: msg.topic.clone(),
                packet_id,
                payload: msg.payload.clone(),
                properties,
            };
            remote.link.send(&Packet::Publish(p)).await?;
            match packet_id {
                Some(id) => self.inflight.push_back((id, msg, Stage::Sent)),
                None => BridgeMetrics::inc(&self.metrics.messages_out),
            }
        }
        self.update_queued();
        Ok(())
    }

    /// A packet from the local broker. `Err` when the local link broke.
    async fn on_local(&mut self, local: &mut Link, p: Packet, remote_up: bool) -> Result<(), LinkError> {
        match p {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => local.send(&Packet::PubAck(PubResp::ok(id))).await?,
                    (QoS::ExactlyOnce, Some(id)) => local.send(&Packet::PubRec(PubResp::ok(id))).await?,
                    _ => {}
                }
                self.take_local(p, remote_up);
            }
            Packet::PubRel(r) => local.send(&Packet::PubComp(PubResp::ok(r.packet_id))).await?,
            Packet::SubAck(a) if a.return_codes.iter().any(|c| *c >= 0x80) => {
                warn!(bridge = %self.cfg.name, codes = ?a.return_codes, "bridge: the local broker refused a subscription");
            }
            Packet::Disconnect(_) => return Err(LinkError::Closed),
            _ => {}
        }
        Ok(())
    }

    /// Maps a local message through the rule that matched it and queues it.
    fn take_local(&mut self, p: Publish, remote_up: bool) {
        let Ok(topic) = TopicName::new(&p.topic) else { return };
        // The first outgoing rule whose local filter matches, as Mosquitto.
        let Some(remote_topic) = self.rules.iter().find_map(|r| r.to_remote(&topic)) else { return };
        let held = self.queue.len() + self.inflight.len();
        if (!remote_up && p.qos == QoS::AtMostOnce) || held >= self.cfg.max_queued {
            BridgeMetrics::inc(&self.metrics.dropped);
            return;
        }
        let mut properties = p.properties;
        properties.subscription_identifiers.clear();
        properties.topic_alias = None;
        self.queue.push_back(Outgoing {
            topic: remote_topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
        });
        self.update_queued();
    }

    /// A packet from the remote. `Err` (why) ends the connection.
    async fn on_remote(&mut self, remote: &mut Remote, p: Packet) -> Result<(), String> {
        let link = &mut remote.link;
        match p {
            Packet::Publish(p) => {
                match (p.qos, p.packet_id) {
                    (QoS::AtLeastOnce, Some(id)) => {
                        link.send(&Packet::PubAck(PubResp::ok(id))).await.map_err(|e| e.to_string())?;
                    }
                    (QoS::ExactlyOnce, Some(id)) => {
                        link.send(&Packet::PubRec(PubResp::ok(id))).await.map_err(|e| e.to_string())?;
                        if self.awaiting_rel.contains(&id) {
                            return Ok(());
                        }
                        if self.awaiting_rel.len() < 65535 {
                            self.awaiting_rel.push(id);
                        }
                    }
                    _ => {}
                }
                self.bring_in(p);
            }
            Packet::PubRel(r) => {
                self.awaiting_rel.retain(|i| *i != r.packet_id);
                link.send(&Packet::PubComp(PubResp::ok(r.packet_id))).await.map_err(|e| e.to_string())?;
            }
            Packet::PubAck(r) | Packet::PubComp(r) => {
                if let Some(at) = self.inflight.iter().position(|(id, _, _)| *id == r.packet_id) {
                    self.inflight.remove(at);
                    BridgeMetrics::inc(&self.metrics.messages_out);
                }
            }
            Packet::PubRec(r) => {
                if let Some(entry) = self.inflight.iter_mut().find(|(id, _, _)| *id == r.packet_id) {
                    if r.reason >= 0x80 {
                        // Refused by the remote: counted as dropped, not retried.
                        let id = r.packet_id;
                        self.inflight.retain(|(i, _, _)| *i != id);
                        BridgeMetrics::inc(&self.metrics.dropped);
                        return Ok(());
                    }
                    entry.2 = Stage::Released;
                }
                link.send(&Packet::PubRel(PubResp::ok(r.packet_id))).await.map_err(|e| e.to_string())?;
            }
            Packet::SubAck(a) => {
                if a.return_codes.iter().any(|c| *c >= 0x80) {
                    warn!(bridge = %self.cfg.name, codes = ?a.return_codes, "bridge: the remote refused a subscription");
                }
            }
            Packet::Disconnect(d) => return Err(format!("DISCONNECT from the remote (reason {:#04x})", d.reason)),
            Packet::PingResp | Packet::UnsubAck(_) => {}
            other => return Err(format!("unexpected {} from the remote", other.name())),
        }
        self.update_queued();
        Ok(())
    }

    /// Publishes a remote message locally, through the first rule that
    /// carries its topic in.
    fn bring_in(&mut self, p: Publish) {
        let Ok(topic) = TopicName::new(&p.topic) else { return };
        let Some(local) = self.rules.iter().find_map(|r| r.to_local(&topic)) else { return };
        let Ok(local) = TopicName::new(&local) else { return };
        let mut properties = p.properties;
        properties.subscription_identifiers.clear();
        properties.topic_alias = None;
        let expires_at = properties
            .message_expiry_interval
            .take()
            .map(|s| std::time::Instant::now() + Duration::from_secs(u64::from(s)));
        let properties = (properties != Properties::default()).then(|| Box::new(properties));
        let msg = Message {
            topic: local,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            properties,
            publisher: Some(Arc::clone(&self.local_id)),
            expires_at,
        };
        BridgeMetrics::inc(&self.metrics.messages_in);
        self.broker.publish(Arc::new(msg));
    }

    /// The broker is stopping: state `0` on the remote and locally.
    async fn stop(&mut self, local: &mut Link, remote: Option<Remote>) {
        if let Some(remote) = remote {
            self.close_remote(remote).await;
        }
        self.set_state(false);
        local.shutdown().await;
        info!(bridge = %self.cfg.name, "bridge stopped");
    }

    /// A clean end of the remote connection: state `0` on the remote (the
    /// will is not sent on a clean DISCONNECT), then DISCONNECT.
    async fn close_remote(&mut self, mut remote: Remote) {
        if self.cfg.notifications {
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: true,
                topic: self.cfg.state_topic(),
                packet_id: None,
                payload: Bytes::from_static(b"0"),
                properties: Properties::default(),
            };
            let _ = remote.link.send(&Packet::Publish(p)).await;
        }
        let _ =
            remote.link.send(&Packet::Disconnect(Disconnect { reason: 0, properties: Properties::default() })).await;
        remote.link.shutdown().await;
    }
}
