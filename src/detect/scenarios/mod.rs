//! The product scenarios of DESIGN §5 as tests: each generates a seeded series in the test,
//! backtests it through a [`SignalDetectors`] and asserts on the transitions; plus the
//! lead-time comparison with a static threshold and Prometheus' `predict_linear` printed for
//! the README (`cargo test lead_times -- --nocapture`). Test-only; owns no production code.

use crate::detect::backtest::{backtest, replay};
use crate::detect::series::splitmix64;
use crate::detect::verdict::format_duration;
use crate::detect::{
    ChangeSpec, Detector, DetectorSpec, DriftSpec, Severity, SignalDetectors, SloSpec, Transition,
    Unit, Verdict,
};

mod intervals;
mod recurrence;
mod seasonal;

const T0: f64 = 1_700_006_400.0; // 2023-11-15 00:00 UTC
const STEP: f64 = 15.0;
const MIN: f64 = 60.0;
const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
const MIB: f64 = 1024.0 * 1024.0;
const GIB: f64 = 1024.0 * MIB;

/// splitmix64 over a counter: small, seeded, reproducible.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D))
    }

    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        (splitmix64(self.0) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    fn bernoulli(&mut self, p: f64) -> bool {
        self.uniform() < p
    }
}

/// Samples every 15 s over `[T0, T0 + duration)`.
fn series(duration: f64, value: impl FnMut(f64) -> f64) -> Vec<(f64, f64)> {
    series_every(STEP, duration, value)
}

fn series_every(step: f64, duration: f64, mut value: impl FnMut(f64) -> f64) -> Vec<(f64, f64)> {
    let n = (duration / step) as usize;
    (0..n)
        .map(|i| {
            let t = T0 + i as f64 * step;
            (t, value(t - T0))
        })
        .collect()
}

fn firing(verdicts: &[Verdict], detector: Detector, severity: Severity) -> Vec<&Verdict> {
    verdicts
        .iter()
        .filter(|v| {
            v.detector == detector && v.severity == severity && v.transition == Transition::Firing
        })
        .collect()
}

fn pages(verdicts: &[Verdict]) -> Vec<&Verdict> {
    verdicts
        .iter()
        .filter(|v| v.severity == Severity::Page && v.transition == Transition::Firing)
        .collect()
}

fn run(spec: DetectorSpec, points: &[(f64, f64)]) -> Vec<Verdict> {
    match backtest(spec, points) {
        Ok(v) => v,
        Err(e) => panic!("{e}"),
    }
}

fn show(verdicts: &[Verdict]) -> String {
    verdicts
        .iter()
        .map(|v| format!("  +{} {v}\n", format_duration(v.t - T0)))
        .collect()
}

/// Scenario 1: flat 400 MiB ± 2% for 6h, then linear growth reaching 2 GiB 6h later.
struct Leak {
    points: Vec<(f64, f64)>,
    onset: f64,
    breach: f64,
}

fn leak(seed: u64) -> Leak {
    let mut rng = Rng::new(seed);
    let (onset, breach) = (6.0 * HOUR, 12.0 * HOUR);
    let slope = (2.0 * GIB - 400.0 * MIB) / (breach - onset);
    let points = series(13.0 * HOUR, |t| {
        let base = 400.0 * MIB + slope * (t - onset).max(0.0);
        base * (1.0 + 0.02 * rng.normal())
    });
    Leak {
        points,
        onset: T0 + onset,
        breach: T0 + breach,
    }
}

fn leak_spec(floor: bool) -> DetectorSpec {
    let mut drift = DriftSpec::new(2.0 * GIB, 6.0 * HOUR);
    drift.floor = floor;
    DetectorSpec::new("rss", Unit::Bytes)
        .with_drift(drift)
        .with_change(ChangeSpec::default())
}

/// Scenario 2: 80 ms with log-normal noise (σ 0.2) for 6h, then linear growth of the median
/// to 2 s over 3h.
fn creep(seed: u64) -> Leak {
    let mut rng = Rng::new(seed);
    let (onset, breach) = (6.0 * HOUR, 9.0 * HOUR);
    let slope = (2.0 - 0.08) / (breach - onset);
    let points = series(10.0 * HOUR, |t| {
        let base = 0.08 + slope * (t - onset).max(0.0);
        base * (0.2 * rng.normal()).exp()
    });
    Leak {
        points,
        onset: T0 + onset,
        breach: T0 + breach,
    }
}

