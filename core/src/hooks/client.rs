//! Client connected / disconnected.

use std::sync::Arc;

use crate::connection::DisconnectReason;
use crate::gate::{ClientInfo, Gate};
use crate::session::Session;

/// A client was admitted: its CONNACK (success) is on its way.
pub struct ClientConnected<'a> {
    pub client: &'a ClientInfo,
    /// The gate of the listener it came through (its auth and ACL
    /// chains): what a module acting for the client asks, so that the
    /// client gets no more than it could do itself.
    pub gate: &'a Arc<dyn Gate>,
    /// Its session (a module may subscribe it:
    /// [`crate::broker::Broker::subscribe`]).
    pub session: &'a Arc<Session>,
    /// The keep-alive in force (after the broker's cap), seconds.
    pub keep_alive: u16,
    /// Clean start (3.x: clean session) as the client asked.
    pub clean_start: bool,
    /// Whether an existing session was resumed.
    pub session_present: bool,
}

impl std::fmt::Debug for ClientConnected<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConnected")
            .field("client", self.client)
            .field("keep_alive", &self.keep_alive)
            .field("clean_start", &self.clean_start)
            .field("session_present", &self.session_present)
            .finish_non_exhaustive()
    }
}

/// A client's connection ended (after its will was handled).
#[derive(Debug)]
pub struct ClientDisconnected<'a> {
    pub client: &'a ClientInfo,
    pub reason: DisconnectReason,
}

/// Runs when a client is admitted.
pub trait OnClientConnected: Send + Sync + 'static {
    fn client_connected(&self, ev: &ClientConnected<'_>);
}

/// Runs when a connection ends.
pub trait OnClientDisconnected: Send + Sync + 'static {
    fn client_disconnected(&self, ev: &ClientDisconnected<'_>);
}
