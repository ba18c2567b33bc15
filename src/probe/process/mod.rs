//! The `process:` probe: the local processes that match a name, a command-line regex, a pidfile
//! and/or a user, read straight from `/proc`, with their memory, CPU, file descriptors, threads,
//! zombies, restarts and age. Phase: `scan`.
//!
//! A run lists `/proc` once and reads a few small files per candidate (`stat`, then `cmdline`
//! only when a regex asks for it, then `limits` and the size of `fd/` for the matches); it never
//! walks threads. A process that exits between the listing and the reads is skipped, not an
//! error. The probe keeps what it saw last time (CPU ticks per process, the identities alive)
//! behind a mutex, because CPU use and restarts are differences between two samples; the first
//! run takes a short second sample so that even a one-off `slowburn probe` reports CPU.
//!
//! It reads `/proc` and the pidfile and nothing else: no signals are sent, nothing is written.
//!
//! This file owns the spec and its validation, the built [`ProcessProbe`] and its run, the
//! signals and notes of a sample, the `expect:` limits and their check, its `Kind` impl and its
//! signal table ([`KIND`]). Beside it: `matching.rs` (the `match:` criteria, pidfiles, users,
//! the truncated `comm`) and `sample.rs` (reading `/proc` into processes with an identity, and
//! the CPU and restart differences between two samples).

mod matching;
mod sample;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use tokio::time::Instant;

use self::matching::Matcher;
use self::sample::{History, Scan, Seen};
use super::{BuildContext, Failure, SpecError, Trace, counted, first_failure};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::units::{format_duration, format_size, parse_duration, parse_size};
use crate::basics::yaml::Spanned;

/// How long the first run waits between its two samples, to measure CPU use.
const PRIME_GAP: Duration = Duration::from_millis(250);
/// How many matched processes are listed in the notes.
const MAX_NOTES: usize = 20;

/// `process:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    #[serde(rename = "match")]
    pub matcher: Spanned<MatchSpec>,
    pub expect: Option<ProcessExpectSpec>,
}

/// `process.match:`; every criterion given must hold.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// The process name (`comm`, as `ps -o comm` prints it).
    pub name: Option<Spanned<String>>,
    /// A regex searched in the full command line, arguments joined by spaces.
    pub cmdline: Option<Spanned<String>>,
    /// A file holding the pid.
    pub pidfile: Option<Spanned<String>>,
    /// `self`: the slowburn process running the probe. A daemon watching itself cannot go by
    /// name, which every other slowburn command (and `slowburn probe` itself) shares.
    pub pid: Option<Spanned<String>>,
    /// A user name or numeric uid owning the process.
    pub user: Option<Spanned<String>>,
}

/// `process.expect:` as written in a probe file.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessExpectSpec {
    pub min_count: Option<Spanned<u64>>,
    pub max_count: Option<Spanned<u64>>,
    /// Per process, e.g. `2GiB`.
    pub max_rss: Option<Spanned<String>>,
    /// Per process, in cores (`1.5` = one and a half cores busy).
    pub max_cpu: Option<Spanned<f64>>,
    /// Per process.
    pub max_fds: Option<Spanned<u64>>,
    /// Per process: open fds / soft `Max open files`.
    pub max_fd_ratio: Option<Spanned<f64>>,
    /// Per process.
    pub max_threads: Option<Spanned<u64>>,
    /// `N per DURATION`, e.g. `3 per 30m`.
    pub max_restarts: Option<Spanned<String>>,
}

/// A built process probe.
#[derive(Debug)]
pub struct ProcessProbe {
    matcher: Arc<Matcher>,
    expect: Expect,
    history: Mutex<History>,
}

#[derive(Debug, Default)]
struct Expect {
    min_count: Option<u64>,
    max_count: Option<u64>,
    max_rss: Option<u64>,
    max_cpu: Option<f64>,
    max_fds: Option<u64>,
    max_fd_ratio: Option<f64>,
    max_threads: Option<u64>,
    max_restarts: Option<(u64, Duration)>,
}

