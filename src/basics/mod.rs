//! The basics every room of the house imports and none owns: positioned YAML and
//! [`yaml::Spanned`] values, units, durations, sizes and secrets ([`units`]), how values and
//! times read in messages ([`format`]), what a signal is ([`signal`]), and [`SpecError`].
//!
//! Nothing here imports another module of the crate: the rooms (`config`, `probe`, `detect`,
//! `alert`, `notify`, …) depend on the basics, never the other way round, so there is no
//! folder-level import cycle (`grep -rn "use crate::" src/basics` finds only `crate::basics`).

pub mod format;
pub mod signal;
pub mod units;
pub mod yaml;

use yaml::Pos;

/// A mistake in a spec (a probe kind, a notifier, a detector), at a position in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub pos: Pos,
    pub field: String,
    pub message: String,
}

impl SpecError {
    pub fn new(pos: Pos, field: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            pos,
            field: field.into(),
            message: message.into(),
        }
    }
}
