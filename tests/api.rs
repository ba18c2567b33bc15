//! The API against the real daemon: silences created, listed and deleted through the API,
//! manual resolve, 4xx answers with a message for bad requests, and uptime kept across a
//! restart.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use support::daemon::{Daemon, free_port, request_json, temp_dir, wait_http};

fn start(name: &str, token: Option<&str>) -> (Daemon, SocketAddr) {
    let dir = temp_dir(name);
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let closed = free_port();
    let token_line = if token.is_some() {
        ", api_token: env:SLOWBURN_TEST_TOKEN"
    } else {
        ""
    };
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"{token_line}}}\nprobes:\n  - {{name: down, labels: {{team: pay}}, interval: 200ms, timeout: 100ms, tcp: {{address: \"127.0.0.1:{closed}\"}}, alert: {{after: 1}}}}\n"
        ),
    )
    .unwrap();
    let env: Vec<(&str, &str)> = token
        .map(|t| vec![("SLOWBURN_TEST_TOKEN", t)])
        .unwrap_or_default();
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &env);
    wait_http(listen);
    (daemon, listen)
}

fn wait_for_alert(listen: SocketAddr) -> u64 {
    for _ in 0..100 {
        let (_, alerts) = request_json(listen, "GET", "/api/v1/alerts?state=firing", None, "");
        if let Some(id) = alerts[0]["id"].as_u64() {
            return id;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no alert fired");
}

#[test]
fn silences_resolve_and_refusals() {
    let token = Some("t0ken");
    let (_daemon, listen) = start("api", token);
    let id = wait_for_alert(listen);

    // Reads need no token; bad parameters are 4xx with a message.
    let (status, body) = request_json(listen, "GET", "/api/v1/alerts?state=bogus", None, "");
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("not firing, acknowledged, resolved or active")
    );
    assert_eq!(
        request_json(listen, "GET", "/api/v1/alerts/abc", None, "").0,
        400
    );
    assert_eq!(
        request_json(listen, "GET", "/api/v1/alerts/999", None, "").0,
        404
    );
    assert_eq!(
        request_json(listen, "POST", "/api/v1/alerts/999/ack", token, "{}").0,
        404
    );

    // Silences: writes need the token, bodies are checked like probe files.
    let body = r#"{"match": {"team": "pay"}, "starts": "2020-01-01T00:00:00Z", "ends": "2099-01-01T00:00:00Z", "comment": "migration", "created_by": "alice"}"#;
    assert_eq!(
        request_json(listen, "POST", "/api/v1/silences", None, body).0,
        401
    );
    assert_eq!(
        request_json(listen, "POST", "/api/v1/silences", Some("nope"), body).0,
        401
    );
    let (status, err) = request_json(
        listen,
        "POST",
        "/api/v1/silences",
        token,
        r#"{"match": {"team": "pay"}, "colour": "red"}"#,
    );
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("unknown key `colour`"),
        "{err}"
    );
    let (status, err) = request_json(
        listen,
        "POST",
        "/api/v1/silences",
        token,
        r#"{"match": {"team": "pay"}, "starts": "soon", "ends": "later"}"#,
    );
    assert_eq!(status, 400);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("is not an RFC 3339 time"),
        "{err}"
    );
    let (status, silence) = request_json(listen, "POST", "/api/v1/silences", token, body);
    assert_eq!(status, 201, "{silence}");
    let silence_id = silence["id"].as_str().unwrap().to_string();
    let (_, list) = request_json(listen, "GET", "/api/v1/silences", None, "");
    assert_eq!(list[0]["id"], silence_id.as_str());
    assert_eq!(list[0]["active"], true);
    assert_eq!(list[0]["source"], "api");
    assert_eq!(list[0]["comment"], "migration");
    // The firing alert is now shown as silenced.
    let mut silenced = false;
    for _ in 0..30 {
        silenced = request_json(listen, "GET", &format!("/api/v1/alerts/{id}"), None, "").1["silenced"]
            == true;
        if silenced {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(silenced, "the alert should show as silenced");
    let path = format!("/api/v1/silences/{silence_id}");
    assert_eq!(request_json(listen, "DELETE", &path, None, "").0, 401);
    assert_eq!(request_json(listen, "DELETE", &path, token, "").0, 204);
    assert_eq!(request_json(listen, "DELETE", &path, token, "").0, 404);

    // A manual resolve, once.
    let path = format!("/api/v1/alerts/{id}/resolve");
    let (status, resolved) = request_json(listen, "POST", &path, token, r#"{"by": "bob"}"#);
    assert_eq!(status, 200, "{resolved}");
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["resolved_by"], "bob");
    assert_eq!(request_json(listen, "POST", &path, token, "{}").0, 409);
}

#[test]
fn without_a_token_configured_writes_are_refused() {
    let (_daemon, listen) = start("api-no-token", None);
    let id = wait_for_alert(listen);
    let (status, body) = request_json(
        listen,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        Some("anything"),
        "{}",
    );
    assert_eq!(status, 403);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("set server.api_token")
    );
    assert_eq!(
        request_json(listen, "GET", &format!("/api/v1/alerts/{id}"), None, "").1["state"],
        "firing"
    );
}

