//! "k of n locations": when the results of one probe from several locations open an alert.
//!
//! A location's latest result counts while it is fresh: a location that has reported nothing
//! for two intervals is *no data*, neither failing nor passing, so a partitioned or dead
//! location can neither page alone nor hold a page back. The alert opens only once at least
//! `min_failing` locations have been failing *at the same time* for `for` without a break;
//! a flap shorter than `for` pages nobody. Pure: results and the time are passed in.

use std::collections::BTreeMap;
use std::time::Duration;

/// How many locations must fail at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MinFailing {
    Count(u32),
    /// A share of the probe's locations, rounded up (`50%` of 3 is 2).
    Percent(f64),
}

/// A validated `quorum:`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Quorum {
    pub min_failing: MinFailing,
    /// How long the quorum must hold before the alert opens.
    pub hold: Duration,
}

impl Quorum {
    /// The number of failing locations that makes a quorum among `locations`.
    pub fn needed(&self, locations: usize) -> usize {
        match self.min_failing {
            MinFailing::Count(k) => k as usize,
            MinFailing::Percent(p) => ((p / 100.0 * locations as f64).ceil() as usize).max(1),
        }
    }
}

/// What one location last said about a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LocationResult {
    Passing,
    Failing,
    /// Nothing for two intervals (or never).
    NoData,
}

/// The quorum of one probe: its locations' latest results and since when the quorum holds.
#[derive(Debug, Clone)]
pub struct QuorumState {
    quorum: Quorum,
    interval: f64,
    /// Location → (time of its latest result, whether it failed).
    latest: BTreeMap<String, (f64, bool)>,
    locations: Vec<String>,
    /// Since when at least `needed` locations have been failing together.
    held_since: Option<f64>,
}

impl QuorumState {
    pub fn new(quorum: Quorum, locations: Vec<String>, interval: Duration) -> Self {
        QuorumState {
            quorum,
            interval: interval.as_secs_f64(),
            latest: BTreeMap::new(),
            locations,
            held_since: None,
        }
    }

    /// Takes one location's result (a location not in the list is ignored).
    pub fn record(&mut self, location: &str, failed: bool, at: f64) {
        if !self.locations.iter().any(|l| l == location) {
            return;
        }
        let entry = self
            .latest
            .entry(location.to_string())
            .or_insert((at, failed));
        if at >= entry.0 {
            *entry = (at, failed);
        }
    }

    /// Each location's result as of `now`, in the order the probe lists them.
    pub fn results(&self, now: f64) -> Vec<(String, LocationResult)> {
        self.locations
            .iter()
            .map(|l| (l.clone(), self.result(l, now)))
            .collect()
    }

    fn result(&self, location: &str, now: f64) -> LocationResult {
        match self.latest.get(location) {
            Some((at, failed)) if now - at <= 2.0 * self.interval => {
                if *failed {
                    LocationResult::Failing
                } else {
                    LocationResult::Passing
                }
            }
            _ => LocationResult::NoData,
        }
    }

    /// Whether the alert should be open at `now`: the quorum has held for `for`. Call it at
    /// every result and on a tick; a quorum that breaks restarts the wait.
    pub fn evaluate(&mut self, now: f64) -> bool {
        let failing = self
            .locations
            .iter()
            .filter(|l| self.result(l, now) == LocationResult::Failing)
            .count();
        if failing >= self.quorum.needed(self.locations.len()) {
            let since = *self.held_since.get_or_insert(now);
            now - since >= self.quorum.hold.as_secs_f64()
        } else {
            self.held_since = None;
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERVAL: f64 = 10.0;

    fn state(k: MinFailing) -> QuorumState {
        let quorum = Quorum {
            min_failing: k,
            hold: Duration::from_secs(300),
        };
        let locations = ["seoul", "tokyo", "frankfurt"].map(String::from).to_vec();
        QuorumState::new(quorum, locations, Duration::from_secs_f64(INTERVAL))
    }

    /// Runs every location each interval from `from` to `to` with `failing(location, t)`, and
    /// returns the times at which the alert went from closed to open.
    fn drive(
        s: &mut QuorumState,
        from: f64,
        to: f64,
        failing: impl Fn(&str, f64) -> Option<bool>,
    ) -> Vec<f64> {
        let mut opened = Vec::new();
        let mut open = false;
        let mut t = from;
        while t <= to {
            for l in ["seoul", "tokyo", "frankfurt"] {
                if let Some(failed) = failing(l, t) {
                    s.record(l, failed, t);
                }
            }
            let now_open = s.evaluate(t);
            if now_open && !open {
                opened.push(t);
            }
            open = now_open;
            t += INTERVAL;
        }
        opened
    }

    #[test]
    fn one_location_of_three_failing_opens_nothing() {
        let mut s = state(MinFailing::Count(2));
        let opened = drive(&mut s, 0.0, 3600.0, |l, _| Some(l == "seoul"));
        assert!(opened.is_empty(), "{opened:?}");
    }

    #[test]
    fn two_failing_for_the_hold_open_exactly_once() {
        let mut s = state(MinFailing::Count(2));
        let opened = drive(&mut s, 0.0, 3600.0, |l, t| {
            Some(l != "frankfurt" && t >= 100.0)
        });
        assert_eq!(opened, [400.0], "opens when the quorum has held 5m");
    }

    #[test]
    fn flaps_shorter_than_the_hold_open_nothing() {
        let mut s = state(MinFailing::Percent(50.0));
        // Two locations fail together for 4 minutes out of every 6.
        let opened = drive(&mut s, 0.0, 7200.0, |l, t| {
            Some(l != "frankfurt" && t % 360.0 < 240.0)
        });
        assert!(opened.is_empty(), "{opened:?}");
    }

    #[test]
    fn a_silent_location_is_no_data_not_failing() {
        let mut s = state(MinFailing::Count(2));
        // Tokyo fails once and then goes silent; Seoul keeps failing.
        let opened = drive(&mut s, 0.0, 3600.0, |l, t| match l {
            "seoul" => Some(true),
            "tokyo" => (t == 0.0).then_some(true),
            _ => Some(false),
        });
        assert!(opened.is_empty(), "{opened:?}");
        let results = s.results(3600.0);
        assert_eq!(results[1], ("tokyo".into(), LocationResult::NoData));
        assert_eq!(results[0], ("seoul".into(), LocationResult::Failing));
    }

    #[test]
    fn percentages_round_up() {
        let q = |p| Quorum {
            min_failing: MinFailing::Percent(p),
            hold: Duration::ZERO,
        };
        assert_eq!(q(50.0).needed(3), 2);
        assert_eq!(q(100.0).needed(3), 3);
        assert_eq!(q(1.0).needed(3), 1);
    }
}
