//! The subscription router: which sessions receive a published message.
//!
//! * [`Router`] — a thread-safe topic trie of every subscription in the
//!   broker. [`Router::matches`] collects one [`Route`] per matching
//!   non-shared subscription and one per matching shared group (the member
//!   picked by the [`SharedStrategy`]).
//! * [`collapse()`] — folds the routes of one publish into [`Delivery`]s: one
//!   copy per client for its overlapping non-shared subscriptions (highest
//!   QoS, every subscription identifier), plus one copy per shared route.
//! * `trie` — the nodes, keyed by topic level; `shared` — a shared group and
//!   its picking state; `collapse` — the per-client merge.
//!
//! # Locking
//!
//! Filters are spread over several independently locked tries: one per hash
//! bucket of the filter's first level, plus one for filters that start with a
//! wildcard. A publish read-locks two of them (its first level's bucket and
//! the wildcard trie), one after the other, never both at once; a
//! subscribe/unsubscribe write-locks one. Publishes run concurrently with each
//! other, and a subscribe storm on one prefix only stalls publishes that hash
//! to the same bucket or that need the wildcard trie while it is written.
//! Shared-group picking mutates only atomics, so it runs under the read lock.
//!
//! # Typical publish path
//!
//! ```ignore
//! let mut routes = Vec::new();           // reused across publishes
//! let clients = router.matches(&topic, &mut routes);
//! remove_no_local(&mut routes, Some(&publisher_id)); // exact MQTT 5 No Local
//! for d in collapse(std::mem::take(&mut routes), clients) {
//!     // qos = min(d.qos, publish qos); v5: attach d.subscription_ids
//! }
//! ```

mod collapse;
mod shared;
mod trie;

#[cfg(test)]
mod tests;

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::codec::types::SubscriptionOptions;
use crate::settings::SharedStrategy;
use crate::topic::{SubscriptionFilter, TopicName};

pub use collapse::{collapse, for_each_delivery, remove_no_local, Delivery};

use trie::{Node, Slot};

/// A client identifier as the router stores it (shared, cheap to clone).
pub type ClientId = Arc<str>;

/// One subscription stored in the router.
///
/// `T` is the broker's per-session handle (cheap to clone, e.g.
/// `Arc<Session>`); the router never looks inside it.
#[derive(Clone, Debug)]
pub struct Subscriber<T> {
    pub client_id: ClientId,
    pub options: SubscriptionOptions,
    /// MQTT 5 Subscription Identifier given with the SUBSCRIBE, if any.
    pub subscription_id: Option<u32>,
    /// Messages delivered through this subscription are checked against
    /// the ACL first (see [`crate::session::SubRecord::check`]).
    pub check: bool,
    pub handle: T,
}

/// Whether the non-shared routes of one publish may name a client twice
/// (see [`Router::matches`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Clients {
    /// At most one filter contributed non-shared routes: every client in
    /// them is there once.
    Distinct,
    /// Several filters did: one client's overlapping subscriptions may each
    /// have a route.
    MayRepeat,
}

/// One matching subscription of a publish.
#[derive(Clone, Debug)]
pub struct Route<T> {
    pub subscriber: Subscriber<T>,
    /// The subscription is a shared one (`$share/…` or `$queue/…`); the
    /// subscriber is the one member its group picked for this message.
    pub shared: bool,
}

/// Number of hash buckets for filters with a literal first level.
const SHARDS: usize = 16;

/// The subscriptions of the whole broker, matched per publish.
pub struct Router<T> {
    strategy: SharedStrategy,
    /// Filters whose first level is literal, by hash of that level.
    shards: Box<[RwLock<Node<T>>]>,
    /// Filters whose first level is `+` or `#`: every publish looks here.
    wild: RwLock<Node<T>>,
    /// Picks a shard; randomly keyed so clients cannot aim at one bucket.
    hasher: RandomState,
    /// Filters with at least one subscriber. Only changed under a write
    /// lock; read without one.
    topics: AtomicUsize,
    /// (client, subscription filter) pairs.
    subscriptions: AtomicUsize,
    /// Those of them whose filter starts with `$` (the only ones a `$SYS`
    /// topic can match: wildcard-first filters never match `$` topics).
    dollar_subscriptions: AtomicUsize,
}

