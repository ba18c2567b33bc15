//! The alert state machine in simulated time: hours of escalation in microseconds.

use std::collections::{BTreeMap, HashMap};

use slowburn::alert::silence::Window;
use slowburn::alert::{
    Engine, Event, Origin, Policy, ProbeInfo, Refusal, Rule, Send, Severity, Silence, State, Step,
};
use slowburn::detect::Detector;

const MIN: f64 = 60.0;

fn policy(steps: &[(f64, &[&str])], repeat: u32, ack_timeout: Option<f64>) -> Policy {
    let steps: Vec<Step> = steps
        .iter()
        .map(|(after, notify)| Step {
            after: *after,
            notify: notify.iter().map(|s| (*s).into()).collect(),
        })
        .collect();
    Policy {
        name: "oncall".into(),
        repeat_interval: Policy::default_repeat_interval(&steps),
        steps,
        repeat,
        ack_timeout,
    }
}

fn engine(policy: Policy, labels: &[(&str, &str)]) -> Engine {
    let mut engine = Engine::new();
    let mut all: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    all.insert("kind".into(), "http".into());
    let info = ProbeInfo {
        rule: Some(Rule {
            after: 3,
            recover_after: 2,
            policy: Some("oncall".into()),
            severity: Severity::Page,
            runbook: Some("https://wiki/runbook".into()),
            summary: None,
        }),
        labels: all,
        target: "http://shop/health".into(),
        parents: Vec::new(),
    };
    engine.configure(
        HashMap::from([("shop".to_string(), info)]),
        HashMap::from([("oncall".to_string(), policy)]),
        Vec::new(),
    );
    engine
}

fn standard() -> Engine {
    engine(
        policy(
            &[
                (0.0, &["slack", "pd"]),
                (15.0 * MIN, &["pd2"]),
                (30.0 * MIN, &["mail"]),
            ],
            1,
            Some(240.0 * MIN),
        ),
        &[("team", "shop")],
    )
}

fn who(sends: &[Send]) -> Vec<(String, Event)> {
    sends
        .iter()
        .map(|s| (s.notifier.clone(), s.event))
        .collect()
}

fn pairs(list: &[(&str, Event)]) -> Vec<(String, Event)> {
    list.iter().map(|(n, e)| (n.to_string(), *e)).collect()
}

const FAIL: Option<(&str, &str)> = Some(("status", "status 503 not in [200]"));

/// Fails three times 15 s apart starting at t; returns what the third failure sent.
fn fire(engine: &mut Engine, t: f64) -> Vec<Send> {
    assert!(engine.observe("shop", FAIL, t).is_empty());
    assert!(engine.observe("shop", FAIL, t + 15.0).is_empty());
    engine.observe("shop", FAIL, t + 30.0)
}

#[test]
fn pending_then_firing_then_every_step_then_the_repeat() {
    let mut e = standard();
    let t0 = 1_000_000.0 + 30.0;
    assert_eq!(
        who(&fire(&mut e, 1_000_000.0)),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)])
    );
    let alert = e.alerts().next().unwrap().clone();
    assert_eq!(alert.state, State::Firing);
    assert_eq!(alert.dedup_key, "shop:status");
    assert_eq!(alert.started_at, 1_000_000.0);
    // More failures bump the counter and page no one.
    assert!(e.observe("shop", FAIL, t0 + 15.0).is_empty());
    assert_eq!(e.alerts().next().unwrap().failures, 2);
    assert!(e.tick(t0 + 15.0 * MIN - 1.0).is_empty());
    assert_eq!(
        who(&e.tick(t0 + 15.0 * MIN)),
        pairs(&[("pd2", Event::Trigger)])
    );
    assert!(e.tick(t0 + 20.0 * MIN).is_empty());
    assert_eq!(
        who(&e.tick(t0 + 30.0 * MIN)),
        pairs(&[("mail", Event::Trigger)])
    );
    // The repeat starts one step-gap (15m) after the last step: 45m.
    assert!(e.tick(t0 + 44.0 * MIN).is_empty());
    let repeat = e.tick(t0 + 45.0 * MIN);
    assert_eq!(
        who(&repeat),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)])
    );
    assert_eq!(repeat[0].round, 1);
    assert_eq!(
        who(&e.tick(t0 + 60.0 * MIN)),
        pairs(&[("pd2", Event::Trigger)])
    );
    assert_eq!(
        who(&e.tick(t0 + 75.0 * MIN)),
        pairs(&[("mail", Event::Trigger)])
    );
    assert!(
        e.tick(t0 + 600.0 * MIN).is_empty(),
        "repeat: 1 runs the steps once more, then stops"
    );
    // Every send has its own key: nothing is sent twice.
    let mut keys = std::collections::HashSet::new();
    let mut e = standard();
    let mut all = fire(&mut e, 0.0);
    for minute in 0..200 {
        all.extend(e.tick(30.0 + minute as f64 * MIN));
    }
    assert_eq!(all.len(), 8);
    assert!(all.iter().all(|s| keys.insert(s.key())));
}