fn latency_spec() -> DetectorSpec {
    DetectorSpec::new("latency", Unit::Seconds)
        .with_drift(DriftSpec::new(2.0, 2.0 * HOUR))
        .with_change(ChangeSpec::default())
}

#[test]
fn scenario_1_linear_leak_pages_within_an_hour_of_onset() {
    for seed in [1, 2, 3] {
        let leak = leak(seed);
        let verdicts = run(leak_spec(false), &leak.points);
        let trend = firing(&verdicts, Detector::TREND, Severity::Page);
        let Some(page) = trend.first() else {
            panic!("seed {seed}: no page\n{}", show(&verdicts));
        };
        let after = page.t - leak.onset;
        assert!(
            after > 0.0 && after <= HOUR,
            "seed {seed}: page {} after onset\n{}",
            format_duration(after),
            show(&verdicts)
        );
        assert!(leak.breach - page.t >= 5.0 * HOUR);
        assert_eq!(pages(&verdicts).len(), 1, "{}", show(&verdicts));
        let began = page.began_at.unwrap_or(f64::NAN);
        assert!(
            (began - leak.onset).abs() <= 20.0 * MIN,
            "seed {seed}: began {}",
            format_duration(began - leak.onset)
        );
        assert!(page.message.starts_with("rss grows 4."), "{}", page.message);
        assert!(
            page.message.contains("reaches 2 GiB in ~5h"),
            "{}",
            page.message
        );
    }
}

#[test]
fn scenario_1_linear_leak_in_floor_mode() {
    // Floor mode only trusts a minimum once `floor_window` has passed without a lower one,
    // so it sees the onset that much later: within an hour plus the floor window.
    for seed in [1, 2, 3] {
        let leak = leak(seed);
        let verdicts = run(leak_spec(true), &leak.points);
        let trend = firing(&verdicts, Detector::TREND, Severity::Page);
        let Some(page) = trend.first() else {
            panic!("seed {seed}: no page\n{}", show(&verdicts));
        };
        let after = page.t - leak.onset;
        assert!(
            after > 0.0 && after <= 1.5 * HOUR,
            "seed {seed}: page {} after onset\n{}",
            format_duration(after),
            show(&verdicts)
        );
        assert!(leak.breach - page.t >= 4.5 * HOUR);
    }
}

#[test]
fn scenario_2_latency_creep_pages_90_minutes_before_the_breach() {
    for seed in [1, 2, 3] {
        let creep = creep(seed);
        let verdicts = run(latency_spec(), &creep.points);
        let trend = firing(&verdicts, Detector::TREND, Severity::Page);
        let Some(page) = trend.first() else {
            panic!("seed {seed}: no page\n{}", show(&verdicts));
        };
        assert!(page.t > creep.onset, "{}", show(&verdicts));
        assert!(
            creep.breach - page.t >= 90.0 * MIN,
            "seed {seed}: lead {}\n{}",
            format_duration(creep.breach - page.t),
            show(&verdicts)
        );
        assert_eq!(pages(&verdicts).len(), 1, "{}", show(&verdicts));
    }
}

#[test]
fn scenario_3_a_step_is_a_ticket_not_a_drift_page() {
    for seed in [1, 2, 3] {
        let mut rng = Rng::new(seed);
        let step = 6.0 * HOUR;
        let points = series(18.0 * HOUR, |t| {
            let base = if t < step { 0.08 } else { 0.16 };
            base * (0.2 * rng.normal()).exp()
        });
        let verdicts = run(latency_spec(), &points);
        assert!(pages(&verdicts).is_empty(), "{}", show(&verdicts));
        let tickets = firing(&verdicts, Detector::CHANGE, Severity::Ticket);
        assert_eq!(tickets.len(), 1, "{}", show(&verdicts));
        let began = tickets[0].began_at.unwrap_or(f64::NAN);
        assert!(
            (began - (T0 + step)).abs() <= 10.0 * MIN,
            "seed {seed}: began {}",
            format_duration(began - T0 - step)
        );
        assert!(tickets[0].t - (T0 + step) <= 15.0 * MIN);
        let m = &tickets[0].message;
        assert!(
            m.starts_with("latency shifted from 7") || m.starts_with("latency shifted from 8"),
            "{m}"
        );
        assert!(m.contains("ms to 1"), "{m}");
        assert!(m.contains("(x1.") || m.contains("(x2."), "{m}");
        assert!(m.ends_with("since 06:00"), "{m}");
    }
}

