# Remote VMs (extension): a port owned by a remote VM leaves the uplink in VXLAN to the remote's host and next
# hop, the inner frame unchanged; VXLAN from a peer is unwrapped and switched like an uplink frame (here to a
# local VM); VXLAN from a non-peer or with another VNI is dropped; an unwrapped frame for a remote (its range
# moved on: a stale location) is sent on once, marked re-sent, and a marked one that is for a remote again is
# dropped, never looped; a frame that would not fit the uplink MTU once wrapped is dropped. All counted.
from scapy.all import IP, TCP, UDP, Ether, Raw
from scapy.layers.vxlan import VXLAN

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

LOCAL_IP = "198.51.100.1"
REMOTE_HOST = "198.51.100.2"
PEER = "198.51.100.3"
STRANGER = "198.51.100.66"
NEXT_HOP = "02:00:00:00:0b:01"
VNI = 4242

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
    "vxlan": {"local_ip": LOCAL_IP, "port": 4789, "vni": VNI, "peers": [PEER]},
    "remotes": [{"name": "db-b", "host": REMOTE_HOST, "mac": NEXT_HOP, "ranges": ["tcp:5432", "udp:7000"]}],
}


RESENT = 0x80  # the reserved flag bit portmux sets on a frame it re-sends (docs/remote-vms.md)


def tunnel(inner, src=REMOTE_HOST, vni=VNI, flags=0x08):
    return from_wire(IP(src=src, dst=LOCAL_IP) / UDP(sport=51000, dport=4789) / VXLAN(flags=flags, vni=vni) / inner)


to_db_tcp = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=5432, flags="S"))
to_db_udp = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40001, dport=7000) / Raw(b"hello"))
# 1480 bytes inner: 1516 once wrapped, more than the uplink's 1500.
to_db_big = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40002, dport=7000) / Raw(b"x" * (1480 - 42)))

inner_web = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40010, dport=80, flags="S"))
inner_web2 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40011, dport=80, flags="S"))
inner_stranger = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40012, dport=80, flags="S"))
inner_stale = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40013, dport=5432, flags="S"))
inner_loop = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40014, dport=5432, flags="S"))
inner_web_resent = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40015, dport=80, flags="S"))

SEND = {"uplink": [to_db_tcp, to_db_udp, to_db_big,
                   tunnel(inner_web), tunnel(inner_web2, src=PEER),
                   tunnel(inner_stranger, src=STRANGER), tunnel(inner_stranger, vni=VNI + 1),
                   tunnel(inner_stale), tunnel(inner_loop, flags=0x08 | RESENT),
                   tunnel(inner_web_resent, src=PEER, flags=0x08 | RESENT)]}
EXPECT = {"web": [with_dst(inner_web, vm_mac(1)), with_dst(inner_web2, vm_mac(1)),
                  with_dst(inner_web_resent, vm_mac(1))]}
FREE_PORTS = ["uplink"]
EXPECT_STATS = {"rx_uplink": 10, "to_vm": 3, "to_host": 0, "vxlan_encapsulated": 3, "vxlan_decapsulated": 5,
                "drop_vxlan": 2, "vxlan_resent": 1, "drop_vxlan_loop": 1, "drop_vxlan_too_big": 1}


def CHECK(outputs):
    sent = outputs.get("uplink", [])
    if len(sent) != 3:
        return "uplink: expected 3 VXLAN frames, got %d" % len(sent)
    problems = []
    for inner, flags in ((to_db_tcp, 0x08), (to_db_udp, 0x08), (inner_stale, 0x08 | RESENT)):
        match = [p for p in sent if bytes(p)[50:] == bytes(inner)]
        if len(match) != 1:
            problems.append("no VXLAN frame carries %s unchanged" % inner.summary())
            continue
        p = match[0]
        ip, udp = p[IP], p[UDP]
        checks = [
            (p.dst == NEXT_HOP, "outer destination MAC %s" % p.dst),
            (p.src == UPLINK_MAC, "outer source MAC %s" % p.src),
            (ip.src == LOCAL_IP and ip.dst == REMOTE_HOST, "outer addresses %s -> %s" % (ip.src, ip.dst)),
            (ip.flags == "DF" and ip.ttl == 64 and ip.ihl == 5, "outer IP flags/ttl/ihl %s/%d/%d" % (ip.flags, ip.ttl, ip.ihl)),
            (IP(bytes(ip)[:20] + b"\0" * 0).chksum == IP(bytes(IP(bytes(ip)))).chksum, "outer checksum"),
            (ip.len == len(bytes(inner)) + 36, "outer IP length %d" % ip.len),
            (udp.dport == 4789 and 49152 <= udp.sport <= 65535 and udp.chksum == 0,
             "UDP %d -> %d checksum %#x" % (udp.sport, udp.dport, udp.chksum)),
            (p[VXLAN].vni == VNI and int(p[VXLAN].flags) == flags,
             "VXLAN vni %d flags %#x (expected %#x)" % (p[VXLAN].vni, int(p[VXLAN].flags), flags)),
        ]
        for ok, what in checks:
            if not ok:
                problems.append("%s: %s" % (inner.summary(), what))
        # The outer header checksum, recomputed independently.
        header = bytearray(bytes(p)[14:34])
        given = (header[10] << 8) | header[11]
        header[10] = header[11] = 0
        total = sum((header[i] << 8) | header[i + 1] for i in range(0, 20, 2))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        if given != (~total & 0xFFFF):
            problems.append("%s: outer IP checksum %#x, expected %#x" % (inner.summary(), given, ~total & 0xFFFF))
    return problems or None
