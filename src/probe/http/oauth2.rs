//! `oauth2:`: the client-credentials grant, as Prometheus' common config (blackbox_exporter's)
//! does it through Go's `golang.org/x/oauth2/clientcredentials`. The token endpoint is asked
//! with a form-encoded `POST` (`grant_type=client_credentials`, `scope`, the
//! `endpoint_params`), the client authenticated with a basic-auth header (the first style
//! Go's `AuthStyleAutoDetect` tries); the token is kept until ten seconds before its
//! `expires_in` runs out (Go's `expiryDelta`), and sent as `Authorization: <type> <token>`.
//!
//! The token request is not one of the probe's phases: it uses a client of its own (its own
//! `tls_config` and `proxy_url`), and its time is counted in the run's `processing` phase.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::HeaderValue;
use serde::Deserialize;

use super::request::base64;
use crate::basics::units::Secret;
use crate::basics::yaml::Spanned;
use crate::probe::net::TlsSpec;
use crate::probe::{BuildContext, Failure, SpecError};

/// A token is renewed this long before it expires, as Go's oauth2 does.
const EXPIRY_MARGIN: Duration = Duration::from_secs(10);

/// The most of a token endpoint's answer that is read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;

/// `oauth2:` as written in a probe file.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Spec {
    pub client_id: Spanned<String>,
    /// `env:NAME` or `file:PATH`; none is an empty secret, as in Prometheus.
    pub client_secret: Option<Spanned<String>>,
    #[serde(default)]
    pub scopes: Vec<String>,
    pub token_url: Spanned<String>,
    #[serde(default)]
    pub endpoint_params: BTreeMap<String, String>,
    /// TLS towards the token endpoint.
    pub tls_config: Option<TlsSpec>,
    /// A forward proxy for the token request (`http://host:port`).
    pub proxy_url: Option<Spanned<String>>,
}

/// A validated `oauth2:` with the token it holds.
pub(super) struct OAuth2 {
    client: reqwest::Client,
    token_url: reqwest::Url,
    /// `Basic base64(client_id:client_secret)`, each query-escaped as Go does.
    client_auth: HeaderValue,
    form: String,
    token: Mutex<Option<Token>>,
}

impl std::fmt::Debug for OAuth2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2")
            .field("token_url", &self.token_url.as_str())
            .finish_non_exhaustive()
    }
}

/// A token and when it is to be renewed (`None`: it does not expire).
#[derive(Clone)]
struct Token {
    header: HeaderValue,
    renew_at: Option<Instant>,
}

