//! The accept loop: a bounded number of connections, each with a deadline on its request
//! headers, so that no client (with or without the token) can exhaust the daemon.
//!
//! `axum::serve` accepts without limit and never times a connection out, so a thousand idle
//! sockets used up the fds the probes needed. Here every connection holds a slot of a
//! semaphore sized below the fd limit ([`max_connections`]), which leaves most descriptors to
//! the probes, the store and the reload watcher. When the slots are full, the oldest
//! connection with no request in flight is closed to make room (a flood of idle sockets then
//! costs its own sockets, not the next scrape); only when every connection is busy is the new
//! one refused. hyper's header-read timeout closes a connection that is slow to send its
//! headers, and one idle between keep-alive requests for as long. Refusals and evictions are
//! counted in `metrics.rs`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::Request;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tower_service::Service;

use crate::metrics::DaemonMetrics;

/// What a listener answers: every request through `router`, except `GET /probe` when
/// `probe` is given, which goes to its handler directly. A scrape per target makes it the
/// request sent most often, and the router's matching and boxing are a few percent of it.
#[derive(Clone)]
pub struct Endpoints {
    pub router: Router,
    pub probe: Option<super::Shared>,
}

impl From<Router> for Endpoints {
    fn from(router: Router) -> Self {
        Endpoints {
            router,
            probe: None,
        }
    }
}

/// How the server bounds its clients.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections held at once.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a keep-alive
    /// connection may sit idle between requests.
    pub header_timeout: Duration,
}

/// Connections at most, whatever the fd limit.
pub const MAX_CONNECTIONS: usize = 512;
/// The default header-read and keep-alive idle timeout.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: max_connections(fd_limit()),
            header_timeout: HEADER_TIMEOUT,
        }
    }
}

/// The process's soft limit on open files (RLIMIT_NOFILE), read from `/proc/self/limits`;
/// 1024, the usual default, when it cannot be read.
pub fn fd_limit() -> u64 {
    use procfs::process::{LimitValue, Process};
    match Process::myself().and_then(|p| p.limits()) {
        Ok(limits) => match limits.max_open_files.soft_limit {
            LimitValue::Value(n) => n,
            LimitValue::Unlimited => u64::MAX,
        },
        Err(_) => 1024,
    }
}

/// A quarter of the fd limit, at most [`MAX_CONNECTIONS`] and at least 16: three quarters stay
/// for probes (a connection or a DNS socket each), the store and the watcher. Under the usual
/// 1024 that is 256.
pub fn max_connections(fd_limit: u64) -> usize {
    (fd_limit / 4).clamp(16, MAX_CONNECTIONS as u64) as usize
}

/// One open connection, as the accept loop sees it.
#[derive(Default)]
struct Conn {
    /// Requests in flight (their response bodies included).
    active: AtomicUsize,
    /// Set once the connection is chosen to be closed, so it is not chosen twice.
    evicting: AtomicBool,
    evict: Notify,
}

/// The open connections, oldest first.
#[derive(Default)]
struct Conns {
    open: Mutex<BTreeMap<u64, Arc<Conn>>>,
}

