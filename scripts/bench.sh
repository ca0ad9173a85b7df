#!/usr/bin/env bash
# Benchmark rxtxcpu against tcpdump (and dumpcap, netsniff-ng) on a per-cpu packet flood.
#
# Usage (as root, from anywhere):
#
#     scripts/bench.sh                        # everything: 1,000,000 frames/cpu, 3 repetitions
#     scripts/bench.sh --quick                # smoke run of every case (about a minute)
#     scripts/bench.sh --frames 2000000 --size 64 --repeat 5 --json bench.json
#     scripts/bench.sh --cases=main,flows     # some cases only (ids or groups)
#     scripts/bench.sh --cases=all,-sweep     # all but the frame-size sweep
#     scripts/bench.sh --help                 # all options and case ids
#
# It builds target/release/rxtxcpu and the traffic generator
# target/release/examples/floodgen (cargo build --release), creates two
# network namespaces joined by a veth pair (192.0.2.0/24, IPv6 off, one queue
# per flooding cpu with XPS), floods the receiving end from one sender pinned
# to each cpu over 1024 UDP flows, and measures each case on the same flood:
# (a) no capture, (b) rxtxcpu counting, (c)/(d) rxtxcpu -w to tmpfs/disk,
# (e) tcpdump -w /dev/null, (f) tcpdump -w to tmpfs/disk; then one case per
# per-packet feature: (fl) --flows, (rp) --repeats on a flood of unique
# frames (rp-s: on the standard flood, every flow a repeating packet), (png) --pcapng -w tmpfs,
# (mt) --metrics counting while a scraper GETs /metrics every 100 ms
# over one kept connection during the flood (against (b), and against
# (mt-n), the same never scraped: what the scrapes cost), (dr) --drops counting on a flood the
# kernel drops itself (to vB's own address, a UDP port nobody listens on:
# every frame NO_SOCKET, so the probe runs per frame) against (dr-b),
# counting on the same flood, alternated: the senders' rate, cpu per
# packet, NO_SOCKET against frames received, with kernel.bpf_stats_enabled=0
# (as a user runs it); (dr-p) the same as (dr) with the statistics on for
# that run only: the probe's ns per run from the kernel's BPF statistics;
# (pa) --flows --path against (fl), alternated, statistics off: the senders'
# rate, complete, no drops; (pa-p) with them on: the path probes' ns per run;
# the peers (dc) dumpcap -w tmpfs (pcapng)
# and (nsg) netsniff-ng --out tmpfs (pcap), defaults for each, skipped with
# a note when not installed, their records counted in the files with
# capinfos, (flt-b/flt-c/flt-e) --filter on a flood where 1 in 10 frames matches
# (rxtxcpu counting and -w tmpfs, tcpdump with the same filter), (x1/x2)
# --xdp counting and -w tmpfs (skipped with a note while the binary rejects
# --xdp); a sweep of (a)-(f), (png), (dc) and (nsg) over frame sizes 64, 512
# and 1500, files counted with capinfos ('in file': records / frames sent);
# and each capturer's idle cpu cost and wakeups, rxtxcpu --live's (skipped
# while the binary rejects --live) and --metrics', never scraped and scraped
# once a second, too. It prints tables with medians, spreads and ratios
# (rxtxcpu/tcpdump, each feature against its reference, and per size
# --pcapng against -w, dumpcap and tcpdump, with the issues' targets), ring
# memory next to peak RSS, and writes JSON with --json FILE.
#
# Environment: NO_BUILD=1 skips the cargo build (e.g. with --binary PATH).
# bpftool (optional) checks the probes' statistics in the drops and path cases.
# Needs: ip (iproute2), tcpdump, python3 (standard library only), cargo;
# ethtool for the XDP cases' per-queue check (optional); capinfos and
# dumpcap (apt-get install tshark) and netsniff-ng for the peers
# (optional: their cases are skipped without them).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)

for arg in "$@"; do
    case $arg in
        -h|--help) exec python3 "$here/bench.py" --help ;;
    esac
done

if [[ $(id -u) -ne 0 ]]; then
    echo "bench.sh: must run as root (network namespaces, AF_PACKET sockets)" >&2
    exit 1
fi
missing=()
for tool in ip tcpdump python3; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
    echo "bench.sh: missing tools: ${missing[*]} (apt-get install -y iproute2 tcpdump python3)" >&2
    exit 1
fi

# Build the traffic generator, and rxtxcpu unless --binary names another one.
targets=(--example floodgen)
own_binary=0
for arg in "$@"; do
    case $arg in
        --binary|--binary=*) own_binary=1 ;;
    esac
done
((own_binary)) || targets+=(--bin rxtxcpu)
if [[ ${NO_BUILD:-0} != 1 ]]; then
    echo "bench.sh: building (cargo build --release ${targets[*]})" >&2
    (cd "$root" && cargo build --release --quiet "${targets[@]}") >&2
fi

# Names the Python driver derives from this tag: namespaces rxbench-{tx,rx}-TAG,
# temp dirs rxbench-TAG-* under the tmpfs and disk directories.
export RXBENCH_TAG=$$

# The drops and path cases set kernel.bpf_stats_enabled; the driver restores it,
# and so does this trap should the driver die before it could.
bpf_stats=/proc/sys/kernel/bpf_stats_enabled
bpf_stats_before=$(cat "$bpf_stats" 2>/dev/null || true)

cleanup() {
    local ns pid
    for ns in "rxbench-tx-$RXBENCH_TAG" "rxbench-rx-$RXBENCH_TAG"; do
        if ip netns list 2>/dev/null | grep -qw "$ns"; then
            # Processes the driver started in our namespaces (if it died hard).
            for pid in $(ip netns pids "$ns" 2>/dev/null); do
                kill -KILL "$pid" 2>/dev/null || true
            done
            ip netns del "$ns" 2>/dev/null || true
        fi
    done
    rm -rf /dev/shm/rxbench-"$RXBENCH_TAG"-* /var/tmp/rxbench-"$RXBENCH_TAG"-* 2>/dev/null || true
    if [[ -n $bpf_stats_before && $(cat "$bpf_stats" 2>/dev/null) != "$bpf_stats_before" ]]; then
        echo "$bpf_stats_before" > "$bpf_stats" 2>/dev/null || true
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

python3 "$here/bench.py" "$@"
