//! The API the status page reads, against the real daemon: the page and its assets, filtered
//! and paged probe lists, the overview, signal history with the drift fit, and the alert and
//! silence endpoints — with bad parameters answered 4xx and a message.

mod support;
use support::ui;

use std::time::Duration;

use ui::{Daemon, Receiver, http, wait_until};

const TOKEN: &str = "page-token";

/// One daemon for every API case: a leaking watched probe with seeded history, a failing
/// probe that pages a webhook, and a few healthy ones.
fn daemon(name: &str) -> (Daemon, Receiver) {
    let dir = ui::temp_dir(name);
    let (receiver, hooks) = Receiver::start();
    let up = ui::open_port();
    let closed = ui::free_port();
    let now = ui::unix_now();
    // Latency creeping from 200ms by 100ms an hour: the fit meets the 2s limit in ~12h, inside
    // the one-day horizon, so the trend fires.
    let rows: Vec<(&str, &str, f64, f64)> = (0..360)
        .map(|i| {
            let back = f64::from(360 - i) * 60.0;
            let wobble = (f64::from(i) / 5.0).sin() * 0.01;
            (
                "creeping",
                "latency",
                now - back,
                0.8 - 0.1 * back / 3600.0 + wobble,
            )
        })
        .collect();
    ui::seed(&dir.join("state/slowburn.db"), &rows);
    let config = format!(
        r#"server: {{listen: "{{listen}}", api_token: env:SLOWBURN_UI_TOKEN}}
storage: {{path: state/slowburn.db}}
probes:
  - name: creeping
    labels: {{team: shop}}
    interval: 1h
    tcp: {{address: "{up}"}}
    drift:
      latency: {{limit: 2s, horizon: 1d}}
  - name: payments-port
    labels: {{team: pay}}
    interval: 300ms
    timeout: 200ms
    tcp: {{address: "127.0.0.1:{closed}"}}
    alert: {{after: 1, policy: oncall}}
  - {{name: web-1, labels: {{team: shop}}, interval: 500ms, tcp: {{address: "{up}"}}}}
  - {{name: web-2, labels: {{team: shop}}, interval: 500ms, tcp: {{address: "{up}"}}}}
  - {{name: web-3, labels: {{team: web}}, interval: 500ms, tcp: {{address: "{up}"}}}}
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
policies:
  - name: oncall
    steps:
      - notify: [hook]
"#
    );
    let daemon = Daemon::start(&dir, &config, &[("SLOWBURN_UI_TOKEN", TOKEN)]);
    wait_until("every probe ran", Duration::from_secs(15), || {
        let r = daemon.get("/api/v1/overview?status=pending");
        r.json["counts"]["pending"].as_u64() <= Some(1)
            && r.json["counts"]["down"].as_u64() == Some(1)
    });
    (daemon, receiver)
}

fn names(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("an array: {v}"))
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Each row: a request and the status and error text (a fragment) it must answer with.
fn check_errors(daemon: &Daemon, cases: &[(&str, u16, &str)]) {
    for (path, status, message) in cases {
        let r = daemon.get(path);
        assert_eq!(r.status, *status, "{path}: {}", r.body);
        assert!(
            r.error().contains(message),
            "{path}: error {:?} does not mention {message:?}",
            r.error()
        );
    }
}

