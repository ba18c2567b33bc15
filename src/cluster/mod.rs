//! Beyond one machine: replicas that share one PostgreSQL as their only coordinator.
//!
//! - [`Postgres`] is `storage: postgres:` validated: the parsed DSN and its TLS settings. The
//!   DSN is a secret; only [`Postgres::target`] (host, port, database) is ever shown.
//! - [`pg`] is the coordination schema and its statements: membership rows heartbeated by each
//!   replica, alerts opened by an insert one replica wins, escalation steps claimed with
//!   `FOR UPDATE SKIP LOCKED` under a lease and completed with a fencing check. Every lease
//!   is compared with the database's `now()`, so replica clocks do not matter.
//! - [`rendezvous`] says which live replica of a location runs a probe, [`quorum`] when the
//!   results of several locations open an alert. Both are pure.
//!
//! This module knows nothing of probes, notifiers or HTTP: it is handed names, keys and
//! times, and hands back who owns what and which step to send.

use std::sync::Arc;

use crate::basics::yaml::Pos;
use crate::probe::BuildContext;
use crate::probe::postgres::dsn;

pub mod daemon;
pub mod pg;
pub mod quorum;
pub mod rendezvous;
pub mod report;
pub mod shard;

/// Who this process is in the cluster: `--replica` and `--location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub replica: String,
    pub location: String,
}

impl Identity {
    /// `--replica` or the host name plus the listen port; `--location` or `default`.
    pub fn new(replica: Option<String>, location: Option<String>, port: u16) -> Identity {
        let replica = replica.unwrap_or_else(|| format!("{}:{port}", host_name()));
        Identity {
            replica,
            location: location.unwrap_or_else(|| DEFAULT_LOCATION.to_string()),
        }
    }
}

/// The location of a replica started without `--location`.
pub const DEFAULT_LOCATION: &str = "default";

/// The kernel's host name (what `hostname` prints), or `localhost`.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// `storage: postgres:`, validated: how to reach the shared database.
#[derive(Clone)]
pub struct Postgres {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    target: String,
    /// `lease` and `membership_timeout`.
    pub timeouts: pg::Timeouts,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: only the target is shown.
        f.debug_struct("Postgres")
            .field("target", &self.target)
            .finish()
    }
}

impl Postgres {
    /// Parses a DSN (already read from its secret); errors never repeat the DSN.
    pub fn new(dsn_text: &str, pos: Pos, ctx: &BuildContext) -> Result<Postgres, String> {
        let (mut config, wanted) = dsn::parse_dsn(dsn_text)?;
        let tls =
            dsn::tls_mode(&config, &wanted, None, pos, ctx).map_err(|e| e.message.to_string())?;
        config.application_name("slowburn-cluster");
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(5));
        }
        Ok(Postgres {
            target: dsn::describe(&config),
            config,
            tls,
            timeouts: pg::Timeouts::default(),
        })
    }

    /// `postgres://host:port/database`, without user or password.
    pub fn target(&self) -> &str {
        &self.target
    }
}
