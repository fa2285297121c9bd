#!/usr/bin/python3
"""The cluster's values and one host's desired state, without etcd or portmux: what is refused (and that
only that key is), failover to backups and back, and that plan() sends commands only for differences."""

import json
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "agent"))

try:
    import jsonschema  # noqa: F401
    from portmux_cluster import model, schema  # noqa: E402
except ImportError as e:
    print("SKIP: %s (python3-etcd3 / python3-jsonschema not installed)" % e)
    sys.exit(77)

P = "/portmux/"
HOST_A = {"underlay_ip": "198.51.100.1", "vxlan_mac": "02:00:00:00:0a:01", "file_prefix": "pa"}
HOST_B = {"underlay_ip": "198.51.100.2", "vxlan_mac": "02:00:00:00:0b:01", "file_prefix": "pb"}


def raw(value):
    return json.dumps(value).encode()


def vm(host, mac, ranges, backup=None):
    v = {"host": host, "mac": mac, "ranges": ranges}
    if backup:
        v["backup"] = backup
    return v


class Base(unittest.TestCase):
    def setUp(self):
        self.logged = []
        self.view = model.ClusterView(P, self.logged.append)
        self.rev = 0

    def put(self, key, value):
        self.rev += 1
        self.view.put(P + key, value if isinstance(value, bytes) else raw(value), self.rev)

    def cluster(self):
        self.put("hosts/a", HOST_A)
        self.put("hosts/b", HOST_B)
        self.put("vms/va", vm("a", "52:54:00:00:0a:01", ["udp:6000", "tcp:5000-5099"]))
        self.put("vms/vb", vm("b", "52:54:00:00:0b:01", ["udp:7000"], backup="va2"))
        self.put("vms/va2", vm("a", "52:54:00:00:0a:02", []))


class Refusals(Base):
    def test_each_kind_of_bad_value_is_refused_alone_and_the_last_good_value_kept(self):
        self.cluster()
        good = self.view.accepted()
        bad_writes = [
            ("vms/va", b"{not json"),
            ("vms/va", raw({"host": "a", "mac": "52:54:00:00:0a:01"})),                 # no ranges
            ("vms/va", raw(vm("a", "52:54:00:00:0a:01", ["tcp:70000"]))),                # port above 65535
            ("vms/va", raw(vm("a", "52:54:00:00:0a:01", ["tcp:90-80"]))),                # FROM above TO
            ("vms/va", raw(vm("a", "52:54:00:00:0a:01", ["tcp:1-10", "1-5"]))),          # overlap in one VM
            ("vms/va", raw(vm("a", "52:54:00:00:0a:01", ["udp:6000"], backup="nope"))),  # unknown backup
            ("vms/va", raw(vm("a", "52:54:00:00:0a:01", ["udp:7000"]))),                 # overlaps vb's range
            ("vms/va", b"[" * 20000),                                                     # too large
            ("hosts/b", raw({"underlay_ip": "198.51.100.300", "vxlan_mac": "x", "file_prefix": "pb"})),
            ("vms/bad_name", raw(vm("a", "52:54:00:00:0a:09", []))),                      # key name
            ("other/x", raw({})),                                                         # unknown kind
        ]
        for n, (key, value) in enumerate(bad_writes, 1):
            self.put(key, value)
            hosts, vms, addresses = self.view.accepted()
            self.assertEqual(self.view.refused_total, n, key)
            self.assertIn(P + key, self.view.refused)
            self.assertEqual(set(hosts), set(good[0]))
            self.assertEqual(hosts["b"], HOST_B)
            self.assertEqual({k: [r.text for r in v["parsed_ranges"]] for k, v in vms.items()},
                             {"va": ["udp:6000", "tcp:5000-5099"], "vb": ["udp:7000"], "va2": []}, key)
        # Looked at again (a reconcile, a resync), a refusal is neither counted nor logged again.
        logged = len(self.logged)
        self.view.accepted()
        self.view.accepted()
        self.assertEqual(self.view.refused_total, len(bad_writes))
        self.assertEqual(len(self.logged), logged)
        # A good write clears the refusal.
        self.put("vms/va", vm("a", "52:54:00:00:0a:01", ["udp:6001"]))
        self.assertNotIn(P + "vms/va", self.view.refused)
        self.assertEqual([r.text for r in self.view.accepted()[1]["va"]["parsed_ranges"]], ["udp:6001"])

    def test_a_new_vm_overlapping_an_older_one_is_left_out(self):
        self.cluster()
        self.put("vms/late", vm("b", "52:54:00:00:0b:09", ["tcp:5050"]))
        hosts, vms, _ = self.view.accepted()
        self.assertNotIn("late", vms)
        self.assertIn("overlaps tcp:5000-5099 of VM va", self.view.refused[P + "vms/late"].reason)

    def test_ranges_are_compared_in_portmux_form(self):
        self.assertEqual(schema.PortRange("tcp:80-80").text, "tcp:80")
        self.assertEqual(schema.PortRange("00080-90").text, "80-90")
        self.assertEqual(schema.PortRange("192.0.2.20/udp:53").text, "192.0.2.20/udp:53")
        self.assertTrue(schema.PortRange("80-90").overlaps(schema.PortRange("udp:90")))
        self.assertFalse(schema.PortRange("tcp:80-90").overlaps(schema.PortRange("udp:80")))
        self.assertFalse(schema.PortRange("192.0.2.20/tcp:80").overlaps(schema.PortRange("tcp:80")))

    def test_the_range_index_finds_exactly_the_overlaps_a_full_comparison_finds(self):
        import random
        rng = random.Random(4242)
        for _ in range(200):
            index, kept = schema.RangeIndex(), []
            for _ in range(40):
                lo = rng.randrange(0, 200)
                proto = rng.choice(["tcp:", "udp:", ""])
                address = rng.choice(["", "192.0.2.20/"])
                r = schema.PortRange("%s%s%d-%d" % (address, proto, lo, lo + rng.randrange(0, 20)))
                expected = [k for k in kept if k.overlaps(r)]
                hit = index.collision(r)
                self.assertEqual(hit is not None, bool(expected), r.text)
                if hit is None:
                    index.add(r, "vm")
                    kept.append(r)
                else:
                    self.assertIn(hit[0], expected)


