#!/usr/bin/env python3
"""rxtxcpu capture benchmark: rxtxcpu against tcpdump on a per-cpu veth flood.

Run through scripts/bench.sh (which builds the binaries), as root:

    scripts/bench.sh [--frames N] [--size BYTES] [--repeat K] [--json FILE]
                     [--quick] [--binary PATH] ...

It builds two network namespaces joined by a veth pair (vA in the sender
namespace, vB in the receiver namespace, addresses from 192.0.2.0/24, IPv6
off), and floods vB from one floodgen sender thread pinned to each cpu, so
each cpu's receive path carries its own flood. The frames are addressed to
vB's MAC (PACKET_HOST) but to an unassigned IPv4 address with forwarding
off, so the receiver drops them after capture without answering.

Cases, each on the same flood:
  a        no capture (the senders' rate alone: the machine's limit)
  b        rxtxcpu -d rx vB                      (counting only)
  c        rxtxcpu -d rx -w TMPFS/rxtxcpu.pcap vB
  d        rxtxcpu -d rx -w DISK/rxtxcpu.pcap vB
  e        tcpdump -i vB -Q in -n -w /dev/null
  f-tmpfs  tcpdump -i vB -Q in -n -w TMPFS/tcpdump.pcap
  f-disk   tcpdump -i vB -Q in -n -w DISK/tcpdump.pcap
plus the idle cost of rxtxcpu (b) and tcpdump (e): cpu seconds over
--idle-seconds (10 s) of capture with no traffic.

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

CASE_ORDER = ["a", "b", "e", "c", "f-tmpfs", "d", "f-disk"]
PAIRS = [("b", "e"), ("c", "f-tmpfs"), ("d", "f-disk")]


def log(msg):
    print(f"bench: {msg}", file=sys.stderr, flush=True)


class BenchError(Exception):
    pass


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


class Net:
    def __init__(self, tag):
        self.tx = f"rxbench-tx-{tag}"
        self.rx = f"rxbench-rx-{tag}"
        self.tx_if = "vA"
        self.rx_if = "vB"

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
        run(
            ["ip", "-n", self.tx, "link", "add", self.tx_if, "address", TX_MAC,
             "type", "veth", "peer", "name", self.rx_if, "address", RX_MAC, "netns", self.rx]
        )
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
        for stream, sink, watch in ((self.proc.stdout, self.out, False),
                                    (self.proc.stderr, self.err, True)):
            t = threading.Thread(target=self._reader, args=(stream, sink, watch), daemon=True)
            t.start()
            self.threads.append(t)
        deadline = time.time() + timeout
        while not self.ready.wait(0.05):
            if self._exited_early():
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
    return {"captured": total, "captured_per_cpu": per_cpu, "drops": drop_total,
            "drops_per_cpu": drops}


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


def pcap_records(path):
    """Number of complete records in a pcap file (None if not pcap)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
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


