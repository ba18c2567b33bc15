//! The alerting parts of probe files: a probe's `alert:` rule, `policies:` and `silences:`.
//! Each is read as a raw spec with positions, then validated into the alert engine's types,
//! reporting every error where it was written.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use crate::alert::silence::{self, Window};
use crate::alert::{Policy, Rule, Severity, Silence, Step};
use crate::basics::units::parse_duration;
use crate::basics::yaml::{Pos, Spanned};
use crate::oncall::Target;

/// `alert:` of a probe.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertSpec {
    pub after: Option<Spanned<u32>>,
    pub recover_after: Option<Spanned<u32>>,
    pub policy: Option<Spanned<String>>,
    pub severity: Option<Spanned<String>>,
    pub runbook: Option<String>,
    pub summary: Option<String>,
}

/// One entry of `policies:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicySpec {
    pub name: Spanned<String>,
    pub steps: Spanned<Vec<StepSpec>>,
    #[serde(default)]
    pub repeat: u32,
    pub repeat_interval: Option<Spanned<String>>,
    pub ack_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub after: Option<Spanned<String>>,
    pub notify: Spanned<Vec<Spanned<String>>>,
}

/// One entry of `silences:` (also the body of `POST /api/v1/silences`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SilenceSpec {
    pub id: Option<String>,
    #[serde(rename = "match")]
    pub matchers: Spanned<BTreeMap<String, String>>,
    pub starts: Option<Spanned<String>>,
    pub ends: Option<Spanned<String>>,
    pub weekly: Option<Spanned<WeeklySpec>>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WeeklySpec {
    pub days: Vec<Spanned<String>>,
    pub start: Spanned<String>,
    pub duration: Spanned<String>,
    #[serde(default = "utc")]
    pub timezone: Spanned<String>,
}

fn utc() -> Spanned<String> {
    Spanned {
        pos: Pos::default(),
        value: "UTC".into(),
    }
}

/// A validation error: position, field, message.
pub type Problem = (Pos, String);

/// Validates a probe's `alert:` against the known policies.
pub fn rule(spec: &AlertSpec, policies: &HashSet<String>, problems: &mut Vec<Problem>) -> Rule {
    let mut count = |field: &str, value: &Option<Spanned<u32>>, default: u32| match value {
        Some(v) if v.value == 0 => {
            problems.push((v.pos, format!("alert.{field}: must be at least 1")));
            default
        }
        Some(v) => v.value,
        None => default,
    };
    let after = count("after", &spec.after, 3);
    let recover_after = count("recover_after", &spec.recover_after, 2);
    if let Some(policy) = &spec.policy
        && !policies.contains(&policy.value)
    {
        problems.push((
            policy.pos,
            format!("alert.policy: no policy named {:?}", policy.value),
        ));
    }
    Rule {
        after,
        recover_after,
        policy: spec.policy.as_ref().map(|p| p.value.clone()),
        severity: severity(spec.severity.as_ref(), problems),
        runbook: spec.runbook.clone(),
        summary: spec.summary.clone(),
    }
}

fn severity(text: Option<&Spanned<String>>, problems: &mut Vec<Problem>) -> Severity {
    match text.map(|t| (t.pos, t.value.as_str())) {
        None | Some((_, "page")) => Severity::Page,
        Some((_, "ticket")) => Severity::Ticket,
        Some((pos, other)) => {
            problems.push((
                pos,
                format!("alert.severity: {other:?} is not page or ticket"),
            ));
            Severity::Page
        }
    }
}

/// Validates a policy; `unknown` says why a step's target names nothing known.
pub fn policy(
    spec: &PolicySpec,
    unknown: &dyn Fn(&Target) -> Option<String>,
    problems: &mut Vec<Problem>,
) -> Policy {
    let mut steps = Vec::new();
    if spec.steps.value.is_empty() {
        problems.push((
            spec.steps.pos,
            "steps: a policy needs at least one step".into(),
        ));
    }
    for (i, step) in spec.steps.value.iter().enumerate() {
        let after = match &step.after {
            Some(text) => duration(text, &format!("steps[{i}].after"), problems).unwrap_or(0.0),
            None => 0.0,
        };
        if step.notify.value.is_empty() {
            problems.push((
                step.notify.pos,
                format!("steps[{i}].notify: name at least one notifier"),
            ));
        }
        let targets: Vec<Target> = step.notify.value.iter().map(|n| Target::parse(n)).collect();
        for (name, target) in step.notify.value.iter().zip(&targets) {
            if let Some(why) = unknown(target) {
                problems.push((name.pos, format!("steps[{i}].notify: {why}")));
            }
        }
        if let Some(Step {
            after: previous, ..
        }) = steps.last()
            && after < *previous
        {
            let pos = step.after.as_ref().map_or(step.notify.pos, |a| a.pos);
            problems.push((
                pos,
                format!("steps[{i}].after: steps must be in order of their delay"),
            ));
        }
        steps.push(Step {
            after,
            notify: targets,
        });
    }
    let repeat_interval = match &spec.repeat_interval {
        Some(text) => duration(text, "repeat_interval", problems).unwrap_or(900.0),
        None => Policy::default_repeat_interval(&steps),
    };
    let ack_timeout = spec
        .ack_timeout
        .as_ref()
        .and_then(|t| duration(t, "ack_timeout", problems));
    Policy {
        name: spec.name.value.clone(),
        steps,
        repeat: spec.repeat,
        repeat_interval,
        ack_timeout,
    }
}

