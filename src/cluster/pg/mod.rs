//! The coordination schema on the shared PostgreSQL and the statements replicas coordinate
//! with. PostgreSQL is the only coordinator: no gossip, no consensus of our own.
//!
//! - **Membership**: each replica upserts its row every heartbeat; a replica is live while
//!   its `seen_at` is within the membership timeout of the database's `now()`.
//! - **Alerts**: opening one is an `INSERT … ON CONFLICT DO NOTHING` on a unique index over
//!   the open alerts' dedup keys, so exactly one replica wins; the others read the winner's id.
//!   Its escalation steps are inserted with it, each with a due time and an idempotency key.
//! - **Steps**: due ones are claimed with `FOR UPDATE SKIP LOCKED` under a lease (a fencing
//!   number bumped on every claim); the claimer checks the fence right before it sends
//!   ([`Coordinator::begin_send`]) and completes with the same fence, so a replica paused past
//!   its lease can neither send late nor overwrite the record of the replica that took over.
//!   A claim of a step whose lease ran out while claimed is a re-send, and the row says so.
//! - **Results**: one row per (probe, location, slot): runs duplicated during a membership
//!   change collapse on that key.
//!
//! - **Shared state** ([`shared`]): API silences, on-call overrides and signal history, the
//!   PostgreSQL side of [`crate::store::Backend`]. Sample times are the probes' run times, data
//!   like the values, not leases.
//!
//! Every time compared here is the database's: replica clocks do not matter.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{Identity, Postgres};

mod members;
pub mod shared;
mod steps;

pub use self::members::{Member, RunResult, slot};
pub use self::steps::{Claim, Opened, PlannedStep, SharedAlert, idempotency_key};

/// Why a coordination call failed: the database could not be reached or refused a statement.
#[derive(Debug, thiserror::Error)]
#[error("postgres {target}: {message}")]
pub struct PgError {
    pub target: String,
    pub message: String,
}

/// The coordination schema, one migration per version; the version is kept in
/// `slowburn_schema`. A migration that has shipped is never edited, only followed.
const MIGRATIONS: &[&str] = &[
    "
CREATE TABLE slowburn_members (
    replica text PRIMARY KEY,
    location text NOT NULL,
    listen text NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    seen_at timestamptz NOT NULL DEFAULT now(),
    probes integer NOT NULL DEFAULT 0,
    lag_seconds double precision NOT NULL DEFAULT 0
);
CREATE TABLE slowburn_alerts (
    id bigserial PRIMARY KEY,
    dedup_key text NOT NULL,
    state text NOT NULL,
    opened_by text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    acked_by text,
    acked_at timestamptz,
    resolved_at timestamptz,
    body text NOT NULL
);
CREATE UNIQUE INDEX slowburn_alerts_open ON slowburn_alerts (dedup_key) WHERE resolved_at IS NULL;
CREATE TABLE slowburn_steps (
    alert_id bigint NOT NULL REFERENCES slowburn_alerts (id),
    event text NOT NULL,
    epoch integer NOT NULL,
    round integer NOT NULL,
    step integer NOT NULL,
    notifier text NOT NULL,
    idempotency_key text NOT NULL UNIQUE,
    due_at timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'due',
    claimed_by text,
    lease_until timestamptz,
    fence bigint NOT NULL DEFAULT 0,
    claims integer NOT NULL DEFAULT 0,
    resent boolean NOT NULL DEFAULT false,
    sending_at timestamptz,
    sent_at timestamptz,
    sent_by text,
    error text,
    PRIMARY KEY (alert_id, event, epoch, round, step, notifier)
);
CREATE INDEX slowburn_steps_due ON slowburn_steps (due_at) WHERE state IN ('due', 'claimed');
CREATE TABLE slowburn_results (
    probe text NOT NULL,
    location text NOT NULL,
    slot bigint NOT NULL,
    replica text NOT NULL,
    success boolean NOT NULL,
    reason text,
    at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (probe, location, slot)
);
CREATE TABLE slowburn_silences (id text PRIMARY KEY, body text NOT NULL);
",
    "
CREATE TABLE slowburn_overrides (
    id bigserial PRIMARY KEY,
    schedule text NOT NULL,
    person text NOT NULL,
    start_at double precision NOT NULL,
    end_at double precision NOT NULL,
    created_by text NOT NULL,
    created_at double precision NOT NULL
);
CREATE TABLE slowburn_samples (
    probe text COLLATE \"C\" NOT NULL,
    signal text COLLATE \"C\" NOT NULL,
    t double precision NOT NULL,
    v double precision NOT NULL,
    PRIMARY KEY (probe, signal, t)
);
CREATE INDEX slowburn_samples_age ON slowburn_samples (t);
",
];

/// Leases and membership, in seconds of the database's clock.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// How long a claimed step is its claimer's: past it, another replica may take it over.
    pub lease: Duration,
    /// A replica not seen for this long is not a member (its probes move).
    pub membership: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            lease: Duration::from_secs(30),
            membership: Duration::from_secs(10),
        }
    }
}

