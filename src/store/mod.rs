//! The embedded store: what must survive a restart, a deploy or a `kill -9`.
//!
//! It keeps signal history for drift detection (bounded by age and count), every probe's
//! uptime in one-minute buckets for 90 days (`uptime.rs`), alerts with their escalation state,
//! a record of every notification (written *before* it is sent), and silences created through
//! the API. SQLite in WAL mode: a write that returned is on disk
//! even if the process dies the next instant. The store knows nothing of probes or
//! notifiers beyond the plain rows it is given.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

pub mod backend;
mod migrations;
pub mod oncall;
mod pings;
mod uptime;
pub use self::backend::{Backend, BackendError};
pub use self::migrations::SCHEMA_VERSION;
use self::migrations::{MIGRATIONS, migrate};
pub use self::pings::PingRow;
pub use self::uptime::{Bucket, RETENTION_MINUTES, UPTIME_WINDOWS, Uptime};

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

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error(
        "store {path} has schema version {found}; this slowburn knows up to {known} — upgrade slowburn or point storage.path elsewhere"
    )]
    TooNew {
        path: String,
        found: u32,
        known: u32,
    },
    #[error("store {path} is unreadable even after the old file was set aside: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("store {path} is unreadable ({reason}) and cannot be set aside: {source}")]
    SetAside {
        path: String,
        reason: String,
        source: std::io::Error,
    },
}

/// A store file that could not be read at start and was renamed so a fresh one could begin:
/// alerts, records, silences and history of before are in the kept copy, not in this store.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    /// What was wrong with it ("file is not a database", or `quick_check`'s first complaint).
    pub reason: String,
    /// Where the unreadable file is kept (`<path>.corrupt-<unix time>`).
    pub kept: PathBuf,
}

/// The store. Calls are short and synchronous; the connection is shared behind a mutex.
pub struct Store {
    path: String,
    db: Mutex<Connection>,
    replaced: Option<Replaced>,
    /// Failed reads and writes since start, and the latest failure while it is the latest
    /// outcome (cleared by the next call that succeeds): `/healthz` and the metrics read them.
    failures: AtomicU64,
    failing: Mutex<Option<String>>,
}

/// Settings of the connection, applied on every open (they are not part of the schema).
const PRAGMAS: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = NORMAL;
PRAGMA busy_timeout = 5000;
";

/// Why an existing file cannot be opened as it is.
enum Unusable {
    /// Not a database, or damaged: set it aside and start fresh.
    Corrupt(String),
    Other(StoreError),
}

