//! The `grpc:` probe: the standard health check (`grpc.health.v1.Health/Check`) over HTTP/2,
//! on a connection of its own, optionally over TLS (ALPN `h2`). Phases `resolve`, `connect`,
//! `tls` and `check`.
//!
//! The request and the answer are one-field protobuf messages (`service`, `status`), written
//! and read here in a few lines rather than through a code generator. A gRPC error (the
//! `grpc-status` trailer, or a "trailers-only" answer) is the reason `grpc`, named by its code
//! (`NOT_FOUND: unknown service orders`); an answer other than `SERVING` is `not_serving`.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use rustls::ClientConfig;
use serde::Deserialize;

use super::net::{self, Resolver, TlsSpec};
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::yaml::Spanned;

/// The most of an answer that is read: a health answer is a few bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// `grpc:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GrpcSpec {
    /// `host:port` of the server.
    pub address: Spanned<String>,
    /// The service whose health is asked (`""`, the default, asks for the server's).
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub tls: bool,
    pub tls_config: Option<TlsSpec>,
    /// `ip4` (default) or `ip6`: the address family tried first.
    pub preferred_ip_protocol: Option<Spanned<String>>,
    /// Whether the other family is used when the preferred one has no address (default true).
    pub ip_protocol_fallback: Option<bool>,
    pub resolver: Option<Vec<Spanned<String>>>,
}

#[derive(Debug)]
pub struct GrpcProbe {
    host: String,
    port: u16,
    authority: String,
    service: String,
    tls: Option<(String, Arc<ClientConfig>)>,
    resolver: Resolver,
}

/// The serving states of `grpc.health.v1.HealthCheckResponse`, by number.
const SERVING_STATUS: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// gRPC status codes by number, as the protocol names them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

