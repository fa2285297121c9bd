#!/usr/bin/python3
"""Helper of bench_throughput.sh: traffic pcaps, portmux configurations, counter rates through telemetry,
paced range changes, final counters, and the report (table and JSON).

Usage: bench_helper.py pcap|imix|l3fwd-rules|config|rate|churn|final|report ... (see each command's argparse help)
"""

import argparse
import glob
import json
import os
import random
import re
import socket
import statistics
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from telemetry import Telemetry, socket_path  # noqa: E402

SHARED_IP = "192.0.2.10"
SHARED_IP6 = "2001:db8::10"
UPLINK_MAC = "02:00:00:00:0a:01"
PEER_MAC = "02:00:00:00:00:fe"
SPREAD_WARNING = 1.5


def vm_mac(i):
    return "52:54:00:%02x:%02x:%02x" % ((i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff)


# ---- pcap -------------------------------------------------------------------------------------------------

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xffff) + (s >> 16)
    return (~s) & 0xffff


def mac_bytes(text):
    return bytes(int(x, 16) for x in text.split(":"))


def l4_segment(proto, sport, dport, payload, pseudo_header):
    """A TCP (ACK) or UDP segment with `payload` zero bytes, its checksum over `pseudo_header(length)`."""
    body = bytes(payload)
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x10, 65535, 0, 0) + body
        csum_at = 16
    else:
        l4 = struct.pack("!HHHH", sport, dport, 8 + payload, 0) + body
        csum_at = 6
    c = checksum(pseudo_header(len(l4)) + l4) or 0xffff
    return l4[:csum_at] + struct.pack("!H", c) + l4[csum_at + 2:]


def frame(proto, sport, dport, src_ip, size):
    """An Ethernet/IPv4/TCP-or-UDP frame of `size` bytes on the wire (FCS included, so size - 4 in the pcap)."""
    l4_len = 20 if proto == 6 else 8
    payload = max(0, size - 4 - 14 - 20 - l4_len)
    src = bytes(src_ip)
    dst = bytes(int(x) for x in SHARED_IP.split("."))
    total = 20 + l4_len + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0, 64, proto, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    l4 = l4_segment(proto, sport, dport, payload, lambda n: src + dst + struct.pack("!BBH", 0, proto, n))
    eth = mac_bytes(UPLINK_MAC) + mac_bytes(PEER_MAC) + struct.pack("!H", 0x0800)
    return eth + ip + l4


def frame6(proto, sport, dport, src_ip6, size):
    """An Ethernet/IPv6/TCP-or-UDP frame to SHARED_IP6 of `size` bytes on the wire (FCS included)."""
    l4_len = 20 if proto == 6 else 8
    payload = max(0, size - 4 - 14 - 40 - l4_len)
    src = bytes(src_ip6)
    dst = socket.inet_pton(socket.AF_INET6, SHARED_IP6)
    l4 = l4_segment(proto, sport, dport, payload, lambda n: src + dst + struct.pack("!IxxxB", n, proto))
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(l4), proto, 64, src, dst)
    eth = mac_bytes(UPLINK_MAC) + mac_bytes(PEER_MAC) + struct.pack("!H", 0x86DD)
    return eth + ip6 + l4


def write_pcap(path, frames):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for data in frames:
            f.write(struct.pack("<IIII", 0, 0, len(data), len(data)))
            f.write(data)


def parse_span(text):
    """"tcp:1024-2047", "udp:80", "1024-65535" (TCP and UDP)."""
    protos = [6, 17]
    if text.startswith("tcp:"):
        protos, text = [6], text[4:]
    elif text.startswith("udp:"):
        protos, text = [17], text[4:]
    first, _, last = text.partition("-")
    return protos, int(first), int(last or first)


