# An IPv4 header whose checksum is wrong is malformed: from the uplink it reaches neither a VM nor the host,
# from a VM it does not reach the wire; each is counted drop_malformed. That holds with IPv4 options, for a
# fragment (which is then not reassembled: its datagram never completes) and for a header whose only fault is
# the checksum field itself. Right checksums around them, a datagram reassembled from good fragments among
# them, and IPv6 are delivered as before.
from scapy.all import Ether, IP, IPv6, TCP, UDP, Raw, fragment

from run_case import GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, frozen, from_wire, vm_mac, with_dst, with_src

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", "udp:5353"]}],
}


def ip4(**kw):
    return IP(src=REMOTE_IP, dst=SHARED_IP, **kw)


def wrong_checksum(frame):
    """The same frame with its (right) IPv4 header checksum changed by one bit."""
    raw = bytearray(bytes(frame))
    raw[24] ^= 0x01
    return Ether(bytes(raw))


def checksum_field(frame):
    return bytes(frame)[24:26]


good = [
    from_wire(ip4() / TCP(sport=40000, dport=80)),
    from_wire(ip4(options=b"\x94\x04\x00\x00") / TCP(sport=40001, dport=80)),  # router alert
    from_wire(ip4() / UDP(sport=40000, dport=5353) / Raw(b"ok")),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40000, dport=5353) / Raw(b"v6")),
]
to_host = from_wire(ip4() / TCP(sport=40000, dport=22))

datagram = ip4(id=0x4242) / UDP(sport=40002, dport=5353) / Raw(b"r" * 64)
good_fragments = [from_wire(f) for f in fragment(datagram, fragsize=32)]
bad_datagram = ip4(id=0x4343) / UDP(sport=40003, dport=5353) / Raw(b"b" * 64)
bad_fragments = [from_wire(f) for f in fragment(bad_datagram, fragsize=32)]

bad = [
    wrong_checksum(good[0]),
    wrong_checksum(good[1]),                                            # with options
    wrong_checksum(good[2]),
    wrong_checksum(to_host),                                            # not even the host gets it
    from_wire(ip4(chksum=0) / TCP(sport=40000, dport=80)),              # zero is no "not computed" in IPv4
    wrong_checksum(bad_fragments[0]),                                   # the first fragment
]
assert all(checksum_field(b) != checksum_field(g) for b, g in zip(bad[:4], good[:3] + [to_host]))

# The reassembled datagram leaves as portmux rebuilds it: one frame, the header checksum computed anew.
whole = from_wire(IP(bytes(datagram)))

# From the VM: a reply with a right checksum leaves, the same with a wrong one is dropped.
reply = frozen(Ether(src=vm_mac(1), dst=GW_MAC) / IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000, flags="SA"))

SEND = {
    "uplink": [good[0], bad[0], good[1], bad[1], bad[2], to_host, bad[3], good[2], bad[4], good[3]]
              + good_fragments + [bad[5]] + bad_fragments[1:],
    "web": [reply, wrong_checksum(reply)],
}
EXPECT = {
    "web": [with_dst(p, vm_mac(1)) for p in good] + [with_dst(whole, vm_mac(1))],
    "host": [to_host],
    "uplink": [with_src(reply, UPLINK_MAC)],
}
EXPECT_STATS = {"drop_malformed": len(bad) + 1, "to_vm": len(good) + 1, "to_host": 1, "reassembled": 1}