/// Validates a silence. `now` names one-off silences that were not given an id.
pub fn silence(spec: &SilenceSpec, problems: &mut Vec<Problem>) -> Silence {
    if spec.matchers.value.is_empty() {
        problems.push((
            spec.matchers.pos,
            "match: a silence needs at least one label matcher".into(),
        ));
    }
    let window = match (&spec.weekly, &spec.starts, &spec.ends) {
        (Some(weekly), None, None) => weekly_window(weekly, problems),
        (None, Some(starts), Some(ends)) => {
            let starts_at = timestamp(starts, "starts", problems);
            let ends_at = timestamp(ends, "ends", problems);
            if let (Some(s), Some(e)) = (starts_at, ends_at)
                && e <= s
            {
                problems.push((ends.pos, "ends: must be after starts".into()));
            }
            Window::Once {
                starts: starts_at.unwrap_or(0.0),
                ends: ends_at.unwrap_or(0.0),
            }
        }
        _ => {
            problems.push((
                spec.matchers.pos,
                "a silence has either `weekly:` or both `starts:` and `ends:`".into(),
            ));
            Window::Once {
                starts: 0.0,
                ends: 0.0,
            }
        }
    };
    let id = spec.id.clone().unwrap_or_else(|| {
        let matchers: Vec<String> = spec
            .matchers
            .value
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("file:{}", matchers.join(","))
    });
    Silence {
        id,
        matchers: spec.matchers.value.clone(),
        window,
        comment: spec.comment.clone(),
        created_by: spec.created_by.clone(),
    }
}

fn weekly_window(weekly: &Spanned<WeeklySpec>, problems: &mut Vec<Problem>) -> Window {
    let spec = &weekly.value;
    let mut days = Vec::new();
    for day in &spec.days {
        match silence::parse_weekday(day) {
            Some(d) => days.push(d),
            None => problems.push((
                day.pos,
                format!("weekly.days: {:?} is not a weekday (Mon … Sun)", day.value),
            )),
        }
    }
    if spec.days.is_empty() {
        problems.push((weekly.pos, "weekly.days: name at least one day".into()));
    }
    let start_minute = silence::parse_clock(&spec.start).unwrap_or_else(|| {
        problems.push((
            spec.start.pos,
            format!("weekly.start: {:?} is not HH:MM", spec.start.value),
        ));
        0
    });
    let duration_s = duration(&spec.duration, "weekly.duration", problems).unwrap_or(0.0);
    if duration_s > 7.0 * 86_400.0 {
        problems.push((spec.duration.pos, "weekly.duration: at most 7d".into()));
    }
    if jiff::tz::TimeZone::get(&spec.timezone).is_err() {
        problems.push((
            spec.timezone.pos,
            format!(
                "weekly.timezone: unknown timezone {:?}",
                spec.timezone.value
            ),
        ));
    }
    Window::Weekly {
        days,
        start_minute,
        duration: duration_s,
        timezone: spec.timezone.value.clone(),
    }
}

fn duration(text: &Spanned<String>, field: &str, problems: &mut Vec<Problem>) -> Option<f64> {
    match parse_duration(text) {
        Ok(d) => Some(d.as_secs_f64()),
        Err(m) => {
            problems.push((text.pos, format!("{field}: {m}")));
            None
        }
    }
}

fn timestamp(text: &Spanned<String>, field: &str, problems: &mut Vec<Problem>) -> Option<f64> {
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => Some(ts.as_millisecond() as f64 / 1000.0),
        Err(_) => {
            problems.push((
                text.pos,
                format!(
                    "{field}: {:?} is not an RFC 3339 time such as 2026-11-23T02:00:00Z",
                    text.value
                ),
            ));
            None
        }
    }
}

/// Checks that policy names are unique.
pub fn unique_names<'a>(
    names: impl Iterator<Item = &'a Spanned<String>>,
    what: &str,
    problems: &mut Vec<Problem>,
) -> HashSet<String> {
    let mut seen: HashMap<String, Pos> = HashMap::new();
    for name in names {
        if let Some(first) = seen.get(&name.value) {
            problems.push((
                name.pos,
                format!(
                    "{what} {:?} is defined twice (first at line {})",
                    name.value, first.line
                ),
            ));
        } else {
            seen.insert(name.value.clone(), name.pos);
        }
    }
    seen.into_keys().collect()
}
