//! `icmp:` probes against the real kernel: a raw socket with CAP_NET_RAW, an unprivileged
//! ping socket inside `net.ipv4.ping_group_range`, neither (a `permission` reason, not a
//! timeout), no route (`unreachable`) and a host that ignores echo requests (a timeout in
//! phase `rtt`).
//!
//! The unprivileged, no-permission and no-reply cases each run `slowburn probe` in a network
//! namespace of its own (`unshare -n`, as root), where `ping_group_range` and
//! `icmp_echo_ignore_all` are set without touching the host's, and as user `nobody` with no
//! capabilities (`setpriv`). Without root or `unshare` they say so loudly and skip, unless
//! `SLOWBURN_REQUIRE_ICMP=1` (set by `.ci/run`) makes that a failure.

mod support;

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_slowburn");

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|u| u.split_whitespace().nth(1).map(|e| e == "0"))
            .unwrap_or(false)
    })
}

/// Whether network namespaces can be made here; says so loudly when not.
fn namespaces() -> bool {
    let ok = is_root()
        && Command::new("unshare")
            .args(["-n", "true"])
            .status()
            .is_ok_and(|s| s.success());
    if !ok {
        let message = "SKIPPED: the ICMP permission cases need root and `unshare -n` (util-linux)";
        if std::env::var("SLOWBURN_REQUIRE_ICMP").is_ok_and(|v| v == "1") {
            panic!("{message}, and SLOWBURN_REQUIRE_ICMP=1 requires them");
        }
        eprintln!("{message}");
    }
    ok
}

/// Runs `slowburn probe NAME` on `config` in a fresh network namespace (loopback up) after
/// `setup` (shell, as root), as `nobody` without capabilities. Returns (exit code, output).
fn probe_in_namespace(config: &str, name: &str, setup: &str) -> (i32, String) {
    static RUNS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let run = RUNS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("slowburn-icmp-{}-{run}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("probes.yaml");
    std::fs::write(&file, config).unwrap();
    // `nobody` must be able to read the file and reach the binary.
    let _ = Command::new("chmod")
        .args(["755", dir.to_str().unwrap()])
        .status();
    let _ = Command::new("chmod")
        .args(["644", file.to_str().unwrap()])
        .status();
    let script = format!(
        "ip link set lo up && {setup} && exec setpriv --reuid=65534 --regid=65534 --clear-groups \
         --inh-caps=-all {BIN} probe {name} -c {}",
        file.display()
    );
    let out = Command::new("unshare")
        .args(["-n", "sh", "-c", &script])
        .output()
        .expect("unshare runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
    (out.status.code().unwrap_or(-1), text)
}

const LOOPBACK: &str = "probes:\n  - name: lo\n    timeout: 1s\n    icmp: {host: 127.0.0.1}\n  - name: lo6\n    timeout: 1s\n    icmp: {host: \"::1\", payload_size: 100, ttl: 8}\n  - name: far\n    timeout: 1s\n    icmp: {host: 10.255.255.1}\n";

#[tokio::test]
async fn loopback_answers_over_whatever_socket_this_process_may_open() {
    let outcome = support::run_probe("icmp: {host: 127.0.0.1}").await;
    let permitted = is_root()
        || std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
            .is_ok_and(|r| r.split_whitespace().collect::<Vec<_>>() != ["1", "0"]);
    if !permitted {
        // Neither a raw socket nor a ping socket: the reason says so at once.
        let failure = outcome
            .failure
            .as_ref()
            .expect("no permission is a failure");
        assert_eq!(failure.reason(), "permission", "{failure}");
        return;
    }
    assert!(outcome.success, "{outcome:#?}");
    let rtt = outcome.signal("latency").unwrap();
    assert!(rtt > 0.0 && rtt < 0.5, "rtt {rtt}");
    let phases: Vec<&str> = outcome.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, ["resolve", "setup", "rtt"]);
    if is_root() {
        // A raw IPv4 socket reads the reply's IP header: loopback replies with TTL 64.
        assert_eq!(outcome.signal("hop_limit"), Some(64.0), "{outcome:#?}");
        assert!(
            outcome.notes.iter().any(|n| n.contains("raw")),
            "{:?}",
            outcome.notes
        );
    }
}

#[test]
fn an_unprivileged_ping_socket_is_used_where_the_group_range_allows_it() {
    if !namespaces() {
        return;
    }
    let allow = "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range";
    for name in ["lo", "lo6"] {
        let (code, out) = probe_in_namespace(LOOPBACK, name, allow);
        assert_eq!(code, 0, "{out}");
        assert!(out.contains("unprivileged ICMP socket"), "{out}");
    }
}

#[test]
fn without_either_socket_the_reason_is_permission_and_names_both_remedies() {
    if !namespaces() {
        return;
    }
    let deny = "echo '1 0' > /proc/sys/net/ipv4/ping_group_range";
    let (code, out) = probe_in_namespace(LOOPBACK, "lo", deny);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reason: permission: no permission for ICMP: group 65534 is outside net.ipv4.ping_group_range (1 0) and raw sockets need CAP_NET_RAW (permission)"),
        "{out}"
    );
}

