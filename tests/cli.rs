//! The `slowburn` binary as users run it: `check` exit codes and messages, `probe`, and the
//! `run` daemon serving metrics, reloading on SIGHUP and file changes, and stopping on SIGTERM.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::daemon::{BIN, Daemon, free_port, get, metric_value, temp_dir, wait_metrics};

fn slowburn(args: &[&str], cwd: &Path) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn check_accepts_the_shipped_probes() {
    let out = slowburn(&["check", "-c", "probes"], &root());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("probes/local.yaml: ok, "), "{stdout}");
}

#[test]
fn check_rejects_every_invalid_fixture_with_positions() {
    let dir = root().join("tests/fixtures/invalid");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let out = slowburn(&["check", "-c", path.to_str().unwrap()], &root());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        let prefix = format!("{}:", path.display());
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with(&prefix)).collect();
        assert!(!errors.is_empty(), "{stderr}");
        for line in &errors {
            let rest = &line[prefix.len()..];
            let mut parts = rest.splitn(3, ':');
            let line_no: usize = parts
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("no line in {line}"));
            let col: usize = parts
                .next()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("no col in {line}"));
            assert!(line_no > 0 && col > 0);
        }
        assert!(
            stderr
                .trim_end()
                .ends_with(&format!("{} error(s)", errors.len())),
            "{stderr}"
        );
    }
}

#[test]
fn check_warns_of_a_route_that_cannot_match_and_a_policy_nothing_uses() {
    let dir = temp_dir("check-warnings");
    std::fs::write(
        dir.join("p.yaml"),
        r#"notifiers:
  - {name: hook, webhook: {url: "http://127.0.0.1:9/page"}}
policies:
  - {name: orders, steps: [{notify: [hook]}]}
  - {name: unused, steps: [{notify: [hook]}]}
routes:
  - {match: {team: ordres}, policy: orders}
  - {match: {team: orders, severity: page, reason: status}, policy: orders}
  - {match: {severity: loud}, policy: orders}
probes:
  - {name: api, labels: {team: orders}, tcp: {address: "127.0.0.1:1"}, alert: {}}
"#,
    )
    .unwrap();
    let out = slowburn(&["check", "-c", "p.yaml"], &dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "warnings do not fail a check: {stderr}"
    );
    let warnings: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        warnings,
        [
            "p.yaml:7:14: warning: routes[0].match: no alerting probe has the label team=\"ordres\", so this route never matches",
            "p.yaml:9:14: warning: routes[2].match: no alerting probe has the label severity=\"loud\", so this route never matches",
            "p.yaml:5:12: warning: policy \"unused\": no probe and no route uses it",
        ]
    );
    let json = slowburn(&["check", "--json", "-c", "p.yaml"], &dir);
    let lines = String::from_utf8_lossy(&json.stdout);
    let last: serde_json::Value = serde_json::from_str(lines.lines().last().unwrap()).unwrap();
    assert_eq!(
        (last["line"].as_u64(), last["col"].as_u64()),
        (Some(5), Some(12))
    );
    assert!(last["warning"].as_str().unwrap().contains("unused"));
}

#[test]
fn check_json_lists_errors() {
    let out = slowburn(
        &[
            "check",
            "--json",
            "-c",
            "tests/fixtures/invalid/bad-url.yaml",
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(1));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 3);
    assert_eq!(lines[0]["col"], 17);
}

#[test]
fn probe_command_reports_and_sets_the_exit_code() {
    let dir = temp_dir("probe");
    let closed = free_port();
    std::fs::write(
        dir.join("p.yaml"),
        format!(
            "probes:\n  - {{name: closed, timeout: 1s, tcp: {{address: \"127.0.0.1:{closed}\"}}}}\n"
        ),
    )
    .unwrap();
    let out = slowburn(&["probe", "closed", "-c", "p.yaml"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("FAILED closed (tcp 127.0.0.1:"), "{stdout}");
    assert!(
        stdout.contains("reason: connect: refused (connect)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("phases:") && stdout.contains("connect"),
        "{stdout}"
    );

    let out = slowburn(&["probe", "nope", "-c", "p.yaml"], &dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no probe named \"nope\"; probes: closed")
    );

    let out = slowburn(&["probe", "closed", "--json", "-c", "p.yaml"], &dir);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["reason"], "connect");
    assert_eq!(json["success"], false);
}

