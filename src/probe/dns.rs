//! The `dns:` probe: one query of one record type to one server, over UDP, TCP or TLS (DNS
//! over TLS, RFC 7858), with the response code and answers checked. The query is built and read
//! with hickory-proto directly, so the probe sees the server's real rcode (a resolver would hide
//! it behind retries). Phases: `connect` and `tls` (TCP and TLS only) and `resolve`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use hickory_resolver::proto::op::{Message, Query, ResponseCode};
use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use regex::Regex;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::UdpSocket;

use super::net::TlsSpec;
use super::{BuildContext, Failure, SpecError, Trace, first_failure};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::yaml::Spanned;

/// `dns:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    pub name: Spanned<String>,
    #[serde(rename = "type")]
    pub record_type: Option<Spanned<String>>,
    /// The query's class: `IN` (the default), `CH` (e.g. `version.bind`), `HS`, `CS`, `NONE`
    /// or `ANY`, the names blackbox_exporter's `query_class` takes.
    pub class: Option<Spanned<String>>,
    /// `ip` or `ip:port` (port 53, or 853 over TLS); the first system nameserver when absent.
    pub server: Option<Spanned<String>>,
    /// `udp` (the default), `tcp`, or `tls`: DNS over TCP inside TLS, as blackbox_exporter's
    /// `dns_over_tls`.
    pub transport: Option<Spanned<String>>,
    /// TLS options of `transport: tls`. The name verified (and sent as SNI) is `server_name`,
    /// else the server's address, as in blackbox_exporter.
    pub tls_config: Option<Spanned<TlsSpec>>,
    pub recursion_desired: Option<bool>,
    /// The local address to send the query from (one of this host's, of the server's
    /// family).
    pub source_ip_address: Option<Spanned<String>>,
    pub expect: Option<DnsExpectSpec>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DnsExpectSpec {
    pub rcode: Option<Vec<Spanned<String>>>,
    pub min_answers: Option<Spanned<usize>>,
    pub max_answers: Option<Spanned<usize>>,
    pub answer_regex: Option<Spanned<String>>,
    /// Regexes over each record of the answer section, as blackbox's `validate_answer_rrs`.
    pub answer_rrs: Option<RrCheckSpec>,
    /// The same over the authority section (`validate_authority_rrs`).
    pub authority_rrs: Option<RrCheckSpec>,
    /// The same over the additional section (`validate_additional_rrs`).
    pub additional_rrs: Option<RrCheckSpec>,
}

/// Regexes matched against each record of one section of the reply, written as miekg/dns
/// (blackbox_exporter's library) writes a record: `name.\tTTL\tIN\tTYPE\tRDATA`, e.g.
/// `example.com.\t3600\tIN\tA\t127.0.0.1`. The keys and their meaning are blackbox's.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RrCheckSpec {
    /// Fails when any record matches any of these.
    #[serde(default)]
    pub fail_if_matches_regexp: Vec<Spanned<String>>,
    /// blackbox's meaning, whatever the name says: fails when some record does not match one
    /// of these (an empty section passes).
    #[serde(default)]
    pub fail_if_all_match_regexp: Vec<Spanned<String>>,
    /// Fails when some record does not match one of these, or the section is empty.
    #[serde(default)]
    pub fail_if_not_matches_regexp: Vec<Spanned<String>>,
    /// Fails unless some record matches one of these (an empty section fails).
    #[serde(default)]
    pub fail_if_none_matches_regexp: Vec<Spanned<String>>,
}

#[derive(Debug)]
pub struct DnsProbe {
    name: Name,
    record_type: RecordType,
    class: DNSClass,
    server: Result<SocketAddr, String>,
    transport: Transport,
    source: Option<IpAddr>,
    recursion_desired: bool,
    rcodes: Vec<u16>,
    min_answers: usize,
    max_answers: Option<usize>,
    answer_regex: Option<Regex>,
    /// The answer, authority and additional sections' checks, in blackbox's order.
    rr_checks: Vec<RrCheck>,
}

/// How the query travels.
#[derive(Debug)]
enum Transport {
    Udp,
    Tcp,
    /// DNS over TLS; `server_name` is `tls_config.server_name` (else the server's address).
    Tls {
        config: Arc<rustls::ClientConfig>,
        server_name: Option<String>,
    },
}

