//! The `postgres:` probe: a PostgreSQL server's sessions and statements as its own statistics
//! views see them, or one number from a custom `query:`. Phases: `connect` (only when a new
//! connection is made) and `query`.
//!
//! Each probe keeps one connection open between runs and makes a new one when it breaks. The
//! session runs as `application_name = 'slowburn'`, read-only, with every statement under
//! `statement_timeout`, so the prober can never become the slow query it looks for; and every
//! view it reads excludes its own backend (`pid <> pg_backend_pid()`).
//!
//! Sessions come from `pg_stat_activity` (client backends only, so parallel workers are not
//! counted twice): slow queries, the longest query, the longest idle-in-transaction session,
//! sessions waiting on a lock with the pids that block them, and connections against
//! `max_connections` minus the reserved slots. Statements come from `pg_stat_statements` when
//! the extension is there: the probe keeps each statement's counters between runs and flags the
//! ones whose mean time in the last interval rose above their own baseline. A reset or an
//! eviction starts the baselines again rather than producing negative deltas. When the
//! extension or a privilege is missing, the rest still runs and a note says what is off and why.
//!
//! The connection's driver is a task owned by the connection and aborted when the connection is
//! dropped (tokio-postgres needs one per connection; it is the only task a probe spawns). The DSN
//! is a secret and never appears in a message, only its host and database.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::net::TlsSpec;
use super::{BuildContext, Failure, SpecError, Trace, counted, first_failure};
use crate::basics::signal::{Family, KindInfo, QUERY_VALUE, Signal, Unit, gauge};
use crate::basics::units::{Secret, format_duration, parse_duration};
use crate::basics::yaml::Spanned;

const DEFAULT_SLOW_QUERY: Duration = Duration::from_secs(5);
const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(2);
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_MEAN_INCREASE: f64 = 0.5;
const DEFAULT_MIN_CALLS: u64 = 10;
/// How fast a statement's baseline follows its interval means (an EWMA weight).
const BASELINE_WEIGHT: f64 = 0.2;
/// A rise smaller than this is noise, however large in percent (a 20µs statement at 40µs).
const MIN_MEAN_RISE_MS: f64 = 0.1;
/// Sessions listed per kind of trouble in the notes.
const MAX_SESSION_NOTES: usize = 10;
/// Every statement the probe sends starts with this, so it can be told apart in the views.
const TAG: &str = "/* slowburn */";

/// `postgres:` as written in a probe file.
#[derive(Debug, Deserialize)]
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
#[derive(Debug, Default, Deserialize)]
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

/// An open connection and what was learned when it was made.
struct Conn {
    client: Client,
    _driver: AbortOnDrop,
    role: String,
    database: String,
    /// `max_connections` minus the slots reserved for superusers (and, from PG 16, for roles
    /// with `pg_use_reserved_connections`).
    available: i64,
    /// The schema of `pg_stat_statements` once found, and its version.
    pgss: Option<(String, String)>,
}

