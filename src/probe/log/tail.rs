//! Following log files as they are really written: appended to, renamed away by logrotate,
//! truncated in place (copytruncate), deleted, recreated on a reused inode.
//!
//! A followed file is known by its identity (device, inode, and a fingerprint of its first
//! bytes), never by its name: each poll lists the paths the source names, matches them to the
//! files already followed by identity, finishes the files that lost their path (the rotated
//! one is read to its end, including a late write, before the new one is read from its start)
//! and reads the rest from where they were left. A file is read through the handle kept open
//! between polls, so a renamed or deleted file can still be finished. Lines are split here and
//! handed to the [`Counter`] whole; a line longer than `max_line_bytes` is handed on with its
//! first bytes only and never buffered whole. Reading per poll is bounded by a byte budget.
//! This file knows nothing of patterns, signals or the store.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::records::{Counter, Record};

/// How many leading bytes of a file make its fingerprint.
pub const FINGERPRINT_LEN: usize = 128;
/// How much is read from a file at a time.
const CHUNK: usize = 64 * 1024;
/// How much of a file's end a first run with `start_at: end` reads to learn the signatures
/// already there (only when signatures are tracked).
const BACKLOG: u64 = 8 * 1024 * 1024;

/// What a source names: one path, or the files of one directory matching a wildcard.
#[derive(Debug, Clone)]
pub enum Source {
    Path(PathBuf),
    Glob { dir: PathBuf, pattern: String },
}

impl Source {
    /// `file:` as written: a wildcard (`*`, `?`) is allowed in the last component only.
    pub fn parse(text: &str) -> Result<Source, String> {
        let path = Path::new(text);
        if !path.is_absolute() {
            return Err(format!("{text:?} is not an absolute path"));
        }
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let dir = path.parent().unwrap_or(Path::new("/"));
        if dir.to_string_lossy().contains(['*', '?', '[']) {
            return Err("a wildcard is allowed in the file name only, not in a directory".into());
        }
        if name.contains('[') {
            return Err("only the wildcards * and ? are supported".into());
        }
        if name.contains(['*', '?']) {
            Ok(Source::Glob {
                dir: dir.to_path_buf(),
                pattern: name.to_string(),
            })
        } else {
            Ok(Source::Path(path.to_path_buf()))
        }
    }

    /// The paths named now, each with its metadata, or why there are none.
    fn list(&self) -> Result<Vec<(PathBuf, Metadata)>, Problem> {
        match self {
            Source::Path(path) => match std::fs::metadata(path) {
                Ok(meta) if meta.is_file() => Ok(vec![(path.clone(), meta)]),
                Ok(_) => Err(Problem::Unreadable(format!(
                    "{}: not a regular file",
                    path.display()
                ))),
                Err(e) => Err(Problem::of(path, &e)),
            },
            Source::Glob { dir, pattern } => {
                let entries = std::fs::read_dir(dir).map_err(|e| Problem::of(dir, &e))?;
                let mut found: Vec<(PathBuf, Metadata)> = entries
                    .flatten()
                    .filter(|e| e.file_name().to_str().is_some_and(|n| wildcard(pattern, n)))
                    .filter_map(|e| {
                        let path = e.path();
                        let meta = std::fs::metadata(&path).ok()?;
                        meta.is_file().then_some((path, meta))
                    })
                    .collect();
                if found.is_empty() {
                    return Err(Problem::Missing(format!(
                        "no file matches {}",
                        dir.join(pattern).display()
                    )));
                }
                // Oldest first, so that a rotated file (`app.log.1`) is read before its successor.
                found.sort_by_key(|(_, m)| (m.mtime(), m.mtime_nsec()));
                Ok(found)
            }
        }
    }
}

/// Why a poll could not read what its source names; the lines already read still count.
#[derive(Debug, Clone, PartialEq)]
pub enum Problem {
    Missing(String),
    Unreadable(String),
}

