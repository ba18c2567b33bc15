//! The daemon (`slowburn run`): the one place that spawns long-lived tasks and owns shutdown.
//!
//! It loads the config, binds the server, starts the scheduler, and then waits for one of:
//! SIGHUP or a changed probe file (reload: a bad config keeps the running one and says why),
//! or SIGTERM/SIGINT (stop scheduling, let in-flight runs finish within a grace period, let the
//! notifier workers deliver what they hold within another, exit).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::alert::service::{AlertService, Worker};
use crate::cluster;
use crate::config::{self, Config, ConfigError, Source};
use crate::metrics::DaemonMetrics;
use crate::oncall;
use crate::probe::{BuildContext, net::NetContext};
use crate::results::{self, Results};
use crate::scheduler::{self, Runner};
use crate::server::{self, Shared};
use crate::state::Registry;
use crate::store::{Store, StoreError};
use crate::watchdog;

/// Options of `slowburn run` beyond the probe files.
#[derive(Debug, Clone)]
pub struct Options {
    /// Overrides `server.listen`.
    pub listen: Option<SocketAddr>,
    /// Overrides `storage.path`: a packaged daemon keeps its store in its state directory
    /// whatever the (possibly read-only) probe files say.
    pub store: Option<std::path::PathBuf>,
    /// At most this many probe runs at once.
    pub max_in_flight: u32,
    /// How often probe files are checked for changes.
    pub watch_every: Duration,
    /// How long in-flight runs may take to finish on shutdown.
    pub grace: Duration,
    /// Connection cap and header timeout of the HTTP server.
    pub server: server::listen::Limits,
    /// `--replica` and `--location`: this daemon's identity among replicas sharing
    /// `storage: postgres:`.
    pub replica: Option<String>,
    pub location: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            listen: None,
            store: None,
            max_in_flight: 4096,
            watch_every: Duration::from_secs(2),
            grace: Duration::from_secs(10),
            server: server::listen::Limits::default(),
            replica: None,
            location: None,
        }
    }
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{} error(s) in the probe files", .0.len())]
    Config(Vec<ConfigError>),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("cannot open the store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot join the cluster: {0}")]
    Cluster(#[from] cluster::pg::PgError),
}

