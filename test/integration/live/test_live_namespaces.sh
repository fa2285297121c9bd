#!/usr/bin/env bash
# Live forwarding through network namespaces: real kernels on every side of portmux (client, host, two VMs).
#
# Usage: test_live_namespaces.sh PORTMUX_BINARY   (root; exit 0 pass, 1 fail, 77 skip)
# The topology and traffic tools come from scripts/demo.sh (docs/demo.md draws it); this file asserts.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
readonly ROOT
readonly PORTMUX=${1:?usage: test_live_namespaces.sh PORTMUX_BINARY}



# expect_prefix WHAT ACTUAL EXPECTED_PREFIX
expect_prefix() {
    [[ $2 == "$3"* ]] || pmx_fail "$1: expected an answer starting with \"$3\", got \"$2\""
    pass "$1: $2"
}

# Client-side reply text of a TCP/UDP exchange (the tool prints "LOCAL_PORT<TAB>REPLY").
reply_of() { cut -f2- <<<"$1"; }

# json_true JSON EXPRESSION: whether the Python EXPRESSION over `d` (the decoded JSON) holds. `vm(d, NAME)` is
# a VM's entry in a /portmux/vms answer, whether keyed by name or listed with a "name" field (paged form).
json_true() {
    /usr/bin/python3 -c '
import json, sys
def vm(d, name):
    if name in d:
        return d[name]
    return next(v for v in d.values() if isinstance(v, dict) and v.get("name") == name)
d = json.loads(sys.argv[1])
sys.exit(0 if eval("(" + sys.argv[2] + ")") else 1)' "$1" "$2"
}

# json_check WHAT JSON EXPRESSION: the assertion form of json_true.
json_check() {
    json_true "$2" "$3" || pmx_fail "$1: $3 is false in $2"
    pass "$1"
}

test_tcp_reaches_the_owning_vm() {
    local out
    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 8000) || pmx_fail "tcp/8000 (vm1's port): no answer"
    expect_prefix "tcp to a port of vm1 reaches vm1" "$(reply_of "$out")" "vm1 answered tcp/8000"
    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 9000) || pmx_fail "tcp/9000 (vm2's port): no answer"
    expect_prefix "tcp to a port of vm2 reaches vm2" "$(reply_of "$out")" "vm2 answered tcp/9000"
}

test_udp_reaches_the_owning_vm() {
    local out
    out=$(pmx_net "$PMX_NS_CLIENT" udp "$PMX_SHARED_IP" 5300) || pmx_fail "udp/5300 (vm1's port): no answer"
    expect_prefix "udp to a port of vm1 reaches vm1" "$(reply_of "$out")" "vm1 answered udp/5300"
}

test_host_ports_and_unowned_ports_reach_the_host() {
    local out
    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 22) || pmx_fail "tcp/22 (the host's port): no answer"
    expect_prefix "tcp to a port the host owns reaches the host" "$(reply_of "$out")" "host answered tcp/22"
    out=$(pmx_net "$PMX_NS_CLIENT" tcp "$PMX_SHARED_IP" 2222) || pmx_fail "tcp/2222 (nobody's port): no answer"
    expect_prefix "tcp to a port nobody owns reaches the host (unmatched: host)" "$(reply_of "$out")" \
        "host answered tcp/2222"
}

test_ping_of_the_shared_ip_is_answered_by_the_host() {
    local host_before vm1_before vm2_before out
    host_before=$(pmx_in_echos "$PMX_NS_SW")
    vm1_before=$(pmx_in_echos "$PMX_NS_VM1")
    vm2_before=$(pmx_in_echos "$PMX_NS_VM2")
    out=$(pmx_net "$PMX_NS_CLIENT" ping "$PMX_SHARED_IP") || pmx_fail "ping $PMX_SHARED_IP: no echo reply"
    (($(pmx_in_echos "$PMX_NS_SW") > host_before)) || pmx_fail "ping: the host's kernel saw no echo request"
    (($(pmx_in_echos "$PMX_NS_VM1") == vm1_before)) || pmx_fail "ping: an echo request reached vm1"
    (($(pmx_in_echos "$PMX_NS_VM2") == vm2_before)) || pmx_fail "ping: an echo request reached vm2"
    pass "ping of the shared IP is answered by the host only: $out"
}

test_vm_outgoing_connection_gets_its_reply() {
    local out lport reply
    out=$(pmx_net "$PMX_NS_VM1" tcp "$PMX_CLIENT_IP" 7000) || pmx_fail "vm1 -> client tcp/7000: no answer"
    IFS=$'\t' read -r lport reply <<<"$out"
    ((lport >= 40000 && lport <= 40999)) || pmx_fail "vm1's ephemeral port $lport is outside 40000-40999"
    expect_prefix "an outgoing tcp connection of vm1 (source port $lport) gets its reply" "$reply" \
        "client answered tcp/7000 (peer $PMX_SHARED_IP:$lport)"
}