/// Aborts the connection's driver task when the connection is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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
            if config.get_ssl_mode() == SslMode::Disable {
                return None;
            }
            let mut tls_spec = spec.tls_config.clone().unwrap_or_default();
            if tls_spec.ca_file.is_none() {
                tls_spec.ca_file = tls_wanted.root_cert.clone().map(|value| Spanned {
                    pos: spec.dsn.pos,
                    value,
                });
            }
            // As libpq: `prefer` and `require` encrypt without checking the certificate,
            // `verify-ca`/`verify-full` (or a CA file) check it.
            if !tls_wanted.verify && tls_spec.ca_file.is_none() {
                tls_spec.insecure_skip_verify = true;
            }
            ctx.net
                .tls_config(&tls_spec, &[])
                .map_err(|e| errors.push(e))
                .ok()
        });
        let Some((mut config, _)) = parsed else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let target = describe(&config);
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

    async fn connect(&self) -> Result<Conn, Failure> {
        let timeout = Failure::Timeout {
            after: self.connect_timeout,
            phase: "connect",
        };
        let (client, driver) = match &self.tls {
            None => {
                let (client, connection) =
                    tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls))
                        .await
                        .map_err(|_| timeout.clone())?
                        .map_err(|e| classify(&e, &self.target))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) =
                    tokio::time::timeout(self.connect_timeout, self.config.connect(tls))
                        .await
                        .map_err(|_| timeout.clone())?
                        .map_err(|e| classify(&e, &self.target))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
        };
        let driver = AbortOnDrop(driver);
        let setup = format!(
            "SET statement_timeout = {}; SET default_transaction_read_only = on; \
             SET application_name = 'slowburn'",
            self.statement_timeout.as_millis().max(1)
        );
        self.bounded(client.batch_execute(&setup)).await?;
        let row = self
            .bounded(client.query_one(
                "/* slowburn */ SELECT current_user::text, current_database()::text, \
                 current_setting('max_connections')::int8 \
                 - current_setting('superuser_reserved_connections')::int8 \
                 - COALESCE(current_setting('reserved_connections', true), '0')::int8",
                &[],
            ))
            .await?;
        Ok(Conn {
            role: row.try_get(0).unwrap_or_default(),
            database: row.try_get(1).unwrap_or_default(),
            available: row.try_get::<_, i64>(2).unwrap_or(1).max(1),
            client,
            _driver: driver,
            pgss: None,
        })
    }

    /// Runs one statement with a client-side deadline a little past `statement_timeout`, for a
    /// server that stops answering altogether.
    async fn bounded<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        let limit = self.statement_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, statement).await {
            Ok(result) => result.map_err(|e| classify(&e, &self.target)),
            Err(_) => Err(Failure::Timeout {
                after: limit,
                phase: "query",
            }),
        }
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
        let report = SessionReport::new(&sessions, activity);
        let ratio = sessions.len() as f64 / conn.available as f64;
        trace.signal("slow_queries", report.slow.len() as f64);
        trace.signal(
            "longest_query",
            report.longest.map_or(0.0, |s| s.query_secs.unwrap_or(0.0)),
        );
        trace.signal(
            "idle_in_transaction",
            report
                .idle_longest
                .map_or(0.0, |s| s.state_secs.unwrap_or(0.0)),
        );
        trace.signal("blocked", report.blocked.len() as f64);
        trace.signal("connections_ratio", ratio);

        let creeping = if activity.statements {
            self.statement_check(conn, activity, statements, trace)
                .await?
        } else {
            None
        };

        report.notes(&mut trace.notes);
        let hidden = sessions.iter().filter(|s| s.hidden).count();
        if hidden > 0 {
            trace.notes.push(format!(
                "sessions: {} of other roles hidden from role {:?}, so their \
                 queries cannot be checked (GRANT pg_monitor TO {})",
                counted(hidden as u64, "session", "sessions"),
                conn.role,
                quote_ident(&conn.role)
            ));
        }

        let mut failures = Vec::new();
        if let Some(max) = activity.max_slow_queries {
            let n = report.slow.len() as u64;
            failures.push(trace.check(
                "max_slow_queries",
                match report.slow.first() {
                    Some(worst) if n > max => Err(limit(
                        "slow_queries",
                        format!(
                            "{} running longer than {} (max_slow_queries {max}); \
                             longest: {}",
                            counted(n, "query", "queries"),
                            format_duration(activity.slow_query),
                            worst.describe()
                        ),
                    )),
                    _ => Ok(format!(
                        "{} running longer than {}",
                        counted(n, "query", "queries"),
                        format_duration(activity.slow_query)
                    )),
                },
            ));
        }
        if let Some(max) = activity.max_idle_in_transaction {
            failures.push(trace.check(
                "max_idle_in_transaction",
                match report.idle_longest {
                    Some(s) if s.state_secs.unwrap_or(0.0) > max.as_secs_f64() => Err(limit(
                        "idle_in_transaction",
                        format!(
                            "{} (max_idle_in_transaction {})",
                            s.describe(),
                            format_duration(max)
                        ),
                    )),
                    _ => Ok(format!(
                        "no session idle in a transaction longer than {}",
                        format_duration(max)
                    )),
                },
            ));
        }
        if let Some(max) = activity.max_blocked {
            let n = report.blocked.len() as u64;
            failures.push(trace.check(
                "max_blocked",
                match report.blocked.first() {
                    Some(worst) if n > max => Err(limit(
                        "blocked",
                        format!(
                            "{} waiting on a lock (max_blocked {max}); longest: {}",
                            counted(n, "session", "sessions"),
                            worst.describe()
                        ),
                    )),
                    _ => Ok(format!(
                        "{} waiting on a lock",
                        counted(n, "session", "sessions")
                    )),
                },
            ));
        }
        if let Some(max) = activity.max_connections_ratio {
            let used = sessions.len();
            failures.push(trace.check(
                "max_connections_ratio",
                if ratio <= max {
                    Ok(format!(
                        "{used} of {} connections used ({ratio:.2})",
                        conn.available
                    ))
                } else {
                    Err(limit(
                        "connections_ratio",
                        format!(
                            "{used} of {} connections used ({ratio:.2}), above \
                             max_connections_ratio {max}",
                            conn.available
                        ),
                    ))
                },
            ));
        }
        if activity.fail_on_creep
            && let Some(creeping) = creeping
        {
            let threshold = percent(activity.max_mean_increase);
            failures.push(trace.check(
                "max_mean_increase",
                match creeping.first() {
                    Some(worst) => Err(limit(
                        "creeping_statements",
                        format!(
                            "{} slower than their baseline by more than {threshold}; \
                             worst: {}",
                            counted(creeping.len() as u64, "statement", "statements"),
                            worst.describe()
                        ),
                    )),
                    None => Ok(format!(
                        "no statement slower than its baseline by {threshold}"
                    )),
                },
            ));
        }
        first_failure(failures)
    }

    async fn sessions(&self, conn: &Conn) -> Result<Vec<Session>, Failure> {
        let rows = self
            .bounded(conn.client.query(
                "/* slowburn */ SELECT pid, usename::text, datname::text, state, \
                 GREATEST(EXTRACT(EPOCH FROM now() - query_start), 0)::float8, \
                 GREATEST(EXTRACT(EPOCH FROM now() - state_change), 0)::float8, \
                 wait_event_type, wait_event, \
                 CASE WHEN wait_event_type = 'Lock' THEN pg_blocking_pids(pid) \
                      ELSE '{}'::int4[] END, \
                 left(regexp_replace(query, '\\s+', ' ', 'g'), 200) \
                 FROM pg_stat_activity \
                 WHERE pid <> pg_backend_pid() \
                   AND (backend_type = 'client backend' \
                        OR (backend_type IS NULL AND query = '<insufficient privilege>' \
                        AND usesysid IS NOT NULL AND datid IS NOT NULL))",
                &[],
            ))
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let query: Option<String> = row.try_get(9).ok().flatten();
                Session {
                    pid: row.try_get(0).unwrap_or(0),
                    user: row.try_get(1).ok().flatten(),
                    database: row.try_get(2).ok().flatten(),
                    state: row.try_get(3).ok().flatten(),
                    query_secs: row.try_get(4).ok().flatten(),
                    state_secs: row.try_get(5).ok().flatten(),
                    wait: match (
                        row.try_get::<_, Option<String>>(6).ok().flatten(),
                        row.try_get::<_, Option<String>>(7).ok().flatten(),
                    ) {
                        (Some(kind), Some(event)) => Some(format!("{kind}/{event}")),
                        _ => None,
                    },
                    blocked_by: row
                        .try_get::<_, Option<Vec<i32>>>(8)
                        .ok()
                        .flatten()
                        .unwrap_or_default(),
                    hidden: query.as_deref() == Some("<insufficient privilege>"),
                    query: query.unwrap_or_default(),
                }
            })
            .collect())
    }

    /// Reads `pg_stat_statements` and returns the creeping statements, or `None` (with a note
    /// saying why) when the check is off.
    async fn statement_check(
        &self,
        conn: &mut Conn,
        activity: &Activity,
        statements: &mut Statements,
        trace: &mut Trace,
    ) -> Result<Option<Vec<Creep>>, Failure> {
        if conn.pgss.is_none() {
            let found = self
                .bounded(conn.client.query_opt(
                    "/* slowburn */ SELECT n.nspname::text, e.extversion FROM pg_extension e \
                     JOIN pg_namespace n ON n.oid = e.extnamespace \
                     WHERE e.extname = 'pg_stat_statements'",
                    &[],
                ))
                .await?;
            match found {
                Some(row) => {
                    conn.pgss = Some((
                        row.try_get(0).unwrap_or_default(),
                        row.try_get(1).unwrap_or_default(),
                    ));
                }
                None => {
                    trace.notes.push(format!(
                        "statements: check off: pg_stat_statements is not installed in database \
                         {:?} (CREATE EXTENSION pg_stat_statements; the server also needs \
                         shared_preload_libraries = 'pg_stat_statements')",
                        conn.database
                    ));
                    statements.forget();
                    return Ok(None);
                }
            }
        }
        let Some((schema, version)) = conn.pgss.clone() else {
            return Ok(None);
        };
        let schema = quote_ident(&schema);
        let time_column = if version_at_least(&version, 1, 8) {
            "total_exec_time"
        } else {
            "total_time"
        };
        let rows = self
            .bounded(conn.client.query(
                &format!(
                    "{TAG} SELECT userid, dbid, queryid, calls, {time_column} \
                     FROM {schema}.pg_stat_statements(false)"
                ),
                &[],
            ))
            .await;
        let rows = match rows {
            Ok(rows) => rows,
            Err(Failure::Query(message)) => {
                trace.notes.push(format!(
                    "statements: check off: {message}{}",
                    if message.contains("permission denied") {
                        format!(" (GRANT pg_monitor TO {})", quote_ident(&conn.role))
                    } else {
                        String::new()
                    }
                ));
                // The extension may have been dropped or unloaded: look again next time.
                conn.pgss = None;
                statements.forget();
                return Ok(None);
            }
            Err(other) => return Err(other),
        };
        let reset_mark = if version_at_least(&version, 1, 9) {
            self.bounded(conn.client.query_opt(
                &format!("{TAG} SELECT stats_reset::text FROM {schema}.pg_stat_statements_info"),
                &[],
            ))
            .await
            .ok()
            .flatten()
            .and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        } else {
            None
        };
        let mut sample: HashMap<StatementKey, (i64, f64)> = HashMap::with_capacity(rows.len());
        let mut hidden = 0usize;
        for row in &rows {
            let queryid: Option<i64> = row.try_get(2).ok().flatten();
            let (Ok(userid), Ok(dbid), Some(queryid)) =
                (row.try_get::<_, u32>(0), row.try_get::<_, u32>(1), queryid)
            else {
                hidden += 1;
                continue;
            };
            let calls: i64 = row.try_get(3).unwrap_or(0);
            let total: f64 = row.try_get(4).unwrap_or(0.0);
            // With `track = all` a statement has a top-level and a nested row: add them up.
            let slot = sample.entry((userid, dbid, queryid)).or_default();
            slot.0 += calls;
            slot.1 += total;
        }
        let update = statements.update(
            sample,
            reset_mark,
            activity.min_calls,
            activity.max_mean_increase,
        );
        trace.signal("creeping_statements", update.creeping.len() as f64);
        if update.reset {
            trace.notes.push(
                "statements: pg_stat_statements was reset; baselines start again".to_string(),
            );
        }
        if update.first {
            trace.notes.push(format!(
                "statements: first sample of {} taken; creeping statements are \
                 reported from the next run",
                counted(update.tracked as u64, "statement", "statements")
            ));
        }
        if hidden > 0 {
            trace.notes.push(format!(
                "statements: {} of other roles hidden from role {:?} \
                 (GRANT pg_read_all_stats or pg_monitor TO {})",
                counted(hidden as u64, "statement", "statements"),
                conn.role,
                quote_ident(&conn.role)
            ));
        }
        let mut creeping = update.creeping;
        creeping.sort_by(|a, b| b.increase().total_cmp(&a.increase()));
        for creep in creeping.iter_mut().take(MAX_SESSION_NOTES) {
            let found = self
                .bounded(conn.client.query_opt(
                    &format!(
                        "{TAG} SELECT left(regexp_replace(s.query, '\\s+', ' ', 'g'), 200), \
                         r.rolname::text, d.datname::text \
                         FROM {schema}.pg_stat_statements s \
                         LEFT JOIN pg_roles r ON r.oid = s.userid \
                         LEFT JOIN pg_database d ON d.oid = s.dbid \
                         WHERE s.userid = $1 AND s.dbid = $2 AND s.queryid = $3 LIMIT 1"
                    ),
                    &[&creep.key.0, &creep.key.1, &creep.key.2],
                ))
                .await
                .ok()
                .flatten();
            if let Some(row) = found {
                creep.query = row.try_get(0).ok().flatten();
                creep.user = row.try_get(1).ok().flatten();
                creep.database = row.try_get(2).ok().flatten();
            }
        }
        // The probe's own statements are not the application's.
        creeping.retain(|c| !c.query.as_deref().is_some_and(|q| q.starts_with(TAG)));
        for creep in creeping.iter().take(MAX_SESSION_NOTES) {
            trace.notes.push(format!("creeping: {}", creep.describe()));
        }
        Ok(Some(creeping))
    }
}

