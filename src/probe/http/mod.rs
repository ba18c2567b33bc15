//! The `http:` probe: one request over a fresh connection, with blackbox_exporter's phases
//! (`resolve`, `connect`, `tls`, `processing`, `transfer`) timed separately.
//!
//! It speaks HTTP/1.1 through hyper over our own connection (see `net.rs`) rather than through
//! a pooled client, because connect and TLS must be measured on every run and split from each
//! other. Redirects are followed by hand so each hop is timed and counted. The body is read up
//! to `max_body` and no further, so a 10 GB answer costs 1 MiB.
//!
//! This file owns the spec and its validation, the built [`HttpProbe`] and its run (the
//! redirect loop: each hop counted, timed and noted), its `Kind` impl and its signal table
//! ([`KIND`]). Beside it: `redirects.rs` (URLs, `Location`, origins and which headers are
//! credentials), `request.rs` (one exchange on a fresh connection and the body read), `proxy.rs`
//! (the proxy's connection, `no_proxy`, `proxy_connect_header`), `oauth2.rs` (the
//! client-credentials token) and `expect.rs` (the `expect:` section and the check of a response).

mod expect;
mod oauth2;
mod proxy;
mod redirects;
mod request;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Uri};
use rustls::ClientConfig;
use serde::Deserialize;

use self::expect::{Expect, build_expect};
pub use self::oauth2::OAuth2Spec;
use self::redirects::{Credential, is_credential_header, origin, parse_url, resolve_location};
pub(crate) use self::request::base64;
use super::net::{self, Resolver, TlsSpec};
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::units::{Secret, parse_size};
use crate::basics::yaml::{Pos, Spanned};

const DEFAULT_MAX_BODY: u64 = 1024 * 1024;
const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// `http:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    pub url: Spanned<String>,
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub body: Option<String>,
    /// The request body, read from this file when the probe is built (instead of `body`).
    pub body_file: Option<Spanned<String>>,
    pub basic_auth: Option<BasicAuthSpec>,
    pub bearer_token: Option<Spanned<String>>,
    /// `Authorization: <type> <credentials>`, type `Bearer` unless given.
    pub authorization: Option<AuthorizationSpec>,
    /// A token from an OAuth 2.0 client-credentials grant, sent as `Authorization`.
    pub oauth2: Option<OAuth2Spec>,
    pub follow_redirects: Option<Spanned<FollowSpec>>,
    pub max_redirects: Option<u32>,
    pub max_body: Option<Spanned<String>>,
    /// `gzip`, `deflate` or `br`: asked for with `Accept-Encoding` and decompressed, at most
    /// `max_body` of it; `identity` (the default) asks for none.
    pub compression: Option<Spanned<String>>,
    /// `true`: offer HTTP/2 over TLS (ALPN `h2` before `http/1.1`) and speak whichever the
    /// server picks; default HTTP/1.1 only.
    pub http2: Option<bool>,
    pub tls_config: Option<TlsSpec>,
    /// A forward proxy (`http://host:port`): plain targets are asked of it, https ones
    /// reached through a `CONNECT` tunnel.
    pub proxy_url: Option<Spanned<String>>,
    /// With `proxy_url`: the targets reached directly, comma-separated (`example.com` and its
    /// subdomains, `.example.com`, addresses, CIDR ranges, `*`), as Prometheus reads it;
    /// `localhost` and loopback addresses are then never proxied.
    pub no_proxy: Option<Spanned<String>>,
    /// Headers sent to the proxy with each `CONNECT` (https targets); the values are
    /// secrets (`env:`/`file:`).
    #[serde(default)]
    pub proxy_connect_header: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// `true`: the proxies `HTTP_PROXY`/`HTTPS_PROXY` name, except for `NO_PROXY` hosts and
    /// loopback targets, when `proxy_url` is not given.
    pub proxy_from_environment: Option<Spanned<bool>>,
    /// How a blackbox module treats the target's name behind `proxy_url`: `Some(true)`
    /// resolves it here first (blackbox's default), `Some(false)` leaves it to the proxy and
    /// says so, so `/probe` leaves out the address families as blackbox does
    /// (`skip_resolve_phase_with_proxy`). The kind (`None`) leaves it to the proxy. Set for
    /// blackbox modules only; a probe file cannot write it.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolve_target_with_proxy: Option<bool>,
    /// Whether every answer is decompressed as `compression` says whatever its
    /// `Content-Encoding`, as blackbox_exporter does (an answer sent uncompressed then fails
    /// the run); the kind decompresses only an answer that says it is compressed. Set for
    /// blackbox modules only.
    #[serde(skip)]
    #[schemars(skip)]
    pub decompress_always: bool,
    pub resolver: Option<Vec<Spanned<String>>>,
    /// `ip4` (default) or `ip6`: the address family tried first.
    pub preferred_ip_protocol: Option<Spanned<String>>,
    /// Whether the other family is taken when the name has none of the preferred (default
    /// true).
    pub ip_protocol_fallback: Option<bool>,
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

