//! `slowburn backtest` on CSV files as users write them: transitions with timestamps, `--json`
//! fields, and clear line-numbered complaints about unusable lines.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_slowburn");

/// `slowburn backtest --json` of one series, which must succeed: one object per transition.
fn backtest_json(
    dir: &Path,
    config: &str,
    probe: &str,
    signal: &str,
    series: &str,
) -> Vec<serde_json::Value> {
    let out = Command::new(BIN)
        .args([
            "backtest", "-c", config, "--probe", probe, "--signal", signal, "--series", series,
            "--json",
        ])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("slowburn-backtest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("probes.yaml"),
        "probes:\n  - name: api\n    http: {url: \"http://127.0.0.1:1/\"}\n    drift:\n      latency: {limit: 2s, horizon: 2h}\n",
    )
    .unwrap();
    dir
}

/// 80 ms (±10%, deterministic) for 2 h, then linear growth reaching 2 s three hours later.
fn creeping_latency(start: u64) -> (String, u64) {
    let mut csv = String::from("unix_seconds,value\n");
    let onset = start + 2 * 3600;
    let breach = onset + 3 * 3600;
    let mut t = start;
    let mut k: u64 = 1;
    while t < breach {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = 1.0 + ((k >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.2;
        let base = if t < onset {
            0.08
        } else {
            0.08 + 1.92 * (t - onset) as f64 / (3.0 * 3600.0)
        };
        csv.push_str(&format!("{t},{:.4}\n", base * noise));
        t += 15;
    }
    (csv, breach)
}

#[test]
fn a_creeping_latency_pages_long_before_the_breach() {
    let dir = dir();
    let start = 1_790_000_000;
    let (csv, breach) = creeping_latency(start);
    std::fs::write(dir.join("latency.csv"), &csv).unwrap();
    let lines = backtest_json(&dir, "probes.yaml", "api", "latency", "latency.csv");
    let page = lines
        .iter()
        .find(|v| v["detector"] == "trend" && v["state"] == "firing")
        .unwrap_or_else(|| panic!("no drift page: {lines:#?}"));
    for field in [
        "t",
        "probe",
        "signal",
        "detector",
        "severity",
        "state",
        "eta_seconds",
        "slope",
        "message",
    ] {
        assert!(page.get(field).is_some(), "{field} missing in {page}");
    }
    assert_eq!(page["probe"], "api");
    assert_eq!(page["signal"], "latency");
    assert_eq!(page["severity"], "page");
    let lead = breach as f64 - page["t"].as_f64().unwrap();
    assert!(lead >= 90.0 * 60.0, "paged only {lead}s before the breach");
    assert!(
        page["message"].as_str().unwrap().contains("reaches 2s"),
        "{page}"
    );
}

#[test]
fn human_output_and_line_numbered_problems() {
    let dir = dir();
    let (csv, _) = creeping_latency(1_790_000_000);
    let mut lines: Vec<&str> = csv.lines().collect();
    lines.insert(3, "not,a number");
    lines.insert(5, "1790000000,0.08");
    lines.insert(8, "1790000100,NaN");
    std::fs::write(dir.join("messy.csv"), lines.join("\n")).unwrap();
    let out = Command::new(BIN)
        .args([
            "backtest",
            "-c",
            "probes.yaml",
            "--probe",
            "api",
            "--signal",
            "latency",
            "--series",
            "messy.csv",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("messy.csv:line 4:"), "{stderr}");
    assert!(stderr.contains("messy.csv:line 6:"), "{stderr}");
    assert!(stderr.contains("messy.csv:line 9:"), "{stderr}");
    assert!(
        stdout.contains("firing") && stdout.contains("trend") && stdout.contains("latency"),
        "{stdout}"
    );
    assert!(stderr.contains("transition(s)"), "{stderr}");

    let out = Command::new(BIN)
        .args([
            "backtest",
            "-c",
            "probes.yaml",
            "--probe",
            "api",
            "--signal",
            "rss",
            "--series",
            "messy.csv",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("watches no signal \"rss\" (it watches: latency)")
    );

    std::fs::write(dir.join("empty.csv"), "garbage\n").unwrap();
    let out = Command::new(BIN)
        .args([
            "backtest",
            "-c",
            "probes.yaml",
            "--probe",
            "api",
            "--signal",
            "latency",
            "--series",
            "empty.csv",
        ])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("holds no usable unix_seconds,value line")
    );
}

#[test]
fn seasonal_and_two_sided_decisions_are_replayed_like_the_others() {
    let dir = dir();
    std::fs::write(
        dir.join("orders.yaml"),
        "probes:\n  - name: orders\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:1\", query: \"sum(orders)\"}\n    drift:\n      value: {seasonal: {period: 1d, below: 30%, for: 10m}}\n  - name: handoffs\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:1\", query: \"sum(handoffs)\"}\n    drift:\n      value: {limit: 100000, horizon: 6h, change: {direction: both, min_shift: 5}}\n",
    )
    .unwrap();
    // Three days of a daily shape, then the evening of the fourth at 40% of usual for 2 h.
    let start: u64 = 1_790_208_000; // a midnight UTC
    let drop = start + 3 * 86_400 + 18 * 3600;
    let mut csv = String::from("unix_seconds,value\n");
    let mut k: u64 = 3;
    for t in (start..start + 4 * 86_400).step_by(60) {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let noise = 1.0 + ((k >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.1;
        let hour = (t % 86_400) as f64 / 3600.0;
        let usual = 10.0 + 90.0 * (-((hour - 19.0) / 2.0).powi(2)).exp();
        let factor = if (drop..drop + 7200).contains(&t) {
            0.4
        } else {
            1.0
        };
        csv.push_str(&format!("{t},{:.0}\n", usual * factor * noise));
    }
    std::fs::write(dir.join("orders.csv"), &csv).unwrap();
    let lines = backtest_json(&dir, "orders.yaml", "orders", "value", "orders.csv");
    let seasonal: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|v| v["detector"] == "seasonal" && v["state"] == "firing")
        .collect();
    assert_eq!(seasonal.len(), 1, "{lines:#?}");
    let t = seasonal[0]["t"]
        .as_u64()
        .unwrap_or_else(|| seasonal[0]["t"].as_f64().unwrap() as u64);
    assert!(
        t >= drop && t <= drop + 20 * 60,
        "paged at {t}, the drop began at {drop}"
    );
    assert_eq!(seasonal[0]["severity"], "page");
    assert!(
        seasonal[0]["message"].as_str().unwrap().contains("usually"),
        "{}",
        seasonal[0]["message"]
    );
    // A flat partner rate that halves is a step down for the two-sided change detector.
    let mut csv = String::from("unix_seconds,value\n");
    for (i, t) in (start..start + 12 * 3600).step_by(60).enumerate() {
        let level = if t < start + 8 * 3600 { 100 } else { 50 };
        csv.push_str(&format!("{t},{}\n", level + (i % 5) as i64 - 2));
    }
    std::fs::write(dir.join("handoffs.csv"), &csv).unwrap();
    let lines = backtest_json(&dir, "orders.yaml", "handoffs", "value", "handoffs.csv");
    let down: Vec<&serde_json::Value> = lines.iter().filter(|v| v["state"] == "firing").collect();
    assert_eq!(down.len(), 1, "{lines:#?}");
    assert_eq!(down[0]["detector"], "change_down");
    assert_eq!(down[0]["severity"], "ticket");
}