/// One client session as `pg_stat_activity` shows it.
#[derive(Debug)]
struct Session {
    pid: i32,
    user: Option<String>,
    database: Option<String>,
    state: Option<String>,
    /// Seconds since the current (or last) query started.
    query_secs: Option<f64>,
    /// Seconds in the current state.
    state_secs: Option<f64>,
    wait: Option<String>,
    blocked_by: Vec<i32>,
    query: String,
    /// The role cannot see this session's details.
    hidden: bool,
}

impl Session {
    fn is_active(&self) -> bool {
        self.state.as_deref() == Some("active")
    }

    fn is_idle_in_transaction(&self) -> bool {
        self.state
            .as_deref()
            .is_some_and(|s| s.starts_with("idle in transaction"))
    }

    /// `pid 4242 app@orders active 12.3s wait Lock/transactionid blocked by 4241: update …`
    fn describe(&self) -> String {
        let secs = if self.is_active() {
            self.query_secs
        } else {
            self.state_secs
        };
        let mut out = format!(
            "pid {} {}@{} {} {}",
            self.pid,
            self.user.as_deref().unwrap_or("?"),
            self.database.as_deref().unwrap_or("?"),
            self.state.as_deref().unwrap_or("?"),
            format_duration(Duration::from_secs_f64(secs.unwrap_or(0.0).max(0.0)))
        );
        if let Some(wait) = &self.wait {
            out.push_str(&format!(" wait {wait}"));
        }
        if !self.blocked_by.is_empty() {
            let pids: Vec<String> = self.blocked_by.iter().map(i32::to_string).collect();
            out.push_str(&format!(" blocked by {}", pids.join(", ")));
        }
        out.push_str(&format!(": {}", self.query));
        out
    }
}