def cmd_pcap(args):
    rng = random.Random(args.seed)
    spans = [parse_span(s) for s in args.spans]
    frames = []
    for i in range(args.frames):
        protos, first, last = spans[i % len(spans)]
        proto = rng.choice(protos)
        src_ip = (198, 18 + rng.randrange(2), rng.randrange(256), 1 + rng.randrange(254))
        frames.append(frame(proto, 1024 + rng.randrange(64000), rng.randint(first, last), src_ip, args.size))
    write_pcap(args.out, frames)


# The IMIX of the cycles benchmark: sizes 64 / 576 / 1500 B in the classic 7:4:1 proportion, 30 % IPv6, TCP and
# UDP alike, and `host_share` of the frames to ports no VM owns (they go to the host).
IMIX_SIZES = [64] * 7 + [576] * 4 + [1500]


def cmd_imix(args):
    rng = random.Random(args.seed)
    vm_first, vm_last = (int(x) for x in args.vm_ports.split("-"))
    host_first, host_last = (int(x) for x in args.host_ports.split("-"))
    frames = []
    host_every = round(1 / args.host_share) if args.host_share > 0 else 0
    for i in range(args.frames):
        proto = rng.choice((6, 17))
        size = IMIX_SIZES[i % len(IMIX_SIZES)]
        to_host = host_every and i % host_every == host_every - 1
        dport = rng.randint(host_first, host_last) if to_host else rng.randint(vm_first, vm_last)
        sport = 1024 + rng.randrange(64000)
        if rng.random() < args.ipv6_share:
            src = socket.inet_pton(socket.AF_INET6, "2001:db8:ff::%x" % (1 + rng.randrange(0xfffe)))
            frames.append(frame6(proto, sport, dport, src, size))
        else:
            src = (198, 18 + rng.randrange(2), rng.randrange(256), 1 + rng.randrange(254))
            frames.append(frame(proto, sport, dport, src, size))
    write_pcap(args.out, frames)


# ---- configuration ----------------------------------------------------------------------------------------

def split_span(first, last, count):
    """`count` contiguous blocks covering first..last (fewer when the span is smaller)."""
    size = last - first + 1
    count = min(count, size)
    out = []
    for i in range(count):
        a = first + size * i // count
        b = first + size * (i + 1) // count - 1
        out.append("%d" % a if a == b else "%d-%d" % (a, b))
    return out


def firewall_rules(count, seed):
    """`count` rules an operator might write, none of which matches the benchmark traffic (sources in
    198.18.0.0/15), so every rule set forwards the same packets: source blocks in 100.64.0.0/10 and
    203.0.113.0/24, mostly with a protocol and destination ports; default accept."""
    rng = random.Random(seed)
    rules = []
    for _ in range(count):
        rule = {"action": "drop" if rng.random() < 0.75 else "accept"}
        length = rng.randint(16, 32)
        addr = (100 << 24) | (64 << 16) | rng.getrandbits(22)
        addr &= (0xffffffff << (32 - length)) & 0xffffffff
        rule["src"] = "%d.%d.%d.%d/%d" % (addr >> 24, (addr >> 16) & 255, (addr >> 8) & 255, addr & 255, length)
        r = rng.random()
        if r < 0.5:
            rule["proto"] = "tcp"
        elif r < 0.8:
            rule["proto"] = "udp"
        if rng.random() < 0.75:
            first = rng.randrange(65536)
            last = min(65535, first + (0 if rng.random() < 0.3 else rng.randrange(2048)))
            rule["dst_ports"] = "%d" % first if first == last else "%d-%d" % (first, last)
        rules.append(rule)
    return rules


