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
//! Every time compared here is the database's: replica clocks do not matter.

use std::sync::Mutex;
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::{Identity, Postgres};

/// Why a coordination call failed: the database could not be reached or refused a statement.
#[derive(Debug, thiserror::Error)]
#[error("postgres {target}: {message}")]
pub struct PgError {
    pub target: String,
    pub message: String,
}

/// The coordination schema, one migration per version; the version is kept in
/// `slowburn_schema`. A migration that has shipped is never edited, only followed.
const MIGRATIONS: &[&str] = &["
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
"];

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

/// One step of an alert's escalation, as planned when the alert opens.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub event: String,
    pub epoch: u32,
    pub round: u32,
    pub step: u32,
    pub notifier: String,
    /// Seconds after the alert opened (by the database's clock).
    pub after: f64,
}

/// What opening an alert found: the shared id, and whether this replica's insert won.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opened {
    pub id: i64,
    pub won: bool,
}

/// A step this replica holds under a lease.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub alert_id: i64,
    pub event: String,
    pub epoch: i32,
    pub round: i32,
    pub step: i32,
    pub notifier: String,
    pub idempotency_key: String,
    pub fence: i64,
    /// Another claim of this step ran out of lease before it completed: this is a re-send.
    pub resend: bool,
    /// The alert as it was written when it opened (JSON text).
    pub body: String,
}

/// One run of a probe, for [`Coordinator::record_results`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub probe: String,
    pub slot: i64,
    pub success: bool,
    /// The failure's reason label.
    pub reason: Option<String>,
}

/// An alert row of the shared database.
#[derive(Debug, Clone, PartialEq)]
pub struct SharedAlert {
    pub id: i64,
    pub dedup_key: String,
    /// `firing`, `acknowledged` or `resolved`.
    pub state: String,
    pub body: String,
    pub acked_by: Option<String>,
}

