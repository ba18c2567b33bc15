//! `drift:` and `slo:` of a probe: which signals are watched for slow accumulation, against
//! which limit, and the detector specs they become.
//!
//! Each probe kind produces known signals with known units; a `drift:` entry must name one of
//! them and give a limit in that signal's unit (a size for bytes, a duration for seconds, a
//! number otherwise), or name another signal of the probe whose latest value is the limit.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::basics::units::{parse_duration, parse_size};
use crate::basics::yaml::{Pos, ScalarText, Spanned};
use crate::detect::{
    ChangeSpec, DetectorSpec, Direction, DriftSpec, SeasonalSpec, Sensitivity, Severity, SloSpec,
    Unit,
};

/// One `drift:` entry.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DriftEntrySpec {
    /// With `horizon`, watches the trend toward this limit; both may be left out when
    /// `seasonal` is given.
    pub limit: Option<Spanned<String>>,
    pub horizon: Option<Spanned<String>>,
    /// Fit the floor (bucket minima) for memory-like signals with a GC sawtooth.
    pub floor: Option<bool>,
    pub window: Option<Spanned<String>>,
    /// Also watch for a step change (a ticket): `true`/`false`, or the detector's form. On
    /// by default beside a trend, off beside `seasonal` alone (a daily cycle is not news).
    pub change: Option<ChangeEntry>,
    /// Compare with what this time of the day or week usually brings.
    pub seasonal: Option<SeasonalEntry>,
}

/// `seasonal: {period, below, above, for, severity, timezone}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SeasonalEntry {
    /// `1d` or `1w`.
    pub period: Spanned<String>,
    /// `30%`: fire when this share below the usual.
    pub below: Option<Spanned<String>>,
    /// `50%`: fire when this share above the usual.
    pub above: Option<Spanned<String>>,
    /// The window a shortfall is judged over; 10 minutes by default.
    #[serde(rename = "for")]
    pub window: Option<Spanned<String>>,
    /// `page` (default) or `ticket`.
    pub severity: Option<Spanned<String>>,
    /// IANA time zone whose days and weeks the profile follows (`Europe/Berlin`); UTC when
    /// absent.
    pub timezone: Option<Spanned<String>>,
}

/// The seasonal spec an entry asks for, or every problem with it.
fn seasonal_spec(
    entry: &SeasonalEntry,
    name: &Spanned<String>,
    interval: f64,
    problems: &mut Vec<(Pos, String)>,
) -> Option<SeasonalSpec> {
    let before = problems.len();
    let field = format!("drift.{}.seasonal", name.value);
    let duration = |text: &Spanned<String>, key: &str, problems: &mut Vec<(Pos, String)>| {
        match parse_duration(text) {
            Ok(d) => Some(d.as_secs_f64()),
            Err(m) => {
                problems.push((text.pos, format!("{field}.{key}: {m}")));
                None
            }
        }
    };
    let share = |text: &Option<Spanned<String>>, key: &str, problems: &mut Vec<(Pos, String)>| {
        let text = text.as_ref()?;
        match parse_share(text) {
            Ok(v) => Some(v),
            Err(m) => {
                problems.push((text.pos, format!("{field}.{key}: {m}")));
                None
            }
        }
    };
    let period = duration(&entry.period, "period", problems);
    let window = match &entry.window {
        Some(w) => duration(w, "for", problems),
        None => Some(600.0),
    };
    let below = share(&entry.below, "below", problems);
    let above = share(&entry.above, "above", problems);
    let severity = match entry.severity.as_ref().map(|s| (s, s.value.as_str())) {
        None | Some((_, "page")) => Severity::Page,
        Some((_, "ticket")) => Severity::Ticket,
        Some((s, other)) => {
            problems.push((
                s.pos,
                format!("{field}.severity: {other:?} is not one of page, ticket"),
            ));
            Severity::Page
        }
    };
    let timezone = match &entry.timezone {
        None => None,
        Some(zone) => match jiff::tz::TimeZone::get(&zone.value) {
            Ok(tz) => Some(tz),
            Err(_) => {
                problems.push((
                    zone.pos,
                    format!("{field}.timezone: unknown time zone {:?}", zone.value),
                ));
                None
            }
        },
    };
    let spec = SeasonalSpec {
        below,
        above,
        severity,
        interval,
        timezone,
        ..SeasonalSpec::new(period?, window?)
    };
    // A share that did not parse is reported already; the rest is still checked.
    let unparsed_share =
        (entry.below.is_some() && below.is_none()) || (entry.above.is_some() && above.is_none());
    if let Err(m) = spec.validate()
        && !(unparsed_share && m.starts_with("seasonal needs"))
    {
        // Point at the key the message is about.
        let at = if m.starts_with("seasonal.period") {
            entry.period.pos
        } else if m.starts_with("seasonal.for") {
            entry.window.as_ref().map_or(entry.period.pos, |w| w.pos)
        } else if m.starts_with("seasonal.below") {
            entry.below.as_ref().map_or(name.pos, |b| b.pos)
        } else if m.starts_with("seasonal.above") {
            entry.above.as_ref().map_or(name.pos, |a| a.pos)
        } else {
            entry.period.pos
        };
        problems.push((at, format!("drift.{}.{m}", name.value)));
    }
    (problems.len() == before).then_some(spec)
}

