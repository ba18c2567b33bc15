//! Every exported metric name, with its type and help text, in one place, and the Prometheus
//! text exposition of them.
//!
//! Per-probe series are rendered straight from each probe's latest [`Outcome`] rather than kept
//! in a generic metrics registry: with 100,000 probes a registry would hash labels on every
//! update and hold a second copy of every value, while the outcome already holds them. Names
//! follow blackbox_exporter's (`probe_success`, `probe_http_duration_seconds{phase}`, …) so
//! existing dashboards and rules keep working. The daemon's own counters are atomics here.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::alert::service::{AlertService, unix_now};
use crate::probe::Outcome;
use crate::state::{Registry, Snapshot, push_label};

/// Alert figures for the exposition, read once per scrape, with the health of the store that
/// keeps the alerts.
#[derive(Debug, Default)]
pub struct AlertGauges {
    pub firing: u64,
    pub acknowledged: u64,
    pub silenced: u64,
    pub flapping: u64,
    pub deliveries: std::collections::BTreeMap<(String, &'static str), u64>,
    pub oldest_unacked_page: f64,
    /// Active alerts held while a parent probe fails.
    pub held: u64,
    /// Steps that met nobody on call, by schedule (every configured schedule, 0 included).
    pub oncall_gaps: std::collections::BTreeMap<String, u64>,
    /// 1 when the store file was unreadable at start and a fresh one replaced it.
    pub store_corrupt: u64,
    /// Store reads and writes that failed since start.
    pub store_failed: u64,
}

impl AlertGauges {
    pub fn from_service(service: &AlertService) -> Self {
        // Counted under the service's lock: a scrape copies no alert and no timeline.
        let counts = service.alert_counts(unix_now());
        let store = service.store();
        AlertGauges {
            firing: counts.firing,
            acknowledged: counts.acknowledged,
            silenced: counts.silenced,
            flapping: counts.flapping,
            deliveries: service.deliveries.snapshot(),
            oldest_unacked_page: counts.oldest_unacked_page,
            held: counts.held,
            oncall_gaps: service.oncall_gaps(),
            store_corrupt: u64::from(store.replaced().is_some()),
            store_failed: store.failures(),
        }
    }
}

pub use crate::basics::signal::Family;

macro_rules! families {
    ($($ident:ident = $name:literal, $kind:literal, $help:literal;)*) => {
        $(pub const $ident: Family = Family { name: $name, kind: $kind, help: $help };)*
        /// The families named here; [`all`] adds those of the probe kinds' signal tables.
        pub const OWN: &[Family] = &[$($ident),*];
    };
}

families! {
    PROBE_SUCCESS = "probe_success", "gauge", "Whether the last run of the probe succeeded (1) or failed (0).";
    PROBE_DURATION = "probe_duration_seconds", "gauge", "How long the last run of the probe took, in seconds.";
    PROBE_HTTP_DURATION = "probe_http_duration_seconds", "gauge", "Duration of each phase of the last HTTP request, in seconds (summed over redirects).";
    PROBE_DNS_LOOKUP = "probe_dns_lookup_time_seconds", "gauge", "Time taken to resolve the target (or, for dns probes, to get the answer), in seconds.";
    PROBE_PHASE_DURATION = "probe_phase_duration_seconds", "gauge", "Duration of each phase of the last run of non-HTTP probes, in seconds.";
    PROBE_LAST_SUCCESS = "slowburn_probe_last_success_timestamp_seconds", "gauge", "When the probe last succeeded, as a unix timestamp.";
    PROBE_RUNS = "slowburn_probe_runs_total", "counter", "Runs of the probe since the daemon started.";
    PROBE_FAILURES = "slowburn_probe_failures_total", "counter", "Failed runs of the probe, by failure reason.";
    PROBE_SKIPPED = "slowburn_probe_skipped_total", "counter", "Ticks skipped because the previous run of the probe was still in flight.";
    SCHEDULE_LAG = "slowburn_schedule_lag_seconds", "histogram", "How late each run started against its due time, in seconds.";
    IN_FLIGHT = "slowburn_probes_in_flight", "gauge", "Probe runs in flight now.";
    PROBES_CONFIGURED = "slowburn_probes_configured", "gauge", "Probes in the running configuration.";
    RELOAD_OK = "slowburn_config_last_reload_successful", "gauge", "Whether the last configuration (re)load succeeded.";
    RELOAD_TIME = "slowburn_config_last_reload_success_timestamp_seconds", "gauge", "When the configuration was last loaded successfully, as a unix timestamp.";
    BUILD_INFO = "slowburn_build_info", "gauge", "Always 1, labelled with the version.";
    SERVER_CONNECTIONS = "slowburn_server_connections", "gauge", "Connections the HTTP server holds open now.";
    SERVER_CONNECTIONS_MAX = "slowburn_server_connections_max", "gauge", "The most connections the HTTP server holds at once (below the fd limit, leaving a reserve for probes).";
    SERVER_REFUSED = "slowburn_server_connections_refused_total", "counter", "Connections closed unserved because the server was full and every connection was busy.";
    SERVER_EVICTED = "slowburn_server_connections_evicted_total", "counter", "Idle connections (no request in flight) closed to make room for a new one when the server was full.";
    DRIFT_SLOPE = "probe_drift_slope", "gauge", "Robust (Theil-Sen) slope of a watched signal, in its unit per second.";
    DRIFT_ETA = "probe_drift_eta_seconds", "gauge", "Predicted seconds until a watched signal reaches its limit (+Inf when it is not heading there).";
    DRIFT_LEVEL = "probe_drift_level", "gauge", "Level of a watched signal estimated at now by the trend fit.";
    DRIFT_FIRING = "probe_drift_firing", "gauge", "Whether a detector (trend, change, burn_page, burn_ticket) of a watched signal is firing.";
    SLO_BURN = "probe_slo_burn_rate", "gauge", "Error-budget burn rate over each window (error ratio / (1 - objective)).";
    ALERTS = "slowburn_alerts", "gauge", "Alerts by state (firing, acknowledged, silenced, flapping, held: waiting on a failing parent probe).";
    ONCALL_GAPS = "slowburn_oncall_gaps_total", "counter", "Escalation steps that met a schedule with nobody on call (the next step was paged at once), by schedule.";
    NOTIFICATIONS = "slowburn_notifications_total", "counter", "Notification delivery attempts, by notifier and result (sent, retried, failed).";
    OLDEST_UNACKED = "slowburn_oldest_unacknowledged_page_age_seconds", "gauge", "Age of the oldest firing, unacknowledged page (0 when none).";
    LOG_MATCHES = "probe_log_matches_total", "counter", "Records each pattern of a log probe matched, by pattern.";
    LOG_LINES = "probe_log_lines_total", "counter", "Lines a log probe read.";
    LOG_LONG_LINES = "probe_log_long_lines_total", "counter", "Lines longer than the log probe's max_line_bytes (matched on their first bytes).";
    LOG_ROTATIONS = "probe_log_rotations_total", "counter", "Followed files a log probe finished after they were renamed away or replaced.";
    LOG_TRUNCATIONS = "probe_log_truncations_total", "counter", "Followed files found shorter than where reading stood (truncated in place).";
    LOG_NEW_SIGNATURES = "probe_log_new_signatures_total", "counter", "Error signatures a log probe met for the first time and reported.";
    LOG_CURSOR_RESETS = "probe_log_cursor_resets_total", "counter", "Journal cursors journalctl refused, each followed by reading on from the end.";
    COORDINATION_LOST = "slowburn_coordination_lost", "gauge", "1 while the shared database (storage.postgres) has been unreachable for three membership timeouts: nothing is claimed, probes run on every replica of the location; 0 otherwise.";
    ESCALATION_CLAIMS = "slowburn_escalation_claims_total", "counter", "Escalation steps this replica claimed from the shared database (each is sent once, or fenced off).";
    HISTORY_DROPPED = "slowburn_history_samples_dropped_total", "counter", "Samples of signal history dropped because the shared database (storage.postgres) was unreachable or behind; probing goes on.";
    STORE_ERRORS = "slowburn_store_errors_total", "counter", "Store problems by kind: corrupt (the file was unreadable at start, kept aside, and a fresh store began without the alerts, silences and history of before) and failed (reads and writes that failed).";
}

/// The per-probe families of every kind's signals, each once, in table order.
pub fn signal_families() -> Vec<&'static Family> {
    let mut out: Vec<&'static Family> = Vec::new();
    for kind in crate::probe::KINDS {
        for family in kind.signals.iter().filter_map(|s| s.family) {
            if !out.iter().any(|f| f.name == family.name) {
                out.push(family);
            }
        }
    }
    out
}

