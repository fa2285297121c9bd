#!/usr/bin/env bash
# Real QEMU guests on portmux's vhost-user ports, end to end: forwarding by port, egress checks, bulk TCP
# with the guest's default offloads (TSO frames cut to the MTU), restarts.
#
# Usage: test_real_guests.sh PORTMUX_BINARY   (root; exit 0 pass, 1 fail, 77 skip)
#
# Topology (all inside namespaces created here, documentation addresses only):
#   client ns (192.0.2.1, eth0) --veth-- pmx-up [switch ns: portmux, net_af_packet uplink; pmx0 TAP = host,
#   192.0.2.10] --vhost-user-- two QEMU guests (both 192.0.2.10): vm1 (vhost_mode client: QEMU is the socket
#   server) and vm2 (vhost_mode server: portmux creates the socket).
# The guests are built by scripts/guest/build-guest.sh (Debian cloud kernel + busybox initramfs); each runs
# named TCP/UDP/HTTP servers and reports its own client actions on its serial console ("PMX ..." lines).
# Every check prints one PASS or FAIL line; the traffic tools and clean-up come from scripts/demo.sh.
set -euo pipefail

readonly ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
readonly PORTMUX=${1:?usage: test_real_guests.sh PORTMUX_BINARY}
readonly TIME_LIMIT=500   # the whole run, seconds (about 90 normally): a watchdog ends it (and cleans up) past this
readonly CLIENT_IP=192.0.2.1
readonly SHARED_IP=192.0.2.10
readonly HTTP_PORT_CLIENT=7080

declare -A MAC=([vm1]=52:54:00:00:01:01 [vm2]=52:54:00:00:02:01)
declare -A MODE=([vm1]=client [vm2]=server)
declare -A EPHEMERAL=([vm1]=40000-40999 [vm2]=41000-41999)
declare -A TCP_PORT=([vm1]=8000 [vm2]=9000)
declare -A UDP_PORT=([vm1]=5300 [vm2]=6300)
declare -A HTTP_PORT=([vm1]=8080 [vm2]=9080)
# Bulk TCP (scripts/guest/tcp_bytes.c): the guest reads SINK_PORT's connections to their end and sends
# BULK_BYTES on each connection to SOURCE_PORT.
declare -A SINK_PORT=([vm1]=8050 [vm2]=9050)
declare -A SOURCE_PORT=([vm1]=8051 [vm2]=9051)
readonly BULK_BYTES=$((8 * 1024 * 1024))
readonly UPLINK_MTU=1500
# A source port each guest must not use: vm1 tries one of the host's, vm2 one of vm1's.
declare -A SPOOF_PORT=([vm1]=42500 [vm2]=40500)
declare -A QEMU_PID=()
declare -A BOOTS=([vm1]=0 [vm2]=0)
FAILURES=0
WATCHDOG_PID=""
ACCEL=tcg
KERNEL=""
INITRD=""

skip() {
    echo "SKIP: $*"
    exit 77
}
pass() { echo "PASS: $*"; }
check_fail() {
    echo "FAIL: $*"
    FAILURES=$((FAILURES + 1))
}
# A failure after which the remaining checks mean nothing.
fatal() {
    echo "FAIL: $*"
    show_logs
    exit 1
}
note() { echo "  .. $*"; }

show_logs() {
    [[ -n ${PMX_WORKDIR:-} && -d $PMX_WORKDIR ]] || return 0
    local f
    echo "---- end of portmux's log"
    tail -n 30 "$PMX_WORKDIR/portmux.log" 2>/dev/null || true
    for f in "$PMX_WORKDIR"/vm*-boot*.log; do
        [[ -f $f ]] || continue
        echo "---- PMX lines of $(basename "$f")"
        tr -d '\r' <"$f" | grep -E '^PMX|Kernel panic|not syncing' | tail -n 20 || true
    done
    for f in "$PMX_WORKDIR"/qemu-*.out; do
        [[ -s $f ]] || continue
        echo "---- $(basename "$f")"
        tail -n 10 "$f"
    done
}

# ---- prerequisites ---------------------------------------------------------------------------------------

prepare_guest() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces, hugepages, QEMU)"
    local out
    if ! out=$("$ROOT/scripts/guest/build-guest.sh"); then
        command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 is not installed and could not be installed"
        fatal "scripts/guest/build-guest.sh failed"
    fi
    command -v qemu-system-x86_64 >/dev/null 2>&1 || skip "qemu-system-x86_64 is not installed and could not be installed"
    KERNEL=$(sed -n 's/^PMX_GUEST_KERNEL=//p' <<<"$out")
    INITRD=$(sed -n 's/^PMX_GUEST_INITRD=//p' <<<"$out")
    [[ -f $KERNEL && -f $INITRD ]] || fatal "build-guest.sh named no kernel/initrd: $out"
    [[ -x $PORTMUX ]] || fatal "no portmux binary at $PORTMUX"
    command -v ethtool >/dev/null 2>&1 || fatal "ethtool is missing (scripts/setup.sh installs it)"
}

