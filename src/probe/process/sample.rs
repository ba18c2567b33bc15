//! One sample of the matched processes and what changes between two: reading `/proc` (on a
//! blocking thread) into [`Seen`] processes, each with an [`Identity`] (pid and start time, since
//! pids are reused), and comparing with the previous sample for CPU use and restarts.
//!
//! This file reads `/proc` and the probe's own history and nothing else; it decides no limit
//! (that is `mod.rs`'s `assert`) and leaves the criteria to `matching.rs`.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use procfs::process::{LimitValue, Process};
use procfs::{Current, ProcError};
use tokio::time::Instant;

use super::ProcessProbe;
use super::matching::{Matcher, comm_matches, read_pidfile, resolve_user};
use crate::probe::Failure;

/// What the previous run saw.
#[derive(Debug, Default)]
pub(super) struct History {
    /// When the last sample was taken, and the CPU ticks of each identity then.
    pub(super) last: Option<(Instant, HashMap<Identity, u64>)>,
    pub(super) restarts_total: u64,
    /// When each restart was seen, newest last, with the pid that appeared.
    pub(super) recent: VecDeque<(Instant, i32)>,
}

/// A process identity: a pid is reused, a pid with its start time is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Identity {
    pub(super) pid: i32,
    pub(super) start_ticks: u64,
}

/// One matched process as read from `/proc`.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub(super) id: Identity,
    pub(super) comm: String,
    pub(super) zombie: bool,
    pub(super) rss: u64,
    pub(super) cpu_ticks: u64,
    pub(super) threads: u64,
    /// Open fds and the soft limit; `None` when `/proc/PID/fd` cannot be read.
    pub(super) fds: Option<u64>,
    pub(super) fd_limit: Option<u64>,
    /// Seconds since the process started.
    pub(super) age: f64,
    /// Cores used since the previous sample; filled in after the scan.
    pub(super) cores: Option<f64>,
}

impl Seen {
    /// Open fds as a fraction of the soft limit, when both are known.
    pub(super) fn fd_ratio(&self) -> Option<f64> {
        match (self.fds, self.fd_limit) {
            (Some(fds), Some(limit)) if limit > 0 => Some(fds as f64 / limit as f64),
            _ => None,
        }
    }

    /// `pid 42 (order-worker)`, for messages.
    pub(super) fn label(&self) -> String {
        format!("pid {} ({})", self.id.pid, self.comm)
    }
}

/// What one scan of `/proc` found.
#[derive(Debug, Default)]
pub(super) struct Scan {
    pub(super) seen: Vec<Seen>,
    /// Matches whose fds could not be read, and why.
    pub(super) unreadable: Vec<String>,
}

impl ProcessProbe {
    /// The history, also after a panic elsewhere poisoned the lock (it holds plain counts).
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, History> {
        self.history.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Scans `/proc` on a blocking thread.
    pub(super) async fn scan(&self) -> Result<Scan, Failure> {
        let matcher = self.matcher.clone();
        tokio::task::spawn_blocking(move || matcher.scan())
            .await
            .map_err(|e| Failure::Proc(format!("scan did not finish: {e}")))?
    }

    /// Records a sample as the baseline for the next one.
    pub(super) fn remember(&self, seen: &[Seen], now: Instant) {
        let ticks = seen.iter().map(|s| (s.id, s.cpu_ticks)).collect();
        self.lock().last = Some((now, ticks));
    }

    /// Fills in CPU use from the previous sample, counts restarts, and makes this sample the
    /// baseline. Returns the restarts since the probe was built and the restarts in the
    /// `max_restarts` window (pids, oldest first).
    pub(super) fn compare(&self, seen: &mut [Seen], now: Instant) -> (u64, Vec<(Duration, i32)>) {
        let ticks_per_second = procfs::ticks_per_second().max(1) as f64;
        let mut history = self.lock();
        if let Some((then, previous)) = &history.last {
            let elapsed = now.duration_since(*then).as_secs_f64().max(1e-3);
            let mut appeared = Vec::new();
            for s in seen.iter_mut() {
                let used = match previous.get(&s.id) {
                    Some(before) => Some(s.cpu_ticks.saturating_sub(*before)),
                    // A process born since the last sample spent all its CPU time within it.
                    None if s.age <= elapsed => Some(s.cpu_ticks),
                    None => None,
                };
                s.cores = used.map(|t| t as f64 / ticks_per_second / elapsed);
                if !previous.contains_key(&s.id) && !s.zombie {
                    appeared.push(s.id.pid);
                }
            }
            history.restarts_total += appeared.len() as u64;
            history
                .recent
                .extend(appeared.into_iter().map(|pid| (now, pid)));
        }
        let window = self
            .expect
            .max_restarts
            .map_or(Duration::ZERO, |(_, window)| window);
        while history
            .recent
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > window)
        {
            history.recent.pop_front();
        }
        history.last = Some((now, seen.iter().map(|s| (s.id, s.cpu_ticks)).collect()));
        let recent = history
            .recent
            .iter()
            .map(|(at, pid)| (now.duration_since(*at), *pid))
            .collect();
        (history.restarts_total, recent)
    }
}

