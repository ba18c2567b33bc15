//! Several real slowburn processes sharing one real PostgreSQL (the shared throw-away
//! cluster of `support::pg`, a fresh database per test): each escalation step reaches the
//! receiver exactly once, an ack on one replica stops steps another would claim, probes are
//! shared out and move when a replica dies, and a quorum of locations opens one alert (and
//! flaps shorter than its `for` open none).
//!
//! Membership timeouts and intervals are short (stated per test) so the whole file runs in
//! well under a minute; the daemons' own clocks are real, since they are real processes.

mod support;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use support::daemon::{Daemon, free_port, request_json, temp_dir, wait_http};
use support::pg;
use support::receiver::Receiver;

const TOKEN: &str = "cluster-test-token";

/// Replicas started on one database, each with its own probe file and local store.
struct Fleet {
    runtime: tokio::runtime::Runtime,
    cluster: &'static pg::Cluster,
    database: String,
    dir: PathBuf,
    daemons: Vec<Option<Daemon>>,
    addrs: Vec<SocketAddr>,
}

impl Fleet {
    fn new(name: &str) -> Option<Fleet> {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cluster = pg::shared()?;
        let database = runtime.block_on(cluster.database(name));
        Some(Fleet {
            runtime,
            cluster,
            database,
            dir: temp_dir(&format!("replicas-{name}")),
            daemons: Vec::new(),
            addrs: Vec::new(),
        })
    }

    /// Starts replica `name` in `location` with `yaml` as its probe file.
    fn start(&mut self, name: &str, location: &str, yaml: &str) -> SocketAddr {
        let file = self.dir.join(format!("{name}.yaml"));
        std::fs::write(&file, yaml).unwrap();
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let store = self.dir.join(format!("{name}.db"));
        let dsn = self.cluster.dsn("postgres", &self.database);
        let daemon = Daemon::start(
            &[
                "run",
                "-c",
                file.to_str().unwrap(),
                "--listen",
                &listen.to_string(),
                "--store",
                store.to_str().unwrap(),
                "--replica",
                name,
                "--location",
                location,
            ],
            &self.dir,
            &[
                ("SLOWBURN_PG", dsn.as_str()),
                ("SLOWBURN_TOKEN", TOKEN),
                ("RUST_LOG", "error"),
            ],
        );
        wait_http(listen);
        self.daemons.push(Some(daemon));
        self.addrs.push(listen);
        listen
    }

    fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.runtime.block_on(async {
            let client = self.cluster.connect(&self.database).await;
            client.query(sql, &[]).await.unwrap()
        })
    }

    fn count(&self, sql: &str) -> i64 {
        self.query(sql)[0].get(0)
    }
}

