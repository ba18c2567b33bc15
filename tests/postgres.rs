//! The `postgres:` probe against a real, throw-away PostgreSQL (see `support/pg.rs`): slow
//! queries, idle transactions, lock waits and connection use made by real sessions; creeping
//! statements and statistics resets in `pg_stat_statements`; a server that goes away and comes
//! back; and every way a connection can be refused. Where PostgreSQL is not installed, the tests
//! that need it print SKIPPED and pass, unless `SLOWBURN_REQUIRE_PG=1`.

mod support;
use support::pg;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slowburn::config::{self, Source};
use slowburn::probe::{self, BuildContext, Outcome, Probe, net::NetContext};

fn ctx() -> BuildContext {
    BuildContext {
        net: Arc::new(NetContext::new()),
    }
}

/// Builds the one probe a `postgres:` body (YAML flow mapping) describes.
fn build(postgres_yaml: &str) -> Arc<Probe> {
    let text = format!("probes:\n  - name: p\n    postgres: {postgres_yaml}\n");
    match config::load(
        &Source::Text {
            name: "test.yaml".into(),
            text,
        },
        &ctx(),
    ) {
        Ok(mut config) => config.probes.remove(0).probe,
        Err(errors) => panic!("{errors:?}"),
    }
}

async fn run(probe: &Probe) -> Outcome {
    probe::execute(probe, Duration::from_secs(8)).await
}

fn signal(outcome: &Outcome, name: &str) -> f64 {
    outcome
        .signal(name)
        .unwrap_or_else(|| panic!("no signal {name} in {outcome:#?}"))
}

fn failure(outcome: &Outcome) -> (String, String) {
    let failure = outcome
        .failure
        .as_ref()
        .unwrap_or_else(|| panic!("expected a failure: {outcome:#?}"));
    (failure.reason().to_string(), failure.to_string())
}

fn has_note(outcome: &Outcome, needle: &str) -> bool {
    outcome.notes.iter().any(|n| n.contains(needle))
}

/// Retries a probe until `done` holds (sessions take a moment to show up in the views).
async fn run_until(probe: &Probe, done: impl Fn(&Outcome) -> bool) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let outcome = run(probe).await;
        if done(&outcome) || Instant::now() > deadline {
            return outcome;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_long_query_from_another_session_is_slow() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("slow").await;
    let sleeper = cluster.connect(&db).await;
    let pid = pg::backend_pid(&sleeper).await;
    let sleeping = tokio::spawn(async move { sleeper.simple_query("SELECT pg_sleep(30)").await });
    let probe = build(&format!(
        "{{dsn: '{}', slow_query: 300ms, expect: {{max_slow_queries: 0}}}}",
        cluster.dsn("postgres", &db)
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let outcome = run_until(&probe, |o| o.signal("slow_queries").unwrap_or(0.0) >= 1.0).await;
    assert_eq!(signal(&outcome, "slow_queries"), 1.0, "{outcome:#?}");
    assert!(signal(&outcome, "longest_query") >= 0.3);
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, "slow_queries");
    assert!(
        message.contains("1 query running longer than 300ms (max_slow_queries 0)")
            && message.contains(&format!("pid {pid} postgres@{db} active"))
            && message.ends_with("SELECT pg_sleep(30)"),
        "{message}"
    );
    assert!(
        has_note(&outcome, &format!("slow: pid {pid} postgres@{db} active")),
        "{:?}",
        outcome.notes
    );
    // The probe's own session is never reported.
    assert!(!has_note(&outcome, "slowburn */"), "{:?}", outcome.notes);
    sleeping.abort();
    let admin = cluster.connect("postgres").await;
    admin
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
}

#[tokio::test]
async fn a_transaction_left_open_is_idle_in_transaction() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("idle").await;
    let idler = cluster.connect(&db).await;
    let pid = pg::backend_pid(&idler).await;
    idler
        .batch_execute("BEGIN; SELECT 42 AS forgotten")
        .await
        .unwrap();
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_idle_in_transaction: 700ms}}}}",
        cluster.dsn("postgres", &db)
    ));
    tokio::time::sleep(Duration::from_millis(900)).await;
    let outcome = run(&probe).await;
    assert!(
        signal(&outcome, "idle_in_transaction") >= 0.7,
        "{outcome:#?}"
    );
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, "idle_in_transaction");
    assert!(
        message.contains(&format!("pid {pid} postgres@{db} idle in transaction"))
            && message.contains("SELECT 42 AS forgotten (max_idle_in_transaction 700ms)"),
        "{message}"
    );
    drop(idler);
}

