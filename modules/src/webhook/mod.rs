//! Event webhooks: chosen broker events POSTed as JSON to one URL, in the
//! shapes of EMQX 4.3's `emqx_web_hook` (an `action` field; see
//! [`event`]).
//!
//! * [`config`] — `[modules.webhook]`;
//! * [`event`] — the events, their names and their JSON;
//! * [`queue`] — the bounded queue between the hooks and the sender, the
//!   counters and their `$SYS` values
//!   (`$SYS/brokers/<node>/modules/webhook/{queued,sent,failed,dropped}`);
//! * [`sender`] — the task that batches, POSTs and retries.
//!
//! A hook never waits: it builds the event's JSON and offers it to the
//! queue, which takes it or drops it (counted) when full. Only the hooks
//! of the configured events are registered, so the others keep their
//! no-hook cost. Messages on `$SYS/…` topics are never sent (as EMQX).
//!
//! **Lifecycle.** Built at start and by SIGHUP; the sender task ends when
//! the module is dropped. A rebuild (new settings) hands the queue and
//! its counters to the new module, so nothing queued is lost; disabling
//! discards what is queued (logged with the count) and abandons requests
//! in flight.

pub mod config;
pub mod event;
pub mod queue;
pub mod sender;
#[cfg(test)]
mod tests;

pub use config::{PayloadEncoding, WebhookConfig};

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use portcullis_backends::common::transport::is_local;
use portcullis_core::broker::Broker;
use portcullis_core::codec::QoS;
use portcullis_core::gate::ClientInfo;
use portcullis_core::hooks::{
    ClientConnected, ClientDisconnected, Flow, HookSetBuilder, Module, OnClientConnected, OnClientDisconnected,
    OnMessageAcked, OnMessageDelivered, OnMessageDropped, OnMessagePublish, OnSessionCreated, OnSessionEnded,
    OnSessionResumed, OnSubscribe, OnUnsubscribe, PublishFlow, PublishedMessage, Publisher, SessionEndReason,
    SessionEvent, Subscription,
};
use portcullis_core::message::Message;
use portcullis_core::metrics::DropReason;
use portcullis_core::topic::{TopicFilter, TopicName};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::set::ModuleError;
use event::{EventKind, EventSet, MessageFields, PayloadFormat, Who};
use queue::{Queue, SysLink};
use sender::Sender;

/// The webhook module.
#[derive(Debug)]
pub struct Webhook {
    queue: Arc<Queue>,
    node: Arc<str>,
    events: EventSet,
    topics: Vec<TopicFilter>,
    payload: PayloadFormat,
    /// Dropping it ends the sender task.
    _stop: oneshot::Sender<()>,
}

fn config_error(key: impl Into<String>, message: impl Into<String>) -> ModuleError {
    ModuleError::Config { module: "webhook", key: key.into(), message: message.into() }
}

