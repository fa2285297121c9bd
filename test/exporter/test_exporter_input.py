#!/usr/bin/python3
"""portmux-exporter against a telemetry socket that answers nonsense, and `portmuxctl exporter`.

A stand-in telemetry server (an AF_UNIX SOCK_SEQPACKET socket speaking DPDK's protocol) answers with values
of the wrong type, unknown counters, entries without names, error answers and paging that never ends: the
exporter must serve every good value, skip each bad one and count it by reason in
portmux_exporter_errors_total, and stay up. Then the server speaks no telemetry, closes the connection
half-way and stops answering: each scrape says portmux_up 0 with only the exporter's own metrics. Finally
`portmuxctl exporter` runs the exporter with portmuxctl's -s, `--help` shows the exporter's usage, and a
port already in use ends the exporter with status 1. No root and no DPDK needed.

Usage: /usr/bin/python3 test_exporter_input.py EXPORTER PORTMUXCTL
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import exporter_process  # noqa: E402

failures = []


def check(condition, message):
    print("%s: %s" % ("PASS" if condition else "FAIL", message), flush=True)
    if not condition:
        failures.append(message)
    return condition


GREETING = {"version": "DPDK 22.11.0", "pid": 1, "max_output_len": 16384}

# Every bad value here is one count of its reason.
NONSENSE = {
    "/portmux/info": {"version": "0.1.0", "generation": "seven", "uptime_s": 5, "vms": 1,
                      "worker_lcores": [1, "two"], "uplink_port": 0, "host_port": "one"},
    "/portmux/stats": {"rx_uplink": 10, "drop_firewall": -1, "to_vm": True, "tx_host": 1.5,
                       "new_counter": 3, "drop_new_reason": 4},
    "/portmux/vms": {"0": {"name": "web", "rx_packets": 5, "tx_packets": "many", "link": "sideways"},
                     "1": {"rx_packets": 1}, "2": "not an object", "page_offset": 0, "page_total": 3},
    "/portmux/workers": {"0": {"worker": 0, "lcore": 1, "rx_packets": 8, "drops": "x"}, "1": {"rx_packets": 1},
                         "page_offset": 0, "page_total": 2},
    "/portmux/ranges": {"error": "something broke"},
    "/portmux/ranges,host": [1, 2],
    "/portmux/remotes": {"page_offset": 0, "page_total": 40, "page_next": "offset=20",
                         "0": {"name": "db-b", "tx_packets": 2}},
    "/portmux/remotes,offset=20": {"page_offset": 20, "page_total": 40, "page_next": "offset=20",
                                   "0": {"name": "db-b", "tx_packets": 2}},
    "/ethdev/link_status,0": {"status": "sideways"},
    "/ethdev/stats,0": {"ipackets": 3, "imissed": "x"},
}
EXPECTED_ERRORS = {
    # generation, "two", host_port; drop_firewall, to_vm, tx_host; the worker's drops; tx_packets, link;
    # status; imissed
    "bad_value": 11,
    # new_counter
    "unknown_counter": 1,
    # worker "1" without its index; vms "1" and "2"; ranges (error) and ranges,host (not an object); remotes
    # paging without end
    "bad_answer": 6,
    # db-b listed on two pages
    "duplicate_series": 1,
}


class FakeTelemetry:
    """Answers each request from self.answers (a missing command answers null, as DPDK does). mode "garbage"
    greets with something else than telemetry; "hangup" closes the connection at /portmux/vms; "silent"
    never answers /portmux/stats."""

    def __init__(self, path):
        self.path = path
        self.answers = NONSENSE
        self.mode = "normal"
        self.requests = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.bind(path)
        self.sock.listen(8)
        self.stopping = False
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.talk, args=(conn,), daemon=True).start()

    def talk(self, conn):
        with conn:
            if self.mode == "garbage":
                conn.send(b"HTTP/1.0 200 OK\r\n\r\nhello")
                return
            conn.send(json.dumps(GREETING).encode())
            while True:
                try:
                    data = conn.recv(1024)
                except OSError:
                    return
                if not data:
                    return
                request = data.decode()
                self.requests += 1
                if self.mode == "hangup" and request.startswith("/portmux/vms"):
                    return
                if self.mode == "silent" and request == "/portmux/stats":
                    time.sleep(30)
                    return
                name = request.split(",", 1)[0]
                conn.send(json.dumps({name: self.answers.get(request)}).encode())

    def close(self):
        self.stopping = True
        self.sock.close()


def errors_of(parsed):
    return {l.get("reason"): v for n, l, v in parsed["samples"] if n == "portmux_exporter_errors_total"}


def main():
    if len(sys.argv) != 3:
        print("usage: test_exporter_input.py EXPORTER PORTMUXCTL", file=sys.stderr)
        return 2
    exporter_script, portmuxctl = sys.argv[1], sys.argv[2]
    probe = subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"], capture_output=True)
    if probe.returncode != 0:
        print("SKIP: python3-prometheus-client is not installed")
        return 77

    work = tempfile.mkdtemp(prefix="pmx-exporter-input-")
    path = os.path.join(work, "dpdk_telemetry.v2")
    server = FakeTelemetry(path)
    exporter = None
    try:
        exporter = exporter_process.Exporter(
            ["/usr/bin/python3", exporter_script, "--socket", path, "--timeout", "2"], work)
        text = exporter.scrape()
        parsed = exporter_process.parse(text)
        v = lambda name, **labels: exporter_process.value(parsed, name, **labels)  # noqa: E731
        check(v("portmux_up") == 1, "portmux_up 1: the scrape reached a telemetry socket that answered")
        check(errors_of(parsed) == EXPECTED_ERRORS,
              "every bad value is skipped and counted by reason: %s" % errors_of(parsed))
        check(v("portmux_port_rx_packets_total", port="uplink") == 10 and v("portmux_uptime_seconds") == 5
              and v("portmux_vm_rx_packets_total", vm="web") == 5 and v("portmux_port_device_rx_packets_total",
                                                                          port="uplink") == 3
              and v("portmux_worker_rx_packets_total", worker="0") == 8,
              "the good values beside the bad ones are served")
        check(v("portmux_drops_total", reason="new_reason") == 4, "a new drop_* key is served as drops{reason=...}")
        served = {n for n, _, _ in parsed["samples"]}
        check("portmux_snapshot_generation" not in served and "portmux_new_counter_total" not in served
              and v("portmux_vm_tx_packets_total", vm="web") is None and v("portmux_vm_link_up", vm="web") is None
              and v("portmux_drops_total", reason="firewall") is None,
              "no bad value and no unknown counter is served under any name")
        check(v("portmux_remote_tx_packets_total", remote="db-b") == 2, "a series listed twice is served once")
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
            check(p.returncode == 0, "promtool check metrics passes on it (%s)" % (p.stdout + p.stderr).strip()[:300])
        else:
            print("note: promtool not installed (Debian package prometheus): output not checked by it")
        parsed = exporter_process.parse(exporter.scrape())
        check(errors_of(parsed) == {k: 2 * n for k, n in EXPECTED_ERRORS.items()},
              "the error counts grow with every scrape (a counter): %s" % errors_of(parsed))

        only_own = {"portmux_up", "portmux_scrape_duration_seconds", "portmux_exporter_errors_total"}
        for mode, what in (("garbage", "a socket that is no telemetry"),
                           ("hangup", "a connection closed half-way through the scrape"),
                           ("silent", "an answer that never comes (--timeout 2)")):
            server.mode = mode
            parsed = exporter_process.parse(exporter.scrape())
            check(exporter_process.value(parsed, "portmux_up") == 0 and set(parsed["type"]) == only_own,
                  "%s: portmux_up 0 and only the exporter's own metrics (%s)" % (what, sorted(parsed["type"])))
        server.mode = "normal"
        server.answers = {"/portmux/info": {"version": "0.1.0", "generation": 3}}
        parsed = exporter_process.parse(exporter.scrape())
        check(exporter_process.value(parsed, "portmux_up") == 1
              and exporter_process.value(parsed, "portmux_snapshot_generation") == 3,
              "answers that make sense again: portmux_up 1 on the next scrape")
        check(exporter.alive(), "the exporter is still running after all of it")
        check(exporter.stop() == 0, "the exporter exits 0 on SIGTERM")
        exporter = None

        # portmuxctl exporter: its -s reaches the exporter, the exporter's own options follow.
        exporter = exporter_process.Exporter(["/usr/bin/python3", portmuxctl, "-s", path, "exporter"], work,
                                             name="ctl-exporter")
        parsed = exporter_process.parse(exporter.scrape())
        check(exporter_process.value(parsed, "portmux_up") == 1 and
              exporter_process.value(parsed, "portmux_snapshot_generation") == 3,
              "portmuxctl -s SOCKET exporter --listen ... serves that socket's metrics")
        check(exporter.stop() == 0, "... and exits 0 on SIGTERM")
        exporter = None
        p = subprocess.run(["/usr/bin/python3", portmuxctl, "exporter", "--help"], capture_output=True, text=True,
                           timeout=30)
        check(p.returncode == 0 and "usage: portmux-exporter" in p.stdout and "--listen" in p.stdout,
              "portmuxctl exporter --help prints portmux-exporter's usage, exit 0 (exit %d)" % p.returncode)
        p = subprocess.run(["/usr/bin/python3", portmuxctl, "--help"], capture_output=True, text=True, timeout=30)
        check(p.returncode == 0 and "exporter" in p.stdout, "portmuxctl --help lists the exporter subcommand")
        p = subprocess.run(["/usr/bin/python3", portmuxctl, "exporter", "--listen", "nowhere"], capture_output=True,
                           text=True, timeout=30)
        check(p.returncode == 2 and "--listen" in p.stderr,
              "a bad --listen is a usage error, exit 2 (exit %d: %s)" % (p.returncode, p.stderr.strip()[-120:]))
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            p = subprocess.run(["/usr/bin/python3", exporter_script, "--socket", path, "--listen",
                                "127.0.0.1:%d" % port], capture_output=True, text=True, timeout=30)
        check(p.returncode == 1 and "cannot listen" in p.stderr,
              "a port already in use: exit 1 with its reason (exit %d: %s)" % (p.returncode, p.stderr.strip()))
    except Exception as e:  # a broken run must fail with its reason, and still clean up
        check(False, "unexpected %s: %s" % (type(e).__name__, e))
    finally:
        if exporter is not None:
            exporter.stop()
        server.close()
        shutil.rmtree(work, ignore_errors=True)

    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
