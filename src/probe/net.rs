//! Network steps shared by the http and tcp probes: name resolution through hickory, TCP
//! connect and the TLS handshake, each timed as its own phase, plus certificate expiry.
//!
//! [`NetContext`] holds the expensive shared pieces (the system resolver, the trust store and
//! TLS client configs keyed by their options) and is built once per config load.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub use super::resolve::{HostsFile, IpPreference, Resolver, resolve};
use super::{Failure, SpecError, Trace};
use crate::basics::signal::{Family, gauge};
use crate::basics::yaml::Spanned;

/// TLS options of a probe (`tls_config:`), as in blackbox_exporter.
#[derive(Debug, Default, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Accept any certificate. Expiry is still read and reported.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A PEM file of extra CA certificates trusted for this probe.
    pub ca_file: Option<Spanned<String>>,
    /// The name to verify and send as SNI, when it differs from the target host.
    pub server_name: Option<String>,
    /// A PEM client certificate (chain) presented to servers that ask for one (mTLS).
    pub cert_file: Option<Spanned<String>>,
    /// The PEM private key of `cert_file`.
    pub key_file: Option<Spanned<String>>,
    /// The oldest TLS version offered: `TLS10`, `TLS11`, `TLS12` or `TLS13`. slowburn speaks
    /// TLS 1.2 and 1.3 only, so the first three all mean 1.2.
    pub min_version: Option<Spanned<String>>,
    /// The newest TLS version offered: `TLS12` or `TLS13`.
    pub max_version: Option<Spanned<String>>,
}

/// The TLS versions `min_version` and `max_version` allow, as `(TLS 1.2, TLS 1.3)`.
fn tls_versions(spec: &TlsSpec) -> Result<(bool, bool), SpecError> {
    // Prometheus' names, as numbers: 10 is TLS 1.0.
    let number = |key: &str, v: &Spanned<String>| match v.trim() {
        "TLS10" => Ok(10),
        "TLS11" => Ok(11),
        "TLS12" => Ok(12),
        "TLS13" => Ok(13),
        other => Err(SpecError::new(
            v.pos,
            format!("tls_config.{key}"),
            format!("unknown TLS version {other:?} (expected TLS10, TLS11, TLS12 or TLS13)"),
        )),
    };
    let min = spec
        .min_version
        .as_ref()
        .map(|v| number("min_version", v))
        .transpose()?;
    let max = spec
        .max_version
        .as_ref()
        .map(|v| number("max_version", v))
        .transpose()?;
    if let (Some(v), Some(max)) = (&spec.max_version, max) {
        if max < 12 {
            return Err(SpecError::new(
                v.pos,
                "tls_config.max_version",
                format!(
                    "{} is older than TLS 1.2, the oldest version slowburn speaks",
                    v.trim()
                ),
            ));
        }
        if min.is_some_and(|min| min > max) {
            return Err(SpecError::new(
                v.pos,
                "tls_config.max_version",
                "older than min_version".to_string(),
            ));
        }
    }
    Ok((min.unwrap_or(12) <= 12, max.unwrap_or(13) >= 13))
}

/// Shared network state for building probes.
pub struct NetContext {
    /// The system resolver, one per [`IpPreference::slot`] (its lookup strategy).
    system: [OnceLock<Result<Arc<TokioResolver>, String>>; 4],
    /// The hosts file the system resolver reads first, shared by every probe.
    hosts: Arc<HostsFile>,
    roots: OnceLock<Arc<RootCertStore>>,
    tls: Mutex<HashMap<TlsKey, Arc<ClientConfig>>>,
}

#[derive(Hash, PartialEq, Eq)]
struct TlsKey {
    insecure: bool,
    ca_file: Option<String>,
    client: Option<(String, String)>,
    alpn: Vec<Vec<u8>>,
    versions: (bool, bool),
}

impl Default for NetContext {
    fn default() -> Self {
        Self::new()
    }
}

impl NetContext {
    pub fn new() -> Self {
        NetContext {
            system: Default::default(),
            hosts: Arc::new(HostsFile::system()),
            roots: OnceLock::new(),
            tls: Mutex::new(HashMap::new()),
        }
    }

