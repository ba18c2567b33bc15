//! A YAML reader that remembers where every value came from.
//!
//! serde_yaml stops at the first error and forgets positions once a value is parsed, but a
//! probe file must report *every* mistake with `file:line:col`. This module parses YAML events
//! with `saphyr-parser` into a small tree of [`Node`]s that keep their position, and implements
//! a serde [`Deserializer`](serde::Deserializer) over that tree. It owns three things:
//!
//! - errors carry the position of the innermost node that failed and the key path to it;
//! - unknown keys of a struct are recorded (all of them) and skipped, instead of aborting;
//! - [`Spanned<T>`] captures a value together with its position, so later validation (URLs,
//!   regexes, durations, secrets) can report errors at the exact spot.
//!
//! It knows nothing of probes: the schema lives in `config/mod.rs`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};
use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

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

impl de::Error for Error {
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

/// How much alias expansion one document may add: `*ref` copies the anchored node, so a
/// kilobyte of nested aliases ("billion laughs") would otherwise become gigabytes. A hand-written
/// file that reuses a block with anchors needs a tiny fraction of this.
pub const MAX_ALIAS_NODES: usize = 100_000;
/// The scalar text alias expansion may add to one document.
pub const MAX_ALIAS_BYTES: usize = 4 * 1024 * 1024;
/// How deep sequences and mappings may nest. Probe files need about eight levels; the cap keeps
/// the recursive deserializer (and dropping the tree) far from the end of a thread's stack.
pub const MAX_DEPTH: usize = 64;

/// Parses one YAML document. An empty document is an empty map.
pub fn parse(text: &str) -> Result<Node, Error> {
    parse_streaming(text, "", |_| {})
}

/// Parses one YAML document, handing each item of the top-level sequence under `key` to
/// `on_item` as soon as it is complete instead of keeping it in the tree, which holds an
/// empty sequence there. A file of 100,000 probes never has all of them as nodes at once.
/// An empty `key` streams nothing. A second document in the text is an error, as is alias
/// expansion beyond [`MAX_ALIAS_NODES`]/[`MAX_ALIAS_BYTES`] or nesting beyond [`MAX_DEPTH`].
pub fn parse_streaming(
    text: &str,
    key: &str,
    mut on_item: impl FnMut(Node),
) -> Result<Node, Error> {
    let mut builder = Builder {
        stream_key: key,
        ..Builder::default()
    };
    let mut root = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| Error {
            pos: Some(Pos {
                line: e.marker().line(),
                col: e.marker().col() + 1,
            }),
            path: String::new(),
            message: format!("invalid YAML: {}", e.info()),
        })?;
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        // Parsing goes on after the first document is complete, so that a second one (even
        // garbage after a `---`) is refused instead of silently ignored.
        if let Some(done) = builder.push(event, pos, &mut on_item)? {
            root = Some(done);
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, col: 1 },
        value: Value::Map(Vec::new()),
    }))
}

/// The size of a subtree: its nodes and the bytes of its scalars.
#[derive(Debug, Clone, Copy, Default)]
struct Weight {
    nodes: usize,
    bytes: usize,
}

impl Weight {
    fn of(node: &Node) -> Weight {
        match &node.value {
            Value::Scalar { text, .. } => Weight {
                nodes: 1,
                bytes: text.len(),
            },
            Value::Seq(items) => items
                .iter()
                .fold(Weight { nodes: 1, bytes: 0 }, |w, n| w.add(Weight::of(n))),
            Value::Map(entries) => entries
                .iter()
                .fold(Weight { nodes: 1, bytes: 0 }, |w, (k, v)| {
                    w.add(Weight::of(k)).add(Weight::of(v))
                }),
        }
    }

    fn add(self, other: Weight) -> Weight {
        Weight {
            nodes: self.nodes.saturating_add(other.nodes),
            bytes: self.bytes.saturating_add(other.bytes),
        }
    }
}

#[derive(Default)]
struct Builder<'k> {
    stack: Vec<(Node, Option<Node>, usize)>,
    anchors: HashMap<usize, (Node, Weight)>,
    /// What aliases have added to this document so far.
    expanded: Weight,
    documents: usize,
    stream_key: &'k str,
}

