//! The `email:` notifier: a plain-text mail over SMTP (lettre).
//!
//! `smtp://host:port` speaks SMTP and, by default, requires STARTTLS before anything else
//! (`starttls: false` turns that off, for a local relay); `smtps://host:port` is TLS from the
//! first byte. Credentials are never sent over an unencrypted connection to another machine:
//! that is a config error. The subject is `[FIRING] <summary>` (the event, then the summary),
//! the body is the notification's details, and `X-Slowburn-Event` / `X-Slowburn-Dedup-Key`
//! headers let mail filters sort pages.
//!
//! The transport (and its connection pool, which runs a cleanup task) is created on the first
//! send, inside the runtime that sends, so building a notifier needs no runtime.

use std::fmt;
use std::sync::OnceLock;

use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransport, AsyncSmtpTransportBuilder};
use lettre::{AsyncTransport, Tokio1Executor};
use reqwest::Url;
use serde::Deserialize;

use super::{Notification, SendError, error_chain, secret_or_literal, spec_error};
use crate::basics::SpecError;
use crate::basics::units::Secret;
use crate::basics::yaml::Spanned;

/// `email:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp://host[:port]` (default port 587 with STARTTLS, 25 without) or
    /// `smtps://host[:port]` (default 465).
    pub smtp: Spanned<String>,
    /// The sender, `slowburn@example.com` or `Slowburn <slowburn@example.com>`.
    pub from: Spanned<String>,
    /// One or more recipients.
    pub to: Spanned<Vec<Spanned<String>>>,
    /// The login name (a literal or `env:`/`file:`); requires `password`.
    pub username: Option<Spanned<String>>,
    /// The password, `env:NAME` or `file:/path`; requires `username`.
    pub password: Option<Spanned<String>>,
    /// For `smtp://`: require STARTTLS (default true).
    pub starttls: Option<Spanned<bool>>,
}

