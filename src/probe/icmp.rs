//! The `icmp:` probe: one echo request and its reply. Phases `resolve`, `setup` (the socket)
//! and `rtt`, as blackbox_exporter names them.
//!
//! The socket is an unprivileged ICMP datagram socket (a "ping socket", allowed when the
//! process' group is inside `net.ipv4.ping_group_range`), else a raw socket (which needs
//! `CAP_NET_RAW`). When neither is allowed the run fails with reason `permission`, naming both
//! and the range in force, rather than timing out. A raw socket sees every ICMP packet the host
//! receives, so replies are matched on identifier, sequence and a per-run token in the
//! payload; an unreachable or time-exceeded answer about our request is its own reason.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Instant;

use serde::Deserialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::net::{self, Resolver};
use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{KindInfo, Signal, Unit, gauge};
use crate::basics::yaml::Spanned;

/// Bytes of payload by default, as `ping` sends.
const DEFAULT_PAYLOAD: usize = 56;
/// The largest payload accepted: an echo request must fit one IPv4 datagram.
const MAX_PAYLOAD: usize = 65_000;

/// `icmp:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IcmpSpec {
    /// Host name or address to ping.
    pub host: Spanned<String>,
    /// `ip4` (default) or `ip6`: the address family tried first.
    pub preferred_ip_protocol: Option<Spanned<String>>,
    /// Whether the other family is used when the preferred one has no address (default true).
    pub ip_protocol_fallback: Option<bool>,
    /// Bytes of payload after the 8-byte header (default 56).
    pub payload_size: Option<Spanned<usize>>,
    /// Time to live (hop limit) of the request, 1–255.
    pub ttl: Option<Spanned<u32>>,
    /// The local address to send the echo request from (one of this host's, of the target's
    /// family).
    pub source_ip_address: Option<Spanned<String>>,
    /// Never fragment the echo request: the IPv4 don't-fragment bit, set by the kernel
    /// (`IP_MTU_DISCOVER` = `IP_PMTUDISC_DO`), so a request larger than the path MTU fails
    /// instead of leaving in pieces, as blackbox_exporter's `dont_fragment`. IPv4 only, as
    /// there; an IPv6 target ignores it.
    #[serde(default)]
    pub dont_fragment: bool,
    pub resolver: Option<Vec<Spanned<String>>>,
}

#[derive(Debug)]
pub struct IcmpProbe {
    host: String,
    payload: usize,
    ttl: Option<u32>,
    source: Option<IpAddr>,
    dont_fragment: bool,
    resolver: Resolver,
}

/// Identifiers of the requests this process sends; each run takes the next.
static SEQUENCE: AtomicU16 = AtomicU16::new(1);

impl IcmpProbe {
    pub fn new(spec: Spanned<IcmpSpec>, ctx: &BuildContext) -> Result<IcmpProbe, Vec<SpecError>> {
        let spec = spec.value;
        let mut errors = Vec::new();
        if spec.host.trim().is_empty() {
            errors.push(SpecError::new(spec.host.pos, "host", "must not be empty"));
        }
        let family = net::IpPreference::from_spec(
            spec.preferred_ip_protocol.as_ref(),
            spec.ip_protocol_fallback,
        )
        .map_err(|e| errors.push(e))
        .unwrap_or_default();
        let payload = match &spec.payload_size {
            Some(size) if size.value > MAX_PAYLOAD => {
                errors.push(SpecError::new(
                    size.pos,
                    "payload_size",
                    format!("at most {MAX_PAYLOAD} bytes, got {}", size.value),
                ));
                0
            }
            Some(size) => size.value,
            None => DEFAULT_PAYLOAD,
        };
        let ttl = match &spec.ttl {
            Some(ttl) if !(1..=255).contains(&ttl.value) => {
                errors.push(SpecError::new(
                    ttl.pos,
                    "ttl",
                    format!("must be between 1 and 255, got {}", ttl.value),
                ));
                None
            }
            other => other.as_ref().map(|t| t.value),
        };
        let source = net::source_address(spec.source_ip_address.as_ref(), &mut errors);
        let resolver = ctx
            .net
            .resolver(spec.resolver.as_deref(), family)
            .map_err(|e| errors.push(e))
            .ok();
        match resolver {
            Some(resolver) if errors.is_empty() => Ok(IcmpProbe {
                host: spec.host.value.trim().to_string(),
                payload,
                ttl,
                source,
                dont_fragment: spec.dont_fragment,
                resolver,
            }),
            _ => Err(errors),
        }
    }

