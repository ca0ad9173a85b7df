//! Per-stream flow tables, the shared bound on their size, and the merge
//! of all streams' tables into one list of flows.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::join::{FlowJoin, Joining, Role};
use super::key::FlowKey;
use super::slots::{Found, SlotValue, Slots};
use crate::consumers::flows::Expectation;
use crate::packet::LinkType;
use crate::packet::Packet;

/// The default of `--flows-max`.
pub const DEFAULT_MAX_FLOWS: u64 = 1_000_000;

/// Memory one tracked flow costs at most, in bytes, for documenting
/// `--flows-max`. A table slot is 88 bytes (key and counters), in a table
/// between 3/8 and 3/4 full (117 to 235 bytes per flow), and while a table
/// doubles the old and new slot arrays exist together: up to 352 bytes per
/// flow at that moment. The merge at the end needs about 240 per flow
/// (sorted entries, then records), the tables being freed as it goes.
/// Measured (the ignored test `million_flows_memory`): 1,000,000 flows
/// over two streams peaked at 230 bytes per flow during the capture, 247
/// with the merge. So 1,000,000 flows (the default) cost up to about
/// 360 MB.
#[cfg(test)]
pub const MAX_BYTES_PER_FLOW: u64 = 360;

/// How many new flows the tables of one capture may still start: one
/// budget is shared by all workers' tables, so `--flows-max` bounds the
/// capture, not each stream. Claimed once per new flow, never per packet.
#[derive(Debug)]
pub struct FlowBudget {
    max: u64,
    left: AtomicU64,
}

impl FlowBudget {
    /// A budget of `max` flows (0 tracks none).
    pub fn new(max: u64) -> Arc<FlowBudget> {
        Arc::new(FlowBudget {
            max,
            left: AtomicU64::new(max),
        })
    }

    /// The limit it was made with.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Takes one slot; false once all are taken.
    fn claim(&self) -> bool {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Gives back `n` slots (flows that expired).
    fn release(&self, n: u64) {
        self.left.fetch_add(n, Ordering::Relaxed);
    }
}

/// What one stream saw of one flow.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Counts {
    packets: u64,
    bytes: u64,
    /// Time of the first packet (sec, nsec): which stream's hash came
    /// first when a flow's hash changed.
    first: (u32, u32),
    /// The flow hash of the first packet that had one; 0 for none yet.
    hash: u32,
    /// A later packet had another (non-zero) hash.
    hash_changed: bool,
    /// The directions its packets had: [`RECEIVED`], [`SENT`].
    directions: u8,
    /// The seconds of its last packet's time, modulo 2^16 (in what was
    /// padding: a flow costs no more for it), for `--flows-idle`.
    last: u16,
    /// `packets` when the live view last asked (see
    /// [`FlowTable::interval_top`]).
    base: u64,
}

impl SlotValue for Counts {
    #[inline]
    fn is_free(&self) -> bool {
        self.packets == 0
    }
}

/// How many packets ahead of its lookup a packet's slot is prefetched:
/// eight packets' work (a few hundred ns) covers a memory access; 2 to 16
/// were alike within the noise of the measurements.
const AHEAD: usize = 8;

/// A packet waiting for its lookup.
#[derive(Clone, Copy, Debug)]
struct Pending {
    key: FlowKey,
    h: u64,
    meta: Meta,
}

/// What a packet adds to its flow's counts, besides being one more.
#[derive(Clone, Copy, Debug)]
struct Meta {
    len: u32,
    hash: u32,
    sec: u32,
    nsec: u32,
    direction: u8,
}

impl Meta {
    #[inline(always)]
    fn of(p: &Packet<'_>, hash: u32) -> Meta {
        Meta {
            len: p.len,
            hash,
            sec: p.sec,
            nsec: p.nsec,
            direction: if p.pkttype == crate::sys::afpacket::PACKET_OUTGOING {
                SENT
            } else {
                RECEIVED
            },
        }
    }
}

/// A table's counts of packets, beside the flows'.
#[derive(Clone, Debug, Default)]
struct Tally {
    packets: u64,
    untracked_packets: u64,
    untracked_bytes: u64,
    /// The budget ran out: no more atomic operations for new flows.
    full: bool,
    /// Flows that entered the table.
    seen: u64,
    /// `--flows-idle`: flows removed for being idle, and their packets.
    expired: u64,
    expired_packets: u64,
}

