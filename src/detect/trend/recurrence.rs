//! Recurrence: a rise the trend detector has seen come and go before, at the same phase, stops
//! paging. Latency that climbs tenfold over the first office hour every day and falls back by
//! midday, a cache that fills toward its limit and is flushed every hour: each looks like a
//! trend heading for its limit, and each ends on its own, below it. An *episode* is a stretch
//! in which the trend was alarming for its whole sustain period (it paged, or would have); it
//! is *benign* when it ended below the limit without a re-baseline. A new episode recurs when
//!
//! - a benign episode began at the same time of day (within [`DAILY_SLACK`]) on an earlier
//!   day, or
//! - the last two benign episodes and this one began at a steady spacing (within
//!   [`CYCLE_SLACK`] of each other, at least [`MIN_CYCLE`] apart),
//!
//! and its level has not gone past [`PEAK_MARGIN`] × the highest peak of the episodes it
//! matches. A recurring rise is not paged while it stays like those before it; one that climbs
//! higher, or reaches the limit, pages as any other. Pure: times are passed in.

use std::collections::VecDeque;

use crate::detect::verdict::{format_clock, format_duration};

/// How far apart in time of day two episodes may begin and still be the same daily rise.
pub const DAILY_SLACK: f64 = 45.0 * 60.0;
/// How much two spacings may differ, as a share, and still be one cycle.
pub const CYCLE_SLACK: f64 = 0.25;
/// The shortest cycle taken for one.
pub const MIN_CYCLE: f64 = 600.0;
/// A recurring rise pages anyway once it is this much above the peaks it matches.
pub const PEAK_MARGIN: f64 = 1.25;
/// Episodes remembered (and at most this old).
const KEEP: usize = 16;
const KEEP_FOR: f64 = 8.0 * 86_400.0;

/// One stretch of alarming trend.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Episode {
    start: f64,
    peak: f64,
    /// It lasted its sustain period: a page, or one held back as recurring.
    qualified: bool,
}

/// What a new episode matched.
#[derive(Debug, Clone, PartialEq)]
pub struct Recurrence {
    /// For people: `daily at 09:00` or `every ~1h`.
    pub pattern: String,
    /// The highest peak of the episodes it matched.
    pub peak: f64,
}

/// The episodes of one trend detector.
#[derive(Debug, Clone, Default)]
pub struct Episodes {
    done: VecDeque<Episode>,
    current: Option<Episode>,
}

impl Episodes {
    /// Notes a sample's value, for the peak of the episode under way.
    pub fn observe(&mut self, v: f64) {
        if let Some(e) = &mut self.current {
            e.peak = e.peak.max(v);
        }
    }

    /// An alarming stretch began at `start` (or goes on).
    pub fn begin(&mut self, start: f64, level: f64) {
        self.current.get_or_insert(Episode {
            start,
            peak: level,
            qualified: false,
        });
    }

    /// The stretch under way lasted its sustain period.
    pub fn qualify(&mut self) {
        if let Some(e) = &mut self.current {
            e.qualified = true;
        }
    }

    /// The stretch under way ended at `now`, below or above `limit`.
    pub fn end(&mut self, now: f64, limit: f64) {
        let Some(e) = self.current.take() else {
            return;
        };
        if !e.qualified || e.peak >= limit {
            // A blip, or a breach: neither is a pattern to stop paging for.
            return;
        }
        while self
            .done
            .front()
            .is_some_and(|d| d.start < now - KEEP_FOR || self.done.len() >= KEEP)
        {
            self.done.pop_front();
        }
        self.done.push_back(e);
    }

    /// A restart or reset: the stretch under way ends unjudged (a leak cut short by a
    /// restart is not a benign rise), and what was seen before is kept.
    pub fn interrupt(&mut self) {
        self.current = None;
    }

