//! One blackbox_exporter module as its users write it in `blackbox.yml` (`prober:`,
//! `timeout:`, and the `http:`, `tcp:`, `dns:` sections with blackbox's own keys), validated,
//! and turned into the spec of slowburn's own kind for one target.
//!
//! Every key blackbox documents is read; a key slowburn does not carry out yet is an error at
//! its position, never silently dropped, so a pasted module either means what it meant under
//! blackbox or does not load. This file builds specs; running them is the kinds' business.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::basics::SpecError;
use crate::basics::units::{parse_duration, parse_size};
use crate::basics::yaml::{Pos, ScalarText, Spanned};
use crate::probe::dns::{DnsExpectSpec, DnsSpec, RrCheckSpec, class_from_name, class_names};
use crate::probe::grpc::GrpcSpec;
use crate::probe::http::{
    AuthorizationSpec, BasicAuthSpec, FollowSpec, HttpExpectSpec, HttpSpec, OAuth2Spec,
};
use crate::probe::icmp::IcmpSpec;
use crate::probe::net::TlsSpec;
use crate::probe::tcp::{StepSpec, TcpSpec};
use crate::probe::{KindSpecs, Probe};

/// Any value: a key blackbox knows whose meaning slowburn does not carry out yet.
type Unsupported = Option<Spanned<serde_json::Value>>;

/// A module as written under `modules:`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ModuleSpec {
    /// `http`, `tcp`, `dns`, `icmp` or `grpc`.
    pub prober: Spanned<String>,
    /// The deadline of one probe; a scrape's `X-Prometheus-Scrape-Timeout-Seconds` (less
    /// half a second) caps it, as in blackbox_exporter.
    pub timeout: Option<Spanned<String>>,
    pub http: Option<Spanned<HttpModule>>,
    pub tcp: Option<Spanned<TcpModule>>,
    pub dns: Option<Spanned<DnsModule>>,
    pub icmp: Option<Spanned<IcmpModule>>,
    pub grpc: Option<Spanned<GrpcModule>>,
}

/// blackbox's `icmp:` module keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IcmpModule {
    pub preferred_ip_protocol: Option<Spanned<String>>,
    pub ip_protocol_fallback: Option<Spanned<bool>>,
    pub payload_size: Option<Spanned<usize>>,
    pub ttl: Option<Spanned<u32>>,
    pub source_ip_address: Option<Spanned<String>>,
    /// The IPv4 don't-fragment bit; ignored for IPv6 targets, as in blackbox.
    pub dont_fragment: Option<Spanned<bool>>,
}

/// blackbox's `grpc:` module keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcModule {
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub tls: bool,
    pub tls_config: Option<TlsModule>,
    pub preferred_ip_protocol: Option<Spanned<String>>,
    pub ip_protocol_fallback: Option<Spanned<bool>>,
}

/// blackbox's `http:` module keys (its `http_client_config` inlined, as blackbox reads it).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpModule {
    pub valid_status_codes: Option<Vec<Spanned<u16>>>,
    pub valid_http_versions: Option<Vec<Spanned<String>>>,
    pub method: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<Spanned<String>, Spanned<String>>,
    pub body: Option<String>,
    pub no_follow_redirects: Option<bool>,
    pub follow_redirects: Option<bool>,
    pub fail_if_ssl: Option<bool>,
    pub fail_if_not_ssl: Option<bool>,
    #[serde(default)]
    pub fail_if_body_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    pub fail_if_body_not_matches_regexp: Vec<Spanned<String>>,
    #[serde(default)]
    pub fail_if_header_matches: Vec<Spanned<HeaderMatch>>,
    #[serde(default)]
    pub fail_if_header_not_matches: Vec<Spanned<HeaderMatch>>,
    pub preferred_ip_protocol: Option<Spanned<String>>,
    pub ip_protocol_fallback: Option<Spanned<bool>>,
    pub tls_config: Option<TlsModule>,
    pub basic_auth: Option<BasicAuthModule>,
    /// `env:NAME` or `file:PATH` (slowburn takes no inline secrets).
    pub bearer_token: Option<Spanned<String>>,
    pub bearer_token_file: Option<Spanned<String>>,
    pub body_size_limit: Option<Spanned<ScalarText>>,
    pub enable_http2: Option<Spanned<bool>>,
    pub compression: Option<Spanned<String>>,
    /// The request body, read from this file when the module is loaded.
    pub body_file: Option<Spanned<String>>,
    pub skip_resolve_phase_with_proxy: Option<Spanned<bool>>,
    pub authorization: Option<Spanned<AuthorizationModule>>,
    pub oauth2: Option<Spanned<OAuth2Module>>,
    pub proxy_url: Option<Spanned<String>>,
    pub no_proxy: Option<Spanned<String>>,
    pub proxy_from_environment: Option<Spanned<bool>>,
    /// Header → values sent on `CONNECT`; each value `env:NAME` or `file:PATH`.
    #[serde(default)]
    pub proxy_connect_header: BTreeMap<Spanned<String>, Vec<Spanned<String>>>,
    /// Only `true`: slowburn speaks HTTP/1.1 wherever the server does not pick HTTP/2.
    pub enable_http1: Option<Spanned<bool>>,
}

