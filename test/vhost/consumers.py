"""What the vhost-user tests share: VM-side consumers (dpdk-testpmd on net_virtio_user ports), an uplink on a
veth pair whose far end lives in a private network namespace, and the clean-up of both.

A consumer attaches to portmux's server-mode sockets as a virtio-user client (or, with server=True, creates
the socket itself and waits for portmux, the client), forwards nothing (rxonly), sends (txonly) or answers
(5tswap), and reports each port's counters through its own telemetry socket."""

import os
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import telemetry  # noqa: E402


def hugepages_free_mib():
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["HugePages_Free"].split()[0]) * int(info["Hugepagesize"].split()[0]) // 1024
    except (OSError, KeyError, ValueError):
        return 0


def skip_reason(hugepages_mib):
    """Why a vhost test cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (DPDK runtime directory, namespaces)"
    if shutil.which("dpdk-testpmd") is None:
        return "dpdk-testpmd is not installed"
    if hugepages_free_mib() < hugepages_mib:
        return "%d MiB of free hugepages, %d needed (scripts/setup.sh reserves them)" % (hugepages_free_mib(),
                                                                                       hugepages_mib)
    return None


def remove_hugepage_files(prefix):
    # virtio-user needs few memory regions (--single-file-segments), which rules out --huge-unlink.
    for hugedir in ("/dev/hugepages", "/mnt/huge"):
        if os.path.isdir(hugedir):
            for entry in os.listdir(hugedir):
                if entry.startswith(prefix + "map_"):
                    try:
                        os.unlink(os.path.join(hugedir, entry))
                    except OSError:
                        pass


class Consumer:
    """One dpdk-testpmd process whose ports are net_virtio_user clients of portmux's vhost-user sockets.

    `ports` is a list of (socket path, MAC); port k of the process is ports[k]. `queues` queue pairs each.
    `queue_size` sets the rings' size (virtio-user's default is 256 descriptors).
    With `server`, virtio-user is the socket's server (`server=1`), as QEMU is for a client-mode VM: it
    listens on the path and testpmd's start-up waits until portmux connects."""

    def __init__(self, name, ports, work, mode="rxonly", queues=1, extra=(), server=False, queue_size=None):
        self.name, self.ports, self.work, self.mode, self.queues = name, ports, work, mode, queues
        self.server, self.queue_size = server, queue_size
        self.prefix = "pmx-consumer-%s-%d" % (name, os.getpid())
        self.extra = list(extra)
        self.proc = None

    def start(self, lcores="0@0,1@1"):
        if self.server:
            # virtio-user's server refuses a path that exists (a socket left by a killed predecessor);
            # QEMU's server=on removes it first, and so does this consumer.
            for path, _ in self.ports:
                if os.path.exists(path):
                    os.unlink(path)
        vdevs = []
        for k, (path, mac) in enumerate(self.ports):
            vdevs += ["--vdev", "net_virtio_user%d,path=%s,mac=%s,queues=%d%s%s" % (
                k, path, mac, self.queues, ",server=1" if self.server else "",
                ",queue_size=%d" % self.queue_size if self.queue_size else "")]
        cmd = ["dpdk-testpmd", "--lcores", lcores, "-m", "256", "--single-file-segments", "--no-pci",
               "--file-prefix", self.prefix] + vdevs + [
               "--", "--forward-mode=%s" % self.mode, "--auto-start", "--total-num-mbufs=8192",
               "--rxq=%d" % self.queues, "--txq=%d" % self.queues,
               # Without a statistics period testpmd waits for Enter, reads end-of-file and exits at once.
               "--stats-period", "10"] + self.extra
        self.log_path = os.path.join(self.work, "consumer-%s.log" % self.name)
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def port_stats(self, port):
        """The consumer's own counters of port `port` (ipackets: what it received from portmux)."""
        with telemetry.Telemetry(telemetry.socket_path(self.prefix)) as tel:
            return tel.query("/ethdev/stats,%d" % port)

    def link_up(self, port):
        """Whether the consumer's own port `port` sees its vhost-user peer (testpmd's link status)."""
        with telemetry.Telemetry(telemetry.socket_path(self.prefix)) as tel:
            return tel.query("/ethdev/link_status,%d" % port).get("status") == "UP"

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, hard=False):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL if hard else signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(os.path.join(telemetry.RUNTIME_DIR, self.prefix), ignore_errors=True)
        remove_hugepage_files(self.prefix)


