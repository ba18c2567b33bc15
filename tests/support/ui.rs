//! The status page tests' harness: the real daemon started on a probe file in a temporary
//! directory (optionally with a store pre-filled with history), a loopback webhook receiver,
//! a tiny HTTP/1.1 client, and a WebDriver client for headless Chromium spoken over
//! `reqwest` (W3C JSON over HTTP), so no browser-automation crate is needed.
//!
//! Part of the support tree: `mod support; use support::ui;`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use super::daemon::{BIN, free_port, temp_dir};

/// Where screenshots of a run go: `target/ui-artifacts/`.
pub fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("ui-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Polls `done` every 50 ms until it is true; panics with `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A TCP port that accepts connections and closes them: an "up" target for tcp probes.
pub fn open_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || for _ in listener.incoming() {});
    addr
}

/// Fills the store at `path` with `(probe, signal, t, v)` rows before the daemon starts; the
/// daemon replays them into its detectors on start.
pub fn seed(path: &Path, rows: &[(&str, &str, f64, f64)]) {
    let store = slowburn::store::Store::open(path).unwrap();
    let rows: Vec<(&str, &str, slowburn::store::Sample)> = rows
        .iter()
        .map(|(p, s, t, v)| (*p, *s, slowburn::store::Sample { t: *t, v: *v }))
        .collect();
    store.append_samples(&rows).unwrap();
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A memory leak: `hours` of one-minute samples growing `per_hour` bytes an hour with a little
/// deterministic wobble, ending now at `level`.
pub fn leak(
    probe: &'static str,
    hours: f64,
    level: f64,
    per_hour: f64,
) -> Vec<(&'static str, &'static str, f64, f64)> {
    let now = unix_now();
    let n = (hours * 60.0) as usize;
    (0..n)
        .map(|i| {
            let back = (n - i) as f64 * 60.0;
            let wobble = ((i as f64) / 7.0).sin() * 0.02 * level;
            (
                probe,
                "rss",
                now - back,
                level - per_hour * back / 3600.0 + wobble,
            )
        })
        .collect()
}

/// The daemon, killed when dropped.
pub struct Daemon {
    child: Child,
    pub addr: SocketAddr,
    pub dir: PathBuf,
}

impl Daemon {
    /// Writes `probes.yaml` (with `{listen}` replaced) to `dir` and starts `slowburn run`.
    pub fn start(dir: &Path, config: &str, env: &[(&str, &str)]) -> Daemon {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        std::fs::write(
            dir.join("probes.yaml"),
            config.replace("{listen}", &addr.to_string()),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("daemon.log")).unwrap();
        let child = Command::new(BIN)
            .args(["run", "-c", "probes.yaml"])
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let daemon = Daemon {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        wait_until("the daemon listens", Duration::from_secs(30), || {
            TcpStream::connect(addr).is_ok()
        });
        daemon
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> Response {
        http(self.addr, "GET", path, None, "")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A response: status, lower-cased headers, body and the body as JSON (`Null` if it is not).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
    pub json: Value,
}

impl Response {
    /// The `error` message of a 4xx answer.
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

/// One HTTP/1.1 request over a fresh connection.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.contains("chunked"));
    let body = if chunked {
        super::daemon::dechunk(body).unwrap_or_default()
    } else {
        body.to_string()
    };
    Response {
        status,
        headers,
        json: serde_json::from_str(&body).unwrap_or(Value::Null),
        body,
    }
}

use super::receiver as webhook;

/// The shared webhook receiver, read here as the list of events it got.
#[derive(Clone)]
pub struct Receiver(webhook::Receiver);

impl Receiver {
    pub fn start() -> (Receiver, SocketAddr) {
        let (receiver, addr) = webhook::Receiver::start();
        (Receiver(receiver), addr)
    }

    /// The `event` field of every request received.
    pub fn events(&self) -> Vec<String> {
        self.0
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, j)| j["event"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// `chromedriver` and `chromium`, or `None` after a loud SKIPPED line (a panic when
/// `SLOWBURN_REQUIRE_BROWSER=1`).
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let find = |names: &[&str]| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        names.iter().find_map(|name| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
    };
    let driver = find(&["chromedriver"]);
    let chromium = find(&["chromium", "chromium-browser", "google-chrome"]);
    match (driver, chromium) {
        (Some(d), Some(c)) => Some((d, c)),
        _ => {
            if std::env::var("SLOWBURN_REQUIRE_BROWSER").is_ok_and(|v| v == "1") {
                panic!(
                    "chromium or chromedriver is missing and SLOWBURN_REQUIRE_BROWSER=1: apt-get install chromium chromium-driver"
                );
            }
            // Straight to stderr, past the test harness's capture, so a skip is never silent.
            let _ = writeln!(
                std::io::stderr(),
                "\n*** SKIPPED: chromium and chromium-driver are not installed; the browser tests of the status page did not run ***\n"
            );
            None
        }
    }
}

/// A headless Chromium driven through chromedriver's W3C WebDriver endpoint.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
    profile: PathBuf,
}

/// A WebDriver element reference, with the selector and index it was found by: the status
/// page re-renders its tables on every refresh, so a reference can go stale between finding
/// it and reading it, and is then found again the same way instead of failing the test.
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
    css: String,
    index: usize,
}

/// How often an element operation re-finds a stale element before giving up.
const STALE_RETRIES: usize = 20;

const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Browser {
    pub fn start(driver: &Path, chromium: &Path, width: u32, height: u32) -> Browser {
        let port = free_port();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let profile = temp_dir(&format!("chromium-{port}"));
        // Spawned last, so nothing that can panic runs before `Drop` owns the child.
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut browser = Browser {
            driver: child,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client,
            runtime,
            profile,
        };
        wait_until("chromedriver listens", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "goog:chromeOptions": {
                "binary": chromium.to_string_lossy(),
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--hide-scrollbars",
                    format!("--window-size={width},{height}"),
                    format!("--user-data-dir={}", browser.profile.display()),
                ],
            },
        }}});
        let created = browser.call("POST", "/session", Some(caps));
        browser.session = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_string();
        browser
    }

    /// One WebDriver command; its `value`. Panics on a WebDriver error.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|(error, message)| {
                panic!("WebDriver {method} {path}: {error}: {message}")
            })
    }

    /// One WebDriver command: its `value`, or the WebDriver error and message.
    fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, (String, String)> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.client.get(&url),
            "DELETE" => self.client.delete(&url),
            _ => self
                .client
                .post(&url)
                .header("content-type", "application/json")
                .body(body.unwrap_or(json!({})).to_string()),
        };
        let text = self.runtime.block_on(async {
            let response = request.send().await.expect("chromedriver answers");
            response.text().await.unwrap_or_default()
        });
        let reply: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let value = reply["value"].clone();
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            return Err((error.to_string(), value["message"].to_string()));
        }
        Ok(value)
    }

    fn session_call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.call(method, &format!("/session/{}{path}", self.session), body)
    }

    pub fn goto(&self, url: &str) {
        self.session_call("POST", "/url", Some(json!({"url": url})));
    }

    pub fn set_size(&self, width: u32, height: u32) {
        self.session_call(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn script(&self, script: &str, args: Vec<Value>) -> Value {
        self.session_call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    pub fn find_all(&self, css: &str) -> Vec<Element> {
        self.session_call(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        )
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e[ELEMENT_KEY].as_str())
        .enumerate()
        .map(|(index, id)| Element {
            id: id.to_string(),
            css: css.to_string(),
            index,
        })
        .collect()
    }

    /// Runs one command on an element (`{id}` in `path` stands for its id); a stale
    /// reference is found again by its selector and the command retried.
    fn element_call(&self, e: &Element, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut id = e.id.clone();
        for _ in 0..STALE_RETRIES {
            let url = format!("/session/{}{}", self.session, path.replace("{id}", &id));
            match self.try_call(method, &url, body.clone()) {
                Ok(value) => return value,
                Err((error, _)) if error == "stale element reference" => {
                    std::thread::sleep(Duration::from_millis(25));
                    if let Some(found) = self.find_all(&e.css).into_iter().nth(e.index) {
                        id = found.id;
                    }
                }
                Err((error, message)) => panic!("WebDriver {method} {path}: {error}: {message}"),
            }
        }
        panic!("WebDriver {method} {path}: {:?} stayed stale", e.css);
    }

    /// The first element matching `css`, waiting up to `limit` for it to appear.
    pub fn wait_for(&self, css: &str, limit: Duration) -> Element {
        let started = Instant::now();
        loop {
            if let Some(e) = self.find_all(css).into_iter().next() {
                return e;
            }
            if started.elapsed() > limit {
                let page = self.script("return document.body.innerText", vec![]);
                panic!("no element {css:?} after {limit:?}; the page shows:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn text(&self, e: &Element) -> String {
        self.element_call(e, "GET", "/element/{id}/text", None)
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    pub fn attr(&self, e: &Element, name: &str) -> Option<String> {
        self.element_call(e, "GET", &format!("/element/{{id}}/attribute/{name}"), None)
            .as_str()
            .map(str::to_string)
    }

    pub fn click(&self, e: &Element) {
        self.element_call(e, "POST", "/element/{id}/click", None);
    }

    pub fn type_text(&self, e: &Element, text: &str) {
        self.element_call(
            e,
            "POST",
            "/element/{id}/value",
            Some(json!({"text": text})),
        );
    }

    /// Saves a PNG screenshot of the viewport under `target/ui-artifacts/`; returns the path.
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let encoded = self.session_call("GET", "/screenshot", None);
        let png = base64_decode(encoded.as_str().unwrap_or(""));
        assert!(png.starts_with(b"\x89PNG"), "a screenshot is a PNG");
        let path = artifacts().join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    /// Messages the page logged at level SEVERE (script errors, failed requests).
    pub fn severe_logs(&self) -> Vec<String> {
        let logs = self.session_call("POST", "/se/log", Some(json!({"type": "browser"})));
        logs.as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|l| l["level"] == "SEVERE")
            .map(|l| l["message"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let url = format!("{}/session/{}", self.base, self.session);
            let client = self.client.clone();
            let _ = self.runtime.block_on(async move {
                tokio::time::timeout(Duration::from_secs(10), client.delete(url).send()).await
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Standard base64 (with or without padding), as WebDriver returns screenshots.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