/// The longest `--flows-idle`: a flow's last time is kept modulo 2^16
/// seconds, and a sweep must tell idle from wrapped.
pub const MAX_IDLE_SECONDS: u32 = 32_767;

/// A flow had received packets (any packet type but outgoing).
pub const RECEIVED: u8 = 1;
/// A flow had packets this host sent (PACKET_OUTGOING).
pub const SENT: u8 = 2;

/// The flows of one stream. Owned by that stream's worker: no locks on the
/// per-packet path; handed to [`merge`] at the end.
#[derive(Debug)]
pub struct FlowTable {
    stream: u32,
    link: LinkType,
    map: Slots<Counts>,
    /// Packets recorded but not yet looked up, oldest at `head`: their
    /// slots are being prefetched. Looked up in order, so the table sees
    /// the packets in the order they came.
    pending: [Pending; AHEAD],
    head: usize,
    waiting: usize,
    budget: Arc<FlowBudget>,
    tally: Tally,
    /// With `--repeats`: repeated copies per flow (see
    /// [`FlowTable::add_repeated`]), apart from the slots so that a flow
    /// costs nothing more without it.
    repeated: HashMap<FlowKey, u64>,
    /// Whether `--repeats` is on (the records then say their repeated
    /// copies, 0 included).
    counts_repeats: bool,
    /// `--flows-idle`, and the wall-clock second of the next sweep.
    idle: Option<u32>,
    next_sweep: u32,
    /// `--metrics`: the changes the join of all tables is told of.
    join: Option<Joining>,
}

/// Flows whose repeated copies one table keeps apart (a packet stuck or
/// looping is one flow; more than this at once is an attack or a storm,
/// and its copies are still in the stream's totals).
pub const MAX_REPEATING_FLOWS: usize = 4096;

impl FlowTable {
    /// The table of stream `stream` of a capture of link type `link`, new
    /// flows taken from `budget`. Stream numbers are the caller's (the
    /// stream's fanout member index, say): the outputs name them through
    /// the caller's label and id functions.
    pub fn new(stream: u32, link: LinkType, budget: Arc<FlowBudget>) -> FlowTable {
        FlowTable {
            stream,
            link,
            map: Slots::new(),
            pending: [Pending {
                key: FlowKey::NONE,
                h: 0,
                meta: Meta {
                    len: 0,
                    hash: 0,
                    sec: 0,
                    nsec: 0,
                    direction: 0,
                },
            }; AHEAD],
            head: 0,
            waiting: 0,
            budget,
            tally: Tally::default(),
            repeated: HashMap::new(),
            counts_repeats: false,
            idle: None,
            next_sweep: 0,
            join: None,
        }
    }

    /// The table of a capture whose tables are joined while it runs
    /// (`--metrics`: split and unexpected flows), as `role`.
    pub fn joined(mut self, join: Arc<FlowJoin>, role: Role) -> FlowTable {
        self.join = Some(Joining::new(join, role, self.stream));
        self
    }

    /// The table of a capture with `--repeats`.
    pub fn counting_repeats(mut self) -> FlowTable {
        self.counts_repeats = true;
        self
    }

    /// With `--repeats`: `n` copies of packet `p`'s flow became repeated
    /// copies (what the repeat window's `record` returned for it). Only
    /// for those packets: a second parse of the key, no work for the
    /// others.
    pub fn add_repeated(&mut self, p: &Packet<'_>, n: u64) {
        let key = FlowKey::of_packet(self.link, p);
        let room = self.repeated.len() < MAX_REPEATING_FLOWS;
        match self.repeated.get_mut(&key) {
            Some(c) => *c += n,
            None if room => {
                self.repeated.insert(key, n);
            }
            None => {}
        }
    }

