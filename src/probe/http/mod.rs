//! The `http:` probe: one request over a fresh connection, with blackbox_exporter's phases
//! (`resolve`, `connect`, `tls`, `processing`, `transfer`) timed separately.
//!
//! It speaks HTTP/1.1 through hyper over our own connection (see `net.rs`) rather than through
//! a pooled client, because connect and TLS must be measured on every run and split from each
//! other. Redirects are followed by hand so each hop is timed and counted. The body is read up
//! to `max_body` and no further, so a 10 GB answer costs 1 MiB.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use regex::Regex;
use rustls::ClientConfig;
use serde::Deserialize;

use super::net::{self, Resolver, TlsSpec};
use super::{BuildContext, Failure, SpecError, Trace, first_failure};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::units::{Secret, format_duration, format_size, parse_duration, parse_size};
use crate::basics::yaml::{Pos, Spanned};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// `http:` as written in a probe file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: Spanned<String>,
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub body: Option<String>,
    pub basic_auth: Option<BasicAuthSpec>,
    pub bearer_token: Option<Spanned<String>>,
    pub follow_redirects: Option<Spanned<FollowSpec>>,
    pub max_redirects: Option<u32>,
    pub max_body: Option<Spanned<String>>,
    pub tls_config: Option<TlsSpec>,
    pub resolver: Option<Vec<Spanned<String>>>,
    pub expect: Option<HttpExpectSpec>,
}

/// `follow_redirects:` as written: `true`, `false` or `same_host`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowSpec {
    Bool(bool),
    Word(Follow),
}