/// Seven days of a ±30% daily cycle with log-normal noise and a 5× spike once in 2000.
fn daily(seed: u64, days: f64) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    let phase = rng.uniform() * std::f64::consts::TAU;
    series(days * DAY, |t| {
        let cycle = 1.0 + 0.3 * (std::f64::consts::TAU * t / DAY + phase).sin();
        let spike = if rng.bernoulli(1.0 / 2000.0) {
            5.0
        } else {
            1.0
        };
        0.1 * cycle * spike * (0.15 * rng.normal()).exp()
    })
}

#[test]
fn scenario_4_a_week_of_daily_cycles_never_pages() {
    for seed in [11, 12, 13] {
        let points = daily(seed, 7.0);
        let verdicts = run(latency_spec_with_limit(0.3), &points);
        assert!(
            pages(&verdicts).is_empty(),
            "seed {seed}\n{}",
            show(&verdicts)
        );
        let tickets = firing(&verdicts, Detector::CHANGE, Severity::Ticket).len();
        println!("seed {seed}: 0 pages, {tickets} change tickets");
    }
}

#[test]
fn scenario_4_tighter_limit_still_quiet() {
    // Limit 2× the mean: the cycle's steepest rise (8% of the mean an hour) would need 12h
    // to get there, so only a noise excursion in a short window could page.
    let points = daily(14, 7.0);
    let verdicts = run(latency_spec_with_limit(0.2), &points);
    assert!(pages(&verdicts).is_empty(), "{}", show(&verdicts));
}

fn latency_spec_with_limit(limit: f64) -> DetectorSpec {
    DetectorSpec::new("latency", Unit::Seconds)
        .with_drift(DriftSpec::new(limit, 2.0 * HOUR))
        .with_change(ChangeSpec::default())
}

/// RSS sawtooth: a 20-minute linear ramp of 300 MiB on top of `floor(t)`, then a drop.
fn sawtooth(seed: u64, hours: f64, floor: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    series(hours * HOUR, |t| {
        let tooth = 300.0 * MIB * ((t % (20.0 * MIN)) / (20.0 * MIN));
        (floor(t) + tooth) * (1.0 + 0.005 * rng.normal())
    })
}

fn sawtooth_spec() -> DetectorSpec {
    let mut drift = DriftSpec::new(2.0 * GIB, 6.0 * HOUR);
    drift.floor = true;
    DetectorSpec::new("rss", Unit::Bytes)
        .with_drift(drift)
        .with_change(ChangeSpec::default())
}

#[test]
fn scenario_5_gc_sawtooth_with_a_flat_floor_never_pages() {
    for seed in [21, 22] {
        let points = sawtooth(seed, 24.0, |_| 300.0 * MIB);
        let verdicts = run(sawtooth_spec(), &points);
        assert!(pages(&verdicts).is_empty(), "{}", show(&verdicts));
    }
}

#[test]
fn scenario_5_gc_sawtooth_with_a_rising_floor_pages() {
    let rate = (2.0 * GIB - 300.0 * MIB) / (8.0 * HOUR);
    let points = sawtooth(23, 9.0, |t| 300.0 * MIB + rate * t);
    let verdicts = run(sawtooth_spec(), &points);
    let trend = firing(&verdicts, Detector::TREND, Severity::Page);
    let Some(page) = trend.first() else {
        panic!("no page\n{}", show(&verdicts));
    };
    // The peaks reach 2 GiB when the floor is 300 MiB below it.
    let peaks_breach = T0 + (2.0 * GIB - 600.0 * MIB) / rate;
    assert!(
        peaks_breach - page.t >= 2.0 * HOUR,
        "page at +{}\n{}",
        format_duration(page.t - T0),
        show(&verdicts)
    );
}

fn success(seed: u64, hours: f64, ratio: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    success_every(STEP, seed, hours, ratio)
}

fn success_every(step: f64, seed: u64, hours: f64, ratio: impl Fn(f64) -> f64) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    series_every(step, hours * HOUR, |t| {
        f64::from(u8::from(rng.bernoulli(ratio(t))))
    })
}

/// Success at 99.98%, except one hour at 95% from `start` (seconds into the series).
fn bad_hour(step: f64, seed: u64, start: f64, hours: f64) -> Vec<(f64, f64)> {
    success_every(step, seed, hours, |t| {
        if (start..start + HOUR).contains(&t) {
            0.95
        } else {
            0.9998
        }
    })
}

