# The host's own ports reach the host whatever `unmatched` says: under "drop", tcp:22 and udp:53 (the host's)
# still go to the host while a port nobody owns is dropped.
from scapy.all import IP, IPv6, TCP, UDP

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22", "udp:53", "32768-32800"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
    "unmatched": "drop",
}

to_host = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=22, flags="S")),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=53)),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=443, dport=32768, flags="SA")),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=53, dport=32800)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40000, dport=22, flags="S")),
]
dropped = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=22)),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=32801)),
]

SEND = {"uplink": to_host + dropped}
EXPECT = {"host": to_host}
EXPECT_STATS = {"to_host": 5, "drop_unmatched": 2, "to_vm": 0}
