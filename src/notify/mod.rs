//! Notifiers: the last hop from an alert to a person or a system that pages one.
//!
//! A [`Notifier`] is built once from a `notifiers:` entry (validated while building, every
//! error with its position) and then asked to deliver [`Notification`]s. One file per kind:
//! [`webhook`], [`slack`], [`pagerduty`], [`alertmanager`], [`email`]; the private `Kind` enum
//! dispatches to them, so adding a kind is one file, one variant, one field of
//! [`NotifierEntry`] and one arm in each `match` below.
//!
//! A send is **one attempt**. Retries, backoff, the record of what was sent and the decision
//! of who is told what all live once in the alert engine (`crate::alert`); a notifier only
//! says whether a failed attempt is worth retrying ([`SendError::retryable`]). Notifiers know
//! nothing of the store, the scheduler or probes, and never put a secret in an error message
//! or a `Debug` output.

pub mod alertmanager;
pub mod email;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;

use crate::basics::SpecError;
use crate::basics::units::{Secret, format_duration};
use crate::basics::yaml::{Pos, Spanned};

/// What happened to an alert, from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Event {
    /// The alert fired (or escalated to a new step): page.
    Trigger,
    /// Someone acknowledged it: tell everyone already paged who did.
    Acknowledge,
    /// It recovered (or was resolved by hand): tell everyone paged.
    Resolve,
    /// It is flapping: one notice, then quiet until it settles.
    Flapping,
}

impl Event {
    /// The event named by [`as_str`](Self::as_str).
    pub fn parse(name: &str) -> Option<Event> {
        [
            Event::Trigger,
            Event::Acknowledge,
            Event::Resolve,
            Event::Flapping,
        ]
        .into_iter()
        .find(|e| e.as_str() == name)
    }

    /// The stable lowercase name used in payloads: `trigger`, `acknowledge`, `resolve`,
    /// `flapping`.
    pub fn as_str(self) -> &'static str {
        match self {
            Event::Trigger => "trigger",
            Event::Acknowledge => "acknowledge",
            Event::Resolve => "resolve",
            Event::Flapping => "flapping",
        }
    }

    /// A word for people, as in a subject line: `FIRING`, `ACKNOWLEDGED`, …
    pub fn title(self) -> &'static str {
        match self {
            Event::Trigger => "FIRING",
            Event::Acknowledge => "ACKNOWLEDGED",
            Event::Resolve => "RESOLVED",
            Event::Flapping => "FLAPPING",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a notifier may say about one alert event. The engine fills it; notifiers only
/// format it.
#[derive(Debug, Clone)]
pub struct Notification {
    pub event: Event,
    /// Stable per (probe, reason), e.g. `checkout-api:status`: PagerDuty's `dedup_key`,
    /// Alertmanager's `dedup_key` label.
    pub dedup_key: String,
    /// This incident's id.
    pub alert_id: u64,
    pub probe: String,
    /// Short stable failure reason or detector (`status`, `drift:rss`).
    pub reason: String,
    /// `page` or `ticket`.
    pub severity: String,
    /// One line: what failed where (`checkout-api: status 503 not in [200]`).
    pub summary: String,
    /// Several lines: since when, reason, drift ETA if any, runbook, how to ack.
    pub details: String,
    /// The probe's labels plus `probe`, `kind`, `reason` and `severity`.
    pub labels: BTreeMap<String, String>,
    pub started_at: SystemTime,
    pub ended_at: Option<SystemTime>,
    pub acked_by: Option<String>,
    pub runbook: Option<String>,
    /// How to acknowledge, e.g. `slowburn ack 42  or  POST http://…/api/v1/alerts/42/ack`.
    pub ack_hint: String,
    /// The escalation step that sends this (0-based).
    pub step: usize,
    /// Failures counted while firing.
    pub failures: u64,
    /// The person this notification pages and their address on this notifier, when the
    /// step named a person or a schedule.
    pub recipient: Option<crate::oncall::Recipient>,
    /// Signed one-click links to acknowledge and resolve (with `server.external_url`).
    pub links: Option<crate::oncall::links::Links>,
}

impl Notification {
    /// Addresses this notification to `recipient`, and says so in its details.
    pub fn with_recipient(&mut self, recipient: Option<crate::oncall::Recipient>) {
        if let Some(r) = &recipient {
            self.details = format!(
                "Paging {} ({}: {})\n{}",
                r.person, r.notifier, r.to, self.details
            );
        }
        self.recipient = recipient;
    }

    /// Adds the signed links, and says them in the details for notifiers that send text.
    pub fn with_links(&mut self, links: crate::oncall::links::Links) {
        self.details.push_str(&format!(
            "Acknowledge: {}\nResolve: {}\n",
            links.ack, links.resolve
        ));
        self.links = Some(links);
    }
}

/// Why one attempt failed, and whether another attempt may succeed.
///
/// 429, 5xx, connection failures and timeouts are retryable; other 4xx, a rejected recipient
/// or a refused login are not. The message never contains a secret (URLs are reduced to
/// `host:port`, secret values are scrubbed from anything a server echoes back).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub retryable: bool,
    pub message: String,
}

