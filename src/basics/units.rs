//! Durations (`500ms`, `30s`, `15m`, `6h`, `1h30m`), sizes (`512KiB`, `2GiB`) and secrets
//! (`env:NAME`, `file:/path`) as written in probe files, and how they print back.
//!
//! Parsing is strict and returns a message fit for a `file:line:col` error. Secret values are
//! wrapped in [`Secret`], whose `Debug` and `Display` never show the value.

use std::fmt;
use std::time::Duration;

/// Parses `500ms`, `30s`, `15m`, `6h`, `2d`, `1w`, and sums such as `1h30m`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let err = || {
        format!(
            "invalid duration {text:?}: expected a number with a unit (ms, s, m, h, d, w), e.g. 30s or 1h30m"
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(err());
    }
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(err)?;
        if digits == 0 {
            return Err(err());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| err())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            _ => return Err(err()),
        };
        rest = &rest[unit_len..];
        total += number * seconds;
    }
    if !total.is_finite() || total > 1e10 {
        return Err(err());
    }
    Ok(Duration::from_secs_f64(total))
}

/// Prints a duration the way a person writes it: `400µs`, `250ms`, `5s`, `1.5s`, `15m`, `2h30m`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    // A loopback run takes a few hundred microseconds: written in ms it would read `0ms`.
    if ms == 0 && !d.is_zero() {
        let us = d.as_micros();
        return if us == 0 {
            format!("{}ns", d.as_nanos())
        } else {
            format!("{us}µs")
        };
    }
    if ms < 1000 {
        if !d.as_micros().is_multiple_of(1000) && ms < 10 {
            return format!("{:.2}ms", d.as_secs_f64() * 1000.0);
        }
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    if secs < 60 {
        return if ms.is_multiple_of(1000) {
            format!("{secs}s")
        } else {
            format!("{:.1}s", d.as_secs_f64())
        };
    }
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// Parses sizes: `512`, `512B`, `64KiB`, `2GiB`, `1.5MB` (decimal units are accepted too).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let err = || {
        format!(
            "invalid size {text:?}: expected a number with a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB), e.g. 512KiB"
        )
    };
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    if split == 0 {
        return Err(err());
    }
    let number: f64 = text[..split].parse().map_err(|_| err())?;
    let factor: f64 = match text[split..].trim() {
        "" | "B" => 1.0,
        "KiB" | "Ki" => 1024.0,
        "MiB" | "Mi" => 1024.0 * 1024.0,
        "GiB" | "Gi" => 1024.0 * 1024.0 * 1024.0,
        "TiB" | "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "KB" | "kB" | "K" | "k" => 1e3,
        "MB" | "M" => 1e6,
        "GB" | "G" => 1e9,
        "TB" | "T" => 1e12,
        _ => return Err(err()),
    };
    let bytes = number * factor;
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(err());
    }
    Ok(bytes.round() as u64)
}