/// A built email notifier.
pub struct Email {
    from: Mailbox,
    to: Vec<Mailbox>,
    builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    target: String,
    password: Option<Secret>,
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Email")
            .field("target", &self.target)
            .field("from", &self.from.to_string())
            .field(
                "to",
                &self.to.iter().map(Mailbox::to_string).collect::<Vec<_>>(),
            )
            .field("login", &self.password.is_some())
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Security {
    /// Plain SMTP, no TLS at all.
    None,
    /// SMTP upgraded with STARTTLS, which must succeed.
    StartTls,
    /// TLS from the first byte (`smtps://`).
    Wrapper,
}

impl Email {
    /// Validates a spec and builds the notifier, returning every error found.
    pub fn new(spec: Spanned<EmailSpec>) -> Result<Email, Vec<SpecError>> {
        let pos = spec.pos;
        let spec = spec.value;
        let mut errors = Vec::new();
        let starttls = spec.starttls.as_ref().map(|s| s.value);
        let server = match parse_smtp(&spec.smtp, starttls) {
            Ok(server) => Some(server),
            Err(m) => {
                errors.push(spec_error(spec.smtp.pos, "smtp", m));
                None
            }
        };
        if let (Some((_, _, Security::Wrapper)), Some(flag)) = (&server, &spec.starttls)
            && flag.value
        {
            errors.push(spec_error(
                flag.pos,
                "starttls",
                "smtps:// is TLS from the start; STARTTLS applies to smtp:// only",
            ));
        }
        let from = match spec.from.parse::<Mailbox>() {
            Ok(from) => Some(from),
            Err(e) => {
                errors.push(spec_error(
                    spec.from.pos,
                    "from",
                    format!("invalid address {:?}: {e}", spec.from.value),
                ));
                None
            }
        };
        let mut to = Vec::new();
        if spec.to.is_empty() {
            errors.push(spec_error(
                spec.to.pos,
                "to",
                "needs at least one recipient",
            ));
        }
        for (i, address) in spec.to.iter().enumerate() {
            match address.parse::<Mailbox>() {
                Ok(mailbox) => to.push(mailbox),
                Err(e) => errors.push(spec_error(
                    address.pos,
                    &format!("to[{i}]"),
                    format!("invalid address {:?}: {e}", address.value),
                )),
            }
        }
        let username = match &spec.username {
            None => None,
            Some(name) => match secret_or_literal(name) {
                Ok(name) => Some(name),
                Err(m) => {
                    errors.push(spec_error(name.pos, "username", m));
                    None
                }
            },
        };
        let password = match &spec.password {
            None => None,
            Some(reference) => match Secret::resolve(reference) {
                Ok(secret) => Some(secret),
                Err(m) => {
                    errors.push(spec_error(reference.pos, "password", m));
                    None
                }
            },
        };
        match (&spec.username, &spec.password) {
            (Some(_), None) => {
                errors.push(spec_error(pos, "password", "username needs a password"))
            }
            (None, Some(p)) => {
                errors.push(spec_error(p.pos, "username", "password needs a username"))
            }
            _ => {}
        }
        if let Some((host, _, Security::None)) = &server
            && spec.username.is_some()
            && !is_loopback(host)
        {
            errors.push(spec_error(
                spec.smtp.pos,
                "smtp",
                "the password would cross the network unencrypted: use starttls: true or smtps://",
            ));
        }
        let (Some((host, port, security)), Some(from)) = (server, from) else {
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone()).port(port);
        if security != Security::None {
            let params = TlsParameters::new(host.clone()).map_err(|e| {
                vec![spec_error(
                    spec.smtp.pos,
                    "smtp",
                    format!("cannot set up TLS: {}", error_chain(&e)),
                )]
            })?;
            builder = builder.tls(match security {
                Security::Wrapper => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let (Some(username), Some(password)) = (username, &password) {
            builder =
                builder.credentials(Credentials::new(username, password.expose().to_string()));
        }
        Ok(Email {
            from,
            to,
            builder,
            transport: OnceLock::new(),
            target: format!("{host}:{port}"),
            password,
        })
    }

    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// The message one send would deliver.
    pub fn message(&self, n: &Notification) -> Result<Message, SendError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(subject(n))
            .header(ContentType::TEXT_PLAIN);
        // A page to a person goes to their address (their `people:` contact) alone.
        match n
            .recipient
            .as_ref()
            .and_then(|r| r.to.parse::<Mailbox>().ok())
        {
            Some(person) => builder = builder.to(person),
            None => {
                for to in &self.to {
                    builder = builder.to(to.clone());
                }
            }
        }
        let mut message = builder
            .body(n.details.clone())
            .map_err(|e| SendError::permanent(format!("cannot build the message: {e}")))?;
        for (name, value) in [
            ("X-Slowburn-Event", n.event.as_str().to_string()),
            ("X-Slowburn-Dedup-Key", one_line(&n.dedup_key)),
        ] {
            if let Ok(name) = HeaderName::new_from_ascii(name.to_string()) {
                message
                    .headers_mut()
                    .insert_raw(HeaderValue::new(name, value));
            }
        }
        Ok(message)
    }

    pub async fn send(&self, n: &Notification) -> Result<(), SendError> {
        let message = self.message(n)?;
        let transport = self
            .transport
            .get_or_init(|| self.builder.clone().build::<Tokio1Executor>());
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| self.classify(&e))
    }

    /// 4xx replies and network failures are worth another attempt; 5xx replies (a refused
    /// login, an unknown recipient) and TLS failures are not.
    fn classify(&self, e: &lettre::transport::smtp::Error) -> SendError {
        let secrets: Vec<&str> = self.password.iter().map(Secret::expose).collect();
        let message = format!("{}: {}", self.target, error_chain(e));
        let error = if e.is_permanent() || e.is_tls() || e.is_client() {
            SendError::permanent(message)
        } else {
            SendError::retryable(message)
        };
        error.scrub(&secrets)
    }
}

/// `[EVENT] summary`, on one line.
pub fn subject(n: &Notification) -> String {
    one_line(&format!("[{}] {}", n.event.title(), n.summary))
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Host, port and security of an `smtp:`/`smtps:` URL.
fn parse_smtp(text: &str, starttls: Option<bool>) -> Result<(String, u16, Security), String> {
    let url = Url::parse(text.trim()).map_err(|e| {
        format!("invalid SMTP URL {text:?}: {e}; expected smtp://host:port or smtps://host:port")
    })?;
    let security = match url.scheme() {
        "smtp" if starttls.unwrap_or(true) => Security::StartTls,
        "smtp" => Security::None,
        "smtps" => Security::Wrapper,
        other => {
            return Err(format!(
                "invalid SMTP URL {text:?}: scheme must be smtp or smtps, not {other:?}"
            ));
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in username and password, not in the URL".into());
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() {
        return Err(format!(
            "invalid SMTP URL {text:?}: expected only a host and a port"
        ));
    }
    // An IPv6 host prints in brackets, which the connector does not want.
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if host.is_empty() {
        return Err(format!("invalid SMTP URL {text:?}: no host"));
    }
    let port = url.port().unwrap_or(match security {
        Security::None => 25,
        Security::StartTls => 587,
        Security::Wrapper => 465,
    });
    Ok((host, port, security))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl super::NotifierKind for Email {
    type Spec = EmailSpec;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<EmailSpec>, _ctx: &super::NotifyContext) -> Result<Self, Vec<SpecError>> {
        Email::new(spec)
    }

    fn send(&self, n: &Notification) -> impl Future<Output = Result<(), SendError>> + Send {
        Email::send(self, n)
    }

    fn target(&self) -> String {
        Email::target(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::tests_support::{entry, notification};
    use crate::notify::{Event, Notifier, NotifyContext};

    fn errors(yaml: &str) -> Vec<(String, usize, String)> {
        let ctx = NotifyContext::new().unwrap();
        Notifier::new(entry(yaml), &ctx)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.pos.line, e.message))
            .collect()
    }

    #[test]
    fn urls_pick_security_and_default_ports() {
        let cases = [
            (
                "smtp://mail.example.com",
                None,
                ("mail.example.com", 587, Security::StartTls),
            ),
            (
                "smtp://mail.example.com:2525",
                Some(false),
                ("mail.example.com", 2525, Security::None),
            ),
            (
                "smtp://10.0.0.1",
                Some(false),
                ("10.0.0.1", 25, Security::None),
            ),
            (
                "smtps://mail.example.com",
                None,
                ("mail.example.com", 465, Security::Wrapper),
            ),
            ("smtp://[::1]:25", Some(false), ("::1", 25, Security::None)),
        ];
        for (url, starttls, (host, port, security)) in cases {
            assert_eq!(
                parse_smtp(url, starttls).unwrap(),
                (host.to_string(), port, security),
                "{url}"
            );
        }
        for bad in [
            "mail.example.com:25",
            "http://mail.example.com",
            "smtp://u:p@host",
            "smtp://host/path",
        ] {
            assert!(parse_smtp(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_mistake_is_reported_with_its_position() {
        let found = errors(
            "name: mail\nemail:\n  smtp: smtps://mail.example.com\n  starttls: true\n  from: not an address\n  to: [oncall@example.com, '@nowhere']\n  username: bot\n",
        );
        let fields: Vec<&str> = found.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "email.starttls",
                "email.from",
                "email.to[1]",
                "email.password"
            ],
            "{found:?}"
        );
        assert_eq!(found[0].1, 4);
        assert_eq!(found[1].1, 5);
        assert_eq!(found[2].1, 6);
    }

    #[test]
    fn passwords_never_cross_the_network_in_clear() {
        let found = errors(
            "name: mail\nemail: {smtp: 'smtp://mail.example.com:25', starttls: false, from: a@example.com, to: [b@example.com], username: bot, password: 'file:/dev/null/none'}",
        );
        let fields: Vec<&str> = found.iter().map(|(f, _, _)| f.as_str()).collect();
        assert_eq!(fields, ["email.password", "email.smtp"], "{found:?}");
        assert!(found[1].2.contains("unencrypted"));
        let found = errors("name: mail\nemail: {smtp: 'smtp://h', from: a@example.com, to: []}");
        assert_eq!(found[0].0, "email.to");
    }

    #[test]
    fn the_message_has_subject_body_and_sorting_headers() {
        let ctx = NotifyContext::new().unwrap();
        let notifier = Notifier::new(
            entry("name: mail\nemail: {smtp: 'smtp://127.0.0.1:2525', starttls: false, from: 'Slowburn <sb@example.com>', to: [a@example.com, b@example.com]}"),
            &ctx,
        )
        .unwrap();
        let crate::notify::Kind::Email(email) = &notifier.kind else {
            panic!("not email");
        };
        let n = notification(Event::Resolve);
        assert_eq!(
            subject(&n),
            "[RESOLVED] checkout-api: status 503 not in [200]"
        );
        let text = String::from_utf8(email.message(&n).unwrap().formatted()).unwrap();
        assert!(
            text.contains("Subject: [RESOLVED] checkout-api: status 503 not in [200]"),
            "{text}"
        );
        assert!(text.contains("To: a@example.com, b@example.com"), "{text}");
        assert!(
            text.contains("X-Slowburn-Dedup-Key: checkout-api:status"),
            "{text}"
        );
        assert!(text.contains("ack: slowburn ack 42"), "{text}");
        assert_eq!(notifier.target(), "127.0.0.1:2525");
        // A page to a person goes to their address alone.
        let mut n = notification(Event::Trigger);
        n.recipient = Some(crate::oncall::Recipient {
            person: "carol".into(),
            notifier: "mail".into(),
            to: "carol@example.com".into(),
        });
        let text = String::from_utf8(email.message(&n).unwrap().formatted()).unwrap();
        assert!(text.contains("To: carol@example.com\r\n"), "{text}");
    }
}
