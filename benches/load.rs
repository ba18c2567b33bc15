//! The load benchmark: the same HTTP probe load run by slowburn, by blackbox_exporter and by a
//! bare reqwest loop (the floor), side by side, on loopback, bounded in time.
//!
//! ```text
//! cargo bench --bench load                 # 200/s, 1000/s and the highest rate slowburn sustains
//! cargo bench --bench load -- --quick      # one repetition, short windows: under a minute
//! cargo bench --bench load -- --scale      # 100,000 configured probes: startup, RSS, lag, /metrics (~7 min)
//! cargo bench --bench load -- --help
//! ```
//!
//! One target serves every run: nginx (`/usr/sbin/nginx`, one worker, `return 200`) when it is
//! installed, else this binary re-executed as a small hyper server. Either way the target is a
//! separate process, so its CPU is not counted against the prober. Each prober is a separate
//! process too, and its CPU is read from `/proc/PID/stat` (user + system time) over a fixed
//! window after a warm-up, so the figures are CPU seconds, not wall time:
//!
//! - slowburn: the real daemon (`slowburn run`, built by `cargo bench` in the bench profile) on
//!   a generated file of N = rate × interval HTTP probes; probes/s and failures from
//!   `slowburn_probe_runs_total`/`slowburn_probe_failures_total`, schedule lag from the
//!   `slowburn_schedule_lag_seconds` buckets (scraped before and after the window, subtracted),
//!   latency from each probe's last `probe_duration_seconds`;
//! - blackbox_exporter (`/usr/bin/prometheus-blackbox-exporter`, skipped with a note when
//!   absent), `http_2xx` module, driven at the same rate through `/probe` by this process over
//!   kept-alive connections, with a bounded number of requests in flight; latency is the
//!   exporter's own `probe_duration_seconds`;
//! - the floor: this binary re-executed as a reqwest loop at the same rate, a fresh connection
//!   per request (`pool_max_idle_per_host(0)`, `Connection: close`), no assertions, no metrics.
//!
//! The three use the same target URL (`http://localhost:PORT/` by default, so every prober
//! resolves a name), the same rate and the same window. On a 2-core machine the target, the
//! prober and (for blackbox) the driver share the cores; the report says so.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use slowburn::metrics::{LAG_BUCKETS, bucket_quantile};
use tokio::sync::Semaphore;

/// The p99 schedule lag slowburn must stay under for a rate to count as sustained.
const LAG_LIMIT: f64 = 0.025;
/// Rates tried when searching for the highest sustained one, in order.
const SEARCH_RATES: &[u32] = &[
    1_000, 2_000, 3_000, 4_000, 5_000, 6_000, 8_000, 10_000, 12_000, 15_000, 20_000,
];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "load",
    about = "slowburn vs blackbox_exporter vs a bare reqwest loop, on loopback"
)]
struct Options {
    /// One repetition, 2 s warm-up, 4 s window, no rate search: a try-out in under a minute.
    #[arg(long)]
    quick: bool,
    /// Run the 100,000-probe scale scenario instead of the comparison.
    #[arg(long)]
    scale: bool,
    /// Probe rates to compare, per second.
    #[arg(long, value_delimiter = ',', default_value = "200,1000")]
    rates: Vec<u32>,
    /// Repetitions of each configuration (default 3; 1 with --quick).
    #[arg(long)]
    reps: Option<u32>,
    /// Seconds of load before the measurement window (default 4; 2 with --quick).
    #[arg(long)]
    warmup: Option<u64>,
    /// Seconds of the measurement window (default 10; 4 with --quick).
    #[arg(long)]
    window: Option<u64>,
    /// Probe interval in seconds: slowburn gets rate × interval probes.
    #[arg(long, default_value_t = 10)]
    interval: u32,
    /// Host name in the target URL (`localhost` makes every prober resolve a name;
    /// `127.0.0.1` skips resolution).
    #[arg(long, default_value = "localhost")]
    host: String,
    /// Skip the search for the highest rate slowburn sustains with p99 lag under 25 ms.
    #[arg(long)]
    no_search: bool,
    /// The most search steps to try.
    #[arg(long, default_value_t = 8)]
    search_steps: usize,
    /// Which probers to run.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "slowburn,blackbox,slowburn-probe,floor"
    )]
    only: Vec<String>,
    /// Requests in flight at most, for the blackbox driver and the floor.
    #[arg(long, default_value_t = 1024)]
    concurrency: usize,
    /// The slowburn binary (default: the one `cargo bench` built).
    #[arg(long)]
    slowburn: Option<PathBuf>,
    /// Use the built-in hyper target even when nginx is installed.
    #[arg(long)]
    builtin_target: bool,
    /// Keep the scratch directory (generated probe files, configs, logs) and print its path.
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

impl Options {
    fn reps(&self) -> u32 {
        self.reps.unwrap_or(if self.quick { 1 } else { 3 }).max(1)
    }
    fn warmup(&self) -> Duration {
        Duration::from_secs(self.warmup.unwrap_or(if self.quick { 2 } else { 4 }))
    }
    fn window(&self) -> Duration {
        Duration::from_secs(
            self.window
                .unwrap_or(if self.quick { 4 } else { 10 })
                .max(1),
        )
    }
    fn runs(&self, system: System) -> bool {
        self.only.iter().any(|s| s == system.name())
    }
}