/// The head of a probe file: the shared database with short timeouts, a webhook and a policy.
fn head(hooks: SocketAddr, steps: &str) -> String {
    format!(
        "server: {{api_token: env:SLOWBURN_TOKEN}}
storage: {{postgres: {{dsn: env:SLOWBURN_PG, lease: 5s, membership_timeout: 2s}}}}
notifiers:
  - {{name: hook, webhook: {{url: \"http://{hooks}/hook\"}}}}
policies:
  - {{name: p, repeat: 0, steps: [{steps}]}}
probes:
"
    )
}

/// `n` probes that fail every second, each paging a 3-step policy (0, 2s, 4s).
fn failing(hooks: SocketAddr, n: usize) -> String {
    let target = closed();
    let mut yaml = head(
        hooks,
        "{notify: [hook]}, {after: 2s, notify: [hook]}, {after: 4s, notify: [hook]}",
    );
    for i in 0..n {
        yaml.push_str(&format!(
            "  - {{name: p{i}, interval: 1s, timeout: 500ms, tcp: {{address: \"{target}\"}}, alert: {{after: 1, policy: p}}}}\n"
        ));
    }
    yaml
}

/// An address where nothing listens: every run fails at once (connect: refused).
fn closed() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// (alert id, step) of every trigger the receiver got.
fn triggers(r: &Receiver) -> Vec<(u64, u64)> {
    let log = r.0.lock().unwrap();
    log.iter()
        .filter(|(p, j)| p == "/hook" && j["event"] == "trigger")
        .map(|(_, j)| (j["alert_id"].as_u64().unwrap(), j["step"].as_u64().unwrap()))
        .collect()
}

fn wait_until(what: &str, limit: Duration, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// 3 replicas, 200 failing probes with a 3-step policy: 600 steps, each received once.
#[test]
fn three_replicas_page_each_of_600_steps_exactly_once() {
    let Some(mut fleet) = Fleet::new("exactly_once") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    const PROBES: usize = 200;
    let yaml = failing(hooks, PROBES);
    for name in ["r1", "r2", "r3"] {
        fleet.start(name, "seoul", &yaml);
    }
    wait_until("600 steps", Duration::from_secs(30), || {
        triggers(&receiver).len() >= PROBES * 3
    });
    // Time for a duplicate to show up: two more beats of every replica.
    std::thread::sleep(Duration::from_secs(1));
    let got = triggers(&receiver);
    let distinct: HashSet<_> = got.iter().collect();
    assert_eq!(got.len(), distinct.len(), "a step was sent twice");
    assert_eq!(distinct.len(), PROBES * 3);
    let alerts: HashSet<u64> = got.iter().map(|(a, _)| *a).collect();
    assert_eq!(alerts.len(), PROBES, "one alert per probe");
    let openers = fleet.count("SELECT count(DISTINCT opened_by) FROM slowburn_alerts");
    let senders = fleet.count("SELECT count(DISTINCT sent_by) FROM slowburn_steps");
    assert!(
        openers >= 2 && senders >= 2,
        "work is shared: {openers} opened, {senders} sent"
    );
}

/// An ack through one replica's API, by the id the page showed, stops the steps of an alert
/// another replica evaluates and any replica would claim.
#[test]
fn an_ack_on_one_replica_stops_steps_on_another() {
    let Some(mut fleet) = Fleet::new("ack_elsewhere") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    let target = closed();
    let mut yaml = head(
        hooks,
        "{notify: [hook]}, {after: 3s, notify: [hook]}, {after: 6s, notify: [hook]}",
    );
    yaml.push_str(&format!(
        "  - {{name: db, interval: 1s, timeout: 500ms, tcp: {{address: \"{target}\"}}, alert: {{after: 1, policy: p}}}}\n"
    ));
    let a = fleet.start("a", "seoul", &yaml);
    let b = fleet.start("b", "seoul", &yaml);
    wait_until("step 1", Duration::from_secs(15), || {
        !triggers(&receiver).is_empty()
    });
    let (id, _) = triggers(&receiver)[0];
    let opener: String = fleet.query("SELECT opened_by FROM slowburn_alerts")[0].get(0);
    // Ack on the replica that did not open it.
    let other = if opener == "a" { b } else { a };
    let (status, body) = request_json(
        other,
        "POST",
        &format!("/api/v1/alerts/{id}/ack"),
        Some(TOKEN),
        r#"{"by": "alice"}"#,
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "acknowledged");
    assert_eq!(body["id"], id);
    // Past step 3's due time: nothing after the ack but the acknowledge notice.
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(triggers(&receiver), [(id, 0)], "no step after the ack");
    let acks: Vec<_> = receiver
        .events("/hook")
        .into_iter()
        .filter(|(e, _)| e == "acknowledge")
        .collect();
    assert_eq!(acks.len(), 1, "the paged notifier is told once: {acks:?}");
    // Both replicas list it acknowledged, under the same id.
    for addr in [a, b] {
        let (_, list) = request_json(addr, "GET", "/api/v1/alerts", None, "");
        let listed = list.as_array().unwrap();
        assert_eq!(listed.len(), 1, "{list}");
        assert_eq!(
            (listed[0]["id"].as_u64(), listed[0]["state"].as_str()),
            (Some(id), Some("acknowledged"))
        );
    }
}

/// 3,000 probes over 3 replicas (interval 2s, membership timeout 2s): every (probe, slot)
/// is stored once, the replicas share the probes about evenly, and after one is killed its
/// probes run again on the others within the membership timeout plus two intervals (6s).
#[test]
fn probes_are_sharded_and_move_when_a_replica_dies() {
    let Some(mut fleet) = Fleet::new("sharded") else {
        return;
    };
    let (_receiver, hooks) = Receiver::start();
    // An open port that accepts and drops: every run succeeds.
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = open.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in open.incoming() {
            drop(s)
        }
    });
    let mut yaml = head(hooks, "{notify: [hook]}");
    const PROBES: i64 = 3000;
    for i in 0..PROBES {
        yaml.push_str(&format!(
            "  - {{name: s{i}, interval: 2s, timeout: 1s, tcp: {{address: \"{target}\"}}}}\n"
        ));
    }
    for name in ["r1", "r2", "r3"] {
        fleet.start(name, "seoul", &yaml);
    }
    // Settled: a full interval in which every probe ran on exactly its owner.
    let settled = || {
        fleet.count(
            "SELECT count(DISTINCT probe) FROM slowburn_results WHERE at > now() - interval '2 seconds'",
        ) == PROBES
    };
    wait_until("every probe running", Duration::from_secs(20), settled);
    std::thread::sleep(Duration::from_secs(3));
    let shares = fleet.query(
        "SELECT replica, count(DISTINCT probe) FROM slowburn_results
         WHERE at > now() - interval '2 seconds' GROUP BY replica ORDER BY replica",
    );
    let shares: HashMap<String, i64> = shares.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(shares.len(), 3, "{shares:?}");
    for n in shares.values() {
        assert!((800..=1200).contains(n), "uneven shares {shares:?}");
    }
    // `slowburn cluster` sees the three members and shares the probes out as they do.
    let dsn = fleet.cluster.dsn("postgres", &fleet.database);
    let out = std::process::Command::new(support::daemon::BIN)
        .args(["cluster", "-c", "r1.yaml", "--json"])
        .current_dir(&fleet.dir)
        .env("SLOWBURN_PG", &dsn)
        .env("SLOWBURN_TOKEN", TOKEN)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let members = report["members"].as_array().unwrap();
    assert_eq!(members.len(), 3, "{report}");
    let mut owned = 0;
    for m in members {
        let name = m["replica"].as_str().unwrap();
        let owns = m["owns"].as_i64().unwrap();
        assert_eq!(m["live"], true);
        assert!(
            (owns - shares[name]).abs() <= 30,
            "{name}: {report} vs {shares:?}"
        );
        assert_eq!(m["probes"].as_i64(), Some(owns), "its own count: {report}");
        owned += owns;
    }
    assert_eq!(owned, PROBES);
    fleet.daemons[1].take(); // kill -9
    let killed_at: f64 = fleet.query("SELECT extract(epoch FROM now())::float8")[0].get(0);
    let started = Instant::now();
    // r2's probes: those it ran in the two intervals before it died (under load a run can be
    // late, so one interval may miss some of its share).
    let r2_probes = format!(
        "SELECT DISTINCT probe FROM slowburn_results WHERE replica = 'r2'
         AND at > to_timestamp({killed_at}) - interval '4 seconds'"
    );
    let killed_share = fleet.count(&format!("SELECT count(*) FROM ({r2_probes}) p"));
    assert!(
        (800..=1200).contains(&killed_share),
        "r2 held about a third: {killed_share} of {PROBES}"
    );
    wait_until("r2's probes run elsewhere", Duration::from_secs(15), || {
        fleet.count(&format!(
            "SELECT count(DISTINCT probe) FROM slowburn_results
             WHERE at > to_timestamp({killed_at}) AND replica <> 'r2'
             AND probe IN ({r2_probes})"
        )) == killed_share
    });
    let moved_within = started.elapsed();
    eprintln!("r2's {killed_share} probes ran elsewhere {moved_within:?} after the kill");
    // The membership timeout (2 s) plus two intervals (4 s), and 4 s for a loaded machine
    // (three daemons, PostgreSQL and the test share two cores); the issue's ceiling is 15 s.
    assert!(
        moved_within <= Duration::from_secs(10),
        "took {moved_within:?}"
    );
    let duplicates = fleet.count(
        "SELECT count(*) FROM (SELECT probe, slot FROM slowburn_results GROUP BY probe, location, slot HAVING count(*) > 1) d",
    );
    assert_eq!(duplicates, 0);
    // Only r2's probes moved: r1 and r3 kept theirs.
    let moved_from_survivors = fleet.count(&format!(
        "SELECT count(DISTINCT a.probe) FROM slowburn_results a JOIN slowburn_results b
           ON a.probe = b.probe AND a.replica <> b.replica
         WHERE a.replica IN ('r1', 'r3') AND b.replica IN ('r1', 'r3')
           AND a.at > to_timestamp({killed_at}) AND b.at > to_timestamp({killed_at})"
    ));
    assert_eq!(moved_from_survivors, 0);
}

/// Locations seoul, tokyo and frankfurt, `quorum: {min_failing: 2, for: 2s}`: one failing
/// location opens nothing; when a second fails for 2s exactly one alert opens.
#[test]
fn a_quorum_of_locations_opens_one_alert() {
    let Some(mut fleet) = Fleet::new("quorum") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    let ok = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok_addr = ok.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in ok.incoming() {
            drop(s)
        }
    });
    // Tokyo's target is a listener the test closes to make tokyo fail.
    let tokyo = TcpListener::bind("127.0.0.1:0").unwrap();
    let tokyo_addr = tokyo.local_addr().unwrap();
    let tokyo_open = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    tokyo.set_nonblocking(true).unwrap();
    let flag = tokyo_open.clone();
    std::thread::spawn(move || {
        while flag.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = tokyo.accept();
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let probe = |target: SocketAddr| {
        format!(
            "{}  - {{name: checkout, interval: 500ms, timeout: 300ms, tcp: {{address: \"{target}\"}},
      locations: [seoul, tokyo, frankfurt], quorum: {{min_failing: 2, for: 2s}}, alert: {{after: 1, policy: p}}}}\n",
            head(hooks, "{notify: [hook]}")
        )
    };
    fleet.start("seoul-1", "seoul", &probe(closed()));
    fleet.start("tokyo-1", "tokyo", &probe(tokyo_addr));
    let frankfurt = fleet.start("frankfurt-1", "frankfurt", &probe(ok_addr));
    // Seoul alone has failed for 4s, twice `for`: no alert.
    wait_until(
        "all three locations report",
        Duration::from_secs(15),
        || fleet.count("SELECT count(DISTINCT location) FROM slowburn_results") == 3,
    );
    std::thread::sleep(Duration::from_secs(4));
    assert!(triggers(&receiver).is_empty(), "1 of 3 failing paged");
    let (_, locations) = request_json(
        frankfurt,
        "GET",
        "/api/v1/probes/checkout/locations",
        None,
        "",
    );
    let results: HashMap<String, String> = locations["locations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["location"].as_str().unwrap().into(),
                l["result"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(results["seoul"], "failing", "{locations}");
    assert_eq!(results["tokyo"], "passing");
    assert_eq!(locations["min_failing"], 2);
    let (_, probe) = request_json(frankfurt, "GET", "/api/v1/probes/checkout", None, "");
    assert_eq!(
        probe["locations"],
        serde_json::json!(["seoul", "tokyo", "frankfurt"])
    );
    // Tokyo fails too: after `for` (2s) and an interval or two, one alert.
    tokyo_open.store(false, std::sync::atomic::Ordering::Relaxed);
    let failing_since = Instant::now();
    wait_until("the quorum's alert", Duration::from_secs(15), || {
        !triggers(&receiver).is_empty()
    });
    assert!(
        failing_since.elapsed() >= Duration::from_secs(2),
        "opened before `for`"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(triggers(&receiver).len(), 1, "exactly one alert");
    assert_eq!(fleet.count("SELECT count(*) FROM slowburn_alerts"), 1);
}

/// An HTTP target that answers 200, or 503 while the flag it returns is set.
fn flapping() -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = failing.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let flag = flag.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let status = if flag.load(std::sync::atomic::Ordering::Relaxed) {
                    "503 Service Unavailable"
                } else {
                    "200 OK"
                };
                let _ = write!(
                    reader.into_inner(),
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            });
        }
    });
    (addr, failing)
}

