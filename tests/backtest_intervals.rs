//! `slowburn backtest` on a slow leak probed at the intervals people use for process probes:
//! the probe file's `interval:` must reach the detectors, so a probe run every 10 or 30
//! minutes pages the same leak as one run every minute, and stationary noise pages at none.

use std::path::PathBuf;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_slowburn");
const MIB: f64 = 1024.0 * 1024.0;
const START: u64 = 1_790_000_000;
const INTERVALS_MIN: [u64; 5] = [1, 5, 10, 15, 30];

/// A directory of this test's own: the tests run in parallel and write files of one name.
fn dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "slowburn-backtest-intervals-{}-{test}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The probe of the issue, run every `minutes`.
fn probe_file(dir: &std::path::Path, minutes: u64) -> PathBuf {
    let path = dir.join(format!("worker-{minutes}m.yaml"));
    std::fs::write(
        &path,
        format!(
            "probes:\n  - name: worker\n    interval: {minutes}m\n    timeout: 5s\n    \
             process:\n      match: {{name: order-worker}}\n    drift:\n      \
             rss: {{limit: 2GiB, horizon: 6h}}\n"
        ),
    )
    .unwrap();
    path
}

/// 600 MiB (±0.5%, deterministic) for 4 h, then +100 MiB/h if `leak`, sampled every `step`
/// seconds for 18 h; returns the CSV and the breach of 2 GiB (14h29m after the onset).
fn rss_series(step: u64, seed: u64, leak: bool) -> (String, f64) {
    let mut csv = String::from("unix_seconds,value\n");
    let onset = START + 4 * 3600;
    let per_second = 100.0 * MIB / 3600.0;
    let breach = onset as f64 + (2048.0 - 600.0) * MIB / per_second;
    let mut k = seed;
    let mut t = START;
    while t < START + 18 * 3600 {
        k = k
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Sum of two uniforms: a mild, bell-shaped noise of at most ±0.5%.
        let u1 = (k >> 33) as f64 / (1u64 << 31) as f64;
        let u2 = ((k >> 1) & 0x7fff_ffff) as f64 / (1u64 << 31) as f64;
        let noise = 1.0 + (u1 + u2 - 1.0) * 0.005;
        let grown = if leak {
            per_second * t.saturating_sub(onset) as f64
        } else {
            0.0
        };
        csv.push_str(&format!("{t},{:.0}\n", (600.0 * MIB + grown) * noise));
        t += step;
    }
    (csv, breach)
}

fn backtest(dir: &std::path::Path, config: &std::path::Path, csv: &str) -> Vec<serde_json::Value> {
    let series = dir.join(format!(
        "{}.csv",
        config.file_stem().unwrap().to_string_lossy()
    ));
    std::fs::write(&series, csv).unwrap();
    let out = Command::new(BIN)
        .args(["backtest", "-c"])
        .arg(config)
        .args(["--probe", "worker", "--signal", "rss", "--series"])
        .arg(&series)
        .arg("--json")
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

#[test]
fn a_slow_leak_pages_four_hours_ahead_at_every_interval() {
    let dir = dir("leak");
    for minutes in INTERVALS_MIN {
        let config = probe_file(&dir, minutes);
        let (csv, breach) = rss_series(minutes * 60, minutes, true);
        let lines = backtest(&dir, &config, &csv);
        let page = lines
            .iter()
            .find(|v| v["detector"] == "trend" && v["state"] == "firing")
            .unwrap_or_else(|| panic!("every {minutes}m: no drift page: {lines:#?}"));
        assert_eq!(page["severity"], "page", "{page}");
        let lead = breach - page["t"].as_f64().unwrap();
        println!(
            "every {minutes}m: paged {:.0} min before the breach",
            lead / 60.0
        );
        assert!(
            lead >= 4.0 * 3600.0,
            "every {minutes}m: paged only {lead}s before the breach: {lines:#?}"
        );
        let accepted: Vec<_> = lines
            .iter()
            .filter(|v| {
                v["detector"] == "change"
                    && v["state"] == "resolved"
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("accepted as the new baseline"))
            })
            .collect();
        assert!(
            accepted.is_empty(),
            "every {minutes}m: the growing level became the baseline: {accepted:#?}"
        );
    }
}

#[test]
fn stationary_noise_pages_at_no_interval() {
    let dir = dir("noise");
    for minutes in INTERVALS_MIN {
        let config = probe_file(&dir, minutes);
        let (csv, _) = rss_series(minutes * 60, 100 + minutes, false);
        let lines = backtest(&dir, &config, &csv);
        assert!(
            lines.iter().all(|v| v["severity"] != "page"),
            "every {minutes}m: {lines:#?}"
        );
    }
}
