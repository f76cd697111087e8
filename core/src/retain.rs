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
    /// Client and `$SYS` retained messages. `$SYS` entries are the broker's
    /// own and do not count against `max_count`.
    map: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<TopicName, Arc<Message>>,
    /// How many entries of `map` are `$SYS` topics.
    sys: usize,
}

impl Inner {
    fn clients(&self) -> usize {
        self.map.len() - self.sys
    }
}

fn is_sys(t: &TopicName) -> bool {
    t.as_str().starts_with("$SYS/")
}

impl RetainStore {
    pub fn new(settings: RetainSettings) -> RetainStore {
        RetainStore { settings, map: RwLock::new(Inner::default()) }
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
            let mut inner = self.map.write();
            return match inner.map.remove(&msg.topic) {
                Some(_) => {
                    if is_sys(&msg.topic) {
                        inner.sys -= 1;
                    }
                    RetainResult::Cleared
                }
                None => RetainResult::NothingToClear,
            };
        }
        if msg.payload.len() > self.settings.max_payload_size {
            return RetainResult::TooLarge;
        }
        let mut inner = self.map.write();
        if let Some(slot) = inner.map.get_mut(&msg.topic) {
            *slot = msg.clone();
            return RetainResult::Replaced;
        }
        let sys = is_sys(&msg.topic);
        if sys {
            inner.sys += 1;
        } else if self.settings.max_count != 0 && inner.clients() >= self.settings.max_count {
            return RetainResult::Full;
        }
        inner.map.insert(msg.topic.clone(), msg.clone());
        RetainResult::Stored
    }

    /// Every unexpired retained message whose topic matches `filter`.
    pub fn matching(&self, filter: &TopicFilter, now: Instant) -> Vec<Arc<Message>> {
        let inner = self.map.read();
        let map = &inner.map;
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
        self.map.read().map.values().cloned().collect()
    }

    /// Retained messages published by clients (`$SYS` values excluded).
    pub fn len(&self) -> usize {
        self.map.read().clients()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired messages; returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut inner = self.map.write();
        let before = inner.map.len();
        inner.map.retain(|_, m| !m.expired(now));
        inner.sys = inner.map.keys().filter(|t| is_sys(t)).count();
        before - inner.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use bytes::Bytes;

    fn msg(topic: &str, payload: &'static [u8]) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(payload),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: Default::default(),
            publisher: None,
            expires_at: None,
        })
    }

    #[test]
    fn sys_topics_do_not_count_against_max_count() {
        let s = RetainStore::new(RetainSettings { max_count: 2, ..Default::default() });
        for i in 0..10 {
            assert_eq!(s.set(&msg(&format!("$SYS/brokers/n/x{i}"), b"1")), RetainResult::Stored);
        }
        assert_eq!(s.set(&msg("a", b"1")), RetainResult::Stored);
        assert_eq!(s.set(&msg("b", b"1")), RetainResult::Stored);
        assert_eq!(s.set(&msg("c", b"1")), RetainResult::Full);
        assert_eq!(s.set(&msg("a", b"2")), RetainResult::Replaced);
        assert_eq!(s.len(), 2);
        assert_eq!(s.set(&msg("a", b"")), RetainResult::Cleared);
        assert_eq!(s.set(&msg("c", b"1")), RetainResult::Stored);
        assert_eq!(s.set(&msg("$SYS/brokers/n/x0", b"")), RetainResult::Cleared);
        assert_eq!(s.len(), 2);
        assert_eq!(s.all().len(), 11);
    }

    #[test]
    fn matching_and_limits() {
        let s = RetainStore::new(RetainSettings { max_payload_size: 3, ..Default::default() });
        assert_eq!(s.set(&msg("a/b", b"1234")), RetainResult::TooLarge);
        assert_eq!(s.set(&msg("a/b", b"1")), RetainResult::Stored);
        assert_eq!(s.set(&msg("$SYS/x", b"1")), RetainResult::Stored);
        let now = Instant::now();
        assert_eq!(s.matching(&TopicFilter::new("a/+").unwrap(), now).len(), 1);
        assert_eq!(s.matching(&TopicFilter::new("#").unwrap(), now).len(), 1);
        assert_eq!(s.matching(&TopicFilter::new("a/b").unwrap(), now).len(), 1);
        assert_eq!(s.matching(&TopicFilter::new("$SYS/#").unwrap(), now).len(), 1);
    }
}