    /// Counts `p`, whose flow hash is `hash` (tp_rxhash; 0 when the kernel
    /// gave none: skb_get_hash() never yields 0 for a hashed packet, the
    /// flow dissector maps a 0 hash to 1). The table sees it some packets
    /// later, or at [`FlowTable::settle`]: call that before reading the
    /// table.
    // Inlined into the consumers' loop, as Packets::next.
    //
    // A fresh key is read by reference, never moved at once: a move
    // copies it in 16-byte loads from the 8-byte stores that just made
    // it, which the cpu cannot forward from its store buffer, a stall per
    // packet. The worker_flows_per_packet_cost micro-benchmark, best
    // runs, ns per packet: 512 flows 22.6 with the move, 19.8 without;
    // 16,384 flows (the prefetching path) 29.7 and 26.9.
    #[inline(always)]
    pub fn record(&mut self, p: &Packet<'_>, hash: u32) {
        let meta = Meta::of(p, hash);
        let key = FlowKey::of_packet(self.link, p);
        let h = key.hash64();
        if self.map.cached() {
            // Nothing to wait for: the packets before were looked up too.
            debug_assert_eq!(self.waiting, 0);
            count(
                &mut self.map,
                &mut self.tally,
                &self.budget,
                &mut self.join,
                &key,
                h,
                meta,
            );
            return;
        }
        self.map.prefetch(h);
        let i = if self.waiting == AHEAD {
            // The oldest is looked up where it waits, and its place taken
            // after that: by then the stores that made the new key have
            // left the store buffer, and copying it costs no stall.
            self.look_up_oldest()
        } else {
            self.waiting += 1;
            (self.head + self.waiting - 1) % AHEAD
        };
        self.pending[i] = Pending { key, h, meta };
    }

    /// Before a ring block's `packets` packets are recorded: asks the cpu
    /// to bring in the whole table, if it is small (256 KiB at most)
    /// and has no more cache lines than the block has packets (so at most
    /// one prefetch per packet).
    ///
    /// A worker runs about once per ring block, after the kernel has spent
    /// milliseconds on the flood on the same cpu, and by then the table
    /// has mostly left the caches; the block's packets visit its slots in
    /// no order, and each flow's first visit waited on memory: 512 flows
    /// in a block of 3,276 packets, one packet in six. Asked for all at
    /// once, the lines come in together, in the time of a few misses.
    /// Measured with the ring's read-ahead (see [`crate::sys::ring::Packets`]),
    /// scripts/bench.sh `--cases fl,e`, six rounds alternated with the
    /// code before: `--flows` against tcpdump `-w /dev/null` 0.40-0.52
    /// (median 0.46) per round, before 0.41-0.63 (0.60).
    #[inline]
    pub fn warm(&self, packets: usize) {
        if self.map.cached() && self.map.bytes() / crate::sys::cache::LINE <= packets {
            self.map.warm();
        }
    }

    /// Looks up what [`FlowTable::record`] left waiting (the end of a
    /// ring block, say), and tells the join (`--metrics`) what changed.
    #[inline]
    pub fn settle(&mut self) {
        while self.waiting > 0 {
            self.look_up_oldest();
            self.waiting -= 1;
        }
        self.head = 0;
        if let Some(j) = &mut self.join {
            j.flush();
        }
    }

    /// With `--flows-idle`, before a ring block's packets: sweeps the idle
    /// flows out when a sweep is due (by the wall clock the packets are
    /// stamped with), so that the block's new flows find their room.
    #[inline]
    pub fn sweep_if_due(&mut self) {
        if let Some(idle) = self.idle {
            let now = crate::sys::host::clock_ns(crate::sys::host::Clock::Realtime);
            let now = (now / 1_000_000_000).max(0) as u32;
            if now >= self.next_sweep {
                self.expire(idle, now);
            }
        }
    }

    /// With `--flows-idle`, how often a sweep is due (a quarter of the
    /// idle time, at least a second): the longest a worker may sleep on an
    /// empty ring, or flows that went quiet with the rest of the traffic
    /// would never leave.
    pub fn sweep_period_ms(&self) -> Option<u32> {
        self.idle.map(|idle| (idle / 4).max(1) * 1000)
    }

    /// With `--flows-idle`: flows whose last packet is more than `idle`
    /// seconds older than the wall clock leave the table (their
    /// counts go into the expired totals, their budget back). Checked
    /// before each ring block ([`FlowTable::sweep_if_due`]), done every
    /// quarter of `idle`: a pass over the table.
    pub fn expiring(mut self, idle: u32) -> FlowTable {
        self.idle = Some(idle.clamp(1, MAX_IDLE_SECONDS));
        self
    }

