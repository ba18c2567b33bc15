//! slowburn as a blackbox_exporter drop-in, measured against the real blackbox_exporter: the
//! same `modules:` text is given to both, both `/probe` the same local http, https, tcp and
//! dns targets (passing and failing), and every blackbox series must be in slowburn's answer
//! with a value that means the same. promtool lints each of slowburn's answers.
//!
//! blackbox_exporter and promtool are real binaries: missing, the test says so loudly and
//! skips, or fails with `SLOWBURN_REQUIRE_BLACKBOX=1` (as CI sets it).

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{free_port, temp_dir};
use support::{
    Mail, dns_server, http_server, ok, refused_addr, required_tool, starttls_server, test_cert,
};

/// blackbox.yml's `modules:`, given as is to both exporters.
const MODULES: &str = r#"modules:
  icmp:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
  grpc_plain:
    prober: grpc
    timeout: 5s
    grpc:
      tls: false
      preferred_ip_protocol: ip4
  grpc_orders:
    prober: grpc
    timeout: 5s
    grpc:
      service: orders
      preferred_ip_protocol: ip4
  http_2xx:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
  http_tls:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_not_ssl: true
      tls_config:
        ca_file: CA_FILE
  http_body:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      valid_status_codes: [200]
      valid_http_versions: ["HTTP/1.1"]
      fail_if_body_matches_regexp: ["maintenance"]
  http_header_bad:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_matches: [{header: Connection, regexp: "close"}]
  http_header_missing:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_matches:
        - {header: X-Missing, regexp: "x"}
  http_header_missing_ok:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_matches:
        - {header: X-Missing, regexp: "x", allow_missing: true}
      fail_if_header_not_matches:
        - {header: Content-Length, regexp: "^[0-9]+$"}
  http_br:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      compression: br
  http_deflate:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      compression: deflate
  http_body_all:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ["all", "good$"]
  http_body_all_but_one:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_body_not_matches_regexp: ["all", "bad"]
  http_header_not_missing:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_not_matches:
        - {header: X-Missing, regexp: "x"}
  http_header_not_missing_ok:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_not_matches:
        - {header: X-Missing, regexp: "x", allow_missing: true}
        - {header: Content-Length, regexp: "^[0-9]+$", allow_missing: true}
  http_header_not_present_bad:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      fail_if_header_not_matches:
        - {header: Content-Length, regexp: "^x$", allow_missing: true}
  http_authorization:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      authorization:
        type: Token
        credentials_file: AUTH_FILE
  http_oauth2:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      oauth2:
        client_id: "probe:1"
        client_secret_file: SECRET_FILE
        scopes: [read, write]
        token_url: TOKEN_URL/token
        endpoint_params: {audience: "https://api"}
  http_oauth2_refused:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      oauth2:
        client_id: stranger
        client_secret_file: SECRET_FILE
        token_url: TOKEN_URL/token
  http_tunnel_header:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      proxy_url: TUNNEL_PROXY
      # blackbox sends the value as written; slowburn reads the file it names, which holds
      # that same text, so both send the same header.
      proxy_connect_header:
        X-Proxy-Token: [file:PROXY_TOKEN_FILE]
      tls_config:
        ca_file: CA_FILE
  http_tunnel_no_header:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      proxy_url: TUNNEL_PROXY
      tls_config:
        ca_file: CA_FILE
  http_proxy:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      proxy_url: PROXY_URL
  http_proxy_skip:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip4
      proxy_url: PROXY_URL
      skip_resolve_phase_with_proxy: true
  http_ip6:
    prober: http
    timeout: 5s
    http:
      preferred_ip_protocol: ip6
      ip_protocol_fallback: false
  http_default_family:
    prober: http
    timeout: 5s
  tcp_connect:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
  tcp_banner:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^SSH-2.0-"
        - send: "SSH-2.0-probe\r\n"
  dns_a:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      validate_answer_rrs:
        fail_if_none_matches_regexp: ["127\\.0\\.0\\.1"]
  imap_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: CA_FILE
      query_response:
        - expect: "OK.*STARTTLS"
        - send: ". STARTTLS"
        - expect: "OK"
        - starttls: true
        - send: ". capability"
        - expect: "CAPABILITY IMAP4rev1"
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      tls_config:
        ca_file: CA_FILE
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "EHLO prober\r"
        - expect: "^250-STARTTLS"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "EHLO prober\r"
        - expect: "^250-AUTH"
        - send: "QUIT\r"
  smtp_starttls_untrusted:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      query_response:
        - expect: "^220 ([^ ]+) ESMTP (.+)$"
        - send: "STARTTLS\r"
        - expect: "^220"
        - starttls: true
        - send: "QUIT\r"
  tcp_source:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      source_ip_address: 127.0.0.2
  icmp_source:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
      source_ip_address: 127.0.0.2
  dns_source:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      source_ip_address: 127.0.0.2
  dns_rrs:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: zone.test
      query_type: A
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['^zone\.test\.\t60\tIN\tA\t127\.0\.0\.[12]$']
        fail_if_none_matches_regexp: ['\t127\.0\.0\.2$', 'nothing']
      validate_authority_rrs:
        fail_if_none_matches_regexp: ['^zone\.test\.\t60\tIN\tNS\tns\.zone\.test\.$']
      validate_additional_rrs:
        fail_if_matches_regexp: ['10\.0\.0\.1']
        fail_if_not_matches_regexp: ['^ns\.zone\.test\.\t60\tIN\tA\t']
  dns_rrs_additional_bad:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: zone.test
      query_type: A
      validate_additional_rrs:
        fail_if_matches_regexp: ['127\.0\.0\.53']
  dns_all_match_one:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      validate_answer_rrs:
        fail_if_all_match_regexp: ['127\.0\.0\.1$']
  dns_all_match_two:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: zone.test
      query_type: A
      validate_answer_rrs:
        fail_if_all_match_regexp: ['127\.0\.0\.1$']
  dns_empty_all_match:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: AAAA
      validate_answer_rrs:
        fail_if_all_match_regexp: ['x']
        fail_if_matches_regexp: ['x']
  dns_empty_not_matches:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: AAAA
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['.']
  dns_txt:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: txt.test
      query_type: TXT
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['^txt\.test\.\t60\tIN\tTXT\t"v=1 \\"q\\"" "two"$']
"#;

