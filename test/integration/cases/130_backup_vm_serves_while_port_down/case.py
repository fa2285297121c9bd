# A VM with a backup (extension `vms[].backup`): while its port is down (here a vhost-user socket no guest
# has attached to), its ranges are served by the backup: frames go to the backup with the backup's MAC, and
# the backup may answer from the primary's ports. A VM without a backup whose port is down keeps its ranges
# (packets to it are counted as transmit drops, never sent elsewhere).
import os

from scapy.all import IP, TCP

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst, with_src

_SOCKETS = "/tmp/pmx-it-130-%d" % os.getpid()
os.makedirs(_SOCKETS, exist_ok=True)

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"]},
    "vms": [
        {"name": "web", "vhost": _SOCKETS + "/web.sock", "vhost_mode": "server", "mac": vm_mac(1),
         "ranges": ["tcp:80"], "backup": "web2"},
        {"name": "web2", "mac": vm_mac(2), "ranges": ["tcp:8080"]},
        {"name": "lonely", "vhost": _SOCKETS + "/lonely.sock", "vhost_mode": "server", "mac": vm_mac(3),
         "ranges": ["tcp:9000"]},
    ],
}


def inbound(dport):
    return from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=dport, flags="S"))


def from_vm(n, sport):
    return from_wire(IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=sport, dport=40000, flags="SA"),
                     src=vm_mac(n), dst="02:00:00:00:00:fe")


to_web = [inbound(80), inbound(80)]
to_web2 = [inbound(8080)]
to_lonely = [inbound(9000)]
answers = [from_vm(2, 80), from_vm(2, 8080)]  # web2 answers for web's port and for its own

SEND = {"uplink": to_web + to_web2 + to_lonely, "web2": answers}
EXPECT = {
    "web2": [with_dst(p, vm_mac(2)) for p in to_web + to_web2],
    "uplink": [with_src(p, UPLINK_MAC) for p in answers],
}
EXPECT_STATS = {"rx_uplink": 4, "to_vm": 4, "to_uplink_from_vm": 2, "drop_spoof_port": 0, "drop_tx": 1}
