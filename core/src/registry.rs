//! The session registry: client id → session, with a count of sessions
//! per owning identity when a per-identity limit is set.
//!
//! Only [`crate::broker::Broker`] holds one, behind its registry lock;
//! every insert and removal goes through here so the counts cannot drift.

use std::collections::HashMap;
use std::sync::Arc;

use crate::owner::SessionOwner;
use crate::session::Session;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    map: HashMap<Arc<str>, Arc<Session>>,
    /// Sessions per owner; kept only while `count_owners` (a limit is set),
    /// so the common configuration pays nothing for it.
    per_owner: HashMap<SessionOwner, usize>,
    count_owners: bool,
}

impl Registry {
    pub fn new(count_owners: bool) -> Registry {
        Registry { count_owners, ..Registry::default() }
    }

    pub fn get(&self, client_id: &str) -> Option<&Arc<Session>> {
        self.map.get(client_id)
    }

    pub fn contains(&self, client_id: &str) -> bool {
        self.map.contains_key(client_id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &Arc<Session>> {
        self.map.values()
    }

    /// Sessions `owner` holds (0 when owners are not counted).
    pub fn owned_by(&self, owner: &SessionOwner) -> usize {
        self.per_owner.get(owner).copied().unwrap_or(0)
    }

    /// Registers `session` under its client id (the caller removed any
    /// previous one).
    pub fn insert(&mut self, session: Arc<Session>) {
        if self.count_owners {
            *self.per_owner.entry(session.owner.clone()).or_insert(0) += 1;
        }
        if let Some(old) = self.map.insert(session.client_id.clone(), session) {
            self.forget_owner(&old.owner);
        }
    }

    /// Removes the entry for `client_id` if it is `session`.
    pub fn remove_if(&mut self, session: &Arc<Session>) -> bool {
        if !self.map.get(&session.client_id).is_some_and(|s| Arc::ptr_eq(s, session)) {
            return false;
        }
        self.map.remove(&session.client_id);
        self.forget_owner(&session.owner);
        true
    }

    fn forget_owner(&mut self, owner: &SessionOwner) {
        if !self.count_owners {
            return;
        }
        if let Some(n) = self.per_owner.get_mut(owner) {
            *n -= 1;
            if *n == 0 {
                self.per_owner.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str, owner: &str) -> Arc<Session> {
        Arc::new(Session::new(Arc::from(id), SessionOwner::User(Arc::from(owner)), None))
    }

    #[test]
    fn counts_follow_inserts_and_removals() {
        let mut r = Registry::new(true);
        let alice = SessionOwner::User(Arc::from("alice"));
        let a1 = session("a1", "alice");
        r.insert(a1.clone());
        r.insert(session("a2", "alice"));
        r.insert(session("b1", "bob"));
        assert_eq!(r.owned_by(&alice), 2);
        // Replacing a1 with a session of bob's moves the count.
        let a1_bob = session("a1", "bob");
        r.insert(a1_bob.clone());
        assert_eq!(r.owned_by(&alice), 1);
        assert_eq!(r.owned_by(&SessionOwner::User(Arc::from("bob"))), 2);
        assert!(!r.remove_if(&a1), "a1 was replaced");
        assert!(r.remove_if(&a1_bob));
        assert_eq!(r.len(), 2);
        assert_eq!(r.owned_by(&SessionOwner::User(Arc::from("bob"))), 1);
    }

    #[test]
    fn uncounted_registry_keeps_no_owner_map() {
        let mut r = Registry::new(false);
        r.insert(session("a1", "alice"));
        assert_eq!(r.owned_by(&SessionOwner::User(Arc::from("alice"))), 0);
        assert!(r.per_owner.is_empty());
    }
}
