//! Evidence survives a restart: stored history is replayed into the detectors on start (and
//! on reload), so a leak that began hours before a deploy is still seen, with its ETA, and an
//! alert raised before the restart is not raised twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use slowburn::alert::service::{AlertService, unix_now};
use slowburn::alert::{ProbeInfo, State};
use slowburn::config::{self, Source};
use slowburn::probe::{BuildContext, net::NetContext};
use slowburn::results::Results;
use slowburn::state::Registry;
use slowburn::store::{Sample, Store};

const MIB: f64 = 1024.0 * 1024.0;

fn load(text: &str) -> config::Config {
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let source = Source::Text {
        name: "probes.yaml".into(),
        text: text.into(),
    };
    config::load(&source, &ctx).unwrap()
}

#[tokio::test]
async fn a_leak_recorded_before_a_restart_is_still_seen_after_it() {
    let text = "probes:\n  - name: worker\n    process: {match: {name: no-such-process-here}}\n    drift:\n      rss: {limit: 2GiB, horizon: 6h}\n";
    let config = load(text);
    let dir = std::env::temp_dir().join(format!("slowburn-drift-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());

    // Six flat hours, then 90 minutes of a leak heading for 2 GiB in six hours, up to now.
    let now = unix_now();
    let onset = now - 90.0 * 60.0;
    let mut t = onset - 6.0 * 3600.0;
    let mut rows = Vec::new();
    let mut k: u64 = 7;
    while t <= now {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
        let noise = 1.0 + ((k >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.04;
        let level = 400.0 * MIB
            + if t > onset {
                (2048.0 - 400.0) * MIB * (t - onset) / (6.0 * 3600.0)
            } else {
                0.0
            };
        rows.push((
            "worker",
            "rss",
            Sample {
                t,
                v: level * noise,
            },
        ));
        t += 15.0;
    }
    store.append_samples(&rows).unwrap();

    let registry = Arc::new(Registry::new(config.probes, None));
    let alerts = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let info = ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    // No notifiers, so no delivery workers to spawn.
    let workers = alerts.configure(
        HashMap::from([("worker".to_string(), info)]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store.clone(), alerts.clone());
    results.configure(&registry).await;

    let drift = registry.get("worker").unwrap().drift();
    let (signal, state) = &drift[0];
    assert_eq!(signal, "rss");
    assert!(state.is_firing("trend"), "{state:?}");
    let eta = state.eta_seconds.unwrap();
    assert!(
        eta > 3.0 * 3600.0 && eta < 6.0 * 3600.0,
        "eta {eta}s; the true breach is 4h30m away"
    );
    let active: Vec<_> = alerts
        .alerts()
        .into_iter()
        .filter(|a| a.state != State::Resolved && a.reason == "drift:rss")
        .collect();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].dedup_key, "worker:drift:rss");
    assert_eq!(active[0].severity, slowburn::alert::Severity::Page);
    assert!(
        active[0].message.contains("reaches 2.0 GiB")
            || active[0].message.contains("reaches 2 GiB"),
        "{}",
        active[0].message
    );

    // A reload (or a second restart) replays again without opening a second alert.
    let again = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let info = ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    let workers = again.configure(
        HashMap::from([("worker".to_string(), info)]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store, again.clone());
    results.configure(&registry).await;
    let before: Vec<u64> = alerts
        .alerts()
        .iter()
        .filter(|a| a.state != State::Resolved)
        .map(|a| a.id)
        .collect();
    let after: Vec<u64> = again
        .alerts()
        .iter()
        .filter(|a| a.state != State::Resolved)
        .map(|a| a.id)
        .collect();
    assert_eq!(
        before, after,
        "the restored alerts are reused, none is opened twice"
    );
}

/// Orders per minute with a daily shape: a dinner peak, quiet nights.
fn usual_orders(t: f64) -> f64 {
    let hour = t.rem_euclid(86_400.0) / 3600.0;
    4.0 + 40.0 * (-((hour - 19.0) / 2.0).powi(2)).exp()
        + 20.0 * (-((hour - 12.5) / 1.5).powi(2)).exp()
}

#[tokio::test]
async fn a_seasonal_profile_learned_from_stored_days_pages_right_after_a_restart() {
    let text = "probes:\n  - name: orders\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:9\", query: \"sum(orders)\"}\n    drift:\n      value: {seasonal: {period: 1d, below: 30%, for: 10m}}\n  - name: fresh\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:9\", query: \"sum(orders)\"}\n    drift:\n      value: {seasonal: {period: 1d, below: 30%, for: 10m}}\n";
    let config = load(text);
    let dir =
        std::env::temp_dir().join(format!("slowburn-seasonal-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());

    // Five days of usual trade, then the last 20 minutes at a quarter of it: a shortfall
    // that began while slowburn was down. `fresh` has only six hours stored.
    let now = unix_now();
    let mut rows = Vec::new();
    let mut k: u64 = 11;
    let mut t = now - 5.0 * 86_400.0;
    while t <= now {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
        let noise = 1.0 + ((k >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.1;
        let factor = if t > now - 20.0 * 60.0 { 0.25 } else { 1.0 };
        let v = (usual_orders(t) * factor * noise).round();
        rows.push(("orders", "value", Sample { t, v }));
        if t > now - 6.0 * 3600.0 {
            rows.push(("fresh", "value", Sample { t, v }));
        }
        t += 60.0;
    }
    store.append_samples(&rows).unwrap();

    let registry = Arc::new(Registry::new(config.probes, None));
    let alerts = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let info = || ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    let workers = alerts.configure(
        HashMap::from([
            ("orders".to_string(), info()),
            ("fresh".to_string(), info()),
        ]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store.clone(), alerts.clone());
    results.configure(&registry).await;

    let drift = registry.get("orders").unwrap().drift();
    let (signal, state) = &drift[0];
    assert_eq!(signal, "value");
    assert!(state.is_firing("seasonal"), "{state:?}");
    let active: Vec<_> = alerts
        .alerts()
        .into_iter()
        .filter(|a| a.state != State::Resolved)
        .collect();
    assert_eq!(active.len(), 1, "{active:?}");
    assert_eq!(active[0].dedup_key, "orders:seasonal:value");
    assert_eq!(active[0].severity, slowburn::alert::Severity::Page);
    assert!(
        active[0].message.contains("usually") && active[0].message.contains('−'),
        "{}",
        active[0].message
    );

    let fresh = registry.get("fresh").unwrap().drift();
    let (_, state) = &fresh[0];
    assert!(!state.any_firing(), "{state:?}");
    assert!(
        state.notes[0].1 == "learning: 5h59m of 1d stored",
        "{:?}",
        state.notes
    );
}

/// A run of a query that answered several series, at unix time `t`.
fn several(t: f64, values: &[(&str, f64)]) -> slowburn::probe::Outcome {
    slowburn::probe::Outcome {
        at: std::time::UNIX_EPOCH + std::time::Duration::from_secs_f64(t),
        success: true,
        duration: std::time::Duration::ZERO,
        phases: Box::default(),
        signals: vec![("series", values.len() as f64)].into(),
        failure: None,
        checks: Box::default(),
        notes: Box::default(),
        series: (values.iter())
            .map(|(labels, v)| ("value", Box::<str>::from(*labels), *v))
            .collect(),
        log: None,
        certificate: None,
    }
}

#[tokio::test]
async fn each_series_of_a_query_is_judged_on_its_own_and_kept_across_a_restart() {
    let text = "probes:\n  - name: handoffs\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:9\", query: \"sum by (partner) (rate(handoffs_total[5m]))\"}\n    drift:\n      value: {seasonal: {period: 1d, below: 30%, for: 10m}}\n";
    let config = load(text);
    let dir = std::env::temp_dir().join(format!("slowburn-series-history-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let (a, b, c) = (r#"{partner="a"}"#, r#"{partner="b"}"#, r#"{partner="c"}"#);

    // Five days of both partners' usual hand-offs, stored under their own series names.
    let now = unix_now();
    let live = now - 20.0 * 60.0;
    let mut rows = Vec::new();
    let mut k: u64 = 5;
    let mut noise = || {
        k = k.wrapping_mul(6364136223846793005).wrapping_add(1);
        1.0 + ((k >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 0.1
    };
    let (name_a, name_b) = (format!("value{a}"), format!("value{b}"));
    let mut t = now - 5.0 * 86_400.0;
    while t < live {
        rows.push((
            "handoffs",
            name_a.as_str(),
            Sample {
                t,
                v: (usual_orders(t) * noise()).round(),
            },
        ));
        rows.push((
            "handoffs",
            name_b.as_str(),
            Sample {
                t,
                v: (2.0 * usual_orders(t) * noise()).round(),
            },
        ));
        t += 60.0;
    }
    store.append_samples(&rows).unwrap();
    assert_eq!(
        store.series_of("handoffs", "value").unwrap(),
        vec![name_a.clone(), name_b.clone()]
    );

    let registry = Arc::new(Registry::new(config.probes, None));
    let alerts = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let info = || ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    let workers = alerts.configure(
        HashMap::from([("handoffs".to_string(), info())]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store.clone(), alerts.clone());
    results.configure(&registry).await;
    let state = registry.get("handoffs").unwrap();

    // The last 20 minutes live: partner b at half its usual rate, a as usual, and a
    // partner c that was never seen before.
    let mut t = live;
    while t <= now {
        let usual = usual_orders(t);
        let run = several(
            t,
            &[
                (a, (usual * noise()).round()),
                (b, (0.5 * usual * noise()).round()),
                (c, 3.0),
            ],
        );
        results.handle(state, &run);
        t += 60.0;
    }
    results.flush().await;

    let drift: HashMap<String, _> = state.drift().into_iter().collect();
    assert!(!drift[&name_a].any_firing(), "{:?}", drift[&name_a]);
    assert!(drift[&name_b].is_firing("seasonal"), "{:?}", drift[&name_b]);
    let name_c = format!("value{c}");
    assert!(
        drift[&name_c].notes[0].1.starts_with("learning:"),
        "a series seen for the first time learns: {:?}",
        drift[&name_c]
    );
    let paged: Vec<_> = (alerts.alerts().into_iter())
        .filter(|a| a.state != State::Resolved)
        .collect();
    assert_eq!(paged.len(), 1, "only partner b pages: {paged:?}");
    assert_eq!(paged[0].dedup_key, format!("handoffs:seasonal:{name_b}"));
    assert!(
        paged[0].message.contains(r#"partner="b""#) && paged[0].message.contains("usually"),
        "{}",
        paged[0].message
    );

    // A restart: every series' detectors come back from the store, none pages twice.
    let again = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let workers = again.configure(
        HashMap::from([("handoffs".to_string(), info())]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let fresh = Arc::new(Registry::new(load(text).probes, None));
    let mut results = Results::new(store.clone(), again.clone());
    results.configure(&fresh).await;
    let drift: HashMap<String, _> = fresh.get("handoffs").unwrap().drift().into_iter().collect();
    assert_eq!(
        drift.len(),
        4,
        "value and its three series: {:?}",
        drift.keys()
    );
    assert!(drift[&name_b].is_firing("seasonal"), "{:?}", drift[&name_b]);
    let ids: Vec<u64> = (again.alerts().iter())
        .filter(|a| a.state != State::Resolved)
        .map(|a| a.id)
        .collect();
    assert_eq!(ids, vec![paged[0].id]);
}

#[tokio::test]
async fn series_that_come_and_go_keep_a_bounded_number_of_detectors() {
    let text = "probes:\n  - name: pods\n    interval: 1m\n    prometheus: {url: \"http://127.0.0.1:9\", query: \"up\"}\n    drift:\n      value: {seasonal: {period: 1d, below: 30%, for: 10m}}\n";
    let config = load(text);
    let dir = std::env::temp_dir().join(format!("slowburn-series-churn-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let registry = Arc::new(Registry::new(config.probes, None));
    let alerts = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let mut results = Results::new(store, alerts);
    results.configure(&registry).await;
    let state = registry.get("pods").unwrap();
    // Every run a new pod (a rollout that never ends): the oldest series are dropped.
    let start = unix_now() - 86_400.0;
    let extra = 20;
    for i in 0..slowburn::results::SERIES_MAX + extra {
        let labels = format!("{{pod=\"web-{i}\"}}");
        results.handle(state, &several(start + i as f64 * 60.0, &[(&labels, 1.0)]));
    }
    let drift: Vec<String> = state.drift().into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        drift.len(),
        slowburn::results::SERIES_MAX + 1,
        "value and the kept series"
    );
    assert!(!drift.contains(&"value{pod=\"web-0\"}".to_string()));
    let newest = format!(
        "value{{pod=\"web-{}\"}}",
        slowburn::results::SERIES_MAX + extra - 1
    );
    assert!(drift.contains(&newest));
}

/// With a shared history (`storage: postgres:`; here a second store stands in for it), a
/// replica that takes a probe over — its next run comes after three intervals without one —
/// rebuilds the probe's detectors from the samples the other replica wrote meanwhile, and a
/// probe it runs without a pause is not rebuilt.
#[tokio::test]
async fn a_probe_taken_over_is_judged_on_the_history_its_last_replica_wrote() {
    let text = "probes:\n  - name: worker\n    interval: 500ms\n    process: {match: {name: no-such-process-here}}\n    drift:\n      rss: {limit: 2GiB, horizon: 6h}\n";
    let config = load(text);
    let local = Arc::new(Store::open(std::path::Path::new(":memory:")).unwrap());
    let shared = Arc::new(Store::open(std::path::Path::new(":memory:")).unwrap());
    let registry = Arc::new(Registry::new(config.probes, None));
    let alerts = AlertService::new(local.clone(), "http://127.0.0.1:9464".into());
    let info = ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    let workers = alerts.configure(
        HashMap::from([("worker".to_string(), info)]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let (tx, _rx) = tokio::sync::mpsc::channel(4);
    let metrics = Arc::new(slowburn::metrics::DaemonMetrics::new());
    let mut results = Results::new(local, alerts).with_shared_history(shared.clone(), tx, metrics);
    results.configure(&registry).await;
    let state = registry.get("worker").unwrap().clone();
    let firing = || state.drift()[0].1.is_firing("trend");
    assert!(!firing(), "no history yet");

    // Another replica ran it: 90 minutes of a leak after six flat hours.
    let now = unix_now();
    let onset = now - 90.0 * 60.0;
    let rows: Vec<(&str, &str, Sample)> = (0..=(7.5 * 240.0) as usize)
        .map(|i| {
            let t = onset - 6.0 * 3600.0 + 15.0 * i as f64;
            let leak = (t - onset).max(0.0) * (2048.0 - 400.0) * MIB / (6.0 * 3600.0);
            let v = 400.0 * MIB + leak + if i % 2 == 0 { MIB } else { -MIB };
            ("worker", "rss", Sample { t, v })
        })
        .collect();
    shared.append_samples(&rows).unwrap();
    results.catch_up(&state).await;
    assert!(!firing(), "run here a moment ago: not taken over");
    tokio::time::sleep(std::time::Duration::from_millis(1600)).await;
    results.catch_up(&state).await;
    assert!(firing(), "{:?}", state.drift());
}
