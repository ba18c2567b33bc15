//! Name resolution for the kinds that connect: which resolver a probe asks (the system's or
//! its own `resolver:` servers, built by `net::NetContext`), which address family it prefers
//! (`preferred_ip_protocol`, `ip_protocol_fallback`, as in blackbox_exporter), and the timed
//! `resolve` phase that picks one address.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

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
    /// The hosts file first, then the system's resolver (or why it could not be read).
    System(Arc<HostsFile>, Result<Arc<TokioResolver>, String>),
    Custom(Arc<TokioResolver>),
}

impl std::fmt::Debug for Lookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Lookup::System(..) => f.write_str("Resolver::System"),
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
        hosts: Arc<HostsFile>,
        lookup: Result<Arc<TokioResolver>, String>,
        preference: IpPreference,
    ) -> Self {
        Resolver {
            lookup: Lookup::System(hosts, lookup),
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
        Lookup::System(hosts, lookup) => {
            if let Some(picked) = hosts.with(host, |listed| pick(listed.iter().copied(), prefer)) {
                return picked.ok_or_else(refuse);
            }
            match lookup {
                Ok(r) => r,
                Err(e) => return Err(Failure::Dns(e.clone())),
            }
        }
        Lookup::Custom(r) => r,
    };
    match lookup.lookup_ip(host).await {
        Ok(lookup) => match pick(lookup.iter(), prefer) {
            Some(ip) => Ok(ip),
            None if lookup.iter().next().is_some() => Err(refuse()),
            None => Err(Failure::Dns(format!("no A/AAAA records for {host}"))),
        },
        Err(e) if e.is_nx_domain() => Err(Failure::Dns(format!("NXDOMAIN for {host}"))),
        Err(e) if e.is_no_records_found() => {
            Err(Failure::Dns(format!("no A/AAAA records for {host}")))
        }
        Err(e) => Err(Failure::Dns(format!("{host}: {e}"))),
    }
}

/// The first address of the preferred family, else (with fallback) the first of the other.
fn pick(addresses: impl Iterator<Item = IpAddr>, prefer: IpPreference) -> Option<IpAddr> {
    let mut other = None;
    for ip in addresses {
        if prefer.wants(&ip) {
            return Some(ip);
        }
        other.get_or_insert(ip);
    }
    other.filter(|_| prefer.fallback)
}

/// How often the hosts file is looked at for a change.
const HOSTS_CHECK: Duration = Duration::from_secs(1);

/// The hosts file, read as glibc's and Go's resolvers read it (blackbox_exporter's among
/// them): a name listed there resolves to the addresses listed for it, in file order, and
/// no query is sent. It is read again when it changes (looked at, at most, once a second);
/// hickory reads its copy once at start. A lookup is one map access, without the name
/// parsing and record copies of a hickory lookup.
pub struct HostsFile {
    path: PathBuf,
    check_every: Duration,
    state: RwLock<Hosts>,
}

#[derive(Default)]
struct Hosts {
    checked: Option<Instant>,
    /// The file's modification time and length when it was read.
    stamp: Option<(SystemTime, u64)>,
    names: HashMap<Box<str>, Vec<IpAddr>>,
}

impl HostsFile {
    /// The system's hosts file.
    pub fn system() -> Self {
        HostsFile::at(PathBuf::from("/etc/hosts"), HOSTS_CHECK)
    }

    /// The hosts file at `path`, looked at for a change every `check_every`.
    pub fn at(path: PathBuf, check_every: Duration) -> Self {
        HostsFile {
            path,
            check_every,
            state: RwLock::new(Hosts::default()),
        }
    }

    /// `f` of the addresses listed for `host`, or `None` when the file does not list it.
    pub fn with<R>(&self, host: &str, f: impl FnOnce(&[IpAddr]) -> R) -> Option<R> {
        let host = host.strip_suffix('.').unwrap_or(host);
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(host.to_ascii_lowercase())
        } else {
            Cow::Borrowed(host)
        };
        {
            let state = self.state.read().unwrap_or_else(|e| e.into_inner());
            if state
                .checked
                .is_some_and(|at| at.elapsed() < self.check_every)
            {
                return state.names.get(host.as_ref()).map(|ips| f(ips));
            }
        }
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        self.refresh(&mut state);
        state.names.get(host.as_ref()).map(|ips| f(ips))
    }

    /// Reads the file again when its modification time or length changed.
    fn refresh(&self, state: &mut Hosts) {
        if state
            .checked
            .is_some_and(|at| at.elapsed() < self.check_every)
        {
            return;
        }
        state.checked = Some(Instant::now());
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
        if stamp == state.stamp {
            return;
        }
        state.stamp = stamp;
        state.names = std::fs::read_to_string(&self.path)
            .map(|text| parse_hosts(&text))
            .unwrap_or_default();
    }
}

/// `address name [alias…]` lines; `#` starts a comment; names compare without case.
fn parse_hosts(text: &str) -> HashMap<Box<str>, Vec<IpAddr>> {
    let mut names: HashMap<Box<str>, Vec<IpAddr>> = HashMap::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or_default();
        let mut fields = line.split_ascii_whitespace();
        let Some(Ok(ip)) = fields.next().map(str::parse::<IpAddr>) else {
            continue;
        };
        for name in fields {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            let listed = names.entry(name.into_boxed_str()).or_default();
            if !listed.contains(&ip) {
                listed.push(ip);
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn hosts_lines_read_as_glibc_reads_them() {
        let names = parse_hosts(
            "# comment\n127.0.0.1 localhost Box.local  # trailing\n::1 localhost ip6-localhost\n\
             10.0.0.5\tdb db.internal.\nnot-an-address name\n10.0.0.6 db\n",
        );
        assert_eq!(names["localhost"], [v4("127.0.0.1"), v4("::1")]);
        assert_eq!(names["box.local"], [v4("127.0.0.1")]);
        assert_eq!(names["db"], [v4("10.0.0.5"), v4("10.0.0.6")]);
        assert_eq!(names["db.internal"], [v4("10.0.0.5")]);
        assert!(!names.contains_key("name"));
    }

    #[test]
    fn a_listed_name_picks_by_preference_and_a_changed_file_is_read_again() {
        let dir = std::env::temp_dir().join(format!("slowburn-hosts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("hosts");
        std::fs::write(&path, "127.0.0.1 app\n::1 app\n").unwrap();
        let hosts = HostsFile::at(path.clone(), Duration::ZERO);
        let v6 = IpPreference {
            ipv6: true,
            fallback: false,
        };
        let choose = |host: &str, prefer| hosts.with(host, |ips| pick(ips.iter().copied(), prefer));
        assert_eq!(
            choose("APP.", IpPreference::default()),
            Some(Some(v4("127.0.0.1")))
        );
        assert_eq!(choose("app", v6), Some(Some(v4("::1"))));
        assert_eq!(choose("other", v6), None);
        // A different length is a change even within the same modification second.
        std::fs::write(&path, "127.0.0.2 app\n").unwrap();
        assert_eq!(
            choose("app", IpPreference::default()),
            Some(Some(v4("127.0.0.2")))
        );
        assert_eq!(choose("app", v6), Some(None));
        std::fs::remove_file(&path).unwrap();
        assert_eq!(choose("app", IpPreference::default()), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