/// The transport a spec asks for: TLS (`tls`, from `transport: tls`) with its client config,
/// else TCP or UDP. A `tls_config` without TLS is a mistake, not a silent no-op.
fn transport(
    tls: bool,
    written: Option<&Spanned<String>>,
    tls_config: Option<Spanned<TlsSpec>>,
    ctx: &BuildContext,
) -> Result<Transport, SpecError> {
    match (written, tls_config) {
        (_, tls_config) if tls => {
            let tls_config = tls_config.map(|t| t.value).unwrap_or_default();
            Ok(Transport::Tls {
                config: ctx.net.tls_config(&tls_config, &[])?,
                server_name: tls_config.server_name,
            })
        }
        (_, Some(t)) => Err(SpecError::new(
            t.pos,
            "tls_config",
            "has no effect without transport: tls",
        )),
        (Some(t), None) if t.value == "tcp" => Ok(Transport::Tcp),
        _ => Ok(Transport::Udp),
    }
}

/// The query classes blackbox_exporter takes by name (miekg/dns's `StringToClass`), with
/// their numbers; hickory encodes each, `CS` as a class it has no name for.
const CLASSES: [(&str, u16); 6] = [
    ("IN", 1),
    ("CS", 2),
    ("CH", 3),
    ("HS", 4),
    ("NONE", 254),
    ("ANY", 255),
];

/// A class by blackbox's name for it (exactly as written: miekg's names are capitals).
pub fn class_from_name(name: &str) -> Option<DNSClass> {
    CLASSES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, code)| DNSClass::from(*code))
}

/// The names [`class_from_name`] knows, for error messages.
pub fn class_names() -> String {
    CLASSES.map(|(n, _)| n).join(", ")
}

/// The sections of a reply whose records `RrCheck` validates.
#[derive(Debug, Clone, Copy)]
enum Section {
    Answer,
    Authority,
    Additional,
}

impl Section {
    fn name(self) -> &'static str {
        match self {
            Section::Answer => "answer",
            Section::Authority => "authority",
            Section::Additional => "additional",
        }
    }

    fn records(self, message: &Message) -> &[Record] {
        match self {
            Section::Answer => &message.answers,
            Section::Authority => &message.authorities,
            Section::Additional => &message.additionals,
        }
    }
}

/// A validated `RrCheckSpec` for one section.
#[derive(Debug)]
struct RrCheck {
    section: Section,
    matches: Vec<Regex>,
    all_match: Vec<Regex>,
    not_matches: Vec<Regex>,
    none_matches: Vec<Regex>,
}

impl RrCheck {
    /// Builds the check of one section; `field` is the spec's key, for errors.
    fn new(
        section: Section,
        field: &str,
        spec: RrCheckSpec,
        errors: &mut Vec<SpecError>,
    ) -> RrCheck {
        let mut compile = |key: &str, list: Vec<Spanned<String>>| -> Vec<Regex> {
            list.iter()
                .filter_map(|re| {
                    Regex::new(re)
                        .map_err(|e| {
                            errors.push(SpecError::new(
                                re.pos,
                                format!("{field}.{key}"),
                                format!("invalid regex: {e}"),
                            ))
                        })
                        .ok()
                })
                .collect()
        };
        RrCheck {
            section,
            matches: compile("fail_if_matches_regexp", spec.fail_if_matches_regexp),
            all_match: compile("fail_if_all_match_regexp", spec.fail_if_all_match_regexp),
            not_matches: compile(
                "fail_if_not_matches_regexp",
                spec.fail_if_not_matches_regexp,
            ),
            none_matches: compile(
                "fail_if_none_matches_regexp",
                spec.fail_if_none_matches_regexp,
            ),
        }
    }

