//! How values read in messages people see: a signal's [`Unit`] (bytes with binary prefixes,
//! seconds down to microseconds, ratios as percentages), compact durations, and UTC clock
//! times and dates (through jiff). A basic: it imports no room of the house.

/// How a signal's values are written in messages. The caller passes it per signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Unit {
    /// Bytes, written with binary prefixes: `400 MiB`, `2 GiB`.
    Bytes,
    /// Seconds, written `80ms`, `1.5s`, `2m30s`.
    Seconds,
    /// A fraction 0..1, written as a percentage: `85%`.
    Ratio,
    /// A plain number.
    #[default]
    Count,
}

impl Unit {
    /// Writes one value of this unit.
    pub fn format(self, v: f64) -> String {
        if !v.is_finite() {
            return format!("{v}");
        }
        match self {
            Unit::Bytes => format_bytes(v),
            Unit::Seconds => format_seconds(v),
            Unit::Ratio => format!("{}%", number(v * 100.0)),
            Unit::Count => number(v),
        }
    }

    /// Writes a rate given in units per second, per minute when that reads well and per
    /// hour otherwise: `4.4 MiB/min`, `11ms/min`, `0.5%/h`.
    pub fn format_rate(self, per_second: f64) -> String {
        let per_minute = per_second * 60.0;
        let smallest = match self {
            Unit::Bytes => 1024.0,
            Unit::Seconds => 0.001,
            Unit::Ratio => 0.001,
            Unit::Count => 1.0,
        };
        if per_minute.abs() >= smallest {
            format!("{}/min", self.format(per_minute))
        } else {
            format!("{}/h", self.format(per_second * 3600.0))
        }
    }
}

/// Writes a duration compactly: `45s`, `12m`, `5h10m`, `2d3h`; `never` when not finite.
pub fn format_duration(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "never".to_string();
    }
    let sign = if seconds < 0.0 { "-" } else { "" };
    let s = seconds.abs().round() as u64;
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    let body = if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", s / 60)
    } else if s < 86_400 {
        if m == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{m}m")
        }
    } else if h == 0 {
        format!("{d}d")
    } else {
        format!("{d}d{h}h")
    };
    format!("{sign}{body}")
}

/// Writes unix seconds as UTC `HH:MM`.
pub fn format_clock(t: f64) -> String {
    if !t.is_finite() {
        return "??:??".to_string();
    }
    let secs = t.floor() as i64;
    let of_day = secs.rem_euclid(86_400);
    format!("{:02}:{:02}", of_day / 3600, of_day % 3600 / 60)
}

/// Writes unix seconds as UTC `YYYY-MM-DD HH:MM`.
pub fn format_timestamp(t: f64) -> String {
    let Some(at) = Some(t)
        .filter(|t| t.is_finite())
        .and_then(|t| jiff::Timestamp::from_second(t.floor() as i64).ok())
    else {
        return "????-??-?? ??:??".to_string();
    };
    at.strftime("%Y-%m-%d %H:%M").to_string()
}

/// Writes when something began as seen from `now`: `HH:MM` on the same UTC day, the full
/// date otherwise, so "since 05:02" never silently means yesterday.
pub fn format_since(began: f64, now: f64) -> String {
    if began.is_finite()
        && now.is_finite()
        && began.div_euclid(86_400.0) == now.div_euclid(86_400.0)
    {
        format_clock(began)
    } else {
        format_timestamp(began)
    }
}

/// Two significant digits below 10, whole numbers above, trailing zeros dropped.
fn number(x: f64) -> String {
    let a = x.abs();
    let decimals = if a >= 10.0 || a == 0.0 {
        0
    } else {
        (1.0 - a.log10().floor()).clamp(1.0, 9.0) as usize
    };
    let s = format!("{x:.decimals$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    if s == "-0" { "0".to_string() } else { s }
}

fn format_bytes(v: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = v;
    let mut i = 0;
    while x.abs() >= 1024.0 && i + 1 < UNITS.len() {
        x /= 1024.0;
        i += 1;
    }
    format!("{} {}", number(x), UNITS[i])
}

fn format_seconds(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0s".to_string()
    } else if a < 0.001 {
        format!("{}µs", number(v * 1e6))
    } else if a < 1.0 {
        format!("{}ms", number(v * 1e3))
    } else if a < 60.0 {
        format!("{}s", number(v))
    } else {
        format_duration(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_read_like_the_examples() {
        assert_eq!(Unit::Bytes.format(2.0 * 1024.0 * 1024.0 * 1024.0), "2 GiB");
        assert_eq!(Unit::Bytes.format(400.0 * 1024.0 * 1024.0), "400 MiB");
        assert_eq!(Unit::Bytes.format(512.0), "512 B");
        assert_eq!(
            Unit::Bytes.format_rate(4.4 * 1024.0 * 1024.0 / 60.0),
            "4.4 MiB/min"
        );
        assert_eq!(Unit::Seconds.format(0.08), "80ms");
        assert_eq!(Unit::Seconds.format(0.16), "160ms");
        assert_eq!(Unit::Seconds.format(2.0), "2s");
        assert_eq!(Unit::Seconds.format(150.0), "2m");
        assert_eq!(Unit::Seconds.format_rate(0.011 / 60.0), "11ms/min");
        assert_eq!(Unit::Ratio.format(0.85), "85%");
        assert_eq!(Unit::Ratio.format(0.005), "0.5%");
        assert_eq!(Unit::Count.format(20.0), "20");
        assert_eq!(Unit::Count.format(0.0), "0");
        assert_eq!(Unit::Count.format(-0.0001), "-0.0001");
        assert_eq!(Unit::Count.format_rate(0.5 / 3600.0), "0.5/h");
        assert_eq!(Unit::Count.format(f64::NAN), "NaN");
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(45.0), "45s");
        assert_eq!(format_duration(12.0 * 60.0), "12m");
        assert_eq!(format_duration(5.0 * 3600.0 + 600.0), "5h10m");
        assert_eq!(format_duration(6.0 * 3600.0), "6h");
        assert_eq!(format_duration(2.0 * 86_400.0 + 3.0 * 3600.0), "2d3h");
        assert_eq!(format_duration(f64::INFINITY), "never");
    }

    #[test]
    fn clock_and_dates() {
        assert_eq!(format_timestamp(0.0), "1970-01-01 00:00");
        assert_eq!(format_timestamp(-60.0), "1969-12-31 23:59");
        assert_eq!(format_timestamp(1_709_164_800.0), "2024-02-29 00:00");
        assert_eq!(format_clock(1_700_000_000.0), "22:13");
        assert_eq!(format_timestamp(1_700_000_000.0), "2023-11-14 22:13");
        assert_eq!(format_clock(-60.0), "23:59");
        assert_eq!(format_since(1_700_000_000.0, 1_700_000_100.0), "22:13");
        assert_eq!(
            format_since(1_700_000_000.0, 1_700_100_000.0),
            "2023-11-14 22:13"
        );
        assert_eq!(format_clock(f64::NAN), "??:??");
    }
}
