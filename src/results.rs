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
//!
//! Signal history goes through [`Backend`]: the store, or with `storage: postgres:` the shared
//! database, so a replica that takes a probe over restores its detectors from the runs of the
//! replica that had it. Writes to the shared database go through a bounded queue to
//! [`write_history`]: a slow or lost database costs samples (counted), never a probe run.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::alert::Origin;
use crate::alert::service::{AlertService, unix_now};
use crate::config::drift::Watch;
use crate::detect::Severity;
use crate::detect::{self, DetectorSpec, SignalDetectors, Transition, Verdict};
use crate::probe::Outcome;
use crate::probe::log::NewSignature;
use crate::state::{ProbeState, Registry};
use crate::store::{Backend, Bucket, RETENTION_MINUTES, Sample, Store};

/// History kept in the store: four weeks and a day, so a weekly seasonal profile learns from
/// four earlier weeks after a restart (and the 3-day burn-rate window is covered).
pub const HISTORY_AGE: f64 = 29.0 * 86_400.0;
/// At most this many samples per series: four weeks of 1-minute samples are 40,320; a probe
/// run every 15 s keeps its last 8.7 days.
pub const HISTORY_MAX: usize = 50_000;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
/// Flushes of samples that may wait for the shared database (about a minute of them); past
/// that, a flush's samples are dropped and counted.
pub const HISTORY_QUEUE: usize = 64;
/// Intervals without a run here after which a probe's next run means this replica took it
/// over (see [`Results::catch_up`]).
pub const TAKEN_OVER_AFTER: f64 = 3.0;
/// Tries of one batch of samples against the shared database before it is dropped.
const HISTORY_TRIES: u32 = 3;

/// A flush's samples on their way to the shared database.
pub type SampleBatch = Vec<(String, String, Sample)>;

/// The detectors of one watched signal.
struct Watched {
    watch: Watch,
    detectors: SignalDetectors,
    /// Detectors of the signal's series when it comes as several (`value{job="api"}`), by
    /// labels, each built when first seen or restored from its stored history.
    series: HashMap<Box<str>, Series>,
}

/// One series of a watched signal and when it was last seen.
struct Series {
    detectors: SignalDetectors,
    seen: f64,
}

/// The most series of one watched signal that keep detectors; past it the series seen
/// longest ago is dropped. A query's own `max_series` (default 50) bounds one answer; this
/// bounds the churn of series that come and go.
pub const SERIES_MAX: usize = 500;

/// The results task's state.
pub struct Results {
    store: Arc<Store>,
    /// Where signal history is read and kept: the store, or the shared database.
    history: Arc<dyn Backend>,
    /// With the shared database: the queue to [`write_history`], and where drops are counted.
    writer: Option<(
        mpsc::Sender<SampleBatch>,
        Arc<crate::metrics::DaemonMetrics>,
    )>,
    alerts: Arc<AlertService>,
    watched: HashMap<String, Vec<Watched>>,
    restarts: HashMap<String, f64>,
    batch: Vec<(String, String, Sample)>,
    /// Runs since the last flush, by probe and unix minute.
    uptime: HashMap<(String, i64), Bucket>,
    /// The latest checkpoint of each stream-reading probe, written with the samples.
    checkpoints: HashMap<String, String>,
    /// When each probe's latest outcome was handled here (or the detectors were built), for
    /// [`catch_up`](Self::catch_up).
    handled: HashMap<String, f64>,
}

impl Results {
    pub fn new(store: Arc<Store>, alerts: Arc<AlertService>) -> Self {
        Results {
            history: store.clone(),
            writer: None,
            store,
            alerts,
            watched: HashMap::new(),
            restarts: HashMap::new(),
            batch: Vec::new(),
            uptime: HashMap::new(),
            checkpoints: HashMap::new(),
            handled: HashMap::new(),
        }
    }

    /// Reads and keeps signal history in the shared database (`storage: postgres:`) instead of
    /// the store; samples are handed to `writer` (the queue of [`write_history`]).
    pub fn with_shared_history(
        mut self,
        history: Arc<dyn Backend>,
        writer: mpsc::Sender<SampleBatch>,
        metrics: Arc<crate::metrics::DaemonMetrics>,
    ) -> Self {
        self.history = history;
        self.writer = Some((writer, metrics));
        self
    }

