# An ARP request for the shared IP goes to the host only (the wire sees one MAC for the shared address); so do
# requests for other addresses. No VM gets a copy.
from scapy.all import ARP

from run_case import GW_MAC, SHARED_IP, UPLINK_MAC, from_wire, vm_mac

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432"]},
    ],
}

requests = [
    from_wire(ARP(op=1, hwsrc=GW_MAC, psrc="192.0.2.1", pdst=SHARED_IP), dst="ff:ff:ff:ff:ff:ff"),
    # A unicast re-check of the cached entry, as Linux does before the entry goes stale.
    from_wire(ARP(op=1, hwsrc=GW_MAC, psrc="192.0.2.1", hwdst=UPLINK_MAC, pdst=SHARED_IP)),
    from_wire(ARP(op=1, hwsrc=GW_MAC, psrc="192.0.2.1", pdst="192.0.2.99"), dst="ff:ff:ff:ff:ff:ff"),
]

SEND = {"uplink": requests}
EXPECT = {"host": requests}
EXPECT_STATS = {"to_host": 3, "flooded": 0, "tx_vms": 0}
