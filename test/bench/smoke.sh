#!/usr/bin/env bash
# Smoke run of the benchmarks (--quick): stages, throughput, the cycles benchmark beside l3fwd, the VM-scale
# benchmark (1 and 8 connected VMs) and PVP with 8 VMs must complete and write JSON with every expected key.
# No timing is judged here.
# Usage: smoke.sh BENCH_STAGES PORTMUX BENCH_THROUGHPUT_SH L3FWD_BUILD_DIR
set -euo pipefail

STAGES="$1"
PORTMUX="$2"
THROUGHPUT="$3"
L3FWD_DIR="$4"
BENCH_DIR="$(cd "$(dirname "$THROUGHPUT")" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "bench-smoke: needs root (DPDK runtime directory, network namespace): skipped"
  exit 77
fi
OUT="$(mktemp -d /tmp/pmx-bench-smoke.XXXXXX)"
trap 'rm -rf "$OUT"' EXIT

"$STAGES" --quick --json "$OUT/stages.json" > "$OUT/stages.txt"
bash "$THROUGHPUT" --portmux "$PORTMUX" --quick --json "$OUT/throughput.json" > "$OUT/throughput.txt"
# Part f: l3fwd built from dpdk-doc's sources (cached in the build directory), then one short run of each variant.
L3FWD="$(bash "$BENCH_DIR/build_l3fwd.sh" "$L3FWD_DIR")"
/usr/bin/python3 "$BENCH_DIR/cycles.py" --portmux "$PORTMUX" --l3fwd "$L3FWD" --work "$OUT/cycles" --quick \
  --json "$OUT/cycles.json" > "$OUT/cycles.txt" || { cat "$OUT/cycles.txt"; exit 1; }
# Parts g and h: vhost-user VMs with dpdk-testpmd guests (each skips with its reason, keeping its keys).
/usr/bin/python3 "$BENCH_DIR/vm_scale.py" --portmux "$PORTMUX" --work "$OUT/vm_scale" --quick \
  --json "$OUT/vm_scale.json" > "$OUT/vm_scale.txt" || { cat "$OUT/vm_scale.txt"; exit 1; }
/usr/bin/python3 "$BENCH_DIR/pvp_multi.py" --portmux "$PORTMUX" --work "$OUT/pvp_multi" --quick \
  --json "$OUT/pvp_multi.json" > "$OUT/pvp_multi.txt" || { cat "$OUT/pvp_multi.txt"; exit 1; }

/usr/bin/python3 - "$OUT/stages.json" "$OUT/throughput.json" "$OUT/cycles.json" "$OUT/vm_scale.json" \
  "$OUT/pvp_multi.json" <<'PY'
import json
import sys

stages = json.load(open(sys.argv[1]))
throughput = json.load(open(sys.argv[2]))
cycles = json.load(open(sys.argv[3]))
vm_scale = json.load(open(sys.argv[4]))
pvp = json.load(open(sys.argv[5]))
missing = []


def need(doc, path, number=False):
    node = doc
    for part in path.split("/"):
        if not isinstance(node, dict) or part not in node:
            missing.append(path)
            return
        node = node[part]
    if number and not isinstance(node, (int, float)):
        missing.append(path + " (a number)")


STAT = ("min", "median", "max")
for key in ("tsc_hz", "burst", "runs", "eal", "warnings"):
    need(stages, key)
for stage in ("parse_frame", "decide_delivery", "vm_egress"):
    for s in STAT:
        need(stages, "stages/%s/%s" % (stage, s), number=True)
for case in ("hit", "miss", "maglev_only"):
    for s in STAT:
        need(stages, "stages/decide_delivery_group/%s/%s" % (case, s), number=True)
for rules in ("0", "100", "1000", "10000"):
    for fam in ("v4", "v6"):
        for s in STAT:
            need(stages, "stages/firewall/%s/portmux_%s/%s" % (rules, fam, s), number=True)
        need(stages, "stages/firewall/%s/rte_acl_%s" % (rules, fam))
        need(stages, "stages/firewall/%s/ratio_%s" % (rules, fam))
        if rules != "0":
            need(stages, "stages/firewall/%s/rte_acl_%s/median" % (rules, fam), number=True)
for ranges in ("1", "1000", "65536"):
    for impl in ("portmux", "rte_lpm", "rte_fib"):
        for s in STAT:
            need(stages, "stages/range_lookup/%s/%s/%s" % (ranges, impl, s), number=True)
    need(stages, "stages/range_lookup/%s/ratio_lpm" % ranges, number=True)
    need(stages, "stages/range_lookup/%s/ratio_fib" % ranges, number=True)

for key in ("date", "repeat", "lcores", "warnings"):
    need(throughput, key)
# Part a needs nothing but the binaries: it must have measured something.
for key in ("testpmd_io", "portmux_0_rules", "portmux_1000_rules"):
    need(throughput, "switch_no_vms/%s/median" % key, number=True)
