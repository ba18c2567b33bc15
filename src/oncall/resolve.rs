//! The resolution of a step's targets when the step fires: a notifier is itself, a person is
//! each of their contacts, a schedule is whoever is on call at that instant (a handoff later
//! does not change who was paged). A schedule with nobody on call is a gap, reported so the
//! engine can move on to the next step and count it.

use std::collections::{BTreeMap, HashMap};

use super::{People, Person, Recipient, Schedule, Target};

/// People and schedules, as the engine resolves targets against them.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    pub people: People,
    pub schedules: HashMap<String, Schedule>,
}

/// What a step's targets come to at one instant.
#[derive(Debug, Default, PartialEq)]
pub struct Resolved {
    /// Notifiers named directly.
    pub notifiers: Vec<String>,
    /// People paged, one per contact.
    pub recipients: Vec<Recipient>,
    /// Schedules that had nobody on call.
    pub gaps: Vec<String>,
}

impl Resolved {
    /// Whether the step pages nobody at all.
    pub fn is_empty(&self) -> bool {
        self.notifiers.is_empty() && self.recipients.is_empty()
    }

    /// Who was paged, for the alert's timeline: `pd-primary, alice (oncall-hook: alice)`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = self.notifiers.clone();
        parts.extend(
            self.recipients
                .iter()
                .map(|r| format!("{} ({}: {})", r.person, r.notifier, r.to)),
        );
        parts.extend(self.gaps.iter().map(|g| format!("nobody on call in {g}")));
        parts.join(", ")
    }
}

/// The person a recorded notification was for: its key names them after the notifier
/// (`7/oncall-hook>alice/trigger/0/0/1`, see `alert::Send::key`), and the alert keeps the
/// address they were paged at.
pub fn recipient_of(alert: &crate::alert::Alert, key: &str) -> Option<Recipient> {
    let target = key.split('/').nth(1)?;
    let (notifier, person) = target.split_once('>')?;
    alert
        .recipients
        .iter()
        .find(|r| r.notifier == notifier && r.person == person)
        .cloned()
}

impl Directory {
    /// Resolves `targets` at `at` (unix seconds).
    pub fn resolve(&self, targets: &[Target], at: f64) -> Resolved {
        let mut out = Resolved::default();
        let instant = jiff::Timestamp::from_millisecond((at * 1000.0) as i64)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        for target in targets {
            match target {
                Target::Notifier(name) => {
                    if !out.notifiers.contains(name) {
                        out.notifiers.push(name.clone());
                    }
                }
                Target::Person(name) => self.page(name, &mut out),
                Target::Schedule(name) => {
                    match self.schedules.get(name).and_then(|s| s.oncall(instant)) {
                        Some(person) => self.page(person, &mut out),
                        None => out.gaps.push(name.clone()),
                    }
                }
            }
        }
        out
    }

    /// Adds an override to its schedule, after those already there (so it wins where they
    /// overlap); refused when the schedule or the person is unknown or the window is empty.
    pub fn add_override(&mut self, schedule: &str, o: super::Override) -> Result<(), String> {
        if !self.people.contains_key(&o.user) {
            return Err(format!("no person named {:?}", o.user));
        }
        if o.end <= o.start {
            return Err("an override's end must be after its start".into());
        }
        let Some(s) = self.schedules.get_mut(schedule) else {
            return Err(format!("no schedule named {schedule:?}"));
        };
        s.overrides.push(o);
        Ok(())
    }

    /// Who is on call in every schedule at `at`, for the API.
    pub fn oncall_now(&self, at: jiff::Timestamp) -> BTreeMap<String, Option<String>> {
        self.schedules
            .iter()
            .map(|(name, s)| (name.clone(), s.oncall(at).map(str::to_string)))
            .collect()
    }

    fn page(&self, name: &str, out: &mut Resolved) {
        let Some(Person { contacts, .. }) = self.people.get(name) else {
            return;
        };
        for c in contacts {
            let recipient = Recipient {
                person: name.to_string(),
                notifier: c.notifier.clone(),
                to: c.to.clone(),
            };
            if !out.recipients.contains(&recipient) {
                out.recipients.push(recipient);
            }
        }
    }
}
