#!/usr/bin/python3
"""portmuxctl against the real binary: every subcommand's output and exit status, on net_pcap ports.

Usage: /usr/bin/python3 test_portmuxctl.py PORTMUX PORTMUXCTL
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

RUNTIME_DIR = "/var/run/dpdk"
SHARED_IP = "192.0.2.10"

failures = []


def check(condition, message, detail=None):
    if condition:
        return True
    failures.append(message)
    print("FAIL: %s" % message)
    if detail:
        for line in str(detail).splitlines()[:30]:
            print("    " + line)
    return False


def write_empty_pcap(path):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


class Portmux:
    """One portmux process on net_pcap ports with an empty rx pcap each; always cleaned up by stop()."""

    def __init__(self, binary, workdir, name, config_extra=None):
        self.binary = binary
        self.workdir = workdir
        self.prefix = "pmx-ctl-%d-%s" % (os.getpid(), name)
        self.proc = None
        empty = os.path.join(workdir, "empty.pcap")
        write_empty_pcap(empty)

        def device(index):
            return "net_pcap%d,rx_pcap=%s,tx_pcap=%s" % (index, empty,
                                                         os.path.join(workdir, "%s_tx%d.pcap" % (name, index)))

        self.config = {
            "shared_ip": SHARED_IP,
            "shared_ip6": "2001:db8::10",
            "uplink": {"device": device(0), "mac": "02:00:00:00:0a:01"},
            "host": {"device": device(1), "ranges": ["tcp:22", "udp:53"]},
            "vms": [
                {"name": "web", "device": device(2), "mac": "52:54:00:12:34:01",
                 "ranges": ["tcp:8000-8099", "udp:5353"]},
                {"name": "db", "device": device(3), "mac": "52:54:00:12:34:02",
                 "ranges": ["tcp:5000-5099", "5100-5199", "tcp:40000", "udp:6000-6099"]},
                {"name": "my-vm.1", "device": device(4), "mac": "52:54:00:12:34:03", "ranges": ["udp:9000-9099"]},
            ],
            "firewall": {"default": "accept",
                         "rules": [{"action": "drop", "proto": "tcp", "dst_ports": "23"}]},
        }
        self.config.update(config_extra or {})
        self.config_path = os.path.join(workdir, "%s.json" % name)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def start(self):
        cmd = [self.binary, "-c", self.config_path, "--", "--no-huge", "-m", "512", "--no-pci",
               "--lcores", "0@0,1@1", "--file-prefix", self.prefix, "--log-level", "pmd.net.pcap:error"]
        self.stderr_path = os.path.join(self.workdir, "%s.stderr" % self.prefix)
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err,
                                         start_new_session=True)

    def log_tail(self):
        try:
            with open(self.stderr_path, errors="replace") as f:
                return "\n".join(f.read().splitlines()[-20:])
        except OSError:
            return ""

    def terminate(self):
        """SIGTERM; the exit status (None if it had to be killed)."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(os.path.join(RUNTIME_DIR, self.prefix), ignore_errors=True)


class Ctl:
    def __init__(self, script, prefix):
        self.script = script
        self.prefix = prefix

    def __call__(self, *args, prefix=True, env=None, timeout=20, user=None):
        cmd = [sys.executable, self.script] + (["--file-prefix", self.prefix] if prefix else []) + list(args)
        preexec = None
        if user is not None:
            def preexec():
                os.setgid(user)
                os.setgroups([])
                os.setuid(user)
        try:
            p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
                               env=env, preexec_fn=preexec)
        except subprocess.TimeoutExpired:
            check(False, "portmuxctl %s did not finish within %d s" % (" ".join(args), timeout))
            return 124, "", ""
        return p.returncode, p.stdout, p.stderr

    def ok(self, *args, **kw):
        """Runs; checks exit 0 and an empty stderr; returns stdout."""
        rc, out, err = self(*args, **kw)
        check(rc == 0, "portmuxctl %s: exit %d (expected 0)" % (" ".join(args), rc), out + err)
        return out

    def json(self, *args):
        out = self.ok("--json", *args)
        try:
            return json.loads(out)
        except ValueError as e:
            check(False, "portmuxctl --json %s: output is not JSON: %s" % (" ".join(args), e), out)
            return None

    def fails(self, status, words, *args, **kw):
        rc, out, err = self(*args, **kw)
        check(rc == status, "portmuxctl %s: exit %d (expected %d)" % (" ".join(args), rc, status), out + err)
        for w in words:
            check(w in err, "portmuxctl %s: stderr lacks %r" % (" ".join(args), w), err)
        if status == 1:
            check(err.startswith("portmuxctl: "), "portmuxctl %s: stderr does not start with 'portmuxctl: '"
                  % " ".join(args), err)
        return out, err