    /// Rebuilds the detectors for a (new) registry and replays each series' stored history.
    pub async fn configure(&mut self, registry: &Registry) {
        self.flush().await;
        let now = unix_now();
        self.watched.clear();
        self.handled.clear();
        for state in &registry.probes {
            self.rebuild(state, now).await;
            if self.writer.is_some() && !state.config.watches.is_empty() {
                self.handled.insert(state.name().to_string(), now);
            }
        }
    }

    /// With the shared database: before the outcome of a probe this replica has not run for
    /// [`TAKEN_OVER_AFTER`] intervals (it took the probe over from another replica), its
    /// detectors are rebuilt from the shared history, so the runs the other replica made in
    /// between are not lost to its trends. The results task calls it before [`handle`](Self::handle).
    pub async fn catch_up(&mut self, state: &ProbeState) {
        if self.writer.is_none() || state.config.watches.is_empty() {
            return;
        }
        let now = unix_now();
        let last = self.handled.insert(state.name().to_string(), now);
        let idle = last.map_or(f64::INFINITY, |t| now - t);
        if idle > TAKEN_OVER_AFTER * state.interval().as_secs_f64() {
            tracing::info!(
                probe = state.name(),
                idle,
                "probe taken over: detectors rebuilt from the shared history"
            );
            self.rebuild(state, now).await;
        }
    }

