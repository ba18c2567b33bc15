//! The `log:` probe against real files in a temp dir, a real stand-in `journalctl` child
//! process, and the real store and alert service: each count exact.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;

use slowburn::alert::service::AlertService;
use slowburn::alert::{Origin, ProbeInfo, Severity};
use slowburn::config::{self, ProbeConfig, Source};
use slowburn::probe::{self, BuildContext, Outcome, net::NetContext};
use slowburn::results::Results;
use slowburn::state::Registry;
use slowburn::store::Store;
use support::daemon::temp_dir;
use support::journal::stand_in_journalctl;

fn load(sections: &[(&str, String)]) -> Vec<ProbeConfig> {
    let mut text = String::from("probes:\n");
    for (name, section) in sections {
        text.push_str(&format!(
            "  - name: {name}\n    interval: 30s\n    log: {section}\n"
        ));
    }
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    config::load(
        &Source::Text {
            name: "log.yaml".into(),
            text,
        },
        &ctx,
    )
    .unwrap_or_else(|errors| panic!("config errors: {errors:#?}"))
    .probes
}

/// One `log:` probe named `app` over `file`, with `extra` keys in its section.
fn file_probe(file: &Path, extra: &str) -> ProbeConfig {
    let section = format!(
        "{{file: '{}', patterns: {{error: 'ERROR|Exception'}}{extra}}}",
        file.display()
    );
    load(&[("app", section)]).remove(0)
}

async fn run(probe: &ProbeConfig) -> Outcome {
    probe::execute(&probe.probe, probe.timeout).await
}

fn signal(outcome: &Outcome, name: &str) -> f64 {
    outcome
        .signal(name)
        .unwrap_or_else(|| panic!("no signal {name}: {outcome:#?}"))
}

fn append(path: &Path, bytes: &[u8]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    file.write_all(bytes).unwrap();
}

#[tokio::test]
async fn three_errors_and_two_infos_count_three() {
    let dir = temp_dir("log-count");
    let path = dir.join("app.log");
    append(&path, b"ERROR a\nINFO b\nERROR c\nINFO d\nERROR e\n");
    let probe = file_probe(&path, ", start_at: beginning");
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "error"), 3.0);
    assert_eq!(signal(&outcome, "lines"), 5.0);
    assert_eq!(signal(&run(&probe).await, "error"), 0.0, "nothing new");
}

#[tokio::test]
async fn a_rename_rotation_finishes_the_old_file_then_reads_the_new_one() {
    let dir = temp_dir("log-rotate");
    let path = dir.join("app.log");
    append(&path, b"INFO started\n");
    let probe = file_probe(&path, ", start_at: beginning");
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);
    std::fs::rename(&path, dir.join("app.log.1")).unwrap();
    // The writer had the old file open: its last line lands there, after the rename.
    append(
        &dir.join("app.log.1"),
        b"ERROR late write to the old file\n",
    );
    append(&path, b"ERROR first line of the new file\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 2.0, "{outcome:#?}");
    assert_eq!(signal(&outcome, "rotations"), 1.0);
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);

    // A run between the rename and the new file's creation keeps the old file open.
    std::fs::rename(&path, dir.join("app.log.2")).unwrap();
    assert_eq!(run(&probe).await.failure.unwrap().reason(), "missing");
    append(&dir.join("app.log.2"), b"ERROR written after the run\n");
    append(&path, b"INFO new file\n");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
}

