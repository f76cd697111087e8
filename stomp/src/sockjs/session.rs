//! Sessions of the xhr transports. A session is made by its first
//! receiving request (`xhr` or `xhr_streaming`), which takes a place in
//! the listener's connection limit and starts the STOMP connection; it
//! lives across requests:
//!
//! * the STOMP connection's output is cut into messages and queued
//!   (`pump`), at most `max_queued_bytes`; more closes the session;
//! * one receiving request at a time takes the queue (a second gets
//!   `c[2010,…]`); between requests the session waits at most
//!   `disconnect_delay` ([`reap`] closes it, and so its STOMP connection);
//! * `xhr_send` writes the client's messages to the STOMP connection;
//! * once closed (STOMP ended, queue overflow, delay), receiving requests
//!   get the close frame until the session is forgotten, `disconnect_delay`
//!   later.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, ReadHalf, WriteHalf};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::framing::{self, Cutter};
use super::SockJs;

/// `c[3000,"Go away!"]`: the session ended.
pub const GO_AWAY: (u16, &str) = (3000, "Go away!");
/// `c[2010,…]`: a second receiving request.
pub const ANOTHER: (u16, &str) = (2010, "Another connection still open");
/// The client did not take what was sent to it.
pub const OVERFLOW: (u16, &str) = (3001, "Too much unread");
/// Longest a client's message may wait for the STOMP connection to read it.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// One xhr session.
pub struct Session {
    state: Mutex<State>,
    /// Wakes the receiving request (something queued, or closed).
    wake: Notify,
    /// The STOMP connection's input; `None` once closed (its end of the
    /// pipe then reads EOF and the STOMP connection ends).
    to_stomp: tokio::sync::Mutex<Option<WriteHalf<DuplexStream>>>,
    max_queued: usize,
}

