//! The store across versions and accidents: a store written by an older slowburn opens with
//! everything in it, one from a newer slowburn is refused without a byte changed, and an
//! unreadable one is kept aside while the daemon starts fresh and says so.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use slowburn::alert::service::AlertService;
use slowburn::alert::{Alert, Silence, State};
use slowburn::store::{SCHEMA_VERSION, Store, StoreError};
use support::daemon::{Daemon, free_port, get, metric_value, temp_dir, wait_http};

/// A copy of a fixture in a fresh directory (tests never write the committed file).
fn copy_fixture(name: &str, test: &str) -> PathBuf {
    let dir = temp_dir(test);
    let path = dir.join("slowburn.db");
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/store")
        .join(name);
    std::fs::copy(fixture, &path).unwrap();
    path
}

fn user_version(path: &Path) -> u32 {
    let db = rusqlite::Connection::open(path).unwrap();
    db.query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap()
}

#[test]
fn a_version_1_store_is_upgraded_without_loss() {
    let path = copy_fixture("v1.db", "store-v1");
    assert_eq!(user_version(&path), 0, "v1 predates recorded versions");
    let store = Store::open(&path).unwrap();
    assert!(store.replaced().is_none());

    let alerts: Vec<Alert> = store
        .alerts(100)
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    let alert = |probe: &str| alerts.iter().find(|a| a.probe == probe).unwrap();
    assert_eq!(alerts.len(), 3);
    let web = alert("web");
    assert_eq!(web.state, State::Acknowledged);
    assert_eq!(web.acked_by.as_deref(), Some("alice"));
    assert!(
        web.timeline
            .iter()
            .any(|e| e.what.contains("acknowledged by alice")),
        "{:?}",
        web.timeline
    );
    assert_eq!(alert("db").state, State::Resolved);
    // Version 2 gave each alert its typed origin (all three are run alerts).
    assert!(
        alerts
            .iter()
            .all(|a| a.origin == slowburn::alert::Origin::Run)
    );
    assert!(alert("api").silenced);

    let records: Vec<(String, String)> = [web.id, alert("db").id, alert("api").id]
        .iter()
        .flat_map(|id| store.records(*id).unwrap())
        .map(|r| (r.key, r.state))
        .collect();
    assert_eq!(
        records,
        [
            ("1/hook/trigger/0/0/0".to_string(), "failed".to_string()),
            ("1/hook/acknowledge/0/0/0".into(), "failed".into()),
            ("2/hook/trigger/0/0/0".into(), "sent".into()),
            ("2/hook/resolve/0/0/0".into(), "sent".into()),
        ]
    );
    assert!(store.unsent().unwrap().is_empty());

    let silences: Vec<Silence> = store
        .silences()
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(silences.len(), 1);
    assert_eq!(
        (silences[0].id.as_str(), silences[0].created_by.as_str()),
        ("maint-api", "bob")
    );

    let samples = store.samples("web", "rss", 0.0).unwrap();
    assert_eq!(samples.len(), 20);
    assert_eq!(samples[19].v, 1019.0);

    // The alert service restores every alert from it too.
    let service = AlertService::new(std::sync::Arc::new(store), "http://127.0.0.1:1".into());
    assert_eq!(service.alerts().len(), 3);
    drop(service);

    // Upgraded in place, and opening again is a no-op.
    assert_eq!(user_version(&path), SCHEMA_VERSION);
    let again = Store::open(&path).unwrap();
    assert_eq!(again.alerts(100).unwrap().len(), 3);
    assert_eq!(user_version(&path), SCHEMA_VERSION);
}

#[test]
fn a_version_2_store_is_upgraded_without_loss_and_keeps_uptime_pings_and_checkpoints() {
    let path = copy_fixture("v2.db", "store-v2");
    assert_eq!(user_version(&path), 2);
    let store = Store::open(&path).unwrap();
    assert!(store.replaced().is_none());
    assert_eq!(user_version(&path), SCHEMA_VERSION);

    let alerts: Vec<Alert> = store
        .alerts(100)
        .unwrap()
        .iter()
        .map(|b| serde_json::from_str(b).unwrap())
        .collect();
    assert_eq!(alerts.len(), 3);
    let web = alerts.iter().find(|a| a.probe == "web").unwrap();
    assert_eq!(web.state, State::Acknowledged);
    assert_eq!(web.acked_by.as_deref(), Some("alice"));
    assert_eq!(store.records(web.id).unwrap().len(), 2);
    assert_eq!(store.silences().unwrap().len(), 1);
    assert_eq!(store.samples("web", "rss", 0.0).unwrap().len(), 20);

    // The upgrade added uptime buckets, empty, and they work.
    assert!(
        store
            .uptime("web", 30_000_000)
            .unwrap()
            .iter()
            .all(|w| w.runs == 0)
    );
    let bucket = slowburn::store::Bucket {
        runs: 2,
        ok: 1,
        duration_us: 5_000,
    };
    store.add_uptime(&[("web", 30_000_000, bucket)]).unwrap();
    let day = store.uptime("web", 30_000_000).unwrap()[0];
    assert_eq!((day.runs, day.ok), (2, 1));
    // Version 5 keeps one checkpoint per log probe, the latest replacing the one before.
    assert_eq!(store.checkpoint("app").unwrap(), None);
    store.save_checkpoints(&[("app", "{\"a\":1}")]).unwrap();
    store.save_checkpoints(&[("app", "{\"a\":2}")]).unwrap();
    assert_eq!(
        store.checkpoint("app").unwrap().as_deref(),
        Some("{\"a\":2}")
    );
    // Version 4 keeps heartbeat pings.
    assert!(store.pings("nightly", 0, 10).unwrap().is_empty());
}