    pub fn target(&self) -> String {
        self.host.clone()
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        let ip = net::resolve(&self.host, &self.resolver, trace).await?;
        trace.enter("setup");
        net::address_signals(ip, trace);
        let (socket, raw) = open(ip, self.ttl, self.source, self.dont_fragment)?;
        trace.notes.push(
            if raw {
                "raw ICMP socket (CAP_NET_RAW)"
            } else {
                "unprivileged ICMP socket (ping_group_range)"
            }
            .into(),
        );
        if self.dont_fragment && ip.is_ipv6() {
            trace.notes.push(
                "dont_fragment ignored: it applies to IPv4 only, as in blackbox_exporter \
                 (IPv6 routers never fragment)"
                    .into(),
            );
        }
        let id = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        let sequence = id.rotate_left(8);
        let token: [u8; 8] = rand_token(id);
        let request = echo_request(ip.is_ipv4(), id, sequence, &token, self.payload);
        trace.enter("rtt");
        let sent = Instant::now();
        socket
            .send_to(&request, SocketAddr::new(ip, 0))
            .await
            .map_err(|e| send_failure(ip, &e))?;
        let mut buf = vec![0u8; self.payload + 128];
        loop {
            let (n, from) = socket
                .recv_from(&mut buf)
                .await
                .map_err(|e| Failure::Icmp(format!("receiving from {ip}: {e}")))?;
            let reply = parse(&buf[..n], ip.is_ipv4(), raw);
            let Some(reply) = reply else { continue };
            match reply {
                Reply::Echo {
                    id: got_id,
                    sequence: got_seq,
                    payload,
                    hop_limit,
                } if from.ip() == ip
                    && got_seq == sequence
                    && (!raw || got_id == id)
                    && payload.starts_with(&token) =>
                {
                    let rtt = sent.elapsed();
                    trace.signal("latency", rtt.as_secs_f64());
                    if let Some(hops) = hop_limit {
                        trace.signal("hop_limit", f64::from(hops));
                    }
                    return Ok(());
                }
                Reply::Error {
                    what,
                    id: got_id,
                    sequence: got_seq,
                } if got_seq == sequence && got_id == id => {
                    return Err(Failure::Unreachable(format!("{what} from {}", from.ip())));
                }
                _ => {}
            }
        }
    }
}

/// Opens an ICMP socket for `ip`'s family: a ping socket if allowed, else a raw one, bound to
/// `source` when given, its IPv4 packets sent with the don't-fragment bit when
/// `dont_fragment`. Returns the socket and whether it is raw.
fn open(
    ip: IpAddr,
    ttl: Option<u32>,
    source: Option<IpAddr>,
    dont_fragment: bool,
) -> Result<(tokio::net::UdpSocket, bool), Failure> {
    if let Some(source) = source {
        net::same_family(source, ip).map_err(Failure::Icmp)?;
    }
    let (domain, protocol) = if ip.is_ipv4() {
        (Domain::IPV4, Protocol::ICMPV4)
    } else {
        (Domain::IPV6, Protocol::ICMPV6)
    };
    let denied =
        |e: &io::Error| e.kind() == io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(1);
    let (socket, raw) = match Socket::new(domain, Type::DGRAM, Some(protocol)) {
        Ok(socket) => (socket, false),
        Err(e) if denied(&e) => match Socket::new(domain, Type::RAW, Some(protocol)) {
            Ok(socket) => (socket, true),
            Err(e) if denied(&e) => return Err(Failure::Permission(no_permission())),
            Err(e) => return Err(Failure::Icmp(format!("cannot open a raw ICMP socket: {e}"))),
        },
        Err(e) => return Err(Failure::Icmp(format!("cannot open an ICMP socket: {e}"))),
    };
    let setup = |e: io::Error| Failure::Icmp(format!("setting up the ICMP socket: {e}"));
    if let Some(ttl) = ttl {
        if ip.is_ipv4() {
            socket.set_ttl_v4(ttl).map_err(setup)?;
        } else {
            socket.set_unicast_hops_v6(ttl).map_err(setup)?;
        }
    }
    // blackbox writes the IPv4 header itself on a raw socket to set DF; the kernel sets it
    // on either kind of socket when told to do path MTU discovery, so no privilege is needed.
    if dont_fragment && ip.is_ipv4() {
        use rustix::net::sockopt::{Ipv4PathMtuDiscovery, set_ip_mtu_discover};
        set_ip_mtu_discover(&socket, Ipv4PathMtuDiscovery::DO)
            .map_err(|e| setup(io::Error::from(e)))?;
    }
    if let Some(source) = source {
        socket
            .bind(&SocketAddr::new(source, 0).into())
            .map_err(|e| Failure::Icmp(format!("cannot bind source_ip_address {source}: {e}")))?;
    }
    socket.set_nonblocking(true).map_err(setup)?;
    let socket = tokio::net::UdpSocket::from_std(socket.into()).map_err(setup)?;
    Ok((socket, raw))
}

