//! The state replicas share beside alerts and steps: API silences, on-call overrides and
//! signal history, as [`Backend`] wants them. Every statement goes through the
//! coordinator's one connection (re-opened when it breaks), so a lost database shows here as
//! it does for the heartbeat: a [`super::PgError`] and [`Coordinator::lost`].

use super::Coordinator;
use crate::store::oncall::OverrideRow;
use crate::store::{Backend, BackendError, Sample};

#[async_trait::async_trait]
impl Backend for Coordinator {
    fn describe(&self) -> String {
        self.target().to_string()
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn save_silence(&self, id: &str, body: &str) -> Result<(), BackendError> {
        self.execute(
            "INSERT INTO slowburn_silences (id, body) VALUES ($1, $2)
             ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            &[&id, &body],
        )
        .await?;
        Ok(())
    }

    async fn delete_silence(&self, id: &str) -> Result<bool, BackendError> {
        let n = self
            .execute("DELETE FROM slowburn_silences WHERE id = $1", &[&id])
            .await?;
        Ok(n > 0)
    }

    async fn silences(&self) -> Result<Vec<String>, BackendError> {
        let rows = self
            .query("SELECT body FROM slowburn_silences ORDER BY id", &[])
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn add_override(&self, row: &OverrideRow) -> Result<i64, BackendError> {
        let rows = self
            .query(
                "INSERT INTO slowburn_overrides (schedule, person, start_at, end_at, created_by, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                &[
                    &row.schedule,
                    &row.user,
                    &row.start,
                    &row.end,
                    &row.created_by,
                    &row.created_at,
                ],
            )
            .await?;
        let id = rows.first().map(|r| r.get(0));
        id.ok_or_else(|| {
            self.error("the new override's id did not come back".into())
                .into()
        })
    }

    async fn delete_override(&self, id: i64) -> Result<bool, BackendError> {
        let n = self
            .execute("DELETE FROM slowburn_overrides WHERE id = $1", &[&id])
            .await?;
        Ok(n > 0)
    }

    async fn overrides(&self) -> Result<Vec<OverrideRow>, BackendError> {
        let rows = self
            .query(
                "SELECT id, schedule, person, start_at, end_at, created_by, created_at
                 FROM slowburn_overrides ORDER BY id",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| OverrideRow {
                id: r.get(0),
                schedule: r.get(1),
                user: r.get(2),
                start: r.get(3),
                end: r.get(4),
                created_by: r.get(5),
                created_at: r.get(6),
            })
            .collect())
    }

    async fn append_samples(&self, rows: &[(String, String, Sample)]) -> Result<(), BackendError> {
        if rows.is_empty() {
            return Ok(());
        }
        let probes: Vec<&str> = rows.iter().map(|(p, _, _)| p.as_str()).collect();
        let signals: Vec<&str> = rows.iter().map(|(_, s, _)| s.as_str()).collect();
        let ts: Vec<f64> = rows.iter().map(|(_, _, x)| x.t).collect();
        let vs: Vec<f64> = rows.iter().map(|(_, _, x)| x.v).collect();
        // A batch retried after its commit's answer was lost adds nothing twice.
        self.execute(
            "INSERT INTO slowburn_samples (probe, signal, t, v)
             SELECT * FROM unnest($1::text[], $2::text[], $3::float8[], $4::float8[])
             ON CONFLICT DO NOTHING",
            &[&probes, &signals, &ts, &vs],
        )
        .await?;
        Ok(())
    }

    async fn samples(
        &self,
        probe: &str,
        signal: &str,
        since: f64,
    ) -> Result<Vec<Sample>, BackendError> {
        let rows = self
            .query(
                "SELECT t, v FROM slowburn_samples WHERE probe = $1 AND signal = $2 AND t >= $3 ORDER BY t",
                &[&probe, &signal, &since],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|r| Sample {
                t: r.get(0),
                v: r.get(1),
            })
            .collect())
    }

    async fn series_of(&self, probe: &str, signal: &str) -> Result<Vec<String>, BackendError> {
        // A skip scan over the primary key, one index seek per series as SQLite's loop does;
        // the columns are `COLLATE "C"`, so `{` and `|` bound the labelled names bytewise.
        let rows = self
            .query(
                "WITH RECURSIVE s(signal) AS (
                    (SELECT signal FROM slowburn_samples WHERE probe = $1 AND signal > $2 AND signal < $3
                     ORDER BY signal LIMIT 1)
                    UNION ALL
                    SELECT (SELECT x.signal FROM slowburn_samples x
                            WHERE x.probe = $1 AND x.signal > s.signal AND x.signal < $3
                            ORDER BY x.signal LIMIT 1)
                    FROM s WHERE s.signal IS NOT NULL
                 ) SELECT signal FROM s WHERE signal IS NOT NULL",
                &[&probe, &format!("{signal}{{"), &format!("{signal}|")],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn prune_samples(
        &self,
        before: f64,
        max_per_series: usize,
    ) -> Result<usize, BackendError> {
        let mut removed = self
            .execute("DELETE FROM slowburn_samples WHERE t < $1", &[&before])
            .await?;
        removed += self
            .execute(
                "DELETE FROM slowburn_samples s USING (
                    SELECT probe, signal, t FROM (
                        SELECT probe, signal, t,
                            row_number() OVER (PARTITION BY probe, signal ORDER BY t DESC) AS n
                        FROM slowburn_samples
                    ) ranked WHERE n > $1
                 ) old WHERE s.probe = old.probe AND s.signal = old.signal AND s.t = old.t",
                &[&(max_per_series as i64)],
            )
            .await?;
        Ok(removed as usize)
    }
}
