//! The installed hooks and their runners.
//!
//! [`Hooks`] is what the broker holds: the current [`HookSet`] (swapped
//! whole by [`Hooks::install`], so a reload never leaves half a set) and a
//! bit per hook point that says whether anything is registered there. Each
//! runner tests its bit first: a point with no hook costs one relaxed
//! atomic load.
//!
//! The runners own the semantics, once:
//!
//! * notifications (connected, disconnected, session events, delivered,
//!   acknowledged, dropped) call every hook in order;
//! * subscribe / unsubscribe call hooks in order until one answers
//!   [`Flow::Stop`] (accept as it stands) or [`Flow::Refuse`];
//! * publish calls hooks in order until one answers
//!   [`PublishFlow::Stop`], [`PublishFlow::Drop`] or [`PublishFlow::Take`].
//!
//! A hook that panics is a bug in that module: the runner does not catch
//! it (the connection's task ends, as for any panic in the broker).

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::client::{ClientConnected, ClientDisconnected, OnClientConnected, OnClientDisconnected};
use super::delivery::{OnMessageAcked, OnMessageDelivered, OnMessageDropped};
use super::publish::{OnMessagePublish, PublishFlow, PublishOutcome, PublishedMessage, Publisher};
use super::session::{OnSessionCreated, OnSessionEnded, OnSessionResumed, SessionEndReason, SessionEvent};
use super::subscribe::{Flow, OnSubscribe, OnUnsubscribe, SubscribeOutcome, Subscription};
use crate::codec::QoS;
use crate::gate::ClientInfo;
use crate::message::Message;
use crate::metrics::{DropReason, MetricSource, Scrape};

/// The hook points, one bit each in [`Hooks`]' mask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookPoint {
    ClientConnected,
    ClientDisconnected,
    SessionCreated,
    SessionResumed,
    SessionEnded,
    Subscribe,
    Unsubscribe,
    MessagePublish,
    MessageDelivered,
    MessageAcked,
    MessageDropped,
}

impl HookPoint {
    fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

/// A unit of broker behaviour built on hooks (presence, auto-subscribe,
/// topic rewrite, …): it registers the hooks it needs, in order.
///
/// A third-party module is a crate with a type implementing this; the
/// server adds it to the list it builds its hook set from.
///
/// A module with counters of its own implements
/// [`MetricSource`](crate::metrics::MetricSource) and registers it in
/// [`Module::register`] with [`HookSetBuilder::metrics`]: its families then
/// appear in Prometheus and (where they name a topic) in `$SYS`.
pub trait Module: Send + Sync + 'static {
    /// A short name for logs and the management plane (`"presence"`).
    fn name(&self) -> &str;
    /// Registers this module's hooks.
    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder);
}

/// Every registered hook, per point, in registration order.
#[derive(Default)]
pub struct HookSet {
    connected: Vec<Arc<dyn OnClientConnected>>,
    disconnected: Vec<Arc<dyn OnClientDisconnected>>,
    session_created: Vec<Arc<dyn OnSessionCreated>>,
    session_resumed: Vec<Arc<dyn OnSessionResumed>>,
    session_ended: Vec<Arc<dyn OnSessionEnded>>,
    subscribe: Vec<Arc<dyn OnSubscribe>>,
    unsubscribe: Vec<Arc<dyn OnUnsubscribe>>,
    publish: Vec<Arc<dyn OnMessagePublish>>,
    delivered: Vec<Arc<dyn OnMessageDelivered>>,
    acked: Vec<Arc<dyn OnMessageAcked>>,
    dropped: Vec<Arc<dyn OnMessageDropped>>,
    /// The modules' own metrics, read at each scrape (not a hook point:
    /// no event runs them).
    metrics: Vec<Arc<dyn MetricSource>>,
    /// The modules that registered them, in order.
    modules: Vec<String>,
}

impl fmt::Debug for HookSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HookSet").field("modules", &self.modules).field("mask", &self.mask()).finish()
    }
}

impl HookSet {
    /// The points that have at least one hook.
    fn mask(&self) -> u32 {
        let mut m = 0;
        let mut set = |p: HookPoint, any: bool| {
            if any {
                m |= p.bit();
            }
        };
        set(HookPoint::ClientConnected, !self.connected.is_empty());
        set(HookPoint::ClientDisconnected, !self.disconnected.is_empty());
        set(HookPoint::SessionCreated, !self.session_created.is_empty());
        set(HookPoint::SessionResumed, !self.session_resumed.is_empty());
        set(HookPoint::SessionEnded, !self.session_ended.is_empty());
        set(HookPoint::Subscribe, !self.subscribe.is_empty());
        set(HookPoint::Unsubscribe, !self.unsubscribe.is_empty());
        set(HookPoint::MessagePublish, !self.publish.is_empty());
        set(HookPoint::MessageDelivered, !self.delivered.is_empty());
        set(HookPoint::MessageAcked, !self.acked.is_empty());
        set(HookPoint::MessageDropped, !self.dropped.is_empty());
        m
    }

