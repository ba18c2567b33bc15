//! What a change detector is asked for: its spec, the directions it looks and the
//! sensitivity presets, with the gates they imply.

use super::*;

/// Configuration of the change detector.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeSpec {
    /// Seconds of samples the baseline is learned from (at least 20 samples).
    pub warmup: f64,
    /// Shifts up to this fraction of the baseline are tolerated (0.4: up to +40%).
    pub slack_ratio: f64,
    /// Shifts up to this many robust σ are tolerated.
    pub slack_sigmas: f64,
    /// Shifts up to this absolute amount (signal units) are tolerated.
    pub min_shift: f64,
    /// CUSUM alarm threshold, in σ.
    pub threshold: f64,
    /// Seconds the level must be back within the slack before the ticket resolves.
    pub resolve_after: f64,
    /// Seconds at a new level after which it becomes the baseline, if it has stopped moving.
    pub relearn_after: f64,
    /// Seconds between samples (the probe's interval); 0 when unknown (dense samples).
    pub interval: f64,
    /// Which way a step counts: up (the default), down, or both (two detectors).
    pub direction: Direction,
}

/// Which way a change detector looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// A rise: latency doubled, a queue grew.
    #[default]
    Up,
    /// A drop: orders fell, a partner's hand-offs stopped.
    Down,
    /// Either: one detector each way.
    Both,
}

impl Direction {
    /// The directions a spec asks for, each a detector of its own.
    pub fn each(self) -> &'static [Direction] {
        match self {
            Direction::Up => &[Direction::Up],
            Direction::Down => &[Direction::Down],
            Direction::Both => &[Direction::Up, Direction::Down],
        }
    }
}

/// How readily a change ticket opens: the CUSUM threshold and the slack in σ. `Normal` is
/// the default spec; `High` tickets earlier and more often, `Low` later and rarely.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sensitivity {
    Low,
    Normal,
    High,
}

impl Sensitivity {
    /// (threshold, slack_sigmas) for this sensitivity.
    pub fn tuning(self) -> (f64, f64) {
        match self {
            Sensitivity::Low => (16.0, 2.0),
            Sensitivity::Normal => (10.0, 1.5),
            Sensitivity::High => (6.0, 1.0),
        }
    }
}

impl Default for ChangeSpec {
    fn default() -> ChangeSpec {
        ChangeSpec {
            warmup: 3600.0,
            slack_ratio: 0.4,
            slack_sigmas: 1.5,
            min_shift: 0.0,
            threshold: 10.0,
            resolve_after: 900.0,
            relearn_after: 6.0 * 3600.0,
            interval: 0.0,
            direction: Direction::Up,
        }
    }
}

impl ChangeSpec {
    /// A sample-count gate: `dense` samples, or when the interval is known, as many as fit
    /// in `span` seconds, between `fewest` and `dense`.
    fn samples(&self, dense: usize, fewest: usize, span: f64) -> usize {
        if self.interval <= 0.0 {
            return dense;
        }
        let fit = (span / self.interval).ceil();
        (fit.min(dense as f64) as usize).max(fewest).min(dense)
    }

    /// Samples after the change point before a ticket may fire.
    pub fn min_after(&self) -> usize {
        self.samples(MIN_AFTER, FEWEST, GATE_SPAN)
    }

    /// Samples in the recent-level median.
    pub fn recent(&self) -> usize {
        self.samples(RECENT, FEWEST, GATE_SPAN)
    }

    /// Fewest samples the warm-up learns a baseline from.
    pub fn learn_samples(&self) -> usize {
        self.samples(20, FEWEST_LEARN, self.warmup)
    }

    /// Width of the buckets of the stillness test: 5 minutes, or the interval.
    pub fn still_bucket(&self) -> f64 {
        STILL_BUCKET.max(self.interval)
    }

    /// The recent stretch that must show no trend before a new level is accepted: a third
    /// of `relearn_after`, and at least twelve buckets so the test can see a trend at all.
    pub fn still_window(&self) -> f64 {
        (self.relearn_after / 3.0).max(12.0 * self.still_bucket())
    }

    /// Checks the spec; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        for (name, v) in [
            ("warmup", self.warmup),
            ("threshold", self.threshold),
            ("resolve_after", self.resolve_after),
            ("relearn_after", self.relearn_after),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(format!("change.{name} must be a positive number, got {v}"));
            }
        }
        for (name, v) in [
            ("slack_ratio", self.slack_ratio),
            ("slack_sigmas", self.slack_sigmas),
            ("min_shift", self.min_shift),
            ("interval", self.interval),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("change.{name} must be zero or more, got {v}"));
            }
        }
        Ok(())
    }
}
