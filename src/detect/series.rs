//! The bounded history of one signal: samples folded into fixed-width time buckets, each
//! kept as a small aggregate (count, median, min, max, mean, first and last time), so memory
//! and the cost of a re-fit depend on the number of buckets, never on the number of samples.
//! Only the open bucket holds raw values, and at most [`OPEN_VALUES`] of them. This module
//! decides nothing: trend fitting lives in `trend`, and a re-baseline (a process restart, a
//! `pg_stat_statements` reset) is the caller's call to [`Series::reset`].

use std::collections::VecDeque;

/// Raw values the open bucket keeps for its median; beyond this a deterministic reservoir
/// sample stands in for them, so a burst of samples cannot grow memory.
pub const OPEN_VALUES: usize = 256;

/// The aggregate of the samples that fell into one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// Aligned start of the bucket: a multiple of the bucket width.
    pub start: f64,
    pub first_t: f64,
    pub last_t: f64,
    pub count: u32,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    pub median: f64,
}

impl Bucket {
    /// The time this bucket stands for in a fit: the middle of its samples.
    pub fn mid_t(&self) -> f64 {
        0.5 * (self.first_t + self.last_t)
    }
}

/// A bounded, bucketed history of `(t, value)` samples.
#[derive(Debug, Clone)]
pub struct Series {
    width: f64,
    max_age: f64,
    max_buckets: usize,
    closed: VecDeque<Bucket>,
    open: Option<Open>,
}

impl Series {
    /// A series of `width`-second buckets keeping at most `max_age` seconds and
    /// `max_buckets` closed buckets. Non-finite or non-positive arguments fall back to
    /// one-minute buckets, one day and 1,440 buckets.
    pub fn new(width: f64, max_age: f64, max_buckets: usize) -> Series {
        let width = if width.is_finite() && width > 0.0 {
            width
        } else {
            60.0
        };
        let max_age = if max_age.is_finite() && max_age > 0.0 {
            max_age
        } else {
            86_400.0
        };
        Series {
            width,
            max_age,
            max_buckets: if max_buckets == 0 { 1440 } else { max_buckets },
            closed: VecDeque::new(),
            open: None,
        }
    }

    /// Bucket width in seconds.
    pub fn width(&self) -> f64 {
        self.width
    }

    /// Adds one sample. Returns `true` when the sample closed the open bucket, which is when
    /// callers should re-fit. Non-finite samples and samples older than the open bucket are
    /// ignored.
    pub fn push(&mut self, t: f64, v: f64) -> bool {
        if !t.is_finite() || !v.is_finite() {
            return false;
        }
        let start = (t / self.width).floor() * self.width;
        let mut closed = false;
        match &mut self.open {
            Some(open) if start == open.start => {
                if t < open.last_t {
                    return false;
                }
                open.add(t, v);
                return false;
            }
            Some(open) if start < open.start => return false,
            Some(_) => {
                if let Some(open) = self.open.take() {
                    self.closed.push_back(open.close());
                    closed = true;
                }
            }
            None => {}
        }
        self.open = Some(Open::new(start, t, v));
        self.prune(t);
        closed
    }

    /// Forgets everything: the next sample starts a new baseline.
    pub fn reset(&mut self) {
        self.closed.clear();
        self.open = None;
    }

    /// Closed buckets, oldest first.
    pub fn buckets(&self) -> &VecDeque<Bucket> {
        &self.closed
    }

    /// Number of closed buckets.
    pub fn len(&self) -> usize {
        self.closed.len()
    }

