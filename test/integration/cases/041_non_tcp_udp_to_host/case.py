# IP for the shared address that is neither TCP nor UDP (ICMP, ICMPv6 echo, GRE, SCTP) goes to the host, also
# under `unmatched: drop`.
from scapy.all import GRE, ICMP, ICMPv6EchoRequest, IP, IPv6, SCTP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, REMOTE_IP6, UPLINK_MAC, from_wire, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["0-65535"]}],
    "unmatched": "drop",
}

to_host = [
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / ICMP(type=8, id=1, seq=1) / Raw(b"ping")),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / GRE() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP()),
    from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / SCTP(sport=80, dport=80)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6) / ICMPv6EchoRequest(id=1, seq=1)),
    from_wire(IPv6(src=REMOTE_IP6, dst=SHARED_IP6, nh=47) / GRE() / IP(src="10.0.0.1", dst="10.0.0.2")),
]

SEND = {"uplink": to_host}
EXPECT = {"host": to_host}
EXPECT_STATS = {"to_host": 5, "to_vm": 0, "drop_unmatched": 0}