    /// The resolver a probe uses: its own `resolver:` servers, or the system's, asking for
    /// the address families `preference` wants.
    pub fn resolver(
        &self,
        servers: Option<&[Spanned<String>]>,
        preference: IpPreference,
    ) -> Result<Resolver, SpecError> {
        let strategy = preference.strategy();
        let Some(servers) = servers else {
            let slot = &self.system[preference.slot()];
            return Ok(Resolver::system(
                self.hosts.clone(),
                slot.get_or_init(|| {
                    TokioResolver::builder_tokio()
                        .map_err(|e| format!("cannot read the system resolver config: {e}"))
                        .and_then(|mut builder| {
                            fresh_answers(builder.options_mut());
                            builder.options_mut().ip_strategy = strategy;
                            builder.build().map_err(|e| e.to_string())
                        })
                        .map(Arc::new)
                })
                .clone(),
                preference,
            ));
        };
        let mut name_servers = Vec::new();
        for server in servers {
            let addr =
                parse_server(server).map_err(|m| SpecError::new(server.pos, "resolver", m))?;
            let mut udp = ConnectionConfig::udp();
            udp.port = addr.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = addr.port();
            name_servers.push(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]));
        }
        let config = ResolverConfig::from_parts(None, vec![], name_servers);
        let mut builder =
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
        fresh_answers(builder.options_mut());
        builder.options_mut().ip_strategy = strategy;
        builder
            .build()
            .map(|r| Resolver::custom(Arc::new(r), preference))
            .map_err(|e| SpecError::new(servers[0].pos, "resolver", e.to_string()))
    }

    /// A TLS client config for these options, shared by every probe that has the same.
    pub fn tls_config(
        &self,
        spec: &TlsSpec,
        alpn: &[&[u8]],
    ) -> Result<Arc<ClientConfig>, SpecError> {
        let key = TlsKey {
            insecure: spec.insecure_skip_verify,
            ca_file: spec.ca_file.as_ref().map(|f| f.value.clone()),
            client: spec
                .cert_file
                .as_ref()
                .zip(spec.key_file.as_ref())
                .map(|(c, k)| (c.value.clone(), k.value.clone())),
            alpn: alpn.iter().map(|p| p.to_vec()).collect(),
            versions: tls_versions(spec)?,
        };
        let mut cache = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(config) = cache.get(&key) {
            return Ok(config.clone());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let versions: &[&'static rustls::SupportedProtocolVersion] = match key.versions {
            (true, true) => &[&rustls::version::TLS13, &rustls::version::TLS12],
            (true, false) => &[&rustls::version::TLS12],
            _ => &[&rustls::version::TLS13],
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .map_err(|e| SpecError::new(Default::default(), "tls_config", e.to_string()))?;
        let identity = client_identity(spec)?;
        let wants_client = if spec.insecure_skip_verify {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider)))
        } else {
            let mut roots = (**self.roots.get_or_init(load_system_roots)).clone();
            match &spec.ca_file {
                None => builder.with_root_certificates(roots),
                Some(ca_file) => {
                    let pinned = add_ca_file(&mut roots, ca_file)?;
                    let verifier = super::trust::PinnedOrChain::new(roots, pinned, provider)
                        .map_err(|m| SpecError::new(ca_file.pos, "tls_config.ca_file", m))?;
                    builder
                        .dangerous()
                        .with_custom_certificate_verifier(Arc::new(verifier))
                }
            }
        };
        let mut config = match identity {
            None => wants_client.with_no_client_auth(),
            Some((chain, key, at)) => wants_client
                .with_client_auth_cert(chain, key)
                .map_err(|e| SpecError::new(at, "tls_config.key_file", e.to_string()))?,
        };
        config.alpn_protocols = key.alpn.clone();
        let config = Arc::new(config);
        cache.insert(key, config.clone());
        Ok(config)
    }
}

/// Probes measure resolution, so answers are not cached between runs.
fn fresh_answers(opts: &mut ResolverOpts) {
    opts.cache_size = 0;
    opts.attempts = 1;
}

fn parse_server(server: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    server
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| format!("invalid DNS server {server:?}: expected IP or IP:port"))
}

fn load_system_roots() -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        tracing::warn!(
            "no system CA certificates found; https probes will need tls_config.ca_file"
        );
    }
    Arc::new(roots)
}

