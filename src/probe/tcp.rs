//! The `tcp:` probe: connect (optionally over TLS), optionally send bytes and wait for a reply
//! matching a regex. Phases: `resolve`, `connect`, `tls`, `exchange`.

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
    pub resolver: Option<Vec<Spanned<String>>>,
}

#[derive(Debug)]
pub struct TcpProbe {
    host: String,
    port: u16,
    tls: Option<(String, Arc<ClientConfig>)>,
    send: Option<Vec<u8>>,
    expect: Option<Regex>,
    resolver: Resolver,
}

impl TcpProbe {
    pub fn new(spec: Spanned<TcpSpec>, ctx: &BuildContext) -> Result<TcpProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        let address = split_host_port(&spec.address)
            .map_err(|m| errors.push(SpecError::new(spec.address.pos, "address", m)))
            .ok();
        let expect = spec.expect.as_ref().and_then(|re| {
            Regex::new(re)
                .map_err(|e| {
                    errors.push(SpecError::new(
                        re.pos,
                        "expect",
                        format!("invalid regex: {e}"),
                    ))
                })
                .ok()
        });
        let tls_spec = spec.tls_config.clone().unwrap_or_default();
        let tls = if spec.tls {
            ctx.net
                .tls_config(&tls_spec, &[])
                .map_err(|e| errors.push(e))
                .ok()
        } else {
            None
        };
        let resolver = ctx
            .net
            .resolver(spec.resolver.as_deref())
            .map_err(|e| errors.push(e))
            .ok();
        match (address, resolver) {
            (Some((host, port)), Some(resolver)) if errors.is_empty() => Ok(TcpProbe {
                tls: tls
                    .map(|config| (tls_spec.server_name.unwrap_or_else(|| host.clone()), config)),
                host,
                port,
                send: spec.send.map(String::into_bytes),
                expect,
                resolver,
            }),
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
        let mut stream = net::open(&self.host, self.port, &self.resolver, tls, trace).await?;
        if self.send.is_some() || self.expect.is_some() {
            trace.enter("exchange");
            if let Some(bytes) = &self.send {
                stream
                    .write_all(bytes)
                    .await
                    .map_err(|e| Failure::Expect(format!("send failed: {e}")))?;
            }
            if let Some(re) = &self.expect {
                let check = read_until_match(&mut stream, re).await;
                trace.finish();
                let failure = trace.check("expect", check);
                if let Some(failure) = failure {
                    return Err(failure);
                }
            }
        }
        trace.finish();
        trace.signal("latency", trace.elapsed().as_secs_f64());
        Ok(())
    }
}

async fn read_until_match(stream: &mut net::Stream, re: &Regex) -> Result<String, Failure> {
    let mut reply = Vec::with_capacity(512);
    let mut chunk = [0u8; 4096];
    loop {
        if re.is_match(&reply) {
            return Ok(format!("reply matches {:?}", re.as_str()));
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
    signals: &[Signal::new("latency", Unit::Seconds, None)],
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
}
