#!/usr/bin/python3
"""Capture of a vhost-user VM's traffic (/portmux/capture/*, portmuxctl capture) with real traffic both ways.

portmux runs with a TAP uplink (the test writes the router's frames into it while portmux runs) and vhost-user
VMs in server mode. The guest of VM "web" is dpdk-testpmd in io mode: its net_virtio_user port on web's socket
is paired with a net_pcap port whose rx_pcap holds the frames the VM sends (forwarded as soon as it starts,
--no-flush-rx) and whose tx_pcap receives every frame the VM gets.

Checked: refusals (unknown VM, device VM, relative path, a file that cannot be created or exists, bad
MAX_PACKETS, a VM already captured, one capture too many) answer an error and change nothing, leaving no file;
a capture's file has one interface named "vm:web" (Ethernet, the snap length, the VM's MAC) and exactly the
frames from the VM (inbound, as the guest sent them) and to it (outbound, as the guest received them), in
order; the stop answers the counts; a capture with MAX_PACKETS stops by itself after that many frames; a
capture still running at shutdown is closed whole.

Needs dpdk-testpmd and 64 MiB of free hugepages for the guest (else it is skipped, exit status 77).
Usage: /usr/bin/python3 test_capture.py PORTMUX PORTMUXCTL
"""

import glob
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from telemetry import RUNTIME_DIR, Telemetry, TelemetryError, socket_path, start_portmux  # noqa: E402

from scapy.all import IP, UDP, Ether, Raw, rdpcap, sendp, wrpcap  # noqa: E402

SHARED_IP = "192.0.2.10"
PEER_IP = "198.51.100.7"
UPLINK_MAC = "02:00:00:00:0a:01"
GW_MAC = "02:00:00:00:00:fe"
WEB_MAC = "52:54:00:12:34:01"
GUEST_HUGEPAGES_MIB = 64
SKIP = 77

failures = []


def check(condition, message, detail=None):
    if not condition:
        failures.append(message)
        print("FAIL: %s" % message)
        if detail is not None:
            for line in str(detail).splitlines()[:30]:
                print("    " + line)
    return condition


def hugepages_free_mib():
    values = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            values[key] = rest.split()
    return int(values.get("HugePages_Free", ["0"])[0]) * int(values.get("Hugepagesize", ["0"])[0]) // 1024


def mac_bytes(mac):
    return bytes(int(part, 16) for part in mac.split(":"))


def from_router(batch, i):
    """A frame of the router's to VM web's range (UDP 7000-7099)."""
    return Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP) / \
        UDP(sport=40000, dport=7000 + i) / Raw(b"batch %d to web %d" % (batch, i))


def from_web(i):
    return Ether(src=WEB_MAC, dst=GW_MAC) / IP(src=SHARED_IP, dst=PEER_IP) / \
        UDP(sport=7000 + i, dport=40000) / Raw(b"from web %d" % i)


def delivered_to_web(frame):
    """A router's frame as portmux hands it to web: only the destination MAC changes."""
    return mac_bytes(WEB_MAC) + bytes(frame)[6:]


# ---- pcapng, read block by block (scapy's reader hides the interface block and the packet flags) ----------

def pcapng_blocks(path):
    with open(path, "rb") as f:
        data = f.read()
    blocks, off = [], 0
    while off + 12 <= len(data):
        block_type, length = struct.unpack_from("<II", data, off)
        if length < 12 or length % 4 or off + length > len(data):
            raise ValueError("%s: bad block length %d at offset %d" % (path, length, off))
        if struct.unpack_from("<I", data, off + length - 4)[0] != length:
            raise ValueError("%s: trailing block length differs at offset %d" % (path, off))
        blocks.append((block_type, data[off + 8:off + length - 4]))
        off += length
    if off != len(data):
        raise ValueError("%s: %d bytes after the last block" % (path, len(data) - off))
    return blocks


def pcapng_options(body, offset):
    out = {}
    while offset + 4 <= len(body):
        code, length = struct.unpack_from("<HH", body, offset)
        if code == 0:
            break
        out[code] = body[offset + 4:offset + 4 + length]
        offset += 4 + (length + 3) // 4 * 4
    return out