#[tokio::test]
async fn a_row_lock_blocks_another_session_and_names_the_blocker() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("locks").await;
    let holder = cluster.connect(&db).await;
    holder
        .batch_execute(
            "CREATE TABLE accounts (id int PRIMARY KEY, balance int); \
             INSERT INTO accounts VALUES (1, 100)",
        )
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; UPDATE accounts SET balance = 0 WHERE id = 1")
        .await
        .unwrap();
    let holder_pid = pg::backend_pid(&holder).await;
    let waiter = cluster.connect(&db).await;
    let waiter_pid = pg::backend_pid(&waiter).await;
    let waiting = tokio::spawn(async move {
        waiter
            .simple_query("UPDATE accounts SET balance = 1 WHERE id = 1")
            .await
    });
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_blocked: 0}}}}",
        cluster.dsn("postgres", &db)
    ));
    let outcome = run_until(&probe, |o| o.signal("blocked").unwrap_or(0.0) >= 1.0).await;
    assert_eq!(signal(&outcome, "blocked"), 1.0, "{outcome:#?}");
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, "blocked");
    assert!(
        message.contains(&format!("pid {waiter_pid} postgres@{db} active"))
            && message.contains("wait Lock/transactionid")
            && message.contains(&format!(
                "blocked by {holder_pid}: UPDATE accounts SET balance = 1"
            )),
        "{message}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(5), waiting).await;
    assert!(
        matches!(done, Ok(Ok(Ok(_)))),
        "the waiter finishes once the lock is gone"
    );
    let after = run(&probe).await;
    assert!(after.success, "{after:#?}");
}

#[tokio::test]
async fn many_idle_connections_raise_the_connection_ratio() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("conns").await;
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_connections_ratio: 0.7}}}}",
        cluster.dsn("postgres", &db)
    ));
    let before = run(&probe).await;
    assert!(before.success, "{before:#?}");
    let ratio0 = signal(&before, "connections_ratio");
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(cluster.connect(&db).await);
    }
    let after = run(&probe).await;
    let ratio1 = signal(&after, "connections_ratio");
    assert!(
        ratio1 >= ratio0 + 19.0 / pg::AVAILABLE_CONNECTIONS as f64,
        "{ratio0} → {ratio1}"
    );
    let (reason, message) = failure(&after);
    assert_eq!(reason, "connections_ratio");
    assert!(
        message.contains(&format!(
            "of {} connections used",
            pg::AVAILABLE_CONNECTIONS
        )) && message.ends_with("above max_connections_ratio 0.7"),
        "{message}"
    );
    drop(idle);
}

#[tokio::test]
async fn a_statement_made_slower_between_samples_is_creeping() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("creep").await;
    let app = cluster.connect(&db).await;
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_mean_increase: 50%, min_calls: 10}}}}",
        cluster.dsn("postgres", &db)
    ));
    let statement = "SELECT pg_sleep($1) AS creep_marker";
    let first = run(&probe).await;
    assert!(first.success, "{first:#?}");
    assert!(
        has_note(&first, "statements: first sample"),
        "{:?}",
        first.notes
    );
    for _ in 0..15 {
        app.query(statement, &[&0.001f64]).await.unwrap();
    }
    let baseline = run(&probe).await;
    assert!(baseline.success, "{baseline:#?}");
    assert_eq!(signal(&baseline, "creeping_statements"), 0.0);
    for _ in 0..15 {
        app.query(statement, &[&0.03f64]).await.unwrap();
    }
    let slower = run(&probe).await;
    assert!(signal(&slower, "creeping_statements") >= 1.0, "{slower:#?}");
    let (reason, message) = failure(&slower);
    assert_eq!(reason, "creeping_statements");
    assert!(
        message.contains("slower than their baseline by more than 50%")
            && message.contains(&format!("postgres@{db} mean "))
            && message.contains("over 15 calls")
            && message.ends_with("SELECT pg_sleep($1) AS creep_marker"),
        "{message}"
    );
    assert!(
        has_note(&slower, "creeping: queryid "),
        "{:?}",
        slower.notes
    );
}