fn slo_spec() -> DetectorSpec {
    DetectorSpec::new("success", Unit::Ratio).with_slo(SloSpec::new(0.999))
}

#[test]
fn scenario_6_slow_burn_is_a_ticket_not_a_page() {
    // A steady 99.5% burns 5× the budget: a ticket. At one probe per 15 s some hour of three
    // days holds 6-7 failures (a plain 25-29×), which the workbook's plain ratios would page
    // on in every run; the confidence bound keeps that under ~1% of runs (Monte Carlo).
    for seed in 31..=40 {
        let points = success(seed, 72.0, |_| 0.995);
        let verdicts = run(slo_spec(), &points);
        assert!(
            pages(&verdicts).is_empty(),
            "seed {seed}\n{}",
            show(&verdicts)
        );
        let tickets = firing(&verdicts, Detector::BURN, Severity::Ticket);
        assert!(!tickets.is_empty(), "seed {seed}\n{}", show(&verdicts));
        assert!(
            tickets[0].t - T0 <= 12.0 * HOUR,
            "seed {seed}\n{}",
            show(&verdicts)
        );
    }
}

#[test]
fn scenario_6_fast_burn_pages() {
    // 95% success burns 50× the budget of a 99.9% SLO. The 1h window reaches 14.4× only once
    // 1.44% of its samples failed: 17 minutes at 5% errors even with exact counts, and at one
    // probe per 15 s the hour holds only ~12 failures, as few as 6 in an unlucky hour — which
    // a steady 99.5% also produces. So at this interval a 5-minute page is out of reach (the
    // fast 5m rule needs a probe every ~1.25 s, see the next test); measured over 40 seeds:
    // most such hours page, after a median of ~40 minutes. A total outage pages in about
    // two minutes.
    let start = 6.0 * HOUR;
    let mut delays = Vec::new();
    for seed in 41..=80 {
        let points = bad_hour(STEP, seed, start, 9.0);
        let verdicts = run(slo_spec(), &points);
        let page = firing(&verdicts, Detector::BURN, Severity::Page);
        assert!(page.len() <= 1, "seed {seed}\n{}", show(&verdicts));
        if let Some(p) = page.first() {
            let delay = p.t - (T0 + start);
            assert!(
                delay > 0.0 && delay <= HOUR,
                "seed {seed}\n{}",
                show(&verdicts)
            );
            delays.push(delay);
        }

        let points = success(seed, 7.0, |t| {
            if (start..start + 10.0 * MIN).contains(&t) {
                0.0
            } else {
                0.9998
            }
        });
        let verdicts = run(slo_spec(), &points);
        let page = firing(&verdicts, Detector::BURN, Severity::Page);
        assert_eq!(page.len(), 1, "seed {seed}\n{}", show(&verdicts));
        assert!(page[0].t - (T0 + start) <= 5.0 * MIN, "{}", show(&verdicts));
    }
    delays.sort_by(f64::total_cmp);
    let median = delays.get(delays.len() / 2).copied().unwrap_or(f64::NAN);
    println!(
        "95% for 1h: {}/40 paged, median delay {}, fastest {}",
        delays.len(),
        format_duration(median),
        format_duration(delays.first().copied().unwrap_or(f64::NAN))
    );
    assert!(delays.len() >= 34, "only {} of 40 paged", delays.len());
    assert!(median <= 45.0 * MIN, "median {}", format_duration(median));
}

/// For each seed, how long after its onset a 95% hour probed every `step` seconds paged
/// (exactly one page each), sorted.
fn bad_hour_page_delays(step: f64, seeds: std::ops::RangeInclusive<u64>) -> Vec<f64> {
    let start = 2.0 * HOUR;
    let mut delays = Vec::new();
    for seed in seeds {
        let points = bad_hour(step, seed, start, 3.5);
        let verdicts = run(slo_spec(), &points);
        let page = firing(&verdicts, Detector::BURN, Severity::Page);
        assert_eq!(page.len(), 1, "seed {seed}\n{}", show(&verdicts));
        let delay = page[0].t - (T0 + start);
        assert!(delay > 0.0, "seed {seed}\n{}", show(&verdicts));
        delays.push(delay);
    }
    delays.sort_by(f64::total_cmp);
    delays
}