    /// A copy of the (settled) table's flows and counts, not joined, for
    /// merging while the table goes on.
    #[cfg(test)]
    pub fn copy(&self, budget: &Arc<FlowBudget>) -> FlowTable {
        assert_eq!(self.waiting, 0);
        let mut t = FlowTable::new(self.stream, self.link, Arc::clone(budget));
        t.map = self.map.clone();
        t.tally = self.tally.clone();
        t.idle = self.idle;
        t.counts_repeats = self.counts_repeats;
        t
    }

    /// Sweeps the flows idle for more than `idle` seconds at `now_secs`
    /// out, as a sweep due then would.
    #[cfg(test)]
    pub fn expire_at(&mut self, idle: u32, now_secs: u32) {
        self.settle();
        self.expire(idle, now_secs);
    }

    fn expire(&mut self, idle: u32, now_secs: u32) {
        let now = now_secs as u16;
        let (mut flows, mut packets) = (0u64, 0u64);
        // The join locked once for the sweep, after what came before.
        let mut joined = self.join.as_mut().map(|j| {
            j.flush();
            j.leaving()
        });
        self.map.retain(|key, c| {
            let keep = u32::from(now.wrapping_sub(c.last)) <= idle;
            if !keep {
                flows += 1;
                packets += c.packets;
                if let Some(j) = &mut joined {
                    j.leave(key);
                }
            }
            keep
        });
        drop(joined);
        self.tally.expired += flows;
        self.tally.expired_packets += packets;
        self.budget.release(flows);
        self.tally.full = false;
        self.next_sweep = now_secs + (idle / 4).max(1);
    }

    /// Counts the oldest waiting packet, read where it waits; returns its
    /// place, now free.
    #[inline(always)]
    fn look_up_oldest(&mut self) -> usize {
        let i = self.head;
        let q = &self.pending[i];
        count(
            &mut self.map,
            &mut self.tally,
            &self.budget,
            &mut self.join,
            &q.key,
            q.h,
            q.meta,
        );
        self.head = (i + 1) % AHEAD;
        i
    }

    /// Counts one received packet of `key`, `len` bytes on the wire, at
    /// time `ts` (sec, nsec), at once.
    #[cfg(test)]
    pub fn record_key(&mut self, key: FlowKey, len: u32, hash: u32, ts: (u32, u32)) {
        self.record_key_from(key, len, hash, ts, RECEIVED);
    }

    /// As [`FlowTable::record_key`], a packet of `direction` ([`RECEIVED`]
    /// or [`SENT`]).
    #[cfg(test)]
    pub fn record_key_from(
        &mut self,
        key: FlowKey,
        len: u32,
        hash: u32,
        ts: (u32, u32),
        direction: u8,
    ) {
        self.settle();
        let meta = Meta {
            len,
            hash,
            sec: ts.0,
            nsec: ts.1,
            direction,
        };
        count(
            &mut self.map,
            &mut self.tally,
            &self.budget,
            &mut self.join,
            &key,
            key.hash64(),
            meta,
        );
        if let Some(j) = &mut self.join {
            j.flush();
        }
    }

    /// The `k` flows with the most packets since the last call (the live
    /// view's interval), with those packet counts; the interval starts
    /// anew. A pass over the table: called once per interval, never per
    /// packet.
    pub fn interval_top(&mut self, k: usize) -> Vec<(FlowKey, u64)> {
        self.settle();
        let mut top: Vec<(FlowKey, u64)> = Vec::with_capacity(k + 1);
        for (key, c) in self.map.iter_mut() {
            let n = c.packets - c.base;
            c.base = c.packets;
            if n == 0 || (top.len() == k && top.last().is_some_and(|l| l.1 >= n)) {
                continue;
            }
            let at = top.partition_point(|t| t.1 >= n);
            top.insert(at, (*key, n));
            top.truncate(k);
        }
        top
    }

    /// The stream this table counts.
    #[cfg(test)]
    pub fn stream(&self) -> u32 {
        self.stream
    }

