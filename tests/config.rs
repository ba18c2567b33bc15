//! Probe files: every invalid fixture fails with each of its errors at `file:line:col`, and
//! every example file shipped in `probes/` loads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use slowburn::config::{self, Source};
use slowburn::probe::{BuildContext, net::NetContext};

fn ctx() -> BuildContext {
    BuildContext {
        net: Arc::new(NetContext::new()),
    }
}

fn load(paths: &[&str]) -> Result<config::Config, Vec<config::ConfigError>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let paths = paths.iter().map(|p| root.join(p)).collect();
    config::load(&Source::Paths(paths), &ctx())
}

/// An error expected: line, column, and text the message contains.
type Expected = (usize, usize, &'static str);

/// One row per fixture: the errors expected.
const INVALID: &[(&str, &[Expected])] = &[
    (
        "seasonal.yaml",
        &[
            (
                6,
                55,
                "drift.value.seasonal.for: 2m cannot be filled by a probe run every 5m",
            ),
            (
                11,
                45,
                "drift.value.seasonal.below must be between 0% and 100%, got 130%",
            ),
            (
                16,
                55,
                "drift.value.seasonal.for: 2d is too long for a period of 1d",
            ),
            (
                21,
                34,
                "drift.value.seasonal.period must be 1d or 1w, got 2h",
            ),
            (
                21,
                60,
                "drift.value.seasonal.severity: \"loud\" is not one of page, ticket",
            ),
            (22, 7, "drift: prometheus probes have no signal `other`"),
            (
                27,
                60,
                "drift.value.seasonal.timezone: unknown time zone \"Europe/Atlantis\"",
            ),
        ],
    ),
    (
        "change-form.yaml",
        &[
            (
                5,
                7,
                "drift.latency.change.direction: \"sideways\" is not one of up, down, both",
            ),
            (
                6,
                7,
                "drift.body_bytes.change.sensitivity: \"extreme\" is not one of low, normal, high",
            ),
        ],
    ),
    (
        "port-out-of-range.yaml",
        &[(3, 17, "port 99999 is not between 0 and 65535")],
    ),
    (
        "url-password.yaml",
        &[(3, 17, "credentials in the URL would be shown as the target")],
    ),
    (
        "storage-directory.yaml",
        &[(2, 9, "storage: path: \".\" is a directory")],
    ),
    (
        "tiny-timeout.yaml",
        &[(3, 14, "timeout: must be at least 1ms")],
    ),
    (
        "max-body-zero.yaml",
        &[(3, 48, "http.max_body: must be more than zero")],
    ),
    (
        "answers-range.yaml",
        &[(3, 52, "dns.expect.min_answers: 3 is above max_answers 1")],
    ),
    (
        "secret-not-a-file.yaml",
        &[(
            3,
            52,
            "bearer_token: secret file:/dev/zero is not a regular file",
        )],
    ),
    (
        "alias-bomb.yaml",
        &[(6, 40, "aliases expand to more than 100000 nodes")],
    ),
    (
        "second-document.yaml",
        &[(4, 1, "a probe file holds one YAML document")],
    ),
    (
        "duplicate-label.yaml",
        &[(3, 26, "probe \"one\": labels: duplicate key `team`")],
    ),
    (
        "duplicate-section.yaml",
        &[(4, 1, "duplicate key `probes`, first at 1:1")],
    ),
    (
        "reserved-labels.yaml",
        &[
            (3, 14, "labels: `detector` is set by slowburn itself"),
            (3, 27, "labels: `window` is set by slowburn itself"),
            (3, 38, "names starting with `__` are reserved by Prometheus"),
            (3, 51, "labels: `version` is set by slowburn itself"),
        ],
    ),
    ("malformed.yaml", &[(4, 3, "invalid YAML")]),
    (
        "wrong-type.yaml",
        &[
            (
                3,
                13,
                "probe \"labels-not-a-map\": labels: invalid type: integer `5`, expected a map",
            ),
            (6, 53, "http.max_redirects: invalid type: string \"many\""),
        ],
    ),
    (
        "unknown-key.yaml",
        &[
            (2, 5, "a probe needs exactly one kind"),
            (3, 5, "unknown key `htpp` (did you mean `http`?)"),
            (7, 16, "unknown key `statuss` (did you mean `status`?)"),
            (8, 1, "unknown section `alerting`"),
        ],
    ),
    (
        "duplicate-name.yaml",
        &[(4, 11, "probe \"same\": duplicate name, first defined at")],
    ),
    (
        "bad-url.yaml",
        &[
            (
                3,
                17,
                "http.url: invalid URL \"shop.example.com/health\": it needs http:// or https://",
            ),
            (5, 17, "scheme \"ftp\" is not http or https"),
        ],
    ),
    (
        "bad-regex.yaml",
        &[(6, 21, "http.expect.body_regex: invalid regex")],
    ),
    (
        "bad-duration.yaml",
        &[
            (2, 13, "defaults: interval: invalid duration \"30 seconds\""),
            (5, 15, "probe \"d\": interval: invalid duration \"15x\""),
            (
                8,
                31,
                "http.expect.latency_below: invalid duration \"fast\"",
            ),
        ],
    ),
    (
        "timeout-over-interval.yaml",
        &[(4, 14, "timeout: 10s must be shorter than the interval 10s")],
    ),
    (
        "missing-secret.yaml",
        &[
            (
                2,
                14,
                "server: api_token: secret env:SLOWBURN_FIXTURE_SURELY_UNSET is not set",
            ),
            (
                7,
                21,
                "http.bearer_token: secret file:/nonexistent/slowburn/token cannot be read",
            ),
        ],
    ),
    (
        "inline-secret.yaml",
        &[(5, 47, "secrets must be written as env:NAME or file:/path")],
    ),
    (
        "heartbeat.yaml",
        &[
            (
                3,
                39,
                "probe \"both\": heartbeat.schedule: give period or schedule, not both",
            ),
            (
                5,
                27,
                "heartbeat.schedule: invalid cron pattern \"0 25 * * *\"",
            ),
            (
                7,
                47,
                "heartbeat.token: secrets must be written as env:NAME or file:/path",
            ),
            (
                8,
                17,
                "watchdog: url: an absolute http or https URL is needed",
            ),
            (8, 53, "watchdog: interval: must be at least 1s"),
        ],
    ),
    (
        "kinds.yaml",
        &[
            (
                2,
                5,
                "probe \"none\": a probe needs exactly one kind: http, tcp, dns",
            ),
            (
                4,
                5,
                "probe \"two\": a probe has exactly one kind, found tcp and dns",
            ),
        ],
    ),
    (
        "bad-values.yaml",
        &[
            (2, 11, "name: use letters, digits"),
            (3, 14, "labels: `probe` is set by slowburn itself"),
            (3, 24, "invalid label name \"9lives\""),
            (4, 20, "tcp.address: invalid address \"no-port\""),
            (8, 17, "http.max_body: invalid size \"1 gig\""),
            (9, 25, "http.expect.status: invalid status \"700\""),
            (11, 36, "dns.type: unknown record type \"AAAAA\""),
            (11, 51, "dns.server: invalid DNS server \"not-an-ip\""),
            (11, 81, "dns.expect.rcode: unknown rcode \"NOPE\""),
        ],
    ),
    (
        "many-errors.yaml",
        &[
            (3, 11, "server: listen: invalid address \"localhost\""),
            (6, 15, "probe \"one\": interval: invalid duration \"5q\""),
            (7, 17, "probe \"one\": http.url: invalid URL \"nope\""),
            (
                9,
                59,
                "probe \"two\": http.expect.body_regex: invalid regex",
            ),
            (
                9,
                79,
                "probe \"two\": http.expect.latency_below: invalid duration \"1y\"",
            ),
            (12, 5, "probe \"three\": unknown key `colour`"),
        ],
    ),
    (
        "drift.yaml",
        &[
            (5, 7, "drift: http probes have no signal `rss`"),
            (6, 24, "drift.latency.limit: \"2GiB\" is not a duration"),
            (7, 42, "drift.body_bytes.horizon: must be more than zero"),
            (8, 10, "slo: \"120%\" must be between 0% and 100%"),
        ],
    ),
    (
        "log.yaml",
        &[
            (
                4,
                13,
                "log.file: \"var/log/app.log\" is not an absolute path",
            ),
            (5, 25, "log.patterns.error: invalid regex: unclosed group"),
            (
                5,
                35,
                "log.patterns: \"lines\" is one of the probe's own signals",
            ),
            (5, 45, "log.patterns: \"Bad\" is not a signal name"),
            (
                6,
                17,
                "log.start_at: \"middle\" is not one of end, beginning",
            ),
            (7, 23, "log.max_line_bytes: must be more than zero"),
            (
                8,
                22,
                "log.expect.max: \"fatal\" is not one of the patterns: Bad, error, lines",
            ),
            (11, 47, "log.journal.priority: \"loud\" is not a priority"),
            (13, 31, "log.new_signature.within: invalid duration \"5x\""),
        ],
    ),
    (
        "blackbox-modules.yaml",
        &[
            (
                5,
                20,
                "module \"http_2xx\": http.compression: \"zstd\" is not one of gzip, deflate, br, identity",
            ),
            (6, 37, "http.fail_if_body_matches_regexp: invalid regex"),
            (
                7,
                29,
                "http.valid_http_versions: unknown HTTP version \"HTTP/9\"",
            ),
            (8, 7, "unknown key `bogus`"),
            (
                9,
                57,
                "module \"ping\": icmp.ttl: must be between 1 and 255, got 300",
            ),
            (10, 28, "`http:` has no effect with prober tcp"),
            (11, 11, "module \"lookup\": dns.query_name: required"),
            (11, 34, "timeout: invalid duration \"5x\""),
            (
                12,
                9,
                "module \"mail\": tcp.query_response.starttls: starttls upgrades a plain connection",
            ),
            (
                13,
                48,
                "module \"from\": tcp.source_ip_address: \"nope\" is not an IP address",
            ),
            (
                14,
                93,
                "module \"rrs\": dns.validate_authority_rrs.fail_if_matches_regexp: invalid regex",
            ),
            (
                15,
                43,
                "module \"h1\": http.enable_http1: not supported by slowburn yet as false (HTTP/2 only)",
            ),
            (
                16,
                43,
                "module \"bodyf\": http.body_file: cannot read /nonexistent/body: No such file",
            ),
            (
                17,
                87,
                "module \"auth2\": http.authorization: cannot be given with bearer_token",
            ),
            (
                18,
                39,
                "module \"np\": http.no_proxy: has no effect without proxy_url",
            ),
            (21, 11, "address: each target fills it"),
            (
                24,
                13,
                "module: no module \"nope\"; modules: auth2, bodyf, from, h1, http_2xx, lookup, mail, np, ping, rrs, web",
            ),
            (26, 5, "a process probe is not pointed at targets"),
            (30, 13, "a module entry needs `targets:` or `targets_file:`"),
        ],
    ),
    (
        "cluster.yaml",
        &[
            (
                1,
                27,
                "storage: postgres: dsn: secrets must be written as env:NAME",
            ),
            (5, 24, "locations: \"seoul\" is listed twice"),
            (5, 31, "locations: \"bad name\": use letters, digits"),
            (6, 27, "quorum: min_failing: 4 must be between 1 and the 3"),
            (6, 35, "quorum: for: invalid duration \"5x\""),
            (9, 27, "quorum: needs `locations:`"),
            (13, 27, "quorum: min_failing: \"two\": expected a count"),
            (13, 32, "unknown key `fr` (did you mean `for`?)"),
            (
                17,
                27,
                "quorum: min_failing: \"0%\": a percentage is more than 0%",
            ),
        ],
    ),
    (
        "cluster-unshared.yaml",
        &[(
            4,
            17,
            "locations: replicas in several locations share results through `storage: postgres:`",
        )],
    ),
    (
        "alerting.yaml",
        &[
            (4, 20, "alert.after: must be at least 1"),
            (4, 31, "alert.policy: no policy named \"nobody\""),
            (4, 49, "alert.severity: \"loud\" is not page or ticket"),
            (7, 12, "notifier \"hook\" is defined twice"),
            (11, 24, "steps[0].notify: no notifier named \"pager\""),
            (12, 16, "steps[1].after: invalid duration \"1x\""),
            (13, 17, "steps[1].notify: name at least one notifier"),
            (15, 43, "weekly.days: \"Funday\" is not a weekday"),
            (15, 59, "weekly.start: \"25:00\" is not HH:MM"),
            (15, 92, "weekly.timezone: unknown timezone \"Mars/Olympus\""),
            (16, 13, "match: a silence needs at least one label matcher"),
            (16, 25, "starts: \"yesterday\" is not an RFC 3339 time"),
        ],
    ),
    (
        "oncall.yaml",
        &[
            (2, 39, "notify: no notifier named \"nohook\""),
            (3, 12, "person \"alice\" is defined twice (first at line 2)"),
            (3, 27, "notify: name at least one contact"),
            (
                4,
                12,
                "person \"a/b\": name: use letters, digits and _ . @ -",
            ),
            (9, 25, "layers[0].users: no person named \"zed\""),
            (
                9,
                38,
                "layers[0].start: \"2027-03-28T02:30\" does not exist in Europe/Berlin",
            ),
            (
                9,
                64,
                "layers[0].turn: \"1m\" is not a number of hours, days or weeks",
            ),
            (
                10,
                98,
                "layers[1].restrictions.days: \"Funday\" is not a weekday",
            ),
            (
                10,
                114,
                "layers[1].restrictions.start: \"9am\" is not HH:MM",
            ),
            (12, 55, "overrides[0].end: must be after start"),
            (
                13,
                30,
                "overrides[1].start: \"2027-03-28T02:15\" does not exist in Europe/Berlin",
            ),
            (14, 29, "timezone: unknown time zone \"Mars/Olympus\""),
            (14, 51, "layers: a schedule needs at least one layer"),
            (18, 33, "steps[0].notify: no schedule named \"nope\""),
            (18, 50, "steps[0].notify: no person named \"bob\""),
            (20, 37, "routes[0].policy: no policy named \"missing\""),
            (21, 19, "server: canary: no probe named \"nosuch\""),
            (
                21,
                42,
                "server: external_url: \"ftp://x\" is not an http(s) URL",
            ),
            (23, 59, "probe \"a\": depends_on: a cycle: a → b → a"),
            (24, 59, "probe \"b\": depends_on: a cycle: b → a → b"),
            (24, 62, "probe \"b\": depends_on: no probe named \"ghost\""),
            (25, 59, "probe \"c\": depends_on: a cycle: c → c"),
        ],
    ),
];

#[test]
fn every_invalid_fixture_reports_every_error_with_its_position() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let mut listed: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    listed.sort();
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(
        listed, on_disk,
        "every fixture has a row, every row a fixture"
    );

    for (file, expected) in INVALID {
        let errors = load(&[&format!("tests/fixtures/invalid/{file}")]).expect_err(file);
        let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), expected.len(), "{file}: {got:#?}");
        for (error, (line, col, text)) in errors.iter().zip(expected.iter()) {
            let pos = error
                .pos
                .unwrap_or_else(|| panic!("{file}: no position in {error}"));
            assert_eq!((pos.line, pos.col), (*line, *col), "{file}: {error}");
            assert!(
                error.message.contains(text),
                "{file}: {error:?} lacks {text:?}"
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("{}:{line}:{col}: ", error.file.display()))
            );
        }
    }
}