/// The issue's "shorter flaps → none", with real daemons: seoul and tokyo fail together for
/// 1s at a time, four times, under `quorum: {min_failing: 2, for: 3s}`; nothing pages. The
/// same failure held past `for` then opens exactly one alert, so the quiet was not for want
/// of failures reaching the judge.
#[test]
fn quorum_flaps_shorter_than_for_page_nobody() {
    let Some(mut fleet) = Fleet::new("quorum_flaps") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    let (flaky, failing) = flapping();
    let ok = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok_addr = ok.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in ok.incoming() {
            drop(s)
        }
    });
    let yaml = |target: &str| {
        format!(
            "{}  - {{name: checkout, interval: 500ms, timeout: 300ms, {target},
      locations: [seoul, tokyo, frankfurt], quorum: {{min_failing: 2, for: 3s}}, alert: {{after: 1, policy: p}}}}\n",
            head(hooks, "{notify: [hook]}")
        )
    };
    let http = format!("http: {{url: \"http://{flaky}/\"}}");
    fleet.start("seoul-1", "seoul", &yaml(&http));
    fleet.start("tokyo-1", "tokyo", &yaml(&http));
    fleet.start(
        "frankfurt-1",
        "frankfurt",
        &yaml(&format!("tcp: {{address: \"{ok_addr}\"}}")),
    );
    wait_until(
        "all three locations report",
        Duration::from_secs(15),
        || fleet.count("SELECT count(DISTINCT location) FROM slowburn_results") == 3,
    );
    let set = |on: bool| failing.store(on, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..4 {
        set(true);
        std::thread::sleep(Duration::from_secs(1));
        set(false);
        std::thread::sleep(Duration::from_secs(1));
    }
    std::thread::sleep(Duration::from_secs(1));
    // Both flapping locations stored failures; the judge saw them and held its page.
    let failed = fleet.count(
        "SELECT count(DISTINCT location) FROM slowburn_results
         WHERE NOT success AND location IN ('seoul', 'tokyo')",
    );
    assert_eq!(failed, 2, "both flapping locations failed");
    assert!(
        triggers(&receiver).is_empty(),
        "a flap shorter than `for` paged"
    );
    assert_eq!(fleet.count("SELECT count(*) FROM slowburn_alerts"), 0);
    // Held past `for`: one alert.
    set(true);
    let failing_since = Instant::now();
    wait_until("the quorum's alert", Duration::from_secs(10), || {
        !triggers(&receiver).is_empty()
    });
    assert!(
        failing_since.elapsed() >= Duration::from_secs(3),
        "opened before `for`"
    );
    assert_eq!(triggers(&receiver).len(), 1, "exactly one alert");
}

