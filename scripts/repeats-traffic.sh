#!/usr/bin/env bash
# Captures for checking --repeats' default MIN (src/repeats/mod.rs,
# DEFAULT_MIN), made with tcpdump in network namespaces of their own:
#
#   ordinary.pcap  two namespaces on a veth, each direction rate-limited
#                  with a short queue (tbf) so that it drops: four TCP
#                  transfers (IPv4 and IPv6 at once, twice) with their
#                  retransmissions and duplicate ACKs, pings both ways,
#                  pings to an address nobody has (ARP and neighbour
#                  solicitations retried every second)
#   nosack.pcap    the same with TCP SACK and timestamps off
#   loop.pcap      a routing loop: namespaces A and B route
#                  198.51.100.0/24 to each other over one veth, C pings
#                  198.51.100.1 through A three times; captured on A's end
#                  of A-B (63 copies of each ping)
#
# Usage (as root): scripts/repeats-traffic.sh DIR
# then, for each file:
#   REPEATS_PCAP=DIR/ordinary.pcap cargo test --release --lib \
#       repeats_in_a_capture -- --ignored --nocapture
# which prints what each MIN from 2 to 12 would report.
#
# Needs ip, tc (tbf), tcpdump, ping and python3. The namespaces are
# deleted on exit, whatever happens.
set -euo pipefail

DIR=${1:?usage: $0 DIR}
mkdir -p "$DIR"
NS=(rpt-a-$$ rpt-b-$$ rpt-c-$$)
A=${NS[0]} B=${NS[1]} C=${NS[2]}
TCPDUMP=

cleanup() {
    if [ -n "$TCPDUMP" ]; then kill "$TCPDUMP" 2>/dev/null || true; fi
    for n in "${NS[@]}"; do ip netns del "$n" 2>/dev/null || true; done
}
trap cleanup EXIT

# Captures on interface $2 of namespace $1 into $3 until stop_capture.
start_capture() {
    ip netns exec "$1" tcpdump -n -s 256 -i "$2" -w "$3" -U 2>/dev/null &
    TCPDUMP=$!
    sleep 1
}

stop_capture() {
    sleep 1
    kill "$TCPDUMP"
    wait "$TCPDUMP" 2>/dev/null || true
    TCPDUMP=
}

# ordinary.pcap (or nosack.pcap with "nosack").
ordinary() {
    local out=$1 mode=${2:-}
    ip netns add "$A"
    ip netns add "$B"
    ip link add va netns "$A" type veth peer name vb netns "$B"
    ip -n "$A" addr add 192.0.2.1/24 dev va
    ip -n "$B" addr add 192.0.2.2/24 dev vb
    ip -n "$A" addr add 2001:db8::1/64 dev va nodad
    ip -n "$B" addr add 2001:db8::2/64 dev vb nodad
    for n in "$A" "$B"; do ip -n "$n" link set lo up; done
    ip -n "$A" link set va up
    ip -n "$B" link set vb up
    ip netns exec "$A" tc qdisc add dev va root tbf rate 100mbit burst 16kb limit 24kb
    ip netns exec "$B" tc qdisc add dev vb root tbf rate 20mbit burst 4kb limit 6kb
    if [ "$mode" = nosack ]; then
        for n in "$A" "$B"; do
            ip netns exec "$n" sysctl -qw net.ipv4.tcp_sack=0 net.ipv4.tcp_timestamps=0
        done
    fi
    start_capture "$A" va "$out"
    ip netns exec "$B" python3 -c '
import socket, threading
def serve(fam, addr):
    s = socket.socket(fam)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 5001)); s.listen(4)
    for _ in range(2):
        c, _ = s.accept()
        while c.recv(65536): pass
        c.close()
ts = [threading.Thread(target=serve, args=a) for a in
      [(socket.AF_INET, "192.0.2.2"), (socket.AF_INET6, "2001:db8::2")]]
[t.start() for t in ts]; [t.join() for t in ts]' &
    local server=$!
    sleep 0.5
    local pings=()
    ip netns exec "$A" ping -q -c 20 -i 0.2 192.0.2.2 >/dev/null &
    pings+=($!)
    ip netns exec "$A" ping -6 -q -c 20 -i 0.2 2001:db8::2 >/dev/null &
    pings+=($!)
    ip netns exec "$A" ping -q -c 8 -i 1 192.0.2.99 >/dev/null 2>&1 &
    pings+=($!)
    ip netns exec "$A" ping -6 -q -c 8 -i 1 2001:db8::99 >/dev/null 2>&1 &
    pings+=($!)
    ip netns exec "$A" python3 -c '
import socket, threading
def send(fam, addr):
    c = socket.create_connection((addr, 5001))
    buf = b"x" * 65536
    for _ in range(400): c.sendall(buf)
    c.close()
for _ in range(2):
    ts = [threading.Thread(target=send, args=(socket.AF_INET, "192.0.2.2")),
          threading.Thread(target=send, args=(socket.AF_INET6, "2001:db8::2"))]
    [t.start() for t in ts]; [t.join() for t in ts]'
    wait "$server"
    # The pings to nobody fail: their status does not matter.
    wait "${pings[@]}" || true
    stop_capture
    ip netns del "$A"
    ip netns del "$B"
}

loop() {
    local out=$1
    for n in "$A" "$B" "$C"; do
        ip netns add "$n"
        ip -n "$n" link set lo up
    done
    ip link add vc netns "$C" type veth peer name vac netns "$A"
    ip link add vab netns "$A" type veth peer name vba netns "$B"
    ip -n "$C" addr add 10.9.0.2/24 dev vc
    ip -n "$A" addr add 10.9.0.1/24 dev vac
    ip -n "$A" addr add 10.9.1.1/24 dev vab
    ip -n "$B" addr add 10.9.1.2/24 dev vba
    ip -n "$C" link set vc up
    ip -n "$A" link set vac up
    ip -n "$A" link set vab up
    ip -n "$B" link set vba up
    ip -n "$C" route add default via 10.9.0.1
    ip -n "$A" route add 198.51.100.0/24 via 10.9.1.2
    ip -n "$B" route add 198.51.100.0/24 via 10.9.1.1
    ip -n "$B" route add 10.9.0.0/24 via 10.9.1.1
    for n in "$A" "$B"; do
        ip netns exec "$n" sysctl -qw net.ipv4.ip_forward=1 \
            net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0 \
            net.ipv4.conf.all.send_redirects=0
    done
    # Neighbours resolved before the capture.
    ip netns exec "$A" ping -q -c 1 10.9.1.2 >/dev/null
    start_capture "$A" vab "$out"
    ip netns exec "$C" ping -q -c 3 -i 0.5 -W 1 198.51.100.1 >/dev/null 2>&1 || true
    stop_capture
    for n in "$A" "$B" "$C"; do ip netns del "$n"; done
}

ordinary "$DIR/ordinary.pcap"
ordinary "$DIR/nosack.pcap" nosack
loop "$DIR/loop.pcap"
ls -l "$DIR"
