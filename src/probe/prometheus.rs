//! The `prometheus:` probe: one instant PromQL query through Prometheus' HTTP API
//! (`GET /api/v1/query`), its result turned into signals for the detectors.
//!
//! A scalar or a vector of one series is the signal `value`. A vector of several series is
//! judged series by series against `expect:` (each series named by its labels in the run's
//! notes), and each is a sub-signal `value{labels}` that `drift:` on `value` watches with
//! detectors of its own (the results task keeps them). Several series are bounded by `max_series`: more is the failure `cardinality`, never a silent
//! truncation. An empty result is `no_data` unless `on_no_data: ok`. Errors carry Prometheus'
//! own message. The answer is read up to a fixed size, so a query that returns a million
//! series costs a few MiB, and a non-JSON answer (an HTML login page from a proxy) is named as
//! such. This file knows nothing of alerts, the store or metrics.

use serde::Deserialize;
use serde_json::Value;

use super::net::TlsSpec;
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{KindInfo, QUERY_VALUE, Signal, Unit};
use crate::basics::units::{Secret, parse_duration};
use crate::basics::yaml::Spanned;

/// Default bound on the series one query may return.
const DEFAULT_MAX_SERIES: usize = 50;
/// The most of an answer that is read (a few MiB holds thousands of series).
const MAX_ANSWER: usize = 4 * 1024 * 1024;

/// `prometheus:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusSpec {
    /// The server's base URL, e.g. `http://127.0.0.1:9090`.
    pub url: Spanned<String>,
    /// The PromQL expression, evaluated at the time of the run.
    pub query: Spanned<String>,
    pub basic_auth: Option<super::http::BasicAuthSpec>,
    pub bearer_token: Option<Spanned<String>>,
    pub tls_config: Option<TlsSpec>,
    /// Passed to Prometheus as the query's own timeout, so the server stops evaluating it
    /// too; the probe's deadline cuts the request off in any case.
    pub timeout: Option<Spanned<String>>,
    pub max_series: Option<usize>,
    pub on_no_data: Option<Spanned<String>>,
    pub expect: Option<PrometheusExpectSpec>,
}

/// `prometheus.expect:`: bounds every series must keep.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PrometheusExpectSpec {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

/// A validated `prometheus:` probe.
#[derive(Debug)]
pub struct PrometheusProbe {
    endpoint: reqwest::Url,
    target: String,
    client: reqwest::Client,
    authorization: Option<String>,
    max_series: usize,
    no_data_ok: bool,
    min: Option<f64>,
    max: Option<f64>,
}

