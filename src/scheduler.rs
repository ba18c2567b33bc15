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
//! With replicas the heap holds only the probes this replica runs ([`Shard::runs`]); the rest
//! are parked, so a replica does not wake for slots another one owns. When the owners change
//! ([`Shard::changes`]) newly owned probes go back on at their next stable slot and the ones
//! given away are parked. While the members are unknown the shard runs every probe of this
//! location, so nothing is parked (fail open).
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

use crate::cluster::shard::Shard;
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
    pub shard: Option<Arc<Shard>>,
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
    let mut due = Due::new(&registry, Instant::now(), SystemTime::now());
    // With replicas, the heap holds only the probes this replica runs, so it does not wake
    // for the slots of probes another replica owns; a change of owners re-parks them.
    let mut owners = runner.shard.as_ref().map(|shard| {
        let mut changes = shard.changes();
        changes.mark_unchanged();
        due.follow(shard, &registry, Instant::now(), SystemTime::now());
        changes
    });
    tracing::info!(
        probes = registry.probes.len(),
        scheduled = due.heap.len(),
        "scheduler started"
    );
    loop {
        let next = due.next();
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = stop.changed() => return,
            changed = owners_changed(&mut owners) => {
                match (changed, &runner.shard) {
                    (true, Some(shard)) => {
                        due.follow(shard, &registry, Instant::now(), SystemTime::now());
                    }
                    _ => owners = None,
                }
                continue;
            }
        }
        if *stop.borrow() {
            return;
        }
        let now = Instant::now();
        while let Some((at, i)) = due.pop(now) {
            let state = &registry.probes[i];
            dispatch(state, at, &runner);
            due.reschedule(i, at, state.interval(), now);
        }
    }
}

/// Sleeps until `next`, or forever when nothing is scheduled.
async fn sleep_until(next: Option<Instant>) {
    match next {
        Some(next) => tokio::time::sleep_until(next).await,
        None => std::future::pending().await,
    }
}

