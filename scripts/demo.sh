#!/usr/bin/env bash
# The demo: portmux between network namespaces (a client, the host, two VMs sharing one IP) forwarding live traffic.
#
# Run as root: scripts/demo.sh   (docs/demo.md explains the topology and every output line)
# PORTMUX_BIN=path/to/portmux skips scripts/setup.sh and uses that binary instead of build/app/portmux.
#
# The functions below (pmx_*) are also sourced by test/integration/live/test_live_namespaces.sh, which
# asserts what the demo shows. All traffic stays inside the namespaces created here, on documentation
# addresses only (192.0.2.0/24).
set -euo pipefail

PMX_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

readonly PMX_SHARED_IP=192.0.2.10
readonly PMX_CLIENT_IP=192.0.2.1
readonly PMX_VM1_MAC=52:54:00:00:01:01
readonly PMX_VM2_MAC=52:54:00:00:02:01
readonly PMX_VM1_EPHEMERAL="40000 40999"
readonly PMX_VM2_EPHEMERAL="41000 41999"
readonly PMX_HOST_EPHEMERAL="42000 42999"

PMX_PORTMUX_PID=""
PMX_PORTMUX_STATUS=""
PMX_PIDS=()
PMX_NAMESPACES=()
PMX_WORKDIR=""

pmx_say() { printf '%s\n' "$*"; }
pmx_fail() {
    printf 'FAIL: %s\n' "$*" >&2
    exit 1
}

# pmx_init TAG PORTMUX CONFIG: names every namespace, the EAL file prefix and a private work directory.
pmx_init() {
    PMX_TAG=$1
    PMX_PORTMUX=$2
    PMX_CONFIG=$3
    PMX_NS_SW=pmx-$PMX_TAG-sw
    PMX_NS_CLIENT=pmx-$PMX_TAG-client
    PMX_NS_VM1=pmx-$PMX_TAG-vm1
    PMX_NS_VM2=pmx-$PMX_TAG-vm2
    PMX_PREFIX=pmx-$PMX_TAG
    PMX_WORKDIR=$(mktemp -d "/tmp/pmx-$PMX_TAG.XXXXXX")
    pmx_write_helper
}

