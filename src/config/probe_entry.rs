//! One probe entry from read to built: its own keys as written ([`ProbeEntry`]), the entry held
//! until every file is read ([`Pending`]), and the building of it into a [`ProbeConfig`]: the
//! name and labels checked, the interval and timeout with their defaults and floors, the kind
//! built through [`Probe::build`], the alert rule and the drift and SLO watches.
//!
//! This file sees one entry at a time: duplicate names, sections and files are `loader.rs`'s.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::alerting::{self, AlertSpec};
use super::drift::{self, DriftEntrySpec};
use super::loader::Loader;
use super::{DEFAULT_TIMEOUT, MIN_INTERVAL, MIN_TIMEOUT, ProbeConfig};
use crate::alert::ProbeInfo;
use crate::basics::units;
use crate::basics::yaml::{Pos, Spanned};
use crate::probe::{KindSpecs, Probe};

/// A probe entry's own keys as written (its kind sections are read apart, as `KindSpecs`).
#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ProbeEntry {
    /// Unique across every file: letters, digits and `_ . : - /`.
    pub(super) name: Spanned<String>,
    /// Extra labels on every series and alert of the probe.
    #[serde(default)]
    pub(super) labels: BTreeMap<Spanned<String>, String>,
    /// How often it runs (`30s`, `5m`); default `defaults.interval`.
    pub(super) interval: Option<Spanned<String>>,
    /// The hard deadline of one run; shorter than the interval.
    pub(super) timeout: Option<Spanned<String>>,
    /// When failed runs open an alert and whom it pages.
    pub(super) alert: Option<AlertSpec>,
    /// The signals watched for slow drift, each with its detectors.
    #[serde(default)]
    pub(super) drift: BTreeMap<Spanned<String>, DriftEntrySpec>,
    /// The success objective whose burn rate pages (`99.9%`).
    pub(super) slo: Option<Spanned<String>>,
    /// Probes this one needs: while one of them fails, this probe's new alerts are held.
    #[serde(default)]
    pub(super) depends_on: Vec<Spanned<String>>,
    /// A `modules:` entry (blackbox syntax) run against each target, instead of a kind.
    pub(super) module: Option<Spanned<String>>,
    /// One probe per target: a URL, `host:port` or DNS server filling the kind's address
    /// (`url`, `address`, `server`), or the target of `module`.
    pub(super) targets: Option<Vec<Spanned<String>>>,
    /// A Prometheus file_sd file (JSON or YAML) of more targets and their labels; a relative
    /// path is beside this file. Re-read when it changes.
    pub(super) targets_file: Option<Spanned<String>>,
    /// The locations (`--location` of the replicas) that run it.
    pub(super) locations: Option<Vec<Spanned<String>>>,
    /// How many locations must fail at once, and for how long, before it pages.
    pub(super) quorum: Option<super::cluster::QuorumSpec>,
}

/// A probe read but not yet built (defaults are applied once every file is read).
pub(super) struct Pending {
    pub(super) file: Arc<Path>,
    pub(super) pos: Pos,
    pub(super) entry: ProbeEntry,
    /// The entry's kind sections (`http:`, `tcp:`, …), read apart from its own keys.
    pub(super) kinds: KindSpecs,
    /// For an entry of `module:` and targets: the module and this probe's target.
    pub(super) module: Option<(Spanned<String>, String)>,
}

impl ProbeConfig {
    /// What the alert engine knows of this probe: its rule, its labels with `probe` and
    /// `kind`, its target, and its parents (`depends_on:`, and the daemon's `canary` probes
    /// for a network probe that is not one of them).
    pub fn alert_info(&self, canary: &[String]) -> ProbeInfo {
        let mut labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        labels.insert("probe".into(), self.name.clone());
        labels.insert("kind".into(), self.probe.kind().to_string());
        let mut parents = self.depends_on.clone();
        if self.probe.info().network && !canary.contains(&self.name) {
            parents.extend(
                canary
                    .iter()
                    .filter(|c| !self.depends_on.contains(c))
                    .cloned(),
            );
        }
        ProbeInfo {
            rule: self.alert.as_deref().cloned(),
            labels,
            target: self.probe.target(),
            parents,
        }
    }
}

