#!/usr/bin/python3
"""Part g of the benchmark: what the uplink costs per packet as the number of connected VMs grows, what a VM
costs in memory, and how long portmux takes to start with many VMs.

For each count (1, 8, 64, 256, 1,024) portmux is started with that many vhost-user VMs, and every VM gets a
guest: a net_virtio_user port of a dpdk-testpmd consumer (but the 1,024th: see FDSET_ENTRIES). portmux is
the vhost-user client (--vhost-mode client, the default) and the guests listen (server=1). Debian's DPDK allows 32 ports per
process, so the guests are spread over many consumers of 30 ports each; those consumers run interactive
(`-i`) with forwarding stopped, their rings posted and idle, and cost no CPU. Traffic goes to 4 VMs (fewer
when there are fewer), spread over the VM table, which own the ports the pcap hits (1024-65535 in 4 blocks);
every other VM owns one port below 1024 that nothing is sent to. Their guests are one consumer in rxonly.
The uplink is net_pcap replaying part a's 64-byte frames (infinite_rx).

The cost is measured as cycles.py does: the CPU time portmux's forwarding thread got
(/proc/PID/task/TID/schedstat) over the packets it received from the uplink in the interval (each one parsed,
looked up and handed to its VM), in TSC cycles, so the figure holds on a busy machine; the cost per packet
delivered, the share delivered and wall-clock Mpps beside it. Counts run interleaved, --repeat times; each
count is compared with 8 VMs (the ratio of the medians of cycles per packet). Then, in the same start, the
traffic's ranges are removed so that every frame goes to the host port (net_null, no rate limit) with every
guest still connected: the uplink's cost without a guest's drain rate in it, measured the same way.

Memory, at every count once all links are up: portmux's VmRSS, RssAnon, HugetlbPages (which includes the
guests' memory the vhost library maps) from /proc/PID/status, and the hugepages portmux allocated itself (the
files of its --file-prefix under /dev/hugepages; portmux runs in DPDK's dynamic memory mode, no -m, so they
grow with what it uses). Per VM: (m_largest - m_8) / (largest - 8).

Start-up: from exec to /portmux/vms listing every VM, and from the consumers' start to every link up.

Usage: vm_scale.py --portmux BIN --work DIR [--counts 1,8,64,256,1024] [--repeat N] [--quick] [--tsc-hz HZ]
       [--json FILE]
"""
import argparse
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_helper as bh  # noqa: E402
from telemetry import TelemetryError  # noqa: E402  (bench_helper puts it on the path)

TESTPMD = os.environ.get("TESTPMD", "dpdk-testpmd")
COUNTS = [1, 8, 64, 256, 1024]
REFERENCE = 8              # every count is compared with this one
TARGET_RATIO = 1.10        # 1,024 VMs within 10 % of 8 (docs/performance.md)
HOT_VMS = 4                # VMs the traffic goes to
PORTS_PER_CONSUMER = 30    # RTE_MAX_ETHPORTS is 32 in Debian's DPDK
HUGEPAGES_NEEDED_MIB = 160  # portmux's own allocation with 1,024 VMs, with room to spare
OWNED = (1024, 65535)      # what the pcap hits
HOT_VIRTIO = "queues=1,queue_size=1024,packed_vq=0,in_order=1,mrg_rxbuf=0"  # as part b's VM side
IDLE_VIRTIO = "queues=1,queue_size=64"
HUGEDIR = "/dev/hugepages"
# DPDK 22.11's vhost library watches every vhost-user socket of a process in one fdset of 1,024 entries, one
# of which is its own wake-up pipe: 1,023 connections at most, and a server-mode VM holds an entry for its
# listening socket besides its connection (N server-mode VMs: 1,023 - N connections; from 1,023 of them the
# sockets cannot all listen). The VMs beyond are configured and left unconnected.
FDSET_ENTRIES = 1023


