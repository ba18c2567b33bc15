//! What an answer must be: the `expect:` section validated into [`Expect`] (status codes,
//! classes and ranges; body regexes; JSONPath values; header regexes; a latency limit; a
//! certificate's days left) and the check of one response against it.
//!
//! This file reads a response that `request.rs` has already received and the signals the
//! trace already holds; it sends nothing and follows no redirect.

use std::time::Duration;

use http::HeaderName;
use regex::Regex;

use super::HttpExpectSpec;
use super::request::Response;
use crate::basics::units::{format_duration, parse_duration};
use crate::basics::yaml::Spanned;
use crate::probe::{Failure, SpecError, Trace, first_failure};

#[derive(Debug, Default)]
pub(super) struct Expect {
    status: Vec<StatusRange>,
    status_text: String,
    /// Each must be found in the body.
    body_regex: Vec<Regex>,
    body_not_regex: Option<Regex>,
    json: Vec<(String, serde_json_path::JsonPath, serde_json::Value)>,
    /// Header, regex a value must match, and whether a missing header passes.
    headers: Vec<(HeaderName, Regex, bool)>,
    headers_not: Vec<(HeaderName, Regex)>,
    latency_below: Option<Duration>,
    cert_days_left: Option<f64>,
    /// Allowed versions as `version_number` gives them, with their text for messages.
    http_versions: Vec<(f64, String)>,
    ssl: Option<bool>,
}

impl Expect {
    /// Whether the body must be kept (else it is counted and dropped as it is read).
    pub(super) fn needs_body(&self) -> bool {
        !self.body_regex.is_empty() || self.body_not_regex.is_some() || !self.json.is_empty()
    }

    /// Checks a response against every expectation, recording each result in the trace; the
    /// first failure is the run's.
    pub(super) fn assert(
        &self,
        response: &Response,
        latency: Duration,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let expect = self;
        let status = response.head.status.as_u16();
        let mut failures = Vec::new();
        failures.push(trace.check(
            "status",
            if expect.status.iter().any(|r| (r.0..=r.1).contains(&status)) {
                Ok(format!("{status} in [{}]", expect.status_text))
            } else {
                Err(Failure::Status {
                    got: status,
                    expected: expect.status_text.clone(),
                })
            },
        ));
        if !expect.http_versions.is_empty() {
            let got = super::request::version_number(response.head.version);
            failures.push(trace.check(
                "http_version",
                match expect.http_versions.iter().find(|(v, _)| *v == got) {
                    Some((_, text)) => Ok(format!("{text} allowed")),
                    None => Err(Failure::Http(format!(
                        "version {:?} not in [{}]",
                        response.head.version,
                        expect
                            .http_versions
                            .iter()
                            .map(|(_, t)| t.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))),
                },
            ));
        }
        if let Some(want) = expect.ssl {
            let got = trace
                .signals
                .iter()
                .any(|(n, v)| *n == "http_ssl" && *v == 1.0);
            failures.push(trace.check(
                "ssl",
                match (want, got) {
                    (true, true) => Ok("answered over TLS".into()),
                    (false, false) => Ok("answered without TLS".into()),
                    (true, false) => Err(Failure::Http("the final answer came without TLS".into())),
                    (false, true) => Err(Failure::Http("the final answer came over TLS".into())),
                },
            ));
        }
        let text = String::from_utf8_lossy(&response.body);
        let body_checks = failures.len();
        for re in &expect.body_regex {
            failures.push(trace.check(
                "body_regex",
                if re.is_match(&text) {
                    Ok(format!("regex {:?} found", re.as_str()))
                } else {
                    Err(Failure::Body(format!("regex {:?} not found", re.as_str())))
                },
            ));
        }
        if let Some(re) = &expect.body_not_regex {
            failures.push(trace.check(
                "body_not_regex",
                match re.find(&text) {
                    None => Ok(format!("regex {:?} absent", re.as_str())),
                    Some(m) => Err(Failure::Body(format!(
                        "regex {:?} found at byte {}",
                        re.as_str(),
                        m.start()
                    ))),
                },
            ));
        }
        let body_failed = failures[body_checks..].iter().any(Option::is_some);
        if !expect.json.is_empty() {
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&response.body);
            for (text_path, path, want) in &expect.json {
                let result = match &parsed {
                    Err(e) => Err(Failure::Json(format!("body is not JSON: {e}"))),
                    Ok(doc) => check_json(doc, text_path, path, want),
                };
                failures.push(trace.check("json", result));
            }
        }
        let header_checks = failures.len();
        for (name, re, allow_missing) in &expect.headers {
            let values: Vec<&str> = response
                .head
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            failures.push(trace.check(
                "header",
                if values.is_empty() && *allow_missing {
                    Ok(format!("{name} absent (allowed)"))
                } else if values.is_empty() {
                    Err(Failure::Header(format!("{name} missing")))
                } else if values.iter().any(|v| re.is_match(v)) {
                    Ok(format!("{name} matches {:?}", re.as_str()))
                } else {
                    Err(Failure::Header(format!(
                        "{name}: {:?} does not match {:?}",
                        values.join(", "),
                        re.as_str()
                    )))
                },
            ));
        }
        for (name, re) in &expect.headers_not {
            let matched = response
                .head
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find(|v| re.is_match(v));
            failures.push(trace.check(
                "header_not",
                match matched {
                    None => Ok(format!("no {name} value matches {:?}", re.as_str())),
                    Some(value) => Err(Failure::Header(format!(
                        "{name}: {value:?} matches {:?}",
                        re.as_str()
                    ))),
                },
            ));
        }
        // blackbox_exporter's `probe_failed_due_to_regex`: whether a body or header regex (or
        // a required header's absence) failed the run; as in blackbox, only when the status
        // was right, since a wrong status fails the run first.
        let header_failed = failures[header_checks..].iter().any(Option::is_some);
        let regex_failed = failures[0].is_none() && (body_failed || header_failed);
        trace.signal("failed_due_to_regex", f64::from(u8::from(regex_failed)));
        if let Some(limit) = expect.latency_below {
            failures.push(trace.check(
                "latency_below",
                if latency < limit {
                    Ok(format!(
                        "{} below {}",
                        format_duration(latency),
                        format_duration(limit)
                    ))
                } else {
                    Err(Failure::Latency {
                        took: latency,
                        limit,
                    })
                },
            ));
        }
        if let Some(min_days) = expect.cert_days_left {
            let days = trace
                .signals
                .iter()
                .find(|(n, _)| *n == "cert_days_left")
                .map(|(_, v)| *v);
            failures.push(trace.check(
                "cert_days_left",
                match days {
                    None => Err(Failure::Cert("no certificate (not https)".into())),
                    Some(days) if days >= min_days => Ok(format!("{days:.1} days left")),
                    Some(days) => Err(Failure::Cert(format!(
                        "expires in {days:.1} days, less than {min_days}"
                    ))),
                },
            ));
        }
        first_failure(failures)
    }
}

