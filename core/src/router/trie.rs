//! The topic trie: one node per filter level.
//!
//! A node reached by the levels `a/b` holds the subscriptions to `a/b`
//! (`exact`) and to `a/b/#` (`multi`); its children are the literal next
//! levels (a hash map) and `+` (a field of its own, so matching never hashes
//! a wildcard). `#` needs no node: `a/#` matches `a` and everything under
//! it, which is exactly "every topic whose walk passes through node `a`".
//!
//! Walking, inserting, pruning and dropping are all iterative: a filter or
//! topic may have tens of thousands of levels, more than a thread's stack
//! could recurse through.

use std::collections::HashMap;
use std::str::Split;
use std::sync::Arc;

use super::shared::SharedGroup;
use super::{ClientId, Route, Subscriber};
use crate::settings::SharedStrategy;

/// Where in its last node a filter's subscriptions live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    /// The filter ends at the node (`a/b`, `a/+`).
    Exact,
    /// The filter is the node's path followed by `#` (`a/#`, `#`).
    Multi,
}

impl Slot {
    /// Splits a filter into the levels leading to its node (`None` = the
    /// root) and its slot there.
    pub(super) fn split(filter: &str) -> (Option<&str>, Slot) {
        if filter == "#" {
            (None, Slot::Multi)
        } else if let Some(path) = filter.strip_suffix("/#") {
            (Some(path), Slot::Multi)
        } else {
            (Some(filter), Slot::Exact)
        }
    }
}

fn levels(path: Option<&str>) -> impl Iterator<Item = &str> {
    path.into_iter().flat_map(|p| p.split('/'))
}

pub(super) struct Node<T> {
    /// Literal next levels. Std's randomly keyed hasher: the keys are chosen
    /// by clients, and a predictable hash would let them collide on purpose.
    children: HashMap<Box<str>, Node<T>>,
    plus: Option<Box<Node<T>>>,
    exact: Option<Box<Entry<T>>>,
    multi: Option<Box<Entry<T>>>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node { children: HashMap::new(), plus: None, exact: None, multi: None }
    }
}

impl<T> Drop for Node<T> {
    /// Frees the subtree with a work list instead of the recursive drop glue,
    /// which a very deep filter would turn into a stack overflow.
    fn drop(&mut self) {
        if self.children.is_empty() && self.plus.is_none() {
            return;
        }
        let mut pending = Vec::new();
        self.detach_children(&mut pending);
        while let Some(mut node) = pending.pop() {
            node.detach_children(&mut pending);
            // `node` is dropped here without children.
        }
    }
}

impl<T> Node<T> {
    fn detach_children(&mut self, into: &mut Vec<Node<T>>) {
        into.extend(self.children.drain().map(|(_, n)| n));
        if let Some(p) = self.plus.take() {
            into.push(*p);
        }
    }

    fn child(&self, level: &str) -> Option<&Node<T>> {
        if level == "+" {
            self.plus.as_deref()
        } else {
            self.children.get(level)
        }
    }

    fn child_mut(&mut self, level: &str) -> Option<&mut Node<T>> {
        if level == "+" {
            self.plus.as_deref_mut()
        } else {
            self.children.get_mut(level)
        }
    }

    fn child_or_insert(&mut self, level: &str) -> &mut Node<T> {
        if level == "+" {
            self.plus.get_or_insert_with(Box::default)
        } else {
            // Subscribing may allocate; the key is a few bytes.
            self.children.entry(Box::from(level)).or_default()
        }
    }

    fn slot_mut(&mut self, slot: Slot) -> &mut Option<Box<Entry<T>>> {
        match slot {
            Slot::Exact => &mut self.exact,
            Slot::Multi => &mut self.multi,
        }
    }

    /// Number of nodes below this one.
    #[cfg(test)]
    pub(super) fn descendants(&self) -> usize {
        let mut count = 0;
        let mut pending: Vec<&Node<T>> = vec![self];
        while let Some(node) = pending.pop() {
            let before = pending.len();
            pending.extend(node.children.values());
            pending.extend(node.plus.as_deref());
            count += pending.len() - before;
        }
        count
    }

    /// Holds nothing: no subscriptions, no children.
    pub(super) fn is_empty(&self) -> bool {
        self.exact.is_none() && self.multi.is_none() && self.plus.is_none() && self.children.is_empty()
    }

    /// Holds nothing but one child.
    fn is_passthrough(&self) -> bool {
        self.exact.is_none() && self.multi.is_none() && self.children.len() + usize::from(self.plus.is_some()) == 1
    }
}

