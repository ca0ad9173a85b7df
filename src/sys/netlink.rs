//! Netlink, the little of it the program speaks: one socket type and the
//! message and attribute layout shared by its two users, rtnetlink
//! (RTM_GETLINK's IFLA_XDP, below) and generic netlink (the netdev
//! family, in [`super::ethtool`]). Requests are answered for the calling
//! thread's network namespace.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub const NLMSG_HDRLEN: usize = 16;
pub const NLMSG_ERROR: u16 = 2;
pub const NLM_F_REQUEST: u16 = 1;
/// NLM_F_ACK (only [`set_xdp`], for tests, asks for an ack).
#[cfg(test)]
const NLM_F_ACK: u16 = 4;
const NLA_HDRLEN: usize = 4;
/// NLA_F_NESTED | NLA_F_NET_BYTEORDER: flags, not part of the type.
const NLA_TYPE_MASK: u16 = !(3 << 14);
/// NLA_F_NESTED.
#[cfg(test)]
const NLA_F_NESTED: u16 = 1 << 15;

/// A netlink socket of one protocol (NETLINK_ROUTE, NETLINK_GENERIC).
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
}

impl Socket {
    pub fn open(protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: socket() takes no pointers; the descriptor is checked and
        // owned by OwnedFd. The kernel binds it to a port on first send.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is fresh and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Socket { fd, seq: 0 })
    }

    /// The next sequence number, for a request about to be sent.
    pub fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }

    pub fn send(&self, msg: &[u8]) -> io::Result<()> {
        // SAFETY: msg is a live buffer of msg.len() bytes; a netlink socket
        // with no destination sends to the kernel.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one datagram into `buf` (retrying on EINTR); returns its
    /// length. With `dontwait`, what is queued already or EAGAIN: the
    /// kernel answers a "do" request before send() returns.
    pub fn recv(&self, buf: &mut [u8], dontwait: bool) -> io::Result<usize> {
        let flags = if dontwait { libc::MSG_DONTWAIT } else { 0 };
        loop {
            // SAFETY: buf is a live, writable buffer of buf.len() bytes.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    flags,
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// A message: the netlink header (`kind`, NLM_F_REQUEST | `flags`,
/// `seq`), then `body` (the family's header and its attributes).
pub fn message(kind: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let len = NLMSG_HDRLEN + body.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel's
    m.extend_from_slice(body);
    m
}

/// One attribute, padded to 4 bytes.
pub fn attr(kind: u16, payload: &[u8]) -> Vec<u8> {
    let mut a = Vec::with_capacity(NLA_HDRLEN + payload.len() + 3);
    a.extend_from_slice(&((NLA_HDRLEN + payload.len()) as u16).to_ne_bytes());
    a.extend_from_slice(&kind.to_ne_bytes());
    a.extend_from_slice(payload);
    a.resize(a.len().next_multiple_of(4), 0);
    a
}

/// The attributes in `buf`: (type without flags, payload).
pub fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        let len = u16::from_ne_bytes(buf.get(0..2)?.try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf.get(2..4)?.try_into().ok()?) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN {
            return None;
        }
        let payload = buf.get(NLA_HDRLEN..len)?;
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, payload))
    })
}

