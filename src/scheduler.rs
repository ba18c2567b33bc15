//! When each probe runs: at a fixed rate, from a stable per-probe phase, never stacked, never
//! more than a global limit at once.
//!
//! One task holds a heap of due times for every probe and sleeps until the earliest. A probe's
//! phase within its interval comes from a hash of its name against the wall clock, so 10,000
//! probes spread over the interval instead of firing in one burst, and a restart or reload
//! keeps each probe's phase. A probe that has not run yet (every probe at start, a new one on
//! reload) also runs once within [`FIRST_RUN_WITHIN`], at a stable offset in that window, when
//! its slot is further away: a 5-minute probe is not blind for 5 minutes after each start. The
//! interval is a fixed rate: a slow run does not push the next one
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
    /// With replicas sharing `storage: postgres:`, which probes this replica runs.
    pub shard: Option<Arc<crate::cluster::shard::Shard>>,
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

/// How soon a probe that has never run gets its first run. Short enough that a start is not a
/// blind spot, long enough that 100,000 probes do not all start in one burst.
pub const FIRST_RUN_WITHIN: Duration = Duration::from_secs(10);

/// When a probe runs first, from `now`: `(first, Some(slot))` when the first run is an extra
/// one, at a stable offset within [`FIRST_RUN_WITHIN`], before its first stable slot; `(slot,
/// None)` when the slot itself comes soon enough, or when the probe has run before (`fresh`
/// false: a reload keeps its phase and adds no run).
pub fn first_runs(
    name: &str,
    interval: Duration,
    now: SystemTime,
    fresh: bool,
) -> (Duration, Option<Duration>) {
    let slot = until_first_slot(name, interval, now);
    if !fresh || slot <= FIRST_RUN_WITHIN {
        return (slot, None);
    }
    (phase_offset(name, FIRST_RUN_WITHIN), Some(slot))
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
    // The stable slot each probe goes to after an early first run.
    let mut slots: Vec<Option<Instant>> = vec![None; registry.probes.len()];
    let mut heap: BinaryHeap<Reverse<(Instant, usize)>> = registry
        .probes
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let (first, slot) = first_runs(p.name(), p.interval(), wall, p.last().is_none());
            slots[i] = slot.map(|slot| start + slot);
            Reverse((start + first, i))
        })
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
            // Fixed rate: the next slot is one interval after this one, whatever this run takes;
            // after an early first run, it is the probe's stable slot.
            let mut next = slots[i].take().unwrap_or(due + state.interval());
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

/// Runs `state` now, outside its schedule (a heartbeat's ping is judged when it arrives),
/// unless a run of it is already going.
pub fn run_now(state: &Arc<ProbeState>, runner: &Runner) {
    dispatch(state, Instant::now(), runner);
}

/// Starts one run of `state` due at `due`, unless its previous run is still going.
fn dispatch(state: &Arc<ProbeState>, due: Instant, runner: &Runner) {
    if let Some(shard) = &runner.shard
        && !shard.runs(state.name())
    {
        return; // Another replica owns this probe here.
    }
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
        if let (Some(shard), Some(outcome)) = (&runner.shard, &outcome) {
            let reason = outcome.failure.as_ref().map(|f| f.reason());
            shard.ran(state.name(), outcome.at, outcome.success, reason);
        }
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
    fn a_fresh_probe_runs_within_the_first_window_then_keeps_its_phase() {
        let t0 = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        for i in 0..200 {
            let name = format!("probe-{i}");
            for interval in [Duration::from_secs(3), Duration::from_secs(300)] {
                let slot = until_first_slot(&name, interval, t0);
                let (first, then) = first_runs(&name, interval, t0, true);
                assert!(first <= FIRST_RUN_WITHIN, "{name} {interval:?}: {first:?}");
                match then {
                    // An extra run first, then the stable slot, which is later.
                    Some(then) => assert!(then == slot && first < then && slot > FIRST_RUN_WITHIN),
                    None => assert_eq!(first, slot),
                }
                // A probe that has run (a reload) keeps its slot and gets no extra run.
                assert_eq!(first_runs(&name, interval, t0, false), (slot, None));
            }
        }
    }

    /// One probe with a 1-hour interval: without the early first run it would wait up to an
    /// hour (its slot lands in the first window for 1 start in 360).
    #[tokio::test(start_paused = true)]
    async fn every_probe_runs_soon_after_start() {
        let text = "probes:\n  - {name: hourly, interval: 1h, timeout: 1s, tcp: {address: \"127.0.0.1:1\"}}\n";
        let ctx = crate::probe::BuildContext {
            net: Arc::new(crate::probe::net::NetContext::new()),
        };
        let source = crate::config::Source::Text {
            name: "s.yaml".into(),
            text: text.into(),
        };
        let config = crate::config::load(&source, &ctx).unwrap();
        let registry = Arc::new(Registry::new(config.probes, None));
        let (outcomes, mut received) = mpsc::channel(4);
        let runner = Runner {
            limit: Arc::new(Semaphore::new(4)),
            shard: None,
            metrics: Arc::new(DaemonMetrics::new()),
            outcomes: Some(outcomes),
        };
        let (stop, stopped) = watch::channel(false);
        let started = Instant::now();
        let task = tokio::spawn(run(registry, runner, stopped));
        // The clock is paused: it jumps to each timer, so this takes no real time.
        let limit = FIRST_RUN_WITHIN + Duration::from_secs(1);
        let first = tokio::time::timeout(limit + Duration::from_millis(1), received.recv())
            .await
            .expect("the first run comes within the first window");
        assert!(first.is_some());
        assert!(started.elapsed() <= limit, "{:?}", started.elapsed());
        stop.send(true).unwrap();
        task.await.unwrap();
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
