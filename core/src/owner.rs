//! Who a session belongs to.
//!
//! A session records the identity that created it: the username, else the
//! verified certificate's subject, else "anonymous on this listener". A
//! CONNECT of another identity with the same client id never resumes it and
//! never takes it over ([`crate::broker::Broker::open_session`]); what it
//! gets instead is [`OwnerMismatch`] (`session.owner_mismatch`).

use std::fmt;
use std::sync::Arc;

/// The identity a session belongs to. Compared by kind and name: `alice`
/// the username and `alice` a certificate subject are different owners.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum SessionOwner {
    /// The username the client was admitted with (taken from its
    /// certificate when the listener says so).
    User(Arc<str>),
    /// No username: the verified client certificate's subject DN.
    Cert(Arc<str>),
    /// Neither: anonymous clients of this listener (by name) share one
    /// identity.
    Anonymous(Arc<str>),
    /// Restored from a snapshot written before sessions recorded their
    /// owner: no identity matches it, so it is never resumed (the next
    /// CONNECT with its client id gets a fresh session).
    Unknown,
}

impl SessionOwner {
    /// The owner of a session opened by a client with this username,
    /// certificate subject and listener.
    pub fn of(username: Option<&Arc<str>>, cert_subject: Option<&str>, listener: &Arc<str>) -> SessionOwner {
        match (username, cert_subject) {
            (Some(u), _) => SessionOwner::User(Arc::clone(u)),
            (None, Some(s)) if !s.is_empty() => SessionOwner::Cert(Arc::from(s)),
            _ => SessionOwner::Anonymous(Arc::clone(listener)),
        }
    }

    /// Whether a client with identity `other` may resume or take over a
    /// session owned by `self`.
    pub fn admits(&self, other: &SessionOwner) -> bool {
        !matches!(self, SessionOwner::Unknown) && self == other
    }
}

impl fmt::Debug for SessionOwner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SessionOwner {
    /// `user "alice"`, `cert "CN=dev42"`, `anonymous on "tcp"`, escaped
    /// and truncated: these are peer-supplied strings.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use crate::logsafe::Peer;
        match self {
            SessionOwner::User(u) => write!(f, "user {}", Peer(u)),
            SessionOwner::Cert(s) => write!(f, "cert {}", Peer(s)),
            SessionOwner::Anonymous(l) => write!(f, "anonymous on {}", Peer(l)),
            SessionOwner::Unknown => f.write_str("unknown (older snapshot)"),
        }
    }
}

/// What a CONNECT gets when its client id belongs to a session of another
/// identity (`session.owner_mismatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerMismatch {
    /// Refuse the CONNECT (3.1.1 0x05, v5 0x85 Client Identifier not
    /// valid); the session and its connection are untouched.
    #[default]
    Refuse,
    /// End the old session (its connection, if any, is closed as taken
    /// over) and give the newcomer a fresh one: nothing of the old session
    /// reaches it.
    Discard,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_precedence_and_comparison() {
        let l: Arc<str> = Arc::from("tcp");
        let alice: Arc<str> = Arc::from("alice");
        let a = SessionOwner::of(Some(&alice), Some("CN=x"), &l);
        assert_eq!(a, SessionOwner::User(alice.clone()), "username first");
        assert_eq!(SessionOwner::of(None, Some("CN=x"), &l), SessionOwner::Cert(Arc::from("CN=x")));
        assert_eq!(SessionOwner::of(None, Some(""), &l), SessionOwner::Anonymous(l.clone()));
        assert_eq!(SessionOwner::of(None, None, &l), SessionOwner::Anonymous(l.clone()));
        assert!(a.admits(&SessionOwner::of(Some(&alice), None, &Arc::from("other"))), "listener does not matter");
        assert!(!a.admits(&SessionOwner::of(Some(&Arc::from("ALICE")), None, &l)));
        assert!(!a.admits(&SessionOwner::Cert(Arc::from("alice"))), "kinds differ");
        assert!(!SessionOwner::Anonymous(l.clone()).admits(&SessionOwner::Anonymous(Arc::from("ws"))));
        assert!(!SessionOwner::Unknown.admits(&SessionOwner::Unknown));
    }

    #[test]
    fn display_escapes() {
        let o = SessionOwner::User(Arc::from("evil\nauthenticated client_id=admin"));
        let s = o.to_string();
        assert!(!s.contains('\n'), "{s}");
    }
}
