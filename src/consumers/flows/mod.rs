//! Flow tracking for `--flows`: which flows landed on which stream.
//!
//! Each worker owns a [`FlowTable`] for its stream and calls
//! [`FlowTable::record`] for every packet it counts (no locks; no
//! allocation but when a new flow grows the table); the size of all
//! tables together is bounded by one shared [`FlowBudget`] (`--flows-max`,
//! [`DEFAULT_MAX_FLOWS`], [`MAX_BYTES_PER_FLOW`]). At the end the tables
//! go back to the main thread, [`merge`] turns them into [`Flows`], and
//! [`text::table`] prints them after the report or [`json::Report`]
//! carries them in the `--json` object.
//!
//! Streams are known here by a number the caller picks (its fanout member
//! index, say); the outputs name them through the caller's functions
//! (label for the text, id for JSON).
//!
//! - [`key`]: what a flow is, read from a packet
//! - [`table`]: per-stream tables, the budget, the merge
//! - [`join`]: with `--metrics`, the tables joined while the capture runs
//! - `slots`: the hash table under a [`FlowTable`]
//! - [`text`]: the flow table on stdout
//! - [`json`]: the `--json` report
//! - [`drops`]: the kernel's drops per flow (`--drops`), joined at the end

pub mod drops;
pub mod expectation;
pub mod join;
pub mod json;
pub mod key;
pub mod path;
mod slots;
pub mod table;
pub mod text;

pub use expectation::{Expectation, Mechanism};
pub use join::{FlowJoin, Predict, Role};
pub use key::{FlowKey, Proto};
pub use table::{merge, FlowBudget, FlowTable, Flows, DEFAULT_MAX_FLOWS, RECEIVED, SENT};

#[cfg(test)]
mod join_tests;
#[cfg(test)]
mod kernel_tests;
#[cfg(test)]
mod tests;
