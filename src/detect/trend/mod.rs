//! Trend and ETA: is the signal growing toward its limit fast enough to reach it within the
//! horizon? Owns the drift gates, the robust fit (Theil–Sen slope, Mann–Kendall significance)
//! over bucketed history, the sustain/hysteresis state machine of the `drift` page, and the
//! slope/ETA/level it exports for metrics. It fits on closed buckets of its [`Series`], at
//! most once per bucket close, so the cost per sample is bounded by the number of points in a
//! fit ([`MAX_POINTS`]), never by the length of history. No I/O, no clock: `now` is the time
//! of the sample that closed a bucket.
//!
//! How a page is decided, at each bucket close:
//! 1. For every candidate window (the shortest useful one, 1h, 6h and the long window,
//!    default 4 × horizon, each capped at the history held) the points are the bucket medians,
//!    or with `floor: true` the running minimum over `floor_window` (each placed at the time
//!    of the bucket that holds it, so a GC sawtooth contributes only its troughs).
//! 2. Each window gets a Theil–Sen slope, a level at *now* (the median of residuals through
//!    that slope), `eta = (limit − level) / slope`, and a cautious `eta_high` from the lower
//!    bound of Sen's confidence interval of the slope (`confidence_z`). A window passes only
//!    with at least `min_points` points covering `min_span`, a Mann–Kendall one-sided p below
//!    `alpha`, a positive slope, and a fitted rise over the window of at least `min_growth` ×
//!    level.
//! 3. The most alarming passing window (smallest `eta_high`) is the estimate. The page fires
//!    when `eta_high ≤ horizon` has held at every evaluation for `sustain`: a short window's
//!    slope must be unmistakable, not just a noise excursion, to page. Once firing the page
//!    holds while some window is still significant with `eta ≤ clear_factor × horizon`, and
//!    resolves when that has failed for `sustain`. Exported metrics use the plain `eta`.
//!
//! `began_at` is where the fitted line meets the median level of the stretch just before the
//! chosen window (one window length earlier), i.e. the extrapolated onset of the growth; when
//! history has nothing before the window it is the window's first point ("at least since").

use super::series::{Series, median_in_place};
use super::stats::{mann_kendall, sen_lower_bound, theil_sen};
use super::verdict::{
    Detector, DetectorInfo, Severity, Transition, Unit, Verdict, format_duration, format_since,
};
use super::{Context, Detect, DetectorState, Observe};

mod recurrence;
mod spec;
use recurrence::Episodes;
pub use recurrence::Recurrence;
pub use spec::DriftSpec;

/// The most points one fit uses; longer windows merge adjacent buckets (median of medians,
/// or minimum of minima in floor mode). Bounds a fit at `MAX_POINTS²/2` pairs. A window
/// whose points merge `g` buckets is re-fitted every `g` bucket closes, and in between its
/// last fit is carried forward along its slope.
pub const MAX_POINTS: usize = 60;

/// The result of fitting one window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fit {
    /// Nominal window length in seconds (before capping at history).
    pub window: f64,
    /// Time of the first point used.
    pub start: f64,
    pub points: usize,
    /// Theil–Sen slope, units per second.
    pub slope: f64,
    /// Lower confidence bound of the slope (Sen's interval at `confidence_z`).
    pub slope_low: f64,
    /// Fitted level at the evaluation time.
    pub level: f64,
    /// Seconds to the limit (0 when already above it); `None` unless the slope is positive.
    pub eta: Option<f64>,
    /// The same at the slope's lower bound: the ETA the page is decided on.
    pub eta_high: Option<f64>,
    /// Mann–Kendall one-sided p-value for an increasing trend.
    pub p_value: f64,
    /// Fitted rise over the window (slope × time covered).
    pub rise: f64,
    /// Whether every gate passed.
    pub passes: bool,
}

/// The trend page: `drift:rss` alerts, `probe_drift_firing{detector="trend"}`.
pub const TREND: DetectorInfo = DetectorInfo {
    label: "trend",
    reason: "drift",
    per_severity: false,
};

