//! The keys that take slowburn beyond one machine: `storage: postgres:` (the database the
//! replicas share), and on a probe entry `locations:` and `quorum:`. Read and validated here,
//! with positions; what they do at run time is `crate::cluster`'s.

use std::sync::Arc;

use serde::Deserialize;

use super::loader::Loader;
use crate::basics::units::{Secret, parse_duration};
use crate::basics::yaml::{Pos, Spanned};
use crate::cluster::Postgres;
use crate::cluster::quorum::{MinFailing, Quorum};

/// `storage: postgres:`: the database every replica shares.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PostgresSpec {
    /// The libpq DSN, as a secret: `env:NAME` or `file:/path` (it usually holds a password).
    pub(super) dsn: Spanned<String>,
    /// How long a claimed escalation step is its claimer's before another replica may take
    /// it over (default 30s; longer than a notifier's timeout).
    pub(super) lease: Option<Spanned<String>>,
    /// A replica not heard from for this long leaves the membership and its probes move
    /// (default 10s).
    pub(super) membership_timeout: Option<Spanned<String>>,
}

/// `quorum:` on a probe with `locations:`.
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct QuorumSpec {
    /// How many locations must fail at once: a count (`2`) or a share of the locations
    /// (`"50%"`, rounded up).
    #[schemars(schema_with = "count_or_percent")]
    pub(super) min_failing: Spanned<String>,
    /// How long they must fail together before the alert opens (default 0: at once).
    #[serde(rename = "for")]
    pub(super) hold: Option<Spanned<String>>,
}

/// Where a probe runs and how its locations' results combine.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// The locations that run it, as `--location` names them.
    pub locations: Vec<String>,
    /// Without one, any failing location's result counts as the probe's own.
    pub quorum: Option<Quorum>,
}

impl Loader<'_> {
    /// `storage: postgres:`, its DSN resolved and parsed (never shown in an error).
    pub(super) fn postgres(
        &mut self,
        file: &std::path::Path,
        spec: &PostgresSpec,
    ) -> Option<Arc<Postgres>> {
        let dsn = &spec.dsn;
        let text = match Secret::resolve(dsn) {
            Ok(secret) => secret,
            Err(m) => {
                self.error(file, Some(dsn.pos), format!("storage: postgres: dsn: {m}"));
                return None;
            }
        };
        let mut timeouts = crate::cluster::pg::Timeouts::default();
        let lease = self.duration(file, "storage: postgres: lease", spec.lease.as_ref());
        let membership = self.duration(
            file,
            "storage: postgres: membership_timeout",
            spec.membership_timeout.as_ref(),
        );
        if spec.lease.is_some() && lease.is_none()
            || spec.membership_timeout.is_some() && membership.is_none()
        {
            return None;
        }
        timeouts.lease = lease.unwrap_or(timeouts.lease);
        timeouts.membership = membership.unwrap_or(timeouts.membership);
        match Postgres::new(text.expose(), dsn.pos, self.ctx) {
            Ok(mut pg) => {
                pg.timeouts = timeouts;
                Some(Arc::new(pg))
            }
            Err(m) => {
                self.error(file, Some(dsn.pos), format!("storage: postgres: dsn: {m}"));
                None
            }
        }
    }
}

/// Validates `locations:` and `quorum:` of one entry; problems are `(pos, message)` with the
/// key path.
pub(super) fn placement(
    entry_pos: Pos,
    locations: Option<&Vec<Spanned<String>>>,
    quorum: Option<&QuorumSpec>,
    shared: bool,
    problems: &mut Vec<(Pos, String)>,
) -> Option<Box<Placement>> {
    let Some(locations) = locations else {
        if let Some(q) = quorum {
            problems.push((
                q.min_failing.pos,
                "quorum: needs `locations:` (the locations whose results it counts)".into(),
            ));
        }
        return None;
    };
    let start = problems.len();
    if locations.is_empty() {
        problems.push((entry_pos, "locations: list at least one location".into()));
    }
    let mut names: Vec<String> = Vec::with_capacity(locations.len());
    for l in locations {
        if !valid_location(l) {
            problems.push((
                l.pos,
                format!(
                    "locations: {:?}: use letters, digits and _ . - (at most 63)",
                    l.value
                ),
            ));
        } else if names.contains(&l.value) {
            problems.push((l.pos, format!("locations: {:?} is listed twice", l.value)));
        } else {
            names.push(l.value.clone());
        }
    }
    if !shared && let Some(first) = locations.first() {
        problems.push((
            first.pos,
            "locations: replicas in several locations share results through `storage: postgres:`; add it".into(),
        ));
    }
    let quorum = quorum.and_then(|q| build_quorum(q, locations.len(), problems));
    (problems.len() == start).then(|| {
        Box::new(Placement {
            locations: names,
            quorum,
        })
    })
}

/// Whether `name` may name a location (also checked for `--location`).
pub fn valid_location(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

fn build_quorum(
    spec: &QuorumSpec,
    locations: usize,
    problems: &mut Vec<(Pos, String)>,
) -> Option<Quorum> {
    let k = &spec.min_failing;
    let min_failing = if let Some(p) = k.value.trim().strip_suffix('%') {
        match p.trim().parse::<f64>() {
            Ok(p) if p > 0.0 && p <= 100.0 => Some(MinFailing::Percent(p)),
            _ => {
                problems.push((
                    k.pos,
                    format!(
                        "quorum: min_failing: {:?}: a percentage is more than 0% and at most 100%",
                        k.value
                    ),
                ));
                None
            }
        }
    } else {
        match k.value.trim().parse::<u32>() {
            Ok(n) if n >= 1 && n as usize <= locations => Some(MinFailing::Count(n)),
            Ok(n) => {
                problems.push((
                    k.pos,
                    format!("quorum: min_failing: {n} must be between 1 and the {locations} location(s) listed"),
                ));
                None
            }
            Err(_) => {
                problems.push((
                    k.pos,
                    format!(
                        "quorum: min_failing: {:?}: expected a count (2) or a percentage (\"50%\")",
                        k.value
                    ),
                ));
                None
            }
        }
    };
    let hold = match &spec.hold {
        None => Some(std::time::Duration::ZERO),
        Some(text) => match parse_duration(text) {
            Ok(d) => Some(d),
            Err(m) => {
                problems.push((text.pos, format!("quorum: for: {m}")));
                None
            }
        },
    };
    let (min_failing, hold) = (min_failing?, hold?);
    Some(Quorum { min_failing, hold })
}

fn count_or_percent(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "A count of locations (2) or a share of them (\"50%\").",
        "anyOf": [
            {"type": "integer", "minimum": 1},
            {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*%\\s*$"}
        ]
    })
}
