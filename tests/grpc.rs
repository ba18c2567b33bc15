//! `grpc:` probes against a real HTTP/2 server speaking `grpc.health.v1` (hyper, plain and
//! over TLS with ALPN `h2`): serving, not serving, an unknown service, a server that never
//! answers the check, one that is not gRPC, and one that speaks only HTTP/1.1 — and
//! blackbox_exporter's own `grpc` prober on the same server agreeing on each.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, channel::Channel};
use hyper::body::Incoming;
use support::{run_probe, run_probe_with};

/// A health server: `""` and `"orders"` are known (SERVING and NOT_SERVING), `"slow"` never
/// answers, anything else is NOT_FOUND as a trailers-only answer.
async fn answer(
    request: http::Request<Incoming>,
) -> Result<http::Response<Channel<Bytes, Infallible>>, Infallible> {
    let path = request.uri().path().to_string();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let service = body
        .get(5..)
        .and_then(|m| m.get(2..))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .unwrap_or_default();
    let (mut tx, channel) = Channel::<Bytes, Infallible>::new(2);
    let grpc = || http::Response::builder().header("content-type", "application/grpc");
    if path != "/grpc.health.v1.Health/Check" {
        return Ok(grpc().header("grpc-status", "12").body(channel).unwrap());
    }
    let status = match service.as_str() {
        "" => 1u8,
        "orders" => 2,
        "slow" => {
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                drop(tx);
            });
            return Ok(grpc().body(channel).unwrap());
        }
        other => {
            let message = format!("unknown%20service%20{other}");
            return Ok(grpc()
                .header("grpc-status", "5")
                .header("grpc-message", message)
                .body(channel)
                .unwrap());
        }
    };
    tokio::spawn(async move {
        let _ = tx
            .send_data(Bytes::from(vec![0, 0, 0, 0, 2, 0x08, status]))
            .await;
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        let _ = tx.send_trailers(trailers).await;
    });
    Ok(grpc().body(channel).unwrap())
}

/// Serves the health service on `127.0.0.1:0`, over TLS when `tls` is given.
async fn health_server(tls: Option<Arc<rustls::ServerConfig>>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(answer);
                let builder =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                            .await;
                    }
                }
            });
        }
    });
    addr
}

fn reason(outcome: &slowburn::probe::Outcome) -> (&'static str, String) {
    let failure = outcome
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {outcome:#?}"));
    (failure.reason(), failure.to_string())
}

#[tokio::test]
async fn health_checks_over_plain_http2() {
    let addr = health_server(None).await;
    let serving = run_probe(&format!("grpc: {{address: '{addr}'}}")).await;
    assert!(serving.success, "{serving:#?}");
    assert_eq!(serving.signal("serving_status"), Some(1.0));
    let phases: Vec<&str> = serving.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "connect", "check"]);

    let orders = run_probe(&format!("grpc: {{address: '{addr}', service: orders}}")).await;
    assert_eq!(
        reason(&orders),
        (
            "not_serving",
            format!("not serving: {addr} (orders) answers NOT_SERVING (2)")
        )
    );

    let unknown = run_probe(&format!("grpc: {{address: '{addr}', service: payments}}")).await;
    assert_eq!(
        reason(&unknown),
        (
            "grpc",
            "grpc: NOT_FOUND (5): unknown service payments".into()
        )
    );

    let slow = run_probe_with(
        &format!("grpc: {{address: '{addr}', service: slow}}"),
        "300ms",
    )
    .await;
    assert_eq!(
        reason(&slow),
        ("timeout", "timeout after 300ms in phase check".into())
    );
}

#[tokio::test]
async fn health_checks_over_tls_need_h2_and_a_trusted_certificate() {
    let cert = support::test_cert(&["localhost"], (2099, 1, 1));
    let mut config = (*cert.server).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let addr = health_server(Some(Arc::new(config))).await;
    let dir = std::env::temp_dir().join(format!("slowburn-grpc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let port = addr.port();

    let trusted = run_probe(&format!(
        "grpc: {{address: 'localhost:{port}', tls: true, tls_config: {{ca_file: '{}'}}}}",
        ca.display()
    ))
    .await;
    assert!(trusted.success, "{trusted:#?}");
    let phases: Vec<&str> = trusted.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "connect", "tls", "check"]);

    let untrusted = run_probe(&format!("grpc: {{address: 'localhost:{port}', tls: true}}")).await;
    assert_eq!(reason(&untrusted).0, "tls", "{}", reason(&untrusted).1);

    // The same certificate without h2 in ALPN: a server gRPC cannot talk to.
    let http1 = health_server(Some(cert.server.clone())).await;
    let refused = run_probe(&format!(
        "grpc: {{address: 'localhost:{}', tls: true, tls_config: {{ca_file: '{}'}}}}",
        http1.port(),
        ca.display()
    ))
    .await;
    let (why, message) = reason(&refused);
    assert_eq!(why, "tls");
    assert!(message.contains("did not agree to HTTP/2"), "{message}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_that_is_not_grpc_is_named_as_such() {
    // An HTTP/1.1 server: the HTTP/2 preface is not answered as HTTP/2.
    let web = support::http_server(None, |_, _| support::ok("hello")).await;
    let outcome = run_probe(&format!("grpc: {{address: '{web}'}}")).await;
    let (why, message) = reason(&outcome);
    assert_eq!(why, "grpc", "{message}");

    let nothing = support::refused_addr();
    let refused = run_probe(&format!("grpc: {{address: '{nothing}'}}")).await;
    assert_eq!(reason(&refused).0, "connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackbox_exporter_agrees_on_every_answer() {
    let Some(blackbox) = support::required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let addr = health_server(None).await;
    let dir = std::env::temp_dir().join(format!("slowburn-grpc-bb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("blackbox.yml");
    std::fs::write(
        &config,
        // blackbox names the service in the module, not in the URL.
        "modules:\n  grpc_:\n    prober: grpc\n    timeout: 2s\n    grpc: {tls: false, preferred_ip_protocol: ip4}\n  \
         grpc_orders:\n    prober: grpc\n    timeout: 2s\n    grpc: {service: orders, tls: false, preferred_ip_protocol: ip4}\n  \
         grpc_payments:\n    prober: grpc\n    timeout: 2s\n    grpc: {service: payments, tls: false, preferred_ip_protocol: ip4}\n",
    )
    .unwrap();
    let listen = support::refused_addr();
    let mut child = std::process::Command::new(&blackbox)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let ask = |service: &str| {
        let url = format!("http://{listen}/probe?module=grpc_{service}&target={addr}");
        let client = client.clone();
        async move {
            for _ in 0..100 {
                if let Ok(r) = client.get(&url).send().await {
                    return r.text().await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("blackbox_exporter never answered on {listen}");
        }
    };
    for (service, success) in [("", true), ("orders", false), ("payments", false)] {
        let theirs = ask(service).await;
        let their_success = theirs.lines().any(|l| l == "probe_success 1");
        let ours = run_probe(&format!(
            "grpc: {{address: '{addr}', service: '{service}'}}"
        ))
        .await;
        assert_eq!(their_success, success, "blackbox on {service:?}: {theirs}");
        assert_eq!(ours.success, success, "slowburn on {service:?}: {ours:#?}");
        if service == "orders" {
            assert!(
                theirs
                    .contains("probe_grpc_healthcheck_response{serving_status=\"NOT_SERVING\"} 1"),
                "{theirs}"
            );
            assert_eq!(ours.signal("serving_status"), Some(2.0));
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
}
