//! Listeners: bind each configured socket, accept, establish the transport
//! (PROXY header, TLS, WebSocket upgrade), and hand the resulting byte
//! stream, the client's address and its certificate identity to the
//! core's connection state machine.
//!
//! * `proxy` — PROXY protocol v1/v2 headers.
//! * `tls` — the rustls configuration of a TLS listener and its reload.
//! * `identity` — a client certificate's CN, subject DN and SANs.
//! * `ws` — the WebSocket upgrade and the message ⇄ byte stream adapter.
//! * `forwarded` — `Forwarded` / `X-Forwarded-For` from trusted proxies.
//! * STOMP listeners (`stomp`, `stomp_tls`) hand the stream to
//!   [`portcullis_stomp::serve`] instead of the MQTT state machine;
//!   `sockjs` / `sockjs_tls` listeners hand each socket (after the PROXY
//!   header and the TLS handshake, if any)
//!   to their [`portcullis_stomp::sockjs::SockJs`] HTTP server, which
//!   starts a STOMP connection per SockJS session.
//! * `stats` — the listeners' metrics (connections, handshake failures,
//!   sockets refused at accept).
//!
//! Everything before MQTT runs under the listener's `handshake_timeout`.
//! Its failures (no PROXY header, a bad ClientHello, an unknown client
//! certificate, a refused upgrade) are counted per listener (`$SYS`,
//! Prometheus) and logged at warn level at most once per
//! [`FAILURE_LOG_INTERVAL`] per listener (each one at debug level), so a
//! flood of junk cannot flood the log. A plain TCP listener without PROXY
//! protocol hands its sockets to the core directly, adding nothing to a
//! connection's memory.
//!
//! TCP keepalive (`tcp_keepalive`) is set on the listening socket: Linux
//! gives every accepted socket the listener's SO_KEEPALIVE, TCP_KEEPIDLE,
//! TCP_KEEPINTVL and TCP_KEEPCNT, so accepting costs no extra system call.

mod forwarded;
mod identity;
mod proxy;
mod stats;
mod tls;
mod ws;

use std::fmt::Display;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_core::broker::Broker;
use portcullis_core::connection::{serve, Admitted, ListenerContext};
use portcullis_core::gate::{CertIdentity, Gate};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;
use tracing::{debug, error, info, warn};

use crate::config::{ListenerConfig, ListenerKind};

/// At most one warn line about handshake failures per listener per this.
const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Every running listener.
#[derive(Debug)]
pub struct Listeners {
    listeners: Vec<Arc<Listener>>,
    tasks: Vec<JoinHandle<()>>,
    /// Index in `tasks` of each listener's accept loop.
    accepting: Vec<usize>,
}

/// A listener as the management plane shows it.
#[derive(Debug, Clone)]
pub struct ListenerView {
    pub name: String,
    pub kind: ListenerKind,
    /// The configured address.
    pub bind: SocketAddr,
    /// The address bound (the port the OS chose for port 0).
    pub local_addr: Option<SocketAddr>,
    /// Still accepting.
    pub running: bool,
    pub max_connections: usize,
    /// Sockets open on it now.
    pub connections: usize,
    /// Sockets closed at accept because `max_connections` were open.
    pub refused: u64,
    /// PROXY, TLS or WebSocket handshakes that failed.
    pub handshake_failures: u64,
    pub auth_chain: String,
    pub acl_chain: String,
    /// The HTTP path of the WebSocket upgrade (`ws` and `wss` only).
    pub websocket_path: Option<String>,
}

/// One listener's settings and counters, shared by its connections.
#[derive(Debug)]
struct Listener {
    cfg: ListenerConfig,
    ctx: Arc<ListenerContext>,
    tls: Option<tls::TlsState>,
    ws: Option<ws::WsOptions>,
    /// STOMP settings (`stomp`, `stomp_tls` and `sockjs` listeners).
    stomp: Option<Arc<portcullis_stomp::StompConfig>>,
    /// A `sockjs` listener's HTTP sockets (its `ctx` counts the STOMP
    /// connections, which its SockJS server admits itself).
    sockets: Option<Arc<ListenerContext>>,
    /// A `sockjs` listener's server (set when it starts).
    sockjs: OnceLock<Arc<portcullis_stomp::sockjs::SockJs>>,
    /// Sockets accepted and not yet handed to the core.
    handshaking: AtomicUsize,
    /// Handshake failures since start.
    failures: AtomicU64,
    /// When the last warn line about failures was written, and how many
    /// failures went unlogged since.
    failure_log: Mutex<(Option<Instant>, u64)>,
    /// The address it is bound to (known once started; port 0 in the
    /// config becomes the port the system chose).
    local: OnceLock<SocketAddr>,
}

