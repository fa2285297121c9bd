"""Starting portmux-exporter on a free loopback port, scraping it and reading what it served."""

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request


def free_port():
    """A loopback TCP port nobody listens on now (the exporter binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Exporter:
    """One portmux-exporter process; stop() ends it (only it: it runs in its own session)."""

    def __init__(self, command, work, name="exporter"):
        self.port = free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.log_path = os.path.join(work, "%s.log" % name)
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(list(command) + ["--listen", "127.0.0.1:%d" % self.port],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("portmux-exporter exited with %s: %s" % (self.proc.returncode, self.log()))
            try:
                self.get("/")
                return
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("portmux-exporter did not answer on %s: %s" % (self.url, self.log()))
                time.sleep(0.1)

    def get(self, path, timeout=20):
        """(status, body) of an HTTP GET."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def scrape(self):
        status, body = self.get("/metrics")
        if status != 200:
            raise RuntimeError("/metrics answered HTTP %d: %s" % (status, body[:200]))
        return body

    def alive(self):
        return self.proc.poll() is None

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def stop(self):
        """SIGTERM, then SIGKILL; the exit status of a clean stop, or None."""
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return None


def parse(text):
    """The exposition text as {"help": {family: text}, "type": {family: type}, "samples": [(name, labels, value)]}.

    Written out here rather than taken from the client library, so that the exporter's output is judged by
    something it does not share code with."""
    helps, types, samples = {}, {}, []
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?')
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, _, rest = line[7:].partition(" ")
            helps[name] = rest
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            m = sample.match(line)
            if not m:
                raise ValueError("not a sample line: %r" % line)
            labels = {}
            if m.group(2):
                pos = 0
                while pos < len(m.group(2)):
                    lm = label.match(m.group(2), pos)
                    if not lm:
                        raise ValueError("bad labels in %r" % line)
                    labels[lm.group(1)] = lm.group(2)
                    pos = lm.end()
            samples.append((m.group(1), labels, float(m.group(3))))
    return {"help": helps, "type": types, "samples": samples}


def value(parsed, name, **labels):
    """The value of the one sample NAME{LABELS} (labels must match exactly), or None."""
    found = [v for n, l, v in parsed["samples"] if n == name and l == labels]
    return found[0] if len(found) == 1 else None


def family_of(sample_name, types):
    """The family a sample belongs to: its own name, or without the suffix of a counter or histogram."""
    if sample_name in types:
        return sample_name
    for suffix in ("_total", "_created", "_count", "_sum", "_bucket"):
        if sample_name.endswith(suffix) and sample_name[:-len(suffix)] in types:
            return sample_name[:-len(suffix)]
    return None
