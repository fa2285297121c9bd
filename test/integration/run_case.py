#!/usr/bin/python3
"""Runs one integration case: the real portmux binary on net_pcap ports, fed and judged from pcap files.

Usage: /usr/bin/python3 run_case.py --portmux PATH CASE_DIR [--keep] [--timeout S]

CASE_DIR/case.py defines CONFIG, SEND, EXPECT and optionally ORDERED, EXPECT_STATS, EAL, CHECK, FREE_PORTS
(see README.md). Cases may import the helpers below with `from run_case import ...`.
"""

import argparse
import collections
import importlib.util
import inspect
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import telemetry  # noqa: E402

from scapy.all import Ether, hexdump  # noqa: E402

# ---------------------------------------------------------------------------------------------------------
# Helpers for case files: the addresses most cases use, and the frame edits the switch is expected to make.

UPLINK_MAC = "02:00:00:00:0a:01"
GW_MAC = "02:00:00:00:00:fe"  # the router on the wire
SHARED_IP = "192.0.2.10"
SHARED_IP6 = "2001:db8::10"
REMOTE_IP = "198.51.100.7"
REMOTE_IP6 = "2001:db8:ffff::7"


def vm_mac(n):
    return "52:54:00:12:34:%02x" % n


def from_wire(l3, src=GW_MAC, dst=UPLINK_MAC):
    """A frame arriving on the uplink from the router, frozen so its bytes never change again."""
    return frozen(Ether(src=src, dst=dst) / l3)



def as_bytes(pkt):
    return pkt if isinstance(pkt, (bytes, bytearray)) else bytes(pkt)


def with_dst(pkt, mac):
    """The frame as it leaves toward a VM: only the Ethernet destination changes, every other byte is kept."""
    p = Ether(as_bytes(pkt))
    p.dst = mac
    return p


def with_src(pkt, mac):
    """The frame with only its Ethernet source changed (a VM's frame leaving the uplink)."""
    p = Ether(as_bytes(pkt))
    p.src = mac
    return p


def frozen(pkt):
    """The packet with every checksum and length computed now, so later edits cannot recompute them."""
    return Ether(as_bytes(pkt))


# ---------------------------------------------------------------------------------------------------------
# pcap files, written and read here so that the exact bytes are under the test's control.

_PCAP_MAGIC_US = 0xA1B2C3D4
_PCAP_MAGIC_NS = 0xA1B23C4D


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", _PCAP_MAGIC_US, 2, 4, 0, 0, 65535, 1))
        for i, frame in enumerate(frames):
            data = as_bytes(frame)
            f.write(struct.pack("<IIII", 1, i, len(data), len(data)))
            f.write(data)


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise ValueError("%s: truncated pcap header (%d bytes)" % (path, len(data)))
    for endian in ("<", ">"):
        (magic,) = struct.unpack(endian + "I", data[:4])
        if magic in (_PCAP_MAGIC_US, _PCAP_MAGIC_NS):
            break
    else:
        raise ValueError("%s: not a pcap file" % path)
    frames, off = [], 24
    while off + 16 <= len(data):
        _, _, caplen, wirelen = struct.unpack(endian + "IIII", data[off:off + 16])
        off += 16
        if off + caplen > len(data):
            raise ValueError("%s: truncated record" % path)
        if caplen != wirelen:
            raise ValueError("%s: frame captured short (%d of %d bytes)" % (path, caplen, wirelen))
        frames.append(data[off:off + caplen])
        off += caplen
    return frames


# ---------------------------------------------------------------------------------------------------------
# The runner.


class CaseFailure(Exception):
    pass


