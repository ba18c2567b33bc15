//! Change: a step in a signal's level that has not breached anything yet ("latency doubled
//! since 05:02", "orders fell from 40 to 12 a minute"): upward by default, downward or both
//! with [`Direction`] (a detector per direction, each comparing `sign × (v − baseline)`). Owns the learned baseline (median and MAD of a warm-up), a one-sided
//! CUSUM against it, the estimated change point, and the ticket's lifecycle. It works sample by
//! sample in constant time and memory; it reads no clock and does no I/O.
//!
//! The CUSUM adds `(v − baseline − slack) / σ` per sample, each term capped at
//! [`MAX_STEP`] so a lone spike can never alarm, and floors the sum at zero. `σ` is 1.4826 ×
//! MAD of the warm-up; `slack` is the larger of `slack_ratio` × baseline, `min_shift` and
//! `slack_sigmas` × σ, so levels within the slack (noise, a slow daily swing) never
//! accumulate. The ticket fires when the sum reaches `threshold`, at least [`MIN_AFTER`]
//! samples have arrived since it last left zero, and their median is above `baseline +
//! slack`. The change point is the first sample after the sum last stood at zero.
//!
//! While quiet, the baseline is re-learned every `warmup` from the samples since the last one
//! (only while the sum stands at zero), so it follows slow daily cycles and a step is judged
//! against the hour or two before it. While alarmed the baseline is frozen; the ticket
//! resolves when the median of the last [`RECENT`] samples has been back within the slack for
//! `resolve_after`, or, after `relearn_after` at the new level, it resolves by accepting that
//! level: the baseline is learned afresh, so one step makes one ticket, not a permanent alarm.
//!
//! Only a level that has stopped moving is accepted: over the last
//! [`ChangeSpec::still_window`] the medians of its buckets must show no hint of a
//! Mann–Kendall trend either way (two-sided p of at least 0.05). A leak is a level that keeps
//! moving, and taking it as the baseline would silence the one detector that had seen it.
//! While it moves the ticket stays open, and once, when `relearn_after` has passed and the
//! trend is clear (p below 0.001), the detector repeats its firing verdict with a message
//! saying the level is still moving (the alert engine updates the open ticket's message and
//! sends nothing); this is the only repeat a detector ever makes.
//!
//! Sample-count gates ([`MIN_AFTER`], [`RECENT`], the warm-up's 20 samples) are meant for
//! samples seconds apart; with the probe's `interval` known they shrink to what fits in a
//! span of time (never below a handful of samples), so a probe run every 30 minutes is not
//! asked for ten hours of samples before its first median.

use std::collections::VecDeque;

use super::series::{Series, median_in_place, splitmix64};
use super::stats::{mann_kendall, theil_sen};
use super::verdict::{
    Detector, DetectorInfo, Severity, Transition, Unit, Verdict, format_duration, format_since,
};
use super::{Context, Detect, DetectorState, Observe};

mod spec;
pub use spec::{ChangeSpec, Direction, Sensitivity};

/// Largest contribution of one sample to the CUSUM, in σ.
pub const MAX_STEP: f64 = 4.0;
/// Fewest samples after the change point before a ticket fires (so the new level is a median).
pub const MIN_AFTER: usize = 12;
/// Samples in the recent-level median used to decide the level is back.
pub const RECENT: usize = 20;
/// Most samples kept for the warm-up and for the level after a change point.
const KEEP: usize = 512;
/// Fewest samples of the warm-up when samples are sparse (20 otherwise).
const FEWEST_LEARN: usize = 8;
/// Fewest samples after the change point, and in the recent median, when samples are sparse.
const FEWEST: usize = 5;
/// Span of samples the gates above aim for when samples are sparse.
const GATE_SPAN: f64 = 1800.0;
/// Width of the buckets the stillness test fits, unless the interval is longer.
const STILL_BUCKET: f64 = 300.0;
/// Fewest buckets the stillness test needs before it says anything.
const STILL_POINTS: usize = 6;
/// Two-sided Mann–Kendall p at or above which the level counts as still: lenient, because
/// taking a leak for a steady level is the failure this test exists to prevent.
const STILL_P: f64 = 0.05;
/// Two-sided p below which the ticket says the level is still moving; strict, because the
/// test is repeated at every bucket, and at 0.01 a plain step with log-normal noise now and
/// then earned a "still falling" message. In between the detector waits and says nothing.
const MOVING_P: f64 = 0.001;

