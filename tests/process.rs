//! The `process:` probe against real child processes: a helper (a small Python program driven
//! over stdin) allocates memory and opens files in steps, exits and is started again, and the
//! probe must see every change. Each helper carries a unique marker on its command line, so
//! probes match only that helper.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use slowburn::config::{self, Source};
use slowburn::probe::{self, BuildContext, Outcome, Probe, net::NetContext};

/// Lowers its own soft fd limit to 256 (so fd ratios move quickly), then obeys commands:
/// `alloc MiB`, `open N`, `spin`, `zombie NAME`, each answered with `ok`.
const HELPER: &str = r#"
import os, resource, sys, threading
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
held, files = [], []
def spin():
    while True:
        pass
print("ready", flush=True)
for line in sys.stdin:
    cmd, _, arg = line.strip().partition(" ")
    if cmd == "alloc":
        held.append(b"\x01" * (int(arg) * 1024 * 1024))
    elif cmd == "open":
        files.extend(open("/dev/null") for _ in range(int(arg)))
    elif cmd == "spin":
        threading.Thread(target=spin, daemon=True).start()
    elif cmd == "zombie":
        import ctypes, time
        ctypes.CDLL(None).prctl(15, arg.encode(), 0, 0, 0)
        if os.fork() == 0:
            os._exit(0)
        time.sleep(0.2)
    print("ok", flush=True)
