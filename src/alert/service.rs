//! The alert service: drives the pure [`Engine`] with real time, keeps its state in the store,
//! and delivers notifications.
//!
//! Order matters for a crash at any instant: the engine decides, then the changed alerts and a
//! record of every intended notification are written in one transaction, and only then is
//! anything sent. A restart restores the alerts, re-queues records still marked intended, and
//! lets the engine fire overdue steps once. Each notifier has its own queue and [`Worker`], so
//! a slow or dead notifier never delays another, the probes or the escalation clock; retries,
//! backoff and per-attempt timeouts live here, once, for every notifier.
//!
//! The service spawns nothing: [`configure`](AlertService::configure) hands back a worker per
//! new notifier and the daemon (`app.rs`) spawns them, and joins them after
//! [`close`](AlertService::close). The engine lock is held only to decide; SQLite is written
//! after it is released, by one writer at a time in the order the engine decided, so reads
//! (the API, `/metrics`) never wait on the disk.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;

use super::{Alert, Engine, Event, Policy, ProbeInfo, Refusal, Send, Silence, State};
use crate::notify::{Notification, Notifier};
use crate::store::oncall::OverrideRow;
use crate::store::{Backend, BackendError, Record, Store};

mod oncall;

/// How deliveries are retried: attempts before a notification counts as failed, the first
/// backoff (doubled after each retry, at most a minute) and the time allowed per attempt.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    pub attempts: u32,
    pub first_backoff: Duration,
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            attempts: 5,
            first_backoff: Duration::from_secs(1),
            timeout: Duration::from_secs(10),
        }
    }
}
/// Resolved alerts kept in memory (and shown by the API); older ones stay in the store.
const KEEP_RESOLVED: usize = 200;