impl Webhook {
    /// Builds the module and starts its sender (on the current tokio
    /// runtime). `previous`, the instance this one replaces, hands over
    /// its queue and counters.
    pub fn new(broker: &Arc<Broker>, cfg: &WebhookConfig, previous: Option<&Webhook>) -> Result<Webhook, ModuleError> {
        if let Some((key, message)) = cfg.validate().into_iter().next() {
            return Err(config_error(key, message));
        }
        let sender = Sender::build(cfg).map_err(|(k, m)| config_error(k, m))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| config_error("enabled", "the module needs the broker's runtime"))?;
        let (host, https) = sender.endpoint();
        if !https && !is_local(&host) {
            tracing::warn!(
                host = %host,
                "webhook events (client ids, usernames, payloads) and headers go in clear: use https with tls.ca_file"
            );
        }
        let max_bytes = cfg.max_queue_bytes;
        let queue = match previous {
            Some(p) => {
                p.queue.set_limits(cfg.max_queue_len, max_bytes);
                Arc::clone(&p.queue)
            }
            None => {
                let q = Arc::new(Queue::new(cfg.max_queue_len, max_bytes));
                broker.add_metric_source(Arc::new(SysLink(Arc::downgrade(&q))));
                q
            }
        };
        let (stop, stopped) = oneshot::channel();
        runtime.spawn(sender::run(Arc::new(sender), Arc::clone(&queue), stopped));
        Ok(Webhook {
            queue,
            node: Arc::from(broker.settings.node_name.as_str()),
            events: EventSet::of(&cfg.event_kinds()),
            topics: cfg.topic_filters(),
            payload: PayloadFormat {
                encoding: cfg.payload_encoding,
                max: usize::try_from(cfg.max_payload).unwrap_or(usize::MAX),
            },
            _stop: stop,
        })
    }

    /// The queue (shared with the sender, and with a successor).
    pub fn queue(&self) -> &Arc<Queue> {
        &self.queue
    }

    /// Builds and queues one event, unless the queue is full (then it is
    /// counted as dropped without being built).
    fn emit<T: Serialize>(&self, build: impl FnOnce(u64) -> T) {
        if !self.queue.has_room() {
            return;
        }
        if let Some(json) = event::to_json(&build(now_ms())) {
            self.queue.offer(json);
        }
    }

    /// Whether a message on `topic` is sent: never `$SYS/…`; else when
    /// `topics` is empty or one of them matches.
    fn wants_topic(&self, topic: &TopicName) -> bool {
        !topic.as_str().starts_with("$SYS/") && (self.topics.is_empty() || self.topics.iter().any(|f| f.matches(topic)))
    }

    fn message<'a>(&self, topic: &'a TopicName, qos: QoS, retain: bool, payload: &[u8], ts: u64) -> MessageFields<'a> {
        MessageFields::new(topic.as_str(), qos, retain, payload, self.payload, ts)
    }
}

