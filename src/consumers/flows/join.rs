//! `--metrics` with `--flows`: the streams' flow tables joined while the
//! capture runs, so that a scrape can say how many tracked flows are
//! split (on more than one stream) and unexpected (off the stream the
//! steering configuration predicts), the numbers [`super::merge`] and
//! the steering's prediction give the report at the end.
//!
//! Each stream's table stays its worker's alone: the per-packet path
//! takes no lock and writes nothing shared. A table notes the changes
//! that can move those numbers, all rare next to packets: a flow entering
//! it, a flow's first flow hash, a direction it had not seen, a flow
//! expiring (`--flows-idle`). It hands them over once per ring block
//! ([`super::FlowTable::settle`]), under one lock taken only when there is
//! something to hand over; the sender tap's tables (the queue vantage's
//! transmitted flows, see `source::afpacket::tap`) add the cpus that sent
//! each flow. Each flow's part in the two counts is worked out again when
//! its entry changes, and the counts kept in atomics a scrape reads
//! without the lock.
//!
//! One entry per distinct tracked flow (and per flow the sender tap saw):
//! bounded, as the tables are, by `--flows-max`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::key::FlowKey;
use super::table::HashFold;

/// The stream the steering configuration predicts for a flow of this key,
/// flow hash (that of its earliest packet with one), directions
/// ([`super::RECEIVED`], [`super::SENT`]) and sending cpus (where the
/// sender tap learns them): None where nothing is predicted. The same
/// function the report's prediction uses, so that both agree.
pub type Predict = dyn Fn(&FlowKey, Option<u32>, u8, Option<&[u32]>) -> Option<u32> + Send + Sync;

/// What a table is to the join.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The table of the captured stream in slot `pos` (the order the
    /// tables are merged in at the end).
    Captured(u32),
    /// A sender tap's table: its stream is the cpu that sent its flows.
    Sender,
}

/// The tables of one capture, joined.
pub struct FlowJoin {
    flows: Mutex<HashMap<FlowKey, Entry>>,
    split: AtomicU64,
    unexpected: AtomicU64,
    predict: Option<Box<Predict>>,
}

impl std::fmt::Debug for FlowJoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowJoin")
            .field("split", &self.split)
            .field("unexpected", &self.unexpected)
            .field("predicts", &self.predict.is_some())
            .finish_non_exhaustive()
    }
}

/// One flow over all tables.
#[derive(Debug, Default)]
struct Entry {
    /// Each captured stream's part, in slot order.
    parts: Vec<Part>,
    /// The cpus a sender tap saw it sent from, ascending.
    senders: Vec<u32>,
    /// Whether it counts now as split, and as unexpected.
    counted: (bool, bool),
}

/// What one captured stream's table holds of a flow, as far as the
/// prediction and the counts need it.
#[derive(Clone, Copy, Debug)]
struct Part {
    pos: u32,
    stream: u32,
    hash: Option<u32>,
    first: (u32, u32),
    directions: u8,
}

impl FlowJoin {
    /// A join for a capture whose flows are compared with `predict` (None:
    /// no steering was read, and unexpected flows are not counted).
    pub fn new(predict: Option<Box<Predict>>) -> Arc<FlowJoin> {
        Arc::new(FlowJoin {
            flows: Mutex::new(HashMap::new()),
            split: AtomicU64::new(0),
            unexpected: AtomicU64::new(0),
            predict,
        })
    }

    /// Tracked flows on more than one stream now.
    pub fn split(&self) -> u64 {
        self.split.load(Ordering::Relaxed)
    }

    /// Tracked flows off their predicted stream now; None without a
    /// prediction.
    pub fn unexpected(&self) -> Option<u64> {
        self.predict
            .as_ref()
            .map(|_| self.unexpected.load(Ordering::Relaxed))
    }