/// The web targets both tests probe, and the modules pointed at their CA.
struct Web {
    modules: String,
    /// Plain HTTP: `/down` answers 503 "maintenance", anything else 200.
    plain: std::net::SocketAddr,
    /// HTTPS for `localhost`, its certificate in the modules' `ca_file`.
    tls: std::net::SocketAddr,
    /// The TLS side of that certificate, for other servers the modules trust.
    certified: std::sync::Arc<rustls::ServerConfig>,
}

impl Web {
    async fn start(dir: &Path) -> Web {
        let cert = test_cert(&["localhost"], (2099, 1, 1));
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, &cert.pem).unwrap();
        let compressed = brotli("all good, compressed ".repeat(50).as_bytes());
        let deflated = raw_deflate("all good, deflated ".repeat(50).as_bytes());
        let plain = http_server(None, move |path, head| {
            let head = head.to_ascii_lowercase();
            match path {
                "/down" => support::Reply::Full(503, vec![], b"maintenance".to_vec()),
                "/br" => support::Reply::Full(
                    200,
                    vec![("Content-Encoding", "br".into())],
                    compressed.clone(),
                ),
                "/deflate" => support::Reply::Full(
                    200,
                    vec![("Content-Encoding", "deflate".into())],
                    deflated.clone(),
                ),
                "/auth" if head.contains("\r\nauthorization: token k-123\r\n") => ok("let in"),
                "/oauth" if head.contains("\r\nauthorization: bearer tok-xyz\r\n") => ok("let in"),
                "/auth" | "/oauth" => support::Reply::Full(401, vec![], b"who are you".to_vec()),
                _ => ok("all good"),
            }
        })
        .await;
        std::fs::write(dir.join("auth"), "k-123\n").unwrap();
        std::fs::write(dir.join("secret"), "p@ss word\n").unwrap();
        let proxy_token = dir.join("proxy-token").display().to_string();
        std::fs::write(&proxy_token, format!("file:{proxy_token}")).unwrap();
        let tunnel = tunnel_proxy(format!("file:{proxy_token}")).await;
        Web {
            modules: MODULES
                .replace("CA_FILE", &ca.display().to_string())
                .replace("PROXY_URL", &format!("http://{}", forward_proxy().await))
                .replace("AUTH_FILE", &dir.join("auth").display().to_string())
                .replace("SECRET_FILE", &dir.join("secret").display().to_string())
                .replace("TOKEN_URL", &format!("http://{}", token_endpoint().await))
                .replace("TUNNEL_PROXY", &format!("http://{tunnel}"))
                .replace("PROXY_TOKEN_FILE", &proxy_token),
            plain,
            tls: http_server(Some(cert.server.clone()), |_, _| ok("secure")).await,
            certified: cert.server,
        }
    }
}