impl Conns {
    fn add(&self, id: u64) -> Arc<Conn> {
        let conn = Arc::new(Conn::default());
        self.lock().insert(id, conn.clone());
        conn
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    /// Asks the oldest idle connection to close; false if every connection is busy.
    fn evict_idle(&self) -> bool {
        let open = self.lock();
        let idle = open.values().find(|c| {
            c.active.load(Ordering::Acquire) == 0 && !c.evicting.swap(true, Ordering::AcqRel)
        });
        match idle {
            Some(conn) => {
                conn.evict.notify_one();
                true
            }
            None => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The main server on a thread of its own, with a single-threaded runtime.
///
/// Requests are short and mostly wait on sockets: `/probe` runs its probe in the request's
/// own task, and the heavy handlers (`/metrics`, the overview) already render on blocking
/// threads. On one thread a request, its probe's connection and the answer never hop
/// between workers, which costs a quarter of the CPU of a `/probe` on the shared
/// multi-threaded runtime (futex wake-ups and context switches, measured in
/// `cargo bench --bench load`). The scheduled probes keep every core, and a burst of them no
/// longer delays a scrape or an acknowledgement.
pub struct ServerThread {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServerThread {
    /// Starts serving `router` on `listener` (bound by the caller's runtime) on a new thread.
    pub fn spawn(
        listener: TcpListener,
        endpoints: Endpoints,
        limits: Limits,
        metrics: Arc<DaemonMetrics>,
    ) -> std::io::Result<ServerThread> {
        let listener = listener.into_std()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("slowburn-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => {
                            tokio::select! {
                                () = serve(listener, endpoints, limits, metrics) => {}
                                _ = stopped => {}
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "server: cannot take the listener"),
                    }
                });
                // Blocking renders still going are not waited for.
                runtime.shutdown_background();
            })?;
        Ok(ServerThread {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops accepting and drops every connection; returns once the thread has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// Serves `endpoints` on `listener` within `limits` until the task is aborted.
pub async fn serve(
    listener: TcpListener,
    endpoints: impl Into<Endpoints>,
    limits: Limits,
    metrics: Arc<DaemonMetrics>,
) {
    let endpoints = endpoints.into();
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    metrics
        .server_connections_max
        .store(limits.max_connections as u64, Ordering::Relaxed);
    let conns = Arc::new(Conns::default());
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(64 * 1024);
    let mut next_id = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: the fds are gone for now. Back off instead of spinning;
                // the connection cap keeps the server's own share from being the cause.
                tracing::warn!(error = %e, "server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) if conns.evict_idle() => {
                metrics.server_evicted.fetch_add(1, Ordering::Relaxed);
                // The evicted connection ends within moments and hands over its slot.
                match tokio::time::timeout(Duration::from_secs(1), slots.clone().acquire_owned())
                    .await
                {
                    Ok(Ok(permit)) => permit,
                    _ => {
                        metrics.server_refused.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            Err(_) => {
                metrics.server_refused.fetch_add(1, Ordering::Relaxed);
                continue;
            }
        };
        next_id += 1;
        let id = next_id;
        let conn = conns.add(id);
        let conns = conns.clone();
        let endpoints = endpoints.clone();
        let builder = builder.clone();
        let metrics = metrics.clone();
        metrics.server_connections.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let counted = conn.clone();
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let guard = Active::new(counted.clone());
                let endpoints = endpoints.clone();
                async move {
                    let request = request.map(Body::new);
                    let response = match endpoints.probe {
                        Some(shared)
                            if request.method() == http::Method::GET
                                && request.uri().path() == "/probe" =>
                        {
                            super::probe_endpoint::answer(shared, request).await
                        }
                        _ => endpoints.router.clone().call(request).await?,
                    };
                    Ok::<_, Infallible>(response.map(|body| Guarded {
                        body,
                        _guard: guard,
                    }))
                }
            });
            let served = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(served);
            tokio::select! {
                _ = served.as_mut() => {}
                _ = conn.evict.notified() => {
                    served.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(1), served).await;
                }
            }
            conns.remove(id);
            metrics.server_connections.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
        });
    }
}

/// Marks a request in flight until its response body is done or dropped.
struct Active(Arc<Conn>);

impl Active {
    fn new(conn: Arc<Conn>) -> Self {
        conn.active.fetch_add(1, Ordering::AcqRel);
        Active(conn)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its connection marked busy while it streams.
struct Guarded {
    body: Body,
    _guard: Active,
}

impl hyper::body::Body for Guarded {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_three_quarters_of_the_fds() {
        assert_eq!(max_connections(1024), 256);
        assert_eq!(max_connections(20_000), MAX_CONNECTIONS);
        assert_eq!(max_connections(40), 16);
        assert!(fd_limit() >= 16);
    }

    async fn start(limits: Limits) -> (std::net::SocketAddr, Arc<DaemonMetrics>) {
        let router = Router::new().route("/", axum::routing::get(|| async { "ok" }));
        start_with(limits, router).await
    }

    async fn start_with(
        limits: Limits,
        router: Router,
    ) -> (std::net::SocketAddr, Arc<DaemonMetrics>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(DaemonMetrics::default());
        tokio::spawn(serve(listener, router, limits, metrics.clone()));
        (addr, metrics)
    }

    async fn get(addr: std::net::SocketAddr) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut text = String::new();
        let _ = stream.read_to_string(&mut text).await;
        text
    }

    /// Reads until the server closes; the bytes it sent.
    async fn until_closed(stream: &mut tokio::net::TcpStream) -> usize {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        let mut total = 0;
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
            total += n;
        }
        total
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_connection_is_closed_after_the_header_timeout() {
        let limits = Limits {
            max_connections: 4,
            header_timeout: Duration::from_secs(10),
        };
        let (addr, metrics) = start(limits).await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let started = tokio::time::Instant::now();
        until_closed(&mut silent).await;
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(12),
            "{waited:?}"
        );
        // A keep-alive connection idle after its answer is closed the same way.
        use tokio::io::AsyncWriteExt;
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert!(until_closed(&mut idle).await > 0);
        assert!(get(addr).await.ends_with("ok"));
        assert_eq!(metrics.server_refused.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn when_full_the_oldest_idle_connection_makes_room() {
        let limits = Limits {
            max_connections: 3,
            header_timeout: Duration::from_secs(600),
        };
        let (addr, metrics) = start(limits).await;
        let mut idle = Vec::new();
        for _ in 0..3 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        // Full of idle sockets, and still a request is answered: the oldest gives way.
        assert!(get(addr).await.ends_with("ok"));
        assert_eq!(until_closed(&mut idle[0]).await, 0);
        assert_eq!(metrics.server_evicted.load(Ordering::Relaxed), 1);
        assert!(metrics.server_connections.load(Ordering::Relaxed) <= 3);
        assert_eq!(metrics.server_connections_max.load(Ordering::Relaxed), 3);
    }

    #[tokio::test]
    async fn when_full_and_every_connection_is_busy_a_new_one_is_refused_and_counted() {
        use tokio::io::AsyncWriteExt;
        let started = Arc::new(Notify::new());
        let signal = started.clone();
        let router = Router::new().route(
            "/slow",
            axum::routing::get(move || {
                let signal = signal.clone();
                async move {
                    signal.notify_one();
                    std::future::pending::<&'static str>().await
                }
            }),
        );
        let limits = Limits {
            max_connections: 1,
            header_timeout: Duration::from_secs(600),
        };
        let (addr, metrics) = start_with(limits, router).await;
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        started.notified().await;
        // The one slot is busy: the newcomer is closed unanswered, and counted.
        assert_eq!(get(addr).await, "");
        assert_eq!(metrics.server_refused.load(Ordering::Relaxed), 1);
        assert_eq!(metrics.server_evicted.load(Ordering::Relaxed), 0);
        assert_eq!(metrics.server_connections.load(Ordering::Relaxed), 1);
    }
}
