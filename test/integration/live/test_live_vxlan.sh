#!/usr/bin/env bash
# Remote VMs live: two portmux instances (hosts A and B) in their own network namespaces on one bridged wire.
# A client reaches a service of B's VM through A's shared address (A wraps the frames in VXLAN to B, B
# delivers them); B's VM answers the client directly. Then a UDP flow runs while its range moves from A's VM
# to the remote (B's VM) and back with /portmux/range/move: after each move returns, the old owner gets
# nothing more and the new owner gets the flow.
#
# Usage: test_live_vxlan.sh PORTMUX_BINARY   (root; exit 0 pass, 1 fail, 77 skip). Documentation addresses only.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
readonly ROOT
readonly PORTMUX=${1:?usage: test_live_vxlan.sh PORTMUX_BINARY}

readonly SHARED_IP=192.0.2.10
readonly CLIENT_IP=192.0.2.1
readonly CLIENT_MAC=02:00:00:00:0c:01
readonly A_IP=198.51.100.1
readonly B_IP=198.51.100.2
readonly A_MAC=02:00:00:00:0a:01
readonly B_MAC=02:00:00:00:0b:01
readonly VMA_MAC=52:54:00:00:0a:01
readonly VMB_MAC=52:54:00:00:0b:01

B_PORTMUX_PID=""

# Two portmux instances: A's is PMX_PORTMUX_PID (stopped by pmx_cleanup), B's is ours.
vx_cleanup() {
    set +e
    # An instance that did not answer during startup is known only as STARTED_PID.
    if [[ -n ${STARTED_PID:-} && $STARTED_PID != "${PMX_PORTMUX_PID:-}" && $STARTED_PID != "$B_PORTMUX_PID" ]]; then
        kill -KILL "$STARTED_PID" 2>/dev/null
        wait "$STARTED_PID" 2>/dev/null
    fi
    if [[ -n $B_PORTMUX_PID ]]; then
        kill -TERM "$B_PORTMUX_PID" 2>/dev/null
        pmx_wait_gone "$B_PORTMUX_PID" 15 || kill -KILL "$B_PORTMUX_PID" 2>/dev/null
        wait "$B_PORTMUX_PID" 2>/dev/null
        B_PORTMUX_PID=""
    fi
    rm -rf "/var/run/dpdk/$PREFIX_B"
    pmx_cleanup
}

# veth NS_A IF_A NS_B IF_B [MAC_A]: a pair without checksum offload (frames crossing portmux carry real sums).
veth() {
    ip link add "$2" netns "$1" type veth peer name "$4" netns "$3"
    pmx_no_offload "$1" "$2"
    pmx_no_offload "$3" "$4"
    [[ -z ${5:-} ]] || ip -n "$1" link set "$2" address "$5"
    ip -n "$1" link set "$2" up
    ip -n "$3" link set "$4" up
}

# A VM namespace: the shared address, its MAC, the client as a permanent neighbour (no ARP while moving).
vm_namespace() {
    local ns=$1 mac=$2 switch_ns=$3 switch_if=$4
    pmx_add_namespace "$ns"
    veth "$ns" eth0 "$switch_ns" "$switch_if" "$mac"
    ip -n "$ns" addr add "$SHARED_IP/24" dev eth0
    ip -n "$ns" neigh replace "$CLIENT_IP" lladdr "$CLIENT_MAC" nud permanent dev eth0
}

build_topology() {
    pmx_add_namespace "$NS_WIRE"
    ip -n "$NS_WIRE" link add br0 type bridge
    ip -n "$NS_WIRE" link set br0 up
    pmx_add_namespace "$NS_CLIENT"
    pmx_add_namespace "$NS_A"
    pmx_add_namespace "$NS_B"
    veth "$NS_CLIENT" eth0 "$NS_WIRE" c0 "$CLIENT_MAC"
    veth "$NS_A" vxa-up "$NS_WIRE" a0 "$A_MAC"
    veth "$NS_B" vxb-up "$NS_WIRE" b0 "$B_MAC"
    for port in c0 a0 b0; do ip -n "$NS_WIRE" link set "$port" master br0; done
    ip -n "$NS_CLIENT" addr add "$CLIENT_IP/24" dev eth0
    # The wire's router would know A as the shared address's owner: a permanent entry keeps B (which also
    # uses the shared address) from ever being chosen by ARP.
    ip -n "$NS_CLIENT" neigh replace "$SHARED_IP" lladdr "$A_MAC" nud permanent dev eth0
    vm_namespace "$NS_VMA" "$VMA_MAC" "$NS_A" vxa-vm
    vm_namespace "$NS_VMB" "$VMB_MAC" "$NS_B" vxb-vm
    for ns_if in "$NS_A vxa-up" "$NS_A vxa-vm" "$NS_B vxb-up" "$NS_B vxb-vm"; do
        set -- $ns_if
        pmx_sysctl "$1" "net.ipv4.conf.$2.arp_ignore" 8
    done
}

