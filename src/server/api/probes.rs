//! `GET /probes`, `GET /probes/{name}` and `GET /overview`: the probes, their status and the
//! status page's compact list.
//!
//! `GET /probes` answers every probe as an array; with any of `status`, `kind`, `label=k=v`,
//! `q`, `sort`, `offset`, `limit` it answers the matching page in the same shape, with the
//! number of matches in `X-Total-Count`. `GET /overview` takes the same parameters and answers
//! compact rows (status, latency, sparkline) plus counts for the status page's filters. This
//! file only reads the registry, the alerts and the store; it changes nothing.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use super::{signal_unit, unit_name};
use crate::alert::State as AlertState;
use crate::alert::service::unix_now;
use crate::metrics::unix_seconds;
use crate::server::Shared;
use crate::state::{ProbeState, Registry};

/// The body of `GET /overview`. Fields are in alphabetical order, the order the `json!`
/// object it replaced wrote them in, so the bytes on the wire did not change.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// Probes in each status, over all probes (every status present, zero or not).
    pub counts: BTreeMap<&'static str, usize>,
    pub kinds: BTreeSet<&'static str>,
    /// Label keys and (up to 200 of) their values, for the filters' drop-downs.
    pub labels: BTreeMap<String, BTreeSet<String>>,
    pub limit: usize,
    pub matched: usize,
    pub offset: usize,
    pub probes: Vec<OverviewRow>,
    pub total: usize,
}

/// One probe's row of `GET /overview` (fields alphabetical, as [`Overview`]'s).
#[derive(Debug, Serialize)]
pub struct OverviewRow {
    pub duration_seconds: Option<f64>,
    pub kind: &'static str,
    pub labels: serde_json::Map<String, Value>,
    pub last_check: Option<f64>,
    pub last_failure: Option<LastFailure>,
    pub main_signal: String,
    pub name: String,
    pub reason: Option<String>,
    /// Up to [`SPARK_POINTS`] means of the main signal; `null` where a run failed.
    pub spark: Vec<Option<f64>>,
    pub status: String,
    pub target: String,
    pub unit: &'static str,
    pub value: Option<f64>,
}

/// When a probe last failed, and how.
#[derive(Debug, Serialize)]
pub struct LastFailure {
    pub at: f64,
    pub error: String,
}

