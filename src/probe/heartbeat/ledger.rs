//! What a heartbeat probe knows of its pings, and the judgement of them against the deadline.
//!
//! A [`Book`] holds the newest pings that judging needs (the latest start, the latest finish
//! with its run's duration, the latest value), built by recording pings in any order: the
//! server records each ping after the store has it, and a start or a reload replays the stored
//! ones, so recording the same ping twice changes nothing. [`judge`] is pure: the book, the
//! rules and the time are passed in. Nothing here reads the store or the clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::schedule::Due;
use crate::basics::units::format_duration;
use crate::probe::Failure;

/// What a ping said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `/ping/{probe}/start`: a run began.
    Start,
    /// `/ping/{probe}` or exit code 0: a run finished well.
    Success,
    /// `/ping/{probe}/fail` (no code) or `/ping/{probe}/{code}` with a code other than 0.
    Fail { exit_code: Option<u8> },
}

impl Event {
    /// The word kept in the store: `start`, `success`, `fail`, `exit`.
    pub fn word(&self) -> &'static str {
        match self {
            Event::Start => "start",
            Event::Success => "success",
            Event::Fail { exit_code: None } => "fail",
            Event::Fail { exit_code: Some(_) } => "exit",
        }
    }

    /// The event of a stored word and exit code.
    pub fn from_word(word: &str, exit_code: Option<u8>) -> Option<Event> {
        match word {
            "start" => Some(Event::Start),
            "success" => Some(Event::Success),
            "fail" => Some(Event::Fail { exit_code: None }),
            "exit" => Some(Event::Fail { exit_code }),
            _ => None,
        }
    }

    /// The event of an exit code: 0 is success.
    pub fn of_exit_code(code: u8) -> Event {
        if code == 0 {
            Event::Success
        } else {
            Event::Fail {
                exit_code: Some(code),
            }
        }
    }
}

/// One ping as received and stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Ping {
    /// The store's row id: increasing in the order the store took them.
    pub id: i64,
    /// When slowburn received it.
    pub at: SystemTime,
    pub event: Event,
    /// `?value=N` or a JSON body `{"value": N}`.
    pub value: Option<f64>,
    /// The body of a POST, up to the kept size: the run's log.
    pub log: Option<Arc<str>>,
}

/// A finished run: its ping, and how long it ran when a start came before it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub ping: Ping,
    pub duration: Option<Duration>,
}

/// The newest pings of one probe that judging needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Book {
    pub last_start: Option<Ping>,
    pub last_finish: Option<Finish>,
    /// The newest ping that carried a value: its id and the value.
    pub last_value: Option<(i64, f64)>,
    /// The newest ping of any kind.
    pub newest: Option<(i64, SystemTime)>,
}

/// Orders pings by receive time, then by store order (two pings in one millisecond).
fn key(ping: &Ping) -> (SystemTime, i64) {
    (ping.at, ping.id)
}

impl Book {
    /// Records a ping; one older than what its slot holds, or already recorded, changes
    /// nothing there.
    pub fn record(&mut self, ping: Ping) {
        if self.newest.is_none_or(|(id, at)| (at, id) < key(&ping)) {
            self.newest = Some((ping.id, ping.at));
        }
        if let Some(value) = ping.value
            && self.last_value.is_none_or(|(id, _)| id < ping.id)
        {
            self.last_value = Some((ping.id, value));
        }
        match ping.event {
            Event::Start => {
                if self.last_start.as_ref().is_none_or(|s| key(s) < key(&ping)) {
                    self.last_start = Some(ping);
                }
            }
            Event::Success | Event::Fail { .. } => {
                if self
                    .last_finish
                    .as_ref()
                    .is_some_and(|f| key(&f.ping) >= key(&ping))
                {
                    return;
                }
                // The run this ping ends began with the latest start after the finish before.
                let duration = self
                    .last_start
                    .as_ref()
                    .filter(|s| key(s) < key(&ping))
                    .filter(|s| {
                        self.last_finish
                            .as_ref()
                            .is_none_or(|f| key(&f.ping) < key(s))
                    })
                    .and_then(|s| ping.at.duration_since(s.at).ok());
                self.last_finish = Some(Finish { ping, duration });
            }
        }
    }

