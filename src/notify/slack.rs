//! The `slack:` notifier: a message to a Slack incoming webhook.
//!
//! The payload has `text` (the one-line fallback Slack shows in notifications) and `blocks`:
//! a header with an emoji by event, the details, a row of fields, a runbook button and the ack
//! hint. The webhook URL is itself the credential, so it is only accepted as a secret
//! reference and never appears in messages. Slack answers errors in plain text
//! (`invalid_payload`, `no_service`), which the error message quotes.

use std::fmt;

use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Endpoint, Event, Notification, NotifyContext, SendError, plain_explain, post, rfc3339,
    spec_error, truncate,
};
use crate::basics::SpecError;
use crate::basics::units::Secret;
use crate::basics::yaml::Spanned;

/// `slack:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SlackSpec {
    /// The incoming-webhook URL, `env:NAME` or `file:/path` (it is a credential).
    pub webhook_url: Spanned<String>,
}

/// A built Slack notifier.
pub struct Slack {
    client: reqwest::Client,
    endpoint: Endpoint,
    url: Secret,
}

impl fmt::Debug for Slack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slack")
            .field("target", &self.endpoint.target)
            .finish()
    }
}

impl Slack {
    /// Validates a spec and builds the notifier, returning every error found.
    pub fn new(spec: Spanned<SlackSpec>, ctx: &NotifyContext) -> Result<Slack, Vec<SpecError>> {
        let reference = &spec.value.webhook_url;
        let url = Secret::resolve(reference)
            .map_err(|m| vec![spec_error(reference.pos, "webhook_url", m)])?;
        let endpoint = Endpoint::parse(url.expose()).map_err(|m| {
            vec![spec_error(
                reference.pos,
                "webhook_url",
                format!("the value of {}: {m}", reference.value),
            )]
        })?;
        Ok(Slack {
            client: ctx.http.clone(),
            endpoint,
            url,
        })
    }

    pub fn target(&self) -> String {
        self.endpoint.target.clone()
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let body = serde_json::to_vec(&payload(n))
            .map_err(|e| SendError::permanent(format!("cannot encode the payload: {e}")))?;
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let reply = post(&self.client, &self.endpoint, headers, body).await?;
        reply.check(&self.endpoint, plain_explain, &[self.url.expose()])
    }
}

/// The emoji that colours each event.
fn emoji(event: Event) -> &'static str {
    match event {
        Event::Trigger => "🔴",
        Event::Acknowledge => "🟡",
        Event::Resolve => "🟢",
        Event::Flapping => "🟠",
    }
}

/// The Slack message for a notification. Text is cut to Slack's limits (header 150
/// characters, section 3000, field 2000) rather than rejected.
pub fn payload(n: &Notification) -> Value {
    let title = match (n.event, &n.acked_by) {
        (Event::Acknowledge, Some(who)) => format!("ACKNOWLEDGED by {who}"),
        (event, _) => event.title().to_string(),
    };
    // A page to a person mentions them (the acknowledge and resolve that follow do not): a Slack member id (`U…`, `W…`) as a mention, any other
    // address (`@alice`, `#orders-oncall`) as written.
    let page = n.event == Event::Trigger;
    let mention = match n.recipient.as_ref().filter(|_| page).map(|r| r.to.as_str()) {
        Some(id)
            if id.len() > 1
                && id.starts_with(['U', 'W'])
                && id.chars().all(|c| c.is_ascii_alphanumeric()) =>
        {
            format!("<@{id}> ")
        }
        Some(to) => format!("{to} "),
        None => String::new(),
    };
    let text = format!("{} {title}: {}", emoji(n.event), n.summary);
    let mut fields = vec![
        field("Probe", &n.probe),
        field("Reason", &n.reason),
        field("Severity", &n.severity),
        field("Since", &rfc3339(n.started_at)),
    ];
    if let Some(who) = &n.acked_by {
        fields.push(field("Acknowledged by", who));
    }
    if let Some(ended) = n.ended_at {
        fields.push(field("Resolved at", &rfc3339(ended)));
    }
    fields.push(field(
        "Alert",
        &format!("#{} (step {})", n.alert_id, n.step + 1),
    ));
    fields.push(field("Failures", &n.failures.to_string()));
    let mut blocks = vec![
        json!({
            "type": "header",
            "text": {"type": "plain_text", "text": truncate(&text, 150), "emoji": true}
        }),
        json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&escape(&n.details), 3000)}
        }),
        json!({"type": "section", "fields": fields}),
    ];
    match n.runbook.as_deref() {
        Some(url) if is_link(url) => blocks.push(json!({
            "type": "actions",
            "elements": [{
                "type": "button",
                "text": {"type": "plain_text", "text": "Runbook"},
                "url": url
            }]
        })),
        Some(runbook) => blocks.push(context(&format!("Runbook: {}", escape(runbook)))),
        None => {}
    }
    if matches!(n.event, Event::Trigger | Event::Flapping) && !n.ack_hint.is_empty() {
        blocks.push(context(&format!(
            "To acknowledge: `{}`",
            escape(&n.ack_hint)
        )));
    }
    // The mention goes in the message text, where Slack notifies the member (a header block
    // is plain text and would show it as written).
    json!({"text": truncate(&format!("{mention}{text}"), 3000), "blocks": blocks})
}

