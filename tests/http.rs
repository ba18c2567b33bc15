//! The http probe against real servers on loopback: healthy, failing and hostile targets.
//! Each failure must come back with its specific reason within the probe's timeout.

mod support;

use std::time::{Duration, Instant};

use support::*;

fn http(url: &str, extra: &str) -> String {
    format!("http: {{url: \"{url}\"{extra}}}")
}

#[tokio::test]
async fn healthy_target_passes_every_assertion_and_times_each_phase() {
    let addr = http_server(None, |path, _| match path {
        "/health" => Reply::Full(
            200,
            vec![("Content-Type", "application/json".into())],
            br#"{"status": "ok", "db": "up", "count": 5}"#.to_vec(),
        ),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let outcome = run_probe(&http(
        &format!("http://{addr}/health"),
        r#", expect: {status: [200], body_regex: '"status":\s*"ok"', body_not_regex: error, json: {"$.db": up, "$.count": 5}, headers: {Content-Type: json}, latency_below: 1s}"#,
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "connect", "processing", "transfer"]);
    assert_eq!(outcome.signal("status"), Some(200.0));
    assert_eq!(outcome.signal("redirects"), Some(0.0));
    assert!(outcome.signal("latency").unwrap() > 0.0);
    assert_eq!(outcome.checks.len(), 7, "{:#?}", outcome.checks);
    assert!(outcome.checks.iter().all(|c| c.passed));
}

#[tokio::test]
async fn failures_name_their_reason() {
    let addr = http_server(None, |path, _| match path {
        "/down" => Reply::Full(503, vec![], b"maintenance".to_vec()),
        "/text" => ok("all good"),
        "/error" => ok("ok but ERROR: disk full"),
        "/json" => ok(r#"{"db": "down"}"#),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let cases = [
        (
            "/down",
            ", expect: {status: [200]}",
            "status 503 not in [200]",
            "status",
        ),
        (
            "/down",
            ", expect: {status: [2xx, 301-308]}",
            "status 503 not in [2xx, 301-308]",
            "status",
        ),
        (
            "/text",
            ", expect: {body_regex: '^ok'}",
            r#"body: regex "^ok" not found"#,
            "body",
        ),
        (
            "/error",
            ", expect: {body_not_regex: 'ERROR'}",
            r#"body: regex "ERROR" found at byte 7"#,
            "body",
        ),
        (
            "/json",
            ", expect: {json: {\"$.db\": up}}",
            r#"json: $.db is "down", expected "up""#,
            "json",
        ),
        (
            "/json",
            ", expect: {json: {\"$.cache\": up}}",
            "json: $.cache matched nothing",
            "json",
        ),
        (
            "/text",
            ", expect: {json: {\"$.db\": up}}",
            "json: body is not JSON",
            "json",
        ),
        (
            "/text",
            ", expect: {headers: {X-Version: '^2'}}",
            "header: x-version missing",
            "header",
        ),
        (
            "/text",
            ", expect: {cert_days_left: 10}",
            "cert: no certificate (not https)",
            "cert",
        ),
    ];
    for (path, expect, message, reason) in cases {
        let outcome = run_probe(&http(&format!("http://{addr}{path}"), expect)).await;
        let got = failure(&outcome);
        assert!(
            got.starts_with(message),
            "{path} {expect}: got {got:?}, want {message:?}"
        );
        assert_eq!(outcome.failure.as_ref().unwrap().reason(), reason);
    }
}

#[tokio::test]
async fn latency_assertion_reports_the_time_taken() {
    let addr = http_server(None, |_, _| {
        std::thread::sleep(Duration::from_millis(120));
        ok("slow")
    })
    .await;
    let outcome = run_probe(&http(
        &format!("http://{addr}/"),
        ", expect: {latency_below: 50ms}",
    ))
    .await;
    let got = failure(&outcome);
    assert!(
        got.starts_with("latency ") && got.ends_with("above 50ms"),
        "{got}"
    );
}

#[tokio::test]
async fn refused_connection() {
    let addr = refused_addr();
    let outcome = run_probe(&http(&format!("http://{addr}/"), "")).await;
    assert_eq!(failure(&outcome), "connect: refused");
}

#[tokio::test]
async fn accepted_but_never_answered_times_out_in_processing() {
    let addr = silent_tcp().await;
    let started = Instant::now();
    let outcome = run_probe_with(&http(&format!("http://{addr}/"), ""), "1s").await;
    assert_eq!(failure(&outcome), "timeout after 1s in phase processing");
    assert!(started.elapsed() < Duration::from_millis(1500));
    assert_eq!(outcome.failure.unwrap().reason(), "timeout");
}

#[tokio::test]
async fn trickling_body_times_out_in_transfer() {
    let addr = http_server(None, |_, _| Reply::Trickle(100)).await;
    let started = Instant::now();
    let outcome = run_probe_with(&http(&format!("http://{addr}/"), ""), "1500ms").await;
    assert_eq!(failure(&outcome), "timeout after 1.5s in phase transfer");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn endless_body_is_cut_at_max_body() {
    let addr = http_server(None, |_, _| Reply::Endless).await;
    let started = Instant::now();
    let outcome = run_probe(&http(
        &format!("http://{addr}/"),
        ", max_body: 256KiB, expect: {body_regex: never}",
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "body: larger than max_body 256.0KiB, stopped reading"
    );
    let read = outcome.signal("body_bytes").unwrap();
    assert!(read <= 256.0 * 1024.0 + 64.0 * 1024.0, "read {read} bytes");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn redirects_are_followed_counted_and_loops_caught() {
    let addr = http_server(None, |path, _| match path {
        "/start" => Reply::Full(302, vec![("Location", "/middle".into())], vec![]),
        "/middle" => Reply::Full(301, vec![("Location", "end?x=1".into())], vec![]),
        "/end?x=1" => ok("arrived"),
        "/a" => Reply::Full(302, vec![("Location", "/b".into())], vec![]),
        "/b" => Reply::Full(302, vec![("Location", "/a".into())], vec![]),
        "/far" => Reply::Full(307, vec![("Location", "/far".into())], vec![]),
        _ => Reply::Full(404, vec![], vec![]),
    })
    .await;
    let outcome = run_probe(&http(
        &format!("http://{addr}/start"),
        ", expect: {body_regex: arrived}",
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.signal("redirects"), Some(2.0));

    let outcome = run_probe(&http(&format!("http://{addr}/a"), "")).await;
    assert_eq!(
        failure(&outcome),
        format!("redirect: loop back to http://{addr}/a after 2 redirects")
    );

    let outcome = run_probe(&http(
        &format!("http://{addr}/start"),
        ", follow_redirects: false, expect: {status: [302], headers: {Location: middle}}",
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");

    let outcome = run_probe(&http(&format!("http://{addr}/far"), ", max_redirects: 0")).await;
    assert!(
        failure(&outcome).starts_with("redirect:"),
        "{}",
        failure(&outcome)
    );
}

#[tokio::test]
async fn request_carries_method_headers_body_and_auth() {
    let password = tempfile_path::TempPath::with("s3cret\n");
    let addr = http_server(None, |_, head| {
        let ok_method = head.starts_with("POST /submit ");
        let ok_header = head.contains("x-team: shop") || head.contains("X-Team: shop");
        let ok_auth = head
            .to_ascii_lowercase()
            .contains(&"authorization: Basic dXNlcjpzM2NyZXQ=".to_ascii_lowercase());
        if ok_method && ok_header && ok_auth {
            ok("accepted")
        } else {
            Reply::Full(400, vec![], head.as_bytes().to_vec())
        }
    })
    .await;
    let outcome = run_probe(&http(
        &format!("http://{addr}/submit"),
        &format!(
            ", method: post, headers: {{X-Team: shop}}, body: '{{\"a\":1}}', basic_auth: {{username: user, password: \"file:{}\"}}",
            password.path()
        ),
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
}

/// Starts a server that records every request head it is sent and answers 200 `landed`.
async fn recording_server() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<String>>>,
) {
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    let addr = http_server(None, move |_, head| {
        seen.lock().unwrap().push(head.to_string());
        ok("landed")
    })
    .await;
    (addr, heads)
}

#[tokio::test]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    let secret = tempfile_path::TempPath::with("header-secret\n");
    let (foreign, foreign_heads) = recording_server().await;
    let home_heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = home_heads.clone();
    let addr = http_server(None, move |path, head| {
        seen.lock().unwrap().push(head.to_string());
        match path {
            "/away" => Reply::Full(
                302,
                vec![("Location", format!("http://{foreign}/x"))],
                vec![],
            ),
            "/stay" => Reply::Full(302, vec![("Location", "/landing".into())], vec![]),
            _ => ok("home"),
        }
    })
    .await;
    let creds = |path: &str| {
        http(
            &format!("http://{addr}{path}"),
            &format!(
                ", headers: {{X-Api-Key: \"file:{}\", Cookie: session=abc, X-Team: shop}}, basic_auth: {{username: u, password: \"file:{}\"}}",
                secret.path(),
                secret.path()
            ),
        )
    };
    let leaked = |head: &str| {
        let head = head.to_ascii_lowercase();
        ["authorization:", "cookie:", "x-api-key:", "header-secret"]
            .iter()
            .any(|c| head.contains(c))
    };

    // Another port on the same host is another origin: the run goes on without credentials.
    let outcome = run_probe(&creds("/away")).await;
    assert!(outcome.success, "{outcome:#?}");
    let heads = foreign_heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(
        !leaked(&heads[0]),
        "credentials crossed the redirect:\n{}",
        heads[0]
    );
    assert!(
        heads[0].to_ascii_lowercase().contains("x-team: shop"),
        "{}",
        heads[0]
    );
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.starts_with("credentials not sent")),
        "{:?}",
        outcome.notes
    );
    // The first hop, to the configured origin, had them all.
    assert!(leaked(&home_heads.lock().unwrap()[0]));

    // A redirect within the origin keeps them.
    home_heads.lock().unwrap().clear();
    let outcome = run_probe(&creds("/stay")).await;
    assert!(outcome.success, "{outcome:#?}");
    let heads = home_heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 2);
    assert!(heads.iter().all(|h| leaked(h)), "{heads:#?}");
}

#[tokio::test]
async fn bearer_tokens_are_dropped_on_an_https_to_http_downgrade() {
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    let ca = tempfile_path::TempPath::with(&cert.pem);
    let token = tempfile_path::TempPath::with("tok-123\n");
    let (plain, plain_heads) = recording_server().await;
    let secure = http_server(Some(cert.server.clone()), move |_, _| {
        Reply::Full(302, vec![("Location", format!("http://{plain}/"))], vec![])
    })
    .await;
    let outcome = run_probe(&http(
        &format!("https://localhost:{}/", secure.port()),
        &format!(
            ", bearer_token: \"file:{}\", tls_config: {{ca_file: \"{}\"}}",
            token.path(),
            ca.path()
        ),
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    let heads = plain_heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1);
    assert!(!heads[0].contains("tok-123"), "{}", heads[0]);
    assert!(
        !heads[0].to_ascii_lowercase().contains("authorization"),
        "{}",
        heads[0]
    );
}

#[tokio::test]
async fn same_host_follows_only_redirects_to_the_same_host_name() {
    let (other_port, _) = recording_server().await;
    let addr = http_server(None, move |path, _| match path {
        "/port" => Reply::Full(
            302,
            vec![("Location", format!("http://{other_port}/"))],
            vec![],
        ),
        "/host" => Reply::Full(
            302,
            vec![(
                "Location",
                format!("http://localhost:{}/", other_port.port()),
            )],
            vec![],
        ),
        "/file" => Reply::Full(302, vec![("Location", "file:/etc/passwd".into())], vec![]),
        _ => ok("home"),
    })
    .await;
    let outcome = run_probe(&http(
        &format!("http://{addr}/port"),
        ", follow_redirects: same_host, expect: {body_regex: landed}",
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    let outcome = run_probe(&http(
        &format!("http://{addr}/host"),
        ", follow_redirects: same_host",
    ))
    .await;
    assert_eq!(
        outcome.failure.as_ref().map(|f| f.reason()),
        Some("redirect")
    );
    assert!(failure(&outcome).contains("not followed (follow_redirects: same_host)"));
    // Whatever follow_redirects says, a redirect out of http(s) is refused.
    let outcome = run_probe(&http(&format!("http://{addr}/file"), "")).await;
    assert!(
        failure(&outcome).contains("scheme \"file\" is not http or https"),
        "{}",
        failure(&outcome)
    );
}

#[tokio::test]
async fn a_reset_and_a_short_body_are_named_as_such() {
    let reset = resetting_http().await;
    let outcome = run_probe(&http(&format!("http://{reset}/"), "")).await;
    assert_eq!(
        failure(&outcome),
        "http: connection reset by the peer before a response"
    );
    let short = http_server(None, |_, _| Reply::Short(100, b"0123456789")).await;
    let outcome = run_probe(&http(&format!("http://{short}/"), "")).await;
    assert_eq!(
        failure(&outcome),
        "body: connection closed after 10 of 100 bytes: the body is shorter than promised"
    );
}

mod tempfile_path {
    pub struct TempPath(std::path::PathBuf);
    impl TempPath {
        pub fn with(text: &str) -> Self {
            static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path =
                std::env::temp_dir().join(format!("slowburn-test-{}-{n}.pem", std::process::id()));
            std::fs::write(&path, text).unwrap();
            TempPath(path)
        }
        pub fn path(&self) -> String {
            self.0.display().to_string()
        }
    }
    impl Drop for TempPath {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
}

mod tls {
    use super::*;

    fn write_pem(pem: &str) -> super::tempfile_path::TempPath {
        super::tempfile_path::TempPath::with(pem)
    }

    #[tokio::test]
    async fn trusted_certificate_passes_and_reports_expiry() {
        let cert = test_cert(&["localhost"], (2099, 1, 1));
        let ca = write_pem(&cert.pem);
        let addr = http_server(Some(cert.server.clone()), |_, _| ok("secure")).await;
        let outcome = run_probe(&http(
            &format!("https://localhost:{}/", addr.port()),
            &format!(
                ", tls_config: {{ca_file: \"{}\"}}, expect: {{cert_days_left: 30}}",
                ca.path()
            ),
        ))
        .await;
        assert!(outcome.success, "{outcome:#?}");
        let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
        assert_eq!(
            phases,
            ["resolve", "connect", "tls", "processing", "transfer"]
        );
        assert!(outcome.signal("cert_days_left").unwrap() > 365.0 * 70.0);
        assert!(outcome.signal("cert_expiry").unwrap() > 4_000_000_000.0);
    }

    #[tokio::test]
    async fn self_signed_certificate_is_refused_unless_told_otherwise() {
        let cert = test_cert(&["localhost"], (2099, 1, 1));
        let addr = http_server(Some(cert.server.clone()), |_, _| ok("secure")).await;
        let url = format!("https://localhost:{}/", addr.port());
        let outcome = run_probe(&http(&url, "")).await;
        assert_eq!(
            failure(&outcome),
            "tls: certificate signed by unknown authority (self-signed or CA not trusted)"
        );
        let outcome = run_probe(&http(&url, ", tls_config: {insecure_skip_verify: true}")).await;
        assert!(outcome.success, "{outcome:#?}");
        assert!(outcome.signal("cert_days_left").is_some());
    }

    #[tokio::test]
    async fn expired_certificate_fails_with_its_reason() {
        let cert = test_cert(&["localhost"], (2021, 1, 1));
        let ca = write_pem(&cert.pem);
        let addr = http_server(Some(cert.server.clone()), |_, _| ok("secure")).await;
        let outcome = run_probe(&http(
            &format!("https://localhost:{}/", addr.port()),
            &format!(", tls_config: {{ca_file: \"{}\"}}", ca.path()),
        ))
        .await;
        assert_eq!(failure(&outcome), "tls: certificate expired");
        assert_eq!(outcome.failure.unwrap().reason(), "tls");
    }

    #[tokio::test]
    async fn wrong_name_and_near_expiry() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let soon = now + 5 * 86_400;
        let days = soon / 86_400;
        let (y, m, d) = civil_from_days(days);
        let cert = test_cert(&["other.test"], (y as i32, m as u8, d as u8));
        let ca = write_pem(&cert.pem);
        let addr = http_server(Some(cert.server.clone()), |_, _| ok("secure")).await;
        let outcome = run_probe(&http(
            &format!("https://localhost:{}/", addr.port()),
            &format!(", tls_config: {{ca_file: \"{}\"}}", ca.path()),
        ))
        .await;
        assert_eq!(
            failure(&outcome),
            "tls: certificate not valid for localhost"
        );
        let outcome = run_probe(&http(
            &format!("https://127.0.0.1:{}/", addr.port()),
            &format!(", tls_config: {{ca_file: \"{}\", server_name: other.test}}, expect: {{cert_days_left: 14}}", ca.path()),
        ))
        .await;
        let got = failure(&outcome);
        assert!(
            got.starts_with("cert: expires in 4.") || got.starts_with("cert: expires in 5."),
            "{got}"
        );
    }

    fn civil_from_days(z: i64) -> (i64, i64, i64) {
        let z = z + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }
}

mod dns {
    use super::*;

    #[tokio::test]
    async fn names_resolve_through_the_configured_resolver() {
        let dns = dns_server().await;
        let addr = http_server(None, |_, head| {
            if head.contains(&"Host: ok.test:".to_string())
                || head.to_ascii_lowercase().contains("host: ok.test:")
            {
                ok("named")
            } else {
                Reply::Full(400, vec![], vec![])
            }
        })
        .await;
        let outcome = run_probe(&http(
            &format!("http://ok.test:{}/", addr.port()),
            &format!(", resolver: [\"{dns}\"], expect: {{body_regex: named}}"),
        ))
        .await;
        assert!(outcome.success, "{outcome:#?}");
        assert!(
            outcome
                .phases
                .iter()
                .any(|(p, d)| *p == "resolve" && *d > Duration::ZERO)
        );
    }

    #[tokio::test]
    async fn nxdomain_is_named() {
        let dns = dns_server().await;
        let outcome = run_probe(&http(
            "http://nx.test/",
            &format!(", resolver: [\"{dns}\"]"),
        ))
        .await;
        assert_eq!(failure(&outcome), "dns: NXDOMAIN for nx.test");
        assert_eq!(outcome.failure.unwrap().reason(), "dns");
    }

    #[tokio::test]
    async fn a_mute_resolver_times_out_in_resolve() {
        let dns = dns_server().await;
        let outcome = run_probe_with(
            &http("http://mute.test/", &format!(", resolver: [\"{dns}\"]")),
            "800ms",
        )
        .await;
        let got = failure(&outcome);
        assert!(
            got == "timeout after 800ms in phase resolve" || got.starts_with("dns: "),
            "{got}"
        );
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn compressed_answers_are_decompressed_up_to_max_body() {
    let page = "<html>".to_string() + &"all systems operational ".repeat(2000) + "</html>";
    let small = gzip(page.as_bytes());
    // 64 MiB of zeros in about 64 KiB: a zip bomb.
    let bomb = gzip(&vec![0u8; 64 * 1024 * 1024]);
    let (small_len, page_len) = (small.len(), page.len());
    let addr = http_server(None, move |path, _| {
        let gz = |body: &[u8]| {
            Reply::Full(
                200,
                vec![("Content-Encoding", "gzip".into())],
                body.to_vec(),
            )
        };
        match path {
            "/page" => gz(&small),
            "/bomb" => gz(&bomb),
            "/broken" => gz(b"\x1f\x8b not really gzip"),
            _ => ok("plain"),
        }
    })
    .await;
    let page_probe = run_probe(&http(
        &format!("http://{addr}/page"),
        ", compression: gzip, expect: {body_regex: 'systems operational </html>$'}",
    ))
    .await;
    assert!(page_probe.success, "{page_probe:#?}");
    assert_eq!(page_probe.signal("body_bytes"), Some(page_len as f64));
    assert_eq!(page_probe.signal("content_length"), Some(small_len as f64));

    let started = Instant::now();
    let bomb_probe = run_probe(&http(
        &format!("http://{addr}/bomb"),
        ", compression: gzip, max_body: 1MiB",
    ))
    .await;
    assert_eq!(
        failure(&bomb_probe),
        "body: decompressed body larger than max_body 1.0MiB, stopped reading"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let broken = run_probe(&http(
        &format!("http://{addr}/broken"),
        ", compression: gzip",
    ))
    .await;
    assert!(
        failure(&broken).starts_with("body: cannot decompress the gzip body"),
        "{}",
        failure(&broken)
    );
    // An answer sent uncompressed is read as it is.
    let plain = run_probe(&http(
        &format!("http://{addr}/plain"),
        ", compression: gzip",
    ))
    .await;
    assert!(plain.success, "{plain:#?}");

    let text = "probes:\n  - name: a\n    http: {url: 'http://h/', compression: zstd}\n";
    let errors = support::load_errors("p.yaml", text);
    assert_eq!(
        errors[0],
        "p.yaml:3:43: probe \"a\": http.compression: \"zstd\" is not one of gzip, deflate, br, identity"
    );
}

fn brotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    // A low quality: the encoder is unoptimised in tests, and zeros compress well anyway.
    let params = brotli::enc::BrotliEncoderParams {
        quality: 2,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut &data[..], &mut out, &params).unwrap();
    out
}

#[tokio::test]
async fn brotli_answers_are_decompressed_up_to_max_body() {
    let page = "<html>".to_string() + &"all systems operational ".repeat(2000) + "</html>";
    let small = brotli(page.as_bytes());
    // 16 MiB of zeros in a few KiB.
    let bomb = brotli(&vec![0u8; 16 * 1024 * 1024]);
    let (small_len, page_len) = (small.len(), page.len());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = http_server(None, move |path, head| {
        log.lock().unwrap().push(head.to_ascii_lowercase());
        let br =
            |body: &[u8]| Reply::Full(200, vec![("Content-Encoding", "br".into())], body.to_vec());
        match path {
            "/page" => br(&small),
            "/bomb" => br(&bomb),
            _ => br(b"not brotli at all"),
        }
    })
    .await;
    let page_probe = run_probe(&http(
        &format!("http://{addr}/page"),
        ", compression: br, expect: {body_regex: 'systems operational </html>$'}",
    ))
    .await;
    assert!(page_probe.success, "{page_probe:#?}");
    assert_eq!(page_probe.signal("body_bytes"), Some(page_len as f64));
    assert_eq!(page_probe.signal("content_length"), Some(small_len as f64));
    assert!(
        seen.lock().unwrap()[0].contains("accept-encoding: br\r\n"),
        "{:?}",
        seen.lock().unwrap()
    );
    let started = Instant::now();
    let bomb_probe = run_probe(&http(
        &format!("http://{addr}/bomb"),
        ", compression: br, max_body: 1MiB",
    ))
    .await;
    assert_eq!(
        failure(&bomb_probe),
        "body: decompressed body larger than max_body 1.0MiB, stopped reading"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let broken = run_probe(&http(&format!("http://{addr}/broken"), ", compression: br")).await;
    assert!(
        failure(&broken).starts_with("body: cannot decompress the br body"),
        "{}",
        failure(&broken)
    );
}

/// An HTTPS server that speaks only HTTP/2 (ALPN `h2`), answering every request 200 "h2 ok".
async fn h2_server(cert: &TestCert) -> std::net::SocketAddr {
    let mut config = (*cert.server).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |request: http::Request<hyper::body::Incoming>| async move {
                        let authority = request
                            .uri()
                            .authority()
                            .map(|a| a.to_string())
                            .unwrap_or_default();
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from(format!(
                                "h2 ok for {authority}"
                            ))),
                        ))
                    },
                );
                let _ =
                    hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn http2_is_offered_in_alpn_and_spoken_when_the_server_picks_it() {
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    let dir = support::daemon::temp_dir("http2");
    std::fs::write(dir.join("ca.pem"), &cert.pem).unwrap();
    let addr = h2_server(&cert).await;
    let url = format!("https://localhost:{}/health", addr.port());
    let outcome = run_probe(&http(
        &url,
        &format!(
            ", http2: true, tls_config: {{ca_file: '{}'}}, expect: {{http_versions: [HTTP/2.0], body_regex: 'h2 ok for localhost:{}'}}",
            dir.join("ca.pem").display(),
            addr.port()
        ),
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.signal("http_version"), Some(2.0));
    // Without `http2`, only HTTP/1.1 is offered, which this server refuses in the handshake.
    let refused = run_probe(&http(
        &url,
        &format!(
            ", tls_config: {{ca_file: '{}'}}",
            dir.join("ca.pem").display()
        ),
    ))
    .await;
    assert_eq!(
        refused.failure.as_ref().map(|f| f.reason()),
        Some("tls"),
        "{refused:#?}"
    );
}

/// What a local OAuth 2.0 token endpoint was sent: method, path, headers, body.
#[derive(Debug, Clone)]
struct TokenRequest {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

/// A token endpoint on 127.0.0.1:0 answering `status` and `answer` (JSON) to every request,
/// and the requests it was sent.
async fn token_endpoint(
    status: u16,
    answer: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<TokenRequest>>>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let log = log.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |request: http::Request<hyper::body::Incoming>| {
                        let log = log.clone();
                        async move {
                            let (head, body) = request.into_parts();
                            let body = body.collect().await.unwrap().to_bytes();
                            log.lock().unwrap().push(TokenRequest {
                                method: head.method.to_string(),
                                path: head.uri.to_string(),
                                headers: head
                                    .headers
                                    .iter()
                                    .map(|(k, v)| {
                                        (k.to_string(), v.to_str().unwrap_or("").to_string())
                                    })
                                    .collect(),
                                body: String::from_utf8_lossy(&body).into_owned(),
                            });
                            let mut response = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from_static(answer.as_bytes()),
                            ));
                            *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            response.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("application/json"),
                            );
                            Ok::<_, std::convert::Infallible>(response)
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// The one probe of `kind`, built once (so what it keeps between runs is kept).
fn build_one(kind: &str) -> slowburn::config::Config {
    let text = format!("probes:\n  - name: t\n    interval: 60s\n    timeout: 2s\n    {kind}\n");
    support::load_text("test.yaml", &text)
}

#[tokio::test]
async fn oauth2_client_credentials_token_is_fetched_once_and_sent_to_the_target_only() {
    let (token_addr, token_requests) = token_endpoint(
        200,
        r#"{"access_token":"tok-1","token_type":"bearer","expires_in":3600}"#,
    )
    .await;
    let auth_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = auth_seen.clone();
    let target = http_server(None, move |path, head| {
        let auth = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("authorization:"))
            .map(|l| l.to_string());
        log.lock().unwrap().push((path.to_string(), auth));
        ok("hello")
    })
    .await;
    let dir = support::daemon::temp_dir("oauth2");
    std::fs::write(dir.join("secret"), "p@ss word\n").unwrap();
    let secret = dir.join("secret").display().to_string();
    let config = build_one(&http(
        &format!("http://{target}/health"),
        &format!(
            ", oauth2: {{client_id: 'probe:1', client_secret: 'file:{secret}', scopes: [read, 'write:all'], token_url: 'http://{token_addr}/oauth/token?realm=x', endpoint_params: {{audience: 'https://api'}}}}"
        ),
    ));
    let probe = &config.probes[0];
    for _ in 0..2 {
        let outcome = slowburn::probe::execute(&probe.probe, probe.timeout).await;
        assert!(outcome.success, "{outcome:#?}");
    }
    let requests = token_requests.lock().unwrap().clone();
    assert_eq!(requests.len(), 1, "the token is kept: {requests:#?}");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.path.as_str()),
        ("POST", "/oauth/token?realm=x")
    );
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    // Go's oauth2 query-escapes id and secret before the basic-auth header.
    assert_eq!(
        header("authorization"),
        // base64("probe%3A1:p%40ss+word")
        Some("Basic cHJvYmUlM0ExOnAlNDBzcyt3b3Jk")
    );
    assert_eq!(
        header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        request.body,
        "audience=https%3A%2F%2Fapi&grant_type=client_credentials&scope=read+write%3Aall"
    );
    assert_eq!(
        *auth_seen.lock().unwrap(),
        [
            (
                "/health".to_string(),
                Some("authorization: Bearer tok-1".to_string())
            ),
            (
                "/health".to_string(),
                Some("authorization: Bearer tok-1".to_string())
            ),
        ]
    );
}

#[tokio::test]
async fn oauth2_cross_origin_redirects_drop_the_token() {
    let (token_addr, _) = token_endpoint(200, r#"{"access_token":"tok-2"}"#).await;
    let auth_seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = auth_seen.clone();
    let landing = http_server(None, move |path, head| {
        let auth = head.to_ascii_lowercase().contains("authorization:");
        log.lock().unwrap().push((path.to_string(), auth));
        ok("landed")
    })
    .await;
    let start = http_server(None, move |_, _| {
        Reply::Full(
            302,
            vec![("Location", format!("http://{landing}/landing"))],
            vec![],
        )
    })
    .await;
    let dir = support::daemon::temp_dir("oauth2-redirect");
    std::fs::write(dir.join("secret"), "s").unwrap();
    let outcome = run_probe(&http(
        &format!("http://{start}/"),
        &format!(
            ", oauth2: {{client_id: c, client_secret: 'file:{}', token_url: 'http://{token_addr}/t'}}",
            dir.join("secret").display()
        ),
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(
        *auth_seen.lock().unwrap(),
        [("/landing".to_string(), false)]
    );
    assert!(
        outcome
            .notes
            .iter()
            .any(|n| n.contains("credentials not sent")),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn an_oauth2_token_endpoint_that_refuses_fails_the_probe_with_its_answer() {
    let (token_addr, _) = token_endpoint(401, r#"{"error":"invalid_client"}"#).await;
    let target = http_server(None, |_, _| ok("hello")).await;
    let dir = support::daemon::temp_dir("oauth2-refused");
    std::fs::write(dir.join("secret"), "s").unwrap();
    let outcome = run_probe(&http(
        &format!("http://{target}/"),
        &format!(
            ", oauth2: {{client_id: c, client_secret: 'file:{}', token_url: 'http://{token_addr}/t'}}",
            dir.join("secret").display()
        ),
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        format!(
            "http: oauth2: cannot fetch a token from http://{token_addr}/t: status 401 Unauthorized: {{\"error\":\"invalid_client\"}}"
        )
    );
}

#[tokio::test]
async fn authorization_body_file_and_optional_headers() {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    let target = http_server(None, move |_, head| {
        log.lock().unwrap().push(head.to_string());
        Reply::Full(200, vec![("X-Version", "v2".into())], b"ok".to_vec())
    })
    .await;
    let dir = support::daemon::temp_dir("authorization");
    std::fs::write(dir.join("key"), "k-123\n").unwrap();
    std::fs::write(dir.join("body.json"), "{\"q\": 1}").unwrap();
    let outcome = run_probe(&http(
        &format!("http://{target}/"),
        &format!(
            ", method: POST, body_file: '{}', authorization: {{type: ApiKey, credentials: 'file:{}'}}, expect: {{headers_if_present: {{X-Version: '^v2$', X-Missing: nothing}}}}",
            dir.join("body.json").display(),
            dir.join("key").display()
        ),
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    let head = seen.lock().unwrap()[0].clone();
    assert!(head.starts_with("POST / HTTP/1.1\r\n"), "{head}");
    assert!(
        head.contains("\r\nauthorization: ApiKey k-123\r\n"),
        "{head}"
    );
    assert!(head.contains("\r\ncontent-length: 8\r\n"), "{head}");
    // A present header must still match.
    let outcome = run_probe(&http(
        &format!("http://{target}/"),
        ", expect: {headers_if_present: {X-Version: '^v3$'}}",
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "header: x-version: \"v2\" does not match \"^v3$\""
    );

    let errors = |extra: &str| {
        let text = format!("probes:\n  - name: a\n    http: {{url: 'http://h/'{extra}}}\n");
        support::load_errors("p.yaml", &text)
    };
    assert_eq!(
        errors(", body_file: /nonexistent/body"),
        [
            "p.yaml:3:41: probe \"a\": http.body_file: cannot read /nonexistent/body: No such file or directory (os error 2)"
        ]
    );
    assert_eq!(
        errors(", bearer_token: 'env:HOME', authorization: {credentials: 'env:HOME'}"),
        [
            "p.yaml:3:85: probe \"a\": http.authorization: cannot be given with bearer_token: at most one of basic_auth, bearer_token, authorization and oauth2"
        ]
    );
    assert_eq!(
        errors(", authorization: {type: basic, credentials: 'env:HOME'}"),
        ["p.yaml:3:52: probe \"a\": http.authorization.type: cannot be \"Basic\": use basic_auth"]
    );
}

#[tokio::test]
async fn an_oauth2_token_about_to_expire_is_renewed_on_the_next_run() {
    // Within Go's ten-second margin: never kept.
    let (token_addr, requests) =
        token_endpoint(200, r#"{"access_token":"short","expires_in":"5"}"#).await;
    let target = http_server(None, |_, _| ok("hello")).await;
    let dir = support::daemon::temp_dir("oauth2-expiry");
    std::fs::write(dir.join("secret"), "s").unwrap();
    let config = build_one(&http(
        &format!("http://{target}/"),
        &format!(
            ", oauth2: {{client_id: c, client_secret: 'file:{}', token_url: 'http://{token_addr}/t'}}",
            dir.join("secret").display()
        ),
    ));
    let probe = &config.probes[0];
    for _ in 0..2 {
        let outcome = slowburn::probe::execute(&probe.probe, probe.timeout).await;
        assert!(outcome.success, "{outcome:#?}");
    }
    assert_eq!(requests.lock().unwrap().len(), 2);
}
