//! `/api/v1`: JSON views of probes for the CLI, the status page and scripts.
//!
//! `GET /probes` answers every probe as an array; with any of `status`, `kind`, `label=k=v`,
//! `q`, `sort`, `offset`, `limit` it answers the matching page in the same shape, with the
//! number of matches in `X-Total-Count`. `GET /overview` takes the same parameters and answers
//! compact rows (status, latency, sparkline) plus counts for the status page's filters.
//! `GET /probes/{name}/history?signal=&since=` answers stored history and the drift fit.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;
use crate::alert::service::unix_now;
use crate::alert::{Alert, Refusal, State as AlertState};
use crate::config::alerting::{self, SilenceSpec};
use crate::metrics::unix_seconds;
use crate::state::ProbeState;
use crate::store::Record;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/probes", get(list_probes))
        .route("/probes/{name}", get(one_probe))
        .route("/probes/{name}/history", get(history))
        .route("/overview", get(overview))
        .merge(alert_routes())
}

async fn list_probes(
    State(shared): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
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
async fn overview(
    State(shared): State<Shared>,
    Query(params): Query<Vec<(String, String)>>,
) -> Result<Json<Value>, ApiError> {
    let filter = Filter::parse(&params, 100)?;
    // Rows of watched probes read their sparkline from the store: keep that off the workers.
    tokio::task::spawn_blocking(move || overview_body(&shared, &filter))
        .await
        .map(Json)
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

fn overview_body(shared: &Shared, filter: &Filter) -> Value {
    let registry = shared.registry();
    let statuses = Statuses::new(shared).all(&registry);
    let mut counts: std::collections::BTreeMap<&str, usize> =
        STATUSES.iter().map(|s| (*s, 0)).collect();
    let mut kinds = std::collections::BTreeSet::new();
    let mut labels: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
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
    let rows: Vec<Value> = page
        .iter()
        .map(|(p, status)| overview_row(shared, p, status, now))
        .collect();
    json!({
        "total": registry.probes.len(),
        "matched": matched,
        "offset": filter.offset,
        "limit": filter.limit,
        "counts": counts,
        "kinds": kinds,
        "labels": labels,
        "probes": rows,
    })
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
    fn all(&self, registry: &crate::state::Registry) -> Vec<&'static str> {
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
        let bad = |m: String| api_error(StatusCode::BAD_REQUEST, m);
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
                            return Err(bad(format!(
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
                        return Err(bad(format!(
                            "kind {value:?} is not one of {}",
                            crate::probe::KIND_KEYS.join(", ")
                        )));
                    }
                    f.kind = Some(value.clone());
                }
                "label" if value.is_empty() => {}
                "label" => match value.split_once('=') {
                    Some((k, v)) if !k.is_empty() => f.labels.push((k.into(), v.into())),
                    _ => return Err(bad(format!("label {value:?} is not written key=value"))),
                },
                "q" => f.q = Some(value.to_lowercase()).filter(|q| !q.is_empty()),
                "sort" => {
                    f.sort = match value.as_str() {
                        "" | "config" => Sort::Config,
                        "name" => Sort::Name,
                        "status" => Sort::Status,
                        _ => {
                            return Err(bad(format!(
                                "sort {value:?} is not config, name or status"
                            )));
                        }
                    }
                }
                "offset" => {
                    f.offset = value
                        .parse()
                        .map_err(|_| bad(format!("offset {value:?} is not a whole number")))?
                }
                "limit" => {
                    f.limit = value
                        .parse()
                        .ok()
                        .filter(|l| (1..=PAGE_MAX).contains(l))
                        .ok_or_else(|| {
                            bad(format!(
                                "limit {value:?} is not a number from 1 to {PAGE_MAX}"
                            ))
                        })?
                }
                _ => {
                    return Err(bad(format!(
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
        registry: &'r crate::state::Registry,
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

fn overview_row(shared: &Shared, probe: &ProbeState, status: &str, now: f64) -> Value {
    let snap = probe.snapshot();
    let last = snap.last.as_deref();
    let since = now - 6.0 * 3600.0;
    let watched = probe
        .config
        .watches
        .iter()
        .any(|w| w.signal == probe.main_signal);
    let recent: Vec<Option<f64>> = if watched {
        shared
            .store
            .samples(probe.name(), &probe.main_signal, since)
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
    let spark: Vec<Value> = recent
        .chunks(step)
        .map(|c| {
            let ok: Vec<f64> = c.iter().flatten().copied().collect();
            if ok.len() < c.len() {
                Value::Null
            } else {
                json!(ok.iter().sum::<f64>() / ok.len() as f64)
            }
        })
        .collect();
    json!({
        "name": probe.name(),
        "kind": probe.kind,
        "target": probe.target(),
        "labels": probe.config.labels.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect::<serde_json::Map<_, _>>(),
        "status": status,
        "last_check": last.map(|o| unix_seconds(o.at)),
        "duration_seconds": last.map(|o| o.duration.as_secs_f64()),
        "reason": last.and_then(|o| o.failure.as_ref()).map(|f| f.to_string()),
        "last_failure": snap.last_failure.as_ref().map(|(t, e)| json!({"at": unix_seconds(*t), "error": e.as_ref()})),
        "main_signal": probe.main_signal,
        "unit": unit_name(signal_unit(probe, &probe.main_signal)),
        "value": last.and_then(|o| o.signal(&probe.main_signal)).filter(|v| v.is_finite()),
        "spark": spark,
    })
}

fn signal_unit(probe: &ProbeState, signal: &str) -> Option<crate::detect::Unit> {
    if signal == "success" {
        return Some(crate::detect::Unit::Ratio);
    }
    probe.config.probe.info().signal(signal).map(|s| s.unit)
}

fn unit_name(unit: Option<crate::detect::Unit>) -> &'static str {
    use crate::detect::Unit;
    match unit {
        Some(Unit::Bytes) => "bytes",
        Some(Unit::Seconds) => "seconds",
        Some(Unit::Ratio) => "ratio",
        _ => "count",
    }
}

/// History longer than this is refused: it is what the store keeps and what a chart can show.
const HISTORY_WINDOW_MAX: f64 = 7.0 * 86_400.0;
/// A chart has at most this many points; longer series are averaged into buckets.
const HISTORY_POINTS: usize = 720;

/// `since` as unix seconds (`1700000000`) or a duration back from now (`6h`); default 6h.
fn parse_since(text: Option<&str>, now: f64) -> Result<f64, ApiError> {
    let bad = |m: String| api_error(StatusCode::BAD_REQUEST, m);
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(now - 6.0 * 3600.0);
    };
    let since = match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => t,
        Ok(_) => return Err(bad(format!("since {text:?} is not a time"))),
        Err(_) => {
            let back = crate::basics::units::parse_duration(text)
                .map_err(|e| bad(format!("since: {e}; or give unix seconds")))?;
            now - back.as_secs_f64()
        }
    };
    if since > now + 60.0 {
        return Err(bad(format!("since {text:?} is in the future")));
    }
    if now - since > HISTORY_WINDOW_MAX + 60.0 {
        return Err(bad(format!(
            "since {text:?} asks for more than 7d of history, which is all that is kept"
        )));
    }
    Ok(since)
}

async fn history(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    use crate::detect::verdict::format_duration;
    let registry = shared.registry();
    let probe = registry
        .get(&name)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, format!("no probe named {name:?}")))?
        .clone();
    if let Some(key) = query
        .keys()
        .find(|k| !["signal", "since"].contains(&k.as_str()))
    {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("unknown parameter {key:?}: use signal and since"),
        ));
    }
    let now = unix_now();
    let since = parse_since(query.get("since").map(String::as_str), now)?;
    let signal = query
        .get("signal")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| probe.main_signal.to_string());
    let watch = probe.config.watches.iter().find(|w| w.signal == signal);
    let (source, points): (&str, Vec<(f64, Option<f64>)>) = if watch.is_some() {
        let store = shared.store.clone();
        let (p, s) = (name.clone(), signal.clone());
        let samples = tokio::task::spawn_blocking(move || store.samples(&p, &s, since))
            .await
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
        let raw: Vec<(f64, f64)> = samples.iter().map(|s| (s.t, s.v)).collect();
        ("store", downsample(&raw, since, now))
    } else if signal == probe.main_signal {
        let recent = probe.recent(since);
        (
            "recent",
            recent
                .iter()
                .map(|p| (f64::from(p.t), (!p.failed()).then_some(f64::from(p.v))))
                .collect(),
        )
    } else {
        let known: Vec<&str> = crate::config::drift::signals(probe.kind)
            .iter()
            .map(|(s, _)| *s)
            .collect();
        let message = if known.contains(&signal.as_str()) {
            let mut kept: Vec<&str> = probe
                .config
                .watches
                .iter()
                .map(|w| w.signal.as_str())
                .collect();
            kept.push(&probe.main_signal);
            format!(
                "probe {name:?} keeps no history of {signal:?} (add it under drift: to keep it); it has: {}",
                kept.join(", ")
            )
        } else {
            format!(
                "{} probes have no signal {signal:?}; they have: {}",
                probe.kind,
                known.join(", ")
            )
        };
        return Err(api_error(StatusCode::BAD_REQUEST, message));
    };
    let unit = signal_unit(&probe, &signal);
    let fit = watch.and_then(|w| {
        let spec = w.spec.drift.as_ref()?;
        let limit = match &w.limit_from {
            Some(from) => probe
                .snapshot()
                .last
                .as_ref()
                .and_then(|o| o.signal(from))?,
            None => spec.limit,
        };
        let drift = probe.drift();
        let state = drift.iter().find(|(s, _)| *s == signal).map(|(_, d)| d);
        let eta = state.and_then(|d| d.eta_seconds);
        let u = unit.unwrap_or_default();
        Some(json!({
            "limit": limit,
            "limit_text": u.format(limit),
            "horizon_seconds": spec.horizon,
            "level": state.and_then(|d| d.level),
            "slope": state.and_then(|d| d.slope),
            "at": state.and_then(|d| d.last_t),
            "eta_seconds": eta,
            "firing": state.is_some_and(|d| d.trend_firing),
            "summary": match eta {
                Some(eta) => format!("reaches {} in ~{}", u.format(limit), format_duration(eta)),
                None => format!("no trend toward {}", u.format(limit)),
            },
        }))
    });
    Ok(Json(json!({
        "probe": name,
        "signal": signal,
        "unit": unit_name(unit),
        "source": source,
        "since": since,
        "now": now,
        "points": points.iter().map(|(t, v)| json!([t, v])).collect::<Vec<_>>(),
        "fit": fit,
    })))
}

/// Averages a long series into at most [`HISTORY_POINTS`] buckets over `[since, now]`.
fn downsample(raw: &[(f64, f64)], since: f64, now: f64) -> Vec<(f64, Option<f64>)> {
    if raw.len() <= HISTORY_POINTS {
        return raw.iter().map(|(t, v)| (*t, Some(*v))).collect();
    }
    let width = ((now - since) / HISTORY_POINTS as f64).max(1e-9);
    let mut out: Vec<(f64, Option<f64>)> = Vec::with_capacity(HISTORY_POINTS);
    let (mut bucket, mut sum_t, mut sum_v, mut n) = (None::<i64>, 0.0, 0.0, 0.0);
    for (t, v) in raw {
        let b = ((t - since) / width).floor() as i64;
        if bucket.is_some_and(|x| x != b) && n > 0.0 {
            out.push((sum_t / n, Some(sum_v / n)));
            (sum_t, sum_v, n) = (0.0, 0.0, 0.0);
        }
        bucket = Some(b);
        sum_t += t;
        sum_v += v;
        n += 1.0;
    }
    if n > 0.0 {
        out.push((sum_t / n, Some(sum_v / n)));
    }
    out
}

async fn one_probe(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let registry = shared.registry();
    match registry.get(&name) {
        Some(probe) => {
            let mut v = probe_json(probe);
            v["status"] = json!(Statuses::new(&shared).of(probe));
            Ok(Json(v))
        }
        None => Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": format!("no probe named {name:?}")})),
        )),
    }
}

