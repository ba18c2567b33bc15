//! blackbox_exporter compatibility: the `modules:` section read in blackbox's own syntax
//! (`module.rs`), the exposition of one on-demand probe in blackbox's names and meanings
//! (`exposition.rs`), and Prometheus file_sd target lists (`targets.rs`).
//!
//! A module is never a new kind of probe: it is translated into the spec of slowburn's own
//! `http:`, `tcp:` or `dns:` kind for each target, so `/probe`, target lists and scheduled
//! probes run the same code. This module knows nothing of the HTTP server or the store; the
//! `/probe` route (`server/probe_endpoint.rs`) and the config loader call it.

pub mod exposition;
pub mod module;
pub mod targets;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use self::module::{Module, ModuleSpec, Prober};
use crate::probe::{BuildContext, Probe};

/// Built probes kept per (module, target): Prometheus asks for the same targets every
/// scrape, and building one compiles its regexes. Past this many the cache starts over.
const CACHE_LIMIT: usize = 10_000;

/// The modules of a config, with what it takes to build their probes on demand.
pub struct Modules {
    modules: HashMap<String, Arc<Module>>,
    ctx: Option<BuildContext>,
    /// Per module name, per target: looked up by `&str`, so a hit allocates nothing.
    cache: Mutex<HashMap<String, HashMap<String, Arc<Probe>>>>,
}

impl std::fmt::Debug for Modules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Modules")
            .field("modules", &self.modules.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Modules {
    fn default() -> Self {
        Modules::new(HashMap::new(), None)
    }
}

impl Modules {
    pub fn new(modules: HashMap<String, Arc<Module>>, ctx: Option<BuildContext>) -> Self {
        Modules {
            modules,
            ctx,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Module>> {
        self.modules.get(name)
    }

    /// The module names, sorted, for messages.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.modules.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn is_empty(&self) -> bool {
        self.modules.is_empty()
    }

    /// The probe `module` runs against `target`, built once and then reused.
    pub fn probe(&self, module: &Module, target: &str) -> Result<Arc<Probe>, String> {
        if let Some(probe) = self.lock().get(&module.name).and_then(|m| m.get(target)) {
            return Ok(probe.clone());
        }
        let ctx = self
            .ctx
            .as_ref()
            .ok_or_else(|| "no modules are configured".to_string())?;
        let probe = Arc::new(module.probe(target, ctx)?);
        let mut cache = self.lock();
        if cache.values().map(HashMap::len).sum::<usize>() >= CACHE_LIMIT {
            cache.clear();
        }
        cache
            .entry(module.name.clone())
            .or_default()
            .insert(target.to_string(), probe.clone());
        Ok(probe)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Arc<Probe>>>> {
        self.cache.lock().unwrap_or_else(|e| e.into_inner())
    }
}