fn field(name: &str, value: &str) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&format!("*{name}*\n{}", escape(value)), 2000)})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": truncate(text, 3000)}]})
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; everything else is literal.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A button URL must be an absolute http(s) link of at most 3000 characters.
fn is_link(url: &str) -> bool {
    url.len() <= 3000
        && reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

impl super::NotifierKind for Slack {
    type Spec = SlackSpec;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<SlackSpec>, ctx: &super::NotifyContext) -> Result<Self, Vec<SpecError>> {
        Slack::new(spec, ctx)
    }

    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        Slack::send(self, n)
    }

    fn target(&self) -> String {
        Slack::target(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests_support::{entry, notification};

    #[test]
    fn trigger_has_text_header_details_fields_runbook_and_ack_hint() {
        let p = payload(&notification(Event::Trigger));
        assert_eq!(
            p["text"],
            "🔴 FIRING: checkout-api: status 503 not in [200]"
        );
        let blocks = p["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["header", "section", "section", "actions", "context"]
        );
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert!(
            blocks[1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("ack: slowburn ack 42")
        );
        assert_eq!(
            blocks[3]["elements"][0]["url"],
            "https://wiki.example.com/checkout"
        );
        assert!(
            blocks[4]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("slowburn ack 42")
        );
    }

    #[test]
    fn a_page_to_a_person_mentions_them() {
        let mut n = notification(Event::Trigger);
        let person = |to: &str| crate::oncall::Recipient {
            person: "alice".into(),
            notifier: "slack".into(),
            to: to.into(),
        };
        n.recipient = Some(person("U024BE7LH"));
        assert!(
            payload(&n)["text"]
                .as_str()
                .unwrap()
                .starts_with("<@U024BE7LH> 🔴 FIRING")
        );
        n.recipient = Some(person("#orders-oncall"));
        assert!(
            payload(&n)["text"]
                .as_str()
                .unwrap()
                .starts_with("#orders-oncall 🔴")
        );
        let header = &payload(&n)["blocks"][0]["text"]["text"];
        assert!(header.as_str().unwrap().starts_with("🔴"), "{header}");
    }

    #[test]
    fn acknowledge_and_resolve_say_who_and_when_without_the_ack_hint() {
        let ack = payload(&notification(Event::Acknowledge));
        assert_eq!(
            ack["text"],
            "🟡 ACKNOWLEDGED by alice: checkout-api: status 503 not in [200]"
        );
        let resolve = payload(&notification(Event::Resolve));
        assert!(resolve["text"].as_str().unwrap().starts_with("🟢 RESOLVED"));
        for p in [ack, resolve] {
            let last = p["blocks"].as_array().unwrap().last().unwrap().clone();
            assert_eq!(last["type"], "actions", "no ack hint after the page: {p}");
        }
    }

    #[test]
    fn markup_is_escaped_and_long_text_is_cut() {
        let mut n = notification(Event::Flapping);
        n.details = "<!channel> & ".repeat(1000);
        n.summary = "x".repeat(500);
        n.runbook = Some("see the wiki".into());
        let p = payload(&n);
        let blocks = p["blocks"].as_array().unwrap();
        assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
        let details = blocks[1]["text"]["text"].as_str().unwrap();
        assert!(details.starts_with("&lt;!channel&gt; &amp; "));
        assert!(details.chars().count() <= 3000);
        assert_eq!(
            blocks[3]["type"], "context",
            "a runbook that is not a URL is text"
        );
    }

    #[test]
    fn the_webhook_url_must_be_a_secret_and_is_never_echoed() {
        let ctx = NotifyContext::new().unwrap();
        let errors = crate::notify::Notifier::new(
            entry("name: s\nslack: {webhook_url: 'https://hooks.slack.com/services/T/B/X'}"),
            &ctx,
        )
        .unwrap_err();
        assert_eq!(errors[0].field, "slack.webhook_url");
        assert!(!errors[0].message.contains("hooks.slack.com"), "{errors:?}");
    }
}