#[test]
fn errors_from_several_files_are_all_reported() {
    let errors = load(&[
        "tests/fixtures/invalid/bad-url.yaml",
        "tests/fixtures/invalid/bad-regex.yaml",
    ])
    .unwrap_err();
    assert_eq!(errors.len(), 3);
    assert!(errors[0].file.ends_with("bad-url.yaml"));
    assert!(errors[2].file.ends_with("bad-regex.yaml"));
}

#[test]
fn the_shipped_probe_directory_loads() {
    let config = load(&["probes"]).unwrap_or_else(|e| panic!("{e:#?}"));
    assert!(config.probes.iter().any(|p| p.name == "self-healthz"));
    assert_eq!(config.server.listen.to_string(), config::DEFAULT_LISTEN);
}

#[test]
fn every_example_file_loads() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/examples");
    let secrets = write_example_secrets();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Examples name their secrets `env:…`; point them at files so the test needs no
        // environment.
        let text = secrets.iter().fold(text, |t, (name, path)| {
            t.replace(&format!("env:{name}"), &format!("\"file:{path}\""))
        });
        let source = Source::Text {
            name: file.display().to_string(),
            text,
        };
        if let Err(errors) = config::load(&source, &ctx()) {
            panic!("{}: {errors:#?}", file.display());
        }
    }
}

