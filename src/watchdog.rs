//! The prober watches itself: `watchdog: {url, interval}` POSTs to a dead-man's switch (a
//! Healthchecks-style ping URL, or another slowburn's `/ping/…`) every `interval` while this
//! daemon is healthy, and stops while it is not, so the receiving side pages when slowburn
//! dies, hangs or can no longer do its job.
//!
//! Healthy means all of: probe runs are completing (the newest outcome of any probe is no
//! older than twice the longest interval plus [`SLACK`]), the store takes a write (the
//! liveness row), and no notification has waited to be sent for longer than [`STUCK_AFTER`].
//! [`health`] judges the evidence with the time passed in; [`run`] gathers it and sends. The
//! task is spawned by `app.rs`, like every long-lived task.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use tokio::sync::watch;

use crate::basics::units::{Secret, format_duration, parse_duration};
use crate::basics::yaml::{Pos, Spanned};
use crate::server::Shared;

/// Allowance on top of twice the longest probe interval before runs count as stalled.
pub const SLACK: Duration = Duration::from_secs(30);
/// A notification recorded and not yet sent for this long means delivery is stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(15 * 60);
/// How long one send, and one write to the store, may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// `watchdog:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WatchdogSpec {
    pub url: Spanned<String>,
    pub interval: Option<Spanned<String>>,
    /// Sent as `Authorization: Bearer …`: what another slowburn's `/ping/…` asks for.
    pub token: Option<Spanned<String>>,
}

/// A validated watchdog.
#[derive(Debug, Clone, PartialEq)]
pub struct WatchdogConfig {
    pub url: reqwest::Url,
    pub interval: Duration,
    pub token: Option<Secret>,
}

impl WatchdogConfig {
    /// Validates a spec; every mistake with its position.
    pub fn new(spec: &WatchdogSpec) -> Result<WatchdogConfig, Vec<(Pos, String)>> {
        let mut errors = Vec::new();
        let url = match reqwest::Url::parse(spec.url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Some(url)
            }
            Ok(_) => {
                errors.push((
                    spec.url.pos,
                    "watchdog: url: an absolute http or https URL is needed".to_string(),
                ));
                None
            }
            Err(e) => {
                errors.push((spec.url.pos, format!("watchdog: url: invalid URL: {e}")));
                None
            }
        };
        let interval = match &spec.interval {
            None => Some(Duration::from_secs(60)),
            Some(text) => match parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) => Some(d),
                Ok(_) => {
                    errors.push((
                        text.pos,
                        "watchdog: interval: must be at least 1s".to_string(),
                    ));
                    None
                }
                Err(m) => {
                    errors.push((text.pos, format!("watchdog: interval: {m}")));
                    None
                }
            },
        };
        let token = spec.token.as_ref().and_then(|t| match Secret::resolve(t) {
            Ok(token) => Some(token),
            Err(m) => {
                errors.push((t.pos, format!("watchdog: token: {m}")));
                None
            }
        });
        match (url, interval) {
            (Some(url), Some(interval)) if errors.is_empty() => Ok(WatchdogConfig {
                url,
                interval,
                token,
            }),
            _ => Err(errors),
        }
    }
}

/// What the watchdog saw at one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Unix seconds now.
    pub now: f64,
    /// When the daemon started, unix seconds.
    pub started: f64,
    /// The newest outcome of any probe, unix seconds.
    pub newest_outcome: Option<f64>,
    /// The longest probe interval.
    pub longest_interval: Duration,
    /// The error of writing the liveness row, if it failed.
    pub store_error: Option<String>,
    /// When the oldest notification still waiting to be sent was recorded, unix seconds.
    pub oldest_unsent: Option<f64>,
}

/// Whether the daemon is healthy, and if not, why (the first reason found).
pub fn health(e: &Evidence) -> Result<(), String> {
    if let Some(error) = &e.store_error {
        return Err(format!("the store takes no writes: {error}"));
    }
    let stalled_after = (e.longest_interval * 2 + SLACK).as_secs_f64();
    let last = e.newest_outcome.unwrap_or(e.started).max(e.started);
    if e.now - last > stalled_after {
        return Err(format!(
            "no probe run has finished for {}",
            format_duration(
                Duration::from_secs_f64((e.now - last).max(0.0))
                    .min(Duration::from_secs(u32::MAX.into()))
            )
        ));
    }
    if let Some(oldest) = e.oldest_unsent
        && e.now - oldest > STUCK_AFTER.as_secs_f64()
    {
        return Err(format!(
            "a notification has waited {} to be sent",
            format_duration(Duration::from_secs_f64(e.now - oldest))
        ));
    }
    Ok(())
}

