//! When a heartbeat is due: every `period`, or at the times of a cron `schedule` in a time
//! zone. Pure: every answer is computed from a time passed in, never from the clock.
//!
//! Cron patterns are parsed by `croner`, and its times are walked on jiff's `Zoned`, so
//! daylight saving time follows the zone's rules as cron users expect them: a run whose wall
//! clock time falls into the hour skipped in spring (`30 2 * * *` in Europe/Berlin on
//! 2027-03-28) is due at the first instant after the gap (03:00 CEST), and a run in the hour
//! repeated in autumn is due once, at the first of the two instants.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use croner::Cron;
use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

/// When runs are due.
#[derive(Debug, Clone)]
pub enum Due {
    /// A run every `period`, counted from the previous check-in.
    Every(Duration),
    /// At each time of a cron pattern, read in a time zone.
    Cron {
        cron: Box<Cron>,
        /// The pattern as written, for people.
        pattern: String,
        zone: TimeZone,
        /// The zone's name as written (`UTC` when none was given).
        zone_name: String,
    },
}

impl Due {
    /// A cron schedule in `zone` (an IANA name); the reason when either is invalid.
    pub fn cron(pattern: &str, zone: &str) -> Result<Due, (&'static str, String)> {
        let cron = Cron::from_str(pattern.trim())
            .map_err(|e| ("schedule", format!("invalid cron pattern {pattern:?}: {e}")))?;
        let tz =
            TimeZone::get(zone).map_err(|_| ("timezone", format!("unknown time zone {zone:?}")))?;
        Ok(Due::Cron {
            cron: Box::new(cron),
            pattern: pattern.trim().to_string(),
            zone: tz,
            zone_name: zone.to_string(),
        })
    }

