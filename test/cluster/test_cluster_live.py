#!/usr/bin/python3
"""Three portmux hosts with their agents and a three-member etcd (see cluster_topology.py), in order:

- the agents build every host's table from etcd: local VMs' ranges, remotes for the other hosts' VMs;
  a further shared address and a range on it reach every host;
- a range of host a's VM moves to host b's VM under UDP traffic: once a's agent has applied it, a's old
  VM receives nothing more and b's VM gets the flow;
- numbered datagrams from the client through host a to a range of host c's VM, moved to host b's VM while
  they flow: every datagram reaches vc or vb exactly once, and no host drops one as a loop (the new owner's
  host applies the move first);
- a range changed by hand on a is reverted by its agent and counted;
- host b's agent is killed: after the lease TTL b's VM's range fails over to its backup on a; b's agent
  comes back: the range returns;
- one etcd member is killed: a change still reaches every host;
- all etcd members stop: forwarding goes on unchanged; they restart: the agents resync without sending a
  single command for what did not change;
- a bad value of each kind is written with etcdctl: each refused and counted, nothing else changes; a
  VM on a host that is not alive is applied nowhere;
- a cluster range that collides with a host's own range is refused by portmux, counted once, listed.

Usage: test_cluster_live.py PORTMUX_BINARY (root; exit 0 pass, 1 fail, 77 skip). Every wait is bounded.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import cluster_topology as topo
except ImportError as e:
    print("SKIP: %s (python3-etcd3 / python3-jsonschema not installed)" % e)
    sys.exit(77)

from cluster_topology import HOSTS, wait_for  # noqa: E402


def ok(message):
    print("ok: %s" % message, flush=True)


def define_cluster(t):
    t.cluster("vm", "add", "va", "--host", "a", "--mac", HOSTS["a"][2][0][1], "--range", "udp:6000")
    t.cluster("vm", "add", "va2", "--host", "a", "--mac", HOSTS["a"][2][1][1])
    t.cluster("vm", "add", "vb", "--host", "b", "--mac", HOSTS["b"][2][0][1], "--range", "udp:7000",
              "--backup", "va2")
    t.cluster("vm", "add", "vc", "--host", "c", "--mac", HOSTS["c"][2][0][1], "--range", "tcp:8000-8099")


def test_tables_built_from_etcd(t):
    expected = {"a": {"udp:6000": "va", "udp:7000": "host_b", "tcp:8000": "host_c"},
                "b": {"udp:6000": "host_a", "udp:7000": "vb", "tcp:8000": "host_c"},
                "c": {"udp:6000": "host_a", "udp:7000": "host_b", "tcp:8000": "vc"}}
    for host, ports in expected.items():
        for port, target in ports.items():
            wait_for("%s: %s to %s" % (host, port, target), lambda h=host, p=port, g=target: t.target(h, p) == g)
    ok("every host's table follows etcd: local VMs' ranges, a remote host_NAME per other host")


def test_shared_address(t):
    """An addresses/ key makes every host's portmux serve the further address; ranges on it follow."""
    t.etcd.ctl("put", "/portmux/addresses/192.0.2.20", json.dumps({"address": "192.0.2.20"}))
    t.cluster("range", "add", "vc", "192.0.2.20/udp:53")
    for host, target in (("a", "host_c"), ("b", "host_c"), ("c", "vc")):
        wait_for("%s serves 192.0.2.20/udp:53" % host,
                 lambda h=host, g=target: t.target(h, "192.0.2.20/udp:53") == g)
        assert "192.0.2.20" in t.tel(host).call("/portmux/info").get("more_shared_ips", [])
    # The first address's udp:53 is another range: nobody owns it.
    assert t.target("a", "udp:53") == "host"
    ok("a further shared address from etcd on every host, with its ranges")