impl Problem {
    fn of(path: &Path, e: &io::Error) -> Problem {
        let text = format!("{}: {}", path.display(), io_words(e));
        match e.kind() {
            io::ErrorKind::NotFound => Problem::Missing(text),
            _ => Problem::Unreadable(text),
        }
    }
}

/// Where reading of one file stands, as kept in a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    /// The file's first bytes (up to [`FINGERPRINT_LEN`]), hex.
    pub fingerprint: String,
    /// Where the next line starts: everything before it has been counted.
    pub offset: u64,
    #[serde(default)]
    pub record: Record,
    /// Where the backlog a first run only learns from ends (0: none).
    #[serde(default)]
    pub learn_until: u64,
}

/// What one poll did, beside the lines it handed on.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Stats {
    pub rotations: u64,
    pub truncations: u64,
    /// Bytes written and not read yet (the poll's budget ran out).
    pub lag: u64,
}

/// Every file followed for one source.
#[derive(Debug)]
pub struct Tails {
    source: Source,
    start_at_end: bool,
    max_line: usize,
    files: Vec<Tail>,
    /// Positions from a checkpoint, used when their file is first seen again.
    restored: Vec<Saved>,
    /// Whether the first poll (or a restore) has happened: only the very first sight of a
    /// file honours `start_at: end`, a file that appears later is read from its start.
    started: bool,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Tail {
    path: Option<PathBuf>,
    last_path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    fingerprint: Vec<u8>,
    /// Where the next complete line starts.
    committed: u64,
    /// Where the next read starts (after the partial line held in `partial`).
    read_pos: u64,
    partial: Vec<u8>,
    /// The partial line is longer than `max_line` (only its first bytes are held).
    long: bool,
    record: Record,
    /// Bytes before this are a backlog read only to learn its signatures.
    backlog_until: u64,
}

impl Tails {
    pub fn new(source: Source, start_at_end: bool, max_line: usize) -> Tails {
        Tails {
            source,
            start_at_end,
            max_line,
            files: Vec::new(),
            restored: Vec::new(),
            started: false,
            buf: Vec::new(),
        }
    }

    /// Continues from a checkpoint: each file is recognised by its identity when next seen.
    pub fn restore(&mut self, saved: Vec<Saved>) {
        self.files.clear();
        self.restored = saved;
        self.started = true;
    }

    /// Where every followed file stands.
    pub fn saved(&self) -> Vec<Saved> {
        if self.files.is_empty() && !self.restored.is_empty() {
            return self.restored.clone();
        }
        self.files
            .iter()
            .map(|t| Saved {
                path: t.last_path.to_string_lossy().into_owned(),
                dev: t.dev,
                ino: t.ino,
                fingerprint: hex(&t.fingerprint),
                offset: t.committed,
                record: t.record,
                learn_until: if t.backlog_until > t.committed {
                    t.backlog_until
                } else {
                    0
                },
            })
            .collect()
    }

