#!/usr/bin/env python3
"""A guest with four queue pairs (net_virtio_user queues=4): portmux enables and polls all of them.

The guest (dpdk-testpmd txonly on four queues) sends from its own UDP port: every queue's frames are
dequeued (the vhost library's per-queue counters grow on all four) and leave the uplink (to_uplink_from_vm
equals the VM's rx). Then the guest receives (rxonly): frames from the uplink reach it, every one once.
Last, several flows carrying sequence numbers go through the guest and back (testpmd 5tswap answers each
frame on its queue), spread by the uplink's two queues over both workers and two guest queues: every
frame comes back once and each flow in its order.

Usage: test_multiqueue.py PORTMUX   (root, dpdk-testpmd, 256 MiB of free hugepages; else it skips)
"""

import os
import shutil
import signal
import struct
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import consumers  # noqa: E402
import telemetry  # noqa: E402
from test_many_vms import SHARED_IP, PEER_IP, UPLINK_MAC, PEER_MAC, udp_frame, write_frames, check  # noqa: E402

QUEUES = 4
# Two workers (lcores 1 and 2; lcore 0 is the control thread) and an uplink with a queue pair each: the
# kernel spreads the uplink's flows over both workers, each transmits on its own guest queue, and the
# guest's four queues are polled by both.
WORKERS = 2
PORTMUX_LCORES = "0@0,1@0,2@1"
VM_MAC = "52:54:00:00:00:2a"
VM_PORT = 10000  # udp_frame() sends from 40000 to this port


def check_flow_order(tel, sock, work, uplink, errors):
    """Several flows through a four-queue guest and back: every frame once, each flow in its order.

    The guest (testpmd 5tswap on four queues) answers every frame on the queue it arrived on with
    addresses and ports swapped, so the answer leaves the uplink from the VM's own port; the namespace
    records what comes back. 16 flows (peer source ports 40000 + f) send 50 frames each, interleaved, frame
    n of a flow carrying n: each (flow, n) must come back exactly once and each flow's numbers in
    increasing order (frames of a flow may interleave with other flows' at will). The uplink's two queues
    spread the flows over both workers, so the frames reach the guest on two of its queues (all 16 flows
    hashed to one uplink queue would happen once in 30,000 runs)."""
    flows, per_flow = 16, 50
    total = flows * per_flow
    # Large rings: a guest descheduled for a moment on a busy machine should not make portmux drop.
    guest = consumers.Consumer("mq-order", [(sock, VM_MAC)], work, mode="5tswap", queues=QUEUES, queue_size=1024,
                               extra=["--rxd=1024", "--txd=1024"])
    guest.start()
    try:
        late = consumers.wait_links(tel, ["mq"])
        check(errors, not late, "the guest is attached again (answering, 5tswap)")
        if late:
            return
        # Probe until an answer comes back: the guest's queues may be enabled a moment after the link is up.
        probe = os.path.join(work, "order-probe.hex")
        write_frames(probe, [udp_frame(VM_PORT, 0, sport=39999)])
        answered = False
        for _ in range(30):
            recorder = uplink.sniff(os.path.join(work, "probe-answer.hex"), SHARED_IP, 1, 1.0)
            uplink.send(probe)
            recorder.wait()
            with open(os.path.join(work, "probe-answer.hex")) as f:
                answered = bool(f.read().strip())
            if answered:
                break
        check(errors, answered, "a probe through the answering guest comes back to the uplink")
        if not answered:
            return
        consumers.wait_settled(tel, key="to_uplink_from_vm")
        before = consumers.vm_entry(tel, "mq")
        before_stats = tel.query("/portmux/stats")

        frames = [udp_frame(VM_PORT, n, sport=40000 + f) for n in range(per_flow) for f in range(flows)]
        path = os.path.join(work, "flows.hex")
        write_frames(path, frames)
        answers = os.path.join(work, "answers.hex")
        recorder = uplink.sniff(answers, SHARED_IP, total, 30.0)
        uplink.send(path, pace=10)
        recorder.wait()
        consumers.wait_settled(tel, key="to_uplink_from_vm")
        after = consumers.vm_entry(tel, "mq")
        stats = tel.query("/portmux/stats")

        seen = {}
        order_broken = []
        duplicates = []
        stray = 0
        with open(answers) as f:
            for line in f:
                frame = bytes.fromhex(line.strip())
                ihl = (frame[14] & 0x0f) * 4
                udp = frame[14 + ihl:]
                sport, dport = struct.unpack("!HH", udp[:4])
                if frame[23] != 17 or sport != VM_PORT or not 40000 <= dport < 40000 + flows:
                    stray += 1
                    continue
                flow, n = dport - 40000, struct.unpack("!I", udp[8:12])[0]
                got = seen.setdefault(flow, [])
                if n in got:
                    duplicates.append((flow, n))
                elif got and n < got[-1]:
                    order_broken.append((flow, got[-1], n))
                got.append(n)
        missing = sum(per_flow - len(set(seen.get(f, []))) for f in range(flows))
        to_vm = [after.get("q%d_to_vm_packets" % q, 0) - before.get("q%d_to_vm_packets" % q, 0) for q in range(QUEUES)]
        from_vm = [after.get("q%d_from_vm_packets" % q, 0) - before.get("q%d_from_vm_packets" % q, 0)
                   for q in range(QUEUES)]
        sent = after["tx_packets"] - before["tx_packets"]
        ring_full = after["tx_dropped"] - before["tx_dropped"]
        back = after["rx_packets"] - before["rx_packets"]
        uplinked = stats["to_uplink_from_vm"] - before_stats["to_uplink_from_vm"]
        check(errors, sent + ring_full == total and back == sent and uplinked == sent,
              "%d frames of %d flows to the guest and back: to the VM %d (ring full %d), from the VM %d, to the "
              "uplink %d (per guest queue to the VM %s, from it %s)" % (
                  total, flows, sent, ring_full, back, uplinked, to_vm, from_vm))
        # A frame the guest's full ring refused (counted above) is the only kind allowed not to come back.
        check(errors, missing == ring_full and not duplicates and stray == 0,
              "every frame of every flow came back exactly once (%d missing, %d refused by a full ring, "
              "%d duplicated, %d stray)" % (missing, ring_full, len(duplicates), stray))
        check(errors, sum(1 for n in to_vm if n > 0) >= 2,
              "the flows reached the guest on more than one of its queues (per queue %s)" % to_vm)
        check(errors, not order_broken,
              "each of the %d flows kept its order through the four-queue guest%s" % (
                  flows, "" if not order_broken else ": out of order (flow, after, got) %s" % order_broken[:5]))
    finally:
        guest.stop()