/// The trend detector of one signal.
#[derive(Debug, Clone)]
pub struct Trend {
    signal: String,
    unit: Unit,
    spec: DriftSpec,
    windows: Vec<f64>,
    series: Series,
    firing: bool,
    pending_since: Option<f64>,
    clearing_since: Option<f64>,
    last_eval: Option<f64>,
    /// Time between the last two evaluations.
    last_gap: Option<f64>,
    current: Option<Fit>,
    began_at: Option<f64>,
    cache: Vec<Option<Cached>>,
    scratch: Scratch,
    /// Alarming stretches seen before, for recurrence.
    episodes: Episodes,
    /// The recurring rise under way that is not paged.
    held_back: Option<Recurrence>,
}

impl Detect for Trend {
    type Spec = DriftSpec;

    fn validate(spec: &DriftSpec) -> Result<(), String> {
        spec.validate()
    }

    fn new(signal: &str, unit: Unit, spec: DriftSpec, interval: f64) -> Trend {
        let interval = spec.interval.max(interval);
        Trend::new(signal, unit, DriftSpec { interval, ..spec })
    }
}

impl Observe for Trend {
    fn observe(&mut self, t: f64, v: f64, ctx: &Context, out: &mut Vec<Verdict>) {
        if !ctx.settling {
            out.extend(Trend::observe(self, t, v));
        }
    }

    fn reset(&mut self, t: f64, out: &mut Vec<Verdict>) {
        out.extend(Trend::reset(self, t));
    }

    fn export(&self, state: &mut DetectorState) {
        state.slope = self.slope();
        state.eta_seconds = self.eta();
        state.level = self.level();
        state.firing.push((TREND.label, self.firing()));
        if let Some(r) = &self.held_back {
            state.notes.push((
                TREND.label,
                format!(
                    "a recurring rise ({}, peaking near {}): not paged",
                    r.pattern,
                    self.unit.format(r.peak)
                ),
            ));
        }
    }

    fn set_limit(&mut self, limit: f64) {
        Trend::set_limit(self, limit);
    }

    fn tells_a_rise(&self) -> bool {
        self.firing()
    }
}

/// A window's last fit, reused until its merged points would change.
#[derive(Debug, Clone, Copy)]
struct Cached {
    at: f64,
    effective: f64,
    fit: Option<Fit>,
}

impl Trend {
    /// Moves the limit, for limits that follow another signal (e.g. a process's fd limit).
    pub fn set_limit(&mut self, limit: f64) {
        if limit.is_finite() {
            self.spec.limit = limit;
        }
    }

    /// A trend detector; `spec` should have passed [`DriftSpec::validate`].
    pub fn new(signal: &str, unit: Unit, spec: DriftSpec) -> Trend {
        let width = spec.bucket_width();
        let max_age = spec.long_window() + spec.floor_window + 2.0 * width;
        let max_buckets = ((max_age / width).ceil() as usize).clamp(16, 50_000) + 2;
        Trend {
            signal: signal.to_string(),
            unit,
            windows: spec.windows(),
            cache: vec![None; spec.windows().len()],
            series: Series::new(width, max_age, max_buckets),
            spec,
            firing: false,
            pending_since: None,
            clearing_since: None,
            last_eval: None,
            last_gap: None,
            current: None,
            began_at: None,
            scratch: Scratch::default(),
            episodes: Episodes::default(),
            held_back: None,
        }
    }

    /// Feeds one finite sample; re-fits when it closes a bucket. Returns a transition if any.
    pub fn observe(&mut self, t: f64, v: f64) -> Option<Verdict> {
        self.episodes.observe(v);
        if self.series.push(t, v) {
            self.evaluate(t)
        } else {
            None
        }
    }

    /// Forgets history (a restart or counter reset). A firing page resolves.
    pub fn reset(&mut self, t: f64) -> Option<Verdict> {
        self.series.reset();
        self.episodes.interrupt();
        self.held_back = None;
        self.pending_since = None;
        self.clearing_since = None;
        self.last_eval = None;
        self.last_gap = None;
        self.cache.iter_mut().for_each(|c| *c = None);
        let was_firing = std::mem::replace(&mut self.firing, false);
        let fit = self.current.take();
        self.began_at = None;
        was_firing.then(|| {
            self.verdict(
                t,
                Transition::Resolved,
                fit.as_ref(),
                format!(
                    "{} re-baselined (restart or reset); drift cleared",
                    self.signal
                ),
            )
        })
    }

