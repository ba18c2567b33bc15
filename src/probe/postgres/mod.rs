//! The `postgres:` probe: a PostgreSQL server's sessions and statements as its own statistics
//! views see them, or one number from a custom `query:`. Phases: `connect` (only when a new
//! connection is made) and `query`.
//!
//! Each probe keeps one connection open between runs and makes a new one when it breaks. The
//! session runs as `application_name = 'slowburn'`, read-only, with every statement under
//! `statement_timeout`, so the prober can never become the slow query it looks for; and every
//! view it reads excludes its own backend (`pid <> pg_backend_pid()`).
//!
//! This file owns the spec and its validation, the built [`PostgresProbe`] and its run, the
//! custom `query:` check, its `Kind` impl and its signal table ([`KIND`]). The rest lives
//! beside it, each part reading only what it names: `dsn.rs` (the DSN, the TLS mode, the
//! connection and how driver errors read), `sessions.rs` (`pg_stat_activity`) and
//! `statements.rs` (`pg_stat_statements`, its deltas and baselines). When the extension or a
//! privilege is missing, the rest still runs and a note says what is off and why.
//!
//! The connection's driver is a task owned by the connection and aborted when the connection is
//! dropped (tokio-postgres needs one per connection; it is the only task a probe spawns). The DSN
//! is a secret and never appears in a message, only its host and database.

pub(crate) mod dsn;
mod sessions;
mod statements;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::ClientConfig;
use serde::Deserialize;
use tokio_postgres::SimpleQueryMessage;

use self::dsn::{Conn, parse_dsn, resolve_dsn};
use self::sessions::SessionReport;
use self::statements::{Statements, check_creep, parse_fraction};
use super::net::TlsSpec;
use super::{BuildContext, Failure, SpecError, Trace, first_failure};
use crate::basics::signal::{Family, KindInfo, QUERY_VALUE, Signal, Unit, gauge};
use crate::basics::units::parse_duration;
use crate::basics::yaml::Spanned;

const DEFAULT_SLOW_QUERY: Duration = Duration::from_secs(5);
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MEAN_INCREASE: f64 = 0.5;
const DEFAULT_MIN_CALLS: u64 = 10;
/// Sessions (or creeping statements) listed per kind of trouble in the notes.
const MAX_SESSION_NOTES: usize = 10;
/// Every statement the probe sends starts with this, so it can be told apart in the views.
const TAG: &str = "/* slowburn */";

/// `postgres:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresSpec {
    /// `env:NAME` or `file:/path` holding a libpq DSN (`postgres://…` or `host=… dbname=…`);
    /// a literal DSN is accepted only when it holds no password.
    pub dsn: Spanned<String>,
    /// An active query older than this is slow (default 5s).
    pub slow_query: Option<Spanned<String>>,
    /// Applied to every statement the probe runs (default 2s).
    pub statement_timeout: Option<Spanned<String>>,
    /// Default 5s.
    pub connect_timeout: Option<Spanned<String>>,
    /// Read `pg_stat_statements` (default true).
    pub statements: Option<bool>,
    /// A query returning one number: the probe then reports only that (`value`).
    pub query: Option<Spanned<String>>,
    pub tls_config: Option<TlsSpec>,
    pub expect: Option<PostgresExpectSpec>,
}

/// `postgres.expect:` as written in a probe file.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PostgresExpectSpec {
    pub max_slow_queries: Option<Spanned<u64>>,
    pub max_idle_in_transaction: Option<Spanned<String>>,
    pub max_blocked: Option<Spanned<u64>>,
    pub max_connections_ratio: Option<Spanned<f64>>,
    /// `50%` or `0.5`: a statement whose interval mean rose more than this over its baseline.
    pub max_mean_increase: Option<Spanned<String>>,
    /// Calls a statement needs in an interval before its mean counts (default 10).
    pub min_calls: Option<Spanned<u64>>,
    /// Bounds of a `query:` probe's value.
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
}

