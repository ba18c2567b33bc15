//! The sections blackbox_exporter users bring: top-level `modules:` (blackbox's own syntax,
//! read by `crate::blackbox::module`) and a probe entry's `targets:` / `targets_file:`,
//! which expand one entry into one probe per target, each labelled `target` (and `instance`
//! unless the entry or the target's group sets it).
//!
//! A target fills the key of the entry's kind that the kinds table names (`url`, `address`,
//! `server`), or is the target of the entry's `module:`. This file reads and expands; each
//! probe it makes is built like any other by `probe_entry.rs`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::loader::Loader;
use super::probe_entry::ProbeEntry;
use crate::basics::yaml::{self, Node, Pos, Spanned, Value};
use crate::blackbox::{Module, ModuleSpec, Modules, targets};
use crate::probe::{self, KindSpecs, Probe};

/// A module read from one file, not yet validated.
pub(super) struct PendingModule {
    file: PathBuf,
    source: String,
    name: Spanned<String>,
    spec: Spanned<ModuleSpec>,
}

impl ProbeEntry {
    /// Whether the entry is expanded into one probe per target.
    pub(super) fn lists_targets(&self) -> bool {
        self.targets.is_some() || self.targets_file.is_some() || self.module.is_some()
    }
}

impl Loader<'_> {
    /// Reads `modules:`, each module on its own so one mistake hides no other.
    pub(super) fn modules_section(&mut self, file: &Path, text: &str, node: &Node) {
        let Value::Map(entries) = &node.value else {
            if !node
                .as_str()
                .is_some_and(|t| t.is_empty() || t == "~" || t == "null")
            {
                self.error(
                    file,
                    Some(node.pos),
                    "`modules` maps module names to modules",
                );
            }
            return;
        };
        for (key, value) in entries {
            let name = key.as_str().unwrap_or("").to_string();
            let context = format!("module {name:?}: ");
            if let Some(spec) = self.read::<ModuleSpec>(file, value, &context) {
                self.module_specs.push(PendingModule {
                    file: file.to_path_buf(),
                    source: block_at(text, key.pos),
                    name: Spanned {
                        pos: key.pos,
                        value: name,
                    },
                    spec: Spanned {
                        pos: value.pos,
                        value: spec,
                    },
                });
            }
        }
    }

    /// Validates every module read; names are unique across files.
    pub(super) fn build_modules(&mut self) -> Arc<Modules> {
        let mut built: HashMap<String, Arc<Module>> = HashMap::new();
        let mut first: HashMap<String, (PathBuf, Pos)> = HashMap::new();
        for pending in std::mem::take(&mut self.module_specs) {
            let name = pending.name.value.clone();
            if let Some((file, pos)) = first.get(&name) {
                let message = format!(
                    "module {name:?}: duplicate name, first defined at {}:{}:{}",
                    file.display(),
                    pos.line,
                    pos.col
                );
                self.error(&pending.file, Some(pending.name.pos), message);
                continue;
            }
            first.insert(name.clone(), (pending.file.clone(), pending.name.pos));
            match Module::new(&name, pending.spec, self.ctx) {
                Ok(module) => {
                    built.insert(name, Arc::new(module.with_source(pending.source)));
                }
                Err(errors) => {
                    self.spec_errors(&pending.file, &format!("module {name:?}: "), errors);
                    // Known, so entries that name it report nothing more.
                    self.failed_modules.push(name);
                }
            }
        }
        Arc::new(Modules::new(built, Some(self.ctx.clone())))
    }

    /// The probe a `module:` entry runs against one target, its kind and the module's
    /// timeout; a module that does not exist is an error at the entry's `module:`.
    pub(super) fn module_probe(
        &mut self,
        name: &Spanned<String>,
        target: &str,
    ) -> (
        Result<Probe, Vec<crate::probe::SpecError>>,
        &'static str,
        Option<std::time::Duration>,
    ) {
        let refuse = |message: String| Err(vec![probe::SpecError::new(name.pos, "", message)]);
        let Some(module) = self.modules.get(&name.value).cloned() else {
            if self.failed_modules.contains(&name.value) {
                return (Err(Vec::new()), "", None);
            }
            let mut known = self.modules.names();
            known.extend(self.failed_modules.iter().map(String::as_str));
            known.sort_unstable();
            let known = known.join(", ");
            let message = if known.is_empty() {
                format!(
                    "module: no module {:?}: there is no `modules:` section",
                    name.value
                )
            } else {
                format!("module: no module {:?}; modules: {known}", name.value)
            };
            return (refuse(message), "", None);
        };
        let kind = module.prober.kind();
        match module.probe(target, self.ctx) {
            Ok(probe) => (Ok(probe), kind, module.timeout),
            Err(message) => (refuse(format!("target {target:?}: {message}")), kind, None),
        }
    }

    /// Expands an entry with `targets:`/`targets_file:` into one pending probe per target.
    pub(super) fn expand_targets(
        &mut self,
        file: &Path,
        pos: Pos,
        own: &Node,
        kinds: &Node,
        context: &str,
    ) {
        let throwaway = RefCell::new(Vec::new());
        let Ok(entry) = yaml::from_node_beside::<ProbeEntry>(own, &throwaway, probe::KIND_KEYS)
        else {
            return;
        };
        let given: Vec<&str> = match &kinds.value {
            Value::Map(entries) => entries.iter().filter_map(|(k, _)| k.as_str()).collect(),
            _ => Vec::new(),
        };
        let fail = |loader: &mut Self, at: Pos, message: String| {
            loader.error(file, Some(at), format!("{context}{message}"));
        };
        let target_key = match (&entry.module, given.as_slice()) {
            (Some(_), []) => None,
            (Some(module), kinds) => {
                let message = format!(
                    "module: give a module or a kind, not both ({})",
                    kinds.join(", ")
                );
                return fail(self, module.pos, message);
            }
            (None, [kind]) => match probe::TARGET_KEYS.iter().find(|(k, _)| k == kind) {
                Some((_, Some(key))) => Some(*key),
                _ => {
                    let takes: Vec<&str> = probe::TARGET_KEYS
                        .iter()
                        .filter(|(_, key)| key.is_some())
                        .map(|(k, _)| *k)
                        .collect();
                    let message = format!(
                        "targets: a {kind} probe is not pointed at targets; give a module or one of: {}",
                        takes.join(", ")
                    );
                    return fail(self, pos, message);
                }
            },
            (None, _) => {
                let message = format!(
                    "targets: give `module:` or exactly one kind whose address the target fills ({})",
                    given.join(", ")
                );
                return fail(self, pos, message);
            }
        };
        if entry.targets.is_none() && entry.targets_file.is_none() {
            let at = entry.module.as_ref().map_or(pos, |m| m.pos);
            return fail(
                self,
                at,
                "module: a module entry needs `targets:` or `targets_file:`".into(),
            );
        }
        if let (Some(key), Value::Map(entries)) = (target_key, &kinds.value)
            && let Some((_, Value::Map(fields))) = entries.first().map(|(k, v)| (k, &v.value))
            && let Some((written, _)) = fields.iter().find(|(k, _)| k.as_str() == Some(key))
        {
            let message = format!("{key}: each target fills it; remove it or the targets");
            return fail(self, written.pos, message);
        }
        if let Some((key, _)) = entry.labels.iter().find(|(k, _)| k.as_str() == "target") {
            let message = "labels: `target` is set to each target's address".to_string();
            return fail(self, key.pos, message);
        }
        let mut list: Vec<targets::Target> = entry
            .targets
            .iter()
            .flatten()
            .map(|t| targets::Target {
                address: t.value.clone(),
                labels: Vec::new(),
                pos: t.pos,
            })
            .collect();
        if let Some(path) = &entry.targets_file {
            let resolved = beside(file, &path.value);
            self.targets_files.push(resolved.clone());
            match targets::read(&resolved) {
                Ok(found) => list.extend(found),
                Err(errors) => {
                    for (at, message) in errors {
                        match at {
                            Some(at) => self.error(&resolved, Some(at), message),
                            None => fail(self, path.pos, format!("targets_file: {message}")),
                        }
                    }
                    return;
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for target in list {
            if !seen.insert(target.address.clone()) {
                continue;
            }
            let Ok(mut expanded) =
                yaml::from_node_beside::<ProbeEntry>(own, &throwaway, probe::KIND_KEYS)
            else {
                return;
            };
            expanded.name.value = format!("{}/{}", entry.name.value, probe_name(&target.address));
            let has_instance = expanded.labels.keys().any(|k| k.as_str() == "instance")
                || target.labels.iter().any(|(k, _)| k == "instance");
            let mut labels = target.labels.clone();
            labels.push(("target".into(), target.address.clone()));
            if !has_instance {
                labels.push(("instance".into(), target.address.clone()));
            }
            for (key, value) in labels {
                expanded.labels.insert(
                    Spanned {
                        pos: target.pos,
                        value: key,
                    },
                    value,
                );
            }
            match target_key {
                None => {
                    let module = expanded.module.clone().unwrap_or_else(|| Spanned {
                        pos,
                        value: String::new(),
                    });
                    self.pend(
                        file,
                        pos,
                        expanded,
                        KindSpecs::default(),
                        Some((module, target.address)),
                    );
                }
                Some(key) => {
                    let node = with_target(kinds, key, &target);
                    let Some(specs) = self.read::<KindSpecs>(file, &node, context) else {
                        return;
                    };
                    self.pend(file, pos, expanded, specs, None);
                }
            }
        }
    }
}

/// The YAML block that starts at `pos`: its line and the lines after it indented deeper.
fn block_at(text: &str, pos: Pos) -> String {
    let mut lines = text.lines().skip(pos.line.saturating_sub(1));
    let Some(first) = lines.next() else {
        return String::new();
    };
    let indent = pos.col.saturating_sub(1);
    let mut block = vec![first.get(indent..).unwrap_or(first).to_string()];
    for line in lines {
        let deeper = line.len() - line.trim_start().len() > indent;
        if !line.trim().is_empty() && !deeper {
            break;
        }
        block.push(line.get(indent..).unwrap_or(line.trim_start()).to_string());
    }
    while block.last().is_some_and(|l| l.trim().is_empty()) {
        block.pop();
    }
    block.join("\n")
}

/// `path` as written in `file`: a relative path is beside the file.
fn beside(file: &Path, path: &str) -> PathBuf {
    let path = PathBuf::from(path);
    match file.parent() {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path,
    }
}

/// A target as part of a probe name: the characters names allow kept, others `_`.
fn probe_name(target: &str) -> String {
    target
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-/".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The kinds node with the target written as `key:` of its one kind section.
fn with_target(kinds: &Node, key: &str, target: &targets::Target) -> Node {
    let mut node = kinds.clone();
    if let Value::Map(entries) = &mut node.value
        && let Some((_, section)) = entries.first_mut()
    {
        if !matches!(section.value, Value::Map(_)) {
            section.value = Value::Map(Vec::new());
        }
        if let Value::Map(fields) = &mut section.value {
            let scalar = |text: &str| Node {
                pos: target.pos,
                value: Value::Scalar {
                    text: text.to_string(),
                    plain: false,
                },
            };
            fields.push((scalar(key), scalar(&target.address)));
        }
    }
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_block_is_its_line_and_the_deeper_ones() {
        let text = "modules:\n  http_2xx:\n    prober: http\n\n    http:\n      method: GET\n  tcp: {prober: tcp}\nprobes: []\n";
        assert_eq!(
            block_at(text, Pos { line: 2, col: 3 }),
            "http_2xx:\n  prober: http\n\n  http:\n    method: GET"
        );
        assert_eq!(
            block_at(text, Pos { line: 7, col: 3 }),
            "tcp: {prober: tcp}"
        );
    }

    #[test]
    fn targets_become_names_probes_allow() {
        assert_eq!(
            probe_name("https://a.example.com/x?y=1&z"),
            "https://a.example.com/x_y_1_z"
        );
        assert_eq!(probe_name("[::1]:53"), "_::1_:53");
    }
}
