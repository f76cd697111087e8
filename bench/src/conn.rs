//! `conn`: a connection storm, then a hold.
//!
//! Opens `n` connections with at most `concurrency` handshakes in flight
//! (a semaphore permit covers TCP connect, CONNECT and CONNACK), counting
//! CONNACK codes and failures by kind and recording the CONNECT→CONNACK
//! latency. The accepted connections are then held for `hold`, pinging
//! every keep-alive/2 and noticing any the broker drops, and finally closed
//! with DISCONNECT.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_core::codec::Packet;
use serde_json::json;
use tokio::sync::{mpsc, watch, Semaphore};

use crate::client::{self, ClientOpts, OpenError};
use crate::progress::Progress;
use crate::stats::{micros, round3, Histogram};
use crate::target::Target;

#[derive(Debug, Clone)]
pub struct ConnPlan {
    pub n: usize,
    pub concurrency: usize,
    pub hold: Duration,
}

/// What one handshake came to.
#[derive(Debug)]
enum Outcome {
    Accepted { latency: Duration },
    Refused { code: u8, latency: Duration },
    Failed { kind: &'static str },
}

/// Counters the progress line reads.
#[derive(Debug, Default)]
struct Live {
    accepted: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
}

pub async fn run(target: Target, opts: ClientOpts, plan: ConnPlan, progress: Progress) -> serde_json::Value {
    let live = Arc::new(Live::default());
    let sem = Arc::new(Semaphore::new(plan.concurrency));
    let (release_tx, release_rx) = watch::channel(false);
    let (tx, mut rx) = mpsc::unbounded_channel(); // at most `n` messages, one per task
    let ticker = progress.start({
        let live = Arc::clone(&live);
        move || {
            format!(
                "accepted={} failed={} dropped={}",
                live.accepted.load(Ordering::Relaxed),
                live.failed.load(Ordering::Relaxed),
                live.dropped.load(Ordering::Relaxed)
            )
        }
    });

    if let Some(limit) = open_files_limit().filter(|l| *l < plan.n as u64 + 64) {
        progress.say(&format!(
            "warning: {} connections need more file descriptors than this process may open ({limit}); raise it with `ulimit -n`",
            plan.n
        ));
    }
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(plan.n);
    for idx in 0..plan.n {
        let Ok(permit) = Arc::clone(&sem).acquire_owned().await else { break };
        let (opts, tx, release, live) = (opts.clone(), tx.clone(), release_rx.clone(), Arc::clone(&live));
        tasks.push(tokio::spawn(async move {
            let opened = client::open(&target, idx, format!("{}c{idx}", opts.client_prefix), &opts).await;
            drop(permit);
            let session = match opened {
                Ok(s) => {
                    live.accepted.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(Outcome::Accepted { latency: s.connack_latency });
                    s
                }
                Err(e) => {
                    live.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = tx.send(match e {
                        OpenError::Refused { code, latency } => Outcome::Refused { code, latency },
                        OpenError::Client(e) => Outcome::Failed { kind: e.label() },
                    });
                    return false;
                }
            };
            drop(tx);
            let held = hold(session, &opts, release).await;
            if !held {
                live.dropped.fetch_add(1, Ordering::Relaxed);
            }
            held
        }));
    }
    drop(tx);

    let mut latency = Histogram::default();
    let (mut codes, mut errors) = (BTreeMap::<String, u64>::new(), BTreeMap::<&str, u64>::new());
    while let Some(outcome) = rx.recv().await {
        match outcome {
            Outcome::Accepted { latency: l } => {
                latency.record(micros(l));
                *codes.entry("0".into()).or_default() += 1;
            }
            Outcome::Refused { code, latency: l } => {
                latency.record(micros(l));
                *codes.entry(code.to_string()).or_default() += 1;
            }
            Outcome::Failed { kind } => *errors.entry(kind).or_default() += 1,
        }
    }
    let connect_phase = started.elapsed();
    let accepted = live.accepted.load(Ordering::Relaxed);
    let failed = live.failed.load(Ordering::Relaxed);
    let connects_per_s = accepted as f64 / connect_phase.as_secs_f64().max(1e-9);
    progress.say(&format!(
        "connect phase: {accepted} accepted, {failed} failed in {:.2}s ({connects_per_s:.0}/s); CONNACK p50={}us p90={}us p99={}us max={}us",
        connect_phase.as_secs_f64(),
        latency.percentile(50.0),
        latency.percentile(90.0),
        latency.percentile(99.0),
        latency.max()
    ));

    if !plan.hold.is_zero() && accepted > 0 {
        progress.say(&format!("holding {accepted} connections for {}", humantime::format_duration(plan.hold)));
        tokio::time::sleep(plan.hold).await;
    }
    let _ = release_tx.send(true);
    let mut held = 0u64;
    for t in tasks {
        if let Ok(true) = t.await {
            held += 1;
        }
    }
    ticker.stop();
    let dropped = live.dropped.load(Ordering::Relaxed);
    if !plan.hold.is_zero() {
        progress.say(&format!("after the hold: {held} still connected, {dropped} dropped by the broker"));
    }
    json!({
        "mode": "conn",
        "target": target.addr.to_string(),
        "protocol": opts.version.level(),
        "attempted": plan.n,
        "concurrency": plan.concurrency,
        "connects": accepted,
        "failed": failed,
        "connack_codes": codes,
        "errors": errors,
        "connect_s": round3(connect_phase.as_secs_f64()),
        "connects_per_s": round3(connects_per_s),
        "connack_p50_us": latency.percentile(50.0),
        "connack_p90_us": latency.percentile(90.0),
        "connack_p99_us": latency.percentile(99.0),
        "connack_max_us": latency.max(),
        "hold_s": plan.hold.as_secs_f64(),
        "held": held,
        "dropped": dropped,
    })
}

/// Keeps one connection open until `release`, pinging while idle. False if
/// the broker closed it (or it broke) first.
async fn hold(session: client::Session, opts: &ClientOpts, mut release: watch::Receiver<bool>) -> bool {
    let client::Session { mut reader, mut writer, .. } = session;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + opts.ping_every(), opts.ping_every());
    let alive = loop {
        tokio::select! {
            biased;
            // An error means the run is over (sender gone): release too.
            _ = async { release.wait_for(|v| *v).await.is_ok() } => break true,
            _ = ping.tick() => {
                let ok = writer.push(&Packet::PingReq).is_ok()
                    && tokio::time::timeout(opts.timeout, writer.flush()).await.is_ok_and(|r| r.is_ok());
                if !ok {
                    break false;
                }
            }
            p = reader.next() => match p {
                Ok(Some(Packet::Disconnect(_))) | Ok(None) | Err(_) => break false,
                Ok(Some(_)) => {}
            },
        }
    };
    if alive {
        writer.close(opts.timeout).await;
    }
    alive
}

/// The soft limit on open files (Linux: /proc/self/limits), if known.
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn open_files_limit_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            assert!(super::open_files_limit().is_some_and(|l| l > 0));
        }
    }
}
