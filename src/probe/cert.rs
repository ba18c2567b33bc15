//! What a TLS peer's leaf certificate says of itself, as blackbox_exporter's
//! `probe_ssl_last_chain_info` reports it: the SHA-256 fingerprint of its DER, its subject and
//! issuer written as Go's `pkix.Name.String()` writes them (`CN=host,O=Org`, last RDN first),
//! and its DNS subject alternative names joined by commas.
//!
//! A small DER walk, like `net::not_after`, rather than an X.509 crate: only names and one
//! extension are read, and nothing here decides whether the certificate is trusted.

use super::net::{der_element, tbs_fields};

/// The leaf certificate a handshake presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Certificate {
    pub fingerprint_sha256: String,
    pub subject: String,
    pub issuer: String,
    pub subject_alternative: String,
}

impl Certificate {
    /// Reads a DER certificate; `None` when it is not one.
    pub fn from_der(der: &[u8]) -> Option<Certificate> {
        let mut rest = tbs_fields(der)?;
        rest = der_element(rest)?.2; // serial
        rest = der_element(rest)?.2; // signature algorithm
        let (_, issuer, after) = der_element(rest)?;
        rest = der_element(after)?.2; // validity
        let (_, subject, mut rest) = der_element(rest)?;
        rest = der_element(rest)?.2; // subject public key info
        let mut names = Vec::new();
        while let Some((tag, body, after)) = der_element(rest) {
            if tag == 0xA3 {
                names = dns_names(body).unwrap_or_default();
            }
            rest = after;
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        Some(Certificate {
            fingerprint_sha256: digest.as_ref().iter().map(|b| format!("{b:02x}")).collect(),
            subject: name_text(subject)?,
            issuer: name_text(issuer)?,
            subject_alternative: names.join(","),
        })
    }
}

/// A Name as Go's `pkix.Name.String()` writes it: the attributes it knows in its fixed order
/// (serial number, CN, OU, O, postal code, street, L, ST, C; several values of one joined by
/// `+`), then the others, last first, as `OID=#hex` of their DER.
fn name_text(mut name: &[u8]) -> Option<String> {
    let mut known: Vec<(u8, String)> = Vec::new();
    let mut others: Vec<String> = Vec::new();
    while !name.is_empty() {
        let (_, set, rest) = der_element(name)?;
        let mut attributes = set;
        while !attributes.is_empty() {
            let (_, pair, after) = der_element(attributes)?;
            let (_, oid, value) = der_element(pair)?;
            match oid {
                [0x55, 0x04, kind @ (3 | 5 | 6 | 7 | 8 | 9 | 10 | 11 | 17)] => {
                    let (_, text, _) = der_element(value)?;
                    known.push((*kind, String::from_utf8_lossy(text).into_owned()));
                }
                _ => {
                    let hex: String = value.iter().map(|b| format!("{b:02x}")).collect();
                    others.push(format!("{}=#{hex}", dotted(oid)));
                }
            }
            attributes = after;
        }
        name = rest;
    }
    let mut rdns = Vec::new();
    for (kind, label) in [
        (5, "SERIALNUMBER"),
        (3, "CN"),
        (11, "OU"),
        (10, "O"),
        (17, "POSTALCODE"),
        (9, "STREET"),
        (7, "L"),
        (8, "ST"),
        (6, "C"),
    ] {
        let values: Vec<&str> = known
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, v)| v.as_str())
            .collect();
        // Go keeps one common name and one serial number: the last one read.
        let values = match (kind, values.last()) {
            (3 | 5, Some(last)) => vec![*last],
            _ => values,
        };
        if !values.is_empty() {
            let parts: Vec<String> = values
                .iter()
                .map(|v| format!("{label}={}", escape(v)))
                .collect();
            rdns.push(parts.join("+"));
        }
    }
    others.reverse();
    rdns.extend(others);
    Some(rdns.join(","))
}

/// An OID's DER contents in dotted form (`1.2.840.113549.1.9.1`).
fn dotted(oid: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value = 0u64;
    for (i, byte) in oid.iter().enumerate() {
        value = (value << 7) | u64::from(byte & 0x7f);
        if byte & 0x80 == 0 {
            if arcs.is_empty() && i < oid.len() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(".")
}

/// RFC 2253 escaping as Go applies it to attribute values.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let last = text.chars().count().saturating_sub(1);
    for (i, c) in text.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && matches!(c, ' ' | '#'))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The DNS names of the subjectAltName extension in an `[3] Extensions` body.
fn dns_names(extensions: &[u8]) -> Option<Vec<String>> {
    let (_, mut list, _) = der_element(extensions)?;
    while !list.is_empty() {
        let (_, extension, after) = der_element(list)?;
        let (_, oid, mut rest) = der_element(extension)?;
        if oid == [0x55, 0x1D, 0x11] {
            let (tag, _, after_critical) = der_element(rest)?;
            if tag == 0x01 {
                rest = after_critical;
            }
            let (_, octets, _) = der_element(rest)?;
            let (_, mut names, _) = der_element(octets)?;
            let mut out = Vec::new();
            while !names.is_empty() {
                let (tag, name, after) = der_element(names)?;
                if tag == 0x82 {
                    out.push(String::from_utf8_lossy(name).into_owned());
                }
                names = after;
            }
            return Some(out);
        }
        list = after;
    }
    Some(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_certificate_reads_as_go_writes_it() {
        let mut params =
            rcgen::CertificateParams::new(vec!["a.test".into(), "b.test".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Shop, Inc");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "api.test");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let info = Certificate::from_der(cert.der()).unwrap();
        assert_eq!(info.subject, "CN=api.test,O=Shop\\, Inc");
        assert_eq!(info.issuer, info.subject, "self-signed");
        assert_eq!(info.subject_alternative, "a.test,b.test");
        assert_eq!(info.fingerprint_sha256.len(), 64);
        assert_eq!(Certificate::from_der(b"\x30\x03\x02\x01"), None);
    }

    #[test]
    fn unknown_attributes_are_dotted_oids() {
        assert_eq!(
            dotted(&[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01]),
            "1.2.840.113549.1.9.1"
        );
    }
}