/// The learned reference level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Baseline {
    pub median: f64,
    /// Robust standard deviation: 1.4826 × MAD, floored at 1% of the median.
    pub sigma: f64,
    /// Shift tolerated before the CUSUM accumulates.
    pub slack: f64,
}

/// The ticket for a step up: `change:latency` alerts.
pub const CHANGE: DetectorInfo = DetectorInfo {
    label: "change",
    reason: "change",
    per_severity: false,
};

/// The ticket for a step down: `change_down:orders` alerts.
pub const CHANGE_DOWN: DetectorInfo = DetectorInfo {
    label: "change_down",
    reason: "change_down",
    per_severity: false,
};

/// The change detectors of one signal: one per direction asked for. While one is alarmed
/// the other holds its baseline, so a drop that lasts an hour does not become the upward
/// detector's baseline (the recovery would read as a rise).
#[derive(Debug, Clone)]
pub struct Changes(Vec<Change>);

impl Changes {
    /// Each direction's detector.
    pub fn each(&self) -> &[Change] {
        &self.0
    }
}

impl Detect for Changes {
    type Spec = ChangeSpec;

    fn validate(spec: &ChangeSpec) -> Result<(), String> {
        spec.validate()
    }

    fn new(signal: &str, unit: Unit, spec: ChangeSpec, interval: f64) -> Changes {
        let interval = spec.interval.max(interval);
        Changes(
            spec.direction
                .each()
                .iter()
                .map(|direction| {
                    let spec = ChangeSpec {
                        interval,
                        direction: *direction,
                        ..spec.clone()
                    };
                    Change::new(signal, unit, spec)
                })
                .collect(),
        )
    }
}

impl Observe for Changes {
    fn observe(&mut self, t: f64, v: f64, ctx: &Context, out: &mut Vec<Verdict>) {
        if ctx.settling {
            return;
        }
        let alarmed = self.0.iter().filter(|c| c.firing()).count();
        for change in &mut self.0 {
            change.hold_baseline(alarmed > usize::from(change.firing()));
            // A rising trend already tells the story of a rise; a drop is news regardless.
            let suppress = ctx.rising && change.direction() == Direction::Up;
            out.extend(change.observe(t, v, suppress));
        }
    }

    fn reset(&mut self, t: f64, out: &mut Vec<Verdict>) {
        out.extend(self.0.iter_mut().filter_map(|c| c.reset(t)));
    }

    fn export(&self, state: &mut DetectorState) {
        state
            .firing
            .push((CHANGE.label, self.0.iter().any(Change::firing)));
    }
}

/// The change detector of one signal, looking one way.
#[derive(Debug, Clone)]
pub struct Change {
    signal: String,
    unit: Unit,
    spec: ChangeSpec,
    baseline: Option<Baseline>,
    learner: Learner,
    cusum: f64,
    began_at: Option<f64>,
    after: Vec<f64>,
    recent: VecDeque<f64>,
    alarmed_at: Option<f64>,
    back_since: Option<f64>,
    level: Option<f64>,
    /// Bucketed level since the ticket fired, for the stillness test.
    since_alarm: Series,
    /// Whether this ticket already said its level is still moving.
    told_moving: bool,
    /// Set while the detector watching the other way is alarmed: no quiet relearning.
    held: bool,
    recent_len: usize,
    min_after: usize,
}

/// What the stillness test saw over the recent window.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Movement {
    /// Too few buckets yet, or a hint of a trend that is not yet clear either way.
    Unknown,
    /// No significant trend: the level may become the baseline.
    Still,
    /// A significant trend, with its Theil–Sen slope (units per second).
    Moving(f64),
}

impl Change {
    /// A change detector; `spec` should have passed [`ChangeSpec::validate`].
    pub fn new(signal: &str, unit: Unit, spec: ChangeSpec) -> Change {
        let width = spec.still_bucket();
        let window = spec.still_window();
        let buckets = (window / width).ceil() as usize + 4;
        Change {
            since_alarm: Series::new(width, window + 2.0 * width, buckets),
            told_moving: false,
            held: false,
            recent_len: spec.recent(),
            min_after: spec.min_after(),
            signal: signal.to_string(),
            unit,
            spec,
            baseline: None,
            learner: Learner::default(),
            cusum: 0.0,
            began_at: None,
            after: Vec::new(),
            recent: VecDeque::with_capacity(RECENT),
            alarmed_at: None,
            back_since: None,
            level: None,
        }
    }

