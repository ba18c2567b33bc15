//! A YAML reader that remembers where every value came from.
//!
//! serde_yaml stops at the first error and forgets positions once a value is parsed, but a
//! probe file must report *every* mistake with `file:line:col`. The reader has two halves:
//! `parse.rs` turns `saphyr-parser` events into a small tree of [`Node`]s that keep their
//! position (one document per file; alias and anchor copies and nesting depth capped), and
//! `de.rs` is a serde [`Deserializer`](serde::Deserializer) over that tree. Together they own
//! three things:
//!
//! - errors carry the position of the innermost node that failed and the key path to it;
//! - unknown keys of a struct are recorded (all of them) and skipped, instead of aborting;
//! - [`Spanned<T>`] captures a value together with its position, so later validation (URLs,
//!   regexes, durations, secrets) can report errors at the exact spot.
//!
//! This file holds what both halves share: the tree ([`Node`], [`Value`], [`Pos`]), the
//! [`Error`] and [`Spanned`]. It knows nothing of probes: the schema lives in `config/mod.rs`.

mod de;
mod parse;

use std::fmt;

pub use self::de::{from_node, from_node_beside};
pub use self::parse::{MAX_ALIAS_BYTES, MAX_ALIAS_NODES, MAX_DEPTH, parse, parse_streaming};

/// A position in a file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

/// One parsed YAML value with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// A scalar and whether it was plain (unquoted), which decides if `5` is a number.
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

/// An error found while reading or deserializing, with its position and key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub pos: Option<Pos>,
    pub path: String,
    pub message: String,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for Error {}

impl serde::de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error {
            pos: None,
            path: String::new(),
            message: msg.to_string(),
        }
    }
}

impl Error {
    fn at(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }

    fn under(mut self, segment: &str) -> Self {
        self.path = if self.path.is_empty() {
            segment.to_string()
        } else if self.path.starts_with('[') {
            format!("{segment}{}", self.path)
        } else {
            format!("{segment}.{}", self.path)
        };
        self
    }
}

impl Node {
    /// The scalar text of this node, if it is a scalar.
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    /// Looks up a key of a mapping node.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    fn is_null(&self) -> bool {
        matches!(&self.value, Value::Scalar { text, plain: true } if is_null(text))
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// A value together with the position it was read from.
///
/// Comparisons look at the value only, so spanned keys of a map order and match by text.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    pub pos: Pos,
    pub value: T,
}

impl<T: PartialEq> PartialEq for Spanned<T> {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
}

impl<T: Eq> Eq for Spanned<T> {}

impl<T: PartialOrd> PartialOrd for Spanned<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        self.value.partial_cmp(&other.value)
    }
}

impl<T: Ord> Ord for Spanned<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value.cmp(&other.value)
    }
}

impl<T> std::ops::Deref for Spanned<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// A spanned value is described, in the JSON Schema for probe files, exactly as its value: the
/// position is the reader's, never written.
impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// The second occurrence of the first scalar key a mapping holds twice.
pub fn duplicate_key(entries: &[(Node, Node)]) -> Option<&Node> {
    let mut seen = std::collections::HashSet::new();
    entries
        .iter()
        .map(|(k, _)| k)
        .find(|k| k.as_str().is_some_and(|name| !seen.insert(name)))
}

/// A scalar read as its text whatever it looks like (`5`, `50ms`, `true`): for keys whose
/// values are numbers or strings, inside forms serde reads without their positions (an
/// `untagged` enum hands numbers over as numbers).
#[derive(Debug, Clone, PartialEq)]
pub struct ScalarText(pub String);

impl<'de> serde::Deserialize<'de> for ScalarText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ScalarText, D::Error> {
        struct Text;
        impl serde::de::Visitor<'_> for Text {
            type Value = ScalarText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_str<E>(self, v: &str) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<ScalarText, E> {
                Ok(ScalarText(v.to_string()))
            }
        }
        deserializer.deserialize_any(Text)
    }
}

impl schemars::JsonSchema for ScalarText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ScalarText".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({"type": ["string", "number", "boolean"]})
    }
}