/// One probe as JSON: config, last outcome, phases, signals, reason, last success.
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
        "last": last,
        "last_success": snap.last_success.map(unix_seconds),
        "runs": snap.runs,
        "skipped": snap.skipped,
        "failures": snap.failures,
        "drift": probe.drift().iter().map(|(signal, d)| json!({
            "signal": signal,
            "slope": d.slope,
            "eta_seconds": d.eta_seconds,
            "level": d.level,
            "trend_firing": d.trend_firing,
            "change_firing": d.change_firing,
            "burn_page_firing": d.burn_page_firing,
            "burn_ticket_firing": d.burn_ticket_firing,
            "burn": d.burn.iter().map(|w| json!({"window_seconds": w.window, "total": w.total, "bad": w.bad, "burn": w.burn})).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// Routes that read and change alerts and silences.
pub fn alert_routes() -> Router<Shared> {
    use axum::routing::{delete, post};
    Router::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}", get(one_alert))
        .route("/alerts/{id}/ack", post(ack_alert))
        .route("/alerts/{id}/resolve", post(resolve_alert))
        .route("/silences", get(list_silences).post(add_silence))
        .route("/silences/{id}", delete(remove_silence))
}

type ApiError = (StatusCode, Json<Value>);

fn api_error(status: StatusCode, message: impl Into<String>) -> ApiError {
    (status, Json(json!({"error": message.into()})))
}

/// Write endpoints need `Authorization: Bearer <server.api_token>`, compared in constant time.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = shared.api_token() else {
        return Err(api_error(
            StatusCode::FORBIDDEN,
            "writes are disabled: set server.api_token",
        ));
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(api_error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ))
    }
}