/// A child process killed on drop, with its log for messages.
struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    fn spawn(command: &mut Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log).unwrap();
        let child = command
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start");
        Process { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// blackbox_exporter and slowburn, both given `modules`, each on a free port.
fn exporters(blackbox: &Path, dir: &Path, modules: &str) -> (Process, u16, Process, u16) {
    let bb_port = free_port();
    std::fs::write(dir.join("blackbox.yml"), modules).unwrap();
    let bb = Process::spawn(
        Command::new(blackbox).args([
            format!("--config.file={}", dir.join("blackbox.yml").display()),
            format!("--web.listen-address=127.0.0.1:{bb_port}"),
        ]),
        dir.join("blackbox.log"),
    );
    let sb_port = free_port();
    std::fs::write(
        dir.join("slowburn.yaml"),
        format!(
            "server: {{listen: 127.0.0.1:{sb_port}}}\nstorage: {{path: {}}}\n{modules}",
            dir.join("slowburn.db").display()
        ),
    )
    .unwrap();
    let sb = Process::spawn(
        Command::new(support::daemon::BIN)
            .args(["run", "-c"])
            .arg(dir.join("slowburn.yaml")),
        dir.join("slowburn.log"),
    );
    (bb, bb_port, sb, sb_port)
}

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// GETs `url` until it answers (the exporter is starting); its status and body.
async fn get(client: &reqwest::Client, url: &str, process: &mut Process) -> (u16, String) {
    let started = Instant::now();
    loop {
        if let Ok(response) = client.get(url).send().await {
            let status = response.status().as_u16();
            return (status, response.text().await.unwrap_or_default());
        }
        if let Ok(Some(status)) = process.child.try_wait() {
            panic!("exited with {status}:\n{}", process.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{url} did not answer:\n{}",
            process.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Samples of an exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn family(key: &str) -> &str {
    key.split('{').next().unwrap_or(key)
}

/// Whether slowburn's `ours` means what blackbox's `theirs` does for the series `key`.
fn same_meaning(key: &str, theirs: f64, ours: f64) -> bool {
    let name = family(key);
    if name.ends_with("_seconds") && !name.contains("timestamp") && !name.contains("expiry") {
        // A duration in seconds: a phase blackbox never entered is 0 in both; one it timed
        // is a few milliseconds on loopback in both (not milliseconds written as seconds).
        // A timed-out run lasts its timeout in both.
        return if theirs == 0.0 {
            ours < 0.005
        } else {
            ours >= 0.0 && (ours - theirs).abs() < 0.25
        };
    }
    theirs == ours
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_answers_as_blackbox_exporter_does() {
    let Some(blackbox) = required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let promtool = required_tool(
        "promtool",
        "SLOWBURN_REQUIRE_PROMETHEUS",
        "apt-get install prometheus",
    );
    let dir = temp_dir("blackbox-parity");
    let Web {
        modules,
        plain,
        tls,
        certified,
    } = Web::start(&dir).await;
    let banner = banner_tcp(b"SSH-2.0-OpenSSH_9.6\r\n").await;
    let dns = dns_server().await;
    let refused = refused_addr();
    let v6 = v6_http().await;
    let smtp = starttls_server(certified.clone(), Mail::Smtp).await;
    let imap = starttls_server(certified, Mail::Imap).await;
    let grpc = support::grpc::health_server(None).await;

    let (mut bb, bb_port, mut sb, sb_port) = exporters(&blackbox, &dir, &modules);
    let cases: Vec<(&str, String, bool)> = vec![
        ("http_2xx", format!("http://{plain}/"), true),
        ("http_2xx", format!("{plain}/health"), true),
        ("http_2xx", format!("http://{plain}/down"), false),
        ("http_2xx", format!("http://{refused}/"), false),
        ("http_body", format!("http://{plain}/down"), false),
        ("http_body", format!("http://{plain}/"), true),
        (
            "http_tls",
            format!("https://localhost:{}/", tls.port()),
            true,
        ),
        ("http_tls", format!("http://{plain}/"), false),
        (
            "http_2xx",
            format!("https://localhost:{}/", tls.port()),
            false,
        ),
        ("http_header_bad", format!("http://{plain}/"), false),
        ("http_header_missing", format!("http://{plain}/"), false),
        ("http_header_missing_ok", format!("http://{plain}/"), true),
        ("http_br", format!("http://{plain}/br"), true),
        // blackbox decompresses every answer as the module says: one sent plain fails.
        ("http_br", format!("http://{plain}/"), false),
        ("http_br", format!("http://{plain}/deflate"), false),
        ("http_deflate", format!("http://{plain}/deflate"), true),
        ("http_body_all", format!("http://{plain}/"), true),
        ("http_body_all", format!("http://{plain}/down"), false),
        ("http_body_all_but_one", format!("http://{plain}/"), false),
        ("http_header_not_missing", format!("http://{plain}/"), false),
        (
            "http_header_not_missing_ok",
            format!("http://{plain}/"),
            true,
        ),
        (
            "http_header_not_present_bad",
            format!("http://{plain}/"),
            false,
        ),
        ("http_authorization", format!("http://{plain}/auth"), true),
        ("http_2xx", format!("http://{plain}/auth"), false),
        ("http_oauth2", format!("http://{plain}/oauth"), true),
        (
            "http_oauth2_refused",
            format!("http://{plain}/oauth"),
            false,
        ),
        (
            "http_tunnel_header",
            format!("https://localhost:{}/", tls.port()),
            true,
        ),
        (
            "http_tunnel_no_header",
            format!("https://localhost:{}/", tls.port()),
            false,
        ),
        // Through a proxy blackbox resolves the target itself first, unless told to skip
        // that: then an unresolvable name is the proxy's to fail (502) and the address
        // families are left out.
        (
            "http_proxy",
            format!("http://localhost:{}/", plain.port()),
            true,
        ),
        ("http_proxy", "http://nowhere.invalid/".to_string(), false),
        (
            "http_proxy_skip",
            format!("http://localhost:{}/", plain.port()),
            true,
        ),
        (
            "http_proxy_skip",
            "http://nowhere.invalid/".to_string(),
            false,
        ),
        ("http_ip6", format!("http://[::1]:{v6}/"), true),
        (
            "http_ip6",
            format!("http://127.0.0.1:{}/", plain.port()),
            false,
        ),
        ("http_default_family", format!("http://[::1]:{v6}/"), true),
        ("tcp_connect", plain.to_string(), true),
        ("tcp_connect", refused.to_string(), false),
        ("tcp_banner", banner.to_string(), true),
        ("tcp_banner", plain.to_string(), false),
        ("smtp_starttls", format!("localhost:{}", smtp.port()), true),
        ("imap_starttls", format!("localhost:{}", imap.port()), true),
        ("imap_starttls", format!("localhost:{}", smtp.port()), false),
        (
            "smtp_starttls_untrusted",
            format!("localhost:{}", smtp.port()),
            false,
        ),
        ("dns_a", dns.to_string(), true),
        ("dns_a", refused.to_string(), false),
        ("tcp_source", plain.to_string(), true),
        ("icmp_source", "127.0.0.1".to_string(), true),
        ("dns_source", dns.to_string(), true),
        ("dns_rrs", dns.to_string(), true),
        ("dns_rrs_additional_bad", dns.to_string(), false),
        // blackbox fails `fail_if_all_match_regexp` when some record does *not* match.
        ("dns_all_match_one", dns.to_string(), true),
        ("dns_all_match_two", dns.to_string(), false),
        ("dns_empty_all_match", dns.to_string(), true),
        ("dns_empty_not_matches", dns.to_string(), false),
        ("dns_txt", dns.to_string(), true),
        ("icmp", "127.0.0.1".to_string(), true),
        ("grpc_plain", grpc.to_string(), true),
        ("grpc_orders", grpc.to_string(), false),
        ("grpc_plain", refused.to_string(), false),
    ];
    let client = client();
    let mut problems = Vec::new();
    for (module, target, success) in &cases {
        let (theirs, ours) = both(
            &client,
            (bb_port, &mut bb),
            (sb_port, &mut sb),
            module,
            target,
        )
        .await;
        let want = if *success { 1.0 } else { 0.0 };
        let case = format!("{module} {target}");
        problems.extend(differences(
            &case,
            want,
            &theirs,
            &ours,
            promtool.as_deref(),
        ));
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// A forward proxy for absolute-form requests (`GET http://host:port/path`): it connects to
/// the host itself (502 when it cannot) and relays both ways.
async fn forward_proxy() -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Some(head) = support::read_head(&mut client).await else {
                    return;
                };
                let (line, rest) = head.split_once("\r\n").unwrap();
                let mut words = line.split(' ');
                let (method, target) = (words.next().unwrap(), words.next().unwrap());
                let after_scheme = target.strip_prefix("http://").unwrap();
                let (authority, path) = after_scheme
                    .split_once('/')
                    .map_or((after_scheme, String::from("/")), |(a, p)| {
                        (a, format!("/{p}"))
                    });
                let authority = if authority.contains(':') {
                    authority.to_string()
                } else {
                    format!("{authority}:80")
                };
                let Ok(mut server) = tokio::net::TcpStream::connect(&authority).await else {
                    let _ = client
                        .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                };
                let forwarded = format!("{method} {path} HTTP/1.1\r\n{rest}");
                if server.write_all(forwarded.as_bytes()).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    addr
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams::default();
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

/// Raw DEFLATE (no zlib wrapper), which blackbox's `deflate` reads.
fn raw_deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// An OAuth 2.0 token endpoint that hands out `tok-xyz` (for an hour) only to the
/// client-credentials request of the `http_oauth2` module exactly as Go's oauth2 writes it:
/// id and secret query-escaped in a basic-auth header, the form with its keys sorted.
async fn token_endpoint() -> std::net::SocketAddr {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let (head, body) = request.into_parts();
                        let body = body.collect().await.unwrap().to_bytes();
                        let header = |name: &str| {
                            head.headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_string()
                        };
                        // base64("probe%3A1:p%40ss+word")
                        let right = head.method == http::Method::POST
                            && head.uri.path() == "/token"
                            && header("authorization") == "Basic cHJvYmUlM0ExOnAlNDBzcyt3b3Jk"
                            && header("content-type") == "application/x-www-form-urlencoded"
                            && body.as_ref()
                                == b"audience=https%3A%2F%2Fapi&grant_type=client_credentials&scope=read+write";
                        let (status, answer) = match right {
                            true => (
                                200,
                                r#"{"access_token":"tok-xyz","token_type":"bearer","expires_in":3600}"#,
                            ),
                            false => (401, r#"{"error":"invalid_client"}"#),
                        };
                        let mut response = http::Response::new(http_body_util::Full::new(
                            bytes::Bytes::from_static(answer.as_bytes()),
                        ));
                        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                        response.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(response)
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    addr
}

/// A proxy that opens a `CONNECT` tunnel (to loopback) only when the request carries
/// `X-Proxy-Token: token`, and answers 407 otherwise.
async fn tunnel_proxy(token: String) -> std::net::SocketAddr {
    use tokio::io::AsyncWriteExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let want = format!("\r\nx-proxy-token: {}\r\n", token.to_ascii_lowercase());
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let want = want.clone();
            tokio::spawn(async move {
                let Some(head) = support::read_head(&mut client).await else {
                    return;
                };
                let head = head.to_ascii_lowercase();
                let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                if !head.starts_with("connect ") || !head.contains(&want) {
                    let _ = client
                        .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    return;
                }
                let Ok(mut server) =
                    tokio::net::TcpStream::connect(target.replace("localhost", "127.0.0.1")).await
                else {
                    return;
                };
                let _ = client
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            });
        }
    });
    addr
}

/// An HTTP server on [::1] only: its port.
async fn v6_http() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("[::1]:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nv6",
                    )
                    .await;
            });
        }
    });
    port
}