/// `30%` or `0.3`, as a share.
fn parse_share(text: &str) -> Result<f64, String> {
    let value = match text.trim().strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(percent),
        None => text.trim().parse::<f64>(),
    };
    value
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("{text:?} is not a share such as 30%"))
}

/// `change:` of a `drift:` entry: on or off, or how to watch.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ChangeEntry {
    On(bool),
    Spec(ChangeEntrySpec),
}

/// `change: {direction, min_shift, sensitivity}`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEntrySpec {
    /// `up` (default), `down` or `both`.
    pub direction: Option<String>,
    /// The smallest shift that counts, in the signal's unit (`50ms`, `5`, `10MiB`), so a
    /// level near zero does not turn every blip into news.
    pub min_shift: Option<ScalarText>,
    /// `low`, `normal` (default) or `high`.
    pub sensitivity: Option<String>,
}

/// The change spec an entry asks for, if any.
fn change_spec(entry: Option<&ChangeEntry>, unit: Unit) -> Result<Option<ChangeSpec>, String> {
    let spec = match entry {
        None | Some(ChangeEntry::On(true)) => return Ok(Some(ChangeSpec::default())),
        Some(ChangeEntry::On(false)) => return Ok(None),
        Some(ChangeEntry::Spec(spec)) => spec,
    };
    let direction = match spec.direction.as_deref() {
        None | Some("up") => Direction::Up,
        Some("down") => Direction::Down,
        Some("both") => Direction::Both,
        Some(other) => {
            return Err(format!(
                "change.direction: {other:?} is not one of up, down, both"
            ));
        }
    };
    let mut out = ChangeSpec {
        direction,
        ..ChangeSpec::default()
    };
    if let Some(sensitivity) = spec.sensitivity.as_deref() {
        let level = match sensitivity {
            "low" => Sensitivity::Low,
            "normal" => Sensitivity::Normal,
            "high" => Sensitivity::High,
            other => {
                return Err(format!(
                    "change.sensitivity: {other:?} is not one of low, normal, high"
                ));
            }
        };
        (out.threshold, out.slack_sigmas) = level.tuning();
    }
    if let Some(ScalarText(text)) = &spec.min_shift {
        let shift = parse_limit(text, unit).map_err(|m| format!("change.min_shift: {m}"))?;
        if !(shift.is_finite() && shift >= 0.0) {
            return Err(format!(
                "change.min_shift: must be zero or more, got {text}"
            ));
        }
        out.min_shift = shift;
    }
    Ok(Some(out))
}

/// A watched signal, ready to build detectors from.
#[derive(Debug, Clone)]
pub struct Watch {
    /// The outcome signal fed to the detectors.
    pub signal: String,
    pub spec: DetectorSpec,
    /// A signal of the same outcome whose value is the limit, when the limit is not fixed.
    pub limit_from: Option<String>,
}

impl Watch {
    /// Whether `name` is this watch's signal or one of its series (`value{partner="b"}`).
    pub fn covers(&self, name: &str) -> bool {
        name.strip_prefix(self.signal.as_str())
            .is_some_and(|rest| rest.is_empty() || (rest.starts_with('{') && rest.ends_with('}')))
    }

    /// The watched value of one run: its signal, or for `success` (the `slo:` burn rate) 1.0
    /// or 0.0.
    pub fn value(&self, outcome: &crate::probe::Outcome) -> Option<f64> {
        if self.signal == "success" {
            Some(f64::from(u8::from(outcome.success)))
        } else {
            outcome.signal(&self.signal)
        }
    }
}

