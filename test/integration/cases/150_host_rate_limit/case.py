# Traffic to the host is limited (extension `host.rate_limit_pps`): writing to a TAP costs a system call per
# frame, so a flood toward the host must not take the worker away from VM traffic. Frames above the limit
# are dropped and counted (drop_host_rate); VM traffic in the same burst is untouched, and flooded ARP still
# reaches every VM when the host's copy is refused.
from scapy.all import ARP, ICMP, IP, TCP, Ether

from run_case import SHARED_IP, REMOTE_IP, UPLINK_MAC, GW_MAC, from_wire, vm_mac, with_dst

CONFIG = {
    "shared_ip": SHARED_IP,
    "uplink": {"mac": UPLINK_MAC},
    "host": {"ranges": ["tcp:22"], "rate_limit_pps": 10},  # a bucket of one frame, refilled 10 times a second
    "vms": [{"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80"]}],
}

HOST_BOUND = 60
to_host = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=41000 + i, dport=22, flags="S"))
           for i in range(HOST_BOUND // 2)]
to_host += [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / ICMP(seq=i)) for i in range(HOST_BOUND // 2)]
to_web = [from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000 + i, dport=80, flags="S")) for i in range(20)]
arp_reply = Ether(src=GW_MAC, dst=UPLINK_MAC) / ARP(op=2, hwsrc=GW_MAC, psrc="192.0.2.1", hwdst=UPLINK_MAC,
                                                    pdst=SHARED_IP)

# Interleaved: a host-bound frame, a VM-bound one, ...; the ARP reply last, when the bucket is empty.
frames = []
for i in range(max(len(to_host), len(to_web))):
    if i < len(to_host):
        frames.append(to_host[i])
    if i < len(to_web):
        frames.append(to_web[i])
frames.append(arp_reply)

SEND = {"uplink": frames}
EXPECT = {"web": [with_dst(p, vm_mac(1)) for p in to_web] + [with_dst(arp_reply, vm_mac(1))]}
FREE_PORTS = ["host"]


def CHECK(outputs, telemetry):
    stats = telemetry["stats"]
    errors = []
    host_frames = outputs["host"]
    arp_to_host = any(ARP in f for f in host_frames)
    if not 1 <= len(host_frames) <= 5:
        errors.append("the host got %d frames; a one-frame bucket at 10/s lets 1 to 5 through" % len(host_frames))
    if stats["to_host"] != len(host_frames) - (1 if arp_to_host else 0):
        errors.append("to_host %d does not match the %d frames the host got" % (stats["to_host"], len(host_frames)))
    # Every host-bound frame is either delivered or counted; the ARP reply is accounted for once, as flooded,
    # and a refused host copy of it shows in host_copies_limited.
    expected_drops = HOST_BOUND - stats["to_host"]
    if stats["drop_host_rate"] != expected_drops:
        errors.append("drop_host_rate %d, expected %d" % (stats["drop_host_rate"], expected_drops))
    if stats["host_copies_limited"] != (0 if arp_to_host else 1):
        errors.append("host_copies_limited %d, expected %d" % (stats["host_copies_limited"], 0 if arp_to_host else 1))
    if stats["to_vm"] != len(to_web) or stats["flooded"] != 1:
        errors.append("to_vm %d / flooded %d, expected %d / 1: VM traffic must not suffer"
                      % (stats["to_vm"], stats["flooded"], len(to_web)))
    return errors
