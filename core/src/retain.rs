//! The retained message store.
//!
//! One message per topic, bounded in count and payload size. Lookups for a
//! new subscription scan the store with the filter; the store is read far
//! less often than the publish path writes, and a scan of a million short
//! topics takes milliseconds, so a second trie is not worth its memory yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use parking_lot::RwLock;

use crate::message::Message;
use crate::settings::RetainSettings;
use crate::topic::{TopicFilter, TopicName};

/// What happened to a retained publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetainResult {
    Stored,
    Replaced,
    Cleared,
    /// Empty payload for a topic with nothing retained.
    NothingToClear,
    /// Refused: store full (new topic beyond `max_count`).
    Full,
    /// Refused: payload larger than `max_payload_size`.
    TooLarge,
    /// Retained messages are disabled.
    Disabled,
}

#[derive(Debug)]
pub struct RetainStore {
    settings: RetainSettings,
    map: RwLock<HashMap<TopicName, Arc<Message>>>,
}

impl RetainStore {
    pub fn new(settings: RetainSettings) -> RetainStore {
        RetainStore { settings, map: RwLock::new(HashMap::new()) }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    /// Stores, replaces or clears (empty payload) the retained message.
    pub fn set(&self, msg: &Arc<Message>) -> RetainResult {
        if !self.settings.enabled {
            return RetainResult::Disabled;
        }
        if msg.payload.is_empty() {
            return match self.map.write().remove(&msg.topic) {
                Some(_) => RetainResult::Cleared,
                None => RetainResult::NothingToClear,
            };
        }
        if msg.payload.len() > self.settings.max_payload_size {
            return RetainResult::TooLarge;
        }
        let mut map = self.map.write();
        if let Some(slot) = map.get_mut(&msg.topic) {
            *slot = msg.clone();
            return RetainResult::Replaced;
        }
        if self.settings.max_count != 0 && map.len() >= self.settings.max_count {
            return RetainResult::Full;
        }
        map.insert(msg.topic.clone(), msg.clone());
        RetainResult::Stored
    }

    /// Every unexpired retained message whose topic matches `filter`.
    pub fn matching(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Message>> {
        let map = self.map.read();
        if !filter.has_wildcards() {
            return TopicName::new(filter.as_str())
                .ok()
                .and_then(|t| map.get(&t).cloned())
                .filter(|m| !m.expired(now))
                .into_iter()
                .collect();
        }
        map.values().filter(|m| filter.matches(&m.topic) && !m.expired(now)).cloned().collect()
    }

    /// Every retained message (for snapshots).
    pub fn all(&self) -> Vec<Arc<Message>> {
        self.map.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut map = self.map.write();
        let before = map.len();
        map.retain(|_, m| !m.expired(now));
        before - map.len()
    }
}