#[test]
fn overdue_steps_fire_once_each_when_time_jumps() {
    let mut e = standard();
    fire(&mut e, 0.0);
    let sends = e.tick(31.0 * MIN);
    assert_eq!(
        who(&sends),
        pairs(&[("pd2", Event::Trigger), ("mail", Event::Trigger)])
    );
    assert!(e.tick(31.0 * MIN).is_empty());
}

#[test]
fn ack_stops_escalation_tells_those_paged_and_expires() {
    let mut e = standard();
    fire(&mut e, 0.0);
    e.tick(30.0 + 15.0 * MIN);
    let id = e.alerts().next().unwrap().id;
    let sends = e.ack(id, "alice", 30.0 + 20.0 * MIN).unwrap();
    assert_eq!(
        who(&sends),
        pairs(&[
            ("pd", Event::Acknowledge),
            ("pd2", Event::Acknowledge),
            ("slack", Event::Acknowledge)
        ])
    );
    assert_eq!(e.alert(id).unwrap().acked_by.as_deref(), Some("alice"));
    assert!(
        e.tick(30.0 + 30.0 * MIN).is_empty(),
        "step 3 is cancelled by the ack"
    );
    assert_eq!(
        e.ack(id, "bob", 30.0 + 31.0 * MIN),
        Err(Refusal::AlreadyAcknowledged {
            id,
            by: "alice".into()
        })
    );
    // Four hours later the ack expires and paging restarts from step 1.
    assert!(e.tick(30.0 + 259.0 * MIN).is_empty());
    let again = e.tick(30.0 + 260.0 * MIN);
    assert_eq!(
        who(&again),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)])
    );
    assert_eq!(again[0].epoch, 1);
    assert_eq!(e.alert(id).unwrap().state, State::Firing);
    assert_eq!(
        who(&e.tick(30.0 + 275.0 * MIN)),
        pairs(&[("pd2", Event::Trigger)])
    );
}

#[test]
fn recovery_resolves_and_tells_everyone_paged_exactly_once() {
    let mut e = standard();
    fire(&mut e, 0.0);
    e.tick(30.0 + 15.0 * MIN);
    let t = 30.0 + 16.0 * MIN;
    assert!(e.observe("shop", None, t).is_empty(), "recover_after: 2");
    let sends = e.observe("shop", None, t + 15.0);
    assert_eq!(
        who(&sends),
        pairs(&[
            ("pd", Event::Resolve),
            ("pd2", Event::Resolve),
            ("slack", Event::Resolve)
        ])
    );
    assert!(e.observe("shop", None, t + 30.0).is_empty());
    assert!(
        e.tick(t + 60.0 * MIN).is_empty(),
        "a resolve cancels every timer"
    );
    let first = e.alerts().next().unwrap().id;
    assert_eq!(e.alert(first).unwrap().state, State::Resolved);
    // The same key opens a new alert after a resolve.
    let sends = fire(&mut e, t + 100.0 * MIN);
    assert_eq!(sends.len(), 2);
    assert_ne!(sends[0].alert_id, first);
}

