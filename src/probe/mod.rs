//! Probes: one run of one check against one target, and what it found.
//!
//! A probe is built once from its spec (validated while building, so nothing at run time meets
//! an invalid config) and then run many times. A run fills a [`Trace`] with timed phases,
//! numeric signals and assertion results, and ends in success or a [`Failure`] with a stable
//! short reason. [`execute`] wraps a run in its hard deadline and turns it into an [`Outcome`].
//!
//! This module knows nothing of alerts, the store, metrics or the HTTP server: it hands a plain
//! [`Outcome`] to whoever called it. Adding a kind is one file (its spec, its [`Kind`] impl and
//! its signal table) plus one row of the [`kinds!`] table below.

pub mod cert;
pub mod dns;
pub mod grpc;
pub mod heartbeat;
pub mod http;
pub mod icmp;
pub mod log;
pub mod net;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod resolve;
pub mod tcp;
pub mod trust;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

pub use crate::basics::SpecError;
use crate::basics::signal::KindInfo;
use crate::basics::units::format_duration;
use crate::basics::yaml::{Pos, Spanned};

/// The table of probe kinds. Each row (`key => Variant(module::ProbeType)`) generates the
/// kind's field of [`KindSpecs`], its key in [`KIND_KEYS`], its variant of [`Probe`], its
/// entry in [`KINDS`] and its arm in every dispatch; the kind's own file holds its spec, its
/// signal table (`KIND`) and its [`Kind`] impl. Adding a kind is one file plus one row.
macro_rules! kinds {
    ($($key:ident => $variant:ident($module:ident::$probe:ident),)*) => {
        /// The specs of every probe kind, as read from a probe entry; exactly one must be
        /// present. Boxed: inline, every probe read but not yet built would carry the size of
        /// every kind's spec, most of the load's peak memory at 100,000 probes.
        #[derive(Debug, Default, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct KindSpecs {
            $(pub $key: Option<Box<Spanned<<$module::$probe as Kind>::Spec>>>,)*
        }

        /// The keys of [`KindSpecs`], which a probe entry carries beside its own keys.
        pub const KIND_KEYS: &[&str] = &[$(stringify!($key)),*];

        /// Every kind's key and the key of its section that a listed target fills
        /// (`Kind::TARGET_KEY`), in table order.
        pub const TARGET_KEYS: &[(&str, Option<&str>)] =
            &[$((stringify!($key), <$module::$probe as Kind>::TARGET_KEY)),*];

        /// Every kind's key and the JSON Schema of its section, in table order.
        pub fn kind_schemas(
            generator: &mut schemars::SchemaGenerator,
        ) -> Vec<(&'static str, schemars::Schema)> {
            vec![$((stringify!($key), <$module::$probe as Kind>::schema(generator)),)*]
        }

        /// Every kind's signals and headline, in table order.
        pub const KINDS: &[&KindInfo] = &[$(&<$module::$probe as Kind>::INFO),*];

        /// A built, runnable probe.
        #[derive(Debug)]
        pub enum Probe {
            $($variant(Box<$module::$probe>),)*
        }

        impl KindSpecs {
            /// The keys of the kinds given.
            pub fn given(&self) -> Vec<&'static str> {
                let mut given = Vec::new();
                $(if self.$key.is_some() {
                    given.push(stringify!($key));
                })*
                given
            }

            fn build_first(self, ctx: &BuildContext) -> Option<Result<Probe, Vec<SpecError>>> {
                $(if let Some(spec) = self.$key {
                    return Some(
                        <$module::$probe as Kind>::new(*spec, ctx)
                            .map(|p| Probe::$variant(Box::new(p))),
                    );
                })*
                None
            }
        }

        impl Probe {
            /// What the rest of the house knows of this probe's kind.
            pub fn info(&self) -> &'static KindInfo {
                match self {
                    $(Probe::$variant(_) => &<$module::$probe as Kind>::INFO,)*
                }
            }

            /// What the probe is pointed at, for people (URL, address, query).
            pub fn target(&self) -> String {
                match self {
                    $(Probe::$variant(p) => p.target(),)*
                }
            }

            /// How often the probe wants to run when its entry sets no `interval`.
            pub fn check_every(&self) -> Option<Duration> {
                match self {
                    $(Probe::$variant(p) => <$module::$probe as Kind>::check_every(p),)*
                }
            }

            async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
                match self {
                    $(Probe::$variant(p) => p.run(trace).await,)*
                }
            }

            /// The signals this probe's spec names (a log probe's patterns), beside its
            /// kind's table.
            pub fn spec_signals(&self) -> Vec<(&'static str, crate::basics::signal::Unit)> {
                match self {
                    $(Probe::$variant(p) => p.spec_signals(),)*
                }
            }

            /// Where a probe that reads a stream stands, for whoever keeps it across
            /// restarts and reloads.
            pub fn checkpoint(&self) -> Option<String> {
                match self {
                    $(Probe::$variant(p) => p.checkpoint(),)*
                }
            }

            /// Continues from a checkpoint; `false` when it was not this probe's to read.
            pub fn restore(&self, checkpoint: &str) -> bool {
                match self {
                    $(Probe::$variant(p) => p.restore(checkpoint),)*
                }
            }
        }
    };
}