write_configs() {
    cat >"$PMX_WORKDIR/a.json" <<JSON
{ "shared_ip": "$SHARED_IP",
  "uplink": { "device": "net_af_packet0,iface=vxa-up", "mac": "$A_MAC" },
  "host": { "device": "net_tap0,iface=vxa0", "ranges": ["tcp:22"] },
  "vms": [ { "name": "vma", "device": "net_af_packet1,iface=vxa-vm", "mac": "$VMA_MAC", "ranges": ["udp:6000"] } ],
  "vxlan": { "local_ip": "$A_IP", "vni": 4242, "peers": [] },
  "remotes": [ { "name": "db-b", "host": "$B_IP", "mac": "$B_MAC", "ranges": ["tcp:5432", "udp:5433"] } ] }
JSON
    cat >"$PMX_WORKDIR/b.json" <<JSON
{ "shared_ip": "$SHARED_IP",
  "uplink": { "device": "net_af_packet0,iface=vxb-up", "mac": "$B_MAC" },
  "host": { "device": "net_tap0,iface=vxb0", "ranges": ["tcp:22"] },
  "vms": [ { "name": "vmb", "device": "net_af_packet1,iface=vxb-vm", "mac": "$VMB_MAC",
             "ranges": ["tcp:5432", "udp:5433", "udp:6000"] } ],
  "vxlan": { "local_ip": "$B_IP", "vni": 4242, "peers": ["$A_IP"] } }
JSON
}

