//! A throw-away PostgreSQL for tests: `initdb` into a temporary directory, started on a free
//! port on 127.0.0.1 with its socket in that directory, `pg_stat_statements` preloaded, `trust`
//! for every role but `pwuser`, which needs its password (`right`).
//!
//! One shared cluster per test binary ([`shared`]); tests that stop the server start their own
//! ([`Cluster::start`]). A small watchdog process stops each cluster with
//! `pg_ctl stop -m immediate` and removes its directory as soon as the test process is gone,
//! however it ends. Where no server binaries exist, [`shared`] returns `None` after printing a
//! loud SKIPPED line, unless `SLOWBURN_REQUIRE_PG=1`, which makes that a failure.
//!
//! `SLOWBURN_PG_BIN=/usr/lib/postgresql/16/bin` picks the server binaries. Include it with
//! `mod support; use support::pg;`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

/// The role that authenticates with a password.
pub const PASSWORD_ROLE: &str = "pwuser";
pub const PASSWORD: &str = "right";
/// `max_connections` minus `superuser_reserved_connections` of every cluster here.
pub const AVAILABLE_CONNECTIONS: i64 = 27;

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    pub port: u16,
    pub base: PathBuf,
    bin: PathBuf,
    /// The user the server runs as, when the tests run as root.
    run_as: Option<String>,
}

static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
static SEQ: AtomicUsize = AtomicUsize::new(0);
/// Tests on the shared cluster take turns: they read cluster-wide views
/// (`pg_stat_activity`, `pg_stat_statements`) and one of them resets the statistics.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The shared cluster, or `None` (after a SKIPPED line) where PostgreSQL is not installed.
/// Panics when PostgreSQL is required (`SLOWBURN_REQUIRE_PG=1`) or fails to start.
pub fn shared() -> Option<&'static Cluster> {
    match SHARED.get_or_init(Cluster::start) {
        Ok(cluster) => Some(cluster),
        Err(message) if message.starts_with("SKIPPED") => {
            if std::env::var("SLOWBURN_REQUIRE_PG").is_ok_and(|v| v == "1") {
                panic!("{message}, and SLOWBURN_REQUIRE_PG=1 requires PostgreSQL");
            }
            // Straight to stderr, past the test harness's capture, so a skip is never silent.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "\n{message}\n");
            None
        }
        Err(message) => panic!("{message}"),
    }
}