/// `authorization:` as Prometheus' common config writes it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationModule {
    /// Default `Bearer`.
    #[serde(rename = "type")]
    pub kind: Option<Spanned<String>>,
    /// `env:NAME` or `file:PATH`.
    pub credentials: Option<Spanned<String>>,
    pub credentials_file: Option<Spanned<String>>,
}

/// `oauth2:` as Prometheus' common config writes it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Module {
    pub client_id: Spanned<String>,
    /// `env:NAME` or `file:PATH`.
    pub client_secret: Option<Spanned<String>>,
    pub client_secret_file: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub token_url: Spanned<String>,
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    pub tls_config: Option<TlsModule>,
    pub proxy_url: Option<Spanned<String>>,
}

/// One entry of `fail_if_header_matches` / `fail_if_header_not_matches`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderMatch {
    pub header: Spanned<String>,
    pub regexp: Spanned<String>,
    #[serde(default)]
    pub allow_missing: bool,
}

/// `basic_auth:` as blackbox (Prometheus' common config) writes it.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthModule {
    pub username: String,
    /// `env:NAME` or `file:PATH`.
    pub password: Option<Spanned<String>>,
    pub password_file: Option<Spanned<String>>,
}

/// `tls_config:` as Prometheus' common config writes it.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsModule {
    pub ca_file: Option<Spanned<String>>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub cert_file: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub min_version: Option<Spanned<String>>,
    pub max_version: Option<Spanned<String>>,
    /// Refused, as blackbox 0.23 (Prometheus common config v0.37) refuses it: use `ca_file`.
    pub ca: Unsupported,
    /// Refused, as blackbox 0.23 refuses it: use `cert_file`.
    pub cert: Unsupported,
    /// Refused, as blackbox 0.23 refuses it: use `key_file`.
    pub key: Unsupported,
}

/// blackbox's `tcp:` module keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpModule {
    #[serde(default)]
    pub query_response: Vec<Spanned<QueryResponse>>,
    #[serde(default)]
    pub tls: bool,
    pub tls_config: Option<TlsModule>,
    pub preferred_ip_protocol: Option<Spanned<String>>,
    pub ip_protocol_fallback: Option<Spanned<bool>>,
    pub source_ip_address: Option<Spanned<String>>,
}

/// One step of `query_response`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QueryResponse {
    pub expect: Option<Spanned<String>>,
    pub send: Option<String>,
    #[serde(default)]
    pub starttls: bool,
}

/// blackbox's `dns:` module keys.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsModule {
    pub query_name: Option<Spanned<String>>,
    /// Default `ANY`, as in blackbox.
    pub query_type: Option<Spanned<String>>,
    /// Default `IN`; blackbox's names, in capitals: `IN`, `CS`, `CH`, `HS`, `NONE`, `ANY`.
    pub query_class: Option<Spanned<String>>,
    pub transport_protocol: Option<Spanned<String>>,
    pub recursion_desired: Option<bool>,
    pub valid_rcodes: Option<Vec<Spanned<String>>>,
    pub validate_answer_rrs: Option<RrCheckSpec>,
    pub validate_authority_rrs: Option<RrCheckSpec>,
    pub validate_additional_rrs: Option<RrCheckSpec>,
    pub preferred_ip_protocol: Option<Spanned<String>>,
    pub ip_protocol_fallback: Option<Spanned<bool>>,
    pub source_ip_address: Option<Spanned<String>>,
    /// DNS over TLS; blackbox wants `transport_protocol: tcp` with it.
    pub dns_over_tls: Option<Spanned<bool>>,
    /// Read only with `dns_over_tls`.
    pub tls_config: Option<Spanned<TlsModule>>,
}