def read_capture(path):
    """{"interfaces": [...], "packets": [(interface, flags, bytes, original length)], "stats": {...}}."""
    out = {"interfaces": [], "packets": [], "stats": None, "first": None}
    blocks = pcapng_blocks(path)
    if blocks:
        out["first"] = blocks[0][0]
    for block_type, body in blocks:
        if block_type == 1:
            linktype, _, snaplen = struct.unpack_from("<HHI", body, 0)
            opts = pcapng_options(body, 8)
            out["interfaces"].append({"linktype": linktype, "snaplen": snaplen,
                                      "name": opts.get(2, b"").decode(errors="replace"), "mac": opts.get(6)})
        elif block_type == 6:
            interface, _, _, captured, original = struct.unpack_from("<IIIII", body, 0)
            opts = pcapng_options(body, 20 + (captured + 3) // 4 * 4)
            flags = struct.unpack("<I", opts[2])[0] if 2 in opts else None
            out["packets"].append((interface, flags, body[20:20 + captured], original))
        elif block_type == 5:
            opts = pcapng_options(body, 12)
            out["stats"] = {"received": struct.unpack("<Q", opts[4])[0] if 4 in opts else None,
                            "dropped": struct.unpack("<Q", opts[5])[0] if 5 in opts else None}
    return out


# ---- processes ----------------------------------------------------------------------------------------------

class Guest:
    """dpdk-testpmd as web's guest: virtio-user on the socket, paired (io mode) with a pcap port."""

    def __init__(self, work, prefix, sock, frames_out, frames_in):
        self.prefix = prefix + "-guest"
        self.log_path = os.path.join(work, "guest.log")
        cmd = ["dpdk-testpmd", "--lcores", "0@0,1@0", "-m", str(GUEST_HUGEPAGES_MIB), "--single-file-segments",
               "--iova-mode", "va", "--no-pci", "--file-prefix", self.prefix,
               "--vdev", "net_virtio_user0,path=%s,mac=%s" % (sock, WEB_MAC),
               "--vdev", "net_pcap0,rx_pcap=%s,tx_pcap=%s" % (frames_out, frames_in),
               "--", "--forward-mode=io", "--auto-start", "--no-flush-rx", "--total-num-mbufs=2048",
               "--stats-period", "1"]
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)

    def stop(self):
        """SIGTERM (testpmd then closes its ports, which completes the tx pcap); its exit status."""
        status = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                status = self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        else:
            status = self.proc.returncode
        shutil.rmtree(os.path.join(RUNTIME_DIR, self.prefix), ignore_errors=True)
        # virtio-user needs --single-file-segments, which rules out --huge-unlink: remove the files here.
        for path in glob.glob("/dev/hugepages/%smap_*" % self.prefix) + glob.glob("/mnt/huge/%smap_*" % self.prefix):
            try:
                os.unlink(path)
            except OSError:
                pass
        return status

    def log_tail(self):
        with open(self.log_path, errors="replace") as f:
            return "\n".join(f.read().splitlines()[-15:])


class Ctl:
    def __init__(self, script, prefix, cwd):
        self.script, self.prefix, self.cwd = os.path.abspath(script), prefix, cwd

    def __call__(self, *args):
        p = subprocess.run([sys.executable, self.script, "--file-prefix", self.prefix] + list(args),
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30, cwd=self.cwd)
        return p.returncode, p.stdout, p.stderr


