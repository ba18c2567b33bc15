//! The on-call parts of probe files: `people:`, `schedules:` and `routes:`, read as raw specs
//! with positions and validated into `oncall`'s types, every error where it was written; and
//! the checks that tie them to policies and probes (targets, unused policies, route labels
//! that no probe can carry, `depends_on:` names and cycles).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use serde::Deserialize;

use super::alerting::Problem;
use super::{ConfigError, ProbeConfig};
use crate::alert::silence::parse_weekday;
use crate::basics::yaml::{Pos, Spanned};
use crate::oncall::schedule::{self, Layer, Restriction, local_time, parse_turn};
use crate::oncall::{Contact, Override, Person, Route, Schedule, Target};

/// One entry of `people:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonSpec {
    /// How schedules and `person:NAME` steps name them.
    pub name: Spanned<String>,
    /// Every contact is used when the person is paged.
    pub notify: Spanned<Vec<ContactSpec>>,
}

/// A notifier and this person's address on it.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactSpec {
    pub notifier: Spanned<String>,
    /// The address on that notifier: a Slack user or channel, an email address, a PagerDuty
    /// routing key, a webhook's recipient id.
    pub to: String,
}

/// One entry of `schedules:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    pub name: Spanned<String>,
    /// The IANA zone the layers' and overrides' local times are in (default UTC).
    pub timezone: Option<Spanned<String>>,
    /// Rotations; a later layer sits on top of the ones before it.
    pub layers: Spanned<Vec<LayerSpec>>,
    #[serde(default)]
    pub overrides: Vec<OverrideSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    pub users: Spanned<Vec<Spanned<String>>>,
    /// The first handoff, local: `2027-01-04T09:00`, or a date when `handoff` gives the time.
    pub start: Spanned<String>,
    /// Turn length: hours, days or weeks (`12h`, `1d`, `1w`).
    pub turn: Spanned<String>,
    /// The local time of day of every handoff (`09:00`), when `start` is a date.
    pub handoff: Option<Spanned<String>>,
    /// When the layer applies; outside them the layer below answers.
    #[serde(default)]
    pub restrictions: Vec<RestrictionSpec>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionSpec {
    /// Weekdays the window starts on (`Mon` … `Sun`); default every day.
    #[serde(default)]
    pub days: Vec<Spanned<String>>,
    /// `HH:MM`, inclusive.
    pub start: Spanned<String>,
    /// `HH:MM`, exclusive; at or before `start` it ends the next day.
    pub end: Spanned<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideSpec {
    pub user: Spanned<String>,
    /// Local, inclusive.
    pub start: Spanned<String>,
    /// Local, exclusive.
    pub end: Spanned<String>,
}

/// One entry of `routes:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// Labels the alert must carry (probe labels, `probe`, `kind`, `reason`, `severity`);
    /// none: every alert (the default route).
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub policy: Spanned<String>,
    /// Whether later routes are tried after this one matched.
    #[serde(rename = "continue", default)]
    pub continue_: bool,
}