impl Listeners {
    /// Binds every listener and starts accepting. `gate` gives each
    /// listener its gateway (its auth and ACL chains).
    pub async fn start(
        configs: &[ListenerConfig],
        broker: &Arc<Broker>,
        gate: impl Fn(&ListenerConfig) -> anyhow::Result<Arc<dyn Gate>>,
    ) -> anyhow::Result<Listeners> {
        let mut out = Listeners { listeners: Vec::new(), tasks: Vec::new(), accepting: Vec::new() };
        for cfg in configs {
            let listener = Arc::new(Listener::new(cfg, &broker.settings.limits)?);
            let gate = gate(cfg)?;
            let task = listener
                .start(Arc::clone(broker), gate)
                .await
                .map_err(|e| anyhow::anyhow!("listener `{}` on {}: {e}", cfg.name, cfg.bind))?;
            out.accepting.push(out.tasks.len());
            out.tasks.push(task);
            if let Some(poll) = cfg.tls.as_ref().and_then(|t| t.reload_poll) {
                out.tasks.push(tokio::spawn(watch_certificates(Arc::clone(&listener), poll)));
            }
            out.listeners.push(listener);
        }
        broker.add_metric_source(Arc::new(stats::ListenerStats(out.listeners.clone())));
        Ok(out)
    }

    /// Each listener's name and the address it is bound to (with the port
    /// the system chose for `:0`).
    pub fn local_addrs(&self) -> Vec<(&str, SocketAddr)> {
        self.listeners.iter().filter_map(|l| Some((l.cfg.name.as_str(), *l.local.get()?))).collect()
    }

    /// Reloads every TLS listener's certificates (SIGHUP).
    pub fn reload_certificates(&self) {
        for l in &self.listeners {
            l.reload_certificates("SIGHUP");
        }
    }

    /// Every listener, in config order.
    pub fn views(&self) -> Vec<ListenerView> {
        self.listeners
            .iter()
            .zip(&self.accepting)
            .map(|(l, task)| ListenerView {
                name: l.cfg.name.clone(),
                kind: l.cfg.kind,
                bind: l.cfg.bind,
                local_addr: l.local.get().copied(),
                running: !self.tasks[*task].is_finished(),
                max_connections: l.cfg.max_connections,
                connections: l.ctx.active.load(Ordering::Relaxed),
                refused: l.ctx.refused.load(Ordering::Relaxed),
                handshake_failures: l.failures.load(Ordering::Relaxed),
                auth_chain: l.cfg.auth_chain.clone(),
                acl_chain: l.cfg.acl_chain.clone(),
                websocket_path: l.ws.as_ref().map(|w| w.path.clone()),
            })
            .collect()
    }

    /// Stops accepting.
    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Polls a TLS listener's files and reloads on change.
async fn watch_certificates(listener: Arc<Listener>, poll: Duration) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if listener.tls.as_ref().is_some_and(|t| t.changed()) {
            listener.reload_certificates("file change");
        }
    }
}

/// What `--check-config` verifies of the listeners without binding: every
/// TLS listener's certificate chain, key and CA bundle load and fit
/// together. One line per listener that fails, naming its key.
pub fn check(configs: &[ListenerConfig]) -> Result<(), String> {
    let problems: Vec<String> = configs
        .iter()
        .enumerate()
        .filter_map(|(i, cfg)| {
            let t = cfg.tls.as_ref()?;
            tls::TlsState::load(t, alpn(cfg.kind)).err().map(|e| format!("listeners[{i}] (`{}`): {e}", cfg.name))
        })
        .collect();
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems.join("\n")),
    }
}

