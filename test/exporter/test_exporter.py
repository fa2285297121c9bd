#!/usr/bin/python3
"""portmux-exporter against the real portmux binary on net_pcap ports.

The uplink's rx pcap holds frames for the VM "web", frames the firewall drops and frames for the host; the
VM's own rx pcap holds frames it sends out and one with a spoofed source. Once every frame is counted (the
pcaps are replayed once, so the counters then stand still), a scrape must pass promtool, carry HELP and
TYPE for every family, use only portmux_ names, and agree with /portmux/stats, /portmux/vms and
/portmux/info read at the same quiet moment. A change (range/add) shows in the generation. Then portmux
stops: the exporter stays up and says portmux_up 0 with nothing else of portmux; portmux starts again with
256 VMs and empty pcaps: portmux_up 1, counters from zero, every VM listed (paged telemetry).

Usage: /usr/bin/python3 test_exporter.py PORTMUX EXPORTER   (root; else it skips)
"""

import glob
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import exporter_process  # noqa: E402
from scapy.all import IP, UDP, Ether, Raw, wrpcap  # noqa: E402
import telemetry  # noqa: E402

SHARED_IP = "192.0.2.10"
PEER_IP = "198.51.100.7"
UPLINK_MAC = "02:00:00:00:0a:01"
PEER_MAC = "02:00:00:00:0b:07"
WEB_MAC = "52:54:00:12:34:01"
TO_WEB, FIREWALLED, TO_HOST = 7, 3, 2       # frames on the uplink
FROM_WEB, SPOOFED = 4, 1                    # frames from the VM
MANY_VMS = 256
METRICS_DOC = os.path.join(HERE, "..", "..", "docs", "metrics.md")

failures = []


def check(condition, message):
    print("%s: %s" % ("PASS" if condition else "FAIL", message), flush=True)
    if not condition:
        failures.append(message)
    return condition


def udp_frame(dst_mac, src_mac, src_ip, dst_ip, sport, dport, seq):
    # UDP checksum 0: none (IPv4); the IP identification carries the sequence number too.
    return (Ether(dst=dst_mac, src=src_mac) / IP(src=src_ip, dst=dst_ip, id=seq) /
            UDP(sport=sport, dport=dport, chksum=0) / Raw(struct.pack("!I", seq) + b"portmux-exporter"))


def uplink_frames():
    frames = [udp_frame(UPLINK_MAC, PEER_MAC, PEER_IP, SHARED_IP, 40000, 8080, i) for i in range(TO_WEB)]
    frames += [udp_frame(UPLINK_MAC, PEER_MAC, PEER_IP, SHARED_IP, 40000, 23, 100 + i) for i in range(FIREWALLED)]
    frames += [udp_frame(UPLINK_MAC, PEER_MAC, PEER_IP, SHARED_IP, 40000, 9999, 200 + i) for i in range(TO_HOST)]
    return frames


def web_frames():
    frames = [udp_frame(PEER_MAC, WEB_MAC, SHARED_IP, PEER_IP, 8080, 40000, 300 + i) for i in range(FROM_WEB)]
    frames += [udp_frame(PEER_MAC, WEB_MAC, "192.0.2.99", PEER_IP, 8080, 40000, 400 + i) for i in range(SPOOFED)]
    return frames


def pcap_device(index, rx, work, tag):
    return "net_pcap%d,rx_pcap=%s,tx_pcap=%s" % (index, rx, os.path.join(work, "%s_tx%d.pcap" % (tag, index)))


def traffic_config(work):
    empty, uplink, web = (os.path.join(work, n) for n in ("empty.pcap", "uplink.pcap", "web.pcap"))
    wrpcap(empty, [])
    wrpcap(uplink, uplink_frames())
    wrpcap(web, web_frames())
    return {
        "shared_ip": SHARED_IP,
        "uplink": {"device": pcap_device(0, uplink, work, "a"), "mac": UPLINK_MAC},
        "host": {"device": pcap_device(1, empty, work, "a"), "ranges": ["tcp:22"]},
        "vms": [{"name": "web", "device": pcap_device(2, web, work, "a"), "mac": WEB_MAC, "ranges": ["8000-8099"]}],
        "firewall": {"default": "accept", "rules": [{"action": "drop", "proto": "udp", "dst_ports": "23"}]},
    }


