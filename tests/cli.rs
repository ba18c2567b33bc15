//! The `slowburn` binary as users run it: `check` exit codes and messages, `probe`, and the
//! `run` daemon serving metrics, reloading on SIGHUP and file changes, and stopping on SIGTERM.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_slowburn");

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slowburn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A plain HTTP GET over std, returning (status, body).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

/// Polls `/metrics` until `ready` holds or `limit` passes; returns the last body.
fn wait_metrics(addr: SocketAddr, limit: Duration, ready: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        if let Some((200, body)) = get(addr, "/metrics") {
            if ready(&body) {
                return body;
            }
            last = body;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("metrics not ready after {limit:?}:\n{last}");
}

struct Daemon(Child);

impl Daemon {
    fn start(args: &[&str], cwd: &Path) -> Daemon {
        Daemon(
            Command::new(BIN)
                .args(args)
                .current_dir(cwd)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        )
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for exit; returns the exit code and stderr.
    fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let started = Instant::now();
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                let mut err = String::new();
                self.0
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.code(), err);
            }
            assert!(
                started.elapsed() < limit,
                "daemon did not exit within {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn metric_value(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
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
    let daemon = Daemon::start(&["run", "--listen", &addr.to_string()], &dir);

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
    let daemon = Daemon::start(&["run"], &dir);
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
