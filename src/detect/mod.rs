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
//! - [`stats`]: the robust statistics they share (Theil–Sen, Mann–Kendall, the normal tail);
//! - [`verdict`]: the verdict value, the [`Detector`] labels and the formatting of messages;
//! - [`backtest`]: replay of a recorded series in virtual time;
//! - [`csv`]: parsing of `unix_seconds,value` files with line-numbered problems.
//!
//! The [`detectors!`] table lists them; [`SignalDetectors`] runs the ones a spec asks for in
//! table order, passing each a [`Context`] (settling after a re-baseline, a rise already told).
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
pub mod seasonal;
pub mod series;
pub mod stats;
pub mod trend;
pub mod verdict;

#[cfg(test)]
mod scenarios;

use std::fmt;

pub use backtest::{backtest, replay};
pub use burn::{Burn, BurnRule, SloSpec, WindowBurn};
pub use change::{Change, ChangeSpec, Changes, Direction, Sensitivity};
pub use seasonal::{Seasonal, SeasonalSpec};
pub use series::{Bucket, Series};
pub use trend::{DriftSpec, Fit, Trend};
pub use verdict::{Detector, DetectorInfo, Severity, Transition, Unit, Verdict};

/// The table of detectors. Each row (`Variant(module::Type) [CONST = module::INFO, …]`)
/// generates the detector's variant of [`DetectorConfig`] (its spec, as a [`DetectorSpec`]
/// lists it), its arm in every dispatch of [`SignalDetectors`], and a [`Detector`] const for
/// each label its verdicts carry, all of which are in [`DETECTORS`]. The detector's own file
/// holds its spec, its state machine, its [`Detect`] impl and its [`DetectorInfo`]s. Adding a
/// detector is one file plus one row (and its YAML in `config/drift.rs`).
macro_rules! detectors {
    ($($variant:ident($module:ident::$detector:ident) [$($label:ident = $info:path),*],)*) => {
        /// One detector asked for on a signal, with its spec.
        #[derive(Debug, Clone, PartialEq)]
        pub enum DetectorConfig {
            $($variant(<$module::$detector as Detect>::Spec),)*
        }

        /// One built detector (boxed: detectors differ in size by hundreds of bytes).
        #[derive(Debug, Clone)]
        enum Running {
            $($variant(Box<$module::$detector>),)*
        }

        impl Detector {
            $(
                $(pub const $label: Detector = Detector::of(&$info);)*
            )*
        }

        /// Every detector label, in table order.
        pub const DETECTORS: &[Detector] = &[$($(Detector::$label,)*)*];

        impl DetectorConfig {
            fn validate(&self) -> Result<(), String> {
                match self {
                    $(DetectorConfig::$variant(s) => <$module::$detector as Detect>::validate(s),)*
                }
            }

            fn build(&self, signal: &str, unit: Unit, interval: f64) -> Running {
                match self {
                    $(DetectorConfig::$variant(s) => Running::$variant(Box::new(
                        <$module::$detector as Detect>::new(signal, unit, s.clone(), interval),
                    )),)*
                }
            }
        }

        impl Running {
            fn get(&self) -> &dyn Observe {
                match self {
                    $(Running::$variant(d) => d.as_ref(),)*
                }
            }

            fn get_mut(&mut self) -> &mut dyn Observe {
                match self {
                    $(Running::$variant(d) => d.as_mut(),)*
                }
            }
        }
    };
}

detectors! {
    Trend(trend::Trend) [TREND = trend::TREND],
    Change(change::Changes) [CHANGE = change::CHANGE, CHANGE_DOWN = change::CHANGE_DOWN],
    Burn(burn::Burn) [BURN = burn::BURN],
    Seasonal(seasonal::Seasonal) [SEASONAL = seasonal::SEASONAL],
}