impl Store {
    /// Opens (or creates) the store at `path`; `:memory:` for tests.
    ///
    /// A store of an older schema is upgraded in one transaction; one of a newer schema is
    /// refused without writing to it. A file that is not a database or fails
    /// `PRAGMA quick_check` is renamed to `<path>.corrupt-<unix time>` and a fresh store
    /// begins, which [`replaced`](Self::replaced) reports: losing the alerts is bad, but a
    /// prober that refuses to start pages nobody.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let display = path.display().to_string();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        let (db, replaced) = match Self::open_existing(path, &display) {
            Ok(db) => (db, None),
            Err(Unusable::Other(e)) => return Err(e),
            Err(Unusable::Corrupt(reason)) => {
                let kept = set_aside(path).map_err(|source| StoreError::SetAside {
                    path: display.clone(),
                    reason: reason.clone(),
                    source,
                })?;
                tracing::error!(store = %path.display(), %reason, kept = %kept.display(),
                    "the store is unreadable: kept a copy and started a fresh one; alerts, silences and history from before are lost");
                let db = Self::open_existing(path, &display).map_err(|e| match e {
                    Unusable::Other(e) => e,
                    Unusable::Corrupt(reason) => StoreError::Unreadable {
                        path: display.clone(),
                        reason,
                    },
                })?;
                (db, Some(Replaced { reason, kept }))
            }
        };
        Ok(Store {
            path: display,
            db: Mutex::new(db),
            replaced,
            failures: AtomicU64::new(0),
            failing: Mutex::new(None),
        })
    }

    /// Opens the file, checks it, and upgrades its schema.
    fn open_existing(path: &Path, display: &str) -> Result<Connection, Unusable> {
        let err = |source: rusqlite::Error| match &source {
            rusqlite::Error::SqliteFailure(e, _)
                if matches!(e.code, ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) =>
            {
                Unusable::Corrupt(source.to_string())
            }
            _ => Unusable::Other(StoreError::Sqlite {
                path: display.to_string(),
                source,
            }),
        };
        let mut db = Connection::open(path).map_err(err)?;
        // Read the version before anything writes: a newer store is left byte for byte as
        // it was (setting WAL mode would already write to it).
        let found: u32 = db
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(Unusable::Other(StoreError::TooNew {
                path: display.to_string(),
                found,
                known: SCHEMA_VERSION,
            }));
        }
        let verdict: String = db
            .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
            .map_err(err)?;
        if verdict != "ok" {
            return Err(Unusable::Corrupt(verdict));
        }
        db.execute_batch(PRAGMAS).map_err(err)?;
        migrate(&mut db, MIGRATIONS).map_err(err)?;
        Ok(db)
    }

    /// Where the store is, as given.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Set when the file at start was unreadable and a fresh store replaced it.
    pub fn replaced(&self) -> Option<&Replaced> {
        self.replaced.as_ref()
    }

    /// Reads and writes that failed since start.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The error of the latest call, when the latest call failed.
    pub fn failing(&self) -> Option<String> {
        self.failing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let result = f(&mut db);
        drop(db);
        let mut failing = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(value) => {
                *failing = None;
                Ok(value)
            }
            Err(source) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *failing = Some(source.to_string());
                Err(StoreError::Sqlite {
                    path: self.path.clone(),
                    source,
                })
            }
        }
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

    /// The stored series of `signal` that came as several (`value{job="api"}`, …), in order.
    /// Each is found with one index seek, however long its history.
    pub fn series_of(&self, probe: &str, signal: &str) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let mut next = db.prepare_cached(
                "SELECT signal FROM samples WHERE probe = ?1 AND signal > ?2 AND signal < ?3 \
                 ORDER BY signal LIMIT 1",
            )?;
            let (mut after, end) = (format!("{signal}{{"), format!("{signal}|"));
            let mut found = Vec::new();
            while let Some(name) = next
                .query_row(params![probe, after, end], |row| row.get::<_, String>(0))
                .optional()?
            {
                after = name.clone();
                found.push(name);
            }
            Ok(found)
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

    /// Keeps probes' checkpoints, each replacing the one before, in one transaction.
    pub fn save_checkpoints(&self, rows: &[(&str, &str)]) -> Result<(), StoreError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        self.with(|db| {
            let tx = db.transaction()?;
            {
                let mut put = tx.prepare_cached(
                    "INSERT OR REPLACE INTO checkpoints (probe, body, updated_at) VALUES (?1, ?2, ?3)",
                )?;
                for (probe, body) in rows {
                    put.execute(params![probe, body, now])?;
                }
            }
            tx.commit()
        })
    }

    /// The checkpoint last kept for a probe.
    pub fn checkpoint(&self, probe: &str) -> Result<Option<String>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare_cached("SELECT body FROM checkpoints WHERE probe = ?1")?;
            let mut rows = query.query_map(params![probe], |row| row.get(0))?;
            rows.next().transpose()
        })
    }

    pub fn silences(&self) -> Result<Vec<String>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare("SELECT body FROM silences ORDER BY id")?;
            query.query_map([], |row| row.get(0))?.collect()
        })
    }
}

