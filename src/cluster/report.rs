//! What `slowburn cluster` shows: the members of the shared database, how many probes each
//! owns by rendezvous hashing over the live members, each one's schedule lag, and the
//! escalation steps waiting to be sent.

use super::pg::{Coordinator, Member};
use super::rendezvous;

/// Where one probe runs: its name and the locations it lists (none: anywhere).
pub struct Runs<'a> {
    pub probe: &'a str,
    pub locations: Option<&'a [String]>,
}

/// The cluster as `slowburn cluster` prints it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub target: String,
    pub members: Vec<Owned>,
    /// Probes listing a location that has no live replica: nobody runs them there.
    pub unowned: usize,
    pub steps_due: i64,
    pub steps_claimed: i64,
    /// How late the most overdue step is, in seconds (0 when none is overdue).
    pub oldest_due_seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Owned {
    #[serde(flatten)]
    pub member: Member,
    /// Probes it owns by the config given to `slowburn cluster`.
    pub owns: usize,
}

impl Report {
    /// The report for people, line by line.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![
            format!("{}: {} member(s)", self.target, self.members.len()),
            format!(
                "{:<24} {:<12} {:>6} {:>8} {:>9}  listen",
                "replica", "location", "owns", "lag", "seen"
            ),
        ];
        for m in &self.members {
            let seen = if m.member.live {
                format!("{:.0}s ago", m.member.seen_seconds_ago)
            } else {
                format!("gone {:.0}s", m.member.seen_seconds_ago)
            };
            lines.push(format!(
                "{:<24} {:<12} {:>6} {:>7.2}s {:>9}  {}",
                m.member.replica,
                m.member.location,
                m.owns,
                m.member.lag_seconds,
                seen,
                m.member.listen
            ));
        }
        if self.unowned > 0 {
            lines.push(format!(
                "{} probe location(s) have no live replica: nobody runs them",
                self.unowned
            ));
        }
        lines.push(format!(
            "escalation steps: {} due, {} claimed, oldest due {:.0}s ago",
            self.steps_due, self.steps_claimed, self.oldest_due_seconds
        ));
        lines
    }
}

/// Reads the members and the steps and shares `probes` out as the replicas do.
pub async fn report(
    coordinator: &Coordinator,
    probes: &[Runs<'_>],
) -> Result<Report, super::pg::PgError> {
    let members = coordinator.members().await?;
    let (due, claimed, oldest) = coordinator.pending_steps().await?;
    let (owns, unowned) = ownership(&members, probes);
    Ok(Report {
        target: coordinator.target().to_string(),
        members: members
            .into_iter()
            .zip(owns)
            .map(|(member, owns)| Owned { member, owns })
            .collect(),
        unowned,
        steps_due: due,
        steps_claimed: claimed,
        oldest_due_seconds: oldest,
    })
}

/// Probes owned by each member (in `members`' order) and probes nobody owns.
pub fn ownership(members: &[Member], probes: &[Runs<'_>]) -> (Vec<usize>, usize) {
    let mut owns = vec![0; members.len()];
    let mut unowned = 0;
    let live = |location: Option<&str>| -> Vec<String> {
        members
            .iter()
            .filter(|m| m.live && location.is_none_or(|l| m.location == l))
            .map(|m| m.replica.clone())
            .collect()
    };
    let mut count = |probe: &str, candidates: &[String]| match rendezvous::owner(probe, candidates)
    {
        Some(owner) => {
            if let Some(i) = members.iter().position(|m| m.replica == owner) {
                owns[i] += 1;
            }
        }
        None => unowned += 1,
    };
    let anywhere = live(None);
    for p in probes {
        match p.locations {
            None => count(p.probe, &anywhere),
            Some(locations) => {
                for l in locations {
                    count(p.probe, &live(Some(l)));
                }
            }
        }
    }
    (owns, unowned)
}