/// Every family slowburn exports: its own and the probe kinds', for documentation and tests.
pub fn all() -> Vec<&'static Family> {
    OWN.iter().chain(signal_families()).collect()
}

/// Every label name the exposition writes itself. A probe's own `labels:` may use none of
/// them: a sample with a label name twice makes Prometheus reject the whole scrape, every
/// probe's samples with it. `Out::line` checks in debug builds that nothing else is written.
pub const LABEL_NAMES: &[&str] = &[
    "probe", "kind", "phase", "reason", "signal", "detector", "window", "state", "notifier",
    "result", "le", "version", "pattern", "schedule",
];

/// Upper bounds of the schedule-lag histogram, in seconds: fine below 25 ms, where the
/// scheduler is meant to stay.
pub const LAG_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// A fixed-bucket histogram updated without locks.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LAG_BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let secs = value.as_secs_f64();
        if let Some(i) = LAG_BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(
            value.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    /// Cumulative counts per bucket, then the total count and the sum in seconds.
    pub fn read(&self) -> (Vec<u64>, u64, f64) {
        let mut cumulative = 0;
        let buckets = self
            .buckets
            .iter()
            .map(|b| {
                cumulative += b.load(Ordering::Relaxed);
                cumulative
            })
            .collect();
        (
            buckets,
            self.count.load(Ordering::Relaxed),
            self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        )
    }
}