def wait_ready(pm, ctl, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pm.proc.poll() is not None:
            check(False, "portmux exited early with status %d" % pm.proc.returncode, pm.log_tail())
            return False
        rc, _, _ = ctl("info", timeout=10)
        if rc == 0:
            return True
        time.sleep(0.2)
    check(False, "portmux did not answer /portmux/info within %d s" % timeout, pm.log_tail())
    return False


def lines_with(text, *words):
    return [line for line in text.splitlines() if all(w in line.split() for w in words)]


def test_reading(ctl, pm):
    out = ctl.ok("info")
    check(lines_with(out, "shared_ip", SHARED_IP), "info: no 'shared_ip 192.0.2.10' line", out)
    check(lines_with(out, "vms", "3"), "info: no 'vms 3' line", out)
    check(lines_with(out, "config", pm.config_path), "info: no config line", out)
    info = ctl.json("info")
    if info:
        check(info.get("shared_ip6") == "2001:db8::10", "info --json: shared_ip6", info)
        check(info.get("ports") == 5 and info.get("read_only") == 0, "info --json: ports/read_only", info)

    out = ctl.ok("stats")
    check(out.splitlines()[0].split() == ["COUNTER", "VALUE"], "stats: header", out)
    check(lines_with(out, "rx_uplink", "0") and lines_with(out, "drop_firewall", "0"), "stats: counters", out)
    stats = ctl.json("stats")
    if stats:
        check(all(isinstance(v, int) for v in stats.values()) and "to_vm" in stats, "stats --json", stats)

    # --watch redraws until Ctrl-C, then exits 0.
    p = subprocess.Popen([sys.executable, ctl.script, "--file-prefix", ctl.prefix, "stats", "--watch", "0.2"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=10)
        check(p.returncode == 0, "stats --watch: exit %d after Ctrl-C (expected 0)" % p.returncode, out + err)
        check(out.count("PER_SECOND") >= 3, "stats --watch: fewer than 3 redraws in 1.5 s", out)
        check(lines_with(out, "rx_uplink", "0", "0.0"), "stats --watch: no rate column", out)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        check(False, "stats --watch did not stop on SIGINT")

    out = ctl.ok("vms")
    check(out.splitlines()[0].split()[:5] == ["NAME", "PORT", "MAC", "ENABLED", "LINK"], "vms: header", out)
    for name, mac in (("web", "52:54:00:12:34:01"), ("db", "52:54:00:12:34:02"), ("my-vm.1", "52:54:00:12:34:03")):
        check(lines_with(out, name, mac, "yes"), "vms: no enabled line for %s" % name, out)
    vms = ctl.json("vms")
    if vms is not None:
        check([v.get("name") for v in vms] == ["web", "db", "my-vm.1"], "vms --json: names in order", vms)
    one = ctl.json("vms", "db")
    if one is not None:
        check(len(one) == 1 and one[0]["name"] == "db" and one[0]["ranges"] == 4, "vms db --json", one)

    out = ctl.ok("ranges")
    for owner, rng in (("host", "tcp:22"), ("host", "udp:53"), ("web", "tcp:8000-8099"), ("db", "5100-5199"),
                       ("my-vm.1", "udp:9000-9099")):
        check(lines_with(out, owner, rng), "ranges: no line '%s %s'" % (owner, rng), out)
    ranges = ctl.json("ranges", "web")
    if ranges is not None:
        check(ranges == [{"owner": "web", "range": "udp:5353"}, {"owner": "web", "range": "tcp:8000-8099"}],
              "ranges web --json", ranges)

    out = ctl.ok("lookup", "tcp:8050")
    check("web" in out and "tcp:8000-8099" in out and "delivery vm" in out, "lookup tcp:8050", out)
    out = ctl.ok("lookup", "udp:22")
    check("no owner" in out and "host" in out, "lookup udp:22 (unowned, unmatched host)", out)
    a = ctl.json("lookup", "tcp:22")
    if a:
        check(a.get("target") == "host" and a.get("delivery") == "host", "lookup tcp:22 --json", a)


def test_changes(ctl, pm):
    generation = ctl.json("info")["generation"]
    out = ctl.ok("range", "add", "web", "tcp:8100-8199")
    check(out.strip() == "added tcp:8100-8199 to web (generation %d)" % (generation + 1), "range add", out)
    check("web" in ctl.ok("lookup", "tcp:8150"), "lookup after range add")
    out = ctl.ok("range", "move", "tcp:8100-8199", "db")
    check("moved tcp:8100-8199 from web to db" in out, "range move", out)
    check(ctl.json("lookup", "tcp:8150").get("target") == "db", "lookup after range move")
    out = ctl.ok("range", "del", "tcp:8100-8199")
    check("removed tcp:8100-8199 from db" in out, "range del", out)
    check(ctl.json("lookup", "tcp:8150").get("owner") == "none", "lookup after range del")
    a = ctl.json("range", "add", "host", "udp:67-68")
    if a:
        check(a.get("added") == "udp:67-68" and a.get("target") == "host" and a.get("generation") == generation + 4,
              "range add --json", a)

    # The server's refusals: exit 1 with its message; nothing changed.
    ctl.fails(1, ['portmuxctl: unknown target "nope"'], "range", "add", "nope", "tcp:1")
    ctl.fails(1, ["overlaps", "web"], "range", "add", "db", "tcp:8050")
    ctl.fails(1, ["FROM is above TO"], "range", "add", "db", "tcp:90-80")
    ctl.fails(1, ["no range"], "range", "del", "tcp:8000-8049")
    ctl.fails(1, ["no range"], "range", "move", "tcp:1-2", "web")
    ctl.fails(1, ["unknown protocol"], "lookup", "sctp:80")
    ctl.fails(1, ['unknown target "nobody"'], "ranges", "nobody")
    check(ctl.json("info")["generation"] == generation + 4, "a refused change changed the generation")

    # A further shared address: its own ranges, refused removal while it owns one.
    out = ctl.ok("address", "add", "192.0.2.20")
    check("added shared address 192.0.2.20" in out, "address add", out)
    ctl.ok("range", "add", "db", "192.0.2.20/tcp:8050")
    check(ctl.json("lookup", "192.0.2.20/tcp:8050").get("target") == "db", "lookup on the second address")
    check(ctl.json("lookup", "tcp:8050").get("target") == "web", "the first address keeps its owner")
    ctl.fails(1, ["still has ranges"], "address", "del", "192.0.2.20")
    ctl.ok("range", "del", "192.0.2.20/tcp:8050")
    out = ctl.ok("address", "del", "192.0.2.20")
    check("removed shared address 192.0.2.20" in out, "address del", out)

    out = ctl.ok("vm", "backup", "web", "db")
    check("VM web: backup db (was none)" in out, "vm backup", out)
    out = ctl.ok("vm", "backup", "web")
    check("VM web: backup none (was db)" in out, "vm backup cleared", out)
    ctl.fails(1, ["own backup"], "vm", "backup", "web", "web")

    out = ctl.ok("vm", "disable", "web")
    check("VM web disabled (was enabled)" in out, "vm disable", out)
    out = ctl.ok("lookup", "tcp:8050")
    check("(disabled)" in out and "delivery drop" in out, "lookup of a disabled VM's port", out)
    check(lines_with(ctl.ok("vms"), "web", "NO"), "vms after vm disable")
    out = ctl.ok("vm", "enable", "web")
    check("VM web enabled (was disabled)" in out, "vm enable", out)
    ctl.fails(1, ['unknown VM "ghost"'], "vm", "enable", "ghost")

    out = ctl.ok("firewall", "list")
    check(lines_with(out, "0", "drop", "tcp", "23") and "default: accept" in out, "firewall list", out)
    out = ctl.ok("firewall", "add", '{"action": "drop", "proto": "udp", "dst_ports": "7"}')
    check("added rule 1 (2 rules)" in out, "firewall add", out)
    out = ctl.ok("firewall", "add", "--index", "0", '{"action": "accept", "src": "198.51.100.0/24"}')
    check("added rule 0 (3 rules)" in out, "firewall add --index 0", out)
    fw = ctl.json("firewall", "list")
    if fw:
        check(fw["default"] == "accept" and [r.get("src") for r in fw["rules"]] == ["198.51.100.0/24", None, None]
              and fw["rules"][2].get("dst_ports") == "7", "firewall list --json", fw)
    out = ctl.ok("firewall", "del", "0")
    check("removed rule 0 (2 rules)" in out, "firewall del", out)
    out = ctl.ok("firewall", "default", "drop")
    check("firewall default drop" in out, "firewall default", out)
    check("default: drop" in ctl.ok("firewall", "list"), "firewall list after default drop")
    ctl.ok("firewall", "default", "accept")
    ctl.fails(1, ["no rule 99"], "firewall", "del", "99")
    ctl.fails(1, ["rule.action"], "firewall", "add", '{"action": "reject"}')
    ctl.fails(2, ["invalid JSON"], "firewall", "add", "{not json")

    out = ctl.ok("save")
    check(out.strip() == "saved the running configuration to %s" % pm.config_path, "save", out)
    with open(pm.config_path) as f:
        saved = json.load(f)
    check(saved.get("host", {}).get("ranges") == ["udp:53", "udp:67-68", "tcp:22"]
          or sorted(saved.get("host", {}).get("ranges", [])) == ["tcp:22", "udp:53", "udp:67-68"],
          "save: host ranges", saved.get("host"))
    check(saved.get("firewall", {}).get("rules", [{}])[-1].get("dst_ports") == "7", "save: firewall rule", saved)

    a = ctl.ok("raw", "/portmux/lookup,tcp:22")
    check(json.loads(a).get("target") == "host", "raw lookup", a)
    out, err = ctl.fails(1, ["no range"], "raw", "/portmux/range/del,tcp:1")
    check(json.loads(out).get("error", "").startswith("no range"), "raw: prints the error answer too", out)
    ctl.fails(1, ["unknown command"], "raw", "/portmux/nothing")
    a = ctl.ok("raw", "/help,/portmux/range/add")
    check("TARGET,RANGE" in a, "raw /help,/portmux/range/add: the command's help", a)
    a = ctl.ok("raw", "/")
    check("/portmux/range/add" in json.loads(a), "raw /: lists portmux's commands", a)


def test_guest_config(ctl):
    out = ctl.ok("guest-config", "web", "--gateway", "192.0.2.1")
    check("ip address add 192.0.2.10/24 dev eth0" in out, "guest-config: address", out)
    check("ip route add default via 192.0.2.1 dev eth0" in out, "guest-config: gateway", out)
    check("ip link set dev eth0 address 52:54:00:12:34:01" in out, "guest-config: MAC", out)
    check('sysctl -w net.ipv4.ip_local_port_range="8000 8099"' in out, "guest-config: port range", out)
    check('sysctl.net.ipv4.ip_local_port_range="8000 8099"' in out, "guest-config: kernel command line", out)
    check("2001:db8::10/64" in out, "guest-config: IPv6 address", out)
    # db: tcp:5000-5099 and 5100-5199 are one run of 200 ports; tcp:40000 is apart.
    g = ctl.json("guest-config", "db", "--prefix-len", "28")
    if g:
        check(g["ip_local_port_range"] == [5000, 5199], "guest-config db: adjacent ranges merged", g)
        check(g["address"] == "192.0.2.10/28" and g["gateway"] is None, "guest-config db: address", g)
        check(g["ip_local_reserved_ports"] == "", "guest-config db: nothing to reserve", g)
    out = ctl.ok("guest-config", "db", "--span", "all")
    check('sysctl -w net.ipv4.ip_local_port_range="5000 40000"' in out, "guest-config --span all: range", out)
    check('sysctl -w net.ipv4.ip_local_reserved_ports="5200-39999"' in out, "guest-config --span all: reserved", out)
    check('sysctl.net.ipv4.ip_local_reserved_ports="5200-39999"' in out, "guest-config --span all: cmdline", out)
    out = ctl.ok("guest-config", "my-vm.1")
    check("owns no TCP range" in out and "ip_local_port_range" not in out, "guest-config: no TCP range", out)
    ctl.fails(1, ['unknown VM "ghost"'], "guest-config", "ghost")


def test_usage_and_connection(ctl, pm, workdir):
    ctl.fails(2, ["usage"], prefix=False)
    ctl.fails(2, ["usage"], "range", "add", "web")
    ctl.fails(2, ["invalid choice"], "firewall", "default", "maybe")
    ctl.fails(2, ["invalid choice"], "frobnicate")
    ctl.fails(2, ["not allowed with"], "--socket", "/x", "info")
    ctl.fails(1, ["no such socket", "pmx-ctl-none"], "--file-prefix", "pmx-ctl-none", "info", prefix=False)
    ctl.fails(1, ["/nonexistent/sock"], "--socket", "/nonexistent/sock", "info", prefix=False)
    # A socket file nobody listens on.
    stale = os.path.join(workdir, "stale.sock")
    import socket as socket_module
    s = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_SEQPACKET)
    s.bind(stale)
    s.close()
    ctl.fails(1, ["connection refused"], "--socket", stale, "info", prefix=False)
    # A listener that never greets: the client gives up after --timeout instead of hanging.
    silent = os.path.join(workdir, "silent.sock")
    s = socket_module.socket(socket_module.AF_UNIX, socket_module.SOCK_SEQPACKET)
    s.bind(silent)
    s.listen(1)
    started = time.monotonic()
    ctl.fails(1, ["no answer"], "--timeout", "1", "--socket", silent, "info", prefix=False)
    check(time.monotonic() - started < 10, "a silent socket made portmuxctl wait %.1f s" % (time.monotonic() - started))
    s.close()

    # The DPDK default prefix: with no runtime directory "portmux", the only telemetry socket is used.
    real = os.path.join(RUNTIME_DIR, pm.prefix, "dpdk_telemetry.v2")
    fake_run = os.path.join(workdir, "run")
    os.makedirs(os.path.join(fake_run, "dpdk", "rte"))
    os.symlink(real, os.path.join(fake_run, "dpdk", "rte", "dpdk_telemetry.v2"))
    env = dict(os.environ, RUNTIME_DIRECTORY=fake_run)
    rc, out, err = ctl("info", prefix=False, env=env)
    check(rc == 0 and "shared_ip" in out, "default prefix: the only DPDK process is not used", out + err)
    check("using the only DPDK telemetry socket" in err and "rte" in err, "default prefix: not said on stderr", err)
    os.makedirs(os.path.join(fake_run, "dpdk", "other"))
    os.symlink(real, os.path.join(fake_run, "dpdk", "other", "dpdk_telemetry.v2"))
    ctl.fails(1, ["several DPDK processes", "--file-prefix"], "info", prefix=False, env=env)

    # Somebody else than root: the runtime directory's permissions keep them out, and they are told why.
    if os.getuid() == 0 and os.access(ctl.script, os.R_OK):
        mode = os.stat(os.path.dirname(real)).st_mode & 0o777
        if mode & 0o001 == 0:
            ctl.fails(1, ["permission denied", "docs/control.md"], "info", user=65534)


def test_read_only(binary, script, workdir):
    pm = Portmux(binary, workdir, "ro", {"control": {"read_only": True}})
    try:
        pm.start()
        ctl = Ctl(script, pm.prefix)
        if not wait_ready(pm, ctl):
            return
        check((ctl.json("info") or {}).get("read_only") == 1, "read-only: info says so")
        check("web" in ctl.ok("lookup", "tcp:8050"), "read-only: lookup still works")
        ctl.fails(1, ["read-only", "changes are disabled"], "range", "add", "web", "tcp:1")
        ctl.fails(1, ["read-only"], "vm", "disable", "web")
        ctl.fails(1, ["read-only"], "save")
        rc = pm.terminate()
        check(rc == 0, "read-only portmux: exit status %s after SIGTERM (expected 0)" % rc, pm.log_tail())
    finally:
        pm.stop()


def test_remotes(binary, script, workdir):
    """portmuxctl remotes / remote add|del on an instance with a VXLAN tunnel (docs/remote-vms.md)."""
    pm = Portmux(binary, workdir, "vx", {
        "vxlan": {"local_ip": "198.51.100.1", "vni": 4242},
        "remotes": [{"name": "db-b", "host": "198.51.100.2", "mac": "02:00:00:00:0b:01", "ranges": ["tcp:5432"]}]})
    try:
        pm.start()
        ctl = Ctl(script, pm.prefix)
        if not wait_ready(pm, ctl):
            return
        out = ctl.ok("remotes")
        check(lines_with(out, "db-b", "198.51.100.2", "02:00:00:00:0b:01"), "remotes: a table row for db-b", out)
        out = ctl.ok("remote", "add", "cache-c", "198.51.100.3", "02:00:00:00:0c:01")
        check("added remote cache-c at 198.51.100.3" in out, "remote add: reports the remote", out)
        ctl.ok("range", "add", "cache-c", "udp:11211")
        check("remote" in ctl.ok("lookup", "udp:11211"), "lookup: a remote's port is delivered remote")
        entries = ctl.json("remotes") or []
        check(sorted(e.get("name") for e in entries) == ["cache-c", "db-b"], "remotes --json: both remotes", entries)
        ctl.fails(1, ["still owns 1 range"], "remote", "del", "cache-c")
        ctl.fails(1, ["already used"], "remote", "add", "web", "198.51.100.4", "02:00:00:00:0d:01")
        ctl.ok("range", "del", "udp:11211")
        check("removed remote cache-c" in ctl.ok("remote", "del", "cache-c"), "remote del: reports the removal")
        ctl.fails(1, ["unknown remote"], "remote", "del", "cache-c")
        ctl.fails(2, [], "remote", "add", "only-a-name")
        rc = pm.terminate()
        check(rc == 0, "vxlan portmux: exit status %s after SIGTERM (expected 0)" % rc, pm.log_tail())
    finally:
        pm.stop()


def test_groups(ctl):
    check(ctl.ok("groups").strip() == "no groups", "groups without any")
    out = ctl.ok("group", "add", "pool", "web", "db:3")
    check("created group pool with 2 member(s)" in out, "group add", out)
    ctl.ok("range", "add", "pool", "tcp:7000-7009")
    check("delivery group" in ctl.ok("lookup", "tcp:7005"), "lookup of a group's port")
    out = ctl.ok("groups")
    check(lines_with(out, "pool", "2", "web:1:active", "db:3:active", "tcp:7000-7009"), "groups table", out)
    out = ctl.ok("group", "member", "drain", "pool", "web")
    check("web in pool: drain on (was active)" in out, "group member drain", out)
    out = ctl.ok("groups", "pool")
    check(lines_with(out, "web", "1", "draining") and lines_with(out, "db", "3", "active"), "groups pool", out)
    out = ctl.ok("group", "member", "weight", "pool", "db", "5")
    check("db in pool: weight 5 (was 3)" in out, "group member weight", out)
    ctl.ok("group", "member", "add", "pool", "my-vm.1", "2")
    check(lines_with(ctl.ok("groups", "pool"), "my-vm.1", "2", "active"), "group member add")
    check("removed my-vm.1 from pool" in ctl.ok("group", "member", "del", "pool", "my-vm.1"), "group member del")
    g = ctl.json("groups", "pool")
    if g:
        check(g.get("members") == ["web weight=1 draining", "db weight=5 active"], "groups pool --json", g)
    ctl.fails(1, ["owns 1 range"], "group", "del", "pool")
    ctl.fails(1, ['unknown VM "nope"'], "group", "member", "add", "pool", "nope")
    ctl.fails(2, [], "group", "member", "drain", "pool", "web", "maybe")
    ctl.ok("range", "del", "tcp:7000-7009")
    check("deleted group pool" in ctl.ok("group", "del", "pool"), "group del")
    check(ctl.ok("groups").strip() == "no groups", "groups after del")


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        return 2
    binary, script = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    workdir = tempfile.mkdtemp(prefix="pmx-ctl-")
    pm = Portmux(binary, workdir, "main")
    try:
        pm.start()
        ctl = Ctl(script, pm.prefix)
        if wait_ready(pm, ctl):
            for test in (lambda: test_reading(ctl, pm), lambda: test_changes(ctl, pm),
                         lambda: test_guest_config(ctl), lambda: test_usage_and_connection(ctl, pm, workdir),
                         lambda: test_groups(ctl)):
                try:
                    test()
                except Exception as e:  # one broken step must not hide the others
                    check(False, "%s: %r" % (type(e).__name__, e))
            check(pm.proc.poll() is None, "portmux died during the test", pm.log_tail())
            rc = pm.terminate()
            check(rc == 0, "portmux exit status %s after SIGTERM (expected 0)" % rc, pm.log_tail())
        pm.stop()
        try:
            test_read_only(binary, script, workdir)
        except Exception as e:
            check(False, "read-only: %s: %r" % (type(e).__name__, e))
        try:
            test_remotes(binary, script, workdir)
        except Exception as e:
            check(False, "remotes: %s: %r" % (type(e).__name__, e))
    finally:
        pm.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("%d check(s) failed" % len(failures))
        return 1
    print("PASS portmuxctl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