#[test]
fn run_refuses_a_bad_config_and_starts_nothing() {
    let port = free_port();
    let out = slowburn(
        &[
            "run",
            "-c",
            "tests/fixtures/invalid/many-errors.yaml",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("many-errors.yaml:6:15: probe \"one\": interval"),
        "{stderr}"
    );
    assert!(get(SocketAddr::from(([127, 0, 0, 1], port)), "/healthz").is_none());
}

#[test]
fn run_serves_metrics_reloads_and_stops_cleanly() {
    let dir = temp_dir("run");
    let port = free_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let probes = dir.join("probes");
    std::fs::create_dir_all(&probes).unwrap();
    let good = format!(
        "probes:\n  - name: own-health\n    interval: 1s\n    timeout: 500ms\n    http: {{url: \"http://{addr}/healthz\"}}\n"
    );
    std::fs::write(probes.join("main.yaml"), &good).unwrap();
    let daemon = Daemon::start(&["run", "--listen", &addr.to_string()], &dir, &[]);

    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"own-health\",kind=\"http\"} 1")
    });
    for phase in ["resolve", "connect", "tls", "processing", "transfer"] {
        assert!(
            body.contains(&format!("probe_http_duration_seconds{{probe=\"own-health\",kind=\"http\",phase=\"{phase}\"}}")),
            "{phase} missing:\n{body}"
        );
    }
    assert_eq!(
        metric_value(&body, "slowburn_config_last_reload_successful"),
        Some(1.0)
    );
    let (status, api) = get(addr, "/api/v1/probes/own-health").unwrap();
    assert_eq!(status, 200);
    let api: serde_json::Value = serde_json::from_str(&api).unwrap();
    assert_eq!(api["kind"], "http");
    assert_eq!(api["last"]["success"], true);
    assert_eq!(get(addr, "/api/v1/probes/none").unwrap().0, 404);

    // A broken file and SIGHUP: the old config keeps running and the gauge says so.
    std::fs::write(
        probes.join("main.yaml"),
        "probes:\n  - name: broken\n    http: {url: nope}\n",
    )
    .unwrap();
    daemon.signal("HUP");
    let body = wait_metrics(addr, Duration::from_secs(10), |b| {
        metric_value(b, "slowburn_config_last_reload_successful") == Some(0.0)
    });
    assert!(body.contains("probe=\"own-health\""), "{body}");
    assert!(!body.contains("probe=\"broken\""));

    // A fixed file is picked up by the file watcher without a signal.
    std::fs::write(
        probes.join("main.yaml"),
        good.replace("own-health", "renamed-health"),
    )
    .unwrap();
    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"renamed-health\",kind=\"http\"} 1")
    });
    assert_eq!(
        metric_value(&body, "slowburn_config_last_reload_successful"),
        Some(1.0)
    );
    assert!(!body.contains("probe=\"own-health\""));

    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("reload failed; the running configuration stays"),
        "{stderr}"
    );
    assert!(
        stderr.contains("http.url: invalid URL \"nope\""),
        "{stderr}"
    );
    assert!(stderr.contains("stopped"), "{stderr}");
}

#[test]
fn run_on_a_fresh_machine_uses_the_built_in_probes() {
    // No probes/ here: the embedded self-check probes, on the default address.
    let dir = temp_dir("fresh");
    let addr: SocketAddr = "127.0.0.1:9464".parse().unwrap();
    if std::net::TcpListener::bind(addr).is_err() {
        panic!("127.0.0.1:9464 is taken; this test needs the default address free");
    }
    let daemon = Daemon::start(&["run"], &dir, &[]);
    let body = wait_metrics(addr, Duration::from_secs(15), |b| {
        b.contains("probe_success{probe=\"self-healthz\",kind=\"http\",team=\"slowburn\"} 1")
            && b.contains("probe_http_duration_seconds{probe=\"self-healthz\",kind=\"http\",team=\"slowburn\",phase=\"connect\"}")
    });
    assert!(body.contains("slowburn_probes_configured"), "{body}");
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("built-in self-check probes"), "{stderr}");
}

