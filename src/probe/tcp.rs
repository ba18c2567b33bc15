//! The `tcp:` probe: connect (optionally over TLS), optionally send bytes and wait for a reply
//! matching a regex, optionally upgrade to TLS mid-dialogue (STARTTLS). Phases: `resolve`,
//! `connect`, `tls`, `exchange`.

use std::net::IpAddr;
use std::sync::Arc;

use regex::bytes::Regex;
use rustls::ClientConfig;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::net::{self, Resolver, TlsSpec};
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{KindInfo, Signal, Unit};
use crate::basics::yaml::Spanned;

/// How much of the reply is read while looking for `expect`.
const MAX_REPLY: usize = 64 * 1024;

/// `tcp:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpSpec {
    /// `host:port`.
    pub address: Spanned<String>,
    #[serde(default)]
    pub tls: bool,
    pub tls_config: Option<TlsSpec>,
    /// Bytes to send once connected (escapes such as `\r\n` are written in YAML double quotes).
    pub send: Option<String>,
    /// A regex the reply must match, read up to 64 KiB.
    pub expect: Option<Spanned<String>>,
    /// A dialogue, after `send`/`expect`: each step waits for its `expect` (a regex over what
    /// arrived since the previous match), then writes its `send`, in which `${1}` is a group
    /// of that step's match (blackbox_exporter's `query_response`).
    #[serde(default)]
    pub query_response: Vec<StepSpec>,
    /// The dialogue as blackbox_exporter runs it: each `expect` is matched against one line at
    /// a time (without its `\n` or `\r\n`) and each `send` gets a `\n`. Set for blackbox
    /// modules only; a probe file cannot write it.
    #[serde(skip)]
    #[schemars(skip)]
    pub lines: bool,
    pub resolver: Option<Vec<Spanned<String>>>,
    /// `ip4` (default) or `ip6`: the address family tried first.
    pub preferred_ip_protocol: Option<Spanned<String>>,
    /// Whether the other family is taken when the name has none of the preferred (default
    /// true).
    pub ip_protocol_fallback: Option<bool>,
    /// The local address to connect from (one of this host's, of the target's family).
    pub source_ip_address: Option<Spanned<String>>,
}

/// One step of `query_response`.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub expect: Option<Spanned<String>>,
    pub send: Option<String>,
    /// After this step's `expect` and `send`, upgrade the connection to TLS with
    /// `tls_config` (STARTTLS, as SMTP and IMAP do); the steps after it run over TLS.
    #[serde(default)]
    pub starttls: bool,
}

/// A validated step: wait for `expect` (if any), write `send` (if any), then shake hands
/// over the connection with `starttls`' server name and config (if any).
#[derive(Debug)]
struct Step {
    expect: Option<Regex>,
    send: Option<Vec<u8>>,
    starttls: Option<(String, Arc<ClientConfig>)>,
}

#[derive(Debug)]
pub struct TcpProbe {
    host: String,
    port: u16,
    tls: Option<(String, Arc<ClientConfig>)>,
    steps: Vec<Step>,
    lines: bool,
    source: Option<IpAddr>,
    resolver: Resolver,
}