def cmd_config(args):
    first, last = (int(x) for x in args.owned.split("-"))
    blocks = split_span(first, last, args.ranges)
    vms = []
    for i in range(args.vms):
        vm = {"name": "vm%d" % (i + 1), "mac": vm_mac(i + 1), "ranges": blocks[i::args.vms]}
        if args.vhost and i == 0:
            vm["vhost"] = args.vhost
            vm["vhost_mode"] = "server"
        else:
            vm["device"] = "net_null%d,no-rx=1" % (i + 1)
        vms.append(vm)
    config = {
        "shared_ip": SHARED_IP,
        **({"shared_ip6": SHARED_IP6} if args.ipv6 else {}),
        "uplink": {"device": args.uplink, "mac": UPLINK_MAC},
        "host": {"device": args.host, "ranges": [],
                 **({"rate_limit_pps": args.host_rate_limit} if args.host_rate_limit is not None else {})},
        "vms": vms,
        "firewall": {"default": "accept", "rules": firewall_rules(args.rules, 7)},
        "unmatched": "host",
    }
    with open(args.out, "w") as f:
        json.dump(config, f)


def l3fwd_acl_line(rule, lead, out_port=None):
    """One rule in l3fwd's ACL file syntax: '@' (drop) or 'R' (route to out_port) lines of
    "SRC/LEN DST/LEN SPORT_LO : SPORT_HI DPORT_LO : DPORT_HI PROTO/MASK [PORT]"."""
    proto = {"tcp": "0x06/0xff", "udp": "0x11/0xff"}.get(rule.get("proto"), "0x00/0x00")
    first, _, last = rule.get("dst_ports", "0-65535").partition("-")
    line = "%s%s %s 0 : 65535 %s : %s %s" % (lead, rule.get("src", "0.0.0.0/0"), rule.get("dst", "0.0.0.0/0"),
                                             first, last or first, proto)
    return line + (" %d" % out_port if out_port is not None else "")


def cmd_l3fwd_rules(args):
    """l3fwd's rule files for the same work portmux does: LPM routes of the shared addresses to the sink
    port; for ACL, the firewall rules of `config` (drop -> '@', accept -> a route to the sink, in order, as
    l3fwd gives earlier lines higher priority) and a final route of everything else to the sink."""
    config = json.load(open(args.config))
    sink = args.sink_port
    if args.lookup == "lpm":
        v4 = ["R%s/32 %d" % (config["shared_ip"], sink)]
        v6 = ["R%s/128 %d" % (config.get("shared_ip6", SHARED_IP6), sink)]
    else:
        v4 = [l3fwd_acl_line(r, "@") if r["action"] == "drop" else l3fwd_acl_line(r, "R", sink)
              for r in config.get("firewall", {}).get("rules", []) if ":" not in r.get("src", "")]
        v4.append(l3fwd_acl_line({}, "R", sink))
        # (l3fwd reads IPv6 rule addresses in the full eight-group form only)
        v6 = [l3fwd_acl_line({"src": "0:0:0:0:0:0:0:0/0", "dst": "0:0:0:0:0:0:0:0/0"}, "R", sink)]
    for path, lines in ((args.out_v4, v4), (args.out_v6, v6)):
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")


def cmd_flows(args):
    """OpenFlow rules equivalent to a portmux configuration: the firewall rules (same priority order) as drop /
    accept flows, each range as masked tp_dst matches for each protocol, the rest to the host port."""
    config = json.load(open(args.config))
    out = []
    for i, rule in enumerate(config["firewall"]["rules"]):
        protos = {"tcp": ["tcp"], "udp": ["udp"]}.get(rule.get("proto"), ["tcp", "udp"] if "dst_ports" in rule else ["ip"])
        for proto in protos:
            # Earlier rules get higher priorities: first match wins, as in portmux.
            match = "priority=%d,in_port=%s,%s,nw_dst=%s,nw_src=%s" % (
                40000 - i, args.uplink, proto, SHARED_IP, rule["src"])
            spans = [(0, 0)] if "dst_ports" not in rule else [parse_span(rule["dst_ports"])[1:]]
            for a, b in spans:
                for value, mask in prefixes(a, b) if "dst_ports" in rule else [(None, None)]:
                    tp = "" if value is None else ",tp_dst=0x%04x/0x%04x" % (value, mask)
                    action = "drop" if rule["action"] == "drop" else "resubmit(,1)"
                    out.append(match + tp + ",actions=" + action)
    out.append("priority=1,in_port=%s,ip,nw_dst=%s,actions=resubmit(,1)" % (args.uplink, SHARED_IP))
    out.append("priority=0,actions=output:%s" % args.host)
    for vm_index, vm in enumerate(config["vms"]):
        port = args.vm_ports[vm_index]
        for text in vm["ranges"]:
            protos, a, b = parse_span(text)
            for proto in protos:
                for value, mask in prefixes(a, b):
                    out.append("table=1,priority=100,%s,tp_dst=0x%04x/0x%04x,actions=mod_dl_dst:%s,output:%s" % (
                        "tcp" if proto == 6 else "udp", value, mask, vm["mac"], port))
    out.append("table=1,priority=0,actions=output:%s" % args.host)
    with open(args.out, "w") as f:
        f.write("\n".join(out) + "\n")


