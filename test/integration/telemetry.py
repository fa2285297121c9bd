"""A minimal client of DPDK's telemetry socket (dpdk_telemetry.v2), for tests and scripts."""

import json
import os
import socket

RUNTIME_DIR = "/var/run/dpdk"


def socket_path(file_prefix):
    """Where a DPDK process started with --file-prefix FILE_PREFIX serves telemetry."""
    return os.path.join(RUNTIME_DIR, file_prefix, "dpdk_telemetry.v2")


class TelemetryError(Exception):
    pass


class Telemetry:
    """One connection: the server greets with a JSON object, then answers one JSON object per command."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
            # The hello tells how large an answer can be; read it with a generous buffer first.
            self.hello = json.loads(self.sock.recv(1 << 16).decode())
        except Exception:
            self.sock.close()
            raise
        self.max_len = max(int(self.hello.get("max_output_len", 16384)), 16384)

    def query(self, command):
        """Sends COMMAND (e.g. "/portmux/stats" or "/portmux/lookup,tcp:80"); returns the command's value."""
        self.sock.send(command.encode())
        raw = self.sock.recv(self.max_len + 1024)
        if not raw:
            raise TelemetryError("telemetry closed the connection on %r" % command)
        answer = json.loads(raw.decode())
        name = command.split(",", 1)[0]
        if name not in answer:
            raise TelemetryError("unexpected answer to %r: %r" % (command, answer))
        return answer[name]

    def close(self):
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def wait_ready(file_prefix, timeout=60.0, proc=None):
    """Waits until portmux (started with FILE_PREFIX) answers /portmux/info; returns the answer.

    The socket opens during EAL start-up, before portmux registers its commands (which then answer null), so
    the socket existing is not enough. Raises TelemetryError after `timeout` seconds or when `proc` exits.
    """
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise TelemetryError("portmux exited with status %s during start-up" % proc.returncode)
        try:
            with Telemetry(socket_path(file_prefix)) as tel:
                info = tel.query("/portmux/info")
                if isinstance(info, dict) and "version" in info:
                    return info
        except (OSError, ValueError, TelemetryError):
            pass
        time.sleep(0.1)
    raise TelemetryError("portmux did not answer /portmux/info within %g s" % timeout)


def start_portmux(portmux, config, work, prefix, lcores="0@0,1@1", timeout=60.0):
    """Writes CONFIG (a dict) to WORK/portmux.json and starts PORTMUX on it without hugepages, with file
    prefix PREFIX and its output in WORK/portmux.log; returns (process, log path) once it answers. When it
    does not, the process is stopped and the TelemetryError raised carries the end of the log."""
    import subprocess
    config_file = os.path.join(work, "portmux.json")
    with open(config_file, "w") as f:
        json.dump(config, f)
    log_path = os.path.join(work, "portmux.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([portmux, "-c", config_file, "--", "--no-huge", "-m", "512", "--no-pci",
                                 "--lcores", lcores, "--file-prefix", prefix], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_ready(prefix, timeout=timeout, proc=proc)
    except TelemetryError as e:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with open(log_path, errors="replace") as log:
            raise TelemetryError("%s: %s" % (e, log.read()[-2000:]))
    return proc, log_path
