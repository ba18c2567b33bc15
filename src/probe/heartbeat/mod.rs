//! The `heartbeat:` probe: a job or a partner reports in, and slowburn notices when it stops.
//!
//! It is passive. Pings arrive at the server (`/ping/{probe}`, `/start`, `/fail`, `/{code}`),
//! which writes each to the store and then records it in the probe's [`Ledger`]; each run of
//! the probe only judges the ledger against the deadline ([`ledger::judge`]): due every
//! `period` or at the times of a cron `schedule` in a `timezone` ([`schedule::Due`]), plus
//! `grace`. Signals: `age` (seconds since the last ping), and, on the run that first sees them,
//! `duration` (start to finish of a run) and `value` (a number the ping carried), so drift and
//! change detection get one sample per reported run.
//!
//! This file knows nothing of HTTP serving or the store: the server and the daemon hand it
//! plain [`ledger::Ping`]s.

pub mod ledger;
pub mod schedule;

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use self::ledger::{Book, Ping, Rules};
use self::schedule::Due;
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::format::format_timestamp;
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::units::{Secret, format_duration, parse_duration};
use crate::basics::yaml::{Pos, Spanned};

/// The longest pause between two judgements of a probe's deadline.
const MAX_CHECK_EVERY: Duration = Duration::from_secs(30);
/// The shortest.
const MIN_CHECK_EVERY: Duration = Duration::from_secs(1);

/// `heartbeat:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatSpec {
    /// A ping is due this long after the previous one.
    pub period: Option<Spanned<String>>,
    /// Or: a ping is due at each time of this cron pattern (`0 5 * * *`).
    pub schedule: Option<Spanned<String>>,
    /// The time zone `schedule` is read in (IANA name); UTC when absent.
    pub timezone: Option<Spanned<String>>,
    /// How late a ping may be before the probe fails.
    pub grace: Spanned<String>,
    /// The secret pings must carry as `Authorization: Bearer …`.
    pub token: Spanned<String>,
    pub expect: Option<HeartbeatExpectSpec>,
}

/// `heartbeat.expect:`: bounds on a run's duration, start ping to finish ping.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatExpectSpec {
    pub min_duration: Option<Spanned<String>>,
    pub max_duration: Option<Spanned<String>>,
}

/// A validated `heartbeat:` probe.
#[derive(Debug)]
pub struct HeartbeatProbe {
    rules: Rules,
    token: Secret,
    ledger: Ledger,
}

/// The pings of one probe as far as judging needs them, shared by the server (which records)
/// and the probe's runs (which judge).
#[derive(Debug)]
pub struct Ledger {
    book: Mutex<Book>,
    /// When this probe began to be watched: a probe never pinged is late from here.
    armed: SystemTime,
    /// The newest ping whose signals a run has reported.
    reported: AtomicI64,
}

impl Ledger {
    fn new(armed: SystemTime) -> Ledger {
        Ledger {
            book: Mutex::new(Book::default()),
            armed,
            reported: AtomicI64::new(0),
        }
    }

    /// Records a ping (after the store has it). Recording one twice changes nothing.
    pub fn record(&self, ping: Ping) {
        self.lock().record(ping);
    }

    /// Records a ping read back from the store: its signals were reported before the restart
    /// or reload, so no run reports them again.
    pub fn restore(&self, ping: Ping) {
        let id = ping.id;
        self.record(ping);
        self.reported.fetch_max(id, Ordering::AcqRel);
    }

    /// The store id of the newest ping recorded; 0 when none.
    pub fn newest_id(&self) -> i64 {
        self.lock().newest.map_or(0, |(id, _)| id)
    }