kinds! {
    http => Http(http::HttpProbe),
    tcp => Tcp(tcp::TcpProbe),
    dns => Dns(dns::DnsProbe),
    process => Process(process::ProcessProbe),
    postgres => Postgres(postgres::PostgresProbe),
    prometheus => Prometheus(prometheus::PrometheusProbe),
    heartbeat => Heartbeat(heartbeat::HeartbeatProbe),
    log => Log(log::LogProbe),
    icmp => Icmp(icmp::IcmpProbe),
    grpc => Grpc(grpc::GrpcProbe),
}

/// What every probe kind implements; [`kinds!`] dispatches to it.
pub trait Kind: Sized {
    /// The kind's section as written in a probe file.
    type Spec: for<'de> Deserialize<'de>;
    /// Its name, signals and headline (the `KIND` const of its file).
    const INFO: KindInfo;
    /// The key of its section that each of an entry's `targets:` fills (`url`, `address`);
    /// `None`: the kind is not pointed at targets.
    const TARGET_KEY: Option<&'static str> = None;
    /// Builds the probe, validating the spec; every error found.
    fn new(spec: Spanned<Self::Spec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>>;
    /// What the probe is pointed at, for people.
    fn target(&self) -> String;
    /// How often the kind wants to run when the entry sets no `interval` (a heartbeat judges
    /// its deadline about once per grace); `None` takes `defaults.interval`.
    fn check_every(&self) -> Option<Duration> {
        None
    }
    /// One run, filling `trace`.
    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send;
    /// The JSON Schema of the kind's section, for `slowburn schema`. The default takes any
    /// mapping; a kind whose spec derives `schemars::JsonSchema` answers
    /// `generator.subschema_for::<Self::Spec>()`, so editors can check its keys.
    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let _ = generator;
        schemars::json_schema!({"type": "object"})
    }
    /// Signals named in the spec rather than the kind's table (a log probe's patterns).
    fn spec_signals(&self) -> Vec<(&'static str, crate::basics::signal::Unit)> {
        Vec::new()
    }
    /// Where a probe that reads a stream stands (none for probes that keep nothing).
    fn checkpoint(&self) -> Option<String> {
        None
    }
    /// Continues from a checkpoint this kind wrote.
    fn restore(&self, _checkpoint: &str) -> bool {
        false
    }
}

/// What the rest of the house knows of the kind named `name`.
pub fn kind_info(name: &str) -> Option<&'static KindInfo> {
    KINDS.iter().copied().find(|k| k.name == name)
}

/// Shared, expensive things a probe is built with: passed in, never global.
#[derive(Clone)]
pub struct BuildContext {
    pub net: Arc<net::NetContext>,
}

impl Probe {
    /// Builds the one probe a spec describes, or every error found in it.
    pub fn build(specs: KindSpecs, pos: Pos, ctx: &BuildContext) -> Result<Probe, Vec<SpecError>> {
        let given = specs.given();
        if given.len() != 1 {
            let message = if given.is_empty() {
                format!("a probe needs exactly one kind: {}", KIND_KEYS.join(", "))
            } else {
                format!(
                    "a probe has exactly one kind, found {}",
                    given.join(" and ")
                )
            };
            return Err(vec![SpecError::new(pos, "", message)]);
        }
        specs
            .build_first(ctx)
            .unwrap_or_else(|| unreachable!("exactly one kind was checked above"))
    }

    /// The kind's name, as used in the `kind` metric label.
    pub fn kind(&self) -> &'static str {
        self.info().name
    }
}

/// Runs a probe once under a hard deadline and reports what happened.
pub async fn execute(probe: &Probe, timeout: Duration) -> Outcome {
    let at = SystemTime::now();
    let mut trace = Trace::new();
    let result = match tokio::time::timeout(timeout, probe.run(&mut trace)).await {
        Ok(result) => result,
        Err(_) => Err(Failure::Timeout {
            after: timeout,
            phase: trace.current.unwrap_or("start"),
        }),
    };
    trace.finish();
    Outcome {
        at,
        success: result.is_ok(),
        duration: trace.started.elapsed(),
        phases: trace.phases.into(),
        signals: trace.signals.into(),
        failure: result.err(),
        checks: trace.checks.into(),
        notes: trace.notes.into(),
        series: trace.series.into(),
        log: trace.log,
        certificate: trace.certificate,
    }
}

