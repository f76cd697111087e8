//! Admission: the protocol-neutral part of letting a client in.
//!
//! identity ([`ConnectInfo`]) → the gate's authentication ([`authenticate`],
//! or an outcome reached otherwise, [`Authenticated::from_outcome`]) → the
//! session, opened for that identity ([`open`]) → the client's
//! [`ClientInfo`], attached to the session. [`admit`] runs all three.
//!
//! Nothing here knows a packet: MQTT's CONNECT handshake, the STOMP
//! gateway and anything else that admits clients (bridges, the admin
//! "auth check") go through it and map the [`Refusal`] to their own
//! answer (a CONNACK code, a STOMP ERROR frame). Every refusal is logged
//! here, once, rate limited.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::oneshot;
use tracing::{info, warn};

use crate::broker::{Broker, OpenError, OpenRequest};
use crate::connection::Refusal;
use crate::gate::{AuthOutcome, ClientContext, ClientInfo, ConnectInfo, Gate};
use crate::hooks::{ClientConnected, SessionEvent};
use crate::logsafe::{Peer, PeerOpt};
use crate::owner::SessionOwner;
use crate::session::{Kick, Session};

/// The session a client asks for.
#[derive(Debug, Clone, Copy)]
pub struct Terms {
    /// Start afresh (MQTT clean start / clean session).
    pub clean_start: bool,
    /// Session expiry after disconnect; `None` = never.
    pub expiry: Option<Duration>,
    /// The keep-alive in force, seconds (0 = none), as the client info
    /// shows it.
    pub keep_alive: u16,
}

/// What the gate said yes with.
#[derive(Clone)]
pub struct Authenticated {
    pub superuser: bool,
    /// Whatever the gateway attached (inline ACL rules and the like).
    pub context: Option<ClientContext>,
    /// When the credentials expire (wall clock), if they do.
    pub expires_at: Option<SystemTime>,
}

impl std::fmt::Debug for Authenticated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticated")
            .field("superuser", &self.superuser)
            .field("context", &self.context.is_some())
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl Authenticated {
    /// An authentication outcome (from [`Gate::authenticate`] or an
    /// exchange such as MQTT 5 enhanced authentication) as admitted or
    /// refused; a refusal is logged.
    pub fn from_outcome(broker: &Broker, info: &ConnectInfo, outcome: AuthOutcome) -> Result<Authenticated, Refusal> {
        match outcome {
            AuthOutcome::Allow { superuser, context, expires_at } => {
                Ok(Authenticated { superuser, context, expires_at })
            }
            AuthOutcome::Deny(d) => {
                let r = Refusal::Denied(d);
                log_refusal(broker, r, &info.client_id, info.username.as_deref());
                Err(r)
            }
            AuthOutcome::Unavailable => {
                if let Some(suppressed) = broker.refusal_log.allow() {
                    warn!(client_id = %Peer(&info.client_id), suppressed, "authentication backend unavailable; connection refused");
                }
                Err(Refusal::AuthUnavailable)
            }
        }
    }
}

/// A client let in: its info (attached to the session) and its session.
#[derive(Debug)]
pub struct Admission {
    pub client: Arc<ClientInfo>,
    pub session: Arc<Session>,
    pub session_present: bool,
    /// Fires when another connection takes the session over.
    pub kicked: oneshot::Receiver<Kick>,
    /// The session's generation for this connection (see
    /// [`crate::broker::Opened::generation`]).
    pub generation: u64,
    /// When the credentials expire (wall clock), if they do.
    pub auth_expires: Option<SystemTime>,
}

impl Admission {
    /// The connection id the session is attached to.
    pub fn conn_id(&self) -> u64 {
        self.client.conn_id
    }

    /// Tells the hooks: session created or resumed, client connected. Call
    /// once the client has been answered (MQTT: CONNACK queued).
    pub fn announce(&self, broker: &Broker, gate: &Arc<dyn Gate>, clean_start: bool) {
        let hooks = &broker.hooks;
        let ev = SessionEvent { client_id: &self.client.client_id, owner: &self.session.owner };
        if self.session_present {
            hooks.session_resumed(&ev);
        } else {
            hooks.session_created(&ev);
        }
        hooks.client_connected(&ClientConnected {
            client: &self.client,
            gate,
            session: &self.session,
            keep_alive: self.client.keep_alive,
            clean_start,
            session_present: self.session_present,
        });
    }
}

/// Asks the gate about `info`. Refused while the broker shuts down.
pub async fn authenticate(broker: &Broker, gate: &dyn Gate, info: &ConnectInfo) -> Result<Authenticated, Refusal> {
    if broker.is_shutting_down() {
        log_refusal(broker, Refusal::ShuttingDown, &info.client_id, info.username.as_deref());
        return Err(Refusal::ShuttingDown);
    }
    let outcome = gate.authenticate(info).await;
    Authenticated::from_outcome(broker, info, outcome)
}

