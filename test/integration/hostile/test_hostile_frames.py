#!/usr/bin/python3
"""Hostile traffic neither crashes portmux nor reaches a VM, and every frame is accounted for.

A corpus of malformed and unusual frames (every truncation point of Ethernet/VLAN/IPv4/IPv6/TCP/UDP headers,
IHL and length lies, overlapping and out-of-order fragments, long/truncated/unknown IPv6 extension header
chains, ports 0 and 65535, ARP of odd lengths, runts and jumbo-ish frames) is replayed through the real binary
on the uplink and, rewritten as a VM's transmit, from a VM port (net_pcap). Then:
- portmux exits 0 on SIGTERM;
- every frame a VM port emitted is well-formed IPv4/IPv6 TCP/UDP to the shared address with that VM's MAC, or
  an ARP / neighbour advertisement flood copy; every frame leaving the uplink carries the uplink MAC and, when
  it is a VM's TCP/UDP, a source port of that VM;
- /portmux/stats accounts for every frame: on the uplink, rx = to_vm + to_host + flooded + rejected + every
  drop_* but drop_tx + fragments_held; from the VM, rx = to_uplink_from_vm + the VM's egress drops.

Usage: test_hostile_frames.py PORTMUX [--keep]
"""

import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import telemetry  # noqa: E402
from run_case import read_pcap, write_pcap  # noqa: E402

from scapy.all import (ARP, Dot1Q, Ether, ICMP, ICMPv6ND_NA, ICMPv6PacketTooBig, ICMPv6NDOptDstLLAddr, IP, IPv6,  # noqa: E402
                       IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, Raw, TCP,
                       UDP, checksum, fragment, fragment6)

SHARED_IP, SHARED_IP6 = "192.0.2.10", "2001:db8::10"
PEER_IP, PEER_IP6 = "198.51.100.7", "2001:db8:ffff::7"
UPLINK_MAC, GW_MAC = "02:00:00:00:0a:01", "02:00:00:00:00:fe"
VM_MACS = {"vm1": "52:54:00:12:34:01", "vm2": "52:54:00:12:34:02"}
# vm1 owns the low ports (and TCP 65535): most hostile frames aim at its ports; vm2 owns UDP 65535.
VM_RANGES = {"vm1": ["0-99", "tcp:65535"], "vm2": ["1000-1999", "udp:65535"]}
VM1_PORTS = {"tcp": set(range(0, 100)) | {65535}, "udp": set(range(0, 100))}
MTU = 1500

random.seed(7)


# ---------------------------------------------------------------------------------------------------------
# The corpus.

def truncations(frame, stop=None):
    """Every prefix of `frame` up to `stop` bytes (default: all of it but the last byte)."""
    data = bytes(frame)
    stop = len(data) if stop is None else min(stop, len(data))
    return [data[:n] for n in range(0, stop)]


def with_ip4(l4, **kw):
    return IP(src=kw.pop("src", PEER_IP), dst=kw.pop("dst", SHARED_IP), **kw) / l4


def with_ip6(l4, **kw):
    return IPv6(src=kw.pop("src", PEER_IP6), dst=kw.pop("dst", SHARED_IP6), **kw) / l4


def raw_bytes(pkt):
    return bytes(pkt)