/// `HTTP/1.1`, `HTTP/2.0` or `HTTP/2` as the number `version_number` gives.
fn parse_version(text: &str) -> Option<f64> {
    match text.to_ascii_uppercase().as_str() {
        "HTTP/0.9" => Some(0.9),
        "HTTP/1.0" => Some(1.0),
        "HTTP/1.1" => Some(1.1),
        "HTTP/2" | "HTTP/2.0" => Some(2.0),
        "HTTP/3" | "HTTP/3.0" => Some(3.0),
        _ => None,
    }
}

/// Validates `expect:`, pushing every mistake into `errors` (the probe is refused if any).
pub(super) fn build_expect(spec: HttpExpectSpec, errors: &mut Vec<SpecError>) -> Expect {
    let mut expect = Expect::default();
    match &spec.status {
        None => {
            expect.status = vec![StatusRange(200, 299)];
            expect.status_text = "2xx".into();
        }
        Some(list) => {
            for status in list {
                match parse_status(status) {
                    Ok(range) => expect.status.push(range),
                    Err(m) => errors.push(SpecError::new(status.pos, "expect.status", m)),
                }
            }
            expect.status_text = list
                .iter()
                .map(|s| s.value.as_str())
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    let regex =
        |field: &str, text: &Spanned<String>, errors: &mut Vec<SpecError>| match Regex::new(text) {
            Ok(re) => Some(re),
            Err(e) => {
                errors.push(SpecError::new(
                    text.pos,
                    field,
                    format!("invalid regex: {}", one_line(&e.to_string())),
                ));
                None
            }
        };
    expect.body_regex = (spec.body_regex.iter())
        .chain(&spec.body_regex_also)
        .filter_map(|r| regex("expect.body_regex", r, errors))
        .collect();
    expect.body_not_regex = spec
        .body_not_regex
        .as_ref()
        .and_then(|r| regex("expect.body_not_regex", r, errors));
    for (path, want) in spec.json.iter().flatten() {
        match serde_json_path::JsonPath::parse(path) {
            Ok(parsed) => expect.json.push((path.value.clone(), parsed, want.clone())),
            Err(e) => errors.push(SpecError::new(
                path.pos,
                "expect.json",
                format!("invalid JSONPath {:?}: {e}", path.value),
            )),
        }
    }
    for (field, map) in [
        ("expect.headers", &spec.headers),
        ("expect.headers_if_present", &spec.headers_if_present),
        ("expect.headers_not", &spec.headers_not),
    ] {
        for (name, re) in map.iter().flatten() {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                errors.push(SpecError::new(
                    name.pos,
                    field,
                    format!("invalid header name {:?}", name.value),
                ));
                continue;
            };
            if let Some(re) = regex(field, re, errors) {
                match field {
                    "expect.headers_not" => expect.headers_not.push((header, re)),
                    "expect.headers" => expect.headers.push((header, re, false)),
                    _ => expect.headers.push((header, re, true)),
                }
            }
        }
    }
    if let Some(limit) = &spec.latency_below {
        match parse_duration(limit) {
            Ok(d) => expect.latency_below = Some(d),
            Err(m) => errors.push(SpecError::new(limit.pos, "expect.latency_below", m)),
        }
    }
    for version in spec.http_versions.iter().flatten() {
        match parse_version(version) {
            Some(number) => expect.http_versions.push((number, version.value.clone())),
            None => errors.push(SpecError::new(
                version.pos,
                "expect.http_versions",
                format!(
                    "unknown HTTP version {:?}: write HTTP/1.0, HTTP/1.1, HTTP/2.0 or HTTP/3.0",
                    version.value
                ),
            )),
        }
    }
    expect.ssl = spec.ssl;
    if let Some(days) = &spec.cert_days_left {
        if days.value.is_finite() && days.value >= 0.0 {
            expect.cert_days_left = Some(days.value);
        } else {
            errors.push(SpecError::new(
                days.pos,
                "expect.cert_days_left",
                "must be a number of days ≥ 0",
            ));
        }
    }
    expect
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct StatusRange(u16, u16);

fn parse_status(text: &str) -> Result<StatusRange, String> {
    let err = || {
        format!(
            "invalid status {text:?}: expected a code (200), a class (2xx) or a range (200-299)"
        )
    };
    let text = text.trim();
    if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
        let digit: u16 = class.parse().map_err(|_| err())?;
        return if (1..=5).contains(&digit) {
            Ok(StatusRange(digit * 100, digit * 100 + 99))
        } else {
            Err(err())
        };
    }
    let code = |s: &str| {
        s.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    match text.split_once('-') {
        Some((lo, hi)) => match (code(lo), code(hi)) {
            (Some(lo), Some(hi)) if lo <= hi => Ok(StatusRange(lo, hi)),
            _ => Err(err()),
        },
        None => code(text).map(|c| StatusRange(c, c)).ok_or_else(err),
    }
}

fn check_json(
    doc: &serde_json::Value,
    text_path: &str,
    path: &serde_json_path::JsonPath,
    want: &serde_json::Value,
) -> Result<String, Failure> {
    let found = path.query(doc).all();
    if found.is_empty() {
        return Err(Failure::Json(format!("{text_path} matched nothing")));
    }
    match found.iter().find(|got| !json_equal(got, want)) {
        None => Ok(format!("{text_path} is {want}")),
        Some(got) => Err(Failure::Json(format!(
            "{text_path} is {got}, expected {want}"
        ))),
    }
}

/// Equality that treats `5` and `5.0` as the same number, and a string expectation as
/// matching a scalar that prints the same (`"5"` matches `5`).
fn json_equal(got: &serde_json::Value, want: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (got, want) {
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        (Value::Number(_) | Value::Bool(_), Value::String(s)) => {
            s.as_str() == got.to_string().as_str()
        }
        _ => got == want,
    }
}

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_specs() {
        assert_eq!(parse_status("200"), Ok(StatusRange(200, 200)));
        assert_eq!(parse_status("2xx"), Ok(StatusRange(200, 299)));
        assert_eq!(parse_status("200-204"), Ok(StatusRange(200, 204)));
        for bad in ["20", "9xx", "600", "300-200", "abc"] {
            assert!(parse_status(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn json_equality_is_lenient_on_number_forms() {
        use serde_json::json;
        assert!(json_equal(&json!(5), &json!(5.0)));
        assert!(json_equal(&json!(5), &json!("5")));
        assert!(json_equal(&json!("up"), &json!("up")));
        assert!(!json_equal(&json!("down"), &json!("up")));
    }
}
