//! The ping routes of `heartbeat:` probes: `/ping/{probe}`, `/ping/{probe}/start`,
//! `/ping/{probe}/fail` and `/ping/{probe}/{exit_code}`, by GET or POST.
//!
//! A ping must carry the probe's token as `Authorization: Bearer …` (compared in constant
//! time). An unknown probe, a probe of another kind and a wrong token all get the same 404, so
//! the answers do not tell which probe names exist. Each presented token has its own rate
//! limit (a flood from one job leaves every other job's pings alone), and a body is read up to
//! [`MAX_BODY`]: its first [`MAX_LOG`] are kept as the run's log, and a larger body is refused
//! unread. A ping is in the store before the 200 goes out, and the probe then runs at once, so
//! `/fail` fails now rather than at the next judgement. This file also rebuilds each probe's
//! view of its pings from the store ([`restore`]), on start and on reload.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tokio::time::Instant;

use super::Shared;
use super::api::constant_time_eq;
use crate::probe::Probe;
use crate::probe::heartbeat::HeartbeatProbe;
use crate::probe::heartbeat::ledger::{Event, Ping};
use crate::scheduler::{self, Runner};
use crate::state::Registry;
use crate::store::{PingRow, Store};

/// The largest body read; a larger one is refused with 413 before it is read.
pub const MAX_BODY: usize = 1024 * 1024;
/// How much of a body is kept as the run's log.
pub const MAX_LOG: usize = 100 * 1024;
/// Pings a token may send in a burst, and how many a second it earns back.
pub const BURST: f64 = 30.0;
pub const PER_SECOND: f64 = 5.0;
/// How many tokens the rate limiter remembers before it forgets the idle ones.
const MAX_TRACKED: usize = 100_000;
/// How many stored pings a probe's view is rebuilt from: enough to find its latest start and
/// finish.
const RESTORE_PINGS: usize = 50;

/// The ping routes, for the main router and for `server.ping_listen` alone.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/ping/{probe}", get(ping).post(ping))
        .route("/ping/{probe}/{action}", get(ping_action).post(ping_action))
}

/// What the ping routes share: the rate limiter, and the runner that judges a probe at once.
pub struct Desk {
    runner: Runner,
    limiter: Mutex<Limiter>,
}

impl Desk {
    pub fn new(runner: Runner) -> Desk {
        Desk {
            runner,
            limiter: Mutex::new(Limiter::default()),
        }
    }
}

/// Rebuilds every heartbeat probe's view of its pings from the store, reading only pings newer
/// than what each has already recorded (so calling it again after a reload's swap picks up the
/// pings that arrived in between).
pub fn restore(registry: &Registry, store: &Store) {
    for state in &registry.probes {
        restore_probe(state.name(), &state.config.probe, store);
    }
}

/// Rebuilds one probe's ledger from the store, if it is a heartbeat (`slowburn probe` judges
/// a heartbeat this way, from what the daemon stored).
pub fn restore_probe(name: &str, probe: &Probe, store: &Store) {
    let Probe::Heartbeat(probe) = probe else {
        return;
    };
    let ledger = probe.ledger();
    match store.pings(name, ledger.newest_id(), RESTORE_PINGS) {
        Ok(rows) => rows
            .iter()
            .filter_map(ping_of_row)
            .for_each(|p| ledger.restore(p)),
        Err(e) => {
            tracing::error!(probe = name, error = %e, "cannot read stored pings");
        }
    }
}

/// A stored row as the probe's ledger reads it.
pub fn ping_of_row(row: &PingRow) -> Option<Ping> {
    Some(Ping {
        id: row.id,
        at: UNIX_EPOCH + Duration::try_from_secs_f64(row.t).ok()?,
        event: Event::from_word(&row.event, row.exit_code)?,
        value: row.value,
        log: row.log.as_deref().map(Arc::from),
    })
}

#[derive(Debug, Default, Deserialize)]
struct PingQuery {
    value: Option<String>,
}

async fn ping(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<PingQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    receive(&shared, &name, Event::Success, query, &headers, body).await
}

async fn ping_action(
    State(shared): State<Shared>,
    Path((name, action)): Path<(String, String)>,
    Query(query): Query<PingQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let event = match action.as_str() {
        "start" => Event::Start,
        "fail" => Event::Fail { exit_code: None },
        code => match code.parse::<u8>() {
            Ok(code) => Event::of_exit_code(code),
            Err(_) => {
                return refuse(
                    StatusCode::NOT_FOUND,
                    "no such ping: use /ping/NAME, /ping/NAME/start, /ping/NAME/fail or /ping/NAME/EXIT_CODE (0-255)",
                );
            }
        },
    };
    receive(&shared, &name, event, query, &headers, body).await
}

/// Checks, reads, stores and records one ping, then has the probe judged.
async fn receive(
    shared: &Shared,
    name: &str,
    event: Event,
    query: PingQuery,
    headers: &HeaderMap,
    body: Body,
) -> Response {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let allowed = shared
        .pings
        .limiter
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .allow(given, Instant::now());
    if !allowed {
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "too many pings with this token; slow down",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return response;
    }
    let registry = shared.registry();
    let Some((state, probe)) = find(&registry, name, given) else {
        return refuse(
            StatusCode::NOT_FOUND,
            "no heartbeat probe by that name takes this token",
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        return too_large();
    }
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY).await else {
        return too_large();
    };
    let value = match value_of(query.value.as_deref(), &bytes) {
        Ok(value) => value,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, &message),
    };
    let log = log_of(&bytes);
    let at = SystemTime::now();
    let mut row = PingRow {
        id: 0,
        probe: name.to_string(),
        t: at
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64(),
        event: event.word().to_string(),
        exit_code: match event {
            Event::Fail { exit_code } => exit_code,
            _ => None,
        },
        value,
        log,
    };
    let store = shared.store.clone();
    let stored = tokio::task::spawn_blocking(move || {
        let id = store.append_ping(&row)?;
        row.id = id;
        Ok::<_, crate::store::StoreError>(row)
    })
    .await;
    let row = match stored {
        Ok(Ok(row)) => row,
        Ok(Err(e)) => {
            tracing::error!(probe = name, error = %e, "cannot store a ping");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ping could not be stored; send it again",
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the ping could not be stored",
            );
        }
    };
    if let Some(ping) = ping_of_row(&row) {
        probe.ledger().record(ping);
    }
    scheduler::run_now(state, &shared.pings.runner);
    (StatusCode::OK, "OK\n").into_response()
}