#[tokio::test]
async fn a_statistics_reset_between_samples_rebaselines() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("reset").await;
    let app = cluster.connect(&db).await;
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_mean_increase: 50%, min_calls: 5}}}}",
        cluster.dsn("postgres", &db)
    ));
    let statement = "SELECT pg_sleep($1) AS reset_marker";
    run(&probe).await;
    for _ in 0..10 {
        app.query(statement, &[&0.001f64]).await.unwrap();
    }
    assert!(run(&probe).await.success);
    app.batch_execute("SELECT pg_stat_statements_reset()")
        .await
        .unwrap();
    for _ in 0..6 {
        app.query(statement, &[&0.02f64]).await.unwrap();
    }
    let after = run(&probe).await;
    assert!(after.success, "{after:#?}");
    assert!(
        has_note(&after, "pg_stat_statements was reset"),
        "{:?}",
        after.notes
    );
    for (name, value) in &after.signals {
        assert!(*value >= 0.0 && value.is_finite(), "{name} = {value}");
    }
    assert_eq!(signal(&after, "creeping_statements"), 0.0);
}

#[tokio::test]
async fn without_the_extension_the_statement_check_is_off_and_says_why() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let admin = cluster.connect("postgres").await;
    admin
        .batch_execute("CREATE DATABASE bare_db TEMPLATE template0")
        .await
        .unwrap();
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_slow_queries: 5}}}}",
        cluster.dsn("postgres", "bare_db")
    ));
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert!(outcome.signal("creeping_statements").is_none());
    assert!(outcome.signal("slow_queries").is_some());
    assert!(
        has_note(
            &outcome,
            "statements: check off: pg_stat_statements is not installed in database \"bare_db\""
        ),
        "{:?}",
        outcome.notes
    );
}

#[tokio::test]
async fn a_role_without_monitoring_rights_is_told_what_to_grant() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("limited").await;
    let admin = cluster.connect(&db).await;
    // Another role's session and statements, which `limited` may not look into.
    admin
        .batch_execute("BEGIN; SELECT 1 AS secret_work")
        .await
        .unwrap();
    let probe = build(&format!(
        "{{dsn: '{}', expect: {{max_idle_in_transaction: 1h}}}}",
        cluster.dsn("limited", &db)
    ));
    let outcome = run(&probe).await;
    assert!(outcome.success, "{outcome:#?}");
    assert!(
        has_note(
            &outcome,
            "of other roles hidden from role \"limited\", so their queries"
        ) && has_note(&outcome, "GRANT pg_monitor TO \"limited\""),
        "{:?}",
        outcome.notes
    );
    assert!(
        has_note(
            &outcome,
            "(GRANT pg_read_all_stats or pg_monitor TO \"limited\")"
        ),
        "{:?}",
        outcome.notes
    );

    let owner = cluster.connect(&db).await;
    owner
        .batch_execute("REVOKE EXECUTE ON FUNCTION pg_stat_statements(boolean) FROM PUBLIC")
        .await
        .unwrap();
    let denied = run(&probe).await;
    owner
        .batch_execute("GRANT EXECUTE ON FUNCTION pg_stat_statements(boolean) TO PUBLIC")
        .await
        .unwrap();
    assert!(denied.success, "{denied:#?}");
    assert!(
        has_note(
            &denied,
            "statements: check off: permission denied for function pg_stat_statements"
        ) && has_note(&denied, "(GRANT pg_monitor TO \"limited\")"),
        "{:?}",
        denied.notes
    );
    admin.batch_execute("ROLLBACK").await.unwrap();
}

#[tokio::test]
async fn query_probes_return_one_number() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let db = cluster.database("orders").await;
    let app = cluster.connect(&db).await;
    app.batch_execute(
        "CREATE TABLE orders (id serial, created_at timestamptz DEFAULT now()); \
         INSERT INTO orders SELECT FROM generate_series(1, 5)",
    )
    .await
    .unwrap();
    let dsn = cluster.dsn("postgres", &db);
    let count = build(&format!(
        "{{dsn: '{dsn}', query: \"select count(*) from orders where created_at > now() - interval '1 minute'\", expect: {{min: 10}}}}"
    ));
    let outcome = run(&count).await;
    assert_eq!(signal(&outcome, "value"), 5.0);
    let (reason, message) = failure(&outcome);
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("value", "value: 5 is below min 10")
    );

    let numeric = build(&format!(
        "{{dsn: '{dsn}', query: 'select 2.5::numeric', expect: {{min: 1, max: 3}}}}"
    ));
    let outcome = run(&numeric).await;
    assert!(outcome.success, "{outcome:#?}");
    assert_eq!(signal(&outcome, "value"), 2.5);

    let broken = build(&format!(
        "{{dsn: '{dsn}', query: 'select count(*) from no_such_table'}}"
    ));
    let (reason, message) = failure(&run(&broken).await);
    assert_eq!(reason, "query");
    assert!(
        message.contains("relation \"no_such_table\" does not exist"),
        "{message}"
    );

    let slow = build(&format!(
        "{{dsn: '{dsn}', statement_timeout: 300ms, query: 'select pg_sleep(5)'}}"
    ));
    let started = Instant::now();
    let (reason, message) = failure(&run(&slow).await);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(reason, "query");
    assert!(message.contains("statement timeout"), "{message}");

    let writes = build(&format!("{{dsn: '{dsn}', query: 'delete from orders'}}"));
    let (reason, message) = failure(&run(&writes).await);
    assert_eq!(reason, "query");
    assert!(message.contains("read-only transaction"), "{message}");
}

