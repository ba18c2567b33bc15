//! A replica's part in the cluster, for `app.rs` to spawn: heartbeat the membership row,
//! learn the live members (which decide the probes this replica runs, [`Shard`]), hand the
//! alert engine's decisions to the shared database, and claim, fence, send and complete the
//! escalation steps that are due. Every beat it also reads the API silences and on-call
//! overrides any replica added ([`AlertService::refresh_shared`]), so each takes effect
//! everywhere within one beat (a quarter of the membership timeout).
//!
//! While PostgreSQL is unreachable nothing is claimed, so nothing is sent twice; probes keep
//! running (a replica that lost its members runs every probe of its location: fail open), and
//! once the database has been gone for [`LOST_AFTER`] membership timeouts `/healthz` says
//! `degraded: coordination lost` and the replica logs it once, as Alertmanager fails open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use super::pg::{Claim, Coordinator, PlannedStep};
use super::shard::Shard;
use crate::alert::service::{AlertService, Decision};
use crate::alert::{Alert, Send};
use crate::notify::Event;

/// Escalation steps one replica sends at once, and claims in one statement.
const IN_FLIGHT: usize = 256;
const CLAIM_BATCH: usize = 64;

/// Membership timeouts of silence from the database before coordination counts as lost.
pub const LOST_AFTER: u32 = 3;

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
) -> Result<
    (
        Arc<Shard>,
        Arc<Coordinator>,
        impl Future<Output = ()> + use<>,
    ),
    super::pg::PgError,
> {
    let shard = Arc::new(Shard::new(&me));
    let coordinator =
        Arc::new(Coordinator::connect(postgres.clone(), me, postgres.timeouts).await?);
    tracing::info!(replica = %coordinator.me.replica, location = %coordinator.me.location, postgres = %coordinator.target(), "joined the cluster");
    alerts
        .share_state(coordinator.clone())
        .await
        .map_err(|e| match e {
            crate::store::BackendError::Postgres(e) => e,
            other => coordinator.error(other.to_string()),
        })?;
    let (tx, decisions) = mpsc::unbounded_channel();
    alerts.share_decisions(tx);
    let task = run(
        coordinator.clone(),
        shard.clone(),
        metrics,
        alerts,
        decisions,
        listen,
        stop,
    );
    Ok((shard, coordinator, task))
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
    let mut opened: HashMap<u64, i64> = HashMap::new();
    let mut sending = tokio::task::JoinSet::new();
    let mut judged: HashMap<String, f64> = HashMap::new();
    let mut pruned = 0.0;
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
            match apply(&coordinator, decision).await {
                Ok(Some(shared)) => {
                    opened.insert(decision.alert.id, shared);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot hand an alert to the shared database yet");
                    break;
                }
            }
            applied += 1;
        }
        backlog.drain(..applied);
        if let Err(e) = alerts
            .refresh_shared(crate::alert::service::unix_now())
            .await
        {
            tracing::debug!(error = %e, "silences and overrides not refreshed: the last copy stays in effect");
        }
        if backlog.is_empty() {
            let _ = adopt(&coordinator, &shard, &alerts, &mut opened).await;
            let _ = follow(&coordinator, &alerts, &mut opened).await;
        }
        let runs = shard.take_runs();
        if let Err(e) = coordinator.record_results(&runs).await {
            tracing::debug!(error = %e, runs = runs.len(), "runs not stored: their locations count as no data");
        }
        let now = crate::alert::service::unix_now();
        if now - pruned >= 60.0 {
            pruned = now;
            let _ = coordinator.prune_results(KEEP_RESULTS).await;
        }
        judge(&coordinator, &shard, &alerts, &mut judged, now).await;
        // Claim as many due steps as there is room in flight for; each is sent on its own
        // task, so a slow notifier holds its lease, not this loop or the heartbeat.
        while sending.try_join_next().is_some() {}
        loop {
            let room = IN_FLIGHT.saturating_sub(sending.len()).min(CLAIM_BATCH);
            if room == 0 {
                break;
            }
            let Ok(claims) = coordinator.claim(room as i64).await else {
                break;
            };
            metrics
                .claims
                .fetch_add(claims.len() as u64, std::sync::atomic::Ordering::Relaxed);
            let full = claims.len() == room;
            for claim in claims {
                sending.spawn(deliver(coordinator.clone(), alerts.clone(), claim));
            }
            if !full {
                break;
            }
        }
        if let Some(change) = watch_coordination(&coordinator, &metrics.coordination) {
            notice(&alerts, &coordinator, change).await;
        }
    }
    // Sends in flight finish (or their leases run out for another replica to take over).
    let _ = tokio::time::timeout(alerts.retry().timeout, async {
        while sending.join_next().await.is_some() {}
    })
    .await;
    let _ = coordinator.leave().await;
}