/// The signals `drift:` may watch on a probe of `kind`, with their units, as the kind's
/// signal table declares them.
pub fn signals(kind: &str) -> Vec<(&'static str, Unit)> {
    crate::probe::kind_info(kind)
        .map(|k| k.watchable().map(|s| (s.name, s.unit)).collect())
        .unwrap_or_default()
}

/// Named bounds that turn a count into a ratio against its own ceiling.
const NAMED_BOUNDS: &[(&str, &str, &str)] = &[
    ("fds", "fd_limit", "fd_ratio"),
    ("connections", "max_connections", "connections_ratio"),
];

/// Validates a probe's `drift:` and `slo:` into watches, of the kind's signals and those its
/// spec names (`spec_signals`, a log probe's patterns). `interval` is the probe's, in
/// seconds: the detectors count their sustain, gaps and sample gates in it, and since the
/// daemon and `slowburn backtest` both build detectors from these specs, both judge alike.
pub fn watches(
    kind: &str,
    spec_signals: &[(&'static str, Unit)],
    interval: f64,
    drift: &BTreeMap<Spanned<String>, DriftEntrySpec>,
    slo: Option<&Spanned<String>>,
    problems: &mut Vec<(Pos, String)>,
) -> Vec<Watch> {
    let mut known = signals(kind);
    known.extend_from_slice(spec_signals);
    let mut out = Vec::new();
    for (name, entry) in drift {
        let mut signal = name.value.as_str();
        let mut limit_text = entry.limit.as_ref().map_or("", |l| l.value.as_str());
        if let Some((_, _, ratio)) = NAMED_BOUNDS
            .iter()
            .find(|(s, b, _)| *s == signal && *b == limit_text)
        {
            signal = ratio;
            limit_text = "1";
        }
        let Some((_, unit)) = known.iter().find(|(s, _)| *s == signal) else {
            let names: Vec<&str> = known.iter().map(|(s, _)| *s).collect();
            problems.push((
                name.pos,
                format!(
                    "drift: {kind} probes have no signal `{}`; they have: {}",
                    name.value,
                    names.join(", ")
                ),
            ));
            continue;
        };
        let mut spec = DetectorSpec::new(signal, *unit).with_interval(interval);
        let mut limit_from = None;
        let trend = match (&entry.limit, &entry.horizon) {
            (Some(limit), Some(horizon)) => {
                let Some((drift, from)) = trend_spec(
                    &name.value,
                    limit,
                    limit_text,
                    horizon,
                    entry,
                    *unit,
                    &known,
                    problems,
                ) else {
                    continue;
                };
                limit_from = from;
                spec = spec.with_drift(drift);
                true
            }
            (None, None) if entry.seasonal.is_some() => false,
            (None, None) => {
                problems.push((
                    name.pos,
                    format!("drift.{}: needs limit and horizon, or seasonal", name.value),
                ));
                continue;
            }
            (Some(limit), None) => {
                problems.push((
                    limit.pos,
                    format!("drift.{}: a limit needs a horizon", name.value),
                ));
                continue;
            }
            (None, Some(horizon)) => {
                problems.push((
                    horizon.pos,
                    format!("drift.{}: a horizon needs a limit", name.value),
                ));
                continue;
            }
        };
        let change = match (&entry.change, trend) {
            (None, false) => Ok(None),
            (change, _) => change_spec(change.as_ref(), *unit),
        };
        match change {
            Ok(Some(change)) => spec = spec.with_change(change),
            Ok(None) => {}
            Err(m) => {
                problems.push((name.pos, format!("drift.{}.{m}", name.value)));
                continue;
            }
        }
        if let Some(seasonal) = &entry.seasonal {
            match seasonal_spec(seasonal, name, interval, problems) {
                Some(seasonal) => spec = spec.with_seasonal(seasonal),
                None => continue,
            }
        }
        out.push(Watch {
            signal: signal.to_string(),
            spec,
            limit_from,
        });
    }
    if let Some(slo) = slo {
        match parse_objective(slo) {
            Ok(objective) => out.push(Watch {
                signal: "success".into(),
                spec: DetectorSpec::new("success", Unit::Ratio)
                    .with_slo(SloSpec::new(objective))
                    .with_interval(interval),
                limit_from: None,
            }),
            Err(m) => problems.push((slo.pos, format!("slo: {m}"))),
        }
    }
    out
}

/// The trend spec of an entry with a limit and a horizon, and the signal its limit follows;
/// `None` after pushing the problems found.
#[allow(clippy::too_many_arguments)]
fn trend_spec(
    name: &str,
    limit: &Spanned<String>,
    limit_text: &str,
    horizon: &Spanned<String>,
    entry: &DriftEntrySpec,
    unit: Unit,
    known: &[(&'static str, Unit)],
    problems: &mut Vec<(Pos, String)>,
) -> Option<(DriftSpec, Option<String>)> {
    let horizon = match parse_duration(horizon) {
        Ok(h) if h.is_zero() => {
            problems.push((
                horizon.pos,
                format!("drift.{name}.horizon: must be more than zero"),
            ));
            return None;
        }
        Ok(h) => h.as_secs_f64(),
        Err(m) => {
            problems.push((horizon.pos, format!("drift.{name}.horizon: {m}")));
            return None;
        }
    };
    let (value, limit_from) = match parse_limit(limit_text, unit) {
        Ok(value) => (value, None),
        Err(_) if known.iter().any(|(s, u)| *s == limit_text && *u == unit) => {
            (f64::MAX, Some(limit_text.to_string()))
        }
        Err(m) => {
            problems.push((limit.pos, format!("drift.{name}.limit: {m}")));
            return None;
        }
    };
    let mut drift = DriftSpec::new(value, horizon);
    drift.floor = entry.floor.unwrap_or(false);
    if let Some(window) = &entry.window {
        match parse_duration(window) {
            Ok(w) => drift.window = Some(w.as_secs_f64()),
            Err(m) => problems.push((window.pos, format!("drift.{name}.window: {m}"))),
        }
    }
    if limit_from.is_none()
        && let Err(m) = drift.validate()
    {
        problems.push((limit.pos, format!("drift.{name}: {m}")));
        return None;
    }
    Some((drift, limit_from))
}

/// A limit in the signal's unit: a size for bytes, a duration for seconds, a number otherwise.
fn parse_limit(text: &str, unit: Unit) -> Result<f64, String> {
    let number = text.trim().parse::<f64>().ok().filter(|v| v.is_finite());
    match unit {
        Unit::Bytes => match number {
            Some(v) => Ok(v),
            None => parse_size(text)
                .map(|b| b as f64)
                .map_err(|_| format!("{text:?} is not a size (e.g. 2GiB) for a bytes signal")),
        },
        Unit::Seconds => parse_duration(text)
            .map(|d| d.as_secs_f64())
            .map_err(|_| format!("{text:?} is not a duration (e.g. 2s) for a time signal")),
        Unit::Ratio => match text.trim().strip_suffix('%') {
            Some(pct) => pct
                .trim()
                .parse::<f64>()
                .map(|p| p / 100.0)
                .map_err(|_| format!("{text:?} is not a ratio")),
            None => number.ok_or_else(|| format!("{text:?} is not a ratio (e.g. 0.8 or 80%)")),
        },
        Unit::Count => number.ok_or_else(|| format!("{text:?} is not a number")),
    }
}

/// A percentage as a ratio, without the binary noise of `99.9 / 100` (0.9990000000000001).
fn percent(p: f64) -> f64 {
    (p * 1e10).round() / 1e12
}

/// `99.9%` or `0.999`.
fn parse_objective(text: &str) -> Result<f64, String> {
    let value = match text.trim().strip_suffix('%') {
        Some(pct) => pct.trim().parse::<f64>().map(percent),
        None => text.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{text:?} is not an objective such as 99.9%"))?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err(format!("{text:?} must be between 0% and 100%, exclusive"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_unit() {
        assert_eq!(
            parse_limit("2GiB", Unit::Bytes),
            Ok(2.0 * 1024.0 * 1024.0 * 1024.0)
        );
        assert_eq!(parse_limit("2s", Unit::Seconds), Ok(2.0));
        assert!(parse_limit("2GiB", Unit::Seconds).is_err());
        assert!(parse_limit("2s", Unit::Bytes).is_err());
        assert_eq!(parse_limit("80%", Unit::Ratio), Ok(0.8));
        assert_eq!(parse_limit("20", Unit::Count), Ok(20.0));
        assert_eq!(parse_objective("99.9%"), Ok(0.999));
        assert!(parse_objective("100%").is_err());
    }
}