impl ProcessProbe {
    /// Validates a spec and builds the probe, returning every error found.
    pub fn new(
        spec: Spanned<ProcessSpec>,
        _ctx: &BuildContext,
    ) -> Result<ProcessProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let m = &spec.matcher;
        let non_empty = |field: &str, text: &Option<Spanned<String>>, errors: &mut Vec<_>| {
            let text = text.as_ref()?;
            if text.trim().is_empty() {
                errors.push(SpecError::new(
                    text.pos,
                    format!("match.{field}"),
                    "must not be empty",
                ));
                return None;
            }
            Some(text.value.clone())
        };
        let name = non_empty("name", &m.name, &mut errors);
        let pidfile = non_empty("pidfile", &m.pidfile, &mut errors).map(PathBuf::from);
        let user = non_empty("user", &m.user, &mut errors);
        let cmdline = m.cmdline.as_ref().and_then(|re| match Regex::new(re) {
            Ok(re) => Some(re),
            Err(e) => {
                errors.push(SpecError::new(
                    re.pos,
                    "match.cmdline",
                    format!("invalid regex: {}", one_line(&e.to_string())),
                ));
                None
            }
        });
        let own = match &m.pid {
            None => false,
            Some(pid) if pid.value == "self" => true,
            Some(pid) => {
                errors.push(SpecError::new(
                    pid.pos,
                    "match.pid",
                    format!(
                        "{:?}: only `self` (this slowburn process); for another process use pidfile",
                        pid.value
                    ),
                ));
                false
            }
        };
        if own && m.pidfile.is_some() {
            errors.push(SpecError::new(
                m.pos,
                "match",
                "pid and pidfile each name one process: give one of them",
            ));
        }
        if m.name.is_none()
            && m.cmdline.is_none()
            && m.pidfile.is_none()
            && m.pid.is_none()
            && m.user.is_none()
        {
            errors.push(SpecError::new(
                m.pos,
                "match",
                "give at least one of name, cmdline, pidfile, pid, user",
            ));
        }
        let expect = build_expect(spec.expect.unwrap_or_default(), &mut errors);
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(ProcessProbe {
            matcher: Arc::new(Matcher {
                name,
                cmdline,
                pidfile,
                own,
                user,
            }),
            expect,
            history: Mutex::new(History::default()),
        })
    }

    /// The match criteria, for people: `name=order-worker user=app`.
    pub fn target(&self) -> String {
        self.matcher.describe()
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        trace.enter("scan");
        let first = self.lock().last.is_none();
        if first {
            // A baseline for CPU and restarts; its errors show up in the real scan below.
            if let Ok(scan) = self.scan().await {
                self.remember(&scan.seen, Instant::now());
            }
            tokio::time::sleep(PRIME_GAP).await;
        }
        let mut scan = self.scan().await?;
        let now = Instant::now();
        let (restarts_total, recent) = self.compare(&mut scan.seen, now);
        trace.finish();
        self.report(&scan, restarts_total, trace);
        self.assert(&scan, &recent, trace)
    }

    fn report(&self, scan: &Scan, restarts_total: u64, trace: &mut Trace) {
        let live: Vec<&Seen> = scan.seen.iter().filter(|s| !s.zombie).collect();
        trace.signal("count", live.len() as f64);
        trace.signal("rss", live.iter().map(|s| s.rss).sum::<u64>() as f64);
        trace.signal(
            "rss_max",
            live.iter().map(|s| s.rss).max().unwrap_or(0) as f64,
        );
        trace.signal("cpu", live.iter().filter_map(|s| s.cores).sum());
        trace.signal("fds", live.iter().filter_map(|s| s.fds).sum::<u64>() as f64);
        trace.signal(
            "fd_ratio",
            live.iter().filter_map(|s| s.fd_ratio()).fold(0.0, f64::max),
        );
        trace.signal(
            "threads",
            live.iter().map(|s| s.threads).sum::<u64>() as f64,
        );
        trace.signal(
            "zombies",
            scan.seen.iter().filter(|s| s.zombie).count() as f64,
        );
        trace.signal("restarts", restarts_total as f64);
        trace.signal("uptime", live.iter().map(|s| s.age).fold(0.0, f64::max));

        if scan.seen.is_empty() {
            trace
                .notes
                .push(format!("no process matches {}", self.matcher.describe()));
        }
        for s in scan.seen.iter().take(MAX_NOTES) {
            let fds = match (s.fds, s.fd_limit) {
                (Some(fds), Some(limit)) => format!("{fds}/{limit}"),
                (Some(fds), None) => format!("{fds}/unlimited"),
                _ => "?".into(),
            };
            let cpu = s.cores.map_or("?".into(), |c| format!("{c:.2}"));
            trace.notes.push(format!(
                "pid {} {}{} rss={} fds={fds} threads={} cpu={cpu} up {}",
                s.id.pid,
                s.comm,
                if s.zombie { " (zombie)" } else { "" },
                format_size(s.rss),
                s.threads,
                format_duration(Duration::from_secs_f64(s.age)),
            ));
        }
        if scan.seen.len() > MAX_NOTES {
            trace.notes.push(format!(
                "… and {} more processes",
                scan.seen.len() - MAX_NOTES
            ));
        }
        trace.notes.extend(scan.unreadable.iter().cloned());
    }

    fn assert(
        &self,
        scan: &Scan,
        recent: &[(Duration, i32)],
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let e = &self.expect;
        let live: Vec<&Seen> = scan.seen.iter().filter(|s| !s.zombie).collect();
        let count = live.len() as u64;
        let what = self.matcher.describe();
        let mut failures = Vec::new();
        if let Some(min) = e.min_count {
            failures.push(trace.check(
                "min_count",
                if count >= min {
                    Ok(format!(
                        "{}, at least {min}",
                        counted(count, "process", "processes")
                    ))
                } else if count == 0 {
                    Err(limit(
                        "count",
                        format!("no process matches {what} (min_count {min})"),
                    ))
                } else {
                    Err(limit(
                        "count",
                        format!("{} {what}, fewer than min_count {min}", matching(count)),
                    ))
                },
            ));
        }
        if let Some(max) = e.max_count {
            failures.push(trace.check(
                "max_count",
                if count <= max {
                    Ok(format!(
                        "{}, at most {max}",
                        counted(count, "process", "processes")
                    ))
                } else {
                    Err(limit(
                        "count",
                        format!("{} {what}, more than max_count {max}", matching(count)),
                    ))
                },
            ));
        }
        if let Some(max) = e.max_rss {
            failures.push(
                trace.check(
                    "max_rss",
                    worst(
                        &live,
                        "rss",
                        |s| Some(s.rss as f64),
                        max as f64,
                        |s, _| {
                            format!(
                                "{} uses {}, above max_rss {}",
                                s.label(),
                                format_size(s.rss),
                                format_size(max)
                            )
                        },
                    )
                    .map(|()| format!("every process below {}", format_size(max))),
                ),
            );
        }
        if let Some(max) = e.max_cpu {
            failures.push(
                trace.check(
                    "max_cpu",
                    worst(
                        &live,
                        "cpu",
                        |s| s.cores,
                        max,
                        |s, v| format!("{} uses {v:.2} cores, above max_cpu {max}", s.label()),
                    )
                    .map(|()| format!("every process below {max} cores")),
                ),
            );
        }
        if let Some(max) = e.max_fds {
            failures.push(
                trace.check(
                    "max_fds",
                    worst(
                        &live,
                        "fds",
                        |s| s.fds.map(|f| f as f64),
                        max as f64,
                        |s, v| format!("{} has {v} open fds, above max_fds {max}", s.label()),
                    )
                    .map(|()| format!("every process at most {max} fds")),
                ),
            );
        }
        if let Some(max) = e.max_fd_ratio {
            failures.push(
                trace.check(
                    "max_fd_ratio",
                    worst(&live, "fd_ratio", Seen::fd_ratio, max, |s, v| {
                        format!(
                            "{} has {} of {} fds open ({v:.2}), above max_fd_ratio {max}",
                            s.label(),
                            s.fds.unwrap_or(0),
                            s.fd_limit.unwrap_or(0)
                        )
                    })
                    .map(|()| format!("every process below {max} of its fd limit")),
                ),
            );
        }
        if let Some(max) = e.max_threads {
            failures.push(
                trace.check(
                    "max_threads",
                    worst(
                        &live,
                        "threads",
                        |s| Some(s.threads as f64),
                        max as f64,
                        |s, v| format!("{} has {v} threads, above max_threads {max}", s.label()),
                    )
                    .map(|()| format!("every process at most {max} threads")),
                ),
            );
        }
        if let Some((max, window)) = e.max_restarts {
            let n = recent.len() as u64;
            let per = format!("{max} per {}", format_duration(window));
            failures.push(trace.check(
                "max_restarts",
                match recent.last() {
                    Some((ago, pid)) if n > max => Err(limit(
                        "restarts",
                        format!(
                            "{} in the last {}, above {per}; latest: pid {pid} seen {} ago",
                            counted(n, "restart", "restarts"),
                            format_duration(window),
                            format_duration(*ago)
                        ),
                    )),
                    _ => Ok(format!(
                        "{}, at most {per}",
                        counted(n, "restart", "restarts")
                    )),
                },
            ));
        }
        first_failure(failures)
    }
}

