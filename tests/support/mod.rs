//! The one support tree every integration test uses (`mod support;`): `daemon` (the real
//! binary as a peer), `receiver` (a webhook receiver), `pg` (a throw-away PostgreSQL), `ui`
//! (the browser harness), `journal` (a stand-in `journalctl`), `grpc` (a gRPC health server), and here, real peers on loopback for the probe tests: a raw HTTP/1.1 server (plain or TLS) whose
//! answers each test scripts, hostile TCP peers, and a small authoritative DNS server.
//! Everything binds 127.0.0.1:0 and stops when the test's runtime ends.

#![allow(dead_code)]

pub mod daemon;
pub mod grpc;
pub mod journal;
pub mod pg;
pub mod receiver;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use slowburn::config::{self, Source};
use slowburn::probe::{self, BuildContext, Outcome, net::NetContext};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Where the external tool `name` is on `PATH`, or `None` after a loud SKIPPED line on stderr
/// (past the harness's capture). When the environment variable `require` is `1` (as CI sets
/// it), a missing tool panics with `install` as the fix instead.
pub fn required_tool(name: &str, require: &str, install: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        if std::env::var(require).as_deref() == Ok("1") {
            panic!("{name} is missing and {require}=1: {install}");
        }
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "\n*** SKIPPED: {name} is not on PATH ({install}); the test that needs it did not run ***\n"
        );
    }
    found
}

/// Waits until every recorded notification is sent or failed (each worker marks its record
/// after the receiver has answered, so seeing the request is not yet seeing the record).
pub async fn settled(store: &slowburn::store::Store) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !store.unsent().unwrap().is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "records not settled: {:?}",
            store.unsent()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the scripted HTTP server sends for a request path.
pub enum Reply {
    /// A complete response: status, extra headers, body.
    Full(u16, Vec<(&'static str, String)>, Vec<u8>),
    /// Headers promising `len` bytes, then one byte per second.
    Trickle(u64),
    /// Headers promising 10 GB, then zeros as fast as the client reads.
    Endless,
    /// Read the request and never answer.
    Silent,
    /// Headers promising `promised` bytes, then only `body`, then close.
    Short(u64, &'static [u8]),
}

pub fn ok(body: &str) -> Reply {
    Reply::Full(200, vec![], body.as_bytes().to_vec())
}

/// A scripted HTTP/1.1 server; `tls` is `Some((cert_der, key_der))` for HTTPS.
pub async fn http_server(
    tls: Option<Arc<rustls::ServerConfig>>,
    script: impl Fn(&str, &str) -> Reply + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let script = script.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    None => serve(stream, &*script).await,
                    Some(config) => {
                        if let Ok(stream) =
                            tokio_rustls::TlsAcceptor::from(config).accept(stream).await
                        {
                            serve(stream, &*script).await;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A request's head, read a byte at a time so nothing after it is taken (a proxy relays the
/// rest); `None` when the peer closes or fails first.
#[allow(dead_code)]
pub async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: &(dyn Fn(&str, &str) -> Reply + Send + Sync),
) {
    let Some(text) = read_head(&mut stream).await else {
        return;
    };
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    match script(&path, &text) {
        Reply::Full(status, headers, body) => {
            let mut out = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (name, value) in headers {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
            out.push_str("\r\n");
            let _ = stream.write_all(out.as_bytes()).await;
            let _ = stream.write_all(&body).await;
            let _ = stream.shutdown().await;
        }
        Reply::Trickle(len) => {
            let _ = stream
                .write_all(format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n").as_bytes())
                .await;
            for _ in 0..len {
                if stream.write_all(b"x").await.is_err() || stream.flush().await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        Reply::Endless => {
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10737418240\r\n\r\n")
                .await;
            let chunk = vec![0u8; 64 * 1024];
            while stream.write_all(&chunk).await.is_ok() {}
        }
        Reply::Silent => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        Reply::Short(promised, body) => {
            let _ = stream
                .write_all(
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {promised}\r\n\r\n").as_bytes(),
                )
                .await;
            let _ = stream.write_all(body).await;
            let _ = stream.shutdown().await;
        }
    }
}

/// An HTTP peer that reads the request and resets the connection (RST, not FIN) before any
/// answer.
pub async fn resetting_http() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                // A zero linger makes the close a reset.
                let _ = stream.set_zero_linger();
                drop(stream);
            });
        }
    });
    addr
}

/// A TCP listener that accepts and then never says anything.
pub async fn silent_tcp() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    addr
}

/// A TCP echo-ish server: answers `reply` to anything it reads.
pub async fn reply_tcp(reply: &'static [u8]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                if stream.read(&mut buf).await.is_ok() {
                    let _ = stream.write_all(reply).await;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            });
        }
    });
    addr
}