/// How a detector is made; [`detectors!`] dispatches to it.
pub trait Detect: Observe + Sized {
    /// Its spec, as a `drift:` or `slo:` entry gives it.
    type Spec: fmt::Debug + Clone + PartialEq;
    /// Checks a spec, naming the field at fault.
    fn validate(spec: &Self::Spec) -> Result<(), String>;
    /// The detector of one signal; `interval` is the probe's (seconds between samples, 0 when
    /// unknown), which its time gates count in.
    fn new(signal: &str, unit: Unit, spec: Self::Spec, interval: f64) -> Self;
}

/// What a built detector does with samples; every method but `observe` has a default.
pub trait Observe: fmt::Debug {
    /// Feeds one finite sample, later than the last, pushing any transitions to `out`.
    fn observe(&mut self, t: f64, v: f64, ctx: &Context, out: &mut Vec<Verdict>);
    /// Forgets what a restart or counter reset makes stale; a firing alert may resolve.
    fn reset(&mut self, _t: f64, _out: &mut Vec<Verdict>) {}
    /// Writes its flags and figures into the exported state.
    fn export(&self, state: &mut DetectorState);
    /// Moves a limit that follows another signal (e.g. a process's fd limit).
    fn set_limit(&mut self, _limit: f64) {}
    /// Whether a firing alert of this detector already tells the story of a rise, so a
    /// rise detector after it in the table holds back its own ticket.
    fn tells_a_rise(&self) -> bool {
        false
    }
}

/// What the detectors of one signal know of each other, for the sample being observed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Context {
    /// Inside the settle period after a re-baseline: a level refilling after a restart is
    /// warming up, not drifting. Detectors of levels wait; counters of outcomes do not.
    pub settling: bool,
    /// A detector earlier in the table already fires for a rise (a trend page).
    pub rising: bool,
}

/// Which detectors run for one (probe, signal), and how.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectorSpec {
    /// The signal's name as it appears in messages: `rss`, `latency`, …
    pub signal: String,
    pub unit: Unit,
    /// The detectors asked for, in table order.
    pub detectors: Vec<DetectorConfig>,
    /// Seconds after a re-baseline during which level detectors ignore samples: a process
    /// refilling its caches after a restart is warming up, not leaking.
    pub settle: f64,
    /// Seconds between samples (the probe's interval); 0 when unknown. Trend and change
    /// count their sustain, gaps and sample-count gates in this, so a probe run every 10
    /// minutes gets the same judgement as one run every 15 seconds, only later.
    pub interval: f64,
}

impl DetectorSpec {
    /// A spec with no detector enabled; add them with [`DetectorSpec::with`] or the `with_*`
    /// methods.
    pub fn new(signal: &str, unit: Unit) -> DetectorSpec {
        DetectorSpec {
            signal: signal.to_string(),
            unit,
            detectors: Vec::new(),
            settle: 1800.0,
            interval: 0.0,
        }
    }

    /// Sets the seconds between samples (the probe's interval).
    pub fn with_interval(mut self, interval: f64) -> DetectorSpec {
        self.interval = interval;
        self
    }

    /// Adds a detector.
    pub fn with(mut self, detector: DetectorConfig) -> DetectorSpec {
        self.detectors.push(detector);
        self
    }

    pub fn with_drift(self, drift: DriftSpec) -> DetectorSpec {
        self.with(DetectorConfig::Trend(drift))
    }

    pub fn with_change(self, change: ChangeSpec) -> DetectorSpec {
        self.with(DetectorConfig::Change(change))
    }

    pub fn with_slo(self, slo: SloSpec) -> DetectorSpec {
        self.with(DetectorConfig::Burn(slo))
    }

    pub fn with_seasonal(self, seasonal: SeasonalSpec) -> DetectorSpec {
        self.with(DetectorConfig::Seasonal(seasonal))
    }

