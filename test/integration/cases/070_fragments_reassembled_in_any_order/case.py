# A fragmented TCP/UDP datagram for a VM's port reaches that VM whole whatever order its fragments arrive in:
# IPv4 and IPv6, fragments shuffled and interleaved between datagrams. A datagram of at most 1500 bytes of IP
# arrives reassembled (byte for byte the datagram the sender fragmented); a 3000-byte one arrives as fragments
# of at most 1500 bytes of IP again, which reassemble to the sender's datagram.
from scapy.all import (IP, IPv6, IPv6ExtHdrFragment, TCP, UDP, Raw, defragment, defragment6, fragment,
                       fragment6)

from run_case import GW_MAC, SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, frozen, from_wire, \
    vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["udp:5000", "tcp:80"]},
        {"name": "big", "mac": vm_mac(2), "ranges": ["udp:6000"]},
    ],
    "unmatched": "drop",
}


def payload(n, seed):
    return bytes((seed + i * 7) & 0xFF for i in range(n))


def frags4(datagram, size):
    return [from_wire(f) for f in fragment(datagram[IP], fragsize=size)]


def frags6(datagram, size, ident):
    # The same datagram with a fragment header, cut by scapy; reassembly removes the header again.
    ip6 = datagram[IPv6]
    with_fh = IPv6(src=ip6.src, dst=ip6.dst, hlim=ip6.hlim) / IPv6ExtHdrFragment(nh=ip6.nh, id=ident) / \
        Raw(bytes(ip6.payload))
    return [from_wire(f) for f in fragment6(with_fh, size)]


def pick(frags, order):
    assert sorted(order) == list(range(len(frags))), "order must use every fragment once"
    return [frags[i] for i in order]


small4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x1234) / UDP(sport=40000, dport=5000) /
                   Raw(payload(1000, 1)))
small4_tcp = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x2345) / TCP(sport=40001, dport=80, flags="PA") /
                       Raw(payload(600, 2)))
small6 = from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40002, dport=5000) / Raw(payload(1100, 3)))
big4 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP, id=0x3456) / UDP(sport=40003, dport=6000) /
                 Raw(payload(3000 - 28, 4)))
big6 = from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / UDP(sport=40004, dport=6000) / Raw(payload(3000, 5)))

f_small4 = pick(frags4(small4, 400), [2, 0, 1])
f_small4_tcp = pick(frags4(small4_tcp, 256), [1, 2, 0])
f_small6 = pick(frags6(small6, 600, 0x11), [2, 0, 1])
f_big4 = pick(frags4(big4, 1000), [1, 2, 0])
f_big6 = pick(frags6(big6, 1280, 0x22), [2, 0, 1])

# Interleaved: every datagram is still incomplete when the next one starts.
SEND = {"uplink": [f for group in zip(f_small4, f_big4, f_small6, f_small4_tcp, f_big6) for f in group]}
assert len(SEND["uplink"]) == 15

EXPECT = {"web": [with_dst(p, vm_mac(1)) for p in (small4, small4_tcp, small6)]}
FREE_PORTS = ["big"]  # checked by CHECK: fragments whose exact cut is the switch's choice
EXPECT_STATS = {"reassembled": 5, "fragments_held": 10, "to_vm": 5, "to_host": 0, "drop_fragment": 0,
                "drop_unmatched": 0}


def CHECK(outputs):
    errors = []
    frames = outputs["big"]
    for f in frames:
        if f.dst != vm_mac(2) or f.src != GW_MAC:
            errors.append("big: frame %s -> %s, expected %s -> %s" % (f.src, f.dst, GW_MAC, vm_mac(2)))
    v4 = [f for f in frames if IP in f]
    v6 = [f for f in frames if IPv6 in f]
    if len(v4) + len(v6) != len(frames):
        errors.append("big: frames that are neither IPv4 nor IPv6")
    for f in v4:
        if f[IP].len > 1500 or not (f[IP].flags.MF or f[IP].frag):
            errors.append("big: IPv4 frame of %d bytes of IP that is not a fragment of at most 1500"
                          % f[IP].len)
    for f in v6:
        if 40 + f[IPv6].plen > 1500 or IPv6ExtHdrFragment not in f:
            errors.append("big: IPv6 frame of %d bytes of IP that is not a fragment of at most 1500"
                          % (40 + f[IPv6].plen))
    whole4 = [p for p in defragment([f[IP] for f in v4]) if IP in p]
    if len(whole4) != 1:
        errors.append("big: IPv4 fragments reassemble to %d datagrams, expected 1" % len(whole4))
    else:
        got, want = whole4[0], big4[IP]
        if (got.src, got.dst, got.proto, got.id) != (want.src, want.dst, want.proto, want.id):
            errors.append("big: IPv4 datagram %s, expected %s" % (got.summary(), want.summary()))
        if bytes(got.payload) != bytes(want.payload):
            errors.append("big: IPv4 payload of %d bytes differs from the %d sent"
                          % (len(bytes(got.payload)), len(bytes(want.payload))))
    if not v6:
        errors.append("big: no IPv6 fragments")
    else:
        got = defragment6([frozen(f)[IPv6] for f in v6])
        want = big6[IPv6]
        if (got.src, got.dst) != (want.src, want.dst) or bytes(got.payload) != bytes(want.payload):
            errors.append("big: IPv6 fragments reassemble to %s (%d bytes of payload), expected %s (%d)"
                          % (got.summary(), len(bytes(got.payload)), want.summary(), len(bytes(want.payload))))
    return errors