class Desired(Base):
    MACS_A = {"va": "52:54:00:00:0a:01", "va2": "52:54:00:00:0a:02"}

    def want(self, me="a", macs=None):
        hosts, vms, addresses = self.view.accepted()
        return model.desired_state(me, hosts, vms, addresses, self.MACS_A if macs is None else macs)

    def test_local_ranges_to_vms_and_other_hosts_ranges_to_remotes(self):
        self.cluster()
        w = self.want()
        self.assertEqual(w.ranges, {"udp:6000": "va", "tcp:5000-5099": "va", "udp:7000": "host_b"})
        self.assertEqual(w.remotes, {"host_b": ("198.51.100.2", "02:00:00:00:0b:01")})
        wb = self.want("b", {"vb": "52:54:00:00:0b:01"})
        self.assertEqual(wb.ranges, {"udp:6000": "host_a", "tcp:5000-5099": "host_a", "udp:7000": "vb"})

    def test_failover_to_the_backup_while_the_host_is_down_and_back(self):
        self.cluster()
        self.view.delete(P + "hosts/b")           # b's lease expired
        self.assertEqual(self.want().ranges["udp:7000"], "va2")
        self.assertEqual(self.want().remotes, {})
        self.put("hosts/b", HOST_B)               # b is back
        self.assertEqual(self.want().ranges["udp:7000"], "host_b")

    def test_no_live_host_and_no_backup_keeps_the_last_state(self):
        self.cluster()
        self.view.delete(P + "hosts/a")
        wb = self.want("b", {"vb": "52:54:00:00:0b:01"})
        self.assertIs(wb.ranges["udp:6000"], model.KEEP)
        ops = model.plan(wb, {"udp:6000": "host_a", "udp:7000": "vb"}, {"host_a": ("198.51.100.1", "x")}, set(),
                         {"va", "vb", "va2"})
        # Neither the range nor the remote to the dead host is touched.
        self.assertEqual(ops, [])

    def test_a_local_vm_missing_from_portmux_is_not_served(self):
        self.cluster()
        w = self.want(macs={"va2": "52:54:00:00:0a:02"})
        self.assertIs(w.ranges["udp:6000"], model.KEEP)