#[tokio::test]
async fn a_truncated_file_is_read_again_from_its_start() {
    let dir = temp_dir("log-truncate");
    let path = dir.join("app.log");
    append(&path, b"INFO one\nINFO two\nERROR three\n");
    let probe = file_probe(&path, ", start_at: beginning");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
    // copytruncate: the content is copied away and the file cut to nothing, same inode.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(0)
        .unwrap();
    append(&path, b"ERROR x\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0, "{outcome:#?}");
    assert_eq!(signal(&outcome, "truncations"), 1.0);
}

#[tokio::test]
async fn a_restart_continues_from_the_stored_checkpoint() {
    let dir = temp_dir("log-restart");
    let path = dir.join("app.log");
    append(&path, b"ERROR before\nINFO before\n");
    let store = Store::open(&dir.join("s.db")).unwrap();
    let first = file_probe(&path, ", start_at: beginning");
    let outcome = run(&first).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    let checkpoint = outcome.log.as_ref().unwrap().checkpoint.clone();
    store.save_checkpoints(&[("app", &checkpoint)]).unwrap();
    drop(first);

    append(&path, b"ERROR while stopped\nERROR while stopped too\n");
    let second = file_probe(&path, ", start_at: beginning");
    let stored = store.checkpoint("app").unwrap().expect("a checkpoint");
    assert!(second.probe.restore(&stored));
    let outcome = run(&second).await;
    assert_eq!(signal(&outcome, "error"), 2.0, "{outcome:#?}");
    assert_eq!(signal(&outcome, "lines"), 2.0);
    assert_eq!(signal(&run(&second).await, "error"), 0.0);
}

#[tokio::test]
async fn the_same_inode_with_other_first_bytes_is_read_from_its_start() {
    let dir = temp_dir("log-inode");
    let path = dir.join("app.log");
    append(&path, b"2026-01-01 first file\nERROR one\n");
    let ino = std::fs::metadata(&path).unwrap().ino();
    let probe = file_probe(&path, ", start_at: beginning");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
    // Rewritten in place, longer than before, so its size alone does not tell.
    std::fs::write(
        &path,
        b"2027-06-30 another file altogether\nERROR two\nERROR three\n",
    )
    .unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().ino(), ino);
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 2.0, "{outcome:#?}");

    // The same after a restart: the checkpoint's fingerprint no longer matches.
    let checkpoint = outcome.log.as_ref().unwrap().checkpoint.clone();
    std::fs::write(
        &path,
        b"1999 yet another beginning, long enough\nERROR four\nINFO\nINFO\n",
    )
    .unwrap();
    let again = file_probe(&path, "");
    assert!(again.probe.restore(&checkpoint));
    assert_eq!(signal(&run(&again).await, "error"), 1.0);
}

/// The process's peak resident memory, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test]
async fn a_ten_mib_line_is_matched_on_its_first_bytes_and_never_buffered() {
    let dir = temp_dir("log-long");
    let path = dir.join("app.log");
    let chunk = vec![b'x'; 1024 * 1024];
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(b"ERROR at the start of a huge line ")
        .unwrap();
    for _ in 0..10 {
        file.write_all(&chunk).unwrap();
    }
    file.write_all(b"\nERROR after it\n").unwrap();
    drop(file);
    drop(chunk);
    // A warm-up on a small file first: the blocking thread, the regex caches.
    let warm = dir.join("warm.log");
    append(&warm, b"ERROR warm\n");
    assert_eq!(
        signal(
            &run(&file_probe(&warm, ", start_at: beginning")).await,
            "error"
        ),
        1.0
    );
    let probe = file_probe(&path, ", start_at: beginning");
    let before = peak_rss();
    let outcome = run(&probe).await;
    let grew = peak_rss().saturating_sub(before);
    assert_eq!(signal(&outcome, "error"), 2.0, "{outcome:#?}");
    assert_eq!(signal(&outcome, "long_lines"), 1.0);
    assert_eq!(signal(&outcome, "lines"), 2.0);
    // Reading holds one 64 KiB chunk and at most 64 KiB of a line, not 10 MiB; the margin is
    // for other tests of this binary allocating at the same time.
    assert!(grew < 6 * 1024 * 1024, "peak RSS grew by {grew} bytes");
}

#[tokio::test]
async fn an_unterminated_line_counts_once_its_newline_arrives() {
    let dir = temp_dir("log-partial");
    let path = dir.join("app.log");
    append(&path, b"INFO a\nERR");
    let probe = load(&[(
        "app",
        format!(
            "{{file: '{}', patterns: {{error: 'ERR'}}, start_at: beginning}}",
            path.display()
        ),
    )])
    .remove(0);
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 0.0, "not a line yet");
    assert_eq!(signal(&outcome, "lines"), 1.0);
    append(&path, b"OR: disk full\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    assert_eq!(signal(&outcome, "lines"), 1.0);
}

