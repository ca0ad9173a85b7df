//! What a flow was expected to do: the stream steering says a packet
//! should land in, and the mechanism that says so. Worked out by
//! [`crate::steering`] (which reads the configuration); kept here, with
//! the flows they describe.

use std::fmt;

/// What steers a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mechanism {
    Rps,
    Rfs,
    Rss,
    Xps,
    None,
}

impl Mechanism {
    pub fn as_str(&self) -> &'static str {
        match self {
            Mechanism::Rps => "rps",
            Mechanism::Rfs => "rfs",
            Mechanism::Rss => "rss",
            Mechanism::Xps => "xps",
            Mechanism::None => "none",
        }
    }
}

impl fmt::Display for Mechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The stream (a cpu for cpu captures, a queue for queue captures) a
/// packet should be in, and what decides it. `stream` is None when the
/// mechanism does not let it be predicted (RFS, an interrupt spread over
/// several cpus, an unknown receiving cpu).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Expectation {
    pub stream: Option<u32>,
    pub by: Mechanism,
}
