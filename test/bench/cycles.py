#!/usr/bin/python3
"""Part f of the benchmark: forwarding cost per packet of portmux beside DPDK's l3fwd (LPM, and ACL with the
same firewall rules) and dpdk-testpmd io, in one invocation, over the same frames and devices.

Every variant reads the same pcap from a net_pcap uplink (infinite_rx) and sends to net_null sinks; its
forwarding lcore runs alone on CPU 1. The cost is the CPU time that lcore's thread got
(/proc/PID/task/TID/schedstat) divided by the packets it forwarded in the interval, in TSC cycles, so the
figures hold on a machine that is busy with other work (wall-clock rates are recorded beside them). Variants
run interleaved, --repeat times, and the medians are compared.

Traffic: "a" is part a's 64-byte IPv4 frames to the VMs' ranges; "imix" is 64/576/1500 B in 7:4:1, 30 % IPv6,
TCP and UDP, 5 % to ports no VM owns (portmux sends those to the host port).

Usage: cycles.py --portmux BIN --l3fwd BIN --work DIR [--repeat N] [--quick] [--tsc-hz HZ] [--json FILE]
       [--traffic a,imix] [--variants testpmd_io,l3fwd_lpm,...]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_helper as bh  # noqa: E402

TESTPMD = os.environ.get("TESTPMD", "dpdk-testpmd")
MEMORY = ["--no-huge", "-m", "1024", "--no-pci", "--log-level", "pmd.net.pcap:error"]
# The main lcore on CPU 0 and the one forwarding lcore on CPU 1, as in parts a-e. l3fwd gives every lcore a
# Tx queue on every port and net_pcap has one, so l3fwd runs a single lcore (its main one) on CPU 1.
TWO_LCORES = ["--lcores", "0@0,1@1"]
ONE_LCORE = ["--lcores", "0@1"]
VARIANTS = ["testpmd_io", "l3fwd_lpm", "l3fwd_acl", "portmux_0_rules", "portmux_1000_rules"]
TRAFFIC = ["a", "imix"]
RULES = 1000
# The ratios the fast path is held to (docs/performance.md): portmux's cycles over the reference's.
TARGETS = {"portmux_0_rules": ("l3fwd_lpm", 0.85), "portmux_1000_rules": ("l3fwd_acl", 0.85)}


def prepare(work, traffic):
    """The pcap, the two portmux configurations and l3fwd's rule files of one traffic kind."""
    files = {"pcap": os.path.join(work, "%s.pcap" % traffic)}
    if traffic == "a":
        bh.main_argv(["pcap", files["pcap"], "--size", "64", "--frames", "1024", "1024-65535"])
        owned, ipv6 = "1024-65535", []
    else:
        bh.main_argv(["imix", files["pcap"], "--frames", "1200", "--vm-ports", "1024-59999",
                      "--host-ports", "60000-65535", "--host-share", "0.05"])
        # No host rate limit: every host-bound frame is handed on, as l3fwd forwards every frame.
        owned, ipv6 = "1024-59999", ["--ipv6", "--host-rate-limit", "0"]
    uplink = "net_pcap0,rx_pcap=%s,infinite_rx=1" % files["pcap"]
    for rules in (0, RULES):
        path = os.path.join(work, "%s_%d.json" % (traffic, rules))
        bh.main_argv(["config", path, "--uplink", uplink, "--vms", "2", "--ranges", "2", "--owned", owned,
                      "--rules", str(rules)] + ipv6)
        files["portmux_%d" % rules] = path
    for lookup, config in (("lpm", files["portmux_0"]), ("acl", files["portmux_%d" % RULES])):
        v4, v6 = (os.path.join(work, "%s_%s_v%d.rules" % (traffic, lookup, f)) for f in (4, 6))
        bh.main_argv(["l3fwd-rules", config, v4, v6, "--lookup", lookup])
        files[lookup] = (v4, v6)
    return files


