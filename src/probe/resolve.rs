//! Name resolution for the kinds that connect: which resolver a probe asks (the system's or
//! its own `resolver:` servers, built by `net::NetContext`), which address family it prefers
//! (`preferred_ip_protocol`, `ip_protocol_fallback`, as in blackbox_exporter), and the timed
//! `resolve` phase that picks one address.

use std::net::IpAddr;
use std::sync::Arc;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;

use super::{Failure, SpecError, Trace};
use crate::basics::yaml::Spanned;

/// Which resolver a probe asks, and which address family it prefers.
#[derive(Clone, Debug)]
pub struct Resolver {
    lookup: Lookup,
    preference: IpPreference,
}

#[derive(Clone)]
enum Lookup {
    System(Result<Arc<TokioResolver>, String>),
    Custom(Arc<TokioResolver>),
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::System(_) => f.write_str("Resolver::System"),
            Lookup::Custom(_) => f.write_str("Resolver::Custom"),
        }
    }
}

/// `preferred_ip_protocol` and `ip_protocol_fallback`, as in blackbox_exporter: the family
/// tried first and whether the other one is taken when a name has none of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpPreference {
    pub ipv6: bool,
    pub fallback: bool,
}

impl Default for IpPreference {
    /// IPv4 first, IPv6 when a name has no IPv4 address.
    fn default() -> Self {
        IpPreference {
            ipv6: false,
            fallback: true,
        }
    }
}

impl Resolver {
    /// The system's resolver (or why it could not be read).
    pub(super) fn system(
        lookup: Result<Arc<TokioResolver>, String>,
        preference: IpPreference,
    ) -> Self {
        Resolver {
            lookup: Lookup::System(lookup),
            preference,
        }
    }

    /// A resolver of the probe's own `resolver:` servers.
    pub(super) fn custom(lookup: Arc<TokioResolver>, preference: IpPreference) -> Self {
        Resolver {
            lookup: Lookup::Custom(lookup),
            preference,
        }
    }
}

impl IpPreference {
    /// Reads the two keys as written (`ip4` or `ip6`).
    pub fn from_spec(
        preferred: Option<&Spanned<String>>,
        fallback: Option<bool>,
    ) -> Result<IpPreference, SpecError> {
        let ipv6 = match preferred.map(|p| (p.pos, p.to_ascii_lowercase())) {
            None => false,
            Some((_, p)) if p == "ip4" || p == "ipv4" => false,
            Some((_, p)) if p == "ip6" || p == "ipv6" => true,
            Some((pos, p)) => {
                return Err(SpecError::new(
                    pos,
                    "preferred_ip_protocol",
                    format!("{p:?} is not one of ip4, ip6"),
                ));
            }
        };
        Ok(IpPreference {
            ipv6,
            fallback: fallback.unwrap_or(true),
        })
    }

    fn wants(self, ip: &IpAddr) -> bool {
        ip.is_ipv6() == self.ipv6
    }

    fn family(self) -> &'static str {
        if self.ipv6 { "IPv6" } else { "IPv4" }
    }

    /// The hickory strategy that asks for the preferred family first (and only it without
    /// fallback), so a preference for IPv6 queries AAAA even when the name has A records.
    pub(super) fn strategy(self) -> LookupIpStrategy {
        match (self.ipv6, self.fallback) {
            (false, true) => LookupIpStrategy::Ipv4thenIpv6,
            (false, false) => LookupIpStrategy::Ipv4Only,
            (true, true) => LookupIpStrategy::Ipv6thenIpv4,
            (true, false) => LookupIpStrategy::Ipv6Only,
        }
    }

    pub(super) fn slot(self) -> usize {
        usize::from(self.ipv6) * 2 + usize::from(self.fallback)
    }
}

/// Resolves `host` to one address of the preferred family (or, with fallback, the other),
/// timing the `resolve` phase.
pub async fn resolve(
    host: &str,
    resolver: &Resolver,
    trace: &mut Trace,
) -> Result<IpAddr, Failure> {
    trace.enter("resolve");
    let prefer = resolver.preference;
    let refuse = || {
        Failure::Dns(format!(
            "no {} address for {host} (ip_protocol_fallback: false)",
            prefer.family()
        ))
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return if prefer.wants(&ip) || prefer.fallback {
            Ok(ip)
        } else {
            Err(refuse())
        };
    }
    let lookup = match &resolver.lookup {
        Lookup::System(Ok(r)) | Lookup::Custom(r) => r,
        Lookup::System(Err(e)) => return Err(Failure::Dns(e.clone())),
    };
    match lookup.lookup_ip(host).await {
        Ok(lookup) => {
            let mut other = None;
            for ip in lookup.iter() {
                if prefer.wants(&ip) {
                    return Ok(ip);
                }
                other.get_or_insert(ip);
            }
            match other {
                Some(ip) if prefer.fallback => Ok(ip),
                Some(_) => Err(refuse()),
                None => Err(Failure::Dns(format!("no A/AAAA records for {host}"))),
            }
        }
        Err(e) if e.is_nx_domain() => Err(Failure::Dns(format!("NXDOMAIN for {host}"))),
        Err(e) if e.is_no_records_found() => {
            Err(Failure::Dns(format!("no A/AAAA records for {host}")))
        }
        Err(e) => Err(Failure::Dns(format!("{host}: {e}"))),
    }
}