    /// The trend spec, when a trend is asked for (its limit, for charts).
    pub fn drift(&self) -> Option<&DriftSpec> {
        self.detectors.iter().find_map(|d| match d {
            DetectorConfig::Trend(spec) => Some(spec),
            _ => None,
        })
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
/// `probe_drift_firing`, …), as of the last sample. Each detector writes its own part.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DetectorState {
    /// Fitted slope, units per second.
    pub slope: Option<f64>,
    /// Seconds to the limit; `None` when no window passes the trend gates.
    pub eta_seconds: Option<f64>,
    /// Fitted level at the last evaluation.
    pub level: Option<f64>,
    /// Whether each alert a detector can raise is firing, by its `probe_drift_firing`
    /// label (`trend`, `change`, `burn_page`, `burn_ticket`, …), in table order.
    pub firing: Vec<(&'static str, bool)>,
    /// Plain burn rate per window, shortest first (empty without an SLO).
    pub burn: Vec<WindowBurn>,
    /// What a detector has to say beyond its flags, for people (`seasonal: learning, 2d of
    /// 1w stored`).
    pub notes: Vec<(&'static str, String)>,
    /// Time of the last sample accepted.
    pub last_t: Option<f64>,
}

impl DetectorState {
    /// Whether the alert with this `probe_drift_firing` label is firing.
    pub fn is_firing(&self, label: &str) -> bool {
        self.firing.iter().any(|(l, f)| *l == label && *f)
    }

    /// Whether any of its alerts is firing.
    pub fn any_firing(&self) -> bool {
        self.firing.iter().any(|(_, f)| *f)
    }
}

/// The detectors of one (probe, signal), fed one sample at a time.
#[derive(Debug, Clone)]
pub struct SignalDetectors {
    spec: DetectorSpec,
    running: Vec<Running>,
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
        for detector in &spec.detectors {
            detector.validate().map_err(error)?;
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
        Ok(SignalDetectors {
            running: spec
                .detectors
                .iter()
                .map(|d| d.build(&spec.signal, spec.unit, spec.interval))
                .collect(),
            last_t: None,
            settled_at: None,
            spec,
        })
    }

    /// Moves the drift limit, for limits that name another signal.
    pub fn set_limit(&mut self, limit: f64) {
        if !limit.is_finite() {
            return;
        }
        for detector in &mut self.running {
            detector.get_mut().set_limit(limit);
        }
        for detector in &mut self.spec.detectors {
            if let DetectorConfig::Trend(drift) = detector {
                drift.limit = limit;
            }
        }
    }

    /// The spec these detectors were built from.
    pub fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    /// Feeds one sample and returns the transitions it caused. `rebaseline` marks the first
    /// sample after a process restart or a counter reset: each detector forgets what that
    /// makes stale (trend and change drop history and baselines, and their firing alerts
    /// resolve; burn counters are kept, since a restart does not refund the error budget),
    /// and level detectors ignore the next `settle` seconds. Samples not later than the
    /// previous one are ignored; a NaN/inf value is ignored but its `rebaseline` still counts.
    pub fn observe(&mut self, t: f64, v: f64, rebaseline: bool) -> Vec<Verdict> {
        let mut out = Vec::new();
        if !t.is_finite() || self.last_t.is_some_and(|last| t <= last) {
            return out;
        }
        self.last_t = Some(t);
        if rebaseline {
            for detector in &mut self.running {
                detector.get_mut().reset(t, &mut out);
            }
            self.settled_at = Some(t + self.spec.settle);
        }
        if !v.is_finite() {
            return out;
        }
        let mut ctx = Context {
            settling: self.settled_at.is_some_and(|s| t < s),
            rising: false,
        };
        for detector in &mut self.running {
            let detector = detector.get_mut();
            detector.observe(t, v, &ctx, &mut out);
            ctx.rising |= detector.tells_a_rise();
        }
        out
    }

    /// The exported state as of the last sample.
    pub fn state(&self) -> DetectorState {
        let mut state = DetectorState {
            last_t: self.last_t,
            ..DetectorState::default()
        };
        for detector in &self.running {
            detector.get().export(&mut state);
        }
        state
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
            (s.slope, s.eta_seconds, s.is_firing("trend")),
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
        assert!(!s.any_firing(), "{s:?}");
        assert_eq!(s.level, Some(1.0));
    }
}
