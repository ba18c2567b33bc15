//! The `webhook:` notifier: a JSON POST of the whole notification, signed with HMAC-SHA256.
//!
//! The body is the [schema](Payload) below, one object per event. With a `secret`, the request
//! carries `X-Slowburn-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes>`; the
//! receiver recomputes it over the raw body before parsing. `X-Slowburn-Timestamp` (Unix
//! seconds) equals the body's `sent_at`, so a verified signature also vouches for the time and
//! a receiver can refuse replays older than a few minutes.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::{
    Endpoint, Notification, NotifyContext, SendError, plain_explain, post, rfc3339, spec_error,
};
use crate::basics::SpecError;
use crate::basics::units::Secret;
use crate::basics::yaml::Spanned;

/// Header with `sha256=<hex>`: HMAC-SHA256 of the exact body, keyed with `secret`.
pub const SIGNATURE_HEADER: &str = "x-slowburn-signature";
/// Header with the send time in Unix seconds (the body's `sent_at`).
pub const TIMESTAMP_HEADER: &str = "x-slowburn-timestamp";
/// Header with the event name (`trigger`, `acknowledge`, `resolve`, `flapping`).
pub const EVENT_HEADER: &str = "x-slowburn-event";

/// `webhook:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to POST; may itself be `env:`/`file:` when the URL carries a token.
    pub url: Spanned<String>,
    /// The HMAC key, `env:NAME` or `file:/path`. Without it requests are unsigned.
    pub secret: Option<Spanned<String>>,
    /// Extra request headers; values may be `env:`/`file:` references.
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
}

/// A built webhook notifier.
pub struct Webhook {
    client: reqwest::Client,
    endpoint: Endpoint,
    key: Option<ring::hmac::Key>,
    headers: HeaderMap,
    /// Secret values to scrub from anything the receiver echoes back.
    secrets: Vec<Secret>,
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("target", &self.endpoint.target)
            .field("signed", &self.key.is_some())
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The JSON body, version 1. Fields are added, never renamed or removed, within a version.
#[derive(Debug, Serialize)]
pub struct Payload<'a> {
    /// Schema version, `1`.
    pub version: u32,
    /// `trigger`, `acknowledge`, `resolve` or `flapping`.
    pub event: &'static str,
    pub dedup_key: &'a str,
    pub alert_id: u64,
    pub probe: &'a str,
    pub reason: &'a str,
    pub severity: &'a str,
    pub summary: &'a str,
    pub details: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// RFC 3339, UTC; `null` until resolved.
    pub ended_at: Option<String>,
    pub acked_by: Option<&'a str>,
    pub runbook: Option<&'a str>,
    pub ack_hint: &'a str,
    pub step: usize,
    pub failures: u64,
    /// RFC 3339, UTC: when this request was made (also `X-Slowburn-Timestamp`).
    pub sent_at: String,
    /// The person paged (`null` when the step named this notifier itself).
    pub person: Option<&'a str>,
    /// That person's address on this notifier, as their `people:` entry gives it.
    pub to: Option<&'a str>,
    /// Signed one-click links `{ack, resolve}` (`null` without `server.external_url`).
    pub links: Option<&'a crate::oncall::links::Links>,
}

impl<'a> Payload<'a> {
    pub fn new(n: &'a Notification, sent_at: SystemTime) -> Self {
        Payload {
            version: 1,
            person: n.recipient.as_ref().map(|r| r.person.as_str()),
            to: n.recipient.as_ref().map(|r| r.to.as_str()),
            links: n.links.as_ref(),
            event: n.event.as_str(),
            dedup_key: &n.dedup_key,
            alert_id: n.alert_id,
            probe: &n.probe,
            reason: &n.reason,
            severity: &n.severity,
            summary: &n.summary,
            details: &n.details,
            labels: &n.labels,
            started_at: rfc3339(n.started_at),
            ended_at: n.ended_at.map(rfc3339),
            acked_by: n.acked_by.as_deref(),
            runbook: n.runbook.as_deref(),
            ack_hint: &n.ack_hint,
            step: n.step,
            failures: n.failures,
            sent_at: rfc3339(sent_at),
        }
    }
}

/// `sha256=<lowercase hex>` of HMAC-SHA256(`key`, `body`): the signature header's value.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    format!("sha256={}", hex(ring::hmac::sign(&key, body).as_ref()))
}

/// Headers a user may not set, because the notifier sets them or the transport owns them.
const RESERVED: &[&str] = &[
    "content-type",
    "content-length",
    "host",
    "transfer-encoding",
];

