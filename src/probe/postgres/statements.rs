//! What `pg_stat_statements` says of the statements the server runs: each statement's
//! counters are kept between runs, and one whose mean time in the last interval rose above its
//! own baseline by more than `max_mean_increase` is creeping.
//!
//! A reset of the statistics or an eviction starts that statement's baseline again rather than
//! producing a negative delta; when the extension or a privilege is missing, the check turns
//! itself off with a note saying why, and the session checks still run. This file reads that
//! extension only; it knows nothing of `pg_stat_activity` (`sessions.rs`) or of how the
//! connection is made (`dsn.rs`).

use std::collections::HashMap;

use super::dsn::Conn;
use super::{Activity, MAX_SESSION_NOTES, PostgresProbe, TAG, limit, quote_ident};
use crate::probe::{Failure, Trace, counted};

/// How fast a statement's baseline follows its interval means (an EWMA weight).
const BASELINE_WEIGHT: f64 = 0.2;
/// A rise smaller than this is noise, however large in percent (a 20µs statement at 40µs).
const MIN_MEAN_RISE_MS: f64 = 0.1;

impl PostgresProbe {
    /// Reads `pg_stat_statements` and returns the creeping statements, or `None` (with a note
    /// saying why) when the check is off.
    pub(super) async fn statement_check(
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

/// The `max_mean_increase` check, when the probe sets it and the statement check ran.
pub(super) fn check_creep(
    activity: &Activity,
    creeping: Option<Vec<Creep>>,
    trace: &mut Trace,
) -> Option<Failure> {
    if activity.fail_on_creep
        && let Some(creeping) = creeping
    {
        let threshold = percent(activity.max_mean_increase);
        trace.check(
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
        )
    } else {
        None
    }
}

/// Each statement's counters at the last sample and its baseline mean time per call.
#[derive(Debug, Default)]
pub(super) struct Statements {
    entries: HashMap<StatementKey, Entry>,
    reset_mark: Option<String>,
    sampled: bool,
}

impl Statements {
    /// Forgets everything: the next sample is a first sample.
    pub(super) fn forget(&mut self) {
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

/// A statement whose mean time rose above its baseline.
#[derive(Debug, Clone)]
pub(super) struct Creep {
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

/// Parses `50%` or `0.5`.
pub(super) fn parse_fraction(text: &str) -> Result<f64, String> {
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

/// (userid, dbid, queryid), as `pg_stat_statements` keys a statement.
type StatementKey = (u32, u32, i64);

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

fn percent(fraction: f64) -> String {
    format!("{:.0}%", fraction * 100.0)
}

/// `1.9` ≥ `1.8`: compares an extension version's major and minor numbers.
fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[cfg(test)]
mod tests {
    use super::*;

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
