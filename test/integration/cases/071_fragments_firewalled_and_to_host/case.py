# Fragments cannot bypass the firewall or the port table: a fragmented datagram to a firewalled port is
# dropped as a whole (no fragment reaches the VM, whatever order they come in), and a fragmented datagram for
# a port the host owns, or nobody owns, reaches the host whole.
from scapy.all import IP, IPv6, IPv6ExtHdrFragment, UDP, Raw, fragment, fragment6

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["udp:53"]},
    "vms": [{"name": "app", "mac": vm_mac(1), "ranges": ["udp:7000-7010"]}],
    "firewall": {"default": "accept", "rules": [{"action": "drop", "proto": "udp", "dst_ports": "7000"}]},
}


def frags4(datagram, size):
    return [from_wire(f) for f in fragment(datagram[IP], fragsize=size)]


def frags6(datagram, size, ident):
    ip6 = datagram[IPv6]
    with_fh = IPv6(src=ip6.src, dst=ip6.dst) / IPv6ExtHdrFragment(nh=ip6.nh, id=ident) / Raw(bytes(ip6.payload))
    return [from_wire(f) for f in fragment6(with_fh, size)]


blocked4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x501) / UDP(sport=40000, dport=7000) / Raw(b"a" * 900))
blocked6 = from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40000, dport=7000) / Raw(b"b" * 900))
host4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x502) / UDP(sport=40000, dport=53) / Raw(b"c" * 900))
nobody4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x503) / UDP(sport=40000, dport=9999) / Raw(b"d" * 900))

f_blocked4 = frags4(blocked4, 400)
f_blocked6 = frags6(blocked6, 500, 0x77)
f_host4 = frags4(host4, 400)
f_nobody4 = frags4(nobody4, 400)

SEND = {"uplink": f_blocked4[::-1] + f_blocked6[1:] + f_blocked6[:1] + f_host4[1:] + f_host4[:1] + f_nobody4}
EXPECT = {"host": [host4, nobody4]}
EXPECT_STATS = {"reassembled": 4, "drop_firewall": 2, "to_host": 2, "to_vm": 0, "tx_vms": 0}