/// Prints a byte count with a binary unit: `512B`, `1.0MiB`, `2.0GiB`.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// A secret value read from `env:NAME` or `file:/path`. It never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Resolves a reference written in a probe file. Literal values are refused so that no
    /// secret ends up committed to git next to the probes.
    pub fn resolve(reference: &str) -> Result<Secret, String> {
        if let Some(name) = reference.strip_prefix("env:") {
            return match std::env::var(name) {
                Ok(value) if !value.is_empty() => Ok(Secret(value)),
                Ok(_) => Err(format!("secret env:{name} is empty")),
                Err(_) => Err(format!("secret env:{name} is not set")),
            };
        }
        if let Some(path) = reference.strip_prefix("file:") {
            return match read_secret_file(path) {
                Ok(value) if !value.trim().is_empty() => {
                    Ok(Secret(value.trim_end_matches(['\r', '\n']).to_string()))
                }
                Ok(_) => Err(format!("secret file:{path} is empty")),
                Err(e) => Err(format!("secret file:{path} {e}")),
            };
        }
        Err("secrets must be written as env:NAME or file:/path, never inline".into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// The largest `file:` secret: tokens, passwords and keys are far smaller, and a bound keeps a
/// mistaken `file:/dev/zero` from reading gigabytes.
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Reads a secret file: a regular file (a FIFO would block `check` forever, a device never
/// ends) of at most [`MAX_SECRET_FILE`] bytes. The error completes "secret file:PATH …".
fn read_secret_file(path: &str) -> Result<String, String> {
    use std::io::Read;
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot be read: {e}"))?;
    if !meta.is_file() {
        return Err("is not a regular file".into());
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(format!(
            "is larger than {} (a secret, not a document)",
            format_size(MAX_SECRET_FILE)
        ));
    }
    // The size is checked again while reading: the file may grow after the metadata was read.
    let file = std::fs::File::open(path).map_err(|e| format!("cannot be read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot be read: {e}"))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "is larger than {} (a secret, not a document)",
            format_size(MAX_SECRET_FILE)
        ));
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".into())
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_files_must_be_small_regular_files() {
        let err = Secret::resolve("file:/dev/zero").unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");
        let dir = std::env::temp_dir().join(format!("slowburn-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let _ = std::fs::remove_file(&fifo);
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            // Opening a FIFO for reading would block until a writer came: never here.
            let err = Secret::resolve(&format!("file:{}", fifo.display())).unwrap_err();
            assert!(err.contains("is not a regular file"), "{err}");
        }
        let big = dir.join("big");
        std::fs::write(&big, vec![b'x'; MAX_SECRET_FILE as usize + 1]).unwrap();
        let err = Secret::resolve(&format!("file:{}", big.display())).unwrap_err();
        assert!(err.contains("is larger than 64.0KiB"), "{err}");
        let ok = dir.join("ok");
        std::fs::write(&ok, "s3cret\n").unwrap();
        let secret = Secret::resolve(&format!("file:{}", ok.display())).unwrap();
        assert_eq!(secret.expose(), "s3cret");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn durations() {
        let cases = [
            ("500ms", 0.5),
            ("30s", 30.0),
            ("15m", 900.0),
            ("6h", 21_600.0),
            ("1h30m", 5400.0),
            ("1.5s", 1.5),
            ("2d", 172_800.0),
        ];
        for (text, secs) in cases {
            assert_eq!(parse_duration(text).unwrap().as_secs_f64(), secs, "{text}");
        }
        for bad in ["", "5", "s", "5x", "-5s", "5 s", "1h-", "ms"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn durations_print_back() {
        for text in ["500ms", "30s", "15m", "6h", "1h30m", "1.5s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn sub_millisecond_durations_keep_their_digits() {
        assert_eq!(format_duration(Duration::from_micros(400)), "400µs");
        assert_eq!(format_duration(Duration::from_nanos(999_999)), "999µs");
        assert_eq!(format_duration(Duration::from_nanos(700)), "700ns");
        assert_eq!(format_duration(Duration::ZERO), "0ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.50ms");
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1MB").unwrap(), 1_000_000);
        assert_eq!(parse_size("100").unwrap(), 100);
        assert!(parse_size("2 gigs").is_err());
        assert!(parse_size("GiB").is_err());
        assert_eq!(format_size(2 << 30), "2.0GiB");
        assert_eq!(format_size(100), "100B");
    }

    #[test]
    fn secrets_never_print_and_refuse_literals() {
        let secret = Secret("hunter2".into());
        assert_eq!(format!("{secret} {secret:?}"), "*** Secret(***)");
        assert!(Secret::resolve("hunter2").unwrap_err().contains("env:NAME"));
        assert!(
            Secret::resolve("env:SLOWBURN_TEST_SURELY_UNSET")
                .unwrap_err()
                .contains("not set")
        );
        let path = std::env::temp_dir().join(format!("slowburn-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\n").unwrap();
        let secret = Secret::resolve(&format!("file:{}", path.display())).unwrap();
        assert_eq!(secret.expose(), "s3cret");
        std::fs::remove_file(path).unwrap();
    }
}
