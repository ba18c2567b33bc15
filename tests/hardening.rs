//! The daemon against hostile inputs (issue 13): a flood of idle connections, probe files
//! that would explode on parsing, and rotated secrets. Each test runs the real binary.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, free_port, get, metric_value, temp_dir, wait_http, wait_metrics};

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
    let _daemon = Daemon::start_with_fd_limit(1024, &["run", "-c", "probes.yaml"], &dir, &[]);
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
}
