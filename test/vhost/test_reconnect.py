#!/usr/bin/env python3
"""Either side of a vhost-user VM restarts, in both socket modes: the other side notices and traffic resumes.

For each `vhost_mode` (`client`, the default, where the guest's side owns the socket and portmux reconnects
to it; `server`, where portmux owns it) a guest (dpdk-testpmd rxonly on net_virtio_user; `server=1` in
client mode, as QEMU's `server=on`) attaches and receives frames from the uplink, each one counted by both
sides. Then:
- the guest is killed (SIGKILL): its link goes down in /portmux/vms, portmux keeps running and counts what
  it cannot deliver (the VM's tx_dropped, nothing transmitted); a new guest on the same socket attaches
  and receives again;
- portmux is killed (SIGKILL) and started again with the same configuration and sockets, the guest
  running on:
  client mode: the guest's virtio-user server waits for a new connection, portmux connects to it and
  traffic flows again without touching the guest;
  server mode: DPDK 22.11's virtio-user client does not reconnect (its port stays down and its socket
  points at the old, removed listener); portmux's VM stays down and counts drops until a new guest
  connects to the new socket, which then receives again (QEMU with `reconnect=N` does reconnect).
Every wait is a poll of counters or link states with a bounded timeout.

Usage: test_reconnect.py PORTMUX   (root, dpdk-testpmd, 256 MiB of free hugepages; else it skips)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import consumers  # noqa: E402
import telemetry  # noqa: E402  (consumers puts it on the path)
from test_many_vms import SHARED_IP, UPLINK_MAC, udp_frame, write_frames, check  # noqa: E402

VM_MAC = "52:54:00:00:00:3c"
VM_PORT = 10000  # udp_frame() sends from 40000 to this port
FRAMES = 200
# How long a guest whose switch came back is watched for reconnecting on its own (server mode), seconds.
RECONNECT_WATCH = 10


class Switch:
    """One portmux process on a fixed configuration and file prefix, killed and started again at will."""

    def __init__(self, portmux, config, work, prefix):
        self.portmux, self.config, self.work, self.prefix = portmux, config, work, prefix
        self.proc = None
        self.tel = None
        self.starts = 0

    def start(self):
        # start_portmux writes WORK/portmux.log afresh: keep the previous run's log for a post-mortem.
        log_path = os.path.join(self.work, "portmux.log")
        if os.path.exists(log_path):
            os.replace(log_path, os.path.join(self.work, "portmux-run%d.log" % self.starts))
        self.starts += 1
        self.proc, _ = telemetry.start_portmux(self.portmux, self.config, self.work, self.prefix)
        self.tel = telemetry.Telemetry(telemetry.socket_path(self.prefix), timeout=30)

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        """SIGKILL, as a crash: no clean-up of sockets or vhost connections."""
        if self.tel is not None:
            self.tel.close()
            self.tel = None
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self):
        """SIGTERM; returns the exit status."""
        if self.tel is not None:
            self.tel.close()
            self.tel = None
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = None
        self.proc = None
        return status


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return predicate()


def guest_received(guest):
    try:
        return guest.port_stats(0)["ipackets"]
    except (OSError, ValueError, telemetry.TelemetryError):
        return None


def deliver(switch, guest, uplink, work, errors, what):
    """Frames from the uplink reach the guest: a probe until the guest counts one (its queues may be enabled
    a moment after the link comes up), then FRAMES frames, every one that portmux transmitted counted by
    the guest and every one accounted for (transmitted or ring full)."""
    probe = os.path.join(work, "probe.hex")
    write_frames(probe, [udp_frame(VM_PORT, 0)])
    first = guest_received(guest) or 0

    def probe_arrived():
        uplink.send(probe)
        time.sleep(0.3)
        return (guest_received(guest) or 0) > first
    if not wait_for(probe_arrived, 30):
        check(errors, False, "%s: a probe frame reaches the guest within 30 s (VM %s)" % (
            what, consumers.vm_entry(switch.tel, "vm")))
        return
    consumers.wait_settled(switch.tel)
    start = consumers.vm_entry(switch.tel, "vm")
    start_guest = guest_received(guest)
    path = os.path.join(work, "frames.hex")
    write_frames(path, [udp_frame(VM_PORT, n) for n in range(1, FRAMES + 1)])
    uplink.send(path, pace=10)
    consumers.wait_settled(switch.tel)
    entry = consumers.vm_entry(switch.tel, "vm")
    sent = entry["tx_packets"] - start["tx_packets"]
    dropped = entry["tx_dropped"] - start["tx_dropped"]
    # The guest counts on its own thread: wait until it has seen what portmux handed over (or time out).
    wait_for(lambda: (guest_received(guest) or 0) - start_guest >= sent, 10)
    got = (guest_received(guest) or 0) - start_guest
    check(errors, sent > 0 and sent + dropped == FRAMES and got == sent,
          "%s: %d frames to the guest: %d transmitted, %d ring full, %d received by the guest" % (
              what, FRAMES, sent, dropped, got))


def dropped_while_down(switch, uplink, work, errors, what):
    """While no guest is attached, frames for the VM are dropped at once and counted, none transmitted."""
    before = consumers.vm_entry(switch.tel, "vm")
    path = os.path.join(work, "down.hex")
    write_frames(path, [udp_frame(VM_PORT, n) for n in range(100)])
    uplink.send(path, pace=10)
    consumers.wait_settled(switch.tel)
    after = consumers.vm_entry(switch.tel, "vm")
    check(errors, after["tx_dropped"] - before["tx_dropped"] == 100 and after["tx_packets"] == before["tx_packets"],
          "%s: 100 frames for the absent guest are counted as dropped (tx_dropped +%d, tx_packets +%d)" % (
              what, after["tx_dropped"] - before["tx_dropped"], after["tx_packets"] - before["tx_packets"]))


def show_logs(work):
    for name in sorted(os.listdir(work)):
        if name.endswith(".log"):
            with open(os.path.join(work, name), errors="replace") as f:
                print("---- end of %s\n%s" % (name, f.read()[-1500:]), flush=True)


def run_mode(mode, portmux, base_work, errors):
    print("== vhost_mode %s" % mode, flush=True)
    work = os.path.join(base_work, mode)
    os.makedirs(work)
    prefix = "pmx-rc-%s-%d" % (mode, os.getpid())
    uplink = consumers.NamespaceUplink("rc" + mode[0])
    sock = os.path.join(work, "vm.sock")
    switch = Switch(portmux, None, work, prefix)
    guest = None
    failures_before = len(errors)

    def new_guest():
        g = consumers.Consumer("rc-%s" % mode, [(sock, VM_MAC)], work, mode="rxonly", server=(mode == "client"))
        g.start()
        return g

    try:
        uplink.create()
        switch.config = {"shared_ip": SHARED_IP, "uplink": {"device": uplink.device(), "mac": UPLINK_MAC},
                         "host": {"device": "net_null1,no-rx=1"}, "unmatched": "drop",
                         "vms": [{"name": "vm", "vhost": sock, "vhost_mode": mode, "mac": VM_MAC,
                                  "ranges": ["udp:%d" % VM_PORT]}]}
        switch.start()
        guest = new_guest()
        late = consumers.wait_links(switch.tel, ["vm"])
        check(errors, not late, "%s mode: the guest attaches" % mode + ("" if not late else "\n" + guest.log()))
        if late:
            return
        deliver(switch, guest, uplink, work, errors, "%s mode, first guest" % mode)

        # The guest dies.
        guest.stop(hard=True)
        late = consumers.wait_links(switch.tel, ["vm"], up=False, timeout=20)
        entry = consumers.vm_entry(switch.tel, "vm")
        check(errors, not late and entry["connected"] == 0,
              "%s mode: SIGKILL of the guest: the VM's link goes down (link %s, connected %s)" % (
                  mode, entry["link"], entry["connected"]))
        dropped_while_down(switch, uplink, work, errors, "%s mode, guest gone" % mode)
        check(errors, switch.running(), "%s mode: portmux runs on after its guest was killed" % mode)

        # A new guest on the same socket.
        guest = new_guest()
        late = consumers.wait_links(switch.tel, ["vm"])
        check(errors, not late, "%s mode: a new guest on the same socket attaches (link up)" % mode +
              ("" if not late else "\n" + guest.log()))
        if late:
            return
        deliver(switch, guest, uplink, work, errors, "%s mode, restarted guest" % mode)

        # portmux dies and comes back on the same configuration; the guest runs on.
        switch.kill()
        check(errors, wait_for(lambda: not guest.link_up(0), 20) and guest.running(),
              "%s mode: SIGKILL of portmux: the guest runs on and sees its link down" % mode)
        switch.start()
        if mode == "client":
            late = consumers.wait_links(switch.tel, ["vm"])
            check(errors, not late and guest.link_up(0),
                  "client mode: the restarted portmux connects to the guest's socket again (link up both sides)")
            if not late:
                deliver(switch, guest, uplink, work, errors, "client mode, restarted portmux, same guest")
        else:
            reattached = consumers.wait_links(switch.tel, ["vm"], timeout=RECONNECT_WATCH) == []
            check(errors, not reattached and not guest.link_up(0) and guest.running(),
                  "server mode: DPDK 22.11's virtio-user client does not reconnect to the restarted portmux "
                  "(link still down on both sides %d s later)" % RECONNECT_WATCH)
            dropped_while_down(switch, uplink, work, errors, "server mode, restarted portmux, stale guest")
            guest.stop(hard=True)
            guest = new_guest()
            late = consumers.wait_links(switch.tel, ["vm"])
            check(errors, not late, "server mode: a new guest connects to the restarted portmux's socket")
            if not late:
                deliver(switch, guest, uplink, work, errors, "server mode, restarted portmux, new guest")
        check(errors, switch.stop() == 0, "%s mode: SIGTERM stops the restarted portmux with exit status 0" % mode)
    finally:
        if len(errors) > failures_before:
            show_logs(work)
        if guest is not None:
            guest.stop(hard=True)
        switch.kill()
        uplink.destroy()
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)


def main():
    portmux = sys.argv[1]
    reason = consumers.skip_reason(256)
    if reason:
        print("SKIP: %s" % reason)
        return 77
    errors = []
    work = tempfile.mkdtemp(prefix="pmx-rc-")
    try:
        for mode in ("client", "server"):
            run_mode(mode, portmux, work, errors)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if errors:
        print("FAILED: %d check(s)" % len(errors))
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
