//! The alert engine: turns probe results and drift verdicts into alerts with a lifecycle
//! (`ok → pending → firing → acknowledged → resolved`, with `silenced` and `flapping` beside
//! the state) and decides who is paged when.
//!
//! [`Engine`] is a pure state machine: every call takes the time (unix seconds) and returns the
//! [`Send`]s to make; it does no I/O and reads no clock, so escalation over hours is tested in
//! microseconds. Persisting alerts before sending and the retries of sends live in the service
//! that drives it (`service.rs`).

pub mod dependencies;
pub mod escalation;
pub mod lifecycle;
pub mod manual;
mod origin;
pub mod service;
pub mod silence;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

pub use crate::detect::Severity;
pub use crate::notify::Event;
use crate::oncall::{Directory, Recipient, Route};
pub use escalation::{Next, Policy, Step};
use lifecycle::{Flap, Tracker};
pub use origin::Origin;
pub use silence::Silence;

/// Flapping thresholds, in percent state change (Nagios defaults).
const FLAP_HIGH: f64 = 50.0;
const FLAP_LOW: f64 = 25.0;
/// The timeline of an alert keeps at most this many entries.
const TIMELINE_MAX: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Firing,
    Acknowledged,
    Resolved,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Firing => "firing",
            State::Acknowledged => "acknowledged",
            State::Resolved => "resolved",
        }
    }
}

/// `alert:` of a probe, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub after: u32,
    pub recover_after: u32,
    pub policy: Option<String>,
    pub severity: Severity,
    pub runbook: Option<String>,
    pub summary: Option<String>,
}

/// What the engine knows of a probe.
#[derive(Debug, Clone)]
pub struct ProbeInfo {
    pub rule: Option<Rule>,
    /// The probe's labels plus `probe` and `kind`.
    pub labels: BTreeMap<String, String>,
    pub target: String,
    /// Probes whose failure holds this probe's new alerts (`depends_on:` and the canaries).
    pub parents: Vec<String>,
}

/// One alert: an incident for one (probe, reason).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Alert {
    pub id: u64,
    pub dedup_key: String,
    pub probe: String,
    pub origin: Origin,
    /// The reason label: derived from `origin`, or the failure's reason for a run alert.
    pub reason: String,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    /// The latest failure message or detector explanation.
    pub message: String,
    pub runbook: Option<String>,
    pub target: String,
    pub state: State,
    /// When the failures (or the drift) began.
    pub started_at: f64,
    pub firing_at: f64,
    pub acked_at: Option<f64>,
    pub acked_by: Option<String>,
    pub resolved_at: Option<f64>,
    pub resolved_by: Option<String>,
    /// Failures seen while firing (they bump this, they do not page again).
    pub failures: u64,
    /// The policy as it was when the alert fired.
    pub policy: Option<Policy>,
    /// Incremented each time escalation restarts from step 1 (ack timeout, end of flapping).
    pub epoch: u32,
    pub escalation_start: Option<f64>,
    pub next: Option<Next>,
    /// Notifiers that have been told of this alert.
    pub paged: BTreeSet<String>,
    /// People that have been paged, each through one contact (resolved when the step fired).
    #[serde(default)]
    pub recipients: BTreeSet<Recipient>,
    /// Parents that were failing when this alert opened: it is shown but pages nobody until
    /// they all recover (and then only if it still fires).
    #[serde(default)]
    pub held_by: Vec<String>,
    pub silenced: bool,
    pub flapping: bool,
    pub eta_seconds: Option<f64>,
    pub timeline: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub t: f64,
    pub what: String,
}

/// A notification the engine wants sent. `key()` identifies it uniquely, so that after a
/// crash nothing already sent is sent again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Send {
    pub alert_id: u64,
    pub notifier: String,
    /// The person paged through `notifier`, when the step named a person or a schedule.
    pub recipient: Option<Recipient>,
    pub event: Event,
    pub epoch: u32,
    pub round: u32,
    pub step: usize,
}