    /// Entries held (flows tracked on some stream, or seen by the sender
    /// tap).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<FlowKey, Entry>> {
        // A worker that panicked holding it left whole entries (each
        // change is made before the counts follow it): go on.
        self.flows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Works `entry`'s counts out again after a change, and moves the
    /// totals by the difference.
    fn recount(&self, key: &FlowKey, entry: &mut Entry) {
        let split = entry.parts.len() > 1;
        let unexpected = match (&self.predict, entry.parts.first()) {
            (Some(predict), Some(first)) => {
                let mut fold = HashFold::new(first.hash, first.first);
                let mut directions = first.directions;
                for p in &entry.parts[1..] {
                    fold.add(p.hash, p.first);
                    directions |= p.directions;
                }
                let senders = (!entry.senders.is_empty()).then_some(&entry.senders[..]);
                predict(key, fold.hash, directions, senders)
                    .is_some_and(|s| entry.parts.iter().any(|p| p.stream != s))
            }
            _ => false,
        };
        let move_by = |total: &AtomicU64, was: bool, now: bool| match (was, now) {
            (false, true) => {
                total.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                total.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        };
        move_by(&self.split, entry.counted.0, split);
        move_by(&self.unexpected, entry.counted.1, unexpected);
        entry.counted = (split, unexpected);
    }
}

/// A change a table hands over.
#[derive(Clone, Copy, Debug)]
enum Change {
    /// The flow is in the table, with this hash, first time and
    /// directions (new, or one of them changed).
    Set {
        hash: u32,
        first: (u32, u32),
        directions: u8,
    },
    /// The flow left the table (`--flows-idle`).
    Left,
}

/// A table's side of the join: its role, and the changes of the ring
/// block being read.
#[derive(Debug)]
pub(super) struct Joining {
    join: Arc<FlowJoin>,
    role: Role,
    /// The table's stream (a sender tap's: the cpu).
    stream: u32,
    changes: Vec<(FlowKey, Change)>,
}

impl Joining {
    pub fn new(join: Arc<FlowJoin>, role: Role, stream: u32) -> Joining {
        Joining {
            join,
            role,
            stream,
            changes: Vec::new(),
        }
    }

    /// Notes that the table holds `key` with these values (at most a few
    /// times per flow: when it enters, when its first hash or a new
    /// direction comes).
    #[inline]
    pub fn set(&mut self, key: &FlowKey, hash: u32, first: (u32, u32), directions: u8) {
        self.changes.push((
            *key,
            Change::Set {
                hash,
                first,
                directions,
            },
        ));
    }

    /// Hands the noted changes to the join (once per ring block; no lock
    /// when there are none).
    #[inline]
    pub fn flush(&mut self) {
        if !self.changes.is_empty() {
            self.flush_now();
        }
    }

    fn flush_now(&mut self) {
        let mut changes = std::mem::take(&mut self.changes);
        let mut joined = self.leaving();
        for (key, change) in changes.drain(..) {
            joined.apply(&key, change);
        }
        drop(joined);
        // The buffer's room is kept for the next block.
        self.changes = changes;
    }

    /// The join locked, for flows leaving the table one by one (a sweep
    /// of idle flows), after the changes noted before.
    pub fn leaving(&mut self) -> Joined<'_> {
        Joined {
            flows: self.join.lock(),
            join: &self.join,
            role: self.role,
            stream: self.stream,
        }
    }
}

/// The join, locked by one table.
pub(super) struct Joined<'a> {
    flows: MutexGuard<'a, HashMap<FlowKey, Entry>>,
    join: &'a FlowJoin,
    role: Role,
    stream: u32,
}

impl Joined<'_> {
    /// `key` left the table.
    pub fn leave(&mut self, key: &FlowKey) {
        self.apply(key, Change::Left);
    }

    fn apply(&mut self, key: &FlowKey, change: Change) {
        if matches!(change, Change::Left) && !self.flows.contains_key(key) {
            return;
        }
        let entry = self.flows.entry(*key).or_default();
        match (self.role, change) {
            (
                Role::Captured(pos),
                Change::Set {
                    hash,
                    first,
                    directions,
                },
            ) => {
                let part = Part {
                    pos,
                    stream: self.stream,
                    hash: (hash != 0).then_some(hash),
                    first,
                    directions,
                };
                match entry.parts.binary_search_by_key(&pos, |p| p.pos) {
                    Ok(i) => entry.parts[i] = part,
                    Err(i) => entry.parts.insert(i, part),
                }
            }
            (Role::Captured(pos), Change::Left) => {
                entry.parts.retain(|p| p.pos != pos);
            }
            (Role::Sender, Change::Set { .. }) => {
                if let Err(i) = entry.senders.binary_search(&self.stream) {
                    entry.senders.insert(i, self.stream);
                }
            }
            // A sender tap's tables never expire their flows.
            (Role::Sender, Change::Left) => {}
        }
        self.join.recount(key, entry);
        if entry.parts.is_empty() && entry.senders.is_empty() {
            self.flows.remove(key);
        }
    }
}