/// `GET /api/v1/probes/{name}/uptime` once the 24 h window has counted at least `runs` runs.
fn wait_uptime(listen: SocketAddr, probe: &str, runs: u64) -> serde_json::Value {
    let path = format!("/api/v1/probes/{probe}/uptime");
    let mut last = serde_json::Value::Null;
    // Polled: runs every 200 ms are flushed to the store once a second.
    for _ in 0..100 {
        let (status, body) = request_json(listen, "GET", &path, None, "");
        assert_eq!(status, 200, "{body}");
        if body["windows"][0]["runs"].as_u64() >= Some(runs) {
            return body;
        }
        last = body;
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{probe} never counted {runs} runs: {last}");
}

#[test]
fn uptime_counts_every_run_and_survives_a_restart() {
    let dir = temp_dir("api-uptime");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let closed = free_port();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nstorage: {{path: uptime.db}}\nprobes:\n  \
             - {{name: up, interval: 200ms, timeout: 100ms, tcp: {{address: \"{listen}\"}}}}\n  \
             - {{name: down, interval: 200ms, timeout: 100ms, tcp: {{address: \"127.0.0.1:{closed}\"}}}}\n"
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);

    let up = wait_uptime(listen, "up", 3);
    assert_eq!(up["bucket_seconds"], 60);
    assert_eq!(up["retention_days"], 90);
    let names: Vec<&str> = up["windows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["window"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["24h", "7d", "30d", "90d"]);
    let window = &up["windows"][0];
    assert_eq!(window["seconds"], 86_400);
    assert_eq!(window["ok"], window["runs"], "{up}");
    assert_eq!(window["uptime_percent"], 100.0, "{up}");
    assert!(
        window["mean_duration_seconds"].as_f64().unwrap() < 0.1,
        "{up}"
    );
    // The days hold every run of the 90-day window (read just after it, so maybe a few more;
    // a run near midnight UTC makes two days).
    let days = up["days"].as_array().unwrap();
    assert!(!days.is_empty() && days.len() <= 2, "{up}");
    let day_runs: u64 = days.iter().map(|d| d["runs"].as_u64().unwrap()).sum();
    assert!(
        day_runs >= up["windows"][3]["runs"].as_u64().unwrap(),
        "{up}"
    );

    let down = wait_uptime(listen, "down", 3);
    assert_eq!(down["windows"][0]["ok"], 0, "{down}");
    assert_eq!(down["windows"][0]["uptime_percent"], 0.0, "{down}");
    let before = down["windows"][3]["runs"].as_u64().unwrap();

    let (status, body) = request_json(listen, "GET", "/api/v1/probes/nobody/uptime", None, "");
    assert_eq!(status, 404);
    assert!(body["error"].as_str().unwrap().contains("nobody"), "{body}");

    // SIGTERM flushes what is pending; the next daemon on the same store counts on from there.
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    let _daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    let (_, after) = request_json(listen, "GET", "/api/v1/probes/down/uptime", None, "");
    let after = after["windows"][3]["runs"].as_u64().unwrap();
    assert!(
        after >= before,
        "{after} runs after the restart, {before} before"
    );
}
