//! TLS trust and TLS failures as blackbox_exporter users meet them: a self-signed certificate
//! that is also a CA, given as `ca_file`, is trusted as pinned (WebPKI alone refuses it as
//! `CaUsedAsEndEntity`); pinning does not excuse a wrong name; and the usual handshake
//! failures read as sentences. Real TLS servers on loopback with rcgen certificates.

mod support;

use std::sync::Arc;

use support::daemon::temp_dir;
use support::{failure, http_server, ok, run_probe};

/// A self-signed certificate for `names` marked as a CA (basicConstraints CA:TRUE), the way
/// `openssl req -x509` makes one by default, and a server presenting it.
fn ca_flagged_cert(names: &[&str]) -> (String, Arc<rustls::ServerConfig>) {
    let cert = support::test_cert_marked(
        names,
        (2099, 1, 1),
        rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained),
    );
    (cert.pem, cert.server)
}

fn http(url: &str, ca: &std::path::Path) -> String {
    format!(
        "http: {{url: \"{url}\", tls_config: {{ca_file: \"{}\"}}}}",
        ca.display()
    )
}

#[tokio::test]
async fn a_self_signed_ca_given_as_ca_file_is_trusted_as_pinned() {
    let dir = temp_dir("tls-pinned");
    let (pem, server) = ca_flagged_cert(&["localhost"]);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let addr = http_server(Some(server), |_, _| ok("internal")).await;
    let outcome = run_probe(&http(&format!("https://localhost:{}/", addr.port()), &ca)).await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert!(outcome.signal("cert_days_left").is_some_and(|d| d > 365.0));
    let leaf = outcome.certificate.expect("the leaf is described");
    assert_eq!(leaf.subject_alternative, "localhost");
}

#[tokio::test]
async fn pinning_does_not_excuse_a_wrong_name() {
    let dir = temp_dir("tls-pinned-name");
    let (pem, server) = ca_flagged_cert(&["other.test"]);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pem).unwrap();
    let addr = http_server(Some(server), |_, _| ok("internal")).await;
    let outcome = run_probe(&http(&format!("https://localhost:{}/", addr.port()), &ca)).await;
    assert_eq!(
        failure(&outcome),
        "tls: certificate not valid for localhost"
    );
}

#[tokio::test]
async fn a_ca_that_is_not_the_one_given_is_still_refused() {
    let dir = temp_dir("tls-pinned-other");
    let (_, server) = ca_flagged_cert(&["localhost"]);
    let (other, _) = ca_flagged_cert(&["localhost"]);
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, other).unwrap();
    let addr = http_server(Some(server), |_, _| ok("internal")).await;
    let outcome = run_probe(&http(&format!("https://localhost:{}/", addr.port()), &ca)).await;
    let message = failure(&outcome);
    assert!(message.starts_with("tls: "), "{message}");
    assert_eq!(outcome.failure.unwrap().reason(), "tls");
}

#[tokio::test]
async fn https_to_a_plain_http_port_says_so() {
    // What a plain HTTP server answers to a ClientHello.
    let addr = support::reply_tcp(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
    let outcome = run_probe(&format!(
        "http: {{url: \"https://127.0.0.1:{}/\"}}",
        addr.port()
    ))
    .await;
    let message = failure(&outcome);
    assert_eq!(
        message,
        "tls: the server did not answer in TLS (a plain-text port?)"
    );
}

#[tokio::test]
async fn a_client_certificate_opens_a_server_that_requires_one() {
    let dir = temp_dir("tls-mtls");
    // A CA that signs the client's certificate; the server trusts only that CA for clients.
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["prober.test".to_string()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    std::fs::write(dir.join("client.pem"), client.pem()).unwrap();
    std::fs::write(dir.join("client.key"), client_key.serialize_pem()).unwrap();

    let mut client_roots = rustls::RootCertStore::empty();
    client_roots
        .add(rustls::pki_types::CertificateDer::from(ca.der().to_vec()))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(client_roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    // The server's own certificate, trusted by the probe as its ca_file.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.not_after = rcgen::date_time_ymd(2099, 1, 1);
    let cert = params.self_signed(&key).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert.der().to_vec())],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let addr = http_server(Some(Arc::new(server)), |_, _| ok("mutual")).await;
    let url = format!("https://localhost:{}/", addr.port());
    let server_ca = dir.join("server.pem").display().to_string();

    let without = run_probe(&format!(
        "http: {{url: \"{url}\", tls_config: {{ca_file: \"{server_ca}\"}}}}"
    ))
    .await;
    assert!(
        !without.success,
        "a server requiring a client certificate let us in"
    );

    let with = run_probe(&format!(
        "http: {{url: \"{url}\", tls_config: {{ca_file: \"{server_ca}\", cert_file: \"{}\", key_file: \"{}\"}}}}",
        dir.join("client.pem").display(),
        dir.join("client.key").display()
    ))
    .await;
    assert!(with.success, "{:?}", with.failure);
}

#[tokio::test]
async fn min_and_max_version_bound_the_tls_versions_offered() {
    let dir = temp_dir("tls-versions");
    let cert = support::test_cert(&["localhost"], (2099, 1, 1));
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    // A server of both versions, and one of TLS 1.2 only, with the same certificate.
    let both = http_server(Some(cert.server.clone()), |_, _| ok("both")).await;
    let key = cert.server.cert_resolver.clone();
    let old = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_no_client_auth()
    .with_cert_resolver(key);
    let old = http_server(Some(Arc::new(old)), |_, _| ok("old")).await;
    let probe = |addr: std::net::SocketAddr, versions: &str| {
        format!(
            "http: {{url: \"https://localhost:{}/\", tls_config: {{ca_file: \"{}\", {versions}}}}}",
            addr.port(),
            ca.display()
        )
    };

    let capped = run_probe(&probe(both, "max_version: TLS12")).await;
    assert!(capped.success, "{:?}", capped.failure);
    assert_eq!(capped.signal("tls_version"), Some(1.2));
    let newest = run_probe(&probe(both, "min_version: TLS12")).await;
    assert_eq!(newest.signal("tls_version"), Some(1.3));

    let refused = run_probe(&probe(old, "min_version: TLS13")).await;
    assert!(!refused.success);
    let message = failure(&refused);
    assert!(
        message.contains("the server speaks none of the TLS versions offered"),
        "{message}"
    );
    // blackbox's TLS10 and TLS11 minimums mean "anything slowburn speaks".
    let lenient = run_probe(&probe(old, "min_version: TLS10")).await;
    assert!(lenient.success, "{:?}", lenient.failure);
}
