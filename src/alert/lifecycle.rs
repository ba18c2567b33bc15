//! Per-probe result tracking for the alert state machine: consecutive failures and successes
//! (`after`, `recover_after`) and flapping detection.
//!
//! Flapping follows Nagios: over the last 21 results, each state change is weighted from 0.8
//! (oldest) to 1.2 (newest) and the weighted sum over the 20 possible changes gives a percent
//! state change. At or above `high` the probe starts flapping; below `low` it stops.

use std::collections::VecDeque;

const WINDOW: usize = 21;
/// Fewer results than this never count as flapping.
const MIN_RESULTS: usize = 10;

/// Consecutive-result counters and flapping state of one probe.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub failures: u32,
    pub successes: u32,
    /// When the current run of failures began.
    pub failing_since: Option<f64>,
    pub flapping: bool,
    results: VecDeque<bool>,
    high: f64,
    low: f64,
}

/// What one result changed in the flapping state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flap {
    Started,
    Stopped,
    Unchanged,
}

impl Tracker {
    /// `high` and `low` are percentages (Nagios defaults: 50 and 25).
    pub fn new(high: f64, low: f64) -> Self {
        Tracker {
            failures: 0,
            successes: 0,
            failing_since: None,
            flapping: false,
            results: VecDeque::with_capacity(WINDOW),
            high,
            low,
        }
    }

    /// Records one result (`true` = failed).
    pub fn record(&mut self, failed: bool, now: f64) -> Flap {
        if failed {
            if self.failures == 0 {
                self.failing_since = Some(now);
            }
            self.failures = self.failures.saturating_add(1);
            self.successes = 0;
        } else {
            self.successes = self.successes.saturating_add(1);
            self.failures = 0;
            self.failing_since = None;
        }
        if self.results.len() == WINDOW {
            self.results.pop_front();
        }
        self.results.push_back(failed);
        let change = self.percent_state_change();
        match (self.flapping, change) {
            (false, Some(p)) if p >= self.high => {
                self.flapping = true;
                Flap::Started
            }
            (true, Some(p)) if p < self.low => {
                self.flapping = false;
                Flap::Stopped
            }
            _ => Flap::Unchanged,
        }
    }

    /// The weighted percent state change over the window, once there are enough results.
    pub fn percent_state_change(&self) -> Option<f64> {
        let n = self.results.len();
        if n < MIN_RESULTS {
            return None;
        }
        let transitions = (n - 1) as f64;
        let mut weighted = 0.0;
        for i in 1..n {
            if self.results[i] != self.results[i - 1] {
                weighted += 0.8 + 0.4 * (i - 1) as f64 / (transitions - 1.0).max(1.0);
            }
        }
        Some(weighted / transitions * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_failure_is_not_flapping() {
        let mut t = Tracker::new(50.0, 25.0);
        for i in 0..30 {
            assert_eq!(t.record(i >= 5, i as f64), Flap::Unchanged);
        }
        assert_eq!(t.failures, 25);
        assert_eq!(t.failing_since, Some(5.0));
    }

    #[test]
    fn alternating_results_flap_once_then_settle() {
        let mut t = Tracker::new(50.0, 25.0);
        let mut events = Vec::new();
        for i in 0..20 {
            events.push(t.record(i % 2 == 0, i as f64));
        }
        assert_eq!(events.iter().filter(|e| **e == Flap::Started).count(), 1);
        assert!(t.flapping);
        // Stable again: the weighted change falls below 25% and flapping stops once.
        let mut stopped = 0;
        for i in 20..60 {
            if t.record(false, i as f64) == Flap::Stopped {
                stopped += 1;
            }
        }
        assert_eq!(stopped, 1);
        assert!(!t.flapping);
    }

    #[test]
    fn newer_changes_weigh_more() {
        let mut old = Tracker::new(101.0, 0.0);
        let mut new = Tracker::new(101.0, 0.0);
        for i in 0..21 {
            old.record(i == 0, 0.0);
            new.record(i == 20, 0.0);
        }
        assert!(new.percent_state_change().unwrap() > old.percent_state_change().unwrap());
    }
}