impl PrometheusProbe {
    pub fn new(
        spec: Spanned<PrometheusSpec>,
        ctx: &BuildContext,
    ) -> Result<PrometheusProbe, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut fail = |pos, field: &str, message: String| {
            errors.push(SpecError::new(pos, field, message));
        };
        let base = match reqwest::Url::parse(spec.url.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                if !url.username().is_empty() || url.password().is_some() {
                    fail(
                        spec.url.pos,
                        "url",
                        "credentials in the URL would be shown and logged; use basic_auth".into(),
                    );
                }
                Some(url)
            }
            Ok(_) => {
                fail(
                    spec.url.pos,
                    "url",
                    "an absolute http or https URL is needed".into(),
                );
                None
            }
            Err(e) => {
                fail(spec.url.pos, "url", format!("invalid URL: {e}"));
                None
            }
        };
        if spec.query.trim().is_empty() {
            fail(spec.query.pos, "query", "the query is empty".into());
        }
        let server_timeout = spec.timeout.as_ref().and_then(|t| match parse_duration(t) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                fail(t.pos, "timeout", "must be more than zero".into());
                None
            }
            Err(m) => {
                fail(t.pos, "timeout", m);
                None
            }
        });
        let no_data_ok = match spec.on_no_data.as_ref().map(|s| (s.pos, s.as_str())) {
            None | Some((_, "fail")) => false,
            Some((_, "ok")) => true,
            Some((pos, other)) => {
                fail(
                    pos,
                    "on_no_data",
                    format!("{other:?} is not one of fail, ok"),
                );
                false
            }
        };
        let max_series = spec.max_series.unwrap_or(DEFAULT_MAX_SERIES);
        if max_series == 0 {
            fail(spec.pos, "max_series", "must be at least 1".into());
        }
        let expect = spec.expect.as_ref();
        let (min, max) = (expect.and_then(|e| e.min), expect.and_then(|e| e.max));
        if let (Some(lo), Some(hi)) = (min, max)
            && lo > hi
        {
            fail(spec.pos, "expect", format!("min {lo} is above max {hi}"));
        }
        let mut authorization = None;
        if let Some(auth) = &spec.basic_auth {
            match Secret::resolve(&auth.password) {
                Ok(password) => {
                    let pair = format!("{}:{}", auth.username, password.expose());
                    authorization = Some(format!("Basic {}", super::http::base64(pair.as_bytes())));
                }
                Err(m) => fail(auth.password.pos, "basic_auth.password", m),
            }
        }
        if let Some(token) = &spec.bearer_token {
            if authorization.is_some() {
                fail(
                    token.pos,
                    "bearer_token",
                    "give basic_auth or bearer_token, not both".into(),
                );
            }
            match Secret::resolve(token) {
                Ok(token) => authorization = Some(format!("Bearer {}", token.expose())),
                Err(m) => fail(token.pos, "bearer_token", m),
            }
        }
        let tls = ctx
            .net
            .tls_config(&spec.tls_config.clone().unwrap_or_default(), &[b"http/1.1"]);
        let tls = match tls {
            Ok(tls) => Some(tls),
            Err(e) => {
                errors.push(e);
                None
            }
        };
        let (Some(mut endpoint), Some(tls)) = (base, tls) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let target = format!(
            "{}://{}",
            endpoint.scheme(),
            endpoint.host_str().unwrap_or_default()
        ) + &endpoint.port().map(|p| format!(":{p}")).unwrap_or_default();
        let path = format!("{}/api/v1/query", endpoint.path().trim_end_matches('/'));
        endpoint.set_path(&path);
        {
            let mut pairs = endpoint.query_pairs_mut();
            pairs.append_pair("query", spec.query.trim());
            if let Some(t) = server_timeout {
                pairs.append_pair("timeout", &format!("{}ms", t.as_millis()));
            }
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("slowburn/", env!("CARGO_PKG_VERSION")))
            .use_preconfigured_tls((*tls).clone())
            // Credentials go to the configured server only: redirects are not followed.
            .redirect(reqwest::redirect::Policy::none())
            .pool_max_idle_per_host(1)
            .build()
            .map_err(|e| {
                vec![SpecError::new(
                    spec.pos,
                    "",
                    format!("cannot build the HTTP client: {e}"),
                )]
            })?;
        Ok(PrometheusProbe {
            endpoint,
            target,
            client,
            authorization,
            max_series,
            no_data_ok,
            min,
            max,
        })
    }

    /// The server and the query, for people (never a credential).
    pub fn target(&self) -> String {
        let query = self
            .endpoint
            .query_pairs()
            .find(|(k, _)| k == "query")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        format!("{} {query}", self.target)
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        trace.enter("query");
        let mut request = self.client.get(self.endpoint.clone());
        if let Some(auth) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let mut response = request.send().await.map_err(|e| connect_failure(&e))?;
        let status = response.status();
        let html = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.starts_with("text/html"));
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| Failure::Prometheus(format!("reading the answer: {e}")))?
        {
            if body.len() + chunk.len() > MAX_ANSWER {
                return Err(Failure::Cardinality(format!(
                    "the answer is larger than {} MiB",
                    MAX_ANSWER / (1024 * 1024)
                )));
            }
            body.extend_from_slice(&chunk);
        }
        trace.enter("evaluate");
        let answer: Value = serde_json::from_slice(&body).map_err(|_| {
            Failure::Prometheus(if html {
                format!("HTTP {status} with an HTML page, not a Prometheus API answer")
            } else {
                format!("HTTP {status} with an answer that is not JSON")
            })
        })?;
        if answer["status"] != "success" {
            let message = answer["error"].as_str().unwrap_or("no error message");
            let kind = answer["errorType"].as_str().unwrap_or("error");
            return Err(Failure::Prometheus(format!("{kind}: {message}")));
        }
        let series = series(&answer["data"])?;
        trace.signal("series", series.len() as f64);
        if series.is_empty() {
            return if self.no_data_ok {
                trace.notes.push("no data (on_no_data: ok)".into());
                Ok(())
            } else {
                Err(Failure::NoData("the query returned no series".into()))
            };
        }
        if series.len() > self.max_series {
            return Err(Failure::Cardinality(format!(
                "{} series, more than max_series {}",
                series.len(),
                self.max_series
            )));
        }
        if let [(_, value)] = series.as_slice() {
            trace.signal("value", *value);
        }
        let mut first = None;
        let several = series.len() > 1;
        for (labels, value) in &series {
            trace.notes.push(format!("{labels} = {value}"));
            if several && value.is_finite() {
                trace.series("value", labels, *value);
            }
            if !value.is_finite() {
                first.get_or_insert(Failure::Query(format!("{labels} is {value}")));
                continue;
            }
            let verdict = self.judge(labels, *value);
            if let Some(failure) = trace.check("value", verdict) {
                first.get_or_insert(failure);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn judge(&self, labels: &str, value: f64) -> Result<String, Failure> {
        let limit = |message: String| Failure::Limit {
            signal: "value",
            message,
        };
        if let Some(min) = self.min
            && value < min
        {
            return Err(limit(format!("{labels} is {value}, below min {min}")));
        }
        if let Some(max) = self.max
            && value > max
        {
            return Err(limit(format!("{labels} is {value}, above max {max}")));
        }
        Ok(format!("{labels} = {value}"))
    }
}

/// The series of an instant query's `data`, each as (labels written PromQL-style, value).
fn series(data: &Value) -> Result<Vec<(String, f64)>, Failure> {
    let number = |pair: &Value| -> Result<f64, Failure> {
        pair[1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| Failure::Prometheus(format!("a sample that is not a number: {pair}")))
    };
    match data["resultType"].as_str() {
        Some("scalar") => Ok(vec![("scalar".into(), number(&data["result"])?)]),
        Some("vector") => {
            let result = data["result"].as_array().cloned().unwrap_or_default();
            result
                .iter()
                .map(|s| Ok((labels(&s["metric"]), number(&s["value"])?)))
                .collect()
        }
        Some(other) => Err(Failure::Prometheus(format!(
            "an instant query gives a scalar or a vector, this one gave a {other}"
        ))),
        None => Err(Failure::Prometheus("the answer has no resultType".into())),
    }
}

/// `{job="api",instance="a"}`, or `{}` for a series without labels.
fn labels(metric: &Value) -> String {
    let pairs: Vec<String> = metric
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={:?}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    format!("{{{}}}", pairs.join(","))
}

/// A failed request, named by what failed: a refused or reset connection, TLS, a timeout.
fn connect_failure(e: &reqwest::Error) -> Failure {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text = format!("{text}: {s}");
        source = s.source();
    }
    if e.is_timeout() {
        Failure::Prometheus(format!("timed out: {text}"))
    } else if e.is_connect() {
        let refused = text.contains("refused");
        Failure::Connect(if refused { "refused".into() } else { text })
    } else {
        Failure::Prometheus(text)
    }
}

impl super::Kind for PrometheusProbe {
    type Spec = PrometheusSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<PrometheusSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        PrometheusProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        PrometheusProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        PrometheusProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `prometheus:` probes: `value` is exported as the
/// query value, like a `postgres:` query's.
pub const KIND: KindInfo = KindInfo {
    name: "prometheus",
    headline: "value",
    signals: &[
        Signal::new("value", Unit::Count, Some(&QUERY_VALUE)),
        Signal::new("series", Unit::Count, None).exported_only(),
    ],
};
