//! Who is on call when: a schedule's layers, restrictions and overrides, as pure functions of
//! an instant passed in ([`Schedule::oncall`], [`Schedule::shifts`]).
//!
//! Rotations are walked on jiff's civil calendar in the schedule's time zone, so a daily or
//! weekly handoff stays at its local time across DST changes; hourly turns are exact
//! durations. Local times written in a config are read with [`local_time`]: a time that does
//! not exist (skipped by a DST change) is refused, an ambiguous one (repeated) is its first
//! occurrence. This file reads no clock and does no I/O; only the time zone database is read.

use jiff::civil::{DateTime, Time, Weekday};
use jiff::tz::{Disambiguation, TimeZone};
use jiff::{Timestamp, ToSpan, Zoned};

/// A validated schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub timezone: TimeZone,
    /// Lowest first: a later layer sits on top of the ones before it, as in PagerDuty.
    pub layers: Vec<Layer>,
    /// Overrides from the config and from the API; the last one added wins where they overlap.
    pub overrides: Vec<Override>,
}

/// One rotation: users taking turns from `start`.
#[derive(Debug, Clone)]
pub struct Layer {
    pub users: Vec<String>,
    /// The first handoff, in the schedule's time zone.
    pub start: DateTime,
    pub turn: Turn,
    /// When the layer applies; empty means always.
    pub restrictions: Vec<Restriction>,
}

/// The length of one turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Exact hours (a turn across a DST change is still that many hours long).
    Hours(i64),
    /// Calendar days: the handoff keeps its local time.
    Days(i64),
}

/// A window of the day (`start` inclusive, `end` exclusive; an `end` at or before `start`
/// reaches into the next day) on some weekdays (the days the window starts; empty means every
/// day).
#[derive(Debug, Clone, PartialEq)]
pub struct Restriction {
    pub days: Vec<Weekday>,
    pub start: Time,
    pub end: Time,
}

/// Someone on call instead of the layers, `start` inclusive, `end` exclusive.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    pub user: String,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// One stretch of the final schedule: `user` on call from `start` until `end` (`None`: a gap).
#[derive(Debug, Clone, PartialEq)]
pub struct Shift {
    pub user: Option<String>,
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Reads a local date-time as written in a config (`2027-01-04T09:00`) in `tz`: refused when
/// the zone skips it, the first occurrence when the zone repeats it.
pub fn local_time(text: &str, tz: &TimeZone) -> Result<Zoned, String> {
    let civil: DateTime = text
        .parse()
        .map_err(|_| format!("{text:?} is not a local date and time such as 2027-01-04T09:00"))?;
    let ambiguous = tz.to_ambiguous_zoned(civil);
    if matches!(ambiguous.offset(), jiff::tz::AmbiguousOffset::Gap { .. }) {
        return Err(format!(
            "{text:?} does not exist in {} (the clocks skip it)",
            tz.iana_name().unwrap_or("this time zone")
        ));
    }
    ambiguous
        .disambiguate(Disambiguation::Earlier)
        .map_err(|e| format!("{text:?}: {e}"))
}

impl Schedule {
    /// Who is on call at `at`: the last override covering it, else the top layer whose
    /// restrictions admit it, else nobody (a gap).
    pub fn oncall(&self, at: Timestamp) -> Option<&str> {
        if let Some(o) = self
            .overrides
            .iter()
            .rev()
            .find(|o| o.start <= at && at < o.end)
        {
            return Some(&o.user);
        }
        let local = at.to_zoned(self.timezone.clone());
        self.layers
            .iter()
            .rev()
            .find_map(|layer| layer.oncall(&local, &self.timezone))
    }

