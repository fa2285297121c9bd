#!/usr/bin/python3
"""Writes the seed corpora under test/fuzz/corpus/: real frames built with scapy, the example configurations
with a few variants, and range strings. Re-run after changing it; the files are checked in."""

import hashlib
import json
import os

from scapy.all import (ARP, Dot1Q, Ether, ICMP, ICMPv6EchoRequest, ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                       ICMPv6NDOptSrcLLAddr, ICMPv6PacketTooBig, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop,
                       IPv6ExtHdrRouting, Raw, TCP, UDP, fragment)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
SHARED, SHARED6, PEER, PEER6 = "192.0.2.10", "2001:db8::10", "198.51.100.7", "2001:db8:ffff::7"
UP, GW, VM = "02:00:00:00:0a:01", "02:00:00:00:00:fe", "52:54:00:12:34:01"


def write(target, items):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    for data in items:
        data = data if isinstance(data, bytes) else str(data).encode()
        with open(os.path.join(d, hashlib.sha1(data).hexdigest()[:16]), "wb") as f:
            f.write(data)


def frames():
    w = Ether(src=GW, dst=UP)       # from the wire
    v = Ether(src=VM, dst=GW)       # from a VM
    out = [
        w / IP(src=PEER, dst=SHARED) / TCP(sport=40000, dport=2, flags="S"),        # dport % 4: VM
        w / IP(src=PEER, dst=SHARED) / TCP(sport=40000, dport=1, flags="A"),        # host
        w / IP(src=PEER, dst=SHARED) / TCP(sport=40000, dport=4, flags="S") / Raw(b"x" * 20),  # nobody: reject
        w / IP(src=PEER, dst=SHARED) / TCP(sport=40000, dport=3, flags="FA"),       # disabled VM
        w / IP(src=PEER, dst=SHARED) / UDP(sport=40000, dport=5354) / Raw(b"dns?"),
        w / IP(src=PEER, dst=SHARED) / UDP(sport=40000, dport=0),
        w / IP(src=PEER, dst=SHARED) / UDP(sport=40000, dport=65535),
        w / IP(src=PEER, dst=SHARED, options=b"\x01\x01\x01\x00") / TCP(dport=6),
        w / IP(src=PEER, dst="198.51.100.99") / UDP(dport=6),
        w / IP(src=PEER, dst=SHARED) / ICMP(),
        w / IP(src=PEER, dst=SHARED) / ICMP(type=3, code=4, nexthopmtu=1400) /
        IP(src=SHARED, dst=PEER) / UDP(sport=6, dport=40000),                       # error quoting a VM's flow
        w / IP(src=PEER, dst=SHARED) / ICMP(type=11) / IP(src=SHARED, dst=PEER) / TCP(sport=2, dport=40000),
        w / IPv6(src=PEER6, dst=SHARED6) / ICMPv6PacketTooBig(mtu=1280) /
        IPv6(src=SHARED6, dst=PEER6) / UDP(sport=6, dport=40000),
        w / IP(src=PEER, dst=SHARED, ihl=4) / TCP(dport=2),
        w / IP(src=PEER, dst=SHARED, len=200) / TCP(dport=2),
        w / IP(src=PEER, dst=SHARED) / TCP(dport=2, dataofs=15),
        w / IP(src=PEER, dst=SHARED) / UDP(dport=6, len=4),
        w / IPv6(src=PEER6, dst=SHARED6) / TCP(sport=40000, dport=2),
        w / IPv6(src=PEER6, dst=SHARED6) / UDP(sport=40000, dport=4) / Raw(b"q"),
        w / IPv6(src=PEER6, dst=SHARED6) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / IPv6ExtHdrRouting() / UDP(dport=6),
        w / IPv6(src=PEER6, dst=SHARED6) / IPv6ExtHdrFragment(offset=0, m=1, id=7) / UDP(dport=6) / Raw(b"a" * 16),
        w / IPv6(src=PEER6, dst=SHARED6) / ICMPv6EchoRequest(),
        w / IPv6(src=PEER6, dst="ff02::1:ff00:10") / ICMPv6ND_NS(tgt=SHARED6) / ICMPv6NDOptSrcLLAddr(lladdr=GW),
        w / IPv6(src=PEER6, dst="ff02::1") / ICMPv6ND_NA(tgt=PEER6) / ICMPv6NDOptDstLLAddr(lladdr=GW),
        Ether(src=GW, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=PEER, pdst=SHARED, hwsrc=GW),
        w / ARP(op=2, psrc=PEER, pdst=SHARED, hwsrc=GW),
        Ether(src=GW, dst="ff:ff:ff:ff:ff:ff") / ARP(op=2, psrc=PEER, pdst=PEER, hwsrc=GW),
        w / Dot1Q(vlan=5) / IP(src=PEER, dst=SHARED) / TCP(dport=2),
        Ether(src=GW, dst=UP, type=0x88cc) / Raw(b"\x00" * 30),
        v / IP(src=SHARED, dst=PEER) / TCP(sport=2, dport=40000, flags="SA"),
        v / IP(src=SHARED, dst=PEER) / UDP(sport=6, dport=40000),
        v / IP(src="192.0.2.11", dst=PEER) / UDP(sport=6, dport=40000),
        v / IP(src=SHARED, dst=PEER) / TCP(sport=1, dport=40000),
        v / IPv6(src=SHARED6, dst=PEER6) / TCP(sport=2, dport=40000),
        v / ARP(op=1, psrc=SHARED, pdst=PEER, hwsrc=VM),
        v / ARP(op=1, psrc="0.0.0.0", pdst=SHARED, hwsrc=VM),
        v / IPv6(src=SHARED6, dst="ff02::1:ff00:7") / ICMPv6ND_NS(tgt=PEER6) / ICMPv6NDOptSrcLLAddr(lladdr=VM),
        v / IPv6(src=SHARED6, dst=PEER6) / ICMPv6ND_NA(tgt=SHARED6) / ICMPv6NDOptDstLLAddr(lladdr=VM),
    ]
    out += [w / f for f in fragment(IP(src=PEER, dst=SHARED, id=9) / UDP(sport=1, dport=6) / Raw(b"z" * 120),
                                    fragsize=48)]
    data = [bytes(p) for p in out]
    data += [bytes(out[0])[:n] for n in (0, 13, 14, 20, 33, 34, 40, 53)]
    return data