def command(variant, files, binaries, prefix):
    """The command line of one variant, the telemetry query that counts its output, and how to find its
    forwarding thread."""
    devices = ["--vdev", "net_pcap0,rx_pcap=%s,infinite_rx=1" % files["pcap"], "--vdev", "net_null0,no-rx=1"]
    eal = MEMORY + ["--file-prefix", prefix]
    if variant == "testpmd_io":  # --stats-period keeps it running with no terminal on stdin
        return ([TESTPMD] + eal + TWO_LCORES + devices +
                ["--", "--forward-mode=io", "--nb-cores=1", "--rxq=1", "--txq=1", "--no-flush-rx", "--stats-period=1",
                 "--total-num-mbufs=32768"]), "ethdev", bh.is_lcore_worker
    if variant.startswith("l3fwd_"):
        lookup = variant.split("_")[1]
        v4, v6 = files[lookup]
        return ([binaries["l3fwd"]] + eal + ONE_LCORE + devices +
                ["--", "-p", "0x3", "--config", "(0,0,0),(1,0,0)", "--parse-ptype", "--lookup=%s" % lookup,
                 "--rule_ipv4=%s" % v4, "--rule_ipv6=%s" % v6]), "ethdev", None
    rules = variant.split("_")[1]
    binary = binaries["portmux_b"] if variant.startswith("portmuxB_") else binaries["portmux"]
    return ([binary, "-c", files["portmux_%s" % rules], "--"] + eal + TWO_LCORES), "portmux", bh.is_lcore_worker