def patch(data, offset, fmt, value):
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def hostile_l3(sport, dport):
    """Malformed and unusual IP packets (no Ethernet header), as lists of bytes."""
    out = []
    tcp = TCP(sport=sport, dport=dport, flags="S", seq=1000) / Raw(b"hostile!")
    udp = UDP(sport=sport, dport=dport) / Raw(b"hostile datagram")
    good4t, good4u = raw_bytes(with_ip4(tcp)), raw_bytes(with_ip4(udp))
    good6t, good6u = raw_bytes(with_ip6(tcp)), raw_bytes(with_ip6(udp))
    # IHL lies: every value, with a correct header checksum so only the length is wrong.
    for ihl in range(16):
        out.append(raw_bytes(with_ip4(tcp, ihl=ihl)))
    # Total length lies.
    for total in (0, 1, 19, 20, 21, 39, 40, len(good4t) - 1, len(good4t) + 1, 1500, 65535):
        out.append(raw_bytes(with_ip4(tcp, len=total)))
        out.append(raw_bytes(with_ip4(udp, len=total)))
    # IPv4 options: valid, truncated option, option length zero / beyond the header.
    for opts in (b"\x01\x01\x01\x00", b"\x07\x27" + b"\x00" * 6, b"\x83\x00\x00\x00", b"\x94\xff\x00\x00",
                 b"\x44" + b"\x00" * 39):
        out.append(raw_bytes(with_ip4(tcp, options=opts)))
    # TCP data offset lies, UDP length lies.
    for off in range(16):
        out.append(raw_bytes(with_ip4(TCP(sport=sport, dport=dport, dataofs=off) / Raw(b"p" * 8))))
        out.append(raw_bytes(with_ip6(TCP(sport=sport, dport=dport, dataofs=off) / Raw(b"p" * 8))))
    for ulen in (0, 1, 7, 8, 9, len(udp) - 1, len(udp) + 1, 65535):
        out.append(raw_bytes(with_ip4(UDP(sport=sport, dport=dport, len=ulen) / Raw(b"hostile datagram"))))
        out.append(raw_bytes(with_ip6(UDP(sport=sport, dport=dport, len=ulen) / Raw(b"hostile datagram"))))
    # IPv6 payload length lies, wrong version nibbles.
    for plen in (0, 1, 7, 8, len(good6u) - 41, len(good6u) - 39, 1500, 65535):
        out.append(raw_bytes(with_ip6(udp, plen=plen)))
    out.append(patch(good4t, 0, "B", 0x65))  # version 6 in an IPv4 ethertype
    out.append(patch(good6t, 0, "B", 0x45))  # version 4 in an IPv6 ethertype
    # Ports 0 and 65535 (well-formed: they are ordinary ports of vm1/vm2 or nobody).
    for p in (0, 65535):
        out.append(raw_bytes(with_ip4(TCP(sport=p, dport=p))))
        out.append(raw_bytes(with_ip4(UDP(sport=p, dport=p))))
        out.append(raw_bytes(with_ip6(TCP(sport=p, dport=p))))
        out.append(raw_bytes(with_ip6(UDP(sport=p, dport=p))))
    # IPv6 extension header chains: long, truncated, unknown, no next header, length beyond the packet.
    long_chain = IPv6(src=PEER_IP6, dst=SHARED_IP6)
    for _ in range(12):
        long_chain = long_chain / IPv6ExtHdrDestOpt()
    out.append(raw_bytes(long_chain / UDP(sport=sport, dport=dport)))
    chain = with_ip6(IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting() / IPv6ExtHdrDestOpt() / UDP(sport=sport, dport=dport))
    out.append(raw_bytes(chain))
    c = raw_bytes(chain)
    out += [c[:n] for n in range(40, 40 + 8 * 3 + 8)]                      # cut inside the chain
    out.append(patch(c, 41, "B", 200))                                        # hop-by-hop length beyond the packet
    out.append(raw_bytes(with_ip6(IPv6ExtHdrDestOpt(nh=253) / Raw(b"\x00" * 16))))   # unknown next header
    out.append(raw_bytes(with_ip6(IPv6ExtHdrDestOpt(nh=59) / Raw(b"\x00" * 16))))    # no next header
    out.append(raw_bytes(with_ip6(Raw(b"\x00" * 16), nh=51)))               # AH, zero length
    out.append(raw_bytes(with_ip6(IPv6ExtHdrHopByHop(nh=0) / IPv6ExtHdrHopByHop(nh=0) / IPv6ExtHdrHopByHop() /
                                  UDP(sport=sport, dport=dport))))          # hop-by-hop repeated
    # ICMP errors quoting a flow of vm1 (they go to vm1), cut at every point of the quoted headers.
    quoted4 = raw_bytes(IP(src=SHARED_IP, dst=PEER_IP) / UDP(sport=53, dport=40000))
    quoted6 = raw_bytes(IPv6(src=SHARED_IP6, dst=PEER_IP6) / TCP(sport=80, dport=40000))
    for n in range(0, len(quoted4) + 1, 2):
        out.append(raw_bytes(with_ip4(ICMP(type=3, code=4, nexthopmtu=1400) / Raw(quoted4[:n]))))
    for n in range(0, len(quoted6) + 1, 4):
        out.append(raw_bytes(with_ip6(ICMPv6PacketTooBig(mtu=1280) / Raw(quoted6[:n]))))
    out.append(raw_bytes(with_ip4(ICMP(type=3, code=3) / Raw(patch(quoted4, 0, "B", 0x4f)))))   # quoted IHL lie
    # Unusual but legal: not TCP/UDP at all.
    out.append(raw_bytes(with_ip4(ICMP())))
    out.append(raw_bytes(with_ip4(Raw(b"gre!" * 4), proto=47)))
    return out, (good4t, good4u, good6t, good6u)


