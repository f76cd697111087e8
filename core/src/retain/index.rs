//! The retained messages by topic, as a path-compressed trie of topic
//! levels, so that a SUBSCRIBE with a wildcard walks only the subtrees its
//! filter can match instead of every retained topic.
//!
//! * A node is reached from its parent by one or more levels: the first
//!   is its key in the parent's map, the others its `tail`. A node that
//!   holds no message has at least two children (the root excepted), so
//!   a retained topic costs at most two nodes however deep it is, and the
//!   label bytes of a node never exceed its topic's: a peer cannot make
//!   the index much larger than the topics it retains.
//! * A literal filter level is one hash lookup; `+` visits each child;
//!   `#` takes a whole subtree (and the message of the level above it,
//!   as MQTT wants: `a/#` matches `a`).
//! * A filter whose first level is a wildcard never matches a topic whose
//!   first level starts with `$` (MQTT-4.7.2-1).

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::Message;

/// A node's children, by the first level of their edge; `None` for a
/// leaf, so that the many leaves do not each carry an empty map.
type Children = Option<Box<HashMap<Box<str>, Node>>>;

#[derive(Debug, Default)]
struct Node {
    /// The levels after the first on the edge to this node, `/`-joined;
    /// `None` for a one-level edge (an empty level is `Some("")`).
    tail: Option<Box<str>>,
    msg: Option<Arc<Message>>,
    children: Children,
}

/// `levels` `/`-joined, `None` for no levels.
fn join(levels: &[&str]) -> Option<Box<str>> {
    (!levels.is_empty()).then(|| levels.join("/").into_boxed_str())
}

impl Node {
    fn tail_levels(&self) -> Vec<&str> {
        self.tail.as_deref().map_or_else(Vec::new, |t| t.split('/').collect())
    }

    fn child_count(&self) -> usize {
        self.children.as_ref().map_or(0, |c| c.len())
    }

    /// Cuts the edge after `at` tail levels: this node keeps the first
    /// `at`, and a new only child takes the rest with the message and the
    /// children.
    fn split(&mut self, at: usize) {
        let tail = self.tail.take().unwrap_or_default();
        let parts: Vec<&str> = tail.split('/').collect();
        let lower = Node { tail: join(&parts[at + 1..]), msg: self.msg.take(), children: self.children.take() };
        self.tail = join(&parts[..at]);
        let mut map = HashMap::with_capacity(1);
        map.insert(parts[at].into(), lower);
        self.children = Some(Box::new(map));
    }

    /// A node without a message and with a single child becomes that
    /// child, its edge lengthened (keeps the invariant in the module docs).
    fn absorb_only_child(&mut self) {
        let Some(mut map) = self.children.take() else { return };
        let Some(key) = map.keys().next().cloned() else { return };
        let Some(child) = map.remove(&key) else { return };
        let mut levels = self.tail_levels();
        levels.push(&key);
        levels.extend(child.tail_levels());
        self.tail = join(&levels);
        self.msg = child.msg;
        self.children = child.children;
    }

    /// After a removal below: drops the child at `key` if it holds nothing
    /// any more, or merges it with its only child.
    fn tidy_child(&mut self, key: &str) {
        let Some(map) = self.children.as_mut() else { return };
        let Some(child) = map.get_mut(key) else { return };
        if child.msg.is_some() {
            return;
        }
        match child.child_count() {
            0 => {
                map.remove(key);
                if map.is_empty() {
                    self.children = None;
                }
            }
            1 => child.absorb_only_child(),
            _ => {}
        }
    }

    /// Every message in this subtree.
    fn each(&self, out: &mut impl FnMut(&Arc<Message>)) {
        if let Some(m) = &self.msg {
            out(m);
        }
        for child in self.children.iter().flat_map(|c| c.values()) {
            child.each(out);
        }
    }