/// How long run results stay in the shared database, in seconds.
const KEEP_RESULTS: f64 = 3600.0;

/// Judges each quorum probe this replica owns, once per probe interval, from the results
/// every location stored, and tells the engine: failing while the quorum holds.
async fn judge(
    coordinator: &Coordinator,
    shard: &Shard,
    alerts: &AlertService,
    judged: &mut HashMap<String, f64>,
    now: f64,
) {
    let mine = shard.judged_here();
    judged.retain(|name, _| mine.iter().any(|(n, _)| n == name));
    for (probe, place) in mine {
        let interval = place.interval.as_secs_f64();
        if judged.get(&probe).is_some_and(|t| now - t < interval) {
            continue;
        }
        let Ok(latest) = coordinator
            .latest_results(&probe, 2.0 * interval + 1.0)
            .await
        else {
            continue; // Without the database there is no quorum to judge: nothing changes.
        };
        judged.insert(probe.clone(), now);
        let verdict = shard.with_quorum(&probe, &place, |q| {
            for (location, ago, success) in &latest {
                q.record(location, !success, now - ago);
            }
            let open = q.evaluate(now);
            let failing: Vec<String> = q
                .results(now)
                .into_iter()
                .filter(|(_, r)| *r == super::quorum::LocationResult::Failing)
                .map(|(l, _)| l)
                .collect();
            (open, failing)
        });
        let Some((open, failing)) = verdict else {
            continue;
        };
        let message = format!(
            "{} of {} locations failing together ({})",
            failing.len(),
            place.locations.as_ref().map_or(0, Vec::len),
            failing.join(", ")
        );
        alerts.observe(&probe, open.then_some(("quorum", message.as_str())), now);
    }
}

/// Marks coordination lost once the database has been unreachable long enough, and clears
/// it when it is back. Returns the change, if any: `Some(Some(message))` lost, `Some(None)`
/// restored.
fn watch_coordination(coordinator: &Coordinator, status: &Status) -> Option<Option<String>> {
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
    let change = match (&*current, &lost) {
        (None, Some(message)) => {
            tracing::error!(replica = %coordinator.me.replica, "{message}");
            Some(lost.clone())
        }
        (Some(_), None) => {
            tracing::info!("coordination restored");
            Some(None)
        }
        _ => None,
    };
    *current = lost;
    change
}