#[tokio::test]
async fn a_twenty_line_stack_trace_counts_once() {
    let dir = temp_dir("log-multiline");
    let path = dir.join("app.log");
    let mut text = String::from("2026-01-01 12:00:00 ERROR request failed\n");
    text.push_str("java.lang.IllegalStateException: boom\n");
    for i in 0..18 {
        text.push_str(&format!(
            "    at com.shop.Checkout.step{i}(Checkout.java:{i})\n"
        ));
    }
    append(&path, text.as_bytes());
    let probe = file_probe(
        &path,
        r", multiline_start: '^\d{4}-\d{2}-\d{2}', start_at: beginning",
    );
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "lines"), 20.0);
    assert_eq!(signal(&outcome, "error"), 1.0, "{outcome:#?}");
    append(
        &path,
        b"    at com.shop.Main.main(Main.java:1) Exception again\n",
    );
    append(&path, b"2026-01-01 12:00:01 INFO fine\n");
    assert_eq!(signal(&run(&probe).await, "error"), 0.0, "the same record");
}

#[tokio::test]
async fn start_at_end_ignores_what_was_there() {
    let dir = temp_dir("log-end");
    let path = dir.join("app.log");
    append(&path, b"ERROR old\nERROR old\nERROR old\n");
    let probe = file_probe(&path, ", start_at: end");
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);
    append(&path, b"ERROR new\n");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
}

#[tokio::test]
async fn a_missing_file_fails_with_its_reason_and_recovers() {
    let dir = temp_dir("log-missing");
    let path = dir.join("app.log");
    let probe = file_probe(&path, "");
    let outcome = run(&probe).await;
    let failure = outcome.failure.as_ref().expect("a failure");
    assert_eq!(failure.reason(), "missing");
    assert!(failure.to_string().contains("no such file"), "{failure}");
    // A file that appears after the first run is new: it is read from its start.
    append(&path, b"ERROR here now\n");
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "error"), 1.0);
    std::fs::remove_file(&path).unwrap();
    assert_eq!(run(&probe).await.failure.unwrap().reason(), "missing");
}

#[tokio::test]
async fn invalid_utf8_is_matched_and_shown_lossily() {
    let dir = temp_dir("log-utf8");
    let path = dir.join("app.log");
    append(&path, b"ERROR \xff\xfe broken bytes\nINFO \xc3\x28\n");
    let probe = file_probe(&path, ", start_at: beginning");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    assert!(
        outcome.notes.iter().any(|n| n.contains("ERROR \u{fffd}")),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn reading_per_run_is_capped_and_the_lag_exported() {
    let dir = temp_dir("log-cap");
    let path = dir.join("app.log");
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&format!("ERROR number {i:04} padded to a longer line\n"));
    }
    append(&path, text.as_bytes());
    let probe = file_probe(&path, ", start_at: beginning, max_read: 1KiB");
    let first = run(&probe).await;
    assert!(signal(&first, "lag_bytes") > 0.0, "{first:#?}");
    let mut total = signal(&first, "error");
    for _ in 0..10 {
        total += signal(&run(&probe).await, "error");
    }
    assert_eq!(total, 100.0, "every line once, none twice");
    assert_eq!(signal(&run(&probe).await, "lag_bytes"), 0.0);
}

