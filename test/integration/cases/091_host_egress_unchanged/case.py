# From the host: every frame leaves the uplink unchanged, whatever its addresses or ports (the host port has
# the uplink's MAC already, and no egress check applies to it).
from scapy.all import ARP, Ether, ICMPv6ND_NA, ICMPv6NDOptDstLLAddr, IP, IPv6, TCP, UDP, Raw

from run_case import GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, frozen, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
}


def out(l3, src=UPLINK_MAC, dst=GW_MAC):
    return frozen(Ether(src=src, dst=dst) / l3)


from_host = [
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=22, dport=40000, flags="SA")),
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000)),          # a VM's port
    out(IP(src="192.0.2.99", dst=REMOTE_IP) / UDP(sport=9, dport=9)),            # another source address
    out(ARP(op=2, hwsrc=UPLINK_MAC, psrc=SHARED_IP, hwdst=GW_MAC, pdst="192.0.2.1")),
    out(IPv6(src=SHARED_IP6, dst="fe80::fe", hlim=255) / ICMPv6ND_NA(tgt=SHARED_IP6, S=1) /
        ICMPv6NDOptDstLLAddr(lladdr=UPLINK_MAC)),
    out(IPv6(src="fe80::1", dst=REMOTE_IP6) / UDP(sport=546, dport=547)),
    frozen(Ether(src="02:11:22:33:44:55", dst="01:80:c2:00:00:0e", type=0x88CC) / Raw(b"\x00" * 46)),
]

SEND = {"host": from_host}
EXPECT = {"uplink": from_host}
ORDERED = True  # one port to one port: the order is kept
EXPECT_STATS = {"to_uplink_from_host": 7, "rx_host": 7, "tx_uplink": 7, "drop_spoof_address": 0,
                "drop_spoof_port": 0}