    /// +1 for a detector that looks for rises, −1 for drops: every comparison with the
    /// baseline is made on `sign × (v − baseline)`, so one code path serves both.
    fn sign(&self) -> f64 {
        if self.spec.direction == Direction::Down {
            -1.0
        } else {
            1.0
        }
    }

    /// Feeds one finite sample. `suppress` holds back a new ticket (the caller's trend page
    /// already tells this story); the CUSUM keeps running, so the ticket can fire later.
    pub fn observe(&mut self, t: f64, v: f64, suppress: bool) -> Option<Verdict> {
        if self.recent.len() >= self.recent_len {
            self.recent.pop_front();
        }
        self.recent.push_back(v);
        if self.alarmed_at.is_some() {
            self.since_alarm.push(t, v);
        }
        let Some(base) = self.baseline else {
            self.learner.push(t, v);
            if let Some(fresh) = self.learner.learn(&self.spec) {
                self.baseline = Some(fresh);
                self.cusum = 0.0;
                self.began_at = None;
                self.after.clear();
            }
            return None;
        };
        if self.alarmed_at.is_none() && !self.held {
            self.learner.push(t, v);
            if self.cusum <= 0.0
                && let Some(fresh) = self.learner.learn(&self.spec)
            {
                self.baseline = Some(fresh);
            }
        }
        let step = ((self.sign() * (v - base.median) - base.slack) / base.sigma).min(MAX_STEP);
        let was_zero = self.cusum <= 0.0;
        self.cusum = (self.cusum + step).max(0.0);
        if self.cusum > 0.0 {
            if was_zero {
                self.began_at = Some(t);
                self.after.clear();
            }
            if self.after.len() < KEEP {
                self.after.push(v);
            }
        } else if self.alarmed_at.is_none() {
            self.began_at = None;
        }
        match self.alarmed_at {
            None => self.maybe_fire(t, base, suppress),
            Some(since) => self.maybe_resolve(t, since, base),
        }
    }

    /// Forgets the baseline (a restart or counter reset). A firing ticket resolves.
    pub fn reset(&mut self, t: f64) -> Option<Verdict> {
        let was = self.alarmed_at.is_some();
        let level = self.level.unwrap_or(f64::NAN);
        *self = Change::new(&self.signal, self.unit, self.spec.clone());
        was.then(|| {
            self.verdict(
                t,
                Transition::Resolved,
                level,
                None,
                format!(
                    "{} re-baselined (restart or reset); change cleared",
                    self.signal
                ),
            )
        })
    }

    /// Holds the baseline while the detector watching the other way is alarmed: a drop that
    /// lasts an hour must not become the upward detector's baseline, or the recovery would
    /// read as a rise.
    pub fn hold_baseline(&mut self, held: bool) {
        if held && !self.held {
            self.learner = Learner::default();
        }
        self.held = held;
    }

    /// Which way this detector looks (never `Both`: that is two detectors).
    pub fn direction(&self) -> Direction {
        self.spec.direction
    }

    /// Whether the change ticket is firing.
    pub fn firing(&self) -> bool {
        self.alarmed_at.is_some()
    }

    /// The learned baseline, once the warm-up is over.
    pub fn baseline(&self) -> Option<Baseline> {
        self.baseline
    }

    /// The CUSUM statistic, in σ.
    pub fn cusum(&self) -> f64 {
        self.cusum
    }

    fn maybe_fire(&mut self, t: f64, base: Baseline, suppress: bool) -> Option<Verdict> {
        if suppress || self.cusum < self.spec.threshold || self.after.len() < self.min_after {
            return None;
        }
        let mut after = self.after.clone();
        let level = median_in_place(&mut after)?;
        if self.sign() * (level - base.median) <= base.slack {
            return None;
        }
        self.alarmed_at = Some(t);
        self.back_since = None;
        self.level = Some(level);
        self.learner = Learner::default();
        self.since_alarm.reset();
        self.since_alarm
            .push(t, self.recent.back().copied().unwrap_or(level));
        self.told_moving = false;
        let began = self.began_at.unwrap_or(t);
        let ratio = if base.median > 0.0 {
            format!(" (x{:.1})", level / base.median)
        } else {
            String::new()
        };
        let message = format!(
            "{} shifted from {} to {}{ratio} since {}",
            self.signal,
            self.unit.format(base.median),
            self.unit.format(level),
            format_since(began, t)
        );
        Some(self.verdict(t, Transition::Firing, level, Some(began), message))
    }

