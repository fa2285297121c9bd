#!/usr/bin/env bash
# Builds DPDK's l3fwd, the reference application of the cycles benchmark, from the example sources Debian's
# dpdk-doc package ships (/usr/share/dpdk/examples/l3fwd and examples/common), against pkg-config libdpdk.
# Nothing of it is kept in this tree: the sources are copied into DIR and built there.
#
# One change is made to the copy: l3fwd asks for Rx checksum offload on every port and queue without looking
# at what the device offers, and the virtual devices of the benchmark (net_pcap, net_null) offer none, so
# rte_eth_dev_configure fails. The copy masks the port's and each queue's Rx offloads with
# dev_info.rx_offload_capa, which changes nothing on a NIC that has the offload. l3fwd's own checks
# (RFC 1812 header checks, TTL, checksum update) still run in software.
#
# Usage: build_l3fwd.sh DIR    (prints the path of the binary; a second run rebuilds only when needed)
set -euo pipefail

DIR="${1:?usage: build_l3fwd.sh DIR}"
EXAMPLES=/usr/share/dpdk/examples
if [ ! -f "$EXAMPLES/l3fwd/main.c" ]; then
  echo "build_l3fwd: $EXAMPLES/l3fwd missing (Debian package dpdk-doc)" >&2
  exit 1
fi
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
BINARY="$DIR/l3fwd/build/l3fwd-shared"
if [ -x "$BINARY" ] && [ "$BINARY" -nt "$0" ] && [ "$BINARY" -nt "$EXAMPLES/l3fwd/main.c" ]; then
  echo "$BINARY"
  exit 0
fi

rm -rf "$DIR/l3fwd" "$DIR/common"
cp -r "$EXAMPLES/l3fwd" "$EXAMPLES/common" "$DIR/"
main="$DIR/l3fwd/main.c"
# Port level: before rte_eth_dev_configure (anchored on the RSS mask l3fwd already applies there).
sed -i 's|^\(\t\t\)local_port_conf.rx_adv_conf.rss_conf.rss_hf &=|\1local_port_conf.rxmode.offloads \&= dev_info.rx_offload_capa;\n&|' "$main"
# Queue level: each Rx queue asks for the port's offloads, masked the same way.
sed -i 's|rxq_conf.offloads = port_conf.rxmode.offloads;|rxq_conf.offloads = port_conf.rxmode.offloads \& dev_info.rx_offload_capa;|' "$main"
if [ "$(grep -c 'dev_info.rx_offload_capa' "$main")" -ne 2 ]; then
  echo "build_l3fwd: this l3fwd's main.c does not have the lines the offload mask is anchored on" >&2
  exit 1
fi
make -C "$DIR/l3fwd" -j2 shared > "$DIR/build.log" 2>&1 || {
  echo "build_l3fwd: make failed; last lines of $DIR/build.log:" >&2
  tail -20 "$DIR/build.log" >&2
  exit 1
}
echo "$BINARY"