/// The seeds whose three days at a steady 99.5%, probed every `step` seconds, paged; each
/// must have opened a ticket.
fn steady_slow_burn_pages(step: f64, seeds: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    let mut paged = Vec::new();
    for seed in seeds {
        let points = success_every(step, seed, 72.0, |_| 0.995);
        let verdicts = run(slo_spec(), &points);
        if !pages(&verdicts).is_empty() {
            paged.push(seed);
        }
        let tickets = firing(&verdicts, Detector::BURN, Severity::Ticket);
        assert!(!tickets.is_empty(), "seed {seed}\n{}", show(&verdicts));
    }
    paged
}

fn report_delays(what: &str, delays: &[f64]) -> usize {
    let within = delays.iter().filter(|d| **d <= 5.0 * MIN).count();
    println!(
        "{what}: {within} of {} paged within 5 min; median {}, slowest {}",
        delays.len(),
        format_duration(delays[delays.len() / 2]),
        format_duration(delays[delays.len() - 1])
    );
    within
}

#[test]
fn scenario_6_fast_burn_pages_within_five_minutes_when_probed_every_second() {
    // Probed every second, five minutes hold ~300 results: a 95% hour puts ~15 failures into
    // them where a steady 99.5% puts 1.5, and the fast 5m/1m rule pages. Detection is a
    // count of random failures, so some unlucky hours take a minute or two longer.
    let delays = bad_hour_page_delays(1.0, 81..=120);
    let within = report_delays("95% for 1h at 1 s", &delays);
    // Measured: 34/40 within 5 minutes, median 3m, slowest 6m (100 other seeds: 93 within 5m).
    assert!(within >= 32, "only {within} of 40 paged within 5 minutes");
    assert!(delays[delays.len() / 2] <= 4.0 * MIN, "{delays:?}");
    assert!(delays[delays.len() - 1] <= 8.0 * MIN, "{delays:?}");
}

#[test]
fn scenario_6_slow_burn_probed_every_second_is_a_ticket_not_a_page() {
    // The fast rule must not turn a steady 99.5% into pages when probes are dense. Five
    // minutes of 99.5% hold 1.5 failures on average and the rule (z 2.33) needs 10-12 of
    // them. With z 1.96 two of these thirty 3-day runs paged, which is why the rule is
    // stricter than the workbook's 1h one; measured now: 0 of 30 here, 0 of 30 on other
    // seeds. The test still allows one run in thirty to page, and counts.
    let paged = steady_slow_burn_pages(1.0, 121..=150);
    println!("99.5% for 3 days at 1 s: {} of 30 runs paged", paged.len());
    assert!(paged.len() <= 1, "runs that paged: {paged:?}");
}

#[test]
fn scenario_6_fast_burn_pages_within_five_minutes_at_two_probes_a_second() {
    // Two results a second put ~30 failures of a 95% hour into five minutes where a steady
    // 99.5% puts 3: far enough apart that the fast rule pages within five minutes every time.
    // At one a second (above) the counts are 15 and 1.5 and an unlucky hour takes a minute
    // longer; that is the statistics of five minutes of evidence, not a tuning choice.
    let delays = bad_hour_page_delays(0.5, 161..=200);
    let within = report_delays("95% for 1h at 0.5 s", &delays);
    assert_eq!(within, delays.len(), "{delays:?}");
}

#[test]
fn scenario_6_slow_burn_at_two_probes_a_second_is_a_ticket_not_a_page() {
    // The same density must not page on a steady 99.5%: three days, 518,400 results a run.
    // Measured on other seeds too: 301 bad hours all paged within 4 minutes, 41 three-day
    // runs at 99.5% paged none.
    let paged = steady_slow_burn_pages(0.5, 201..=210);
    assert!(paged.is_empty(), "runs that paged: {paged:?}");
}

