#!/usr/bin/python3
"""Soak: portmux under traffic on every port while ranges and VMs churn and a vhost-user guest comes and goes.

Traffic: the uplink, a VM port (valid egress frames, a few spoofed) and the host port replay pcaps without
pause (net_pcap infinite_rx); a second VM is a net_null sink. Churn: every few milliseconds a telemetry
request adds, moves or deletes a range, or disables/enables a VM. With hugepages, a third VM is a vhost-user
port in server mode whose guest (dpdk-testpmd on net_virtio_user, alternately txonly and rxonly) is killed and
restarted several times; without hugepages that part is skipped with a printed reason.

Checks at the end: every telemetry request was answered within TIMEOUT; VmRSS grew by at most RSS_SLACK after
warm-up; the mbuf pool never ran dry (drop_no_mbuf and every port's rx_nombuf stay 0, throughput does not
collapse) and, when /portmux/info reports the pool's free count, it is back near its warm-up level; portmux
exits 0 on SIGTERM and its final counters account for every frame received (drop_tx only on the vhost VM).

Usage: soak.py PORTMUX [--minutes M] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import telemetry  # noqa: E402
from run_case import write_pcap  # noqa: E402

from scapy.all import ARP, Ether, ICMP, IP, IPv6, TCP, UDP, Raw  # noqa: E402

SHARED_IP, SHARED_IP6 = "192.0.2.10", "2001:db8::10"
PEER_IP, PEER_IP6 = "198.51.100.7", "2001:db8:ffff::7"
UPLINK_MAC, GW_MAC = "02:00:00:00:0a:01", "02:00:00:00:00:fe"
VM_MAC = {"vm1": "52:54:00:00:00:01", "vm2": "52:54:00:00:00:02", "vm3": "52:54:00:00:00:03"}
TIMEOUT = 2.0              # seconds: every telemetry request must be answered within this
RSS_SLACK = 16 << 20       # bytes of VmRSS growth tolerated after warm-up
POOL_SLACK = 1024          # mbufs: in flight in bursts, tx buffers, handoff rings and caches at any moment
HUGE_PAGES_NEEDED = 512 + 256  # MiB: portmux -m 512, the guest -m 256


def fail(errors, message):
    errors.append(message)
    print("FAIL: " + message, flush=True)


def write_traffic(work):
    up = []
    for i in range(64):
        up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP) /
                  TCP(sport=30000 + i, dport=8000 + i % 100, flags="A") / Raw(b"s" * (i * 8)))
        up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / IPv6(src=PEER_IP6, dst=SHARED_IP6) /
                  UDP(sport=30000 + i, dport=7000 + i % 100))       # the churned range (or nobody: to host)
    for dport, proto in ((9000, TCP), (5353, UDP), (6000, UDP), (22, TCP), (12345, TCP)):
        up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP) / proto(sport=40000, dport=dport))
    up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / ARP(op=2, psrc=PEER_IP, pdst=SHARED_IP, hwsrc=GW_MAC))
    up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP) / ICMP())
    up.append(Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP, ihl=4) / TCP(dport=8000))
    vm1 = []
    for i in range(32):
        vm1.append(Ether(src=VM_MAC["vm1"], dst=GW_MAC) / IP(src=SHARED_IP, dst=PEER_IP) /
                   TCP(sport=8000 + i, dport=30000 + i, flags="A"))
    vm1.append(Ether(src=VM_MAC["vm1"], dst=GW_MAC) / IP(src=SHARED_IP, dst=PEER_IP) / TCP(sport=9000, dport=1))
    vm1.append(Ether(src=VM_MAC["vm1"], dst=GW_MAC) / IP(src="192.0.2.77", dst=PEER_IP) / TCP(sport=8000, dport=1))
    host = [Ether(src=UPLINK_MAC, dst=GW_MAC) / IP(src=SHARED_IP, dst=PEER_IP) / TCP(sport=22, dport=50000 + i)
            for i in range(16)]
    for name, frames in (("uplink", up), ("vm1", vm1), ("host", host)):
        write_pcap(os.path.join(work, name + ".pcap"), frames)


def hugepages_free_mib():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["HugePages_Free"].split()[0]) * int(info["Hugepagesize"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return 0


def rss_bytes(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def final_totals(log_text):
    ports = {}
    for m in re.finditer(r"portmux: (\w+) (\S+): rx (\d+) tx (\d+) tx_dropped (\d+)", log_text):
        ports[m.group(2)] = {"role": m.group(1), "rx": int(m.group(3)), "tx": int(m.group(4)),
                             "tx_dropped": int(m.group(5))}
    counters = {m.group(1): int(m.group(2)) for m in re.finditer(r"portmux: ([a-z_]+): (\d+)\n", log_text)}
    return ports, counters


class TimedTelemetry:
    """One telemetry connection that records how long every request took and fails on any timeout."""

    def __init__(self, prefix, errors):
        self.client = telemetry.Telemetry(telemetry.socket_path(prefix), timeout=TIMEOUT)
        self.errors = errors
        self.count, self.worst, self.unanswered = 0, 0.0, 0

    def query(self, command):
        t0 = time.perf_counter()
        try:
            answer = self.client.query(command)
        except (socket.timeout, telemetry.TelemetryError, OSError, ValueError) as e:
            self.unanswered += 1
            fail(self.errors, "telemetry %r not answered within %.1f s: %s" % (command, TIMEOUT, e))
            raise
        elapsed = time.perf_counter() - t0
        self.count += 1
        self.worst = max(self.worst, elapsed)
        if elapsed > TIMEOUT:
            fail(self.errors, "telemetry %r took %.2f s" % (command, elapsed))
        return answer


class Guest:
    """dpdk-testpmd on net_virtio_user, the vhost-user guest of vm3; killed and restarted on demand."""

    def __init__(self, sock, work, prefix):
        self.sock, self.work, self.prefix = sock, work, prefix + "-guest"
        self.proc, self.starts, self.mode = None, 0, "txonly"

    def start(self):
        self.mode = "txonly" if self.starts % 2 == 0 else "rxonly"
        self.starts += 1
        log = open(os.path.join(self.work, "guest-%d.log" % self.starts), "w")
        cmd = ["dpdk-testpmd", "--lcores", "0@0,1@0", "-m", "256", "--single-file-segments", "--no-pci",
               "--file-prefix", self.prefix, "--vdev", "net_virtio_user0,path=%s,mac=%s" % (self.sock, VM_MAC["vm3"]),
               "--", "--forward-mode=%s" % self.mode, "--auto-start", "--stats-period", "1",
               "--tx-ip=%s,%s" % (SHARED_IP, PEER_IP), "--tx-udp=6500,40000", "--eth-peer=0,%s" % GW_MAC,
               "--txpkts=64", "--burst=16", "--total-num-mbufs=8192"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self, hard):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, self.prefix), ignore_errors=True)
        # virtio-user needs few memory regions (--single-file-segments), which rules out --huge-unlink: the
        # guest's hugepage files are removed here instead.
        for hugedir in ("/dev/hugepages", "/mnt/huge"):
            if os.path.isdir(hugedir):
                for entry in os.listdir(hugedir):
                    if entry.startswith(self.prefix + "map_"):
                        try:
                            os.unlink(os.path.join(hugedir, entry))
                        except OSError:
                            pass


def ethdev_nombuf(tel, nports):
    total = {}
    for port in range(nports):
        answer = tel.query("/ethdev/stats,%d" % port)
        if isinstance(answer, dict):
            total[port] = answer.get("rx_nombuf", 0)
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("portmux")
    parser.add_argument("--minutes", type=float, default=0.5)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    duration = args.minutes * 60
    prefix = "pmx-soak-%d" % os.getpid()
    work = tempfile.mkdtemp(prefix="pmx-soak-")
    errors, proc, guest = [], None, None
    use_vhost = shutil.which("dpdk-testpmd") is not None and hugepages_free_mib() >= HUGE_PAGES_NEEDED
    if not use_vhost:
        print("SKIP vhost-user guest reconnects: %s" % (
            "dpdk-testpmd not installed" if shutil.which("dpdk-testpmd") is None else
            "%d MiB of free hugepages, %d needed" % (hugepages_free_mib(), HUGE_PAGES_NEEDED)), flush=True)
    try:
        write_traffic(work)
        config = {
            "shared_ip": SHARED_IP, "shared_ip6": SHARED_IP6,
            "uplink": {"device": "net_pcap0,rx_pcap=%s/uplink.pcap,infinite_rx=1" % work, "mac": UPLINK_MAC},
            "host": {"device": "net_pcap1,rx_pcap=%s/host.pcap,infinite_rx=1" % work, "ranges": ["tcp:22"]},
            "vms": [
                {"name": "vm1", "device": "net_pcap2,rx_pcap=%s/vm1.pcap,infinite_rx=1" % work, "mac": VM_MAC["vm1"],
                 "ranges": ["tcp:8000-8099", "udp:5353"]},
                {"name": "vm2", "device": "net_null3,no-rx=1", "mac": VM_MAC["vm2"], "ranges": ["tcp:9000"]},
            ],
            "unmatched": "host",
        }
        if use_vhost:
            config["vms"].append({"name": "vm3", "vhost": os.path.join(work, "vm3.sock"), "vhost_mode": "server",
                                  "mac": VM_MAC["vm3"], "ranges": ["udp:6000-6999"]})
        config_path = os.path.join(work, "portmux.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        eal = ["--no-pci", "--lcores", "0@0,1@1", "--file-prefix", prefix, "--log-level", "pmd.net.pcap:error"]
        eal += ["-m", "512", "--huge-unlink"] if use_vhost else ["--no-huge", "-m", "512"]
        log_path = os.path.join(work, "portmux.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([args.portmux, "-c", config_path, "--"] + eal, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 30
        while not os.path.exists(telemetry.socket_path(prefix)):
            if proc.poll() is not None or time.time() > deadline:
                fail(errors, "portmux did not start: " + open(log_path).read()[-2000:])
                return 1
            time.sleep(0.1)
        time.sleep(0.5)
        tel = TimedTelemetry(prefix, errors)
        while not isinstance(tel.client.query("/portmux/stats"), dict):
            time.sleep(0.1)
        nports = 4 + (1 if use_vhost else 0)
        if use_vhost:
            guest = Guest(os.path.join(work, "vm3.sock"), work, prefix)
            guest.start()

        start = time.time()
        warmup_end = start + min(5.0, duration * 0.2)
        rss_warm = pool_warm = rx_warm = None
        samples, changes, guest_events, vm3_up_seen = [], 0, 0, 0
        next_guest = start + duration / 7 if use_vhost else None
        guest_down_until = None
        step = 0
        last_sample = 0.0
        ops = ["/portmux/range/add,vm2,udp:7000-7099", "/portmux/range/move,udp:7000-7099,vm1",
               "/portmux/range/move,udp:7000-7099,host", "/portmux/range/del,udp:7000-7099",
               "/portmux/vm/disable,vm2", "/portmux/vm/enable,vm2", "/portmux/range/move,tcp:8000-8099,vm2",
               "/portmux/range/move,tcp:8000-8099,vm1", "/portmux/lookup,udp:7050"]
        while time.time() - start < duration:
            if proc.poll() is not None:
                fail(errors, "portmux exited during the soak with status %d" % proc.returncode)
                break
            command = ops[step % len(ops)]
            answer = tel.query(command)
            if isinstance(answer, dict) and "error" in answer:
                fail(errors, "%s refused: %s" % (command, answer["error"]))
            changes += 1
            step += 1
            now = time.time()
            if now - last_sample >= 1.0:
                last_sample = now
                stats = tel.query("/portmux/stats")
                info = tel.query("/portmux/info")
                pool = info.get("mbufs_free") if isinstance(info, dict) else None
                rx = stats["rx_uplink"] + stats["rx_host"] + stats["rx_vms"]
                samples.append((now - start, rss_bytes(proc.pid), pool, rx, stats["drop_no_mbuf"]))
                if rss_warm is None and now >= warmup_end:
                    rss_warm, pool_warm, rx_warm = samples[-1][1], pool, (now, rx)
                if use_vhost:
                    vms = tel.query("/portmux/vms,vm3")
                    entry = next((v for v in vms.values() if isinstance(v, dict) and v.get("name") == "vm3"), {})
                    if entry.get("link") == "up":
                        vm3_up_seen += 1
            if next_guest is not None and now >= next_guest:
                guest.kill(hard=guest_events % 2 == 0)
                guest_events += 1
                guest_down_until = now + 1.0
                next_guest = now + duration / 7
            if guest_down_until is not None and now >= guest_down_until:
                guest.start()
                guest_down_until = None
            time.sleep(0.003)

        # The end of the run: the pool and throughput while traffic still flows, then the final counters.
        end_stats = tel.query("/portmux/stats")
        info = tel.query("/portmux/info")
        pool_end = info.get("mbufs_free") if isinstance(info, dict) else None
        rss_end = rss_bytes(proc.pid)
        nombuf = ethdev_nombuf(tel, nports)
        elapsed = time.time() - start
        rx_end = end_stats["rx_uplink"] + end_stats["rx_host"] + end_stats["rx_vms"]
        tel.client.close()
        if guest is not None:
            guest.kill(hard=False)
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=30)
            if rc != 0:
                fail(errors, "portmux exited with status %d after SIGTERM" % rc)
        except subprocess.TimeoutExpired:
            fail(errors, "portmux did not stop within 30 s of SIGTERM")
        with open(log_path, errors="replace") as f:
            text = f.read()
        ports, counters = final_totals(text)

        print("soak: %.1f s, %d telemetry requests (%d changes), slowest %.1f ms, %d unanswered" % (
            elapsed, tel.count, changes, tel.worst * 1e3, tel.unanswered))
        if rss_warm is not None:
            print("VmRSS: %.1f MiB after warm-up, %.1f MiB at the end" % (rss_warm / 2**20, rss_end / 2**20))
            if rss_end - rss_warm > RSS_SLACK:
                fail(errors, "VmRSS grew by %.1f MiB after warm-up (bound %d MiB)" % (
                    (rss_end - rss_warm) / 2**20, RSS_SLACK >> 20))
            rate_warm = rx_warm[1] / max(rx_warm[0] - start, 1e-3)
            window = [s for s in samples if s[0] >= elapsed - 5]
            rate_end = (window[-1][3] - window[0][3]) / max(window[-1][0] - window[0][0], 1e-3) if len(window) > 1 \
                else rate_warm
            print("throughput: %.0f frames/s in warm-up, %.0f frames/s at the end; %d frames in all" % (
                rate_warm, rate_end, rx_end))
            if rate_end < rate_warm * 0.3:
                fail(errors, "throughput collapsed from %.0f to %.0f frames/s (pool or queue exhaustion?)" % (
                    rate_warm, rate_end))
        if pool_warm is not None and pool_end is not None:
            print("mbuf pool: %d free after warm-up, %d at the end" % (pool_warm, pool_end))
            if pool_end < pool_warm - POOL_SLACK:
                fail(errors, "mbuf pool lost %d mbufs (free %d after warm-up, %d at the end)" % (
                    pool_warm - pool_end, pool_warm, pool_end))
        else:
            print("mbuf pool: /portmux/info reports no free count (DPDK 22.11's /mempool/info has none); "
                  "checked through exhaustion instead: drop_no_mbuf %d, rx_nombuf %s" % (
                      counters.get("drop_no_mbuf", 0), nombuf))
        if counters.get("drop_no_mbuf", 0) or any(nombuf.values()):
            fail(errors, "the mbuf pool ran dry: drop_no_mbuf %d, rx_nombuf per port %s" % (
                counters.get("drop_no_mbuf", 0), nombuf))
        if use_vhost:
            print("vhost guest: %d starts, %d kills, link seen up in %d samples" % (
                guest.starts, guest_events, vm3_up_seen))
            if guest_events < 2 or vm3_up_seen == 0:
                fail(errors, "the guest did not come and go: %d kills, link up in %d samples" % (
                    guest_events, vm3_up_seen))
        check_accounting(errors, ports, counters, use_vhost)
        if errors:
            print("portmux log (last 30 lines):\n" + "\n".join(text.splitlines()[-30:]))
            return 1
        print("PASS: soak of %.1f s: %d frames, %d changes, every request answered, no growth, all accounted for" % (
            elapsed, rx_end, changes))
        return 0
    finally:
        if guest is not None:
            guest.kill(hard=True)
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)
        if args.keep or errors:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def check_accounting(errors, ports, counters, use_vhost):
    """Every frame received is delivered or dropped exactly once (drop_tx counts at transmit, not here)."""
    print("final: ports %s" % json.dumps(ports, sort_keys=True))
    print("final: counters %s" % json.dumps(counters, sort_keys=True))
    if not ports:
        fail(errors, "no final counters in portmux's log")
        return
    received = sum(p["rx"] for p in ports.values())
    outcomes = ["to_vm", "to_host", "flooded", "rejected", "to_uplink_from_vm", "to_uplink_from_host",
                "fragments_held"] + [k for k in counters if k.startswith("drop_") and k not in ("drop_tx",)]
    accounted = sum(counters.get(k, 0) for k in outcomes)
    if received != accounted:
        fail(errors, "%d frames received, %d accounted for (%s)" % (
            received, accounted, ", ".join("%s %d" % (k, counters.get(k, 0)) for k in outcomes)))
    if ports["host"]["rx"] != counters.get("to_uplink_from_host", 0):
        fail(errors, "host rx %d != to_uplink_from_host %d" % (ports["host"]["rx"], counters.get("to_uplink_from_host", 0)))
    for name, p in ports.items():
        if p["tx_dropped"] and not (use_vhost and name == "vm3"):
            fail(errors, "%s dropped %d frames at transmit (only the vhost VM's guest was ever away)" % (
                name, p["tx_dropped"]))
    if counters.get("drop_tx", 0) != sum(p["tx_dropped"] for p in ports.values()):
        fail(errors, "drop_tx %d != sum of tx_dropped %d" % (
            counters.get("drop_tx", 0), sum(p["tx_dropped"] for p in ports.values())))
    if received < 100000:
        fail(errors, "too little traffic (%d frames) for the soak to mean anything" % received)


if __name__ == "__main__":
    sys.exit(main())