/// Renames an unreadable store (and its WAL, which belongs to it) out of the way, to
/// `<path>.corrupt-<unix time>`. The shared-memory index is only a cache of the WAL and is
/// removed, so the fresh store does not start from a stale one.
fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let with_suffix = |p: &Path, suffix: &str| {
        let mut s = p.as_os_str().to_owned();
        s.push(suffix);
        PathBuf::from(s)
    };
    // Never over an earlier copy (two bad starts within a second).
    let mut kept = with_suffix(path, &format!(".corrupt-{now}"));
    let mut n = 1;
    while kept.exists() {
        kept = with_suffix(path, &format!(".corrupt-{now}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &kept)?;
    let wal = with_suffix(path, "-wal");
    if wal.exists() {
        std::fs::rename(&wal, with_suffix(&kept, "-wal"))?;
    }
    let _ = std::fs::remove_file(with_suffix(path, "-shm"));
    Ok(kept)
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

    fn temp(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("slowburn-store-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("s.db")
    }

    #[test]
    fn a_new_store_has_the_current_version() {
        let path = temp("new");
        drop(Store::open(&path).unwrap());
        let db = Connection::open(&path).unwrap();
        let version: u32 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_kept_aside() {
        let path = temp("garbage");
        let garbage = b"this is not sqlite, it is a text file someone wrote here\n".repeat(100);
        std::fs::write(&path, &garbage).unwrap();
        let s = Store::open(&path).unwrap();
        let replaced = s.replaced().cloned().expect("the file was replaced");
        assert!(replaced.reason.contains("not a database"), "{replaced:?}");
        assert!(
            replaced
                .kept
                .to_string_lossy()
                .starts_with(&format!("{}.corrupt-", path.display())),
            "{replaced:?}"
        );
        assert_eq!(std::fs::read(&replaced.kept).unwrap(), garbage);
        // The fresh store works.
        s.save_silence("x", "{}").unwrap();
        assert_eq!(s.silences().unwrap(), ["{}"]);
        drop(s);
        assert!(Store::open(&path).unwrap().replaced().is_none());
    }

    #[test]
    fn a_damaged_page_is_caught_by_the_check() {
        let path = temp("damaged");
        {
            let s = Store::open(&path).unwrap();
            let rows: Vec<(&str, &str, Sample)> = (0..2000)
                .map(|i| {
                    (
                        "p",
                        "rss",
                        Sample {
                            t: i as f64,
                            v: 1.0,
                        },
                    )
                })
                .collect();
            s.append_samples(&rows).unwrap();
        }
        // Overwrite everything after the first page (the header and schema stay readable).
        let mut bytes = std::fs::read(&path).unwrap();
        assert!(bytes.len() > 3 * 4096);
        for b in &mut bytes[4096..] {
            *b = 0xA5;
        }
        std::fs::write(&path, &bytes).unwrap();
        let s = Store::open(&path).unwrap();
        let replaced = s.replaced().cloned().expect("the damage was noticed");
        assert_eq!(std::fs::read(&replaced.kept).unwrap(), bytes);
        assert!(s.samples("p", "rss", 0.0).unwrap().is_empty());
    }

    #[test]
    fn failures_are_counted_and_the_latest_is_shown_until_a_call_succeeds() {
        let s = store();
        s.with(|db| db.execute_batch("DROP TABLE silences"))
            .unwrap();
        assert!(s.silences().is_err());
        assert_eq!(s.failures(), 1);
        assert!(s.failing().unwrap().contains("silences"));
        s.samples("p", "rss", 0.0).unwrap();
        assert_eq!((s.failures(), s.failing()), (1, None));
    }

    #[test]
    fn a_second_bad_file_in_the_same_second_keeps_both_copies() {
        let path = temp("twice");
        let mut kept = Vec::new();
        for text in ["first bad file", "second bad file"] {
            std::fs::write(&path, text.repeat(100)).unwrap();
            let s = Store::open(&path).unwrap();
            kept.push(s.replaced().unwrap().kept.clone());
        }
        assert_ne!(kept[0], kept[1]);
        assert!(
            std::fs::read_to_string(&kept[0])
                .unwrap()
                .starts_with("first")
        );
        assert!(
            std::fs::read_to_string(&kept[1])
                .unwrap()
                .starts_with("second")
        );
    }
}