    fn maybe_resolve(&mut self, t: f64, since: f64, base: Baseline) -> Option<Verdict> {
        let mut recent: Vec<f64> = self.recent.iter().copied().collect();
        let now_level = median_in_place(&mut recent).unwrap_or(base.median);
        self.level = Some(now_level);
        let began = self.began_at;
        if self.sign() * (now_level - base.median) <= base.slack {
            let back = *self.back_since.get_or_insert(t);
            if t - back >= self.spec.resolve_after {
                self.clear();
                let message = format!(
                    "{} back to its baseline {} (now {})",
                    self.signal,
                    self.unit.format(base.median),
                    self.unit.format(now_level)
                );
                return Some(self.verdict(t, Transition::Resolved, now_level, began, message));
            }
            return None;
        }
        self.back_since = None;
        if t - since < self.spec.relearn_after {
            return None;
        }
        match self.movement(t) {
            Movement::Unknown => None,
            Movement::Moving(slope) => {
                if std::mem::replace(&mut self.told_moving, true) {
                    return None;
                }
                let message = format!(
                    "{} still {} {} (now {}, baseline {}) since {}: not accepted as a baseline while it moves",
                    self.signal,
                    if slope > 0.0 { "rising" } else { "falling" },
                    self.unit.format_rate(slope),
                    self.unit.format(now_level),
                    self.unit.format(base.median),
                    format_since(began.unwrap_or(since), t)
                );
                Some(self.verdict(t, Transition::Firing, now_level, began, message))
            }
            Movement::Still => {
                self.clear();
                self.baseline = None;
                let message = format!(
                    "{} at {} for {}, steady for the last {}: accepted as the new baseline",
                    self.signal,
                    self.unit.format(now_level),
                    format_duration(t - since),
                    format_duration(self.spec.still_window())
                );
                Some(self.verdict(t, Transition::Resolved, now_level, began, message))
            }
        }
    }

    /// Mann–Kendall over the bucket medians of the last `still_window`, both directions.
    fn movement(&self, t: f64) -> Movement {
        let from = t - self.spec.still_window();
        let (xs, mut ys): (Vec<f64>, Vec<f64>) = self
            .since_alarm
            .buckets()
            .iter()
            .filter(|b| b.mid_t() >= from)
            .map(|b| (b.mid_t(), b.median))
            .unzip();
        if xs.len() < STILL_POINTS {
            return Movement::Unknown;
        }
        let Some((slope, s)) = theil_sen(&xs, &ys, &mut Vec::new()) else {
            return Movement::Unknown;
        };
        let (up, _) = mann_kendall(s, &mut ys);
        let (down, _) = mann_kendall(-s, &mut ys);
        let p = 2.0 * up.min(down);
        if p >= STILL_P || slope == 0.0 {
            Movement::Still
        } else if p < MOVING_P {
            Movement::Moving(slope)
        } else {
            Movement::Unknown
        }
    }

    fn clear(&mut self) {
        self.alarmed_at = None;
        self.told_moving = false;
        self.since_alarm.reset();
        self.back_since = None;
        self.cusum = 0.0;
        self.began_at = None;
        self.after.clear();
    }

    fn verdict(
        &self,
        t: f64,
        transition: Transition,
        level: f64,
        began_at: Option<f64>,
        message: String,
    ) -> Verdict {
        Verdict {
            detector: if self.spec.direction == Direction::Down {
                Detector::CHANGE_DOWN
            } else {
                Detector::CHANGE
            },
            signal: self.signal.clone(),
            severity: Severity::Ticket,
            transition,
            t,
            eta_seconds: None,
            slope: None,
            level,
            began_at,
            message,
        }
    }
}

/// Collects samples for `warmup` seconds and turns them into a [`Baseline`].
#[derive(Debug, Clone, Default)]
struct Learner {
    values: Vec<f64>,
    seen: u64,
    start: Option<f64>,
    last: f64,
}

impl Learner {
    fn push(&mut self, t: f64, v: f64) {
        self.start.get_or_insert(t);
        self.last = t;
        self.seen += 1;
        if self.values.len() < KEEP {
            self.values.push(v);
        } else {
            // Algorithm R with a hash in place of a random draw: reproducible, unbiased.
            let j = (splitmix64(self.seen) % self.seen) as usize;
            if let Some(slot) = self.values.get_mut(j) {
                *slot = v;
            }
        }
    }