impl<T> fmt::Debug for Router<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("strategy", &self.strategy)
            .field("topics", &self.topics.load(Ordering::Relaxed))
            .field("subscriptions", &self.subscriptions.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl<T: Clone + Send + Sync> Default for Router<T> {
    fn default() -> Self {
        Router::new(SharedStrategy::default())
    }
}

impl<T: Clone + Send + Sync> Router<T> {
    pub fn new(strategy: SharedStrategy) -> Self {
        Router {
            strategy,
            shards: (0..SHARDS).map(|_| RwLock::new(Node::default())).collect(),
            wild: RwLock::new(Node::default()),
            hasher: RandomState::new(),
            topics: AtomicUsize::new(0),
            subscriptions: AtomicUsize::new(0),
            dollar_subscriptions: AtomicUsize::new(0),
        }
    }

    /// The strategy shared groups pick their receiver with.
    pub fn strategy(&self) -> SharedStrategy {
        self.strategy
    }

    /// Inserts a subscription, or replaces the options, identifier and
    /// handle of the same client's subscription to the same
    /// [`SubscriptionFilter`] (same group, same filter). Returns `true` if
    /// the subscription is new.
    pub fn subscribe(&self, filter: &SubscriptionFilter, sub: Subscriber<T>) -> bool {
        self.subscribe_notify(filter, sub, || {})
    }

    /// [`Router::subscribe`], calling `first` when the subscription is the
    /// first one of its key — (no group, filter) or (group, filter) — so
    /// the distinct local filters can be followed elsewhere (the remote
    /// routing seam). `first` runs under the trie's write lock, so the
    /// first/last calls of one key are never reordered: it must not block
    /// nor touch the router.
    pub fn subscribe_notify(&self, filter: &SubscriptionFilter, sub: Subscriber<T>, first: impl FnOnce()) -> bool {
        let (path, slot) = Slot::split(filter.filter.as_str());
        let mut root = self.trie_for_filter(filter).write();
        let (new_sub, new_topic, first_of_key) = root.insert(path, slot, filter.share_group.as_ref(), sub);
        if first_of_key {
            first();
        }
        if new_topic {
            self.topics.fetch_add(1, Ordering::Relaxed);
        }
        if new_sub {
            self.subscriptions.fetch_add(1, Ordering::Relaxed);
            if filter.filter.as_str().starts_with('$') {
                self.dollar_subscriptions.fetch_add(1, Ordering::Relaxed);
            }
        }
        new_sub
    }

    /// Removes a client's subscription. Returns `true` if it existed. Trie
    /// nodes left without subscriptions are freed.
    pub fn unsubscribe(&self, filter: &SubscriptionFilter, client_id: &str) -> bool {
        self.unsubscribe_notify(filter, client_id, || {})
    }

    /// [`Router::unsubscribe`], calling `last` (under the trie's write
    /// lock, as [`Router::subscribe_notify`] calls `first`) when the
    /// subscription was the last one of its key.
    pub fn unsubscribe_notify(&self, filter: &SubscriptionFilter, client_id: &str, last: impl FnOnce()) -> bool {
        let (path, slot) = Slot::split(filter.filter.as_str());
        let mut root = self.trie_for_filter(filter).write();
        let Some((topic_gone, last_of_key)) =
            root.remove(path, slot, filter.share_group.as_deref(), client_id, self.strategy)
        else {
            return false;
        };
        if last_of_key {
            last();
        }
        if topic_gone {
            self.topics.fetch_sub(1, Ordering::Relaxed);
        }
        self.subscriptions.fetch_sub(1, Ordering::Relaxed);
        if filter.filter.as_str().starts_with('$') {
            self.dollar_subscriptions.fetch_sub(1, Ordering::Relaxed);
        }
        true
    }

    /// Appends to `out` every delivery of a message published to `topic`:
    /// one [`Route`] per matching non-shared (client, filter), and for each
    /// matching shared group (per group and filter) the one member the
    /// strategy picks. A client may appear several times; see [`collapse()`].
    ///
    /// No Local is not applied here (see [`remove_no_local`]). Allocates
    /// only to grow `out`, plus one small work list when the topic's path
    /// through the trie branches (a literal and a `+` both match a level).
    ///
    /// Returns whether a client may appear more than once among the
    /// non-shared routes (more than one filter contributed some), which
    /// [`collapse()`] needs to know.
    pub fn matches(&self, topic: &TopicName, out: &mut Vec<Route<T>>) -> Clients {
        self.collect(topic, true, out)
    }

    /// [`Router::matches`] without shared groups: the non-shared routes
    /// only, and no group picks (so no round-robin turn is spent). For a
    /// message from another node, whose shared delivery is decided there
    /// (see [`crate::remote`]).
    pub fn matches_plain(&self, topic: &TopicName, out: &mut Vec<Route<T>>) -> Clients {
        self.collect(topic, false, out)
    }

    fn collect(&self, topic: &TopicName, groups: bool, out: &mut Vec<Route<T>>) -> Clients {
        let name = topic.as_str();
        let first = name.split('/').next().unwrap_or(name);
        let plain = {
            let shard = self.shards[self.shard_of(first)].read();
            shard.collect(name, self.strategy, groups, out)
        };
        let wild = self.wild.read();
        match plain + wild.collect(name, self.strategy, groups, out) {
            0 | 1 => Clients::Distinct,
            _ => Clients::MayRepeat,
        }
    }

    /// The one member of the shared group `filter.share_group` on
    /// `filter.filter` that the strategy picks for the next message, if
    /// the group has a member here; `None` for a non-shared filter.
    pub fn pick_shared(&self, filter: &SubscriptionFilter) -> Option<Subscriber<T>> {
        let group = filter.share_group.as_deref()?;
        let (path, slot) = Slot::split(filter.filter.as_str());
        let root = self.trie_for_filter(filter).read();
        root.pick_in_group(path, slot, group, self.strategy)
    }

    /// Number of distinct topic filters with at least one subscriber
    /// (`a/+` and `$share/g/a/+` count as one filter). O(1).
    pub fn topic_count(&self) -> usize {
        self.topics.load(Ordering::Relaxed)
    }

    /// Number of subscriptions: (client, subscription filter) pairs. O(1).
    pub fn subscription_count(&self) -> usize {
        self.subscriptions.load(Ordering::Relaxed)
    }

    /// Whether any subscription could match a `$`-topic (`$SYS/...`): a
    /// cheap test before building one that nobody would receive.
    pub fn has_dollar_subscriptions(&self) -> bool {
        self.dollar_subscriptions.load(Ordering::Relaxed) != 0
    }

    fn trie_for_filter(&self, filter: &SubscriptionFilter) -> &RwLock<Node<T>> {
        let f = filter.filter.as_str();
        let first = f.split('/').next().unwrap_or(f);
        if first == "+" || first == "#" {
            &self.wild
        } else {
            &self.shards[self.shard_of(first)]
        }
    }

    fn shard_of(&self, first_level: &str) -> usize {
        // The modulo keeps the value below SHARDS, so the cast is lossless.
        (self.hasher.hash_one(first_level) % SHARDS as u64) as usize
    }
}

#[cfg(test)]
impl<T> Router<T> {
    /// Trie nodes below the roots (0 once every subscription is gone).
    fn node_count(&self) -> usize {
        self.shards.iter().chain(std::iter::once(&self.wild)).map(|r| r.read().descendants()).sum()
    }

    /// No subscriptions and no nodes left anywhere.
    fn is_pristine(&self) -> bool {
        self.shards.iter().chain(std::iter::once(&self.wild)).all(|r| r.read().is_empty())
    }
}
