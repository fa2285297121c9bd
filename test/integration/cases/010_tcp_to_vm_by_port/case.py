# TCP for the shared address goes to the VM that owns the destination port, its destination MAC set to the
# VM's MAC and every other byte unchanged.
from scapy.all import IP, TCP, Raw

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "tcp:443"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432"]},
    ],
}


def tcp(dport, sport=40000, payload=b""):
    flags = "PA" if payload else "S"
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=sport, dport=dport, flags=flags, seq=1000) /
                     Raw(payload))


to_web = [tcp(80), tcp(443, payload=b"GET / HTTP/1.1\r\n\r\n"), tcp(80, sport=40001, payload=b"x" * 1400)]
to_db = [tcp(5432), tcp(5432, sport=50000, payload=b"select 1;")]

SEND = {"uplink": to_web + to_db}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
}
EXPECT_STATS = {"rx_uplink": 5, "to_vm": 5, "to_host": 0, "drop_malformed": 0, "tx_vms": 5, "tx_host": 0}