#[tokio::test]
async fn a_limit_names_the_count_and_shows_the_last_line_unless_excerpts_are_off() {
    let dir = temp_dir("log-limit");
    let path = dir.join("app.log");
    append(
        &path,
        b"ERROR 1\nERROR 2\nERROR 3 customer alice@example.com\n",
    );
    let probe = file_probe(&path, ", start_at: beginning, expect: {max: {error: 2}}");
    let outcome = run(&probe).await;
    let failure = outcome.failure.as_ref().expect("over the limit");
    assert_eq!(failure.reason(), "error");
    assert_eq!(
        failure.to_string(),
        "error: 3 in the last run, above max 2; last: ERROR 1 | ERROR 2 | ERROR 3 customer alice@example.com"
    );
    let quiet = file_probe(
        &path,
        ", start_at: beginning, excerpt: false, expect: {max: {error: 2}}",
    );
    let outcome = run(&quiet).await;
    let message = outcome.failure.as_ref().unwrap().to_string();
    assert!(!message.contains("alice"), "{message}");
    assert!(!outcome.notes.iter().any(|n| n.contains("alice")));
}

#[tokio::test]
async fn the_journal_resumes_from_its_cursor_and_survives_a_bad_one() {
    let dir = temp_dir("log-journal");
    let script = stand_in_journalctl(&dir);
    let entries = dir.join("entries");
    append(
        &entries,
        b"s=1\tERROR one\ns=2\tINFO two\ns=3\tERROR three\n",
    );
    let section = format!(
        "{{journal: {{unit: shop.service, priority: err, journalctl: '{}'}}, patterns: {{error: ERROR}}, start_at: beginning}}",
        script.display()
    );
    let probe = load(&[("j", section)]).remove(0);
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "error"), 2.0);
    append(&entries, b"s=4\tERROR four\n");
    let outcome = run(&probe).await;
    assert_eq!(
        signal(&outcome, "error"),
        1.0,
        "only what came after the cursor"
    );
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);

    // The journal is vacuumed: the cursor is refused, the reader falls back to the end.
    std::fs::write(&entries, b"s=9\tERROR after vacuum\n").unwrap();
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "cursor_resets"), 1.0);
    assert_eq!(signal(&outcome, "error"), 0.0);
    append(&entries, b"s=10\tERROR new\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    assert_eq!(signal(&outcome, "cursor_resets"), 0.0);
    assert_eq!(outcome.log.as_ref().unwrap().totals.cursor_resets, 1);

    // A restart resumes from the stored cursor.
    let checkpoint = outcome.log.as_ref().unwrap().checkpoint.clone();
    append(&entries, b"s=11\tERROR while stopped\n");
    let again = load(&[(
        "j",
        format!(
            "{{journal: {{journalctl: '{}'}}, patterns: {{error: ERROR}}}}",
            script.display()
        ),
    )])
    .remove(0);
    assert!(again.probe.restore(&checkpoint));
    assert_eq!(signal(&run(&again).await, "error"), 1.0);
}