#[test]
fn the_built_in_self_process_probe_matches_only_its_own_process() {
    // Another slowburn command is running (as on a machine where one used 2.9 GiB): the
    // built-in self-process probe must not count it, nor any process merely named slowburn.
    let dir = temp_dir("self-process");
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        dir.join("other.yaml"),
        format!(
            "probes:\n  - {{name: idle, interval: 1h, tcp: {{address: \"127.0.0.1:{}\"}}}}\n",
            free_port()
        ),
    )
    .unwrap();
    let other = Daemon::start(
        &["run", "-c", "other.yaml", "--listen", &addr.to_string()],
        &dir,
        &[],
    );
    support::daemon::wait_http(addr);

    // No probes/ in this directory: the probes compiled into the binary.
    let fresh = temp_dir("self-process-fresh");
    let out = slowburn(&["probe", "self-process", "--json"], &fresh);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(json["target"], "pid=self", "{stdout}");
    assert_eq!(json["signals"]["count"], 1.0, "{stdout}");
    // The shipped probes/ directory says the same as the embedded copy.
    let out = slowburn(
        &["probe", "self-process", "--json", "-c", "probes"],
        &root(),
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["signals"]["count"], 1.0, "{json}");
    drop(other);
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    // `slowburn probe … | head` where head has already gone: EPIPE, not a panic (exit 101).
    let dir = temp_dir("pipe");
    std::fs::write(
        dir.join("p.yaml"),
        format!(
            "probes:\n  - {{name: closed, timeout: 1s, tcp: {{address: \"127.0.0.1:{}\"}}}}\n",
            free_port()
        ),
    )
    .unwrap();
    for args in [
        &["probe", "closed", "-c", "p.yaml"][..],
        &["check", "-c", "p.yaml"][..],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&dir)
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(141), "{args:?}: {stderr}");
    }
}

#[test]
fn every_subcommand_option_has_help_text() {
    for sub in [
        "run", "check", "probe", "backtest", "alerts", "ack", "oncall", "page",
    ] {
        let out = slowburn(&[sub, "--help"], &root());
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = help.lines().collect();
        let mut options = 0;
        for (i, line) in lines.iter().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            // `  -c, --config`, `      --json` and `  <NAME>`; deeper lines are help text.
            if indent > 6 || !(trimmed.starts_with('-') || trimmed.starts_with('<')) {
                continue;
            }
            options += 1;
            // `  -c, --config <CONFIG>  A probe file…`, or the help on the next, deeper line.
            let same_line = trimmed
                .split_once("  ")
                .is_some_and(|(_, text)| !text.trim().is_empty());
            let next_line = lines
                .get(i + 1)
                .is_some_and(|next| next.len() - next.trim_start().len() > 6);
            assert!(
                same_line || next_line,
                "slowburn {sub}: no help for {trimmed:?}\n{help}"
            );
        }
        assert!(options >= 2, "slowburn {sub}: no options found in\n{help}");
    }
}

#[test]
fn alerts_and_ack_without_a_daemon_say_connection_refused() {
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &["alerts", "--url", &url][..],
        &["ack", "7", "--url", &url, "--token", "t"][..],
    ] {
        let out = slowburn(args, &root());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!("connection refused at 127.0.0.1:{port}")),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("error sending request"), "{stderr}");
    }
}

#[test]
fn probe_output_shows_sub_millisecond_times_in_microseconds() {
    // A loopback TCP probe: resolving an IP literal takes microseconds, which used to print as
    // `0.00ms`.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = temp_dir("micros");
    std::fs::write(
        dir.join("p.yaml"),
        format!(
            "probes:\n  - {{name: up, timeout: 2s, tcp: {{address: \"{}\"}}}}\n",
            listener.local_addr().unwrap()
        ),
    )
    .unwrap();
    let out = slowburn(&["probe", "up", "-c", "p.yaml"], &dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let times: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("phases:"))
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert!(!times.is_empty(), "{stdout}");
    for time in &times {
        assert!(!time.starts_with("0."), "{time} in\n{stdout}");
    }
    assert!(times.iter().any(|t| t.ends_with("µs")), "{stdout}");
}