/// Checks health every `interval` and POSTs to the URL while healthy, until `stop` turns true.
pub async fn run(config: WatchdogConfig, shared: Shared, mut stop: watch::Receiver<bool>) {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = match reqwest::Client::builder()
        .user_agent(concat!("slowburn/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .timeout(SEND_TIMEOUT)
        .build()
    {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "watchdog: cannot build the HTTP client; no watchdog pings");
            return;
        }
    };
    let started = unix_now();
    let mut healthy = true;
    let mut tick = tokio::time::interval(config.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let evidence = gather(&shared, started).await;
        match health(&evidence) {
            Ok(()) => {
                if !healthy {
                    tracing::info!("watchdog: healthy again; pinging resumes");
                    healthy = true;
                }
                let mut request = client.post(config.url.clone()).body("slowburn healthy\n");
                if let Some(token) = &config.token {
                    request = request.bearer_auth(token.expose());
                }
                let sent = request.send().await;
                match sent {
                    Ok(r) if r.status().is_success() => {}
                    Ok(r) => tracing::warn!(
                        status = r.status().as_u16(),
                        "watchdog: the ping was refused"
                    ),
                    Err(e) => tracing::warn!(error = %e, "watchdog: the ping could not be sent"),
                }
            }
            Err(reason) => {
                if healthy {
                    tracing::error!(%reason, "watchdog: unhealthy; pings stop until it recovers");
                    healthy = false;
                }
            }
        }
    }
}

async fn gather(shared: &Shared, started: f64) -> Evidence {
    let now = unix_now();
    let registry = shared.registry();
    let mut newest_outcome: Option<f64> = None;
    let mut longest_interval = Duration::ZERO;
    for state in &registry.probes {
        longest_interval = longest_interval.max(state.interval());
        if let Some(last) = state.last() {
            let at = last
                .at
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64();
            newest_outcome = Some(newest_outcome.map_or(at, |n| n.max(at)));
        }
    }
    let store = shared.store.clone();
    let checked = tokio::time::timeout(
        SEND_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let written = store.touch_liveness(now).err().map(|e| e.to_string());
            let oldest = store
                .unsent()
                .ok()
                .and_then(|records| records.iter().map(|r| r.created_at).reduce(f64::min));
            (written, oldest)
        }),
    )
    .await;
    let (store_error, oldest_unsent) = match checked {
        Ok(Ok(found)) => found,
        Ok(Err(e)) => (Some(format!("the check failed: {e}")), None),
        Err(_) => (
            Some(format!(
                "a write took longer than {}",
                format_duration(SEND_TIMEOUT)
            )),
            None,
        ),
    };
    Evidence {
        now,
        started,
        newest_outcome,
        longest_interval,
        store_error,
        oldest_unsent,
    }
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Evidence {
        Evidence {
            now: 10_000.0,
            started: 1_000.0,
            newest_outcome: Some(9_990.0),
            longest_interval: Duration::from_secs(30),
            store_error: None,
            oldest_unsent: None,
        }
    }

    #[test]
    fn healthy_while_runs_finish_the_store_writes_and_sends_go_out() {
        assert_eq!(health(&healthy()), Ok(()));
        // Just started: nothing has run yet, which is fine for a while.
        let fresh = Evidence {
            now: 1_010.0,
            newest_outcome: None,
            ..healthy()
        };
        assert_eq!(health(&fresh), Ok(()));
        // A notification queued a minute ago is on its way.
        let queued = Evidence {
            oldest_unsent: Some(9_940.0),
            ..healthy()
        };
        assert_eq!(health(&queued), Ok(()));
    }

    #[test]
    fn each_failure_is_named() {
        let store = Evidence {
            store_error: Some("attempt to write a readonly database".into()),
            ..healthy()
        };
        assert_eq!(
            health(&store),
            Err("the store takes no writes: attempt to write a readonly database".into())
        );
        // 2 × 30 s + 30 s of slack = 90 s without a finished run.
        let stalled = Evidence {
            newest_outcome: Some(9_909.0),
            ..healthy()
        };
        assert_eq!(
            health(&stalled),
            Err("no probe run has finished for 1m31s".into())
        );
        let never = Evidence {
            newest_outcome: None,
            ..healthy()
        };
        assert!(
            health(&never)
                .unwrap_err()
                .starts_with("no probe run has finished")
        );
        let stuck = Evidence {
            oldest_unsent: Some(10_000.0 - 16.0 * 60.0),
            ..healthy()
        };
        assert_eq!(
            health(&stuck),
            Err("a notification has waited 16m to be sent".into())
        );
    }

    #[test]
    fn the_spec_is_validated() {
        let spec = |url: &str, interval: Option<&str>| WatchdogSpec {
            url: Spanned {
                pos: Pos { line: 1, col: 2 },
                value: url.to_string(),
            },
            interval: interval.map(|i| Spanned {
                pos: Pos { line: 1, col: 9 },
                value: i.to_string(),
            }),
            token: None,
        };
        let ok = WatchdogConfig::new(&spec("http://127.0.0.1:9/ping/x", Some("1m"))).unwrap();
        assert_eq!(ok.interval, Duration::from_secs(60));
        let errors = WatchdogConfig::new(&spec("ftp://x", Some("10ms"))).unwrap_err();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].1.contains("http or https"));
        assert!(errors[1].1.contains("at least 1s"));
    }
}