impl<'de> Deserialize<'de> for FollowSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = FollowSpec;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false or same_host")
            }
            fn visit_bool<E>(self, v: bool) -> Result<FollowSpec, E> {
                Ok(FollowSpec::Bool(v))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<FollowSpec, E> {
                match v {
                    "same_host" => Ok(FollowSpec::Word(Follow::SameHost)),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Which redirects a probe follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    Never,
    Always,
    /// Only to the host name of the configured URL (any scheme or port); a redirect to
    /// another host fails the run with reason `redirect`.
    SameHost,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub username: String,
    pub password: Spanned<String>,
}

/// `http.expect:` as written in a probe file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpExpectSpec {
    pub status: Option<Vec<Spanned<String>>>,
    pub body_regex: Option<Spanned<String>>,
    pub body_not_regex: Option<Spanned<String>>,
    pub json: Option<BTreeMap<Spanned<String>, serde_json::Value>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub latency_below: Option<Spanned<String>>,
    pub cert_days_left: Option<Spanned<f64>>,
}

/// A built http probe.
#[derive(Debug)]
pub struct HttpProbe {
    url: Uri,
    method: Method,
    /// Each header and whether it is a credential: `Authorization`, `Proxy-Authorization`,
    /// `Cookie` and any header whose value is a secret are sent to the configured origin only.
    headers: Vec<(HeaderName, HeaderValue, Credential)>,
    body: Bytes,
    follow: Follow,
    max_redirects: u32,
    max_body: u64,
    tls: Arc<ClientConfig>,
    tls_server_name: Option<String>,
    resolver: Resolver,
    expect: Expect,
}

#[derive(Debug, Default)]
struct Expect {
    status: Vec<StatusRange>,
    status_text: String,
    body_regex: Option<Regex>,
    body_not_regex: Option<Regex>,
    json: Vec<(String, serde_json_path::JsonPath, serde_json::Value)>,
    headers: Vec<(HeaderName, Regex)>,
    latency_below: Option<Duration>,
    cert_days_left: Option<f64>,
}

impl Expect {
    fn needs_body(&self) -> bool {
        self.body_regex.is_some() || self.body_not_regex.is_some() || !self.json.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct StatusRange(u16, u16);

/// Whether a header may cross a redirect to another origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Credential {
    No,
    Yes,
}

/// Headers that carry credentials whatever their value, as curl and Go's client treat them.
fn is_credential_header(name: &HeaderName) -> bool {
    name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

/// Scheme, host (lower case) and port: credentials go to the configured origin and no other,
/// so a redirect from https to http on the same host drops them too (they would travel in
/// cleartext).
fn origin(url: &Uri) -> (String, String, u16) {
    let https = url.scheme() == Some(&http::uri::Scheme::HTTPS);
    (
        url.scheme_str().unwrap_or("http").to_ascii_lowercase(),
        url.host().unwrap_or_default().to_ascii_lowercase(),
        url.port_u16().unwrap_or(if https { 443 } else { 80 }),
    )
}

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

impl HttpProbe {
    /// Validates a spec and builds the probe, returning every error found.
    pub fn new(spec: Spanned<HttpSpec>, ctx: &BuildContext) -> Result<HttpProbe, Vec<SpecError>> {
        let pos = spec.pos;
        let spec = spec.value;
        let mut errors = Vec::new();
        let mut fail = |pos: Pos, field: &str, message: String| {
            errors.push(SpecError::new(pos, field, message))
        };

        let url = match parse_url(&spec.url) {
            Ok(url) => Some(url),
            Err(m) => {
                fail(spec.url.pos, "url", m);
                None
            }
        };
        let method = match &spec.method {
            None => Method::GET,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes()).unwrap_or_else(|_| {
                fail(
                    m.pos,
                    "method",
                    format!("invalid HTTP method {:?}", m.value),
                );
                Method::GET
            }),
        };
        let mut headers = Vec::new();
        for (name, value) in &spec.headers {
            let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
                fail(
                    name.pos,
                    "headers",
                    format!("invalid header name {:?}", name.value),
                );
                continue;
            };
            let secret = value.starts_with("env:") || value.starts_with("file:");
            let text = if secret {
                match Secret::resolve(value) {
                    Ok(secret) => secret.expose().to_string(),
                    Err(m) => {
                        fail(value.pos, &format!("headers.{}", name.value), m);
                        continue;
                    }
                }
            } else {
                value.value.clone()
            };
            match HeaderValue::from_str(&text) {
                Ok(mut v) => {
                    let credential = secret || is_credential_header(&header);
                    v.set_sensitive(credential);
                    let credential = if credential {
                        Credential::Yes
                    } else {
                        Credential::No
                    };
                    headers.push((header, v, credential));
                }
                Err(_) => fail(
                    value.pos,
                    &format!("headers.{}", name.value),
                    "invalid header value".into(),
                ),
            }
        }
        if let Some(auth) = &spec.basic_auth {
            match Secret::resolve(&auth.password) {
                Ok(password) => {
                    let token =
                        base64(format!("{}:{}", auth.username, password.expose()).as_bytes());
                    if let Ok(mut v) = HeaderValue::from_str(&format!("Basic {token}")) {
                        v.set_sensitive(true);
                        headers.push((http::header::AUTHORIZATION, v, Credential::Yes));
                    }
                }
                Err(m) => fail(auth.password.pos, "basic_auth.password", m),
            }
        }
        if let Some(token) = &spec.bearer_token {
            match Secret::resolve(token) {
                Ok(token) => match HeaderValue::from_str(&format!("Bearer {}", token.expose())) {
                    Ok(mut v) => {
                        v.set_sensitive(true);
                        headers.push((http::header::AUTHORIZATION, v, Credential::Yes));
                    }
                    Err(_) => fail(
                        spec.bearer_token.as_ref().map_or(pos, |t| t.pos),
                        "bearer_token",
                        "the token is not a valid header value".into(),
                    ),
                },
                Err(m) => fail(token.pos, "bearer_token", m),
            }
        }
        let max_body = match &spec.max_body {
            None => DEFAULT_MAX_BODY,
            Some(size) => match parse_size(size) {
                // Zero would fail every answer that has a body, which no target can pass.
                Ok(0) => {
                    fail(size.pos, "max_body", "must be more than zero".into());
                    DEFAULT_MAX_BODY
                }
                Ok(bytes) => bytes,
                Err(m) => {
                    fail(size.pos, "max_body", m);
                    DEFAULT_MAX_BODY
                }
            },
        };
        let tls_spec = spec.tls_config.clone().unwrap_or_default();
        let tls = ctx.net.tls_config(&tls_spec, &[b"http/1.1"]);
        let resolver = ctx.net.resolver(spec.resolver.as_deref());
        let expect = build_expect(spec.expect.unwrap_or_default(), &mut errors);
        let (tls, resolver) = match (tls, resolver) {
            (Ok(tls), Ok(resolver)) if errors.is_empty() => (tls, resolver),
            (tls, resolver) => {
                errors.extend(tls.err());
                errors.extend(resolver.err());
                return Err(errors);
            }
        };
        let Some(url) = url else { return Err(errors) };
        Ok(HttpProbe {
            url,
            method,
            headers,
            body: Bytes::from(spec.body.unwrap_or_default()),
            follow: match spec.follow_redirects.map(|f| f.value) {
                None | Some(FollowSpec::Bool(true)) => Follow::Always,
                Some(FollowSpec::Bool(false)) => Follow::Never,
                Some(FollowSpec::Word(follow)) => follow,
            },
            max_redirects: spec.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            max_body,
            tls,
            tls_server_name: tls_spec.server_name,
            resolver,
            expect,
        })
    }

    pub fn target(&self) -> String {
        self.url.to_string()
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let mut url = self.url.clone();
        let mut method = self.method.clone();
        let mut body = self.body.clone();
        let mut seen = HashSet::new();
        let mut redirects = 0u32;
        let home = origin(&self.url);
        let response = loop {
            let credentials = origin(&url) == home;
            let response = self
                .exchange(&url, &method, body.clone(), credentials, trace)
                .await?;
            let location = response
                .head
                .headers
                .get(http::header::LOCATION)
                .and_then(|l| l.to_str().ok());
            let is_redirect = matches!(response.head.status.as_u16(), 301 | 302 | 303 | 307 | 308);
            let (true, true, Some(location)) =
                (self.follow != Follow::Never, is_redirect, location)
            else {
                break response;
            };
            let next = resolve_location(&url, location)
                .map_err(|m| Failure::Redirect(format!("bad Location {location:?}: {m}")))?;
            if self.follow == Follow::SameHost && origin(&next).1 != home.1 {
                return Err(Failure::Redirect(format!(
                    "to another host, {next}, not followed (follow_redirects: same_host)"
                )));
            }
            seen.insert(url.to_string());
            redirects += 1;
            trace.signal("redirects", redirects as f64);
            if seen.contains(&next.to_string()) {
                return Err(Failure::Redirect(format!(
                    "loop back to {next} after {redirects} redirects"
                )));
            }
            if redirects > self.max_redirects {
                return Err(Failure::Redirect(format!(
                    "more than {} redirects",
                    self.max_redirects
                )));
            }
            trace.notes.push(format!(
                "redirect {} → {next}",
                response.head.status.as_u16()
            ));
            if origin(&next) != home && self.headers.iter().any(|h| h.2 == Credential::Yes) {
                trace.notes.push(format!(
                    "credentials not sent to {next}: another scheme, host or port than the probe's URL"
                ));
            }
            if response.head.status == http::StatusCode::SEE_OTHER
                || (matches!(response.head.status.as_u16(), 301 | 302) && method == Method::POST)
            {
                method = Method::GET;
                body = Bytes::new();
            }
            url = next;
        };
        trace.finish();
        trace.signal("redirects", redirects as f64);
        let latency = trace.elapsed();
        trace.signal("latency", latency.as_secs_f64());
        self.assert(&response, latency, trace)
    }

    /// One request on a fresh connection; returns the head and (up to `max_body`) the body.
    async fn exchange(
        &self,
        url: &Uri,
        method: &Method,
        body: Bytes,
        credentials: bool,
        trace: &mut Trace,
    ) -> Result<Response, Failure> {
        let https = url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let host = url.host().unwrap_or_default();
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let server_name = self.tls_server_name.as_deref().unwrap_or(host);
        let tls = https.then(|| (server_name, self.tls.clone()));
        let stream = net::open(host, port, &self.resolver, tls, trace).await?;

        trace.enter("processing");
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| Failure::Http(e.to_string()))?;
        let _driver = AbortOnDrop(tokio::spawn(async move {
            let _ = conn.await;
        }));
        let request = self.request(url, method, body, credentials)?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Http(describe_request_error(&e)))?;
        trace.enter("transfer");
        let (head, mut incoming) = response.into_parts();
        let promised = head
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let keep = self.expect.needs_body();
        let mut bytes = Vec::new();
        let mut size = 0u64;
        while let Some(frame) = incoming.frame().await {
            let frame =
                frame.map_err(|e| Failure::Body(describe_body_error(&e, size, promised)))?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if size > self.max_body {
                    trace.signal("body_bytes", size as f64);
                    return Err(Failure::Body(format!(
                        "larger than max_body {}, stopped reading",
                        format_size(self.max_body)
                    )));
                }
                if keep {
                    bytes.extend_from_slice(&data);
                }
            }
        }
        trace.signal("body_bytes", size as f64);
        trace.signal("status", head.status.as_u16() as f64);
        Ok(Response { head, body: bytes })
    }

    fn request(
        &self,
        url: &Uri,
        method: &Method,
        body: Bytes,
        credentials: bool,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let mut builder = Request::builder().method(method.clone()).uri(path);
        let host = match url.port() {
            Some(port) => format!("{}:{}", url.host().unwrap_or_default(), port),
            None => url.host().unwrap_or_default().to_string(),
        };
        let headers = builder
            .headers_mut()
            .ok_or_else(|| Failure::Http("cannot build request".into()))?;
        headers.insert(
            http::header::HOST,
            HeaderValue::from_str(&host).map_err(|e| Failure::Http(e.to_string()))?,
        );
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(concat!("slowburn/", env!("CARGO_PKG_VERSION"))),
        );
        headers.insert(http::header::ACCEPT, HeaderValue::from_static("*/*"));
        // The target closes first and keeps the TIME_WAIT, as with blackbox_exporter.
        headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
        for (name, value, credential) in &self.headers {
            if credentials || *credential == Credential::No {
                headers.insert(name.clone(), value.clone());
            }
        }
        builder
            .body(Full::new(body))
            .map_err(|e| Failure::Http(e.to_string()))
    }

    fn assert(
        &self,
        response: &Response,
        latency: Duration,
        trace: &mut Trace,
    ) -> Result<(), Failure> {
        let expect = &self.expect;
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
        let text = String::from_utf8_lossy(&response.body);
        if let Some(re) = &expect.body_regex {
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
        for (name, re) in &expect.headers {
            let values: Vec<&str> = response
                .head
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            failures.push(trace.check(
                "header",
                if values.is_empty() {
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

struct Response {
    head: http::response::Parts,
    body: Vec<u8>,
}

/// The innermost I/O error under a hyper error, if any.
fn io_cause(e: &hyper::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = cause.source();
    }
    None
}

/// What went wrong with an I/O error, in the words a reason needs (hyper's own text is
/// "connection error", which says nothing).
fn io_words(io: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::ConnectionReset => "connection reset by the peer".into(),
        ErrorKind::ConnectionAborted => "connection aborted".into(),
        ErrorKind::BrokenPipe => "connection closed by the peer while sending".into(),
        ErrorKind::UnexpectedEof => "connection closed by the peer".into(),
        _ => io.to_string(),
    }
}

/// Why sending a request or reading its response head failed.
fn describe_request_error(e: &hyper::Error) -> String {
    match io_cause(e) {
        Some(io) => format!("{} before a response", io_words(io)),
        None if e.is_incomplete_message() => "connection closed before a response".into(),
        None if e.is_parse() || e.is_parse_status() => format!("invalid response: {e}"),
        None => match std::error::Error::source(e) {
            Some(cause) => format!("{e}: {cause}"),
            None => e.to_string(),
        },
    }
}

/// Why reading the body stopped after `read` bytes, of `promised` if the head said.
fn describe_body_error(e: &hyper::Error, read: u64, promised: Option<u64>) -> String {
    let progress = match promised {
        Some(len) => format!("after {read} of {len} bytes"),
        None => format!("after {read} bytes"),
    };
    match io_cause(e) {
        Some(io) if io.kind() != std::io::ErrorKind::UnexpectedEof => {
            format!("{} {progress}", io_words(io))
        }
        _ if e.is_incomplete_message() || io_cause(e).is_some() => {
            format!("connection closed {progress}: the body is shorter than promised")
        }
        _ => format!("read failed {progress}: {e}"),
    }
}

/// Aborts the connection task when the run ends, also when a deadline drops the run.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
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

fn build_expect(spec: HttpExpectSpec, errors: &mut Vec<SpecError>) -> Expect {
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
    expect.body_regex = spec
        .body_regex
        .as_ref()
        .and_then(|r| regex("expect.body_regex", r, errors));
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
    for (name, re) in spec.headers.iter().flatten() {
        let Ok(header) = HeaderName::from_bytes(name.as_bytes()) else {
            errors.push(SpecError::new(
                name.pos,
                "expect.headers",
                format!("invalid header name {:?}", name.value),
            ));
            continue;
        };
        if let Some(re) = regex("expect.headers", re, errors) {
            expect.headers.push((header, re));
        }
    }
    if let Some(limit) = &spec.latency_below {
        match parse_duration(limit) {
            Ok(d) => expect.latency_below = Some(d),
            Err(m) => errors.push(SpecError::new(limit.pos, "expect.latency_below", m)),
        }
    }
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

fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

fn parse_url(text: &str) -> Result<Uri, String> {
    if !text.contains("://") {
        return Err(format!(
            "invalid URL {text:?}: it needs http:// or https://"
        ));
    }
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "invalid URL {text:?}: scheme {other:?} is not http or https"
            ));
        }
        None => {
            return Err(format!(
                "invalid URL {text:?}: it needs http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {text:?}: no host"));
    }
    // A password here would be shown wherever the target is: `probe` output, the API, the
    // status page. It belongs in basic_auth, as a secret.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "invalid URL {:?}: credentials in the URL would be shown as the target; use basic_auth with a secret password",
            redact_userinfo(text)
        ));
    }
    // `http::Uri` keeps a port it cannot read as a number, and the probe would then go to the
    // scheme's default port instead.
    // (`port()` answers None for it, as for no port at all.)
    let authority = uri.authority().map_or("", |a| a.as_str());
    if let Some((_, port)) = authority.rsplit_once(':')
        && !port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "invalid URL {text:?}: port {port} is not between 0 and 65535"
        ));
    }
    Ok(uri)
}

