//! `/api/v1`: JSON views of probes for the CLI, the status page and scripts.

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
        .merge(alert_routes())
}

async fn list_probes(State(shared): State<Shared>) -> Json<Value> {
    let registry = shared.registry();
    Json(Value::Array(
        registry.probes.iter().map(|p| probe_json(p)).collect(),
    ))
}

async fn one_probe(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
    let registry = shared.registry();
    match registry.get(&name) {
        Some(probe) => Ok(Json(probe_json(probe))),
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
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
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
        "target": probe.target,
        "labels": labels,
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
    let Some(token) = &shared.api_token else {
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
    let node = crate::config::yaml::parse(&body)
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let unknown = std::cell::RefCell::new(Vec::new());
    let spec: Result<SilenceSpec, _> = crate::config::yaml::from_node(&node, &unknown);
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
