//! Reading a recorded series for `slowburn backtest`: one `unix_seconds,value` per line, with
//! blank lines, `#` comments and an optional header (`t,value`, `unix_seconds,value`, …)
//! allowed. It owns the text format and its diagnostics only: the caller reads the file, and
//! the detectors never see a point this module dropped. Every problem names its 1-based line;
//! nothing here panics, whatever the input.

use std::fmt;

use super::verdict::format_duration;

/// What the parser kept and what it had to say.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Parsed {
    /// Usable points, strictly increasing in time.
    pub points: Vec<(f64, f64)>,
    /// Problems in line order; [`Problem::is_info`] ones did not drop anything.
    pub problems: Vec<Problem>,
}

/// One finding about one line.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line number.
    pub line: usize,
    pub kind: ProblemKind,
}

/// What was wrong with a line.
#[derive(Debug, Clone, PartialEq)]
pub enum ProblemKind {
    /// Not two numbers separated by a comma; the text is kept, shortened, for the message.
    Garbage(String),
    /// The timestamp or value is NaN or infinite.
    NotFinite,
    /// The timestamp is earlier than the previous point's.
    OutOfOrder { previous: f64 },
    /// The timestamp equals the previous point's.
    Duplicate,
    /// Informational: this many seconds since the previous point (the point is kept).
    Gap { seconds: f64 },
}

impl Problem {
    /// Whether the line was kept anyway (only gaps are).
    pub fn is_info(&self) -> bool {
        matches!(self.kind, ProblemKind::Gap { .. })
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: ", self.line)?;
        match &self.kind {
            ProblemKind::Garbage(text) => {
                write!(
                    f,
                    "expected `unix_seconds,value`, got {text:?}; line dropped"
                )
            }
            ProblemKind::NotFinite => write!(f, "NaN or infinite number; line dropped"),
            ProblemKind::OutOfOrder { previous } => write!(
                f,
                "timestamp goes back in time (previous point at {previous}); point dropped"
            ),
            ProblemKind::Duplicate => write!(f, "duplicate timestamp; point dropped"),
            ProblemKind::Gap { seconds } => write!(
                f,
                "gap of {} before this point (kept; detectors tolerate gaps)",
                format_duration(*seconds)
            ),
        }
    }
}

/// Parses `text`; gaps longer than `max_gap` seconds are reported as info.
pub fn parse(text: &str, max_gap: f64) -> Parsed {
    let mut parsed = Parsed::default();
    let mut seen_content = false;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let body = raw.split('#').next().unwrap_or("").trim();
        if body.is_empty() {
            continue;
        }
        let first_content = !seen_content;
        seen_content = true;
        let mut fields = body.split(',').map(str::trim);
        let (Some(a), Some(b), None) = (fields.next(), fields.next(), fields.next()) else {
            parsed.problems.push(garbage(line, body));
            continue;
        };
        let (t, v) = match (a.parse::<f64>(), b.parse::<f64>()) {
            (Ok(t), Ok(v)) => (t, v),
            _ if first_content && is_header(a, b) => continue,
            _ => {
                parsed.problems.push(garbage(line, body));
                continue;
            }
        };
        if !t.is_finite() || !v.is_finite() {
            parsed.problems.push(Problem {
                line,
                kind: ProblemKind::NotFinite,
            });
            continue;
        }
        if let Some(&(previous, _)) = parsed.points.last() {
            let kind = if t < previous {
                Some(ProblemKind::OutOfOrder { previous })
            } else if t == previous {
                Some(ProblemKind::Duplicate)
            } else {
                None
            };
            if let Some(kind) = kind {
                parsed.problems.push(Problem { line, kind });
                continue;
            }
            if t - previous > max_gap {
                parsed.problems.push(Problem {
                    line,
                    kind: ProblemKind::Gap {
                        seconds: t - previous,
                    },
                });
            }
        }
        parsed.points.push((t, v));
    }
    parsed
}

fn is_header(a: &str, b: &str) -> bool {
    let word = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ' ')
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    };
    word(a) && word(b)
}

fn garbage(line: usize, body: &str) -> Problem {
    let shown: String = body.chars().take(60).collect();
    Problem {
        line,
        kind: ProblemKind::Garbage(shown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_points_and_reports_problems_by_line() {
        let text = "\
# recorded by hand
unix_seconds,value

100,1.5
115, 2.5   # trailing comment
oops
130,NaN
130,inf
110,9
115,9
130,3
5000,4
1e3
t,value
6000,5,7
\r
7000 , 6\r
";
        let parsed = parse(text, 3600.0);
        assert_eq!(
            parsed.points,
            vec![
                (100.0, 1.5),
                (115.0, 2.5),
                (130.0, 3.0),
                (5000.0, 4.0),
                (7000.0, 6.0)
            ]
        );
        let lines: Vec<(usize, &ProblemKind)> =
            parsed.problems.iter().map(|p| (p.line, &p.kind)).collect();
        assert_eq!(
            lines,
            vec![
                (6, &ProblemKind::Garbage("oops".into())),
                (7, &ProblemKind::NotFinite),
                (8, &ProblemKind::NotFinite),
                (9, &ProblemKind::OutOfOrder { previous: 115.0 }),
                (10, &ProblemKind::Duplicate),
                (12, &ProblemKind::Gap { seconds: 4870.0 }),
                (13, &ProblemKind::Garbage("1e3".into())),
                (14, &ProblemKind::Garbage("t,value".into())),
                (15, &ProblemKind::Garbage("6000,5,7".into())),
            ]
        );
        assert_eq!(
            parsed.problems[3].to_string(),
            "line 9: timestamp goes back in time (previous point at 115); point dropped"
        );
        assert_eq!(
            parsed.problems[5].to_string(),
            "line 12: gap of 1h21m before this point (kept; detectors tolerate gaps)"
        );
        assert!(parsed.problems[5].is_info() && !parsed.problems[0].is_info());
    }

    #[test]
    fn headers_and_empty_input() {
        assert_eq!(parse("", 60.0), Parsed::default());
        assert_eq!(parse("\n\n# nothing\n", 60.0), Parsed::default());
        assert_eq!(parse("t,value\n1,2\n", 60.0).points, vec![(1.0, 2.0)]);
        assert_eq!(parse("unix_seconds,value\n", 60.0), Parsed::default());
        assert_eq!(parse("t,value\n", 60.0).problems, vec![]);
    }

    #[test]
    fn never_panics_on_odd_bytes() {
        let mut state = 1_u64;
        let alphabet = b"0123456789.,-+eE#\n\r \tnaNinfx\xc3\xa9";
        for _ in 0..2000 {
            let mut s = Vec::new();
            for _ in 0..64 {
                state = crate::detect::series::splitmix64(state);
                s.push(alphabet[(state % alphabet.len() as u64) as usize]);
            }
            let text = String::from_utf8_lossy(&s);
            let parsed = parse(&text, 1.0);
            assert!(parsed.points.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }
}
