# Shared by the live tests (sourced, after scripts/demo.sh): reporting and the checks that decide whether a
# live test can run here at all. Uses PORTMUX, set by the sourcing test.

skip() {
    echo "SKIP: $*"
    exit 77
}

pass() { echo "ok: $*"; }

check_prerequisites() {
    [[ $(id -u) -eq 0 ]] || skip "needs root (network namespaces, veth, TAP)"
    [[ -x /usr/bin/python3 ]] || skip "/usr/bin/python3 is not installed"
    command -v ethtool >/dev/null 2>&1 || skip "ethtool is not installed (veth checksum offload must be off)"
    local probe=pmx-probe-$$
    ip netns add "$probe" 2>/dev/null || skip "network namespaces are unavailable (ip netns add failed)"
    ip netns delete "$probe"
    [[ -x $PORTMUX ]] || pmx_fail "no portmux binary at $PORTMUX"
}