    /// A copy of what is recorded.
    pub fn book(&self) -> Book {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl HeartbeatProbe {
    pub fn new(
        spec: Spanned<HeartbeatSpec>,
        _ctx: &BuildContext,
    ) -> Result<HeartbeatProbe, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut duration = |text: Option<&Spanned<String>>, field: &str| {
            let text = text?;
            match parse_duration(text) {
                Ok(d) if d.is_zero() => {
                    errors.push(SpecError::new(
                        text.pos,
                        field,
                        "must be more than zero".to_string(),
                    ));
                    None
                }
                Ok(d) => Some(d),
                Err(m) => {
                    errors.push(SpecError::new(text.pos, field, m));
                    None
                }
            }
        };
        let period = duration(spec.period.as_ref(), "period");
        let grace = duration(Some(&spec.grace), "grace");
        let expect = spec.expect.as_ref();
        let min_duration = duration(
            expect.and_then(|e| e.min_duration.as_ref()),
            "expect.min_duration",
        );
        let max_duration = duration(
            expect.and_then(|e| e.max_duration.as_ref()),
            "expect.max_duration",
        );
        let mut fail = |pos: Pos, field: &str, message: String| {
            errors.push(SpecError::new(pos, field, message));
        };
        if let (Some(lo), Some(hi)) = (min_duration, max_duration)
            && lo > hi
        {
            fail(
                spec.pos,
                "expect",
                format!(
                    "min_duration {} is above max_duration {}",
                    format_duration(lo),
                    format_duration(hi)
                ),
            );
        }
        let due = match (&spec.period, &spec.schedule) {
            (Some(_), Some(schedule)) => {
                fail(
                    schedule.pos,
                    "schedule",
                    "give period or schedule, not both".into(),
                );
                None
            }
            (None, None) => {
                fail(
                    spec.pos,
                    "",
                    "a heartbeat needs a period or a schedule".into(),
                );
                None
            }
            (Some(_), None) => {
                if let Some(tz) = &spec.timezone {
                    fail(
                        tz.pos,
                        "timezone",
                        "a timezone goes with a schedule, not a period".into(),
                    );
                }
                period.map(Due::Every)
            }
            (None, Some(schedule)) => {
                let zone = spec.timezone.as_ref().map_or("UTC", |z| z.as_str());
                match Due::cron(schedule, zone) {
                    Ok(due) => Some(due),
                    Err((field, message)) => {
                        let pos = match (field, &spec.timezone) {
                            ("timezone", Some(tz)) => tz.pos,
                            _ => schedule.pos,
                        };
                        fail(pos, field, message);
                        None
                    }
                }
            }
        };
        let token = match Secret::resolve(&spec.token) {
            Ok(token) => Some(token),
            Err(m) => {
                fail(spec.token.pos, "token", m);
                None
            }
        };
        match (due, grace, token) {
            (Some(due), Some(grace), Some(token)) if errors.is_empty() => Ok(HeartbeatProbe {
                rules: Rules {
                    due,
                    grace,
                    min_duration,
                    max_duration,
                },
                token,
                ledger: Ledger::new(SystemTime::now()),
            }),
            _ => Err(errors),
        }
    }

    /// What is expected, for people: `every 5s, grace 3s`.
    pub fn target(&self) -> String {
        format!(
            "{}, grace {}",
            self.rules.due.describe(),
            format_duration(self.rules.grace)
        )
    }

    /// The secret a ping must carry.
    pub fn token(&self) -> &Secret {
        &self.token
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// How often the deadline is judged when the probe entry sets no `interval`: about once
    /// per grace (or per `max_duration`, when shorter), so a missed ping or a hung run fails
    /// within about twice that of its deadline.
    pub fn check_every(&self) -> Duration {
        let bound = match self.rules.max_duration {
            Some(max) => max.min(self.rules.grace),
            None => self.rules.grace,
        };
        bound.clamp(MIN_CHECK_EVERY, MAX_CHECK_EVERY)
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        trace.enter("judge");
        let now = SystemTime::now();
        let book = self.ledger.book();
        let newest = book.newest.map_or(0, |(id, _)| id);
        let reported = self.ledger.reported.swap(newest, Ordering::AcqRel);
        if let Some((_, at)) = book.newest {
            trace.signal(
                "age",
                now.duration_since(at).unwrap_or_default().as_secs_f64(),
            );
        }
        if let Some(finish) = &book.last_finish {
            if finish.ping.id > reported
                && let Some(took) = finish.duration
            {
                trace.signal("duration", took.as_secs_f64());
            }
            if let Some(log) = &finish.ping.log {
                trace.notes.push(format!(
                    "log of the {} ping at {}:\n{log}",
                    finish.ping.event.word(),
                    format_timestamp(unix_seconds(finish.ping.at))
                ));
            }
        }
        if let Some((id, value)) = book.last_value
            && id > reported
        {
            trace.signal("value", value);
        }
        trace
            .check(
                "deadline",
                ledger::judge(&book, &self.rules, self.ledger.armed, now).map(|()| self.target()),
            )
            .map_or(Ok(()), Err)
    }
}

impl super::Kind for HeartbeatProbe {
    type Spec = HeartbeatSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<HeartbeatSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        HeartbeatProbe::new(spec, ctx)
    }
    fn target(&self) -> String {
        HeartbeatProbe::target(self)
    }
    fn check_every(&self) -> Option<Duration> {
        Some(HeartbeatProbe::check_every(self))
    }
    async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        HeartbeatProbe::run(self, trace).await
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64()
}

const AGE: Family = gauge(
    "probe_heartbeat_age_seconds",
    "Seconds since the heartbeat probe's last ping.",
);
const DURATION: Family = gauge(
    "probe_heartbeat_run_duration_seconds",
    "How long the last reported run took, from its start ping to its finish ping.",
);
const VALUE: Family = gauge(
    "probe_heartbeat_value",
    "The number the last ping that carried one reported (?value=N or {\"value\": N}).",
);

/// The heartbeat kind's signals.
pub const KIND: KindInfo = KindInfo {
    name: "heartbeat",
    signals: &[
        Signal::new("age", Unit::Seconds, Some(&AGE)),
        Signal::new("duration", Unit::Seconds, Some(&DURATION)),
        Signal::new("value", Unit::Count, Some(&VALUE)),
    ],
    headline: "age",
    network: false,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basics::yaml;
    use crate::probe::net::NetContext;
    use std::sync::Arc;

    fn build(yaml_text: &str) -> Result<HeartbeatProbe, Vec<String>> {
        let ctx = BuildContext {
            net: Arc::new(NetContext::new()),
        };
        let root = yaml::parse(yaml_text).unwrap();
        let unknown = std::cell::RefCell::new(Vec::new());
        let spec: Spanned<HeartbeatSpec> = yaml::from_node(&root, &unknown).unwrap();
        assert!(unknown.into_inner().is_empty());
        HeartbeatProbe::new(spec, &ctx).map_err(|errors| {
            errors
                .into_iter()
                .map(|e| format!("{}:{} {}: {}", e.pos.line, e.pos.col, e.field, e.message))
                .collect()
        })
    }

    /// `PATH` stands in for the token: it is always set, so no test touches the environment.
    #[test]
    fn period_and_schedule_forms_build() {
        let p = build("{period: 5s, grace: 3s, token: env:PATH}").unwrap();
        assert_eq!(p.target(), "every 5s, grace 3s");
        assert_eq!(p.check_every(), Duration::from_secs(3));
        let p = build(
            "{schedule: '0 5 * * *', timezone: Europe/Berlin, grace: 1h, token: env:PATH,\n expect: {min_duration: 2m, max_duration: 1h}}",
        )
        .unwrap();
        assert_eq!(p.target(), "0 5 * * * Europe/Berlin, grace 1h");
        assert_eq!(p.check_every(), MAX_CHECK_EVERY);
    }

    #[test]
    fn every_mistake_is_named_at_its_place() {
        let errors =
            build("{period: 5s, schedule: '0 5 * * *', grace: 0s, token: hunter2}").unwrap_err();
        assert_eq!(
            errors,
            [
                "1:44 grace: must be more than zero",
                "1:24 schedule: give period or schedule, not both",
                "1:55 token: secrets must be written as env:NAME or file:/path, never inline",
            ]
        );
        let errors = build("{schedule: '0 25 * * *', grace: 1m, token: env:PATH}").unwrap_err();
        assert!(
            errors[0].starts_with("1:12 schedule: invalid cron pattern"),
            "{errors:?}"
        );
        let errors =
            build("{schedule: '0 5 * * *', timezone: Europe/Nowhere, grace: 1m, token: env:PATH}")
                .unwrap_err();
        assert_eq!(
            errors,
            ["1:35 timezone: unknown time zone \"Europe/Nowhere\""]
        );
        let errors =
            build("{grace: 1m, token: env:PATH, expect: {min_duration: 2h, max_duration: 1h}}")
                .unwrap_err();
        assert_eq!(
            errors,
            [
                "1:1 expect: min_duration 2h is above max_duration 1h",
                "1:1 : a heartbeat needs a period or a schedule",
            ]
        );
    }

    #[tokio::test]
    async fn a_run_reports_new_signals_once_and_the_log_every_time() {
        let p = build("{period: 1h, grace: 1m, token: env:PATH}").unwrap();
        let now = SystemTime::now();
        let ping = |id, event, value, log: Option<&str>| Ping {
            id,
            at: now,
            event,
            value,
            log: log.map(Into::into),
        };
        p.ledger().record(ping(1, ledger::Event::Start, None, None));
        p.ledger()
            .record(ping(2, ledger::Event::Success, Some(17.0), Some("done\n")));
        let mut trace = Trace::new();
        assert_eq!(p.run(&mut trace).await, Ok(()));
        assert!(trace.signals.iter().any(|(n, _)| *n == "duration"));
        assert!(trace.signals.contains(&("value", 17.0)));
        assert!(trace.notes[0].contains("done"), "{:?}", trace.notes);
        let mut again = Trace::new();
        assert_eq!(p.run(&mut again).await, Ok(()));
        assert_eq!(
            again.signals.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            ["age"]
        );
        assert_eq!(again.notes.len(), 1);
    }
}