/// Where each probe runs, for the shard.
fn placements(
    probes: &[config::ProbeConfig],
) -> std::collections::HashMap<String, cluster::shard::Place> {
    probes
        .iter()
        .map(|p| {
            let place = cluster::shard::Place {
                locations: p.placement.as_ref().map(|pl| pl.locations.clone()),
                quorum: p.placement.as_ref().and_then(|pl| pl.quorum),
                interval: p.interval,
            };
            (p.name.clone(), place)
        })
        .collect()
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(source: Source, options: Options) -> Result<(), StartError> {
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let mut config = config::load(&source, &ctx).map_err(StartError::Config)?;
    let listen = options.listen.unwrap_or(config.server.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
    let listen = listener.local_addr().unwrap_or(listen);
    let ping_listener = match config.server.ping_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, source })?,
        ),
        None => None,
    };
    let mut hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;

    if let Some(path) = &options.store {
        config.storage.path = path.clone();
    }
    let store = Arc::new(Store::open(&config.storage.path)?);
    restore_checkpoints(&store, &config.probes);
    let alerts = AlertService::new(store.clone(), format!("http://{listen}"));
    let metrics = Arc::new(DaemonMetrics::new());
    let (cluster_stop, cluster_stopped) = watch::channel(false);
    let mut cluster_task = None;
    let mut coordinator = None;
    let shard = match &config.storage.postgres {
        Some(postgres) => {
            let me = cluster::Identity::new(
                options.replica.clone(),
                options.location.clone(),
                listen.port(),
            );
            let (shard, joined, task) = cluster::daemon::join(
                postgres,
                me,
                listen.to_string(),
                alerts.clone(),
                metrics.clone(),
                cluster_stopped,
            )
            .await?;
            shard.set_places(placements(&config.probes));
            cluster_task = Some(tokio::spawn(task));
            coordinator = Some(joined);
            Some(shard)
        }
        None => None,
    };
    let registry = Arc::new(
        Registry::new(config.probes, None).with_blackbox(config.modules, config.targets_files),
    );
    let mut workers = JoinSet::new();
    spawn_workers(
        &mut workers,
        configure_alerts(&alerts, &registry, config.alerting, &config.server),
    );
    let (outcome_tx, outcome_rx) = tokio::sync::mpsc::channel(16_384);
    let runner = Runner {
        limit: Arc::new(Semaphore::new(options.max_in_flight as usize)),
        metrics: metrics.clone(),
        outcomes: Some(outcome_tx),
        shard,
    };
    // Heartbeat probes judge stored pings: a deadline missed while slowburn was down fails
    // at the first run.
    server::ping::restore(&registry, &store);
    let shared = Shared::new(
        registry.clone(),
        metrics.clone(),
        alerts.clone(),
        config.server.api_token.clone(),
        store.clone(),
        runner.clone(),
    )
    .with_cluster(coordinator.clone());
    let (registry_tx, registry_rx) = tokio::sync::mpsc::unbounded_channel();
    let _ = registry_tx.send(registry.clone());
    let (results_stop, results_stopped) = watch::channel(false);
    let mut results = Results::new(store, alerts.clone());
    // With a shared database, signal history is kept there, written by its own task so a
    // slow database never holds the results task (and so the probes) up.
    let mut history_task = None;
    if let Some(coordinator) = coordinator {
        let (tx, rx) = tokio::sync::mpsc::channel(results::HISTORY_QUEUE);
        results = results.with_shared_history(coordinator.clone(), tx, metrics.clone());
        history_task = Some(tokio::spawn(results::write_history(
            coordinator,
            rx,
            metrics.clone(),
        )));
    }
    let results_task = tokio::spawn(results::run(
        results,
        outcome_rx,
        registry_rx,
        results_stopped,
    ));
    let endpoints = server::endpoints(shared.clone());
    let server =
        server::listen::ServerThread::spawn(listener, endpoints, options.server, metrics.clone())
            .map_err(|source| StartError::Listen {
            addr: listen,
            source,
        })?;
    let ping_server = ping_listener.map(|listener| {
        if let Ok(addr) = listener.local_addr() {
            tracing::info!(%addr, "serving heartbeat pings");
        }
        tokio::spawn(server::listen::serve(
            listener,
            server::ping_router(shared.clone()),
            options.server,
            metrics.clone(),
        ))
    });
    let mut watchdog = Watchdog::start(config.watchdog.take(), &shared);
    tracing::info!(%listen, max_connections = options.server.max_connections, probes = registry.probes.len(), files = config.files.len(), store = %config.storage.path.display(), "slowburn running");
    let mut schedule = Schedule::start(registry, runner.clone());
    let mut watched = Watched::new(&source, &schedule.registry.targets_files);
    let mut daemon = Daemon {
        source,
        ctx,
        listen: config.server.listen,
        runner,
        shared,
        alerts,
        workers,
        registries: registry_tx,
    };

    let mut tick = tokio::time::interval(options.watch_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading probe files");
                daemon.reload(&mut schedule, &mut watchdog).await;
            }
            _ = tick.tick() => {
                if watched.changed(&daemon.source, &schedule.registry.targets_files) {
                    tracing::info!("probe files changed: reloading");
                    daemon.reload(&mut schedule, &mut watchdog).await;
                }
            }
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    tracing::info!("stopping: no new runs; waiting for in-flight runs");
    watchdog.stop().await;
    schedule.stop().await;
    if !scheduler::drain(&daemon.runner.limit, options.max_in_flight, options.grace).await {
        tracing::warn!(grace = ?options.grace, "in-flight runs did not finish in time; exiting anyway");
    }
    drop(daemon.runner);
    let _ = results_stop.send(true);
    let _ = results_task.await;
    // The results task dropped its queue: the samples still in it are written, or given up
    // at the grace period.
    if let Some(task) = history_task {
        let _ = tokio::time::timeout(options.grace, task).await;
    }
    // Nothing decides any more: close the queues and let each worker finish what it holds.
    // What is still unsent at the deadline stays recorded as intended and goes out on the
    // next start.
    daemon.alerts.close();
    let workers = &mut daemon.workers;
    let drained = tokio::time::timeout(options.grace, async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(grace = ?options.grace, "notifications still in delivery; the next start sends them");
        workers.abort_all();
    }
    let _ = cluster_stop.send(true);
    if let Some(task) = cluster_task {
        let _ = task.await;
    }
    server.stop().await;
    if let Some(ping_server) = ping_server {
        ping_server.abort();
    }
    tracing::info!("stopped");
    Ok(())
}

