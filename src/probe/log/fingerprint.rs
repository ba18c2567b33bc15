//! New error signatures: a matching line reduced to its shape, and the memory of which shapes
//! this probe has seen.
//!
//! A line's fingerprint is the line with what varies between occurrences replaced by a
//! placeholder: quoted values, UUIDs, hex, numbers (timestamps, ids, durations) and paths, so
//! `user 4411 timed out after 30s on /srv/a.db` and `user 17 timed out after 5s on /tmp/b.db`
//! are one signature. A signature never seen before that occurs `min_count` times within
//! `within` is reported once and remembered; it is never reported again. What was read on the
//! probe's very first run is its baseline, learned without a report, and so is the backlog a
//! first run with `start_at: end` reads only to learn from (`tail.rs`). Time is passed in.

use std::collections::{HashMap, HashSet, VecDeque};

use regex::bytes::Regex;

use super::records::Met;

/// How many signatures a probe remembers (the oldest are forgotten first).
pub const MAX_SEEN: usize = 10_000;
/// How many unconfirmed new signatures are tracked at once.
const MAX_PENDING: usize = 1_000;
/// How much of a normalised line makes the signature.
const MAX_TEXT: usize = 200;

/// Reduces lines to fingerprints.
#[derive(Debug)]
pub struct Normalizer {
    varying: Regex,
}

impl Default for Normalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl Normalizer {
    pub fn new() -> Normalizer {
        // In order: quoted values, UUIDs, 0x-hex, paths, then words of hex digits or numbers
        // that contain a digit (timestamps, ids, sizes, `30s`).
        let varying = Regex::new(concat!(
            r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#,
            r"|(?i:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
            r"|0[xX][0-9a-fA-F]+",
            r"|(?:[A-Za-z]:)?(?:[/\\][\w.\-]+){2,}[/\\]?|/[\w.\-]+\.\w+",
            r"|\b[0-9A-Za-z]*[0-9][0-9A-Za-z]*\b",
        ))
        .unwrap_or_else(|e| unreachable!("the fingerprint regex is valid: {e}"));
        Normalizer { varying }
    }

    /// The stable hash of a line's shape and the shape itself.
    pub fn fingerprint(&self, line: &[u8]) -> (u64, String) {
        let replaced = self
            .varying
            .replace_all(line, |c: &regex::bytes::Captures| {
                let text = &c[0];
                match text[0] {
                    b'"' | b'\'' => b"\"*\"".to_vec(),
                    b'/' | b'\\' => b"<path>".to_vec(),
                    _ if text.len() > 2 && text[1] == b':' => b"<path>".to_vec(),
                    _ => b"#".to_vec(),
                }
            });
        let text = String::from_utf8_lossy(&replaced);
        let mut shape = String::with_capacity(text.len().min(MAX_TEXT));
        for word in text.split_whitespace() {
            if shape.len() + word.len() >= MAX_TEXT {
                break;
            }
            if !shape.is_empty() {
                shape.push(' ');
            }
            shape.push_str(word);
        }
        (fnv1a(shape.as_bytes()), shape)
    }
}

/// A signature seen for the first time, often enough to report.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSignature {
    /// 16 hex digits, stable across versions and restarts.
    pub id: String,
    pub text: String,
    /// A matching line as written (empty with `excerpt: false`).
    pub example: String,
    /// Occurrences within the window when it was reported.
    pub count: u64,
}

/// Which signatures a probe has seen, and the new ones on their way to being reported.
#[derive(Debug, Default)]
pub struct Signatures {
    min_count: u64,
    within: f64,
    seen: HashSet<u64>,
    order: VecDeque<u64>,
    /// Occurrence times (unix seconds, with counts) of signatures not reported yet.
    pending: HashMap<u64, VecDeque<(f64, u64)>>,
}

impl Signatures {
    pub fn new(min_count: u64, within: f64) -> Signatures {
        Signatures {
            min_count,
            within,
            ..Signatures::default()
        }
    }