def wait_for(what, probe, timeout=30):
    """Polls PROBE until it answers something true; None (and a failure) after TIMEOUT seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.05)
    check(False, "%s: not within %d s" % (what, timeout))
    return None


def vm_entry(tel, name):
    answer = tel.query("/portmux/vms,%s" % name)
    return answer["0"] if "0" in answer else next(v for k, v in answer.items() if k.isdigit())


def capture_of(tel, name):
    for key, entry in tel.query("/portmux/captures").items():
        if key.isdigit() and entry["vm"] == name:
            return entry
    return None


# ---- the test -----------------------------------------------------------------------------------------------

def test_refusals(tel, ctl, work):
    """Every bad start or stop answers an error and changes nothing."""
    files_before = sorted(os.listdir(work))
    with open(os.path.join(work, "exists.pcapng"), "w") as f:
        f.write("not a capture")
    refusals = [
        ("/portmux/capture/start,nobody,%s/a.pcapng" % work, "unknown VM"),
        ("/portmux/capture/start,dev,%s/a.pcapng" % work, "dpdk-dumpcap"),
        ("/portmux/capture/start,web,a.pcapng", "absolute"),
        ("/portmux/capture/start,web,%s/missing/a.pcapng" % work, "No such file or directory"),
        ("/portmux/capture/start,web,%s/exists.pcapng" % work, "File exists"),
        ("/portmux/capture/start,web,%s/a.pcapng,0" % work, "MAX_PACKETS"),
        ("/portmux/capture/start,web,%s/a.pcapng,many" % work, "MAX_PACKETS"),
        ("/portmux/capture/start,web", "usage"),
        ("/portmux/capture/start,web,%s/a.pcapng,5,6" % work, "usage"),
        ("/portmux/capture/stop,web", "not captured"),
        ("/portmux/capture/stop,nobody", "unknown VM"),
    ]
    for command, words in refusals:
        answer = tel.query(command)
        error = answer.get("error", "") if isinstance(answer, dict) else ""
        check(words in error and len(error) < 127, "%s: expected an error with %r" % (command, words), answer)
    captures = tel.query("/portmux/captures")
    check(captures.get("captures") == 0 and captures.get("max_captures") == 4, "refusals started a capture",
          captures)
    check(sorted(os.listdir(work)) == sorted(files_before + ["exists.pcapng"]), "refusals left files behind",
          os.listdir(work))
    with open(os.path.join(work, "exists.pcapng")) as f:
        check(f.read() == "not a capture", "an existing file was overwritten")

    rc, out, err = ctl("capture", "start", "nobody", "x.pcapng")
    check(rc == 1 and err.startswith("portmuxctl: ") and "unknown VM" in err,
          "portmuxctl capture start of an unknown VM: exit %d" % rc, out + err)
    rc, out, err = ctl("capture", "stop", "web")
    check(rc == 1 and "not captured" in err, "portmuxctl capture stop without a capture: exit %d" % rc, out + err)
    rc, out, err = ctl("capture", "start", "web", "x.pcapng", "--max", "0")
    check(rc == 2, "portmuxctl capture start --max 0: exit %d (expected 2)" % rc, out + err)
    rc, out, err = ctl("capture", "list")
    check(rc == 0 and out.strip() == "no captures", "portmuxctl capture list without captures", out + err)


def test_capture_limits(tel, work):
    """With web and db captured: web again is refused, two more fit, a fifth does not; nothing changes."""
    answer = tel.query("/portmux/capture/start,web,%s/again.pcapng" % work)
    check("already captured" in answer.get("error", ""), "a second capture of web was not refused", answer)
    for name in ("spare1", "spare2"):
        answer = tel.query("/portmux/capture/start,%s,%s/%s.pcapng" % (name, work, name))
        check("error" not in answer, "capture of %s refused" % name, answer)
    answer = tel.query("/portmux/capture/start,spare3,%s/spare3.pcapng" % work)
    check("stop one first" in answer.get("error", ""), "a fifth capture was not refused", answer)
    check(tel.query("/portmux/captures").get("captures") == 4, "not four captures running")
    for name in ("spare1", "spare2"):
        answer = tel.query("/portmux/capture/stop,%s" % name)
        check(answer.get("state") == "stopped" and answer.get("written") == 0, "stop of %s" % name, answer)
    for name in ("again", "spare3"):
        check(not os.path.exists(os.path.join(work, "%s.pcapng" % name)), "a refused capture created %s" % name)


def check_capture_file(path, expected, what):
    """The file has the interface of VM web and exactly EXPECTED: [(flags, bytes)], in order."""
    try:
        got = read_capture(path)
    except (OSError, ValueError) as e:
        check(False, "%s: cannot read %s: %s" % (what, path, e))
        return
    check(got["first"] == 0x0A0D0D0A, "%s: no section header first" % what)
    check(len(got["interfaces"]) == 1, "%s: %d interfaces, expected 1" % (what, len(got["interfaces"])), got)
    if got["interfaces"]:
        idb = got["interfaces"][0]
        check(idb["name"] == "vm:web" and idb["linktype"] == 1 and idb["snaplen"] == 65535 and
              idb["mac"] == mac_bytes(WEB_MAC), "%s: interface block" % what, idb)
    packets = got["packets"]
    check(all(p[0] == 0 for p in packets), "%s: a packet of another interface" % what)
    check(all(len(p[2]) == p[3] for p in packets), "%s: a frame was cut" % what)
    got_frames = [(p[1], p[2]) for p in packets]
    if not check(got_frames == expected, "%s: %d frames, not the %d expected" % (what, len(got_frames), len(expected))):
        for i in range(max(len(got_frames), len(expected))):
            a = got_frames[i] if i < len(got_frames) else None
            b = expected[i] if i < len(expected) else None
            if a != b:
                print("    frame %d: got %s" % (i, a and (a[0], a[1].hex())))
                print("    frame %d: expected %s" % (i, b and (b[0], b[1].hex())))
                break
    check(got["stats"] == {"received": len(expected), "dropped": 0}, "%s: statistics block" % what, got["stats"])
    # Any pcapng reader sees the same frames.
    check([bytes(p) for p in rdpcap(path)] == [frame for _, frame in expected], "%s: scapy reads other frames" % what)


def main():
    if len(sys.argv) != 3:
        print(__doc__)
        return 2
    portmux, portmuxctl = sys.argv[1], sys.argv[2]
    if shutil.which("dpdk-testpmd") is None:
        print("SKIP: dpdk-testpmd is not installed (the VM's guest)")
        return SKIP
    if hugepages_free_mib() < GUEST_HUGEPAGES_MIB:
        print("SKIP: %d MiB of free hugepages, the guest needs %d" % (hugepages_free_mib(), GUEST_HUGEPAGES_MIB))
        return SKIP

    prefix = "pmx-capture-%d" % os.getpid()
    tap = "pmxcap%d" % (os.getpid() % 100000)
    work = tempfile.mkdtemp(prefix="pmx-capture-")
    proc, guest = None, None
    try:
        wrpcap(os.path.join(work, "empty.pcap"), [], linktype=1)
        to_guest = [from_web(i) for i in range(5)]
        wrpcap(os.path.join(work, "guest_out.pcap"), to_guest)

        def vhost_vm(name, n, ranges):
            return {"name": name, "vhost": os.path.join(work, name + ".sock"), "vhost_mode": "server",
                    "mac": "52:54:00:12:34:%02x" % n, "ranges": ranges}
        config = {
            "shared_ip": SHARED_IP,
            "uplink": {"device": "net_tap0,iface=%s" % tap, "mac": UPLINK_MAC},
            "host": {"device": "net_null0,no-rx=1"},
            "vms": [vhost_vm("web", 1, ["udp:7000-7099"]), vhost_vm("db", 2, ["udp:8000-8099"]),
                    vhost_vm("spare1", 3, []), vhost_vm("spare2", 4, []), vhost_vm("spare3", 5, []),
                    {"name": "dev", "device": "net_pcap1,rx_pcap=%s/empty.pcap,tx_pcap=%s/dev_tx.pcap" % (work, work),
                     "mac": "52:54:00:12:34:06"}],
        }
        try:
            proc, log_path = start_portmux(portmux, config, work, prefix)
        except TelemetryError as e:
            check(False, str(e))
            return 1
        # Without IPv6 the kernel sends nothing of its own into the TAP: the VM receives only the test's frames.
        with open("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % tap, "w") as f:
            f.write("1")
        subprocess.check_call(["ip", "link", "set", tap, "up"])
        ctl = Ctl(portmuxctl, prefix, work)

        with Telemetry(socket_path(prefix), timeout=20) as tel:
            test_refusals(tel, ctl, work)

            # A relative FILE is made absolute by portmuxctl, from its own working directory.
            web_file = os.path.join(work, "web.pcapng")
            rc, out, err = ctl("--json", "capture", "start", "web", "web.pcapng")
            started = json.loads(out) if rc == 0 else {}
            check(rc == 0 and started.get("file") == web_file and started.get("max_packets") == 100000,
                  "portmuxctl capture start web: exit %d" % rc, out + err)
            db_file = os.path.join(work, "db.pcapng")
            answer = tel.query("/portmux/capture/start,db,%s" % db_file)
            check("error" not in answer, "capture of db refused", answer)
            test_capture_limits(tel, work)

            # The guest sends its frames as soon as it starts; then the router's.
            guest = Guest(work, prefix, os.path.join(work, "web.sock"), os.path.join(work, "guest_out.pcap"),
                          os.path.join(work, "guest_in.pcap"))
            if not wait_for("web's guest connected and its %d frames received" % len(to_guest),
                            lambda: vm_entry(tel, "web")["rx_packets"] >= len(to_guest)):
                print(guest.log_tail())
                return 1
            batch1 = [from_router(1, i) for i in range(6)]
            to_db = [Ether(src=GW_MAC, dst=UPLINK_MAC) / IP(src=PEER_IP, dst=SHARED_IP) / UDP(sport=40000, dport=8000)]
            sendp(batch1 + to_db, iface=tap, verbose=False)
            wait_for("web's %d frames delivered" % len(batch1),
                     lambda: vm_entry(tel, "web")["tx_packets"] >= len(batch1))
            expected = [(1, bytes(f)) for f in to_guest] + [(2, delivered_to_web(f)) for f in batch1]
            wait_for("web's capture written", lambda: capture_of(tel, "web")["written"] >= len(expected))

            rc, out, err = ctl("capture", "list")
            rows = [line.split() for line in out.splitlines()]
            check(rc == 0 and rows and rows[0] == ["VM", "STATE", "CAPTURED", "WRITTEN", "DROPPED", "MAX", "FILE"] and
                  ["web", "running", "11", "11", "0", "100000", web_file] in rows and
                  ["db", "running", "0", "0", "0", "100000", db_file] in rows, "portmuxctl capture list", out + err)
            rc, out, err = ctl("--json", "capture", "stop", "web")
            stopped = json.loads(out) if rc == 0 else {}
            check(rc == 0 and stopped.get("state") == "stopped" and stopped.get("captured") == 11 and
                  stopped.get("written") == 11 and stopped.get("dropped") == 0, "portmuxctl capture stop web", out + err)
            check_capture_file(web_file, expected, "web's capture")

            # MAX_PACKETS: of the next six frames to web, the capture takes three and finishes by itself.
            limited_file = os.path.join(work, "web-limited.pcapng")
            answer = tel.query("/portmux/capture/start,web,%s,3" % limited_file)
            check(answer.get("max_packets") == 3, "capture of web with MAX_PACKETS 3", answer)
            batch2 = [from_router(2, i) for i in range(6)]
            sendp(batch2, iface=tap, verbose=False)
            wait_for("web's second batch delivered",
                     lambda: vm_entry(tel, "web")["tx_packets"] >= len(batch1) + len(batch2))
            finished = wait_for("the limited capture finished",
                                lambda: (capture_of(tel, "web") or {}).get("state") == "finished")
            if finished:
                entry = capture_of(tel, "web")
                check(entry["captured"] == 3 and entry["written"] == 3 and entry["dropped"] == 0,
                      "the finished capture's counts", entry)
                # Finished means closed: the file is complete before the stop.
                check_capture_file(limited_file, [(2, delivered_to_web(f)) for f in batch2[:3]], "limited capture")
            rc, out, err = ctl("capture", "stop", "web")
            check(rc == 0 and out.strip() == "VM web: capture finished; 3 frames written to %s, 0 dropped" %
                  limited_file, "portmuxctl capture stop of a finished capture", out + err)
            check(capture_of(tel, "web") is None, "the stopped capture is still listed")

        # The guest got exactly what the first capture recorded as going to it (and the second batch too).
        status = guest.stop()
        check(status == 0, "the guest exited with %s" % status)
        try:
            received = [bytes(p) for p in rdpcap(os.path.join(work, "guest_in.pcap"))]
        except (OSError, ValueError) as e:
            received = []
            check(False, "cannot read the guest's frames: %s" % e)
        check(received == [delivered_to_web(f) for f in batch1 + batch2],
              "the guest received %d frames, not the %d sent to it" % (len(received), len(batch1) + len(batch2)))

        # db's capture still runs: a clean stop of portmux closes it whole (no frame: db has no guest).
        proc.send_signal(signal.SIGTERM)
        check(proc.wait(timeout=30) == 0, "portmux exited with %s" % proc.returncode)
        try:
            db = read_capture(db_file)
            check(db["packets"] == [] and db["stats"] == {"received": 0, "dropped": 0} and
                  [i["name"] for i in db["interfaces"]] == ["vm:db"], "db's capture after shutdown", db)
        except (OSError, ValueError) as e:
            check(False, "db's capture after shutdown: %s" % e)
    finally:
        if guest is not None:
            guest.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        if failures and proc is not None:
            with open(os.path.join(work, "portmux.log"), errors="replace") as f:
                print("portmux log (end):\n" + "\n".join(f.read().splitlines()[-30:]))
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(os.path.join(RUNTIME_DIR, prefix), ignore_errors=True)

    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("PASS: web's capture held its 11 frames both ways, MAX_PACKETS 3 stopped after 3, refusals changed nothing")
    return 0


if __name__ == "__main__":
    sys.exit(main())
