//! `GET /probes/{name}/history?signal=&since=`: a signal's stored (or recent) history, bucketed
//! for a chart, and the drift fit when the signal is watched.
//!
//! This file reads the store and the probe's drift state; it writes nothing, and it knows no
//! probe kind: the signals a kind has come from its table.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use serde::Serialize;

use super::errors::ApiError;
use super::{signal_unit, unit_name};
use crate::alert::service::unix_now;
use crate::server::Shared;

/// The body of a history answer. Fields are in alphabetical order, the order the `json!`
/// object it replaced wrote them in, so the bytes on the wire did not change.
#[derive(Debug, Serialize)]
pub struct History {
    pub fit: Option<Fit>,
    pub now: f64,
    /// `[t, value]` pairs; `value` is `null` where a run failed.
    pub points: Vec<(f64, Option<f64>)>,
    pub probe: String,
    pub signal: String,
    pub since: f64,
    /// `store` (a watched signal) or `recent` (the main signal's in-memory runs).
    pub source: &'static str,
    pub unit: &'static str,
}

/// Where a watched signal's trend is heading (fields alphabetical, as [`History`]'s).
#[derive(Debug, Serialize)]
pub struct Fit {
    pub at: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub firing: bool,
    pub horizon_seconds: f64,
    pub level: Option<f64>,
    pub limit: f64,
    pub limit_text: String,
    pub slope: Option<f64>,
    pub summary: String,
}

pub(super) async fn history(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Json<History>, ApiError> {
    use crate::detect::verdict::format_duration;
    let registry = shared.registry();
    let probe = registry
        .get(&name)
        .ok_or_else(|| ApiError::NotFound(format!("no probe named {name:?}")))?
        .clone();
    if let Some(key) = query
        .keys()
        .find(|k| !["signal", "since"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {key:?}: use signal and since"
        )));
    }
    let now = unix_now();
    let since = parse_since(query.get("since").map(String::as_str), now)?;
    let signal = query
        .get("signal")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| probe.main_signal.to_string());
    let watch = probe.config.watches.iter().find(|w| w.covers(&signal));
    let (source, points): (&str, Vec<(f64, Option<f64>)>) = if watch.is_some() {
        let samples = if shared.history.is_shared() {
            // Whichever replica ran the probe, its samples are in the shared database.
            (shared.history.samples(&name, &signal, since).await)?
        } else {
            let store = shared.store.clone();
            let (p, s) = (name.clone(), signal.clone());
            tokio::task::spawn_blocking(move || store.samples(&p, &s, since))
                .await
                .map_err(ApiError::internal)?
                .map_err(ApiError::internal)?
        };
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
        return Err(ApiError::BadRequest(message));
    };
    let unit = signal_unit(&probe, &signal);
    let fit = watch.and_then(|w| {
        let spec = w.spec.drift()?;
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
        Some(Fit {
            limit,
            limit_text: u.format(limit),
            horizon_seconds: spec.horizon,
            level: state.and_then(|d| d.level),
            slope: state.and_then(|d| d.slope),
            at: state.and_then(|d| d.last_t),
            eta_seconds: eta,
            firing: state.is_some_and(|d| d.is_firing("trend")),
            summary: match eta {
                Some(eta) => format!("reaches {} in ~{}", u.format(limit), format_duration(eta)),
                None => format!("no trend toward {}", u.format(limit)),
            },
        })
    });
    Ok(Json(History {
        probe: name,
        signal,
        unit: unit_name(unit),
        source,
        since,
        now,
        points,
        fit,
    }))
}

/// History longer than this is refused: it is what the store keeps and what a chart can show.
const HISTORY_WINDOW_MAX: f64 = 7.0 * 86_400.0;
/// A chart has at most this many points; longer series are averaged into buckets.
const HISTORY_POINTS: usize = 720;

/// `since` as unix seconds (`1700000000`) or a duration back from now (`6h`); default 6h.
fn parse_since(text: Option<&str>, now: f64) -> Result<f64, ApiError> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(now - 6.0 * 3600.0);
    };
    let since = match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => t,
        Ok(_) => {
            return Err(ApiError::BadRequest(format!(
                "since {text:?} is not a time"
            )));
        }
        Err(_) => {
            let back = crate::basics::units::parse_duration(text)
                .map_err(|e| ApiError::BadRequest(format!("since: {e}; or give unix seconds")))?;
            now - back.as_secs_f64()
        }
    };
    if since > now + 60.0 {
        return Err(ApiError::BadRequest(format!(
            "since {text:?} is in the future"
        )));
    }
    if now - since > HISTORY_WINDOW_MAX + 60.0 {
        return Err(ApiError::BadRequest(format!(
            "since {text:?} asks for more than 7d of history, which is all that is kept"
        )));
    }
    Ok(since)
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

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
            let (status, Json(body)) = parse_since(Some(text), NOW).unwrap_err().into_parts();
            assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
            let error = body.error.as_str();
            assert!(error.contains(message), "{text}: {error}");
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
