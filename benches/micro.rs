//! Criterion micro-benchmarks of the hot paths, each at the scale slowburn promises
//! (100,000 configured probes on two cores): loading probe files, scheduling, one HTTP probe on
//! loopback, rendering `/metrics`, one detector update per sample, and one alert-engine
//! transition per outcome.
//!
//! Run with `cargo bench --bench micro` (a few minutes on 2 cores; sample sizes are kept small
//! on purpose). The end-to-end comparison with blackbox_exporter is `benches/load.rs`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use slowburn::config::{self, Config, Source};
use slowburn::metrics::{self, DaemonMetrics};
use slowburn::probe::{self, BuildContext, Check, Outcome, net::NetContext};
use slowburn::scheduler::{self, Runner};
use slowburn::state::Registry;
use tokio::sync::{Semaphore, watch};

/// How many probes the scale benches configure.
const SCALE: usize = 100_000;

fn context() -> BuildContext {
    BuildContext {
        net: Arc::new(NetContext::new()),
    }
}

/// A probe file of `n` probes as an SRE would write it: half HTTP with a status assertion (one
/// in ten also with a body regex), half TCP, every probe labelled with its team, intervals
/// from 10 s to 300 s.
fn probe_file(n: usize) -> String {
    let mut out = String::with_capacity(n * 160);
    out.push_str("defaults:\n  interval: 60s\n  timeout: 5s\nprobes:\n");
    let intervals = ["10s", "60s", "120s", "300s"];
    for i in 0..n {
        let interval = intervals[i % intervals.len()];
        let team = i % 50;
        out.push_str(&format!(
            "  - name: probe-{i:06}\n    labels: {{team: team-{team}, tier: \"{}\"}}\n    interval: {interval}\n",
            i % 3
        ));
        if i % 2 == 0 {
            out.push_str(&format!(
                "    http:\n      url: http://svc-{}.internal:8080/health\n      expect:\n        status: [\"2xx\"]\n",
                i % 1000
            ));
            if i % 20 == 0 {
                out.push_str("        body_regex: '\"status\":\\s*\"ok\"'\n");
            }
        } else {
            out.push_str(&format!(
                "    tcp: {{address: \"db-{}.internal:5432\"}}\n",
                i % 1000
            ));
        }
    }
    out
}

fn load(text: String, ctx: &BuildContext) -> Config {
    let source = Source::Text {
        name: "bench.yaml".into(),
        text,
    };
    match config::load(&source, ctx) {
        Ok(config) => config,
        Err(errors) => panic!("the generated probe file is invalid: {}", errors[0]),
    }
}

/// Reading, validating and building every probe of a 100,000-probe file.
fn config_load(c: &mut Criterion) {
    let text = probe_file(SCALE);
    let ctx = context();
    let mut group = c.benchmark_group("config");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(SCALE as u64));
    group.bench_function("load_100k_probes", |b| {
        b.iter(|| {
            let source = Source::Text {
                name: "bench.yaml".into(),
                text: text.clone(),
            };
            black_box(config::load(&source, &ctx).map(|c| c.probes.len()))
        })
    });
    group.finish();
}

/// The scheduler's own cost: first slots for 100,000 names, and the real `scheduler::run`
/// over 100,000 probes for 20 s of paused (virtual) time. The in-flight limit is closed, so
/// each tick costs its heap pop and push, the dispatch and the task spawn, but no probe runs.
fn scheduler_cost(c: &mut Criterion) {
    let names: Vec<String> = (0..SCALE).map(|i| format!("probe-{i:06}")).collect();
    let mut group = c.benchmark_group("scheduler");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.throughput(Throughput::Elements(SCALE as u64));
    group.bench_function("first_slots_100k", |b| {
        let now = SystemTime::now();
        b.iter(|| {
            names
                .iter()
                .map(|n| scheduler::until_first_slot(n, Duration::from_secs(60), now))
                .fold(Duration::ZERO, |a, d| a.max(d))
        })
    });

    let ctx = context();
    let mut text = String::from("defaults:\n  interval: 10s\n  timeout: 1s\nprobes:\n");
    for name in &names {
        text.push_str(&format!(
            "  - name: {name}\n    tcp: {{address: \"127.0.0.1:9\"}}\n"
        ));
    }
    let registry = Arc::new(Registry::new(load(text, &ctx).probes, None));
    let virtual_time = Duration::from_secs(20);
    // 100,000 probes at 10 s: 10,000 ticks per virtual second.
    let ticks = SCALE as u64 / 10 * virtual_time.as_secs();
    group.throughput(Throughput::Elements(ticks));
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("run_100k_probes_20s_virtual", |b| {
        b.iter(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .expect("runtime");
            let limit = Arc::new(Semaphore::new(0));
            limit.close();
            let runner = Runner {
                limit,
                metrics: Arc::new(DaemonMetrics::new()),
                outcomes: None,
            };
            let registry = registry.clone();
            runtime.block_on(async move {
                let (stop, stopped) = watch::channel(false);
                let task = tokio::spawn(scheduler::run(registry, runner, stopped));
                tokio::time::sleep(virtual_time).await;
                let _ = stop.send(true);
                let _ = task.await;
            });
        })
    });
    group.finish();
}