/// Waits until the probes this replica runs change; false if they never can again (no
/// shard, or its sender is gone).
async fn owners_changed(owners: &mut Option<watch::Receiver<u64>>) -> bool {
    match owners {
        Some(changes) => changes.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

/// The due times of the probes this task runs, earliest first, and which probes are parked
/// (owned by another replica) and so have none.
struct Due {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    /// The stable slot each probe goes to after an early first run.
    slots: Vec<Option<Instant>>,
    parked: Vec<bool>,
}

impl Due {
    /// Every probe at its first run (see [`first_runs`]), none parked.
    fn new(registry: &Registry, start: Instant, wall: SystemTime) -> Due {
        let mut slots: Vec<Option<Instant>> = vec![None; registry.probes.len()];
        let heap = registry
            .probes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (first, slot) = first_runs(p.name(), p.interval(), wall, p.last().is_none());
                slots[i] = slot.map(|slot| start + slot);
                Reverse((start + first, i))
            })
            .collect();
        Due {
            heap,
            slots,
            parked: vec![false; registry.probes.len()],
        }
    }

    fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// The next probe due by `now`, with the time it was due.
    fn pop(&mut self, now: Instant) -> Option<(Instant, usize)> {
        let &Reverse((at, i)) = self.heap.peek()?;
        if at > now {
            return None;
        }
        self.heap.pop();
        Some((at, i))
    }

    /// Puts probe `i`, just run for `at`, back at its next slot.
    fn reschedule(&mut self, i: usize, at: Instant, interval: Duration, now: Instant) {
        // Fixed rate: the next slot is one interval after this one, whatever this run takes;
        // after an early first run, it is the probe's stable slot.
        let mut next = self.slots[i].take().unwrap_or(at + interval);
        if next <= now {
            // The process was suspended or badly overloaded: realign instead of bursting.
            let behind = now.duration_since(next).as_nanos() / interval.as_nanos().max(1);
            next += interval * (behind as u32 + 1);
        }
        self.heap.push(Reverse((next, i)));
    }

    /// Parks the probes `shard` no longer runs and puts back the ones it now runs, at their
    /// next stable slot: a probe that moves here runs where its phase says, so it keeps its
    /// cadence (the old owner ran the slots before) and runs again within one interval.
    fn follow(&mut self, shard: &Shard, registry: &Registry, now: Instant, wall: SystemTime) {
        let mut parked = 0;
        for (i, p) in registry.probes.iter().enumerate() {
            let runs = shard.runs(p.name());
            if runs && self.parked[i] {
                let slot = until_first_slot(p.name(), p.interval(), wall);
                self.heap.push(Reverse((now + slot, i)));
            } else if !runs && !self.parked[i] {
                self.slots[i] = None;
                parked += 1;
            }
            self.parked[i] = !runs;
        }
        if parked > 0 {
            let still = &self.parked;
            self.heap.retain(|Reverse((_, i))| !still[*i]);
        }
        tracing::debug!(
            scheduled = self.heap.len(),
            "the probes this replica runs changed"
        );
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
    use std::collections::HashSet;

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

    /// Twenty 1 s probes shared with another replica: only the owned ones are on the heap and
    /// run; when the other replica leaves, its probes come back at their next stable slot, so
    /// each runs within one interval, on its phase.
    #[tokio::test(start_paused = true)]
    async fn parks_the_probes_another_replica_owns() {
        use crate::cluster::shard::{Place, Shard};
        let mut text = String::from("probes:\n");
        for i in 0..20 {
            text.push_str(&format!(
                "  - {{name: p{i}, interval: 1s, timeout: 100ms, tcp: {{address: \"127.0.0.1:1\"}}}}\n"
            ));
        }
        let ctx = crate::probe::BuildContext {
            net: Arc::new(crate::probe::net::NetContext::new()),
        };
        let source = crate::config::Source::Text {
            name: "s.yaml".into(),
            text,
        };
        let config = crate::config::load(&source, &ctx).unwrap();
        let me = crate::cluster::Identity::new(Some("me".into()), Some("here".into()), 0);
        let shard = Arc::new(Shard::new(&me));
        let place = Place {
            locations: None,
            quorum: None,
            interval: Duration::from_secs(1),
        };
        shard.set_places(
            config
                .probes
                .iter()
                .map(|p| (p.name.clone(), place.clone()))
                .collect(),
        );
        let both = vec![
            ("me".to_string(), "here".to_string()),
            ("other".into(), "here".into()),
        ];
        shard.set_members(Some(both));
        let owned = shard.owned();
        assert!((1..20).contains(&owned), "{owned} of 20");

        let registry = Arc::new(Registry::new(config.probes, None));
        let runner = Runner {
            limit: Arc::new(Semaphore::new(32)),
            shard: Some(shard.clone()),
            metrics: Arc::new(DaemonMetrics::new()),
            outcomes: None,
        };
        let mut due = Due::new(&registry, Instant::now(), SystemTime::now());
        due.follow(&shard, &registry, Instant::now(), SystemTime::now());
        assert_eq!(due.heap.len(), owned, "only the owned probes are scheduled");

        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(registry, runner, stopped));
        tokio::time::sleep(FIRST_RUN_WITHIN + Duration::from_secs(3)).await;
        let ran: HashSet<String> = shard.take_runs().into_iter().map(|r| r.probe).collect();
        assert_eq!(ran.len(), owned, "{ran:?}");
        assert!(ran.iter().all(|p| shard.runs(p)));

        shard.set_members(Some(vec![("me".into(), "here".into())]));
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let runs = shard.take_runs();
        let ran: HashSet<&str> = runs.iter().map(|r| r.probe.as_str()).collect();
        assert_eq!(
            ran.len(),
            20,
            "every probe within an interval of the move: {ran:?}"
        );
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