    /// The final schedule from `from` to `to`: consecutive stretches of one user (or a gap).
    pub fn shifts(&self, from: Timestamp, to: Timestamp) -> Vec<Shift> {
        let mut points = vec![from];
        for o in &self.overrides {
            points.extend([o.start, o.end]);
        }
        for layer in &self.layers {
            layer.changes(from, to, &self.timezone, &mut points);
        }
        points.retain(|p| from <= *p && *p < to);
        points.sort();
        points.dedup();
        let mut shifts: Vec<Shift> = Vec::new();
        for (i, &start) in points.iter().enumerate() {
            let end = points.get(i + 1).copied().unwrap_or(to);
            let user = self.oncall(start).map(str::to_string);
            match shifts.last_mut() {
                Some(last) if last.user == user => last.end = end,
                _ => shifts.push(Shift { user, start, end }),
            }
        }
        shifts
    }
}

impl Layer {
    fn oncall(&self, local: &Zoned, tz: &TimeZone) -> Option<&str> {
        if self.users.is_empty() {
            return None;
        }
        if !self.restrictions.is_empty() && !self.restrictions.iter().any(|r| r.admits(local)) {
            return None;
        }
        let turn = self.turn_at(local.timestamp(), tz)?;
        let index = turn.rem_euclid(self.users.len() as i64) as usize;
        Some(&self.users[index])
    }

    /// The number of the turn `at` falls in (0 from `start`), or `None` before `start`.
    fn turn_at(&self, at: Timestamp, tz: &TimeZone) -> Option<i64> {
        let first = self.handoff(0, tz)?;
        if at < first {
            return None;
        }
        let nominal = match self.turn {
            Turn::Hours(h) => h * 3600,
            Turn::Days(d) => d * 86_400,
        };
        let mut k = (at.as_second() - first.as_second()) / nominal.max(1);
        // DST moves calendar turns by an hour at most: one step either way settles it.
        while k > 0 && self.handoff(k, tz).is_some_and(|h| h > at) {
            k -= 1;
        }
        while self.handoff(k + 1, tz).is_some_and(|h| h <= at) {
            k += 1;
        }
        Some(k)
    }

    /// When turn `k` begins.
    fn handoff(&self, k: i64, tz: &TimeZone) -> Option<Timestamp> {
        match self.turn {
            Turn::Hours(h) => {
                let first = tz.to_zoned(self.start).ok()?.timestamp();
                first.checked_add((k * h).hours()).ok()
            }
            Turn::Days(d) => {
                let civil = self.start.checked_add((k * d).days()).ok()?;
                // A handoff the zone skips happens at the first instant after the gap.
                tz.to_ambiguous_zoned(civil)
                    .disambiguate(Disambiguation::Compatible)
                    .ok()
                    .map(|z| z.timestamp())
            }
        }
    }