/// The secrets the examples name, with values that load (a DSN without a password).
const EXAMPLE_SECRETS: [(&str, &str); 4] = [
    ("SLOWBURN_TOKEN", "example-token"),
    ("ORDERS_DSN", "host=127.0.0.1 user=slowburn dbname=orders"),
    ("BILLING_DSN", "host=127.0.0.1 user=slowburn dbname=billing"),
    ("INTERNAL_API_TOKEN", "example-token"),
];

#[test]
fn the_examples_check_together() {
    // One directory is one configuration: the examples must not set `defaults` twice or reuse
    // a probe name. Their secrets are resolved by check, so they are given.
    let out = Command::new(BIN)
        .args(["check", "-c", "probes/examples"])
        .current_dir(root())
        .envs(EXAMPLE_SECRETS)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches(": ok, ").count(), 8, "{stdout}");
}

#[test]
fn the_readme_backtest_example_runs_with_no_secret_set() {
    // The README's series: flat 80 ms for two hours, then 0.5 ms more every 30 s sample.
    let dir = temp_dir("readme-backtest");
    let mut csv = String::new();
    for i in 0..=600u32 {
        let t = 1_790_000_000 + i * 30;
        let v = if i < 240 {
            0.080
        } else {
            0.080 + f64::from(i - 240) * 0.0005
        };
        csv.push_str(&format!("{t},{v}\n"));
    }
    std::fs::write(dir.join("latency.csv"), csv).unwrap();
    let example = root().join("probes/examples/drift.yaml");
    let mut command = Command::new(BIN);
    command
        .args(["backtest", "-c", example.to_str().unwrap()])
        .args(["--probe", "checkout-latency", "--signal", "latency"])
        .args(["--series", "latency.csv"])
        .current_dir(&dir);
    for (name, _) in EXAMPLE_SECRETS {
        command.env_remove(name);
    }
    let out = command.env_remove("PD_PRIMARY").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("firing"), "{stdout}{stderr}");
}

#[test]
fn run_store_overrides_the_storage_path_of_the_probe_files() {
    // A packaged daemon reads probe files from a read-only place (a ConfigMap, /etc/slowburn
    // mounted :ro) and keeps its store in its state directory, whatever the files say.
    let dir = temp_dir("store-flag");
    let config = dir.join("etc");
    let state = dir.join("state");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::create_dir_all(&state).unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        config.join("p.yaml"),
        format!(
            "storage: {{path: slowburn.db}}\nprobes:\n  - {{name: t, interval: 1h, tcp: {{address: \"127.0.0.1:{}\"}}}}\n",
            free_port()
        ),
    )
    .unwrap();
    let store = state.join("slowburn.db");
    let daemon = Daemon::start(
        &[
            "run",
            "-c",
            config.to_str().unwrap(),
            "--listen",
            &addr.to_string(),
            "--store",
            store.to_str().unwrap(),
        ],
        &dir,
        &[],
    );
    support::daemon::wait_http(addr);
    assert!(store.exists());
    assert!(!config.join("slowburn.db").exists());
    daemon.signal("TERM");
    let (code, stderr) = daemon.wait(Duration::from_secs(15));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains(&store.display().to_string()), "{stderr}");
}

/// Every probe file shipped: the built-in defaults and each example.
fn shipped_probe_files() -> Vec<PathBuf> {
    let mut files = vec![root().join("probes/local.yaml")];
    let examples = std::fs::read_dir(root().join("probes/examples")).unwrap();
    files.extend(
        examples
            .map(|e| e.unwrap().path())
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))),
    );
    files.sort();
    files
}

/// The committed schema, checked against the draft-07 meta-schema and compiled.
fn schema_validator() -> jsonschema::Validator {
    let text = std::fs::read_to_string(root().join("schema/slowburn.schema.json")).unwrap();
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    if let Err(e) = jsonschema::draft7::meta::validate(&schema) {
        panic!("the schema is not valid draft-07: {e}");
    }
    jsonschema::draft7::new(&schema).unwrap()
}