#[test]
fn recovery_while_pending_sends_nothing() {
    let mut e = standard();
    assert!(e.observe("shop", FAIL, 0.0).is_empty());
    assert!(e.observe("shop", FAIL, 15.0).is_empty());
    assert!(e.observe("shop", None, 30.0).is_empty());
    assert!(e.observe("shop", FAIL, 45.0).is_empty());
    assert!(e.observe("shop", FAIL, 60.0).is_empty());
    assert_eq!(e.alerts().count(), 0);
}

#[test]
fn flapping_sends_one_notice_not_a_page_per_flap() {
    let mut e = engine(
        policy(&[(0.0, &["slack"]), (15.0 * MIN, &["pd"])], 0, None),
        &[],
    );
    let mut sends = Vec::new();
    // after: 3 would never fire on alternating results; make them fail twice, pass once.
    for i in 0..60 {
        let failed = i % 3 != 2;
        sends.extend(e.observe("shop", if failed { FAIL } else { None }, i as f64 * 15.0));
        sends.extend(e.tick(i as f64 * 15.0));
    }
    let notices: Vec<_> = sends
        .iter()
        .filter(|s| s.event == Event::Flapping)
        .collect();
    assert_eq!(notices.len(), 1, "{sends:?}");
    assert!(
        sends.iter().all(|s| s.event == Event::Flapping),
        "no trigger or resolve per flap: {sends:?}"
    );
    assert!(e.alerts().next().unwrap().flapping);
    // Stable and healthy again: one resolve to whoever got the notice.
    let mut after = Vec::new();
    for i in 60..120 {
        after.extend(e.observe("shop", None, i as f64 * 15.0));
    }
    assert_eq!(who(&after), pairs(&[("slack", Event::Resolve)]));
}

#[test]
fn flapping_that_settles_into_failure_pages_fresh() {
    let mut e = engine(policy(&[(0.0, &["slack"])], 0, None), &[]);
    let mut sends = Vec::new();
    for i in 0..30 {
        sends.extend(e.observe("shop", if i % 2 == 0 { FAIL } else { None }, i as f64));
    }
    for i in 30..80 {
        sends.extend(e.observe("shop", FAIL, i as f64));
    }
    assert_eq!(
        who(&sends),
        pairs(&[("slack", Event::Flapping), ("slack", Event::Trigger)])
    );
}

#[test]
fn a_silence_holds_pages_until_it_ends() {
    let mut e = standard();
    let silence = Silence {
        id: "maint".into(),
        matchers: BTreeMap::from([("team".to_string(), "shop".to_string())]),
        window: Window::Once {
            starts: 0.0,
            ends: 3600.0,
        },
        comment: "db maintenance".into(),
        created_by: "alice".into(),
    };
    assert!(e.add_silence(silence, 0.0).is_empty());
    assert!(fire(&mut e, 100.0).is_empty(), "no page inside the silence");
    let alert = e.alerts().next().unwrap();
    assert!(alert.silenced && alert.state == State::Firing);
    assert!(e.tick(1800.0).is_empty());
    let sends = e.tick(3600.0);
    assert_eq!(
        who(&sends),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)]),
        "paging starts at step 1"
    );
    assert!(e.tick(3600.0 + 14.0 * MIN).is_empty());
    assert_eq!(
        who(&e.tick(3600.0 + 15.0 * MIN)),
        pairs(&[("pd2", Event::Trigger)])
    );
    // Other probes' labels do not match the silence.
    let labels = BTreeMap::from([("team".to_string(), "payments".to_string())]);
    assert!(!e.silences()[0].matches(&labels));
}

#[test]
fn a_silence_that_ends_after_recovery_pages_no_one() {
    let mut e = standard();
    let silence = Silence {
        id: "s".into(),
        matchers: BTreeMap::from([("probe".to_string(), "shop".to_string())]),
        window: Window::Once {
            starts: 0.0,
            ends: 3600.0,
        },
        comment: String::new(),
        created_by: String::new(),
    };
    e.add_silence(silence, 0.0);
    fire(&mut e, 100.0);
    assert!(e.observe("shop", None, 200.0).is_empty());
    assert!(
        e.observe("shop", None, 215.0).is_empty(),
        "nobody was paged, so nobody hears the resolve"
    );
    assert!(e.tick(4000.0).is_empty());
}

