# Frames that are neither IP nor ARP (LLDP, an unknown EtherType) go to the host, and so do VLAN-tagged frames,
# even when the inner packet is TCP for a VM's port on the shared address.
from scapy.all import Dot1Q, Ether, IP, TCP, Raw

from run_case import GW_MAC, SHARED_IP, REMOTE_IP, UPLINK_MAC, frozen, from_wire, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
    "unmatched": "drop",
}

to_host = [
    frozen(Ether(src=GW_MAC, dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x02\x07\x04" + b"\x00" * 40)),
    frozen(Ether(src=GW_MAC, dst=UPLINK_MAC, type=0x88B5) / Raw(b"local experimental ethertype")),
    from_wire(Dot1Q(vlan=10) / IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80)),
]

SEND = {"uplink": to_host}
EXPECT = {"host": to_host}
EXPECT_STATS = {"to_host": 3, "to_vm": 0}
