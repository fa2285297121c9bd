# NDP for shared_ip6 is treated like ARP: a neighbour solicitation for it goes to the host only; neighbour
# advertisements (solicited, to the uplink MAC, or unsolicited to all-nodes) go to the host and every VM.
from scapy.all import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr, IPv6,
                       in6_getnsma, in6_getnsmac, inet_pton, inet_ntop, socket)

from run_case import GW_MAC, SHARED_IP, SHARED_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432"]},
    ],
}

GW6 = "fe80::fe"
nsma = in6_getnsma(inet_pton(socket.AF_INET6, SHARED_IP6))
ns = from_wire(IPv6(src=GW6, dst=inet_ntop(socket.AF_INET6, nsma), hlim=255) / ICMPv6ND_NS(tgt=SHARED_IP6) /
               ICMPv6NDOptSrcLLAddr(lladdr=GW_MAC), dst=in6_getnsmac(nsma))
# A unicast solicitation (neighbour unreachability detection) is still the host's.
ns_unicast = from_wire(IPv6(src=GW6, dst=SHARED_IP6, hlim=255) / ICMPv6ND_NS(tgt=SHARED_IP6))
na_solicited = from_wire(IPv6(src=GW6, dst=SHARED_IP6, hlim=255) / ICMPv6ND_NA(tgt=GW6, R=1, S=1, O=1) /
                         ICMPv6NDOptDstLLAddr(lladdr=GW_MAC))
na_unsolicited = from_wire(IPv6(src=GW6, dst="ff02::1", hlim=255) / ICMPv6ND_NA(tgt=GW6, R=1, S=0, O=1) /
                           ICMPv6NDOptDstLLAddr(lladdr=GW_MAC), dst="33:33:00:00:00:01")

SEND = {"uplink": [ns, ns_unicast, na_solicited, na_unsolicited]}
EXPECT = {
    "host": [ns, ns_unicast, na_solicited, na_unsolicited],
    "web": [with_dst(na_solicited, vm_mac(1)), na_unsolicited],
    "db": [with_dst(na_solicited, vm_mac(2)), na_unsolicited],
}
EXPECT_STATS = {"flooded": 2, "to_host": 2, "to_vm": 0}
