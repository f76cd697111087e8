//! Acknowledgements that wait for the durable store (strict mode).
//!
//! A QoS 1/2 PUBLISH that reached a persistent session is acknowledged
//! (PUBACK / PUBREC) only once the store's commit holding it is durable.
//! The connection does not wait for it: it keeps reading, and sends the
//! acknowledgements in the order the PUBLISHes came (MQTT requires it)
//! as their commits complete. Every acknowledgement queued behind one
//! that waits waits too, for the order. The queue is bounded: past
//! [`MAX_PENDING_ACKS`] the connection stops reading until it shrinks.

use std::collections::VecDeque;
use std::task::{Context, Poll};

use crate::codec::QoS;
use crate::durable::{Commit, StoreError};

/// Acknowledgements waiting at most, per connection.
pub(crate) const MAX_PENDING_ACKS: usize = 4096;

pub(crate) struct PendingAck {
    /// The commit to wait for; `None` once it completed (or for an
    /// acknowledgement that only waits for its turn). In a mutex only so
    /// that the connection stays `Sync` (always reached through
    /// `get_mut`, never locked).
    wait: Option<std::sync::Mutex<Commit>>,
    result: Result<(), StoreError>,
    pub qos: QoS,
    pub packet_id: u16,
    pub reason: u8,
}

/// The acknowledgements a connection owes, oldest first.
#[derive(Default)]
pub(crate) struct PendingAcks {
    queue: VecDeque<PendingAck>,
}

impl std::fmt::Debug for PendingAcks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAcks").field("len", &self.queue.len()).finish()
    }
}

/// Polls `c` once without a task: a relaxed-mode commit is complete at
/// once and needs no queueing.
pub(crate) fn ready_now(c: &mut Commit) -> Option<Result<(), StoreError>> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match c.as_mut().poll(&mut cx) {
        Poll::Ready(r) => Some(r),
        Poll::Pending => None,
    }
}

impl PendingAcks {
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn push(&mut self, wait: Option<Commit>, qos: QoS, packet_id: u16, reason: u8) {
        self.queue.push_back(PendingAck {
            wait: wait.map(std::sync::Mutex::new),
            result: Ok(()),
            qos,
            packet_id,
            reason,
        });
    }

    /// Ready once the oldest acknowledgement can go (its commit
    /// completed); polls on past it as far as commits are complete.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let mut any = false;
        for a in self.queue.iter_mut() {
            if let Some(w) = a.wait.as_mut() {
                let Ok(w) = w.get_mut() else {
                    a.result = Err(StoreError::Failed("poisoned".into()));
                    a.wait = None;
                    any = true;
                    continue;
                };
                match w.as_mut().poll(cx) {
                    Poll::Ready(r) => {
                        a.result = r;
                        a.wait = None;
                    }
                    Poll::Pending => break,
                }
            }
            any = true;
        }
        if any {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }

    /// The oldest acknowledgement, if its commit completed.
    pub fn pop_ready(&mut self) -> Option<(PendingAck, Result<(), StoreError>)> {
        if self.queue.front()?.wait.is_some() {
            return None;
        }
        let mut a = self.queue.pop_front()?;
        let r = std::mem::replace(&mut a.result, Ok(()));
        Some((a, r))
    }
}
