//! `proxy_url`: http probes through a real forward proxy on loopback (a small one written
//! here: absolute-form requests forwarded, `CONNECT` tunnelled), for plain and TLS targets,
//! and a proxy that refuses the tunnel.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use support::daemon::temp_dir;
use support::{failure, http_server, ok, run_probe, test_cert};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A forward proxy; returns its address and the request lines it was sent. With `refuse`, it
/// answers every `CONNECT` with 403.
async fn forward_proxy(refuse: bool) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let Some(text) = support::read_head(&mut client).await else {
                    return;
                };
                let line = text.lines().next().unwrap_or("").to_string();
                log.lock().unwrap().push(line.clone());
                if line.starts_with("CONNECT ") {
                    // The headers sent with CONNECT beside `Host`, each as its own entry.
                    let extra = text
                        .lines()
                        .skip(1)
                        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("host:"));
                    log.lock().unwrap().extend(extra.map(str::to_string));
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
                if let Some(authority) = line.strip_prefix("CONNECT ").map(|_| target.clone()) {
                    if refuse {
                        let _ = client.write_all(b"HTTP/1.1 403 Forbidden\r\n\r\n").await;
                        return;
                    }
                    let resolved = authority.replace("localhost", "127.0.0.1");
                    let Ok(mut upstream) = TcpStream::connect(resolved).await else {
                        return;
                    };
                    let _ = client
                        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                        .await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                } else {
                    let authority = target
                        .strip_prefix("http://")
                        .and_then(|rest| rest.split('/').next())
                        .unwrap_or("")
                        .to_string();
                    // `probe.test` stands for a host that is not loopback (those are never
                    // proxied from the environment).
                    let authority = authority.replace("probe.test", "127.0.0.1");
                    let Ok(mut upstream) = TcpStream::connect(authority).await else {
                        return;
                    };
                    let _ = upstream.write_all(text.as_bytes()).await;
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    (addr, seen)
}

#[tokio::test]
async fn a_plain_target_is_asked_of_the_proxy_in_absolute_form() {
    let target = http_server(None, |_, _| ok("via proxy")).await;
    let (proxy, seen) = forward_proxy(false).await;
    let outcome = run_probe(&format!(
        "http: {{url: \"http://{target}/health\", proxy_url: \"http://{proxy}\", expect: {{body_regex: via}}}}"
    ))
    .await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("GET http://{target}/health HTTP/1.1")]
    );
}

#[tokio::test]
async fn an_https_target_is_reached_through_a_verified_tunnel() {
    let dir = temp_dir("proxy-tls");
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    std::fs::write(dir.join("ca.pem"), &cert.pem).unwrap();
    let target = http_server(Some(cert.server.clone()), |_, _| ok("tunnelled")).await;
    let (proxy, seen) = forward_proxy(false).await;
    let outcome = run_probe(&format!(
        "http: {{url: \"https://localhost:{}/\", proxy_url: \"http://{proxy}\", tls_config: {{ca_file: \"{}\"}}}}",
        target.port(),
        dir.join("ca.pem").display()
    ))
    .await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert!(outcome.signal("cert_days_left").is_some());
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("CONNECT localhost:{} HTTP/1.1", target.port())]
    );
}

#[tokio::test]
async fn a_refused_tunnel_names_the_proxy_and_its_answer() {
    let (proxy, _) = forward_proxy(true).await;
    let outcome = run_probe(&format!(
        "http: {{url: \"https://localhost:9/\", proxy_url: \"http://{proxy}\"}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        format!("connect: proxy {proxy} refused CONNECT to localhost:9: HTTP/1.1 403 Forbidden")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_from_environment_follows_the_standard_variables() {
    let target = http_server(None, |_, _| ok("via env proxy")).await;
    let (proxy, seen) = forward_proxy(false).await;
    let dir = temp_dir("proxy-env");
    let file = dir.join("probes.yaml");
    std::fs::write(
        &file,
        format!(
            "probes:\n  - name: shop\n    http: {{url: \"http://probe.test:{port}/health\", proxy_from_environment: true, expect: {{body_regex: via}}}}\n  - name: internal\n    http: {{url: \"http://api.probe.test:{port}/health\", proxy_from_environment: true}}\n  - name: local\n    http: {{url: \"http://{target}/health\", proxy_from_environment: true}}\n",
            port = target.port()
        ),
    )
    .unwrap();
    let run = |name: &'static str, no_proxy: &'static str| {
        let file = file.clone();
        async move {
            let out = tokio::process::Command::new(support::daemon::BIN)
                .args(["probe", name, "-c"])
                .arg(&file)
                .env("HTTP_PROXY", format!("http://{proxy}"))
                .env("NO_PROXY", no_proxy)
                .env_remove("http_proxy")
                .env_remove("no_proxy")
                .output()
                .await
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        }
    };
    let (code, out) = run("shop", "").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        *seen.lock().unwrap(),
        [format!(
            "GET http://probe.test:{}/health HTTP/1.1",
            target.port()
        )]
    );
    // A NO_PROXY domain covers its subdomains: asked directly, so the name does not resolve.
    let (code, out) = run("internal", "probe.test").await;
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("reason: dns"), "{out}");
    // A loopback target is never proxied.
    let (code, out) = run("local", "").await;
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
}