impl OAuth2 {
    /// Validates `spec` (the secret read now) and builds the client for the token endpoint.
    pub(super) fn new(spec: &OAuth2Spec, ctx: &BuildContext) -> Result<OAuth2, Vec<SpecError>> {
        let mut errors = Vec::new();
        if spec.client_id.is_empty() {
            errors.push(SpecError::new(
                spec.client_id.pos,
                "oauth2.client_id",
                "must not be empty",
            ));
        }
        let secret = match &spec.client_secret {
            None => Some(String::new()),
            Some(reference) => Secret::resolve(reference)
                .map(|s| s.expose().to_string())
                .map_err(|m| errors.push(SpecError::new(reference.pos, "oauth2.client_secret", m)))
                .ok(),
        };
        let token_url = match reqwest::Url::parse(&spec.token_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => Some(url),
            Ok(url) => {
                errors.push(SpecError::new(
                    spec.token_url.pos,
                    "oauth2.token_url",
                    format!("scheme {:?} is not http or https", url.scheme()),
                ));
                None
            }
            Err(e) => {
                errors.push(SpecError::new(
                    spec.token_url.pos,
                    "oauth2.token_url",
                    format!("invalid URL {:?}: {e}", spec.token_url.value),
                ));
                None
            }
        };
        if let Some(param) = spec
            .endpoint_params
            .keys()
            .find(|k| *k == "scope" && !spec.scopes.is_empty())
        {
            errors.push(SpecError::new(
                spec.token_url.pos,
                "oauth2.endpoint_params",
                format!("cannot overwrite parameter {param:?} (given by scopes)"),
            ));
        }
        let tls = ctx
            .net
            .tls_config(&spec.tls_config.clone().unwrap_or_default(), &[b"http/1.1"])
            .map_err(|mut e| {
                e.field = format!("oauth2.{}", e.field);
                errors.push(e)
            })
            .ok();
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("slowburn/", env!("CARGO_PKG_VERSION")))
            .no_proxy();
        if let Some(url) = &spec.proxy_url {
            match reqwest::Proxy::all(url.as_str()) {
                Ok(proxy) if url.starts_with("http://") => builder = builder.proxy(proxy),
                Ok(_) => errors.push(SpecError::new(
                    url.pos,
                    "oauth2.proxy_url",
                    format!(
                        "proxy URL {:?}: only http:// proxies are supported",
                        url.value
                    ),
                )),
                Err(e) => errors.push(SpecError::new(
                    url.pos,
                    "oauth2.proxy_url",
                    format!("invalid proxy URL {:?}: {e}", url.value),
                )),
            }
        }
        let (Some(secret), Some(token_url), Some(tls), true) =
            (secret, token_url, tls, errors.is_empty())
        else {
            return Err(errors);
        };
        let client = builder
            .use_preconfigured_tls((*tls).clone())
            .build()
            .map_err(|e| {
                vec![SpecError::new(
                    spec.token_url.pos,
                    "oauth2",
                    format!("cannot build the HTTP client: {e}"),
                )]
            })?;
        let basic = base64(
            format!(
                "{}:{}",
                query_escape(&spec.client_id),
                query_escape(&secret)
            )
            .as_bytes(),
        );
        let mut client_auth = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
            vec![SpecError::new(
                spec.client_id.pos,
                "oauth2.client_id",
                "not a valid header value",
            )]
        })?;
        client_auth.set_sensitive(true);
        Ok(OAuth2 {
            client,
            token_url,
            client_auth,
            form: form(&spec.scopes, &spec.endpoint_params),
            token: Mutex::new(None),
        })
    }

    /// The `Authorization` value: the kept token while it is valid, else a new one.
    pub(super) async fn authorization(&self) -> Result<HeaderValue, Failure> {
        let now = Instant::now();
        if let Some(token) = self.lock().as_ref()
            && token.renew_at.is_none_or(|at| now < at)
        {
            return Ok(token.header.clone());
        }
        let token = self.fetch().await?;
        let header = token.header.clone();
        *self.lock() = Some(token);
        Ok(header)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Token>> {
        self.token.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the token endpoint for a new token.
    async fn fetch(&self) -> Result<Token, Failure> {
        let failed = |why: String| {
            Failure::Http(format!(
                "oauth2: cannot fetch a token from {}: {why}",
                self.token_url
            ))
        };
        let asked = Instant::now();
        let response = self
            .client
            .post(self.token_url.clone())
            .header(http::header::AUTHORIZATION, self.client_auth.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(self.form.clone())
            .send()
            .await
            .map_err(|e| failed(describe(&e)))?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = read_limited(response)
            .await
            .map_err(|e| failed(describe(&e)))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body);
            let text = text.trim();
            return Err(failed(match text.is_empty() {
                true => format!("status {status}"),
                false => format!("status {status}: {}", shorten(text)),
            }));
        }
        let answer = parse_answer(&content_type, &body).map_err(failed)?;
        let header = HeaderValue::from_str(&format!(
            "{} {}",
            token_type(&answer.token_type),
            answer.access_token
        ))
        .map_err(|_| failed("the access_token is not a valid header value".into()))?;
        let mut header = header;
        header.set_sensitive(true);
        Ok(Token {
            header,
            renew_at: (answer.expires_in > 0).then(|| {
                (asked + Duration::from_secs(answer.expires_in as u64))
                    .checked_sub(EXPIRY_MARGIN)
                    .unwrap_or(asked)
            }),
        })
    }
}

/// What a token endpoint answered.
#[derive(Debug, Default, PartialEq)]
struct Answer {
    access_token: String,
    token_type: String,
    expires_in: i64,
}