/// The sessions worth reporting, worst first.
struct SessionReport<'a> {
    slow: Vec<&'a Session>,
    longest: Option<&'a Session>,
    idle: Vec<&'a Session>,
    idle_longest: Option<&'a Session>,
    blocked: Vec<&'a Session>,
}

impl<'a> SessionReport<'a> {
    fn new(sessions: &'a [Session], activity: &Activity) -> Self {
        let by = |f: fn(&Session) -> Option<f64>| {
            move |a: &&Session, b: &&Session| f(b).unwrap_or(0.0).total_cmp(&f(a).unwrap_or(0.0))
        };
        let mut active: Vec<&Session> = sessions.iter().filter(|s| s.is_active()).collect();
        active.sort_by(by(|s| s.query_secs));
        let slow_after = activity.slow_query.as_secs_f64();
        let slow: Vec<&Session> = active
            .iter()
            .copied()
            .filter(|s| s.query_secs.unwrap_or(0.0) > slow_after)
            .collect();
        let mut idle: Vec<&Session> = sessions
            .iter()
            .filter(|s| s.is_idle_in_transaction())
            .collect();
        idle.sort_by(by(|s| s.state_secs));
        let idle_longest = idle.first().copied();
        let idle_after = activity
            .max_idle_in_transaction
            .unwrap_or(activity.slow_query)
            .as_secs_f64();
        idle.retain(|s| s.state_secs.unwrap_or(0.0) > idle_after);
        let mut blocked: Vec<&Session> = sessions
            .iter()
            .filter(|s| !s.blocked_by.is_empty())
            .collect();
        blocked.sort_by(by(|s| s.state_secs));
        SessionReport {
            longest: active.first().copied(),
            slow,
            idle,
            idle_longest,
            blocked,
        }
    }