/// The payload of attribute `kind` among `attrs`.
pub fn find_attr(attrs_buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(attrs_buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// The messages in one received datagram: (type, sequence number,
/// payload after the netlink header). Stops at a malformed length.
pub fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, u32, &[u8])> {
    std::iter::from_fn(move || {
        let len = u32::from_ne_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let kind = u16::from_ne_bytes(buf.get(4..6)?.try_into().ok()?);
        let seq = u32::from_ne_bytes(buf.get(8..12)?.try_into().ok()?);
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = buf.get(len.next_multiple_of(4)..).unwrap_or(&[]);
        Some((kind, seq, payload))
    })
}

/// The errno an NLMSG_ERROR payload carries (0: an acknowledgement).
pub fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(..4)
        .map_or(0, |e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
}

// ---------------------------------------------------------------------------
// rtnetlink: a link's attributes (and, for tests, the old way of attaching
// XDP).

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
#[cfg(test)]
const RTM_SETLINK: u16 = 19;
pub const IFLA_XDP: u16 = 43;
#[cfg(test)]
const IFLA_XDP_FD: u16 = 1;
pub const IFLA_XDP_ATTACHED: u16 = 2;
#[cfg(test)]
const IFLA_XDP_FLAGS: u16 = 3;
pub const IFLA_XDP_PROG_ID: u16 = 4;
const IFINFOMSG_LEN: usize = 16;

/// An ifinfomsg for `ifindex`, then `attrs`.
fn ifinfo(ifindex: u32, attrs: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(IFINFOMSG_LEN + attrs.len());
    m.extend_from_slice(&[libc::AF_UNSPEC as u8, 0, 0, 0]);
    m.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    m.extend_from_slice(&[0; 8]); // flags, change
    m.extend_from_slice(attrs);
    m
}

/// Sends `msg` on a fresh NETLINK_ROUTE socket and returns the payload of
/// the answer of type `want` (an NLMSG_ERROR answer with error 0 is an
/// ack: empty payload).
fn route_transact(kind: u16, flags: u16, body: &[u8], want: u16) -> io::Result<Vec<u8>> {
    let mut sock = Socket::open(libc::NETLINK_ROUTE)?;
    let seq = sock.next_seq();
    sock.send(&message(kind, flags, seq, body))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = sock.recv(&mut buf, false)?;
        for (k, _, payload) in messages(&buf[..n]) {
            if k == NLMSG_ERROR {
                return match error_code(payload) {
                    0 => Ok(Vec::new()),
                    code => Err(io::Error::from_raw_os_error(-code)),
                };
            }
            if k == want {
                return Ok(payload.to_vec());
            }
        }
    }
}

/// The attributes of interface `ifindex` (RTM_NEWLINK's, after the
/// ifinfomsg).
pub fn get_link(ifindex: u32) -> io::Result<Vec<u8>> {
    let payload = route_transact(RTM_GETLINK, 0, &ifinfo(ifindex, &[]), RTM_NEWLINK)?;
    Ok(payload.get(IFINFOMSG_LEN..).unwrap_or(&[]).to_vec())
}

/// Attaches program `fd` (-1: detaches) the old way, through netlink
/// (what `ip link set dev X xdp ...` does): no link, so it stays until
/// detached. Only for tests of a foreign program.
#[cfg(test)]
pub fn set_xdp(ifindex: u32, fd: i32, flags: u32) -> io::Result<()> {
    let mut inner = attr(IFLA_XDP_FD, &fd.to_ne_bytes());
    inner.extend(attr(IFLA_XDP_FLAGS, &flags.to_ne_bytes()));
    let nested = attr(IFLA_XDP | NLA_F_NESTED, &inner);
    route_transact(
        RTM_SETLINK,
        NLM_F_ACK,
        &ifinfo(ifindex, &nested),
        NLMSG_ERROR,
    )
    .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_parse() {
        // IFLA_XDP { ATTACHED = 1 (u8, padded), PROG_ID = 42 } after an
        // unrelated attribute.
        let mut attrs = vec![8, 0, 3, 0, b'v', b'b', 0, 0];
        let inner = [5u8, 0, 2, 0, 1, 0, 0, 0, 8, 0, 4, 0, 42, 0, 0, 0];
        attrs.extend_from_slice(&((4 + inner.len()) as u16).to_ne_bytes());
        attrs.extend_from_slice(&(IFLA_XDP | NLA_F_NESTED).to_ne_bytes());
        attrs.extend_from_slice(&inner);
        let xdp = find_attr(&attrs, IFLA_XDP).unwrap();
        assert_eq!(find_attr(xdp, IFLA_XDP_ATTACHED), Some(&[1u8][..]));
        assert_eq!(
            find_attr(xdp, IFLA_XDP_PROG_ID),
            Some(&42u32.to_ne_bytes()[..])
        );
        assert_eq!(find_attr(&attrs[..6], IFLA_XDP), None);
    }
}