impl SendError {
    /// A failure that another attempt may not repeat (rate limit, outage, network).
    pub fn retryable(message: impl Into<String>) -> Self {
        SendError {
            retryable: true,
            message: message.into(),
        }
    }

    /// A failure that will repeat until the config or the receiver changes.
    pub fn permanent(message: impl Into<String>) -> Self {
        SendError {
            retryable: false,
            message: message.into(),
        }
    }

    /// Replaces every occurrence of a secret value in the message with `***`.
    fn scrub(mut self, secrets: &[&str]) -> Self {
        for secret in secrets.iter().filter(|s| s.len() >= 4) {
            self.message = self.message.replace(secret, "***");
        }
        self
    }
}

/// The table of notifier kinds. Each row (`key => Variant(module::Type)`) generates the
/// kind's field of [`NotifierEntry`], its key in [`KIND_KEYS`], its variant and its arm in
/// every dispatch; the kind's own file holds its spec and its [`NotifierKind`] impl. Adding a
/// notifier is one file plus one row.
macro_rules! notifier_kinds {
    ($($key:ident => $variant:ident($module:ident::$kind:ident),)*) => {
        /// One `notifiers:` entry as written in a probe file: a name and exactly one kind.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct NotifierEntry {
            pub name: Spanned<String>,
            $(pub $key: Option<Spanned<<$module::$kind as NotifierKind>::Spec>>,)*
        }

        /// The kind keys of [`NotifierEntry`].
        pub const KIND_KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Every notifier kind's key and the JSON Schema of its section, in table order.
        pub fn kind_schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, schemars::Schema)> {
            vec![$((stringify!($key), <$module::$kind as NotifierKind>::schema(generator)),)*]
        }

        #[derive(Debug)]
        enum Kind {
            $($variant(Box<$module::$kind>),)*
        }

        impl NotifierEntry {
            /// The keys of the kinds given.
            fn given(&self) -> Vec<&'static str> {
                let mut given = Vec::new();
                $(if self.$key.is_some() {
                    given.push(stringify!($key));
                })*
                given
            }

            fn build_first(self, ctx: &NotifyContext) -> Option<Result<Kind, Vec<SpecError>>> {
                $(if let Some(spec) = self.$key {
                    return Some(
                        <$module::$kind as NotifierKind>::new(spec, ctx)
                            .map(|k| Kind::$variant(Box::new(k))),
                    );
                })*
                None
            }
        }

        impl Kind {
            fn name(&self) -> &'static str {
                match self {
                    $(Kind::$variant(_) => stringify!($key),)*
                }
            }

            async fn send(&self, n: &Notification) -> Result<(), SendError> {
                match self {
                    $(Kind::$variant(k) => k.send(n).await,)*
                }
            }

            fn wants_refresh(&self) -> Option<Duration> {
                match self {
                    $(Kind::$variant(k) => k.wants_refresh(),)*
                }
            }

            fn target(&self) -> String {
                match self {
                    $(Kind::$variant(k) => k.target(),)*
                }
            }
        }
    };
}

notifier_kinds! {
    webhook => Webhook(webhook::Webhook),
    slack => Slack(slack::Slack),
    pagerduty => PagerDuty(pagerduty::PagerDuty),
    alertmanager => Alertmanager(alertmanager::Alertmanager),
    email => Email(email::Email),
}

/// What every notifier kind implements; [`notifier_kinds!`] dispatches to it.
pub trait NotifierKind: Sized {
    /// The kind's section as written in a probe file.
    type Spec: for<'de> Deserialize<'de>;
    /// Builds the notifier, validating the spec; every error found.
    fn new(spec: Spanned<Self::Spec>, ctx: &NotifyContext) -> Result<Self, Vec<SpecError>>;
    /// One attempt to deliver `n`; retries belong to the alert service.
    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send;
    /// Where it sends, safe to show: `host:port`, never a path or a secret.
    fn target(&self) -> String;
    /// How often a still-firing alert must be sent again, if this kind forgets alerts that
    /// are not refreshed (Alertmanager's `resolve_timeout`).
    fn wants_refresh(&self) -> Option<Duration> {
        None
    }
    /// The JSON Schema of the kind's section, for `slowburn schema`. The default takes any
    /// mapping; a kind whose spec derives `schemars::JsonSchema` answers
    /// `generator.subschema_for::<Self::Spec>()`, so editors can check its keys.
    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let _ = generator;
        schemars::json_schema!({"type": "object"})
    }
}