/// Adds a `ca_file`'s certificates to `roots`; returns them, for pinning.
fn add_ca_file(
    roots: &mut RootCertStore,
    file: &Spanned<String>,
) -> Result<Vec<CertificateDer<'static>>, SpecError> {
    let err = |m: String| SpecError::new(file.pos, "tls_config.ca_file", m);
    let pem =
        std::fs::read(&file.value).map_err(|e| err(format!("cannot read {}: {e}", file.value)))?;
    let certs = pem_certificates(&pem);
    if certs.is_empty() {
        return Err(err(format!("{} holds no PEM certificate", file.value)));
    }
    for cert in &certs {
        roots
            .add(cert.clone())
            .map_err(|e| err(format!("{}: {e}", file.value)))?;
    }
    Ok(certs)
}

/// The client certificate chain and key of `cert_file`/`key_file`, read and checked now.
fn client_identity(
    spec: &TlsSpec,
) -> Result<
    Option<(
        Vec<CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
        crate::basics::yaml::Pos,
    )>,
    SpecError,
> {
    use rustls::pki_types::pem::PemObject;
    let (cert_file, key_file) = match (&spec.cert_file, &spec.key_file) {
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        (Some(one), None) | (None, Some(one)) => {
            return Err(SpecError::new(
                one.pos,
                "tls_config",
                "give cert_file and key_file together",
            ));
        }
    };
    let read = |file: &Spanned<String>, field: &str| {
        std::fs::read(&file.value).map_err(|e| {
            SpecError::new(
                file.pos,
                format!("tls_config.{field}"),
                format!("cannot read {}: {e}", file.value),
            )
        })
    };
    let chain = pem_certificates(&read(cert_file, "cert_file")?);
    if chain.is_empty() {
        return Err(SpecError::new(
            cert_file.pos,
            "tls_config.cert_file",
            format!("{} holds no PEM certificate", cert_file.value),
        ));
    }
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(key_file, "key_file")?)
        .map_err(|_| {
            SpecError::new(
                key_file.pos,
                "tls_config.key_file",
                format!("{} holds no PEM private key", key_file.value),
            )
        })?;
    Ok(Some((chain, key, key_file.pos)))
}

/// Extracts the DER certificates from PEM text.
pub fn pem_certificates(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// Opens a TCP connection, timing the `connect` phase.
pub async fn connect(addr: SocketAddr, trace: &mut Trace) -> Result<TcpStream, Failure> {
    connect_from(addr, None, trace).await
}

/// Opens a TCP connection from `source` (`source_ip_address`) when given, timing the
/// `connect` phase.
pub async fn connect_from(
    addr: SocketAddr,
    source: Option<IpAddr>,
    trace: &mut Trace,
) -> Result<TcpStream, Failure> {
    trace.enter("connect");
    address_signals(addr.ip(), trace);
    if let Some(source) = source {
        same_family(source, addr.ip()).map_err(Failure::Connect)?;
    }
    open_tcp(addr, source).await
}

/// The `Failure` a connect error reads as.
fn connect_failed(addr: SocketAddr, e: &io::Error) -> Failure {
    Failure::Connect(match e.kind() {
        io::ErrorKind::ConnectionRefused => "refused".to_string(),
        io::ErrorKind::TimedOut => format!("timed out to {addr}"),
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => {
            format!("{addr} unreachable")
        }
        _ => format!("{addr}: {e}"),
    })
}

/// A non-blocking connect (from `source` when given) that goes on at once when the handshake
/// finished within the call (a target on this host or a near one): only a connect still in
/// progress waits for the socket to turn writable, which costs a trip through the event loop.
async fn open_tcp(addr: SocketAddr, source: Option<IpAddr>) -> Result<TcpStream, Failure> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )
    .map_err(|e| Failure::Connect(format!("cannot open a socket: {e}")))?;
    let _ = socket.set_tcp_nodelay(true);
    if let Some(source) = source {
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| {
                Failure::Connect(format!("cannot bind source_ip_address {source}: {e}"))
            })?;
    }
    finish_connect(socket, addr)
        .await
        .map_err(|e| connect_failed(addr, &e))
}

async fn finish_connect(socket: socket2::Socket, addr: SocketAddr) -> io::Result<TcpStream> {
    let in_progress = match socket.connect(&addr.into()) {
        Ok(()) => false,
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
        Err(e) => return Err(e),
    };
    let stream = TcpStream::from_std(std::net::TcpStream::from(socket))?;
    if in_progress && stream.peer_addr().is_err() {
        stream.writable().await?;
        if let Some(e) = stream.take_error()? {
            return Err(e);
        }
        // Writable without an error yet not connected: read the reason the kernel gives.
        stream.peer_addr()?;
    }
    Ok(stream)
}