impl TcpProbe {
    pub fn new(spec: Spanned<TcpSpec>, ctx: &BuildContext) -> Result<TcpProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let address = split_host_port(&spec.address)
            .map_err(|m| errors.push(SpecError::new(spec.address.pos, "address", m)))
            .ok();
        let mut regex = |re: &Spanned<String>, field: &str| {
            Regex::new(re)
                .map_err(|e| {
                    errors.push(SpecError::new(re.pos, field, format!("invalid regex: {e}")))
                })
                .ok()
        };
        let mut steps = Vec::new();
        if spec.send.is_some() || spec.expect.is_some() {
            if let Some(send) = &spec.send {
                steps.push(Step {
                    expect: None,
                    send: Some(send.clone().into_bytes()),
                    starttls: None,
                });
            }
            if let Some(re) = &spec.expect {
                steps.push(Step {
                    expect: regex(re, "expect"),
                    send: None,
                    starttls: None,
                });
            }
        }
        let mut starttls = Vec::new();
        for step in &spec.query_response {
            steps.push(Step {
                expect: step
                    .expect
                    .as_ref()
                    .and_then(|re| regex(re, "query_response.expect")),
                send: step.send.clone().map(String::into_bytes),
                starttls: None,
            });
            starttls.push(step.starttls);
        }
        let source = net::source_address(spec.source_ip_address.as_ref(), &mut errors);
        let tls_spec = spec.tls_config.clone().unwrap_or_default();
        let wants_starttls = starttls.contains(&true);
        if spec.tls && wants_starttls {
            errors.push(SpecError::new(
                spec.address.pos,
                "query_response.starttls",
                "starttls upgrades a plain connection, and with tls: true it is TLS from the \
                 start: remove one",
            ));
        }
        let tls = if spec.tls || wants_starttls {
            ctx.net
                .tls_config(&tls_spec, &[])
                .map_err(|e| errors.push(e))
                .ok()
        } else {
            None
        };
        let resolver = net::IpPreference::from_spec(
            spec.preferred_ip_protocol.as_ref(),
            spec.ip_protocol_fallback,
        )
        .and_then(|preference| ctx.net.resolver(spec.resolver.as_deref(), preference))
        .map_err(|e| errors.push(e))
        .ok();
        match (address, resolver) {
            (Some((host, port)), Some(resolver)) if errors.is_empty() => {
                // blackbox's default server name for both: the target's host.
                let tls = tls
                    .map(|config| (tls_spec.server_name.unwrap_or_else(|| host.clone()), config));
                let first = steps.len() - starttls.len();
                for (step, upgrade) in steps[first..].iter_mut().zip(starttls) {
                    if upgrade {
                        step.starttls = tls.clone();
                    }
                }
                Ok(TcpProbe {
                    tls: tls.filter(|_| spec.tls),
                    host,
                    port,
                    steps,
                    lines: spec.lines,
                    source,
                    resolver,
                })
            }
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let tls = self
            .tls
            .as_ref()
            .map(|(name, config)| (name.as_str(), config.clone()));
        let mut stream = net::open_from(
            &self.host,
            self.port,
            &self.resolver,
            tls,
            self.source,
            trace,
        )
        .await?;
        if !self.steps.is_empty() {
            trace.enter("exchange");
            let expects = self.steps.iter().any(|s| s.expect.is_some());
            if expects {
                trace.signal("failed_due_to_regex", 0.0);
            }
            let mut reply = Vec::with_capacity(512);
            for step in &self.steps {
                let mut send = step.send.clone();
                if let Some(re) = &step.expect {
                    let check = if self.lines {
                        read_line_matching(&mut stream, &mut reply, re).await
                    } else {
                        // What follows the match is read by the next step's expect.
                        read_until_match(&mut stream, &mut reply, re).await.map(
                            |(captured, end)| {
                                reply.drain(..end);
                                captured
                            },
                        )
                    };
                    if let (Some(template), Ok(captured)) = (&step.send, &check) {
                        let mut expanded = Vec::new();
                        captured.expand(template, &mut expanded);
                        send = Some(expanded);
                    }
                    let failure = trace.check(
                        "expect",
                        check.map(|_| format!("reply matches {:?}", re.as_str())),
                    );
                    if let Some(failure) = failure {
                        trace.signal("failed_due_to_regex", 1.0);
                        return Err(failure);
                    }
                }
                if self.lines {
                    // blackbox writes a non-empty send as a line and skips an empty one.
                    send = send.filter(|s| !s.is_empty()).map(|mut s| {
                        s.push(b'\n');
                        s
                    });
                }
                if let Some(bytes) = &send {
                    stream
                        .write_all(bytes)
                        .await
                        .map_err(|e| Failure::Expect(format!("send failed: {e}")))?;
                }
                if let Some((name, config)) = &step.starttls {
                    stream = upgrade(stream, name, config.clone(), trace).await?;
                    // Whatever arrived in plain text before the handshake is not the TLS
                    // side's to read, as blackbox starts a new reader there too.
                    reply.clear();
                    trace.enter("exchange");
                }
            }
        }
        trace.finish();
        trace.signal("latency", trace.elapsed().as_secs_f64());
        Ok(())
    }
}

/// The handshake of STARTTLS over a connection that was plain until now, recording the TLS
/// signals as a connection that starts with TLS does.
async fn upgrade(
    stream: net::Stream,
    server_name: &str,
    config: Arc<ClientConfig>,
    trace: &mut Trace,
) -> Result<net::Stream, Failure> {
    match stream {
        net::Stream::Plain(tcp) => Ok(net::Stream::Tls(Box::new(
            net::handshake(tcp, server_name, config, trace).await?,
        ))),
        tls @ net::Stream::Tls(_) => Ok(tls),
    }
}

/// Reads lines until one matches `re`, as blackbox's line scanner does: a line is what comes
/// before a `\n` (a `\r` before it dropped), or what is left when the peer closes. `pending`
/// keeps what arrived after the matching line, for the next step.
async fn read_line_matching(
    stream: &mut net::Stream,
    pending: &mut Vec<u8>,
    re: &Regex,
) -> Result<Captured, Failure> {
    let mut chunk = [0u8; 4096];
    let mut closed = false;
    loop {
        while let Some(line) = next_line(pending, closed) {
            if let Some(captures) = re.captures(&line) {
                return Ok(Captured::of(&captures));
            }
        }
        if closed {
            return Err(Failure::Expect(format!(
                "connection closed without a line matching {:?}",
                re.as_str()
            )));
        }
        if pending.len() >= MAX_REPLY {
            return Err(Failure::Expect("a line longer than 64KiB".into()));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => closed = true,
            Ok(n) => pending.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(Failure::Expect(format!("read failed: {e}"))),
        }
    }
}

/// The first line of `pending`, taken out of it: up to a `\n`, or, once the peer closed,
/// whatever is left.
fn next_line(pending: &mut Vec<u8>, closed: bool) -> Option<Vec<u8>> {
    let mut line = match pending.iter().position(|b| *b == b'\n') {
        Some(end) => {
            let mut line: Vec<u8> = pending.drain(..=end).collect();
            line.pop();
            line
        }
        None if closed && !pending.is_empty() => std::mem::take(pending),
        None => return None,
    };
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Some(line)
}