"#;

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique marker for one test's helpers.
fn marker(what: &str) -> String {
    format!(
        "slowburn-test-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

struct Helper {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Helper {
    fn spawn(marker: &str) -> Helper {
        let mut child = Command::new("python3")
            .args(["-c", HELPER, marker])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut helper = Helper {
            child,
            stdin,
            stdout,
        };
        assert_eq!(helper.line(), "ready");
        helper
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn send(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        assert_eq!(self.line(), "ok", "helper answered {command}");
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.trim().to_string()
    }

    /// Kills the helper and reaps it, so its pid is gone from /proc.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the one probe a `process:` body describes.
fn build(process_yaml: &str) -> Arc<Probe> {
    let text = format!("probes:\n  - name: p\n    process: {process_yaml}\n");
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    match config::load(
        &Source::Text {
            name: "test.yaml".into(),
            text,
        },
        &ctx,
    ) {
        Ok(mut config) => config.probes.remove(0).probe,
        Err(errors) => panic!("{errors:?}"),
    }
}

async fn run(probe: &Probe) -> Outcome {
    probe::execute(probe, Duration::from_secs(10)).await
}

fn signal(outcome: &Outcome, name: &str) -> f64 {
    outcome
        .signal(name)
        .unwrap_or_else(|| panic!("no signal {name} in {:?}", outcome.signals))
}

fn failure(outcome: &Outcome) -> (String, String) {
    let failure = outcome
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {outcome:#?}"));
    (failure.reason().to_string(), failure.to_string())
}

const MIB: f64 = 1024.0 * 1024.0;

#[tokio::test]
async fn memory_held_in_steps_is_seen_and_the_limit_names_the_pid() {
    let marker = marker("mem");
    let mut helper = Helper::spawn(&marker);
    let probe = build(&format!(
        "{{match: {{cmdline: '{marker}'}}, expect: {{min_count: 1, max_rss: 120MiB}}}}"
    ));
    let base = run(&probe).await;
    assert!(base.success, "{base:#?}");
    assert_eq!(signal(&base, "count"), 1.0);
    let rss0 = signal(&base, "rss");
    assert!(rss0 > 1.0 * MIB, "{rss0}");
    assert!(
        base.notes
            .iter()
            .any(|n| n.starts_with(&format!("pid {} ", helper.pid()))),
        "{:?}",
        base.notes
    );

    helper.send("alloc 64");
    let step1 = run(&probe).await;
    let rss1 = signal(&step1, "rss");
    assert!(rss1 >= rss0 + 60.0 * MIB, "{rss0} → {rss1}");
    assert_eq!(signal(&step1, "rss_max"), rss1);
    assert!(step1.success, "{step1:#?}");

    helper.send("alloc 64");
    let step2 = run(&probe).await;
    let rss2 = signal(&step2, "rss");
    assert!(rss2 >= rss1 + 60.0 * MIB, "{rss1} → {rss2}");
    let (reason, message) = failure(&step2);
    assert_eq!(reason, "rss");
    assert!(
        message.contains(&format!("pid {}", helper.pid())) && message.contains("max_rss 120.0MiB"),
        "{message}"
    );
}

#[tokio::test]
async fn open_files_in_steps_raise_fds_and_the_fd_ratio() {
    let marker = marker("fds");
    let mut helper = Helper::spawn(&marker);
    let probe = build(&format!(
        "{{match: {{cmdline: '{marker}'}}, expect: {{max_fd_ratio: 0.5, max_fds: 1000}}}}"
    ));
    let base = run(&probe).await;
    assert!(base.success, "{base:#?}");
    let fds0 = signal(&base, "fds");

    helper.send("open 50");
    let step1 = run(&probe).await;
    assert_eq!(signal(&step1, "fds"), fds0 + 50.0);
    let ratio1 = signal(&step1, "fd_ratio");
    assert!((ratio1 - (fds0 + 50.0) / 256.0).abs() < 1e-9, "{ratio1}");
    assert!(step1.success, "{step1:#?}");

    helper.send("open 100");
    let step2 = run(&probe).await;
    assert_eq!(signal(&step2, "fds"), fds0 + 150.0);
    let (reason, message) = failure(&step2);
    assert_eq!(reason, "fd_ratio");
    assert!(
        message.contains(&format!("pid {}", helper.pid()))
            && message.contains(&format!("{} of 256 fds", fds0 + 150.0))
            && message.contains("max_fd_ratio 0.5"),
        "{message}"
    );
}

#[tokio::test]
async fn a_process_that_exits_and_comes_back_counts_as_a_restart() {
    let marker = marker("restart");
    let probe = build(&format!(
        "{{match: {{cmdline: '{marker}'}}, expect: {{min_count: 1, max_restarts: 1 per 30m}}}}"
    ));
    let first = Helper::spawn(&marker);
    let seen = run(&probe).await;
    assert!(seen.success, "{seen:#?}");
    assert_eq!(signal(&seen, "restarts"), 0.0);
    assert!(signal(&seen, "uptime") > 0.0);

    first.stop();
    let gone = run(&probe).await;
    assert_eq!(signal(&gone, "count"), 0.0);
    let (reason, message) = failure(&gone);
    assert_eq!(reason, "count");
    assert!(message.contains("no process matches cmdline="), "{message}");

    let second = Helper::spawn(&marker);
    let back = run(&probe).await;
    assert!(back.success, "{back:#?}");
    assert_eq!(signal(&back, "count"), 1.0);
    assert_eq!(signal(&back, "restarts"), 1.0);

    second.stop();
    let third = Helper::spawn(&marker);
    let again = run(&probe).await;
    assert_eq!(signal(&again, "restarts"), 2.0);
    let (reason, message) = failure(&again);
    assert_eq!(reason, "restarts");
    assert!(
        message.contains("2 restarts in the last 30m, above 1 per 30m")
            && message.contains(&format!("pid {}", third.pid())),
        "{message}"
    );
}

#[tokio::test]
async fn cpu_is_measured_between_samples() {
    let marker = marker("cpu");
    let mut helper = Helper::spawn(&marker);
    // The limit is low and the spinner's own CPU time is the reference, so the test holds
    // when other work leaves the spinner only a fraction of a core.
    let probe = build(&format!(
        "{{match: {{cmdline: '{marker}'}}, expect: {{max_cpu: 0.05}}}}"
    ));
    let idle = run(&probe).await;
    assert!(signal(&idle, "cpu") < 0.05, "{idle:#?}");
    let (ticks_before, at_before) = (cpu_ticks(helper.pid()), std::time::Instant::now());
    helper.send("spin");
    tokio::time::sleep(Duration::from_millis(600)).await;
    let busy = run(&probe).await;
    let used = (cpu_ticks(helper.pid()) - ticks_before) as f64 / 100.0;
    let truth = used / at_before.elapsed().as_secs_f64();
    let measured = signal(&busy, "cpu");
    assert!(measured > 0.05, "{busy:#?}");
    assert!(
        (measured - truth).abs() < 0.2,
        "the probe measured {measured} cores, /proc says about {truth}"
    );
    let (reason, message) = failure(&busy);
    assert_eq!(reason, "cpu");
    assert!(message.contains("above max_cpu 0.05"), "{message}");
}

/// utime + stime of `pid`, in clock ticks (100 per second on Linux).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn zombies_are_counted_apart() {
    let name = format!("sbz{}", std::process::id() % 1_000_000);
    let mut helper = Helper::spawn(&marker("zombie"));
    helper.send(&format!("zombie {name}"));
    let probe = build(&format!("{{match: {{name: {name}}}}}"));
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "count"), 1.0);
    assert_eq!(signal(&outcome, "zombies"), 1.0);
    assert!(
        outcome.notes.iter().any(|n| n.contains("(zombie)")),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn pidfiles_find_the_process_or_say_what_is_wrong() {
    let dir = std::env::temp_dir().join(marker("pidfile"));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("worker.pid");
    let probe = build(&format!(
        "{{match: {{pidfile: '{}'}}, expect: {{min_count: 1}}}}",
        path.display()
    ));

    let missing = run(&probe).await;
    let (reason, message) = failure(&missing);
    assert_eq!(reason, "pidfile");
    assert!(message.ends_with("worker.pid does not exist"), "{message}");

    std::fs::write(&path, "").unwrap();
    let (reason, message) = failure(&run(&probe).await);
    assert_eq!(reason, "pidfile");
    assert!(message.ends_with("worker.pid is empty"), "{message}");

    std::fs::write(&path, "not-a-pid\n").unwrap();
    let (_, message) = failure(&run(&probe).await);
    assert!(
        message.contains("holds \"not-a-pid\", not a pid"),
        "{message}"
    );

    let helper = Helper::spawn(&marker("pidfile-child"));
    let pid = helper.pid();
    std::fs::write(&path, format!("{pid}\n")).unwrap();
    let alive = run(&probe).await;
    assert!(alive.success, "{alive:#?}");
    assert_eq!(signal(&alive, "count"), 1.0);
    assert!(alive.notes[0].starts_with(&format!("pid {pid} ")));

    helper.stop();
    let dead = run(&probe).await;
    let (reason, message) = failure(&dead);
    assert_eq!(reason, "pidfile");
    assert!(
        message.contains(&format!("names pid {pid}, which is not running")),
        "{message}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_pattern_that_matches_nothing_fails_min_count_clearly() {
    let probe = build(&format!(
        "{{match: {{cmdline: '{}', user: root}}, expect: {{min_count: 1}}}}",
        marker("nothing")
    ));
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "count"), 0.0);
    assert_eq!(signal(&outcome, "rss"), 0.0);
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, "count");
    assert!(
        message.starts_with("count: no process matches cmdline=/slowburn-test-nothing-")
            && message.ends_with("user=root (min_count 1)"),
        "{message}"
    );
}

#[tokio::test]
async fn processes_that_come_and_go_during_a_scan_are_skipped() {
    // A shell forks short-lived processes as fast as it can while the probe scans.
    let mut churn = Command::new("sh")
        .args(["-c", "while :; do /bin/true; done", &marker("churn")])
        .spawn()
        .unwrap();
    let probe = build("{match: {name: 'true'}}");
    for _ in 0..20 {
        let outcome = run(&probe).await;
        assert!(outcome.success, "{outcome:#?}");
    }
    let _ = churn.kill();
    let _ = churn.wait();
}

#[test]
fn bad_specs_are_reported_with_their_position() {
    let text = "probes:
  - name: p
    process:
      match: {}
      expect: {max_rss: 2 gigs, max_fd_ratio: 1.5, max_restarts: 3 in 30m, max_cpu: -1}
  - name: q
    process:
      match: {cmdline: '(', name: ''}
      expect: {min_count: 3, max_count: 1}
  - name: r
    process:
      match: {pid: 42}
";
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let errors = config::load(
        &Source::Text {
            name: "bad.yaml".into(),
            text: text.into(),
        },
        &ctx,
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        "bad.yaml:4:14: probe \"p\": process.match: give at least one of name, cmdline, pidfile, pid, user",
        "bad.yaml:5:25: probe \"p\": process.expect.max_rss: invalid size \"2 gigs\"",
        "bad.yaml:5:47: probe \"p\": process.expect.max_fd_ratio: must be a fraction",
        "bad.yaml:5:66: probe \"p\": process.expect.max_restarts: invalid \"3 in 30m\": expected N per DURATION",
        "bad.yaml:5:85: probe \"p\": process.expect.max_cpu: must be a number of cores above 0",
        "bad.yaml:8:35: probe \"q\": process.match.name: must not be empty",
        "bad.yaml:8:24: probe \"q\": process.match.cmdline: invalid regex",
        "bad.yaml:9:41: probe \"q\": process.expect.max_count: max_count 1 is below min_count 3",
        "bad.yaml:12:20: probe \"r\": process.match.pid: \"42\": only `self` (this slowburn process)",
    ];
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    for want in expected {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
}
