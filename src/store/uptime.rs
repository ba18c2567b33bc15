//! Uptime history: every probe's runs, successes and total run time in one-minute buckets,
//! kept for 90 days, and the uptime over the last 24 hours, 7, 30 and 90 days read from them.
//!
//! A bucket is one row of a `WITHOUT ROWID` table keyed by a small probe number and the unix
//! minute, with only integers in it, so a bucket costs about 20 bytes on disk (measured in the
//! tests below: a probe that runs at least once a minute fills 129,600 buckets in 90 days, a
//! few MB). The caller adds runs up in memory and writes them with [`Store::add_uptime`] in one
//! transaction per batch; a bucket written twice (two batches within one minute) is summed.

use rusqlite::params;

use super::{Store, StoreError};

/// How long buckets are kept, in minutes (90 days).
pub const RETENTION_MINUTES: i64 = 90 * 1440;

/// The windows uptime is reported over: a name and its length in minutes.
pub const UPTIME_WINDOWS: [(&str, i64); 4] = [
    ("24h", 1440),
    ("7d", 7 * 1440),
    ("30d", 30 * 1440),
    ("90d", RETENTION_MINUTES),
];

/// The migration that adds uptime buckets (after version 2, typed origins). Probe names are numbered once in `uptime_probes`, so a bucket
/// repeats a small integer rather than the name.
pub(super) const MIGRATION: &str = "
CREATE TABLE uptime_probes (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
CREATE TABLE uptime (
    probe INTEGER NOT NULL, minute INTEGER NOT NULL,
    runs INTEGER NOT NULL, ok INTEGER NOT NULL, duration_us INTEGER NOT NULL,
    PRIMARY KEY (probe, minute)
) WITHOUT ROWID;
";

/// Runs of one probe within one minute.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    pub runs: u64,
    pub ok: u64,
    /// The run times added up, in microseconds.
    pub duration_us: u64,
}

impl Bucket {
    /// Counts one run.
    pub fn add(&mut self, success: bool, duration: std::time::Duration) {
        self.runs += 1;
        self.ok += u64::from(success);
        self.duration_us += duration.as_micros().min(u128::from(u64::MAX)) as u64;
    }
}

/// A probe's runs over one window, as the API reports them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Uptime {
    pub window: &'static str,
    pub minutes: i64,
    pub runs: u64,
    pub ok: u64,
    /// The run times added up, in microseconds.
    pub duration_us: u64,
}

impl Uptime {
    /// The share of runs that succeeded; `None` with no run in the window.
    pub fn ratio(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.ok as f64 / self.runs as f64)
    }

    /// The mean run time in seconds; `None` with no run in the window.
    pub fn mean_seconds(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.duration_us as f64 / 1e6 / self.runs as f64)
    }
}

impl Store {
    /// Adds buckets (`probe`, unix minute, runs) in one transaction: a bucket already stored
    /// is summed with the new one.
    pub fn add_uptime(&self, rows: &[(&str, i64, Bucket)]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        self.with(|db| {
            let tx = db.transaction()?;
            {
                let mut number = tx.prepare_cached(
                    "INSERT INTO uptime_probes (name) VALUES (?1)
                     ON CONFLICT (name) DO UPDATE SET name = name RETURNING id",
                )?;
                let mut add = tx.prepare_cached(
                    "INSERT INTO uptime (probe, minute, runs, ok, duration_us)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (probe, minute) DO UPDATE SET runs = runs + excluded.runs,
                        ok = ok + excluded.ok, duration_us = duration_us + excluded.duration_us",
                )?;
                let mut last: Option<(&str, i64)> = None;
                for (probe, minute, b) in rows {
                    let id = match last {
                        Some((name, id)) if name == *probe => id,
                        _ => number.query_row(params![probe], |row| row.get(0))?,
                    };
                    last = Some((probe, id));
                    add.execute(params![
                        id,
                        minute,
                        b.runs as i64,
                        b.ok as i64,
                        b.duration_us.min(i64::MAX as u64) as i64
                    ])?;
                }
            }
            tx.commit()
        })
    }

