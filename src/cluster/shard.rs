//! Which probes this replica runs, and what its runs leave for the shared database.
//!
//! Within a location each probe is owned by rendezvous hashing over the live replicas of that
//! location; a probe without `locations:` runs once in the whole cluster, owned among every
//! live replica. A probe with a `quorum:` is also *judged* once in the cluster, by the owner
//! of its quorum key among every live replica, from the results all its locations stored.
//! The scheduler keeps only the probes this replica runs on its heap and re-reads them when
//! [`Shard::changes`] says they changed (it still asks [`Shard::runs`] before each run); the
//! cluster loop feeds the membership in.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::pg::RunResult;
use super::quorum::{Quorum, QuorumState};
use super::rendezvous;

/// Where one probe runs and how its locations' results combine.
#[derive(Debug, Clone, PartialEq)]
pub struct Place {
    /// `locations:`; none: anywhere, once.
    pub locations: Option<Vec<String>>,
    pub quorum: Option<Quorum>,
    pub interval: Duration,
}

/// The shard of one replica.
#[derive(Debug, Default)]
pub struct Shard {
    replica: String,
    location: String,
    /// Live members as `(replica, location)`; `None` while unknown.
    members: RwLock<Option<Vec<(String, String)>>>,
    places: RwLock<HashMap<String, Place>>,
    /// Runs not yet written to the database.
    pending: Mutex<Vec<RunResult>>,
    /// The quorum of each probe this replica judges.
    quorums: Mutex<HashMap<String, QuorumState>>,
    /// The probes this replica runs, worked out again only when the members or the places
    /// change: the scheduler asks before every run.
    running: RwLock<HashSet<String>>,
    /// Bumped each time `running` changes, so the scheduler parks and takes back probes then
    /// instead of waking for every slot of every probe.
    changes: watch::Sender<u64>,
}

impl Shard {
    pub fn new(me: &super::Identity) -> Shard {
        Shard {
            replica: me.replica.clone(),
            location: me.location.clone(),
            ..Default::default()
        }
    }

    /// Sets each probe's place (on start and on every reload).
    pub fn set_places(&self, places: HashMap<String, Place>) {
        let mut quorums = self.quorums.lock().unwrap_or_else(|e| e.into_inner());
        quorums.retain(|name, _| places.get(name).is_some_and(|p| p.quorum.is_some()));
        *self.places.write().unwrap_or_else(|e| e.into_inner()) = places;
        self.recompute();
    }

    /// Sets the live members, `(replica, location)`; `None` when they are unknown.
    pub fn set_members(&self, members: Option<Vec<(String, String)>>) {
        let mut current = self.members.write().unwrap_or_else(|e| e.into_inner());
        if *current == members {
            return;
        }
        *current = members;
        drop(current);
        self.recompute();
    }

    /// Whether this replica runs `probe` now. Unknown membership runs it (fail open: a
    /// duplicate run collapses on its slot, a missed one pages nobody).
    pub fn runs(&self, probe: &str) -> bool {
        self.running
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains(probe)
    }

    /// A receiver that sees a change each time the probes this replica runs change.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn recompute(&self) {
        let names: Vec<String> = self
            .places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        let running: HashSet<String> = names.into_iter().filter(|p| self.decide(p)).collect();
        let mut current = self.running.write().unwrap_or_else(|e| e.into_inner());
        if *current == running {
            return;
        }
        *current = running;
        drop(current);
        // Sent even when no scheduler listens yet: the next one subscribes and reads `runs`.
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// [`runs`](Self::runs), worked out from the members and places.
    fn decide(&self, probe: &str) -> bool {
        let places = self.places.read().unwrap_or_else(|e| e.into_inner());
        let locations = places.get(probe).and_then(|p| p.locations.clone());
        drop(places);
        if let Some(locations) = &locations
            && !locations.contains(&self.location)
        {
            return false;
        }
        self.owns(probe, locations.is_some())
    }