#[test]
fn a_store_from_a_newer_slowburn_is_refused_and_left_untouched() {
    let path = copy_fixture("v1.db", "store-too-new");
    let newer = SCHEMA_VERSION + 1;
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!("PRAGMA user_version = {newer}"))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let error = Store::open(&path).err().expect("a newer store is refused");
    assert!(matches!(error, StoreError::TooNew { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!(
            "store {} has schema version {newer}; this slowburn knows up to {SCHEMA_VERSION} — upgrade slowburn or point storage.path elsewhere",
            path.display()
        )
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "not a byte changed");
    assert_eq!(user_version(&path), newer);
}

#[test]
fn the_daemon_keeps_an_unreadable_store_aside_and_says_so() {
    let dir = temp_dir("store-corrupt-daemon");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let closed = free_port();
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nstorage: {{path: state/slowburn.db}}\nprobes:\n  - {{name: t, interval: 1h, tcp: {{address: \"127.0.0.1:{closed}\"}}}}\n"
        ),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("state")).unwrap();
    let garbage = b"\x00\x01 not a database at all \xff".repeat(200);
    std::fs::write(dir.join("state/slowburn.db"), &garbage).unwrap();

    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    let (status, body) = get(listen, "/healthz").unwrap();
    assert_eq!(status, 200, "liveness stays up: {body}");
    assert!(body.starts_with("degraded: store "), "{body}");
    assert!(body.contains("not a database"), "{body}");
    let kept: Vec<PathBuf> = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("slowburn.db.corrupt-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    // The daemon names the copy as it names the store: relative to its working directory.
    let name = kept[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        body.contains(&format!("kept a copy at state/{name}")),
        "{body}"
    );
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        garbage,
        "the copy is the file"
    );
    let (_, metrics) = get(listen, "/metrics").unwrap();
    assert_eq!(
        metric_value(&metrics, "slowburn_store_errors_total{kind=\"corrupt\"}"),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(
        metric_value(&metrics, "slowburn_store_errors_total{kind=\"failed\"}"),
        Some(0.0)
    );
    drop(daemon);

    // The fresh store is a good one: the next start is healthy and keeps no other copy.
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    wait_http(listen);
    assert_eq!(get(listen, "/healthz").unwrap(), (200, "ok\n".to_string()));
    let (_, metrics) = get(listen, "/metrics").unwrap();
    assert_eq!(
        metric_value(&metrics, "slowburn_store_errors_total{kind=\"corrupt\"}"),
        Some(0.0)
    );
    drop(daemon);
    let copies = std::fs::read_dir(dir.join("state"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .contains("corrupt")
        })
        .count();
    assert_eq!(copies, 1);
}

#[test]
fn the_daemon_refuses_a_store_from_a_newer_slowburn() {
    let dir = temp_dir("store-too-new-daemon");
    let listen = SocketAddr::from(([127, 0, 0, 1], free_port()));
    std::fs::write(
        dir.join("probes.yaml"),
        format!(
            "server: {{listen: \"{listen}\"}}\nstorage: {{path: slowburn.db}}\nprobes:\n  - {{name: t, interval: 1h, tcp: {{address: \"127.0.0.1:1\"}}}}\n"
        ),
    )
    .unwrap();
    let path = dir.join("slowburn.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store/v1.db"),
        &path,
    )
    .unwrap();
    let newer = SCHEMA_VERSION + 7;
    {
        let db = rusqlite::Connection::open(&path).unwrap();
        db.execute_batch(&format!("PRAGMA user_version = {newer}"))
            .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let daemon = Daemon::start(&["run", "-c", "probes.yaml"], &dir, &[]);
    let (code, stderr) = daemon.wait(Duration::from_secs(20));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "store slowburn.db has schema version {newer}; this slowburn knows up to {SCHEMA_VERSION} — upgrade slowburn or point storage.path elsewhere"
        )),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
}