/// The URL with its userinfo replaced by `***`, for the error that refuses it.
fn redact_userinfo(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
                None => text.to_string(),
            }
        }
        None => text.to_string(),
    }
}

/// Resolves a `Location` header against the URL that returned it (RFC 3986 §5.2, the cases
/// servers send: absolute, scheme-relative, absolute-path and relative-path references).
fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    // A reference that starts with `scheme:` is absolute (RFC 3986 §4.3), whether or not `//`
    // follows: `file:/etc/passwd` or `javascript:x` must be refused, not taken as a path.
    if let Some((scheme, _)) = location.split_once(':')
        && !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(format!("scheme {scheme:?} is not http or https"));
        }
        return parse_url(location);
    }
    if location.contains("://") {
        return parse_url(location);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return parse_url(&format!("{scheme}://{rest}"));
    }
    let authority = base.authority().map_or("", |a| a.as_str());
    let path = if location.starts_with('/') {
        location.to_string()
    } else if let Some(query) = location.strip_prefix('?') {
        format!("{}?{query}", base.path())
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{dir}/{location}")
    };
    parse_url(&format!("{scheme}://{authority}{path}"))
}

/// Standard base64 with padding, for the basic-auth header.
pub(crate) fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

impl super::Kind for HttpProbe {
    type Spec = HttpSpec;
    const INFO: KindInfo = KIND;

