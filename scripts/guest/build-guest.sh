#!/usr/bin/env bash
# Builds the minimal test guest (Debian cloud kernel + busybox initramfs) for the real-guest tests, cached.
#
# Usage: scripts/guest/build-guest.sh        (root: installs missing packages with apt-get)
# Prints, on stdout, the two lines the tests read:
#   PMX_GUEST_KERNEL=/var/cache/portmux-guest/vmlinuz
#   PMX_GUEST_INITRD=/var/cache/portmux-guest/initrd-<hash>.img
# Everything comes from Debian packages, downloaded and unpacked with dpkg -x (nothing is installed into
# the host from them): the versioned linux-image-*-cloud-amd64 that linux-image-cloud-amd64 depends on, and
# busybox-static. The cache (${PORTMUX_GUEST_CACHE:-/var/cache/portmux-guest}) keeps the kernel until it is
# deleted; the initramfs is rebuilt when this script, udp_echo.c or tcp_bytes.c changes (its name carries
# their hash).
#
# The guest's /init reads its role from the kernel command line (see the heredoc below):
#   pmx.name=vm1 pmx.ip=192.0.2.10/24 pmx.gw=192.0.2.1 pmx.mac=52:54:00:00:01:01 pmx.ports=40000-40999
#   pmx.http=8080 pmx.tcp=8000,8001 pmx.udp=5300 pmx.sink=8050 pmx.source=8051:8388608
#   pmx.do=out:192.0.2.1:7000,wget:192.0.2.1:7080,spoof:192.0.2.1:7000:42500
# and reports on the serial console in lines starting with "PMX ".
set -euo pipefail

readonly HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly CACHE=${PORTMUX_GUEST_CACHE:-/var/cache/portmux-guest}
# The virtio modules, in dependency order (the cloud kernel package ships no modules.dep).
readonly MODULES=(
    kernel/drivers/virtio/virtio_ring.ko
    kernel/drivers/virtio/virtio.ko
    kernel/drivers/virtio/virtio_pci_legacy_dev.ko
    kernel/drivers/virtio/virtio_pci_modern_dev.ko
    kernel/drivers/virtio/virtio_pci.ko
    kernel/net/core/failover.ko
    kernel/drivers/net/net_failover.ko
    kernel/drivers/net/virtio_net.ko
)
readonly HOST_PACKAGES=(qemu-system-x86 cpio gcc libc6-dev)

say() { printf 'build-guest: %s\n' "$*" >&2; }
die() {
    printf 'build-guest: error: %s\n' "$*" >&2
    exit 1
}

APT_UPDATED=0
apt_update_once() {
    ((APT_UPDATED)) && return 0
    say "apt-get update"
    apt-get update -qq >&2 || die "apt-get update failed"
    APT_UPDATED=1
}

# Host tools: QEMU to run the guest, cpio for the initramfs, gcc + libc6-dev for the static UDP and TCP tools.
# busybox-static is only downloaded, never installed: it conflicts with the busybox package, which other
# tools (initramfs-tools) may need on the host.
install_host_packages() {
    local missing=() pkg
    for pkg in "${HOST_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) -eq 0 ]] || die "missing packages ${missing[*]} and not root to install them"
    apt_update_once
    say "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed"
}

# The versioned kernel package behind the linux-image-cloud-amd64 metapackage, e.g. linux-image-6.1.0-56-cloud-amd64.
cloud_kernel_package() {
    local name
    name=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-.*-cloud-amd64/ { print $2; exit }')
    if [[ -z $name ]]; then
        apt_update_once
        name=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null | awk '/Depends: linux-image-.*-cloud-amd64/ { print $2; exit }')
    fi
    [[ -n $name ]] || die "cannot find the package linux-image-cloud-amd64 depends on (apt-cache depends)"
    echo "$name"
}

# apt-get download PACKAGE into DIR (the _apt user must be able to write there, hence the mode).
download() {
    local package=$1 dir=$2
    chmod 0777 "$dir"
    (cd "$dir" && apt-get download -qq "$package" >&2) || {
        apt_update_once
        (cd "$dir" && apt-get download -qq "$package" >&2) || die "apt-get download $package failed"
    }
}

