//! The daemon against hostile inputs (issue 13): a flood of idle connections, probe files
//! that would explode on parsing, and rotated secrets. Each test runs the real binary.

mod support;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::daemon::{
    Daemon, free_port, get, metric_value, request, temp_dir, wait_http, wait_metrics,
};

/// A TCP target that accepts and closes, on its own thread.
fn tcp_target() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    addr
}

fn runs(body: &str, probe: &str) -> f64 {
    metric_value(
        body,
        &format!("slowburn_probe_runs_total{{probe=\"{probe}\""),
    )
    .unwrap_or_default()
}

#[test]
fn a_flood_of_idle_connections_starves_neither_probes_nor_metrics() {
    let dir = temp_dir("flood");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let target = tcp_target();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nprobes:\n  - {{name: target, interval: 200ms, timeout: 150ms, tcp: {{address: \"{target}\"}}}}\n"
        ),
    )
    .unwrap();
    // The usual 1024 fds: 1,100 idle sockets would use them all without the cap.
    let daemon = Daemon::start_with_fd_limit(1024, &["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    let before = wait_metrics(listen, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"target\",kind=\"tcp\"} 1")
    });
    assert_eq!(
        metric_value(&before, "slowburn_server_connections_max"),
        Some(256.0)
    );

    let mut flood = Vec::new();
    for _ in 0..1100 {
        if let Ok(stream) = TcpStream::connect_timeout(&listen, Duration::from_secs(1)) {
            flood.push(stream);
        }
    }
    assert!(
        flood.len() > 1000,
        "only {} connections opened",
        flood.len()
    );

    // While every socket is still held on this side, /metrics answers and the probe runs on.
    let started = Instant::now();
    let (status, first) = get(listen, "/metrics").expect("/metrics answers during the flood");
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(5));
    let body = wait_metrics(listen, Duration::from_secs(10), |b| {
        runs(b, "target") >= runs(&first, "target") + 3.0
    });
    assert!(
        body.contains("probe_success{probe=\"target\",kind=\"tcp\"} 1"),
        "{body}"
    );
    assert_eq!(
        metric_value(&body, "slowburn_probe_failures_total{probe=\"target\""),
        None,
        "the probe failed during the flood:\n{body}"
    );
    let open = metric_value(&body, "slowburn_server_connections ").unwrap();
    assert!(open <= 256.0, "{open} connections held");
    let evicted = metric_value(&body, "slowburn_server_connections_evicted_total").unwrap();
    assert!(evicted >= 800.0, "evicted {evicted}");
    drop(flood);
    // Only the capped number of connections ever had buffers: the daemon stays small.
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.0.id())).unwrap();
    let peak_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("daemon peak RSS after the flood: {} MiB", peak_kib / 1024);
    assert!(peak_kib < 128 * 1024, "daemon peak RSS {peak_kib} KiB");
}

const SILENCE: &str = r#"{"match": {"team": "pay"}, "starts": "2020-01-01T00:00:00Z", "ends": "2099-01-01T00:00:00Z", "comment": "migration", "created_by": "alice"}"#;

/// The billion-laughs document of the fixtures, as a silence body (YAML is JSON's superset,
/// and the API reads bodies with the probe-file reader).
fn alias_bomb() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("tests/fixtures/invalid/alias-bomb.yaml")).unwrap()
}

#[test]
fn alias_bombs_are_refused_and_a_rotated_token_takes_effect_on_sighup() {
    let dir = temp_dir("hostile");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let target = tcp_target();
    let probes = dir.join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "old-token\n").unwrap();
    std::fs::write(
        probes.join("main.yaml"),
        format!(
            "server: {{listen: \"{listen}\", api_token: \"file:{}\"}}\nprobes:\n  - {{name: target, interval: 200ms, timeout: 150ms, tcp: {{address: \"{target}\"}}}}\n",
            token.display()
        ),
    )
    .unwrap();
    let daemon = Daemon::start(&["run", "-c", "probes"], &dir, &[]);
    wait_http(listen);
    wait_metrics(listen, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"target\",kind=\"tcp\"} 1")
    });

    // A 700-byte alias bomb as a silence, with the token: refused, and the daemon lives on.
    let (status, body) = request(
        listen,
        "POST",
        "/api/v1/silences",
        Some("old-token"),
        &alias_bomb(),
    )
    .unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("aliases expand to more than"), "{body}");
    assert_eq!(get(listen, "/healthz").unwrap().0, 200);

    // Dropped into the watched directory: the reload fails and the running config stays.
    std::fs::write(probes.join("bomb.yaml"), alias_bomb()).unwrap();
    let body = wait_metrics(listen, Duration::from_secs(15), |b| {
        metric_value(b, "slowburn_config_last_reload_successful") == Some(0.0)
    });
    assert!(body.contains("probe=\"target\""), "{body}");
    std::fs::remove_file(probes.join("bomb.yaml")).unwrap();
    wait_metrics(listen, Duration::from_secs(15), |b| {
        metric_value(b, "slowburn_config_last_reload_successful") == Some(1.0)
    });

    // Rotate the token file and send SIGHUP: the new token works and the old one no longer.
    assert_eq!(
        request(
            listen,
            "POST",
            "/api/v1/silences",
            Some("old-token"),
            SILENCE
        )
        .unwrap()
        .0,
        201
    );
    std::fs::write(&token, "new-token\n").unwrap();
    daemon.signal("HUP");
    let started = Instant::now();
    loop {
        let (status, _) = request(
            listen,
            "POST",
            "/api/v1/silences",
            Some("new-token"),
            SILENCE,
        )
        .unwrap();
        if status == 201 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the new token is still refused ({status})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        request(
            listen,
            "POST",
            "/api/v1/silences",
            Some("old-token"),
            SILENCE
        )
        .unwrap()
        .0,
        401
    );
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("server.api_token changed"), "{stderr}");
    assert!(
        !stderr.contains("new-token"),
        "the token was logged:\n{stderr}"
    );
}