    fn new(spec: Spanned<HttpSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        HttpProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        HttpProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        HttpProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `http:` probes: their signals and how each is exported.
pub const KIND: KindInfo = KindInfo {
    name: "http",
    headline: "latency",
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new("status", Unit::Count, Some(&STATUS)),
        Signal::new("redirects", Unit::Count, Some(&REDIRECTS)).exported_only(),
        Signal::new("body_bytes", Unit::Bytes, Some(&BODY)),
        Signal::new("cert_expiry", Unit::Count, Some(&SSL_EXPIRY)).exported_only(),
        Signal::new("cert_days_left", Unit::Count, Some(&SSL_DAYS_LEFT)),
    ],
};
const STATUS: Family = gauge(
    "probe_http_status_code",
    "Response HTTP status code of the last run (0 if none).",
);
const REDIRECTS: Family = gauge(
    "probe_http_redirects",
    "The number of redirects the last run followed.",
);
const BODY: Family = gauge(
    "probe_http_uncompressed_body_length",
    "Length of the response body of the last run, in bytes.",
);
const SSL_EXPIRY: Family = gauge(
    "probe_ssl_earliest_cert_expiry",
    "Earliest expiry of the certificates the target presented, as a unix timestamp.",
);
const SSL_DAYS_LEFT: Family = gauge(
    "probe_ssl_cert_days_left",
    "Days until the earliest presented certificate expires.",
);

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
    fn locations_resolve_against_the_base() {
        let base: Uri = "https://a.test:8443/x/y?q=1".parse().unwrap();
        let cases = [
            ("http://b.test/z", "http://b.test/z"),
            ("//c.test/w", "https://c.test/w"),
            ("/root", "https://a.test:8443/root"),
            ("sib", "https://a.test:8443/x/sib"),
            ("?p=2", "https://a.test:8443/x/y?p=2"),
        ];
        for (location, want) in cases {
            assert_eq!(
                resolve_location(&base, location).unwrap().to_string(),
                want,
                "{location}"
            );
        }
    }