/// A replica's handle on the shared database: one connection, re-opened when it breaks.
pub struct Coordinator {
    pg: Postgres,
    pub me: Identity,
    pub timeouts: Timeouts,
    client: tokio::sync::Mutex<Option<Connection>>,
    /// Since when the database has been unreachable (unix seconds of this replica's clock,
    /// used only for how long this replica has been cut off), and the latest error.
    lost: Mutex<Option<(f64, String)>>,
}

struct Connection {
    client: Client,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Coordinator {
    /// Connects and brings the schema up to date (the first replica to arrive creates it;
    /// an advisory lock keeps two from racing).
    pub async fn connect(
        pg: Postgres,
        me: Identity,
        timeouts: Timeouts,
    ) -> Result<Coordinator, PgError> {
        let coordinator = Coordinator {
            pg,
            me,
            timeouts,
            client: tokio::sync::Mutex::new(None),
            lost: Mutex::new(None),
        };
        coordinator.migrate().await?;
        Ok(coordinator)
    }

    /// `postgres://host:port/database`.
    pub fn target(&self) -> &str {
        self.pg.target()
    }

    /// Since when (unix seconds) and why the database has been unreachable, if it is.
    pub fn lost(&self) -> Option<(f64, String)> {
        self.lost.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    async fn migrate(&self) -> Result<(), PgError> {
        let mut guard = self.connection().await?;
        let result = async {
            let client = &mut guard.as_mut().expect("connected").client;
            let tx = client.transaction().await?;
            tx.execute("SELECT pg_advisory_xact_lock(7320000020)", &[])
                .await?;
            tx.batch_execute("CREATE TABLE IF NOT EXISTS slowburn_schema (version integer NOT NULL); INSERT INTO slowburn_schema SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM slowburn_schema)").await?;
            let found: i32 = tx
                .query_one("SELECT version FROM slowburn_schema", &[])
                .await?
                .get(0);
            let known = MIGRATIONS.len() as i32;
            if found > known {
                return Ok(Err(format!(
                    "the shared schema is version {found}; this slowburn knows up to {known}: upgrade it"
                )));
            }
            for migration in &MIGRATIONS[found as usize..] {
                tx.batch_execute(migration).await?;
            }
            tx.execute("UPDATE slowburn_schema SET version = $1", &[&known])
                .await?;
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(Ok(()))
        }
        .await;
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(self.error(message)),
            Err(e) => {
                *guard = None;
                Err(self.failed(&e))
            }
        }
    }

    async fn query(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, PgError> {
        let mut guard = self.connection().await?;
        let result = guard
            .as_ref()
            .expect("connected")
            .client
            .query(statement, params)
            .await;
        self.settle(&mut guard, result)
    }

    async fn execute(
        &self,
        statement: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, PgError> {
        let mut guard = self.connection().await?;
        let result = guard
            .as_ref()
            .expect("connected")
            .client
            .execute(statement, params)
            .await;
        self.settle(&mut guard, result)
    }

    /// The open connection, or a new one; an error marks the database lost.
    async fn connection(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Connection>>, PgError> {
        let mut guard = self.client.lock().await;
        if guard.as_ref().is_some_and(|c| c.client.is_closed()) {
            *guard = None;
        }
        if guard.is_none() {
            let connected = match &self.pg.tls {
                None => self.pg.config.connect(NoTls).await.map(|(client, conn)| {
                    let driver = tokio::spawn(async move { drop(conn.await) });
                    Connection { client, driver }
                }),
                Some(tls) => {
                    let tls = tokio_postgres_rustls::MakeRustlsConnect::new((**tls).clone());
                    self.pg.config.connect(tls).await.map(|(client, conn)| {
                        let driver = tokio::spawn(async move { drop(conn.await) });
                        Connection { client, driver }
                    })
                }
            };
            match connected {
                Ok(c) => {
                    // Statements are short; one that hangs must not hold a lease forever.
                    let setup = c
                        .client
                        .batch_execute("SET statement_timeout = 5000; SET lock_timeout = 2000")
                        .await;
                    if let Err(e) = setup {
                        return Err(self.failed(&e));
                    }
                    *guard = Some(c);
                }
                Err(e) => return Err(self.failed(&e)),
            }
        }
        Ok(guard)
    }

    /// Clears the lost mark after a success; drops the connection after a failure.
    fn settle<T>(
        &self,
        guard: &mut tokio::sync::MutexGuard<'_, Option<Connection>>,
        result: Result<T, tokio_postgres::Error>,
    ) -> Result<T, PgError> {
        match result {
            Ok(value) => {
                *self.lost.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(value)
            }
            Err(e) => {
                if e.as_db_error().is_none() {
                    **guard = None;
                }
                Err(self.failed(&e))
            }
        }
    }

    fn failed(&self, e: &tokio_postgres::Error) -> PgError {
        let message = match e.as_db_error() {
            Some(db) => db.message().to_string(),
            None => match std::error::Error::source(e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            },
        };
        if e.as_db_error().is_none() {
            let mut lost = self.lost.lock().unwrap_or_else(|e| e.into_inner());
            let since = lost.as_ref().map_or_else(unix_now, |(t, _)| *t);
            *lost = Some((since, message.clone()));
        }
        self.error(message)
    }

    pub(crate) fn error(&self, message: String) -> PgError {
        PgError {
            target: self.pg.target().to_string(),
            message,
        }
    }
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
