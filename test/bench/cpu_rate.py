#!/usr/bin/python3
"""Forwarding cost per packet on a shared machine: runs dpdk-testpmd io and each given portmux binary in turn
(interleaved, --repeat times) over the same pcap uplink and null sinks as part a of bench_throughput.sh, and
divides the packets forwarded in the interval by the CPU time the forwarding lcore's thread actually got
(/proc/PID/task/TID/schedstat). Other work on the forwarding CPU then lowers the wall-clock rate but not the
rate per CPU second, so binaries can be compared while the machine is busy.

Usage: cpu_rate.py --pcap PCAP [--config CONFIG] [--repeat N] [--tsc-ghz 2.6] [BINARY...]
(PCAP and CONFIG as written by `bench_throughput.sh --keep`: WORK/vm64.pcap, WORK/a0.json or a1000.json)
"""
import argparse, glob, json, os, shutil, statistics, subprocess, sys, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_helper as bh  # noqa: E402

EAL = ["--no-huge", "-m", "1024", "--no-pci", "--lcores", "0@0,1@1", "--log-level", "pmd.net.pcap:error"]


def forwarding_thread_cpu_s(pid):
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            if open(task + "/comm").read().strip().endswith("worker-1"):
                return int(open(task + "/schedstat").read().split()[0]) / 1e9
        except OSError:
            pass
    raise SystemExit("cpu_rate: no forwarding lcore thread in process %d" % pid)


def one_run(kind, binary, pcap, config, prefix, tsc_hz, warmup=1.0, interval=2.0):
    eal = EAL + ["--file-prefix", prefix]
    if kind == "portmux":
        cmd, stats, port = [binary, "-c", config, "--"] + eal, "/portmux/stats", 0
    else:
        cmd = ["dpdk-testpmd"] + eal + ["--vdev", "net_pcap0,rx_pcap=%s,infinite_rx=1" % pcap,
                                        "--vdev", "net_null0,no-rx=1", "--", "--forward-mode=io", "--nb-cores=1",
                                        "--rxq=1", "--txq=1", "--stats-period=1", "--no-flush-rx",
                                        "--total-num-mbufs=32768"]
        stats, port = "/ethdev/stats,1", 1
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with bh.connect(prefix) as tel:
            bh.wait_ready(tel, stats)
            time.sleep(warmup)
            c0, w0, t0 = bh.counters(tel, kind, port)["out"], forwarding_thread_cpu_s(proc.pid), time.monotonic()
            time.sleep(interval)
            c1, w1, t1 = bh.counters(tel, kind, port)["out"], forwarding_thread_cpu_s(proc.pid), time.monotonic()
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)  # the run's DPDK runtime directory
    n, cpu = c1 - c0, w1 - w0
    return {"mpps": n / (t1 - t0) / 1e6, "cpu_share": cpu / (t1 - t0), "mpps_per_cpu_s": n / cpu / 1e6,
            "tsc_cycles_per_packet": tsc_hz * cpu / n}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pcap", required=True)
    p.add_argument("--config")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--tsc-ghz", type=float, default=2.6, help="TSC frequency, as bench_stages prints it")
    p.add_argument("binaries", nargs="*")
    args = p.parse_args()
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if args.binaries and not args.config:
        p.error("--config is needed to run portmux")
    runs = {"testpmd io": []}
    runs.update({b: [] for b in args.binaries})
    tag = "cpurate%d" % os.getpid()
    for _ in range(args.repeat):
        runs["testpmd io"].append(one_run("ethdev", None, args.pcap, None, tag + "-tp", args.tsc_ghz * 1e9))
        for b in args.binaries:
            runs[b].append(one_run("portmux", b, args.pcap, args.config, tag + "-pm", args.tsc_ghz * 1e9))
    ref = statistics.median(r["mpps_per_cpu_s"] for r in runs["testpmd io"])
    print("%-40s %24s %12s %10s %8s" % ("", "Mpps per CPU s (min-max)", "TSC cyc/pkt", "wall Mpps", "ratio"))
    for name, rs in runs.items():
        m = statistics.median(r["mpps_per_cpu_s"] for r in rs)
        print("%-40s %7.2f (%5.2f-%5.2f) %12.1f %10.2f %8s" % (
            name[-40:], m, min(r["mpps_per_cpu_s"] for r in rs), max(r["mpps_per_cpu_s"] for r in rs),
            statistics.median(r["tsc_cycles_per_packet"] for r in rs), statistics.median(r["mpps"] for r in rs),
            "" if name == "testpmd io" else "%.2fx" % (m / ref)))
    print(json.dumps(runs), file=sys.stderr)


if __name__ == "__main__":
    main()
