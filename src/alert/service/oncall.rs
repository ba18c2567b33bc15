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
use crate::store::StoreError;
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
    pub fn add_override(&self, mut row: OverrideRow) -> Result<OverrideRow, OverrideError> {
        let mut inner = self.lock();
        let mut check = inner.engine.directory().clone();
        check
            .add_override(&row.schedule, stored(&row))
            .map_err(OverrideError::Invalid)?;
        row.id = self.store.add_override(&row)?;
        *inner.engine.directory_mut() = check;
        Ok(row)
    }

    /// Removes a stored override (those of the probe files are removed by editing the files);
    /// false when there is none with that id.
    pub fn remove_override(&self, id: i64) -> Result<bool, StoreError> {
        if !self.store.delete_override(id)? {
            return Ok(false);
        }
        let file = self.lock().file_directory.clone();
        let running = self.with_stored_overrides(file);
        *self.lock().engine.directory_mut() = running;
        Ok(true)
    }

    /// `directory` with the overrides kept in the store after its own.
    fn with_stored_overrides(&self, mut directory: Directory) -> Directory {
        for row in self.store.overrides().unwrap_or_default() {
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
