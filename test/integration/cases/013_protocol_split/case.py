# The same port number belongs to one VM for TCP and to another for UDP.
from scapy.all import IP, TCP, UDP

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "tcpvm", "mac": vm_mac(1), "ranges": ["tcp:53", "tcp:7000-7100"]},
        {"name": "udpvm", "mac": vm_mac(2), "ranges": ["udp:53", "udp:7000-7100"]},
    ],
}


def tcp(dport):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=dport))


def udp(dport):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=dport))


tcps = [tcp(53), tcp(7000), tcp(7050), tcp(7100)]
udps = [udp(53), udp(7000), udp(7050), udp(7100)]

SEND = {"uplink": [p for pair in zip(tcps, udps) for p in pair]}
EXPECT = {
    "tcpvm": [with_dst(p, vm_mac(1)) for p in tcps],
    "udpvm": [with_dst(p, vm_mac(2)) for p in udps],
}
EXPECT_STATS = {"to_vm": 8, "to_host": 0}