fn write_example_secrets() -> Vec<(String, String)> {
    let dir = std::env::temp_dir().join(format!("slowburn-example-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut out = Vec::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/examples");
    for entry in std::fs::read_dir(examples).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for (i, _) in text.match_indices("env:") {
            let name: String = text[i + 4..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let path = dir.join(&name);
            let value = if name.contains("DSN") {
                "host=127.0.0.1 port=5432 user=slowburn dbname=postgres"
            } else {
                "example-secret"
            };
            std::fs::write(&path, value).unwrap();
            out.push((name, path.display().to_string()));
        }
    }
    out
}

#[test]
fn the_embedded_default_matches_the_shipped_file() {
    let shipped =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("probes/local.yaml"))
            .unwrap();
    assert_eq!(config::EMBEDDED, shipped);
}

#[test]
fn defaults_apply_and_inherited_timeouts_fit_the_interval() {
    let text = "defaults: {interval: 20s, timeout: 10s}\nprobes:\n  - {name: a, tcp: {address: \"127.0.0.1:1\"}}\n  - {name: b, interval: 5s, tcp: {address: \"127.0.0.1:1\"}}\n  - {name: c, interval: 1m, timeout: 30s, tcp: {address: \"127.0.0.1:1\"}}\n";
    let config = config::load(
        &Source::Text {
            name: "t.yaml".into(),
            text: text.into(),
        },
        &ctx(),
    )
    .unwrap();
    let times: Vec<(u64, u64)> = config
        .probes
        .iter()
        .map(|p| (p.interval.as_millis() as u64, p.timeout.as_millis() as u64))
        .collect();
    assert_eq!(times, [(20_000, 10_000), (5_000, 4_000), (60_000, 30_000)]);
}