#[test]
fn the_page_and_its_assets_are_served_from_the_binary() {
    let (daemon, _) = daemon("assets");
    let page = daemon.get("/");
    assert_eq!(page.status, 200);
    assert!(page.headers["content-type"].starts_with("text/html"));
    assert!(page.body.contains(r#"<script src="/ui/app.js">"#));
    assert!(page.body.contains(r#"href="/ui/style.css""#));
    // Offline: nothing is loaded from anywhere but the daemon.
    for path in ["/", "/ui/app.js", "/ui/style.css"] {
        let r = daemon.get(path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains("https://") && !r.body.contains("@import"),
            "{path} refers to an outside resource"
        );
    }
    assert!(daemon.get("/ui/app.js").headers["content-type"].starts_with("text/javascript"));
    assert!(daemon.get("/ui/style.css").headers["content-type"].starts_with("text/css"));
    assert_eq!(daemon.get("/ui/missing.js").status, 404);
}

#[test]
fn probe_lists_filter_and_page_on_the_server() {
    let (daemon, _) = daemon("lists");
    // No parameters: the unchanged array of every probe.
    let all = daemon.get("/api/v1/probes");
    assert_eq!(all.status, 200);
    assert_eq!(
        names(&all.json),
        ["creeping", "payments-port", "web-1", "web-2", "web-3"]
    );
    assert!(!all.headers.contains_key("x-total-count"));

    let shop = daemon.get("/api/v1/probes?label=team=shop&kind=tcp");
    assert_eq!(names(&shop.json), ["creeping", "web-1", "web-2"]);
    assert_eq!(shop.headers["x-total-count"], "3");
    let page = daemon.get("/api/v1/probes?q=WEB&offset=1&limit=1&sort=name");
    assert_eq!(names(&page.json), ["web-2"]);
    assert_eq!(page.headers["x-total-count"], "3");
    let down = daemon.get("/api/v1/probes?status=down");
    assert_eq!(names(&down.json), ["payments-port"]);
    let both = daemon.get("/api/v1/probes?status=down,degraded&sort=status");
    assert_eq!(names(&both.json)[0], "payments-port");

    let overview = daemon.get("/api/v1/overview?sort=status&limit=2");
    assert_eq!(overview.status, 200);
    let o = &overview.json;
    assert_eq!(o["total"], 5);
    assert_eq!(o["matched"], 5);
    assert_eq!(o["counts"]["down"], 1);
    assert_eq!(o["kinds"], serde_json::json!(["tcp"]));
    assert_eq!(
        o["labels"]["team"],
        serde_json::json!(["pay", "shop", "web"])
    );
    let rows = o["probes"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let first = &rows[0];
    assert_eq!(first["name"], "payments-port");
    assert_eq!(first["status"], "down");
    assert!(
        first["reason"].as_str().unwrap().contains("connect"),
        "{first}"
    );
    assert_eq!(first["last_failure"]["error"], first["reason"]);
    assert!(
        first["spark"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v.is_null())
    );
    let web = daemon.get("/api/v1/overview?q=web-1");
    let row = &web.json["probes"][0];
    assert_eq!(row["status"], "up");
    assert_eq!(row["main_signal"], "latency");
    assert_eq!(row["unit"], "seconds");
    assert!(
        row["spark"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v.is_number())
    );
    assert!(row["last_check"].as_f64().unwrap() > ui::unix_now() - 60.0);
    // The watched probe's sparkline comes from its stored history.
    let creeping = daemon.get("/api/v1/overview?q=creeping");
    assert!(
        creeping.json["probes"][0]["spark"]
            .as_array()
            .unwrap()
            .len()
            >= 50
    );
    assert_eq!(creeping.json["probes"][0]["status"], "degraded");

    check_errors(
        &daemon,
        &[
            ("/api/v1/probes?status=sideways", 400, "status \"sideways\""),
            ("/api/v1/probes?kind=smtp", 400, "kind \"smtp\""),
            ("/api/v1/probes?label=team", 400, "key=value"),
            ("/api/v1/probes?limit=0", 400, "limit"),
            ("/api/v1/overview?limit=5000", 400, "limit"),
            ("/api/v1/overview?offset=-1", 400, "offset"),
            ("/api/v1/overview?sort=age", 400, "sort"),
            (
                "/api/v1/overview?colour=red",
                400,
                "unknown parameter \"colour\"",
            ),
        ],
    );
}

#[test]
fn history_comes_from_the_store_with_the_drift_fit() {
    let (daemon, _) = daemon("history");
    let r = daemon.get("/api/v1/probes/creeping/history?signal=latency&since=6h");
    assert_eq!(r.status, 200, "{}", r.body);
    let h = &r.json;
    assert_eq!(h["source"], "store");
    assert_eq!(h["unit"], "seconds");
    let points = h["points"].as_array().unwrap();
    assert!(points.len() >= 300, "{} points", points.len());
    let first = points[0][1].as_f64().unwrap();
    let last = points[points.len() - 2][1].as_f64().unwrap();
    assert!(first < 0.3 && last > 0.7, "{first} → {last}");
    let fit = &h["fit"];
    assert_eq!(fit["limit"], 2.0);
    assert_eq!(fit["limit_text"], "2s");
    assert_eq!(fit["horizon_seconds"], 86400.0);
    let slope = fit["slope"].as_f64().unwrap();
    assert!((slope * 3600.0 - 0.1).abs() < 0.02, "slope {slope}/s");
    let eta = fit["eta_seconds"].as_f64().unwrap();
    assert!((10.0 * 3600.0..14.0 * 3600.0).contains(&eta), "eta {eta}");
    assert!(fit["at"].as_f64().unwrap() > ui::unix_now() - 600.0);
    let summary = fit["summary"].as_str().unwrap();
    assert!(summary.starts_with("reaches 2s in ~1"), "{summary}");

    // `since` as unix seconds; the default signal is the watched one.
    let since = (ui::unix_now() - 3600.0).floor();
    let hour = daemon.get(&format!("/api/v1/probes/creeping/history?since={since}"));
    assert_eq!(hour.status, 200, "{}", hour.body);
    assert_eq!(hour.json["signal"], "latency");
    let n = hour.json["points"].as_array().unwrap().len();
    assert!((55..=62).contains(&n), "{n} points in the last hour");

    // An unwatched probe's main signal comes from the recent runs kept in memory.
    let recent = daemon.get("/api/v1/probes/payments-port/history?since=1h");
    assert_eq!(recent.status, 200, "{}", recent.body);
    assert_eq!(recent.json["source"], "recent");
    assert!(recent.json["fit"].is_null());
    let points = recent.json["points"].as_array().unwrap();
    assert!(!points.is_empty());
    assert!(
        points.iter().all(|p| p[1].is_null()),
        "failed runs have no value"
    );

    check_errors(
        &daemon,
        &[
            (
                "/api/v1/probes/nope/history",
                404,
                "no probe named \"nope\"",
            ),
            (
                "/api/v1/probes/creeping/history?signal=rss",
                400,
                "no signal \"rss\"",
            ),
            ("/api/v1/probes/creeping/history?since=8d", 400, "7d"),
            ("/api/v1/probes/creeping/history?since=1", 400, "7d"),
            (
                "/api/v1/probes/creeping/history?since=99999999999999",
                400,
                "future",
            ),
            (
                "/api/v1/probes/creeping/history?since=-5",
                400,
                "not a time",
            ),
            ("/api/v1/probes/creeping/history?since=soon", 400, "since"),
            ("/api/v1/probes/creeping/history?since=1e400", 400, "since"),
            (
                "/api/v1/probes/creeping/history?window=6h",
                400,
                "unknown parameter",
            ),
        ],
    );
}

#[test]
fn alert_endpoints_the_page_uses() {
    let (daemon, receiver) = daemon("alerts");
    wait_until("the failing probe pages", Duration::from_secs(10), || {
        receiver.events().contains(&"trigger".to_string())
    });
    let active = daemon.get("/api/v1/alerts?state=active");
    let alert = active
        .json
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["probe"] == "payments-port")
        .cloned()
        .unwrap_or_else(|| panic!("no alert for payments-port: {}", active.body));
    let id = alert["id"].as_u64().unwrap();
    assert_eq!(alert["state"], "firing");
    assert_eq!(alert["policy"], "oncall");
    wait_until(
        "the page is recorded as sent",
        Duration::from_secs(10),
        || {
            daemon.get(&format!("/api/v1/alerts/{id}")).json["notifications"]
                .as_array()
                .is_some_and(|r| r.iter().any(|r| r["state"] == "sent"))
        },
    );
    let detail = daemon.get(&format!("/api/v1/alerts/{id}")).json;
    assert!(!detail["timeline"].as_array().unwrap().is_empty());
    assert!(detail["since"].as_f64().unwrap() <= detail["firing_at"].as_f64().unwrap());

    // The ack button's request, without and with the token.
    let ack = format!("/api/v1/alerts/{id}/ack");
    let refused = http(daemon.addr, "POST", &ack, None, "{}");
    assert_eq!(refused.status, 401);
    assert!(refused.error().contains("token"));
    let acked = http(
        daemon.addr,
        "POST",
        &ack,
        Some(TOKEN),
        r#"{"by": "status page"}"#,
    );
    assert_eq!(acked.status, 200, "{}", acked.body);
    assert_eq!(acked.json["state"], "acknowledged");
    assert_eq!(
        daemon.get("/api/v1/probes?status=down").headers["x-total-count"],
        "1",
        "an acknowledged alert does not hide that the probe is down"
    );

    // The silence form's request.
    let body = r#"{"match": {"team": "pay"}, "starts": "2026-01-01T00:00:00Z", "ends": "2099-01-01T00:00:00.000Z", "comment": "test", "created_by": "page"}"#;
    let added = http(daemon.addr, "POST", "/api/v1/silences", Some(TOKEN), body);
    assert_eq!(added.status, 201, "{}", added.body);
    let silences = daemon.get("/api/v1/silences");
    assert_eq!(silences.json[0]["source"], "api");
    assert_eq!(silences.json[0]["active"], true);
    wait_until("the probe shows silenced", Duration::from_secs(5), || {
        daemon.get("/api/v1/overview?status=silenced").json["matched"] == 1
    });
    let bad = http(
        daemon.addr,
        "POST",
        "/api/v1/silences",
        Some(TOKEN),
        r#"{"match": {"team": "pay"}, "starts": "tomorrow", "ends": "later"}"#,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("RFC 3339"), "{}", bad.error());

    let id_of_silence = silences.json[0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/silences/{id_of_silence}");
    assert_eq!(http(daemon.addr, "DELETE", &path, None, "").status, 401);
    assert_eq!(
        http(daemon.addr, "DELETE", &path, Some(TOKEN), "").status,
        204
    );
    let again = http(daemon.addr, "DELETE", &path, Some(TOKEN), "");
    assert_eq!(again.status, 404);
    assert!(again.error().contains("no API silence"));

    // The resolve button's request.
    let resolve = format!("/api/v1/alerts/{id}/resolve");
    let resolved = http(
        daemon.addr,
        "POST",
        &resolve,
        Some(TOKEN),
        r#"{"by": "status page"}"#,
    );
    assert_eq!(resolved.status, 200, "{}", resolved.body);
    assert_eq!(resolved.json["state"], "resolved");
    let twice = http(daemon.addr, "POST", &resolve, Some(TOKEN), "{}");
    assert_eq!(twice.status, 409);
    assert!(twice.error().contains("resolved"));

    // The probe page's own request: the probe with the status the overview shows.
    let probe = daemon.get("/api/v1/probes/payments-port");
    assert_eq!(probe.json["status"], "down");
    assert_eq!(probe.json["main_signal"], "latency");

    check_errors(
        &daemon,
        &[
            ("/api/v1/probes/nope", 404, "no probe named \"nope\""),
            ("/api/v1/alerts/abc", 400, "not an alert id"),
            ("/api/v1/alerts/999999", 404, "no alert 999999"),
            ("/api/v1/alerts?state=sleeping", 400, "state"),
        ],
    );
}

/// The page's duration formatter, run by node on the shipped app.js: a loopback probe takes a
/// few hundred microseconds, which must not read `0ms`. Without node it prints SKIPPED.
#[test]
fn the_page_writes_sub_millisecond_durations_in_microseconds() {
    let app = include_str!("../src/server/ui/app.js");
    let start = app
        .find("function fmtDuration(")
        .expect("fmtDuration in app.js");
    let end = start + app[start..].find("\n}\n").expect("its end") + 2;
    let script = format!(
        "{}\nconsole.log(JSON.stringify([0.0004, 4e-7, 0.0025, 0.004, 0.25, 0, 1.5].map(fmtDuration)));",
        &app[start..end]
    );
    let out = match std::process::Command::new("node")
        .args(["-e", &script])
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("\n*** SKIPPED: node is not available ({e}); the formatter is not run\n");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<String> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        got,
        ["400µs", "400ns", "2.5ms", "4ms", "250ms", "0ms", "1.5s"],
        "fmtDuration"
    );
}

#[test]
fn the_series_of_a_query_have_their_own_history_and_detectors() {
    let dir = ui::temp_dir("series");
    let now = ui::unix_now();
    // Two days of two partners' hand-offs, stored under their series names.
    let (a, b) = (r#"value{partner="a"}"#, r#"value{partner="b"}"#);
    let rows: Vec<(&str, &str, f64, f64)> = (0..2880)
        .flat_map(|i| {
            let t = now - f64::from(2880 - i) * 60.0;
            [("handoffs", a, t, 10.0), ("handoffs", b, t, 20.0)]
        })
        .collect();
    ui::seed(&dir.join("state/slowburn.db"), &rows);
    let closed = ui::free_port();
    let config = format!(
        r#"server: {{listen: "{{listen}}"}}
storage: {{path: state/slowburn.db}}
probes:
  - name: handoffs
    interval: 10m
    prometheus: {{url: "http://127.0.0.1:{closed}", query: "sum by (partner) (rate(handoffs_total[5m]))"}}
    drift:
      value: {{seasonal: {{period: 1d, below: 50%, for: 10m}}}}
"#
    );
    let daemon = Daemon::start(&dir, &config, &[]);
    let probe = daemon.get("/api/v1/probes/handoffs");
    assert_eq!(probe.status, 200, "{}", probe.body);
    let signals: Vec<&str> = (probe.json["drift"].as_array().unwrap().iter())
        .map(|d| d["signal"].as_str().unwrap())
        .collect();
    assert!(
        signals.contains(&a) && signals.contains(&b),
        "both series restored from the store: {signals:?}"
    );
    let history =
        daemon.get("/api/v1/probes/handoffs/history?signal=value%7Bpartner%3D%22b%22%7D&since=1h");
    assert_eq!(history.status, 200, "{}", history.body);
    assert_eq!(history.json["source"], "store");
    assert_eq!(history.json["signal"], b);
    let points = history.json["points"].as_array().unwrap();
    assert!(points.len() >= 55, "{} points", points.len());
    assert!(
        points.iter().all(|p| p[1].is_null() || p[1] == 20.0),
        "{points:?}"
    );
}