impl Send {
    pub fn key(&self) -> String {
        let to = match &self.recipient {
            Some(r) => format!("{}>{}", self.notifier, r.person),
            None => self.notifier.clone(),
        };
        format!(
            "{}/{}/{}/{}/{}/{}",
            self.alert_id,
            to,
            self.event.as_str(),
            self.epoch,
            self.round,
            self.step
        )
    }
}

/// Why an ack or a manual resolve was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("no alert {0}")]
    NotFound(u64),
    #[error("alert {id} is already acknowledged by {by}")]
    AlreadyAcknowledged { id: u64, by: String },
    #[error("alert {0} is resolved")]
    Resolved(u64),
}

/// The alert state machine.
#[derive(Debug, Default)]
pub struct Engine {
    alerts: BTreeMap<u64, Alert>,
    active: HashMap<String, u64>,
    trackers: HashMap<String, Tracker>,
    probes: HashMap<String, ProbeInfo>,
    policies: HashMap<String, Policy>,
    silences: Vec<Silence>,
    next_id: u64,
    changed: BTreeSet<u64>,
    /// People and schedules that `person:`/`schedule:` steps resolve against.
    directory: Directory,
    routes: Vec<Route>,
    /// Steps that met a schedule with nobody on call, by schedule.
    gaps: BTreeMap<String, u64>,
    /// Probes whose latest run failed.
    down: std::collections::HashSet<String>,
}

impl Engine {
    pub fn new() -> Self {
        Engine {
            next_id: 1,
            ..Default::default()
        }
    }

    /// Restores alerts from the store (after a restart).
    pub fn restore(&mut self, alerts: Vec<Alert>) {
        for alert in alerts {
            self.next_id = self.next_id.max(alert.id + 1);
            if alert.state != State::Resolved {
                self.active.insert(alert.dedup_key.clone(), alert.id);
            }
            self.alerts.insert(alert.id, alert);
        }
    }

    /// Sets what the engine knows of probes, policies and silences (on start and reload).
    /// Alerts in flight keep the policy they fired with.
    pub fn configure(
        &mut self,
        probes: HashMap<String, ProbeInfo>,
        policies: HashMap<String, Policy>,
        silences: Vec<Silence>,
    ) {
        self.trackers.retain(|name, _| probes.contains_key(name));
        self.probes = probes;
        self.policies = policies;
        self.silences = silences;
    }

    /// Sets the people, schedules and routes (on start and reload). Alerts in flight keep
    /// their policy; its `person:`/`schedule:` steps resolve against the new ones when due.
    pub fn set_oncall(&mut self, directory: Directory, routes: Vec<Route>) {
        self.directory = directory;
        self.routes = routes;
    }

    /// The people and schedules steps resolve against.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// The same, to add overrides to.
    pub fn directory_mut(&mut self) -> &mut Directory {
        &mut self.directory
    }

    /// Steps that met a gap in a schedule, by schedule, since the daemon started.
    pub fn gaps(&self) -> &BTreeMap<String, u64> {
        &self.gaps
    }

    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    pub fn add_silence(&mut self, silence: Silence, now: f64) -> Vec<Send> {
        self.silences.retain(|s| s.id != silence.id);
        self.silences.push(silence);
        self.tick(now)
    }

    pub fn remove_silence(&mut self, id: &str, now: f64) -> (bool, Vec<Send>) {
        let before = self.silences.len();
        self.silences.retain(|s| s.id != id);
        let removed = self.silences.len() != before;
        (removed, self.tick(now))
    }

