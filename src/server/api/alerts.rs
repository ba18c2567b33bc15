//! `/alerts` and `/silences`: the alerts with their delivery records, acknowledging and
//! resolving them, and the silences added through the API.
//!
//! Every write here (ack, resolve, adding or removing a silence) first passes
//! [`authorize`]; the alert service decides whether the change is allowed and records it. This
//! file turns requests into calls on that service and its answers into JSON; it holds no alert
//! state of its own.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use serde_json::{Value, json};

use super::authorize;
use super::errors::ApiError;
use crate::alert::service::unix_now;
use crate::alert::{Alert, State as AlertState};
use crate::cluster::daemon::Action;
use crate::config::alerting::{self, SilenceSpec};
use crate::server::Shared;
use crate::store::Record;

/// Routes that read and change alerts and silences.
pub fn alert_routes() -> Router<Shared> {
    Router::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/{id}", get(one_alert))
        .route("/alerts/{id}/ack", post(ack_alert))
        .route("/alerts/{id}/resolve", post(resolve_alert))
        .route("/silences", get(list_silences).post(add_silence))
        .route("/silences/{id}", delete(remove_silence))
}

/// One alert as JSON, with its delivery records when given.
///
/// A `Value` rather than a struct: `notifications` is added only when records are given.
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
        "people_paged": a.recipients,
        "held_by": a.held_by,
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

async fn list_alerts(
    State(shared): State<Shared>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let state = query.get("state").map(String::as_str);
    if let Some(s) = state
        && !["firing", "acknowledged", "resolved", "active"].contains(&s)
    {
        return Err(ApiError::BadRequest(format!(
            "state {s:?} is not firing, acknowledged, resolved or active"
        )));
    }
    let held = match &shared.cluster {
        Some(cluster) => crate::cluster::daemon::alerts(cluster, &shared.alerts)
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        None => shared.alerts.alerts(),
    };
    let alerts: Vec<Value> = held
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
    if let Some(cluster) = &shared.cluster {
        let internal = |e: crate::cluster::pg::PgError| ApiError::Internal(e.to_string());
        let alert = crate::cluster::daemon::alerts(cluster, &shared.alerts)
            .await
            .map_err(internal)?
            .into_iter()
            .find(|a| a.id == id)
            .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
        let records = cluster.records(id as i64).await.map_err(internal)?;
        return Ok(Json(alert_json(&alert, Some(&records))));
    }
    let alert = shared
        .alerts
        .alert(id)
        .ok_or_else(|| ApiError::NotFound(format!("no alert {id}")))?;
    Ok(Json(alert_json(&alert, Some(&shared.alerts.records(id)))))
}

async fn ack_alert(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    authorize(&shared, &headers)?;
    let id = parse_id(&id)?;
    let alert = act(&shared, id, &actor(&body), Action::Ack).await?;
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
    let alert = act(&shared, id, &actor(&body), Action::Resolve).await?;
    Ok(Json(alert_json(&alert, None)))
}

/// An ack or a resolve: by shared id through the database when replicas share one, else by
/// this daemon's engine.
async fn act(shared: &Shared, id: u64, by: &str, action: Action) -> Result<Alert, ApiError> {
    if let Some(cluster) = &shared.cluster {
        return Ok(crate::cluster::daemon::act(
            cluster,
            &shared.alerts,
            id,
            by,
            action,
            unix_now(),
        )
        .await?);
    }
    let done = match action {
        Action::Ack => shared.alerts.ack(id, by, unix_now()),
        Action::Resolve => shared.alerts.resolve(id, by, unix_now()),
    };
    Ok(done?)
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
    let node =
        crate::basics::yaml::parse(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
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
        return Err(ApiError::BadRequest(messages.join("; ")));
    };
    let mut problems = Vec::new();
    let mut silence = alerting::silence(&spec, &mut problems);
    if !problems.is_empty() {
        let text: Vec<String> = problems.into_iter().map(|(_, m)| m).collect();
        return Err(ApiError::BadRequest(text.join("; ")));
    }
    if spec.id.is_none() {
        silence.id = format!("api-{}", (unix_now() * 1000.0) as u64);
    }
    shared
        .alerts
        .add_silence(silence.clone(), unix_now())
        .await?;
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
    match shared.alerts.remove_silence(&id, unix_now()).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!(
            "no API silence {id:?} (silences from probe files are removed by editing the files)"
        ))),
        Err(e) => Err(e.into()),
    }
}

fn parse_id(id: &str) -> Result<u64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not an alert id")))
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