impl Builder<'_> {
    /// Feeds one event; returns the root when the first document is complete.
    fn push(
        &mut self,
        event: Event<'_>,
        pos: Pos,
        on_item: &mut impl FnMut(Node),
    ) -> Result<Option<Node>, Error> {
        let fail = |message: String| Error {
            pos: Some(pos),
            path: String::new(),
            message,
        };
        let (node, anchor) = match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(fail(
                        "a probe file holds one YAML document; split the others into files".into(),
                    ));
                }
                return Ok(None);
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if self.stack.len() >= MAX_DEPTH {
                    return Err(fail(format!(
                        "nested deeper than {MAX_DEPTH} levels of sequences and mappings"
                    )));
                }
                let value = match event {
                    Event::SequenceStart(..) => Value::Seq(Vec::new()),
                    _ => Value::Map(Vec::new()),
                };
                self.stack.push((Node { pos, value }, None, anchor));
                return Ok(None);
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some((node, _, anchor)) => (node, anchor),
                None => return Ok(None),
            },
            Event::Scalar(text, style, anchor, _) => (
                Node {
                    pos,
                    value: Value::Scalar {
                        text: text.into_owned(),
                        plain: matches!(style, ScalarStyle::Plain),
                    },
                },
                anchor,
            ),
            Event::Alias(id) => match self.anchors.get(&id) {
                Some((node, weight)) => {
                    let weight = *weight;
                    // Where the copy lands may nest it deeper than the anchor was.
                    if self.stack.len() + depth(node) > MAX_DEPTH {
                        return Err(fail(format!(
                            "nested deeper than {MAX_DEPTH} levels of sequences and mappings"
                        )));
                    }
                    let node = node.clone();
                    self.charge(weight).map_err(fail)?;
                    (node, 0)
                }
                None => return Err(fail("alias refers to an unknown anchor".into())),
            },
            _ => return Ok(None),
        };
        if anchor != 0 {
            // The anchor keeps a copy too, charged like an alias: anchors nested inside one
            // another would otherwise copy a large block once per level.
            let weight = Weight::of(&node);
            self.charge(weight).map_err(fail)?;
            self.anchors.insert(anchor, (node.clone(), weight));
        }
        if self.streams() {
            on_item(node);
            return Ok(None);
        }
        Ok(self.attach(node))
    }
    /// Counts a copy made for an anchor or an alias against the document's budget.
    fn charge(&mut self, weight: Weight) -> Result<(), String> {
        let expanded = self.expanded.add(weight);
        if expanded.nodes > MAX_ALIAS_NODES || expanded.bytes > MAX_ALIAS_BYTES {
            return Err(format!(
                "anchors and aliases expand to more than {MAX_ALIAS_NODES} nodes or {} MiB in this \
                 document; write the repeated part out or use fewer aliases",
                MAX_ALIAS_BYTES / (1024 * 1024)
            ));
        }
        self.expanded = expanded;
        Ok(())
    }

    /// Whether a node completed now is an item of the streamed top-level sequence.
    fn streams(&self) -> bool {
        match self.stack.as_slice() {
            [(root, Some(key), _), (seq, None, _)] => {
                !self.stream_key.is_empty()
                    && matches!(root.value, Value::Map(_))
                    && matches!(seq.value, Value::Seq(_))
                    && key.as_str() == Some(self.stream_key)
            }
            _ => false,
        }
    }

    fn attach(&mut self, node: Node) -> Option<Node> {
        let Some((parent, pending_key, _)) = self.stack.last_mut() else {
            return Some(node);
        };
        match &mut parent.value {
            Value::Seq(items) => items.push(node),
            Value::Map(entries) => match pending_key.take() {
                Some(key) => entries.push((key, node)),
                None => *pending_key = Some(node),
            },
            Value::Scalar { .. } => {}
        }
        None
    }
}