/// An address where nothing listens (bound, then released).
pub fn refused_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A certificate and TLS server config for `names`; `expired` backdates it.
pub struct TestCert {
    pub pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_cert(names: &[&str], not_after: (i32, u8, u8)) -> TestCert {
    test_cert_marked(names, not_after, rcgen::IsCa::NoCa)
}

/// As [`test_cert`], with basicConstraints `is_ca` (`openssl req -x509` marks its
/// self-signed certificates as CAs).
pub fn test_cert_marked(names: &[&str], not_after: (i32, u8, u8), is_ca: rcgen::IsCa) -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    params.is_ca = is_ca;
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(not_after.0, not_after.1, not_after.2);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let der = rustls::pki_types::CertificateDer::from(cert.der().to_vec());
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der], key_der)
    .unwrap();
    TestCert {
        pem: cert.pem(),
        server: Arc::new(server),
    }
}

/// The mail dialects `starttls_server` speaks.
#[derive(Debug, Clone, Copy)]
pub enum Mail {
    Smtp,
    Imap,
}

/// A mail server that greets in plain text, answers `EHLO`/`capability` and upgrades to TLS
/// (with `tls`) on `STARTTLS`, as Postfix and Dovecot do; after the upgrade its capabilities
/// offer AUTH instead of STARTTLS.
pub async fn starttls_server(tls: Arc<rustls::ServerConfig>, mail: Mail) -> SocketAddr {
    use tokio::io::BufReader;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let greeting: &[u8] = match mail {
                    Mail::Smtp => b"220 localhost ESMTP test\r\n",
                    Mail::Imap => b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
                };
                let mut plain = BufReader::new(tcp);
                if plain.get_mut().write_all(greeting).await.is_err()
                    || !converse(&mut plain, mail, false).await
                {
                    return;
                }
                let Ok(secure) = tokio_rustls::TlsAcceptor::from(tls)
                    .accept(plain.into_inner())
                    .await
                else {
                    return;
                };
                converse(&mut BufReader::new(secure), mail, true).await;
            });
        }
    });
    addr
}

/// Answers commands until the client asks for STARTTLS (`true`) or leaves (`false`).
async fn converse<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut tokio::io::BufReader<S>,
    mail: Mail,
    secure: bool,
) -> bool {
    use tokio::io::AsyncBufReadExt;
    let mut line = String::new();
    loop {
        line.clear();
        if matches!(stream.read_line(&mut line).await, Ok(0) | Err(_)) {
            return false;
        }
        let command = line.trim_end().to_ascii_uppercase();
        let reply: &[u8] = match (mail, command.as_str()) {
            (Mail::Smtp, c) if c.starts_with("EHLO") && secure => {
                b"250-localhost\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n"
            }
            (Mail::Smtp, c) if c.starts_with("EHLO") => {
                b"250-localhost\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
            }
            (Mail::Smtp, "STARTTLS") if !secure => b"220 2.0.0 ready to start TLS\r\n",
            (Mail::Smtp, "QUIT") => b"221 bye\r\n",
            (Mail::Imap, ". STARTTLS") if !secure => b". OK begin TLS now\r\n",
            (Mail::Imap, ". CAPABILITY") => b"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n. OK done\r\n",
            _ => b"500 unknown command\r\n",
        };
        if stream.get_mut().write_all(reply).await.is_err() || command == "QUIT" {
            return false;
        }
        if command.ends_with("STARTTLS") && !secure {
            return true;
        }
    }
}

/// Answers queries like an authoritative server for a few names:
/// `ok.test` A → 127.0.0.1, `nx.test` → NXDOMAIN, `fail.test` → SERVFAIL, `mute.test` → nothing.
pub async fn dns_server() -> SocketAddr {
    dns_server_with_peers().await.0
}

/// As [`dns_server`], with the address of every query's sender, in order.
pub async fn dns_server_with_peers() -> (SocketAddr, Arc<std::sync::Mutex<Vec<SocketAddr>>>) {
    let peers = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = peers.clone();
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            seen.lock().unwrap().push(peer);
            if let Some(reply) = dns_reply(&buf[..n]) {
                let _ = socket.send_to(&reply, peer).await;
            }
        }
    });
    (addr, peers)
}