fn main() {
    // reqwest is built with `rustls-no-provider` (for slowburn's notifiers): it needs a crypto
    // provider installed before any client is built, even for plain http://.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("__target") => return target_mode(&args[2..]),
        Some("__floor") => return floor_mode(&args[2..]),
        _ => {}
    }
    let options = Options::parse();
    if !options.bench {
        // `cargo test --all-targets` runs bench binaries without `--bench`: nothing to test.
        println!("load: run it with `cargo bench --bench load` (see benches/load.rs)");
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(options)) {
        eprintln!("load: {e}");
        std::process::exit(1);
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn run(options: Options) -> Result<(), Error> {
    let work = WorkDir::new(options.keep)?;
    let slowburn = options
        .slowburn
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_slowburn")));
    if options.runs(System::Slowburn) && !slowburn.exists() {
        return Err(format!(
            "{} does not exist: build it with `cargo build --release --bin slowburn` or pass --slowburn",
            slowburn.display()
        )
        .into());
    }
    let blackbox = Path::new(BLACKBOX);
    let ports = if options.scale { 4 } else { 1 };
    let target = Target::start(&work, ports, options.builtin_target)?;
    let bench = Bench {
        machine: Machine::read(),
        target,
        slowburn,
        blackbox: blackbox.exists().then(|| blackbox.to_path_buf()),
        work,
        options,
    };
    println!("{}", bench.header());
    if bench.options.scale {
        return bench.scale().await;
    }
    bench.compare().await
}

const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";
/// The module both `/probe` endpoints serve: blackbox.yml's syntax, which slowburn reads as is.
const PROBE_MODULES: &str = "modules:\n  http_2xx:\n    prober: http\n    timeout: 5s\n    http:\n      preferred_ip_protocol: ip4\n      valid_status_codes: [200]\n";
const NGINX: &str = "/usr/sbin/nginx";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum System {
    Slowburn,
    Blackbox,
    /// slowburn's blackbox-compatible `/probe`, driven like blackbox's.
    SlowburnProbe,
    Floor,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Slowburn => "slowburn",
            System::Blackbox => "blackbox",
            System::SlowburnProbe => "slowburn-probe",
            System::Floor => "floor",
        }
    }
}

/// What one measurement window saw.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Probes completed per second.
    rate: f64,
    /// CPU seconds (user + system) of the prober per 1,000 probes.
    cpu_per_1k: f64,
    /// CPU seconds of the target per 1,000 probes (for reading contention, not compared).
    target_cpu_per_1k: f64,
    /// Probe latency quantiles, seconds.
    latency: (f64, f64),
    /// Schedule lag quantiles, seconds (slowburn only).
    lag: Option<(f64, f64)>,
    /// Peak resident set, bytes.
    peak_rss: u64,
    /// Failed probes in the window.
    failed: u64,
    /// Probes not started: slowburn's skipped ticks, or the driver's starts refused at its
    /// in-flight limit.
    skipped: u64,
    total: u64,
}

struct Bench {
    options: Options,
    machine: Machine,
    target: Target,
    slowburn: PathBuf,
    blackbox: Option<PathBuf>,
    work: WorkDir,
}

impl Bench {
    fn header(&self) -> String {
        let o = &self.options;
        let mut out = String::new();
        out.push_str(&format!(
            "machine: {} cores ({}), {:.1} GiB memory, {}\n",
            self.machine.cores,
            self.machine.cpu,
            self.machine.memory as f64 / (1u64 << 30) as f64,
            self.machine.kernel
        ));
        out.push_str(&format!(
            "load average before the run: {} (other work on the machine skews every figure)\n",
            load_average()
        ));
        out.push_str(&format!("target:  {}\n", self.target.describe()));
        out.push_str(&format!("slowburn: {}\n", self.slowburn.display()));
        match &self.blackbox {
            Some(path) => out.push_str(&format!(
                "blackbox: {} ({})\n",
                path.display(),
                version(path)
            )),
            None => out.push_str(&format!(
                "blackbox: not installed ({BLACKBOX}); that column is skipped \
                 (`apt-get install prometheus-blackbox-exporter` to add it)\n"
            )),
        }
        if !o.scale {
            out.push_str(&format!(
                "load:    N = rate x {} s probes for slowburn; the same rate through blackbox's /probe \
                 and the floor; fresh connection per probe; target http://{}:PORT/\n",
                o.interval, o.host
            ));
            out.push_str(&format!(
                "window:  {} s after {} s warm-up, {} repetition(s); median [min-max]\n",
                o.window().as_secs(),
                o.warmup().as_secs(),
                o.reps()
            ));
        }
        out.push_str(&format!(
            "note:    {} cores are shared by the target, the prober and (blackbox only) the driver \
             in this process; CPU is the prober's own /proc utime+stime.",
            self.machine.cores
        ));
        out
    }

    fn url(&self, port: u16) -> String {
        format!("http://{}:{port}/", self.options.host)
    }

    /// Runs the comparison at each rate, then searches for slowburn's highest sustained rate.
    async fn compare(&self) -> Result<(), Error> {
        let mut systems = vec![System::Slowburn, System::SlowburnProbe, System::Floor];
        if self.blackbox.is_some() {
            systems.insert(1, System::Blackbox);
        }
        systems.retain(|s| self.options.runs(*s));
        let mut rates: Vec<u32> = self.options.rates.clone();
        let mut results: BTreeMap<(u32, System), Vec<Sample>> = BTreeMap::new();
        for &rate in &rates {
            self.measure_all(rate, &systems, &mut results).await?;
        }
        let mut search = Vec::new();
        if !self.options.quick && !self.options.no_search && self.options.runs(System::Slowburn) {
            let best = self.search(&mut search).await?;
            if let Some(best) = best
                && !rates.contains(&best)
            {
                rates.push(best);
                self.measure_all(best, &systems, &mut results).await?;
            }
        }
        println!();
        println!("load average after the run: {}", load_average());
        println!("{}", self.table(&rates, &systems, &results));
        if !search.is_empty() {
            println!("{}", search_table(&search));
        }
        Ok(())
    }

