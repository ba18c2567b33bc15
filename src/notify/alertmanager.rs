//! The `alertmanager:` notifier: Prometheus Alertmanager's API v2 (`POST /api/v2/alerts`).
//!
//! Alertmanager forgets an alert that is not re-sent, so [`Alertmanager::refresh`] tells the
//! engine to re-send a firing alert every `refresh` (default 1m). Each firing post sets
//! `endsAt` to now + 4 × refresh, as Prometheus does with its own resend delay: if slowburn
//! stops, the alert expires on its own a few minutes later, while one late or failed refresh
//! does not make it flicker to resolved. A resolve sets `endsAt` to the time it ended.
//!
//! Alertmanager has no acknowledgement: an acknowledge re-sends the alert, still firing, with
//! an `acknowledged_by` annotation; a flapping notice adds `flapping: "true"`. The labels are
//! the alert's identity in Alertmanager and stay the same for every event of one alert.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::Url;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Endpoint, Event, Notification, NotifyContext, SendError, post, rfc3339, spec_error};
use crate::basics::SpecError;
use crate::basics::units::{format_duration, parse_duration};
use crate::basics::yaml::Spanned;

/// The `alertname` label of every alert slowburn sends.
pub const ALERTNAME: &str = "SlowburnProbe";
/// How often a firing alert is re-sent unless `refresh:` says otherwise.
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(60);

/// `alertmanager:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerSpec {
    /// Alertmanager's base URL, e.g. `http://127.0.0.1:9093` (a path prefix is kept).
    pub url: Spanned<String>,
    /// How often a firing alert is re-sent (default 1m).
    pub refresh: Option<Spanned<String>>,
    /// slowburn's own externally reachable URL; when set, `generatorURL` links to the alert
    /// in slowburn's API (`{external_url}/api/v1/alerts/{id}`).
    pub external_url: Option<Spanned<String>>,
}

/// A built Alertmanager notifier.
pub struct Alertmanager {
    client: reqwest::Client,
    endpoint: Endpoint,
    refresh: Duration,
    external_url: Option<String>,
}

impl fmt::Debug for Alertmanager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alertmanager")
            .field("target", &self.endpoint.target)
            .field("refresh", &format_duration(self.refresh))
            .finish()
    }
}