def test_move_between_hosts_under_traffic(t):
    t.start_flow(6000)
    wait_for("the flow reaches va on a", lambda: t.vm_tx("a", "va") > 50)
    vb_before = t.vm_tx("b", "vb")
    t.cluster("range", "move", "udp:6000", "vb")
    wait_for("a applies the move", lambda: t.target("a", "udp:6000") == "host_b")
    moved = t.vm_tx("a", "va")
    time.sleep(1.0)
    assert t.vm_tx("a", "va") == moved, "va on a received %d frames after the move was applied" % (
        t.vm_tx("a", "va") - moved)
    wait_for("b's VM gets the flow", lambda: t.vm_tx("b", "vb") > vb_before + 50)
    for host in ("b", "c"):
        wait_for("%s applies the move" % host, lambda h=host: t.target(h, "udp:6000") == ("vb" if h == "b" else "host_b"))
    ok("udp:6000 moved from a's VM to b's VM under traffic: nothing more reaches va, vb gets the flow")


def test_no_loss_while_a_range_moves_between_hosts(t):
    """udp:8500 moves from vc (host c) to vb (host b) while 2,000 numbered datagrams enter at host a, which
    tunnels them to the owner's host. If a applied the move before b, b (still on the old view) would re-send
    them to c, and c (already on the new one) drop them as a loop: the agents of a and c wait until b's agent
    has applied it (applied/b), so every datagram reaches vc or vb, exactly once.

    b's agent is paused for 0.3 s across the edit, so that b is the last to see it: without the ordering a
    and c would apply first and the frames a sends in those 0.3 s would be lost; with it they wait (well
    within their 1 s bound)."""
    count = 2000
    t.cluster("range", "add", "vc", "udp:8500")
    for host, target in (("a", "host_c"), ("b", "host_c"), ("c", "vc")):
        wait_for("%s serves udp:8500" % host, lambda h=host, g=target: t.target(h, "udp:8500") == g)
    loops = {h: t.stats(h)["drop_vxlan_loop"] for h in HOSTS}
    resent = {h: t.stats(h)["vxlan_resent"] for h in HOSTS}
    status = {h: t.status(h) for h in HOSTS}
    counters = {vm: t.count_numbered(vm, 8500) for vm in ("vc", "vb")}
    vc_before = t.vm_tx("c", "vc")
    sender = t.send_numbered(8500, count, 0.004)
    wait_for("the numbered flow reaches vc", lambda: t.vm_tx("c", "vc") > vc_before + 200, timeout=30)
    t.pause_agent("b")
    try:
        t.cluster("range", "move", "udp:8500", "vb")
        time.sleep(0.3)
    finally:
        t.resume_agent("b")
    for host, target in (("a", "host_b"), ("b", "vb"), ("c", "host_b")):
        wait_for("%s applies the move" % host, lambda h=host, g=target: t.target(h, "udp:8500") == g)
    assert sender.poll() is None, "the flow ended before the move was applied everywhere: nothing was shown"
    sender.wait(timeout=90)
    # Each counter stops once nothing more has reached its VM for 0.5 s: the last datagrams have arrived.
    received = {vm: t.finish_count(proc) for vm, proc in counters.items()}
    both = set(received["vc"]) & set(received["vb"])
    twice = sorted(n for vm in received for n, c in received[vm].items() if c > 1)
    missing = sorted(set(range(count)) - set(received["vc"]) - set(received["vb"]))
    loops_now = {h: t.stats(h)["drop_vxlan_loop"] - loops[h] for h in HOSTS}
    resent_now = {h: t.stats(h)["vxlan_resent"] - resent[h] for h in HOSTS}
    waits = {h: t.status(h)["ordered_apply_waits"] - status[h]["ordered_apply_waits"] for h in HOSTS}
    timeouts = {h: t.status(h)["ordered_apply_timeouts"] - status[h]["ordered_apply_timeouts"] for h in HOSTS}
    print("  vc received %d, vb %d; vxlan_resent %s; drop_vxlan_loop %s; moves held back %s, of which "
          "timed out %s" % (len(received["vc"]), len(received["vb"]), resent_now, loops_now, waits, timeouts),
          flush=True)
    assert not missing, "%d datagram(s) lost in the move (first: %s)" % (len(missing), missing[:10])
    assert not both and not twice, "datagrams received twice: %s" % sorted(both | set(twice))[:10]
    assert set(received["vc"]) | set(received["vb"]) == set(range(count))
    assert received["vc"] and received["vb"], "the move did not happen during the flow"
    assert all(n == 0 for n in loops_now.values()), "frames dropped as loops: %s" % loops_now
    ok("udp:8500 moved from c's VM to b's VM under a numbered flow through a: all %d datagrams received "
       "exactly once, no loop drop on any host" % count)


