//! The latest result of every probe: what `/metrics` and `/api/v1/probes` read.
//!
//! The scheduler writes one [`ProbeState`] per run; readers take a cheap snapshot (an `Arc` of
//! the last [`Outcome`]). On reload a new [`Registry`] is built and probes that kept their
//! name carry their history over, so a reload does not blank a dashboard.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::config::ProbeConfig;
use crate::detect::DetectorState;
use crate::probe::Outcome;

/// One configured probe and what it last did.
#[derive(Debug)]
pub struct ProbeState {
    pub config: ProbeConfig,
    pub kind: &'static str,
    pub target: String,
    /// `probe="…",kind="…",label="…"`, rendered once for every metric line.
    pub label_text: String,
    /// Set while a run is in flight, so the next tick is skipped instead of stacked.
    pub running: Arc<AtomicBool>,
    pub skipped: Arc<AtomicU64>,
    history: Arc<Mutex<History>>,
    /// Detector state of each watched signal, for metrics and the API.
    drift: Arc<Mutex<Vec<(String, DetectorState)>>>,
}

/// Counters and the last outcome, carried over reloads.
#[derive(Debug, Default)]
struct History {
    last: Option<Arc<Outcome>>,
    last_success: Option<SystemTime>,
    runs: u64,
    failures: BTreeMap<&'static str, u64>,
}

/// A consistent copy of one probe's history.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub last: Option<Arc<Outcome>>,
    pub last_success: Option<SystemTime>,
    pub runs: u64,
    pub failures: BTreeMap<&'static str, u64>,
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
        ProbeState {
            kind,
            target: config.probe.target(),
            label_text,
            running: Arc::default(),
            skipped: Arc::default(),
            history: Arc::default(),
            drift: Arc::default(),
            config,
        }
    }

    pub fn name(&self) -> &str {
        &self.config.name
    }

    pub fn interval(&self) -> Duration {
        self.config.interval
    }

    /// Records the outcome of a run.
    pub fn record(&self, outcome: Arc<Outcome>) {
        let mut history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        history.runs += 1;
        if outcome.success {
            history.last_success = Some(outcome.at + outcome.duration);
        } else if let Some(failure) = &outcome.failure {
            *history.failures.entry(failure.reason()).or_default() += 1;
        }
        history.last = Some(outcome);
    }

    pub fn snapshot(&self) -> Snapshot {
        let history = self.history.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            last: history.last.clone(),
            last_success: history.last_success,
            runs: history.runs,
            failures: history.failures.clone(),
            skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Publishes the detector state of one watched signal.
    pub fn set_drift(&self, signal: &str, state: DetectorState) {
        let mut drift = self.drift.lock().unwrap_or_else(|e| e.into_inner());
        match drift.iter_mut().find(|(s, _)| s == signal) {
            Some(slot) => slot.1 = state,
            None => drift.push((signal.to_string(), state)),
        }
    }

    pub fn drift(&self) -> Vec<(String, DetectorState)> {
        self.drift.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Takes over the history of the same probe from a previous config.
    fn inherit(&mut self, old: &ProbeState) {
        if old.kind == self.kind {
            self.history = old.history.clone();
            self.drift = old.drift.clone();
            self.skipped = old.skipped.clone();
        }
        self.running = old.running.clone();
    }
}

/// Every configured probe, in config order, with a name index.
#[derive(Debug, Default)]
pub struct Registry {
    pub probes: Vec<Arc<ProbeState>>,
    by_name: HashMap<String, usize>,
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
        Registry { probes, by_name }
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