    /// The baseline once `warmup` has been covered by at least 20 samples; starts over then.
    fn learn(&mut self, spec: &ChangeSpec) -> Option<Baseline> {
        let start = self.start?;
        if self.last - start < spec.warmup || self.values.len() < spec.learn_samples() {
            return None;
        }
        let median = median_in_place(&mut self.values)?;
        let mut deviations: Vec<f64> = self.values.iter().map(|x| (x - median).abs()).collect();
        let mad = median_in_place(&mut deviations).unwrap_or(0.0);
        *self = Learner::default();
        let sigma = (1.4826 * mad)
            .max(0.01 * median.abs())
            .max(1e-12 * (1.0 + spec.min_shift));
        let slack = (spec.slack_ratio * median.abs())
            .max(spec.min_shift)
            .max(spec.slack_sigmas * sigma);
        Some(Baseline {
            median,
            sigma,
            slack,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(change: &mut Change, from: u32, to: u32, value: impl Fn(u32) -> f64) -> Vec<Verdict> {
        (from..to)
            .filter_map(|i| change.observe(f64::from(i) * 15.0, value(i), false))
            .collect()
    }

    #[test]
    fn learns_then_catches_a_step_once_and_relearns() {
        let mut c = Change::new("latency", Unit::Seconds, ChangeSpec::default());
        let wobble = |i: u32| 0.9 + 0.1 * f64::from(i % 3);
        let out = run(&mut c, 0, 1000, |i| 0.08 * wobble(i));
        assert!(out.is_empty());
        let base = c.baseline().unwrap();
        assert!((base.median - 0.08).abs() < 0.005);
        let out = run(&mut c, 1000, 3000, |i| 0.16 * wobble(i));
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].transition, Transition::Firing);
        assert_eq!(out[0].began_at, Some(15_000.0));
        assert!(
            out[0]
                .message
                .starts_with("latency shifted from 80ms to 160ms (x2.0) since")
        );
        assert_eq!(out[1].transition, Transition::Resolved);
        assert!(
            out[1].message.contains("new baseline"),
            "{}",
            out[1].message
        );
        let out = run(&mut c, 3000, 5000, |i| 0.16 * wobble(i));
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn a_drop_is_news_to_a_downward_detector_only() {
        let down = ChangeSpec {
            direction: Direction::Down,
            ..ChangeSpec::default()
        };
        let wobble = |i: u32| 0.9 + 0.1 * f64::from(i % 3);
        // Orders per minute: 40, then a third of that for an hour, then back.
        let orders = |i: u32| if (1000..1240).contains(&i) { 13.0 } else { 40.0 } * wobble(i);
        let mut c = Change::new("orders", Unit::Count, down.clone());
        let out = run(&mut c, 0, 1000, orders);
        assert!(out.is_empty(), "{out:?}");
        let out = run(&mut c, 1000, 1400, orders);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].detector, Detector::CHANGE_DOWN);
        assert_eq!(out[0].transition, Transition::Firing);
        assert_eq!(out[0].began_at, Some(15_000.0));
        assert!(
            out[0]
                .message
                .starts_with("orders shifted from 40 to 13 (x0.3)"),
            "{}",
            out[0].message
        );
        assert_eq!(out[1].transition, Transition::Resolved);
        assert!(
            out[1].message.contains("back to its baseline"),
            "{}",
            out[1].message
        );

        // While it lasts, the same drop means nothing to the default (upward) detector, and a
        // rise nothing to the downward one.
        let mut up = Change::new("orders", Unit::Count, ChangeSpec::default());
        assert!(run(&mut up, 0, 1240, orders).is_empty());
        let mut c = Change::new("orders", Unit::Count, down);
        let rise = |i: u32| if i >= 1000 { 120.0 } else { 40.0 } * wobble(i);
        assert!(run(&mut c, 0, 1400, rise).is_empty());
    }

    #[test]
    fn sensitivity_trades_early_tickets_for_fewer() {
        let (low, _) = Sensitivity::Low.tuning();
        let (normal, _) = Sensitivity::Normal.tuning();
        let (high, _) = Sensitivity::High.tuning();
        assert!(low > normal && normal > high);
        // A modest step: the high-sensitivity detector tickets it no later than normal.
        let step = |i: u32| if i >= 1000 { 0.125 } else { 0.08 } * (0.95 + 0.05 * f64::from(i % 3));
        let tuned = |s: Sensitivity| {
            let (threshold, slack_sigmas) = s.tuning();
            let spec = ChangeSpec {
                threshold,
                slack_sigmas,
                slack_ratio: 0.3,
                ..ChangeSpec::default()
            };
            let mut c = Change::new("latency", Unit::Seconds, spec);
            run(&mut c, 0, 1100, step)
                .iter()
                .position(|v| v.transition == Transition::Firing)
        };
        let early = tuned(Sensitivity::High).expect("high sensitivity tickets the step");
        let normal = tuned(Sensitivity::Normal).expect("normal tickets the step");
        assert!(early <= normal);
    }