def test_hand_change_reverted(t):
    before = t.status("a")["reverted_by_hand"]
    t.tel("a").call("/portmux/range/move", "udp:7000,host")
    wait_for("a's agent reverts udp:7000", lambda: t.target("a", "udp:7000") == "host_b", timeout=12)
    wait_for("the revert is counted", lambda: t.status("a")["reverted_by_hand"] > before)
    ok("a range moved by hand on a clustered host is reverted and counted")


def test_failover_and_return(t):
    t.start_flow(7000)
    t.kill_agent("b")
    wait_for("udp:7000 fails over to va2 on a", lambda: t.target("a", "udp:7000") == "va2", timeout=12)
    wait_for("c follows", lambda: t.target("c", "udp:7000") == "host_a", timeout=12)
    wait_for("the flow reaches va2", lambda: t.vm_tx("a", "va2") > 20)
    # vb's own ranges elsewhere (udp:6000 now) have no backup other than va2 either: they follow it too.
    ok("b's agent killed: after the lease TTL its VM's ranges go to the backup on a")
    t.start_agent("b")
    wait_for("udp:7000 returns to vb", lambda: t.target("a", "udp:7000") == "host_b", timeout=12)
    returned = t.vm_tx("a", "va2")
    time.sleep(0.5)
    assert t.vm_tx("a", "va2") == returned, "va2 still receives after the return was applied"
    wait_for("c follows back", lambda: t.target("c", "udp:7000") == "host_b")
    ok("b's agent back: the ranges return to b's VM, the backup receives nothing more")


def test_one_member_down(t):
    t.etcd.stop(0)
    t.cluster("range", "add", "vc", "udp:9000")
    for host, target in (("a", "host_c"), ("b", "host_c"), ("c", "vc")):
        wait_for("%s applies udp:9000 with a member down" % host,
                 lambda h=host, g=target: t.target(h, "udp:9000") == g, timeout=20)
    t.etcd.start(0)
    ok("one etcd member killed: a change still reaches every host")


def test_all_members_down(t):
    wait_for("agents settled", lambda: all(t.status(h)["connected"] for h in HOSTS), timeout=20)
    applied = {h: t.status(h)["applied_commands"] for h in HOSTS}
    resyncs = {h: t.status(h)["resyncs"] for h in HOSTS}
    t.etcd.stop()
    wait_for("agents notice", lambda: not any(t.status(h)["connected"] for h in HOSTS), timeout=20)
    vb_before = t.vm_tx("b", "vb")
    time.sleep(1.0)
    assert t.vm_tx("b", "vb") > vb_before + 50, "forwarding stopped with etcd"
    assert t.target("a", "udp:6000") == "host_b" and t.target("a", "udp:7000") == "host_b"
    ok("all etcd members down: forwarding goes on with the last state")
    t.etcd.start()
    wait_for("agents resync", lambda: all(t.status(h)["connected"] and t.status(h)["resyncs"] > resyncs[h]
                                          for h in HOSTS), timeout=40)
    # etcd renews the leases when it elects a leader again, so no host was seen down: the tables are as
    # before, and the resync (a full read, then the watch) sent nothing for what did not change.
    assert t.target("a", "udp:7000") == "host_b"
    for h in HOSTS:
        extra = t.status(h)["applied_commands"] - applied[h]
        assert extra == 0, "%s sent %d commands on resync" % (h, extra)
    ok("etcd back: every agent resynced (full read, watch from its revision)")


