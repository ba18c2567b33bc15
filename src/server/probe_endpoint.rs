//! `GET /probe?target=…&module=…`: blackbox_exporter's endpoint. One on-demand probe of a
//! `modules:` entry against the target, answered in blackbox's exposition (`debug=true`: the
//! run's log, the metrics and the module, as blackbox writes them), so a Prometheus scrape
//! job written for blackbox (`__param_target` relabeling) works unchanged.
//!
//! The deadline is blackbox's: the module's `timeout`, capped by Prometheus'
//! `X-Prometheus-Scrape-Timeout-Seconds` less half a second (120 s when the header is absent).
//! At most [`MAX_IN_FLIGHT`] probes run at once; one that finds no slot before its deadline
//! is refused with 503. It keeps nothing: no state, no store, no alert.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::Semaphore;

use super::Shared;
use crate::basics::units::format_duration;
use crate::blackbox::{Module, exposition};
use crate::probe::{self, Failure, Outcome};

/// Probes through `/probe` in flight at most: each holds a socket, and a scrape storm must
/// not take the daemon's file descriptors from its own probes.
pub const MAX_IN_FLIGHT: usize = 512;
/// What blackbox subtracts from Prometheus' scrape timeout, so the answer arrives in time.
const TIMEOUT_OFFSET: f64 = 0.5;
/// blackbox's scrape timeout when Prometheus sends none.
const DEFAULT_SCRAPE_TIMEOUT: f64 = 120.0;
const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The slots of `/probe`, shared by every request.
pub struct Slots(Arc<Semaphore>);

impl Default for Slots {
    fn default() -> Self {
        Slots(Arc::new(Semaphore::new(MAX_IN_FLIGHT)))
    }
}

/// The query of a `/probe` request. As Go's `URL.Query().Get`, which blackbox reads it
/// with: the first value of a repeated key counts, and a malformed escape is kept as written.
#[derive(Default)]
pub(super) struct Params {
    target: Option<String>,
    module: Option<String>,
    debug: Option<String>,
}

impl Params {
    fn parse(query: &str) -> Params {
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match key.as_ref() {
                "target" => &mut params.target,
                "module" => &mut params.module,
                "debug" => &mut params.debug,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        params
    }
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/probe", get(probe))
}

async fn probe(State(shared): State<Shared>, request: axum::extract::Request) -> Response {
    answer(shared, request).await
}

/// The answer to one `/probe` request (the server calls it without the router).
pub(super) async fn answer(shared: Shared, request: axum::extract::Request) -> Response {
    // Read from the request in place: the `HeaderMap` extractor would copy every header.
    let params = Params::parse(request.uri().query().unwrap_or_default());
    let headers = request.headers();
    let registry = shared.registry();
    let modules = &registry.modules;
    // As blackbox: no module, or an empty one, is `http_2xx`.
    let name = match params.module.as_deref() {
        None | Some("") => "http_2xx",
        Some(name) => name,
    };
    let Some(module) = modules.get(name).cloned() else {
        let known = modules.names().join(", ");
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("Unknown module {name:?} (modules: {known})"),
        );
    };
    let Some(target) = params.target.filter(|t| !t.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Target parameter is missing".into(),
        );
    };
    let timeout = match deadline(headers, &module) {
        Ok(timeout) => timeout,
        Err(message) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, message),
    };
    let started = tokio::time::Instant::now();
    let Ok(Ok(_slot)) =
        tokio::time::timeout(timeout, shared.probe_slots.0.clone().acquire_owned()).await
    else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{MAX_IN_FLIGHT} probes are in flight; none finished within the timeout"),
        );
    };
    let left = timeout
        .saturating_sub(started.elapsed())
        .max(Duration::from_millis(1));
    let outcome = match modules.probe(&module, &target) {
        Ok(built) => probe::execute(&built, left).await,
        Err(message) => unusable(format!("target {target:?}: {message}")),
    };
    let metrics = exposition::render(module.prober, &outcome);
    let body = if params.debug.as_deref() == Some("true") {
        debug_text(&module, &target, timeout, &outcome, &metrics)
    } else {
        metrics
    };
    ([(header::CONTENT_TYPE, TEXT)], body).into_response()
}