impl GrpcProbe {
    pub fn new(spec: Spanned<GrpcSpec>, ctx: &BuildContext) -> Result<GrpcProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let address = super::tcp::split_host_port(&spec.address)
            .map_err(|m| errors.push(SpecError::new(spec.address.pos, "address", m)))
            .ok();
        let family = net::IpPreference::from_spec(
            spec.preferred_ip_protocol.as_ref(),
            spec.ip_protocol_fallback,
        )
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
        let tls_spec = spec.tls_config.clone().unwrap_or_default();
        let tls = if spec.tls {
            ctx.net
                .tls_config(&tls_spec, &[b"h2"])
                .map_err(|e| errors.push(e))
                .ok()
        } else {
            None
        };
        let resolver = ctx
            .net
            .resolver(spec.resolver.as_deref(), family)
            .map_err(|e| errors.push(e))
            .ok();
        match (address, resolver) {
            (Some((host, port)), Some(resolver)) if errors.is_empty() => Ok(GrpcProbe {
                tls: tls
                    .map(|config| (tls_spec.server_name.unwrap_or_else(|| host.clone()), config)),
                authority: spec.address.value.clone(),
                host,
                port,
                service: spec.service,
                resolver,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        match self.service.as_str() {
            "" => self.authority.clone(),
            service => format!("{} ({service})", self.authority),
        }
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let ip = net::resolve(&self.host, &self.resolver, trace).await?;
        let tcp = net::connect(std::net::SocketAddr::new(ip, self.port), trace).await?;
        let stream = match &self.tls {
            Some((server_name, config)) => {
                let tls = net::handshake(tcp, server_name, config.clone(), trace).await?;
                if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                    return Err(Failure::Tls(format!(
                        "{} did not agree to HTTP/2 (ALPN h2), which gRPC needs",
                        self.authority
                    )));
                }
                net::Stream::Tls(Box::new(tls))
            }
            None => net::Stream::Plain(tcp),
        };
        trace.enter("check");
        let io = hyper_util::rt::TokioIo::new(stream);
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io)
                .await
                .map_err(|e| Failure::Grpc(format!("HTTP/2 handshake: {e}")))?;
        let driver = tokio::spawn(connection);
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let request = http::Request::post(format!(
            "{scheme}://{}/grpc.health.v1.Health/Check",
            self.authority
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header(
            "user-agent",
            concat!("slowburn/", env!("CARGO_PKG_VERSION")),
        )
        .body(Full::new(health_request(&self.service)))
        .map_err(|e| Failure::Grpc(format!("building the request: {e}")))?;
        let answer = self.exchange(&mut sender, request, trace).await;
        driver.abort();
        let status = answer?;
        trace.signal("serving_status", f64::from(status));
        let name = SERVING_STATUS.get(status as usize).copied().unwrap_or("?");
        if status != 1 {
            return Err(Failure::NotServing(format!(
                "{} answers {name} ({status})",
                self.target()
            )));
        }
        trace.notes.push(format!("{}: {name}", self.target()));
        Ok(())
    }

    /// Sends the check and reads the answer's serving status.
    async fn exchange(
        &self,
        sender: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
        request: http::Request<Full<Bytes>>,
        trace: &mut Trace,
    ) -> Result<u32, Failure> {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Grpc(format!("sending the check: {e}")))?;
        let status = response.status();
        if status != http::StatusCode::OK {
            return Err(Failure::Grpc(format!(
                "HTTP status {status} instead of a gRPC answer"
            )));
        }
        // A "trailers-only" answer carries its status in the headers.
        if let Some(code) = status_code(response.headers()) {
            trace.signal("grpc_status", f64::from(code));
        }
        if let Some(error) = grpc_error(response.headers()) {
            return Err(error);
        }
        let mut body = response.into_body();
        let mut data = BytesMut::new();
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Failure::Grpc(format!("reading the answer: {e}")))?;
            match frame.into_data() {
                Ok(chunk) => {
                    if data.len() + chunk.len() > MAX_ANSWER {
                        return Err(Failure::Grpc(format!(
                            "the answer is larger than {} KiB",
                            MAX_ANSWER / 1024
                        )));
                    }
                    data.put(chunk);
                }
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        match &trailers {
            Some(trailers) => {
                if let Some(code) = status_code(trailers) {
                    trace.signal("grpc_status", f64::from(code));
                }
                if let Some(error) = grpc_error(trailers) {
                    return Err(error);
                }
            }
            None => {
                return Err(Failure::Grpc(
                    "the answer ended without a grpc-status trailer".into(),
                ));
            }
        }
        health_status(&data)
    }
}

/// `HealthCheckRequest { string service = 1; }` in a gRPC message frame.
fn health_request(service: &str) -> Bytes {
    let mut message = BytesMut::new();
    if !service.is_empty() {
        message.put_u8(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.put_u8(0); // not compressed
    frame.put_u32(message.len() as u32);
    frame.put(message);
    frame.freeze()
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn varint(input: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *input.first()?;
        input.advance(1);
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The `status` of a `HealthCheckResponse` in one gRPC message frame (0, UNKNOWN, when the
/// field is absent, as protobuf defaults it).
fn health_status(frame: &[u8]) -> Result<u32, Failure> {
    let bad = |what: &str| Failure::Grpc(format!("the answer is not a health response: {what}"));
    if frame.len() < 5 {
        return Err(bad("no message"));
    }
    if frame[0] != 0 {
        return Err(bad("compressed, though the check asked for none"));
    }
    let length = u32::from_be_bytes([frame[1], frame[2], frame[3], frame[4]]) as usize;
    let mut message = frame.get(5..5 + length).ok_or_else(|| bad("cut short"))?;
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message).ok_or_else(|| bad("a bad field key"))?;
        match key & 7 {
            0 => {
                let value = varint(&mut message).ok_or_else(|| bad("a bad varint"))?;
                if key >> 3 == 1 {
                    status = value as u32;
                }
            }
            2 => {
                let len = varint(&mut message).ok_or_else(|| bad("a bad length"))? as usize;
                message = message.get(len..).ok_or_else(|| bad("cut short"))?;
            }
            1 => message = message.get(8..).ok_or_else(|| bad("cut short"))?,
            5 => message = message.get(4..).ok_or_else(|| bad("cut short"))?,
            _ => return Err(bad("an unknown wire type")),
        }
    }
    Ok(status)
}

/// The gRPC error named by `grpc-status` (and `grpc-message`), if it is not OK.
fn grpc_error(headers: &http::HeaderMap) -> Option<Failure> {
    let code = status_code(headers)?;
    if code == 0 {
        return None;
    }
    let name = GRPC_CODES.get(code as usize).copied().unwrap_or("UNKNOWN");
    let message = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        .map(percent_decode)
        .unwrap_or_default();
    Some(Failure::Grpc(if message.is_empty() {
        format!("{name} ({code})")
    } else {
        format!("{name} ({code}): {message}")
    }))
}

/// The `grpc-status` code a header block carries.
fn status_code(headers: &http::HeaderMap) -> Option<u32> {
    headers
        .get("grpc-status")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `grpc-message` is percent-encoded.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl super::Kind for GrpcProbe {
    type Spec = GrpcSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<GrpcSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        GrpcProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        GrpcProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        GrpcProbe::run(self, trace)
    }
}

static SERVING: Family = gauge(
    "probe_grpc_serving_status",
    "The health check's answer: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.",
);

static STATUS_CODE: Family = gauge(
    "probe_grpc_status_code",
    "The gRPC status code of the health check's answer (0 OK, 5 NOT_FOUND, 12 UNIMPLEMENTED, ...).",
);

/// What the rest of the house knows of `grpc:` probes.
pub const KIND: KindInfo = KindInfo {
    name: "grpc",
    network: true,
    headline: "latency",
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new("serving_status", Unit::Count, Some(&SERVING)).exported_only(),
        Signal::new("grpc_status", Unit::Count, Some(&STATUS_CODE)).exported_only(),
        Signal::new("ip_protocol", Unit::Count, Some(&net::IP_PROTOCOL)).exported_only(),
        Signal::new("ip_addr_hash", Unit::Count, Some(&net::IP_ADDR_HASH)).exported_only(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_names_its_service_in_one_frame() {
        assert_eq!(&health_request("")[..], &[0, 0, 0, 0, 0]);
        let frame = health_request("orders");
        assert_eq!(&frame[..5], &[0, 0, 0, 0, 8]);
        assert_eq!(&frame[5..], b"\x0a\x06orders");
    }

    #[test]
    fn answers_are_read_field_by_field() {
        // status = SERVING
        assert_eq!(health_status(&[0, 0, 0, 0, 2, 0x08, 1]), Ok(1));
        // No field: protobuf's default, UNKNOWN.
        assert_eq!(health_status(&[0, 0, 0, 0, 0]), Ok(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(
            health_status(&[0, 0, 0, 0, 6, 0x12, 2, b'h', b'i', 0x08, 2]),
            Ok(2)
        );
        assert_eq!(
            health_status(&[0, 0, 0, 0, 9, 0x08]).unwrap_err().reason(),
            "grpc"
        );
        assert_eq!(
            health_status(&[1, 0, 0, 0, 0]).unwrap_err().reason(),
            "grpc"
        );
    }

    #[test]
    fn grpc_errors_are_named_by_code_with_their_message() {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-status", "5".parse().unwrap());
        headers.insert(
            "grpc-message",
            "unknown%20service%20orders".parse().unwrap(),
        );
        assert_eq!(
            grpc_error(&headers).unwrap().to_string(),
            "grpc: NOT_FOUND (5): unknown service orders"
        );
        headers.insert("grpc-status", "0".parse().unwrap());
        assert!(grpc_error(&headers).is_none());
    }
}