impl schemars::JsonSchema for FollowSpec {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "FollowSpec".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Which redirects to follow: true, false or same_host.",
            "enum": [true, false, "same_host"]
        })
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

/// `authorization:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationSpec {
    /// The scheme before the credentials (default `Bearer`; `Basic` is `basic_auth`'s).
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// `env:NAME` or `file:PATH`.
    pub credentials: Spanned<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthSpec {
    pub username: String,
    pub password: Spanned<String>,
}

/// `http.expect:` as written in a probe file.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpExpectSpec {
    pub status: Option<Vec<Spanned<String>>>,
    pub body_regex: Option<Spanned<String>>,
    /// More regexes that must all be found in the body, beside `body_regex` (blackbox's
    /// several `fail_if_body_not_matches_regexp`); not written in a probe file.
    #[serde(skip)]
    #[schemars(skip)]
    pub body_regex_also: Vec<Spanned<String>>,
    pub body_not_regex: Option<Spanned<String>>,
    pub json: Option<BTreeMap<Spanned<String>, serde_json::Value>>,
    pub headers: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Header → regex a value must match when the header is there (a missing header passes).
    pub headers_if_present: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    /// Header → regex that fails the run when a value matches (a missing header passes).
    pub headers_not: Option<BTreeMap<Spanned<String>, Spanned<String>>>,
    pub latency_below: Option<Spanned<String>>,
    pub cert_days_left: Option<Spanned<f64>>,
    /// The HTTP versions the final answer may come in (`HTTP/1.1`, `HTTP/2.0`).
    pub http_versions: Option<Vec<Spanned<String>>>,
    /// `true`: the final answer must come over TLS; `false`: it must not.
    pub ssl: Option<bool>,
}

