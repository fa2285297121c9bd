#!/usr/bin/python3
"""Range changes under load lose nothing: while the uplink replays TCP traffic without pause, a range is
moved back and forth between two VMs (and a second range added and deleted) as fast as telemetry allows.
Every packet must reach one of the two VMs; no packet may be dropped or leak to the host.

Usage: test_churn_under_load.py PORTMUX [MOVES]
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from telemetry import Telemetry, TelemetryError, socket_path, start_portmux  # noqa: E402

from scapy.all import IP, TCP, UDP, Ether, wrpcap  # noqa: E402

SHARED_IP = "192.0.2.10"
UPLINK_MAC = "02:00:00:00:0a:01"


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def write_traffic(path):
    """Flows into the moving range tcp:8000-8099, the fixed range of vm2 (tcp:9000) and UDP of vm1."""
    frames = []
    for i in range(256):
        frames.append(Ether(src="02:00:00:00:00:01", dst=UPLINK_MAC) /
                      IP(src="198.51.100.%d" % (1 + i % 200), dst=SHARED_IP) /
                      TCP(sport=30000 + i, dport=8000 + i % 100, flags="A"))
    for i in range(32):
        frames.append(Ether(src="02:00:00:00:00:01", dst=UPLINK_MAC) /
                      IP(src="198.51.100.7", dst=SHARED_IP) / TCP(sport=31000 + i, dport=9000, flags="A"))
        frames.append(Ether(src="02:00:00:00:00:01", dst=UPLINK_MAC) /
                      IP(src="198.51.100.8", dst=SHARED_IP) / UDP(sport=32000 + i, dport=5353))
    wrpcap(path, frames)


def final_totals(log_text):
    """The counters portmux logs when it stops: per port rx/tx/tx_dropped and the non-zero switch counters."""
    ports = {}
    for m in re.finditer(r"portmux: (\w+) (\S+): rx (\d+) tx (\d+) tx_dropped (\d+)", log_text):
        ports[m.group(2)] = {"rx": int(m.group(3)), "tx": int(m.group(4)), "tx_dropped": int(m.group(5))}
    counters = {m.group(1): int(m.group(2)) for m in re.finditer(r"portmux: ([a-z_]+): (\d+)\n", log_text)}
    return ports, counters


def main():
    portmux = sys.argv[1]
    moves = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    prefix = "pmx-churn-%d" % os.getpid()
    work = tempfile.mkdtemp(prefix="pmx-churn-")
    proc = None
    try:
        write_traffic(os.path.join(work, "traffic.pcap"))
        config = {
            "shared_ip": SHARED_IP,
            "uplink": {"device": "net_pcap0,rx_pcap=%s/traffic.pcap,tx_pcap=%s/up.pcap,infinite_rx=1" % (work, work),
                       "mac": UPLINK_MAC},
            "host": {"device": "net_null0,no-rx=1", "ranges": ["tcp:22"]},
            "vms": [
                {"name": "vm1", "device": "net_null1,no-rx=1", "mac": "52:54:00:00:00:01",
                 "ranges": ["tcp:8000-8099", "udp:5353"]},
                {"name": "vm2", "device": "net_null2,no-rx=1", "mac": "52:54:00:00:00:02", "ranges": ["tcp:9000"]},
            ],
        }
        try:
            proc, log_path = start_portmux(portmux, config, work, prefix)
        except TelemetryError as e:
            fail(str(e))

        owner = "vm1"
        latencies = []
        with Telemetry(socket_path(prefix), timeout=30) as tel:
            deadline = time.time() + 30
            while tel.query("/portmux/stats")["to_vm"] == 0 and time.time() < deadline:
                time.sleep(0.1)
            start = time.time()
            for i in range(moves):
                target = "vm2" if owner == "vm1" else "vm1"
                t0 = time.perf_counter()
                answer = tel.query("/portmux/range/move,tcp:8000-8099,%s" % target)
                latencies.append(time.perf_counter() - t0)
                if "error" in answer:
                    fail("move %d refused: %s" % (i, answer["error"]))
                if tel.query("/portmux/lookup,tcp:8050")["target"] != target:
                    fail("lookup after move %d does not name %s" % (i, target))
                owner = target
                # Adds and deletes of an unrelated range also publish snapshots under load.
                if i % 10 == 0:
                    if "error" in tel.query("/portmux/range/add,vm2,udp:7000-7099"):
                        fail("add refused")
                    if "error" in tel.query("/portmux/range/del,udp:7000-7099"):
                        fail("del refused")
            elapsed = time.time() - start
            stats_during = tel.query("/portmux/stats")

        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            fail("portmux did not stop within 30 s of SIGTERM")
        text = open(log_path).read()
        if status != 0:
            fail("portmux exited with %d:\n%s" % (status, text[-3000:]))
        ports, counters = final_totals(text)
        received = ports["uplink"]["rx"]
        delivered = ports["vm1"]["tx"] + ports["vm2"]["tx"]
        latencies.sort()
        print("changes: %d moves (+%d add/del pairs) in %.2f s while %d packets flowed" %
              (moves, (moves + 9) // 10, elapsed, received))
        print("change latency (request to answer, includes the RCU grace period): median %.3f ms, max %.3f ms" %
              (latencies[len(latencies) // 2] * 1e3, latencies[-1] * 1e3))
        print("to_vm during the run: %d; final: %s" % (stats_during["to_vm"], counters))
        if received < 100000:
            fail("too little traffic flowed (%d packets) for the test to mean anything" % received)
        drops = {k: v for k, v in counters.items() if k.startswith("drop_")}
        if drops:
            fail("packets were dropped during churn: %s" % drops)
        if counters.get("to_host", 0) != 0 or ports["host"]["tx"] != 0:
            fail("packets leaked to the host during churn")
        if counters.get("to_vm", 0) != received:
            fail("received %d on the uplink but delivered %d to VMs" % (received, counters.get("to_vm", 0)))
        if delivered != received or ports["vm1"]["tx_dropped"] + ports["vm2"]["tx_dropped"] != 0:
            fail("VM ports sent %d of %d packets" % (delivered, received))
        print("PASS: %d packets, every one delivered to a VM, none lost across %d changes" % (received, moves))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)


if __name__ == "__main__":
    main()