    /// The modules in this set, in registration order.
    pub fn modules(&self) -> &[String] {
        &self.modules
    }
}

/// Collects hooks into a [`HookSet`].
#[derive(Default)]
pub struct HookSetBuilder {
    set: HookSet,
}

impl fmt::Debug for HookSetBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.set.fmt(f)
    }
}

impl HookSetBuilder {
    pub fn new() -> HookSetBuilder {
        HookSetBuilder::default()
    }

    /// Lets `module` register its hooks (after those registered so far).
    pub fn module(&mut self, module: Arc<dyn Module>) -> &mut Self {
        self.set.modules.push(module.name().to_string());
        module.register(self);
        self
    }

    pub fn on_client_connected(&mut self, h: Arc<dyn OnClientConnected>) -> &mut Self {
        self.set.connected.push(h);
        self
    }
    pub fn on_client_disconnected(&mut self, h: Arc<dyn OnClientDisconnected>) -> &mut Self {
        self.set.disconnected.push(h);
        self
    }
    pub fn on_session_created(&mut self, h: Arc<dyn OnSessionCreated>) -> &mut Self {
        self.set.session_created.push(h);
        self
    }
    pub fn on_session_resumed(&mut self, h: Arc<dyn OnSessionResumed>) -> &mut Self {
        self.set.session_resumed.push(h);
        self
    }
    pub fn on_session_ended(&mut self, h: Arc<dyn OnSessionEnded>) -> &mut Self {
        self.set.session_ended.push(h);
        self
    }
    pub fn on_subscribe(&mut self, h: Arc<dyn OnSubscribe>) -> &mut Self {
        self.set.subscribe.push(h);
        self
    }
    pub fn on_unsubscribe(&mut self, h: Arc<dyn OnUnsubscribe>) -> &mut Self {
        self.set.unsubscribe.push(h);
        self
    }
    pub fn on_message_publish(&mut self, h: Arc<dyn OnMessagePublish>) -> &mut Self {
        self.set.publish.push(h);
        self
    }
    pub fn on_message_delivered(&mut self, h: Arc<dyn OnMessageDelivered>) -> &mut Self {
        self.set.delivered.push(h);
        self
    }
    pub fn on_message_acked(&mut self, h: Arc<dyn OnMessageAcked>) -> &mut Self {
        self.set.acked.push(h);
        self
    }
    pub fn on_message_dropped(&mut self, h: Arc<dyn OnMessageDropped>) -> &mut Self {
        self.set.dropped.push(h);
        self
    }

    /// Registers the module's own metrics ([`MetricSource`]): they are
    /// read into every scrape (`$SYS` and Prometheus) while this set is
    /// installed, so they go when the module is disabled, and a module
    /// rebuilt on reload reports from its new instance.
    pub fn metrics(&mut self, source: Arc<dyn MetricSource>) -> &mut Self {
        self.set.metrics.push(source);
        self
    }

    pub fn build(self) -> HookSet {
        self.set
    }
}

/// The broker's installed hooks (see the module docs).
pub struct Hooks {
    set: ArcSwap<HookSet>,
    mask: AtomicU32,
}

impl fmt::Debug for Hooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.set.load().fmt(f)
    }
}

impl Default for Hooks {
    fn default() -> Self {
        Hooks { set: ArcSwap::from_pointee(HookSet::default()), mask: AtomicU32::new(0) }
    }
}

impl Hooks {
    /// Replaces the whole set at once. A runner that already loaded the
    /// old set finishes with it.
    pub fn install(&self, set: HookSet) {
        let mask = set.mask();
        self.set.store(Arc::new(set));
        self.mask.store(mask, Relaxed);
    }

    /// The modules installed now, in order.
    pub fn modules(&self) -> Vec<String> {
        self.set.load().modules.clone()
    }

    /// Adds the installed modules' metrics to `out`.
    pub fn collect_metrics(&self, out: &mut Scrape) {
        for m in &self.set.load().metrics {
            m.collect(out);
        }
    }

    /// Whether anything is registered at `point` (one relaxed load).
    #[inline]
    pub fn wants(&self, point: HookPoint) -> bool {
        self.mask.load(Relaxed) & point.bit() != 0
    }

    // Each runner is an inlined bit test; the walk itself is out of line,
    // so a point with nothing registered costs its caller a load and a
    // branch, not a call.

    #[inline]
    pub fn client_connected(&self, ev: &ClientConnected<'_>) {
        if self.wants(HookPoint::ClientConnected) {
            self.run_connected(ev);
        }
    }