/// The daemon's own metrics.
#[derive(Debug, Default)]
pub struct DaemonMetrics {
    pub schedule_lag: Histogram,
    pub in_flight: AtomicI64,
    pub reload_ok: AtomicI64,
    pub reload_time: AtomicU64,
    pub server_connections: AtomicI64,
    pub server_connections_max: AtomicU64,
    pub server_refused: AtomicU64,
    pub server_evicted: AtomicU64,
    /// With replicas sharing `storage: postgres:`: whether coordination is lost, and the
    /// escalation steps claimed.
    pub coordination: Arc<crate::cluster::daemon::Status>,
    pub claims: AtomicU64,
    /// Samples of signal history the shared database did not take in time (dropped).
    pub history_dropped: AtomicU64,
}

impl DaemonMetrics {
    pub fn new() -> Self {
        DaemonMetrics {
            reload_ok: AtomicI64::new(1),
            reload_time: AtomicU64::new(unix_seconds(SystemTime::now()) as u64),
            ..Default::default()
        }
    }

    pub fn reloaded(&self, ok: bool) {
        self.reload_ok.store(i64::from(ok), Ordering::Relaxed);
        if ok {
            self.reload_time
                .store(unix_seconds(SystemTime::now()) as u64, Ordering::Relaxed);
        }
    }
}

/// How much exposition text is handed on at a time when streaming.
const CHUNK: usize = 256 * 1024;

/// Renders the whole exposition into one string.
pub fn render(registry: &Registry, daemon: &DaemonMetrics, alerts: &AlertGauges) -> String {
    let mut whole = String::new();
    render_chunks(registry, daemon, alerts, &mut |chunk| {
        if whole.is_empty() {
            whole = chunk;
        } else {
            whole.push_str(&chunk);
        }
        true
    });
    whole
}

/// Renders the exposition in chunks of about 256 KiB, handing each to `sink` as soon as it
/// is full, so a 70 MB scrape of 100,000 probes is sent while it is still being rendered and
/// never held whole. Stops early when `sink` returns false (the scraper went away).
pub fn render_chunks(
    registry: &Registry,
    daemon: &DaemonMetrics,
    alerts: &AlertGauges,
    sink: &mut dyn FnMut(String) -> bool,
) {
    let mut out = Out {
        buf: String::with_capacity(CHUNK + 4096),
        sink,
        open: true,
    };
    render_into(&mut out, registry, daemon, alerts);
    out.flush();
}

/// The exposition being written: a buffer passed to the sink whenever it fills.
struct Out<'s> {
    buf: String,
    sink: &'s mut dyn FnMut(String) -> bool,
    open: bool,
}

