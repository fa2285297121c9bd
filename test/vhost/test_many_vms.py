#!/usr/bin/env python3
"""1,024 VMs in one portmux: every VM a vhost-user port on the vhost library, most of them without a guest.

Four VMs spread over the range (the first, the second, the 512th and the 1,024th) get a guest: one
dpdk-testpmd process with four net_virtio_user ports. Frames from the uplink (a veth pair into a private
namespace) go to each VM's own UDP port and to a VM without a guest; every frame must reach exactly its VM
(portmux's counters and the guests' own agree), the one without a guest counts transmit drops. Then a range
moves from the first VM to the last while frames flow: none is lost, both VMs get some. At the limit,
/portmux/vm/add refuses a 1,025th VM and changes nothing; a VM removed frees its index for the next one.

Usage: test_many_vms.py PORTMUX [--keep]   (root, dpdk-testpmd, 256 MiB of free hugepages; else it skips)
"""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import consumers  # noqa: E402
import telemetry  # noqa: E402  (consumers puts it on the path)

VMS = 1024
GUESTS = [0, 1, 511, 1023]  # VM indexes with a guest
NO_GUEST = 700              # a VM whose socket nobody attached to
SHARED_IP = "192.0.2.10"
PEER_IP = "198.51.100.7"
UPLINK_MAC = "02:00:00:00:0a:01"
PEER_MAC = "02:00:00:00:0b:07"
PER_VM = 100
MOVED = 4000


def vm_mac(i):
    return "52:54:00:00:%02x:%02x" % (i // 256, i % 256)


def vm_port(i):
    return 10000 + i


def udp_frame(dport, seq, sport=40000):
    """A UDP frame from the peer (PEER_IP:SPORT) to the shared IP's DPORT carrying SEQ in its first bytes."""
    import struct
    payload = struct.pack("!I", seq) + b"portmux-many-vms"
    udp_len = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, seq & 0xffff, 0, 64, 17, 0,
                     bytes(map(int, PEER_IP.split("."))), bytes(map(int, SHARED_IP.split("."))))
    csum = 0
    for k in range(0, 20, 2):
        csum += (ip[k] << 8) | ip[k + 1]
    while csum >> 16:
        csum = (csum & 0xffff) + (csum >> 16)
    ip = ip[:10] + struct.pack("!H", ~csum & 0xffff) + ip[12:]
    udp = struct.pack("!HHHH", sport, dport, udp_len, 0) + payload  # UDP checksum 0: none (IPv4)
    eth = bytes.fromhex(UPLINK_MAC.replace(":", "")) + bytes.fromhex(PEER_MAC.replace(":", "")) + b"\x08\x00"
    return eth + ip + udp


def write_frames(path, frames):
    with open(path, "w") as f:
        for frame in frames:
            f.write(frame.hex() + "\n")


def fail(errors, message):
    errors.append(message)
    print("FAIL: " + message, flush=True)


def check(errors, condition, message):
    if condition:
        print("PASS: " + message, flush=True)
    else:
        fail(errors, message)