/// How many levels of sequences and mappings a node holds (a scalar holds none).
fn depth(node: &Node) -> usize {
    match &node.value {
        Value::Scalar { .. } => 0,
        Value::Seq(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Map(entries) => 1 + entries.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
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

const SPANNED: &str = "$slowburn::Spanned";
const SPANNED_FIELDS: &[&str] = &["$line", "$col", "$value"];

impl<'de, T: de::Deserialize<'de>> de::Deserialize<'de> for Spanned<T> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SpannedVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: de::Deserialize<'de>> Visitor<'de> for SpannedVisitor<T> {
            type Value = Spanned<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a value read from a probe file")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Spanned<T>, A::Error> {
                let mut pos = Pos::default();
                let mut value = None;
                while let Some(key) = map.next_key::<Cow<'_, str>>()? {
                    match key.as_ref() {
                        "$line" => pos.line = map.next_value()?,
                        "$col" => pos.col = map.next_value()?,
                        _ => value = Some(map.next_value()?),
                    }
                }
                let value = value.ok_or_else(|| de::Error::missing_field("$value"))?;
                Ok(Spanned { pos, value })
            }
        }
        deserializer.deserialize_struct(
            SPANNED,
            SPANNED_FIELDS,
            SpannedVisitor(std::marker::PhantomData),
        )
    }
}

/// Deserializes `T` from a node. Unknown keys anywhere below are collected in `unknown`
/// (and skipped) so that one typo does not hide the next error.
pub fn from_node<'a, T: de::Deserialize<'a>>(
    node: &'a Node,
    unknown: &'a RefCell<Vec<Error>>,
) -> Result<T, Error> {
    from_node_beside(node, unknown, &[])
}

/// As [`from_node`], for a struct read beside others from one mapping: `beside` are keys of
/// the same mapping that another struct reads (a probe entry's kind sections), named in the
/// hints for an unknown top-level key.
pub fn from_node_beside<'a, T: de::Deserialize<'a>>(
    node: &'a Node,
    unknown: &'a RefCell<Vec<Error>>,
    beside: &'a [&'a str],
) -> Result<T, Error> {
    T::deserialize(NodeDeserializer {
        node,
        unknown,
        beside,
    })
}

struct NodeDeserializer<'a> {
    node: &'a Node,
    unknown: &'a RefCell<Vec<Error>>,
    beside: &'a [&'a str],
}