/// A probe file as JSON, its scalars read exactly as the loader reads them.
fn yaml_as_json(text: &str) -> serde_json::Value {
    use slowburn::basics::yaml;
    let node = yaml::parse(text).unwrap();
    let unknown = std::cell::RefCell::new(Vec::new());
    yaml::from_node::<serde_json::Value>(&node, &unknown).unwrap()
}

fn schema_errors(validator: &jsonschema::Validator, text: &str) -> Vec<String> {
    let instance = yaml_as_json(text);
    validator
        .iter_errors(&instance)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

#[test]
fn the_committed_schema_is_what_slowburn_schema_prints() {
    let out = slowburn(&["schema"], &root());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = std::fs::read_to_string(root().join("schema/slowburn.schema.json")).unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout) == committed,
        "schema/slowburn.schema.json is stale: run `slowburn schema > schema/slowburn.schema.json`"
    );
    // Every probe kind and notifier kind of the code's tables is in it.
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let probe = &schema["properties"]["probes"]["items"];
    for kind in slowburn::probe::KIND_KEYS {
        assert!(probe["properties"][kind].is_object(), "probe kind {kind}");
        assert!(
            probe["oneOf"]
                .as_array()
                .unwrap()
                .contains(&serde_json::json!({"required": [kind]}))
        );
    }
    let notifier = &schema["properties"]["notifiers"]["items"];
    for kind in slowburn::notify::KIND_KEYS {
        assert!(
            notifier["properties"][kind].is_object(),
            "notifier kind {kind}"
        );
    }
}

