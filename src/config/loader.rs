//! Reading probe files into a [`Config`]: each file parsed (probes streamed one by one as the
//! parser completes them), each top-level section and each probe entry deserialized on its own
//! so one mistake hides no other, every error kept with its position, and at the end the server,
//! storage, defaults and alerting sections built and every probe handed to `probe_entry.rs`.
//!
//! This file reads the YAML it is given and the environment (for secrets); finding and opening
//! files belongs to `mod.rs`, and what one probe entry means to `probe_entry.rs`.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::alerting::{self, PolicySpec, SilenceSpec};
use super::oncall::{self, PersonSpec, RouteSpec, ScheduleSpec};
use super::probe_entry::{Pending, ProbeEntry};
use super::{
    Alerting, Config, ConfigError, DEFAULT_INTERVAL, DEFAULT_LISTEN, FileSummary, MIN_TIMEOUT,
    ServerConfig, StorageConfig,
};
use crate::basics::units::{Secret, parse_duration};
use crate::basics::yaml::{self, Node, Pos, Spanned, Value};
use crate::notify::{Notifier, NotifierEntry, NotifyContext};
use crate::probe::{self, BuildContext, KindSpecs};
use crate::watchdog::{WatchdogConfig, WatchdogSpec};

/// Everything read so far from the probe files, section by section, with every error.
pub(super) struct Loader<'c> {
    pub(super) ctx: &'c BuildContext,
    errors: Vec<ConfigError>,
    server: Option<(PathBuf, Pos, ServerSpec)>,
    storage: Option<(PathBuf, Pos, StorageSpec)>,
    defaults: Option<(PathBuf, Pos, DefaultsSpec)>,
    watchdog: Option<(PathBuf, Pos, WatchdogSpec)>,
    pending: Vec<Pending>,
    /// The path of the file being read, shared by its probes.
    pending_file: Option<Arc<Path>>,
    /// Label keys and values seen so far, shared by every probe that uses them.
    interned: std::collections::HashSet<Arc<str>>,
    notifiers: Vec<(PathBuf, NotifierEntry)>,
    policies: Vec<(PathBuf, PolicySpec)>,
    silences: Vec<(PathBuf, SilenceSpec)>,
    people: Vec<(PathBuf, PersonSpec)>,
    schedules: Vec<(PathBuf, ScheduleSpec)>,
    routes: Vec<(PathBuf, RouteSpec)>,
    /// Every policy's file, position and name, for the unused-policy warning.
    policy_names: Vec<(PathBuf, Pos, String)>,
    /// `server.canary` as written, checked once every probe is known.
    server_canary: Option<(PathBuf, Vec<Spanned<String>>)>,
    files: Vec<PathBuf>,
    /// `modules:` as read, then as built (before the probes that name them).
    pub(super) module_specs: Vec<super::blackbox::PendingModule>,
    pub(super) modules: Arc<crate::blackbox::Modules>,
    /// Modules that failed to build, so entries naming them add no second error.
    pub(super) failed_modules: Vec<String>,
    /// The `targets_file:`s read, watched for changes.
    pub(super) targets_files: Vec<PathBuf>,
}

impl<'c> Loader<'c> {
    pub(super) fn new(ctx: &'c BuildContext) -> Self {
        Loader {
            ctx,
            errors: Vec::new(),
            server: None,
            storage: None,
            defaults: None,
            watchdog: None,
            pending: Vec::new(),
            pending_file: None,
            interned: Default::default(),
            notifiers: Vec::new(),
            policies: Vec::new(),
            silences: Vec::new(),
            people: Vec::new(),
            schedules: Vec::new(),
            routes: Vec::new(),
            policy_names: Vec::new(),
            server_canary: None,
            files: Vec::new(),
            module_specs: Vec::new(),
            modules: Default::default(),
            failed_modules: Vec::new(),
            targets_files: Vec::new(),
        }
    }