    /// This node is reached; `filter` is what is left of the filter.
    /// `root`: the node is the root (the `$` rule applies to its children).
    fn matches(&self, filter: &[&str], root: bool, out: &mut impl FnMut(&Arc<Message>)) {
        let Some(&first) = filter.first() else {
            if let Some(m) = &self.msg {
                out(m);
            }
            return;
        };
        let Some(children) = self.children.as_ref() else {
            if first == "#" {
                // `a/#` matches `a` itself.
                self.each(out);
            }
            return;
        };
        match first {
            "#" | "+" => {
                if first == "#" {
                    if let Some(m) = &self.msg {
                        out(m);
                    }
                }
                for (key, child) in children.iter() {
                    if root && key.starts_with('$') {
                        continue;
                    }
                    if first == "#" {
                        child.each(out);
                    } else {
                        child.follow(filter, out);
                    }
                }
            }
            literal => {
                if let Some(child) = children.get(literal) {
                    child.follow(filter, out);
                }
            }
        }
    }

    /// The filter's first level matched this node's key: matches the
    /// tail's levels, then goes on below.
    fn follow(&self, filter: &[&str], out: &mut impl FnMut(&Arc<Message>)) {
        let mut rest = &filter[1..];
        if let Some(tail) = self.tail.as_deref() {
            for level in tail.split('/') {
                match rest.first() {
                    // The filter ends above this node: its topics are longer.
                    None => return,
                    Some(&"#") => return self.each(out),
                    Some(&"+") => {}
                    Some(f) if *f == level => {}
                    Some(_) => return,
                }
                rest = &rest[1..];
            }
        }
        self.matches(rest, false, out);
    }

    /// Removes the message at `levels` below this node.
    fn remove(&mut self, levels: &[&str]) -> Option<Arc<Message>> {
        let Some((&first, rest)) = levels.split_first() else {
            return self.msg.take();
        };
        let child = self.children.as_mut()?.get_mut(first)?;
        let tail_len = {
            let tail = child.tail_levels();
            if rest.len() < tail.len() || rest[..tail.len()] != tail[..] {
                return None;
            }
            tail.len()
        };
        let removed = child.remove(&rest[tail_len..])?;
        self.tidy_child(first);
        Some(removed)
    }

    /// Removes every message `select` picks, handing each to `removed`.
    fn remove_if(&mut self, select: &mut impl FnMut(&Arc<Message>) -> bool, removed: &mut impl FnMut(Arc<Message>)) {
        if self.msg.as_ref().is_some_and(&mut *select) {
            if let Some(m) = self.msg.take() {
                removed(m);
            }
        }
        let Some(map) = self.children.as_mut() else { return };
        let keys: Vec<Box<str>> = map.keys().cloned().collect();
        for child in map.values_mut() {
            child.remove_if(select, removed);
        }
        for key in &keys {
            self.tidy_child(key);
        }
    }

    #[cfg(test)]
    fn nodes(&self) -> usize {
        1 + self.children.iter().flat_map(|c| c.values()).map(Node::nodes).sum::<usize>()
    }
}

/// Retained messages by topic (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct TopicIndex {
    root: Node,
    len: usize,
}

impl TopicIndex {
    /// Number of messages held.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The message retained at exactly `topic`.
    pub(crate) fn get(&self, topic: &str) -> Option<&Arc<Message>> {
        let mut node = &self.root;
        let mut levels = topic.split('/');
        while let Some(level) = levels.next() {
            node = node.children.as_ref()?.get(level)?;
            if let Some(tail) = node.tail.as_deref() {
                for t in tail.split('/') {
                    if levels.next()? != t {
                        return None;
                    }
                }
            }
        }
        node.msg.as_ref()
    }

    /// The slot of the message retained at exactly `topic` (replacing in
    /// place: no allocation on the common retained publish).
    pub(crate) fn get_mut(&mut self, topic: &str) -> Option<&mut Arc<Message>> {
        let mut node = &mut self.root;
        let mut levels = topic.split('/');
        while let Some(level) = levels.next() {
            node = node.children.as_mut()?.get_mut(level)?;
            if let Some(tail) = node.tail.as_deref() {
                for t in tail.split('/') {
                    if levels.next()? != t {
                        return None;
                    }
                }
            }
        }
        node.msg.as_mut()
    }