/// What the daemon loop owns between events.
struct Daemon {
    source: Source,
    ctx: BuildContext,
    listen: SocketAddr,
    runner: Runner,
    shared: Shared,
    alerts: Arc<AlertService>,
    /// One delivery worker per notifier; a reload adds workers for new notifiers, and a
    /// removed notifier's worker ends by itself.
    workers: JoinSet<()>,
    registries: tokio::sync::mpsc::UnboundedSender<Arc<Registry>>,
}

impl Daemon {
    /// Loads the probe files again; on success swaps the schedule, on failure keeps it.
    async fn reload(&mut self, schedule: &mut Schedule, watchdog: &mut Watchdog) {
        let ctx = self.ctx.clone();
        let source = self.source.clone();
        // Building probes reads files and CA stores: keep it off the async workers.
        let loaded = tokio::task::spawn_blocking(move || config::load(&source, &ctx)).await;
        let mut config: Config = match loaded {
            Ok(Ok(config)) => config,
            Ok(Err(errors)) => {
                for e in &errors {
                    tracing::error!("{e}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "reload failed; the running configuration stays"
                );
                self.runner.metrics.reloaded(false);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reload failed; the running configuration stays");
                self.runner.metrics.reloaded(false);
                return;
            }
        };
        if config.server.listen != self.listen {
            tracing::warn!(listen = %config.server.listen, "server.listen changed; it takes effect on restart");
        }
        if self.shared.set_api_token(config.server.api_token.clone()) {
            // The token itself is never logged; that it changed is.
            tracing::info!(
                enabled = config.server.api_token.is_some(),
                "server.api_token changed; the new token is in effect"
            );
        }
        if let Some(shard) = &self.runner.shard {
            shard.set_places(placements(&config.probes));
        }
        let registry = Arc::new(
            Registry::new(config.probes, Some(&schedule.registry))
                .with_blackbox(config.modules, config.targets_files),
        );
        schedule.stop().await;
        let added = configure_alerts(&self.alerts, &registry, config.alerting, &config.server);
        // Reap the workers of notifiers a reload removed before adding new ones.
        while self.workers.try_join_next().is_some() {}
        spawn_workers(&mut self.workers, added);
        server::ping::restore(&registry, &self.shared.store);
        let _ = self.registries.send(registry.clone());
        self.shared.set_registry(registry.clone());
        // Pings that reached the old registry while this one was built.
        server::ping::restore(&registry, &self.shared.store);
        if watchdog.config != config.watchdog {
            watchdog.stop().await;
            *watchdog = Watchdog::start(config.watchdog.take(), &self.shared);
        }
        *schedule = Schedule::start(registry, self.runner.clone());
        self.runner.metrics.reloaded(true);
        tracing::info!(probes = schedule.registry.probes.len(), "reloaded");
    }
}

/// Spawns the delivery workers the alert service handed back.
fn spawn_workers(set: &mut JoinSet<()>, workers: Vec<Worker>) {
    for worker in workers {
        set.spawn(worker.run());
    }
}

/// Tells the alert engine about the probes, policies, silences and notifiers of a config;
/// returns the workers of notifiers that are new.
fn configure_alerts(
    alerts: &Arc<AlertService>,
    registry: &Registry,
    alerting: config::Alerting,
    server: &config::ServerConfig,
) -> Vec<Worker> {
    let canary = &server.canary;
    alerts.set_oncall(alerting.directory, alerting.routes);
    alerts.set_links(oncall::links::signer(server, alerts.store()));
    // Only probes that can raise an alert (a rule, or watched signals) are told to the engine:
    // at 100,000 probes a copy of every probe's labels would cost tens of megabytes.
    let probes = registry
        .probes
        .iter()
        .filter(|p| p.config.alert.is_some() || !p.config.watches.is_empty())
        .map(|p| (p.name().to_string(), p.config.alert_info(canary)))
        .collect();
    alerts.configure(
        probes,
        alerting.policies,
        alerting.silences,
        alerting.notifiers,
    )
}

/// The running watchdog task (`watchdog:`), if the config has one, and how to stop it.
struct Watchdog {
    config: Option<watchdog::WatchdogConfig>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Watchdog {
    fn start(config: Option<watchdog::WatchdogConfig>, shared: &Shared) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = config.clone().map(|c| {
            tracing::info!(url = %c.url.origin().ascii_serialization(), interval = ?c.interval, "watchdog pings while healthy");
            tokio::spawn(watchdog::run(c, shared.clone(), stopped))
        });
        Watchdog { config, stop, task }
    }

    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A running scheduler task and how to stop it.
struct Schedule {
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Schedule {
    fn start(registry: Arc<Registry>, runner: Runner) -> Self {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(scheduler::run(registry.clone(), runner, stopped));
        Schedule {
            registry,
            stop,
            task: Some(task),
        }
    }

    async fn stop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// The modification times and sizes of the probe files, to notice edits by polling (which also
/// sees a Kubernetes ConfigMap's symlink swap, where inotify on the file would not).
///
/// A change is reported only once the files have then stayed the same for a whole poll: an
/// editor or `cp` caught half-way would otherwise load a truncated file, and the probes missing
/// from it would vanish (their counters reset) until the next poll.
struct Watched {
    seen: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
    settling: bool,
}

impl Watched {
    fn new(source: &Source, extra: &[PathBuf]) -> Self {
        Watched {
            seen: Self::scan(source, extra),
            settling: false,
        }
    }

    /// The probe files, their directories and `extra` (the `targets_file:`s).
    fn scan(source: &Source, extra: &[PathBuf]) -> Vec<(PathBuf, Option<(SystemTime, u64)>)> {
        let mut files = source.files().unwrap_or_default();
        files.extend(extra.iter().cloned());
        if let Source::Paths(paths) = source {
            // A directory's own mtime changes when a file is added or removed.
            files.extend(paths.iter().cloned());
        }
        files
            .into_iter()
            .map(|f| {
                let meta = std::fs::metadata(&f)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())));
                (f, meta)
            })
            .collect()
    }