    async fn measure_all(
        &self,
        rate: u32,
        systems: &[System],
        results: &mut BTreeMap<(u32, System), Vec<Sample>>,
    ) -> Result<(), Error> {
        for rep in 1..=self.options.reps() {
            for &system in systems {
                let sample = self.measure(system, rate).await?;
                eprintln!(
                    "{:>6}/s {:<9} rep {rep}: {}",
                    rate,
                    system.name(),
                    describe(&sample)
                );
                results.entry((rate, system)).or_default().push(sample);
            }
        }
        Ok(())
    }

    async fn measure(&self, system: System, rate: u32) -> Result<Sample, Error> {
        match system {
            System::Slowburn => self.measure_slowburn(rate).await,
            System::Blackbox => self.measure_blackbox(rate).await,
            System::SlowburnProbe => self.measure_slowburn_probe(rate).await,
            System::Floor => self.measure_floor(rate).await,
        }
    }

    /// Raises the rate step by step until slowburn's p99 lag reaches 25 ms, the achieved rate
    /// falls short, or probes fail; returns the highest rate that passed.
    async fn search(&self, steps: &mut Vec<(u32, Sample, bool)>) -> Result<Option<u32>, Error> {
        let mut best = None;
        for &rate in SEARCH_RATES.iter().take(self.options.search_steps) {
            let sample = self.measure_slowburn(rate).await?;
            let ok = sustained(&sample, rate);
            eprintln!(
                "search {rate:>6}/s: {} -> {}",
                describe(&sample),
                if ok { "sustained" } else { "not sustained" }
            );
            steps.push((rate, sample, ok));
            if !ok {
                break;
            }
            best = Some(rate);
        }
        Ok(best)
    }

    async fn measure_slowburn(&self, rate: u32) -> Result<Sample, Error> {
        let n = (rate * self.options.interval) as usize;
        let url = self.url(self.target.ports[0]);
        let mut yaml = format!(
            "defaults:\n  interval: {}s\n  timeout: 5s\nprobes:\n",
            self.options.interval
        );
        for i in 0..n {
            yaml.push_str(&format!(
                "  - name: load-{i:06}\n    labels: {{team: bench}}\n    http:\n      url: \"{url}\"\n      expect:\n        status: [200]\n"
            ));
        }
        let mut daemon = Slowburn::start(self, &yaml, &format!("rate-{rate}"))?;
        daemon.wait_ready(n, Duration::from_secs(60)).await?;
        tokio::time::sleep(self.options.warmup()).await;
        daemon.window(self, self.options.window()).await
    }

