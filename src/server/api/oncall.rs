//! On-call routes: who is on call now (`GET /oncall`), a schedule's final shifts
//! (`GET /schedules/{name}?at=&days=`), overrides (`GET`/`POST /overrides`, `DELETE
//! /overrides/{id}`, the writes with the bearer token, kept in the store) and incidents opened by hand (`POST /incidents`, bearer
//! token), routed like any other alert.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, alert_json, authorize};
use crate::alert::service::unix_now;
use crate::oncall::OverrideError;
use crate::server::Shared;
use crate::store::oncall::OverrideRow;

pub fn oncall_routes() -> Router<Shared> {
    Router::new()
        .route("/oncall", get(now))
        .route("/schedules/{name}", get(shifts))
        .route("/overrides", get(list_overrides).post(add_override))
        .route("/overrides/{id}", delete(remove_override))
        .route("/incidents", post(open_incident))
}

async fn now(State(shared): State<Shared>) -> Json<Value> {
    let oncall = shared.alerts.directory().oncall_now(jiff::Timestamp::now());
    Json(json!(oncall))
}

#[derive(Deserialize)]
struct ShiftsQuery {
    at: Option<String>,
    days: Option<u32>,
}

async fn shifts(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<ShiftsQuery>,
) -> Result<Json<Value>, ApiError> {
    let directory = shared.alerts.directory();
    let schedule = directory
        .schedules
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no schedule named {name:?}")))?;
    let from = match &query.at {
        Some(text) => rfc3339(text, "at")?,
        None => jiff::Timestamp::now(),
    };
    let days = query.days.unwrap_or(7).clamp(1, 366);
    let to = from
        .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .map_err(ApiError::internal)?;
    let shifts: Vec<Value> = schedule
        .shifts(from, to)
        .iter()
        .map(|s| json!({"user": s.user, "start": s.start.to_string(), "end": s.end.to_string()}))
        .collect();
    Ok(Json(
        json!({"schedule": name, "oncall": schedule.oncall(from), "shifts": shifts}),
    ))
}

async fn list_overrides(State(shared): State<Shared>) -> Result<Json<Value>, ApiError> {
    let rows = shared.alerts.overrides().await?;
    Ok(Json(json!(rows)))
}

/// The body of `POST /api/v1/overrides`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OverrideBody {
    schedule: String,
    user: String,
    /// RFC 3339, inclusive.
    start: String,
    /// RFC 3339, exclusive.
    end: String,
    by: Option<String>,
}

async fn add_override(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&shared, &headers)?;
    let body: OverrideBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let seconds = |t: jiff::Timestamp| t.as_millisecond() as f64 / 1000.0;
    let row = OverrideRow {
        id: 0,
        schedule: body.schedule,
        user: body.user,
        start: seconds(rfc3339(&body.start, "start")?),
        end: seconds(rfc3339(&body.end, "end")?),
        created_by: body.by.unwrap_or_else(|| "api".into()),
        created_at: unix_now(),
    };
    match shared.alerts.add_override(row).await {
        Ok(row) => Ok((StatusCode::CREATED, Json(json!(row)))),
        Err(OverrideError::Invalid(why)) => Err(ApiError::BadRequest(why)),
        Err(OverrideError::Store(e)) => Err(ApiError::internal(e)),
        Err(OverrideError::Backend(e)) => Err(e.into()),
    }
}

async fn remove_override(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<StatusCode, ApiError> {
    authorize(&shared, &headers)?;
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("{id:?} is not an override id")))?;
    match shared.alerts.remove_override(id).await {
        Ok(true) => Ok(StatusCode::NO_CONTENT),
        Ok(false) => Err(ApiError::NotFound(format!(
            "no stored override {id} (overrides in probe files are removed by editing the files)"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// The body of `POST /api/v1/incidents`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IncidentBody {
    service: String,
    message: String,
    /// `page` (default) or `ticket`.
    severity: Option<String>,
    by: Option<String>,
}

async fn open_incident(
    State(shared): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    authorize(&shared, &headers)?;
    let body: IncidentBody =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let severity = match body.severity.as_deref() {
        None | Some("page") => crate::alert::Severity::Page,
        Some("ticket") => crate::alert::Severity::Ticket,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "severity {other:?} is not page or ticket"
            )));
        }
    };
    if body.service.trim().is_empty() || body.message.trim().is_empty() {
        return Err(ApiError::BadRequest(
            "an incident needs a service and a message".into(),
        ));
    }
    let by = body.by.unwrap_or_else(|| "api".into());
    let alert = shared
        .alerts
        .page(&body.service, &body.message, severity, &by, unix_now());
    Ok((StatusCode::CREATED, Json(alert_json(&alert, None))))
}

fn rfc3339(text: &str, field: &str) -> Result<jiff::Timestamp, ApiError> {
    text.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "{field}: {text:?} is not an RFC 3339 time such as 2027-04-12T09:00:00+02:00"
        ))
    })
}