def configs():
    out = []
    for name in sorted(os.listdir(os.path.join(ROOT, "conf"))):
        if name.endswith(".json") and "schema" not in name:
            with open(os.path.join(ROOT, "conf", name), "rb") as f:
                out.append(f.read())
    minimal = {"shared_ip": SHARED, "uplink": {"device": "net_null0"}}
    out.append(json.dumps(minimal))
    out.append(json.dumps(dict(minimal, shared_ip6=SHARED6, unmatched="reject",
                               host={"device": "net_null1", "ranges": ["tcp:22", "udp:53"]},
                               vms=[{"name": "a", "device": "net_null2", "mac": VM, "ranges": ["0-25", "udp:5353"],
                                     "enabled": False},
                                    {"name": "b", "vhost": "/tmp/b.sock", "vhost_mode": "server",
                                     "mac": "52:54:00:12:34:02", "ranges": ["tcp:26-80"]}],
                               firewall={"default": "drop", "rules": [
                                   {"action": "accept", "proto": "tcp", "src": "203.0.113.0/24",
                                    "dst_ports": "0-1023"},
                                   {"action": "accept", "proto": 47, "dst": "2001:db8::/32", "src_ports": "1"}]},
                               control={"read_only": True})))
    out.append(json.dumps(dict(minimal, vms=[{"name": "x", "device": "d", "mac": VM, "ranges": ["90-80"]}])))
    out.append(json.dumps(dict(minimal, bogus=1)))
    out.append(json.dumps(dict(minimal, vms=[{"name": "a", "device": "d1", "mac": VM},
                                             {"name": "b", "device": "d2", "mac": "52:54:00:12:34:02"}],
                               groups=[{"name": "g", "members": [{"vm": "a", "weight": 1},
                                                                 {"vm": "b", "weight": 255, "drain": True}],
                                        "ranges": ["tcp:80", "udp:53"]},
                                       {"name": "empty", "members": []}],
                               connections={"max": 1024, "tcp_timeout_s": 60, "udp_timeout_s": 5})))
    out.append(b'{"shared_ip": "192.0.2.10", "uplink": {"device": "x"}, "eal": ["-l", "0-1"]}')
    return out


def ranges():
    return ["0", "65535", "0-65535", "tcp:22", "udp:53", "tcp:80-90", "udp:6000-6099", "1-1", "80-79", "65536",
            "tcp:", "udp:-1", "tcp:0x10", "sctp:80", "TCP:80", "080", " 80", "80 ", "80-", "-80", "1--2",
            "tcp:udp:1", "99999999999999999999", "4294967376", "1-65536", "tcp:1-2-3"]


if __name__ == "__main__":
    write("fuzz_parse", frames())
    write("fuzz_config", configs())
    write("fuzz_port_range", ranges())