    /// Whether this replica owns `key` among the live replicas of its location (`local`) or
    /// of the whole cluster.
    fn owns(&self, key: &str, local: bool) -> bool {
        let members = self.members.read().unwrap_or_else(|e| e.into_inner());
        let Some(members) = members.as_ref() else {
            return true;
        };
        let candidates: Vec<String> = members
            .iter()
            .filter(|(_, l)| !local || *l == self.location)
            .map(|(r, _)| r.clone())
            .collect();
        if !candidates.contains(&self.replica) {
            return true; // Not yet seen by the others: run rather than leave a gap.
        }
        rendezvous::owns(key, &self.replica, &candidates)
    }

    /// How many of the configured probes this replica runs now.
    pub fn owned(&self) -> usize {
        self.running.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether the alert of `probe` waits for a quorum of locations (its own runs then open
    /// nothing by themselves).
    pub fn judged_by_quorum(&self, probe: &str) -> bool {
        self.places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(probe)
            .is_some_and(|p| p.quorum.is_some())
    }

    /// Whether this replica decides the alerts of `probe`: the judge of its quorum, or the
    /// replica that runs it.
    pub fn evaluates(&self, probe: &str) -> bool {
        if self.judged_by_quorum(probe) {
            self.owns(&format!("quorum/{probe}"), false)
        } else {
            self.runs(probe)
        }
    }

    /// Notes one finished run, for the database.
    pub fn ran(&self, probe: &str, at: SystemTime, success: bool, reason: Option<&str>) {
        let interval = self
            .places
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(probe)
            .map(|p| p.interval);
        let Some(interval) = interval else {
            return;
        };
        let started = crate::metrics::unix_seconds(at);
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(RunResult {
                probe: probe.to_string(),
                slot: super::pg::slot(started, interval),
                success,
                reason: reason.map(str::to_string),
            });
    }

    /// The runs noted since the last call.
    pub fn take_runs(&self) -> Vec<RunResult> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The quorum probes this replica judges now, with their place.
    pub fn judged_here(&self) -> Vec<(String, Place)> {
        let places = self.places.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, Place)> = places
            .iter()
            .filter(|(_, p)| p.quorum.is_some())
            .filter(|(name, _)| self.owns(&format!("quorum/{name}"), false))
            .map(|(n, p)| (n.clone(), p.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Runs `f` on the quorum state of `probe`, made on first use.
    pub fn with_quorum<T>(
        &self,
        probe: &str,
        place: &Place,
        f: impl FnOnce(&mut QuorumState) -> T,
    ) -> Option<T> {
        let quorum = place.quorum?;
        let locations = place.locations.clone().unwrap_or_default();
        let mut quorums = self.quorums.lock().unwrap_or_else(|e| e.into_inner());
        let state = quorums
            .entry(probe.to_string())
            .or_insert_with(|| QuorumState::new(quorum, locations, place.interval));
        Some(f(state))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard_of(probes: usize) -> Shard {
        let me = crate::cluster::Identity::new(Some("me".into()), Some("here".into()), 0);
        let shard = Shard::new(&me);
        let place = Place {
            locations: None,
            quorum: None,
            interval: Duration::from_secs(1),
        };
        shard.set_places(
            (0..probes)
                .map(|i| (format!("p{i}"), place.clone()))
                .collect(),
        );
        shard
    }

    /// The scheduler re-reads the owned probes only on a change: one comes when the set
    /// changes, none when the members change but the set does not.
    #[test]
    fn a_change_of_owned_probes_is_signalled_once() {
        let shard = shard_of(50);
        let mut changes = shard.changes();
        assert_eq!(shard.owned(), 50, "unknown members: every probe runs here");
        let here = |r: &str| (r.to_string(), "here".to_string());
        shard.set_members(Some(vec![here("me"), here("other")]));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(shard.owned() < 50);
        // These probes have no `locations:`: a member in any location takes a share.
        shard.set_members(Some(vec![
            here("me"),
            here("other"),
            ("far".into(), "away".into()),
        ]));
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        // The same owners in another order: no change.
        shard.set_members(Some(vec![
            ("far".into(), "away".into()),
            here("other"),
            here("me"),
        ]));
        assert!(!changes.has_changed().unwrap());
        // Members unknown again (the database lost): every probe, a change.
        shard.set_members(None);
        assert!(changes.has_changed().unwrap());
        assert_eq!(shard.owned(), 50);
    }
}