    fn notes(&self, notes: &mut Vec<String>) {
        for (label, list) in [
            ("slow", &self.slow),
            ("idle in transaction", &self.idle),
            ("blocked", &self.blocked),
        ] {
            for s in list.iter().take(MAX_SESSION_NOTES) {
                notes.push(format!("{label}: {}", s.describe()));
            }
            if list.len() > MAX_SESSION_NOTES {
                notes.push(format!(
                    "{label}: … and {} more sessions",
                    list.len() - MAX_SESSION_NOTES
                ));
            }
        }
    }
}

/// (userid, dbid, queryid), as `pg_stat_statements` keys a statement.
type StatementKey = (u32, u32, i64);

/// Each statement's counters at the last sample and its baseline mean time per call.
#[derive(Debug, Default)]
struct Statements {
    entries: HashMap<StatementKey, Entry>,
    reset_mark: Option<String>,
    sampled: bool,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    calls: i64,
    total_ms: f64,
    /// An EWMA of the interval means, in ms; none until one interval had enough calls.
    baseline: Option<f64>,
}

/// What one sample changed.
#[derive(Debug, Default)]
struct Update {
    creeping: Vec<Creep>,
    /// The first sample: nothing to compare with yet.
    first: bool,
    /// The statistics were reset since the last sample.
    reset: bool,
    tracked: usize,
}

