#!/usr/bin/python3
"""`portmuxctl cluster` against a real etcd (one member; no root needed): VMs added and deleted, ranges
moved between VMs of two hosts in one transaction, overlaps across the cluster refused with nothing
written, a concurrent edit retried from a fresh read, status with a refused key and a failed-over VM."""

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "agent"))
sys.path.insert(0, HERE)

if not shutil.which("etcd"):
    print("SKIP: etcd is not installed (etcd-server)")
    sys.exit(77)
try:
    from portmux_cluster import edit, etcd as etcd_conn  # noqa: E402
    from etcd_cluster import EtcdCluster  # noqa: E402
except ImportError as e:
    print("SKIP: %s (python3-etcd3 / python3-jsonschema not installed)" % e)
    sys.exit(77)

CTL = os.path.join(ROOT, "scripts", "portmuxctl")
HOST_A = {"underlay_ip": "198.51.100.1", "vxlan_mac": "02:00:00:00:0a:01", "file_prefix": "pa"}


class Edits(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pmx-cluster-edits-")
        cls.etcd = EtcdCluster(cls.tmp, members=1)
        cls.etcd.start()

    @classmethod
    def tearDownClass(cls):
        cls.etcd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def setUp(self):
        self.prefix = "/t-%s/" % self._testMethodName[-40:].replace("_", "-")

    def cluster(self, *args, check=True):
        r = subprocess.run([CTL, "cluster", "--etcd", self.etcd.endpoints, "--prefix", self.prefix] + list(args),
                           capture_output=True, text=True, timeout=30)
        if check and r.returncode != 0:
            self.fail("portmuxctl cluster %s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr))
        return r

    def vms(self):
        r = self.etcd.ctl("get", "--prefix", self.prefix + "vms/", "-w", "json")
        out = {}
        for kv in json.loads(r.stdout).get("kvs", []):
            key = base64.b64decode(kv["key"]).decode()
            out[key.rsplit("/", 1)[1]] = json.loads(base64.b64decode(kv["value"]))
        return out

    def revision(self):
        return json.loads(self.etcd.ctl("get", self.prefix, "-w", "json").stdout)["header"]["revision"]

    def two_vms(self):
        self.cluster("vm", "add", "va", "--host", "a", "--mac", "52:54:00:00:0a:01", "--range", "udp:6000",
                     "--range", "tcp:5000-5099")
        self.cluster("vm", "add", "vb", "--host", "b", "--mac", "52:54:00:00:0b:01", "--range", "udp:7000")

    def test_vm_add_writes_the_value_the_agents_read(self):
        self.two_vms()
        self.assertEqual(self.vms(), {"va": {"host": "a", "mac": "52:54:00:00:0a:01",
                                             "ranges": ["udp:6000", "tcp:5000-5099"]},
                                      "vb": {"host": "b", "mac": "52:54:00:00:0b:01", "ranges": ["udp:7000"]}})
        r = self.cluster("vm", "add", "va", "--host", "a", "--mac", "52:54:00:00:0a:09", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("already exists", r.stderr)

    def test_overlap_anywhere_in_the_cluster_is_refused_and_nothing_written(self):
        self.two_vms()
        before, rev = self.vms(), self.revision()
        for args in (["vm", "add", "vc", "--host", "c", "--mac", "52:54:00:00:0c:01", "--range", "5050-5060"],
                     ["range", "add", "vb", "tcp:5099"],
                     ["vm", "add", "vd", "--host", "c", "--mac", "52:54:00:00:0c:02", "--range", "tcp:90-80"],
                     ["vm", "add", "ve", "--host", "c", "--mac", "52:54:00:00:0c:03", "--backup", "nope"]):
            r = self.cluster(*args, check=False)
            self.assertEqual(r.returncode, 1, args)
            self.assertTrue(r.stderr.startswith("portmuxctl: cluster: "), r.stderr)
        self.assertIn("overlaps tcp:5000-5099 of VM va", self.cluster(*["range", "add", "vb", "tcp:5099"],
                                                                      check=False).stderr)
        self.assertEqual(self.vms(), before)
        self.assertEqual(self.revision(), rev)

    def test_range_move_between_hosts_is_one_transaction(self):
        self.two_vms()
        rev = self.revision()
        out = self.cluster("range", "move", "udp:6000", "vb").stdout
        self.assertEqual(out, "moved udp:6000 from VM va (host a) to VM vb (host b)\n")
        vms = self.vms()
        self.assertEqual(vms["va"]["ranges"], ["tcp:5000-5099"])
        self.assertEqual(vms["vb"]["ranges"], ["udp:7000", "udp:6000"])
        # Both keys changed in the same revision: one transaction.
        self.assertEqual(self.revision(), rev + 1)
        r = self.cluster("vm", "move-range", "va", "udp:7000", "vb", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("belongs to VM vb, not va", r.stderr)
        self.cluster("vm", "move-range", "vb", "udp:6000", "va")
        self.assertEqual(self.vms()["va"]["ranges"], ["tcp:5000-5099", "udp:6000"])

    def test_a_concurrent_edit_is_retried_from_a_fresh_read(self):
        self.two_vms()
        settings = etcd_conn.EtcdSettings([self.etcd.client_urls[0]])
        _, client = settings.connect()
        other_editor = {"done": False}
        inner = edit.move_range("udp:6000", "vb")

        def change(table):
            if not other_editor["done"]:
                # Someone else takes tcp:5000-5099 to vb between our read and our transaction.
                other_editor["done"] = True
                edit.run_edit(client, self.prefix, edit.move_range("tcp:5000-5099", "vb"))
            return inner(table)

        attempts = edit.run_edit(client, self.prefix, change)
        client.close()
        self.assertEqual(attempts, 2)
        vms = self.vms()
        self.assertEqual(vms["va"]["ranges"], [])
        self.assertEqual(sorted(vms["vb"]["ranges"]), ["tcp:5000-5099", "udp:6000", "udp:7000"])

    def test_a_vm_deleted_concurrently_is_not_written_back(self):
        self.two_vms()
        settings = etcd_conn.EtcdSettings([self.etcd.client_urls[0]])
        _, client = settings.connect()
        inner = edit.move_range("udp:6000", "vb")
        deleted = {"done": False}

        def change(table):
            if not deleted["done"]:
                deleted["done"] = True
                client.delete(self.prefix + "vms/vb")
            return inner(table)

        with self.assertRaises(edit.ClusterError) as caught:
            edit.run_edit(client, self.prefix, change)
        client.close()
        self.assertIn("no VM 'vb'", str(caught.exception))
        self.assertNotIn("vb", self.vms())

    def test_status_shows_failover_and_refused_keys(self):
        self.two_vms()
        self.cluster("vm", "del", "vb")
        self.cluster("vm", "add", "vb", "--host", "b", "--mac", "52:54:00:00:0b:01", "--range", "udp:7000",
                     "--backup", "va")
        self.etcd.ctl("put", self.prefix + "hosts/a", json.dumps(HOST_A))
        self.etcd.ctl("put", self.prefix + "vms/broken", "{oops")
        self.etcd.ctl("put", self.prefix + "applied/a", json.dumps({"revision": 7}))
        r = self.cluster("status")
        self.assertIn("1 live host(s), 2 VM(s), 1 refused key(s)", r.stdout)
        self.assertRegex(r.stdout, r"host +a .* applied @7\n")
        self.assertRegex(r.stdout, r"vm +vb +on b +failed over to va")
        self.assertIn("refused %svms/broken: not JSON" % self.prefix, r.stdout)
        # A bad value does not block other edits, and can be deleted.
        self.cluster("range", "add", "va", "tcp:443")
        self.cluster("vm", "del", "broken")
        self.assertNotIn("refused", self.cluster("status").stdout)
        r = self.cluster("vm", "del", "va", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is the backup of vb", r.stderr)

    def test_etcd_unreachable_is_a_clear_failure(self):
        r = subprocess.run([CTL, "cluster", "--etcd", "http://127.0.0.1:1", "--etcd-timeout", "1", "show"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 1)
        self.assertIn("portmuxctl: cluster: etcd 127.0.0.1:1", r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