/// Whether a socket bound to `source` can reach `target`: both IPv4 or both IPv6.
pub fn same_family(source: IpAddr, target: IpAddr) -> Result<(), String> {
    if source.is_ipv4() == target.is_ipv4() {
        return Ok(());
    }
    let family = |ip: IpAddr| if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    Err(format!(
        "source_ip_address {source} is {} and {target} is {}: give a source of the target's \
         family (or preferred_ip_protocol to match it)",
        family(source),
        family(target)
    ))
}

/// `source_ip_address` as written: the local address a probe sends from, parsed when the
/// probe is built (blackbox only finds a bad one when it runs).
pub fn source_address(
    written: Option<&Spanned<String>>,
    errors: &mut Vec<SpecError>,
) -> Option<IpAddr> {
    let written = written?;
    written
        .trim()
        .parse()
        .map_err(|_| {
            errors.push(SpecError::new(
                written.pos,
                "source_ip_address",
                format!("{:?} is not an IP address", written.value),
            ))
        })
        .ok()
}

/// Runs the TLS handshake, timing the `tls` phase, and records certificate expiry signals.
pub async fn handshake(
    stream: TcpStream,
    server_name: &str,
    config: Arc<ClientConfig>,
    trace: &mut Trace,
) -> Result<TlsStream<TcpStream>, Failure> {
    trace.enter("tls");
    let name = ServerName::try_from(
        server_name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
    .map_err(|_| Failure::Tls(format!("invalid server name {server_name:?}")))?;
    let tls = TlsConnector::from(config)
        .connect(name, stream)
        .await
        .map_err(|e| Failure::Tls(describe_tls_error(&e, server_name)))?;
    let (_, session) = tls.get_ref();
    if let Some(version) = session.protocol_version() {
        trace.signal("tls_version", tls_version_number(version));
    }
    if let Some(leaf) = session.peer_certificates().and_then(|chain| chain.first()) {
        trace.certificate = super::cert::Certificate::from_der(leaf).map(Box::new);
    }
    if let Some(expiry) = session
        .peer_certificates()
        .and_then(|chain| chain.iter().filter_map(|c| not_after(c)).min())
    {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs() as i64;
        trace.signal("cert_expiry", expiry as f64);
        trace.signal("cert_days_left", (expiry - now) as f64 / 86_400.0);
    }
    Ok(tls)
}

/// `probe_ip_protocol`, shared by the kinds that connect.
pub const IP_PROTOCOL: Family = gauge(
    "probe_ip_protocol",
    "The IP version (4 or 6) of the address the last run connected to.",
);
/// `probe_ip_addr_hash`, shared by the kinds that connect.
pub const IP_ADDR_HASH: Family = gauge(
    "probe_ip_addr_hash",
    "FNV-1a hash of the address the last run connected to: a change means a new address.",
);
/// `probe_failed_due_to_regex`, shared by http and tcp.
pub const FAILED_DUE_TO_REGEX: Family = gauge(
    "probe_failed_due_to_regex",
    "Whether the last run failed because a body or reply regex did not hold.",
);

/// Which address a run reached for, as blackbox_exporter reports it (`probe_ip_protocol`,
/// `probe_ip_addr_hash`), recorded before connecting so a refused connect reports it too.
pub fn address_signals(ip: IpAddr, trace: &mut Trace) {
    trace.signal("ip_protocol", if ip.is_ipv4() { 4.0 } else { 6.0 });
    trace.signal("ip_addr_hash", f64::from(ip_hash(ip)));
}

/// blackbox_exporter's `probe_ip_addr_hash`: the 32-bit FNV-1a hash of the address's bytes
/// (4 for IPv4, 16 for IPv6), so a change of address shows without a label per address.
pub fn ip_hash(ip: IpAddr) -> u32 {
    let (v4, v6);
    let bytes: &[u8] = match ip {
        IpAddr::V4(ip) => {
            v4 = ip.octets();
            &v4
        }
        IpAddr::V6(ip) => {
            v6 = ip.octets();
            &v6
        }
    };
    let mut hash: u32 = 0x811c_9dc5;
    for &byte in bytes {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// A TLS version as a number (1.2, 1.3) for the `tls_version` signal; [`tls_version_name`]
/// turns it back into blackbox_exporter's label value.
fn tls_version_number(version: rustls::ProtocolVersion) -> f64 {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => 1.3,
        rustls::ProtocolVersion::TLSv1_2 => 1.2,
        rustls::ProtocolVersion::TLSv1_1 => 1.1,
        _ => 1.0,
    }
}

/// The `version` label of `probe_tls_version_info`, as Go names it (`TLS 1.3`).
pub fn tls_version_name(number: f64) -> &'static str {
    match (number * 10.0).round() as u32 {
        13 => "TLS 1.3",
        12 => "TLS 1.2",
        11 => "TLS 1.1",
        _ => "TLS 1.0",
    }
}

fn describe_tls_error(e: &io::Error, server_name: &str) -> String {
    use rustls::{CertificateError, Error as TlsError};
    let Some(inner) = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<TlsError>())
    else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => "connection closed during handshake".into(),
            _ => e.to_string(),
        };
    };
    match inner {
        TlsError::InvalidCertificate(cert) => match cert {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                "certificate expired".into()
            }
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "certificate not valid yet".into()
            }
            CertificateError::UnknownIssuer => {
                "certificate signed by unknown authority (self-signed or CA not trusted)".into()
            }
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                format!("certificate not valid for {server_name}")
            }
            CertificateError::Revoked => "certificate revoked".into(),
            CertificateError::BadEncoding => "certificate is malformed".into(),
            CertificateError::BadSignature => "certificate signature does not verify".into(),
            CertificateError::UnhandledCriticalExtension => {
                "certificate has a critical extension that cannot be checked".into()
            }
            CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
                "certificate is not meant for TLS servers (its extended key usage)".into()
            }
            CertificateError::Other(e) => format!("the server's certificate was refused: {e}"),
            other => format!("the server's certificate was refused: {other:?}"),
        },
        TlsError::InvalidMessage(_) => {
            "the server did not answer in TLS (a plain-text port?)".into()
        }
        TlsError::AlertReceived(rustls::AlertDescription::ProtocolVersion) => {
            "the server speaks none of the TLS versions offered (see tls_config.min_version and \
             max_version)"
                .into()
        }
        TlsError::AlertReceived(alert) => {
            format!("the server ended the handshake with the alert {alert:?}")
        }
        TlsError::PeerIncompatible(why) => {
            format!("no TLS version or cipher suite in common with the server ({why:?})")
        }
        TlsError::PeerMisbehaved(why) => format!("the server broke the TLS protocol ({why:?})"),
        TlsError::NoCertificatesPresented => "the server presented no certificate".into(),
        other => other.to_string(),
    }
}