impl<T: Clone> Node<T> {
    /// Inserts or replaces a subscription below this (root) node. Returns
    /// (the subscription is new, the filter had no subscriber before, the
    /// filter's plain list — or the named group — had no member before).
    pub(super) fn insert(
        &mut self,
        path: Option<&str>,
        slot: Slot,
        group: Option<&Arc<str>>,
        sub: Subscriber<T>,
    ) -> (bool, bool, bool) {
        let mut node = self;
        for level in levels(path) {
            node = node.child_or_insert(level);
        }
        let entry = node.slot_mut(slot);
        let new_topic = entry.is_none();
        let (new_sub, first) = entry.get_or_insert_with(Box::default).insert(group, sub);
        (new_sub, new_topic, first)
    }

    /// The member of shared group `group` on the filter at `path`/`slot`
    /// that receives the next message (the strategy picks it), if the
    /// group has one.
    pub(super) fn pick_in_group(
        &self,
        path: Option<&str>,
        slot: Slot,
        group: &str,
        strategy: SharedStrategy,
    ) -> Option<Subscriber<T>> {
        let mut node = self;
        for level in levels(path) {
            node = node.child(level)?;
        }
        let entry = match slot {
            Slot::Exact => node.exact.as_deref()?,
            Slot::Multi => node.multi.as_deref()?,
        };
        entry.groups.iter().find(|g| g.name() == group)?.pick(strategy).cloned()
    }

    /// Removes a client's subscription below this (root) node and frees the
    /// nodes it leaves empty. `None` if there was no such subscription,
    /// otherwise (whether the filter lost its last subscriber, whether its
    /// plain list — or the named group — lost its last member).
    pub(super) fn remove(
        &mut self,
        path: Option<&str>,
        slot: Slot,
        group: Option<&str>,
        client_id: &str,
        strategy: SharedStrategy,
    ) -> Option<(bool, bool)> {
        let mut node = &mut *self;
        for level in levels(path) {
            node = node.child_mut(level)?;
        }
        let entry = node.slot_mut(slot);
        let e = entry.as_mut()?;
        let last = e.remove(group, client_id, strategy)?;
        if !e.is_empty() {
            return Some((false, last));
        }
        *entry = None;
        if let Some(path) = path {
            self.prune(path);
        }
        Some((true, last))
    }

    /// Cuts off the longest chain of nodes at the end of `path` that holds
    /// nothing but the path itself.
    fn prune(&mut self, path: &str) {
        // Depth (in levels) of the deepest node on the path that must stay;
        // the root always stays.
        let mut keep = 0;
        let mut depth = 0;
        let mut node: &Node<T> = self;
        let mut rest = path.split('/').peekable();
        while let Some(level) = rest.next() {
            let Some(next) = node.child(level) else {
                return;
            };
            node = next;
            depth += 1;
            let removable = if rest.peek().is_some() { node.is_passthrough() } else { node.is_empty() };
            if !removable {
                keep = depth;
            }
        }
        if keep == depth {
            return;
        }
        let mut levels = path.split('/');
        let mut parent = self;
        for level in levels.by_ref().take(keep) {
            match parent.child_mut(level) {
                Some(next) => parent = next,
                None => return,
            }
        }
        if let Some(cut) = levels.next() {
            // The detached chain is freed by `Node::drop`, iteratively.
            if cut == "+" {
                parent.plus = None;
            } else {
                parent.children.remove(cut);
            }
        }
    }