/// One HTTP probe end to end against a hyper server on loopback: resolve (none for an IP
/// literal, hickory's hosts lookup for `localhost`), connect, request, response, status
/// assertion, close.
fn http_probe(c: &mut Criterion) {
    let addr = start_server();
    let ctx = context();
    let mut group = c.benchmark_group("http_probe");
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    for host in ["127.0.0.1", "localhost"] {
        let text = format!(
            "probes:\n  - name: loopback\n    http:\n      url: http://{host}:{}/health\n      expect:\n        status: [200]\n        body_regex: '^ok'\n",
            addr.port()
        );
        let config = load(text, &ctx);
        let probe = config.probes[0].probe.clone();
        let outcome = runtime.block_on(probe::execute(&probe, Duration::from_secs(5)));
        assert!(
            outcome.success,
            "the loopback probe fails: {:?}",
            outcome.failure
        );
        group.bench_with_input(BenchmarkId::new("execute", host), &probe, |b, probe| {
            b.iter(|| runtime.block_on(probe::execute(probe, Duration::from_secs(5))))
        });
    }
    group.finish();
}

/// A hyper server answering `ok` on its own thread, like the targets of the load bench.
fn start_server() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_request| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"ok\n")),
                        ))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
    });
    addr
}

/// `/metrics` for 10,000 and 100,000 HTTP probes, each holding a realistic successful outcome
/// (five timed phases, status, body size, redirects, latency, one passed check), rendered as
/// the server streams it: in chunks, each handed to a sink (here one that counts and drops it)
/// as it fills, so the figure is the render, not the cost of gluing 136 MB back together.
fn metrics_render(c: &mut Criterion) {
    let ctx = context();
    let mut group = c.benchmark_group("metrics");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for n in [10_000, SCALE] {
        let mut text = String::from("probes:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - name: probe-{i:06}\n    labels: {{team: team-{}, tier: \"{}\"}}\n    http: {{url: \"http://svc-{}.internal:8080/health\"}}\n",
                i % 50,
                i % 3,
                i % 1000
            ));
        }
        let registry = Registry::new(load(text, &ctx).probes, None);
        for (i, state) in registry.probes.iter().enumerate() {
            state.record(Arc::new(http_outcome(i)));
        }
        let daemon = DaemonMetrics::new();
        for i in 0..n {
            daemon
                .schedule_lag
                .observe(Duration::from_micros((i % 3000) as u64));
        }
        let size = metrics::render(&registry, &daemon, &metrics::AlertGauges::default()).len();
        eprintln!("metrics/render/{n}: {size} bytes");
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_with_input(BenchmarkId::new("render", n), &registry, |b, registry| {
            b.iter(|| {
                let mut bytes = 0;
                let alerts = metrics::AlertGauges::default();
                metrics::render_chunks(registry, &daemon, &alerts, &mut |chunk| {
                    bytes += chunk.len();
                    true
                });
                assert_eq!(bytes, size);
            })
        });
    }
    group.finish();
}

fn http_outcome(i: usize) -> Outcome {
    let ms = |v: f64| Duration::from_secs_f64(v / 1000.0);
    let jitter = (i % 100) as f64 / 100.0;
    Outcome {
        at: SystemTime::now(),
        success: true,
        duration: ms(3.1 + jitter),
        phases: vec![
            ("resolve", ms(0.2)),
            ("connect", ms(0.4 + jitter)),
            ("tls", ms(0.0)),
            ("processing", ms(2.1)),
            ("transfer", ms(0.1)),
        ]
        .into(),
        signals: vec![
            ("redirects", 0.0),
            ("latency", 0.0031 + jitter / 1000.0),
            ("body_bytes", 17.0),
            ("status", 200.0),
        ]
        .into(),
        failure: None,
        checks: vec![Check {
            name: "status",
            passed: true,
            detail: "200 in [2xx]".into(),
        }]
        .into(),
        notes: Box::default(),
        series: Box::default(),
        log: None,
        certificate: None,
    }
}