/// A stream that is plain TCP or TLS over TCP.
///
/// Shutting down a plain stream does nothing: dropping it closes the socket, and a half-close
/// first would cost a syscall and a FIN exchange the probe has no use for. A TLS stream sends
/// its `close_notify` as usual.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(_) => Poll::Ready(Ok(())),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Resolves, connects and (optionally) shakes hands: the common start of http and tcp probes.
pub async fn open(
    host: &str,
    port: u16,
    resolver: &Resolver,
    tls: Option<(&str, Arc<ClientConfig>)>,
    trace: &mut Trace,
) -> Result<Stream, Failure> {
    open_from(host, port, resolver, tls, None, trace).await
}

/// As [`open`], the connection made from `source` when given (`source_ip_address`).
pub async fn open_from(
    host: &str,
    port: u16,
    resolver: &Resolver,
    tls: Option<(&str, Arc<ClientConfig>)>,
    source: Option<IpAddr>,
    trace: &mut Trace,
) -> Result<Stream, Failure> {
    let ip = resolve(host, resolver, trace).await?;
    let tcp = connect_from(SocketAddr::new(ip, port), source, trace).await?;
    match tls {
        Some((server_name, config)) => Ok(Stream::Tls(Box::new(
            handshake(tcp, server_name, config, trace).await?,
        ))),
        None => Ok(Stream::Plain(tcp)),
    }
}

