//! Where a request may go: the probe's URL as validated (http or https, a host, a numeric
//! port, no credentials in it), a `Location` resolved against the URL that sent it, and the
//! origin (scheme, host, port) that decides whether credential headers are sent.
//!
//! This file only answers questions about URLs and headers; it opens no connection and makes
//! no judgment about a response. The redirect loop itself, which counts and times the hops,
//! stays in `mod.rs`'s `run`.

use http::{HeaderName, Uri};

/// Whether a header may cross a redirect to another origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Credential {
    No,
    Yes,
}

/// Headers that carry credentials whatever their value, as curl and Go's client treat them.
pub(super) fn is_credential_header(name: &HeaderName) -> bool {
    name == http::header::AUTHORIZATION
        || name == http::header::PROXY_AUTHORIZATION
        || name == http::header::COOKIE
}

/// Scheme, host (lower case) and port: credentials go to the configured origin and no other,
/// so a redirect from https to http on the same host drops them too (they would travel in
/// cleartext).
pub(super) fn origin(url: &Uri) -> Origin<'_> {
    let https = url.scheme() == Some(&http::uri::Scheme::HTTPS);
    Origin {
        scheme: url.scheme_str().unwrap_or("http"),
        host: url.host().unwrap_or_default(),
        port: url.port_u16().unwrap_or(if https { 443 } else { 80 }),
    }
}

/// A URL's scheme, host and port, compared without case and without a copy.
#[derive(Clone, Copy, Debug)]
pub(super) struct Origin<'a> {
    scheme: &'a str,
    host: &'a str,
    port: u16,
}

impl Origin<'_> {
    pub(super) fn same_host(&self, other: &Origin<'_>) -> bool {
        self.host.eq_ignore_ascii_case(other.host)
    }
}

impl PartialEq for Origin<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.scheme.eq_ignore_ascii_case(other.scheme)
            && self.same_host(other)
            && self.port == other.port
    }
}

/// A probe URL or a redirect target, refused unless the probe could go there and show it.
pub(super) fn parse_url(text: &str) -> Result<Uri, String> {
    if !text.contains("://") {
        return Err(format!(
            "invalid URL {text:?}: it needs http:// or https://"
        ));
    }
    let uri: Uri = text
        .parse()
        .map_err(|e| format!("invalid URL {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        Some(other) => {
            return Err(format!(
                "invalid URL {text:?}: scheme {other:?} is not http or https"
            ));
        }
        None => {
            return Err(format!(
                "invalid URL {text:?}: it needs http:// or https://"
            ));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("invalid URL {text:?}: no host"));
    }
    // A password here would be shown wherever the target is: `probe` output, the API, the
    // status page. It belongs in basic_auth, as a secret.
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!(
            "invalid URL {:?}: credentials in the URL would be shown as the target; use basic_auth with a secret password",
            redact_userinfo(text)
        ));
    }
    // `http::Uri` keeps a port it cannot read as a number, and the probe would then go to the
    // scheme's default port instead.
    // (`port()` answers None for it, as for no port at all.)
    let authority = uri.authority().map_or("", |a| a.as_str());
    if let Some((_, port)) = authority.rsplit_once(':')
        && !port.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!(
            "invalid URL {text:?}: port {port} is not between 0 and 65535"
        ));
    }
    Ok(uri)
}

/// Resolves a `Location` header against the URL that returned it (RFC 3986 §5.2, the cases
/// servers send: absolute, scheme-relative, absolute-path and relative-path references).
pub(super) fn resolve_location(base: &Uri, location: &str) -> Result<Uri, String> {
    // A reference that starts with `scheme:` is absolute (RFC 3986 §4.3), whether or not `//`
    // follows: `file:/etc/passwd` or `javascript:x` must be refused, not taken as a path.
    if let Some((scheme, _)) = location.split_once(':')
        && !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
            return Err(format!("scheme {scheme:?} is not http or https"));
        }
        return parse_url(location);
    }
    if location.contains("://") {
        return parse_url(location);
    }
    let scheme = base.scheme_str().unwrap_or("http");
    if let Some(rest) = location.strip_prefix("//") {
        return parse_url(&format!("{scheme}://{rest}"));
    }
    let authority = base.authority().map_or("", |a| a.as_str());
    let path = if location.starts_with('/') {
        location.to_string()
    } else if let Some(query) = location.strip_prefix('?') {
        format!("{}?{query}", base.path())
    } else {
        let dir = base.path().rsplit_once('/').map_or("", |(dir, _)| dir);
        format!("{dir}/{location}")
    };
    parse_url(&format!("{scheme}://{authority}{path}"))
}

/// The URL with its userinfo replaced by `***`, for the error that refuses it.
fn redact_userinfo(text: &str) -> String {
    match text.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..end].rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{}", &rest[end..]),
                None => text.to_string(),
            }
        }
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_base() {
        let base: Uri = "https://a.test:8443/x/y?q=1".parse().unwrap();
        let cases = [
            ("http://b.test/z", "http://b.test/z"),
            ("//c.test/w", "https://c.test/w"),
            ("/root", "https://a.test:8443/root"),
            ("sib", "https://a.test:8443/x/sib"),
            ("?p=2", "https://a.test:8443/x/y?p=2"),
        ];
        for (location, want) in cases {
            assert_eq!(
                resolve_location(&base, location).unwrap().to_string(),
                want,
                "{location}"
            );
        }
    }

    #[test]
    fn locations_with_other_schemes_are_refused() {
        let base: Uri = "https://a.test/x".parse().unwrap();
        for location in [
            "file:/etc/passwd",
            "ftp://b.test/",
            "javascript:alert(1)",
            "gopher://x",
        ] {
            let err = resolve_location(&base, location).unwrap_err();
            assert!(err.contains("is not http or https"), "{location}: {err}");
        }
        // A colon after the first slash is part of a path, not a scheme.
        assert_eq!(
            resolve_location(&base, "/a:b").unwrap().to_string(),
            "https://a.test/a:b"
        );
    }

    #[test]
    fn origins_differ_by_scheme_host_or_port() {
        let same = |a: &str, b: &str| {
            let (a, b): (Uri, Uri) = (a.parse().unwrap(), b.parse().unwrap());
            origin(&a) == origin(&b)
        };
        assert!(same("https://A.test/x", "https://a.test:443/y"));
        assert!(same("HTTP://a.test/", "http://a.test:80/"));
        assert!(!same("https://a.test/", "http://a.test/"));
        assert!(!same("https://a.test/", "https://b.test/"));
        assert!(!same("http://a.test/", "http://a.test:8080/"));
    }

    #[test]
    fn urls_must_be_http() {
        assert!(parse_url("https://x.test/h").is_ok());
        assert!(parse_url("ftp://x.test").unwrap_err().contains("scheme"));
        assert!(parse_url("x.test/h").unwrap_err().contains("http://"));
        assert!(parse_url("http:// bad").is_err());
        let err = parse_url("http://x.test:99999/").unwrap_err();
        assert!(
            err.contains("port 99999 is not between 0 and 65535"),
            "{err}"
        );
        let err = parse_url("https://bob:hunter2@x.test/a").unwrap_err();
        assert!(err.contains("credentials in the URL"), "{err}");
        assert!(
            err.contains("https://***@x.test/a") && !err.contains("hunter2"),
            "{err}"
        );
    }
}
