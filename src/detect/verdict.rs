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
    /// A step in the level against a learned baseline.
    Change,
    /// Error-budget burn rate against an SLO.
    Burn,
}

impl Detector {
    /// The stable label used in alerts and metrics: `trend`, `change` or `burn`.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::Trend => "trend",
            Detector::Change => "change",
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

/// How a signal's values are written in messages. The caller passes it per signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unit {
    /// Bytes, written with binary prefixes: `400 MiB`, `2 GiB`.
    Bytes,
    /// Seconds, written `80ms`, `1.5s`, `2m30s`.
    Seconds,
    /// A fraction 0..1, written as a percentage: `85%`.
    Ratio,
    /// A plain number.
    #[default]
    Count,
}

impl Unit {
    /// Writes one value of this unit.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return format!("{v}");
        }
        match self {
            Unit::Bytes => format_bytes(v),
            Unit::Seconds => format_seconds(v),
            Unit::Ratio => format!("{}%", number(v * 100.0)),
            Unit::Count => number(v),
        }
    }

    /// Writes a rate given in units per second, per minute when that reads well and per
    /// hour otherwise: `4.4 MiB/min`, `11ms/min`, `0.5%/h`.
    pub fn format_rate(self, per_second: f64) -> String {
        let per_minute = per_second * 60.0;
        let smallest = match self {
            Unit::Bytes => 1024.0,
            Unit::Seconds => 0.001,
            Unit::Ratio => 0.001,
            Unit::Count => 1.0,
        };
        if per_minute.abs() >= smallest {
            format!("{}/min", self.format(per_minute))
        } else {
            format!("{}/h", self.format(per_second * 3600.0))
        }
    }
}

/// Writes a duration compactly: `45s`, `12m`, `5h10m`, `2d3h`; `never` when not finite.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "never".to_string();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let s = seconds.abs().round() as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let body = if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else if h == 0 {
        format!("{d}d")
    } else {
        format!("{d}d{h}h")
    };
    format!("{sign}{body}")
}

/// Writes unix seconds as UTC `HH:MM`.
pub fn format_clock(t: f64) -> String {
    if !t.is_finite() {
        return "??:??".to_string();
    }
    let secs = t.floor() as i64;
    let of_day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

/// Writes unix seconds as UTC `YYYY-MM-DD HH:MM`.
pub fn format_timestamp(t: f64) -> String {
    if !t.is_finite() {
        return "????-??-?? ??:??".to_string();
    }
    let days = (t.floor() as i64).div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {}", format_clock(t))
}

/// Writes when something began as seen from `now`: `HH:MM` on the same UTC day, the full
/// date otherwise, so "since 05:02" never silently means yesterday.
pub fn format_since(began: f64, now: f64) -> String {
    if began.is_finite()
        && now.is_finite()
        && began.div_euclid(86_400.0) == now.div_euclid(86_400.0)
    {
        format_clock(began)
    } else {
        format_timestamp(began)
    }
}

/// Converts days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days`.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Two significant digits below 10, whole numbers above, trailing zeros dropped.
fn number(x: f64) -> String {
    let a = x.abs();
    let decimals = if a >= 10.0 || a == 0.0 {
        0
    } else {
        (1.0 - a.log10().floor()).clamp(1.0, 9.0) as usize
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", number(x), UNITS[i])
}

fn format_seconds(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0s".to_string()
    } else if a < 0.001 {
        format!("{}µs", number(v * 1e6))
    } else if a < 1.0 {
        format!("{}ms", number(v * 1e3))
    } else if a < 60.0 {
        format!("{}s", number(v))
    } else {
        format_duration(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_like_the_examples() {
        assert_eq!(Unit::Bytes.format(2.0 * 1024.0 * 1024.0 * 1024.0), "2 GiB");
        assert_eq!(Unit::Bytes.format(400.0 * 1024.0 * 1024.0), "400 MiB");
        assert_eq!(Unit::Bytes.format(512.0), "512 B");
        assert_eq!(
            Unit::Bytes.format_rate(4.4 * 1024.0 * 1024.0 / 60.0),
            "4.4 MiB/min"
        );
        assert_eq!(Unit::Seconds.format(0.08), "80ms");
        assert_eq!(Unit::Seconds.format(0.16), "160ms");
        assert_eq!(Unit::Seconds.format(2.0), "2s");
        assert_eq!(Unit::Seconds.format(150.0), "2m");
        assert_eq!(Unit::Seconds.format_rate(0.011 / 60.0), "11ms/min");
        assert_eq!(Unit::Ratio.format(0.85), "85%");
        assert_eq!(Unit::Ratio.format(0.005), "0.5%");
        assert_eq!(Unit::Count.format(20.0), "20");
        assert_eq!(Unit::Count.format(0.0), "0");
        assert_eq!(Unit::Count.format(-0.0001), "-0.0001");
        assert_eq!(Unit::Count.format_rate(0.5 / 3600.0), "0.5/h");
        assert_eq!(Unit::Count.format(f64::NAN), "NaN");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(45.0), "45s");
        assert_eq!(format_duration(12.0 * 60.0), "12m");
        assert_eq!(format_duration(5.0 * 3600.0 + 600.0), "5h10m");
        assert_eq!(format_duration(6.0 * 3600.0), "6h");
        assert_eq!(format_duration(2.0 * 86_400.0 + 3.0 * 3600.0), "2d3h");
        assert_eq!(format_duration(f64::INFINITY), "never");
    }

    #[test]
    fn clock_and_civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(format_clock(1_700_000_000.0), "22:13");
        assert_eq!(format_timestamp(1_700_000_000.0), "2023-11-14 22:13");
        assert_eq!(format_clock(-60.0), "23:59");
        assert_eq!(format_since(1_700_000_000.0, 1_700_000_100.0), "22:13");
        assert_eq!(
            format_since(1_700_000_000.0, 1_700_100_000.0),
            "2023-11-14 22:13"
        );
        assert_eq!(format_clock(f64::NAN), "??:??");
    }
}