/// The result of one run: what the metrics, the store and the alert engine read.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the run started (wall clock).
    pub at: SystemTime,
    pub success: bool,
    pub duration: Duration,
    /// Time spent in each phase, in the order first entered; repeated phases (redirect hops)
    /// are summed.
    ///
    /// The lists are boxed slices, exactly as long as what the run produced: every probe keeps
    /// its last outcome, so spare capacity here is paid 100,000 times.
    pub phases: Box<[(&'static str, Duration)]>,
    /// Named numeric signals (`latency`, `status`, `cert_days_left`, …).
    pub signals: Box<[(&'static str, f64)]>,
    pub failure: Option<Failure>,
    /// Every assertion evaluated, passed or not.
    pub checks: Box<[Check]>,
    /// Evidence for people: offending sessions, matched processes, redirect hops.
    pub notes: Box<[String]>,
    /// Sub-signals of a signal that came as several series (a `prometheus:` query answering
    /// a vector): the signal's name, the series' labels written PromQL-style, its value.
    /// Each is watched as `signal{labels}`, with detectors of its own.
    pub series: Box<[(&'static str, Box<str>, f64)]>,
    /// A log probe's checkpoint, new signatures and counters.
    pub log: Option<Box<log::Report>>,
    /// The leaf certificate a TLS peer presented (http and tcp over TLS).
    pub certificate: Option<Box<cert::Certificate>>,
}

impl Outcome {
    /// The value of a signal, if this run produced it.
    pub fn signal(&self, name: &str) -> Option<f64> {
        self.signals
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    }
}

/// One assertion and its result.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: &'static str,
    pub passed: bool,
    pub detail: String,
}

/// Why a run failed. `reason()` is a stable short label for metrics, alerts and dedup keys;
/// `Display` is the precise sentence for people.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    #[error("timeout after {} in phase {phase}", format_duration(*after))]
    Timeout {
        after: Duration,
        phase: &'static str,
    },
    #[error("dns: {0}")]
    Dns(String),
    #[error("connect: {0}")]
    Connect(String),
    #[error("tls: {0}")]
    Tls(String),
    #[error("http: {0}")]
    Http(String),
    #[error("status {got} not in [{expected}]")]
    Status { got: u16, expected: String },
    #[error("redirect: {0}")]
    Redirect(String),
    #[error("body: {0}")]
    Body(String),
    #[error("header: {0}")]
    Header(String),
    #[error("json: {0}")]
    Json(String),
    #[error("latency {} above {}", format_duration(*took), format_duration(*limit))]
    Latency { took: Duration, limit: Duration },
    #[error("cert: {0}")]
    Cert(String),
    #[error("expect: {0}")]
    Expect(String),
    #[error("rcode: {0}")]
    Rcode(String),
    #[error("answers: {0}")]
    Answers(String),
    /// A measured signal beyond its limit (`max_rss`, `max_slow_queries`, `min`, …); the
    /// reason is the signal's name, so each limit alerts on its own.
    #[error("{signal}: {message}")]
    Limit {
        signal: &'static str,
        message: String,
    },
    #[error("pidfile: {0}")]
    Pidfile(String),
    #[error("proc: {0}")]
    Proc(String),
    #[error("auth: {0}")]
    Auth(String),
    #[error("database: {0}")]
    Database(String),
    #[error("query: {0}")]
    Query(String),
    #[error("no data: {0}")]
    NoData(String),
    #[error("cardinality: {0}")]
    Cardinality(String),
    #[error("prometheus: {0}")]
    Prometheus(String),
    /// A heartbeat's ping did not arrive by its due time plus grace.
    #[error("late: {0}")]
    Late(String),
    /// A heartbeat's job reported failure (`/fail`, a non-zero exit code).
    #[error("job: {0}")]
    Job(String),
    #[error("missing: {0}")]
    Missing(String),
    #[error("unreadable: {0}")]
    Unreadable(String),
    #[error("journal: {0}")]
    Journal(String),
    /// No ICMP socket may be opened (neither a ping socket nor a raw one).
    #[error("permission: {0}")]
    Permission(String),
    #[error("icmp: {0}")]
    Icmp(String),
    /// An unreachable or time-exceeded answer, or no route at all.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// A gRPC error status, or an answer that is not gRPC.
    #[error("grpc: {0}")]
    Grpc(String),
    /// A health check answered, but not `SERVING`.
    #[error("not serving: {0}")]
    NotServing(String),
}

impl Failure {
    /// A stable short label: `timeout`, `dns`, `connect`, `tls`, `status`, …
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Timeout { .. } => "timeout",
            Failure::Dns(_) => "dns",
            Failure::Connect(_) => "connect",
            Failure::Tls(_) => "tls",
            Failure::Http(_) => "http",
            Failure::Status { .. } => "status",
            Failure::Redirect(_) => "redirect",
            Failure::Body(_) => "body",
            Failure::Header(_) => "header",
            Failure::Json(_) => "json",
            Failure::Latency { .. } => "latency",
            Failure::Cert(_) => "cert",
            Failure::Expect(_) => "expect",
            Failure::Rcode(_) => "rcode",
            Failure::Answers(_) => "answers",
            Failure::Limit { signal, .. } => signal,
            Failure::Pidfile(_) => "pidfile",
            Failure::Proc(_) => "proc",
            Failure::Auth(_) => "auth",
            Failure::Database(_) => "database",
            Failure::Query(_) => "query",
            Failure::NoData(_) => "no_data",
            Failure::Cardinality(_) => "cardinality",
            Failure::Prometheus(_) => "prometheus",
            Failure::Late(_) => "late",
            Failure::Job(_) => "job",
            Failure::Missing(_) => "missing",
            Failure::Unreadable(_) => "unreadable",
            Failure::Journal(_) => "journal",
            Failure::Permission(_) => "permission",
            Failure::Icmp(_) => "icmp",
            Failure::Unreachable(_) => "unreachable",
            Failure::Grpc(_) => "grpc",
            Failure::NotServing(_) => "not_serving",
        }
    }
}

/// What a run records as it goes. Kept outside the run's future so that a run cut off by its
/// deadline still reports the phase it was in and the phases it finished.
#[derive(Debug)]
pub struct Trace {
    started: Instant,
    current: Option<&'static str>,
    current_since: Instant,
    pub phases: Vec<(&'static str, Duration)>,
    pub signals: Vec<(&'static str, f64)>,
    pub checks: Vec<Check>,
    pub notes: Vec<String>,
    pub series: Vec<(&'static str, Box<str>, f64)>,
    pub log: Option<Box<log::Report>>,
    pub certificate: Option<Box<cert::Certificate>>,
}

impl Default for Trace {
    fn default() -> Self {
        Self::new()
    }
}

impl Trace {
    pub fn new() -> Self {
        let now = Instant::now();
        Trace {
            started: now,
            current: None,
            current_since: now,
            phases: Vec::with_capacity(6),
            // An http run records a dozen signals (blackbox's families among them).
            signals: Vec::with_capacity(12),
            checks: Vec::new(),
            notes: Vec::new(),
            series: Vec::new(),
            log: None,
            certificate: None,
        }
    }

    /// Ends the current phase (if any) and starts `phase`.
    pub fn enter(&mut self, phase: &'static str) {
        self.close();
        self.current = Some(phase);
        self.current_since = Instant::now();
    }

    /// Ends the current phase.
    pub fn finish(&mut self) {
        self.close();
        self.current = None;
    }

    /// Time since the run started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sets a signal, replacing an earlier value of the same name.
    pub fn signal(&mut self, name: &'static str, value: f64) {
        match self.signals.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.signals.push((name, value)),
        }
    }

    /// Records the value of one series of `signal` (keyed by its labels, e.g. `{job="api"}`).
    pub fn series(&mut self, signal: &'static str, labels: &str, value: f64) {
        self.series.push((signal, labels.into(), value));
    }

    /// Records an assertion. Returns the failure so the caller can keep the first one.
    pub fn check(
        &mut self,
        name: &'static str,
        result: Result<String, Failure>,
    ) -> Option<Failure> {
        match result {
            Ok(detail) => {
                self.checks.push(Check {
                    name,
                    passed: true,
                    detail,
                });
                None
            }
            Err(failure) => {
                self.checks.push(Check {
                    name,
                    passed: false,
                    detail: failure.to_string(),
                });
                Some(failure)
            }
        }
    }

    fn close(&mut self) {
        if let Some(phase) = self.current {
            let spent = self.current_since.elapsed();
            match self.phases.iter_mut().find(|(p, _)| *p == phase) {
                Some(slot) => slot.1 += spent,
                None => self.phases.push((phase, spent)),
            }
        }
    }
}

/// `1 session`, `3 sessions`: a count with its noun, for messages people read.
pub(crate) fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Keeps the first failure of several assertions.
pub(crate) fn first_failure(
    failures: impl IntoIterator<Item = Option<Failure>>,
) -> Result<(), Failure> {
    match failures.into_iter().flatten().next() {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