impl Out<'_> {
    /// One sample line: `name{labels,key="value",…} value`, the extra pairs written as they
    /// are (they are slowburn's own names: phases, reasons, signals, windows). Nothing is
    /// written once the sink has gone away.
    fn line(&mut self, name: &str, labels: &str, extra: &[(&str, &str)], value: f64) {
        if !self.open {
            return;
        }
        debug_assert!(
            extra.iter().all(|(key, _)| LABEL_NAMES.contains(key)),
            "a label name missing from LABEL_NAMES in {extra:?}"
        );
        let buf = &mut self.buf;
        buf.push_str(name);
        if !labels.is_empty() || !extra.is_empty() {
            buf.push('{');
            buf.push_str(labels);
            for (i, (key, text)) in extra.iter().enumerate() {
                if i > 0 || !labels.is_empty() {
                    buf.push(',');
                }
                buf.push_str(key);
                buf.push_str("=\"");
                buf.push_str(text);
                buf.push('"');
            }
            buf.push('}');
        }
        buf.push(' ');
        push_value(buf, value);
        buf.push('\n');
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    fn header(&mut self, family: &Family) {
        for (word, text) in [("HELP", family.help), ("TYPE", family.kind)] {
            self.buf.push_str("# ");
            self.buf.push_str(word);
            self.buf.push(' ');
            self.buf.push_str(family.name);
            self.buf.push(' ');
            self.buf.push_str(text);
            self.buf.push('\n');
        }
    }

    fn single(&mut self, family: &Family, value: f64) {
        self.header(family);
        self.line(family.name, "", &[], value);
    }

    fn flush(&mut self) {
        if self.buf.is_empty() || !self.open {
            self.buf.clear();
            return;
        }
        let full = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK + 4096));
        self.open = (self.sink)(full);
    }
}

/// Writes a sample value as Prometheus reads it: integers without a fraction, others in
/// their shortest round-trip form.
fn push_value(buf: &mut String, v: f64) {
    if v.is_nan() {
        buf.push_str("NaN");
    } else if v == f64::INFINITY {
        buf.push_str("+Inf");
    } else if v == f64::NEG_INFINITY {
        buf.push_str("-Inf");
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        buf.push_str(itoa::Buffer::new().format(v as i64));
    } else {
        buf.push_str(ryu::Buffer::new().format_finite(v));
    }
}