/// Why no ICMP socket could be opened, with what would allow one.
fn no_permission() -> String {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ping_group_range")
        .map(|r| r.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let gid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Gid:"))
                .and_then(|g| g.split_whitespace().nth(1).map(str::to_string))
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "no permission for ICMP: group {gid} is outside net.ipv4.ping_group_range ({range}) \
         and raw sockets need CAP_NET_RAW"
    )
}

fn send_failure(ip: IpAddr, e: &io::Error) -> Failure {
    match e.raw_os_error() {
        // ENETUNREACH, EHOSTUNREACH
        Some(101) | Some(113) => Failure::Unreachable(format!("no route to {ip}")),
        Some(1) | Some(13) => Failure::Permission(format!("sending to {ip} was refused: {e}")),
        Some(libc::EMSGSIZE) => Failure::Icmp(format!(
            "the request to {ip} is larger than the path MTU and dont_fragment forbids \
             fragmenting it"
        )),
        _ => Failure::Icmp(format!("sending to {ip}: {e}")),
    }
}

/// Eight bytes that tell this run's reply from any other's.
fn rand_token(id: u16) -> [u8; 8] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let mixed = (u64::from(nanos) << 16 | u64::from(id)).wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ u64::from(std::process::id());
    mixed.to_be_bytes()
}

/// An echo request: type, code, checksum, identifier, sequence, then the token and filler.
fn echo_request(v4: bool, id: u16, sequence: u16, token: &[u8; 8], payload: usize) -> Vec<u8> {
    let mut packet = Vec::with_capacity(8 + payload.max(8));
    packet.push(if v4 { 8 } else { 128 });
    packet.extend_from_slice(&[0, 0, 0]);
    packet.extend_from_slice(&id.to_be_bytes());
    packet.extend_from_slice(&sequence.to_be_bytes());
    packet.extend_from_slice(&token[..payload.min(8)]);
    packet.extend((8..payload).map(|i| (i % 256) as u8));
    if v4 {
        // ICMPv6 checksums cover a pseudo-header the kernel fills in; ICMPv4's do not.
        let sum = checksum(&packet);
        packet[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    packet
}

/// The Internet checksum (RFC 1071).
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|pair| u32::from(u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What came back.
#[derive(Debug, PartialEq)]
enum Reply<'a> {
    Echo {
        id: u16,
        sequence: u16,
        payload: &'a [u8],
        hop_limit: Option<u8>,
    },
    /// Unreachable or time exceeded, about the request with this identifier and sequence.
    Error {
        what: String,
        id: u16,
        sequence: u16,
    },
}

/// Reads one received packet. A raw IPv4 socket's packets start with the IP header (whose
/// TTL is the reply's hop limit); datagram and IPv6 sockets deliver the ICMP message alone.
fn parse(packet: &[u8], v4: bool, raw: bool) -> Option<Reply<'_>> {
    let (icmp, hop_limit) = if v4 && raw {
        let header = usize::from(packet.first()? & 0x0f) * 4;
        (packet.get(header..)?, packet.get(8).copied())
    } else {
        (packet, None)
    };
    let (kind, code) = (*icmp.first()?, *icmp.get(1)?);
    let word = |at: usize| Some(u16::from_be_bytes([*icmp.get(at)?, *icmp.get(at + 1)?]));
    let (echo_reply, unreachable, exceeded) = if v4 { (0, 3, 11) } else { (129, 1, 3) };
    if kind == echo_reply {
        return Some(Reply::Echo {
            id: word(4)?,
            sequence: word(6)?,
            payload: icmp.get(8..)?,
            hop_limit,
        });
    }
    if kind != unreachable && kind != exceeded {
        return None;
    }
    // The error quotes our request: its IP header (IPv4: variable, IPv6: 40 bytes), then
    // the first 8 bytes of our ICMP header.
    let quoted = icmp.get(8..)?;
    let inner = if v4 {
        quoted.get(usize::from(quoted.first()? & 0x0f) * 4..)?
    } else {
        quoted.get(40..)?
    };
    let id = u16::from_be_bytes([*inner.get(4)?, *inner.get(5)?]);
    let sequence = u16::from_be_bytes([*inner.get(6)?, *inner.get(7)?]);
    let what = match (v4, kind == exceeded, code) {
        (_, true, _) => "time to live exceeded".to_string(),
        (true, false, 0) | (false, false, 0) => "network unreachable".to_string(),
        (true, false, 1) | (false, false, 3) => "host unreachable".to_string(),
        (true, false, 3) | (false, false, 4) => "port unreachable".to_string(),
        (true, false, 4) => "fragmentation needed (with dont_fragment)".to_string(),
        (true, false, 13) | (false, false, 1) => "administratively prohibited".to_string(),
        (_, false, code) => format!("destination unreachable (code {code})"),
    };
    Some(Reply::Error { what, id, sequence })
}

impl super::Kind for IcmpProbe {
    type Spec = IcmpSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<IcmpSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        IcmpProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        IcmpProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        IcmpProbe::run(self, trace)
    }
}