    /// The start of the run in progress: the latest start, when no finish came after it.
    pub fn running(&self) -> Option<&Ping> {
        let start = self.last_start.as_ref()?;
        match &self.last_finish {
            Some(f) if key(&f.ping) > key(start) => None,
            _ => Some(start),
        }
    }
}

/// What a probe expects of its pings.
#[derive(Debug, Clone)]
pub struct Rules {
    pub due: Due,
    pub grace: Duration,
    pub min_duration: Option<Duration>,
    pub max_duration: Option<Duration>,
}

/// Judges the pings of `book` at `now`. `armed` is when slowburn began watching (the start
/// of the daemon or the reload that added the probe): a probe never pinged is late one due
/// time plus grace after it.
///
/// In order: a run in progress longer than `max_duration` (or, without one, `grace`) fails
/// `duration`; no check-in by the due time after the latest finish plus grace fails `late`; a
/// latest finish that reported failure fails `job`; a latest run shorter than `min_duration`
/// or longer than `max_duration` fails `duration`.
pub fn judge(
    book: &Book,
    rules: &Rules,
    armed: SystemTime,
    now: SystemTime,
) -> Result<(), Failure> {
    if let Some(start) = book.running() {
        let limit = rules.max_duration.unwrap_or(rules.grace);
        let elapsed = now.duration_since(start.at).unwrap_or_default();
        if elapsed > limit {
            let within = if rules.max_duration.is_some() {
                "max_duration"
            } else {
                "grace"
            };
            return Err(Failure::Limit {
                signal: "duration",
                message: format!(
                    "started {} ago and not finished within {within} {}",
                    format_duration(whole_seconds(elapsed)),
                    format_duration(limit)
                ),
            });
        }
        return Ok(());
    }
    let finish = book.last_finish.as_ref();
    let checked_in = finish.map_or(armed, |f| f.ping.at);
    if let Some(deadline) = rules.due.deadline(checked_in, rules.grace)
        && now > deadline
    {
        let late = now.duration_since(deadline).unwrap_or_default();
        let since = match finish {
            Some(_) => format!(
                "no ping for {}",
                format_duration(whole_seconds(
                    now.duration_since(checked_in).unwrap_or_default()
                ))
            ),
            None => format!(
                "no ping since slowburn began watching {} ago",
                format_duration(whole_seconds(now.duration_since(armed).unwrap_or_default()))
            ),
        };
        return Err(Failure::Late(format!(
            "{since}; due {} with grace {}, {} overdue",
            rules.due.describe(),
            format_duration(rules.grace),
            format_duration(whole_seconds(late))
        )));
    }
    let Some(finish) = finish else {
        return Ok(());
    };
    if let Event::Fail { exit_code } = finish.ping.event {
        let what = match exit_code {
            Some(code) => format!("exit code {code}"),
            None => "the job reported failure".to_string(),
        };
        return Err(Failure::Job(match &finish.ping.log {
            Some(log) => format!("{what}; log ends: {}", log_tail(log)),
            None => what,
        }));
    }
    if let Some(took) = finish.duration {
        if let Some(min) = rules.min_duration
            && took < min
        {
            return Err(Failure::Limit {
                signal: "duration",
                message: format!(
                    "the run took {}, less than min_duration {}",
                    format_duration(took),
                    format_duration(min)
                ),
            });
        }
        if let Some(max) = rules.max_duration
            && took > max
        {
            return Err(Failure::Limit {
                signal: "duration",
                message: format!(
                    "the run took {}, more than max_duration {}",
                    format_duration(took),
                    format_duration(max)
                ),
            });
        }
    }
    Ok(())
}

/// How much of a log's end an alert message carries: enough to read the error, small enough
/// for a chat message.
const LOG_TAIL: usize = 400;