/// Reads into `reply` until `re` matches it; the match's groups (owned) and where it ends.
async fn read_until_match(
    stream: &mut net::Stream,
    reply: &mut Vec<u8>,
    re: &Regex,
) -> Result<(Captured, usize), Failure> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(captures) = re.captures(reply) {
            let end = captures.get(0).map_or(0, |m| m.end());
            return Ok((Captured::of(&captures), end));
        }
        if reply.len() >= MAX_REPLY {
            return Err(Failure::Expect(format!(
                "no match for {:?} in the first 64KiB",
                re.as_str()
            )));
        }
        match stream.read(&mut chunk).await {
            Ok(0) => {
                return Err(Failure::Expect(format!(
                    "connection closed after {} bytes without a match for {:?}",
                    reply.len(),
                    re.as_str()
                )));
            }
            Ok(n) => reply.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(Failure::Expect(format!("read failed: {e}"))),
        }
    }
}

/// The groups of one match, kept after the reply buffer moves on.
struct Captured(Vec<Option<Vec<u8>>>);

impl Captured {
    fn of(captures: &regex::bytes::Captures<'_>) -> Self {
        Captured(
            captures
                .iter()
                .map(|m| m.map(|m| m.as_bytes().to_vec()))
                .collect(),
        )
    }

    /// `template` with `$1`/`${1}` replaced by this match's groups, as Go's `Regexp.Expand`.
    fn expand(&self, template: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < template.len() {
            if template[i] == b'$' && template.get(i + 1) == Some(&b'$') {
                out.push(b'$');
                i += 2;
                continue;
            }
            if template[i] == b'$' {
                let (digits, skip) = match template.get(i + 1) {
                    Some(b'{') => {
                        let end = template[i + 2..].iter().position(|b| *b == b'}');
                        match end {
                            Some(end) => (&template[i + 2..i + 2 + end], end + 3),
                            None => (&template[..0], 1),
                        }
                    }
                    _ => {
                        let n = template[i + 1..]
                            .iter()
                            .take_while(|b| b.is_ascii_digit())
                            .count();
                        (&template[i + 1..i + 1 + n], n + 1)
                    }
                };
                let group = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<usize>().ok());
                if let Some(group) = group {
                    if let Some(Some(bytes)) = self.0.get(group) {
                        out.extend_from_slice(bytes);
                    }
                    i += skip;
                    continue;
                }
            }
            out.push(template[i]);
            i += 1;
        }
    }
}

/// Splits `host:port` (or `[v6]:port`).
pub(super) fn split_host_port(address: &str) -> Result<(String, u16), String> {
    let err = || format!("invalid address {address:?}: expected host:port");
    let (host, port) = address.rsplit_once(':').ok_or_else(err)?;
    let port: u16 = port.parse().map_err(|_| err())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(err());
    }
    Ok((host.to_string(), port))
}

impl super::Kind for TcpProbe {
    type Spec = TcpSpec;
    const INFO: KindInfo = KIND;
    const TARGET_KEY: Option<&'static str> = Some("address");

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<TcpSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        TcpProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        TcpProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        TcpProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `tcp:` probes.
pub const KIND: KindInfo = KindInfo {
    name: "tcp",
    headline: "latency",
    network: true,
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new(
            "failed_due_to_regex",
            Unit::Count,
            Some(&net::FAILED_DUE_TO_REGEX),
        )
        .exported_only(),
        Signal::new("ip_protocol", Unit::Count, Some(&net::IP_PROTOCOL)).exported_only(),
        Signal::new("ip_addr_hash", Unit::Count, Some(&net::IP_ADDR_HASH)).exported_only(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(split_host_port("db:5432"), Ok(("db".into(), 5432)));
        assert_eq!(split_host_port("[::1]:53"), Ok(("::1".into(), 53)));
        assert!(split_host_port("db").is_err());
        assert!(split_host_port(":80").is_err());
        assert!(split_host_port("db:http").is_err());
    }

    #[test]
    fn lines_are_cut_as_blackbox_scanner_cuts_them() {
        let mut pending = b"220 mx ESMTP\r\n250-STARTTLS\nhalf".to_vec();
        assert_eq!(next_line(&mut pending, false).unwrap(), b"220 mx ESMTP");
        assert_eq!(next_line(&mut pending, false).unwrap(), b"250-STARTTLS");
        assert_eq!(next_line(&mut pending, false), None);
        assert_eq!(next_line(&mut pending, true).unwrap(), b"half");
        assert_eq!(next_line(&mut pending, true), None);
    }

    #[test]
    fn sends_expand_the_groups_of_the_match() {
        let re = Regex::new("PING :([^ ]+)").unwrap();
        let captures = re.captures(b"xx PING :abc123 tail").unwrap();
        let mut out = Vec::new();
        Captured::of(&captures).expand(b"PONG ${1} $1 $9 $$x", &mut out);
        assert_eq!(out, b"PONG abc123 abc123  $x");
    }
}