    /// A probe's runs over each of [`UPTIME_WINDOWS`] ending at `now_minute` (included).
    pub fn uptime(&self, probe: &str, now_minute: i64) -> Result<Vec<Uptime>, StoreError> {
        let [(_, d1), (_, d7), (_, d30), (_, d90)] = UPTIME_WINDOWS;
        let sums = self.with(|db| {
            let mut query = db.prepare_cached(
                "SELECT
                    TOTAL(CASE WHEN minute > ?2 - ?3 THEN runs END),
                    TOTAL(CASE WHEN minute > ?2 - ?3 THEN ok END),
                    TOTAL(CASE WHEN minute > ?2 - ?3 THEN duration_us END),
                    TOTAL(CASE WHEN minute > ?2 - ?4 THEN runs END),
                    TOTAL(CASE WHEN minute > ?2 - ?4 THEN ok END),
                    TOTAL(CASE WHEN minute > ?2 - ?4 THEN duration_us END),
                    TOTAL(CASE WHEN minute > ?2 - ?5 THEN runs END),
                    TOTAL(CASE WHEN minute > ?2 - ?5 THEN ok END),
                    TOTAL(CASE WHEN minute > ?2 - ?5 THEN duration_us END),
                    TOTAL(runs), TOTAL(ok), TOTAL(duration_us)
                 FROM uptime
                 WHERE probe = (SELECT id FROM uptime_probes WHERE name = ?1)
                   AND minute > ?2 - ?6 AND minute <= ?2",
            )?;
            query.query_row(params![probe, now_minute, d1, d7, d30, d90], |row| {
                (0..12)
                    .map(|i| row.get::<_, f64>(i))
                    .collect::<rusqlite::Result<Vec<f64>>>()
            })
        })?;
        Ok(UPTIME_WINDOWS
            .iter()
            .zip(sums.chunks(3))
            .map(|(&(window, minutes), s)| Uptime {
                window,
                minutes,
                runs: s[0] as u64,
                ok: s[1] as u64,
                duration_us: s[2] as u64,
            })
            .collect())
    }