def load_case(case_dir):
    spec = importlib.util.spec_from_file_location("case", os.path.join(case_dir, "case.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for name in ("CONFIG", "SEND", "EXPECT"):
        if not hasattr(module, name):
            raise CaseFailure("case.py defines no %s" % name)
    return module


def port_names(config):
    return ["uplink", "host"] + [vm["name"] for vm in config.get("vms", [])]


def prepare(case, workdir):
    """Writes the rx pcaps and the config with net_pcap devices filled in. Returns (config path, tx paths)."""
    config = json.loads(json.dumps(case.CONFIG))  # a deep copy the runner may fill in
    config.setdefault("host", {})
    sections = {"uplink": config["uplink"], "host": config["host"]}
    for vm in config.get("vms", []):
        sections[vm["name"]] = vm
    for name in case.SEND:
        if name not in sections:
            raise CaseFailure("SEND names an unknown port %r" % name)
    for name in case.EXPECT:
        if name not in sections:
            raise CaseFailure("EXPECT names an unknown port %r" % name)
    tx_paths = {}
    for index, name in enumerate(port_names(config)):
        section = sections[name]
        if "device" in section or "vhost" in section:
            continue
        rx = os.path.join(workdir, "%s_in.pcap" % name)
        tx = os.path.join(workdir, "%s_out.pcap" % name)
        write_pcap(rx, case.SEND.get(name, []))
        section["device"] = "net_pcap%d,rx_pcap=%s,tx_pcap=%s" % (index, rx, tx)
        tx_paths[name] = tx
    path = os.path.join(workdir, "portmux.json")
    with open(path, "w") as f:
        json.dump(config, f, indent=2)
    return path, tx_paths


def eal_args(case, prefix):
    extra = list(getattr(case, "EAL", []))
    args = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", prefix, "--log-level", "pmd.net.pcap:error"]
    if not any(a in ("-l", "--lcores", "-c") or a.startswith("--lcores") for a in extra):
        args += ["--lcores", "0@0,1@1"]
    return args + extra


class Runner:
    def __init__(self, portmux, case_dir, timeout, keep):
        self.portmux = portmux
        self.case_dir = os.path.abspath(case_dir)
        self.name = os.path.basename(self.case_dir.rstrip("/"))
        self.timeout = timeout
        self.keep = keep
        self.prefix = "pmx-it-%s-%d" % (self.name, os.getpid())
        self.proc = None
        self.workdir = None
        self.errors = []

    def run(self):
        try:
            return self._run()
        finally:
            self.cleanup()

    def _run(self):
        case = load_case(self.case_dir)
        self.workdir = tempfile.mkdtemp(prefix="pmx-it-%s-" % self.name)
        config_path, tx_paths = prepare(case, self.workdir)
        cmd = [self.portmux, "-c", config_path, "--"] + eal_args(case, self.prefix)
        self.stdout_path = os.path.join(self.workdir, "portmux.stdout")
        self.stderr_path = os.path.join(self.workdir, "portmux.stderr")
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True)

        expected_rx = {"uplink": len(case.SEND.get("uplink", [])), "host": len(case.SEND.get("host", []))}
        expected_rx["vms"] = sum(len(v) for k, v in case.SEND.items() if k not in ("uplink", "host"))
        stats, vms = self.wait_until_settled(expected_rx)
        if self.proc.poll() is not None:  # it stopped by itself: there is nothing to judge but its log
            self.dump_log()
            return 1

        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail("portmux did not exit within 15 s of SIGTERM")
            rc = None
        if rc is not None and rc != 0:
            self.fail("portmux exited with status %d after SIGTERM (expected 0)" % rc)

        outputs = {}
        for name, path in tx_paths.items():
            if not os.path.exists(path):
                self.fail("%s: portmux wrote no tx pcap %s" % (name, path))
                outputs[name] = []
                continue
            outputs[name] = read_pcap(path)

        if stats is not None:
            self.check_stats(case, stats)
        self.compare(case, outputs, tx_paths)
        if hasattr(case, "CHECK"):
            self.run_check(case, outputs, stats, vms)

        if self.errors:
            self.dump_log()
            return 1
        print("PASS %s" % self.name)
        return 0

    def fail(self, message):
        self.errors.append(message)
        print("FAIL %s: %s" % (self.name, message))

    def wait_until_settled(self, expected_rx):
        """Polls /portmux/stats until every sent frame was received and no counter changed for a while."""
        deadline = time.monotonic() + self.timeout
        sock_path = telemetry.socket_path(self.prefix)
        client, stats, last, stable_since = None, None, None, None
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.fail("portmux exited early with status %d" % self.proc.returncode)
                    return None, None
                if client is None:
                    try:
                        client = telemetry.Telemetry(sock_path)
                    except OSError:
                        time.sleep(0.1)
                        continue
                answer = client.query("/portmux/stats")
                if not isinstance(answer, dict):  # the command is registered after the socket opens
                    time.sleep(0.1)
                    continue
                stats = answer
                received = all(stats.get("rx_" + k, 0) >= n for k, n in expected_rx.items())
                if received and stats == last:
                    if time.monotonic() - stable_since >= 0.5:
                        return stats, client.query("/portmux/vms")
                else:
                    stable_since = time.monotonic()
                last = stats
                time.sleep(0.1)
            if stats is None:
                self.fail("no telemetry answer within %g s on %s" % (self.timeout, sock_path))
                return None, None
            got = {k: stats.get("rx_" + k) for k in expected_rx}
            self.fail("within %g s portmux did not receive every frame sent and settle: rx expected %s, got %s"
                      % (self.timeout, expected_rx, got))
            return stats, client.query("/portmux/vms")
        finally:
            if client is not None:
                client.close()

    def check_stats(self, case, stats):
        before = len(self.errors)
        for key, want in sorted(getattr(case, "EXPECT_STATS", {}).items()):
            if key not in stats:
                self.fail("stats: no counter %r in /portmux/stats" % key)
            elif stats[key] != want:
                self.fail("stats: %s expected %d, got %d" % (key, want, stats[key]))
        if len(self.errors) > before:
            print("  /portmux/stats: %s" % json.dumps(stats, sort_keys=True))

    def compare(self, case, outputs, tx_paths):
        ordered = getattr(case, "ORDERED", False)
        free = set(getattr(case, "FREE_PORTS", ()))
        for name in tx_paths:
            if name in free and name not in case.EXPECT:
                continue
            want = [as_bytes(p) for p in case.EXPECT.get(name, [])]
            got = outputs[name]
            if ordered:
                if want != got:
                    self.report_mismatch(name, want, got, ordered=True)
            elif collections.Counter(want) != collections.Counter(got):
                self.report_mismatch(name, want, got, ordered=False)

    def report_mismatch(self, name, want, got, ordered):
        self.fail("port %s: %d frame(s) expected, %d sent%s" % (name, len(want), len(got),
                                                                 " (ordered)" if ordered else ""))
        print("  expected on %s:" % name)
        for b in want:
            print("    " + summary(b))
        print("  got on %s:" % name)
        for b in got:
            print("    " + summary(b))
        if ordered:
            i = next((i for i in range(max(len(want), len(got)))
                      if i >= len(want) or i >= len(got) or want[i] != got[i]), None)
            first_want = want[i] if i is not None and i < len(want) else None
            first_got = got[i] if i is not None and i < len(got) else None
        else:
            missing = list((collections.Counter(want) - collections.Counter(got)).elements())
            extra = list((collections.Counter(got) - collections.Counter(want)).elements())
            first_want = missing[0] if missing else None
            first_got = extra[0] if extra else None
        if first_want is not None:
            print("  first expected frame not sent (%d bytes):" % len(first_want))
            print(indent(hexdump(first_want, dump=True)))
        if first_got is not None:
            print("  first frame sent but not expected (%d bytes):" % len(first_got))
            print(indent(hexdump(first_got, dump=True)))

    def run_check(self, case, outputs, stats, vms):
        parsed = {name: [Ether(b) for b in frames] for name, frames in outputs.items()}
        nparams = len(inspect.signature(case.CHECK).parameters)
        args = (parsed, {"stats": stats or {}, "vms": vms_by_name(vms)})[:nparams]
        try:
            result = case.CHECK(*args)
        except AssertionError as e:
            result = str(e) or "assertion failed"
        if not result:
            return
        for message in ([result] if isinstance(result, str) else result):
            self.fail("CHECK: %s" % message)

    def dump_log(self):
        if self.stderr_path and os.path.exists(self.stderr_path):
            with open(self.stderr_path, errors="replace") as f:
                lines = f.read().splitlines()
            print("  portmux stderr (last 30 lines):")
            for line in lines[-30:]:
                print("    " + line)

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        runtime = os.path.join(telemetry.RUNTIME_DIR, self.prefix)
        shutil.rmtree(runtime, ignore_errors=True)
        for hugedir in ("/dev/hugepages", "/mnt/huge"):
            if os.path.isdir(hugedir):
                for entry in os.listdir(hugedir):
                    if entry.startswith(self.prefix + "map_"):
                        try:
                            os.unlink(os.path.join(hugedir, entry))
                        except OSError:
                            pass
        if self.workdir is not None:
            if self.keep:
                print("kept %s" % self.workdir)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)


def vms_by_name(answer):
    """/portmux/vms as VM name -> its entry (entries are keyed by position and carry a "name")."""
    result = {}
    for key, entry in (answer or {}).items():
        if isinstance(entry, dict):
            result[entry.get("name", key)] = entry
    return result


def summary(frame):
    try:
        return "%4d bytes  %s" % (len(frame), Ether(frame).summary())
    except Exception as e:  # a frame scapy cannot dissect is still worth showing
        return "%4d bytes  <undissectable: %s>" % (len(frame), e)


def indent(text):
    return "\n".join("    " + line for line in text.splitlines())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--portmux", required=True, help="the portmux binary")
    parser.add_argument("--timeout", type=float, default=20.0,
                        help="seconds to wait for every frame to be received and the counters to settle")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (pcaps, config, log)")
    parser.add_argument("case_dir")
    args = parser.parse_args()
    runner = Runner(os.path.abspath(args.portmux), args.case_dir, args.timeout, args.keep)
    try:
        sys.exit(runner.run())
    except CaseFailure as e:
        print("FAIL %s: %s" % (runner.name, e))
        sys.exit(1)


if __name__ == "__main__":
    main()
