//! The `slowburn` binary as users run it: `check` exit codes and messages, `probe`, and the
//! `run` daemon serving metrics, reloading on SIGHUP and file changes, and stopping on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::daemon::{BIN, Daemon, free_port, get, metric_value, temp_dir, wait_metrics};

fn slowburn(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_accepts_the_shipped_probes() {
    let out = slowburn(&["check", "-c", "probes"], &root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("probes/local.yaml: ok, "), "{stdout}");
}

#[test]
fn check_rejects_every_invalid_fixture_with_positions() {
    let dir = root().join("tests/fixtures/invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = slowburn(&["check", "-c", path.to_str().unwrap()], &root());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        let prefix = format!("{}:", path.display());
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert!(!errors.is_empty(), "{stderr}");
        for line in &errors {
            let rest = &line[prefix.len()..];
            let mut parts = rest.splitn(3, ':');
            let line_no: usize = parts
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("no line in {line}"));
            let col: usize = parts
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("no col in {line}"));
            assert!(line_no > 0 && col > 0);
        }
        assert!(
            stderr
                .trim_end()
                .ends_with(&format!("{} error(s)", errors.len())),
            "{stderr}"
        );
    }
}

#[test]
fn check_json_lists_errors() {
    let out = slowburn(
        &[
            "check",
            "--json",
            "-c",
            "tests/fixtures/invalid/bad-url.yaml",
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["col"], 17);
}

#[test]
fn probe_command_reports_and_sets_the_exit_code() {
    let dir = temp_dir("probe");
    let closed = free_port();
    std::fs::write(
        dir.join("p.yaml"),
        format!(
            "probes:\n  - {{name: closed, timeout: 1s, tcp: {{address: \"127.0.0.1:{closed}\"}}}}\n"
        ),
    )
    .unwrap();
    let out = slowburn(&["probe", "closed", "-c", "p.yaml"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED closed (tcp 127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("reason: connect: refused (connect)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("phases:") && stdout.contains("connect"),
        "{stdout}"
    );

    let out = slowburn(&["probe", "nope", "-c", "p.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no probe named \"nope\"; probes: closed")
    );

    let out = slowburn(&["probe", "closed", "--json", "-c", "p.yaml"], &dir);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["reason"], "connect");
    assert_eq!(json["success"], false);
}

#[test]
fn run_refuses_a_bad_config_and_starts_nothing() {
    let port = free_port();
    let out = slowburn(
        &[
            "run",
            "-c",
            "tests/fixtures/invalid/many-errors.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("many-errors.yaml:6:15: probe \"one\": interval"),
        "{stderr}"
    );
    assert!(get(SocketAddr::from(([127, 0, 0, 1], port)), "/healthz").is_none());
}

#[test]
fn run_serves_metrics_reloads_and_stops_cleanly() {
    let dir = temp_dir("run");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probes = dir.join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    let good = format!(
        "probes:\n  - name: own-health\n    interval: 1s\n    timeout: 500ms\n    http: {{url: \"http://{addr}/healthz\"}}\n"
    );
    std::fs::write(probes.join("main.yaml"), &good).unwrap();
    let daemon = Daemon::start(&["run", "--listen", &addr.to_string()], &dir, &[]);

    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"own-health\",kind=\"http\"} 1")
    });
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            body.contains(&format!("probe_http_duration_seconds{{probe=\"own-health\",kind=\"http\",phase=\"{phase}\"}}")),
            "{phase} missing:\n{body}"
        );
    }
    assert_eq!(
        metric_value(&body, "slowburn_config_last_reload_successful"),
        Some(1.0)
    );
    let (status, api) = get(addr, "/api/v1/probes/own-health").unwrap();
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["kind"], "http");
    assert_eq!(api["last"]["success"], true);
    assert_eq!(get(addr, "/api/v1/probes/none").unwrap().0, 404);

    // A broken file and SIGHUP: the old config keeps running and the gauge says so.
    std::fs::write(
        probes.join("main.yaml"),
        "probes:\n  - name: broken\n    http: {url: nope}\n",
    )
    .unwrap();
    daemon.signal("HUP");
    let body = wait_metrics(addr, Duration::from_secs(10), |b| {
        metric_value(b, "slowburn_config_last_reload_successful") == Some(0.0)
    });
    assert!(body.contains("probe=\"own-health\""), "{body}");
    assert!(!body.contains("probe=\"broken\""));

    // A fixed file is picked up by the file watcher without a signal.
    std::fs::write(
        probes.join("main.yaml"),
        good.replace("own-health", "renamed-health"),
    )
    .unwrap();
    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"renamed-health\",kind=\"http\"} 1")
    });
    assert_eq!(
        metric_value(&body, "slowburn_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(!body.contains("probe=\"own-health\""));

    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("reload failed; the running configuration stays"),
        "{stderr}"
    );
    assert!(
        stderr.contains("http.url: invalid URL \"nope\""),
        "{stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn run_on_a_fresh_machine_uses_the_built_in_probes() {
    // No probes/ here: the embedded self-check probes, on the default address.
    let dir = temp_dir("fresh");
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    if std::net::TcpListener::bind(addr).is_err() {
        panic!("127.0.0.1:9464 is taken; this test needs the default address free");
    }
    let daemon = Daemon::start(&["run"], &dir, &[]);
    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"self-healthz\",kind=\"http\",team=\"slowburn\"} 1")
            && b.contains("probe_http_duration_seconds{probe=\"self-healthz\",kind=\"http\",team=\"slowburn\",phase=\"connect\"}")
    });
    assert!(body.contains("slowburn_probes_configured"), "{body}");
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("built-in self-check probes"), "{stderr}");
}
