//! The scheduler with real probes: hung targets do not delay healthy probes, a probe is never
//! stacked on itself, and every start's lateness is recorded.

mod support;

use std::sync::Arc;
use std::time::Duration;

use slowburn::config::{self, Source};
use slowburn::metrics::{DaemonMetrics, bucket_quantile};
use slowburn::probe::{BuildContext, net::NetContext};
use slowburn::scheduler::{self, Runner};
use slowburn::state::Registry;
use tokio::sync::{Semaphore, watch};

fn registry(text: String) -> Arc<Registry> {
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let config = config::load(
        &Source::Text {
            name: "s.yaml".into(),
            text,
        },
        &ctx,
    )
    .unwrap();
    Arc::new(Registry::new(config.probes, None))
}

async fn run_for(registry: Arc<Registry>, limit: usize, how_long: Duration) -> Arc<DaemonMetrics> {
    let metrics = Arc::new(DaemonMetrics::new());
    let runner = Runner {
        limit: Arc::new(Semaphore::new(limit)),
        shard: None,
        metrics: metrics.clone(),
        outcomes: None,
    };
    let (stop, stopped) = watch::channel(false);
    let task = tokio::spawn(scheduler::run(registry, runner, stopped));
    tokio::time::sleep(how_long).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    metrics
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_targets_do_not_delay_healthy_probes() {
    let healthy = support::http_server(None, |_, _| support::ok("fine")).await;
    let hung = support::silent_tcp().await;
    let mut text = format!(
        "probes:\n  - {{name: healthy, interval: 200ms, timeout: 150ms, http: {{url: \"http://{healthy}/\"}}}}\n"
    );
    for i in 0..50 {
        text.push_str(&format!(
            "  - {{name: hung-{i}, interval: 1s, timeout: 900ms, http: {{url: \"http://{hung}/\"}}}}\n"
        ));
    }
    let registry = registry(text);
    let metrics = run_for(registry.clone(), 4096, Duration::from_millis(2100)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // let hung runs reach their deadline

    let healthy = registry.get("healthy").unwrap().snapshot();
    assert!(
        (9..=11).contains(&healthy.runs),
        "healthy ran {} times in 2.1 s at 200 ms",
        healthy.runs
    );
    assert!(healthy.failures.is_empty(), "{:?}", healthy.failures);
    assert_eq!(healthy.skipped, 0);
    for i in 0..50 {
        let hung = registry.get(&format!("hung-{i}")).unwrap().snapshot();
        assert!(hung.runs >= 1, "hung-{i} never ran");
        let last = hung.last.unwrap();
        assert_eq!(
            last.failure.as_ref().unwrap().to_string(),
            "timeout after 900ms in phase processing"
        );
    }
    // Every start is recorded; how late they are is measured by the load benchmark, not here.
    let (_, count, _) = metrics.schedule_lag.read();
    assert!(count >= 100, "{count} starts recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_probe_still_running_is_skipped_not_stacked() {
    let hung = support::silent_tcp().await;
    // One permit: the hung probe holds it, so the fast probe's runs wait and its ticks pile up.
    let text = format!(
        "probes:\n  - {{name: hog, interval: 1s, timeout: 900ms, tcp: {{address: \"{hung}\", expect: never}}}}\n  - {{name: fast, interval: 100ms, timeout: 50ms, tcp: {{address: \"{hung}\"}}}}\n"
    );
    let registry = registry(text);
    let metrics = run_for(registry.clone(), 1, Duration::from_millis(1500)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let fast = registry.get("fast").unwrap().snapshot();
    assert!(fast.skipped > 0, "{fast:?}");
    assert!(fast.runs + fast.skipped <= 16, "{fast:?}");
    let (buckets, count, _) = metrics.schedule_lag.read();
    let worst = bucket_quantile(1.0, &buckets, count).unwrap();
    assert!(
        worst >= 0.1,
        "waiting for the in-flight limit shows as lag ({worst}s)"
    );
}