#[tokio::test]
async fn sslmode_is_honoured_as_libpq_does() {
    let Some(cluster) = pg::shared() else { return };
    let _turn = pg::turn().await;
    let base = format!(
        "host=127.0.0.1 port={} user=postgres dbname=postgres",
        cluster.port
    );
    let ca = cluster.ca_file().display().to_string();

    // `require` encrypts without checking the certificate, as libpq does without a root cert.
    let require = build(&format!(
        "{{dsn: '{base} sslmode=require', statements: false}}"
    ));
    let outcome = run(&require).await;
    assert!(outcome.success, "{outcome:#?}");
    let admin = cluster.connect("postgres").await;
    let encrypted: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE ssl AND application_name = 'slowburn'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(encrypted >= 1, "the probe's kept connection is encrypted");

    // `verify-full` checks it: unknown without the CA, trusted with it.
    let unverified = build(&format!("{{dsn: '{base} sslmode=verify-full'}}"));
    let (reason, message) = failure(&run(&unverified).await);
    assert_eq!(reason, "tls", "{message}");
    assert!(
        message.ends_with("invalid peer certificate: UnknownIssuer"),
        "{message}"
    );
    let rootcert = build(&format!(
        "{{dsn: '{base} sslmode=verify-full sslrootcert={ca}'}}"
    ));
    let outcome = run(&rootcert).await;
    assert!(outcome.success, "{outcome:#?}");
    let ca_file = build(&format!(
        "{{dsn: '{base} sslmode=verify-full', tls_config: {{ca_file: '{ca}'}}}}"
    ));
    let outcome = run(&ca_file).await;
    assert!(outcome.success, "{outcome:#?}");
}

