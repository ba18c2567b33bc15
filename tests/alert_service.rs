//! The alert service with real notifiers on loopback: a failing notifier is retried with
//! backoff and counted as failed after the bound, while the other notifiers and the escalation
//! clock carry on; records say what happened to every send.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use slowburn::alert::ProbeInfo;
use slowburn::alert::service::{AlertService, Retry, unix_now};
use slowburn::config::{self, Source};
use slowburn::probe::{BuildContext, net::NetContext};
use slowburn::store::Store;
use support::receiver::Receiver;
use support::settled;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_notifier_is_retried_then_failed_without_holding_up_the_others() {
    let (receiver, hooks) = Receiver::start();
    let text = format!(
        r#"probes:
  - {{name: svc, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, recover_after: 1, policy: p}}}}
notifiers:
  - {{name: dead, webhook: {{url: "http://{hooks}/down"}}}}
  - {{name: ok, webhook: {{url: "http://{hooks}/ok"}}}}
  - {{name: later, webhook: {{url: "http://{hooks}/later"}}}}
policies:
  - {{name: p, steps: [{{notify: [dead, ok]}}, {{after: 1s, notify: [later]}}]}}
"#
    );
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let config = config::load(
        &Source::Text {
            name: "a.yaml".into(),
            text,
        },
        &ctx,
    )
    .unwrap();
    let dir = std::env::temp_dir().join(format!("slowburn-alert-service-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let retry = Retry {
        attempts: 3,
        first_backoff: Duration::from_millis(100),
        timeout: Duration::from_secs(2),
    };
    let service = AlertService::with_retry(store.clone(), "http://127.0.0.1:9464".into(), retry);
    let info = ProbeInfo {
        rule: config.probes[0].alert.as_deref().cloned(),
        labels: BTreeMap::from([("probe".to_string(), "svc".to_string())]),
        target: "127.0.0.1:1".into(),
        parents: Vec::new(),
    };
    let alerting = config.alerting;
    // The service spawns nothing; as the daemon does, the caller runs its workers.
    for worker in service.configure(
        HashMap::from([("svc".to_string(), info)]),
        alerting.policies,
        alerting.silences,
        alerting.notifiers,
    ) {
        tokio::spawn(worker.run());
    }

    let t0 = unix_now();
    service.observe("svc", Some(("connect", "connect: refused")), t0);
    let id = service.alerts()[0].id;
    let details = |event: &str| {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, j)| p == "/ok" && j["event"] == event)
            .map(|(_, j)| j["details"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    tokio::task::spawn_blocking({
        let receiver = receiver.clone();
        move || {
            receiver.wait_for(
                "/ok",
                "the working notifier is paged at once",
                Duration::from_secs(3),
                |e| e.len() == 1,
            )
        }
    })
    .await
    .unwrap();
    // The page says what failed, where, since when, why, and how to ack.
    let text = &details("trigger")[0];
    for part in [
        "svc",
        "127.0.0.1:1",
        "Since:",
        "connect: refused",
        // With --url: the daemon may listen anywhere, and the CLI defaults to 127.0.0.1:9464.
        &format!("slowburn ack {id} --url http://127.0.0.1:9464  or  curl"),
    ] {
        assert!(text.contains(part), "{part:?} missing in {text}");
    }

    // The escalation clock is not held up by the dead notifier's retries. The engine's time is
    // passed in, so step 2 is reached by saying it is 1.1 s later, not by waiting for it.
    service.tick(t0 + 1.1);
    tokio::task::spawn_blocking({
        let receiver = receiver.clone();
        move || {
            receiver.wait_for("/later", "step 2 is on time", Duration::from_secs(3), |e| {
                e.len() == 1
            })
        }
    })
    .await
    .unwrap();

    // Three attempts, backing off, then failed and counted.
    tokio::task::spawn_blocking({
        let receiver = receiver.clone();
        move || {
            receiver.wait_for("/down", "three attempts", Duration::from_secs(5), |e| {
                e.len() == 3
            })
        }
    })
    .await
    .unwrap();
    settled(&store).await;
    assert_eq!(receiver.events("/down").len(), 3, "no more than the bound");
    let records = store.records(id).unwrap();
    let dead = records.iter().find(|r| r.notifier == "dead").unwrap();
    assert_eq!((dead.state.as_str(), dead.attempts), ("failed", 3));
    assert!(
        dead.error.as_deref().unwrap_or("").contains("500"),
        "{dead:?}"
    );
    assert!(
        records
            .iter()
            .filter(|r| r.notifier != "dead")
            .all(|r| r.state == "sent"),
        "{records:?}"
    );
    let counts = service.deliveries.snapshot();
    assert_eq!(counts.get(&("dead".to_string(), "retried")), Some(&2));
    assert_eq!(counts.get(&("dead".to_string(), "failed")), Some(&1));
    assert_eq!(counts.get(&("ok".to_string(), "sent")), Some(&1));

    // Recovery resolves and tells everyone paged exactly once.
    service.observe("svc", None, t0 + 2.0);
    tokio::task::spawn_blocking({
        let receiver = receiver.clone();
        move || {
            receiver.wait_for("/ok", "resolve", Duration::from_secs(3), |e| {
                e.iter().any(|(ev, _)| ev == "resolve")
            });
            receiver.wait_for("/later", "resolve", Duration::from_secs(3), |e| {
                e.iter().any(|(ev, _)| ev == "resolve")
            });
        }
    })
    .await
    .unwrap();
    settled(&store).await;
    let recorded = store.records(id).unwrap().len();
    // Only a recorded send is ever queued: a second success that records nothing sends nothing.
    service.observe("svc", None, t0 + 2.1);
    assert_eq!(store.records(id).unwrap().len(), recorded);
    assert!(store.unsent().unwrap().is_empty());
    let resolves = |path: &str| {
        receiver
            .events(path)
            .iter()
            .filter(|(e, _)| e == "resolve")
            .count()
    };
    assert_eq!((resolves("/ok"), resolves("/later")), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_lets_each_worker_deliver_what_it_holds_then_end() {
    let (receiver, hooks) = Receiver::start();
    let text = format!(
        r#"probes:
  - {{name: a, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, recover_after: 1, policy: p}}}}
  - {{name: b, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, recover_after: 1, policy: p}}}}
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
policies:
  - {{name: p, steps: [{{notify: [hook]}}]}}
"#
    );
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let source = Source::Text {
        name: "c.yaml".into(),
        text,
    };
    let config = config::load(&source, &ctx).unwrap();
    let dir = std::env::temp_dir().join(format!("slowburn-alert-close-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let service = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let probes = ["a", "b"]
        .map(|name| {
            let info = ProbeInfo {
                rule: config.probes[0].alert.as_deref().cloned(),
                labels: BTreeMap::from([("probe".to_string(), name.to_string())]),
                target: "127.0.0.1:1".into(),
                parents: Vec::new(),
            };
            (name.to_string(), info)
        })
        .into_iter()
        .collect();
    let alerting = config.alerting;
    let workers = service.configure(
        probes,
        alerting.policies,
        alerting.silences,
        alerting.notifiers,
    );
    assert_eq!(
        workers
            .iter()
            .map(|w| w.notifier.as_str())
            .collect::<Vec<_>>(),
        ["hook"]
    );
    // Decided before the worker even runs: both pages are recorded and queued.
    let t0 = unix_now();
    service.observe("a", Some(("connect", "refused")), t0);
    service.observe("b", Some(("connect", "refused")), t0);
    let counts = service.alert_counts(t0 + 5.0);
    assert_eq!((counts.firing, counts.acknowledged), (2, 0));
    assert_eq!(counts.oldest_unacked_page, 5.0);

    service.close();
    let handles: Vec<_> = workers.into_iter().map(|w| tokio::spawn(w.run())).collect();
    for handle in handles {
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .expect("a closed worker ends once its queue is delivered")
            .unwrap();
    }
    assert_eq!(receiver.events("/hook").len(), 2);
    assert!(store.unsent().unwrap().is_empty());

    // After close, a decision is still recorded, left for the next start to send.
    service.observe("a", None, t0 + 10.0);
    let unsent: Vec<String> = store
        .unsent()
        .unwrap()
        .into_iter()
        .map(|r| r.event)
        .collect();
    assert_eq!(unsent, ["resolve"]);
}

/// Retries back off by doubling, capped at a minute, on the tokio clock: paused here, so the
/// schedule is exact and the test takes no time. The notifier's port is closed, so every
/// attempt is refused at once (loopback answers a connect with a reset before the runtime
/// next polls), and nothing else is pending for the paused clock to jump to.
#[tokio::test(start_paused = true)]
async fn retries_back_off_doubling_up_to_a_minute_on_the_tokio_clock() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let text = format!(
        r#"probes:
  - {{name: svc, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, recover_after: 1, policy: p}}}}
