//! What happens to each outcome after a run: every run is counted in its probe's uptime bucket,
//! watched signals go to the store's history and to their detectors, and the result and any
//! verdicts go to the alert engine.
//!
//! One task owns the detectors (they are not shared), so a sample is processed in order and no
//! lock is held across probes. On start and on every reload, detectors are rebuilt and fed the
//! stored history, so a restart or a deploy loses none of the evidence. Samples and uptime
//! buckets, and the checkpoints of log probes, are written to the store in batches, one
//! transaction a second, however many probes ran in it; a log probe's new error signatures
//! become tickets.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::alert::Origin;
use crate::alert::service::{AlertService, unix_now};
use crate::config::drift::Watch;
use crate::detect::Severity;
use crate::detect::{self, SignalDetectors, Transition, Verdict};
use crate::probe::Outcome;
use crate::probe::log::NewSignature;
use crate::state::{ProbeState, Registry};
use crate::store::{Bucket, RETENTION_MINUTES, Sample, Store};

/// History kept in the store: four weeks and a day, so a weekly seasonal profile learns from
/// four earlier weeks after a restart (and the 3-day burn-rate window is covered).
pub const HISTORY_AGE: f64 = 29.0 * 86_400.0;
/// At most this many samples per series: four weeks of 1-minute samples are 40,320; a probe
/// run every 15 s keeps its last 8.7 days.
pub const HISTORY_MAX: usize = 50_000;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The detectors of one watched signal.
struct Watched {
    watch: Watch,
    detectors: SignalDetectors,
}

/// The results task's state.
pub struct Results {
    store: Arc<Store>,
    alerts: Arc<AlertService>,
    watched: HashMap<String, Vec<Watched>>,
    restarts: HashMap<String, f64>,
    batch: Vec<(String, String, Sample)>,
    /// Runs since the last flush, by probe and unix minute.
    uptime: HashMap<(String, i64), Bucket>,
    /// The latest checkpoint of each stream-reading probe, written with the samples.
    checkpoints: HashMap<String, String>,
}

impl Results {
    pub fn new(store: Arc<Store>, alerts: Arc<AlertService>) -> Self {
        Results {
            store,
            alerts,
            watched: HashMap::new(),
            restarts: HashMap::new(),
            batch: Vec::new(),
            uptime: HashMap::new(),
            checkpoints: HashMap::new(),
        }
    }