    #[test]
    fn resolves_when_back_and_ignores_spikes() {
        let mut c = Change::new("latency", Unit::Seconds, ChangeSpec::default());
        let out = run(&mut c, 0, 1000, |i| if i % 97 == 0 { 0.5 } else { 0.08 });
        assert!(out.is_empty(), "{out:?}");
        let out = run(&mut c, 1000, 1100, |_| 0.2);
        assert_eq!(out.len(), 1);
        let out = run(&mut c, 1100, 1300, |_| 0.08);
        assert_eq!(out.len(), 1);
        assert!(
            out[0].message.contains("back to its baseline 80ms"),
            "{}",
            out[0].message
        );
    }

    #[test]
    fn reset_resolves_and_relearns() {
        let mut c = Change::new("rss", Unit::Bytes, ChangeSpec::default());
        run(&mut c, 0, 300, |_| 100.0);
        assert_eq!(run(&mut c, 300, 400, |_| 300.0).len(), 1);
        let v = c.reset(6000.0).unwrap();
        assert_eq!(v.transition, Transition::Resolved);
        assert!(c.baseline().is_none());
        assert!(c.reset(6001.0).is_none());
    }

    #[test]
    fn a_level_still_moving_is_not_accepted_as_the_baseline() {
        // 100 for 2h, then +1 a minute for 12h: the ticket fires, and after `relearn_after`
        // it says the level is still rising (once) instead of taking it as the baseline.
        let mut c = Change::new("rss", Unit::Count, ChangeSpec::default());
        let level = |i: u32| 100.0 + (f64::from(i) * 0.25 - 120.0).max(0.0);
        let out = run(&mut c, 0, 480 + 12 * 240, level);
        assert_eq!(out.len(), 2, "{out:?}");
        assert_eq!(out[0].transition, Transition::Firing);
        assert_eq!(out[1].transition, Transition::Firing);
        assert!(
            out[1].message.starts_with("rss still rising 1/min (now ")
                && out[1]
                    .message
                    .ends_with("not accepted as a baseline while it moves"),
            "{}",
            out[1].message
        );
        assert!(c.firing());
        // It stops: once the last stretch shows no trend, the level becomes the baseline.
        let top = level(480 + 12 * 240);
        let out = run(&mut c, 480 + 12 * 240, 480 + 16 * 240, |i| {
            top + f64::from(i % 3)
        });
        assert_eq!(out.len(), 1, "{out:?}");
        assert!(
            out[0]
                .message
                .contains("steady for the last 2h: accepted as the new baseline")
        );
    }

    #[test]
    fn sample_gates_shrink_with_a_sparse_interval() {
        let dense = ChangeSpec::default();
        assert_eq!(
            (dense.min_after(), dense.recent(), dense.learn_samples()),
            (12, 20, 20)
        );
        let every = |interval: f64| ChangeSpec {
            interval,
            ..ChangeSpec::default()
        };
        assert_eq!(every(15.0).min_after(), 12);
        assert_eq!(every(60.0).recent(), 20);
        let sparse = every(1800.0);
        assert_eq!(
            (sparse.min_after(), sparse.recent(), sparse.learn_samples()),
            (5, 5, 8)
        );
        assert_eq!(sparse.still_window(), 12.0 * 1800.0);
        assert_eq!(dense.still_window(), 7200.0);
        assert!(every(-1.0).validate().is_err());
    }

    #[test]
    fn zero_baseline_needs_min_shift() {
        let spec = ChangeSpec {
            min_shift: 2.0,
            ..ChangeSpec::default()
        };
        let mut c = Change::new("slow_queries", Unit::Count, spec);
        run(&mut c, 0, 300, |_| 0.0);
        assert!(run(&mut c, 300, 600, |i| f64::from(i % 2)).is_empty());
        assert_eq!(run(&mut c, 600, 700, |_| 5.0).len(), 1);
    }
}
