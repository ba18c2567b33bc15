//! Heartbeats against the real daemon: pings over HTTP with their tokens, what is refused and
//! how, missed and late runs, failures and run durations paged through the alert API, the
//! second listener, a ping that survives `kill -9`, a restart across a missed deadline, and
//! the watchdog that stops pinging while the store takes no writes.
//!
//! Periods and graces are 1 s so that a missed deadline takes about three seconds of real
//! time; the deadline logic itself is tested with time passed in, beside the code.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::daemon::{
    Daemon, free_port, metric_value, request, request_json, temp_dir, wait_http,
};
use support::receiver::Receiver;

const TOKENS: &[(&str, &str)] = &[
    ("NIGHTLY_TOKEN", "nightly-s3cret"),
    ("BATCH_TOKEN", "batch-s3cret"),
    ("PARTNER_TOKEN", "partner-s3cret"),
    ("FLOOD_TOKEN", "flood-s3cret"),
    ("SLOWBURN_A_TOKEN", "a-s3cret"),
];

fn start(dir: &Path, yaml: &str) -> Daemon {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("probes.yaml"), yaml).unwrap();
    Daemon::start(&["run", "-c", "probes.yaml"], dir, TOKENS)
}

/// A ping with a bearer token; the status and body.
fn ping(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> (u16, String) {
    request(addr, method, path, token, body).unwrap_or((0, String::new()))
}

/// The firing alert of `probe`, waiting up to `limit` for it.
fn firing(addr: SocketAddr, probe: &str, limit: Duration) -> Value {
    let started = Instant::now();
    loop {
        let (_, alerts) = request_json(addr, "GET", "/api/v1/alerts?state=firing", None, "");
        if let Some(alert) = alerts
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["probe"] == probe)
        {
            return alert.clone();
        }
        assert!(
            started.elapsed() < limit,
            "{probe}: no alert fired within {limit:?}: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until `probe` has no firing alert.
fn resolved(addr: SocketAddr, probe: &str, limit: Duration) {
    let started = Instant::now();
    loop {
        let (_, alerts) = request_json(addr, "GET", "/api/v1/alerts?state=firing", None, "");
        if !alerts
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["probe"] == probe)
        {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "{probe}: still firing after {limit:?}: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends `n` pings on one keep-alive connection as fast as the daemon answers; the count of
/// each status.
fn flood(addr: SocketAddr, path: &str, token: &str, n: usize) -> (usize, usize) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..n {
        write!(
            writer,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n"
        )
        .unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        match status.split_whitespace().nth(1) {
            Some("200") => ok += 1,
            Some("429") => limited += 1,
            other => panic!("unexpected answer {other:?}"),
        }
    }
    (ok, limited)
}

#[test]
fn pings_are_authenticated_judged_and_paged() {
    let dir = temp_dir("heartbeat");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let pings_at = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let closed = free_port();
    let daemon = start(
        &dir,
        &format!(
            r#"server: {{listen: "{listen}", ping_listen: "{pings_at}"}}
probes:
  - name: nightly
    heartbeat: {{period: 1s, grace: 1s, token: env:NIGHTLY_TOKEN}}
    alert: {{after: 1, recover_after: 1}}
  - name: batch
    heartbeat: {{period: 1h, grace: 1h, token: env:BATCH_TOKEN, expect: {{min_duration: 1s, max_duration: 2s}}}}
    alert: {{after: 1, recover_after: 1}}
  - name: partner
    heartbeat: {{schedule: "0 5 * * *", timezone: Europe/Berlin, grace: 1h, token: env:PARTNER_TOKEN}}
    alert: {{after: 1, recover_after: 1}}
  - name: flood
    heartbeat: {{period: 1h, grace: 1h, token: env:FLOOD_TOKEN}}
  - name: other
    tcp: {{address: "127.0.0.1:{closed}"}}
"#
        ),
    );
    wait_http(listen);
    wait_http(pings_at);
    let nightly = Some("nightly-s3cret");

    // Refusals: a wrong token, no token, an unknown probe and a probe of another kind get the
    // same answer, which names no probe.
    let refused = ping(listen, "GET", "/ping/nightly", Some("guess"), "");
    assert_eq!(refused.0, 404, "{refused:?}");
    assert_eq!(
        refused.1,
        "no heartbeat probe by that name takes this token\n"
    );
    assert_eq!(ping(listen, "GET", "/ping/nightly", None, ""), refused);
    assert_eq!(ping(listen, "GET", "/ping/ghost", nightly, ""), refused);
    assert_eq!(
        ping(listen, "POST", "/ping/other/start", nightly, ""),
        refused
    );
    let (status, body) = ping(listen, "GET", "/ping/nightly/restart", nightly, "");
    assert_eq!(status, 404);
    assert!(body.contains("/ping/NAME/EXIT_CODE"), "{body}");
    let (status, body) = ping(
        listen,
        "GET",
        "/ping/partner?value=lots",
        Some("partner-s3cret"),
        "",
    );
    assert_eq!(
        (status, body.as_str()),
        (400, "value \"lots\" is not a finite number\n")
    );

    // A 10 MiB body is refused for its declared size, before it is read.
    let mut big = TcpStream::connect(listen).unwrap();
    big.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        big,
        "POST /ping/nightly HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nightly-s3cret\r\nContent-Length: {}\r\n\r\n",
        10 * 1024 * 1024
    )
    .unwrap();
    let _ = big.write_all(&vec![b'x'; 256 * 1024]);
    let mut answer = String::new();
    let _ = BufReader::new(&big).read_line(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");

    // The second listener serves pings and nothing else.
    assert_eq!(
        ping(pings_at, "POST", "/ping/nightly", nightly, "ok\n").0,
        200
    );
    assert_eq!(
        request(pings_at, "GET", "/metrics", None, "").unwrap().0,
        404
    );
    assert_eq!(
        request(pings_at, "GET", "/api/v1/probes", None, "")
            .unwrap()
            .0,
        404
    );

    // A missed run pages after grace; a late ping resolves it at once.
    let late = firing(listen, "nightly", Duration::from_secs(15));
    assert_eq!(late["reason"], "late", "{late}");
    assert!(
        late["message"]
            .as_str()
            .unwrap()
            .contains("due every 1s with grace 1s"),
        "{late}"
    );
    assert_eq!(ping(listen, "GET", "/ping/nightly", nightly, "").0, 200);
    resolved(listen, "nightly", Duration::from_secs(5));

    // /fail and exit code 3 fail at once; the log of the run is in the alert and the API.
    let partner = Some("partner-s3cret");
    assert_eq!(
        ping(listen, "POST", "/ping/partner/fail", partner, "").0,
        200
    );
    let failed = firing(listen, "partner", Duration::from_secs(3));
    assert_eq!(failed["reason"], "job");
    assert_eq!(failed["message"], "job: the job reported failure");
    assert_eq!(ping(listen, "GET", "/ping/partner/0", partner, "").0, 200);
    resolved(listen, "partner", Duration::from_secs(3));
    let log = "settling 120 orders\nERROR: ledger locked\n";
    assert_eq!(ping(listen, "POST", "/ping/partner/3", partner, log).0, 200);
    let failed = firing(listen, "partner", Duration::from_secs(3));
    assert_eq!(
        failed["message"],
        "job: exit code 3; log ends: settling 120 orders ⏎ ERROR: ledger locked"
    );
    let (_, probe) = request_json(listen, "GET", "/api/v1/probes/partner", None, "");
    let notes = probe["last"]["notes"].to_string();
    assert!(notes.contains("ERROR: ledger locked"), "{probe}");
    // A value, from the query or a JSON body, is a signal.
    assert_eq!(
        ping(listen, "GET", "/ping/partner?value=42", partner, "").0,
        200
    );
    resolved(listen, "partner", Duration::from_secs(3));
    let metrics = request(listen, "GET", "/metrics", None, "").unwrap().1;
    assert_eq!(
        metric_value(&metrics, "probe_heartbeat_value{probe=\"partner\""),
        Some(42.0),
        "{metrics}"
    );
    assert_eq!(
        ping(listen, "POST", "/ping/partner", partner, r#"{"value": 7}"#).0,
        200
    );

    // Run durations: too short, a start with no finish, too long, then right.
    let batch = Some("batch-s3cret");
    assert_eq!(ping(listen, "GET", "/ping/batch/start", batch, "").0, 200);
    assert_eq!(ping(listen, "GET", "/ping/batch", batch, "").0, 200);
    let short = firing(listen, "batch", Duration::from_secs(3));
    assert!(
        short["message"]
            .as_str()
            .unwrap()
            .contains("less than min_duration 1s"),
        "{short}"
    );
    assert_eq!(ping(listen, "GET", "/ping/batch/start", batch, "").0, 200);
    let hung = Instant::now();
    // A run in progress is not judged by the run before it.
    resolved(listen, "batch", Duration::from_secs(3));
    let hung_alert = firing(listen, "batch", Duration::from_secs(6));
    assert!(
        hung_alert["message"]
            .as_str()
            .unwrap()
            .contains("not finished within max_duration 2s"),
        "{hung_alert}"
    );
    assert!(hung.elapsed() >= Duration::from_secs(2));
    assert_eq!(ping(listen, "GET", "/ping/batch/0", batch, "").0, 200);
    std::thread::sleep(Duration::from_millis(300));
    let long = firing(listen, "batch", Duration::from_secs(3));
    assert!(
        long["message"]
            .as_str()
            .unwrap()
            .contains("more than max_duration 2s"),
        "{long}"
    );
    assert_eq!(ping(listen, "GET", "/ping/batch/start", batch, "").0, 200);
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(ping(listen, "GET", "/ping/batch", batch, "").0, 200);
    resolved(listen, "batch", Duration::from_secs(3));
    let metrics = request(listen, "GET", "/metrics", None, "").unwrap().1;
    let took = metric_value(
        &metrics,
        "probe_heartbeat_run_duration_seconds{probe=\"batch\"",
    );
    assert!(took.is_some_and(|t| (1.2..2.0).contains(&t)), "{took:?}");

    // One client floods its token on two connections as fast as it can; it is limited and
    // nobody else is.
    let flooders: Vec<_> = (0..2)
        .map(|_| {
            std::thread::spawn(move || {
                let started = Instant::now();
                let counts = flood(listen, "/ping/flood", "flood-s3cret", 2500);
                (counts, started.elapsed())
            })
        })
        .collect();
    let mut others = 0;
    while !flooders.iter().all(|f| f.is_finished()) && others < 20 {
        assert_eq!(ping(listen, "GET", "/ping/nightly", nightly, "").0, 200);
        others += 1;
        std::thread::sleep(Duration::from_millis(20));
    }
    let (mut ok, mut limited, mut took) = (0, 0, Duration::ZERO);
    for flooder in flooders {
        let ((o, l), t) = flooder.join().unwrap();
        (ok, limited, took) = (ok + o, limited + l, took.max(t));
    }
    let allowed = 30.0 + 5.0 * took.as_secs_f64() + 1.0;
    assert!(
        ok as f64 <= allowed,
        "{ok} of 5000 pings passed in {took:?}"
    );
    assert_eq!(ok + limited, 5000);
    eprintln!(
        "flood: 5000 pings in {took:?} ({:.0}/s): {ok} passed, {limited} limited; {others} pings of another token all passed",
        5000.0 / took.as_secs_f64()
    );
    assert!(others > 0);
    drop(daemon);
}

#[test]
fn a_ping_survives_kill_9_and_a_missed_deadline_pages_right_after_restart() {
    let dir = temp_dir("heartbeat-restart");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let yaml = format!(
        r#"server: {{listen: "{listen}"}}
probes:
  - name: nightly
    heartbeat: {{period: 1s, grace: 1s, token: env:NIGHTLY_TOKEN}}
    alert: {{after: 1, recover_after: 1}}
"#
    );
    let daemon = start(&dir, &yaml);
    wait_http(listen);
    let (status, _) = ping(
        listen,
        "POST",
        "/ping/nightly",
        Some("nightly-s3cret"),
        "run 41 done\n",
    );
    assert_eq!(status, 200);
    // `kill -9` the instant the 200 is in.
    drop(daemon);
    // Down across the deadline (1 s period + 1 s grace): the one sleep this test needs.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let _daemon = start(&dir, &yaml);
    wait_http(listen);
    let late = firing(listen, "nightly", Duration::from_secs(10));
    // Judged from the stored ping ("no ping for 3s"), not from the restart ("since slowburn
    // began watching"), and right after start rather than a period plus grace later.
    let message = late["message"].as_str().unwrap();
    assert!(message.starts_with("late: no ping for "), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let (_, probe) = request_json(listen, "GET", "/api/v1/probes/nightly", None, "");
    assert!(
        probe["last"]["notes"].to_string().contains("run 41 done"),
        "{probe}"
    );
}

#[test]
fn the_watchdog_stops_while_the_store_takes_no_writes_and_resumes_after() {
    let dir = temp_dir("watchdog");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let (receiver, at) = Receiver::start();
    let closed = free_port();
    let _daemon = start(
        &dir,
        &format!(
            r#"server: {{listen: "{listen}"}}
storage: {{path: slowburn.db}}
watchdog: {{url: "http://{at}/ping/slowburn-main", interval: 1s}}
probes:
  - {{name: local, interval: 1s, timeout: 200ms, tcp: {{address: "127.0.0.1:{closed}"}}}}
"#
        ),
    );
    wait_http(listen);
    let count = || {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == "/ping/slowburn-main")
            .count()
    };
    let wait_pings = |n: usize, limit: Duration| {
        let started = Instant::now();
        while count() < n {
            assert!(
                started.elapsed() < limit,
                "{} watchdog pings, wanted {n}",
                count()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_pings(2, Duration::from_secs(10));

    // Another process takes the store's write lock: every write now fails after the busy
    // timeout (5 s), and the pings stop.
    let lock = rusqlite::Connection::open(dir.join("slowburn.db")).unwrap();
    lock.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let stopped = Instant::now();
    let mut quiet_since = (count(), Instant::now());
    while quiet_since.1.elapsed() < Duration::from_secs(3) {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the watchdog kept pinging: {}",
            count()
        );
        if count() != quiet_since.0 {
            quiet_since = (count(), Instant::now());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // Released: the next check writes, and the pings resume.
    lock.execute_batch("COMMIT").unwrap();
    drop(lock);
    let before = count();
    wait_pings(before + 2, Duration::from_secs(15));
}

#[test]
fn two_instances_watch_each_other() {
    // As in the README: a's watchdog pings b's heartbeat probe for a, with its token.
    let dir = temp_dir("heartbeat-pair");
    let (a_listen, b_listen) = (
        SocketAddr::from(([127, 0, 0, 1], free_port())),
        SocketAddr::from(([127, 0, 0, 1], free_port())),
    );
    let closed = free_port();
    let _b = start(
        &dir.join("b"),
        &format!(
            r#"server: {{listen: "{b_listen}"}}
probes:
  - name: slowburn-a
    heartbeat: {{period: 1s, grace: 1s, token: env:SLOWBURN_A_TOKEN}}
    alert: {{after: 1, recover_after: 1}}
"#
        ),
    );
    let a = start(
        &dir.join("a"),
        &format!(
            r#"server: {{listen: "{a_listen}"}}
watchdog: {{url: "http://{b_listen}/ping/slowburn-a", interval: 1s, token: env:SLOWBURN_A_TOKEN}}
probes:
  - {{name: local, interval: 1s, timeout: 200ms, tcp: {{address: "127.0.0.1:{closed}"}}}}
"#
        ),
    );
    wait_http(b_listen);
    wait_http(a_listen);
    // b sees a's pings: its probe for a succeeds and stays quiet.
    let started = Instant::now();
    loop {
        let (_, probe) = request_json(b_listen, "GET", "/api/v1/probes/slowburn-a", None, "");
        if probe["last"]["signals"]["age"]
            .as_f64()
            .is_some_and(|age| age < 1.5)
            && probe["last"]["success"] == true
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "b never heard from a: {probe}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    resolved(b_listen, "slowburn-a", Duration::from_secs(5));
    // a dies: b pages.
    drop(a);
    let late = firing(b_listen, "slowburn-a", Duration::from_secs(10));
    assert_eq!(late["reason"], "late", "{late}");
}

#[test]
fn slowburn_probe_judges_a_heartbeat_from_the_stored_pings() {
    let dir = temp_dir("heartbeat-cli");
    std::fs::write(
        dir.join("probes.yaml"),
        "storage: {path: state/s.db}\nprobes:\n  - name: nightly\n    heartbeat: {period: 1h, grace: 5m, token: env:NIGHTLY_TOKEN}\n",
    )
    .unwrap();
    let cli = |dir: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_slowburn"))
            .args(["probe", "nightly", "-c", "probes.yaml"])
            .env("NIGHTLY_TOKEN", "nightly-s3cret")
            .current_dir(dir)
            .output()
            .unwrap()
    };
    // No store yet: said so, and judged as never pinged (not late yet).
    let out = cli(&dir);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no store at"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The daemon stored a success two hours ago: one period and the grace have passed.
    let store = slowburn::store::Store::open(&dir.join("state/s.db")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    store
        .append_ping(&slowburn::store::PingRow {
            id: 0,
            probe: "nightly".into(),
            t: now - 7200.0,
            event: "success".into(),
            exit_code: None,
            value: None,
            log: None,
        })
        .unwrap();
    drop(store);
    let out = cli(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("late"), "{stdout}");
}