    /// Rebuilds the detectors for a (new) registry and replays each series' stored history.
    pub fn configure(&mut self, registry: &Registry) {
        self.flush();
        let now = unix_now();
        self.watched.clear();
        for state in &registry.probes {
            let mut list = Vec::new();
            for watch in &state.config.watches {
                let mut detectors = match SignalDetectors::new(watch.spec.clone()) {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::error!(probe = state.name(), error = %e, "detector spec refused");
                        continue;
                    }
                };
                let history = self
                    .store
                    .samples(state.name(), &watch.signal, now - HISTORY_AGE)
                    .unwrap_or_default();
                let points: Vec<(f64, f64)> = history.iter().map(|s| (s.t, s.v)).collect();
                let verdicts = detect::replay(&mut detectors, &points);
                // Alerts restored from the store already reflect the past; reconcile with
                // where the replay ended, so nothing is paged twice and nothing stays stuck.
                let mut last: HashMap<&'static str, Verdict> = HashMap::new();
                for v in verdicts {
                    last.insert(v.detector.as_str(), v);
                }
                for verdict in last.values() {
                    self.raise(state.name(), verdict, now);
                }
                state.set_drift(&watch.signal, detectors.state());
                list.push(Watched {
                    watch: watch.clone(),
                    detectors,
                });
            }
            if !list.is_empty() {
                tracing::info!(
                    probe = state.name(),
                    signals = list.len(),
                    "drift detectors ready"
                );
                self.watched.insert(state.name().to_string(), list);
            }
        }
    }

    /// Handles one outcome.
    pub fn handle(&mut self, state: &ProbeState, outcome: &Outcome) {
        let now = crate::metrics::unix_seconds(outcome.at + outcome.duration);
        let minute = (crate::metrics::unix_seconds(outcome.at) / 60.0).floor() as i64;
        self.uptime
            .entry((state.name().to_string(), minute))
            .or_default()
            .add(outcome.success, outcome.duration);
        let failure = outcome
            .failure
            .as_ref()
            .map(|f| (f.reason(), f.to_string()));
        // A probe with a quorum pages only when enough locations fail together: the cluster
        // loop judges it from every location's stored results.
        let by_quorum = state
            .config
            .placement
            .as_ref()
            .is_some_and(|p| p.quorum.is_some());
        if !by_quorum {
            self.alerts.observe(
                state.name(),
                failure.as_ref().map(|(r, m)| (*r, m.as_str())),
                now,
            );
        }
        if let Some(report) = &outcome.log {
            self.checkpoints
                .insert(state.name().to_string(), report.checkpoint.clone());
            for signature in &report.new_signatures {
                self.new_signature(state.name(), signature, now);
            }
        }
        let rebaseline = self.restarted(state, outcome);
        let Some(watched) = self.watched.get_mut(state.name()) else {
            return;
        };
        let mut verdicts = Vec::new();
        for w in watched.iter_mut() {
            let Some(value) = w.watch.value(outcome).filter(|v| v.is_finite()) else {
                continue;
            };
            if let Some(limit) = w
                .watch
                .limit_from
                .as_deref()
                .and_then(|s| outcome.signal(s))
            {
                w.detectors.set_limit(limit);
            }
            self.batch.push((
                state.name().to_string(),
                w.watch.signal.clone(),
                Sample { t: now, v: value },
            ));
            let starts_over = rebaseline
                && (state.config.probe.info().signal(&w.watch.signal))
                    .is_some_and(|s| s.rebaseline_on_restart);
            verdicts.extend(w.detectors.observe(now, value, starts_over));
            state.set_drift(&w.watch.signal, w.detectors.state());
        }
        for verdict in &verdicts {
            tracing::info!(probe = state.name(), signal = %verdict.signal, detector = verdict.detector.as_str(), state = verdict.transition.as_str(), "{}", verdict.message);
            self.raise(state.name(), verdict, now);
        }
    }

    /// A process probe whose restart count grew has a new process: its series start over.
    fn restarted(&mut self, state: &ProbeState, outcome: &Outcome) -> bool {
        let Some(restarts) = outcome.signal("restarts") else {
            return false;
        };
        let previous = self.restarts.insert(state.name().to_string(), restarts);
        previous.is_some_and(|p| restarts > p)
    }

    fn raise(&self, probe: &str, verdict: &Verdict, now: f64) {
        self.alerts.verdict(
            probe,
            Origin::of_verdict(verdict),
            verdict.severity,
            verdict.transition == Transition::Firing,
            &verdict.message,
            verdict.began_at,
            verdict.eta_seconds,
            now,
        );
    }

    /// A log probe met an error signature it had never seen: a ticket naming it, with an
    /// example line unless the probe shows none.
    fn new_signature(&self, probe: &str, signature: &NewSignature, now: f64) {
        let mut message = format!(
            "new error signature {} ({} times): {}",
            signature.id, signature.count, signature.text
        );
        if !signature.example.is_empty() {
            message.push_str(&format!("; e.g. {}", signature.example));
        }
        tracing::info!(probe, signature = %signature.id, "{message}");
        self.alerts.verdict(
            probe,
            Origin::Signature {
                id: signature.id.clone(),
            },
            Severity::Ticket,
            true,
            &message,
            Some(now),
            None,
            now,
        );
    }

    /// Writes the pending samples, uptime buckets and checkpoints.
    pub fn flush(&mut self) {
        if !self.uptime.is_empty() {
            let mut buckets: Vec<((String, i64), Bucket)> = self.uptime.drain().collect();
            buckets.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let rows: Vec<(&str, i64, Bucket)> = buckets
                .iter()
                .map(|((probe, minute), b)| (probe.as_str(), *minute, *b))
                .collect();
            if let Err(e) = self.store.add_uptime(&rows) {
                tracing::error!(error = %e, "cannot write uptime history");
            }
        }
        if !self.checkpoints.is_empty() {
            let rows: Vec<(&str, &str)> = self
                .checkpoints
                .iter()
                .map(|(p, c)| (p.as_str(), c.as_str()))
                .collect();
            if let Err(e) = self.store.save_checkpoints(&rows) {
                tracing::error!(error = %e, "cannot write log checkpoints");
            }
            self.checkpoints.clear();
        }
        if self.batch.is_empty() {
            return;
        }
        let rows: Vec<(&str, &str, Sample)> = self
            .batch
            .iter()
            .map(|(p, s, x)| (p.as_str(), s.as_str(), *x))
            .collect();
        if let Err(e) = self.store.append_samples(&rows) {
            tracing::error!(error = %e, "cannot write signal history");
        }
        self.batch.clear();
    }

    fn prune(&self) {
        match self
            .store
            .prune_samples(unix_now() - HISTORY_AGE, HISTORY_MAX)
        {
            Ok(removed) if removed > 0 => tracing::debug!(removed, "old samples pruned"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot prune signal history"),
        }
        let now_minute = (unix_now() / 60.0).floor() as i64;
        match self.store.prune_uptime(now_minute - RETENTION_MINUTES) {
            Ok(removed) if removed > 0 => tracing::debug!(removed, "old uptime buckets pruned"),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot prune uptime history"),
        }
    }
}

/// Runs the results task until `stop` turns true. New registries arrive on `registries`.
pub async fn run(
    mut results: Results,
    mut outcomes: mpsc::Receiver<(Arc<ProbeState>, Arc<Outcome>)>,
    mut registries: mpsc::UnboundedReceiver<Arc<Registry>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            Some((state, outcome)) = outcomes.recv() => results.handle(&state, &outcome),
            Some(registry) = registries.recv() => results.configure(&registry),
            _ = flush.tick() => {
                results.flush();
                results.alerts.tick(unix_now());
            }
            _ = prune.tick() => results.prune(),
            _ = stop.changed() => break,
        }
    }
    while let Ok((state, outcome)) = outcomes.try_recv() {
        results.handle(&state, &outcome);
    }
    results.flush();
}
