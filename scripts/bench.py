#!/usr/bin/env python3
"""rxtxcpu capture benchmark: rxtxcpu against tcpdump, dumpcap and netsniff-ng on a
per-cpu veth flood.

Run through scripts/bench.sh (which builds the binaries), as root:

    scripts/bench.sh [--frames N] [--size BYTES] [--repeat K] [--json FILE]
                     [--quick] [--cases LIST] [--sizes LIST] [--binary PATH] ...

It builds two network namespaces joined by a veth pair (vA in the sender
namespace, vB in the receiver namespace, addresses from 192.0.2.0/24, IPv6
off, one queue per flooding cpu with XPS sending cpu c's frames on tx queue
c, which veth hands to vB's rx queue c), and floods vB from one floodgen
sender thread pinned to each cpu, so each cpu's receive path carries its own
flood. The frames are addressed to vB's MAC (PACKET_HOST) but to an
unassigned IPv4 address with forwarding off, so the receiver drops them
after capture without answering. The flood is spread round-robin over
--flows (1024) UDP flows, each flow sent from one cpu only.

Cases (ids for --cases; groups in brackets), each on the same flood:
  [main]
  a        no capture (the senders' rate alone: the machine's limit)
  b        rxtxcpu -d rx vB                      (counting only)
  c        rxtxcpu -d rx -w TMPFS/rxtxcpu.pcap vB
  d        rxtxcpu -d rx -w DISK/rxtxcpu.pcap vB
  e        tcpdump -i vB -Q in -n -w /dev/null
  f-tmpfs  tcpdump -i vB -Q in -n -w TMPFS/tcpdump.pcap
  f-disk   tcpdump -i vB -Q in -n -w DISK/tcpdump.pcap
  [flows]
  fl       rxtxcpu -d rx --flows vB              (counting, flow table)
  [path]    (fl) and (pa) alternating which runs first, with
            kernel.bpf_stats_enabled=0 (as a user runs it: the statistics
            add two clock reads to every program run); (pa-p) after them
            with it 1 for that run only (the previous value restored on
            every exit)
  pa       rxtxcpu -d rx --flows --path vB       (the flow table and the path
           probes: every frame runs the driver entry probe, netif_rx_entry on
           a veth): the senders' rate and cpu per packet against (fl), run
           next to it
  pa-p     the same as (pa) with the kernel's BPF statistics on: the probes'
           ns per run (rxtxcpu -v's line; bpftool prog show as a check)
  [repeats]
  rp       rxtxcpu -d rx --repeats vB            (counting, repeating packets)
           on a flood of unique frames (floodgen --unique: each frame's
           number in its IP ID and payload), as in real traffic: nothing
           repeats, every packet is new to the window (the common case)
  rp-s     the same on the standard flood, whose frames are identical
           within each flow: every flow a repeating packet, more than the
           window's repeating table holds (the worst case)
  [pcapng]
  png      rxtxcpu -d rx --pcapng -w TMPFS/rxtxcpu.pcapng vB
  [peers]   other capturers, defaults for each, files on tmpfs; skipped with
            a note when the tool is not installed
  dc       dumpcap -i vB -w TMPFS/dumpcap.pcapng  (Wireshark's capturer)
  nsg      netsniff-ng --in vB --out TMPFS/netsniff-ng.pcap
  [metrics]
  mt       rxtxcpu -d rx --metrics=127.0.0.1:PORT vB (counting) while a
           scraper in the receiving namespace GETs /metrics every
           --scrape-interval (0.1 s) during the flood; compared with (b)
           and with (mt-n)
  mt-n     the same, never scraped: what the scrapes themselves cost per
           packet (mt against mt-n), apart from the workers' byte counts
  [drops]   on a flood the kernel drops itself, every frame NO_SOCKET: sent to
            vB's own address (192.0.2.2), UDP port 9, where nothing listens
            (ICMP errors off in the receiving namespace), so the --drops
            probe runs for every frame; (dr-b) and (dr) alternate which
            runs first, with kernel.bpf_stats_enabled=0 (as a user runs
            it); (dr-p) after them with it 1 for that run only (the
            previous value restored on every exit)
  dr-b     rxtxcpu -d rx vB                      (counting, without --drops)
  dr       rxtxcpu -d rx --drops vB              (counting, the probe at
           skb:kfree_skb): the senders' rate and cpu per packet against
           (dr-b), and its NO_SOCKET count against the frames vB received
  dr-p     the same as (dr) with the kernel's BPF statistics on: the probe's
           ns per run (rxtxcpu -v's line; bpftool prog show as a check)
  [filter]  on a flood where only 1 in --filter-every (10) frames goes to
            UDP port 9 (the others to port 10); the count must be exactly
            the frames floodgen sent to port 9
  flt-b    rxtxcpu -d rx --filter='udp dst port 9' vB
  flt-e    tcpdump -i vB -Q in -n -w /dev/null 'udp dst port 9'
  flt-c    rxtxcpu -d rx --filter='udp dst port 9' -w TMPFS/rxtxcpu.pcap vB
  [xdp]     skipped with a note while the binary rejects --xdp
  x1       rxtxcpu --xdp=MODE -d rx vB           (counting)
  x2       rxtxcpu --xdp=MODE -d rx -w TMPFS/rxtxcpu.pcap vB
  [sweep]   the main cases, png, dc and nsg again at each other --sizes
            (64,512,1500) frame size, ids like b@1500; the --size row is the
            cases above. Every file is counted with capinfos -c -M (when
            installed): 'in file' is its records / frames sent
  [live]
  live     idle only: rxtxcpu -d rx --live --interval=1 vB, stderr a pipe
plus the idle cost of rxtxcpu (b), tcpdump (e), rxtxcpu --live (live) and,
with mt chosen, rxtxcpu --metrics never scraped and scraped once a second:
cpu seconds and wakeups over --idle-seconds (10 s) with no traffic.

Only the Python standard library is used.
"""

import argparse
import datetime
import json
import os
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

TX_MAC = "02:00:00:00:00:01"
RX_MAC = "02:00:00:00:00:02"
TX_IP = "192.0.2.1"
RX_IP = "192.0.2.2"
DST_IP = "192.0.2.3"  # in vB's subnet but unassigned: dropped, no reply

# The main cases, in run order; the sweep repeats them at other sizes.
MAIN = ["a", "b", "e", "c", "f-tmpfs", "d", "f-disk"]
# One case per per-packet feature, run at --size after the main cases.
FEATURES = ["mt-n", "mt", "dr-b", "dr", "dr-p", "fl", "pa", "pa-p", "rp", "rp-s", "png", "dc", "nsg", "flt-b", "flt-e", "flt-c", "x1", "x2"]
# The cases the frame-size sweep repeats at each size.
SWEEP_BASES = MAIN + ["png", "dc", "nsg"]
# Other capturers: the tool, its executable option, the Debian package.
PEER_TOOLS = {"dc": ("dumpcap", "dumpcap", "wireshark-common (or tshark)"),
              "nsg": ("netsniff-ng", "netsniff_ng", "netsniff-ng")}
# What each capturer prints on stderr once it captures.
READY = {"rxtxcpu": r"listening on", "tcpdump": r"listening on",
         "dumpcap": r"^File: ", "netsniff-ng": r"Running!"}
CASE_ORDER = MAIN + FEATURES
# Cases that skip (with a note) when the binary rejects their option.
OPTIONAL = {"x1": "--xdp", "x2": "--xdp", "live": "--live", "mt": "--metrics", "mt-n": "--metrics",
            "dr": "--drops", "dr-p": "--drops", "pa": "--path", "pa-p": "--path"}
# The cases on the flood the kernel drops (NO_SOCKET).
DROP_CASES = ("dr-b", "dr", "dr-p")
# The --drops cases.
DROPS_CASES = ("dr", "dr-p")
# The --path cases and their reference (same flood, run next to them).
PATH_CASES = ("fl", "pa", "pa-p")
# The feature and its reference that alternate which runs first.
ALTERNATING = (("dr-b", "dr"), ("fl", "pa"), ("mt-n", "mt"))
# Cases whose probes' cost is read from the kernel's BPF statistics: the
# only runs with kernel.bpf_stats_enabled=1. The statistics cost every
# program run two clock reads (about 40 ns here), which a user who has not
# turned them on does not pay: the senders' rates are measured without
# them, in (dr) and (pa).
PROBE_CASES = ("dr-p", "pa-p")
BPF_STATS = "/proc/sys/kernel/bpf_stats_enabled"
GROUPS = {
    "main": MAIN,
    "flows": ["fl"],
    "path": ["fl", "pa", "pa-p"],
    "repeats": ["rp", "rp-s"],
    "pcapng": ["png"],
    "peers": ["dc", "nsg"],
    "metrics": ["mt-n", "mt"],
    "drops": ["dr-b", "dr", "dr-p"],
    "filter": ["flt-b", "flt-e", "flt-c"],
    "xdp": ["x1", "x2"],
    "live": ["live"],
}
# The rxtxcpu/tcpdump pairs (the first ratio table; per size in the sweep).
PAIRS = [("b", "e"), ("c", "f-tmpfs"), ("d", "f-disk")]
# The sweep's ratio table per size: those, then the merged pcapng file
# against the per-stream files and the peers (issue 25's targets: pcapng
# complete, at most 1.3x per-stream pcap, below dumpcap), and the peers
# against tcpdump.
SWEEP_PAIRS = PAIRS + [("png", "c"), ("png", "dc"), ("png", "f-tmpfs"), ("dc", "f-tmpfs"),
                       ("nsg", "f-tmpfs")]
# Feature ratios: (numerator, denominator, what, target). A target names
# the issue and what it asks of the numerator against the denominator.
FEATURE_PAIRS = [
    ("mt", "b", "metrics, scraped every 100 ms, vs count",
     {"issue": 29, "cpu_ns_per_pkt": 1.0, "complete": True}),
    ("mt", "mt-n", "metrics scraped every 100 ms vs never",
     {"issue": 29, "cpu_ns_per_pkt": 1.0, "complete": True}),
    ("dr", "dr-b", "drops count vs count, NO_SOCKET flood",
     {"issue": 27, "rate": 0.95, "probe_ns": 100, "probe_case": "dr-p",
      "kernel_drops_exact": True}),
    ("pa", "fl", "path vs flows count",
     {"issue": 28, "rate": 0.9, "probe_ns": 100, "probe_case": "pa-p", "complete": True}),
    ("fl", "e", "flows count vs tcpdump -w /dev/null",
     {"issue": 10, "cpu_ns_per_pkt": 0.5, "complete": True}),
    ("rp", "e", "repeats count vs tcpdump -w /dev/null",
     {"issue": 26, "cpu_ns_per_pkt": 0.5, "complete": True}),
    ("rp-s", "e", "repeats, all repeating, vs tcpdump", None),
    ("png", "f-tmpfs", "pcapng tmpfs vs tcpdump -w tmpfs",
     {"issue": 12, "cpu_ns_per_pkt": 0.8, "complete": True}),
    ("png", "c", "pcapng tmpfs vs -w tmpfs per-stream pcap",
     {"issue": 25, "cpu_ns_per_pkt": 1.3, "complete": True}),
    ("png", "dc", "pcapng tmpfs vs dumpcap (pcapng)",
     {"issue": 25, "cpu_ns_per_pkt": 1.0, "complete": True}),
    ("dc", "f-tmpfs", "dumpcap pcapng vs tcpdump -w tmpfs", None),
    ("nsg", "f-tmpfs", "netsniff-ng pcap vs tcpdump -w tmpfs", None),
    ("flt-b", "b", "filter count vs no filter (cpu s)",
     {"issue": 13, "cpu_s": 1.0, "exact": True}),
    ("flt-c", "c", "filter -w tmpfs vs no filter (cpu s)",
     {"issue": 13, "cpu_s": 1.0, "exact": True}),
    ("flt-b", "flt-e", "filter count vs tcpdump same filter", None),
    ("flt-e", "e", "tcpdump filter vs no filter (cpu s)", None),
    ("x1", "b", "xdp count vs AF_PACKET count", None),
    ("x2", "c", "xdp -w tmpfs vs AF_PACKET -w tmpfs", None),
]
# Peak RSS at most ring memory + this (issue 16).
RSS_OVER_RING_KIB = 4 * 1024
FILTER_PORT = 9
OTHER_PORT = 10


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


class Unsupported(BenchError):
    """The capturer rejected its command line (exit status 2: a usage
    error), e.g. an option this binary does not have yet."""


# --------------------------------------------------------------------------
# process bookkeeping and cleanup

CHILDREN = set()  # pids we started and have not reaped
CLEANUPS = []  # callables, run in reverse order