def tx_packets(tel, index):
    return consumers.vm_entry(tel, "vm%d" % index)["tx_packets"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("portmux")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    reason = consumers.skip_reason(256)
    if reason:
        print("SKIP: %s" % reason)
        return 77
    errors = []
    work = tempfile.mkdtemp(prefix="pmx-many-")
    prefix = "pmx-many-%d" % os.getpid()
    uplink = consumers.NamespaceUplink("many")
    guest = None
    proc = None
    try:
        uplink.create()
        vms = []
        for i in range(VMS):
            vm = {"name": "vm%d" % i, "mac": vm_mac(i), "ranges": ["udp:%d" % vm_port(i)]}
            if i in GUESTS:
                vm.update({"vhost": os.path.join(work, "vm%d.sock" % i), "vhost_mode": "server"})
            else:
                vm.update({"vhost": os.path.join(work, "nobody", "vm%d.sock" % i)})  # client mode: nobody listens
            vms.append(vm)
        config = {"shared_ip": SHARED_IP, "uplink": {"device": uplink.device(), "mac": UPLINK_MAC},
                  "host": {"device": "net_null1,no-rx=1"}, "vms": vms, "unmatched": "drop"}
        started = time.monotonic()
        proc, log_path = telemetry.start_portmux(args.portmux, config, work, prefix, timeout=180)
        print("note: portmux with %d VMs answered after %.1f s" % (VMS, time.monotonic() - started), flush=True)
        tel = telemetry.Telemetry(telemetry.socket_path(prefix), timeout=30)

        info = tel.query("/portmux/info")
        check(errors, info["vms"] == VMS and info["max_vms"] == VMS, "1,024 VMs configured (info: %s of %s)" % (
            info["vms"], info["max_vms"]))
        page = tel.query("/portmux/vms")
        check(errors, page["page_total"] == VMS, "/portmux/vms lists every VM (page_total %s)" % page["page_total"])

        guest = consumers.Consumer("many", [(os.path.join(work, "vm%d.sock" % i), vm_mac(i)) for i in GUESTS], work)
        guest.start()
        late = consumers.wait_links(tel, ["vm%d" % i for i in GUESTS])
        check(errors, not late, "the guests of VMs %s are attached (link up)%s" % (
            GUESTS, "" if not late else ": not " + ", ".join(late) + "\n" + guest.log()))
        if late:
            return 1
        for i in GUESTS:
            entry = consumers.vm_entry(tel, "vm%d" % i)
            check(errors, "q0_to_vm_packets" in entry and "q0_from_vm_packets" in entry,
                  "vm%d: the vhost library's per-queue statistics are listed" % i)
            check(errors, entry.get("connected") == 1 and entry.get("queue_pairs") == 1 and entry.get("tx_queues") == 1,
                  "vm%d: connected with one queue pair (%s)" % (i, {k: entry.get(k) for k in (
                      "connected", "queue_pairs", "tx_queues", "rx_queues")}))
        idle = consumers.vm_entry(tel, "vm%d" % NO_GUEST)
        check(errors, idle["link"] == "down" and idle.get("connected") == 0, "vm%d has no guest: link down" % NO_GUEST)

        # The limit: one VM more is refused and nothing changes.
        answer = tel.query("/portmux/vm/add,extra,%s,52:54:00:0f:00:01,server" % os.path.join(work, "extra.sock"))
        check(errors, "too many VMs" in answer.get("error", ""), "a 1,025th VM is refused: %s" % answer)
        check(errors, tel.query("/portmux/info")["vms"] == VMS and not os.path.exists(os.path.join(work, "extra.sock")),
              "after the refusal: still 1,024 VMs and no socket made")

        # A guest shows link up once its driver is ready, which may be a moment before its receive buffers
        # are posted: frames sent then are counted as transmit drops. One frame to each guest until it
        # arrives, then every count below is taken from there.
        probe = os.path.join(work, "probe.hex")
        write_frames(probe, [udp_frame(vm_port(i), 0) for i in GUESTS])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            uplink.send(probe)
            time.sleep(0.3)
            if all(tx_packets(tel, i) > 0 for i in GUESTS):
                break
        start = {i: consumers.vm_entry(tel, "vm%d" % i) for i in GUESTS + [NO_GUEST]}
        start_guest = {k: guest.port_stats(k)["ipackets"] for k in range(len(GUESTS))}

        # Every frame to its VM.
        frames = []
        for i in GUESTS + [NO_GUEST]:
            frames += [udp_frame(vm_port(i), n) for n in range(PER_VM)]
        path = os.path.join(work, "to-vms.hex")
        write_frames(path, frames)
        before = tel.query("/portmux/stats")
        sent = uplink.send(path)
        stats = consumers.wait_settled(tel)
        received = stats["rx_uplink"] - before["rx_uplink"]
        check(errors, received >= sent, "the uplink received the %d frames sent (%d)" % (sent, received))
        check(errors, stats["to_vm"] - before["to_vm"] == len(frames),
              "to_vm counts %d frames (%d)" % (len(frames), stats["to_vm"] - before["to_vm"]))
        for k, i in enumerate(GUESTS):
            entry = consumers.vm_entry(tel, "vm%d" % i)
            sent_i = entry["tx_packets"] - start[i]["tx_packets"]
            dropped_i = entry["tx_dropped"] - start[i]["tx_dropped"]
            got = guest.port_stats(k)["ipackets"] - start_guest[k]
            check(errors, sent_i == PER_VM and got == PER_VM and dropped_i == 0,
                  "vm%d: portmux sent %d (%d transmit drops), its guest received %d of %d" % (
                      i, sent_i, dropped_i, got, PER_VM))
        idle = consumers.vm_entry(tel, "vm%d" % NO_GUEST)
        check(errors, idle["tx_packets"] == 0 and idle["tx_dropped"] - start[NO_GUEST]["tx_dropped"] == PER_VM,
              "vm%d (no guest): %d transmit drops, nothing sent" % (NO_GUEST, idle["tx_dropped"]))
        others = [v for k, v in tel.query("/portmux/vms,offset=100").items()
                  if isinstance(v, dict) and int(k) not in GUESTS and v["tx_packets"] + v["tx_dropped"] != 0]
        check(errors, not others, "VMs 100-119 (no traffic for them) got nothing: %s" % [v["name"] for v in others])

        # A range moves from the first VM to the last while frames flow.
        path = os.path.join(work, "moved.hex")
        write_frames(path, [udp_frame(vm_port(0), n) for n in range(MOVED)])
        first_before, last_before = tx_packets(tel, 0), tx_packets(tel, 1023)
        ring_full_before = sum(consumers.vm_entry(tel, "vm%d" % i)["tx_dropped"] for i in (0, 1023))
        guest_first, guest_last = guest.port_stats(0)["ipackets"], guest.port_stats(3)["ipackets"]
        before = tel.query("/portmux/stats")
        sender = threading.Thread(target=lambda: uplink.send(path, pace=10))
        sender.start()
        deadline = time.monotonic() + 20
        while tx_packets(tel, 0) == first_before and time.monotonic() < deadline:
            time.sleep(0.01)
        moved = tel.query("/portmux/range/move,udp:%d,vm1023" % vm_port(0))
        sender.join()
        check(errors, "error" not in moved, "range udp:%d moved to vm1023 under traffic: %s" % (vm_port(0), moved))
        stats = consumers.wait_settled(tel)
        first, last = tx_packets(tel, 0) - first_before, tx_packets(tel, 1023) - last_before
        ring_full = sum(consumers.vm_entry(tel, "vm%d" % i)["tx_dropped"] for i in (0, 1023)) - ring_full_before
        arrived = stats["rx_uplink"] - before["rx_uplink"]
        check(errors, first > 0 and last > 0, "both VMs got part of the flow (vm0 %d, vm1023 %d)" % (first, last))
        # A guest that does not drain its ring in time costs counted transmit drops (the guests share the
        # cores with portmux here); the move itself must lose nothing and send nothing elsewhere.
        check(errors, arrived == MOVED and stats["to_vm"] - before["to_vm"] == MOVED and first + last + ring_full == MOVED,
              "every frame of the moved range accounted for: %d + %d sent, %d ring full, of %d (uplink rx %d)" % (
                  first, last, ring_full, MOVED, arrived))
        if ring_full:
            print("note: %d frames found a guest's ring full (counted in tx_dropped)" % ring_full)
        g_first = guest.port_stats(0)["ipackets"] - guest_first
        g_last = guest.port_stats(3)["ipackets"] - guest_last
        check(errors, g_first == first and g_last == last, "the guests agree (vm0 %d, vm1023 %d)" % (g_first, g_last))

        # Remove a VM and add another in its place at runtime.
        answer = tel.query("/portmux/vm/del,vm%d" % NO_GUEST)
        check(errors, "owns 1 range" in answer.get("error", ""), "vm/del refuses a VM with ranges: %s" % answer)
        tel.query("/portmux/range/del,udp:%d" % vm_port(NO_GUEST))
        answer = tel.query("/portmux/vm/del,vm%d" % NO_GUEST)
        check(errors, answer.get("index") == NO_GUEST, "vm%d removed: %s" % (NO_GUEST, answer))
        new_sock = os.path.join(work, "newcomer.sock")
        answer = tel.query("/portmux/vm/add,newcomer,%s,52:54:00:0f:00:02,server" % new_sock)
        check(errors, answer.get("index") == NO_GUEST and os.path.exists(new_sock),
              "a new VM takes the free index %d and its socket exists: %s" % (NO_GUEST, answer))
        entry = consumers.vm_entry(tel, "newcomer")
        check(errors, entry["tx_dropped"] == 0 and entry["ranges"] == 0,
              "the newcomer's counters start from zero (tx_dropped %d)" % entry["tx_dropped"])
        check(errors, tel.query("/portmux/vm/add,extra,%s,52:54:00:0f:00:01" % os.path.join(work, "x.sock")).get(
            "error", "").startswith("too many VMs"), "full again: one more is refused")

        tel.close()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        check(errors, code == 0, "SIGTERM stops portmux with exit status 0 (%s)" % code)
        proc = None
    finally:
        if guest is not None:
            guest.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        uplink.destroy()
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)
        if args.keep:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    if errors:
        print("FAILED: %d check(s)" % len(errors))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