/// Compares digests of both sides, so neither the contents nor the length of the token leak
/// through timing.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use ring::digest::{SHA256, digest};
    let (a, b) = (digest(&SHA256, a), digest(&SHA256, b));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse().map_err(|_| {
        api_error(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not an alert id"),
        )
    })
}

async fn list_alerts(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = query.get("state").map(String::as_str);
    if let Some(s) = state
        && !["firing", "acknowledged", "resolved", "active"].contains(&s)
    {
        return Err(api_error(
            StatusCode::BAD_REQUEST,
            format!("state {s:?} is not firing, acknowledged, resolved or active"),
        ));
    }
    let alerts: Vec<Value> = shared
        .alerts
        .alerts()
        .iter()
        .filter(|a| match state {
            None => true,
            Some("active") => a.state != AlertState::Resolved,
            Some(s) => a.state.as_str() == s,
        })
        .map(|a| alert_json(a, None))
        .collect();
    Ok(Json(Value::Array(alerts)))
}

async fn one_alert(
    State(shared): State<Shared>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_id(&id)?;
    let alert = shared
        .alerts
        .alert(id)
        .ok_or_else(|| api_error(StatusCode::NOT_FOUND, format!("no alert {id}")))?;
    Ok(Json(alert_json(&alert, Some(&shared.alerts.records(id)))))
}

