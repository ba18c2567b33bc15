//! The seasonal memory benchmark: 10,000 `seasonal:` series (the contract form, a weekly
//! profile judged over 10 minutes, one sample a minute) fed eight days of orders in this
//! process, the way the results task feeds them: minute by minute, every series in turn.
//! It reports what they hold once every profile is full (the process' RSS growth, so the
//! allocator's overhead counts) and the cost per sample.
//!
//! ```text
//! cargo bench --bench seasonal                       # 10,000 series, 8 days (~1 min)
//! cargo bench --bench seasonal -- --series 1000 --days 8
//! ```

use std::time::Instant;

use clap::Parser;
use slowburn::detect::{DetectorSpec, SeasonalSpec, SignalDetectors, Unit};

#[derive(Parser, Debug)]
#[command(name = "seasonal", about = "memory and cost of many seasonal series")]
struct Options {
    /// Seasonal series.
    #[arg(long, default_value_t = 10_000)]
    series: usize,
    /// Days of 1-minute samples fed (a weekly profile is full after 7).
    #[arg(long, default_value_t = 8)]
    days: u32,
    /// Accepted for `cargo bench` (which passes `--bench`).
    #[arg(long, hide = true)]
    bench: bool,
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Orders a minute at `t` for shop `i`: a dinner peak, quiet nights, shops of every size.
fn orders(i: usize, t: f64, noise: &mut u64) -> f64 {
    let hour = t.rem_euclid(86_400.0) / 3600.0;
    let scale = 2.0 + (i % 200) as f64;
    let usual = scale * (0.05 + (-((hour - 19.0) / 1.6).powi(2)).exp());
    *noise = noise
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let jitter = ((*noise >> 33) as f64 / (1u64 << 31) as f64 - 0.5) * 2.0 * usual.sqrt();
    (usual + jitter).round().max(0.0)
}

fn main() {
    let options = Options::parse();
    let before = rss_bytes();
    let spec = |i: usize| {
        DetectorSpec::new(&format!("value{{shop=\"{i}\"}}"), Unit::Count)
            .with_interval(60.0)
            .with_seasonal(SeasonalSpec {
                below: Some(0.3),
                interval: 60.0,
                ..SeasonalSpec::new(7.0 * 86_400.0, 600.0)
            })
    };
    let mut series: Vec<SignalDetectors> = (0..options.series)
        .map(|i| SignalDetectors::new(spec(i)).expect("the contract form is valid"))
        .collect();
    let built = rss_bytes();
    let minutes = options.days as usize * 1440;
    let start = 1_699_833_600.0;
    let mut noise = 7u64;
    let mut pages = 0usize;
    let began = Instant::now();
    for m in 0..minutes {
        let t = start + m as f64 * 60.0;
        for (i, detectors) in series.iter_mut().enumerate() {
            pages += detectors.observe(t, orders(i, t, &mut noise), false).len();
        }
    }
    let spent = began.elapsed().as_secs_f64();
    let after = rss_bytes();
    let samples = (minutes * options.series) as f64;
    let learning = (series.iter())
        .filter(|d| (d.state().notes.iter()).any(|(_, n)| n.starts_with("learning")))
        .count();
    println!(
        "{} seasonal series (weekly profile, for: 10m, 1-minute samples), {} days fed",
        options.series, options.days
    );
    println!(
        "RSS: {:.1} MiB before, {:.1} MiB built, {:.1} MiB after; {:.0} bytes per series once full",
        before as f64 / 1048576.0,
        built as f64 / 1048576.0,
        after as f64 / 1048576.0,
        after.saturating_sub(before) as f64 / options.series as f64
    );
    println!(
        "{samples:.0} samples in {spent:.1} s: {:.0} ns per sample (detector table included); \
         {} verdicts; {learning} series still learning",
        spent / samples * 1e9,
        pages
    );
}