    /// The first time a run is due strictly after `after`; `None` when the pattern has no
    /// later time (`0 0 30 2 *`) or the time is out of range.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        match self {
            Due::Every(period) => after.checked_add(*period),
            Due::Cron { cron, zone, .. } => {
                let start = Timestamp::try_from(after).ok()?.to_zoned(zone.clone());
                let next: Zoned = cron.find_next_occurrence(&start, false).ok()?;
                Some(SystemTime::from(next.timestamp()))
            }
        }
    }

    /// When the run after a check-in at `checked_in` is overdue: its due time plus `grace`.
    pub fn deadline(&self, checked_in: SystemTime, grace: Duration) -> Option<SystemTime> {
        self.next_after(checked_in)?.checked_add(grace)
    }

    /// `every 5s`, `0 5 * * * Europe/Berlin`.
    pub fn describe(&self) -> String {
        match self {
            Due::Every(period) => {
                format!("every {}", crate::basics::units::format_duration(*period))
            }
            Due::Cron {
                pattern, zone_name, ..
            } => format!("{pattern} {zone_name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The instant of a wall clock time in `zone`, with an explicit offset so the tests say
    /// exactly which instant they mean on days the clock jumps.
    fn at(text: &str) -> SystemTime {
        let ts: Timestamp = text.parse().unwrap();
        SystemTime::from(ts)
    }

    fn next(due: &Due, after: &str) -> String {
        let t = due.next_after(at(after)).unwrap();
        let Due::Cron { zone, .. } = due else {
            unreachable!()
        };
        Timestamp::try_from(t)
            .unwrap()
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
    }

    #[test]
    fn a_period_is_counted_from_the_check_in() {
        let due = Due::Every(Duration::from_secs(5));
        let t0 = at("2027-01-01T00:00:00Z");
        assert_eq!(due.next_after(t0), Some(t0 + Duration::from_secs(5)));
        assert_eq!(
            due.deadline(t0, Duration::from_secs(3)),
            Some(t0 + Duration::from_secs(8))
        );
        assert_eq!(due.describe(), "every 5s");
    }

    #[test]
    fn a_daily_run_is_due_at_its_local_time() {
        let due = Due::cron("0 5 * * *", "Europe/Berlin").unwrap();
        // Winter: 05:00 CET is 04:00 UTC; summer: 05:00 CEST is 03:00 UTC.
        assert_eq!(
            next(&due, "2027-01-10T12:00:00Z"),
            "2027-01-11T05:00:00+01:00"
        );
        assert_eq!(
            next(&due, "2027-07-10T12:00:00Z"),
            "2027-07-11T05:00:00+02:00"
        );
        // Exactly at a due time, the next one is the day after.
        assert_eq!(
            next(&due, "2027-07-11T03:00:00Z"),
            "2027-07-12T05:00:00+02:00"
        );
        assert_eq!(due.describe(), "0 5 * * * Europe/Berlin");
    }

    #[test]
    fn the_spring_forward_run_is_due_right_after_the_gap() {
        // Berlin skips 02:00–03:00 on 2027-03-28; New York on 2027-03-14.
        let berlin = Due::cron("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            next(&berlin, "2027-03-27T12:00:00Z"),
            "2027-03-28T03:00:00+02:00"
        );
        // The day after, 02:30 exists again.
        assert_eq!(
            next(&berlin, "2027-03-28T12:00:00Z"),
            "2027-03-29T02:30:00+02:00"
        );
        let new_york = Due::cron("30 2 * * *", "America/New_York").unwrap();
        assert_eq!(
            next(&new_york, "2027-03-13T12:00:00Z"),
            "2027-03-14T03:00:00-04:00"
        );
        assert_eq!(
            next(&new_york, "2027-03-14T12:00:00Z"),
            "2027-03-15T02:30:00-04:00"
        );
    }

    #[test]
    fn a_run_in_the_repeated_autumn_hour_is_due_once() {
        // Berlin repeats 02:00–03:00 on 2027-10-31 (CEST, then CET).
        let berlin = Due::cron("30 2 * * *", "Europe/Berlin").unwrap();
        assert_eq!(
            next(&berlin, "2027-10-30T12:00:00Z"),
            "2027-10-31T02:30:00+02:00"
        );
        // From the first 02:30, the next run is the next day, not the second 02:30.
        assert_eq!(
            next(&berlin, "2027-10-31T00:30:00Z"),
            "2027-11-01T02:30:00+01:00"
        );
        // New York repeats 01:00–02:00 on 2027-11-07 (EDT, then EST).
        let new_york = Due::cron("30 1 * * *", "America/New_York").unwrap();
        assert_eq!(
            next(&new_york, "2027-11-06T12:00:00Z"),
            "2027-11-07T01:30:00-04:00"
        );
        assert_eq!(
            next(&new_york, "2027-11-07T05:30:00Z"),
            "2027-11-08T01:30:00-05:00"
        );
        // An hourly job runs in both halves of the repeated hour: the clock read 01:00 twice.
        let hourly = Due::cron("0 * * * *", "America/New_York").unwrap();
        assert_eq!(
            next(&hourly, "2027-11-07T05:00:00Z"),
            "2027-11-07T01:00:00-05:00"
        );
    }

    #[test]
    fn a_deadline_spans_the_short_night() {
        // The 05:00 Berlin run of spring-forward day, with 30 minutes of grace, is overdue
        // at 05:30 CEST: 23 hours after the 05:00 CET run of the day before.
        let due = Due::cron("0 5 * * *", "Europe/Berlin").unwrap();
        let checked_in = at("2027-03-27T04:00:10Z");
        let deadline = due.deadline(checked_in, Duration::from_secs(1800)).unwrap();
        assert_eq!(deadline, at("2027-03-28T03:30:00Z"));
        assert_eq!(
            deadline.duration_since(checked_in).unwrap(),
            Duration::from_secs(23 * 3600 + 30 * 60 - 10)
        );
    }

    #[test]
    fn bad_patterns_and_zones_are_named() {
        let (field, message) = Due::cron("61 5 * * *", "UTC").unwrap_err();
        assert_eq!(field, "schedule");
        assert!(message.contains("invalid cron pattern"), "{message}");
        let (field, message) = Due::cron("0 5 * * *", "Mars/Olympus").unwrap_err();
        assert_eq!(field, "timezone");
        assert!(message.contains("Mars/Olympus"), "{message}");
    }
}
