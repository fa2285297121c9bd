# With the default `unmatched` ("host"), TCP/UDP to a port nobody owns reaches the host unchanged, and so does
# the host's own port; a VM's port still goes to the VM.
from scapy.all import IP, IPv6, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
}

to_host = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=8080)),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40000, dport=80) / Raw(b"udp:80 is nobody's")),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=22)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40000, dport=8080)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40000, dport=65535)),
]
to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80))]

SEND = {"uplink": to_host + to_web}
EXPECT = {"host": to_host, "web": [with_dst(p, vm_mac(1)) for p in to_web]}
EXPECT_STATS = {"to_host": 5, "to_vm": 1, "drop_unmatched": 0, "rejected": 0}
