//! The embedded store: what must survive a restart, a deploy or a `kill -9`.
//!
//! It keeps signal history for drift detection (bounded by age and count), alerts with their
//! escalation state, a record of every notification (written *before* it is sent), and
//! silences created through the API. SQLite in WAL mode: a write that returned is on disk
//! even if the process dies the next instant. The store knows nothing of probes or
//! notifiers beyond the plain rows it is given.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{Connection, params};

/// One row of signal history.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: f64,
    pub v: f64,
}

/// Where a notification stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// Unique per (alert, notifier, event, epoch, round, step).
    pub key: String,
    pub alert_id: u64,
    pub notifier: String,
    pub event: String,
    pub state: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub created_at: f64,
    pub updated_at: f64,
}

#[derive(Debug, thiserror::Error)]
#[error("store {path}: {source}")]
pub struct StoreError {
    path: String,
    source: rusqlite::Error,
}

/// The store. Calls are short and synchronous; the connection is shared behind a mutex.
pub struct Store {
    path: String,
    db: Mutex<Connection>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
CREATE TABLE IF NOT EXISTS samples (
    probe TEXT NOT NULL, signal TEXT NOT NULL, t REAL NOT NULL, v REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS samples_by_series ON samples (probe, signal, t);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY, dedup_key TEXT NOT NULL, state TEXT NOT NULL,
    updated_at REAL NOT NULL, body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state);
CREATE TABLE IF NOT EXISTS notifications (
    key TEXT PRIMARY KEY, alert_id INTEGER NOT NULL, notifier TEXT NOT NULL, event TEXT NOT NULL,
    state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, error TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS notifications_by_alert ON notifications (alert_id);
CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL);
";

impl Store {
    /// Opens (or creates) the store at `path`; `:memory:` for tests.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let display = path.display().to_string();
        let err = |source| StoreError {
            path: display.clone(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let db = Connection::open(path).map_err(err)?;
        db.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            path: display,
            db: Mutex::new(db),
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut db).map_err(|source| StoreError {
            path: self.path.clone(),
            source,
        })
    }

