//! The icmp and grpc kinds against blackbox_exporter's own probers, side by side: the real
//! daemon with N = rate × 10 s probes of one kind, and blackbox_exporter (`icmp` or `grpc`
//! module) driven through `/probe` at the same rate by this process over kept-alive
//! connections. Each prober's CPU (user + system, from `/proc/PID/stat`) is read over the
//! same window after a warm-up, as CPU seconds per 1,000 probes.
//!
//! ```text
//! cargo bench --bench kinds                          # 200/s, icmp and grpc, 10 s windows
//! cargo bench --bench kinds -- --rate 500 --window 20 --kinds grpc
//! ```
//!
//! ICMP goes to 127.0.0.1 (as root slowburn and blackbox both use raw sockets; the two run one
//! after the other so neither sees the other's replies). gRPC goes to a health server in this
//! process (hyper, HTTP/2), whose CPU is counted against neither prober.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt, channel::Channel};

type Error = Box<dyn std::error::Error + Send + Sync>;

#[derive(Parser, Debug)]
#[command(
    name = "kinds",
    about = "icmp and grpc probes: slowburn vs blackbox_exporter"
)]
struct Options {
    /// Probes a second, for both probers.
    #[arg(long, default_value_t = 200)]
    rate: u32,
    /// Seconds measured, after a 12 s warm-up (every probe has run once by then).
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Which kinds to compare.
    #[arg(long, value_delimiter = ',', default_value = "icmp,grpc")]
    kinds: Vec<String>,
    /// The slowburn binary (default: the one `cargo bench` built).
    #[arg(long)]
    slowburn: Option<PathBuf>,
    /// Accepted for `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

const INTERVAL: u32 = 10;
const WARMUP: Duration = Duration::from_secs(12);
const BLACKBOX: &str = "/usr/bin/prometheus-blackbox-exporter";

fn cpu_seconds(pid: u32) -> Result<f64, Error> {
    let stat = procfs::process::Process::new(pid as i32)?.stat()?;
    Ok((stat.utime + stat.stime) as f64 / procfs::ticks_per_second() as f64)
}

fn free_port() -> Result<u16, Error> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A health server answering SERVING to every check.
async fn health_server() -> Result<SocketAddr, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let _ = request.into_body().collect().await;
                        let (mut tx, body) = Channel::<Bytes, Infallible>::new(2);
                        tokio::spawn(async move {
                            let _ = tx
                                .send_data(Bytes::from_static(&[0, 0, 0, 0, 2, 8, 1]))
                                .await;
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
                            let _ = tx.send_trailers(trailers).await;
                        });
                        let mut response = http::Response::new(body);
                        response.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/grpc"),
                        );
                        Ok::<_, Infallible>(response)
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                        .await;
            });
        }
    });
    Ok(addr)
}

struct Measured {
    probes: f64,
    cpu: f64,
    failed: u64,
}

impl Measured {
    fn per_1k(&self) -> f64 {
        self.cpu / self.probes * 1000.0
    }
}

/// A child process killed on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_listening(port: u16) -> Result<(), Error> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > Duration::from_secs(30) {
            return Err(format!("nothing listens on {port} after 30 s").into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

fn metric_sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

async fn slowburn(
    options: &Options,
    bin: &PathBuf,
    section: &str,
    dir: &std::path::Path,
) -> Result<Measured, Error> {
    let n = options.rate * INTERVAL;
    let port = free_port()?;
    let mut yaml =
        format!("server: {{listen: \"127.0.0.1:{port}\"}}\nstorage: {{path: state.db}}\nprobes:\n");
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{name: p{i}, interval: {INTERVAL}s, timeout: 2s, {section}}}\n"
        ));
    }
    std::fs::write(dir.join("probes.yaml"), yaml)?;
    let child = Child(
        std::process::Command::new(bin)
            .args(["run", "-c", "probes.yaml"])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let pid = child.0.id();
    wait_listening(port).await?;
    tokio::time::sleep(WARMUP).await;
    let client = reqwest::Client::new();
    let scrape = || async {
        let text = client
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await?
            .text()
            .await?;
        Ok::<_, Error>((
            metric_sum(&text, "slowburn_probe_runs_total"),
            metric_sum(&text, "slowburn_probe_failures_total"),
        ))
    };
    let (runs0, failed0) = scrape().await?;
    let cpu0 = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(options.window)).await;
    let cpu = cpu_seconds(pid)? - cpu0;
    let (runs, failed) = scrape().await?;
    drop(child);
    Ok(Measured {
        probes: runs - runs0,
        cpu,
        failed: (failed - failed0) as u64,
    })
}