def hostile_fragments(sport, dport):
    """IP fragments: out of order, overlapping, duplicated, never completed, tiny first fragments, IPv6 ones."""
    out = []
    for ident in range(1, 5):
        dgram = with_ip4(UDP(sport=sport, dport=dport) / Raw(bytes(range(256)) * 2), id=ident)
        frags = [raw_bytes(f) for f in fragment(dgram, fragsize=64)]
        if ident == 1:
            random.shuffle(frags)                  # out of order
        elif ident == 2:
            frags = frags + frags[:3]              # duplicates after completion
        elif ident == 3:
            frags = frags[1:]                      # never completed: the first one is missing
        else:
            frags = frags[::-1]                    # reversed
        out += frags
    # Overlapping fragments (teardrop style) and a fragment reaching past 65535.
    body = raw_bytes(UDP(sport=sport, dport=dport, len=8 + 200) / Raw(b"o" * 200))
    out.append(raw_bytes(with_ip4(Raw(body[:96]), id=20, flags="MF", frag=0, proto=17)))
    out.append(raw_bytes(with_ip4(Raw(body[48:160]), id=20, flags="MF", frag=6, proto=17)))
    out.append(raw_bytes(with_ip4(Raw(body[152:]), id=20, frag=19, proto=17)))
    out.append(raw_bytes(with_ip4(Raw(b"x" * 64), id=21, frag=8189, proto=17)))
    out.append(raw_bytes(with_ip4(Raw(body[:4]), id=22, flags="MF", frag=0, proto=17)))   # first fragment < UDP header
    out.append(raw_bytes(with_ip4(Raw(body[:4]), id=23, flags="MF", frag=0, proto=6)))    # same, TCP
    out.append(raw_bytes(with_ip4(Raw(b"z" * 8), id=24, frag=1, proto=6)))                # lone middle fragment
    # IPv6 fragments, shuffled; an atomic fragment; a fragment header after other extension headers.
    dgram6 = IPv6(src=PEER_IP6, dst=SHARED_IP6) / IPv6ExtHdrFragment(id=99) / UDP(sport=sport, dport=dport) / \
        Raw(bytes(range(256)) * 2)
    f6 = [raw_bytes(f) for f in fragment6(dgram6, 200)]
    random.shuffle(f6)
    out += f6
    out.append(raw_bytes(with_ip6(IPv6ExtHdrFragment(id=100, offset=0, m=0) / UDP(sport=sport, dport=dport))))
    out.append(raw_bytes(with_ip6(IPv6ExtHdrDestOpt() / IPv6ExtHdrFragment(id=101, m=1) / UDP(sport=sport, dport=dport)
                                  / Raw(b"d" * 24))))
    out.append(raw_bytes(with_ip6(IPv6ExtHdrFragment(id=102, offset=8190, m=0, nh=17) / Raw(b"e" * 64))))
    # A datagram larger than the MTU, fragmented on the wire: it leaves toward the VM as fragments again.
    big = with_ip4(UDP(sport=sport, dport=dport) / Raw(b"B" * 3000), id=30)
    out += [raw_bytes(f) for f in fragment(big, fragsize=1400)]
    return out


def arp_frames(src_mac, sender_ip):
    out = []
    base = raw_bytes(ARP(op=2, hwsrc=src_mac, psrc=sender_ip, hwdst=GW_MAC, pdst=PEER_IP))
    out += [base[:n] for n in range(0, len(base))]                                 # every truncation
    out.append(base + b"\x00" * 18)                                                 # padded to 60 bytes
    out.append(raw_bytes(ARP(op=1, hwlen=8, psrc=sender_ip, pdst=SHARED_IP)))       # odd address lengths
    out.append(raw_bytes(ARP(op=1, plen=16, psrc=sender_ip, pdst=SHARED_IP)))
    out.append(raw_bytes(ARP(op=1, ptype=0x86dd, psrc=sender_ip, pdst=SHARED_IP)))
    out.append(raw_bytes(ARP(op=1, hwtype=6, psrc=sender_ip, pdst=SHARED_IP)))
    for op in (0, 3, 65535):
        out.append(raw_bytes(ARP(op=op, hwsrc=src_mac, psrc=sender_ip, pdst=SHARED_IP)))
    return out


def with_ethernet(l3_list, src, dst, vlan=False):
    frames = []
    for l3 in l3_list:
        version = (l3[0] >> 4) if l3 else 4
        etype = 0x86DD if version == 6 else 0x0800
        if vlan:
            frames.append(raw_bytes(Ether(src=src, dst=dst, type=0x8100)) + struct.pack("!HH", 5, etype) + l3)
        else:
            frames.append(raw_bytes(Ether(src=src, dst=dst, type=etype)) + l3)
    return frames


def header_truncations(frames, src, dst):
    """Every truncation point of Ethernet, VLAN, IPv4/IPv6 and TCP/UDP headers of well-formed frames."""
    out = []
    for l3 in frames:
        frame = raw_bytes(Ether(src=src, dst=dst, type=0x86DD if l3[0] >> 4 == 6 else 0x0800)) + l3
        out += truncations(frame, stop=14 + 40 + 20 + 1)
        vframe = raw_bytes(Ether(src=src, dst=dst, type=0x8100)) + struct.pack("!HH", 5, 0x0800) + l3
        out += truncations(vframe, stop=18 + 20 + 20 + 1)
    # A truncated frame whose IP header still claims the full length, and the reverse (padding after the IP
    # packet, as on a minimum-size Ethernet frame: legal).
    return out


