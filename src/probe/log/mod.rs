//! The `log:` probe: follows log files (a path or a wildcard) or the systemd journal, counts
//! the records each of its `patterns:` matches per run, and notices error signatures it has
//! never seen.
//!
//! Each pattern is a signal named as the pattern is (`error`, `timeout`), counted per run, so
//! `drift:`, change detection and `expect: {max: {error: 5}}` apply to it as to any signal.
//! The probe keeps where it stopped between runs (a file's identity and offset, or the
//! journal cursor) and hands that on as a checkpoint in its [`Report`]; whoever keeps the
//! checkpoint gives it back through `restore`, so a restart neither loses nor counts twice.
//! Reading per run is capped (`max_read`), and what is left is exported as the lag in bytes.
//! The seams: `tail.rs` follows files, `journal.rs` runs journalctl, `records.rs` turns lines
//! into counted records, `fingerprint.rs` reduces lines to signatures and remembers them.
//! This module knows nothing of alerts, the store or metrics.

mod fingerprint;
mod journal;
mod records;
mod tail;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

pub use fingerprint::NewSignature;
use fingerprint::Signatures;
use journal::Journal;
use records::{Counter, Matcher, Record};
use tail::{Problem, Saved, Tails};

use super::{BuildContext, Failure, SpecError, Trace};
use crate::basics::signal::{Family, KindInfo, Signal, Unit, gauge};
use crate::basics::units::{parse_duration, parse_size};
use crate::basics::yaml::Spanned;

/// Default for `max_line_bytes`.
const DEFAULT_MAX_LINE: u64 = 64 * 1024;
/// Default for `max_read`: enough for a file growing by 100,000 lines a second at a 30 s
/// interval, small enough that one flooded file costs a bounded share of a core per run.
const DEFAULT_MAX_READ: u64 = 512 * 1024 * 1024;
/// How many of the latest matching lines a failure's message shows.
const ALERT_LINES: usize = 3;
/// Patterns are tracked as bits of a `u64` per record.
const MAX_PATTERNS: usize = 64;

/// `log:` as written in a probe file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSpec {
    /// A path, or a path whose file name has `*` or `?`.
    pub file: Option<Spanned<String>>,
    pub journal: Option<Spanned<JournalSpec>>,
    /// Signal name → regex.
    pub patterns: Spanned<BTreeMap<Spanned<String>, Spanned<String>>>,
    #[serde(default)]
    pub exclude: Vec<Spanned<String>>,
    pub multiline_start: Option<Spanned<String>>,
    pub max_line_bytes: Option<Spanned<String>>,
    /// The most read per run; the rest waits for the next run and is exported as lag.
    pub max_read: Option<Spanned<String>>,
    /// `end` (default) or `beginning`: where the very first run starts.
    pub start_at: Option<Spanned<String>>,
    /// Whether matching lines are shown in alerts and `slowburn probe` (default true).
    pub excerpt: Option<bool>,
    pub expect: Option<LogExpectSpec>,
    pub new_signature: Option<Spanned<NewSignatureSpec>>,
}

/// `log.journal:`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JournalSpec {
    pub unit: Option<String>,
    /// A name (`err`) or a number (`3`), or a range (`warning..err`), as `journalctl -p`.
    pub priority: Option<Spanned<String>>,
    /// The journalctl binary (default: `journalctl` on `PATH`).
    pub journalctl: Option<String>,
}

/// `log.expect:`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogExpectSpec {
    /// Pattern → the most records per run.
    #[serde(default)]
    pub max: BTreeMap<Spanned<String>, u64>,
}

/// `log.new_signature:`.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSignatureSpec {
    pub min_count: Option<u64>,
    pub within: Option<Spanned<String>>,
}

/// What a run hands on beside its signals: the checkpoint to keep, the signatures seen for
/// the first time, and counters since the probe was first run.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    pub checkpoint: String,
    pub new_signatures: Vec<NewSignature>,
    pub totals: Totals,
}