#[test]
fn gaps_of_hours_neither_panic_nor_page() {
    let mut rng = Rng::new(51);
    let points: Vec<(f64, f64)> = series(2.0 * DAY, |t| 0.1 * (0.2 * rng.normal()).exp() + t * 0.0)
        .into_iter()
        .filter(|(t, _)| {
            let h = (t - T0) / HOUR;
            !((5.0..9.0).contains(&h) || (20.0..20.5).contains(&h) || (30.0..41.0).contains(&h))
        })
        .collect();
    let verdicts = run(latency_spec(), &points);
    assert!(pages(&verdicts).is_empty(), "{}", show(&verdicts));

    // A leak interrupted by a 3h gap still pages, and nothing fires in the gap's shadow.
    let leak = leak(52);
    let gapped: Vec<(f64, f64)> = leak
        .points
        .iter()
        .copied()
        .filter(|(t, _)| !(T0 + 2.0 * HOUR..T0 + 5.0 * HOUR).contains(t))
        .collect();
    let verdicts = run(leak_spec(false), &gapped);
    let page = firing(&verdicts, Detector::TREND, Severity::Page);
    assert_eq!(page.len(), 1, "{}", show(&verdicts));
    assert!(page[0].t > leak.onset && page[0].t - leak.onset <= HOUR);
}

#[test]
fn nan_and_inf_samples_are_ignored() {
    let leak = leak(61);
    let mut junk = Vec::new();
    for (i, &(t, v)) in leak.points.iter().enumerate() {
        junk.push((t, v));
        if i % 10 == 0 {
            junk.push((t + 1.0, f64::NAN));
            junk.push((t + 2.0, f64::INFINITY));
            junk.push((t + 3.0, f64::NEG_INFINITY));
        }
    }
    let clean = run(leak_spec(false), &leak.points);
    let dirty = run(leak_spec(false), &junk);
    let first = |v: &[Verdict]| {
        firing(v, Detector::TREND, Severity::Page)
            .first()
            .map(|v| v.t)
    };
    let (a, b) = (first(&clean), first(&dirty));
    assert!(a.is_some() && b.is_some());
    assert!((a.unwrap_or(0.0) - b.unwrap_or(f64::MAX)).abs() <= 10.0 * MIN);
}

#[test]
fn rebaseline_on_restart_does_not_read_refill_as_a_trend() {
    // 1.5 GiB steady; every 6h the process restarts, drops to 250 MiB and refills to 1.5 GiB
    // within ~20 minutes. The restart sample carries the rebaseline flag.
    let mut rng = Rng::new(71);
    let spec = leak_spec(false);
    let mut detectors = SignalDetectors::new(spec).unwrap_or_else(|e| panic!("{e}"));
    let mut verdicts = Vec::new();
    let n = (24.0 * HOUR / STEP) as usize;
    for i in 0..n {
        let t = i as f64 * STEP;
        let since = t % (6.0 * HOUR);
        let level = 1.5 * GIB - (1.5 * GIB - 250.0 * MIB) * (-since / (5.0 * MIN)).exp();
        let v = level * (1.0 + 0.01 * rng.normal());
        let restart = since < STEP;
        verdicts.extend(detectors.observe(T0 + t, v, restart));
    }
    assert!(verdicts.is_empty(), "{}", show(&verdicts));
    let level = detectors.state().level.unwrap_or(0.0);
    assert!((level - 1.5 * GIB).abs() < 0.05 * GIB);
}

#[test]
fn a_firing_drift_resolves_on_rebaseline() {
    let leak = leak(81);
    let mut detectors = SignalDetectors::new(leak_spec(false)).unwrap_or_else(|e| panic!("{e}"));
    let until = leak.onset + 2.0 * HOUR;
    let mut verdicts = replay(
        &mut detectors,
        &leak
            .points
            .iter()
            .copied()
            .filter(|p| p.0 < until)
            .collect::<Vec<_>>(),
    );
    assert!(detectors.state().is_firing("trend"));
    verdicts.extend(detectors.observe(until, 300.0 * MIB, true));
    assert!(
        verdicts.iter().any(|v| v.detector == Detector::TREND
            && v.transition == Transition::Resolved
            && v.t == until
            && v.message.contains("re-baselined")),
        "{}",
        show(&verdicts)
    );
    assert!(!detectors.state().is_firing("trend"));
    assert_eq!(detectors.state().slope, None);
}

#[test]
fn drift_resolves_when_growth_stops() {
    // Leak for 2h (pages), then flat for 6h: the page resolves with hysteresis, once.
    let mut rng = Rng::new(91);
    let slope = 5.0 * MIB / MIN;
    let points = series(14.0 * HOUR, |t| {
        let grown = slope * (t - 6.0 * HOUR).clamp(0.0, 2.0 * HOUR);
        (400.0 * MIB + grown) * (1.0 + 0.01 * rng.normal())
    });
    let verdicts = run(leak_spec(false), &points);
    let trend: Vec<&Verdict> = verdicts
        .iter()
        .filter(|v| v.detector == Detector::TREND)
        .collect();
    assert_eq!(trend.len(), 2, "{}", show(&verdicts));
    assert_eq!(trend[1].transition, Transition::Resolved);
    assert!(trend[1].t > T0 + 8.0 * HOUR);
}