# KVM only where it runs a real kernel: kvm_pvm (paravirtual nested KVM) cannot boot these guests.
choose_accelerator() {
    if [[ -d /sys/module/kvm_pvm ]]; then
        ACCEL=tcg
        echo "accelerator: TCG (/dev/kvm is kvm_pvm, which cannot run these guests)"
    elif [[ -r /dev/kvm && -w /dev/kvm ]] && { [[ -d /sys/module/kvm_intel ]] || [[ -d /sys/module/kvm_amd ]]; }; then
        ACCEL=kvm
        echo "accelerator: KVM"
    else
        ACCEL=tcg
        echo "accelerator: TCG (no usable /dev/kvm)"
    fi
}

# portmux maps its memory from hugepages (vhost-user needs shared memory): 256 x 2 MiB for -m 512.
ensure_hugepages() {
    if ! mountpoint -q /dev/hugepages; then
        mkdir -p /dev/hugepages
        mount -t hugetlbfs nodev /dev/hugepages || fatal "cannot mount hugetlbfs on /dev/hugepages"
    fi
    local free total
    free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
    total=$(cat /proc/sys/vm/nr_hugepages)
    if ((free < 256)); then
        echo $((total + 256 - free)) >/proc/sys/vm/nr_hugepages
        free=$(awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo)
    fi
    ((free >= 256)) || fatal "only $free free 2 MiB hugepages (256 needed); see scripts/setup.sh"
}

# ---- topology and processes ------------------------------------------------------------------------------

write_config() {
    cat >"$PMX_CONFIG" <<EOF
{
  "shared_ip": "$SHARED_IP",
  "uplink": { "device": "net_af_packet0,iface=pmx-up" },
  "host": { "device": "net_tap0,iface=pmx0", "ranges": ["tcp:22", "42000-42999"] },
  "vms": [
    { "name": "vm1", "vhost": "$PMX_WORKDIR/vm1.sock", "mac": "${MAC[vm1]}",
      "ranges": ["tcp:8000-8099", "udp:5300-5399", "40000-40999"] },
    { "name": "vm2", "vhost": "$PMX_WORKDIR/vm2.sock", "vhost_mode": "server", "mac": "${MAC[vm2]}",
      "ranges": ["tcp:9000-9099", "udp:6300-6399", "41000-41999"] }
  ],
  "unmatched": "host"
}
EOF
}

build_topology() {
    pmx_add_namespace "$PMX_NS_SW"
    pmx_sysctl "$PMX_NS_SW" net.ipv4.conf.all.rp_filter 1
    pmx_sysctl "$PMX_NS_SW" net.ipv4.ip_local_port_range "42000 42999"
    pmx_add_namespace "$PMX_NS_CLIENT"
    pmx_link "$PMX_NS_CLIENT" eth0 pmx-up
    ip -n "$PMX_NS_CLIENT" addr add "$CLIENT_IP/24" dev eth0
    ip -n "$PMX_NS_CLIENT" link set eth0 up
}

# portmux on hugepages (vhost-user shares memory with QEMU), in the switch namespace.
start_portmux() {
    local log=$PMX_WORKDIR/portmux.log i
    ip netns exec "$PMX_NS_SW" "$PORTMUX" --config "$PMX_CONFIG" -- \
        -m 512 --huge-unlink --no-pci --lcores "$(pmx_lcores)" --file-prefix "$PMX_PREFIX" \
        >"$log" 2>&1 &
    PMX_PORTMUX_PID=$!
    for ((i = 0; i < 200; i++)); do
        kill -0 "$PMX_PORTMUX_PID" 2>/dev/null || {
            PMX_PORTMUX_PID=""
            fatal "portmux exited during startup"
        }
        ip -n "$PMX_NS_SW" link show pmx0 >/dev/null 2>&1 && [[ -S /var/run/dpdk/$PMX_PREFIX/dpdk_telemetry.v2 ]] && break
        sleep 0.1
    done
    ((i < 200)) || fatal "portmux: no pmx0 / telemetry socket after 20 s"
    ip -n "$PMX_NS_SW" addr add "$SHARED_IP/24" dev pmx0
    ip -n "$PMX_NS_SW" link set pmx0 up
}

