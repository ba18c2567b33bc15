//! The latest result of every probe: what `/metrics` and `/api/v1/probes` read.
//!
//! The scheduler writes one [`ProbeState`] per run; readers take a cheap snapshot (an `Arc` of
//! the last [`Outcome`]). On reload a new [`Registry`] is built and probes that kept their
//! name carry their history over, so a reload does not blank a dashboard.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use crate::config::ProbeConfig;
use crate::detect::DetectorState;
use crate::probe::Outcome;

/// One configured probe and what it last did.
#[derive(Debug)]
pub struct ProbeState {
    pub config: ProbeConfig,
    pub kind: &'static str,
    /// `probe="…",kind="…",label="…"`, rendered once for every metric line.
    pub label_text: Box<str>,
    /// Set while a run is in flight, so the next tick is skipped instead of stacked.
    pub running: Arc<AtomicBool>,
    /// The signal the status page draws for this probe (sparkline, default chart): the first
    /// watched signal, else the kind's headline signal.
    pub main_signal: Cow<'static, str>,
    /// What outlives a reload: one allocation per probe, not one per field.
    carried: Arc<Carried>,
}

/// The part of a probe's state a reload carries over when the probe keeps its name and kind.
#[derive(Debug)]
struct Carried {
    skipped: AtomicU64,
    history: Mutex<History>,
    /// Detector state of each watched signal, for metrics and the API.
    drift: Mutex<Vec<(String, DetectorState)>>,
}

/// Counters and the last outcome, carried over reloads.
#[derive(Debug, Default)]
struct History {
    last: Option<Arc<Outcome>>,
    last_success: Option<SystemTime>,
    runs: u64,
    failures: BTreeMap<&'static str, u64>,
    /// When the probe last failed, and why, kept after it recovers.
    last_failure: Option<(SystemTime, Arc<str>)>,
    /// The main signal of the last [`RECENT_MAX`] runs, for sparklines and for probes whose
    /// history is not in the store.
    recent: Recent,
}

/// How many recent points each probe keeps in memory.
pub const RECENT_MAX: usize = 60;

/// One recent run: unix seconds and the main signal's value, `NaN` when the run failed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t: u32,
    pub v: f32,
}

impl Point {
    pub fn failed(&self) -> bool {
        self.v.is_nan()
    }
}

/// The last [`RECENT_MAX`] points of one probe, held inline in 6 bytes a point (a value and
/// the gap to the next point) rather than 8, so 100,000 probes hold them in 36 MB, with no
/// allocation of their own; memory measured at start is memory in the long run.
#[derive(Debug)]
struct Recent {
    /// Unix seconds of the newest point.
    newest: u32,
    /// Seconds from each point to the next newer one, saturating at ~18 h (a point older than
    /// that is drawn 18 h before its successor).
    gaps: [u16; RECENT_MAX],
    values: [f32; RECENT_MAX],
    /// Where the oldest point is, and how many points there are.
    start: u8,
    len: u8,
}

impl Default for Recent {
    fn default() -> Self {
        Recent {
            newest: 0,
            gaps: [0; RECENT_MAX],
            values: [0.0; RECENT_MAX],
            start: 0,
            len: 0,
        }
    }
}

impl Recent {
    fn slot(&self, k: usize) -> usize {
        (usize::from(self.start) + k) % RECENT_MAX
    }

    fn push(&mut self, t: u32, v: f32) {
        if usize::from(self.len) == RECENT_MAX {
            self.start = ((usize::from(self.start) + 1) % RECENT_MAX) as u8;
            self.len -= 1;
        }
        let len = usize::from(self.len);
        if len > 0 {
            let gap = t.saturating_sub(self.newest).min(u32::from(u16::MAX)) as u16;
            let previous = self.slot(len - 1);
            self.gaps[previous] = gap;
        }
        let slot = self.slot(len);
        self.values[slot] = v;
        self.gaps[slot] = 0;
        self.len += 1;
        self.newest = t;
    }

    /// The points, oldest first.
    fn points(&self) -> Vec<Point> {
        let len = usize::from(self.len);
        let mut points = Vec::with_capacity(len);
        let mut t = self.newest;
        for k in (0..len).rev() {
            let slot = self.slot(k);
            points.push(Point {
                t,
                v: self.values[slot],
            });
            if k > 0 {
                t = t.saturating_sub(u32::from(self.gaps[self.slot(k - 1)]));
            }
        }
        points.reverse();
        points
    }
}

