//! Alerting end to end with the real daemon: a failing probe pages through webhooks, the
//! escalation timer survives `kill -9`, a dead notifier does not hold up the others, and the
//! write API refuses requests without the right token.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use common::daemon::{Daemon, free_port, get, request_json, temp_dir, wait_http};
use common::receiver::Receiver;

#[test]
fn escalation_survives_kill_9_and_the_api_needs_the_token() {
    let (receiver, hooks) = Receiver::start();
    let dir = temp_dir("alerting-kill9");
    let port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    let closed = free_port();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            r#"server: {{listen: "{listen}", api_token: env:SLOWBURN_TEST_TOKEN}}
storage: {{path: state/slowburn.db}}
probes:
  - name: payments
    labels: {{team: pay}}
    interval: 300ms
    timeout: 200ms
    tcp: {{address: "127.0.0.1:{closed}"}}
    alert: {{after: 2, recover_after: 1, policy: oncall, runbook: "https://wiki/pay"}}
notifiers:
  - {{name: first, webhook: {{url: "http://{hooks}/first"}}}}
  - {{name: broken, webhook: {{url: "http://{hooks}/down"}}}}
  - {{name: second, webhook: {{url: "http://{hooks}/second"}}}}
policies:
  - name: oncall
    steps:
      - notify: [first, broken]
      - after: 6s
        notify: [second]
"#
        ),
    )
    .unwrap();

    let daemon = Daemon::start(
        &["run", "-c", "probes.yaml"],
        &dir,
        &[("SLOWBURN_TEST_TOKEN", "s3cret-token")],
    );
    wait_http(listen);
    receiver.wait_for("/first", "step 1 pages", Duration::from_secs(10), |e| {
        !e.is_empty()
    });
    assert_eq!(receiver.events("/first"), [("trigger".to_string(), 0)]);
    // The broken notifier is retried; the working one was not held up by it.
    receiver.wait_for(
        "/down",
        "the broken notifier is retried",
        Duration::from_secs(10),
        |e| e.len() >= 2,
    );

    // kill -9 between step 1 and step 2.
    drop(daemon);
    assert!(receiver.events("/second").is_empty());
    std::thread::sleep(Duration::from_secs(7));
    let daemon = Daemon::start(
        &["run", "-c", "probes.yaml"],
        &dir,
        &[("SLOWBURN_TEST_TOKEN", "s3cret-token")],
    );
    wait_http(listen);
    // Step 2 is overdue: it fires once, at once; step 1 is not repeated.
    receiver.wait_for(
        "/second",
        "overdue step 2 fires after the restart",
        Duration::from_secs(5),
        |e| !e.is_empty(),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(receiver.events("/second"), [("trigger".to_string(), 1)]);
    assert_eq!(receiver.events("/first"), [("trigger".to_string(), 0)]);

    let (status, alerts) = request_json(listen, "GET", "/api/v1/alerts?state=active", None, "");
    assert_eq!(status, 200);
    let alert = &alerts[0];
    assert_eq!(alert["dedup_key"], "payments:connect");
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["runbook"], "https://wiki/pay");
    let id = alert["id"].as_u64().unwrap();

    // Writes without the token, or with a wrong one, change nothing.
    let path = format!("/api/v1/alerts/{id}/ack");
    assert_eq!(request_json(listen, "POST", &path, None, "{}").0, 401);
    assert_eq!(
        request_json(listen, "POST", &path, Some("wrong"), "{}").0,
        401
    );
    assert_eq!(
        request_json(listen, "GET", &format!("/api/v1/alerts/{id}"), None, "").1["state"],
        "firing"
    );
    let (status, acked) = request_json(
        listen,
        "POST",
        &path,
        Some("s3cret-token"),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(status, 200, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acked_by"], "alice");
    assert_eq!(
        request_json(listen, "POST", &path, Some("s3cret-token"), "{}").0,
        409
    );

    // Everyone paged hears the ack.
    receiver.wait_for(
        "/first",
        "ack reaches step 1",
        Duration::from_secs(5),
        |e| e.iter().any(|(ev, _)| ev == "acknowledge"),
    );
    receiver.wait_for(
        "/second",
        "ack reaches step 2",
        Duration::from_secs(5),
        |e| e.iter().any(|(ev, _)| ev == "acknowledge"),
    );

    // The delivery record shows every attempt; metrics count them.
    let (_, detail) = request_json(listen, "GET", &format!("/api/v1/alerts/{id}"), None, "");
    let records = detail["notifications"].as_array().unwrap();
    let states: HashMap<String, String> = records
        .iter()
        .filter(|r| r["event"] == "trigger")
        .map(|r| {
            (
                r["notifier"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(states["first"], "sent");
    assert_eq!(states["second"], "sent");
    assert_ne!(states["broken"], "sent");
    let (_, metrics) = get(listen, "/metrics").unwrap();
    assert!(
        metrics.contains("slowburn_notifications_total{notifier=\"second\",result=\"sent\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slowburn_notifications_total{notifier=\"broken\",result=\"retried\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slowburn_alerts{state=\"acknowledged\"} 1"),
        "{metrics}"
    );
    drop(daemon);
}
