# A VM started with "enabled": false: traffic for its ports is dropped and counted drop_vm_disabled (never
# leaked to the host, although `unmatched` is "host"), and so is what it sends; another VM is unaffected.
from scapy.all import IP, IPv6, TCP, UDP

from run_case import (GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, frozen, from_wire,
                      vm_mac, with_dst)
from scapy.all import Ether

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "udp:5353"], "enabled": False},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432"]},
    ],
    "unmatched": "host",
}

for_web = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80, flags="S")),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=5353)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40000, dport=80, flags="S")),
]
from_web = [
    frozen(Ether(src=vm_mac(1), dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000)),
    frozen(Ether(src=vm_mac(1), dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP) / UDP(sport=5353, dport=40000)),
]
to_db = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=5432, flags="S"))]

SEND = {"uplink": for_web + to_db, "web": from_web}
EXPECT = {"db": [with_dst(p, vm_mac(2)) for p in to_db]}
EXPECT_STATS = {"drop_vm_disabled": 5, "to_vm": 1, "to_host": 0, "tx_host": 0, "tx_uplink": 0,
                "to_uplink_from_vm": 0}


def CHECK(outputs, telemetry):
    web = telemetry["vms"].get("web", {})
    errors = []
    if web.get("enabled") != 0:
        errors.append("/portmux/vms: web enabled=%r, expected 0" % web.get("enabled"))
    if web.get("dropped_disabled") != 5:
        errors.append("/portmux/vms: web dropped_disabled=%r, expected 5" % web.get("dropped_disabled"))
    if web.get("tx_packets") != 0:
        errors.append("/portmux/vms: web tx_packets=%r, expected 0" % web.get("tx_packets"))
    return errors