    /// Whether the drift page is firing.
    pub fn firing(&self) -> bool {
        self.firing
    }

    /// The latest estimate: the most alarming passing window, or else the longest window
    /// fitted (then with `passes == false`).
    pub fn current(&self) -> Option<&Fit> {
        self.current.as_ref()
    }

    /// Slope for metrics, units per second.
    pub fn slope(&self) -> Option<f64> {
        self.current.map(|f| f.slope)
    }

    /// ETA for metrics: only when a window passes every gate.
    pub fn eta(&self) -> Option<f64> {
        self.current.filter(|f| f.passes).and_then(|f| f.eta)
    }

    /// Fitted level at the last evaluation.
    pub fn level(&self) -> Option<f64> {
        self.current.map(|f| f.level)
    }

    fn evaluate(&mut self, now: f64) -> Option<Verdict> {
        let horizon = self.spec.horizon;
        let mut best: Option<Fit> = None;
        let mut longest: Option<Fit> = None;
        let mut hold = false;
        let mut last_effective = f64::NEG_INFINITY;
        let history = self
            .series
            .buckets()
            .front()
            .map_or(0.0, |b| now - b.first_t);
        for i in 0..self.windows.len() {
            let nominal = self.windows[i];
            let effective = nominal.min(history);
            if effective - last_effective < self.series.width() {
                continue;
            }
            last_effective = effective;
            let Some(fit) = self.fit_cached(i, now, nominal, effective) else {
                continue;
            };
            let significant = fit.p_value < self.spec.alpha && fit.slope > 0.0;
            if significant
                && fit
                    .eta
                    .is_some_and(|e| e <= self.spec.clear_factor * horizon)
            {
                hold = true;
            }
            if fit.passes && best.is_none_or(|b| fit.eta_high < b.eta_high) {
                best = Some(fit);
            }
            longest = Some(fit);
        }
        self.current = best.or(longest);
        let alarming = best.is_some_and(|f| f.eta_high.is_some_and(|e| e <= horizon));

        let sustain = self.spec.sustain_for();
        // A gap is a break in the cadence: longer than the spec allows, and longer than 1.5 ×
        // the gap before it, so samples that keep a steady spacing are never a gap even when
        // the interval is unknown or wrong (history replayed after the interval changed).
        let gap = self.last_eval.map(|l| now - l);
        let contiguous = gap.is_some_and(|g| {
            g <= self.spec.max_gap() || self.last_gap.is_some_and(|p| g <= 1.5 * p)
        });
        self.last_gap = gap;
        self.last_eval = Some(now);
        if !contiguous {
            self.pending_since = None;
            self.clearing_since = None;
        }
        if !self.firing {
            if !alarming {
                self.pending_since = None;
                self.episodes.end(now, self.spec.limit);
                self.held_back = None;
                return None;
            }
            let since = *self.pending_since.get_or_insert(now);
            self.episodes
                .begin(since, best.map_or(f64::NAN, |f| f.level));
            if now - since < sustain {
                return None;
            }
            let fit = best?;
            self.episodes.qualify();
            // A rise seen come and go before, at this phase, is not paged while it stays
            // like those before it (see `recurrence`); one already past the limit is.
            if let Some(recurrence) = self.episodes.recurs(self.spec.limit) {
                self.held_back = Some(recurrence);
                return None;
            }
            self.held_back = None;
            self.firing = true;
            self.pending_since = None;
            self.began_at = Some(self.onset(now, &fit));
            let message = self.firing_message(now, &fit);
            return Some(self.verdict(now, Transition::Firing, Some(&fit), message));
        }
        if hold || alarming {
            self.clearing_since = None;
            return None;
        }
        let since = *self.clearing_since.get_or_insert(now);
        if now - since < sustain {
            return None;
        }
        self.firing = false;
        self.clearing_since = None;
        self.episodes.end(now, self.spec.limit);
        let fit = self.current;
        let message = self.resolved_message(fit.as_ref());
        let verdict = self.verdict(now, Transition::Resolved, fit.as_ref(), message);
        self.began_at = None;
        Some(verdict)
    }