    /// Reads what was written since the last poll, at most `budget` bytes, handing every
    /// complete line to `counter`.
    pub fn poll(&mut self, budget: u64, counter: &mut Counter) -> (Stats, Option<Problem>) {
        let mut stats = Stats::default();
        let mut budget = budget;
        let mut problem = None;
        let found = match self.source.list() {
            Ok(found) => found,
            Err(p) => {
                problem = Some(p);
                Vec::new()
            }
        };
        for tail in &mut self.files {
            tail.path = found
                .iter()
                .find(|(_, m)| m.dev() == tail.dev && m.ino() == tail.ino)
                .map(|(p, _)| p.clone());
        }
        let mut buf = std::mem::take(&mut self.buf);
        buf.resize(CHUNK, 0);
        // Files that lost their path are finished first: they hold the older lines.
        let mut kept = Vec::with_capacity(self.files.len());
        for mut tail in std::mem::take(&mut self.files) {
            if tail.path.is_some() {
                kept.push(tail);
                continue;
            }
            match tail.read(&mut buf, &mut budget, self.max_line, &mut stats, counter) {
                // Renamed away and nothing in its place yet: the writer may still be writing
                // to it, so it is kept open until its successor appears.
                Ok(true)
                    if found.is_empty() && tail.file.metadata().is_ok_and(|m| m.nlink() > 0) =>
                {
                    kept.push(tail);
                }
                Ok(true) => {
                    tail.finish(counter);
                    if found.iter().any(|(p, _)| *p == tail.last_path) {
                        stats.rotations += 1;
                    }
                }
                Ok(false) => kept.push(tail),
                Err(e) => problem = Some(Problem::of(&tail.last_path, &e)),
            }
        }
        self.files = kept;
        for (path, meta) in &found {
            let known = self
                .files
                .iter()
                .any(|t| t.dev == meta.dev() && t.ino == meta.ino());
            if known {
                continue;
            }
            match self.open(path, meta, counter.wants_backlog(), &mut stats) {
                Ok(tail) => self.files.push(tail),
                Err(e) => problem = Some(Problem::of(path, &e)),
            }
        }
        self.started = true;
        self.restored.clear();
        for tail in self.files.iter_mut().filter(|t| t.path.is_some()) {
            if let Err(e) = tail.read(&mut buf, &mut budget, self.max_line, &mut stats, counter) {
                problem = Some(Problem::of(&tail.last_path, &e));
            }
        }
        for tail in &mut self.files {
            stats.lag += tail
                .file
                .metadata()
                .map_or(0, |m| m.len().saturating_sub(tail.read_pos));
        }
        buf.truncate(0);
        self.buf = buf;
        (stats, problem)
    }

    /// Starts following a file seen for the first time: from its checkpoint when it is the
    /// file the checkpoint names, from its end on the very first poll with `start_at: end`,
    /// else from its start.
    fn open(
        &mut self,
        path: &Path,
        meta: &Metadata,
        backlog: bool,
        stats: &mut Stats,
    ) -> io::Result<Tail> {
        let file = File::open(path)?;
        let fingerprint = head(&file, FINGERPRINT_LEN)?;
        let saved = self
            .restored
            .iter()
            .find(|s| s.dev == meta.dev() && s.ino == meta.ino());
        let (offset, record, learn_until) = match saved {
            Some(s) if fingerprint.starts_with(&unhex(&s.fingerprint)) => {
                if s.offset > meta.len() {
                    stats.truncations += 1;
                    (0, Record::default(), 0)
                } else {
                    (s.offset, s.record, s.learn_until)
                }
            }
            // The same inode with other first bytes is another file: read it all.
            Some(_) => (0, Record::default(), 0),
            None if !self.started && self.start_at_end => {
                let end = meta.len();
                (end, Record::default(), if backlog { end } else { 0 })
            }
            None => (0, Record::default(), 0),
        };
        let from = if saved.is_none() && learn_until > 0 {
            offset.saturating_sub(BACKLOG)
        } else {
            offset
        };
        Ok(Tail {
            backlog_until: learn_until,
            path: Some(path.to_path_buf()),
            last_path: path.to_path_buf(),
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            fingerprint,
            committed: from,
            read_pos: from,
            partial: Vec::new(),
            long: false,
            record,
        })
    }
}

impl Tail {
    /// Reads up to the file's present size or the budget; `true` when the end was reached.
    fn read(
        &mut self,
        buf: &mut [u8],
        budget: &mut u64,
        max_line: usize,
        stats: &mut Stats,
        counter: &mut Counter,
    ) -> io::Result<bool> {
        let size = self.file.metadata()?.len();
        let now_head = head(&self.file, FINGERPRINT_LEN)?;
        if size < self.read_pos {
            // Truncated in place (copytruncate): what is there now is new.
            stats.truncations += 1;
            self.restart(now_head);
        } else if !now_head.starts_with(&self.fingerprint) {
            // Rewritten in place on the same inode: another file.
            stats.rotations += 1;
            self.restart(now_head);
        } else if self.fingerprint.len() < FINGERPRINT_LEN
            && now_head.len() > self.fingerprint.len()
        {
            self.fingerprint = now_head;
        }
        while self.read_pos < size && *budget > 0 {
            let mut want = (CHUNK as u64).min(*budget).min(size - self.read_pos);
            // A chunk is all backlog or none of it.
            let learning = self.read_pos < self.backlog_until;
            if learning {
                want = want.min(self.backlog_until - self.read_pos);
            }
            counter.learning(learning);
            let want = want as usize;
            let n = self.file.read_at(&mut buf[..want], self.read_pos)?;
            if n == 0 {
                break;
            }
            let ends = self.split(&buf[..n], max_line, counter);
            if let Some(end) = ends {
                self.committed = self.read_pos + end as u64;
            }
            self.read_pos += n as u64;
            *budget -= n as u64;
        }
        counter.learning(false);
        counter.end(&mut self.record);
        Ok(self.read_pos >= size)
    }