struct State {
    queue: VecDeque<String>,
    queued: usize,
    /// A receiving request holds the session.
    receiving: bool,
    /// The open frame was sent.
    opened: bool,
    /// When the last receiving request ended (or the session began).
    idle_since: Instant,
    closed: Option<(u16, &'static str)>,
}

/// What a receiving request sends next.
pub enum Next {
    /// `a[…]`.
    Messages(String),
    /// `c[…]`: then the response ends.
    Close(String),
    /// Nothing within the heartbeat: `h`.
    Heartbeat,
}

impl Session {
    /// A new session over the STOMP connection `pipe`; starts its pump.
    pub fn start(pipe: DuplexStream, max_queued: usize) -> Arc<Session> {
        let (rd, wr) = tokio::io::split(pipe);
        let s = Arc::new(Session {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                queued: 0,
                receiving: false,
                opened: false,
                idle_since: Instant::now(),
                closed: None,
            }),
            wake: Notify::new(),
            to_stomp: tokio::sync::Mutex::new(Some(wr)),
            max_queued,
        });
        tokio::spawn(pump(Arc::clone(&s), rd));
        s
    }

    /// Takes the session for a receiving request: `Ok(true)` if the open
    /// frame is still to be sent; `Err(frame)` if the request gets only
    /// that close frame (closed, or another request holds it).
    pub fn attach(self: &Arc<Self>) -> Result<(Receiver, bool), String> {
        let mut st = self.state.lock();
        if let Some((code, reason)) = st.closed {
            if st.queue.is_empty() || st.receiving {
                return Err(framing::close(code, reason));
            }
        }
        if st.receiving {
            return Err(framing::close(ANOTHER.0, ANOTHER.1));
        }
        st.receiving = true;
        let open = !std::mem::replace(&mut st.opened, true);
        Ok((Receiver(Arc::clone(self)), open))
    }

    /// The session is closed and forgotten once idle this long.
    fn expired(&self, delay: Duration, now: Instant) -> bool {
        let st = self.state.lock();
        !st.receiving && now.duration_since(st.idle_since) >= delay
    }

    /// Closes the session (the first reason stays); `drop_queue` throws
    /// away what was not sent.
    pub fn close(&self, why: (u16, &'static str), drop_queue: bool) {
        {
            let mut st = self.state.lock();
            st.closed.get_or_insert(why);
            if drop_queue {
                st.queue.clear();
                st.queued = 0;
            }
        }
        self.wake.notify_one();
        if let Ok(mut w) = self.to_stomp.try_lock() {
            end_input(w.take());
        } else {
            // A send is in progress; it ends the input when it sees the
            // session closed.
        }
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Writes the client's messages to the STOMP connection. `false`: the
    /// session is closed (or was closed for being stuck).
    pub async fn send(&self, msgs: &[String]) -> bool {
        let mut w = self.to_stomp.lock().await;
        if self.is_closed() {
            end_input(w.take());
            return false;
        }
        let Some(writer) = w.as_mut() else { return false };
        let write = async {
            for m in msgs {
                writer.write_all(m.as_bytes()).await?;
            }
            Ok::<_, std::io::Error>(())
        };
        match tokio::time::timeout(SEND_TIMEOUT, write).await {
            Ok(Ok(())) if self.is_closed() => {
                end_input(w.take());
                false
            }
            Ok(Ok(())) => true,
            _ => {
                end_input(w.take());
                drop(w);
                self.close(GO_AWAY, false);
                false
            }
        }
    }
}

/// Shuts the STOMP connection's input: it reads EOF and ends. (Dropping
/// the write half is not enough: the pump's read half keeps the pipe.)
fn end_input(w: Option<WriteHalf<DuplexStream>>) {
    if let Some(mut w) = w {
        tokio::spawn(async move {
            let _ = w.shutdown().await;
        });
    }
}

/// A receiving request's hold on its session; let go when dropped (the
/// response ended or the client went away).
pub struct Receiver(Arc<Session>);

impl Receiver {
    /// Waits up to `heartbeat` for something to send.
    pub async fn next(&self, heartbeat: Duration) -> Next {
        let deadline = Instant::now() + heartbeat;
        loop {
            let notified = self.0.wake.notified();
            {
                let mut st = self.0.state.lock();
                if !st.queue.is_empty() {
                    let msgs: Vec<String> = st.queue.drain(..).collect();
                    st.queued = 0;
                    return Next::Messages(framing::messages(msgs.iter().map(String::as_str)));
                }
                if let Some((code, reason)) = st.closed {
                    return Next::Close(framing::close(code, reason));
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Next::Heartbeat;
            }
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut st = self.0.state.lock();
        st.receiving = false;
        st.idle_since = Instant::now();
    }
}

/// Moves the STOMP connection's output into the session's queue.
async fn pump(s: Arc<Session>, mut rd: ReadHalf<DuplexStream>) {
    let mut cutter = Cutter::default();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if s.is_closed() {
            // Closed for overflow: read on to EOF so the STOMP side
            // never waits on a full pipe.
            continue;
        }
        let msg = cutter.push(&buf[..n]);
        let overflow = {
            let mut st = s.state.lock();
            if let Some(m) = msg {
                st.queued += m.len();
                st.queue.push_back(m);
            }
            st.queued + cutter.pending() > s.max_queued
        };
        if overflow {
            s.close(OVERFLOW, true);
        } else {
            s.wake.notify_one();
        }
    }
    s.close(GO_AWAY, false);
}

/// Closes and forgets sessions idle for `disconnect_delay`, until the
/// listener's [`SockJs`] is gone.
pub(super) async fn reap(sockjs: Weak<SockJs>) {
    let every = match sockjs.upgrade() {
        Some(s) => (s.cfg.disconnect_delay / 4).clamp(Duration::from_millis(25), Duration::from_secs(1)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(me) = sockjs.upgrade() else { return };
        let now = Instant::now();
        let delay = me.cfg.disconnect_delay;
        let gone: Vec<Arc<Session>> = {
            let mut map = me.sessions.lock();
            let ids: Vec<String> =
                map.iter().filter(|(_, s)| s.expired(delay, now)).map(|(id, _)| id.clone()).collect();
            ids.iter().filter_map(|id| map.remove(id)).collect()
        };
        for s in gone {
            s.close(GO_AWAY, true);
        }
    }
}