    /// Distinct flows tracked.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Flows that entered the table so far (those that expired included).
    pub fn seen(&self) -> u64 {
        self.tally.seen
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.map.len() == 0
    }

    /// Packets recorded, tracked or not.
    #[cfg(test)]
    pub fn packets(&self) -> u64 {
        self.tally.packets
    }

    /// Packets of flows that found the budget spent.
    pub fn untracked_packets(&self) -> u64 {
        self.tally.untracked_packets
    }
}

/// Counts one packet of `key` (hash `h`) in `map`, or as untracked once
/// `budget` is spent; tells `join` of a new flow, a flow's first hash and
/// a direction new to it (what can change where a flow is expected).
#[inline(always)]
fn count(
    map: &mut Slots<Counts>,
    tally: &mut Tally,
    budget: &FlowBudget,
    join: &mut Option<Joining>,
    key: &FlowKey,
    h: u64,
    m: Meta,
) {
    tally.packets += 1;
    match map.find(key, h) {
        Found::At(i) => {
            let c = map.value_mut(i);
            c.packets += 1;
            c.last = m.sec as u16;
            c.bytes += u64::from(m.len);
            let mut changed = c.directions & m.direction == 0;
            c.directions |= m.direction;
            if m.hash != c.hash && m.hash != 0 {
                if c.hash == 0 {
                    c.hash = m.hash;
                    changed = true;
                } else {
                    c.hash_changed = true;
                }
            }
            if changed {
                if let Some(j) = join {
                    j.set(key, c.hash, c.first, c.directions);
                }
            }
        }
        Found::Free(i) => {
            if !tally.full && budget.claim() {
                tally.seen += 1;
                let counts = Counts {
                    packets: 1,
                    bytes: u64::from(m.len),
                    first: (m.sec, m.nsec),
                    hash: m.hash,
                    hash_changed: false,
                    directions: m.direction,
                    last: m.sec as u16,
                    base: 0,
                };
                map.insert(i, *key, h, counts);
                if let Some(j) = join {
                    j.set(key, m.hash, counts.first, m.direction);
                }
            } else {
                tally.full = true;
                tally.untracked_packets += 1;
                tally.untracked_bytes += u64::from(m.len);
            }
        }
    }
}

/// The flow hash a flow seen on several streams is known by, and its
/// first time: folded over its streams' parts in table order, by [`merge`]
/// for the report and by the join ([`super::join`]) for the metrics, so
/// that both predict the flow's stream from the same hash.
#[derive(Clone, Copy, Debug)]
pub(super) struct HashFold {
    /// The hash of the earliest stream's first packet with one, roughly:
    /// where the streams' hashes differ, a later table's replaces an
    /// earlier one's when its stream saw the flow first.
    pub hash: Option<u32>,
    pub first: (u32, u32),
    /// The streams' hashes differ.
    pub changed: bool,
}

impl HashFold {
    pub fn new(hash: Option<u32>, first: (u32, u32)) -> HashFold {
        HashFold {
            hash,
            first,
            changed: false,
        }
    }

    /// The next table's part: its hash (None for none) and first time.
    pub fn add(&mut self, hash: Option<u32>, first: (u32, u32)) {
        match (self.hash, hash) {
            (Some(a), Some(b)) if a != b => {
                self.changed = true;
                if first < self.first {
                    self.hash = hash;
                }
            }
            (None, Some(_)) => self.hash = hash,
            _ => {}
        }
        self.first = self.first.min(first);
    }
}

/// One flow over all streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub key: FlowKey,
    pub packets: u64,
    pub bytes: u64,
    /// (stream, packets) for each stream that saw the flow, in the order
    /// the tables were merged (stream order).
    pub streams: Vec<(u32, u64)>,
    /// The flow hash of its earliest packet that had one.
    pub hash: Option<u32>,
    /// Packets of the flow had different hashes.
    pub hash_changed: bool,
    /// Where it was expected to land (from [`crate::steering`]); None
    /// until the caller predicts it. The outputs show it when present.
    pub expected: Option<Expectation>,
    /// Time of the first packet (sec, nsec).
    pub first: (u32, u32),
    /// The directions of its packets: [`RECEIVED`], [`SENT`] or both.
    pub directions: u8,
    /// With `--repeats` ([`Flows::repeats`]): its copies of repeating
    /// packets.
    pub repeated: u64,
}

