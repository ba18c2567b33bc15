//! `/api/v1`: JSON views of probes and alerts for the CLI, the status page and scripts, and
//! the few writes (ack, resolve, silences).
//!
//! This file assembles the router and holds what every part shares: the bearer-token check for
//! writes and how a signal's unit is named. The routes live beside it, each reading only what it
//! answers: `probes.rs` (the probe list, one probe, the overview), `history.rs` (a signal's
//! history and drift fit), `uptime.rs` (a probe's uptime windows and days) and `alerts.rs`
//! (alerts, ack, resolve, silences); `errors.rs` is the one error type they all answer with.
//! Nothing here spawns a task or keeps state between requests.

mod alerts;
mod errors;
mod history;
mod probes;
mod uptime;

use axum::Router;
use axum::http::HeaderMap;
use axum::routing::get;

pub use self::alerts::{alert_json, alert_routes};
pub use self::errors::{ApiError, ErrorBody};
pub use self::history::{Fit, History};
pub use self::probes::{LastFailure, Overview, OverviewRow, probe_json};
use super::Shared;
use crate::state::ProbeState;

pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/probes", get(probes::list_probes))
        .route("/probes/{name}", get(probes::one_probe))
        .route("/probes/{name}/history", get(history::history))
        .route("/probes/{name}/uptime", get(uptime::uptime))
        .route("/overview", get(probes::overview))
        .merge(alert_routes())
}

/// Write endpoints need `Authorization: Bearer <server.api_token>`, compared in constant time.
pub(super) fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = shared.api_token() else {
        return Err(ApiError::WritesDisabled);
    };
    let given = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

/// Compares digests of both sides, so neither the contents nor the length of the token leak
/// through timing.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use ring::digest::{SHA256, digest};
    let (a, b) = (digest(&SHA256, a), digest(&SHA256, b));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

pub(super) fn signal_unit(probe: &ProbeState, signal: &str) -> Option<crate::detect::Unit> {
    if signal == "success" {
        return Some(crate::detect::Unit::Ratio);
    }
    // A series of a signal (`value{partner="b"}`) has the signal's unit.
    let signal = signal.split_once('{').map_or(signal, |(name, _)| name);
    probe.config.probe.info().signal(signal).map(|s| s.unit)
}

pub(super) fn unit_name(unit: Option<crate::detect::Unit>) -> &'static str {
    use crate::detect::Unit;
    match unit {
        Some(Unit::Bytes) => "bytes",
        Some(Unit::Seconds) => "seconds",
        Some(Unit::Ratio) => "ratio",
        _ => "count",
    }
}