/// The prober a module names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prober {
    Http,
    Tcp,
    Dns,
    Icmp,
    Grpc,
}

impl Prober {
    /// The kind of slowburn's that runs it (the `kind` of its probes).
    pub fn kind(self) -> &'static str {
        match self {
            Prober::Http => "http",
            Prober::Tcp => "tcp",
            Prober::Dns => "dns",
            Prober::Icmp => "icmp",
            Prober::Grpc => "grpc",
        }
    }
}

/// A validated module: its prober and timeout, and the spec it builds a probe from.
#[derive(Debug, Clone)]
pub struct Module {
    pub name: String,
    pub prober: Prober,
    pub timeout: Option<Duration>,
    spec: ModuleSpec,
    pos: Pos,
    /// The module as written in its file, for `/probe?debug=true`.
    source: String,
}

/// A target to validate a module with while it is loaded (the real target comes later).
const SAMPLE_TARGETS: [(Prober, &str); 5] = [
    (Prober::Http, "http://127.0.0.1/"),
    (Prober::Tcp, "127.0.0.1:1"),
    (Prober::Dns, "127.0.0.1:53"),
    (Prober::Icmp, "127.0.0.1"),
    (Prober::Grpc, "127.0.0.1:1"),
];

impl Module {
    /// Validates a module, building a probe for a sample target so a bad regex or TLS file
    /// is found now rather than at the first scrape; every error found.
    pub fn new(
        name: &str,
        spec: Spanned<ModuleSpec>,
        ctx: &crate::probe::BuildContext,
    ) -> Result<Module, Vec<SpecError>> {
        let pos = spec.pos;
        let spec = spec.value;
        let mut errors = Vec::new();
        let prober = match spec.prober.as_str() {
            "http" => Some(Prober::Http),
            "tcp" => Some(Prober::Tcp),
            "dns" => Some(Prober::Dns),
            "icmp" => Some(Prober::Icmp),
            "grpc" => Some(Prober::Grpc),
            other => {
                errors.push(SpecError::new(
                    spec.prober.pos,
                    "prober",
                    format!("unknown prober {other:?}: expected http, tcp, dns, icmp or grpc"),
                ));
                None
            }
        };
        let timeout = spec.timeout.as_ref().and_then(|t| match parse_duration(t) {
            Ok(d) if !d.is_zero() => Some(d),
            Ok(_) => {
                errors.push(SpecError::new(t.pos, "timeout", "must be more than zero"));
                None
            }
            Err(m) => {
                errors.push(SpecError::new(t.pos, "timeout", m));
                None
            }
        });
        for (section, at) in [
            ("http", spec.http.as_ref().map(|s| s.pos)),
            ("tcp", spec.tcp.as_ref().map(|s| s.pos)),
            ("dns", spec.dns.as_ref().map(|s| s.pos)),
            ("icmp", spec.icmp.as_ref().map(|s| s.pos)),
            ("grpc", spec.grpc.as_ref().map(|s| s.pos)),
        ] {
            if let (Some(at), Some(prober)) = (at, prober)
                && section != prober.kind()
            {
                errors.push(SpecError::new(
                    at,
                    section,
                    format!(
                        "`{section}:` has no effect with prober {}: remove it or change the prober",
                        prober.kind()
                    ),
                ));
            }
        }
        let Some(prober) = prober else {
            return Err(errors);
        };
        let module = Module {
            name: name.to_string(),
            prober,
            timeout,
            spec,
            pos,
            source: String::new(),
        };
        module.unsupported(&mut errors);
        {
            let sample = SAMPLE_TARGETS
                .iter()
                .find(|(p, _)| *p == prober)
                .map_or("", |(_, t)| *t);
            match module.kind_specs(sample) {
                Ok(specs) => {
                    if let Err(found) = Probe::build(specs, pos, ctx) {
                        errors.extend(found.into_iter().map(|mut e| {
                            e.field = blackbox_field(prober, &e.field);
                            e
                        }));
                    }
                }
                Err(found) => errors.extend(found),
            }
        }
        if errors.is_empty() {
            Ok(module)
        } else {
            Err(errors)
        }
    }