    async fn measure_blackbox(&self, rate: u32) -> Result<Sample, Error> {
        let path = self
            .blackbox
            .as_ref()
            .ok_or("blackbox_exporter is not installed")?;
        let config = self.work.path.join("blackbox.yml");
        std::fs::write(&config, PROBE_MODULES)?;
        let port = free_port()?;
        let log = std::fs::File::create(self.work.path.join("blackbox.log"))?;
        let process = Proc::spawn(
            Command::new(path)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        self.drive_probe_endpoint(&process, port, rate).await
    }

    /// slowburn serving the same modules at its own `/probe`, driven the same way.
    async fn measure_slowburn_probe(&self, rate: u32) -> Result<Sample, Error> {
        let yaml = format!("storage: {{path: probe-endpoint.db}}\n{PROBE_MODULES}");
        let _ = std::fs::remove_file(self.work.path.join("probe-endpoint.db"));
        let daemon = Slowburn::start(self, &yaml, "probe-endpoint")?;
        self.drive_probe_endpoint(&daemon.process, daemon.port, rate)
            .await
    }

    /// Drives `GET /probe?module=http_2xx&target=…` of the exporter `process` on `port` at
    /// `rate`, and measures one window of the exporter's CPU.
    async fn drive_probe_endpoint(
        &self,
        process: &Proc,
        port: u16,
        rate: u32,
    ) -> Result<Sample, Error> {
        wait_listening(port, Duration::from_secs(10)).await?;
        let target = self.url(self.target.ports[0]);
        let probe_url = format!(
            "http://127.0.0.1:{port}/probe?module=http_2xx&target={}",
            encode(&target)
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        let stats = Arc::new(Mutex::new(Stats::default()));
        let driver = tokio::spawn(pace(
            f64::from(rate),
            self.options.concurrency,
            stats.clone(),
            move || {
                let client = client.clone();
                let url = probe_url.clone();
                async move {
                    let body = client.get(&url).send().await.ok()?.text().await.ok()?;
                    let success = metric_value(&body, "probe_success") == Some(1.0);
                    let duration = metric_value(&body, "probe_duration_seconds")?;
                    success.then_some(duration)
                }
            },
        ));
        tokio::time::sleep(self.options.warmup()).await;
        let result = window(
            process.pid(),
            self.target.pid(),
            self.options.window(),
            |start| {
                let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
                if start {
                    stats.reset();
                }
                stats.summary()
            },
        )
        .await;
        driver.abort();
        let mut sample = result?;
        sample.peak_rss = peak_rss(process.pid());
        Ok(sample)
    }

    async fn measure_floor(&self, rate: u32) -> Result<Sample, Error> {
        let exe = std::env::current_exe()?;
        let process = Proc::spawn(
            Command::new(exe)
                .arg("__floor")
                .arg(self.url(self.target.ports[0]))
                .arg(rate.to_string())
                .arg(self.options.concurrency.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
        )?;
        let mut process = process;
        let mut control = FloorControl::new(&mut process)?;
        tokio::time::sleep(self.options.warmup()).await;
        let sample = window(
            process.pid(),
            self.target.pid(),
            self.options.window(),
            |start| {
                control
                    .command(if start { "start" } else { "stop" })
                    .unwrap_or_default()
            },
        )
        .await;
        // Read the peak before closing the floor's stdin, which ends it.
        let peak = peak_rss(process.pid());
        drop(control);
        let mut sample = sample?;
        sample.peak_rss = peak;
        Ok(sample)
    }

    /// 100,000 configured probes against a few local targets: 10,000 HTTP at 10 s and 90,000
    /// HTTP and TCP at 60 to 300 s.
    async fn scale(&self) -> Result<(), Error> {
        let ports = &self.target.ports;
        let mut yaml = String::from("defaults:\n  timeout: 5s\nprobes:\n");
        let mut per_second = 0.0;
        for i in 0..10_000 {
            let port = ports[i % ports.len()];
            yaml.push_str(&format!(
                "  - name: http-10s-{i:05}\n    labels: {{team: team-{}, tier: \"1\"}}\n    interval: 10s\n    http:\n      url: \"http://{}:{port}/health\"\n      expect:\n        status: [200]\n",
                i % 40,
                self.options.host
            ));
            per_second += 0.1;
        }
        let intervals = [60, 120, 180, 300];
        for i in 0..90_000 {
            let port = ports[i % ports.len()];
            let interval = intervals[i % intervals.len()];
            per_second += 1.0 / f64::from(interval);
            let team = i % 40;
            if i % 2 == 0 {
                yaml.push_str(&format!(
                    "  - name: http-slow-{i:05}\n    labels: {{team: team-{team}}}\n    interval: {interval}s\n    http: {{url: \"http://{}:{port}/\", expect: {{status: [\"2xx\"]}}}}\n",
                    self.options.host
                ));
            } else {
                yaml.push_str(&format!(
                    "  - name: tcp-{i:05}\n    labels: {{team: team-{team}}}\n    interval: {interval}s\n    tcp: {{address: \"{}:{port}\"}}\n",
                    self.options.host
                ));
            }
        }
        let n = 100_000;
        eprintln!("scale: {n} probes, {per_second:.0} probes/s expected");
        let started = Instant::now();
        let mut daemon = Slowburn::start(self, &yaml, "scale")?;
        let ready = daemon.wait_ready(n, Duration::from_secs(120)).await?;
        let startup = ready.duration_since(started);
        eprintln!(
            "scale: /metrics shows {n} probes after {:.2} s",
            startup.as_secs_f64()
        );
        // Steady means every probe has run: the longest interval here is 300 s, and a probe
        // that has not run yet holds no outcome, so an earlier reading flatters the RSS.
        let warmup = Duration::from_secs(self.options.warmup.unwrap_or(if self.options.quick {
            5
        } else {
            300
        }));
        let window = Duration::from_secs(self.options.window.unwrap_or(if self.options.quick {
            15
        } else {
            60
        }));
        let pid = daemon.process.pid();
        let rss_ready = status_kib(pid, "VmRSS:") * 1024;
        let peak_ready = peak_rss(pid);
        tokio::time::sleep(warmup).await;
        let sample = daemon.window(self, window).await?;
        let rss = status_kib(pid, "VmRSS:") * 1024;
        let cpu_cores = sample.cpu_per_1k * sample.rate / 1000.0;
        let mut renders = Vec::new();
        let mut size = 0;
        for _ in 0..3 {
            let begun = Instant::now();
            let body = daemon.scrape().await?;
            renders.push(begun.elapsed().as_secs_f64());
            size = body.len();
        }
        renders.sort_by(f64::total_cmp);
        let rss_after = status_kib(pid, "VmRSS:") * 1024;
        let (lag50, lag99) = sample.lag.unwrap_or_default();
        let rows: Vec<(String, String)> = vec![
            (
                "probes configured".into(),
                format!(
                    "{n} (10,000 http at 10 s; 45,000 http + 45,000 tcp at 60-300 s; {} target ports)",
                    ports.len()
                ),
            ),
            (
                "startup (spawn -> /metrics shows all probes)".into(),
                format!("{:.2} s", startup.as_secs_f64()),
            ),
            (
                format!("probes/s (expected {per_second:.0})"),
                format!("{:.0}", sample.rate),
            ),
            (
                "CPU".into(),
                format!(
                    "{cpu_cores:.2} cores, {:.3} s per 1k probes",
                    sample.cpu_per_1k
                ),
            ),
            (
                "schedule lag p50 / p99".into(),
                format!("{:.2} ms / {:.2} ms", lag50 * 1e3, lag99 * 1e3),
            ),
            (
                "probe duration p50 / p99".into(),
                format!(
                    "{:.2} ms / {:.2} ms",
                    sample.latency.0 * 1e3,
                    sample.latency.1 * 1e3
                ),
            ),
            (
                "failed / skipped probes in the window".into(),
                format!("{} / {} of {}", sample.failed, sample.skipped, sample.total),
            ),
            (
                "RSS when ready (peak so far)".into(),
                format!("{:.0} MiB ({:.0} MiB)", mib(rss_ready), mib(peak_ready)),
            ),
            (
                "RSS steady, after the window".into(),
                format!("{:.0} MiB", mib(rss)),
            ),
            (
                "RSS after 3 more scrapes / peak".into(),
                format!("{:.0} MiB / {:.0} MiB", mib(rss_after), mib(peak_rss(pid))),
            ),
            (
                "/metrics scrape (median of 3, client side)".into(),
                format!("{:.0} ms", renders[1] * 1e3),
            ),
            (
                "/metrics size".into(),
                format!("{:.1} MiB", mib(size as u64)),
            ),
        ];
        println!();
        println!(
            "scale: {} s window after {} s warm-up",
            window.as_secs(),
            warmup.as_secs()
        );
        println!("| measure | value |\n|---|---|");
        for (what, value) in rows {
            println!("| {what} | {value} |");
        }
        Ok(())
    }

    fn table(
        &self,
        rates: &[u32],
        systems: &[System],
        results: &BTreeMap<(u32, System), Vec<Sample>>,
    ) -> String {
        let mut out = String::new();
        out.push_str(
            "| rate/s | prober | probes/s | CPU s per 1k probes | latency p50 / p99 ms | \
             schedule lag p50 / p99 ms | peak RSS MiB | failed / not started |\n|---|---|---|---|---|---|---|---|\n",
        );
        for &rate in rates {
            for &system in systems {
                let Some(samples) = results.get(&(rate, system)) else {
                    continue;
                };
                let lag = if samples.iter().all(|s| s.lag.is_some()) {
                    format!(
                        "{} / {}",
                        spread(samples, |s| s.lag.unwrap_or_default().0 * 1e3, 2),
                        spread(samples, |s| s.lag.unwrap_or_default().1 * 1e3, 2)
                    )
                } else {
                    "-".into()
                };
                out.push_str(&format!(
                    "| {rate} | {} | {} | {} | {} / {} | {lag} | {} | {} |\n",
                    system.name(),
                    spread(samples, |s| s.rate, 0),
                    spread(samples, |s| s.cpu_per_1k, 3),
                    spread(samples, |s| s.latency.0 * 1e3, 2),
                    spread(samples, |s| s.latency.1 * 1e3, 2),
                    spread(samples, |s| mib(s.peak_rss), 0),
                    failed(samples),
                ));
            }
        }
        let ratio = |a: System, b: System, rate: u32| -> Option<String> {
            let a = median(
                results
                    .get(&(rate, a))?
                    .iter()
                    .map(|s| s.cpu_per_1k)
                    .collect(),
            );
            let b = median(
                results
                    .get(&(rate, b))?
                    .iter()
                    .map(|s| s.cpu_per_1k)
                    .collect(),
            );
            Some(format!("{:.2}", a / b))
        };
        out.push_str(
            "\n| rate/s | CPU per 1k: slowburn / blackbox | CPU per 1k: slowburn /probe / blackbox /probe | CPU per 1k: slowburn / floor |\n|---|---|---|---|\n",
        );
        for &rate in rates {
            out.push_str(&format!(
                "| {rate} | {} | {} | {} |\n",
                ratio(System::Slowburn, System::Blackbox, rate).unwrap_or_else(|| "-".into()),
                ratio(System::SlowburnProbe, System::Blackbox, rate).unwrap_or_else(|| "-".into()),
                ratio(System::Slowburn, System::Floor, rate).unwrap_or_else(|| "-".into()),
            ));
        }
        out
    }
}

fn sustained(sample: &Sample, rate: u32) -> bool {
    let lag_ok = sample.lag.is_some_and(|(_, p99)| p99 < LAG_LIMIT);
    let rate_ok = sample.rate >= 0.97 * f64::from(rate);
    let failures_ok =
        ((sample.failed + sample.skipped) as f64) <= 0.01 * sample.total.max(1) as f64;
    lag_ok && rate_ok && failures_ok
}

fn search_table(steps: &[(u32, Sample, bool)]) -> String {
    let mut out = format!(
        "search for slowburn's highest rate with p99 schedule lag < {} ms (one window each):\n\
         | rate/s | probes/s | CPU s per 1k | lag p99 ms | failed / skipped | sustained |\n|---|---|---|---|---|---|\n",
        LAG_LIMIT * 1e3
    );
    for (rate, s, ok) in steps {
        out.push_str(&format!(
            "| {rate} | {:.0} | {:.3} | {:.2} | {} / {} of {} | {} |\n",
            s.rate,
            s.cpu_per_1k,
            s.lag.unwrap_or_default().1 * 1e3,
            s.failed,
            s.skipped,
            s.total,
            if *ok { "yes" } else { "no" }
        ));
    }
    out
}

fn describe(s: &Sample) -> String {
    let lag = match s.lag {
        Some((p50, p99)) => format!(", lag p50 {:.2} ms p99 {:.2} ms", p50 * 1e3, p99 * 1e3),
        None => String::new(),
    };
    format!(
        "{:.0} probes/s, {:.3} CPU s/1k (target {:.3}), latency p50 {:.2} ms p99 {:.2} ms{lag}, \
         peak RSS {:.0} MiB, {} failed and {} not started of {}",
        s.rate,
        s.cpu_per_1k,
        s.target_cpu_per_1k,
        s.latency.0 * 1e3,
        s.latency.1 * 1e3,
        mib(s.peak_rss),
        s.failed,
        s.skipped,
        s.total
    )
}

/// `median [min-max]` of one figure over the repetitions.
fn spread(samples: &[Sample], figure: impl Fn(&Sample) -> f64, decimals: usize) -> String {
    let values: Vec<f64> = samples.iter().map(figure).collect();
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mid = median(values.clone());
    if values.len() == 1 {
        format!("{mid:.decimals$}")
    } else {
        format!("{mid:.decimals$} [{lo:.decimals$}-{hi:.decimals$}]")
    }
}

fn failed(samples: &[Sample]) -> String {
    let failed: u64 = samples.iter().map(|s| s.failed).sum();
    let skipped: u64 = samples.iter().map(|s| s.skipped).sum();
    let total: u64 = samples.iter().map(|s| s.total).sum();
    format!("{failed} / {skipped} of {total}")
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Measures one window: marks its start, reads CPU of the prober and the target, waits, reads
/// CPU again and takes the prober's counts. `mark(true)` starts the prober's count,
/// `mark(false)` reads it.
async fn window(
    prober: u32,
    target: u32,
    length: Duration,
    mut mark: impl FnMut(bool) -> Summary,
) -> Result<Sample, Error> {
    mark(true);
    let cpu0 = cpu_seconds(prober)?;
    let target0 = cpu_seconds(target).unwrap_or_default();
    let t0 = Instant::now();
    tokio::time::sleep(length).await;
    let cpu1 = cpu_seconds(prober)?;
    let target1 = cpu_seconds(target).unwrap_or_default();
    let elapsed = t0.elapsed().as_secs_f64();
    let summary = mark(false);
    let rate = summary.done as f64 / elapsed;
    let per_1k = |cpu: f64| {
        if summary.done == 0 {
            f64::NAN
        } else {
            cpu / summary.done as f64 * 1000.0
        }
    };
    Ok(Sample {
        rate,
        cpu_per_1k: per_1k(cpu1 - cpu0),
        target_cpu_per_1k: per_1k(target1 - target0),
        latency: summary.latency,
        lag: None,
        peak_rss: 0,
        failed: summary.failed,
        skipped: summary.skipped,
        total: summary.done + summary.skipped,
    })
}

/// A prober's counts over a window.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Summary {
    done: u64,
    failed: u64,
    skipped: u64,
    latency: (f64, f64),
}

/// A running slowburn daemon on a generated probe file.
struct Slowburn {
    process: Proc,
    port: u16,
    client: reqwest::Client,
}

impl Slowburn {
    fn start(bench: &Bench, yaml: &str, name: &str) -> Result<Slowburn, Error> {
        let file = bench.work.path.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml)?;
        let port = free_port()?;
        let log = std::fs::File::create(bench.work.path.join(format!("{name}.log")))?;
        let process = Proc::spawn(
            Command::new(&bench.slowburn)
                .arg("run")
                .arg("-c")
                .arg(&file)
                .arg("--listen")
                .arg(format!("127.0.0.1:{port}"))
                .env("RUST_LOG", "warn")
                .current_dir(&bench.work.path)
                .stdout(Stdio::null())
                .stderr(log),
        )?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Slowburn {
            process,
            port,
            client,
        })
    }

    /// Polls `/metrics` until it lists `probes` configured probes; returns when it did.
    async fn wait_ready(&mut self, probes: usize, limit: Duration) -> Result<Instant, Error> {
        let begun = Instant::now();
        while begun.elapsed() < limit {
            if let Some(status) = self.process.exited() {
                return Err(format!("slowburn exited early ({status}); see its log").into());
            }
            if let Ok(body) = self.scrape().await
                && metric_value(&body, "slowburn_probes_configured") == Some(probes as f64)
            {
                return Ok(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("slowburn did not show {probes} probes within {limit:?}").into())
    }

    async fn scrape(&self) -> Result<String, Error> {
        let url = format!("http://127.0.0.1:{}/metrics", self.port);
        Ok(self.client.get(url).send().await?.text().await?)
    }

    /// Measures one window between two scrapes. Counters are read when a render starts (it
    /// snapshots every probe first), so the probe rate is taken between the two scrape
    /// *starts*; CPU is read between the end of the first render and the start of the second,
    /// so neither render is counted against the probes.
    async fn window(&mut self, bench: &Bench, length: Duration) -> Result<Sample, Error> {
        let pid = self.process.pid();
        let start0 = Instant::now();
        let before = Scrape::parse(&self.scrape().await?);
        let cpu0 = cpu_seconds(pid)?;
        let target0 = cpu_seconds(bench.target.pid()).unwrap_or_default();
        let t0 = Instant::now();
        tokio::time::sleep(length).await;
        let cpu1 = cpu_seconds(pid)?;
        let target1 = cpu_seconds(bench.target.pid()).unwrap_or_default();
        let start1 = Instant::now();
        let cpu_elapsed = start1.duration_since(t0).as_secs_f64();
        let after = Scrape::parse(&self.scrape().await?);
        let rate = (after.runs - before.runs) / start1.duration_since(start0).as_secs_f64();
        let per_1k = |cpu: f64| cpu / (rate * cpu_elapsed).max(1.0) * 1000.0;
        let buckets: Vec<u64> = after
            .lag_buckets
            .iter()
            .zip(&before.lag_buckets)
            .map(|(a, b)| a.saturating_sub(*b))
            .collect();
        let count = after.lag_count.saturating_sub(before.lag_count);
        let lag = bucket_quantile(0.5, &buckets, count).zip(bucket_quantile(0.99, &buckets, count));
        let mut durations = after.durations;
        durations.sort_by(f64::total_cmp);
        Ok(Sample {
            rate,
            cpu_per_1k: per_1k(cpu1 - cpu0),
            target_cpu_per_1k: per_1k(target1 - target0),
            latency: (quantile(&durations, 0.5), quantile(&durations, 0.99)),
            lag,
            peak_rss: peak_rss(pid),
            failed: (after.failures - before.failures) as u64,
            skipped: (after.skipped - before.skipped) as u64,
            total: (after.runs - before.runs + after.skipped - before.skipped) as u64,
        })
    }
}

/// The figures read from one slowburn `/metrics` page.
#[derive(Debug, Default)]
struct Scrape {
    runs: f64,
    failures: f64,
    skipped: f64,
    lag_buckets: Vec<u64>,
    lag_count: u64,
    durations: Vec<f64>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut scrape = Scrape {
            lag_buckets: vec![0; LAG_BUCKETS.len()],
            ..Scrape::default()
        };
        for line in text.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            match name {
                "slowburn_probe_runs_total" => scrape.runs += value,
                "slowburn_probe_failures_total" => scrape.failures += value,
                "slowburn_probe_skipped_total" => scrape.skipped += value,
                "probe_duration_seconds" => scrape.durations.push(value),
                "slowburn_schedule_lag_seconds_count" => scrape.lag_count = value as u64,
                "slowburn_schedule_lag_seconds_bucket" => {
                    let le = series
                        .split("le=\"")
                        .nth(1)
                        .and_then(|rest| rest.split('"').next())
                        .and_then(|le| le.parse::<f64>().ok());
                    if let Some(i) = le.and_then(|le| LAG_BUCKETS.iter().position(|b| *b == le)) {
                        scrape.lag_buckets[i] = value as u64;
                    }
                }
                _ => {}
            }
        }
        scrape
    }
}

/// The value of an unlabelled series in a Prometheus text page.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?.strip_prefix(' ')?;
        rest.trim().parse().ok()
    })
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// What a paced driver saw since its last reset.
#[derive(Debug, Default)]
struct Stats {
    latencies: Vec<f64>,
    failed: u64,
    skipped: u64,
}