def one_run(variant, files, binaries, prefix, tsc_hz, warmup, interval, logdir):
    cmd, kind, thread = command(variant, files, binaries, prefix)
    shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    log = open(os.path.join(logdir, "%s.log" % variant), "w")
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not os.path.exists(bh.socket_path(prefix)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s did not start (exit %s); see %s" % (variant, proc.poll(), log.name))
            time.sleep(0.1)
        with bh.connect(prefix) as tel:
            bh.wait_ready(tel, "/portmux/stats" if kind == "portmux" else "/ethdev/stats,1")
            # Ports answer before forwarding starts (testpmd starts it last): the warm-up counts from the first
            # packet out, however slowly a busy machine gets there.
            while bh.counters(tel, kind, 1)["out"] == 0:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("%s forwarded nothing within 60 s; see %s" % (variant, log.name))
                time.sleep(0.1)
            time.sleep(warmup)
            c0, w0, t0 = bh.counters(tel, kind, 1), bh.thread_cpu_s(proc.pid, thread), time.monotonic()
            time.sleep(interval)
            c1, w1, t1 = bh.counters(tel, kind, 1), bh.thread_cpu_s(proc.pid, thread), time.monotonic()
            if kind == "ethdev":
                rx = tel.query("/ethdev/stats,0")["ipackets"]  # the uplink's count, for the sanity check
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    n, cpu = c1["out"] - c0["out"], w1 - w0
    if n <= 0 or cpu <= 0:
        raise RuntimeError("%s forwarded %d packets in %.3f CPU s" % (variant, n, cpu))
    run = {"mpps": n / (t1 - t0) / 1e6, "cpu_share": cpu / (t1 - t0), "mpps_per_cpu_s": n / cpu / 1e6,
           "tsc_cycles_per_packet": tsc_hz * cpu / n, "packets": n}
    if kind == "portmux":
        run["forwarded_share"] = c1["out"] / max(1, c1["rx"])
    else:
        run["forwarded_share"] = c1["out"] / max(1, rx)
    return run


def summary(runs):
    cycles = [r["tsc_cycles_per_packet"] for r in runs]
    return {"median": statistics.median(cycles), "min": min(cycles), "max": max(cycles),
            "mpps_per_cpu_s": statistics.median(r["mpps_per_cpu_s"] for r in runs),
            "wall_mpps": statistics.median(r["mpps"] for r in runs),
            "forwarded_share": min(r["forwarded_share"] for r in runs), "runs": runs}




def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--portmux", required=True)
    p.add_argument("--portmux-b", help="a second portmux binary, run as portmuxB_* beside each portmux_* variant "
                   "in the same interleaved runs (an A/B comparison of two commits)")
    p.add_argument("--l3fwd", required=True, help="as built by build_l3fwd.sh")
    p.add_argument("--work", required=True, help="a directory for pcaps, configurations, rule files, logs")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="one short run of each (numbers are not meaningful)")
    p.add_argument("--tsc-hz", type=float, default=0.0)
    p.add_argument("--json")
    p.add_argument("--traffic", default=",".join(TRAFFIC))
    p.add_argument("--variants", default=",".join(VARIANTS))
    args = p.parse_args()
    traffic = [t for t in args.traffic.split(",") if t]
    variants = [v for v in args.variants.split(",") if v]
    for name, known in (("traffic", TRAFFIC), ("variant", VARIANTS)):
        bad = [x for x in (traffic if name == "traffic" else variants) if x not in known]
        if bad:
            p.error("unknown %s %s (known: %s)" % (name, ",".join(bad), ",".join(known)))
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.portmux_b:
        variants += [v.replace("portmux_", "portmuxB_") for v in variants if v.startswith("portmux_")]
    repeat, warmup, interval = (1, 0.3, 0.5) if args.quick else (args.repeat, 1.0, 2.0)
    tsc_hz = args.tsc_hz or bh.tsc_hz_guess()
    os.makedirs(args.work, exist_ok=True)
    binaries = {"portmux": os.path.abspath(args.portmux), "l3fwd": os.path.abspath(args.l3fwd)}
    if args.portmux_b:
        binaries["portmux_b"] = os.path.abspath(args.portmux_b)
    prefix = "pmxcyc%d" % os.getpid()
    out = {"tsc_hz": tsc_hz, "tsc_hz_source": "--tsc-hz" if args.tsc_hz else "/proc/cpuinfo",
           "repeat": repeat, "warmup_s": warmup, "interval_s": interval, "quick": args.quick,
           "commands": {}, "traffic": {}, "ratios": {}, "errors": [], "warnings": []}
    for t in traffic:
        files = prepare(args.work, t)
        runs = {v: [] for v in variants}
        for v in variants:
            out["commands"]["%s/%s" % (t, v)] = " ".join(command(v, files, binaries, prefix + "-x")[0])
        for _ in range(repeat):  # interleaved: a drift of the machine touches every variant alike
            for v in variants:
                try:
                    runs[v].append(one_run(v, files, binaries, "%s-%s" % (prefix, v), tsc_hz, warmup, interval,
                                           args.work))
                except RuntimeError as e:
                    out["errors"].append("%s/%s: %s" % (t, v, e))
        result = {v: summary(r) for v, r in runs.items() if r}
        out["traffic"][t] = result
        ratios = {}
        targets = dict(TARGETS)
        for v, target in TARGETS.items():
            targets[v.replace("portmux_", "portmuxB_")] = target
        for v, (ref, _) in targets.items():
            if v in result and ref in result:
                ratios["%s/%s" % (v, ref)] = result[v]["median"] / result[ref]["median"]
        for v in ("l3fwd_lpm", "l3fwd_acl", "portmux_0_rules", "portmux_1000_rules", "portmuxB_0_rules",
                  "portmuxB_1000_rules"):
            if v in result and "testpmd_io" in result:
                ratios["%s/testpmd_io" % v] = result[v]["median"] / result["testpmd_io"]["median"]
        out["ratios"][t] = ratios
        for v, s in result.items():
            if s["forwarded_share"] < 0.99:
                out["warnings"].append("%s/%s forwarded only %.1f %% of what it received" % (
                    t, v, 100 * s["forwarded_share"]))

    print("f. forwarding cost per packet (TSC cycles of the forwarding thread's CPU time; median of %d, min-max)"
          % repeat)
    for t, result in out["traffic"].items():
        print("  traffic %s" % t)
        for v, s in result.items():
            print("    %-22s %7.1f (%6.1f-%6.1f) cycles  %6.2f Mpps per CPU s  %6.2f Mpps wall" % (
                v, s["median"], s["min"], s["max"], s["mpps_per_cpu_s"], s["wall_mpps"]))
        for name, r in out["ratios"][t].items():
            print("    %-44s %.2fx" % (name, r))
    return bh.finish(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
