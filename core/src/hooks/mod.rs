//! Hooks: typed broker events, and the one place that runs them.
//!
//! A hook point is a trait with one method; a module implements the ones it
//! needs and registers them, in order, on a [`HookSetBuilder`]. The broker
//! holds the installed [`HookSet`] in [`Hooks`], swapped whole at run time
//! (a SIGHUP reload enables or disables modules without touching a
//! connection), and every hook point is run by a method of [`Hooks`]: the
//! rules for stopping, refusing, rewriting and taking a message live there
//! once, not in each hook.
//!
//! * [`client`] — client connected, client disconnected (with a typed
//!   [`DisconnectReason`](crate::connection::DisconnectReason));
//! * [`session`] — session created, resumed, ended;
//! * [`subscribe`] — subscribe (may refuse or rewrite the filter),
//!   unsubscribe (may rewrite);
//! * [`publish`] — message publish (may drop, rewrite topic, payload and
//!   properties, or take the message to publish it later);
//! * [`delivery`] — message delivered, acknowledged, dropped (with why);
//! * [`registry`] — [`Hooks`], [`HookSet`], [`HookSetBuilder`] and the
//!   [`Module`] trait.
//!
//! **Cost.** With nothing registered for a point, its runner is one relaxed
//! atomic load and a bit test: no allocation, no lock, no call. The events
//! borrow what the broker already holds; a publish hook's editable copy of
//! the message is made only when a publish hook is registered.

pub mod client;
pub mod delivery;
pub mod publish;
pub mod registry;
pub mod session;
pub mod subscribe;

pub use client::{ClientConnected, ClientDisconnected, OnClientConnected, OnClientDisconnected};
pub use delivery::{OnMessageAcked, OnMessageDelivered, OnMessageDropped};
pub use publish::{OnMessagePublish, PublishFlow, PublishOutcome, PublishedMessage, Publisher};
pub use registry::{HookPoint, HookSet, HookSetBuilder, Hooks, Module};
pub use session::{OnSessionCreated, OnSessionEnded, OnSessionResumed, SessionEndReason, SessionEvent};
pub use subscribe::{Flow, OnSubscribe, OnUnsubscribe, SubscribeOutcome, Subscription};

#[cfg(test)]
mod tests;