    /// blackbox_exporter's `validRRs`, step for step: the same verdict for the same records.
    fn verdict(&self, records: &[String]) -> Result<String, String> {
        let section = self.section.name();
        if records.is_empty()
            && let Some(re) = self.not_matches.first().or(self.none_matches.first())
        {
            return Err(format!(
                "no {section} records to match {:?} against",
                re.as_str()
            ));
        }
        let mut all_match = true;
        let mut any_match = false;
        for record in records {
            if let Some(re) = self.matches.iter().find(|re| re.is_match(record)) {
                return Err(format!(
                    "{section} record {record:?} matches fail_if_matches_regexp {:?}",
                    re.as_str()
                ));
            }
            all_match &= self.all_match.iter().all(|re| re.is_match(record));
            if let Some(re) = self.not_matches.iter().find(|re| !re.is_match(record)) {
                return Err(format!(
                    "{section} record {record:?} does not match fail_if_not_matches_regexp {:?}",
                    re.as_str()
                ));
            }
            any_match |= self.none_matches.iter().any(|re| re.is_match(record));
        }
        if !self.all_match.is_empty() && !all_match {
            return Err(format!(
                "not every {section} record matches fail_if_all_match_regexp (blackbox fails then)"
            ));
        }
        if !self.none_matches.is_empty() && !any_match {
            return Err(format!(
                "no {section} record matches fail_if_none_matches_regexp {:?}",
                self.none_matches
                    .iter()
                    .map(|re| re.as_str())
                    .collect::<Vec<_>>()
            ));
        }
        Ok(format!("{} {section} records valid", records.len()))
    }
}