class Bench:
    def __init__(self, args):
        self.a = args
        self.tag = os.environ.get("RXBENCH_TAG") or str(os.getpid())
        self.net = Net(self.tag)
        self.cpus = args.cpus
        self.results = {c: [] for c in CASE_ORDER}
        self.errors = {c: [] for c in CASE_ORDER}
        self.idle = {"rxtxcpu": [], "tcpdump": []}

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
        log(f"namespaces {self.net.tx} ({self.net.tx_if}) -> {self.net.rx} ({self.net.rx_if}), "
            f"cpus {self.cpus}, {a.frames} frames of {a.size} bytes per cpu")
        self.check_quiet_link()

    def check_quiet_link(self):
        before = (self.net.rx_stats(), self.net.tx_stats())
        time.sleep(0.5)
        after = (self.net.rx_stats(), self.net.tx_stats())
        if before != after:
            log(f"warning: the link is not quiet without a flood: {before} -> {after}")

    # -- the pieces of a run --

    def flood(self, frames):
        a = self.a
        cmd = ["ip", "netns", "exec", self.net.tx, a.floodgen, "--ifname", self.net.tx_if,
               "--count", str(frames), "--size", str(a.size),
               "--cpus", ",".join(map(str, self.cpus)), "--dst-mac", RX_MAC,
               "--src-mac", TX_MAC, "--src-ip", TX_IP, "--dst-ip", DST_IP,
               "--batch", str(a.batch), "--quiet"]
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
        rx = [a.binary, "-v", "-d", "rx"] + shlex.split(a.rxtxcpu_args)
        # -p: no promiscuous mode, like rxtxcpu without -p; -Z root: keep
        # root so it can write to our root-owned temp dirs.
        td = [a.tcpdump, "-i", self.net.rx_if, "-Q", "in", "-n", "-p", "-Z", "root"] + \
            shlex.split(a.tcpdump_args)
        ifn = self.net.rx_if
        if case == "a":
            return None, None
        if case == "b":
            return "rxtxcpu", rx + [ifn]
        if case == "c":
            return "rxtxcpu", rx + ["-w", os.path.join(self.tmpfs_dir, "rxtxcpu.pcap"), ifn]
        if case == "d":
            return "rxtxcpu", rx + ["-w", os.path.join(self.disk_dir, "rxtxcpu.pcap"), ifn]
        if case == "e":
            return "tcpdump", td + ["-w", "/dev/null"]
        if case == "f-tmpfs":
            return "tcpdump", td + ["-w", os.path.join(self.tmpfs_dir, "tcpdump.pcap")]
        if case == "f-disk":
            return "tcpdump", td + ["-w", os.path.join(self.disk_dir, "tcpdump.pcap")]
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

    def run_case(self, case, frames, verify_files=True):
        a = self.a
        idle_load = self.wait_quiet()
        tool, argv = self.capturer_argv(case)
        self.clear_files()
        if case in ("d", "f-disk"):
            os.sync()  # no writeback of an earlier case competes with this one
        online0 = read_online()
        busy0, own0, wall0 = system_busy_s(), own_cpu_s(), time.time()
        cap = None
        if argv:
            cap = Capturer(self.net, argv)
            cap.start(timeout=a.ready_timeout)
        try:
            rx0, tx0 = self.net.rx_stats(), self.net.tx_stats()
            fl = self.flood(frames)
            settle = 0.0
            if cap:
                settle = cap.settle(a.settle, a.settle_max, files=lambda: self.out_files(case))
            rx1, tx1 = self.net.rx_stats(), self.net.tx_stats()
            if cap:
                cap.stop()
        except BaseException:
            if cap and cap.status is None:
                try:
                    cap.stop(sig=signal.SIGKILL, timeout=5)
                except Exception:
                    pass
            raise
        r = {
            "case": case,
            "frames_per_cpu": frames,
            "sent": fl["sent"],
            "delivered": rx1["rx_packets"] - rx0["rx_packets"],
            "rx_dropped": rx1["rx_dropped"] - rx0["rx_dropped"],
            "veth_tx_dropped": tx1["tx_dropped"] - tx0["tx_dropped"],
            "replies": rx1["tx_packets"] - rx0["tx_packets"],
            "elapsed": fl["elapsed"],
            "rate": fl["rate"],
            "send_retries": sum(c["retries"] for c in fl["per_cpu"]),
            "per_cpu_rate": {str(c["cpu"]): c["rate"] for c in fl["per_cpu"]},
            "per_cpu_sent": {str(c["cpu"]): c["sent"] for c in fl["per_cpu"]},
        }
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
        if cap:
            r["tool"] = tool
            r["argv"] = argv
            r["exit"] = cap.status_text()
            r["settle_s"] = round(settle, 3)
            r["cpu_s"] = cap.cpu_s()
            r["user_s"] = cap.rusage.ru_utime
            r["sys_s"] = cap.rusage.ru_stime
            r["peak_rss_kib"] = cap.hwm_kib if cap.hwm_kib else cap.rusage.ru_maxrss
            r["stderr_tail"] = cap.err[-8:]
            if tool == "rxtxcpu":
                r.update(parse_rxtxcpu(cap.out, cap.err))
            else:
                r.update(parse_tcpdump(cap.out, cap.err))
            if tool == "rxtxcpu" and not r["disturbed"]:
                got = {str(k): v for k, v in r["captured_per_cpu"].items()}
                if got != r["per_cpu_sent"] and r["captured"] == r["sent"]:
                    log(f"warning: case {case}: rxtxcpu's per-cpu counts {got} differ from "
                        f"the frames each cpu sent {r['per_cpu_sent']}")
            if os.WIFSIGNALED(cap.status) or os.WEXITSTATUS(cap.status) != 0:
                raise BenchError(f"{tool} ended with {r['exit']}: " + " | ".join(cap.err[-5:]))
            base = r["delivered"] or r["sent"]
            r["completeness"] = r["captured"] / base if base else None
            r["cpu_ns_per_pkt"] = (r["cpu_s"] * 1e9 / r["captured"]) if r["captured"] else None
            if verify_files and case not in ("b", "e"):
                files = self.out_files(case)
                r["files"] = {os.path.basename(f): _size(f) for f in files}
                r["file_bytes"] = sum(_size(f) for f in files)
                recs = [pcap_records(f) for f in files]
                if any(x is None for x in recs):
                    r["file_records"] = None
                    log(f"warning: case {case}: an output file is not pcap: {r['files']}")
                else:
                    r["file_records"] = sum(recs)
                    if r["file_records"] != r["captured"]:
                        log(f"warning: case {case}: files hold {r['file_records']} records "
                            f"but {tool} reported {r['captured']} captured")
        self.clear_files()
        return r

    def run_idle(self, tool, seconds):
        case = "b" if tool == "rxtxcpu" else "e"
        _, argv = self.capturer_argv(case)
        cap = Capturer(self.net, argv)
        cap.start(timeout=self.a.ready_timeout)
        try:
            time.sleep(0.2)
            c0, w0, t0 = cap.cpu_ns(), proc_ctxt_switches(cap.proc.pid), time.time()
            time.sleep(seconds)
            c1, w1, t1 = cap.cpu_ns(), proc_ctxt_switches(cap.proc.pid), time.time()
            cap.stop()
        except BaseException:
            if cap.status is None:
                cap.stop(sig=signal.SIGKILL, timeout=5)
            raise
        return {"tool": tool, "seconds": t1 - t0, "cpu_s": (c1 - c0) / 1e9,
                "cpu_s_per_s": (c1 - c0) / 1e9 / (t1 - t0),
                "wakeups_per_s": (w1 - w0) / (t1 - t0), "total_cpu_s": cap.cpu_s(),
                "exit": cap.status_text()}

    # -- the whole run --

    def cases(self):
        return [c for c in CASE_ORDER if c in self.a.cases]

    def run(self):
        a = self.a
        cases = self.cases()
        if a.warmup > 0:
            log(f"warm-up: {a.warmup} frames per cpu, no capture")
            self.flood(a.warmup)
            for case in cases:
                if case == "a":
                    continue
                try:
                    self.run_case(case, a.warmup, verify_files=False)
                except BenchError as e:
                    log(f"warm-up of case {case} failed: {e}")
        for rep in range(a.repeat):
            for case in cases:
                t = time.time()
                attempts = 0
                while True:
                    attempts += 1
                    try:
                        r = self.run_case(case, a.frames)
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
                    break
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
                log(f"run {rep + 1}/{a.repeat} case {case:7s}: sent {r['sent']} "
                    f"at {r['rate'] / 1e6:.3f} Mpps{extra} [{time.time() - t:.1f} s]")
        if a.idle_seconds > 0:
            for rep in range(a.idle_repeat):
                for tool in ("rxtxcpu", "tcpdump"):
                    if tool == "rxtxcpu" and "b" not in cases:
                        continue
                    if tool == "tcpdump" and "e" not in cases:
                        continue
                    try:
                        r = self.run_idle(tool, a.idle_seconds)
                    except BenchError as e:
                        log(f"idle {tool}: FAILED: {e}")
                        continue
                    self.idle[tool].append(r)
                    log(f"idle {tool}: {r['cpu_s']:.4f} cpu s over {r['seconds']:.1f} s, "
                        f"{r['wakeups_per_s']:.1f} wakeups/s")

    # -- summary --

    def summary(self):
        a = self.a
        cases = {}
        base_rate = {r["repeat"]: r["rate"] for r in self.results.get("a", [])}
        a_med = med([r["rate"] for r in self.results.get("a", [])])
        for case in self.cases():
            runs = self.results[case]
            for r in runs:
                # Against the median no-capture rate: one (a) run's noise
                # would otherwise move a whole repetition.
                r["rate_fraction"] = r["rate"] / a_med if a_med else None
                ref = base_rate.get(r["repeat"])
                r["rate_fraction_same_repeat"] = r["rate"] / ref if ref else None
            s = {}
            for key in ("sent", "delivered", "captured", "drops", "completeness", "cpu_s",
                        "cpu_ns_per_pkt", "user_s", "sys_s", "rate", "rate_fraction", "peak_rss_kib", "elapsed",
                        "background_load"):
                vals = [r.get(key) for r in runs if r.get(key) is not None]
                if vals:
                    s[key] = {"median": med(vals), "min": min(vals), "max": max(vals),
                              "n": len(vals)}
            cases[case] = {"label": CASE_LABELS[case], "summary": s, "runs": runs,
                           "errors": self.errors[case]}
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
        ratios = {}
        for num, den in PAIRS:
            sn = cases.get(num, {}).get("summary", {})
            sd = cases.get(den, {}).get("summary", {})
            rr = {}
            for key in ("cpu_ns_per_pkt", "cpu_s", "rate_fraction", "completeness",
                        "peak_rss_kib"):
                if key in sn and key in sd and sd[key]["median"]:
                    rr[key] = sn[key]["median"] / sd[key]["median"]
            if "drops" in sn and "drops" in sd:
                rr["drops_rxtxcpu"] = sn["drops"]["median"]
                rr["drops_tcpdump"] = sd["drops"]["median"]
            ratios[f"{num}/{den}"] = rr
        if "rxtxcpu" in idle and "tcpdump" in idle:
            d = idle["tcpdump"]["cpu_s"]["median"]
            ratios["idle"] = {"cpu_s": (idle["rxtxcpu"]["cpu_s"]["median"] / d) if d else None,
                              "rxtxcpu_cpu_s": idle["rxtxcpu"]["cpu_s"]["median"],
                              "tcpdump_cpu_s": d}
        return {"cases": cases, "idle": idle, "ratios": ratios}