#[tokio::test]
async fn a_new_signature_raises_one_ticket_and_its_tenth_occurrence_none() {
    let dir = temp_dir("log-signature");
    let path = dir.join("app.log");
    append(
        &path,
        b"ERROR db timeout after 30s id=1\nERROR db timeout after 5s id=2\n",
    );
    let store = Arc::new(Store::open(&dir.join("s.db")).unwrap());
    let section = format!(
        "{{file: '{}', patterns: {{error: ERROR}}, start_at: beginning, new_signature: {{min_count: 3, within: 10m}}}}",
        path.display()
    );
    let registry = Arc::new(Registry::new(load(&[("app", section)]), None));
    let alerts = AlertService::new(store.clone(), "http://127.0.0.1:9464".into());
    let info = ProbeInfo {
        rule: None,
        labels: BTreeMap::new(),
        target: String::new(),
        parents: Vec::new(),
    };
    let workers = alerts.configure(
        HashMap::from([("app".to_string(), info)]),
        HashMap::new(),
        Vec::new(),
        Vec::new(),
    );
    assert!(workers.is_empty());
    let mut results = Results::new(store.clone(), alerts.clone());
    results.configure(&registry).await;
    let state = registry.get("app").unwrap().clone();
    let tickets = || {
        alerts
            .alerts()
            .into_iter()
            .filter(|a| matches!(a.origin, Origin::Signature { .. }))
            .collect::<Vec<_>>()
    };

    // The first run's signatures are the baseline; a known one never raises.
    let outcome = run(&state.config).await;
    assert_eq!(signal(&outcome, "new_signatures"), 0.0);
    results.handle(&state, &outcome);
    append(&path, b"ERROR db timeout after 9s id=3\n");
    let outcome = run(&state.config).await;
    assert_eq!(signal(&outcome, "new_signatures"), 0.0);
    results.handle(&state, &outcome);

    append(
        &path,
        b"ERROR cache node 10.0.0.7 refused key 'cart-17'\nERROR cache node 10.0.0.9 refused key 'cart-4'\n",
    );
    let outcome = run(&state.config).await;
    assert_eq!(
        signal(&outcome, "new_signatures"),
        0.0,
        "twice is not yet three"
    );
    results.handle(&state, &outcome);
    append(&path, b"ERROR cache node 10.0.0.7 refused key 'cart-99'\n");
    let outcome = run(&state.config).await;
    assert_eq!(signal(&outcome, "new_signatures"), 1.0);
    results.handle(&state, &outcome);
    let found = tickets();
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].severity, Severity::Ticket);
    assert!(
        found[0]
            .message
            .contains("ERROR cache node #.#.#.# refused key \"*\""),
        "{}",
        found[0].message
    );
    assert!(
        found[0].message.contains("cart-99"),
        "an example line: {}",
        found[0].message
    );

    for i in 4..=10 {
        append(
            &path,
            format!("ERROR cache node 10.0.0.{i} refused key 'k{i}'\n").as_bytes(),
        );
    }
    let outcome = run(&state.config).await;
    assert_eq!(signal(&outcome, "error"), 7.0);
    assert_eq!(
        signal(&outcome, "new_signatures"),
        0.0,
        "the tenth occurrence"
    );
    results.handle(&state, &outcome);
    assert_eq!(tickets().len(), 1);
}

#[test]
fn the_contract_form_and_bad_specs() {
    // More mistakes, each with its exact position, are in tests/fixtures/invalid/log.yaml.
    let ok = load(&[(
        "app-errors",
        r"{file: /var/log/shop/app.log, patterns: {error: 'ERROR|Exception', timeout: 'timed out'}, exclude: ['healthcheck'], multiline_start: '^\d{4}-\d{2}-\d{2}', start_at: end}".into(),
    )]);
    assert_eq!(ok[0].probe.kind(), "log");
    assert_eq!(ok[0].probe.target(), "/var/log/shop/app.log");

    let cases = [
        ("{patterns: {error: x}}", "reads a file or the journal"),
        ("{file: /a.log, patterns: {}}", "at least one pattern"),
        (
            "{file: '/var/*/a.log', patterns: {e: x}}",
            "in the file name only",
        ),
        (
            "{file: /a.log, patterns: {e: x}, max_line_bytes: lots}",
            "invalid size",
        ),
        ("{file: /a.log, patterns: {e: x}, colour: red}", "colour"),
    ];
    for (section, expected) in cases {
        let text = format!("probes:\n  - name: p\n    log: {section}\n");
        let ctx = BuildContext {
            net: Arc::new(NetContext::new()),
        };
        let errors = config::load(
            &Source::Text {
                name: "bad.yaml".into(),
                text,
            },
            &ctx,
        )
        .expect_err(section);
        let all: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let all = all.join("\n");
        assert!(all.contains(expected), "{section}: {all}");
        assert!(all.contains("bad.yaml:3:"), "{section}: positioned: {all}");
    }
}

