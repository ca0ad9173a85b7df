//! The source of a capture's packets: the fanout group of AF_PACKET
//! sockets, one member per possible stream, with a TPACKET_V3 ring for
//! each captured stream. Built with the setup race closed (see
//! [`build_group`]).

use std::io;

use crate::error::{Error, Result, Why};
use crate::source::afpacket::fanout;
use crate::source::Target;
use crate::sys::afpacket::{FanoutMode, Filter, PacketSocket, PACKET_FANOUT_MAX};
use crate::sys::bpf::Program;
use crate::sys::ring::{Geometry, Ring};
use crate::vantage::{Plan, Route};

/// One socket per possible stream, in one fanout group, member i =
/// stream i (cpu i, queue i, node i).
pub struct Group {
    pub sockets: Vec<PacketSocket>,
    /// The eBPF fanout program, if the route has one. The group holds its
    /// own reference once it is set; this one only lives as long.
    _program: Option<Program>,
}

/// Builds the group with the setup race closed: every socket drops all
/// packets from before bind() until the group is complete, so nothing that
/// arrived while `cpu % members` still pointed at the wrong member is ever
/// seen. Only then do the captured streams get their real filter.
pub fn build_group(
    plan: &Plan,
    target: &Target,
    geometry: Geometry,
    say: &dyn Fn(String),
) -> Result<(Group, Vec<Ring>)> {
    let members = plan.members;
    let program = fanout::program(plan.route)?;
    let mode = match plan.route {
        Route::Cpu => FanoutMode::Cpu,
        Route::Queue { .. } | Route::Numa => FanoutMode::Ebpf,
    };
    let mut sockets = Vec::with_capacity(members as usize);
    let mut rings: Vec<Option<Ring>> = plan.streams.iter().map(|_| None).collect();
    let mut id = 0u16;
    for member in 0..members {
        let sock = PacketSocket::new().map_err(|e| Error::os("error creating packet socket", e))?;
        sock.attach_filter(&Filter::drop_all())
            .map_err(|e| Error::os("error attaching filter", e))?;
        if let Some(slot) = plan.streams.iter().position(|s| s.member == member) {
            // Streams that are not captured need no ring: their member only
            // holds stream i's place in the group and drops everything.
            let ring = Ring::new(&sock, geometry).map_err(|e| {
                Error::os(
                    format!(
                        "error setting up the ring for {} ({} blocks of {} KiB)",
                        plan.streams[slot].label(),
                        geometry.blocks,
                        geometry.block_size / 1024
                    ),
                    e,
                )
            })?;
            rings[slot] = Some(ring);
        }
        sock.bind(target.ifindex)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENODEV) | Some(libc::ENXIO) => Error::Interface {
                    name: target.label.clone(),
                    why: Why(e),
                    hint: String::new(),
                },
                _ => Error::os(format!("error binding to {}", target.label), e),
            })?;
        if member == 0 {
            id = join_first(&sock, mode, members)?;
            if let Some(p) = &program {
                sock.set_fanout_program(p)
                    .map_err(|e| Error::os("error setting the eBPF fanout program", e))?;
            }
        } else {
            sock.join_fanout(id, mode, false, members)
                .map_err(|e| fanout_error(e, members))?;
        }
        sockets.push(sock);
    }
    let by = match plan.route {
        Route::Cpu => "by cpu",
        Route::Queue { .. } => "by queue, eBPF",
        Route::Numa => "by numa node, eBPF",
    };
    say(format!("fanout group id {id} ({by}, {members} members)"));
    let group = Group {
        sockets,

        _program: program,
    };
    // The rings of the captured streams, in the plan's order.
    Ok((group, rings.into_iter().flatten().collect()))
}

/// Creates the group with the first socket. The kernel picks a free id
/// (PACKET_FANOUT_FLAG_UNIQUEID, Linux 4.16+), so a group another program
/// holds is never joined by mistake, and two captures never share one.
/// There is no fallback to guessing ids: a guessed id that another program
/// holds with the same settings would be joined silently.
fn join_first(sock: &PacketSocket, mode: FanoutMode, members: u32) -> Result<u16> {
    sock.join_fanout(0, mode, true, members)
        .map_err(|e| fanout_error(e, members))?;
    sock.fanout_id()
        .map_err(|e| Error::os("error reading fanout group id", e))
}

fn fanout_error(e: io::Error, members: u32) -> Error {
    let hint = if members > PACKET_FANOUT_MAX {
        format!(
            " (this capture needs {members} fanout members, more than a group holds on this \
             kernel, {PACKET_FANOUT_MAX}; Linux 5.13+ raises the limit)"
        )
    } else {
        match e.raw_os_error() {
            // The socket is not running (its interface went down meanwhile),
            // or the kernel predates PACKET_FANOUT_FLAG_UNIQUEID.
            Some(libc::EINVAL) => " (is the interface up? Linux 4.16 or later is needed)".into(),
            Some(libc::ENOMEM) => " (no free fanout group id)".into(),
            _ => String::new(),
        }
    };
    Error::Message(format!("error joining fanout group: {}{hint}", Why(e)))
}

/// Refuses rings that would take more than half the memory available: the
/// kernel allocates ring blocks in ways that wake the OOM killer rather
/// than fail, and on a production machine it may kill something else.
pub fn check_memory(geometry: Geometry, plan: &Plan) -> Result<()> {
    let streams = plan.streams.len();
    let need = geometry.bytes() as u64 * streams as u64;
    let Some(available) = mem_available() else {
        return Ok(());
    };
    if need > available / 2 {
        return Err(Error::Message(format!(
            "error setting up rings: {streams} x {} = {} is more than half of the available \
             memory ({}); use a smaller -B or fewer {} (-l)",
            crate::error::mib(geometry.bytes() as u64),
            crate::error::mib(need),
            crate::error::mib(available),
            plan.vantage.plural()
        )));
    }
    Ok(())
}

/// MemAvailable from /proc/meminfo, in bytes.
fn mem_available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
