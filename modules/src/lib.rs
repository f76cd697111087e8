//! Modules: broker features built only on the core's hooks
//! ([`portcullis_core::hooks`]), each enabled in `[modules.<name>]` and
//! switched on or off at run time (SIGHUP) without touching a connection.
//!
//! * [`presence`] — emqttd's `$SYS/brokers/<node>/clients/<id>/connected`
//!   and `…/disconnected` events.
//! * [`delayed`] — `$delayed/<seconds>/<topic>`: messages held by the
//!   broker and published at their deadline (EMQX, rmqtt).
//! * [`auto_subscribe`] — subscriptions added on connect from templates
//!   (`${clientid}`, `${username}`), ACL-checked like a client's SUBSCRIBE.
//! * [`rewrite`] — EMQX's topic rewrite rules on publish, subscribe and
//!   unsubscribe, before the ACL.
//! * [`template`] — the `${clientid}` / `${username}` / `$1` templates both
//!   use.
//! * [`webhook`] — chosen events POSTed as JSON (EMQX 4.3's webhook
//!   shapes) through a bounded queue, batched and retried.
//! * [`set`] — [`ModulesConfig`] (the `[modules]` table) and [`ModuleSet`],
//!   which builds the enabled modules, keeps those whose settings did not
//!   change across a reload, and installs their hooks in one swap.
//!
//! A module is a type implementing [`portcullis_core::hooks::Module`]; a
//! compiled-in plugin is one more entry in the list the server passes to
//! [`ModuleSet::apply`] (README, "Writing a module").

pub mod auto_subscribe;
pub mod delayed;
pub mod presence;
pub mod rewrite;
pub mod set;
pub mod template;
pub mod webhook;

pub use set::{ModuleSet, ModulesConfig};

/// The README's code blocks, compiled and run as doc tests ("Writing a
/// module").
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;

#[cfg(test)]
mod tests {
    /// Every module family has a Prometheus name, bounded labels and a
    /// `$SYS` topic made of its labels.
    #[test]
    fn module_metric_families_are_valid() {
        let families = [
            &crate::auto_subscribe::AUTO_SUBSCRIBE,
            &crate::rewrite::REWRITE,
            &crate::webhook::queue::WEBHOOK_QUEUED,
            &crate::webhook::queue::WEBHOOK_EVENTS,
        ];
        for f in families.into_iter().chain(crate::delayed::sys::FAMILIES.iter()) {
            assert_eq!(f.validate(), Ok(()), "{}", f.name);
        }
    }
}