/// Shared, expensive things notifiers are built with: one HTTP client for every HTTP
/// notifier (connections are pooled per host). Passed in, never global.
#[derive(Debug, Clone)]
pub struct NotifyContext {
    http: reqwest::Client,
}

/// The HTTP client for notifiers could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client for notifiers: {0}")]
pub struct ContextError(String);

impl NotifyContext {
    /// Builds the shared HTTP client. reqwest is built without a bundled crypto provider, so
    /// this installs rustls' `ring` provider as the process default if none is installed yet
    /// (installing is idempotent; a provider installed earlier by someone else is kept).
    pub fn new() -> Result<NotifyContext, ContextError> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            // Losing a race with another installer is fine: some provider is then installed.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("slowburn/", env!("CARGO_PKG_VERSION")))
            // A redirected POST silently turns into a GET in most clients; refuse instead, so
            // a moved endpoint is a clear error rather than a lost page.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ContextError(error_chain(&e)))?;
        Ok(NotifyContext { http })
    }
}

/// One configured notifier (`notifiers:` entry), built and validated.
#[derive(Debug)]
pub struct Notifier {
    pub name: String,
    kind: Kind,
}

impl Notifier {
    /// Validates an entry and builds the notifier, returning every error found. Each error's
    /// `field` is the key path inside the entry (`pagerduty.routing_key`, `email.to[1]`).
    pub fn new(entry: NotifierEntry, ctx: &NotifyContext) -> Result<Notifier, Vec<SpecError>> {
        let mut errors = Vec::new();
        let name = entry.name.clone();
        if name.is_empty()
            || name.len() > 200
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-/".contains(c))
        {
            errors.push(SpecError::new(
                name.pos,
                "name",
                "use letters, digits and _ . : - / (at most 200)",
            ));
        }
        let given = entry.given();
        if given.len() != 1 {
            let message = if given.is_empty() {
                format!(
                    "a notifier needs exactly one kind: {}",
                    KIND_KEYS.join(", ")
                )
            } else {
                format!(
                    "a notifier has exactly one kind, found {}",
                    given.join(" and ")
                )
            };
            errors.push(SpecError::new(name.pos, "", message));
            return Err(errors);
        }
        let Some(built) = entry.build_first(ctx) else {
            return Err(errors);
        };
        let kind_name = given[0];
        match built {
            Ok(kind) if errors.is_empty() => Ok(Notifier {
                name: name.value,
                kind,
            }),
            Ok(_) => Err(errors),
            Err(kind_errors) => {
                errors.extend(kind_errors.into_iter().map(|mut e| {
                    e.field = if e.field.is_empty() {
                        kind_name.to_string()
                    } else {
                        format!("{kind_name}.{}", e.field)
                    };
                    e
                }));
                Err(errors)
            }
        }
    }

    /// The kind's name: `webhook`, `slack`, `pagerduty`, `alertmanager` or `email`.
    pub fn kind(&self) -> &'static str {
        self.kind.name()
    }

    /// One attempt to deliver `n`. No retries here. `timeout` bounds the whole attempt
    /// (connect, TLS, request, response); running out of it is a retryable error.
    pub async fn send(&self, n: &Notification, timeout: Duration) -> Result<(), SendError> {
        match tokio::time::timeout(timeout, self.kind.send(n)).await {
            Ok(result) => result,
            Err(_) => Err(SendError::retryable(format!(
                "{}: no answer within {}",
                self.target(),
                format_duration(timeout)
            ))),
        }
    }

    /// How often a still-firing alert must be sent again, if this kind forgets alerts that
    /// are not refreshed (Alertmanager's `resolve_timeout`); `None` for the others.
    pub fn wants_refresh(&self) -> Option<Duration> {
        self.kind.wants_refresh()
    }

    /// Where this notifier sends, safe to show: `host:port`, never a path or a secret.
    pub fn target(&self) -> String {
        self.kind.target()
    }
}

/// Formats a time as RFC 3339 in UTC with second precision: `2026-05-01T05:02:03Z`.
/// Times before 1970 print as the epoch.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs().min(i64::MAX as u64)) as i64;
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::MAX)
        .to_string()
}