/// The one local notice a replica sends when coordination is lost (and its resolve when it
/// is back), to every notifier it has: the database cannot record it, so it is this
/// replica's own, keyed by its name (fail open, as Alertmanager does).
async fn notice(alerts: &AlertService, coordinator: &Coordinator, change: Option<String>) {
    let replica = &coordinator.me.replica;
    let (event, summary) = match &change {
        Some(message) => (
            Event::Trigger,
            format!("slowburn replica {replica}: {message}"),
        ),
        None => (
            Event::Resolve,
            format!("slowburn replica {replica}: coordination restored"),
        ),
    };
    let now = std::time::SystemTime::now();
    let labels = [
        ("replica", replica.as_str()),
        ("location", coordinator.me.location.as_str()),
        ("reason", "coordination_lost"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let notification = crate::notify::Notification {
        event,
        dedup_key: format!("slowburn-coordination/{replica}"),
        alert_id: 0,
        probe: "slowburn".into(),
        reason: "coordination_lost".into(),
        severity: "page".into(),
        details: format!(
            "{summary}\nWhile the shared database is unreachable this replica claims no escalation step (so none is sent twice) and runs every probe of its location.\n"
        ),
        summary,
        labels,
        started_at: now,
        ended_at: change.is_none().then_some(now),
        acked_by: None,
        runbook: None,
        ack_hint: String::new(),
        step: 0,
        failures: 0,
        recipient: None,
        links: None,
    };
    let timeout = alerts.retry().timeout;
    for name in alerts.notifier_names() {
        if let Some(notifier) = alerts.notifier(&name)
            && let Err(e) = notifier.send(&notification, timeout).await
        {
            tracing::warn!(notifier = %name, error = %e, "cannot send the coordination notice");
        }
    }
}

/// Hands one engine decision to the database: a fired alert is opened (one replica wins and
/// plans its steps), an ack stops its triggers, a resolve cancels them; acknowledge, resolve
/// and flapping notices are planned for the notifiers paged.
///
/// Returns the shared id of an alert it opened (or found open), for [`follow`].
async fn apply(
    coordinator: &Coordinator,
    decision: &Decision,
) -> Result<Option<i64>, super::pg::PgError> {
    let (alert, sends) = (&decision.alert, &decision.sends);
    let body = serde_json::to_string(alert).unwrap_or_default();
    let first = |s: &Send| s.event == Event::Trigger && s.round == 0 && s.step == 0;
    let mut shared = None;
    if sends.iter().any(first) {
        let opened = coordinator
            .open(&alert.dedup_key, &body, &plan(alert))
            .await?;
        tracing::debug!(key = %alert.dedup_key, id = opened.id, won = opened.won, "alert opened in the shared database");
        if !opened.won && alert.epoch > 0 {
            // An ack timed out (or flapping ended): the escalation starts again.
            coordinator.refire(&alert.dedup_key).await?;
            coordinator
                .plan(opened.id, &alert.dedup_key, &plan(alert))
                .await?;
        }
        shared = Some(opened.id);
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
        tell_paged(coordinator, id, &alert.dedup_key, event, alert.epoch).await?;
    }
    Ok(shared)
}

/// Takes over the open alerts of probes this replica now evaluates and does not hold (their
/// evaluator died or handed them over), so that its runs resolve them.
async fn adopt(
    coordinator: &Coordinator,
    shard: &Shard,
    alerts: &AlertService,
    opened: &mut HashMap<u64, i64>,
) -> Result<(), super::pg::PgError> {
    for row in coordinator.alerts(0).await? {
        if row.state == "resolved" || opened.values().any(|id| *id == row.id) {
            continue;
        }
        let Ok(mut alert) = serde_json::from_str::<Alert>(&row.body) else {
            continue;
        };
        if !shard.evaluates(&alert.probe) {
            continue;
        }
        if row.state == "acknowledged" {
            alert.state = crate::alert::State::Acknowledged;
            alert.acked_by = row.acked_by.clone();
        }
        if let Some(local) = alerts.adopt(alert) {
            tracing::info!(key = %row.dedup_key, id = row.id, "took over an alert whose evaluator is gone");
            opened.insert(local, row.id);
        } else if let Some(a) = alerts
            .alerts()
            .into_iter()
            .find(|a| a.dedup_key == row.dedup_key && a.state != crate::alert::State::Resolved)
        {
            opened.insert(a.id, row.id);
        }
    }
    Ok(())
}

/// Brings acks and resolves made on other replicas into this replica's engine, for the
/// alerts it opened: its API and status page then show them, and its ack timeout runs.
/// `opened` maps this engine's alert ids to shared ids; resolved ones leave it.
async fn follow(
    coordinator: &Coordinator,
    alerts: &AlertService,
    opened: &mut HashMap<u64, i64>,
) -> Result<(), super::pg::PgError> {
    use crate::alert::State;
    if opened.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = opened.values().copied().collect();
    let states = coordinator.states(&ids).await?;
    let now = crate::alert::service::unix_now();
    for (local, shared) in opened.clone() {
        let Some(alert) = alerts.alert(local) else {
            opened.remove(&local);
            continue;
        };
        let Some((_, state, by)) = states.iter().find(|(id, _, _)| *id == shared) else {
            if alert.state != State::Resolved {
                // The database lost the row (a failover to a standby that had not received
                // it): open it again, so its escalation is not lost with it.
                tracing::warn!(key = %alert.dedup_key, "the shared database lost an open alert; opening it again");
                let reopen = Decision {
                    sends: vec![Send {
                        alert_id: alert.id,
                        notifier: String::new(),
                        recipient: None,
                        event: Event::Trigger,
                        epoch: alert.epoch,
                        round: 0,
                        step: 0,
                    }],
                    alert,
                };
                if let Some(id) = apply(coordinator, &reopen).await? {
                    opened.insert(local, id);
                }
            }
            continue;
        };
        let by = by.as_deref().unwrap_or("another replica");
        match (alert.state, state.as_str()) {
            (State::Resolved, _) => {
                opened.remove(&local);
            }
            (State::Firing, "acknowledged") => {
                let _ = alerts.ack(local, by, now);
            }
            (_, "resolved") => {
                let _ = alerts.resolve(local, "another replica", now);
                opened.remove(&local);
            }
            _ => {}
        }
    }
    Ok(())
}

/// Plans an acknowledge, resolve or flapping notice for every notifier a trigger reached.
async fn tell_paged(
    coordinator: &Coordinator,
    id: i64,
    dedup_key: &str,
    event: Event,
    epoch: u32,
) -> Result<(), super::pg::PgError> {
    let steps: Vec<PlannedStep> = coordinator
        .paged(id)
        .await?
        .into_iter()
        .map(|notifier| PlannedStep {
            event: event.as_str().to_string(),
            epoch,
            round: 0,
            step: 0,
            notifier,
            after: 0.0,
        })
        .collect();
    coordinator.plan(id, dedup_key, &steps).await
}

/// What an API call does to a shared alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ack,
    Resolve,
}

/// Why an ack or resolve of a shared alert did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    #[error(transparent)]
    Refused(#[from] crate::alert::Refusal),
    #[error(transparent)]
    Database(#[from] super::pg::PgError),
}

/// Acknowledges or resolves a shared alert by its shared id (the one every notification
/// shows), on whichever replica the call lands. When this replica evaluates the alert its
/// engine takes the call (and hands the decision to the database, like any other); else the
/// database row is changed here and everyone paged is told.
pub async fn act(
    coordinator: &Coordinator,
    alerts: &AlertService,
    id: u64,
    by: &str,
    action: Action,
    now: f64,
) -> Result<Alert, ActError> {
    use crate::alert::{Refusal, State};
    let shared = coordinator
        .alert(id as i64)
        .await?
        .ok_or(Refusal::NotFound(id))?;
    let local = alerts
        .alerts()
        .into_iter()
        .find(|a| a.dedup_key == shared.dedup_key && a.state != State::Resolved);
    if shared.state != "resolved"
        && let Some(local) = local
    {
        let mut alert = match action {
            Action::Ack => alerts.ack(local.id, by, now)?,
            Action::Resolve => alerts.resolve(local.id, by, now)?,
        };
        alert.id = id;
        return Ok(alert);
    }
    let mut alert: Alert = serde_json::from_str(&shared.body).map_err(|_| Refusal::NotFound(id))?;
    alert.id = id;
    match (action, shared.state.as_str()) {
        (_, "resolved") => return Err(Refusal::Resolved(id).into()),
        (Action::Ack, "acknowledged") => {
            return Err(Refusal::AlreadyAcknowledged {
                id,
                by: shared.acked_by.unwrap_or_default(),
            }
            .into());
        }
        (Action::Ack, _) => {
            coordinator.ack(&shared.dedup_key, by).await?;
            tell_paged(
                coordinator,
                shared.id,
                &shared.dedup_key,
                Event::Acknowledge,
                alert.epoch,
            )
            .await?;
            alert.state = State::Acknowledged;
            alert.acked_at = Some(now);
            alert.acked_by = Some(by.to_string());
        }
        (Action::Resolve, _) => {
            coordinator.resolve(&shared.dedup_key).await?;
            tell_paged(
                coordinator,
                shared.id,
                &shared.dedup_key,
                Event::Resolve,
                alert.epoch,
            )
            .await?;
            alert.state = State::Resolved;
            alert.resolved_at = Some(now);
            alert.resolved_by = Some(by.to_string());
        }
    }
    Ok(alert)
}

/// The alerts of the whole cluster, newest first, by shared id: each one this replica
/// evaluates as its engine holds it (failures, timeline), the others as the database has them.
pub async fn alerts(
    coordinator: &Coordinator,
    service: &AlertService,
) -> Result<Vec<Alert>, super::pg::PgError> {
    use crate::alert::State;
    let local = service.alerts();
    let mut out = Vec::new();
    for row in coordinator.alerts(200).await? {
        let held = local
            .iter()
            .find(|a| a.dedup_key == row.dedup_key && a.state != State::Resolved);
        let mut alert = match held {
            Some(a) if row.state != "resolved" => a.clone(),
            _ => match serde_json::from_str::<Alert>(&row.body) {
                Ok(a) => a,
                Err(_) => continue,
            },
        };
        alert.id = row.id as u64;
        match row.state.as_str() {
            "acknowledged" => {
                alert.state = State::Acknowledged;
                alert.acked_by = alert.acked_by.or(row.acked_by);
            }
            "resolved" => alert.state = State::Resolved,
            _ => {}
        }
        out.push(alert);
    }
    Ok(out)
}

/// Every trigger step of the alert's policy, over its rounds, from the alert's opening.
pub fn plan(alert: &Alert) -> Vec<PlannedStep> {
    let Some(policy) = &alert.policy else {
        return Vec::new();
    };
    let mut steps = Vec::new();
    for round in 0..=policy.repeat {
        for (i, step) in policy.steps.iter().enumerate() {
            // A step's target (a notifier, `person:NAME` or `schedule:NAME`) is planned as
            // written and resolved by whichever replica sends it, when it does.
            for target in &step.notify {
                steps.push(PlannedStep {
                    event: Event::Trigger.as_str().to_string(),
                    epoch: alert.epoch,
                    round,
                    step: i as u32,
                    notifier: target.to_string(),
                    after: f64::from(round) * policy.cycle() + step.after,
                });
            }
        }
    }
    steps
}

/// Sends one claimed step: the fence is checked right before the send and the completion
/// carries it, so a late claimer neither sends nor overwrites.
async fn deliver(coordinator: Arc<Coordinator>, alerts: Arc<AlertService>, claim: Claim) {
    let Ok(mut alert) = serde_json::from_str::<Alert>(&claim.body) else {
        let _ = coordinator
            .complete(&claim, false, Some("unreadable alert"))
            .await;
        return;
    };
    let event = Event::parse(&claim.event).unwrap_or(Event::Trigger);
    if event == Event::Trigger
        && alerts.is_silenced(&alert.labels, crate::alert::service::unix_now())
    {
        // Planned before the silence began (perhaps on another replica): held, as the
        // engine holds its own steps; when the silence ends the evaluator pages again.
        tracing::info!(key = %claim.idempotency_key, "step silenced: not sent");
        let _ = coordinator.complete(&claim, false, Some("silenced")).await;
        return;
    }
    // The step's target resolved now: a notifier is itself, a person their contacts, a
    // schedule whoever is on call at this instant.
    let target = crate::oncall::Target::parse(&claim.notifier);
    let resolved = alerts.directory().resolve(
        std::slice::from_ref(&target),
        crate::alert::service::unix_now(),
    );
    let mut sends: Vec<(String, Option<crate::oncall::Recipient>)> =
        resolved.notifiers.into_iter().map(|n| (n, None)).collect();
    sends.extend((resolved.recipients.into_iter()).map(|r| (r.notifier.clone(), Some(r))));
    if sends.is_empty() {
        let why = format!("nobody on call in {}", resolved.gaps.join(", "));
        tracing::warn!(key = %claim.idempotency_key, "{why}: the step pages nobody");
        let _ = coordinator.complete(&claim, false, Some(&why)).await;
        return;
    }
    let mut notifiers = Vec::with_capacity(sends.len());
    for (name, recipient) in sends {
        let Some(notifier) = alerts.notifier(&name) else {
            let _ = coordinator
                .complete(&claim, false, Some("no such notifier on this replica"))
                .await;
            return;
        };
        notifiers.push((name, notifier, recipient));
    }
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
    let retry = alerts.retry();
    // Each person or notifier the target came to; a retryable failure of any of them gives
    // the whole step back to the database (the ones already reached hear it again, with the
    // same dedup key).
    let mut failure = None;
    for (name, notifier, recipient) in notifiers {
        // The alert's dedup key (PagerDuty's `dedup_key`) is the same on a re-send.
        let mut notification = alerts.notification(&alert, event, claim.step as usize);
        notification.with_recipient(recipient);
        match notifier.send(&notification, retry.timeout).await {
            Ok(()) => alerts.deliveries.add(&name, "sent"),
            Err(e) => {
                failure.get_or_insert((name, e));
            }
        }
    }
    if let Some((name, e)) = &failure
        && e.retryable
        && (claim.claims as u32) < retry.attempts
    {
        // Backoff doubles per attempt (at most a minute); the step goes back to the database,
        // so the retry is anyone's and survives this replica.
        let backoff = (retry.first_backoff.as_secs_f64() * 2f64.powi(claim.claims - 1)).min(60.0);
        alerts.deliveries.add(name, "retried");
        tracing::warn!(notifier = %name, attempt = claim.claims, error = %e, "step failed; retrying");
        if let Err(e) = coordinator.retry_later(&claim, &e.message, backoff).await {
            tracing::warn!(error = %e, "cannot give a failed step back; its lease will");
        }
        return;
    }
    if let Some((name, _)) = &failure {
        alerts.deliveries.add(name, "failed");
    }
    let sent = failure.is_none();
    let error = failure.as_ref().map(|(_, e)| e.message.as_str());
    match coordinator.complete(&claim, sent, error).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(key = %claim.idempotency_key, "completion fenced off: another replica took the step over")
        }
        Err(e) => tracing::warn!(error = %e, "cannot record a sent step"),
    }
}