    pub fn alert(&self, id: u64) -> Option<&Alert> {
        self.alerts.get(&id)
    }

    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.alerts.values()
    }

    /// Ids of alerts changed since the last call, for the store.
    pub fn take_changed(&mut self) -> Vec<u64> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Forgets resolved alerts beyond the newest `keep` (they stay in the store).
    pub fn prune(&mut self, keep: usize) {
        let resolved: Vec<u64> = self
            .alerts
            .values()
            .filter(|a| a.state == State::Resolved)
            .map(|a| a.id)
            .collect();
        if resolved.len() > keep {
            for id in &resolved[..resolved.len() - keep] {
                self.alerts.remove(id);
            }
        }
    }

    /// One probe result: `failure` is `(reason, message)` when the run failed.
    pub fn observe(&mut self, probe: &str, failure: Option<(&str, &str)>, now: f64) -> Vec<Send> {
        let recovered = self.track(probe, failure.is_some());
        let mut sends = self.observe_rule(probe, failure, now);
        // After the rule: a parent whose alert just resolved releases its children now.
        if recovered {
            sends.extend(self.release_held(now));
        }
        sends
    }

    fn observe_rule(&mut self, probe: &str, failure: Option<(&str, &str)>, now: f64) -> Vec<Send> {
        let Some(rule) = self.probes.get(probe).and_then(|p| p.rule.clone()) else {
            return Vec::new();
        };
        let tracker = self
            .trackers
            .entry(probe.to_string())
            .or_insert_with(|| Tracker::new(FLAP_HIGH, FLAP_LOW));
        let flap = tracker.record(failure.is_some(), now);
        let flapping = tracker.flapping;
        let (failures, successes) = (tracker.failures, tracker.successes);
        let failing_since = tracker.failing_since.unwrap_or(now);
        let current = self.probe_alert(probe);
        let mut sends = Vec::new();

        if flapping {
            let id = match current {
                Some(id) => id,
                None => {
                    let (reason, message) =
                        failure.unwrap_or(("flapping", "result keeps changing"));
                    self.open(
                        probe,
                        Origin::Run,
                        &BTreeMap::new(),
                        reason,
                        message,
                        rule.severity,
                        now,
                        failing_since,
                        None,
                    )
                }
            };
            if let Some(alert) = self.alerts.get_mut(&id) {
                if failure.is_some() {
                    alert.failures += 1;
                }
                if !alert.flapping {
                    alert.flapping = true;
                    alert.next = None;
                    note(
                        alert,
                        now,
                        "flapping: results keep changing; pages paused until stable".into(),
                    );
                    if alert.paged.is_empty() && alert.recipients.is_empty() {
                        let first = first_step(alert);
                        let resolved = self.directory.resolve(&first, now);
                        alert.paged.extend(resolved.notifiers);
                        alert.recipients.extend(resolved.recipients);
                    }
                    sends.extend(audience(alert, Event::Flapping));
                }
                self.changed.insert(id);
            }
            return sends;
        }

        if flap == Flap::Stopped
            && let Some(id) = current
        {
            if let Some(alert) = self.alerts.get_mut(&id) {
                alert.flapping = false;
                note(alert, now, "stable again after flapping".into());
            }
            if failure.is_some() {
                self.restart_escalation(
                    id,
                    now,
                    "still failing after flapping: paging from step 1",
                );
                sends.extend(self.run_due(id, now));
            } else {
                sends.extend(self.close(id, now, "recovered after flapping", None));
            }
            return sends;
        }

        match (failure, current) {
            (Some((_, message)), Some(id)) => {
                if let Some(alert) = self.alerts.get_mut(&id) {
                    alert.failures += 1;
                    alert.message = message.to_string();
                    self.changed.insert(id);
                }
            }
            (Some((reason, message)), None) if failures >= rule.after => {
                let id = self.open(
                    probe,
                    Origin::Run,
                    &BTreeMap::new(),
                    reason,
                    message,
                    rule.severity,
                    now,
                    failing_since,
                    None,
                );
                sends.extend(self.run_due(id, now));
            }
            (None, Some(id)) if successes >= rule.recover_after => {
                sends.extend(self.close(
                    id,
                    now,
                    &format!("recovered: {successes} successful runs"),
                    None,
                ));
            }
            _ => {}
        }
        sends
    }

    /// A detector's verdict (trend, change or burn rate): `origin` says which.
    #[allow(clippy::too_many_arguments)]
    pub fn verdict(
        &mut self,
        probe: &str,
        origin: Origin,
        severity: Severity,
        firing: bool,
        message: &str,
        began_at: Option<f64>,
        eta_seconds: Option<f64>,
        now: f64,
    ) -> Vec<Send> {
        if !self.probes.contains_key(probe) {
            return Vec::new();
        }
        let Some(reason) = origin.detector_reason() else {
            // Run alerts come from `observe`, never from a verdict.
            return Vec::new();
        };
        let key = dedup_key(probe, &reason);
        match (firing, self.active.get(&key).copied()) {
            (true, Some(id)) => {
                if let Some(alert) = self.alerts.get_mut(&id) {
                    alert.message = message.to_string();
                    alert.eta_seconds = eta_seconds;
                    alert.failures += 1;
                    self.changed.insert(id);
                }
                Vec::new()
            }
            (true, None) => {
                let id = self.open(
                    probe,
                    origin,
                    &BTreeMap::new(),
                    &reason,
                    message,
                    severity,
                    now,
                    began_at.unwrap_or(now),
                    eta_seconds,
                );
                self.run_due(id, now)
            }
            (false, Some(id)) => self.close(id, now, message, None),
            (false, None) => Vec::new(),
        }
    }

    /// Advances time: due escalation steps, expired acknowledgements, silences that began or
    /// ended.
    pub fn tick(&mut self, now: f64) -> Vec<Send> {
        let ids: Vec<u64> = self.active.values().copied().collect();
        let mut sends = self.release_held(now);
        for id in ids {
            let silenced = self
                .alerts
                .get(&id)
                .is_some_and(|a| self.is_silenced(&a.labels, now));
            let mut expired_ack = false;
            let mut unsilenced = false;
            if let Some(alert) = self.alerts.get_mut(&id) {
                if alert.silenced != silenced {
                    alert.silenced = silenced;
                    unsilenced = !silenced && alert.state == State::Firing;
                    if silenced {
                        note(
                            alert,
                            now,
                            "silenced: pages held while the silence lasts".into(),
                        );
                    }
                    self.changed.insert(id);
                }
                if alert.state == State::Acknowledged
                    && let (Some(acked_at), Some(timeout)) = (
                        alert.acked_at,
                        alert.policy.as_ref().and_then(|p| p.ack_timeout),
                    )
                {
                    expired_ack = now >= acked_at + timeout;
                }
            }
            if unsilenced {
                // Steps held by the silence are not replayed one by one: paging restarts.
                self.restart_escalation(
                    id,
                    now,
                    "silence ended while still firing: paging from step 1",
                );
            }
            if expired_ack {
                if let Some(alert) = self.alerts.get_mut(&id) {
                    alert.state = State::Firing;
                    alert.acked_at = None;
                    alert.acked_by = None;
                }
                self.restart_escalation(
                    id,
                    now,
                    "acknowledgement expired: paging again from step 1",
                );
            }
            sends.extend(self.run_due(id, now));
        }
        sends
    }

    /// When the engine next has something to do on its own, if anything.
    pub fn next_due(&self) -> Option<f64> {
        self.active
            .values()
            .filter_map(|id| self.alerts.get(id))
            .filter_map(|a| match a.state {
                State::Firing if !a.flapping => a.next.map(|n| n.due),
                State::Acknowledged => Some(a.acked_at? + a.policy.as_ref()?.ack_timeout?),
                _ => None,
            })
            .fold(None, |min: Option<f64>, t| {
                Some(min.map_or(t, |m| m.min(t)))
            })
    }

    /// Acknowledges an alert: escalation stops and everyone already paged is told who acked.
    pub fn ack(&mut self, id: u64, by: &str, now: f64) -> Result<Vec<Send>, Refusal> {
        let alert = self.alerts.get_mut(&id).ok_or(Refusal::NotFound(id))?;
        match alert.state {
            State::Resolved => return Err(Refusal::Resolved(id)),
            State::Acknowledged => {
                return Err(Refusal::AlreadyAcknowledged {
                    id,
                    by: alert.acked_by.clone().unwrap_or_default(),
                });
            }
            State::Firing => {}
        }
        alert.state = State::Acknowledged;
        alert.acked_at = Some(now);
        alert.acked_by = Some(by.to_string());
        alert.next = None;
        note(alert, now, format!("acknowledged by {by}"));
        let sends = audience(alert, Event::Acknowledge);
        self.changed.insert(id);
        Ok(sends)
    }

    /// Resolves an alert by hand.
    pub fn resolve(&mut self, id: u64, by: &str, now: f64) -> Result<Vec<Send>, Refusal> {
        let alert = self.alerts.get(&id).ok_or(Refusal::NotFound(id))?;
        if alert.state == State::Resolved {
            return Err(Refusal::Resolved(id));
        }
        Ok(self.close(id, now, &format!("resolved by {by}"), Some(by)))
    }

    /// The probe's active run alert, if any (detector alerts of the same probe are not it).
    fn probe_alert(&self, probe: &str) -> Option<u64> {
        self.active.values().copied().find(|id| {
            self.alerts
                .get(id)
                .is_some_and(|a| a.probe == probe && a.origin == Origin::Run)
        })
    }

    #[allow(clippy::too_many_arguments)]
    fn open(
        &mut self,
        probe: &str,
        origin: Origin,
        extra: &BTreeMap<String, String>,
        reason: &str,
        message: &str,
        severity: Severity,
        now: f64,
        started_at: f64,
        eta_seconds: Option<f64>,
    ) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let info = self.probes.get(probe);
        let rule = info.and_then(|i| i.rule.as_ref());
        let mut labels = info.map(|i| i.labels.clone()).unwrap_or_default();
        labels.insert("probe".into(), probe.to_string());
        labels.insert("reason".into(), reason.to_string());
        labels.insert("severity".into(), severity.as_str().to_string());
        labels.extend(extra.clone());
        // A probe's own policy wins; else the routes decide.
        let mut policy = match rule.and_then(|r| r.policy.as_ref()) {
            Some(name) => self.policies.get(name).cloned(),
            None => Policy::merge(
                crate::oncall::routes::policies(&self.routes, &labels)
                    .into_iter()
                    .filter_map(|name| self.policies.get(name))
                    .collect(),
            ),
        };
        if severity == Severity::Ticket
            && let Some(policy) = &mut policy
        {
            // A ticket is filed with the first step and never escalates or repeats.
            policy.steps.truncate(1);
            policy.repeat = 0;
        }
        let summary = match rule.and_then(|r| r.summary.as_ref()) {
            Some(summary) => format!("{probe}: {summary}"),
            None => format!("{probe}: {message}"),
        };
        let mut alert = Alert {
            id,
            dedup_key: dedup_key(probe, reason),
            probe: probe.to_string(),
            origin,
            reason: reason.to_string(),
            severity,
            silenced: self.is_silenced(&labels, now),
            labels,
            summary,
            message: message.to_string(),
            runbook: rule.and_then(|r| r.runbook.clone()),
            target: info.map(|i| i.target.clone()).unwrap_or_default(),
            state: State::Firing,
            started_at,
            firing_at: now,
            acked_at: None,
            acked_by: None,
            resolved_at: None,
            resolved_by: None,
            failures: 1,
            next: policy.as_ref().and_then(|p| p.first(now)),
            escalation_start: Some(now),
            policy,
            epoch: 0,
            paged: BTreeSet::new(),
            recipients: BTreeSet::new(),
            held_by: self.failing_parents(probe),
            flapping: false,
            eta_seconds,
            timeline: Vec::new(),
        };
        if started_at < now {
            note(&mut alert, started_at, format!("first failure: {message}"));
        }
        note(&mut alert, now, format!("firing: {message}"));
        if alert.silenced {
            note(
                &mut alert,
                now,
                "silenced: not paging while the silence lasts".into(),
            );
        }
        if !alert.held_by.is_empty() {
            let parents = alert.held_by.join(", ");
            note(
                &mut alert,
                now,
                format!("held: {parents} failing; not paging until it recovers"),
            );
        }
        self.active.insert(alert.dedup_key.clone(), id);
        self.alerts.insert(id, alert);
        self.changed.insert(id);
        id
    }

    fn close(&mut self, id: u64, now: f64, why: &str, by: Option<&str>) -> Vec<Send> {
        let Some(alert) = self.alerts.get_mut(&id) else {
            return Vec::new();
        };
        alert.state = State::Resolved;
        alert.resolved_at = Some(now);
        alert.resolved_by = by.map(str::to_string);
        alert.next = None;
        note(alert, now, why.to_string());
        self.active.remove(&alert.dedup_key);
        self.changed.insert(id);
        audience(alert, Event::Resolve)
    }

    fn restart_escalation(&mut self, id: u64, now: f64, why: &str) {
        if let Some(alert) = self.alerts.get_mut(&id) {
            alert.epoch += 1;
            alert.escalation_start = Some(now);
            alert.next = alert.policy.as_ref().and_then(|p| p.first(now));
            note(alert, now, why.to_string());
            self.changed.insert(id);
        }
    }

    /// Sends every step that is due, unless the alert is silenced, flapping or not firing.
    fn run_due(&mut self, id: u64, now: f64) -> Vec<Send> {
        let Some(alert) = self.alerts.get_mut(&id) else {
            return Vec::new();
        };
        let mut sends = Vec::new();
        if alert.state != State::Firing
            || alert.flapping
            || alert.silenced
            || !alert.held_by.is_empty()
        {
            return sends;
        }
        let (Some(policy), Some(start)) = (alert.policy.clone(), alert.escalation_start) else {
            return sends;
        };
        while let Some(next) = alert.next.filter(|n| n.due <= now) {
            // Targets resolve now, when the step fires: who is on call at open is irrelevant.
            let resolved = self.directory.resolve(&policy.steps[next.step].notify, now);
            let round = if next.round > 0 {
                format!(" (repeat {})", next.round)
            } else {
                String::new()
            };
            let who = resolved.describe();
            note(
                alert,
                now,
                format!("step {}{round}: paged {who}", next.step + 1),
            );
            for gap in &resolved.gaps {
                *self.gaps.entry(gap.clone()).or_default() += 1;
            }
            let step = |notifier: String, recipient: Option<Recipient>| Send {
                alert_id: id,
                notifier,
                recipient,
                event: Event::Trigger,
                epoch: alert.epoch,
                round: next.round,
                step: next.step,
            };
            let mut paged = Vec::new();
            for notifier in &resolved.notifiers {
                paged.push(step(notifier.clone(), None));
            }
            for r in &resolved.recipients {
                paged.push(step(r.notifier.clone(), Some(r.clone())));
            }
            alert.paged.extend(resolved.notifiers.iter().cloned());
            alert.recipients.extend(resolved.recipients.iter().cloned());
            sends.extend(paged);
            alert.next = policy.after(next, start);
            // A step that met only gaps pages nobody: the next step of the round comes now.
            if resolved.is_empty()
                && !resolved.gaps.is_empty()
                && let Some(following) = alert.next.as_mut().filter(|n| n.round == next.round)
            {
                following.due = following.due.min(now);
            }
            self.changed.insert(id);
        }
        sends
    }

    fn is_silenced(&self, labels: &BTreeMap<String, String>, now: f64) -> bool {
        self.silences
            .iter()
            .any(|s| s.active(now) && s.matches(labels))
    }
}