    /// Builds the detectors of one probe's watched signals from their stored history.
    async fn rebuild(&mut self, state: &ProbeState, now: f64) {
        self.watched.remove(state.name());
        let mut list = Vec::new();
        for watch in &state.config.watches {
            let Some((detectors, _)) = self.restore(state, watch.spec.clone(), now).await else {
                continue;
            };
            let mut series = HashMap::new();
            let stored =
                (self.history.series_of(state.name(), &watch.signal).await).unwrap_or_default();
            for name in stored.into_iter().take(SERIES_MAX) {
                let mut spec = watch.spec.clone();
                spec.signal = name;
                let labels: Box<str> = spec.signal[watch.signal.len()..].into();
                if let Some((detectors, seen)) = self.restore(state, spec, now).await {
                    series.insert(labels, Series { detectors, seen });
                }
            }
            list.push(Watched {
                watch: watch.clone(),
                detectors,
                series,
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

    /// Builds the detectors of one series and feeds them its stored history. Alerts restored
    /// from the store already reflect the past; they are reconciled with where the replay
    /// ended, so nothing is paged twice and nothing stays stuck. Returns the detectors and
    /// the time of the last stored sample (0 for none). (`&mut self` only so that the future
    /// needs no `Sync`: detectors keep cells.)
    async fn restore(
        &mut self,
        state: &ProbeState,
        spec: DetectorSpec,
        now: f64,
    ) -> Option<(SignalDetectors, f64)> {
        let signal = spec.signal.clone();
        let mut detectors = match SignalDetectors::new(spec) {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(probe = state.name(), error = %e, "detector spec refused");
                return None;
            }
        };
        let history = self
            .history
            .samples(state.name(), &signal, now - HISTORY_AGE)
            .await
            .unwrap_or_default();
        let points: Vec<(f64, f64)> = history.iter().map(|s| (s.t, s.v)).collect();
        let verdicts = detect::replay(&mut detectors, &points);
        let mut last: HashMap<&'static str, Verdict> = HashMap::new();
        for v in verdicts {
            last.insert(v.detector.as_str(), v);
        }
        for verdict in last.values() {
            self.raise(state.name(), verdict, now);
        }
        state.set_drift(&signal, detectors.state());
        Some((detectors, history.last().map_or(0.0, |s| s.t)))
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
            let limit = (w.watch.limit_from.as_deref()).and_then(|s| outcome.signal(s));
            let starts_over = rebaseline
                && (state.config.probe.info().signal(&w.watch.signal))
                    .is_some_and(|s| s.rebaseline_on_restart);
            let mut feed = |detectors: &mut SignalDetectors, value: f64| {
                if let Some(limit) = limit {
                    detectors.set_limit(limit);
                }
                let signal = &detectors.spec().signal;
                self.batch.push((
                    state.name().to_string(),
                    signal.clone(),
                    Sample { t: now, v: value },
                ));
                verdicts.extend(detectors.observe(now, value, starts_over));
                state.set_drift(&detectors.spec().signal, detectors.state());
            };
            if let Some(value) = w.watch.value(outcome).filter(|v| v.is_finite()) {
                feed(&mut w.detectors, value);
            }
            for (signal, labels, value) in outcome.series.iter() {
                if *signal != w.watch.signal || !value.is_finite() {
                    continue;
                }
                let series = match w.series.get_mut(labels) {
                    Some(series) => series,
                    None => {
                        let Some(series) = new_series(state, &w.watch, &mut w.series, labels)
                        else {
                            continue;
                        };
                        series
                    }
                };
                series.seen = now;
                feed(&mut series.detectors, *value);
            }
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
    pub async fn flush(&mut self) {
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
        if let Some((writer, metrics)) = &self.writer {
            let batch = std::mem::take(&mut self.batch);
            if let Err(e) = writer.try_send(batch) {
                let lost = match e {
                    mpsc::error::TrySendError::Full(b) | mpsc::error::TrySendError::Closed(b) => {
                        b.len()
                    }
                };
                metrics
                    .history_dropped
                    .fetch_add(lost as u64, Ordering::Relaxed);
                tracing::debug!(
                    samples = lost,
                    "the shared database is behind: samples dropped"
                );
            }
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

    async fn prune(&mut self) {
        match self
            .history
            .prune_samples(unix_now() - HISTORY_AGE, HISTORY_MAX)
            .await
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

/// The detectors of a series seen for the first time, after dropping the series seen longest
/// ago when `SERIES_MAX` are kept.
fn new_series<'a>(
    state: &ProbeState,
    watch: &Watch,
    kept: &'a mut HashMap<Box<str>, Series>,
    labels: &str,
) -> Option<&'a mut Series> {
    if kept.len() >= SERIES_MAX
        && let Some(oldest) = (kept.iter())
            .min_by(|a, b| a.1.seen.total_cmp(&b.1.seen))
            .map(|(k, _)| k.clone())
    {
        kept.remove(&oldest);
        state.remove_drift(&format!("{}{oldest}", watch.signal));
    }
    let mut spec = watch.spec.clone();
    spec.signal = format!("{}{labels}", watch.signal);
    let detectors = SignalDetectors::new(spec).ok()?;
    Some(kept.entry(labels.into()).or_insert(Series {
        detectors,
        seen: 0.0,
    }))
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
            Some((state, outcome)) = outcomes.recv() => {
                results.catch_up(&state).await;
                results.handle(&state, &outcome);
            }
            Some(registry) = registries.recv() => results.configure(&registry).await,
            _ = flush.tick() => {
                results.flush().await;
                results.alerts.tick(unix_now());
            }
            _ = prune.tick() => results.prune().await,
            _ = stop.changed() => break,
        }
    }
    while let Ok((state, outcome)) = outcomes.try_recv() {
        results.handle(&state, &outcome);
    }
    results.flush().await;
}

/// Writes the batches of samples [`Results`] queues for the shared database, each in one
/// statement, retried with a short backoff; a batch that still fails is dropped and counted
/// (`slowburn_history_samples_dropped_total`). Ends when the results task has ended and the
/// queue is empty.
pub async fn write_history(
    history: Arc<dyn Backend>,
    mut batches: mpsc::Receiver<SampleBatch>,
    metrics: Arc<crate::metrics::DaemonMetrics>,
) {
    while let Some(batch) = batches.recv().await {
        for attempt in 1..=HISTORY_TRIES {
            match history.append_samples(&batch).await {
                Ok(()) => break,
                Err(e) if attempt < HISTORY_TRIES => {
                    tracing::debug!(error = %e, attempt, "signal history not written yet; retrying");
                    tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
                }
                Err(e) => {
                    metrics
                        .history_dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    tracing::warn!(error = %e, samples = batch.len(), "cannot write signal history to the shared database: samples dropped");
                }
            }
        }
    }
}
