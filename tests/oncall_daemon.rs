//! On-call against the real daemon: an override added with `slowburn oncall override`
//! survives a restart and is what `slowburn oncall` and the next page see; `slowburn page`
//! opens an incident routed by its service; the page's signed links do nothing when opened
//! (GET), altered, expired or replayed, and a valid POST acknowledges, telling everyone paged
//! who did it.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::daemon::{BIN, Daemon, free_port, request, request_json, temp_dir, wait_http};
use support::receiver::Receiver;

const TOKEN: &str = "t0ken";
const LINK_KEY: &str = "a-link-key-for-tests";

/// The secrets the probe file names.
const ENV: [(&str, &str); 2] = [
    ("SLOWBURN_TEST_TOKEN", TOKEN),
    ("SLOWBURN_TEST_LINK_KEY", LINK_KEY),
];

fn start(dir: &Path) -> Daemon {
    Daemon::start(&["run", "-c", "probes.yaml"], dir, &ENV)
}

fn cli(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .env("SLOWBURN_TOKEN", TOKEN)
        .envs(ENV)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).trim().to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

fn alert(listen: SocketAddr, id: u64) -> Value {
    request_json(listen, "GET", &format!("/api/v1/alerts/{id}"), None, "").1
}

/// The link's path and query on the daemon (the receiver got the full external URL).
fn path_of(link: &str, listen: SocketAddr) -> String {
    link.strip_prefix(&format!("http://{listen}"))
        .unwrap()
        .to_string()
}