/// A statement whose mean time rose above its baseline.
#[derive(Debug, Clone)]
struct Creep {
    key: StatementKey,
    calls: i64,
    mean_ms: f64,
    baseline_ms: f64,
    query: Option<String>,
    user: Option<String>,
    database: Option<String>,
}

impl Creep {
    fn increase(&self) -> f64 {
        self.mean_ms / self.baseline_ms - 1.0
    }

    fn describe(&self) -> String {
        format!(
            "queryid {} {}@{} mean {:.2}ms over {} calls, baseline {:.2}ms (+{}): {}",
            self.key.2,
            self.user.as_deref().unwrap_or("?"),
            self.database.as_deref().unwrap_or("?"),
            self.mean_ms,
            self.calls,
            self.baseline_ms,
            percent(self.increase()),
            self.query
                .as_deref()
                .unwrap_or("(query text not available)")
        )
    }
}

impl Statements {
    /// Forgets everything: the next sample is a first sample.
    fn forget(&mut self) {
        *self = Statements::default();
    }

    /// Compares a sample of cumulative counters with the last one. Counters that went down
    /// (a reset, or an entry evicted and added again) start that statement over; a statement
    /// with fewer than `min_calls` calls since its last counted interval keeps accumulating.
    fn update(
        &mut self,
        sample: HashMap<StatementKey, (i64, f64)>,
        reset_mark: Option<String>,
        min_calls: u64,
        max_increase: f64,
    ) -> Update {
        let mut update = Update {
            first: !self.sampled,
            tracked: sample.len(),
            ..Update::default()
        };
        if self.sampled && reset_mark.is_some() && reset_mark != self.reset_mark {
            update.reset = true;
            self.entries.clear();
        }
        self.reset_mark = reset_mark;
        self.sampled = true;
        let mut previous = std::mem::take(&mut self.entries);
        for (key, (calls, total_ms)) in sample {
            let fresh = Entry {
                calls,
                total_ms,
                baseline: None,
            };
            // A statement that appeared since the last sample made all its calls within the
            // interval; one that was there before the first sample is only a baseline.
            let before = previous.remove(&key).or_else(|| {
                (!update.first).then_some(Entry {
                    calls: 0,
                    total_ms: 0.0,
                    baseline: None,
                })
            });
            let entry = match before {
                None => fresh,
                Some(old) => {
                    let calls_delta = calls - old.calls;
                    let time_delta = total_ms - old.total_ms;
                    if calls_delta < 0 || time_delta < 0.0 {
                        fresh
                    } else if calls_delta == 0 || (calls_delta as u64) < min_calls {
                        old
                    } else {
                        let mean = time_delta / calls_delta as f64;
                        let baseline = match old.baseline {
                            Some(base)
                                if mean > base * (1.0 + max_increase)
                                    && mean - base >= MIN_MEAN_RISE_MS =>
                            {
                                update.creeping.push(Creep {
                                    key,
                                    calls: calls_delta,
                                    mean_ms: mean,
                                    baseline_ms: base,
                                    query: None,
                                    user: None,
                                    database: None,
                                });
                                // Held while creeping, so a lasting slowdown keeps showing.
                                base
                            }
                            Some(base) => base + BASELINE_WEIGHT * (mean - base),
                            None => mean,
                        };
                        Entry {
                            calls,
                            total_ms,
                            baseline: Some(baseline),
                        }
                    }
                }
            };
            self.entries.insert(key, entry);
        }
        update
    }
}

/// The DSN as written, or the secret it refers to.
fn resolve_dsn(text: &str) -> Result<String, String> {
    if text.starts_with("env:") || text.starts_with("file:") {
        return Secret::resolve(text).map(|s| s.expose().to_string());
    }
    let (config, _) = parse_dsn(text)?;
    if config.get_password().is_some() {
        return Err(
            "this DSN holds a password: put it in the environment or a file and write \
             dsn: env:NAME or dsn: file:/path"
                .into(),
        );
    }
    Ok(text.to_string())
}