def prefixes(first, last):
    """Aligned blocks covering first..last as (value, mask) pairs of a 16-bit field."""
    out = []
    while first <= last:
        size = 65536 if first == 0 else first & -first
        while first + size - 1 > last:
            size >>= 1
        out.append((first, (0xffff & ~(size - 1))))
        first += size
    return out


# ---- measurements -----------------------------------------------------------------------------------------

def is_lcore_worker(comm):
    """The thread of EAL lcore 1, the forwarding lcore of every process the benchmarks start with two lcores."""
    return comm.endswith("worker-1")


def thread_cpu_s(pid, match):
    """CPU seconds a thread of process PID has had (/proc/PID/task/TID/schedstat): the first whose name
    `match` accepts, or the process's main thread when `match` is None."""
    for task in glob.glob("/proc/%d/task/*" % pid):
        try:
            if match is None and os.path.basename(task) == str(pid) or \
               match is not None and match(open(task + "/comm").read().strip()):
                return int(open(task + "/schedstat").read().split()[0]) / 1e9
        except OSError:
            pass
    raise RuntimeError("no forwarding thread in process %d" % pid)


def tsc_hz_guess():
    """Without --tsc-hz (bench_stages measures it): the CPU's nominal clock from /proc/cpuinfo."""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name") and "GHz" in line:
            return float(line.rsplit("@", 1)[1].strip().replace("GHz", "")) * 1e9
    for line in open("/proc/cpuinfo"):
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]) * 1e6
    return 2.6e9


def hugepages_free_mib():
    info = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    return int(info["HugePages_Free"].split()[0]) * int(info["Hugepagesize"].split()[0]) // 1024


def finish(out, json_path):
    """The end of every benchmark script: its errors and warnings printed, OUT written to JSON_PATH (if any),
    and the exit status (1 when anything failed)."""
    for e in out["errors"]:
        print("ERROR: " + e)
    for w in out["warnings"]:
        print("WARNING: " + w)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(out, f, indent=2)
    return 1 if out["errors"] else 0


def counters(tel, kind, port):
    if kind == "portmux":
        s = tel.query("/portmux/stats")
        return {"out": s["tx_vms"] + s["tx_host"], "rx": s["rx_uplink"], "tx_vms": s["tx_vms"],
                "tx_host": s["tx_host"], "tx_dropped_host": s["tx_dropped_host"],
                "tx_dropped_vms": s["tx_dropped_vms"], "drop_tx": s["drop_tx"]}
    s = tel.query("/ethdev/stats,%d" % port)
    return {"out": s["opackets"], "rx": s["ipackets"], "missed": s.get("imissed", 0), "tx_errors": s["oerrors"]}