def run(cmd, check=True, capture=True, timeout=60, **kw):
    r = subprocess.run(cmd, capture_output=capture, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise BenchError(
            f"command failed ({r.returncode}): {' '.join(cmd)}\n{(r.stderr or '').strip()}"
        )
    return r


def cleanup():
    for pid in list(CHILDREN):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        CHILDREN.discard(pid)
    while CLEANUPS:
        fn = CLEANUPS.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning
            log(f"cleanup: {e}")


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------
# /proc readings


def proc_cpu_ticks(pid):
    """utime+stime of the whole process in clock ticks, or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
    except OSError:
        return None
    fields = s[s.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def proc_cpu_ns(pid):
    """On-cpu time of all live threads in ns (schedstat), or ticks fallback."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    ok = False
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
                ok = True
        except (OSError, ValueError, IndexError):
            pass
    if ok:
        return total
    t = proc_cpu_ticks(pid)
    return None if t is None else t * 1_000_000_000 // CLK_TCK


def system_busy_s():
    """Busy cpu seconds of the whole machine (user+nice+system+irq+softirq)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return (v[0] + v[1] + v[2] + v[5] + v[6]) / CLK_TCK


def own_cpu_s():
    """Cpu seconds of this driver and all its reaped children."""
    import resource
    a = resource.getrusage(resource.RUSAGE_SELF)
    b = resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def proc_status(pid):
    d = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                d[k] = v.strip()
    except OSError:
        pass
    return d


def proc_hwm_kib(pid):
    v = proc_status(pid).get("VmHWM")
    return int(v.split()[0]) if v else None


def proc_ctxt_switches(pid):
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


# --------------------------------------------------------------------------
# the network


def cpu_mask_hex(cpus):
    """A sysfs cpumask ("3", "1,00000000"): hex, 32-bit words comma-separated."""
    m = 0
    for c in cpus:
        m |= 1 << c
    h = f"{m:x}"
    words = []
    while h:
        words.insert(0, h[-8:])
        h = h[:-8]
    return ",".join(words) or "0"


class Net:
    def __init__(self, tag, queue_cpus):
        self.tx = f"rxbench-tx-{tag}"
        self.rx = f"rxbench-rx-{tag}"
        self.tx_if = "vA"
        self.rx_if = "vB"
        # Queue i of each end belongs to queue_cpus[i] (XPS on vA).
        self.queue_cpus = queue_cpus

    def setup(self):
        for ns in (self.tx, self.rx):
            run(["ip", "netns", "add", ns])
            CLEANUPS.append(lambda ns=ns: run(["ip", "netns", "del", ns], check=False))
        for ns in (self.tx, self.rx):
            # No IPv6 (no DAD, no router solicitations), no forwarding,
            # before any link comes up.
            for key, val in (
                ("net.ipv6.conf.all.disable_ipv6", "1"),
                ("net.ipv6.conf.default.disable_ipv6", "1"),
                ("net.ipv4.ip_forward", "0"),
            ):
                run(["ip", "netns", "exec", ns, "sysctl", "-qw", f"{key}={val}"], check=False)
        # One queue per flooding cpu on both ends. veth hands a frame sent on
        # vA's tx queue q to vB's rx queue q; under native XDP each rx queue
        # has its own NAPI, polled on the cpu that scheduled it, so with one
        # queue a 2-cpu flood would be drained by one cpu. (veth refuses XDP
        # unless vB has at least as many rx queues as vA has tx queues.)
        q = str(len(self.queue_cpus))
        run(
            ["ip", "-n", self.tx, "link", "add", self.tx_if, "address", TX_MAC,
             "numtxqueues", q, "numrxqueues", q, "type", "veth",
             "peer", "name", self.rx_if, "address", RX_MAC,
             "numtxqueues", q, "numrxqueues", q, "netns", self.rx]
        )
        if len(self.queue_cpus) > 1:
            # XPS: floodgen's PACKET_QDISC_BYPASS sends pick their queue in
            # packet_pick_tx_queue -> netdev_pick_tx, which follows XPS.
            script = "; ".join(
                f"echo {cpu_mask_hex([c])} > /sys/class/net/{self.tx_if}/queues/tx-{i}/xps_cpus"
                for i, c in enumerate(self.queue_cpus))
            run(["ip", "netns", "exec", self.tx, "sh", "-c", script])
        for ns, ifn in ((self.tx, self.tx_if), (self.rx, self.rx_if)):
            # Belt and braces: the per-device knob too (if ipv6 exists).
            run(["ip", "netns", "exec", ns, "sysctl", "-qw",
                 f"net.ipv6.conf.{ifn}.disable_ipv6=1"], check=False)
        run(["ip", "-n", self.tx, "addr", "add", f"{TX_IP}/24", "dev", self.tx_if])
        run(["ip", "-n", self.rx, "addr", "add", f"{RX_IP}/24", "dev", self.rx_if])
        # Static neighbours: no ARP ever needed.
        run(["ip", "-n", self.tx, "neigh", "replace", RX_IP, "lladdr", RX_MAC,
             "dev", self.tx_if, "nud", "permanent"])
        run(["ip", "-n", self.rx, "neigh", "replace", TX_IP, "lladdr", TX_MAC,
             "dev", self.rx_if, "nud", "permanent"])
        for ns, ifn in ((self.tx, self.tx_if), (self.rx, self.rx_if)):
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
            run(["ip", "-n", ns, "link", "set", ifn, "up"])
        # Wait for carrier on both ends.
        deadline = time.time() + 5
        while time.time() < deadline:
            a = run(["ip", "-n", self.tx, "-j", "link", "show", self.tx_if]).stdout
            b = run(["ip", "-n", self.rx, "-j", "link", "show", self.rx_if]).stdout
            if '"LOWER_UP"' in a and '"LOWER_UP"' in b:
                break
            time.sleep(0.05)

    def stats(self, ns, ifn):
        out = run(["ip", "-n", ns, "-s", "-j", "link", "show", ifn]).stdout
        s = json.loads(out)[0]["stats64"]
        return {
            "rx_packets": s["rx"]["packets"],
            "rx_dropped": s["rx"]["dropped"],
            "tx_packets": s["tx"]["packets"],
            "tx_dropped": s["tx"]["dropped"],
        }

    def rx_stats(self):
        return self.stats(self.rx, self.rx_if)

    def xdp_queue_packets(self):
        """vB's per-rx-queue XDP packet counters (veth's ethtool -S), which
        count the frames its NAPI poll handed to an XDP program; None
        without ethtool."""
        if not shutil.which("ethtool"):
            return None
        r = run(["ip", "netns", "exec", self.rx, "ethtool", "-S", self.rx_if], check=False)
        res = {}
        for line in r.stdout.splitlines():
            m = re.fullmatch(r"\s*rx_queue_(\d+)_xdp_packets:\s*(\d+)\s*", line)
            if m:
                res[int(m.group(1))] = int(m.group(2))
        return res

    def tx_stats(self):
        return self.stats(self.tx, self.tx_if)


# --------------------------------------------------------------------------
# capturers


class Capturer:
    """A capture process in the receiver namespace, stopped with SIGINT."""

    def __init__(self, net, argv, ready_re=r"listening on"):
        self.net = net
        self.argv = argv
        self.ready_re = re.compile(ready_re)
        self.proc = None
        self.out = []
        self.err = []
        self.ready = threading.Event()
        self.threads = []
        self.rusage = None
        self.status = None
        self.hwm_kib = None

    def _reader(self, stream, sink, watch):
        for line in iter(stream.readline, ""):
            sink.append(line.rstrip("\n"))
            if watch and self.ready_re.search(line):
                self.ready.set()
        stream.close()

    def start(self, timeout=30):
        cmd = ["ip", "netns", "exec", self.net.rx] + self.argv
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            text=True, start_new_session=True,
        )
        CHILDREN.add(self.proc.pid)
        # Ready when either stream says so (netsniff-ng says it on stdout).
        for stream, sink, watch in ((self.proc.stdout, self.out, True),
                                    (self.proc.stderr, self.err, True)):
            t = threading.Thread(target=self._reader, args=(stream, sink, watch), daemon=True)
            t.start()
            self.threads.append(t)
        deadline = time.time() + timeout
        while not self.ready.wait(0.05):
            if self._exited_early():
                if os.WIFEXITED(self.status) and os.WEXITSTATUS(self.status) == 2:
                    raise Unsupported(
                        f"{self.argv[0]} rejected the command line (exit status 2): "
                        + (self.err[0] if self.err else ""))
                raise BenchError(
                    f"{self.argv[0]} exited before it was ready ({self.status_text()}): "
                    + " | ".join(self.err[-5:])
                )
            if time.time() > deadline:
                self.stop(sig=signal.SIGKILL)
                raise BenchError(
                    f"{self.argv[0]} not ready after {timeout} s: " + " | ".join(self.err[-5:])
                )

    def _exited_early(self):
        pid, status, ru = os.wait4(self.proc.pid, os.WNOHANG)
        if pid == 0:
            return False
        self._reaped(status, ru)
        return True

    def _reaped(self, status, ru):
        CHILDREN.discard(self.proc.pid)
        self.status = status
        self.rusage = ru
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        for t in self.threads:
            t.join(5)

    def status_text(self):
        if self.status is None:
            return "running"
        if os.WIFSIGNALED(self.status):
            return f"killed by signal {os.WTERMSIG(self.status)}"
        return f"exit status {os.WEXITSTATUS(self.status)}"

    def cpu_ns(self):
        return proc_cpu_ns(self.proc.pid)

    def settle(self, min_s, max_s, files=()):
        """Wait until the capturer has drained: at least min_s, then until its
        cpu time and its output files stop growing (or max_s)."""
        t0 = time.time()
        last = None
        stable = 0
        while True:
            time.sleep(0.1)
            cur = (self.cpu_ns() or 0, tuple(_size(f) for f in files()))
            if last is not None and cur[0] - last[0] < 2_000_000 and cur[1] == last[1]:
                stable += 1
            else:
                stable = 0
            last = cur
            el = time.time() - t0
            if el >= max_s or (el >= min_s and stable >= 3):
                return el

    def stop(self, sig=signal.SIGINT, timeout=60):
        if self.status is not None:
            return
        pid = self.proc.pid
        self.hwm_kib = proc_hwm_kib(pid)
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
        deadline = time.time() + timeout
        while True:
            rpid, status, ru = os.wait4(pid, os.WNOHANG)
            if rpid:
                self._reaped(status, ru)
                return
            if time.time() > deadline:
                os.kill(pid, signal.SIGKILL)
                rpid, status, ru = os.wait4(pid, 0)
                self._reaped(status, ru)
                raise BenchError(f"{self.argv[0]} did not stop on signal {sig} within {timeout} s")
            time.sleep(0.02)

    def cpu_s(self):
        return self.rusage.ru_utime + self.rusage.ru_stime


def _size(path):
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def parse_rxtxcpu(out, err):
    per_cpu = {}
    total = None
    for line in out:
        m = re.fullmatch(r"\s*(\d+) packets captured on cpu(\d+)\.\s*", line)
        if m:
            per_cpu[int(m.group(2))] = int(m.group(1))
        m = re.fullmatch(r"\s*(\d+) packets captured total\.\s*", line)
        if m:
            total = int(m.group(1))
    drops = {}
    for line in err:
        m = re.search(r"(\d+) packets dropped by kernel on cpu(\d+)", line)
        if m:
            drops[int(m.group(2))] = int(m.group(1))
    drop_total = sum(drops.values())
    if not drops:
        for line in err:
            m = re.search(r"(\d+) packets? dropped by kernel", line)
            if m:
                drop_total += int(m.group(1))
    if total is None:
        if not per_cpu:
            raise BenchError("no rxtxcpu report on stdout: " + " | ".join((out + err)[-6:]))
        total = sum(per_cpu.values())
    res = {"captured": total, "captured_per_cpu": per_cpu, "drops": drop_total,
           "drops_per_cpu": drops}
    # -v: "ring per cpu: 4 blocks of 2048 KiB (8192 KiB), block timeout 8 ms",
    # one ring per stream (a stream per report line).
    for line in err:
        m = re.search(r"ring per (\w+): .*\((\d+) KiB\)", line)
        if m:
            res["ring_per_stream_kib"] = int(m.group(2))
            res["streams"] = len(per_cpu) or 1
            res["ring_kib"] = res["ring_per_stream_kib"] * res["streams"]
            break
    # --flows: "1024 flows seen, 0 on more than one stream (SPLIT)."
    for line in out:
        m = re.fullmatch(r"\s*(\d+) flows? seen, (\d+) on more than one stream.*", line)
        if m:
            res["flows_seen"] = int(m.group(1))
            res["flows_split"] = int(m.group(2))
    # --repeats: "837495 repeated copies on cpu2 (1 packet, 64.3% of its
    # packets)." per stream that carried any; nothing when nothing repeats.
    for line in out:
        m = re.fullmatch(r"\s*(\d+) repeated cop(?:y|ies) on \S+ \((\d+) packets?, .*", line)
        if m:
            res["repeated_copies"] = res.get("repeated_copies", 0) + int(m.group(1))
            res["repeating"] = res.get("repeating", 0) + int(m.group(2))
    # --drops: "412 packets dropped by the kernel on cpu1: NO_SOCKET." per
    # cpu and reason (the softnet lines name a reason in words and say
    # "(softnet_stat", left out), and with -v "drops: the probe ran N times,
    # X ns each on average" (bpf_stats_enabled=1).
    for line in out + err:
        m = re.fullmatch(r"\s*(\d+) packets? dropped by the kernel on cpu(\d+)[^:]*: "
                         r"([A-Z0-9_]+|reason \d+)\.\s*", line)
        if m:
            kd = res.setdefault("kernel_drops", {})
            kd[m.group(3)] = kd.get(m.group(3), 0) + int(m.group(1))
            kc = res.setdefault("kernel_drops_per_cpu", {})
            kc[m.group(2)] = kc.get(m.group(2), 0) + int(m.group(1))
        m = re.search(r"(?:drops: the probe|path: the probes) ran (\d+) times?, "
                      r"([\d.]+) ns each", line)
        if m:
            res["probe_runs"] = int(m.group(1))
            res["probe_ns"] = float(m.group(2))
    return res


def bpftool_prog_stats(pid, name="rxtxcpu_drops"):
    """run_time_ns and run_cnt of the programs called name that process pid
    holds, summed (their ids from /proc/PID/fdinfo, whose program fds say
    prog_id; then bpftool -j prog show id ID each, so that a bpftool
    without pid support still tells them from other processes' programs),
    or None (no bpftool, no such program, stats off)."""
    exe = shutil.which("bpftool")
    if not exe:
        return None
    ids = []
    try:
        for fd in os.listdir(f"/proc/{pid}/fdinfo"):
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
            except OSError:
                continue
            if m:
                ids.append(m.group(1))
    except OSError:
        return None
    mine = []
    for i in sorted(set(ids)):
        try:
            r = subprocess.run([exe, "-j", "prog", "show", "id", i],
                               capture_output=True, text=True, timeout=10)
            q = json.loads(r.stdout or "{}")
        except (OSError, ValueError, subprocess.TimeoutExpired):
            return None
        if isinstance(q, dict) and q.get("name") == name:
            mine.append(q)
    # bpftool leaves run_cnt out of a program that never ran (or ran with
    # the statistics off): none of them ran, nothing is known.
    if not any("run_cnt" in q for q in mine):
        return None
    return {"run_time_ns": sum(q.get("run_time_ns", 0) for q in mine),
            "run_cnt": sum(q.get("run_cnt", 0) for q in mine)}


def parse_tcpdump(out, err):
    vals = {}
    for line in err:
        for key, pat in (("captured", r"^(\d+) packets? captured"),
                         ("received", r"^(\d+) packets? received by filter"),
                         ("drops", r"^(\d+) packets? dropped by kernel")):
            m = re.search(pat, line)
            if m:
                vals[key] = int(m.group(1))
    if "captured" not in vals:
        raise BenchError("no tcpdump statistics on stderr: " + " | ".join(err[-6:]))
    vals.setdefault("drops", 0)
    return vals


def parse_dumpcap(out, err):
    """dumpcap's own report (the file is what counts: see capinfos)."""
    vals = {"drops": 0}
    for line in err:
        m = re.search(r"^Packets captured: (\d+)", line)
        if m:
            vals["reported"] = int(m.group(1))
        m = re.search(r"^Packets received/dropped on interface .*: (\d+)/(\d+)", line)
        if m:
            vals["received"] = int(m.group(1))
            vals["drops"] = int(m.group(2))
    return vals


def parse_netsniff(out, err):
    """netsniff-ng's report on exit: 'N  packets incoming (M unread on
    exit)', 'N  packets passed filter', 'N  packets failed filter (out of
    space)' (the ring's drops), on stdout or stderr."""
    vals = {"drops": 0}
    for line in out + err:
        line = line.strip("\r ")
        m = re.match(r"(\d+)\s+packets incoming", line)
        if m:
            vals["received"] = int(m.group(1))
        m = re.match(r"(\d+)\s+packets passed filter", line)
        if m:
            vals["reported"] = int(m.group(1))
        m = re.match(r"(\d+)\s+packets failed filter", line)
        if m:
            vals["drops"] = int(m.group(1))
    return vals


def capinfos_records(capinfos, path):
    """Records in a capture file as capinfos -c -M counts them, or None."""
    try:
        r = subprocess.run([capinfos, "-c", "-M", path], capture_output=True, text=True,
                           timeout=300)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"Number of packets:\s*(\d+)", r.stdout)
    return int(m.group(1)) if m else None


