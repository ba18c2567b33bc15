//! `/api/v1`: JSON views of probes for the CLI, the status page and scripts.

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::Shared;
use crate::metrics::unix_seconds;
use crate::state::ProbeState;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/probes", get(list_probes))
        .route("/probes/{name}", get(one_probe))
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
    })
}