impl DnsProbe {
    pub fn new(spec: Spanned<DnsSpec>, ctx: &BuildContext) -> Result<DnsProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let mut fail = |pos, field: &str, m: String| errors.push(SpecError::new(pos, field, m));
        let name = Name::from_utf8(spec.name.as_str())
            .map_err(|e| {
                fail(
                    spec.name.pos,
                    "name",
                    format!("invalid name {:?}: {e}", spec.name.value),
                )
            })
            .ok();
        let record_type = match &spec.record_type {
            None => RecordType::A,
            Some(t) => RecordType::from_str(&t.to_ascii_uppercase()).unwrap_or_else(|_| {
                fail(t.pos, "type", format!("unknown record type {:?}", t.value));
                RecordType::A
            }),
        };
        let class = match &spec.class {
            None => DNSClass::IN,
            Some(c) => class_from_name(&c.to_ascii_uppercase()).unwrap_or_else(|| {
                fail(
                    c.pos,
                    "class",
                    format!("unknown class {:?} (expected {})", c.value, class_names()),
                );
                DNSClass::IN
            }),
        };
        let tls = match spec.transport.as_ref().map(|t| (t.pos, t.value.as_str())) {
            None | Some((_, "udp")) | Some((_, "tcp")) => false,
            Some((_, "tls")) => true,
            Some((pos, other)) => {
                fail(
                    pos,
                    "transport",
                    format!("transport {other:?} is not udp, tcp or tls"),
                );
                false
            }
        };
        let port = if tls { 853 } else { 53 };
        let server = match &spec.server {
            Some(s) => match parse_server(s, port) {
                Ok(addr) => Ok(addr),
                Err(m) => {
                    fail(s.pos, "server", m.clone());
                    Err(m)
                }
            },
            None => system_server(port),
        };
        let transport = transport(tls, spec.transport.as_ref(), spec.tls_config, ctx)
            .map_err(|e| fail(e.pos, &e.field, e.message))
            .unwrap_or(Transport::Udp);
        let expect = spec.expect.unwrap_or_default();
        let mut rcodes = Vec::new();
        for rcode in expect.rcode.iter().flatten() {
            match rcode_from_name(rcode) {
                Some(code) => rcodes.push(code),
                None => fail(
                    rcode.pos,
                    "expect.rcode",
                    format!("unknown rcode {:?}", rcode.value),
                ),
            }
        }
        if rcodes.is_empty() {
            rcodes.push(0);
        }
        if let (Some(min), Some(max)) = (&expect.min_answers, &expect.max_answers)
            && min.value > max.value
        {
            fail(
                min.pos,
                "expect.min_answers",
                format!(
                    "{} is above max_answers {}: no answer could pass",
                    min.value, max.value
                ),
            );
        }
        let answer_regex = expect.answer_regex.as_ref().and_then(|re| {
            Regex::new(re)
                .map_err(|e| fail(re.pos, "expect.answer_regex", format!("invalid regex: {e}")))
                .ok()
        });
        let source = super::net::source_address(spec.source_ip_address.as_ref(), &mut errors);
        let mut rr_checks = Vec::new();
        for (section, field, spec) in [
            (Section::Answer, "expect.answer_rrs", expect.answer_rrs),
            (
                Section::Authority,
                "expect.authority_rrs",
                expect.authority_rrs,
            ),
            (
                Section::Additional,
                "expect.additional_rrs",
                expect.additional_rrs,
            ),
        ] {
            if let Some(spec) = spec {
                rr_checks.push(RrCheck::new(section, field, spec, &mut errors));
            }
        }
        match name {
            Some(name) if errors.is_empty() => Ok(DnsProbe {
                name,
                record_type,
                class,
                server,
                transport,
                source,
                recursion_desired: spec.recursion_desired.unwrap_or(true),
                rcodes,
                min_answers: expect.min_answers.map_or(0, |m| m.value),
                max_answers: expect.max_answers.map(|m| m.value),
                answer_regex,
                rr_checks,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        let server = match &self.server {
            Ok(addr) => addr.to_string(),
            Err(_) => "system".into(),
        };
        format!("{} {} @{server}", self.name, self.record_type)
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let server = self.server.clone().map_err(Failure::Dns)?;
        super::net::address_signals(server.ip(), trace);
        // Checked here, not when built: a blackbox module is built for a sample server.
        if let Some(source) = self.source {
            super::net::same_family(source, server.ip()).map_err(Failure::Dns)?;
        }
        let mut query = Message::query();
        query.metadata.recursion_desired = self.recursion_desired;
        let mut question = Query::query(self.name.clone(), self.record_type);
        question.query_class = self.class;
        query.add_query(question);
        let bytes = query.to_vec().map_err(|e| Failure::Dns(e.to_string()))?;
        trace.signal("query_succeeded", 0.0);
        let reply = match &self.transport {
            Transport::Udp => {
                exchange_udp(server, self.source, &bytes, query.metadata.id, trace).await?
            }
            Transport::Tcp => {
                let stream = super::net::connect_from(server, self.source, trace).await?;
                exchange_stream(stream, server, &bytes, trace).await?
            }
            Transport::Tls {
                config,
                server_name,
            } => {
                let stream = super::net::connect_from(server, self.source, trace).await?;
                let name = match server_name {
                    Some(name) => name.clone(),
                    None => server.ip().to_string(),
                };
                let tls = super::net::handshake(stream, &name, config.clone(), trace).await?;
                exchange_stream(tls, server, &bytes, trace).await?
            }
        };
        trace.finish();
        trace.signal("latency", trace.elapsed().as_secs_f64());
        let response =
            Message::from_vec(&reply).map_err(|e| Failure::Dns(format!("malformed reply: {e}")))?;
        let rcode = u16::from(response.metadata.response_code);
        trace.signal("rcode", rcode as f64);
        // blackbox_exporter's section counts: every record of each section, of any type.
        trace.signal("query_succeeded", 1.0);
        trace.signal("answer_rrs", response.answers.len() as f64);
        trace.signal("authority_rrs", response.authorities.len() as f64);
        trace.signal("additional_rrs", response.additionals.len() as f64);
        let answers: Vec<String> = response
            .answers
            .iter()
            .filter(|r| r.record_type() == self.record_type)
            .map(|r| r.data.to_string())
            .collect();
        trace.signal("answers", answers.len() as f64);
        for answer in answers.iter().take(5) {
            trace.notes.push(format!("answer {answer}"));
        }
        let mut failures = vec![trace.check(
            "rcode",
            if self.rcodes.contains(&rcode) {
                Ok(rcode_name(rcode))
            } else {
                Err(Failure::Rcode(format!(
                    "{} for {} {}, expected {}",
                    rcode_name(rcode),
                    self.name,
                    self.record_type,
                    self.rcodes
                        .iter()
                        .map(|c| rcode_name(*c))
                        .collect::<Vec<_>>()
                        .join(" or ")
                )))
            },
        )];
        let count = answers.len();
        failures.push(trace.check(
            "answers",
            if count < self.min_answers {
                Err(Failure::Answers(format!(
                    "{count} {} answers, expected at least {}",
                    self.record_type, self.min_answers
                )))
            } else if self.max_answers.is_some_and(|max| count > max) {
                Err(Failure::Answers(format!(
                    "{count} {} answers, expected at most {}",
                    self.record_type,
                    self.max_answers.unwrap_or(0)
                )))
            } else {
                Ok(format!("{count} answers"))
            },
        ));
        if let Some(re) = &self.answer_regex {
            failures.push(trace.check(
                "answer_regex",
                if answers.iter().any(|a| re.is_match(a)) {
                    Ok(format!("an answer matches {:?}", re.as_str()))
                } else {
                    Err(Failure::Answers(format!(
                        "no answer matches {:?}",
                        re.as_str()
                    )))
                },
            ));
        }
        for check in &self.rr_checks {
            let records: Vec<String> = check
                .section
                .records(&response)
                .iter()
                .map(rr_text)
                .collect();
            failures.push(trace.check("rrs", check.verdict(&records).map_err(Failure::Answers)));
        }
        first_failure(failures)
    }
}

/// A record as miekg/dns's `RR.String()` writes it, which blackbox's regexes are written
/// against: name, TTL, class and type, then the data, tab-separated.
fn rr_text(record: &Record) -> String {
    let class = match record.dns_class {
        DNSClass::Unknown(n) => CLASSES
            .iter()
            .find(|(_, code)| *code == n)
            .map_or_else(|| format!("CLASS{n}"), |(name, _)| name.to_string()),
        other => other.to_string(),
    };
    let kind = match record.record_type() {
        RecordType::Unknown(n) => format!("TYPE{n}"),
        other => other.to_string(),
    };
    format!(
        "{}\t{}\t{class}\t{kind}\t{}",
        record.name,
        record.ttl,
        rdata_text(&record.data)
    )
}

/// Record data in miekg/dns's text form: hickory's where they agree (addresses, names, MX,
/// SOA, SRV), miekg's quoting for TXT, RFC 3597's `\# length hex` for unknown types.
fn rdata_text(data: &RData) -> String {
    match data {
        RData::TXT(txt) => txt
            .txt_data
            .iter()
            .map(|part| quoted(part))
            .collect::<Vec<_>>()
            .join(" "),
        RData::Unknown { rdata, .. } => {
            let bytes = &rdata.anything;
            let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            format!("\\# {} {hex}", bytes.len())
        }
        other => other.to_string(),
    }
}

/// One TXT string as miekg/dns quotes it: `"` and `\` escaped, other bytes outside
/// printable ASCII as `\DDD`.
fn quoted(part: &[u8]) -> String {
    let mut out = String::with_capacity(part.len() + 2);
    out.push('"');
    for &b in part {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            b' '..=b'~' => out.push(b as char),
            _ => out.push_str(&format!("\\{b:03}")),
        }
    }
    out.push('"');
    out
}

async fn exchange_udp(
    server: SocketAddr,
    source: Option<IpAddr>,
    query: &[u8],
    id: u16,
    trace: &mut Trace,
) -> Result<Vec<u8>, Failure> {
    trace.enter("resolve");
    let unspecified: IpAddr = if server.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let bind = SocketAddr::new(source.unwrap_or(unspecified), 0);
    let socket = UdpSocket::bind(bind).await.map_err(|e| {
        Failure::Dns(match source {
            Some(source) => format!("cannot bind source_ip_address {source}: {e}"),
            None => format!("bind: {e}"),
        })
    })?;
    socket
        .connect(server)
        .await
        .map_err(|e| Failure::Dns(format!("{server}: {e}")))?;
    socket
        .send(query)
        .await
        .map_err(|e| Failure::Dns(format!("send to {server}: {e}")))?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = socket.recv(&mut buf).await.map_err(|e| {
            Failure::Dns(match e.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    format!("{server} refused (nothing listening)")
                }
                _ => format!("receive from {server}: {e}"),
            })
        })?;
        // Ignore stray datagrams that do not answer our query.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