impl<'a> NodeDeserializer<'a> {
    fn child(&self, node: &'a Node) -> Self {
        NodeDeserializer {
            node,
            unknown: self.unknown,
            beside: &[],
        }
    }

    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.value {
            Value::Scalar { text, plain } => Some((text, *plain)),
            _ => None,
        }
    }

    fn kind(&self) -> de::Unexpected<'a> {
        match &self.node.value {
            Value::Scalar { text, .. } => de::Unexpected::Str(text),
            Value::Seq(_) => de::Unexpected::Seq,
            Value::Map(_) => de::Unexpected::Map,
        }
    }

    fn visit_struct<V: Visitor<'a>>(
        &self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let Value::Map(entries) = &self.node.value else {
            if self.node.is_null() {
                return visitor.visit_map(Entries::new(&[], self));
            }
            return Err(de::Error::invalid_type(self.kind(), &visitor));
        };
        let mut known = Vec::with_capacity(entries.len());
        for (key, value) in entries {
            match key.as_str() {
                Some(name) if fields.contains(&name) => known.push((key, value)),
                Some(name) => self.unknown.borrow_mut().push(Error {
                    pos: Some(key.pos),
                    path: String::new(),
                    message: unknown_key_message(name, fields, self.beside),
                }),
                None => self.unknown.borrow_mut().push(Error {
                    pos: Some(key.pos),
                    path: String::new(),
                    message: "keys must be plain strings".into(),
                }),
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (key, _) in &known {
            if let Some(name) = key.as_str()
                && !seen.insert(name)
            {
                return Err(
                    <Error as de::Error>::custom(format!("duplicate key `{name}`")).at(key.pos),
                );
            }
        }
        visitor.visit_map(Entries::from_refs(known, self))
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

fn unknown_key_message(name: &str, fields: &[&str], beside: &[&str]) -> String {
    let fields: Vec<&str> = fields
        .iter()
        .chain(beside)
        .copied()
        .filter(|f| !f.starts_with('$'))
        .collect();
    match closest(name, &fields) {
        Some(guess) => format!("unknown key `{name}` (did you mean `{guess}`?)"),
        None => format!(
            "unknown key `{name}`, expected one of: {}",
            fields.join(", ")
        ),
    }
}

/// The known name within edit distance 2 of `name`, if any.
fn closest<'f>(name: &str, known: &[&'f str]) -> Option<&'f str> {
    known
        .iter()
        .map(|k| (edit_distance(name, k), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

macro_rules! forward_to_any {
    ($($method:ident)*) => {
        $(fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            self.deserialize_any(visitor)
        })*
    };
}

impl<'a> de::Deserializer<'a> for NodeDeserializer<'a> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        let pos = self.node.pos;
        let result = match &self.node.value {
            Value::Scalar { text, plain: true } => {
                if is_null(text) {
                    visitor.visit_unit()
                } else if let Some(b) = parse_bool(text) {
                    visitor.visit_bool(b)
                } else if let Ok(i) = text.parse::<i64>() {
                    visitor.visit_i64(i)
                } else if let Some(f) = parse_float(text) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(text)
                }
            }
            Value::Scalar { text, plain: false } => visitor.visit_str(text),
            Value::Seq(items) => visitor.visit_seq(Items {
                iter: items.iter().enumerate(),
                de: &self,
            }),
            Value::Map(entries) => match duplicate_key(entries) {
                // Serde's maps keep the last of two equal keys; a probe file's `labels:` or
                // `headers:` with a key twice is a mistake to point at, not to merge.
                Some(key) => Err(<Error as de::Error>::custom(format!(
                    "duplicate key `{}`",
                    key.as_str().unwrap_or_default()
                ))
                .at(key.pos)),
                None => visitor.visit_map(Entries::new(entries, &self)),
            },
        };
        result.map_err(|e| e.at(pos))
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.scalar().and_then(|(t, _)| parse_bool(t)) {
            Some(b) => visitor
                .visit_bool(b)
                .map_err(|e: Error| e.at(self.node.pos)),
            None => Err(de::Error::invalid_type(self.kind(), &visitor))
                .map_err(|e: Error| e.at(self.node.pos)),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        // A plain `1` or `true` where a string is expected is taken as its text, so that
        // `tier: 1` and `tier: "1"` mean the same label.
        match self.scalar() {
            Some((text, _)) => visitor
                .visit_str(text)
                .map_err(|e: Error| e.at(self.node.pos)),
            None => Err(de::Error::invalid_type(self.kind(), &visitor))
                .map_err(|e: Error| e.at(self.node.pos)),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.node.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let pos = self.node.pos;
        if name == SPANNED {
            return visitor
                .visit_map(SpannedAccess { de: self, step: 0 })
                .map_err(|e| e.at(pos));
        }
        self.visit_struct(fields, visitor).map_err(|e| e.at(pos))
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let pos = self.node.pos;
        match &self.node.value {
            Value::Scalar { text, .. } => visitor
                .visit_enum(text.as_str().into_deserializer())
                .map_err(|e: Error| e.at(pos)),
            _ => Err(de::Error::invalid_type(self.kind(), &visitor)).map_err(|e: Error| e.at(pos)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    forward_to_any! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
        deserialize_f32 deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_seq deserialize_map deserialize_identifier
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_any(visitor)
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ if text.bytes().any(|b| b.is_ascii_digit())
            && text
                .bytes()
                .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-')) =>
        {
            text.parse().ok()
        }
        _ => None,
    }
}

struct Items<'a, 'd, I> {
    iter: I,
    de: &'d NodeDeserializer<'a>,
}

impl<'a, I: Iterator<Item = (usize, &'a Node)>> SeqAccess<'a> for Items<'a, '_, I> {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.iter.next() {
            Some((i, node)) => seed
                .deserialize(self.de.child(node))
                .map(Some)
                .map_err(|e| e.at(node.pos).under(&format!("[{i}]"))),
            None => Ok(None),
        }
    }
}

struct Entries<'a, 'd> {
    entries: Vec<(&'a Node, &'a Node)>,
    next: usize,
    de: &'d NodeDeserializer<'a>,
}

