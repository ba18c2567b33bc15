//! A stand-in for `journalctl`, for the log probe's journal tests: a shell script that reads
//! its entries from a file beside it, so a test controls the journal exactly.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A stand-in for journalctl: entries are lines `CURSOR<TAB>MESSAGE` in `entries` beside it;
/// it honours `--after-cursor`, `-n` and `--show-cursor` and refuses a cursor it lacks, as
/// journalctl refuses one from a vacuumed journal.
pub fn stand_in_journalctl(dir: &Path) -> PathBuf {
    let script = dir.join("journalctl");
    std::fs::write(
        &script,
        r#"#!/bin/sh
entries="$(dirname "$0")/entries"
after=""; last=""
while [ $# -gt 0 ]; do
  case "$1" in
    --after-cursor=*) after="${1#--after-cursor=}" ;;
    -n) shift; last="$1" ;;
    -u|-p|-o) shift ;;
  esac
  shift
done
if [ -n "$after" ] && ! cut -f1 "$entries" | grep -qxF "$after"; then
  echo "Failed to seek to cursor: Invalid argument" >&2
  exit 1
fi
awk -F '\t' -v after="$after" -v last="$last" '
  { c[NR] = $1; m[NR] = $2 }
  END {
    from = 1
    if (after != "") { for (i = 1; i <= NR; i++) if (c[i] == after) from = i + 1 }
    if (last != "") from = NR - last + 1
    if (from < 1) from = 1
    for (i = from; i <= NR; i++) {
      printf "{\"__CURSOR\":\"%s\",\"PRIORITY\":\"3\",\"MESSAGE\":\"%s\"}\n", c[i], m[i]
      end = c[i]
    }
    if (end != "") printf "-- cursor: %s\n", end
  }' "$entries"
"#,
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}
