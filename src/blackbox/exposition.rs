//! One probe's result in blackbox_exporter's exposition: its family names, help texts and
//! value meanings, families sorted by name as blackbox writes them, and every family
//! blackbox always writes present on a failed run too, with blackbox's value (0, or -1 for an
//! unknown content length), so `probe_http_status_code >= 400` and friends keep answering.
//!
//! It reads an [`Outcome`] and the signals the kinds record for this purpose; it runs nothing.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::Prober;
use crate::probe::net::tls_version_name;
use crate::probe::{Failure, Outcome};

/// One sample: its family's name and help text, its label text and its value.
struct Sample {
    name: &'static str,
    help: &'static str,
    labels: Cow<'static, str>,
    value: f64,
}

/// The samples of one probe, before they are written: one flat list, sorted by family and
/// label text when written, so a run costs one allocation here and not one per family.
struct Families(Vec<Sample>);

impl Families {
    fn new() -> Self {
        Families(Vec::with_capacity(32))
    }

    fn gauge(&mut self, name: &'static str, help: &'static str, value: f64) {
        self.labelled(name, help, Cow::Borrowed(""), value);
    }

    fn labelled(
        &mut self,
        name: &'static str,
        help: &'static str,
        labels: Cow<'static, str>,
        value: f64,
    ) {
        self.0.push(Sample {
            name,
            help,
            labels,
            value,
        });
    }

    /// Families sorted by name, each with its HELP and TYPE lines once, its samples sorted
    /// by label text, as blackbox writes them.
    fn write(mut self) -> String {
        self.0
            .sort_by(|a, b| (a.name, &a.labels).cmp(&(b.name, &b.labels)));
        // An http run writes about 2.5 KB: room for it without growing.
        let mut out = String::with_capacity(4096);
        let mut family = "";
        for sample in &self.0 {
            if sample.name != family {
                family = sample.name;
                let _ = writeln!(
                    out,
                    "# HELP {family} {}\n# TYPE {family} gauge",
                    sample.help
                );
            }
            out.push_str(family);
            if !sample.labels.is_empty() {
                out.push('{');
                out.push_str(&sample.labels);
                out.push('}');
            }
            out.push(' ');
            write_value(&mut out, sample.value);
            out.push('\n');
        }
        out
    }
}