# Kernel image and the virtio modules, unpacked once into the cache.
fetch_kernel() {
    [[ -f $CACHE/vmlinuz && -d $CACHE/modules && -f $CACHE/kernel-version ]] && return 0
    local package tmp
    package=$(cloud_kernel_package)
    say "downloading $package"
    tmp=$(mktemp -d "$CACHE/.kernel.XXXXXX")
    download "$package" "$tmp"
    dpkg -x "$tmp"/"$package"_*.deb "$tmp/root"
    local vmlinuz version module
    vmlinuz=$(ls "$tmp"/root/boot/vmlinuz-* | head -n 1)
    [[ -f $vmlinuz ]] || die "$package has no /boot/vmlinuz-*"
    version=${vmlinuz##*/vmlinuz-}
    rm -rf "$CACHE/modules"
    mkdir -p "$CACHE/modules"
    for module in "${MODULES[@]}"; do
        [[ -f $tmp/root/lib/modules/$version/$module ]] || die "$package has no $module"
        cp "$tmp/root/lib/modules/$version/$module" "$CACHE/modules/"
    done
    cp "$vmlinuz" "$CACHE/vmlinuz"
    echo "$version" >"$CACHE/kernel-version"
    rm -rf "$tmp"
}

fetch_busybox() {
    [[ -x $CACHE/busybox ]] && return 0
    local tmp
    say "downloading busybox-static"
    tmp=$(mktemp -d "$CACHE/.busybox.XXXXXX")
    download busybox-static "$tmp"
    dpkg -x "$tmp"/busybox-static_*.deb "$tmp/root"
    [[ -x $tmp/root/bin/busybox ]] || die "busybox-static has no /bin/busybox"
    cp "$tmp/root/bin/busybox" "$CACHE/busybox"
    rm -rf "$tmp"
}

# The guest's /init: a busybox shell script, PID 1 for the guest's whole life.
write_init() {
    cat >"$1" <<'INIT'
#!/bin/busybox sh
# portmux test guest: configures eth0 from the kernel command line, starts named servers, runs client actions.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
report() { echo "PMX $*"; }

NAME=guest IP= GW= MAC= PORTS= HTTP= TCP= UDP= SINK= SOURCE= DO=
for arg in $(cat /proc/cmdline); do
    case $arg in
    pmx.name=*) NAME=${arg#*=} ;;
    pmx.ip=*) IP=${arg#*=} ;;
    pmx.gw=*) GW=${arg#*=} ;;
    pmx.mac=*) MAC=${arg#*=} ;;
    pmx.ports=*) PORTS=${arg#*=} ;;
    pmx.http=*) HTTP=${arg#*=} ;;
    pmx.tcp=*) TCP=${arg#*=} ;;
    pmx.udp=*) UDP=${arg#*=} ;;
    pmx.sink=*) SINK=${arg#*=} ;;
    pmx.source=*) SOURCE=${arg#*=} ;;
    pmx.do=*) DO=${arg#*=} ;;
    esac
done

for module in virtio_ring virtio virtio_pci_legacy_dev virtio_pci_modern_dev virtio_pci failover net_failover virtio_net; do
    insmod /lib/modules/$module.ko || report "ERROR insmod $module failed"
done
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
[ -e /sys/class/net/eth0 ] || report "ERROR no eth0"

ip link set lo up
[ -n "$MAC" ] && ip link set eth0 address "$MAC"
[ -n "$IP" ] && ip addr add "$IP" dev eth0
ip link set eth0 up
[ -n "$GW" ] && ip route add default via "$GW"
# Outgoing connections take their source port from the VM's own range (portmux drops any other).
[ -n "$PORTS" ] && echo "${PORTS%-*} ${PORTS#*-}" >/proc/sys/net/ipv4/ip_local_port_range

if [ -n "$HTTP" ]; then
    mkdir -p /www
    echo "$NAME answered http/$HTTP" >/www/index.html
    httpd -p "$HTTP" -h /www
fi
for port in $(echo "$TCP" | tr ',' ' '); do
    printf '#!/bin/sh\nread -t 2 line\necho "%s answered tcp/%s"\n' "$NAME" "$port" >/bin/answer-$port
    chmod +x /bin/answer-$port
    nc -ll -p "$port" -e /bin/answer-$port &
done
[ -n "$UDP" ] && /bin/udp_echo "$NAME" $(echo "$UDP" | tr ',' ' ') &
# Bulk TCP: a port that reads each connection to its end, one that sends BYTES to each; both print digests.
[ -n "$SINK" ] && /bin/tcp_bytes sink "$SINK" &
[ -n "$SOURCE" ] && /bin/tcp_bytes source "${SOURCE%:*}" "${SOURCE#*:}" &
sleep 0.2
report "READY name=$NAME ip=$IP mac=$(cat /sys/class/net/eth0/address) ports=$(cat /proc/sys/net/ipv4/ip_local_port_range | tr '\t' '-')"

# Client actions, bounded: each outgoing one retries for about 30 s (the switch may still be attaching).
run_out() {
    local host=$1 port=$2 reply= i=0
    while [ $i -lt 10 ]; do
        reply=$(echo hello | nc -w 3 "$host" "$port" 2>/dev/null)
        [ -n "$reply" ] && break
        i=$((i + 1))
        sleep 1
    done
    if [ -n "$reply" ]; then report "RESULT out OK $reply"; else report "RESULT out FAIL no answer from $host:$port"; fi
    report "RESULT neigh $(ip neigh show "$host" dev eth0)"
}
run_wget() {
    local host=$1 port=$2 reply= i=0
    while [ $i -lt 10 ]; do
        reply=$(timeout 5 wget -q -O - "http://$host:$port/" 2>/dev/null)
        [ -n "$reply" ] && break
        i=$((i + 1))
        sleep 1
    done
    if [ -n "$reply" ]; then report "RESULT wget OK $reply"; else report "RESULT wget FAIL no answer from $host:$port"; fi
}
# A connection from source port SRC, taken the way a misconfigured guest would: its ephemeral range set to
# SRC alone (busybox nc cannot bind a source port when it connects). The range is restored afterwards.
run_spoof() {
    local host=$1 port=$2 src=$3 reply saved
    saved=$(cat /proc/sys/net/ipv4/ip_local_port_range)
    echo "$src $src" >/proc/sys/net/ipv4/ip_local_port_range
    reply=$(echo hello | nc -w 3 "$host" "$port" 2>/dev/null)
    echo "$saved" >/proc/sys/net/ipv4/ip_local_port_range
    if [ -n "$reply" ]; then report "RESULT spoof ANSWERED $reply"; else report "RESULT spoof BLOCKED source port $src"; fi
}
for action in $(echo "$DO" | tr ',' ' '); do
    set -- $(echo "$action" | tr ':' ' ')
    case $1 in
    out) run_out "$2" "$3" ;;
    wget) run_wget "$2" "$3" ;;
    spoof) run_spoof "$2" "$3" "$4" ;;
    *) report "ERROR unknown action $action" ;;
    esac
