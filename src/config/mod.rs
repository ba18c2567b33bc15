//! Probe files: finding them, reading them, and turning them into a validated [`Config`].
//!
//! Every `*.yaml`/`*.yml` under the given paths is read and merged. Each top-level section and
//! each probe entry is read on its own, so a mistake in one does not hide a mistake in the
//! next: [`load`] returns *every* error, each with `file:line:col`, the probe name and the
//! field. Probes are built here (through [`Probe::build`]), so nothing at run time meets an
//! invalid config. This module reads files and the environment (for secrets) and nothing else.

pub mod alerting;
pub mod drift;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use crate::alert::{Policy, Rule, Silence};
use crate::basics::units::{self, Secret, parse_duration};
use crate::basics::yaml::{self, Node, Pos, Spanned, Value};
use crate::notify::{Notifier, NotifierEntry, NotifyContext};
use crate::probe::{self, BuildContext, KindSpecs, Probe};
use alerting::{AlertSpec, PolicySpec, SilenceSpec};
use drift::{DriftEntrySpec, Watch};

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
const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "defaults",
    "probes",
    "notifiers",
    "policies",
    "silences",
];

/// A validated configuration: every probe built and ready to run.
#[derive(Debug)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub probes: Vec<ProbeConfig>,
    pub alerting: Alerting,
    pub files: Vec<FileSummary>,
}

/// Notifiers, escalation policies and silences from the probe files.
#[derive(Debug, Default)]
pub struct Alerting {
    pub notifiers: Vec<Arc<Notifier>>,
    pub policies: HashMap<String, Policy>,
    pub silences: Vec<Silence>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Bearer token for write endpoints; none means writes are refused.
    pub api_token: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub path: PathBuf,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSpec {
    listen: Option<Spanned<String>>,
    api_token: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSpec {
    path: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsSpec {
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProbeEntry {
    name: Spanned<String>,
    #[serde(default)]
    labels: BTreeMap<Spanned<String>, String>,
    interval: Option<Spanned<String>>,
    timeout: Option<Spanned<String>>,
    alert: Option<AlertSpec>,
    #[serde(default)]
    drift: BTreeMap<Spanned<String>, DriftEntrySpec>,
    slo: Option<Spanned<String>>,
}

/// Splits a mapping node in two: the entries whose key is one of `keys`, and the rest. A
/// node that is not a mapping is returned whole as the rest.
fn split_keys(node: Node, keys: &[&str]) -> (Node, Node) {
    let Node { pos, value } = node;
    match value {
        Value::Map(entries) => {
            let (picked, rest): (Vec<_>, Vec<_>) = entries
                .into_iter()
                .partition(|(k, _)| k.as_str().is_some_and(|k| keys.contains(&k)));
            (
                Node {
                    pos,
                    value: Value::Map(picked),
                },
                Node {
                    pos,
                    value: Value::Map(rest),
                },
            )
        }
        value => (
            Node {
                pos,
                value: Value::Map(Vec::new()),
            },
            Node { pos, value },
        ),
    }
}

/// A probe read but not yet built (defaults are applied once every file is read).
struct Pending {
    file: Arc<Path>,
    pos: Pos,
    entry: ProbeEntry,
    /// The entry's kind sections (`http:`, `tcp:`, …), read apart from its own keys.
    kinds: KindSpecs,
}

struct Loader<'c> {
    ctx: &'c BuildContext,
    errors: Vec<ConfigError>,
    server: Option<(PathBuf, Pos, ServerSpec)>,
    storage: Option<(PathBuf, Pos, StorageSpec)>,
    defaults: Option<(PathBuf, Pos, DefaultsSpec)>,
    pending: Vec<Pending>,
    /// The path of the file being read, shared by its probes.
    pending_file: Option<Arc<Path>>,
    /// Label keys and values seen so far, shared by every probe that uses them.
    interned: std::collections::HashSet<Arc<str>>,
    notifiers: Vec<(PathBuf, NotifierEntry)>,
    policies: Vec<(PathBuf, PolicySpec)>,
    silences: Vec<(PathBuf, SilenceSpec)>,
    files: Vec<PathBuf>,
}

impl<'c> Loader<'c> {
    fn new(ctx: &'c BuildContext) -> Self {
        Loader {
            ctx,
            errors: Vec::new(),
            server: None,
            storage: None,
            defaults: None,
            pending: Vec::new(),
            pending_file: None,
            interned: Default::default(),
            notifiers: Vec::new(),
            policies: Vec::new(),
            silences: Vec::new(),
            files: Vec::new(),
        }
    }

    /// The shared copy of `text`.
    fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.interned.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.interned.insert(shared.clone());
        shared
    }

    fn error(&mut self, file: &Path, pos: Option<Pos>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: file.to_path_buf(),
            pos,
            message: message.into(),
        });
    }