/// One query and its reply over a connected stream (TCP, or TLS over it), each framed by its
/// two-byte length.
async fn exchange_stream(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    server: SocketAddr,
    query: &[u8],
    trace: &mut Trace,
) -> Result<Vec<u8>, Failure> {
    trace.enter("resolve");
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&(query.len() as u16).to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| Failure::Dns(format!("send to {server}: {e}")))?;
    let len = stream
        .read_u16()
        .await
        .map_err(|e| Failure::Dns(format!("read from {server}: {e}")))?;
    let mut reply = vec![0u8; len as usize];
    stream
        .read_exact(&mut reply)
        .await
        .map_err(|e| Failure::Dns(format!("read from {server}: {e}")))?;
    Ok(reply)
}

/// `ip` or `ip:port`, `port` when none is given.
fn parse_server(server: &str, port: u16) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    server
        .parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, port))
        .map_err(|_| format!("invalid DNS server {server:?}: expected IP or IP:port"))
}

fn system_server(port: u16) -> Result<SocketAddr, String> {
    let (config, _) = hickory_resolver::system_conf::read_system_conf().map_err(|e| {
        format!("no server given and the system resolver config is unreadable: {e}")
    })?;
    config
        .name_servers()
        .first()
        .map(|ns| SocketAddr::new(ns.ip, port))
        .ok_or_else(|| "no server given and the system has no nameserver".into())
}

