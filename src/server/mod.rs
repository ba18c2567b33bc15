//! The daemon's HTTP server: `/metrics`, `/healthz`, the JSON API under `/api/v1` and the
//! status page at `/` (a plain client of that API).
//!
//! It reads state ([`Shared`]); the single writer of that state is the daemon loop in
//! `app.rs`. Its only writes are acks, resolves and silences (`api/`, with the API token) and
//! heartbeat pings (`ping.rs`, with each probe's own token), which it stores before
//! answering. It binds to loopback unless the config says otherwise.

pub mod api;
pub mod links;
pub mod listen;
pub mod ping;
pub mod probe_endpoint;
pub mod status_page;

use std::convert::Infallible;
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::Channel;

use crate::alert::service::AlertService;
use crate::basics::units::Secret;
use crate::metrics::{self, DaemonMetrics};
use crate::state::Registry;
use crate::store::Store;

/// What the server reads: the current registry (swapped on reload) and daemon metrics.
#[derive(Clone)]
pub struct Shared {
    registry: Arc<RwLock<Arc<Registry>>>,
    pub metrics: Arc<DaemonMetrics>,
    pub alerts: Arc<AlertService>,
    /// The bearer token write endpoints require; `None` refuses every write. Swapped on
    /// reload, so a rotated `file:` token takes effect with SIGHUP.
    api_token: Arc<RwLock<Option<Secret>>>,
    /// Signal history, read by `/api/v1/probes/{name}/history`; heartbeat pings, written by
    /// `/ping/…`.
    pub store: Arc<Store>,
    /// Where signal history is read: the store, or with `storage: postgres:` the shared
    /// database, so any replica answers for probes another ran.
    pub history: Arc<dyn crate::store::Backend>,
    /// The ping routes' rate limiter and the runner that judges a pinged probe at once.
    pings: Arc<ping::Desk>,
    /// The in-flight bound of blackbox's `/probe`.
    probe_slots: Arc<probe_endpoint::Slots>,
    /// With `storage: postgres:`: the shared database, where acks and resolves by shared id go.
    pub cluster: Option<Arc<crate::cluster::pg::Coordinator>>,
}

impl Shared {
    pub fn new(
        registry: Arc<Registry>,
        metrics: Arc<DaemonMetrics>,
        alerts: Arc<AlertService>,
        api_token: Option<Secret>,
        store: Arc<Store>,
        runner: crate::scheduler::Runner,
    ) -> Self {
        Shared {
            registry: Arc::new(RwLock::new(registry)),
            metrics,
            alerts,
            api_token: Arc::new(RwLock::new(api_token)),
            history: store.clone(),
            store,
            pings: Arc::new(ping::Desk::new(runner)),
            probe_slots: Default::default(),
            cluster: None,
        }
    }

    /// Sends acks and resolves to the shared database (replicas sharing `storage: postgres:`).
    /// Signal history is then read from there too.
    pub fn with_cluster(mut self, cluster: Option<Arc<crate::cluster::pg::Coordinator>>) -> Self {
        if let Some(cluster) = &cluster {
            self.history = cluster.clone();
        }
        self.cluster = cluster;
        self
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn api_token(&self) -> Option<Secret> {
        self.api_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the token; true if it changed.
    pub fn set_api_token(&self, token: Option<Secret>) -> bool {
        let mut current = self.api_token.write().unwrap_or_else(|e| e.into_inner());
        let changed = *current != token;
        *current = token;
        changed
    }

    pub fn set_registry(&self, registry: Arc<Registry>) {
        *self.registry.write().unwrap_or_else(|e| e.into_inner()) = registry;
    }
}

/// The router of every endpoint.
pub fn router(shared: Shared) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .nest("/api/v1", api::routes())
        .merge(ping::routes())
        .merge(links::routes())
        .merge(probe_endpoint::routes())
        .merge(status_page::routes())
        .with_state(shared)
}

/// The main listener's endpoints: the router, and `/probe` answered without it.
pub fn endpoints(shared: Shared) -> listen::Endpoints {
    listen::Endpoints {
        router: router(shared.clone()),
        probe: Some(shared),
    }
}

/// The router of `server.ping_listen`: the ping routes only.
pub fn ping_router(shared: Shared) -> Router {
    ping::routes().with_state(shared)
}

/// `ok`, or `degraded: …` with what is wrong with the store.
///
/// Always 200: `/healthz` is what liveness probes and load balancers ask, and restarting a
/// daemon whose store was replaced brings nothing back (the copy is kept either way) while it
/// keeps probing and paging from a fresh store. The body is what changes, so anything matching
/// `^ok` (the built-in `self-healthz` probe does) fails, and `slowburn_store_errors_total`
/// says the same to Prometheus.
async fn healthz(State(shared): State<Shared>) -> String {
    let store = &shared.store;
    if let Some(replaced) = store.replaced() {
        return format!(
            "degraded: store {} was unreadable at start ({}); kept a copy at {} and started fresh, so alerts, silences and history from before are not restored\n",
            store.path(),
            replaced.reason,
            replaced.kept.display()
        );
    }
    if let Some(lost) = shared.metrics.coordination.lost() {
        return format!("degraded: {lost}\n");
    }
    match store.failing() {
        Some(error) => format!("degraded: store {}: {error}\n", store.path()),
        None => "ok\n".to_string(),
    }
}

/// Streams the exposition: it is rendered on a blocking thread in chunks that go out as they
/// fill, so a scrape of 100,000 probes neither waits for the whole text nor holds it at once.
async fn metrics_text(State(shared): State<Shared>) -> impl IntoResponse {
    let registry = shared.registry();
    let alerts = metrics::AlertGauges::from_service(&shared.alerts);
    let (mut sender, body) = Channel::<Bytes, Infallible>::new(4);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        metrics::render_chunks(&registry, &shared.metrics, &alerts, &mut |chunk| {
            runtime
                .block_on(sender.send_data(Bytes::from(chunk)))
                .is_ok()
        });
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        Body::new(body),
    )
}