    /// Remembers what one poll met; with `learn`, as the baseline, reporting nothing.
    pub fn observe(&mut self, met: &HashMap<u64, Met>, now: f64, learn: bool) -> Vec<NewSignature> {
        let mut out = Vec::new();
        for (hash, m) in met {
            if self.seen.contains(hash) {
                continue;
            }
            if learn {
                self.remember(*hash);
                continue;
            }
            if !self.pending.contains_key(hash) && self.pending.len() >= MAX_PENDING {
                continue;
            }
            let times = self.pending.entry(*hash).or_default();
            times.push_back((now, m.count));
            while times.front().is_some_and(|(t, _)| *t < now - self.within) {
                times.pop_front();
            }
            let count: u64 = times.iter().map(|(_, c)| c).sum();
            if count >= self.min_count {
                self.pending.remove(hash);
                self.remember(*hash);
                out.push(NewSignature {
                    id: format!("{hash:016x}"),
                    text: m.text.clone(),
                    example: m.example.clone(),
                    count,
                });
            }
        }
        self.pending
            .retain(|_, times| times.back().is_some_and(|(t, _)| *t >= now - self.within));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// The signatures seen, oldest first, for a checkpoint.
    pub fn seen(&self) -> Vec<String> {
        self.order.iter().map(|h| format!("{h:016x}")).collect()
    }

    /// Takes the remembered signatures back from a checkpoint.
    pub fn restore(&mut self, seen: &[String]) {
        self.seen.clear();
        self.order.clear();
        for id in seen {
            if let Ok(hash) = u64::from_str_radix(id, 16) {
                self.remember(hash);
            }
        }
    }

    fn remember(&mut self, hash: u64) {
        if self.seen.insert(hash) {
            self.order.push_back(hash);
            if self.order.len() > MAX_SEEN
                && let Some(old) = self.order.pop_front()
            {
                self.seen.remove(&old);
            }
        }
    }
}

/// FNV-1a, 64 bits: a hash that stays the same across Rust versions, since ids are stored.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(line: &str) -> String {
        Normalizer::new().fingerprint(line.as_bytes()).1
    }

    #[test]
    fn what_varies_is_stripped() {
        assert_eq!(
            shape("2026-01-01 12:00:03,114 ERROR user 4411 timed out after 30s on /srv/a.db"),
            "#-#-# #:#:#,# ERROR user # timed out after # on <path>"
        );
        assert_eq!(
            shape(r#"ERROR order 5f0c6a0e-8b1e-4d5c-9a7e-1f2a3b4c5d6e: "alice" at 0xdeadBEEF"#),
            r#"ERROR order #: "*" at #"#
        );
        assert_eq!(
            shape("ERROR key 'k-17' missing in C:\\data\\x.ini"),
            r#"ERROR key "*" missing in <path>"#
        );
        let a = Normalizer::new().fingerprint(b"ERROR id=17 failed").0;
        let b = Normalizer::new().fingerprint(b"ERROR id=99812 failed").0;
        assert_eq!(a, b);
    }

    fn met(text: &str, count: u64) -> HashMap<u64, Met> {
        let (hash, text) = Normalizer::new().fingerprint(text.as_bytes());
        HashMap::from([(
            hash,
            Met {
                text,
                example: "example".into(),
                count,
            },
        )])
    }

    #[test]
    fn a_new_signature_is_reported_once_when_frequent_enough() {
        let mut s = Signatures::new(3, 600.0);
        assert!(s.observe(&met("ERROR old 1", 5), 0.0, true).is_empty());
        assert!(s.observe(&met("ERROR old 2", 5), 10.0, false).is_empty());
        assert!(s.observe(&met("ERROR new 1", 2), 20.0, false).is_empty());
        let new = s.observe(&met("ERROR new 2", 1), 30.0, false);
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].count, 3);
        assert!(s.observe(&met("ERROR new 3", 10), 40.0, false).is_empty());
    }

    #[test]
    fn occurrences_outside_the_window_do_not_add_up() {
        let mut s = Signatures::new(3, 600.0);
        assert!(s.observe(&met("ERROR rare", 2), 0.0, false).is_empty());
        assert!(s.observe(&met("ERROR rare", 1), 700.0, false).is_empty());
        assert_eq!(s.observe(&met("ERROR rare", 2), 800.0, false).len(), 1);
    }

    #[test]
    fn remembered_signatures_survive_a_checkpoint() {
        let mut s = Signatures::new(1, 600.0);
        assert_eq!(s.observe(&met("ERROR x", 1), 0.0, false).len(), 1);
        let mut t = Signatures::new(1, 600.0);
        t.restore(&s.seen());
        assert!(t.observe(&met("ERROR x", 1), 1.0, false).is_empty());
    }
}
