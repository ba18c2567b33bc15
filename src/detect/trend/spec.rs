//! What a trend detector is asked for: the limit and horizon with every gate spelled out,
//! and the windows, buckets and sustain they imply.

/// Configuration of the trend detector for one signal, with every gate spelled out.
#[derive(Debug, Clone, PartialEq)]
pub struct DriftSpec {
    /// The value the signal must not reach.
    pub limit: f64,
    /// Page when the limit is predicted within this many seconds.
    pub horizon: f64,
    /// Fit the running minimum instead of the median (memory-like signals with GC sawtooth).
    pub floor: bool,
    /// Long window in seconds; `None` = 4 × horizon. Always capped at the history held.
    pub window: Option<f64>,
    /// Seconds over which floor mode takes its running minimum; set it above the period of
    /// the sawtooth. Floor mode sees a new trend this much later.
    pub floor_window: f64,
    /// Fewest points a window needs to be considered.
    pub min_points: usize,
    /// Least time (seconds) a window's points must cover.
    pub min_span: f64,
    /// Least fitted rise over a window, as a fraction of the level.
    pub min_growth: f64,
    /// Mann–Kendall one-sided p-value a window must be below.
    pub alpha: f64,
    /// One-sided z of the lower confidence bound of the slope (Sen's interval) that the page
    /// decision uses, so a short window's noisy slope must be unmistakable to page.
    pub confidence_z: f64,
    /// How long the page condition must hold before firing, and its absence before
    /// resolving; `None` = max(5 min, 3 buckets, 2 intervals) (see [`DriftSpec::sustain_for`]).
    pub sustain: Option<f64>,
    /// While firing, the page holds as long as ETA ≤ `clear_factor` × horizon.
    pub clear_factor: f64,
    /// Seconds between the signal's samples: the probe's interval; 0 when unknown, and then
    /// the gates are those of samples denser than a bucket. A fit happens only when a sample
    /// arrives, so with samples sparser than a bucket every time gate (sustain, the gap that
    /// breaks it, the shortest window) must be counted in intervals, not buckets.
    pub interval: f64,
}

impl DriftSpec {
    /// A spec with the default gates.
    pub fn new(limit: f64, horizon: f64) -> DriftSpec {
        DriftSpec {
            limit,
            horizon,
            floor: false,
            window: None,
            floor_window: 1800.0,
            min_points: 10,
            min_span: 1800.0,
            min_growth: 0.05,
            alpha: 0.01,
            confidence_z: 1.645,
            sustain: None,
            clear_factor: 1.5,
            interval: 0.0,
        }
    }

    /// The time between two evaluations: a bucket, or the interval when samples are sparser
    /// than buckets (each sample then closes the bucket of the one before it).
    pub fn step(&self) -> f64 {
        self.bucket_width().max(self.interval)
    }

    /// Bucket width: horizon / 120, between one and ten minutes.
    pub fn bucket_width(&self) -> f64 {
        (self.horizon / 120.0).clamp(60.0, 600.0).round()
    }

    /// The long window: `window`, or 4 × horizon.
    pub fn long_window(&self) -> f64 {
        self.window.unwrap_or(4.0 * self.horizon)
    }

    /// The candidate windows, shortest first: the shortest useful one (enough steps for
    /// `min_points` points and `min_span`), 1h, 6h and the long window. A window too short to
    /// hold `min_points` samples at the interval could never pass, so it is not tried.
    pub fn windows(&self) -> Vec<f64> {
        let w = self.step();
        let shortest = self.min_span.max(self.min_points as f64 * w) + w;
        let long = self.long_window().max(shortest);
        let mut out = vec![shortest];
        for c in [3600.0, 6.0 * 3600.0, long] {
            if c > shortest && c <= long && out.last().is_some_and(|&l| c > l) {
                out.push(c);
            }
        }
        out
    }

    /// The sustain period in seconds: by default max(5 min, 3 buckets, 2 intervals). With
    /// dense samples that is the buckets' 4 evaluations; with samples sparser than buckets
    /// each evaluation brings a new sample, and 3 in a row that agree (each fit already needs
    /// `min_points` samples over `min_span`) is the evidence, without holding a 30-minute
    /// probe's page back 90 minutes.
    pub fn sustain_for(&self) -> f64 {
        self.sustain.unwrap_or_else(|| {
            (3.0 * self.bucket_width())
                .max(2.0 * self.interval)
                .max(300.0)
        })
    }

    /// The longest time between two evaluations that still counts as contiguous; a longer
    /// gap (more than one missed sample, or one missed bucket and a half) restarts sustain.
    pub fn max_gap(&self) -> f64 {
        2.5 * self.step()
    }

    /// Checks the spec; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v > 0.0 {
                Ok(())
            } else {
                Err(format!("drift.{name} must be a positive number, got {v}"))
            }
        };
        if !self.limit.is_finite() {
            return Err(format!("drift.limit must be finite, got {}", self.limit));
        }
        positive("horizon", self.horizon)?;
        positive("floor_window", self.floor_window)?;
        positive("min_span", self.min_span)?;
        positive("alpha", self.alpha)?;
        positive("clear_factor", self.clear_factor)?;
        if let Some(w) = self.window {
            positive("window", w)?;
        }
        if let Some(s) = self.sustain {
            positive("sustain", s)?;
        }
        if !(self.interval.is_finite() && self.interval >= 0.0) {
            return Err(format!(
                "drift.interval must be zero or more seconds, got {}",
                self.interval
            ));
        }
        if !(self.confidence_z.is_finite() && self.confidence_z >= 0.0) {
            return Err(format!(
                "drift.confidence_z must be zero or more, got {}",
                self.confidence_z
            ));
        }
        if !(self.min_growth.is_finite() && self.min_growth >= 0.0) {
            return Err(format!(
                "drift.min_growth must be zero or more, got {}",
                self.min_growth
            ));
        }
        if self.min_points < 4 {
            return Err(format!(
                "drift.min_points must be at least 4, got {}",
                self.min_points
            ));
        }
        if self.alpha >= 1.0 || self.clear_factor < 1.0 {
            return Err("drift.alpha must be below 1 and clear_factor at least 1".to_string());
        }
        Ok(())
    }
}