    /// True when the files changed and have been stable since the previous poll.
    fn changed(&mut self, source: &Source, extra: &[PathBuf]) -> bool {
        let now = Self::scan(source, extra);
        if now != self.seen {
            self.seen = now;
            self.settling = true;
            return false;
        }
        std::mem::take(&mut self.settling)
    }
}

/// Log probes continue where they stopped before the restart, from their stored checkpoints.
fn restore_checkpoints(store: &Store, probes: &[config::ProbeConfig]) {
    for probe in probes {
        match store.checkpoint(&probe.name) {
            Ok(Some(checkpoint)) => {
                if !probe.probe.restore(&checkpoint) {
                    tracing::warn!(probe = %probe.name, "stored checkpoint not usable, starting afresh");
                }
            }
            Ok(None) => {}
            Err(e) => tracing::error!(probe = %probe.name, error = %e, "cannot read checkpoint"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_reported_once_the_files_are_stable() {
        let dir = std::env::temp_dir().join(format!("slowburn-watched-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("p.yaml");
        std::fs::write(&file, "probes: []\n").unwrap();
        let source = Source::Paths(vec![dir.clone()]);
        let mut watched = Watched::new(&source, &[]);
        assert!(!watched.changed(&source, &[]));
        // Half a file: seen, not yet reported.
        std::fs::write(&file, "probes:\n  - name: a\n").unwrap();
        assert!(!watched.changed(&source, &[]));
        // Still being written at the next poll: still not reported.
        std::fs::write(
            &file,
            "probes:\n  - name: a\n    tcp: {address: \"127.0.0.1:1\"}\n",
        )
        .unwrap();
        assert!(!watched.changed(&source, &[]));
        // Unchanged for a whole poll: reported once.
        assert!(watched.changed(&source, &[]));
        assert!(!watched.changed(&source, &[]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
