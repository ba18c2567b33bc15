//! The seasonal detector: a signal compared with what this time of the day or week usually
//! brings — orders 40% below a usual Friday evening, a partner's hand-offs at half their
//! usual rate — told apart from the noise of a small number.
//!
//! The expectation is a profile of the period in fixed slots (30 minutes of a week, 10 of a
//! day), learned from earlier periods: each slot keeps a robust, exponentially weighted mean
//! of what it brought and how much that varied from period to period (weight 0.3 for the
//! newest period: half the weight is on the last two, nine tenths on the last six). A slot
//! that closes while the alert fires is not learned, and no single period moves a slot by
//! more than three of its deviations, so an outage or a flash sale does not become "usual".
//! Memory per series is the profile (two `f32` per slot: 2.7 KiB for a week) plus the
//! samples of the longest judging window.
//!
//! Judgement: at every sample after the first full period, the mean of the last `for`, 2 ×
//! `for` and 3 × `for` is compared with the profile's over the same times. A window fires
//! when it is below (or above) by more than the configured share *and* by more than
//! [`Z`] deviations of a window that long: a shop with a handful of orders a minute needs a
//! longer or a deeper shortfall than a large one before it pages, and never pages at night
//! because four orders became two. Pure: time is passed in, as unix seconds.

use std::cell::Cell;
use std::collections::VecDeque;

use jiff::tz::TimeZone;

use super::verdict::{DetectorInfo, Severity, Transition, Unit, Verdict, format_duration};
use super::{Context, Detect, DetectorState, Observe};

/// The seasonal alert: `seasonal:orders` alerts, `probe_drift_firing{detector="seasonal"}`.
pub const SEASONAL: DetectorInfo = DetectorInfo {
    label: "seasonal",
    reason: "seasonal",
    per_severity: false,
};

/// How many window deviations a shortfall must exceed.
pub const Z: f64 = 5.0;
/// Weight of the newest period in a slot's mean and deviation.
pub const LEARN_WEIGHT: f32 = 0.3;
/// The smallest deviation a slot is credited with, as a share of its mean: periods differ by
/// a few percent even where the counts are large.
pub const MIN_RELATIVE_DEVIATION: f64 = 0.03;
/// Weight of each closing slot in the pooled level variance (a few hundred slots a period).
const LEVEL_WEIGHT: f64 = 0.01;
/// The pooled level variance before any is learned: periods 10% apart.
const INITIAL_LEVEL_VAR: f64 = 0.01;
/// Slots compared with an earlier period before the pooled level variance replaces the
/// initial one.
const LEVEL_SLOTS: u32 = 100;
/// The judging windows, in multiples of `for`.
const WINDOWS: [f64; 3] = [1.0, 2.0, 3.0];
/// At most this many recent samples are kept for the windows (older ones are thinned).
const MAX_RECENT: usize = 512;

/// `seasonal:` of a `drift:` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonalSpec {
    /// Seconds: a day or a week.
    pub period: f64,
    /// Fires when the signal is this share below its usual level (0.3 for `30%`).
    pub below: Option<f64>,
    /// Fires when the signal is this share above its usual level.
    pub above: Option<f64>,
    /// Seconds over which a shortfall is judged (`for:`).
    pub window: f64,
    pub severity: Severity,
    /// Seconds between samples (the probe's interval), 0 when unknown.
    pub interval: f64,
    /// The time zone whose days and weeks the profile follows (`timezone:`); UTC when
    /// absent. A shop's dinner peak stays at 19:00 local across a DST change.
    pub timezone: Option<TimeZone>,
}

impl SeasonalSpec {
    /// A spec for a period, judging `window` seconds, with neither bound yet.
    pub fn new(period: f64, window: f64) -> SeasonalSpec {
        SeasonalSpec {
            period,
            below: None,
            above: None,
            window,
            severity: Severity::Page,
            interval: 0.0,
            timezone: None,
        }
    }

    /// Seconds per profile slot: 30 minutes of a week, 10 of a day.
    pub fn slot_width(&self) -> f64 {
        if self.period >= 7.0 * 86_400.0 {
            1800.0
        } else {
            600.0
        }
    }

