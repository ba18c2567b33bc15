//! Dependencies between probes (`depends_on:` and the daemon's canaries): while a parent
//! fails, a child's new alerts are held (shown, paging nobody); children still resolve as
//! usual; when every parent has recovered, held alerts that still fire page from step 1. One
//! page per root cause. Part of the pure engine: time is passed in.

use super::{Engine, Origin, Send, State, note};

impl Engine {
    /// Records whether `probe`'s latest run failed; true when it just recovered.
    pub(super) fn track(&mut self, probe: &str, failed: bool) -> bool {
        if failed {
            if !self.down.contains(probe) {
                self.down.insert(probe.to_string());
            }
            false
        } else {
            self.down.remove(probe)
        }
    }

    /// Whether `probe` counts as failing for its children: its latest run failed, or its run
    /// alert is still open (a parent is up again only once its own alert resolved).
    fn failing(&self, probe: &str) -> bool {
        self.down.contains(probe)
            || self.active.values().any(|id| {
                self.alerts
                    .get(id)
                    .is_some_and(|a| a.probe == probe && a.origin == Origin::Run)
            })
    }

    /// The parents of `probe` that are failing now.
    pub(super) fn failing_parents(&self, probe: &str) -> Vec<String> {
        let Some(info) = self.probes.get(probe) else {
            return Vec::new();
        };
        info.parents
            .iter()
            .filter(|p| self.failing(p))
            .cloned()
            .collect()
    }

    /// Releases held alerts whose parents have all recovered: those still firing page now.
    pub(super) fn release_held(&mut self, now: f64) -> Vec<Send> {
        let held: Vec<u64> = self
            .active
            .values()
            .copied()
            .filter(|id| self.alerts.get(id).is_some_and(|a| !a.held_by.is_empty()))
            .collect();
        let mut sends = Vec::new();
        for id in held {
            let Some(alert) = self.alerts.get(&id) else {
                continue;
            };
            if alert.held_by.iter().any(|p| self.failing(p)) {
                continue;
            }
            let parents = alert.held_by.join(", ");
            if let Some(alert) = self.alerts.get_mut(&id) {
                alert.held_by.clear();
                alert.escalation_start = Some(now);
                alert.next = alert.policy.as_ref().and_then(|p| p.first(now));
                let still = if alert.state == State::Firing {
                    "still firing: paging from step 1"
                } else {
                    "released"
                };
                note(alert, now, format!("{parents} recovered; {still}"));
                self.changed.insert(id);
            }
            sends.extend(self.run_due(id, now));
        }
        sends
    }
}