def connect(prefix, timeout=30.0):
    """A telemetry connection, retried while the socket exists but is not accepting yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return Telemetry(socket_path(prefix))
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_ready(tel, command, timeout=60.0):
    """The telemetry socket exists before the application registers its commands (and before ports are up):
    wait until `command` answers an object."""
    deadline = time.monotonic() + timeout
    while True:
        answer = tel.query(command)
        if isinstance(answer, dict):
            return answer
        if time.monotonic() > deadline:
            raise SystemExit("bench_helper: %s never answered" % command)
        time.sleep(0.1)


def cmd_rate(args):
    """Packets per second over `interval` seconds after `warmup`, from two counter readings."""
    with connect(args.prefix) as tel:
        wait_ready(tel, "/portmux/stats" if args.kind == "portmux" else "/ethdev/stats,%d" % args.port)
        time.sleep(args.warmup)
        t0a = time.monotonic()
        c0 = counters(tel, args.kind, args.port)
        t0 = (t0a + time.monotonic()) / 2
        time.sleep(args.interval)
        t1a = time.monotonic()
        c1 = counters(tel, args.kind, args.port)
        t1 = (t1a + time.monotonic()) / 2
    dt = t1 - t0
    rates = {k: (c1[k] - c0[k]) / dt for k in c0}
    key = "rx" if args.field == "rx" else "out"
    result = {"mpps": rates[key] / 1e6, "rates_mpps": {k: v / 1e6 for k, v in rates.items()},
              "deltas": {k: c1[k] - c0[k] for k in c0}, "seconds": dt}
    print(json.dumps(result))


def cmd_churn(args):
    """Range moves paced at `rate` per second for `duration` seconds, sent by `clients` telemetry connections
    at once (each one request, one answer at a time, like an operator's tool); answers the achieved rate and
    latencies. One synchronous client cannot exceed 1 / (round trip): several show what portmux itself takes."""
    owners = [args.a, args.b]
    count = int(args.rate * args.duration)
    results = [{"latencies": [], "errors": 0} for _ in range(args.clients)]
    connections = [connect(args.prefix) for _ in range(args.clients)]
    wait_ready(connections[0], "/portmux/stats")
    time.sleep(args.warmup)
    start = time.monotonic()

    def client(k):
        tel, out = connections[k], results[k]
        for i in range(k, count, args.clients):
            due = start + i / args.rate
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            t0 = time.perf_counter()
            answer = tel.query("/portmux/range/move,%s,%s" % (args.range, owners[(i + 1) % 2]))
            out["latencies"].append(time.perf_counter() - t0)
            if "error" in answer:
                out["errors"] += 1

    threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - start
    generation = connections[0].query("/portmux/info")["generation"]
    for tel in connections:
        tel.close()
    latencies = sorted(x for r in results for x in r["latencies"])
    errors = sum(r["errors"] for r in results)
    print(json.dumps({"requested": args.rate, "clients": args.clients, "changes": count, "seconds": elapsed,
                      "achieved": count / elapsed if elapsed > 0 else 0, "errors": errors, "generation": generation,
                      "latency_ms_median": latencies[len(latencies) // 2] * 1e3 if latencies else None,
                      "latency_ms_p99": latencies[int(len(latencies) * 0.99)] * 1e3 if latencies else None,
                      "latency_ms_max": latencies[-1] * 1e3 if latencies else None}))


def cmd_final(args):
    """The counters portmux logs when it stops."""
    text = open(args.log, errors="replace").read()
    ports = {}
    for m in re.finditer(r"portmux: (\w+) (\S+): rx (\d+) tx (\d+) tx_dropped (\d+)", text):
        ports[m.group(2)] = {"role": m.group(1), "rx": int(m.group(3)), "tx": int(m.group(4)),
                             "tx_dropped": int(m.group(5))}
    counters_ = {m.group(1): int(m.group(2)) for m in re.finditer(r"portmux: ([a-z_]+): (\d+)\n", text)}
    received = sum(p["rx"] for p in ports.values() if p["role"] == "uplink")
    to_vms = sum(p["tx"] for p in ports.values() if p["role"] == "vm")
    drops = {k: v for k, v in counters_.items() if k.startswith("drop_")}
    lost = received - to_vms
    print(json.dumps({"received": received, "delivered_to_vms": to_vms, "lost": lost, "drops": drops,
                      "to_host": counters_.get("to_host", 0), "complete": bool(ports)}))


# ---- report -----------------------------------------------------------------------------------------------

def stat(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values), "runs": values}


def cmd_report(args):
    runs = [json.loads(line) for line in open(args.runs) if line.strip()]
    meta = json.load(open(args.meta))
    by_key = {}
    for r in runs:
        by_key.setdefault(r["key"], []).append(r)
    warnings = []

    def s(key, field="mpps"):
        st = stat([r.get(field) for r in by_key.get(key, [])])
        if st and st["min"] > 0 and st["max"] / st["min"] > SPREAD_WARNING:
            warnings.append("%s: runs disagree (min %.3f, max %.3f Mpps): the cores are shared" %
                            (key, st["min"], st["max"]))
        return st

    def ratio(a, b):
        return a["median"] / b["median"] if a and b and b["median"] > 0 else None

    def skipped(key):
        for r in by_key.get(key, []):
            if "skipped" in r:
                return r["skipped"]
        return None

    out = dict(meta)
    tp = s("a/testpmd_io")
    p0 = s("a/portmux_0_rules")
    p1k = s("a/portmux_1000_rules")
    out["switch_no_vms"] = {"testpmd_io": tp, "portmux_0_rules": p0, "portmux_1000_rules": p1k,
                            "ratio_0_rules": ratio(p0, tp), "ratio_1000_rules": ratio(p1k, tp)}
    vhost = {}
    for size in ("64", "1518"):
        t = s("b/%s/testpmd_io" % size)
        p = s("b/%s/portmux" % size)
        o = s("b/%s/ovs_dpdk" % size)
        vhost[size] = {"testpmd_io": t, "portmux": p, "ovs_dpdk": o, "ratio_testpmd": ratio(p, t),
                       "ratio_ovs": ratio(p, o)}
    vhost["skipped"] = skipped("b/skipped")
    out["vhost"] = vhost
    rates = []
    for r in sorted(by_key.get("c/churn", []), key=lambda r: (r["requested"], r.get("clients", 1))):
        rates.append(r)
    zero = [r["achieved"] for r in rates if r["zero_loss"] and r["achieved"] >= 0.9 * r["requested"]]
    out["control_under_load"] = {
        "rates": rates,
        "highest_rate_zero_loss": max(zero) if zero else None,
        "highest_requested_rate_met_with_zero_loss": max([r["requested"] for r in rates
                                                           if r["zero_loss"] and r["achieved"] >= 0.9 * r["requested"]],
                                                          default=None),
        "worst_latency_ms": max([r["latency_ms_max"] for r in rates if r["latency_ms_max"] is not None], default=None),
    }
    out["scale"] = {"ranges": {n: s("d/ranges_%s" % n) for n in ("1", "1000", "65536")},
                    "vms": {n: s("d/vms_%s" % n) for n in ("1", "8", "30", "64")},
                    "errors": {r["key"]: r["error"] for r in runs if r["key"].startswith("d/") and "error" in r}}
    host_only = s("e/host_only")
    vm_only = s("e/vm_only")
    mixed_vm = s("e/mixed_vm")
    mixed_host = s("e/mixed_host")
    dropped = [r.get("host_tx_dropped") for r in by_key.get("e/mixed_vm", [])]
    out["exception"] = {"host_only_mpps": host_only, "vm_only_mpps": vm_only, "mixed_vm_mpps": mixed_vm,
                        "mixed_host_mpps": mixed_host, "ratio_mixed_vm_vs_vm_only": ratio(mixed_vm, vm_only),
                        "host_tx_dropped_per_s": stat([d for d in dropped if d is not None]),
                        "skipped": skipped("e/skipped")}
    crashes = [line.strip() for line in open(args.crashes)] if args.crashes and os.path.exists(args.crashes) else []
    out["abnormal_exits"] = {"count": len(crashes), "first": crashes[:10]}
    if crashes:
        warnings.append("%d process(es) exited abnormally when stopped, e.g. %s" % (len(crashes), crashes[0]))
    out["warnings"] = warnings
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print_table(out)


def fmt(st):
    if not st:
        return "%26s" % "n/a"
    return "%8.3f %8.3f %8.3f" % (st["min"], st["median"], st["max"])


def fmt_ratio(r):
    return "%.2fx" % r if r is not None else "n/a"


def print_table(out):
    print()
    print("Throughput in Mpps (min / median / max of %d runs; %s)" % (out["repeat"], out["lcores"]["note"]))
    print("%-46s %8s %8s %8s  %s" % ("measurement", "min", "median", "max", "ratio"))
    a = out["switch_no_vms"]
    print("a. uplink (pcap, infinite rx) -> null sinks, 64 B")
    print("  %-44s %s" % ("testpmd io", fmt(a["testpmd_io"])))
    print("  %-44s %s  %s of testpmd io" % ("portmux, 0 firewall rules", fmt(a["portmux_0_rules"]), fmt_ratio(a["ratio_0_rules"])))
    print("  %-44s %s  %s of testpmd io" % ("portmux, 1,000 firewall rules", fmt(a["portmux_1000_rules"]), fmt_ratio(a["ratio_1000_rules"])))
    b = out["vhost"]
    print("b. uplink -> vhost-user -> VM-side testpmd rxonly" + (" (skipped: %s)" % b["skipped"] if b["skipped"] else ""))
    for size in ("64", "1518"):
        v = b[size]
        print("  %-44s %s" % ("%s B testpmd io" % size, fmt(v["testpmd_io"])))
        print("  %-44s %s" % ("%s B OVS-DPDK" % size, fmt(v["ovs_dpdk"])))
        print("  %-44s %s  %s of testpmd io, %s of OVS" % ("%s B portmux" % size, fmt(v["portmux"]),
                                                           fmt_ratio(v["ratio_testpmd"]), fmt_ratio(v["ratio_ovs"])))
    c = out["control_under_load"]
    print("c. range moves under load (traffic as in a)")
    for r in c["rates"]:
        print("  %-44s achieved %8.0f/s, lost %d, latency median %.3f ms, max %.3f ms" % (
            "requested %d/s, %d client(s)" % (r["requested"], r.get("clients", 1)), r["achieved"], r["lost"], r["latency_ms_median"] or 0,
            r["latency_ms_max"] or 0))
    print("  highest requested rate met with zero loss: %s; worst change latency: %s ms" % (
        c["highest_requested_rate_met_with_zero_loss"],
        "%.3f" % c["worst_latency_ms"] if c["worst_latency_ms"] is not None else "n/a"))
    d = out["scale"]
    print("d. scale (as in a, no firewall rules)")
    for n, st in d["ranges"].items():
        print("  %-44s %s" % ("%s ranges, 2 VMs" % n, fmt(st)))
    for n, st in d["vms"].items():
        err = d["errors"].get("d/vms_%s" % n)
        print("  %-44s %s%s" % ("%s VM ports, 1,000 ranges" % n, fmt(st), "  " + err if err and not st else ""))
    e = out["exception"]
    print("e. exception path (host port net_tap in its own namespace)" +
          (" (skipped: %s)" % e["skipped"] if e["skipped"] else ""))
    print("  %-44s %s" % ("host-bound only: to the TAP", fmt(e["host_only_mpps"])))
    print("  %-44s %s" % ("VM-bound only: to the VMs", fmt(e["vm_only_mpps"])))
    print("  %-44s %s  %s of VM-only" % ("50/50 mix: VM-bound part", fmt(e["mixed_vm_mpps"]),
                                         fmt_ratio(e["ratio_mixed_vm_vs_vm_only"])))
    print("  %-44s %s" % ("50/50 mix: host-bound part", fmt(e["mixed_host_mpps"])))
    if e["host_tx_dropped_per_s"]:
        print("  %-44s %8.0f/s (median)" % ("host tx_dropped in the mix", e["host_tx_dropped_per_s"]["median"]))
    for w in out["warnings"]:
        print("WARNING: " + w)


def main(argv=None):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("pcap")
    q.add_argument("out")
    q.add_argument("--frames", type=int, default=1024)
    q.add_argument("--size", type=int, default=64)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("spans", nargs="+")
    q = sub.add_parser("imix")
    q.add_argument("out")
    q.add_argument("--frames", type=int, default=1200)
    q.add_argument("--seed", type=int, default=1)
    q.add_argument("--vm-ports", default="1024-59999")
    q.add_argument("--host-ports", default="60000-65535")
    q.add_argument("--host-share", type=float, default=0.05)
    q.add_argument("--ipv6-share", type=float, default=0.3)
    q = sub.add_parser("l3fwd-rules")
    q.add_argument("config", help="the portmux configuration whose work l3fwd is to do")
    q.add_argument("out_v4")
    q.add_argument("out_v6")
    q.add_argument("--lookup", choices=["lpm", "acl"], required=True)
    q.add_argument("--sink-port", type=int, default=1)
    q = sub.add_parser("config")
    q.add_argument("out")
    q.add_argument("--uplink", required=True)
    q.add_argument("--host", default="net_null0,no-rx=1")
    q.add_argument("--vms", type=int, default=2)
    q.add_argument("--vhost", default="")
    q.add_argument("--ranges", type=int, default=2)
    q.add_argument("--owned", default="1024-65535")
    q.add_argument("--rules", type=int, default=0)
    q.add_argument("--host-rate-limit", type=int, help="host.rate_limit_pps (0: none)")
    q.add_argument("--ipv6", action="store_true", help="add shared_ip6 (%s)" % SHARED_IP6)
    q = sub.add_parser("flows")
    q.add_argument("config")
    q.add_argument("out")
    q.add_argument("--uplink", required=True)
    q.add_argument("--host", required=True)
    q.add_argument("--vm-ports", nargs="+", required=True)
    q = sub.add_parser("rate")
    q.add_argument("kind", choices=["portmux", "ethdev"])
    q.add_argument("prefix")
    q.add_argument("--port", type=int, default=0)
    q.add_argument("--field", choices=["out", "rx"], default="out")
    q.add_argument("--warmup", type=float, default=1.0)
    q.add_argument("--interval", type=float, default=2.0)
    q = sub.add_parser("churn")
    q.add_argument("prefix")
    q.add_argument("--rate", type=float, required=True)
    q.add_argument("--duration", type=float, default=2.0)
    q.add_argument("--warmup", type=float, default=0.5)
    q.add_argument("--range", required=True)
    q.add_argument("--clients", type=int, default=1, help="telemetry connections sending changes at once")
    q.add_argument("--a", default="vm1")
    q.add_argument("--b", default="vm2")
    q = sub.add_parser("final")
    q.add_argument("log")
    q = sub.add_parser("report")
    q.add_argument("runs")
    q.add_argument("meta")
    q.add_argument("out")
    q.add_argument("crashes", nargs="?", default="")
    args = p.parse_args(argv)
    {"pcap": cmd_pcap, "imix": cmd_imix, "l3fwd-rules": cmd_l3fwd_rules, "config": cmd_config, "flows": cmd_flows, "rate": cmd_rate, "churn": cmd_churn,
     "final": cmd_final, "report": cmd_report}[args.cmd](args)


def main_argv(argv):
    """One command run from another script (cycles.py), as if from the command line."""
    main(argv)


if __name__ == "__main__":
    main()