notifiers:
  - {{name: dead, webhook: {{url: "http://{closed}/hook"}}}}
policies:
  - {{name: p, steps: [{{notify: [dead]}}]}}
"#
    );
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let source = Source::Text {
        name: "r.yaml".into(),
        text,
    };
    let config = config::load(&source, &ctx).unwrap();
    let dir = std::env::temp_dir().join(format!("slowburn-alert-backoff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    // 16 s, 32 s, then the one-minute cap five times: 348 s between the first and last try.
    let retry = Retry {
        attempts: 8,
        first_backoff: Duration::from_secs(16),
        timeout: Duration::from_secs(3600),
    };
    let service = AlertService::with_retry(store.clone(), "http://127.0.0.1:9464".into(), retry);
    let info = ProbeInfo {
        rule: config.probes[0].alert.as_deref().cloned(),
        labels: BTreeMap::from([("probe".to_string(), "svc".to_string())]),
        target: "127.0.0.1:1".into(),
        parents: Vec::new(),
    };
    let alerting = config.alerting;
    let workers = service.configure(
        HashMap::from([("svc".to_string(), info)]),
        alerting.policies,
        alerting.silences,
        alerting.notifiers,
    );
    service.observe("svc", Some(("connect", "refused")), unix_now());
    service.close();
    let started = tokio::time::Instant::now();
    for worker in workers {
        worker.run().await;
    }
    let unsent = store.unsent().unwrap();
    assert!(unsent.is_empty(), "{unsent:?}");
    let id = service.alerts()[0].id;
    let dead = store.records(id).unwrap().pop().unwrap();
    assert_eq!((dead.state.as_str(), dead.attempts), ("failed", 8));
    assert!(
        dead.error
            .as_deref()
            .unwrap_or("")
            .contains("cannot connect"),
        "every attempt was refused, none timed out: {dead:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(16 + 32 + 5 * 60));
    let counts = service.deliveries.snapshot();
    assert_eq!(counts.get(&("dead".to_string(), "retried")), Some(&7));
}