    /// The probe this module runs against `target`.
    pub fn probe(&self, target: &str, ctx: &crate::probe::BuildContext) -> Result<Probe, String> {
        let specs = self.kind_specs(target).map_err(describe)?;
        Probe::build(specs, self.pos, ctx).map_err(describe)
    }

    /// The module as written, for `/probe?debug=true`.
    pub fn describe(&self) -> &str {
        &self.source
    }

    /// Keeps the module's text as written (its lines in the probe file).
    pub fn with_source(mut self, source: String) -> Self {
        self.source = source;
        self
    }

    /// Every key the module gives that slowburn does not carry out yet.
    fn unsupported(&self, errors: &mut Vec<SpecError>) {
        let mut refuse = |field: &str, at: Option<Pos>, why: &str| {
            if let Some(at) = at {
                errors.push(SpecError::new(
                    at,
                    field,
                    format!("not supported by slowburn yet{why}"),
                ));
            }
        };
        if let Some(http) = &self.spec.http {
            let h = &http.value;
            if let Some(http1) = &h.enable_http1
                && !http1.value
            {
                refuse(
                    "http.enable_http1",
                    Some(http1.pos),
                    " as false (HTTP/2 only): slowburn speaks HTTP/1.1 unless the server picks h2 over TLS, and blackbox_exporter 0.23 has no such key; remove it or write true",
                );
            }
            tls_unsupported("http.tls_config", h.tls_config.as_ref(), &mut refuse);
            if let Some(oauth2) = &h.oauth2 {
                tls_unsupported(
                    "http.oauth2.tls_config",
                    oauth2.value.tls_config.as_ref(),
                    &mut refuse,
                );
            }
        }
        if let Some(tcp) = &self.spec.tcp {
            let t = &tcp.value;
            tls_unsupported("tcp.tls_config", t.tls_config.as_ref(), &mut refuse);
        }
        if let Some(grpc) = &self.spec.grpc {
            tls_unsupported(
                "grpc.tls_config",
                grpc.value.tls_config.as_ref(),
                &mut refuse,
            );
        }
        if let Some(dns) = &self.spec.dns {
            let d = &dns.value;
            tls_unsupported(
                "dns.tls_config",
                d.tls_config.as_ref().map(|t| &t.value),
                &mut refuse,
            );
            ip_protocol(
                "dns",
                d.preferred_ip_protocol.as_ref(),
                d.ip_protocol_fallback.as_ref(),
                &mut refuse,
            );
        }
    }