/// The stable dedup key of (probe, reason).
pub fn dedup_key(probe: &str, reason: &str) -> String {
    format!("{probe}:{reason}")
}

fn first_step(alert: &Alert) -> Vec<crate::oncall::Target> {
    alert
        .policy
        .as_ref()
        .and_then(|p| p.steps.first())
        .map(|s| s.notify.clone())
        .unwrap_or_default()
}

/// `event` for every notifier and person already told of `alert`.
fn audience(alert: &Alert, event: Event) -> Vec<Send> {
    let mut sends: Vec<Send> = alert
        .paged
        .iter()
        .map(|n| send(alert, n.clone(), None, event))
        .collect();
    sends.extend(
        alert
            .recipients
            .iter()
            .map(|r| send(alert, r.notifier.clone(), Some(r.clone()), event)),
    );
    sends
}

fn send(alert: &Alert, notifier: String, recipient: Option<Recipient>, event: Event) -> Send {
    Send {
        alert_id: alert.id,
        notifier,
        recipient,
        event,
        epoch: alert.epoch,
        round: 0,
        step: 0,
    }
}

pub(crate) fn note(alert: &mut Alert, t: f64, what: String) {
    if alert.timeline.len() >= TIMELINE_MAX {
        alert.timeline.remove(1);
    }
    alert.timeline.push(Entry { t, what });
}
