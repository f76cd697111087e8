//! What the management plane may see and do: connected clients, sessions,
//! subscriptions, topics, retained messages; kick a client, subscribe or
//! unsubscribe one. Read-only views are copies (no lock is held by the
//! caller); every change goes through the broker's own intent methods.

use std::sync::Arc;
use std::time::Duration;

use crate::broker::Broker;
use crate::codec::{RetainHandling, SubscriptionOptions};
use crate::gate::ClientInfo;
use crate::message::Delivery;
use crate::owner::SessionOwner;
use crate::session::{Kick, Session, SubRecord};
use crate::topic::SubscriptionFilter;

/// A session as the management plane lists it.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub client_id: Arc<str>,
    pub owner: SessionOwner,
    /// The client attached now (its connection established), or the last
    /// one that was (see `connected`).
    pub client: Option<Arc<ClientInfo>>,
    /// A connection is attached and established now.
    pub connected: bool,
    /// Session expiry after disconnect; `None` = never.
    pub expiry: Option<Duration>,
    pub subscriptions: usize,
    /// Messages queued beyond the in-flight window.
    pub queued: usize,
    /// Outgoing QoS 1/2 messages awaiting acknowledgement.
    pub inflight: usize,
    /// Incoming QoS 2 messages awaiting PUBREL.
    pub awaiting_rel: usize,
    /// Messages its full queue dropped.
    pub dropped: u64,
}

/// What [`Broker::remove_session`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removed {
    /// The client was connected: kicked, its session ends with it.
    Kicked,
    /// No client was connected: the session ended.
    Discarded,
    /// A connection is being established on it right now: try again.
    Busy,
    /// No such session.
    NotFound,
}

/// One subscription of one session.
#[derive(Debug, Clone)]
pub struct SubscriptionView {
    pub client_id: Arc<str>,
    /// The filter as the client wrote it (`$share/g/…` included).
    pub filter: Arc<str>,
    pub options: SubscriptionOptions,
    pub subscription_id: Option<u32>,
}

fn view(session: &Arc<Session>) -> SessionView {
    let st = session.lock();
    SessionView {
        client_id: Arc::clone(&session.client_id),
        owner: session.owner.clone(),
        client: st.client().cloned(),
        connected: st.owner.is_some() && st.client().is_some(),
        expiry: st.expiry,
        subscriptions: st.subscriptions().len(),
        queued: st.queue_len(),
        inflight: st.inflight_len(),
        awaiting_rel: st.awaiting_rel().len(),
        dropped: st.dropped(),
    }
}

impl Broker {
    /// Every session, connected or not, in no particular order.
    pub fn session_views(&self) -> Vec<SessionView> {
        self.sessions_snapshot().iter().map(view).collect()
    }

    /// The sessions with a client connected now.
    pub fn client_views(&self) -> Vec<SessionView> {
        self.sessions_snapshot().iter().map(view).filter(|v| v.connected).collect()
    }

    /// One session by client id.
    pub fn session_view(&self, client_id: &str) -> Option<SessionView> {
        self.find_session(client_id).map(|s| view(&s))
    }

    /// The subscriptions of one session, or of every session.
    pub fn subscription_views(&self, client_id: Option<&str>) -> Vec<SubscriptionView> {
        let sessions = match client_id {
            Some(id) => self.find_session(id).into_iter().collect(),
            None => self.sessions_snapshot(),
        };
        let mut out = Vec::new();
        for s in sessions {
            let st = s.lock();
            for (raw, rec) in st.subscriptions() {
                out.push(SubscriptionView {
                    client_id: Arc::clone(&s.client_id),
                    filter: Arc::clone(raw),
                    options: rec.options,
                    subscription_id: rec.subscription_id,
                });
            }
        }
        out
    }

    /// Closes a client's connection (v5: DISCONNECT 0x98 Administrative
    /// action). With `discard` its session ends too, instead of lasting
    /// its expiry. False when no such client is connected.
    pub fn kick(&self, client_id: &str, discard: bool) -> bool {
        let Some(session) = self.find_session(client_id) else { return false };
        let mut st = session.lock();
        if st.owner.is_none() || st.client().is_none() {
            return false;
        }
        if discard {
            st.expiry = Some(Duration::ZERO);
        }
        match st.take_kick() {
            Some(k) => k.send(Kick::Administrative).is_ok(),
            None => false,
        }
    }

    /// Ends a client's session on an operator's behalf: a connected
    /// client is kicked (v5: DISCONNECT 0x98) and its session ends with
    /// the connection; a session without a connection ends at once.
    pub fn remove_session(&self, client_id: &str) -> Removed {
        if self.kick(client_id, true) {
            return Removed::Kicked;
        }
        if self.remove_detached(client_id) {
            return Removed::Discarded;
        }
        // A connection that attached but is not yet established holds
        // the session: kick it once it is.
        match self.find_session(client_id) {
            Some(_) if self.kick(client_id, true) => Removed::Kicked,
            Some(_) => Removed::Busy,
            None => Removed::NotFound,
        }
    }

    /// Subscribes a session on an operator's behalf (no ACL: the operator
    /// decides). Retained messages are sent as the options' retain
    /// handling says, as for a client's SUBSCRIBE (never for a shared
    /// subscription). Returns whether the subscription is new; `None` when
    /// there is no such session.
    pub fn subscribe_for(
        &self,
        client_id: &str,
        filter: SubscriptionFilter,
        options: SubscriptionOptions,
    ) -> Option<bool> {
        let session = self.find_session(client_id)?;
        let rec = SubRecord { filter: filter.clone(), options, subscription_id: None, check: false };
        let is_new = self.subscribe(&session, filter.clone(), rec);
        let send_retained = !filter.is_shared()
            && match options.retain_handling {
                RetainHandling::OnSubscribe => true,
                RetainHandling::OnNewSubscribe => is_new,
                RetainHandling::Never => false,
            };
        if send_retained {
            for msg in self.retained.matching(&filter.filter, std::time::Instant::now()) {
                let d = Delivery {
                    qos: msg.qos.min(options.qos),
                    msg,
                    retain: true,
                    subscription_ids: Default::default(),
                    check: false,
                    queued_weight: 0,
                };
                session.enqueue(d, &self.settings.session, &self.metrics);
            }
        }
        Some(is_new)
    }

    /// Removes a session's subscription; `None` when there is no such
    /// session, else whether the subscription existed.
    pub fn unsubscribe_for(&self, client_id: &str, raw_filter: &str) -> Option<bool> {
        let session = self.find_session(client_id)?;
        Some(self.unsubscribe(&session, raw_filter))
    }
}
