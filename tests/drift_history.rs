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

#[tokio::test]
async fn a_leak_recorded_before_a_restart_is_still_seen_after_it() {
    let text = "probes:\n  - name: worker\n    process: {match: {name: no-such-process-here}}\n    drift:\n      rss: {limit: 2GiB, horizon: 6h}\n";
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let config = config::load(
        &Source::Text {
            name: "d.yaml".into(),
            text: text.into(),
        },
        &ctx,
    )
    .unwrap();
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
    results.configure(&registry);

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
    };
    let workers = again.configure(
        HashMap::from([("worker".to_string(), info)]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store, again.clone());
    results.configure(&registry);
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