/// Counters since the probe was first run (kept in its checkpoint).
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Per pattern, in the order the probe lists them.
    pub matches: Vec<(String, u64)>,
    pub lines: u64,
    pub long_lines: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub new_signatures: u64,
    pub cursor_resets: u64,
}

/// A validated `log:` probe.
#[derive(Debug)]
pub struct LogProbe {
    shared: Arc<Shared>,
    journal: Option<Journal>,
    target: String,
    /// (pattern index, most per run).
    max: Vec<(usize, u64)>,
}

#[derive(Debug)]
struct Shared {
    matcher: Matcher,
    max_line: usize,
    max_read: u64,
    start_at_end: bool,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tails: Option<Tails>,
    cursor: Option<String>,
    record: Record,
    signatures: Signatures,
    totals: Totals,
    /// Whether a checkpoint was restored or a run happened: the first run's signatures are
    /// the baseline.
    started: bool,
    /// What the file reader read and no run has reported yet.
    unreported: Option<Poll>,
}

/// What is kept between runs and across restarts.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Checkpoint {
    #[serde(default)]
    files: Vec<Saved>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    record: Record,
    #[serde(default)]
    seen: Vec<String>,
    #[serde(default)]
    totals: Totals,
}

/// The kind's own signals; a pattern may not take one of these names.
const OWN_SIGNALS: &[&str] = &[
    "lines",
    "long_lines",
    "rotations",
    "truncations",
    "lag_bytes",
    "new_signatures",
    "cursor_resets",
    "success",
];

