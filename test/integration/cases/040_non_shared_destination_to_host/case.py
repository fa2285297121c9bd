# IP packets whose destination is not the shared address (broadcast, multicast, another address) go to the
# host, even to a port a VM owns, under `unmatched: drop` and a firewall rule that would drop them: the
# firewall and the port table apply only to the shared address.
from scapy.all import IP, IPv6, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["udp:5353", "tcp:80", "udp:67"]}],
    "firewall": {"default": "accept", "rules": [{"action": "drop", "proto": "udp", "dst_ports": "5353"}]},
    "unmatched": "drop",
}

to_host = [
    from_wire(IP(src="0.0.0.0", dst="255.255.255.255") / UDP(sport=68, dport=67) / Raw(b"dhcp"),
              dst="ff:ff:ff:ff:ff:ff"),
    from_wire(IP(src=REMOTE_IP, dst="192.0.2.255") / UDP(sport=40000, dport=67), dst="ff:ff:ff:ff:ff:ff"),
    from_wire(IP(src=REMOTE_IP, dst="224.0.0.251") / UDP(sport=5353, dport=5353), dst="01:00:5e:00:00:fb"),
    from_wire(IP(src=REMOTE_IP, dst="192.0.2.99") / TCP(sport=40000, dport=80)),
    from_wire(IP(src=REMOTE_IP, dst="192.0.2.99") / TCP(sport=40000, dport=9999)),
    from_wire(IPv6(src="fe80::1", dst="ff02::fb") / UDP(sport=5353, dport=5353), dst="33:33:00:00:00:fb"),
    from_wire(IPv6(src=REMOTE_IP6, dst="2001:db8::99") / TCP(sport=40000, dport=80)),
]
# The same ports on the shared address: the VM's port goes to it, the firewalled one is dropped.
to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80))]
dropped = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=5353, dport=5353))]

SEND = {"uplink": to_host + to_web + dropped}
EXPECT = {"host": to_host, "web": [with_dst(p, vm_mac(1)) for p in to_web]}
EXPECT_STATS = {"to_host": 7, "to_vm": 1, "drop_firewall": 1, "drop_unmatched": 0}