#[test]
fn overrides_survive_a_restart_incidents_are_routed_and_links_act_once_by_post() {
    let dir = temp_dir("oncall-daemon");
    let (receiver, hooks) = Receiver::start();
    let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            r#"server:
  listen: "{listen}"
  api_token: env:SLOWBURN_TEST_TOKEN
  external_url: "http://{listen}"
  link_key: env:SLOWBURN_TEST_LINK_KEY
storage: {{path: s.db}}
people:
  - {{name: alice, notify: [{{notifier: hook, to: U-alice}}]}}
  - {{name: bob, notify: [{{notifier: hook, to: U-bob}}]}}
  - {{name: dave, notify: [{{notifier: hook, to: U-dave}}]}}
schedules:
  - name: primary
    timezone: Europe/Berlin
    layers:
      - {{users: [alice, bob], start: "2026-01-05T09:00", turn: 1w}}
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
  - {{name: team, webhook: {{url: "http://{hooks}/team"}}}}
policies:
  - name: reviews
    steps:
      - notify: ["schedule:primary", team]
      - {{after: 1h, notify: ["person:bob"]}}
routes:
  - {{match: {{service: reviews}}, policy: reviews}}
probes:
  - {{name: self, interval: 1h, tcp: {{address: "{listen}"}}}}
"#
        ),
    )
    .unwrap();
    let daemon = start(&dir);
    wait_http(listen);

    // An override through the API needs the token; through the CLI it is kept in the store.
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let (start_at, end_at) = ((now - hour).to_string(), (now + hour).to_string());
    let body = serde_json::json!({"schedule": "primary", "user": "dave", "start": start_at, "end": end_at});
    let (status, _) = request_json(listen, "POST", "/api/v1/overrides", None, &body.to_string());
    assert_eq!(status, 401, "no token, no override");
    let bad =
        serde_json::json!({"schedule": "primary", "user": "zed", "start": start_at, "end": end_at});
    let (status, refused) = request_json(
        listen,
        "POST",
        "/api/v1/overrides",
        Some(TOKEN),
        &bad.to_string(),
    );
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("no person named \"zed\""))
    );
    let url = format!("http://{listen}");
    let (ok, out, err) = cli(
        &dir,
        &[
            "oncall", "override", "primary", "--user", "dave", "--start", &start_at, "--end",
            &end_at, "--url", &url,
        ],
    );
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("override #1: dave on call in primary"),
        "{out}"
    );

    // A restart keeps it.
    daemon.signal("TERM");
    daemon.wait(Duration::from_secs(15));
    let _daemon = start(&dir);
    wait_http(listen);
    let (_, metrics) = support::daemon::get(listen, "/metrics").unwrap();
    assert!(
        metrics.contains("slowburn_oncall_gaps_total{schedule=\"primary\"} 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("slowburn_alerts{state=\"held\"} 0\n"),
        "{metrics}"
    );
    let (_, oncall) = request_json(listen, "GET", "/api/v1/oncall", None, "");
    assert_eq!(oncall["primary"], "dave");
    // A second override, removed again: dave stays on call.
    let carol = serde_json::json!({"schedule": "primary", "user": "alice", "start": start_at, "end": end_at});
    let (status, row) = request_json(
        listen,
        "POST",
        "/api/v1/overrides",
        Some(TOKEN),
        &carol.to_string(),
    );
    assert_eq!(status, 201);
    let (_, oncall) = request_json(listen, "GET", "/api/v1/oncall", None, "");
    assert_eq!(oncall["primary"], "alice", "the later override wins");
    let path = format!("/api/v1/overrides/{}", row["id"]);
    assert_eq!(request(listen, "DELETE", &path, None, "").unwrap().0, 401);
    assert_eq!(
        request(listen, "DELETE", &path, Some(TOKEN), "").unwrap().0,
        204
    );
    assert_eq!(
        request(listen, "DELETE", &path, Some(TOKEN), "").unwrap().0,
        404
    );
    let (_, oncall) = request_json(listen, "GET", "/api/v1/oncall", None, "");
    assert_eq!(oncall["primary"], "dave");
    let path = format!(
        "/api/v1/schedules/primary?at={}&days=1",
        now.to_string().replace('+', "%2B")
    );
    let (status, shifts) = request_json(listen, "GET", &path, None, "");
    assert_eq!(
        (status, shifts["oncall"].as_str()),
        (200, Some("dave")),
        "{shifts}"
    );
    assert_eq!(shifts["shifts"][0]["user"], "dave");
    assert_eq!(
        request(listen, "GET", "/api/v1/schedules/nope", None, "")
            .unwrap()
            .0,
        404
    );
    let incident = serde_json::json!({"service": "reviews", "message": "x"}).to_string();
    assert_eq!(
        request(listen, "POST", "/api/v1/incidents", None, &incident)
            .unwrap()
            .0,
        401
    );
    let loud =
        serde_json::json!({"service": "reviews", "message": "x", "severity": "loud"}).to_string();
    let (status, refused) = request_json(listen, "POST", "/api/v1/incidents", Some(TOKEN), &loud);
    assert_eq!(
        (status, refused["error"].as_str()),
        (400, Some("severity \"loud\" is not page or ticket"))
    );
    let (ok, name, err) = cli(
        &dir,
        &[
            "oncall",
            "primary",
            "-c",
            "probes.yaml",
            "--at",
            &now.to_string(),
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(name, "dave", "the CLI reads the daemon's overrides too");

    // An incident by hand, routed by its service: dave (on call by override) and the team.
    let (ok, out, err) = cli(
        &dir,
        &[
            "page",
            "--service",
            "reviews",
            "checkout is broken",
            "--url",
            &url,
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("(reviews)"), "{out}");
    receiver.wait_for("/hook", "dave is paged", Duration::from_secs(10), |e| {
        e.len() == 1
    });
    receiver.wait_for("/team", "the team is paged", Duration::from_secs(10), |e| {
        e.len() == 1
    });
    let page = receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .find(|(p, _)| p == "/hook")
        .unwrap()
        .1
        .clone();
    assert_eq!(
        (page["person"].as_str(), page["to"].as_str()),
        (Some("dave"), Some("U-dave"))
    );
    assert_eq!(page["labels"]["service"], "reviews");
    let id = page["alert_id"].as_u64().unwrap();
    let ack = path_of(page["links"]["ack"].as_str().unwrap(), listen);
    assert!(
        page["details"]
            .as_str()
            .unwrap()
            .contains("Acknowledge: http://")
    );

    // Opening the link shows a confirmation page and changes nothing.
    let (status, html) = request(listen, "GET", &ack, None, "").unwrap();
    assert_eq!(status, 200);
    assert!(
        html.contains("<form method=\"post\">") && html.contains("Acknowledge"),
        "{html}"
    );
    assert_eq!(alert(listen, id)["state"], "firing");
    // Altered: another alert, or another signature.
    let tampered = ack.replacen(&format!("/links/{id}/"), &format!("/links/{}/", id + 1), 1);
    assert_eq!(request(listen, "POST", &tampered, None, "").unwrap().0, 403);
    let mut forged = ack.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert_eq!(request(listen, "POST", &forged, None, "").unwrap().0, 403);
    // Expired: signed with the right key, but its time is past.
    let signer = slowburn::oncall::links::Signer::new(LINK_KEY.as_bytes(), &url);
    let past = (now.as_second() - 60) as u64;
    let expired = signer.link(id, slowburn::oncall::links::Action::Ack, past, "n1", "dave");
    let (status, html) = request(listen, "POST", &path_of(&expired, listen), None, "").unwrap();
    assert_eq!(status, 403);
    assert!(html.contains("expired"), "{html}");
    assert_eq!(alert(listen, id)["state"], "firing", "nothing changed yet");

    // A valid POST acknowledges, as dave; everyone paged hears who did it.
    let (status, html) = request(listen, "POST", &ack, None, "").unwrap();
    assert_eq!(status, 200, "{html}");
    let acked = alert(listen, id);
    assert_eq!(
        (acked["state"].as_str(), acked["acked_by"].as_str()),
        (Some("acknowledged"), Some("dave (link)"))
    );
    for path in ["/hook", "/team"] {
        receiver.wait_for(path, "the ack is told", Duration::from_secs(10), |e| {
            e.iter().any(|(event, _)| event == "acknowledge")
        });
    }
    assert!(
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, j)| j["event"] == "acknowledge")
            .all(|(_, j)| j["acked_by"] == "dave (link)")
    );
    // Replayed: the link works once.
    let (status, html) = request(listen, "POST", &ack, None, "").unwrap();
    assert_eq!(status, 409);
    assert!(html.contains("already used"), "{html}");
}

#[test]
fn oncall_prints_who_is_on_call_and_the_final_schedule() {
    let dir = temp_dir("oncall-cli");
    std::fs::write(
        dir.join("p.yaml"),
        r#"people:
  - {name: alice, notify: [{notifier: hook, to: alice}]}
  - {name: bob, notify: [{notifier: hook, to: bob}]}
  - {name: dave, notify: [{notifier: hook, to: dave}]}
schedules:
  - name: primary
    timezone: Europe/Berlin
    layers:
      - {users: [alice, bob], start: "2027-01-04T09:00", turn: 1w}
    overrides:
      - {user: dave, start: "2027-01-12T09:00", end: "2027-01-13T09:00"}
notifiers:
  - {name: hook, webhook: {url: "http://127.0.0.1:9/page"}}
probes:
  - {name: self, tcp: {address: "127.0.0.1:1"}}
"#,
    )
    .unwrap();
    let oncall = |at: &str| cli(&dir, &["oncall", "primary", "-c", "p.yaml", "--at", at]);
    assert_eq!(oncall("2027-01-11T08:59:00+01:00").1, "alice");
    assert_eq!(oncall("2027-01-11T09:00:00+01:00").1, "bob");
    assert_eq!(
        oncall("2027-01-12T09:00").1,
        "dave",
        "a local time in the schedule's zone"
    );
    let (ok, _, err) = oncall("2027-01-01T00:00:00Z");
    assert!(!ok && err.contains("nobody is on call"), "{err}");
    let (ok, shifts, err) = cli(
        &dir,
        &[
            "oncall",
            "primary",
            "-c",
            "p.yaml",
            "--at",
            "2027-01-11T00:00",
            "--days",
            "3",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        shifts.lines().collect::<Vec<_>>(),
        [
            "Mon 2027-01-11 00:00 → Mon 2027-01-11 09:00  alice",
            "Mon 2027-01-11 09:00 → Tue 2027-01-12 09:00  bob",
            "Tue 2027-01-12 09:00 → Wed 2027-01-13 09:00  dave",
            "Wed 2027-01-13 09:00 → Thu 2027-01-14 00:00  bob",
        ]
    );
    let (ok, _, err) = cli(&dir, &["oncall", "nope", "-c", "p.yaml"]);
    assert!(
        !ok && err.contains("no schedule named \"nope\"; schedules: primary"),
        "{err}"
    );
}