pub(super) async fn list_probes(
    State(shared): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Response, ApiError> {
    let registry = shared.registry();
    if params.is_empty() {
        return Ok(Json(Value::Array(
            registry.probes.iter().map(|p| probe_json(p)).collect(),
        ))
        .into_response());
    }
    let filter = Filter::parse(&params, usize::MAX)?;
    let statuses = Statuses::new(&shared).all(&registry);
    let (matched, page) = filter.apply(&registry, &statuses);
    let body = Value::Array(page.iter().map(|(p, _)| probe_json(p)).collect());
    Ok(([("x-total-count", matched.to_string())], Json(body)).into_response())
}

/// The status page's list: one compact row per probe of the page, and counts over all probes.
pub(super) async fn overview(
    State(shared): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Overview>, ApiError> {
    let filter = Filter::parse(&params, 100)?;
    // Rows of watched probes read their sparkline from the store: keep that off the workers.
    tokio::task::spawn_blocking(move || overview_body(&shared, &filter))
        .await
        .map(Json)
        .map_err(ApiError::internal)
}

pub(super) async fn one_probe(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let registry = shared.registry();
    match registry.get(&name) {
        Some(probe) => {
            let mut v = probe_json(probe);
            v["status"] = json!(Statuses::new(&shared).of(probe));
            Ok(Json(v))
        }
        None => Err(ApiError::NotFound(format!("no probe named {name:?}"))),
    }
}

/// One probe as JSON: config, last outcome, phases, signals, reason, last success.
///
/// A `Value` rather than a struct: `GET /probes/{name}` adds its `status` to it, and most of it
/// is maps keyed by phase and signal names.
pub fn probe_json(probe: &ProbeState) -> Value {
    let snap = probe.snapshot();
    let labels: serde_json::Map<String, Value> = probe
        .config
        .labels
        .iter()
        .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
        .collect();
    let last = snap.last.as_ref().map(|o| {
        json!({
            "at": unix_seconds(o.at),
            "success": o.success,
            "duration_seconds": o.duration.as_secs_f64(),
            "reason": o.failure.as_ref().map(|f| f.reason()),
            "error": o.failure.as_ref().map(|f| f.to_string()),
            "phases": o.phases.iter().map(|(p, d)| (p.to_string(), json!(d.as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
            "signals": o.signals.iter().filter(|(_, v)| v.is_finite()).map(|(s, v)| (s.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "checks": o.checks.iter().map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
            "notes": o.notes,
        })
    });
    json!({
        "name": probe.name(),
        "kind": probe.kind,
        "target": probe.target(),
        "labels": labels,
        "main_signal": probe.main_signal,
        "interval_seconds": probe.config.interval.as_secs_f64(),
        "timeout_seconds": probe.config.timeout.as_secs_f64(),
        "defined_at": probe.config.location(),
        "locations": probe.config.placement.as_ref().map(|p| &p.locations),
        "last": last,
        "last_success": snap.last_success.map(unix_seconds),
        "runs": snap.runs,
        "skipped": snap.skipped,
        "failures": snap.failures,
        "drift": probe.drift().iter().map(|(signal, d)| drift_body(signal, d)).collect::<Vec<_>>(),
    })
}

/// One watched signal's detector state: its figures, a `{label}_firing` flag for each alert
/// its detectors can raise (`trend_firing`, `burn_page_firing`, …) and their notes.
fn drift_body(signal: &str, d: &crate::detect::DetectorState) -> Value {
    let mut body = json!({
        "signal": signal,
        "slope": d.slope,
        "eta_seconds": d.eta_seconds,
        "level": d.level,
        "burn": d.burn.iter().map(|w| json!({"window_seconds": w.window, "total": w.total, "bad": w.bad, "burn": w.burn})).collect::<Vec<_>>(),
        "notes": d.notes.iter().map(|(detector, note)| json!({"detector": detector, "note": note})).collect::<Vec<_>>(),
    });
    for (label, firing) in &d.firing {
        body[format!("{label}_firing")] = Value::Bool(*firing);
    }
    body
}

fn overview_body(shared: &Shared, filter: &Filter) -> Overview {
    let registry = shared.registry();
    let statuses = Statuses::new(shared).all(&registry);
    let mut counts: BTreeMap<&'static str, usize> = STATUSES.iter().map(|s| (*s, 0)).collect();
    let mut kinds = BTreeSet::new();
    let mut labels: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (probe, status) in registry.probes.iter().zip(&statuses) {
        *counts.entry(status).or_default() += 1;
        kinds.insert(probe.kind);
        for (k, v) in &probe.config.labels {
            let values = labels.entry(k).or_default();
            // Enough to fill a drop-down; a label with more values is searched by typing.
            if values.len() < 200 {
                values.insert(v);
            }
        }
    }
    let now = unix_now();
    let (matched, page) = filter.apply(&registry, &statuses);
    let rows: Vec<OverviewRow> = page
        .iter()
        .map(|(p, status)| overview_row(shared, p, status, now))
        .collect();
    Overview {
        total: registry.probes.len(),
        matched,
        offset: filter.offset,
        limit: filter.limit,
        counts,
        kinds,
        labels: labels
            .into_iter()
            .map(|(k, values)| {
                (
                    k.to_string(),
                    values.into_iter().map(String::from).collect(),
                )
            })
            .collect(),
        probes: rows,
    }
}

/// Every status a probe can be in, worst first.
const STATUSES: [&str; 6] = ["down", "flapping", "degraded", "silenced", "pending", "up"];

/// What the alert engine says about each probe, gathered once per request.
struct Statuses {
    /// Probe name → (silenced, flapping) of its active alerts.
    alerts: HashMap<String, (bool, bool)>,
}

impl Statuses {
    fn new(shared: &Shared) -> Self {
        let mut alerts: HashMap<String, (bool, bool)> = HashMap::new();
        for a in shared.alerts.alerts() {
            if a.state == AlertState::Resolved {
                continue;
            }
            let entry = alerts.entry(a.probe.clone()).or_insert((true, false));
            entry.0 &= a.silenced;
            entry.1 |= a.flapping;
        }
        Statuses { alerts }
    }

    /// `down` (the last run failed), `flapping`, `degraded` (up, but an alert or a detector
    /// is firing), `silenced` (every active alert is silenced), `pending` (never ran), `up`.
    fn of(&self, probe: &ProbeState) -> &'static str {
        let last = probe.last();
        let alert = self.alerts.get(probe.name());
        if alert.is_some_and(|a| a.0) {
            return "silenced";
        }
        if alert.is_some_and(|a| a.1) {
            return "flapping";
        }
        match &last {
            Some(o) if !o.success => "down",
            _ if alert.is_some() || probe.drift_firing() => "degraded",
            None => "pending",
            Some(_) => "up",
        }
    }

    /// The status of every probe of `registry`, in its order.
    fn all(&self, registry: &Registry) -> Vec<&'static str> {
        registry.probes.iter().map(|p| self.of(p)).collect()
    }
}

/// The filters and page of a probe list.
#[derive(Debug)]
struct Filter {
    statuses: Vec<String>,
    kind: Option<String>,
    labels: Vec<(String, String)>,
    q: Option<String>,
    sort: Sort,
    offset: usize,
    limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Sort {
    Config,
    Name,
    Status,
}

/// The most rows one page may hold.
const PAGE_MAX: usize = 1000;

impl Filter {
    fn parse(params: &[(String, String)], default_limit: usize) -> Result<Filter, ApiError> {
        let mut f = Filter {
            statuses: Vec::new(),
            kind: None,
            labels: Vec::new(),
            q: None,
            sort: Sort::Config,
            offset: 0,
            limit: default_limit,
        };
        for (key, value) in params {
            match key.as_str() {
                "status" => {
                    for s in value.split(',').filter(|s| !s.is_empty()) {
                        if !STATUSES.contains(&s) {
                            return Err(ApiError::BadRequest(format!(
                                "status {s:?} is not one of {}",
                                STATUSES.join(", ")
                            )));
                        }
                        f.statuses.push(s.to_string());
                    }
                }
                "kind" if value.is_empty() => {}
                "kind" => {
                    if crate::probe::kind_info(value).is_none() {
                        return Err(ApiError::BadRequest(format!(
                            "kind {value:?} is not one of {}",
                            crate::probe::KIND_KEYS.join(", ")
                        )));
                    }
                    f.kind = Some(value.clone());
                }
                "label" if value.is_empty() => {}
                "label" => match value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => f.labels.push((k.into(), v.into())),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "label {value:?} is not written key=value"
                        )));
                    }
                },
                "q" => f.q = Some(value.to_lowercase()).filter(|q| !q.is_empty()),
                "sort" => {
                    f.sort = match value.as_str() {
                        "" | "config" => Sort::Config,
                        "name" => Sort::Name,
                        "status" => Sort::Status,
                        _ => {
                            return Err(ApiError::BadRequest(format!(
                                "sort {value:?} is not config, name or status"
                            )));
                        }
                    }
                }
                "offset" => {
                    f.offset = value.parse().map_err(|_| {
                        ApiError::BadRequest(format!("offset {value:?} is not a whole number"))
                    })?
                }
                "limit" => {
                    f.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=PAGE_MAX).contains(l))
                        .ok_or_else(|| {
                            ApiError::BadRequest(format!(
                                "limit {value:?} is not a number from 1 to {PAGE_MAX}"
                            ))
                        })?
                }
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "unknown parameter {key:?}: use status, kind, label, q, sort, offset, limit"
                    )));
                }
            }
        }
        Ok(f)
    }

    /// The number of matching probes and the requested page of them, with their status.
    /// `statuses` are those of `registry`'s probes, in order ([`Statuses::all`]).
    fn apply<'r>(
        &self,
        registry: &'r Registry,
        statuses: &[&'static str],
    ) -> (usize, Vec<(&'r ProbeState, &'static str)>) {
        let mut matched: Vec<(&ProbeState, &'static str)> = registry
            .probes
            .iter()
            .zip(statuses)
            .filter(|(p, _)| self.kind.as_deref().is_none_or(|k| k == p.kind))
            .filter(|(p, _)| {
                self.labels.iter().all(|(k, v)| {
                    p.config
                        .labels
                        .iter()
                        .any(|(pk, pv)| **pk == **k && **pv == **v)
                })
            })
            .filter(|(p, _)| {
                self.q
                    .as_deref()
                    .is_none_or(|q| p.name().to_lowercase().contains(q))
            })
            .map(|(p, s)| (p.as_ref(), *s))
            .filter(|(_, s)| self.statuses.is_empty() || self.statuses.iter().any(|x| x == s))
            .collect();
        match self.sort {
            Sort::Config => {}
            Sort::Name => matched.sort_by(|a, b| a.0.name().cmp(b.0.name())),
            Sort::Status => matched.sort_by_key(|(_, s)| STATUSES.iter().position(|x| x == s)),
        }
        let total = matched.len();
        let page = matched
            .into_iter()
            .skip(self.offset)
            .take(self.limit)
            .collect();
        (total, page)
    }
}