/// Accepts any certificate chain but still checks handshake signatures, for
/// `insecure_skip_verify`.
#[derive(Debug)]
struct AcceptAnyCert(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The `notAfter` of a DER certificate, in unix seconds. A small DER walk instead of an X.509
/// crate: Certificate → TBSCertificate → [version] serial signature issuer validity.
pub fn not_after(der: &[u8]) -> Option<i64> {
    validity(der).map(|(_, not_after)| not_after)
}

/// The `notBefore` and `notAfter` of a DER certificate, in unix seconds.
pub fn validity(der: &[u8]) -> Option<(i64, i64)> {
    let mut rest = tbs_fields(der)?;
    for _ in 0..3 {
        rest = der_element(rest)?.2; // serial, signature algorithm, issuer
    }
    let (_, validity, _) = der_element(rest)?;
    let (tag, time, after_not_before) = der_element(validity)?;
    let not_before = parse_der_time(tag, time)?;
    let (tag, time, _) = der_element(after_not_before)?;
    Some((not_before, parse_der_time(tag, time)?))
}

/// The fields of a DER certificate's TBSCertificate from its serial number on (the optional
/// `[0]` version skipped).
pub(super) fn tbs_fields(der: &[u8]) -> Option<&[u8]> {
    let (_, cert, _) = der_element(der)?;
    let (_, tbs, _) = der_element(cert)?;
    let (tag, _, after) = der_element(tbs)?;
    Some(if tag == 0xA0 { after } else { tbs })
}

/// Splits one DER element: (tag, contents, rest).
pub(super) fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | *b as usize);
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn parse_der_time(tag: u8, bytes: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(bytes).ok()?.strip_suffix('Z')?;
    let num = |s: &str| s.parse::<i64>().ok();
    let (year, rest) = match tag {
        0x17 => {
            let yy = num(text.get(0..2)?)?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, text.get(2..)?)
        }
        0x18 => (num(text.get(0..4)?)?, text.get(4..)?),
        _ => return None,
    };
    let month = num(rest.get(0..2)?)?;
    let day = num(rest.get(2..4)?)?;
    let hour = num(rest.get(4..6)?)?;
    let minute = num(rest.get(6..8)?)?;
    let second = num(rest.get(8..10)?).unwrap_or(0);
    let small = |v: i64| i8::try_from(v).ok();
    let time = jiff::civil::DateTime::new(
        i16::try_from(year).ok()?,
        small(month)?,
        small(day)?,
        small(hour)?,
        small(minute)?,
        small(second)?,
        0,
    )
    .ok()?;
    let utc = time.to_zoned(jiff::tz::TimeZone::UTC).ok()?;
    Some(utc.timestamp().as_second())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::basics::yaml::Pos;

    #[test]
    fn tls_versions_follow_prometheus_names() {
        let spec = |min: Option<&str>, max: Option<&str>| TlsSpec {
            min_version: min.map(|v| Spanned {
                pos: Pos::default(),
                value: v.to_string(),
            }),
            max_version: max.map(|v| Spanned {
                pos: Pos::default(),
                value: v.to_string(),
            }),
            ..Default::default()
        };
        let versions = |min, max| tls_versions(&spec(min, max)).map_err(|e| e.message);
        assert_eq!(versions(None, None), Ok((true, true)));
        assert_eq!(versions(Some("TLS10"), None), Ok((true, true)));
        assert_eq!(versions(Some("TLS13"), None), Ok((false, true)));
        assert_eq!(versions(None, Some("TLS12")), Ok((true, false)));
        let err = versions(None, Some("TLS11")).unwrap_err();
        assert!(err.contains("older than TLS 1.2"), "{err}");
        let err = versions(Some("TLS13"), Some("TLS12")).unwrap_err();
        assert!(err.contains("older than min_version"), "{err}");
        let err = versions(Some("SSL3"), None).unwrap_err();
        assert!(err.contains("unknown TLS version \"SSL3\""), "{err}");
    }

    #[test]
    fn der_times() {
        assert_eq!(parse_der_time(0x17, b"700101000000Z"), Some(0));
        assert_eq!(
            parse_der_time(0x18, b"20000301000000Z"),
            Some(11_017 * 86_400)
        );
        assert_eq!(parse_der_time(0x17, b"garbage"), None);
        assert_eq!(
            parse_der_time(0x17, b"260231000000Z"),
            None,
            "no February 31st"
        );
    }

    #[test]
    fn not_after_of_a_generated_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["example.test".into()]).unwrap();
        params.not_after = rcgen::date_time_ymd(2031, 5, 17);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            not_after(cert.der()),
            Some(1_936_742_400),
            "2031-05-17T00:00:00Z"
        );
        assert_eq!(not_after(b"\x30\x03\x02\x01"), None);
    }
}
