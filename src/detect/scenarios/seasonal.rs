//! Seasonal scenarios: five weeks of orders per minute with a daily and a weekly shape and
//! count noise, seeded; four weeks to learn, then the week under test. Each scenario is run
//! on several seeds, and the side-by-side comparison with the two PromQL rules users write
//! today is printed for the README (`cargo test --lib seasonal_comparison -- --nocapture`).
//! Test-only.

use super::*;
use crate::detect::SeasonalSpec;

/// 2023-11-13 00:00 UTC, a Monday.
const MONDAY: f64 = 1_699_833_600.0;
const WEEK: f64 = 7.0 * DAY;
/// The week under test starts after four weeks of learning.
const TEST_WEEK: f64 = MONDAY + 4.0 * WEEK;
const SEEDS: std::ops::RangeInclusive<u64> = 1..=4;

/// Orders per minute a shop usually gets at `t`: quiet nights, a lunch and a dinner peak,
/// busier Fridays and weekends. `scale` is the dinner peak on a weekday.
fn usual(t: f64, scale: f64) -> f64 {
    let hour = (t - MONDAY).rem_euclid(DAY) / HOUR;
    let weekday = ((t - MONDAY).div_euclid(DAY) as i64).rem_euclid(7);
    let bump = |centre: f64, width: f64| (-((hour - centre) / width).powi(2)).exp();
    let shape = 0.05 + 0.55 * bump(12.5, 1.2) + 1.0 * bump(19.0, 1.6) + 0.25 * bump(15.5, 3.0);
    let week = match weekday {
        4 => 1.2,
        5 | 6 => 1.35,
        _ => 1.0,
    };
    scale * shape * week
}

/// A Poisson count with mean `lambda` (Knuth below 30, a rounded normal above).
fn poisson(rng: &mut Rng, lambda: f64) -> f64 {
    if lambda <= 0.0 {
        return 0.0;
    }
    if lambda > 30.0 {
        return (lambda + lambda.sqrt() * rng.normal()).round().max(0.0);
    }
    let limit = (-lambda).exp();
    let (mut k, mut p) = (0.0, 1.0);
    loop {
        p *= rng.uniform();
        if p <= limit {
            return k;
        }
        k += 1.0;
    }
}

/// A shop's orders per minute for five weeks; `factor` scales the usual rate in the test
/// week (1 for normal trade).
fn orders(seed: u64, scale: f64, factor: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(50_400);
    let mut t = MONDAY;
    while t < TEST_WEEK + WEEK {
        let f = if t >= TEST_WEEK { factor(t) } else { 1.0 };
        out.push((t, poisson(&mut rng, usual(t, scale) * f)));
        t += MIN;
    }
    out
}

/// The contract form: `seasonal: {period: 1w, below: 30%, for: 10m}`, a probe every minute.
fn orders_spec() -> DetectorSpec {
    DetectorSpec::new("orders", Unit::Count).with_seasonal(SeasonalSpec {
        below: Some(0.3),
        interval: MIN,
        ..SeasonalSpec::new(WEEK, 10.0 * MIN)
    })
}

/// `factor` from `start` for `hours`, 1 otherwise.
fn from(start: f64, hours: f64, factor: f64) -> impl Fn(f64) -> f64 {
    move |t| {
        if t >= start && t < start + hours * HOUR {
            factor
        } else {
            1.0
        }
    }
}

/// A scenario: the shop, what happens in the test week, and whether (and by when after its
/// start) it must page.
struct Case {
    name: &'static str,
    scale: f64,
    start: f64,
    hours: f64,
    factor: f64,
    page_within: Option<f64>,
}