def hot_indexes(n):
    """The VMs the traffic goes to: spread over the table (first, quarter, half, last)."""
    picks = [0, n // 4, n // 2, n - 1][:min(HOT_VMS, n)] if n >= HOT_VMS else list(range(n))
    return sorted(set(picks))


def write_config(path, pcap, n, sockdir, mode):
    hot = hot_indexes(n)
    blocks = bh.split_span(OWNED[0], OWNED[1], len(hot))
    cold_port = 1
    vms = []
    for i in range(n):
        if i in hot:
            ranges = [blocks[hot.index(i)]]
        else:
            ranges = ["%d" % cold_port]  # a port below 1024 that the pcap never hits
            cold_port += 1
        vms.append({"name": "vm%d" % i, "mac": bh.vm_mac(i + 1), "ranges": ranges,
                    "vhost": os.path.join(sockdir, "vm%d.sock" % i), "vhost_mode": mode})
    config = {"shared_ip": bh.SHARED_IP, "uplink": {"device": "net_pcap0,rx_pcap=%s,infinite_rx=1" % pcap,
                                                    "mac": bh.UPLINK_MAC},
              # No host rate limit: in the second interval every frame goes to the host port (see one_run).
              "host": {"device": "net_null0,no-rx=1", "ranges": [], "rate_limit_pps": 0}, "vms": vms,
              "unmatched": "host"}
    with open(path, "w") as f:
        json.dump(config, f)
    return vms, hot




def remove_hugepage_files(prefix):
    for path in glob.glob(os.path.join(HUGEDIR, prefix + "map_*")):
        try:
            os.unlink(path)
        except OSError:
            pass


def hugepage_files_kib(prefix):
    """What the process of PREFIX allocated in hugepages: the blocks of its files (not their sizes: with
    dynamic memory the files of a segment list are sparse)."""
    total = 0
    for path in glob.glob(os.path.join(HUGEDIR, prefix + "map_*")):
        try:
            total += os.stat(path).st_blocks * 512
        except OSError:
            pass
    return total // 1024


def status_kib(pid):
    fields = {}
    for line in open("/proc/%d/status" % pid):
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "HugetlbPages"):
            fields[key] = int(value.split()[0])
    return fields




class Consumer:
    """One dpdk-testpmd whose ports are net_virtio_user guests of portmux's sockets. Busy: rxonly, forwarding
    from the start; idle: interactive with forwarding stopped, kept alive by an open stdin."""

    def __init__(self, prefix, ports, logdir, busy, listen):
        self.prefix, self.ports, self.busy, self.listen = prefix, ports, busy, listen
        self.log_path = os.path.join(logdir, "%s.log" % prefix)
        self.proc = None

    def command(self):
        vdevs = []
        for k, (path, mac) in enumerate(self.ports):
            vdevs += ["--vdev", "net_virtio_user%d,path=%s,mac=%s,%s%s" % (
                k, path, mac, HOT_VIRTIO if self.busy else IDLE_VIRTIO, ",server=1" if self.listen else "")]
        # --no-huge: the memfd-backed memory is shared with portmux like hugepages, and 35 consumers would
        # not fit in the hugepages of a small machine.
        eal = [TESTPMD, "--lcores", "0@0,1@0", "--no-huge", "-m", "128" if self.busy else "64", "--no-pci",
               "--file-prefix", self.prefix, "--log-level", "pmd.net.virtio.*:error"] + vdevs + ["--"]
        if self.busy:
            return eal + ["--forward-mode=rxonly", "--auto-start", "--stats-period", "10",
                          "--total-num-mbufs=8192", "--rxq=1", "--txq=1"]
        return eal + ["-i", "--total-num-mbufs=%d" % max(2048, 96 * len(self.ports)), "--rxq=1", "--txq=1"]

    def start(self):
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL if self.busy else subprocess.PIPE,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                if self.busy:
                    self.proc.send_signal(signal.SIGINT)
                else:
                    self.proc.stdin.write(b"quit\n")
                    self.proc.stdin.close()
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)
        remove_hugepage_files(self.prefix)