    /// Appends samples in one transaction.
    pub fn append_samples(&self, rows: &[(&str, &str, Sample)]) -> Result<(), StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO samples (probe, signal, t, v) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (probe, signal, s) in rows {
                    insert.execute(params![probe, signal, s.t, s.v])?;
                }
            }
            tx.commit()
        })
    }

    /// The history of one series since `since`, oldest first.
    pub fn samples(
        &self,
        probe: &str,
        signal: &str,
        since: f64,
    ) -> Result<Vec<Sample>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare_cached(
                "SELECT t, v FROM samples WHERE probe = ?1 AND signal = ?2 AND t >= ?3 ORDER BY t",
            )?;
            query
                .query_map(params![probe, signal, since], |row| {
                    Ok(Sample {
                        t: row.get(0)?,
                        v: row.get(1)?,
                    })
                })?
                .collect()
        })
    }

    /// Drops samples older than `before` and keeps at most `max_per_series` per series.
    pub fn prune_samples(&self, before: f64, max_per_series: usize) -> Result<usize, StoreError> {
        self.with(|db| {
            let mut removed = db.execute("DELETE FROM samples WHERE t < ?1", params![before])?;
            removed += db.execute(
                "DELETE FROM samples WHERE rowid IN (
                    SELECT rowid FROM (
                        SELECT rowid, ROW_NUMBER() OVER (PARTITION BY probe, signal ORDER BY t DESC) AS n FROM samples
                    ) WHERE n > ?1)",
                params![max_per_series as i64],
            )?;
            Ok(removed)
        })
    }

    /// Saves changed alerts and records intended notifications in one transaction, so the
    /// intent is on disk before anything is sent. A record whose key exists is left as it is:
    /// what was already sent is never queued again.
    pub fn persist(
        &self,
        alerts: &[(u64, String, String, String)],
        intended: &[Record],
        now: f64,
    ) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let mut fresh = Vec::new();
            {
                let mut save = tx.prepare_cached(
                    "INSERT INTO alerts (id, dedup_key, state, updated_at, body) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at, body = excluded.body",
                )?;
                for (id, key, state, body) in alerts {
                    save.execute(params![*id as i64, key, state, now, body])?;
                }
                let mut record = tx.prepare_cached(
                    "INSERT OR IGNORE INTO notifications (key, alert_id, notifier, event, state, attempts, created_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, 'intended', 0, ?5, ?5)",
                )?;
                for r in intended {
                    if record.execute(params![r.key, r.alert_id as i64, r.notifier, r.event, now])? > 0 {
                        fresh.push(r.key.clone());
                    }
                }
            }
            tx.commit()?;
            Ok(fresh)
        })
    }

    /// Alerts not resolved, plus the newest `recent` resolved ones, as stored JSON bodies.
    pub fn alerts(&self, recent: usize) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT body FROM alerts WHERE state != 'resolved'
                 UNION ALL SELECT body FROM (SELECT body FROM alerts WHERE state = 'resolved' ORDER BY id DESC LIMIT ?1)",
            )?;
            query.query_map(params![recent as i64], |row| row.get(0))?.collect()
        })
    }

    /// Updates a notification record after an attempt.
    pub fn mark(
        &self,
        key: &str,
        state: &str,
        attempts: u32,
        error: Option<&str>,
        now: f64,
    ) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "UPDATE notifications SET state = ?2, attempts = ?3, error = ?4, updated_at = ?5 WHERE key = ?1",
                params![key, state, attempts, error, now],
            )
            .map(|_| ())
        })
    }

    /// Notifications recorded but not (yet) sent: what a restart must send.
    pub fn unsent(&self) -> Result<Vec<Record>, StoreError> {
        self.query_records(
            "WHERE state IN ('intended', 'retrying') ORDER BY created_at",
            params![],
        )
    }

    /// Every notification record of an alert, oldest first.
    pub fn records(&self, alert_id: u64) -> Result<Vec<Record>, StoreError> {
        self.query_records(
            "WHERE alert_id = ?1 ORDER BY created_at, key",
            params![alert_id as i64],
        )
    }

    pub fn record(&self, key: &str) -> Result<Option<Record>, StoreError> {
        Ok(self.query_records("WHERE key = ?1", params![key])?.pop())
    }

    fn query_records(
        &self,
        filter: &str,
        args: impl rusqlite::Params,
    ) -> Result<Vec<Record>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare(&format!(
                "SELECT key, alert_id, notifier, event, state, attempts, error, created_at, updated_at FROM notifications {filter}"
            ))?;
            query
                .query_map(args, |row| {
                    Ok(Record {
                        key: row.get(0)?,
                        alert_id: row.get::<_, i64>(1)? as u64,
                        notifier: row.get(2)?,
                        event: row.get(3)?,
                        state: row.get(4)?,
                        attempts: row.get(5)?,
                        error: row.get(6)?,
                        created_at: row.get(7)?,
                        updated_at: row.get(8)?,
                    })
                })?
                .collect()
        })
    }

    pub fn save_silence(&self, id: &str, body: &str) -> Result<(), StoreError> {
        self.with(|db| {
            db.execute(
                "INSERT OR REPLACE INTO silences (id, body) VALUES (?1, ?2)",
                params![id, body],
            )
            .map(|_| ())
        })
    }

    pub fn delete_silence(&self, id: &str) -> Result<bool, StoreError> {
        self.with(|db| Ok(db.execute("DELETE FROM silences WHERE id = ?1", params![id])? > 0))
    }

    pub fn silences(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare("SELECT body FROM silences ORDER BY id")?;
            query.query_map([], |row| row.get(0))?.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::open(Path::new(":memory:")).unwrap()
    }

    #[test]
    fn samples_round_trip_and_prune() {
        let s = store();
        let rows: Vec<(&str, &str, Sample)> = (0..10)
            .map(|i| {
                (
                    "p",
                    "rss",
                    Sample {
                        t: i as f64,
                        v: i as f64 * 2.0,
                    },
                )
            })
            .collect();
        s.append_samples(&rows).unwrap();
        s.append_samples(&[("q", "rss", Sample { t: 5.0, v: 1.0 })])
            .unwrap();
        assert_eq!(
            s.samples("p", "rss", 7.0).unwrap(),
            vec![
                Sample { t: 7.0, v: 14.0 },
                Sample { t: 8.0, v: 16.0 },
                Sample { t: 9.0, v: 18.0 }
            ]
        );
        s.prune_samples(2.0, 5).unwrap();
        let left: Vec<f64> = s
            .samples("p", "rss", 0.0)
            .unwrap()
            .iter()
            .map(|x| x.t)
            .collect();
        assert_eq!(left, [5.0, 6.0, 7.0, 8.0, 9.0]);
        assert_eq!(s.samples("q", "rss", 0.0).unwrap().len(), 1);
    }

    #[test]
    fn intended_records_are_written_once() {
        let s = store();
        let record = |key: &str| Record {
            key: key.into(),
            alert_id: 1,
            notifier: "pd".into(),
            event: "trigger".into(),
            state: "intended".into(),
            attempts: 0,
            error: None,
            created_at: 0.0,
            updated_at: 0.0,
        };
        let alerts = vec![(
            1,
            "shop:status".to_string(),
            "firing".to_string(),
            "{}".to_string(),
        )];
        assert_eq!(
            s.persist(&alerts, &[record("a"), record("b")], 10.0)
                .unwrap(),
            ["a", "b"]
        );
        s.mark("a", "sent", 1, None, 11.0).unwrap();
        assert_eq!(
            s.persist(&alerts, &[record("a")], 12.0).unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(s.record("a").unwrap().unwrap().state, "sent");
        let unsent: Vec<String> = s.unsent().unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(unsent, ["b"]);
        assert_eq!(s.alerts(10).unwrap(), ["{}"]);
    }
}
