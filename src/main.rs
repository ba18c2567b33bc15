//! The `slowburn` command line: argument parsing and printing only.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::json;
use slowburn::config::{self, ConfigError, Source};
use slowburn::probe::{self, BuildContext, net::NetContext};

#[derive(Parser)]
#[command(
    name = "slowburn",
    version,
    about = "A prober that pages before a slow failure becomes an outage"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// `println!` that ends the process quietly once stdout is closed (`slowburn probe … | head`).
/// Rust ignores SIGPIPE, so `println!` would panic there and exit 101.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::emit(format_args!($($arg)*))
    };
}

/// Writes one line to stdout. On a closed pipe it exits with 141, the status a shell reports
/// for a program killed by SIGPIPE, so `set -o pipefail` scripts see what C tools give them.
fn emit(line: std::fmt::Arguments) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("slowburn: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

mod cli;

/// Where `alerts` and `ack` find the daemon unless `--url` says otherwise.
const DEFAULT_URL: &str = "http://127.0.0.1:9464";

#[derive(Subcommand)]
enum Command {
    /// Run the daemon: schedule every probe, serve /metrics and the API.
    Run {
        /// A probe file or a directory of *.yaml/*.yml (repeatable). Default: probes/, or the
        /// built-in self-check probes when probes/ does not exist.
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// Listen address, overriding server.listen.
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// The SQLite store, overriding storage.path (e.g. /var/lib/slowburn/slowburn.db when
        /// the probe files are read-only).
        #[arg(long, value_name = "FILE")]
        store: Option<PathBuf>,
        /// At most this many probe runs at once.
        #[arg(long, default_value_t = 4096)]
        max_in_flight: u32,
        /// This replica's name among those sharing storage.postgres (default: host name and
        /// listen port, e.g. web-1:9464).
        #[arg(long, value_name = "NAME")]
        replica: Option<String>,
        /// Where this replica probes from: it runs the probes whose `locations:` list it, and
        /// those without `locations:` (default: `default`).
        #[arg(long, value_name = "NAME")]
        location: Option<String>,
        /// Log as JSON lines instead of text.
        #[arg(long)]
        log_json: bool,
    },
    /// Validate probe files: a summary per file, or every error with file:line:col.
    Check {
        /// A probe file or a directory of *.yaml/*.yml (repeatable). Default: probes/, or the
        /// built-in self-check probes.
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// One JSON object per line: a file's summary, or an error with file, line and col.
        #[arg(long)]
        json: bool,
    },
    /// Run one probe once and print its phases, signals and assertions.
    Probe {
        /// The probe's name, as in its file.
        name: String,
        /// A probe file or a directory of *.yaml/*.yml (repeatable). Default: probes/, or the
        /// built-in self-check probes.
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// Print the outcome as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Replay a recorded series (unix_seconds,value per line) through a probe's detectors in
    /// virtual time and print every alert transition it would have made.
    Backtest {
        /// The probe files that define the probe (repeatable).
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// The probe whose detectors replay the series.
        #[arg(long)]
        probe: String,
        /// A signal with a `drift:` entry, or `success` for the `slo:` burn rate.
        #[arg(long)]
        signal: String,
        /// A CSV file of unix_seconds,value lines.
        #[arg(long, value_name = "FILE")]
        series: PathBuf,
        /// One JSON object per transition.
        #[arg(long)]
        json: bool,
    },
    /// List the alerts of a running daemon.
    Alerts {
        /// The daemon's address (its server.listen).
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
        /// Include resolved alerts.
        #[arg(long)]
        all: bool,
        /// Print the alerts as one JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge an alert of a running daemon.
    Ack {
        /// The alert's number, as `slowburn alerts` and every notification show it.
        id: u64,
        #[command(flatten)]
        remote: cli::Remote,
    },
    /// Show the replicas sharing storage.postgres: members, probes owned, lag, and what is
    /// waiting to be sent.
    Cluster {
        /// The probe files that name storage.postgres (repeatable).
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON Schema (draft-07) of a probe file, for editors and validators.
    Schema,
    /// Print who is on call in a schedule: its shifts for --days (default 7) from --at
    /// (default now), or with --at alone just the name.
    #[command(args_conflicts_with_subcommands = true)]
    Oncall {
        #[command(subcommand)]
        action: Option<cli::oncall::OncallAction>,
        /// The schedule, as its `schedules:` entry names it.
        schedule: Option<String>,
        /// A probe file or a directory of *.yaml/*.yml (repeatable).
        #[arg(short = 'c', long = "config")]
        config: Vec<PathBuf>,
        /// RFC 3339 (2027-04-12T09:00:00+02:00), or local in the schedule's zone (2027-04-12T09:00).
        #[arg(long)]
        at: Option<String>,
        /// How many days of shifts to print.
        #[arg(long)]
        days: Option<u32>,
        /// One JSON object per shift.
        #[arg(long)]
        json: bool,
    },
    /// Open an incident by hand on a running daemon (a report from customer support), routed
    /// by `routes:` like any other alert.
    Page {
        /// The service it concerns: the `service` label routes match.
        #[arg(long)]
        service: String,
        /// What is wrong, as the page will say it.
        message: String,
        /// File it as a ticket instead of paging.
        #[arg(long)]
        ticket: bool,
        #[command(flatten)]
        remote: cli::Remote,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_json = matches!(cli.command, Command::Run { log_json: true, .. });
    init_logging(log_json);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("slowburn: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        match cli.command {
            Command::Run {
                config,
                listen,
                store,
                max_in_flight,
                replica,
                location,
                ..
            } => {
                let options = slowburn::app::Options {
                    listen,
                    store,
                    max_in_flight: max_in_flight.max(1),
                    replica,
                    location,
                    ..Default::default()
                };
                run(config, options).await
            }
            Command::Check { config, json } => check(config, json),
            Command::Probe { name, config, json } => probe_once(&name, config, json).await,
            Command::Backtest {
                config,
                probe,
                signal,
                series,
                json,
            } => backtest(config, &probe, &signal, &series, json),
            Command::Alerts { url, all, json } => alerts(&url, all, json).await,
            Command::Ack { id, remote } => ack(id, &remote.url, remote.token, remote.by).await,
            Command::Oncall {
                action: Some(action),
                ..
            } => cli::oncall::action(action).await,
            Command::Oncall {
                action: None,
                schedule,
                config,
                at,
                days,
                json,
            } => match schedule {
                Some(name) => cli::oncall::oncall(&name, config, at, days, json).await,
                None => {
                    eprintln!("slowburn: name a schedule: slowburn oncall SCHEDULE");
                    ExitCode::FAILURE
                }
            },
            Command::Page {
                service,
                message,
                ticket,
                remote,
            } => cli::oncall::page(&service, &message, ticket, remote).await,
            Command::Cluster { config, json } => cluster(config, json).await,
            Command::Schema => {
                out!("{:#}", config::schema());
                ExitCode::SUCCESS
            }
        }
    })
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}

/// The probe files to read: what `-c` says, else `probes/`, else the built-in defaults.
fn source(paths: Vec<PathBuf>) -> Source {
    if !paths.is_empty() {
        return Source::Paths(paths);
    }
    let default = PathBuf::from(config::DEFAULT_PATH);
    if default.exists() {
        Source::Paths(vec![default])
    } else {
        tracing::info!("no probes/ directory here: using the built-in self-check probes");
        Source::Text {
            name: "<built-in probes/local.yaml>".into(),
            text: config::EMBEDDED.into(),
        }
    }
}

fn print_errors(errors: &[ConfigError]) {
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!("{} error(s)", errors.len());
}

async fn run(paths: Vec<PathBuf>, options: slowburn::app::Options) -> ExitCode {
    if let Some(location) = &options.location
        && !slowburn::config::cluster::valid_location(location)
    {
        eprintln!("slowburn: --location {location:?}: use letters, digits and _ . - (at most 63)");
        return ExitCode::FAILURE;
    }
    match slowburn::app::run(source(paths), options).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(slowburn::app::StartError::Config(errors)) => {
            print_errors(&errors);
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("slowburn: {e}");
            ExitCode::FAILURE
        }
    }
}

fn context() -> BuildContext {
    BuildContext {
        net: Arc::new(NetContext::new()),
    }
}

/// Loads the probe files, or prints every error and returns `None`.
fn load_or_report(paths: Vec<PathBuf>) -> Option<config::Config> {
    match config::load(&source(paths), &context()) {
        Ok(config) => Some(config),
        Err(errors) => {
            print_errors(&errors);
            None
        }
    }
}

fn check(paths: Vec<PathBuf>, as_json: bool) -> ExitCode {
    match config::load(&source(paths), &context()) {
        Ok(config) => {
            for file in &config.files {
                let kinds: Vec<String> =
                    file.kinds.iter().map(|(k, n)| format!("{k} {n}")).collect();
                if as_json {
                    out!(
                        "{}",
                        json!({"file": file.path, "probes": file.probes(), "kinds": file.kinds})
                    );
                } else {
                    out!(
                        "{}: ok, {} probes ({})",
                        file.path.display(),
                        file.probes(),
                        kinds.join(", ")
                    );
                }
            }
            for w in &config.warnings {
                let pos = w.pos.unwrap_or_default();
                if as_json {
                    out!(
                        "{}",
                        json!({"file": w.file, "line": pos.line, "col": pos.col, "warning": w.message})
                    );
                } else {
                    eprintln!(
                        "{}:{}:{}: warning: {}",
                        w.file.display(),
                        pos.line,
                        pos.col,
                        w.message
                    );
                }
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            if as_json {
                for e in &errors {
                    let pos = e.pos.unwrap_or_default();
                    out!(
                        "{}",
                        json!({"file": e.file, "line": pos.line, "col": pos.col, "message": e.message})
                    );
                }
            } else {
                print_errors(&errors);
            }
            ExitCode::FAILURE
        }
    }
}

async fn probe_once(name: &str, paths: Vec<PathBuf>, as_json: bool) -> ExitCode {
    let Some(config) = load_or_report(paths) else {
        return ExitCode::FAILURE;
    };
    let Some(probe) = config.probes.iter().find(|p| p.name == name) else {
        let names: Vec<&str> = config.probes.iter().map(|p| p.name.as_str()).collect();
        eprintln!(
            "slowburn: no probe named {name:?}; probes: {}",
            names.join(", ")
        );
        return ExitCode::FAILURE;
    };
    // The daemon's store, read only if it exists: heartbeats are judged from its pings, and
    // watched signals shown after its history.
    let store = config
        .storage
        .path
        .exists()
        .then(|| slowburn::store::Store::open(&config.storage.path).ok())
        .flatten();
    if probe.probe.kind() == "heartbeat" {
        match &store {
            Some(store) => slowburn::server::ping::restore_probe(&probe.name, &probe.probe, store),
            None => eprintln!(
                "slowburn: no store at {}: {name:?} is judged as if it had never been pinged",
                config.storage.path.display()
            ),
        }
    }
    let outcome = probe::execute(&probe.probe, probe.timeout).await;
    let detectors = detector_lines(store.as_ref(), probe, &outcome);
    if as_json {
        out!(
            "{}",
            json!({
                "probe": probe.name,
                "kind": probe.probe.kind(),
                "target": probe.probe.target(),
                "success": outcome.success,
                "duration_seconds": outcome.duration.as_secs_f64(),
                "reason": outcome.failure.as_ref().map(|f| f.reason()),
                "error": outcome.failure.as_ref().map(|f| f.to_string()),
                "phases": outcome.phases.iter().map(|(p, d)| (p.to_string(), json!(d.as_secs_f64()))).collect::<serde_json::Map<_, _>>(),
                "signals": outcome.signals.iter().map(|(s, v)| (s.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "checks": outcome.checks.iter().map(|c| json!({"name": c.name, "passed": c.passed, "detail": c.detail})).collect::<Vec<_>>(),
                "notes": outcome.notes,
                "detectors": detectors,
            })
        );
    } else {
        print_outcome(probe, &outcome);
        if !detectors.is_empty() {
            out!("  detectors:");
            for line in &detectors {
                out!("    {line}");
            }
        }
    }
    if outcome.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// What each watched signal's detectors make of this run, after the history the daemon
/// stored: `value: seasonal quiet; learning: 2d of 7d
/// stored`. Nothing is written.
fn detector_lines(
    store: Option<&slowburn::store::Store>,
    probe: &config::ProbeConfig,
    outcome: &probe::Outcome,
) -> Vec<String> {
    use slowburn::detect::{SignalDetectors, replay};
    if probe.watches.is_empty() {
        return Vec::new();
    }
    let now = slowburn::metrics::unix_seconds(outcome.at + outcome.duration);
    let mut lines = Vec::new();
    for watch in &probe.watches {
        // A signal that came as several series is judged series by series, as the daemon does.
        let mut each: Vec<(String, Option<f64>)> = (outcome.series.iter())
            .filter(|(signal, _, _)| *signal == watch.signal)
            .map(|(signal, labels, v)| (format!("{signal}{labels}"), Some(*v)))
            .collect();
        if each.is_empty() {
            each.push((watch.signal.clone(), watch.value(outcome)));
        }
        for (signal, value) in each {
            let mut spec = watch.spec.clone();
            spec.signal = signal;
            let Ok(mut detectors) = SignalDetectors::new(spec) else {
                continue;
            };
            let signal = &detectors.spec().signal;
            let history: Vec<(f64, f64)> = store
                .and_then(|s| {
                    s.samples(&probe.name, signal, now - slowburn::results::HISTORY_AGE)
                        .ok()
                })
                .unwrap_or_default()
                .iter()
                .map(|s| (s.t, s.v))
                .collect();
            replay(&mut detectors, &history);
            if let Some(v) = value {
                detectors.observe(now, v, false);
            }
            let state = detectors.state();
            let flags: Vec<String> = (state.firing.iter())
                .map(|(label, firing)| {
                    format!("{label} {}", if *firing { "FIRING" } else { "quiet" })
                })
                .collect();
            let mut line = format!(
                "{}: {} ({} stored samples)",
                detectors.spec().signal,
                flags.join(", "),
                history.len()
            );
            for (label, note) in &state.notes {
                line.push_str(&format!("; {label}: {note}"));
            }
            lines.push(line);
        }
    }
    lines
}

fn print_outcome(probe: &config::ProbeConfig, outcome: &probe::Outcome) {
    let colour = std::io::stdout().is_terminal();
    let paint = |text: &str, code: &str| {
        if colour {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    };
    let verdict = if outcome.success {
        paint("OK", "32")
    } else {
        paint("FAILED", "31")
    };
    out!(
        "{} {} ({} {}) in {}",
        verdict,
        probe.name,
        probe.probe.kind(),
        probe.probe.target(),
        ms(outcome.duration)
    );
    if let Some(failure) = &outcome.failure {
        out!("  reason: {} ({})", failure, failure.reason());
    }
    if !outcome.phases.is_empty() {
        out!("  phases:");
        for (phase, spent) in &outcome.phases {
            out!("    {phase:<11} {}", ms(*spent));
        }
    }
    if !outcome.signals.is_empty() {
        out!("  signals:");
        for (signal, value) in &outcome.signals {
            out!("    {signal:<15} {value}");
        }
    }
    if !outcome.checks.is_empty() {
        out!("  assertions:");
        for check in &outcome.checks {
            let mark = if check.passed {
                paint("pass", "32")
            } else {
                paint("FAIL", "31")
            };
            out!("    {mark} {:<15} {}", check.name, check.detail);
        }
    }
    for note in &outcome.notes {
        out!("  {note}");
    }
}

/// A run's or a phase's time: `1.27ms`, and below a millisecond `412µs` (a loopback connect
/// or resolving an IP literal would otherwise print `0.00ms`).
fn ms(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        slowburn::basics::units::format_duration(d)
    } else {
        format!("{:.2}ms", d.as_secs_f64() * 1000.0)
    }
}

fn backtest(
    paths: Vec<PathBuf>,
    probe: &str,
    signal: &str,
    series: &std::path::Path,
    as_json: bool,
) -> ExitCode {
    use slowburn::detect;
    let Some(config) = load_or_report(paths) else {
        return ExitCode::FAILURE;
    };
    let Some(probe_config) = config.probes.iter().find(|p| p.name == probe) else {
        eprintln!("slowburn: no probe named {probe:?}");
        return ExitCode::FAILURE;
    };
    let Some(watch) = probe_config
        .watches
        .iter()
        .find(|w| w.signal == signal || (signal == "fds" && w.signal == "fd_ratio"))
    else {
        let watched: Vec<&str> = probe_config
            .watches
            .iter()
            .map(|w| w.signal.as_str())
            .collect();
        eprintln!(
            "slowburn: probe {probe:?} watches no signal {signal:?} (it watches: {})",
            if watched.is_empty() {
                "nothing; add a drift: entry".to_string()
            } else {
                watched.join(", ")
            }
        );
        return ExitCode::FAILURE;
    };
    if let Some(other) = &watch.limit_from {
        eprintln!(
            "slowburn: the limit of {signal:?} follows the signal {other:?}; backtest needs a fixed limit"
        );
        return ExitCode::FAILURE;
    }
    let text = match std::fs::read_to_string(series) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("slowburn: cannot read {}: {e}", series.display());
            return ExitCode::FAILURE;
        }
    };
    let parsed = detect::csv::parse(&text, 3600.0);
    for problem in &parsed.problems {
        eprintln!("{}:{problem}", series.display());
    }
    if parsed.points.is_empty() {
        eprintln!(
            "slowburn: {} holds no usable unix_seconds,value line",
            series.display()
        );
        return ExitCode::FAILURE;
    }
    let started = std::time::Instant::now();
    let verdicts = match detect::backtest(watch.spec.clone(), &parsed.points) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("slowburn: {e}");
            return ExitCode::FAILURE;
        }
    };
    for v in &verdicts {
        if as_json {
            out!(
                "{}",
                json!({
                    "t": v.t, "probe": probe, "signal": v.signal, "detector": v.detector.as_str(),
                    "severity": v.severity.as_str(), "state": v.transition.as_str(),
                    "eta_seconds": v.eta_seconds, "slope": v.slope, "message": v.message,
                })
            );
        } else {
            let eta = v
                .eta_seconds
                .map(|e| format!(" eta ~{}", detect::verdict::format_duration(e)))
                .unwrap_or_default();
            out!(
                "{}  {:<8} {:<6} {:<6} {}{eta}  {}",
                detect::verdict::format_timestamp(v.t),
                v.transition.as_str(),
                v.severity.as_str(),
                v.detector.as_str(),
                v.signal,
                v.message
            );
        }
    }
    if !as_json {
        eprintln!(
            "{} samples from {} to {} replayed in {:.0?}: {} transition(s)",
            parsed.points.len(),
            detect::verdict::format_timestamp(parsed.points[0].0),
            detect::verdict::format_timestamp(parsed.points[parsed.points.len() - 1].0),
            started.elapsed(),
            verdicts.len()
        );
    }
    ExitCode::SUCCESS
}

fn http_client() -> Result<reqwest::Client, String> {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())
}

/// Says why a request to the daemon failed in the words a person needs: reqwest's own
/// message is "error sending request for url (…)", with the cause three sources down.
fn request_error(url: &str, e: &reqwest::Error) -> String {
    let at = e
        .url()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port_or_known_default()?)))
        .unwrap_or_else(|| url.to_string());
    if e.is_timeout() {
        return format!("no answer from {at} within 10s");
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        if let Some(io) = next.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return format!(
                "connection refused at {at}: is `slowburn run` listening there? (--url sets the address)"
            );
        }
        cause = next;
    }
    if e.is_connect() {
        format!("cannot connect to {at}: {cause}")
    } else {
        format!("{e}: {cause}")
    }
}