    /// Pushes every instant in `[from, to)` where this layer's answer may change.
    fn changes(&self, from: Timestamp, to: Timestamp, tz: &TimeZone, points: &mut Vec<Timestamp>) {
        let mut k = self.turn_at(from, tz).unwrap_or(0);
        while let Some(h) = self.handoff(k, tz) {
            if h >= to {
                break;
            }
            points.push(h);
            k += 1;
        }
        if self.restrictions.is_empty() {
            return;
        }
        let mut day = from.to_zoned(tz.clone()).date().yesterday().ok();
        let last = to.to_zoned(tz.clone()).date();
        while let Some(d) = day.filter(|d| *d <= last) {
            for r in &self.restrictions {
                for time in [r.start, r.end] {
                    if let Ok(z) = d.to_datetime(time).to_zoned(tz.clone()) {
                        points.push(z.timestamp());
                    }
                }
            }
            day = d.tomorrow().ok();
        }
    }
}

impl Restriction {
    fn admits(&self, local: &Zoned) -> bool {
        let time = local.time();
        let today = local.weekday();
        let on = |day: Weekday| self.days.is_empty() || self.days.contains(&day);
        if self.start < self.end {
            on(today) && self.start <= time && time < self.end
        } else {
            (time >= self.start && on(today)) || (time < self.end && on(today.previous()))
        }
    }
}

/// Parses a turn length: `12h`, `1d`, `2w`.
pub fn parse_turn(text: &str) -> Result<Turn, String> {
    let err = || format!("turn: {text:?} is not a number of hours, days or weeks (12h, 1d, 1w)");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| err())?;
    if n <= 0 {
        return Err(err());
    }
    match unit {
        "h" => Ok(Turn::Hours(n)),
        "d" => Ok(Turn::Days(n)),
        "w" => Ok(Turn::Days(n * 7)),
        _ => Err(err()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn berlin() -> TimeZone {
        TimeZone::get("Europe/Berlin").unwrap()
    }

    fn layer(users: &[&str], start: &str, turn: &str) -> Layer {
        Layer {
            users: users.iter().map(|u| u.to_string()).collect(),
            start: start.parse().unwrap(),
            turn: parse_turn(turn).unwrap(),
            restrictions: Vec::new(),
        }
    }

    fn schedule(layers: Vec<Layer>) -> Schedule {
        Schedule {
            name: "s".into(),
            timezone: berlin(),
            layers,
            overrides: Vec::new(),
        }
    }

    /// Who is on call at a local Berlin time.
    fn at(s: &Schedule, local: &str) -> Option<String> {
        let ts = local_time(local, &s.timezone).unwrap().timestamp();
        s.oncall(ts).map(str::to_string)
    }

    #[test]
    fn weekly_monday_handoff_at_nine() {
        let s = schedule(vec![layer(&["a", "b", "c"], "2027-01-04T09:00", "1w")]);
        assert_eq!(at(&s, "2027-01-04T08:59").as_deref(), None);
        assert_eq!(at(&s, "2027-01-04T09:00").as_deref(), Some("a"));
        assert_eq!(at(&s, "2027-01-11T08:59").as_deref(), Some("a"));
        assert_eq!(at(&s, "2027-01-11T09:00").as_deref(), Some("b"));
        assert_eq!(at(&s, "2027-01-18T09:00").as_deref(), Some("c"));
        assert_eq!(at(&s, "2027-01-25T09:00").as_deref(), Some("a"));
        // Across the spring change (28 March 2027) the Monday handoff is still at 09:00.
        let weeks = (jiff::civil::date(2027, 3, 29) - jiff::civil::date(2027, 1, 4)).get_days() / 7;
        let names = ["a", "b", "c"];
        assert_eq!(
            at(&s, "2027-03-29T08:59").as_deref(),
            Some(names[(weeks as usize - 1) % 3])
        );
        assert_eq!(
            at(&s, "2027-03-29T09:00").as_deref(),
            Some(names[weeks as usize % 3])
        );
    }

    #[test]
    fn daily_handoff_stays_at_nine_across_both_dst_changes_of_2027() {
        let s = schedule(vec![layer(&["a", "b"], "2027-03-20T09:00", "1d")]);
        // 28 March: clocks go forward; 31 October: back. Day n from 20 March is user n % 2.
        for (day, user) in [
            ("2027-03-27", "b"),
            ("2027-03-28", "a"),
            ("2027-03-29", "b"),
        ] {
            assert_eq!(
                at(&s, &format!("{day}T09:00")).as_deref(),
                Some(user),
                "{day}"
            );
            let before = if user == "a" { "b" } else { "a" };
            assert_eq!(
                at(&s, &format!("{day}T08:59")).as_deref(),
                Some(before),
                "{day}"
            );
        }
        let from_start =
            (jiff::civil::date(2027, 10, 31) - jiff::civil::date(2027, 3, 20)).get_days();
        let user = |n: i32| if n % 2 == 0 { "a" } else { "b" };
        for (day, n) in [
            ("2027-10-30", from_start - 1),
            ("2027-10-31", from_start),
            ("2027-11-01", from_start + 1),
        ] {
            assert_eq!(
                at(&s, &format!("{day}T09:00")).as_deref(),
                Some(user(n)),
                "{day}"
            );
            assert_eq!(
                at(&s, &format!("{day}T08:59")).as_deref(),
                Some(user(n - 1)),
                "{day}"
            );
        }
        // The handoff on the day of the change is 23 (or 25) real hours after the one before.
        let h = |d: &str| {
            let local = local_time(&format!("{d}T09:00"), &s.timezone).unwrap();
            local.timestamp().as_second()
        };
        assert_eq!(h("2027-03-28") - h("2027-03-27"), 23 * 3600);
        assert_eq!(h("2027-10-31") - h("2027-10-30"), 25 * 3600);
    }

    #[test]
    fn restrictions_fall_through_to_a_lower_layer_or_a_gap() {
        let base = layer(&["night"], "2027-01-04T00:00", "1w");
        let mut office = layer(&["day"], "2027-01-04T00:00", "1w");
        office.restrictions = vec![Restriction {
            days: vec![
                Weekday::Monday,
                Weekday::Tuesday,
                Weekday::Wednesday,
                Weekday::Thursday,
                Weekday::Friday,
            ],
            start: Time::constant(9, 0, 0, 0),
            end: Time::constant(17, 0, 0, 0),
        }];
        let s = schedule(vec![base, office.clone()]);
        assert_eq!(at(&s, "2027-01-05T10:00").as_deref(), Some("day"));
        assert_eq!(at(&s, "2027-01-05T17:00").as_deref(), Some("night"));
        assert_eq!(
            at(&s, "2027-01-09T10:00").as_deref(),
            Some("night"),
            "Saturday"
        );
        let alone = schedule(vec![office]);
        assert_eq!(at(&alone, "2027-01-05T16:59").as_deref(), Some("day"));
        assert_eq!(at(&alone, "2027-01-05T17:00"), None, "a gap");
        // A window past midnight belongs to the day it starts.
        let mut late = layer(&["late"], "2027-01-04T00:00", "1w");
        late.restrictions = vec![Restriction {
            days: vec![Weekday::Friday],
            start: Time::constant(22, 0, 0, 0),
            end: Time::constant(6, 0, 0, 0),
        }];
        let s = schedule(vec![late]);
        assert_eq!(at(&s, "2027-01-08T23:00").as_deref(), Some("late"));
        assert_eq!(at(&s, "2027-01-09T05:59").as_deref(), Some("late"));
        assert_eq!(at(&s, "2027-01-09T06:00"), None);
        assert_eq!(at(&s, "2027-01-07T23:00"), None, "Thursday night");
    }

    #[test]
    fn override_beats_layers_start_inclusive_end_exclusive() {
        let mut s = schedule(vec![layer(&["a", "b", "c"], "2027-01-04T09:00", "1w")]);
        let tz = s.timezone.clone();
        s.overrides.push(Override {
            user: "dave".into(),
            start: local_time("2027-04-12T09:00", &tz).unwrap().timestamp(),
            end: local_time("2027-04-13T09:00", &tz).unwrap().timestamp(),
        });
        let regular = at(&s, "2027-04-12T08:59");
        assert_ne!(regular.as_deref(), Some("dave"));
        assert_eq!(at(&s, "2027-04-12T09:00").as_deref(), Some("dave"));
        assert_eq!(at(&s, "2027-04-13T08:59").as_deref(), Some("dave"));
        let after = at(&s, "2027-04-13T09:00");
        assert_ne!(after.as_deref(), Some("dave"));
        let shifts = s.shifts(
            local_time("2027-04-12T00:00", &tz).unwrap().timestamp(),
            local_time("2027-04-14T00:00", &tz).unwrap().timestamp(),
        );
        let users: Vec<Option<&str>> = shifts.iter().map(|s| s.user.as_deref()).collect();
        assert_eq!(users, [regular.as_deref(), Some("dave"), after.as_deref()]);
    }

    #[test]
    fn local_times_skipped_are_refused_and_repeated_ones_are_the_first() {
        let tz = berlin();
        let err = local_time("2027-03-28T02:30", &tz).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        let first = local_time("2027-10-31T02:30", &tz).unwrap();
        assert_eq!(
            first.offset(),
            jiff::tz::offset(2),
            "summer time, the first 02:30"
        );
        assert!(local_time("next monday", &tz).is_err());
    }

    #[test]
    fn hourly_turns_are_exact_hours() {
        let s = schedule(vec![layer(&["a", "b"], "2027-03-28T00:00", "12h")]);
        // 28 March is 23 hours long: the second handoff is at 13:00 local.
        assert_eq!(at(&s, "2027-03-28T12:59").as_deref(), Some("a"));
        assert_eq!(at(&s, "2027-03-28T13:00").as_deref(), Some("b"));
        assert!(parse_turn("0d").is_err());
        assert!(parse_turn("1m").is_err());
    }
}
