# Several shared addresses (extension): "shared_ip" is a list and a range written "ADDRESS/RANGE" belongs to
# that address's own table, so the same port goes to different owners on different addresses. A port owned
# on one address only is unmatched on the others; a VM may answer from an address only with a port it owns
# there; ARP from a VM may claim any shared address.
from scapy.all import ARP, Ether, IP, TCP, UDP, Raw

from run_case import SHARED_IP, SHARED_IP6, REMOTE_IP, UPLINK_MAC, from_wire, vm_mac, with_dst, with_src

SECOND_IP = "192.0.2.20"
THIRD_IP = "192.0.2.30"

CONFIG = {
    "shared_ip": [SHARED_IP, SECOND_IP, THIRD_IP],
    "shared_ip6": SHARED_IP6,
    "uplink": {"mac": UPLINK_MAC},
    "unmatched": "drop",
    "host": {"ranges": ["tcp:22", SECOND_IP + "/tcp:22"]},
    "vms": [
        {"name": "web", "mac": vm_mac(1), "ranges": ["tcp:80", SHARED_IP + "/udp:53"]},
        {"name": "mail", "mac": vm_mac(2), "ranges": [SECOND_IP + "/tcp:80", THIRD_IP + "/tcp:25"]},
    ],
}

to_first_80 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40000, dport=80, flags="S"))
to_second_80 = from_wire(IP(src=REMOTE_IP, dst=SECOND_IP) / TCP(sport=40001, dport=80, flags="S"))
to_third_80 = from_wire(IP(src=REMOTE_IP, dst=THIRD_IP) / TCP(sport=40002, dport=80, flags="S"))  # nobody's
to_third_25 = from_wire(IP(src=REMOTE_IP, dst=THIRD_IP) / TCP(sport=40003, dport=25, flags="S"))
to_first_25 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / TCP(sport=40004, dport=25, flags="S"))  # nobody's
to_first_53 = from_wire(IP(src=REMOTE_IP, dst=SHARED_IP) / UDP(sport=40005, dport=53) / Raw(b"q"))
to_second_22 = from_wire(IP(src=REMOTE_IP, dst=SECOND_IP) / TCP(sport=40006, dport=22, flags="S"))
to_third_22 = from_wire(IP(src=REMOTE_IP, dst=THIRD_IP) / TCP(sport=40007, dport=22, flags="S"))  # nobody's
# Not a shared address: the host's, whatever the port (tcp:80 is a VM's on the shared addresses).
to_other_80 = from_wire(IP(src=REMOTE_IP, dst="192.0.2.99") / TCP(sport=40008, dport=80, flags="S"))
# ARP for a further shared address is answered by the host alone, as for the first.
arp_for_second = from_wire(ARP(op=1, hwsrc="02:00:00:00:00:fe", psrc="192.0.2.1", pdst=SECOND_IP),
                           dst="ff:ff:ff:ff:ff:ff")


def from_vm(n, l3):
    return from_wire(l3, src=vm_mac(n), dst="02:00:00:00:00:fe")


mail_answers = from_vm(2, IP(src=SECOND_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40001, flags="SA"))
mail_third = from_vm(2, IP(src=THIRD_IP, dst=REMOTE_IP) / TCP(sport=25, dport=40003, flags="SA"))
mail_wrong_address = from_vm(2, IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40009, flags="SA"))
web_answers = from_vm(1, IP(src=SHARED_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40000, flags="SA"))
web_wrong_address = from_vm(1, IP(src=SECOND_IP, dst=REMOTE_IP) / TCP(sport=80, dport=40010, flags="SA"))
mail_arp = Ether(src=vm_mac(2), dst="ff:ff:ff:ff:ff:ff") / ARP(
    op=1, hwsrc=vm_mac(2), psrc=THIRD_IP, pdst="192.0.2.1")
mail_arp_foreign = Ether(src=vm_mac(2), dst="ff:ff:ff:ff:ff:ff") / ARP(
    op=1, hwsrc=vm_mac(2), psrc="192.0.2.99", pdst="192.0.2.1")


def arp_out(frame):
    out = frame.copy()
    out[Ether].src = UPLINK_MAC
    out[ARP].hwsrc = UPLINK_MAC
    return Ether(bytes(out))


SEND = {
    "uplink": [to_first_80, to_second_80, to_third_80, to_third_25, to_first_25, to_first_53, to_second_22,
               to_third_22, to_other_80, arp_for_second],
    "web": [web_answers, web_wrong_address],
    "mail": [mail_answers, mail_third, mail_wrong_address, mail_arp, mail_arp_foreign],
}
EXPECT = {
    "web": [with_dst(to_first_80, vm_mac(1)), with_dst(to_first_53, vm_mac(1))],
    "mail": [with_dst(to_second_80, vm_mac(2)), with_dst(to_third_25, vm_mac(2))],
    "host": [to_second_22, to_other_80, arp_for_second],
    "uplink": [with_src(web_answers, UPLINK_MAC), with_src(mail_answers, UPLINK_MAC),
               with_src(mail_third, UPLINK_MAC), arp_out(mail_arp)],
}
EXPECT_STATS = {"rx_uplink": 10, "to_vm": 4, "to_host": 3, "drop_unmatched": 3, "drop_spoof_port": 2,
                "drop_spoof_arp": 1, "to_uplink_from_vm": 4}