impl Stats {
    fn reset(&mut self) {
        *self = Stats::default();
    }

    fn summary(&self) -> Summary {
        let mut sorted = self.latencies.clone();
        sorted.sort_by(f64::total_cmp);
        Summary {
            done: self.latencies.len() as u64 + self.failed,
            failed: self.failed,
            skipped: self.skipped,
            latency: (quantile(&sorted, 0.5), quantile(&sorted, 0.99)),
        }
    }
}

/// Starts `probe()` at `rate` per second, evenly, with at most `concurrency` in flight; a
/// start that finds the limit reached is counted as skipped, as slowburn skips a tick. Each
/// probe returns its latency in seconds, or `None` when it failed.
async fn pace<F, Fut>(rate: f64, concurrency: usize, stats: Arc<Mutex<Stats>>, probe: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Option<f64>> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(concurrency));
    let begun = tokio::time::Instant::now();
    let mut launched = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let due = (begun.elapsed().as_secs_f64() * rate) as u64;
        while launched < due {
            launched += 1;
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                if let Ok(mut s) = stats.lock() {
                    s.skipped += 1;
                }
                continue;
            };
            let run = probe();
            let stats = stats.clone();
            tokio::spawn(async move {
                let result = run.await;
                drop(permit);
                if let Ok(mut s) = stats.lock() {
                    match result {
                        Some(latency) => s.latencies.push(latency),
                        None => s.failed += 1,
                    }
                }
            });
        }
    }
}

