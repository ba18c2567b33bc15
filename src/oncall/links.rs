//! Signed one-click links (`server.external_url`): a notification carries a link to
//! acknowledge and one to resolve its alert. Each is an HMAC-SHA256 over the alert, the
//! action, the expiry, a nonce and who it was sent to, so it cannot be altered, stops working
//! at its expiry, and (the server records the nonce) works once. Opening one (GET) shows a
//! confirmation page; only the page's POST acts, so mail filters that follow links change
//! nothing. This file signs and checks; it reads no clock (time is passed in) and stores
//! nothing.

use ring::hmac;

/// How long a link works after the notification that carries it.
pub const LINK_TTL: f64 = 24.0 * 3600.0;

/// What a link does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Ack,
    Resolve,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Ack => "ack",
            Action::Resolve => "resolve",
        }
    }

    fn parse(text: &str) -> Option<Action> {
        match text {
            "ack" => Some(Action::Ack),
            "resolve" => Some(Action::Resolve),
            _ => None,
        }
    }
}

/// A link that checked out: what to do to which alert, on whose behalf.
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub alert_id: u64,
    pub action: Action,
    pub expires: u64,
    pub nonce: String,
    /// The person (or notifier) the link was sent to: who acts when it is used.
    pub by: String,
}

/// Why a link does nothing.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinkError {
    #[error("this link is not one slowburn made")]
    Malformed,
    #[error("this link's signature does not match: it was altered")]
    Tampered,
    #[error("this link expired")]
    Expired,
}

/// The links of one notification.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Links {
    pub ack: String,
    pub resolve: String,
}

/// Signs and checks links with one key, for one external address.
pub struct Signer {
    key: hmac::Key,
    base: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret: never shown.
        f.debug_struct("Signer").field("base", &self.base).finish()
    }
}

impl Signer {
    /// `base` is `server.external_url` (its trailing `/` dropped).
    pub fn new(key: &[u8], base: &str) -> Signer {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            base: base.trim_end_matches('/').to_string(),
        }
    }

    /// Both links of a notification sent at `now` to `by`, each with its own `nonce` prefix.
    pub fn links(&self, alert_id: u64, by: &str, nonce: &str, now: f64) -> Links {
        let expires = (now + LINK_TTL).max(0.0) as u64;
        let make = |action: Action| {
            let nonce = format!("{nonce}{}", &action.as_str()[..1]);
            self.link(alert_id, action, expires, &nonce, by)
        };
        Links {
            ack: make(Action::Ack),
            resolve: make(Action::Resolve),
        }
    }

    /// One link: `{base}/links/{alert}/{action}/{expires}/{nonce}/{by, hex}/{signature}`.
    pub fn link(
        &self,
        alert_id: u64,
        action: Action,
        expires: u64,
        nonce: &str,
        by: &str,
    ) -> String {
        let by = hex(by.as_bytes());
        let payload = payload(alert_id, action, expires, nonce, &by);
        let signature = hex(hmac::sign(&self.key, payload.as_bytes()).as_ref());
        format!(
            "{}/links/{alert_id}/{}/{expires}/{nonce}/{by}/{signature}",
            self.base,
            action.as_str()
        )
    }

    /// Checks the path after `/links/` at `now`.
    pub fn check(&self, path: &str, now: f64) -> Result<Link, LinkError> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let [alert, action, expires, nonce, by, signature] = parts[..] else {
            return Err(LinkError::Malformed);
        };
        let alert_id: u64 = alert.parse().map_err(|_| LinkError::Malformed)?;
        let action = Action::parse(action).ok_or(LinkError::Malformed)?;
        let expires: u64 = expires.parse().map_err(|_| LinkError::Malformed)?;
        let signature = unhex(signature).ok_or(LinkError::Malformed)?;
        let payload = payload(alert_id, action, expires, nonce, by);
        hmac::verify(&self.key, payload.as_bytes(), &signature).map_err(|_| LinkError::Tampered)?;
        if now >= expires as f64 {
            return Err(LinkError::Expired);
        }
        let by = unhex(by)
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or(LinkError::Malformed)?;
        Ok(Link {
            alert_id,
            action,
            expires,
            nonce: nonce.to_string(),
            by,
        })
    }
}

/// The signer `server:` asks for: with `external_url`, keyed by `link_key` or else by a key
/// generated once and kept in the store.
pub fn signer(server: &crate::config::ServerConfig, store: &crate::store::Store) -> Option<Signer> {
    let base = server.external_url.as_deref()?;
    let key = match &server.link_key {
        Some(secret) => secret.expose().as_bytes().to_vec(),
        None => match store.key("links", generate_key) {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %e, "cannot keep a link key in the store: pages carry no links");
                return None;
            }
        },
    };
    Some(Signer::new(&key, base))
}

/// A fresh random nonce (16 bytes, hex).
pub fn nonce() -> String {
    let mut bytes = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    hex(&bytes)
}

/// A fresh random signing key (32 bytes), for a store that has none.
pub fn generate_key() -> Vec<u8> {
    let mut bytes = vec![0u8; 32];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes);
    bytes
}

fn payload(alert_id: u64, action: Action, expires: u64, nonce: &str, by_hex: &str) -> String {
    format!(
        "slowburn-link:{alert_id}:{}:{expires}:{nonce}:{by_hex}",
        action.as_str()
    )
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_checks_until_it_expires_and_not_once_altered() {
        let signer = Signer::new(b"sekrit-key", "https://slowburn.example.com/");
        let links = signer.links(7, "alice", "n0", 1000.0);
        let path = links
            .ack
            .strip_prefix("https://slowburn.example.com/links/")
            .unwrap();
        let link = signer.check(path, 1000.0).unwrap();
        assert_eq!(
            (link.alert_id, link.action, link.by.as_str()),
            (7, Action::Ack, "alice")
        );
        assert_eq!(
            signer.check(path, 1000.0 + LINK_TTL),
            Err(LinkError::Expired)
        );
        let other = path.replacen("7/ack", "8/ack", 1);
        assert_eq!(signer.check(&other, 1000.0), Err(LinkError::Tampered));
        let as_resolve = path.replacen("/ack/", "/resolve/", 1);
        assert_eq!(signer.check(&as_resolve, 1000.0), Err(LinkError::Tampered));
        let another_key = Signer::new(b"other", "https://x");
        assert_eq!(another_key.check(path, 1000.0), Err(LinkError::Tampered));
        assert_eq!(signer.check("7/ack", 1000.0), Err(LinkError::Malformed));
        assert_ne!(links.ack, links.resolve);
        assert!(
            !format!("{signer:?}").contains("sekrit"),
            "the key is never shown"
        );
    }
}
