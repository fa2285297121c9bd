#!/usr/bin/env bash
# Installs what portmux needs on Debian 12 (packages, hugepages) and builds it into build/. Idempotent:
# a second run installs nothing and only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  # build
  g++ meson ninja-build pkg-config
  libdpdk-dev nlohmann-json3-dev libfmt-dev libboost-program-options-dev catch2
  # man pages (man/*.scd) and the Debian package (debian/, test/package)
  scdoc dpkg-dev debhelper fakeroot build-essential
  # runtime tools: dpdk-testpmd, dpdk-telemetry.py, dpdk-dumpcap
  dpdk dpdk-dev
  # the benchmark's reference application, DPDK's l3fwd, built from the example sources of dpdk-doc
  dpdk-doc make
  # tests and demo: scapy (Debian's python3), namespaces, veth offloads
  python3 python3-scapy iproute2 ethtool procps
  # the Prometheus exporter (scripts/portmux-exporter) and promtool, which its test checks the output with
  python3-prometheus-client prometheus
  # the cluster layer (agent/, portmuxctl cluster) and its tests: etcd 3.4, its Python client, JSON Schema
  etcd-server etcd-client python3-etcd3 python3-jsonschema openssl
)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: run as root (packages, hugepages)" >&2
    exit 1
  fi
}

install_packages() {
  local missing=()
  for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -eq 0 ]; then
    echo "setup: packages present"
    return
  fi
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

reserve_hugepages() {
  # 512 x 2 MiB for the vhost-user tests and real runs; tests with virtual devices use --no-huge.
  local want=512
  local have
  have=$(cat /proc/sys/vm/nr_hugepages)
  if [ "$have" -lt "$want" ]; then
    echo "$want" > /proc/sys/vm/nr_hugepages || true
  fi
  if ! mountpoint -q /dev/hugepages; then
    mkdir -p /dev/hugepages
    mount -t hugetlbfs nodev /dev/hugepages || echo "setup: warning: cannot mount hugetlbfs on /dev/hugepages" >&2
  fi
  echo "setup: hugepages $(cat /proc/sys/vm/nr_hugepages) x 2 MiB"
}

build() {
  if [ ! -f build/build.ninja ]; then
    meson setup build --buildtype=debugoptimized >/dev/null
  fi
  ninja -C build
}

need_root
install_packages
reserve_hugepages
build