test_vm_cannot_send_from_another_vms_port() {
    local before after out
    before=$(pmx_tel /portmux/stats --key drop_spoof_port)
    if out=$(pmx_net "$PMX_NS_VM2" tcp "$PMX_CLIENT_IP" 7000 --src-port 40500 --timeout 2 2>&1); then
        pmx_fail "vm2 connected from port 40500 (vm1's range): $out"
    fi
    after=$(pmx_tel /portmux/stats --key drop_spoof_port)
    ((after > before)) || pmx_fail "drop_spoof_port did not grow ($before -> $after) when vm2 sent from port 40500"
    pass "vm2 sending from vm1's port 40500 is blocked (drop_spoof_port $before -> $after)"
    json_check "vm2's own counters show the spoofed frames" "$(pmx_tel /portmux/vms)" \
        'vm(d, "vm2")["dropped_spoof"] >= 1 and vm(d, "vm1")["dropped_spoof"] == 0'
}

# Every frame received is accounted for exactly once; retried briefly in case a kernel sends a frame
# (an ARP refresh) between the worker's receive and delivery counters.
test_stats_are_consistent() {
    local stats vms i
    local balance='d["rx_uplink"] == d["to_vm"] + d["to_host"] + d["flooded"] + d["rejected"]
        and d["rx_vms"] == d["to_uplink_from_vm"] + d["drop_spoof_port"] + d["drop_spoof_address"] + d["drop_spoof_arp"]
        and d["rx_host"] == d["to_uplink_from_host"]'
    for ((i = 0; i < 5; i++)); do
        stats=$(pmx_tel /portmux/stats)
        json_true "$stats" "$balance" && break
        sleep 0.5
    done
    json_check "stats: every received frame is delivered or dropped exactly once" "$stats" "$balance"
    json_check "stats: traffic went to VMs, to the host and out of the uplink from both" "$stats" \
        'd["to_vm"] >= 6 and d["to_host"] >= 6 and d["to_uplink_from_vm"] >= 4 and d["to_uplink_from_host"] >= 4'
    json_check "stats: ARP replies were flooded to the host and the VMs" "$stats" 'd["flooded"] >= 1'
    json_check "stats: no frame was malformed, firewalled, unmatched or lost at transmit" "$stats" \
        'all(d[k] == 0 for k in ("drop_malformed", "drop_firewall", "drop_unmatched", "drop_vm_disabled", "drop_tx",
                                 "drop_no_mbuf", "tx_dropped_uplink", "tx_dropped_host", "tx_dropped_vms"))'
    vms=$(pmx_tel /portmux/vms)
    json_check "vms: both VMs are up and enabled, and their counters add up to the switch's" "$vms" \
        'all(vm(d, v)["link"] == "up" and vm(d, v)["enabled"] == 1 for v in ("vm1", "vm2"))
         and vm(d, "vm1")["tx_packets"] >= 4 and vm(d, "vm2")["tx_packets"] >= 2
         and vm(d, "vm1")["rx_packets"] + vm(d, "vm2")["rx_packets"] == '"$(pmx_tel /portmux/stats --key rx_vms)"
}

test_sigterm_stops_portmux_cleanly() {
    pmx_stop_portmux
    [[ $PMX_PORTMUX_STATUS -eq 0 ]] || pmx_fail "portmux exited with status $PMX_PORTMUX_STATUS on SIGTERM"
    pass "SIGTERM stops portmux with exit status 0"
    local prefix=$PMX_PREFIX ns
    pmx_cleanup
    for ns in "$PMX_NS_SW" "$PMX_NS_CLIENT" "$PMX_NS_VM1" "$PMX_NS_VM2"; do
        [[ ! -e /var/run/netns/$ns ]] || pmx_fail "namespace $ns left behind"
    done
    [[ ! -e /var/run/dpdk/$prefix ]] || pmx_fail "/var/run/dpdk/$prefix left behind"
    pass "the run left no namespace or runtime directory behind"
}

main() {
    # shellcheck source=../../../scripts/demo.sh
    source "$ROOT/scripts/demo.sh"
    # shellcheck source=live_prerequisites.sh
    source "$ROOT/test/integration/live/live_prerequisites.sh"
    check_prerequisites
    trap pmx_cleanup EXIT
    trap 'exit 130' INT TERM
    pmx_init "t$$" "$PORTMUX" "$ROOT/conf/demo.json"
    pmx_build_topology
    pmx_start_portmux
    pmx_start_servers

    test_tcp_reaches_the_owning_vm
    test_udp_reaches_the_owning_vm
    test_host_ports_and_unowned_ports_reach_the_host
    test_ping_of_the_shared_ip_is_answered_by_the_host
    test_vm_outgoing_connection_gets_its_reply
    test_vm_cannot_send_from_another_vms_port
    test_stats_are_consistent
    test_sigterm_stops_portmux_cleanly
    echo "PASS: live forwarding through network namespaces"
}

main