/// The process whose value is highest, if it is above `max`, as a failure.
fn worst(
    live: &[&Seen],
    signal: &'static str,
    value: impl Fn(&Seen) -> Option<f64>,
    max: f64,
    message: impl Fn(&Seen, f64) -> String,
) -> Result<(), Failure> {
    let top = live
        .iter()
        .filter_map(|s| value(s).map(|v| (*s, v)))
        .max_by(|a, b| a.1.total_cmp(&b.1));
    match top {
        Some((s, v)) if v > max => Err(limit(signal, message(s, v))),
        _ => Ok(()),
    }
}

/// `1 process matches` / `3 processes match`.
fn matching(count: u64) -> String {
    if count == 1 {
        "1 process matches".into()
    } else {
        format!("{count} processes match")
    }
}

fn limit(signal: &'static str, message: String) -> Failure {
    Failure::Limit { signal, message }
}

fn build_expect(spec: ProcessExpectSpec, errors: &mut Vec<SpecError>) -> Expect {
    let mut expect = Expect {
        min_count: spec.min_count.as_ref().map(|v| v.value),
        max_count: spec.max_count.as_ref().map(|v| v.value),
        max_fds: spec.max_fds.as_ref().map(|v| v.value),
        max_threads: spec.max_threads.as_ref().map(|v| v.value),
        ..Expect::default()
    };
    if let (Some(min), Some(max)) = (&spec.min_count, &spec.max_count)
        && min.value > max.value
    {
        errors.push(SpecError::new(
            max.pos,
            "expect.max_count",
            format!("max_count {} is below min_count {}", max.value, min.value),
        ));
    }
    if let Some(size) = &spec.max_rss {
        match parse_size(size) {
            Ok(bytes) => expect.max_rss = Some(bytes),
            Err(m) => errors.push(SpecError::new(size.pos, "expect.max_rss", m)),
        }
    }
    if let Some(cpu) = &spec.max_cpu {
        if cpu.value.is_finite() && cpu.value > 0.0 {
            expect.max_cpu = Some(cpu.value);
        } else {
            errors.push(SpecError::new(
                cpu.pos,
                "expect.max_cpu",
                "must be a number of cores above 0, e.g. 1.5",
            ));
        }
    }
    if let Some(ratio) = &spec.max_fd_ratio {
        if ratio.value > 0.0 && ratio.value <= 1.0 {
            expect.max_fd_ratio = Some(ratio.value);
        } else {
            errors.push(SpecError::new(
                ratio.pos,
                "expect.max_fd_ratio",
                "must be a fraction above 0 and at most 1, e.g. 0.8",
            ));
        }
    }
    if let Some(text) = &spec.max_restarts {
        match parse_per(text) {
            Ok(per) => expect.max_restarts = Some(per),
            Err(m) => errors.push(SpecError::new(text.pos, "expect.max_restarts", m)),
        }
    }
    expect
}

