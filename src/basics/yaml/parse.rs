//! YAML text to a tree of positioned [`Node`]s: `saphyr-parser` events are built into nodes
//! that keep where they started, aliases are expanded into copies, and the top-level sequence
//! under a key can be handed out item by item instead of kept.
//!
//! This half owns the caps that keep a hostile file from exhausting the daemon (one document,
//! [`MAX_ALIAS_NODES`]/[`MAX_ALIAS_BYTES`] of alias and anchor copies, [`MAX_DEPTH`] levels).
//! It knows nothing of serde or of what a key means: reading values out of the tree is
//! `de.rs`'s.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::{Error, Node, Pos, Value};

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
