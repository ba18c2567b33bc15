//! The way in to the server: the DSN (resolved from its secret, parsed, described without the
//! user or password), the TLS mode it asks for, the connection with its session settings, the
//! deadline around every statement, and how a driver error becomes a [`Failure`] reason.
//!
//! The DSN is a secret: nothing here puts it, or the user and password in it, into a message;
//! only its host and database. This file knows no statistics view and makes no judgment about
//! what a query returns: that belongs to `sessions.rs`, `statements.rs` and `mod.rs`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use rustls::ClientConfig;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

use super::PostgresProbe;
use crate::basics::units::Secret;
use crate::basics::yaml::{Pos, Spanned};
use crate::probe::net::TlsSpec;
use crate::probe::{BuildContext, Failure, SpecError};

/// An open connection and what was learned when it was made.
pub(super) struct Conn {
    pub(super) client: Client,
    _driver: AbortOnDrop,
    pub(super) role: String,
    pub(super) database: String,
    /// `max_connections` minus the slots reserved for superusers (and, from PG 16, for roles
    /// with `pg_use_reserved_connections`).
    pub(super) available: i64,
    /// The schema of `pg_stat_statements` once found, and its version.
    pub(super) pgss: Option<(String, String)>,
}

impl PostgresProbe {
    /// Opens a connection within `connect_timeout` and sets the session up before anything
    /// else runs on it: read-only, under `statement_timeout`, named `slowburn`, so the probe
    /// cannot become the slow query it looks for.
    pub(super) async fn connect(&self) -> Result<Conn, Failure> {
        let timeout = Failure::Timeout {
            after: self.connect_timeout,
            phase: "connect",
        };
        let (client, driver) = match &self.tls {
            None => {
                let (client, connection) =
                    tokio::time::timeout(self.connect_timeout, self.config.connect(NoTls))
                        .await
                        .map_err(|_| timeout.clone())?
                        .map_err(|e| classify(&e, &self.target))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                let (client, connection) =
                    tokio::time::timeout(self.connect_timeout, self.config.connect(tls))
                        .await
                        .map_err(|_| timeout.clone())?
                        .map_err(|e| classify(&e, &self.target))?;
                (client, tokio::spawn(async move { drop(connection.await) }))
            }
        };
        let driver = AbortOnDrop(driver);
        let setup = format!(
            "SET statement_timeout = {}; SET default_transaction_read_only = on; \
             SET application_name = 'slowburn'",
            self.statement_timeout.as_millis().max(1)
        );
        self.bounded(client.batch_execute(&setup)).await?;
        let row = self
            .bounded(client.query_one(
                "/* slowburn */ SELECT current_user::text, current_database()::text, \
                 current_setting('max_connections')::int8 \
                 - current_setting('superuser_reserved_connections')::int8 \
                 - COALESCE(current_setting('reserved_connections', true), '0')::int8",
                &[],
            ))
            .await?;
        Ok(Conn {
            role: row.try_get(0).unwrap_or_default(),
            database: row.try_get(1).unwrap_or_default(),
            available: row.try_get::<_, i64>(2).unwrap_or(1).max(1),
            client,
            _driver: driver,
            pgss: None,
        })
    }

    /// Runs one statement with a client-side deadline a little past `statement_timeout`, for a
    /// server that stops answering altogether.
    pub(super) async fn bounded<T>(
        &self,
        statement: impl Future<Output = Result<T, tokio_postgres::Error>>,
    ) -> Result<T, Failure> {
        let limit = self.statement_timeout + Duration::from_secs(1);
        match tokio::time::timeout(limit, statement).await {
            Ok(result) => result.map_err(|e| classify(&e, &self.target)),
            Err(_) => Err(Failure::Timeout {
                after: limit,
                phase: "query",
            }),
        }
    }
}

/// The TLS client config a parsed DSN asks for, or `None` for `sslmode=disable`.
pub(crate) fn tls_mode(
    config: &tokio_postgres::Config,
    tls_wanted: &TlsWanted,
    tls_config: Option<&TlsSpec>,
    dsn_pos: Pos,
    ctx: &BuildContext,
) -> Result<Option<Arc<ClientConfig>>, SpecError> {
    if config.get_ssl_mode() == SslMode::Disable {
        return Ok(None);
    }
    let mut tls_spec = tls_config.cloned().unwrap_or_default();
    if tls_spec.ca_file.is_none() {
        tls_spec.ca_file = tls_wanted.root_cert.clone().map(|value| Spanned {
            pos: dsn_pos,
            value,
        });
    }
    // As libpq: `prefer` and `require` encrypt without checking the certificate,
    // `verify-ca`/`verify-full` (or a CA file) check it.
    if !tls_wanted.verify && tls_spec.ca_file.is_none() {
        tls_spec.insecure_skip_verify = true;
    }
    ctx.net.tls_config(&tls_spec, &[]).map(Some)
}

/// The DSN as written, or the secret it refers to.
pub(super) fn resolve_dsn(text: &str) -> Result<String, String> {
    if text.starts_with("env:") || text.starts_with("file:") {
        return Secret::resolve(text).map(|s| s.expose().to_string());
    }
    let (config, _) = parse_dsn(text)?;
    if config.get_password().is_some() {
        return Err(
            "this DSN holds a password: put it in the environment or a file and write \
             dsn: env:NAME or dsn: file:/path"
                .into(),
        );
    }
    Ok(text.to_string())
}