#[test]
fn drift_may_watch_a_pattern() {
    let text = "probes:\n  - name: p\n    log: {file: /a.log, patterns: {error: ERROR}}\n    drift:\n      error: {limit: 100, horizon: 1h}\n";
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let config = config::load(
        &Source::Text {
            name: "d.yaml".into(),
            text: text.into(),
        },
        &ctx,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(config.probes[0].watches[0].signal, "error");
}

#[test]
fn the_daemon_stopped_and_restarted_counts_what_came_between_exactly_once() {
    use std::net::SocketAddr;
    use std::time::Duration;
    use support::daemon::{Daemon, free_port, metric_value, wait_http, wait_metrics};

    let dir = temp_dir("log-daemon");
    let path = dir.join("app.log");
    append(&path, b"INFO up\nERROR one\n");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nstorage: {{path: slowburn.db}}\nprobes:\n  - name: app\n    interval: 300ms\n    log: {{file: '{}', patterns: {{error: ERROR}}, start_at: beginning}}\n",
            path.display()
        ),
    )
    .unwrap();
    let matches = "probe_log_matches_total{probe=\"app\",kind=\"log\",pattern=\"error\"}";
    let lines = "probe_log_lines_total{probe=\"app\",kind=\"log\"}";
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    // A probe that never ran runs within its first 10 s; the rest is room for busy cores.
    wait_metrics(listen, Duration::from_secs(20), |body| {
        metric_value(body, matches) == Some(1.0)
    });
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");

    append(&path, b"ERROR while stopped\nERROR while stopped too\n");
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    let body = wait_metrics(listen, Duration::from_secs(20), |body| {
        metric_value(body, matches).is_some_and(|m| m >= 3.0)
    });
    assert_eq!(metric_value(&body, matches), Some(3.0), "{body}");
    assert_eq!(metric_value(&body, lines), Some(4.0), "{body}");
    assert_eq!(
        metric_value(&body, "probe_log_lag_bytes{probe=\"app\",kind=\"log\"}"),
        Some(0.0),
        "{body}"
    );
    drop(daemon);
}

#[tokio::test]
async fn a_wildcard_follows_each_file_once_whatever_its_name() {
    let dir = temp_dir("log-glob");
    let path = dir.join("app.log");
    append(&path, b"ERROR one\n");
    append(&dir.join("other.txt"), b"ERROR not matched\n");
    let probe = file_probe(&dir.join("app.log*"), ", start_at: beginning");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
    // Rotated to a name the wildcard still matches: the same file, not a new one.
    std::fs::rename(&path, dir.join("app.log.1")).unwrap();
    append(&dir.join("app.log.1"), b"ERROR late\n");
    append(&path, b"ERROR new\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 2.0, "{outcome:#?}");
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);
    append(&dir.join("app.log.1"), b"ERROR later still\n");
    assert_eq!(signal(&run(&probe).await, "error"), 1.0);
}

#[tokio::test]
async fn a_path_that_is_not_a_file_is_unreadable() {
    let dir = temp_dir("log-unreadable");
    let probe = file_probe(&dir, "");
    let failure = run(&probe).await.failure.expect("a failure");
    assert_eq!(failure.reason(), "unreadable");
    assert!(
        failure.to_string().contains("not a regular file"),
        "{failure}"
    );
}

#[tokio::test]
async fn a_reload_carries_the_position_over() {
    let dir = temp_dir("log-reload");
    let path = dir.join("app.log");
    append(&path, b"ERROR before\n");
    let section = format!(
        "{{file: '{}', patterns: {{error: ERROR}}, start_at: beginning}}",
        path.display()
    );
    let old = Registry::new(load(&[("app", section.clone())]), None);
    let outcome = run(&old.get("app").unwrap().config).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    append(&path, b"ERROR during the reload\n");
    let new = Registry::new(load(&[("app", section)]), Some(&old));
    let outcome = run(&new.get("app").unwrap().config).await;
    assert_eq!(signal(&outcome, "error"), 1.0, "{outcome:#?}");
}

#[tokio::test]
async fn a_run_cut_off_by_its_deadline_loses_nothing() {
    let dir = temp_dir("log-deadline");
    let path = dir.join("app.log");
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("ERROR {i}\n"));
    }
    append(&path, text.as_bytes());
    let probe = file_probe(&path, ", start_at: beginning");
    let cut = probe::execute(&probe.probe, std::time::Duration::from_nanos(1)).await;
    assert_eq!(cut.failure.unwrap().reason(), "timeout");
    // The cut-off read finishes on its own thread; later runs report what it read. Polled
    // (each run is real file I/O), bounded in time for two busy cores.
    let mut total = 0.0;
    let started = std::time::Instant::now();
    while total < 5000.0 && started.elapsed() < std::time::Duration::from_secs(10) {
        total += signal(&run(&probe).await, "error");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(total, 5000.0);
    assert_eq!(signal(&run(&probe).await, "error"), 0.0);
}

