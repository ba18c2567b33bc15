//! On-call through the alert service with a real store and a real webhook receiver: steps
//! that name a schedule page whoever is on call when the step fires, every page names the
//! person and their address, a gap moves on to the next step and is counted, a restart after
//! a handoff keeps step 2's deadline and pages nobody twice, routes pick the policy, and a
//! failing parent holds its children's pages. Time is passed in (unix seconds), never slept;
//! only deliveries to the receiver are waited for.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use slowburn::alert::service::AlertService;
use slowburn::config::{self, Config, Source};
use slowburn::probe::{BuildContext, net::NetContext};
use slowburn::store::Store;
use support::receiver::Receiver;
use support::settled;

fn load(text: &str) -> Config {
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let source = Source::Text {
        name: "oncall.yaml".into(),
        text: text.into(),
    };
    config::load(&source, &ctx).unwrap_or_else(|e| panic!("{e:?}"))
}

/// A service over `store` configured as the daemon does, its workers spawned.
fn service(store: &Arc<Store>, config: Config) -> Arc<AlertService> {
    let service = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let probes: HashMap<_, _> = config
        .probes
        .iter()
        .filter(|p| p.alert.is_some())
        .map(|p| (p.name.clone(), p.alert_info(&config.server.canary)))
        .collect();
    let alerting = config.alerting;
    service.set_oncall(alerting.directory, alerting.routes);
    for worker in service.configure(
        probes,
        alerting.policies,
        alerting.silences,
        alerting.notifiers,
    ) {
        tokio::spawn(worker.run());
    }
    service
}

fn at(local: &str) -> f64 {
    let tz = jiff::tz::TimeZone::get("Europe/Berlin").unwrap();
    slowburn::oncall::schedule::local_time(local, &tz)
        .unwrap()
        .timestamp()
        .as_second() as f64
}

/// (event, step, person, to) of every page the receiver got, in order.
fn pages(receiver: &Receiver) -> Vec<(String, u64, String, String)> {
    receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|(_, j)| {
            let text = |k: &str| j[k].as_str().unwrap_or("-").to_string();
            (
                text("event"),
                j["step"].as_u64().unwrap(),
                text("person"),
                text("to"),
            )
        })
        .collect()
}

fn page(event: &str, step: u64, person: &str, to: &str) -> (String, u64, String, String) {
    (event.into(), step, person.into(), to.into())
}

const PEOPLE: &str = r#"
people:
  - {name: alice, notify: [{notifier: hook, to: "U-alice"}]}
  - {name: bob, notify: [{notifier: hook, to: "U-bob"}]}
  - {name: carol, notify: [{notifier: hook, to: "U-carol"}]}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_step_pages_who_is_on_call_when_it_fires_and_a_restart_pages_nobody_twice() {
    let (receiver, hooks) = Receiver::start();
    let text = format!(
        r#"{PEOPLE}
schedules:
  - name: primary
    timezone: Europe/Berlin
    layers:
      - {{users: [alice, bob], start: "2027-01-04T09:00", turn: 1w}}
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
policies:
  - name: orders
    steps:
      - notify: ["schedule:primary"]
      - {{after: 15m, notify: ["person:carol"]}}
routes:
  - {{match: {{team: orders}}, policy: orders}}
probes:
  - {{name: api, labels: {{team: orders}}, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1}}}}
