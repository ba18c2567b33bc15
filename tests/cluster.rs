//! Replicas coordinating through one real PostgreSQL (the shared throw-away cluster of
//! `support::pg`): alerts opened by one winner, escalation steps claimed exactly once under
//! `FOR UPDATE SKIP LOCKED`, fencing of a claimer whose lease ran out, acks that stop steps
//! claimed elsewhere, membership by the database's clock, results collapsing on their slot.
//!
//! Each "replica" here is its own `Coordinator` with its own connection, as each slowburn
//! process has. Leases are compared with the database's `now()`, which no test can pause, so
//! the two tests about expiry wait out a lease of a few hundred milliseconds for real.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slowburn::basics::yaml::Pos;
use slowburn::cluster::pg::{Claim, Coordinator, PlannedStep, Timeouts};
use slowburn::cluster::{Identity, Postgres, rendezvous};
use slowburn::probe::BuildContext;
use slowburn::probe::net::NetContext;
use support::pg;

/// Three replicas on a fresh database of the shared cluster, or `None` when there is no
/// PostgreSQL here (the support module says so loudly).
async fn replicas(prefix: &str, timeouts: Timeouts) -> Option<Vec<Arc<Coordinator>>> {
    let cluster = pg::shared()?;
    let database = cluster.database(prefix).await;
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let postgres =
        Postgres::new(&cluster.dsn("postgres", &database), Pos::default(), &ctx).unwrap();
    let mut out = Vec::new();
    for name in ["r1", "r2", "r3"] {
        let me = Identity::new(Some(name.into()), Some("seoul".into()), 0);
        out.push(Arc::new(
            Coordinator::connect(postgres.clone(), me, timeouts)
                .await
                .unwrap(),
        ));
    }
    Some(out)
}

fn steps(n: u32) -> Vec<PlannedStep> {
    (0..n)
        .map(|step| PlannedStep {
            event: "trigger".into(),
            epoch: 0,
            round: 0,
            step,
            notifier: "pd".into(),
            after: 0.0,
        })
        .collect()
}

