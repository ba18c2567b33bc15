//! Probe files: finding them, reading them, and turning them into a validated [`Config`].
//!
//! Every `*.yaml`/`*.yml` under the given paths is read and merged. Each top-level section and
//! each probe entry is read on its own, so a mistake in one does not hide a mistake in the
//! next: [`load`] returns *every* error, each with `file:line:col`, the probe name and the
//! field. Probes are built here (through [`Probe::build`]), so nothing at run time meets an
//! invalid config. This module reads files and the environment (for secrets) and nothing else.
//!
//! This file owns the sources (a path's probe files, or text given directly), [`load`] and the
//! validated types it returns. Beside it: `loader.rs` reads the files section by section and
//! builds the server, storage, defaults and alerting sections; `probe_entry.rs` builds one probe
//! entry (name, labels, interval and timeout, kind, alert rule, watches); `alerting.rs` and
//! `drift.rs` validate what their sections and an entry's `alert:`, `drift:` and `slo:` say;
//! `schema.rs` describes a probe file as a JSON Schema, from the same types.

pub mod alerting;
mod blackbox;
pub mod cluster;
pub mod drift;
mod loader;
pub mod oncall;
mod probe_entry;
mod schema;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use self::loader::Loader;
use crate::alert::{Policy, Rule, Silence};
use crate::basics::units::Secret;
use crate::basics::yaml::Pos;
use crate::notify::Notifier;
use crate::probe::{BuildContext, Probe};
use drift::Watch;

pub use self::schema::schema;

/// Where `slowburn run` looks when no `-c` is given.
pub const DEFAULT_PATH: &str = "probes";
/// The probe file compiled into the binary, used when `probes/` does not exist.
pub const EMBEDDED: &str = include_str!("../../probes/local.yaml");
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Below a millisecond not even a loopback connect completes: every run would time out.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A validated configuration: every probe built and ready to run.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub probes: Vec<ProbeConfig>,
    pub alerting: Alerting,
    pub files: Vec<FileSummary>,
    /// `watchdog:`: the dead-man's switch this daemon pings while healthy.
    pub watchdog: Option<crate::watchdog::WatchdogConfig>,
    /// What `slowburn check` warns about (a route that cannot match, an unused policy).
    pub warnings: Vec<ConfigError>,
    /// `modules:` (blackbox syntax), served at `/probe`.
    pub modules: Arc<crate::blackbox::Modules>,
    /// The `targets_file:`s the probes were expanded from, watched like the probe files.
    pub targets_files: Vec<PathBuf>,
}

/// Notifiers, escalation policies and silences from the probe files.
#[derive(Debug, Default)]
pub struct Alerting {
    pub notifiers: Vec<Arc<Notifier>>,
    pub policies: HashMap<String, Policy>,
    pub silences: Vec<Silence>,
    /// `people:` and `schedules:`.
    pub directory: crate::oncall::Directory,
    /// `routes:`, in order.
    pub routes: Vec<crate::oncall::Route>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Bearer token for write endpoints; none means writes are refused.
    pub api_token: Option<Secret>,
    /// `ping_listen`: a second address serving only the heartbeat ping routes.
    pub ping_listen: Option<SocketAddr>,
    /// `canary:`: probes of this daemon's own connectivity, implicit parents of every network
    /// probe.
    pub canary: Vec<String>,
    /// `external_url`: where people reach this daemon; pages then carry signed links.
    pub external_url: Option<String>,
    /// `link_key`: the HMAC key of those links; none means one generated and kept in the store.
    pub link_key: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
    /// `storage: postgres:`: the database replicas share; none for one machine.
    pub postgres: Option<Arc<crate::cluster::Postgres>>,
}

/// One probe with its schedule and labels.
#[derive(Debug)]
pub struct ProbeConfig {
    pub name: String,
    /// The probe's own labels. Keys and values are interned: 100,000 probes labelled
    /// `team: payments` share one `team` and one `payments`.
    pub labels: Box<[(Arc<str>, Arc<str>)]>,
    pub interval: Duration,
    pub timeout: Duration,
    pub probe: Arc<Probe>,
    /// `alert:`: when failures page, and whom (boxed: most probes have none, and an inline
    /// rule would cost each of them 88 bytes).
    pub alert: Option<Box<Rule>>,
    /// Signals watched for slow accumulation (`drift:`, `slo:`).
    pub watches: Vec<Watch>,
    /// `depends_on:`: probes whose failure holds this probe's new alerts.
    pub depends_on: Vec<String>,
    /// `locations:` and `quorum:`: where it runs and how the locations' results combine.
    pub placement: Option<Box<cluster::Placement>>,
    /// The file it was defined in (shared by every probe of that file), and where.
    pub file: Arc<Path>,
    pub pos: Pos,
}

/// What one file contributed, for `slowburn check`.
#[derive(Debug)]
pub struct FileSummary {
    pub path: PathBuf,
    pub kinds: BTreeMap<&'static str, usize>,
}

impl FileSummary {
    pub fn probes(&self) -> usize {
        self.kinds.values().sum()
    }
}

/// One mistake in a probe file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub pos: Option<Pos>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pos {
            Some(pos) => write!(
                f,
                "{}:{}:{}: {}",
                self.file.display(),
                pos.line,
                pos.col,
                self.message
            ),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

/// Where probe files come from: paths on disk, or text given directly (the embedded default,
/// tests).
#[derive(Debug, Clone)]
pub enum Source {
    Paths(Vec<PathBuf>),
    Text { name: String, text: String },
}

impl Source {
    /// The files a source reads, for watching them for changes.
    pub fn files(&self) -> Result<Vec<PathBuf>, Vec<ConfigError>> {
        match self {
            Source::Text { .. } => Ok(Vec::new()),
            Source::Paths(paths) => {
                let mut files = Vec::new();
                let mut errors = Vec::new();
                for path in paths {
                    match expand(path) {
                        Ok(found) => files.extend(found),
                        Err(e) => errors.push(e),
                    }
                }
                if errors.is_empty() {
                    Ok(files)
                } else {
                    Err(errors)
                }
            }
        }
    }
}

/// Reads, merges and validates probe files; returns every error found.
pub fn load(source: &Source, ctx: &BuildContext) -> Result<Config, Vec<ConfigError>> {
    let texts: Vec<(PathBuf, String)> = match source {
        Source::Text { name, text } => vec![(PathBuf::from(name), text.clone())],
        Source::Paths(_) => {
            let mut texts = Vec::new();
            let mut errors = Vec::new();
            for file in source.files()? {
                match std::fs::read_to_string(&file) {
                    Ok(text) => texts.push((file, text)),
                    Err(e) => errors.push(ConfigError {
                        file: file.clone(),
                        pos: None,
                        message: format!("cannot read: {e}"),
                    }),
                }
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            texts
        }
    };
    let mut loader = Loader::new(ctx);
    for (file, text) in &texts {
        loader.read_file(file, text);
    }
    loader.finish()
}

/// The `*.yaml`/`*.yml` files of a path: the file itself, or a directory's files (not its
/// subdirectories), sorted.
fn expand(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let err = |message: String| ConfigError {
        file: path.to_path_buf(),
        pos: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| err(format!("cannot read: {e}")))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(format!("cannot list: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no *.yaml or *.yml files in this directory".into()));
    }
    Ok(files)
}

impl ProbeConfig {
    /// `file:line:col` where the probe is defined.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.pos.line, self.pos.col)
    }
}