/// TLS wishes a DSN carries that tokio-postgres does not parse itself.
#[derive(Debug, Default, Clone, PartialEq)]
struct TlsWanted {
    /// `sslmode=verify-ca` or `verify-full`.
    verify: bool,
    /// `sslrootcert=PATH`.
    root_cert: Option<String>,
}

/// Parses a libpq DSN (URL or `key=value` form). `sslmode=verify-ca|verify-full` and
/// `sslrootcert` are taken out and turned into certificate checking, which tokio-postgres
/// leaves to the TLS connector.
fn parse_dsn(text: &str) -> Result<(tokio_postgres::Config, TlsWanted), String> {
    let mut wanted = TlsWanted::default();
    let verify = Regex::new(r"sslmode\s*=\s*verify-(full|ca)").map_err(|e| e.to_string())?;
    let mut text = text.to_string();
    if verify.is_match(&text) {
        wanted.verify = true;
        text = verify.replace_all(&text, "sslmode=require").into_owned();
    }
    let root = Regex::new(r"(^|[\s?&])sslrootcert\s*=\s*([^&\s]+)").map_err(|e| e.to_string())?;
    if let Some(found) = root.captures(&text) {
        wanted.root_cert = found.get(2).map(|m| m.as_str().to_string());
        text = root.replace_all(&text, "$1").into_owned();
        text = text
            .replace("?&", "?")
            .trim_end_matches(['?', '&'])
            .to_string();
    }
    let config =
        tokio_postgres::Config::from_str(text.trim()).map_err(
            |e| match std::error::Error::source(&e) {
                Some(cause) => format!("invalid DSN: {cause}"),
                None => format!("invalid DSN: {e}"),
            },
        )?;
    if config.get_hosts().is_empty() {
        return Err("invalid DSN: it names no host (postgres://HOST/… or host=…)".into());
    }
    if config.get_user().is_none() {
        return Err("invalid DSN: it names no user (postgres://USER@HOST/… or user=…)".into());
    }
    Ok((config, wanted))
}

/// `postgres://host:port/database` for people; never the user or password.
fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{}/{database}", hosts.join(","))
}

/// Turns a driver error into a failure with a specific, readable reason.
fn classify(e: &tokio_postgres::Error, target: &str) -> Failure {
    if let Some(db) = e.as_db_error() {
        let message = db.message().to_string();
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Failure::Auth(message)
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Failure::Database(message)
        } else if *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
        {
            Failure::Connect(format!("{target}: {message}"))
        } else if *code == SqlState::QUERY_CANCELED {
            Failure::Query(format!("{message} (statement_timeout)"))
        } else {
            Failure::Query(message)
        };
    }
    if e.is_closed() {
        return Failure::Connect(format!("{target}: the server closed the connection"));
    }
    let mut cause = std::error::Error::source(e);
    let mut detail = None;
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return Failure::Tls(format!("{target}: {c}"));
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref()
                && inner.downcast_ref::<rustls::Error>().is_some()
            {
                return Failure::Tls(format!("{target}: {inner}"));
            }
            detail = Some(io.to_string());
        } else if detail.is_none() {
            detail = Some(c.to_string());
        }
        cause = c.source();
    }
    let text = e.to_string();
    let detail = detail.unwrap_or_default();
    if text.contains("TLS") {
        return Failure::Tls(format!("{target}: {text}: {detail}"));
    }
    if text.contains("authentication") {
        return Failure::Auth(format!("{target}: {detail}"));
    }
    if detail.is_empty() {
        Failure::Connect(format!("{target}: {text}"))
    } else {
        Failure::Connect(format!("{target}: {}", lower_first(&detail)))
    }
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

/// Parses `50%` or `0.5`.
fn parse_fraction(text: &str) -> Result<f64, String> {
    let err =
        || format!("invalid {text:?}: expected a percentage such as 50% or a fraction such as 0.5");
    let text = text.trim();
    let value = match text.strip_suffix('%') {
        Some(number) => number.trim().parse::<f64>().map_err(|_| err())? / 100.0,
        None => text.parse::<f64>().map_err(|_| err())?,
    };
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(err())
    }
}

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// `1.9` ≥ `1.8`: compares an extension version's major and minor numbers.
fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn limit(signal: &'static str, message: String) -> Failure {
    Failure::Limit { signal, message }
}