    #[test]
    fn locations_with_other_schemes_are_refused() {
        let base: Uri = "https://a.test/x".parse().unwrap();
        for location in [
            "file:/etc/passwd",
            "ftp://b.test/",
            "javascript:alert(1)",
            "gopher://x",
        ] {
            let err = resolve_location(&base, location).unwrap_err();
            assert!(err.contains("is not http or https"), "{location}: {err}");
        }
        // A colon after the first slash is part of a path, not a scheme.
        assert_eq!(
            resolve_location(&base, "/a:b").unwrap().to_string(),
            "https://a.test/a:b"
        );
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let o = |u: &str| origin(&u.parse().unwrap());
        assert_eq!(o("https://A.test/x"), o("https://a.test:443/y"));
        assert_ne!(o("https://a.test/"), o("http://a.test/"));
        assert_ne!(o("https://a.test/"), o("https://b.test/"));
        assert_ne!(o("http://a.test/"), o("http://a.test:8080/"));
    }

    #[test]
    fn base64_matches_rfc4648() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("user:pass", "dXNlcjpwYXNz"),
        ] {
            assert_eq!(base64(input.as_bytes()), want);
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

    #[test]
    fn urls_must_be_http() {
        assert!(parse_url("https://x.test/h").is_ok());
        assert!(parse_url("ftp://x.test").unwrap_err().contains("scheme"));
        assert!(parse_url("x.test/h").unwrap_err().contains("http://"));
        assert!(parse_url("http:// bad").is_err());
        let err = parse_url("http://x.test:99999/").unwrap_err();
        assert!(
            err.contains("port 99999 is not between 0 and 65535"),
            "{err}"
        );
        let err = parse_url("https://bob:hunter2@x.test/a").unwrap_err();
        assert!(err.contains("credentials in the URL"), "{err}");
        assert!(
            err.contains("https://***@x.test/a") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