    /// slowburn's spec of this module's prober pointed at `target`.
    fn kind_specs(&self, target: &str) -> Result<KindSpecs, Vec<SpecError>> {
        let at = |value: String| Spanned {
            pos: self.pos,
            value,
        };
        let mut specs = KindSpecs::default();
        match self.prober {
            Prober::Http => {
                let h = self
                    .spec
                    .http
                    .as_ref()
                    .map(|h| h.value.clone())
                    .unwrap_or_default();
                let url = if target.starts_with("http://") || target.starts_with("https://") {
                    target.to_string()
                } else {
                    format!("http://{target}")
                };
                let follow =
                    !h.no_follow_redirects.unwrap_or(false) && h.follow_redirects.unwrap_or(true);
                let status = h.valid_status_codes.map(|codes| {
                    codes
                        .into_iter()
                        .map(|c| Spanned {
                            pos: c.pos,
                            value: c.value.to_string(),
                        })
                        .collect()
                });
                let ssl = match (h.fail_if_ssl, h.fail_if_not_ssl) {
                    (Some(true), Some(true)) => {
                        return Err(vec![SpecError::new(
                            self.pos,
                            "http",
                            "fail_if_ssl and fail_if_not_ssl together fail every probe",
                        )]);
                    }
                    (Some(true), _) => Some(false),
                    (_, Some(true)) => Some(true),
                    _ => None,
                };
                let body_not_regex = match h.fail_if_body_matches_regexp.as_slice() {
                    [] => None,
                    [one] => Some(one.clone()),
                    many => Some(Spanned {
                        pos: many[0].pos,
                        value: many
                            .iter()
                            .map(|r| format!("(?:{})", r.value))
                            .collect::<Vec<_>>()
                            .join("|"),
                    }),
                };
                let (optional, required): (Vec<_>, Vec<_>) = h
                    .fail_if_header_not_matches
                    .iter()
                    .partition(|m| m.allow_missing);
                let mut headers = required
                    .iter()
                    .map(|m| (m.header.clone(), m.regexp.clone()))
                    .collect::<BTreeMap<_, _>>();
                let headers_if_present = optional
                    .iter()
                    .map(|m| (m.header.clone(), m.regexp.clone()))
                    .collect::<BTreeMap<_, _>>();
                let mut headers_not = BTreeMap::new();
                for m in &h.fail_if_header_matches {
                    // blackbox fails a missing header unless `allow_missing`: that is a
                    // presence check (any value) beside the regex that must not match.
                    if !m.allow_missing {
                        headers.entry(m.header.clone()).or_insert_with(|| Spanned {
                            pos: m.regexp.pos,
                            value: String::new(),
                        });
                    }
                    headers_not.insert(m.header.clone(), m.regexp.clone());
                }
                let max_body = match &h.body_size_limit {
                    None => None,
                    Some(limit) => Some(Spanned {
                        pos: limit.pos,
                        value: body_size(limit).map_err(|m| {
                            vec![SpecError::new(limit.pos, "http.body_size_limit", m)]
                        })?,
                    }),
                };
                let password = match &h.basic_auth {
                    None => None,
                    Some(auth) => Some(
                        one_secret(
                            "http.basic_auth.password",
                            &auth.password,
                            &auth.password_file,
                        )?
                        .unwrap_or_else(|| at(String::new())),
                    ),
                };
                let bearer_token =
                    one_secret("http.bearer_token", &h.bearer_token, &h.bearer_token_file)?;
                let authorization = match &h.authorization {
                    None => None,
                    Some(auth) => one_secret(
                        "http.authorization.credentials",
                        &auth.credentials,
                        &auth.credentials_file,
                    )?
                    .map(|credentials| AuthorizationSpec {
                        kind: auth.kind.clone(),
                        credentials,
                    }),
                };
                let oauth2 = match &h.oauth2 {
                    None => None,
                    Some(o) => {
                        let o = &o.value;
                        Some(OAuth2Spec {
                            client_id: o.client_id.clone(),
                            client_secret: one_secret(
                                "http.oauth2.client_secret",
                                &o.client_secret,
                                &o.client_secret_file,
                            )?,
                            scopes: o.scopes.clone(),
                            token_url: o.token_url.clone(),
                            endpoint_params: o.endpoint_params.clone(),
                            tls_config: o.tls_config.as_ref().map(tls_spec),
                            proxy_url: o.proxy_url.clone(),
                        })
                    }
                };
                specs.http = Some(Box::new(at_spec(
                    self.pos,
                    HttpSpec {
                        url: at(url),
                        compression: h.compression.clone(),
                        decompress_always: true,
                        http2: h.enable_http2.as_ref().map(|v| v.value),
                        proxy_from_environment: h.proxy_from_environment.clone(),
                        resolve_target_with_proxy: Some(
                            !h.skip_resolve_phase_with_proxy
                                .as_ref()
                                .is_some_and(|skip| skip.value),
                        ),
                        method: h.method,
                        headers: h.headers,
                        body: h.body,
                        body_file: h.body_file,
                        authorization,
                        oauth2,
                        no_proxy: h.no_proxy,
                        proxy_connect_header: h.proxy_connect_header,
                        basic_auth: h.basic_auth.as_ref().zip(password).map(|(auth, password)| {
                            BasicAuthSpec {
                                username: auth.username.clone(),
                                password,
                            }
                        }),
                        bearer_token,
                        follow_redirects: Some(at_spec(self.pos, FollowSpec::Bool(follow))),
                        max_redirects: None,
                        max_body,
                        tls_config: h.tls_config.as_ref().map(tls_spec),
                        proxy_url: h.proxy_url,
                        resolver: None,
                        preferred_ip_protocol: Some(preferred(
                            h.preferred_ip_protocol.as_ref(),
                            self.pos,
                        )),
                        ip_protocol_fallback: h.ip_protocol_fallback.map(|f| f.value),
                        expect: Some(HttpExpectSpec {
                            status,
                            body_regex: h.fail_if_body_not_matches_regexp.first().cloned(),
                            body_regex_also: h
                                .fail_if_body_not_matches_regexp
                                .iter()
                                .skip(1)
                                .cloned()
                                .collect(),
                            headers_if_present: (!headers_if_present.is_empty())
                                .then_some(headers_if_present),
                            body_not_regex,
                            headers: (!headers.is_empty()).then_some(headers),
                            headers_not: (!headers_not.is_empty()).then_some(headers_not),
                            http_versions: h.valid_http_versions,
                            ssl,
                            ..HttpExpectSpec::default()
                        }),
                    },
                )));
            }
            Prober::Tcp => {
                let t = self
                    .spec
                    .tcp
                    .as_ref()
                    .map(|t| t.value.clone())
                    .unwrap_or_default();
                specs.tcp = Some(Box::new(at_spec(
                    self.pos,
                    TcpSpec {
                        address: at(target.to_string()),
                        tls: t.tls,
                        tls_config: t.tls_config.as_ref().map(tls_spec),
                        send: None,
                        expect: None,
                        query_response: t
                            .query_response
                            .into_iter()
                            .map(|step| StepSpec {
                                expect: step.value.expect,
                                send: step.value.send,
                                starttls: step.value.starttls,
                            })
                            .collect(),
                        lines: true,
                        resolver: None,
                        preferred_ip_protocol: Some(preferred(
                            t.preferred_ip_protocol.as_ref(),
                            self.pos,
                        )),
                        ip_protocol_fallback: t.ip_protocol_fallback.map(|f| f.value),
                        source_ip_address: t.source_ip_address,
                    },
                )));
            }
            Prober::Dns => {
                let d = self
                    .spec
                    .dns
                    .as_ref()
                    .map(|d| d.value.clone())
                    .unwrap_or_default();
                let (transport, tls_config) = dns_transport(&d)?;
                let Some(name) = d.query_name else {
                    let at = self.spec.dns.as_ref().map_or(self.pos, |d| d.pos);
                    return Err(vec![SpecError::new(at, "dns.query_name", "required")]);
                };
                let server = target.strip_prefix("dns://").unwrap_or(target).to_string();
                if let Some(class) = &d.query_class
                    && class_from_name(class).is_none()
                {
                    return Err(vec![SpecError::new(
                        class.pos,
                        "dns.query_class",
                        format!(
                            "unknown query class {:?} (blackbox's names, in capitals: {})",
                            class.value,
                            class_names()
                        ),
                    )]);
                }
                specs.dns = Some(Box::new(at_spec(
                    self.pos,
                    DnsSpec {
                        name,
                        record_type: Some(d.query_type.unwrap_or_else(|| at("ANY".into()))),
                        class: d.query_class,
                        server: Some(at(server)),
                        transport,
                        tls_config,
                        recursion_desired: d.recursion_desired,
                        source_ip_address: d.source_ip_address,
                        expect: Some(DnsExpectSpec {
                            rcode: Some(
                                d.valid_rcodes.unwrap_or_else(|| vec![at("NOERROR".into())]),
                            ),
                            answer_rrs: d.validate_answer_rrs,
                            authority_rrs: d.validate_authority_rrs,
                            additional_rrs: d.validate_additional_rrs,
                            ..DnsExpectSpec::default()
                        }),
                    },
                )));
            }
            Prober::Icmp => {
                let i = (self.spec.icmp.as_ref())
                    .map(|i| i.value.clone())
                    .unwrap_or_default();
                specs.icmp = Some(Box::new(at_spec(
                    self.pos,
                    IcmpSpec {
                        host: at(target.to_string()),
                        preferred_ip_protocol: Some(preferred(
                            i.preferred_ip_protocol.as_ref(),
                            self.pos,
                        )),
                        ip_protocol_fallback: i.ip_protocol_fallback.map(|f| f.value),
                        payload_size: i.payload_size,
                        ttl: i.ttl,
                        dont_fragment: i.dont_fragment.is_some_and(|d| d.value),
                        source_ip_address: i.source_ip_address,
                        resolver: None,
                    },
                )));
            }
            Prober::Grpc => {
                let g = (self.spec.grpc.as_ref())
                    .map(|g| g.value.clone())
                    .unwrap_or_default();
                specs.grpc = Some(Box::new(at_spec(
                    self.pos,
                    GrpcSpec {
                        address: at(target.to_string()),
                        service: g.service,
                        tls: g.tls,
                        tls_config: g.tls_config.as_ref().map(tls_spec),
                        preferred_ip_protocol: Some(preferred(
                            g.preferred_ip_protocol.as_ref(),
                            self.pos,
                        )),
                        ip_protocol_fallback: g.ip_protocol_fallback.map(|f| f.value),
                        resolver: None,
                    },
                )));
            }
        }
        Ok(specs)
    }
}