impl super::Kind for PostgresProbe {
    type Spec = PostgresSpec;
    const INFO: KindInfo = KIND;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_and_never_show_secrets() {
        let (config, tls) = parse_dsn(
            "postgres://app:pw@db.internal:6432/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(describe(&config), "postgres://db.internal:6432/orders");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            tls,
            TlsWanted {
                verify: true,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let (config, tls) =
            parse_dsn("host=127.0.0.1 port=5433 user=app dbname=orders sslmode=disable").unwrap();
        assert_eq!(describe(&config), "postgres://127.0.0.1:5433/orders");
        assert_eq!(tls, TlsWanted::default());
        let (config, _) = parse_dsn("host=/run/postgresql user=app").unwrap();
        assert_eq!(describe(&config), "postgres:///run/postgresql:5432/app");

        let err = parse_dsn("postgres://app:s3cret@db:notaport/x").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.starts_with("invalid DSN"), "{err}");
        assert!(
            parse_dsn("user=app dbname=x")
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            parse_dsn("host=db dbname=x")
                .unwrap_err()
                .contains("no user")
        );
        assert!(
            resolve_dsn("postgres://app:pw@db/x")
                .unwrap_err()
                .contains("holds a password")
        );
        assert!(resolve_dsn("host=db user=app").is_ok());
    }

    #[test]
    fn fractions() {
        assert_eq!(parse_fraction("50%"), Ok(0.5));
        assert_eq!(parse_fraction("0.25"), Ok(0.25));
        assert_eq!(parse_fraction("200 %"), Ok(2.0));
        for bad in ["", "%", "-5%", "fifty", "0"] {
            assert!(parse_fraction(bad).is_err(), "{bad:?}");
        }
        assert!(version_at_least("1.10", 1, 9));
        assert!(!version_at_least("1.7", 1, 8));
    }

    fn sample(rows: &[(i64, i64, f64)]) -> HashMap<StatementKey, (i64, f64)> {
        rows.iter()
            .map(|(id, calls, total)| ((10, 1, *id), (*calls, *total)))
            .collect()
    }

    #[test]
    fn statements_creep_against_their_own_baseline() {
        let mut s = Statements::default();
        let first = s.update(sample(&[(1, 100, 100.0)]), None, 10, 0.5);
        assert!(first.first && first.creeping.is_empty());
        // 100 calls at 1ms: the baseline.
        let u = s.update(sample(&[(1, 200, 200.0)]), None, 10, 0.5);
        assert!(u.creeping.is_empty());
        // 5 calls is below min_calls: nothing is judged, the counters accumulate.
        let u = s.update(sample(&[(1, 205, 300.0)]), None, 10, 0.5);
        assert!(u.creeping.is_empty());
        // 15 calls since the baseline interval at (400-200)/15 = 13ms: creeping.
        let u = s.update(sample(&[(1, 215, 400.0)]), None, 10, 0.5);
        assert_eq!(u.creeping.len(), 1);
        let creep = &u.creeping[0];
        assert_eq!(creep.calls, 15);
        assert!((creep.mean_ms - 200.0 / 15.0).abs() < 1e-9);
        assert!((creep.baseline_ms - 1.0).abs() < 1e-9);
    }

    #[test]
    fn resets_and_evictions_rebaseline_without_negative_deltas() {
        let mut s = Statements::default();
        s.update(
            sample(&[(1, 100, 100.0), (2, 50, 50.0)]),
            Some("t0".into()),
            10,
            0.5,
        );
        s.update(
            sample(&[(1, 200, 200.0), (2, 100, 100.0)]),
            Some("t0".into()),
            10,
            0.5,
        );
        // A full reset: counters restart lower, the mark changes. The old baseline (1ms) is
        // gone; the calls since the reset (10ms each) are the new one, not a creep.
        let u = s.update(sample(&[(1, 20, 200.0)]), Some("t1".into()), 10, 0.5);
        assert!(u.reset && u.creeping.is_empty());
        assert_eq!(s.entries[&(10, 1, 1)].baseline, Some(10.0));
        // Statement 2 was evicted; it comes back, then its counters go down without a reset
        // mark (evicted and added again): it starts over instead of a negative delta.
        s.update(sample(&[(2, 40, 40.0)]), Some("t1".into()), 10, 0.5);
        assert_eq!(s.entries[&(10, 1, 2)].baseline, Some(1.0));
        let u = s.update(sample(&[(2, 5, 500.0)]), Some("t1".into()), 10, 0.5);
        assert!(!u.reset && u.creeping.is_empty());
        assert_eq!(s.entries[&(10, 1, 2)].calls, 5);
        assert_eq!(s.entries[&(10, 1, 2)].baseline, None);
    }
}