# A PID's exit, bounded: returns 0 once it is gone, 1 if it is still there after SECONDS.
pmx_wait_gone() {
    local pid=$1 seconds=$2 i
    for ((i = 0; i < seconds * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    return 1
}

# Stops portmux with SIGTERM (its clean shutdown) and keeps its exit status in PMX_PORTMUX_STATUS.
pmx_stop_portmux() {
    [[ -n $PMX_PORTMUX_PID ]] || return 0
    local pid=$PMX_PORTMUX_PID
    PMX_PORTMUX_PID=""
    kill -TERM "$pid" 2>/dev/null || true
    if ! pmx_wait_gone "$pid" 15; then
        pmx_say "portmux did not stop within 15 s of SIGTERM: killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    PMX_PORTMUX_STATUS=0
    wait "$pid" 2>/dev/null || PMX_PORTMUX_STATUS=$?
    if [[ $PMX_PORTMUX_STATUS -ne 0 ]]; then
        pmx_say "portmux exited with status $PMX_PORTMUX_STATUS; the end of its log:" >&2
        tail -n 20 "$PMX_WORKDIR/portmux.log" >&2
    fi
}

# Everything this run created, whatever state it stopped in: processes (by PID), namespaces (their veths
# go with them), DPDK runtime and hugepage files of our prefix, the work directory.
pmx_cleanup() {
    set +e
    pmx_stop_portmux
    local pid ns
    for pid in "${PMX_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PMX_PIDS[@]}"; do
        pmx_wait_gone "$pid" 3 || kill -KILL "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    PMX_PIDS=()
    for ns in "${PMX_NAMESPACES[@]}"; do ip netns delete "$ns" 2>/dev/null; done
    PMX_NAMESPACES=()
    if [[ -n ${PMX_PREFIX:-} ]]; then
        rm -rf "/var/run/dpdk/$PMX_PREFIX"
        rm -f /dev/hugepages/"$PMX_PREFIX"map_* 2>/dev/null
    fi
    [[ -n $PMX_WORKDIR ]] && rm -rf "$PMX_WORKDIR"
    PMX_WORKDIR=""
    set -e
}

# Traffic tools (servers that name themselves, clients, ping, a telemetry client) as one small Python file,
# so the demo needs nothing beyond Debian's python3.
pmx_write_helper() {
    cat >"$PMX_WORKDIR/pmxnet.py" <<'PY'
"""Traffic tools for the portmux demo: named servers, TCP/UDP clients, ICMP echo, telemetry queries."""
import argparse, json, os, socket, struct, sys, threading, time


def serve(args):
    sockets = []
    for spec in args.listen:
        proto, port = spec.split(":")
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(port)))
        if proto == "tcp":
            s.listen(16)
        sockets.append((proto, int(port), s))
    for proto, port, s in sockets:
        target = tcp_loop if proto == "tcp" else udp_loop
        threading.Thread(target=target, args=(args.name, port, s), daemon=True).start()
    with open(args.ready, "w") as f:
        f.write("ready\n")
    while True:
        time.sleep(3600)


def tcp_loop(name, port, s):
    while True:
        conn, peer = s.accept()
        try:
            conn.settimeout(3)
            conn.recv(1024)
            conn.sendall(f"{name} answered tcp/{port} (peer {peer[0]}:{peer[1]})\n".encode())
        except OSError:
            pass
        finally:
            conn.close()


def udp_loop(name, port, s):
    while True:
        _, peer = s.recvfrom(2048)
        s.sendto(f"{name} answered udp/{port} (peer {peer[0]}:{peer[1]})\n".encode(), peer)


def tcp(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    if args.src_port:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", args.src_port))
    try:
        s.connect((args.host, args.port))
        local = s.getsockname()[1]
        s.sendall(b"hello\n")
        reply = s.recv(1024).decode().strip()
    except OSError as e:
        sys.exit(f"tcp {args.host}:{args.port}: {e or 'timed out'}")
    if not reply:
        sys.exit(f"tcp {args.host}:{args.port}: connection closed without an answer")
    print(f"{local}\t{reply}")


def udp(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    for _ in range(args.tries):
        s.sendto(b"hello\n", (args.host, args.port))
        try:
            reply, _ = s.recvfrom(2048)
        except socket.timeout:
            continue
        print(f"{s.getsockname()[1]}\t{reply.decode().strip()}")
        return
    sys.exit(f"udp {args.host}:{args.port}: no answer after {args.tries} tries")


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def ping(args):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    for seq in range(1, args.tries + 1):
        header = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        payload = b"portmux-demo"
        packet = struct.pack("!BBHHH", 8, 0, checksum(header + payload), ident, seq) + payload
        start = time.monotonic()
        s.sendto(packet, (args.host, 0))
        deadline = start + 1.0
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                data, peer = s.recvfrom(2048)
            except socket.timeout:
                break
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident and rseq == seq and peer[0] == args.host:
                ms = (time.monotonic() - start) * 1000
                print(f"echo reply from {peer[0]} ttl={data[8]} time={ms:.2f} ms")
                return
    sys.exit(f"ping {args.host}: no echo reply after {args.tries} tries")


def telemetry(args):
    path = f"/var/run/dpdk/{args.prefix}/dpdk_telemetry.v2"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.settimeout(30)  # a change waits for every worker to pass a quiescent point; a loaded host is slow
    s.connect(path)
    s.recv(16384)  # the greeting: version, pid, max output length
    s.send(args.command.encode())
    answer = json.loads(s.recv(1 << 20).decode())
    value = answer.get(args.command.split(",")[0], answer)
    for key in args.key or []:
        value = value[key]
    print(json.dumps(value, indent=args.indent))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("serve")
    a.add_argument("--name", required=True)
    a.add_argument("--ready", required=True)
    a.add_argument("listen", nargs="+", help="tcp:PORT or udp:PORT")
    a.set_defaults(run=serve)
    a = sub.add_parser("tcp")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--src-port", type=int, default=0)
    a.add_argument("--timeout", type=float, default=3.0)
    a.set_defaults(run=tcp)
    a = sub.add_parser("udp")
    a.add_argument("host")
    a.add_argument("port", type=int)
    a.add_argument("--tries", type=int, default=3)
    a.set_defaults(run=udp)
    a = sub.add_parser("ping")
    a.add_argument("host")
    a.add_argument("--tries", type=int, default=3)
    a.set_defaults(run=ping)
    a = sub.add_parser("telemetry")
    a.add_argument("prefix")
    a.add_argument("command")
    a.add_argument("--key", action="append")
    a.add_argument("--indent", type=int, default=None)
    a.set_defaults(run=telemetry)
    args = p.parse_args()
    args.run(args)


main()
PY
}

# pmx_net NS ARGS...: one bounded run of the traffic tool inside a namespace.
pmx_net() {
    local ns=$1
    shift
    ip netns exec "$ns" timeout 15 /usr/bin/python3 "$PMX_WORKDIR/pmxnet.py" "$@"
}

# pmx_tel COMMAND [--key K]...: a telemetry query answered as JSON (compact).
pmx_tel() {
    timeout 40 /usr/bin/python3 "$PMX_WORKDIR/pmxnet.py" telemetry "$PMX_PREFIX" "$@"
}

pmx_sysctl() {
    local ns=$1 key=$2 value=$3
    ip netns exec "$ns" sh -c "echo '$value' > /proc/sys/${key//.//}"
}

# Checksums are computed in software on every veth end, so frames that cross portmux carry real ones
# (with offload on, the packet socket would see a partial checksum and the receiver would drop it).
pmx_no_offload() {
    local ns=$1 ifname=$2
    ip netns exec "$ns" ethtool -K "$ifname" tx off rx off >/dev/null 2>&1 ||
        pmx_fail "ethtool -K $ifname tx off rx off failed in $ns (is ethtool installed?)"
}

pmx_add_namespace() {
    local ns=$1
    ip netns add "$ns" || pmx_fail "cannot create network namespace $ns"
    PMX_NAMESPACES+=("$ns")
    ip -n "$ns" link set lo up
    # IPv4 only: keeps router solicitations and other IPv6 chatter out of the counters.
    pmx_sysctl "$ns" net.ipv6.conf.all.disable_ipv6 1
    pmx_sysctl "$ns" net.ipv6.conf.default.disable_ipv6 1
}

# pmx_link NS_PEER PEER_IF SWITCH_IF: a veth pair from the switch namespace to a peer namespace.
pmx_link() {
    local peer_ns=$1 peer_if=$2 switch_if=$3
    ip link add "$switch_if" netns "$PMX_NS_SW" type veth peer name "$peer_if" netns "$peer_ns"
    pmx_no_offload "$PMX_NS_SW" "$switch_if"
    pmx_no_offload "$peer_ns" "$peer_if"
    # The switch namespace's own kernel also sees every frame on the switch ends (packet sockets are taps):
    # it must neither answer ARP there nor accept IP arriving there (it answers only through pmx0).
    pmx_sysctl "$PMX_NS_SW" "net.ipv4.conf.$switch_if.arp_ignore" 8
    pmx_sysctl "$PMX_NS_SW" "net.ipv4.conf.$switch_if.rp_filter" 1
    ip -n "$PMX_NS_SW" link set "$switch_if" up
}

# pmx_vm NS VETH MAC SWITCH_IF EPHEMERAL: a VM: the shared IP, its MAC, its ephemeral ports in its range.
pmx_vm() {
    local ns=$1 ifname=$2 mac=$3 switch_if=$4 ephemeral=$5
    pmx_add_namespace "$ns"
    pmx_link "$ns" "$ifname" "$switch_if"
    ip -n "$ns" link set "$ifname" address "$mac"
    ip -n "$ns" addr add "$PMX_SHARED_IP/24" dev "$ifname"
    ip -n "$ns" link set "$ifname" up
    pmx_sysctl "$ns" net.ipv4.ip_local_port_range "$ephemeral"
}

pmx_build_topology() {
    pmx_add_namespace "$PMX_NS_SW"
    pmx_sysctl "$PMX_NS_SW" net.ipv4.conf.all.rp_filter 1
    pmx_sysctl "$PMX_NS_SW" net.ipv4.ip_local_port_range "$PMX_HOST_EPHEMERAL"

    pmx_add_namespace "$PMX_NS_CLIENT"
    pmx_link "$PMX_NS_CLIENT" eth0 pmx-up
    ip -n "$PMX_NS_CLIENT" addr add "$PMX_CLIENT_IP/24" dev eth0
    ip -n "$PMX_NS_CLIENT" link set eth0 up

    pmx_vm "$PMX_NS_VM1" eth0 "$PMX_VM1_MAC" pmx-vm1 "$PMX_VM1_EPHEMERAL"
    pmx_vm "$PMX_NS_VM2" eth0 "$PMX_VM2_MAC" pmx-vm2 "$PMX_VM2_EPHEMERAL"
}

# Two lcores (main + one worker) on two CPUs when there are, else both on CPU 0.
pmx_lcores() {
    if [[ $(nproc) -ge 2 ]]; then echo "0@0,1@1"; else echo "0@0,1@0"; fi
}

# Starts portmux in the switch namespace, waits (bounded) for its TAP and telemetry socket, and gives the
# host side (pmx0) the shared address.
pmx_start_portmux() {
    local log=$PMX_WORKDIR/portmux.log i
    ip netns exec "$PMX_NS_SW" "$PMX_PORTMUX" --config "$PMX_CONFIG" -- \
        --no-huge -m 512 --no-pci --lcores "$(pmx_lcores)" --file-prefix "$PMX_PREFIX" --log-level "pmd.*:error" \
        >"$log" 2>&1 &
    PMX_PORTMUX_PID=$!
    for ((i = 0; i < 200; i++)); do
        if ! kill -0 "$PMX_PORTMUX_PID" 2>/dev/null; then
            PMX_PORTMUX_PID=""
            cat "$log" >&2
            pmx_fail "portmux exited during startup (log above)"
        fi
        if ip -n "$PMX_NS_SW" link show pmx0 >/dev/null 2>&1 &&
            [[ -S /var/run/dpdk/$PMX_PREFIX/dpdk_telemetry.v2 ]]; then
            break
        fi
        sleep 0.1
    done
    ((i < 200)) || { cat "$log" >&2; pmx_fail "portmux: no pmx0 / telemetry socket after 20 s"; }
    # The socket opens before portmux registers its commands: wait until they answer.
    for ((i = 0; i < 200; i++)); do
        [[ $(pmx_tel /portmux/info --key version 2>/dev/null) == \"* ]] && break
        sleep 0.1
    done
    ((i < 200)) || { cat "$log" >&2; pmx_fail "portmux: /portmux/info did not answer within 20 s"; }
    ip -n "$PMX_NS_SW" addr add "$PMX_SHARED_IP/24" dev pmx0
    ip -n "$PMX_NS_SW" link set pmx0 up
}

# pmx_server NS NAME LISTEN...: a named server in a namespace, waited for (bounded) until it listens.
pmx_server() {
    local ns=$1 name=$2 i
    shift 2
    local ready=$PMX_WORKDIR/ready.$name
    ip netns exec "$ns" /usr/bin/python3 "$PMX_WORKDIR/pmxnet.py" serve --name "$name" --ready "$ready" "$@" \
        >"$PMX_WORKDIR/server.$name.log" 2>&1 &
    PMX_PIDS+=($!)
    for ((i = 0; i < 100; i++)); do
        [[ -f $ready ]] && return 0
        sleep 0.1
    done
    cat "$PMX_WORKDIR/server.$name.log" >&2
    pmx_fail "server $name in $ns did not start within 10 s"
}

pmx_start_servers() {
    pmx_server "$PMX_NS_VM1" vm1 tcp:8000 udp:5300
    pmx_server "$PMX_NS_VM2" vm2 tcp:9000
    pmx_server "$PMX_NS_SW" host tcp:22 tcp:2222
    pmx_server "$PMX_NS_CLIENT" client tcp:7000
}

# Echo requests each namespace's kernel has answered so far (its own /proc/net/snmp).
pmx_in_echos() {
    ip netns exec "$1" awk '/^Icmp:/ { if (!n++) { for (i = 2; i <= NF; i++) if ($i == "InEchos") f = i } else print $f }' \
        /proc/net/snmp
}

# The demo's output, one line per flow: where the packet went and who answered.
pmx_demo_flows() {
    local out lport reply before_host before_vm1 before_vm2

    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 8000) || pmx_fail "TCP to vm1's port 8000"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "client -> $PMX_SHARED_IP tcp/8000  (vm1 owns tcp:8000-8099)  : $reply"

    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 9000) || pmx_fail "TCP to vm2's port 9000"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "client -> $PMX_SHARED_IP tcp/9000  (vm2 owns tcp:9000-9099)  : $reply"

    out=$(pmx_net "$PMX_NS_CLIENT" udp "$PMX_SHARED_IP" 5300) || pmx_fail "UDP to vm1's port 5300"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "client -> $PMX_SHARED_IP udp/5300  (vm1 owns udp:5300-5399)  : $reply"

    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 22) || pmx_fail "TCP to the host's port 22"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "client -> $PMX_SHARED_IP tcp/22    (the host owns tcp:22)    : $reply"

    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 2222) || pmx_fail "TCP to the unowned port 2222"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "client -> $PMX_SHARED_IP tcp/2222  (nobody owns it: unmatched): $reply"

    before_host=$(pmx_in_echos "$PMX_NS_SW")
    before_vm1=$(pmx_in_echos "$PMX_NS_VM1")
    before_vm2=$(pmx_in_echos "$PMX_NS_VM2")
    out=$(pmx_net "$PMX_NS_CLIENT" ping "$PMX_SHARED_IP") || pmx_fail "ping $PMX_SHARED_IP"
    pmx_say "client -> $PMX_SHARED_IP icmp echo (not TCP/UDP: host)  : $out; echo requests answered:" \
        "host +$(($(pmx_in_echos "$PMX_NS_SW") - before_host))," \
        "vm1 +$(($(pmx_in_echos "$PMX_NS_VM1") - before_vm1))," \
        "vm2 +$(($(pmx_in_echos "$PMX_NS_VM2") - before_vm2))"

    out=$(pmx_net "$PMX_NS_VM1" tcp "$PMX_CLIENT_IP" 7000) || pmx_fail "TCP from vm1 to the client"
    IFS=$'\t' read -r lport reply <<<"$out"
    pmx_say "vm1 (source port $lport) -> $PMX_CLIENT_IP tcp/7000, reply back to vm1's range 40000-40999: $reply"

    if out=$(pmx_net "$PMX_NS_VM2" tcp "$PMX_CLIENT_IP" 7000 --src-port 40500 --timeout 2 2>&1); then
        pmx_fail "vm2 sending from vm1's port 40500 was not blocked: $out"
    fi
    pmx_say "vm2 (source port 40500, vm1's) -> $PMX_CLIENT_IP tcp/7000: blocked by portmux (${out##*: })," \
        "drop_spoof_port=$(pmx_tel /portmux/stats --key drop_spoof_port)"
}