CASE_LABELS = {
    "a": "no capture",
    "b": "rxtxcpu count",
    "c": "rxtxcpu -w tmpfs",
    "d": "rxtxcpu -w disk",
    "e": "tcpdump -w /dev/null",
    "f-tmpfs": "tcpdump -w tmpfs",
    "f-disk": "tcpdump -w disk",
}


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


def render(meta, summ):
    lines = []
    lines.append(f"rxtxcpu capture benchmark  {meta['date']}  kernel {meta['kernel']}  "
                 f"{meta['ncpus']} cpus  load at start {meta['loadavg_start']}")
    lines.append(f"flood: {meta['frames_per_cpu']:,} frames of {meta['size']} bytes per cpu "
                 f"from cpus {meta['cpus']}, {meta['repeat']} repetition(s); "
                 f"cells: median [min..max]")
    lines.append(f"rxtxcpu: {meta['rxtxcpu_version']}   tcpdump: {meta['tcpdump_version']}")
    lines.append(f"commands: {meta['rxtxcpu_cmd']} [-w FILE] vB  |  {meta['tcpdump_cmd']} -w FILE")
    lines.append(f"tmpfs: {meta['tmpfs_dir']} ({meta['tmpfs_type']})   "
                 f"disk: {meta['disk_dir']} ({meta['disk_type']})")
    lines.append("")
    cols = [("case", None, None), ("sent", "delivered", "int"), ("captured", "captured", "int"),
            ("kernel drops", "drops", "int"), ("complete", "completeness", "pct"),
            ("cpu s", "cpu_s", "s"), ("cpu ns/pkt", "cpu_ns_per_pkt", "ns"),
            ("send Mpps", "rate", "mpps"), ("rate/(a)", "rate_fraction", "frac"),
            ("peak RSS MiB", "peak_rss_kib", "mib"), ("bg load", "background_load", "frac")]
    rows = [[h for h, _, _ in cols]]
    for case, c in summ["cases"].items():
        s = c["summary"]
        row = [f"({case}) {c['label']}"]
        for _, key, kind in cols[1:]:
            row.append(cell(s, key, kind))
        if not c["runs"] and c["errors"]:
            row = [row[0]] + ["FAILED"] + ["-"] * (len(cols) - 2)
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    for i, r in enumerate(rows):
        lines.append("  ".join(v.ljust(widths[j]) if j == 0 else v.rjust(widths[j])
                               for j, v in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("sent: frames the receiving veth counted (rx_packets delta)   complete: "
                 "captured/sent   cpu: capturer user+sys")
    lines.append("rate/(a): senders' rate / median no-capture rate   bg load: cpus used by "
                 "other processes during the case (noise; 0.1-0.2 is accounting slack)")
    for case, c in summ["cases"].items():
        for e in c["errors"][:1]:
            lines.append(f"  ({case}) failed {len(c['errors'])}x: {e.splitlines()[0][:160]}")
    lines.append("")
    idle = summ["idle"]
    if idle:
        parts = []
        for tool in ("rxtxcpu", "tcpdump"):
            if tool in idle:
                d = idle[tool]
                parts.append(f"{tool} {cell(d, 'cpu_s', 's4')} cpu s "
                             f"({cell(d, 'wakeups_per_s', 'frac')} wakeups/s)")
        lines.append(f"idle cost over {meta['idle_seconds']} s with no traffic: "
                     + ";  ".join(parts))
        lines.append("")
    lines.append("ratios rxtxcpu/tcpdump (medians; cpu and RSS: lower is better for rxtxcpu, "
                 "rate and completeness: higher is better)")
    rh = ["pair", "cpu ns/pkt", "cpu s", "rate/(a)", "complete", "peak RSS", "drops rx/td"]
    rrows = [rh]
    for num, den in PAIRS:
        rr = summ["ratios"].get(f"{num}/{den}", {})

        def f(k):
            return f"{rr[k]:.3f}" if rr.get(k) is not None else "-"

        drops = "-"
        if "drops_rxtxcpu" in rr:
            drops = f"{rr['drops_rxtxcpu']:,.0f}/{rr['drops_tcpdump']:,.0f}"
        rrows.append([f"({num})/({den})", f("cpu_ns_per_pkt"), f("cpu_s"), f("rate_fraction"),
                      f("completeness"), f("peak_rss_kib"), drops])
    if "idle" in summ["ratios"]:
        ri = summ["ratios"]["idle"]
        rrows.append(["idle (b)/(e)", "-",
                      f"{ri['cpu_s']:.3f}" if ri.get("cpu_s") is not None else
                      f"{ri['rxtxcpu_cpu_s']:.4f}/{ri['tcpdump_cpu_s']:.4f}",
                      "-", "-", "-", "-"])
    widths = [max(len(r[i]) for r in rrows) for i in range(len(rh))]
    for i, r in enumerate(rrows):
        lines.append("  ".join(v.ljust(widths[j]) if j == 0 else v.rjust(widths[j])
                               for j, v in enumerate(r)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
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
                   help="smoke run: 50000 frames per cpu, 1 repetition, 2 s idle")
    p.add_argument("--binary", default=os.path.join(root, "target/release/rxtxcpu"),
                   help="rxtxcpu binary (default target/release/rxtxcpu)")
    p.add_argument("--floodgen", default=os.path.join(root, "target/release/examples/floodgen"))
    p.add_argument("--tcpdump", default=shutil.which("tcpdump") or "tcpdump")
    p.add_argument("--rxtxcpu-args", default="", metavar="ARGS",
                   help="extra rxtxcpu options for every rxtxcpu case, e.g. '-p'")
    p.add_argument("--tcpdump-args", default="", metavar="ARGS",
                   help="extra tcpdump options, e.g. '-B 16384' for a ring as large as "
                        "rxtxcpu's (tcpdump's default buffer is 2 MiB)")
    p.add_argument("--cpus", help="cpus to flood from (default: all online)")
    p.add_argument("--cases", default=",".join(CASE_ORDER),
                   help=f"comma-separated subset of {','.join(CASE_ORDER)}")
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
    p.add_argument("--quiet-timeout", type=float, default=30.0,
                   help="wait at most this long for that (default 30 s; 0 = do not wait)")
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
    a.frames = a.frames or 1_000_000
    a.repeat = a.repeat or 3
    a.idle_seconds = 10.0 if a.idle_seconds is None else a.idle_seconds
    a.idle_repeat = a.idle_repeat or 1
    if a.warmup is None:
        a.warmup = max(10_000, a.frames // 10)
    a.cases = [c.strip() for c in a.cases.split(",") if c.strip()]
    bad = [c for c in a.cases if c not in CASE_ORDER]
    if bad:
        p.error(f"unknown case(s) {bad}; choose from {CASE_ORDER}")
    if a.frames <= 0 or a.repeat <= 0:
        p.error("--frames and --repeat must be positive")
    if a.size < 42 or a.size > 1514:
        p.error("--size must be 42..1514")
    a.cpus = parse_cpu_list(a.cpus) if a.cpus else online_cpus()
    if os.geteuid() != 0:
        p.error("must run as root (network namespaces, AF_PACKET)")
    for path in (a.floodgen,) + ((a.binary,) if set("bcd") & set(a.cases) else ()):
        if not os.access(path, os.X_OK):
            p.error(f"{path} is not an executable (build it: cargo build --release "
                    f"--bin rxtxcpu --example floodgen)")
    a.binary = os.path.abspath(a.binary)
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
