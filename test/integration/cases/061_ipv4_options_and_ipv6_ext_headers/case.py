# IPv4 options and IPv6 extension headers (hop-by-hop, destination options, routing) are walked to find the
# TCP/UDP header: the packet goes to the VM that owns its destination port, unchanged but for the MAC.
from scapy.all import (IP, IPOption_NOP, IPOption_RR, IPOption_Router_Alert, IPv6, IPv6ExtHdrDestOpt,
                       IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, TCP, UDP, Raw)

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]},
        {"name": "dns", "mac": vm_mac(2), "ranges": ["udp:53"]},
    ],
    "unmatched": "drop",
}

to_web = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, options=[IPOption_RR(routers=["0.0.0.0"] * 3)]) /
              TCP(sport=40000, dport=80)),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, options=[IPOption_NOP()] * 40) / TCP(sport=40000, dport=80)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() /
              TCP(sport=40000, dport=80)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / IPv6ExtHdrRouting(addresses=[], segleft=0) /
              IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=80) / Raw(b"data")),
]
to_dns = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, options=[IPOption_Router_Alert()]) /
              UDP(sport=40000, dport=53) / Raw(b"q")),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / IPv6ExtHdrHopByHop() / UDP(sport=40000, dport=53)),
]

SEND = {"uplink": to_web + to_dns}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "dns": [with_dst(p, vm_mac(2)) for p in to_dns],
}
EXPECT_STATS = {"to_vm": 6, "to_host": 0, "drop_unmatched": 0, "drop_malformed": 0}
