//! The interface a capture is on, and its link type.

use std::io;

use crate::error::{Error, Result, Why};
use crate::options::Options;
use crate::packet::LinkType;
use crate::sys::afpacket;

/// Room for the longest link-layer header in front of the network header
/// (Ethernet with two VLAN tags is 22 bytes; radiotap and friends are not
/// captured cooked in practice).
const MAX_LINK_HEADER: u32 = 64;

/// The interface to capture on.
#[derive(Clone, Debug)]
pub struct Target {
    /// 0: every interface.
    pub ifindex: u32,
    /// For messages: the interface name, or `any`.
    pub label: String,
    pub link: LinkType,
}

/// The interface `opts` names (or every interface), checked to exist and
/// be up.
pub fn target(opts: &Options) -> Result<Target> {
    let Some(name) = &opts.interface else {
        return Ok(Target {
            ifindex: 0,
            label: "any".into(),
            link: LinkType::LinuxSll2,
        });
    };
    let bad = |e: io::Error, hint: String| Error::Interface {
        name: name.clone(),
        why: Why(e),
        hint,
    };
    let ifindex = afpacket::ifindex(name).map_err(|e| bad(e, String::new()))?;
    let hatype = afpacket::hardware_type(name).map_err(|e| bad(e, String::new()))?;
    if !afpacket::is_up(name) {
        return Err(bad(
            io::Error::from_raw_os_error(libc::ENETDOWN),
            format!(" (bring it up first: ip link set dev {name} up)"),
        ));
    }
    Ok(Target {
        ifindex,
        label: name.clone(),
        link: LinkType::for_hatype(hatype),
    })
}

impl Target {
    /// The kernel's snap length for a capture keeping `snaplen` bytes. It
    /// counts from the link-layer header; a cooked record replaces that
    /// header with its own, so the kernel must keep enough beyond the snap
    /// length for the longest link header, and the output then cuts the
    /// payload to the snap length.
    pub fn kernel_snaplen(&self, snaplen: u32) -> u32 {
        match self.link {
            LinkType::LinuxSll2 => snaplen.saturating_add(MAX_LINK_HEADER),
            LinkType::Ethernet | LinkType::Raw => snaplen,
        }
    }
}