/// The label text `phase="NAME"`, without formatting for the phases blackbox writes.
fn phase_label(name: &'static str) -> Cow<'static, str> {
    Cow::Borrowed(match name {
        "resolve" => "phase=\"resolve\"",
        "connect" => "phase=\"connect\"",
        "tls" => "phase=\"tls\"",
        "processing" => "phase=\"processing\"",
        "transfer" => "phase=\"transfer\"",
        "request" => "phase=\"request\"",
        "setup" => "phase=\"setup\"",
        "rtt" => "phase=\"rtt\"",
        "check" => "phase=\"check\"",
        _ => return Cow::Owned(format!("phase=\"{name}\"")),
    })
}

/// The exposition of one run of `prober`.
pub fn render(prober: Prober, outcome: &Outcome) -> String {
    let signal = |name: &str| outcome.signal(name);
    let phase = |name: &str| {
        outcome
            .phases
            .iter()
            .find(|(p, _)| *p == name)
            .map_or(0.0, |(_, d)| d.as_secs_f64())
    };
    let mut f = Families::new();
    f.gauge(
        "probe_success",
        "Displays whether or not the probe was a success",
        f64::from(u8::from(outcome.success)),
    );
    f.gauge(
        "probe_duration_seconds",
        "Returns how long the probe took to complete in seconds",
        outcome.duration.as_secs_f64(),
    );
    // blackbox writes none of the three when its proxy resolves the target
    // (`skip_resolve_phase_with_proxy`).
    if signal("resolve_skipped").is_none() {
        // blackbox's meaning: the time taken to resolve the target's name (0 for an address;
        // a dns probe's target is its server, given as an address).
        let lookup = match prober {
            Prober::Dns => 0.0,
            _ => phase("resolve"),
        };
        f.gauge(
            "probe_dns_lookup_time_seconds",
            "Returns the time taken for probe dns lookup in seconds",
            lookup,
        );
        // 0 when the target did not resolve to an address of an allowed family.
        f.gauge(
            "probe_ip_protocol",
            "Specifies whether probe ip protocol is IP4 or IP6",
            signal("ip_protocol").unwrap_or(0.0),
        );
        f.gauge(
            "probe_ip_addr_hash",
            "Specifies the hash of IP address. It's useful to detect if the IP address changes.",
            signal("ip_addr_hash").unwrap_or(0.0),
        );
    }
    match prober {
        Prober::Http => http(&mut f, outcome, &phase),
        Prober::Tcp => {
            f.gauge(
                "probe_failed_due_to_regex",
                "Indicates if probe failed due to regex",
                signal("failed_due_to_regex").unwrap_or(0.0),
            );
        }
        Prober::Dns => dns(&mut f, outcome, &phase),
        Prober::Icmp => icmp(&mut f, outcome, &phase),
        Prober::Grpc => grpc(&mut f, outcome, &phase),
    }
    // blackbox's dns prober writes no TLS families, even over TLS (`dns_over_tls`).
    if prober != Prober::Dns {
        tls(&mut f, outcome);
    }
    f.write()
}

fn http(f: &mut Families, outcome: &Outcome, phase: &dyn Fn(&str) -> f64) {
    let signal = |name: &str| outcome.signal(name).unwrap_or(0.0);
    // A run that never resolved its target has only the resolve phase, as in blackbox.
    let resolved = outcome.phases.iter().any(|(p, _)| *p == "connect");
    let phases: &[&str] = if resolved {
        &["resolve", "connect", "tls", "processing", "transfer"]
    } else {
        &["resolve"]
    };
    // blackbox times a handshake only when it completes: a refused one reads 0.
    let handshake_failed = matches!(outcome.failure, Some(Failure::Tls(_)));
    // When its proxy resolves the target, blackbox writes a resolve phase only for the
    // requests after a redirect.
    let no_resolve = outcome.signal("resolve_skipped").is_some() && signal("redirects") == 0.0;
    for &name in phases.iter().filter(|n| !(no_resolve && **n == "resolve")) {
        let spent = if name == "tls" && handshake_failed {
            0.0
        } else {
            phase(name)
        };
        f.labelled(
            "probe_http_duration_seconds",
            "Duration of http request by phase, summed over all redirects",
            phase_label(name),
            spent,
        );
    }
    let rows: [(&'static str, &'static str, &str); 7] = [
        (
            "probe_http_status_code",
            "Response HTTP status code",
            "status",
        ),
        (
            "probe_http_content_length",
            "Length of http content response",
            "content_length",
        ),
        (
            "probe_http_uncompressed_body_length",
            "Length of uncompressed response body",
            "body_bytes",
        ),
        (
            "probe_http_redirects",
            "The number of redirects",
            "redirects",
        ),
        (
            "probe_http_ssl",
            "Indicates if SSL was used for the final redirect",
            "http_ssl",
        ),
        (
            "probe_http_version",
            "Returns the version of HTTP of the probe response",
            "http_version",
        ),
        (
            "probe_failed_due_to_regex",
            "Indicates if probe failed due to regex",
            "failed_due_to_regex",
        ),
    ];
    for (name, help, source) in rows {
        // blackbox writes 0 for a length it never got; -1 only for an answer without one.
        f.gauge(name, help, signal(source));
    }
}

fn dns(f: &mut Families, outcome: &Outcome, phase: &dyn Fn(&str) -> f64) {
    let signal = |name: &str| outcome.signal(name).unwrap_or(0.0);
    // The dns kind times the query as its `resolve` phase; blackbox calls that `request` and
    // `resolve` the lookup of the server's name (none: it is an address). Its `connect` is
    // the dial, which over TLS includes the handshake.
    for (name, value) in [
        ("resolve", 0.0),
        ("connect", phase("connect") + phase("tls")),
        ("request", phase("resolve")),
    ] {
        f.labelled(
            "probe_dns_duration_seconds",
            "Duration of DNS request by phase",
            phase_label(name),
            value,
        );
    }
    for (name, help, source) in [
        (
            "probe_dns_answer_rrs",
            "Returns number of entries in the answer resource record list",
            "answer_rrs",
        ),
        (
            "probe_dns_authority_rrs",
            "Returns number of entries in the authority resource record list",
            "authority_rrs",
        ),
        (
            "probe_dns_additional_rrs",
            "Returns number of entries in the additional resource record list",
            "additional_rrs",
        ),
        (
            "probe_dns_query_succeeded",
            "Displays whether or not the query was executed successfully",
            "query_succeeded",
        ),
    ] {
        f.gauge(name, help, signal(source));
    }
}

/// The TLS families, written when a handshake completed (as blackbox does).
fn icmp(f: &mut Families, outcome: &Outcome, phase: &dyn Fn(&str) -> f64) {
    for name in ["resolve", "setup", "rtt"] {
        f.labelled(
            "probe_icmp_duration_seconds",
            "Duration of icmp request by phase",
            phase_label(name),
            phase(name),
        );
    }
    if let Some(hops) = outcome.signal("hop_limit") {
        f.gauge(
            "probe_icmp_reply_hop_limit",
            "Replied packet hop limit (TTL for ipv4)",
            hops,
        );
    }
}

fn grpc(f: &mut Families, outcome: &Outcome, phase: &dyn Fn(&str) -> f64) {
    for name in ["resolve", "check"] {
        f.labelled(
            "probe_grpc_duration_seconds",
            "Duration of gRPC request by phase",
            phase_label(name),
            phase(name),
        );
    }
    let serving = outcome.signal("serving_status");
    for (i, status) in ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"]
        .iter()
        .enumerate()
    {
        f.labelled(
            "probe_grpc_healthcheck_response",
            "Response HealthCheck response",
            format!("serving_status=\"{status}\"").into(),
            f64::from(u8::from(serving == Some(i as f64))),
        );
    }
    f.gauge(
        "probe_grpc_ssl",
        "Indicates if SSL was used for the connection",
        f64::from(u8::from(outcome.signal("tls_version").is_some())),
    );
    f.gauge(
        "probe_grpc_status_code",
        "Response gRPC status code",
        // Without an answer, the code a gRPC client reports: DEADLINE_EXCEEDED for a run cut
        // off, UNAVAILABLE for a server that could not be reached or spoke no gRPC.
        outcome
            .signal("grpc_status")
            .unwrap_or(match &outcome.failure {
                None => 0.0,
                Some(Failure::Timeout { .. }) => 4.0,
                Some(_) => 14.0,
            }),
    );
    // blackbox's grpc prober writes the expiry always, 0 without TLS.
    if outcome.signal("cert_expiry").is_none() {
        f.gauge(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            0.0,
        );
    }
}

fn tls(f: &mut Families, outcome: &Outcome) {
    let Some(version) = outcome.signal("tls_version") else {
        return;
    };
    f.labelled(
        "probe_tls_version_info",
        "Returns the TLS version used or NaN when unknown",
        format!("version=\"{}\"", tls_version_name(version)).into(),
        1.0,
    );
    if let Some(cert) = &outcome.certificate {
        f.labelled(
            "probe_ssl_last_chain_info",
            "Contains SSL leaf certificate information",
            format!(
                "fingerprint_sha256=\"{}\",issuer=\"{}\",subject=\"{}\",subjectalternative=\"{}\"",
                cert.fingerprint_sha256,
                label_value(&cert.issuer),
                label_value(&cert.subject),
                label_value(&cert.subject_alternative)
            )
            .into(),
            1.0,
        );
    }
    if let Some(expiry) = outcome.signal("cert_expiry") {
        f.gauge(
            "probe_ssl_earliest_cert_expiry",
            "Returns last SSL chain expiry in unixtime",
            expiry,
        );
        f.gauge(
            "probe_ssl_last_chain_expiry_timestamp_seconds",
            "Returns last SSL chain expiry in timestamp",
            expiry,
        );
    }
}

/// A label value escaped for the text format (backslash, quote, newline).
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value as Go's Prometheus client writes it (`strconv.FormatFloat(v, 'g', -1)`):
/// the shortest digits, in exponent form when the exponent is below -4 or at least 6
/// (`1e-05`, `3.668918509e+09`), plainly otherwise (`8196`, `0.001969286`). Written into
/// `out` from one formatting of the digits, without a string of its own.
fn write_value(out: &mut String, v: f64) {
    if v.is_nan() {
        return out.push_str("NaN");
    }
    if v.is_infinite() {
        return out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    }
    if v.fract() == 0.0 && v.abs() < 1e6 {
        return out.push_str(itoa::Buffer::new().format(v as i64));
    }
    // Rust's `{:e}` gives the shortest digits that read back as `v`, as Go's -1 precision.
    let mut scientific = Digits::default();
    let _ = write!(scientific, "{v:e}");
    let text = scientific.as_str();
    let Some((mantissa, exp)) = text.split_once('e') else {
        return out.push_str(text);
    };
    let exponent: i32 = exp.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        let _ = write!(out, "{mantissa}e{sign}{:02}", exponent.abs());
        return;
    }
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    if negative {
        out.push('-');
    }
    let digits = mantissa.bytes().filter(|b| b.is_ascii_digit());
    if exponent < 0 {
        out.push_str("0.");
        (1..-exponent).for_each(|_| out.push('0'));
        digits.for_each(|d| out.push(char::from(d)));
        return;
    }
    let whole = exponent as usize + 1;
    let mut written = 0;
    for d in digits {
        if written == whole {
            out.push('.');
        }
        out.push(char::from(d));
        written += 1;
    }
    (written..whole).for_each(|_| out.push('0'));
}

