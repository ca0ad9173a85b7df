//! Expected versus observed: for every flow of `--flows`, the stream the
//! steering configuration read when the capture started predicts (and by
//! which mechanism: RPS, RFS, RSS, XPS, or none), so the flow table says
//! where each flow should have landed next to where it did. The rules are
//! the kernel's, in [`crate::steering`]; this module applies them to the
//! flows of a capture.

use std::collections::HashMap;

use crate::consumers::flows::{FlowKey, Flows, Proto, RECEIVED, SENT};
use crate::options::Direction;
use crate::options::Vantage;
use crate::steering::rss::Tuple;
use crate::steering::{self, Config, Expectation, Mechanism};
use crate::sys::ethtool::FlowType;

/// What a capture's flows are compared with.
pub struct Steering {
    config: Config,
    vantage: Vantage,
    /// Per cpu, its numa node (the numa vantage's stream of a cpu).
    node_of: HashMap<u32, u32>,
    /// One receive queue of each kind of steering
    /// ([`Config::rx_queue_kinds`]).
    kinds: Vec<u32>,
    /// Why some flows get no prediction, for `-v`.
    notes: Vec<String>,
}

impl Steering {
    /// Reads `ifname`'s configuration (never fails: what a device does not
    /// expose is absent, with a note for `-v`).
    pub fn read(ifname: &str, vantage: Vantage) -> Steering {
        let mut node_of = HashMap::new();
        if vantage == Vantage::Numa {
            let nodes = crate::vantage::machine::numa_nodes();
            for n in 0..nodes.possible {
                for cpu in crate::vantage::machine::node_cpus(n).iter() {
                    node_of.insert(cpu, n);
                }
            }
        }
        let config = Config::read(ifname);
        let kinds = config.rx_queue_kinds();
        let mut notes = Vec::new();
        if vantage != Vantage::Queue && kinds.len() > 1 {
            // The streams are cpus: a packet's receive queue is not in the
            // ring (tpacket3_hdr carries no queue_mapping).
            let rss = if config
                .rss
                .as_ref()
                .is_some_and(|r| r.hash_is_reproducible())
            {
                "received flows whose queue the RSS table does not give"
            } else {
                "received flows"
            };
            notes.push(format!(
                "{ifname}: its receive queues steer differently (rps_cpus, rps_flow_cnt or \
                 interrupt cpus) and a capture by {} does not see the queue a packet came in \
                 on: {rss} have no expected stream",
                vantage.subject()
            ));
        }
        Steering {
            config,
            vantage,
            node_of,
            kinds,
            notes,
        }
    }

    /// The configuration read.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The `-v` lines: what was read, and what could not be.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = self.config.describe();
        lines.extend(self.notes.iter().cloned());
        lines
    }

    /// Sets every flow's expectation. `sent_from` gives, for transmitted
    /// flows, the cpus that sent them, where the vantage cannot see it
    /// itself (the queue vantage: XPS maps the sending cpu to a queue).
    pub fn predict(&self, flows: &mut Flows, sent_from: Option<&HashMap<FlowKey, Vec<u32>>>) {
        for r in &mut flows.records {
            let cpus = sent_from.and_then(|m| m.get(&r.key)).map(Vec::as_slice);
            r.expected = Some(self.expect(&r.key, r.hash, r.directions, cpus));
        }
    }

    /// The expectation of one flow: its key, the flow hash of its earliest
    /// packet with one, its directions ([`RECEIVED`], [`SENT`]), and the
    /// cpus that sent it where the vantage cannot see them. What
    /// [`Steering::predict`] sets for the report, and what `--metrics`
    /// compares the flows with while the capture runs.
    pub fn expect(
        &self,
        key: &FlowKey,
        hash: Option<u32>,
        directions: u8,
        cpus: Option<&[u32]>,
    ) -> Expectation {
        let hash = hash.unwrap_or(0);
        match directions {
            RECEIVED => self.received(key, hash),
            SENT => self.sent(hash, cpus),
            // Both ways (every flow on lo): the two copies of a packet
            // follow different rules, so no single stream is expected.
            _ => Expectation {
                stream: None,
                by: self.received(key, hash).by,
            },
        }
    }

    fn received(&self, key: &FlowKey, hash: u32) -> Expectation {
        // The queue RSS gives the flow, where the device says enough to
        // compute it.
        let rss_queue = rss_input(key).and_then(|(t, f)| self.config.rss_queue_of(&t, f));
        let stream_of = |cpu: u32| match self.vantage {
            Vantage::Numa => self.node_of.get(&cpu).copied(),
            _ => Some(cpu),
        };
        match (self.vantage, rss_queue) {
            (Vantage::Cpu | Vantage::Numa, Some(q)) => {
                let e = steering::expected_rx_cpu(&self.config, q, hash, None);
                Expectation {
                    stream: e.stream.and_then(stream_of),
                    by: e.by,
                }
            }
            (Vantage::Cpu | Vantage::Numa, None) => {
                steering::expected_rx_cpu_any_queue(&self.config, &self.kinds, hash, stream_of)
            }
            (Vantage::Queue, q) => match steering::expected_rx_queue(&self.config, q) {
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

/// The tuple and flow type a NIC hashes for packets of flow `key`: TCP,
/// UDP and SCTP with their ports; other IP protocols, and packets whose
/// ports the key does not hold (later fragments), by addresses only (as
/// [`steering::packet_flow`] reads a packet). None for frames that are not
/// IP.
pub(crate) fn rss_input(key: &FlowKey) -> Option<(Tuple, FlowType)> {
    let (src, dst) = key.ip_addrs()?;
    let Proto::Ip(proto) = key.proto() else {
        return None;
    };
    let v4 = src.is_ipv4();
    let plain = if v4 { FlowType::Ipv4 } else { FlowType::Ipv6 };
    let (flow, (sport, dport)) = match (FlowType::of(v4, proto), key.ports()) {
        (FlowType::Ipv4 | FlowType::Ipv6, _) | (_, None) => (plain, (0, 0)),
        (flow, Some(ports)) => (flow, ports),
    };
    Some((Tuple::new(src, sport, dst, dport)?, flow))
}