async fn blackbox(
    options: &Options,
    module: &str,
    target: &str,
    dir: &std::path::Path,
) -> Result<Measured, Error> {
    let port = free_port()?;
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        "modules:\n  icmp:\n    prober: icmp\n    timeout: 2s\n    icmp: {preferred_ip_protocol: ip4}\n  \
         grpc:\n    prober: grpc\n    timeout: 2s\n    grpc: {tls: false, preferred_ip_protocol: ip4}\n",
    )?;
    let child = Child(
        std::process::Command::new(BLACKBOX)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()?,
    );
    let pid = child.0.id();
    wait_listening(port).await?;
    let url = Arc::new(format!(
        "http://127.0.0.1:{port}/probe?module={module}&target={target}"
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let (done, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let limit = Arc::new(tokio::sync::Semaphore::new(256));
    let stop = Instant::now() + WARMUP + Duration::from_secs(options.window);
    let pace = Duration::from_secs_f64(1.0 / f64::from(options.rate));
    let driver = {
        let (done, failed) = (done.clone(), failed.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
            while Instant::now() < stop {
                tick.tick().await;
                let Ok(permit) = limit.clone().acquire_owned().await else {
                    break;
                };
                let (client, url, done, failed) =
                    (client.clone(), url.clone(), done.clone(), failed.clone());
                tokio::spawn(async move {
                    let ok = match client.get(url.as_str()).send().await {
                        Ok(r) => r.text().await.is_ok_and(|t| t.contains("probe_success 1")),
                        Err(_) => false,
                    };
                    done.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    drop(permit);
                });
            }
        })
    };
    tokio::time::sleep(WARMUP).await;
    let (done0, failed0) = (done.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let cpu0 = cpu_seconds(pid)?;
    tokio::time::sleep(Duration::from_secs(options.window)).await;
    let cpu = cpu_seconds(pid)? - cpu0;
    let probes = done.load(Ordering::Relaxed) - done0;
    let failed = failed.load(Ordering::Relaxed) - failed0;
    let _ = driver.await;
    drop(child);
    Ok(Measured {
        probes: probes as f64,
        cpu,
        failed,
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let options = Options::parse();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let bin =
        (options.slowburn.clone()).unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_slowburn")));
    let dir = std::env::temp_dir().join(format!("slowburn-bench-kinds-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let grpc = health_server().await?;
    println!(
        "{} probes/s, {} s window after {} s warm-up; machine: {} cores, load average {}",
        options.rate,
        options.window,
        WARMUP.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("| kind | prober | probes | failed | CPU s | CPU s per 1k probes | ratio |");
    println!("|---|---|---|---|---|---|---|");
    for kind in &options.kinds {
        let (section, target) = match kind.as_str() {
            "icmp" => (
                "icmp: {host: 127.0.0.1}".to_string(),
                "127.0.0.1".to_string(),
            ),
            "grpc" => (format!("grpc: {{address: '{grpc}'}}"), grpc.to_string()),
            other => return Err(format!("unknown kind {other:?}: icmp or grpc").into()),
        };
        let ours = slowburn(&options, &bin, &section, &dir).await?;
        let theirs = if std::path::Path::new(BLACKBOX).exists() {
            Some(blackbox(&options, kind, &target, &dir).await?)
        } else {
            eprintln!("blackbox_exporter is not installed ({BLACKBOX}): slowburn alone");
            None
        };
        let row = |name: &str, m: &Measured, ratio: &str| {
            println!(
                "| {kind} | {name} | {:.0} | {} | {:.2} | {:.3} | {ratio} |",
                m.probes,
                m.failed,
                m.cpu,
                m.per_1k()
            );
        };
        row("slowburn", &ours, "1");
        if let Some(theirs) = &theirs {
            row(
                "blackbox_exporter",
                theirs,
                &format!("{:.1}×", theirs.per_1k() / ours.per_1k()),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