/// Counters of delivery attempts, by notifier and result.
#[derive(Debug, Default)]
pub struct DeliveryCounts(Mutex<BTreeMap<(String, &'static str), u64>>);

impl DeliveryCounts {
    pub fn add(&self, notifier: &str, result: &'static str) {
        let mut counts = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *counts.entry((notifier.to_string(), result)).or_default() += 1;
    }

    pub fn snapshot(&self) -> BTreeMap<(String, &'static str), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What the engine decided about one alert, for the shared database when replicas share
/// one (`storage: postgres:`): the alert as decided and the sends it asked for.
#[derive(Debug, Clone)]
pub struct Decision {
    pub alert: Alert,
    pub sends: Vec<Send>,
}

/// One delivery: a recorded notification (`key`) or an unrecorded refresh.
struct Job {
    key: Option<String>,
    notification: Notification,
}

/// Alert figures for `/metrics`, counted under the lock without copying any alert.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct AlertCounts {
    pub firing: u64,
    pub acknowledged: u64,
    /// Active alerts (firing or acknowledged) that are silenced, and that are flapping.
    pub silenced: u64,
    pub flapping: u64,
    /// Active alerts held while a parent probe fails.
    pub held: u64,
    /// Age of the oldest firing, unsilenced, unacknowledged page; 0 when none.
    pub oldest_unacked_page: f64,
}

/// What one engine decision leaves to do once the engine lock is released: alert rows and
/// intended records to write, then the deliveries of the records that are new.
struct Batch {
    rows: Vec<(u64, String, String, String)>,
    records: Vec<Record>,
    deliveries: Vec<(String, String, Notification)>,
    now: f64,
}

/// One notifier's delivery loop, for the daemon to spawn. It ends once its queue is closed
/// (the notifier left the config, or [`AlertService::close`]) and what was queued is done.
#[must_use = "a worker delivers nothing until it is spawned"]
pub struct Worker {
    pub notifier: String,
    service: Arc<AlertService>,
    queue: mpsc::UnboundedReceiver<Job>,
}

impl Worker {
    pub async fn run(self) {
        self.service.deliver(self.notifier, self.queue).await;
    }
}

pub struct AlertService {
    inner: Mutex<Inner>,
    /// One sender per configured notifier. Apart from the engine so that queueing, which
    /// happens after the store write, needs no engine lock.
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
    /// Batches decided but not yet written, in the engine's order; `writer` lets one caller
    /// at a time write them, so a later decision never lands before an earlier one.
    outbox: Mutex<VecDeque<Batch>>,
    writer: Mutex<()>,
    store: Arc<Store>,
    /// Where people reach this daemon, for "how to ack" lines.
    base_url: String,
    retry: Retry,
    pub deliveries: Arc<DeliveryCounts>,
    /// Set when replicas share a database: decisions go there to be claimed and sent once
    /// across the cluster, instead of to this daemon's queues.
    shared: std::sync::OnceLock<mpsc::UnboundedSender<Decision>>,
    /// Set when replicas share a database: where API silences and overrides are written
    /// (instead of the store), and the copy of them last read from it.
    backend: std::sync::OnceLock<Arc<dyn Backend>>,
    mirror: Mutex<Mirror>,
}

/// The shared database's API silences and overrides as this replica last read or wrote them:
/// what the engine runs with, and what listings fall back to while the database is away.
#[derive(Default)]
struct Mirror {
    silences: Vec<Silence>,
    overrides: Vec<OverrideRow>,
    /// Bumped by every write of this replica: a refresh that read before a write is dropped,
    /// so it cannot take back what the write just put in.
    generation: u64,
}

struct Inner {
    engine: Engine,
    notifiers: HashMap<String, Arc<Notifier>>,
    /// Whether `configure` has run: the first one re-queues what a restart left unsent.
    configured: bool,
    /// Silences from probe files; API silences live in the store and are added to these.
    file_silences: Vec<Silence>,
    /// Signs the one-click links of pages (with `server.external_url`).
    links: Option<Arc<crate::oncall::links::Signer>>,
    /// People and schedules as the probe files give them; stored overrides are added to these.
    file_directory: crate::oncall::Directory,
    refreshed: HashMap<(u64, String), f64>,
}

impl AlertService {
    /// Restores alerts from the store. Call [`configure`](Self::configure) next, which also
    /// re-queues notifications recorded but not yet sent.
    pub fn new(store: Arc<Store>, base_url: String) -> Arc<AlertService> {
        Self::with_retry(store, base_url, Retry::default())
    }

    /// Like [`new`](Self::new), with its own retry policy.
    pub fn with_retry(store: Arc<Store>, base_url: String, retry: Retry) -> Arc<AlertService> {
        let mut engine = Engine::new();
        match store.alerts(KEEP_RESOLVED) {
            Ok(bodies) => {
                let alerts: Vec<Alert> = bodies
                    .iter()
                    .filter_map(|b| serde_json::from_str(b).ok())
                    .collect();
                tracing::info!(alerts = alerts.len(), "alerts restored from the store");
                engine.restore(alerts);
            }
            Err(e) => tracing::error!(error = %e, "cannot read alerts from the store"),
        }
        Arc::new(AlertService {
            inner: Mutex::new(Inner {
                engine,
                notifiers: HashMap::new(),
                configured: false,
                file_silences: Vec::new(),
                links: None,
                file_directory: Default::default(),
                refreshed: HashMap::new(),
            }),
            queues: Mutex::new(HashMap::new()),
            outbox: Mutex::new(VecDeque::new()),
            writer: Mutex::new(()),
            store,
            base_url,
            retry,
            deliveries: Arc::default(),
            shared: std::sync::OnceLock::new(),
            backend: std::sync::OnceLock::new(),
            mirror: Mutex::new(Mirror::default()),
        })
    }

    /// Hands every later decision to `decisions` (the cluster loop) instead of the local
    /// queues: the shared database records, claims and sends them.
    pub fn share_decisions(&self, decisions: mpsc::UnboundedSender<Decision>) {
        let _ = self.shared.set(decisions);
    }

    /// Keeps API silences and overrides in `backend` (the shared database) instead of the
    /// store, and reads them from it once; [`refresh_shared`](Self::refresh_shared) keeps the
    /// copy current. Call before [`configure`](Self::configure).
    pub async fn share_state(&self, backend: Arc<dyn Backend>) -> Result<(), BackendError> {
        let _ = self.backend.set(backend);
        self.refresh_shared(unix_now()).await
    }

    /// Where API silences and overrides are kept: the shared database, or the store.
    pub fn backend(&self) -> Arc<dyn Backend> {
        match self.backend.get() {
            Some(backend) => backend.clone(),
            None => self.store.clone(),
        }
    }

    /// Reads the shared database's silences and overrides and brings the engine in line with
    /// them: a silence or override added or removed on another replica takes effect here.
    /// The cluster loop calls it every beat; on an error the last copy stays in effect.
    pub async fn refresh_shared(&self, now: f64) -> Result<(), BackendError> {
        let Some(backend) = self.backend.get().cloned() else {
            return Ok(());
        };
        let generation = self.mirror().generation;
        let silences: Vec<Silence> = (backend.silences().await?.iter())
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect();
        let overrides = backend.overrides().await?;
        let (old_silences, old_overrides) = {
            let mut mirror = self.mirror();
            if mirror.generation != generation {
                return Ok(()); // A write of this replica came between: the next beat reads it.
            }
            (
                std::mem::replace(&mut mirror.silences, silences.clone()),
                std::mem::replace(&mut mirror.overrides, overrides.clone()),
            )
        };
        if old_silences != silences {
            let mut inner = self.lock();
            let mut sends = Vec::new();
            for gone in old_silences
                .iter()
                .filter(|o| !silences.iter().any(|s| s.id == o.id))
            {
                if !inner.file_silences.iter().any(|f| f.id == gone.id) {
                    sends.extend(inner.engine.remove_silence(&gone.id, now).1);
                }
            }
            for new in silences.iter().filter(|s| !old_silences.contains(s)) {
                sends.extend(inner.engine.add_silence(new.clone(), now));
            }
            self.commit(inner, sends, now);
        }
        if old_overrides != overrides {
            let file = self.lock().file_directory.clone();
            let running = self.with_stored_overrides(file);
            *self.lock().engine.directory_mut() = running;
        }
        Ok(())
    }

    fn mirror(&self) -> MutexGuard<'_, Mirror> {
        self.mirror.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a write of this replica to the copy of the shared state (when there is one).
    fn remember(&self, change: impl FnOnce(&mut Mirror)) {
        if self.backend.get().is_some() {
            let mut mirror = self.mirror();
            mirror.generation += 1;
            change(&mut mirror);
        }
    }

    /// Whether an active silence (from the probe files, the API or another replica) covers
    /// these labels: a step planned before the silence began is not sent while it lasts.
    pub fn is_silenced(&self, labels: &BTreeMap<String, String>, now: f64) -> bool {
        (self.lock().engine.silences().iter()).any(|s| s.active(now) && s.matches(labels))
    }

    /// A configured notifier, by name.
    pub fn notifier(&self, name: &str) -> Option<Arc<Notifier>> {
        self.lock().notifiers.get(name).cloned()
    }

    /// Takes over an alert another replica opened (its evaluator died): the engine holds it
    /// under a local id, so this replica's runs can resolve it. Returns that id, or `None`
    /// when an alert with its dedup key is already active here.
    pub fn adopt(&self, mut alert: Alert) -> Option<u64> {
        let mut inner = self.lock();
        if inner
            .engine
            .alerts()
            .any(|a| a.dedup_key == alert.dedup_key && a.state != State::Resolved)
        {
            return None;
        }
        alert.id = inner.engine.alerts().map(|a| a.id).max().unwrap_or(0) + 1;
        let id = alert.id;
        inner.engine.restore(vec![alert]);
        Some(id)
    }

    /// The configured notifiers' names, sorted.
    pub fn notifier_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.lock().notifiers.keys().cloned().collect();
        names.sort();
        names
    }

    /// How deliveries are retried and timed out.
    pub fn retry(&self) -> Retry {
        self.retry
    }

    /// Sets probes, policies, silences and notifiers (on start and on every reload), and
    /// returns a worker for each notifier that had none: the caller spawns them. The first
    /// call also re-queues notifications recorded but not yet sent.
    #[must_use = "the workers must be spawned, or nothing is delivered"]
    pub fn configure(
        self: &Arc<Self>,
        probes: HashMap<String, ProbeInfo>,
        policies: HashMap<String, Policy>,
        file_silences: Vec<Silence>,
        notifiers: Vec<Arc<Notifier>>,
    ) -> Vec<Worker> {
        let mut silences = file_silences.clone();
        silences.extend(self.stored_silences());
        let mut workers = Vec::new();
        let first = {
            let mut inner = self.lock();
            let first = !inner.configured;
            inner.configured = true;
            inner.engine.configure(probes, policies, silences);
            inner.file_silences = file_silences;
            inner.notifiers = notifiers.into_iter().map(|n| (n.name.clone(), n)).collect();
            let mut queues = self.queues();
            // Dropping a removed notifier's sender lets its worker finish what it holds.
            queues.retain(|name, _| inner.notifiers.contains_key(name));
            for name in inner.notifiers.keys() {
                if !queues.contains_key(name) {
                    let (tx, rx) = mpsc::unbounded_channel();
                    queues.insert(name.clone(), tx);
                    workers.push(Worker {
                        notifier: name.clone(),
                        service: self.clone(),
                        queue: rx,
                    });
                }
            }
            first
        };
        if first {
            self.requeue_unsent();
        }
        workers
    }

    /// Closes every queue: each worker ends once it has delivered what it holds. Decisions
    /// after this are still recorded, and sent by the next start.
    pub fn close(&self) {
        self.queues().clear();
    }

    /// One probe result.
    pub fn observe(&self, probe: &str, failure: Option<(&str, &str)>, now: f64) {
        let mut inner = self.lock();
        let sends = inner.engine.observe(probe, failure, now);
        self.commit(inner, sends, now);
    }

    /// A detector's verdict.
    #[allow(clippy::too_many_arguments)]
    pub fn verdict(
        &self,
        probe: &str,
        origin: super::Origin,
        severity: super::Severity,
        firing: bool,
        message: &str,
        began_at: Option<f64>,
        eta_seconds: Option<f64>,
        now: f64,
    ) {
        let mut inner = self.lock();
        let sends = inner.engine.verdict(
            probe,
            origin,
            severity,
            firing,
            message,
            began_at,
            eta_seconds,
            now,
        );
        self.commit(inner, sends, now);
    }

    /// Advances escalation timers, ack timeouts and silences; refreshes Alertmanager.
    pub fn tick(&self, now: f64) {
        let mut inner = self.lock();
        let sends = inner.engine.tick(now);
        let refreshes = self.refresh(&mut inner, now);
        self.commit(inner, sends, now);
        // Refreshes have no record; they go after this tick's recorded sends.
        for (notifier, notification) in refreshes {
            self.enqueue(&notifier, None, notification, now);
        }
    }

    pub fn ack(&self, id: u64, by: &str, now: f64) -> Result<Alert, Refusal> {
        let mut inner = self.lock();
        let sends = inner.engine.ack(id, by, now)?;
        let alert = inner.engine.alert(id).cloned().ok_or(Refusal::NotFound(id));
        self.commit(inner, sends, now);
        alert
    }

    pub fn resolve(&self, id: u64, by: &str, now: f64) -> Result<Alert, Refusal> {
        let mut inner = self.lock();
        let sends = inner.engine.resolve(id, by, now)?;
        let alert = inner.engine.alert(id).cloned().ok_or(Refusal::NotFound(id));
        self.commit(inner, sends, now);
        alert
    }

    /// Adds a silence created through the API, kept in the store (or the shared database,
    /// where every replica reads it; when that is unreachable nothing changes anywhere).
    pub async fn add_silence(&self, silence: Silence, now: f64) -> Result<(), BackendError> {
        let body = serde_json::to_string(&silence).unwrap_or_default();
        self.backend().save_silence(&silence.id, &body).await?;
        self.remember(|m| {
            m.silences.retain(|s| s.id != silence.id);
            m.silences.push(silence.clone());
        });
        let mut inner = self.lock();
        let sends = inner.engine.add_silence(silence, now);
        self.commit(inner, sends, now);
        Ok(())
    }

    /// Removes an API silence; silences from probe files are removed by editing the files.
    pub async fn remove_silence(&self, id: &str, now: f64) -> Result<bool, BackendError> {
        if !self.backend().delete_silence(id).await? {
            return Ok(false);
        }
        self.remember(|m| m.silences.retain(|s| s.id != id));
        let mut inner = self.lock();
        let (_, sends) = inner.engine.remove_silence(id, now);
        self.commit(inner, sends, now);
        Ok(true)
    }

    pub fn silences(&self) -> Vec<(Silence, bool)> {
        let inner = self.lock();
        inner
            .engine
            .silences()
            .iter()
            .map(|s| (s.clone(), inner.file_silences.iter().any(|f| f.id == s.id)))
            .collect()
    }

    /// Every alert the engine holds (active and recently resolved), newest first.
    pub fn alerts(&self) -> Vec<Alert> {
        let inner = self.lock();
        let mut alerts: Vec<Alert> = inner.engine.alerts().cloned().collect();
        alerts.reverse();
        alerts
    }

    /// Counts of active alerts by state, for `/metrics`: no alert or timeline is copied.
    pub fn alert_counts(&self, now: f64) -> AlertCounts {
        let inner = self.lock();
        let mut counts = AlertCounts::default();
        for alert in inner.engine.alerts() {
            match alert.state {
                State::Firing => counts.firing += 1,
                State::Acknowledged => counts.acknowledged += 1,
                State::Resolved => continue,
            }
            counts.silenced += u64::from(alert.silenced);
            counts.flapping += u64::from(alert.flapping);
            counts.held += u64::from(!alert.held_by.is_empty());
            if alert.state == State::Firing
                && alert.severity == super::Severity::Page
                && !alert.silenced
            {
                counts.oldest_unacked_page = counts.oldest_unacked_page.max(now - alert.firing_at);
            }
        }
        counts
    }

    pub fn alert(&self, id: u64) -> Option<Alert> {
        self.lock().engine.alert(id).cloned()
    }

    /// Delivery records of one alert.
    pub fn records(&self, id: u64) -> Vec<Record> {
        self.store.records(id).unwrap_or_default()
    }

    /// The store the alerts are kept in.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The next time the engine must act on its own.
    pub fn next_due(&self) -> Option<f64> {
        self.lock().engine.next_due()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn queues(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Job>>> {
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// API silences: the copy of the shared database's, or the store's.
    fn stored_silences(&self) -> Vec<Silence> {
        if self.backend.get().is_some() {
            return self.mirror().silences.clone();
        }
        self.store
            .silences()
            .unwrap_or_default()
            .iter()
            .filter_map(|b| serde_json::from_str(b).ok())
            .collect()
    }

    /// Takes what the engine changed and the sends it asked for, releases the engine lock,
    /// and then persists and queues them (see [`flush`](Self::flush)).
    fn commit(&self, mut inner: MutexGuard<'_, Inner>, sends: Vec<Send>, now: f64) {
        let changed = inner.engine.take_changed();
        if changed.is_empty() && sends.is_empty() {
            return;
        }
        let rows = changed
            .iter()
            .filter_map(|id| inner.engine.alert(*id))
            .map(|a| {
                (
                    a.id,
                    a.dedup_key.clone(),
                    a.state.as_str().to_string(),
                    serde_json::to_string(a).unwrap_or_default(),
                )
            })
            .collect();
        let mut records = Vec::with_capacity(sends.len());
        let mut deliveries = Vec::with_capacity(sends.len());
        for send in &sends {
            let key = send.key();
            records.push(Record {
                key: key.clone(),
                alert_id: send.alert_id,
                notifier: send.notifier.clone(),
                event: send.event.as_str().to_string(),
                state: "intended".into(),
                attempts: 0,
                error: None,
                created_at: now,
                updated_at: now,
            });
            // The page says what the alert was when the engine decided, as before.
            if let Some(alert) = inner.engine.alert(send.alert_id) {
                let to = (send.notifier.as_str(), send.recipient.clone());
                let notification = self.addressed(&inner, alert, send.event, send.step, to, now);
                deliveries.push((key, send.notifier.clone(), notification));
            }
        }
        if let Some(shared) = self.shared.get() {
            share(&inner.engine, shared, &sends);
            records.clear();
            deliveries.clear();
        }
        inner.engine.prune(KEEP_RESOLVED);
        // Queued while the engine lock is held, so batches keep the engine's order.
        self.outbox
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push_back(Batch {
                rows,
                records,
                deliveries,
                now,
            });
        drop(inner);
        self.flush();
    }

    /// Writes the batches waiting in the outbox, oldest first, and queues the deliveries of
    /// records that are new. When it returns, the caller's batch is written: either this call
    /// wrote it or the writer that held the lock did before letting go.
    fn flush(&self) {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let batch = self
                .outbox
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(batch) = batch else {
                return;
            };
            let fresh = match self.store.persist(&batch.rows, &batch.records, batch.now) {
                Ok(fresh) => fresh,
                Err(e) => {
                    // Paging matters more than bookkeeping: send anyway and say so.
                    tracing::error!(error = %e, "cannot record alerts in the store; sending without a record");
                    batch.records.iter().map(|r| r.key.clone()).collect()
                }
            };
            for (key, notifier, notification) in batch.deliveries {
                if !fresh.contains(&key) {
                    continue; // Recorded before (a restart replayed it): never send twice.
                }
                self.enqueue(&notifier, Some(key), notification, batch.now);
            }
        }
    }

    /// Re-queues notifications that were recorded but not sent before a restart.
    fn requeue_unsent(&self) {
        let unsent = self.store.unsent().unwrap_or_default();
        if !unsent.is_empty() {
            tracing::info!(
                count = unsent.len(),
                "re-queueing notifications recorded before a restart"
            );
        }
        let now = unix_now();
        let mut queued = Vec::new();
        let inner = self.lock();
        for record in unsent {
            let Some(alert) = inner.engine.alert(record.alert_id) else {
                continue;
            };
            let event = match record.event.as_str() {
                "acknowledge" => Event::Acknowledge,
                "resolve" => Event::Resolve,
                "flapping" => Event::Flapping,
                _ => Event::Trigger,
            };
            let step = record
                .key
                .rsplit('/')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let recipient = crate::oncall::resolve::recipient_of(alert, &record.key);
            let to = (record.notifier.as_str(), recipient);
            let notification = self.addressed(&inner, alert, event, step, to, now);
            queued.push((record.notifier, record.key, notification));
        }
        drop(inner);
        for (notifier, key, notification) in queued {
            self.enqueue(&notifier, Some(key), notification, now);
        }
    }

    /// Alertmanager forgets an alert it does not hear about; re-send firing alerts to
    /// notifiers that ask for it. Returns what to queue once the engine lock is released.
    fn refresh(&self, inner: &mut Inner, now: f64) -> Vec<(String, Notification)> {
        let mut due = Vec::new();
        for alert in inner
            .engine
            .alerts()
            .filter(|a| a.state != State::Resolved && !a.silenced)
        {
            for name in &alert.paged {
                let Some(every) = inner.notifiers.get(name).and_then(|n| n.wants_refresh()) else {
                    continue;
                };
                let last = inner
                    .refreshed
                    .get(&(alert.id, name.clone()))
                    .copied()
                    .unwrap_or(alert.firing_at);
                if now - last >= every.as_secs_f64() {
                    due.push((alert.id, name.clone()));
                }
            }
        }
        let mut refreshes = Vec::with_capacity(due.len());
        for (id, name) in due {
            inner.refreshed.insert((id, name.clone()), now);
            if let Some(alert) = inner.engine.alert(id) {
                refreshes.push((name, self.notification(alert, Event::Trigger, 0)));
            }
        }
        refreshes
    }

    /// The notification for one send: addressed to its person (if any), and for a page,
    /// with signed one-click links made out to them (or to the notifier).
    fn addressed(
        &self,
        inner: &Inner,
        alert: &Alert,
        event: Event,
        step: usize,
        (notifier, recipient): (&str, Option<crate::oncall::Recipient>),
        now: f64,
    ) -> Notification {
        let mut notification = self.notification(alert, event, step);
        if let Some(signer) = inner.links.as_ref().filter(|_| event == Event::Trigger) {
            let by = recipient.as_ref().map_or(notifier, |r| r.person.as_str());
            let nonce = crate::oncall::links::nonce();
            notification.with_links(signer.links(alert.id, by, &nonce, now));
        }
        notification.with_recipient(recipient);
        notification
    }

    /// What a page says: what failed, where, since when, why, the ETA, the runbook, how to ack.
    pub fn notification(&self, alert: &Alert, event: Event, step: usize) -> Notification {
        let since = crate::detect::verdict::format_timestamp(alert.started_at);
        let mut details = format!("{} — {}\n", alert.summary, alert.target);
        details.push_str(&format!(
            "Since: {since} ({} failure(s) while firing)\n",
            alert.failures
        ));
        details.push_str(&format!("Reason: {} ({})\n", alert.message, alert.reason));
        if let Some(eta) = alert.eta_seconds {
            details.push_str(&format!(
                "Predicted to breach in ~{}\n",
                crate::detect::verdict::format_duration(eta)
            ));
        }
        if let Some(runbook) = &alert.runbook {
            details.push_str(&format!("Runbook: {runbook}\n"));
        }
        if let Some(by) = &alert.acked_by {
            details.push_str(&format!("Acknowledged by {by}\n"));
        }
        let ack_hint = format!(
            "slowburn ack {id} --url {base}  or  curl -X POST -H 'Authorization: Bearer <token>' {base}/api/v1/alerts/{id}/ack",
            id = alert.id,
            base = self.base_url
        );
        details.push_str(&format!("Ack: {ack_hint}\n"));
        Notification {
            event,
            dedup_key: alert.dedup_key.clone(),
            alert_id: alert.id,
            probe: alert.probe.clone(),
            reason: alert.reason.clone(),
            severity: alert.severity.as_str().to_string(),
            summary: alert.summary.clone(),
            details,
            labels: alert.labels.clone(),
            started_at: to_system(alert.started_at),
            ended_at: alert.resolved_at.map(to_system),
            acked_by: alert.acked_by.clone(),
            runbook: alert.runbook.clone(),
            ack_hint,
            step,
            failures: alert.failures,
            recipient: None,
            links: None,
        }
    }

    /// One notifier's worker: sends its queue in order, retrying with backoff.
    async fn deliver(self: Arc<Self>, name: String, mut queue: mpsc::UnboundedReceiver<Job>) {
        while let Some(job) = queue.recv().await {
            let Some(notifier) = self.lock().notifiers.get(&name).cloned() else {
                self.finish(&job, "failed", 0, Some("notifier no longer configured"));
                continue;
            };
            let mut backoff = self.retry.first_backoff;
            for attempt in 1..=self.retry.attempts {
                match notifier.send(&job.notification, self.retry.timeout).await {
                    Ok(()) => {
                        self.deliveries.add(&name, "sent");
                        self.finish(&job, "sent", attempt, None);
                        break;
                    }
                    Err(e) if e.retryable && attempt < self.retry.attempts => {
                        self.deliveries.add(&name, "retried");
                        tracing::warn!(notifier = %name, attempt, error = %e, "notification failed; retrying");
                        self.finish(&job, "retrying", attempt, Some(&e.message));
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(60));
                    }
                    Err(e) => {
                        self.deliveries.add(&name, "failed");
                        tracing::error!(notifier = %name, attempt, error = %e, "notification failed");
                        self.finish(&job, "failed", attempt, Some(&e.message));
                        break;
                    }
                }
            }
        }
    }

    /// Hands a delivery to its notifier's worker; a record for a notifier that is gone is
    /// marked failed (a closed queue leaves it intended, for the next start to send).
    fn enqueue(&self, notifier: &str, key: Option<String>, notification: Notification, now: f64) {
        let queue = self.queues().get(notifier).cloned();
        match queue {
            Some(queue) => {
                let _ = queue.send(Job { key, notification });
            }
            None => {
                let configured = self.lock().notifiers.contains_key(notifier);
                if let Some(key) = key.filter(|_| !configured) {
                    let _ = self
                        .store
                        .mark(&key, "failed", 0, Some("no such notifier"), now);
                }
            }
        }
    }

    fn finish(&self, job: &Job, state: &str, attempts: u32, error: Option<&str>) {
        if let Some(key) = &job.key
            && let Err(e) = self.store.mark(key, state, attempts, error, unix_now())
        {
            tracing::error!(error = %e, "cannot record a delivery");
        }
    }
}

/// Sends each alert's decided sends to the shared database's loop, grouped by alert.
fn share(engine: &Engine, shared: &mpsc::UnboundedSender<Decision>, sends: &[Send]) {
    let mut by_alert: BTreeMap<u64, Vec<Send>> = BTreeMap::new();
    for send in sends {
        by_alert
            .entry(send.alert_id)
            .or_default()
            .push(send.clone());
    }
    for (id, sends) in by_alert {
        if let Some(alert) = engine.alert(id) {
            let _ = shared.send(Decision {
                alert: alert.clone(),
                sends,
            });
        }
    }
}

fn to_system(t: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0))
}

/// Wall-clock now in unix seconds: the one place the alert path reads the clock.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