pmx_show_telemetry() {
    local cmd answer
    for cmd in /portmux/stats /portmux/vms; do
        pmx_say ""
        pmx_say "== $cmd"
        answer=""
        if command -v dpdk-telemetry.py >/dev/null 2>&1; then
            # The stock client reads commands on stdin and prints each answer as one line of JSON.
            answer=$(echo "$cmd" | timeout 10 dpdk-telemetry.py -f "$PMX_PREFIX" 2>/dev/null | grep '^{' |
                /usr/bin/python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), indent=2))') || answer=""
        fi
        [[ -n $answer ]] || answer=$(pmx_tel "$cmd" --indent 2)
        pmx_say "$answer"
    done
}

demo_main() {
    [[ $(id -u) -eq 0 ]] || pmx_fail "the demo creates network namespaces: run it as root"
    local portmux=${PORTMUX_BIN:-}
    if [[ -z $portmux ]]; then
        "$PMX_ROOT/scripts/setup.sh"
        portmux=$PMX_ROOT/build/app/portmux
    fi
    [[ -x $portmux ]] || pmx_fail "no portmux binary at $portmux"

    trap pmx_cleanup EXIT
    trap 'exit 130' INT TERM
    pmx_init "demo$$" "$portmux" "$PMX_ROOT/conf/demo.json"
    pmx_say "== topology: namespaces $PMX_NS_CLIENT, $PMX_NS_SW (portmux + host), $PMX_NS_VM1, $PMX_NS_VM2"
    pmx_build_topology
    pmx_start_portmux
    pmx_start_servers
    pmx_say "== portmux is running (pid $PMX_PORTMUX_PID, file prefix $PMX_PREFIX); shared IP $PMX_SHARED_IP"
    pmx_say ""
    pmx_demo_flows
    pmx_show_telemetry
    pmx_say ""
    pmx_stop_portmux
    [[ $PMX_PORTMUX_STATUS -eq 0 ]] || pmx_fail "portmux exited with status $PMX_PORTMUX_STATUS on SIGTERM"
    pmx_say "== portmux stopped on SIGTERM (exit 0); cleaning up namespaces and runtime files"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    demo_main "$@"
fi
