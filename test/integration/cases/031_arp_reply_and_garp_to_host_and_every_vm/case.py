# ARP replies and gratuitous ARP go to the host and to every VM (each VM must resolve its gateway). A VM's
# copy of a frame sent to the uplink MAC gets the VM's MAC as destination; a broadcast stays broadcast.
from scapy.all import ARP

from run_case import GW_MAC, SHARED_IP, UPLINK_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]},
        {"name": "db", "mac": vm_mac(2), "ranges": ["tcp:5432"]},
    ],
}

BCAST = "ff:ff:ff:ff:ff:ff"
reply = from_wire(ARP(op=2, hwsrc=GW_MAC, psrc="192.0.2.1", hwdst=UPLINK_MAC, pdst=SHARED_IP))
garp_request = from_wire(ARP(op=1, hwsrc=GW_MAC, psrc="192.0.2.1", hwdst="00:00:00:00:00:00", pdst="192.0.2.1"),
                         dst=BCAST)
garp_reply = from_wire(ARP(op=2, hwsrc=GW_MAC, psrc="192.0.2.1", hwdst=BCAST, pdst="192.0.2.1"), dst=BCAST)

SEND = {"uplink": [reply, garp_request, garp_reply]}
EXPECT = {
    "host": [reply, garp_request, garp_reply],
    "web": [with_dst(reply, vm_mac(1)), garp_request, garp_reply],
    "db": [with_dst(reply, vm_mac(2)), garp_request, garp_reply],
}
EXPECT_STATS = {"flooded": 3, "to_host": 0, "to_vm": 0, "tx_host": 3, "tx_vms": 6}