/// Parses `3 per 30m`.
fn parse_per(text: &str) -> Result<(u64, Duration), String> {
    let err = || format!("invalid {text:?}: expected N per DURATION, e.g. 3 per 30m");
    let (n, window) = text.split_once(" per ").ok_or_else(err)?;
    let n: u64 = n.trim().parse().map_err(|_| err())?;
    let window = parse_duration(window.trim()).map_err(|_| err())?;
    if window.is_zero() {
        return Err(err());
    }
    Ok((n, window))
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl super::Kind for ProcessProbe {
    type Spec = ProcessSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<ProcessSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        ProcessProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        ProcessProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        ProcessProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `process:` probes: their signals, how each is exported,
/// and which start over when the process restarts.
pub const KIND: KindInfo = KindInfo {
    name: "process",
    headline: "rss",
    network: false,
    signals: &[
        Signal::new("count", Unit::Count, Some(&COUNT)).per_process(),
        Signal::new("rss", Unit::Bytes, Some(&RSS)).per_process(),
        Signal::new("rss_max", Unit::Bytes, None).per_process(),
        Signal::new("fds", Unit::Count, Some(&FDS)).per_process(),
        Signal::new("fd_ratio", Unit::Ratio, Some(&FD_RATIO)).per_process(),
        Signal::new("threads", Unit::Count, Some(&THREADS)).per_process(),
        Signal::new("restarts", Unit::Count, Some(&RESTARTS)).per_process(),
        Signal::new("cpu", Unit::Count, Some(&CPU)).per_process(),
        Signal::new("zombies", Unit::Count, Some(&ZOMBIES)).per_process(),
        Signal::new("uptime", Unit::Seconds, Some(&UPTIME)).per_process(),
    ],
};
// DESIGN's contract names this one; promtool's lint would prefer no `_count` suffix on a
// gauge, but dashboards and rules written against the contract rely on the name.
const COUNT: Family = gauge(
    "probe_process_count",
    "Matched processes (zombies not counted).",
);
const RSS: Family = gauge(
    "probe_process_rss_bytes",
    "Resident memory of the matched processes, summed, in bytes.",
);
const FDS: Family = gauge(
    "probe_process_open_fds",
    "Open file descriptors of the matched processes, summed.",
);
const FD_RATIO: Family = gauge(
    "probe_process_fd_ratio",
    "Open fds over the soft fd limit of the worst matched process (0 to 1).",
);
const THREADS: Family = gauge(
    "probe_process_threads",
    "Threads of the matched processes, summed.",
);
const RESTARTS: Family = Family {
    name: "probe_process_restarts_total",
    kind: "counter",
    help: "Matched processes that appeared (a new pid and start time) since the probe was loaded.",
};
const CPU: Family = gauge(
    "probe_process_cpu_cores",
    "CPU used by the matched processes between the last two samples, in cores.",
);
const ZOMBIES: Family = gauge(
    "probe_process_zombies",
    "Matched processes that are zombies.",
);
const UPTIME: Family = gauge(
    "probe_process_uptime_seconds",
    "Age of the oldest matched process, in seconds.",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_limits() {
        assert_eq!(parse_per("3 per 30m"), Ok((3, Duration::from_secs(1800))));
        assert_eq!(parse_per("0 per 1h"), Ok((0, Duration::from_secs(3600))));
        for bad in ["3", "3 per", "per 30m", "x per 30m", "3 per 0s", "3 in 30m"] {
            assert!(parse_per(bad).is_err(), "{bad:?} should fail");
        }
    }
}
