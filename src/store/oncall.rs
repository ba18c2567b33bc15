//! On-call rows: schedule overrides added through the API or `slowburn oncall override`
//! (they join the overrides of the probe files on every start and reload), the nonces of
//! signed one-click links already used (a link acts once), and the link-signing key when the
//! config gives none (generated once, kept here, never logged).

use rusqlite::{OptionalExtension, params};

use super::{Store, StoreError};

/// Version 6: overrides, used link nonces and generated keys.
pub(super) const MIGRATION: &str = "
CREATE TABLE overrides (
    id INTEGER PRIMARY KEY, schedule TEXT NOT NULL, user TEXT NOT NULL,
    start REAL NOT NULL, end REAL NOT NULL, created_by TEXT NOT NULL, created_at REAL NOT NULL
);
CREATE TABLE link_nonces (
    nonce TEXT PRIMARY KEY, alert_id INTEGER NOT NULL, action TEXT NOT NULL, used_at REAL NOT NULL
);
CREATE TABLE keys (name TEXT PRIMARY KEY, value BLOB NOT NULL);
";

/// One stored override (unix seconds, `end` exclusive).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OverrideRow {
    pub id: i64,
    pub schedule: String,
    pub user: String,
    pub start: f64,
    pub end: f64,
    pub created_by: String,
    pub created_at: f64,
}

impl Store {
    /// Keeps an override; returns its id.
    pub fn add_override(&self, row: &OverrideRow) -> Result<i64, StoreError> {
        self.with(|db| {
            db.execute(
                "INSERT INTO overrides (schedule, user, start, end, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![row.schedule, row.user, row.start, row.end, row.created_by, row.created_at],
            )?;
            Ok(db.last_insert_rowid())
        })
    }

    /// Every stored override, oldest first (a later one wins where they overlap).
    pub fn overrides(&self) -> Result<Vec<OverrideRow>, StoreError> {
        self.with(|db| {
            let mut query = db.prepare(
                "SELECT id, schedule, user, start, end, created_by, created_at FROM overrides ORDER BY id",
            )?;
            query
                .query_map([], |r| {
                    Ok(OverrideRow {
                        id: r.get(0)?,
                        schedule: r.get(1)?,
                        user: r.get(2)?,
                        start: r.get(3)?,
                        end: r.get(4)?,
                        created_by: r.get(5)?,
                        created_at: r.get(6)?,
                    })
                })?
                .collect()
        })
    }

    /// Removes an override; false when there was none with that id.
    pub fn delete_override(&self, id: i64) -> Result<bool, StoreError> {
        self.with(|db| Ok(db.execute("DELETE FROM overrides WHERE id = ?1", params![id])? > 0))
    }

    /// Marks a link's nonce used: true the first time, false ever after (a link outlives
    /// its nonce's row by nothing: rows older than `keep` seconds, when every link that could
    /// carry them has expired, are dropped here).
    pub fn use_nonce(
        &self,
        nonce: &str,
        alert_id: u64,
        action: &str,
        now: f64,
        keep: f64,
    ) -> Result<bool, StoreError> {
        self.with(|db| {
            db.execute(
                "DELETE FROM link_nonces WHERE used_at < ?1",
                params![now - keep],
            )?;
            let added = db.execute(
                "INSERT OR IGNORE INTO link_nonces (nonce, alert_id, action, used_at) VALUES (?1, ?2, ?3, ?4)",
                params![nonce, alert_id as i64, action, now],
            )?;
            Ok(added == 1)
        })
    }

    /// The key named `name`, made by `generate` and kept the first time it is asked for.
    pub fn key(
        &self,
        name: &str,
        generate: impl FnOnce() -> Vec<u8>,
    ) -> Result<Vec<u8>, StoreError> {
        self.with(|db| {
            let tx = db.transaction()?;
            let found: Option<Vec<u8>> = tx
                .query_row(
                    "SELECT value FROM keys WHERE name = ?1",
                    params![name],
                    |r| r.get(0),
                )
                .optional()?;
            let key = match found {
                Some(key) => key,
                None => {
                    let key = generate();
                    tx.execute(
                        "INSERT INTO keys (name, value) VALUES (?1, ?2)",
                        params![name, key],
                    )?;
                    key
                }
            };
            tx.commit()?;
            Ok(key)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_nonces_and_keys_survive_a_reopen() {
        let dir =
            std::env::temp_dir().join(format!("slowburn-store-oncall-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("s.db");
        let row = OverrideRow {
            id: 0,
            schedule: "primary".into(),
            user: "dave".into(),
            start: 100.0,
            end: 200.0,
            created_by: "alice".into(),
            created_at: 50.0,
        };
        {
            let store = Store::open(&path).unwrap();
            let id = store.add_override(&row).unwrap();
            assert!(store.use_nonce("n1", 7, "ack", 1.0, 100.0).unwrap());
            assert!(!store.use_nonce("n1", 7, "ack", 2.0, 100.0).unwrap());
            assert_eq!(store.key("links", || vec![1, 2, 3]).unwrap(), [1, 2, 3]);
            assert_eq!(id, 1);
        }
        let store = Store::open(&path).unwrap();
        assert_eq!(store.overrides().unwrap(), [OverrideRow { id: 1, ..row }]);
        assert!(
            !store.use_nonce("n1", 7, "ack", 3.0, 100.0).unwrap(),
            "a used link stays used"
        );
        // Once no link can carry it any more, its row goes.
        assert!(store.use_nonce("n2", 7, "ack", 500.0, 100.0).unwrap());
        assert!(store.use_nonce("n1", 7, "ack", 500.0, 100.0).unwrap());
        assert_eq!(
            store.key("links", || vec![9]).unwrap(),
            [1, 2, 3],
            "generated once"
        );
        assert!(store.delete_override(1).unwrap());
        assert!(store.overrides().unwrap().is_empty());
    }
}
