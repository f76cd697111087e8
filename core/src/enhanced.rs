//! MQTT 5 enhanced authentication: the seam between the connection's AUTH
//! exchange and the mechanisms that run it.
//!
//! * [`Exchange`] — one exchange in progress (a SCRAM conversation, a
//!   single-step token check): fed the client's Authentication Data one
//!   round at a time, it answers [`Step::Continue`] (the server's next
//!   challenge, sent as AUTH 0x18) or [`Step::Done`] (the outcome, with the
//!   server's final data for the CONNACK or the AUTH 0x00).
//! * [`Mechanism`] — what starts exchanges for one Authentication Method;
//!   [`Registry`] — the mechanisms by method name.
//! * [`Gate::enhanced_auth`](crate::gate::Gate::enhanced_auth) — starts an
//!   exchange for an Authentication Method, or says the method is unknown
//!   (CONNACK 0x8C Bad authentication method).
//!
//! The connection owns the protocol: which packets may come, the method
//! staying the same, the round limit ([`MAX_ROUNDS`]) and the deadline
//! (the connect timeout for a CONNECT; the same span for a
//! re-authentication). A mechanism owns only its messages, and bounds what
//! it keeps of them.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;

use crate::gate::{AuthOutcome, ConnectInfo, GateFuture};

/// Rounds (client messages) an exchange may take at most, the first one in
/// the CONNECT or the AUTH 0x19 included. SCRAM takes two.
pub const MAX_ROUNDS: u8 = 8;

/// Authentication Data a mechanism accepts in one client message at most;
/// the connection refuses larger ones before the mechanism sees them.
pub const MAX_DATA_LEN: usize = 16 * 1024;

/// What a round of an exchange decided.
#[derive(Debug)]
pub enum Step {
    /// Send this challenge (AUTH 0x18) and wait for the client's answer.
    Continue(Bytes),
    /// The exchange is over.
    Done(Done),
}

/// How an exchange ended.
#[derive(Debug)]
pub struct Done {
    /// Allow, deny or backend failure, as for a password CONNECT.
    pub outcome: AuthOutcome,
    /// The server's last message (SCRAM's server-final), sent in the
    /// CONNACK or AUTH 0x00 on success.
    pub data: Option<Bytes>,
    /// The identity the mechanism authenticated (SCRAM's `n=`). A CONNECT
    /// without a User Name takes it as its username; one with a different
    /// User Name is refused by the mechanism.
    pub username: Option<Arc<str>>,
}

impl Done {
    /// A refusal with no data.
    pub fn refuse(outcome: AuthOutcome) -> Step {
        Step::Done(Done { outcome, data: None, username: None })
    }
}

/// One enhanced-authentication exchange in progress. Dropping it abandons
/// the exchange; it holds nothing else.
pub trait Exchange: Send + Sync {
    /// Takes the client's next Authentication Data (`None` when the packet
    /// carried none) and decides the round.
    fn step(&mut self, data: Option<Bytes>) -> GateFuture<'_, Step>;
}

/// Whether an exchange starts for a connection or renews one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// In the CONNECT.
    Connect,
    /// AUTH 0x19 on an established connection.
    Reauthenticate,
}

/// An enhanced-authentication mechanism serving one Authentication Method
/// (SCRAM-SHA-256 over one credential source, …).
pub trait Mechanism: Send + Sync + std::fmt::Debug {
    /// Starts an exchange for a client (`info`: its CONNECT, or what the
    /// connection knows of it for a re-authentication).
    fn start(&self, info: &ConnectInfo, purpose: Purpose) -> Box<dyn Exchange>;
}

/// The mechanisms a broker serves, by Authentication Method (compared
/// exactly: MQTT's method names are case-sensitive UTF-8 strings).
#[derive(Debug, Default, Clone)]
pub struct Registry {
    methods: HashMap<Arc<str>, Arc<dyn Mechanism>>,
}

impl Registry {
    /// Adds `mechanism` for `method`; `false` (and nothing changes) when
    /// the method is taken.
    pub fn insert(&mut self, method: &str, mechanism: Arc<dyn Mechanism>) -> bool {
        if self.methods.contains_key(method) {
            return false;
        }
        self.methods.insert(Arc::from(method), mechanism);
        true
    }

    /// The mechanism for `method`.
    pub fn get(&self, method: &str) -> Option<&Arc<dyn Mechanism>> {
        self.methods.get(method)
    }

    /// Whether no method is served.
    pub fn is_empty(&self) -> bool {
        self.methods.is_empty()
    }

    /// The methods served, sorted.
    pub fn methods(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.methods.keys().map(|k| &**k).collect();
        v.sort_unstable();
        v
    }
}