def many_vms_config(work):
    """The same switch with empty pcaps and MANY_VMS VMs: one device VM and vhost-user VMs without a guest."""
    empty = os.path.join(work, "empty.pcap")
    vms = [{"name": "web", "device": pcap_device(2, empty, work, "b"), "mac": WEB_MAC, "ranges": ["8000-8099"]}]
    for i in range(1, MANY_VMS):
        vms.append({"name": "vm-%d" % i, "vhost": os.path.join(work, "vm%d.sock" % i), "vhost_mode": "server",
                    "mac": "52:54:00:00:%02x:%02x" % (i // 256, i % 256), "ranges": ["udp:%d" % (10000 + i)]})
    return {
        "shared_ip": SHARED_IP,
        "uplink": {"device": pcap_device(0, empty, work, "b"), "mac": UPLINK_MAC},
        "host": {"device": pcap_device(1, empty, work, "b"), "ranges": ["tcp:22"]},
        "vms": vms,
    }


def wait_counted(prefix, expect_uplink, expect_vms, timeout=30.0):
    """Until the pcaps are replayed and every frame counted; the counters then do not move any more."""
    deadline = time.monotonic() + timeout
    stats = {}
    while time.monotonic() < deadline:
        with telemetry.Telemetry(telemetry.socket_path(prefix)) as tel:
            stats = tel.query("/portmux/stats")
        if stats.get("rx_uplink") == expect_uplink and stats.get("rx_vms") == expect_vms:
            return stats
        time.sleep(0.2)
    raise telemetry.TelemetryError("frames not all counted within %g s: %r" % (timeout, stats))


def every_entry(tel, command):
    entries, offset = [], None
    while True:
        page = tel.query(command + ("," + offset if offset else ""))
        entries += [page[k] for k in sorted((k for k in page if k.isdigit()), key=int)]
        offset = page.get("page_next")
        if not offset:
            return entries


def read_state(prefix):
    """/portmux/stats, /portmux/info, every VM and every worker, in one connection."""
    with telemetry.Telemetry(telemetry.socket_path(prefix)) as tel:
        stats = tel.query("/portmux/stats")
        info = tel.query("/portmux/info")
        vms = every_entry(tel, "/portmux/vms")
        workers = every_entry(tel, "/portmux/workers")
    return stats, info, vms, workers


def stop_portmux(proc, prefix):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, prefix), ignore_errors=True)
    for leftover in glob.glob("/dev/hugepages/%smap_*" % prefix):
        os.unlink(leftover)


# ---------------------------------------------------------------------------------------------------------
# What a scrape must be.

# /portmux/stats keys that are not drop_* nor per kind of port, and their metrics.
FORWARDED = {"to_vm": ("uplink", "vm"), "to_host": ("uplink", "host"),
             "to_uplink_from_vm": ("vm", "uplink"), "to_uplink_from_host": ("host", "uplink")}


def stats_metric(key):
    """The sample a /portmux/stats key must be served as (docs/metrics.md): (name, labels)."""
    for direction in ("tx_dropped", "rx", "tx"):
        for kind in ("uplink", "host", "vms"):
            if key == "%s_%s" % (direction, kind):
                names = {"rx": "rx_packets", "tx": "tx_packets", "tx_dropped": "tx_dropped"}
                return "portmux_port_%s_total" % names[direction], {"port": kind}
    if key.startswith("drop_"):
        return "portmux_drops_total", {"reason": key[5:]}
    if key in FORWARDED:
        return "portmux_forwarded_total", {"from": FORWARDED[key][0], "to": FORWARDED[key][1]}
    return "portmux_%s_total" % key, {}


def check_format(text, what):
    parsed = exporter_process.parse(text)
    bad_names = sorted({n for n, _, _ in parsed["samples"] if not n.startswith("portmux_")})
    check(not bad_names, "%s: every sample is named portmux_* (others: %s)" % (what, bad_names[:5]))
    orphans = sorted({n for n, _, _ in parsed["samples"] if exporter_process.family_of(n, parsed["type"]) is None})
    check(not orphans, "%s: every sample belongs to a family with a TYPE line (without: %s)" % (what, orphans[:5]))
    no_help = sorted(set(parsed["type"]) - set(parsed["help"]))
    check(not no_help and parsed["type"], "%s: every family has a HELP line (without: %s)" % (what, no_help[:5]))
    counters_named = all(name.endswith("_total") for name, kind in parsed["type"].items() if kind == "counter")
    gauges_named = all(not name.endswith("_total") for name, kind in parsed["type"].items() if kind == "gauge")
    check(counters_named and gauges_named, "%s: counters end in _total, gauges do not" % what)
    with open(METRICS_DOC) as f:
        documented = set(re.findall(r"`(portmux_[a-z_]+)`", f.read()))
    undocumented = sorted(set(parsed["type"]) - documented)
    check(not undocumented, "%s: every family is documented in docs/metrics.md (not: %s)" % (what, undocumented))
    promtool = shutil.which("promtool")
    if promtool is None:
        print("note: promtool not installed (Debian package prometheus): %s not checked by it" % what)
    else:
        p = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
        check(p.returncode == 0,
              "%s: promtool check metrics passes (%s)" % (what, (p.stdout + p.stderr).strip()[:300]))
    return parsed


def check_agrees(parsed, stats, info, vms, workers):
    """Every telemetry number the exporter maps is served with the same value."""
    wrong = []
    for key, number in stats.items():
        name, labels = stats_metric(key)
        served = exporter_process.value(parsed, name, **labels)
        if served != number:
            wrong.append("%s=%s served as %s%s=%s" % (key, number, name, labels, served))
    check(not wrong, "all %d /portmux/stats counters are served with their values (%s)" % (len(stats), wrong[:3]))
    wrong = []
    for vm in vms:
        for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped", "dropped_disabled",
                    "dropped_spoof", "dropped_offload", "tx_retries"):
            served = exporter_process.value(parsed, "portmux_vm_%s_total" % key, vm=vm["name"])
            if served != vm[key]:
                wrong.append("%s %s=%s served %s" % (vm["name"], key, vm[key], served))
        link = exporter_process.value(parsed, "portmux_vm_link_up", vm=vm["name"])
        if link != (1 if vm["link"] == "up" else 0):
            wrong.append("%s link %s served %s" % (vm["name"], vm["link"], link))
        for key in ("enabled", "ranges"):
            if exporter_process.value(parsed, "portmux_vm_%s" % key, vm=vm["name"]) != vm[key]:
                wrong.append("%s %s" % (vm["name"], key))
    check(not wrong, "every counter and state of the %d VM(s) is served (%s)" % (len(vms), wrong[:3]))
    wrong = []
    for worker in workers:
        for key in ("rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_dropped", "drops"):
            served = exporter_process.value(parsed, "portmux_worker_%s_total" % key, worker=str(worker["worker"]))
            if served != worker[key]:
                wrong.append("worker %s %s=%s served %s" % (worker["worker"], key, worker[key], served))
        if exporter_process.value(parsed, "portmux_worker_info", worker=str(worker["worker"]),
                                  lcore=str(worker["lcore"])) != 1:
            wrong.append("worker %s lcore %s" % (worker["worker"], worker["lcore"]))
    check(workers and not wrong, "every counter of the %d worker(s) is served (%s)" % (len(workers), wrong[:3]))
    check(sum(w["rx_packets"] for w in workers) == stats["rx_uplink"] + stats["rx_host"] + stats["rx_vms"],
          "the workers' rx_packets add up to the ports' (%d)" % sum(w["rx_packets"] for w in workers))
    check(exporter_process.value(parsed, "portmux_snapshot_generation") == info["generation"],
          "portmux_snapshot_generation is /portmux/info's generation (%s)" % info["generation"])
    check(exporter_process.value(parsed, "portmux_vms") == info["vms"], "portmux_vms is /portmux/info's vms")
    errors = {l.get("reason"): v for n, l, v in parsed["samples"] if n == "portmux_exporter_errors_total"}
    check(errors and not any(errors.values()),
          "a real portmux's answers leave portmux_exporter_errors_total at 0 (every key mapped): %s" % errors)