/// Cuts `text` to at most `max` characters, marking the cut with `…`.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Reads a value that may be a secret reference (`env:`/`file:`) or a literal.
fn secret_or_literal(text: &str) -> Result<String, String> {
    if text.starts_with("env:") || text.starts_with("file:") {
        Secret::resolve(text).map(|s| s.expose().to_string())
    } else {
        Ok(text.to_string())
    }
}

/// An HTTP(S) address to POST to, and how to name it without revealing it.
#[derive(Clone)]
struct Endpoint {
    url: Url,
    /// `host:port`, the only part of the URL that appears in messages.
    target: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Endpoint({})", self.target)
    }
}

impl Endpoint {
    /// Parses an absolute http or https URL. The message never repeats the URL, which may be
    /// a credential (a Slack webhook URL is one).
    fn parse(text: &str) -> Result<Endpoint, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("invalid URL: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "invalid URL: scheme must be http or https, not {:?}",
                url.scheme()
            ));
        }
        let Some(host) = url.host_str() else {
            return Err("invalid URL: no host".into());
        };
        if !url.username().is_empty() || url.password().is_some() {
            return Err(
                "credentials in the URL would be logged by proxies; use headers instead".into(),
            );
        }
        let target = match url.port_or_known_default() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Endpoint { url, target })
    }
}

/// What came back from a POST that reached the server.
struct Reply {
    status: reqwest::StatusCode,
    body: String,
    retry_after: Option<String>,
}

/// Answers larger than this are cut: only an error message is wanted from them.
const MAX_REPLY: usize = 64 * 1024;

/// POSTs `body` and reads the reply. Transport failures are classified here; the status is
/// judged by [`Reply::check`].
async fn post(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    headers: HeaderMap,
    body: Vec<u8>,
) -> Result<Reply, SendError> {
    let response = client
        .post(endpoint.url.clone())
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&endpoint.target, e))?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = response;
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = MAX_REPLY.saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if bytes.len() >= MAX_REPLY {
                    break;
                }
            }
            Ok(None) => break,
            // The status is what matters; a reply cut short still has one.
            Err(_) => break,
        }
    }
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&bytes).into_owned(),
        retry_after,
    })
}

impl Reply {
    /// Accepts any 2xx. 408, 425, 429 and 5xx are retryable; every other status is not.
    /// `explain` pulls the receiver's own error message out of the body.
    fn check(
        &self,
        endpoint: &Endpoint,
        explain: fn(&str) -> String,
        secrets: &[&str],
    ) -> Result<(), SendError> {
        let status = self.status;
        if status.is_success() {
            return Ok(());
        }
        let mut message = format!("{}: HTTP {status}", endpoint.target);
        let detail = explain(&self.body);
        let detail = truncate(detail.trim(), 300);
        if !detail.is_empty() {
            message.push_str(": ");
            message.push_str(&detail);
        }
        if let Some(after) = &self.retry_after {
            message.push_str(&format!(" (Retry-After: {})", truncate(after, 40)));
        }
        let retryable = matches!(status.as_u16(), 408 | 425 | 429) || status.is_server_error();
        if status.is_redirection() {
            message.push_str(" (redirects are not followed: configure the final URL)");
        }
        Err(SendError { retryable, message }.scrub(secrets))
    }
}

