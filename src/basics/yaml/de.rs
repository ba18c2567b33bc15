//! A serde [`Deserializer`](serde::Deserializer) over positioned [`Node`]s: every error it
//! returns carries the innermost node's position and the key path to it, unknown keys of a
//! struct are recorded (all of them, each with a "did you mean" hint) and skipped, and
//! [`Spanned<T>`] reads a value together with its position.
//!
//! This half reads a tree `parse.rs` built; it never sees YAML text or events, and it knows
//! nothing of probes.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use super::{Error, Node, Pos, Spanned, Value, duplicate_key, is_null};

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
    use serde::Deserialize;

    use super::*;
    use crate::basics::yaml::parse;

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
    fn duplicate_keys_are_errors() {
        let (probe, _) = read::<Probe>("name: a\nname: b\n");
        assert!(probe.unwrap_err().message.contains("duplicate key `name`"));
    }

    #[test]
    fn duplicate_keys_in_maps_are_errors() {
        let (labels, _) = read::<std::collections::BTreeMap<String, String>>("team: a\nteam: b\n");
        let err = labels.unwrap_err();
        assert!(err.message.contains("duplicate key `team`"), "{err}");
        assert_eq!(err.pos, Some(Pos { line: 2, col: 1 }));
    }
}