#[derive(serde::Deserialize, Default)]
struct Actor {
    by: Option<String>,
}

fn actor(body: &axum::body::Bytes) -> String {
    serde_json::from_slice::<Actor>(body)
        .ok()
        .and_then(|a| a.by)
        .filter(|b| !b.trim().is_empty())
        .map(|b| b.chars().take(100).collect())
        .unwrap_or_else(|| "api".into())
}

async fn ack_alert(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers)?;
    let id = parse_id(&id)?;
    let alert = shared
        .alerts
        .ack(id, &actor(&body), unix_now())
        .map_err(refusal)?;
    Ok(Json(alert_json(&alert, None)))
}

async fn resolve_alert(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers)?;
    let id = parse_id(&id)?;
    let alert = shared
        .alerts
        .resolve(id, &actor(&body), unix_now())
        .map_err(refusal)?;
    Ok(Json(alert_json(&alert, None)))
}

fn refusal(r: Refusal) -> ApiError {
    let status = match r {
        Refusal::NotFound(_) => StatusCode::NOT_FOUND,
        Refusal::AlreadyAcknowledged { .. } | Refusal::Resolved(_) => StatusCode::CONFLICT,
    };
    api_error(status, r.to_string())
}

async fn list_silences(State(shared): State<Shared>) -> Json<Value> {
    let now = unix_now();
    Json(Value::Array(
        shared
            .alerts
            .silences()
            .iter()
            .map(|(s, from_file)| {
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                v["active"] = json!(s.active(now));
                v["source"] = json!(if *from_file { "file" } else { "api" });
                v
            })
            .collect(),
    ))
}

async fn add_silence(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: String,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&shared, &headers)?;
    // JSON is YAML: the probe-file reader gives positioned, complete errors for free.
    let node = crate::basics::yaml::parse(&body)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let unknown = std::cell::RefCell::new(Vec::new());
    let spec: Result<SilenceSpec, _> = crate::basics::yaml::from_node(&node, &unknown);
    let mut messages: Vec<String> = unknown
        .into_inner()
        .iter()
        .map(ToString::to_string)
        .collect();
    let spec = match spec {
        Ok(spec) => Some(spec),
        Err(e) => {
            messages.push(e.to_string());
            None
        }
    };
    let Some(spec) = spec.filter(|_| messages.is_empty()) else {
        return Err(api_error(StatusCode::BAD_REQUEST, messages.join("; ")));
    };
    let mut problems = Vec::new();
    let mut silence = alerting::silence(&spec, &mut problems);
    if !problems.is_empty() {
        let text: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
        return Err(api_error(StatusCode::BAD_REQUEST, text.join("; ")));
    }
    if spec.id.is_none() {
        silence.id = format!("api-{}", (unix_now() * 1000.0) as u64);
    }
    shared
        .alerts
        .add_silence(silence.clone(), unix_now())
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::to_value(&silence).unwrap_or(Value::Null)),
    ))
}