    fn read_file(&mut self, file: &Path, text: &str) {
        self.files.push(file.to_path_buf());
        // Probes are read one by one as the parser completes them (see `parse_streaming`).
        let mut index = 0;
        let parsed = yaml::parse_streaming(text, "probes", |item| {
            self.probe(file, index, item);
            index += 1;
        });
        let root = match parsed {
            Ok(root) => root,
            Err(e) => return self.error(file, e.pos, e.to_string()),
        };
        let entries = match &root.value {
            Value::Map(entries) => entries,
            Value::Scalar { text, .. } if text.is_empty() => return,
            _ => {
                return self.error(
                    file,
                    Some(root.pos),
                    "a probe file is a mapping with `probes:` and other sections",
                );
            }
        };
        let mut sections: HashMap<&str, Pos> = HashMap::new();
        for (key, value) in entries {
            let name = key.as_str().unwrap_or("");
            if let Some(first) = sections.get(name) {
                // Two `probes:` would otherwise be merged silently (YAML says keys are unique).
                let message = format!(
                    "duplicate key `{name}`, first at {}:{}",
                    first.line, first.col
                );
                self.error(file, Some(key.pos), message);
                continue;
            }
            sections.insert(name, key.pos);
            match name {
                "server" => self.section(file, value, |l, f, p, s| {
                    set_once(&mut l.server, &mut l.errors, "server", f, p, s)
                }),
                "storage" => self.section(file, value, |l, f, p, s| {
                    set_once(&mut l.storage, &mut l.errors, "storage", f, p, s)
                }),
                "defaults" => self.section(file, value, |l, f, p, s| {
                    set_once(&mut l.defaults, &mut l.errors, "defaults", f, p, s)
                }),
                "probes" => self.probes(file, value),
                "notifiers" => {
                    for (_, entry) in self.list::<NotifierEntry>(file, value, "notifiers") {
                        self.notifiers.push((file.to_path_buf(), entry));
                    }
                }
                "policies" => {
                    for (_, spec) in self.list::<PolicySpec>(file, value, "policies") {
                        self.policies.push((file.to_path_buf(), spec));
                    }
                }
                "silences" => {
                    for (_, spec) in self.list::<SilenceSpec>(file, value, "silences") {
                        self.silences.push((file.to_path_buf(), spec));
                    }
                }
                other => {
                    let message = format!(
                        "unknown section `{other}`, expected one of: {}",
                        SECTIONS.join(", ")
                    );
                    self.error(file, Some(key.pos), message);
                }
            }
        }
    }

    fn section<T: for<'a> Deserialize<'a>>(
        &mut self,
        file: &Path,
        node: &Node,
        store: impl FnOnce(&mut Self, &Path, Pos, T),
    ) {
        if let Some(spec) = self.read(file, node, "") {
            store(self, file, node.pos, spec);
        }
    }

    /// Deserializes one node, recording every unknown key and the first structural error.
    fn read<T: for<'a> Deserialize<'a>>(
        &mut self,
        file: &Path,
        node: &Node,
        context: &str,
    ) -> Option<T> {
        self.read_beside(file, node, context, &[])
    }