/// Claims and completes until nothing is due; returns what this replica sent.
async fn drain(replica: Arc<Coordinator>) -> Vec<String> {
    let mut sent = Vec::new();
    loop {
        let claims = replica.claim(16).await.unwrap();
        if claims.is_empty() {
            return sent;
        }
        for claim in claims {
            if replica.begin_send(&claim).await.unwrap() {
                sent.push(claim.idempotency_key.clone());
                assert!(replica.complete(&claim, true, None).await.unwrap());
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_send_each_of_600_steps_exactly_once() {
    let Some(rs) = replicas("steps_once", Timeouts::default()).await else {
        return;
    };
    // Every replica evaluates every alert and tries to open it: one insert wins each.
    let mut winners = HashMap::new();
    for i in 0..200 {
        let key = format!("probe-{i}/run");
        let opened = futures_join(rs.iter().map(|r| {
            let (r, key) = (r.clone(), key.clone());
            async move { r.open(&key, "{}", &steps(3)).await.unwrap() }
        }))
        .await;
        assert_eq!(opened.iter().filter(|o| o.won).count(), 1, "{opened:?}");
        assert!(opened.iter().all(|o| o.id == opened[0].id));
        winners.insert(key, opened[0].id);
    }
    let sent = futures_join(rs.iter().map(|r| drain(r.clone()))).await;
    let mut all: Vec<&String> = sent.iter().flatten().collect();
    assert_eq!(all.len(), 600, "each step sent once");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 600, "no step sent twice");
    assert!(
        sent.iter().all(|s| !s.is_empty()),
        "the work is shared: {:?}",
        sent.iter().map(Vec::len).collect::<Vec<_>>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claimer_paused_past_its_lease_is_fenced_off() {
    let timeouts = Timeouts {
        lease: Duration::from_millis(400),
        ..Timeouts::default()
    };
    let Some(rs) = replicas("fenced", timeouts).await else {
        return;
    };
    let (a, b) = (&rs[0], &rs[1]);
    a.open("checkout/run", "{}", &steps(1)).await.unwrap();
    let first: Claim = a.claim(1).await.unwrap().pop().unwrap();
    assert!(!first.resend);
    assert!(b.claim(1).await.unwrap().is_empty(), "held under a's lease");
    // a stops (kill -STOP, a long GC pause) before sending; its lease runs out.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = b.claim(1).await.unwrap().pop().expect("b takes it over");
    assert!(second.resend, "the record says this is a re-send");
    assert_eq!(second.idempotency_key, first.idempotency_key, "same key");
    assert!(second.fence > first.fence);
    // a wakes up: the check before sending refuses, and so does a late completion.
    assert!(!a.begin_send(&first).await.unwrap());
    assert!(!a.complete(&first, true, None).await.unwrap());
    assert!(b.begin_send(&second).await.unwrap());
    assert!(b.complete(&second, true, None).await.unwrap());
    assert!(rs[2].claim(10).await.unwrap().is_empty(), "nothing left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ack_on_one_replica_stops_steps_on_another() {
    let Some(rs) = replicas("acked", Timeouts::default()).await else {
        return;
    };
    let mut later = steps(3);
    later[1].after = 0.0;
    later[2].after = 3600.0;
    let opened = rs[0].open("db/run", "{}", &later).await.unwrap();
    let claims = rs[1].claim(10).await.unwrap();
    assert_eq!(claims.len(), 2, "the two steps due now");
    // The ack lands on r3 between r2's claim and its send.
    assert_eq!(rs[2].ack("db/run", "alice").await.unwrap(), Some(opened.id));
    for claim in &claims {
        assert!(
            !rs[1].begin_send(claim).await.unwrap(),
            "stopped by the ack"
        );
    }
    assert!(rs[0].claim(10).await.unwrap().is_empty());
    // Resolving cancels what was planned; a new incident of the same key opens afresh.
    assert_eq!(rs[0].resolve("db/run").await.unwrap(), Some(opened.id));
    let again = rs[1].open("db/run", "{}", &steps(1)).await.unwrap();
    assert!(again.won && again.id != opened.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_follows_heartbeats_by_the_database_clock() {
    let timeouts = Timeouts {
        membership: Duration::from_millis(500),
        ..Timeouts::default()
    };
    let Some(rs) = replicas("members", timeouts).await else {
        return;
    };
    for r in &rs {
        r.heartbeat("127.0.0.1:0", 0, 0.0).await.unwrap();
    }
    assert_eq!(rs[0].live_here().await.unwrap(), ["r1", "r2", "r3"]);
    // r2 stops heartbeating; the others go on.
    tokio::time::sleep(Duration::from_millis(700)).await;
    rs[0].heartbeat("127.0.0.1:0", 0, 0.0).await.unwrap();
    rs[2].heartbeat("127.0.0.1:0", 0, 0.0).await.unwrap();
    let live = rs[0].live_here().await.unwrap();
    assert_eq!(live, ["r1", "r3"]);
    let members = rs[0].members().await.unwrap();
    assert!(!members.iter().find(|m| m.replica == "r2").unwrap().live);
    // Only r2's probes move.
    let before = ["r1", "r2", "r3"].map(String::from);
    for i in 0..300 {
        let p = format!("p{i}");
        let (old, new) = (
            rendezvous::owner(&p, &before).unwrap(),
            rendezvous::owner(&p, &live).unwrap(),
        );
        assert!(old == new || old == "r2");
    }
    rs[2].leave().await.unwrap();
    assert_eq!(rs[0].live_here().await.unwrap(), ["r1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_runs_of_a_slot_collapse() {
    let Some(rs) = replicas("slots", Timeouts::default()).await else {
        return;
    };
    // During a membership change two replicas both run p in slot 7: one row is kept.
    assert!(
        rs[0]
            .record_result("p", 7, false, Some("connect"))
            .await
            .unwrap()
    );
    assert!(
        !rs[1]
            .record_result("p", 7, false, Some("connect"))
            .await
            .unwrap()
    );
    assert!(rs[1].record_result("p", 8, true, None).await.unwrap());
    let latest = rs[2].latest_results("p", 60.0).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].0.as_str(), latest[0].2), ("seoul", true));
}

/// Runs futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl IntoIterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_send_goes_back_due_for_any_replica() {
    let Some(rs) = replicas("retried", Timeouts::default()).await else {
        return;
    };
    rs[0].open("flaky/run", "{}", &steps(1)).await.unwrap();
    let first = rs[0].claim(1).await.unwrap().pop().unwrap();
    assert_eq!(first.claims, 1);
    assert!(rs[0].retry_later(&first, "503", 0.2).await.unwrap());
    assert!(
        rs[1].claim(1).await.unwrap().is_empty(),
        "not before its backoff"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = rs[1].claim(1).await.unwrap().pop().expect("due again");
    assert_eq!(
        (second.claims, second.resend),
        (2, false),
        "a retry, not a re-send"
    );
    assert!(
        !rs[0].complete(&first, true, None).await.unwrap(),
        "the old claim is fenced"
    );
    assert!(rs[1].complete(&second, true, None).await.unwrap());
}

/// The claim path's capacity, for the README's benchmark (run it with
/// `cargo test --release --test cluster -- --ignored --nocapture claims_per_second`): 3
/// replicas claim, fence and complete 6,000 due steps as fast as the database lets them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: prints claims per second"]
async fn claims_per_second() {
    let Some(rs) = replicas("claims_bench", Timeouts::default()).await else {
        return;
    };
    for i in 0..2000 {
        rs[0]
            .open(&format!("bench-{i}/run"), "{}", &steps(3))
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    let sent = futures_join(rs.iter().map(|r| drain(r.clone()))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let total: usize = sent.iter().map(Vec::len).sum();
    assert_eq!(total, 6000);
    println!(
        "claims: {total} steps claimed, fenced and completed by 3 replicas in {elapsed:.2}s = {:.0}/s (batches of 16, 3 statements per step)",
        total as f64 / elapsed
    );
}

/// Silences, overrides and samples written through one replica's [`Backend`] are read
/// through another's: the PostgreSQL side of the trait the embedded store also implements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_state_written_on_one_replica_is_read_on_another() {
    use slowburn::store::oncall::OverrideRow;
    use slowburn::store::{Backend, Sample};
    let Some(rs) = replicas("shared_state", Timeouts::default()).await else {
        return;
    };
    let (a, b): (Arc<dyn Backend>, Arc<dyn Backend>) = (rs[0].clone(), rs[1].clone());
    assert!(a.is_shared());
    a.save_silence("s1", r#"{"v":1}"#).await.unwrap();
    a.save_silence("s1", r#"{"v":2}"#).await.unwrap();
    b.save_silence("s0", "{}").await.unwrap();
    assert_eq!(b.silences().await.unwrap(), ["{}", r#"{"v":2}"#]);
    assert!(b.delete_silence("s1").await.unwrap());
    assert!(!a.delete_silence("s1").await.unwrap());
    assert_eq!(a.silences().await.unwrap(), ["{}"]);

    let row = OverrideRow {
        id: 0,
        schedule: "primary".into(),
        user: "dave".into(),
        start: 100.0,
        end: 200.0,
        created_by: "alice".into(),
        created_at: 50.0,
    };
    let first = a.add_override(&row).await.unwrap();
    let second = b.add_override(&row).await.unwrap();
    assert!(second > first);
    let listed = b.overrides().await.unwrap();
    assert_eq!(
        listed[0],
        OverrideRow {
            id: first,
            ..row.clone()
        }
    );
    assert_eq!(listed.len(), 2);
    assert!(a.delete_override(second).await.unwrap());
    assert!(!b.delete_override(second).await.unwrap());

    // History: labelled series are found bytewise (`{`…`|`), never a signal that only shares
    // the prefix; a batch written twice (a retry after a lost answer) adds nothing.
    let mut rows = Vec::new();
    for (signal, n) in [
        ("value", 3),
        ("value{job=\"api\"}", 2),
        ("value{job=\"web\"}", 1),
        ("valuex", 1),
    ] {
        for i in 0..n {
            let s = Sample {
                t: 1000.0 + f64::from(i),
                v: f64::from(i),
            };
            rows.push(("p".to_string(), signal.to_string(), s));
        }
    }
    a.append_samples(&rows).await.unwrap();
    a.append_samples(&rows).await.unwrap();
    assert_eq!(
        b.series_of("p", "value").await.unwrap(),
        ["value{job=\"api\"}", "value{job=\"web\"}"]
    );
    let since: Vec<f64> = (b.samples("p", "value", 1001.0).await.unwrap().iter())
        .map(|s| s.t)
        .collect();
    assert_eq!(since, [1001.0, 1002.0]);
    // Older than 1001 goes, then at most one per series stays.
    assert_eq!(b.prune_samples(1001.0, 1).await.unwrap(), 4 + 1);
    assert_eq!(
        a.samples("p", "value", 0.0).await.unwrap(),
        [Sample { t: 1002.0, v: 2.0 }]
    );
}

/// Two alert services on their own stores, sharing one database: a silence added through
/// one is in effect in the other after its next refresh (the cluster loop's beat), and one
/// removed is gone from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_added_through_one_replica_is_in_effect_on_another() {
    use slowburn::alert::Silence;
    use slowburn::alert::service::AlertService;
    use slowburn::alert::silence::Window;
    use slowburn::store::Store;
    let Some(rs) = replicas("shared_silences", Timeouts::default()).await else {
        return;
    };
    let mut services = Vec::new();
    for r in &rs[..2] {
        let store = Arc::new(Store::open(std::path::Path::new(":memory:")).unwrap());
        let service = AlertService::new(store, "http://127.0.0.1:1".into());
        service.share_state(r.clone()).await.unwrap();
        services.push(service);
    }
    let silence = Silence {
        id: "maintenance".into(),
        matchers: [("probe".to_string(), "db".to_string())].into(),
        window: Window::Once {
            starts: 0.0,
            ends: 4e9,
        },
        comment: "upgrade".into(),
        created_by: "alice".into(),
    };
    let labels = silence.matchers.clone();
    services[0].add_silence(silence, 10.0).await.unwrap();
    assert!(services[0].is_silenced(&labels, 10.0));
    assert!(!services[1].is_silenced(&labels, 10.0), "not refreshed yet");
    services[1].refresh_shared(11.0).await.unwrap();
    assert!(services[1].is_silenced(&labels, 11.0));
    assert_eq!(services[1].silences().len(), 1);
    assert!(
        services[1]
            .remove_silence("maintenance", 12.0)
            .await
            .unwrap()
    );
    services[0].refresh_shared(13.0).await.unwrap();
    assert!(!services[0].is_silenced(&labels, 13.0));
    assert!(services[0].silences().is_empty());
}