#[test]
fn drift_tickets_go_to_the_first_step_only_and_resolve() {
    let mut e = standard();
    let sends = e.verdict(
        "shop",
        Origin::detected(Detector::TREND, "latency"),
        Severity::Ticket,
        true,
        "latency grows",
        Some(10.0),
        Some(5000.0),
        100.0,
    );
    assert_eq!(
        who(&sends),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)])
    );
    assert!(
        e.tick(100.0 + 600.0 * MIN).is_empty(),
        "tickets never escalate"
    );
    let alert = e.alerts().next().unwrap();
    assert_eq!(alert.dedup_key, "shop:drift:latency");
    assert_eq!(alert.started_at, 10.0);
    assert_eq!(alert.eta_seconds, Some(5000.0));
    let sends = e.verdict(
        "shop",
        Origin::detected(Detector::TREND, "latency"),
        Severity::Ticket,
        false,
        "latency stable",
        None,
        None,
        200.0 + 600.0 * MIN,
    );
    assert_eq!(
        who(&sends),
        pairs(&[("pd", Event::Resolve), ("slack", Event::Resolve)])
    );
}

#[test]
fn the_policy_is_copied_when_the_alert_fires() {
    let mut e = standard();
    fire(&mut e, 0.0);
    let changed = policy(&[(0.0, &["other"])], 0, None);
    let info = ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    e.configure(
        HashMap::from([("shop".to_string(), info)]),
        HashMap::from([("oncall".to_string(), changed)]),
        Vec::new(),
    );
    assert_eq!(
        who(&e.tick(30.0 + 15.0 * MIN)),
        pairs(&[("pd2", Event::Trigger)])
    );
}

#[test]
fn manual_resolve_and_refusals() {
    let mut e = standard();
    fire(&mut e, 0.0);
    let id = e.alerts().next().unwrap().id;
    assert_eq!(e.ack(99, "x", 1.0), Err(Refusal::NotFound(99)));
    let sends = e.resolve(id, "carol", 100.0).unwrap();
    assert_eq!(sends.len(), 2);
    assert_eq!(e.alert(id).unwrap().resolved_by.as_deref(), Some("carol"));
    assert_eq!(e.ack(id, "x", 101.0), Err(Refusal::Resolved(id)));
    assert_eq!(e.resolve(id, "x", 101.0), Err(Refusal::Resolved(id)));
}

#[test]
fn a_change_ticket_is_not_the_probes_run_alert() {
    let mut e = standard();
    let change = || Origin::detected(Detector::CHANGE, "latency");
    let sends = e.verdict(
        "shop",
        change(),
        Severity::Ticket,
        true,
        "latency shifted from 80ms to 160ms",
        Some(0.0),
        None,
        10.0,
    );
    assert_eq!(sends.len(), 2, "the ticket goes to step 1");
    // The probe then fails: its own run alert opens and pages, the ticket is not it.
    assert!(
        e.observe("shop", Some(("status", "status 503")), 20.0)
            .is_empty()
    );
    assert!(
        e.observe("shop", Some(("status", "status 503")), 30.0)
            .is_empty()
    );
    let sends = e.observe("shop", Some(("status", "status 503")), 40.0);
    assert_eq!(
        who(&sends),
        pairs(&[("slack", Event::Trigger), ("pd", Event::Trigger)])
    );
    let ticket = e.alerts().find(|a| a.origin == change()).unwrap();
    assert_eq!(
        ticket.failures, 1,
        "the outage is not counted on the ticket"
    );
    assert_eq!(ticket.reason, "change:latency");
    // Recovery resolves the run alert and leaves the ticket open.
    e.observe("shop", None, 50.0);
    let sends = e.observe("shop", None, 60.0);
    assert_eq!(sends.len(), 2);
    let run = e.alerts().find(|a| a.origin == Origin::Run).unwrap();
    assert_eq!(run.state, State::Resolved);
    let ticket = e.alerts().find(|a| a.origin == change()).unwrap();
    assert_eq!(ticket.state, State::Firing);
}