/// A member row as `slowburn cluster` shows it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Member {
    pub replica: String,
    pub location: String,
    pub listen: String,
    /// Seconds since its latest heartbeat.
    pub seen_seconds_ago: f64,
    pub probes: i32,
    pub lag_seconds: f64,
    pub live: bool,
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

    /// Writes this replica's membership row: it is live for the membership timeout.
    pub async fn heartbeat(&self, listen: &str, probes: i32, lag: f64) -> Result<(), PgError> {
        self.execute(
            "INSERT INTO slowburn_members (replica, location, listen, probes, lag_seconds)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (replica) DO UPDATE SET location = excluded.location,
                listen = excluded.listen, seen_at = now(), probes = excluded.probes,
                lag_seconds = excluded.lag_seconds",
            &[&self.me.replica, &self.me.location, &listen, &probes, &lag],
        )
        .await
        .map(drop)
    }

    /// Removes this replica's row (on a clean shutdown): its probes move at once.
    pub async fn leave(&self) -> Result<(), PgError> {
        self.execute(
            "DELETE FROM slowburn_members WHERE replica = $1",
            &[&self.me.replica],
        )
        .await
        .map(drop)
    }

    /// Every member row, live or not, by location then name.
    pub async fn members(&self) -> Result<Vec<Member>, PgError> {
        let membership = self.timeouts.membership.as_secs_f64();
        let rows = self
            .query(
                "SELECT replica, location, listen,
                    extract(epoch FROM now() - seen_at)::float8, probes, lag_seconds
                 FROM slowburn_members ORDER BY location, replica",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let ago: f64 = r.get(3);
                Member {
                    replica: r.get(0),
                    location: r.get(1),
                    listen: r.get(2),
                    seen_seconds_ago: ago,
                    probes: r.get(4),
                    lag_seconds: r.get(5),
                    live: ago <= membership,
                }
            })
            .collect())
    }

    /// The live replicas of this replica's location, sorted: the input of rendezvous hashing.
    pub async fn live_here(&self) -> Result<Vec<String>, PgError> {
        let membership = self.timeouts.membership.as_secs_f64();
        let rows = self
            .query(
                "SELECT replica FROM slowburn_members
                 WHERE location = $1 AND seen_at > now() - $2 * interval '1 second'
                 ORDER BY replica",
                &[&self.me.location, &membership],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Opens an alert, or finds the open one with the same dedup key. The winner's insert
    /// also plans its steps; a loser plans nothing.
    pub async fn open(
        &self,
        dedup_key: &str,
        body: &str,
        steps: &[PlannedStep],
    ) -> Result<Opened, PgError> {
        let mut guard = self.connection().await?;
        let result = async {
            let client = &mut guard.as_mut().expect("connected").client;
            let tx = client.transaction().await?;
            let won = tx
                .query_opt(
                    "INSERT INTO slowburn_alerts (dedup_key, state, opened_by, body)
                     VALUES ($1, 'firing', $2, $3)
                     ON CONFLICT (dedup_key) WHERE resolved_at IS NULL DO NOTHING RETURNING id",
                    &[&dedup_key, &self.me.replica, &body],
                )
                .await?;
            let opened = match won {
                Some(row) => {
                    let id: i64 = row.get(0);
                    plan(&tx, id, dedup_key, steps).await?;
                    Opened { id, won: true }
                }
                None => {
                    let row = tx
                        .query_one(
                            "SELECT id FROM slowburn_alerts WHERE dedup_key = $1 AND resolved_at IS NULL",
                            &[&dedup_key],
                        )
                        .await?;
                    Opened {
                        id: row.get(0),
                        won: false,
                    }
                }
            };
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(opened)
        }
        .await;
        self.settle(&mut guard, result)
    }

    /// Adds steps to an open alert (an ack or a resolve telling everyone paged, a re-fire
    /// after an ack timeout). A step planned before, by any replica, is left as it is.
    pub async fn plan(
        &self,
        alert_id: i64,
        dedup_key: &str,
        steps: &[PlannedStep],
    ) -> Result<(), PgError> {
        let mut guard = self.connection().await?;
        let result = async {
            let client = &mut guard.as_mut().expect("connected").client;
            let tx = client.transaction().await?;
            plan(&tx, alert_id, dedup_key, steps).await?;
            tx.commit().await
        }
        .await;
        self.settle(&mut guard, result)
    }

    /// Claims up to `limit` due steps under a lease. A trigger is claimed only while its
    /// alert fires (an ack or a resolve on any replica stops it); a step whose previous
    /// claim ran out of lease is claimed again, as a re-send.
    pub async fn claim(&self, limit: i64) -> Result<Vec<Claim>, PgError> {
        let lease = self.timeouts.lease.as_secs_f64();
        let rows = self
            .query(
                "WITH due AS (
                    SELECT s.alert_id, s.event, s.epoch, s.round, s.step, s.notifier, s.state AS was
                    FROM slowburn_steps s JOIN slowburn_alerts a ON a.id = s.alert_id
                    WHERE s.due_at <= now()
                      AND (s.state = 'due' OR (s.state = 'claimed' AND s.lease_until < now()))
                      AND (s.event <> 'trigger' OR a.state = 'firing')
                    ORDER BY s.due_at
                    LIMIT $2
                    FOR UPDATE OF s SKIP LOCKED)
                 UPDATE slowburn_steps s SET state = 'claimed', claimed_by = $1,
                    lease_until = now() + $3 * interval '1 second', fence = s.fence + 1,
                    claims = s.claims + 1, resent = s.resent OR due.was = 'claimed'
                 FROM due
                 WHERE (s.alert_id, s.event, s.epoch, s.round, s.step, s.notifier)
                     = (due.alert_id, due.event, due.epoch, due.round, due.step, due.notifier)
                 RETURNING s.alert_id, s.event, s.epoch, s.round, s.step, s.notifier,
                    s.idempotency_key, s.fence, s.resent,
                    (SELECT body FROM slowburn_alerts WHERE id = s.alert_id)",
                &[&self.me.replica, &limit, &lease],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Claim {
                alert_id: r.get(0),
                event: r.get(1),
                epoch: r.get(2),
                round: r.get(3),
                step: r.get(4),
                notifier: r.get(5),
                idempotency_key: r.get(6),
                fence: r.get(7),
                resend: r.get(8),
                body: r.get(9),
            })
            .collect())
    }

    /// The fencing check right before a send: true while this claim still holds its lease
    /// (and, for a trigger, the alert still fires). False means: do not send.
    pub async fn begin_send(&self, claim: &Claim) -> Result<bool, PgError> {
        let n = self
            .execute(
                "UPDATE slowburn_steps s SET sending_at = now()
                 WHERE idempotency_key = $1 AND fence = $2 AND claimed_by = $3
                   AND state = 'claimed' AND lease_until > now()
                   AND (event <> 'trigger' OR EXISTS (
                       SELECT 1 FROM slowburn_alerts a WHERE a.id = s.alert_id AND a.state = 'firing'))",
                &[&claim.idempotency_key, &claim.fence, &self.me.replica],
            )
            .await?;
        Ok(n == 1)
    }

    /// Records the end of a send (`sent` or `failed`) under the claim's fence. False means
    /// the claim was fenced off: another replica took the step over, and its record stands.
    pub async fn complete(
        &self,
        claim: &Claim,
        sent: bool,
        error: Option<&str>,
    ) -> Result<bool, PgError> {
        let state = if sent { "sent" } else { "failed" };
        let n = self
            .execute(
                "UPDATE slowburn_steps SET state = $3, sent_at = now(), sent_by = $4, error = $5
                 WHERE idempotency_key = $1 AND fence = $2 AND state = 'claimed'",
                &[
                    &claim.idempotency_key,
                    &claim.fence,
                    &state,
                    &self.me.replica,
                    &error,
                ],
            )
            .await?;
        Ok(n == 1)
    }

    /// Acknowledges the open alert with this dedup key: no trigger is claimed after it.
    /// Returns its id, or `None` when no alert with that key is open and firing.
    pub async fn ack(&self, dedup_key: &str, by: &str) -> Result<Option<i64>, PgError> {
        let rows = self
            .query(
                "UPDATE slowburn_alerts SET state = 'acknowledged', acked_by = $2, acked_at = now()
                 WHERE dedup_key = $1 AND resolved_at IS NULL AND state = 'firing' RETURNING id",
                &[&dedup_key, &by],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// A shared alert by id: its dedup key, its state and the body written when it opened.
    pub async fn alert(&self, id: i64) -> Result<Option<SharedAlert>, PgError> {
        let rows = self
            .query(
                "SELECT dedup_key, state, body, acked_by FROM slowburn_alerts WHERE id = $1",
                &[&id],
            )
            .await?;
        Ok(rows.first().map(|r| SharedAlert {
            id,
            dedup_key: r.get(0),
            state: r.get(1),
            body: r.get(2),
            acked_by: r.get(3),
        }))
    }

    /// The open shared alerts and the newest `recent` resolved ones, newest first.
    pub async fn alerts(&self, recent: i64) -> Result<Vec<SharedAlert>, PgError> {
        let rows = self
            .query(
                "(SELECT id, dedup_key, state, body, acked_by FROM slowburn_alerts WHERE resolved_at IS NULL)
                 UNION ALL
                 (SELECT id, dedup_key, state, body, acked_by FROM slowburn_alerts
                  WHERE resolved_at IS NOT NULL ORDER BY id DESC LIMIT $1)
                 ORDER BY id DESC",
                &[&recent],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| SharedAlert {
                id: r.get(0),
                dedup_key: r.get(1),
                state: r.get(2),
                body: r.get(3),
                acked_by: r.get(4),
            })
            .collect())
    }

    /// Every planned step of a shared alert as a delivery record, oldest first: its
    /// idempotency key, its state (`due`, `claimed`, `sent`, `failed`, `cancelled`, and
    /// `sent (re-sent)` when a claimer died mid-send), claims as attempts.
    pub async fn records(&self, alert_id: i64) -> Result<Vec<crate::store::Record>, PgError> {
        let rows = self
            .query(
                "SELECT idempotency_key, notifier, event, state, claims, error, resent,
                    extract(epoch FROM due_at)::float8,
                    extract(epoch FROM COALESCE(sent_at, sending_at, due_at))::float8
                 FROM slowburn_steps WHERE alert_id = $1 ORDER BY due_at, idempotency_key",
                &[&alert_id],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                let state: String = r.get(3);
                let resent: bool = r.get(6);
                crate::store::Record {
                    key: r.get(0),
                    alert_id: alert_id as u64,
                    notifier: r.get(1),
                    event: r.get(2),
                    state: if resent {
                        format!("{state} (re-sent)")
                    } else {
                        state
                    },
                    attempts: r.get::<_, i32>(4).max(0) as u32,
                    error: r.get(5),
                    created_at: r.get(7),
                    updated_at: r.get(8),
                }
            })
            .collect())
    }

    /// The state of each of these shared alerts, with who acknowledged it: `(id, state, by)`.
    pub async fn states(&self, ids: &[i64]) -> Result<Vec<(i64, String, Option<String>)>, PgError> {
        let rows = self
            .query(
                "SELECT id, state, acked_by FROM slowburn_alerts WHERE id = ANY($1)",
                &[&ids],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
    }

    /// The id of the open alert with this dedup key.
    pub async fn open_id(&self, dedup_key: &str) -> Result<Option<i64>, PgError> {
        let rows = self
            .query(
                "SELECT id FROM slowburn_alerts WHERE dedup_key = $1 AND resolved_at IS NULL",
                &[&dedup_key],
            )
            .await?;
        Ok(rows.first().map(|r| r.get(0)))
    }

    /// Re-fires an acknowledged alert (its ack timed out): triggers are claimed again.
    pub async fn refire(&self, dedup_key: &str) -> Result<(), PgError> {
        self.execute(
            "UPDATE slowburn_alerts SET state = 'firing' WHERE dedup_key = $1 AND resolved_at IS NULL",
            &[&dedup_key],
        )
        .await
        .map(drop)
    }

    /// Resolves the open alert with this dedup key: its unsent triggers are cancelled.
    pub async fn resolve(&self, dedup_key: &str) -> Result<Option<i64>, PgError> {
        let mut guard = self.connection().await?;
        let result = async {
            let client = &mut guard.as_mut().expect("connected").client;
            let tx = client.transaction().await?;
            let row = tx
                .query_opt(
                    "UPDATE slowburn_alerts SET state = 'resolved', resolved_at = now()
                     WHERE dedup_key = $1 AND resolved_at IS NULL RETURNING id",
                    &[&dedup_key],
                )
                .await?;
            let id = row.map(|r| r.get::<_, i64>(0));
            if let Some(id) = id {
                tx.execute(
                    "UPDATE slowburn_steps SET state = 'cancelled'
                     WHERE alert_id = $1 AND event = 'trigger' AND state = 'due'",
                    &[&id],
                )
                .await?;
            }
            tx.commit().await?;
            Ok::<_, tokio_postgres::Error>(id)
        }
        .await;
        self.settle(&mut guard, result)
    }

    /// The notifiers a trigger of this alert reached: whom an ack or a resolve must tell.
    pub async fn paged(&self, alert_id: i64) -> Result<Vec<String>, PgError> {
        let rows = self
            .query(
                "SELECT DISTINCT notifier FROM slowburn_steps
                 WHERE alert_id = $1 AND event = 'trigger' AND state IN ('sent', 'claimed')
                 ORDER BY notifier",
                &[&alert_id],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Steps due and unclaimed, steps claimed, and how overdue the oldest due step is.
    pub async fn pending_steps(&self) -> Result<(i64, i64, f64), PgError> {
        let rows = self
            .query(
                "SELECT count(*) FILTER (WHERE state = 'due' AND due_at <= now()),
                        count(*) FILTER (WHERE state = 'claimed'),
                        COALESCE(extract(epoch FROM now() - min(due_at) FILTER (WHERE state = 'due' AND due_at <= now())), 0)::float8
                 FROM slowburn_steps s JOIN slowburn_alerts a ON a.id = s.alert_id
                 WHERE s.state IN ('due', 'claimed') AND (s.event <> 'trigger' OR a.state = 'firing')",
                &[],
            )
            .await?;
        let r = &rows[0];
        Ok((r.get(0), r.get(1), r.get(2)))
    }

    /// Stores runs of probes at this replica's location, each in its schedule slot, in one
    /// statement. A slot that already has a result keeps it: a duplicate run during a
    /// membership change is dropped. Returns how many rows were new.
    pub async fn record_results(&self, runs: &[RunResult]) -> Result<u64, PgError> {
        if runs.is_empty() {
            return Ok(0);
        }
        let probes: Vec<&str> = runs.iter().map(|r| r.probe.as_str()).collect();
        let slots: Vec<i64> = runs.iter().map(|r| r.slot).collect();
        let successes: Vec<bool> = runs.iter().map(|r| r.success).collect();
        let reasons: Vec<Option<&str>> = runs.iter().map(|r| r.reason.as_deref()).collect();
        self.execute(
            "INSERT INTO slowburn_results (probe, location, slot, replica, success, reason)
             SELECT p, $1, s, $2, ok, r FROM unnest($3::text[], $4::int8[], $5::bool[], $6::text[]) AS u(p, s, ok, r)
             ON CONFLICT DO NOTHING",
            &[
                &self.me.location,
                &self.me.replica,
                &probes,
                &slots,
                &successes,
                &reasons,
            ],
        )
        .await
    }

    /// Stores one run (see [`record_results`](Self::record_results)); false for a duplicate.
    pub async fn record_result(
        &self,
        probe: &str,
        slot: i64,
        success: bool,
        reason: Option<&str>,
    ) -> Result<bool, PgError> {
        let run = RunResult {
            probe: probe.to_string(),
            slot,
            success,
            reason: reason.map(str::to_string),
        };
        Ok(self.record_results(&[run]).await? == 1)
    }

    /// Drops results older than `keep` seconds.
    pub async fn prune_results(&self, keep: f64) -> Result<u64, PgError> {
        self.execute(
            "DELETE FROM slowburn_results WHERE at < now() - $1 * interval '1 second'",
            &[&keep],
        )
        .await
    }

    /// The latest result of `probe` at each location within `within` seconds, by location:
    /// `(location, seconds ago, success)`.
    pub async fn latest_results(
        &self,
        probe: &str,
        within: f64,
    ) -> Result<Vec<(String, f64, bool)>, PgError> {
        let rows = self
            .query(
                "SELECT DISTINCT ON (location) location, extract(epoch FROM now() - at)::float8, success
                 FROM slowburn_results WHERE probe = $1 AND at > now() - $2 * interval '1 second'
                 ORDER BY location, slot DESC",
                &[&probe, &within],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect())
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

    fn error(&self, message: String) -> PgError {
        PgError {
            target: self.pg.target().to_string(),
            message,
        }
    }
}

/// Inserts planned steps; `ON CONFLICT DO NOTHING` keeps a step planned twice planned once.
async fn plan(
    tx: &tokio_postgres::Transaction<'_>,
    alert_id: i64,
    dedup_key: &str,
    steps: &[PlannedStep],
) -> Result<(), tokio_postgres::Error> {
    if steps.is_empty() {
        return Ok(());
    }
    let insert = tx
        .prepare(
            "INSERT INTO slowburn_steps (alert_id, event, epoch, round, step, notifier, idempotency_key, due_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7,
                 (SELECT opened_at FROM slowburn_alerts WHERE id = $1) + $8 * interval '1 second')
             ON CONFLICT DO NOTHING",
        )
        .await?;
    for s in steps {
        let key = idempotency_key(dedup_key, alert_id, s);
        let (epoch, round, step) = (s.epoch as i32, s.round as i32, s.step as i32);
        tx.execute(
            &insert,
            &[
                &alert_id,
                &s.event,
                &epoch,
                &round,
                &step,
                &s.notifier,
                &key,
                &s.after,
            ],
        )
        .await?;
    }
    Ok(())
}

/// The key every attempt of one step carries: the same on a re-send, different per step.
pub fn idempotency_key(dedup_key: &str, alert_id: i64, s: &PlannedStep) -> String {
    format!(
        "{dedup_key}/{alert_id}/{}/{}/{}/{}/{}",
        s.event, s.epoch, s.round, s.step, s.notifier
    )
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// How a probe's schedule slot is numbered: the run's start in whole intervals since the
/// epoch. Replicas that run the same probe in the same interval compute the same slot.
pub fn slot(started_unix: f64, interval: Duration) -> i64 {
    (started_unix / interval.as_secs_f64().max(0.001)).floor() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_one_interval_wide() {
        let i = Duration::from_secs(10);
        assert_eq!(slot(100.0, i), slot(109.9, i));
        assert_ne!(slot(109.9, i), slot(110.0, i));
    }

    #[test]
    fn idempotency_keys_differ_per_step_and_hold_across_attempts() {
        let step = |round, step, notifier: &str| PlannedStep {
            event: "trigger".into(),
            epoch: 0,
            round,
            step,
            notifier: notifier.into(),
            after: 0.0,
        };
        let a = idempotency_key("k", 1, &step(0, 0, "pd"));
        assert_eq!(a, idempotency_key("k", 1, &step(0, 0, "pd")));
        assert_ne!(a, idempotency_key("k", 1, &step(0, 1, "pd")));
        assert_ne!(a, idempotency_key("k", 1, &step(1, 0, "pd")));
        assert_ne!(a, idempotency_key("k", 1, &step(0, 0, "slack")));
    }
}
