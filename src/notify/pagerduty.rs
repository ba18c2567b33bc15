//! The `pagerduty:` notifier: PagerDuty Events API v2.
//!
//! Every event carries the alert's stable `dedup_key`, so PagerDuty folds a repeated trigger
//! (an escalation step, a retry after a crash) into the incident it already has, and the
//! acknowledge and resolve land on that incident. A trigger carries the full `payload`;
//! acknowledge and resolve carry only the key. A flapping notice is a trigger at `warning`
//! severity on the same key, so the later resolve closes it too.
//!
//! PagerDuty answers 202 when it accepts an event, 400 with a JSON reason when it never will
//! (bad routing key, bad field), 429 when rate-limited and 5xx when down: the first is an
//! error not worth retrying, the others are.

use std::fmt;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Endpoint, Event, Notification, NotifyContext, SendError, post, rfc3339, spec_error, truncate,
};
use crate::basics::SpecError;
use crate::basics::units::Secret;
use crate::basics::yaml::Spanned;

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";

/// `pagerduty:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PagerDutySpec {
    /// The integration's routing key, `env:NAME` or `file:/path`.
    pub routing_key: Spanned<String>,
    /// The endpoint; defaults to [`DEFAULT_URL`] (point it at a proxy or a test receiver).
    pub url: Option<Spanned<String>>,
}

/// A built PagerDuty notifier.
pub struct PagerDuty {
    client: reqwest::Client,
    endpoint: Endpoint,
    routing_key: Secret,
}

impl fmt::Debug for PagerDuty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PagerDuty")
            .field("target", &self.endpoint.target)
            .finish()
    }
}

impl PagerDuty {
    /// Validates a spec and builds the notifier, returning every error found.
    pub fn new(
        spec: Spanned<PagerDutySpec>,
        ctx: &NotifyContext,
    ) -> Result<PagerDuty, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let routing_key = match Secret::resolve(&spec.routing_key) {
            Ok(key)
                if key.expose().trim().is_empty() || key.expose().contains(char::is_whitespace) =>
            {
                errors.push(spec_error(
                    spec.routing_key.pos,
                    "routing_key",
                    format!(
                        "the value of {} contains whitespace",
                        spec.routing_key.value
                    ),
                ));
                None
            }
            Ok(key) => Some(key),
            Err(m) => {
                errors.push(spec_error(spec.routing_key.pos, "routing_key", m));
                None
            }
        };
        let endpoint = match &spec.url {
            None => Endpoint::parse(DEFAULT_URL).ok(),
            Some(url) => match Endpoint::parse(url) {
                Ok(endpoint) => Some(endpoint),
                Err(m) => {
                    errors.push(spec_error(url.pos, "url", m));
                    None
                }
            },
        };
        match (endpoint, routing_key) {
            (Some(endpoint), Some(routing_key)) if errors.is_empty() => Ok(PagerDuty {
                client: ctx.http.clone(),
                endpoint,
                routing_key,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        self.endpoint.target.clone()
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::to_vec(&payload(n, self.routing_key.expose()))
            .map_err(|e| SendError::permanent(format!("cannot encode the event: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let reply = post(&self.client, &self.endpoint, headers, body).await?;
        reply.check(&self.endpoint, explain, &[self.routing_key.expose()])
    }
}

/// The `event_action` for an event.
pub fn event_action(event: Event) -> &'static str {
    match event {
        Event::Trigger | Event::Flapping => "trigger",
        Event::Acknowledge => "acknowledge",
        Event::Resolve => "resolve",
    }
}

/// PagerDuty's severity for an alert: `page` is `critical`, `ticket` is `warning`, anything
/// else `error`; a flapping notice is always `warning`.
pub fn severity(n: &Notification) -> &'static str {
    match (n.event, n.severity.as_str()) {
        (Event::Flapping, _) => "warning",
        (_, "page") => "critical",
        (_, "ticket") => "warning",
        _ => "error",
    }
}

/// The Events API v2 body for a notification.
pub fn payload(n: &Notification, routing_key: &str) -> Value {
    let action = event_action(n.event);
    if action != "trigger" {
        return json!({
            "routing_key": routing_key,
            "event_action": action,
            "dedup_key": n.dedup_key,
        });
    }
    let summary = match n.event {
        Event::Flapping => format!("[flapping] {}", n.summary),
        _ => n.summary.clone(),
    };
    let mut event = json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.dedup_key,
        "payload": {
            "summary": truncate(&summary, 1024),
            "source": n.probe,
            "severity": severity(n),
            "timestamp": rfc3339(n.started_at),
            "component": n.probe,
            "group": n.labels.get("team").map_or("slowburn", String::as_str),
            "class": n.reason,
            "custom_details": {
                "details": n.details,
                "alert_id": n.alert_id,
                "probe": n.probe,
                "reason": n.reason,
                "severity": n.severity,
                "labels": n.labels,
                "failures": n.failures,
                "step": n.step,
                "ack": n.ack_hint,
            },
        },
        "client": "slowburn",
    });
    if let Some(runbook) = &n.runbook {
        event["links"] = json!([{"href": runbook, "text": "Runbook"}]);
    }
    event
}

/// PagerDuty's 4xx body is `{"status", "message", "errors": [..]}`; quote message and errors.
fn explain(body: &str) -> String {
    #[derive(Deserialize)]
    struct Rejection {
        message: Option<String>,
        #[serde(default)]
        errors: Vec<String>,
    }
    match serde_json::from_str::<Rejection>(body) {
        Ok(r) => {
            let mut parts: Vec<String> = r.message.into_iter().collect();
            parts.extend(r.errors);
            parts.join(": ")
        }
        Err(_) => super::plain_explain(body),
    }
}

impl super::NotifierKind for PagerDuty {
    type Spec = PagerDutySpec;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(
        spec: Spanned<PagerDutySpec>,
        ctx: &super::NotifyContext,
    ) -> Result<Self, Vec<SpecError>> {
        PagerDuty::new(spec, ctx)
    }

    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        PagerDuty::send(self, n)
    }