/// blackbox's deadline: the scrape timeout less the offset, or the module's when shorter.
fn deadline(headers: &HeaderMap, module: &Module) -> Result<Duration, String> {
    let scrape = match headers.get("X-Prometheus-Scrape-Timeout-Seconds") {
        None => DEFAULT_SCRAPE_TIMEOUT,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("Failed to parse timeout from Prometheus header: {value:?}"))?,
    };
    let scrape = if scrape == 0.0 {
        DEFAULT_SCRAPE_TIMEOUT
    } else {
        scrape
    };
    let max = scrape - TIMEOUT_OFFSET;
    let seconds = match module.timeout.map(|t| t.as_secs_f64()) {
        Some(own) if own < max || max <= 0.0 => own,
        _ if max <= 0.0 => scrape,
        _ => max,
    };
    Ok(Duration::from_secs_f64(seconds.max(0.001)))
}

/// The outcome of a probe that could not be built for its target (an unparsable URL):
/// failed, with every family at blackbox's value for a run that never started.
fn unusable(message: String) -> Outcome {
    Outcome {
        at: SystemTime::now(),
        success: false,
        duration: Duration::ZERO,
        phases: Box::new([]),
        signals: Box::new([]),
        failure: Some(Failure::Expect(message)),
        checks: Box::new([]),
        notes: Box::new([]),
        series: Box::new([]),
        log: None,
        certificate: None,
    }
}

/// `debug=true`: the run's log, the metrics and the module, in blackbox's three parts.
fn debug_text(
    module: &Module,
    target: &str,
    timeout: Duration,
    outcome: &Outcome,
    metrics: &str,
) -> String {
    let mut out = String::from("Logs for the probe:\n");
    let _ = writeln!(
        out,
        "module={} target={target} level=info msg=\"Beginning probe\" probe={} timeout={}",
        module.name,
        module.prober.kind(),
        format_duration(timeout)
    );
    for (phase, spent) in outcome.phases.iter() {
        let _ = writeln!(
            out,
            "level=info msg=\"phase {phase}\" duration_seconds={}",
            spent.as_secs_f64()
        );
    }
    for check in outcome.checks.iter() {
        let level = if check.passed { "info" } else { "error" };
        let _ = writeln!(
            out,
            "level={level} msg=\"check {}\" detail={:?}",
            check.name, check.detail
        );
    }
    for note in outcome.notes.iter() {
        let _ = writeln!(out, "level=info msg={note:?}");
    }
    match &outcome.failure {
        None => {
            let _ = writeln!(
                out,
                "level=info msg=\"Probe succeeded\" duration_seconds={}",
                outcome.duration.as_secs_f64()
            );
        }
        Some(failure) => {
            let _ = writeln!(
                out,
                "level=error msg=\"Probe failed\" reason={} error={:?} duration_seconds={}",
                failure.reason(),
                failure.to_string(),
                outcome.duration.as_secs_f64()
            );
        }
    }
    let _ = write!(
        out,
        "\n\n\nMetrics that would have been returned:\n{metrics}\n\n\nModule configuration:\n{}\n",
        module.describe()
    );
    out
}

fn refuse(status: StatusCode, message: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message + "\n",
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::Params;

    #[test]
    fn the_query_reads_as_go_reads_it() {
        let p = Params::parse(
            "module=http_2xx&target=http%3A%2F%2Fa%3A80%2F%3Fx%3D1+2&target=b&debug=true&x=%zz",
        );
        assert_eq!(p.module.as_deref(), Some("http_2xx"));
        assert_eq!(p.target.as_deref(), Some("http://a:80/?x=1 2"));
        assert_eq!(p.debug.as_deref(), Some("true"));
        let p = Params::parse("target=%zz&module=");
        assert_eq!(p.target.as_deref(), Some("%zz"));
        assert_eq!(p.module.as_deref(), Some(""));
        assert!(Params::parse("").target.is_none());
    }
}
