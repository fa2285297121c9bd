#!/usr/bin/env bash
# Runtime control with live traffic: after each telemetry change (range add / move / del, VM disable /
# enable, firewall rule add / del) a probe from the client namespace shows where packets now arrive.
#
# Usage: test_live_control.sh PORTMUX_BINARY   (root; exit 0 pass, 1 fail, 77 skip)
# Topology and traffic tools: scripts/demo.sh (docs/demo.md draws it).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
readonly ROOT
readonly PORTMUX=${1:?usage: test_live_control.sh PORTMUX_BINARY}


# change COMMAND: a telemetry change that must succeed.
change() {
    local answer
    answer=$(pmx_tel "$1")
    [[ $answer != *'"error"'* ]] || pmx_fail "$1 was refused: $answer"
    pass "$1 -> $answer"
}

# refused COMMAND: a telemetry change that must be refused, leaving the generation as it was.
refused() {
    local before after answer
    before=$(pmx_tel /portmux/info --key generation)
    answer=$(pmx_tel "$1")
    after=$(pmx_tel /portmux/info --key generation)
    [[ $answer == *'"error"'* ]] || pmx_fail "$1 should have been refused, got $answer"
    [[ $before == "$after" ]] || pmx_fail "$1 was refused but the generation moved from $before to $after"
    pass "$1 refused: $answer"
}

# reaches PROTO PORT WHO: a probe from the client is answered by WHO.
reaches() {
    local out
    out=$(pmx_net "$PMX_NS_CLIENT" "$1" "$PMX_SHARED_IP" "$2") || pmx_fail "$1/$2: no answer (expected $3)"
    [[ $(cut -f2- <<<"$out") == "$3 answered $1/$2"* ]] || pmx_fail "$1/$2: expected $3 to answer, got: $out"
    pass "$1/$2 reaches $3"
}

# unanswered PROTO PORT WHY: a probe gets no answer.
unanswered() {
    local patience=(--timeout 2)
    [[ $1 == udp ]] && patience=(--tries 2)
    if out=$(pmx_net "$PMX_NS_CLIENT" "$1" "$PMX_SHARED_IP" "$2" "${patience[@]}" 2>&1); then
        pmx_fail "$1/$2 should get no answer ($3), got: $out"
    fi
    pass "$1/$2 gets no answer: $3 (${out##*$'\n'})"
}

counter() { pmx_tel /portmux/stats --key "$1"; }

main() {
    # shellcheck source=../../../scripts/demo.sh
    source "$ROOT/scripts/demo.sh"
    # shellcheck source=live_prerequisites.sh
    source "$ROOT/test/integration/live/live_prerequisites.sh"
    check_prerequisites
    trap pmx_cleanup EXIT
    trap 'exit 130' INT TERM
    pmx_init "c$$" "$PORTMUX" "$ROOT/conf/demo.json"
    pmx_build_topology
    pmx_start_portmux
    pmx_start_servers
    # Extra listeners so each owner can answer a port it is about to be given.
    pmx_server "$PMX_NS_VM2" vm2b tcp:8000
    pmx_server "$PMX_NS_VM1" vm1x tcp:7100

    reaches tcp 8000 vm1
    change "/portmux/range/move,tcp:8000-8099,vm2"
    reaches tcp 8000 vm2b
    [[ $(pmx_tel /portmux/lookup,tcp:8000 --key target) == "\"vm2\"" ]] || pmx_fail "lookup does not name vm2"
    change "/portmux/range/move,tcp:8000-8099,vm1"
    reaches tcp 8000 vm1

    unanswered tcp 7100 "nobody owns it and the host does not listen there"
    change "/portmux/range/add,vm1,tcp:7100"
    reaches tcp 7100 vm1x
    refused "/portmux/range/add,vm2,tcp:7000-7200"
    change "/portmux/range/del,tcp:7100"
    unanswered tcp 7100 "the range was deleted: back to the host, which does not listen"

    local disabled_before
    disabled_before=$(counter drop_vm_disabled)
    change "/portmux/vm/disable,vm1"
    unanswered udp 5300 "vm1 is disabled"
    (($(counter drop_vm_disabled) > disabled_before)) ||
        pmx_fail "drop_vm_disabled did not grow: $(pmx_tel /portmux/stats) $(pmx_tel /portmux/vms)"
    pass "packets to the disabled VM are counted as drop_vm_disabled"
    change "/portmux/vm/enable,vm1"
    reaches udp 5300 vm1

    change '/portmux/firewall/add,{"action": "drop", "proto": "tcp", "dst_ports": "9000"}'
    unanswered tcp 9000 "a firewall rule drops it"
    reaches tcp 8000 vm1
    change "/portmux/firewall/del,0"
    reaches tcp 9000 vm2

    pmx_stop_portmux
    [[ $PMX_PORTMUX_STATUS -eq 0 ]] || pmx_fail "portmux exited with status $PMX_PORTMUX_STATUS on SIGTERM"
    echo "PASS: runtime changes steer live traffic at once"
}

main