/// `preferred_ip_protocol` as blackbox reads it: IPv6 unless the module says otherwise.
fn preferred(written: Option<&Spanned<String>>, pos: Pos) -> Spanned<String> {
    written.cloned().unwrap_or(Spanned {
        pos,
        value: "ip6".into(),
    })
}

/// A secret given at most one way, as Prometheus insists: `key` (`env:`/`file:`) or
/// `key_file` (a path, read as `file:PATH`).
fn one_secret(
    field: &str,
    inline: &Option<Spanned<String>>,
    file: &Option<Spanned<String>>,
) -> Result<Option<Spanned<String>>, Vec<SpecError>> {
    match (inline, file) {
        (Some(_), Some(f)) => Err(vec![SpecError::new(
            f.pos,
            format!("{field}_file"),
            format!(
                "cannot be given with {}",
                field.rsplit('.').next().unwrap_or(field)
            ),
        )]),
        (Some(s), None) => Ok(Some(s.clone())),
        (None, Some(f)) => Ok(Some(Spanned {
            pos: f.pos,
            value: format!("file:{}", f.value),
        })),
        (None, None) => Ok(None),
    }
}

fn at_spec<T>(pos: Pos, value: T) -> Spanned<T> {
    Spanned { pos, value }
}

fn tls_spec(tls: &TlsModule) -> TlsSpec {
    TlsSpec {
        insecure_skip_verify: tls.insecure_skip_verify,
        ca_file: tls.ca_file.clone(),
        server_name: tls.server_name.clone(),
        cert_file: tls.cert_file.clone(),
        key_file: tls.key_file.clone(),
        min_version: tls.min_version.clone(),
        max_version: tls.max_version.clone(),
    }
}

