//! The XDP program as a source.

pub mod program;
pub mod run;
