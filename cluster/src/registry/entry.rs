//! A registry entry: who owns a client id's session, and what the cluster
//! needs to rebuild it when its node is gone. JSON, versioned (`v`), so a
//! node of a later release can tell an entry it cannot read from garbage.
//!
//! ```json
//! {"v":1,"client_id":"dev42","node":"n1","run":1733540000123,"epoch":4,
//!  "owner":{"kind":"user","name":"alice"},"expiry":3600,
//!  "subs":[{"filter":"a/+","qos":1,"no_local":false,"rap":false,"rh":0,"id":7}]}
//! ```
//!
//! * `node`, `run`: the owner node's name and the run (start) it was
//!   claimed in; `epoch` grows by one at every claim.
//! * `owner`: the session's identity ([`SessionOwner`]), compared as core
//!   compares it for `session.owner_mismatch`.
//! * `expiry`: the session expiry interval in seconds (`null` = never).
//! * `subs`: the persistent subscriptions (filter as the client wrote it,
//!   options, subscription identifier), at most as many as a session may
//!   hold; empty for a session that ends with its connection.

use std::sync::Arc;

use portcullis_core::codec::{QoS, RetainHandling, SubscriptionOptions};
use portcullis_core::owner::SessionOwner;
use serde::{Deserialize, Serialize};

/// The entry format this node writes and reads.
pub const VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub v: u8,
    pub client_id: String,
    pub node: String,
    pub run: u64,
    pub epoch: u64,
    pub owner: Owner,
    pub expiry: Option<u32>,
    #[serde(default)]
    pub subs: Vec<Sub>,
}

/// [`SessionOwner`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owner {
    pub kind: OwnerKind,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OwnerKind {
    User,
    Cert,
    Anonymous,
    Unknown,
}

/// One persistent subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sub {
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    /// Retain as published.
    pub rap: bool,
    /// Retain handling (0, 1, 2).
    pub rh: u8,
    pub id: Option<u32>,
}

