# `unmatched: drop`: TCP/UDP to a port nobody owns is dropped and counted drop_unmatched; nothing reaches the
# host or the uplink; a VM's port still goes to the VM.
from scapy.all import IP, IPv6, TCP, UDP

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
    "unmatched": "drop",
}

dropped = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=8080)),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=80)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40000, dport=443)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40000, dport=53)),
]
to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80))]

SEND = {"uplink": dropped + to_web}
EXPECT = {"web": [with_dst(p, vm_mac(1)) for p in to_web]}
EXPECT_STATS = {"drop_unmatched": 4, "to_vm": 1, "to_host": 0, "rejected": 0, "tx_uplink": 0}
