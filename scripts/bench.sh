#!/usr/bin/env bash
# The benchmark suite in one command: set-up, a release build, the stage benchmark and the throughput
# benchmark (parts a-e), the cycles benchmark beside DPDK's l3fwd (part f), the uplink's cost against the
# number of connected VMs (part g), PVP with 8 VMs beside OVS-DPDK (part h) and the cluster's convergence
# (part i: three hosts and a three-member etcd), then OUT/<timestamp>/results.json, results.md and plots of
# range-count and firewall-rule scaling and of cycles per packet per variant.
#
# Usage: scripts/bench.sh [--out DIR] [--repeat N] [--quick] [--parts a,b,c,d,e,f,g,h,i] [--no-setup]
#   --out DIR    where results go (default /tmp/portmux-bench); nothing is written inside the source tree
#                except the release build directory build-bench/
#   --repeat N   throughput runs per measurement (default 3); the stage benchmark does 21 runs, part f at least 5
#   --quick      a seconds-long smoke run (numbers are not meaningful)
#   --no-setup   skip scripts/setup.sh (packages, hugepages, build/)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

OUT="/tmp/portmux-bench"
REPEAT=3
QUICK=0
PARTS="a,b,c,d,e,f,g,h,i"
SETUP=1
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --repeat) REPEAT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --parts) PARTS="$2"; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "bench: run as root (packages, hugepages, DPDK, namespaces)" >&2; exit 1; }

BUILD="$ROOT/build-bench"
RESULTS="$OUT/$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$RESULTS"

# ---- set-up: packages, hugepages, the regular build; then the extra packages and a release build -----------
if [ "$SETUP" = 1 ]; then
  scripts/setup.sh
