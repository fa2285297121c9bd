# IPv6 for shared_ip6 goes to the VM that owns the TCP/UDP destination port; other IPv6 destinations and
# ports nobody owns go to the host.
from scapy.all import IPv6, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "tcp:443", "udp:443"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:8080-8090"]},
    ],
}


def v6(l4, dst=SHARED_IP6, src=REMOTE_IP6):
    return from_wire(IPv6(src=src, dst=dst) / l4)


to_web = [
    v6(TCP(sport=40000, dport=80, flags="S")),
    v6(TCP(sport=40000, dport=443) / Raw(b"x" * 1200)),
    v6(UDP(sport=40000, dport=443) / Raw(b"quic")),
]
to_db = [v6(TCP(sport=40000, dport=8080)), v6(TCP(sport=40000, dport=8090), src="2001:db8:1::1")]
to_host = [
    v6(TCP(sport=40000, dport=8091)),
    v6(UDP(sport=40000, dport=80)),
    v6(TCP(sport=40000, dport=80), dst="2001:db8::11"),
]

SEND = {"uplink": to_web + to_db + to_host}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
    "host": to_host,
}
EXPECT_STATS = {"to_vm": 5, "to_host": 3}
