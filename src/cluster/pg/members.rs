//! Membership rows heartbeated by each replica (live by the database's clock) and the runs
//! of probes stored per (probe, location, slot).

use std::time::Duration;

use super::{Coordinator, PgError};

/// One run of a probe, for [`Coordinator::record_results`].
#[derive(Debug, Clone, PartialEq)]
pub struct RunResult {
    pub probe: String,
    pub slot: i64,
    pub success: bool,
    /// The failure's reason label.
    pub reason: Option<String>,
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

impl Coordinator {
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
}