# The scraper of the metrics case: GETs URL every INTERVAL s until SIGTERM,
# then prints one JSON line (scrapes, errors, the last scrape's packets).
# One connection kept open between scrapes, as Prometheus does (opened
# again only after a failure).
SCRAPER = r"""
import http.client, json, signal, sys, time, urllib.parse
url, interval = sys.argv[1], float(sys.argv[2])
u = urllib.parse.urlsplit(url)
conn = None
st = {"scrapes": 0, "errors": 0, "last_packets_total": None, "max_latency_ms": 0.0}
def done(*_):
    print(json.dumps(st), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, done)
t = time.monotonic()
while True:
    t0 = time.monotonic()
    try:
        if conn is None:
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=5)
        conn.request("GET", u.path)
        r = conn.getresponse()
        body = r.read().decode()
        if r.status != 200:
            raise OSError(r.status)
        st["scrapes"] += 1
        st["last_packets_total"] = sum(
            float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
            if l.startswith("rxtxcpu_packets_total{"))
    except Exception:
        st["errors"] += 1
        if conn is not None:
            conn.close()
        conn = None
    st["max_latency_ms"] = max(st["max_latency_ms"], (time.monotonic() - t0) * 1e3)
    t += interval
    time.sleep(max(0.0, t - time.monotonic()))
"""


def pcapng_records(data):
    """Packet blocks (enhanced, simple, obsolete) in pcapng data, or None."""
    n = 0
    off = 0
    order = None
    size = len(data)
    while off + 12 <= size:
        if data[off:off + 4] == b"\x0a\x0d\x0d\x0a":  # section header: byte order
            bom = data[off + 8:off + 12]
            order = {b"\x4d\x3c\x2b\x1a": "little", b"\x1a\x2b\x3c\x4d": "big"}.get(bom)
            if order is None:
                return None
        elif order is None:
            return None
        btype = int.from_bytes(data[off:off + 4], order)
        blen = int.from_bytes(data[off + 4:off + 8], order)
        if blen < 12 or blen % 4 or off + blen > size:
            break  # truncated tail (still being written)
        if btype in (2, 3, 6):
            n += 1
        off += blen
    return n