fn render_into(
    out: &mut Out<'_>,
    registry: &Registry,
    daemon: &DaemonMetrics,
    alerts: &AlertGauges,
) {
    let snapshots: Vec<Snapshot> = registry.probes.iter().map(|p| p.snapshot()).collect();
    let pairs: Vec<(&str, &Snapshot)> = registry
        .probes
        .iter()
        .zip(&snapshots)
        .map(|(p, s)| (&*p.label_text, s))
        .collect();

    gauge_per_probe(out, &PROBE_SUCCESS, &pairs, |o| {
        Some(f64::from(u8::from(o.success)))
    });
    gauge_per_probe(out, &PROBE_DURATION, &pairs, |o| {
        Some(o.duration.as_secs_f64())
    });
    out.header(&PROBE_HTTP_DURATION);
    for (i, (labels, snap)) in pairs.iter().enumerate() {
        if registry.probes[i].kind != "http" {
            continue;
        }
        if let Some(outcome) = &snap.last {
            for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
                let spent = phase_time(outcome, phase);
                out.line(PROBE_HTTP_DURATION.name, labels, &[("phase", phase)], spent);
            }
        }
    }
    out.header(&PROBE_PHASE_DURATION);
    for (i, (labels, snap)) in pairs.iter().enumerate() {
        if registry.probes[i].kind == "http" {
            continue;
        }
        for (phase, spent) in snap.last.iter().flat_map(|o| o.phases.iter()) {
            out.line(
                PROBE_PHASE_DURATION.name,
                labels,
                &[("phase", phase)],
                spent.as_secs_f64(),
            );
        }
    }
    gauge_per_probe(out, &PROBE_DNS_LOOKUP, &pairs, |o| {
        o.phases
            .iter()
            .find(|(p, _)| *p == "resolve")
            .map(|(_, d)| d.as_secs_f64())
    });
    // One pass sorts every outcome's signals into the families their kind's table names,
    // instead of each family looking its signal up by name in every outcome.
    let families = signal_families();
    // Per kind, each exported signal with its family's index, worked out once per render
    // rather than once per signal of every probe.
    let slots: Vec<Vec<(&str, usize, bool)>> = crate::probe::KINDS
        .iter()
        .map(|kind| {
            kind.signals
                .iter()
                .filter_map(|s| {
                    let family = s.family?;
                    let f = families.iter().position(|x| x.name == family.name)?;
                    Some((s.name, f, s.zero_when_absent))
                })
                .collect()
        })
        .collect();
    let mut by_family: Vec<Vec<(usize, f64)>> = vec![Vec::new(); families.len()];
    for (i, (_, snap)) in pairs.iter().enumerate() {
        let info = registry.probes[i].config.probe.info();
        let Some(kind) = crate::probe::KINDS.iter().position(|k| k.name == info.name) else {
            continue;
        };
        for (name, value) in snap.last.iter().flat_map(|o| o.signals.iter()) {
            let Some(&(_, f, _)) = slots[kind].iter().find(|(s, _, _)| s == name) else {
                continue;
            };
            // The first value of a name counts, as in `Outcome::signal`.
            if by_family[f].last().is_none_or(|(last, _)| *last != i) {
                by_family[f].push((i, *value));
            }
        }
        // A run cut short (refused, a TLS failure) still reads 0 where blackbox reads 0, so
        // `probe_http_status_code >= 400`-style rules see the probe instead of no series.
        if snap.last.is_some() {
            for &(_, f, zero) in &slots[kind] {
                if zero && by_family[f].last().is_none_or(|(last, _)| *last != i) {
                    by_family[f].push((i, 0.0));
                }
            }
        }
    }
    for (family, values) in families.iter().zip(&by_family) {
        out.header(family);
        for (i, value) in values {
            out.line(family.name, pairs[*i].0, &[], *value);
        }
    }
    log_counters(out, &pairs);
    out.header(&PROBE_LAST_SUCCESS);
    for (labels, snap) in &pairs {
        if let Some(at) = snap.last_success {
            out.line(PROBE_LAST_SUCCESS.name, labels, &[], unix_seconds(at));
        }
    }
    out.header(&PROBE_RUNS);
    for (labels, snap) in &pairs {
        out.line(PROBE_RUNS.name, labels, &[], snap.runs as f64);
    }
    out.header(&PROBE_FAILURES);
    for (labels, snap) in &pairs {
        for (reason, count) in &snap.failures {
            let extra = [("reason", *reason)];
            out.line(PROBE_FAILURES.name, labels, &extra, *count as f64);
        }
    }
    out.header(&PROBE_SKIPPED);
    for (labels, snap) in &pairs {
        out.line(PROBE_SKIPPED.name, labels, &[], snap.skipped as f64);
    }

    render_drift(out, registry);

    out.header(&ALERTS);
    for (state, count) in [
        ("firing", alerts.firing),
        ("acknowledged", alerts.acknowledged),
        ("silenced", alerts.silenced),
        ("flapping", alerts.flapping),
        ("held", alerts.held),
    ] {
        out.line(ALERTS.name, "", &[("state", state)], count as f64);
    }
    out.header(&ONCALL_GAPS);
    for (schedule, count) in &alerts.oncall_gaps {
        out.line(
            ONCALL_GAPS.name,
            "",
            &[("schedule", schedule)],
            *count as f64,
        );
    }
    out.header(&NOTIFICATIONS);
    for ((notifier, result), count) in &alerts.deliveries {
        let mut labels = String::new();
        push_label(&mut labels, "notifier", notifier);
        push_label(&mut labels, "result", result);
        out.line(NOTIFICATIONS.name, &labels, &[], *count as f64);
    }
    out.single(&OLDEST_UNACKED, alerts.oldest_unacked_page);
    // Both kinds are always present, so `increase(...) > 0` works from the first scrape.
    out.header(&STORE_ERRORS);
    for (kind, count) in [
        ("corrupt", alerts.store_corrupt),
        ("failed", alerts.store_failed),
    ] {
        out.line(STORE_ERRORS.name, "", &[("kind", kind)], count as f64);
    }

    out.header(&SCHEDULE_LAG);
    let (buckets, count, sum) = daemon.schedule_lag.read();
    let bucket = format!("{}_bucket", SCHEDULE_LAG.name);
    for (bound, cumulative) in LAG_BUCKETS.iter().zip(&buckets) {
        out.line(
            &bucket,
            "",
            &[("le", &bound.to_string())],
            *cumulative as f64,
        );
    }
    out.line(&bucket, "", &[("le", "+Inf")], count as f64);
    out.line(&format!("{}_sum", SCHEDULE_LAG.name), "", &[], sum);
    out.line(
        &format!("{}_count", SCHEDULE_LAG.name),
        "",
        &[],
        count as f64,
    );
    out.single(&IN_FLIGHT, daemon.in_flight.load(Ordering::Relaxed) as f64);
    out.single(&PROBES_CONFIGURED, registry.probes.len() as f64);
    out.single(&RELOAD_OK, daemon.reload_ok.load(Ordering::Relaxed) as f64);
    out.single(
        &RELOAD_TIME,
        daemon.reload_time.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &SERVER_CONNECTIONS,
        daemon.server_connections.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &SERVER_CONNECTIONS_MAX,
        daemon.server_connections_max.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &SERVER_REFUSED,
        daemon.server_refused.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &SERVER_EVICTED,
        daemon.server_evicted.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &COORDINATION_LOST,
        f64::from(u8::from(daemon.coordination.lost().is_some())),
    );
    out.single(
        &ESCALATION_CLAIMS,
        daemon.claims.load(Ordering::Relaxed) as f64,
    );
    out.single(
        &HISTORY_DROPPED,
        daemon.history_dropped.load(Ordering::Relaxed) as f64,
    );
    out.header(&BUILD_INFO);
    let mut labels = String::new();
    push_label(&mut labels, "version", env!("CARGO_PKG_VERSION"));
    out.line(BUILD_INFO.name, &labels, &[], 1.0);
}