"#
    );
    let dir = support::daemon::temp_dir("oncall-restart");
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    // Alice's week ends at 09:00 on Monday 11 January; the alert opens ten minutes before.
    let t0 = at("2027-01-11T08:50");
    let first = service(&store, load(&text));
    first.observe("api", Some(("connect", "connect: refused")), t0);
    let alert = first.alerts()[0].clone();
    assert_eq!(
        alert.policy.as_ref().unwrap().name,
        "orders",
        "routed by team"
    );
    settled(&store).await;
    assert_eq!(pages(&receiver), [page("trigger", 0, "alice", "U-alice")]);
    // The handoff to bob re-pages nobody.
    first.tick(at("2027-01-11T09:01"));
    first.close();
    drop(first);

    // A restart after the handoff: step 2 keeps its deadline, and nothing is sent again.
    let second = service(&store, load(&text));
    let restored = second.alert(alert.id).unwrap();
    assert_eq!(restored.next.unwrap().due, t0 + 900.0);
    second.tick(t0 + 899.0);
    second.tick(t0 + 900.0);
    second.tick(t0 + 960.0);
    settled(&store).await;
    assert_eq!(
        pages(&receiver),
        [
            page("trigger", 0, "alice", "U-alice"),
            page("trigger", 1, "carol", "U-carol"),
        ]
    );
    // An ack tells everyone already paged who acknowledged; bob never was.
    second.ack(alert.id, "carol", t0 + 1000.0).unwrap();
    settled(&store).await;
    let acks: Vec<(String, String)> = receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, j)| j["event"] == "acknowledge")
        .map(|(_, j)| {
            assert_eq!(j["acked_by"], "carol");
            (
                j["person"].as_str().unwrap().into(),
                j["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(acks.len(), 2);
    assert!(acks.contains(&("alice".into(), "U-alice".into())));
    assert!(acks.contains(&("carol".into(), "U-carol".into())));
    let details = receiver.0.lock().unwrap()[0].1["details"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        details.starts_with("Paging alice (hook: U-alice)"),
        "{details}"
    );
    // A resolve decided while the queues are closed is sent by the next start, each record to
    // the person and address it was made for.
    second.close();
    second.resolve(alert.id, "carol", t0 + 2000.0).unwrap();
    drop(second);
    let third = service(&store, load(&text));
    settled(&store).await;
    let mut resolves: Vec<(String, String)> = receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, j)| j["event"] == "resolve")
        .map(|(_, j)| {
            (
                j["person"].as_str().unwrap().into(),
                j["to"].as_str().unwrap().into(),
            )
        })
        .collect();
    resolves.sort();
    assert_eq!(
        resolves,
        [
            ("alice".into(), "U-alice".into()),
            ("carol".into(), "U-carol".into())
        ]
    );
    third.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_schedule_pages_the_next_step_at_once_and_is_counted() {
    let (receiver, hooks) = Receiver::start();
    let text = format!(
        r#"{PEOPLE}
schedules:
  - name: office
    timezone: Europe/Berlin
    layers:
      - users: [alice]
        start: "2027-01-04T00:00"
        turn: 1w
        restrictions: [{{days: [Mon, Tue, Wed, Thu, Fri], start: "09:00", end: "17:00"}}]
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
policies:
  - name: p
    steps:
      - notify: ["schedule:office"]
      - {{after: 30m, notify: ["person:bob"]}}
probes:
  - {{name: api, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, policy: p}}}}
"#
    );
    let dir = support::daemon::temp_dir("oncall-gap");
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let service = service(&store, load(&text));
    assert_eq!(service.oncall_gaps().get("office"), Some(&0));
    // Saturday night: nobody is on call in `office`, so bob is paged at once, not in 30m.
    let t0 = at("2027-01-09T23:00");
    service.observe("api", Some(("connect", "connect: refused")), t0);
    settled(&store).await;
    assert_eq!(pages(&receiver), [page("trigger", 1, "bob", "U-bob")]);
    assert_eq!(service.oncall_gaps().get("office"), Some(&1));
    let alert = &service.alerts()[0];
    assert!(
        alert
            .timeline
            .iter()
            .any(|e| e.what.contains("nobody on call in office")),
        "{:?}",
        alert.timeline
    );
    service.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_parent_pages_once_for_thirty_children_and_its_recovery_releases_them() {
    let (receiver, hooks) = Receiver::start();
    let mut text = format!(
        r#"
notifiers:
  - {{name: hook, webhook: {{url: "http://{hooks}/hook"}}}}
policies:
  - {{name: p, steps: [{{notify: [hook]}}]}}
routes:
  - {{policy: p}}
probes:
  - {{name: db, tcp: {{address: "127.0.0.1:1"}}, alert: {{after: 1, recover_after: 1}}}}
"#
    );
    for i in 0..30 {
        text.push_str(&format!(
            "  - {{name: web-{i}, http: {{url: \"http://127.0.0.1:1/{i}\"}}, depends_on: [db], alert: {{after: 1, recover_after: 1}}}}\n"
        ));
    }
    let dir = support::daemon::temp_dir("oncall-deps");
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let service = service(&store, load(&text));
    let t0 = 1_800_000_000.0;
    service.observe("db", Some(("connect", "connect: refused")), t0);
    for i in 0..30 {
        service.observe(
            &format!("web-{i}"),
            Some(("connect", "connect: refused")),
            t0 + 1.0,
        );
    }
    service.tick(t0 + 2.0);
    settled(&store).await;
    let triggers = |r: &Receiver| {
        r.0.lock()
            .unwrap()
            .iter()
            .filter(|(_, j)| j["event"] == "trigger")
            .map(|(_, j)| j["probe"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(triggers(&receiver), ["db"], "one page per root cause");
    let held = service
        .alerts()
        .iter()
        .filter(|a| a.held_by == ["db"])
        .count();
    assert_eq!(held, 30, "the children are shown, held by db");
    assert_eq!(service.alert_counts(t0 + 2.0).held, 30);

    // A child that recovers while held resolves as usual, telling nobody.
    service.observe("web-0", None, t0 + 3.0);
    // The parent recovers first: the 29 children still failing page now.
    service.observe("db", None, t0 + 4.0);
    settled(&store).await;
    let mut paged = triggers(&receiver);
    paged.sort();
    let mut want: Vec<String> = (1..30).map(|i| format!("web-{i}")).collect();
    want.push("db".into());
    want.sort();
    assert_eq!(paged, want);
    let resolves: Vec<String> = receiver
        .0
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, j)| j["event"] == "resolve")
        .map(|(_, j)| j["probe"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(resolves, ["db"], "web-0 resolved without paging anyone");
    assert_eq!(service.alert_counts(t0 + 5.0).held, 0);
    service.close();
    // Wait for nothing further: every record is settled and none is a duplicate.
    tokio::time::sleep(Duration::ZERO).await;
    assert!(store.unsent().unwrap().is_empty());
}

#[test]
fn network_probes_have_the_canaries_as_parents() {
    let config = load(
        r#"
server: {canary: [resolver]}
probes:
  - {name: resolver, dns: {name: example.com, server: "127.0.0.1:53"}, alert: {}}
  - {name: web, http: {url: "http://127.0.0.1:1/"}, depends_on: [db], alert: {}}
  - {name: db, tcp: {address: "127.0.0.1:1"}, alert: {}}
  - {name: worker, process: {match: {name: worker}}, alert: {}}
"#,
    );
    let parents = |name: &str| {
        let p = config.probes.iter().find(|p| p.name == name).unwrap();
        p.alert_info(&config.server.canary).parents
    };
    assert_eq!(parents("resolver"), Vec::<String>::new());
    assert_eq!(parents("web"), ["db", "resolver"]);
    assert_eq!(parents("db"), ["resolver"]);
    assert_eq!(
        parents("worker"),
        Vec::<String>::new(),
        "a local probe needs no network"
    );
}

#[tokio::test]
async fn a_probes_own_policy_wins_over_routes_and_continue_merges_policies() {
    let text = r#"
notifiers:
  - {name: hook, webhook: {url: "http://127.0.0.1:9/hook"}}
  - {name: dba, webhook: {url: "http://127.0.0.1:9/dba"}}
policies:
  - {name: orders, steps: [{notify: [hook]}, {after: 30m, notify: [hook]}]}
  - {name: dba, steps: [{notify: [dba]}, {after: 10m, notify: [dba]}], ack_timeout: 1h}
  - {name: own, steps: [{notify: [hook]}]}
routes:
  - {match: {team: orders}, policy: orders, continue: true}
  - {match: {kind: postgres}, policy: dba}
probes:
  - {name: api, labels: {team: orders}, tcp: {address: "127.0.0.1:1"}, alert: {after: 1}}
  - {name: pinned, labels: {team: orders}, tcp: {address: "127.0.0.1:1"}, alert: {after: 1, policy: own}}
  - {name: db, labels: {team: orders}, postgres: {dsn: "host=127.0.0.1 user=x"}, alert: {after: 1}}
  - {name: stray, tcp: {address: "127.0.0.1:1"}, alert: {after: 1}}
"#;
    let dir = support::daemon::temp_dir("oncall-routes");
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let service = service(&store, load(text));
    for probe in ["api", "pinned", "db", "stray"] {
        service.observe(
            probe,
            Some(("connect", "connect: refused")),
            1_800_000_000.0,
        );
    }
    let policy = |probe: &str| {
        service
            .alerts()
            .into_iter()
            .find(|a| a.probe == probe)
            .and_then(|a| a.policy)
    };
    assert_eq!(policy("api").unwrap().name, "orders");
    assert_eq!(policy("pinned").unwrap().name, "own", "alert.policy wins");
    assert!(
        policy("stray").is_none(),
        "no route matches and there is no default"
    );
    let merged = policy("db").unwrap();
    assert_eq!(merged.name, "orders+dba");
    let dues: Vec<(f64, Vec<String>)> = merged
        .steps
        .iter()
        .map(|s| (s.after, s.notify.iter().map(|t| t.to_string()).collect()))
        .collect();
    assert_eq!(
        dues,
        [
            (0.0, vec!["hook".to_string(), "dba".to_string()]),
            (600.0, vec!["dba".to_string()]),
            (1800.0, vec!["hook".to_string()]),
        ]
    );
    assert_eq!(merged.ack_timeout, Some(3600.0));
    service.close();
}