const CASES: [Case; 7] = [
    Case {
        name: "40% drop at the Friday evening peak",
        scale: 120.0,
        start: MONDAY + 4.0 * WEEK + 4.0 * DAY + 18.5 * HOUR,
        hours: 2.0,
        factor: 0.6,
        page_within: Some(20.0 * MIN),
    },
    Case {
        name: "total outage at 03:00",
        scale: 120.0,
        start: MONDAY + 4.0 * WEEK + DAY + 3.0 * HOUR,
        hours: 1.0,
        factor: 0.0,
        page_within: Some(30.0 * MIN),
    },
    Case {
        name: "small shop: dinner orders stop",
        scale: 4.0,
        start: MONDAY + 4.0 * WEEK + DAY + 18.5 * HOUR,
        hours: 2.0,
        factor: 0.0,
        page_within: Some(25.0 * MIN),
    },
    Case {
        name: "partner hand-offs at half rate for hours",
        scale: 60.0,
        start: MONDAY + 4.0 * WEEK + 2.0 * DAY + 11.0 * HOUR,
        hours: 6.0,
        factor: 0.5,
        page_within: Some(20.0 * MIN),
    },
    Case {
        name: "a 20% dip for three hours",
        scale: 120.0,
        start: MONDAY + 4.0 * WEEK + 2.0 * DAY + 17.0 * HOUR,
        hours: 3.0,
        factor: 0.8,
        page_within: None,
    },
    Case {
        name: "a flash sale triples orders for an hour",
        scale: 120.0,
        start: MONDAY + 4.0 * WEEK + 3.0 * DAY + 20.0 * HOUR,
        hours: 1.0,
        factor: 3.0,
        page_within: None,
    },
    Case {
        name: "small shop: a normal week",
        scale: 4.0,
        start: MONDAY + 4.0 * WEEK,
        hours: 0.0,
        factor: 1.0,
        page_within: None,
    },
];

/// Pages in the test week.
fn test_week_pages(verdicts: &[Verdict]) -> Vec<&Verdict> {
    firing(verdicts, Detector::SEASONAL, Severity::Page)
        .into_iter()
        .filter(|v| v.t >= TEST_WEEK)
        .collect()
}

/// The per-minute rate at `i` smoothed over 5 minutes, as both rules read it (`rate(x[5m])`).
fn smoothed(points: &[(f64, f64)], i: usize) -> f64 {
    let from = i.saturating_sub(4);
    points[from..=i].iter().map(|p| p.1).sum::<f64>() / (i - from + 1) as f64
}

/// Minutes of a rule `x < 0.7 × reference` held for 10 minutes, first firing at or after
/// `TEST_WEEK`: every firing time.
fn rule_fires(points: &[(f64, f64)], reference: impl Fn(usize) -> Option<f64>) -> Vec<f64> {
    let mut fires = Vec::new();
    let mut below_since: Option<f64> = None;
    let mut firing = false;
    for (i, (t, _)) in points.iter().enumerate() {
        if *t < TEST_WEEK {
            continue;
        }
        let holds = reference(i).is_some_and(|r| smoothed(points, i) < 0.7 * r);
        if !holds {
            below_since = None;
            firing = false;
            continue;
        }
        let since = *below_since.get_or_insert(*t);
        if !firing && t - since >= 10.0 * MIN {
            firing = true;
            fires.push(*t);
        }
    }
    fires
}

/// `x < 0.7 * x offset 1w`, held 10m.
fn offset_rule(points: &[(f64, f64)]) -> Vec<f64> {
    let week = (WEEK / MIN) as usize;
    rule_fires(points, |i| i.checked_sub(week).map(|j| smoothed(points, j)))
}

/// `x < 0.7 * avg(x offset 1w, 2w, 3w)`, held 10m.
fn average_rule(points: &[(f64, f64)]) -> Vec<f64> {
    let week = (WEEK / MIN) as usize;
    rule_fires(points, |i| {
        let back: Option<Vec<f64>> = (1..=3)
            .map(|k| i.checked_sub(k * week).map(|j| smoothed(points, j)))
            .collect();
        back.map(|b| b.iter().sum::<f64>() / 3.0)
    })
}

