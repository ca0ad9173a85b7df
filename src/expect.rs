//! Expected versus observed: for every flow of `--flows`, the stream the
//! steering configuration read when the capture started predicts (and by
//! which mechanism: RPS, RFS, RSS, XPS, or none), so the flow table says
//! where each flow should have landed next to where it did. The rules are
//! the kernel's, in [`crate::steering`]; this module applies them to the
//! flows of a capture.

use std::collections::HashMap;

use crate::cli::Direction;
use crate::flows::{FlowKey, Flows, RECEIVED, SENT};
use crate::steering::{self, Config, Expectation, Mechanism};
use crate::vantage::Vantage;

/// What a capture's flows are compared with.
pub struct Steering {
    config: Config,
    vantage: Vantage,
    /// Per cpu, its numa node (the numa vantage's stream of a cpu).
    node_of: HashMap<u32, u32>,
}

impl Steering {
    /// Reads `ifname`'s configuration (never fails: what a device does not
    /// expose is absent, with a note for `-v`).
    pub fn read(ifname: &str, vantage: Vantage) -> Steering {
        let mut node_of = HashMap::new();
        if vantage == Vantage::Numa {
            let nodes = crate::cpuset::numa_nodes();
            for n in 0..nodes.possible {
                for cpu in crate::cpuset::node_cpus(n).iter() {
                    node_of.insert(cpu, n);
                }
            }
        }
        Steering {
            config: Config::read(ifname),
            vantage,
            node_of,
        }
    }

    /// The `-v` lines: what was read, and what could not be.
    pub fn describe(&self) -> Vec<String> {
        self.config.describe()
    }

    /// Sets every flow's expectation. `sent_from` gives, for transmitted
    /// flows, the cpus that sent them, where the vantage cannot see it
    /// itself (the queue vantage: XPS maps the sending cpu to a queue).
    pub fn predict(&self, flows: &mut Flows, sent_from: Option<&HashMap<FlowKey, Vec<u32>>>) {
        for r in &mut flows.records {
            let hash = r.hash.unwrap_or(0);
            let cpus = sent_from.and_then(|m| m.get(&r.key)).map(Vec::as_slice);
            r.expected = Some(match r.directions {
                RECEIVED => self.received(hash),
                SENT => self.sent(hash, cpus),
                // Both ways (every flow on lo): the two copies of a packet
                // follow different rules, so no single stream is expected.
                _ => Expectation {
                    stream: None,
                    by: self.received(hash).by,
                },
            });
        }
    }

    fn received(&self, hash: u32) -> Expectation {
        match self.vantage {
            Vantage::Cpu => steering::expected_rx_cpu(&self.config, None, hash, None),
            Vantage::Numa => {
                let e = steering::expected_rx_cpu(&self.config, None, hash, None);
                Expectation {
                    stream: e.stream.and_then(|cpu| self.node_of.get(&cpu).copied()),
                    by: e.by,
                }
            }
            Vantage::Queue => match steering::expected_rx_queue(&self.config, hash) {
                // Without an indirection table nothing picks a queue: the
                // device records whatever it does (or nothing).
                Expectation {
                    by: Mechanism::None,
                    ..
                } => Expectation {
                    stream: None,
                    by: Mechanism::None,
                },
                e => e,
            },
        }
    }

    fn sent(&self, hash: u32, cpus: Option<&[u32]>) -> Expectation {
        let none = Expectation {
            stream: None,
            by: Mechanism::None,
        };
        match (self.vantage, cpus) {
            // The cpu that sends is the sending thread's: nothing steers it.
            (Vantage::Cpu | Vantage::Numa, _) => none,
            (Vantage::Queue, None) => none,
            (Vantage::Queue, Some(cpus)) => {
                let each: Vec<Expectation> = cpus
                    .iter()
                    .map(|&cpu| steering::expected_tx_queue(&self.config, cpu, None, hash))
                    .collect();
                match each.first() {
                    Some(first) if each.iter().all(|e| e == first) => *first,
                    // Sent from cpus XPS maps to different queues: the flow
                    // is expected on several, so on no single one.
                    Some(_) => Expectation {
                        stream: None,
                        by: Mechanism::Xps,
                    },
                    None => none,
                }
            }
        }
    }
}

/// Whether `--flows` in this capture needs to know which cpus sent each
/// flow (the queue vantage with transmitted packets).
pub fn needs_sending_cpus(vantage: Vantage, direction: Direction) -> bool {
    vantage == Vantage::Queue && direction != Direction::Rx
}