static HOP_LIMIT: crate::basics::signal::Family = gauge(
    "probe_icmp_reply_hop_limit",
    "The hop limit (TTL) of the echo reply, where the socket shows it.",
);

/// What the rest of the house knows of `icmp:` probes.
pub const KIND: KindInfo = KindInfo {
    name: "icmp",
    network: true,
    headline: "latency",
    signals: &[
        Signal::new("latency", Unit::Seconds, None),
        Signal::new("hop_limit", Unit::Count, Some(&HOP_LIMIT)).exported_only(),
        Signal::new("ip_protocol", Unit::Count, Some(&net::IP_PROTOCOL)).exported_only(),
        Signal::new("ip_addr_hash", Unit::Count, Some(&net::IP_ADDR_HASH)).exported_only(),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_carries_a_valid_checksum() {
        let packet = echo_request(true, 0x1234, 7, b"abcdefgh", 56);
        assert_eq!(packet.len(), 64);
        assert_eq!(packet[0], 8);
        // Summing a packet with its checksum in place gives zero.
        assert_eq!(checksum(&packet), 0);
        assert_eq!(&packet[8..16], b"abcdefgh");
        let v6 = echo_request(false, 1, 2, b"abcdefgh", 0);
        assert_eq!(v6.len(), 8);
        assert_eq!(v6[0], 128);
    }

    #[test]
    fn replies_and_errors_are_read_as_the_socket_delivers_them() {
        // A raw IPv4 reply: a 20-byte IP header with TTL 61, then the echo reply.
        let mut raw = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 61, 1, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        let mut reply = echo_request(true, 9, 3, b"tokentok", 8);
        reply[0] = 0;
        raw.extend_from_slice(&reply);
        assert_eq!(
            parse(&raw, true, true),
            Some(Reply::Echo {
                id: 9,
                sequence: 3,
                payload: b"tokentok",
                hop_limit: Some(61)
            })
        );
        // The same reply from a datagram socket has no IP header and no hop limit.
        assert!(matches!(
            parse(&reply, true, false),
            Some(Reply::Echo {
                id: 9,
                sequence: 3,
                hop_limit: None,
                ..
            })
        ));
        // Host unreachable quoting our request.
        let mut error = vec![3, 1, 0, 0, 0, 0, 0, 0];
        error.extend_from_slice(&raw[..20]);
        error.extend_from_slice(&echo_request(true, 9, 3, b"tokentok", 0));
        assert_eq!(
            parse(&error, true, false),
            Some(Reply::Error {
                what: "host unreachable".into(),
                id: 9,
                sequence: 3
            })
        );
        // Truncated packets and other ICMP types are ignored, not misread.
        assert_eq!(parse(&[0x45, 0], true, true), None);
        assert_eq!(parse(&[5, 0, 0, 0, 0, 0, 0, 0], true, false), None);
    }
}
