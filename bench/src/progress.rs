//! Human-readable progress on stderr: one line a second while a phase runs,
//! and phase summaries. Stdout is kept for the one JSON summary line.

use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy)]
pub struct Progress {
    quiet: bool,
    started: Instant,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        Progress { quiet, started: Instant::now() }
    }

    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("[{:>7.1}s] {msg}", self.started.elapsed().as_secs_f64());
        }
    }

    /// Prints `line()` every second until the returned ticker is stopped
    /// or dropped.
    pub fn start<F>(&self, line: F) -> Ticker
    where
        F: Fn() -> String + Send + 'static,
    {
        let this = *self;
        let handle = tokio::spawn(async move {
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + Duration::from_secs(1), Duration::from_secs(1));
            loop {
                every.tick().await;
                this.say(&line());
            }
        });
        Ticker { handle }
    }
}

/// The task printing progress lines; aborted when stopped or dropped.
#[derive(Debug)]
pub struct Ticker {
    handle: JoinHandle<()>,
}

impl Ticker {
    pub fn stop(self) {}
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
