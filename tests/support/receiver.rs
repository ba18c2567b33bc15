//! A webhook receiver on loopback that records every request (path and JSON body) in a
//! plain thread, so both sync and async tests can use it. `/down` answers 500.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Records every request by path; `/down` answers 500.
#[derive(Clone, Default)]
pub struct Receiver(pub Arc<Mutex<Vec<(String, serde_json::Value)>>>);

impl Receiver {
    pub fn start() -> (Receiver, SocketAddr) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = Receiver::default();
        let log = receiver.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let log = log.clone();
                std::thread::spawn(move || log.serve(stream));
            }
        });
        (receiver, addr)
    }

    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut length = 0;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).is_err() || header == "\r\n" || header.is_empty() {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let json = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
        self.0.lock().unwrap().push((path.clone(), json));
        let status = if path == "/down" {
            "500 Internal Server Error"
        } else {
            "200 OK"
        };
        let mut stream = reader.into_inner();
        let _ = write!(
            stream,
            "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }

    /// (event, step) of every request to `path`.
    pub fn events(&self, path: &str) -> Vec<(String, u64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p == path)
            .map(|(_, j)| {
                (
                    j["event"].as_str().unwrap_or("").to_string(),
                    j["step"].as_u64().unwrap_or(99),
                )
            })
            .collect()
    }

    pub fn wait_for(
        &self,
        path: &str,
        what: &str,
        limit: Duration,
        done: impl Fn(&[(String, u64)]) -> bool,
    ) {
        let started = Instant::now();
        while !done(&self.events(path)) {
            assert!(
                started.elapsed() < limit,
                "{what}: {path} got {:?}",
                self.events(path)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