    /// As `read`, for a struct that shares its mapping with the keys `beside`.
    fn read_beside<T: for<'a> Deserialize<'a>>(
        &mut self,
        file: &Path,
        node: &Node,
        context: &str,
        beside: &[&str],
    ) -> Option<T> {
        let unknown = RefCell::new(Vec::new());
        let result = yaml::from_node_beside::<T>(node, &unknown, beside);
        for e in unknown.into_inner() {
            self.error(file, e.pos, format!("{context}{e}"));
        }
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                self.error(file, e.pos.or(Some(node.pos)), format!("{context}{e}"));
                None
            }
        }
    }

    /// Reads each item of a list section on its own, so one bad item hides no other.
    fn list<T: for<'a> Deserialize<'a>>(
        &mut self,
        file: &Path,
        node: &Node,
        section: &str,
    ) -> Vec<(usize, T)> {
        let Value::Seq(items) = &node.value else {
            if !node
                .as_str()
                .is_some_and(|t| t.is_empty() || t == "~" || t == "null")
            {
                self.error(file, Some(node.pos), format!("`{section}` is a list"));
            }
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let context = match item.get("name").and_then(Node::as_str) {
                Some(name) => format!("{section} {name:?}: "),
                None => format!("{section}[{i}]: "),
            };
            if let Some(value) = self.read::<T>(file, item, &context) {
                out.push((i, value));
            }
        }
        out
    }

    fn probes(&mut self, file: &Path, node: &Node) {
        let Value::Seq(items) = &node.value else {
            if !matches!(&node.value, Value::Scalar { text, plain: true } if text.is_empty() || text == "~" || text == "null")
            {
                self.error(file, Some(node.pos), "`probes` is a list of probes");
            }
            return;
        };
        for (i, item) in items.iter().enumerate() {
            self.probe(file, i, item.clone());
        }
    }

    fn probe(&mut self, file: &Path, index: usize, item: Node) {
        let context = match item.get("name").and_then(Node::as_str) {
            Some(name) => format!("probe {name:?}: "),
            None => format!("probes[{index}]: "),
        };
        let pos = item.pos;
        // The kind sections come from the kinds table, so they are read apart from the
        // entry's own keys (serde cannot flatten into a struct that denies unknown keys).
        let (kinds, own) = split_keys(item, probe::KIND_KEYS);
        let entry = self.read_beside::<ProbeEntry>(file, &own, &context, probe::KIND_KEYS);
        let kinds = self.read::<KindSpecs>(file, &kinds, &context);
        if let (Some(entry), Some(kinds)) = (entry, kinds) {
            let shared = match &self.pending_file {
                Some(shared) if **shared == *file => shared.clone(),
                _ => self.pending_file.insert(Arc::from(file)).clone(),
            };
            self.pending.push(Pending {
                file: shared,
                pos,
                entry,
                kinds,
            });
        }
    }

    fn finish(mut self) -> Result<Config, Vec<ConfigError>> {
        let (default_interval, default_timeout) = self.defaults();
        let server = self.server_config();
        let storage = StorageConfig {
            path: match &self.storage {
                Some((file, pos, spec)) => {
                    let text = spec.path.as_ref().map_or("slowburn.db", |p| p.as_str());
                    let path = PathBuf::from(text);
                    let path = match file.parent() {
                        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => {
                            dir.join(path)
                        }
                        _ => path,
                    };
                    // `run` would pass `check` and then fail to open the store.
                    if path.is_dir() {
                        let at = spec.path.as_ref().map_or(*pos, |p| p.pos);
                        let (file, message) = (
                            file.clone(),
                            format!(
                                "storage: path: {text:?} is a directory; name the database file"
                            ),
                        );
                        self.error(&file, Some(at), message);
                    }
                    path
                }
                None => PathBuf::from("slowburn.db"),
            },
        };
        let alerting = self.alerting();
        let policy_names: std::collections::HashSet<String> =
            alerting.policies.keys().cloned().collect();
        let mut seen: HashMap<String, (Arc<Path>, Pos)> = HashMap::new();
        let mut probes = Vec::new();
        let mut summaries: Vec<FileSummary> = self
            .files
            .iter()
            .map(|path| FileSummary {
                path: path.clone(),
                kinds: BTreeMap::new(),
            })
            .collect();
        for pending in std::mem::take(&mut self.pending) {
            let name = pending.entry.name.value.clone();
            if let Some((first_file, first_pos)) = seen.get(&name) {
                let message = format!(
                    "probe {name:?}: duplicate name, first defined at {}:{}:{}",
                    first_file.display(),
                    first_pos.line,
                    first_pos.col
                );
                self.error(&pending.file, Some(pending.entry.name.pos), message);
                continue;
            }
            seen.insert(name.clone(), (pending.file.clone(), pending.entry.name.pos));
            if let Some(probe) =
                self.build(pending, default_interval, default_timeout, &policy_names)
                && let Some(summary) = summaries.iter_mut().find(|s| *s.path == *probe.file)
            {
                *summary.kinds.entry(probe.probe.kind()).or_default() += 1;
                probes.push(probe);
            }
        }
        if probes.is_empty() && self.errors.is_empty() {
            let file = self.files.first().cloned().unwrap_or_default();
            self.error(&file, None, "no probes defined");
        }
        if self.errors.is_empty() {
            return Ok(Config {
                server,
                storage,
                probes,
                alerting,
                files: summaries,
            });
        }
        // Report in reading order: file by file, top to bottom.
        let order: HashMap<PathBuf, usize> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.clone(), i))
            .collect();
        self.errors.sort_by_key(|e| {
            (
                order.get(&e.file).copied().unwrap_or(usize::MAX),
                e.pos.map(|p| (p.line, p.col)),
            )
        });
        Err(self.errors)
    }

    fn defaults(&mut self) -> (Duration, Option<Duration>) {
        let Some((file, _, spec)) = self.defaults.take() else {
            return (DEFAULT_INTERVAL, None);
        };
        let interval = self
            .duration(&file, "defaults: interval", spec.interval.as_ref())
            .unwrap_or(DEFAULT_INTERVAL);
        let timeout = self.duration(&file, "defaults: timeout", spec.timeout.as_ref());
        if let (Some(t), Some(text)) = (timeout, &spec.timeout)
            && t < MIN_TIMEOUT
        {
            self.error(
                &file,
                Some(text.pos),
                "defaults: timeout: must be at least 1ms",
            );
        }
        (interval, timeout)
    }

    fn duration(
        &mut self,
        file: &Path,
        what: &str,
        text: Option<&Spanned<String>>,
    ) -> Option<Duration> {
        let text = text?;
        match parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(
                    file,
                    Some(text.pos),
                    format!("{what}: must be more than zero"),
                );
                None
            }
            Ok(d) => Some(d),
            Err(m) => {
                self.error(file, Some(text.pos), format!("{what}: {m}"));
                None
            }
        }
    }

    fn server_config(&mut self) -> ServerConfig {
        let mut config = ServerConfig {
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address is valid"),
            api_token: None,
        };
        let Some((file, _, spec)) = self.server.take() else {
            return config;
        };
        if let Some(listen) = &spec.listen {
            match listen.parse::<SocketAddr>() {
                Ok(addr) => config.listen = addr,
                Err(_) => self.error(
                    &file,
                    Some(listen.pos),
                    format!(
                        "server: listen: invalid address {:?}: expected IP:port",
                        listen.value
                    ),
                ),
            }
        }
        if let Some(token) = &spec.api_token {
            match Secret::resolve(token) {
                Ok(secret) => config.api_token = Some(secret),
                Err(m) => self.error(&file, Some(token.pos), format!("server: api_token: {m}")),
            }
        }
        config
    }

    /// Builds notifiers, then policies (which name notifiers), then silences.
    fn alerting(&mut self) -> Alerting {
        let mut alerting = Alerting::default();
        let notifiers = std::mem::take(&mut self.notifiers);
        let mut problems = Vec::new();
        let names = alerting::unique_names(
            notifiers.iter().map(|(_, e)| &e.name),
            "notifier",
            &mut problems,
        );
        self.problems(notifiers.first().map(|(f, _)| f.clone()), problems);
        if !notifiers.is_empty() {
            match NotifyContext::new() {
                Ok(ctx) => {
                    for (file, entry) in notifiers {
                        let name = entry.name.value.clone();
                        match Notifier::new(entry, &ctx) {
                            Ok(notifier) => alerting.notifiers.push(Arc::new(notifier)),
                            Err(errors) => {
                                for e in errors {
                                    let field = if e.field.is_empty() {
                                        String::new()
                                    } else {
                                        format!("{}: ", e.field)
                                    };
                                    self.error(
                                        &file,
                                        Some(e.pos),
                                        format!("notifier {name:?}: {field}{}", e.message),
                                    );
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    let file = notifiers[0].0.clone();
                    self.error(&file, None, e.to_string());
                }
            }
        }
        let policies = std::mem::take(&mut self.policies);
        let mut problems = Vec::new();
        alerting::unique_names(
            policies.iter().map(|(_, p)| &p.name),
            "policy",
            &mut problems,
        );
        self.problems(policies.first().map(|(f, _)| f.clone()), problems);
        for (file, spec) in policies {
            let mut problems = Vec::new();
            let policy = alerting::policy(&spec, &names, &mut problems);
            let context = format!("policy {:?}: ", spec.name.value);
            for (pos, message) in problems {
                self.error(&file, Some(pos), format!("{context}{message}"));
            }
            alerting.policies.insert(policy.name.clone(), policy);
        }
        for (file, spec) in std::mem::take(&mut self.silences) {
            let mut problems = Vec::new();
            let silence = alerting::silence(&spec, &mut problems);
            for (pos, message) in problems {
                self.error(&file, Some(pos), format!("silence: {message}"));
            }
            alerting.silences.push(silence);
        }
        alerting
    }

    fn problems(&mut self, file: Option<PathBuf>, problems: Vec<(Pos, String)>) {
        for (pos, message) in problems {
            let file = file.clone().unwrap_or_default();
            self.error(&file, Some(pos), message);
        }
    }

    fn build(
        &mut self,
        pending: Pending,
        default_interval: Duration,
        default_timeout: Option<Duration>,
        policies: &std::collections::HashSet<String>,
    ) -> Option<ProbeConfig> {
        let Pending {
            file,
            pos,
            entry,
            kinds,
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
                None => default_interval,
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
        let kind = kinds.given().first().copied().unwrap_or("");
        let probe = match Probe::build(kinds, pos, self.ctx) {
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
        let mut problems = Vec::new();
        let alert = entry
            .alert
            .as_ref()
            .map(|spec| Box::new(alerting::rule(spec, policies, &mut problems)));
        let watches = drift::watches(
            kind,
            interval.as_secs_f64(),
            &entry.drift,
            entry.slo.as_ref(),
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
            file,
            pos,
        })
    }
}

impl ProbeConfig {
    /// `file:line:col` where the probe is defined.
    pub fn location(&self) -> String {
        format!("{}:{}:{}", self.file.display(), self.pos.line, self.pos.col)
    }
}

fn set_once<T>(
    slot: &mut Option<(PathBuf, Pos, T)>,
    errors: &mut Vec<ConfigError>,
    name: &str,
    file: &Path,
    pos: Pos,
    spec: T,
) {
    if let Some((first, first_pos, _)) = slot {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            pos: Some(pos),
            message: format!(
                "`{name}` is already set at {}:{}:{}; set it in one file only",
                first.display(),
                first_pos.line,
                first_pos.col
            ),
        });
    } else {
        *slot = Some((file.to_path_buf(), pos, spec));
    }
}
