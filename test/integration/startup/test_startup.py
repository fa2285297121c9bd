#!/usr/bin/python3
"""The command line and startup contract (docs/operations.md and `portmux --help`): --help/--version, --check without DPDK,
one clear line and exit status 1 for every startup failure, exit status 0 on SIGTERM and SIGINT.

Usage: test_startup.py PORTMUX
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
from telemetry import TelemetryError, wait_ready  # noqa: E402

PORTMUX = sys.argv[1]
WORK = tempfile.mkdtemp(prefix="pmx-startup-")
FAILURES = []
PREFIXES = []


def check(name, condition, detail=""):
    print(("PASS: " if condition else "FAIL: ") + name + ("" if condition else "\n      " + detail))
    if not condition:
        FAILURES.append(name)


def run(args, timeout=60):
    return subprocess.run([PORTMUX] + args, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def write_config(name, config):
    path = os.path.join(WORK, name)
    with open(path, "w") as f:
        json.dump(config, f)
    return path


def pcap_config(**overrides):
    empty = os.path.join(WORK, "empty.pcap")
    if not os.path.exists(empty):
        with open(empty, "wb") as f:  # a pcap file header with no packets (Ethernet link type)
            f.write(bytes.fromhex("d4c3b2a1020004000000000000000000ffff000001000000"))
    config = {
        "shared_ip": "192.0.2.10",
        "uplink": {"device": "net_pcap0,rx_pcap=%s,tx_pcap=%s/up.pcap" % (empty, WORK), "mac": "02:00:00:00:0a:01"},
        "host": {"device": "net_pcap1,rx_pcap=%s,tx_pcap=%s/host.pcap" % (empty, WORK)},
        "vms": [{"name": "web", "device": "net_pcap2,rx_pcap=%s,tx_pcap=%s/web.pcap" % (empty, WORK),
                 "mac": "52:54:00:12:34:01", "ranges": ["tcp:80"]}],
    }
    config.update(overrides)
    return config


def eal(tag, *extra):
    prefix = "pmx-startup-%s-%d" % (tag, os.getpid())
    PREFIXES.append(prefix)
    return ["--", "--no-huge", "-m", "256", "--lcores", "0@0,1@1", "--file-prefix", prefix] + list(extra)


def portmux_lines(stderr):
    return [line for line in stderr.splitlines() if line.startswith("portmux:")]


def main():
    r = run(["--help"])
    check("--help prints the usage and exits 0", r.returncode == 0 and "--config" in r.stdout, r.stdout + r.stderr)
    r = run(["--version"])
    check("--version prints the version and exits 0", r.returncode == 0 and r.stdout.startswith("portmux "), r.stdout)
    r = run([])
    check("no --config is a usage error (exit 1, one line)", r.returncode == 1 and "--config" in r.stderr, r.stderr)
    r = run(["--bogus"])
    check("an unknown option is a usage error", r.returncode == 1 and "bogus" in r.stderr, r.stderr)

    good = write_config("good.json", pcap_config())
    r = run(["--config", good, "--check"])
    check("--check on a good config prints a summary and exits 0",
          r.returncode == 0 and "192.0.2.10" in r.stdout and "web" in r.stdout, r.stdout + r.stderr)
    check("--check never initialises DPDK", "EAL" not in r.stdout + r.stderr, r.stdout + r.stderr)

    bad = pcap_config()
    bad["vms"][0]["ranges"] = ["90-80"]
    bad_file = write_config("bad.json", bad)
    r = run(["-c", bad_file, "--check"])
    expected = "portmux: %s: vms[0].ranges[0]: \"90-80\": FROM is above TO" % bad_file
    check("--check on a bad config prints file, JSON path and reason, exits 1",
          r.returncode == 1 and r.stderr.strip() == expected, "got %r, want %r" % (r.stderr.strip(), expected))
    r = run(["-c", bad_file] + eal("bad"))
    check("running a bad config fails the same way before DPDK starts",
          r.returncode == 1 and r.stderr.strip() == expected and "EAL" not in r.stderr, r.stderr)
    r = run(["-c", os.path.join(WORK, "missing.json"), "--check"])
    check("a missing config file is one line, exit 1",
          r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "cannot read" in r.stderr, r.stderr)

    nodev = write_config("nodev.json", pcap_config(uplink={"device": "net_nonexistent0"}))
    r = run(["-c", nodev] + eal("nodev"))
    lines = portmux_lines(r.stderr)
    check("a device that does not probe: exit 1 with one portmux line naming it",
          r.returncode == 1 and len(lines) == 1 and "net_nonexistent0" in lines[0], r.stderr[-1500:])

    blocked_dir = os.path.join(WORK, "not-a-dir")
    open(blocked_dir, "w").close()
    vhost = pcap_config(vms=[{"name": "web", "vhost": blocked_dir + "/web.sock", "vhost_mode": "server",
                              "mac": "52:54:00:12:34:01", "ranges": ["tcp:80"]}])
    r = run(["-c", write_config("vhost.json", vhost)] + eal("vhost"))
    lines = portmux_lines(r.stderr)
    check("a vhost socket path that cannot be created: exit 1 with one line",
          r.returncode == 1 and len(lines) == 1 and "web.sock" in lines[0] and "web" in lines[0], r.stderr[-1500:])

    many = pcap_config(vms=[{"name": "vm%d" % i, "device": "net_null%d,no-rx=1" % (i + 2),
                             "mac": "52:54:00:00:01:%02x" % (i + 1)} for i in range(31)])
    r = run(["-c", write_config("many.json", many)] + eal("many"))
    lines = portmux_lines(r.stderr)
    check("more VMs than DPDK has ports for: exit 1 with one line saying so",
          r.returncode == 1 and len(lines) == 1 and "RTE_MAX_ETHPORTS" in lines[0], r.stderr[-1500:])

    r = run(["-c", good, "--", "--no-huge", "-m", "256", "-l", "0", "--file-prefix", "pmx-startup-one-%d" % os.getpid()])
    PREFIXES.append("pmx-startup-one-%d" % os.getpid())
    lines = portmux_lines(r.stderr)
    check("a single lcore: exit 1 explaining that a worker lcore is needed",
          r.returncode == 1 and len(lines) == 1 and "lcore" in lines[0], r.stderr[-1500:])

    r = run(["-c", good, "--", "--bogus-eal-flag", "--file-prefix", "pmx-startup-eal-%d" % os.getpid()])
    last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else ""
    # The EAL reports the bad option itself (through getopt); portmux's own line closes the output.
    check("bad EAL arguments: exit 1, the last line says DPDK could not start",
          r.returncode == 1 and last.startswith("portmux: cannot initialise DPDK (EAL)"), r.stderr[-1500:])

    # The configuration's "eal" comes first and the command line's EAL arguments after it, so they win.
    config_prefix = "pmx-startup-cfgprefix-%d" % os.getpid()
    cli_prefix = "pmx-startup-cliprefix-%d" % os.getpid()
    PREFIXES.extend([config_prefix, cli_prefix])
    with_eal = write_config("eal.json", pcap_config(eal=["--file-prefix", config_prefix, "--log-level", "lib.eal:notice"]))
    proc = subprocess.Popen([PORTMUX, "-c", with_eal, "--", "--no-huge", "-m", "256", "--lcores", "0@0,1@1",
                             "--file-prefix", cli_prefix], stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(cli_prefix, timeout=60, proc=proc)
        overridden = not os.path.exists("/var/run/dpdk/%s" % config_prefix)
    except TelemetryError as e:
        overridden = False
        print("      (%s)" % e)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    check("EAL arguments after -- override the configuration's \"eal\" (telemetry under the command line's prefix)",
          overridden and proc.returncode == 0, "status %s" % proc.returncode)

    # PORTMUX_DEFAULT_FILE_PREFIX (set by the systemd template unit) is used only when no prefix is given.
    default_prefix = "pmx-startup-envprefix-%d" % os.getpid()
    config_prefix = "pmx-startup-cfgprefix2-%d" % os.getpid()
    command_prefix = "pmx-startup-cmdprefix2-%d" % os.getpid()
    PREFIXES.extend([default_prefix, config_prefix, command_prefix])
    for config_file, extra, expected, unexpected, name in (
            (good, [], default_prefix, None, "the environment's default file prefix is used when none is given"),
            (write_config("eal2.json", pcap_config(eal=["--file-prefix", config_prefix])), [], config_prefix,
             default_prefix, "a file prefix in the configuration's \"eal\" wins over the environment's default"),
            (good, ["--file-prefix", command_prefix], command_prefix, default_prefix,
             "a file prefix after -- wins over the environment's default")):
        for prefix in (default_prefix, config_prefix, command_prefix):  # the EAL leaves its runtime directory
            shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
        proc = subprocess.Popen([PORTMUX, "-c", config_file, "--", "--no-huge", "-m", "256", "--lcores", "0@0,1@1"] +
                                extra,
                                env=dict(os.environ, PORTMUX_DEFAULT_FILE_PREFIX=default_prefix),
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_ready(expected, timeout=60, proc=proc)
            used = unexpected is None or not os.path.exists("/var/run/dpdk/%s" % unexpected)
        except TelemetryError as e:
            used = False
            print("      (%s)" % e)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        check(name + " (telemetry under it)", used and proc.returncode == 0, "status %s" % proc.returncode)

    for sig in (signal.SIGTERM, signal.SIGINT):
        proc = subprocess.Popen([PORTMUX, "-c", good] + eal("sig%d" % sig), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(PREFIXES[-1], timeout=60, proc=proc)
        except TelemetryError as e:
            print("      (%s)" % e)
        proc.send_signal(sig)
        try:
            out, err = proc.communicate(timeout=30)
            check("%s stops portmux cleanly with exit status 0" % signal.Signals(sig).name,
                  proc.returncode == 0 and "stopping" in err, "status %s\n%s" % (proc.returncode, err[-1500:]))
        except subprocess.TimeoutExpired:
            proc.kill()
            check("%s stops portmux within 30 s" % signal.Signals(sig).name, False)

    if FAILURES:
        print("FAILED: " + ", ".join(FAILURES))
        return 1
    print("all startup checks passed")
    return 0


if __name__ == "__main__":
    try:
        status = main()
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
        for prefix in PREFIXES:
            shutil.rmtree("/var/run/dpdk/" + prefix, ignore_errors=True)
    sys.exit(status)