    /// A probe's runs per UTC day over the retention ending at `now_minute`, oldest first:
    /// (the day's first unix minute, its runs); days with no run are left out.
    pub fn uptime_days(
        &self,
        probe: &str,
        now_minute: i64,
    ) -> Result<Vec<(i64, Bucket)>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare_cached(
                "SELECT minute / 1440 * 1440 AS day, SUM(runs), SUM(ok), SUM(duration_us)
                 FROM uptime
                 WHERE probe = (SELECT id FROM uptime_probes WHERE name = ?1)
                   AND minute > ?2 - ?3 AND minute <= ?2
                 GROUP BY day ORDER BY day",
            )?;
            query
                .query_map(params![probe, now_minute, RETENTION_MINUTES], |row| {
                    Ok((
                        row.get(0)?,
                        Bucket {
                            runs: row.get::<_, i64>(1)? as u64,
                            ok: row.get::<_, i64>(2)? as u64,
                            duration_us: row.get::<_, i64>(3)? as u64,
                        },
                    ))
                })?
                .collect()
        })
    }

    /// Drops buckets at or before `before_minute`, probe by probe (each a range of the primary
    /// key, so nothing scans the whole table), and forgets probes with no bucket left.
    pub fn prune_uptime(&self, before_minute: i64) -> Result<usize, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let mut removed = 0;
            {
                let ids: Vec<i64> = tx
                    .prepare("SELECT id FROM uptime_probes")?
                    .query_map([], |row| row.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut delete =
                    tx.prepare_cached("DELETE FROM uptime WHERE probe = ?1 AND minute <= ?2")?;
                for id in ids {
                    removed += delete.execute(params![id, before_minute])?;
                }
                tx.execute(
                    "DELETE FROM uptime_probes
                     WHERE NOT EXISTS (SELECT 1 FROM uptime WHERE probe = uptime_probes.id)",
                    [],
                )?;
            }
            tx.commit()?;
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn bucket(runs: u64, ok: u64, ms: u64) -> Bucket {
        Bucket {
            runs,
            ok,
            duration_us: ms * 1000,
        }
    }

    fn store() -> Store {
        Store::open(std::path::Path::new(":memory:")).unwrap()
    }

    #[test]
    fn windows_count_the_buckets_inside_them() {
        let store = store();
        let now = 30_000_000;
        store
            .add_uptime(&[
                // One failure now, one 3 days ago, one 20 days ago, one 60 days ago; one
                // bucket just past the 90 days, which no window counts.
                ("web", now, bucket(2, 1, 100)),
                ("web", now - 3 * 1440, bucket(1, 0, 300)),
                ("web", now - 20 * 1440, bucket(1, 0, 300)),
                ("web", now - 60 * 1440, bucket(4, 3, 400)),
                ("web", now - RETENTION_MINUTES, bucket(9, 0, 900)),
                // A bucket in the future of `now` (a clock that moved back) is not counted.
                ("web", now + 1, bucket(5, 0, 500)),
                ("other", now, bucket(7, 7, 70)),
            ])
            .unwrap();
        let windows = store.uptime("web", now).unwrap();
        let got: Vec<(&str, u64, u64)> = windows.iter().map(|w| (w.window, w.runs, w.ok)).collect();
        assert_eq!(
            got,
            [("24h", 2, 1), ("7d", 3, 1), ("30d", 4, 1), ("90d", 8, 4)]
        );
        assert_eq!(windows[0].ratio(), Some(0.5));
        assert_eq!(windows[0].mean_seconds(), Some(0.05));
        assert_eq!(windows[3].ratio(), Some(0.5));
        // An unknown probe has runs in no window, and no ratio.
        let none = store.uptime("nobody", now).unwrap();
        assert!(none.iter().all(|w| w.runs == 0 && w.ratio().is_none()));
    }

    #[test]
    fn a_bucket_written_twice_is_summed() {
        let store = store();
        let mut first = Bucket::default();
        first.add(true, Duration::from_millis(10));
        let mut second = Bucket::default();
        second.add(false, Duration::from_millis(30));
        second.add(true, Duration::from_millis(20));
        store.add_uptime(&[("a", 100, first)]).unwrap();
        store.add_uptime(&[("a", 100, second)]).unwrap();
        let day = store.uptime_days("a", 100).unwrap();
        assert_eq!(day, [(0, bucket(3, 2, 60))]);
    }

    #[test]
    fn days_group_minutes_by_utc_day() {
        let store = store();
        let today = 20_000 * 1440;
        store
            .add_uptime(&[
                ("a", today - 1440 + 5, bucket(1, 1, 1)),
                ("a", today - 1, bucket(1, 0, 1)),
                ("a", today + 7, bucket(2, 2, 2)),
            ])
            .unwrap();
        let days = store.uptime_days("a", today + 10).unwrap();
        assert_eq!(
            days,
            [(today - 1440, bucket(2, 1, 2)), (today, bucket(2, 2, 2))]
        );
    }

    #[test]
    fn pruning_drops_old_buckets_and_forgotten_probes() {
        let store = store();
        let now = 40_000_000;
        store
            .add_uptime(&[
                ("kept", now - 10, bucket(1, 1, 1)),
                ("kept", now - RETENTION_MINUTES - 5, bucket(1, 1, 1)),
                ("gone", now - RETENTION_MINUTES - 1, bucket(1, 1, 1)),
            ])
            .unwrap();
        assert_eq!(store.prune_uptime(now - RETENTION_MINUTES).unwrap(), 2);
        assert_eq!(store.uptime("kept", now).unwrap()[3].runs, 1);
        let probes: i64 = store
            .with(|db| db.query_row("SELECT COUNT(*) FROM uptime_probes", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(probes, 1);
    }

    #[test]
    fn ninety_days_of_buckets_take_about_twenty_bytes_each() {
        // A probe that ran every minute for 90 days, written as the daemon writes them: in
        // batches, one transaction each.
        let dir = std::env::temp_dir().join(format!("slowburn-uptime-size-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = Store::open(&dir.join("store.db")).unwrap();
        let pages = |store: &Store| -> i64 {
            store
                .with(|db| {
                    db.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
                    db.query_row(
                        "SELECT page_count * page_size FROM pragma_page_count, pragma_page_size",
                        [],
                        |r| r.get(0),
                    )
                })
                .unwrap()
        };
        let before = pages(&store);
        let start = 29_000_000;
        let name = "checkout-api-production";
        let rows: Vec<(&str, i64, Bucket)> = (0..RETENTION_MINUTES)
            .map(|m| (name, start + m, bucket(1, u64::from(m % 97 != 0), 87)))
            .collect();
        for batch in rows.chunks(10_000) {
            store.add_uptime(batch).unwrap();
        }
        let bytes = pages(&store) - before;
        let per_bucket = bytes as f64 / RETENTION_MINUTES as f64;
        eprintln!(
            "90 days of 1-minute buckets: {bytes} bytes for one probe, {per_bucket:.1} bytes a bucket"
        );
        assert!(per_bucket < 30.0, "{per_bucket} bytes a bucket");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