# start_portmux NS CONFIG PREFIX LOG: sets STARTED_PID once its commands answer (bounded). Not run in a
# subshell, so the process stays this shell's child and its exit status can be waited for.
start_portmux() {
    local ns=$1 config=$2 prefix=$3 log=$4 pid i
    ip netns exec "$ns" "$PORTMUX" --config "$config" -- --no-huge -m 512 --no-pci --lcores "$(pmx_lcores)" \
        --file-prefix "$prefix" --log-level "pmd.*:error" >"$log" 2>&1 &
    pid=$!
    STARTED_PID=$pid
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; pmx_fail "portmux ($config) exited during startup"; }
        [[ $(tel "$prefix" /portmux/info --key version 2>/dev/null) == \"* ]] && break
        sleep 0.1
    done
    ((i < 200)) || { cat "$log" >&2; pmx_fail "portmux ($config): no answer within 20 s"; }
    STARTED_PID=$pid
}

tel() {
    local prefix=$1
    shift
    timeout 40 /usr/bin/python3 "$PMX_WORKDIR/pmxnet.py" telemetry "$prefix" "$@"
}

# A VM's frames sent by portmux (its port's tx_packets); remote tx_packets: frames sent in VXLAN to db-b.
vma_tx() { tel "$PMX_PREFIX" /portmux/vms,vma --key 0 --key tx_packets; }
vmb_tx() { tel "$PREFIX_B" /portmux/vms,vmb --key 0 --key tx_packets; }
remote_tx() { tel "$PMX_PREFIX" /portmux/remotes,db-b --key 0 --key tx_packets; }
stat_of() { tel "$1" /portmux/stats --key "$2"; }

test_tcp_and_udp_reach_the_remote_vm_and_replies_come_from_b() {
    local out b_out_before a_out_before
    b_out_before=$(stat_of "$PREFIX_B" to_uplink_from_vm)
    a_out_before=$(stat_of "$PMX_PREFIX" to_uplink_from_vm)
    out=$(pmx_net "$NS_CLIENT" tcp "$SHARED_IP" 5432) || pmx_fail "tcp/5432 through A to B's VM: no answer"
    [[ $(cut -f2- <<<"$out") == "vmb answered tcp/5432"* ]] || pmx_fail "tcp/5432: unexpected answer $out"
    pass "tcp to a remote VM's port through A's shared address reaches B's VM: $out"
    out=$(pmx_net "$NS_CLIENT" udp "$SHARED_IP" 5433) || pmx_fail "udp/5433 through A to B's VM: no answer"
    [[ $(cut -f2- <<<"$out") == "vmb answered udp/5433"* ]] || pmx_fail "udp/5433: unexpected answer $out"
    pass "udp to a remote VM's port reaches B's VM: $out"
    (($(stat_of "$PMX_PREFIX" vxlan_encapsulated) >= 2)) || pmx_fail "A: vxlan_encapsulated did not grow"
    (($(stat_of "$PREFIX_B" vxlan_decapsulated) >= 2)) || pmx_fail "B: vxlan_decapsulated did not grow"
    (($(stat_of "$PREFIX_B" to_uplink_from_vm) > b_out_before)) || pmx_fail "B sent no reply out of its uplink"
    (($(stat_of "$PMX_PREFIX" to_uplink_from_vm) == a_out_before)) || pmx_fail "a reply left through A"
    pass "replies leave B directly (B to_uplink_from_vm grew, A's did not)"
    (($(stat_of "$PMX_PREFIX" drop_vxlan) == 0 && $(stat_of "$PREFIX_B" drop_vxlan) == 0)) ||
        pmx_fail "VXLAN frames were refused"
}

# Sends one UDP datagram to the shared address's port 6000 every 4 ms, in the background, until stopped.
start_flow() {
    ip netns exec "$NS_CLIENT" timeout 60 /usr/bin/python3 -c '
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
seq = 0
while True:
    s.sendto(b"seq %d" % seq, ("'"$SHARED_IP"'", 6000))
    seq += 1
    time.sleep(0.004)' >/dev/null 2>&1 &
    PMX_PIDS+=($!)
}

move() {
    local answer
    answer=$(tel "$PMX_PREFIX" "/portmux/range/move,udp:6000,$1")
    [[ $answer != *error* ]] || pmx_fail "range/move udp:6000 to $1: $answer"
}

test_migration_while_traffic_flows() {
    local before after moved settled remote_before b_before
    start_flow
    sleep 1
    before=$(vma_tx)
    sleep 0.5
    (($(vma_tx) > before)) || pmx_fail "the flow does not reach A's VM before the move"
    pass "the UDP flow reaches A's VM (local owner)"

    remote_before=$(remote_tx)
    b_before=$(vmb_tx)
    move db-b
    moved=$(vma_tx)
    sleep 1
    settled=$(vma_tx)
    ((settled == moved)) || pmx_fail "A's VM received $((settled - moved)) frames after the move to the remote returned"
    (($(remote_tx) > remote_before + 50)) || pmx_fail "the flow is not sent to the remote after the move"
    (($(vmb_tx) > b_before + 50)) || pmx_fail "B's VM does not receive the flow after the move"
    pass "after range/move to the remote: A's VM got nothing more, B's VM gets the flow"

    move vma
    moved=$(remote_tx)
    before=$(vma_tx)
    sleep 1
    settled=$(remote_tx)
    ((settled == moved)) || pmx_fail "$((settled - moved)) frames went to the remote after the move back returned"
    (($(vma_tx) > before + 50)) || pmx_fail "A's VM does not receive the flow after the move back"
    pass "after range/move back: nothing more went to the remote, A's VM gets the flow"
    (($(stat_of "$PMX_PREFIX" drop_vxlan_loop) == 0)) || pmx_fail "A counted VXLAN loops"
}

test_both_stop_cleanly() {
    pmx_stop_portmux
    [[ $PMX_PORTMUX_STATUS -eq 0 ]] || pmx_fail "portmux A exited with status $PMX_PORTMUX_STATUS on SIGTERM"
    local status=0
    kill -TERM "$B_PORTMUX_PID"
    pmx_wait_gone "$B_PORTMUX_PID" 15 || pmx_fail "portmux B did not stop within 15 s"
    wait "$B_PORTMUX_PID" || status=$?
    B_PORTMUX_PID=""
    ((status == 0)) || pmx_fail "portmux B exited with status $status on SIGTERM"
    pass "both instances stop with exit status 0"
}

main() {
    # shellcheck source=../../../scripts/demo.sh
    source "$ROOT/scripts/demo.sh"
    # shellcheck source=live_prerequisites.sh
    source "$ROOT/test/integration/live/live_prerequisites.sh"
    check_prerequisites
    trap vx_cleanup EXIT
    trap 'exit 130' INT TERM
    pmx_init "vx$$" "$PORTMUX" /dev/null
    NS_WIRE=pmx-vx$$-wire
    NS_CLIENT=pmx-vx$$-client
    NS_A=pmx-vx$$-a
    NS_B=pmx-vx$$-b
    NS_VMA=pmx-vx$$-vma
    NS_VMB=pmx-vx$$-vmb
    PREFIX_B=pmx-vx$$-b
    build_topology
    write_configs
    start_portmux "$NS_A" "$PMX_WORKDIR/a.json" "$PMX_PREFIX" "$PMX_WORKDIR/portmux.log"
    PMX_PORTMUX_PID=$STARTED_PID
    start_portmux "$NS_B" "$PMX_WORKDIR/b.json" "$PREFIX_B" "$PMX_WORKDIR/portmux-b.log"
    B_PORTMUX_PID=$STARTED_PID
    pmx_server "$NS_VMA" vma udp:6000
    pmx_server "$NS_VMB" vmb tcp:5432 udp:5433 udp:6000

    test_tcp_and_udp_reach_the_remote_vm_and_replies_come_from_b
    test_migration_while_traffic_flows
    test_both_stop_cleanly
    echo "PASS: remote VMs over VXLAN between two portmux hosts, and migration under traffic"
}

main
