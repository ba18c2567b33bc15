//! Prometheus file_sd target lists (`targets_file:`): a JSON or YAML list of groups, each
//! `{targets: [...], labels: {...}}`, read with positions so a mistake points at its line.
//!
//! Labels whose names start with `__` are Prometheus' meta labels, which relabeling drops
//! before storage; they are dropped here too. This file reads one file; which probe entry
//! it feeds and when it is re-read belong to the config loader.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::basics::yaml::{self, Pos, Spanned};

/// One target with the labels of its group.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub address: String,
    pub labels: Vec<(String, String)>,
    /// Where the target is written.
    pub pos: Pos,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Group {
    targets: Vec<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// The targets of a file_sd file, or every mistake in it with its position.
pub fn read(path: &Path) -> Result<Vec<Target>, Vec<(Option<Pos>, String)>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![(None, format!("cannot read {}: {e}", path.display()))])?;
    parse(&text)
}

/// The targets of file_sd text (JSON or YAML).
pub fn parse(text: &str) -> Result<Vec<Target>, Vec<(Option<Pos>, String)>> {
    let root = yaml::parse(text).map_err(|e| vec![(e.pos, e.to_string())])?;
    if root.as_str().is_some_and(str::is_empty) {
        return Ok(Vec::new());
    }
    let unknown = RefCell::new(Vec::new());
    let groups = yaml::from_node::<Vec<Group>>(&root, &unknown);
    let mut errors: Vec<(Option<Pos>, String)> = unknown
        .into_inner()
        .into_iter()
        .map(|e| (e.pos, e.to_string()))
        .collect();
    let groups = match groups {
        Ok(groups) => groups,
        Err(e) => {
            errors.push((
                e.pos.or(Some(root.pos)),
                format!("a file_sd list of {{targets: [...], labels: {{...}}}}: {e}"),
            ));
            return Err(errors);
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(groups
        .into_iter()
        .flat_map(|group| {
            let labels: Vec<(String, String)> = group
                .labels
                .into_iter()
                .filter(|(k, _)| !k.starts_with("__"))
                .collect();
            group.targets.into_iter().map(move |t| Target {
                address: t.value,
                labels: labels.clone(),
                pos: t.pos,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_and_yaml_groups_with_their_labels() {
        let json = r#"[{"targets": ["a:1", "b:2"], "labels": {"team": "data", "__meta_x": "y"}},
                       {"targets": ["c:3"]}]"#;
        let targets = parse(json).unwrap();
        let pairs: Vec<(&str, usize)> = targets
            .iter()
            .map(|t| (t.address.as_str(), t.labels.len()))
            .collect();
        assert_eq!(pairs, [("a:1", 1), ("b:2", 1), ("c:3", 0)]);
        assert_eq!(
            targets[0].labels,
            [("team".to_string(), "data".to_string())]
        );
        let yaml = "- targets: [x:1]\n  labels: {env: prod}\n";
        assert_eq!(parse(yaml).unwrap()[0].address, "x:1");
    }

    #[test]
    fn mistakes_name_their_line() {
        let errors = parse("- targets: [a:1]\n  lables: {}\n").unwrap_err();
        assert_eq!(errors[0].0.map(|p| p.line), Some(2), "{errors:?}");
        assert!(errors[0].1.contains("lables"), "{errors:?}");
    }
}
