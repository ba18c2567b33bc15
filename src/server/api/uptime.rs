//! `GET /probes/{name}/uptime`: a probe's uptime and mean run time over the last 24 hours, 7,
//! 30 and 90 days, and per UTC day for a bar chart, read from the store's one-minute buckets.
//!
//! This file reads the registry (to know the probe) and the store; it writes nothing.

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;

use super::errors::ApiError;
use crate::alert::service::unix_now;
use crate::server::Shared;
use crate::store::{Bucket, RETENTION_MINUTES};

/// The body of an uptime answer.
#[derive(Debug, Serialize)]
pub struct UptimeBody {
    pub probe: String,
    /// The buckets' width.
    pub bucket_seconds: u32,
    /// How far back buckets are kept.
    pub retention_days: i64,
    pub now: f64,
    /// The last 24 h, 7 d, 30 d and 90 d, ending now.
    pub windows: Vec<Window>,
    /// Each UTC day with runs in the retention, oldest first.
    pub days: Vec<Day>,
}

/// Runs over one window.
#[derive(Debug, Serialize)]
pub struct Window {
    /// `24h`, `7d`, `30d` or `90d`.
    pub window: &'static str,
    pub seconds: i64,
    pub runs: u64,
    pub ok: u64,
    /// The share of runs that succeeded, in percent; `null` with no run in the window.
    pub uptime_percent: Option<f64>,
    pub mean_duration_seconds: Option<f64>,
}

/// Runs on one UTC day.
#[derive(Debug, Serialize)]
pub struct Day {
    /// The day's start, unix seconds.
    pub start: i64,
    pub runs: u64,
    pub ok: u64,
    pub uptime_percent: f64,
    pub mean_duration_seconds: f64,
}

pub(super) async fn uptime(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<UptimeBody>, ApiError> {
    if shared.registry().get(&name).is_none() {
        return Err(ApiError::NotFound(format!("no probe named {name:?}")));
    }
    let now = unix_now();
    let minute = (now / 60.0).floor() as i64;
    let store = shared.store.clone();
    let probe = name.clone();
    let (windows, days) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((
            store.uptime(&probe, minute)?,
            store.uptime_days(&probe, minute)?,
        ))
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    Ok(Json(UptimeBody {
        probe: name,
        bucket_seconds: 60,
        retention_days: RETENTION_MINUTES / 1440,
        now,
        windows: windows
            .iter()
            .map(|w| Window {
                window: w.window,
                seconds: w.minutes * 60,
                runs: w.runs,
                ok: w.ok,
                uptime_percent: w.ratio().map(|r| r * 100.0),
                mean_duration_seconds: w.mean_seconds(),
            })
            .collect(),
        days: days.iter().map(|&(start, b)| day(start, b)).collect(),
    }))
}

fn day(start_minute: i64, b: Bucket) -> Day {
    let runs = b.runs.max(1) as f64;
    Day {
        start: start_minute * 60,
        runs: b.runs,
        ok: b.ok,
        uptime_percent: b.ok as f64 * 100.0 / runs,
        mean_duration_seconds: b.duration_us as f64 / 1e6 / runs,
    }
}