impl<'a, 'd> Entries<'a, 'd> {
    fn new(entries: &'a [(Node, Node)], de: &'d NodeDeserializer<'a>) -> Self {
        Self::from_refs(entries.iter().map(|(k, v)| (k, v)).collect(), de)
    }

    fn from_refs(entries: Vec<(&'a Node, &'a Node)>, de: &'d NodeDeserializer<'a>) -> Self {
        Entries {
            entries,
            next: 0,
            de,
        }
    }
}

impl<'a> MapAccess<'a> for Entries<'a, '_> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.get(self.next) {
            Some((key, _)) => seed
                .deserialize(self.de.child(key))
                .map(Some)
                .map_err(|e| e.at(key.pos)),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let (key, value) = self.entries[self.next];
        self.next += 1;
        seed.deserialize(self.de.child(value))
            .map_err(|e| e.at(value.pos).under(key.as_str().unwrap_or("?")))
    }
}

/// Presents a node as the three-field struct that [`Spanned`] deserializes from.
struct SpannedAccess<'a> {
    de: NodeDeserializer<'a>,
    step: usize,
}

impl<'a> MapAccess<'a> for SpannedAccess<'a> {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match SPANNED_FIELDS.get(self.step) {
            Some(name) => seed.deserialize(name.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let pos = self.de.node.pos;
        self.step += 1;
        match self.step {
            1 => seed.deserialize(pos.line.into_deserializer()),
            2 => seed.deserialize(pos.col.into_deserializer()),
            _ => seed.deserialize(self.de.child(self.de.node)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn streamed_items_come_out_in_order_with_their_positions() {
        let text = "probes:\n  - name: a\n  - name: b\n    x: [1]\ndefaults: {interval: 5s}\nother: [1, 2]\n";
        let mut items = Vec::new();
        let root = parse_streaming(text, "probes", |item| items.push(item)).unwrap();
        let names: Vec<_> = items
            .iter()
            .map(|i| (i.get("name").and_then(Node::as_str), i.pos))
            .collect();
        assert_eq!(
            names,
            [
                (Some("a"), Pos { line: 2, col: 5 }),
                (Some("b"), Pos { line: 3, col: 5 })
            ]
        );
        // The streamed sequence stays in the tree, empty; everything else is kept.
        assert!(matches!(&root.get("probes").unwrap().value, Value::Seq(v) if v.is_empty()));
        assert_eq!(
            root.get("defaults")
                .and_then(|d| d.get("interval"))
                .and_then(Node::as_str),
            Some("5s")
        );
        assert!(matches!(&root.get("other").unwrap().value, Value::Seq(v) if v.len() == 2));
        // Nested sequences under other keys, and a root that is not a map, stream nothing.
        let mut none = 0;
        parse_streaming("- probes: [1]\n", "probes", |_| none += 1).unwrap();
        parse_streaming("a:\n  probes: [1]\n", "probes", |_| none += 1).unwrap();
        assert_eq!(none, 0);
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Probe {
        name: String,
        interval: Option<Spanned<String>>,
        #[serde(default)]
        tags: Vec<String>,
        port: Option<u16>,
    }

    fn read<T: for<'a> Deserialize<'a>>(text: &str) -> (Result<T, Error>, Vec<Error>) {
        let node = parse(text).expect("valid yaml");
        let unknown = RefCell::new(Vec::new());
        let result = from_node(&node, &unknown);
        (result, unknown.into_inner())
    }

    #[test]
    fn spans_point_at_values() {
        let (probe, unknown) = read::<Probe>("name: a\ninterval: 15s\n");
        let probe = probe.unwrap();
        assert!(unknown.is_empty());
        let interval = probe.interval.unwrap();
        assert_eq!(interval.value, "15s");
        assert_eq!(interval.pos, Pos { line: 2, col: 11 });
    }

    #[test]
    fn unknown_keys_are_all_collected() {
        let (probe, unknown) = read::<Probe>("name: a\nintervall: 15s\ncolour: red\n");
        assert!(probe.is_ok());
        assert_eq!(unknown.len(), 2);
        assert_eq!(unknown[0].pos, Some(Pos { line: 2, col: 1 }));
        assert!(unknown[0].message.contains("did you mean `interval`"));
        assert!(unknown[1].message.contains("expected one of"));
    }

    #[test]
    fn type_errors_point_at_the_innermost_value_with_a_path() {
        let (probe, _) = read::<Probe>("name: a\ntags: [x, {y: 1}]\n");
        let err = probe.unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 11 }));
        assert_eq!(err.path, "tags[1]");
        let (probe, _) = read::<Probe>("name: a\nport: 70000\n");
        let err = probe.unwrap_err();
        assert_eq!(err.pos, Some(Pos { line: 2, col: 7 }));
        assert_eq!(err.path, "port");
    }

    #[test]
    fn missing_fields_point_at_the_map() {
        let (probe, _) = read::<Probe>("\n  interval: 1s\n");
        let err = probe.unwrap_err();
        assert!(err.message.contains("missing field `name`"), "{err}");
        assert_eq!(err.pos, Some(Pos { line: 2, col: 3 }));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.is_some());
        assert!(err.message.starts_with("invalid YAML"));
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let node = parse("a: &x {k: v}\nb: *x\n").unwrap();
        assert_eq!(
            node.get("b")
                .and_then(|b| b.get("k"))
                .and_then(Node::as_str),
            Some("v")
        );
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let (probe, _) = read::<Probe>("name: a\nname: b\n");
        assert!(probe.unwrap_err().message.contains("duplicate key `name`"));
    }

    /// Nine levels of ten aliases each: a billion `lol`s if expanded.
    pub(crate) fn billion_laughs() -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        text
    }

    #[test]
    fn alias_expansion_is_capped_with_a_position() {
        let text = billion_laughs();
        assert!(text.len() < 1024);
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("aliases expand to more than"), "{err}");
        // The alias that crossed the cap: in the line of `a4`, whose items weigh 11,111 nodes.
        let pos = err.pos.unwrap();
        assert_eq!(pos.line, 5, "{err:?}");
        // The same cap holds for the streaming reader.
        assert!(parse_streaming(&text, "probes", |_| {}).is_err());
        // Modest reuse is fine.
        let node = parse("base: &b {team: shop, tier: 1}\nx: [*b, *b, *b]\n").unwrap();
        assert!(matches!(&node.get("x").unwrap().value, Value::Seq(v) if v.len() == 3));
    }

    #[test]
    fn big_scalars_behind_aliases_are_capped_by_bytes() {
        let big = "x".repeat(64 * 1024);
        let mut text = format!("a: &a \"{big}\"\nb: [");
        text.push_str(&"*a, ".repeat(MAX_ALIAS_BYTES / big.len() + 1));
        text.push_str("]\n");
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err}");
        assert_eq!(err.pos.unwrap().line, 2);
    }

    #[test]
    fn nested_anchors_are_charged_for_their_copies() {
        // Sixty anchors around one list of 2,000 items: 120,000 copied nodes, no alias at all.
        let mut text = String::from("a: ");
        for i in 0..60 {
            text.push_str(&format!("&a{i} ["));
        }
        text.push_str(&"x, ".repeat(2000));
        text.push_str(&"]".repeat(60));
        text.push('\n');
        let err = parse(&text).unwrap_err();
        assert!(err.message.contains("aliases expand"), "{err}");
    }

    #[test]
    fn nesting_is_capped() {
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        let err = parse(&deep).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(parse(&ok).is_ok());
    }

    #[test]
    fn a_second_document_is_an_error_even_after_a_complete_first() {
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.message.contains("one YAML document"), "{err}");
        assert_eq!(err.pos, Some(Pos { line: 2, col: 1 }));
        // Garbage after the separator is reported too, not skipped.
        assert!(parse("a: 1\n---\n[: :\n").is_err());
        // An explicit start and end of the one document are fine.
        assert!(parse("---\na: 1\n...\n").is_ok());
    }

    #[test]
    fn duplicate_keys_in_maps_are_errors() {
        let (labels, _) = read::<std::collections::BTreeMap<String, String>>("team: a\nteam: b\n");
        let err = labels.unwrap_err();
        assert!(err.message.contains("duplicate key `team`"), "{err}");
        assert_eq!(err.pos, Some(Pos { line: 2, col: 1 }));
    }
}
