//! Session created / resumed / ended.

use crate::owner::SessionOwner;

/// A session, by client id and owner.
#[derive(Debug)]
pub struct SessionEvent<'a> {
    pub client_id: &'a str,
    pub owner: &'a SessionOwner,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEndReason {
    /// It ended with its connection (clean session, expiry 0).
    ConnectionClosed,
    /// Its expiry interval passed with no client attached.
    Expired,
    /// A clean-start CONNECT of the same identity replaced it.
    Replaced,
    /// A CONNECT of another identity with `owner_mismatch = "discard"`.
    Discarded,
}

impl SessionEndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEndReason::ConnectionClosed => "connection closed",
            SessionEndReason::Expired => "expired",
            SessionEndReason::Replaced => "replaced by a clean start",
            SessionEndReason::Discarded => "discarded for another identity",
        }
    }
}

/// Runs when a CONNECT opened a new session.
pub trait OnSessionCreated: Send + Sync + 'static {
    fn session_created(&self, ev: &SessionEvent<'_>);
}

/// Runs when a CONNECT resumed an existing session.
pub trait OnSessionResumed: Send + Sync + 'static {
    fn session_resumed(&self, ev: &SessionEvent<'_>);
}

/// Runs when a session ends (its subscriptions and queue are gone).
pub trait OnSessionEnded: Send + Sync + 'static {
    fn session_ended(&self, ev: &SessionEvent<'_>, reason: SessionEndReason);
}
