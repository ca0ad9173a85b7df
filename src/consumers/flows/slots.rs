//! The hash table under a stream's flow table: open addressing with
//! linear probing over one array of slots, each a key with its counts, at
//! most 3/4 full.
//!
//! Ours rather than std's HashMap for one reason: where a key's slot lies
//! is known as soon as its hash is, so [`super::FlowTable`] can prefetch
//! it several packets before it looks (std's map does not expose where it
//! would look). Once a capture's flows outgrow the caches, and the kernel
//! streaming packets through the ring on the same cpu evicts them sooner,
//! a lookup waits on memory. Measured on a 2-cpu VM (scripts/bench.sh
//! --cases fl, runs alternated, cpu ns per packet): with 32,256 flows per
//! cpu (--flows 64512) 219 to 319 with std's map, 239 to 267 with this
//! table and no prefetch, 189 to 197 with the prefetch; with 8,192 per cpu
//! 173 to 221 with std's map, 129 to 158 with this table; at 512 per cpu
//! all alike (about 60).

use super::key::FlowKey;
use crate::sys::cache::{prefetch, prefetch_range_l2};

/// A slot is free while its value is the zero value (a tracked flow has
/// at least one packet, so its counts are never all zero).
pub(super) trait SlotValue: Copy + Default {
    fn is_free(&self) -> bool;
}

#[derive(Clone, Debug)]
pub(super) struct Slots<V> {
    keys_values: Vec<(FlowKey, V)>,
    len: usize,
}

/// Where a lookup ended: the key's slot, or the free slot it would take.
pub(super) enum Found {
    At(usize),
    Free(usize),
}

/// Smallest table: a few flows need no more.
const MIN_SLOTS: usize = 16;

impl<V: SlotValue> Slots<V> {
    pub fn new() -> Slots<V> {
        Slots {
            keys_values: Vec::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Small enough to stay in a cpu's caches (256 KiB: a quarter of a
    /// small L2), where a prefetch would only cost.
    #[inline]
    pub fn cached(&self) -> bool {
        self.bytes() <= 256 << 10
    }

    #[inline]
    fn mask(&self) -> usize {
        self.keys_values.len().wrapping_sub(1)
    }

    /// Asks the cpu to bring in the slots where a key of hash `h` would be
    /// looked for: its home slot and the next (a slot may straddle two
    /// cache lines, and a lookup may probe on).
    #[inline]
    pub fn prefetch(&self, h: u64) {
        if let Some(first) = self.keys_values.get(h as usize & self.mask()) {
            let p = first as *const (FlowKey, V) as *const u8;
            prefetch(p);
            prefetch(p.wrapping_add(std::mem::size_of::<(FlowKey, V)>() * 2 - 1));
        }
    }

    /// Bytes of the slot array: what [`Slots::warm`] brings in.
    #[inline]
    pub fn bytes(&self) -> usize {
        self.keys_values.len() * std::mem::size_of::<(FlowKey, V)>()
    }

    /// Asks the cpu to bring the whole slot array into its second-level
    /// cache (see [`super::FlowTable::warm`]).
    #[inline]
    pub fn warm(&self) {
        prefetch_range_l2(self.keys_values.as_ptr().cast(), self.bytes());
    }

    /// Looks `key` (of hash `h`) up.
    #[inline]
    pub fn find(&self, key: &FlowKey, h: u64) -> Found {
        let mask = self.mask();
        if self.keys_values.is_empty() {
            return Found::Free(0);
        }
        let mut i = h as usize & mask;
        loop {
            let (k, v) = &self.keys_values[i];
            // The key first: a free slot holds FlowKey::NONE, which no
            // packet makes, so a hit needs no look at the value.
            if k == key {
                return Found::At(i);
            }
            if v.is_free() {
                return Found::Free(i);
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    pub fn value_mut(&mut self, i: usize) -> &mut V {
        &mut self.keys_values[i].1
    }

    /// Puts `key` (hash `h`, not in the table) with `value` (not free)
    /// into `free`, the slot [`Slots::find`] gave, growing first if the
    /// table would be more than 3/4 full.
    pub fn insert(&mut self, free: usize, key: FlowKey, h: u64, value: V) {
        debug_assert!(!value.is_free());
        let mut at = free;
        if (self.len + 1) * 4 > self.keys_values.len() * 3 {
            self.grow();
            at = self.free_slot(h);
        }
        self.keys_values[at] = (key, value);
        self.len += 1;
    }

    fn free_slot(&self, h: u64) -> usize {
        let mask = self.mask();
        let mut i = h as usize & mask;
        while !self.keys_values[i].1.is_free() {
            i = (i + 1) & mask;
        }
        i
    }

    fn grow(&mut self) {
        let size = (self.keys_values.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(
            &mut self.keys_values,
            vec![(FlowKey::NONE, V::default()); size],
        );
        for (k, v) in old.into_iter().filter(|(_, v)| !v.is_free()) {
            let at = self.free_slot(k.hash64());
            self.keys_values[at] = (k, v);
        }
    }

    /// Keeps the entries `keep` says to (a rebuild at the same size:
    /// linear probing has no tombstones).
    pub fn retain(&mut self, mut keep: impl FnMut(&FlowKey, &V) -> bool) {
        let size = self.keys_values.len();
        let old = std::mem::replace(
            &mut self.keys_values,
            vec![(FlowKey::NONE, V::default()); size],
        );
        self.len = 0;
        for (k, v) in old.into_iter().filter(|(_, v)| !v.is_free()) {
            if keep(&k, &v) {
                let at = self.free_slot(k.hash64());
                self.keys_values[at] = (k, v);
                self.len += 1;
            }
        }
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&FlowKey, &mut V)> {
        self.keys_values
            .iter_mut()
            .filter(|(_, v)| !v.is_free())
            .map(|(k, v)| (&*k, v))
    }

    pub fn into_entries(self) -> impl Iterator<Item = (FlowKey, V)> {
        self.keys_values.into_iter().filter(|(_, v)| !v.is_free())
    }
}
