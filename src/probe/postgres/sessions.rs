//! What `pg_stat_activity` says of the server's client sessions: slow queries, the longest
//! query, sessions idle in a transaction, sessions waiting on a lock and the pids that block
//! them, and connections used against the slots clients can have.
//!
//! Only client backends are read, so parallel workers are not counted twice, and never the
//! probe's own backend. This file reads that one view and judges the session limits; it knows
//! nothing of `pg_stat_statements` (`statements.rs`) or of how the connection is made
//! (`dsn.rs`).

use std::time::Duration;

use super::dsn::Conn;
use super::{Activity, MAX_SESSION_NOTES, PostgresProbe, limit, quote_ident};
use crate::basics::units::format_duration;
use crate::probe::{Failure, Trace, counted};

impl PostgresProbe {
    /// Every client session but the probe's own.
    pub(super) async fn sessions(&self, conn: &Conn) -> Result<Vec<Session>, Failure> {
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
}

/// One client session as `pg_stat_activity` shows it.
#[derive(Debug)]
pub(super) struct Session {
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

/// The sessions worth reporting, worst first.
pub(super) struct SessionReport<'a> {
    slow: Vec<&'a Session>,
    longest: Option<&'a Session>,
    idle: Vec<&'a Session>,
    idle_longest: Option<&'a Session>,
    blocked: Vec<&'a Session>,
    /// Client sessions, each holding a connection slot.
    used: usize,
    /// `Conn::available`: the slots clients can use.
    available: i64,
    ratio: f64,
    /// Sessions of other roles whose details the probe's role cannot see.
    hidden: usize,
}

impl<'a> SessionReport<'a> {
    pub(super) fn new(sessions: &'a [Session], activity: &Activity, available: i64) -> Self {
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
            used: sessions.len(),
            available,
            ratio: sessions.len() as f64 / available as f64,
            hidden: sessions.iter().filter(|s| s.hidden).count(),
        }
    }

    /// The session signals of a run.
    pub(super) fn signals(&self, trace: &mut Trace) {
        trace.signal("slow_queries", self.slow.len() as f64);
        trace.signal(
            "longest_query",
            self.longest.map_or(0.0, |s| s.query_secs.unwrap_or(0.0)),
        );
        trace.signal(
            "idle_in_transaction",
            self.idle_longest
                .map_or(0.0, |s| s.state_secs.unwrap_or(0.0)),
        );
        trace.signal("blocked", self.blocked.len() as f64);
        trace.signal("connections_ratio", self.ratio);
    }

    /// The worst sessions of each kind of trouble, then what `role` could not see.
    pub(super) fn notes(&self, notes: &mut Vec<String>, role: &str) {
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
        if self.hidden > 0 {
            notes.push(format!(
                "sessions: {} of other roles hidden from role {:?}, so their \
                 queries cannot be checked (GRANT pg_monitor TO {})",
                counted(self.hidden as u64, "session", "sessions"),
                role,
                quote_ident(role)
            ));
        }
    }

    /// The session limits the probe sets, judged in their fixed order (a missing limit is not
    /// checked).
    pub(super) fn check(&self, activity: &Activity, trace: &mut Trace) -> Vec<Option<Failure>> {
        let mut failures = Vec::new();
        if let Some(max) = activity.max_slow_queries {
            let n = self.slow.len() as u64;
            failures.push(trace.check(
                "max_slow_queries",
                match self.slow.first() {
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
                match self.idle_longest {
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
            let n = self.blocked.len() as u64;
            failures.push(trace.check(
                "max_blocked",
                match self.blocked.first() {
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
            let (used, ratio) = (self.used, self.ratio);
            failures.push(trace.check(
                "max_connections_ratio",
                if ratio <= max {
                    Ok(format!(
                        "{used} of {} connections used ({ratio:.2})",
                        self.available
                    ))
                } else {
                    Err(limit(
                        "connections_ratio",
                        format!(
                            "{used} of {} connections used ({ratio:.2}), above \
                             max_connections_ratio {max}",
                            self.available
                        ),
                    ))
                },
            ));
        }
        failures
    }
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
