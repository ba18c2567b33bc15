//! `proxy_url`: an http probe through a forward proxy. A plain `http://` target is asked of
//! the proxy in absolute form (`GET http://host/path`); an `https://` target is reached
//! through a `CONNECT host:port` tunnel, and TLS (verification included) is then spoken with
//! the target itself, through the tunnel. The `resolve` and `connect` phases are the proxy's.
//!
//! This file opens the connection; the request itself is `request.rs`'s.

use std::net::SocketAddr;
use std::sync::Arc;

use http::Uri;
use rustls::ClientConfig;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::probe::net::{self, Resolver, Stream};
use crate::probe::{Failure, Trace};

/// How much of the proxy's answer to `CONNECT` is read, at most.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// A validated `proxy_url`.
#[derive(Debug, Clone)]
pub(super) struct Proxy {
    host: String,
    port: u16,
    /// Whether the target's name is resolved here before the proxy is asked, as
    /// blackbox_exporter does unless `skip_resolve_phase_with_proxy`: the run then fails
    /// when it does not resolve, and reports the target's address, not the proxy's.
    resolve_target: bool,
    /// `no_proxy` (with `proxy_url`): the targets reached directly.
    no_proxy: Option<NoProxy>,
    /// `proxy_connect_header`: header lines (each ending in CRLF) sent with `CONNECT`.
    connect_headers: ConnectHeaders,
}

/// `proxy_connect_header` lines, their values secrets: never shown by `Debug`.
#[derive(Clone, Default)]
pub(super) struct ConnectHeaders(String);

impl std::fmt::Debug for ConnectHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.is_empty() {
            true => f.write_str("none"),
            false => f.write_str("[redacted]"),
        }
    }
}

impl ConnectHeaders {
    /// Header lines from names and their (resolved) values, one line per value, in the
    /// order Go writes them (names sorted, canonical case as `net/http` writes them).
    pub(super) fn new<'a>(
        headers: impl IntoIterator<Item = (&'a str, Vec<String>)>,
    ) -> Result<ConnectHeaders, String> {
        let mut lines = String::new();
        let mut sorted: Vec<_> = headers
            .into_iter()
            .map(|(name, values)| (canonical_header(name), values))
            .collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, values) in sorted {
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(format!("invalid header name {name:?}"));
            }
            for value in values {
                if http::HeaderValue::from_str(&value).is_err() {
                    return Err(format!("{name}: the value is not a valid header value"));
                }
                lines.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        Ok(ConnectHeaders(lines))
    }
}

/// A header name as Go's `textproto.CanonicalMIMEHeaderKey` writes it (`x-proxy-token` →
/// `X-Proxy-Token`).
fn canonical_header(name: &str) -> String {
    let mut upper = true;
    name.chars()
        .map(|c| {
            let out = if upper {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            };
            upper = c == '-';
            out
        })
        .collect()
}

/// `no_proxy` as Go's `golang.org/x/net/http/httpproxy` reads it (Prometheus' common
/// config hands it there): comma-separated host names (`example.com` is it and its
/// subdomains, `.example.com` and `*.example.com` only its subdomains), addresses and
/// CIDR ranges, each with an optional `:port`; `*` is every target. As there, `localhost`
/// and loopback addresses are never proxied once `no_proxy` is given.
#[derive(Debug, Clone, Default)]
pub(super) struct NoProxy {
    all: bool,
    ips: Vec<(std::net::IpAddr, Option<u16>)>,
    cidrs: Vec<(std::net::IpAddr, u8)>,
    /// `(".example.com", port, whether example.com itself matches)`.
    domains: Vec<(String, Option<u16>, bool)>,
}

