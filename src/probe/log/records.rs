//! Lines into records, records into counts: what `patterns:`, `exclude:` and
//! `multiline_start:` mean.
//!
//! Without `multiline_start` every line is a record. With it, a record starts at a line that
//! matches it and takes every following line that does not, so a 40-line stack trace is one
//! record and counts once for each pattern any of its lines matches. A record is judged when
//! the next one starts or when the reader reaches the end of what was written (the trace may
//! be complete); lines of it that arrive later still count a pattern it had not matched, never
//! one it had. A record with a line matching `exclude` counts nothing. Lines are bytes: invalid
//! UTF-8 is matched as it is and shown lossily. This file knows nothing of files or time.

use std::collections::{HashMap, VecDeque};

use regex::bytes::{Regex, RegexSet};
use serde::{Deserialize, Serialize};

use super::fingerprint::Normalizer;

/// How many matching lines are kept for people (alerts, `slowburn probe`).
pub const EXCERPT_LINES: usize = 5;
/// How much of each kept line is shown.
pub const EXCERPT_BYTES: usize = 300;
/// How many distinct signatures one poll keeps; the rest of a flood are counted, not kept.
const MAX_SIGNATURES_PER_POLL: usize = 1000;

/// The compiled `patterns:`, `exclude:` and `multiline_start:` of a probe.
#[derive(Debug)]
pub struct Matcher {
    pub names: Vec<&'static str>,
    patterns: RegexSet,
    exclude: Option<RegexSet>,
    start: Option<Regex>,
    excerpt: bool,
    normalizer: Option<Normalizer>,
}

impl Matcher {
    pub fn new(
        names: Vec<&'static str>,
        patterns: RegexSet,
        exclude: Option<RegexSet>,
        start: Option<Regex>,
        excerpt: bool,
        signatures: bool,
    ) -> Matcher {
        Matcher {
            names,
            patterns,
            exclude,
            start,
            excerpt,
            normalizer: signatures.then(Normalizer::new),
        }
    }

    fn bits(&self, line: &[u8]) -> u64 {
        if !self.patterns.is_match(line) {
            return 0;
        }
        self.patterns
            .matches(line)
            .iter()
            .fold(0, |bits, i| bits | (1 << i))
    }

    fn excluded(&self, line: &[u8]) -> bool {
        self.exclude.as_ref().is_some_and(|e| e.is_match(line))
    }
}

/// Where the record being read stands; kept per file, and in the checkpoint, so a record
/// split across polls or a restart is still counted once.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Patterns matched by lines of a record not judged yet.
    pending: u64,
    /// Patterns this record has counted.
    counted: u64,
    excluded: bool,
    /// Not judged yet.
    open: bool,
}

/// A distinct signature met in one poll.
#[derive(Debug, Clone, PartialEq)]
pub struct Met {
    pub text: String,
    pub example: String,
    pub count: u64,
}

/// The counts of one poll.
#[derive(Debug)]
pub struct Counter<'m> {
    matcher: &'m Matcher,
    /// Records counted per pattern, in the order of `Matcher::names`.
    pub counts: Vec<u64>,
    pub lines: u64,
    pub long_lines: u64,
    /// The last matching lines (none with `excerpt: false`).
    pub excerpts: VecDeque<String>,
    /// Matching records by signature.
    pub signatures: HashMap<u64, Met>,
    /// While set, lines are read only to learn the signatures already in a file (see
    /// [`Counter::learning`]); nothing is counted.
    learning: bool,
    /// Signatures of what was there before the probe first ran: its baseline.
    pub baseline: HashMap<u64, Met>,
    /// The first matching line of the open record.
    example: Vec<u8>,
}

impl<'m> Counter<'m> {
    pub fn new(matcher: &'m Matcher) -> Counter<'m> {
        Counter {
            matcher,
            counts: vec![0; matcher.names.len()],
            lines: 0,
            long_lines: 0,
            excerpts: VecDeque::new(),
            signatures: HashMap::new(),
            learning: false,
            baseline: HashMap::new(),
            example: Vec::new(),
        }
    }

    /// Whether the coming lines are the backlog a first run with `start_at: end` skips:
    /// read only so that the signatures already there are the baseline, not news.
    pub fn learning(&mut self, on: bool) {
        self.learning = on;
    }

    /// Whether this counter needs the skipped backlog at all (signatures are tracked).
    pub fn wants_backlog(&self) -> bool {
        self.matcher.normalizer.is_some()
    }

    /// One complete line (its first `max_line_bytes` when `long`).
    pub fn line(&mut self, record: &mut Record, line: &[u8], long: bool) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if !self.learning {
            self.lines += 1;
            self.long_lines += u64::from(long);
        }
        let m = self.matcher;
        let Some(start) = &m.start else {
            let bits = m.bits(line);
            if bits != 0 && !m.excluded(line) {
                self.count(bits, line);
            }
            return;
        };
        if start.is_match(line) {
            self.end(record);
            *record = Record {
                open: true,
                ..Record::default()
            };
        }
        if record.excluded {
            return;
        }
        if m.excluded(line) {
            record.excluded = true;
            record.pending = 0;
            return;
        }
        let bits = m.bits(line);
        if bits == 0 {
            return;
        }
        if record.open {
            if record.pending == 0 {
                self.example.clear();
                self.example.extend_from_slice(line);
            }
            record.pending |= bits;
        } else {
            let new = bits & !record.counted;
            if new != 0 {
                record.counted |= new;
                self.count(new, line);
            }
        }
    }