/// TLS wishes a DSN carries that tokio-postgres does not parse itself.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct TlsWanted {
    /// `sslmode=verify-ca` or `verify-full`.
    pub(super) verify: bool,
    /// `sslrootcert=PATH`.
    pub(super) root_cert: Option<String>,
}

/// Parses a libpq DSN (URL or `key=value` form). `sslmode=verify-ca|verify-full` and
/// `sslrootcert` are taken out and turned into certificate checking, which tokio-postgres
/// leaves to the TLS connector.
pub(crate) fn parse_dsn(text: &str) -> Result<(tokio_postgres::Config, TlsWanted), String> {
    let mut wanted = TlsWanted::default();
    let verify = Regex::new(r"sslmode\s*=\s*verify-(full|ca)").map_err(|e| e.to_string())?;
    let mut text = text.to_string();
    if verify.is_match(&text) {
        wanted.verify = true;
        text = verify.replace_all(&text, "sslmode=require").into_owned();
    }
    let root = Regex::new(r"(^|[\s?&])sslrootcert\s*=\s*([^&\s]+)").map_err(|e| e.to_string())?;
    if let Some(found) = root.captures(&text) {
        wanted.root_cert = found.get(2).map(|m| m.as_str().to_string());
        text = root.replace_all(&text, "$1").into_owned();
        text = text
            .replace("?&", "?")
            .trim_end_matches(['?', '&'])
            .to_string();
    }
    let config =
        tokio_postgres::Config::from_str(text.trim()).map_err(
            |e| match std::error::Error::source(&e) {
                Some(cause) => format!("invalid DSN: {cause}"),
                None => format!("invalid DSN: {e}"),
            },
        )?;
    if config.get_hosts().is_empty() {
        return Err("invalid DSN: it names no host (postgres://HOST/… or host=…)".into());
    }
    if config.get_user().is_none() {
        return Err("invalid DSN: it names no user (postgres://USER@HOST/… or user=…)".into());
    }
    Ok((config, wanted))
}

/// `postgres://host:port/database` for people; never the user or password.
pub(crate) fn describe(config: &tokio_postgres::Config) -> String {
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}:{port}", path.display()),
            }
        })
        .collect();
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default();
    format!("postgres://{}/{database}", hosts.join(","))
}

/// Turns a driver error into a failure with a specific, readable reason.
pub(super) fn classify(e: &tokio_postgres::Error, target: &str) -> Failure {
    if let Some(db) = e.as_db_error() {
        let message = db.message().to_string();
        let code = db.code();
        return if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            Failure::Auth(message)
        } else if *code == SqlState::INVALID_CATALOG_NAME {
            Failure::Database(message)
        } else if *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::ADMIN_SHUTDOWN
            || *code == SqlState::CRASH_SHUTDOWN
        {
            Failure::Connect(format!("{target}: {message}"))
        } else if *code == SqlState::QUERY_CANCELED {
            Failure::Query(format!("{message} (statement_timeout)"))
        } else {
            Failure::Query(message)
        };
    }
    if e.is_closed() {
        return Failure::Connect(format!("{target}: the server closed the connection"));
    }
    let mut cause = std::error::Error::source(e);
    let mut detail = None;
    while let Some(c) = cause {
        if c.downcast_ref::<rustls::Error>().is_some() {
            return Failure::Tls(format!("{target}: {c}"));
        }
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref()
                && inner.downcast_ref::<rustls::Error>().is_some()
            {
                return Failure::Tls(format!("{target}: {inner}"));
            }
            detail = Some(io.to_string());
        } else if detail.is_none() {
            detail = Some(c.to_string());
        }
        cause = c.source();
    }
    let text = e.to_string();
    let detail = detail.unwrap_or_default();
    if text.contains("TLS") {
        return Failure::Tls(format!("{target}: {text}: {detail}"));
    }
    if text.contains("authentication") {
        return Failure::Auth(format!("{target}: {detail}"));
    }
    if detail.is_empty() {
        Failure::Connect(format!("{target}: {text}"))
    } else {
        Failure::Connect(format!("{target}: {}", lower_first(&detail)))
    }
}

/// Aborts the connection's driver task when the connection is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lower_first(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dsns_parse_and_never_show_secrets() {
        let (config, tls) = parse_dsn(
            "postgres://app:pw@db.internal:6432/orders?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(describe(&config), "postgres://db.internal:6432/orders");
        assert_eq!(config.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            tls,
            TlsWanted {
                verify: true,
                root_cert: Some("/etc/ca.pem".into())
            }
        );
        let (config, tls) =
            parse_dsn("host=127.0.0.1 port=5433 user=app dbname=orders sslmode=disable").unwrap();
        assert_eq!(describe(&config), "postgres://127.0.0.1:5433/orders");
        assert_eq!(tls, TlsWanted::default());
        let (config, _) = parse_dsn("host=/run/postgresql user=app").unwrap();
        assert_eq!(describe(&config), "postgres:///run/postgresql:5432/app");

        let err = parse_dsn("postgres://app:s3cret@db:notaport/x").unwrap_err();
        assert!(!err.contains("s3cret"), "{err}");
        assert!(err.starts_with("invalid DSN"), "{err}");
        assert!(
            parse_dsn("user=app dbname=x")
                .unwrap_err()
                .contains("no host")
        );
        assert!(
            parse_dsn("host=db dbname=x")
                .unwrap_err()
                .contains("no user")
        );
        assert!(
            resolve_dsn("postgres://app:pw@db/x")
                .unwrap_err()
                .contains("holds a password")
        );
        assert!(resolve_dsn("host=db user=app").is_ok());
    }
}
