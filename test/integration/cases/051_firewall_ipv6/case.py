# The firewall on IPv6: IPv6 prefixes match only IPv6, rules without an address apply to both families, the
# default `drop` applies when no rule matches, and an accepted packet is then delivered by port as usual.
from scapy.all import ICMPv6EchoRequest, IP, IPv6, TCP, UDP

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80-443"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:8080", "udp:6000"]},
    ],
    "firewall": {
        "default": "drop",
        "rules": [
            {"action": "drop", "proto": "tcp", "src": "2001:db8:bad::/48"},
            {"action": "accept", "proto": "tcp", "dst_ports": "80-443"},
            {"action": "accept", "proto": "udp", "src": "2001:db8:ffff::/48"},
            {"action": "accept", "proto": "icmpv6", "dst": SHARED_IP6 + "/128"},
        ],
    },
}


def v6(src, l4):
    return from_wire(IPv6(src=src, dst=SHARED_IP6) / l4)


to_web = [
    v6(REMOTE_IP6, TCP(sport=40000, dport=80)),
    v6("2001:db8:bad0::1", TCP(sport=40000, dport=443)),  # outside the /48 of the drop rule
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80)),  # rule 2 has no address
]
to_db = [v6(REMOTE_IP6, UDP(sport=40000, dport=6000))]
to_host = [v6(REMOTE_IP6, ICMPv6EchoRequest())]
dropped = [
    v6("2001:db8:bad::1", TCP(sport=40000, dport=80)),      # rule 1
    v6("2001:db8:bad:ffff::1", TCP(sport=40000, dport=443)),  # rule 1, last addresses of the /48
    v6(REMOTE_IP6, TCP(sport=40000, dport=8080)),            # default
    v6("2001:db8:1::1", UDP(sport=40000, dport=6000)),       # default: outside rule 3's prefix
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=6000)),  # default: rule 3 is IPv6 only
]

SEND = {"uplink": to_web + to_db + to_host + dropped}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
    "host": to_host,
}
EXPECT_STATS = {"drop_firewall": 5, "to_vm": 4, "to_host": 1}
