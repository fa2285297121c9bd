"""Three portmux hosts on one bridged wire, each with its agent, and a three-member etcd on loopback.

Namespaces (all named pmx-cl<pid>-*): "wire" holds the bridge; "client" sends to the shared address through
host a (a permanent neighbour entry, as a router would); each host namespace has its uplink veth on the
bridge and one veth per VM into that VM's namespace. portmux instances run in the host namespaces on
af_packet ports without hugepages; their agents run beside the test (telemetry is a Unix socket, etcd is on
127.0.0.1). Documentation addresses only. Everything made here is removed by close().
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "agent"))
sys.path.insert(0, HERE)

from etcd_cluster import EtcdCluster  # noqa: E402
from portmux_cluster.portmux import Portmux, ctl  # noqa: E402

AGENT = os.path.join(ROOT, "agent", "portmux-agent")
CTL = os.path.join(ROOT, "scripts", "portmuxctl")
SHARED_IP = "192.0.2.10"
CLIENT_IP = "192.0.2.1"
CLIENT_MAC = "02:00:00:00:0c:01"
# name -> underlay address, uplink MAC, VMs (name, MAC)
HOSTS = {
    "a": ("198.51.100.1", "02:00:00:00:0a:01", [("va", "52:54:00:00:0a:01"), ("va2", "52:54:00:00:0a:02")]),
    "b": ("198.51.100.2", "02:00:00:00:0b:01", [("vb", "52:54:00:00:0b:01")]),
    "c": ("198.51.100.3", "02:00:00:00:0c:0c", [("vc", "52:54:00:00:0c:02")]),
}


def skip(reason):
    print("SKIP: %s" % reason)
    sys.exit(77)


def check_prerequisites(portmux):
    if os.getuid() != 0:
        skip("needs root (network namespaces, veth, DPDK runtime directories)")
    for tool in ("etcd", "etcdctl", "ip", "ethtool"):
        if not shutil.which(tool):
            skip("%s is not installed" % tool)
    if not os.access(portmux, os.X_OK):
        skip("no portmux binary at %s" % portmux)
    probe = "pmx-clprobe-%d" % os.getpid()
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        skip("network namespaces are unavailable (ip netns add failed)")
    subprocess.run(["ip", "netns", "delete", probe])


def run(*args, check=True):
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(args), r.returncode, r.stderr.strip()))
    return r


def wait_for(what, predicate, timeout=15.0, interval=0.05):
    """Polls PREDICATE until it returns a true value (returned) or TIMEOUT seconds pass (AssertionError)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as e:  # a socket not there yet, a process restarting
            last = e
        time.sleep(interval)
    raise AssertionError("%s: not within %g s (last: %r)" % (what, timeout, last))