/// The client fields of an event about `c`.
fn who<'a>(kind: EventKind, node: &'a str, c: &'a ClientInfo) -> Who<'a> {
    Who { action: kind.action(), node, clientid: &c.client_id, username: c.username.as_deref() }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Module for Webhook {
    fn name(&self) -> &str {
        "webhook"
    }

    fn register(self: Arc<Self>, hooks: &mut HookSetBuilder) {
        for kind in EventKind::ALL {
            if !self.events.has(kind) {
                continue;
            }
            let me = Arc::clone(&self);
            match kind {
                EventKind::ClientConnected => hooks.on_client_connected(me),
                EventKind::ClientDisconnected => hooks.on_client_disconnected(me),
                EventKind::ClientSubscribe => hooks.on_subscribe(me),
                EventKind::ClientUnsubscribe => hooks.on_unsubscribe(me),
                EventKind::SessionCreated => hooks.on_session_created(me),
                EventKind::SessionResumed => hooks.on_session_resumed(me),
                EventKind::SessionTerminated => hooks.on_session_ended(me),
                EventKind::MessagePublish => hooks.on_message_publish(me),
                EventKind::MessageDelivered => hooks.on_message_delivered(me),
                EventKind::MessageAcked => hooks.on_message_acked(me),
                EventKind::MessageDropped => hooks.on_message_dropped(me),
            };
        }
    }
}

impl OnClientConnected for Webhook {
    fn client_connected(&self, ev: &ClientConnected<'_>) {
        let c = ev.client;
        self.emit(|ts| event::Connected {
            who: who(EventKind::ClientConnected, &self.node, c),
            ipaddress: event::ipaddress(c.peer.ip()),
            keepalive: ev.keep_alive,
            proto_ver: event::ProtoVer::of(c.protocol),
            connected_at: ts,
            clean_start: ev.clean_start,
        });
    }
}

impl OnClientDisconnected for Webhook {
    fn client_disconnected(&self, ev: &ClientDisconnected<'_>) {
        self.emit(|ts| event::Disconnected {
            who: who(EventKind::ClientDisconnected, &self.node, ev.client),
            reason: event::disconnect_reason(ev.reason),
            disconnected_at: ts,
        });
    }
}

impl OnSubscribe for Webhook {
    fn subscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow {
        self.emit(|_| event::Subscribed {
            who: who(EventKind::ClientSubscribe, &self.node, client),
            topic: sub.filter(),
            opts: Some((&sub.options).into()),
        });
        Flow::Continue
    }
}

impl OnUnsubscribe for Webhook {
    fn unsubscribe(&self, client: &ClientInfo, sub: &mut Subscription) -> Flow {
        self.emit(|_| event::Subscribed {
            who: who(EventKind::ClientUnsubscribe, &self.node, client),
            topic: sub.filter(),
            opts: None,
        });
        Flow::Continue
    }
}

impl Webhook {
    fn session(&self, kind: EventKind, ev: &SessionEvent<'_>, reason: Option<&'static str>) {
        self.emit(|_| event::Session {
            who: Who {
                action: kind.action(),
                node: &self.node,
                clientid: ev.client_id,
                username: event::owner_username(ev.owner),
            },
            reason,
        });
    }
}

impl OnSessionCreated for Webhook {
    fn session_created(&self, ev: &SessionEvent<'_>) {
        self.session(EventKind::SessionCreated, ev, None);
    }
}

impl OnSessionResumed for Webhook {
    fn session_resumed(&self, ev: &SessionEvent<'_>) {
        self.session(EventKind::SessionResumed, ev, None);
    }
}

impl OnSessionEnded for Webhook {
    fn session_ended(&self, ev: &SessionEvent<'_>, reason: SessionEndReason) {
        self.session(EventKind::SessionTerminated, ev, Some(event::session_end_reason(reason)));
    }
}

impl OnMessagePublish for Webhook {
    fn publish(&self, from: Publisher<'_>, msg: &mut PublishedMessage) -> PublishFlow {
        if self.wants_topic(msg.topic()) {
            let c = from.client();
            self.emit(|ts| event::Published {
                action: EventKind::MessagePublish.action(),
                node: &self.node,
                from_client_id: Some(&c.client_id),
                from_username: c.username.as_deref(),
                msg: self.message(msg.topic(), msg.qos, msg.retain, &msg.payload, ts),
            });
        }
        PublishFlow::Continue
    }
}

impl Webhook {
    fn delivery(&self, kind: EventKind, client: &ClientInfo, msg: &Message, qos: QoS) {
        if !self.wants_topic(&msg.topic) {
            return;
        }
        self.emit(|ts| event::Delivered {
            who: who(kind, &self.node, client),
            from_client_id: msg.publisher.as_deref(),
            from_username: None,
            msg: self.message(&msg.topic, qos, msg.retain, &msg.payload, ts),
        });
    }
}

impl OnMessageDelivered for Webhook {
    fn delivered(&self, client: &ClientInfo, msg: &Message, qos: QoS) {
        self.delivery(EventKind::MessageDelivered, client, msg, qos);
    }
}

impl OnMessageAcked for Webhook {
    fn acked(&self, client: &ClientInfo, msg: &Message) {
        self.delivery(EventKind::MessageAcked, client, msg, msg.qos);
    }
}

impl OnMessageDropped for Webhook {
    fn dropped(&self, msg: &Message, reason: DropReason, client_id: Option<&str>) {
        if !self.wants_topic(&msg.topic) {
            return;
        }
        self.emit(|ts| event::Dropped {
            action: EventKind::MessageDropped.action(),
            node: &self.node,
            clientid: client_id,
            from_client_id: msg.publisher.as_deref(),
            from_username: None,
            msg: self.message(&msg.topic, msg.qos, msg.retain, &msg.payload, ts),
            reason: event::drop_reason(reason),
        });
    }
}
