//! Drift detection for slowburn: samples and "now" in, verdicts out. This module owns the
//! detectors that catch slow accumulation before it becomes an outage — trend/ETA, change
//! and error-budget burn — and the per-signal set that runs them. It must not do I/O, read a
//! clock, spawn tasks, or know about alerts, notifiers, the store or HTTP: time is always a
//! unix-seconds `f64` passed in, and the output is a plain [`Verdict`] for the alert engine.
//!
//! Map:
//! - [`series`]: bounded, bucketed history of one signal (aggregates, not raw samples);
//! - [`trend`]: Theil–Sen slope, Mann–Kendall gate, ETA to the limit, the `drift` page;
//! - [`change`]: CUSUM against a learned baseline, the "shifted since 05:02" ticket;
//! - [`burn`]: SLO burn rate with the workbook's multiwindow rules over minute counters;
//! - [`verdict`]: the verdict value and the formatting of its message;
//! - [`backtest`]: replay of a recorded series in virtual time;
//! - [`csv`]: parsing of `unix_seconds,value` files with line-numbered problems.
//!
//! Invariants: every detector is fed in time order and ignores NaN/inf values; the cost of
//! one sample is bounded (re-fits happen at most once per bucket close and use at most
//! [`trend::MAX_POINTS`] points) whatever the length of history; detectors emit transitions
//! only, never repeats (save the change ticket's one "still moving" update, see [`change`]).
//! Every time gate is judged in the probe's interval as well as in buckets
//! ([`DetectorSpec::interval`]): samples minutes apart get the same judgement, later.

pub mod backtest;
pub mod burn;
pub mod change;
pub mod csv;
pub mod series;
pub mod stats;
pub mod trend;
pub mod verdict;

#[cfg(test)]
mod scenarios;

use std::fmt;

pub use backtest::{backtest, replay};
pub use burn::{Burn, BurnRule, SloSpec, WindowBurn};
pub use change::{Change, ChangeSpec, Direction, Sensitivity};
pub use series::{Bucket, Series};
pub use trend::{DriftSpec, Fit, Trend};
pub use verdict::{Detector, Severity, Transition, Unit, Verdict};

/// Which detectors run for one (probe, signal), and how.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    /// The signal's name as it appears in messages: `rss`, `latency`, …
    pub signal: String,
    pub unit: Unit,
    /// Trend/ETA toward a limit (`drift:` entry).
    pub drift: Option<DriftSpec>,
    /// Step detection against a learned baseline.
    pub change: Option<ChangeSpec>,
    /// Error-budget burn; the signal's values are then 1.0 (success) or 0.0 (failure).
    pub slo: Option<SloSpec>,
    /// Seconds after a re-baseline during which trend and change ignore samples: a process
    /// refilling its caches after a restart is warming up, not leaking.
    pub settle: f64,
    /// Seconds between samples (the probe's interval); 0 when unknown. Trend and change
    /// count their sustain, gaps and sample-count gates in this, so a probe run every 10
    /// minutes gets the same judgement as one run every 15 seconds, only later.
    pub interval: f64,
}

impl DetectorSpec {
    /// A spec with no detector enabled; add them with the `with_*` methods.
    pub fn new(signal: &str, unit: Unit) -> DetectorSpec {
        DetectorSpec {
            signal: signal.to_string(),
            unit,
            drift: None,
            change: None,
            slo: None,
            settle: 1800.0,
            interval: 0.0,
        }
    }

    /// Sets the seconds between samples (the probe's interval).
    pub fn with_interval(mut self, interval: f64) -> DetectorSpec {
        self.interval = interval;
        self
    }

    pub fn with_drift(mut self, drift: DriftSpec) -> DetectorSpec {
        self.drift = Some(drift);
        self
    }

    pub fn with_change(mut self, change: ChangeSpec) -> DetectorSpec {
        self.change = Some(change);
        self
    }

    pub fn with_slo(mut self, slo: SloSpec) -> DetectorSpec {
        self.slo = Some(slo);
        self
    }
}

/// An invalid [`DetectorSpec`], naming the signal and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub signal: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "signal {}: {}", self.signal, self.message)
    }
}

impl std::error::Error for SpecError {}

