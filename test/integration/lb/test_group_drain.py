#!/usr/bin/python3
"""Load-balanced group changes at run time, with real traffic through the binary.

The uplink is a TAP interface the test writes frames into while portmux runs; the members' ports are pcap
files read after portmux stops. Phase 1 starts 60 UDP flows. Phase 2 drains web1 and sends those flows again
plus 60 new ones: the old flows stay where they were (web1's included), every new flow goes to web2.
Phase 3 ends the drain and disables web2 (a down member): every flow, old or new, now reaches web1.

Usage: test_group_drain.py PORTMUX
"""

import os
import signal
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from telemetry import Telemetry, TelemetryError, socket_path, start_portmux  # noqa: E402

from scapy.all import IP, UDP, Ether, Raw, rdpcap, sendp, wrpcap  # noqa: E402

SHARED_IP = "192.0.2.10"
UPLINK_MAC = "02:00:00:00:0a:01"
FLOWS = 60


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def frames(phase, flows):
    return [Ether(src="02:00:00:00:00:fe", dst=UPLINK_MAC) /
            IP(src="198.51.100.%d" % (1 + f % 200), dst=SHARED_IP) / UDP(sport=20000 + f, dport=5000) /
            Raw(b"%s flow %03d" % (phase.encode(), f)) for f in flows]


def wait_counter(tel, name, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = tel.query("/portmux/stats")[name]
        if value >= want:
            return value
        time.sleep(0.05)
    fail("%s stayed below %d (stats %s)" % (name, want, tel.query("/portmux/stats")))


def change(tel, command):
    answer = tel.query(command)
    if "error" in answer:
        fail("%s refused: %s" % (command, answer["error"]))
    return answer


def received(path):
    """Phase and flow of every frame a member received: {(phase, flow): count}."""
    out = {}
    for p in rdpcap(path):
        raw = bytes(p)
        at = raw.index(b" flow ")
        key = (raw[at - 2:at].decode().strip(), int(raw[at + 6:at + 9]))
        out[key] = out.get(key, 0) + 1
    return out


def main():
    portmux = sys.argv[1]
    prefix = "pmx-lb-drain-%d" % os.getpid()
    tap = "pmxlb%d" % (os.getpid() % 100000)
    work = tempfile.mkdtemp(prefix="pmx-lb-drain-")
    proc = None
    try:
        wrpcap(os.path.join(work, "empty.pcap"), [], linktype=1)
        vm = lambda n: {"name": "web%d" % n, "mac": "52:54:00:00:00:0%d" % n,
                        "device": "net_pcap%d,rx_pcap=%s/empty.pcap,tx_pcap=%s/web%d.pcap" % (n + 1, work, work, n)}
        config = {
            "shared_ip": SHARED_IP,
            "uplink": {"device": "net_tap0,iface=%s" % tap, "mac": UPLINK_MAC},
            "host": {"device": "net_null0,no-rx=1"},
            "vms": [vm(1), vm(2)],
            "groups": [{"name": "web", "members": [{"vm": "web1"}, {"vm": "web2"}], "ranges": ["udp:5000"]}],
        }
        try:
            proc, log_path = start_portmux(portmux, config, work, prefix)
        except TelemetryError as e:
            fail(str(e))
        subprocess.call(["ip", "link", "set", tap, "up"])

        old, new = range(FLOWS), range(100, 100 + FLOWS)
        with Telemetry(socket_path(prefix), timeout=10) as tel:
            sendp(frames("p1", old), iface=tap, verbose=False)
            wait_counter(tel, "lb_new_flows", FLOWS)

            change(tel, "/portmux/group/member/drain,web,web1")
            if "web1:1:draining" not in tel.query("/portmux/groups")["0"]["members"]:
                fail("web1 is not shown draining: %s" % tel.query("/portmux/groups"))
            sendp(frames("p2", old) + frames("p2", new), iface=tap, verbose=False)
            wait_counter(tel, "lb_new_flows", 2 * FLOWS)
            wait_counter(tel, "lb_flow_hits", FLOWS)

            change(tel, "/portmux/group/member/drain,web,web1,off")
            change(tel, "/portmux/vm/disable,web2")
            if "web2:1:down" not in tel.query("/portmux/groups")["0"]["members"]:
                fail("web2 is not shown down: %s" % tel.query("/portmux/groups"))
            sendp(frames("p3", old) + frames("p3", new), iface=tap, verbose=False)
            wait_counter(tel, "to_vm", 5 * FLOWS)
            stats = tel.query("/portmux/stats")
            flows_in_table = tel.query("/portmux/groups,web")["flows"]

        proc.send_signal(signal.SIGTERM)
        if proc.wait(timeout=30) != 0:
            fail("portmux exited with %d" % proc.returncode)
        got = {1: received(os.path.join(work, "web1.pcap")), 2: received(os.path.join(work, "web2.pcap"))}

        def member(phase, flow):
            where = [n for n in (1, 2) if (phase, flow) in got[n]]
            if len(where) != 1 or got[where[0]][(phase, flow)] != 1:
                fail("%s flow %d reached %s" % (phase, flow, where or "no member"))
            return where[0]

        first = {f: member("p1", f) for f in old}
        on_web1 = [f for f in old if first[f] == 1]
        if not on_web1 or len(on_web1) == FLOWS:
            fail("phase 1 did not spread the flows: %d of %d on web1" % (len(on_web1), FLOWS))
        moved = [f for f in old if member("p2", f) != first[f]]
        if moved:
            fail("draining moved existing flows %s" % moved)
        to_drained = [f for f in new if member("p2", f) == 1]
        if to_drained:
            fail("new flows %s went to the draining member" % to_drained)
        not_web1 = [f for f in list(old) + list(new) if member("p3", f) != 1]
        if not_web1:
            fail("flows %s reached the down member" % not_web1)
        # The kernel's own frames on the TAP (IPv6 router solicitations...) go to the host: not counted here.
        if stats["drop_group_empty"] != 0 or stats["drop_vm_disabled"] != 0 or stats["to_vm"] != 5 * FLOWS:
            fail("packets were dropped or went astray: %s" % stats)
        if flows_in_table != 2 * FLOWS:
            fail("/portmux/groups,web counts %d flows, expected %d" % (flows_in_table, 2 * FLOWS))
        print("PASS: %d flows kept on web1 while draining, %d new flows to web2, all %d flows on web1 with web2 down"
              % (len(on_web1), FLOWS, 2 * FLOWS))
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.path.join("/var/run/dpdk", prefix), ignore_errors=True)


if __name__ == "__main__":
    main()