/// `__floor URL RATE CONCURRENCY`: the bare reqwest loop, in its own process so its CPU is
/// its own. Reads `start` and `stop` on stdin; answers `stop` with a JSON [`Summary`].
fn floor_mode(args: &[String]) {
    let (Some(url), Some(rate), Some(concurrency)) = (
        args.first().cloned(),
        args.get(1).and_then(|r| r.parse::<f64>().ok()),
        args.get(2).and_then(|c| c.parse::<usize>().ok()),
    ) else {
        eprintln!("usage: load __floor URL RATE CONCURRENCY");
        std::process::exit(2);
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let stats = Arc::new(Mutex::new(Stats::default()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("reqwest client");
    runtime.spawn(pace(rate, concurrency, stats.clone(), move || {
        let client = client.clone();
        let url = url.clone();
        async move {
            let begun = Instant::now();
            let response = client
                .get(&url)
                .header("connection", "close")
                .send()
                .await
                .ok()?;
            let ok = response.status() == reqwest::StatusCode::OK;
            response.bytes().await.ok()?;
            ok.then(|| begun.elapsed().as_secs_f64())
        }
    }));
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let mut stats = stats.lock().unwrap_or_else(|e| e.into_inner());
        match line.trim() {
            "start" => stats.reset(),
            "stop" => {
                let summary = stats.summary();
                let _ = writeln!(stdout, "{}", json!(summary));
                let _ = stdout.flush();
            }
            _ => {}
        }
        let _ = writeln!(stdout, "ok");
        let _ = stdout.flush();
    }
}

/// The parent's end of the floor's stdin/stdout protocol.
struct FloorControl {
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl FloorControl {
    fn new(process: &mut Proc) -> Result<FloorControl, Error> {
        let child = process.child.as_mut().ok_or("no floor process")?;
        Ok(FloorControl {
            input: child.stdin.take().ok_or("no stdin")?,
            output: BufReader::new(child.stdout.take().ok_or("no stdout")?),
        })
    }

    fn command(&mut self, command: &str) -> Result<Summary, Error> {
        writeln!(self.input, "{command}")?;
        self.input.flush()?;
        let mut summary = Summary::default();
        loop {
            let mut line = String::new();
            if self.output.read_line(&mut line)? == 0 {
                return Err("the floor process ended".into());
            }
            let line = line.trim();
            if line == "ok" {
                return Ok(summary);
            }
            summary = serde_json::from_str(line)?;
        }
    }
}

/// `__target PORT...`: a small hyper server answering `ok` on each port, when nginx is absent.
fn target_mode(args: &[String]) {
    let ports: Vec<u16> = args.iter().filter_map(|p| p.parse().ok()).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let mut servers = Vec::new();
        for port in ports {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("bind the target port");
            servers.push(tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|_request| async {
                            Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                http_body_util::Full::new(bytes::Bytes::from_static(b"ok")),
                            ))
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            }));
        }
        for server in servers {
            let _ = server.await;
        }
    });
}