impl Alertmanager {
    /// Validates a spec and builds the notifier, returning every error found.
    pub fn new(
        spec: Spanned<AlertmanagerSpec>,
        ctx: &NotifyContext,
    ) -> Result<Alertmanager, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let endpoint = match Endpoint::parse(&spec.url) {
            Ok(mut endpoint) => {
                let path = format!(
                    "{}/api/v2/alerts",
                    endpoint.url.path().trim_end_matches('/')
                );
                endpoint.url.set_path(&path);
                Some(endpoint)
            }
            Err(m) => {
                errors.push(spec_error(spec.url.pos, "url", m));
                None
            }
        };
        let refresh = match &spec.refresh {
            None => DEFAULT_REFRESH,
            Some(text) => match parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(1) => d,
                Ok(_) => {
                    errors.push(spec_error(text.pos, "refresh", "must be at least 1s"));
                    DEFAULT_REFRESH
                }
                Err(m) => {
                    errors.push(spec_error(text.pos, "refresh", m));
                    DEFAULT_REFRESH
                }
            },
        };
        let external_url = match &spec.external_url {
            None => None,
            Some(text) => match Endpoint::parse(text) {
                Ok(_) => Some(text.trim().trim_end_matches('/').to_string()),
                Err(m) => {
                    errors.push(spec_error(text.pos, "external_url", m));
                    None
                }
            },
        };
        match endpoint {
            Some(endpoint) if errors.is_empty() => Ok(Alertmanager {
                client: ctx.http.clone(),
                endpoint,
                refresh,
                external_url,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        self.endpoint.target.clone()
    }

    /// How often the engine must re-send a firing alert.
    pub fn refresh(&self) -> Duration {
        self.refresh
    }

    /// The full URL posted to (`…/api/v2/alerts`).
    pub fn url(&self) -> &Url {
        &self.endpoint.url
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let body = payload(
            n,
            SystemTime::now(),
            self.refresh,
            self.external_url.as_deref(),
        );
        let body = serde_json::to_vec(&body)
            .map_err(|e| SendError::permanent(format!("cannot encode the alert: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let reply = post(&self.client, &self.endpoint, headers, body).await?;
        reply.check(&self.endpoint, explain, &[])
    }
}

/// The labels that identify an alert in Alertmanager: the notification's labels (those with
/// valid names and non-empty values) plus `alertname`, `probe`, `reason`, `severity` and
/// `dedup_key`, which always win.
pub fn labels(n: &Notification) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = n
        .labels
        .iter()
        .filter(|(k, v)| valid_label_name(k) && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in [
        ("alertname", ALERTNAME),
        ("probe", &n.probe),
        ("reason", &n.reason),
        ("severity", &n.severity),
        ("dedup_key", &n.dedup_key),
    ] {
        if !v.is_empty() {
            labels.insert(k.to_string(), v.to_string());
        }
    }
    labels
}

/// The API v2 body (a list of one alert) for a notification sent at `now`.
pub fn payload(
    n: &Notification,
    now: SystemTime,
    refresh: Duration,
    external_url: Option<&str>,
) -> Value {
    let mut annotations = BTreeMap::new();
    annotations.insert("summary", n.summary.clone());
    annotations.insert("description", n.details.clone());
    annotations.insert("alert_id", n.alert_id.to_string());
    if !n.ack_hint.is_empty() {
        annotations.insert("ack", n.ack_hint.clone());
    }
    if let Some(runbook) = &n.runbook {
        annotations.insert("runbook_url", runbook.clone());
    }
    if let Some(who) = &n.acked_by {
        annotations.insert("acknowledged_by", who.clone());
    }
    if n.event == Event::Flapping {
        annotations.insert("flapping", "true".into());
    }
    let ends_at = match n.event {
        Event::Resolve => n.ended_at.unwrap_or(now).min(now),
        Event::Trigger | Event::Acknowledge | Event::Flapping => now + refresh * 4,
    };
    let mut alert = json!({
        "labels": labels(n),
        "annotations": annotations,
        "startsAt": rfc3339(n.started_at),
        "endsAt": rfc3339(ends_at),
    });
    if let Some(base) = external_url {
        alert["generatorURL"] = json!(format!("{base}/api/v1/alerts/{}", n.alert_id));
    }
    json!([alert])
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, Alertmanager's label name syntax.
fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
}

/// Alertmanager's errors are `{"code": 400, "message": "…"}` or plain text.
fn explain(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| super::plain_explain(body))
}

impl super::NotifierKind for Alertmanager {
    type Spec = AlertmanagerSpec;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(
        spec: Spanned<AlertmanagerSpec>,
        ctx: &super::NotifyContext,
    ) -> Result<Self, Vec<SpecError>> {
        Alertmanager::new(spec, ctx)
    }

    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        Alertmanager::send(self, n)
    }

    fn target(&self) -> String {
        Alertmanager::target(self)
    }

    fn wants_refresh(&self) -> Option<Duration> {
        Some(self.refresh())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests_support::{entry, notification};
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn firing_alert_expires_after_four_refreshes() {
        let n = notification(Event::Trigger);
        let p = payload(
            &n,
            at(1_700_000_600),
            DEFAULT_REFRESH,
            Some("http://sb:9464"),
        );
        let alert = &p[0];
        assert_eq!(alert["labels"]["alertname"], "SlowburnProbe");
        assert_eq!(alert["labels"]["dedup_key"], "checkout-api:status");
        assert_eq!(alert["labels"]["team"], "shop");
        assert_eq!(alert["labels"]["kind"], "http");
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://wiki.example.com/checkout"
        );
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(alert["endsAt"], "2023-11-14T22:27:20Z");
        assert_eq!(alert["generatorURL"], "http://sb:9464/api/v1/alerts/42");
    }

    #[test]
    fn resolve_ends_when_the_alert_ended_and_labels_stay_the_same() {
        let firing = payload(
            &notification(Event::Trigger),
            at(1_700_000_100),
            DEFAULT_REFRESH,
            None,
        );
        let resolved = payload(
            &notification(Event::Resolve),
            at(1_700_000_700),
            DEFAULT_REFRESH,
            None,
        );
        assert_eq!(resolved[0]["endsAt"], "2023-11-14T22:23:20Z");
        assert_eq!(firing[0]["labels"], resolved[0]["labels"]);
        assert!(resolved[0].get("generatorURL").is_none());
    }

    #[test]
    fn invalid_label_names_and_empty_values_are_dropped() {
        let mut n = notification(Event::Acknowledge);
        n.labels.insert("bad-name".into(), "x".into());
        n.labels.insert("empty".into(), String::new());
        n.labels.insert("alertname".into(), "Other".into());
        let labels = labels(&n);
        assert!(!labels.contains_key("bad-name") && !labels.contains_key("empty"));
        assert_eq!(labels["alertname"], "SlowburnProbe");
        let p = payload(&n, at(1_700_000_100), DEFAULT_REFRESH, None);
        assert_eq!(p[0]["annotations"]["acknowledged_by"], "alice");
    }

    #[test]
    fn url_gets_the_api_path_and_refresh_is_validated() {
        let ctx = NotifyContext::new().unwrap();
        let am = crate::notify::Notifier::new(
            entry("name: am\nalertmanager: {url: 'http://127.0.0.1:9093/am/', refresh: 30s}"),
            &ctx,
        )
        .unwrap();
        assert_eq!(am.wants_refresh(), Some(Duration::from_secs(30)));
        let crate::notify::Kind::Alertmanager(k) = &am.kind else {
            panic!("not alertmanager");
        };
        assert_eq!(k.url().as_str(), "http://127.0.0.1:9093/am/api/v2/alerts");
        let errors = crate::notify::Notifier::new(
            entry(
                "name: am\nalertmanager: {url: '127.0.0.1:9093', refresh: 10ms, external_url: x}",
            ),
            &ctx,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "alertmanager.url",
                "alertmanager.refresh",
                "alertmanager.external_url"
            ]
        );
    }
}
