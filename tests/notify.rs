//! Every notifier against a real peer on loopback: a recording HTTP receiver (axum) that
//! checks the exact payload shape, a small SMTP sink, and a real Alertmanager when installed
//! (`SLOWBURN_REQUIRE_ALERTMANAGER=1` makes its absence a failure, as in CI).
//!
//! Secrets are passed as `file:` references to files the test writes, because setting
//! environment variables needs `unsafe` in this edition; the docs example, which uses `env:`,
//! runs in a child process that is given the variables.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use slowburn::basics::yaml;
use slowburn::notify::{Event, Notification, Notifier, NotifierEntry, NotifyContext, SendError};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// Every test finishes within this, or fails.
const BOUND: Duration = Duration::from_secs(60);
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(BOUND, f)
        .await
        .expect("the test did not finish within its bound")
}

// ---------------------------------------------------------------------------------------------
// A recording HTTP receiver.

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("no header {name}: {:?}", self.headers))
    }
}

#[derive(Debug, Clone)]
enum Answer {
    Status(u16, String),
    Hang,
}

#[derive(Clone)]
struct Receiver {
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
    answer: Arc<Mutex<Answer>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let receiver = Receiver {
            addr: listener.local_addr().unwrap(),
            requests: Arc::default(),
            answer: Arc::new(Mutex::new(answer)),
        };
        let app = Router::new().fallback(record).with_state(receiver.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        receiver
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn answer(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    fn last(&self) -> Recorded {
        self.requests().pop().expect("the receiver got a request")
    }
}

async fn record(
    State(receiver): State<Receiver>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    receiver.requests.lock().unwrap().push(Recorded {
        method,
        path: uri.to_string(),
        headers,
        body: body.to_vec(),
    });
    let answer = receiver.answer.lock().unwrap().clone();
    match answer {
        Answer::Status(code, body) => (StatusCode::from_u16(code).unwrap(), body).into_response(),
        Answer::Hang => std::future::pending().await,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// Writes `value` to a fresh file and returns the `file:` reference to it.
fn secret_file(value: &str) -> String {
    static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("slowburn-notify-secret-{}-{n}", std::process::id()));
    std::fs::write(&path, format!("{value}\n")).unwrap();
    format!("file:{}", path.display())
}

fn entry(yaml_text: &str) -> NotifierEntry {
    let node = yaml::parse(yaml_text).expect("valid YAML");
    let unknown = std::cell::RefCell::new(Vec::new());
    let entry = yaml::from_node(&node, &unknown).expect("a notifier entry");
    assert!(unknown.borrow().is_empty(), "{:?}", unknown.borrow());
    entry
}

fn notifier(yaml_text: &str) -> Notifier {
    let ctx = NotifyContext::new().expect("HTTP client");
    Notifier::new(entry(yaml_text), &ctx).unwrap_or_else(|e| panic!("{e:?}"))
}

fn notification(event: Event) -> Notification {
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
        details: "checkout-api is failing since 2023-11-14T22:13:20Z (10m)\n\
                  reason: status 503 not in [200]\n\
                  runbook: https://wiki.example.com/runbooks/checkout\n\
                  ack: slowburn ack 42"
            .into(),
        labels,
        started_at,
        ended_at: (event == Event::Resolve).then(SystemTime::now),
        acked_by: (event == Event::Acknowledge).then(|| "alice".to_string()),
        runbook: Some("https://wiki.example.com/runbooks/checkout".into()),
        ack_hint: "slowburn ack 42  or  POST http://127.0.0.1:9464/api/v1/alerts/42/ack".into(),
        step: 1,
        failures: 7,
        recipient: Some(slowburn::oncall::Recipient {
            person: "alice".into(),
            notifier: "hook".into(),
            to: "U123".into(),
        }),
        links: None,
    }
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(items: &[&'a str]) -> BTreeSet<&'a str> {
    items.iter().copied().collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------------
// Webhook.

#[tokio::test]
async fn webhook_posts_the_documented_schema_signed_with_hmac_sha256() {
    within(async {
        let receiver = Receiver::start(Answer::Status(204, String::new())).await;
        let secret = "whsec-test-0123456789";
        let hook = notifier(&format!(
            "name: hook\nwebhook:\n  url: {}\n  secret: {}\n  headers: {{X-Team: shop, Authorization: {}}}\n",
            receiver.url("/hooks/slowburn?src=test"),
            secret_file(secret),
            secret_file("Bearer tok-123"),
        ));
        assert_eq!(hook.kind(), "webhook");
        assert_eq!(hook.wants_refresh(), None);
        hook.send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap();

        let req = receiver.last();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path, "/hooks/slowburn?src=test");
        assert_eq!(req.header("content-type"), "application/json");
        assert_eq!(req.header("x-team"), "shop");
        assert_eq!(req.header("authorization"), "Bearer tok-123");
        assert_eq!(req.header("x-slowburn-event"), "trigger");

        // The receiver's side: recompute the HMAC over the raw body before parsing it.
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let expected = format!("sha256={}", hex(ring::hmac::sign(&key, &req.body).as_ref()));
        assert_eq!(req.header("x-slowburn-signature"), expected);
        let wrong = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"another secret");
        assert_ne!(
            format!("sha256={}", hex(ring::hmac::sign(&wrong, &req.body).as_ref())),
            expected
        );

        let body = req.json();
        assert_eq!(
            keys(&body),
            set(&[
                "version",
                "event",
                "dedup_key",
                "alert_id",
                "probe",
                "reason",
                "severity",
                "summary",
                "details",
                "labels",
                "started_at",
                "ended_at",
                "acked_by",
                "runbook",
                "ack_hint",
                "step",
                "failures",
                "sent_at",
                "person",
                "to",
                "links"
            ])
        );
        assert_eq!(body["person"], "alice");
        assert_eq!(body["to"], "U123");
        assert_eq!(body["version"], 1);
        assert_eq!(body["event"], "trigger");
        assert_eq!(body["dedup_key"], "checkout-api:status");
        assert_eq!(body["alert_id"], 42);
        assert_eq!(body["severity"], "page");
        assert_eq!(body["labels"]["team"], "shop");
        assert_eq!(body["started_at"], "2023-11-14T22:13:20Z");
        assert_eq!(body["ended_at"], Value::Null);
        assert_eq!(body["acked_by"], Value::Null);
        assert_eq!(body["step"], 1);
        assert_eq!(body["failures"], 7);
        // The timestamp header is the body's sent_at, so the signature covers it.
        let unix: u64 = req.header("x-slowburn-timestamp").parse().unwrap();
        assert_eq!(
            body["sent_at"],
            slowburn::notify::rfc3339(UNIX_EPOCH + Duration::from_secs(unix))
        );
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        assert!(now.abs_diff(unix) < 60);

        hook.send(&notification(Event::Resolve), SEND_TIMEOUT)
            .await
            .unwrap();
        let resolved = receiver.last().json();
        assert_eq!(resolved["event"], "resolve");
        assert!(resolved["ended_at"].is_string());
        hook.send(&notification(Event::Acknowledge), SEND_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(receiver.last().json()["acked_by"], "alice");
    })
    .await
}

#[tokio::test]
async fn webhook_without_a_secret_is_unsigned() {
    within(async {
        let receiver = Receiver::start(Answer::Status(200, "ok".into())).await;
        let hook = notifier(&format!(
            "name: hook\nwebhook: {{url: '{}'}}",
            receiver.url("/")
        ));
        hook.send(&notification(Event::Flapping), SEND_TIMEOUT)
            .await
            .unwrap();
        let req = receiver.last();
        assert!(req.headers.get("x-slowburn-signature").is_none());
        assert_eq!(req.json()["event"], "flapping");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Slack.

#[tokio::test]
async fn slack_sends_text_and_blocks_to_the_secret_webhook_url() {
    within(async {
        let receiver = Receiver::start(Answer::Status(200, "ok".into())).await;
        let url = receiver.url("/services/T000/B000/XXXXSECRET");
        let slack = notifier(&format!(
            "name: oncall-slack\nslack: {{webhook_url: '{}'}}",
            secret_file(&url)
        ));
        assert_eq!(slack.kind(), "slack");
        assert!(!format!("{slack:?}").contains("XXXXSECRET"));
        slack
            .send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap();
        let req = receiver.last();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path, "/services/T000/B000/XXXXSECRET");
        assert_eq!(req.header("content-type"), "application/json");
        let body = req.json();
        assert_eq!(keys(&body), set(&["text", "blocks"]));
        // The notification is for alice, whose Slack member id is mentioned.
        assert_eq!(
            body["text"],
            "<@U123> 🔴 FIRING: checkout-api: status 503 not in [200]"
        );
        let blocks = body["blocks"].as_array().unwrap();
        let types: Vec<&str> = blocks.iter().map(|b| b["type"].as_str().unwrap()).collect();
        assert_eq!(
            types,
            ["header", "section", "section", "actions", "context"]
        );
        assert_eq!(blocks[0]["text"]["type"], "plain_text");
        assert_eq!(
            blocks[0]["text"]["text"],
            "🔴 FIRING: checkout-api: status 503 not in [200]"
        );
        assert_eq!(blocks[1]["text"]["type"], "mrkdwn");
        assert!(
            blocks[1]["text"]["text"]
                .as_str()
                .unwrap()
                .contains("failing since 2023-11-14T22:13:20Z")
        );
        let fields: Vec<&str> = blocks[2]["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["text"].as_str().unwrap())
            .collect();
        assert!(fields.contains(&"*Severity*\npage"), "{fields:?}");
        assert!(fields.contains(&"*Alert*\n#42 (step 2)"), "{fields:?}");
        let button = &blocks[3]["elements"][0];
        assert_eq!(button["type"], "button");
        assert_eq!(button["url"], "https://wiki.example.com/runbooks/checkout");
        assert_eq!(
            blocks[4]["elements"][0]["text"],
            "To acknowledge: `slowburn ack 42  or  POST http://127.0.0.1:9464/api/v1/alerts/42/ack`"
        );

        for (event, prefix) in [
            (Event::Acknowledge, "🟡 ACKNOWLEDGED by alice: "),
            (Event::Resolve, "🟢 RESOLVED: "),
            (Event::Flapping, "🟠 FLAPPING: "),
        ] {
            slack
                .send(&notification(event), SEND_TIMEOUT)
                .await
                .unwrap();
            let text = receiver.last().json()["text"].as_str().unwrap().to_string();
            assert!(text.starts_with(prefix), "{text}");
        }

        // Slack answers errors in plain text; the URL (a credential) never shows.
        receiver.answer(Answer::Status(404, "no_service".into()));
        let err = slack
            .send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap_err();
        assert!(!err.retryable);
        assert_eq!(
            err.message,
            format!("{}: HTTP 404 Not Found: no_service", receiver.addr)
        );
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// PagerDuty.

const PD_ACCEPTED: &str =
    r#"{"status":"success","message":"Event processed","dedup_key":"checkout-api:status"}"#;

#[tokio::test]
async fn pagerduty_sends_events_api_v2_with_the_right_action_per_event() {
    within(async {
        let receiver = Receiver::start(Answer::Status(202, PD_ACCEPTED.into())).await;
        let key = "R0UTINGKEY0123456789abcdefabcdef";
        let pd = notifier(&format!(
            "name: pd-primary\npagerduty: {{routing_key: '{}', url: '{}'}}",
            secret_file(key),
            receiver.url("/v2/enqueue")
        ));
        assert_eq!(pd.kind(), "pagerduty");
        assert_eq!(pd.wants_refresh(), None);
        for event in [
            Event::Trigger,
            Event::Acknowledge,
            Event::Resolve,
            Event::Flapping,
        ] {
            pd.send(&notification(event), SEND_TIMEOUT).await.unwrap();
        }
        let requests = receiver.requests();
        assert_eq!(requests.len(), 4);
        for req in &requests {
            assert_eq!(req.method, Method::POST);
            assert_eq!(req.path, "/v2/enqueue");
            assert_eq!(req.header("content-type"), "application/json");
        }
        let bodies: Vec<Value> = requests.iter().map(Recorded::json).collect();
        let actions: Vec<&str> = bodies
            .iter()
            .map(|b| b["event_action"].as_str().unwrap())
            .collect();
        assert_eq!(actions, ["trigger", "acknowledge", "resolve", "trigger"]);

        let trigger = &bodies[0];
        assert_eq!(
            keys(trigger),
            set(&[
                "routing_key",
                "event_action",
                "dedup_key",
                "payload",
                "links",
                "client"
            ])
        );
        assert_eq!(trigger["routing_key"], key);
        assert_eq!(trigger["dedup_key"], "checkout-api:status");
        assert_eq!(trigger["client"], "slowburn");
        assert_eq!(
            trigger["links"],
            serde_json::json!([{"href": "https://wiki.example.com/runbooks/checkout", "text": "Runbook"}])
        );
        let payload = &trigger["payload"];
        assert_eq!(
            keys(payload),
            set(&[
                "summary",
                "source",
                "severity",
                "timestamp",
                "component",
                "group",
                "class",
                "custom_details"
            ])
        );
        assert_eq!(payload["summary"], "checkout-api: status 503 not in [200]");
        assert_eq!(payload["source"], "checkout-api");
        assert_eq!(payload["severity"], "critical");
        assert_eq!(payload["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(payload["component"], "checkout-api");
        assert_eq!(payload["group"], "shop");
        assert_eq!(payload["class"], "status");
        assert_eq!(payload["custom_details"]["alert_id"], 42);
        assert_eq!(payload["custom_details"]["failures"], 7);
        assert!(
            payload["custom_details"]["details"]
                .as_str()
                .unwrap()
                .contains("runbook: https://wiki.example.com/runbooks/checkout")
        );

        for body in &bodies[1..3] {
            assert_eq!(
                keys(body),
                set(&["routing_key", "event_action", "dedup_key"])
            );
            assert_eq!(body["dedup_key"], "checkout-api:status");
        }
        let flapping = &bodies[3]["payload"];
        assert_eq!(flapping["severity"], "warning");
        assert_eq!(
            flapping["summary"],
            "[flapping] checkout-api: status 503 not in [200]"
        );
    })
    .await
}

#[tokio::test]
async fn pagerduty_rate_limits_and_outages_are_retryable_and_rejections_are_not() {
    within(async {
        let receiver = Receiver::start(Answer::Status(202, PD_ACCEPTED.into())).await;
        let key = "R0UTINGKEY-never-in-messages";
        let pd = notifier(&format!(
            "name: pd\npagerduty: {{routing_key: '{}', url: '{}'}}",
            secret_file(key),
            receiver.url("/v2/enqueue")
        ));
        let n = notification(Event::Trigger);
        let cases = [
            (429, r#"{"status":"throttle event","message":"Requests for this service are arriving too quickly."}"#, true),
            (500, "internal error", true),
            (502, "<html>bad gateway</html>", true),
            (503, "", true),
            (400, &format!(r#"{{"status":"invalid event","message":"Event object is invalid","errors":["'routing_key' {key} is invalid"]}}"#), false),
            (404, "", false),
        ];
        for (status, body, retryable) in cases {
            receiver.answer(Answer::Status(status, body.to_string()));
            let err: SendError = pd.send(&n, SEND_TIMEOUT).await.unwrap_err();
            assert_eq!(err.retryable, retryable, "{status}: {err}");
            assert!(
                err.message
                    .starts_with(&format!("{}: HTTP {status}", receiver.addr)),
                "{err}"
            );
            assert!(!err.message.contains(key), "secret in {err}");
        }
        receiver.answer(Answer::Status(400, cases[4].1.to_string()));
        let err = pd.send(&n, SEND_TIMEOUT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: HTTP 400 Bad Request: Event object is invalid: 'routing_key' *** is invalid",
                receiver.addr
            )
        );
        receiver.answer(Answer::Status(202, PD_ACCEPTED.into()));
        pd.send(&n, SEND_TIMEOUT).await.unwrap();
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Dead and hung receivers, for every HTTP kind.

#[tokio::test]
async fn a_refused_connection_is_retryable_and_says_so() {
    within(async {
        let port = closed_port().await;
        let url = format!("http://127.0.0.1:{port}/hook");
        let notifiers = [
            notifier(&format!("name: a\nwebhook: {{url: '{url}'}}")),
            notifier(&format!(
                "name: b\nslack: {{webhook_url: '{}'}}",
                secret_file(&url)
            )),
            notifier(&format!(
                "name: c\npagerduty: {{routing_key: '{}', url: '{url}'}}",
                secret_file("K")
            )),
            notifier(&format!("name: d\nalertmanager: {{url: '{url}'}}")),
            notifier(&format!(
                "name: e\nemail: {{smtp: 'smtp://127.0.0.1:{port}', starttls: false, from: sb@example.com, to: [oncall@example.com]}}"
            )),
        ];
        for n in &notifiers {
            let err = n
                .send(&notification(Event::Trigger), SEND_TIMEOUT)
                .await
                .unwrap_err();
            eprintln!("{}: {err}", n.kind());
            assert!(err.retryable, "{}: {err}", n.kind());
            assert!(
                err.message.starts_with(&format!("127.0.0.1:{port}: ")),
                "{}: {err}",
                n.kind()
            );
            assert!(
                err.message.to_lowercase().contains("connection refused"),
                "{}: {err}",
                n.kind()
            );
            assert!(!err.message.contains("/hook"), "{err}");
        }
        assert!(
            notifiers[0]
                .send(&notification(Event::Trigger), SEND_TIMEOUT)
                .await
                .unwrap_err()
                .message
                .contains("cannot connect")
        );
    })
    .await
}

#[tokio::test]
async fn a_hung_receiver_fails_within_the_timeout() {
    within(async {
        let receiver = Receiver::start(Answer::Hang).await;
        let smtp = SmtpSink::start(SmtpMode::Silent).await;
        let notifiers = [
            notifier(&format!(
                "name: a\nwebhook: {{url: '{}'}}",
                receiver.url("/")
            )),
            notifier(&format!(
                "name: b\nslack: {{webhook_url: '{}'}}",
                secret_file(&receiver.url("/s"))
            )),
            notifier(&format!(
                "name: c\npagerduty: {{routing_key: '{}', url: '{}'}}",
                secret_file("K"),
                receiver.url("/v2/enqueue")
            )),
            notifier(&format!(
                "name: d\nalertmanager: {{url: '{}'}}",
                receiver.url("")
            )),
            notifier(&format!(
                "name: e\nemail: {{smtp: 'smtp://{}', starttls: false, from: sb@example.com, to: [oncall@example.com]}}",
                smtp.addr
            )),
        ];
        let timeout = Duration::from_millis(400);
        for n in &notifiers {
            let started = Instant::now();
            let err = n
                .send(&notification(Event::Trigger), timeout)
                .await
                .unwrap_err();
            let took = started.elapsed();
            eprintln!("{}: {err} (after {took:?})", n.kind());
            assert!(took >= timeout, "{}: {took:?}", n.kind());
            assert!(took < timeout + Duration::from_secs(1), "{}: {took:?}", n.kind());
            assert!(err.retryable, "{}: {err}", n.kind());
            assert!(err.message.ends_with("no answer within 400ms"), "{err}");
        }
        assert_eq!(receiver.requests().len(), 4, "each HTTP notifier got through");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Alertmanager: payload shape against the recorder, then the real thing.

#[tokio::test]
async fn alertmanager_posts_api_v2_alerts() {
    within(async {
        let receiver = Receiver::start(Answer::Status(200, String::new())).await;
        let am = notifier(&format!(
            "name: am\nalertmanager: {{url: '{}', external_url: 'http://slowburn.example:9464/'}}",
            receiver.url("/prefix/")
        ));
        assert_eq!(am.kind(), "alertmanager");
        assert_eq!(am.wants_refresh(), Some(Duration::from_secs(60)));
        let before = SystemTime::now();
        am.send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap();
        let req = receiver.last();
        assert_eq!(req.method, Method::POST);
        assert_eq!(req.path, "/prefix/api/v2/alerts");
        let body = req.json();
        let alerts = body.as_array().unwrap();
        assert_eq!(alerts.len(), 1);
        let alert = &alerts[0];
        assert_eq!(
            keys(alert),
            set(&[
                "labels",
                "annotations",
                "startsAt",
                "endsAt",
                "generatorURL"
            ])
        );
        let labels: BTreeMap<String, String> =
            serde_json::from_value(alert["labels"].clone()).unwrap();
        let expected: BTreeMap<String, String> = [
            ("alertname", "SlowburnProbe"),
            ("dedup_key", "checkout-api:status"),
            ("kind", "http"),
            ("probe", "checkout-api"),
            ("reason", "status"),
            ("severity", "page"),
            ("team", "shop"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(labels, expected);
        assert_eq!(
            alert["annotations"]["summary"],
            "checkout-api: status 503 not in [200]"
        );
        assert!(
            alert["annotations"]["description"]
                .as_str()
                .unwrap()
                .contains("ack: slowburn ack 42")
        );
        assert_eq!(
            alert["annotations"]["runbook_url"],
            "https://wiki.example.com/runbooks/checkout"
        );
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20Z");
        assert_eq!(
            alert["generatorURL"],
            "http://slowburn.example:9464/api/v1/alerts/42"
        );
        // A firing alert expires on its own four refreshes from now.
        let ends = alert["endsAt"].as_str().unwrap().to_string();
        let low = slowburn::notify::rfc3339(before + Duration::from_secs(240));
        let high = slowburn::notify::rfc3339(SystemTime::now() + Duration::from_secs(240));
        assert!(low <= ends && ends <= high, "{low} <= {ends} <= {high}");

        let resolve = notification(Event::Resolve);
        am.send(&resolve, SEND_TIMEOUT).await.unwrap();
        let alert = receiver.last().json()[0].clone();
        assert_eq!(
            alert["endsAt"],
            slowburn::notify::rfc3339(resolve.ended_at.unwrap())
        );
        assert_eq!(alert["labels"]["dedup_key"], "checkout-api:status");
    })
    .await
}

const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";

/// A real Alertmanager on a free loopback port, stopped when dropped.
struct RealAlertmanager {
    child: tokio::process::Child,
    url: String,
    dir: PathBuf,
}

impl RealAlertmanager {
    async fn start() -> Option<RealAlertmanager> {
        if !std::path::Path::new(ALERTMANAGER).exists() {
            if std::env::var("SLOWBURN_REQUIRE_ALERTMANAGER").as_deref() == Ok("1") {
                panic!(
                    "{ALERTMANAGER} is missing and SLOWBURN_REQUIRE_ALERTMANAGER=1: \
                     apt-get install prometheus-alertmanager"
                );
            }
            eprintln!(
                "\n*** SKIPPED: prometheus-alertmanager not installed ({ALERTMANAGER}); \
                 the real-Alertmanager test did not run ***\n"
            );
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "slowburn-am-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            "route:\n  receiver: 'null'\nreceivers:\n  - name: 'null'\n",
        )
        .unwrap();
        let port = closed_port().await;
        let log = std::fs::File::create(dir.join("alertmanager.log")).unwrap();
        let child = tokio::process::Command::new(ALERTMANAGER)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.path={}", dir.join("data").display()))
            .arg("--cluster.listen-address=")
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("start prometheus-alertmanager");
        let am = RealAlertmanager {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = client.get(format!("{}/-/ready", am.url)).send().await;
            if matches!(&ready, Ok(r) if r.status().is_success()) {
                return Some(am);
            }
            assert!(
                Instant::now() < deadline,
                "Alertmanager did not become ready:\n{}",
                am.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }

    /// Our alerts as Alertmanager lists them (`/api/v2/alerts`, with a query).
    async fn ours(&self, query: &str) -> Vec<Value> {
        let text = reqwest::Client::new()
            .get(format!("{}/api/v2/alerts{query}", self.url))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let all: Vec<Value> = serde_json::from_str(&text).unwrap();
        all.into_iter()
            .filter(|a| a["labels"]["dedup_key"] == "checkout-api:status")
            .collect()
    }
}

impl Drop for RealAlertmanager {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn a_real_alertmanager_shows_the_alert_then_resolves_it() {
    within(async {
        // The provider must be installed before the test's own reqwest client is built.
        let ctx = NotifyContext::new().unwrap();
        let Some(real) = RealAlertmanager::start().await else {
            return;
        };
        let am = Notifier::new(
            entry(&format!("name: am\nalertmanager: {{url: '{}'}}", real.url)),
            &ctx,
        )
        .unwrap();
        am.send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", real.log()));
        let firing = real.ours("").await;
        assert_eq!(firing.len(), 1, "{firing:?}");
        let alert = &firing[0];
        for (k, v) in [
            ("alertname", "SlowburnProbe"),
            ("probe", "checkout-api"),
            ("reason", "status"),
            ("severity", "page"),
            ("team", "shop"),
            ("kind", "http"),
        ] {
            assert_eq!(alert["labels"][k], v, "{alert}");
        }
        assert_eq!(alert["status"]["state"], "active", "{alert}");
        assert_eq!(
            alert["annotations"]["summary"],
            "checkout-api: status 503 not in [200]"
        );
        assert_eq!(alert["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(real.ours("?active=true").await.len(), 1);

        // A refresh (the same alert again) keeps one alert, not two.
        am.send(&notification(Event::Acknowledge), SEND_TIMEOUT)
            .await
            .unwrap();
        let acked = real.ours("").await;
        assert_eq!(acked.len(), 1);
        assert_eq!(acked[0]["annotations"]["acknowledged_by"], "alice");

        am.send(&notification(Event::Resolve), SEND_TIMEOUT)
            .await
            .unwrap();
        // Alertmanager drops an alert whose endsAt has passed from the active list.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let active: Vec<Value> = real
                .ours("?active=true")
                .await
                .into_iter()
                .filter(|a| a["status"]["state"] == "active")
                .collect();
            if active.is_empty() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "still active after the resolve: {active:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }

        // An alert Alertmanager refuses (it would end before it starts) is a 400 that is not
        // worth retrying.
        let mut bad = notification(Event::Trigger);
        bad.dedup_key = "bad".into();
        bad.started_at = SystemTime::now() + Duration::from_secs(86_400);
        let err = am.send(&bad, SEND_TIMEOUT).await.unwrap_err();
        assert!(!err.retryable, "{err}");
        assert!(err.message.contains("HTTP 400"), "{err}");
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Email against an SMTP sink.

#[derive(Debug, Clone, Copy, PartialEq)]
enum SmtpMode {
    Accept,
    /// Answer RCPT with this code.
    RejectRcpt(u16),
    /// Accept the connection and never greet.
    Silent,
}

#[derive(Debug, Clone, Default)]
struct Mail {
    helo: String,
    from: String,
    to: Vec<String>,
    data: String,
}

struct SmtpSink {
    addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
}

impl SmtpSink {
    async fn start(mode: SmtpMode) -> SmtpSink {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mails: Arc<Mutex<Vec<Mail>>> = Arc::default();
        let sink_mails = mails.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let mails = sink_mails.clone();
                tokio::spawn(async move {
                    if mode == SmtpMode::Silent {
                        std::future::pending::<()>().await;
                    }
                    let _ = smtp_session(stream, mode, mails).await;
                });
            }
        });
        SmtpSink { addr, mails }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }
}

async fn smtp_session(
    stream: tokio::net::TcpStream,
    mode: SmtpMode,
    mails: Arc<Mutex<Vec<Mail>>>,
) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    write.write_all(b"220 sink.test ESMTP ready\r\n").await?;
    let mut mail = Mail::default();
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let command = line.trim_end().to_string();
        let verb = command
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: String = match verb.as_str() {
            "EHLO" | "HELO" => {
                mail.helo = command[4..].trim().to_string();
                "250-sink.test\r\n250 8BITMIME\r\n".into()
            }
            "MAIL" => {
                mail.from = command[5..].trim().to_string();
                "250 2.1.0 ok\r\n".into()
            }
            "RCPT" => match mode {
                SmtpMode::RejectRcpt(code) => format!("{code} no such mailbox here\r\n"),
                _ => {
                    mail.to.push(command[5..].trim().to_string());
                    "250 2.1.5 ok\r\n".into()
                }
            },
            "DATA" => {
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                mail.data = data;
                mails.lock().unwrap().push(std::mem::take(&mut mail));
                "250 2.0.0 queued\r\n".into()
            }
            "RSET" | "NOOP" => "250 ok\r\n".into(),
            "QUIT" => {
                write.write_all(b"221 bye\r\n").await?;
                return Ok(());
            }
            _ => "502 not implemented\r\n".into(),
        };
        write.write_all(reply.as_bytes()).await?;
    }
}

#[tokio::test]
async fn email_is_delivered_over_smtp_with_subject_and_details() {
    within(async {
        let sink = SmtpSink::start(SmtpMode::Accept).await;
        let mail = notifier(&format!(
            "name: mail\nemail:\n  smtp: smtp://{}\n  starttls: false\n  from: 'Slowburn <slowburn@example.com>'\n  to: [oncall@example.com, 'Backup <backup@example.com>']\n",
            sink.addr
        ));
        assert_eq!(mail.kind(), "email");
        assert_eq!(mail.wants_refresh(), None);
        mail.send(&notification(Event::Trigger), SEND_TIMEOUT)
            .await
            .unwrap();
        mail.send(&notification(Event::Resolve), SEND_TIMEOUT)
            .await
            .unwrap();
        let mails = sink.mails();
        assert_eq!(mails.len(), 2);
        let first = &mails[0];
        assert!(!first.helo.is_empty());
        assert_eq!(first.from, "FROM:<slowburn@example.com>");
        assert_eq!(
            first.to,
            ["TO:<oncall@example.com>", "TO:<backup@example.com>"]
        );
        let data = &first.data;
        assert!(
            data.contains("Subject: [FIRING] checkout-api: status 503 not in [200]\r\n"),
            "{data}"
        );
        assert!(
            data.contains("From: Slowburn <slowburn@example.com>\r\n"),
            "{data}"
        );
        assert!(
            data.contains("Content-Type: text/plain; charset=utf-8\r\n"),
            "{data}"
        );
        assert!(data.contains("X-Slowburn-Event: trigger\r\n"), "{data}");
        assert!(
            data.contains("X-Slowburn-Dedup-Key: checkout-api:status\r\n"),
            "{data}"
        );
        let body = data.split_once("\r\n\r\n").unwrap().1;
        assert!(
            body.contains("reason: status 503 not in [200]\r\n"),
            "{body}"
        );
        assert!(body.contains("ack: slowburn ack 42"), "{body}");
        assert!(
            mails[1]
                .data
                .contains("Subject: [RESOLVED] checkout-api: status 503 not in [200]")
        );
    })
    .await
}

#[tokio::test]
async fn email_rejections_are_permanent_and_deferrals_retryable() {
    within(async {
        for (code, retryable) in [(550, false), (451, true)] {
            let sink = SmtpSink::start(SmtpMode::RejectRcpt(code)).await;
            let mail = notifier(&format!(
                "name: mail\nemail: {{smtp: 'smtp://{}', starttls: false, from: a@example.com, to: [b@example.com]}}",
                sink.addr
            ));
            let err = mail
                .send(&notification(Event::Trigger), SEND_TIMEOUT)
                .await
                .unwrap_err();
            assert_eq!(err.retryable, retryable, "{code}: {err}");
            assert!(err.message.starts_with(&format!("{}: ", sink.addr)), "{err}");
            assert!(err.message.contains("no such mailbox here"), "{err}");
            assert!(sink.mails().is_empty());
        }
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Config validation through the YAML reader, and the docs example.

#[test]
fn every_config_mistake_is_reported_with_its_position() {
    let ctx = NotifyContext::new().unwrap();
    /// The entry, then each expected error: field, line, part of the message.
    type Case = (&'static str, &'static [(&'static str, usize, &'static str)]);
    let cases: &[Case] = &[
        ("name: x\n", &[("", 1, "a notifier needs exactly one kind")]),
        (
            "name: x\nwebhook: {url: 'http://h/'}\nslack: {webhook_url: env:X}\n",
            &[("", 1, "exactly one kind, found webhook and slack")],
        ),
        (
            "name: 'bad name'\nwebhook: {url: 'http://h/'}\n",
            &[("name", 1, "use letters")],
        ),
        (
            "name: x\nwebhook:\n  url: 'not a url'\n  secret: env:SLOWBURN_TEST_SURELY_UNSET\n",
            &[
                ("webhook.url", 3, "invalid URL"),
                ("webhook.secret", 4, "not set"),
            ],
        ),
        (
            "name: x\npagerduty:\n  routing_key: plaintext-key\n",
            &[("pagerduty.routing_key", 3, "never inline")],
        ),
        (
            "name: x\nalertmanager:\n  url: 'ftp://am'\n  refresh: soon\n",
            &[
                ("alertmanager.url", 3, "scheme must be http or https"),
                ("alertmanager.refresh", 4, "invalid duration"),
            ],
        ),
        (
            "name: x\nemail:\n  smtp: 'smtp://mail.example.com'\n  from: nobody\n  to: [ok@example.com, 'bad@']\n  password: env:SLOWBURN_TEST_SURELY_UNSET\n",
            &[
                ("email.from", 4, "invalid address"),
                ("email.to[1]", 5, "invalid address"),
                ("email.password", 6, "not set"),
                ("email.username", 6, "password needs a username"),
            ],
        ),
    ];
    for (text, expected) in cases {
        let errors = Notifier::new(entry(text), &ctx).unwrap_err();
        let found: Vec<(String, usize, String)> = errors
            .iter()
            .map(|e| (e.field.clone(), e.pos.line, e.message.clone()))
            .collect();
        assert_eq!(found.len(), expected.len(), "{text}\n{found:?}");
        for ((field, line, message), (want_field, want_line, want_message)) in
            found.iter().zip(expected.iter())
        {
            assert_eq!(field, want_field, "{text}\n{found:?}");
            assert_eq!(line, want_line, "{text}\n{found:?}");
            assert!(message.contains(want_message), "{text}\n{found:?}");
        }
    }
}

#[test]
fn unknown_keys_are_reported_by_the_reader() {
    let node = yaml::parse("name: x\nslack: {webhook_url: env:X, channel: '#ops'}\ncolour: red\n")
        .unwrap();
    let unknown = std::cell::RefCell::new(Vec::new());
    let _ = yaml::from_node::<NotifierEntry>(&node, &unknown);
    let unknown = unknown.into_inner();
    let mut messages: Vec<String> = unknown.iter().map(|e| e.message.clone()).collect();
    messages.sort();
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(messages[0].starts_with("unknown key `channel`, expected one of: webhook_url"));
    assert!(
        messages[1].starts_with("unknown key `colour`"),
        "{messages:?}"
    );
}

/// The `notifiers:` examples in docs/notifiers.md build. They use `env:` secrets, so the check
/// runs in a child process of this test binary that is given those variables.
#[test]
fn docs_examples_build() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/notifiers.md"))
        .expect("docs/notifiers.md");
    if std::env::var("SLOWBURN_DOCS_CHILD").is_err() {
        let child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "docs_examples_build",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SLOWBURN_DOCS_CHILD", "1")
            .env(
                "SLACK_WEBHOOK_URL",
                "https://hooks.slack.com/services/T000/B000/XXXX",
            )
            .env("PD_ROUTING_KEY", "0123456789abcdef0123456789abcdef")
            .env("HOOK_SECRET", "whsec-example")
            .env("HOOK_TOKEN", "Bearer example")
            .env("SMTP_PASSWORD", "example-password")
            .output()
            .unwrap();
        assert!(
            child.status.success(),
            "the docs examples failed to build:\n{}{}",
            String::from_utf8_lossy(&child.stdout),
            String::from_utf8_lossy(&child.stderr)
        );
        return;
    }
    let ctx = NotifyContext::new().unwrap();
    let mut built = Vec::new();
    for block in docs.split("```yaml").skip(1) {
        let text = block.split("```").next().unwrap();
        let root = yaml::parse(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let Some(list) = root.get("notifiers") else {
            continue;
        };
        let yaml::Value::Seq(items) = &list.value else {
            panic!("notifiers is a list:\n{text}");
        };
        for item in items {
            let unknown = std::cell::RefCell::new(Vec::new());
            let entry: NotifierEntry = yaml::from_node(item, &unknown).unwrap();
            assert!(unknown.borrow().is_empty(), "{:?}", unknown.borrow());
            let notifier = Notifier::new(entry, &ctx).unwrap_or_else(|e| panic!("{e:?}\n{text}"));
            built.push(notifier.kind());
        }
    }
    for kind in ["webhook", "slack", "pagerduty", "alertmanager", "email"] {
        assert!(
            built.contains(&kind),
            "no {kind} example in the docs: {built:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The contract every notifier keeps, as one scenario list run against each kind.

/// What a receiver understood from one request, in the kind's own terms.
type Decode = fn(&str) -> String;

fn decode_webhook(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["event"].as_str().unwrap_or("?").to_string()
}

fn decode_slack(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let text = v["text"].as_str().unwrap_or("");
    ["FIRING", "ACKNOWLEDGED", "RESOLVED"]
        .into_iter()
        .find(|word| text.contains(word))
        .unwrap_or("?")
        .to_string()
}

fn decode_pagerduty(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    v["event_action"].as_str().unwrap_or("?").to_string()
}

/// Alertmanager has no acknowledgement: an alert is active until its `endsAt` passes.
fn decode_alertmanager(body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap();
    let ends: jiff::Timestamp = v[0]["endsAt"].as_str().unwrap().parse().unwrap();
    if ends <= jiff::Timestamp::now() {
        "resolved".into()
    } else {
        "active".into()
    }
}

fn decode_email(data: &str) -> String {
    let subject = data
        .lines()
        .find_map(|l| l.strip_prefix("Subject: "))
        .unwrap_or("");
    subject
        .split(']')
        .next()
        .unwrap_or("")
        .trim_start_matches('[')
        .to_string()
}

#[tokio::test]
async fn every_notifier_delivers_trigger_acknowledge_and_resolve() {
    within(async {
        let scenario = [Event::Trigger, Event::Acknowledge, Event::Resolve];
        let receiver = Receiver::start(Answer::Status(200, "{}".into())).await;
        let sink = SmtpSink::start(SmtpMode::Accept).await;
        // Each kind: its entry, how to read what its peer received, and what the peer must
        // have understood from each event of the scenario.
        let kinds: Vec<(&str, String, Decode, [&str; 3])> = vec![
            (
                "webhook",
                format!("name: n\nwebhook: {{url: '{}'}}", receiver.url("/webhook")),
                decode_webhook,
                ["trigger", "acknowledge", "resolve"],
            ),
            (
                "slack",
                format!(
                    "name: n\nslack: {{webhook_url: '{}'}}",
                    secret_file(&receiver.url("/slack"))
                ),
                decode_slack,
                ["FIRING", "ACKNOWLEDGED", "RESOLVED"],
            ),
            (
                "pagerduty",
                format!(
                    "name: n\npagerduty: {{routing_key: '{}', url: '{}'}}",
                    secret_file("R0UT1NGKEY"),
                    receiver.url("/pagerduty")
                ),
                decode_pagerduty,
                ["trigger", "acknowledge", "resolve"],
            ),
            (
                "alertmanager",
                format!("name: n\nalertmanager: {{url: '{}'}}", receiver.url("/am")),
                decode_alertmanager,
                ["active", "active", "resolved"],
            ),
            (
                "email",
                format!(
                    "name: n\nemail: {{smtp: 'smtp://{}', starttls: false, from: sb@example.com, to: [oncall@example.com]}}",
                    sink.addr
                ),
                decode_email,
                ["FIRING", "ACKNOWLEDGED", "RESOLVED"],
            ),
        ];
        let covered: BTreeSet<&str> = kinds.iter().map(|(k, ..)| *k).collect();
        assert_eq!(
            covered,
            slowburn::notify::KIND_KEYS.iter().copied().collect(),
            "every notifier kind keeps the contract"
        );
        for (kind, yaml_text, decode, expected) in &kinds {
            let n = notifier(yaml_text);
            assert_eq!(n.kind(), *kind);
            let before = (receiver.requests().len(), sink.mails().len());
            for event in scenario {
                n.send(&notification(event), SEND_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| panic!("{kind} {event:?}: {e:?}"));
            }
            let seen: Vec<String> = if *kind == "email" {
                sink.mails()[before.1..]
                    .iter()
                    .map(|m| decode(&m.data))
                    .collect()
            } else {
                receiver.requests()[before.0..]
                    .iter()
                    .map(|r| decode(&String::from_utf8_lossy(&r.body)))
                    .collect()
            };
            assert_eq!(seen, expected, "{kind}: what its peer understood");
        }
    })
    .await
}