impl NoProxy {
    pub(super) fn parse(text: &str) -> NoProxy {
        let mut out = NoProxy::default();
        for entry in text.split(',') {
            let entry = entry.trim().to_ascii_lowercase();
            if entry.is_empty() {
                continue;
            }
            if entry == "*" {
                return NoProxy {
                    all: true,
                    ..NoProxy::default()
                };
            }
            if let Some(cidr) = parse_cidr(&entry) {
                out.cidrs.push(cidr);
                continue;
            }
            let (host, port) = split_host_port(&entry);
            if host.is_empty() {
                continue;
            }
            if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                out.ips.push((ip, port));
                continue;
            }
            let host = host
                .strip_prefix('*')
                .filter(|h| h.starts_with('.'))
                .unwrap_or(host);
            match host.starts_with('.') {
                true => out.domains.push((host.to_string(), port, false)),
                false => out.domains.push((format!(".{host}"), port, true)),
            }
        }
        out
    }

    /// Whether a request to `url` goes around the proxy.
    pub(super) fn direct(&self, url: &Uri) -> bool {
        let Some(host) = url.host() else { return true };
        let host = host.trim_matches(['[', ']']).to_ascii_lowercase();
        let https = url.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = url.port_u16().unwrap_or(if https { 443 } else { 80 });
        let ip = host.parse::<std::net::IpAddr>().ok();
        if host == "localhost" || ip.is_some_and(|ip| ip.is_loopback()) || self.all {
            return true;
        }
        let port_ok = |want: &Option<u16>| want.is_none_or(|p| p == port);
        if let Some(ip) = ip
            && (self.ips.iter().any(|(m, p)| *m == ip && port_ok(p))
                || self.cidrs.iter().any(|&(net, bits)| in_cidr(ip, net, bits)))
        {
            return true;
        }
        self.domains.iter().any(|(suffix, p, exact)| {
            (host.ends_with(suffix.as_str()) || (*exact && host == suffix[1..])) && port_ok(p)
        })
    }
}

/// `10.0.0.0/8` or `fd00::/8`.
fn parse_cidr(text: &str) -> Option<(std::net::IpAddr, u8)> {
    let (ip, bits) = text.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((ip, bits))
}

fn in_cidr(ip: std::net::IpAddr, net: std::net::IpAddr, bits: u8) -> bool {
    use std::net::IpAddr;
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) as u128, u32::from(b) as u128, 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    let shift = width - u32::from(bits);
    shift >= width || (ip >> shift) == (net >> shift)
}

/// `host:port`, `[v6]:port` or a bare host, as Go's `net.SplitHostPort` splits them.
fn split_host_port(entry: &str) -> (&str, Option<u16>) {
    if let Some(rest) = entry.strip_prefix('[')
        && let Some((host, port)) = rest.split_once("]:")
    {
        return (host, port.parse().ok());
    }
    match entry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// `proxy_from_environment: true`: the proxies `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`
/// name (lower-case names first), read when the probe is built and chosen per URL. As Go's
/// `ProxyFromEnvironment` (blackbox_exporter's) does, `localhost` and loopback addresses are
/// never proxied.
#[derive(Debug, Clone, Default)]
pub(super) struct EnvProxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    /// The targets reached directly (read as `no_proxy` is), loopback among them.
    no_proxy: NoProxy,
}