impl Loader<'_> {
    /// Builds one probe entry: its name, labels, interval and timeout (with the defaults), its
    /// kind, its alert rule and its watches; `None` when anything in it is wrong.
    pub(super) fn build(
        &mut self,
        pending: Pending,
        default_interval: Duration,
        default_timeout: Option<Duration>,
        policies: &HashSet<String>,
        shared: bool,
    ) -> Option<ProbeConfig> {
        let Pending {
            file,
            pos,
            entry,
            kinds,
            module,
        } = pending;
        let name = entry.name.value.clone();
        let ctx = format!("probe {name:?}: ");
        let mut ok = true;
        if name.is_empty()
            || name.len() > 200
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-/".contains(c))
        {
            self.error(
                &file,
                Some(entry.name.pos),
                format!("{ctx}name: use letters, digits and _ . : - / (at most 200)"),
            );
            ok = false;
        }
        let mut labels = Vec::new();
        for (key, value) in &entry.labels {
            let valid = key
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if key.starts_with("__") {
                self.error(
                    &file,
                    Some(key.pos),
                    format!(
                        "{ctx}labels: {:?}: names starting with `__` are reserved by Prometheus",
                        key.value
                    ),
                );
                ok = false;
            } else if !valid || key.is_empty() {
                self.error(
                    &file,
                    Some(key.pos),
                    format!(
                        "{ctx}labels: invalid label name {:?}: use [a-zA-Z_][a-zA-Z0-9_]*",
                        key.value
                    ),
                );
                ok = false;
            } else if crate::metrics::LABEL_NAMES.contains(&key.as_str()) {
                self.error(
                    &file,
                    Some(key.pos),
                    format!("{ctx}labels: `{}` is set by slowburn itself", key.value),
                );
                ok = false;
            } else {
                labels.push((self.intern(&key.value), self.intern(value)));
            }
        }
        let (built, kind, module_timeout) = match &module {
            Some((name, target)) => self.module_probe(name, target),
            None => {
                let kind = kinds.given().first().copied().unwrap_or("");
                (Probe::build(kinds, pos, self.ctx), kind, None)
            }
        };
        let default_timeout = module_timeout.or(default_timeout);
        let probe = match built {
            Ok(probe) => Some(probe),
            Err(errors) => {
                for e in errors {
                    let field = if e.field.is_empty() {
                        String::new()
                    } else {
                        format!("{kind}.{}: ", e.field)
                    };
                    self.error(&file, Some(e.pos), format!("{ctx}{field}{}", e.message));
                }
                None
            }
        };
        let interval =
            match self.duration(&file, &format!("{ctx}interval"), entry.interval.as_ref()) {
                Some(d) if d < MIN_INTERVAL => {
                    self.error(
                        &file,
                        entry.interval.as_ref().map(|i| i.pos),
                        format!("{ctx}interval: must be at least 100ms"),
                    );
                    ok = false;
                    d
                }
                Some(d) => d,
                None if entry.interval.is_some() => {
                    ok = false;
                    default_interval
                }
                None => probe
                    .as_ref()
                    .and_then(Probe::check_every)
                    .unwrap_or(default_interval),
            };
        let timeout = match &entry.timeout {
            Some(text) => match self.duration(&file, &format!("{ctx}timeout"), Some(text)) {
                Some(t) if t < MIN_TIMEOUT => {
                    self.error(
                        &file,
                        Some(text.pos),
                        format!("{ctx}timeout: must be at least 1ms"),
                    );
                    ok = false;
                    t
                }
                Some(t) if t >= interval => {
                    let message = format!(
                        "{ctx}timeout: {} must be shorter than the interval {}",
                        text.value,
                        units::format_duration(interval)
                    );
                    self.error(&file, Some(text.pos), message);
                    ok = false;
                    t
                }
                Some(t) => t,
                None => {
                    ok = false;
                    DEFAULT_TIMEOUT
                }
            },
            // An inherited timeout never reaches the next run: it is capped at 80% of the interval.
            None => default_timeout
                .unwrap_or(DEFAULT_TIMEOUT)
                .min(interval.mul_f64(0.8)),
        };
        let mut problems = Vec::new();
        let alert = entry
            .alert
            .as_ref()
            .map(|spec| Box::new(alerting::rule(spec, policies, &mut problems)));
        let spec_signals = probe.as_ref().map(Probe::spec_signals).unwrap_or_default();
        let watches = drift::watches(
            kind,
            &spec_signals,
            interval.as_secs_f64(),
            &entry.drift,
            entry.slo.as_ref(),
            &mut problems,
        );
        let placement = super::cluster::placement(
            pos,
            entry.locations.as_ref(),
            entry.quorum.as_ref(),
            shared,
            &mut problems,
        );
        ok &= problems.is_empty();
        for (pos, message) in problems {
            self.error(&file, Some(pos), format!("{ctx}{message}"));
        }
        let probe = probe.filter(|_| ok)?;
        Some(ProbeConfig {
            name,
            labels: labels.into_boxed_slice(),
            interval,
            timeout,
            probe: Arc::new(probe),
            alert,
            watches,
            depends_on: entry.depends_on.iter().map(|d| d.value.clone()).collect(),
            placement,
            file,
            pos,
        })
    }
}