/// Everything a detector set exports for metrics (`probe_drift_slope`,
/// `probe_drift_eta_seconds`, …), as of the last sample.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetectorState {
    /// Fitted slope, units per second.
    pub slope: Option<f64>,
    /// Seconds to the limit; `None` when no window passes the trend gates.
    pub eta_seconds: Option<f64>,
    /// Fitted level at the last evaluation.
    pub level: Option<f64>,
    pub trend_firing: bool,
    pub change_firing: bool,
    pub burn_page_firing: bool,
    pub burn_ticket_firing: bool,
    /// Plain burn rate per window, shortest first (empty without an SLO).
    pub burn: Vec<WindowBurn>,
    /// Time of the last sample accepted.
    pub last_t: Option<f64>,
}

/// The detectors of one (probe, signal), fed one sample at a time.
#[derive(Debug, Clone)]
pub struct SignalDetectors {
    spec: DetectorSpec,
    trend: Option<Trend>,
    /// One change detector per direction asked for (none, up, down, or both).
    changes: Vec<Change>,
    burn: Option<Burn>,
    last_t: Option<f64>,
    settled_at: Option<f64>,
}

impl SignalDetectors {
    /// Builds the detectors, validating every part of the spec.
    pub fn new(spec: DetectorSpec) -> Result<SignalDetectors, SpecError> {
        let error = |message: String| SpecError {
            signal: spec.signal.clone(),
            message,
        };
        if let Some(d) = &spec.drift {
            d.validate().map_err(error)?;
        }
        if let Some(c) = &spec.change {
            c.validate().map_err(error)?;
        }
        if let Some(s) = &spec.slo {
            s.validate().map_err(error)?;
        }
        if !(spec.interval.is_finite() && spec.interval >= 0.0) {
            return Err(error(format!(
                "interval must be zero or more seconds, got {}",
                spec.interval
            )));
        }
        if !(spec.settle.is_finite() && spec.settle >= 0.0) {
            return Err(error(format!(
                "settle must be zero or more seconds, got {}",
                spec.settle
            )));
        }
        // Both detectors judge time in the probe's interval; the spec's is the one source.
        let interval = spec.interval;
        Ok(SignalDetectors {
            trend: spec.drift.clone().map(|d| {
                let interval = d.interval.max(interval);
                Trend::new(&spec.signal, spec.unit, DriftSpec { interval, ..d })
            }),
            changes: spec
                .change
                .iter()
                .flat_map(|c| {
                    c.direction.each().iter().map(move |direction| ChangeSpec {
                        interval: c.interval.max(interval),
                        direction: *direction,
                        ..c.clone()
                    })
                })
                .map(|c| Change::new(&spec.signal, spec.unit, c))
                .collect(),
            burn: spec.slo.clone().map(|s| Burn::new(&spec.signal, s)),
            last_t: None,
            settled_at: None,
            spec,
        })
    }

    /// The spec these detectors were built from.
    /// Moves the drift limit, for limits that name another signal.
    pub fn set_limit(&mut self, limit: f64) {
        if !limit.is_finite() {
            return;
        }
        if let Some(trend) = &mut self.trend {
            trend.set_limit(limit);
        }
        if let Some(drift) = &mut self.spec.drift {
            drift.limit = limit;
        }
    }

    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    /// Feeds one sample and returns the transitions it caused. `rebaseline` marks the first
    /// sample after a process restart or a counter reset: history and baselines are dropped
    /// (firing trend/change alerts resolve), and trend and change ignore the next `settle`
    /// seconds; burn counters are kept, since a restart does not refund the error budget.
    /// Samples not later than the previous one are ignored; a NaN/inf value is ignored but
    /// its `rebaseline` still counts.
    pub fn observe(&mut self, t: f64, v: f64, rebaseline: bool) -> Vec<Verdict> {
        let mut out = Vec::new();
        if !t.is_finite() || self.last_t.is_some_and(|last| t <= last) {
            return out;
        }
        self.last_t = Some(t);
        if rebaseline {
            out.extend(self.trend.as_mut().and_then(|d| d.reset(t)));
            out.extend(self.changes.iter_mut().filter_map(|c| c.reset(t)));
            self.settled_at = Some(t + self.spec.settle);
        }
        if !v.is_finite() {
            return out;
        }
        if let Some(burn) = &mut self.burn {
            out.extend(burn.observe(t, v >= 0.5));
        }
        if self.settled_at.is_some_and(|s| t < s) {
            return out;
        }
        if let Some(trend) = &mut self.trend {
            out.extend(trend.observe(t, v));
        }
        let trend_firing = self.trend.as_ref().is_some_and(Trend::firing);
        let alarmed = self.changes.iter().filter(|c| c.firing()).count();
        for change in &mut self.changes {
            change.hold_baseline(alarmed > usize::from(change.firing()));
            // A rising trend already tells the story of a rise; a drop is news regardless.
            let suppress = trend_firing && change.direction() == Direction::Up;
            out.extend(change.observe(t, v, suppress));
        }
        out
    }

