#!/usr/bin/python3
"""Part h of the benchmark: PVP with 8 VMs. The uplink's frames fan out to 8 vhost-user VMs; the VM side is one
dpdk-testpmd in rxonly with 8 net_virtio_user ports, and the figure is what it receives per CPU second of the
switch's forwarding core (and per wall second), for three switches over the same sockets and frames:

- portmux: 8 VMs in server mode, ranges 1024-65535 split 8 ways, uplink net_pcap replaying part a's frames;
- Open vSwitch with DPDK: as part b (private database and run directory, pmd-cpu-mask=0x2), with 8
  dpdkvhostuser ports and the OpenFlow rules `bench_helper.py flows` writes for the same configuration (each
  range as masked tp_dst matches rewriting the destination MAC and output to the VM's port);
- testpmd io as the I/O floor: it forwards port pairs and cannot fan one port out to 8, so it runs 8 pairs
  (net_pcap i -> net_vhost i, --port-topology=paired) on its one forwarding core, pcap i holding the frames of
  part a's pcap that go to VM i. It reads 8 uplinks where the switches read one, and looks nothing up.

Switches get 256 MiB of 2 MiB hugepages (--huge-unlink; OVS dpdk-socket-mem=256); the VM side runs --no-huge
(memfd-backed memory, which the vhost-user back-ends map as they would hugepages).
Every switch runs its main lcore on CPU 0 and its one forwarding core on CPU 1 (OVS: ovs-vswitchd pinned to
CPU 0, pmd-cpu-mask=0x2); the VM side runs on CPU 0. The forwarding core's CPU time is its thread's
/proc/PID/task/TID/schedstat (portmux's and testpmd's worker-1 lcore, OVS's pmd thread), so the figure holds
on a machine busy with other work. Switches run interleaved, --repeat times; medians are compared.

Usage: pvp_multi.py --portmux BIN --work DIR [--repeat N] [--quick] [--json FILE] [--switches portmux,ovs_dpdk,testpmd_io]
"""
import argparse
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

TESTPMD = os.environ.get("TESTPMD", "dpdk-testpmd")
OVS_VSWITCHD = os.environ.get("OVS_VSWITCHD", "/usr/lib/openvswitch-switch-dpdk/ovs-vswitchd-dpdk")
VMS = 8
OWNED = (1024, 65535)
SWITCHES = ["portmux", "ovs_dpdk", "testpmd_io"]
TARGET_OVS = 2.0  # portmux >= 2x OVS-DPDK's packets per forwarding-core CPU second (docs/performance.md)
# Half of part b's switch memory, so that a run fits beside other users of a small machine's 1 GiB of hugepages.
SWITCH_MEMORY_MIB = 256
SWITCH_MEMORY = ["-m", str(SWITCH_MEMORY_MIB), "--huge-unlink", "--no-pci"]
HUGEPAGES_NEEDED_MIB = SWITCH_MEMORY_MIB
VIRTIO_OPTS = "queues=1,queue_size=1024,packed_vq=0,in_order=1,mrg_rxbuf=0"  # as part b's VM side
LOG_LEVELS = ["--log-level", "pmd.net.pcap:error"]








def is_ovs_pmd(comm):
    return comm.startswith("pmd")