/// A consistent copy of one probe's history.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub last: Option<Arc<Outcome>>,
    pub last_success: Option<SystemTime>,
    pub runs: u64,
    pub failures: BTreeMap<&'static str, u64>,
    pub last_failure: Option<(SystemTime, Arc<str>)>,
    pub skipped: u64,
}

impl ProbeState {
    pub fn new(config: ProbeConfig) -> Self {
        let kind = config.probe.kind();
        let mut label_text = String::new();
        push_label(&mut label_text, "probe", &config.name);
        push_label(&mut label_text, "kind", kind);
        for (key, value) in &config.labels {
            push_label(&mut label_text, key, value);
        }
        let main_signal = config
            .watches
            .iter()
            .map(|w| w.signal.as_str())
            .find(|s| *s != "success")
            .map_or(Cow::Borrowed(config.probe.info().headline), |s| {
                Cow::Owned(s.to_string())
            });
        ProbeState {
            kind,
            main_signal,
            label_text: label_text.into_boxed_str(),
            running: Arc::default(),
            carried: Arc::new(Carried {
                skipped: AtomicU64::new(0),
                history: Mutex::default(),
                drift: Mutex::default(),
            }),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// What the probe is pointed at, for people; rendered when asked, not kept per probe.
    pub fn target(&self) -> String {
        self.config.probe.target()
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Records the outcome of a run.
    pub fn record(&self, outcome: Arc<Outcome>) {
        let mut history = self.history();
        history.runs += 1;
        if outcome.success {
            history.last_success = Some(outcome.at + outcome.duration);
        } else if let Some(failure) = &outcome.failure {
            *history.failures.entry(failure.reason()).or_default() += 1;
            history.last_failure = Some((outcome.at, failure.to_string().into()));
        }
        let value = match outcome.signal(&self.main_signal) {
            Some(v) if outcome.success && v.is_finite() => v as f32,
            _ => f32::NAN,
        };
        let t = crate::metrics::unix_seconds(outcome.at + outcome.duration);
        history
            .recent
            .push(t.clamp(0.0, f64::from(u32::MAX)) as u32, value);
        history.last = Some(outcome);
    }

    /// The recent points of the main signal at or after `since` (unix seconds), oldest first.
    pub fn recent(&self, since: f64) -> Vec<Point> {
        let history = self.history();
        let mut points = history.recent.points();
        points.retain(|p| f64::from(p.t) >= since);
        points
    }

    pub fn snapshot(&self) -> Snapshot {
        let history = self.history();
        Snapshot {
            last: history.last.clone(),
            last_success: history.last_success,
            runs: history.runs,
            failures: history.failures.clone(),
            last_failure: history.last_failure.clone(),
            skipped: self.carried.skipped.load(Ordering::Relaxed),
        }
    }

    /// The last outcome alone, without copying the counters.
    pub fn last(&self) -> Option<Arc<Outcome>> {
        let history = self.history();
        history.last.clone()
    }

    /// Counts a tick skipped because the previous run was still in flight.
    pub fn count_skipped(&self) {
        self.carried.skipped.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether any detector of a watched signal is firing.
    pub fn drift_firing(&self) -> bool {
        let drift = self.detectors();
        drift.iter().any(|(_, d)| d.any_firing())
    }

    /// Publishes the detector state of one watched signal.
    pub fn set_drift(&self, signal: &str, state: DetectorState) {
        let mut drift = self.detectors();
        match drift.iter_mut().find(|(s, _)| s == signal) {
            Some(slot) => slot.1 = state,
            None => drift.push((signal.to_string(), state)),
        }
    }

    /// Forgets a watched series that is no longer kept (a query's series that went away).
    pub fn remove_drift(&self, signal: &str) {
        self.detectors().retain(|(s, _)| s != signal);
    }

    pub fn drift(&self) -> Vec<(String, DetectorState)> {
        self.detectors().clone()
    }

    fn history(&self) -> MutexGuard<'_, History> {
        self.carried
            .history
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn detectors(&self) -> MutexGuard<'_, Vec<(String, DetectorState)>> {
        self.carried.drift.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes over the history of the same probe from a previous config.
    fn inherit(&mut self, old: &ProbeState) {
        if old.kind == self.kind {
            self.carried = old.carried.clone();
            // A log probe rebuilt by a reload reads on from where the old one stood.
            if let Some(checkpoint) = old.config.probe.checkpoint() {
                self.config.probe.restore(&checkpoint);
            }
        }
        self.running = old.running.clone();
    }
}

/// Every configured probe, in config order, with a name index.
#[derive(Debug, Default)]
pub struct Registry {
    pub probes: Vec<Arc<ProbeState>>,
    by_name: HashMap<String, usize>,
    /// `modules:` of the same config, served at `/probe`.
    pub modules: Arc<crate::blackbox::Modules>,
    /// The `targets_file:`s the probes came from, watched like the probe files.
    pub targets_files: Vec<std::path::PathBuf>,
}

impl Registry {
    /// Builds the registry of a new config, inheriting from `previous` by probe name.
    pub fn new(configs: Vec<ProbeConfig>, previous: Option<&Registry>) -> Self {
        let mut probes = Vec::with_capacity(configs.len());
        let mut by_name = HashMap::with_capacity(configs.len());
        for config in configs {
            let mut state = ProbeState::new(config);
            if let Some(old) = previous.and_then(|p| p.get(state.name())) {
                state.inherit(old);
            }
            by_name.insert(state.name().to_string(), probes.len());
            probes.push(Arc::new(state));
        }
        Registry {
            probes,
            by_name,
            modules: Default::default(),
            targets_files: Vec::new(),
        }
    }

    /// The same registry with its config's blackbox modules and target files.
    pub fn with_blackbox(
        mut self,
        modules: Arc<crate::blackbox::Modules>,
        targets_files: Vec<std::path::PathBuf>,
    ) -> Self {
        self.modules = modules;
        self.targets_files = targets_files;
        self
    }

    pub fn get(&self, name: &str) -> Option<&Arc<ProbeState>> {
        self.by_name.get(name).map(|i| &self.probes[*i])
    }
}

/// Appends `name="value"` with Prometheus escaping.
pub fn push_label(out: &mut String, name: &str, value: &str) {
    if !out.is_empty() {
        out.push(',');
    }
    out.push_str(name);
    out.push_str("=\"");
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(recent: &Recent) -> Vec<(u32, f32)> {
        recent.points().iter().map(|p| (p.t, p.v)).collect()
    }

    #[test]
    fn recent_points_keep_their_times_and_order() {
        let mut recent = Recent::default();
        assert!(recent.points().is_empty());
        recent.push(1_000, 1.0);
        recent.push(1_010, f32::NAN);
        recent.push(1_035, 3.0);
        let points = recent.points();
        assert_eq!(points.len(), 3);
        assert_eq!((points[0].t, points[0].v), (1_000, 1.0));
        assert!(points[1].t == 1_010 && points[1].failed());
        assert_eq!((points[2].t, points[2].v), (1_035, 3.0));
    }

    #[test]
    fn recent_keeps_the_newest_points_once_full() {
        let mut recent = Recent::default();
        for i in 0..(RECENT_MAX as u32 + 25) {
            recent.push(2_000 + i * 15, i as f32);
        }
        let points = pairs(&recent);
        assert_eq!(points.len(), RECENT_MAX);
        assert_eq!(points[0], (2_000 + 25 * 15, 25.0));
        let last = RECENT_MAX as u32 + 24;
        assert_eq!(points[RECENT_MAX - 1], (2_000 + last * 15, last as f32));
        assert!(points.windows(2).all(|w| w[1].0 - w[0].0 == 15));
    }

    #[test]
    fn recent_gap_longer_than_a_u16_saturates_and_a_clock_step_back_is_no_gap() {
        let mut recent = Recent::default();
        recent.push(100, 1.0);
        recent.push(100 + 100_000, 2.0);
        recent.push(100 + 99_990, 3.0);
        assert_eq!(
            pairs(&recent),
            [
                (100 + 99_990 - u32::from(u16::MAX), 1.0),
                (100 + 99_990, 2.0),
                (100 + 99_990, 3.0)
            ]
        );
    }
}