/// A stack buffer for the digits of one `f64` in exponent form (at most 24 bytes).
#[derive(Default)]
struct Digits {
    bytes: [u8; 32],
    len: usize,
}

impl Digits {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("NaN")
    }
}

impl std::fmt::Write for Digits {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(std::fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    fn format_value(v: f64) -> String {
        let mut out = String::new();
        super::write_value(&mut out, v);
        out
    }

    #[test]
    fn values_are_written_as_go_writes_them() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-1.0), "-1");
        assert_eq!(format_value(0.0), "0");
        assert_eq!(format_value(1.1), "1.1");
        assert_eq!(format_value(4.2984e-05), "4.2984e-05");
        assert_eq!(format_value(0.001969286), "0.001969286");
        assert_eq!(format_value(3668918509.0), "3.668918509e+09");
        assert_eq!(format_value(8196.0), "8196");
        assert_eq!(format_value(1e6), "1e+06");
        assert_eq!(format_value(0.0001), "0.0001");
        assert_eq!(format_value(1.7e9), "1.7e+09");
        assert_eq!(format_value(-0.5), "-0.5");
        assert_eq!(format_value(999999.5), "999999.5");
        assert_eq!(format_value(-1.5e-7), "-1.5e-07");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(5e-324), "5e-324");
        assert_eq!(format_value(f64::NAN), "NaN");
        assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    }

    #[test]
    fn plain_values_have_the_digits_rust_prints() {
        for i in 1..2000u32 {
            for scale in [1e-4, 1e-3, 0.01, 0.1, 1.0, 10.0, 100.0, 1e3, 1e4] {
                let v = f64::from(i) / 7.0 * scale;
                if !(1e-4..1e6).contains(&v) || v.fract() == 0.0 {
                    continue;
                }
                assert_eq!(format_value(v), format!("{v}"), "{v:e}");
                assert_eq!(format_value(-v), format!("{}", -v), "{v:e}");
            }
        }
    }
}