def prepare(work):
    """Part a's pcap, its split by VM for testpmd, portmux's configuration and OVS's flows."""
    files = {"pcap": os.path.join(work, "a.pcap"), "vm_pcaps": []}
    bh.main_argv(["pcap", files["pcap"], "--size", "64", "--frames", "1024", "%d-%d" % OWNED])
    blocks = bh.split_span(OWNED[0], OWNED[1], VMS)
    for i, block in enumerate(blocks):
        path = os.path.join(work, "vm%d.pcap" % i)
        bh.main_argv(["pcap", path, "--size", "64", "--frames", "128", "--seed", str(i + 1), block])
        files["vm_pcaps"].append(path)
    sockets = [os.path.join(work, "vm%d.sock" % i) for i in range(VMS)]
    vms = [{"name": "vm%d" % (i + 1), "mac": bh.vm_mac(i + 1), "ranges": [blocks[i]], "vhost": sockets[i],
            "vhost_mode": "server"} for i in range(VMS)]
    config = {"shared_ip": bh.SHARED_IP,
              "uplink": {"device": "net_pcap0,rx_pcap=%s,infinite_rx=1" % files["pcap"], "mac": bh.UPLINK_MAC},
              "host": {"device": "net_null0,no-rx=1", "ranges": []}, "vms": vms,
              "firewall": {"default": "accept", "rules": []}, "unmatched": "host"}
    files["config"] = os.path.join(work, "portmux.json")
    with open(files["config"], "w") as f:
        json.dump(config, f)
    files["sockets"] = sockets
    files["macs"] = [vm["mac"] for vm in vms]
    files["flows"] = os.path.join(work, "flows.txt")
    # OVS ports: 1 the uplink, 2 the host, 3..10 the VMs
    bh.main_argv(["flows", files["config"], files["flows"], "--uplink", "1", "--host", "2", "--vm-ports"] +
                 [str(3 + i) for i in range(VMS)])
    return files


def wait_path(path, proc, timeout=60.0, what="socket"):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited (status %s) before %s %s appeared" % (proc.returncode, what, path))
        if time.monotonic() > deadline:
            raise RuntimeError("no %s %s" % (what, path))
        time.sleep(0.1)


