//! Cpu sets (and sets of queue or node numbers): the `-l` list and `-m`
//! mask syntaxes, the machine's configured and online cpus, its numa nodes.

use std::collections::BTreeSet;
use std::fmt;

/// The largest cpu number accepted in a list or mask. Linux's NR_CPUS tops
/// out at 8192; anything above cannot name a real cpu, and refusing it keeps
/// a typo like `-l 0-4000000000` from allocating gigabytes.
pub const MAX_CPU: u32 = 65_535;

/// A set of cpu numbers, kept sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<u32>);

impl CpuSet {
    pub fn new() -> CpuSet {
        CpuSet(BTreeSet::new())
    }

    /// Cpus `0..n`.
    pub fn first(n: u32) -> CpuSet {
        CpuSet((0..n).collect())
    }

    pub fn insert(&mut self, cpu: u32) {
        self.0.insert(cpu);
    }

    pub fn contains(&self, cpu: u32) -> bool {
        self.0.contains(&cpu)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.iter().copied()
    }

    pub fn intersection(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.intersection(&other.0).copied().collect())
    }

    pub fn difference(&self, other: &CpuSet) -> CpuSet {
        CpuSet(self.0.difference(&other.0).copied().collect())
    }

    /// Parses the kernel's cpu list syntax: `0,2-4,6`. Whitespace around
    /// numbers is tolerated (sysfs files end in a newline); a reversed range
    /// (`4-2`), an empty list or an empty element is not.
    pub fn parse_list(s: &str) -> Option<CpuSet> {
        let mut set = CpuSet::new();
        for part in s.split(',') {
            let part = part.trim();
            let (lo, hi) = match part.split_once('-') {
                Some((a, b)) => (parse_cpu(a)?, parse_cpu(b)?),
                None => {
                    let c = parse_cpu(part)?;
                    (c, c)
                }
            };
            if lo > hi {
                return None;
            }
            set.0.extend(lo..=hi);
        }
        Some(set)
    }

    /// Parses a hex cpu mask as in /proc/irq/*/smp_affinity: `5d` is cpus
    /// 0,2,3,4,6. An optional `0x` prefix is accepted; commas may appear
    /// anywhere (`ff,ffffffff`) and are ignored; case does not matter.
    pub fn parse_mask(s: &str) -> Option<CpuSet> {
        let s = s.trim();
        let s = s
            .strip_prefix("0x")
            .or_else(|| s.strip_prefix("0X"))
            .unwrap_or(s);
        let digits: Vec<u32> = s
            .chars()
            .filter(|&c| c != ',')
            .map(|c| c.to_digit(16))
            .collect::<Option<_>>()?;
        if digits.is_empty() {
            return None;
        }
        let mut set = CpuSet::new();
        for (i, d) in digits.iter().rev().enumerate() {
            for bit in 0..4 {
                if d & (1 << bit) != 0 {
                    let cpu = u32::try_from(i * 4 + bit).ok()?;
                    if cpu > MAX_CPU {
                        return None;
                    }
                    set.insert(cpu);
                }
            }
        }
        Some(set)
    }
}

fn parse_cpu(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&c| c <= MAX_CPU)
}

/// Formats as a cpu list with ranges (`0,2-4,6`), the inverse of
/// [`CpuSet::parse_list`]. An empty set formats as the empty string.
impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let mut it = self.iter().peekable();
        while let Some(lo) = it.next() {
            let mut hi = lo;
            while it.peek() == Some(&(hi + 1)) {
                hi = it.next().unwrap_or(hi);
            }
            if !first {
                f.write_str(",")?;
            }
            first = false;
            if lo == hi {
                write!(f, "{lo}")?;
            } else {
                write!(f, "{lo}-{hi}")?;
            }
        }
        Ok(())
    }
}

impl FromIterator<u32> for CpuSet {
    fn from_iter<I: IntoIterator<Item = u32>>(iter: I) -> CpuSet {
        CpuSet(iter.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[u32]) -> CpuSet {
        v.iter().copied().collect()
    }

    #[test]
    fn lists() {
        assert_eq!(CpuSet::parse_list("0"), Some(set(&[0])));
        assert_eq!(CpuSet::parse_list("0,2-4,6"), Some(set(&[0, 2, 3, 4, 6])));
        assert_eq!(CpuSet::parse_list("3-3"), Some(set(&[3])));
        assert_eq!(CpuSet::parse_list(" 1 , 0 "), Some(set(&[0, 1])));
        assert_eq!(CpuSet::parse_list("0-1\n"), Some(set(&[0, 1])));
        assert_eq!(CpuSet::parse_list("1,1,1"), Some(set(&[1])));
        assert_eq!(CpuSet::parse_list("007"), Some(set(&[7])));
    }

    #[test]
    fn bad_lists() {
        for bad in [
            "",
            " ",
            ",",
            "0,",
            ",0",
            "0,,1",
            "4-2",
            "-1",
            "1-",
            "-",
            "0-1-2",
            "10j",
            "+1",
            "0x1",
            "99999999999999999999999",
            "65536",
            "0-4294967295",
        ] {
            assert_eq!(CpuSet::parse_list(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn masks() {
        assert_eq!(CpuSet::parse_mask("5d"), Some(set(&[0, 2, 3, 4, 6])));
        assert_eq!(CpuSet::parse_mask("5D"), Some(set(&[0, 2, 3, 4, 6])));
        assert_eq!(CpuSet::parse_mask("0x5d"), Some(set(&[0, 2, 3, 4, 6])));
        assert_eq!(CpuSet::parse_mask("1,00000000"), Some(set(&[32])));
        assert_eq!(CpuSet::parse_mask(",1,"), Some(set(&[0])));
        assert_eq!(CpuSet::parse_mask("0"), Some(set(&[])));
        assert_eq!(
            CpuSet::parse_mask("ff,ffffffff"),
            Some((0..40).collect::<CpuSet>())
        );
        // Leading zeros never matter, however many.
        let long = format!("{}1", "0".repeat(100_000));
        assert_eq!(CpuSet::parse_mask(&long), Some(set(&[0])));
    }

    #[test]
    fn bad_masks() {
        for bad in ["", ",", "0x", "10j", "g", "-1", " 1 2"] {
            assert_eq!(CpuSet::parse_mask(bad), None, "{bad:?}");
        }
        // A bit above MAX_CPU names no possible cpu.
        let huge = format!("1{}", "0".repeat(20_000));
        assert_eq!(CpuSet::parse_mask(&huge), None);
    }

    #[test]
    fn format_round_trips() {
        for s in ["0", "0-1", "0,2-4,6", "1,3,5-9,100"] {
            let set = CpuSet::parse_list(s).unwrap();
            assert_eq!(set.to_string(), s);
        }
        assert_eq!(CpuSet::new().to_string(), "");
    }
}