impl FlowRecord {
    /// Seen on more than one stream.
    pub fn split(&self) -> bool {
        self.streams.len() > 1
    }

    /// Some packets landed off the expected stream.
    pub fn unexpected(&self) -> bool {
        match self.expected {
            Some(Expectation {
                stream: Some(s), ..
            }) => self.streams.iter().any(|&(id, _)| id != s),
            _ => false,
        }
    }
}

/// What one stream carried, for the summary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFlows {
    pub stream: u32,
    /// Distinct flows tracked on it.
    pub flows: u64,
    /// Packets recorded on it, tracked or not.
    pub packets: u64,
    /// Of those, packets of flows past the limit.
    pub untracked_packets: u64,
}

/// All streams' flows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flows {
    /// In no particular order; [`Flows::rows`] gives display order.
    pub records: Vec<FlowRecord>,
    /// In the order the tables were merged.
    pub streams: Vec<StreamFlows>,
    pub untracked_packets: u64,
    pub untracked_bytes: u64,
    /// The `--flows-max` in force.
    pub max_flows: u64,
    /// `--repeats` was on: the records say their repeated copies.
    pub repeats: bool,
    /// `--flows-idle`: (seconds, flows that expired, their packets).
    pub expired: Option<(u32, u64, u64)>,
    /// With `--drops`: the kernel's drops per flow (apart from the
    /// records, which a flow then costs nothing more without it).
    pub drops: Option<super::drops::FlowDrops>,
    /// With `--path`: the steering matrices of all flows.
    pub path: Option<super::path::PathSummary>,
}

/// Merges the tables of all streams, given in stream order.
///
/// By sorting rather than through another hash map: the tables' entries
/// go into one vector (each table freed once it is emptied), sorted by
/// key and table, and each run of one key becomes a record. At the peak
/// that is a vector entry (88 bytes) and a record (120 bytes and its
/// stream list) per flow, less than an index map on top of the records.
pub fn merge(tables: Vec<FlowTable>) -> Flows {
    let mut flows = Flows {
        records: Vec::new(),
        streams: Vec::with_capacity(tables.len()),
        untracked_packets: 0,
        untracked_bytes: 0,
        max_flows: tables.first().map_or(0, |t| t.budget.max()),
        repeats: tables.first().is_some_and(|t| t.counts_repeats),
        expired: tables.first().and_then(|t| t.idle).map(|idle| {
            let flows = tables.iter().map(|t| t.tally.expired).sum();
            let packets = tables.iter().map(|t| t.tally.expired_packets).sum();
            (idle, flows, packets)
        }),
        drops: None,
        path: None,
    };
    let most: usize = tables.iter().map(|t| t.map.len()).sum();
    let mut entries: Vec<(FlowKey, u32, Counts)> = Vec::with_capacity(most);
    let mut repeated: Option<HashMap<FlowKey, u64>> = None;
    for (i, mut t) in tables.into_iter().enumerate() {
        t.settle();
        if t.counts_repeats {
            let all = repeated.get_or_insert_with(HashMap::new);
            for (k, n) in t.repeated.drain() {
                *all.entry(k).or_default() += n;
            }
        }
        flows.streams.push(StreamFlows {
            stream: t.stream,
            flows: t.map.len() as u64,
            packets: t.tally.packets,
            untracked_packets: t.tally.untracked_packets,
        });
        flows.untracked_packets += t.tally.untracked_packets;
        flows.untracked_bytes += t.tally.untracked_bytes;
        entries.extend(t.map.into_entries().map(|(k, c)| (k, i as u32, c)));
    }
    // Table position breaks ties: a record lists its streams in order.
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let split = entries.windows(2).filter(|w| w[0].0 == w[1].0).count();
    flows.records.reserve_exact(entries.len() - split);
    for (key, i, c) in entries {
        let stream = flows.streams[i as usize].stream;
        let hash = (c.hash != 0).then_some(c.hash);
        match flows.records.last_mut() {
            Some(r) if r.key == key => {
                r.packets += c.packets;
                r.bytes += c.bytes;
                r.streams.push((stream, c.packets));
                let mut fold = HashFold {
                    hash: r.hash,
                    first: r.first,
                    changed: r.hash_changed || c.hash_changed,
                };
                fold.add(hash, c.first);
                (r.hash, r.first, r.hash_changed) = (fold.hash, fold.first, fold.changed);
                r.directions |= c.directions;
            }
            _ => {
                flows.records.push(FlowRecord {
                    key,
                    packets: c.packets,
                    bytes: c.bytes,
                    streams: vec![(stream, c.packets)],
                    hash,
                    hash_changed: c.hash_changed,
                    expected: None,
                    first: c.first,
                    directions: c.directions,
                    repeated: repeated
                        .as_ref()
                        .and_then(|r| r.get(&key).copied())
                        .unwrap_or(0),
                });
            }
        }
    }
    flows
}

