//! Naming a kernel code address (a drop's `location`) as `symbol+0xOFF`,
//! from /proc/kallsyms, as dropwatch and perf name them.
//!
//! The file lists every symbol with its address, but shows the addresses
//! as 0 to a reader the kernel does not trust with them (kernel.
//! kptr_restrict, CAP_SYSLOG): then nothing can be named and the caller
//! shows the address itself.

use std::collections::BTreeMap;

/// The kernel's code symbols, by address.
#[derive(Debug, Default)]
pub struct Symbols {
    /// Address -> (name, module: empty for the kernel's own).
    text: BTreeMap<u64, (String, String)>,
}

impl Symbols {
    /// /proc/kallsyms's code symbols; None when it cannot be read or
    /// shows no address.
    pub fn read() -> Option<Symbols> {
        let s = Symbols::parse(&std::fs::read_to_string("/proc/kallsyms").ok()?);
        (!s.text.is_empty()).then_some(s)
    }

    /// The code symbols (types t and T) of kallsyms text with their
    /// addresses (those shown as 0 left out).
    pub fn parse(text: &str) -> Symbols {
        let mut out = Symbols::default();
        for line in text.lines() {
            let mut f = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            if !matches!(kind, "t" | "T") {
                continue;
            }
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if addr == 0 {
                continue;
            }
            let module = f
                .next()
                .map(|m| m.trim_matches(|c| c == '[' || c == ']').to_string())
                .unwrap_or_default();
            out.text.insert(addr, (name.to_string(), module));
        }
        out
    }

    /// `name+0xOFF` (`name+0xOFF [module]`) of the symbol `addr` is in:
    /// the nearest at or below it; None below the first.
    pub fn name(&self, addr: u64) -> Option<String> {
        let (start, (name, module)) = self.text.range(..=addr).next_back()?;
        let mut s = format!("{name}+0x{:x}", addr - start);
        if !module.is_empty() {
            s.push_str(&format!(" [{module}]"));
        }
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_named_by_the_symbol_below_them() {
        let s = Symbols::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff8209e7b0 T __udp4_lib_rcv\n\
             ffffffff8209f000 t udp_queue_rcv_one_skb\n\
             ffffffff8209f100 D some_data\n\
             ffffffffc0000000 t veth_xmit\t[veth]\n",
        );
        assert_eq!(
            s.name(0xffff_ffff_8209_e9a8).as_deref(),
            Some("__udp4_lib_rcv+0x1f8")
        );
        assert_eq!(
            s.name(0xffff_ffff_8209_f180).as_deref(),
            Some("udp_queue_rcv_one_skb+0x180")
        );
        assert_eq!(
            s.name(0xffff_ffff_c000_0010).as_deref(),
            Some("veth_xmit+0x10 [veth]")
        );
        assert_eq!(s.name(0x1000), None);
        // Addresses hidden (kptr_restrict): nothing to name with.
        let hidden = Symbols::parse("0000000000000000 T __udp4_lib_rcv\n");
        assert!(hidden.text.is_empty());
    }
}