impl LogProbe {
    pub fn new(spec: Spanned<LogSpec>, _ctx: &BuildContext) -> Result<LogProbe, Vec<SpecError>> {
        let mut errors = Vec::new();
        let mut fail = |pos, field: &str, message: String| {
            errors.push(SpecError::new(pos, field, message));
        };
        let source = match (&spec.file, &spec.journal) {
            (Some(file), None) => match tail::Source::parse(file.trim()) {
                Ok(source) => Some(Ok(source)),
                Err(m) => {
                    fail(file.pos, "file", m);
                    None
                }
            },
            (None, Some(j)) => {
                let priority = j.priority.as_ref().map(|p| p.trim().to_string());
                if let Some(p) = &j.priority
                    && !p.split("..").all(|one| {
                        journal::PRIORITIES.contains(&one) || one.parse::<u8>().is_ok_and(|n| n < 8)
                    })
                {
                    fail(
                        p.pos,
                        "journal.priority",
                        format!(
                            "{:?} is not a priority: 0..7 or one of {}",
                            p.value,
                            journal::PRIORITIES.join(", ")
                        ),
                    );
                }
                Some(Err(Journal {
                    command: PathBuf::from(j.journalctl.as_deref().unwrap_or("journalctl")),
                    unit: j.unit.clone(),
                    priority,
                }))
            }
            (Some(_), Some(_)) => {
                fail(spec.pos, "", "give file or journal, not both".into());
                None
            }
            (None, None) => {
                fail(
                    spec.pos,
                    "",
                    "a log probe reads a file or the journal".into(),
                );
                None
            }
        };
        let mut names = Vec::new();
        let mut regexes = Vec::new();
        for (name, regex) in spec.patterns.iter() {
            let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                fail(
                    name.pos,
                    "patterns",
                    format!(
                        "{:?} is not a signal name: lowercase letters, digits and _",
                        name.value
                    ),
                );
            } else if OWN_SIGNALS.contains(&name.as_str()) {
                fail(
                    name.pos,
                    "patterns",
                    format!(
                        "{:?} is one of the probe's own signals: {}",
                        name.value,
                        OWN_SIGNALS.join(", ")
                    ),
                );
            }
            match Regex::new(regex) {
                Ok(_) => {
                    names.push(intern(name));
                    regexes.push(regex.value.clone());
                }
                Err(e) => fail(
                    regex.pos,
                    &format!("patterns.{}", name.value),
                    regex_words(&e),
                ),
            }
        }
        if spec.patterns.is_empty() {
            fail(
                spec.patterns.pos,
                "patterns",
                "give at least one pattern".into(),
            );
        } else if spec.patterns.len() > MAX_PATTERNS {
            fail(
                spec.patterns.pos,
                "patterns",
                format!("at most {MAX_PATTERNS} patterns"),
            );
        }
        for e in &spec.exclude {
            if let Err(err) = Regex::new(e) {
                fail(e.pos, "exclude", regex_words(&err));
            }
        }
        let start = spec
            .multiline_start
            .as_ref()
            .and_then(|s| match Regex::new(s) {
                Ok(r) => Some(r),
                Err(e) => {
                    fail(s.pos, "multiline_start", regex_words(&e));
                    None
                }
            });
        let mut size = |field: &str, value: &Option<Spanned<String>>, default: u64| match value {
            None => default,
            Some(v) => match parse_size(v.trim()) {
                Ok(0) => {
                    fail(v.pos, field, "must be more than zero".into());
                    default
                }
                Ok(n) => n,
                Err(m) => {
                    fail(v.pos, field, m);
                    default
                }
            },
        };
        let max_line = size("max_line_bytes", &spec.max_line_bytes, DEFAULT_MAX_LINE);
        let max_read = size("max_read", &spec.max_read, DEFAULT_MAX_READ);
        if max_line > 64 * 1024 * 1024 {
            fail(spec.pos, "max_line_bytes", "at most 64MiB".into());
        }
        let start_at_end = match spec.start_at.as_ref().map(|s| (s.pos, s.trim())) {
            None | Some((_, "end")) => true,
            Some((_, "beginning")) => false,
            Some((pos, other)) => {
                fail(
                    pos,
                    "start_at",
                    format!("{other:?} is not one of end, beginning"),
                );
                true
            }
        };
        let mut max = Vec::new();
        for (name, limit) in spec.expect.iter().flat_map(|e| &e.max) {
            match names.iter().position(|n| *n == name.as_str()) {
                Some(i) => max.push((i, *limit)),
                // A pattern with a mistake of its own was reported above.
                None if spec.patterns.keys().any(|k| k.value == name.value) => {}
                None => {
                    let known: Vec<&str> = spec.patterns.keys().map(|k| k.as_str()).collect();
                    fail(
                        name.pos,
                        "expect.max",
                        format!(
                            "{:?} is not one of the patterns: {}",
                            name.value,
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        let signatures = spec.new_signature.as_ref().map(|s| {
            let min_count = s.min_count.unwrap_or(3);
            if min_count == 0 {
                fail(
                    s.pos,
                    "new_signature.min_count",
                    "must be at least 1".into(),
                );
            }
            let within = match &s.within {
                None => 600.0,
                Some(w) => match parse_duration(w) {
                    Ok(d) if !d.is_zero() => d.as_secs_f64(),
                    Ok(_) => {
                        fail(
                            w.pos,
                            "new_signature.within",
                            "must be more than zero".into(),
                        );
                        600.0
                    }
                    Err(m) => {
                        fail(w.pos, "new_signature.within", m);
                        600.0
                    }
                },
            };
            Signatures::new(min_count, within)
        });
        let (Some(source), true) = (source, errors.is_empty()) else {
            return Err(errors);
        };
        let patterns = RegexSet::new(&regexes);
        let exclude = (!spec.exclude.is_empty())
            .then(|| RegexSet::new(spec.exclude.iter().map(|e| e.as_str())));
        let (patterns, exclude) = match (patterns, exclude.transpose()) {
            (Ok(p), Ok(e)) => (p, e),
            (Err(e), _) | (_, Err(e)) => {
                return Err(vec![SpecError::new(spec.pos, "patterns", regex_words(&e))]);
            }
        };
        let excerpt = spec.excerpt.unwrap_or(true);
        let matcher = Matcher::new(
            names.clone(),
            patterns,
            exclude,
            start,
            excerpt,
            signatures.is_some(),
        );
        let totals = Totals {
            matches: names.iter().map(|n| (n.to_string(), 0)).collect(),
            ..Totals::default()
        };
        let (tails, journal, target) = match source {
            Ok(files) => {
                let target = spec
                    .file
                    .as_ref()
                    .map(|f| f.trim().to_string())
                    .unwrap_or_default();
                (
                    Some(Tails::new(files, start_at_end, max_line as usize)),
                    None,
                    target,
                )
            }
            Err(journal) => {
                let target = journal.target();
                (None, Some(journal), target)
            }
        };
        Ok(LogProbe {
            shared: Arc::new(Shared {
                matcher,
                max_line: max_line as usize,
                max_read,
                start_at_end,
                state: Mutex::new(State {
                    tails,
                    cursor: None,
                    record: Record::default(),
                    signatures: signatures.unwrap_or_default(),
                    totals,
                    started: false,
                    unreported: None,
                }),
            }),
            journal,
            target,
            max,
        })
    }

    /// The file, wildcard or journal filter.
    pub fn target(&self) -> String {
        self.target.clone()
    }

    /// The signals named by `patterns:`, which `drift:` may watch beside the kind's own.
    pub fn spec_signals(&self) -> Vec<(&'static str, Unit)> {
        self.shared
            .matcher
            .names
            .iter()
            .map(|n| (*n, Unit::Count))
            .collect()
    }

    /// Where reading stands, as [`restore`](Self::restore) takes it back.
    pub fn checkpoint(&self) -> Option<String> {
        Some(self.shared.lock().checkpoint())
    }

    /// Continues from a checkpoint; `false` (and nothing changed) for one that cannot be
    /// read, so the probe starts as on its first run.
    pub fn restore(&self, checkpoint: &str) -> bool {
        let Ok(saved) = serde_json::from_str::<Checkpoint>(checkpoint) else {
            return false;
        };
        let mut state = self.shared.lock();
        if let Some(tails) = &mut state.tails {
            tails.restore(saved.files);
        }
        state.cursor = saved.cursor;
        state.record = saved.record;
        state.signatures.restore(&saved.seen);
        // Counters carry on, per pattern name, for the patterns this probe still has.
        for (name, total) in &mut state.totals.matches {
            if let Some((_, t)) = saved.totals.matches.iter().find(|(n, _)| n == name) {
                *total = *t;
            }
        }
        let matches = std::mem::take(&mut state.totals.matches);
        state.totals = Totals {
            matches,
            ..saved.totals
        };
        state.started = true;
        true
    }

    pub async fn run(&self, trace: &mut Trace) -> Result<(), Failure> {
        trace.enter("read");
        let now = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let poll = match &self.journal {
            None => {
                let shared = self.shared.clone();
                tokio::task::spawn_blocking(move || shared.poll_files(now))
                    .await
                    .map_err(|e| Failure::Unreadable(format!("the reader stopped: {e}")))?;
                let poll = self.shared.lock().unreported.take();
                poll.ok_or_else(|| Failure::Unreadable("the reader reported nothing".into()))?
            }
            Some(journal) => self.shared.poll_journal(journal, now).await,
        };
        trace.enter("match");
        let names = &self.shared.matcher.names;
        for (name, count) in names.iter().zip(&poll.counts) {
            trace.signal(name, *count as f64);
        }
        trace.signal("lines", poll.lines as f64);
        trace.signal("long_lines", poll.long_lines as f64);
        trace.signal("new_signatures", poll.report.new_signatures.len() as f64);
        if self.journal.is_some() {
            trace.signal("cursor_resets", poll.resets as f64);
        } else {
            trace.signal("rotations", poll.stats.rotations as f64);
            trace.signal("truncations", poll.stats.truncations as f64);
            trace.signal("lag_bytes", poll.stats.lag as f64);
        }
        for line in &poll.excerpts {
            trace.notes.push(format!("match: {line}"));
        }
        for s in &poll.report.new_signatures {
            trace
                .notes
                .push(format!("new signature {}: {}", s.id, s.text));
        }
        trace.log = Some(Box::new(poll.report));
        if let Some(failure) = poll.failure {
            return Err(failure);
        }
        let mut first = None;
        for (i, limit) in &self.max {
            let count = poll.counts[*i];
            let name = names[*i];
            let result = if count > *limit {
                let mut message = format!("{count} in the last run, above max {limit}");
                // The latest matching lines (of any pattern), bounded: an alert shows what
                // the log said, unless `excerpt: false`.
                let shown = poll.excerpts.len().saturating_sub(ALERT_LINES);
                if shown < poll.excerpts.len() {
                    message.push_str(&format!("; last: {}", poll.excerpts[shown..].join(" | ")));
                }
                Err(Failure::Limit {
                    signal: name,
                    message,
                })
            } else {
                Ok(format!("{name}: {count} (max {limit})"))
            };
            if let Some(f) = trace.check("max", result) {
                first.get_or_insert(f);
            }
        }
        first.map_or(Ok(()), Err)
    }
}

/// What one run read.
#[derive(Debug)]
struct Poll {
    counts: Vec<u64>,
    lines: u64,
    long_lines: u64,
    stats: tail::Stats,
    resets: u64,
    excerpts: Vec<String>,
    failure: Option<Failure>,
    report: Report,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the files and leaves what was read in `unreported`, where the run picks it up.
    /// A run cut off by its deadline leaves it there, and the next run reports both.
    fn poll_files(&self, now: f64) {
        let mut state = self.lock();
        let mut counter = Counter::new(&self.matcher);
        let (stats, problem) = match &mut state.tails {
            Some(tails) => tails.poll(self.max_read, &mut counter),
            None => (tail::Stats::default(), None),
        };
        let failure = problem.map(|p| match p {
            Problem::Missing(m) => Failure::Missing(m),
            Problem::Unreadable(m) => Failure::Unreadable(m),
        });
        let mut poll = self.finish(&mut state, counter, stats, 0, failure, now);
        if let Some(earlier) = state.unreported.take() {
            poll.absorb(earlier);
        }
        state.unreported = Some(poll);
    }

    async fn poll_journal(&self, journal: &Journal, now: f64) -> Poll {
        // The state is not held across the child process: runs of one probe never overlap.
        let (mut cursor, mut record) = {
            let state = self.lock();
            (state.cursor.clone(), state.record)
        };
        let mut counter = Counter::new(&self.matcher);
        let read = journal
            .read(
                &mut cursor,
                self.start_at_end,
                self.max_read,
                self.max_line,
                &mut counter,
                &mut record,
            )
            .await;
        let mut state = self.lock();
        state.cursor = cursor;
        state.record = record;
        let (resets, failure) = match read {
            Ok(read) => (read.resets, None),
            Err(f) => (0, Some(f)),
        };
        self.finish(
            &mut state,
            counter,
            tail::Stats::default(),
            resets,
            failure,
            now,
        )
    }

    fn finish(
        &self,
        state: &mut State,
        counter: Counter<'_>,
        stats: tail::Stats,
        resets: u64,
        failure: Option<Failure>,
        now: f64,
    ) -> Poll {
        let learn = !state.started;
        state.started = true;
        state.signatures.observe(&counter.baseline, now, true);
        let new_signatures = state.signatures.observe(&counter.signatures, now, learn);
        let totals = &mut state.totals;
        for ((_, total), count) in totals.matches.iter_mut().zip(&counter.counts) {
            *total += count;
        }
        totals.lines += counter.lines;
        totals.long_lines += counter.long_lines;
        totals.rotations += stats.rotations;
        totals.truncations += stats.truncations;
        totals.new_signatures += new_signatures.len() as u64;
        totals.cursor_resets += resets;
        Poll {
            report: Report {
                checkpoint: state.checkpoint(),
                new_signatures,
                totals: state.totals.clone(),
            },
            counts: counter.counts,
            lines: counter.lines,
            long_lines: counter.long_lines,
            stats,
            resets,
            excerpts: counter.excerpts.into(),
            failure,
        }
    }
}

impl Poll {
    /// Adds what an earlier run read but could not report (it was cut off by its deadline).
    fn absorb(&mut self, earlier: Poll) {
        for (count, more) in self.counts.iter_mut().zip(earlier.counts) {
            *count += more;
        }
        self.lines += earlier.lines;
        self.long_lines += earlier.long_lines;
        self.stats.rotations += earlier.stats.rotations;
        self.stats.truncations += earlier.stats.truncations;
        self.resets += earlier.resets;
        let mut excerpts = earlier.excerpts;
        excerpts.append(&mut self.excerpts);
        let skip = excerpts.len().saturating_sub(records::EXCERPT_LINES);
        self.excerpts = excerpts.split_off(skip);
        let mut signatures = earlier.report.new_signatures;
        signatures.append(&mut self.report.new_signatures);
        self.report.new_signatures = signatures;
    }
}

impl State {
    fn checkpoint(&self) -> String {
        let checkpoint = Checkpoint {
            files: self.tails.as_ref().map(Tails::saved).unwrap_or_default(),
            cursor: self.cursor.clone(),
            record: self.record,
            seen: self.signatures.seen(),
            totals: self.totals.clone(),
        };
        serde_json::to_string(&checkpoint).unwrap_or_default()
    }
}

/// A pattern's name as the `&'static str` signals are named by. Names are kept once each for
/// the life of the process, so reloading the same probes costs nothing more; only a name
/// never used before is added.
fn intern(name: &str) -> &'static str {
    static NAMES: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut names = NAMES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    names.insert(leaked);
    leaked
}

/// A regex error without the multi-line art.
fn regex_words(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or(&text);
    format!(
        "invalid regex: {}",
        last.trim().trim_start_matches("error: ")
    )
}

impl super::Kind for LogProbe {
    type Spec = LogSpec;
    const INFO: KindInfo = KIND;

    fn schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        generator.subschema_for::<Self::Spec>()
    }

    fn new(spec: Spanned<LogSpec>, ctx: &BuildContext) -> Result<Self, Vec<SpecError>> {
        LogProbe::new(spec, ctx)
    }

    fn target(&self) -> String {
        LogProbe::target(self)
    }

    fn run(&self, trace: &mut Trace) -> impl Future<Output = Result<(), Failure>> + Send {
        LogProbe::run(self, trace)
    }

    fn spec_signals(&self) -> Vec<(&'static str, Unit)> {
        LogProbe::spec_signals(self)
    }

    fn checkpoint(&self) -> Option<String> {
        LogProbe::checkpoint(self)
    }

    fn restore(&self, checkpoint: &str) -> bool {
        LogProbe::restore(self, checkpoint)
    }
}

/// Bytes written to the followed files and not read yet.
pub const LAG_BYTES: Family = gauge(
    "probe_log_lag_bytes",
    "Bytes written to the log probe's files and not read yet (its max_read per run was reached).",
);

/// What the rest of the house knows of `log:` probes. The patterns' own signals are named in
/// each probe's spec ([`LogProbe::spec_signals`]); their counters are exported as
/// `probe_log_matches_total{pattern}`.
pub const KIND: KindInfo = KindInfo {
    name: "log",
    headline: "lines",
    network: false,
    signals: &[
        Signal::new("lines", Unit::Count, None),
        Signal::new("long_lines", Unit::Count, None),
        Signal::new("new_signatures", Unit::Count, None),
        Signal::new("rotations", Unit::Count, None).exported_only(),
        Signal::new("truncations", Unit::Count, None).exported_only(),
        Signal::new("cursor_resets", Unit::Count, None).exported_only(),
        Signal::new("lag_bytes", Unit::Bytes, Some(&LAG_BYTES)),
    ],
};