class Topology:
    def __init__(self, portmux, tls=None, members=3):
        self.portmux = portmux
        self.tag = "pmx-cl%d" % os.getpid()
        self.work = tempfile.mkdtemp(prefix=self.tag + "-")
        self.namespaces, self.procs, self.agents, self.prefixes = [], {}, {}, {}
        self.tls = tls(self.work) if tls else None
        self.etcd = EtcdCluster(self.work, members=members, tls=self.tls)
        self.flows = []

    # -- building --------------------------------------------------------------------------------------------

    def ns(self, name):
        full = "%s-%s" % (self.tag, name)
        run("ip", "netns", "add", full)
        self.namespaces.append(full)
        run("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def veth(self, ns_a, if_a, ns_b, if_b, mac=None):
        run("ip", "link", "add", if_a, "netns", ns_a, "type", "veth", "peer", "name", if_b, "netns", ns_b)
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            run("ip", "netns", "exec", ns, "ethtool", "-K", ifname, "tx", "off", "rx", "off")
        if mac:
            run("ip", "-n", ns_a, "link", "set", if_a, "address", mac)
        run("ip", "-n", ns_a, "link", "set", if_a, "up")
        run("ip", "-n", ns_b, "link", "set", if_b, "up")

    def build(self):
        wire = self.ns("wire")
        run("ip", "-n", wire, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", wire, "link", "set", "br0", "up")
        self.client = self.ns("client")
        self.veth(self.client, "eth0", wire, "c0", CLIENT_MAC)
        run("ip", "-n", self.client, "addr", "add", CLIENT_IP + "/24", "dev", "eth0")
        run("ip", "-n", self.client, "neigh", "replace", SHARED_IP, "lladdr", HOSTS["a"][1], "nud", "permanent",
            "dev", "eth0")
        run("ip", "-n", wire, "link", "set", "c0", "master", "br0")
        self.host_ns = {}
        for host, (ip, mac, vms) in HOSTS.items():
            hns = self.ns(host)
            self.host_ns[host] = hns
            self.veth(hns, "upl", wire, "w" + host, mac)
            run("ip", "-n", wire, "link", "set", "w" + host, "master", "br0")
            for vm, vm_mac in vms:
                vns = self.ns(vm)
                self.veth(vns, "eth0", hns, "p" + vm, vm_mac)
        self.etcd.start()

    def config(self, host):
        ip, mac, vms = HOSTS[host]
        return {"shared_ip": SHARED_IP,
                "uplink": {"device": "net_af_packet0,iface=upl", "mac": mac},
                "host": {"device": "net_tap0,iface=pmx%s" % host, "ranges": ["tcp:22"]},
                "vms": [{"name": vm, "device": "net_af_packet%d,iface=p%s" % (i + 1, vm), "mac": vm_mac, "ranges": []}
                        for i, (vm, vm_mac) in enumerate(vms)],
                "vxlan": {"local_ip": ip, "vni": 4242, "peers": []}}

    def start_portmux(self, host):
        prefix = "%s-%s" % (self.tag, host)
        self.prefixes[host] = prefix
        config = os.path.join(self.work, "%s.json" % host)
        with open(config, "w") as f:
            json.dump(self.config(host), f)
        log = open(os.path.join(self.work, "portmux-%s.log" % host), "w")
        # Every instance on CPU 0: three polling workers must leave the other CPU to etcd and the agents.
        proc = subprocess.Popen(["ip", "netns", "exec", self.host_ns[host], self.portmux, "--config", config, "--",
                                 "--no-huge", "-m", "512", "--no-pci", "--lcores", "0@0,1@0", "--file-prefix",
                                 prefix, "--log-level", "pmd.*:error"], stdout=log, stderr=log)
        log.close()
        self.procs[host] = proc
        wait_for("portmux %s answers" % host, lambda: self.tel(host).call("/portmux/info").get("version"), 60)

    def start_agent(self, host):
        ip, mac, _ = HOSTS[host]
        args = [AGENT, "--name", host, "--file-prefix", self.prefixes[host], "--etcd", self.etcd.endpoints,
                "--underlay-ip", ip, "--vxlan-mac", mac, "--ttl", "2",
                "--status-file", self.status_file(host)] + self.etcd_options()
        log = open(os.path.join(self.work, "agent-%s.log" % host), "a")
        self.agents[host] = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()

    def etcd_options(self):
        if not self.tls:
            return []
        return ["--cacert", self.tls["ca"], "--cert", self.tls["client_cert"], "--key", self.tls["client_key"]]

    def kill_agent(self, host):
        proc = self.agents.pop(host)
        proc.kill()
        proc.wait(timeout=10)

    def pause_agent(self, host):
        """Stops HOST's agent (SIGSTOP) without ending it: its host stays alive in etcd for the lease TTL."""
        self.agents[host].send_signal(signal.SIGSTOP)

    def resume_agent(self, host):
        self.agents[host].send_signal(signal.SIGCONT)

    def status_file(self, host):
        return os.path.join(self.work, "agent-%s.json" % host)

    def status(self, host):
        with open(self.status_file(host)) as f:
            return json.load(f)

    def start_all(self):
        self.build()
        for host in HOSTS:
            self.start_portmux(host)
        for host in HOSTS:
            self.start_agent(host)
        for host in HOSTS:
            wait_for("agent %s connected" % host, lambda h=host: self.status(h)["connected"], 20)

    # -- looking ---------------------------------------------------------------------------------------------

    def tel(self, host):
        if not hasattr(self, "_tel"):
            self._tel = {}
        if host not in self._tel:
            self._tel[host] = Portmux(self.prefixes[host], timeout=5.0)
        return self._tel[host]

    def target(self, host, port):
        return self.tel(host).call("/portmux/lookup", port).get("target")

    def vm_tx(self, host, vm):
        for page in self.tel(host)._connect().pages("/portmux/vms", vm):
            for entry in ctl.sorted_entries(page):
                if entry["name"] == vm:
                    return entry["tx_packets"]
        raise AssertionError("no VM %s on %s" % (vm, host))

    def cluster(self, *args, check=True):
        cmd = [CTL, "cluster", "--etcd", self.etcd.endpoints] + self.etcd_options() + list(args)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        if check and r.returncode != 0:
            raise AssertionError("portmuxctl cluster %s: %s" % (" ".join(args), r.stderr.strip()))
        return r

    def start_flow(self, port, interval=0.004):
        """UDP datagrams from the client to the shared address's PORT until close() (bounded at 300 s)."""
        code = ("import socket,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nn=0\n"
                "while True:\n s.sendto(b'seq %%d'%%n,('%s',%d)); n+=1; time.sleep(%g)\n" % (SHARED_IP, port, interval))
        proc = subprocess.Popen(["ip", "netns", "exec", self.client, "timeout", "300", "/usr/bin/python3", "-c", code],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.flows.append(proc)

    def send_numbered(self, port, count, interval=0.004):
        """Sends COUNT UDP datagrams "seq 0" .. "seq COUNT-1" from the client to the shared address's PORT,
        INTERVAL seconds apart; returns the sender's process (it ends by itself, bounded at 120 s)."""
        code = ("import socket,sys,time\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                "for n in range(int(sys.argv[3])):\n"
                " s.sendto(b'seq %d'%n,(sys.argv[1],int(sys.argv[2]))); time.sleep(float(sys.argv[4]))\n")
        proc = subprocess.Popen(["ip", "netns", "exec", self.client, "timeout", "120", "/usr/bin/python3", "-c", code,
                                 SHARED_IP, str(port), str(count), str(interval)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.flows.append(proc)
        return proc

    def count_numbered(self, vm, port):
        """Starts counting, by sequence number, the client's numbered datagrams to PORT that reach VM's
        namespace (a raw socket on its eth0: the VM needs no address). Returns the counter's process once it
        listens; stop it with finish_count(): it ends once no such datagram has come for 0.5 s (by itself
        after 120 s)."""
        code = ("import json,signal,socket,struct,sys,time\n"
                "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x0800))\n"
                "s.setsockopt(socket.SOL_SOCKET,33,1<<24)\n"  # SO_RCVBUFFORCE: no loss to a slow reader
                "s.bind(('eth0',0)); s.settimeout(0.1)\n"
                "src=socket.inet_aton(sys.argv[2]); port=int(sys.argv[3]); seen={}; stop=[]\n"
                "signal.signal(signal.SIGTERM, lambda *a: stop.append(1))\n"
                "end=time.monotonic()+120; last=time.monotonic()\n"
                "print('ready',flush=True)\n"
                # Told to stop, it still counts until none has come for 0.5 s: frames in flight settle.
                "while time.monotonic()<end and not (stop and time.monotonic()-last>0.5):\n"
                "    try: frame,addr=s.recvfrom(65535)\n"
                "    except socket.timeout: continue\n"
                "    except InterruptedError: continue\n"
                "    if addr[2]==socket.PACKET_OUTGOING or frame[26:30]!=src or frame[23]!=17: continue\n"
                "    udp=14+(frame[14]&15)*4\n"
                "    if struct.unpack('!H',frame[udp+2:udp+4])[0]!=port: continue\n"
                "    body=frame[udp+8:]\n"
                "    if body.startswith(b'seq '): n=int(body[4:]); seen[n]=seen.get(n,0)+1; last=time.monotonic()\n"
                "json.dump(seen,open(sys.argv[1],'w'))\n")
        out = os.path.join(self.work, "count-%s-%d.json" % (vm, port))
        proc = subprocess.Popen(["ip", "netns", "exec", "%s-%s" % (self.tag, vm), "/usr/bin/python3", "-c", code,
                                 out, CLIENT_IP, str(port)], stdout=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            proc.wait(timeout=10)
            raise RuntimeError("the datagram counter in VM %s's namespace did not start" % vm)
        proc.out_path = out
        self.flows.append(proc)
        return proc

    @staticmethod
    def finish_count(proc):
        """Stops a counter of count_numbered(); returns sequence number -> how many times it arrived."""
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
        with open(proc.out_path) as f:
            return {int(n): c for n, c in json.load(f).items()}

    def stats(self, host):
        return self.tel(host).call("/portmux/stats")

    # -- cleaning --------------------------------------------------------------------------------------------

    def dump_logs(self):
        for name in sorted(os.listdir(self.work)):
            if name.endswith(".log") and name.startswith(("agent", "portmux")):
                with open(os.path.join(self.work, name), errors="replace") as f:
                    text = f.read()[-3000:]
                print("--- %s ---\n%s" % (name, text))

    def close(self):
        for proc in self.flows:
            proc.kill()
            proc.wait()
        for host in list(self.agents):
            self.agents[host].send_signal(signal.SIGTERM)
            try:
                self.agents[host].wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.agents[host].kill()
                self.agents[host].wait()
        for tel in getattr(self, "_tel", {}).values():
            tel.close()
        for host, proc in self.procs.items():
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            shutil.rmtree("/var/run/dpdk/%s" % self.prefixes[host], ignore_errors=True)
        self.etcd.stop()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True)
        shutil.rmtree(self.work, ignore_errors=True)