def main():
    if len(sys.argv) != 3:
        print("usage: test_exporter.py PORTMUX EXPORTER", file=sys.stderr)
        return 2
    portmux, exporter_script = sys.argv[1], sys.argv[2]
    if os.geteuid() != 0:
        print("SKIP: needs root (DPDK's runtime directory /var/run/dpdk)")
        return 77
    probe = subprocess.run(["/usr/bin/python3", "-c", "import prometheus_client"], capture_output=True)
    if probe.returncode != 0:
        print("SKIP: python3-prometheus-client is not installed")
        return 77

    work = tempfile.mkdtemp(prefix="pmx-exporter-")
    prefix = "pmx-exporter-%d" % os.getpid()
    proc = exporter = None
    try:
        proc, _ = telemetry.start_portmux(portmux, traffic_config(work), work, prefix)
        exporter = exporter_process.Exporter(["/usr/bin/python3", exporter_script, "--file-prefix", prefix], work)

        wait_counted(prefix, TO_WEB + FIREWALLED + TO_HOST, FROM_WEB + SPOOFED)
        stats, info, vms, workers = read_state(prefix)
        text = exporter.scrape()
        after = read_state(prefix)[0]
        check(after == stats, "the counters stood still around the scrape (a fair comparison)")
        parsed = check_format(text, "scrape with traffic")
        check(exporter_process.value(parsed, "portmux_up") == 1, "portmux_up 1 while portmux runs")
        check_agrees(parsed, stats, info, vms, workers)
        # The traffic itself, so that agreeing on zeros cannot pass.
        v = lambda name, **labels: exporter_process.value(parsed, name, **labels)  # noqa: E731
        check(v("portmux_port_rx_packets_total", port="uplink") == TO_WEB + FIREWALLED + TO_HOST,
              "portmux_port_rx_packets_total{port=\"uplink\"} counts every uplink frame")
        check(v("portmux_drops_total", reason="firewall") == FIREWALLED,
              "the firewalled frames are drops{reason=firewall}")
        check(v("portmux_vm_tx_packets_total", vm="web") == TO_WEB,
              "portmux_vm_tx_packets_total{vm=\"web\"} = frames to web")
        check(v("portmux_vm_rx_packets_total", vm="web") == FROM_WEB + SPOOFED, "web's own frames are its rx")
        check(v("portmux_drops_total", reason="spoof_address") == SPOOFED,
              "the spoofed frame is drops{reason=spoof_address}")
        check(v("portmux_forwarded_total", **{"from": "uplink", "to": "host"}) == TO_HOST,
              "frames to the host counted")
        check(v("portmux_port_link_up", port="uplink") == 1 and v("portmux_vm_link_up", vm="web") == 1,
              "link states: the uplink and web are up")
        check(v("portmux_port_device_rx_packets_total", port="uplink") == TO_WEB + FIREWALLED + TO_HOST,
              "the uplink device's own ipackets is served")
        check(v("portmux_ranges") == 2 and v("portmux_host_ranges") == 1 and v("portmux_vm_ranges", vm="web") == 1,
              "range counts: 2 in all, 1 of the host, 1 of web")
        duration = v("portmux_scrape_duration_seconds")
        check(duration is not None and duration > 0, "portmux_scrape_duration_seconds is served")

        with telemetry.Telemetry(telemetry.socket_path(prefix)) as tel:
            changed = tel.query("/portmux/range/add,web,tcp:9000")
        parsed = exporter_process.parse(exporter.scrape())
        check(exporter_process.value(parsed, "portmux_snapshot_generation") == changed.get("generation")
              and exporter_process.value(parsed, "portmux_vm_ranges", vm="web") == 2,
              "after range/add the next scrape shows the new generation and web's 2 ranges")

        # portmux gone: the exporter stays and says so.
        stop_portmux(proc, prefix)
        text = exporter.scrape()
        parsed = check_format(text, "scrape while portmux is down")
        check(exporter_process.value(parsed, "portmux_up") == 0, "portmux_up 0 once portmux has stopped")
        families = set(parsed["type"])
        check(families == {"portmux_up", "portmux_scrape_duration_seconds", "portmux_exporter_errors_total"},
              "while portmux is down only up, scrape duration and the exporter's errors are served (%s)"
              % sorted(families))
        time.sleep(0.5)
        check(exporter.alive(), "the exporter is still running after portmux stopped")

        # portmux back, with many VMs and no traffic.
        proc, _ = telemetry.start_portmux(portmux, many_vms_config(work), work, prefix)
        stats, info, vms, workers = read_state(prefix)
        text = exporter.scrape()
        parsed = check_format(text, "scrape after the restart with %d VMs" % MANY_VMS)
        check(exporter_process.value(parsed, "portmux_up") == 1, "portmux_up 1 again after portmux restarted")
        check(exporter_process.value(parsed, "portmux_port_rx_packets_total", port="uplink") == 0,
              "counters start again from zero after the restart")
        served_vms = {l["vm"] for n, l, _ in parsed["samples"] if n == "portmux_vm_tx_packets_total"}
        check(len(vms) == MANY_VMS and served_vms == {vm["name"] for vm in vms},
              "all %d VMs are served (every page of /portmux/vms)" % MANY_VMS)
        check_agrees(parsed, stats, info, vms, workers)

        status, _ = exporter.get("/nothing-here")
        check(status == 404, "a path other than /metrics and / answers 404")
        check(exporter.alive(), "the exporter is still running")
        check(exporter.stop() == 0, "the exporter exits 0 on SIGTERM")
        exporter = None
    except Exception as e:  # a broken run must fail with its reason, and still clean up
        check(False, "unexpected %s: %s" % (type(e).__name__, e))
    finally:
        if exporter is not None:
            exporter.stop()
        if proc is not None:
            stop_portmux(proc, prefix)
        shutil.rmtree(work, ignore_errors=True)

    print("%d check(s) failed" % len(failures) if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
