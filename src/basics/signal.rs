//! What a signal is: the named number a probe run produces (`latency`, `rss`, …), its unit,
//! the metric family its latest value is exported as, and whether a process restart starts
//! its history over. Each probe kind declares its signals in a table of these; the drift
//! config, the metrics exposition, the probe state and the API read those tables instead of
//! matching on kind or signal names.

pub use super::format::Unit;

/// One metric family: name, type and help text.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: &'static str,
    pub help: &'static str,
}

/// A family of the per-probe gauge kind, for the signal tables.
pub const fn gauge(name: &'static str, help: &'static str) -> Family {
    Family {
        name,
        kind: "gauge",
        help,
    }
}

/// The number a query returned, shared by the kinds that run one (`postgres:` with `query:`,
/// `prometheus:`), so dashboards read one family whichever source the number came from.
pub const QUERY_VALUE: Family = gauge(
    "probe_query_value",
    "The number a query probe (postgres query:, prometheus:) returned.",
);

/// One signal a probe kind produces.
#[derive(Debug)]
pub struct Signal {
    pub name: &'static str,
    pub unit: Unit,
    /// The per-probe family its latest value is exported as (none: exported otherwise, like
    /// `latency` through `probe_duration_seconds`, or not at all).
    pub family: Option<&'static Family>,
    /// Whether `drift:` may watch it.
    pub watchable: bool,
    /// Whether a restart of the watched process starts its history over (a new process has
    /// a new memory and fd baseline).
    pub rebaseline_on_restart: bool,
    /// Whether its family reads 0 for a run that never produced it (blackbox_exporter's
    /// `probe_http_status_code 0` for a refused connection), instead of the series vanishing.
    pub zero_when_absent: bool,
}

impl Signal {
    /// A watchable signal exported as `family`.
    pub const fn new(name: &'static str, unit: Unit, family: Option<&'static Family>) -> Signal {
        Signal {
            name,
            unit,
            family,
            watchable: true,
            rebaseline_on_restart: false,
            zero_when_absent: false,
        }
    }

    /// Exported as 0 when a run did not get as far as producing it.
    pub const fn zero_when_absent(mut self) -> Signal {
        self.zero_when_absent = true;
        self
    }

    /// Exported, but not something `drift:` can watch.
    pub const fn exported_only(mut self) -> Signal {
        self.watchable = false;
        self
    }

    /// Its history starts over when the process restarts.
    pub const fn per_process(mut self) -> Signal {
        self.rebaseline_on_restart = true;
        self
    }
}

/// What the rest of the house knows of one probe kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The key in a probe entry and the `kind` label: `http`, `tcp`, …
    pub name: &'static str,
    pub signals: &'static [Signal],
    /// The signal that best says how such a probe is doing when nothing is watched.
    pub headline: &'static str,
    /// Whether a run goes over the network, so that the daemon's own connectivity (its
    /// canaries) is an implicit parent of the probe.
    pub network: bool,
}

impl KindInfo {
    pub fn signal(&self, name: &str) -> Option<&'static Signal> {
        self.signals.iter().find(|s| s.name == name)
    }

    /// The signals `drift:` may watch.
    pub fn watchable(&self) -> impl Iterator<Item = &'static Signal> {
        self.signals.iter().filter(|s| s.watchable)
    }
}