impl Matcher {
    /// Lists and reads the matching processes. Blocking: reads `/proc`.
    fn scan(&self) -> Result<Scan, Failure> {
        let uid = match &self.user {
            None => None,
            Some(user) => Some(resolve_user(user)?),
        };
        let uptime = procfs::Uptime::current()
            .map_err(|e| Failure::Proc(format!("cannot read /proc/uptime: {e}")))?
            .uptime;
        let mut scan = Scan::default();
        if self.own {
            let pid = std::process::id() as i32;
            let process = Process::new(pid)
                .map_err(|e| Failure::Proc(format!("cannot read /proc/{pid}: {e}")))?;
            if let Read::Match(seen, note) = self.read(&process, uid, uptime) {
                scan.unreadable.extend(note);
                scan.seen.push(seen);
            }
            return Ok(scan);
        }
        if let Some(path) = &self.pidfile {
            let pid = read_pidfile(path)?;
            let process = Process::new(pid).map_err(|e| match e {
                ProcError::NotFound(_) => Failure::Pidfile(format!(
                    "{} names pid {pid}, which is not running",
                    path.display()
                )),
                e => Failure::Proc(format!("cannot read /proc/{pid}: {e}")),
            })?;
            match self.read(&process, uid, uptime) {
                Read::Match(seen, note) => {
                    scan.unreadable.extend(note);
                    scan.seen.push(seen);
                }
                Read::NoMatch => {}
                Read::Gone => {
                    return Err(Failure::Pidfile(format!(
                        "{} names pid {pid}, which is not running",
                        path.display()
                    )));
                }
            }
            return Ok(scan);
        }
        let all = procfs::process::all_processes()
            .map_err(|e| Failure::Proc(format!("cannot list /proc: {e}")))?;
        for process in all {
            // A process that exits while /proc is listed is simply not there.
            let Ok(process) = process else { continue };
            if let Read::Match(seen, note) = self.read(&process, uid, uptime) {
                scan.unreadable.extend(note);
                scan.seen.push(seen);
            }
        }
        scan.seen.sort_by_key(|s| s.id.pid);
        Ok(scan)
    }

    /// Reads one process if it matches. Cheap tests come first: `stat` gives the name, the
    /// directory's owner the user, and only then is `cmdline` read.
    fn read(&self, process: &Process, uid: Option<u32>, uptime: f64) -> Read {
        let Ok(stat) = process.stat() else {
            return Read::Gone;
        };
        if let Some(name) = &self.name
            && !comm_matches(&stat.comm, name)
        {
            return Read::NoMatch;
        }
        if let Some(uid) = uid {
            match process.uid() {
                Ok(owner) if owner == uid => {}
                Ok(_) => return Read::NoMatch,
                Err(_) => return Read::Gone,
            }
        }
        if let Some(re) = &self.cmdline {
            let Ok(args) = process.cmdline() else {
                return Read::Gone;
            };
            if args.is_empty() || !re.is_match(&args.join(" ")) {
                return Read::NoMatch;
            }
        }
        let zombie = stat.state == 'Z';
        let mut note = None;
        let (fds, fd_limit) = if zombie {
            (None, None)
        } else {
            let fds = match process.fd_count() {
                Ok(n) => Some(n as u64),
                Err(ProcError::NotFound(_)) => return Read::Gone,
                Err(e) => {
                    note = Some(format!(
                        "pid {}: open fds unknown: {}",
                        process.pid(),
                        short_error(&e)
                    ));
                    None
                }
            };
            let fd_limit = match process.limits() {
                Ok(limits) => match limits.max_open_files.soft_limit {
                    LimitValue::Value(v) => Some(v),
                    LimitValue::Unlimited => None,
                },
                Err(ProcError::NotFound(_)) => return Read::Gone,
                Err(_) => None,
            };
            (fds, fd_limit)
        };
        let ticks = procfs::ticks_per_second().max(1) as f64;
        Read::Match(
            Seen {
                id: Identity {
                    pid: stat.pid,
                    start_ticks: stat.starttime,
                },
                comm: stat.comm.clone(),
                zombie,
                rss: stat.rss.saturating_mul(procfs::page_size()),
                cpu_ticks: stat.utime.saturating_add(stat.stime),
                threads: u64::try_from(stat.num_threads).unwrap_or(0),
                fds,
                fd_limit,
                age: (uptime - stat.starttime as f64 / ticks).max(0.0),
                cores: None,
            },
            note,
        )
    }
}

/// What reading one candidate found.
enum Read {
    Match(Seen, Option<String>),
    NoMatch,
    /// The process exited while it was being read.
    Gone,
}

fn short_error(e: &ProcError) -> String {
    match e {
        ProcError::PermissionDenied(_) => "permission denied (run as the same user or root)".into(),
        e => e.to_string(),
    }
}
