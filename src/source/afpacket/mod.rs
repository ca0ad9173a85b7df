//! The fanout group of AF_PACKET sockets, one member per possible stream.

pub mod fanout;
pub mod group;
