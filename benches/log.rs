//! The log benchmark: slowburn's `log:` probe against mtail, counting the same three regexes
//! over the same generated log, side by side in one run.
//!
//! ```text
//! cargo bench --bench log             # criterion, then 1,000,000 lines each, then 100 idle probes
//! cargo bench --bench log -- --quick  # 200,000 lines, a shorter idle window
//! ```
//!
//! - criterion: one `log:` probe run in this process over a 100,000-line file (a fresh probe
//!   per iteration, so each reads the whole file), for lines per second;
//! - side by side: `slowburn probe` (the binary `cargo bench` builds) and
//!   `mtail --one_shot` (Debian package `mtail`; skipped with a note when absent) each read the
//!   same file from its start and exit. Both run under `/usr/bin/time`, which gives their CPU
//!   seconds (user + system) and peak RSS. Each is also run on an empty file, and that startup
//!   cost is subtracted before dividing by the lines: CPU seconds per million lines. The
//!   counts of both must agree, or the run stops;
//! - idle: the daemon with 100 `log:` probes on 100 files nobody writes to, each run every
//!   second (30 times more often than the usual 30 s), CPU read from `/proc/PID/stat` over a
//!   window after every probe has run.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use slowburn::config::{self, Source};
use slowburn::probe::{self, BuildContext, net::NetContext};