/// A built postgres probe.
pub struct PostgresProbe {
    config: tokio_postgres::Config,
    /// `None` for `sslmode=disable`.
    tls: Option<Arc<ClientConfig>>,
    target: String,
    connect_timeout: Duration,
    statement_timeout: Duration,
    mode: Mode,
    state: tokio::sync::Mutex<State>,
}

impl fmt::Debug for PostgresProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresProbe")
            .field("target", &self.target)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PostgresProbe {
    /// Validates a spec and builds the probe, returning every error found.
    pub fn new(
        spec: Spanned<PostgresSpec>,
        ctx: &BuildContext,
    ) -> Result<PostgresProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let dsn =
            resolve_dsn(&spec.dsn).map_err(|m| errors.push(SpecError::new(spec.dsn.pos, "dsn", m)));
        let parsed = dsn.ok().and_then(|dsn| {
            parse_dsn(&dsn)
                .map_err(|m| errors.push(SpecError::new(spec.dsn.pos, "dsn", m)))
                .ok()
        });
        let mut duration = |field: &str, text: &Option<Spanned<String>>, default: Duration| {
            let Some(text) = text else { return default };
            match parse_duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    errors.push(SpecError::new(text.pos, field, "must be more than zero"));
                    default
                }
                Err(m) => {
                    errors.push(SpecError::new(text.pos, field, m));
                    default
                }
            }
        };
        let slow_query = duration("slow_query", &spec.slow_query, DEFAULT_SLOW_QUERY);
        let statement_timeout = duration(
            "statement_timeout",
            &spec.statement_timeout,
            DEFAULT_STATEMENT_TIMEOUT,
        );
        let connect_timeout = duration(
            "connect_timeout",
            &spec.connect_timeout,
            DEFAULT_CONNECT_TIMEOUT,
        );
        let expect = spec.expect.unwrap_or_default();
        let mode = match &spec.query {
            Some(sql) => {
                if sql.trim().is_empty() {
                    errors.push(SpecError::new(sql.pos, "query", "must not be empty"));
                }
                for (field, pos) in [
                    (
                        "max_slow_queries",
                        expect.max_slow_queries.as_ref().map(|s| s.pos),
                    ),
                    (
                        "max_idle_in_transaction",
                        expect.max_idle_in_transaction.as_ref().map(|s| s.pos),
                    ),
                    ("max_blocked", expect.max_blocked.as_ref().map(|s| s.pos)),
                    (
                        "max_connections_ratio",
                        expect.max_connections_ratio.as_ref().map(|s| s.pos),
                    ),
                    (
                        "max_mean_increase",
                        expect.max_mean_increase.as_ref().map(|s| s.pos),
                    ),
                    ("min_calls", expect.min_calls.as_ref().map(|s| s.pos)),
                ] {
                    if let Some(pos) = pos {
                        errors.push(SpecError::new(
                            pos,
                            format!("expect.{field}"),
                            "applies to session checks, not to a `query:` probe (use min and max)",
                        ));
                    }
                }
                if let (Some(min), Some(max)) = (&expect.min, &expect.max)
                    && min.value > max.value
                {
                    errors.push(SpecError::new(
                        max.pos,
                        "expect.max",
                        format!("max {} is below min {}", max.value, min.value),
                    ));
                }
                Mode::Query {
                    sql: sql.value.clone(),
                    min: expect.min.as_ref().map(|v| v.value),
                    max: expect.max.as_ref().map(|v| v.value),
                }
            }
            None => {
                for (field, pos) in [
                    ("min", expect.min.as_ref().map(|s| s.pos)),
                    ("max", expect.max.as_ref().map(|s| s.pos)),
                ] {
                    if let Some(pos) = pos {
                        errors.push(SpecError::new(
                            pos,
                            format!("expect.{field}"),
                            "applies to a `query:` probe only",
                        ));
                    }
                }
                Mode::Activity(Box::new(build_activity(
                    &expect,
                    slow_query,
                    spec.statements.unwrap_or(true),
                    &mut errors,
                )))
            }
        };
        let tls = parsed.as_ref().and_then(|(config, tls_wanted)| {
            dsn::tls_mode(
                config,
                tls_wanted,
                spec.tls_config.as_ref(),
                spec.dsn.pos,
                ctx,
            )
            .map_err(|e| errors.push(e))
            .ok()
            .flatten()
        });
        let Some((mut config, _)) = parsed else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let target = dsn::describe(&config);
        config.application_name("slowburn");
        config.connect_timeout(connect_timeout);
        Ok(PostgresProbe {
            config,
            tls,
            target,
            connect_timeout,
            statement_timeout,
            mode,
            state: tokio::sync::Mutex::new(State::default()),
        })
    }

    /// `postgres://host:port/database`, never the user or the password.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let mut state = self.state.lock().await;
        // The connection is taken out while in use: if this run is cut off by its deadline,
        // the connection is dropped with it rather than reused in an unknown state.
        let mut conn = match state.conn.take() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => {
                trace.enter("connect");
                self.connect().await?
            }
        };
        trace.enter("query");
        let result = match &self.mode {
            Mode::Query { sql, min, max } => self.run_query(&conn, sql, *min, *max, trace).await,
            Mode::Activity(activity) => {
                self.run_activity(&mut conn, activity, &mut state.statements, trace)
                    .await
            }
        };
        trace.finish();
        let broken = conn.client.is_closed()
            || matches!(&result, Err(Failure::Timeout { .. } | Failure::Connect(_)));
        if !broken {
            state.conn = Some(conn);
        }
        result
    }

    async fn run_query(
        &self,
        conn: &Conn,
        sql: &str,
        min: Option<f64>,
        max: Option<f64>,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let messages = self.bounded(conn.client.simple_query(sql)).await?;
        let row = messages.iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        });
        let Some(row) = row else {
            return Err(Failure::Query("the query returned no rows".into()));
        };
        let text = row
            .try_get(0)
            .map_err(|e| Failure::Query(format!("cannot read the first column: {e}")))?
            .ok_or_else(|| Failure::Query("the query returned NULL".into()))?;
        let value = match text {
            "t" => 1.0,
            "f" => 0.0,
            text => text.trim().parse::<f64>().map_err(|_| {
                let shown: String = text.chars().take(40).collect();
                Failure::Query(format!("the query returned {shown:?}, not a number"))
            })?,
        };
        trace.signal("value", value);
        let mut failures = Vec::new();
        if let Some(min) = min {
            failures.push(trace.check(
                "min",
                if value >= min {
                    Ok(format!("{value} ≥ {min}"))
                } else {
                    Err(limit("value", format!("{value} is below min {min}")))
                },
            ));
        }
        if let Some(max) = max {
            failures.push(trace.check(
                "max",
                if value <= max {
                    Ok(format!("{value} ≤ {max}"))
                } else {
                    Err(limit("value", format!("{value} is above max {max}")))
                },
            ));
        }
        first_failure(failures)
    }

    async fn run_activity(
        &self,
        conn: &mut Conn,
        activity: &Activity,
        statements: &mut Statements,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let sessions = self.sessions(conn).await?;
        let report = SessionReport::new(&sessions, activity, conn.available);
        report.signals(trace);
        // Read before the session notes are written, so its notes (off, reset, first sample,
        // creeping) come first.
        let creeping = if activity.statements {
            self.statement_check(conn, activity, statements, trace)
                .await?
        } else {
            None
        };
        report.notes(&mut trace.notes, &conn.role);
        let mut failures = report.check(activity, trace);
        failures.push(check_creep(activity, creeping, trace));
        first_failure(failures)
    }
}