#[tokio::test]
async fn proxy_connect_header_values_are_secrets_sent_with_connect_only() {
    let dir = temp_dir("proxy-connect-header");
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    std::fs::write(dir.join("ca.pem"), &cert.pem).unwrap();
    std::fs::write(dir.join("token"), "s3cret\n").unwrap();
    let target = http_server(Some(cert.server.clone()), |_, _| ok("tunnelled")).await;
    let plain = http_server(None, |_, _| ok("plain")).await;
    let (proxy, seen) = forward_proxy(false).await;
    let token = dir.join("token").display().to_string();
    let outcome = run_probe(&format!(
        "http: {{url: \"https://localhost:{}/\", proxy_url: \"http://{proxy}\", tls_config: {{ca_file: \"{}\"}}, proxy_connect_header: {{x-proxy-token: [\"file:{token}\"], X-Multi: [\"file:{token}\", \"file:{token}\"]}}}}",
        target.port(),
        dir.join("ca.pem").display()
    ))
    .await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert_eq!(
        *seen.lock().unwrap(),
        [
            format!("CONNECT localhost:{} HTTP/1.1", target.port()),
            "X-Multi: s3cret".to_string(),
            "X-Multi: s3cret".to_string(),
            "X-Proxy-Token: s3cret".to_string(),
        ]
    );
    // A plain target is asked in absolute form: no CONNECT, so none of those headers.
    seen.lock().unwrap().clear();
    let outcome = run_probe(&format!(
        "http: {{url: \"http://probe.test:{}/\", proxy_url: \"http://{proxy}\", proxy_connect_header: {{X-Proxy-Token: [\"file:{token}\"]}}}}",
        plain.port()
    ))
    .await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert_eq!(
        *seen.lock().unwrap(),
        [format!("GET http://probe.test:{}/ HTTP/1.1", plain.port())]
    );
    // An inline value is refused as any secret is.
    let errors = load_errors(&format!(
        "http: {{url: 'https://x.test/', proxy_url: 'http://{proxy}', proxy_connect_header: {{X-Token: [abc]}}}}"
    ));
    assert_eq!(
        errors,
        [
            "p.yaml:3:106: probe \"a\": http.proxy_connect_header.X-Token: secrets must be written as env:NAME or file:/path, never inline"
        ]
    );
}

#[tokio::test]
async fn no_proxy_hosts_are_reached_directly() {
    let target = http_server(None, |_, _| ok("hello")).await;
    let (proxy, seen) = forward_proxy(false).await;
    let port = target.port();
    let probe = |host: &str, no_proxy: &str| {
        format!(
            "http: {{url: \"http://{host}:{port}/\", proxy_url: \"http://{proxy}\", no_proxy: \"{no_proxy}\"}}"
        )
    };
    // Not named: through the proxy (which knows probe.test).
    let outcome = run_probe(&probe("probe.test", "other.test, 10.0.0.0/8, .probe.test")).await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert_eq!(seen.lock().unwrap().len(), 1);
    // A domain covers its subdomains: asked directly, so the name does not resolve here.
    let outcome = run_probe(&probe("api.probe.test", "other.test,probe.test")).await;
    assert_eq!(outcome.failure.as_ref().map(|f| f.reason()), Some("dns"));
    // With no_proxy given, loopback is never proxied (as Go's httpproxy does).
    let outcome = run_probe(&probe("127.0.0.1", "other.test")).await;
    assert!(outcome.success, "{:?}", outcome.failure);
    assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
    assert_eq!(
        load_errors("http: {url: 'http://x.test/', no_proxy: x.test}"),
        ["p.yaml:3:45: probe \"a\": http.no_proxy: has no effect without proxy_url"]
    );
}

/// The errors `slowburn check` gives for one probe entry `a` written as `entry`.
fn load_errors(entry: &str) -> Vec<String> {
    support::load_errors("p.yaml", &format!("probes:\n  - name: a\n    {entry}\n"))
}
