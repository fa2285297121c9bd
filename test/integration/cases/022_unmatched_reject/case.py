# `unmatched: reject`: TCP to a port nobody owns is answered with a RST (RFC 9293: <SEQ=SEG.ACK><CTL=RST> for a
# segment with ACK, else <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>), UDP with ICMP port unreachable (type 3
# code 3, quoting the IP header and 8 bytes) or ICMPv6 port unreachable (type 1 code 4, quoting the packet),
# out of the uplink, from the shared address and the uplink MAC to the sender. A RST is never answered, nor a
# packet from a multicast source; both are counted drop_unmatched.
from scapy.all import Ether, ICMP, ICMPv6DestUnreach, IP, IPv6, TCP, UDP, Raw

from run_case import (GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac,
                      with_dst, frozen)

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
    "unmatched": "reject",
}


def answer4(l4):
    # The switch's answers: no IP ID, DF, TTL 64, TCP window 0 and no options.
    return frozen(Ether(src=UPLINK_MAC, dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP, id=0, flags="DF", ttl=64) / l4)


def answer6(l4):
    return frozen(Ether(src=UPLINK_MAC, dst=GW_MAC) / IPv6(src=SHARED_IP6, dst=REMOTE_IP6, hlim=64) / l4)


syn = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=8080, flags="S", seq=1000))
ack_data = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) /
                     TCP(sport=40001, dport=8081, flags="PA", seq=5000, ack=777777) / Raw(b"hello"))
fin_data = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40002, dport=8082, flags="F", seq=9000) /
                     Raw(b"abc"))
udp4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40003, dport=9999) / Raw(b"0123456789abcdef"))
syn6 = from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / TCP(sport=40004, dport=8080, flags="S", seq=42))
udp6 = from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40005, dport=9999) / Raw(b"q" * 100))
rst = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40006, dport=8080, flags="R", seq=1))
multicast_src = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40007, dport=9999),
                          src="01:00:5e:00:00:01")
to_host = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40008, dport=22, flags="S"))]
to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40009, dport=80, flags="S"))]

answers = [
    answer4(TCP(sport=8080, dport=40000, seq=0, ack=1001, flags="RA", window=0)),
    answer4(TCP(sport=8081, dport=40001, seq=777777, ack=0, flags="R", window=0)),
    answer4(TCP(sport=8082, dport=40002, seq=0, ack=9000 + 3 + 1, flags="RA", window=0)),
    answer4(ICMP(type=3, code=3) / Raw(bytes(udp4[IP])[:28])),
    answer6(TCP(sport=8080, dport=40004, seq=0, ack=43, flags="RA", window=0)),
    answer6(ICMPv6DestUnreach(code=4) / Raw(bytes(udp6[IPv6]))),
]

SEND = {"uplink": [syn, ack_data, fin_data, udp4, syn6, udp6, rst, multicast_src] + to_host + to_web}
EXPECT = {
    "uplink": answers,
    "host": to_host,
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
}
EXPECT_STATS = {"rejected": 6, "drop_unmatched": 2, "to_host": 1, "to_vm": 1, "tx_uplink": 6}
