# With two workers (so ports' transmit queues are shared through hand-off rings), every frame still reaches
# the right port exactly once, in both directions.
from scapy.all import Ether, IP, TCP, UDP, Raw

from run_case import GW_MAC, SHARED_IP, REMOTE_IP, UPLINK_MAC, frozen, from_wire, vm_mac, with_dst, with_src

EAL = ["--lcores", "0@0,1@1,2@0"]
CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["udp:6000-6099"]},
    ],
}

to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000 + i, dport=80) / Raw(bytes([i]) * 64))
          for i in range(40)]
to_db = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=6000 + i)) for i in range(40)]
to_host = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000 + i, dport=22)) for i in range(10)]
from_web = [frozen(Ether(src=vm_mac(1), dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP) /
                   TCP(sport=80, dport=50000 + i)) for i in range(30)]
from_host = [frozen(Ether(src=UPLINK_MAC, dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP) /
                    TCP(sport=22, dport=50000 + i)) for i in range(30)]

SEND = {
    "uplink": [p for trio in zip(to_web, to_db) for p in trio] + to_host,
    "web": from_web,
    "host": from_host,
}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
    "host": to_host,
    "uplink": [with_src(p, UPLINK_MAC) for p in from_web] + from_host,
}
EXPECT_STATS = {"to_vm": 80, "to_host": 10, "to_uplink_from_vm": 30, "to_uplink_from_host": 30, "drop_tx": 0}
