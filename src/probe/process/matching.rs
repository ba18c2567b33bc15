//! Which processes a probe watches: the `match:` criteria as built ([`Matcher`]: a name, a
//! command-line regex, a pidfile, `pid: self`, a user), how they read for people, and the
//! small lookups they need: the kernel's truncated `comm`, the pid a pidfile holds, the uid of
//! a user name.
//!
//! This file decides what matches; reading a candidate's numbers out of `/proc` and comparing
//! two samples belong to `sample.rs`. It reads only the pidfile and `/etc/passwd`.

use std::path::PathBuf;

use regex::Regex;

use crate::probe::Failure;

/// The kernel keeps at most this many bytes of a process name (`comm`).
const COMM_LEN: usize = 15;

/// The `match:` criteria; every one given must hold.
#[derive(Debug)]
pub(super) struct Matcher {
    pub(super) name: Option<String>,
    pub(super) cmdline: Option<Regex>,
    pub(super) pidfile: Option<PathBuf>,
    /// `pid: self`.
    pub(super) own: bool,
    pub(super) user: Option<String>,
}

impl Matcher {
    /// The criteria, for people: `name=order-worker user=app`.
    pub(super) fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(name) = &self.name {
            parts.push(format!("name={name}"));
        }
        if let Some(re) = &self.cmdline {
            parts.push(format!("cmdline=/{}/", re.as_str()));
        }
        if let Some(path) = &self.pidfile {
            parts.push(format!("pidfile={}", path.display()));
        }
        if self.own {
            parts.push("pid=self".to_string());
        }
        if let Some(user) = &self.user {
            parts.push(format!("user={user}"));
        }
        parts.join(" ")
    }
}

/// `comm` is cut to 15 bytes by the kernel, so a longer name matches on its first 15.
pub(super) fn comm_matches(comm: &str, name: &str) -> bool {
    if comm == name {
        return true;
    }
    name.len() > COMM_LEN && name.is_char_boundary(COMM_LEN) && comm == &name[..COMM_LEN]
}

/// The pid a pidfile names, or why it names none.
pub(super) fn read_pidfile(path: &std::path::Path) -> Result<i32, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::Pidfile(match e.kind() {
            std::io::ErrorKind::NotFound => format!("{} does not exist", path.display()),
            _ => format!("cannot read {}: {e}", path.display()),
        })
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Failure::Pidfile(format!("{} is empty", path.display())));
    }
    match text.parse::<i32>() {
        Ok(pid) if pid > 0 => Ok(pid),
        _ => {
            let shown: String = text.chars().take(40).collect();
            Err(Failure::Pidfile(format!(
                "{} holds {shown:?}, not a pid",
                path.display()
            )))
        }
    }
}

/// A user name (from `/etc/passwd`) or a numeric uid.
pub(super) fn resolve_user(user: &str) -> Result<u32, Failure> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Failure::Proc(format!("cannot read /etc/passwd to find {user:?}: {e}")))?;
    passwd
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let uid = fields.nth(1)?.parse::<u32>().ok()?;
            Some((name, uid))
        })
        .find(|(name, _)| *name == user)
        .map(|(_, uid)| uid)
        .ok_or_else(|| Failure::Proc(format!("no user named {user:?} in /etc/passwd")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_match_the_truncated_comm() {
        assert!(comm_matches("order-worker", "order-worker"));
        assert!(comm_matches("order-processor", "order-processor-main"));
        assert!(!comm_matches("order", "order-worker"));
    }

    #[test]
    fn pidfiles_explain_what_is_wrong() {
        let dir = std::env::temp_dir().join(format!("slowburn-pidfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        let err = read_pidfile(&path).unwrap_err().to_string();
        assert!(err.contains("does not exist"), "{err}");
        std::fs::write(&path, "\n").unwrap();
        let err = read_pidfile(&path).unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
        std::fs::write(&path, "hello\n").unwrap();
        let err = read_pidfile(&path).unwrap_err().to_string();
        assert!(err.contains("\"hello\", not a pid"), "{err}");
        std::fs::write(&path, "42\n").unwrap();
        assert_eq!(read_pidfile(&path).unwrap(), 42);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn users_resolve_by_name_or_number() {
        assert_eq!(resolve_user("0").unwrap(), 0);
        assert_eq!(resolve_user("root").unwrap(), 0);
        let err = resolve_user("surely-no-such-user").unwrap_err().to_string();
        assert!(err.contains("no user named"), "{err}");
    }
}