const BIN: &str = env!("CARGO_BIN_EXE_slowburn");
const PATTERNS: [(&str, &str); 3] = [
    ("error", "ERROR|Exception"),
    ("timeout", "timed out"),
    ("oom", "OutOfMemory"),
];

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let dir = std::env::temp_dir().join(format!("slowburn-log-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    println!("machine: {}", machine());

    let small = dir.join("small.log");
    write_log(&small, 100_000);
    in_process(&small);

    let lines = if quick { 200_000 } else { 1_000_000 };
    let big = dir.join("big.log");
    write_log(&big, lines);
    let empty = dir.join("empty.log");
    std::fs::write(&empty, b"").unwrap();
    side_by_side(&dir, &big, &empty, lines);
    idle(&dir, if quick { 5 } else { 20 });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A log of `lines` lines of about 95 bytes: 5% errors, 2% timeouts, 0.5% OOMs, the rest info.
fn write_log(path: &Path, lines: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut seed: u64 = 1;
    for i in 0..lines {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let k = (seed >> 33) % 1000;
        let message = match k {
            0..50 => format!("ERROR payment failed for order {i}: upstream returned 502"),
            50..70 => format!("WARN request {i} timed out after 30s"),
            70..75 => format!("ERROR java.lang.OutOfMemoryError in worker {}", i % 64),
            _ => format!("INFO handled GET /api/v1/items/{i} in 12ms status=200"),
        };
        writeln!(
            out,
            "2026-12-01T13:00:00.{:06}Z host-a app[123]: {message}",
            i % 1_000_000
        )
        .unwrap();
    }
    out.flush().unwrap();
}

fn probe_yaml(file: &Path) -> String {
    let patterns: Vec<String> = PATTERNS
        .iter()
        .map(|(n, r)| format!("{n}: '{r}'"))
        .collect();
    format!(
        "probes:\n  - name: bench\n    interval: 10m\n    timeout: 5m\n    log: {{file: '{}', patterns: {{{}}}, start_at: beginning}}\n",
        file.display(),
        patterns.join(", ")
    )
}

fn in_process(file: &Path) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let text = probe_yaml(file);
    let build = || {
        config::load(
            &Source::Text {
                name: "bench.yaml".into(),
                text: text.clone(),
            },
            &ctx,
        )
        .unwrap()
        .probes
        .remove(0)
    };
    let mut c = Criterion::default()
        .sample_size(10)
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    let mut group = c.benchmark_group("log");
    group.throughput(Throughput::Elements(100_000));
    group.bench_function("three_patterns_100k_lines", |b| {
        b.iter_batched(
            build,
            |p| {
                let outcome = runtime.block_on(probe::execute(&p.probe, p.timeout));
                assert_eq!(outcome.signal("lines"), Some(100_000.0));
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// CPU seconds (user + system) and peak RSS in bytes of one command, with its stdout.
fn measure(command: &mut Command) -> (f64, u64, String) {
    let mut timed = Command::new("/usr/bin/time");
    timed
        .arg("-f")
        .arg("TIME %U %S %M")
        .arg(command.get_program())
        .args(command.get_args())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = timed.output().expect("/usr/bin/time runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("TIME "))
        .unwrap_or_else(|| panic!("no timing from /usr/bin/time: {stderr}"));
    let f: Vec<f64> = line[5..]
        .split_whitespace()
        .map(|v| v.parse().unwrap())
        .collect();
    (
        f[0] + f[1],
        f[2] as u64 * 1024,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The median of three runs' CPU, the largest peak RSS, the last stdout.
fn best_of_three(mut run: impl FnMut() -> (f64, u64, String)) -> (f64, u64, String) {
    let mut runs: Vec<(f64, u64, String)> = (0..3).map(|_| run()).collect();
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let peak = runs.iter().map(|r| r.1).max().unwrap_or(0);
    let (cpu, _, out) = runs.swap_remove(1);
    (cpu, peak, out)
}

fn side_by_side(dir: &Path, big: &Path, empty: &Path, lines: usize) {
    let slowburn = |file: &Path| {
        let config = dir.join(format!(
            "{}.yaml",
            file.file_stem().unwrap().to_string_lossy()
        ));
        std::fs::write(&config, probe_yaml(file)).unwrap();
        best_of_three(|| {
            measure(
                Command::new(BIN)
                    .args(["probe", "bench", "--json", "-c"])
                    .arg(&config),
            )
        })
    };
    let (base, _, _) = slowburn(empty);
    let (cpu, rss, out) = slowburn(big);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ours: Vec<u64> = PATTERNS
        .iter()
        .map(|(n, _)| json["signals"][n].as_f64().unwrap() as u64)
        .collect();
    let per_million = |cpu: f64, base: f64| (cpu - base).max(0.0) * 1e6 / lines as f64;
    println!(
        "\nside by side: {lines} lines, {} MiB, three regexes",
        std::fs::metadata(big).unwrap().len() / (1 << 20)
    );
    println!(
        "{:<10} {:>16} {:>14} {:>14} {:>10}",
        "", "CPU s/M lines", "startup CPU s", "peak RSS MiB", "counts"
    );
    println!(
        "{:<10} {:>16.3} {:>14.3} {:>14.1} {:>10}",
        "slowburn",
        per_million(cpu, base),
        base,
        rss as f64 / (1 << 20) as f64,
        format!("{ours:?}")
    );
    let ours_rate = lines as f64 / (cpu - base).max(1e-9);
    if !Path::new("/usr/bin/mtail").exists() {
        println!("mtail: not installed (apt-get install -y mtail), skipped");
        println!("slowburn: {ours_rate:.0} lines per CPU second");
        return;
    }
    let progs = dir.join("progs");
    std::fs::create_dir_all(&progs).unwrap();
    let mut program = String::new();
    for (n, r) in PATTERNS {
        program.push_str(&format!("counter {n}_lines\n/{r}/ {{\n  {n}_lines++\n}}\n"));
    }
    std::fs::write(progs.join("bench.mtail"), program).unwrap();
    let mtail = |file: &Path| {
        best_of_three(|| {
            measure(
                Command::new("/usr/bin/mtail")
                    .args(["--one_shot", "--one_shot_format", "prometheus", "--progs"])
                    .arg(&progs)
                    .arg("--logs")
                    .arg(file),
            )
        })
    };
    let (mbase, _, _) = mtail(empty);
    let (mcpu, mrss, mout) = mtail(big);
    let theirs: Vec<u64> = PATTERNS
        .iter()
        .map(|(n, _)| {
            mout.lines()
                .find(|l| l.starts_with(&format!("{n}_lines{{")))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0) as u64
        })
        .collect();
    println!(
        "{:<10} {:>16.3} {:>14.3} {:>14.1} {:>10}",
        "mtail",
        per_million(mcpu, mbase),
        mbase,
        mrss as f64 / (1 << 20) as f64,
        format!("{theirs:?}")
    );
    assert_eq!(ours, theirs, "both count the same lines");
    println!(
        "slowburn uses {:.0}% of mtail's CPU per line; {ours_rate:.0} lines per CPU second (a file growing at 100,000 lines/s needs {:.0}% of a core)",
        100.0 * per_million(cpu, base) / per_million(mcpu, mbase).max(1e-9),
        100.0 * 100_000.0 / ours_rate
    );
}

/// User + system ticks of a process so far.
fn ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

fn idle(dir: &Path, window: u64) {
    let logs = dir.join("idle");
    std::fs::create_dir_all(&logs).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut yaml = format!(
        "server: {{listen: \"127.0.0.1:{port}\"}}\nstorage: {{path: '{}'}}\nprobes:\n",
        dir.join("idle.db").display()
    );
    for i in 0..100 {
        let file: PathBuf = logs.join(format!("app{i}.log"));
        std::fs::write(&file, b"INFO started\n").unwrap();
        yaml.push_str(&format!(
            "  - name: idle-{i}\n    interval: 1s\n    log: {{file: '{}', patterns: {{error: 'ERROR|Exception', timeout: 'timed out', oom: OutOfMemory}}}}\n",
            file.display()
        ));
    }
    let config = dir.join("idle.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut daemon = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Every probe has run within its first 10 s; the window starts after that.
    std::thread::sleep(Duration::from_secs(12));
    let (t0, c0) = (Instant::now(), ticks(daemon.id()));
    std::thread::sleep(Duration::from_secs(window));
    let (t1, c1) = (Instant::now(), ticks(daemon.id()));
    let _ = daemon.kill();
    let _ = daemon.wait();
    // The kernel counts in USER_HZ, 100 per second on Linux.
    let cpu = (c1 - c0) as f64 / 100.0;
    let share = 100.0 * cpu / (t1 - t0).as_secs_f64();
    println!(
        "\nidle: 100 log probes on 100 unchanging files, each every 1s: {share:.2}% of a core over {window}s"
    );
}

fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_string();
    let cores = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    format!("{model}, {cores} cores, {:.1} GiB", kib / (1024.0 * 1024.0))
}