impl Webhook {
    /// Validates a spec and builds the notifier, returning every error found.
    pub fn new(spec: Spanned<WebhookSpec>, ctx: &NotifyContext) -> Result<Webhook, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let mut secrets = Vec::new();
        let endpoint = match resolve(&spec.url, &mut secrets).and_then(|url| Endpoint::parse(&url))
        {
            Ok(endpoint) => Some(endpoint),
            Err(m) => {
                errors.push(spec_error(spec.url.pos, "url", m));
                None
            }
        };
        let key = match &spec.secret {
            None => None,
            Some(reference) => match Secret::resolve(reference) {
                Ok(secret) => {
                    let key =
                        ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.expose().as_bytes());
                    secrets.push(secret);
                    Some(key)
                }
                Err(m) => {
                    errors.push(spec_error(reference.pos, "secret", m));
                    None
                }
            },
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &spec.headers {
            let field = format!("headers.{}", name.value);
            let header = match HeaderName::from_bytes(name.as_bytes()) {
                Ok(header) => header,
                Err(_) => {
                    errors.push(spec_error(
                        name.pos,
                        "headers",
                        format!("invalid header name {:?}", name.value),
                    ));
                    continue;
                }
            };
            if RESERVED.contains(&header.as_str()) || header.as_str().starts_with("x-slowburn-") {
                errors.push(spec_error(
                    name.pos,
                    &field,
                    "this header is set by slowburn itself",
                ));
                continue;
            }
            let is_secret = is_reference(value);
            let text = match resolve(value, &mut secrets) {
                Ok(text) => text,
                Err(m) => {
                    errors.push(spec_error(value.pos, &field, m));
                    continue;
                }
            };
            match HeaderValue::from_str(&text) {
                Ok(mut v) => {
                    v.set_sensitive(is_secret || header == reqwest::header::AUTHORIZATION);
                    headers.insert(header, v);
                }
                Err(_) => errors.push(spec_error(value.pos, &field, "invalid header value")),
            }
        }
        match endpoint {
            Some(endpoint) if errors.is_empty() => Ok(Webhook {
                client: ctx.http.clone(),
                endpoint,
                key,
                headers,
                secrets,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        self.endpoint.target.clone()
    }

    /// The exact bytes and headers one send would use, at `sent_at`.
    pub fn request(
        &self,
        n: &Notification,
        sent_at: SystemTime,
    ) -> Result<(HeaderMap, Vec<u8>), SendError> {
        let body = serde_json::to_vec(&Payload::new(n, sent_at))
            .map_err(|e| SendError::permanent(format!("cannot encode the payload: {e}")))?;
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let unix = sent_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        headers.insert(TIMESTAMP_HEADER, HeaderValue::from(unix));
        headers.insert(EVENT_HEADER, HeaderValue::from_static(n.event.as_str()));
        if let Some(key) = &self.key {
            let tag = ring::hmac::sign(key, &body);
            let value = format!("sha256={}", hex(tag.as_ref()));
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(SIGNATURE_HEADER, value);
            }
        }
        Ok((headers, body))
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let (headers, body) = self.request(n, SystemTime::now())?;
        let secrets: Vec<&str> = self.secrets.iter().map(Secret::expose).collect();
        let reply = post(&self.client, &self.endpoint, headers, body).await?;
        reply.check(&self.endpoint, plain_explain, &secrets)
    }
}

fn is_reference(text: &str) -> bool {
    text.starts_with("env:") || text.starts_with("file:")
}

/// A literal, or the value of an `env:`/`file:` reference, which is then also remembered so it
/// can be scrubbed from error messages.
fn resolve(text: &str, secrets: &mut Vec<Secret>) -> Result<String, String> {
    if !is_reference(text) {
        return Ok(text.to_string());
    }
    let secret = Secret::resolve(text)?;
    let value = secret.expose().to_string();
    secrets.push(secret);
    Ok(value)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

impl super::NotifierKind for Webhook {
    type Spec = WebhookSpec;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<WebhookSpec>, ctx: &super::NotifyContext) -> Result<Self, Vec<SpecError>> {
        Webhook::new(spec, ctx)
    }

    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        Webhook::send(self, n)
    }

    fn target(&self) -> String {
        Webhook::target(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests_support::{entry, notification};

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        let tag = sign(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn request_is_signed_over_the_exact_body() {
        let ctx = NotifyContext::new().unwrap();
        let notifier = crate::notify::Notifier::new(
            entry("name: hook\nwebhook: {url: http://127.0.0.1:9/hook, headers: {X-Team: shop}}"),
            &ctx,
        )
        .unwrap();
        let crate::notify::Kind::Webhook(hook) = &notifier.kind else {
            panic!("not a webhook");
        };
        let n = notification(crate::notify::Event::Trigger);
        let at = UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let (headers, body) = hook.request(&n, at).unwrap();
        assert!(
            headers.get(SIGNATURE_HEADER).is_none(),
            "no secret, no signature"
        );
        assert_eq!(headers[TIMESTAMP_HEADER], "1700000000");
        assert_eq!(headers[EVENT_HEADER], "trigger");
        assert_eq!(headers["x-team"], "shop");
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["sent_at"], "2023-11-14T22:13:20Z");
        assert_eq!(json["event"], "trigger");
        assert_eq!(json["ended_at"], serde_json::Value::Null);
    }

    #[test]
    fn config_errors_are_all_reported() {
        let ctx = NotifyContext::new().unwrap();
        let errors = crate::notify::Notifier::new(
            entry(
                "name: hook\nwebhook:\n  url: ftp://x\n  secret: hunter2\n  headers: {Content-Type: text/plain, X-Key: env:SLOWBURN_TEST_UNSET_HEADER}\n",
            ),
            &ctx,
        )
        .unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webhook.url",
                "webhook.secret",
                "webhook.headers.Content-Type",
                "webhook.headers.X-Key"
            ],
            "{errors:?}"
        );
        assert_eq!(errors[0].pos.line, 3);
        assert!(
            errors[1].message.contains("never inline"),
            "{:?}",
            errors[1]
        );
    }
}