/// A webhook receiver that holds its answer to the first request until told to answer (or
/// never), and answers every later one at once. Records every request.
#[derive(Clone, Default)]
struct Holding {
    log: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    release: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Holding {
    fn start() -> (Holding, SocketAddr) {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let holding = Holding::default();
        let shared = holding.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let h = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                        line.clear();
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let first = {
                        let mut log = h.log.lock().unwrap();
                        log.push(serde_json::from_slice(&body).unwrap_or_default());
                        log.len() == 1
                    };
                    while first && !h.release.load(std::sync::atomic::Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    let _ = reader.into_inner().write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                });
            }
        });
        (holding, addr)
    }

    fn triggers(&self) -> Vec<(u64, u64, String)> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|j| j["event"] == "trigger")
            .map(|j| {
                let (a, s) = (j["alert_id"].as_u64().unwrap(), j["step"].as_u64().unwrap());
                (a, s, j["dedup_key"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }
}

/// One failing probe paging `hook` once, on two replicas with a 2s lease (shorter than the
/// notifier's 10s timeout on purpose: the held send outlives it).
fn one_step_pair(fleet: &mut Fleet, hooks: SocketAddr) -> [SocketAddr; 2] {
    let mut yaml = head(hooks, "{notify: [hook]}").replace("lease: 5s", "lease: 2s");
    yaml.push_str(&format!(
        "  - {{name: held, interval: 1s, timeout: 500ms, tcp: {{address: \"{}\"}}, alert: {{after: 1, policy: p}}}}\n",
        closed()
    ));
    [
        fleet.start("a", "seoul", &yaml),
        fleet.start("b", "seoul", &yaml),
    ]
}

/// The replica holding the step's claim, by its index in the fleet.
fn claimer(fleet: &Fleet) -> usize {
    let who: String = fleet.query("SELECT claimed_by FROM slowburn_steps")[0].get(0);
    if who == "a" { 0 } else { 1 }
}

/// `kill -STOP` the claimer while its send is held, past its lease, then `-CONT`: the other
/// replica re-sends once with the same key, and the late completion is fenced off.
#[test]
fn a_replica_stopped_past_its_lease_is_fenced_off() {
    let Some(mut fleet) = Fleet::new("stopped") else {
        return;
    };
    let (receiver, hooks) = Holding::start();
    one_step_pair(&mut fleet, hooks);
    wait_until("the first send", Duration::from_secs(15), || {
        receiver.triggers().len() == 1
    });
    let first = claimer(&fleet);
    fleet.daemons[first].as_ref().unwrap().signal("STOP");
    wait_until("the re-send", Duration::from_secs(10), || {
        receiver.triggers().len() == 2
    });
    fleet.daemons[first].as_ref().unwrap().signal("CONT");
    receiver
        .release
        .store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(2));
    let sent = receiver.triggers();
    assert_eq!(sent.len(), 2, "no third send: {sent:?}");
    assert_eq!(
        sent[0], sent[1],
        "the re-send carries the same alert, step and dedup key"
    );
    let row = &fleet.query("SELECT state, resent, sent_by, claims FROM slowburn_steps")[0];
    let (state, resent, by, claims): (String, bool, String, i32) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!((state.as_str(), resent, claims), ("sent", true, 2));
    assert_ne!(
        by,
        ["a", "b"][first],
        "the record is the second claimer's, not fenced a's"
    );
}

/// `kill -9` the claimer while the receiver holds its response: at most one re-send, with the
/// same key, and the step ends sent.
#[test]
fn a_replica_killed_mid_send_is_resent_once() {
    let Some(mut fleet) = Fleet::new("killed") else {
        return;
    };
    let (receiver, hooks) = Holding::start();
    one_step_pair(&mut fleet, hooks);
    wait_until("the first send", Duration::from_secs(15), || {
        receiver.triggers().len() == 1
    });
    let first = claimer(&fleet);
    fleet.daemons[first].take(); // kill -9
    wait_until("the re-send", Duration::from_secs(10), || {
        receiver.triggers().len() == 2
    });
    receiver
        .release
        .store(true, std::sync::atomic::Ordering::Relaxed);
    wait_until("the step recorded sent", Duration::from_secs(5), || {
        fleet.count("SELECT count(*) FROM slowburn_steps WHERE state = 'sent' AND resent") == 1
    });
    std::thread::sleep(Duration::from_secs(1));
    let sent = receiver.triggers();
    assert_eq!(sent.len(), 2, "at most one re-send: {sent:?}");
    assert_eq!(sent[0], sent[1]);
}

/// `pg_ctl restart -m immediate` while 40 alerts escalate through 3 steps: no step is lost,
/// and duplicates are bounded by the sends in flight at the crash.
#[test]
fn a_database_crash_under_load_loses_no_step() {
    let Some(mut fleet) = Fleet::own("crash") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    const PROBES: usize = 40;
    let yaml = failing(hooks, PROBES);
    fleet.start("r1", "seoul", &yaml);
    fleet.start("r2", "seoul", &yaml);
    wait_until("first steps", Duration::from_secs(15), || {
        triggers(&receiver).len() >= PROBES / 2
    });
    fleet.cluster.restart_immediate().unwrap();
    wait_until(
        "every step after the crash",
        Duration::from_secs(30),
        || triggers(&receiver).iter().collect::<HashSet<_>>().len() >= PROBES * 3,
    );
    std::thread::sleep(Duration::from_secs(1));
    let got = triggers(&receiver);
    let distinct: HashSet<_> = got.iter().collect();
    assert_eq!(distinct.len(), PROBES * 3, "no step lost");
    // A step whose completion the crash cut off is re-sent once its lease ends: duplicates
    // are at most the sends in flight at the crash (the steps due within a beat or two).
    assert!(
        got.len() - distinct.len() <= 64,
        "{} duplicates",
        got.len() - distinct.len()
    );
}

impl Fleet {
    /// A fleet on a cluster of its own, for tests that stop or crash the server.
    fn own(name: &str) -> Option<Fleet> {
        let cluster = match pg::Cluster::start() {
            Ok(c) => c,
            Err(e) if e.starts_with("SKIPPED") => {
                assert!(std::env::var("SLOWBURN_REQUIRE_PG").is_err(), "{e}");
                eprintln!("{e}");
                return None;
            }
            Err(e) => panic!("{e}"),
        };
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let database = runtime.block_on(async {
            let database = cluster.database(name).await;
            // The test clusters trade durability for speed (`synchronous_commit = off` loses
            // the last commits in a crash); a production database keeps it on, so does this.
            let admin = cluster.connect("postgres").await;
            admin
                .batch_execute(&format!(
                    "ALTER DATABASE {database} SET synchronous_commit = on"
                ))
                .await
                .unwrap();
            database
        });
        Some(Fleet {
            runtime,
            cluster: Box::leak(Box::new(cluster)),
            database,
            dir: temp_dir(&format!("replicas-{name}")),
            daemons: Vec::new(),
            addrs: Vec::new(),
        })
    }
}

/// A replica cut off from the database (stopped) for three membership timeouts (1s each)
/// says so in `/healthz` and the metrics and sends one local notice; when the database is
/// back it resolves the notice and is healthy again.
#[test]
fn a_replica_cut_off_from_the_database_says_so_once() {
    let Some(mut fleet) = Fleet::own("lost") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    let mut yaml =
        head(hooks, "{notify: [hook]}").replace("membership_timeout: 2s", "membership_timeout: 1s");
    yaml.push_str("  - {name: self, interval: 1s, tcp: {address: \"127.0.0.1:9\"}}\n");
    let addr = fleet.start("solo", "seoul", &yaml);
    let health = || {
        support::daemon::get(addr, "/healthz")
            .map(|(_, b)| b)
            .unwrap_or_default()
    };
    assert!(health().starts_with("ok"), "{}", health());
    fleet.cluster.down().unwrap();
    wait_until("degraded", Duration::from_secs(10), || {
        health().starts_with("degraded: coordination lost")
    });
    let notices = || -> Vec<String> {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, j)| j["reason"] == "coordination_lost")
            .map(|(_, j)| j["event"].as_str().unwrap_or("").to_string())
            .collect()
    };
    wait_until("the notice", Duration::from_secs(5), || {
        !notices().is_empty()
    });
    let metrics = support::daemon::get(addr, "/metrics").unwrap().1;
    assert_eq!(
        support::daemon::metric_value(&metrics, "slowburn_coordination_lost"),
        Some(1.0)
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(notices(), ["trigger"], "one notice while cut off");
    fleet.cluster.up().unwrap();
    wait_until("healthy again", Duration::from_secs(10), || {
        health().starts_with("ok")
    });
    wait_until("the resolve", Duration::from_secs(5), || {
        notices().len() == 2
    });
    assert_eq!(notices(), ["trigger", "resolve"]);
}