def pcap_records(path):
    """Number of complete records in a pcap or pcapng file (None if neither)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        return pcapng_records(data)
    if len(data) < 24:
        return 0 if len(data) == 0 else None
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        order = "little"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        order = "big"
    else:
        return None
    n = 0
    off = 24
    size = len(data)
    mv = memoryview(data)
    while off + 16 <= size:
        incl = int.from_bytes(mv[off + 8 : off + 12], order)
        off += 16 + incl
        if off > size:
            break
        n += 1
    return n


# --------------------------------------------------------------------------
# the benchmark


CASE_LABELS = {
    "a": "no capture",
    "b": "rxtxcpu count",
    "c": "rxtxcpu -w tmpfs",
    "d": "rxtxcpu -w disk",
    "e": "tcpdump -w /dev/null",
    "f-tmpfs": "tcpdump -w tmpfs",
    "f-disk": "tcpdump -w disk",
    "fl": "rxtxcpu --flows count",
    "pa": "rxtxcpu --flows --path count",
    "pa-p": "the same, BPF statistics on",
    "rp": "rxtxcpu --repeats count",
    "rp-s": "rxtxcpu --repeats, all repeating",
    "png": "rxtxcpu --pcapng -w tmpfs",
    "dc": "dumpcap -w tmpfs (pcapng)",
    "nsg": "netsniff-ng --out tmpfs (pcap)",
    "mt": "rxtxcpu --metrics count, scraped",
    "mt-n": "rxtxcpu --metrics count, not scraped",
    "dr-b": "rxtxcpu count, NO_SOCKET flood",
    "dr": "rxtxcpu --drops count, NO_SOCKET flood",
    "dr-p": "the same, BPF statistics on",
    "flt-b": "rxtxcpu --filter count",
    "flt-e": "tcpdump filter -w /dev/null",
    "flt-c": "rxtxcpu --filter -w tmpfs",
    "x1": "rxtxcpu --xdp count",
    "x2": "rxtxcpu --xdp -w tmpfs",
    "live": "rxtxcpu --live (idle)",
}


def split_case(case):
    """'b@1500' -> ('b', 1500); 'b' -> ('b', None)."""
    base, _, size = case.partition("@")
    return base, (int(size) if size else None)


class Bench:
    def __init__(self, args):
        self.a = args
        self.tag = os.environ.get("RXBENCH_TAG") or str(os.getpid())
        self.cpus = args.cpus
        self.net = Net(self.tag, self.cpus[:args.veth_queues])
        self.results = {c: [] for c in args.run_cases}
        self.errors = {c: [] for c in args.run_cases}
        self.skipped = {}  # case -> why
        self.idle = {"rxtxcpu": [], "tcpdump": [], "live": [], "metrics": [],
                     "metrics-1s": []}

    # -- setup --

    def setup(self):
        a = self.a
        self.tmpfs_dir = tempfile.mkdtemp(prefix=f"rxbench-{self.tag}-", dir=a.tmpfs_dir)
        CLEANUPS.append(lambda: shutil.rmtree(self.tmpfs_dir, ignore_errors=True))
        self.disk_dir = tempfile.mkdtemp(prefix=f"rxbench-{self.tag}-", dir=a.disk_dir)
        CLEANUPS.append(lambda: shutil.rmtree(self.disk_dir, ignore_errors=True))
        for d, want_tmpfs in ((self.tmpfs_dir, True), (self.disk_dir, False)):
            fstype = run(["stat", "-f", "-c", "%T", d]).stdout.strip()
            if (fstype == "tmpfs") != want_tmpfs:
                log(f"warning: {d} is on {fstype}, expected {'tmpfs' if want_tmpfs else 'a disk'}")
            if d == self.tmpfs_dir:
                self.tmpfs_type = fstype
            else:
                self.disk_type = fstype
        self.cpus_online = read_online()
        self.net.setup()
        if any(split_case(c)[0] in DROP_CASES for c in a.run_cases):
            # The drop cases' flood goes to vB's own address, where nothing
            # listens: no ICMP errors back from the receiving namespace
            # (its own sysctls, gone with it), only the drops.
            run(["ip", "netns", "exec", self.net.rx, "sysctl", "-qw",
                 "net.ipv4.icmp_msgs_per_sec=0", "net.ipv4.icmp_msgs_burst=0"], check=False)
        self.bpf_stats_managed = False
        if a.bpf_stats and any(split_case(c)[0] in DROP_CASES + PATH_CASES
                               for c in a.run_cases):
            self.manage_bpf_stats()
        log(f"namespaces {self.net.tx} ({self.net.tx_if}) -> {self.net.rx} ({self.net.rx_if}), "
            f"{len(self.net.queue_cpus)} queue(s), cpus {self.cpus}, {a.frames} frames of "
            f"{a.size} bytes per cpu over {a.flows} flows")
        self.check_quiet_link()

    def manage_bpf_stats(self):
        """kernel.bpf_stats_enabled is set per case (set_bpf_stats): 1 for
        the probe-cost cases (PROBE_CASES: the probe's run_time_ns and
        run_cnt), 0 for the others, whose senders' rate is then what a user
        sees; the previous value written back by cleanup() on every exit
        (bench.sh's trap too, if this driver dies hard)."""
        try:
            with open(BPF_STATS) as f:
                prev = f.read().strip()
        except OSError as e:
            log(f"warning: {BPF_STATS}: {e}; the probe's cost will not be known")
            return

        def restore(prev=prev):
            with open(BPF_STATS, "w") as f:
                f.write(prev + "\n")
        CLEANUPS.append(restore)
        self.bpf_stats_managed = True
        log(f"kernel.bpf_stats_enabled=1 only for the probe-cost cases "
            f"({', '.join(PROBE_CASES)}), else 0 (was {prev})")

    def set_bpf_stats(self, case):
        """The statistics on for a probe-cost case, off for any other (a
        no-op unless managed)."""
        if not self.bpf_stats_managed:
            return
        want = "1" if split_case(case)[0] in PROBE_CASES else "0"
        with open(BPF_STATS) as f:
            if f.read().strip() == want:
                return
        with open(BPF_STATS, "w") as f:
            f.write(want + "\n")

    def check_quiet_link(self):
        before = (self.net.rx_stats(), self.net.tx_stats())
        time.sleep(0.5)
        after = (self.net.rx_stats(), self.net.tx_stats())
        if before != after:
            log(f"warning: the link is not quiet without a flood: {before} -> {after}")

    # -- what a case is --

    def case_size(self, case):
        return split_case(case)[1] or self.a.size

    def case_frames(self, case):
        return self.a.sweep_frames if split_case(case)[1] else self.a.frames

    @staticmethod
    def tool_of(case):
        base = split_case(case)[0]
        if base == "a":
            return None
        if base in PEER_TOOLS:
            return PEER_TOOLS[base][0]
        return "tcpdump" if base in ("e", "f-tmpfs", "f-disk", "flt-e") else "rxtxcpu"

    @staticmethod
    def profile(case):
        """'mix': only 1 in --filter-every frames goes to FILTER_PORT;
        'unique': every frame differs (floodgen --unique); 'nosock': to
        vB's own address, FILTER_PORT, where nothing listens (NO_SOCKET)."""
        base = split_case(case)[0]
        if base.startswith("flt-"):
            return "mix"
        if base in DROP_CASES:
            return "nosock"
        return "unique" if base == "rp" else "std"

    def filter_expr(self):
        return f"udp dst port {FILTER_PORT}"

    # -- the pieces of a run --

    def flood(self, frames, size=None, profile="std"):
        a = self.a
        cmd = ["ip", "netns", "exec", self.net.tx, a.floodgen, "--ifname", self.net.tx_if,
               "--count", str(frames), "--size", str(size or a.size),
               "--cpus", ",".join(map(str, self.cpus)), "--dst-mac", RX_MAC,
               "--src-mac", TX_MAC, "--src-ip", TX_IP,
               "--dst-ip", RX_IP if profile == "nosock" else DST_IP,
               "--batch", str(a.batch), "--flows", str(a.flows),
               "--dst-port", str(FILTER_PORT), "--quiet"]
        if profile == "mix":
            cmd += ["--match-every", str(a.filter_every), "--other-port", str(OTHER_PORT)]
        if profile == "unique":
            cmd += ["--unique"]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        CHILDREN.add(p.pid)
        try:
            out, err = p.communicate(timeout=a.flood_timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise BenchError(f"floodgen did not finish within {a.flood_timeout} s")
        finally:
            CHILDREN.discard(p.pid)
        if p.returncode != 0:
            raise BenchError(f"floodgen failed ({p.returncode}): {err.strip()}")
        return json.loads(out.strip().splitlines()[-1])

    def capturer_argv(self, case):
        a = self.a
        base, _ = split_case(case)
        rx = [a.binary, "-v", "-d", "rx"] + shlex.split(a.rxtxcpu_args)
        # -p: no promiscuous mode, like rxtxcpu without -p; -Z root: keep
        # root so it can write to our root-owned temp dirs.
        td = [a.tcpdump, "-i", self.net.rx_if, "-Q", "in", "-n", "-p", "-Z", "root"] + \
            shlex.split(a.tcpdump_args)
        ifn = self.net.rx_if
        tmp_pcap = os.path.join(self.tmpfs_dir, "rxtxcpu.pcap")
        xdp = "--xdp" if a.xdp_mode == "default" else f"--xdp={a.xdp_mode}"
        if base == "a":
            return None, None
        if base == "b":
            return "rxtxcpu", rx + [ifn]
        if base == "c":
            return "rxtxcpu", rx + ["-w", tmp_pcap, ifn]
        if base == "d":
            return "rxtxcpu", rx + ["-w", os.path.join(self.disk_dir, "rxtxcpu.pcap"), ifn]
        if base == "e":
            return "tcpdump", td + ["-w", "/dev/null"]
        if base == "f-tmpfs":
            return "tcpdump", td + ["-w", os.path.join(self.tmpfs_dir, "tcpdump.pcap")]
        if base == "f-disk":
            return "tcpdump", td + ["-w", os.path.join(self.disk_dir, "tcpdump.pcap")]
        if base == "fl":
            return "rxtxcpu", rx + ["--flows", ifn]
        if base in ("pa", "pa-p"):
            return "rxtxcpu", rx + ["--flows", "--path", ifn]
        if base == "dr-b":
            return "rxtxcpu", rx + [ifn]
        if base in DROPS_CASES:
            return "rxtxcpu", rx + ["--drops", ifn]
        if base in ("mt", "mt-n"):
            return "rxtxcpu", rx + [f"--metrics=127.0.0.1:{a.metrics_port}", ifn]
        if base == "dc":
            return "dumpcap", [a.dumpcap, "-i", ifn, "-w",
                               os.path.join(self.tmpfs_dir, "dumpcap.pcapng")]
        if base == "nsg":
            return "netsniff-ng", [a.netsniff_ng, "--in", ifn, "--out",
                                   os.path.join(self.tmpfs_dir, "netsniff-ng.pcap")]
        if base in ("rp", "rp-s"):
            return "rxtxcpu", rx + ["--repeats", ifn]
        if base == "png":
            return "rxtxcpu", rx + ["--pcapng", "-w",
                                    os.path.join(self.tmpfs_dir, "rxtxcpu.pcapng"), ifn]
        if base == "flt-b":
            return "rxtxcpu", rx + [f"--filter={self.filter_expr()}", ifn]
        if base == "flt-c":
            return "rxtxcpu", rx + [f"--filter={self.filter_expr()}", "-w", tmp_pcap, ifn]
        if base == "flt-e":
            return "tcpdump", td + ["-w", "/dev/null", self.filter_expr()]
        if base == "x1":
            return "rxtxcpu", [a.binary, xdp] + rx[1:] + [ifn]
        if base == "x2":
            return "rxtxcpu", [a.binary, xdp] + rx[1:] + ["-w", tmp_pcap, ifn]
        if base == "live":
            return "rxtxcpu", rx + ["--live", f"--interval={a.live_interval:g}", ifn]
        raise ValueError(case)

    def out_files(self, case):
        """The pcap files a case writes (as they exist now)."""
        res = []
        for d in (self.tmpfs_dir, self.disk_dir):
            for name in sorted(os.listdir(d)):
                res.append(os.path.join(d, name))
        return res

    def clear_files(self):
        for d in (self.tmpfs_dir, self.disk_dir):
            for name in os.listdir(d):
                try:
                    os.unlink(os.path.join(d, name))
                except OSError:
                    pass

    def wait_quiet(self):
        """Before a case: wait (up to --quiet-timeout s) until other processes
        use less than --quiet-load cpus, so they disturb the run less."""
        a = self.a
        if a.quiet_timeout <= 0:
            return None
        deadline = time.time() + a.quiet_timeout
        told = False
        while True:
            b0, t0 = system_busy_s(), time.time()
            time.sleep(0.5)
            load = (system_busy_s() - b0) / (time.time() - t0)
            if load < a.quiet_load:
                return load
            if time.time() > deadline:
                log(f"warning: the machine stays busy ({load:.2f} cpus used by other "
                    f"processes); measuring anyway")
                return load
            if not told:
                log(f"waiting for the machine to quiet down ({load:.2f} cpus busy)")
                told = True

    def start_scraper(self, interval):
        a = self.a
        p = subprocess.Popen(
            ["ip", "netns", "exec", self.net.rx, sys.executable, "-c", SCRAPER,
             f"http://127.0.0.1:{a.metrics_port}/metrics", str(interval)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        CHILDREN.add(p.pid)
        return p

    @staticmethod
    def stop_scraper(p):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        CHILDREN.discard(p.pid)
        try:
            return json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise BenchError(f"the metrics scraper failed: {err.strip()[-300:]}")

    def run_case(self, case, frames, verify_files=True):
        a = self.a
        base, _ = split_case(case)
        size = self.case_size(case)
        profile = self.profile(case)
        self.set_bpf_stats(case)
        idle_load = self.wait_quiet()
        tool, argv = self.capturer_argv(case)
        self.clear_files()
        if base in ("d", "f-disk"):
            os.sync()  # no writeback of an earlier case competes with this one
        online0 = read_online()
        busy0, own0, wall0 = system_busy_s(), own_cpu_s(), time.time()
        cap = None
        if argv:
            cap = Capturer(self.net, argv, ready_re=READY[tool])
            cap.start(timeout=a.ready_timeout)
            # Setting up (rings zeroed by the kernel, a program loaded) is
            # paid once per capture, not per packet: kept apart.
            setup_ns = cap.cpu_ns() or 0
        want_xdp = base in ("x1", "x2")
        scraper, scrapes = None, None
        try:
            rx0, tx0 = self.net.rx_stats(), self.net.tx_stats()
            xq0 = self.net.xdp_queue_packets() if want_xdp else None
            if base == "mt":
                scraper = self.start_scraper(a.scrape_interval)
            fl = self.flood(frames, size, profile)
            if scraper:
                scrapes = self.stop_scraper(scraper)
                scraper = None
            settle = 0.0
            if cap:
                settle = cap.settle(a.settle, a.settle_max, files=lambda: self.out_files(case))
            rx1, tx1 = self.net.rx_stats(), self.net.tx_stats()
            xq1 = self.net.xdp_queue_packets() if want_xdp else None
            # The probe's statistics as the kernel keeps them, while it is
            # still loaded (a check on rxtxcpu -v's own line).
            bpftool = (bpftool_prog_stats(cap.proc.pid) if base == "dr-p" else
                       bpftool_prog_stats(cap.proc.pid, "rxtxcpu_path") if base == "pa-p"
                       else None)
            if cap:
                cap.stop()
        except BaseException:
            if scraper and scraper.poll() is None:
                scraper.kill()
            if cap and cap.status is None:
                try:
                    cap.stop(sig=signal.SIGKILL, timeout=5)
                except Exception:
                    pass
            raise
        r = {
            "case": case,
            "size": size,
            "flood": profile,
            "frames_per_cpu": frames,
            "sent": fl["sent"],
            "matched": fl.get("matched"),
            "delivered": rx1["rx_packets"] - rx0["rx_packets"],
            "rx_dropped": rx1["rx_dropped"] - rx0["rx_dropped"],
            "veth_tx_dropped": tx1["tx_dropped"] - tx0["tx_dropped"],
            "replies": rx1["tx_packets"] - rx0["tx_packets"],
            "elapsed": fl["elapsed"],
            "rate": fl["rate"],
            "send_retries": sum(c["retries"] for c in fl["per_cpu"]),
            "per_cpu_rate": {str(c["cpu"]): c["rate"] for c in fl["per_cpu"]},
            "per_cpu_sent": {str(c["cpu"]): c["sent"] for c in fl["per_cpu"]},
            "per_cpu_matched": {str(c["cpu"]): c.get("matched") for c in fl["per_cpu"]},
        }
        if bpftool:
            r["bpftool_run_cnt"] = bpftool["run_cnt"]
            r["bpftool_run_time_ns"] = bpftool["run_time_ns"]
            if bpftool["run_cnt"]:
                r["bpftool_probe_ns"] = bpftool["run_time_ns"] / bpftool["run_cnt"]
        if want_xdp and xq0 is not None and xq1 is not None:
            r["xdp_queue_packets"] = {str(q): xq1.get(q, 0) - xq0.get(q, 0) for q in xq1}
        # Was the run disturbed (cpu hotplug, a sender off its cpu)?
        reasons = []
        online1 = read_online()
        if online1 != online0:
            reasons.append(f"online cpus changed from {online0} to {online1}")
        off = {c["cpu"]: c.get("off_cpu_calls", 0) for c in fl["per_cpu"]
               if c.get("off_cpu_calls", 0)}
        if off:
            reasons.append(f"senders ran off their cpus (sendmmsg calls per cpu: {off})")
        r["disturbed"] = "; ".join(reasons) or None
        r["load_before"] = idle_load
        # Cpu time other processes took while this case ran: noise.
        wall = time.time() - wall0
        r["background_cpu_s"] = max(0.0, (system_busy_s() - busy0) - (own_cpu_s() - own0))
        r["background_load"] = r["background_cpu_s"] / wall if wall > 0 else 0.0
        if r["background_load"] > 0.3:
            log(f"warning: case {case}: other processes used {r['background_cpu_s']:.2f} cpu s "
                f"({r['background_load']:.2f} cpus) during the run; rates will be noisy")
        if r["replies"]:
            log(f"warning: case {case}: the receiver sent {r['replies']} packets back")
        if r["delivered"] != r["sent"]:
            log(f"warning: case {case}: floodgen sent {r['sent']} but {self.net.rx_if} "
                f"received {r['delivered']}")
        if "xdp_queue_packets" in r:
            xq = r["xdp_queue_packets"]
            if sum(xq.values()) != r["delivered"]:
                if a.xdp_mode == "native":
                    log(f"warning: case {case}: vB's XDP queue counters saw {sum(xq.values())} "
                        f"of {r['delivered']} frames (not native XDP?): {xq}")
            elif len(self.net.queue_cpus) == len(self.cpus):
                want = {str(q): r["per_cpu_sent"].get(str(c))
                        for q, c in enumerate(self.net.queue_cpus)}
                if {q: v for q, v in xq.items() if v or q in want} != want:
                    log(f"warning: case {case}: per-queue XDP frames {xq} differ from the "
                        f"frames each queue's cpu sent {want}")
        if cap:
            r["tool"] = tool
            r["argv"] = argv
            r["exit"] = cap.status_text()
            r["settle_s"] = round(settle, 3)
            r["total_cpu_s"] = cap.cpu_s()
            r["setup_cpu_s"] = setup_ns / 1e9
            r["cpu_s"] = max(0.0, r["total_cpu_s"] - r["setup_cpu_s"])
            r["user_s"] = cap.rusage.ru_utime
            r["sys_s"] = cap.rusage.ru_stime
            r["peak_rss_kib"] = cap.hwm_kib if cap.hwm_kib else cap.rusage.ru_maxrss
            r["stderr_tail"] = cap.err[-8:]
            if tool == "rxtxcpu":
                r.update(parse_rxtxcpu(cap.out, cap.err))
            elif tool == "tcpdump":
                r.update(parse_tcpdump(cap.out, cap.err))
            else:
                # The peers: their files are what counts (capinfos, below).
                r.update(parse_dumpcap(cap.out, cap.err) if tool == "dumpcap"
                         else parse_netsniff(cap.out, cap.err))
                files = self.out_files(case)
                recs = [capinfos_records(a.capinfos, f) for f in files]
                if not files or any(x is None for x in recs):
                    raise BenchError(f"{tool}: capinfos cannot count its file(s) "
                                     f"{[os.path.basename(f) for f in files]}")
                r["captured"] = sum(recs)
            if scrapes is not None:
                r["scrapes"] = scrapes["scrapes"]
                r["scrape_errors"] = scrapes["errors"]
                r["scrape_max_latency_ms"] = scrapes["max_latency_ms"]
                r["scrape_last_packets"] = scrapes["last_packets_total"]
                if scrapes["errors"] or not scrapes["scrapes"]:
                    log(f"warning: case {case}: {scrapes['errors']} failed scrapes of "
                        f"{scrapes['scrapes'] + scrapes['errors']}")
            if "ring_kib" in r:
                r["rss_minus_ring_kib"] = r["peak_rss_kib"] - r["ring_kib"]
            # What the capture should hold: every frame, or with the filter
            # exactly the frames floodgen sent to FILTER_PORT (known only
            # when the veth received every frame sent).
            if profile == "mix":
                per_cpu_want = r["per_cpu_matched"]
                r["expected"] = r["matched"] if r["delivered"] == r["sent"] else None
                r["exact"] = (r["captured"] == r["expected"]) if r["expected"] is not None \
                    else None
                if r["exact"] is False:
                    log(f"warning: case {case}: {tool} counted {r['captured']} but floodgen "
                        f"sent {r['expected']} frames matching '{self.filter_expr()}'")
            else:
                per_cpu_want = r["per_cpu_sent"]
                r["expected"] = r["delivered"] or r["sent"]
            if base in DROPS_CASES:
                # Every frame vB received was dropped for want of a socket.
                kd = r.get("kernel_drops", {})
                r["no_socket"] = kd.get("NO_SOCKET", 0)
                r["other_kernel_drops"] = sum(v for k, v in kd.items() if k != "NO_SOCKET")
                r["kernel_drops_exact"] = r["no_socket"] == r["delivered"]
                if not r["kernel_drops_exact"]:
                    log(f"warning: case {case}: NO_SOCKET {r['no_socket']} but vB received "
                        f"{r['delivered']} frames (all reasons: {kd})")
                if r.get("probe_ns") is None:
                    if a.bpf_stats and base in PROBE_CASES:
                        log(f"warning: case {case}: no probe cost line from rxtxcpu -v "
                            f"(kernel.bpf_stats_enabled?)")
                elif base not in PROBE_CASES:
                    # The statistics were on (--no-bpf-stats, and on
                    # before): this run's rate paid for them.
                    log(f"warning: case {case}: the BPF statistics were on; its rate includes "
                        f"their cost")
                else:
                    r["probe_runs_per_drop"] = (r["probe_runs"] / r["no_socket"]
                                                if r["no_socket"] else None)
            if base in ("pa", "pa-p"):
                if r.get("probe_ns") is None:
                    if a.bpf_stats and base in PROBE_CASES:
                        log(f"warning: case {case}: no probe cost line from rxtxcpu -v "
                            f"(kernel.bpf_stats_enabled?)")
                elif r["delivered"]:
                    r["probe_runs_per_frame"] = r["probe_runs"] / r["delivered"]
                    if r["probe_runs_per_frame"] > 1.05:
                        # The probes run for every packet of every device
                        # (and leave at once for other devices'): other
                        # traffic on the machine lowers their average.
                        r["probe_ns_mixed"] = r.pop("probe_ns")
                        r.pop("bpftool_probe_ns", None)
                        log(f"warning: case {case}: the probes ran "
                            f"{r['probe_runs_per_frame']:.2f} times per frame (other "
                            f"traffic on the machine); this run's ns per run left out")
            if base in PATH_CASES and r.get("flows_seen") != a.flows:
                log(f"warning: case {case}: the flow table saw {r.get('flows_seen')} flows, "
                    f"floodgen sent {a.flows}")
            if tool == "rxtxcpu" and not r["disturbed"]:
                got = {str(k): v for k, v in r["captured_per_cpu"].items()}
                if got != per_cpu_want and r["captured"] == r["expected"]:
                    log(f"warning: case {case}: rxtxcpu's per-cpu counts {got} differ from "
                        f"the frames each cpu sent {per_cpu_want}")
            if os.WIFSIGNALED(cap.status) or os.WEXITSTATUS(cap.status) != 0:
                raise BenchError(f"{tool} ended with {r['exit']}: " + " | ".join(cap.err[-5:]))
            want = r["expected"]
            r["completeness"] = r["captured"] / want if want else None
            r["cpu_ns_per_pkt"] = (r["cpu_s"] * 1e9 / r["captured"]) if r["captured"] else None
            r["cpu_ns_per_frame"] = (r["cpu_s"] * 1e9 / r["delivered"]) if r["delivered"] \
                else None
            # Unique frames: nothing repeats.
            if base == "rp" and r.get("repeating"):
                log(f"warning: case {case}: {r.get('repeating')} packets repeating in a "
                    f"flood of unique frames")
            # Each flow's frames are identical, so each flow is a repeating
            # packet; the window lists at most 512 per stream (and fewer
            # when a bucket of its table overflows): some, never more.
            if base == "rp-s" and not 0 < (r.get("repeating") or 0) <= a.flows:
                log(f"warning: case {case}: {r.get('repeating')} packets repeating, "
                    f"floodgen sent {a.flows} flows of identical frames")
            if verify_files and base not in ("b", "e", "fl", "pa", "rp", "rp-s", "flt-b", "flt-e", "x1",
                                             "mt", "mt-n", "dr", "dr-b", "dr-p", "pa-p"):
                files = self.out_files(case)
                r["files"] = {os.path.basename(f): _size(f) for f in files}
                r["file_bytes"] = sum(_size(f) for f in files)
                # Counted by capinfos where installed, like the peers' files.
                if a.capinfos_ok and (base in PEER_TOOLS or base in SWEEP_BASES):
                    recs = [capinfos_records(a.capinfos, f) for f in files]
                    r["file_records_by"] = "capinfos"
                else:
                    recs = [pcap_records(f) for f in files]
                if any(x is None for x in recs):
                    r["file_records"] = None
                    log(f"warning: case {case}: an output file is not pcap: {r['files']}")
                else:
                    r["file_records"] = sum(recs)
                    if want:
                        r["in_file"] = r["file_records"] / want
                    if r["file_records"] != r["captured"]:
                        log(f"warning: case {case}: files hold {r['file_records']} records "
                            f"but {tool} reported {r['captured']} captured")
        self.clear_files()
        return r

    def run_idle(self, tool, seconds):
        """Idle cost; 'metrics' is --metrics never scraped, 'metrics-1s' the
        same scraped once a second (its wakeups should be the scrapes')."""
        case = {"rxtxcpu": "b", "tcpdump": "e", "live": "live", "metrics": "mt",
                "metrics-1s": "mt"}[tool]
        kind, argv = self.capturer_argv(case)
        cap = Capturer(self.net, argv, ready_re=READY[kind])
        cap.start(timeout=self.a.ready_timeout)
        scraper, scrapes = None, None
        try:
            time.sleep(0.2)
            if tool == "metrics-1s":
                scraper = self.start_scraper(1.0)
                time.sleep(0.1)
            n0 = len(cap.err)
            c0, w0, t0 = cap.cpu_ns(), proc_ctxt_switches(cap.proc.pid), time.time()
            time.sleep(seconds)
            c1, w1, t1 = cap.cpu_ns(), proc_ctxt_switches(cap.proc.pid), time.time()
            n1 = len(cap.err)
            if scraper:
                scrapes = self.stop_scraper(scraper)
                scraper = None
            cap.stop()
        except BaseException:
            if scraper and scraper.poll() is None:
                scraper.kill()
            if cap.status is None:
                cap.stop(sig=signal.SIGKILL, timeout=5)
            raise
        return {"tool": tool, "seconds": t1 - t0, "cpu_s": (c1 - c0) / 1e9,
                "scrapes": scrapes["scrapes"] if scrapes else None,
                "cpu_s_per_s": (c1 - c0) / 1e9 / (t1 - t0),
                "wakeups_per_s": (w1 - w0) / (t1 - t0), "total_cpu_s": cap.cpu_s(),
                "stderr_lines_per_s": (n1 - n0) / (t1 - t0),
                "stderr_sample": cap.err[n0:n0 + 4],
                "exit": cap.status_text()}

    # -- the whole run --

    def cases(self):
        """The flood cases to run, in run order."""
        return [c for c in self.a.run_cases if c != "live"]

    def run_one(self, case, rep):
        """One measured run of a case, run again when disturbed."""
        a = self.a
        attempts = 0
        while True:
            attempts += 1
            try:
                r = self.run_case(case, self.case_frames(case))
                err = None
            except Unsupported:
                raise
            except BenchError as e:
                r = None
                err = str(e)
            if r is not None and r["disturbed"] and attempts <= a.retries:
                log(f"run {rep + 1}/{a.repeat} case {case}: disturbed ({r['disturbed']}); "
                    f"running it again")
                time.sleep(1)
                continue
            if r is None and attempts <= a.retries and read_online() != self.cpus_online:
                log(f"run {rep + 1}/{a.repeat} case {case}: failed while cpus were "
                    f"offline ({err}); running it again")
                time.sleep(1)
                continue
            return r, err, attempts

    def skip(self, case, e):
        why = str(e).splitlines()[0]
        self.skipped[case] = f"the binary does not take {OPTIONAL.get(split_case(case)[0])}: {why}"
        log(f"case {case}: SKIPPED: {self.skipped[case]}")

    def run(self):
        a = self.a
        cases = self.cases()
        log(f"{len(cases)} flood case(s) x {a.repeat} repetition(s)"
            + (" after a warm-up" if a.warmup > 0 else "") + ": " + " ".join(cases))
        if a.warmup > 0:
            log(f"warm-up: {a.warmup} frames per cpu, no capture")
            self.flood(a.warmup)
            for case in cases:
                base = split_case(case)[0]
                if base == "a" or (base in PEER_TOOLS and
                                   not shutil.which(getattr(a, PEER_TOOLS[base][1]))):
                    continue
                try:
                    self.run_case(case, a.warmup, verify_files=False)
                except Unsupported as e:
                    if split_case(case)[0] in OPTIONAL:
                        self.skip(case, e)
                    else:
                        log(f"warm-up of case {case} failed: {e}")
                except BenchError as e:
                    log(f"warm-up of case {case} failed: {e}")
        for case in cases:
            base = split_case(case)[0]
            if base in PEER_TOOLS and not shutil.which(getattr(a, PEER_TOOLS[base][1])):
                name, _, pkg = PEER_TOOLS[base]
                self.skipped[case] = (f"{name} is not installed (apt-get install -y {pkg}); "
                                      f"case skipped")
                log(f"case {case}: SKIPPED: {self.skipped[case]}")
        for rep in range(a.repeat):
            order = list(cases)
            for pair in ALTERNATING:
                if rep % 2 and all(c in order for c in pair):
                    # A feature and its reference alternate which runs first.
                    i, j = order.index(pair[0]), order.index(pair[1])
                    order[i], order[j] = order[j], order[i]
            for case in order:
                if case in self.skipped:
                    continue
                t = time.time()
                try:
                    r, err, attempts = self.run_one(case, rep)
                except Unsupported as e:
                    if split_case(case)[0] in OPTIONAL:
                        self.skip(case, e)
                        continue
                    r, err, attempts = None, str(e), 1
                if r is None:
                    log(f"run {rep + 1}/{a.repeat} case {case}: FAILED: {err}")
                    self.errors[case].append(err)
                    continue
                r["attempts"] = attempts
                if r["disturbed"]:
                    log(f"warning: run {rep + 1}/{a.repeat} case {case} kept although disturbed: "
                        f"{r['disturbed']}")
                r["repeat"] = rep
                self.results[case].append(r)
                extra = ""
                if "captured" in r:
                    extra = (f", captured {r['captured']} ({100 * r['completeness']:.2f}%), "
                             f"drops {r['drops']}, cpu {r['cpu_s']:.3f} s, "
                             f"rss {r['peak_rss_kib'] / 1024:.1f} MiB")
                log(f"run {rep + 1}/{a.repeat} case {case:9s}: sent {r['sent']} "
                    f"at {r['rate'] / 1e6:.3f} Mpps{extra} [{time.time() - t:.1f} s]")
        if a.idle_seconds > 0:
            for rep in range(a.idle_repeat):
                for tool, case in (("rxtxcpu", "b"), ("tcpdump", "e"), ("live", "live"),
                                   ("metrics", "mt"), ("metrics-1s", "mt")):
                    if case not in a.run_cases or case in self.skipped:
                        continue
                    try:
                        r = self.run_idle(tool, a.idle_seconds)
                    except Unsupported as e:
                        if case in OPTIONAL:
                            self.skip(case, e)
                        else:
                            log(f"idle {tool}: FAILED: {e}")
                        continue
                    except BenchError as e:
                        log(f"idle {tool}: FAILED: {e}")
                        continue
                    self.idle[tool].append(r)
                    log(f"idle {tool}: {r['cpu_s']:.4f} cpu s over {r['seconds']:.1f} s, "
                        f"{r['wakeups_per_s']:.1f} wakeups/s"
                        + (f", {r['scrapes']} scrapes" if r.get("scrapes") is not None else ""))

    # -- summary --

    def base_case(self, size):
        """The no-capture case at a frame size."""
        return "a" if size == self.a.size else f"a@{size}"

    def summary(self):
        a = self.a
        cases = {}
        rates = {}
        for case in self.cases():
            if split_case(case)[0] == "a":
                rates[self.case_size(case)] = (
                    {r["repeat"]: r["rate"] for r in self.results[case]},
                    med([r["rate"] for r in self.results[case]]))
        for case in self.cases():
            runs = self.results[case]
            base_rate, a_med = rates.get(self.case_size(case), ({}, None))
            for r in runs:
                # Against the median no-capture rate at the same frame size:
                # one (a) run's noise would otherwise move a whole repetition.
                r["rate_fraction"] = r["rate"] / a_med if a_med else None
                ref = base_rate.get(r["repeat"])
                r["rate_fraction_same_repeat"] = r["rate"] / ref if ref else None
            s = {}
            for key in ("sent", "delivered", "captured", "expected", "drops", "completeness",
                        "cpu_s", "setup_cpu_s", "total_cpu_s", "cpu_ns_per_pkt", "cpu_ns_per_frame", "user_s", "sys_s", "rate",
                        "rate_fraction", "peak_rss_kib", "ring_kib", "rss_minus_ring_kib",
                        "elapsed", "background_load", "flows_seen", "repeating",
                        "repeated_copies", "in_file", "file_records", "reported", "scrapes",
                        "scrape_errors", "scrape_max_latency_ms", "probe_ns", "probe_runs",
                        "bpftool_probe_ns", "no_socket", "other_kernel_drops",
                        "probe_runs_per_drop", "probe_runs_per_frame", "probe_ns_mixed"):
                vals = [r.get(key) for r in runs if r.get(key) is not None]
                if vals:
                    s[key] = {"median": med(vals), "min": min(vals), "max": max(vals),
                              "n": len(vals)}
            if any("exact" in r for r in runs):
                s["exact"] = all(r.get("exact") for r in runs)
            if any("kernel_drops_exact" in r for r in runs):
                s["kernel_drops_exact"] = all(r.get("kernel_drops_exact") for r in runs)
            base, size = split_case(case)
            cases[case] = {"label": CASE_LABELS[base], "base": base, "size": self.case_size(case),
                           "flood": self.profile(case), "summary": s, "runs": runs,
                           "errors": self.errors[case], "skipped": self.skipped.get(case)}
        idle = {}
        for tool, runs in self.idle.items():
            if runs:
                vals = [r["cpu_s"] for r in runs]
                wk = [r["wakeups_per_s"] for r in runs]
                idle[tool] = {"cpu_s": {"median": med(vals), "min": min(vals), "max": max(vals),
                                        "n": len(vals)},
                              "wakeups_per_s": {"median": med(wk), "min": min(wk),
                                                "max": max(wk), "n": len(wk)},
                              "seconds": a.idle_seconds, "runs": runs}
        if "live" in self.skipped:
            idle["live"] = {"skipped": self.skipped["live"]}
        ratios = {}

        def ratio(num, den):
            sn = cases.get(num, {}).get("summary", {})
            sd = cases.get(den, {}).get("summary", {})
            rr = {}
            for key in ("cpu_ns_per_pkt", "cpu_s", "rate_fraction", "completeness",
                        "peak_rss_kib", "rate"):
                if key in sn and key in sd and sd[key]["median"]:
                    rr[key] = sn[key]["median"] / sd[key]["median"]
            # The senders' rate against the denominator's run of the same
            # repetition (run next to it), per repetition.
            rn = {r["repeat"]: r["rate"] for r in cases.get(num, {}).get("runs", [])}
            rd = {r["repeat"]: r["rate"] for r in cases.get(den, {}).get("runs", [])}
            per = [rn[k] / rd[k] for k in sorted(rn) if k in rd and rd[k]]
            if per:
                rr["rate_same_repeat"] = {"median": med(per), "min": min(per),
                                          "max": max(per), "n": len(per)}
            if "drops" in sn and "drops" in sd:
                # Old key names (rxtxcpu/tcpdump pairs) kept for scripts.
                rr["drops_rxtxcpu"] = rr["drops_num"] = sn["drops"]["median"]
                rr["drops_tcpdump"] = rr["drops_den"] = sd["drops"]["median"]
            return rr

        for num, den in PAIRS:
            ratios[f"{num}/{den}"] = ratio(num, den)
        sweep = {}
        for size in a.sizes:
            sfx = "" if size == a.size else f"@{size}"
            rows = {}
            for num, den in SWEEP_PAIRS:
                if num + sfx in cases and den + sfx in cases:
                    key = f"{num}{sfx}/{den}{sfx}"
                    ratios[key] = ratio(num + sfx, den + sfx)
                    rows[f"{num}/{den}"] = ratios[key]
            if rows:
                sweep[str(size)] = rows
        targets = {}
        for num, den, what, target in FEATURE_PAIRS:
            if num not in cases or den not in cases:
                continue
            rr = ratio(num, den)
            rr["what"] = what
            ratios[f"{num}/{den}"] = rr
            if target:
                targets[f"{num}/{den}"] = check_target(target, rr, cases[num],
                                                       cases.get(target.get("probe_case")))
        if "rxtxcpu" in idle and "tcpdump" in idle:
            d = idle["tcpdump"]["cpu_s"]["median"]
            ratios["idle"] = {"cpu_s": (idle["rxtxcpu"]["cpu_s"]["median"] / d) if d else None,
                              "rxtxcpu_cpu_s": idle["rxtxcpu"]["cpu_s"]["median"],
                              "tcpdump_cpu_s": d}
        if "cpu_s" in idle.get("live", {}) and "rxtxcpu" in idle:
            d = idle["rxtxcpu"]["cpu_s"]["median"]
            ratios["idle live/b"] = {
                "cpu_s": (idle["live"]["cpu_s"]["median"] / d) if d else None,
                "live_cpu_s": idle["live"]["cpu_s"]["median"], "rxtxcpu_cpu_s": d}
        memory = {}
        for case, c in cases.items():
            s = c["summary"]
            if "ring_kib" in s and "peak_rss_kib" in s:
                over = s["rss_minus_ring_kib"]["max"]
                memory[case] = {"ring_kib": s["ring_kib"]["median"],
                                "peak_rss_kib": s["peak_rss_kib"]["median"],
                                "rss_minus_ring_kib": s["rss_minus_ring_kib"]["median"],
                                "rss_minus_ring_kib_max": over,
                                "within_target": over <= RSS_OVER_RING_KIB}
        return {"cases": cases, "idle": idle, "ratios": ratios, "sweep": sweep,
                "targets": targets, "memory": memory, "skipped": self.skipped}


def check_target(target, rr, num_case, probe_case=None):
    """Whether a feature ratio meets its issue's target: (ok, text). The
    probe's cost is the probe-cost case's (statistics on), when the target
    names one."""
    s = num_case["summary"]
    parts, ok = [], True
    for key, label in (("cpu_ns_per_pkt", "cpu/pkt"), ("cpu_s", "cpu s")):
        if key in target:
            v = rr.get(key)
            good = v is not None and (v <= target[key] if key == "cpu_ns_per_pkt"
                                      else v < target[key])
            ok &= good
            parts.append(f"{label} {'<=' if key == 'cpu_ns_per_pkt' else '<'} {target[key]:g}")
    if target.get("complete"):
        good = "completeness" in s and s["completeness"]["min"] >= 1.0 and \
            "drops" in s and s["drops"]["max"] == 0
        ok &= good
        parts.append("complete, 0 drops")
    if target.get("exact"):
        good = s.get("exact") is True
        ok &= good
        parts.append("exact count")
    if "rate" in target:
        v = rr.get("rate")
        good = v is not None and v >= target["rate"]
        ok &= good
        parts.append(f"rate >= {target['rate']:g}")
    if "probe_ns" in target:
        ps = probe_case["summary"] if probe_case else s
        v = ps.get("probe_ns", {}).get("median")
        good = v is not None and v <= target["probe_ns"]
        ok &= good
        parts.append(f"probe <= {target['probe_ns']:g} ns")
    if target.get("kernel_drops_exact"):
        good = s.get("kernel_drops_exact") is True
        ok &= good
        parts.append("NO_SOCKET = received")
    return {"issue": target["issue"], "ok": ok,
            "text": f"{', '.join(parts)} (issue {target['issue']}): "
                    + ("met" if ok else "NOT MET")}


def med(vals):
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


# --------------------------------------------------------------------------
# output


def fmt_num(v, kind):
    if v is None:
        return "-"
    if kind == "int":
        return f"{v:,.0f}"
    if kind == "pct":
        return f"{100 * v:.2f}%"
    if kind == "s":
        return f"{v:.3f}"
    if kind == "s4":
        return f"{v:.4f}"
    if kind == "ns":
        return f"{v:,.0f}"
    if kind == "mpps":
        return f"{v / 1e6:.3f}"
    if kind == "frac":
        return f"{v:.3f}"
    if kind == "ns1":
        return f"{v:.1f}"
    if kind == "mib":
        return f"{v / 1024:.1f}"
    return str(v)


def cell(s, key, kind, scale=None):
    d = s.get(key)
    if not d:
        return "-"
    m = fmt_num(d["median"], kind)
    if d["n"] > 1 and d["min"] != d["max"]:
        return f"{m} [{fmt_num(d['min'], kind)}..{fmt_num(d['max'], kind)}]"
    return m


def table(rows, left=1):
    """Rows of cells as aligned lines: the first `left` columns left-aligned,
    the others right-aligned, a rule under the header row."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for i, r in enumerate(rows):
        out.append("  ".join(v.ljust(widths[j]) if j < left else v.rjust(widths[j])
                             for j, v in enumerate(r)).rstrip())
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    return out


def ratio_cells(rr, keys):
    return [f"{rr[k]:.3f}" if rr.get(k) is not None else "-" for k in keys]


def drops_cell(rr):
    if "drops_num" in rr:
        return f"{rr['drops_num']:,.0f}/{rr['drops_den']:,.0f}"
    return "-"


def render(meta, summ):
    lines = []
    lines.append(f"rxtxcpu capture benchmark  {meta['date']}  kernel {meta['kernel']}  "
                 f"{meta['ncpus']} cpus  load at start {meta['loadavg_start']}")
    lines.append(f"flood: {meta['frames_per_cpu']:,} frames of {meta['size']} bytes per cpu "
                 f"from cpus {meta['cpus']}, {meta['repeat']} repetition(s); "
                 f"cells: median [min..max]")
    lines.append(f"flows: {meta['flows']:,} UDP flows, each from one cpu; veth: "
                 f"{meta['veth_queues']} queue(s) per end"
                 + (", XPS tx-i -> i-th cpu" if meta["veth_queues"] > 1 else ""))
    lines.append(f"rxtxcpu: {meta['rxtxcpu_version']}   tcpdump: {meta['tcpdump_version']}")
    if meta.get("dumpcap_version") or meta.get("netsniff_ng_version"):
        lines.append(f"dumpcap: {meta.get('dumpcap_version')}   netsniff-ng: "
                     f"{meta.get('netsniff_ng_version')}   capinfos: "
                     f"{meta.get('capinfos_version')}")
    lines.append(f"commands: {meta['rxtxcpu_cmd']} [-w FILE] vB  |  {meta['tcpdump_cmd']} -w FILE")
    lines.append(f"tmpfs: {meta['tmpfs_dir']} ({meta['tmpfs_type']})   "
                 f"disk: {meta['disk_dir']} ({meta['disk_type']})   wall {meta['wall_s']:.0f} s")
    lines.append("")
    cols = [("case", None, None), ("sent", "delivered", "int"), ("captured", "captured", "int"),
            ("kernel drops", "drops", "int"), ("complete", "completeness", "pct"),
            ("in file", "in_file", "pct"),
            ("setup cpu s", "setup_cpu_s", "s"), ("cpu s", "cpu_s", "s"),
            ("cpu ns/pkt", "cpu_ns_per_pkt", "ns"),
            ("send Mpps", "rate", "mpps"), ("rate/(a)", "rate_fraction", "frac"),
            ("peak RSS MiB", "peak_rss_kib", "mib"), ("bg load", "background_load", "frac")]

    def case_row(case, c, first):
        s = c["summary"]
        row = [first]
        for _, key, kind in cols[1:]:
            row.append(cell(s, key, kind))
        if c.get("skipped"):
            row = [row[0]] + ["SKIPPED"] + ["-"] * (len(cols) - 2)
        elif not c["runs"] and c["errors"]:
            row = [row[0]] + ["FAILED"] + ["-"] * (len(cols) - 2)
        return row

    main = {k: c for k, c in summ["cases"].items() if "@" not in k}
    rows = [[h for h, _, _ in cols]]
    for case, c in main.items():
        rows.append(case_row(case, c, f"({case}) {c['label']}"))
    lines += table(rows)
    lines.append("sent: frames the receiving veth counted (rx_packets delta)   complete: "
                 "captured/sent   cpu: capturer user+sys from ready to exit (setup: "
                 "start to ready, once per capture)")
    lines.append("rate/(a): senders' rate / median no-capture rate   bg load: cpus used by "
                 "other processes during the case (noise; 0.1-0.2 is accounting slack)")
    lines.append("in file: records in the output file(s) / sent, counted with capinfos -c -M "
                 "(dumpcap's and netsniff-ng's captured is that count, not their report)")
    if any(c["flood"] == "unique" for c in main.values()):
        lines.append("(rp): a flood of unique frames (floodgen --unique: each frame's number in "
                     "its IP ID and payload), as in real traffic; (rp-s) is --repeats on the "
                     "standard flood, every flow's frames identical (the worst case)")
    if any(c["flood"] == "nosock" for c in main.values()):
        lines.append(f"(dr-b, dr, dr-p): a flood to vB's own address {RX_IP}, UDP port "
                     f"{FILTER_PORT}, where nothing listens: the kernel drops every frame "
                     f"(NO_SOCKET) after the capture; "
                     + ("kernel.bpf_stats_enabled=1 for (dr-p) and (pa-p) only, 0 for the "
                        "others" if meta.get("bpf_stats") else
                        "kernel.bpf_stats_enabled left alone (--no-bpf-stats)"))
    if any(c["flood"] == "mix" for c in main.values()):
        lines.append(f"(flt-*): a flood where 1 in {meta['filter_every']} frames goes to UDP "
                     f"port {FILTER_PORT}, filter '{meta['filter']}': complete = captured / "
                     f"frames floodgen sent to port {FILTER_PORT}; cpu ns/pkt per captured "
                     f"packet (compare cpu s)")
    for case, c in summ["cases"].items():
        for e in c["errors"][:1]:
            lines.append(f"  ({case}) failed {len(c['errors'])}x: {e.splitlines()[0][:160]}")
        if c.get("skipped"):
            lines.append(f"  ({case}) skipped: {c['skipped'][:200]}")
    for case, c in main.items():
        s = c["summary"]
        if c["flood"] == "mix" and "exact" in s:
            exp = s.get("expected", {}).get("median")
            nofilter = {"flt-b": "b", "flt-c": "c", "flt-e": "e"}.get(c["base"])
            ref = main.get(nofilter, {}).get("summary", {})
            lines.append(f"  ({case}) counted {cell(s, 'captured', 'int')} of "
                         f"{fmt_num(exp, 'int')} matching frames: "
                         + ("exact in every run" if s["exact"] else "NOT EXACT")
                         + f"; cpu ns per frame sent {cell(s, 'cpu_ns_per_frame', 'ns')}"
                         + (f", without the filter ({nofilter}) "
                            f"{cell(ref, 'cpu_ns_per_frame', 'ns')}" if ref else ""))
        if c["base"] == "mt" and "scrapes" in s:
            lines.append(f"  ({case}) scraped every {meta['scrape_interval']:g} s during the "
                         f"flood: {cell(s, 'scrapes', 'int')} scrapes, "
                         f"{cell(s, 'scrape_errors', 'int')} failed, slowest "
                         f"{cell(s, 'scrape_max_latency_ms', 'frac')} ms")
        if c["base"] in DROPS_CASES and "probe_ns" not in s:
            lines.append(f"  ({case}) "
                         + ("" if c["base"] == "dr" else "the probe's cost not measured "
                            "(kernel.bpf_stats_enabled off); ")
                         + f"NO_SOCKET "
                         f"{cell(s, 'no_socket', 'int')} of {cell(s, 'delivered', 'int')} "
                         f"received: " + ("equal in every run" if s.get("kernel_drops_exact")
                                          else "NOT EQUAL"))
        elif c["base"] in DROPS_CASES:
            lines.append(f"  ({case}) the probe: {cell(s, 'probe_ns', 'ns')} ns per run "
                         f"(rxtxcpu -v; bpftool {cell(s, 'bpftool_probe_ns', 'ns1')}), "
                         f"{cell(s, 'probe_runs', 'int')} runs, "
                         f"{cell(s, 'probe_runs_per_drop', 'frac')} per NO_SOCKET drop; "
                         f"NO_SOCKET {cell(s, 'no_socket', 'int')} of "
                         f"{cell(s, 'delivered', 'int')} received: "
                         + ("equal in every run" if s.get("kernel_drops_exact")
                            else "NOT EQUAL")
                         + f", other reasons {cell(s, 'other_kernel_drops', 'int')}")
        if c["base"] in ("pa", "pa-p") and "probe_ns" in s:
            lines.append(f"  ({case}) the probes: {cell(s, 'probe_ns', 'ns')} ns per run "
                         f"(rxtxcpu -v; bpftool {cell(s, 'bpftool_probe_ns', 'ns1')}), "
                         f"{cell(s, 'probe_runs', 'int')} runs, "
                         f"{cell(s, 'probe_runs_per_frame', 'frac')} per frame received")
        elif c["base"] == "pa-p":
            lines.append(f"  ({case}) the probes' cost not measured "
                         f"(kernel.bpf_stats_enabled off, or other traffic in every run)")
        if c["base"] in PATH_CASES and "flows_seen" in s:
            lines.append(f"  ({case}) flow table: {cell(s, 'flows_seen', 'int')} flows seen "
                         f"of {meta['flows']:,} sent")
        if c["base"] == "rp":
            lines.append(f"  ({case}) repeats on unique frames: "
                         f"{cell(s, 'repeating', 'int')} packets repeating (none expected)")
        if c["base"] == "rp-s":
            lines.append(f"  ({case}) repeats: {cell(s, 'repeating', 'int')} packets repeating "
                         f"of {meta['flows']:,} flows of identical frames (the window lists "
                         f"at most 512 per stream), {cell(s, 'repeated_copies', 'int')} "
                         f"repeated copies")
    lines.append("")
    idle = summ["idle"]
    if idle:
        parts = []
        for tool, name in (("rxtxcpu", "rxtxcpu"), ("tcpdump", "tcpdump"),
                           ("live", "rxtxcpu --live"), ("metrics", "rxtxcpu --metrics"),
                           ("metrics-1s", "rxtxcpu --metrics scraped every 1 s")):
            if "cpu_s" in idle.get(tool, {}):
                d = idle[tool]
                sc = d["runs"][0].get("scrapes")
                parts.append(f"{name} {cell(d, 'cpu_s', 's4')} cpu s "
                             f"({cell(d, 'wakeups_per_s', 'frac')} wakeups/s"
                             + (f", {sc} scrapes" if sc is not None else "") + ")")
        lines.append(f"idle cost over {meta['idle_seconds']} s with no traffic: "
                     + ";  ".join(parts))
        if "skipped" in idle.get("live", {}):
            lines.append(f"  (live) skipped: {idle['live']['skipped'][:200]}")
        elif "live" in idle:
            lr = idle["live"]["runs"][0]
            lines.append(f"  (live) --interval={meta['live_interval']:g}, stderr a pipe: "
                         f"{lr['stderr_lines_per_s']:.1f} lines/s, e.g. "
                         + (repr(lr["stderr_sample"][0][:100]) if lr["stderr_sample"] else "none"))
        lines.append("")
    lines.append("ratios rxtxcpu/tcpdump (medians; cpu and RSS: lower is better for rxtxcpu, "
                 "rate and completeness: higher is better)")
    rkeys = ["cpu_ns_per_pkt", "cpu_s", "rate_fraction", "completeness", "peak_rss_kib"]
    rh = ["pair", "cpu ns/pkt", "cpu s", "rate/(a)", "complete", "peak RSS", "drops rx/td"]
    rrows = [rh]
    for num, den in PAIRS:
        rr = summ["ratios"].get(f"{num}/{den}", {})
        rrows.append([f"({num})/({den})"] + ratio_cells(rr, rkeys) + [drops_cell(rr)])
    if "idle" in summ["ratios"]:
        ri = summ["ratios"]["idle"]
        rrows.append(["idle (b)/(e)", "-",
                      f"{ri['cpu_s']:.3f}" if ri.get("cpu_s") is not None else
                      f"{ri['rxtxcpu_cpu_s']:.4f}/{ri['tcpdump_cpu_s']:.4f}",
                      "-", "-", "-", "-"])
    lines += table(rrows)
    feats = [(num, den, what) for num, den, what, _ in FEATURE_PAIRS
             if f"{num}/{den}" in summ["ratios"]]
    if feats or "idle live/b" in summ["ratios"]:
        lines.append("")
        lines.append("feature ratios (medians; numerator/denominator, same run)")
        fh = ["pair", "what", "cpu ns/pkt", "cpu s", "rate/(a)", "complete", "peak RSS",
              "drops", "target"]
        frows = [fh]
        for num, den, what in feats:
            rr = summ["ratios"][f"{num}/{den}"]
            tg = summ["targets"].get(f"{num}/{den}")
            frows.append([f"({num})/({den})", what] + ratio_cells(rr, rkeys)
                         + [drops_cell(rr), tg["text"] if tg else ""])
        if "idle live/b" in summ["ratios"]:
            ri = summ["ratios"]["idle live/b"]
            frows.append(["idle (live)/(b)", "idle --live vs idle capture", "-",
                          f"{ri['cpu_s']:.3f}" if ri.get("cpu_s") is not None else
                          f"{ri['live_cpu_s']:.4f}/{ri['rxtxcpu_cpu_s']:.4f}",
                          "-", "-", "-", "-", ""])
        lines += table(frows, left=2)
    dr, drb = summ["cases"].get("dr"), summ["cases"].get("dr-b")
    if dr and drb and dr["runs"] and drb["runs"]:
        rr = summ["ratios"].get("dr/dr-b", {})
        lines.append("")
        lines.append("--drops on the NO_SOCKET flood (every frame a drop the probe counts), "
                     "against the same capture without it, run next to it (BPF statistics "
                     "off); the probe's cost in (dr-p), statistics on")
        drows = [["case", "cpu ns/pkt", "send Mpps", "probe ns/run",
                  "NO_SOCKET/received"]]
        drp = summ["cases"].get("dr-p")
        for key, c in (("dr-b", drb), ("dr", dr), ("dr-p", drp)):
            if not c or not c["runs"]:
                continue
            s = c["summary"]
            drows.append([f"({key}) {c['label']}", cell(s, "cpu_ns_per_pkt", "ns"),
                          cell(s, "rate", "mpps"),
                          cell(s, "bpftool_probe_ns", "ns1") if "bpftool_probe_ns" in s
                          else cell(s, "probe_ns", "ns") if key in DROPS_CASES else "-",
                          ("equal" if s.get("kernel_drops_exact") else "NOT EQUAL")
                          if key in DROPS_CASES else "-"])
        lines += table(drows)
        same = rr.get("rate_same_repeat")
        lines.append("senders' rate (dr)/(dr-b): median of medians "
                     + (f"{rr['rate']:.3f}" if rr.get("rate") is not None else "-")
                     + ("; per repetition " + cell({"x": same}, "x", "frac") if same else "")
                     + "   cpu ns/pkt (dr)/(dr-b): "
                     + (f"{rr['cpu_ns_per_pkt']:.3f}" if rr.get("cpu_ns_per_pkt") is not None
                        else "-"))
        tg = summ["targets"].get("dr/dr-b")
        if tg:
            lines.append(f"target: {tg['text']}")
    pa, fl = summ["cases"].get("pa"), summ["cases"].get("fl")
    if pa and fl and pa["runs"] and fl["runs"]:
        rr = summ["ratios"].get("pa/fl", {})
        lines.append("")
        lines.append("--path on the standard flood (every frame runs the driver entry probe), "
                     "against --flows alone, run next to it")
        prows = [["case", "complete", "kernel drops", "cpu ns/pkt", "send Mpps",
                  "probe ns/run"]]
        pap = summ["cases"].get("pa-p")
        for key, c in (("fl", fl), ("pa", pa), ("pa-p", pap)):
            if not c or not c["runs"]:
                continue
            s = c["summary"]
            prows.append([f"({key}) {c['label']}", cell(s, "completeness", "pct"),
                          cell(s, "drops", "int"), cell(s, "cpu_ns_per_pkt", "ns"),
                          cell(s, "rate", "mpps"),
                          cell(s, "probe_ns", "ns") if key != "fl" else "-"])
        lines += table(prows)
        same = rr.get("rate_same_repeat")
        lines.append("senders' rate (pa)/(fl): median of medians "
                     + (f"{rr['rate']:.3f}" if rr.get("rate") is not None else "-")
                     + ("; per repetition " + cell({"x": same}, "x", "frac") if same else "")
                     + "   cpu ns/pkt (pa)/(fl): "
                     + (f"{rr['cpu_ns_per_pkt']:.3f}" if rr.get("cpu_ns_per_pkt") is not None
                        else "-"))
        tg = summ["targets"].get("pa/fl")
        if tg:
            lines.append(f"target: {tg['text']}")
    mem = summ.get("memory") or {}
    if mem:
        lines.append("")
        lines.append(f"memory: ring = 'ring per ...' KiB (rxtxcpu -v) x streams; target peak "
                     f"RSS <= ring + {RSS_OVER_RING_KIB // 1024} MiB (issue 16)")
        mrows = [["case", "ring MiB", "peak RSS MiB", "RSS-ring MiB", "worst", "target"]]
        for case, m in mem.items():
            mrows.append([f"({case})", fmt_num(m["ring_kib"], "mib"),
                          fmt_num(m["peak_rss_kib"], "mib"),
                          fmt_num(m["rss_minus_ring_kib"], "mib"),
                          fmt_num(m["rss_minus_ring_kib_max"], "mib"),
                          "met" if m["within_target"] else "NOT MET"])
        lines += table(mrows)
    sweep = {k: c for k, c in summ["cases"].items()
             if c["size"] in meta["sizes"] and c["base"] in SWEEP_BASES and c["flood"] == "std"}
    if meta["sizes"] and any("@" in k for k in sweep):
        lines.append("")
        lines.append(f"frame-size sweep ({meta['sweep_frames_per_cpu']:,} frames per cpu at "
                     f"the other sizes; the {meta['size']}-byte rows are the cases above)")
        scols = [("size", None, None)] + cols
        srows = [[h for h, _, _ in scols]]
        for size in meta["sizes"]:
            for base in SWEEP_BASES:
                key = base if size == meta["size"] else f"{base}@{size}"
                if key in sweep:
                    srows.append([str(size)] + case_row(key, sweep[key],
                                                        f"({base}) {sweep[key]['label']}"))
        lines += table(srows, left=2)
        lines.append("")
        lines.append("sweep ratios rxtxcpu/tcpdump per size (medians)")
        qrows = [["size", "pair", "cpu ns/pkt", "cpu s", "rate/(a)", "complete", "peak RSS",
                  "drops rx/td"]]
        for size, rows_ in summ.get("sweep", {}).items():
            for pair, rr in rows_.items():
                num, den = pair.split("/")
                qrows.append([size, f"({num})/({den})"] + ratio_cells(rr, rkeys)
                             + [drops_cell(rr)])
        lines += table(qrows, left=2)
    return "\n".join(lines)


def git_commit(root):
    """HEAD's commit (with -dirty if the tree has changes), or None."""
    try:
        r = subprocess.run(["git", "-C", root, "rev-parse", "--verify", "-q", "HEAD"],
                           capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "-uno"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return r.stdout.strip() + ("-dirty" if dirty else "")
    except Exception:
        return None


def tool_version(cmd):
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        txt = (r.stdout + r.stderr).strip().splitlines()
        return txt[0] if txt else "?"
    except Exception as e:
        return f"? ({e})"


def read_online():
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return f.read().strip()
    except OSError:
        return None


def online_cpus():
    try:
        with open("/sys/devices/system/cpu/online") as f:
            return parse_cpu_list(f.read().strip())
    except OSError:
        return sorted(os.sched_getaffinity(0))


def parse_cpu_list(s):
    cpus = []
    for part in s.split(","):
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        elif part:
            cpus.append(int(part))
    return sorted(set(cpus))


def select_cases(spec, sizes, main_size):
    """The case ids a --cases list names, in run order: the main cases, the
    feature cases, the sweep by size, then 'live' (idle only)."""
    sweep = [f"{b}@{s}" for s in sizes if s != main_size for b in SWEEP_BASES]
    groups = dict(GROUPS)
    groups["sweep"] = sweep
    groups["all"] = CASE_ORDER + sweep + ["live"]
    chosen = []
    for tok in spec.split(","):
        tok = tok.strip()
        if not tok:
            continue
        drop = tok.startswith("-")
        name = tok[1:] if drop else tok
        if name in groups:
            ids = groups[name]
        elif name in CASE_ORDER or name == "live":
            ids = [name]
        elif "@" in name:
            base, _, size = name.partition("@")
            if base not in SWEEP_BASES or not size.isdigit() or not 42 <= int(size) <= 1514:
                raise ValueError(f"unknown case '{name}' (sweep ids are BASE@SIZE with "
                                 f"BASE one of {','.join(SWEEP_BASES)} and SIZE 42..1514)")
            ids = [base if int(size) == main_size else f"{base}@{int(size)}"]
        else:
            raise ValueError(f"unknown case or group '{name}'; ids: "
                             f"{','.join(CASE_ORDER)},live,BASE@SIZE; groups: "
                             f"{','.join(groups)}")
        for c in ids:
            if drop and c in chosen:
                chosen.remove(c)
            elif not drop and c not in chosen:
                chosen.append(c)
    # A sweep size's rate needs its own no-capture case.
    for c in list(chosen):
        base, size = split_case(c)
        if size and f"a@{size}" not in chosen:
            chosen.append(f"a@{size}")

    def order(c):
        base, size = split_case(c)
        if c == "live":
            return (3, 0, 0)
        if size is None:
            return (0, CASE_ORDER.index(base), 0)
        pos = sizes.index(size) if size in sizes else len(sizes) + size
        return (1, pos, SWEEP_BASES.index(base))

    return sorted(chosen, key=order)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = argparse.ArgumentParser(
        prog="scripts/bench.sh",
        description="Benchmark rxtxcpu against tcpdump on a per-cpu veth flood (run as root).")
    p.add_argument("--frames", type=int, help="frames per cpu per case (default 1000000)")
    p.add_argument("--size", type=int, default=64,
                   help="frame size in bytes, Ethernet header included, FCS excluded (default 64)")
    p.add_argument("--repeat", type=int, help="repetitions of each case (default 3)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    p.add_argument("--quick", action="store_true",
                   help="smoke run of every chosen case: 50000 frames per cpu, 1 repetition, "
                        "no warm-up, no waiting for a quiet machine, 2 s idle (its numbers "
                        "mean nothing)")
    p.add_argument("--binary", default=os.path.join(root, "target/release/rxtxcpu"),
                   help="rxtxcpu binary (default target/release/rxtxcpu)")
    p.add_argument("--floodgen", default=os.path.join(root, "target/release/examples/floodgen"))
    p.add_argument("--tcpdump", default=shutil.which("tcpdump") or "tcpdump")
    p.add_argument("--dumpcap", default=shutil.which("dumpcap") or "dumpcap",
                   help="dumpcap for case dc (skipped with a note when absent)")
    p.add_argument("--netsniff-ng", default=shutil.which("netsniff-ng") or "netsniff-ng",
                   help="netsniff-ng for case nsg (skipped with a note when absent)")
    p.add_argument("--capinfos", default=shutil.which("capinfos") or "capinfos",
                   help="capinfos, which counts the records of the sweep's and the peers' "
                        "files (without it the peers are skipped, other files counted here)")
    p.add_argument("--metrics-port", type=int, default=9101, metavar="PORT",
                   help="port of the metrics case's --metrics=127.0.0.1:PORT, in the "
                        "receiving namespace (default 9101)")
    p.add_argument("--scrape-interval", type=float, default=0.1, metavar="SECONDS",
                   help="the metrics case's scraper GETs /metrics this often during the "
                        "flood (default 0.1)")
    p.add_argument("--no-bpf-stats", dest="bpf_stats", action="store_false",
                   help="leave kernel.bpf_stats_enabled alone in the drop and path cases "
                        "(by default it is 1 for dr-p and pa-p only, which measure the "
                        "probes' cost, and 0 for the rest, whose senders' rate is then "
                        "without the statistics' own cost)")
    p.add_argument("--rxtxcpu-args", default="", metavar="ARGS",
                   help="extra rxtxcpu options for every rxtxcpu case, e.g. '-p'")
    p.add_argument("--tcpdump-args", default="", metavar="ARGS",
                   help="extra tcpdump options, e.g. '-B 16384' for a ring as large as "
                        "rxtxcpu's (tcpdump's default buffer is 2 MiB)")
    p.add_argument("--cpus", help="cpus to flood from (default: all online)")
    p.add_argument("--cases", default="all", metavar="LIST",
                   help="comma-separated case ids and groups, a leading '-' removes "
                        f"(e.g. --cases=all,-sweep); ids: {','.join(CASE_ORDER)},live and "
                        "sweep ids BASE@SIZE (b@1500); groups: "
                        f"{','.join(list(GROUPS) + ['sweep', 'all'])} (default all)")
    p.add_argument("--sizes", default="64,512,1500", metavar="LIST",
                   help="frame sizes of the sweep: the main cases (a-f), png, dc and nsg "
                        "at each size, "
                        "one table with a size column (default 64,512,1500; the --size "
                        "one is the main cases themselves; '' = no sweep)")
    p.add_argument("--sweep-frames", type=int, metavar="N",
                   help="frames per cpu per sweep case (default --frames)")
    p.add_argument("--flows", type=int, default=1024, metavar="N",
                   help="UDP flows the flood is spread over, round-robin, each flow sent "
                        "from one cpu (default 1024)")
    p.add_argument("--filter-every", type=int, default=10, metavar="N",
                   help=f"in the filter cases only 1 in N frames goes to UDP port "
                        f"{FILTER_PORT}, which the filter selects (default 10)")
    p.add_argument("--xdp-mode", default="native",
                   choices=["native", "generic", "auto", "default"],
                   help="the XDP cases run rxtxcpu --xdp=MODE ('default': plain --xdp; "
                        "default native)")
    p.add_argument("--live-interval", type=float, default=1.0, metavar="SECONDS",
                   help="--interval of the idle --live case (default 1)")
    p.add_argument("--veth-queues", type=int, metavar="N",
                   help="queues per veth end (default: one per flooding cpu; 1 = a "
                        "single-queue veth, under which native XDP sees one cpu)")
    p.add_argument("--idle-seconds", type=float, help="idle measurement length (default 10)")
    p.add_argument("--idle-repeat", type=int, help="idle measurements per tool (default 1)")
    p.add_argument("--warmup", type=int,
                   help="warm-up frames per cpu, flooded once with no capture and once per "
                        "case before the measured runs (default frames/10, at least 10000; "
                        "0 = none)")
    p.add_argument("--retries", type=int, default=2,
                   help="run a case again (up to this many times) when it was disturbed by "
                        "cpu hotplug or a sender running off its cpu (default 2)")
    p.add_argument("--quiet-load", type=float, default=0.25,
                   help="before each case wait until other processes use less than this "
                        "many cpus (default 0.25)")
    p.add_argument("--quiet-timeout", type=float,
                   help="wait at most this long for that (default 30 s, with --quick 0; "
                        "0 = do not wait)")
    p.add_argument("--batch", type=int, default=256, help="frames per sendmmsg (default 256)")
    p.add_argument("--settle", type=float, default=1.5,
                   help="seconds to let a capturer drain after the flood before its "
                        "cpu time and files are checked for stability (default 1.5; must "
                        "exceed tcpdump's 1 s block timeout)")
    p.add_argument("--settle-max", type=float, default=15.0)
    p.add_argument("--ready-timeout", type=float, default=30.0)
    p.add_argument("--flood-timeout", type=float, default=900.0)
    p.add_argument("--tmpfs-dir", default="/dev/shm", help="tmpfs for the -w cases (/dev/shm)")
    p.add_argument("--disk-dir", default="/var/tmp", help="disk directory for -w (/var/tmp)")
    a = p.parse_args()

    if a.quick:
        a.frames = a.frames or 50_000
        a.repeat = a.repeat or 1
        a.idle_seconds = 2.0 if a.idle_seconds is None else a.idle_seconds
        a.warmup = 0 if a.warmup is None else a.warmup
        a.quiet_timeout = 0.0 if a.quiet_timeout is None else a.quiet_timeout
    a.frames = a.frames or 1_000_000
    a.repeat = a.repeat or 3
    a.sweep_frames = a.sweep_frames or a.frames
    a.idle_seconds = 10.0 if a.idle_seconds is None else a.idle_seconds
    a.idle_repeat = a.idle_repeat or 1
    a.quiet_timeout = 30.0 if a.quiet_timeout is None else a.quiet_timeout
    if a.warmup is None:
        a.warmup = max(10_000, a.frames // 10)
    if a.frames <= 0 or a.repeat <= 0 or a.sweep_frames <= 0:
        p.error("--frames, --sweep-frames and --repeat must be positive")
    try:
        a.sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    except ValueError:
        p.error(f"invalid --sizes '{a.sizes}'")
    for size in [a.size] + a.sizes:
        if size < 42 or size > 1514:
            p.error(f"frame size {size} is not in 42..1514 (--size, --sizes)")
    a.cpus = parse_cpu_list(a.cpus) if a.cpus else online_cpus()
    if a.flows < len(a.cpus) or a.flows > 64512:
        p.error(f"--flows must be {len(a.cpus)}..64512 (at least one flow per cpu)")
    if a.filter_every < 2:
        p.error("--filter-every must be at least 2")
    a.veth_queues = a.veth_queues or len(a.cpus)
    if not 1 <= a.veth_queues <= len(a.cpus):
        p.error(f"--veth-queues must be 1..{len(a.cpus)} (one per flooding cpu at most)")
    try:
        a.run_cases = select_cases(a.cases, a.sizes, a.size)
    except ValueError as e:
        p.error(str(e))
    if not a.run_cases:
        p.error("--cases selects no case")
    if os.geteuid() != 0:
        p.error("must run as root (network namespaces, AF_PACKET)")
    needs_rxtxcpu = any(Bench.tool_of(c) == "rxtxcpu" for c in a.run_cases)
    for path in (a.floodgen,) + ((a.binary,) if needs_rxtxcpu else ()):
        if not os.access(path, os.X_OK):
            p.error(f"{path} is not an executable (build it: cargo build --release "
                    f"--bin rxtxcpu --example floodgen)")
    a.binary = os.path.abspath(a.binary)
    a.capinfos_ok = bool(shutil.which(a.capinfos))
    if not a.capinfos_ok:
        # The peers' own reports are not trusted: no capinfos, no peers.
        a.dumpcap = a.netsniff_ng = "/nonexistent/capinfos-missing"
    a.floodgen = os.path.abspath(a.floodgen)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    bench = Bench(a)
    t0 = time.time()
    with open("/proc/loadavg") as f:
        loadavg_start = " ".join(f.read().split()[:3])
    try:
        bench.setup()
        bench.run()
    except KeyboardInterrupt:
        log("interrupted; cleaning up")
        cleanup()
        sys.exit(130)
    except BenchError as e:
        log(f"error: {e}")
        cleanup()
        sys.exit(1)
    except BaseException:
        cleanup()
        raise
    summ = bench.summary()
    meta = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "kernel": os.uname().release,
        "host": os.uname().nodename,
        "ncpus": os.cpu_count(),
        "cpus": a.cpus,
        "frames_per_cpu": a.frames,
        "size": a.size,
        "sizes": a.sizes,
        "sweep_frames_per_cpu": a.sweep_frames,
        "cases": a.run_cases,
        "flows": a.flows,
        "filter": bench.filter_expr(),
        "filter_every": a.filter_every,
        "xdp_option": "--xdp" if a.xdp_mode == "default" else f"--xdp={a.xdp_mode}",
        "live_interval": a.live_interval,
        "metrics_port": a.metrics_port,
        "scrape_interval": a.scrape_interval,
        "bpf_stats": a.bpf_stats,
        "veth_queues": a.veth_queues,
        "repeat": a.repeat,
        "warmup_frames_per_cpu": a.warmup,
        "idle_seconds": a.idle_seconds,
        "settle_s": a.settle,
        "rxtxcpu_cmd": " ".join(["rxtxcpu", "-v", "-d", "rx"] + shlex.split(a.rxtxcpu_args)),
        "tcpdump_cmd": " ".join(["tcpdump", "-i", "vB", "-Q", "in", "-n", "-p", "-Z", "root"]
                                + shlex.split(a.tcpdump_args)),
        "rxtxcpu_args": a.rxtxcpu_args,
        "tcpdump_args": a.tcpdump_args,
        "rxtxcpu_binary": a.binary,
        "rxtxcpu_version": tool_version([a.binary, "--version"]),
        "tcpdump_version": tool_version([a.tcpdump, "--version"]),
        "dumpcap_version": tool_version([a.dumpcap, "-v"]) if shutil.which(a.dumpcap) else None,
        "netsniff_ng_version": (tool_version([a.netsniff_ng, "-v"])
                                if shutil.which(a.netsniff_ng) else None),
        "capinfos_version": tool_version([a.capinfos, "-v"]) if a.capinfos_ok else None,
        "git_commit": git_commit(root),
        "tmpfs_dir": a.tmpfs_dir,
        "tmpfs_type": bench.tmpfs_type,
        "disk_dir": a.disk_dir,
        "disk_type": bench.disk_type,
        "wall_s": round(time.time() - t0, 1),
        "loadavg_start": loadavg_start,
    }
    cleanup()
    print(render(meta, summ), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"meta": meta, **summ}, f, indent=2)
            f.write("\n")
        log(f"wrote {a.json}")
    failed = any(c["errors"] and not c["runs"] for c in summ["cases"].values())
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
