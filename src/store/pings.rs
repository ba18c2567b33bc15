//! Heartbeat pings and the daemon's own liveness row: the rows behind `/ping/…` and the
//! watchdog.
//!
//! A ping is one row, written (and so on disk, WAL) before the server answers 200; the
//! daemon rebuilds each heartbeat probe's view from these rows on start and reload, so a missed
//! deadline is judged from stored times. Rows are plain: a probe name, a time, a word and what
//! the ping carried. The newest [`KEEP_PER_PROBE`] pings of each probe are kept.

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// Version 4: heartbeat pings, and the one row the watchdog writes to prove the store takes
/// writes.
pub(super) const MIGRATION: &str = "
CREATE TABLE pings (
    id INTEGER PRIMARY KEY, probe TEXT NOT NULL, t REAL NOT NULL, event TEXT NOT NULL,
    exit_code INTEGER, value REAL, log TEXT
);
CREATE INDEX pings_by_probe ON pings (probe, id);
CREATE TABLE liveness (id INTEGER PRIMARY KEY CHECK (id = 1), t REAL NOT NULL);
";

/// How many pings of each probe are kept.
pub const KEEP_PER_PROBE: usize = 100;

/// One stored ping.
#[derive(Debug, Clone, PartialEq)]
pub struct PingRow {
    /// Increasing in the order the store took them.
    pub id: i64,
    pub probe: String,
    /// Unix seconds, when slowburn received it.
    pub t: f64,
    /// `start`, `success`, `fail`, `exit`.
    pub event: String,
    pub exit_code: Option<u8>,
    pub value: Option<f64>,
    pub log: Option<String>,
}

impl Store {
    /// Stores one ping (`row.id` is ignored) and returns its id. Every 64th ping also trims
    /// its probe to the newest [`KEEP_PER_PROBE`].
    pub fn append_ping(&self, row: &PingRow) -> Result<i64, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let id = {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO pings (probe, t, event, exit_code, value, log)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                insert.execute(params![
                    row.probe,
                    row.t,
                    row.event,
                    row.exit_code,
                    row.value,
                    row.log
                ])?;
                tx.last_insert_rowid()
            };
            if id % 64 == 0 {
                tx.prepare_cached(
                    "DELETE FROM pings WHERE probe = ?1 AND id <= (
                         SELECT id FROM pings WHERE probe = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                )?
                .execute(params![row.probe, KEEP_PER_PROBE as i64])?;
            }
            tx.commit()?;
            Ok(id)
        })
    }

    /// The newest `limit` pings of `probe` with an id above `after`, oldest first.
    pub fn pings(&self, probe: &str, after: i64, limit: usize) -> Result<Vec<PingRow>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare_cached(
                "SELECT id, probe, t, event, exit_code, value, log FROM pings
                 WHERE probe = ?1 AND id > ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let mut rows = query
                .query_map(params![probe, after, limit as i64], |r| {
                    Ok(PingRow {
                        id: r.get(0)?,
                        probe: r.get(1)?,
                        t: r.get(2)?,
                        event: r.get(3)?,
                        exit_code: r.get(4)?,
                        value: r.get(5)?,
                        log: r.get(6)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.reverse();
            Ok(rows)
        })
    }

    /// Writes the liveness row: succeeds only when the store takes writes. Returns the time
    /// the row held before, if any.
    pub fn touch_liveness(&self, t: f64) -> Result<Option<f64>, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let before = tx
                .query_row("SELECT t FROM liveness WHERE id = 1", [], |r| r.get(0))
                .optional()?;
            tx.execute(
                "INSERT INTO liveness (id, t) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET t = ?1",
                params![t],
            )?;
            tx.commit()?;
            Ok(before)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(probe: &str, t: f64, event: &str) -> PingRow {
        PingRow {
            id: 0,
            probe: probe.into(),
            t,
            event: event.into(),
            exit_code: None,
            value: None,
            log: None,
        }
    }

    #[test]
    fn pings_round_trip_newest_last_and_are_trimmed() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        let first = store
            .append_ping(&PingRow {
                exit_code: Some(3),
                value: Some(1.5),
                log: Some("boom".into()),
                ..row("a", 1.0, "exit")
            })
            .unwrap();
        store.append_ping(&row("b", 2.0, "start")).unwrap();
        let rows = store.pings("a", 0, 10).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(
            rows[0],
            PingRow {
                id: first,
                exit_code: Some(3),
                value: Some(1.5),
                log: Some("boom".into()),
                ..row("a", 1.0, "exit")
            }
        );
        for i in 0..300 {
            store
                .append_ping(&row("a", 10.0 + f64::from(i), "success"))
                .unwrap();
        }
        let rows = store.pings("a", 0, 1000).unwrap();
        assert!(rows.len() <= KEEP_PER_PROBE + 64, "{}", rows.len());
        assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
        assert_eq!(rows.last().unwrap().t, 309.0);
        // Only what came after a given id.
        let newest = rows.last().unwrap().id;
        assert!(store.pings("a", newest, 10).unwrap().is_empty());
        assert_eq!(store.pings("b", 0, 10).unwrap().len(), 1);
    }

    #[test]
    fn liveness_is_one_row() {
        let store = Store::open(std::path::Path::new(":memory:")).unwrap();
        assert_eq!(store.touch_liveness(1.0).unwrap(), None);
        assert_eq!(store.touch_liveness(2.0).unwrap(), Some(1.0));
    }
}
