//! The heartbeat benchmark: the real daemon with 10,000 `heartbeat:` probes (each with its own
//! token), pinged at a fixed rate over kept-alive connections; ping latency (request written
//! to `200 OK` read, which includes the store write) and the daemon's CPU per 1,000 pings.
//!
//! ```text
//! cargo bench --bench heartbeat                      # 10,000 probes, 2,000 pings/s, 10 s window
//! cargo bench --bench heartbeat -- --rate 4000 --window 5
//! ```
//!
//! The driver runs in this process, the daemon in its own, and the daemon's CPU is read from
//! `/proc/PID/stat` (user + system) over the window after a 2 s warm-up. On a 2-core machine the
//! driver and the daemon share the cores; the report says so.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
#[command(
    name = "heartbeat",
    about = "10,000 heartbeat probes pinged at a fixed rate"
)]
struct Options {
    /// Heartbeat probes configured.
    #[arg(long, default_value_t = 10_000)]
    probes: usize,
    /// Pings a second, spread over every probe.
    #[arg(long, default_value_t = 2_000)]
    rate: u32,
    /// Seconds measured, after a 2 s warm-up.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Kept-alive connections the pings are spread over.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// The slowburn binary (default: the one `cargo bench` built).
    #[arg(long)]
    slowburn: Option<PathBuf>,
    /// Accepted for `cargo bench`'s harness flag.
    #[arg(long, hide = true)]
    bench: bool,
}

type Error = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), Error> {
    let options = Options::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(run(options))
}

async fn run(options: Options) -> Result<(), Error> {
    let dir = std::env::temp_dir().join(format!("slowburn-bench-heartbeat-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let mut yaml = format!("server: {{listen: \"127.0.0.1:{port}\"}}\nprobes:\n");
    let mut env = Vec::with_capacity(options.probes);
    for i in 0..options.probes {
        yaml.push_str(&format!(
            "  - {{name: job-{i}, heartbeat: {{period: 1h, grace: 1h, token: env:HB_{i}}}}}\n"
        ));
        env.push((format!("HB_{i}"), format!("token-{i}-{:x}", i * 7919)));
    }
    std::fs::write(dir.join("probes.yaml"), yaml)?;
    let bin = options
        .slowburn
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_slowburn")));
    let mut daemon = std::process::Command::new(&bin)
        .args(["run", "-c", "probes.yaml"])
        .current_dir(&dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let pid = daemon.id();
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        if started.elapsed() > Duration::from_secs(60) {
            let _ = daemon.kill();
            return Err("the daemon did not listen within 60 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "slowburn {} with {} heartbeat probes listening after {:.1} s",
        bin.display(),
        options.probes,
        started.elapsed().as_secs_f64()
    );

    let tokens = Arc::new(env.into_iter().map(|(_, v)| v).collect::<Vec<_>>());
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let statuses = Arc::new(Mutex::new((0u64, 0u64)));
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let warmup = Duration::from_secs(2);
    let window = Duration::from_secs(options.window);
    let per_connection = f64::from(options.rate) / options.connections as f64;
    let mut tasks = Vec::new();
    for c in 0..options.connections {
        let (tokens, latencies, statuses, measuring) = (
            tokens.clone(),
            latencies.clone(),
            statuses.clone(),
            measuring.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let stream = TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let (read, mut write) = stream.into_split();
            let mut read = BufReader::new(read);
            let gap = Duration::from_secs_f64(1.0 / per_connection);
            let mut tick = tokio::time::interval(gap);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let end = Instant::now() + warmup + window;
            // A stride through the probes that differs per connection, so every probe is pinged.
            let mut i = c;
            while Instant::now() < end {
                tick.tick().await;
                let probe = i % tokens.len();
                i += 7_919;
                let request = format!(
                    "POST /ping/job-{probe} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {}\r\nContent-Length: 5\r\n\r\ndone\n",
                    tokens[probe]
                );
                let sent = Instant::now();
                write.write_all(request.as_bytes()).await?;
                let mut status = String::new();
                read.read_line(&mut status).await?;
                let mut length = 0usize;
                loop {
                    let mut line = String::new();
                    read.read_line(&mut line).await?;
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse()?;
                    }
                }
                let mut body = vec![0; length];
                read.read_exact(&mut body).await?;
                let took = sent.elapsed();
                if measuring.load(std::sync::atomic::Ordering::Relaxed) {
                    latencies.lock().unwrap().push(took.as_secs_f64());
                    let mut s = statuses.lock().unwrap();
                    if status.split_whitespace().nth(1) == Some("200") {
                        s.0 += 1;
                    } else {
                        s.1 += 1;
                    }
                }
            }
            Ok::<_, Error>(())
        }));
    }
    tokio::time::sleep(warmup).await;
    let cpu_before = cpu_seconds(pid)?;
    let window_start = Instant::now();
    measuring.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(window).await;
    measuring.store(false, std::sync::atomic::Ordering::Relaxed);
    let cpu = cpu_seconds(pid)? - cpu_before;
    let elapsed = window_start.elapsed().as_secs_f64();
    for task in tasks {
        task.await??;
    }
    let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))?
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string()))
        .unwrap_or_default();
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let (ok, refused) = *statuses.lock().unwrap();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort_by(f64::total_cmp);
    let q = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize] * 1e3;
    let pings = (ok + refused) as f64;
    println!(
        "{} pings in {elapsed:.1} s ({:.0}/s, target {}/s) over {} connections: {ok} answered 200, {refused} otherwise",
        ok + refused,
        pings / elapsed,
        options.rate,
        options.connections
    );
    println!(
        "ping latency: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!(
        "daemon CPU: {cpu:.2} s over the window = {:.0}% of one core; {:.1} ms CPU per 1,000 pings; RSS at the end {rss}",
        cpu / elapsed * 100.0,
        cpu / pings * 1000.0 * 1e3
    );
    println!(
        "machine: {} cores, {}; driver and daemon share them",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| c
                .lines()
                .find_map(|l| l.strip_prefix("model name\t: ").map(String::from)))
            .unwrap_or_default()
    );
    Ok(())
}

/// User + system CPU seconds of a process, from `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: fields start after the last `)`.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| -> Result<u64, Error> {
        Ok(fields
            .get(i)
            .ok_or("short /proc/PID/stat")?
            .parse::<u64>()?)
    };
    // utime and stime are fields 14 and 15 of stat(5); the state (field 3) is index 0 here.
    Ok((ticks(11)? + ticks(12)?) as f64 / procfs::ticks_per_second() as f64)
}