#[tokio::test]
async fn wrong_password_and_missing_database_have_their_own_reasons() {
    let Some(cluster) = pg::shared() else { return };
    let dir = std::env::temp_dir().join(format!("slowburn-pg-dsn-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dsn_file = |name: &str, password: &str, database: &str| {
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!(
                "postgres://{}:{password}@127.0.0.1:{}/{database}?sslmode=disable\n",
                pg::PASSWORD_ROLE,
                cluster.port
            ),
        )
        .unwrap();
        path.display().to_string()
    };
    let wrong = build(&format!(
        "{{dsn: 'file:{}'}}",
        dsn_file("wrong", "nope", "postgres")
    ));
    assert_eq!(
        wrong.target(),
        format!("postgres://127.0.0.1:{}/postgres", cluster.port)
    );
    let (reason, message) = failure(&run(&wrong).await);
    assert_eq!(
        (reason.as_str(), message.as_str()),
        (
            "auth",
            "auth: password authentication failed for user \"pwuser\""
        )
    );

    let right = build(&format!(
        "{{dsn: 'file:{}'}}",
        dsn_file("right", pg::PASSWORD, "postgres")
    ));
    let outcome = run(&right).await;
    assert!(outcome.success, "{outcome:#?}");

    let missing = build(&format!(
        "{{dsn: 'file:{}'}}",
        dsn_file("missing", pg::PASSWORD, "nope")
    ));
    let (reason, message) = failure(&run(&missing).await);
    assert_eq!(
        (reason.as_str(), message.as_str()),
        ("database", "database: database \"nope\" does not exist")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_server_that_stops_mid_run_fails_clearly_and_the_probe_recovers() {
    if pg::shared().is_none() {
        return;
    }
    // A cluster of its own: stopping the shared one would break the other tests.
    let cluster = pg::Cluster::start().expect("a second cluster starts");
    let probe = build(&format!(
        "{{dsn: '{}', connect_timeout: 2s, expect: {{max_slow_queries: 0}}}}",
        cluster.dsn("postgres", "postgres")
    ));
    let up = run(&probe).await;
    assert!(up.success, "{up:#?}");
    assert!(up.phases.iter().any(|(p, _)| *p == "connect"));
    let again = run(&probe).await;
    assert!(
        !again.phases.iter().any(|(p, _)| *p == "connect"),
        "the connection is kept between runs: {again:#?}"
    );

    cluster.down().unwrap();
    let lost = run(&probe).await;
    let (reason, message) = failure(&lost);
    assert_eq!(reason, "connect", "{message}");
    let down = run(&probe).await;
    let (reason, message) = failure(&down);
    assert_eq!(reason, "connect");
    assert!(
        message.starts_with(&format!(
            "connect: postgres://127.0.0.1:{}/postgres: ",
            cluster.port
        )) && message.contains("refused"),
        "{message}"
    );

    cluster.up().unwrap();
    let back = run(&probe).await;
    assert!(back.success, "{back:#?}");
    assert!(back.phases.iter().any(|(p, _)| *p == "connect"));
}

#[tokio::test]
async fn an_unreachable_server_fails_within_the_connect_timeout() {
    // Nothing listens on a port just freed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let refused = build(&format!(
        "{{dsn: 'host=127.0.0.1 port={port} user=app dbname=orders'}}"
    ));
    let (reason, message) = failure(&run(&refused).await);
    assert_eq!(reason, "connect");
    assert!(message.contains("refused"), "{message}");

    // A listener that accepts and never speaks: the connect timeout ends the wait.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let _held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let hanging = build(&format!(
        "{{dsn: 'host=127.0.0.1 port={port} user=app dbname=orders sslmode=disable', connect_timeout: 400ms}}"
    ));
    let started = Instant::now();
    let outcome = run(&hanging).await;
    assert!(started.elapsed() < Duration::from_secs(2), "{outcome:#?}");
    let (reason, message) = failure(&outcome);
    assert_eq!(reason, "timeout");
    assert_eq!(message, "timeout after 400ms in phase connect");
}

#[test]
fn bad_dsns_are_check_time_errors_with_positions() {
    let text = "probes:
  - name: unparsable
    postgres: {dsn: 'host=db port=notaport user=app'}
  - name: inline-password
    postgres: {dsn: 'postgres://app:hunter2@db/orders'}
  - name: unset
    postgres: {dsn: 'env:SLOWBURN_TEST_SURELY_UNSET_DSN'}
  - name: mixed
    postgres: {dsn: 'host=db user=app', query: 'select 1', expect: {max_blocked: 0, min: 5, max: 1}}
  - name: activity
    postgres: {dsn: 'host=db user=app', slow_query: soon, expect: {min: 1, max_mean_increase: lots, max_connections_ratio: 2}}
";
    let errors = config::load(
        &Source::Text {
            name: "bad.yaml".into(),
            text: text.into(),
        },
        &ctx(),
    )
    .unwrap_err();
    let got: Vec<String> = errors.iter().map(ToString::to_string).collect();
    let expected = [
        "bad.yaml:3:21: probe \"unparsable\": postgres.dsn: invalid DSN: invalid value for option `port`",
        "bad.yaml:5:21: probe \"inline-password\": postgres.dsn: this DSN holds a password: put it in the environment or a file",
        "bad.yaml:7:21: probe \"unset\": postgres.dsn: secret env:SLOWBURN_TEST_SURELY_UNSET_DSN is not set",
        "bad.yaml:9:82: probe \"mixed\": postgres.expect.max_blocked: applies to session checks, not to a `query:` probe",
        "bad.yaml:9:98: probe \"mixed\": postgres.expect.max: max 1 is below min 5",
        "bad.yaml:11:53: probe \"activity\": postgres.slow_query: invalid duration \"soon\"",
        "bad.yaml:11:73: probe \"activity\": postgres.expect.min: applies to a `query:` probe only",
        "bad.yaml:11:95: probe \"activity\": postgres.expect.max_mean_increase: invalid \"lots\"",
        "bad.yaml:11:124: probe \"activity\": postgres.expect.max_connections_ratio: must be a fraction",
    ];
    for want in expected {
        assert!(
            got.iter().any(|g| g.starts_with(want)),
            "missing {want:?} in {got:#?}"
        );
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    assert!(!got.iter().any(|g| g.contains("hunter2")), "{got:#?}");
}