#[test]
fn the_daemon_reads_the_journal_through_journalctl_on_path_and_resumes_after_a_restart() {
    use std::net::SocketAddr;
    use std::time::Duration;
    use support::daemon::{Daemon, free_port, metric_value, wait_http, wait_metrics};

    let dir = temp_dir("log-daemon-journal");
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    stand_in_journalctl(&bin);
    let entries = bin.join("entries");
    append(&entries, b"s=1\tERROR one\ns=2\tERROR two\n");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nstorage: {{path: slowburn.db}}\nprobes:\n  - name: unit\n    interval: 300ms\n    log: {{journal: {{unit: shop.service}}, patterns: {{error: ERROR}}, start_at: beginning}}\n"
        ),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let matches = "probe_log_matches_total{probe=\"unit\",kind=\"log\",pattern=\"error\"}";
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[("PATH", &path)]);
    wait_http(listen);
    let body = wait_metrics(listen, Duration::from_secs(20), |body| {
        metric_value(body, matches) == Some(2.0)
    });
    assert_eq!(
        metric_value(&body, "probe_success{probe=\"unit\",kind=\"log\"}"),
        Some(1.0),
        "{body}"
    );
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{stderr}");

    append(&entries, b"s=3\tERROR while stopped\n");
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[("PATH", &path)]);
    wait_http(listen);
    let body = wait_metrics(listen, Duration::from_secs(20), |body| {
        metric_value(body, matches).is_some_and(|m| m >= 3.0)
    });
    assert_eq!(metric_value(&body, matches), Some(3.0), "{body}");
    drop(daemon);
}

#[tokio::test]
async fn start_at_end_learns_the_signatures_already_there_without_counting_them() {
    let dir = temp_dir("log-backlog");
    let path = dir.join("app.log");
    append(
        &path,
        b"ERROR db timeout id=1\nERROR db timeout id=2\nERROR db timeout id=3\n",
    );
    let probe = file_probe(
        &path,
        ", start_at: end, new_signature: {min_count: 1, within: 10m}",
    );
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 0.0);
    assert_eq!(signal(&outcome, "lines"), 0.0);
    append(&path, b"ERROR db timeout id=4\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    assert_eq!(
        signal(&outcome, "new_signatures"),
        0.0,
        "known from the backlog"
    );
    append(&path, b"ERROR disk full on /var/lib/db\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "new_signatures"), 1.0, "{outcome:#?}");
}

#[tokio::test]
async fn the_journal_at_its_end_learns_the_signatures_of_its_last_entries() {
    let dir = temp_dir("log-journal-backlog");
    let script = stand_in_journalctl(&dir);
    let entries = dir.join("entries");
    append(&entries, b"s=1\tERROR db timeout id=1\ns=2\tINFO fine\n");
    let section = format!(
        "{{journal: {{journalctl: '{}'}}, patterns: {{error: ERROR}}, new_signature: {{min_count: 1}}}}",
        script.display()
    );
    let probe = load(&[("j", section)]).remove(0);
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "error"), 0.0);
    append(&entries, b"s=3\tERROR db timeout id=7\n");
    let outcome = run(&probe).await;
    assert_eq!(signal(&outcome, "error"), 1.0);
    assert_eq!(
        signal(&outcome, "new_signatures"),
        0.0,
        "known from the backlog"
    );
    append(&entries, b"s=4\tERROR certificate expired\n");
    assert_eq!(signal(&run(&probe).await, "new_signatures"), 1.0);
}