    /// Stores `msg` at `topic`; returns the message it replaced.
    pub(crate) fn insert(&mut self, topic: &str, msg: Arc<Message>) -> Option<Arc<Message>> {
        let levels: Vec<&str> = topic.split('/').collect();
        let mut node = &mut self.root;
        let mut i = 0;
        while i < levels.len() {
            let children = node.children.get_or_insert_with(Default::default);
            if !children.contains_key(levels[i]) {
                let leaf = Node { tail: join(&levels[i + 1..]), msg: Some(msg), children: None };
                children.insert(levels[i].into(), leaf);
                self.len += 1;
                return None;
            }
            let Some(child) = children.get_mut(levels[i]) else { unreachable!("checked above") };
            let (common, whole) = match child.tail.as_deref() {
                None => (0, true),
                Some(tail) => {
                    let common = tail.split('/').zip(&levels[i + 1..]).take_while(|(a, b)| a == *b).count();
                    (common, common == tail.split('/').count())
                }
            };
            if !whole {
                child.split(common);
            }
            node = child;
            i += 1 + common;
        }
        let old = node.msg.replace(msg);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes the message at `topic`, if there is one.
    pub(crate) fn remove(&mut self, topic: &str) -> Option<Arc<Message>> {
        let levels: Vec<&str> = topic.split('/').collect();
        let removed = self.root.remove(&levels)?;
        self.len -= 1;
        Some(removed)
    }

    /// Calls `out` with every message whose topic `filter` matches (given
    /// as its levels).
    pub(crate) fn for_each_match(&self, filter: &[&str], mut out: impl FnMut(&Arc<Message>)) {
        self.root.matches(filter, true, &mut out);
    }

    /// Calls `out` with every message.
    pub(crate) fn for_each(&self, mut out: impl FnMut(&Arc<Message>)) {
        self.root.each(&mut out);
    }

    /// Removes every message `select` picks; `removed` gets each.
    pub(crate) fn remove_if(
        &mut self,
        mut select: impl FnMut(&Arc<Message>) -> bool,
        mut removed: impl FnMut(Arc<Message>),
    ) {
        let mut n = 0;
        self.root.remove_if(&mut select, &mut |m| {
            n += 1;
            removed(m);
        });
        self.len -= n;
    }

    /// Trie nodes, the root included (for tests of the invariant).
    #[cfg(test)]
    pub(crate) fn nodes(&self) -> usize {
        self.root.nodes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::QoS;
    use crate::topic::{TopicFilter, TopicName};
    use bytes::Bytes;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::collections::{BTreeMap, BTreeSet};

    fn msg(topic: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: TopicName::new(topic).unwrap(),
            payload: Bytes::from_static(b"x"),
            qos: QoS::AtMostOnce,
            retain: true,
            properties: None,
            publisher: None,
            expires_at: None,
        })
    }

    fn found(ix: &TopicIndex, filter: &str) -> BTreeSet<String> {
        let levels: Vec<&str> = filter.split('/').collect();
        let mut out = BTreeSet::new();
        ix.for_each_match(&levels, |m| {
            assert!(out.insert(m.topic.as_str().to_string()), "{filter}: {} twice", m.topic);
        });
        out
    }

    #[test]
    fn insert_get_replace_remove() {
        let mut ix = TopicIndex::default();
        assert!(ix.insert("a/b/c", msg("a/b/c")).is_none());
        assert!(ix.insert("a/b/d", msg("a/b/d")).is_none());
        assert!(ix.insert("a", msg("a")).is_none());
        assert!(ix.insert("a//x", msg("a//x")).is_none());
        assert!(ix.insert("/", msg("/")).is_none());
        assert!(ix.insert("a/b/c", msg("a/b/c")).is_some(), "replaced");
        assert_eq!(ix.len(), 5);
        for t in ["a/b/c", "a/b/d", "a", "a//x", "/"] {
            assert_eq!(ix.get(t).map(|m| m.topic.as_str()), Some(t));
        }
        for t in ["a/b", "a/b/c/d", "b", "", "a/", "a//"] {
            assert!(ix.get(t).is_none(), "{t}");
        }
        assert!(ix.remove("a/b").is_none());
        assert!(ix.remove("a/b/c/d").is_none());
        for t in ["a/b/c", "a", "a//x", "/", "a/b/d"] {
            assert!(ix.remove(t).is_some(), "{t}");
            assert!(ix.get(t).is_none(), "{t}");
        }
        assert_eq!((ix.len(), ix.nodes()), (0, 1), "only the root is left");
    }