/// Whether firing times page in time for `case` (and nothing else), and how many false.
fn judge(case: &Case, fires: &[f64]) -> (bool, usize) {
    match case.page_within {
        Some(within) => {
            let in_time = fires
                .iter()
                .any(|t| *t >= case.start && *t <= case.start + within);
            let false_pages = fires
                .iter()
                .filter(|t| **t < case.start || **t > case.start + case.hours * HOUR + HOUR)
                .count();
            (in_time, false_pages)
        }
        None => (true, fires.len()),
    }
}

#[test]
fn seasonal_scenarios_page_in_time_and_only_then() {
    for case in &CASES {
        for seed in SEEDS {
            let points = orders(seed, case.scale, from(case.start, case.hours, case.factor));
            let verdicts = run(orders_spec(), &points);
            let pages = test_week_pages(&verdicts);
            let times: Vec<f64> = pages.iter().map(|v| v.t).collect();
            let (in_time, false_pages) = judge(case, &times);
            assert!(
                in_time && false_pages == 0,
                "{} (seed {seed}): {}",
                case.name,
                show(&verdicts)
            );
            if case.page_within.is_some() {
                let first = pages[0];
                assert!(
                    first.message.contains("usually") && first.message.contains('−'),
                    "{}",
                    first.message
                );
            }
        }
    }
}

#[test]
fn four_quiet_weeks_never_page_a_large_or_a_small_shop() {
    for scale in [2.0, 4.0, 120.0] {
        for seed in 10..=13 {
            let points = orders(seed, scale, |_| 1.0);
            let verdicts = run(orders_spec(), &points);
            assert!(
                firing(&verdicts, Detector::SEASONAL, Severity::Page).is_empty(),
                "scale {scale}, seed {seed}: {}",
                show(&verdicts)
            );
        }
    }
}

#[test]
fn it_says_it_is_learning_until_a_full_period_is_stored() {
    let points = orders(1, 120.0, |_| 1.0);
    let mut detectors = SignalDetectors::new(orders_spec()).unwrap_or_else(|e| panic!("{e}"));
    let day = (DAY / MIN) as usize;
    replay(&mut detectors, &points[..3 * day]);
    let note = &detectors.state().notes[0];
    assert_eq!(note.0, "seasonal");
    assert!(note.1 == "learning: 2d23h of 7d stored", "{}", note.1);
    replay(&mut detectors, &points[3 * day..8 * day]);
    let note = &detectors.state().notes[0].1;
    assert!(note.contains("usually"), "{note}");
}

#[test]
fn seasonal_comparison() {
    println!(
        "| scenario | slowburn seasonal | x < 0.7 * x offset 1w, 10m | x < 0.7 * avg(3 weeks), 10m |"
    );
    println!("|---|---|---|---|");
    let mut totals = [(0usize, 0usize); 3];
    let cells = |in_time: usize, runs: usize, false_pages: usize, paging: bool| {
        if paging {
            format!("{in_time}/{runs} in time, {false_pages} false")
        } else {
            format!("{false_pages} false pages")
        }
    };
    for case in &CASES {
        let mut row = [(0usize, 0usize); 3];
        for seed in SEEDS {
            let points = orders(seed, case.scale, from(case.start, case.hours, case.factor));
            let verdicts = run(orders_spec(), &points);
            let ours: Vec<f64> = test_week_pages(&verdicts).iter().map(|v| v.t).collect();
            for (k, fires) in [ours, offset_rule(&points), average_rule(&points)]
                .iter()
                .enumerate()
            {
                let (in_time, false_pages) = judge(case, fires);
                row[k].0 += usize::from(in_time && case.page_within.is_some());
                row[k].1 += false_pages;
                totals[k].1 += false_pages;
                totals[k].0 += usize::from(in_time && case.page_within.is_some());
            }
        }
        let runs = SEEDS.count();
        let paging = case.page_within.is_some();
        println!(
            "| {} | {} | {} | {} |",
            case.name,
            cells(row[0].0, runs, row[0].1, paging),
            cells(row[1].0, runs, row[1].1, paging),
            cells(row[2].0, runs, row[2].1, paging),
        );
    }
    println!(
        "| **total** | {} in time, {} false | {} in time, {} false | {} in time, {} false |",
        totals[0].0, totals[0].1, totals[1].0, totals[1].1, totals[2].0, totals[2].1
    );
    let paging = CASES.iter().filter(|c| c.page_within.is_some()).count() * SEEDS.count();
    assert_eq!(
        totals[0],
        (paging, 0),
        "slowburn pages every case in time, nothing else"
    );
}