# An HTTP server in the client namespace that tells each guest which source address and port it came from.
start_client_http() {
    cat >"$PMX_WORKDIR/client_http.py" <<'PY'
"""HTTP server for the guests' outgoing wget: answers with the peer's address and port."""
import http.server, sys
port, ready = int(sys.argv[1]), sys.argv[2]
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"client answered http/{port} (peer {self.client_address[0]}:{self.client_address[1]})\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("0.0.0.0", port), Handler)
open(ready, "w").write("ready\n")
server.serve_forever()
PY
    ip netns exec "$PMX_NS_CLIENT" /usr/bin/python3 "$PMX_WORKDIR/client_http.py" "$HTTP_PORT_CLIENT" "$PMX_WORKDIR/ready.http" \
        >"$PMX_WORKDIR/server.http.log" 2>&1 &
    PMX_PIDS+=($!)
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -f $PMX_WORKDIR/ready.http ]] && return 0
        sleep 0.1
    done
    fatal "the client's HTTP server did not start: $(cat "$PMX_WORKDIR/server.http.log")"
}

# The client's end of the bulk TCP transfers: "fetch" reads a guest's source port to its end while recording
# the guest's segments on the client's interface, "push" sends random bytes to a guest's sink port. Each
# prints one line of key=value pairs: the bytes and their SHA-256, and for fetch what the segments were like.
write_bulk_peer() {
    cat >"$PMX_WORKDIR/bulk_peer.py" <<'PY'
"""Bulk TCP with a guest: fetch HOST PORT IFACE MTU | push HOST PORT BYTES (prints key=value pairs)."""
import array, hashlib, os, socket, struct, sys, threading, time

def fold(total):
    while total >> 16:
        total = (total & 0xffff) + (total >> 16)
    return total

def ones_sum(data):
    # A ones' complement sum does not depend on byte order, so native 16-bit words serve.
    if len(data) % 2:
        data += b"\0"
    return fold(sum(array.array("H", data)))

def record(iface, host, port, frames, stop):
    """Every TCP frame from HOST:PORT that arrives on IFACE, as it came off the wire (GRO is off)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.setsockopt(socket.SOL_SOCKET, 33, 1 << 26)  # SO_RCVBUFFORCE: a slow reader must not lose frames
    s.bind((iface, 0))
    s.settimeout(0.2)
    src = socket.inet_aton(host)
    stop.append(s)
    while len(stop) == 1:
        try:
            frame, addr = s.recvfrom(1 << 16)
        except socket.timeout:
            continue
        if addr[2] == socket.PACKET_OUTGOING or frame[23] != 6 or frame[26:30] != src:
            continue
        ihl = (frame[14] & 0x0f) * 4
        if struct.unpack("!H", frame[14 + ihl:16 + ihl])[0] == port:
            frames.append(frame)

def check_segments(frames, mtu):
    segments = payload = largest = bad_ip = bad_tcp = oversize = 0
    for frame in frames:
        ip = frame[14:]
        ihl = (ip[0] & 0x0f) * 4
        total = struct.unpack("!H", ip[2:4])[0]
        largest = max(largest, total)
        if total > mtu or len(frame) > 14 + mtu:
            oversize += 1
        if ones_sum(ip[:ihl]) != 0xffff:
            bad_ip += 1
        tcp = ip[ihl:total]
        pseudo = ip[12:20] + struct.pack("!BBH", 0, 6, len(tcp))
        if ones_sum(pseudo + tcp) != 0xffff:
            bad_tcp += 1
        data = len(tcp) - (tcp[12] >> 4) * 4
        if data > 0:
            segments += 1
            payload += data
    return "segments=%d payload=%d largest_ip=%d oversize=%d bad_ip_csum=%d bad_tcp_csum=%d" % (
        segments, payload, largest, oversize, bad_ip, bad_tcp)

def fetch(host, port, iface, mtu):
    frames, stop = [], []
    recorder = threading.Thread(target=record, args=(iface, host, port, frames, stop))
    recorder.start()
    while not stop:
        time.sleep(0.01)
    digest, count = hashlib.sha256(), 0
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.settimeout(120)
        while True:
            chunk = conn.recv(1 << 16)
            if not chunk:
                break
            digest.update(chunk)
            count += len(chunk)
    time.sleep(0.5)  # the last segments' frames are in the recorder's buffer by now
    stop.append(None)
    recorder.join()
    print("bytes=%d sha256=%s %s" % (count, digest.hexdigest(), check_segments(frames, mtu)))

def push(host, port, size):
    data = os.urandom(size)
    with socket.create_connection((host, port), timeout=30) as conn:
        conn.settimeout(120)
        conn.sendall(data)
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):  # the guest closes once it has read everything
            pass
    print("bytes=%d sha256=%s" % (size, hashlib.sha256(data).hexdigest()))

if sys.argv[1] == "fetch":
    fetch(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
else:
    push(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
PY
}

# start_qemu VM [ACTIONS]: boots a guest on the VM's vhost-user socket; its console goes to vmN-bootK.log.
start_qemu() {
    local vm=$1 actions=${2:-} sock=$PMX_WORKDIR/$1.sock chardev
    BOOTS[$vm]=$((BOOTS[$vm] + 1))
    local log=$PMX_WORKDIR/$vm-boot${BOOTS[$vm]}.log
    if [[ ${MODE[$vm]} == client ]]; then
        chardev="socket,id=c0,path=$sock,server=on,wait=off"   # portmux connects (and reconnects)
    else
        chardev="socket,id=c0,path=$sock,reconnect=1"           # portmux listens
    fi
    local cpu=()
    [[ $ACCEL == kvm ]] && cpu=(-cpu host)
    # no_timer_check: under TCG on a busy host the kernel's IO-APIC timer check can fail and panic the boot.
    local append="console=ttyS0 quiet no_timer_check ipv6.disable=1 pmx.name=$vm pmx.ip=$SHARED_IP/24 pmx.gw=$CLIENT_IP"
    append+=" pmx.mac=${MAC[$vm]} pmx.ports=${EPHEMERAL[$vm]} pmx.http=${HTTP_PORT[$vm]}"
    append+=" pmx.tcp=${TCP_PORT[$vm]} pmx.udp=${UDP_PORT[$vm]}"
    append+=" pmx.sink=${SINK_PORT[$vm]} pmx.source=${SOURCE_PORT[$vm]}:$BULK_BYTES"
    [[ -n $actions ]] && append+=" pmx.do=$actions"
    qemu-system-x86_64 -name "$vm" -accel "$ACCEL" "${cpu[@]}" -M pc -m 256 -smp 1 \
        -nodefaults -no-user-config -display none -serial "file:$log" \
        -object memory-backend-memfd,id=mem,size=256M,share=on -numa node,memdev=mem \
        -chardev "$chardev" -netdev vhost-user,id=n0,chardev=c0 \
        -device "virtio-net-pci,netdev=n0,mac=${MAC[$vm]},vectors=0" \
        `# QEMU's default offloads (checksum, TSO): portmux finishes them` \
        -kernel "$KERNEL" -initrd "$INITRD" -append "$append" \
        >"$PMX_WORKDIR/qemu-$vm.out" 2>&1 &
    QEMU_PID[$vm]=$!
}

kill_qemu() {
    local vm=$1 pid=${QEMU_PID[$1]:-}
    [[ -n $pid ]] || return 0
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    QEMU_PID[$vm]=""
}

cleanup() {
    set +e
    local vm
    [[ -n $WATCHDOG_PID ]] && kill "$WATCHDOG_PID" 2>/dev/null
    for vm in "${!QEMU_PID[@]}"; do kill_qemu "$vm"; done
    ((FAILURES > 0)) && show_logs
    pmx_cleanup
}

# ---- observation -----------------------------------------------------------------------------------------

boot_log() { local f=$PMX_WORKDIR/$1-boot${BOOTS[$1]}.log; [[ -f $f ]] && tr -d '\r' <"$f"; return 0; }

# wait_console VM REGEX SECONDS: the guest's current boot printed a line matching REGEX.
wait_console() {
    local vm=$1 regex=$2 seconds=$3 i
    for ((i = 0; i < seconds * 2; i++)); do
        boot_log "$vm" | grep -qE "$regex" && return 0
        [[ -n ${QEMU_PID[$vm]} ]] && ! kill -0 "${QEMU_PID[$vm]}" 2>/dev/null && return 1
        sleep 0.5
    done
    return 1
}

console_line() { boot_log "$1" | grep -E "$2" | tail -n 1; }

# vm_field VM FIELD: one field of the VM's entry in /portmux/vms.
vm_field() {
    pmx_tel /portmux/vms | /usr/bin/python3 -c '
import json, sys
d = json.load(sys.stdin)
vms = [v for k, v in d.items() if isinstance(v, dict) and (v.get("name") == sys.argv[1] or k == sys.argv[1])]
print(vms[0][sys.argv[2]] if vms else "")' "$1" "$2"
}

stat_field() { pmx_tel /portmux/stats --key "$1"; }

# wait_link VM up|down SECONDS
wait_link() {
    local vm=$1 state=$2 seconds=$3 i
    for ((i = 0; i < seconds * 2; i++)); do
        [[ $(vm_field "$vm" link) == "$state" ]] && return 0
        sleep 0.5
    done
    return 1
}

# wait_guest_up VM SECONDS: the VM's link is up in /portmux/vms and its guest reported READY; gives up at
# once when QEMU exits or the guest's kernel panics.
wait_guest_up() {
    local vm=$1 seconds=$2 i
    for ((i = 0; i < seconds * 2; i++)); do
        [[ $(vm_field "$vm" link) == up ]] && boot_log "$vm" | grep -q '^PMX READY' && return 0
        kill -0 "${QEMU_PID[$vm]}" 2>/dev/null || fatal "$vm: QEMU exited (see qemu-$vm.out below)"
        boot_log "$vm" | grep -q 'Kernel panic' && fatal "$vm: the guest's kernel panicked (console below)"
        sleep 0.5
    done
    fatal "$vm: not attached and READY within $seconds s of starting QEMU (link $(vm_field "$vm" link))"
}

reply_of() { cut -f2- <<<"$1"; }

# expect_tcp / expect_udp VM PORT WHO: the client's exchange with the shared IP is answered by WHO.
expect_tcp() {
    local port=$1 who=$2 what=$3 out
    if out=$(pmx_net "$PMX_NS_CLIENT" tcp "$SHARED_IP" "$port" --timeout 5 2>&1) &&
        [[ $(reply_of "$out") == "$who answered tcp/$port"* ]]; then
        pass "$what: tcp/$port answered by $who (\"$(reply_of "$out")\")"
    else
        check_fail "$what: tcp/$port should be answered by $who, got: $out"
    fi
}
expect_udp() {
    local port=$1 who=$2 what=$3 out
    if out=$(pmx_net "$PMX_NS_CLIENT" udp "$SHARED_IP" "$port" --tries 5 2>&1) &&
        [[ $(reply_of "$out") == "$who answered udp/$port"* ]]; then
        pass "$what: udp/$port answered by $who (\"$(reply_of "$out")\")"
    else
        check_fail "$what: udp/$port should be answered by $who, got: $out"
    fi
}
expect_http() {
    local port=$1 who=$2 what=$3 out
    out=$(ip netns exec "$PMX_NS_CLIENT" timeout 15 /usr/bin/python3 -c '
import sys, urllib.request
print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode().strip())' "http://$SHARED_IP:$port/" 2>&1) || true
    if [[ $out == "$who answered http/$port" ]]; then
        pass "$what: http/$port (busybox httpd) answered by $who"
    else
        check_fail "$what: http/$port should be answered by $who, got: $out"
    fi
}

# ---- the checks ------------------------------------------------------------------------------------------

check_inbound_by_port() {
    local vm
    for vm in vm1 vm2; do
        expect_tcp "${TCP_PORT[$vm]}" "$vm" "tcp to a port of $vm reaches $vm"
        expect_udp "${UDP_PORT[$vm]}" "$vm" "udp to a port of $vm reaches $vm"
        expect_http "${HTTP_PORT[$vm]}" "$vm" "http to a port of $vm reaches $vm"
    done
}

check_host_ports() {
    expect_tcp 22 host "tcp to the host's own port reaches the host"
    expect_tcp 2222 host "tcp to a port nobody owns reaches the host's listener (unmatched: host)"
    local before out
    before=$(pmx_in_echos "$PMX_NS_SW")
    if out=$(pmx_net "$PMX_NS_CLIENT" ping "$SHARED_IP" 2>&1) && (($(pmx_in_echos "$PMX_NS_SW") > before)); then
        pass "ping to the shared IP is answered by the host ($out)"
    else
        check_fail "ping to the shared IP: $out (host echo requests $before -> $(pmx_in_echos "$PMX_NS_SW"))"
    fi
}

# The guests' own client actions (run at boot, reported on their consoles).
check_guest_outgoing() {
    local vm=$1 line port lo hi client_mac
    lo=${EPHEMERAL[$vm]%-*} hi=${EPHEMERAL[$vm]#*-}
    wait_console "$vm" '^PMX DONE' 120 || check_fail "$vm: its client actions did not finish within 120 s"
    client_mac=$(ip netns exec "$PMX_NS_CLIENT" cat /sys/class/net/eth0/address)
    line=$(console_line "$vm" '^PMX RESULT neigh')
    if [[ $line == *"$CLIENT_IP"*"lladdr $client_mac"* ]]; then
        pass "$vm resolved its gateway $CLIENT_IP to the client's MAC $client_mac"
    else
        check_fail "$vm did not resolve its gateway $CLIENT_IP to $client_mac: \"$line\""
    fi
    for kind in out wget; do
        line=$(console_line "$vm" "^PMX RESULT $kind ")
        port=$(sed -n "s/.*(peer $SHARED_IP:\([0-9]*\)).*/\1/p" <<<"$line")
        if [[ $line == "PMX RESULT $kind OK client answered"* && -n $port ]] && ((port >= lo && port <= hi)); then
            pass "$vm's outgoing $([[ $kind == out ]] && echo tcp || echo http) connection from its range ($port in $lo-$hi) got the reply"
        else
            check_fail "$vm's outgoing $kind connection: \"$line\" (expected a reply naming a source port in $lo-$hi)"
        fi
    done
}

check_guest_spoof() {
    local vm=$1 line dropped
    line=$(console_line "$vm" '^PMX RESULT spoof')
    dropped=$(vm_field "$vm" dropped_spoof)
    if [[ $line == "PMX RESULT spoof BLOCKED"* ]] && ((dropped >= 1)); then
        pass "$vm sending from source port ${SPOOF_PORT[$vm]} (outside its ranges) is blocked ($vm dropped_spoof $dropped)"
    else
        check_fail "$vm sending from source port ${SPOOF_PORT[$vm]}: \"$line\", its dropped_spoof $dropped"
    fi
}

# kv "a=1 b=2" KEY: the value of KEY in a line of key=value pairs.
kv() { sed -n "s/.*\b$2=\([^ ]*\).*/\1/p" <<<"$1"; }

# 8 MiB of TCP each way between the client and a guest with QEMU's default offloads, checked by SHA-256 on
# both ends. From the guest: its TSO frames (up to 64 KiB) must reach the wire as segments that fit the
# uplink's MTU, every one with valid IPv4 and TCP checksums, and portmux's TSO counters must grow.
check_bulk_tcp() {
    local vm=$1 out line frames_before segments_before drops_before frames_after segments_after
    # The client's interface must show the frames as they arrive: no receive offload merging them.
    ip netns exec "$PMX_NS_CLIENT" ethtool -K eth0 gro off lro off >/dev/null 2>&1 || true
    frames_before=$(stat_field guest_tso_frames)
    segments_before=$(stat_field guest_tso_segments)
    drops_before=$(stat_field drop_guest_offload)

    out=$(ip netns exec "$PMX_NS_CLIENT" timeout 200 /usr/bin/python3 "$PMX_WORKDIR/bulk_peer.py" fetch \
        "$SHARED_IP" "${SOURCE_PORT[$vm]}" eth0 "$UPLINK_MTU" 2>&1) || true
    wait_console "$vm" '^PMX RESULT tcp-source ' 30 || true
    line=$(console_line "$vm" '^PMX RESULT tcp-source ')
    if [[ $(kv "$out" bytes) == "$BULK_BYTES" && $(kv "$line" bytes) == "$BULK_BYTES" &&
        -n $(kv "$out" sha256) && $(kv "$out" sha256) == $(kv "$line" sha256) ]]; then
        pass "$vm -> client: $BULK_BYTES bytes of TCP arrive intact (sha256 $(kv "$out" sha256 | cut -c1-16)... on both ends)"
    else
        check_fail "$vm -> client: $BULK_BYTES bytes: the client got \"$out\", the guest reported \"$line\""
    fi
    if (($(kv "$out" payload) >= BULK_BYTES)) && [[ $(kv "$out" oversize) == 0 && $(kv "$out" bad_ip_csum) == 0 &&
        $(kv "$out" bad_tcp_csum) == 0 ]] && (($(kv "$out" largest_ip) <= UPLINK_MTU)); then
        pass "$vm -> client: all $(kv "$out" segments) segments seen on the wire fit the MTU (largest IP packet $(kv "$out" largest_ip) <= $UPLINK_MTU) with valid IPv4 and TCP checksums"
    else
        check_fail "$vm -> client: the segments on the wire: $out (expected every IP packet <= $UPLINK_MTU, valid checksums, >= $BULK_BYTES payload bytes recorded)"
    fi
    frames_after=$(stat_field guest_tso_frames)
    segments_after=$(stat_field guest_tso_segments)
    if ((frames_after > frames_before && segments_after - segments_before > frames_after - frames_before)) &&
        [[ $(stat_field drop_guest_offload) == "$drops_before" && $(vm_field "$vm" offload_tso4) == 1 ]]; then
        pass "$vm sent with TSO (offload_tso4 negotiated): portmux cut $((frames_after - frames_before)) TSO frames into $((segments_after - segments_before)) segments, no offload drop"
    else
        check_fail "$vm's TSO: guest_tso_frames $frames_before -> $frames_after, guest_tso_segments $segments_before -> $segments_after, drop_guest_offload $drops_before -> $(stat_field drop_guest_offload), offload_tso4 $(vm_field "$vm" offload_tso4)"
    fi

    out=$(ip netns exec "$PMX_NS_CLIENT" timeout 200 /usr/bin/python3 "$PMX_WORKDIR/bulk_peer.py" push \
        "$SHARED_IP" "${SINK_PORT[$vm]}" "$BULK_BYTES" 2>&1) || true
    wait_console "$vm" '^PMX RESULT tcp-sink ' 30 || true
    line=$(console_line "$vm" '^PMX RESULT tcp-sink ')
    if [[ $(kv "$out" bytes) == "$BULK_BYTES" && $(kv "$line" bytes) == "$BULK_BYTES" &&
        -n $(kv "$out" sha256) && $(kv "$out" sha256) == $(kv "$line" sha256) ]]; then
        pass "client -> $vm: $BULK_BYTES bytes of TCP arrive intact (sha256 $(kv "$out" sha256 | cut -c1-16)... on both ends)"
    else
        check_fail "client -> $vm: $BULK_BYTES bytes: the client reported \"$out\", the guest \"$line\""
    fi
}

# Sends COUNT datagrams from the client to udp/PORT of the shared IP, without waiting for answers.
udp_burst() {
    local port=$1 count=$2
    ip netns exec "$PMX_NS_CLIENT" timeout 15 /usr/bin/python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"burst", (sys.argv[1], int(sys.argv[2])))
    if i % 20 == 19:
        time.sleep(0.01)' "$SHARED_IP" "$port" "$count"
}

# Client mode: QEMU of vm1 is killed (a crash) and started again on its socket; portmux reconnects by itself.
check_client_mode_restart() {
    local before_drop before_txd before_tx after_drop after_txd after_tx no_mbuf_before out
    kill_qemu vm1
    if wait_link vm1 down 20; then
        pass "client mode: vm1's link goes down in /portmux/vms when its QEMU is killed"
    else
        check_fail "client mode: vm1's link still $(vm_field vm1 link) 20 s after its QEMU was killed"
    fi

    # vm1 is gone: its traffic is dropped and counted at transmit; vm2 does not notice.
    before_drop=$(stat_field drop_tx)
    before_txd=$(vm_field vm1 tx_dropped)
    before_tx=$(vm_field vm1 tx_packets)
    no_mbuf_before=$(stat_field drop_no_mbuf)
    udp_burst "${UDP_PORT[vm1]}" 200
    if out=$(pmx_net "$PMX_NS_CLIENT" tcp "$SHARED_IP" "${TCP_PORT[vm1]}" --timeout 2 2>&1); then
        check_fail "while vm1 is down, tcp/${TCP_PORT[vm1]} was answered: $out"
    fi
    expect_tcp "${TCP_PORT[vm2]}" vm2 "while vm1 is down, vm2 is undisturbed"
    expect_udp "${UDP_PORT[vm2]}" vm2 "while vm1 is down, vm2 is undisturbed"
    sleep 0.5
    after_drop=$(stat_field drop_tx)
    after_txd=$(vm_field vm1 tx_dropped)
    after_tx=$(vm_field vm1 tx_packets)
    if ((after_txd - before_txd >= 200 && after_drop - before_drop >= 200 && after_tx == before_tx)); then
        pass "while vm1 is down its 200+ frames are dropped and counted (vm1 tx_dropped +$((after_txd - before_txd)), drop_tx +$((after_drop - before_drop)), vm1 tx_packets unchanged)"
    else
        check_fail "while vm1 is down: vm1 tx_dropped $before_txd -> $after_txd, drop_tx $before_drop -> $after_drop, vm1 tx_packets $before_tx -> $after_tx (expected +200 drops and no transmit)"
    fi
    if [[ $(stat_field drop_no_mbuf) == "$no_mbuf_before" ]]; then
        pass "nothing is queued for the absent vm1: no mbuf shortage (drop_no_mbuf stays $no_mbuf_before)"
    else
        check_fail "drop_no_mbuf grew while vm1 was down ($no_mbuf_before -> $(stat_field drop_no_mbuf))"
    fi

    start_qemu vm1 "out:$CLIENT_IP:7000"
    wait_guest_up vm1 120
    pass "client mode: portmux reconnects to the restarted QEMU of vm1 (link up again)"
    wait_console vm1 '^PMX DONE' 120 || check_fail "restarted vm1 did not finish booting within 120 s"
    expect_tcp "${TCP_PORT[vm1]}" vm1 "after its restart (client mode), vm1"
    expect_udp "${UDP_PORT[vm1]}" vm1 "after its restart (client mode), vm1"
    local line
    line=$(console_line vm1 '^PMX RESULT out ')
    if [[ $line == "PMX RESULT out OK client answered"* ]]; then
        pass "after its restart, vm1's outgoing connection gets its reply"
    else
        check_fail "after its restart, vm1's outgoing connection: \"$line\""
    fi
}

# Server mode: portmux keeps the socket; a new QEMU connects to it and vm2 works again.
check_server_mode_restart() {
    kill_qemu vm2
    if wait_link vm2 down 20; then
        pass "server mode: vm2's link goes down in /portmux/vms when its QEMU is killed"
    else
        check_fail "server mode: vm2's link still $(vm_field vm2 link) 20 s after its QEMU was killed"
    fi
    expect_tcp "${TCP_PORT[vm1]}" vm1 "while vm2 is down, vm1 is undisturbed"
    [[ -S $PMX_WORKDIR/vm2.sock ]] || check_fail "server mode: portmux's socket $PMX_WORKDIR/vm2.sock is gone"
    start_qemu vm2
    wait_guest_up vm2 120
    pass "server mode: a new QEMU connects to portmux's socket and vm2's link is up again"
    wait_console vm2 '^PMX DONE' 120 || check_fail "the new vm2 did not finish booting within 120 s"
    expect_tcp "${TCP_PORT[vm2]}" vm2 "after its restart (server mode), vm2"
    expect_udp "${UDP_PORT[vm2]}" vm2 "after its restart (server mode), vm2"
}

check_clean_stop() {
    local vm
    for vm in vm1 vm2; do kill_qemu "$vm"; done
    pmx_stop_portmux
    if [[ $PMX_PORTMUX_STATUS -eq 0 ]]; then
        pass "SIGTERM stops portmux with exit status 0 after the guests' restarts"
    else
        check_fail "portmux exited with status $PMX_PORTMUX_STATUS on SIGTERM"
    fi
}

main() {
    # shellcheck source=../../scripts/demo.sh
    source "$ROOT/scripts/demo.sh"
    prepare_guest
    choose_accelerator
    ensure_hugepages
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    (
        for ((t = 0; t < TIME_LIMIT; t++)); do sleep 1; done
        echo "FAIL: the test ran over its time limit of $TIME_LIMIT s" >&2
        kill -TERM $$
    ) &
    WATCHDOG_PID=$!

    pmx_init "vm$$" "$PORTMUX" ""
    PMX_CONFIG=$PMX_WORKDIR/portmux.json
    write_config
    build_topology
    start_portmux
    pmx_server "$PMX_NS_SW" host tcp:22 tcp:2222
    pmx_server "$PMX_NS_CLIENT" client tcp:7000
    start_client_http
    write_bulk_peer
    local spoof_before
    spoof_before=$(stat_field drop_spoof_port)
    echo "portmux is running (pid $PMX_PORTMUX_PID, file prefix $PMX_PREFIX); booting vm1 (vhost client mode) and vm2 (vhost server mode)"

    local vm
    for vm in vm1 vm2; do
        start_qemu "$vm" "out:$CLIENT_IP:7000,wget:$CLIENT_IP:$HTTP_PORT_CLIENT,spoof:$CLIENT_IP:7000:${SPOOF_PORT[$vm]}"
    done
    for vm in vm1 vm2; do wait_guest_up "$vm" 150; done
    pass "both guests booted and attached: vm1 and vm2 links up in /portmux/vms"

    check_inbound_by_port
    check_host_ports
    for vm in vm1 vm2; do check_guest_outgoing "$vm"; done
    for vm in vm1 vm2; do check_guest_spoof "$vm"; done
    local spoof_after
    spoof_after=$(stat_field drop_spoof_port)
    if ((spoof_after >= spoof_before + 2)); then
        pass "drop_spoof_port grew with the guests' attempts ($spoof_before -> $spoof_after)"
    else
        check_fail "drop_spoof_port $spoof_before -> $spoof_after after both guests tried a foreign source port"
    fi
    # The guests run with QEMU's default virtio-net offloads: their TCP/UDP leaves with partial checksums,
    # which portmux completed (the peers above accepted every answer, so the checksums were right).
    local completed offload_drops
    completed=$(stat_field guest_csum_completed)
    offload_drops=$(stat_field drop_guest_offload)
    if ((completed > 0 && offload_drops == 0)) && [[ $(vm_field vm1 offload_csum) == 1 ]]; then
        pass "guests with default offloads: checksum offload negotiated, $completed partial checksums completed, no offload drop"
    else
        check_fail "default offloads: guest_csum_completed $completed, drop_guest_offload $offload_drops, vm1 offload_csum $(vm_field vm1 offload_csum)"
    fi

    check_bulk_tcp vm1

    check_client_mode_restart
    check_server_mode_restart
    check_clean_stop

    if ((FAILURES > 0)); then
        echo "FAIL: $FAILURES check(s) failed with real guests"
        exit 1
    fi
    echo "PASS: real guests on vhost-user ports (both modes, with restarts)"
}

main