/// Validates a person against the notifier names.
pub fn person(
    spec: &PersonSpec,
    notifiers: &HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Person {
    {
        let ctx = format!("person {:?}: ", spec.name.value);
        check_name(&spec.name, &ctx, problems);
        if spec.notify.value.is_empty() {
            problems.push((
                spec.notify.pos,
                format!("{ctx}notify: name at least one contact"),
            ));
        }
        for c in &spec.notify.value {
            if !notifiers.contains(&c.notifier.value) {
                problems.push((
                    c.notifier.pos,
                    format!("{ctx}notify: no notifier named {:?}", c.notifier.value),
                ));
            }
        }
        let contacts = spec
            .notify
            .value
            .iter()
            .map(|c| Contact {
                notifier: c.notifier.value.clone(),
                to: c.to.clone(),
            })
            .collect();
        Person {
            name: spec.name.value.clone(),
            contacts,
        }
    }
}

/// Validates a schedule against the people.
pub fn schedule(
    spec: &ScheduleSpec,
    people: &HashMap<String, Person>,
    problems: &mut Vec<Problem>,
) -> Schedule {
    {
        let ctx = format!("schedule {:?}: ", spec.name.value);
        check_name(&spec.name, &ctx, problems);
        let mut say = |pos: Pos, message: String| problems.push((pos, format!("{ctx}{message}")));
        let timezone = match &spec.timezone {
            None => TimeZone::UTC,
            Some(name) => TimeZone::get(name).unwrap_or_else(|_| {
                say(
                    name.pos,
                    format!("timezone: unknown time zone {:?}", name.value),
                );
                TimeZone::UTC
            }),
        };
        let known = |user: &Spanned<String>, say: &mut dyn FnMut(Pos, String)| {
            if !people.contains_key(&user.value) {
                say(user.pos, format!("no person named {:?}", user.value));
            }
        };
        if spec.layers.value.is_empty() {
            say(
                spec.layers.pos,
                "layers: a schedule needs at least one layer".into(),
            );
        }
        let mut layers = Vec::new();
        for (i, l) in spec.layers.value.iter().enumerate() {
            let mut say_layer = |pos: Pos, m: String| say(pos, format!("layers[{i}].{m}"));
            if l.users.value.is_empty() {
                say_layer(l.users.pos, "users: name at least one person".into());
            }
            for user in &l.users.value {
                known(user, &mut |pos, m| say_layer(pos, format!("users: {m}")));
            }
            let turn = parse_turn(&l.turn).unwrap_or_else(|m| {
                say_layer(l.turn.pos, m);
                schedule::Turn::Days(7)
            });
            let start_text = match &l.handoff {
                Some(h) if !l.start.contains('T') => format!("{}T{}", l.start.value, h.value),
                Some(h) => {
                    say_layer(
                        h.pos,
                        "handoff: give either a date-time start or a handoff time".into(),
                    );
                    l.start.value.clone()
                }
                None if !l.start.contains('T') => format!("{}T00:00", l.start.value),
                None => l.start.value.clone(),
            };
            let start = match local_time(&start_text, &timezone) {
                Ok(z) => z.datetime(),
                Err(m) => {
                    say_layer(l.start.pos, format!("start: {m}"));
                    jiff::civil::DateTime::default()
                }
            };
            let restrictions = l
                .restrictions
                .iter()
                .map(|r| restriction(r, &mut say_layer))
                .collect();
            layers.push(Layer {
                users: l.users.value.iter().map(|u| u.value.clone()).collect(),
                start,
                turn,
                restrictions,
            });
        }
        let mut overrides = Vec::new();
        for (i, o) in spec.overrides.iter().enumerate() {
            known(&o.user, &mut |pos, m| {
                say(pos, format!("overrides[{i}].user: {m}"))
            });
            let mut at = |text: &Spanned<String>, field: &str| match local_time(text, &timezone) {
                Ok(z) => Some(z.timestamp()),
                Err(m) => {
                    say(text.pos, format!("overrides[{i}].{field}: {m}"));
                    None
                }
            };
            if let (Some(start), Some(end)) = (at(&o.start, "start"), at(&o.end, "end")) {
                if end <= start {
                    say(
                        o.end.pos,
                        format!("overrides[{i}].end: must be after start"),
                    );
                }
                overrides.push(Override {
                    user: o.user.value.clone(),
                    start,
                    end,
                });
            }
        }
        Schedule {
            name: spec.name.value.clone(),
            timezone,
            layers,
            overrides,
        }
    }
}

/// People and schedules are named with letters, digits and `_ . @ -`: a name is part of the
/// record key of every notification to it, whose parts `/` and `>` separate.
fn check_name(name: &Spanned<String>, ctx: &str, problems: &mut Vec<Problem>) {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.@-".contains(c));
    if !ok {
        problems.push((
            name.pos,
            format!("{ctx}name: use letters, digits and _ . @ - (at most 100)"),
        ));
    }
}

fn restriction(spec: &RestrictionSpec, say: &mut dyn FnMut(Pos, String)) -> Restriction {
    const WEEK: [Weekday; 7] = [
        Weekday::Monday,
        Weekday::Tuesday,
        Weekday::Wednesday,
        Weekday::Thursday,
        Weekday::Friday,
        Weekday::Saturday,
        Weekday::Sunday,
    ];
    let mut days = Vec::new();
    for day in &spec.days {
        match parse_weekday(day) {
            Some(d) => days.push(WEEK[usize::from(d)]),
            None => say(
                day.pos,
                format!(
                    "restrictions.days: {:?} is not a weekday (Mon … Sun)",
                    day.value
                ),
            ),
        }
    }
    let mut clock = |text: &Spanned<String>, field: &str| {
        crate::alert::silence::parse_clock(text)
            .map(|m| Time::constant((m / 60) as i8, (m % 60) as i8, 0, 0))
            .unwrap_or_else(|| {
                say(
                    text.pos,
                    format!("restrictions.{field}: {:?} is not HH:MM", text.value),
                );
                Time::midnight()
            })
    };
    Restriction {
        days,
        start: clock(&spec.start, "start"),
        end: clock(&spec.end, "end"),
    }
}

/// Why `target` names nothing known, if it does not.
pub fn unknown_target(
    target: &Target,
    notifiers: &HashSet<String>,
    people: &HashMap<String, Person>,
    schedules: &HashMap<String, Schedule>,
) -> Option<String> {
    match target {
        Target::Notifier(name) if !notifiers.contains(name) => {
            Some(format!("no notifier named {name:?}"))
        }
        Target::Person(name) if !people.contains_key(name) => {
            Some(format!("no person named {name:?}"))
        }
        Target::Schedule(name) if !schedules.contains_key(name) => {
            Some(format!("no schedule named {name:?}"))
        }
        _ => None,
    }
}

/// Validates the `i`th route against the policy names.
pub fn route(
    i: usize,
    spec: &RouteSpec,
    policies: &HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Route {
    {
        if !policies.contains(&spec.policy.value) {
            problems.push((
                spec.policy.pos,
                format!(
                    "routes[{i}].policy: no policy named {:?}",
                    spec.policy.value
                ),
            ));
        }
        Route {
            matchers: spec
                .matchers
                .iter()
                .map(|(k, v)| (k.value.clone(), v.value.clone()))
                .collect(),
            policy: spec.policy.value.clone(),
            continue_: spec.continue_,
        }
    }
}

/// What `slowburn check` warns about: a route matcher no probe's labels can satisfy, and a
/// policy that neither a probe nor a route uses. Only alerting probes' labels (with `probe`
/// and `kind`) count; `reason` is known only at run time and never warned about.
pub fn warnings(
    routes: &[(PathBuf, RouteSpec)],
    probes: &[ProbeConfig],
    policies: &[(PathBuf, Pos, String)],
) -> Vec<ConfigError> {
    let alerting: Vec<&ProbeConfig> = probes.iter().filter(|p| p.alert.is_some()).collect();
    let labels: Vec<BTreeMap<String, String>> =
        alerting.iter().map(|p| p.alert_info(&[]).labels).collect();
    let used_by_probes: BTreeSet<String> = alerting
        .iter()
        .filter_map(|p| p.alert.as_ref()?.policy.clone())
        .collect();
    let warn = |file: &PathBuf, pos: Pos, message: String| ConfigError {
        file: file.clone(),
        pos: Some(pos),
        message,
    };
    let mut out = Vec::new();
    for (i, (file, spec)) in routes.iter().enumerate() {
        for (key, value) in &spec.matchers {
            let possible = match key.as_str() {
                "reason" => true,
                "severity" => ["page", "ticket"].contains(&value.as_str()),
                _ => labels
                    .iter()
                    .any(|l| l.get(&key.value) == Some(&value.value)),
            };
            if !possible {
                let message = format!(
                    "routes[{i}].match: no alerting probe has the label {}={:?}, so this route never matches",
                    key.value, value.value
                );
                out.push(warn(file, key.pos, message));
            }
        }
    }
    let routed: BTreeSet<&str> = routes.iter().map(|(_, s)| s.policy.as_str()).collect();
    for (file, pos, name) in policies {
        if !routed.contains(name.as_str()) && !used_by_probes.contains(name) {
            out.push(warn(
                file,
                *pos,
                format!("policy {name:?}: no probe and no route uses it"),
            ));
        }
    }
    out
}

/// Checks `depends_on:` of every probe: each name is a probe, and no probe depends on itself
/// through any chain. `deps` is (file, probe, its parents as written).
pub fn check_dependencies(
    deps: &[(PathBuf, String, Vec<Spanned<String>>)],
    probes: &HashSet<String>,
) -> Vec<ConfigError> {
    let graph: HashMap<&str, Vec<&str>> = deps
        .iter()
        .map(|(_, name, parents)| (name.as_str(), parents.iter().map(|p| p.as_str()).collect()))
        .collect();
    let mut out = Vec::new();
    for (file, name, parents) in deps {
        for parent in parents {
            let message = if !probes.contains(&parent.value) {
                format!(
                    "probe {name:?}: depends_on: no probe named {:?}",
                    parent.value
                )
            } else if let Some(path) = cycle(&graph, name, parent) {
                format!("probe {name:?}: depends_on: a cycle: {}", path.join(" → "))
            } else {
                continue;
            };
            out.push(ConfigError {
                file: file.clone(),
                pos: Some(parent.pos),
                message,
            });
        }
    }
    out
}

/// The chain from `parent` back to `start`, if following parents from `parent` reaches it.
fn cycle(graph: &HashMap<&str, Vec<&str>>, start: &str, parent: &str) -> Option<Vec<String>> {
    let mut stack = vec![(parent, vec![start.to_string(), parent.to_string()])];
    let mut seen = HashSet::new();
    while let Some((at, path)) = stack.pop() {
        if at == start {
            return Some(path);
        }
        if !seen.insert(at) {
            continue;
        }
        for next in graph.get(at).into_iter().flatten() {
            let mut p = path.clone();
            p.push(next.to_string());
            stack.push((next, p));
        }
    }
    None
}