    /// Whether the stretch under way recurs: it matches earlier ones, its highest value so
    /// far is not past theirs by more than [`PEAK_MARGIN`], and has not reached `limit`.
    pub fn recurs(&self, limit: f64) -> Option<Recurrence> {
        let current = self.current?;
        let (start, level) = (current.start, current.peak);
        if level >= limit {
            return None;
        }
        let daily: Vec<&Episode> = self
            .done
            .iter()
            .filter(|e| {
                let apart = start - e.start;
                let off = (apart + 43_200.0).rem_euclid(86_400.0) - 43_200.0;
                apart >= 20.0 * 3600.0 && off.abs() <= DAILY_SLACK
            })
            .collect();
        if let Some(peak) = peak_of(&daily)
            && level <= PEAK_MARGIN * peak
        {
            return Some(Recurrence {
                pattern: format!("daily at {}", format_clock(start)),
                peak,
            });
        }
        let n = self.done.len();
        if n >= 2 {
            let (a, b) = (&self.done[n - 2], &self.done[n - 1]);
            let (first, second) = (b.start - a.start, start - b.start);
            let peak = a.peak.max(b.peak);
            if first >= MIN_CYCLE
                && (second - first).abs() <= CYCLE_SLACK * first
                && level <= PEAK_MARGIN * peak
            {
                return Some(Recurrence {
                    pattern: format!("every ~{}", format_duration(first)),
                    peak,
                });
            }
        }
        None
    }
}

fn peak_of(episodes: &[&Episode]) -> Option<f64> {
    episodes.iter().map(|e| e.peak).reduce(f64::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: f64 = 3600.0;
    const DAY: f64 = 86_400.0;

    fn episode(e: &mut Episodes, start: f64, peak: f64, limit: f64) {
        e.begin(start, peak / 2.0);
        e.observe(peak);
        e.qualify();
        e.end(start + HOUR, limit);
    }

    #[test]
    fn a_daily_rise_recurs_from_the_second_day_unless_it_climbs_higher() {
        let mut e = Episodes::default();
        episode(&mut e, 9.0 * HOUR, 900.0, 2000.0);
        e.begin(DAY + 9.5 * HOUR, 400.0);
        e.observe(800.0);
        let r = e.recurs(2000.0).unwrap();
        assert_eq!(r.pattern, "daily at 09:30");
        assert_eq!(r.peak, 900.0);
        e.observe(1200.0);
        assert!(e.recurs(2000.0).is_none(), "higher than ever: page");
        e.interrupt();
        e.begin(DAY + 15.0 * HOUR, 400.0);
        assert!(e.recurs(2000.0).is_none(), "another time of day");
    }

    #[test]
    fn breaches_blips_and_restarts_are_no_pattern() {
        let mut e = Episodes::default();
        episode(&mut e, 9.0 * HOUR, 2500.0, 2000.0);
        e.begin(DAY + 9.0 * HOUR, 10.0);
        e.end(DAY + 9.1 * HOUR, 2000.0);
        e.begin(DAY + 20.0 * HOUR, 10.0);
        e.qualify();
        e.interrupt();
        e.begin(2.0 * DAY + 9.0 * HOUR, 400.0);
        assert!(e.recurs(2000.0).is_none());
    }

    #[test]
    fn a_cycle_recurs_from_its_third_turn() {
        let mut e = Episodes::default();
        episode(&mut e, 0.0, 900.0, 1000.0);
        e.begin(HOUR, 500.0);
        assert!(e.recurs(1000.0).is_none(), "one turn is no cycle");
        e.observe(910.0);
        e.qualify();
        e.end(1.8 * HOUR, 1000.0);
        e.begin(2.1 * HOUR, 500.0);
        e.observe(900.0);
        assert_eq!(e.recurs(1000.0).unwrap().pattern, "every ~1h");
        e.interrupt();
        e.begin(4.0 * HOUR, 500.0);
        assert!(e.recurs(1000.0).is_none(), "off the beat");
    }
}