impl Flows {
    /// Flows captured (not those only seen dropped by the kernel, which
    /// [`Flows::add_drops`] adds with no packet).
    pub fn seen_count(&self) -> usize {
        self.records.iter().filter(|r| r.packets > 0).count()
    }

    /// Flows seen on more than one stream.
    pub fn split_count(&self) -> usize {
        self.records.iter().filter(|r| r.split()).count()
    }

    /// Flows whose hash changed.
    pub fn hash_changed_count(&self) -> usize {
        self.records.iter().filter(|r| r.hash_changed).count()
    }

    /// Flows that landed off their expected stream.
    pub fn unexpected_count(&self) -> usize {
        self.records.iter().filter(|r| r.unexpected()).count()
    }

    /// Whether expectations were made (an interface's steering was read).
    pub fn expectations_made(&self) -> bool {
        self.records.iter().any(|r| r.expected.is_some())
    }

    /// Flows with an expected stream: those checked for being off it.
    pub fn predicted_count(&self) -> usize {
        self.records
            .iter()
            .filter(|r| r.expected.is_some_and(|e| e.stream.is_some()))
            .count()
    }

    /// Packets recorded on all streams.
    pub fn packets(&self) -> u64 {
        self.streams.iter().map(|s| s.packets).sum()
    }

    /// With `--path`: what the probes saw of flow `r` (kept apart from
    /// the records, which stay as small as without it).
    pub fn path_of(&self, r: &FlowRecord) -> Option<&super::path::FlowPath> {
        self.path.as_ref()?.flows.get(&r.key)
    }

    /// With `--path`: a steering stage did not do for `r` what its
    /// configuration says.
    pub fn mismatched(&self, r: &FlowRecord) -> bool {
        self.path_of(r).is_some_and(|p| !p.mismatches.is_empty())
    }

    /// Flows a steering stage was off for (`--path`).
    pub fn mismatched_count(&self) -> usize {
        self.records.iter().filter(|r| self.mismatched(r)).count()
    }

    /// The flows to list, in display order: unexpected ones (and with
    /// `--path` those a steering stage was off for), then split ones,
    /// then those the kernel dropped packets of (all of these, whatever
    /// `limit` is), then the others, each group biggest first (packets,
    /// then bytes, then key, so the order is deterministic); at most
    /// `limit` rows unless the flagged ones alone are more; `limit` 0
    /// lists all.
    pub fn rows(&self, limit: usize) -> Vec<&FlowRecord> {
        // 0 unexpected, 1 split, 2 with drops, 3 the others.
        let group = |r: &FlowRecord| {
            let off = r.unexpected() || self.mismatched(r);
            match (off, r.split(), !self.drops_of(r).is_empty()) {
                (true, _, _) => 0u8,
                (false, true, _) => 1,
                (false, false, true) => 2,
                (false, false, false) => 3,
            }
        };
        let mut rows: Vec<(u8, &FlowRecord)> = self.records.iter().map(|r| (group(r), r)).collect();
        rows.sort_unstable_by(|(ga, a), (gb, b)| {
            ga.cmp(gb)
                .then(b.packets.cmp(&a.packets))
                .then(b.bytes.cmp(&a.bytes))
                .then(a.key.cmp(&b.key))
        });
        if limit > 0 {
            let flagged = rows.iter().take_while(|(g, _)| *g < 3).count();
            rows.truncate(limit.max(flagged));
        }
        rows.into_iter().map(|(_, r)| r).collect()
    }
}
