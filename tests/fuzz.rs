//! A seeded mutation fuzzer for the probe-file reader, run inside `cargo test` on a bounded
//! budget: every shipped probe file, every invalid fixture and a few hostile seeds are mutated
//! (bytes flipped, YAML tokens such as anchors, aliases and `---` spliced in, ranges cut and
//! repeated) and loaded. Loading must return a config or errors — never panic — and the
//! process's peak resident memory must stay under [`PEAK_RSS_CAP`].
//!
//! It is its own test binary so the peak it reads is its own. The seed is fixed, so a failure
//! reproduces; set `SLOWBURN_FUZZ_SEED` and `SLOWBURN_FUZZ_CASES` to explore further.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slowburn::config::{self, Source};
use slowburn::probe::{BuildContext, net::NetContext};

/// The cap on the process's peak resident set (VmHWM) after the whole run. An alias bomb
/// that escaped the expansion cap would pass it within a few mutations.
const PEAK_RSS_CAP: u64 = 512 * 1024 * 1024;
/// Cases run by default, and the wall-clock budget that stops the run earlier on a slow machine.
const CASES: usize = 3000;
const BUDGET: Duration = Duration::from_secs(30);

/// xorshift64*: small, seeded, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Pieces of YAML (and of probe files) that reach the reader's edge cases.
const TOKENS: &[&str] = &[
    "&a ",
    "*a",
    "&b [*a, *a, *a, *a]",
    "*b",
    "---\n",
    "...\n",
    "[",
    "]",
    "{",
    "}",
    ": ",
    "- ",
    "\n",
    "  ",
    "\"",
    "'",
    "!!str ",
    "? ",
    "<<: *a",
    "#",
    "|\n  ",
    ">\n  ",
    "~",
    "null",
    "1e999",
    "-1",
    "99999",
    "0",
    "env:",
    "file:",
    "file:/dev/zero",
    "http://",
    "https://u:p@",
    ":99999",
    "probes:",
    "labels: {__x: 1, probe: 2}",
    "timeout: 0.0001ms",
    "interval: 1ns",
    "\t",
    "\u{0}",
    "\u{feff}",
    "é",
    "name: x",
    "http: {url: \"http://127.0.0.1:1/\"}",
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if !bytes.is_empty() => {
                let i = at.min(bytes.len() - 1);
                bytes[i] ^= 1 << rng.below(8);
            }
            1 | 2 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                bytes.splice(at..at, token.iter().copied());
            }
            3 => {
                let end = (at + rng.below(40)).min(bytes.len());
                bytes.drain(at..end);
            }
            _ => {
                // Repeat a range: grows lists, keys and nesting.
                let end = (at + rng.below(80)).min(bytes.len());
                let piece: Vec<u8> = bytes[at..end].to_vec();
                for _ in 0..1 + rng.below(4) {
                    bytes.splice(at..at, piece.iter().copied());
                }
            }
        }
    }
    bytes
}

fn seeds() -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = Vec::new();
    for dir in ["probes", "probes/examples", "tests/fixtures/invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            seeds.push(std::fs::read_to_string(file).unwrap());
        }
    }
    // Hostile seeds: deep nesting, a wide alias tree, and a second document.
    seeds.push(format!("probes: {}{}", "[".repeat(200), "]".repeat(200)));
    seeds.push("a: &a [x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nprobes: [*c, *c, *c, *c, *c, *c, *c, *c]\n".into());
    seeds.push("probes:\n  - {name: a, tcp: {address: \"127.0.0.1:1\"}}\n---\nprobes: [\n".into());
    seeds
}

/// Peak resident memory of this process, from `/proc/self/status`.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[test]
fn mutated_probe_files_never_panic_or_balloon() {
    let seed: u64 = std::env::var("SLOWBURN_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5157_b012_2026_0013);
    let cases: usize = std::env::var("SLOWBURN_FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(CASES);
    let ctx = BuildContext {
        net: Arc::new(NetContext::new()),
    };
    let seeds = seeds();
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let mut run = 0;
    let (mut loaded, mut refused) = (0, 0);
    while run < cases && started.elapsed() < BUDGET {
        let pick = rng.below(seeds.len());
        let input = mutate(&mut rng, seeds[pick].as_bytes());
        let text = String::from_utf8_lossy(&input).into_owned();
        let source = Source::Text {
            name: "fuzz.yaml".into(),
            text: text.clone(),
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| config::load(&source, &ctx)));
        match result {
            Ok(Ok(_)) => loaded += 1,
            Ok(Err(errors)) => {
                assert!(!errors.is_empty());
                refused += 1;
            }
            Err(_) => panic!("case {run} (seed {seed}) panicked on:\n{text}"),
        }
        run += 1;
    }
    let peak = peak_rss();
    eprintln!(
        "fuzz: {run} cases in {:?} ({loaded} loaded, {refused} refused), peak RSS {} MiB",
        started.elapsed(),
        peak / (1024 * 1024)
    );
    assert!(run >= 200, "only {run} cases ran within {BUDGET:?}");
    assert!(
        peak < PEAK_RSS_CAP,
        "peak RSS {} MiB above the cap of {} MiB",
        peak / (1024 * 1024),
        PEAK_RSS_CAP / (1024 * 1024)
    );
}