/// One sample through the detectors of one watched signal (trend + change, and the SLO burn
/// counters), with a day of history already behind it: the steady-state cost per sample.
fn detector_update(c: &mut Criterion) {
    use slowburn::detect::{
        ChangeSpec, DetectorSpec, DriftSpec, Seasonal, SeasonalSpec, SignalDetectors, SloSpec, Unit,
    };
    let mut group = c.benchmark_group("detector_update");
    let drift = DetectorSpec::new("rss", Unit::Bytes)
        .with_drift(DriftSpec::new(2.0 * 1024.0 * 1024.0 * 1024.0, 6.0 * 3600.0))
        .with_change(ChangeSpec::default());
    let slo = DetectorSpec::new("success", Unit::Ratio).with_slo(SloSpec::new(0.999));
    for (name, spec) in [("trend+change", drift), ("slo_burn", slo)] {
        let mut detectors = SignalDetectors::new(spec).unwrap();
        let mut t = 1_790_000_000.0;
        let value = |t: f64| 400.0e6 + (t * 0.37).sin() * 8.0e6;
        for _ in 0..(24 * 240) {
            detectors.observe(t, value(t), false);
            t += 15.0;
        }
        group.throughput(Throughput::Elements(1));
        group.bench_function(name, |b| {
            b.iter(|| {
                t += 15.0;
                black_box(detectors.observe(t, value(t), false))
            })
        });
    }
    // The contract's weekly profile at a 1-minute interval, past its first week.
    let mut seasonal = Seasonal::new(
        "orders",
        Unit::Count,
        SeasonalSpec {
            below: Some(0.3),
            interval: 60.0,
            ..SeasonalSpec::new(7.0 * 86_400.0, 600.0)
        },
    );
    let mut t = 1_790_000_000.0;
    let orders =
        |t: f64| 50.0 + 40.0 * (t / 86_400.0 * std::f64::consts::TAU).sin() + (t * 0.37).sin();
    for _ in 0..(8 * 1440) {
        seasonal.observe(t, orders(t));
        t += 60.0;
    }
    eprintln!(
        "seasonal: {} bytes per series (weekly profile, 1-minute samples)",
        seasonal.memory_bytes()
    );
    group.bench_function("seasonal", |b| {
        b.iter(|| {
            t += 60.0;
            black_box(seasonal.observe(t, orders(t)))
        })
    });
    group.finish();
}

/// One probe result through the alert state machine: the common case (a healthy probe with an
/// alert rule) and a failing probe bumping its firing alert.
fn alert_transition(c: &mut Criterion) {
    use slowburn::alert::{Engine, Policy, ProbeInfo, Rule, Severity, Step};
    use std::collections::{BTreeMap, HashMap};
    let mut group = c.benchmark_group("alert_transition");
    let steps = vec![
        Step {
            after: 0.0,
            notify: vec!["pd".into()],
        },
        Step {
            after: 900.0,
            notify: vec!["pd2".into()],
        },
    ];
    let policy = Policy {
        name: "p".into(),
        repeat_interval: 900.0,
        steps,
        repeat: 1,
        ack_timeout: None,
    };
    let rule = Rule {
        after: 3,
        recover_after: 2,
        policy: Some("p".into()),
        severity: Severity::Page,
        runbook: None,
        summary: None,
    };
    let probes: HashMap<String, ProbeInfo> = (0..10_000)
        .map(|i| {
            (
                format!("p{i}"),
                ProbeInfo {
                    rule: Some(rule.clone()),
                    labels: BTreeMap::new(),
                    target: String::new(),
                },
            )
        })
        .collect();
    let mut engine = Engine::new();
    engine.configure(
        probes,
        HashMap::from([("p".to_string(), policy)]),
        Vec::new(),
    );
    let mut t = 0.0;
    let mut i = 0usize;
    group.throughput(Throughput::Elements(1));
    group.bench_function("healthy_outcome", |b| {
        b.iter(|| {
            i = (i + 1) % 10_000;
            t += 0.001;
            black_box(engine.observe(&format!("p{i}"), None, t))
        })
    });
    for k in 0..3 {
        engine.observe(
            "p0",
            Some(("status", "status 503 not in [200]")),
            t + k as f64,
        );
    }
    group.bench_function("failure_while_firing", |b| {
        b.iter(|| {
            t += 0.001;
            black_box(engine.observe("p0", Some(("status", "status 503 not in [200]")), t))
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    config_load,
    scheduler_cost,
    http_probe,
    metrics_render,
    detector_update,
    alert_transition
);
criterion_main!(benches);
