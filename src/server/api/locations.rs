//! `/probes/{name}/locations`: what each location of a probe with `locations:` last said,
//! read from the shared database: `passing`, `failing`, or `no_data` (nothing for two
//! intervals), and, for a probe with a `quorum:`, how many failing locations make one.

use axum::Json;
use axum::extract::{Path, State};
use serde_json::{Value, json};

use super::errors::ApiError;
use crate::cluster::quorum::{LocationResult, QuorumState};
use crate::server::Shared;

pub(super) async fn locations(
    State(shared): State<Shared>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let registry = shared.registry();
    let state = registry
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no probe {name:?}")))?;
    let Some(placement) = &state.config.placement else {
        return Err(ApiError::NotFound(format!(
            "probe {name:?} lists no locations"
        )));
    };
    let cluster = shared
        .cluster
        .as_ref()
        .ok_or_else(|| ApiError::NotFound("this daemon shares no storage: postgres:".into()))?;
    let interval = state.config.interval;
    let latest = cluster
        .latest_results(&name, 2.0 * interval.as_secs_f64() + 1.0)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let now = crate::alert::service::unix_now();
    // The same judgement as the quorum's, so the page and the pager agree.
    let quorum = placement.quorum.unwrap_or(crate::cluster::quorum::Quorum {
        min_failing: crate::cluster::quorum::MinFailing::Count(1),
        hold: std::time::Duration::ZERO,
    });
    let mut judge = QuorumState::new(quorum, placement.locations.clone(), interval);
    for (location, ago, success) in &latest {
        judge.record(location, !success, now - ago);
    }
    let results: Vec<Value> = judge
        .results(now)
        .into_iter()
        .map(|(location, result)| {
            let ago = latest
                .iter()
                .find(|(l, _, _)| *l == location)
                .map(|(_, ago, _)| *ago)
                .filter(|_| result != LocationResult::NoData);
            json!({"location": location, "result": result, "seconds_ago": ago})
        })
        .collect();
    Ok(Json(json!({
        "probe": name,
        "locations": results,
        "min_failing": placement.quorum.map(|q| q.needed(placement.locations.len())),
        "for_seconds": placement.quorum.map(|q| q.hold.as_secs_f64()),
    })))
}
