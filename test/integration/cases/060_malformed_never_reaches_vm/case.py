# A packet that claims TCP/UDP for a VM's port but does not conform never reaches the VM (nor the host here:
# malformed IP is dropped) and is counted drop_malformed: bad IHL, total length beyond the frame or below the
# header, truncated TCP/UDP headers, a UDP length that lies, a TCP data offset below 5, an IPv6 payload length
# beyond the frame. Well-formed packets around them are still delivered.
from scapy.all import IP, IPv6, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "udp:5353"]}],
}


def ip4(**kw):
    return IP(src=REMOTE_IP, dst=SHARED_IP, **kw)


def ip6(**kw):
    return IPv6(src=REMOTE_IP6, dst=SHARED_IP6, **kw)


tcp_hdr = bytes(TCP(sport=40000, dport=80))
udp_hdr = bytes(UDP(sport=40000, dport=5353, len=8, chksum=0))

malformed = [
    from_wire(ip4(ihl=4) / TCP(sport=40000, dport=80)),                    # IHL below 5
    from_wire(ip4(ihl=15) / TCP(sport=40000, dport=80)),                   # IHL beyond the packet
    from_wire(ip4(len=200) / TCP(sport=40000, dport=80)),                  # total length beyond the frame
    from_wire(ip4(len=19) / TCP(sport=40000, dport=80)),                   # total length below the header
    from_wire(ip4(proto=6) / Raw(tcp_hdr[:12])),                           # truncated TCP header
    from_wire(ip4(proto=17) / Raw(udp_hdr[:6])),                           # truncated UDP header
    from_wire(ip4(len=20 + 12, proto=6) / Raw(tcp_hdr + b"payload!")),     # TCP header cut by total length
    from_wire(ip4() / UDP(sport=40000, dport=5353, len=100) / Raw(b"x" * 10)),  # UDP length beyond the payload
    from_wire(ip4() / UDP(sport=40000, dport=5353, len=4) / Raw(b"x" * 10)),    # UDP length below its header
    from_wire(ip4() / TCP(sport=40000, dport=80, dataofs=4)),                   # TCP data offset below 5
    from_wire(ip4() / TCP(sport=40000, dport=80, dataofs=15)),                  # TCP data offset beyond the packet
    from_wire(ip6(plen=500) / UDP(sport=40000, dport=5353)),                    # IPv6 payload beyond the frame
    from_wire(ip6(nh=6) / Raw(tcp_hdr[:10])),                                   # truncated TCP over IPv6
    from_wire(ip6() / UDP(sport=40000, dport=5353, len=60) / Raw(b"x" * 4)),    # UDP length lies over IPv6
]
good = [
    from_wire(ip4() / TCP(sport=40000, dport=80)),
    from_wire(ip4() / UDP(sport=40000, dport=5353) / Raw(b"ok")),
    from_wire(ip6() / UDP(sport=40000, dport=5353) / Raw(b"ok")),
]

SEND = {"uplink": [good[0]] + malformed[:7] + [good[1]] + malformed[7:] + [good[2]]}
EXPECT = {"web": [with_dst(p, vm_mac(1)) for p in good]}
EXPECT_STATS = {"drop_malformed": len(malformed), "to_vm": 3, "to_host": 0}
