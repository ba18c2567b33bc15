//! Backtest: replays a recorded series through a signal's detectors in virtual time — the
//! samples' own timestamps are the clock — and collects every transition they would have
//! made. It owns nothing but the loop; parsing a file is `csv`'s job and printing is the
//! command line's.

use super::verdict::Verdict;
use super::{DetectorSpec, SignalDetectors, SpecError};

/// Feeds `points` (sorted by time; later duplicates and out-of-order points are ignored, as
/// are NaN/inf values) through `detectors` and returns every transition, in order.
pub fn replay(detectors: &mut SignalDetectors, points: &[(f64, f64)]) -> Vec<Verdict> {
    let mut out = Vec::new();
    for &(t, v) in points {
        out.extend(detectors.observe(t, v, false));
    }
    out
}

/// Builds fresh detectors from `spec` and replays `points` through them.
pub fn backtest(spec: DetectorSpec, points: &[(f64, f64)]) -> Result<Vec<Verdict>, SpecError> {
    let mut detectors = SignalDetectors::new(spec)?;
    Ok(replay(&mut detectors, points))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{ChangeSpec, DriftSpec, SloSpec, Unit};

    /// A week of 15 s samples with every detector on, the heaviest setting (one-minute
    /// buckets, so a re-fit every minute). Run with `--release --nocapture` for the timing.
    #[test]
    fn backtest_week_is_fast() {
        let mut state = 7_u64;
        let points: Vec<(f64, f64)> = (0..40_320)
            .map(|i| {
                let t = 1_700_000_000.0 + f64::from(i) * 15.0;
                state = crate::detect::series::splitmix64(state);
                let noise = (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
                (t, 0.08 * (1.0 + 0.2 * noise) + 1e-7 * f64::from(i))
            })
            .collect();
        let spec = DetectorSpec::new("latency", Unit::Seconds)
            .with_drift(DriftSpec::new(2.0, 2.0 * 3600.0))
            .with_change(ChangeSpec::default())
            .with_slo(SloSpec::new(0.999));
        let started = std::time::Instant::now();
        let verdicts = backtest(spec, &points).unwrap();
        let elapsed = started.elapsed();
        println!(
            "backtest of {} samples (one week at 15 s): {:.1} ms, {} transitions",
            points.len(),
            elapsed.as_secs_f64() * 1e3,
            verdicts.len()
        );
        if !cfg!(debug_assertions) {
            assert!(elapsed.as_secs_f64() < 1.0, "{elapsed:?}");
        }
    }
}