/// A server that speaks first, as SSH does: the banner, then it reads what comes.
async fn banner_tcp(banner: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = stream.write_all(banner).await;
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf).await;
            });
        }
    });
    addr
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn promtool_check(promtool: &Path, body: &str) -> (Option<i32>, String) {
    use std::io::Write;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.code(), text)
}

/// The scrape job every blackbox_exporter guide gives, pointed at `exporter`.
fn blackbox_job(job: &str, exporter: u16, module: &str, targets: &[String]) -> String {
    let targets = targets
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "  - job_name: {job}\n    metrics_path: /probe\n    params:\n      module: [{module}]\n\
         \x20   static_configs:\n      - targets: [{targets}]\n    relabel_configs:\n\
         \x20     - source_labels: [__address__]\n        target_label: __param_target\n\
         \x20     - source_labels: [__param_target]\n        target_label: instance\n\
         \x20     - target_label: __address__\n        replacement: 127.0.0.1:{exporter}\n"
    )
}

/// `promql`'s answer as (labels without `job`, value) pairs, sorted.
async fn answer(
    client: &reqwest::Client,
    prometheus: &str,
    promql: &str,
) -> Vec<(BTreeMap<String, String>, f64)> {
    let url = reqwest::Url::parse_with_params(
        &format!("{prometheus}/api/v1/query"),
        &[("query", promql)],
    )
    .unwrap();
    let Ok(response) = client.get(url).send().await else {
        return Vec::new();
    };
    let text = response.text().await.unwrap_or_default();
    let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let mut out: Vec<(BTreeMap<String, String>, f64)> = body["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|series| {
            let labels = series["metric"]
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "job")
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect();
            let value = series["value"][1]
                .as_str()
                .unwrap_or("NaN")
                .parse()
                .unwrap_or(f64::NAN);
            (labels, value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_blackbox_scrape_job_gets_the_same_answers() {
    let Some(blackbox) = required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let Some(prometheus) = required_tool(
        "prometheus",
        "SLOWBURN_REQUIRE_PROMETHEUS",
        "apt-get install prometheus",
    ) else {
        return;
    };
    let dir = temp_dir("blackbox-scrape");
    let Web {
        modules,
        plain,
        tls,
        ..
    } = Web::start(&dir).await;
    let (mut bb, bb_port, mut sb, sb_port) = exporters(&blackbox, &dir, &modules);
    let client = client();
    // Both answer before Prometheus starts scraping them.
    get(
        &client,
        &format!("http://127.0.0.1:{bb_port}/probe?target={plain}"),
        &mut bb,
    )
    .await;
    get(
        &client,
        &format!("http://127.0.0.1:{sb_port}/probe?target={plain}"),
        &mut sb,
    )
    .await;

    let http_targets = vec![
        format!("http://{plain}/"),
        format!("http://{plain}/down"),
        format!("http://{}/", refused_addr()),
        format!("https://localhost:{}/", tls.port()),
    ];
    let tls_targets = vec![format!("https://localhost:{}/", tls.port())];
    let mut config = String::from(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
    );
    for (job, port) in [("blackbox", bb_port), ("slowburn", sb_port)] {
        config.push_str(&blackbox_job(
            &format!("{job}_http"),
            port,
            "http_2xx",
            &http_targets,
        ));
        config.push_str(&blackbox_job(
            &format!("{job}_tls"),
            port,
            "http_tls",
            &tls_targets,
        ));
    }
    std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
    let port = free_port();
    let mut server = Process::spawn(
        Command::new(&prometheus).args([
            format!("--config.file={}", dir.join("prometheus.yml").display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]),
        dir.join("prometheus.log"),
    );
    let url = format!("http://127.0.0.1:{port}");
    // Every job scraped at least once: each target's `up` is 1.
    let started = Instant::now();
    loop {
        let up = answer(&client, &url, "up == 1").await;
        if up.len() == 2 * (http_targets.len() + tls_targets.len()) {
            break;
        }
        if let Ok(Some(status)) = server.child.try_wait() {
            panic!("prometheus exited with {status}:\n{}", server.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not every target is up: {up:?}\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The queries of the usual blackbox dashboards and alert rules, per exporter.
    let queries = [
        "probe_success{job=\"JOB_http\"}",
        "probe_success{job=\"JOB_http\"} == 0",
        "probe_http_status_code{job=\"JOB_http\"} >= 400",
        "probe_http_status_code{job=\"JOB_http\"} == 0",
        "probe_http_ssl{job=\"JOB_http\"}",
        "probe_http_version{job=\"JOB_http\"}",
        "count by (instance) (probe_http_duration_seconds{job=\"JOB_http\"})",
        "probe_ssl_earliest_cert_expiry{job=\"JOB_tls\"} > time()",
        "floor((probe_ssl_last_chain_expiry_timestamp_seconds{job=\"JOB_tls\"} - time()) / 86400 / 365)",
        "probe_tls_version_info{job=\"JOB_tls\"}",
        "probe_ssl_last_chain_info{job=\"JOB_tls\"}",
        "probe_ip_protocol{job=\"JOB_http\"}",
        "probe_http_duration_seconds{job=\"JOB_http\",phase=\"connect\"} < 1",
    ];
    let mut problems = Vec::new();
    for query in queries {
        let theirs = answer(&client, &url, &query.replace("JOB", "blackbox")).await;
        let ours = answer(&client, &url, &query.replace("JOB", "slowburn")).await;
        if theirs.is_empty() {
            problems.push(format!("{query}: blackbox answers nothing"));
        }
        let labels = |a: &[(BTreeMap<String, String>, f64)]| {
            a.iter().map(|(l, _)| l.clone()).collect::<Vec<_>>()
        };
        if labels(&theirs) != labels(&ours) {
            problems.push(format!("{query}: blackbox {theirs:?}, slowburn {ours:?}"));
            continue;
        }
        for ((series, a), (_, b)) in theirs.iter().zip(&ours) {
            // Durations differ run to run; everything else is the same number.
            let timed = series
                .get("__name__")
                .is_some_and(|n| n.ends_with("duration_seconds"));
            if !timed && a != b {
                problems.push(format!("{query}: {series:?} blackbox {a}, slowburn {b}"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The `probe_success` line of the probe named `probe`, if it is exported.
fn success_line<'a>(body: &'a str, probe: &str) -> Option<&'a str> {
    let needle = format!("probe=\"{probe}\"");
    body.lines()
        .find(|l| l.starts_with("probe_success{") && l.contains(&needle))
}

#[test]
fn targets_and_a_file_sd_file_expand_into_labelled_probes_and_follow_the_file() {
    let dir = temp_dir("blackbox-targets");
    // A bound, never-accepting listener completes TCP handshakes from its backlog.
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = open.local_addr().unwrap();
    let down = refused_addr();
    let sd = dir.join("ports.json");
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["{up}"], "labels": {{"team": "data", "__meta_zone": "a"}}}}]"#),
    )
    .unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: 127.0.0.1:{port}}}\nstorage: {{path: state.db}}\n\
             modules:\n  tcp_connect: {{prober: tcp, timeout: 1s}}\n\
             probes:\n  - name: ports\n    interval: 1s\n    tcp: {{}}\n    targets_file: ports.json\n\
             \x20 - name: fleet\n    interval: 1s\n    module: tcp_connect\n    labels: {{instance: edge}}\n    targets: [\"{down}\"]\n\
             \x20 - name: apis\n    interval: 1s\n    http: {{expect: {{status: [200]}}}}\n    targets: [\"http://{down}/health\"]\n"
        ),
    )
    .unwrap();
    let _daemon = support::daemon::Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    support::daemon::wait_http(addr);
    let body = support::daemon::wait_metrics(addr, Duration::from_secs(15), |b| {
        success_line(b, &format!("ports/{up}")).is_some()
            && success_line(b, &format!("fleet/{down}")).is_some()
            && success_line(b, &format!("apis/http://{down}/health")).is_some()
    });
    // An http kind without `url` took the target as its URL; refused, its status reads 0
    // (as in blackbox_exporter) instead of the series vanishing.
    let status = body
        .lines()
        .find(|l| {
            l.starts_with("probe_http_status_code{")
                && l.contains(&format!("probe=\"apis/http://{down}/health\""))
        })
        .unwrap_or_else(|| panic!("no status series for the refused target:\n{body}"));
    assert!(status.ends_with(" 0"), "{status}");
    let line = success_line(&body, &format!("ports/{up}")).unwrap();
    for label in [
        format!("target=\"{up}\""),
        format!("instance=\"{up}\""),
        "team=\"data\"".to_string(),
        "kind=\"tcp\"".to_string(),
    ] {
        assert!(line.contains(&label), "{label} missing: {line}");
    }
    assert!(!line.contains("__meta"), "meta labels are dropped: {line}");
    assert!(line.ends_with(" 1"), "{line}");
    // The entry's own `instance` is kept; `target` still names the target.
    let line = success_line(&body, &format!("fleet/{down}")).unwrap();
    assert!(line.contains("instance=\"edge\""), "{line}");
    assert!(line.contains(&format!("target=\"{down}\"")), "{line}");
    assert!(line.ends_with(" 0"), "{line}");

    // Service discovery rewrites the file: the daemon follows it without a SIGHUP (it polls
    // the files every 2 s and reloads once they are stable, so this waits a few real seconds).
    std::fs::write(
        &sd,
        format!(r#"[{{"targets": ["{down}"], "labels": {{"team": "web"}}}}]"#),
    )
    .unwrap();
    let body = support::daemon::wait_metrics(addr, Duration::from_secs(20), |b| {
        success_line(b, &format!("ports/{down}")).is_some()
            && success_line(b, &format!("ports/{up}")).is_none()
    });
    let line = success_line(&body, &format!("ports/{down}")).unwrap();
    assert!(line.contains("team=\"web\""), "{line}");
    drop(open);
}

/// blackbox 0.23's own `example.yml`, pasted as is: every module loads but the two that break
/// slowburn's rules (an inline password; a CA file that is not on this machine).
#[test]
fn blackbox_own_example_file_loads_but_for_an_inline_secret_and_a_missing_file() {
    let example = Path::new("/usr/share/doc/prometheus-blackbox-exporter/examples/example.yml");
    if !example.exists() {
        let message = "SKIPPED: blackbox's example.yml is not installed";
        if std::env::var("SLOWBURN_REQUIRE_BLACKBOX").is_ok_and(|v| v == "1") {
            panic!("{message}, and SLOWBURN_REQUIRE_BLACKBOX=1 requires it");
        }
        eprintln!("{message}");
        return;
    }
    let dir = temp_dir("blackbox-example");
    let copy = dir.join("example.yml");
    std::fs::copy(example, &copy).unwrap();
    let out = Command::new(support::daemon::BIN)
        .args(["check", "-c"])
        .arg(&copy)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("example.yml:"))
        .map(|l| l.split_once("example.yml:").map_or(l, |(_, rest)| rest))
        .collect();
    assert_eq!(
        errors,
        [
            "53:19: module \"http_basic_auth_example\": http.basic_auth.password: secrets must be written as env:NAME or file:/path, never inline",
            "59:18: module \"http_custom_ca_example\": http.tls_config.ca_file: cannot read /certs/my_cert.crt: No such file or directory (os error 2)",
        ],
        "{text}"
    );
}

/// Keys of later blackbox_exporter releases and of Prometheus' common config that 0.23 does
/// not read (`body_file`, `no_proxy`) work in slowburn's modules too; `enable_http1: true`
/// is what slowburn does anyway.
#[tokio::test]
async fn body_file_no_proxy_and_enable_http1_work_in_a_module() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let target = http_server(None, move |_, head| {
        log.lock().unwrap().push(head.to_string());
        ok("fine")
    })
    .await;
    let dir = temp_dir("blackbox-later-keys");
    std::fs::write(dir.join("body.txt"), "ping=1").unwrap();
    let text = format!(
        "modules:\n  post:\n    prober: http\n    http:\n      method: POST\n      body_file: {}\n      enable_http1: true\n      preferred_ip_protocol: ip4\n      proxy_url: http://{}\n      no_proxy: example.com\n\
         probes:\n  - name: p\n    module: post\n    targets: [\"http://{target}/\"]\n",
        dir.join("body.txt").display(),
        refused_addr(),
    );
    let config = support::load_text("m.yaml", &text);
    let probe = &config.probes[0];
    // The proxy refuses connections: only a direct request (loopback, with no_proxy) passes.
    let outcome = slowburn::probe::execute(&probe.probe, probe.timeout).await;
    assert!(outcome.success, "{outcome:#?}");
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("\r\ncontent-length: 6\r\n"), "{head}");
}

// ---------------------------------------------------------------------------------------------
// dns over TLS, dns query classes, icmp dont_fragment and the inline TLS keys, against the real
// blackbox_exporter (kept apart from the cases above).

/// The modules of [`dns_tls_class_and_dont_fragment_answer_as_blackbox_exporter_does`].
const DNS_ICMP_MODULES: &str = r#"modules:
  dns_tls:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      transport_protocol: tcp
      dns_over_tls: true
      tls_config:
        ca_file: CA_FILE
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['^ok\.test\.\t60\tIN\tA\t127\.0\.0\.1$']
  dns_tls_named:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      transport_protocol: tcp
      dns_over_tls: true
      tls_config:
        ca_file: CA_FILE
        server_name: localhost
  dns_tls_wrong_name:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      transport_protocol: tcp
      dns_over_tls: true
      tls_config:
        ca_file: CA_FILE
        server_name: elsewhere.test
  dns_tls_untrusted:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      transport_protocol: tcp
      dns_over_tls: true
  dns_chaos:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: version.bind
      query_type: TXT
      query_class: CH
      validate_answer_rrs:
        fail_if_not_matches_regexp: ['^version\.bind\.\t0\tCH\tTXT\t"slowburn-test"$']
  dns_chaos_over_tls:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: version.bind
      query_type: TXT
      query_class: CH
      transport_protocol: tcp
      dns_over_tls: true
      tls_config:
        insecure_skip_verify: true
  dns_class_in:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: version.bind
      query_type: TXT
      query_class: IN
  dns_class_any:
    prober: dns
    timeout: 5s
    dns:
      preferred_ip_protocol: ip4
      query_name: ok.test
      query_type: A
      query_class: ANY
      valid_rcodes: [REFUSED]
  icmp_dont_fragment:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip4
      dont_fragment: true
      payload_size: 1200
  icmp_dont_fragment_ip6:
    prober: icmp
    timeout: 5s
    icmp:
      preferred_ip_protocol: ip6
      ip_protocol_fallback: false
      dont_fragment: true
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_tls_class_and_dont_fragment_answer_as_blackbox_exporter_does() {
    let Some(blackbox) = required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let promtool = required_tool(
        "promtool",
        "SLOWBURN_REQUIRE_PROMETHEUS",
        "apt-get install prometheus",
    );
    let dir = temp_dir("blackbox-dns-icmp");
    // One certificate for the address (blackbox's server name without `server_name`) and
    // for `localhost`.
    let cert = test_cert(&["127.0.0.1", "localhost"], (2099, 1, 1));
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &cert.pem).unwrap();
    let modules = DNS_ICMP_MODULES.replace("CA_FILE", &ca.display().to_string());
    let dot = support::dns_tls_server(cert.server).await;
    let dns = dns_server().await;
    let refused = refused_addr();
    let (mut bb, bb_port, mut sb, sb_port) = exporters(&blackbox, &dir, &modules);
    let cases: Vec<(&str, String, bool)> = vec![
        ("dns_tls", dot.to_string(), true),
        // No port: 853, DNS over TLS's, where nothing listens here.
        ("dns_tls", "127.0.0.1".to_string(), false),
        ("dns_tls", refused.to_string(), false),
        // A plain DNS server does not speak TLS.
        ("dns_tls", dns.to_string(), false),
        ("dns_tls_named", dot.to_string(), true),
        ("dns_tls_wrong_name", dot.to_string(), false),
        ("dns_tls_untrusted", dot.to_string(), false),
        ("dns_chaos", dns.to_string(), true),
        ("dns_chaos_over_tls", dot.to_string(), true),
        ("dns_class_in", dns.to_string(), false),
        ("dns_class_any", dns.to_string(), true),
        ("icmp_dont_fragment", "127.0.0.1".to_string(), true),
        ("icmp_dont_fragment_ip6", "::1".to_string(), true),
    ];
    let client = client();
    let mut problems = Vec::new();
    for (module, target, success) in &cases {
        let (theirs, ours) = both(
            &client,
            (bb_port, &mut bb),
            (sb_port, &mut sb),
            module,
            target,
        )
        .await;
        let want = if *success { 1.0 } else { 0.0 };
        let case = format!("{module} {target}");
        problems.extend(
            differences(&case, want, &theirs, &ours, promtool.as_deref())
                .into_iter()
                // A gap of every IPv6 icmp probe, not of dont_fragment: reading an IPv6
                // reply's hop limit takes IPV6_RECVHOPLIMIT, which no socket crate slowburn
                // uses sets without `unsafe`.
                .filter(|p| {
                    *p != format!("{case}: probe_icmp_reply_hop_limit missing") || target != "::1"
                }),
        );
    }
    assert!(
        problems.is_empty(),
        "{} differences:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// blackbox's and slowburn's `/probe` answers for `module` and `target`, both 200.
async fn both(
    client: &reqwest::Client,
    (bb_port, bb): (u16, &mut Process),
    (sb_port, sb): (u16, &mut Process),
    module: &str,
    target: &str,
) -> (String, String) {
    let query = format!("/probe?module={module}&target={}", urlencode(target));
    let (bb_status, theirs) = get(client, &format!("http://127.0.0.1:{bb_port}{query}"), bb).await;
    let (sb_status, ours) = get(client, &format!("http://127.0.0.1:{sb_port}{query}"), sb).await;
    assert_eq!((bb_status, sb_status), (200, 200), "{module} {target}");
    (theirs, ours)
}

/// Where slowburn's `/probe` answer `ours` differs from blackbox's `theirs` for one case
/// (whose `probe_success` blackbox must give as `success`), and what promtool finds in ours.
fn differences(
    case: &str,
    success: f64,
    theirs: &str,
    ours: &str,
    promtool: Option<&Path>,
) -> Vec<String> {
    let (theirs, ours_text) = (samples(theirs), ours);
    let ours = samples(ours);
    assert_eq!(
        theirs.get("probe_success"),
        Some(&success),
        "blackbox disagrees with the case {case}"
    );
    let mut problems = Vec::new();
    for (key, value) in &theirs {
        match ours.get(key) {
            None => problems.push(format!("{case}: {key} missing")),
            Some(got) if !same_meaning(key, *value, *got) => {
                problems.push(format!("{case}: {key} is {got}, blackbox says {value}"))
            }
            Some(_) => {}
        }
    }
    for key in ours.keys().filter(|k| !theirs.contains_key(*k)) {
        problems.push(format!("{case}: {key} is not blackbox's"));
    }
    if let Some(promtool) = promtool {
        let (code, output) = promtool_check(promtool, ours_text);
        if code != Some(0) {
            problems.push(format!("{case}: promtool: {output}"));
        }
    }
    problems
}

/// What both exporters say of modules neither can run: blackbox 0.23 refuses the inline
/// `tls_config` keys (`ca`, `cert`, `key`) and an unknown or lower-case `query_class` when it
/// loads its file, and slowburn refuses the same modules, each at its line and column.
#[test]
fn inline_tls_keys_and_unknown_query_classes_are_refused_by_both() {
    let Some(blackbox) = required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let dir = temp_dir("blackbox-refused");
    for (module, ours) in [
        (
            "{prober: dns, dns: {query_name: a.test, transport_protocol: tcp, dns_over_tls: true, tls_config: {ca: x}}}",
            "2:108: module \"m\": dns.tls_config.ca: not supported by slowburn yet, nor by blackbox_exporter 0.23, whose Prometheus common config (v0.37) has no `ca`: write `ca_file`",
        ),
        (
            "{prober: tcp, tcp: {tls: true, tls_config: {cert: x}}}",
            "2:56: module \"m\": tcp.tls_config.cert: not supported by slowburn yet, nor by blackbox_exporter 0.23, whose Prometheus common config (v0.37) has no `cert`: write `cert_file`",
        ),
        (
            "{prober: http, http: {tls_config: {key: env:KEY}}}",
            "2:46: module \"m\": http.tls_config.key: not supported by slowburn yet, nor by blackbox_exporter 0.23, whose Prometheus common config (v0.37) has no `key`: write `key_file` (slowburn would not take a private key written in the file anyway, only env:NAME or file:PATH)",
        ),
        (
            "{prober: dns, dns: {query_name: a.test, query_class: ch}}",
            "2:59: module \"m\": dns.query_class: unknown query class \"ch\" (blackbox's names, in capitals: IN, CS, CH, HS, NONE, ANY)",
        ),
        (
            "{prober: dns, dns: {query_name: a.test, query_class: XX}}",
            "2:59: module \"m\": dns.query_class: unknown query class \"XX\" (blackbox's names, in capitals: IN, CS, CH, HS, NONE, ANY)",
        ),
    ] {
        let file = dir.join("modules.yml");
        std::fs::write(&file, format!("modules:\n  m: {module}\n")).unwrap();
        let theirs = Command::new(&blackbox)
            .arg("--config.check")
            .arg(format!("--config.file={}", file.display()))
            .output()
            .unwrap();
        assert!(
            !theirs.status.success(),
            "blackbox loads {module}:\n{}",
            String::from_utf8_lossy(&theirs.stderr)
        );
        let out = Command::new(support::daemon::BIN)
            .args(["check", "-c"])
            .arg(&file)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "slowburn loads {module}:\n{text}");
        let errors: Vec<&str> = text
            .lines()
            .filter_map(|l| l.split_once("modules.yml:").map(|(_, rest)| rest))
            .collect();
        assert_eq!(errors, [ours], "{text}");
    }
}

/// A module blackbox loads but whose every probe fails (`dns_over_tls` over udp, its default
/// transport) and one whose `tls_config` it ignores (no `dns_over_tls`): slowburn refuses both
/// when it loads them, saying why, rather than failing or ignoring at each probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_over_tls_needs_tcp_and_a_dns_tls_config_needs_dns_over_tls() {
    let Some(blackbox) = required_tool(
        "prometheus-blackbox-exporter",
        "SLOWBURN_REQUIRE_BLACKBOX",
        "apt-get install prometheus-blackbox-exporter",
    ) else {
        return;
    };
    let dir = temp_dir("blackbox-dot-udp");
    let cert = test_cert(&["127.0.0.1"], (2099, 1, 1));
    let dot = support::dns_tls_server(cert.server).await;
    let modules = "modules:\n  dot_udp: {prober: dns, dns: {query_name: ok.test, preferred_ip_protocol: ip4, dns_over_tls: true, tls_config: {insecure_skip_verify: true}}}\n  stray: {prober: dns, dns: {query_name: ok.test, tls_config: {insecure_skip_verify: true}}}\n";
    let file = dir.join("blackbox.yml");
    std::fs::write(&file, modules).unwrap();
    let port = free_port();
    let mut bb = Process::spawn(
        Command::new(&blackbox).args([
            format!("--config.file={}", file.display()),
            format!("--web.listen-address=127.0.0.1:{port}"),
        ]),
        dir.join("blackbox.log"),
    );
    let (_, theirs) = get(
        &client(),
        &format!(
            "http://127.0.0.1:{port}/probe?module=dot_udp&target={}",
            urlencode(&dot.to_string())
        ),
        &mut bb,
    )
    .await;
    assert_eq!(
        samples(&theirs).get("probe_success"),
        Some(&0.0),
        "{theirs}"
    );
    let out = Command::new(support::daemon::BIN)
        .args(["check", "-c"])
        .arg(&file)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once("blackbox.yml:").map(|(_, rest)| rest))
        .collect();
    assert_eq!(
        errors,
        [
            "2:95: module \"dot_udp\": dns.dns_over_tls: needs transport_protocol: tcp (blackbox fails every probe of a module with dns_over_tls over udp, its default)",
            "3:63: module \"stray\": dns.tls_config: has no effect without dns_over_tls: true (blackbox ignores it): remove it",
        ],
        "{text}"
    );
}