#[test]
fn the_cases_fall_where_their_names_say() {
    let at = |t: f64| {
        jiff::Timestamp::from_second(t as i64)
            .map(|t| t.strftime("%A %H:%M").to_string())
            .unwrap_or_default()
    };
    assert_eq!(at(CASES[0].start), "Friday 18:30");
    assert_eq!(at(CASES[1].start), "Tuesday 03:00");
    assert_eq!(at(CASES[2].start), "Tuesday 18:30");
}

/// Six weeks of a Berlin shop's orders (its day follows local time) from 2027-02-22, a
/// Monday; clocks go forward on 2027-03-28, in the fifth week. `factor` scales the usual rate
/// from the fifth week on.
fn berlin_orders(seed: u64, factor: impl Fn(f64) -> f64) -> (Vec<(f64, f64)>, f64) {
    let zone = jiff::tz::TimeZone::get("Europe/Berlin").expect("the system has tzdata");
    let start: jiff::Timestamp = "2027-02-21T23:00:00Z".parse().unwrap();
    let start = start.as_second() as f64;
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(60_480);
    let mut t = start;
    let test = start + 4.0 * WEEK;
    while t < start + 6.0 * WEEK {
        let at = jiff::Timestamp::from_second(t as i64).unwrap();
        let local = t + f64::from(zone.to_offset(at).seconds());
        let f = if t >= test { factor(t) } else { 1.0 };
        out.push((t, poisson(&mut rng, usual(local, 120.0) * f)));
        t += MIN;
    }
    (out, test)
}

fn berlin_spec(timezone: bool) -> DetectorSpec {
    DetectorSpec::new("orders", Unit::Count).with_seasonal(SeasonalSpec {
        below: Some(0.3),
        interval: MIN,
        timezone: timezone.then(|| jiff::tz::TimeZone::get("Europe/Berlin").unwrap()),
        ..SeasonalSpec::new(WEEK, 10.0 * MIN)
    })
}

#[test]
fn a_profile_in_the_shops_time_zone_does_not_page_when_the_clocks_change() {
    for seed in 1..=2 {
        let (points, test) = berlin_orders(seed, |_| 1.0);
        let local = run(berlin_spec(true), &points);
        let pages: Vec<_> = firing(&local, Detector::SEASONAL, Severity::Page);
        assert!(pages.is_empty(), "seed {seed}: {}", show(&local));
        // The same profile kept in UTC sees every peak an hour early after the change.
        let utc = run(berlin_spec(false), &points);
        let after: Vec<_> = (firing(&utc, Detector::SEASONAL, Severity::Page).into_iter())
            .filter(|v| v.t >= test)
            .collect();
        assert!(
            !after.is_empty(),
            "seed {seed}: a UTC profile should misread the DST week"
        );
    }
}

#[test]
fn a_page_names_the_usual_time_in_the_profiles_time_zone() {
    // Thursday 2027-04-01 from 18:30 CEST (16:30 UTC), a week after the change: orders at 40%.
    let drop: jiff::Timestamp = "2027-04-01T16:30:00Z".parse().unwrap();
    let drop = drop.as_second() as f64;
    let (points, _) = berlin_orders(3, from(drop, 2.0, 0.4));
    let verdicts = run(berlin_spec(true), &points);
    let pages = firing(&verdicts, Detector::SEASONAL, Severity::Page);
    assert_eq!(pages.len(), 1, "{}", show(&verdicts));
    let page = pages[0];
    assert!(page.t - drop <= 20.0 * MIN, "{}", show(&verdicts));
    assert!(
        page.message.contains("on Thursdays 18:") || page.message.contains("on Thursdays 19:"),
        "local time, not UTC: {}",
        page.message
    );
}