class NamespaceUplink:
    """A veth pair: portmux's uplink is `root_if` (net_af_packet), frames are sent from `peer_if` inside the
    namespace `ns`, which this object creates and removes."""

    def __init__(self, tag):
        self.ns = "pmx-%s-%d" % (tag, os.getpid())
        short = "%x" % (os.getpid() & 0xffffff)
        self.root_if, self.peer_if = "pmu%s" % short, "pmp%s" % short

    def create(self):
        run = lambda *args: subprocess.run(args, check=True, capture_output=True)
        run("ip", "netns", "add", self.ns)
        run("ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.peer_if)
        run("ip", "link", "set", self.peer_if, "netns", self.ns)
        for sysctl in ("/proc/sys/net/ipv6/conf/%s/disable_ipv6" % self.root_if,):
            with open(sysctl, "w") as f:
                f.write("1")
        run("ip", "link", "set", self.root_if, "up")
        run("ip", "netns", "exec", self.ns, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
        run("ip", "netns", "exec", self.ns, "ip", "link", "set", self.peer_if, "up")

    def device(self, qpairs=1):
        """portmux's uplink on `root_if`; with several queue pairs the kernel spreads the frames over them
        by flow (packet fanout by hash), as RSS does on a NIC."""
        return "net_af_packet0,iface=%s,qpairs=%d" % (self.root_if, qpairs)

    def send(self, frames_hex_file, pace=0):
        """Sends every frame of FRAMES_HEX_FILE (one hex frame per line) from the namespace, in order; with
        PACE, pauses a millisecond after every PACE frames (a steady flow instead of one burst)."""
        code = ("import socket,sys,time\n"
                "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW)\n"
                "s.bind((sys.argv[1],0))\n"
                "pace=int(sys.argv[3])\n"
                "n=0\n"
                "for line in open(sys.argv[2]):\n"
                "    s.send(bytes.fromhex(line.strip())); n+=1\n"
                "    if pace and n % pace == 0: time.sleep(0.001)\n"
                "print(n)\n")
        out = subprocess.run(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code, self.peer_if,
                              frames_hex_file, str(pace)], check=True, capture_output=True, text=True)
        return int(out.stdout.strip())

    def sniff(self, out_path, src_ip, count, timeout):
        """Starts recording, in arrival order, every IPv4 frame from SRC_IP that reaches the namespace's end
        into OUT_PATH (one hex frame per line); the recorder ends after COUNT frames or TIMEOUT seconds.
        Returns the recorder's process once it listens: wait() for it, then read OUT_PATH."""
        code = ("import socket,sys,time\n"
                "s=socket.socket(socket.AF_PACKET,socket.SOCK_RAW,socket.htons(0x0800))\n"
                "s.setsockopt(socket.SOL_SOCKET,33,1<<24)\n"  # SO_RCVBUFFORCE: no loss to a slow reader
                "s.bind((sys.argv[1],0))\n"
                "src=socket.inet_aton(sys.argv[3]);count=int(sys.argv[4]);end=time.monotonic()+float(sys.argv[5])\n"
                "out=open(sys.argv[2],'w');n=0\n"
                "print('ready',flush=True)\n"
                "while n<count and time.monotonic()<end:\n"
                "    s.settimeout(max(0.01,end-time.monotonic()))\n"
                "    try: frame,addr=s.recvfrom(65535)\n"
                "    except socket.timeout: break\n"
                "    if addr[2]==socket.PACKET_OUTGOING or frame[26:30]!=src: continue\n"
                "    out.write(frame.hex()+'\\n'); n+=1\n"
                "out.close()\n")
        proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "/usr/bin/python3", "-c", code, self.peer_if,
                                 out_path, src_ip, str(count), str(timeout)], stdout=subprocess.PIPE, text=True)
        if proc.stdout.readline().strip() != "ready":
            proc.wait()
            raise RuntimeError("the recorder in %s did not start" % self.ns)
        return proc

    def destroy(self):
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)


def wait_links(tel, names, up=True, timeout=60.0):
    """Waits until every VM in NAMES shows link up (or down) in /portmux/vms; returns the ones that did not."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending and time.monotonic() < deadline:
        still = []
        for name in pending:
            answer = tel.query("/portmux/vms,%s" % name)
            entry = next((v for k, v in answer.items() if isinstance(v, dict)), {})
            if (entry.get("link") == "up") != up:
                still.append(name)
        pending = still
        if pending:
            time.sleep(0.2)
    return pending


def vm_entry(tel, name):
    answer = tel.query("/portmux/vms,%s" % name)
    return next(v for k, v in answer.items() if isinstance(v, dict))


def wait_settled(tel, key="rx_uplink", timeout=20.0):
    """Waits until /portmux/stats[key] stops changing; returns the stats."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        stats = tel.query("/portmux/stats")
        if last is not None and stats[key] == last[key]:
            return stats
        last = stats
        time.sleep(0.5)
    return last