/// The inline TLS keys of later Prometheus common configs, which blackbox 0.23 refuses too:
/// its prometheus/common (v0.37) knows `ca_file`, `cert_file` and `key_file` only, so a module
/// with them does not load there either.
fn tls_unsupported(
    field: &str,
    tls: Option<&TlsModule>,
    refuse: &mut impl FnMut(&str, Option<Pos>, &str),
) {
    let Some(tls) = tls else { return };
    for (key, value, instead) in [
        ("ca", &tls.ca, "ca_file"),
        ("cert", &tls.cert, "cert_file"),
        ("key", &tls.key, "key_file"),
    ] {
        let secret = if key == "key" {
            " (slowburn would not take a private key written in the file anyway, only \
             env:NAME or file:PATH)"
        } else {
            ""
        };
        let why = format!(
            ", nor by blackbox_exporter 0.23, whose Prometheus common config (v0.37) has no \
             `{key}`: write `{instead}`{secret}"
        );
        refuse(
            &format!("{field}.{key}"),
            value.as_ref().map(|v| v.pos),
            &why,
        );
    }
}

/// The dns kind's `transport` and `tls_config`.
type DnsTransport = (Option<Spanned<String>>, Option<Spanned<TlsSpec>>);

/// The dns kind's `transport` and `tls_config` for a module's `transport_protocol`,
/// `dns_over_tls` and `tls_config`, as blackbox reads them.
fn dns_transport(d: &DnsModule) -> Result<DnsTransport, Vec<SpecError>> {
    let over_tls = d.dns_over_tls.as_ref().filter(|t| t.value);
    match (over_tls, &d.tls_config) {
        (None, None) => Ok((d.transport_protocol.clone(), None)),
        (None, Some(tls)) => Err(vec![SpecError::new(
            tls.pos,
            "dns.tls_config",
            "has no effect without dns_over_tls: true (blackbox ignores it): remove it",
        )]),
        (Some(on), tls) => match &d.transport_protocol {
            Some(t) if t.value == "tcp" => Ok((
                Some(Spanned {
                    pos: on.pos,
                    value: "tls".into(),
                }),
                tls.as_ref().map(|t| Spanned {
                    pos: t.pos,
                    value: tls_spec(&t.value),
                }),
            )),
            _ => Err(vec![SpecError::new(
                on.pos,
                "dns.dns_over_tls",
                "needs transport_protocol: tcp (blackbox fails every probe of a module with \
                 dns_over_tls over udp, its default)",
            )]),
        },
    }
}