def wait_listed(tel, n, deadline, proc):
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("portmux exited with status %s during start-up" % proc.returncode)
        try:
            page = tel.query("/portmux/vms")
            if isinstance(page, dict) and page.get("page_total") == n:
                return
        except (OSError, ValueError, TelemetryError):  # commands not registered yet
            pass
        time.sleep(0.02)
    raise RuntimeError("/portmux/vms did not list %d VMs in time" % n)


def links_down(tel, n):
    down = 0
    for offset in range(0, n, 20):
        page = tel.query("/portmux/vms,offset=%d" % offset)
        down += sum(1 for v in page.values() if isinstance(v, dict) and v.get("link") != "up")
    return down


def one_run(n, pcap, binary, work, prefix, tsc_hz, warmup, interval, timeout, mode):
    sockdir = os.path.join(work, "socks-%d" % n)
    shutil.rmtree(sockdir, ignore_errors=True)
    os.makedirs(sockdir)
    config = os.path.join(work, "vms%d.json" % n)
    vms, hot = write_config(config, pcap, n, sockdir, mode)
    shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    remove_hugepage_files(prefix)
    consumers = []
    log = open(os.path.join(work, "portmux-%d.log" % n), "w")
    started = time.monotonic()
    # Dynamic memory (no -m): the hugepages portmux holds are what it uses.
    proc = subprocess.Popen([binary, "-c", config, "--", "--no-pci", "--lcores", "0@0,1@1", "--file-prefix", prefix,
                             "--log-level", "pmd.net.pcap:error"],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        deadline = started + timeout
        while not os.path.exists(bh.socket_path(prefix)):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("portmux with %d VMs did not start (exit %s); see %s" % (n, proc.poll(), log.name))
            time.sleep(0.02)
        with bh.connect(prefix) as tel:
            wait_listed(tel, n, deadline, proc)
            listed_s = time.monotonic() - started
            memory_unconnected = status_kib(proc.pid)
            guest_start = time.monotonic()
            hot_ports = [(vms[i]["vhost"], vms[i]["mac"]) for i in hot]
            # Server mode: every VM's listening socket holds an entry, connected or not.
            connectable = FDSET_ENTRIES if mode == "client" else FDSET_ENTRIES - n
            cold = [i for i in range(n) if i not in hot][:max(0, connectable - len(hot))]
            connected = len(hot) + len(cold)
            consumers.append(Consumer("%s-hot" % prefix, hot_ports, work, busy=True, listen=mode == "client"))
            for k in range(0, len(cold), PORTS_PER_CONSUMER):
                ports = [(vms[i]["vhost"], vms[i]["mac"]) for i in cold[k:k + PORTS_PER_CONSUMER]]
                consumers.append(Consumer("%s-idle%d" % (prefix, k // PORTS_PER_CONSUMER), ports, work, busy=False,
                                          listen=mode == "client"))
            for c in consumers:
                c.start()
            while True:
                down = links_down(tel, n) - (n - connected)
                if down <= 0:
                    break
                dead = ["%s (exit %s)" % (c.log_path, c.proc.returncode) for c in consumers if c.proc.poll() is not None]
                if dead or time.monotonic() > deadline:
                    raise RuntimeError("%d of %d links still down%s" % (
                        down, connected, "; a consumer exited, see " + dead[0] if dead else " at the time-out"))
                time.sleep(0.2)
            links_s = time.monotonic() - guest_start
            time.sleep(warmup)
            memory = status_kib(proc.pid)
            memory["own_hugepages"] = hugepage_files_kib(prefix)
            memory["VmRSS_before_guests"] = memory_unconnected.get("VmRSS")
            s0, w0, t0 = tel.query("/portmux/stats"), bh.thread_cpu_s(proc.pid, bh.is_lcore_worker), time.monotonic()
            time.sleep(interval)
            s1, w1, t1 = tel.query("/portmux/stats"), bh.thread_cpu_s(proc.pid, bh.is_lcore_worker), time.monotonic()
            # Then the same start with the traffic's ranges removed: every frame goes to the host port
            # (net_null), which takes them as fast as they come, while every guest stays connected and
            # polled. This cost does not depend on how fast a guest drains its ring.
            for i in hot:
                answer = tel.query("/portmux/range/del,%s" % vms[i]["ranges"][0])
                if not isinstance(answer, dict) or "error" in answer:
                    raise RuntimeError("range/del %s: %s" % (vms[i]["ranges"][0], answer))
            time.sleep(warmup)
            h0, hw0, ht0 = tel.query("/portmux/stats"), bh.thread_cpu_s(proc.pid, bh.is_lcore_worker), time.monotonic()
            time.sleep(interval)
            h1, hw1, ht1 = tel.query("/portmux/stats"), bh.thread_cpu_s(proc.pid, bh.is_lcore_worker), time.monotonic()
    finally:
        for c in consumers:
            c.stop()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
        remove_hugepage_files(prefix)
        shutil.rmtree(sockdir, ignore_errors=True)
    delivered = s1["tx_vms"] - s0["tx_vms"]
    received = s1["rx_uplink"] - s0["rx_uplink"]
    cpu = w1 - w0
    if delivered <= 0 or cpu <= 0:
        raise RuntimeError("%d VMs: delivered %d packets in %.3f CPU s" % (n, delivered, cpu))
    host_in, host_out, host_cpu = (h1["rx_uplink"] - h0["rx_uplink"], h1["tx_host"] - h0["tx_host"], hw1 - hw0)
    if host_in <= 0 or host_cpu <= 0:
        raise RuntimeError("%d VMs, host-bound: %d packets in %.3f CPU s" % (n, host_in, host_cpu))
    host_bound = {"tsc_cycles_per_packet": tsc_hz * host_cpu / host_in, "mpps": host_in / (ht1 - ht0) / 1e6,
                  "mpps_per_cpu_s": host_in / host_cpu / 1e6, "forwarded_share": host_out / host_in}
    # Per packet received on the uplink: each one is parsed, looked up and offered to its VM, and what a guest
    # that is slow to drain its ring costs (a counted drop after one retry) stays with the packet; the figure
    # per packet delivered is kept beside it.
    return {"vms": n, "connected": connected, "hot_vms": hot, "consumers": len(consumers), "tsc_cycles_per_packet": tsc_hz * cpu / received,
            "tsc_cycles_per_delivered": tsc_hz * cpu / delivered, "uplink_packets": received,
            "mpps": received / (t1 - t0) / 1e6, "mpps_per_cpu_s": received / cpu / 1e6,
            "delivered_mpps": delivered / (t1 - t0) / 1e6, "cpu_share": cpu / (t1 - t0),
            "packets": delivered, "delivered_share": delivered / max(1, received),
            "tx_dropped_vms": s1["tx_dropped_vms"] - s0["tx_dropped_vms"],
            "startup_listed_s": listed_s, "startup_links_up_s": links_s, "memory_kib": memory,
            "host_bound": host_bound}


def summary(runs):
    cycles = [r["tsc_cycles_per_packet"] for r in runs]
    host = [r["host_bound"]["tsc_cycles_per_packet"] for r in runs]
    return {"median": statistics.median(cycles), "min": min(cycles), "max": max(cycles),
            "cycles_per_delivered": statistics.median(r["tsc_cycles_per_delivered"] for r in runs),
            "mpps_per_cpu_s": statistics.median(r["mpps_per_cpu_s"] for r in runs),
            "wall_mpps": statistics.median(r["mpps"] for r in runs),
            "delivered_share": min(r["delivered_share"] for r in runs),
            "startup_listed_s": statistics.median(r["startup_listed_s"] for r in runs),
            "startup_links_up_s": statistics.median(r["startup_links_up_s"] for r in runs),
            "memory_kib": {k: statistics.median(r["memory_kib"][k] for r in runs)
                           for k in runs[0]["memory_kib"] if runs[0]["memory_kib"][k] is not None},
            "host_bound": {"median": statistics.median(host), "min": min(host), "max": max(host),
                           "mpps_per_cpu_s": statistics.median(r["host_bound"]["mpps_per_cpu_s"] for r in runs),
                           "wall_mpps": statistics.median(r["host_bound"]["mpps"] for r in runs),
                           "forwarded_share": min(r["host_bound"]["forwarded_share"] for r in runs)},
            "consumers": runs[0]["consumers"], "hot_vms": runs[0]["hot_vms"], "connected": runs[0]["connected"],
            "runs": runs}




def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--portmux", required=True)
    p.add_argument("--work", required=True, help="a directory for the pcap, configurations, sockets, logs")
    p.add_argument("--counts", default=",".join(str(c) for c in COUNTS))
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="1 and 8 VMs, one short run (numbers mean nothing)")
    p.add_argument("--tsc-hz", type=float, default=0.0)
    p.add_argument("--timeout", type=float, default=180.0, help="seconds for one start with every link up")
    p.add_argument("--vhost-mode", choices=["client", "server"], default="client",
                   help="portmux's side of the sockets (server: 1,023 - N of N VMs connect, see FDSET_ENTRIES)")
    p.add_argument("--json")
    args = p.parse_args()
    try:
        counts = sorted({int(c) for c in args.counts.split(",") if c})
    except ValueError:
        p.error("--counts: a comma-separated list of VM counts")
    if args.quick:
        counts = [c for c in counts if c <= REFERENCE] or [1, REFERENCE]
    if not counts or counts[0] < 1 or counts[-1] > 1024:
        p.error("--counts: between 1 and 1,024 VMs")
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    repeat, warmup, interval = (1, 0.3, 0.5) if args.quick else (args.repeat, 1.0, 2.0)
    tsc_hz = args.tsc_hz or bh.tsc_hz_guess()
    os.makedirs(args.work, exist_ok=True)
    out = {"tsc_hz": tsc_hz, "tsc_hz_source": "--tsc-hz" if args.tsc_hz else "/proc/cpuinfo", "repeat": repeat,
           "warmup_s": warmup, "interval_s": interval, "quick": args.quick,
           "vhost_mode": args.vhost_mode, "counts": {}, "ratios_vs_8": {},
           "ratios_delivered_vs_8": {}, "ratios_host_bound_vs_8": {},
           "target": {"vms": counts[-1], "ratio_limit": TARGET_RATIO, "ratio": None, "met": None,
                      "ratio_host_bound": None, "met_host_bound": None},
           "memory_per_vm_kib": None, "startup": None, "load": None, "skipped": None, "errors": [], "warnings": []}
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (DPDK runtime directory, vhost-user sockets)"
    elif shutil.which(TESTPMD) is None:
        reason = "dpdk-testpmd is not installed"
    elif not os.path.ismount(HUGEDIR):
        reason = "%s is not a hugetlbfs mount" % HUGEDIR
    elif bh.hugepages_free_mib() < HUGEPAGES_NEEDED_MIB:
        reason = "%d MiB of free hugepages, %d needed for portmux" % (bh.hugepages_free_mib(), HUGEPAGES_NEEDED_MIB)
    if reason:
        out["skipped"] = reason
        print("g. VM scale: skipped: %s" % reason)
        if args.json:
            json.dump(out, open(args.json, "w"), indent=2)
        return 0
    pcap = os.path.join(args.work, "a.pcap")
    bh.main_argv(["pcap", pcap, "--size", "64", "--frames", "1024", "%d-%d" % OWNED])
    binary = os.path.abspath(args.portmux)
    prefix = "pmxvms%d" % os.getpid()
    out["load"] = {"loadavg_before": open("/proc/loadavg").read().split()[:3]}
    runs = {n: [] for n in counts}
    for _ in range(repeat):  # interleaved: a drift of the machine touches every count alike
        for n in counts:
            try:
                runs[n].append(one_run(n, pcap, binary, args.work, prefix, tsc_hz, warmup, interval, args.timeout,
                                       args.vhost_mode))
            except (RuntimeError, OSError, ValueError) as e:
                out["errors"].append("%d VMs: %s" % (n, e))
    out["load"]["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    result = {str(n): summary(r) for n, r in runs.items() if r}
    out["counts"] = result
    ref = result.get(str(REFERENCE))
    if ref:
        for n, s in result.items():
            out["ratios_vs_8"][n] = s["median"] / ref["median"]
            out["ratios_delivered_vs_8"][n] = s["cycles_per_delivered"] / ref["cycles_per_delivered"]
            out["ratios_host_bound_vs_8"][n] = s["host_bound"]["median"] / ref["host_bound"]["median"]
    largest = str(counts[-1])
    if largest in out["ratios_vs_8"] and largest != str(REFERENCE):
        r = out["ratios_vs_8"][largest]
        h = out["ratios_host_bound_vs_8"][largest]
        out["target"].update({"ratio": r, "met": r <= TARGET_RATIO, "ratio_host_bound": h,
                              "met_host_bound": h <= TARGET_RATIO})
    # Per VM: from 8 VMs to the largest count (from the smallest count when 8 is the largest).
    base = str(REFERENCE) if ref and int(largest) > REFERENCE else min(result, key=int, default=None)
    if base is not None and largest in result and int(largest) > int(base):
        big, small = result[largest]["memory_kib"], result[base]["memory_kib"]
        out["memory_per_vm_kib"] = {"from": int(base), "to": int(largest),
                                    **{k: (big[k] - small[k]) / (int(largest) - int(base)) for k in big if k in small}}
    if largest in result:
        out["startup"] = {"vms": int(largest), "listed_s": result[largest]["startup_listed_s"],
                          "links_up_s": result[largest]["startup_links_up_s"],
                          "consumers": result[largest]["consumers"], "connected": result[largest]["connected"]}
    for n, s in result.items():
        if s["host_bound"]["forwarded_share"] < 0.99:
            out["warnings"].append("%s VMs, host-bound: only %.1f %% reached the host port" % (
                n, 100 * s["host_bound"]["forwarded_share"]))
        if s["delivered_share"] < 0.99:
            out["warnings"].append("%s VMs: only %.1f %% of the uplink's frames were delivered (guest rings full)"
                                   % (n, 100 * s["delivered_share"]))

    print("g. uplink cost against connected VMs (TSC cycles of the forwarding thread per uplink packet; "
          "median of %d, min-max)" % repeat)
    for n, s in result.items():
        mem = s["memory_kib"]
        print("  %5s VMs (%4d connected) %7.1f (%6.1f-%6.1f) cycles  %5.2fx of 8  %6.2f Mpps per CPU s  %6.2f Mpps wall  "
              "(%.1f cycles per delivered, %.0f %% delivered)  RSS %d MiB, own hugepages %d MiB, "
              "start %.1f s + links %.1f s" % (
                  n, s["connected"], s["median"], s["min"], s["max"], out["ratios_vs_8"].get(n, float("nan")), s["mpps_per_cpu_s"],
                  s["wall_mpps"], s["cycles_per_delivered"], 100 * s["delivered_share"], mem.get("VmRSS", 0) // 1024, mem.get("own_hugepages", 0) // 1024,
                  s["startup_listed_s"], s["startup_links_up_s"]))
    print("  the same starts with every frame to the host port (net_null), guests connected and idle:")
    for n, s in result.items():
        h = s["host_bound"]
        print("  %5s VMs %7.1f (%6.1f-%6.1f) cycles  %5.2fx of 8  %6.2f Mpps per CPU s  %6.2f Mpps wall" % (
            n, h["median"], h["min"], h["max"], out["ratios_host_bound_vs_8"].get(n, float("nan")),
            h["mpps_per_cpu_s"], h["wall_mpps"]))
    if out["memory_per_vm_kib"]:
        m = out["memory_per_vm_kib"]
        print("  memory per VM (%d -> %d VMs): RSS %.1f KiB, own hugepages %.1f KiB, HugetlbPages mapped %.1f KiB" % (
            m["from"], m["to"], m.get("VmRSS", 0), m.get("own_hugepages", 0), m.get("HugetlbPages", 0)))
    return bh.finish(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