    fn fit_cached(&mut self, i: usize, now: f64, nominal: f64, effective: f64) -> Option<Fit> {
        let width = self.series.width();
        let group = ((effective / width).ceil() / MAX_POINTS as f64)
            .ceil()
            .max(1.0);
        if let Some(Some(c)) = self.cache.get(i)
            && group > 1.0
            && c.effective == effective
            && now - c.at < (group - 0.5) * width
        {
            return c.fit.map(|f| carry(f, now - c.at, self.spec.limit));
        }
        let fit = self.fit(now, nominal, effective);
        if let Some(slot) = self.cache.get_mut(i) {
            *slot = Some(Cached {
                at: now,
                effective,
                fit,
            });
        }
        fit
    }

    fn fit(&mut self, now: f64, nominal: f64, effective: f64) -> Option<Fit> {
        let width = self.series.width();
        let mut scratch = std::mem::take(&mut self.scratch);
        self.collect(now - effective, now, &mut scratch.xs, &mut scratch.ys);
        let fit = fit_points(&mut scratch, now, width, &self.spec).map(|mut f| {
            f.window = nominal;
            f
        });
        self.scratch = scratch;
        fit
    }

    /// Fills `xs`/`ys` with the points of buckets whose middle lies in `[from, to]`: medians,
    /// or in floor mode the running minimum's troughs, merged down to [`MAX_POINTS`].
    fn collect(&self, from: f64, to: f64, xs: &mut Vec<f64>, ys: &mut Vec<f64>) {
        xs.clear();
        ys.clear();
        let buckets = self.series.buckets();
        if self.spec.floor {
            let look_back = from - self.spec.floor_window;
            let first = buckets.partition_point(|b| b.mid_t() < look_back);
            // A monotone deque of bucket indices whose minima increase: its front is the
            // argmin of the trailing floor window.
            let mut deque: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
            let mut last_source = usize::MAX;
            for i in first..buckets.len() {
                let b = &buckets[i];
                let t = b.mid_t();
                if t > to {
                    break;
                }
                while deque.back().is_some_and(|&j| buckets[j].min >= b.min) {
                    deque.pop_back();
                }
                deque.push_back(i);
                while deque
                    .front()
                    .is_some_and(|&j| buckets[j].mid_t() < t - self.spec.floor_window)
                {
                    deque.pop_front();
                }
                if t < from {
                    continue;
                }
                if let Some(&j) = deque.front()
                    && j != last_source
                {
                    last_source = j;
                    xs.push(buckets[j].mid_t());
                    ys.push(buckets[j].min);
                }
            }
        } else {
            let first = buckets.partition_point(|b| b.mid_t() < from);
            for b in buckets.range(first..) {
                if b.mid_t() > to {
                    break;
                }
                xs.push(b.mid_t());
                ys.push(b.median);
            }
        }
        merge_down(xs, ys, self.spec.floor);
    }

    /// The extrapolated onset of the growth (see the module docs).
    fn onset(&mut self, now: f64, fit: &Fit) -> f64 {
        let length = (now - fit.start).max(self.series.width());
        let mut scratch = std::mem::take(&mut self.scratch);
        self.collect(
            fit.start - length,
            fit.start - 1e-9,
            &mut scratch.xs,
            &mut scratch.ys,
        );
        let before = median_in_place(&mut scratch.ys);
        let enough = scratch.xs.len() >= 3;
        let earliest = scratch.xs.first().copied().unwrap_or(fit.start);
        self.scratch = scratch;
        match before {
            Some(pre) if enough && fit.slope > 0.0 && fit.level > pre => {
                (now - (fit.level - pre) / fit.slope).clamp(earliest, now)
            }
            _ => fit.start,
        }
    }