#[test]
fn state_exports_slope_and_eta() {
    let leak = leak(101);
    let mut detectors = SignalDetectors::new(leak_spec(false)).unwrap_or_else(|e| panic!("{e}"));
    let until = leak.onset + 3.0 * HOUR;
    replay(
        &mut detectors,
        &leak
            .points
            .iter()
            .copied()
            .filter(|p| p.0 < until)
            .collect::<Vec<_>>(),
    );
    let s = detectors.state();
    let true_slope = (2.0 * GIB - 400.0 * MIB) / (6.0 * HOUR);
    let slope = s.slope.unwrap_or(0.0);
    assert!(
        (slope / true_slope - 1.0).abs() < 0.1,
        "{slope} vs {true_slope}"
    );
    let eta = s.eta_seconds.unwrap_or(0.0);
    assert!(
        (eta - 3.0 * HOUR).abs() < 20.0 * MIN,
        "{}",
        format_duration(eta)
    );
    assert!(s.is_firing("trend"));
}

/// A static threshold `x > limit` with `for: 5m`, evaluated at every sample.
fn threshold_first_fire(points: &[(f64, f64)], limit: f64) -> Option<f64> {
    let mut pending: Option<f64> = None;
    for &(t, v) in points {
        if v > limit {
            if t - *pending.get_or_insert(t) >= 5.0 * MIN {
                return Some(t);
            }
        } else {
            pending = None;
        }
    }
    None
}

/// Prometheus `predict_linear(x[1h], horizon) > limit` with `for: 15m`, evaluated every 15 s:
/// least squares over the raw samples of the last hour, extrapolated from the evaluation time.
fn predict_linear_first_fire(points: &[(f64, f64)], horizon: f64, limit: f64) -> Option<f64> {
    let mut pending: Option<f64> = None;
    let mut start = 0;
    for (i, &(t, _)) in points.iter().enumerate() {
        while points[start].0 <= t - HOUR {
            start += 1;
        }
        let window = &points[start..=i];
        let n = window.len() as f64;
        if window.len() < 2 {
            pending = None;
            continue;
        }
        let mx = window.iter().map(|p| p.0 - t).sum::<f64>() / n;
        let my = window.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut sxy, mut sxx) = (0.0, 0.0);
        for &(x, y) in window {
            let dx = x - t - mx;
            sxy += dx * (y - my);
            sxx += dx * dx;
        }
        let slope = sxy / sxx;
        let at_now = my - slope * mx;
        if at_now + slope * horizon > limit {
            let since = *pending.get_or_insert(t);
            if t - since >= 15.0 * MIN {
                return Some(t);
            }
        } else {
            pending = None;
        }
    }
    None
}

#[test]
fn lead_times() {
    println!("lead time = breach of the noise-free series − first page");
    println!(
        "| scenario | slowburn | `x > limit for 5m` | `predict_linear(x[1h], horizon) > limit for 15m` |"
    );
    println!("|---|---|---|---|");
    let cases: [(&str, Leak, DetectorSpec, f64, f64); 2] = [
        (
            "1: rss leak 400 MiB → 2 GiB in 6h, horizon 6h",
            leak(1),
            leak_spec(false),
            2.0 * GIB,
            6.0 * HOUR,
        ),
        (
            "2: latency 80ms → 2s in 3h, horizon 2h",
            creep(1),
            latency_spec(),
            2.0,
            2.0 * HOUR,
        ),
    ];
    for (name, case, spec, limit, horizon) in cases {
        let verdicts = run(spec, &case.points);
        let ours = firing(&verdicts, Detector::TREND, Severity::Page)
            .first()
            .map(|v| v.t);
        let threshold = threshold_first_fire(&case.points, limit);
        let prometheus = predict_linear_first_fire(&case.points, horizon, limit);
        let lead =
            |t: Option<f64>| t.map_or("never".to_string(), |t| format_duration(case.breach - t));
        println!(
            "| {name} | {} | {} | {} |",
            lead(ours),
            lead(threshold),
            lead(prometheus)
        );
        assert!(ours.is_some() && prometheus.is_some());
    }
}