/// A browser offers h2 and http/1.1 for wss; MQTT clients offer mqtt;
/// STOMP clients offer none, or `stomp`.
fn alpn(kind: ListenerKind) -> &'static [&'static str] {
    if kind.is_websocket() {
        &["http/1.1"]
    } else if kind.is_stomp() {
        &["stomp"]
    } else {
        &["mqtt"]
    }
}

impl Listener {
    fn new(cfg: &ListenerConfig, limits: &portcullis_core::settings::Limits) -> anyhow::Result<Listener> {
        let ctx = ListenerContext::with_options(&cfg.name, cfg.max_connections, cfg.core_options());
        let tls = match &cfg.tls {
            Some(t) => Some(
                tls::TlsState::load(t, alpn(cfg.kind))
                    .map_err(|e| anyhow::anyhow!("listener `{}` ({}): {e}", cfg.name, cfg.kind.name()))?,
            ),
            None => None,
        };
        let ws = cfg.websocket.as_ref().map(|w| ws::WsOptions {
            path: w.path.clone(),
            allowed_origins: w.allowed_origins.clone(),
            trusted_proxies: cfg.trusted_proxies.clone(),
            max_size: ctx.max_packet_size(limits) as usize,
            // A CONNECT, and room for the upgrade request and framing.
            pre_auth_bytes: limits.max_connect_size as usize + 16 * 1024,
        });
        Ok(Listener {
            cfg: cfg.clone(),
            ctx,
            tls,
            ws,
            stomp: cfg.stomp.clone().map(Arc::new),
            sockets: cfg.kind.is_sockjs().then(|| {
                let max = portcullis_stomp::sockjs::SockJs::socket_limit(cfg.max_connections);
                ListenerContext::with_options(&cfg.name, max, cfg.core_options())
            }),
            sockjs: OnceLock::new(),
            handshaking: AtomicUsize::new(0),
            failures: AtomicU64::new(0),
            failure_log: Mutex::new((None, 0)),
            local: OnceLock::new(),
        })
    }