    fn firing_message(&self, now: f64, fit: &Fit) -> String {
        let rate = self.unit.format_rate(fit.slope);
        let since = format_since(self.began_at.unwrap_or(fit.start), now);
        let limit = self.unit.format(self.spec.limit);
        match fit.eta {
            Some(eta) if eta > 0.0 => format!(
                "{} grows {rate} since {since}; reaches {limit} in ~{}",
                self.signal,
                format_duration(eta)
            ),
            _ => format!(
                "{} grows {rate} since {since}; already at {}, over the {limit} limit",
                self.signal,
                self.unit.format(fit.level)
            ),
        }
    }

    fn resolved_message(&self, fit: Option<&Fit>) -> String {
        let limit = self.unit.format(self.spec.limit);
        match fit {
            Some(f) if f.passes && f.eta.is_some() => format!(
                "{} growth slowed: {limit} no sooner than ~{} (now {}, {})",
                self.signal,
                format_duration(f.eta.unwrap_or(f64::INFINITY)),
                self.unit.format(f.level),
                self.unit.format_rate(f.slope)
            ),
            Some(f) => format!(
                "{} no longer growing toward {limit} (now {}, {})",
                self.signal,
                self.unit.format(f.level),
                self.unit.format_rate(f.slope)
            ),
            None => format!("{} no longer growing toward {limit}", self.signal),
        }
    }

    fn verdict(
        &self,
        t: f64,
        transition: Transition,
        fit: Option<&Fit>,
        message: String,
    ) -> Verdict {
        Verdict {
            detector: Detector::TREND,
            signal: self.signal.clone(),
            severity: Severity::Page,
            transition,
            t,
            eta_seconds: fit.and_then(|f| f.eta),
            slope: fit.map(|f| f.slope),
            level: fit.map_or(f64::NAN, |f| f.level),
            began_at: self.began_at,
            message,
        }
    }
}

/// Reused buffers, so a re-fit allocates nothing in the steady state.
#[derive(Debug, Clone, Default)]
struct Scratch {
    xs: Vec<f64>,
    ys: Vec<f64>,
    pairs: Vec<f64>,
    values: Vec<f64>,
}

fn fit_points(s: &mut Scratch, now: f64, width: f64, spec: &DriftSpec) -> Option<Fit> {
    let n = s.xs.len();
    let (first, last) = (*s.xs.first()?, *s.xs.last()?);
    let covered = last - first + width;
    let (slope, mk_s) = theil_sen(&s.xs, &s.ys, &mut s.pairs)?;
    s.values.clear();
    s.values.extend_from_slice(&s.ys);
    let (p_value, var_s) = mann_kendall(mk_s, &mut s.values);
    let slope_low = sen_lower_bound(&mut s.pairs, var_s, spec.confidence_z);
    s.pairs.clear();
    s.pairs
        .extend(s.xs.iter().zip(&s.ys).map(|(x, y)| y - slope * (x - now)));
    let level = median_in_place(&mut s.pairs)?;
    if !slope.is_finite() || !level.is_finite() {
        return None;
    }
    let rise = slope * (now - first);
    let eta = (slope > 0.0).then(|| ((spec.limit - level) / slope).max(0.0));
    let eta_high = if level >= spec.limit {
        eta
    } else {
        (slope_low > 0.0).then(|| (spec.limit - level) / slope_low)
    };
    let passes = n >= spec.min_points
        && covered >= spec.min_span
        && slope > 0.0
        && p_value < spec.alpha
        && rise >= spec.min_growth * level.abs();
    Some(Fit {
        window: 0.0,
        start: first,
        points: n,
        slope,
        slope_low,
        level,
        eta,
        eta_high,
        p_value,
        rise,
        passes,
    })
}

/// A fit carried `dt` seconds forward along its own slope.
fn carry(fit: Fit, dt: f64, limit: f64) -> Fit {
    let level = fit.level + fit.slope * dt;
    let eta = (fit.slope > 0.0).then(|| ((limit - level) / fit.slope).max(0.0));
    let eta_high = if level >= limit {
        eta
    } else {
        (fit.slope_low > 0.0).then(|| (limit - level) / fit.slope_low)
    };
    Fit {
        level,
        eta,
        eta_high,
        ..fit
    }
}

