//! The state every replica must see alike when replicas share one database: silences and
//! on-call overrides added at run time, and the signal history detectors learn from.
//!
//! [`Backend`] is that state behind one trait, so its readers and writers (the alert service,
//! the results task, the API) do not know where it lives. The embedded SQLite [`Store`] is one
//! implementation (the default, and exactly what a single daemon always did); the shared
//! PostgreSQL of `storage: postgres:` (`cluster::pg::Coordinator`) is the other. Alerts, acks
//! and delivery records are not here: with PostgreSQL they are coordinated through the
//! cluster's own statements (claims, leases, fences), which have no SQLite counterpart.
//!
//! The methods are async because PostgreSQL is a network away; the SQLite ones do their short
//! synchronous work inline, as the store's own methods always have.

use super::oncall::OverrideRow;
use super::{Sample, Store, StoreError};

/// Why the shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Postgres(#[from] crate::cluster::pg::PgError),
}

impl BackendError {
    /// Whether the shared database could not be used: the API answers 503, and the change
    /// was made nowhere (never to this replica alone).
    pub fn unavailable(&self) -> bool {
        matches!(self, BackendError::Postgres(_))
    }
}

/// Silences, overrides and signal history, wherever they are kept.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Where the state is: the store's path, or `postgres://host:port/database`.
    fn describe(&self) -> String;

    /// True when other replicas write here too, so in-memory copies must be refreshed from
    /// it; false for the embedded store, which only this daemon writes.
    fn is_shared(&self) -> bool;

    /// Keeps an API silence (its JSON body), replacing one with the same id.
    async fn save_silence(&self, id: &str, body: &str) -> Result<(), BackendError>;
    /// Removes an API silence; false when there was none with that id.
    async fn delete_silence(&self, id: &str) -> Result<bool, BackendError>;
    /// Every API silence's JSON body, by id.
    async fn silences(&self) -> Result<Vec<String>, BackendError>;

    /// Keeps an override; returns its id.
    async fn add_override(&self, row: &OverrideRow) -> Result<i64, BackendError>;
    /// Removes an override; false when there was none with that id.
    async fn delete_override(&self, id: i64) -> Result<bool, BackendError>;
    /// Every stored override, oldest first (a later one wins where they overlap).
    async fn overrides(&self) -> Result<Vec<OverrideRow>, BackendError>;

    /// Appends `(probe, signal, sample)` rows in one transaction (one statement).
    async fn append_samples(&self, rows: &[(String, String, Sample)]) -> Result<(), BackendError>;
    /// The history of one series since `since`, oldest first.
    async fn samples(
        &self,
        probe: &str,
        signal: &str,
        since: f64,
    ) -> Result<Vec<Sample>, BackendError>;
    /// The stored series of `signal` that came as several (`value{job="api"}`, …), in order.
    async fn series_of(&self, probe: &str, signal: &str) -> Result<Vec<String>, BackendError>;
    /// Drops samples older than `before` and keeps at most `max_per_series` per series.
    async fn prune_samples(
        &self,
        before: f64,
        max_per_series: usize,
    ) -> Result<usize, BackendError>;
}

#[async_trait::async_trait]
impl Backend for Store {
    fn describe(&self) -> String {
        self.path().to_string()
    }

    fn is_shared(&self) -> bool {
        false
    }

    async fn save_silence(&self, id: &str, body: &str) -> Result<(), BackendError> {
        Ok(Store::save_silence(self, id, body)?)
    }

    async fn delete_silence(&self, id: &str) -> Result<bool, BackendError> {
        Ok(Store::delete_silence(self, id)?)
    }

    async fn silences(&self) -> Result<Vec<String>, BackendError> {
        Ok(Store::silences(self)?)
    }

    async fn add_override(&self, row: &OverrideRow) -> Result<i64, BackendError> {
        Ok(Store::add_override(self, row)?)
    }

    async fn delete_override(&self, id: i64) -> Result<bool, BackendError> {
        Ok(Store::delete_override(self, id)?)
    }

    async fn overrides(&self) -> Result<Vec<OverrideRow>, BackendError> {
        Ok(Store::overrides(self)?)
    }

    async fn append_samples(&self, rows: &[(String, String, Sample)]) -> Result<(), BackendError> {
        let rows: Vec<(&str, &str, Sample)> = rows
            .iter()
            .map(|(p, s, x)| (p.as_str(), s.as_str(), *x))
            .collect();
        Ok(Store::append_samples(self, &rows)?)
    }

    async fn samples(
        &self,
        probe: &str,
        signal: &str,
        since: f64,
    ) -> Result<Vec<Sample>, BackendError> {
        Ok(Store::samples(self, probe, signal, since)?)
    }

    async fn series_of(&self, probe: &str, signal: &str) -> Result<Vec<String>, BackendError> {
        Ok(Store::series_of(self, probe, signal)?)
    }

    async fn prune_samples(
        &self,
        before: f64,
        max_per_series: usize,
    ) -> Result<usize, BackendError> {
        Ok(Store::prune_samples(self, before, max_per_series)?)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    #[tokio::test]
    async fn the_store_behind_the_trait_is_the_store() {
        let store = Arc::new(Store::open(Path::new(":memory:")).unwrap());
        let backend: Arc<dyn Backend> = store.clone();
        assert!(!backend.is_shared());
        backend.save_silence("s1", "{}").await.unwrap();
        assert_eq!(store.silences().unwrap(), ["{}"]);
        assert!(backend.delete_silence("s1").await.unwrap());
        assert!(!backend.delete_silence("s1").await.unwrap());
        let rows = vec![
            (
                "p".to_string(),
                "v{a=\"1\"}".to_string(),
                Sample { t: 1.0, v: 2.0 },
            ),
            (
                "p".to_string(),
                "v{a=\"2\"}".to_string(),
                Sample { t: 1.0, v: 3.0 },
            ),
        ];
        backend.append_samples(&rows).await.unwrap();
        assert_eq!(backend.series_of("p", "v").await.unwrap().len(), 2);
        assert_eq!(
            backend.samples("p", "v{a=\"2\"}", 0.0).await.unwrap(),
            [Sample { t: 1.0, v: 3.0 }]
        );
        assert_eq!(backend.prune_samples(5.0, 10).await.unwrap(), 2);
    }
}