class Plan(Base):
    def test_only_differences_are_sent_and_in_a_safe_order(self):
        self.cluster()
        hosts, vms, addresses = self.view.accepted()
        want = model.desired_state("a", hosts, vms, addresses, Desired.MACS_A)
        actual = dict(want.ranges)
        self.assertEqual(model.plan(want, actual, dict(want.remotes), set(), set(vms)), [])
        # A range moved by hand, one removed by hand, a stale one of a cluster VM, a host range untouched.
        actual.update({"udp:6000": "host", "tcp:9999": "va", "tcp:22": "host"})
        del actual["tcp:5000-5099"]
        ops = model.plan(want, actual, {"host_z": ("198.51.100.9", "02:00:00:00:00:09")}, set(), set(vms))
        self.assertEqual(ops, [("/portmux/remote/add", "host_b,198.51.100.2,02:00:00:00:0b:01"),
                               ("/portmux/range/del", "tcp:9999"),
                               ("/portmux/range/add", "va,tcp:5000-5099"),
                               ("/portmux/range/move", "udp:6000,va"),
                               ("/portmux/remote/del", "host_z")])

    def test_a_range_between_hosts_is_one_move(self):
        self.cluster()
        hosts, vms, addresses = self.view.accepted()
        before = model.desired_state("a", hosts, vms, addresses, Desired.MACS_A)
        self.put("vms/va", vm("a", "52:54:00:00:0a:01", ["tcp:5000-5099"]))
        self.put("vms/vb", vm("b", "52:54:00:00:0b:01", ["udp:7000", "udp:6000"], backup="va2"))
        hosts, vms, addresses = self.view.accepted()
        after = model.desired_state("a", hosts, vms, addresses, Desired.MACS_A)
        ops = model.plan(after, dict(before.ranges), dict(before.remotes), set(), set(vms))
        self.assertEqual(ops, [("/portmux/range/move", "udp:6000,host_b")])

    def test_other_hosts_see_one_remote_per_host(self):
        self.cluster()
        self.put("hosts/c", {"underlay_ip": "198.51.100.3", "vxlan_mac": "02:00:00:00:0c:0c", "file_prefix": "pc"})
        hosts, vms, addresses = self.view.accepted()
        on_c = model.desired_state("c", hosts, vms, addresses, {})
        self.assertEqual(set(on_c.remotes), {"host_a", "host_b"})
        # udp:6000 moves between two VMs of host a: nothing to do on c.
        self.put("vms/va", vm("a", "52:54:00:00:0a:01", ["tcp:5000-5099"]))
        self.put("vms/va2", vm("a", "52:54:00:00:0a:02", ["udp:6000"]))
        hosts, vms, addresses = self.view.accepted()
        after = model.desired_state("c", hosts, vms, addresses, {})
        self.assertEqual(model.plan(after, dict(on_c.ranges), dict(on_c.remotes), set(), set(vms)), [])
        # b fails: on c its VM's range goes to the backup's host, and b's remote goes once unused.
        self.view.delete(P + "hosts/b")
        hosts, vms, addresses = self.view.accepted()
        failed = model.desired_state("c", hosts, vms, addresses, {})
        self.assertEqual(model.plan(failed, dict(after.ranges), dict(after.remotes), set(), set(vms)),
                         [("/portmux/range/move", "udp:7000,host_a"), ("/portmux/remote/del", "host_b")])


