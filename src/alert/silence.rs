//! Silences and maintenance windows: label matchers with a one-off window (`starts`, `ends`)
//! or a weekly one (`days`, `start`, `duration`, `timezone`). A silenced alert is shown but does
//! not page. Time is passed in; the only outside data read is the timezone database.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A validated silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub id: String,
    /// Every matcher must equal the alert's label (`probe`, `kind`, `reason`, `severity` and
    /// the probe's labels).
    pub matchers: BTreeMap<String, String>,
    pub window: Window,
    pub comment: String,
    pub created_by: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    /// Unix seconds, `ends` exclusive.
    Once { starts: f64, ends: f64 },
    /// Every listed weekday (0 = Monday) from `start` (minutes after local midnight) for
    /// `duration` seconds, in `timezone`.
    Weekly {
        days: Vec<u8>,
        start_minute: u32,
        duration: f64,
        timezone: String,
    },
}

impl Silence {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    pub fn active(&self, now: f64) -> bool {
        self.window.contains(now)
    }

    /// Whether this silence has nothing left to do after `now`.
    pub fn expired(&self, now: f64) -> bool {
        matches!(self.window, Window::Once { ends, .. } if ends <= now)
    }
}

impl Window {
    pub fn contains(&self, now: f64) -> bool {
        match self {
            Window::Once { starts, ends } => *starts <= now && now < *ends,
            Window::Weekly {
                days,
                start_minute,
                duration,
                timezone,
            } => weekly_contains(days, *start_minute, *duration, timezone, now).unwrap_or(false),
        }
    }
}

/// Checks today's window and the windows of the previous days that may reach into now.
fn weekly_contains(
    days: &[u8],
    start_minute: u32,
    duration: f64,
    timezone: &str,
    now: f64,
) -> Option<bool> {
    let tz = jiff::tz::TimeZone::get(timezone).ok()?;
    let now_ts = jiff::Timestamp::from_millisecond((now * 1000.0) as i64).ok()?;
    let local = now_ts.to_zoned(tz.clone());
    let lookback_days = (duration / 86_400.0).ceil() as i64 + 1;
    for back in 0..=lookback_days {
        let day = local
            .date()
            .checked_sub(jiff::Span::new().days(back))
            .ok()?;
        let weekday = day.weekday().to_monday_zero_offset() as u8;
        if !days.contains(&weekday) {
            continue;
        }
        let start = day
            .at((start_minute / 60) as i8, (start_minute % 60) as i8, 0, 0)
            .to_zoned(tz.clone())
            .ok()?
            .timestamp()
            .as_millisecond() as f64
            / 1000.0;
        if start <= now && now < start + duration {
            return Some(true);
        }
    }
    Some(false)
}

/// Parses `Mon`, `monday`, … into 0..=6.
pub fn parse_weekday(text: &str) -> Option<u8> {
    let lower = text.to_ascii_lowercase();
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .iter()
        .position(|d| lower.starts_with(d))
        .map(|i| i as u8)
}

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_clock(text: &str) -> Option<u32> {
    let (h, m) = text.split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> f64 {
        text.parse::<jiff::Timestamp>().unwrap().as_millisecond() as f64 / 1000.0
    }

    #[test]
    fn weekly_window_in_a_timezone() {
        // Sundays 02:00–04:00 in Seoul (UTC+9) is Saturday 17:00–19:00 UTC.
        let window = Window::Weekly {
            days: vec![6],
            start_minute: 120,
            duration: 7200.0,
            timezone: "Asia/Seoul".into(),
        };
        assert!(!window.contains(at("2026-11-21T16:59:59Z")));
        assert!(window.contains(at("2026-11-21T17:00:00Z")));
        assert!(window.contains(at("2026-11-21T18:59:59Z")));
        assert!(!window.contains(at("2026-11-21T19:00:00Z")));
        assert!(!window.contains(at("2026-11-22T17:30:00Z")));
    }

    #[test]
    fn weekly_window_across_midnight() {
        let window = Window::Weekly {
            days: vec![0],
            start_minute: 23 * 60,
            duration: 3.0 * 3600.0,
            timezone: "UTC".into(),
        };
        assert!(
            window.contains(at("2026-11-24T01:00:00Z")),
            "Tuesday 01:00 is inside Monday's 23:00+3h"
        );
        assert!(!window.contains(at("2026-11-24T02:00:00Z")));
    }

    #[test]
    fn one_off_and_matchers() {
        let s = Silence {
            id: "1".into(),
            matchers: [("team".to_string(), "shop".to_string())].into(),
            window: Window::Once {
                starts: 100.0,
                ends: 200.0,
            },
            comment: String::new(),
            created_by: String::new(),
        };
        assert!(s.active(100.0) && !s.active(200.0) && s.expired(200.0));
        let labels: BTreeMap<String, String> = [
            ("team".to_string(), "shop".to_string()),
            ("probe".into(), "x".into()),
        ]
        .into();
        assert!(s.matches(&labels));
        assert!(!s.matches(&BTreeMap::new()));
        assert_eq!(parse_weekday("Sun"), Some(6));
        assert_eq!(parse_clock("02:30"), Some(150));
        assert_eq!(parse_clock("24:00"), None);
    }
}