const RCODES: [(u16, &str); 6] = [
    (0, "NOERROR"),
    (1, "FORMERR"),
    (2, "SERVFAIL"),
    (3, "NXDOMAIN"),
    (4, "NOTIMP"),
    (5, "REFUSED"),
];

fn rcode_from_name(name: &str) -> Option<u16> {
    let upper = name.to_ascii_uppercase();
    RCODES.iter().find(|(_, n)| *n == upper).map(|(c, _)| *c)
}

fn rcode_name(code: u16) -> String {
    match RCODES.iter().find(|(c, _)| *c == code) {
        Some((_, name)) => name.to_string(),
        None => format!(
            "RCODE{code} ({})",
            ResponseCode::from((code >> 4) as u8, (code & 0xf) as u8).to_str()
        ),
    }
}

impl super::Kind for DnsProbe {
    type Spec = DnsSpec;
    const INFO: KindInfo = KIND;
    const TARGET_KEY: Option<&'static str> = Some("server");

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<DnsSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        DnsProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        DnsProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        DnsProbe::run(self, trace)
    }
}

/// What the rest of the house knows of `dns:` probes: their signals and how each is exported.
pub const KIND: KindInfo = KindInfo {
    name: "dns",
    headline: "latency",
    network: true,
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new("answers", Unit::Count, Some(&ANSWERS)),
        Signal::new("rcode", Unit::Count, Some(&RCODE)).exported_only(),
    ],
};
const ANSWERS: Family = gauge(
    "probe_dns_answer_rrs",
    "The number of answers of the queried type in the last DNS reply.",
);
const RCODE: Family = gauge(
    "probe_dns_rcode",
    "The response code of the last DNS reply.",
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_blackbox_names_in_capitals_and_cs_keeps_its_name() {
        assert_eq!(class_from_name("CH"), Some(DNSClass::CH));
        assert_eq!(class_from_name("ch"), None, "miekg's names are capitals");
        assert_eq!(class_from_name("CS"), Some(DNSClass::Unknown(2)));
        assert_eq!(u16::from(class_from_name("CS").unwrap()), 2);
        assert_eq!(class_from_name("CHAOS"), None);
        let mut record = Record::from_rdata(
            Name::from_utf8("a.test.").unwrap(),
            5,
            RData::A(hickory_resolver::proto::rr::rdata::A::new(10, 0, 0, 1)),
        );
        record.dns_class = DNSClass::Unknown(2);
        assert_eq!(rr_text(&record), "a.test.\t5\tCS\tA\t10.0.0.1");
        record.dns_class = DNSClass::Unknown(7);
        assert_eq!(rr_text(&record), "a.test.\t5\tCLASS7\tA\t10.0.0.1");
    }

    #[test]
    fn the_port_is_dns_over_tls_own_without_one() {
        assert_eq!(
            parse_server("127.0.0.1", 853),
            Ok(([127, 0, 0, 1], 853).into())
        );
        assert_eq!(
            parse_server("127.0.0.1:53", 853),
            Ok(([127, 0, 0, 1], 53).into())
        );
        assert!(parse_server("dns.test", 853).is_err());
    }
}