    fn target(&self) -> String {
        PagerDuty::target(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests_support::{entry, notification};

    #[test]
    fn trigger_carries_the_full_payload() {
        let p = payload(&notification(Event::Trigger), "R0UT1NGKEY");
        assert_eq!(p["routing_key"], "R0UT1NGKEY");
        assert_eq!(p["event_action"], "trigger");
        assert_eq!(p["dedup_key"], "checkout-api:status");
        assert_eq!(p["client"], "slowburn");
        let payload = &p["payload"];
        assert_eq!(payload["summary"], "checkout-api: status 503 not in [200]");
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["source"], "checkout-api");
        assert_eq!(payload["group"], "shop");
        assert_eq!(payload["class"], "status");
        assert_eq!(payload["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(payload["custom_details"]["alert_id"], 42);
        assert_eq!(p["links"][0]["href"], "https://wiki.example.com/checkout");
    }

    #[test]
    fn acknowledge_and_resolve_carry_only_the_key() {
        for (event, action) in [
            (Event::Acknowledge, "acknowledge"),
            (Event::Resolve, "resolve"),
        ] {
            let p = payload(&notification(event), "K");
            let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["dedup_key", "event_action", "routing_key"]);
            assert_eq!(p["event_action"], action);
        }
    }

    #[test]
    fn severities_and_summary_limit() {
        let mut n = notification(Event::Trigger);
        n.severity = "ticket".into();
        assert_eq!(severity(&n), "warning");
        n.summary = "y".repeat(5000);
        let p = payload(&n, "K");
        assert_eq!(
            p["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        let flap = payload(&notification(Event::Flapping), "K");
        assert_eq!(flap["event_action"], "trigger");
        assert_eq!(flap["payload"]["severity"], "warning");
        assert!(
            flap["payload"]["summary"]
                .as_str()
                .unwrap()
                .starts_with("[flapping] ")
        );
    }

    #[test]
    fn rejections_are_quoted() {
        let body = r#"{"status":"invalid event","message":"Event object is invalid","errors":["'routing_key' is invalid"]}"#;
        assert_eq!(
            explain(body),
            "Event object is invalid: 'routing_key' is invalid"
        );
        assert_eq!(explain("<html> down </html>"), "<html> down </html>");
    }

    #[test]
    fn the_routing_key_must_be_a_secret_and_the_url_valid() {
        let ctx = NotifyContext::new().unwrap();
        let errors = crate::notify::Notifier::new(
            entry("name: pd\npagerduty: {routing_key: abc, url: 'events.example.com'}"),
            &ctx,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["pagerduty.routing_key", "pagerduty.url"]);
    }
}
