//! The store's schema: one migration per version, and the upgrade that runs them. A store made
//! by an older slowburn is brought to [`SCHEMA_VERSION`] in one transaction; each older schema
//! is kept as a fixture under `tests/fixtures/store/` and opened by a test.

use rusqlite::{Connection, TransactionBehavior};

use super::{oncall, pings, uptime};

/// The schema, one migration per version: `MIGRATIONS[i]` takes a store from version `i` to
/// `i + 1`. A migration that has shipped is never edited, only followed by new ones; each
/// store made by an older slowburn is kept under `tests/fixtures/store/` and opened by a test.
///
/// Version 1 is the schema from before versions were recorded. Its statements say
/// `IF NOT EXISTS` so that such a store (user_version 0, with these tables) is upgraded by
/// running it again, which changes nothing that is there.
pub(super) const MIGRATIONS: &[&str] = &[
    "
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
",
    MIGRATION_2_ORIGINS,
    uptime::MIGRATION,
    pings::MIGRATION,
    MIGRATION_5_CHECKPOINTS,
    oncall::MIGRATION,
];

/// Version 5: where each stream-reading probe (`log:`) stands, one opaque row per probe.
const MIGRATION_5_CHECKPOINTS: &str = "
CREATE TABLE checkpoints (probe TEXT PRIMARY KEY, body TEXT NOT NULL, updated_at REAL NOT NULL);
";

/// Version 2: every alert carries its typed origin. Alerts written before had only a reason
/// label; this is the one place that reads a reason to learn an origin, once, for those rows.
const MIGRATION_2_ORIGINS: &str = "
UPDATE alerts SET body = json_set(body, '$.origin', json(CASE
    WHEN json_extract(body, '$.reason') LIKE 'drift:%'
        THEN json_object('type', 'trend', 'signal', substr(json_extract(body, '$.reason'), 7))
    WHEN json_extract(body, '$.reason') LIKE 'change:%'
        THEN json_object('type', 'change', 'signal', substr(json_extract(body, '$.reason'), 8))
    WHEN json_extract(body, '$.reason') LIKE 'burn:%'
        THEN json_object('type', 'burn', 'severity', substr(json_extract(body, '$.reason'), 6))
    ELSE json_object('type', 'run')
END))
WHERE json_extract(body, '$.origin') IS NULL;
";

/// The schema version this code writes and the newest it can read.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Brings a store from its `user_version` to `migrations.len()`, in one transaction: a crash
/// halfway leaves the old version, never a mix.
pub(super) fn migrate(db: &mut Connection, migrations: &[&str]) -> rusqlite::Result<()> {
    let tx = db.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    let target = migrations.len() as u32;
    if found >= target {
        return Ok(());
    }
    if found == 0 {
        let tables: u32 = tx.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'alerts'",
            [],
            |row| row.get(0),
        )?;
        if tables > 0 {
            tracing::info!("store predates schema versions: it is version 1");
        }
    }
    for (from, migration) in migrations.iter().enumerate().skip(found as usize) {
        tx.execute_batch(migration)?;
        tracing::debug!(from, to = from + 1, "store schema migrated");
    }
    // The version is in the file's header, written in the same transaction as the tables.
    tx.execute_batch(&format!("PRAGMA user_version = {target}"))?;
    tx.commit()?;
    if found > 0 {
        tracing::info!(from = found, to = target, "store schema upgraded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_run_once_each_from_the_stored_version() {
        let mut db = Connection::open_in_memory().unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "ALTER TABLE a ADD COLUMN y INTEGER; INSERT INTO a VALUES (1, 2);",
        ];
        migrate(&mut db, &steps[..1]).unwrap();
        db.execute("INSERT INTO a VALUES (7)", []).unwrap();
        // Version 1 to 2 runs only the second step; running again changes nothing.
        migrate(&mut db, &steps).unwrap();
        migrate(&mut db, &steps).unwrap();
        let version: u32 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let rows: Vec<(i64, Option<i64>)> = db
            .prepare("SELECT x, y FROM a ORDER BY x")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!((version, rows), (2, vec![(1, Some(2)), (7, None)]));
    }

    #[test]
    fn alerts_written_before_origins_get_theirs_from_their_reason() {
        let mut db = Connection::open_in_memory().unwrap();
        migrate(&mut db, &MIGRATIONS[..1]).unwrap();
        for (id, reason) in [
            (1, "connect"),
            (2, "drift:rss"),
            (3, "change:latency"),
            (4, "burn:ticket"),
        ] {
            let body = serde_json::json!({"id": id, "reason": reason}).to_string();
            db.execute(
                "INSERT INTO alerts (id, dedup_key, state, updated_at, body) VALUES (?1, 'k', 'firing', 0, ?2)",
                rusqlite::params![id, body],
            )
            .unwrap();
        }
        migrate(&mut db, MIGRATIONS).unwrap();
        let origins: Vec<serde_json::Value> = db
            .prepare("SELECT body FROM alerts ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|b| {
                serde_json::from_str::<serde_json::Value>(&b.unwrap()).unwrap()["origin"].clone()
            })
            .collect();
        let typed: Vec<crate::alert::Origin> = origins
            .iter()
            .map(|o| serde_json::from_value(o.clone()).unwrap())
            .collect();
        use crate::alert::Origin;
        use crate::detect::Detector;
        assert_eq!(
            typed,
            [
                Origin::Run,
                Origin::detected(Detector::TREND, "rss"),
                Origin::detected(Detector::CHANGE, "latency"),
                Origin::detected(Detector::BURN, "ticket"),
            ]
        );
    }

    #[test]
    fn a_failed_migration_leaves_the_old_version() {
        let mut db = Connection::open_in_memory().unwrap();
        let steps = [
            "CREATE TABLE a (x INTEGER);",
            "CREATE TABLE b (y); nonsense;",
        ];
        migrate(&mut db, &steps[..1]).unwrap();
        assert!(migrate(&mut db, &steps).is_err());
        let version: u32 = db
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let b: u32 = db
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!((version, b), (1, 0));
    }
}
