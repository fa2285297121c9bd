#!/usr/bin/env bash
# Whole-process throughput of portmux beside dpdk-testpmd (io) and Open vSwitch with DPDK, measured in the same
# invocation over identical virtual devices and lcore mappings. Parts: a (no VMs: null sinks), b (vhost-user to
# a VM-side DPDK consumer, the PVP method), c (range moves under load), d (scale: ranges, VM ports),
# e (exception path through a TAP in a private network namespace).
#
# Usage: bench_throughput.sh --portmux PATH [--repeat N] [--quick] [--json FILE] [--parts a,b,c,d,e] [--keep]
# (--keep leaves the work directory with every log, pcap and configuration for inspection)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
HELPER="$HERE/bench_helper.py"
PY=/usr/bin/python3
TESTPMD=${TESTPMD:-dpdk-testpmd}
OVS_VSWITCHD=${OVS_VSWITCHD:-/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk}

PORTMUX=""
REPEAT=3
QUICK=0
JSON_OUT=""
PARTS="a,b,c,d,e"
KEEP=0
usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case "$1" in
    --portmux) PORTMUX="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --json) JSON_OUT="$2"; shift 2 ;;
    --parts) PARTS="$2"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench_throughput: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
[ -n "$PORTMUX" ] && [ -x "$PORTMUX" ] || { echo "bench_throughput: --portmux PATH (the built binary) is required" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "bench_throughput: run as root (DPDK runtime directory, namespaces, OVS)" >&2; exit 2; }
PORTMUX="$(cd "$(dirname "$PORTMUX")" && pwd)/$(basename "$PORTMUX")"

if [ "$QUICK" = 1 ]; then
  REPEAT=1; WARMUP=0.3; INTERVAL=0.5; CHURN_S=0.5; CHURN_RATES="100 1000"; CHURN_CLIENTS="1 2"
else
  WARMUP=1.0; INTERVAL=2.0; CHURN_S=3.0; CHURN_RATES="100 1000 10000"; CHURN_CLIENTS="1 4"
fi

# Every process gets the same two CPUs the same way: the main (control) lcore on CPU 0, the one forwarding
# lcore on CPU 1. The VM-side consumer of part b runs both its lcores on CPU 0.
SWITCH_LCORES="0@0,1@1"
VM_LCORES="0@0,1@0"
NOHUGE=(--no-huge -m 1024 --no-pci)

TAG="pmxb$$"
WORK="$(mktemp -d /tmp/pmx-bench.XXXXXX)"
RUNS="$WORK/runs.jsonl"
: > "$RUNS"
PIDS=()
declare -A PNAME  # pid -> what it is, for the exit report
# Exit statuses other than 0 after SIGTERM/SIGINT are reported: a crash at shutdown is a bug even when the
# figures are fine.
CRASHES="$WORK/crashes.txt"
: > "$CRASHES"
NETNS=""
OVS_RUN=""

log() { echo "bench: $*" >&2; }

stop_pid() {  # PID [SIGNAL]: stop one process we started, then forget it
  local pid="$1" sig="${2:-TERM}" i
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq 1 100); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  local status=0
  wait "$pid" 2>/dev/null || status=$?
  if [ "$status" -ne 0 ] && [ -n "${PNAME[$pid]:-}" ]; then
    echo "${PNAME[$pid]} exited with status $status after SIG$sig" >> "$CRASHES"
  fi
  local kept=()
  for p in "${PIDS[@]}"; do [ "$p" != "$pid" ] && kept+=("$p"); done
  PIDS=("${kept[@]+"${kept[@]}"}")
}

stop_ovs() {
  [ -n "$OVS_RUN" ] || return 0
  local pidfile
  for pidfile in "$OVS_RUN/ovs-vswitchd.pid" "$OVS_RUN/ovsdb-server.pid"; do
    if [ -f "$pidfile" ]; then
      local pid; pid="$(cat "$pidfile")"
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  OVS_RUN=""
}