#[test]
fn no_route_is_unreachable_and_an_ignored_echo_times_out_in_rtt() {
    if !namespaces() {
        return;
    }
    let allow = "echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range";
    let (code, out) = probe_in_namespace(LOOPBACK, "far", allow);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("reason: unreachable: no route to 10.255.255.1 (unreachable)"),
        "{out}"
    );
    let ignore = format!("{allow} && echo 1 > /proc/sys/net/ipv4/icmp_echo_ignore_all");
    let (code, out) = probe_in_namespace(LOOPBACK, "lo", &ignore);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("timeout after 1s in phase rtt"), "{out}");
}

/// The sources of the echo requests to 127.0.0.9 (an address no other test pings) that a raw
/// socket sees within `wait` (root only).
fn echo_request_sources(wait: std::time::Duration) -> std::thread::JoinHandle<Vec<String>> {
    use socket2::{Domain, Protocol, Socket, Type};
    use std::io::Read;
    let mut socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_millis(50)))
        .unwrap();
    std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let mut sources = Vec::new();
        let mut buf = [0u8; 1500];
        while started.elapsed() < wait {
            let Ok(n) = socket.read(&mut buf) else {
                continue;
            };
            let packet = &buf[..n];
            let header = usize::from(packet[0] & 0x0f) * 4;
            if packet.get(header) == Some(&8) && packet[16..20] == [127, 0, 0, 9] {
                sources.push(format!(
                    "{}.{}.{}.{}",
                    packet[12], packet[13], packet[14], packet[15]
                ));
            }
        }
        sources
    })
}

#[tokio::test]
async fn source_ip_address_is_the_echo_request_source() {
    if !is_root() {
        eprintln!("SKIPPED: seeing the echo request's source needs a raw socket (root)");
        return;
    }
    let sniffer = echo_request_sources(std::time::Duration::from_millis(700));
    let outcome = support::run_probe("icmp: {host: 127.0.0.9, source_ip_address: 127.0.0.2}").await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(sniffer.join().unwrap(), ["127.0.0.2"]);

    let outcome = support::run_probe("icmp: {host: 127.0.0.1, source_ip_address: \"::1\"}").await;
    assert!(
        support::failure(&outcome).starts_with("icmp: source_ip_address ::1 is IPv6"),
        "{outcome:#?}"
    );
}

#[tokio::test]
async fn bad_specs_are_refused_with_their_positions() {
    let text = "probes:\n  - name: a\n    icmp: {host: h, preferred_ip_protocol: ip5, ttl: 0, payload_size: 70000}\n";
    let all = support::load_errors("p.yaml", text).join("\n");
    for at in ["p.yaml:3:44", "p.yaml:3:54", "p.yaml:3:71"] {
        assert!(all.contains(at), "{at}: {all}");
    }
    assert!(all.contains("\"ip5\" is not one of ip4, ip6"), "{all}");
    assert!(
        all.contains("ttl: must be between 1 and 255, got 0"),
        "{all}"
    );
    assert!(
        all.contains("payload_size: at most 65000 bytes, got 70000"),
        "{all}"
    );
}

const FRAGMENTS: &str = "probes:\n  - name: big\n    timeout: 1s\n    icmp: {host: 127.0.0.1, payload_size: 1400}\n  - name: big_df\n    timeout: 1s\n    icmp: {host: 127.0.0.1, payload_size: 1400, dont_fragment: true}\n  - name: small_df\n    timeout: 1s\n    icmp: {host: 127.0.0.1, payload_size: 1000, dont_fragment: true}\n  - name: big6_df\n    timeout: 1s\n    icmp: {host: \"::1\", payload_size: 1400, dont_fragment: true}\n";

#[test]
fn dont_fragment_fails_a_request_over_the_mtu_that_would_otherwise_arrive_in_pieces() {
    if !namespaces() {
        return;
    }
    // Loopback's MTU cut to 1280 (IPv6's least): 1400 bytes of payload need two fragments.
    // Unprivileged ping sockets, as blackbox (which needs a raw socket for this) cannot.
    let setup =
        "ip link set lo mtu 1280 && echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range";
    let (code, out) = probe_in_namespace(FRAGMENTS, "big", setup);
    assert_eq!(code, 0, "fragmented and reassembled: {out}");
    let (code, out) = probe_in_namespace(FRAGMENTS, "big_df", setup);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains(
            "the request to 127.0.0.1 is larger than the path MTU and dont_fragment forbids \
             fragmenting it"
        ),
        "{out}"
    );
    let (code, out) = probe_in_namespace(FRAGMENTS, "small_df", setup);
    assert_eq!(code, 0, "under the MTU: {out}");
    // IPv6 has no don't-fragment bit: the key is ignored, as blackbox ignores it, and the
    // sending host fragments the request as IPv6 lets it.
    let (code, out) = probe_in_namespace(FRAGMENTS, "big6_df", setup);
    assert_eq!(code, 0, "{out}");
}
