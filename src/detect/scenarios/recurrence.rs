//! Recurrence scenarios: rises that come and go at the same phase must stop paging once the
//! trend detector has seen them recur, across shapes and seeds (peak heights, ramp lengths,
//! cycle lengths, noise), while a leak and a rise that climbs higher than before still page.
//! Test-only.

use super::*;

/// Latency at `base`, climbing `peak`× over a `ramp` from 08:00 every day, held until 10:00,
/// back to `base` by 12:00; log-normal noise of `noise`; sampled every minute.
fn office_hours(
    seed: u64,
    base: f64,
    peak: f64,
    ramp: f64,
    noise: f64,
    days: f64,
) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    series_every(MIN, days * DAY, |t| {
        let at = t.rem_euclid(DAY);
        let (start, top, end) = (8.0 * HOUR, 10.0 * HOUR, 12.0 * HOUR);
        let shape = if at < start || at >= end {
            0.0
        } else if at < start + ramp {
            (at - start) / ramp
        } else if at < top {
            1.0
        } else {
            1.0 - (at - top) / (end - top)
        };
        base * (1.0 + (peak - 1.0) * shape) * (noise * rng.normal()).exp()
    })
}

fn latency_spec_for(limit: f64, horizon: f64) -> DetectorSpec {
    DetectorSpec::new("latency", Unit::Seconds)
        .with_drift(DriftSpec::new(limit, horizon))
        .with_interval(MIN)
}

#[test]
fn a_daily_office_hour_climb_pages_on_the_first_day_at_most() {
    let mut first_day_pages = 0;
    let cases = [
        (0.08, 10.0, 60.0 * MIN, 0.05),
        (0.08, 12.0, 45.0 * MIN, 0.10),
        (0.10, 6.0, 90.0 * MIN, 0.05),
        (0.05, 20.0, 60.0 * MIN, 0.15),
    ];
    for (i, (base, peak, ramp, noise)) in cases.into_iter().enumerate() {
        for seed in 1..=2 {
            let points = office_hours(seed + 10 * i as u64, base, peak, ramp, noise, 4.0);
            let verdicts = run(latency_spec_for(2.0, 2.0 * HOUR), &points);
            let pages = pages(&verdicts);
            assert!(
                pages.iter().all(|v| v.t < T0 + DAY),
                "case {i} seed {seed}: paged after the first day:\n{}",
                show(&verdicts)
            );
            first_day_pages += pages.len();
        }
    }
    // The climbs do look like trends toward the limit: the first day pages for most of them.
    assert!(
        first_day_pages >= 5,
        "only {first_day_pages} first-day pages"
    );
}

#[test]
fn a_daily_climb_that_goes_higher_than_before_pages_again() {
    let mut rng = Rng::new(7);
    // Five days to 800 ms, then a day whose climb does not stop: it reaches the limit.
    let points = series_every(MIN, 6.0 * DAY, |t| {
        let day = (t / DAY).floor();
        let at = t.rem_euclid(DAY);
        let (start, top, end) = (8.0 * HOUR, 10.0 * HOUR, 12.0 * HOUR);
        let top_level = if day < 5.0 { 0.8 } else { 2.4 };
        let shape = if at < start || at >= end {
            0.0
        } else if at < top {
            (at - start) / (top - start)
        } else {
            1.0 - (at - top) / (end - top)
        };
        (0.08 + (top_level - 0.08) * shape) * (0.05 * rng.normal()).exp()
    });
    let verdicts = run(latency_spec_for(2.0, 2.0 * HOUR), &points);
    assert!(
        pages(&verdicts).iter().any(|v| v.t >= T0 + 5.0 * DAY),
        "{}",
        show(&verdicts)
    );
}

/// A cache that fills from 200 MiB to `top` × 1 GiB over `fill`, is flushed, and stays low
/// for `rest`, again and again for a day.
fn cache_cycles(seed: u64, top: f64, fill: f64, rest: f64, noise: f64) -> Vec<(f64, f64)> {
    let mut rng = Rng::new(seed);
    let cycle = fill + rest;
    series(DAY, |t| {
        let at = t.rem_euclid(cycle);
        let level = if at < fill {
            200.0 * MIB + (top * GIB - 200.0 * MIB) * at / fill
        } else {
            200.0 * MIB
        };
        level * (1.0 + noise * rng.normal())
    })
}

#[test]
fn a_cache_that_fills_and_flushes_pages_in_its_first_few_cycles_at_most() {
    let cases = [
        (0.85, 50.0 * MIN, 8.0 * MIN, 0.01),
        (0.90, 45.0 * MIN, 15.0 * MIN, 0.02),
        (0.80, 55.0 * MIN, 5.0 * MIN, 0.01),
        (0.92, 40.0 * MIN, 30.0 * MIN, 0.03),
    ];
    let mut early = 0;
    for (i, (top, fill, rest, noise)) in cases.into_iter().enumerate() {
        for seed in 1..=2 {
            let points = cache_cycles(seed + 10 * i as u64, top, fill, rest, noise);
            let spec = DetectorSpec::new("rss", Unit::Bytes)
                .with_drift(DriftSpec::new(GIB, HOUR))
                .with_interval(STEP);
            let verdicts = run(spec, &points);
            let pages = pages(&verdicts);
            // A page that holds across a flush makes one long episode of the first cycles, so
            // "the first few" is four.
            let fourth = T0 + 4.0 * (fill + rest);
            assert!(
                pages.iter().all(|v| v.t < fourth),
                "case {i} seed {seed}: paged after the fourth cycle:\n{}",
                show(&verdicts)
            );
            early += pages.len();
        }
    }
    assert!(early >= 4, "only {early} pages in the first cycles");
}

#[test]
fn a_held_back_rise_says_so() {
    let points = office_hours(3, 0.08, 10.0, HOUR, 0.05, 2.0);
    let mut detectors =
        SignalDetectors::new(latency_spec_for(2.0, 2.0 * HOUR)).unwrap_or_else(|e| panic!("{e}"));
    let second_day = points
        .iter()
        .position(|(t, _)| *t >= T0 + DAY + 9.0 * HOUR)
        .unwrap_or(points.len());
    replay(&mut detectors, &points[..second_day]);
    let notes = detectors.state().notes;
    assert!(
        notes
            .iter()
            .any(|(d, n)| *d == "trend" && n.starts_with("a recurring rise (daily at 08:")),
        "{notes:?}"
    );
}