    async fn start(self: &Arc<Self>, broker: Arc<Broker>, gate: Arc<dyn Gate>) -> std::io::Result<JoinHandle<()>> {
        let cfg = &self.cfg;
        let socket = if cfg.bind.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        if let Some(k) = &cfg.tcp_keepalive {
            let keepalive =
                socket2::TcpKeepalive::new().with_time(k.idle).with_interval(k.interval).with_retries(k.count);
            socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive)?;
        }
        socket.bind(cfg.bind)?;
        let listener = socket.listen(cfg.backlog)?;
        let local = listener.local_addr()?;
        let _ = self.local.set(local);
        info!(
            listener = %cfg.name,
            transport = cfg.kind.name(),
            addr = %local,
            max_connections = cfg.max_connections,
            max_packet_size = self.ctx.max_packet_size(&broker.settings.limits),
            proxy_protocol = cfg.proxy_protocol,
            tcp_keepalive = %cfg.tcp_keepalive.map_or("off".to_string(), |k| format!(
                "{}s/{}s/{}",
                k.idle.as_secs(),
                k.interval.as_secs(),
                k.count
            )),
            client_cert = cfg.tls.as_ref().map_or("-", |t| t.client_cert.name()),
            ws_path = self.ws.as_ref().map_or("-", |w| w.path.as_str()),
            "listening"
        );
        if let (Some(sockjs), Some(stomp)) = (&cfg.sockjs, &self.stomp) {
            let server = portcullis_stomp::sockjs::SockJs::start(
                sockjs.clone(),
                Arc::clone(stomp),
                Arc::clone(&broker),
                Arc::clone(&gate),
                Arc::clone(&self.ctx),
                cfg.handshake_timeout,
                client_address(&cfg.trusted_proxies),
            );
            let _ = self.sockjs.set(server);
        }
        let me = Arc::clone(self);
        Ok(tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, peer)) => {
                        // The connection limit holds from accept: a socket
                        // over it is closed before anything is read from it.
                        // (A SockJS listener's sockets have their own limit;
                        // its sessions take places in `ctx`.)
                        let Some(slot) = me.sockets.as_ref().unwrap_or(&me.ctx).admit() else {
                            drop(stream);
                            me.over_limit(peer);
                            continue;
                        };
                        let _ = stream.set_nodelay(true);
                        let broker = Arc::clone(&broker);
                        let gate = Arc::clone(&gate);
                        if me.cfg.kind == ListenerKind::Tcp && !me.cfg.proxy_protocol {
                            // Straight to the core: nothing else to establish.
                            tokio::spawn(serve(broker, gate, slot, stream, peer, None));
                        } else {
                            me.handshaking.fetch_add(1, Ordering::Relaxed);
                            tokio::spawn(Arc::clone(&me).establish(broker, gate, slot, stream, peer));
                        }
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        warn!(listener = %me.cfg.name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }))
    }

    /// PROXY header, TLS, WebSocket upgrade (as configured) under the
    /// handshake timeout, then the MQTT connection.
    async fn establish(
        self: Arc<Self>,
        broker: Arc<Broker>,
        gate: Arc<dyn Gate>,
        slot: Admitted,
        stream: TcpStream,
        remote: SocketAddr,
    ) {
        let deadline = tokio::time::Instant::now() + self.cfg.handshake_timeout;
        let established = tokio::time::timeout_at(deadline, Box::pin(self.handshake(stream, remote))).await;
        self.handshaking.fetch_sub(1, Ordering::Relaxed);
        let (transport, peer, cert) = match established {
            Ok(Ok(t)) => t,
            Ok(Err((stage, e))) => return self.failed(remote, stage, e),
            Err(_) => return self.failed(remote, "handshake", "timed out"),
        };
        if let Some(sockjs) = self.sockjs.get() {
            match transport {
                Transport::Tcp(s) => Arc::clone(sockjs).serve_connection(s, peer).await,
                Transport::Tls(s) => Arc::clone(sockjs).serve_connection(s, peer).await,
                Transport::Ws(_) | Transport::Wss(_) => self.failed(remote, "setup", "SockJS over WebSocket"),
            }
            drop(slot);
            return;
        }
        if let Some(stomp) = &self.stomp {
            let stomp = Arc::clone(stomp);
            match transport {
                Transport::Tcp(s) => portcullis_stomp::serve(broker, gate, slot, stomp, s, peer, cert).await,
                Transport::Tls(s) => portcullis_stomp::serve(broker, gate, slot, stomp, s, peer, cert).await,
                Transport::Ws(_) | Transport::Wss(_) => self.failed(remote, "setup", "STOMP over WebSocket"),
            }
            return;
        }
        match transport {
            Transport::Tcp(s) => serve(broker, gate, slot, s, peer, cert).await,
            Transport::Tls(s) => serve(broker, gate, slot, s, peer, cert).await,
            Transport::Ws(s) => serve(broker, gate, slot, s, peer, cert).await,
            Transport::Wss(s) => serve(broker, gate, slot, s, peer, cert).await,
        }
    }

    async fn handshake(
        &self,
        mut stream: TcpStream,
        remote: SocketAddr,
    ) -> Result<Established, (&'static str, String)> {
        let mut peer = remote;
        if self.cfg.proxy_protocol {
            // Validation requires trusted_proxies with proxy_protocol.
            if !forwarded::is_trusted(remote.ip(), &self.cfg.trusted_proxies) {
                return Err(("proxy", "not a trusted proxy".to_string()));
            }
            if let Some(client) = proxy::read_header(&mut stream).await.map_err(|e| ("proxy", e.to_string()))? {
                peer = client;
            }
        }
        match (self.cfg.kind, &self.tls, &self.ws) {
            (ListenerKind::Tcp | ListenerKind::Stomp | ListenerKind::SockJs, _, _) => {
                Ok((Transport::Tcp(stream), peer, None))
            }
            (ListenerKind::Tls | ListenerKind::StompTls | ListenerKind::SockJsTls, Some(tls), _) => {
                let (s, cert) = accept_tls(tls, stream).await?;
                Ok((Transport::Tls(Box::new(s)), peer, cert))
            }
            (ListenerKind::Ws, _, Some(ws)) => {
                let (s, peer) = ws::accept(stream, peer, ws).await.map_err(|e| ("websocket", e.to_string()))?;
                Ok((Transport::Ws(Box::new(s)), peer, None))
            }
            (ListenerKind::Wss, Some(tls), Some(ws)) => {
                let (s, cert) = accept_tls(tls, stream).await?;
                let (s, peer) = ws::accept(s, peer, ws).await.map_err(|e| ("websocket", e.to_string()))?;
                Ok((Transport::Wss(Box::new(s)), peer, cert))
            }
            // Validation pairs every TLS/WebSocket type with its settings.
            (kind, _, _) => Err(("setup", format!("{} listener without its settings", kind.name()))),
        }
    }

    /// A socket closed at accept because `max_connections` are open:
    /// counted in `$SYS .../listeners/<name>/refused` and logged like a
    /// failed handshake (at most one warn line per interval).
    fn over_limit(&self, peer: SocketAddr) {
        debug!(listener = %self.cfg.name, %peer, max = self.cfg.max_connections, "connection limit reached; socket closed");
        let Ok(mut log) = self.failure_log.lock() else { return };
        let now = Instant::now();
        if log.0.is_some_and(|last| now.duration_since(last) < FAILURE_LOG_INTERVAL) {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        warn!(
            listener = %self.cfg.name,
            max_connections = self.cfg.max_connections,
            suppressed,
            "connection limit reached; new sockets are closed at accept (counted in $SYS listeners/<name>/refused)"
        );
    }

    /// Counts a failed handshake and logs it (rate limited, see module docs).
    fn failed(&self, peer: SocketAddr, stage: &str, error: impl Display) {
        self.failures.fetch_add(1, Ordering::Relaxed);
        debug!(listener = %self.cfg.name, %peer, stage, error = %error, "handshake failed");
        let Ok(mut log) = self.failure_log.lock() else { return };
        let now = Instant::now();
        if log.0.is_some_and(|last| now.duration_since(last) < FAILURE_LOG_INTERVAL) {
            log.1 += 1;
            return;
        }
        let suppressed = std::mem::take(&mut log.1);
        log.0 = Some(now);
        drop(log);
        warn!(
            listener = %self.cfg.name,
            %peer,
            stage,
            error = %error,
            suppressed,
            "handshake failed (further failures within 10s are counted in $SYS, not logged)"
        );
    }

    fn reload_certificates(&self, why: &str) {
        let Some(tls) = &self.tls else { return };
        match tls.reload() {
            Ok(()) => {
                info!(listener = %self.cfg.name, files = %tls.files(), trigger = why, "TLS certificates reloaded")
            }
            Err(e) => error!(
                listener = %self.cfg.name,
                trigger = why,
                error = %e,
                "TLS certificates not reloaded; keeping the previous ones"
            ),
        }
    }
}