/// The HTTP target every prober hits: nginx, or this binary in `__target` mode.
struct Target {
    process: Proc,
    ports: Vec<u16>,
    kind: String,
}

impl Target {
    fn start(work: &WorkDir, count: usize, builtin: bool) -> Result<Target, Error> {
        let ports = (0..count)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let nginx = Path::new(NGINX);
        let (process, kind) = if nginx.exists() && !builtin {
            let dir = work.path.join("nginx");
            std::fs::create_dir_all(&dir)?;
            let listen: String = ports
                .iter()
                .map(|p| format!("    listen 127.0.0.1:{p} backlog=4096;\n"))
                .collect();
            let config = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile 65536;\n\
                 pid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
                 events {{ worker_connections 16384; }}\n\
                 http {{\n  access_log off;\n  server {{\n{listen}    location / {{ return 200 \"ok\"; }}\n  }}\n}}\n",
                dir = dir.display()
            );
            let file = dir.join("nginx.conf");
            std::fs::write(&file, config)?;
            let process = Proc::spawn(
                Command::new(nginx)
                    .arg("-p")
                    .arg(&dir)
                    .arg("-e")
                    .arg(dir.join("error.log"))
                    .arg("-c")
                    .arg(&file)
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit()),
            )?;
            (
                process,
                format!("nginx {} (1 worker, return 200)", version(nginx)),
            )
        } else {
            let process = Proc::spawn(
                Command::new(std::env::current_exe()?)
                    .arg("__target")
                    .args(ports.iter().map(u16::to_string))
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit()),
            )?;
            (
                process,
                "built-in hyper server (one thread; nginx not found or --builtin-target)".into(),
            )
        };
        let target = Target {
            process,
            ports,
            kind,
        };
        for port in &target.ports {
            block_until_listening(*port, Duration::from_secs(10))?;
        }
        Ok(target)
    }

    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn describe(&self) -> String {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        format!("{} on 127.0.0.1:{}", self.kind, ports.join(","))
    }
}

/// A child process, killed when dropped.
struct Proc {
    child: Option<Child>,
    pid: u32,
}

impl Proc {
    fn spawn(command: &mut Command) -> Result<Proc, Error> {
        let child = command
            .spawn()
            .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))?;
        Ok(Proc {
            pid: child.id(),
            child: Some(child),
        })
    }

    fn pid(&self) -> u32 {
        self.pid
    }

    fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A scratch directory for generated configs and logs, removed at the end.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn new(keep: bool) -> Result<WorkDir, Error> {
        let path = std::env::temp_dir().join(format!("slowburn-load-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        if keep {
            eprintln!("scratch directory (kept): {}", path.display());
        }
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

struct Machine {
    cores: usize,
    cpu: String,
    memory: u64,
    kernel: String,
}

impl Machine {
    fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")?
                    .split_once(':')
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            * 1024;
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| format!("Linux {}", k.trim()))
            .unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory,
            kernel,
        }
    }
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// User + system CPU seconds of a process (all its threads), from `/proc/PID/stat`.
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
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / procfs::ticks_per_second() as f64)
}

/// A `kB` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident set (`VmHWM`), bytes.
fn peak_rss(pid: u32) -> u64 {
    status_kib(pid, "VmHWM:") * 1024
}

fn free_port() -> Result<u16, Error> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn block_until_listening(port: u16, limit: Duration) -> Result<(), Error> {
    let begun = Instant::now();
    while begun.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on 127.0.0.1:{port} after {limit:?}").into())
}

async fn wait_listening(port: u16, limit: Duration) -> Result<(), Error> {
    let begun = Instant::now();
    while begun.elapsed() < limit {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("nothing listens on 127.0.0.1:{port} after {limit:?}").into())
}

/// The first line a program prints about its version.
fn version(program: &Path) -> String {
    let flag = if program.ends_with("nginx") {
        "-v"
    } else {
        "--version"
    };
    Command::new(program)
        .arg(flag)
        .output()
        .map(|o| {
            let text = [o.stdout, o.stderr].concat();
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_else(|_| "version unknown".into())
}

/// Percent-encodes a URL for use as a query value.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