    /// Whether there is no closed bucket yet.
    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
    }

    /// Seconds from the first closed bucket's first sample to the last closed bucket's last.
    pub fn span(&self) -> f64 {
        match (self.closed.front(), self.closed.back()) {
            (Some(a), Some(b)) => b.last_t - a.first_t,
            _ => 0.0,
        }
    }

    fn prune(&mut self, now: f64) {
        while let Some(front) = self.closed.front() {
            let too_old = now - front.last_t > self.max_age;
            if too_old || self.closed.len() > self.max_buckets {
                self.closed.pop_front();
            } else {
                break;
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Open {
    start: f64,
    first_t: f64,
    last_t: f64,
    count: u32,
    min: f64,
    max: f64,
    sum: f64,
    values: Vec<f64>,
}

impl Open {
    fn new(start: f64, t: f64, v: f64) -> Open {
        let mut values = Vec::with_capacity(64);
        values.push(v);
        Open {
            start,
            first_t: t,
            last_t: t,
            count: 1,
            min: v,
            max: v,
            sum: v,
            values,
        }
    }

    fn add(&mut self, t: f64, v: f64) {
        self.last_t = t;
        self.count = self.count.saturating_add(1);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        if self.values.len() < OPEN_VALUES {
            self.values.push(v);
        } else {
            // Algorithm R with a hash of the sample number in place of a random draw: every
            // sample keeps the same chance of standing in the median, reproducibly.
            let j = (splitmix64(u64::from(self.count)) % u64::from(self.count)) as usize;
            if let Some(slot) = self.values.get_mut(j) {
                *slot = v;
            }
        }
    }

    fn close(mut self) -> Bucket {
        let median = median_in_place(&mut self.values).unwrap_or(self.min);
        Bucket {
            start: self.start,
            first_t: self.first_t,
            last_t: self.last_t,
            count: self.count,
            min: self.min,
            max: self.max,
            mean: self.sum / f64::from(self.count.max(1)),
            median,
        }
    }
}

/// Median of finite values (average of the two middle ones for an even count), reordering
/// the slice. `None` when empty.
pub fn median_in_place(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mid = n / 2;
    let (left, upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    let upper = *upper;
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(0.5 * (lower + upper))
}

/// The splitmix64 finaliser: a fast, well-mixed hash of a counter.
pub fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_aggregate_and_close_on_the_next_bucket() {
        let mut s = Series::new(60.0, 3600.0, 100);
        assert!(!s.push(0.0, 1.0));
        assert!(!s.push(15.0, 5.0));
        assert!(!s.push(30.0, 3.0));
        assert!(s.is_empty());
        assert!(s.push(61.0, 10.0));
        let b = s.buckets()[0];
        assert_eq!(
            (b.count, b.min, b.max, b.median, b.mean),
            (3, 1.0, 5.0, 3.0, 3.0)
        );
        assert_eq!((b.start, b.first_t, b.last_t), (0.0, 0.0, 30.0));
        assert_eq!(b.mid_t(), 15.0);
    }

    #[test]
    fn bounded_by_age_and_count() {
        let mut s = Series::new(60.0, 600.0, 1000);
        for i in 0..10_000 {
            s.push(f64::from(i) * 15.0, 1.0);
        }
        assert!(s.len() <= 11, "{}", s.len());
        let mut s = Series::new(60.0, 1e9, 5);
        for i in 0..10_000 {
            s.push(f64::from(i) * 15.0, 1.0);
        }
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn ignores_junk_and_out_of_order_samples() {
        let mut s = Series::new(60.0, 3600.0, 100);
        s.push(100.0, 1.0);
        s.push(f64::NAN, 1.0);
        s.push(101.0, f64::INFINITY);
        s.push(50.0, 7.0);
        s.push(110.0, 2.0);
        s.push(105.0, 100.0);
        s.push(200.0, 1.0);
        let b = s.buckets()[0];
        assert_eq!((b.count, b.max), (2, 2.0));
    }

    #[test]
    fn open_bucket_memory_is_capped() {
        let mut s = Series::new(1e6, 1e9, 10);
        for i in 0..100_000 {
            s.push(f64::from(i), f64::from(i % 100));
        }
        s.push(2e6, 0.0);
        let b = s.buckets()[0];
        assert_eq!(b.count, 100_000);
        assert!((b.median - 49.5).abs() < 15.0, "{}", b.median);
    }

    #[test]
    fn reset_forgets() {
        let mut s = Series::new(60.0, 3600.0, 100);
        for i in 0..100 {
            s.push(f64::from(i) * 15.0, 1.0);
        }
        assert!(!s.is_empty());
        s.reset();
        assert!(s.is_empty());
        assert_eq!(s.span(), 0.0);
    }

    #[test]
    fn medians() {
        assert_eq!(median_in_place(&mut []), None);
        assert_eq!(median_in_place(&mut [3.0]), Some(3.0));
        assert_eq!(median_in_place(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }
}