/// The body as the explanation, on one line.
fn plain_explain(body: &str) -> String {
    body.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Describes a transport failure without the URL (which may be a secret).
fn transport_error(target: &str, e: reqwest::Error) -> SendError {
    let e = e.without_url();
    let chain = error_chain(&e);
    if e.is_builder() {
        SendError::permanent(format!("{target}: cannot build the request: {chain}"))
    } else if e.is_timeout() {
        SendError::retryable(format!("{target}: timed out: {chain}"))
    } else if e.is_connect() {
        // The layers above the socket ("error sending request", "client error (Connect)")
        // say nothing the word "connect" does not; the innermost cause is the news.
        SendError::retryable(format!("{target}: cannot connect: {}", root_cause(&e)))
    } else {
        SendError::retryable(format!("{target}: request failed: {chain}"))
    }
}

/// The innermost source of an error.
fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cause = e;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// An error and its sources, joined with `: `, each distinct message once.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

/// A spanned error helper for the kind modules.
fn spec_error(pos: Pos, field: &str, message: impl Into<String>) -> SpecError {
    SpecError::new(pos, field, message)
}

/// Helpers for the unit tests of every notifier file.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// Reads one `notifiers:` entry; panics on unknown keys or a structural error.
    pub fn entry(yaml: &str) -> NotifierEntry {
        let node = crate::basics::yaml::parse(yaml).expect("valid YAML");
        let unknown = std::cell::RefCell::new(Vec::new());
        let entry = crate::basics::yaml::from_node(&node, &unknown).expect("a notifier entry");
        assert!(unknown.borrow().is_empty(), "{:?}", unknown.borrow());
        entry
    }

    /// A fully filled notification for `checkout-api` failing on `status`.
    pub fn notification(event: Event) -> Notification {
        let started_at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let labels = [
            ("kind", "http"),
            ("probe", "checkout-api"),
            ("reason", "status"),
            ("severity", "page"),
            ("team", "shop"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Notification {
            event,
            dedup_key: "checkout-api:status".into(),
            alert_id: 42,
            probe: "checkout-api".into(),
            reason: "status".into(),
            severity: "page".into(),
            summary: "checkout-api: status 503 not in [200]".into(),
            details: "failing since 2023-11-14T22:13:20Z\nreason: status 503 not in [200]\nrunbook: https://wiki.example.com/checkout\nack: slowburn ack 42".into(),
            labels,
            started_at,
            ended_at: (event == Event::Resolve).then(|| started_at + Duration::from_secs(600)),
            acked_by: (event == Event::Acknowledge).then(|| "alice".to_string()),
            runbook: Some("https://wiki.example.com/checkout".into()),
            ack_hint: "slowburn ack 42  or  POST http://127.0.0.1:9464/api/v1/alerts/42/ack"
                .into(),
            step: 0,
            failures: 3,
            recipient: None,
            links: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine shares notifiers across tasks and spawns sends.
    #[test]
    fn notifiers_and_their_sends_can_cross_threads() {
        fn shared<T: Send + Sync>() {}
        fn spawnable<T: Send>(_: &T) {}
        shared::<Notifier>();
        shared::<NotifyContext>();
        let ctx = NotifyContext::new().unwrap();
        let notifier = Notifier::new(
            tests_support::entry("name: am\nalertmanager: {url: 'http://127.0.0.1:9'}"),
            &ctx,
        )
        .unwrap();
        let n = tests_support::notification(Event::Trigger);
        spawnable(&notifier.send(&n, Duration::from_millis(1)));
    }

    #[test]
    fn rfc3339_formats_utc_seconds() {
        let at = |secs: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_795_476_123), "2026-11-23T23:22:03Z");
        assert_eq!(
            rfc3339(UNIX_EPOCH + Duration::from_millis(1_500)),
            "1970-01-01T00:00:01Z"
        );
        assert_eq!(
            rfc3339(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00Z"
        );
    }

    #[test]
    fn truncation_marks_the_cut_and_respects_characters() {
        assert_eq!(truncate("short", 10), "short");
        assert_eq!(truncate("ééééé", 3), "éé…");
        assert_eq!(truncate("abcdef", 6), "abcdef");
    }

    #[test]
    fn endpoints_never_repeat_the_url_in_errors() {
        let ok = Endpoint::parse("https://hooks.example.com/services/T0/B0/SECRET").unwrap();
        assert_eq!(ok.target, "hooks.example.com:443");
        assert_eq!(format!("{ok:?}"), "Endpoint(hooks.example.com:443)");
        for bad in [
            "ftp://host/SECRET",
            "not a url SECRET",
            "https://user:SECRET@host/",
        ] {
            let message = Endpoint::parse(bad).unwrap_err();
            assert!(!message.contains("SECRET"), "{message}");
        }
    }

    #[test]
    fn statuses_are_classified() {
        let endpoint = Endpoint::parse("http://127.0.0.1:9/x").unwrap();
        let reply = |code: u16, body: &str| Reply {
            status: reqwest::StatusCode::from_u16(code).unwrap(),
            body: body.into(),
            retry_after: None,
        };
        assert!(reply(202, "").check(&endpoint, plain_explain, &[]).is_ok());
        for (code, retryable) in [
            (429, true),
            (500, true),
            (503, true),
            (400, false),
            (404, false),
            (301, false),
        ] {
            let err = reply(code, "nope")
                .check(&endpoint, plain_explain, &[])
                .unwrap_err();
            assert_eq!(err.retryable, retryable, "{code}");
            assert!(
                err.message
                    .starts_with(&format!("127.0.0.1:9: HTTP {code}")),
                "{err}"
            );
        }
        let err = reply(400, "bad key s3cr3t-key")
            .check(&endpoint, plain_explain, &["s3cr3t-key"])
            .unwrap_err();
        assert_eq!(
            err.message,
            "127.0.0.1:9: HTTP 400 Bad Request: bad key ***"
        );
    }
}