async fn alerts(url: &str, all: bool, as_json: bool) -> ExitCode {
    let query = if all { "" } else { "?state=active" };
    let result = async {
        let client = http_client()?;
        let response = client
            .get(format!(
                "{}/api/v1/alerts{query}",
                url.trim_end_matches('/')
            ))
            .send()
            .await
            .map_err(|e| request_error(url, &e))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| e.to_string())?;
        let body: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(body["error"]
                .as_str()
                .unwrap_or("request failed")
                .to_string());
        }
        Ok(body)
    }
    .await;
    let body = match result {
        Ok(body) => body,
        Err(e) => {
            eprintln!("slowburn: cannot list alerts from {url}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let list = body.as_array().cloned().unwrap_or_default();
    if as_json {
        out!("{}", serde_json::Value::Array(list));
        return ExitCode::SUCCESS;
    }
    if list.is_empty() {
        out!("no alerts");
    }
    for a in &list {
        let mut flags = Vec::new();
        if a["silenced"] == true {
            flags.push("silenced");
        }
        if a["flapping"] == true {
            flags.push("flapping");
        }
        if a["held_by"].as_array().is_some_and(|h| !h.is_empty()) {
            flags.push("held");
        }
        let since = a["since"]
            .as_f64()
            .map(slowburn::detect::verdict::format_timestamp)
            .unwrap_or_default();
        let acked = a["acked_by"]
            .as_str()
            .map(|b| format!(" acked by {b}"))
            .unwrap_or_default();
        out!(
            "#{:<5} {:<13} {:<6} {:<30} since {since}{acked}{}\n       {}",
            a["id"],
            a["state"].as_str().unwrap_or(""),
            a["severity"].as_str().unwrap_or(""),
            a["dedup_key"].as_str().unwrap_or(""),
            if flags.is_empty() {
                String::new()
            } else {
                format!(" [{}]", flags.join(", "))
            },
            a["summary"].as_str().unwrap_or("")
        );
    }
    ExitCode::SUCCESS
}

async fn ack(id: u64, url: &str, token: Option<String>, by: Option<String>) -> ExitCode {
    let Some(token) = token else {
        eprintln!(
            "slowburn: acknowledging needs the daemon's api token: --token or SLOWBURN_TOKEN"
        );
        return ExitCode::FAILURE;
    };
    let body = json!({"by": by.unwrap_or_else(|| "cli".into())});
    let result = cli::post_json(url, &format!("/api/v1/alerts/{id}/ack"), &token, body).await;
    match result {
        Ok(alert) => {
            out!(
                "acknowledged #{id} {} (by {})",
                alert["dedup_key"].as_str().unwrap_or(""),
                alert["acked_by"].as_str().unwrap_or("")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("slowburn: cannot acknowledge #{id}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `slowburn cluster`: the members of storage.postgres, what each owns, lag and pending steps.
async fn cluster(paths: Vec<PathBuf>, as_json: bool) -> ExitCode {
    use slowburn::cluster::{Identity, pg, report};
    let Some(config) = load_or_report(paths) else {
        return ExitCode::FAILURE;
    };
    let Some(postgres) = config.storage.postgres.clone() else {
        eprintln!("slowburn: these probe files name no storage: postgres: there is no cluster");
        return ExitCode::FAILURE;
    };
    let runs: Vec<report::Runs> = config
        .probes
        .iter()
        .map(|p| report::Runs {
            probe: &p.name,
            locations: p.placement.as_ref().map(|pl| pl.locations.as_slice()),
        })
        .collect();
    // Not a member: it reads the rows and shares the probes out as the members do.
    let me = Identity::new(Some("slowburn-cluster".into()), None, 0);
    let report = async {
        let coordinator = pg::Coordinator::connect((*postgres).clone(), me, postgres.timeouts);
        report::report(&coordinator.await?, &runs).await
    }
    .await;
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("slowburn: {e}");
            return ExitCode::FAILURE;
        }
    };
    if as_json {
        out!("{}", serde_json::to_string(&report).unwrap_or_default());
        return ExitCode::SUCCESS;
    }
    for line in report.lines() {
        out!("{line}");
    }
    ExitCode::SUCCESS
}
