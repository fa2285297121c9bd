# A load-balanced group (extension `groups`): 400 TCP and UDP flows (IPv4 and IPv6) of three packets each
# to the group's ports reach its members, every packet of a flow the same member, and the members share the
# flows by weight (1:3). A member whose port is down (a vhost-user socket no guest attached to) gets none,
# and a group without members drops its packets (drop_group_empty). Members answer from the group's ports;
# a VM outside the group may not.
import os
from collections import defaultdict

from scapy.all import IP, IPv6, TCP, UDP, Raw

from run_case import (SHARED_IP, SHARED_IP6, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_src)

_SOCKETS = "/tmp/pmx-it-160-%d" % os.getpid()
os.makedirs(_SOCKETS, exist_ok=True)

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web1", "mac": vm_mac(1), "ranges": []},
        {"name": "web2", "mac": vm_mac(2), "ranges": []},
        {"name": "ghost", "vhost": _SOCKETS + "/ghost.sock", "vhost_mode": "server", "mac": vm_mac(3)},
        {"name": "other", "mac": vm_mac(4), "ranges": ["tcp:9000"]},
    ],
    "groups": [
        {"name": "web", "members": [{"vm": "web1", "weight": 1}, {"vm": "web2", "weight": 3},
                                    {"vm": "ghost", "weight": 3}],
         "ranges": ["tcp:80", "udp:53"]},
        {"name": "nobody", "members": [], "ranges": ["tcp:81"]},
    ],
}

FLOWS = 400
PACKETS_PER_FLOW = 3


def flow_packet(f, n):
    """Packet n of flow f: addresses, ports and protocol vary with f; the payload names the flow."""
    payload = Raw(b"flow %04d packet %d" % (f, n))
    sport = 10000 + (f * 7919) % 50000
    if f % 4 == 3:
        l3 = IPv6(src="2001:db8:ffff::%x" % (f + 1), dst=SHARED_IP6)
    else:
        l3 = IP(src="198.51.%d.%d" % (100 + f % 3, 1 + f % 250), dst=SHARED_IP)
    l4 = UDP(sport=sport, dport=53) if f % 2 else TCP(sport=sport, dport=80, flags="A")
    return from_wire(l3 / l4 / payload)


to_group = [flow_packet(f, n) for n in range(PACKETS_PER_FLOW) for f in range(FLOWS)]
to_nobody = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000 + i, dport=81)) for i in range(5)]


def from_vm(n, sport):
    return from_wire(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=sport, dport=40000, flags="SA"),
                     src=vm_mac(n), dst="02:00:00:00:00:fe")


answers_web1 = [from_vm(1, 80)]
answers_web2 = [from_vm(2, 80)]
answers_other = [from_vm(4, 80)]  # not a member: its answer from the group's port is dropped

SEND = {"uplink": to_group + to_nobody, "web1": answers_web1, "web2": answers_web2, "other": answers_other}
EXPECT = {"uplink": [with_src(p, UPLINK_MAC) for p in answers_web1 + answers_web2]}
FREE_PORTS = ("web1", "web2")
EXPECT_STATS = {
    "to_vm": FLOWS * PACKETS_PER_FLOW,
    "lb_new_flows": FLOWS,
    "lb_flow_hits": FLOWS * (PACKETS_PER_FLOW - 1),
    "lb_evictions": 0,
    "drop_group_empty": len(to_nobody),
    "drop_spoof_port": 1,
    "to_uplink_from_vm": 2,
    "drop_tx": 0,
}


def CHECK(outputs):
    problems = []
    member_of = {}
    per_member = defaultdict(set)
    for name, mac in (("web1", vm_mac(1)), ("web2", vm_mac(2))):
        for p in outputs[name]:
            if p.dst != mac:
                problems.append("%s received a frame for %s" % (name, p.dst))
            raw = bytes(p)
            flow = int(raw[raw.index(b"flow ") + 5:][:4])
            if member_of.setdefault(flow, name) != name:
                problems.append("flow %d reached both %s and %s" % (flow, member_of[flow], name))
            per_member[name].add(flow)
    counts = {name: sum(1 for p in outputs[name]) for name in ("web1", "web2")}
    if counts["web1"] + counts["web2"] != FLOWS * PACKETS_PER_FLOW:
        problems.append("members received %s packets, expected %d" % (counts, FLOWS * PACKETS_PER_FLOW))
    if len(member_of) != FLOWS:
        problems.append("%d of %d flows arrived" % (len(member_of), FLOWS))
    share = len(per_member["web2"]) / float(FLOWS)
    # Weights 1:3 (ghost is down): web2 should get 75% of the flows; 400 flows leave a few percent of noise.
    if not 0.65 <= share <= 0.85:
        problems.append("web2 got %.0f%% of the flows, expected about 75%%" % (share * 100))
    return problems