/// The replica that opened an alert dies; the probe recovers on the replica that takes it
/// over, which adopts the alert and resolves it (one resolve for the notifier paged).
#[test]
fn an_alert_whose_evaluator_died_is_resolved_by_its_new_owner() {
    let Some(mut fleet) = Fleet::new("adopted") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    // The target refuses until the test starts listening on it.
    let port = free_port();
    let mut yaml = head(hooks, "{notify: [hook]}");
    yaml.push_str(&format!(
        "  - {{name: flaky, interval: 500ms, timeout: 300ms, tcp: {{address: \"127.0.0.1:{port}\"}}, alert: {{after: 1, recover_after: 2, policy: p}}}}\n"
    ));
    fleet.start("a", "seoul", &yaml);
    fleet.start("b", "seoul", &yaml);
    wait_until("the page", Duration::from_secs(15), || {
        !triggers(&receiver).is_empty()
    });
    let opener: String = fleet.query("SELECT opened_by FROM slowburn_alerts")[0].get(0);
    fleet.daemons[if opener == "a" { 0 } else { 1 }].take(); // kill -9
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s)
        }
    });
    wait_until(
        "resolved by the other replica",
        Duration::from_secs(15),
        || fleet.count("SELECT count(*) FROM slowburn_alerts WHERE state = 'resolved'") == 1,
    );
    wait_until("the resolve notice", Duration::from_secs(5), || {
        receiver.events("/hook").iter().any(|(e, _)| e == "resolve")
    });
    let resolves = receiver
        .events("/hook")
        .iter()
        .filter(|(e, _)| e == "resolve")
        .count();
    assert_eq!(resolves, 1);
}