/// The heartbeat probe `name` when `given` is its token. The token is compared even when
/// there is no such probe, so the time taken does not tell either.
fn find<'r>(
    registry: &'r Registry,
    name: &str,
    given: &str,
) -> Option<(&'r Arc<crate::state::ProbeState>, &'r HeartbeatProbe)> {
    let found = registry
        .get(name)
        .and_then(|state| match &*state.config.probe {
            Probe::Heartbeat(probe) => Some((state, &**probe)),
            _ => None,
        });
    let expected = found.map_or("", |(_, p)| p.token().expose());
    let matches = constant_time_eq(given.as_bytes(), expected.as_bytes());
    found.filter(|_| matches && !given.is_empty())
}

/// `?value=N`, else a JSON body `{"value": N}`; none when neither is given.
fn value_of(query: Option<&str>, body: &[u8]) -> Result<Option<f64>, String> {
    if let Some(text) = query {
        return match text.trim().parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Some(v)),
            _ => Err(format!("value {text:?} is not a finite number")),
        };
    }
    let trimmed = body.trim_ascii_start();
    if !trimmed.starts_with(b"{") {
        return Ok(None);
    }
    let Ok(serde_json::Value::Object(object)) = serde_json::from_slice(trimmed) else {
        return Ok(None);
    };
    match object.get("value") {
        None => Ok(None),
        Some(serde_json::Value::Number(n)) => Ok(n.as_f64().filter(|v| v.is_finite())),
        Some(other) => Err(format!("\"value\" must be a number, not {other}")),
    }
}

/// The first [`MAX_LOG`] bytes of a body, as text, with a note when it was cut.
fn log_of(body: &[u8]) -> Option<String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    let kept = &body[..body.len().min(MAX_LOG)];
    let mut log = String::from_utf8_lossy(kept).into_owned();
    if body.len() > MAX_LOG {
        log.push_str(&format!(
            "\n[log cut at {} KiB of {} bytes]",
            MAX_LOG / 1024,
            body.len()
        ));
    }
    Some(log)
}

fn too_large() -> Response {
    refuse(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!(
            "a ping's body is at most {} KiB (the first {} KiB are kept as its log)",
            MAX_BODY / 1024,
            MAX_LOG / 1024
        ),
    )
}

fn refuse(status: StatusCode, message: &str) -> Response {
    (status, format!("{message}\n")).into_response()
}

/// A token bucket per presented token, keyed by a keyed hash so the limiter holds no token.
#[derive(Default)]
struct Limiter {
    hasher: RandomState,
    buckets: HashMap<u64, (f64, Instant)>,
}

impl Limiter {
    /// Takes one ping from the bucket of `token`; false when it is empty.
    fn allow(&mut self, token: &str, now: Instant) -> bool {
        if self.buckets.len() >= MAX_TRACKED {
            // Forget the buckets that have filled up again: they hold nothing to enforce.
            let full_after = Duration::from_secs_f64(BURST / PER_SECOND);
            self.buckets
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < full_after);
        }
        let key = self.hasher.hash_one(token);
        let (tokens, at) = self.buckets.entry(key).or_insert((BURST, now));
        let earned = now.saturating_duration_since(*at).as_secs_f64() * PER_SECOND;
        *tokens = (*tokens + earned).min(BURST);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let mut limiter = Limiter::default();
        let t0 = Instant::now();
        let allowed = (0..1000).filter(|_| limiter.allow("flood", t0)).count();
        assert_eq!(allowed, BURST as usize);
        assert!(limiter.allow("other", t0));
        // One second later it has earned PER_SECOND pings back.
        let t1 = t0 + Duration::from_secs(1);
        let allowed = (0..1000).filter(|_| limiter.allow("flood", t1)).count();
        assert_eq!(allowed, PER_SECOND as usize);
    }

    #[test]
    fn a_value_comes_from_the_query_or_a_json_body() {
        assert_eq!(value_of(Some("42"), b""), Ok(Some(42.0)));
        assert_eq!(
            value_of(None, br#" {"value": 7.5, "note": "x"}"#),
            Ok(Some(7.5))
        );
        assert_eq!(value_of(None, b"plain log text"), Ok(None));
        assert_eq!(value_of(None, br#"{"other": 1}"#), Ok(None));
        assert!(value_of(Some("NaN"), b"").is_err());
        assert!(value_of(None, br#"{"value": "many"}"#).is_err());
    }

    #[test]
    fn a_log_is_kept_up_to_its_bound() {
        assert_eq!(log_of(b"  \n"), None);
        assert_eq!(log_of(b"done\n").as_deref(), Some("done\n"));
        let big = vec![b'x'; MAX_LOG + 10];
        let log = log_of(&big).unwrap();
        assert!(log.ends_with(&format!("[log cut at 100 KiB of {} bytes]", MAX_LOG + 10)));
        assert!(log.len() < MAX_LOG + 100);
    }
}
