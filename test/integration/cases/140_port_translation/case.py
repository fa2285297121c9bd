# Port translation (extension): a VM owning "tcp:8080-8089->80-89" receives port 8080 + i as 80 + i, and its
# answers from 80 + i leave as 8080 + i; TCP/UDP checksums are updated, every other byte is unchanged. The
# firewall sees the outer ports; untranslated ranges of the same VM pass untouched.
from scapy.all import IP, IPv6, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst, with_src

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:8080-8089->80-89", "udp:5353->53", "tcp:443"]},
    ],
    "firewall": {"rules": [{"action": "drop", "proto": "tcp", "dst_ports": "8089"}]},
}


def rebuilt(pkt):
    """The same frame with its transport checksum computed again by scapy."""
    pkt = pkt.copy()
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    del l4.chksum
    return pkt.__class__(bytes(pkt))


def ported(pkt, sport=None, dport=None):
    pkt = pkt.copy()
    l4 = pkt[TCP] if TCP in pkt else pkt[UDP]
    if sport is not None:
        l4.sport = sport
    if dport is not None:
        l4.dport = dport
    return rebuilt(pkt)


def inbound(l3):
    return from_wire(l3)


in_tcp = inbound(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=8080, flags="PA") / Raw(b"GET /"))
in_tcp_last = inbound(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40001, dport=8088, flags="S"))
in_tcp6 = inbound(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40002, dport=8081, flags="S"))
in_udp = inbound(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40003, dport=5353) / Raw(b"query"))
in_plain = inbound(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40004, dport=443, flags="S"))
in_blocked = inbound(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40005, dport=8089, flags="S"))


def from_web(l3):
    return from_wire(l3, src=vm_mac(1), dst="02:00:00:00:00:fe")


out_tcp = from_web(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000, flags="SA") / Raw(b"200 OK"))
out_tcp6 = from_web(IPv6(src=SHARED_IP6, dst=REMOTE_IP6) / TCP(sport=81, dport=40002, flags="SA"))
out_udp = from_web(IP(src=SHARED_IP, dst=REMOTE_IP) / UDP(sport=53, dport=40003) / Raw(b"answer"))
out_plain = from_web(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=443, dport=40004, flags="SA"))
out_outer = from_web(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=8080, dport=40000, flags="A"))  # already outer

SEND = {"uplink": [in_tcp, in_tcp_last, in_tcp6, in_udp, in_plain, in_blocked],
        "web": [out_tcp, out_tcp6, out_udp, out_plain, out_outer]}
EXPECT = {
    "web": [with_dst(ported(in_tcp, dport=80), vm_mac(1)), with_dst(ported(in_tcp_last, dport=88), vm_mac(1)),
            with_dst(ported(in_tcp6, dport=81), vm_mac(1)), with_dst(ported(in_udp, dport=53), vm_mac(1)),
            with_dst(in_plain, vm_mac(1))],
    "uplink": [with_src(ported(out_tcp, sport=8080), UPLINK_MAC), with_src(ported(out_tcp6, sport=8081), UPLINK_MAC),
               with_src(ported(out_udp, sport=5353), UPLINK_MAC), with_src(out_plain, UPLINK_MAC),
               with_src(out_outer, UPLINK_MAC)],
}
EXPECT_STATS = {"rx_uplink": 6, "to_vm": 5, "drop_firewall": 1, "to_uplink_from_vm": 5, "drop_spoof_port": 0}
