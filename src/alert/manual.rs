//! Incidents opened by hand (`slowburn page --service S "message"`, `POST /api/v1/incidents`)
//! for a report that came from people rather than from a probe: an alert labelled with its
//! `service` and `kind: manual`, routed by `routes:` like any other, resolved by hand.

use std::collections::BTreeMap;

use super::{Engine, Origin, Send, Severity, note};

impl Engine {
    /// Opens an incident for `service`; returns its id and the pages of its first step.
    pub fn page(
        &mut self,
        service: &str,
        message: &str,
        severity: Severity,
        by: &str,
        now: f64,
    ) -> (u64, Vec<Send>) {
        let origin = Origin::Manual {
            id: self.next_id.to_string(),
        };
        let reason = origin.detector_reason().unwrap_or_default();
        let extra = BTreeMap::from([
            ("service".to_string(), service.to_string()),
            ("kind".to_string(), "manual".to_string()),
        ]);
        let id = self.open(
            service, origin, &extra, &reason, message, severity, now, now, None,
        );
        if let Some(alert) = self.alerts.get_mut(&id) {
            note(alert, now, format!("opened by hand by {by}"));
            if alert.policy.is_none() {
                note(alert, now, "no route matches: nobody is paged".into());
            }
        }
        (id, self.run_due(id, now))
    }
}