    /// Appends the routes of every subscription below this (root) node that
    /// matches `topic`. Returns how many filters contributed non-shared
    /// routes (a client appears at most once per filter).
    ///
    /// With `groups` false, shared groups are left out (and pick no one).
    pub(super) fn collect(
        &self,
        topic: &str,
        strategy: SharedStrategy,
        groups: bool,
        out: &mut Vec<Route<T>>,
    ) -> usize {
        // Filters that contributed non-shared routes.
        let mut plain = 0;
        // A leading wildcard never matches a `$` topic: skip the root's `#`
        // and `+` for those.
        let wild_root = !topic.starts_with('$');
        if wild_root {
            if let Some(e) = &self.multi {
                plain += usize::from(e.emit(strategy, groups, out));
            }
        }
        let mut rest = topic.split('/');
        let Some(first) = rest.next() else { return plain };
        let plus = if wild_root { self.plus.as_deref() } else { None };
        // Branches not yet walked. Stays unallocated unless a level matches
        // both a literal child and `+`.
        let mut pending: Vec<(&Node<T>, Split<'_, char>)> = Vec::new();
        let mut current = match (self.children.get(first), plus) {
            (Some(lit), Some(plus)) => {
                pending.push((plus, rest.clone()));
                Some((lit, rest))
            }
            (Some(only), None) | (None, Some(only)) => Some((only, rest)),
            (None, None) => None,
        };
        while let Some((mut node, mut rest)) = current.take().or_else(|| pending.pop()) {
            loop {
                if let Some(e) = &node.multi {
                    plain += usize::from(e.emit(strategy, groups, out));
                }
                let Some(level) = rest.next() else {
                    if let Some(e) = &node.exact {
                        plain += usize::from(e.emit(strategy, groups, out));
                    }
                    break;
                };
                match (node.children.get(level), node.plus.as_deref()) {
                    (Some(lit), Some(plus)) => {
                        pending.push((plus, rest.clone()));
                        node = lit;
                    }
                    (Some(only), None) | (None, Some(only)) => node = only,
                    (None, None) => break,
                }
            }
        }
        plain
    }
}

/// The subscriptions to one filter.
pub(super) struct Entry<T> {
    plain: SubList<T>,
    /// Shared groups on this filter, by name. Usually zero or a few.
    groups: Vec<SharedGroup<T>>,
}

impl<T> Default for Entry<T> {
    fn default() -> Self {
        Entry { plain: SubList::default(), groups: Vec::new() }
    }
}

impl<T: Clone> Entry<T> {
    /// Returns (the subscription is new, it is the first of the plain list
    /// or of its group).
    fn insert(&mut self, group: Option<&Arc<str>>, sub: Subscriber<T>) -> (bool, bool) {
        let Some(name) = group else {
            let first = self.plain.subs.is_empty();
            return (self.plain.insert(sub), first);
        };
        if let Some(g) = self.groups.iter_mut().find(|g| g.name() == &**name) {
            return (g.insert(sub), false);
        }
        let mut g = SharedGroup::new(Arc::clone(name));
        g.insert(sub);
        self.groups.push(g);
        (true, true)
    }

    /// `None` if there was no such subscription, otherwise whether it was
    /// the last of the plain list or of its group.
    fn remove(&mut self, group: Option<&str>, client_id: &str, strategy: SharedStrategy) -> Option<bool> {
        let Some(name) = group else {
            if !self.plain.remove(client_id) {
                return None;
            }
            return Some(self.plain.subs.is_empty());
        };
        let i = self.groups.iter().position(|g| g.name() == name)?;
        if !self.groups[i].remove(client_id, strategy) {
            return None;
        }
        let last = self.groups[i].is_empty();
        if last {
            self.groups.swap_remove(i);
        }
        Some(last)
    }

    fn is_empty(&self) -> bool {
        self.plain.subs.is_empty() && self.groups.is_empty()
    }

    /// Appends this filter's routes; returns whether any were non-shared.
    fn emit(&self, strategy: SharedStrategy, groups: bool, out: &mut Vec<Route<T>>) -> bool {
        out.extend(self.plain.subs.iter().map(|s| Route { subscriber: s.clone(), shared: false }));
        if !groups {
            return !self.plain.subs.is_empty();
        }
        for g in &self.groups {
            if let Some(s) = g.pick(strategy) {
                out.push(Route { subscriber: s.clone(), shared: true });
            }
        }
        !self.plain.subs.is_empty()
    }
}

/// Above this many subscribers a filter keeps a client → position index;
/// below, a scan of the list is faster than hashing.
const INDEX_FROM: usize = 16;

/// The non-shared subscribers of one filter: a list to iterate on publish,
/// with an index once it is long enough that (un)subscribing by scanning
/// would turn quadratic.
struct SubList<T> {
    subs: Vec<Subscriber<T>>,
    index: Option<HashMap<ClientId, usize>>,
}

impl<T> Default for SubList<T> {
    fn default() -> Self {
        SubList { subs: Vec::new(), index: None }
    }
}

impl<T> SubList<T> {
    fn position(&self, client_id: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(client_id).copied(),
            None => self.subs.iter().position(|s| &*s.client_id == client_id),
        }
    }

    fn insert(&mut self, sub: Subscriber<T>) -> bool {
        if let Some(i) = self.position(&sub.client_id) {
            self.subs[i] = sub;
            return false;
        }
        if let Some(index) = &mut self.index {
            index.insert(Arc::clone(&sub.client_id), self.subs.len());
        }
        self.subs.push(sub);
        if self.index.is_none() && self.subs.len() > INDEX_FROM {
            let index = self.subs.iter().enumerate().map(|(i, s)| (Arc::clone(&s.client_id), i)).collect();
            self.index = Some(index);
        }
        true
    }

    fn remove(&mut self, client_id: &str) -> bool {
        let Some(i) = self.position(client_id) else {
            return false;
        };
        self.subs.swap_remove(i);
        if let Some(index) = &mut self.index {
            index.remove(client_id);
            if let Some(moved) = self.subs.get(i) {
                index.insert(Arc::clone(&moved.client_id), i);
            }
        }
        true
    }
}