/// Merges adjacent points so no more than [`MAX_POINTS`] remain: each group keeps its middle
/// time and the median (or, in floor mode, the minimum) of its values.
fn merge_down(xs: &mut Vec<f64>, ys: &mut Vec<f64>, floor: bool) {
    let n = xs.len();
    if n <= MAX_POINTS {
        return;
    }
    let group = n.div_ceil(MAX_POINTS);
    let mut out = 0;
    let mut start = 0;
    while start < n {
        let end = (start + group).min(n);
        let x = xs[start + (end - start) / 2];
        let chunk = &mut ys[start..end];
        let y = if floor {
            chunk.iter().copied().fold(f64::INFINITY, f64::min)
        } else {
            median_in_place(chunk).unwrap_or(f64::NAN)
        };
        xs[out] = x;
        ys[out] = y;
        out += 1;
        start = end;
    }
    xs.truncate(out);
    ys.truncate(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_and_widths() {
        let spec = DriftSpec::new(1.0, 6.0 * 3600.0);
        assert_eq!(spec.bucket_width(), 180.0);
        assert_eq!(spec.windows(), vec![1980.0, 3600.0, 21_600.0, 86_400.0]);
        assert_eq!(spec.sustain_for(), 540.0);
        let spec = DriftSpec::new(1.0, 3600.0);
        assert_eq!(spec.bucket_width(), 60.0);
        assert_eq!(spec.windows(), vec![1860.0, 3600.0, 14_400.0]);
        assert_eq!(spec.sustain_for(), 300.0);
        assert!(DriftSpec::new(f64::NAN, 1.0).validate().is_err());
        assert!(DriftSpec::new(1.0, 0.0).validate().is_err());
        assert!(DriftSpec::new(1.0, 60.0).validate().is_ok());
    }

    #[test]
    fn gates_follow_a_sparse_interval() {
        // Samples 10 minutes apart, 3-minute buckets: an evaluation per sample, so sustain,
        // the gap rule and the shortest window are counted in intervals.
        let mut spec = DriftSpec::new(1.0, 6.0 * 3600.0);
        assert_eq!((spec.step(), spec.max_gap()), (180.0, 450.0));
        spec.interval = 15.0;
        assert_eq!(spec.sustain_for(), 540.0);
        spec.interval = 120.0;
        assert_eq!(spec.step(), 180.0);
        assert_eq!(spec.sustain_for(), 540.0);
        spec.interval = 600.0;
        assert_eq!(spec.step(), 600.0);
        assert_eq!(spec.sustain_for(), 1200.0);
        assert_eq!(spec.max_gap(), 1500.0);
        assert_eq!(spec.windows(), vec![6600.0, 21_600.0, 86_400.0]);
        spec.interval = f64::NAN;
        assert!(spec.validate().is_err());
    }

    #[test]
    fn merge_keeps_at_most_max_points() {
        let mut xs: Vec<f64> = (0..500).map(f64::from).collect();
        let mut ys = xs.clone();
        merge_down(&mut xs, &mut ys, false);
        assert!(xs.len() <= MAX_POINTS);
        assert!(xs.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn floor_points_are_the_troughs_of_a_sawtooth() {
        let mut spec = DriftSpec::new(1e9, 6.0 * 3600.0);
        spec.floor = true;
        let mut trend = Trend::new("rss", Unit::Bytes, spec);
        for i in 0..(4 * 240) {
            let t = f64::from(i) * 15.0;
            let phase = (t % 1200.0) / 1200.0;
            trend.observe(t, 300.0 + 300.0 * phase);
        }
        let (mut xs, mut ys) = (Vec::new(), Vec::new());
        trend.collect(7200.0, 14_400.0, &mut xs, &mut ys);
        assert!(!ys.is_empty());
        assert!(ys.iter().all(|&y| y < 320.0), "{ys:?}");
    }
}