/// A token endpoint's answer: JSON, or form-encoded when it says so (GitHub's old
/// endpoints), as Go's oauth2 reads it.
fn parse_answer(content_type: &str, body: &[u8]) -> Result<Answer, String> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let answer = if media == "application/x-www-form-urlencoded" || media == "text/plain" {
        let text = String::from_utf8_lossy(body);
        let mut answer = Answer::default();
        for (key, value) in url_pairs(&text) {
            match key.as_str() {
                "access_token" if answer.access_token.is_empty() => answer.access_token = value,
                "token_type" if answer.token_type.is_empty() => answer.token_type = value,
                "expires_in" if answer.expires_in == 0 => {
                    answer.expires_in = value.parse().unwrap_or(0)
                }
                _ => {}
            }
        }
        answer
    } else {
        let json: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON: {e}"))?;
        let text = |key: &str| json[key].as_str().unwrap_or("").to_string();
        let expires_in = match &json["expires_in"] {
            serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
            serde_json::Value::String(s) => s.parse().unwrap_or(0),
            _ => 0,
        };
        Answer {
            access_token: text("access_token"),
            token_type: text("token_type"),
            expires_in: expires_in.min(i64::from(i32::MAX)),
        }
    };
    if answer.access_token.is_empty() {
        return Err("the answer has no access_token".into());
    }
    Ok(answer)
}

/// The word before the token, as Go's `Token.Type` writes it.
fn token_type(written: &str) -> &str {
    for known in ["Bearer", "MAC", "Basic"] {
        if written.eq_ignore_ascii_case(known) {
            return known;
        }
    }
    if written.is_empty() {
        "Bearer"
    } else {
        written
    }
}

/// The form Go's `url.Values.Encode` writes: keys sorted, values query-escaped.
fn form(scopes: &[String], endpoint_params: &BTreeMap<String, String>) -> String {
    let mut pairs: BTreeMap<&str, String> = BTreeMap::new();
    pairs.insert("grant_type", "client_credentials".into());
    if !scopes.is_empty() {
        pairs.insert("scope", scopes.join(" "));
    }
    for (key, value) in endpoint_params {
        pairs.insert(key, value.clone());
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", query_escape(k), query_escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.QueryEscape`: unreserved bytes as they are, a space as `+`, the rest `%XX`.
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `a=1&b=2` decoded (`+` is a space, `%XX` a byte).
fn url_pairs(text: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(b) => {
                            out.push(b);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    text.trim()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// At most [`MAX_TOKEN_ANSWER`] bytes of the answer.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_TOKEN_ANSWER {
            body.truncate(MAX_TOKEN_ANSWER);
            break;
        }
    }
    Ok(body)
}

/// A reqwest error with its causes, in one line.
fn describe(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// The first line of an error answer, at most 200 characters.
fn shorten(text: &str) -> String {
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_what_go_encodes() {
        let params = BTreeMap::from([("audience".to_string(), "https://api/x y".to_string())]);
        assert_eq!(
            form(&["read".into(), "write:all".into()], &params),
            "audience=https%3A%2F%2Fapi%2Fx+y&grant_type=client_credentials&scope=read+write%3Aall"
        );
        assert_eq!(form(&[], &BTreeMap::new()), "grant_type=client_credentials");
    }

    #[test]
    fn answers_in_json_and_form_encoding() {
        let json = parse_answer(
            "application/json; charset=utf-8",
            br#"{"access_token":"abc","token_type":"bearer","expires_in":3600}"#,
        )
        .unwrap();
        assert_eq!(
            json,
            Answer {
                access_token: "abc".into(),
                token_type: "bearer".into(),
                expires_in: 3600
            }
        );
        let form = parse_answer(
            "application/x-www-form-urlencoded",
            b"access_token=a%2Bb&expires_in=60",
        )
        .unwrap();
        assert_eq!((form.access_token.as_str(), form.expires_in), ("a+b", 60));
        assert!(
            parse_answer("application/json", br#"{"token_type":"bearer"}"#)
                .unwrap_err()
                .contains("no access_token")
        );
        assert_eq!(token_type("bearer"), "Bearer");
        assert_eq!(token_type(""), "Bearer");
        assert_eq!(token_type("DPoP"), "DPoP");
    }
}