async fn remove_silence(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers)?;
    match shared.alerts.remove_silence(&id, unix_now()) {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(api_error(
            StatusCode::NOT_FOUND,
            format!(
                "no API silence {id:?} (silences from probe files are removed by editing the files)"
            ),
        )),
        Err(e) => Err(api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// One alert as JSON, with its delivery records when given.
pub fn alert_json(a: &Alert, records: Option<&[Record]>) -> Value {
    let mut v = json!({
        "id": a.id,
        "dedup_key": a.dedup_key,
        "probe": a.probe,
        "origin": a.origin,
        "reason": a.reason,
        "severity": a.severity.as_str(),
        "state": a.state.as_str(),
        "silenced": a.silenced,
        "flapping": a.flapping,
        "summary": a.summary,
        "message": a.message,
        "target": a.target,
        "labels": a.labels,
        "since": a.started_at,
        "firing_at": a.firing_at,
        "acked_at": a.acked_at,
        "acked_by": a.acked_by,
        "resolved_at": a.resolved_at,
        "resolved_by": a.resolved_by,
        "failures": a.failures,
        "eta_seconds": a.eta_seconds,
        "runbook": a.runbook,
        "policy": a.policy.as_ref().map(|p| p.name.clone()),
        "escalation_step": a.next.map(|n| n.step),
        "next_escalation": a.next.map(|n| json!({"step": n.step + 1, "round": n.round, "due": n.due})),
        "paged": a.paged,
        "timeline": a.timeline,
    });
    if let Some(records) = records {
        v["notifications"] = Value::Array(
            records
                .iter()
                .map(|r| json!({"notifier": r.notifier, "event": r.event, "state": r.state, "attempts": r.attempts, "error": r.error, "at": r.updated_at, "key": r.key}))
                .collect(),
        );
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: f64 = 1_800_000_000.0;

    #[test]
    fn since_is_unix_seconds_or_a_duration_within_a_week() {
        let ok = |text: Option<&str>| parse_since(text, NOW).unwrap();
        assert_eq!(ok(None), NOW - 6.0 * 3600.0);
        assert_eq!(ok(Some("")), NOW - 6.0 * 3600.0);
        assert_eq!(ok(Some("1h")), NOW - 3600.0);
        assert_eq!(ok(Some("7d")), NOW - 7.0 * 86_400.0);
        assert_eq!(ok(Some("1799990000")), 1_799_990_000.0);
        for (text, message) in [
            ("8d", "more than 7d"),
            ("1", "more than 7d"),
            ("1900000000", "future"),
            ("-3", "not a time"),
            ("NaN", "not a time"),
            ("1e999", "not a time"),
            ("yesterday", "invalid duration"),
        ] {
            let (status, Json(body)) = parse_since(Some(text), NOW).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

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
            let (status, Json(body)) = Filter::parse(&params(&[(key, value)]), 100).unwrap_err();
            assert_eq!(status, StatusCode::BAD_REQUEST);
            let error = body["error"].as_str().unwrap();
            assert!(error.contains(message), "{key}={value}: {error}");
        }
    }

    #[test]
    fn long_series_are_averaged_into_buckets() {
        let short: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 1.0)).collect();
        assert_eq!(downsample(&short, 0.0, 10.0).len(), 10);
        let week = 7.0 * 86_400.0;
        let long: Vec<(f64, f64)> = (0..40_320)
            .map(|i| (f64::from(i) * 15.0, f64::from(i % 2)))
            .collect();
        let out = downsample(&long, 0.0, week);
        assert!(out.len() <= HISTORY_POINTS && out.len() >= HISTORY_POINTS - 2);
        assert!(out.iter().all(|(_, v)| (v.unwrap() - 0.5).abs() < 0.01));
        assert!(out.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