/// A built http probe.
#[derive(Debug)]
pub struct HttpProbe {
    url: Uri,
    /// The origin-form request target and the `Host` of `url`, made once: every run's first
    /// request sends them (a redirect's hop makes its own).
    first_hop: Option<(Uri, HeaderValue)>,
    method: Method,
    /// Each header and whether it is a credential: `Authorization`, `Proxy-Authorization`,
    /// `Cookie` and any header whose value is a secret are sent to the configured origin only.
    headers: Vec<(HeaderName, HeaderValue, Credential)>,
    body: Bytes,
    follow: Follow,
    max_redirects: u32,
    max_body: u64,
    compression: Option<request::Encoding>,
    /// See [`HttpSpec::decompress_always`].
    decompress_always: bool,
    tls: Arc<ClientConfig>,
    tls_server_name: Option<String>,
    proxy: Option<proxy::Proxy>,
    oauth2: Option<Box<oauth2::OAuth2>>,
    /// `skip_resolve_phase_with_proxy` with a `proxy_url`: the run records that the target's
    /// name was not resolved here.
    resolve_skipped: bool,
    env_proxies: Option<proxy::EnvProxies>,
    resolver: Resolver,
    expect: Expect,
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
        if let Some(auth) = &spec.authorization {
            headers.extend(authorization_header(auth, &mut fail));
        }
        one_credential(&spec, &mut fail);
        let oauth2 = spec
            .oauth2
            .as_ref()
            .and_then(|o| match oauth2::OAuth2::new(o, ctx) {
                Ok(o) => Some(Box::new(o)),
                Err(found) => {
                    for e in found {
                        fail(e.pos, &e.field, e.message);
                    }
                    None
                }
            });
        let body = request_body(&spec, &mut fail);
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
        let compression = match spec
            .compression
            .as_ref()
            .map(|c| (c, c.to_ascii_lowercase()))
        {
            None => None,
            Some((_, c)) if c.is_empty() || c == "identity" => None,
            Some((_, c)) if c == "gzip" => Some(request::Encoding::Gzip),
            Some((_, c)) if c == "deflate" => Some(request::Encoding::Deflate),
            Some((_, c)) if c == "br" => Some(request::Encoding::Brotli),
            Some((c, _)) => {
                fail(
                    c.pos,
                    "compression",
                    format!("{:?} is not one of gzip, deflate, br, identity", c.value),
                );
                None
            }
        };
        // blackbox_exporter's `deflate` is raw DEFLATE; HTTP's (the kind's) is zlib-wrapped.
        let compression = match compression {
            Some(request::Encoding::Deflate) if spec.decompress_always => {
                Some(request::Encoding::RawDeflate)
            }
            other => other,
        };
        let proxy = spec.proxy_url.as_ref().and_then(|url| {
            proxy::Proxy::parse(url)
                .map_err(|m| fail(url.pos, "proxy_url", m))
                .ok()
        });
        let from_env = spec
            .proxy_from_environment
            .as_ref()
            .is_some_and(|f| f.value);
        if let Some(no_proxy) = &spec.no_proxy {
            if from_env {
                fail(
                    no_proxy.pos,
                    "no_proxy",
                    "cannot be given with proxy_from_environment (NO_PROXY says it there)".into(),
                );
            } else if spec.proxy_url.is_none() {
                fail(
                    no_proxy.pos,
                    "no_proxy",
                    "has no effect without proxy_url".into(),
                );
            }
        }
        let connect_headers = proxy_connect_headers(&spec, pos, &mut fail);
        let resolve_skipped = proxy.is_some() && spec.resolve_target_with_proxy == Some(false);
        let proxy = proxy.map(|p| {
            let p = p.resolving_target(spec.resolve_target_with_proxy == Some(true));
            let p = p.with_connect_headers(connect_headers.clone());
            match &spec.no_proxy {
                Some(no_proxy) => p.bypassed_for(proxy::NoProxy::parse(no_proxy)),
                None => p,
            }
        });
        let env_proxies = match &spec.proxy_from_environment {
            Some(flag) if flag.value && spec.proxy_url.is_none() => {
                match proxy::EnvProxies::from_env() {
                    Ok(proxies) => Some(proxies.with_connect_headers(&connect_headers)),
                    Err(m) => {
                        fail(flag.pos, "proxy_from_environment", m);
                        None
                    }
                }
            }
            _ => None,
        };
        let tls_spec = spec.tls_config.clone().unwrap_or_default();
        let alpn: &[&[u8]] = if spec.http2 == Some(true) {
            &[b"h2", b"http/1.1"]
        } else {
            &[b"http/1.1"]
        };
        let tls = ctx.net.tls_config(&tls_spec, alpn);
        let resolver = net::IpPreference::from_spec(
            spec.preferred_ip_protocol.as_ref(),
            spec.ip_protocol_fallback,
        )
        .and_then(|preference| ctx.net.resolver(spec.resolver.as_deref(), preference));
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
            first_hop: request::target_and_host(&url).ok(),
            url,
            method,
            headers,
            body,
            follow: match spec.follow_redirects.map(|f| f.value) {
                None | Some(FollowSpec::Bool(true)) => Follow::Always,
                Some(FollowSpec::Bool(false)) => Follow::Never,
                Some(FollowSpec::Word(follow)) => follow,
            },
            max_redirects: spec.max_redirects.unwrap_or(DEFAULT_MAX_REDIRECTS),
            max_body,
            compression,
            decompress_always: spec.decompress_always,
            tls,
            tls_server_name: tls_spec.server_name,
            proxy,
            oauth2,
            resolve_skipped,
            env_proxies,
            resolver,
            expect,
        })
    }

    /// The proxy a request to `url` goes through: `proxy_url`, or one from the environment.
    fn proxy_for(&self, url: &Uri) -> Option<&proxy::Proxy> {
        match &self.proxy {
            Some(proxy) => proxy.wanted_for(url).then_some(proxy),
            None => self.env_proxies.as_ref()?.for_url(url),
        }
    }

    pub fn target(&self) -> String {
        self.url.to_string()
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        if self.resolve_skipped && self.proxy_for(&self.url).is_some() {
            trace.signal("resolve_skipped", 1.0);
        }
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
            if self.follow == Follow::SameHost && !origin(&next).same_host(&home) {
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
            let credentials =
                self.oauth2.is_some() || self.headers.iter().any(|h| h.2 == Credential::Yes);
            if origin(&next) != home && credentials {
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
        self.expect.assert(&response, latency, trace)
    }
}

/// `authorization:` as the header it sends: `<type> <credentials>`, `Bearer` unless given.
fn authorization_header(
    auth: &AuthorizationSpec,
    fail: &mut impl FnMut(Pos, &str, String),
) -> Option<(HeaderName, HeaderValue, Credential)> {
    let kind = auth.kind.as_ref().map_or("", |k| k.trim());
    let kind = if kind.is_empty() { "Bearer" } else { kind };
    if kind.eq_ignore_ascii_case("basic") {
        fail(
            auth.kind.as_ref().map_or(auth.credentials.pos, |k| k.pos),
            "authorization.type",
            "cannot be \"Basic\": use basic_auth".into(),
        );
    }
    let credentials = Secret::resolve(&auth.credentials)
        .map_err(|m| fail(auth.credentials.pos, "authorization.credentials", m))
        .ok()?;
    match HeaderValue::from_str(&format!("{kind} {}", credentials.expose())) {
        Ok(mut v) => {
            v.set_sensitive(true);
            Some((http::header::AUTHORIZATION, v, Credential::Yes))
        }
        Err(_) => {
            fail(
                auth.credentials.pos,
                "authorization.credentials",
                "not a valid header value".into(),
            );
            None
        }
    }
}

/// At most one way of sending `Authorization`, as Prometheus insists: the second one given is
/// the error.
fn one_credential(spec: &HttpSpec, fail: &mut impl FnMut(Pos, &str, String)) {
    let given = [
        (
            "basic_auth",
            spec.basic_auth.as_ref().map(|a| a.password.pos),
        ),
        ("bearer_token", spec.bearer_token.as_ref().map(|t| t.pos)),
        (
            "authorization",
            spec.authorization.as_ref().map(|a| a.credentials.pos),
        ),
        ("oauth2", spec.oauth2.as_ref().map(|o| o.client_id.pos)),
    ];
    let mut given = given.iter().filter_map(|(k, at)| at.map(|at| (*k, at)));
    if let (Some((first, _)), Some((second, at))) = (given.next(), given.next()) {
        fail(
            at,
            second,
            format!(
                "cannot be given with {first}: at most one of basic_auth, bearer_token, authorization and oauth2"
            ),
        );
    }
}

/// The request body: `body`, or `body_file` read now (so a missing file fails the load, not
/// every run).
fn request_body(spec: &HttpSpec, fail: &mut impl FnMut(Pos, &str, String)) -> Bytes {
    match (&spec.body, &spec.body_file) {
        (Some(_), Some(file)) => {
            fail(file.pos, "body_file", "cannot be given with body".into());
            Bytes::new()
        }
        (_, Some(file)) => std::fs::read(&file.value)
            .map(Bytes::from)
            .unwrap_or_else(|e| {
                fail(
                    file.pos,
                    "body_file",
                    format!("cannot read {}: {e}", file.value),
                );
                Bytes::new()
            }),
        (body, None) => Bytes::from(body.clone().unwrap_or_default()),
    }
}

/// `proxy_connect_header` resolved (its values are secrets) into the lines `CONNECT` sends.
fn proxy_connect_headers(
    spec: &HttpSpec,
    pos: Pos,
    fail: &mut impl FnMut(Pos, &str, String),
) -> proxy::ConnectHeaders {
    if spec.proxy_connect_header.is_empty() {
        return proxy::ConnectHeaders::default();
    }
    let from_env = spec
        .proxy_from_environment
        .as_ref()
        .is_some_and(|f| f.value);
    let first = spec.proxy_connect_header.keys().next().map(|k| k.pos);
    if spec.proxy_url.is_none() && !from_env {
        fail(
            first.unwrap_or(pos),
            "proxy_connect_header",
            "has no effect without proxy_url or proxy_from_environment".into(),
        );
        return proxy::ConnectHeaders::default();
    }
    let mut resolved = Vec::new();
    for (name, values) in &spec.proxy_connect_header {
        let mut texts = Vec::new();
        for value in values {
            match Secret::resolve(value) {
                Ok(secret) => texts.push(secret.expose().to_string()),
                Err(m) => fail(
                    value.pos,
                    &format!("proxy_connect_header.{}", name.value),
                    m,
                ),
            }
        }
        resolved.push((name.value.as_str(), texts));
    }
    proxy::ConnectHeaders::new(resolved).unwrap_or_else(|m| {
        fail(first.unwrap_or(pos), "proxy_connect_header", m);
        proxy::ConnectHeaders::default()
    })
}

impl super::Kind for HttpProbe {
    type Spec = HttpSpec;
    const INFO: KindInfo = KIND;
    const TARGET_KEY: Option<&'static str> = Some("url");

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

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
    network: true,
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new("status", Unit::Count, Some(&STATUS)).zero_when_absent(),
        Signal::new("redirects", Unit::Count, Some(&REDIRECTS))
            .exported_only()
            .zero_when_absent(),
        Signal::new("body_bytes", Unit::Bytes, Some(&BODY)).zero_when_absent(),
        Signal::new("content_length", Unit::Bytes, Some(&CONTENT_LENGTH))
            .exported_only()
            .zero_when_absent(),
        Signal::new("http_version", Unit::Count, Some(&VERSION))
            .exported_only()
            .zero_when_absent(),
        Signal::new("http_ssl", Unit::Count, Some(&SSL))
            .exported_only()
            .zero_when_absent(),
        Signal::new(
            "failed_due_to_regex",
            Unit::Count,
            Some(&net::FAILED_DUE_TO_REGEX),
        )
        .exported_only()
        .zero_when_absent(),
        Signal::new("ip_protocol", Unit::Count, Some(&net::IP_PROTOCOL)).exported_only(),
        Signal::new("ip_addr_hash", Unit::Count, Some(&net::IP_ADDR_HASH)).exported_only(),
        Signal::new("cert_expiry", Unit::Count, Some(&SSL_EXPIRY)).exported_only(),
        Signal::new("cert_days_left", Unit::Count, Some(&SSL_DAYS_LEFT)),
    ],
};
const STATUS: Family = gauge(
    "probe_http_status_code",
    "Response HTTP status code of the last run (0 if none).",
);
const CONTENT_LENGTH: Family = gauge(
    "probe_http_content_length",
    "The Content-Length the last answer announced (-1: none; 0: no answer).",
);
const VERSION: Family = gauge(
    "probe_http_version",
    "The HTTP version of the last answer (1.1, 2; 0: no answer).",
);
const SSL: Family = gauge(
    "probe_http_ssl",
    "Whether the last answer (after redirects) came over TLS.",
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