    fn restart(&mut self, fingerprint: Vec<u8>) {
        self.fingerprint = fingerprint;
        self.committed = 0;
        self.read_pos = 0;
        self.partial.clear();
        self.long = false;
        self.record = Record::default();
        self.backlog_until = 0;
    }

    /// Hands every complete line of `chunk` on; returns where, in `chunk`, the last complete
    /// line ended. The unterminated rest is kept (its first `max_line` bytes) for the next.
    fn split(&mut self, mut chunk: &[u8], max_line: usize, counter: &mut Counter) -> Option<usize> {
        let mut consumed = 0;
        let mut last_end = None;
        while let Some(i) = memchr::memchr(b'\n', chunk) {
            let line = &chunk[..i];
            if self.partial.is_empty() && !self.long {
                let long = line.len() > max_line;
                counter.line(&mut self.record, &line[..line.len().min(max_line)], long);
            } else {
                let room = max_line - self.partial.len();
                self.long |= line.len() > room;
                self.partial
                    .extend_from_slice(&line[..line.len().min(room)]);
                counter.line(&mut self.record, &self.partial, self.long);
                self.partial.clear();
                self.long = false;
            }
            consumed += i + 1;
            last_end = Some(consumed);
            chunk = &chunk[i + 1..];
        }
        let room = max_line - self.partial.len();
        self.long |= chunk.len() > room;
        self.partial
            .extend_from_slice(&chunk[..chunk.len().min(room)]);
        last_end
    }

    /// The file will not grow again (it was rotated away or deleted): an unterminated last
    /// line is a line.
    fn finish(&mut self, counter: &mut Counter) {
        if !self.partial.is_empty() || self.long {
            counter.line(&mut self.record, &self.partial, self.long);
            self.partial.clear();
        }
        counter.end(&mut self.record);
    }
}

/// The first `len` bytes of a file (fewer when it is shorter).
fn head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut out = vec![0; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut out[got..], got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    out.truncate(got);
    Ok(out)
}

/// `*` and `?` against a file name.
fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// An I/O error in the words people use.
fn io_words(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::NotFound => "no such file".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len() / 2)
        .filter_map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard("*.log", "app.log"));
        assert!(wildcard("app.log*", "app.log.1"));
        assert!(wildcard("a?p.log", "app.log"));
        assert!(!wildcard("*.log", "app.log.1"));
        assert!(!wildcard("app", "apps"));
    }

    #[test]
    fn sources_allow_wildcards_in_the_name_only() {
        assert!(matches!(
            Source::parse("/var/log/app.log"),
            Ok(Source::Path(_))
        ));
        assert!(matches!(
            Source::parse("/var/log/*.log"),
            Ok(Source::Glob { .. })
        ));
        assert!(Source::parse("/var/*/app.log").is_err());
        assert!(Source::parse("app.log").is_err());
    }

    #[test]
    fn fingerprints_survive_a_round_trip_through_hex() {
        let bytes = b"\x00\xffhello".to_vec();
        assert_eq!(unhex(&hex(&bytes)), bytes);
    }
}