need(throughput, "switch_no_vms/ratio_0_rules", number=True)
need(throughput, "switch_no_vms/ratio_1000_rules", number=True)
# The others may be skipped (no hugepages, no namespaces) but keep their keys.
for size in ("64", "1518"):
    for key in ("testpmd_io", "portmux", "ovs_dpdk", "ratio_testpmd", "ratio_ovs"):
        need(throughput, "vhost/%s/%s" % (size, key))
need(throughput, "vhost/skipped")
for key in ("rates", "highest_rate_zero_loss", "highest_requested_rate_met_with_zero_loss", "worst_latency_ms"):
    need(throughput, "control_under_load/%s" % key)
if not throughput.get("control_under_load", {}).get("rates"):
    missing.append("control_under_load/rates (at least one rate)")
for n in ("1", "1000", "65536"):
    need(throughput, "scale/ranges/%s" % n)
for n in ("1", "8", "30", "64"):
    need(throughput, "scale/vms/%s" % n)
for key in ("host_only_mpps", "vm_only_mpps", "mixed_vm_mpps", "mixed_host_mpps", "ratio_mixed_vm_vs_vm_only",
            "host_tx_dropped_per_s", "skipped"):
    need(throughput, "exception/%s" % key)

for traffic in ("a", "imix"):
    for variant in ("testpmd_io", "l3fwd_lpm", "l3fwd_acl", "portmux_0_rules", "portmux_1000_rules"):
        need(cycles, "traffic/%s/%s/median" % (traffic, variant), number=True)
        share = cycles.get("traffic", {}).get(traffic, {}).get(variant, {}).get("forwarded_share", 0)
        if share < 0.99:  # every variant must really forward the frames it is timed on
            missing.append("traffic/%s/%s forwarded only %.3f of its frames" % (traffic, variant, share))
    for ratio in ("portmux_0_rules/l3fwd_lpm", "portmux_1000_rules/l3fwd_acl"):  # keys with a slash
        if not isinstance(cycles.get("ratios", {}).get(traffic, {}).get(ratio), (int, float)):
            missing.append("cycles ratios/%s/%s (a number)" % (traffic, ratio))

for key in ("tsc_hz", "repeat", "vhost_mode", "counts", "ratios_vs_8", "ratios_delivered_vs_8",
            "ratios_host_bound_vs_8", "target",
            "memory_per_vm_kib", "startup", "load", "skipped", "errors", "warnings"):
    need(vm_scale, key)
if not vm_scale.get("skipped"):
    for n in ("1", "8"):
        for key in ("median", "min", "max", "cycles_per_delivered", "mpps_per_cpu_s", "wall_mpps",
                    "delivered_share", "startup_listed_s", "startup_links_up_s", "connected"):
            need(vm_scale, "counts/%s/%s" % (n, key), number=True)
        for key in ("VmRSS", "RssAnon", "own_hugepages"):
            need(vm_scale, "counts/%s/memory_kib/%s" % (n, key), number=True)
        need(vm_scale, "ratios_vs_8/%s" % n, number=True)
        need(vm_scale, "ratios_host_bound_vs_8/%s" % n, number=True)
        for key in ("median", "min", "max", "mpps_per_cpu_s", "wall_mpps", "forwarded_share"):
            need(vm_scale, "counts/%s/host_bound/%s" % (n, key), number=True)
        if vm_scale.get("counts", {}).get(n, {}).get("connected") != int(n):
            missing.append("vm_scale counts/%s: not every VM connected" % n)
    for key in ("from", "to", "VmRSS", "own_hugepages"):
        need(vm_scale, "memory_per_vm_kib/%s" % key, number=True)
    for key in ("vms", "listed_s", "links_up_s", "connected"):
        need(vm_scale, "startup/%s" % key, number=True)
for key in ("vms", "repeat", "figure", "switches", "ratios", "target", "not_measured", "skipped", "errors",
            "warnings"):
    need(pvp, key)
for ratio in ("portmux/ovs_dpdk", "portmux/testpmd_io"):  # keys with a slash: not through need()
    if ratio not in pvp.get("ratios", {}):
        missing.append("pvp ratios/%s" % ratio)
if not pvp.get("skipped"):
    for switch in ("portmux", "testpmd_io") + (() if "ovs_dpdk" in pvp.get("not_measured", {}) else ("ovs_dpdk",)):
        for key in ("median", "wall_mpps", "cpu_share", "vm_side_cpu_share", "vms_reached"):
            need(pvp, "switches/%s/%s" % (switch, key), number=True)
        if pvp.get("switches", {}).get(switch, {}).get("vms_reached") != 8:  # the fan-out must reach every VM
            missing.append("pvp switches/%s: not every VM received frames" % switch)

if missing:
    print("bench-smoke: missing or wrong keys:\n  " + "\n  ".join(missing))
    sys.exit(1)
print("bench-smoke: the five benchmarks completed; stage, throughput, cycles, VM-scale and PVP JSON hold every "
      "expected key")
PY
