//! Verdicts — the plain values every detector hands to the alert engine — and the
//! formatting of their one-line messages: values in a signal's [`Unit`], rates, durations and
//! UTC clock times. This module owns no detector state and must not grow any; it reads no
//! clock (times are unix seconds passed in) and knows nothing of alerts, notifiers or metrics.

use std::fmt;

/// What the rest of the house knows of one detector: its label and how its alerts' reasons
/// read. Each detector's file declares its own (`trend::TREND`, `change::CHANGE`, …); the
/// [`detectors!`](super) table makes them [`Detector`] values.
#[derive(Debug)]
pub struct DetectorInfo {
    /// The stable label in alerts, metrics and backtests: `trend`, `change`, `burn`, …
    pub label: &'static str,
    /// The prefix of its alerts' reasons: `drift` gives `drift:rss`.
    pub reason: &'static str,
    /// Whether its alerts are told apart by severity (`burn:page`, `burn:ticket`) rather than
    /// by signal (`drift:rss`).
    pub per_severity: bool,
}

/// Which detector produced a verdict: a row of the detector table, compared by its label.
#[derive(Clone, Copy)]
pub struct Detector(&'static DetectorInfo);

impl Detector {
    /// The detector an info describes (used by the table).
    pub const fn of(info: &'static DetectorInfo) -> Detector {
        Detector(info)
    }

    /// The stable label used in alerts and metrics: `trend`, `change`, `change_down`, …
    pub fn as_str(self) -> &'static str {
        self.0.label
    }

    /// What the rest of the house knows of it.
    pub fn info(self) -> &'static DetectorInfo {
        self.0
    }

    /// The detector with this label, if the table has one.
    pub fn from_label(label: &str) -> Option<Detector> {
        super::DETECTORS
            .iter()
            .copied()
            .find(|d| d.as_str() == label)
    }

    /// What tells this detector's alerts of one probe apart: the signal, or for a detector
    /// keyed by severity, the severity.
    pub fn key(self, signal: &str, severity: Severity) -> String {
        if self.0.per_severity {
            severity.as_str().to_string()
        } else {
            signal.to_string()
        }
    }
}

impl PartialEq for Detector {
    fn eq(&self, other: &Detector) -> bool {
        self.0.label == other.0.label
    }
}

impl Eq for Detector {}

impl std::hash::Hash for Detector {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.label.hash(state);
    }
}

impl fmt::Debug for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