/// The same server as [`dns_server`] over DNS over TLS (RFC 7858: TCP framing inside TLS),
/// with `tls`'s certificate.
pub async fn dns_tls_server(tls: Arc<rustls::ServerConfig>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.clone());
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                while let Ok(len) = stream.read_u16().await {
                    let mut query = vec![0u8; usize::from(len)];
                    if stream.read_exact(&mut query).await.is_err() {
                        return;
                    }
                    let Some(reply) = dns_reply(&query) else {
                        continue;
                    };
                    let mut framed = (reply.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&reply);
                    if stream.write_all(&framed).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// The reply of the test DNS servers to one query, `None` to stay silent. Besides the names
/// [`dns_server`] lists, `zone.test` fills every section, `txt.test` has a TXT record, and
/// `version.bind` answers a TXT query of class CH (and only of that class) as BIND does.
fn dns_reply(query: &[u8]) -> Option<Vec<u8>> {
    use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
    use hickory_resolver::proto::rr::rdata::{A, NS, TXT};
    use hickory_resolver::proto::rr::{DNSClass, Name, RData, Record, RecordType};
    let query = Message::from_vec(query).ok()?;
    let q = query.queries.first().cloned()?;
    let name = q.name().to_string();
    let mut reply = Message::response(query.metadata.id, OpCode::Query);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    reply.add_query(q.clone());
    match name.trim_end_matches('.') {
        "version.bind" if q.query_class() == DNSClass::CH => {
            let mut record = Record::from_rdata(
                q.name().clone(),
                0,
                RData::TXT(TXT::new(vec!["slowburn-test".into()])),
            );
            record.dns_class = DNSClass::CH;
            reply.add_answer(record);
        }
        _ if q.query_class() != DNSClass::IN => {
            reply.metadata.response_code = ResponseCode::Refused;
        }
        "ok.test" if q.query_type() == RecordType::A => {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::A(A::new(127, 0, 0, 1)),
            ));
        }
        "ok.test" => {}
        // Every section filled, for blackbox's `validate_*_rrs`.
        "zone.test" if q.query_type() == RecordType::A => {
            let ns = Name::from_utf8("ns.zone.test.").unwrap();
            for last in [1, 2] {
                reply.add_answer(Record::from_rdata(
                    q.name().clone(),
                    60,
                    RData::A(A::new(127, 0, 0, last)),
                ));
            }
            reply.add_authority(Record::from_rdata(
                q.name().clone(),
                60,
                RData::NS(NS(ns.clone())),
            ));
            reply.add_additional(Record::from_rdata(ns, 60, RData::A(A::new(127, 0, 0, 53))));
        }
        "txt.test" => {
            reply.add_answer(Record::from_rdata(
                q.name().clone(),
                60,
                RData::TXT(TXT::new(vec!["v=1 \"q\"".into(), "two".into()])),
            ));
        }
        "nx.test" => reply.metadata.response_code = ResponseCode::NXDomain,
        "fail.test" => reply.metadata.response_code = ResponseCode::ServFail,
        "mute.test" => return None,
        _ => reply.metadata.response_code = ResponseCode::Refused,
    }
    Some(reply.to_vec().unwrap())
}

/// Loads a one-probe config around `kind` (e.g. `http: {url: "…"}`) and runs it once.
pub async fn run_probe(kind: &str) -> Outcome {
    run_probe_with(kind, "2s").await
}

pub async fn run_probe_with(kind: &str, timeout: &str) -> Outcome {
    let text =
        format!("probes:\n  - name: t\n    interval: 60s\n    timeout: {timeout}\n    {kind}\n");
    let config = load_text("test.yaml", &text);
    let probe = &config.probes[0];
    probe::execute(&probe.probe, probe.timeout).await
}

/// `text` loaded as the probe file `name`; a panic with every error if it does not load.
#[allow(dead_code)]
pub fn load_text(name: &str, text: &str) -> config::Config {
    load(name, text).unwrap_or_else(|errors| panic!("config errors: {errors:#?}"))
}

/// The errors `slowburn check` reports for `text` as the probe file `name` (none when it
/// loads), each as `file:line:col: …`.
#[allow(dead_code)]
pub fn load_errors(name: &str, text: &str) -> Vec<String> {
    load(name, text)
        .err()
        .unwrap_or_default()
        .iter()
        .map(|e| e.to_string())
        .collect()
}

fn load(name: &str, text: &str) -> Result<config::Config, Vec<config::ConfigError>> {
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    config::load(
        &Source::Text {
            name: name.into(),
            text: text.into(),
        },
        &ctx,
    )
}

/// The failure message of an outcome, or a panic if it succeeded.
pub fn failure(outcome: &Outcome) -> String {
    match &outcome.failure {
        Some(f) => f.to_string(),
        None => panic!("expected a failure, got success: {outcome:#?}"),
    }
}