    /// The shared copy of `text`.
    pub(super) fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.interned.get(text) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(text);
        self.interned.insert(shared.clone());
        shared
    }

    /// Records the errors of a spec's build, each as `{context}{field}: {message}`.
    pub(super) fn spec_errors(
        &mut self,
        file: &Path,
        context: &str,
        errors: Vec<crate::basics::SpecError>,
    ) {
        for e in errors {
            let field = if e.field.is_empty() {
                String::new()
            } else {
                format!("{}: ", e.field)
            };
            self.error(file, Some(e.pos), format!("{context}{field}{}", e.message));
        }
    }

    pub(super) fn error(&mut self, file: &Path, pos: Option<Pos>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: file.to_path_buf(),
            pos,
            message: message.into(),
        });
    }

    pub(super) fn read_file(&mut self, file: &Path, text: &str) {
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
                "watchdog" => self.section(file, value, |l, f, p, s| {
                    set_once(&mut l.watchdog, &mut l.errors, "watchdog", f, p, s)
                }),
                "probes" => self.probes(file, value),
                "modules" => self.modules_section(file, text, value),
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
                "people" => {
                    for (_, spec) in self.list::<PersonSpec>(file, value, "people") {
                        self.people.push((file.to_path_buf(), spec));
                    }
                }
                "schedules" => {
                    for (_, spec) in self.list::<ScheduleSpec>(file, value, "schedules") {
                        self.schedules.push((file.to_path_buf(), spec));
                    }
                }
                "routes" => {
                    for (_, spec) in self.list::<RouteSpec>(file, value, "routes") {
                        self.routes.push((file.to_path_buf(), spec));
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
    pub(super) fn read<T: for<'a> Deserialize<'a>>(
        &mut self,
        file: &Path,
        node: &Node,
        context: &str,
    ) -> Option<T> {
        self.read_beside(file, node, context, &[])
    }

    /// As `read`, for a struct that shares its mapping with the keys `beside`.
    pub(super) fn read_beside<T: for<'a> Deserialize<'a>>(
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
        if let Some(entry) = &entry
            && entry.lists_targets()
        {
            return self.expand_targets(file, pos, &own, &kinds, &context);
        }
        let kinds = self.read::<KindSpecs>(file, &kinds, &context);
        if let (Some(entry), Some(kinds)) = (entry, kinds) {
            self.pend(file, pos, entry, kinds, None);
        }
    }

    /// Keeps an entry read until every file is read.
    pub(super) fn pend(
        &mut self,
        file: &Path,
        pos: Pos,
        entry: ProbeEntry,
        kinds: KindSpecs,
        module: Option<(Spanned<String>, String)>,
    ) {
        let shared = match &self.pending_file {
            Some(shared) if **shared == *file => shared.clone(),
            _ => self.pending_file.insert(Arc::from(file)).clone(),
        };
        self.pending.push(Pending {
            file: shared,
            pos,
            entry,
            kinds,
            module,
        });
    }

    pub(super) fn finish(mut self) -> Result<Config, Vec<ConfigError>> {
        let (default_interval, default_timeout) = self.defaults();
        let server = self.server_config();
        let watchdog = self.watchdog_config();
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
            postgres: None,
        };
        let mut storage = storage;
        // Whether replicas share a database, as written: a DSN that does not resolve is its
        // own error, and must not also make every `locations:` one.
        let mut shared = false;
        if let Some((file, _, spec)) = self.storage.take()
            && let Some(pg) = &spec.postgres
        {
            shared = true;
            storage.postgres = self.postgres(&file, pg);
        }
        let alerting = self.alerting();
        self.modules = self.build_modules();
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
        let mut deps = Vec::new();
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
            if !pending.entry.depends_on.is_empty() {
                let parents = pending.entry.depends_on.clone();
                deps.push((pending.file.to_path_buf(), name.clone(), parents));
            }
            if let Some(probe) = self.build(
                pending,
                default_interval,
                default_timeout,
                &policy_names,
                shared,
            ) && let Some(summary) = summaries.iter_mut().find(|s| *s.path == *probe.file)
            {
                *summary.kinds.entry(probe.probe.kind()).or_default() += 1;
                probes.push(probe);
            }
        }
        let names: HashSet<String> = seen.into_keys().collect();
        self.errors
            .extend(oncall::check_dependencies(&deps, &names));
        if let Some((file, spec)) = &self.server_canary {
            for c in spec {
                if !names.contains(&c.value) {
                    self.errors.push(ConfigError {
                        file: file.clone(),
                        pos: Some(c.pos),
                        message: format!("server: canary: no probe named {:?}", c.value),
                    });
                }
            }
        }
        let warnings = oncall::warnings(&self.routes, &probes, &self.policy_names);
        // A file of modules alone is a blackbox_exporter stand-in, served at `/probe`.
        if probes.is_empty() && self.errors.is_empty() && self.modules.is_empty() {
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
                watchdog,
                warnings,
                modules: self.modules,
                targets_files: self.targets_files,
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

    pub(super) fn duration(
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
            ping_listen: None,
            canary: Vec::new(),
            external_url: None,
            link_key: None,
        };
        let Some((file, _, spec)) = self.server.take() else {
            return config;
        };
        config.canary = spec.canary.iter().map(|c| c.value.clone()).collect();
        if let Some(url) = &spec.external_url {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    config.external_url = Some(url.trim_end_matches('/').to_string());
                }
                _ => self.error(
                    &file,
                    Some(url.pos),
                    format!(
                        "server: external_url: {:?} is not an http(s) URL such as https://slowburn.example.com",
                        url.value
                    ),
                ),
            }
        }
        if let Some(key) = &spec.link_key {
            match Secret::resolve(key) {
                Ok(secret) => config.link_key = Some(secret),
                Err(m) => self.error(&file, Some(key.pos), format!("server: link_key: {m}")),
            }
        }
        self.server_canary = Some((file.clone(), spec.canary.clone()));
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
        if let Some(listen) = &spec.ping_listen {
            match listen.parse::<SocketAddr>() {
                Ok(addr) => config.ping_listen = Some(addr),
                Err(_) => self.error(
                    &file,
                    Some(listen.pos),
                    format!(
                        "server: ping_listen: invalid address {:?}: expected IP:port",
                        listen.value
                    ),
                ),
            }
        }
        config
    }

    fn watchdog_config(&mut self) -> Option<WatchdogConfig> {
        let (file, _, spec) = self.watchdog.take()?;
        match WatchdogConfig::new(&spec) {
            Ok(config) => Some(config),
            Err(errors) => {
                for (pos, message) in errors {
                    self.error(&file, Some(pos), message);
                }
                None
            }
        }
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
                                self.spec_errors(&file, &format!("notifier {name:?}: "), errors)
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
        self.oncall(&mut alerting, &names);
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

    /// Builds people and schedules, then the policies (whose steps name them and notifiers),
    /// then routes (which name policies).
    fn oncall(&mut self, alerting: &mut Alerting, notifiers: &HashSet<String>) {
        let people = std::mem::take(&mut self.people);
        let mut problems = Vec::new();
        alerting::unique_names(people.iter().map(|(_, p)| &p.name), "person", &mut problems);
        self.problems(people.first().map(|(f, _)| f.clone()), problems);
        for (file, spec) in &people {
            let mut problems = Vec::new();
            let person = oncall::person(spec, notifiers, &mut problems);
            self.problems(Some(file.clone()), problems);
            alerting
                .directory
                .people
                .insert(person.name.clone(), person);
        }
        let schedules = std::mem::take(&mut self.schedules);
        let mut problems = Vec::new();
        let names = schedules.iter().map(|(_, s)| &s.name);
        alerting::unique_names(names, "schedule", &mut problems);
        self.problems(schedules.first().map(|(f, _)| f.clone()), problems);
        for (file, spec) in &schedules {
            let mut problems = Vec::new();
            let schedule = oncall::schedule(spec, &alerting.directory.people, &mut problems);
            self.problems(Some(file.clone()), problems);
            alerting
                .directory
                .schedules
                .insert(schedule.name.clone(), schedule);
        }
        let policies = std::mem::take(&mut self.policies);
        let mut problems = Vec::new();
        alerting::unique_names(
            policies.iter().map(|(_, p)| &p.name),
            "policy",
            &mut problems,
        );
        self.problems(policies.first().map(|(f, _)| f.clone()), problems);
        let directory = &alerting.directory;
        let unknown = |t: &crate::oncall::Target| {
            oncall::unknown_target(t, notifiers, &directory.people, &directory.schedules)
        };
        let mut built = Vec::new();
        for (file, spec) in policies {
            let mut problems = Vec::new();
            let policy = alerting::policy(&spec, &unknown, &mut problems);
            let context = format!("policy {:?}: ", spec.name.value);
            for (pos, message) in problems {
                self.error(&file, Some(pos), format!("{context}{message}"));
            }
            self.policy_names
                .push((file, spec.name.pos, policy.name.clone()));
            built.push(policy);
        }
        for policy in built {
            alerting.policies.insert(policy.name.clone(), policy);
        }
        let names: HashSet<String> = alerting.policies.keys().cloned().collect();
        for (i, (file, spec)) in self.routes.iter().enumerate() {
            let mut problems = Vec::new();
            alerting
                .routes
                .push(oncall::route(i, spec, &names, &mut problems));
            let file = file.clone();
            for (pos, message) in problems {
                self.errors.push(ConfigError {
                    file: file.clone(),
                    pos: Some(pos),
                    message,
                });
            }
        }
    }

    fn problems(&mut self, file: Option<PathBuf>, problems: Vec<(Pos, String)>) {
        for (pos, message) in problems {
            let file = file.clone().unwrap_or_default();
            self.error(&file, Some(pos), message);
        }
    }
}

