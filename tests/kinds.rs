//! The contract every probe kind keeps, as one scenario list run against each kind: a target
//! that accepts and then never answers fails by the deadline naming the phase it hung in, and
//! a target where nothing listens fails at once with the kind's specific reason. A kind added
//! to the kinds table without a row here fails `every_kind_has_a_row`.

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use slowburn::probe::{Failure, KIND_KEYS};
use support::{refused_addr, run_probe_with, silent_tcp};

/// One kind's row: its section for a target address, and the phase a hung target leaves it
/// in. `None` for a kind with no network peer.
struct Row {
    kind: &'static str,
    section: Option<fn(SocketAddr) -> String>,
    hung_phase: &'static str,
    refused_reason: &'static str,
}

fn rows() -> Vec<Row> {
    vec![
        Row {
            kind: "http",
            section: Some(|a| format!("http: {{url: 'http://{a}/health'}}")),
            hung_phase: "processing",
            refused_reason: "connect",
        },
        Row {
            kind: "tcp",
            section: Some(|a| format!("tcp: {{address: '{a}', send: 'PING\\n', expect: 'PONG'}}")),
            hung_phase: "exchange",
            refused_reason: "connect",
        },
        Row {
            kind: "dns",
            // Over TCP, so "nothing listens" is a refused connection, not a silent UDP drop.
            section: Some(|a| {
                format!("dns: {{name: example.test, type: A, server: '{a}', transport: tcp}}")
            }),
            hung_phase: "resolve",
            refused_reason: "connect",
        },
        Row {
            kind: "postgres",
            section: Some(|a| {
                format!(
                    "postgres: {{dsn: 'postgres://u@{}:{}/db?sslmode=disable'}}",
                    a.ip(),
                    a.port()
                )
            }),
            hung_phase: "connect",
            refused_reason: "connect",
        },
        Row {
            kind: "prometheus",
            section: Some(|a| format!("prometheus: {{url: 'http://{a}', query: 'up'}}")),
            hung_phase: "query",
            refused_reason: "connect",
        },
        // Log probes read files and the journal on this machine: no peer either.
        Row {
            kind: "log",
            section: None,
            hung_phase: "",
            refused_reason: "",
        },
        // Process probes read /proc on this machine: there is no peer to hang or refuse.
        Row {
            kind: "process",
            section: None,
            hung_phase: "",
            refused_reason: "",
        },
        Row {
            kind: "grpc",
            section: Some(|a| format!("grpc: {{address: '{a}'}}")),
            hung_phase: "check",
            refused_reason: "connect",
        },
        // ICMP has no port to hang on or be refused at; tests/icmp.rs has its no-reply
        // (timeout in phase rtt), no-route and no-permission cases.
        Row {
            kind: "icmp",
            section: None,
            hung_phase: "",
            refused_reason: "",
        },
        // Heartbeats are passive: they judge pings sent to slowburn and contact no one.
        Row {
            kind: "heartbeat",
            section: None,
            hung_phase: "",
            refused_reason: "",
        },
    ]
}

#[test]
fn every_kind_has_a_row() {
    let covered: BTreeSet<&str> = rows().iter().map(|r| r.kind).collect();
    let kinds: BTreeSet<&str> = KIND_KEYS.iter().copied().collect();
    assert_eq!(covered, kinds);
}

#[tokio::test]
async fn a_hung_target_times_out_naming_its_phase() {
    for row in rows() {
        let Some(section) = row.section else { continue };
        let addr = silent_tcp().await;
        let started = Instant::now();
        let outcome = run_probe_with(&section(addr), "500ms").await;
        let took = started.elapsed();
        match &outcome.failure {
            Some(Failure::Timeout { phase, .. }) => {
                assert_eq!(*phase, row.hung_phase, "{}: {outcome:?}", row.kind)
            }
            other => panic!("{}: expected a timeout, got {other:?}", row.kind),
        }
        let message = outcome.failure.as_ref().unwrap().to_string();
        assert!(
            message.contains(&format!("in phase {}", row.hung_phase)),
            "{}: {message}",
            row.kind
        );
        // The deadline holds, with room for two busy cores.
        assert!(took < Duration::from_secs(3), "{}: took {took:?}", row.kind);
    }
}

#[tokio::test]
async fn a_refused_target_names_its_reason() {
    for row in rows() {
        let Some(section) = row.section else { continue };
        let outcome = run_probe_with(&section(refused_addr()), "2s").await;
        let failure = outcome
            .failure
            .as_ref()
            .unwrap_or_else(|| panic!("{}: a refused target succeeded", row.kind));
        assert_eq!(
            failure.reason(),
            row.refused_reason,
            "{}: {failure}",
            row.kind
        );
        assert!(
            failure.to_string().contains("refused"),
            "{}: the message says what happened: {failure}",
            row.kind
        );
    }
}
