//! One timer for every session expiry and every delayed will: a
//! deadline-ordered map that one task drives, instead of one sleeping task
//! each (a million offline sessions would otherwise be a million tasks and
//! timers). An entry is not removed when its session is resumed: it fires
//! and finds the session's generation moved on, as a task would have.
//!
//! Deadlines are tokio instants (paused-clock tests drive them). Across a
//! restart they are wall clock: the store keeps when a client left, and
//! the broker schedules what is left of its expiry
//! ([`crate::broker::Broker::restore_from_store`]), downtime included.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::broker::Broker;
use crate::message::Message;
use crate::session::Session;

/// Most entries fired per turn before the task yields.
const BATCH: usize = 256;

/// What falls due.
#[derive(Debug)]
pub(crate) enum Due {
    /// The session ends unless a connection took it (its generation moved
    /// past `generation`) or one is attached.
    Expire { session: Arc<Session>, generation: u64 },
    /// The will is published unless the session was resumed.
    Will { session: Arc<Session>, will: Arc<Message>, generation: u64 },
}

#[derive(Debug, Default)]
struct State {
    /// Deadline, then arrival order.
    timers: BTreeMap<(Instant, u64), Due>,
    seq: u64,
    /// The driving task was spawned.
    running: bool,
}

/// The queue (shared by the broker and the one task).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    state: Mutex<State>,
    wake: Notify,
}

impl Deadlines {
    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.state.lock().timers.len()
    }

    /// Schedules `due` at `at`; spawns the task on first use (on the
    /// current tokio runtime).
    pub(crate) fn add(self: &Arc<Self>, broker: &Arc<Broker>, at: Instant, due: Due) {
        let (first, spawn) = {
            let mut st = self.state.lock();
            st.seq += 1;
            let key = (at, st.seq);
            let first = st.timers.first_key_value().is_none_or(|(k, _)| key < *k);
            st.timers.insert(key, due);
            let spawn = !st.running;
            st.running = true;
            (first, spawn)
        };
        if spawn {
            tokio::spawn(run(Arc::clone(self), Arc::downgrade(broker)));
        }
        if first {
            self.wake.notify_one();
        }
    }

    /// Moves at most `max` entries due at `now` into `out`; whether more
    /// are due.
    fn pop_due(&self, now: Instant, max: usize, out: &mut Vec<Due>) -> bool {
        let mut st = self.state.lock();
        while let Some(e) = st.timers.first_entry() {
            if e.key().0 > now {
                return false;
            }
            if out.len() == max {
                return true;
            }
            out.push(e.remove());
        }
        false
    }

    fn next(&self) -> Option<Instant> {
        self.state.lock().timers.first_key_value().map(|(k, _)| k.0)
    }
}

/// The task: fires what is due, then sleeps until the first deadline or
/// until an earlier one is added. Holds the broker only while firing, and
/// ends when the broker is gone.
async fn run(q: Arc<Deadlines>, broker: Weak<Broker>) {
    let mut due = Vec::with_capacity(BATCH);
    loop {
        loop {
            let more = q.pop_due(Instant::now(), BATCH, &mut due);
            if !due.is_empty() {
                let Some(b) = broker.upgrade() else { return };
                for d in due.drain(..) {
                    b.fire(d);
                }
            }
            if !more {
                break;
            }
            tokio::task::yield_now().await;
        }
        if broker.strong_count() == 0 {
            return;
        }
        // Created before reading the first deadline: an `add` in between
        // leaves a permit, so an earlier deadline is never slept through.
        let woken = q.wake.notified();
        match q.next() {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = woken => {}
                }
            }
            None => woken.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::broker::Broker;
    use crate::owner::SessionOwner;
    use crate::session::Session;

    use super::*;

    fn detached(b: &Arc<Broker>, id: &str, secs: u64) {
        let owner = SessionOwner::User(Arc::from("u"));
        b.adopt_session(Arc::new(Session::new(Arc::from(id), owner, Some(Duration::from_secs(secs)))));
    }

    /// Expiries added out of order end their sessions in deadline order,
    /// an earlier one added while the task sleeps included.
    #[tokio::test(start_paused = true)]
    async fn expiries_fire_at_their_deadlines_in_order() {
        let b = Broker::new(Default::default());
        detached(&b, "s30", 30);
        tokio::task::yield_now().await; // the task now sleeps until 30 s
        detached(&b, "s10", 10);
        detached(&b, "s20", 20);
        assert_eq!(b.deadlines_waiting(), 3);
        let alive = |b: &Broker| ["s10", "s20", "s30"].map(|id| b.find_session(id).is_some());
        tokio::time::sleep(Duration::from_millis(9_900)).await;
        assert_eq!(alive(&b), [true, true, true]);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(alive(&b), [false, true, true], "the earlier deadline woke the task");
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(alive(&b), [false, false, true]);
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(alive(&b), [false, false, false]);
        assert_eq!(b.deadlines_waiting(), 0);
    }

    /// Many deadlines at once are one map's entries, fired in batches.
    #[tokio::test(start_paused = true)]
    async fn a_thousand_expiries_at_the_same_second() {
        let b = Broker::new(Default::default());
        for i in 0..1000 {
            detached(&b, &format!("c{i}"), 5);
        }
        assert_eq!(b.deadlines_waiting(), 1000);
        tokio::time::sleep(Duration::from_millis(5_100)).await;
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(b.deadlines_waiting(), 0);
        assert!((0..1000).all(|i| b.find_session(&format!("c{i}")).is_none()));
    }
}
