# UDP for the shared address goes to the VM that owns the destination port (ranges given per protocol and
# for both protocols), with the VM's MAC as destination.
from scapy.all import IP, UDP, Raw

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["udp:53"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["udp:5353", "1000-1010"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["udp:6000-6099"]},
    ],
}


def udp(dport, sport=33000, payload=b"ping"):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=sport, dport=dport) / Raw(payload))


to_web = [udp(5353), udp(1000), udp(1010, payload=b"y" * 1000)]
to_db = [udp(6000), udp(6050), udp(6099, sport=53)]

SEND = {"uplink": [to_web[0], to_db[0], to_web[1], to_db[1], to_web[2], to_db[2]]}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
}
EXPECT_STATS = {"rx_uplink": 6, "to_vm": 6, "to_host": 0}