impl super::Kind for PostgresProbe {
    type Spec = PostgresSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<PostgresSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        PostgresProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        PostgresProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        PostgresProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `postgres:` probes: their signals and how each is
/// exported.
pub const KIND: KindInfo = KindInfo {
    name: "postgres",
    headline: "slow_queries",
    network: true,
    signals: &[
        Signal::new("slow_queries", Unit::Count, Some(&SLOW_QUERIES)),
        Signal::new("longest_query", Unit::Seconds, Some(&LONGEST_QUERY)),
        Signal::new(
            "idle_in_transaction",
            Unit::Seconds,
            Some(&IDLE_IN_TRANSACTION),
        ),
        Signal::new("blocked", Unit::Count, Some(&BLOCKED)),
        Signal::new("connections_ratio", Unit::Ratio, Some(&CONNECTIONS_RATIO)),
        Signal::new("creeping_statements", Unit::Count, Some(&CREEPING)),
        Signal::new("value", Unit::Count, Some(&QUERY_VALUE)),
    ],
};
const SLOW_QUERIES: Family = gauge(
    "probe_pg_slow_queries",
    "Client sessions running one query for longer than slow_query.",
);
const LONGEST_QUERY: Family = gauge(
    "probe_pg_longest_query_seconds",
    "Age of the longest-running active query, in seconds.",
);
const IDLE_IN_TRANSACTION: Family = gauge(
    "probe_pg_idle_in_transaction_seconds",
    "Longest time a session has sat idle inside an open transaction, in seconds.",
);
const BLOCKED: Family = gauge(
    "probe_pg_blocked_sessions",
    "Sessions waiting on a lock held by another session.",
);
const CONNECTIONS_RATIO: Family = gauge(
    "probe_pg_connections_ratio",
    "Client connections over max_connections minus the reserved slots.",
);
const CREEPING: Family = gauge(
    "probe_pg_creeping_statements",
    "Statements whose mean time in the last interval rose above max_mean_increase over their baseline.",
);

#[derive(Debug)]
enum Mode {
    Activity(Box<Activity>),
    Query {
        sql: String,
        min: Option<f64>,
        max: Option<f64>,
    },
}

/// What an activity probe looks for and its limits.
#[derive(Debug)]
struct Activity {
    slow_query: Duration,
    statements: bool,
    max_slow_queries: Option<u64>,
    max_idle_in_transaction: Option<Duration>,
    max_blocked: Option<u64>,
    max_connections_ratio: Option<f64>,
    /// Whether a creeping statement fails the probe; the threshold counts either way.
    fail_on_creep: bool,
    max_mean_increase: f64,
    min_calls: u64,
}

#[derive(Default)]
struct State {
    conn: Option<Conn>,
    statements: Statements,
}

fn build_activity(
    expect: &PostgresExpectSpec,
    slow_query: Duration,
    statements: bool,
    errors: &mut Vec<SpecError>,
) -> Activity {
    let mut activity = Activity {
        slow_query,
        statements,
        max_slow_queries: expect.max_slow_queries.as_ref().map(|v| v.value),
        max_idle_in_transaction: None,
        max_blocked: expect.max_blocked.as_ref().map(|v| v.value),
        max_connections_ratio: None,
        fail_on_creep: expect.max_mean_increase.is_some(),
        max_mean_increase: DEFAULT_MEAN_INCREASE,
        min_calls: expect
            .min_calls
            .as_ref()
            .map_or(DEFAULT_MIN_CALLS, |v| v.value.max(1)),
    };
    if let Some(text) = &expect.max_idle_in_transaction {
        match parse_duration(text) {
            Ok(d) => activity.max_idle_in_transaction = Some(d),
            Err(m) => errors.push(SpecError::new(
                text.pos,
                "expect.max_idle_in_transaction",
                m,
            )),
        }
    }
    if let Some(ratio) = &expect.max_connections_ratio {
        if ratio.value > 0.0 && ratio.value <= 1.0 {
            activity.max_connections_ratio = Some(ratio.value);
        } else {
            errors.push(SpecError::new(
                ratio.pos,
                "expect.max_connections_ratio",
                "must be a fraction above 0 and at most 1, e.g. 0.8",
            ));
        }
    }
    if let Some(text) = &expect.max_mean_increase {
        match parse_fraction(text) {
            Ok(f) => activity.max_mean_increase = f,
            Err(m) => errors.push(SpecError::new(text.pos, "expect.max_mean_increase", m)),
        }
    }
    if !statements && let Some(text) = &expect.max_mean_increase {
        errors.push(SpecError::new(
            text.pos,
            "expect.max_mean_increase",
            "needs the statement check, which `statements: false` turns off",
        ));
    }
    activity
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn limit(signal: &'static str, message: String) -> Failure {
    Failure::Limit { signal, message }
}