def test_bad_values(t):
    statuses = {h: t.status(h) for h in HOSTS}
    tables = {h: t.tel(h).ranges() for h in HOSTS}
    p = "/portmux/"
    bad = [("vms/va", "{not json"),
           ("vms/vb", json.dumps({"host": "b", "mac": HOSTS["b"][2][0][1], "ranges": ["udp:6000"], "backup": "ghost"})),
           ("vms/vx", json.dumps({"host": "c", "mac": "52:54:00:00:0c:09", "ranges": ["udp:7000"]})),
           ("vms/vc", json.dumps({"host": "c", "mac": HOSTS["c"][2][0][1], "ranges": ["tcp:70000"]})),
           ("vms/vy", "[" * 20000),
           ("hosts/zz", json.dumps({"underlay_ip": "198.51.100.999", "vxlan_mac": "x", "file_prefix": "q"}))]
    for key, value in bad:
        t.etcd.ctl("put", p + key, value)
    for h in HOSTS:
        wait_for("%s refuses all %d" % (h, len(bad)),
                 lambda h=h: t.status(h)["refused_total"] >= statuses[h]["refused_total"] + len(bad), timeout=15)
        refused = t.status(h)["refused"]
        for key, _ in bad:
            assert p + key in refused, "%s: %s not listed as refused: %s" % (h, key, refused)
    time.sleep(1.0)
    for h in HOSTS:
        assert t.tel(h).ranges() == tables[h], "%s's ranges changed after bad values" % h
        assert t.status(h)["applied_commands"] == statuses[h]["applied_commands"], "%s sent commands" % h
    ok("each kind of bad value refused, listed and counted on every host; nothing else changed")

    # A VM on a host that never registered is not refused (a host is known only while it is alive): its
    # range is served by nobody, so no host adds it; status says why.
    t.cluster("vm", "add", "vghost", "--host", "ghost", "--mac", "52:54:00:00:0d:01", "--range", "udp:9100")
    time.sleep(1.0)
    for h in HOSTS:
        assert t.target(h, "udp:9100") == "host", "%s serves the range of a VM on an unknown host" % h
    assert "vghost" in t.cluster("status").stdout and "host down, no live backup" in t.cluster("status").stdout
    ok("a VM on a host that is not alive: its range is applied nowhere, status says so")


def test_portmux_refusal(t):
    """A cluster range that collides with a host's own configured range (tcp:22 to the host) is refused by
    each portmux: logged and counted once however often the agent reconciles, listed in its status."""
    errors = {h: t.status(h)["apply_errors"] for h in HOSTS}
    t.cluster("range", "add", "va2", "tcp:20-29")
    for h in HOSTS:
        wait_for("%s lists the refusal" % h,
                 lambda h=h: any("tcp:20-29" in k for k in t.status(h)["portmux_refused"]), timeout=15)
    time.sleep(6.0)  # past one periodic reconcile, which meets the same refusal again
    for h in HOSTS:
        assert t.status(h)["apply_errors"] == errors[h] + 1, "%s: apply_errors %d, expected %d" % (
            h, t.status(h)["apply_errors"], errors[h] + 1)
        assert t.target(h, "tcp:22") == "host"
    t.cluster("range", "del", "tcp:20-29")
    for h in HOSTS:
        wait_for("%s clears the refusal" % h, lambda h=h: not t.status(h)["portmux_refused"], timeout=15)
    ok("a cluster range colliding with a host's own range: refused by portmux, counted once, listed, cleared")


def main():
    portmux = sys.argv[1] if len(sys.argv) > 1 else ""
    topo.check_prerequisites(portmux)
    t = topo.Topology(portmux)
    try:
        t.start_all()
        define_cluster(t)
        test_tables_built_from_etcd(t)
        test_shared_address(t)
        test_move_between_hosts_under_traffic(t)
        test_no_loss_while_a_range_moves_between_hosts(t)
        test_hand_change_reverted(t)
        test_failover_and_return(t)
        test_one_member_down(t)
        test_all_members_down(t)
        test_bad_values(t)
        test_portmux_refusal(t)
        print("PASS: a cluster of three portmux hosts kept in etcd")
        return 0
    except (AssertionError, RuntimeError) as e:
        print("FAIL: %s" % e)
        t.dump_logs()
        return 1
    finally:
        t.close()


if __name__ == "__main__":
    sys.exit(main())