/// Silences, overrides and history are shared state: a silence added through replica A's API
/// is listed by B and holds the page of the alert B evaluates (while an unsilenced probe on
/// the same target pages); an override added on A is who B's schedule resolves to; the
/// history of a probe B runs is answered by A from the shared database.
#[test]
fn silences_overrides_and_history_added_on_one_replica_hold_on_another() {
    let Some(mut fleet) = Fleet::new("shared_state") else {
        return;
    };
    let (receiver, hooks) = Receiver::start();
    // Open until the test closes it: runs succeed, then fail (refused) at once.
    let flaky = TcpListener::bind("127.0.0.1:0").unwrap();
    let flaky_addr = flaky.local_addr().unwrap();
    flaky.set_nonblocking(true).unwrap();
    let close = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let closing = close.clone();
    std::thread::spawn(move || {
        while !closing.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((s, _)) = flaky.accept() {
                drop(s)
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let open_addr = open.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in open.incoming() {
            drop(s)
        }
    });
    let mut yaml = format!(
        "server: {{api_token: env:SLOWBURN_TOKEN}}
storage: {{postgres: {{dsn: env:SLOWBURN_PG, lease: 5s, membership_timeout: 2s}}}}
people:
  - {{name: alice, notify: [{{notifier: hook, to: U-alice}}]}}
  - {{name: dave, notify: [{{notifier: hook, to: U-dave}}]}}
schedules:
  - {{name: primary, timezone: UTC, layers: [{{users: [alice], start: \"2026-01-05T09:00\", turn: 1w}}]}}
notifiers:
  - {{name: hook, webhook: {{url: \"http://{hooks}/hook\"}}}}
policies:
  - {{name: p, repeat: 0, steps: [{{notify: [hook]}}]}}
probes:
"
    );
    for name in ["db0", "db1", "db2", "db3", "web"] {
        yaml.push_str(&format!(
            "  - {{name: {name}, interval: 500ms, timeout: 300ms, tcp: {{address: \"{flaky_addr}\"}}, alert: {{after: 1, policy: p}}}}\n"
        ));
    }
    yaml.push_str(&format!(
        "  - {{name: h, interval: 500ms, timeout: 300ms, tcp: {{address: \"{open_addr}\"}}, drift: {{latency: {{limit: 2s, horizon: 1h}}}}}}\n"
    ));
    let addrs = [
        fleet.start("a", "seoul", &yaml),
        fleet.start("b", "seoul", &yaml),
    ];
    // A replica listens before it has joined (and created the schema); it serves after.
    for addr in addrs {
        assert!(support::daemon::get(addr, "/healthz").is_some());
    }
    let runner = |probe: &str| -> Option<usize> {
        let rows = fleet.query(&format!(
            "SELECT replica FROM slowburn_results WHERE probe = '{probe}' ORDER BY slot DESC LIMIT 1"
        ));
        let replica: String = rows.first()?.get(0);
        Some(usize::from(replica == "b"))
    };
    wait_until("every probe runs", Duration::from_secs(15), || {
        ["db0", "db1", "db2", "db3", "web", "h"]
            .iter()
            .all(|p| runner(p).is_some())
    });
    // The silence goes in through the replica that does not run the silenced probes.
    let evaluator = runner("db0").unwrap();
    let silenced: Vec<&str> = ["db0", "db1", "db2", "db3"]
        .into_iter()
        .filter(|p| runner(p) == Some(evaluator))
        .collect();
    let (writer, reader) = (addrs[1 - evaluator], addrs[evaluator]);
    let mut ids = Vec::new();
    for probe in &silenced {
        let body = format!(
            r#"{{"match": {{"probe": "{probe}"}}, "starts": "2020-01-01T00:00:00Z", "ends": "2099-01-01T00:00:00Z", "comment": "migration", "created_by": "alice"}}"#
        );
        let (status, made) = request_json(writer, "POST", "/api/v1/silences", Some(TOKEN), &body);
        assert_eq!(status, 201, "{made}");
        ids.push(made["id"].as_str().unwrap().to_string());
    }
    let started = Instant::now();
    wait_until(
        "the silences listed on the other replica",
        Duration::from_secs(5),
        || {
            let (_, list) = request_json(reader, "GET", "/api/v1/silences", None, "");
            list.as_array().unwrap().len() == silenced.len()
        },
    );
    eprintln!(
        "silences of {silenced:?} reached their evaluator in {:?}",
        started.elapsed()
    );
    // Every probe on the flaky target fails from now on.
    close.store(true, std::sync::atomic::Ordering::Relaxed);
    wait_until("web pages", Duration::from_secs(10), || {
        receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|(_, j)| j["probe"] == "web")
    });
    std::thread::sleep(Duration::from_secs(2));
    let paged: HashSet<String> = (receiver.0.lock().unwrap().iter())
        .filter(|(p, j)| p == "/hook" && j["event"] == "trigger")
        .map(|(_, j)| j["probe"].as_str().unwrap().to_string())
        .collect();
    for probe in &silenced {
        assert!(!paged.contains(*probe), "{probe} is silenced: {paged:?}");
    }
    // Removed on the evaluator, the silence is gone from the writer's list too.
    let (status, _) = request_json(
        reader,
        "DELETE",
        &format!("/api/v1/silences/{}", ids[0]),
        Some(TOKEN),
        "",
    );
    assert_eq!(status, 204);
    wait_until(
        "the removal listed on the writer",
        Duration::from_secs(5),
        || {
            let (_, list) = request_json(writer, "GET", "/api/v1/silences", None, "");
            list.as_array().unwrap().len() == silenced.len() - 1
        },
    );

    // An override added on one replica is who the schedule resolves to on the other.
    let now = jiff::Timestamp::now();
    let hour = jiff::SignedDuration::from_hours(1);
    let body = serde_json::json!({"schedule": "primary", "user": "dave", "start": (now - hour).to_string(), "end": (now + hour).to_string()});
    let (status, row) = request_json(
        addrs[0],
        "POST",
        "/api/v1/overrides",
        Some(TOKEN),
        &body.to_string(),
    );
    assert_eq!(status, 201, "{row}");
    wait_until("dave on call on b", Duration::from_secs(5), || {
        request_json(addrs[1], "GET", "/api/v1/oncall", None, "").1["primary"] == "dave"
    });
    let (_, listed) = request_json(addrs[1], "GET", "/api/v1/overrides", None, "");
    assert_eq!(listed[0]["id"], row["id"], "{listed}");
    // `slowburn oncall` reads the shared overrides too, with no daemon asked.
    let out = std::process::Command::new(support::daemon::BIN)
        .args([
            "oncall",
            "primary",
            "-c",
            "b.yaml",
            "--at",
            &now.to_string(),
        ])
        .current_dir(&fleet.dir)
        .env(
            "SLOWBURN_PG",
            fleet.cluster.dsn("postgres", &fleet.database),
        )
        .env("SLOWBURN_TOKEN", TOKEN)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        printed.trim(),
        "dave",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The history of `h` from the replica that does not run it.
    let other = addrs[1 - runner("h").unwrap()];
    wait_until("h's history elsewhere", Duration::from_secs(5), || {
        let (status, history) = request_json(
            other,
            "GET",
            "/api/v1/probes/h/history?signal=latency&since=10m",
            None,
            "",
        );
        status == 200 && history["points"].as_array().is_some_and(|p| p.len() >= 2)
    });
}

/// While the shared database is away a silence cannot be added or removed on one replica
/// alone: the API answers 503 with a sentence and changes nothing; the listing answers from
/// the replica's copy; samples that cannot be written are dropped and counted while the
/// probes go on running.
#[test]
fn shared_state_writes_are_refused_while_the_database_is_away() {
    let Some(mut fleet) = Fleet::own("shared_away") else {
        return;
    };
    let (_receiver, hooks) = Receiver::start();
    let open = TcpListener::bind("127.0.0.1:0").unwrap();
    let target = open.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in open.incoming() {
            drop(s)
        }
    });
    let mut yaml = head(hooks, "{notify: [hook]}");
    yaml.push_str(&format!(
        "  - {{name: h, interval: 200ms, timeout: 150ms, tcp: {{address: \"{target}\"}}, drift: {{latency: {{limit: 2s, horizon: 1h}}}}}}\n"
    ));
    let addr = fleet.start("solo", "seoul", &yaml);
    let silence = |id: &str| {
        format!(
            r#"{{"id": "{id}", "match": {{"probe": "h"}}, "starts": "2020-01-01T00:00:00Z", "ends": "2099-01-01T00:00:00Z", "comment": "c", "created_by": "alice"}}"#
        )
    };
    let post = |id: &str| request_json(addr, "POST", "/api/v1/silences", Some(TOKEN), &silence(id));
    assert_eq!(post("kept").0, 201);
    fleet.cluster.down().unwrap();
    let (status, refused) = post("refused");
    assert_eq!(status, 503, "{refused}");
    let sentence = refused["error"].as_str().unwrap();
    assert!(sentence.contains("nothing was changed"), "{sentence}");
    let (status, _) = request_json(addr, "DELETE", "/api/v1/silences/kept", Some(TOKEN), "");
    assert_eq!(status, 503);
    let (_, listed) = request_json(addr, "GET", "/api/v1/silences", None, "");
    let ids: Vec<&str> = (listed.as_array().unwrap().iter())
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["kept"], "the copy stays in effect");
    let runs = |metrics: &str| {
        support::daemon::metric_value(metrics, "slowburn_probe_runs_total{probe=\"h\"")
    };
    let before = runs(&support::daemon::get(addr, "/metrics").unwrap().1);
    let metrics = support::daemon::wait_metrics(addr, Duration::from_secs(15), |m| {
        support::daemon::metric_value(m, "slowburn_history_samples_dropped_total")
            .is_some_and(|n| n > 0.0)
    });
    assert!(runs(&metrics) > before, "probing went on: {before:?}");
    fleet.cluster.up().unwrap();
}
