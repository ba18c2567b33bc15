//! The on-call side of the alert service: the people, schedules and routes the engine
//! resolves against (the probe files' own, plus the overrides kept in the store), overrides
//! added and removed at run time, the signer of one-click links, gap counts, and incidents
//! opened by hand.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::AlertService;
use crate::alert::{Alert, Severity};
use crate::oncall::links::Signer;
use crate::oncall::{Directory, OverrideError, Route, stored};
use crate::store::BackendError;
use crate::store::oncall::OverrideRow;

impl AlertService {
    /// Sets the people, schedules and routes that steps and new alerts resolve against, with
    /// the overrides kept in the store after those of the probe files.
    pub fn set_oncall(&self, directory: Directory, routes: Vec<Route>) {
        let running = self.with_stored_overrides(directory.clone());
        let mut inner = self.lock();
        inner.file_directory = directory;
        inner.engine.set_oncall(running, routes);
    }

    /// Adds an override (from the API or `slowburn oncall override`): checked against the
    /// running schedules, kept in the store, then in effect.
    /// With a shared database the override is kept there (every replica reads it), and when
    /// that is unreachable it is refused, not kept here alone.
    pub async fn add_override(&self, mut row: OverrideRow) -> Result<OverrideRow, OverrideError> {
        let mut check = self.lock().engine.directory().clone();
        check
            .add_override(&row.schedule, stored(&row))
            .map_err(OverrideError::Invalid)?;
        row.id = self.backend().add_override(&row).await?;
        self.remember(|m| m.overrides.push(row.clone()));
        let mut inner = self.lock();
        if let Err(why) = (inner.engine.directory_mut()).add_override(&row.schedule, stored(&row)) {
            // A reload between the check and now dropped its schedule.
            tracing::warn!(id = row.id, schedule = %row.schedule, %why, "stored override ignored");
        }
        Ok(row)
    }

    /// Removes a stored override (those of the probe files are removed by editing the files);
    /// false when there is none with that id.
    pub async fn remove_override(&self, id: i64) -> Result<bool, BackendError> {
        if !self.backend().delete_override(id).await? {
            return Ok(false);
        }
        self.remember(|m| m.overrides.retain(|o| o.id != id));
        let file = self.lock().file_directory.clone();
        let running = self.with_stored_overrides(file);
        *self.lock().engine.directory_mut() = running;
        Ok(true)
    }

    /// The stored overrides, oldest first: read from the shared database (or, while it is
    /// unreachable, this replica's latest copy of them), or from the store.
    pub async fn overrides(&self) -> Result<Vec<OverrideRow>, BackendError> {
        if self.backend.get().is_none() {
            return Ok(self.store.overrides()?);
        }
        match self.backend().overrides().await {
            Ok(rows) => Ok(rows),
            Err(e) => {
                tracing::debug!(error = %e, "overrides listed from this replica's copy");
                Ok(self.mirror().overrides.clone())
            }
        }
    }

    /// The overrides the engine runs with: the copy of the shared database's, or the store's.
    fn running_overrides(&self) -> Vec<OverrideRow> {
        if self.backend.get().is_some() {
            return self.mirror().overrides.clone();
        }
        self.store.overrides().unwrap_or_default()
    }

    /// `directory` with the stored overrides after its own.
    pub(super) fn with_stored_overrides(&self, mut directory: Directory) -> Directory {
        for row in self.running_overrides() {
            if let Err(why) = directory.add_override(&row.schedule, stored(&row)) {
                tracing::warn!(id = row.id, schedule = %row.schedule, %why, "stored override ignored");
            }
        }
        directory
    }

    /// Sets (or, with `None`, drops) the signer of one-click links.
    pub fn set_links(&self, signer: Option<Signer>) {
        self.lock().links = signer.map(Arc::new);
    }

    /// The signer of one-click links, when `server.external_url` is set.
    pub fn links(&self) -> Option<Arc<Signer>> {
        self.lock().links.clone()
    }

    /// The people and schedules in effect (with every override), for the API.
    pub fn directory(&self) -> Directory {
        self.lock().engine.directory().clone()
    }

    /// Steps that met nobody on call, by schedule: every configured schedule, 0 included.
    pub fn oncall_gaps(&self) -> BTreeMap<String, u64> {
        let inner = self.lock();
        let mut gaps: BTreeMap<String, u64> = inner
            .engine
            .directory()
            .schedules
            .keys()
            .map(|name| (name.clone(), 0))
            .collect();
        gaps.extend(inner.engine.gaps().iter().map(|(k, v)| (k.clone(), *v)));
        gaps
    }

    /// Opens an incident by hand for `service`, routed like any other alert.
    pub fn page(
        &self,
        service: &str,
        message: &str,
        severity: Severity,
        by: &str,
        now: f64,
    ) -> Alert {
        let mut inner = self.lock();
        let (id, sends) = inner.engine.page(service, message, severity, by, now);
        let alert = inner.engine.alert(id).cloned();
        self.commit(inner, sends, now);
        alert.expect("the engine keeps the alert it just opened")
    }
}