    /// The reader is at the end of what was written: the open record is judged.
    pub fn end(&mut self, record: &mut Record) {
        if !record.open {
            return;
        }
        record.open = false;
        let new = record.pending & !record.counted;
        record.pending = 0;
        if new != 0 && !record.excluded {
            record.counted |= new;
            let example = std::mem::take(&mut self.example);
            self.count(new, &example);
            self.example = example;
        }
    }

    fn count(&mut self, bits: u64, example: &[u8]) {
        if self.learning {
            if let Some(normalizer) = &self.matcher.normalizer
                && self.baseline.len() < MAX_SIGNATURES_PER_POLL * 10
            {
                let (hash, text) = normalizer.fingerprint(example);
                self.baseline.entry(hash).or_insert(Met {
                    text,
                    example: String::new(),
                    count: 0,
                });
            }
            return;
        }
        for (i, count) in self.counts.iter_mut().enumerate() {
            if bits & (1 << i) != 0 {
                *count += 1;
            }
        }
        let shown = || String::from_utf8_lossy(&example[..example.len().min(EXCERPT_BYTES)]);
        if self.matcher.excerpt {
            if self.excerpts.len() == EXCERPT_LINES {
                self.excerpts.pop_front();
            }
            self.excerpts.push_back(shown().into_owned());
        }
        if let Some(normalizer) = &self.matcher.normalizer {
            let (hash, text) = normalizer.fingerprint(example);
            let full = self.signatures.len() >= MAX_SIGNATURES_PER_POLL;
            match self.signatures.get_mut(&hash) {
                Some(met) => met.count += 1,
                None if !full => {
                    let example = if self.matcher.excerpt {
                        shown().into_owned()
                    } else {
                        String::new()
                    };
                    self.signatures.insert(
                        hash,
                        Met {
                            text,
                            example,
                            count: 1,
                        },
                    );
                }
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(start: Option<&str>, exclude: &[&str]) -> Matcher {
        Matcher::new(
            vec!["error", "timeout"],
            RegexSet::new(["ERROR|Exception", "timed out"]).unwrap(),
            (!exclude.is_empty()).then(|| RegexSet::new(exclude).unwrap()),
            start.map(|s| Regex::new(s).unwrap()),
            true,
            false,
        )
    }

    fn count(m: &Matcher, text: &str) -> Vec<u64> {
        let mut counter = Counter::new(m);
        let mut record = Record::default();
        for line in text.lines() {
            counter.line(&mut record, line.as_bytes(), false);
        }
        counter.end(&mut record);
        counter.counts
    }

    #[test]
    fn every_line_is_a_record_without_multiline_start() {
        let m = matcher(None, &["healthcheck"]);
        let text = "ERROR a\nINFO b\nERROR timed out\nERROR healthcheck\nException c\n";
        assert_eq!(count(&m, text), vec![3, 1]);
    }

    #[test]
    fn a_stack_trace_counts_once_per_pattern() {
        let m = matcher(Some(r"^\d{4}-\d{2}-\d{2}"), &[]);
        let mut text = String::from("2026-01-01 ERROR boom\n");
        for i in 0..19 {
            text.push_str(&format!("    at Exception frame {i}\n"));
        }
        text.push_str("2026-01-01 INFO fine\n");
        assert_eq!(count(&m, &text), vec![1, 0]);
    }

    #[test]
    fn an_excluded_line_drops_its_whole_record() {
        let m = matcher(Some(r"^\d{4}"), &["healthcheck"]);
        let text = "2026 ERROR x\n  healthcheck\n2026 ERROR y\n";
        assert_eq!(count(&m, text), vec![1, 0]);
    }

    #[test]
    fn a_judged_record_counts_a_late_line_only_for_a_new_pattern() {
        let m = matcher(Some(r"^\d{4}"), &[]);
        let mut counter = Counter::new(&m);
        let mut record = Record::default();
        counter.line(&mut record, b"2026 ERROR x", false);
        counter.end(&mut record);
        counter.line(&mut record, b"  Exception again", false);
        counter.line(&mut record, b"  timed out", false);
        counter.end(&mut record);
        assert_eq!(counter.counts, vec![1, 1]);
    }
}