/// Waits for this test's turn on the shared cluster.
pub async fn turn() -> tokio::sync::MutexGuard<'static, ()> {
    TURN.lock().await
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`: `SLOWBURN_PG_BIN` when set, else
/// the one of `initdb` on PATH, else the newest `/usr/lib/postgresql/*/bin`.
fn server_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SLOWBURN_PG_BIN") {
        let dir = PathBuf::from(dir);
        return dir.join("initdb").is_file().then_some(dir);
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("initdb"))
            .find(|p| p.is_file())
    });
    if let Some(initdb) = on_path {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        return real.parent().map(Path::to_path_buf);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").is_file())
        .collect();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    found.pop()
}

impl Cluster {
    /// Creates and starts a new cluster. Errors starting with `SKIPPED` mean there is no
    /// PostgreSQL here at all.
    pub fn start() -> Result<Cluster, String> {
        let bin = server_bin().ok_or("SKIPPED: no PostgreSQL server binaries (initdb) found")?;
        let base = std::env::temp_dir().join(format!(
            "slowburn-pg-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).map_err(|e| format!("{}: {e}", base.display()))?;
        let run_as = if is_root() {
            let (uid, gid) = passwd_ids("postgres")
                .ok_or("running as root, and there is no `postgres` user to run the server")?;
            std::os::unix::fs::chown(&base, Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", base.display()))?;
            Some("postgres".to_string())
        } else {
            None
        };
        let port = free_port()?;
        let cluster = Cluster {
            port,
            base,
            bin,
            run_as,
        };
        cluster.watch();
        cluster.run(
            "initdb",
            &[
                "-D",
                &cluster.data(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        )?;
        cluster.certificate()?;
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{}'\n\
             shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track = 'top'\n\
             max_connections = 30\nsuperuser_reserved_connections = 3\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\n\
             client_connection_check_interval = 250\nssl = on\n",
            cluster.base.display()
        );
        append(&Path::new(&cluster.data()).join("postgresql.conf"), &conf)?;
        std::fs::write(
            Path::new(&cluster.data()).join("pg_hba.conf"),
            format!(
                "local all all trust\n\
                 host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n\
                 host all all 127.0.0.1/32 trust\n"
            ),
        )
        .map_err(|e| format!("pg_hba.conf: {e}"))?;
        cluster.up()?;
        cluster.setup()?;
        Ok(cluster)
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn up(&self) -> Result<(), String> {
        let log = self.base.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &["start", "-D", &self.data(), "-w", "-t", "30", "-l", &log],
        )
        .map_err(|e| {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            format!("{e}\nserver log:\n{log}")
        })
    }

    /// Stops the server (`-m fast`: sessions are ended, as in a restart).
    pub fn down(&self) -> Result<(), String> {
        self.run("pg_ctl", &["stop", "-D", &self.data(), "-m", "fast", "-w"])
    }

    /// Restarts the server the way a crash does (`pg_ctl restart -m immediate`: no
    /// checkpoint, every session cut), and waits until it accepts connections again.
    pub fn restart_immediate(&self) -> Result<(), String> {
        let log = self.base.join("server.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "restart",
                "-D",
                &self.data(),
                "-m",
                "immediate",
                "-w",
                "-t",
                "30",
                "-l",
                &log,
            ],
        )
    }

    /// A DSN for `role` on `database` over TCP, without a password.
    pub fn dsn(&self, role: &str, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={role} dbname={database} sslmode=disable",
            self.port
        )
    }

    /// A superuser connection to `database`; its driver runs on the caller's runtime.
    pub async fn connect(&self, database: &str) -> Client {
        let (client, connection) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_postgres::connect(&self.dsn("postgres", database), NoTls),
        )
        .await
        .expect("connect in time")
        .unwrap_or_else(|e| panic!("connect to {database}: {e} ({:?})", e.as_db_error()));
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Creates a fresh database named after `prefix` (with `pg_stat_statements`, from
    /// template1) and returns its name.
    pub async fn database(&self, prefix: &str) -> String {
        let name = format!("{prefix}_{}", SEQ.fetch_add(1, Ordering::Relaxed));
        let admin = self.connect("postgres").await;
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        name
    }

    /// The self-signed certificate the server presents (for 127.0.0.1 and localhost), which
    /// is also the CA to trust.
    pub fn ca_file(&self) -> PathBuf {
        self.base.join("ca.pem")
    }

    /// Writes a fresh self-signed certificate and key for the server.
    fn certificate(&self) -> Result<(), String> {
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .map_err(|e| e.to_string())?;
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        let data = PathBuf::from(self.data());
        let write = |path: &Path, text: &str, mode: u32| -> Result<(), String> {
            use std::os::unix::fs::PermissionsExt;
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| e.to_string())?;
            if self.run_as.is_some()
                && let Some((uid, gid)) = passwd_ids("postgres")
            {
                std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(|e| e.to_string())?;
            }
            Ok(())
        };
        write(&data.join("server.crt"), &cert.pem(), 0o644)?;
        write(&data.join("server.key"), &key.serialize_pem(), 0o600)?;
        write(&self.ca_file(), &cert.pem(), 0o644)
    }

    fn data(&self) -> String {
        self.base.join("data").display().to_string()
    }

    /// Roles and the extension in template1, so every new database has it.
    fn setup(&self) -> Result<(), String> {
        let sql = format!(
            "CREATE ROLE {PASSWORD_ROLE} LOGIN PASSWORD '{PASSWORD}';\n\
             CREATE ROLE limited LOGIN;\n\
             \\c template1\n\
             CREATE EXTENSION pg_stat_statements;\n"
        );
        let script = self.base.join("setup.sql");
        std::fs::write(&script, sql).map_err(|e| e.to_string())?;
        let psql = self.bin.join("psql");
        let psql = if psql.is_file() {
            psql
        } else {
            PathBuf::from("psql")
        };
        let output = self
            .command(&psql)
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &self.base.display().to_string(),
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-f",
                &script.display().to_string(),
            ])
            .output()
            .map_err(|e| format!("psql: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "psql setup failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    fn command(&self, program: &Path) -> Command {
        match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(program);
                command
            }
            None => Command::new(program),
        }
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let output = self
            .command(&self.bin.join(tool))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{tool} {} failed: {}{}",
                args.join(" "),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }

    /// Starts a watchdog that stops the server and removes its files once this process ends.
    fn watch(&self) {
        let stop = format!(
            "{}{} stop -D {} -m immediate",
            match &self.run_as {
                Some(user) => format!("runuser -u {user} -- "),
                None => String::new(),
            },
            self.bin.join("pg_ctl").display(),
            self.data()
        );
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {base}",
            pid = std::process::id(),
            base = self.base.display()
        );
        let _ = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
    }
}

/// The pid of a client's backend.
pub async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn passwd_ids(user: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() == Some(&user) && fields.len() > 3 {
            Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
        } else {
            None
        }
    })
}

fn free_port() -> Result<u16, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| e.to_string())
}

fn append(path: &Path, text: &str) -> Result<(), String> {
    use std::io::Write;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}
