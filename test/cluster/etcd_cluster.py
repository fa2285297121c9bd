"""A real etcd cluster for the tests: N members on loopback, free ports, data in a temporary directory.

Members are started and stopped one by one (the tests kill a member, or all of them, and start them again
with the same data). Optional client-certificate TLS: pass a dict of PEM paths (ca, server_cert,
server_key)."""

import os
import shutil
import socket
import subprocess
import time

ETCD = shutil.which("etcd") or "/usr/bin/etcd"
ETCDCTL = shutil.which("etcdctl") or "/usr/bin/etcdctl"


def free_ports(n):
    """N distinct TCP ports that are free on 127.0.0.1 now (the kernel picks them)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


class EtcdCluster:
    def __init__(self, workdir, members=3, tls=None):
        self.workdir = workdir
        self.tls = tls
        ports = free_ports(2 * members)
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.names = ["m%d" % i for i in range(members)]
        self.procs = {}
        scheme = "https" if tls else "http"
        self.client_urls = ["%s://127.0.0.1:%d" % (scheme, p) for p in self.client_ports]
        self.initial = ",".join("%s=http://127.0.0.1:%d" % (n, p) for n, p in zip(self.names, self.peer_ports))

    @property
    def endpoints(self):
        return ",".join(self.client_urls)

    def start(self, i=None, wait=True):
        for j in ([i] if i is not None else range(len(self.names))):
            name = self.names[j]
            args = [ETCD, "--name", name, "--data-dir", os.path.join(self.workdir, name + ".etcd"),
                    "--listen-client-urls", self.client_urls[j], "--advertise-client-urls", self.client_urls[j],
                    "--listen-peer-urls", "http://127.0.0.1:%d" % self.peer_ports[j],
                    "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % self.peer_ports[j],
                    "--initial-cluster", self.initial, "--initial-cluster-state", "new",
                    "--initial-cluster-token", "pmx-test-%d" % os.getpid(),
                    "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "error"]
            if self.tls:
                args += ["--cert-file", self.tls["server_cert"], "--key-file", self.tls["server_key"],
                         "--trusted-ca-file", self.tls["ca"], "--client-cert-auth"]
            log = open(os.path.join(self.workdir, name + ".log"), "ab")
            self.procs[j] = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
            log.close()
        if wait:
            self.wait_healthy(i)

    def ctl(self, *args, endpoint=None, check=True, extra=None):
        env = dict(os.environ, ETCDCTL_API="3")
        cmd = [ETCDCTL, "--endpoints", endpoint or self.endpoints, "--command-timeout", "3s"] + (extra or [])
        if self.tls:
            cmd += ["--cacert", self.tls["ca"], "--cert", self.tls["client_cert"], "--key", self.tls["client_key"]]
        return subprocess.run(cmd + list(args), env=env, capture_output=True, text=True, timeout=15, check=check)

    def wait_healthy(self, i=None, timeout=20.0):
        deadline = time.monotonic() + timeout
        urls = [self.client_urls[i]] if i is not None else self.client_urls
        while time.monotonic() < deadline:
            r = self.ctl("endpoint", "health", endpoint=",".join(urls), check=False)
            if r.returncode == 0:
                return
            for j, p in self.procs.items():
                if p.poll() is not None and (i is None or j == i):
                    raise RuntimeError("etcd member %s exited (%s)" % (self.names[j], self.log_tail(j)))
            time.sleep(0.2)
        raise RuntimeError("etcd not healthy within %g s: %s" % (timeout, r.stderr.strip()[-300:]))

    def log_tail(self, j):
        try:
            with open(os.path.join(self.workdir, self.names[j] + ".log"), errors="replace") as f:
                return f.read()[-500:]
        except OSError:
            return ""

    def stop(self, i=None):
        for j in ([i] if i is not None else list(self.procs)):
            p = self.procs.pop(j, None)
            if p is None:
                continue
            p.kill()
            p.wait(timeout=10)