def uplink_corpus():
    src, dst = GW_MAC, UPLINK_MAC
    l3, goods = hostile_l3(40000, 80 % 100)
    frames = header_truncations(goods, src, dst)
    frames += with_ethernet(l3, src, dst)
    frames += with_ethernet(l3[:40], src, dst, vlan=True)
    frames += with_ethernet(hostile_fragments(40000, 53), src, dst)
    frames += [raw_bytes(Ether(src=src, dst=dst, type=0x0806)) + a for a in arp_frames(src, PEER_IP)]
    frames += [raw_bytes(Ether(src=src, dst="ff:ff:ff:ff:ff:ff", type=0x0806)) + a for a in arp_frames(src, PEER_IP)[-8:]]
    na = Ether(src=src, dst=dst) / IPv6(src=PEER_IP6, dst=SHARED_IP6) / ICMPv6ND_NA(tgt=PEER_IP6) / \
        ICMPv6NDOptDstLLAddr(lladdr=src)
    frames += truncations(na)[54:] + [raw_bytes(na)]
    # Runts, jumbo-ish frames, Ethernet padding, 802.1ad and unknown ethertypes.
    frames += [b"", b"\x01", b"\xff" * 13, raw_bytes(Ether(src=src, dst=dst, type=0x88B5))]
    good = raw_bytes(Ether(src=src, dst=dst) / IP(src=PEER_IP, dst=SHARED_IP) / UDP(sport=40000, dport=53))
    frames.append(good + b"\x00" * (60 - len(good)))
    for size in (1514, 1515, 1518, 1522, 2048, 4000, 9000, 9018):
        jumbo = Ether(src=src, dst=dst) / IP(src=PEER_IP, dst=SHARED_IP) / UDP(sport=40000, dport=54) / \
            Raw(b"J" * (size - 42))
        frames.append(raw_bytes(jumbo))
    frames.append(raw_bytes(Ether(src=src, dst=dst, type=0x88A8)) + struct.pack("!HH", 5, 0x8100) +
                  struct.pack("!HH", 6, 0x0800) + goods[0])
    # Ports nobody owns (unmatched: reject) and the firewalled port, including frames no answer is due for.
    for dport in (500, 65534, 66):
        for l4 in (TCP(sport=40000, dport=dport, flags="S"), TCP(sport=40000, dport=dport, flags="R"),
                   TCP(sport=40000, dport=dport, flags="A", dataofs=15) / Raw(b"o" * 40),
                   UDP(sport=40000, dport=dport) / Raw(b"q" * 30)):
            frames.append(raw_bytes(Ether(src=src, dst=dst) / IP(src=PEER_IP, dst=SHARED_IP) / l4))
            frames.append(raw_bytes(Ether(src=src, dst=dst) / IPv6(src=PEER_IP6, dst=SHARED_IP6) / l4))
        frames.append(raw_bytes(Ether(src=src, dst="ff:ff:ff:ff:ff:ff") / IP(src=PEER_IP, dst=SHARED_IP) /
                                UDP(sport=1, dport=dport)))
        frames.append(raw_bytes(Ether(src=src, dst=dst) / IP(src="255.255.255.255", dst=SHARED_IP) /
                                UDP(sport=1, dport=dport)))
    frames += [bytes(random.getrandbits(8) for _ in range(random.randint(1, 200))) for _ in range(100)]
    return frames


def vm_corpus():
    """The same kinds of hostile frames, as vm1 would transmit them: from the shared address, vm1's ports."""
    src, dst = VM_MACS["vm1"], GW_MAC
    l3 = []
    for pkt in hostile_l3(80, 40000)[0]:
        l3.append(swap_addresses(pkt))
    goods = [swap_addresses(g) for g in hostile_l3(80, 40000)[1]]
    frames = header_truncations(goods, src, dst)
    frames += with_ethernet(l3, src, dst)
    frames += with_ethernet([swap_addresses(f) for f in hostile_fragments(53, 40000)], src, dst)
    frames += [raw_bytes(Ether(src=src, dst=dst, type=0x0806)) + a for a in arp_frames(src, SHARED_IP)]
    frames += [raw_bytes(Ether(src=src, dst=dst, type=0x0806)) + a for a in arp_frames(src, "192.0.2.99")[-4:]]
    frames += [b"", b"\x02", b"\xee" * 13]
    for size in (1514, 1518, 4000, 9018):
        frames.append(raw_bytes(Ether(src=src, dst=dst) / IP(src=SHARED_IP, dst=PEER_IP) /
                                UDP(sport=53, dport=40000) / Raw(b"J" * (size - 42))))
    # Spoofs among them: another VM's port, another source address.
    frames.append(raw_bytes(Ether(src=src, dst=dst) / IP(src=SHARED_IP, dst=PEER_IP) / TCP(sport=1500, dport=1)))
    frames.append(raw_bytes(Ether(src=src, dst=dst) / IP(src="192.0.2.11", dst=PEER_IP) / TCP(sport=80, dport=1)))
    frames += [bytes(random.getrandbits(8) for _ in range(random.randint(1, 200))) for _ in range(100)]
    return frames