def main():
    portmux = sys.argv[1]
    reason = consumers.skip_reason(256)
    if reason:
        print("SKIP: %s" % reason)
        return 77
    errors = []
    work = tempfile.mkdtemp(prefix="pmx-mq-")
    prefix = "pmx-mq-%d" % os.getpid()
    uplink = consumers.NamespaceUplink("mq")
    sock = os.path.join(work, "mq.sock")
    guest = proc = None
    try:
        uplink.create()
        config = {"shared_ip": SHARED_IP, "uplink": {"device": uplink.device(qpairs=WORKERS), "mac": UPLINK_MAC},
                  "host": {"device": "net_null1,no-rx=1"}, "unmatched": "drop",
                  "vms": [{"name": "mq", "vhost": sock, "vhost_mode": "server", "mac": VM_MAC,
                           "ranges": ["udp:%d" % VM_PORT, "udp:30000-30099"]}]}
        proc, _ = telemetry.start_portmux(portmux, config, work, prefix, lcores=PORTMUX_LCORES)
        tel = telemetry.Telemetry(telemetry.socket_path(prefix), timeout=30)

        # Sending on all four queues, from port 30000 of the VM's range.
        guest = consumers.Consumer("mq-tx", [(sock, VM_MAC)], work, mode="txonly", queues=QUEUES, extra=[
            "--tx-ip=%s,%s" % (SHARED_IP, PEER_IP), "--tx-udp=30000,40000", "--eth-peer=0,%s" % PEER_MAC,
            "--txpkts=64", "--burst=8"])
        guest.start()
        late = consumers.wait_links(tel, ["mq"])
        check(errors, not late, "the four-queue guest is attached" + ("" if not late else "\n" + guest.log()))
        if late:
            return 1
        time.sleep(2)
        entry = consumers.vm_entry(tel, "mq")
        check(errors, entry["queue_pairs"] == QUEUES and entry["rx_queues"] == QUEUES and entry["tx_queues"] == QUEUES,
              "every queue pair enabled (queue_pairs %s, rx_queues %s, tx_queues %s)" % (
                  entry["queue_pairs"], entry["rx_queues"], entry["tx_queues"]))
        per_queue = [entry.get("q%d_from_vm_packets" % q, 0)
                     for q in range(QUEUES)]
        check(errors, all(n > 0 for n in per_queue), "frames dequeued from each of the four queues: %s" % per_queue)
        guest.stop()
        stats = consumers.wait_settled(tel, key="to_uplink_from_vm")
        entry = consumers.vm_entry(tel, "mq")
        check(errors, entry["rx_packets"] > 0 and entry["rx_packets"] == stats["to_uplink_from_vm"] and
              entry["dropped_spoof"] == 0,
              "every frame from the guest left the uplink once (rx %d, to_uplink_from_vm %d)" % (
                  entry["rx_packets"], stats["to_uplink_from_vm"]))

        # Receiving: the same VM, a four-queue guest in rxonly.
        guest = consumers.Consumer("mq-rx", [(sock, VM_MAC)], work, mode="rxonly", queues=QUEUES)
        guest.start()
        late = consumers.wait_links(tel, ["mq"])
        check(errors, not late, "the guest is attached again (receiving)")
        before = consumers.vm_entry(tel, "mq")
        probe = os.path.join(work, "probe.hex")
        write_frames(probe, [udp_frame(VM_PORT, 0)])
        deadline = time.monotonic() + 30
        while consumers.vm_entry(tel, "mq")["tx_packets"] == before["tx_packets"] and time.monotonic() < deadline:
            uplink.send(probe)
            time.sleep(0.3)
        start = consumers.vm_entry(tel, "mq")
        start_guest = guest.port_stats(0)["ipackets"]
        path = os.path.join(work, "to-vm.hex")
        write_frames(path, [udp_frame(VM_PORT, n) for n in range(500)])
        uplink.send(path, pace=10)
        consumers.wait_settled(tel)
        entry = consumers.vm_entry(tel, "mq")
        sent = entry["tx_packets"] - start["tx_packets"]
        dropped = entry["tx_dropped"] - start["tx_dropped"]
        got = guest.port_stats(0)["ipackets"] - start_guest
        check(errors, sent + dropped == 500 and got == sent,
              "500 frames to the guest: %d sent, %d ring full, %d received" % (sent, dropped, got))

        guest.stop()
        guest = None
        check_flow_order(tel, sock, work, uplink, errors)

        tel.close()
        proc.send_signal(signal.SIGTERM)
        check(errors, proc.wait(timeout=30) == 0, "SIGTERM stops portmux with exit status 0")
        proc = None
    finally:
        if guest is not None:
            guest.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        uplink.destroy()
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        print("FAILED: %d check(s)" % len(errors))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