/// Sparklines have at most this many points.
const SPARK_POINTS: usize = 60;

fn overview_row(shared: &Shared, probe: &ProbeState, status: &str, now: f64) -> OverviewRow {
    let snap = probe.snapshot();
    let last = snap.last.as_deref();
    let since = now - 6.0 * 3600.0;
    let watched = probe
        .config
        .watches
        .iter()
        .any(|w| w.signal == probe.main_signal);
    let recent: Vec<Option<f64>> = if watched {
        let stored = if shared.history.is_shared() {
            // On a blocking thread (see `overview`): waiting here holds no async worker.
            let read = shared
                .history
                .samples(probe.name(), &probe.main_signal, since);
            tokio::runtime::Handle::current().block_on(read).ok()
        } else {
            (shared
                .store
                .samples(probe.name(), &probe.main_signal, since))
            .ok()
        };
        stored
            .unwrap_or_default()
            .iter()
            .map(|s| Some(s.v))
            .collect()
    } else {
        probe
            .recent(since)
            .iter()
            .map(|p| (!p.failed()).then_some(f64::from(p.v)))
            .collect()
    };
    let step = recent.len().div_ceil(SPARK_POINTS).max(1);
    let spark: Vec<Option<f64>> = recent
        .chunks(step)
        .map(|c| {
            let ok: Vec<f64> = c.iter().flatten().copied().collect();
            (ok.len() == c.len()).then(|| ok.iter().sum::<f64>() / ok.len() as f64)
        })
        .collect();
    OverviewRow {
        name: probe.name().to_string(),
        kind: probe.kind,
        target: probe.target(),
        labels: probe
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
        status: status.to_string(),
        last_check: last.map(|o| unix_seconds(o.at)),
        duration_seconds: last.map(|o| o.duration.as_secs_f64()),
        reason: last.and_then(|o| o.failure.as_ref()).map(|f| f.to_string()),
        last_failure: snap.last_failure.as_ref().map(|(t, e)| LastFailure {
            at: unix_seconds(*t),
            error: e.to_string(),
        }),
        main_signal: probe.main_signal.to_string(),
        unit: unit_name(signal_unit(probe, &probe.main_signal)),
        value: last
            .and_then(|o| o.signal(&probe.main_signal))
            .filter(|v| v.is_finite()),
        spark,
    }
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    #[test]
    fn filters_parse_and_refuse_with_a_reason() {
        let params = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let f = Filter::parse(
            &params(&[
                ("status", "down,degraded"),
                ("kind", "http"),
                ("label", "team=shop"),
                ("label", "tier=1"),
                ("q", "Checkout"),
                ("sort", "status"),
                ("offset", "200"),
                ("limit", "50"),
            ]),
            100,
        )
        .unwrap();
        assert_eq!(f.statuses, ["down", "degraded"]);
        assert_eq!(f.kind.as_deref(), Some("http"));
        assert_eq!(
            f.labels,
            [("team".into(), "shop".into()), ("tier".into(), "1".into())]
        );
        assert_eq!(f.q.as_deref(), Some("checkout"));
        assert_eq!((f.sort, f.offset, f.limit), (Sort::Status, 200, 50));
        // Empty values are "no filter", as an HTML form sends them.
        let f = Filter::parse(&params(&[("kind", ""), ("label", ""), ("q", "")]), 100).unwrap();
        assert!(f.kind.is_none() && f.labels.is_empty() && f.q.is_none());
        for (key, value, message) in [
            ("status", "sideways", "status"),
            ("kind", "ftp", "kind"),
            ("label", "=x", "key=value"),
            ("sort", "age", "sort"),
            ("offset", "-1", "offset"),
            ("limit", "0", "limit"),
            ("limit", "1001", "limit"),
            ("page", "2", "unknown parameter"),
        ] {
            let (status, Json(body)) = Filter::parse(&params(&[(key, value)]), 100)
                .unwrap_err()
                .into_parts();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let error = body.error.as_str();
            assert!(error.contains(message), "{key}={value}: {error}");
        }
    }
}