/// A dns module's `preferred_ip_protocol`/`ip_protocol_fallback`: its target is the server's
/// address, so there is nothing to resolve and a preference changes nothing, unless it
/// refuses the other family.
fn ip_protocol(
    section: &str,
    preferred: Option<&Spanned<String>>,
    fallback: Option<&Spanned<bool>>,
    refuse: &mut impl FnMut(&str, Option<Pos>, &str),
) {
    if let Some(p) = preferred
        && !matches!(p.as_str(), "ip4" | "ip6" | "")
    {
        refuse(
            &format!("{section}.preferred_ip_protocol"),
            Some(p.pos),
            ": write ip4 or ip6",
        );
    }
    if let Some(f) = fallback
        && !f.value
    {
        refuse(
            &format!("{section}.ip_protocol_fallback"),
            Some(f.pos),
            " for dns modules: the server is given as an address",
        );
    }
}

/// `body_size_limit` as blackbox reads it (Base2Bytes: `1MB` is 1024 KiB, a bare number is
/// bytes), in slowburn's unit syntax.
fn body_size(limit: &ScalarText) -> Result<String, String> {
    let text = limit.0.trim();
    let base2 = ["KB", "MB", "GB", "TB"].iter().find_map(|unit| {
        text.strip_suffix(unit)
            .map(|n| format!("{n}{}iB", &unit[..1]))
    });
    let text = base2.unwrap_or_else(|| text.to_string());
    match parse_size(&text)? {
        0 => Err("0 (no limit) is not supported: give a size".into()),
        _ => Ok(text),
    }
}

/// The key a blackbox user wrote for a field of slowburn's spec it was translated into, so
/// an error names what is in their file.
fn blackbox_field(prober: Prober, field: &str) -> String {
    let renamed = match (prober, field) {
        (Prober::Http, "expect.status") => "valid_status_codes",
        (Prober::Http, "expect.http_versions") => "valid_http_versions",
        (Prober::Http, "expect.body_not_regex") => "fail_if_body_matches_regexp",
        (Prober::Http, "expect.body_regex") => "fail_if_body_not_matches_regexp",
        (Prober::Http, "expect.headers" | "expect.headers_if_present") => {
            "fail_if_header_not_matches"
        }
        (Prober::Http, "expect.headers_not") => "fail_if_header_matches",
        (Prober::Http, "max_body") => "body_size_limit",
        (Prober::Dns, "name") => "query_name",
        (Prober::Dns, "type") => "query_type",
        (Prober::Dns, "transport") => "transport_protocol",
        (Prober::Dns, "expect.rcode") => "valid_rcodes",
        (Prober::Dns, other) => {
            let renamed = [
                ("expect.answer_rrs", "validate_answer_rrs"),
                ("expect.authority_rrs", "validate_authority_rrs"),
                ("expect.additional_rrs", "validate_additional_rrs"),
            ]
            .into_iter()
            .find_map(|(ours, theirs)| {
                other
                    .strip_prefix(ours)
                    .map(|rest| format!("{theirs}{rest}"))
            });
            return format!("dns.{}", renamed.as_deref().unwrap_or(other));
        }
        (_, other) => other,
    };
    format!("{}.{renamed}", prober.kind())
}

/// Every error of a build as one line for `/probe`'s log.
fn describe(errors: Vec<SpecError>) -> String {
    errors
        .into_iter()
        .map(|e| {
            if e.field.is_empty() {
                e.message
            } else {
                format!("{}: {}", e.field, e.message)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}