cleanup() {
  local pid
  for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
  stop_ovs
  [ -n "$NETNS" ] && ip netns del "$NETNS" 2>/dev/null || true
  rm -rf /var/run/dpdk/"$TAG"-* 2>/dev/null || true
  rm -f /dev/hugepages/"$TAG"-* 2>/dev/null || true
  if [ "$KEEP" = 1 ]; then log "work directory kept: $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

record() { echo "$1" >> "$RUNS"; }  # one JSON object per measurement
with_key() { "$PY" -c 'import json,sys; d=json.loads(sys.argv[2]); d["key"]=sys.argv[1]; d.update(json.loads(sys.argv[3]) if len(sys.argv)>3 else {}); print(json.dumps(d))' "$@"; }

wait_telemetry() {  # PREFIX PID LOG (the runtime directory was emptied before the start: see fresh_prefix)
  local sock="/var/run/dpdk/$1/dpdk_telemetry.v2" i
  for i in $(seq 1 300); do
    [ -S "$sock" ] && return 0
    kill -0 "$2" 2>/dev/null || { log "process exited early; log:"; tail -20 "$3" >&2; return 1; }
    sleep 0.1
  done
  log "no telemetry socket for $1"; tail -20 "$3" >&2; return 1
}

# ---- process launchers: each prints the pid it started -------------------------------------------------------

# A process that died (or crashed at exit) leaves its telemetry socket: a new process with the same prefix
# must not be mistaken for ready because of it.
fresh_prefix() { rm -rf "/var/run/dpdk/$1"; }


PID=""
start_portmux() {  # CONFIG PREFIX LOG [EAL...]
  local config="$1" prefix="$2" logf="$3"; shift 3
  fresh_prefix "$prefix"
  "$PORTMUX" -c "$config" -- "$@" --lcores "$SWITCH_LCORES" --file-prefix "$prefix" \
    --log-level pmd.net.pcap:error < /dev/null > "$logf" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  PNAME[$PID]="portmux -c $(basename "$config")"
  wait_telemetry "$prefix" "$PID" "$logf"
}

start_testpmd() {  # PREFIX LOG LCORES FWD-MODE EAL... -- (testpmd args appended)
  local prefix="$1" logf="$2" lcores="$3" mode="$4"; shift 4
  fresh_prefix "$prefix"
  "$TESTPMD" --lcores "$lcores" --file-prefix "$prefix" --log-level pmd.net.pcap:error "$@" -- \
    --forward-mode="$mode" --nb-cores=1 --rxq=1 --txq=1 --stats-period=1 --no-flush-rx --total-num-mbufs=32768 < /dev/null > "$logf" 2>&1 &
  PID=$!
  PIDS+=("$PID")
  PNAME[$PID]="dpdk-testpmd $mode ($prefix)"
  wait_telemetry "$prefix" "$PID" "$logf"
}

measure() {  # KIND PREFIX [rate options...]: one JSON line
  "$PY" "$HELPER" rate "$@" --warmup "$WARMUP" --interval "$INTERVAL"
}

portmux_run() {  # KEY CONFIG [EAL...]: forwarded packets per second of one portmux run
  local key="$1" config="$2"; shift 2
  local prefix="$TAG-pm" logf="$WORK/portmux.log" result
  if ! start_portmux "$config" "$prefix" "$logf" "$@"; then
    unset "PNAME[$PID]"  # a refused start is reported as the measurement's error, not as a crash
    stop_pid "$PID"
    local why; why="$(grep -m1 '^portmux: ' "$logf" | tail -1)"
    record "$(with_key "$key" '{"mpps": null}' "$("$PY" -c 'import json,sys; print(json.dumps({"error": sys.argv[1]}))' "${why:-did not start}")")"
    log "$key: portmux did not start: ${why:-see log}"
    return 0
  fi
  result="$(measure portmux "$prefix")"
  stop_pid "$PID"
  record "$(with_key "$key" "$result")"
  log "$key: $("$PY" -c 'import json,sys; print("%.3f Mpps" % json.loads(sys.argv[1])["mpps"])' "$result")"
}

has_part() { [[ ",$PARTS," == *",$1,"* ]]; }

hugepages_free() { awk '/HugePages_Free/ {print $2}' /proc/meminfo; }

# ---- traffic and configurations -----------------------------------------------------------------------------

FRAMES=1024
"$PY" "$HELPER" pcap "$WORK/vm64.pcap" --size 64 --frames $FRAMES "1024-65535"
"$PY" "$HELPER" pcap "$WORK/vm1518.pcap" --size 1518 --frames $FRAMES "1024-65535"
VM_COUNTS="1 8 30 64"
PCAP_DEV="net_pcap0,rx_pcap=$WORK/vm64.pcap,infinite_rx=1"
NULLS=(--vdev "net_null0,no-rx=1")

cat > "$WORK/meta.json" <<EOF
{"date": "$(date -u +%Y-%m-%dT%H:%M:%SZ)", "host": "$(hostname)", "cpus": $(nproc),
 "cpu_model": "$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)",
 "dpdk": "$(dpkg-query -W -f='${Version}' dpdk 2>/dev/null || echo unknown)",
 "repeat": $REPEAT, "quick": $([ "$QUICK" = 1 ] && echo true || echo false),
 "warmup_s": $WARMUP, "interval_s": $INTERVAL, "frames_in_pcap": $FRAMES,
 "lcores": {"switch": "--lcores $SWITCH_LCORES", "vm_side": "--lcores $VM_LCORES",
            "ovs": "ovs-vswitchd pinned to CPU 0 (main lcore 0@0), pmd-cpu-mask=0x2 (CPU 1)",
            "note": "switch main lcore on CPU 0, forwarding lcore on CPU 1; VM-side consumer on CPU 0"},
 "memory": {"a_c_d_e": "--no-huge -m 1024", "b": "2 MiB hugepages (--huge-unlink; consumer --single-file-segments)"}}
EOF

# ---- a: switch without VMs ------------------------------------------------------------------------------------

part_a() {
  "$PY" "$HELPER" config "$WORK/a0.json" --uplink "$PCAP_DEV" --vms 2 --ranges 2
  "$PY" "$HELPER" config "$WORK/a1000.json" --uplink "$PCAP_DEV" --vms 2 --ranges 2 --rules 1000
  local r result
  for r in $(seq 1 "$REPEAT"); do
    start_testpmd "$TAG-tp" "$WORK/testpmd.log" "$SWITCH_LCORES" io "${NOHUGE[@]}" --vdev "$PCAP_DEV" "${NULLS[@]}"
    result="$(measure ethdev "$TAG-tp" --port 1)"
    stop_pid "$PID"
    record "$(with_key a/testpmd_io "$result")"
    log "a/testpmd_io: $(echo "$result" | "$PY" -c 'import json,sys; print("%.3f Mpps" % json.load(sys.stdin)["mpps"])')"
    portmux_run a/portmux_0_rules "$WORK/a0.json" "${NOHUGE[@]}"
    portmux_run a/portmux_1000_rules "$WORK/a1000.json" "${NOHUGE[@]}"
  done
}

# ---- b: through vhost-user to a VM-side DPDK consumer -------------------------------------------------------

VIRTIO_OPTS="queues=1,queue_size=1024,packed_vq=0,in_order=1,mrg_rxbuf=0"
HUGE_SWITCH=(-m 512 --huge-unlink --no-pci)

start_consumer() {  # SOCKET: the VM side, counting what it receives
  start_testpmd "$TAG-vm" "$WORK/consumer.log" "$VM_LCORES" rxonly -m 256 --single-file-segments --no-pci \
    --vdev "net_virtio_user0,path=$1,$VIRTIO_OPTS"
}

consumer_rate() {  # KEY: packets per second received by the VM side
  local result
  result="$(measure ethdev "$TAG-vm" --port 0 --field rx)"
  record "$(with_key "$1" "$result")"
  log "$1: $(echo "$result" | "$PY" -c 'import json,sys; print("%.3f Mpps" % json.load(sys.stdin)["mpps"])')"
}

wait_socket() { local i; for i in $(seq 1 100); do [ -S "$1" ] && return 0; sleep 0.1; done; log "no socket $1"; return 1; }

start_ovs() {  # PCAP: OVS-DPDK with a private database, uplink pcap -> vhost-user port, ranges as flows
  local pcap="$1" ovs="$WORK/ovs"
  rm -rf "$ovs"; mkdir -p "$ovs"
  OVS_RUN="$ovs"
  export OVS_RUNDIR="$ovs" OVS_LOGDIR="$ovs" OVS_DBDIR="$ovs" OVS_SYSCONFDIR="$ovs"
  local vsctl=(ovs-vsctl --db="unix:$ovs/db.sock" --timeout=30)
  ovsdb-tool create "$ovs/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server "$ovs/conf.db" --remote="punix:$ovs/db.sock" --pidfile="$ovs/ovsdb-server.pid" \
    --unixctl="$ovs/ovsdb-server.ctl" --log-file="$ovs/ovsdb-server.log" --detach --no-chdir 2>> "$ovs/start.log"
  "${vsctl[@]}" --no-wait init
  "${vsctl[@]}" --no-wait set Open_vSwitch . other_config:dpdk-init=true other_config:dpdk-socket-mem=512 \
    other_config:dpdk-socket-limit=512 other_config:pmd-cpu-mask=0x2 \
    "other_config:dpdk-extra=--file-prefix=$TAG-ovs --huge-unlink --no-pci --log-level=pmd.net.pcap:error --vdev=net_pcap0,rx_pcap=$pcap,infinite_rx=1 --vdev=net_null0,no-rx=1"
  taskset -c 0 "$OVS_VSWITCHD" "unix:$ovs/db.sock" --pidfile="$ovs/ovs-vswitchd.pid" \
    --unixctl="$ovs/ovs-vswitchd.ctl" --log-file="$ovs/ovs-vswitchd.log" --detach --no-chdir 2>> "$ovs/start.log"
  "${vsctl[@]}" add-br br0 -- set bridge br0 datapath_type=netdev
  "${vsctl[@]}" add-port br0 up -- set Interface up type=dpdk options:dpdk-devargs=net_pcap0 ofport_request=1
  "${vsctl[@]}" add-port br0 host -- set Interface host type=dpdk options:dpdk-devargs=net_null0 ofport_request=2
  "${vsctl[@]}" add-port br0 vhu0 -- set Interface vhu0 type=dpdkvhostuser ofport_request=3
  ovs-ofctl del-flows br0
  "$PY" "$HELPER" flows "$WORK/b_ovs.json" "$WORK/flows.txt" --uplink 1 --host 2 --vm-ports 3
  ovs-ofctl add-flows br0 "$WORK/flows.txt"
  wait_socket "$ovs/vhu0"
}

part_b() {
  if [ "$(hugepages_free)" -lt 384 ] || ! mountpoint -q /dev/hugepages; then
    record '{"key": "b/skipped", "skipped": "needs 384 free 2 MiB hugepages on /dev/hugepages (scripts/setup.sh reserves them)"}'
    log "b: skipped: not enough free hugepages ($(hugepages_free) free)"
    return 0
  fi
  local sock="$WORK/vm1.sock" size r pcap dev
  for size in 64 1518; do
    pcap="$WORK/vm$size.pcap"
    dev="net_pcap0,rx_pcap=$pcap,infinite_rx=1"
    "$PY" "$HELPER" config "$WORK/b.json" --uplink "$dev" --vms 1 --vhost "$sock" --ranges 2
    "$PY" "$HELPER" config "$WORK/b_ovs.json" --uplink "$dev" --vms 1 --ranges 2
    for r in $(seq 1 "$REPEAT"); do
      # testpmd io: pcap -> vhost-user
      rm -f "$sock"
      start_testpmd "$TAG-tp" "$WORK/testpmd.log" "$SWITCH_LCORES" io "${HUGE_SWITCH[@]}" --vdev "$dev" \
        --vdev "net_vhost0,iface=$sock,queues=1"
      local switch_pid="$PID"
      wait_socket "$sock"
      start_consumer "$sock"; local consumer="$PID"
      consumer_rate "b/$size/testpmd_io"
      stop_pid "$consumer"; stop_pid "$switch_pid"
      # portmux: its VM port in vhost-user server mode
      rm -f "$sock"
      start_portmux "$WORK/b.json" "$TAG-pm" "$WORK/portmux.log" "${HUGE_SWITCH[@]}"
      switch_pid="$PID"
      wait_socket "$sock"
      start_consumer "$sock"; consumer="$PID"
      consumer_rate "b/$size/portmux"
      stop_pid "$consumer"; stop_pid "$switch_pid"
      # Open vSwitch with DPDK
      if [ -x "$OVS_VSWITCHD" ]; then
        start_ovs "$pcap"
        start_consumer "$WORK/ovs/vhu0"; consumer="$PID"
        consumer_rate "b/$size/ovs_dpdk"
        stop_pid "$consumer"
        stop_ovs
      else
        log "b: $OVS_VSWITCHD missing (Debian package openvswitch-switch-dpdk): OVS not measured"
      fi
    done
  done
}

# ---- c: control under load -----------------------------------------------------------------------------------

part_c() {
  "$PY" "$HELPER" config "$WORK/c.json" --uplink "$PCAP_DEV" --vms 2 --ranges 2
  # vm1 owns 1024-33279 (half the traffic): the range moved back and forth between vm1 and vm2.
  # One synchronous client is bound by its round trip; several clients at once show the switch's own rate.
  local range="1024-33279" rate clients result final r
  for rate in $CHURN_RATES; do
    for clients in $CHURN_CLIENTS; do
      for r in $(seq 1 "$REPEAT"); do
        start_portmux "$WORK/c.json" "$TAG-pm" "$WORK/churn.log" "${NOHUGE[@]}"
        result="$("$PY" "$HELPER" churn "$TAG-pm" --rate "$rate" --duration "$CHURN_S" --range "$range" \
          --warmup "$WARMUP" --clients "$clients")"
        stop_pid "$PID"
        final="$("$PY" "$HELPER" final "$WORK/churn.log")"
        record "$(with_key c/churn "$result" "$("$PY" -c '
import json,sys; f=json.loads(sys.argv[1]); f["zero_loss"] = f["complete"] and f["lost"] == 0 and not f["drops"]; print(json.dumps(f))' "$final")")"
        log "c: $rate/s requested, $clients client(s): $result; final $final"
      done
    done
  done
}

# ---- d: scale ----
# Every VM port is an ethdev: Debian's DPDK is built with RTE_MAX_ETHPORTS=32, so 30 VMs (plus uplink and host)
# is the most one portmux process can have there; the 64-VM run records the startup error.--------------------------------------------------------------------------------------------

part_d() {
  local r n
  for n in 1 1000 65536; do
    "$PY" "$HELPER" config "$WORK/d_r$n.json" --uplink "$PCAP_DEV" --vms 2 --ranges "$n" \
      --owned "$([ "$n" = 65536 ] && echo 0-65535 || echo 1024-65535)"
  done
  for n in $VM_COUNTS; do
    "$PY" "$HELPER" config "$WORK/d_v$n.json" --uplink "$PCAP_DEV" --vms "$n" --ranges 1000
  done
  for r in $(seq 1 "$REPEAT"); do
    for n in 1 1000 65536; do portmux_run "d/ranges_$n" "$WORK/d_r$n.json" "${NOHUGE[@]}"; done
    for n in $VM_COUNTS; do portmux_run "d/vms_$n" "$WORK/d_v$n.json" "${NOHUGE[@]}"; done
  done
}

# ---- e: exception path ---------------------------------------------------------------------------------------

part_e() {
  if ! ip netns add "$TAG" 2>/dev/null; then
    record '{"key": "e/skipped", "skipped": "cannot create a network namespace"}'
    return 0
  fi
  NETNS="$TAG"
  # VMs own 1024-32767; 40000-49999 belongs to nobody and goes to the host (unmatched = host).
  "$PY" "$HELPER" pcap "$WORK/host.pcap" --size 64 --frames $FRAMES "40000-49999"
  "$PY" "$HELPER" pcap "$WORK/vmonly.pcap" --size 64 --frames $FRAMES "1024-32767"
  "$PY" "$HELPER" pcap "$WORK/mix.pcap" --size 64 --frames $FRAMES "1024-32767" "40000-49999"
  local kind r result
  for kind in host vmonly mix; do
    "$PY" "$HELPER" config "$WORK/e_$kind.json" --uplink "net_pcap0,rx_pcap=$WORK/$kind.pcap,infinite_rx=1" \
      --host "net_tap0,iface=pmxb0" --vms 2 --ranges 2 --owned 1024-32767
  done
  for r in $(seq 1 "$REPEAT"); do
    for kind in host vmonly mix; do
      # `ip netns exec` execs portmux itself, so $! is portmux: the TAP appears inside the namespace.
      fresh_prefix "$TAG-ex"
      ip netns exec "$NETNS" "$PORTMUX" -c "$WORK/e_$kind.json" -- "${NOHUGE[@]}" --lcores "$SWITCH_LCORES" \
        --file-prefix "$TAG-ex" --log-level pmd.net.pcap:error < /dev/null > "$WORK/exception.log" 2>&1 &
      PID=$!; PIDS+=("$PID"); PNAME[$PID]="portmux -c e_$kind.json (net_tap host port)"
      wait_telemetry "$TAG-ex" "$PID" "$WORK/exception.log"
      result="$(measure portmux "$TAG-ex")"
      stop_pid "$PID"
      local vm host dropped
      read -r vm host dropped < <("$PY" -c '
import json,sys; d=json.loads(sys.argv[1]); r=d["rates_mpps"]; print(r["tx_vms"], r["tx_host"], d["deltas"]["tx_dropped_host"]/d["seconds"])' "$result")
      case "$kind" in
        host) record "$(with_key e/host_only "$result" "{\"mpps\": $host}")" ;;
        vmonly) record "$(with_key e/vm_only "$result" "{\"mpps\": $vm}")" ;;
        mix)
          record "$(with_key e/mixed_vm "$result" "{\"mpps\": $vm, \"host_tx_dropped\": $dropped}")"
          record "$(with_key e/mixed_host "$result" "{\"mpps\": $host}")" ;;
      esac
      log "e/$kind: to VMs $vm Mpps, to host $host Mpps, host tx_dropped $dropped/s"
    done
  done
}

has_part a && part_a
has_part b && part_b
has_part c && part_c
has_part d && part_d
has_part e && part_e

OUT_JSON="${JSON_OUT:-$WORK/results.json}"
"$PY" "$HELPER" report "$RUNS" "$WORK/meta.json" "$OUT_JSON" "$CRASHES"
