//! The tcp and dns probes against real peers on loopback.

mod support;

use std::time::{Duration, Instant};

use support::*;

#[tokio::test]
async fn tcp_connects_and_times_phases() {
    let addr = silent_tcp().await;
    let outcome = run_probe(&format!("tcp: {{address: \"{addr}\"}}")).await;
    assert!(outcome.success, "{outcome:#?}");
    let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "connect"]);
    assert!(outcome.signal("latency").is_some());
}

#[tokio::test]
async fn tcp_refused() {
    let outcome = run_probe(&format!("tcp: {{address: \"{}\"}}", refused_addr())).await;
    assert_eq!(failure(&outcome), "connect: refused");
}

#[tokio::test]
async fn tcp_send_and_expect() {
    let addr = reply_tcp(b"+PONG\r\n").await;
    let outcome = run_probe(&format!(
        "tcp: {{address: \"{addr}\", send: \"PING\\r\\n\", expect: '^\\+PONG'}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert!(outcome.phases.iter().any(|(p, _)| *p == "exchange"));

    let outcome = run_probe(&format!(
        "tcp: {{address: \"{addr}\", send: \"PING\\r\\n\", expect: '^OK'}}"
    ))
    .await;
    let got = failure(&outcome);
    assert!(
        got.starts_with("expect: connection closed after 7 bytes without a match for \"^OK\""),
        "{got}"
    );
}

#[tokio::test]
async fn tcp_expect_on_a_silent_peer_times_out_in_exchange() {
    let addr = silent_tcp().await;
    let started = Instant::now();
    let outcome = run_probe_with(
        &format!("tcp: {{address: \"{addr}\", expect: banner}}"),
        "700ms",
    )
    .await;
    assert_eq!(failure(&outcome), "timeout after 700ms in phase exchange");
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn tcp_over_tls() {
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    let addr = http_server(Some(cert.server.clone()), |_, _| ok("x")).await;
    let outcome = run_probe(&format!(
        "tcp: {{address: \"localhost:{}\", tls: true}}",
        addr.port()
    ))
    .await;
    assert!(failure(&outcome).starts_with("tls: certificate signed by unknown authority"));
    let outcome = run_probe(&format!(
        "tcp: {{address: \"localhost:{}\", tls: true, tls_config: {{insecure_skip_verify: true}}}}",
        addr.port()
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert!(outcome.phases.iter().any(|(p, _)| *p == "tls"));
    assert!(outcome.signal("cert_days_left").unwrap() > 1000.0);
}

#[tokio::test]
async fn tcp_starttls_upgrades_mid_dialogue_and_reports_the_certificate() {
    let cert = test_cert(&["localhost"], (2099, 1, 1));
    let addr = starttls_server(cert.server.clone(), Mail::Smtp).await;
    let dialogue = |tls_config: &str| {
        format!(
            "tcp: {{address: \"localhost:{}\", {tls_config} query_response: [{{expect: \"^220 \"}}, {{send: \"EHLO prober\\r\\n\"}}, {{expect: \"250-STARTTLS\"}}, {{send: \"STARTTLS\\r\\n\"}}, {{expect: \"220 2.0.0\", starttls: true}}, {{send: \"EHLO prober\\r\\n\"}}, {{expect: \"250-AUTH\"}}]}}",
            addr.port()
        )
    };
    let outcome = run_probe(&dialogue("tls_config: {insecure_skip_verify: true},")).await;
    assert!(outcome.success, "{outcome:#?}");
    let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "connect", "exchange", "tls"]);
    assert!(outcome.signal("cert_days_left").unwrap() > 1000.0);
    assert!(outcome.signal("tls_version").is_some());

    let outcome = run_probe(&dialogue("")).await;
    assert!(
        failure(&outcome).starts_with("tls: certificate signed by unknown authority"),
        "{outcome:#?}"
    );
    assert_eq!(outcome.signal("tls_version"), None);
}

#[tokio::test]
async fn dns_answers_and_rcodes() {
    let server = dns_server().await;
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, type: A, server: \"{server}\", expect: {{rcode: [NOERROR], min_answers: 1, answer_regex: '^127\\.0\\.0\\.1$'}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(outcome.signal("answers"), Some(1.0));
    assert_eq!(outcome.signal("rcode"), Some(0.0));
    assert_eq!(*outcome.notes, ["answer 127.0.0.1"]);

    let outcome = run_probe(&format!("dns: {{name: nx.test, server: \"{server}\"}}")).await;
    assert_eq!(
        failure(&outcome),
        "rcode: NXDOMAIN for nx.test A, expected NOERROR"
    );
    assert_eq!(outcome.failure.unwrap().reason(), "rcode");

    let outcome = run_probe(&format!(
        "dns: {{name: nx.test, server: \"{server}\", expect: {{rcode: [NXDOMAIN]}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");

    let outcome = run_probe(&format!("dns: {{name: fail.test, server: \"{server}\"}}")).await;
    assert!(failure(&outcome).starts_with("rcode: SERVFAIL"));

    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, type: AAAA, server: \"{server}\", expect: {{min_answers: 1}}}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "answers: 0 AAAA answers, expected at least 1"
    );
}

#[tokio::test]
async fn dns_mute_server_times_out() {
    let server = dns_server().await;
    let outcome = run_probe_with(
        &format!("dns: {{name: mute.test, server: \"{server}\"}}"),
        "500ms",
    )
    .await;
    assert_eq!(failure(&outcome), "timeout after 500ms in phase resolve");
}

#[tokio::test]
async fn dns_over_tcp_to_a_closed_port_is_refused() {
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, server: \"{}\", transport: tcp}}",
        refused_addr()
    ))
    .await;
    assert_eq!(failure(&outcome), "connect: refused");
}

#[tokio::test]
async fn dns_records_of_each_section_are_checked_as_blackbox_writes_them() {
    let server = dns_server().await;
    let outcome = run_probe(&format!(
        "dns: {{name: zone.test, server: \"{server}\", expect: {{answer_rrs: {{fail_if_not_matches_regexp: ['^zone\\.test\\.\\t60\\tIN\\tA\\t127\\.0\\.0\\.[12]$']}}, authority_rrs: {{fail_if_none_matches_regexp: ['\\tNS\\tns\\.zone\\.test\\.$']}}}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");

    let outcome = run_probe(&format!(
        "dns: {{name: zone.test, server: \"{server}\", expect: {{additional_rrs: {{fail_if_matches_regexp: ['127\\.0\\.0\\.53']}}}}}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "answers: additional record \"ns.zone.test.\\t60\\tIN\\tA\\t127.0.0.53\" matches fail_if_matches_regexp \"127\\\\.0\\\\.0\\\\.53\""
    );

    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, type: AAAA, server: \"{server}\", expect: {{answer_rrs: {{fail_if_none_matches_regexp: ['.']}}}}}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "answers: no answer records to match \".\" against"
    );
}

#[tokio::test]
async fn source_ip_address_is_the_peer_the_server_sees() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().1 });
    let outcome = run_probe(&format!(
        "tcp: {{address: \"{addr}\", source_ip_address: 127.0.0.2}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(accepted.await.unwrap().ip().to_string(), "127.0.0.2");

    let (server, peers) = dns_server_with_peers().await;
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, server: \"{server}\", source_ip_address: 127.0.0.3}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(peers.lock().unwrap()[0].ip().to_string(), "127.0.0.3");

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = tokio::spawn(async move { listener.accept().await.unwrap().1 });
    let _ = run_probe_with(
        &format!(
            "dns: {{name: ok.test, server: \"{addr}\", transport: tcp, source_ip_address: 127.0.0.4}}"
        ),
        "300ms",
    )
    .await;
    assert_eq!(accepted.await.unwrap().ip().to_string(), "127.0.0.4");

    let outcome = run_probe(&format!(
        "tcp: {{address: \"{addr}\", source_ip_address: \"::1\"}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "connect: source_ip_address ::1 is IPv6 and 127.0.0.1 is IPv4: give a source of the \
         target's family (or preferred_ip_protocol to match it)"
    );
    let outcome = run_probe(&format!(
        "tcp: {{address: \"{addr}\", source_ip_address: 192.0.2.7}}"
    ))
    .await;
    assert!(
        failure(&outcome).starts_with("connect: cannot bind source_ip_address 192.0.2.7: "),
        "{outcome:#?}"
    );
}

#[tokio::test]
async fn dns_over_tls_verifies_the_server_then_queries_inside_the_session() {
    let cert = test_cert(&["127.0.0.1", "localhost"], (2099, 1, 1));
    let ca = std::env::temp_dir().join(format!("slowburn-dot-ca-{}.pem", std::process::id()));
    std::fs::write(&ca, &cert.pem).unwrap();
    let server = dns_tls_server(cert.server).await;
    let trusted = format!("ca_file: \"{}\"", ca.display());
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, server: \"{server}\", transport: tls, tls_config: {{{trusted}}}, expect: {{min_answers: 1}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["connect", "tls", "resolve"]);
    assert_eq!(outcome.signal("answers"), Some(1.0));
    assert_eq!(outcome.signal("tls_version"), Some(1.3));

    // The name verified is the server's address unless `server_name` says otherwise.
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, server: \"{server}\", transport: tls, tls_config: {{{trusted}, server_name: elsewhere.test}}}}"
    ))
    .await;
    assert_eq!(
        failure(&outcome),
        "tls: certificate not valid for elsewhere.test"
    );
    let outcome = run_probe(&format!(
        "dns: {{name: ok.test, server: \"{server}\", transport: tls}}"
    ))
    .await;
    assert!(
        failure(&outcome).starts_with("tls: certificate signed by unknown authority"),
        "{outcome:#?}"
    );
    // A class other than IN, inside TLS.
    let outcome = run_probe(&format!(
        "dns: {{name: version.bind, type: TXT, class: ch, server: \"{server}\", transport: tls, tls_config: {{insecure_skip_verify: true}}, expect: {{answer_rrs: {{fail_if_not_matches_regexp: ['\\tCH\\tTXT\\t\"slowburn-test\"$']}}}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    // Without a port, DNS over TLS's own (853), where nothing listens here.
    let outcome = run_probe("dns: {name: ok.test, server: 127.0.0.1, transport: tls}").await;
    assert_eq!(failure(&outcome), "connect: refused");
    let _ = std::fs::remove_file(&ca);
}

#[tokio::test]
async fn dns_query_classes() {
    let server = dns_server().await;
    let outcome = run_probe(&format!(
        "dns: {{name: version.bind, type: TXT, class: CH, server: \"{server}\", expect: {{min_answers: 1}}}}"
    ))
    .await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(*outcome.notes, ["answer slowburn-test"]);
    // The test server refuses every other class.
    for class in ["HS", "CS", "NONE", "ANY"] {
        let outcome = run_probe(&format!(
            "dns: {{name: ok.test, class: {class}, server: \"{server}\", expect: {{rcode: [REFUSED]}}}}"
        ))
        .await;
        assert!(outcome.success, "{class}: {outcome:#?}");
    }
}

#[test]
fn dns_class_and_tls_mistakes_are_refused_with_their_positions() {
    let text = "probes:\n  - name: a\n    dns: {name: a.test, class: XY, transport: quic}\n  - name: b\n    dns: {name: a.test, transport: tcp, tls_config: {insecure_skip_verify: true}}\n";
    let all = support::load_errors("p.yaml", text).join("\n");
    for (at, message) in [
        (
            "p.yaml:3:32",
            "dns.class: unknown class \"XY\" (expected IN, CS, CH, HS, NONE, ANY)",
        ),
        (
            "p.yaml:3:47",
            "dns.transport: transport \"quic\" is not udp, tcp or tls",
        ),
        (
            "p.yaml:5:53",
            "dns.tls_config: has no effect without transport: tls",
        ),
    ] {
        assert!(
            all.lines().any(|l| l.contains(at) && l.contains(message)),
            "{at} {message}:\n{all}"
        );
    }
}