def swap_addresses(l3):
    """An uplink-bound copy: source is the shared address, destination the peer (only when the header allows)."""
    b = bytearray(l3)
    if len(b) >= 20 and b[0] >> 4 == 4:
        b[12:16], b[16:20] = bytes(map(int, SHARED_IP.split("."))), bytes(map(int, PEER_IP.split(".")))
        ihl = (b[0] & 0x0F) * 4
        if 20 <= ihl <= len(b):
            b[10:12] = b"\x00\x00"
            b[10:12] = struct.pack("!H", checksum(bytes(b[:ihl])))
    elif len(b) >= 40 and b[0] >> 4 == 6:
        b[8:24], b[24:40] = raw_bytes(IPv6(src=SHARED_IP6))[8:24], raw_bytes(IPv6(src=PEER_IP6))[8:24]
    return bytes(b)


# ---------------------------------------------------------------------------------------------------------
# Judging what left the switch.

def ip_wellformed(pkt_bytes, l3_off):
    """None when the IP packet at l3_off is a well-formed TCP/UDP datagram or fragment, else why not.
    Returns (error, proto, src, dst, sport, dport, is_fragment)."""
    b = pkt_bytes
    version = b[l3_off] >> 4 if len(b) > l3_off else 0
    if version == 4:
        if len(b) < l3_off + 20:
            return ("truncated IPv4 header",)
        ihl = (b[l3_off] & 0x0F) * 4
        total = struct.unpack_from("!H", b, l3_off + 2)[0]
        if ihl < 20 or total < ihl or l3_off + total > len(b):
            return ("IPv4 lengths lie (ihl %d, total %d, frame %d)" % (ihl, total, len(b)),)
        # The header checksum is not a criterion: a switch forwards without verifying it (as NIC offloads and
        # Open vSwitch do) and the receiver drops it; bad_checksums() reports such deliveries separately.
        proto = b[l3_off + 9]
        frag = struct.unpack_from("!H", b, l3_off + 6)[0]
        offset, more = frag & 0x1FFF, bool(frag & 0x2000)
        src, dst = ".".join(map(str, b[l3_off + 12:l3_off + 16])), ".".join(map(str, b[l3_off + 16:l3_off + 20]))
        l4, end = l3_off + ihl, l3_off + total
        is_frag = offset != 0 or more
    elif version == 6:
        if len(b) < l3_off + 40:
            return ("truncated IPv6 header",)
        plen = struct.unpack_from("!H", b, l3_off + 4)[0]
        if l3_off + 40 + plen > len(b):
            return ("IPv6 payload length beyond the frame",)
        ip6 = IPv6(bytes(b[l3_off:l3_off + 40 + plen]))
        src, dst = ip6.src, ip6.dst
        proto, l4, end = b[l3_off + 6], l3_off + 40, l3_off + 40 + plen
        offset, is_frag = 0, False
        for _ in range(16):
            if proto in (0, 43, 60, 51, 44):
                if l4 + 8 > end:
                    return ("truncated IPv6 extension header",)
                nxt = b[l4]
                if proto == 44:
                    fo = struct.unpack_from("!H", b, l4 + 2)[0]
                    offset, is_frag = fo >> 3, True
                    length = 8
                elif proto == 51:
                    length = (b[l4 + 1] + 2) * 4
                else:
                    length = (b[l4 + 1] + 1) * 8
                proto, l4 = nxt, l4 + length
                if l4 > end:
                    return ("IPv6 extension header beyond the packet",)
            else:
                break
    else:
        return ("not IP (version %d)" % version,)
    if proto not in (6, 17):
        return ("IP protocol %d is not TCP/UDP" % proto,)
    if is_frag and offset != 0:
        return (None, proto, src, dst, None, None, True)
    need = 20 if proto == 6 else 8
    if l4 + need > end:
        return ("truncated %s header" % ("TCP" if proto == 6 else "UDP"),)
    sport, dport = struct.unpack_from("!HH", b, l4)
    if proto == 6:
        off = (b[l4 + 12] >> 4) * 4
        if off < 20 or l4 + off > end:
            return ("TCP data offset %d lies" % off,)
    elif not is_frag:
        ulen = struct.unpack_from("!H", b, l4 + 4)[0]
        # Shorter than the IP payload is legal (receivers trim the rest, as Linux does); longer is a lie.
        if ulen < 8 or ulen > end - l4:
            return ("UDP length %d lies (payload %d)" % (ulen, end - l4),)
    return (None, proto, src, dst, sport, dport, is_frag)


def bad_ipv4_checksum(frame):
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return False
    ihl = (frame[14] & 0x0F) * 4
    return 20 <= ihl and 14 + ihl <= len(frame) and checksum(bytes(frame[14:14 + ihl])) != 0