/// Detector state of every watched signal.
fn render_drift(out: &mut Out<'_>, registry: &Registry) {
    let drift: Vec<(&str, Vec<(String, crate::detect::DetectorState)>)> = registry
        .probes
        .iter()
        .map(|p| (&*p.label_text, p.drift()))
        .filter(|(_, d)| !d.is_empty())
        .collect();
    let series = |out: &mut Out<'_>,
                  family: &Family,
                  value: &dyn Fn(&crate::detect::DetectorState) -> Option<f64>| {
        out.header(family);
        for (labels, signals) in &drift {
            for (signal, state) in signals.iter().filter(|(s, _)| s != "success") {
                if let Some(v) = value(state) {
                    out.line(family.name, labels, &[("signal", signal)], v);
                }
            }
        }
    };
    series(out, &DRIFT_SLOPE, &|s| s.slope);
    series(out, &DRIFT_ETA, &|s| {
        Some(s.eta_seconds.unwrap_or(f64::INFINITY))
    });
    series(out, &DRIFT_LEVEL, &|s| s.level);
    out.header(&DRIFT_FIRING);
    for (labels, signals) in &drift {
        for (signal, s) in signals {
            for (detector, firing) in &s.firing {
                let extra = [("signal", signal.as_str()), ("detector", *detector)];
                out.line(
                    DRIFT_FIRING.name,
                    labels,
                    &extra,
                    f64::from(u8::from(*firing)),
                );
            }
        }
    }
    out.header(&SLO_BURN);
    for (labels, signals) in &drift {
        for (_, s) in signals.iter().filter(|(s, _)| s == "success") {
            for w in &s.burn {
                let window = crate::detect::verdict::format_duration(w.window);
                out.line(SLO_BURN.name, labels, &[("window", &window)], w.burn);
            }
        }
    }
}

/// Estimates a quantile from cumulative histogram buckets, as PromQL's `histogram_quantile`.
pub fn bucket_quantile(q: f64, buckets: &[u64], count: u64) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut lower_bound = 0.0;
    let mut lower_count = 0u64;
    for (bound, cumulative) in LAG_BUCKETS.iter().zip(buckets) {
        if *cumulative as f64 >= rank {
            let in_bucket = (*cumulative - lower_count) as f64;
            let fraction = if in_bucket > 0.0 {
                (rank - lower_count as f64) / in_bucket
            } else {
                1.0
            };
            return Some(lower_bound + (bound - lower_bound) * fraction);
        }
        lower_bound = *bound;
        lower_count = *cumulative;
    }
    Some(*LAG_BUCKETS.last().unwrap_or(&f64::INFINITY))
}

