# The firewall runs on every packet for the shared address, whoever owns the port: a `drop` rule discards it
# (counted drop_firewall), the first matching rule wins, and protocol, source prefix and port range must all
# match. ICMP can be dropped by protocol.
from scapy.all import ICMP, IP, TCP, UDP

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "tcp:8080"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["udp:6000-6099"]},
    ],
    "firewall": {
        "default": "accept",
        "rules": [
            {"action": "accept", "proto": "tcp", "src": "203.0.113.5/32", "dst_ports": "80"},
            {"action": "drop", "proto": "tcp", "src": "203.0.113.0/24", "dst_ports": "0-1023"},
            {"action": "drop", "proto": "udp", "dst_ports": "6050-6059"},
            {"action": "drop", "proto": "icmp", "src": "203.0.113.0/24"},
            {"action": "drop", "src_ports": "6666"},
        ],
    },
}


def tcp(src, dport, sport=40000):
    return from_wire(IP(src=src, dst=SHARED_IP) / TCP(sport=sport, dport=dport))


def udp(dport, sport=40000):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=sport, dport=dport))


to_web = [
    tcp("203.0.113.5", 80),     # the first rule accepts it before the /24 drop
    tcp(REMOTE_IP, 80),         # outside the /24
    tcp("203.0.113.6", 8080),   # in the /24 but above the rule's ports
]
to_db = [udp(6049), udp(6060), udp(6000)]
to_host = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / ICMP())]
dropped = [
    tcp("203.0.113.6", 80),
    tcp("203.0.113.255", 22),   # the host's port is firewalled too
    udp(6050),
    udp(6059),
    from_wire(IP(src="203.0.113.9", dst=SHARED_IP) / ICMP()),
    udp(6000, sport=6666),      # a rule with only src_ports
    tcp(REMOTE_IP, 80, sport=6666),
]

SEND = {"uplink": to_web + to_db + to_host + dropped}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
    "host": to_host,
}
EXPECT_STATS = {"drop_firewall": 7, "to_vm": 6, "to_host": 1}
