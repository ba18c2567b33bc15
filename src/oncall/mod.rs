//! On-call: the people who are paged, the schedules that say who is on call when, the routes
//! from an alert's labels to a policy, and the resolution of a policy step's targets
//! (`schedule:NAME`, `person:NAME`, a notifier) into the notifications to send.
//!
//! Everything here is a pure function of values and a time passed in: `schedule.rs` walks
//! rotations, `routes.rs` matches labels, `resolve.rs` turns targets into recipients when a
//! step fires. The alert engine calls them; this module knows nothing of alerts' lifecycle,
//! the store or HTTP. Validation of the YAML lives in `config/oncall.rs`.

pub mod links;
pub mod resolve;
pub mod routes;
pub mod schedule;

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use resolve::{Directory, Resolved};
pub use routes::Route;
pub use schedule::{Override, Schedule, Shift};

/// Whom a policy step pages, as written `schedule:NAME`, `person:NAME` or a notifier's name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Notifier(String),
    Person(String),
    Schedule(String),
}

impl Target {
    /// Reads a target as a policy step writes it.
    pub fn parse(text: &str) -> Target {
        if let Some(name) = text.strip_prefix("schedule:") {
            Target::Schedule(name.to_string())
        } else if let Some(name) = text.strip_prefix("person:") {
            Target::Person(name.to_string())
        } else {
            Target::Notifier(text.to_string())
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Notifier(name) => f.write_str(name),
            Target::Person(name) => write!(f, "person:{name}"),
            Target::Schedule(name) => write!(f, "schedule:{name}"),
        }
    }
}

impl From<&str> for Target {
    fn from(text: &str) -> Target {
        Target::parse(text)
    }
}

impl Serialize for Target {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Target {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Target, D::Error> {
        // Policies stored before targets were typed name notifiers: they read back as such.
        String::deserialize(deserializer).map(|s| Target::parse(&s))
    }
}

/// A person and how to reach them.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub name: String,
    /// Every contact is used when the person is paged.
    pub contacts: Vec<Contact>,
}

/// One way to reach a person: a notifier and that person's address on it (a Slack user or
/// channel, an email address, a PagerDuty routing key).
#[derive(Debug, Clone, PartialEq)]
pub struct Contact {
    pub notifier: String,
    pub to: String,
}

/// A person paged through one of their contacts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Recipient {
    pub person: String,
    pub notifier: String,
    pub to: String,
}

/// Why an override was refused.
#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The store or the shared database could not keep it.
    #[error(transparent)]
    Backend(#[from] crate::store::BackendError),
}

/// The override a stored row describes.
pub fn stored(row: &crate::store::oncall::OverrideRow) -> Override {
    let at = |t: f64| jiff::Timestamp::from_millisecond((t * 1000.0) as i64).unwrap_or_default();
    Override {
        user: row.user.clone(),
        start: at(row.start),
        end: at(row.end),
    }
}

/// People by name, for building a [`Directory`].
pub type People = HashMap<String, Person>;
