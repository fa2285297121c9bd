#!/usr/bin/python3
"""etcd with client-certificate TLS and authentication, the cluster's user limited to the prefix.

Certificates are made with openssl in a temporary directory: a CA, the server's (for 127.0.0.1), and client
certificates whose common name is the etcd user (root; pmx, with a role that may read and write only
/portmux/; nobody, without a role) and one signed by another CA. Then: `portmuxctl cluster` and
`portmux-agent` work with pmx's certificate inside the prefix (the agent's host key appears under its
lease and is gone once it has stopped); pmx cannot write outside it; nobody cannot read it; a certificate from
another CA and a connection without TLS are refused. No root needed (the agent has no portmux here: it
registers, reads and watches, and counts the missing portmux as its last error)."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)

for tool in ("etcd", "etcdctl", "openssl"):
    if not shutil.which(tool):
        print("SKIP: %s is not installed" % tool)
        sys.exit(77)
try:
    import etcd3  # noqa: F401
    import jsonschema  # noqa: F401
except ImportError as e:
    print("SKIP: %s (python3-etcd3 / python3-jsonschema not installed)" % e)
    sys.exit(77)

from etcd_cluster import EtcdCluster  # noqa: E402

CTL = os.path.join(ROOT, "scripts", "portmuxctl")
AGENT = os.path.join(ROOT, "agent", "portmux-agent")


def openssl(*args, cwd):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d):
    """PEM files in D: ca, server, clients root/pmx/nobody, and 'stranger' signed by another CA."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=pmx-test-" + ca,
                "-keyout", ca + ".key", "-out", ca + ".pem", cwd=d)
    with open(os.path.join(d, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    with open(os.path.join(d, "client.ext"), "w") as f:
        f.write("extendedKeyUsage=clientAuth\n")
    for name, ca, ext in (("server", "ca", "server.ext"), ("root", "ca", "client.ext"), ("pmx", "ca", "client.ext"),
                          ("nobody", "ca", "client.ext"), ("stranger", "other-ca", "client.ext")):
        cn = "pmx" if name == "stranger" else name
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + cn, "-keyout", name + ".key",
                "-out", name + ".csr", cwd=d)
        openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".pem", "-CAkey", ca + ".key", "-CAcreateserial",
                "-days", "2", "-extfile", ext, "-out", name + ".pem", cwd=d)
    p = lambda n: os.path.join(d, n)  # noqa: E731
    return {"ca": p("ca.pem"), "server_cert": p("server.pem"), "server_key": p("server.key"),
            "client_cert": p("root.pem"), "client_key": p("root.key")}


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="pmx-cluster-tls-")
        cls.tls = make_certificates(cls.tmp)
        cls.etcd = EtcdCluster(cls.tmp, members=1, tls=cls.tls)
        cls.etcd.start()
        # As root (the root certificate's CN): the prefix's role, its user, a user without a role, auth on.
        for args in (["user", "add", "root:root-pw"], ["role", "add", "pmx-cluster"],
                     ["role", "grant-permission", "pmx-cluster", "--prefix=true", "readwrite", "/portmux/"],
                     ["user", "add", "pmx:pmx-pw"], ["user", "grant-role", "pmx", "pmx-cluster"],
                     ["user", "add", "nobody:nobody-pw"], ["auth", "enable"]):
            cls.etcd.ctl(*args)
        cls.agent = None

    @classmethod
    def tearDownClass(cls):
        if cls.agent is not None and cls.agent.poll() is None:
            cls.agent.kill()
            cls.agent.wait()
        cls.etcd.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def tls_options(self, user="pmx", ca="ca.pem"):
        d = self.tmp
        return ["--cacert", os.path.join(d, ca), "--cert", os.path.join(d, user + ".pem"),
                "--key", os.path.join(d, user + ".key")]

    def cluster(self, *args, user="pmx", endpoint=None, check=True):
        cmd = [CTL, "cluster", "--etcd", endpoint or self.etcd.endpoints, "--etcd-timeout", "3"]
        cmd += self.tls_options(user) + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            self.fail("portmuxctl cluster %s: %s" % (" ".join(args), r.stderr))
        return r

    def test_1_the_prefix_user_edits_and_the_agent_registers(self):
        self.cluster("vm", "add", "va", "--host", "a", "--mac", "52:54:00:00:0a:01", "--range", "udp:6000")
        status_file = os.path.join(self.tmp, "agent-a.json")
        log = open(os.path.join(self.tmp, "agent-a.log"), "w")
        type(self).agent = subprocess.Popen(
            [AGENT, "--name", "a", "--file-prefix", "pmx-tls-absent-%d" % os.getpid(), "--etcd", self.etcd.endpoints,
             "--underlay-ip", "198.51.100.1", "--vxlan-mac", "02:00:00:00:0a:01", "--ttl", "2",
             "--status-file", status_file] + self.tls_options(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            r = self.cluster("status")
            if "1 live host(s)" in r.stdout:
                break
            time.sleep(0.2)
        self.assertIn("1 live host(s), 1 VM(s)", r.stdout)
        self.assertRegex(r.stdout, r"host a +underlay 198.51.100.1")
        with open(status_file) as f:
            status = json.load(f)
        self.assertEqual(status["connected"], 1)
        self.assertIn("pmx-tls-absent", status["last_error"])
        self.agent.terminate()
        self.agent.wait(timeout=10)
        # The stopped agent's lease expires after its TTL (2 s): then the host is gone.
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and "0 live host(s)" not in r.stdout:
            time.sleep(0.3)
            r = self.cluster("status")
        self.assertIn("0 live host(s)", r.stdout)

    def test_2_the_prefix_user_cannot_write_elsewhere(self):
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(["etcdctl", "--endpoints", self.etcd.endpoints, "--command-timeout", "3s"]
                           + self.tls_options() + ["put", "/elsewhere/x", "1"],
                           env=env, capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("permission denied", r.stderr)
        r = self.cluster("--prefix", "/elsewhere/", "vm", "add", "vx", "--host", "a", "--mac",
                         "52:54:00:00:0a:09", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("permission denied", r.stderr.lower())

    def test_3_a_user_without_the_role_cannot_read(self):
        r = self.cluster("show", user="nobody", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("permission denied", r.stderr.lower())

    def test_4_other_ca_and_plain_text_are_refused(self):
        r = self.cluster("show", user="stranger", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("portmuxctl: cluster: etcd"), r.stderr)
        plain = self.etcd.endpoints.replace("https://", "http://")
        r = subprocess.run([CTL, "cluster", "--etcd", plain, "--etcd-timeout", "2", "show"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(r.stderr.startswith("portmuxctl: cluster: etcd"), r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