    #[inline(never)]
    fn run_connected(&self, ev: &ClientConnected<'_>) {
        for h in &self.set.load().connected {
            h.client_connected(ev);
        }
    }

    #[inline]
    pub fn client_disconnected(&self, ev: &ClientDisconnected<'_>) {
        if self.wants(HookPoint::ClientDisconnected) {
            self.run_disconnected(ev);
        }
    }

    #[inline(never)]
    fn run_disconnected(&self, ev: &ClientDisconnected<'_>) {
        for h in &self.set.load().disconnected {
            h.client_disconnected(ev);
        }
    }

    #[inline]
    pub fn session_created(&self, ev: &SessionEvent<'_>) {
        if self.wants(HookPoint::SessionCreated) {
            self.run_session_created(ev);
        }
    }

    #[inline(never)]
    fn run_session_created(&self, ev: &SessionEvent<'_>) {
        for h in &self.set.load().session_created {
            h.session_created(ev);
        }
    }

    #[inline]
    pub fn session_resumed(&self, ev: &SessionEvent<'_>) {
        if self.wants(HookPoint::SessionResumed) {
            self.run_session_resumed(ev);
        }
    }

    #[inline(never)]
    fn run_session_resumed(&self, ev: &SessionEvent<'_>) {
        for h in &self.set.load().session_resumed {
            h.session_resumed(ev);
        }
    }

    #[inline]
    pub fn session_ended(&self, ev: &SessionEvent<'_>, reason: SessionEndReason) {
        if self.wants(HookPoint::SessionEnded) {
            self.run_session_ended(ev, reason);
        }
    }

    #[inline(never)]
    fn run_session_ended(&self, ev: &SessionEvent<'_>, reason: SessionEndReason) {
        for h in &self.set.load().session_ended {
            h.session_ended(ev, reason);
        }
    }

    /// Runs the subscribe hooks on one filter.
    pub fn subscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> SubscribeOutcome {
        if !self.wants(HookPoint::Subscribe) {
            return SubscribeOutcome::Go;
        }
        run_flow(self.set.load().subscribe.iter().map(|h| h.subscribe(client, sub)))
    }

    /// Runs the unsubscribe hooks on one filter.
    pub fn unsubscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> SubscribeOutcome {
        if !self.wants(HookPoint::Unsubscribe) {
            return SubscribeOutcome::Go;
        }
        run_flow(self.set.load().unsubscribe.iter().map(|h| h.unsubscribe(client, sub)))
    }

    /// Runs the publish hooks on a message.
    pub fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishOutcome {
        if !self.wants(HookPoint::MessagePublish) {
            return PublishOutcome::Route;
        }
        for h in &self.set.load().publish {
            match h.publish(from, msg) {
                PublishFlow::Continue => {}
                PublishFlow::Stop => break,
                PublishFlow::Drop(code) => return PublishOutcome::Dropped(code),
                PublishFlow::Take => return PublishOutcome::Taken(Arc::clone(h)),
            }
        }
        PublishOutcome::Route
    }

    #[inline]
    pub fn message_delivered(&self, client: &ClientInfo, msg: &Message, qos: QoS) {
        if self.wants(HookPoint::MessageDelivered) {
            self.run_delivered(client, msg, qos);
        }
    }

    #[inline(never)]
    fn run_delivered(&self, client: &ClientInfo, msg: &Message, qos: QoS) {
        for h in &self.set.load().delivered {
            h.delivered(client, msg, qos);
        }
    }

    #[inline]
    pub fn message_acked(&self, client: &ClientInfo, msg: &Message) {
        if self.wants(HookPoint::MessageAcked) {
            self.run_acked(client, msg);
        }
    }

    #[inline(never)]
    fn run_acked(&self, client: &ClientInfo, msg: &Message) {
        for h in &self.set.load().acked {
            h.acked(client, msg);
        }
    }

    #[inline]
    pub fn message_dropped(&self, msg: &Message, reason: DropReason, client_id: Option<&str>) {
        if self.wants(HookPoint::MessageDropped) {
            self.run_dropped(msg, reason, client_id);
        }
    }

    #[inline(never)]
    fn run_dropped(&self, msg: &Message, reason: DropReason, client_id: Option<&str>) {
        for h in &self.set.load().dropped {
            h.dropped(msg, reason, client_id);
        }
    }
}

/// Subscribe and unsubscribe: the first `Stop` or `Refuse` ends the walk.
fn run_flow(flows: impl Iterator<Item = Flow>) -> SubscribeOutcome {
    for f in flows {
        match f {
            Flow::Continue => {}
            Flow::Stop => break,
            Flow::Refuse(code) => return SubscribeOutcome::Refused(code),
        }
    }
    SubscribeOutcome::Go
}