#[test]
fn every_shipped_probe_file_validates_against_the_schema_and_loads() {
    let validator = schema_validator();
    let files = shipped_probe_files();
    assert!(files.len() >= 6, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let errors = schema_errors(&validator, &text);
        assert!(errors.is_empty(), "{}: {errors:#?}", file.display());
        let out = Command::new(BIN)
            .arg("check")
            .arg("-c")
            .arg(&file)
            .envs(EXAMPLE_SECRETS)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            file.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_schema_rejects_what_the_loader_rejects_for_its_shape() {
    let validator = schema_validator();
    // (file, a word the first error names): the shapes an editor should flag as typed.
    let cases = [
        (
            "probes: [{name: a, http: {url: 'http://x/'}, tcp: {address: 'x:1'}}]",
            "oneOf",
        ),
        ("probes: [{name: a}]", "oneOf"),
        (
            "probes: [{name: a, http: {url: 'http://x/', colour: red}}]",
            "colour",
        ),
        ("probes: [{http: {url: 'http://x/'}}]", "name"),
        (
            "probes: [{name: a, intervall: 5s, http: {url: 'http://x/'}}]",
            "intervall",
        ),
        (
            "probes: [{name: a, tcp: {address: 'x:1'}, alert: {after: three}}]",
            "three",
        ),
        (
            "notifiers: [{name: n, webhook: {url: 'http://x/'}, slack: {webhook_url: 'x'}}]",
            "oneOf",
        ),
        ("sever: {listen: '127.0.0.1:1'}", "sever"),
    ];
    let dir = temp_dir("schema-rejects");
    for (i, (text, word)) in cases.into_iter().enumerate() {
        let errors = schema_errors(&validator, text);
        assert!(
            errors.iter().any(|e| e.contains(word)),
            "{text}: expected an error naming {word}, got {errors:#?}"
        );
        // And the loader rejects it too, so the schema is never stricter than slowburn check.
        let file = dir.join(format!("case-{i}.yaml"));
        std::fs::write(&file, text).unwrap();
        let out = slowburn(&["check", "-c", file.to_str().unwrap()], &dir);
        assert!(!out.status.success(), "{text}: slowburn check accepted it");
    }
}

/// `kubernetes-validate` (PyPI; it bundles the API schemas and needs no network) over `files`:
/// whether it passed, and what it printed.
fn kubernetes_validate(tool: &Path, files: &[PathBuf]) -> (bool, String) {
    let out = Command::new(tool)
        .arg("--strict")
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_kubernetes_manifests_validate_and_their_probes_load() {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");

    // The ConfigMap's probe file is a probe file like any other: it fits the schema and loads.
    let configmap = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let configmap = yaml_as_json(&configmap);
    let probes = configmap["data"]["probes.yaml"].as_str().unwrap();
    let errors = schema_errors(&schema_validator(), probes);
    assert!(errors.is_empty(), "{errors:#?}");
    let scratch = temp_dir("k8s-probes");
    std::fs::write(scratch.join("probes.yaml"), probes).unwrap();
    let out = slowburn(&["check", "-c", "probes.yaml"], &scratch);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The StatefulSet runs the daemon on that mount and keeps its store on the claimed volume.
    let statefulset = yaml_as_json(&std::fs::read_to_string(dir.join("statefulset.yaml")).unwrap());
    let pod = &statefulset["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let mount = |name: &str| {
        container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no mount {name}"))
            .clone()
    };
    assert_eq!(mount("probes")["readOnly"], true);
    assert!(
        args.windows(2)
            .any(|w| w == ["-c", mount("probes")["mountPath"].as_str().unwrap()])
    );
    let store = args[args.iter().position(|a| *a == "--store").unwrap() + 1];
    assert!(
        store.starts_with(mount("data")["mountPath"].as_str().unwrap()),
        "{store}"
    );
    assert_eq!(
        statefulset["spec"]["volumeClaimTemplates"][0]["metadata"]["name"],
        "data"
    );

    let Some(tool) = support::required_tool(
        "kubernetes-validate",
        "SLOWBURN_REQUIRE_KUBERNETES_VALIDATE",
        "pip install kubernetes-validate",
    ) else {
        return;
    };
    let (passed, text) = kubernetes_validate(&tool, &files);
    assert!(passed, "{text}");
    assert_eq!(text.matches(" passed for resource ").count(), 3, "{text}");
    // And it does reject a manifest with a mistake, so the pass above means something.
    let broken = std::fs::read_to_string(dir.join("statefulset.yaml"))
        .unwrap()
        .replace("serviceName:", "servicName:");
    let broken_file = scratch.join("statefulset.yaml");
    std::fs::write(&broken_file, broken).unwrap();
    let (passed, text) = kubernetes_validate(&tool, &[broken_file]);
    assert!(!passed && text.contains("servicName"), "{text}");
}

#[test]
fn the_cluster_manifests_validate_and_their_probes_load() {
    let dir = root().join("deploy/kubernetes/cluster");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 4, "{files:?}");

    // The probe file shares PostgreSQL and loads, with the secrets it names set.
    let configmap = yaml_as_json(&std::fs::read_to_string(dir.join("configmap.yaml")).unwrap());
    let probes = configmap["data"]["probes.yaml"].as_str().unwrap();
    assert!(schema_errors(&schema_validator(), probes).is_empty());
    let scratch = temp_dir("k8s-cluster-probes");
    std::fs::write(scratch.join("probes.yaml"), probes).unwrap();
    let out = Command::new(BIN)
        .args(["check", "-c", "probes.yaml"])
        .current_dir(&scratch)
        .env(
            "SLOWBURN_PG",
            "host=db.internal user=slowburn dbname=slowburn",
        )
        .env("PD_ROUTING_KEY", "r0ut1ngk3y")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Each pod is a replica named after itself, in the StatefulSet's location, with the DSN.
    let sts = yaml_as_json(&std::fs::read_to_string(dir.join("statefulset-seoul.yaml")).unwrap());
    assert!(sts["spec"]["replicas"].as_u64().unwrap() >= 2);
    let container = &sts["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.windows(2).any(|w| w == ["--replica", "$(POD_NAME)"]));
    assert!(args.windows(2).any(|w| w == ["--location", "seoul"]));
    assert_eq!(
        container["env"][0]["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );
    assert_eq!(container["envFrom"][0]["secretRef"]["name"], "slowburn-pg");

    let Some(tool) = support::required_tool(
        "kubernetes-validate",
        "SLOWBURN_REQUIRE_KUBERNETES_VALIDATE",
        "pip install kubernetes-validate",
    ) else {
        return;
    };
    let (passed, text) = kubernetes_validate(&tool, &files);
    assert!(passed, "{text}");
    assert_eq!(text.matches(" passed for resource ").count(), 4, "{text}");
}