/// Opens (resumes, takes over) the session of an authenticated client and
/// attaches its client info to it.
/// Asks the remote routing seam first, when there is one, whether another
/// node holds the session ([`Broker::open_session_located`]).
pub async fn open(
    broker: &Arc<Broker>,
    info: ConnectInfo,
    auth: Authenticated,
    terms: Terms,
) -> Result<Admission, Refusal> {
    let listener = info.listener.clone();
    let owner = SessionOwner::of(info.username.as_ref(), info.cert.as_deref().map(|c| c.subject.as_str()), &listener);
    let conn_id = broker.next_conn_id();
    let opened = broker
        .open_session_located(OpenRequest {
            client_id: &info.client_id,
            owner: &owner,
            clean_start: terms.clean_start,
            expiry: terms.expiry,
            conn_id,
        })
        .await;
    let opened = match opened {
        Ok(o) => o,
        Err(e) => {
            let r = match e {
                OpenError::OwnerMismatch => Refusal::ClientIdInUse,
                OpenError::TooManySessions => Refusal::TooManySessions,
                OpenError::TooManyForIdentity => Refusal::TooManySessionsForIdentity,
                OpenError::RegistryUnavailable => Refusal::SessionRegistryUnavailable,
                OpenError::ClientIdTooLong => Refusal::ClientIdTooLong,
            };
            log_refusal(broker, r, &info.client_id, info.username.as_deref());
            return Err(r);
        }
    };
    let client = Arc::new(ClientInfo {
        client_id: info.client_id,
        username: info.username,
        peer: info.peer,
        listener,
        protocol: info.protocol,
        superuser: auth.superuser,
        context: auth.context,
        conn_id,
        cert: info.cert,
        connected_at: ClientInfo::now_millis(),
        keep_alive: terms.keep_alive,
    });
    opened.session.lock().set_client(conn_id, Arc::clone(&client));
    Ok(Admission {
        client,
        session: opened.session,
        session_present: opened.session_present,
        kicked: opened.kicked,
        generation: opened.generation,
        auth_expires: auth.expires_at,
    })
}

/// [`authenticate`], then [`open`].
pub async fn admit(
    broker: &Arc<Broker>,
    gate: &dyn Gate,
    info: ConnectInfo,
    terms: Terms,
) -> Result<Admission, Refusal> {
    let auth = authenticate(broker, gate, &info).await?;
    open(broker, info, auth, terms).await
}

/// Logs a refused client: peer-supplied values escaped and cut, at most a
/// few lines a second (the rest are counted).
pub fn log_refusal(broker: &Broker, r: Refusal, client_id: &str, username: Option<&str>) {
    if let Some(suppressed) = broker.refusal_log.allow() {
        info!(
            client_id = %Peer(client_id),
            username = %PeerOpt(username),
            reason = r.reason(),
            suppressed,
            "connection refused"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::ProtocolVersion;
    use crate::gate::{DenyReason, LoopbackOnly};
    use crate::settings::BrokerSettings;

    fn info(client_id: &str, username: Option<&str>, peer: &str) -> ConnectInfo {
        ConnectInfo {
            client_id: Arc::from(client_id),
            username: username.map(Arc::from),
            password: None,
            peer: peer.parse().unwrap(),
            listener: Arc::from("l"),
            protocol: ProtocolVersion::V311.into(),
            cert: None,
        }
    }

    const TERMS: Terms = Terms { clean_start: false, expiry: None, keep_alive: 30 };

    #[tokio::test]
    async fn admits_attaches_the_client_info_and_refuses_as_mqtt_does() {
        let broker = Broker::new(BrokerSettings::default());
        let gate = LoopbackOnly;
        let a = admit(&broker, &gate, info("c1", Some("alice"), "127.0.0.1:1"), TERMS).await.unwrap();
        assert!(!a.session_present);
        assert_eq!(a.client.keep_alive, 30);
        let attached = a.session.lock().client().cloned().unwrap();
        assert!(Arc::ptr_eq(&attached, &a.client), "the session shows this connection's client");
        assert!(a.session.is_attached_to(a.conn_id()));

        // The gate's deny is a refusal with MQTT's meaning.
        let r = admit(&broker, &gate, info("c2", None, "10.0.0.1:1"), TERMS).await.unwrap_err();
        assert_eq!(r, Refusal::Denied(DenyReason::NotAuthorized));
        // Another identity never takes the session over.
        let r = admit(&broker, &gate, info("c1", Some("mallory"), "127.0.0.1:2"), TERMS).await.unwrap_err();
        assert_eq!(r, Refusal::ClientIdInUse);
        // The same identity resumes it, and the old connection is kicked.
        let mut old = a;
        let b = admit(&broker, &gate, info("c1", Some("alice"), "127.0.0.1:3"), TERMS).await.unwrap();
        assert!(b.session_present);
        assert!(matches!(old.kicked.try_recv(), Ok(Kick::TakenOver { .. })));
        // Shutting down: refused before the gate is asked.
        broker.shutdown();
        let r = admit(&broker, &gate, info("c3", None, "127.0.0.1:4"), TERMS).await.unwrap_err();
        assert_eq!(r, Refusal::ShuttingDown);
    }

    #[test]
    fn outcomes_map_to_refusals() {
        let broker = Broker::new(BrokerSettings::default());
        let i = info("c", None, "127.0.0.1:1");
        let r = Authenticated::from_outcome(&broker, &i, AuthOutcome::Unavailable).unwrap_err();
        assert_eq!(r, Refusal::AuthUnavailable);
        let r = Authenticated::from_outcome(&broker, &i, AuthOutcome::Deny(DenyReason::Banned)).unwrap_err();
        assert_eq!(r, Refusal::Denied(DenyReason::Banned));
        assert!(Authenticated::from_outcome(&broker, &i, AuthOutcome::allow(true)).unwrap().superuser);
    }
}
