//! A replica's part in the cluster, for `app.rs` to spawn: heartbeat the membership row,
//! learn the live members (which decide the probes this replica runs, [`Shard`]), hand the
//! alert engine's decisions to the shared database, and claim, fence, send and complete the
//! escalation steps that are due.
//!
//! While PostgreSQL is unreachable nothing is claimed, so nothing is sent twice; probes keep
//! running (a replica that lost its members runs every probe of its location: fail open), and
//! once the database has been gone for [`LOST_AFTER`] membership timeouts `/healthz` says
//! `degraded: coordination lost` and the replica logs it once, as Alertmanager fails open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::pg::{Claim, Coordinator, PlannedStep};
use super::rendezvous;
use crate::alert::service::{AlertService, Decision};
use crate::alert::{Alert, Send};
use crate::notify::Event;

/// Membership timeouts of silence from the database before coordination counts as lost.
pub const LOST_AFTER: u32 = 3;

/// Which probes this replica runs: the live members it last learned, and each probe's
/// locations. Read by the scheduler at every tick.
#[derive(Debug, Default)]
pub struct Shard {
    replica: String,
    location: String,
    members: RwLock<Option<Vec<(String, String)>>>,
    placements: RwLock<HashMap<String, Option<Vec<String>>>>,
}

impl Shard {
    pub fn new(me: &super::Identity) -> Shard {
        Shard {
            replica: me.replica.clone(),
            location: me.location.clone(),
            ..Default::default()
        }
    }

    /// Sets each probe's `locations:` (none: the probe runs once in the whole cluster).
    pub fn set_placements(&self, placements: HashMap<String, Option<Vec<String>>>) {
        *self.placements.write().unwrap_or_else(|e| e.into_inner()) = placements;
    }

    /// Sets the live members, `(replica, location)`; `None` when they are unknown.
    pub fn set_members(&self, members: Option<Vec<(String, String)>>) {
        *self.members.write().unwrap_or_else(|e| e.into_inner()) = members;
    }

    /// How many of the configured probes this replica runs now.
    pub fn owned(&self) -> usize {
        let probes: Vec<String> = self
            .placements
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        probes.iter().filter(|p| self.runs(p)).count()
    }

    /// Whether this replica runs `probe` now. Unknown membership runs it (fail open: a
    /// duplicate run collapses on its slot, a missed one pages nobody).
    pub fn runs(&self, probe: &str) -> bool {
        let placements = self.placements.read().unwrap_or_else(|e| e.into_inner());
        let locations = placements.get(probe).cloned().flatten();
        drop(placements);
        if let Some(locations) = &locations
            && !locations.contains(&self.location)
        {
            return false;
        }
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        let Some(members) = members.as_ref() else {
            return true;
        };
        let candidates: Vec<String> = members
            .iter()
            .filter(|(_, l)| locations.is_none() || *l == self.location)
            .map(|(r, _)| r.clone())
            .collect();
        if !candidates.contains(&self.replica) {
            return true; // Not yet seen by the others: run rather than leave a gap.
        }
        rendezvous::owns(probe, &self.replica, &candidates)
    }
}

/// Whether coordination is lost, for `/healthz`.
#[derive(Debug, Default)]
pub struct Status(Mutex<Option<String>>);

