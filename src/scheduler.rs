//! When each probe runs: at a fixed rate, from a stable per-probe phase, never stacked, never
//! more than a global limit at once.
//!
//! One task holds a heap of due times for every probe and sleeps until the earliest. A probe's
//! phase within its interval comes from a hash of its name against the wall clock, so 10,000
//! probes spread over the interval instead of firing in one burst, and a restart or reload
//! keeps each probe's phase. The interval is a fixed rate: a slow run does not push the next one
//! back. A probe still running at its next tick is skipped and counted. How late each run
//! starts (including any wait for the in-flight limit) goes to `slowburn_schedule_lag_seconds`.
//!
//! The scheduler only decides *when*; running is [`crate::probe::execute`], and results go to
//! [`ProbeState`] and to the optional outcome channel.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::Instant;

use crate::metrics::DaemonMetrics;
use crate::probe::{self, Outcome};
use crate::state::{ProbeState, Registry};

/// Where finished outcomes go besides the probe's state (the store and detectors, later).
pub type OutcomeSender = mpsc::Sender<(Arc<ProbeState>, Arc<Outcome>)>;

/// Shared pieces every run needs.
#[derive(Clone)]
pub struct Runner {
    pub limit: Arc<Semaphore>,
    pub metrics: Arc<DaemonMetrics>,
    pub outcomes: Option<OutcomeSender>,
}

/// A stable offset of `name` within `interval`: FNV-1a of the name, so it is the same on
/// every start and every machine.
pub fn phase_offset(name: &str, interval: Duration) -> Duration {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let interval_ns = interval.as_nanos().max(1) as u64;
    Duration::from_nanos(hash % interval_ns)
}

/// How long from `now` (wall clock) until the probe's next slot.
pub fn until_first_slot(name: &str, interval: Duration, now: SystemTime) -> Duration {
    let interval_ns = interval.as_nanos().max(1);
    let offset = phase_offset(name, interval).as_nanos();
    let now_ns = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let wait = (offset + interval_ns - now_ns % interval_ns) % interval_ns;
    Duration::from_nanos(wait as u64)
}

/// Runs the schedule of `registry` until `stop` turns true.
pub async fn run(registry: Arc<Registry>, runner: Runner, mut stop: watch::Receiver<bool>) {
    let start = Instant::now();
    let wall = SystemTime::now();
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = registry
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| Reverse((start + until_first_slot(p.name(), p.interval(), wall), i)))
        .collect();
    tracing::info!(probes = registry.probes.len(), "scheduler started");
    loop {
        let Some(&Reverse((next, _))) = heap.peek() else {
            let _ = stop.changed().await;
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        let now = Instant::now();
        while let Some(&Reverse((due, i))) = heap.peek() {
            if due > now {
                break;
            }
            heap.pop();
            let state = &registry.probes[i];
            dispatch(state, due, &runner);
            // Fixed rate: the next slot is one interval after this one, whatever this run takes.
            let mut next = due + state.interval();
            if next <= now {
                // The process was suspended or badly overloaded: realign instead of bursting.
                let behind =
                    now.duration_since(next).as_nanos() / state.interval().as_nanos().max(1);
                next += state.interval() * (behind as u32 + 1);
            }
            heap.push(Reverse((next, i)));
        }
    }
}

/// Starts one run of `state` due at `due`, unless its previous run is still going.
fn dispatch(state: &Arc<ProbeState>, due: Instant, runner: &Runner) {
    if state.running.swap(true, Ordering::AcqRel) {
        state.count_skipped();
        tracing::debug!(
            probe = state.name(),
            "previous run still in flight; tick skipped"
        );
        return;
    }
    let state = state.clone();
    let runner = runner.clone();
    tokio::spawn(async move {
        let outcome = run_once(&state, due, &runner).await;
        state.running.store(false, Ordering::Release);
        if let Some(outcome) = outcome
            && let Some(sender) = &runner.outcomes
        {
            let _ = sender.send((state.clone(), outcome)).await;
        }
    });
}

async fn run_once(state: &ProbeState, due: Instant, runner: &Runner) -> Option<Arc<Outcome>> {
    let Ok(_permit) = runner.limit.acquire().await else {
        return None; // The limit is closed: the daemon is shutting down.
    };
    runner
        .metrics
        .schedule_lag
        .observe(Instant::now().saturating_duration_since(due));
    runner.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let outcome = Arc::new(probe::execute(&state.config.probe, state.config.timeout).await);
    runner.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    if let Some(failure) = &outcome.failure {
        tracing::debug!(probe = state.name(), kind = state.kind, reason = failure.reason(), error = %failure, "probe failed");
    }
    state.record(outcome.clone());
    Some(outcome)
}

/// Waits until no run holds a permit, or `grace` passes. Returns whether all finished.
pub async fn drain(limit: &Semaphore, permits: u32, grace: Duration) -> bool {
    tokio::time::timeout(grace, limit.acquire_many(permits))
        .await
        .is_ok_and(|p| p.is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_are_stable_and_spread() {
        let interval = Duration::from_secs(10);
        assert_eq!(
            phase_offset("checkout", interval),
            phase_offset("checkout", interval)
        );
        let mut per_second = [0u32; 10];
        for i in 0..10_000 {
            let offset = phase_offset(&format!("probe-{i}"), interval);
            per_second[offset.as_secs() as usize] += 1;
        }
        // 10,000 probes over 10 s: every second holds close to 1,000, none a burst.
        assert!(
            per_second.iter().all(|n| (850..1150).contains(n)),
            "{per_second:?}"
        );
    }

    #[test]
    fn first_slot_keeps_the_phase_across_restarts() {
        let interval = Duration::from_secs(60);
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let a = t0 + until_first_slot("x", interval, t0);
        let later = t0 + Duration::from_secs(1234);
        let b = later + until_first_slot("x", interval, later);
        let gap = b.duration_since(a).unwrap();
        assert_eq!(gap.as_nanos() % interval.as_nanos(), 0);
        assert!(until_first_slot("x", interval, later) < interval);
    }
}
