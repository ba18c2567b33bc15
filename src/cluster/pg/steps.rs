//! Alerts and their escalation steps on the shared database: opened by the insert one
//! replica wins, planned with due times and idempotency keys, claimed under a lease with
//! `FOR UPDATE SKIP LOCKED`, fenced before the send and at completion.

use super::{Coordinator, PgError};

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
    /// Claims of this step so far, this one included: the attempt number.
    pub claims: i32,
    /// The alert as it was written when it opened (JSON text).
    pub body: String,
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

impl Coordinator {
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
                    (SELECT body FROM slowburn_alerts WHERE id = s.alert_id), s.claims",
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
                claims: r.get(10),
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

    /// Gives a step whose send failed back, due again after `backoff` seconds, under the
    /// claim's fence; any replica may try it then. False when the claim was fenced off.
    pub async fn retry_later(
        &self,
        claim: &Claim,
        error: &str,
        backoff: f64,
    ) -> Result<bool, PgError> {
        let n = self
            .execute(
                "UPDATE slowburn_steps SET state = 'due', claimed_by = NULL, lease_until = NULL,
                    due_at = now() + $3 * interval '1 second', error = $4
                 WHERE idempotency_key = $1 AND fence = $2 AND state = 'claimed'",
                &[&claim.idempotency_key, &claim.fence, &backoff, &error],
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
                "SELECT count(*) FILTER (WHERE s.state = 'due' AND s.due_at <= now()),
                        count(*) FILTER (WHERE s.state = 'claimed'),
                        COALESCE(extract(epoch FROM now() - min(s.due_at) FILTER (WHERE s.state = 'due' AND s.due_at <= now())), 0)::float8
                 FROM slowburn_steps s JOIN slowburn_alerts a ON a.id = s.alert_id
                 WHERE s.state IN ('due', 'claimed') AND (s.event <> 'trigger' OR a.state = 'firing')",
                &[],
            )
            .await?;
        let r = &rows[0];
        Ok((r.get(0), r.get(1), r.get(2)))
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

#[cfg(test)]
mod tests {
    use super::*;

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
