//! Alerting end to end with the real daemon: a failing probe pages through webhooks, the
//! escalation timer survives `kill -9`, a dead notifier does not hold up the others, and the
//! write API refuses requests without the right token.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use support::daemon::{Daemon, free_port, get, request_json, temp_dir, wait_http};
use support::receiver::Receiver;

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
    // Real time on purpose: the daemon is a real process, dead, and step 2's due time is a
    // wall-clock instant in its store; it must pass while nothing runs (paused tokio time
    // cannot stop a clock in another process). The engine's own timing is tested on virtual
    // time in tests/alert_engine.rs and tests/alert_service.rs.
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
    // Long enough for a duplicate to show if step 2 or step 1 were sent again.
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

/// A target whose behaviour the test switches: fast, slow (a latency step) or failing.
fn switchable_target() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU8>) {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicU8, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mode = std::sync::Arc::new(AtomicU8::new(0));
    let shared = mode.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mode = shared.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                let _ = stream.read(&mut buf);
                let status = match mode.load(Ordering::SeqCst) {
                    0 => "200 OK",
                    1 => {
                        std::thread::sleep(Duration::from_millis(60));
                        "200 OK"
                    }
                    _ => "503 Service Unavailable",
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                );
            });
        }
    });
    (addr, mode)
}

/// The alerts of `probe` as the API lists them.
fn alerts_of(listen: SocketAddr, probe: &str) -> Vec<serde_json::Value> {
    let (_, alerts) = request_json(listen, "GET", "/api/v1/alerts", None, "");
    alerts
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["probe"] == probe)
        .collect()
}

/// Regression: a change ticket was taken for the probe's run alert, so an outage was counted
/// on the ticket and paged nobody, and the next success resolved the ticket as "recovered".
#[test]
fn change_ticket_does_not_swallow_an_outage() {
    use std::sync::atomic::Ordering;
    let (receiver, hooks) = Receiver::start();
    let (target, mode) = switchable_target();
    let dir = temp_dir("alerting-change-ticket");
    let port = free_port();
    let listen = SocketAddr::from(([127, 0, 0, 1], port));
    // Two hours of a steady 2 ms latency, so change detection has its baseline on start.
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let store = slowburn::store::Store::open(&dir.join("state/slowburn.db")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let rows: Vec<(&str, &str, slowburn::store::Sample)> = (0..720)
        .map(|i| {
            let jitter = [0.0, 0.0002, -0.0001, 0.0001][i % 4];
            let t = now - 7200.0 + i as f64 * 10.0;
            (
                "checkout",
                "latency",
                slowburn::store::Sample {
                    t,
                    v: 0.002 + jitter,
                },
            )
        })
        .collect();
    store.append_samples(&rows).unwrap();
    drop(store);
    let interval = Duration::from_millis(200);
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            r#"server: {{listen: "{listen}"}}
storage: {{path: state/slowburn.db}}
probes:
  - name: checkout
    interval: 200ms
    timeout: 190ms
    http: {{url: "http://{target}/health"}}
    alert: {{after: 3, recover_after: 2, policy: oncall}}
    drift:
      latency: {{limit: 10s, horizon: 1h}}
notifiers:
  - {{name: first, webhook: {{url: "http://{hooks}/first"}}}}
policies:
  - name: oncall
    steps:
      - notify: [first]
"#
        ),
    )
    .unwrap();
    mode.store(1, Ordering::SeqCst);
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);

    // The latency step opens a change ticket.
    let started = std::time::Instant::now();
    let ticket = loop {
        if let Some(a) = alerts_of(listen, "checkout")
            .into_iter()
            .find(|a| a["reason"] == "change:latency")
        {
            break a;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no change ticket: {:?}",
            alerts_of(listen, "checkout")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(ticket["severity"], "ticket");
    let ticket_id = ticket["id"].as_u64().unwrap();
    let paged_for = |reason: &str| {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, j)| p == "/first" && j["reason"] == reason)
            .map(|(_, j)| j["event"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };

    // The probe now fails: step 1 is paged for the outage within after × interval (allowing
    // for two busy cores), and the ticket neither absorbs it nor pages again.
    mode.store(2, Ordering::SeqCst);
    let failing = std::time::Instant::now();
    while paged_for("status").is_empty() {
        assert!(
            failing.elapsed() < 3 * interval + Duration::from_secs(5),
            "the outage paged nobody: {:?}",
            alerts_of(listen, "checkout")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let lead = failing.elapsed();
    eprintln!("outage paged {lead:?} after the target began failing (after × interval = 600ms)");
    assert_eq!(paged_for("status"), ["trigger"]);

    // The target recovers: the outage resolves, the ticket is untouched.
    mode.store(1, Ordering::SeqCst);
    receiver.wait_for(
        "/first",
        "the outage resolves",
        Duration::from_secs(10),
        |_| paged_for("status") == ["trigger", "resolve"],
    );
    let (_, ticket) = request_json(
        listen,
        "GET",
        &format!("/api/v1/alerts/{ticket_id}"),
        None,
        "",
    );
    assert_eq!(ticket["state"], "firing", "{ticket}");
    assert_eq!(ticket["reason"], "change:latency");
    assert_eq!(ticket["origin"]["type"], "change");
    assert_eq!(
        ticket["failures"], 1,
        "the outage is not counted on the ticket"
    );
    let timeline = ticket["timeline"].to_string();
    assert!(!timeline.contains("recovered"), "{timeline}");
    assert!(!timeline.contains("status 503"), "{timeline}");
    assert_eq!(paged_for("change:latency"), ["trigger"]);
    drop(daemon);
}
