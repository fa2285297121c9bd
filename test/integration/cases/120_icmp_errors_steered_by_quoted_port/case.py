# ICMP errors about packets a VM sent (fragmentation needed / packet too big, port unreachable, time
# exceeded) go to the VM that owns the quoted packet's source port, so path-MTU discovery works inside VMs.
# Errors about the host's packets, echo requests and errors quoting another address stay with the host.
from scapy.all import ICMP, IP, IPv6, TCP, UDP, ICMPv6PacketTooBig, ICMPv6DestUnreach, ICMPv6EchoRequest

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

SHARED_IP6 = "2001:db8::10"
REMOTE_IP6 = "2001:db8:1::7"
ROUTER = "203.0.113.1"
ROUTER6 = "2001:db8:2::1"

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:40000-40999", "udp:40000-40999"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:41000-41999"]},
    ],
    "unmatched": "drop",
}


def quoted4(l4):
    return IP(src=SHARED_IP, dst=REMOTE_IP) / l4


def error4(icmp, quote):
    return from_wire(IP(src=ROUTER, dst=SHARED_IP) / icmp / bytes(quote)[:28])


def error6(icmp, quote):
    return from_wire(IPv6(src=ROUTER6, dst=SHARED_IP6) / icmp / bytes(quote))


to_web = [
    error4(ICMP(type=3, code=4, nexthopmtu=1400), quoted4(TCP(sport=40123, dport=443, flags="PA"))),
    error4(ICMP(type=3, code=3), quoted4(UDP(sport=40500, dport=53))),
    error4(ICMP(type=11, code=0), quoted4(UDP(sport=40501, dport=33434))),
    error6(ICMPv6PacketTooBig(mtu=1280), IPv6(src=SHARED_IP6, dst=REMOTE_IP6) / TCP(sport=40124, dport=443)),
]
to_db = [
    error4(ICMP(type=3, code=4, nexthopmtu=1400), quoted4(TCP(sport=41000, dport=5432, flags="PA"))),
    error6(ICMPv6DestUnreach(code=4), IPv6(src=SHARED_IP6, dst=REMOTE_IP6) / TCP(sport=41999, dport=443)),
]
to_host = [
    error4(ICMP(type=3, code=4, nexthopmtu=1400), quoted4(TCP(sport=22, dport=50000, flags="PA"))),  # host's port
    error4(ICMP(type=3, code=3), quoted4(UDP(sport=5000, dport=53))),  # nobody's port: still ICMP, the host's
    error4(ICMP(type=3, code=3), IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40500, dport=53)),  # not our packet
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / ICMP(type=8) / b"ping"),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / ICMPv6EchoRequest(data=b"ping")),
]

SEND = {"uplink": to_web + to_db + to_host}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in to_web],
    "db": [with_dst(p, vm_mac(2)) for p in to_db],
    "host": to_host,
}
EXPECT_STATS = {"rx_uplink": 11, "to_vm": 6, "to_host": 5, "drop_malformed": 0, "drop_unmatched": 0}