class MoveOrder(Base):
    """Which moves a host holds back until the new owner's host has applied them (docs/cluster.md, "Frames
    in flight during a move"): the new owner's host moves first, the others after it."""

    HOST_C = {"underlay_ip": "198.51.100.3", "vxlan_mac": "02:00:00:00:0c:0c", "file_prefix": "pc"}
    MACS = {"a": Desired.MACS_A, "b": {"vb": "52:54:00:00:0b:01"}, "c": {"vc": "52:54:00:00:0c:02"}}

    def setUp(self):
        super().setUp()
        self.cluster()
        self.put("hosts/c", self.HOST_C)
        self.put("vms/vc", vm("c", "52:54:00:00:0c:02", ["udp:9000"]))

    def state(self, me):
        hosts, vms, addresses = self.view.accepted()
        return model.desired_state(me, hosts, vms, addresses, self.MACS[me]), hosts, vms

    def waits(self, me, before):
        want, hosts, vms = self.state(me)
        return model.move_prerequisites(me, want, dict(before.ranges), vms, set(hosts) | {me},
                                        self.view.mod_revision)

    def move_9000_from_vc_to_vb(self):
        before = {h: self.state(h)[0] for h in ("a", "b", "c")}
        self.put("vms/vc", vm("c", "52:54:00:00:0c:02", []))
        self.put("vms/vb", vm("b", "52:54:00:00:0b:01", ["udp:7000", "udp:9000"], backup="va2"))
        return before, self.rev

    def test_hosts_other_than_the_new_owners_wait_for_its_revision(self):
        before, revision = self.move_9000_from_vc_to_vb()
        # a (tunnels to the owner) and c (the old owner) wait until b has applied the VM key's revision.
        self.assertEqual(self.waits("a", before["a"]), {"udp:9000": ("b", revision)})
        self.assertEqual(self.waits("c", before["c"]), {"udp:9000": ("b", revision)})
        # b is the new owner's host: it moves at once.
        self.assertEqual(self.waits("b", before["b"]), {})
        # Ranges that did not change owner are never held.
        self.assertNotIn("udp:7000", self.waits("a", before["a"]))

    def test_a_wait_ends_once_the_new_owners_host_has_applied_that_revision(self):
        before, revision = self.move_9000_from_vc_to_vb()
        waits = self.waits("a", before["a"])
        self.assertEqual(model.unmet(waits, {}), waits)
        self.assertEqual(model.unmet(waits, {"b": revision - 1, "c": revision + 5}), waits)
        self.assertEqual(model.unmet(waits, {"b": revision}), {})
        self.assertEqual(model.unmet(waits, {"b": revision + 3}), {})
        # The view carries the applied/ keys the agents write.
        self.put("applied/b", {"revision": revision})
        self.assertEqual(self.view.applied_revisions(), {"b": revision})
        self.assertEqual(model.unmet(waits, self.view.applied_revisions()), {})
        self.assertEqual(set(self.view.accepted()[1]), {"va", "va2", "vb", "vc"})  # not taken for a VM

    def test_failover_and_additions_are_not_held(self):
        before = {h: self.state(h)[0] for h in ("a", "c")}
        self.view.delete(P + "hosts/b")           # udp:7000 fails over to va2 on a
        self.assertEqual(self.waits("c", before["c"]), {})
        failed = {h: self.state(h)[0] for h in ("a", "c")}
        self.put("hosts/b", HOST_B)               # b is back: its VM's range returns, after b has applied it
        self.assertEqual(self.waits("c", failed["c"]), {"udp:7000": ("b", self.rev)})
        self.assertEqual(self.waits("a", failed["a"]), {"udp:7000": ("b", self.rev)})
        # A range new to the cluster moves no frame: added at once.
        before = self.state("a")[0]
        self.put("vms/vb", vm("b", "52:54:00:00:0b:01", ["udp:7000", "udp:7100"], backup="va2"))
        self.assertEqual(self.waits("a", before), {})

    def test_a_move_to_a_host_that_is_down_is_not_held(self):
        before = self.state("a")[0]
        self.view.delete(P + "hosts/c")
        self.put("vms/va", vm("a", "52:54:00:00:0a:01", ["tcp:5000-5099"]))
        self.put("vms/vc", vm("c", "52:54:00:00:0c:02", ["udp:9000", "udp:6000"]))
        # vc's host is down and vc has no backup: nobody serves udp:6000, nothing to move or wait for.
        self.assertEqual(self.waits("a", before), {})

    def test_only_the_new_owners_host_has_a_revision_to_publish(self):
        before, revision = self.move_9000_from_vc_to_vb()
        published = {}
        for me in ("a", "b", "c"):
            want, _, vms = self.state(me)
            published[me] = model.own_change_revision(me, want, vms, self.view.mod_revision)
        # b serves udp:9000 now, from the move's revision: what a and c wait for.
        self.assertEqual(published["b"], revision)
        # Neither a nor c serves a range that changed: a move elsewhere costs them no write.
        self.assertLess(published["a"], revision - 1)
        self.assertEqual(published["c"], 0)  # vc serves nothing any more
        # A range served as a backup is never waited for, so it does not count either.
        self.view.delete(P + "hosts/b")
        want, _, vms = self.state("a")
        self.assertEqual(want.servers["udp:7000"], ("va2", True))
        self.assertEqual(model.own_change_revision("a", want, vms, self.view.mod_revision), published["a"])

    def test_a_held_move_is_let_through_once_its_wait_runs_out(self):
        holds = model.HeldMoves(wait_s=1.0)
        owners = {"udp:9000": "host_b", "udp:7000": "host_b"}
        pending = {"udp:9000": ("b", 12)}
        self.assertEqual(holds.update(pending, owners, now=100.0), ({"udp:9000"}, []))
        self.assertEqual(holds.next_deadline(), 101.0)
        self.assertEqual(holds.update(pending, owners, now=100.5), ({"udp:9000"}, []))
        self.assertEqual((holds.waits, holds.timeouts), (1, 0))
        # Still unmet at the deadline: sent anyway, counted, forgotten.
        self.assertEqual(holds.update(pending, owners, now=101.0), (set(), [("udp:9000", "b", 12)]))
        self.assertEqual((holds.waits, holds.timeouts), (1, 1))
        self.assertIsNone(holds.next_deadline())
        # Met before the deadline (no longer pending): released, no timeout.
        holds.update({"udp:7000": ("b", 20)}, owners, now=200.0)
        self.assertEqual(holds.update({}, owners, now=200.2), (set(), []))
        self.assertEqual((holds.waits, holds.timeouts), (2, 1))
        # A newer change of the same range is a new wait with its own deadline.
        holds.update({"udp:7000": ("b", 20)}, owners, now=300.0)
        self.assertEqual(holds.update({"udp:7000": ("b", 25)}, owners, now=300.9), ({"udp:7000"}, []))
        self.assertEqual(holds.next_deadline(), 301.9)
        self.assertEqual(holds.waits, 4)

    def test_an_applied_value_is_checked_like_any_other(self):
        self.put("applied/b", {"revision": -1})
        self.put("applied/c", b"{not json")
        self.assertEqual(self.view.applied_revisions(), {})
        self.assertIn(P + "applied/b", self.view.refused)
        self.assertIn(P + "applied/c", self.view.refused)


if __name__ == "__main__":
    unittest.main(verbosity=2)
