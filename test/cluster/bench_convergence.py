#!/usr/bin/python3
"""Convergence of the cluster: from the etcd commit of a change to "applied on every host".

Builds the three-host topology of the live test (cluster_topology.py: three portmux instances with their
agents, a three-member etcd on loopback), then moves one range back and forth between a VM of host a and
a VM of host b, N times. Each move is one `portmuxctl cluster` transaction (run in-process so that no
process start-up is timed); the clock starts when the transaction returns (committed) and stops when
/portmux/lookup of that port on every host shows the new target (polled in turn, every host per round).
Prints p50, p90, p99 and the maximum in milliseconds.

Usage: bench_convergence.py PORTMUX_BINARY [--moves N] [--json FILE]   (root; exit 77 when it cannot run)
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import cluster_topology as topo
    from portmux_cluster import edit, etcd as etcd_conn
except ImportError as e:
    print("SKIP: %s (python3-etcd3 / python3-jsonschema not installed)" % e)
    sys.exit(77)

from cluster_topology import HOSTS, wait_for  # noqa: E402

# Where the moved range should be seen on each host, by the VM that owns it.
TARGETS = {"va": {"a": "va", "b": "host_a", "c": "host_a"}, "vb": {"a": "host_b", "b": "vb", "c": "host_b"}}


def percentile(sorted_values, q):
    index = min(len(sorted_values) - 1, max(0, int(round(q / 100.0 * (len(sorted_values) - 1)))))
    return sorted_values[index]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("portmux")
    p.add_argument("--moves", type=int, default=200)
    p.add_argument("--json", help="also write the figures (milliseconds) to FILE")
    args = p.parse_args()
    topo.check_prerequisites(args.portmux)
    t = topo.Topology(args.portmux)
    try:
        t.start_all()
        t.cluster("vm", "add", "va", "--host", "a", "--mac", HOSTS["a"][2][0][1], "--range", "udp:6000")
        t.cluster("vm", "add", "vb", "--host", "b", "--mac", HOSTS["b"][2][0][1])
        for host, target in TARGETS["va"].items():
            wait_for("%s converged" % host, lambda h=host, g=target: t.target(h, "udp:6000") == g)
        _, client = etcd_conn.EtcdSettings(t.etcd.client_urls).connect()
        samples = []
        owner = "va"
        for _ in range(args.moves):
            owner = "vb" if owner == "va" else "va"
            edit.run_edit(client, "/portmux/", edit.move_range("udp:6000", owner))
            committed = time.monotonic()
            pending = dict(TARGETS[owner])
            deadline = committed + 10.0
            while pending and time.monotonic() < deadline:
                for host in list(pending):
                    if t.target(host, "udp:6000") == pending[host]:
                        del pending[host]
            if pending:
                raise AssertionError("not applied within 10 s on %s" % ", ".join(sorted(pending)))
            samples.append((time.monotonic() - committed) * 1000.0)
        client.close()
        samples.sort()
        print("convergence over %d moves, 3 hosts: p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms"
              % (len(samples), percentile(samples, 50), percentile(samples, 90), percentile(samples, 99),
                 samples[-1]))
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"moves": len(samples), "hosts": 3, "p50_ms": percentile(samples, 50),
                           "p90_ms": percentile(samples, 90), "p99_ms": percentile(samples, 99),
                           "max_ms": samples[-1]}, f, indent=2)
        return 0
    except (AssertionError, RuntimeError) as e:
        print("FAIL: %s" % e)
        t.dump_logs()
        return 1
    finally:
        t.close()


if __name__ == "__main__":
    sys.exit(main())