    /// Checks the spec, naming the field at fault.
    pub fn validate(&self) -> Result<(), String> {
        if self.period != 86_400.0 && self.period != 7.0 * 86_400.0 {
            return Err(format!(
                "seasonal.period must be 1d or 1w, got {}",
                format_duration(self.period)
            ));
        }
        if !(self.window.is_finite() && self.window > 0.0) {
            return Err("seasonal.for must be a positive duration".into());
        }
        if self.window * WINDOWS[WINDOWS.len() - 1] > self.period {
            return Err(format!(
                "seasonal.for: {} is too long for a period of {} (at most a third of it)",
                format_duration(self.window),
                format_duration(self.period)
            ));
        }
        if self.interval > self.window {
            return Err(format!(
                "seasonal.for: {} cannot be filled by a probe run every {}",
                format_duration(self.window),
                format_duration(self.interval)
            ));
        }
        match (self.below, self.above) {
            (None, None) => return Err("seasonal needs below:, above: or both".into()),
            (Some(b), _) if !(b > 0.0 && b < 1.0) => {
                return Err(format!(
                    "seasonal.below must be between 0% and 100%, got {}%",
                    b * 100.0
                ));
            }
            (_, Some(a)) if !(a > 0.0 && a.is_finite()) => {
                return Err(format!(
                    "seasonal.above must be more than 0%, got {}%",
                    a * 100.0
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// What one slot of the period usually brings.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Mean of the slot's samples, NaN until a period has filled it.
    mean: f32,
    /// The variance of one sample around the slot's mean (count noise, jitter).
    var: f32,
}

/// The samples of the slot being filled.
#[derive(Debug, Clone, Copy)]
struct Open {
    /// Absolute slot number: `floor(t / width)`.
    number: i64,
    count: u32,
    sum: f64,
    sum_sq: f64,
}

/// One recent sample with what the profile expected of it.
#[derive(Debug, Clone, Copy)]
struct Recent {
    t: f64,
    v: f32,
    expected: f32,
    /// The variance of one sample, as the profile has it.
    var: f32,
}

/// Which way a firing alert points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Below,
    Above,
}

/// What one window saw.
#[derive(Debug, Clone, Copy)]
struct Judgement {
    window: f64,
    observed: f64,
    expected: f64,
    samples: usize,
}

/// The seasonal detector of one signal.
#[derive(Debug, Clone)]
pub struct Seasonal {
    signal: String,
    unit: Unit,
    spec: SeasonalSpec,
    slots: Box<[Slot]>,
    open: Option<Open>,
    recent: VecDeque<Recent>,
    first_t: Option<f64>,
    last_t: Option<f64>,
    firing: Option<(Side, f64)>,
    /// How much the level varies between periods beyond its samples' noise, pooled over
    /// every slot: running means of that variance and of the level squared, and how many
    /// slots went into them.
    level: (f64, f64, u32),
    /// Samples up to here were judged by an alert that resolved: not judged again.
    judged_until: f64,
    last: Option<Judgement>,
    /// The UTC offset (seconds) in force from `.0` until `.1`, cached: a zone changes its
    /// offset twice a year, so one lookup serves months of samples.
    offset: Cell<(f64, f64, f64)>,
}

impl Detect for Seasonal {
    type Spec = SeasonalSpec;

    fn validate(spec: &SeasonalSpec) -> Result<(), String> {
        spec.validate()
    }

    fn new(signal: &str, unit: Unit, spec: SeasonalSpec, interval: f64) -> Seasonal {
        let spec = SeasonalSpec {
            interval: spec.interval.max(interval),
            ..spec
        };
        Seasonal::new(signal, unit, spec)
    }
}

impl Observe for Seasonal {
    /// What a time of the week brings does not change when a process restarts, so neither
    /// the settle period nor a re-baseline touches the profile.
    fn observe(&mut self, t: f64, v: f64, _ctx: &Context, out: &mut Vec<Verdict>) {
        out.extend(Seasonal::observe(self, t, v));
    }

    fn export(&self, state: &mut DetectorState) {
        state.firing.push((SEASONAL.label, self.firing.is_some()));
        state.notes.push((SEASONAL.label, self.note()));
    }
}

impl Seasonal {
    /// A seasonal detector; `spec` should have passed [`SeasonalSpec::validate`].
    pub fn new(signal: &str, unit: Unit, spec: SeasonalSpec) -> Seasonal {
        let slots = (spec.period / spec.slot_width()).round().max(1.0) as usize;
        Seasonal {
            signal: signal.to_string(),
            unit,
            slots: vec![
                Slot {
                    mean: f32::NAN,
                    var: f32::NAN,
                };
                slots
            ]
            .into_boxed_slice(),
            spec,
            open: None,
            recent: VecDeque::new(),
            first_t: None,
            last_t: None,
            firing: None,
            judged_until: f64::NEG_INFINITY,
            level: (0.0, 0.0, 0),
            last: None,
            offset: Cell::new((0.0, f64::NEG_INFINITY, 0.0)),
        }
    }

    /// `t` (unix seconds) as seconds of the profile's local clock: the zone's wall time read
    /// as if it were UTC, so that slot `k` is the same local hour every period.
    fn local(&self, t: f64) -> f64 {
        let Some(zone) = &self.spec.timezone else {
            return t;
        };
        let (from, until, offset) = self.offset.get();
        if t >= from && t < until {
            return t + offset;
        }
        let Ok(at) = jiff::Timestamp::from_second(t.floor() as i64) else {
            return t;
        };
        let offset = f64::from(zone.to_offset(at).seconds());
        let until = (zone.following(at).next())
            .map_or(f64::INFINITY, |next| next.timestamp().as_second() as f64);
        self.offset.set((t.floor(), until, offset));
        t + offset
    }

    /// How many periods the profile has in effect learned from: each full period seen, up to
    /// what the weighting keeps (`(2 − w) / w` for weight `w`).
    fn periods_seen(&self, now: f64) -> f64 {
        let seen = self
            .first_t
            .map_or(0.0, |first| ((now - first) / self.spec.period).floor());
        let w = f64::from(LEARN_WEIGHT);
        seen.clamp(1.0, (2.0 - w) / w)
    }

    /// The share of the level (as a variance) by which periods differ beyond noise.
    fn level_var(&self) -> f64 {
        let (var, square, slots) = self.level;
        if slots < LEVEL_SLOTS || square <= 0.0 {
            return INITIAL_LEVEL_VAR;
        }
        (var / square).max(MIN_RELATIVE_DEVIATION * MIN_RELATIVE_DEVIATION)
    }

    /// Bytes this detector holds: itself, its profile and its recent samples.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Seasonal>()
            + self.signal.capacity()
            + std::mem::size_of_val(&*self.slots)
            + self.recent.capacity() * std::mem::size_of::<Recent>()
    }

    /// Whether the alert fires.
    pub fn firing(&self) -> bool {
        self.firing.is_some()
    }

    /// Whether it is still learning: less than one full period seen.
    pub fn learning(&self, now: f64) -> bool {
        self.first_t
            .is_none_or(|first| now - first < self.spec.period)
    }

    /// What the profile expects at `t`, and how much that varies; `None` while learning.
    pub fn expected(&self, t: f64) -> Option<(f64, f64)> {
        let width = self.spec.slot_width();
        let n = self.slots.len() as i64;
        // Between the centres of the two nearest slots, linearly.
        let position = self.local(t) / width - 0.5;
        let below = position.floor();
        let frac = position - below;
        let at = |k: i64| self.slots[(k.rem_euclid(n)) as usize];
        let (a, b) = (at(below as i64), at(below as i64 + 1));
        // Either neighbour alone when the other has not been learned yet.
        let blend = |x: f32, y: f32| match (x.is_nan(), y.is_nan()) {
            (false, false) => Some(f64::from(x) * (1.0 - frac) + f64::from(y) * frac),
            (false, true) => Some(f64::from(x)),
            (true, false) => Some(f64::from(y)),
            (true, true) => None,
        };
        Some((blend(a.mean, b.mean)?, blend(a.var, b.var)?))
    }

    /// Feeds one finite sample, later than the last.
    pub fn observe(&mut self, t: f64, v: f64) -> Option<Verdict> {
        self.first_t.get_or_insert(t);
        self.last_t = Some(t);
        self.learn(t, v);
        let learning = self.learning(t);
        let expected = if learning { None } else { self.expected(t) };
        let Some((expected, var)) = expected else {
            self.recent.clear();
            return None;
        };
        self.remember(t, v, expected, var);
        self.judge(t)
    }

    /// Folds a sample into its slot; a slot that closes is learned into the profile.
    fn learn(&mut self, t: f64, v: f64) {
        let width = self.spec.slot_width();
        let number = (self.local(t) / width).floor() as i64;
        match &mut self.open {
            Some(open) if open.number == number => {
                open.count += 1;
                open.sum += v;
                open.sum_sq += v * v;
                return;
            }
            _ => {}
        }
        if let Some(closed) = self.open.take() {
            self.close(closed);
        }
        self.open = Some(Open {
            number,
            count: 1,
            sum: v,
            sum_sq: v * v,
        });
    }

    fn close(&mut self, closed: Open) {
        // A slot seen while the alert fires is what is wrong, not what is usual.
        if self.firing.is_some() || closed.count == 0 {
            return;
        }
        let count = f64::from(closed.count);
        let mean = closed.sum / count;
        let within =
            (closed.sum_sq / count - mean * mean).max(0.0) * count / (count - 1.0).max(1.0);
        let n = self.slots.len() as i64;
        let level_var = self.level_var();
        let slot = &mut self.slots[closed.number.rem_euclid(n) as usize];
        if slot.mean.is_nan() {
            slot.mean = mean as f32;
            slot.var = within as f32;
            return;
        }
        let old = f64::from(slot.mean);
        // How far this period's slot mean may be from the usual by chance alone.
        let sigma = (f64::from(slot.var) / count + level_var * old * old)
            .sqrt()
            .max(MIN_RELATIVE_DEVIATION * old.abs())
            .max(f64::MIN_POSITIVE);
        let step = (mean - old).clamp(-3.0 * sigma, 3.0 * sigma);
        let w = f64::from(LEARN_WEIGHT);
        slot.mean = (old + w * step) as f32;
        slot.var = (f64::from(slot.var) + w * (within - f64::from(slot.var))) as f32;
        // What the slot mean varied beyond its samples' noise, as a share of the level,
        // pooled over every slot of the period.
        // (A ratio of averages, so the busy slots, whose shares are well measured, weigh
        // most; chance makes single terms negative, which is kept, or the share would only
        // ever grow.)
        let beyond = step * step - f64::from(slot.var) / count;
        self.level.0 += LEVEL_WEIGHT * (beyond - self.level.0);
        self.level.1 += LEVEL_WEIGHT * (old * old - self.level.1);
        self.level.2 = self.level.2.saturating_add(1);
    }

    fn remember(&mut self, t: f64, v: f64, expected: f64, var: f64) {
        let keep = self.spec.window * WINDOWS[WINDOWS.len() - 1];
        while self.recent.front().is_some_and(|r| r.t <= t - keep) {
            self.recent.pop_front();
        }
        if self.recent.len() >= MAX_RECENT {
            // Thin the older half rather than lose the window's start.
            let mut i = 0;
            self.recent.retain(|_| {
                i += 1;
                i % 2 == 0 || i > MAX_RECENT / 2
            });
        }
        self.recent.push_back(Recent {
            t,
            v: v as f32,
            expected: expected as f32,
            var: var as f32,
        });
    }

    /// One window's observed and expected means and its standard deviation.
    fn window(&self, now: f64, multiple: f64) -> Option<(Judgement, f64)> {
        let window = self.spec.window * multiple;
        let from = now - window;
        let after = from.max(self.judged_until);
        let (mut n, mut first) = (0usize, f64::NAN);
        let (mut observed, mut expected, mut var) = (0.0, 0.0, 0.0);
        for r in self.recent.iter().rev().take_while(|r| r.t > after) {
            n += 1;
            first = r.t;
            observed += f64::from(r.v);
            expected += f64::from(r.expected);
            var += f64::from(r.var);
        }
        // The window must be filled: its samples span most of it.
        let step = self.spec.interval.max(0.0);
        if n < 2 || first - from > 0.25 * window + step {
            return None;
        }
        let count = n as f64;
        let (observed, expected, var) = (observed / count, expected / count, var / count);
        // The noise of a mean of n samples, the uncertainty of the expectation (learned from
        // a slot's samples in each of the periods seen), and how much the level itself varies
        // between periods.
        let learned = (self.spec.slot_width() / step.max(1.0)).max(1.0) * self.periods_seen(now);
        let sigma = (var / count + var / learned + self.level_var() * expected * expected)
            .sqrt()
            .max(MIN_RELATIVE_DEVIATION * expected.abs())
            .max(f64::MIN_POSITIVE);
        Some((
            Judgement {
                window,
                observed,
                expected,
                samples: n,
            },
            sigma,
        ))
    }

    fn judge(&mut self, now: f64) -> Option<Verdict> {
        let windows = WINDOWS.map(|m| self.window(now, m));
        let shortest = windows.iter().flatten().next().map(|(j, _)| *j);
        if shortest.is_some() {
            self.last = shortest;
        }
        match self.firing {
            None => {
                let (side, j) = windows.iter().flatten().find_map(|(j, sigma)| {
                    let gap = j.observed - j.expected;
                    let significant = gap.abs() > Z * sigma;
                    if let Some(below) = self.spec.below
                        && j.expected > 0.0
                        && j.observed < (1.0 - below) * j.expected
                        && significant
                    {
                        return Some((Side::Below, *j));
                    }
                    if let Some(above) = self.spec.above
                        && j.observed > (1.0 + above) * j.expected.abs()
                        && significant
                    {
                        return Some((Side::Above, *j));
                    }
                    None
                })?;
                self.firing = Some((side, now - j.window));
                Some(self.verdict(now, Transition::Firing, &j, now - j.window))
            }
            Some((side, began)) => {
                let j = shortest?;
                // Back within half the share on the shortest window: over.
                let back = match side {
                    Side::Below => {
                        j.observed >= (1.0 - 0.5 * self.spec.below.unwrap_or(0.0)) * j.expected
                    }
                    Side::Above => {
                        j.observed <= (1.0 + 0.5 * self.spec.above.unwrap_or(0.0)) * j.expected
                    }
                };
                if !back {
                    return None;
                }
                self.firing = None;
                self.judged_until = now;
                Some(self.verdict(now, Transition::Resolved, &j, began))
            }
        }
    }

    /// `orders 412/10m, usually 690 on Fridays 18:30 (−40%)`: counts are totals over the
    /// window, other signals its mean.
    fn describe(&self, j: &Judgement, when: &str) -> String {
        let (observed, expected, per) = if self.unit == Unit::Count {
            let n = j.samples as f64;
            (
                self.unit.format((j.observed * n).round()),
                self.unit.format((j.expected * n).round()),
                format!("/{}", format_duration(j.window)),
            )
        } else {
            (
                self.unit.format(j.observed),
                self.unit.format(j.expected),
                format!(" over {}", format_duration(j.window)),
            )
        };
        let change = if j.expected.abs() > 0.0 {
            format!(
                " ({:+.0}%)",
                (j.observed - j.expected) / j.expected.abs() * 100.0
            )
            .replace('-', "−")
        } else {
            String::new()
        };
        format!(
            "{} {observed}{per}, usually {expected}{when}{change}",
            self.signal
        )
    }

    fn verdict(&self, now: f64, transition: Transition, j: &Judgement, began: f64) -> Verdict {
        let described = self.describe(j, &self.usual_time(now));
        let message = match transition {
            Transition::Firing => described,
            Transition::Resolved => format!("{described}; back to usual"),
        };
        Verdict {
            detector: super::Detector::SEASONAL,
            signal: self.signal.clone(),
            severity: self.spec.severity,
            transition,
            t: now,
            eta_seconds: None,
            slope: None,
            level: j.observed,
            began_at: Some(began),
            message,
        }
    }

    /// ` on Fridays 18:30` for a weekly period, ` at 18:30` for a daily one, in the
    /// profile's time zone (UTC when none is given).
    fn usual_time(&self, t: f64) -> String {
        let Ok(at) = jiff::Timestamp::from_second(t.floor() as i64) else {
            return String::new();
        };
        let zone = self.spec.timezone.clone().unwrap_or(TimeZone::UTC);
        let format = if self.spec.period >= 7.0 * 86_400.0 {
            " on %As %H:%M"
        } else {
            " at %H:%M"
        };
        at.to_zoned(zone).strftime(format).to_string()
    }

    /// For people: learning, or what the last window saw against the usual.
    pub fn note(&self) -> String {
        let Some(first) = self.first_t else {
            return "learning: nothing stored yet".into();
        };
        let seen = self.last_t.map_or(0.0, |last| last - first);
        if seen < self.spec.period {
            return format!(
                "learning: {} of {} stored",
                format_duration(seen),
                format_duration(self.spec.period)
            );
        }
        match &self.last {
            Some(j) => self.describe(j, ""),
            None => "waiting for a full window".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: f64 = 86_400.0;

    fn spec() -> SeasonalSpec {
        SeasonalSpec {
            below: Some(0.3),
            interval: 60.0,
            ..SeasonalSpec::new(DAY, 600.0)
        }
    }

    #[test]
    fn a_weekly_profile_fits_in_four_kibibytes() {
        let weekly = SeasonalSpec {
            period: 7.0 * DAY,
            ..spec()
        };
        let mut d = Seasonal::new("orders", Unit::Count, weekly);
        for i in 0..(8 * 1440) {
            d.observe(f64::from(i) * 60.0, 10.0);
        }
        assert!(d.memory_bytes() <= 4096, "{}", d.memory_bytes());
    }

    #[test]
    fn specs_are_checked() {
        assert!(spec().validate().is_ok());
        let bad = |f: fn(&mut SeasonalSpec)| {
            let mut s = spec();
            f(&mut s);
            s.validate().unwrap_err()
        };
        assert_eq!(
            bad(|s| s.below = Some(1.3)),
            "seasonal.below must be between 0% and 100%, got 130%"
        );
        assert_eq!(
            bad(|s| s.period = 3600.0),
            "seasonal.period must be 1d or 1w, got 1h"
        );
        assert_eq!(
            bad(|s| s.window = DAY),
            "seasonal.for: 1d is too long for a period of 1d (at most a third of it)"
        );
        assert_eq!(
            bad(|s| s.interval = 1200.0),
            "seasonal.for: 10m cannot be filled by a probe run every 20m"
        );
        assert_eq!(
            bad(|s| s.below = None),
            "seasonal needs below:, above: or both"
        );
    }

    #[test]
    fn it_learns_for_one_period_and_then_expects_what_it_saw() {
        let mut d = Seasonal::new("orders", Unit::Count, spec());
        let shape = |t: f64| 100.0 + 50.0 * (t / DAY * std::f64::consts::TAU).sin();
        let mut t = 0.0;
        while t < DAY {
            assert!(d.observe(t, shape(t)).is_none());
            assert!(d.learning(t));
            t += 60.0;
        }
        assert!(
            d.note().starts_with("learning: 23h59m of 1d"),
            "{}",
            d.note()
        );
        for _ in 0..(2 * 1440) {
            assert!(d.observe(t, shape(t)).is_none());
            t += 60.0;
        }
        let (mean, _) = d.expected(t).unwrap();
        assert!((mean - shape(t)).abs() < 2.0, "{mean} vs {}", shape(t));
        assert!(d.note().contains("usually"), "{}", d.note());
    }

    #[test]
    fn a_drop_fires_once_and_resolves_once() {
        let mut d = Seasonal::new("orders", Unit::Count, spec());
        let mut t = 0.0;
        let mut verdicts = Vec::new();
        while t < 4.0 * DAY {
            let down = (3.0 * DAY..3.0 * DAY + 3600.0).contains(&t);
            verdicts.extend(d.observe(t, if down { 50.0 } else { 100.0 }));
            t += 60.0;
        }
        assert_eq!(verdicts.len(), 2, "{verdicts:?}");
        assert_eq!(verdicts[0].transition, Transition::Firing);
        assert!(verdicts[0].t - 3.0 * DAY <= 600.0, "{}", verdicts[0].t);
        // Seven of the window's ten samples are down: 650 where 1,000 is usual.
        assert_eq!(verdicts[0].t, 3.0 * DAY + 360.0);
        assert_eq!(
            verdicts[0].message,
            "orders 650/10m, usually 1000 at 00:06 (−35%)"
        );
        assert_eq!(verdicts[1].transition, Transition::Resolved);
        // The hour of the drop was not learned as usual.
        let (mean, _) = d.expected(3.0 * DAY + 1800.0).unwrap();
        assert!((mean - 100.0).abs() < 1.0, "{mean}");
    }
}