    /// The exported state as of the last sample.
    pub fn state(&self) -> DetectorState {
        let trend = self.trend.as_ref();
        DetectorState {
            slope: trend.and_then(Trend::slope),
            eta_seconds: trend.and_then(Trend::eta),
            level: trend.and_then(Trend::level),
            trend_firing: trend.is_some_and(Trend::firing),
            change_firing: self.changes.iter().any(Change::firing),
            burn_page_firing: self.burn.as_ref().is_some_and(|b| b.firing(Severity::Page)),
            burn_ticket_firing: self
                .burn
                .as_ref()
                .is_some_and(|b| b.firing(Severity::Ticket)),
            burn: self.burn.as_ref().map(Burn::rates).unwrap_or_default(),
            last_t: self.last_t,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_specs_are_refused_with_the_signal_named() {
        let spec = DetectorSpec::new("rss", Unit::Bytes).with_drift(DriftSpec::new(1.0, -1.0));
        let err = SignalDetectors::new(spec).unwrap_err();
        assert_eq!(
            err.to_string(),
            "signal rss: drift.horizon must be a positive number, got -1"
        );
        let spec = DetectorSpec::new("ok", Unit::Ratio).with_slo(SloSpec::new(99.9));
        assert!(SignalDetectors::new(spec).is_err());
    }

    #[test]
    fn empty_and_single_point_series() {
        let spec = DetectorSpec::new("rss", Unit::Bytes)
            .with_drift(DriftSpec::new(100.0, 3600.0))
            .with_change(ChangeSpec::default())
            .with_slo(SloSpec::new(0.999));
        let mut d = SignalDetectors::new(spec).unwrap();
        let s = d.state();
        assert_eq!((s.slope, s.level, s.last_t), (None, None, None));
        assert!(s.burn.iter().all(|w| w.total == 0 && w.burn == 0.0));
        assert!(backtest::replay(&mut d, &[]).is_empty());
        assert!(d.observe(0.0, 1.0, false).is_empty());
        let s = d.state();
        assert_eq!(
            (s.slope, s.eta_seconds, s.trend_firing),
            (None, None, false)
        );
        assert_eq!(s.last_t, Some(0.0));
    }

    #[test]
    fn extreme_inputs_do_not_panic() {
        let spec = DetectorSpec::new("x", Unit::Bytes)
            .with_drift(DriftSpec::new(f64::MAX, 1e-3))
            .with_change(ChangeSpec::default())
            .with_slo(SloSpec::new(0.5));
        let mut d = SignalDetectors::new(spec).unwrap_or_else(|e| panic!("{e}"));
        let mut t = -1e300;
        for i in 0..5000 {
            let v = match i % 4 {
                0 => f64::MAX,
                1 => -f64::MAX,
                2 => 0.0,
                _ => f64::MIN_POSITIVE,
            };
            for verdict in d.observe(t, v, i % 997 == 0) {
                assert!(!verdict.message.is_empty());
            }
            t = if i == 2500 {
                1e300
            } else {
                t + 1e-3 + (t.abs() * 1e-15)
            };
        }
        let _ = d.state();
        let spec = DetectorSpec::new("y", Unit::Seconds)
            .with_drift(DriftSpec::new(1.0, 1e12))
            .with_slo(SloSpec::new(0.999));
        let mut d = SignalDetectors::new(spec).unwrap_or_else(|e| panic!("{e}"));
        for i in 0..3000 {
            d.observe(f64::from(i) * 1e6, f64::from(i), false);
        }
    }

    #[test]
    fn junk_samples_are_ignored() {
        let spec = DetectorSpec::new("rss", Unit::Bytes)
            .with_drift(DriftSpec::new(100.0, 3600.0))
            .with_change(ChangeSpec::default())
            .with_slo(SloSpec::new(0.999));
        let mut d = SignalDetectors::new(spec).unwrap();
        for i in 0..20_000 {
            let t = f64::from(i) * 15.0;
            let v = match i % 5 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                _ => 1.0,
            };
            assert!(d.observe(t, v, false).is_empty(), "at {i}");
            assert!(d.observe(f64::NAN, 1.0, false).is_empty());
            assert!(d.observe(t - 1.0, 1e12, false).is_empty());
        }
        let s = d.state();
        assert!(!s.trend_firing && !s.change_firing && !s.burn_page_firing);
        assert_eq!(s.level, Some(1.0));
    }
}