def judge_icmp_error(name, frame, etype):
    """False when `frame` is no ICMP error; else None when it is a well-formed error to the shared address
    quoting a TCP/UDP flow from one of the VM's ports, or what is wrong with it."""
    if etype == 0x0800 and len(frame) >= 34 and frame[23] == 1:
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        if ihl < 20 or total < ihl + 8 or 14 + total > len(frame):
            return "ICMP with lying IPv4 lengths"
        if frame[14 + ihl] not in (3, 11, 12):
            return False
        dst, quoted_off = ".".join(map(str, frame[30:34])), 14 + ihl + 8
    elif etype == 0x86DD and len(frame) >= 54 and frame[20] == 58:
        plen = struct.unpack_from("!H", frame, 18)[0]
        if 54 + plen > len(frame) or plen < 8:
            return "ICMPv6 with a lying payload length"
        if frame[54] not in (1, 2, 3, 4):
            return False
        dst, quoted_off = IPv6(frame[14:54]).dst, 54 + 8
    else:
        return False
    if dst not in (SHARED_IP, SHARED_IP6):
        return "ICMP error to %s" % dst
    verdict = ip_quoted(frame, quoted_off)
    if verdict is None:
        return "ICMP error whose quoted packet has no complete TCP/UDP ports"
    kind, sport = verdict
    owned = VM1_PORTS[kind] if name == "vm1" else set(range(1000, 2000)) | ({65535} if kind == "udp" else set())
    return None if sport in owned else "ICMP error quoting %s port %d, not %s's" % (kind, sport, name)


def ip_quoted(frame, off):
    """(protocol, source port) of the packet an ICMP error quotes, or None when they are not complete."""
    if len(frame) < off + 1:
        return None
    if frame[off] >> 4 == 4:
        ihl = (frame[off] & 0x0F) * 4
        if ihl < 20 or len(frame) < off + ihl + 4 or frame[off + 9] not in (6, 17):
            return None
        return ("tcp" if frame[off + 9] == 6 else "udp"), struct.unpack_from("!H", frame, off + ihl)[0]
    if frame[off] >> 4 == 6 and len(frame) >= off + 44 and frame[off + 6] in (6, 17):
        return ("tcp" if frame[off + 6] == 6 else "udp"), struct.unpack_from("!H", frame, off + 40)[0]
    return None


def judge_vm_frame(name, frame):
    """None when `frame`, sent by portmux to VM `name`, is acceptable; else what is wrong with it."""
    if len(frame) < 14:
        return "runt of %d bytes" % len(frame)
    eth = Ether(frame)
    etype = struct.unpack_from("!H", frame, 12)[0]
    if etype == 0x0806:
        if len(frame) < 14 + 28 or frame[14:20] != b"\x00\x01\x08\x00\x06\x04":
            return "malformed ARP"
        op = struct.unpack_from("!H", frame, 20)[0]
        if op != 2 and frame[28:32] != frame[38:42]:
            return "ARP op %d that is neither a reply nor gratuitous" % op
        return None
    if etype == 0x86DD and ICMPv6ND_NA in eth:
        return None if eth.dst in (VM_MACS[name], "33:33:00:00:00:01") or eth.dst.startswith("33:33") else \
            "neighbour advertisement to %s" % eth.dst
    if eth.dst != VM_MACS[name]:
        return "destination MAC %s is not the VM's %s" % (eth.dst, VM_MACS[name])
    icmp_error = judge_icmp_error(name, frame, etype)
    if icmp_error is not False:
        return icmp_error
    if etype not in (0x0800, 0x86DD):
        return "ethertype 0x%04x" % etype
    verdict = ip_wellformed(frame, 14)
    if verdict[0] is not None:
        return verdict[0]
    _, proto, src, dst, sport, dport, is_frag = verdict
    if dst not in (SHARED_IP, SHARED_IP6):
        return "destination %s is not the shared address" % dst
    if not is_frag or dport is not None:
        owned = VM1_PORTS if name == "vm1" else None
        kind = "tcp" if proto == 6 else "udp"
        if owned is not None and dport not in owned[kind]:
            return "%s port %d is not vm1's" % (kind, dport)
        if name == "vm2" and not (1000 <= dport <= 1999 or (kind == "udp" and dport == 65535)):
            return "%s port %d is not vm2's" % (kind, dport)
    if len(frame) - 14 > MTU and not is_frag:
        pass  # a jumbo datagram as received is the sender's business; it is well-formed
    return None


def judge_uplink_frame(frame):
    if len(frame) < 14:
        return "runt of %d bytes" % len(frame)
    eth = Ether(frame)
    if eth.src != UPLINK_MAC:
        return "source MAC %s is not the uplink's" % eth.src
    etype = struct.unpack_from("!H", frame, 12)[0]
    if etype == 0x0806:
        if len(frame) < 42 or frame[14:20] != b"\x00\x01\x08\x00\x06\x04":
            return "malformed ARP left the uplink"
        if frame[22:28] != bytes.fromhex(UPLINK_MAC.replace(":", "")):
            return "ARP sender hardware address not rewritten"
        if frame[28:32] not in (bytes(map(int, SHARED_IP.split("."))), b"\x00" * 4):
            return "ARP for a foreign address left the uplink"
        return None
    if etype not in (0x0800, 0x86DD):
        return "ethertype 0x%04x left the uplink" % etype
    version = frame[14] >> 4
    if version == 4 and len(frame) >= 34 and frame[23] not in (6, 17):
        src = ".".join(map(str, frame[26:30]))
        return None if src == SHARED_IP else "IPv4 from %s left the uplink" % src
    if version == 6 and len(frame) >= 54 and frame[20] == 58:
        return None if IPv6(frame[14:]).src == SHARED_IP6 else "ICMPv6 from a foreign address"
    verdict = ip_wellformed(frame, 14)
    if verdict[0] is not None and verdict[0].startswith("IP protocol"):
        # Not TCP/UDP (after the extension headers): allowed from the shared address.
        src = IPv6(frame[14:]).src if version == 6 else None
        return None if src == SHARED_IP6 else "IPv6 from %s left the uplink" % src
    if verdict[0] is not None:
        return "malformed IP left the uplink: " + verdict[0]
    _, proto, src, dst, sport, dport, is_frag = verdict
    if src not in (SHARED_IP, SHARED_IP6):
        return "source %s is not the shared address" % src
    if sport is not None:
        rst = proto == 6 and TCP in eth and "R" in str(eth[TCP].flags)
        if not rst and sport not in VM1_PORTS["tcp" if proto == 6 else "udp"]:
            return "source port %d is not vm1's" % sport
    return None