impl Status {
    pub fn lost(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Connects this replica to the shared database (creating or upgrading its schema) and
/// returns the shard the scheduler consults and the cluster loop, for `app.rs` to spawn.
/// From then on the alert service hands its decisions to that loop.
pub async fn join(
    postgres: &super::Postgres,
    me: super::Identity,
    listen: String,
    alerts: Arc<AlertService>,
    metrics: Arc<crate::metrics::DaemonMetrics>,
    stop: watch::Receiver<bool>,
) -> Result<(Arc<Shard>, impl Future<Output = ()> + use<>), super::pg::PgError> {
    let shard = Arc::new(Shard::new(&me));
    let coordinator =
        Arc::new(Coordinator::connect(postgres.clone(), me, postgres.timeouts).await?);
    tracing::info!(replica = %coordinator.me.replica, location = %coordinator.me.location, postgres = %coordinator.target(), "joined the cluster");
    let (tx, decisions) = mpsc::unbounded_channel();
    alerts.share_decisions(tx);
    let task = run(
        coordinator,
        shard.clone(),
        metrics,
        alerts,
        decisions,
        listen,
        stop,
    );
    Ok((shard, task))
}

/// The replica's cluster loop; ends when `stop` turns true (after leaving the membership).
pub async fn run(
    coordinator: Arc<Coordinator>,
    shard: Arc<Shard>,
    metrics: Arc<crate::metrics::DaemonMetrics>,
    alerts: Arc<AlertService>,
    mut decisions: mpsc::UnboundedReceiver<Decision>,
    listen: String,
    mut stop: watch::Receiver<bool>,
) {
    let beat = (coordinator.timeouts.membership / 4).max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(beat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut backlog: Vec<Decision> = Vec::new();
    // The schedule lag histogram's count and sum at the previous heartbeat: the lag each
    // heartbeat reports is the mean over the runs started since.
    let (mut runs, mut lag_sum) = (0u64, 0.0f64);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(decision) = decisions.recv() => backlog.push(decision),
            _ = stop.changed() => break,
        }
        while let Ok(decision) = decisions.try_recv() {
            backlog.push(decision);
        }
        let (_, count, sum) = metrics.schedule_lag.read();
        let lag = if count > runs {
            (sum - lag_sum) / (count - runs) as f64
        } else {
            0.0
        };
        (runs, lag_sum) = (count, sum);
        let owned = i32::try_from(shard.owned()).unwrap_or(i32::MAX);
        match coordinator.heartbeat(&listen, owned, lag).await {
            Ok(()) => {}
            Err(e) => tracing::debug!(error = %e, "heartbeat failed"),
        }
        match coordinator.members().await {
            Ok(members) => shard.set_members(Some(
                members
                    .into_iter()
                    .filter(|m| m.live)
                    .map(|m| (m.replica, m.location))
                    .collect(),
            )),
            Err(_) => shard.set_members(None),
        }
        // Decisions are applied in order; one that fails waits for the database.
        let mut applied = 0;
        for decision in &backlog {
            if let Err(e) = apply(&coordinator, decision).await {
                tracing::warn!(error = %e, "cannot hand an alert to the shared database yet");
                break;
            }
            applied += 1;
        }
        backlog.drain(..applied);
        if let Ok(claims) = coordinator.claim(32).await {
            for claim in claims {
                deliver(&coordinator, &alerts, claim).await;
            }
        }
        watch_coordination(&coordinator, &metrics.coordination);
    }
    let _ = coordinator.leave().await;
}

/// Marks coordination lost once the database has been unreachable long enough, once.
fn watch_coordination(coordinator: &Coordinator, status: &Status) {
    let bound = coordinator.timeouts.membership.as_secs_f64() * f64::from(LOST_AFTER);
    let now = crate::alert::service::unix_now();
    let lost = coordinator
        .lost()
        .filter(|(since, _)| now - since >= bound)
        .map(|(since, error)| {
            format!(
                "coordination lost: {} unreachable for {:.0}s ({error}); no escalation step is claimed until it is back",
                coordinator.target(),
                now - since
            )
        });
    let mut current = status.0.lock().unwrap_or_else(|e| e.into_inner());
    match (&*current, &lost) {
        (None, Some(message)) => tracing::error!(replica = %coordinator.me.replica, "{message}"),
        (Some(_), None) => tracing::info!("coordination restored"),
        _ => {}
    }
    *current = lost;
}

/// Hands one engine decision to the database: a fired alert is opened (one replica wins and
/// plans its steps), an ack stops its triggers, a resolve cancels them; acknowledge, resolve
/// and flapping notices are planned for the notifiers paged.
async fn apply(coordinator: &Coordinator, decision: &Decision) -> Result<(), super::pg::PgError> {
    let (alert, sends) = (&decision.alert, &decision.sends);
    let body = serde_json::to_string(alert).unwrap_or_default();
    let first = |s: &Send| s.event == Event::Trigger && s.round == 0 && s.step == 0;
    if sends.iter().any(first) {
        let opened = coordinator
            .open(&alert.dedup_key, &body, &plan(alert))
            .await?;
        if !opened.won && alert.epoch > 0 {
            // An ack timed out (or flapping ended): the escalation starts again.
            coordinator.refire(&alert.dedup_key).await?;
            coordinator
                .plan(opened.id, &alert.dedup_key, &plan(alert))
                .await?;
        }
    }
    for event in [Event::Acknowledge, Event::Resolve, Event::Flapping] {
        if !sends.iter().any(|s| s.event == event) {
            continue;
        }
        let id = match event {
            Event::Acknowledge => {
                let by = alert.acked_by.as_deref().unwrap_or("someone");
                coordinator.ack(&alert.dedup_key, by).await?
            }
            Event::Resolve => coordinator.resolve(&alert.dedup_key).await?,
            _ => None,
        };
        let id = match id {
            Some(id) => id,
            None => match coordinator.open_id(&alert.dedup_key).await? {
                Some(id) => id,
                None => continue, // Already resolved elsewhere, and told by that replica.
            },
        };
        let steps: Vec<PlannedStep> = coordinator
            .paged(id)
            .await?
            .into_iter()
            .map(|notifier| PlannedStep {
                event: event.as_str().to_string(),
                epoch: alert.epoch,
                round: 0,
                step: 0,
                notifier,
                after: 0.0,
            })
            .collect();
        coordinator.plan(id, &alert.dedup_key, &steps).await?;
    }
    Ok(())
}

/// Every trigger step of the alert's policy, over its rounds, from the alert's opening.
pub fn plan(alert: &Alert) -> Vec<PlannedStep> {
    let Some(policy) = &alert.policy else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for round in 0..=policy.repeat {
        for (i, step) in policy.steps.iter().enumerate() {
            for notifier in &step.notify {
                steps.push(PlannedStep {
                    event: Event::Trigger.as_str().to_string(),
                    epoch: alert.epoch,
                    round,
                    step: i as u32,
                    notifier: notifier.clone(),
                    after: f64::from(round) * policy.cycle() + step.after,
                });
            }
        }
    }
    steps
}

/// Sends one claimed step: the fence is checked right before the send and the completion
/// carries it, so a late claimer neither sends nor overwrites.
async fn deliver(coordinator: &Coordinator, alerts: &AlertService, claim: Claim) {
    let Ok(mut alert) = serde_json::from_str::<Alert>(&claim.body) else {
        let _ = coordinator
            .complete(&claim, false, Some("unreadable alert"))
            .await;
        return;
    };
    let event = Event::parse(&claim.event).unwrap_or(Event::Trigger);
    let Some(notifier) = alerts.notifier(&claim.notifier) else {
        let _ = coordinator
            .complete(&claim, false, Some("no such notifier on this replica"))
            .await;
        return;
    };
    match coordinator.begin_send(&claim).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(key = %claim.idempotency_key, "step fenced off (lease lost, or the alert was acknowledged): not sent");
            return;
        }
        Err(_) => return, // The database is gone: send nothing we cannot record.
    }
    if claim.resend {
        tracing::warn!(key = %claim.idempotency_key, "re-sending a step whose claimer died mid-send (same idempotency key)");
    }
    alert.id = claim.alert_id as u64;
    // The alert's dedup key (PagerDuty's `dedup_key`) is the same on a re-send.
    let notification = alerts.notification(&alert, event, claim.step as usize);
    let retry = alerts.retry();
    let result = notifier.send(&notification, retry.timeout).await;
    let (sent, error) = match &result {
        Ok(()) => (true, None),
        Err(e) => (false, Some(e.message.as_str())),
    };
    alerts
        .deliveries
        .add(&claim.notifier, if sent { "sent" } else { "failed" });
    match coordinator.complete(&claim, sent, error).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(key = %claim.idempotency_key, "completion fenced off: another replica took the step over")
        }
        Err(e) => tracing::warn!(error = %e, "cannot record a sent step"),
    }
}
