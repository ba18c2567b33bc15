//! Reading the systemd journal through `journalctl`, a child process per run, from the cursor
//! where the last run stopped.
//!
//! Each run asks for the entries after the cursor (`-o json --after-cursor C --show-cursor`)
//! and reads them until the child exits or the run's byte budget is spent (then the child is
//! killed and the cursor is the last entry handed on). With no cursor yet, `start_at: end`
//! asks for the last entries only to learn where the end is and which error signatures are
//! already there (`-n 1000`, or `-n 1` without `new_signature:`), and counts nothing. A
//! cursor journalctl refuses (the journal was vacuumed, or the cursor was damaged) falls back
//! to the end, and the fall-back is counted. The binary is `journalctl` on `PATH` unless the
//! spec names another one.

use std::path::PathBuf;
use std::process::Stdio;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::records::{Counter, Record};
use crate::probe::Failure;

/// How many of the last entries a first run with `start_at: end` learns signatures from.
const BACKLOG_ENTRIES: u32 = 1000;
/// The longest stderr kept for a failure message.
const MAX_STDERR: usize = 1024;

/// A validated `journal:` section.
#[derive(Debug, Clone)]
pub struct Journal {
    pub command: PathBuf,
    pub unit: Option<String>,
    pub priority: Option<String>,
}

/// Where a read stopped and what it met on the way.
#[derive(Debug, Default)]
pub struct Read {
    /// Cursors journalctl refused, each followed by a fall-back to the end.
    pub resets: u64,
    pub bytes: u64,
}

/// The priorities journalctl's `-p` takes, by name.
pub const PRIORITIES: &[&str] = &[
    "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug",
];

impl Journal {
    /// What the source is, for people.
    pub fn target(&self) -> String {
        let mut out = String::from("journal");
        if let Some(unit) = &self.unit {
            out.push_str(&format!(" unit={unit}"));
        }
        if let Some(p) = &self.priority {
            out.push_str(&format!(" priority={p}"));
        }
        out
    }

    /// Reads the entries after `cursor`, moving it on; `start_at_end` is for a first run.
    pub async fn read(
        &self,
        cursor: &mut Option<String>,
        start_at_end: bool,
        budget: u64,
        max_line: usize,
        counter: &mut Counter<'_>,
        record: &mut Record,
    ) -> Result<Read, Failure> {
        let mut read = Read::default();
        let at_end = cursor.is_none() && start_at_end;
        match self
            .once(cursor, at_end, budget, max_line, counter, record, &mut read)
            .await
        {
            Err(Refused::Cursor(_)) => {
                read.resets += 1;
                *cursor = None;
                self.once(cursor, true, budget, max_line, counter, record, &mut read)
                    .await
                    .map_err(Refused::failure)?;
            }
            other => other.map_err(Refused::failure)?,
        }
        counter.end(record);
        Ok(read)
    }

    #[allow(clippy::too_many_arguments)]
    async fn once(
        &self,
        cursor: &mut Option<String>,
        at_end: bool,
        budget: u64,
        max_line: usize,
        counter: &mut Counter<'_>,
        record: &mut Record,
        read: &mut Read,
    ) -> Result<(), Refused> {
        let mut command = Command::new(&self.command);
        command.args(["-o", "json", "--no-pager", "--show-cursor"]);
        if let Some(unit) = &self.unit {
            command.args(["-u", unit]);
        }
        if let Some(p) = &self.priority {
            command.args(["-p", p]);
        }
        let asked = cursor.clone();
        match (&asked, at_end) {
            (Some(c), _) => {
                command.arg(format!("--after-cursor={c}"));
            }
            (None, true) => {
                // The last entries tell where the end is; when signatures are tracked they
                // are read to learn the ones already there, and counted in no case.
                let n = if counter.wants_backlog() {
                    BACKLOG_ENTRIES
                } else {
                    1
                };
                command.args(["-n", &n.to_string()]);
            }
            (None, false) => {}
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .map_err(|e| Refused::Other(format!("cannot run {}: {e}", self.command.display())))?;
        let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
            return Err(Refused::Other("journalctl has no output pipes".into()));
        };
        let mut stdout = BufReader::new(stdout);
        let max_entry = 2 * max_line + 64 * 1024;
        let mut line = Vec::new();
        let mut entries = 0u64;
        let mut spent = 0u64;
        let mut stopped_early = false;
        loop {
            line.clear();
            let (n, long) = read_line(&mut stdout, &mut line, max_entry)
                .await
                .map_err(|e| Refused::Other(format!("reading journalctl: {e}")))?;
            if n == 0 {
                break;
            }
            spent += n as u64;
            if let Some(c) = line.strip_prefix(b"-- cursor: ") {
                *cursor = Some(String::from_utf8_lossy(c).trim().to_string());
                continue;
            }
            entries += 1;
            if long {
                // An entry beyond any sane size: counted as a long line, its cursor lost, the
                // next entry's cursor moves on past it.
                counter.line(record, &line[..line.len().min(max_line)], true);
                continue;
            }
            let Ok(entry) = serde_json::from_slice::<Value>(&line) else {
                continue;
            };
            if let Some(c) = entry["__CURSOR"].as_str() {
                *cursor = Some(c.to_string());
            }
            counter.learning(at_end);
            for text in message(&entry["MESSAGE"]).split(|b| *b == b'\n') {
                let long = text.len() > max_line;
                counter.line(record, &text[..text.len().min(max_line)], long);
            }
            counter.learning(false);
            if spent >= budget {
                stopped_early = true;
                break;
            }
        }
        read.bytes += spent;
        if stopped_early {
            // Killed on drop; the cursor is the last entry handed on.
            return Ok(());
        }
        let mut err = Vec::new();
        let _ = stderr.take(MAX_STDERR as u64).read_to_end(&mut err).await;
        let status = child
            .wait()
            .await
            .map_err(|e| Refused::Other(format!("waiting for journalctl: {e}")))?;
        if status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&err).trim().to_string();
        let said = if said.is_empty() {
            match status.code() {
                Some(code) => format!("journalctl exited with status {code} and said nothing"),
                None => "journalctl was killed by a signal".into(),
            }
        } else {
            format!("journalctl: {said}")
        };
        if asked.is_some() && entries == 0 {
            Err(Refused::Cursor(said))
        } else {
            Err(Refused::Other(said))
        }
    }
}

enum Refused {
    Cursor(String),
    Other(String),
}

impl Refused {
    fn failure(self) -> Failure {
        match self {
            Refused::Cursor(m) | Refused::Other(m) => Failure::Journal(m),
        }
    }
}

/// `MESSAGE` as journalctl writes it: a string, or an array of bytes when it is not UTF-8.
fn message(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(bytes) => bytes
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect(),
        _ => Vec::new(),
    }
}

/// One line of at most `max` bytes (the rest of a longer one is skipped); the bytes read and
/// whether the line was longer.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<(usize, bool)> {
    let mut total = 0;
    let mut long = false;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok((total, long));
        }
        let (take, done) = match memchr::memchr(b'\n', buf) {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = max.saturating_sub(line.len());
        let keep = if done { take - 1 } else { take };
        long |= keep > room;
        line.extend_from_slice(&buf[..keep.min(room)]);
        reader.consume(take);
        total += take;
        if done {
            return Ok((total, long));
        }
    }
}