/// The last [`LOG_TAIL`] bytes of a log (cut at a character boundary), on one line.
pub fn log_tail(log: &str) -> String {
    let mut start = log.len().saturating_sub(LOG_TAIL);
    while !log.is_char_boundary(start) {
        start += 1;
    }
    let tail = log[start..].trim().replace(['\r', '\n'], " ⏎ ");
    if start > 0 {
        format!("…{tail}")
    } else {
        tail
    }
}

fn whole_seconds(d: Duration) -> Duration {
    Duration::from_secs(d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const T0: u64 = 1_800_000_000;

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(T0 + secs)
    }

    fn ping(id: i64, secs: u64, event: Event) -> Ping {
        Ping {
            id,
            at: t(secs),
            event,
            value: None,
            log: None,
        }
    }

    fn every(period: u64, grace: u64) -> Rules {
        Rules {
            due: Due::Every(Duration::from_secs(period)),
            grace: Duration::from_secs(grace),
            min_duration: None,
            max_duration: None,
        }
    }

    fn reason(result: Result<(), Failure>) -> String {
        match result {
            Ok(()) => "ok".into(),
            Err(f) => f.to_string(),
        }
    }

    #[test]
    fn a_missed_run_fails_after_grace_and_a_late_ping_resolves() {
        let rules = every(5, 3);
        let mut book = Book::default();
        book.record(ping(1, 0, Event::Success));
        // Due at 5 s, overdue after 8 s.
        assert_eq!(reason(judge(&book, &rules, t(0), t(8))), "ok");
        let late = reason(judge(&book, &rules, t(0), t(9)));
        assert!(late.starts_with("late: no ping for 9s"), "{late}");
        assert!(
            late.contains("due every 5s with grace 3s, 1s overdue"),
            "{late}"
        );
        // A late ping resolves at once, and the clock restarts from it.
        book.record(ping(2, 20, Event::Success));
        assert_eq!(reason(judge(&book, &rules, t(0), t(20))), "ok");
        assert_eq!(reason(judge(&book, &rules, t(0), t(28))), "ok");
        assert!(reason(judge(&book, &rules, t(0), t(29))).starts_with("late"));
    }

    #[test]
    fn a_probe_never_pinged_is_late_from_when_watching_began() {
        let rules = every(5, 3);
        let book = Book::default();
        assert_eq!(reason(judge(&book, &rules, t(100), t(108))), "ok");
        let late = reason(judge(&book, &rules, t(100), t(109)));
        assert!(
            late.starts_with("late: no ping since slowburn began watching 9s ago"),
            "{late}"
        );
    }

    #[test]
    fn a_restart_across_a_missed_deadline_is_late_at_once() {
        // The last ping was stored at 0; slowburn was down from 2 s to 60 s. Rebuilt from the
        // stored pings with watching armed at 60 s, the first judgement is already late.
        let rules = every(5, 3);
        let mut book = Book::default();
        book.record(ping(7, 0, Event::Success));
        let late = reason(judge(&book, &rules, t(60), t(60)));
        assert!(late.starts_with("late: no ping for 1m"), "{late}");
    }

    #[test]
    fn fail_and_a_nonzero_exit_code_fail_at_once_with_the_log() {
        let rules = every(60, 60);
        let mut book = Book::default();
        book.record(ping(1, 0, Event::Fail { exit_code: None }));
        assert_eq!(
            reason(judge(&book, &rules, t(0), t(0))),
            "job: the job reported failure"
        );
        let mut failed = ping(2, 1, Event::of_exit_code(3));
        failed.log = Some("starting\nconnect: refused\n".into());
        book.record(failed);
        assert_eq!(
            reason(judge(&book, &rules, t(0), t(1))),
            "job: exit code 3; log ends: starting ⏎ connect: refused"
        );
        book.record(ping(3, 2, Event::of_exit_code(0)));
        assert_eq!(reason(judge(&book, &rules, t(0), t(2))), "ok");
    }

    #[test]
    fn runs_too_short_and_too_long_fail_duration() {
        let rules = Rules {
            min_duration: Some(Duration::from_secs(120)),
            max_duration: Some(Duration::from_secs(3600)),
            ..every(86_400, 600)
        };
        let mut book = Book::default();
        book.record(ping(1, 0, Event::Start));
        book.record(ping(2, 10, Event::Success));
        assert_eq!(
            book.last_finish.as_ref().unwrap().duration,
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            reason(judge(&book, &rules, t(0), t(10))),
            "duration: the run took 10s, less than min_duration 2m"
        );
        book.record(ping(3, 100, Event::Start));
        book.record(ping(4, 100 + 4000, Event::Success));
        let long = reason(judge(&book, &rules, t(0), t(4100)));
        assert!(long.contains("more than max_duration 1h"), "{long}");
        book.record(ping(5, 5000, Event::Start));
        book.record(ping(6, 5000 + 600, Event::Success));
        assert_eq!(reason(judge(&book, &rules, t(0), t(5600))), "ok");
        // A success with no start of its own has no duration to judge.
        book.record(ping(7, 6000, Event::Success));
        assert_eq!(book.last_finish.as_ref().unwrap().duration, None);
        assert_eq!(reason(judge(&book, &rules, t(0), t(6000))), "ok");
    }

    #[test]
    fn a_start_with_no_finish_fails_after_max_duration_or_grace() {
        let rules = Rules {
            max_duration: Some(Duration::from_secs(3600)),
            ..every(86_400, 600)
        };
        let mut book = Book::default();
        book.record(ping(1, 0, Event::Start));
        // Running, past the period's deadline but within max_duration: not late.
        assert_eq!(reason(judge(&book, &rules, t(0), t(3600))), "ok");
        let hung = reason(judge(&book, &rules, t(0), t(3601)));
        assert_eq!(
            hung,
            "duration: started 1h1s ago and not finished within max_duration 1h"
        );
        // Without max_duration, grace bounds a run.
        let rules = every(86_400, 600);
        assert!(reason(judge(&book, &rules, t(0), t(601))).contains("within grace 10m"));
    }

    #[test]
    fn recording_is_idempotent_and_order_free() {
        let pings = [
            ping(1, 0, Event::Start),
            Ping {
                value: Some(42.0),
                ..ping(2, 5, Event::Success)
            },
            ping(3, 9, Event::Start),
        ];
        let mut forward = Book::default();
        for p in &pings {
            forward.record(p.clone());
        }
        let mut twice = forward.clone();
        for p in &pings {
            twice.record(p.clone());
        }
        assert_eq!(forward, twice);
        assert_eq!(
            forward.last_finish.as_ref().unwrap().duration,
            Some(Duration::from_secs(5))
        );
        assert_eq!(forward.last_value, Some((2, 42.0)));
        assert_eq!(forward.running().map(|p| p.id), Some(3));
        assert_eq!(forward.newest, Some((3, t(9))));
    }

    #[test]
    fn a_cron_job_is_late_a_grace_after_its_next_time() {
        // Daily at 05:00 Berlin; the run of 2027-03-27 pinged at 05:00:10 CET.
        let rules = Rules {
            due: Due::cron("0 5 * * *", "Europe/Berlin").unwrap(),
            grace: Duration::from_secs(1800),
            min_duration: None,
            max_duration: None,
        };
        let at = |s: &str| SystemTime::from(s.parse::<jiff::Timestamp>().unwrap());
        let mut book = Book::default();
        book.record(Ping {
            at: at("2027-03-27T04:00:10Z"),
            ..ping(1, 0, Event::Success)
        });
        // Spring-forward day: 05:30 CEST is 03:30 UTC.
        assert_eq!(
            reason(judge(&book, &rules, t(0), at("2027-03-28T03:30:00Z"))),
            "ok"
        );
        assert!(reason(judge(&book, &rules, t(0), at("2027-03-28T03:30:01Z"))).starts_with("late"));
    }

    #[test]
    fn a_long_log_is_cut_to_its_end() {
        let log = format!("{}é the end", "x".repeat(1000));
        let tail = log_tail(&log);
        assert!(tail.starts_with('…') && tail.ends_with("the end"), "{tail}");
        assert!(tail.len() <= LOG_TAIL + 4);
    }
}
