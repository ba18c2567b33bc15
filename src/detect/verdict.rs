//! Verdicts — the plain values every detector hands to the alert engine — and the
//! formatting of their one-line messages: values in a signal's [`Unit`], rates, durations and
//! UTC clock times. This module owns no detector state and must not grow any; it reads no
//! clock (times are unix seconds passed in) and knows nothing of alerts, notifiers or metrics.

use std::fmt;

/// Which detector produced a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detector {
    /// Trend and ETA: the signal is growing toward its limit.
    Trend,
    /// A step up in the level against a learned baseline.
    Change,
    /// A step down in the level against a learned baseline.
    ChangeDown,
    /// Error-budget burn rate against an SLO.
    Burn,
}

impl Detector {
    /// The stable label used in alerts and metrics: `trend`, `change`, `change_down` or
    /// `burn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Trend => "trend",
            Detector::Change => "change",
            Detector::ChangeDown => "change_down",
            Detector::Burn => "burn",
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgently a human should look (also the severity of alerts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Wake someone up.
    Page,
    /// Look at it during working hours.
    Ticket,
}

impl Severity {
    /// The stable label: `page` or `ticket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Page => "page",
            Severity::Ticket => "ticket",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The state a detector moved into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The condition started to hold (after its sustain period).
    Firing,
    /// The condition stopped holding (after its hysteresis).
    Resolved,
}

impl Transition {
    /// The stable label: `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Firing => "firing",
            Transition::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One state transition of one detector for one signal. Detectors emit transitions only,
/// never "still firing" repeats; the one exception is a change ticket whose level is still
/// moving when it would have been accepted as the baseline, which says so once with a second
/// firing verdict (the alert engine updates the open alert's message).
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub detector: Detector,
    pub signal: String,
    pub severity: Severity,
    pub transition: Transition,
    /// Unix seconds of the sample that caused the transition.
    pub t: f64,
    /// Predicted seconds until the limit is reached (trend only; 0 when already above it).
    pub eta_seconds: Option<f64>,
    /// Fitted growth in signal units per second (trend only).
    pub slope: Option<f64>,
    /// Trend: fitted level at `t`. Change: the new level (firing) or current level
    /// (resolved). Burn: the burn rate over the long window of the deciding rule.
    pub level: f64,
    /// Unix seconds when the drift, step or burn is estimated to have begun.
    pub began_at: Option<f64>,
    /// One line for a human, e.g. `rss grows 4.4 MiB/min since 05:02; reaches 2 GiB in ~5h10m`.
    pub message: String,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {} {}: {}",
            format_timestamp(self.t),
            self.detector,
            self.severity,
            self.transition,
            self.signal,
            self.message
        )
    }
}

pub use crate::basics::format::{
    Unit, format_clock, format_duration, format_since, format_timestamp,
};
