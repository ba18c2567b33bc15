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
}

/// `proxy_from_environment: true`: the proxies `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY`
/// name (lower-case names first), read when the probe is built and chosen per URL. As Go's
/// `ProxyFromEnvironment` (blackbox_exporter's) does, `localhost` and loopback addresses are
/// never proxied.
#[derive(Debug, Clone, Default)]
pub(super) struct EnvProxies {
    http: Option<Proxy>,
    https: Option<Proxy>,
    /// Host names (and their subdomains) and addresses reached directly; `*` is every host.
    no_proxy: Vec<String>,
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
            no_proxy: var(["no_proxy", "NO_PROXY"]).map_or_else(Vec::new, |(_, v)| {
                v.split(',')
                    .map(|h| h.trim().trim_start_matches('.').to_ascii_lowercase())
                    .map(|h| match h.rsplit_once(':') {
                        Some((host, port)) if port.parse::<u16>().is_ok() => host.to_string(),
                        _ => h,
                    })
                    .filter(|h| !h.is_empty())
                    .collect()
            }),
        })
    }

    /// The proxy for `url`, if any.
    pub(super) fn for_url(&self, url: &Uri) -> Option<&Proxy> {
        let host = url.host()?.trim_matches(['[', ']']).to_ascii_lowercase();
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let direct = self.no_proxy.iter().any(|n| {
            n == "*"
                || host == *n
                || host
                    .strip_suffix(n.as_str())
                    .is_some_and(|r| r.ends_with('.'))
        });
        if loopback || direct {
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
        })
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
        let request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
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
            no_proxy: vec!["internal.example".into(), "10.0.0.5".into()],
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