/// Why an entry could not be read.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("registry entry is not JSON this node reads: {0}")]
    Json(#[from] serde_json::Error),
    #[error("registry entry format {0} (this node reads {VERSION})")]
    Version(u8),
    #[error("registry entry has an invalid field: {0}")]
    Field(&'static str),
}

impl Owner {
    pub fn of(o: &SessionOwner) -> Owner {
        let (kind, name) = match o {
            SessionOwner::User(n) => (OwnerKind::User, n.to_string()),
            SessionOwner::Cert(n) => (OwnerKind::Cert, n.to_string()),
            SessionOwner::Anonymous(n) => (OwnerKind::Anonymous, n.to_string()),
            SessionOwner::Unknown => (OwnerKind::Unknown, String::new()),
        };
        Owner { kind, name }
    }

    pub fn session_owner(&self) -> SessionOwner {
        let name: Arc<str> = Arc::from(self.name.as_str());
        match self.kind {
            OwnerKind::User => SessionOwner::User(name),
            OwnerKind::Cert => SessionOwner::Cert(name),
            OwnerKind::Anonymous => SessionOwner::Anonymous(name),
            OwnerKind::Unknown => SessionOwner::Unknown,
        }
    }
}

impl Sub {
    pub fn of(filter: &str, o: SubscriptionOptions, id: Option<u32>) -> Sub {
        Sub {
            filter: filter.to_string(),
            qos: o.qos as u8,
            no_local: o.no_local,
            rap: o.retain_as_published,
            rh: o.retain_handling as u8,
            id,
        }
    }

    pub fn options(&self) -> Result<SubscriptionOptions, EntryError> {
        Ok(SubscriptionOptions {
            qos: QoS::from_u8(self.qos).ok_or(EntryError::Field("subs.qos"))?,
            no_local: self.no_local,
            retain_as_published: self.rap,
            retain_handling: match self.rh {
                0 => RetainHandling::OnSubscribe,
                1 => RetainHandling::OnNewSubscribe,
                2 => RetainHandling::Never,
                _ => return Err(EntryError::Field("subs.rh")),
            },
        })
    }
}

impl Entry {
    pub fn encode(&self) -> bytes::Bytes {
        // Serialising plain strings and numbers cannot fail.
        serde_json::to_vec(self).map(bytes::Bytes::from).unwrap_or_default()
    }

    /// Reads an entry (its size is bounded by NATS' `max_payload`).
    pub fn decode(b: &[u8]) -> Result<Entry, EntryError> {
        #[derive(Deserialize)]
        struct Head {
            v: u8,
        }
        let head: Head = serde_json::from_slice(b)?;
        if head.v != VERSION {
            return Err(EntryError::Version(head.v));
        }
        let e: Entry = serde_json::from_slice(b)?;
        for s in &e.subs {
            s.options()?;
        }
        Ok(e)
    }

    /// The subscriptions as core's session store shapes them.
    pub fn subscriptions(&self) -> Vec<(Arc<str>, SubscriptionOptions, Option<u32>)> {
        self.subs.iter().filter_map(|s| Some((Arc::from(s.filter.as_str()), s.options().ok()?, s.id))).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entry {
        Entry {
            v: VERSION,
            client_id: "dev/42 é".into(),
            node: "n1".into(),
            run: 99,
            epoch: 4,
            owner: Owner::of(&SessionOwner::User("alice".into())),
            expiry: Some(3600),
            subs: vec![
                Sub::of(
                    "a/+",
                    SubscriptionOptions {
                        qos: QoS::AtLeastOnce,
                        no_local: true,
                        retain_as_published: false,
                        retain_handling: RetainHandling::Never,
                    },
                    Some(7),
                ),
                Sub::of("$share/g/b/#", SubscriptionOptions::default(), None),
            ],
        }
    }

    #[test]
    fn round_trips() {
        let e = sample();
        let back = Entry::decode(&e.encode()).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.owner.session_owner(), SessionOwner::User("alice".into()));
        let subs = back.subscriptions();
        assert_eq!(subs.len(), 2);
        assert_eq!(subs[0].1.retain_handling, RetainHandling::Never);
        assert!(subs[0].1.no_local);
        assert_eq!(subs[0].2, Some(7));
    }

    #[test]
    fn owners_compare_as_core_compares_them() {
        for o in [
            SessionOwner::User("x".into()),
            SessionOwner::Cert("x".into()),
            SessionOwner::Anonymous("tcp".into()),
            SessionOwner::Unknown,
        ] {
            assert_eq!(Owner::of(&o).session_owner(), o);
        }
        let user = Owner::of(&SessionOwner::User("x".into())).session_owner();
        assert!(!user.admits(&SessionOwner::Cert("x".into())), "same name, other kind");
        assert!(!Owner::of(&SessionOwner::Unknown).session_owner().admits(&SessionOwner::Unknown));
    }

    #[test]
    fn other_versions_and_garbage_are_refused() {
        let mut e = sample();
        e.v = 2;
        assert!(matches!(Entry::decode(&e.encode()), Err(EntryError::Version(2))));
        assert!(Entry::decode(b"\xff").is_err());
        assert!(Entry::decode(b"{\"v\":1}").is_err());
        let mut e = sample();
        e.subs[0].rh = 3;
        assert!(matches!(Entry::decode(&e.encode()), Err(EntryError::Field("subs.rh"))));
        let mut e = sample();
        e.subs[0].qos = 3;
        assert!(matches!(Entry::decode(&e.encode()), Err(EntryError::Field("subs.qos"))));
        let text = String::from_utf8(sample().encode().to_vec()).unwrap().replace("\"subs\"", "\"x\":1,\"subs\"");
        assert!(Entry::decode(text.as_bytes()).is_err(), "unknown fields refused");
    }
}
