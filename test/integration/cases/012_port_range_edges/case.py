# Range edges: port 0 and 65535, and the last port of one VM's range next to the first port of another VM's
# range, for TCP and UDP; a port just outside every range goes to the host.
from scapy.all import IP, TCP, UDP

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "a", "mac": vm_mac(1), "ranges": ["0-99"]},
        {"name": "b", "mac": vm_mac(2), "ranges": ["100-200"]},
        {"name": "c", "mac": vm_mac(3), "ranges": ["201-201", "65000-65535"]},
    ],
}


def tcp(dport):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=dport))


def udp(dport):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=dport))


to_a = [tcp(0), udp(0), tcp(99), udp(99)]
to_b = [tcp(100), udp(100), tcp(200), udp(200)]
to_c = [tcp(201), udp(201), tcp(65000), udp(65000), tcp(65535), udp(65535)]
to_host = [tcp(202), udp(202), tcp(64999), udp(64999)]

SEND = {"uplink": to_a + to_b + to_c + to_host}
EXPECT = {
    "a": [with_dst(p, vm_mac(1)) for p in to_a],
    "b": [with_dst(p, vm_mac(2)) for p in to_b],
    "c": [with_dst(p, vm_mac(3)) for p in to_c],
    "host": to_host,
}
EXPECT_STATS = {"to_vm": 14, "to_host": 4}