fi
extra=()
for pkg in gnuplot-nox openvswitch-switch-dpdk; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || extra+=("$pkg")
done
if [ ${#extra[@]} -gt 0 ]; then
  echo "bench: installing ${extra[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${extra[@]}" >/dev/null
fi
# Part b needs hugepages for the vhost-user memory the VM side shares; setup.sh reserves 512 x 2 MiB.
if [ "$(awk '/HugePages_Total/ {print $2}' /proc/meminfo)" -lt 512 ]; then
  echo 512 > /proc/sys/vm/nr_hugepages || true
fi
if ! mountpoint -q /dev/hugepages; then
  mkdir -p /dev/hugepages && mount -t hugetlbfs nodev /dev/hugepages || true
fi

if [ ! -f "$BUILD/build.ninja" ]; then
  meson setup "$BUILD" --buildtype=release >/dev/null
fi
ninja -C "$BUILD" app/portmux
STAGES="$BUILD/test/bench/bench_stages"
if grep -q "subdir('bench')" test/meson.build; then
  ninja -C "$BUILD" test/bench/bench_stages
else
  # Built by hand with the flags of a release build when test/meson.build does not list test/bench yet.
  STAGES="$BUILD/bench_stages"
  if [ ! -x "$STAGES" ] || [ test/bench/bench_stages.cpp -nt "$STAGES" ] || \
     [ "$BUILD/app/portmux" -nt "$STAGES" ]; then
    # shellcheck disable=SC2046
    c++ -std=c++17 -O3 -DNDEBUG -DALLOW_EXPERIMENTAL_API -Wno-missing-field-initializers \
      -Ilib -Itest/unit $(pkg-config --cflags libdpdk nlohmann_json fmt) test/bench/bench_stages.cpp \
      -o "$STAGES" -Wl,--start-group "$BUILD"/lib/*/libportmux_*.a -Wl,--end-group \
      $(pkg-config --libs libdpdk fmt) -pthread
  fi
fi

# Part f's reference: l3fwd from dpdk-doc's example sources, built into the release build directory.
L3FWD=""
if [[ ",$PARTS," == *",f,"* ]]; then
  L3FWD="$(bash test/bench/build_l3fwd.sh "$BUILD/l3fwd")"
fi

# ---- the benchmarks ------------------------------------------------------------------------------------------
quick=()
[ "$QUICK" = 1 ] && quick=(--quick)
STAGES_CMD=("$STAGES" "${quick[@]+"${quick[@]}"}" --json "$RESULTS/stages.json" -- --no-huge --no-pci --lcores 0@1 -m 1024)
THROUGHPUT_CMD=(bash test/bench/bench_throughput.sh --portmux "$BUILD/app/portmux" --repeat "$REPEAT" --parts "$PARTS"
                "${quick[@]+"${quick[@]}"}" --json "$RESULTS/throughput.json")
echo "bench: ${STAGES_CMD[*]}"
"${STAGES_CMD[@]}" | tee "$RESULTS/stages.txt"
echo "bench: ${THROUGHPUT_CMD[*]}"
"${THROUGHPUT_CMD[@]}" | tee "$RESULTS/throughput.txt"
tsc_hz="$(/usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["tsc_hz"])' "$RESULTS/stages.json")"
CYCLES_CMD=()
if [ -n "$L3FWD" ]; then
  CYCLES_CMD=(/usr/bin/python3 test/bench/cycles.py --portmux "$BUILD/app/portmux" --l3fwd "$L3FWD"
              --work "$RESULTS/cycles" --repeat "$(( REPEAT > 5 ? REPEAT : 5 ))" --tsc-hz "$tsc_hz"
              "${quick[@]+"${quick[@]}"}" --json "$RESULTS/cycles.json")
  echo "bench: ${CYCLES_CMD[*]}"
  "${CYCLES_CMD[@]}" | tee "$RESULTS/cycles.txt" || echo "bench: part f reported errors (see above)" >&2
fi
CONVERGENCE_CMD=()
if [[ ",$PARTS," == *",i,"* ]]; then
  CONVERGENCE_CMD=(/usr/bin/python3 test/cluster/bench_convergence.py "$BUILD/app/portmux"
                   --moves "$([ "$QUICK" = 1 ] && echo 10 || echo 200)" --json "$RESULTS/convergence.json")
  echo "bench: ${CONVERGENCE_CMD[*]}"
  "${CONVERGENCE_CMD[@]}" | tee "$RESULTS/convergence.txt" || echo "bench: part i did not complete (see above)" >&2
fi
# Parts g and h: vhost-user VMs with dpdk-testpmd guests (1 to 1,024 of them; 8 beside OVS-DPDK).
VMSCALE_CMD=()
if [[ ",$PARTS," == *",g,"* ]]; then
  VMSCALE_CMD=(/usr/bin/python3 test/bench/vm_scale.py --portmux "$BUILD/app/portmux" --work "$RESULTS/vm_scale"
               --repeat "$REPEAT" --tsc-hz "$tsc_hz" "${quick[@]+"${quick[@]}"}" --json "$RESULTS/vm_scale.json")
  echo "bench: ${VMSCALE_CMD[*]}"
  "${VMSCALE_CMD[@]}" | tee "$RESULTS/vm_scale.txt" || echo "bench: part g reported errors (see above)" >&2
fi
PVP_CMD=()
if [[ ",$PARTS," == *",h,"* ]]; then
  PVP_CMD=(/usr/bin/python3 test/bench/pvp_multi.py --portmux "$BUILD/app/portmux" --work "$RESULTS/pvp_multi"
           --repeat "$REPEAT" "${quick[@]+"${quick[@]}"}" --json "$RESULTS/pvp_multi.json")
  echo "bench: ${PVP_CMD[*]}"
  "${PVP_CMD[@]}" | tee "$RESULTS/pvp_multi.txt" || echo "bench: part h reported errors (see above)" >&2
fi

# ---- results.json, results.md (targets met or not), plot data --------------------------------------------------
/usr/bin/python3 - "$RESULTS" "${STAGES_CMD[*]}" "${THROUGHPUT_CMD[*]}" "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "${CYCLES_CMD[*]+"${CYCLES_CMD[*]}"}" "${CONVERGENCE_CMD[*]+"${CONVERGENCE_CMD[*]}"}" \
  "${VMSCALE_CMD[*]+"${VMSCALE_CMD[*]}"}" "${PVP_CMD[*]+"${PVP_CMD[*]}"}" <<'PY'
import json
import os
import sys

results, stages_cmd, throughput_cmd, commit, cycles_cmd, convergence_cmd, vmscale_cmd, pvp_cmd = sys.argv[1:9]
stages = json.load(open(os.path.join(results, "stages.json")))
tp = json.load(open(os.path.join(results, "throughput.json")))
cycles_path = os.path.join(results, "cycles.json")
cy = json.load(open(cycles_path)) if cycles_cmd and os.path.exists(cycles_path) else None
convergence_path = os.path.join(results, "convergence.json")
cv = json.load(open(convergence_path)) if convergence_cmd and os.path.exists(convergence_path) else None
vm_scale_path = os.path.join(results, "vm_scale.json")
vs = json.load(open(vm_scale_path)) if vmscale_cmd and os.path.exists(vm_scale_path) else None
pvp_path = os.path.join(results, "pvp_multi.json")
pvp = json.load(open(pvp_path)) if pvp_cmd and os.path.exists(pvp_path) else None
st = stages["stages"]


def med(x):
    return x["median"] if isinstance(x, dict) and x.get("median") is not None else None


targets = []


def target(name, value, ok, measured):
    targets.append({"target": name, "met": ok if value is not None else None, "measured": measured})


def ratio_target(name, r, limit, above=True):
    ok = None if r is None else (r >= limit if above else r <= limit)
    target(name, r, ok, "%.2fx" % r if r is not None else "not measured")


# The fast path is held to DPDK's l3fwd, which does comparable work (part f): portmux's TSC cycles per packet
# over l3fwd's, lower is better.
for traffic, label in (("a", "part a's frames"), ("imix", "IMIX")):
    ratios = (cy or {}).get("ratios", {}).get(traffic, {})
    ratio_target("%s, no rules: portmux <= 0.85x the cycles of l3fwd LPM" % label,
                 ratios.get("portmux_0_rules/l3fwd_lpm"), 0.85, above=False)
    ratio_target("%s, 1,000 rules: portmux <= 0.85x the cycles of l3fwd ACL (same rules)" % label,
                 ratios.get("portmux_1000_rules/l3fwd_acl"), 0.85, above=False)
for size in ("64", "1518"):
    ratio_target("vhost-user %s B: portmux >= 2.0x OVS-DPDK" % size, tp["vhost"][size]["ratio_ovs"], 2.0)
# Part g: polling 1,024 connected VMs must not make the uplink's packets dearer (cycles per packet, 1,024 over 8).
ratio_target("1,024 VMs connected: uplink cost <= 1.10x of 8 VMs (cycles per packet to 4 VMs, part g)",
             (vs or {}).get("ratios_vs_8", {}).get("1024"), 1.10, above=False)
ratio_target("1,024 VMs connected: uplink cost <= 1.10x of 8 VMs (cycles per packet to the host port, part g)",
             (vs or {}).get("ratios_host_bound_vs_8", {}).get("1024"), 1.10, above=False)
# Part h: packets the 8 VMs receive per CPU second of the forwarding core, portmux over OVS-DPDK.
ratio_target("PVP 8 VMs: portmux >= 2.0x OVS-DPDK per forwarding-core CPU second (part h)",
             (pvp or {}).get("ratios", {}).get("portmux/ovs_dpdk"), 2.0)
lookups = [med(st["range_lookup"][n]["portmux"]) for n in ("1", "1000", "65536")]
flat = max(lookups) / min(lookups)
target("range lookup flat from 1 to 65,536 ranges (max/min of medians <= 1.2)", flat, flat <= 1.2,
       "max/min %.2f (%s cycles)" % (flat, " / ".join("%.1f" % v for v in lookups)))
worst_lpm = max(st["range_lookup"][n]["ratio_lpm"] for n in ("1", "1000", "65536"))
target("range lookup <= 0.1x rte_lpm on the same keys", worst_lpm, worst_lpm <= 0.1,
       "worst %.2fx of rte_lpm" % worst_lpm)
fw = [st["firewall"][n]["ratio_%s" % f] for n in ("100", "1000", "10000") for f in ("v4", "v6")]
fw = [r for r in fw if r is not None]
worst_fw = max(fw) if fw else None
target("firewall stage within 1.1x of rte_acl alone", worst_fw, worst_fw is not None and worst_fw <= 1.1,
       "worst %.2fx (100 / 1,000 / 10,000 rules, IPv4 and IPv6)" % worst_fw if worst_fw else "not measured")
c = tp["control_under_load"]
rate = c["highest_requested_rate_met_with_zero_loss"]
target("10,000 range changes per second under full load with zero unintended loss",
       rate if c["rates"] else None, rate is not None and rate >= 10000,
       "highest rate met with zero loss: %s/s; worst change latency %s ms" % (
           rate, "%.2f" % c["worst_latency_ms"] if c["worst_latency_ms"] is not None else "n/a"))

p99 = cv["p99_ms"] if cv else None
target("cluster convergence, 3 hosts: p99 from the etcd commit to applied on every host < 200 ms", p99,
       p99 is not None and p99 < 200,
       "p50 %.1f / p99 %.1f / max %.1f ms over %d moves" % (cv["p50_ms"], cv["p99_ms"], cv["max_ms"], cv["moves"])
       if cv else "not measured")

combined = {"commit": commit, "stages_command": stages_cmd, "throughput_command": throughput_cmd,
            "cycles_command": cycles_cmd or None, "vm_scale_command": vmscale_cmd or None,
            "pvp_multi_command": pvp_cmd or None, "convergence_command": convergence_cmd or None,
            "stages": stages, "throughput": tp, "cycles": cy, "vm_scale": vs, "pvp_multi": pvp, "convergence": cv,
            "targets": targets}
json.dump(combined, open(os.path.join(results, "results.json"), "w"), indent=2)

with open(os.path.join(results, "ranges.dat"), "w") as f:
    f.write("# ranges portmux_cycles rte_lpm_cycles rte_fib_cycles portmux_mpps\n")
    for n in ("1", "1000", "65536"):
        r = st["range_lookup"][n]
        mpps = med(tp["scale"]["ranges"].get(n))
        f.write("%s %s %s %s %s\n" % (n, med(r["portmux"]), med(r["rte_lpm"]), med(r["rte_fib"]),
                                      mpps if mpps is not None else "NaN"))
with open(os.path.join(results, "firewall.dat"), "w") as f:
    f.write("# rules portmux_v4 rte_acl_v4 portmux_v6 rte_acl_v6 (cycles/packet)\n")
    for n in ("0", "100", "1000", "10000"):
        r = st["firewall"][n]
        vals = [med(r["portmux_v4"]), med(r["rte_acl_v4"]), med(r["portmux_v6"]), med(r["rte_acl_v6"])]
        f.write("%s %s\n" % (max(int(n), 1), " ".join("NaN" if v is None else "%.2f" % v for v in vals)))

if cy:
    with open(os.path.join(results, "cycles.dat"), "w") as f:
        variants = ("testpmd_io", "l3fwd_lpm", "l3fwd_acl", "portmux_0_rules", "portmux_1000_rules")
        f.write("# traffic %s (median TSC cycles per packet)\n" % " ".join(variants))
        for traffic, result in cy["traffic"].items():
            f.write("%s %s\n" % (traffic, " ".join("%.1f" % result[v]["median"] if v in result else "NaN"
                                                   for v in variants)))

stages_txt = open(os.path.join(results, "stages.txt")).read()
tp_txt = open(os.path.join(results, "throughput.txt")).read()
with open(os.path.join(results, "results.md"), "w") as f:
    f.write("# portmux benchmark results\n\n")
    f.write("Date: %s, commit %s, %s (%d CPUs), DPDK %s.\n\n" % (tp["date"], commit, tp["cpu_model"], tp["cpus"], tp["dpdk"]))
    f.write("Commands:\n\n```\n%s\n%s\n%s```\n\n" % (stages_cmd, throughput_cmd, "".join(
        c + "\n" for c in (cycles_cmd, vmscale_cmd, pvp_cmd) if c)))
    f.write("## Targets\n\n| target | met | measured |\n| --- | --- | --- |\n")
    for t in targets:
        met = "n/a" if t["met"] is None else ("yes" if t["met"] else "**no**")
        f.write("| %s | %s | %s |\n" % (t["target"], met, t["measured"]))
    f.write("\n## Stage costs (TSC cycles per packet)\n\n```\n%s```\n\n" % stages_txt)
    f.write("## Throughput (Mpps)\n\n```\n%s```\n\n" % tp_txt)
    if cy:
        f.write("## Cycles per packet beside l3fwd (part f)\n\n| traffic | variant | TSC cycles per packet "
                "(median, min-max) | Mpps per CPU s |\n| --- | --- | ---: | ---: |\n")
        for traffic, result in cy["traffic"].items():
            for v, s in result.items():
                f.write("| %s | %s | %.1f (%.1f-%.1f) | %.2f |\n" % (traffic, v, s["median"], s["min"], s["max"],
                                                                  s["mpps_per_cpu_s"]))
        f.write("\n")
        for traffic, ratios in cy["ratios"].items():
            f.write("%s: %s\n\n" % (traffic, ", ".join("%s %.2fx" % kv for kv in ratios.items())))
    if vs:
        f.write("## Uplink cost against connected VMs (part g)\n\n")
        if vs["skipped"]:
            f.write("Skipped: %s\n\n" % vs["skipped"])
        f.write("| VMs (connected) | TSC cycles per uplink packet (median, min-max) | of 8 VMs | cycles per "
                "delivered | delivered | Mpps per CPU s | wall Mpps | VmRSS MiB | own hugepages MiB | "
                "listed after s | links up after s |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                "| ---: | ---: |\n")
        for n, s in vs["counts"].items():
            m = s["memory_kib"]
            f.write("| %s (%d) | %.1f (%.1f-%.1f) | %.2fx | %.1f | %.0f %% | %.2f | %.2f | %.0f | %.0f | %.1f | %.1f |\n" % (
                n, s["connected"], s["median"], s["min"], s["max"], vs["ratios_vs_8"].get(n, float("nan")),
                s["cycles_per_delivered"], 100 * s["delivered_share"], s["mpps_per_cpu_s"], s["wall_mpps"],
                m.get("VmRSS", 0) / 1024, m.get("own_hugepages", 0) / 1024, s["startup_listed_s"],
                s["startup_links_up_s"]))
        f.write("\nThe same starts with every frame to the host port (`net_null`), every guest connected and idle:\n\n"
                "| VMs | TSC cycles per uplink packet (median, min-max) | of 8 VMs | Mpps per CPU s | wall Mpps |\n"
                "| --- | ---: | ---: | ---: | ---: |\n")
        for n, s in vs["counts"].items():
            h = s["host_bound"]
            f.write("| %s | %.1f (%.1f-%.1f) | %.2fx | %.2f | %.2f |\n" % (
                n, h["median"], h["min"], h["max"], vs["ratios_host_bound_vs_8"].get(n, float("nan")),
                h["mpps_per_cpu_s"], h["wall_mpps"]))
        if vs["memory_per_vm_kib"]:
            m = vs["memory_per_vm_kib"]
            f.write("\nMemory per VM (%d to %d VMs): VmRSS %.1f KiB, RssAnon %.1f KiB, own hugepages %.1f KiB.\n" % (
                m["from"], m["to"], m.get("VmRSS", 0), m.get("RssAnon", 0), m.get("own_hugepages", 0)))
        for line in vs["errors"] + vs["warnings"]:
            f.write("\n- %s" % line)
        f.write("\n\n")
    if pvp:
        f.write("## PVP with 8 VMs (part h)\n\n")
        if pvp["skipped"]:
            f.write("Skipped: %s\n\n" % pvp["skipped"])
        f.write("| switch | Mpps received per forwarding-core CPU s (median, min-max) | wall Mpps | forwarding core "
                "CPU share | VM side CPU share |\n| --- | ---: | ---: | ---: | ---: |\n")
        for name, s in pvp["switches"].items():
            f.write("| %s | %.2f (%.2f-%.2f) | %.2f | %.0f %% | %.0f %% |\n" % (
                name, s["median"], s["min"], s["max"], s["wall_mpps"], 100 * s["cpu_share"],
                100 * s["vm_side_cpu_share"]))
        f.write("\n%s\n\n" % ", ".join("%s %.2fx" % (k, v) for k, v in pvp["ratios"].items() if v is not None))
        for line in pvp["errors"] + pvp["warnings"]:
            f.write("- %s\n" % line)
    if cv:
        f.write("## Cluster convergence (part i)\n\n`%s`\n\np50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms over "
                "%d moves between hosts (3 hosts, 3-member etcd)\n\n" % (convergence_cmd, cv["p50_ms"], cv["p90_ms"],
                                                                      cv["p99_ms"], cv["max_ms"], cv["moves"]))
    f.write("Plots: ranges.png (range-count scaling), firewall.png (firewall-rule scaling)%s.\n" % (
        ", cycles.png (cycles per packet per variant)" if cy else ""))
for t in targets:
    print("target: %-80s %s (%s)" % (t["target"], "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met"),
                                      t["measured"]))
PY

# ---- plots -----------------------------------------------------------------------------------------------------
if command -v gnuplot >/dev/null; then
  gnuplot <<EOF || echo "bench: gnuplot could not draw ranges.png or firewall.png (a part not run leaves them empty)" >&2
set terminal pngcairo size 900,540 noenhanced
set datafile missing "NaN"
set output "$RESULTS/ranges.png"
set title "Port lookup cost vs number of ranges (TSC cycles per packet; same keys)"
set logscale x
set xlabel "ranges"
set ylabel "cycles per lookup"
set y2label "portmux Mpps (null sinks)"
set y2tics
set ytics nomirror
set key bottom right
set xrange [0.5:131072]
set yrange [0:*]
set y2range [0:*]
plot "$RESULTS/ranges.dat" using 1:2 with linespoints title "PortOwnerTable::lookup", \
     "" using 1:3 with linespoints title "rte_lpm_lookup_bulk", \
     "" using 1:4 with linespoints title "rte_fib_lookup_bulk", \
     "" using 1:5 axes x1y2 with linespoints dashtype 2 title "portmux throughput (Mpps, right)"
set output "$RESULTS/firewall.png"
set title "Firewall cost vs number of rules (TSC cycles per packet; same rules and keys; 0 shown at 1)"
set xlabel "rules"
set ylabel "cycles per packet"
unset y2label
unset y2tics
set xrange [0.5:20000]
plot "$RESULTS/firewall.dat" using 1:2 with linespoints title "Firewall::classify_v4", \
     "" using 1:3 with linespoints title "rte_acl_classify v4", \
     "" using 1:4 with linespoints title "Firewall::classify_v6", \
     "" using 1:5 with linespoints title "rte_acl_classify v6"
EOF
  if [ -f "$RESULTS/cycles.dat" ]; then
    gnuplot <<EOF || echo "bench: gnuplot could not draw cycles.png" >&2
set terminal pngcairo size 900,540 noenhanced
set datafile missing "NaN"
set output "$RESULTS/cycles.png"
set title "Forwarding cost per packet (TSC cycles of the forwarding thread's CPU time, median)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "cycles per packet"
set yrange [0:*]
set key top left
plot "$RESULTS/cycles.dat" using 2:xtic(1) title "testpmd io", "" using 3 title "l3fwd LPM", \\
     "" using 4 title "l3fwd ACL (1,000 rules)", "" using 5 title "portmux, 0 rules", \\
     "" using 6 title "portmux, 1,000 rules"
EOF
  fi
else
  echo "bench: gnuplot missing: no plots" >&2
fi
echo "bench: results in $RESULTS (results.json, results.md, ranges.png, firewall.png, cycles.png)"