def stop(proc, sig=signal.SIGTERM, timeout=20):
    if proc is None or proc.poll() is not None:
        return proc.returncode if proc is not None else None
    proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Ovs:
    """ovs-vswitchd with DPDK on a private database and run directory, as part b's start_ovs, with 8 VMs."""

    def __init__(self, work, files, prefix):
        self.dir = os.path.join(work, "ovs")
        self.files, self.prefix = files, prefix
        self.env = dict(os.environ, OVS_RUNDIR=self.dir, OVS_LOGDIR=self.dir, OVS_DBDIR=self.dir,
                        OVS_SYSCONFDIR=self.dir)
        self.vsctl = ["ovs-vsctl", "--db=unix:%s/db.sock" % self.dir, "--timeout=30"]

    def run(self, cmd):
        subprocess.run(cmd, env=self.env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(self.dir)
        d = self.dir
        self.run(["ovsdb-tool", "create", d + "/conf.db", "/usr/share/openvswitch/vswitch.ovsschema"])
        self.run(["ovsdb-server", d + "/conf.db", "--remote=punix:%s/db.sock" % d, "--pidfile=%s/ovsdb-server.pid" % d,
                  "--unixctl=%s/ovsdb-server.ctl" % d, "--log-file=%s/ovsdb-server.log" % d, "--detach", "--no-chdir"])
        self.run(self.vsctl + ["--no-wait", "init"])
        self.run(self.vsctl + ["--no-wait", "set", "Open_vSwitch", ".", "other_config:dpdk-init=true",
                               "other_config:dpdk-socket-mem=%d" % SWITCH_MEMORY_MIB,
                               "other_config:dpdk-socket-limit=%d" % SWITCH_MEMORY_MIB,
                               "other_config:pmd-cpu-mask=0x2",
                               "other_config:dpdk-extra=--file-prefix=%s --huge-unlink --no-pci "
                               "--log-level=pmd.net.pcap:error --vdev=net_pcap0,rx_pcap=%s,infinite_rx=1 "
                               "--vdev=net_null0,no-rx=1" % (self.prefix, self.files["pcap"])])
        self.run(["taskset", "-c", "0", OVS_VSWITCHD, "unix:%s/db.sock" % d, "--pidfile=%s/ovs-vswitchd.pid" % d,
                  "--unixctl=%s/ovs-vswitchd.ctl" % d, "--log-file=%s/ovs-vswitchd.log" % d, "--detach",
                  "--no-chdir"])
        self.run(self.vsctl + ["add-br", "br0", "--", "set", "bridge", "br0", "datapath_type=netdev"])
        self.run(self.vsctl + ["add-port", "br0", "up", "--", "set", "Interface", "up", "type=dpdk",
                               "options:dpdk-devargs=net_pcap0", "ofport_request=1"])
        self.run(self.vsctl + ["add-port", "br0", "host", "--", "set", "Interface", "host", "type=dpdk",
                               "options:dpdk-devargs=net_null0", "ofport_request=2"])
        for i in range(VMS):
            self.run(self.vsctl + ["add-port", "br0", "vhu%d" % i, "--", "set", "Interface", "vhu%d" % i,
                                   "type=dpdkvhostuser", "ofport_request=%d" % (3 + i)])
        ofctl = ["ovs-ofctl"]  # finds br0 in OVS_RUNDIR
        self.run(ofctl + ["del-flows", "br0"])
        self.run(ofctl + ["add-flows", "br0", self.files["flows"]])
        for i in range(VMS):
            wait_path(self.sockets()[i], None)

    def sockets(self):
        return [os.path.join(self.dir, "vhu%d" % i) for i in range(VMS)]

    def pid(self):
        return int(open(os.path.join(self.dir, "ovs-vswitchd.pid")).read().strip())

    def stop(self):
        for name in ("ovs-vswitchd.pid", "ovsdb-server.pid"):
            path = os.path.join(self.dir, name)
            try:
                pid = int(open(path).read().strip())
            except (OSError, ValueError):
                continue
            try:
                os.kill(pid, signal.SIGTERM)
                for _ in range(100):
                    os.kill(pid, 0)
                    time.sleep(0.1)
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        shutil.rmtree("/var/run/dpdk/" + self.prefix, ignore_errors=True)


def start_switch(switch, files, binary, prefix, work, logs):
    """Starts one switch; answers (process or None, pid, thread matcher, sockets, Ovs or None)."""
    shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    log = open(os.path.join(work, "%s.log" % switch), "w")
    logs.append(log)
    if switch == "portmux":
        for s in files["sockets"]:
            if os.path.exists(s):
                os.unlink(s)
        proc = subprocess.Popen([binary, "-c", files["config"], "--"] + SWITCH_MEMORY +
                                ["--lcores", "0@0,1@1", "--file-prefix", prefix] + LOG_LEVELS,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        for s in files["sockets"]:
            wait_path(s, proc)
        return proc, proc.pid, bh.is_lcore_worker, files["sockets"], None
    if switch == "testpmd_io":
        socks = [os.path.join(work, "tp%d.sock" % i) for i in range(VMS)]
        vdevs = []
        for i in range(VMS):  # port 2i the pcap, 2i+1 its vhost port: the pairs of --port-topology=paired
            if os.path.exists(socks[i]):
                os.unlink(socks[i])
            vdevs += ["--vdev", "net_pcap%d,rx_pcap=%s,infinite_rx=1" % (i, files["vm_pcaps"][i]),
                      "--vdev", "net_vhost%d,iface=%s,queues=1" % (i, socks[i])]
        proc = subprocess.Popen([TESTPMD, "--lcores", "0@0,1@1", "--file-prefix", prefix] + SWITCH_MEMORY +
                                LOG_LEVELS + vdevs +
                                ["--", "--forward-mode=io", "--nb-cores=1", "--rxq=1", "--txq=1",
                                 "--port-topology=paired", "--stats-period=1", "--no-flush-rx",
                                 "--total-num-mbufs=32768"],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        for s in socks:
            wait_path(s, proc)
        return proc, proc.pid, bh.is_lcore_worker, socks, None
    ovs = Ovs(work, files, prefix)
    try:
        ovs.start()
    except (subprocess.CalledProcessError, RuntimeError) as e:
        ovs.stop()
        detail = e.stderr.decode(errors="replace").strip() if isinstance(e, subprocess.CalledProcessError) else e
        raise RuntimeError("OVS did not start: %s (see %s)" % (detail, ovs.dir))
    return None, ovs.pid(), is_ovs_pmd, ovs.sockets(), ovs


def wait_hugepages(timeout=60.0):
    """Other work on the machine may hold hugepages for a while: wait for the switch's share."""
    deadline = time.monotonic() + timeout
    while bh.hugepages_free_mib() < HUGEPAGES_NEEDED_MIB:
        if time.monotonic() > deadline:
            raise RuntimeError("%d MiB of free hugepages, %d needed" % (bh.hugepages_free_mib(), HUGEPAGES_NEEDED_MIB))
        time.sleep(1)


def one_run(switch, files, binary, prefix, work, warmup, interval):
    wait_hugepages()
    logs = []
    vm_prefix = prefix + "-vm"
    consumer = None
    proc, ovs = None, None
    try:
        proc, pid, match, socks, ovs = start_switch(switch, files, binary, prefix + "-sw", work, logs)
        vdevs = []
        for i, s in enumerate(socks):
            vdevs += ["--vdev", "net_virtio_user%d,path=%s,mac=%s,%s" % (i, s, files["macs"][i], VIRTIO_OPTS)]
        shutil.rmtree("/var/run/dpdk/" + vm_prefix, ignore_errors=True)
        clog = open(os.path.join(work, "consumer-%s.log" % switch), "w")
        logs.append(clog)
        # --no-huge: the VM side's memory is memfd-backed and shared with the switch as hugepages would be.
        consumer = subprocess.Popen([TESTPMD, "--lcores", "0@0,1@0", "--no-huge", "-m", "256", "--no-pci",
                                     "--file-prefix", vm_prefix] + vdevs +
                                    ["--", "--forward-mode=rxonly", "--auto-start", "--stats-period=1",
                                     "--total-num-mbufs=16384", "--rxq=1", "--txq=1"],
                                    stdin=subprocess.DEVNULL, stdout=clog, stderr=subprocess.STDOUT)
        wait_path(bh.socket_path(vm_prefix), consumer, what="telemetry socket")
        with bh.connect(vm_prefix) as tel:
            bh.wait_ready(tel, "/ethdev/stats,%d" % (VMS - 1))

            def received():
                return [tel.query("/ethdev/stats,%d" % k)["ipackets"] for k in range(VMS)]

            time.sleep(warmup)
            r0, w0, v0, t0 = received(), bh.thread_cpu_s(pid, match), bh.thread_cpu_s(consumer.pid, bh.is_lcore_worker), \
                time.monotonic()
            time.sleep(interval)
            r1, w1, v1, t1 = received(), bh.thread_cpu_s(pid, match), bh.thread_cpu_s(consumer.pid, bh.is_lcore_worker), \
                time.monotonic()
    finally:
        stop(consumer, signal.SIGINT)
        shutil.rmtree("/var/run/dpdk/" + vm_prefix, ignore_errors=True)
        if proc is not None:
            stop(proc)
        if ovs is not None:
            ovs.stop()
        shutil.rmtree("/var/run/dpdk/" + prefix + "-sw", ignore_errors=True)
        for log in logs:
            log.close()
    per_vm = [b - a for a, b in zip(r0, r1)]
    n, cpu = sum(per_vm), w1 - w0
    if n <= 0 or cpu <= 0:
        raise RuntimeError("%s: the VM side received %d packets in %.3f CPU s of the forwarding core" % (switch, n, cpu))
    # The VM side's share of CPU 0 tells whether it or the switch set the pace.
    return {"mpps": n / (t1 - t0) / 1e6, "mpps_per_cpu_s": n / cpu / 1e6, "cpu_share": cpu / (t1 - t0),
            "vm_side_cpu_share": (v1 - v0) / (t1 - t0), "vm_side_mpps_per_cpu_s": n / max(1e-9, v1 - v0) / 1e6,
            "packets": n, "per_vm": per_vm, "vms_reached": sum(1 for x in per_vm if x > 0)}


def summary(runs):
    per_cpu = [r["mpps_per_cpu_s"] for r in runs]
    return {"median": statistics.median(per_cpu), "min": min(per_cpu), "max": max(per_cpu),
            "wall_mpps": statistics.median(r["mpps"] for r in runs),
            "cpu_share": statistics.median(r["cpu_share"] for r in runs),
            "vm_side_cpu_share": statistics.median(r["vm_side_cpu_share"] for r in runs),
            "vms_reached": min(r["vms_reached"] for r in runs), "runs": runs}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--portmux", required=True)
    p.add_argument("--work", required=True, help="a directory for pcaps, configurations, sockets, logs")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="one short run of each (numbers mean nothing)")
    p.add_argument("--switches", default=",".join(SWITCHES))
    p.add_argument("--json")
    args = p.parse_args()
    switches = [s for s in args.switches.split(",") if s]
    bad = [s for s in switches if s not in SWITCHES]
    if bad:
        p.error("unknown switch %s (known: %s)" % (",".join(bad), ",".join(SWITCHES)))
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    repeat, warmup, interval = (1, 0.5, 0.5) if args.quick else (args.repeat, 1.0, 2.0)
    out = {"vms": VMS, "repeat": repeat, "warmup_s": warmup, "interval_s": interval, "quick": args.quick,
           "figure": "packets received by the VM side per CPU second of the switch's forwarding core (Mpps)",
           "switches": {}, "ratios": {"portmux/ovs_dpdk": None, "portmux/testpmd_io": None},
           "target": {"ratio_limit": TARGET_OVS, "met": None}, "skipped": None, "not_measured": {},
           "load": None, "errors": [], "warnings": []}
    reason = None
    if os.geteuid() != 0:
        reason = "needs root (DPDK runtime directory, vhost-user sockets, OVS)"
    elif shutil.which(TESTPMD) is None:
        reason = "dpdk-testpmd is not installed"
    elif bh.hugepages_free_mib() < HUGEPAGES_NEEDED_MIB:
        reason = "%d MiB of free hugepages, %d needed for a switch" % (bh.hugepages_free_mib(), HUGEPAGES_NEEDED_MIB)
    if reason:
        out["skipped"] = reason
        print("h. PVP with 8 VMs: skipped: %s" % reason)
        if args.json:
            json.dump(out, open(args.json, "w"), indent=2)
        return 0
    if "ovs_dpdk" in switches and not os.access(OVS_VSWITCHD, os.X_OK):
        out["not_measured"]["ovs_dpdk"] = "%s missing (Debian package openvswitch-switch-dpdk)" % OVS_VSWITCHD
        switches.remove("ovs_dpdk")
    os.makedirs(args.work, exist_ok=True)
    files = prepare(args.work)
    binary = os.path.abspath(args.portmux)
    prefix = "pmxpvp%d" % os.getpid()
    out["load"] = {"loadavg_before": open("/proc/loadavg").read().split()[:3]}
    runs = {s: [] for s in switches}
    for _ in range(repeat):  # interleaved: a drift of the machine touches every switch alike
        for s in switches:
            try:
                runs[s].append(one_run(s, files, binary, prefix, args.work, warmup, interval))
            except (RuntimeError, OSError, ValueError) as e:
                out["errors"].append("%s: %s" % (s, e))
    out["load"]["loadavg_after"] = open("/proc/loadavg").read().split()[:3]
    result = {s: summary(r) for s, r in runs.items() if r}
    out["switches"] = result
    for ref in ("ovs_dpdk", "testpmd_io"):
        if "portmux" in result and ref in result:
            out["ratios"]["portmux/%s" % ref] = result["portmux"]["median"] / result[ref]["median"]
    r = out["ratios"]["portmux/ovs_dpdk"]
    out["target"]["met"] = None if r is None else r >= TARGET_OVS
    for s, st in result.items():
        if st["vms_reached"] < VMS:
            out["warnings"].append("%s: only %d of the %d VMs received frames" % (s, st["vms_reached"], VMS))

    print("h. PVP with 8 VMs: packets the VM side received per CPU second of the forwarding core (median of %d, "
          "min-max), wall Mpps" % repeat)
    for s, st in result.items():
        print("  %-12s %6.2f (%5.2f-%5.2f) Mpps per CPU s  %6.2f Mpps wall  (CPU share: forwarding core %3.0f %%, "
              "VM side %3.0f %%)" % (s, st["median"], st["min"], st["max"], st["wall_mpps"], 100 * st["cpu_share"],
                                     100 * st["vm_side_cpu_share"]))
    for name, ratio in out["ratios"].items():
        if ratio is not None:
            print("  %-30s %.2fx" % (name, ratio))
    for name, why in out["not_measured"].items():
        print("  %s not measured: %s" % (name, why))
    return bh.finish(out, args.json)


if __name__ == "__main__":
    sys.exit(main())
