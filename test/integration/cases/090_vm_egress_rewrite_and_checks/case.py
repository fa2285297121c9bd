# From a VM: the source MAC becomes the uplink MAC, and so do the ARP sender hardware address and the NDP
# link-layer address options (with the ICMPv6 checksum fixed); everything else is unchanged. A source address
# other than the shared one is dropped (drop_spoof_address), as is ARP for another address (drop_spoof_arp)
# and TCP/UDP from a port outside the VM's own ranges: another VM's, the host's, nobody's (drop_spoof_port).
from scapy.all import (ARP, Ether, ICMP, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr,
                       IP, IPv6, TCP, UDP, Raw)

from run_case import GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, frozen, vm_mac, with_src

WEB = vm_mac(1)
CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": WEB, "ranges": ["tcp:80", "udp:5353", "tcp:1000-1999"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432", "udp:80"]},
    ],
}


def out(l3, src=WEB, dst=GW_MAC):
    return frozen(Ether(src=src, dst=dst) / l3)


passed = [
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000, flags="SA") / Raw(b"hi")),
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=1999, dport=40000)),
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / UDP(sport=5353, dport=5353)),
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / ICMP(type=0)),
    out(IPv6(src=SHARED_IP6, dst=REMOTE_IP6) / TCP(sport=1000, dport=40000)),
]
arp_reply = out(ARP(op=2, hwsrc=WEB, psrc=SHARED_IP, hwdst=GW_MAC, pdst="192.0.2.1"))
arp_request = out(ARP(op=1, hwsrc=WEB, psrc=SHARED_IP, pdst="192.0.2.1"), dst="ff:ff:ff:ff:ff:ff")
arp_probe = out(ARP(op=1, hwsrc=WEB, psrc="0.0.0.0", pdst=SHARED_IP), dst="ff:ff:ff:ff:ff:ff")


def ns(lladdr):
    return out(IPv6(src=SHARED_IP6, dst="ff02::1:ff00:1", hlim=255) / ICMPv6ND_NS(tgt="2001:db8::1") /
               ICMPv6NDOptSrcLLAddr(lladdr=lladdr), dst="33:33:ff:00:00:01", src=WEB if lladdr == WEB else UPLINK_MAC)


def na(lladdr):
    return out(IPv6(src=SHARED_IP6, dst="fe80::fe", hlim=255) / ICMPv6ND_NA(tgt=SHARED_IP6, S=1, O=1) /
               ICMPv6NDOptDstLLAddr(lladdr=lladdr), src=WEB if lladdr == WEB else UPLINK_MAC)


spoof_port = [
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=5432, dport=40000)),  # db's port
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / UDP(sport=80, dport=40000)),    # db's for UDP (web has tcp:80)
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=22, dport=40000)),    # the host's
    out(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=2000, dport=40000)),  # nobody's
    out(IPv6(src=SHARED_IP6, dst=REMOTE_IP6) / TCP(sport=5432, dport=40000)),
]
spoof_address = [
    out(IP(src="192.0.2.99", dst=REMOTE_IP) / TCP(sport=80, dport=40000)),
    out(IP(src=REMOTE_IP, dst=REMOTE_IP) / ICMP()),
    out(IPv6(src="2001:db8::99", dst=REMOTE_IP6) / TCP(sport=80, dport=40000)),
]
spoof_arp = [out(ARP(op=2, hwsrc=WEB, psrc="192.0.2.99", hwdst=GW_MAC, pdst="192.0.2.1"))]


def arp_rewritten(frame):
    f = Ether(bytes(frame))
    f.src = UPLINK_MAC
    f[ARP].hwsrc = UPLINK_MAC
    return frozen(f)


SEND = {"web": passed + [arp_reply, arp_request, arp_probe, ns(WEB), na(WEB)] + spoof_port + spoof_address +
        spoof_arp}
EXPECT = {"uplink": [with_src(p, UPLINK_MAC) for p in passed] +
          [arp_rewritten(a) for a in (arp_reply, arp_request, arp_probe)] + [ns(UPLINK_MAC), na(UPLINK_MAC)]}
EXPECT_STATS = {"to_uplink_from_vm": 10, "drop_spoof_port": 5, "drop_spoof_address": 3, "drop_spoof_arp": 1,
                "rx_vms": 19, "tx_uplink": 10}


def CHECK(outputs, telemetry):
    web = telemetry["vms"].get("web", {})
    if web.get("dropped_spoof") != 9:
        return "/portmux/vms: web dropped_spoof=%r, expected 9" % web.get("dropped_spoof")
    return None