pub(super) const SECTIONS: &[&str] = &[
    "server",
    "storage",
    "defaults",
    "probes",
    "notifiers",
    "policies",
    "silences",
    "watchdog",
    "people",
    "schedules",
    "routes",
    "modules",
];

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerSpec {
    /// `host:port` for /metrics, the API and the status page (default 127.0.0.1:9464).
    listen: Option<Spanned<String>>,
    /// The token that write calls of the API need: `env:NAME` or `file:PATH`.
    api_token: Option<Spanned<String>>,
    ping_listen: Option<Spanned<String>>,
    /// Probes of this daemon's own connectivity (its resolver, a well-known address): while
    /// one fails, the new alerts of every network probe are held, so a prober that lost its
    /// network pages once.
    #[serde(default)]
    canary: Vec<Spanned<String>>,
    /// Where people reach this daemon (`https://slowburn.example.com`): every page then
    /// carries signed one-click links to acknowledge and resolve.
    external_url: Option<Spanned<String>>,
    /// The HMAC key of those links: `env:NAME` or `file:PATH`; default a key generated once
    /// and kept in the store.
    link_key: Option<Spanned<String>>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageSpec {
    /// The SQLite store; a relative path is beside this file (default slowburn.db).
    path: Option<Spanned<String>>,
    /// The PostgreSQL that replicas share for alerts, escalation, membership and results.
    postgres: Option<super::cluster::PostgresSpec>,
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DefaultsSpec {
    /// The interval of probes that give none (`30s`, `5m`).
    interval: Option<Spanned<String>>,
    /// The timeout of probes that give none; shorter than their interval.
    timeout: Option<Spanned<String>>,
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
