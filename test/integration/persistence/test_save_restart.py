#!/usr/bin/python3
"""Persistence: runtime changes written with /portmux/config/save survive a restart. The saved file passes
--check, is replaced atomically (no temporary file left), and a restarted portmux answers exactly the same
ranges, VM states and firewall as the one that saved it.

Usage: test_save_restart.py PORTMUX
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from telemetry import Telemetry, TelemetryError, socket_path, wait_ready  # noqa: E402

PORTMUX = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="pmx-persist-")
PREFIX = "pmx-persist-%d" % os.getpid()


def fail(message):
    print("FAIL: " + message)
    sys.exit(1)


def start(config_file):
    log = open(os.path.join(WORK, "portmux.log"), "a")
    proc = subprocess.Popen([PORTMUX, "-c", config_file, "--", "--no-huge", "-m", "256", "--lcores", "0@0,1@1",
                             "--file-prefix", PREFIX], stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        wait_ready(PREFIX, timeout=60, proc=proc)
    except TelemetryError as e:
        fail("%s:\n%s" % (e, open(log.name).read()[-2000:]))
    return proc


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    if proc.wait(timeout=30) != 0:
        fail("portmux exited with %d" % proc.returncode)
    shutil.rmtree(os.path.dirname(socket_path(PREFIX)), ignore_errors=True)


def state(tel):
    """Everything a restart must reproduce, as answered by telemetry."""
    vms = {v["name"]: v["enabled"] for k, v in tel.query("/portmux/vms").items() if isinstance(v, dict)}
    return {"ranges": tel.query("/portmux/ranges")["ranges"], "vms": vms,
            "firewall": tel.query("/portmux/firewall/list")}


def main():
    empty = os.path.join(WORK, "empty.pcap")
    with open(empty, "wb") as f:
        f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))

    def dev(name, index):
        return "net_pcap%d,rx_pcap=%s,tx_pcap=%s/%s.pcap" % (index, empty, WORK, name)

    config = {
        "eal": ["--log-level", "lib.eal:notice"],
        "shared_ip": "192.0.2.10",
        "shared_ip6": "2001:db8::10",
        "uplink": {"device": dev("up", 0), "mac": "02:00:00:00:0a:01"},
        "host": {"device": dev("host", 1), "ranges": ["tcp:22"]},
        "vms": [
            {"name": "web", "device": dev("web", 2), "mac": "52:54:00:12:34:01", "ranges": ["tcp:80", "tcp:443"]},
            {"name": "db", "device": dev("db", 3), "mac": "52:54:00:12:34:02", "ranges": ["tcp:5432"]},
        ],
        "firewall": {"default": "accept", "rules": [{"action": "drop", "src": "203.0.113.0/24"}]},
        "unmatched": "drop",
    }
    config_file = os.path.join(WORK, "portmux.json")
    with open(config_file, "w") as f:
        json.dump(config, f)

    proc = start(config_file)
    with Telemetry(socket_path(PREFIX), timeout=30) as tel:
        for command in ["/portmux/range/add,web,udp:5000-5099", "/portmux/range/move,tcp:443,db",
                        "/portmux/range/del,tcp:80", "/portmux/range/add,host,40000-40999",
                        "/portmux/vm/disable,db",
                        '/portmux/firewall/add,0,{"action": "accept", "proto": "tcp", "src": "203.0.113.7/32"}',
                        "/portmux/firewall/default,drop"]:
            answer = tel.query(command)
            if "error" in answer:
                fail("%s refused: %s" % (command, answer))
        before = state(tel)
        saved = tel.query("/portmux/config/save")
        if saved.get("saved") != config_file:
            fail("config/save answered %r" % saved)
    stop(proc)

    leftovers = [n for n in os.listdir(WORK) if ".tmp." in n]
    if leftovers:
        fail("temporary files left beside the config: %s" % leftovers)
    check = subprocess.run([PORTMUX, "-c", config_file, "--check"], capture_output=True, text=True)
    if check.returncode != 0:
        fail("the saved file does not pass --check: " + check.stderr)
    saved_doc = json.load(open(config_file))
    if saved_doc.get("eal") != config["eal"] or saved_doc.get("unmatched") != "drop":
        fail("settings not touched at runtime were not kept: %r" % saved_doc)
    print("PASS: the saved file passes --check and keeps untouched settings")

    proc = start(config_file)
    with Telemetry(socket_path(PREFIX), timeout=30) as tel:
        after = state(tel)
    stop(proc)
    if after != before:
        fail("after a restart the state differs:\nbefore %s\nafter  %s" % (before, after))
    print("PASS: a restart from the saved file answers the same ranges, VM states and firewall")
    print("      %s" % after)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
        shutil.rmtree(os.path.dirname(socket_path(PREFIX)), ignore_errors=True)