    #[test]
    fn deep_topics_cost_at_most_two_nodes_each() {
        let mut ix = TopicIndex::default();
        let deep = vec!["x"; 5000].join("/");
        ix.insert(&deep, msg(&deep));
        assert_eq!(ix.nodes(), 2);
        let other = format!("{}/y", vec!["x"; 2500].join("/"));
        ix.insert(&other, msg(&other));
        assert_eq!(ix.nodes(), 4, "root, the shared part, two leaves");
        assert_eq!(found(&ix, "x/#").len(), 2);
        assert!(ix.remove(&other).is_some());
        assert_eq!(ix.nodes(), 2, "merged back");
    }

    #[test]
    fn dollar_topics_and_parent_level() {
        let mut ix = TopicIndex::default();
        for t in ["$SYS/x", "$SYS", "a", "a/b", "x$"] {
            ix.insert(t, msg(t));
        }
        let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(found(&ix, "#"), set(&["a", "a/b", "x$"]));
        assert_eq!(found(&ix, "+"), set(&["a", "x$"]));
        assert_eq!(found(&ix, "+/b"), set(&["a/b"]));
        assert_eq!(found(&ix, "$SYS/#"), set(&["$SYS/x", "$SYS"]));
        assert_eq!(found(&ix, "a/#"), set(&["a", "a/b"]));
        assert_eq!(found(&ix, "a/+"), set(&["a/b"]));
    }

    /// Random topics over a small alphabet (so that prefixes are shared
    /// and nodes split and merge), random filters, and random removals:
    /// the index finds exactly what matching every topic would find.
    #[test]
    fn agrees_with_naive_matching() {
        let mut rng = StdRng::seed_from_u64(0x5EED);
        let words = ["a", "b", "", "$s", "c"];
        let level = |rng: &mut StdRng| words[rng.gen_range(0..words.len())];
        // A topic name is never empty: a lone empty level becomes `c`.
        let topic = |rng: &mut StdRng| {
            let n = rng.gen_range(1..=5);
            let t = (0..n).map(|_| level(rng)).collect::<Vec<_>>().join("/");
            if t.is_empty() {
                "c".to_string()
            } else {
                t
            }
        };
        for round in 0..40 {
            let mut ix = TopicIndex::default();
            let mut naive: BTreeMap<String, Arc<Message>> = BTreeMap::new();
            for _ in 0..rng.gen_range(1..120) {
                let t = topic(&mut rng);
                if rng.gen_bool(0.2) {
                    assert_eq!(ix.remove(&t).is_some(), naive.remove(&t).is_some(), "remove {t}");
                } else {
                    let m = msg(&t);
                    assert_eq!(ix.insert(&t, m.clone()).is_some(), naive.insert(t, m).is_some());
                }
                assert_eq!(ix.len(), naive.len());
            }
            if round % 4 == 0 {
                let drop_b = |m: &Arc<Message>| m.topic.as_str().contains('b');
                let mut gone = 0;
                ix.remove_if(drop_b, |_| gone += 1);
                let before = naive.len();
                naive.retain(|t, _| !t.contains('b'));
                assert_eq!(gone, before - naive.len());
                assert_eq!(ix.len(), naive.len());
            }
            // Invariant: no more than two nodes per message, plus the root.
            assert!(ix.nodes() <= 2 * ix.len() + 1, "{} nodes for {}", ix.nodes(), ix.len());
            for t in naive.keys() {
                assert!(ix.get(t).is_some(), "get {t}");
            }
            for _ in 0..200 {
                let n = rng.gen_range(1..=5);
                let mut levels: Vec<&str> = Vec::new();
                for i in 0..n {
                    let r = rng.gen_range(0..10);
                    levels.push(match r {
                        0..=1 => "+",
                        2 if i == n - 1 => "#",
                        _ => level(&mut rng),
                    });
                }
                let f = match levels.join("/") {
                    f if f.is_empty() => "+".to_string(),
                    f => f,
                };
                let filter = TopicFilter::new(&f).unwrap();
                let want: BTreeSet<String> =
                    naive.values().filter(|m| filter.matches(&m.topic)).map(|m| m.topic.as_str().to_string()).collect();
                assert_eq!(found(&ix, &f), want, "filter {f}");
            }
        }
    }
}