done
report "DONE"
while true; do sleep 3600; done
INIT
    chmod 0755 "$1"
}

build_initrd() {
    local out=$1 stage
    stage=$(mktemp -d "$CACHE/.initrd.XXXXXX")
    mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/modules,www}
    cp "$CACHE/busybox" "$stage/bin/busybox"
    ln -s busybox "$stage/bin/sh"
    cp "$CACHE"/modules/*.ko "$stage/lib/modules/"
    gcc -static -O2 -Wall -Wextra -o "$stage/bin/udp_echo" "$HERE/udp_echo.c" || die "gcc -static udp_echo.c failed"
    gcc -static -O2 -Wall -Wextra -o "$stage/bin/tcp_bytes" "$HERE/tcp_bytes.c" || die "gcc -static tcp_bytes.c failed"
    strip "$stage/bin/udp_echo" "$stage/bin/tcp_bytes" 2>/dev/null || true
    write_init "$stage/init"
    # The kernel opens /dev/console before /init runs; without the node init's first messages are lost.
    mknod -m 0600 "$stage/dev/console" c 5 1 2>/dev/null || true
    (cd "$stage" && find . | cpio -o -H newc --quiet | gzip -9) >"$out.tmp"
    mv "$out.tmp" "$out"
    rm -rf "$stage"
}

main() {
    install_host_packages
    mkdir -p "$CACHE"
    exec 9>"$CACHE/.lock"
    flock -w 300 9 || die "another build holds $CACHE/.lock"
    fetch_kernel
    fetch_busybox
    local hash initrd
    hash=$(cat "${BASH_SOURCE[0]}" "$HERE/udp_echo.c" "$HERE/tcp_bytes.c" "$CACHE/kernel-version" | sha256sum | cut -c1-16)
    initrd=$CACHE/initrd-$hash.img
    if [[ ! -f $initrd ]]; then
        say "building $initrd"
        rm -f "$CACHE"/initrd-*.img
        build_initrd "$initrd"
    fi
    echo "PMX_GUEST_KERNEL=$CACHE/vmlinuz"
    echo "PMX_GUEST_INITRD=$initrd"
}

main "$@"