/// A `sockjs` listener's reading of `Forwarded` / `X-Forwarded-For`, as
/// the `ws` listeners': only with `trusted_proxies`, and only as far as
/// the hops are trusted.
fn client_address(trusted: &[ipnet::IpNet]) -> Option<portcullis_stomp::sockjs::ClientAddress> {
    if trusted.is_empty() {
        return None;
    }
    let trusted = trusted.to_vec();
    Some(Arc::new(move |headers: &tokio_tungstenite::tungstenite::http::HeaderMap, peer: SocketAddr| {
        let ip = forwarded::client_address(headers, peer.ip(), &trusted).map_err(|e| e.to_string())?;
        // The port of a forwarded client is not known.
        Ok(if ip == peer.ip() { peer } else { SocketAddr::new(ip, 0) })
    }))
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;
type Established = (Transport, SocketAddr, Option<Arc<CertIdentity>>);

/// The byte stream a connection runs over.
enum Transport {
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
    Ws(Box<ws::WsIo<TcpStream>>),
    Wss(Box<ws::WsIo<TlsStream>>),
}

/// The TLS handshake, and the identity in the client's certificate.
async fn accept_tls<S>(
    tls: &tls::TlsState,
    stream: S,
) -> Result<(tokio_rustls::server::TlsStream<S>, Option<Arc<CertIdentity>>), (&'static str, String)>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let s = tls.acceptor().accept(stream).await.map_err(|e| ("tls", e.to_string()))?;
    let cert = match s.get_ref().1.peer_certificates().and_then(|c| c.first()) {
        None => None,
        Some(der) => match identity::from_der(der) {
            Some(id) => Some(Arc::new(id)),
            // rustls verified it, so this does not happen; refuse if it does.
            None => return Err(("tls", "client certificate could not be read".to_string())),
        },
    };
    Ok((s, cert))
}