fn gauge_per_probe(
    out: &mut Out<'_>,
    family: &Family,
    pairs: &[(&str, &Snapshot)],
    value: impl Fn(&Outcome) -> Option<f64>,
) {
    out.header(family);
    for (labels, snap) in pairs {
        if let Some(v) = snap.last.as_deref().and_then(&value) {
            out.line(family.name, labels, &[], v);
        }
    }
}

/// The counters of log probes, from the totals each run reports.
fn log_counters(out: &mut Out<'_>, pairs: &[(&str, &Snapshot)]) {
    let logs: Vec<(&str, &crate::probe::log::Totals)> = pairs
        .iter()
        .filter_map(|(labels, snap)| Some((*labels, &snap.last.as_deref()?.log.as_deref()?.totals)))
        .collect();
    out.header(&LOG_MATCHES);
    for (labels, totals) in &logs {
        for (pattern, count) in &totals.matches {
            out.line(
                LOG_MATCHES.name,
                labels,
                &[("pattern", pattern)],
                *count as f64,
            );
        }
    }
    type Field = fn(&crate::probe::log::Totals) -> u64;
    let fields: [(&Family, Field); 6] = [
        (&LOG_LINES, |t| t.lines),
        (&LOG_LONG_LINES, |t| t.long_lines),
        (&LOG_ROTATIONS, |t| t.rotations),
        (&LOG_TRUNCATIONS, |t| t.truncations),
        (&LOG_NEW_SIGNATURES, |t| t.new_signatures),
        (&LOG_CURSOR_RESETS, |t| t.cursor_resets),
    ];
    for (family, field) in fields {
        out.header(family);
        for (labels, totals) in &logs {
            out.line(family.name, labels, &[], field(totals) as f64);
        }
    }
}

fn phase_time(outcome: &Outcome, phase: &str) -> f64 {
    outcome
        .phases
        .iter()
        .find(|(p, _)| *p == phase)
        .map_or(0.0, |(_, d)| d.as_secs_f64())
}

pub fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_and_quantiles() {
        let h = Histogram::default();
        for ms in [0.2, 0.4, 0.8, 1.5, 30.0] {
            h.observe(Duration::from_secs_f64(ms / 1000.0));
        }
        let (buckets, count, sum) = h.read();
        assert_eq!(count, 5);
        assert_eq!(buckets[0], 2);
        assert_eq!(buckets[1], 3);
        assert_eq!(*buckets.last().unwrap(), 5);
        assert!((sum - 0.0329).abs() < 1e-6);
        let p50 = bucket_quantile(0.5, &buckets, count).unwrap();
        assert!(p50 > 0.0005 && p50 <= 0.001, "{p50}");
        let p99 = bucket_quantile(0.99, &buckets, count).unwrap();
        assert!(p99 > 0.025 && p99 <= 0.05, "{p99}");
    }

    #[test]
    fn values_are_written_as_prometheus_reads_them() {
        let cases = [
            (1.0, "1"),
            (0.0, "0"),
            (-3.0, "-3"),
            (0.25, "0.25"),
            (1_763_890_000.5, "1763890000.5"),
            (2e15, "2000000000000000"),
            (1e16, "1e16"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
        ];
        for (value, text) in cases {
            let mut out = String::new();
            push_value(&mut out, value);
            assert_eq!(out, text, "{value}");
            if value.is_finite() {
                assert_eq!(out.parse::<f64>(), Ok(value), "round trip of {out}");
            }
        }
    }

    #[test]
    fn chunks_add_up_to_the_whole_exposition() {
        let registry = Registry::default();
        let daemon = DaemonMetrics::new();
        let alerts = AlertGauges::default();
        let whole = render(&registry, &daemon, &alerts);
        let mut chunks = Vec::new();
        render_chunks(&registry, &daemon, &alerts, &mut |c| {
            chunks.push(c);
            true
        });
        assert_eq!(chunks.concat(), whole);
        assert!(whole.contains("slowburn_probes_configured 0\n"), "{whole}");
        assert!(whole.contains("slowburn_schedule_lag_seconds_bucket{le=\"+Inf\"} 0\n"));
    }

    #[test]
    fn every_family_is_named_once() {
        let mut names: Vec<&str> = all().iter().map(|f| f.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all().len());
    }
}