impl EnvProxies {
    pub(super) fn from_env() -> Result<EnvProxies, String> {
        fn var(names: [&'static str; 2]) -> Option<(&'static str, String)> {
            names
                .into_iter()
                .find_map(|n| std::env::var(n).ok().filter(|v| !v.trim().is_empty()))
                .map(|v| (names[1], v))
        }
        let proxy = |found: Option<(&str, String)>| {
            found
                .map(|(name, v)| Proxy::parse(v.trim()).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        Ok(EnvProxies {
            http: proxy(var(["http_proxy", "HTTP_PROXY"]))?,
            https: proxy(var(["https_proxy", "HTTPS_PROXY"]))?,
            no_proxy: NoProxy::parse(
                &var(["no_proxy", "NO_PROXY"]).map_or_else(String::new, |(_, v)| v),
            ),
        })
    }

    /// These proxies, with `headers` sent on each `CONNECT`.
    pub(super) fn with_connect_headers(self, headers: &ConnectHeaders) -> EnvProxies {
        let with = |p: Option<Proxy>| p.map(|p| p.with_connect_headers(headers.clone()));
        EnvProxies {
            http: with(self.http),
            https: with(self.https),
            no_proxy: self.no_proxy,
        }
    }

    /// The proxy for `url`, if any.
    pub(super) fn for_url(&self, url: &Uri) -> Option<&Proxy> {
        if self.no_proxy.direct(url) {
            return None;
        }
        if url.scheme() == Some(&http::uri::Scheme::HTTPS) {
            self.https.as_ref()
        } else {
            self.http.as_ref()
        }
    }
}

impl Proxy {
    /// Reads `http://host:port`; credentials in the URL are refused (they would be a secret
    /// written inline).
    pub(super) fn parse(text: &str) -> Result<Proxy, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("invalid proxy URL {text:?}: {e}"))?;
        if uri.scheme_str() != Some("http") {
            return Err(format!(
                "proxy URL {text:?}: only http:// proxies are supported"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("proxy URL {text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!(
                "proxy URL {text:?}: credentials in the URL are not supported (they would be a secret written inline)"
            ));
        }
        Ok(Proxy {
            host: authority.host().to_string(),
            port: authority.port_u16().unwrap_or(80),
            resolve_target: false,
            no_proxy: None,
            connect_headers: ConnectHeaders::default(),
        })
    }

    /// This proxy, bypassed for the targets `no_proxy` names.
    pub(super) fn bypassed_for(self, no_proxy: NoProxy) -> Proxy {
        Proxy {
            no_proxy: Some(no_proxy),
            ..self
        }
    }

    /// This proxy, with `headers` sent on each `CONNECT`.
    pub(super) fn with_connect_headers(self, connect_headers: ConnectHeaders) -> Proxy {
        Proxy {
            connect_headers,
            ..self
        }
    }

    /// Whether a request to `url` goes through this proxy (`no_proxy`).
    pub(super) fn wanted_for(&self, url: &Uri) -> bool {
        self.no_proxy.as_ref().is_none_or(|n| !n.direct(url))
    }

    /// This proxy, with the target's name resolved here first (see `resolve_target`).
    pub(super) fn resolving_target(self, resolve_target: bool) -> Proxy {
        Proxy {
            resolve_target,
            ..self
        }
    }

    /// Opens the connection to `host:port` through the proxy: the proxy's own connection for
    /// plain HTTP, a `CONNECT` tunnel with TLS inside it for HTTPS.
    pub(super) async fn open(
        &self,
        host: &str,
        port: u16,
        resolver: &Resolver,
        tls: Option<(&str, Arc<ClientConfig>)>,
        trace: &mut Trace,
    ) -> Result<Stream, Failure> {
        let target_ip = match self.resolve_target {
            true => Some(net::resolve(host, resolver, trace).await?),
            false => None,
        };
        let ip = net::resolve(&self.host, resolver, trace).await?;
        let connected = net::connect(SocketAddr::new(ip, self.port), trace).await;
        if let Some(target_ip) = target_ip {
            // blackbox's probe_ip_protocol/probe_ip_addr_hash are the target's.
            net::address_signals(target_ip, trace);
        }
        let mut tcp = connected?;
        let Some((server_name, config)) = tls else {
            return Ok(Stream::Plain(tcp));
        };
        let target = if host.contains(':') {
            format!("[{}]:{port}", host.trim_matches(['[', ']']))
        } else {
            format!("{host}:{port}")
        };
        let proxy = format!("{}:{}", self.host, self.port);
        let request = format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n{}\r\n",
            self.connect_headers.0
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| Failure::Connect(format!("proxy {proxy}: {e}")))?;
        let mut head = Vec::with_capacity(256);
        let mut chunk = [0u8; 512];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            if head.len() > MAX_CONNECT_HEAD {
                return Err(Failure::Connect(format!(
                    "proxy {proxy} answered CONNECT with more than 8KiB of headers"
                )));
            }
            // One byte at a time past the first read would be slow; the tunnel's first bytes
            // are the target's and arrive only after our ClientHello, so nothing is lost.
            let n = tcp
                .read(&mut chunk)
                .await
                .map_err(|e| Failure::Connect(format!("proxy {proxy}: {e}")))?;
            if n == 0 {
                return Err(Failure::Connect(format!(
                    "proxy {proxy} closed the connection during CONNECT"
                )));
            }
            head.extend_from_slice(&chunk[..n]);
        }
        let text = String::from_utf8_lossy(&head);
        let status_line = text.lines().next().unwrap_or("");
        let status = status_line.split_whitespace().nth(1).unwrap_or("");
        if !status.starts_with('2') {
            return Err(Failure::Connect(format!(
                "proxy {proxy} refused CONNECT to {target}: {status_line}"
            )));
        }
        Ok(Stream::Tls(Box::new(
            net::handshake(tcp, server_name, config, trace).await?,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_proxies_skip_loopback_and_no_proxy_hosts() {
        let proxies = EnvProxies {
            http: Proxy::parse("http://proxy:3128").ok(),
            https: Proxy::parse("http://tunnel:3128").ok(),
            no_proxy: NoProxy::parse("internal.example,10.0.0.5"),
        };
        let via = |url: &str| {
            proxies
                .for_url(&url.parse().unwrap())
                .map(|p| p.host.clone())
        };
        assert_eq!(via("http://shop.example.com/"), Some("proxy".into()));
        assert_eq!(via("https://shop.example.com/"), Some("tunnel".into()));
        assert_eq!(via("http://api.internal.example/"), None);
        assert_eq!(via("http://internal.example/"), None);
        assert_eq!(via("http://notinternal.example/"), Some("proxy".into()));
        assert_eq!(via("http://10.0.0.5:8080/"), None);
        assert_eq!(via("http://127.0.0.1:8080/"), None);
        assert_eq!(via("http://localhost/"), None);
        assert_eq!(via("http://[::1]/"), None);
    }

    #[test]
    fn no_proxy_reads_as_go_httpproxy_does() {
        let no_proxy = NoProxy::parse(
            " Example.com, .sub.test,*.wild.test, 10.0.0.0/8, 192.168.1.5:8080, fd00::1, [fd02::1], fd01::/16, api.test:8443,,",
        );
        let direct = |url: &str| no_proxy.direct(&url.parse().unwrap());
        for url in [
            "http://example.com/",
            "http://a.example.com/",
            "http://x.sub.test/",
            "http://x.wild.test/",
            "http://10.1.2.3/",
            "http://192.168.1.5:8080/",
            "http://[fd00::1]/",
            "http://[fd01:2::3]/",
            "https://api.test:8443/",
            "http://localhost:9/",
            "http://127.0.0.2/",
            "http://[::1]/",
        ] {
            assert!(direct(url), "{url} is reached directly");
        }
        for url in [
            "http://notexample.com/",
            "http://sub.test/",
            "http://wild.test/",
            "http://11.0.0.1/",
            "http://192.168.1.5/",
            "http://[fd02::1]/",
            "https://api.test/",
        ] {
            assert!(!direct(url), "{url} goes through the proxy");
        }
        assert!(NoProxy::parse("*").direct(&"http://any.test/".parse().unwrap()));
    }

    #[test]
    fn connect_headers_are_canonical_sorted_and_redacted() {
        let headers = ConnectHeaders::new([
            ("x-proxy-token", vec!["s3cret".to_string()]),
            ("Accept", vec!["a".into(), "b".into()]),
        ])
        .unwrap();
        assert_eq!(
            headers.0,
            "Accept: a\r\nAccept: b\r\nX-Proxy-Token: s3cret\r\n"
        );
        assert_eq!(format!("{headers:?}"), "[redacted]");
        assert!(ConnectHeaders::new([("bad name", vec![])]).is_err());
    }

    #[test]
    fn proxy_urls() {
        let proxy = Proxy::parse("http://proxy.internal:3128").unwrap();
        assert_eq!((proxy.host.as_str(), proxy.port), ("proxy.internal", 3128));
        assert_eq!(Proxy::parse("http://proxy").unwrap().port, 80);
        assert!(Proxy::parse("https://proxy:443").is_err());
        assert!(
            Proxy::parse("http://user:pw@proxy:3128")
                .unwrap_err()
                .contains("credentials")
        );
    }
}