# ---------------------------------------------------------------------------------------------------------
# The run.

def fail(errors, message):
    errors.append(message)
    print("FAIL: " + message)


def settle(proc, prefix, expected, timeout=60):
    deadline = time.monotonic() + timeout
    client, last, since, stats = None, None, time.monotonic(), None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return None, None, "portmux exited early with status %d" % proc.returncode
        if client is None:
            try:
                client = telemetry.Telemetry(telemetry.socket_path(prefix))
            except OSError:
                time.sleep(0.1)
                continue
        answer = client.query("/portmux/stats")
        if isinstance(answer, dict):
            stats = answer
            done = stats["rx_uplink"] >= expected["uplink"] and stats["rx_vms"] >= expected["vms"]
            if done and stats == last and time.monotonic() - since >= 1.0:
                vms = client.query("/portmux/vms")
                client.close()
                return stats, vms, None
            if stats != last:
                since = time.monotonic()
            last = stats
        time.sleep(0.1)
    if client is not None:
        client.close()
    return stats, None, "portmux did not receive every frame and settle within %d s (stats %s)" % (
        timeout, json.dumps(stats, sort_keys=True))


def main():
    portmux = os.path.abspath(sys.argv[1])
    keep = "--keep" in sys.argv
    prefix = "pmx-hostile-%d" % os.getpid()
    work = tempfile.mkdtemp(prefix="pmx-hostile-")
    errors, proc = [], None
    try:
        up_in, vm_in = uplink_corpus(), vm_corpus()
        print("corpus: %d frames on the uplink, %d from vm1" % (len(up_in), len(vm_in)))
        write_pcap(os.path.join(work, "uplink_in.pcap"), up_in)
        write_pcap(os.path.join(work, "vm1_in.pcap"), vm_in)
        for name in ("host", "vm2"):
            write_pcap(os.path.join(work, "%s_in.pcap" % name), [])

        def dev(index, name):
            return "net_pcap%d,rx_pcap=%s/%s_in.pcap,tx_pcap=%s/%s_out.pcap" % (index, work, name, work, name)
        config = {
            "shared_ip": SHARED_IP, "shared_ip6": SHARED_IP6,
            "uplink": {"device": dev(0, "uplink"), "mac": UPLINK_MAC},
            "host": {"device": dev(1, "host"), "ranges": ["tcp:200"]},
            "vms": [{"name": n, "device": dev(2 + i, n), "mac": VM_MACS[n], "ranges": VM_RANGES[n]}
                    for i, n in enumerate(("vm1", "vm2"))],
            "firewall": {"default": "accept",
                         "rules": [{"action": "drop", "proto": "tcp", "dst_ports": "66"}]},
            "unmatched": "reject",
        }
        config_path = os.path.join(work, "portmux.json")
        with open(config_path, "w") as f:
            json.dump(config, f, indent=2)
        log_path = os.path.join(work, "portmux.log")
        with open(log_path, "w") as log:
            proc = subprocess.Popen([portmux, "-c", config_path, "--", "--no-huge", "-m", "512", "--no-pci",
                                     "--lcores", "0@0,1@1", "--file-prefix", prefix,
                                     "--log-level", "pmd.net.pcap:error"],
                                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        stats, vms, problem = settle(proc, prefix, {"uplink": len(up_in), "vms": len(vm_in)})
        if problem:
            fail(errors, problem)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(timeout=30)
                if rc != 0:
                    fail(errors, "portmux exited with status %d after SIGTERM (expected 0)" % rc)
            except subprocess.TimeoutExpired:
                fail(errors, "portmux did not exit within 30 s of SIGTERM")

        outputs = {}
        for name in ("uplink", "host", "vm1", "vm2"):
            path = os.path.join(work, "%s_out.pcap" % name)
            outputs[name] = read_pcap(path) if os.path.exists(path) else []
        print("sent out: " + ", ".join("%s %d" % (k, len(v)) for k, v in outputs.items()))

        for name in ("vm1", "vm2"):
            bad = [(f, judge_vm_frame(name, f)) for f in outputs[name]]
            bad = [(f, why) for f, why in bad if why]
            for frame, why in bad[:10]:
                fail(errors, "%s received a frame it must not: %s: %s" % (name, why, frame.hex()))
            if len(bad) > 10:
                fail(errors, "%s: %d more such frames" % (name, len(bad) - 10))
        for name in ("vm1", "vm2"):
            for frame in outputs[name]:
                if bad_ipv4_checksum(frame):
                    print("note: %s received an IPv4 packet with a wrong header checksum (not verified by the "
                          "switch): %s" % (name, frame.hex()))
        bad = [(f, judge_uplink_frame(f)) for f in outputs["uplink"]]
        bad = [(f, why) for f, why in bad if why]
        for frame, why in bad[:10]:
            fail(errors, "the uplink sent a frame it must not: %s: %s" % (why, frame.hex()))

        if stats is not None and vms is not None:
            check_accounting(errors, stats, vms, len(up_in), len(vm_in), outputs)
        if errors:
            with open(log_path, errors="replace") as f:
                print("portmux log (last 40 lines):\n" + "\n".join(f.read().splitlines()[-40:]))
            return 1
        print("PASS: %d hostile frames on the uplink and %d from a VM: no crash, nothing malformed delivered, "
              "every frame accounted for" % (len(up_in), len(vm_in)))
        return 0
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)
        if keep or errors:
            print("kept %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)


def check_accounting(errors, stats, vms, sent_uplink, sent_vm, outputs):
    print("stats: " + json.dumps({k: v for k, v in sorted(stats.items()) if v}, sort_keys=True))
    vm_stats = {v["name"]: v for k, v in vms.items() if isinstance(v, dict) and "name" in v}
    if stats["rx_uplink"] != sent_uplink:
        fail(errors, "the uplink received %d of %d frames replayed" % (stats["rx_uplink"], sent_uplink))
    vm1 = vm_stats["vm1"]
    if vm1["rx_packets"] != sent_vm:
        fail(errors, "vm1's port received %d of %d frames replayed" % (vm1["rx_packets"], sent_vm))
    # From the VM: forwarded, or dropped by the egress checks (each counts in dropped_spoof) or because it
    # is above the uplink MTU with no offload to cut it (dropped_offload).
    vm1_drops = vm1["dropped_spoof"] + vm1["dropped_disabled"] + vm1["dropped_offload"]
    if vm1["rx_packets"] != stats["to_uplink_from_vm"] + vm1_drops:
        fail(errors, "from vm1: rx %d != to_uplink_from_vm %d + dropped_spoof %d + dropped_disabled %d"
             " + dropped_offload %d" % (vm1["rx_packets"], stats["to_uplink_from_vm"], vm1["dropped_spoof"],
                                        vm1["dropped_disabled"], vm1["dropped_offload"]))
    if vm1["dropped_offload"] != stats["drop_guest_offload"]:
        fail(errors, "vm1 dropped_offload %d != drop_guest_offload %d" % (
            vm1["dropped_offload"], stats["drop_guest_offload"]))
    # Switch-wide drop counters mix both directions: take the VM's share out of them.
    egress_drops = sum(stats[k] for k in ("drop_spoof_arp", "drop_spoof_address", "drop_spoof_port"))
    uplink_terms = ["to_vm", "to_host", "flooded", "rejected", "fragments_held"] + \
        [k for k in stats if k.startswith("drop_") and k != "drop_tx"]
    uplink_total = sum(stats[k] for k in uplink_terms) - vm1_drops
    if egress_drops > vm1["dropped_spoof"]:
        fail(errors, "spoof drops %d exceed vm1's dropped_spoof %d" % (egress_drops, vm1["dropped_spoof"]))
    if stats["rx_uplink"] != uplink_total:
        fail(errors, "uplink: rx %d != %s = %d (a frame is unaccounted for or counted twice)" % (
            stats["rx_uplink"], " + ".join("%s %d" % (k, stats[k]) for k in uplink_terms if stats[k]) +
            " - vm1 egress drops %d" % vm1_drops, uplink_total))
    # The VM's frames above the MTU (1518, 4000 and 9018 bytes) must not leave the uplink.
    too_big = [len(f) for f in outputs["uplink"] if len(f) > 14 + MTU]
    if too_big:
        fail(errors, "frames above the MTU left the uplink: sizes %s" % too_big[:5])
    if stats["drop_tx"] != 0:
        fail(errors, "drop_tx %d: a pcap port refused frames" % stats["drop_tx"])
    # What the counters say was sent is what the pcaps hold.
    if stats["to_uplink_from_vm"] + stats["rejected"] != len(outputs["uplink"]):
        fail(errors, "uplink pcap holds %d frames, counters say %d from vm1 + %d rejects" % (
            len(outputs["uplink"]), stats["to_uplink_from_vm"], stats["rejected"]))


if __name__ == "__main__":
    sys.exit(main())
