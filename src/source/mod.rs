//! Where packets come from: the fanout group of packet sockets
//! ([`afpacket`]), the XDP program ([`xdp`]), and the kernel probes
//! ([`probes`]).

pub mod afpacket;
pub mod probes;
pub mod xdp;
